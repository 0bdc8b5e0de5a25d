"""dnc-import: load phone numbers from spreadsheets into a Wolkvox Do-Not-Call list."""

from __future__ import annotations

__version__ = "0.1.0"

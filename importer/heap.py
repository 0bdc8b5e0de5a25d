"""Give the C heap's free memory back to the system, between the stages of a big run.

glibc's ``malloc`` keeps what a program frees for its next allocations, and hands memory back
only from the top of its heap; a big run frees tens of MB between its stages (a workbook's cells
once read, the arrays of the duplicate search, of the send queue, of the lines brought up to
date after sending) that would otherwise stay in its peak (issue 5: 200,000 workbook rows).
``malloc_trim`` hands back every free page, wherever it is, in ~1 ms.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["give_back"]

_trim: Callable[[int], int] | None = None
_looked = False


def give_back() -> None:
    """Hand the heap's free pages back (``malloc_trim(0)``); nothing where the C library has no
    such call (not glibc)."""
    global _trim, _looked
    if not _looked:
        _looked = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError, TypeError):  # not glibc, or no C library by that name
            _trim = None
    if _trim is not None:
        _trim(0)

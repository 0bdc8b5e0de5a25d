"""Settings of each stage, as frozen dataclasses. The CLI builds them; the core only reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


def state_dir_path() -> Path:
    """The per-user state folder (ledger, token locks); not created here.

    ``$DNC_IMPORT_STATE_DIR``, else ``$XDG_STATE_HOME/dnc-import`` (an absolute one), else
    ``~/.local/state/dnc-import``.
    """
    state = os.environ.get("DNC_IMPORT_STATE_DIR", "").strip()
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    if state:
        return Path(state).expanduser()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "dnc-import"
    return Path.home() / ".local" / "state" / "dnc-import"


class NumberForm(str, Enum):
    """How a valid number is written in the ``telephone`` field sent to Wolkvox."""

    NATIONAL = "national"  # 3191234567
    E164 = "e164"  # +573191234567
    INTERNATIONAL = "international"  # 573191234567

    def __str__(self) -> str:
        return self.value


class Token:
    """The Wolkvox token. Its repr and str never show it; only ``reveal()`` does.

    >>> Token("abc")
    Token('***')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself, for the one header that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Token('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Token", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Token is not pickled: it would end up in a file")


@dataclass(frozen=True)
class ReadOptions:
    """How to read the input files."""

    encoding: str | None = None
    """Force a text encoding (default: detected: UTF-8 with/without BOM, else cp1252)."""
    delimiter: str | None = None
    """Force a delimiter (default: sniffed among , ; tab |)."""
    phone_column: str | None = None
    """A header name, or a 1-based column position as text ("3")."""
    days_column: str | None = None
    no_header: bool = False
    """The file is a bare column of numbers (first column phone, second days if any)."""
    sheets: tuple[str, ...] = ()
    """Only these sheets of workbooks (default: every visible sheet with a phone column)."""
    header_scan_rows: int = 30
    """How many rows from the top to search for the header row."""


@dataclass(frozen=True)
class ValidateOptions:
    """How to judge and normalize numbers and days."""

    region: str = "CO"
    form: NumberForm = NumberForm.NATIONAL
    dial_prefix: str = ""
    allow_foreign: bool = False
    default_days: int | None = None
    max_days: int = 3650


@dataclass(frozen=True)
class SendOptions:
    """Where and how to send. ``url`` is the full add_dnc URL, already checked."""

    url: str
    token: Token = field(repr=False)
    lock_key: str
    """server identity for the token lock (e.g. "wv0002" or the base URL)."""
    batch_size: int = 1000
    retries: int = 5
    max_wait: float = 120.0
    """Longest single wait between retries, seconds."""
    lock_wait: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 75.0
    lost_answer_wait: float | None = None
    """Seconds the token rests after a request whose answer was lost (the server may still be
    working on it); None: ``read_timeout``."""
    ca_bundle: Path | None = None
    max_calls: int | None = None
    max_splits: int = 10
    """How many times a batch refused as malformed/too large may be halved."""


@dataclass(frozen=True)
class ReportOptions:
    """Where and what to write."""

    reports_dir: Path = Path("reports")
    xlsx: bool = False
    """Also write outcomes.xlsx (it is written anyway when an input was a workbook)."""

"""What an opened input is: ``Source`` and what it found (``SourceInfo``, ``SheetInfo``).

``importer.reader.open_source`` makes one; ``importer.text_reader`` and
``importer.workbook_reader`` hold its two kinds. Also here: what every reader shares, the file
hash (``sha256_file``) and the one-line form of an error message (``_one_line``).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from importer.errors import InputError, UsageError
from importer.model import RawRow

if TYPE_CHECKING:
    from importer.columns import RowColumns

__all__ = ["SheetInfo", "Source", "SourceInfo", "sha256_file"]

_CHUNK = 1024 * 1024


@dataclass
class SheetInfo:
    """What was found in one sheet (or the one table of a text file)."""

    name: str
    """The sheet name; "" for text files."""
    header_row: int | None
    """The 1-based row of the header; None with ``no_header``."""
    phone_column: str
    """The header text as found, or "column N" without a header."""
    days_column: str | None
    """None when the sheet has no days column."""
    headers: list[str]
    """The header cells as found."""
    rows: int = 0
    """Data rows handed on (counted while streaming)."""
    blank_rows: int = 0
    """Wholly empty rows below the header, skipped (counted while streaming)."""
    other_phone_columns: list[str] = field(default_factory=list)
    """Other headers that also look like phone columns; they are not read."""


@dataclass
class SourceInfo:
    """What was detected in one input file (goes to summary.json)."""

    path: str
    sha256: str
    size: int
    format: str
    """"csv" (also .tsv/.txt), "xlsx", "xlsm", "xlsb", "xls" or "ods"."""
    encoding: str | None
    delimiter: str | None
    """None for workbooks and for one-column text files."""
    sheets: list[SheetInfo]
    skipped_sheets: list[tuple[str, str]]
    """(sheet name, why) for each sheet not read."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["skipped_sheets"] = [{"sheet": s, "why": w} for s, w in self.skipped_sheets]
        return data


class Source(ABC):
    """One opened input. ``info`` is complete before ``rows()`` is called (counts aside).

    The text and workbook readers (``importer.text_reader``, ``importer.workbook_reader``)
    are its two kinds.
    """

    def __init__(self, info: SourceInfo) -> None:
        self.info = info

    @abstractmethod
    def rows(self) -> Iterator[RawRow]:
        """Stream the data rows, filling ``SheetInfo.rows``/``blank_rows`` as it goes."""

    def columns(self) -> Iterator[RowColumns]:
        """The rows of ``rows()`` as batches of columns, with the same counts (the bulk path)."""
        from importer.columnar_reader import grouped  # pyarrow, only where it is used

        return grouped(self.rows())


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_lined(exc: InputError) -> InputError:
    _one_line(exc)
    return exc


def _one_line(exc: InputError | UsageError) -> None:
    """Make a message one line: headers, sheet names and file names may hold line breaks (or
    terminal escapes), and the CLI promises one line ``Error: ...``."""
    exc.message = _CONTROL.sub(" ", exc.message)
    exc.args = (exc.message,)

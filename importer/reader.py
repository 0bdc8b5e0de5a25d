"""Read phone lists from text (CSV/TSV/TXT) and workbook (xlsx/xlsm/xls/ods) files.

``open_source`` checks a file eagerly - format, encoding, delimiter, header row, columns, and
for text files every byte (NULs, undecodable bytes) - so that every bad file of a run is refused
before any row is processed. ``Source.rows()`` then streams ``RawRow``s.

Every third-party exception (calamine, csv, codecs, OS) becomes an ``InputError`` here (zipfile
and OLE2 ones in ``importer.workbook_guard``, which refuses hostile workbooks before calamine),
with a one-line message naming the file (and sheet, row or option) and the fix.

>>> src = open_source("clientes.csv", ReadOptions())          # doctest: +SKIP
>>> next(src.rows())                                          # doctest: +SKIP
RawRow(source_file='clientes.csv', sheet='', row=4, phone='3191234567', days='30')

The reading itself is split by what it reads: ``importer.source`` (the ``Source`` types),
``importer.header_finder`` (header row, phone and days columns), ``importer.text_reader`` and
``importer.workbook_reader``. This module is their entry point.
"""

from __future__ import annotations

import codecs
import stat
from pathlib import Path

from importer.config import ReadOptions
from importer.errors import InputError, UsageError
from importer.header_finder import (
    _Layout,  # noqa: F401 - tests build a source by hand
    _position,
    normalize_header,
)
from importer.source import SheetInfo, Source, SourceInfo, _one_line, sha256_file
from importer.text_reader import _delimiter, _open_text
from importer.workbook_guard import not_a_workbook
from importer.workbook_reader import (
    _no_panic,
    _open_workbook,
    _WorkbookSource,  # noqa: F401 - tests build a source by hand
)

__all__ = [
    "SheetInfo",
    "Source",
    "SourceInfo",
    "normalize_header",
    "open_source",
    "sha256_file",
]

TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".tab", ".dat"})
"""Names read as delimited text (a file with no suffix is read as text too)."""


def open_source(path: str | Path, options: ReadOptions) -> Source:
    """Check a file and detect how to read it; raise ``InputError`` naming the fix."""
    try:
        return _open(str(path), Path(path), options)
    except (InputError, UsageError) as exc:
        _one_line(exc)
        raise


def _open(name: str, p: Path, options: ReadOptions) -> Source:
    _check_options(options)
    try:
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(
                f"{name} is a folder, not a file: name the files inside it (e.g. {p / '*.csv'})"
            )
        if not stat.S_ISREG(mode):  # /dev/zero never ends, a FIFO blocks: never open them
            raise InputError(
                f"{name} is not a regular file ({_kind(mode)}): save the list "
                "as a .csv or .xlsx file and name that file"
            )
        with p.open("rb") as f:
            magic = f.read(8)
    except FileNotFoundError as exc:
        raise InputError(f"{name}: no such file: check the name and the folder") from exc
    except PermissionError as exc:
        raise InputError(
            f"{name} cannot be read (permission denied): check its "
            "permissions, or copy it somewhere you can read it"
        ) from exc
    except OSError as exc:
        raise InputError(f"{name} cannot be read ({exc.strerror or exc}): check the path") from exc
    if magic.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        with _no_panic(name, p):
            return _open_workbook(name, p, magic, options)
    if p.suffix.lower() in {".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"}:
        what = "it is empty" if not magic else "it is neither a zip nor an OLE2 file"
        raise not_a_workbook(name, p, what)
    if p.suffix and p.suffix.lower() not in TEXT_SUFFIXES:
        raise InputError(
            f"{name} is not a spreadsheet ({p.suffix} file): give .csv, .tsv, .txt, .xlsx, "
            f".xlsm, .xls or .ods files (rename a CSV export to .csv)"
        )
    return _open_text(name, p, options)


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    return "a socket" if stat.S_ISSOCK(mode) else "not a plain file"


# ---------------------------------------------------------------- options


def _check_options(options: ReadOptions) -> None:
    if options.header_scan_rows < 1:
        raise UsageError("header_scan_rows must be 1 or more")
    for flag, spec in (
        ("--phone-column", options.phone_column),
        ("--days-column", options.days_column),
    ):
        pos = _position(spec)
        if pos is not None and pos < 1:
            raise UsageError(f"{flag} {spec}: positions start at 1 (column A is 1)")
        if options.no_header and spec is not None and pos is None:
            raise UsageError(
                f"{flag} {spec}: with --no-header there are no header names; "
                f"give a position ({flag} 2)"
            )
    if options.delimiter is not None and len(_delimiter(options.delimiter)) != 1:
        raise UsageError(
            f"--delimiter {options.delimiter!r}: give one character, "
            "e.g. --delimiter ';' (or 'tab')"
        )
    if options.encoding is not None:
        try:
            codecs.lookup(options.encoding)
        except LookupError as exc:
            raise UsageError(
                f"--encoding {options.encoding}: unknown encoding; use e.g. "
                "utf-8, cp1252 or latin-1"
            ) from exc

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
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
import re
import stat
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from python_calamine import (
    CalamineError,
    CalamineWorkbook,
    PasswordError,
    SheetTypeEnum,
    SheetVisibleEnum,
)

from importer.config import ReadOptions
from importer.errors import InputError, UsageError
from importer.model import CellValue, RawRow

if TYPE_CHECKING:
    from importer.columns import RowColumns
from importer.workbook_guard import not_a_workbook, password_protected, workbook_format

__all__ = [
    "SheetInfo",
    "Source",
    "SourceInfo",
    "normalize_header",
    "open_source",
    "sha256_file",
]

_HEAD_BYTES = 64 * 1024
_CHUNK = 1024 * 1024
_MAX_RECORD_LINES = 100
"""A quoted CSV cell longer than this many lines is taken for a missing closing quote."""
_MAX_LINE_BYTES = _CHUNK
"""A text line longer than this (1 MiB) is refused: no phone list has one, and reading it whole
would let one line take any amount of memory. Equal to ``_CHUNK``, so that checking the lines
that cross a chunk boundary is enough."""
_MAX_COLUMNS = 16_384
"""Excel's last column (XFD): a text record with more fields is refused."""
_DELIMITERS = (",", ";", "\t", "|")
_ONE_COLUMN = "\x1f"
"""The csv delimiter used for a one-column text file (a character that never occurs in one)."""
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
"""The bytes cp1252 leaves undefined."""
_UTF8_LATIN = re.compile("[\u00c0-\u00ff]")
_NON_WORD = re.compile(r"[\W_]+")

PHONE_NAMES: frozenset[str] = frozenset(
    {
        "telephone",
        "telefono",
        "telefonos",
        "tel",
        "telf",
        "tfno",
        "tlf",
        "phone",
        "phone number",
        "phone no",
        "mobile",
        "mobile phone",
        "mobile number",
        "cell",
        "cell phone",
        "cellphone",
        "celular",
        "celulares",
        "cel",
        "movil",
        "numero",
        "numero de telefono",
        "numero telefono",
        "numero de celular",
        "numero celular",
        "numero movil",
        "numero de movil",
        "whatsapp",
        "contacto telefono",
        "telefono contacto",
        "telefono de contacto",
        "telefono celular",
        "telefono movil",
        "nro telefono",
        "nro de telefono",
        "nro celular",
        "num telefono",
        "no telefono",
        "no de telefono",
        "n telefono",
        "msisdn",
    }
)
"""Known phone headers, normalized. Exact matches win over prefix matches ("telefono 1")."""
_WEAK_NAMES = frozenset({"numero"})
_PHONE_PREFIXES = tuple(n + " " for n in PHONE_NAMES if n not in _WEAK_NAMES)
DAYS_NAMES: frozenset[str] = frozenset(
    {
        "days block",
        "days",
        "dias",
        "dias de bloqueo",
        "dias bloqueo",
        "dias bloqueado",
        "dias bloqueados",
        "dias a bloquear",
        "block days",
        "blocking days",
        "days blocked",
        "bloqueo",
        "bloqueo dias",
        "bloqueo en dias",
        "dias dnc",
        "dnc days",
        "vigencia",
        "vigencia dias",
        "duracion bloqueo",
        "duracion del bloqueo",
    }
)
"""Known days headers, normalized."""
_DAYS_PREFIXES = tuple(n + " " for n in DAYS_NAMES if " " in n) + ("bloqueo ",)


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

    The text and workbook readers below are its two kinds.
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


def normalize_header(text: str) -> str:
    """Fold case, accents and punctuation: ``normalize_header(" Teléfono_Móvil: ")`` is
    ``"telefono movil"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", bare).strip()


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".tab", ".dat"})
"""Names read as delimited text (a file with no suffix is read as text too)."""


def open_source(path: str | Path, options: ReadOptions) -> Source:
    """Check a file and detect how to read it; raise ``InputError`` naming the fix."""
    try:
        return _open(str(path), Path(path), options)
    except (InputError, UsageError) as exc:
        _one_line(exc)
        raise


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_lined(exc: InputError) -> InputError:
    _one_line(exc)
    return exc


def _one_line(exc: InputError | UsageError) -> None:
    """Make a message one line: headers, sheet names and file names may hold line breaks (or
    terminal escapes), and the CLI promises one line ``Error: ...``."""
    exc.message = _CONTROL.sub(" ", exc.message)
    exc.args = (exc.message,)


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


# ---------------------------------------------------------------- options and columns


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


def _delimiter(text: str) -> str:
    return "\t" if text.lower() in {"tab", "\\t"} else text


def _position(spec: str | None) -> int | None:
    if spec is None or not spec.strip().lstrip("-").isdigit():
        return None
    return int(spec.strip())


_LISTED = 20
"""Names listed in a message at most (a header row may have 16,384 cells)."""


def _quoted(names: Iterable[str]) -> str:
    listed = list(names)
    shown = [f'"{n[:40]}..."' if len(n) > 40 else f'"{n}"' for n in listed[:_LISTED]]
    more = f" and {len(listed) - _LISTED:,} more" if len(listed) > _LISTED else ""
    return ", ".join(shown) + more or "none"


@dataclass
class _Layout:
    header_row: int | None  # 1-based, absolute
    phone: int  # index into a row's cells
    days: int | None
    info: SheetInfo
    parsed: Any = None
    """A workbook sheet as calamine parsed it to find the header, kept for one read of its
    rows: parsing a sheet is most of reading it (~1.2 s for 200,000 rows here)."""


Scan = list[tuple[int, list[Any]]]
"""The first rows of a sheet: (1-based row number, cells)."""


def _texts(cells: list[Any]) -> list[str]:
    return [c.strip() if isinstance(c, str) else "" for c in cells]


def _seen_headers(scan: Scan) -> list[str]:
    """The non-empty text cells of the row that looks most like a header."""
    best: list[str] = []
    for _, cells in scan:
        texts = [t for t in _texts(cells) if t]
        if len(texts) > len(best):
            best = texts
    return best


def _match(
    texts: list[str], names: frozenset[str], prefixes: tuple[str, ...], exclude: int | None = None
) -> list[int]:
    """Indexes of the cells naming a known column: exact names first, then prefixes."""
    norm = [normalize_header(t) for t in texts]
    exact = [i for i, n in enumerate(norm) if n in names and i != exclude]
    exact.sort(key=lambda i: norm[i] in _WEAK_NAMES)  # "Número" may be an id: last resort
    fuzzy = [i for i, n in enumerate(norm) if n.startswith(prefixes) and i != exclude]
    return exact + [i for i in fuzzy if i not in exact]


def _find_named(scan: Scan, name: str) -> tuple[int, int] | None:
    wanted = normalize_header(name)
    for row, cells in scan:
        for i, t in enumerate(_texts(cells)):
            if t and normalize_header(t) == wanted:
                return row, i
    return None


class _NoPhoneColumn(InputError):
    """No phone column in a sheet; ``why`` is the short form for ``skipped_sheets``."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _no_phone(label: str, scan: Scan) -> _NoPhoneColumn:
    return _NoPhoneColumn(
        f"{label}: no phone column found; headers seen: {_quoted(_seen_headers(scan))}. "
        "Name it with --phone-column NAME or a position (--phone-column 2).",
        "no phone column",
    )


def _locate(label: str, sheet: str, scan: Scan, col_offset: int, options: ReadOptions) -> _Layout:
    """Find the header row and the phone/days columns among the first rows of a sheet."""
    width = max((len(c) for _, c in scan), default=0)

    def index(flag: str, pos: int) -> int:
        i = pos - 1 - col_offset
        if not 0 <= i < width:
            raise _NoPhoneColumn(
                f"{label}: {flag} {pos}: there is no column {pos}; the columns in use are "
                f"{col_offset + 1} to {col_offset + width}",
                f"no column {pos}",
            )
        return i

    def name(i: int | None, texts: list[str]) -> str | None:
        if i is None:
            return None
        return texts[i] if i < len(texts) and texts[i] else f"column {i + 1 + col_offset}"

    if options.no_header:
        phone = index("--phone-column", _position(options.phone_column) or 1)
        days_pos = _position(options.days_column)
        days = None if days_pos is None else index("--days-column", days_pos)
        info = SheetInfo(sheet, None, name(phone, []) or "", name(days, []), [])
        return _Layout(None, phone, days, info)
    header_row, phone, others = _header_and_phone(label, scan, options, index)
    texts = _texts(next(c for r, c in scan if r == header_row))
    days = _days_index(label, texts, header_row, phone, options, index)
    info = SheetInfo(
        sheet,
        header_row,
        name(phone, texts) or "",
        name(days, texts),
        [t for t in texts if t],
        other_phone_columns=[texts[i] for i in others],
    )
    return _Layout(header_row, phone, days, info)


def _header_row(label: str, scan: Scan, options: ReadOptions) -> tuple[int, list[int]] | None:
    """The header row and its phone-like cells (exact names first), if one is found."""
    days = options.days_column
    if days is not None and _position(days) is None:
        found = _find_named(scan, days)
        if found is None:
            raise _NoPhoneColumn(
                f'{label}: --days-column "{days}": no such column in the first '
                f"{options.header_scan_rows} rows; headers seen: {_quoted(_seen_headers(scan))}",
                f'no column "{days}"',
            )
        cells = next(c for r, c in scan if r == found[0])
        return found[0], _match(_texts(cells), PHONE_NAMES, _PHONE_PREFIXES)
    fuzzy = None
    for row, cells in scan:
        texts = _texts(cells)
        hits = _match(texts, PHONE_NAMES, _PHONE_PREFIXES)
        if hits and normalize_header(texts[hits[0]]) in PHONE_NAMES:
            return row, hits
        if hits and fuzzy is None:
            fuzzy = (row, hits)
    return fuzzy


def _header_and_phone(
    label: str, scan: Scan, options: ReadOptions, index: Callable[[str, int], int]
) -> tuple[int, int, list[int]]:
    """(header row, phone index, other phone-like indexes)."""
    spec, pos = options.phone_column, _position(options.phone_column)
    if spec is not None and pos is None:
        named = _find_named(scan, spec)
        if named is None:
            raise _NoPhoneColumn(
                f'{label}: --phone-column "{spec}": no such column in the first '
                f"{options.header_scan_rows} rows; headers seen: {_quoted(_seen_headers(scan))}",
                f'no column "{spec}"',
            )
        return named[0], named[1], []
    found = _header_row(label, scan, options)
    if pos is not None:
        phone = index("--phone-column", pos)
        if found:
            return found[0], phone, []
        for row, cells in scan:
            if phone < len(cells) and _texts(cells)[phone]:
                return row, phone, []
        raise _no_phone(label, scan)
    if not found or not found[1]:
        raise _no_phone(label, scan)
    return found[0], found[1][0], found[1][1:]


def _days_index(
    label: str,
    texts: list[str],
    header_row: int,
    phone: int,
    options: ReadOptions,
    index: Callable[[str, int], int],
) -> int | None:
    spec, pos = options.days_column, _position(options.days_column)
    if pos is not None:
        days: int | None = index("--days-column", pos)
    elif spec is not None:
        found = _find_named([(header_row, texts)], spec)
        if found is None:
            raise InputError(
                f'{label}: --days-column "{spec}": no such column in the header '
                f"(row {header_row}); headers: {_quoted(t for t in texts if t)}"
            )
        days = found[1]
    else:
        hits = _match(texts, DAYS_NAMES, _DAYS_PREFIXES, exclude=phone)
        days = hits[0] if hits else None
    if days == phone:
        raise UsageError(
            f"{label}: the phone and days columns are the same column "
            f"({texts[phone] or phone + 1}): name them apart"
        )
    return days


# ---------------------------------------------------------------- text files


@dataclass
class _ByteScan:
    sha256: str
    size: int
    head: bytes
    utf8_ok: bool
    nul_line: int | None
    cp1252_bad_line: int | None
    long_line: int | None
    """The first line longer than ``_MAX_LINE_BYTES`` (counting both LF and CR as line ends)."""
    quote: bool = True
    """Whether a ``"`` byte occurs anywhere."""
    line_ends: str | None = None
    """"\n" or "\r\n" when every line ends so (or there is no line end); None when mixed."""


def _scan_bytes(p: Path) -> _ByteScan:
    """Hash the file and check every byte: NULs, UTF-8 validity, bytes cp1252 lacks, and lines
    too long."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    size, lines, head, utf8_ok = 0, 1, b"", True
    nul_line: int | None = None
    cp_bad: int | None = None
    long_line: int | None = None
    line_start = 0  # offset where the current line began
    quote, crs, crlfs, after_cr = False, 0, 0, False
    with p.open("rb") as f:
        while chunk := f.read(_CHUNK):
            quote = quote or b'"' in chunk
            crs += chunk.count(b"\r")
            crlfs += chunk.count(b"\r\n") + (after_cr and chunk[:1] == b"\n")
            after_cr = chunk[-1:] == b"\r"
            if long_line is None:
                first = min(_line_end(chunk.find(b"\n")), _line_end(chunk.find(b"\r")))
                if size + min(first, len(chunk)) - line_start > _MAX_LINE_BYTES:
                    long_line = lines
                last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                if last >= 0:
                    line_start = size + last + 1
            digest.update(chunk)
            head = head or chunk[:_HEAD_BYTES]
            if utf8_ok:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8_ok = False
            if nul_line is None and (at := chunk.find(b"\x00")) >= 0:
                nul_line = lines + chunk.count(b"\n", 0, at)
            if cp_bad is None and (at := _first_of(chunk, _CP1252_UNDEFINED)) >= 0:
                cp_bad = lines + chunk.count(b"\n", 0, at)
            lines += chunk.count(b"\n")
            size += len(chunk)
    if utf8_ok:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    ends = "\n" if crs == 0 else "\r\n" if crs == crlfs == lines - 1 else None
    return _ByteScan(
        digest.hexdigest(), size, head, utf8_ok, nul_line, cp_bad, long_line, quote, ends
    )


def _first_of(chunk: bytes, needles: tuple[bytes, ...]) -> int:
    """Where the first of ``needles`` is in ``chunk`` (-1: nowhere); a find each is memchr."""
    found = [at for needle in needles if (at := chunk.find(needle)) >= 0]
    return min(found, default=-1)


def _line_end(at: int) -> int:
    return _CHUNK + 1 if at < 0 else at


def _check_bytes(name: str, scan: _ByteScan, forced: str | None) -> None:
    """Refuse binary files, NUL bytes (unless the encoding is UTF-16/32) and runaway lines."""
    head = scan.head
    bom16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    wide = (forced or "").lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16"))
    if scan.nul_line is not None and not (wide or (bom16 and not forced)):
        if b"\x00" in head:
            raise InputError(
                f"{name} looks like a binary file, not a spreadsheet or a text "
                "(CSV) file: export it again as .csv or .xlsx"
            )
        raise InputError(
            f"{name}: line {scan.nul_line} contains a NUL byte: the file is "
            "damaged or not a text file; remove that line or export it again"
        )
    if scan.long_line is not None:
        raise InputError(
            f"{name}: line {scan.long_line} is longer than 1 MiB: no phone list "
            "has such lines; is it really a text (CSV) file? Export it again as "
            ".csv or .xlsx"
        )


def _first_bad_line(p: Path, encoding: str) -> tuple[int, bool]:
    """(line of the first undecodable byte, whether an earlier line had UTF-8 accents)."""
    accents = False
    with p.open("rb") as f:
        for n, line in enumerate(f, 1):
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError:
                return n, accents
            accents = accents or (encoding.startswith("utf") and bool(_UTF8_LATIN.search(text)))
    return 0, accents


def _encoding(name: str, p: Path, scan: _ByteScan, forced: str | None) -> str:
    """The forced encoding, else: BOM, then UTF-8 if every byte is UTF-8, else cp1252."""
    head = scan.head
    bom16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if forced:
        return forced
    if bom16:
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if scan.utf8_ok:
        return "utf-8"
    line, accents = _first_bad_line(p, "utf-8")
    if accents:
        raise InputError(
            f"{name}: line {line} is not UTF-8 while lines before it are: the "
            "file mixes encodings; save it again as UTF-8, or force one with "
            "--encoding cp1252"
        )
    if scan.cp1252_bad_line is not None:
        raise InputError(
            f"{name}: line {scan.cp1252_bad_line} has bytes that are neither "
            "UTF-8 nor Windows-1252 text: save the file again as CSV UTF-8, or "
            "force an encoding with --encoding latin-1"
        )
    return "cp1252"


def _sniff_delimiter(text: str) -> str | None:
    """The delimiter giving the most lines with one same field count (>1); None: one column."""
    lines = text.splitlines()
    lines = (lines[:-1] or lines)[:50]  # the last line of the head may be cut short
    best: tuple[int, int, str] | None = None
    for delim in _DELIMITERS:
        counts: dict[int, int] = {}
        for rec in csv.reader(lines, delimiter=delim):
            if rec:
                counts[len(rec)] = counts.get(len(rec), 0) + 1
        scored = [(n, width) for width, n in counts.items() if width > 1]
        if scored:
            n, width = max(scored)
            if best is None or (n, width) > best[:2]:
                best = (n, width, delim)
    return None if best is None else best[2]


@dataclass(frozen=True)
class _TextFormat:
    path: Path
    name: str
    encoding: str
    delimiter: str

    def records(self, after: int) -> Generator[tuple[int, list[str]], None, None]:
        """(line where it starts, fields) of every record starting after line ``after``."""
        line = 0
        try:
            with self.path.open(encoding=self.encoding, newline="") as f:
                reader = csv.reader(f, delimiter=self.delimiter, quotechar='"', strict=False)
                for rec in reader:
                    start, line = line + 1, reader.line_num
                    if line - start >= _MAX_RECORD_LINES:
                        raise self.runaway(start, line)
                    if len(rec) > _MAX_COLUMNS:
                        raise self.too_wide(start, len(rec))
                    if start > after:
                        yield start, rec
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            raise self.error(exc, line + 1) from exc

    def runaway(self, start: int, end: int) -> InputError:
        return InputError(
            f"{self.name}: line {start}: a quoted cell runs over "
            f'{end - start + 1} lines: is a closing quote (") missing? Fix that '
            "line, or export the file again"
        )

    def too_wide(self, start: int, width: int) -> InputError:
        return InputError(
            f"{self.name}: line {start} has {width:,} columns, more than a "
            f"spreadsheet holds ({_MAX_COLUMNS:,}): is the delimiter right? Force "
            "it with --delimiter ';' (or tab), or export the file again"
        )

    def error(self, exc: Exception, line: int) -> InputError:
        if isinstance(exc, UnicodeDecodeError):
            line = _first_bad_line(self.path, self.encoding)[0] or line
            return InputError(
                f"{self.name}: line {line} cannot be read as {self.encoding}: "
                "save the file again as CSV UTF-8, or force an encoding with "
                "--encoding cp1252"
            )
        if isinstance(exc, csv.Error):
            return InputError(
                f'{self.name}: line {line}: {exc}: is a closing quote (") '
                "missing? Fix that line, or export the file again"
            )
        return InputError(f"{self.name} cannot be read at line {line} ({exc})")


def _is_blank(rec: list[str]) -> bool:
    return all(not c or c.isspace() for c in rec)


class _TextSource(Source):
    def __init__(
        self,
        info: SourceInfo,
        fmt: _TextFormat,
        after: int,
        layout: _Layout,
        line_ends: str | None = None,
    ) -> None:
        super().__init__(info)
        self._fmt, self._after, self._layout = fmt, after, layout
        self._line_ends = line_ends
        """Set when the csv module reads one record per line ending so (see ``columns``)."""

    def columns(self) -> Iterator[RowColumns]:
        if self._line_ends is None:
            return super().columns()
        from importer.columnar_reader import TextLayout, text_columns

        fmt, layout = self._fmt, self._layout
        plan = TextLayout(
            fmt.path,
            self.info.path,
            fmt.encoding,
            fmt.delimiter,
            self._line_ends,
            self._after,
            layout.phone,
            layout.days,
        )
        return text_columns(plan, self.info.sheets[0], self.rows)

    def rows(self) -> Iterator[RawRow]:
        # One loop, no nested generator: this runs once per row of files of millions of rows.
        sheet, fmt, after = self.info.sheets[0], self._fmt, self._after
        sheet.rows = sheet.blank_rows = 0
        name, pi, di = self.info.path, self._layout.phone, self._layout.days
        line = 0
        try:
            with fmt.path.open(encoding=fmt.encoding, newline="") as f:
                reader = csv.reader(f, delimiter=fmt.delimiter, quotechar='"', strict=False)
                for rec in reader:
                    start, line = line + 1, reader.line_num
                    if line - start >= _MAX_RECORD_LINES:
                        raise fmt.runaway(start, line)
                    if start <= after:
                        continue
                    n = len(rec)
                    if n > _MAX_COLUMNS:
                        raise fmt.too_wide(start, n)
                    phone = rec[pi] if pi < n else ""
                    if (not phone or phone.isspace()) and _is_blank(rec):
                        sheet.blank_rows += 1
                        continue
                    sheet.rows += 1
                    yield RawRow(
                        name, "", start, phone, None if di is None else (rec[di] if di < n else "")
                    )
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            raise _one_lined(fmt.error(exc, line + 1)) from exc
        except InputError as exc:
            _one_line(exc)
            raise


def _text_format(
    name: str, p: Path, scan: _ByteScan, options: ReadOptions
) -> tuple[_TextFormat, int]:
    """The encoding and delimiter of a text file, and the line of Excel's "sep=" hint (or 0)."""
    encoding = _encoding(name, p, scan, options.encoding)
    head = codecs.getincrementaldecoder(encoding)(errors="replace").decode(scan.head)
    first, _, rest = head.partition("\n")
    first = first.strip().lstrip("\ufeff")
    delimiter = _delimiter(options.delimiter) if options.delimiter else None
    hint = 0
    if first.lower().startswith("sep=") and len(first) == 5:  # Excel's delimiter hint line
        delimiter, hint, head = delimiter or first[4], 1, rest
    delimiter = delimiter or _sniff_delimiter(head)
    return _TextFormat(p, name, encoding, delimiter or _ONE_COLUMN), hint


def _open_text(name: str, p: Path, options: ReadOptions) -> Source:
    try:
        scan = _scan_bytes(p)
    except OSError as exc:
        raise InputError(f"{name} cannot be read ({exc.strerror or exc})") from exc
    if scan.size == 0:
        raise InputError(f"{name} is empty (0 bytes): export it again with its rows")
    _check_bytes(name, scan, options.encoding)
    fmt, hint = _text_format(name, p, scan, options)
    first = fmt.records(hint)
    head = list(itertools.islice(first, options.header_scan_rows))
    first.close()
    if all(_is_blank(rec) for _, rec in head):
        raise InputError(
            f"{name} has only blank lines at the top: remove them and try again"
            if len(head) == options.header_scan_rows
            else f"{name} has no rows (only blank lines): export it again"
        )
    layout = _locate(name, "", head, 0, options)
    after = layout.header_row or hint
    records = fmt.records(after)
    has_data = any(not _is_blank(rec) for _, rec in records)
    records.close()
    if not has_data:
        raise InputError(
            f"{name} has no data rows below the header (row {layout.header_row}): "
            "export it again with its rows, or remove it from the run"
        )
    delimiter = None if fmt.delimiter == _ONE_COLUMN else fmt.delimiter
    info = SourceInfo(
        name, scan.sha256, scan.size, "csv", fmt.encoding, delimiter, [layout.info], []
    )
    return _TextSource(info, fmt, after, layout, _bulk_line_ends(scan, fmt.encoding))


_BULK_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "cp1252"})


def _bulk_line_ends(scan: _ByteScan, encoding: str) -> str | None:
    """The line end of a file the csv module reads one record per line, else None.

    So it is when no quote character occurs, every line ends the same way (LF or CRLF), and the
    encoding keeps ASCII bytes as they are (UTF-8 that decodes, or cp1252 with no undefined
    byte), so that those bytes split the file as the decoded text would be split.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return None
    if scan.quote or name not in _BULK_ENCODINGS or scan.nul_line is not None:
        return None
    if name.startswith("utf-8") and not scan.utf8_ok:
        return None
    if name == "cp1252" and scan.cp1252_bad_line is not None:
        return None
    return scan.line_ends


# ---------------------------------------------------------------- workbooks


@contextmanager
def _no_panic(name: str, p: Path) -> Iterator[None]:
    """calamine panics on some damaged files; pyo3 raises that as ``PanicException``, a
    ``BaseException`` that no module exports, hence the test on its name."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        first = (str(exc).splitlines() or ["a panic"])[0]
        raise not_a_workbook(name, p, f"the reader failed on it: {first}") from exc


def _load(name: str, p: Path) -> CalamineWorkbook:
    try:
        return CalamineWorkbook.from_path(p)
    except PasswordError as exc:
        raise password_protected(name) from exc
    except (CalamineError, OSError, ValueError) as exc:
        raise not_a_workbook(name, p, str(exc).split("\n")[0]) from exc


def _cell(value: Any) -> CellValue:
    """A calamine cell as a ``CellValue``: "" is None, dates and times are ISO text."""
    if value.__class__ is str:
        return value or None
    if isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _sheet_rows(
    name: str, wb: CalamineWorkbook | None, sheet: str, parsed: Any = None
) -> tuple[int, Iterator[Any], Any]:
    """(column offset, rows from row 1, the parsed sheet) of one sheet (``parsed``: already
    parsed)."""
    try:
        data = parsed if parsed is not None else wb.get_sheet_by_name(sheet)  # type: ignore[union-attr]
        start = data.start
        return (start[1] if start else 0), iter(data.iter_rows()), data
    except (CalamineError, ValueError) as exc:
        raise InputError(
            f'{name}, sheet "{sheet}" cannot be read ({exc}): open it in Excel '
            "and save it again as .xlsx"
        ) from exc


def _blank(cells: list[Any]) -> bool:
    return all(c == "" or (c.__class__ is str and c.isspace()) for c in cells)


class _WorkbookSource(Source):
    def __init__(self, info: SourceInfo, p: Path, layouts: list[_Layout]) -> None:
        super().__init__(info)
        self._path, self._layouts = p, layouts

    def rows(self) -> Iterator[RawRow]:
        name = self.info.path
        try:
            with _no_panic(name, self._path):
                parsed = all(layout.parsed is not None for layout in self._layouts)
                wb = None if parsed else _load(name, self._path)
                try:
                    for layout in self._layouts:
                        yield from self._sheet(name, wb, layout)
                finally:
                    if wb is not None:
                        wb.close()
        except InputError as exc:
            _one_line(exc)
            raise

    def columns(self) -> Iterator[RowColumns]:
        from importer.columnar_reader import workbook_columns  # pyarrow, only where it is used

        name = self.info.path
        try:
            with _no_panic(name, self._path):
                all_parsed = all(layout.parsed is not None for layout in self._layouts)
                wb = None if all_parsed else _load(name, self._path)
                try:
                    for layout in self._layouts:
                        parsed, layout.parsed = layout.parsed, None  # read once
                        _, rows, _ = _sheet_rows(name, wb, layout.info.name, parsed)
                        del parsed  # the rows hold the sheet until they are all read
                        plan = (layout.phone, layout.days, layout.header_row or 0)
                        yield from workbook_columns(
                            name, layout.info, layout.info.name, rows, plan, _cell
                        )
                finally:
                    if wb is not None:
                        wb.close()
        except InputError as exc:
            _one_line(exc)
            raise

    def _sheet(self, name: str, wb: CalamineWorkbook | None, layout: _Layout) -> Iterator[RawRow]:
        sheet = layout.info
        sheet.rows = sheet.blank_rows = 0
        pi, di, skip = layout.phone, layout.days, layout.header_row or 0
        parsed, layout.parsed = layout.parsed, None  # read once; a second read parses again
        _, rows, _ = _sheet_rows(name, wb, sheet.name, parsed)
        for i, cells in enumerate(rows, 1):
            if i <= skip:
                continue
            phone = cells[pi] if pi < len(cells) else ""
            if (phone == "" or (phone.__class__ is str and phone.isspace())) and _blank(cells):
                sheet.blank_rows += 1
                continue
            sheet.rows += 1
            days = None if di is None else _cell(cells[di] if di < len(cells) else "")
            yield RawRow(name, sheet.name, i, _cell(phone), days)


def _probe_sheet(
    name: str, wb: CalamineWorkbook, sheet: str, options: ReadOptions
) -> tuple[_Layout | None, str, Scan]:
    """(layout or None, why not, the scanned rows) of one sheet."""
    label = f'{name}, sheet "{sheet}"'
    offset, rows, parsed = _sheet_rows(name, wb, sheet)
    scan: Scan = []
    for i, cells in enumerate(rows, 1):
        scan.append((i, cells))
        if i >= options.header_scan_rows:
            break
    if not any(not _blank(c) for _, c in scan):
        return None, "empty", scan
    try:
        layout = _locate(label, sheet, scan, offset, options)
    except _NoPhoneColumn as exc:
        if options.sheets:
            raise
        return None, exc.why, scan
    skip = layout.header_row or 0
    layout.parsed = parsed
    for i, cells in scan:
        if i > skip and not _blank(cells):
            return layout, "", scan
    for cells in rows:
        if not _blank(cells):
            return layout, "", scan
    return None, f"no data rows below the header (row {layout.header_row})", scan


def _open_workbook(name: str, p: Path, magic: bytes, options: ReadOptions) -> Source:
    fmt = workbook_format(name, p, magic)
    wb = _load(name, p)
    layouts: list[_Layout] = []
    skipped: list[tuple[str, str]] = []
    seen: list[str] = []
    try:
        real = [m.name for m in wb.sheets_metadata]
        for wanted in options.sheets:
            if wanted not in real:
                raise InputError(
                    f'{name}: no sheet named "{wanted}"; its sheets are '
                    f"{_quoted(real)}. Name one with --sheet NAME"
                )
        for meta in wb.sheets_metadata:
            why = _skip_why(meta, options)
            if not why:
                layout, why, scan = _probe_sheet(name, wb, meta.name, options)
                if layout is not None:
                    layouts.append(layout)
                    continue
                if options.sheets:
                    raise InputError(
                        f'{name}, sheet "{meta.name}" is {why}: name another with --sheet NAME'
                        if why == "empty"
                        else f'{name}, sheet "{meta.name}" has {why}'
                    )
                seen.append(f'"{meta.name}" (headers {_quoted(_seen_headers(scan))})')
            skipped.append((meta.name, why))
    finally:
        wb.close()
    if not layouts:
        _refuse_workbook(name, skipped, seen)
    info = SourceInfo(
        name,
        sha256_file(p),
        p.stat().st_size,
        fmt,
        None,
        None,
        [lay.info for lay in layouts],
        skipped,
    )
    return _WorkbookSource(info, p, layouts)


def _skip_why(meta: Any, options: ReadOptions) -> str:
    """Why a sheet is not even looked at ("" when it is)."""
    if options.sheets:
        return "" if meta.name in options.sheets else "not asked for"
    if meta.visible != SheetVisibleEnum.Visible:
        return "hidden"
    if meta.typ != SheetTypeEnum.WorkSheet:
        return "not a worksheet"
    return ""


def _refuse_workbook(name: str, skipped: list[tuple[str, str]], seen: list[str]) -> None:
    for sheet, why in skipped:
        if why.startswith("no data rows"):
            raise InputError(
                f'{name}, sheet "{sheet}" has {why}: export it again with its '
                "rows, or remove it from the run"
            )
    raise InputError(
        f"{name}: no sheet has a phone column; sheets seen: "
        f"{', '.join(seen) or 'none visible'}. Name the column with "
        "--phone-column NAME or a position (--phone-column 2), and the sheet "
        "with --sheet NAME."
    )

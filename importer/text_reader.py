"""Read delimited text files (CSV, TSV, TXT): check every byte, detect the format, stream rows.

``_open_text`` hashes the file and checks every byte (NULs, undecodable bytes, runaway lines),
finds its encoding and delimiter (``_TextFormat``), locates the header (``importer.header_finder``)
and returns a ``_TextSource``, whose ``rows()`` streams ``RawRow``s through the csv module. Every
csv, codecs and OS exception becomes an ``InputError`` naming the file, the line and the fix.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from importer.config import ReadOptions
from importer.errors import InputError
from importer.header_finder import _Layout, _locate
from importer.model import RawRow
from importer.source import _CHUNK, Source, SourceInfo, _one_line, _one_lined

if TYPE_CHECKING:
    from importer.columns import RowColumns

_HEAD_BYTES = 64 * 1024
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


def _delimiter(text: str) -> str:
    return "\t" if text.lower() in {"tab", "\\t"} else text


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

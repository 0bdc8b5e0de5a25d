"""The rows of an opened input as batches of columns (``RowColumns``): the bulk path's reader.

``Source.columns()`` (``importer.reader``) comes here. A text file that the csv module reads one
record per line (no quote character anywhere, one kind of line end, an encoding that keeps ASCII
bytes as they are: the reader checks that while it hashes the file) is split into lines and
fields by pyarrow, a few MiB at a time. A workbook sheet's rows are taken from calamine a chunk
at a time, their phone and days cells picked out a column at a time (``workbook_columns``). Any
other input is read by its own ``Source.rows()``, whose rows are grouped into columns here
(``grouped``).

Either way the rows, their numbers and the sheet's ``rows``/``blank_rows`` counts are those of
``Source.rows()``, and a line the csv module would refuse (too many fields, a field past its
size limit) is read by ``Source.rows()`` from that part of the file on, so that it raises the
same error (``tests/test_columnar_reader.py``).
"""

from __future__ import annotations

import codecs
import csv
import gc
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import BATCH_ROWS, RowColumns
from importer.model import CellValue, RawRow

__all__ = ["TextLayout", "grouped", "text_columns", "workbook_columns"]

_READ_BYTES = 2 * 1024 * 1024
"""Bytes of a text file split at a time (cut after its last line end): about one batch of
lines. The next part is split while this one is judged, and both cost memory meanwhile (peak
RSS of a million-line dry run, measured: 239-246 MiB with 8 MiB parts split one at a time;
read ahead, 244-252 with 2 MiB parts, 242-270 with 4 MiB, 264-279 with 8 MiB)."""
_TAIL_BYTES = 64 * 1024
"""Bytes at the end of a part searched first for its last line end."""
_MAX_LINE_BYTES = 1024 * 1024
"""``text_reader._MAX_LINE_BYTES``: a text file with a longer line is refused when opened."""
_MAX_COLUMNS = 16_384
"""``text_reader._MAX_COLUMNS``: a record with more fields is refused."""
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Every character ``str.isspace()`` is true for (a test checks it against Python's own)."""
_TRUSTED_FLOAT_LIMIT = 1e15
_HUGE = 10**18


class _Counts(Protocol):
    rows: int
    blank_rows: int


@dataclass(frozen=True)
class TextLayout:
    """How to split one text file: what ``text_reader._TextSource`` found when it opened it."""

    path: Path
    name: str
    encoding: str
    delimiter: str
    line_end: str
    """ "\\n" or "\\r\\n": every line of the file ends so (but maybe the last)."""
    after: int
    """Lines up to this one (the header, a "sep=" line) hold no data."""
    phone: int
    days: int | None


def text_columns(
    layout: TextLayout, counts: _Counts, rows: Callable[[], Iterator[RawRow]]
) -> Iterator[RowColumns]:
    """The data rows of a text file in batches, filling ``counts`` as ``rows()`` would.

    ``rows`` is the file's own row reader, used from the first line of a part of the file that
    holds a line the csv module would refuse (so that it raises its own error there). Each part
    of the file is read and split in a second thread while the one before is used (pyarrow lets
    go of the interpreter meanwhile).
    """
    counts.rows = counts.blank_rows = 0
    refused = None
    with closing(_read_ahead(_text_parts(layout))) as parts:
        for part in parts:
            if isinstance(part, int):
                refused = part
                break
            counts.blank_rows += part.blank_rows
            counts.rows += len(part.numbers)
            for start in range(0, len(part.numbers), BATCH_ROWS):
                yield RowColumns(
                    layout.name,
                    "",
                    part.numbers.slice(start, BATCH_ROWS),
                    part.phones.slice(start, BATCH_ROWS),
                    None if part.days is None else part.days.slice(start, BATCH_ROWS),
                )
    if refused is not None:
        yield from _from_line(rows, refused)


@dataclass(frozen=True)
class _TextPart:
    """The data rows of some lines of a text file: their numbers, phone and days fields (None:
    no days column), and how many blank lines were among them."""

    numbers: pa.Array
    phones: pa.Array
    days: pa.Array | None
    blank_rows: int


def _text_parts(layout: TextLayout) -> Generator[_TextPart | int, None, None]:
    """The data rows of the file a part at a time; at a part holding a line the csv module would
    refuse, the number of that part's first line instead, and no more."""
    done = 0  # lines before the current part
    for lines in _line_parts(layout):
        first = done + 1
        done += len(lines)
        skip = max(0, min(len(lines), layout.after - first + 1))
        fields = pc.split_pattern(lines.slice(skip), layout.delimiter)
        widths = pc.list_value_length(fields)
        if _refused(lines.slice(skip), widths):
            yield first + skip
            return
        yield _text_part(layout, fields, widths, lines.slice(skip), first + skip)


_Made = TypeVar("_Made")


def _read_ahead(parts: Generator[_Made, None, None]) -> Generator[_Made, None, None]:
    """``parts`` in order, the next one made in a second thread while this one is used (one:
    each part costs memory while it waits). An error making one is raised here; once this ends
    (closed early too), no part is being made and ``parts`` is closed."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="dnc-read-ahead")
    coming = pool.submit(next, parts, None)
    try:
        while (part := coming.result()) is not None:
            coming = pool.submit(next, parts, None)
            yield part
    finally:
        coming.cancel()
        pool.shutdown()  # waits for the part being made
        parts.close()


def _line_parts(layout: TextLayout) -> Iterator[pa.Array]:
    """The file's lines (without their ends), a part of the file at a time.

    Each part is read into a buffer of pyarrow's pool, whole lines (but the file's last one),
    the next read starting after its last line end: the parts never pass through Python bytes,
    whose freed memory the process would keep.
    """
    end = layout.line_end.encode()
    with pa.OSFile(str(layout.path), "rb") as f:
        size, at = f.size(), 0
        while at < size:
            data = _whole_lines(f, at, size)
            first, at = at == 0, at + data.size
            yield _lines(data, layout, end, first)


def _whole_lines(f: pa.NativeFile, at: int, size: int) -> pa.Buffer:
    """About ``_READ_BYTES`` of the file from ``at``, up to its last line end (or its end)."""
    want = _READ_BYTES
    while True:
        f.seek(at)
        data = f.read_buffer(want)
        if at + data.size >= size:
            return data
        # a part read holds a line end (a line over 1 MiB is refused when the file is opened);
        # the last one is looked for in its last 64 KiB first (copied as Python bytes), then in
        # all of it
        for start in (max(0, data.size - _TAIL_BYTES), 0):
            cut = data.slice(start).to_pybytes().rfind(b"\n")
            if cut >= 0:
                return data.slice(0, start + cut + 1)
        want *= 2


def _lines(data: pa.Buffer, layout: TextLayout, end: bytes, first: bool) -> pa.Array:
    """The lines of ``data`` (whole lines, the last one maybe without its end), decoded."""
    encoding = codecs.lookup(layout.encoding).name
    if encoding == "utf-8-sig" and first and data.slice(0, 3).to_pybytes() == codecs.BOM_UTF8:
        data = data.slice(3)
    elif encoding == "cp1252":
        data = pa.py_buffer(data.to_pybytes().decode("cp1252").encode("utf-8"))
    offsets = pa.array([0, data.size], pa.int64()).buffers()[1]
    text = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, data])
    lines = pc.split_pattern(text.cast(pa.large_string()), end.decode()).flatten()
    if data.size >= len(end) and data.slice(data.size - len(end)).to_pybytes() == end:
        lines = lines.slice(0, len(lines) - 1)  # what follows the last line end is no line
    return lines.cast(pa.string())


def _refused(lines: pa.Array, widths: pa.Array) -> bool:
    """Whether the csv module would refuse one of ``lines``: too many fields, or a field longer
    than its limit (a line no longer than the limit has no such field)."""
    if not len(lines):
        return False
    longest = pc.max(pc.binary_length(lines)).as_py() or 0
    return bool(pc.max(widths).as_py() > _MAX_COLUMNS or longest > csv.field_size_limit())


def _from_line(rows: Callable[[], Iterator[RawRow]], line: int) -> Iterator[RowColumns]:
    """The rows from ``line`` on, by the file's own row reader (which counts them all anew)."""
    yield from grouped(row for row in rows() if row.row >= line)


def _text_part(
    layout: TextLayout, fields: pa.Array, widths: pa.Array, lines: pa.Array, first: int
) -> _TextPart:
    """The data rows of some lines (numbered from ``first``), split into ``fields``."""
    numbers = pc.add(
        pc.cumulative_sum(pc.fill_null(pa.nulls(len(lines), pa.int64()), 1)), first - 1
    )
    blank = _blank(lines, layout.delimiter)
    data = pc.invert(blank)
    return _TextPart(
        pc.filter(numbers, data),
        pc.filter(_field(fields, widths, layout.phone), data),
        None if layout.days is None else pc.filter(_field(fields, widths, layout.days), data),
        pc.sum(blank).as_py() or 0,
    )


def _blank(lines: pa.Array, delimiter: str) -> pa.Array:
    """``text_reader._is_blank`` of each line's fields: nothing but whitespace and delimiters."""
    kept = "".join(f"\\x{{{ord(char):x}}}" for char in _WHITESPACE + delimiter)
    return pc.invert(pc.match_substring_regex(lines, f"[^{kept}]"))


def _field(fields: pa.Array, widths: pa.Array, at: int) -> pa.Array:
    """Field ``at`` of each line, "" where a line has fewer fields (as ``reader`` reads it)."""
    if not len(fields) or pc.min(widths).as_py() > at:
        return pc.list_element(fields, at)
    has = pc.greater(widths, at)
    empty = pc.fill_null(pa.nulls(len(fields), pa.string()), "")
    if not pc.any(has).as_py():
        return empty
    return pc.replace_with_mask(empty, has, pc.list_element(pc.filter(fields, has), at))


def workbook_columns(
    name: str,
    sheet: _Counts,
    sheet_name: str,
    rows: Iterator[list[Any]],
    layout: tuple[int, int | None, int],
    cell: Callable[[Any], CellValue],
) -> Iterator[RowColumns]:
    """The data rows of a workbook sheet (calamine's rows, from row 1) in batches, as
    ``workbook_reader``'s ``_WorkbookSource.rows()`` hands them on, filling ``sheet``'s counts.

    ``layout`` is (phone index, days index or None, header row or 0); ``cell`` is the reader's
    conversion of a cell (``workbook_reader._cell``). Taken a column at a time: the rows as
    lists, their phone and days cells picked out by comprehensions, and only the few cells that
    are not plain text or numbers converted one by one.
    """
    phone, days, skip = layout
    sheet.rows = sheet.blank_rows = 0
    for _ in itertools.islice(rows, skip):
        pass
    first = skip + 1  # the number of the next row
    batch = _SheetBatch()
    while chunk := _chunk(rows):
        phones = _cells(chunk, phone)
        numbers: Sequence[int] = range(first, first + len(chunk))
        first += len(chunk)
        kept = _kept_rows(chunk, phones)
        if kept is not None:
            sheet.blank_rows += len(chunk) - len(kept)
            chunk = [chunk[at] for at in kept]
            phones, numbers = [phones[at] for at in kept], [numbers[at] for at in kept]
        sheet.rows += len(chunk)
        if chunk:
            batch.add(numbers, phones, None if days is None else _cells(chunk, days), cell)
        del chunk  # its rows (every cell of them, not only the two kept) go now
        if len(batch.rows) >= _WORKBOOK_BATCH:
            yield batch.columns(name, sheet_name)
            batch = _SheetBatch()
    if batch.rows:
        yield batch.columns(name, sheet_name)


_WORKBOOK_CHUNK = 2_048
"""Workbook rows taken from calamine at a time, as Python lists of every cell of the row (a
sheet's other columns too), made and let go while calamine holds the whole sheet (issue 5:
200,000 rows' peak RSS, measured when each chunk was also judged as it was read: 147 MB with
2,048 rows, 152 with 8,192, 161 with 16,384)."""
_WORKBOOK_BATCH = 8_192
"""Rows judged as one batch (their phone and days cells only): judging costs ~140 pyarrow calls
a batch whatever its size, ~1 s more CPU for 200,000 rows in batches of 2,048 than of 8,192."""


def _chunk(rows: Iterator[list[Any]]) -> list[list[Any]]:
    """The next ``_WORKBOOK_CHUNK`` rows, made without the cycle collector: every new list
    would count toward its next pass, and its passes over the chunk's lists (which hold only
    cells, never a cycle) cost twice the making of them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return list(itertools.islice(rows, _WORKBOOK_CHUNK))
    finally:
        if collecting:
            gc.enable()


def _cells(chunk: list[list[Any]], at: int) -> list[Any]:
    """Cell ``at`` of each row ("" where a row is shorter: calamine's rows never are)."""
    try:
        return list(map(itemgetter(at), chunk))
    except IndexError:
        return [cells[at] if at < len(cells) else "" for cells in chunk]


def _kept_rows(chunk: list[list[Any]], phones: list[Any]) -> list[int] | None:
    """The places of the rows of ``chunk`` that are not blank; None: all of them.

    A row is blank when every cell is empty or white space (``workbook_reader._blank``); only a row
    whose phone cell is so can be, and those are few.
    """
    maybe = [at for at, value in enumerate(phones) if value == "" or _space(value)]
    blank = {at for at in maybe if all(value == "" or _space(value) for value in chunk[at])}
    if not blank:
        return None
    return [at for at in range(len(chunk)) if at not in blank]


def _space(value: Any) -> bool:
    return value.__class__ is str and value.isspace()


class _SheetBatch:
    """Workbook rows gathered into columns (``_Batch``'s, a chunk of rows at a time)."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.phones: list[str | None] = []
        self.days: list[CellValue] = []
        self.cells: dict[int, CellValue] = {}

    def add(
        self,
        numbers: Iterable[int],
        phones: list[Any],
        days: list[Any] | None,
        cell: Callable[[Any], CellValue],
    ) -> None:
        """Rows ``numbers``, their phone cells and days cells (None: no days column)."""
        start = len(self.rows)
        self.rows += numbers
        if days is None:
            self.days += [None] * len(phones)
        elif {value.__class__ for value in days} <= _PLAIN_NUMBERS:
            self.days += days  # numbers are their own CellValue
        else:
            self.days += [cell(value) for value in days]
        texts = [value if value.__class__ is str and value else None for value in phones]
        self.phones += texts
        for at in [at for at, text in enumerate(texts) if text is None]:  # few
            self._other(start + at, cell(phones[at]))

    def _other(self, at: int, value: CellValue) -> None:
        """A phone cell that is not non-empty text, as ``_Batch.add`` takes it."""
        if isinstance(value, str):  # a date or time, as text
            self.phones[at] = value
            return
        self.cells[at] = value
        if value is None:
            self.phones[at] = ""
        elif type(value) is float and 0 <= value < _TRUSTED_FLOAT_LIMIT and value.is_integer():
            self.phones[at] = str(int(value))
        elif type(value) is int and 0 <= value < _HUGE:
            self.phones[at] = str(value)

    def columns(self, source_file: str, sheet: str) -> RowColumns:
        return RowColumns(
            source_file,
            sheet,
            pa.array(self.rows, pa.int64()),
            pa.array(self.phones, pa.string()),
            self.days,
            self.cells,
        )


_PLAIN_NUMBERS = frozenset({float, int})


def grouped(rows: Iterable[RawRow], size: int = BATCH_ROWS) -> Iterator[RowColumns]:
    """``rows`` (of any sheets, in order) as batches of columns, one sheet per batch."""
    batch = _Batch()
    for row in rows:
        if batch.rows and (batch.source_file, batch.sheet) != (row.source_file, row.sheet):
            yield batch.columns()
            batch = _Batch()
        batch.add(row)
        if len(batch.rows) >= size:
            yield batch.columns()
            batch = _Batch()
    if batch.rows:
        yield batch.columns()


class _Batch:
    """Rows gathered into columns (see ``RowColumns`` for what a phone cell becomes)."""

    def __init__(self) -> None:
        self.source_file = self.sheet = ""
        self.rows: list[int] = []
        self.phones: list[str | None] = []
        self.days: list[CellValue] = []
        self.cells: dict[int, CellValue] = {}

    def add(self, row: RawRow) -> None:
        self.source_file, self.sheet = row.source_file, row.sheet
        at = len(self.rows)
        self.rows.append(row.row)
        self.days.append(row.days)
        phone: Any = row.phone
        kind = phone.__class__
        if kind is str:
            self.phones.append(phone)
            return
        self.cells[at] = phone
        if phone is None:
            self.phones.append("")
        elif kind is float and 0 <= phone < _TRUSTED_FLOAT_LIMIT and phone.is_integer():
            self.phones.append(str(int(phone)))
        elif kind is int and 0 <= phone < _HUGE:
            self.phones.append(str(phone))
        else:
            self.phones.append(None)

    def columns(self) -> RowColumns:
        return RowColumns(
            self.source_file,
            self.sheet,
            pa.array(self.rows, pa.int64()),
            pa.array(self.phones, pa.string()),
            self.days,
            self.cells,
        )

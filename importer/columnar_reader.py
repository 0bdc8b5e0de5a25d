"""The rows of an opened input as batches of columns (``RowColumns``): the bulk path's reader.

``Source.columns()`` (``importer.reader``) comes here. A text file that the csv module reads one
record per line (no quote character anywhere, one kind of line end, an encoding that keeps ASCII
bytes as they are: the reader checks that while it hashes the file) is split into lines and
fields by pyarrow, a few MiB at a time. Any other input is read by its own ``Source.rows()``,
whose rows are grouped into columns here (``grouped``).

Either way the rows, their numbers and the sheet's ``rows``/``blank_rows`` counts are those of
``Source.rows()``, and a line the csv module would refuse (too many fields, a field past its
size limit) is read by ``Source.rows()`` from that part of the file on, so that it raises the
same error (``tests/test_columnar_reader.py``).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import BATCH_ROWS, RowColumns
from importer.model import CellValue, RawRow

__all__ = ["TextLayout", "grouped", "text_columns"]

_READ_BYTES = 8 * 1024 * 1024
"""Bytes of a text file split at a time (cut after its last line end)."""
_MAX_COLUMNS = 16_384
"""``reader._MAX_COLUMNS``: a record with more fields is refused."""
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
    """How to split one text file: what ``reader._TextSource`` found when it opened it."""

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
    holds a line the csv module would refuse (so that it raises its own error there).
    """
    counts.rows = counts.blank_rows = 0
    done = 0  # lines before the current part
    for lines in _line_parts(layout):
        first = done + 1
        done += len(lines)
        skip = max(0, min(len(lines), layout.after - first + 1))
        fields = pc.split_pattern(lines.slice(skip), layout.delimiter)
        widths = pc.list_value_length(fields)
        if _refused(lines.slice(skip), widths):
            yield from _from_line(rows, first + skip)
            return
        yield from _text_batches(layout, counts, fields, widths, lines.slice(skip), first + skip)


def _line_parts(layout: TextLayout) -> Iterator[pa.Array]:
    """The file's lines (without their ends), a part of the file at a time."""
    end = layout.line_end.encode()
    with layout.path.open("rb") as f:
        carry = b""
        first = True
        while True:
            chunk = f.read(_READ_BYTES)
            data = carry + chunk
            if not chunk:
                if data:
                    yield _lines(data, layout, end, first)
                return
            cut = data.rfind(b"\n") + 1
            data, carry = data[:cut], data[cut:]
            if data:
                yield _lines(data, layout, end, first)
                first = False


def _lines(data: bytes, layout: TextLayout, end: bytes, first: bool) -> pa.Array:
    """The lines of ``data`` (whole lines, the last one maybe without its end), decoded."""
    encoding = codecs.lookup(layout.encoding).name
    if encoding == "utf-8-sig" and first:
        data = data.removeprefix(codecs.BOM_UTF8)
    elif encoding == "cp1252":
        data = data.decode("cp1252").encode("utf-8")
    text = pa.array([data], pa.large_binary()).cast(pa.large_string())
    lines = pc.split_pattern(text, end.decode()).flatten()
    if data.endswith(end):  # what follows the last line end is no line
        lines = lines.slice(0, len(lines) - 1)
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


def _text_batches(
    layout: TextLayout,
    counts: _Counts,
    fields: pa.Array,
    widths: pa.Array,
    lines: pa.Array,
    first: int,
) -> Iterator[RowColumns]:
    """The data rows of some lines (numbered from ``first``) in batches."""
    numbers = pc.add(
        pc.cumulative_sum(pc.fill_null(pa.nulls(len(lines), pa.int64()), 1)), first - 1
    )
    blank = _blank(lines, layout.delimiter)
    data = pc.invert(blank)
    counts.blank_rows += pc.sum(blank).as_py() or 0
    phones = pc.filter(_field(fields, widths, layout.phone), data)
    days = None if layout.days is None else pc.filter(_field(fields, widths, layout.days), data)
    numbers = pc.filter(numbers, data)
    counts.rows += len(numbers)
    for start in range(0, len(numbers), BATCH_ROWS):
        yield RowColumns(
            layout.name,
            "",
            numbers.slice(start, BATCH_ROWS),
            phones.slice(start, BATCH_ROWS),
            None if days is None else days.slice(start, BATCH_ROWS),
        )


def _blank(lines: pa.Array, delimiter: str) -> pa.Array:
    """``reader._is_blank`` of each line's fields: nothing but whitespace and delimiters."""
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

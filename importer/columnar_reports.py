"""outcomes.csv, errors.csv and the outcome rows of outcomes.xlsx, from lines held as columns.

The bulk path keeps a run's lines as pyarrow tables (``importer.columns.SheetLines``); writing
them a cell at a time through the csv module would cost more than the rest of a big run. Here
each page of lines becomes report text column by column, in C: ``reporter.safe_cell`` where a
cell starts with a risky character, the csv module's quoting (a cell holding ``,`` ``"`` CR or LF
is quoted, quotes doubled; a None is an empty cell; CRLF line ends), and for the workbook the
``<row>`` elements of ``importer.xlsx_writer``. The bytes are the ones ``importer.reporter``
writes from the journal (``tests/test_columnar_reports.py`` compares them).
"""

from __future__ import annotations

import csv
import io
import re
import threading
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass
from queue import Empty, Queue
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import RunLines, SheetLines, pair_counts
from importer.model import ATTENTION_STATUSES, OUTCOME_COLUMNS
from importer.xlsx_writer import NUMBER_CELL, NUMERIC_XLSX_COLUMNS, TEXT_CELL, xml_text

__all__ = ["Written", "write_csvs", "xlsx_rows"]

_PAGE = 2_048
"""Lines rendered at a time: a page's cells and text are ~100 bytes a line, made and freed."""
_BIG_RUN = 500_000
"""From this many lines, a run's CSV pages are ``_BIG_PAGE`` lines, rendered in ``_RENDERERS``
threads. A page costs ~60 pyarrow calls whatever its size (~3 ms of CPU, ~1.5 s a million lines
at 2,048 a page), and pages that small do not render faster in two threads (each call takes the
interpreter back from the other); pages of 8,192 lines do, ~3x faster in all than 2,048 in one
(1M lines: ~1.0 s against ~3.3 s; 16,384 or 32,768 a page are no faster). Their ~3 pages in
flight (~15 MB) are the reason a smaller run keeps ``_PAGE``, in this thread: a 200,000-line
import's reports phase is its peak memory (issue 5), a million-line dry run's peak is not."""
_BIG_PAGE = 8_192
_RENDERERS = 2
"""Threads rendering a big run's pages, while the caller's thread cuts them from the lines and
writes them."""
_XLSX_PAGE = 1_024
"""Lines of the workbook rendered at a time (~600 bytes a line, and a page is made while the
one before is compressed)."""
_RISKY_CHARS = b"=+-@\t\r"
"""``reporter.RISKY_START``."""
_RISKY_BYTES = np.zeros(256, bool)
_RISKY_BYTES[list(_RISKY_CHARS)] = True
"""Whether a byte is one of ``_RISKY_CHARS``, by byte."""
_PLAIN_NUMBER = r"^[+-]?[0-9]+(?:[.,][0-9]+)?$"
"""``reporter._PLAIN_NUMBER``, whole."""
_QUOTED_BYTES = b',"\r\n'
"""What makes the csv module quote a cell (the excel dialect)."""
_XML_SPECIAL = r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f]"
_NOT_XML_SPECIAL = bytes(b for b in range(256) if not re.match(_XML_SPECIAL.encode(), bytes([b])))
"""Every byte but those of ``_XML_SPECIAL`` (deleting them leaves a column's special bytes)."""
_XML_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_TEXT_COLUMNS = frozenset(
    {"source_file", "sheet", "raw_phone", "raw_days", "telephone", "reason", "message"}
)
"""The cells the reporter makes safe (``Journal.rows``' text columns; ``status`` holds only
Status values)."""
_ERROR_SOURCES = ("raw_phone", "raw_days", "status", "reason", "message", "source_file", "sheet",
                  "row", "part")  # fmt: skip
_ATTENTION = pa.array(sorted(status.value for status in ATTENTION_STATUSES), pa.string())


class Written:
    """What was written: lines, and lines by (status, reason) as written (``reporter._Tally``)."""

    def __init__(self) -> None:
        self.lines = 0
        self.pairs: Counter[tuple[str, str]] = Counter()

    def count(self, status: pa.Array, reason: pa.Array) -> None:
        self.lines += len(status)
        self.pairs.update(pair_counts(status, reason))


def write_csvs(lines: RunLines, outcomes: IO[bytes], errors: IO[bytes]) -> Written:
    """Write every line to ``outcomes`` and the lines that need attention to ``errors`` (both
    opened binary, BOM and header already written); return what was written.

    A big run's pages are rendered in ``_RENDERERS`` threads (see ``_BIG_RUN``), written here in
    order.
    """
    written = Written()
    pages: Generator[_CsvPage, None, None]
    if lines.count >= _BIG_RUN:
        pages = _rendered(lines.pages(_BIG_PAGE))
    else:
        pages = (_csv_page(sheet, table) for sheet, table in lines.pages(_PAGE))
    with closing(pages):  # on an error writing, the rendering threads end before it is raised
        for page in pages:
            outcomes.write(page.outcomes)
            if page.errors is not None:
                errors.write(page.errors)
            written.lines += page.lines
            written.pairs.update(page.pairs)
    return written


@dataclass(frozen=True)
class _CsvPage:
    """A page of lines as written: its outcomes.csv and errors.csv text (None: no line of it
    needs attention), and its lines and (status, reason) pairs as ``Written`` counts them."""

    outcomes: memoryview
    errors: memoryview | None
    lines: int
    pairs: Counter[tuple[str, str]]


def _csv_page(sheet: SheetLines, table: pa.Table) -> _CsvPage:
    cells = _csv_cells(sheet, table)
    attention = pc.is_in(_column(sheet, table, "status"), value_set=_ATTENTION)
    needed = pc.any(attention).as_py()
    return _CsvPage(
        outcomes=_joined([cells[name] for name in OUTCOME_COLUMNS]),
        errors=_joined([_kept(cells[name], attention) for name in _ERROR_SOURCES])
        if needed
        else None,
        lines=table.num_rows,
        pairs=pair_counts(cells["status"], _safe(table.column("reason"))),
    )


def _rendered(
    pages: Iterator[tuple[SheetLines, pa.Table]],
) -> Generator[_CsvPage, None, None]:
    """``_csv_page`` of every page, in order, made in ``_RENDERERS`` threads: at most one page
    more than that is made, or waits to be taken, at a time. An error making one is raised here;
    when the caller stops taking them (``close``), the pages not begun are dropped and those
    begun finished before this returns."""
    with ThreadPoolExecutor(_RENDERERS, thread_name_prefix="dnc-csv-pages") as pool:
        made: deque[Future[_CsvPage]] = deque()
        try:
            for page in pages:
                made.append(pool.submit(_csv_page, *page))
                if len(made) > _RENDERERS:  # one more waits: the threads go on while it is written
                    yield made.popleft().result()
            while made:
                yield made.popleft().result()
        finally:
            for future in made:
                future.cancel()


def xlsx_rows(lines: RunLines, written: Written) -> Iterator[memoryview]:
    """The ``<row>`` elements of every line (UTF-8), page by page, counted into ``written``.

    Each page's rows are made by one concatenation of every cell's pieces (its markup as one
    value for all lines, its text), so that each cell's text is copied once; and made in a
    second thread, the next page while the caller compresses this one (pyarrow and zlib both
    let go of the interpreter meanwhile).
    """
    return _made_ahead(_xlsx_pages(lines, written))


def _xlsx_pages(lines: RunLines, written: Written) -> Iterator[memoryview]:
    for sheet, table in lines.pages(_XLSX_PAGE):
        pieces: list[pa.Array | str] = ["<row>"]
        for name in OUTCOME_COLUMNS:
            if name in ("source_file", "sheet"):
                value = sheet.source_file if name == "source_file" else sheet.sheet
                pieces.append(_xml_cell(value))
            elif name in NUMERIC_XLSX_COLUMNS:
                pieces += _xml_number(_column(sheet, table, name))
            else:
                pieces += _xml_text(_safe_column(sheet, table, name))
        written.count(_column(sheet, table, "status"), _safe(table.column("reason")))
        pieces.append("</row>")
        yield _data(pc.binary_join_element_wise(*pieces, ""))


def _made_ahead(items: Iterator[memoryview]) -> Iterator[memoryview]:
    """``items`` in order, each made in a second thread while the one before is used."""
    made: Queue[tuple[memoryview | None, Exception | None]] = Queue(maxsize=1)
    stop = threading.Event()

    def make() -> None:
        failed = None
        try:
            for item in items:
                if stop.is_set():
                    return
                made.put((item, None))
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread, below
            failed = exc
        made.put((None, failed))

    thread = threading.Thread(target=make, name="dnc-xlsx-rows", daemon=True)
    thread.start()
    try:
        while True:
            item, failed = made.get()
            if failed is not None:
                raise failed
            if item is None:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # taking what it still puts, so that it ends
            with suppress(Empty):
                made.get(timeout=0.05)


def _xml_cell(value: str) -> str:
    """One text cell as ``xlsx_writer`` writes it (made safe first, as every text cell)."""
    from importer.reporter import safe_cell

    return TEXT_CELL.format(xml_text(safe_cell(value))) if value else "<c/>"


def _kept(cells: pa.Array | pa.Scalar, at: pa.Array) -> pa.Array | pa.Scalar:
    return cells if isinstance(cells, pa.Scalar) else pc.filter(cells, at)


def _column(sheet: SheetLines, table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` of the outcome columns, for every line of ``table``."""
    if name in ("source_file", "sheet"):
        value = sheet.source_file if name == "source_file" else sheet.sheet
        return pc.take(pa.array([value], pa.string()), _zeros(table.num_rows))
    if name == "batch" and "batch" not in table.column_names:
        return pa.nulls(table.num_rows, pa.int64())
    column = table.column(name)
    return _one_array(column)


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one array (a single chunk as it is: ``combine_chunks`` would copy it)."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _zeros(size: int) -> pa.Array:
    return pc.fill_null(pa.nulls(size, pa.int8()), 0)


def _safe_column(sheet: SheetLines, table: pa.Table, name: str) -> pa.Array:
    column = _column(sheet, table, name)
    return _safe(column) if name in _TEXT_COLUMNS else column


def _safe(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``reporter.safe_cell`` of every cell: a leading ' where a spreadsheet would run it."""
    column = _one_array(column)
    if not _holds(column, _RISKY_CHARS):
        return column
    first = _first_bytes(column)
    if not _RISKY_BYTES[first].any():
        return column
    risky = pa.array(_RISKY_BYTES[first])
    some = pc.filter(column, risky)
    escaped = pc.if_else(
        pc.match_substring_regex(some, _PLAIN_NUMBER),
        some,
        pc.binary_join_element_wise("'", some, ""),
    )
    return pc.replace_with_mask(column, risky, escaped)


def _first_bytes(column: pa.Array) -> np.ndarray:
    """The first byte of every cell of a string column (0 for an empty one), read at the
    cells' offsets: a risky first character is ASCII, so its first byte tells."""
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset :][: len(column) + 1]
    buffer = column.buffers()[2]
    if buffer is None or not buffer.size:
        return np.zeros(len(column), np.uint8)
    data = np.frombuffer(buffer, np.uint8)
    first: np.ndarray = data[np.minimum(offsets[:-1], len(data) - 1)]
    first[offsets[1:] == offsets[:-1]] = 0
    return first


def _holds(column: pa.Array, chars: bytes) -> bool:
    """Whether any cell of a string column holds one of ``chars`` (ASCII), in one pass over
    its bytes (memchr; most pages hold none: their cells need no per-cell look)."""
    data = bytes(_data(column))
    return any(data.find(char) >= 0 for char in chars)


def _csv_cells(sheet: SheetLines, table: pa.Table) -> dict[str, pa.Array | pa.Scalar]:
    """Every outcome column of ``table`` as the csv module writes its cells (the sheet's own
    columns as one value)."""
    cells: dict[str, pa.Array | pa.Scalar] = {}
    for name in OUTCOME_COLUMNS:
        if name in ("source_file", "sheet"):
            value = sheet.source_file if name == "source_file" else sheet.sheet
            cells[name] = pa.scalar(_csv_text(value, name), pa.string())
        elif name in NUMERIC_XLSX_COLUMNS:
            column = _column(sheet, table, name)
            same = _one_value(column)
            cells[name] = (
                pc.fill_null(pc.cast(column, pa.string()), "")
                if same is None
                else pa.scalar("" if same is _NULL else str(same), pa.string())
            )
        else:
            cells[name] = _quoted(_safe_column(sheet, table, name))
    return cells


_NULL = object()


def _one_value(column: pa.Array) -> object:
    """The one value every cell of a number column holds (``_NULL``: all are empty), or None
    (a line's part is 1 but for split cells; before sending, no line has a batch)."""
    if column.null_count == len(column):
        return _NULL
    if column.null_count:
        return None
    least, most = pc.min_max(column).values()
    return least.as_py() if least == most else None


def _csv_text(value: str, name: str) -> str:
    """One text cell as the csv module writes it (after safe_cell, as every text cell)."""
    from importer.reporter import safe_cell

    line = io.StringIO()
    csv.writer(line).writerow([safe_cell(value) if name in _TEXT_COLUMNS else value, ""])
    return line.getvalue()[: -len(",\r\n")]


def _quoted(column: pa.Array) -> pa.Array:
    """The csv module's quoting of every cell."""
    needs = _cells_holding(column, _QUOTED_BYTES)
    if needs is None:
        return column
    some = pc.filter(column, needs)
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(some, '"', '""'), '"', "")
    return pc.replace_with_mask(column, needs, quoted)


def _cells_holding(column: pa.Array, chars: bytes) -> pa.Array | None:
    """Which cells of a string column hold one of ``chars`` (ASCII; None: none does), from a
    search of its bytes (memchr): the few found are placed among the cells by their offsets."""
    data = bytes(_data(column))
    found = []
    for char in chars:
        at = data.find(char)
        while at >= 0:
            found.append(at)
            at = data.find(char, at + 1)
    if not found:
        return None
    offsets = memoryview(column.buffers()[1]).cast("i")
    offsets = offsets[column.offset : column.offset + len(column) + 1]
    first = offsets[0]
    cells = sorted({bisect_right(offsets, first + at) - 1 for at in found})
    positions = pc.subtract(
        pc.cumulative_sum(pc.fill_null(pa.nulls(len(column), pa.int64()), 1)), 1
    )
    return pc.is_in(positions, value_set=pa.array(cells, pa.int64()))


def _joined(cells: list[pa.Array | pa.Scalar]) -> memoryview:
    """The lines of ``cells`` (a column, or one value for all, each): comma-separated,
    CRLF-ended, as bytes."""
    *first, last = cells  # the last cell is a column (batch, part)
    ended = pc.binary_join_element_wise(last, "\r\n", "")
    return _data(pc.binary_join_element_wise(*first, ended, ","))


def _data(lines: pa.Array) -> memoryview:
    """The bytes of a string column end to end (its values buffer)."""
    if not len(lines):
        return memoryview(b"")
    offsets = lines.buffers()[1]
    first = int.from_bytes(offsets[4 * lines.offset : 4 * lines.offset + 4], "little")
    last_at = 4 * (lines.offset + len(lines))
    last = int.from_bytes(offsets[last_at : last_at + 4], "little")
    return memoryview(lines.buffers()[2])[first:last]


def _xml_text(column: pa.Array) -> list[pa.Array | str]:
    """The pieces of text cells as ``xlsx_writer`` writes them: escaped inline strings, an
    empty cell ``<c/>``."""
    if bytes(_data(column)).translate(None, _NOT_XML_SPECIAL):  # any special byte at all
        special = pc.match_substring_regex(column, _XML_SPECIAL)
        if pc.any(special).as_py():
            some = pc.replace_substring_regex(pc.filter(column, special), _XML_ILLEGAL, "\ufffd")
            for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;")):
                some = pc.replace_substring(some, char, entity)
            column = pc.replace_with_mask(column, special, some)
    before, after = TEXT_CELL.split("{}")
    empty = pc.equal(column, "")
    if not pc.any(empty).as_py():
        return [before, column, after]
    cell = pc.binary_join_element_wise(before, column, after, "")
    return [pc.if_else(empty, "<c/>", cell)]


def _xml_number(column: pa.Array) -> list[pa.Array | str]:
    """The pieces of number cells as ``xlsx_writer`` writes them: ``<c><v>N</v></c>``, None an
    empty cell."""
    same = _one_value(column)
    if same is not None:
        return ["<c/>" if same is _NULL else NUMBER_CELL.format(same)]
    before, after = NUMBER_CELL.split("{}")
    if not column.null_count:
        return [before, pc.cast(column, pa.string()), after]
    cell = pc.binary_join_element_wise(before, pc.cast(column, pa.string()), after, "")
    return [pc.fill_null(cell, "<c/>")]

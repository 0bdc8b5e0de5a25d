"""The columnar records of the bulk path: ``RowColumns`` (reader -> validator) and the lines.

``RowColumns`` holds what a run of ``RawRow``s of one sheet holds, as pyarrow columns;
``importer.columnar_validator`` turns it into a table of outcome lines (``LINE_SCHEMA``: the
``OUTCOME_COLUMNS`` but ``source_file``, ``sheet`` and ``batch``), kept with its sheet in a
``SheetLines``. ``importer.model`` keeps the row-at-a-time records; these say the same thing.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from importer.journal import LineCounts
from importer.model import CellValue, RawRow, Reason, Status

__all__ = [
    "BATCH_ROWS",
    "LINE_SCHEMA",
    "SENT_AS",
    "SENT_MESSAGE",
    "Duplicates",
    "RowColumns",
    "RunLines",
    "SheetLines",
    "pair_counts",
    "pyarrow_without_pandas",
    "with_messages",
]

BATCH_ROWS = 65_536
"""Rows per batch: big enough that the work per column pays, small enough to stay in cache."""

LINE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("part", pa.int64()),
        ("raw_phone", pa.string()),
        ("raw_days", pa.string()),
        ("telephone", pa.string()),
        ("days_block", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
    ]
)
"""The outcome columns of one sheet's lines (``source_file``, ``sheet`` are the sheet's; ``batch``
is null until a batch is sent)."""

SENT_AS = "sent_as"
"""A column the bulk path's tables may hold besides ``LINE_SCHEMA``'s (dictionary of int8 to
string): where it is set and ``message`` is null, the message is it and the line's telephone
(``valid CO mobile number; sent as `` + ``3191234567``). Most lines of a big run are such, and
their messages would take ~45 of every ~120 bytes a line holds; ``with_messages`` writes them."""
SENT_MESSAGE = "sent_message"
"""Another such column, set by ``sent_lines.refresh_sent`` (dictionary of int32 to string):
where it is set and ``message`` is null, the message is it, a sent line's batch's message (one
per batch, held once: ~8 MB less peak memory for 200,000 sent lines)."""


class _NoPandas:
    """A module finder that finds no pandas (see ``pyarrow_without_pandas``)."""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not looked for by the bulk path")
        return None


def pyarrow_without_pandas() -> None:
    """Let pyarrow take Python values without importing pandas (~0.4 s and ~35 MB here).

    pyarrow looks for pandas once, the first time it converts a Python value (to tell pandas
    objects apart), and imports it if it is installed; the bulk path hands it none. This makes
    that one look find nothing. pandas stays importable, and pyarrow's own pandas methods
    (``to_pandas``, ``from_pandas``) import it when they are called, after which pyarrow knows
    pandas objects again. Nothing changes once pandas is imported.
    """
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _NoPandas)
    try:
        shim = getattr(pa.lib, "_pandas_api", None)
        if shim is not None:
            bool(shim.have_pandas)  # the look of pyarrow's Python side
        pa.scalar(0)  # and of its C++ side
    finally:
        sys.meta_path.remove(_NoPandas)


def with_messages(table: pa.Table) -> pa.Table:
    """``table`` with every message written out, without ``SENT_MESSAGE`` nor ``SENT_AS`` (see
    there)."""
    if SENT_MESSAGE in table.column_names:
        sent = table.column(SENT_MESSAGE).cast(pa.string())
        table = table.drop_columns([SENT_MESSAGE])
        at = table.schema.get_field_index("message")
        table = table.set_column(at, "message", pc.coalesce(table.column(at), sent))
    if SENT_AS not in table.column_names:
        return table
    sent_as = table.column(SENT_AS)
    table = table.drop_columns([SENT_AS])
    if sent_as.null_count == len(sent_as):
        return table
    derived = pc.binary_join_element_wise(sent_as.cast(pa.string()), table.column("telephone"), "")
    at = table.schema.get_field_index("message")
    return table.set_column(at, "message", pc.coalesce(table.column(at), derived))


@dataclass
class RowColumns:
    """Consecutive rows of one sheet of one input, as columns: what ``RawRow``s would hold.

    ``phones[i]`` is the phone cell as text: the cell itself when it is text, the digits of a
    whole number as ``validator.format_cell`` writes them (0 to 10**15 for a float, below
    10**18 for an int), "" for an empty cell; null for any other cell. ``cells`` holds the
    original of every phone cell that is not text, by position. ``days`` is a string column
    (text files), the cells themselves (workbooks), or None when the sheet has no days column.
    """

    source_file: str
    sheet: str
    rows: pa.Array
    phones: pa.Array
    days: pa.Array | list[CellValue] | None
    cells: dict[int, CellValue] = field(default_factory=dict)

    def raw_row(self, at: int) -> RawRow:
        """Row ``at`` of the batch as the reader's ``RawRow``."""
        phone = self.cells[at] if at in self.cells else self.phones[at].as_py()
        days = self.days
        if days is None:
            day: CellValue = None
        elif isinstance(days, list):
            day = days[at]
        else:
            day = days[at].as_py()
        return RawRow(self.source_file, self.sheet, self.rows[at].as_py(), phone, day)


@dataclass
class SheetLines:
    """The outcome lines of a run of rows of one sheet (``LINE_SCHEMA``), in line order."""

    source_file: str
    sheet: str
    table: pa.Table


@dataclass
class Duplicates:
    """The duplicate lines of a run (``importer.duplicates``): their places among the run's
    lines (0 first, ascending, int64) and their messages. Every one of them was ``ready``."""

    lines: pa.Array
    messages: pa.Array

    @classmethod
    def none(cls) -> Duplicates:
        return cls(pa.array([], pa.int64()), pa.array([], pa.string()))


@dataclass
class RunLines:
    """Every outcome line of a run, sheet by sheet in line order (line ids 1, 2, ... in the
    journal), as the bulk path loaded them. The tables are as judged; ``duplicates`` says which
    lines are duplicates (``pages`` gives the lines as they stand)."""

    sheets: list[SheetLines]
    duplicates: Duplicates = field(default_factory=Duplicates.none)

    @property
    def count(self) -> int:
        """How many lines."""
        return sum(sheet.table.num_rows for sheet in self.sheets)

    def pages(self, size: int) -> Iterator[tuple[SheetLines, pa.Table]]:
        """The lines as they stand, ``size`` at a time: (their sheet, their table)."""
        start = 0
        for sheet in self.sheets:
            for at in range(0, sheet.table.num_rows, size):
                table = with_messages(sheet.table.slice(at, size).combine_chunks())
                yield sheet, self._marked(table, start + at)
            start += sheet.table.num_rows

    def _marked(self, table: pa.Table, start: int) -> pa.Table:
        """``table`` (lines from ``start`` on) with its duplicates marked."""
        lines = self.duplicates.lines
        inside = pc.and_(pc.greater_equal(lines, start), pc.less(lines, start + table.num_rows))
        if not pc.any(inside).as_py():
            return table
        local = pc.subtract(pc.filter(lines, inside), start)
        mask = pc.is_in(_positions(table.num_rows), value_set=local)
        count = len(local)
        values = {
            "status": pa.array([Status.DUPLICATE.value] * count, pa.string()),
            "reason": pa.array([Reason.DUPLICATE] * count, pa.string()),
            "message": pc.filter(self.duplicates.messages, inside),
        }
        for name, value in values.items():
            at = table.schema.get_field_index(name)
            table = table.set_column(at, name, pc.replace_with_mask(table.column(at), mask, value))
        return table

    def rows(self) -> int:
        """How many distinct (source_file, sheet, row) the lines come from (``Journal.distinct_rows``)."""
        by_sheet: dict[tuple[str, str], list[pa.ChunkedArray]] = {}
        for sheet in self.sheets:
            by_sheet.setdefault((sheet.source_file, sheet.sheet), []).append(sheet.table["row"])
        return sum(
            _distinct(
                pa.chunked_array(
                    [c for column in columns for c in column.chunks], pa.int64()
                ).combine_chunks()
            )
            for columns in by_sheet.values()
        )

    def counts(self) -> LineCounts:
        """``{"lines", "by_status", "by_reason"}`` as ``Journal.counts`` gives them."""
        by_status = {status.value: 0 for status in Status}
        by_reason: dict[str, int] = {}
        for sheet in self.sheets:
            pairs = pair_counts(sheet.table.column("status"), sheet.table.column("reason"))
            for (status, reason), count in pairs.items():
                by_status[status] = by_status.get(status, 0) + count
                by_reason[reason] = by_reason.get(reason, 0) + count
        duplicates = len(self.duplicates.lines)
        if duplicates:  # every duplicate was a ready line (reason valid)
            by_status[Status.READY.value] -= duplicates
            by_status[Status.DUPLICATE.value] += duplicates
            by_reason[Reason.VALID] -= duplicates
            by_reason[Reason.DUPLICATE] = by_reason.get(Reason.DUPLICATE, 0) + duplicates
            by_reason = {reason: count for reason, count in by_reason.items() if count}
        return LineCounts(
            lines=sum(by_status.values()),
            by_status=by_status,
            by_reason=dict(sorted(by_reason.items())),
        )


def pair_counts(
    first: pa.Array | pa.ChunkedArray, second: pa.Array | pa.ChunkedArray
) -> Counter[tuple[str, str]]:
    """How many times each (first, second) pair of two string columns occurs (a null is None).

    Not ``Table.group_by``: that runs on pyarrow's query engine (Acero), whose first use loads
    its libraries and starts its thread pool, ~11 MB for the rest of the run (issue 5's peak
    memory); two dictionary encodings and a ``numpy.bincount`` of their codes count the same.
    """
    counts: Counter[tuple[str, str]] = Counter()
    left, right = _chunks(first), _chunks(second)
    if len(left) != len(right) or any(len(a) != len(b) for a, b in zip(left, right)):
        left, right = [_whole(first)], [_whole(second)]
    for one, two in zip(left, right, strict=True):
        if not len(one):
            continue
        a = pc.dictionary_encode(one, null_encoding="encode")
        b = pc.dictionary_encode(two, null_encoding="encode")
        width = len(b.dictionary)
        codes = a.indices.to_numpy().astype(np.int64) * width + b.indices.to_numpy()
        found = np.bincount(codes, minlength=len(a.dictionary) * width)
        names, reasons = a.dictionary.to_pylist(), b.dictionary.to_pylist()
        for code in np.flatnonzero(found).tolist():
            counts[(names[code // width], reasons[code % width])] += int(found[code])
    return counts


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _distinct(rows: pa.Array) -> int:
    """How many distinct values ``rows`` holds. A sheet's lines come in row order, the lines of
    a row together: then a row counts where it differs from the line before (no hashing); any
    other order (a file given twice) is counted by hashing."""
    if len(rows) < 2:
        return len(rows)
    before, after = rows.slice(0, len(rows) - 1), rows.slice(1)
    if not pc.all(pc.less_equal(before, after)).as_py():
        return int(pc.count_distinct(rows).as_py())
    return 1 + int(pc.sum(pc.not_equal(before, after)).as_py() or 0)


def _positions(size: int) -> pa.Array:
    """0, 1, ... size - 1."""
    return pc.subtract(pc.cumulative_sum(pc.fill_null(pa.nulls(size, pa.int64()), 1)), 1)

"""Duplicates among a run's lines held as columns: ``Journal.mark_duplicates``' rule and message.

Among the ``ready`` lines of one telephone (in any file or sheet of the run) the one with the
longest block is kept, the earliest line on a tie; every other becomes ``duplicate`` with a
message naming the kept line: ``duplicate of crm.xlsx:Clientes row 7 (kept there with 90
days)``. The bulk path finds them here, in the lines it holds, instead of asking SQLite to sort
a million lines (``tests/test_columnar_reports.py`` checks both give the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import Duplicates, SheetLines
from importer.model import Status

__all__ = ["find_duplicates"]


def find_duplicates(sheets: Sequence[SheetLines]) -> Duplicates:
    """The duplicate lines among ``sheets`` (a run's lines as judged, in line order).

    Grouped with numpy over integer keys (a telephone's digits, or a code), table by table:
    no whole text column of the run is ever put together.
    """
    if not sheets:
        return Duplicates.none()
    lines = _Lines([sheet.table for sheet in sheets])
    at, keys = lines.ready_keys()
    order = np.argsort(keys)
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]  # a telephone as the one before it
    if not same.any():
        return Duplicates.none()
    found = np.zeros(len(keys), dtype=bool)
    found[1:] |= same
    found[:-1] |= same  # every line of a telephone found more than once
    at, keys = at[order[found]], keys[order[found]]
    days = _sort_days(lines.take("days_block", at))
    order = np.lexsort((at, days, keys))  # telephone, then the longest block, the first line
    at, keys = at[order], keys[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    kept = at[first][np.cumsum(first) - 1]  # each line's group's first line
    duplicates, kept = at[~first], kept[~first]
    order = np.argsort(duplicates)
    messages = _messages(sheets, lines, kept[order])
    return Duplicates(pa.array(duplicates[order]), messages)


class _Lines:
    """The lines of every table end to end, read a table at a time."""

    def __init__(self, tables: list[pa.Table]) -> None:
        self.tables = tables
        self.starts = np.cumsum([0] + [table.num_rows for table in tables[:-1]])

    def ready_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(places, telephone keys) of the ``ready`` lines; equal keys are equal telephones.

        Filled into arrays made once, a table at a time, each table's telephones let go as
        soon as they are keys (issue 5's peak memory: no list of parts joined at the end)."""
        total = sum(table.num_rows for table in self.tables)
        places = np.empty(total, np.int64)
        keys: np.ndarray | None = np.empty(total, np.int64)
        count = 0
        for start, table in zip(self.starts, self.tables, strict=True):
            at = pc.indices_nonzero(pc.equal(table.column("status"), Status.READY.value))
            places[count : count + len(at)] = at.to_numpy()
            places[count : count + len(at)] += start
            if keys is not None:
                found = _numbers(pc.take(table.column("telephone"), at))
                if found is None:  # some telephone is no plain number: codes for them all
                    keys = None
                else:
                    keys[count : count + len(at)] = found
            count += len(at)
        places = places[:count]
        if keys is None:
            whole = pa.chunked_array(
                [pc.take(table.column("telephone"), pa.array(self._local(places, n)))
                 for n, table in enumerate(self.tables)],
                pa.string(),
            ).combine_chunks()  # fmt: skip
            keys = pc.dictionary_encode(whole).indices.to_numpy().astype(np.int64)
        return places, keys[:count]

    def _local(self, places: np.ndarray, table: int) -> np.ndarray:
        """The places of ``places`` (sorted) inside table ``table``, counted from its start."""
        start = self.starts[table]
        end = start + self.tables[table].num_rows
        low, high = np.searchsorted(places, [start, end])
        local: np.ndarray = places[low:high] - start
        return local

    def take(self, name: str, at: np.ndarray) -> pa.Array:
        """Column ``name`` of the lines at places ``at`` (in that order)."""
        order = np.argsort(at, kind="stable")
        ordered = at[order]
        bounds = np.searchsorted(
            ordered, [*self.starts, self.starts[-1] + self.tables[-1].num_rows]
        )
        chunks = [
            pc.take(table.column(name), pa.array(ordered[bounds[n] : bounds[n + 1]] - start))
            for n, (start, table) in enumerate(zip(self.starts, self.tables, strict=True))
            if bounds[n + 1] > bounds[n]
        ]
        taken = pa.chunked_array(chunks, self.tables[0].schema.field(name).type)
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return pc.take(taken.combine_chunks(), pa.array(back))

    def table_of(self, at: np.ndarray) -> np.ndarray:
        """The index of the table of each place of ``at``."""
        found: np.ndarray = np.searchsorted(self.starts, at, side="right") - 1
        return found


def _numbers(telephones: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """The telephones as int64 when every one is digits without a leading zero that fit one
    (then equal numbers are equal telephones); else None."""
    if not len(telephones):
        return np.array([], np.int64)
    digits = pc.and_(
        pc.ascii_is_decimal(telephones), pc.less_equal(pc.binary_length(telephones), 18)
    )
    if not pc.all(pc.and_(digits, pc.invert(pc.starts_with(telephones, "0")))).as_py():
        return None
    numbers: np.ndarray = pc.cast(telephones, pa.int64()).to_numpy()
    return numbers


def _sort_days(days: pa.Array) -> np.ndarray:
    """Days blocks as keys that sort the longest first (an empty block last, as SQL's DESC)."""
    longest_first: np.ndarray = np.negative(pc.fill_null(days, 0).to_numpy())
    if days.null_count:
        longest_first[pc.is_null(days).to_numpy(zero_copy_only=False)] = np.iinfo(np.int64).max
    return longest_first


def _messages(sheets: Sequence[SheetLines], lines: _Lines, kept: np.ndarray) -> pa.Array:
    """``duplicate of FILE[:SHEET] row N[ part P] (kept there with D day[s])`` per kept line.

    As the journal's SQL writes it (a kept line is ready, so its days_block is never empty).
    """
    where = pa.array(
        [
            f"duplicate of {sheet.source_file}" + (f":{sheet.sheet}" if sheet.sheet else "")
            for sheet in sheets
        ],
        pa.string(),
    )
    row = pc.cast(lines.take("row", kept), pa.string())
    part = lines.take("part", kept)
    days = lines.take("days_block", kept)
    part_text = pc.if_else(
        pc.greater(part, 1),
        pc.binary_join_element_wise(" part ", pc.cast(part, pa.string()), ""),
        "",
    )
    unit = pc.if_else(pc.equal(days, 1), " day)", " days)")
    return pc.binary_join_element_wise(
        pc.take(where, pa.array(lines.table_of(kept))),
        " row ",
        row,
        part_text,
        " (kept there with ",
        pc.fill_null(pc.cast(days, pa.string()), "?"),
        pc.fill_null(unit, " days)"),
        "",
    )

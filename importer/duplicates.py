"""Duplicates among a run's lines held as columns: ``Journal.mark_duplicates``' rule and message.

Among the ``ready`` lines of one telephone (in any file or sheet of the run) the one with the
longest block is kept, the earliest line on a tie; every other becomes ``duplicate`` with a
message naming the kept line: ``duplicate of crm.xlsx:Clientes row 7 (kept there with 90
days)``. The bulk path finds them here, in the lines it holds, instead of asking SQLite to sort
a million lines (``tests/test_duplicates.py`` checks both give the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import Duplicates, SheetLines
from importer.model import Status

__all__ = ["find_duplicates"]


def find_duplicates(sheets: Sequence[SheetLines]) -> Duplicates:
    """The duplicate lines among ``sheets`` (a run's lines as judged, in line order)."""
    if not sheets:
        return Duplicates.none()
    tables = [sheet.table for sheet in sheets]
    telephone = _whole(tables, "telephone")
    ready = pc.equal(_whole(tables, "status"), Status.READY.value)
    at = pc.indices_nonzero(ready)
    counts = pc.value_counts(pc.take(telephone, at))
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if not len(repeated):
        return Duplicates.none()
    at = pc.filter(at, pc.is_in(pc.take(telephone, at), value_set=repeated))
    candidates = pa.table(
        {
            "telephone": pc.take(telephone, at),
            "days": pc.take(_whole(tables, "days_block"), at),
            "line": pc.cast(at, pa.int64()),
        }
    ).sort_by([("telephone", "ascending"), ("days", "descending"), ("line", "ascending")])
    lines = candidates.column("line").combine_chunks()
    names = candidates.column("telephone").combine_chunks()
    first = pc.not_equal(names, pc.fill_null(_shifted(names), ""))
    first = pc.or_(first, _first_true(len(names)))
    kept = pc.fill_null_forward(pc.if_else(first, lines, pa.scalar(None, pa.int64())))
    duplicates = pc.filter(lines, pc.invert(first))
    messages = _messages(sheets, pc.filter(kept, pc.invert(first)))
    order = pc.sort_indices(duplicates)
    return Duplicates(pc.take(duplicates, order), pc.take(messages, order))


def _whole(tables: Sequence[pa.Table], name: str) -> pa.Array:
    """One column of every table, end to end."""
    kind = tables[0].schema.field(name).type
    chunks = [chunk for table in tables for chunk in table.column(name).chunks]
    return pa.chunked_array(chunks, kind).combine_chunks()


def _shifted(values: pa.Array) -> pa.Array:
    """``values`` moved one place down (a null first): each value's predecessor."""
    return pa.concat_arrays([pa.nulls(1, values.type), values.slice(0, len(values) - 1)])


def _first_true(size: int) -> pa.Array:
    return pa.array([True] + [False] * (size - 1), pa.bool_()) if size else pa.array([], pa.bool_())


def _messages(sheets: Sequence[SheetLines], kept: pa.Array) -> pa.Array:
    """``duplicate of FILE[:SHEET] row N[ part P] (kept there with D day[s])`` per kept line.

    As the journal's SQL writes it (a kept line is ready, so its days_block is never empty).
    """
    tables = [sheet.table for sheet in sheets]
    where = pa.array(
        [
            f"duplicate of {sheet.source_file}" + (f":{sheet.sheet}" if sheet.sheet else "")
            for sheet in sheets
        ],
        pa.string(),
    )
    which = pc.take(_sheet_of_line(tables), kept)
    row = pc.cast(pc.take(_whole(tables, "row"), kept), pa.string())
    part = pc.take(_whole(tables, "part"), kept)
    days = pc.take(_whole(tables, "days_block"), kept)
    part_text = pc.if_else(
        pc.greater(part, 1),
        pc.binary_join_element_wise(" part ", pc.cast(part, pa.string()), ""),
        "",
    )
    unit = pc.if_else(pc.equal(days, 1), " day)", " days)")
    return pc.binary_join_element_wise(
        pc.take(where, which),
        " row ",
        row,
        part_text,
        " (kept there with ",
        pc.fill_null(pc.cast(days, pa.string()), "?"),
        pc.fill_null(unit, " days)"),
        "",
    )


def _sheet_of_line(tables: Sequence[pa.Table]) -> pa.Array:
    """The index of the table each line (of all tables, end to end) belongs to."""
    return pa.chunked_array(
        [pc.fill_null(pa.nulls(table.num_rows, pa.int32()), at) for at, table in enumerate(tables)],
        pa.int32(),
    ).combine_chunks()

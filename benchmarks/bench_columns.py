"""The column validator against the full parse: the bulk path's differential, and its speed.

    python -m benchmarks.bench_columns                      # µs per row, 200,000 mixed rows
    python -m benchmarks.bench_columns --differential       # the whole 1M set: 0 disagreements

``--differential`` judges every row of the mixed set (under every option set of
``bench_validator.OPTION_SETS``) and of the rows of ``benchmarks.generate`` (the 1M set of the
benchmark suite, numeric cells as ints and as floats) with ``importer.columnar_validator``, in
batches of columns as the bulk path reads them, and with ``validator._validate(..., fast=False)``,
the validator with every number parsed by phonenumbers; it prints the disagreements (any field of
any line, and the line count) and exits 1 if there is one. Text cells go in once as the text
reader gives them (a string column, days as text) and once as a workbook's cells would.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa

from benchmarks.bench_validator import differential_sets, judge, mixed_rows
from benchmarks.differential import arguments, best_cpu_seconds, count_disagreements
from importer.columnar_reader import grouped
from importer.columnar_validator import ColumnValidator
from importer.columns import BATCH_ROWS, LINE_SCHEMA, RowColumns
from importer.config import ValidateOptions
from importer.model import RawRow

Line = tuple[object, ...]


def batches(rows: Sequence[RawRow], as_text: bool) -> Iterator[RowColumns]:
    """``rows`` as the bulk path's batches: as a workbook's cells, or (``as_text``, every cell
    text or None) as the text reader's columns."""
    for batch in grouped(rows, BATCH_ROWS):
        if as_text and not batch.cells and all(isinstance(d, str) for d in batch.days or ()):
            days = batch.days
            batch.days = pa.array(days, pa.string()) if isinstance(days, list) else days
        yield batch


def column_lines(rows: Sequence[RawRow], options: ValidateOptions, as_text: bool) -> list[Line]:
    """Every line of ``rows`` by the column validator, as (source, sheet, row, part, ...)."""
    validator = ColumnValidator(options)
    lines: list[Line] = []
    for batch in batches(rows, as_text):
        table = validator.lines(batch)
        columns = [table.column(name).to_pylist() for name in LINE_SCHEMA.names]
        lines.extend((batch.source_file, batch.sheet, *values) for values in zip(*columns))
    return lines


def full_lines(rows: Iterable[RawRow], options: ValidateOptions) -> list[Line]:
    """Every line of ``rows`` by the full parse alone, in the same shape."""
    return [
        (o.source_file, o.sheet, o.row, o.part, o.raw_phone, o.raw_days, o.telephone,
         o.days_block, o.status.value, o.reason, o.message)
        for o in judge(rows, options, False)
    ]  # fmt: skip


def disagreements(rows: Sequence[RawRow], options: ValidateOptions) -> list[tuple[Line, Line]]:
    """The (columns, full parse) line pairs that differ, both ways of reading the cells.

    Rows of each input file are judged apart (a batch holds rows of one sheet).
    """
    by_file: dict[str, list[RawRow]] = {}
    for row in rows:
        by_file.setdefault(row.source_file, []).append(row)
    return [pair for part in by_file.values() for pair in _disagreements(part, options)]


def _disagreements(rows: Sequence[RawRow], options: ValidateOptions) -> list[tuple[Line, Line]]:
    full = full_lines(rows, options)
    found = []
    for as_text in (True, False):
        columns = column_lines(rows, options, as_text)
        if len(columns) != len(full):
            raise AssertionError(f"columns gave {len(columns)} lines, the full parse {len(full)}")
        found += [(a, b) for a, b in zip(columns, full, strict=True) if a != b]
    return found


def differential(count: int) -> int:
    """Both sets, every option set of the mixed one; print and return the disagreements."""
    sets = differential_sets(count)
    return count_disagreements(sets, disagreements, 200_000, ("columns", "full"))


def timings(count: int, repeat: int) -> None:
    """µs per row: the row validator (fast path) against the column validator (CPU time)."""
    rows = mixed_rows(count)
    options = ValidateOptions()
    prepared = list(batches(rows, True))
    validator = ColumnValidator(options)
    validator.lines(prepared[0])  # pyarrow's first calls are slow
    best = best_cpu_seconds(
        {
            "validate (rows, fast path)": lambda: judge(rows, options, True),
            "ColumnValidator.lines": lambda: [validator.lines(batch) for batch in prepared],
        },
        repeat,
    )
    print(f"µs per row (best of {repeat}, CPU time), {count:,} mixed rows, region CO, national")
    for name, seconds in best.items():
        print(f"  {name:<27}{seconds / count * 1e6:7.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(
        "python -m benchmarks.bench_columns", __doc__, 200_000, "Columns vs full parse."
    )
    args = parser.parse_args(argv)
    if args.differential:
        return 1 if differential(args.diff_rows) else 0
    timings(args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())

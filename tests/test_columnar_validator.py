"""The column validator gives exactly the lines ``validate`` gives, row for row.

``importer.columnar_validator`` decides clean valid numbers, plain invalid digits and empty cells
for whole columns and sends every other row to ``validate``; each line of a batch must equal the
line ``validate`` yields for that row (every field, in order), for hypothesis-made cells of
several regions in every form, both as the text reader hands them (a string column) and as a
workbook's cells. The whole 1M set: ``python -m benchmarks.bench_columns --differential``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_validator_fastpath import ROOT, _days, _numeric_cells, _options, _phones_for, _text_cells

from importer import validator
from importer.columnar_reader import grouped
from importer.columnar_validator import ColumnValidator
from importer.columns import LINE_SCHEMA, RowColumns
from importer.config import ValidateOptions
from importer.model import CellValue, RawRow, Status

Line = tuple[object, ...]


def by_columns(rows: list[RawRow], options: ValidateOptions, as_text: bool) -> list[Line]:
    """Every line of ``rows`` by the column validator (batches of 5 rows, one sheet each)."""
    found: list[Line] = []
    judge = ColumnValidator(options)
    for batch in grouped(rows, 5):
        if as_text:
            batch = _as_text(batch)
        table = judge.lines(batch)
        columns = [table.column(name).to_pylist() for name in LINE_SCHEMA.names]
        found += [(batch.source_file, batch.sheet, *values) for values in zip(*columns)]
    return found


def _as_text(batch: RowColumns) -> RowColumns:
    """The batch as the text reader gives it: the days a string column too."""
    assert not batch.cells and isinstance(batch.days, list)
    days = pa.array(batch.days, pa.string())
    return RowColumns(batch.source_file, batch.sheet, batch.rows, batch.phones, days)


def by_rows(rows: list[RawRow], options: ValidateOptions, fast: bool = True) -> list[Line]:
    validator.check_options(options)
    return [
        (o.source_file, o.sheet, o.row, o.part, o.raw_phone, o.raw_days, o.telephone,
         o.days_block, o.status.value, o.reason, o.message)
        for o in validator._validate(rows, options, fast=fast)
    ]  # fmt: skip


def assert_same(cells: list[tuple[CellValue, CellValue]], options: ValidateOptions) -> None:
    rows = [RawRow("a.xlsx", "Hoja1", n, phone, days) for n, (phone, days) in enumerate(cells, 2)]
    expected = by_rows(rows, options)
    assert by_columns(rows, options, False) == expected
    if all(isinstance(p, str) and isinstance(d, str) for p, d in cells):
        text_rows = [RawRow("a.csv", "", row.row, row.phone, row.days) for row in rows]
        assert by_columns(text_rows, options, True) == by_rows(text_rows, options)


_cells = _options().flatmap(
    lambda options: st.tuples(
        st.lists(st.tuples(_phones_for(options), _days), min_size=1, max_size=14),
        st.just(options),
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cells)
@example(case=([("+57 319 123 4567", "30"), ("3191234567.0", "90"), ("", "30")], ValidateOptions()))
@example(
    case=([("0057 310 987 6543", "30"), ("2024-01-15", "x"), ("30567", "0")], ValidateOptions())
)
@example(case=([(3191234567.0, 30.0), (3191234567, "1.000"), (None, None)], ValidateOptions()))
@example(case=([("12025550123", 30), ("+1 202 555 0123", "-3")], ValidateOptions(region="US")))
@example(case=([("314268569330", "365"), ("3191503", ""), ("N/A", "")], ValidateOptions()))
@example(case=([("030 123456", 30), ("+49 (0) 30 123456", 30)], ValidateOptions(region="DE")))
def test_columns_and_rows_agree(
    case: tuple[list[tuple[CellValue, CellValue]], ValidateOptions],
) -> None:
    assert_same(*case)


@settings(max_examples=120, deadline=None)
@given(
    cells=st.lists(
        st.tuples(_text_cells, st.sampled_from(["30", "90", "", "0", " 15 ", "1,000", "x"])),
        min_size=1,
        max_size=20,
    ),
    options=_options(),
)
def test_text_columns_agree(cells: list[tuple[str, str]], options: ValidateOptions) -> None:
    assert_same(list(cells), options)


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(_text_cells | _numeric_cells, _days), min_size=1, max_size=20))
def test_columns_agree_with_the_full_parse(cells: list[tuple[CellValue, CellValue]]) -> None:
    rows = [RawRow("b.xlsx", "S", n, phone, days) for n, (phone, days) in enumerate(cells, 2)]
    options = ValidateOptions(default_days=7)
    assert by_columns(rows, options, False) == by_rows(rows, options, fast=False)


def test_a_sheet_without_days_column() -> None:
    batch = RowColumns(
        "c.csv", "", pa.array([2, 3], pa.int64()), pa.array(["3191234567", ""]), None
    )
    table = ColumnValidator(ValidateOptions(default_days=15)).lines(batch)
    rows = [batch.raw_row(0), batch.raw_row(1)]
    expected = by_rows(rows, ValidateOptions(default_days=15))
    columns = [table.column(name).to_pylist() for name in LINE_SCHEMA.names]
    assert [("c.csv", "", *values) for values in zip(*columns)] == expected


def test_a_cell_of_several_numbers_keeps_its_parts_in_place() -> None:
    cells: list[tuple[CellValue, CellValue]] = [
        ("3191234567", "30"),
        ("3001234567 / 3109876543; 3201112233", "30"),
        ("+57 319 123 4567", "30"),
    ]
    assert_same(cells, ValidateOptions())
    rows = [RawRow("a.xlsx", "Hoja1", n, p, d) for n, (p, d) in enumerate(cells, 2)]
    parts = [(line[2], line[3]) for line in by_columns(rows, ValidateOptions(), False)]
    assert parts == [(2, 1), (3, 1), (3, 2), (3, 3), (4, 1)]


# --- the benchmark's mixed set -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        from benchmarks import bench_columns

        yield bench_columns


def test_a_20k_sample_of_the_mixed_set_has_zero_disagreements(bench: ModuleType) -> None:
    from benchmarks.bench_validator import OPTION_SETS, mixed_rows

    rows = mixed_rows(20_000, seed=7)
    assert bench.disagreements(rows, ValidateOptions()) == []
    for options in OPTION_SETS[1:]:
        assert bench.disagreements(rows[:3000], options) == [], options


def test_most_rows_never_reach_the_row_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clean forms, plain invalid digits and empty cells are decided for whole columns."""
    cells = ["3191234567", "319 123 4567", "+57 319 123 4567", "(319) 123-4567", "573191234567",
             "601 234 5678", "3191234567.0", "30567", "314268569330", "3191503", ""]  # fmt: skip
    batch = RowColumns("d.csv", "", pa.array(range(2, 2 + len(cells)), pa.int64()),
                       pa.array(cells), pa.array(["30"] * len(cells)))  # fmt: skip
    judge = ColumnValidator(ValidateOptions())
    monkeypatch.setattr("importer.columnar_validator.validate", _refused)
    table = judge.lines(batch)
    assert table.num_rows == len(cells)
    assert table.column("status").to_pylist()[:7] == [Status.READY.value] * 7


def _refused(*args: object) -> None:
    raise AssertionError("a row went to the row validator")


def test_a_wrong_column_verdict_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison really compares: a column path that misnames a type disagrees."""
    terms = ColumnValidator(ValidateOptions()).terms
    assert terms is not None
    wrong = dict(terms.sent_as)
    wrong[1] = wrong[0]  # mobile numbers said to be fixed-line
    monkeypatch.setattr(
        "importer.columnar_validator.column_terms",
        lambda options: type(terms)(terms.fast, terms.head, wrong, terms.where),
    )
    rows = [RawRow("a.xlsx", "Hoja1", 2, "3191234567", "30")]
    assert by_columns(rows, ValidateOptions(), False) != by_rows(rows, ValidateOptions())

"""``Source.columns()`` hands on exactly the rows of ``Source.rows()``, with the same counts.

Text files the csv module reads one record per line are split by pyarrow
(``importer.columnar_reader.text_columns``), workbooks a chunk of rows at a time
(``workbook_columns``); the others are ``rows()`` grouped.
Hypothesis writes text files of every shape the split must agree on: blank and whitespace-only
lines (Unicode whitespace too), short and long lines, LF or CRLF ends, a last line with or
without its end, UTF-8 with or without BOM, cp1252, every delimiter, quotes (read by the csv
module then), and parts of the file split apart.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from importer import columnar_reader
from importer.columns import RowColumns
from importer.config import ReadOptions
from importer.errors import InputError
from importer.model import CellValue
from importer.reader import Source, open_source

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent

Row = tuple[str, str, int, CellValue, CellValue]


def both_ways(
    path: Path, options: ReadOptions
) -> tuple[list[Row], list[Row], list[tuple[int, int]]]:
    """(rows by ``rows()``, rows by ``columns()``, the sheet counts) — asserting the counts agree."""
    source = open_source(path, options)
    expected = [(r.source_file, r.sheet, r.row, r.phone, r.days) for r in source.rows()]
    counts = [(sheet.rows, sheet.blank_rows) for sheet in source.info.sheets]
    source = open_source(path, options)
    found: list[Row] = []
    for batch in source.columns():
        for at in range(len(batch.rows)):
            row = batch.raw_row(at)
            found.append((row.source_file, row.sheet, row.row, row.phone, row.days))
    assert [(sheet.rows, sheet.blank_rows) for sheet in source.info.sheets] == counts
    return expected, found, counts


_FIELD = st.text(
    st.sampled_from(list("0123456789 +-()x;,|\tab") + ["\u00a0", "\u2003", "\x1c", "é", "\u3000"]),
    max_size=12,
)


@st.composite
def _text_file(draw: st.DrawFn) -> tuple[bytes, str]:
    delimiter = draw(st.sampled_from([";", ",", "\t", "|"]))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(["telefono", "dias", "nombre"])]
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["row", "row", "row", "blank", "spaces", "short", "long"]))
        if kind == "blank":
            lines.append("")
        elif kind == "spaces":
            lines.append(draw(st.sampled_from([" ", "\t", "\u00a0", " " + delimiter + " "])))
        elif kind == "short":
            lines.append(draw(_FIELD))
        else:
            width = 3 if kind == "row" else draw(st.integers(4, 7))
            lines.append(delimiter.join(draw(_FIELD) for _ in range(width)))
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), 'a "quoted" cell')  # the csv module reads it
    text = end.join(lines) + draw(st.sampled_from([end, end, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    return text.encode(encoding, errors="replace"), delimiter


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_text_file(), split=st.sampled_from([7, 64, 1 << 20]))
@example(case=(b"telefono;dias\n3191234567;30\n\n ; \n3001234567\n", ";"), split=1 << 20)
@example(case=(b"telefono;dias\r\n3191234567;30\r\n\xa0\r\n", ";"), split=9)
def test_columns_give_the_rows_of_rows(case: tuple[bytes, str], split: int) -> None:
    data, delimiter = case
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reader, "_READ_BYTES", split)
        path = Path(folder) / "numbers.csv"
        path.write_bytes(data)
        try:
            expected, found, _counts = both_ways(path, ReadOptions(delimiter=delimiter))
        except InputError:
            return  # no data rows: refused when opened, before any row is read
        assert found == expected


def test_the_split_reads_one_record_per_line_files_only(tmp_path: Path) -> None:
    """A quote anywhere, or mixed line ends, and the csv module reads the file."""
    simple = tmp_path / "simple.csv"
    simple.write_bytes(b"telefono;dias\r\n3191234567;30\r\n")
    assert open_source(simple, ReadOptions())._line_ends == "\r\n"  # type: ignore[attr-defined]
    for name, data in (("quoted.csv", b'telefono;dias\n"319 123 4567";30\n'),
                       ("mixed.csv", b"telefono;dias\r\n3191234567;30\n")):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(data)
        assert open_source(path, ReadOptions())._line_ends is None  # type: ignore[attr-defined]
        expected, found, _ = both_ways(path, ReadOptions())
        assert found == expected


def test_a_line_the_csv_module_refuses_raises_its_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(
        b"telefono;dias\n" + b"3191234567;30\n" * 40 + b";" * 20_000 + b"\n3001234567;30\n"
    )
    messages = []
    for read in ("rows", "columns"):
        source = open_source(path, ReadOptions())
        with pytest.raises(InputError) as caught:
            list(getattr(source, read)())
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "line 42 has 20,001 columns" in messages[0]


def test_a_field_past_the_csv_limit_raises_its_error(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes(b"telefono;dias\n" + b"3191234567;30\n" * 40 + b"9" * 200_000 + b";30\n")
    messages = []
    for read in ("rows", "columns"):
        source = open_source(path, ReadOptions())
        with pytest.raises(InputError) as caught:
            list(getattr(source, read)())
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "line 42: field larger than field limit" in messages[0]


@pytest.mark.parametrize(
    "name",
    sorted(
        p.name
        for p in DATA.iterdir()
        if p.suffix in {".csv", ".txt", ".tsv", ".xlsx", ".xls", ".ods"}
    ),
)
def test_every_test_file_reads_the_same(name: str) -> None:
    try:
        expected, found, _ = both_ways(DATA / name, ReadOptions())
    except InputError:
        return  # refused when opened (the gallery's bad files)
    assert found == expected


def _reading_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("dnc-read-ahead")]


def test_a_text_files_parts_are_split_in_a_second_thread(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_bytes(b"telefono;dias\n" + b"".join(b"31912%05d;30\n" % n for n in range(300)))
    split_in = []
    part = columnar_reader._text_part

    def recording(*args: Any) -> Any:
        split_in.append(threading.current_thread().name)
        return part(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reader, "_READ_BYTES", 1024)
        patch.setattr(columnar_reader, "_text_part", recording)
        expected, found, counts = both_ways(path, ReadOptions())
        assert found == expected and counts == [(300, 0)]
        assert len(split_in) == 5 and all(n.startswith("dnc-read-ahead") for n in split_in)
        batches = open_source(path, ReadOptions()).columns()
        next(batches)
        batches.close()  # type: ignore[attr-defined]  # a reader stopping after one part
        assert len(split_in) <= 5 + 2  # the part used and the one made meanwhile
    assert not _reading_threads()


def test_the_parts_read_ahead_raise_their_error_and_stop_with_their_reader() -> None:
    def failing() -> Generator[int, None, None]:
        yield 1
        raise OSError("input/output error")

    parts = columnar_reader._read_ahead(failing())
    assert next(parts) == 1
    with pytest.raises(OSError, match="input/output error"):
        next(parts)

    made, closed = [], []

    def many() -> Generator[int, None, None]:
        try:
            for n in range(1000):
                made.append(n)
                yield n
        finally:
            closed.append(True)

    ahead = columnar_reader._read_ahead(many())
    assert next(ahead) == 0
    ahead.close()
    assert len(made) <= 2 and closed == [True]  # the part used, maybe the next one
    assert not _reading_threads()


def test_the_whitespace_list_is_pythons() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert columnar_reader._WHITESPACE == every


def test_a_workbook_sheet_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sheet calamine parsed to find the header is the one read (parsing is most of it)."""
    source = open_source(ROOT / "sample_data" / "crm_export.xlsx", ReadOptions())
    monkeypatch.setattr("importer.workbook_reader._load", _no_load)
    assert len(list(source.columns())) >= 1


def _no_load(*args: object) -> None:
    raise AssertionError("the workbook was opened again")


class _Parsed:
    """What the reader uses of a sheet calamine parsed: its start and its rows."""

    def __init__(self, rows: list[list[object]]) -> None:
        self.rows, self.start = rows, (0, 0)

    def iter_rows(self) -> Iterator[list[object]]:
        return iter(self.rows)


def _workbook(rows: list[list[object]], days: int | None, header: int) -> Source:
    from importer.reader import SheetInfo, SourceInfo, _Layout, _WorkbookSource

    sheet = SheetInfo("Hoja", header or None, "tel", "dias", ["tel", "dias"])
    info = SourceInfo("libro.xlsx", "x", 1, "xlsx", None, None, [sheet], [])
    layout = _Layout(header or None, 1, days, sheet, _Parsed(rows))
    return _WorkbookSource(info, Path("libro.xlsx"), [layout])


_CELL = st.one_of(
    st.text(st.sampled_from(list("0123456789 +-x") + ["\u00a0", "\u3000"]), max_size=6),
    st.floats(),
    st.floats(min_value=0, max_value=1e16).map(float.__floor__).map(float),
    st.integers(-(10**19), 10**19),
    st.booleans(),
    st.dates(),
    st.times(),
    st.datetimes(),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(_CELL, min_size=3, max_size=3)
        | st.lists(st.sampled_from(["", " ", "\u3000", 0.0]), min_size=3, max_size=3),
        max_size=40,
    ),
    days=st.sampled_from([None, 2]),
    header=st.integers(0, 2),
    chunk=st.sampled_from([1, 3, 64]),
)
def test_workbook_columns_are_the_rows_grouped(
    rows: list[list[object]], days: int | None, header: int, chunk: int
) -> None:
    """``workbook_columns`` (a chunk of rows at a time) makes the batches ``grouped`` makes of
    the workbook's ``rows()``: the same phones as text, original cells, days and counts."""
    expected = list(columnar_reader.grouped(_workbook(rows, days, header).rows()))
    source = _workbook(rows, days, header)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reader, "_WORKBOOK_CHUNK", chunk)
        found = list(source.columns())
    assert sum(len(batch.rows) for batch in found) == sum(len(b.rows) for b in expected)
    assert _flat(found) == _flat(expected)
    counts = _workbook(rows, days, header)
    list(counts.rows())
    assert (source.info.sheets[0].rows, source.info.sheets[0].blank_rows) == (
        counts.info.sheets[0].rows,
        counts.info.sheets[0].blank_rows,
    )


def _flat(batches: list[RowColumns]) -> list[tuple[object, ...]]:
    """Every row of ``batches``: (row, phone as text, phone cell if not text, days cell)."""
    flat = []
    for batch in batches:
        days = batch.days if isinstance(batch.days, list) else [None] * len(batch.rows)
        for at in range(len(batch.rows)):
            cell = batch.cells.get(at, "text")
            flat.append(
                (
                    batch.rows[at].as_py(),
                    batch.phones[at].as_py(),
                    (type(cell), cell),
                    (type(days[at]), days[at]),
                )
            )
    return flat

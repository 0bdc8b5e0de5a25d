"""The bulk path's duplicates, counts and reports are the journal's, byte for byte.

Hypothesis makes a run's lines (several files and sheets, split cells, repeated telephones with
other blocks, every status, cells that a spreadsheet would run or that need CSV quoting or XML
escaping, control characters, accents); they go into a journal and into ``RunLines``; then
``importer.duplicates`` must mark the lines ``Journal.mark_duplicates`` marks with the same
messages, ``RunLines.counts``/``rows`` must be the journal's, and ``write_reports`` from the
columns must write the same outcomes.csv, errors.csv and outcomes.xlsx as from the journal.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer import columnar_reports
from importer.columnar_reports import write_csvs
from importer.columns import LINE_SCHEMA, RunLines, SheetLines
from importer.duplicates import find_duplicates
from importer.journal import Journal
from importer.model import Outcome, Reason, Status
from importer.reporter import write_reports

_TEXT = st.text(
    st.sampled_from(list("=+-@\t\r\n,\"' ;0123456789aé<>&") + ["\x00", "\x07", "\u2028", "ñ"]),
    max_size=8,
)
_TELEPHONES = st.sampled_from(["3191234567", "3001234567", "+573191234567", "6012345678", ""])


@st.composite
def _sheet(draw: st.DrawFn, source: str, sheet: str) -> tuple[str, str, list[Outcome]]:
    lines = []
    row = 1
    for _ in range(draw(st.integers(1, 12))):
        row += draw(st.integers(1, 3))
        for part in range(1, draw(st.sampled_from([1, 1, 1, 2, 3])) + 1):
            status = draw(st.sampled_from([Status.READY] * 4 + list(Status)))
            reason = Reason.VALID if status is Status.READY else draw(_TEXT | st.just("invalid"))
            days = draw(st.sampled_from([1, 30, 90, 365, None]))
            if status is Status.READY:
                days = days or 30  # a ready line has its days
            texts = [draw(_TEXT) for _ in range(3)]
            batch = draw(st.sampled_from([None, None, 1, 12]))
            lines.append(
                Outcome(
                    source,
                    sheet,
                    row,
                    part,
                    texts[0],
                    texts[1],
                    draw(_TELEPHONES),
                    days,
                    status,
                    reason,
                    texts[2],
                    batch,
                )
            )
    return source, sheet, lines


_RUN = st.lists(
    st.tuples(
        st.sampled_from(["a.csv", "dir/b,x.xlsx", "=c.xlsx"]), st.sampled_from(["", "S1", "+S"])
    ),
    min_size=1,
    max_size=4,
    unique=True,
).flatmap(lambda sheets: st.tuples(*(_sheet(source, sheet) for source, sheet in sheets)))


def _tables(run: tuple[tuple[str, str, list[Outcome]], ...]) -> RunLines:
    sheets = []
    for source, sheet, lines in run:
        columns = {
            "row": [o.row for o in lines],
            "part": [o.part for o in lines],
            "raw_phone": [o.raw_phone for o in lines],
            "raw_days": [o.raw_days for o in lines],
            "telephone": [o.telephone for o in lines],
            "days_block": [o.days_block for o in lines],
            "status": [o.status.value for o in lines],
            "reason": [o.reason for o in lines],
            "message": [o.message for o in lines],
        }
        table = pa.table({name: pa.array(columns[name], LINE_SCHEMA.field(name).type)
                          for name in LINE_SCHEMA.names})  # fmt: skip
        sheets.append(SheetLines(source, sheet, table))
    return RunLines(sheets)


def _journal(path: Path, run: tuple[tuple[str, str, list[Outcome]], ...]) -> Journal:
    journal = Journal.create(path, run_id="t", meta={})
    journal.add_outcomes(o for _source, _sheet, lines in run for o in lines)
    return journal


def _summary(counts: dict[str, object]) -> dict[str, object]:
    return {"run_id": "t", "counts": dict(counts), "inputs": [{"path": "a.csv", "sha256": "x"}]}


_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(run=_RUN)
def test_loaded_lines_duplicates_counts_and_reports_are_the_journals(
    run: tuple[tuple[str, str, list[Outcome]], ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("run")
    for _source, _sheet, outcomes in run:
        for o in outcomes:
            o.batch = None  # loaded lines have no batch yet
    with _journal(folder / "journal.sqlite", run) as journal:
        marked = journal.mark_duplicates()
        lines = _tables(run)
        lines.duplicates = find_duplicates(lines.sheets)
        assert len(lines.duplicates.lines) == marked
        pages = [(s.source_file, s.sheet, t) for s, t in lines.pages(3)]
        flat = [
            (source, sheet, *values)
            for source, sheet, table in pages
            for values in zip(*(table.column(name).to_pylist() for name in LINE_SCHEMA.names))
        ]
        assert flat == list(journal.rows(("source_file", "sheet", *LINE_SCHEMA.names)))
        assert lines.counts() == journal.counts()
        assert lines.rows() == journal.distinct_rows()
        _same_reports(folder, journal, lines, journal.counts())


@_SETTINGS
@given(run=_RUN)
def test_sent_lines_reports_are_the_journals(
    run: tuple[tuple[str, str, list[Outcome]], ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("run")
    with _journal(folder / "journal.sqlite", run) as journal:
        lines = _tables(run)
        for sheet, (_source, _name, outcomes) in zip(lines.sheets, run, strict=True):
            batches = pa.array([o.batch for o in outcomes], pa.int64())
            sheet.table = sheet.table.append_column("batch", batches)
        assert lines.counts() == journal.counts()
        _same_reports(folder, journal, lines, journal.counts())


def _same_reports(folder: Path, journal: Journal, lines: RunLines, counts: object) -> None:
    (folder / "j").mkdir()
    (folder / "c").mkdir()
    (folder / "t").mkdir()
    write_reports(folder / "j", journal, _summary(counts), xlsx=True)  # type: ignore[arg-type]
    write_reports(folder / "c", lines, _summary(counts), xlsx=True)  # type: ignore[arg-type]
    with _a_big_run():  # the CSV pages rendered in threads, 2 lines a page
        write_reports(folder / "t", lines, _summary(counts), xlsx=False)  # type: ignore[arg-type]
    for name in ("outcomes.csv", "errors.csv"):
        assert (folder / "c" / name).read_bytes() == (folder / "j" / name).read_bytes(), name
        assert (folder / "t" / name).read_bytes() == (folder / "j" / name).read_bytes(), name
    with zipfile.ZipFile(folder / "j" / "outcomes.xlsx") as a, \
            zipfile.ZipFile(folder / "c" / "outcomes.xlsx") as b:  # fmt: skip
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            assert a.read(name) == b.read(name), name


@contextmanager
def _a_big_run(page: int = 2) -> Iterator[None]:
    """``write_csvs`` writes any run as a big one (pages rendered in threads), ``page`` lines a
    page."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reports, "_BIG_RUN", 0)
        patch.setattr(columnar_reports, "_BIG_PAGE", page)
        yield


def _rendering_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("dnc-csv-pages")]


def _many_lines(count: int) -> RunLines:
    """``count`` lines of one sheet, every 5th one invalid (errors.csv holds it)."""
    invalid = [at % 5 == 0 for at in range(count)]
    columns = {
        "row": list(range(2, count + 2)),
        "part": [1] * count,
        "raw_phone": [f"=31912{at:05}" for at in range(count)],
        "raw_days": ["30"] * count,
        "telephone": [f"31912{at:05}" for at in range(count)],
        "days_block": [30] * count,
        "status": ["invalid" if bad else "ready" for bad in invalid],
        "reason": ["too-short" if bad else "valid" for bad in invalid],
        "message": ["a, b" if bad else "ok" for bad in invalid],
    }
    table = pa.table({name: pa.array(columns[name], LINE_SCHEMA.field(name).type)
                      for name in LINE_SCHEMA.names})  # fmt: skip
    return RunLines([SheetLines("a.csv", "", table)])


def test_a_big_runs_pages_are_rendered_in_threads_and_written_in_order() -> None:
    lines = _many_lines(100)
    expected = io.BytesIO(), io.BytesIO()
    written = write_csvs(lines, *expected)
    rendered: list[str] = []
    render = columnar_reports._csv_page

    def recording(sheet: SheetLines, table: pa.Table) -> object:
        rendered.append(threading.current_thread().name)
        return render(sheet, table)

    got = io.BytesIO(), io.BytesIO()
    with _a_big_run(page=7), pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reports, "_csv_page", recording)
        threaded = write_csvs(lines, *got)
    assert len(rendered) == 15
    assert all(name.startswith("dnc-csv-pages") for name in rendered)
    assert [out.getvalue() for out in got] == [out.getvalue() for out in expected]
    assert expected[1].getvalue().count(b"\r\n") == 20
    pairs = {("invalid", "too-short"): 20, ("ready", "valid"): 80}
    assert (threaded.lines, threaded.pairs) == (written.lines, written.pairs) == (100, pairs)
    assert not _rendering_threads()


def test_an_error_rendering_a_page_is_raised_and_ends_the_threads() -> None:
    render = columnar_reports._csv_page
    calls = []

    def failing(sheet: SheetLines, table: pa.Table) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("rendering page 3")
        return render(sheet, table)

    out = io.BytesIO(), io.BytesIO()
    with _a_big_run(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reports, "_csv_page", failing)
        with pytest.raises(MemoryError, match="rendering page 3"):
            write_csvs(_many_lines(1000), *out)
    assert len(calls) < 10  # at most the pages in flight past the one that failed
    assert out[0].getvalue().count(b"\r\n") == 4  # the 2 pages before it, written
    assert not _rendering_threads()


def test_an_error_writing_stops_the_rendering_before_it_is_raised() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            if self.tell() > 20:
                raise OSError(28, "No space left on device")
            return super().write(data)  # type: ignore[arg-type]

    render = columnar_reports._csv_page
    calls = []

    def counting(sheet: SheetLines, table: pa.Table) -> object:
        calls.append(1)
        return render(sheet, table)

    with _a_big_run(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar_reports, "_csv_page", counting)
        with pytest.raises(OSError, match="No space left"):
            write_csvs(_many_lines(1000), Full(), io.BytesIO())
    assert len(calls) < 10  # of 500 pages: those in flight when the writing failed
    assert not _rendering_threads()


def test_the_sent_columns_are_read_back_from_the_journal(tmp_path: Path) -> None:
    """After sending, statuses, messages and batches are the journal's (``read_back``)."""
    from importer.line_loader import read_back

    run = (("a.csv", "", [Outcome("a.csv", "", 2, 1, "3191234567", "30", "3191234567", 30,
                                  Status.READY, Reason.VALID, "m")]),)  # fmt: skip
    with _journal(tmp_path / "journal.sqlite", run) as journal:
        lines = _tables(run)
        journal.set_lines([(1, Status.ADDED, Reason.ADDED, "added, batch 1")])
        read_back(lines, journal)
        table = lines.sheets[0].table
        assert table.column("status").to_pylist() == ["added"]
        assert table.column("message").to_pylist() == ["added, batch 1"]
        assert table.column("batch").to_pylist() == [None]
        assert lines.counts() == journal.counts()


def test_rows_made_ahead_raise_the_makers_error_and_stop_with_their_reader() -> None:
    """``xlsx_rows`` makes each page in a second thread: its error is raised to the caller,
    and a caller that stops early stops it too."""
    from importer.columnar_reports import _made_ahead

    def failing() -> Iterator[memoryview]:
        yield memoryview(b"a")
        raise OSError("no space left")

    got = []
    with pytest.raises(OSError, match="no space left"):
        for item in _made_ahead(failing()):
            got.append(bytes(item))
    assert got == [b"a"]

    made = []

    def many() -> Iterator[memoryview]:
        for n in range(1000):
            made.append(n)
            yield memoryview(b"x")

    ahead = _made_ahead(many())
    next(ahead)
    ahead.close()
    assert len(made) < 1000
    assert not [t for t in threading.enumerate() if t.name == "dnc-xlsx-rows"]


def test_rows_are_counted_in_row_order_and_out_of_it() -> None:
    """``RunLines.rows`` counts a sheet's distinct rows: from the changes between lines in
    row order (a split cell's parts share their row), by hashing in any other order."""

    def sheet(rows: list[int], source: str = "a.csv") -> SheetLines:
        size = len(rows)
        table = pa.table({"row": pa.array(rows, pa.int64()), "part": pa.array([1] * size)})
        return SheetLines(source, "", table)

    assert RunLines([sheet([2, 3, 3, 4]), sheet([5, 5])]).rows() == 4
    assert RunLines([sheet([2, 3, 4]), sheet([2, 3])]).rows() == 3
    assert RunLines([sheet([2, 3]), sheet([2, 3], "b.csv")]).rows() == 4
    assert RunLines([sheet([7])]).rows() == 1

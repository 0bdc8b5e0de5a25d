"""The reporter: run folders, the report files, formula safety, reconciliation, the summary text."""

from __future__ import annotations

import csv
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pytest
import python_calamine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.errors import ReportError
from importer.journal import Journal
from importer.model import OUTCOME_COLUMNS, Outcome, Status
from importer.reporter import (
    create_run_dir,
    human_summary,
    new_run_id,
    safe_cell,
    write_reports,
)

BOM = b"\xef\xbb\xbf"

OUTCOMES = [
    Outcome("clientes.csv", "", 2, 1, "+57 319 123 4567", "30", "3191234567", 30,
            Status.READY, "valid", ""),
    Outcome("clientes.csv", "", 3, 1, '=HYPERLINK("http://x")', "15", "", None,
            Status.INVALID, "not-a-number", 'not a number: =HYPERLINK("http://x")'),
    Outcome("crm.xlsx", "Clientes", 7, 2, "+573001112233", "-5", "3001112233", None,
            Status.INVALID, "days-negative", "días negativos, -5"),
    Outcome("crm.xlsx", "Clientes", 8, 1, "3101234567", "90", "3101234567", 90,
            Status.ADDED, "added", "@added by server", 1),
]  # fmt: skip


def counts_of(outcomes: list[Outcome]) -> dict[str, object]:
    by_status = {status.value: 0 for status in Status}
    by_reason: dict[str, int] = {}
    for outcome in outcomes:
        by_status[outcome.status.value] += 1
        by_reason[outcome.reason] = by_reason.get(outcome.reason, 0) + 1
    return {"lines": len(outcomes), "by_status": by_status, "by_reason": by_reason}


def summary_for(outcomes: list[Outcome]) -> dict[str, object]:
    return {
        "run_id": "20261128T083102Z-3f9a1c",
        "inputs": [{"path": "=clientes.csv", "sha256": "ab" * 32, "detected": {}}],
        "counts": counts_of(outcomes),
    }


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0, so only an explicit chmod can give 0600/0700."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- run ids and folders ---------------------------------------------------------------------


def test_new_run_id_is_utc_time_and_six_random_hex() -> None:
    bogota = timezone(timedelta(hours=-5))
    first = new_run_id(datetime(2026, 11, 28, 3, 31, 2, tzinfo=bogota))
    assert first.startswith("20261128T083102Z-")
    suffix = first.split("-", 1)[1]
    assert len(suffix) == 6 and int(suffix, 16) >= 0
    assert new_run_id(datetime(2026, 1, 2, 3, 4, 5)).startswith("20260102T030405Z-")
    assert len({new_run_id(datetime(2026, 1, 2, tzinfo=UTC)) for _ in range(20)}) > 1
    assert len(new_run_id()) == len("20261128T083102Z-3f9a1c")


def test_create_run_dir_is_owner_only(tmp_path: Path, open_umask: None) -> None:
    run_dir = create_run_dir(tmp_path / "reports" / "nested", "20261128T083102Z-3f9a1c")
    assert run_dir == tmp_path / "reports" / "nested" / "20261128T083102Z-3f9a1c"
    assert run_dir.is_dir() and mode(run_dir) == 0o700


def test_create_run_dir_refuses_a_used_run_id(tmp_path: Path) -> None:
    create_run_dir(tmp_path, "R1")
    with pytest.raises(ReportError) as caught:
        create_run_dir(tmp_path, "R1")
    assert str(caught.value) == (
        f"run folder {tmp_path / 'R1'} already exists: a run id is used once; start a new run"
    )


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", ".hidden"])
def test_create_run_dir_refuses_a_run_id_that_is_a_path(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ReportError, match=r"is not a run id: give one as printed by"):
        create_run_dir(tmp_path, run_id)


def test_create_run_dir_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # root ignores chmod, so refuse by hand
    with pytest.raises(ReportError) as caught:
        create_run_dir(tmp_path / "reports", "R1")
    assert str(caught.value) == (
        f"reports folder {tmp_path / 'reports'} cannot be written (Permission denied): "
        f"give --reports-dir a folder you can write"
    )


def test_create_run_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError) as caught:
        create_run_dir(tmp_path / "file", "R1")
    assert str(caught.value) == (
        f"reports folder {tmp_path / 'file'} cannot be written (File exists): "
        f"give --reports-dir a folder you can write"
    )


# -- formula safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("+57 319 123 4567", "'+57 319 123 4567"),
        ("-", "'-"),
        ("+573191234567", "+573191234567"),
        ("-5", "-5"),
        ("15.5", "15.5"),
        ("-15,5", "-15,5"),
        ("3191234567", "3191234567"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_safe_cell(value: str, written: str) -> None:
    assert safe_cell(value) == written


# -- the files ---------------------------------------------------------------------------------


def test_outcomes_csv_exact_bytes(tmp_path: Path) -> None:
    write_reports(tmp_path, lambda: OUTCOMES, summary_for(OUTCOMES), xlsx=False)
    assert (tmp_path / "outcomes.csv").read_bytes() == BOM + (
        "source_file,sheet,row,part,raw_phone,raw_days,telephone,days_block,status,reason,"
        "message,batch\r\n"
        "clientes.csv,,2,1,'+57 319 123 4567,30,3191234567,30,ready,valid,,\r\n"
        'clientes.csv,,3,1,"\'=HYPERLINK(""http://x"")",15,,,invalid,not-a-number,'
        '"not a number: =HYPERLINK(""http://x"")",\r\n'
        "crm.xlsx,Clientes,7,2,+573001112233,-5,3001112233,,invalid,days-negative,"
        '"días negativos, -5",\r\n'
        "crm.xlsx,Clientes,8,1,3101234567,90,3101234567,90,added,added,'@added by server,1\r\n"
    ).encode()


def test_errors_csv_holds_what_needs_attention_phone_first(tmp_path: Path) -> None:
    write_reports(tmp_path, lambda: OUTCOMES, summary_for(OUTCOMES), xlsx=False)
    assert (tmp_path / "errors.csv").read_bytes() == BOM + (
        "phone,days_block,status,reason,message,source_file,sheet,row,part\r\n"
        '"\'=HYPERLINK(""http://x"")",15,invalid,not-a-number,'
        '"not a number: =HYPERLINK(""http://x"")",clientes.csv,,3,1\r\n'
        '+573001112233,-5,invalid,days-negative,"días negativos, -5",crm.xlsx,Clientes,7,2\r\n'
    ).encode()


def test_errors_csv_is_written_with_its_header_when_empty(tmp_path: Path) -> None:
    ready = OUTCOMES[:1]
    files = write_reports(tmp_path, lambda: ready, summary_for(ready), xlsx=False)
    assert Path(files["errors_csv"]).read_bytes() == (
        BOM + b"phone,days_block,status,reason,message,source_file,sheet,row,part\r\n"
    )


def test_summary_json_and_the_files_returned(tmp_path: Path, open_umask: None) -> None:
    (tmp_path / "outcomes.csv").write_text("old")
    os.chmod(tmp_path / "outcomes.csv", 0o644)
    summary = summary_for(OUTCOMES)
    summary["when"] = datetime(2026, 11, 28, 8, 31, 2, tzinfo=UTC)
    summary["settings"] = {"note": "días"}
    files = write_reports(tmp_path, lambda: OUTCOMES, summary, xlsx=True)
    names = ["outcomes.csv", "errors.csv", "outcomes.xlsx", "summary.json"]
    assert files == {
        "outcomes_csv": str(tmp_path / "outcomes.csv"),
        "errors_csv": str(tmp_path / "errors.csv"),
        "outcomes_xlsx": str(tmp_path / "outcomes.xlsx"),
        "summary_json": str(tmp_path / "summary.json"),
    }
    assert [mode(Path(path)) for path in files.values()] == [0o600] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    written = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert written["reports"] == {"dir": str(tmp_path), "files": names}
    assert written["when"] == "2026-11-28T08:31:02+00:00"
    assert written["counts"] == counts_of(OUTCOMES)
    assert summary["reports"] == written["reports"]
    assert '"note": "días"' in (tmp_path / "summary.json").read_text(encoding="utf-8")


def test_outcomes_xlsx_has_text_cells_and_no_formula(tmp_path: Path) -> None:
    outcomes = [*OUTCOMES, Outcome("a.csv", "", 9, 1, "x\x07y", "=1", "", None,
                                   Status.INVALID, "not-a-number", "")]  # fmt: skip
    write_reports(tmp_path, lambda: outcomes, summary_for(outcomes), xlsx=True)
    book = openpyxl.load_workbook(tmp_path / "outcomes.xlsx")
    assert book.sheetnames == ["Outcomes", "Summary"]
    sheet = book["Outcomes"]
    rows = list(sheet.iter_rows())
    assert [cell.value for cell in rows[0]] == list(OUTCOME_COLUMNS)
    assert len(rows) == 1 + len(outcomes)
    cells = [cell for row in book.worksheets for line in row.iter_rows() for cell in line]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    phone = OUTCOME_COLUMNS.index("raw_phone")
    telephone = OUTCOME_COLUMNS.index("telephone")
    assert [row[phone].value for row in rows[1:]] == [
        "'+57 319 123 4567",
        '\'=HYPERLINK("http://x")',
        "+573001112233",
        "3101234567",
        "x\ufffdy",
    ]
    assert all(row[phone].data_type == "s" for row in rows[1:])
    assert [(row[telephone].value, row[telephone].data_type) for row in rows[1:]] == [
        ("3191234567", "s"), (None, "n"), ("3001112233", "s"), ("3101234567", "s"), (None, "n"),
    ]  # an empty text is an empty cell  # fmt: skip
    assert [row[OUTCOME_COLUMNS.index("row")].value for row in rows[1:]] == [2, 3, 7, 8, 9]
    assert rows[5][OUTCOME_COLUMNS.index("raw_days")].value == "'=1"
    summary_rows = [[c.value for c in row] for row in book["Summary"].iter_rows()]
    assert summary_rows[:2] == [["run_id", "20261128T083102Z-3f9a1c"], ["lines", 5]]
    assert ["status", "lines"] in summary_rows and ["invalid", 3] in summary_rows
    assert ["reason", "lines"] in summary_rows and ["not-a-number", 2] in summary_rows
    assert summary_rows[-1] == ["'=clientes.csv", "ab" * 32]


NASTY = [
    *OUTCOMES,
    Outcome("a&b <c>.csv", "Hoja 1", 9, 3, " 319 123 ", "\r=1", "", None, Status.REJECTED,
            "rejected-by-server", 'a "quoted" <b>&amp;</b>\r\nsecond line', 2**40),
    Outcome("ñandú.xlsx", "Año", 10, 1, "x\x00y\x1fz\tw", "", "3001112233", 1,
            Status.UNCERTAIN, "=SUM(A1)", "días: 1", None),
]  # fmt: skip


def as_written(outcome: Outcome) -> list[object]:
    """An outcome line as outcomes.xlsx holds it: safe text, control chars as U+FFFD."""
    cells: list[object] = []
    for name in OUTCOME_COLUMNS:
        value = getattr(outcome, name)
        if isinstance(value, Status):
            value = value.value
        if isinstance(value, str):
            value = safe_cell(value)
            value = "".join("\ufffd" if ord(c) < 32 and c not in "\t\n\r" else c for c in value)
        cells.append(None if value == "" else value)
    return cells


def test_openpyxl_and_calamine_read_outcomes_xlsx_back_as_written(tmp_path: Path) -> None:
    write_reports(tmp_path, lambda: NASTY, summary_for(NASTY), xlsx=True)
    expected = [list(OUTCOME_COLUMNS)] + [as_written(o) for o in NASTY]
    book = openpyxl.load_workbook(tmp_path / "outcomes.xlsx")
    by_openpyxl = [list(row) for row in book["Outcomes"].iter_rows(values_only=True)]
    calamine = python_calamine.CalamineWorkbook.from_path(str(tmp_path / "outcomes.xlsx"))
    assert calamine.sheet_names == ["Outcomes", "Summary"]
    by_calamine = [
        [None if cell == "" else int(cell) if isinstance(cell, float) else cell for cell in row]
        for row in calamine.get_sheet_by_name("Outcomes").to_python()
    ]
    assert by_openpyxl == expected
    assert by_calamine == expected
    assert by_openpyxl[-2][OUTCOME_COLUMNS.index("batch")] == 2**40  # a number, not text
    summary = [list(row) for row in book["Summary"].iter_rows(values_only=True)]
    assert summary[:3] == [["run_id", "20261128T083102Z-3f9a1c"], ["lines", 6], [None, None]]
    assert ["rejected-by-server", 1] in summary and ["'=SUM(A1)", 1] in summary


def test_reports_from_a_journal_equal_reports_from_outcomes(tmp_path: Path) -> None:
    from_list, from_journal = tmp_path / "list", tmp_path / "journal"
    from_list.mkdir()
    from_journal.mkdir()
    write_reports(from_list, lambda: NASTY, summary_for(NASTY), xlsx=True)
    with Journal.create(from_journal / "journal.sqlite", run_id="R", meta={}) as journal:
        journal.add_outcomes(NASTY)
        write_reports(from_journal, journal, summary_for(NASTY), xlsx=True)
    for name in ("outcomes.csv", "errors.csv"):
        assert (from_journal / name).read_bytes() == (from_list / name).read_bytes()
    rows = [
        [list(row) for row in openpyxl.load_workbook(folder / "outcomes.xlsx").active.values]
        for folder in (from_list, from_journal)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 1 + len(NASTY)


def test_counts_that_do_not_reconcile_raise_and_write_no_summary(tmp_path: Path) -> None:
    summary = summary_for(OUTCOMES)
    summary["counts"] = counts_of(OUTCOMES[:3])
    with pytest.raises(ReportError) as caught:
        write_reports(tmp_path, lambda: OUTCOMES, summary, xlsx=False)
    assert str(caught.value) == (
        "counts do not reconcile: outcomes.csv has 4 lines, the summary 3; "
        "status 'added': 1 in outcomes.csv, 0 in the summary; "
        "reason 'added': 1 in outcomes.csv, 0 in the summary "
        f"(this is a bug: please report it with the run folder {tmp_path})"
    )
    assert not (tmp_path / "summary.json").exists()
    assert "reports" not in summary


def test_a_summary_whose_statuses_do_not_add_up_to_its_lines(tmp_path: Path) -> None:
    summary = summary_for(OUTCOMES)
    counts = counts_of(OUTCOMES)
    counts["by_status"] = {**counts["by_status"], "skipped": 1}  # type: ignore[dict-item]
    summary["counts"] = counts
    with pytest.raises(
        ReportError,
        match=r"^counts do not reconcile: the summary's statuses add "
        r"up to 5, its lines to 4; status 'skipped': 0 in outcomes.csv, 1 in",
    ):
        write_reports(tmp_path, lambda: OUTCOMES, summary, xlsx=False)


def test_a_second_pass_that_differs_is_caught(tmp_path: Path) -> None:
    passes = iter([OUTCOMES, OUTCOMES[:2]])
    with pytest.raises(ReportError, match=r"^counts do not reconcile: outcomes.xlsx has 2 lines"):
        write_reports(tmp_path, lambda: next(passes), summary_for(OUTCOMES), xlsx=True)


def test_a_summary_without_counts(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as caught:
        write_reports(tmp_path, lambda: OUTCOMES, {"run_id": "R"}, xlsx=False)
    assert str(caught.value) == (
        "the summary has no usable counts (no by_status or by_reason mapping) "
        f"(this is a bug: please report it with the run folder {tmp_path})"
    )


def test_a_missing_run_dir_is_a_report_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "gone"
    with pytest.raises(ReportError) as caught:
        write_reports(run_dir, lambda: OUTCOMES, summary_for(OUTCOMES), xlsx=False)
    assert str(caught.value) == (
        f"reports cannot be written in {run_dir} (No such file or directory): free disk space "
        f"there or fix that folder's permissions"
    )
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_a_summary_value_json_cannot_hold(tmp_path: Path) -> None:
    summary = summary_for(OUTCOMES)
    summary["bad"] = object()
    with pytest.raises(ReportError, match=r"^summary.json cannot be written \(object is not JSON"):
        write_reports(tmp_path, lambda: OUTCOMES, summary, xlsx=False)


# -- the human summary ------------------------------------------------------------------------


def test_human_summary_text(tmp_path: Path) -> None:
    summary = summary_for(OUTCOMES)
    summary["sending"] = {"calls": 3, "retries": 1, "added": 998, "batches": 2}
    write_reports(tmp_path, lambda: OUTCOMES, summary, xlsx=False)
    assert human_summary(summary) == (
        "Run 20261128T083102Z-3f9a1c: 4 lines\n"
        "  ready           1\n"
        "  added           1\n"
        "  invalid         2\n"
        "Top reasons:\n"
        "  added                 1\n"
        "  days-negative         1\n"
        "  not-a-number          1\n"
        "  valid                 1\n"
        "Sent: 3 calls (1 retry), server added 998\n"
        f"Reports in {tmp_path}: outcomes.csv, errors.csv, summary.json"
    )


def test_human_summary_keeps_the_top_five_reasons_and_needs_no_sending() -> None:
    reasons = {"a": 1, "b": 7, "c": 3, "d": 3, "e": 2, "f": 9}
    summary: dict[str, object] = {
        "run_id": "R",
        "counts": {"lines": 25, "by_status": {"ready": 0, "invalid": 25}, "by_reason": reasons},
        "sending": None,
    }
    assert human_summary(summary) == (
        "Run R: 25 lines\n"
        "  invalid        25\n"
        "Top reasons:\n"
        "  f         9\n"
        "  b         7\n"
        "  c         3\n"
        "  d         3\n"
        "  e         2"
    )


# -- the property: whatever the lines, the reports reconcile with the journal's counts -------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
outcome_strategy = st.builds(
    Outcome,
    source_file=text,
    sheet=text,
    row=st.integers(1, 10**6),
    part=st.integers(1, 4),
    raw_phone=text,
    raw_days=text,
    telephone=text,
    days_block=st.none() | st.integers(-(2**40), 2**40),
    status=st.sampled_from(Status),
    reason=st.sampled_from(["valid", "too-short", "duplicate", "=SUM(A1)", "-", ""]) | text,
    message=text,
    batch=st.none() | st.integers(1, 10**4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcomes=st.lists(outcome_strategy, max_size=25), xlsx=st.booleans())
def test_reports_always_reconcile_with_the_journal(outcomes: list[Outcome], xlsx: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        with Journal.create(run_dir / "journal.sqlite", run_id="R", meta={}) as journal:
            journal.add_outcomes(outcomes)
            summary: dict[str, object] = {
                "run_id": "R",
                "counts": {
                    "lines": journal.line_count(),
                    "by_status": journal.counts_by_status(),
                    "by_reason": journal.counts_by_reason(),
                },
            }
            write_reports(run_dir, journal.outcomes, summary, xlsx=xlsx)
        with open(run_dir / "outcomes.csv", encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        with open(run_dir / "errors.csv", encoding="utf-8-sig", newline="") as handle:
            errors = list(csv.reader(handle))
    assert rows[0] == list(OUTCOME_COLUMNS)
    assert len(rows) - 1 == len(outcomes)
    for row, outcome in zip(rows[1:], outcomes, strict=True):
        assert row[OUTCOME_COLUMNS.index("raw_phone")] == safe_cell(outcome.raw_phone)
        assert row[OUTCOME_COLUMNS.index("message")] == safe_cell(outcome.message)
        assert row[OUTCOME_COLUMNS.index("status")] == outcome.status.value
    attention = [o for o in outcomes if o.status in {Status.INVALID, Status.REJECTED,
                 Status.UNCERTAIN, Status.FAILED, Status.NOT_SENT}]  # fmt: skip
    assert [row[0] for row in errors[1:]] == [safe_cell(o.raw_phone) for o in attention]

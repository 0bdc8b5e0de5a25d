"""The run journal over real SQLite files."""

from __future__ import annotations

import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from importer import journal as journal_module
from importer.errors import JournalError
from importer.journal import SCHEMA_VERSION, Journal
from importer.ledger import Ledger, skip_verdict
from importer.model import OUTCOME_COLUMNS, BatchResult, Outcome, SendItem, ServerTotals, Status


def line(
    telephone: str,
    days: int | None = 30,
    *,
    file: str = "clientes.csv",
    sheet: str = "",
    row: int = 2,
    part: int = 1,
    status: Status = Status.READY,
    reason: str = "valid",
) -> Outcome:
    return Outcome(
        source_file=file,
        sheet=sheet,
        row=row,
        part=part,
        raw_phone=telephone,
        raw_days="" if days is None else str(days),
        telephone=telephone,
        days_block=days,
        status=status,
        reason=reason,
        message="",
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    with Journal.create(path, run_id="RUN", meta={"settings": {"region": "CO"}}) as opened:
        yield opened


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- create / open ----------------------------------------------------------------------------


def test_create_makes_a_private_wal_file_with_its_meta(path: Path) -> None:
    with Journal.create(path, run_id="R1", meta={"settings": {"days": [1, 2]}, "n": 3}) as j:
        j.add_outcomes([line("3191234567")])
        assert j.get_meta("run_id") == "R1"
        assert j.meta() == {"n": 3, "run_id": "R1", "settings": {"days": [1, 2]}}
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF while loading
        j.ready_to_send()
        j.ready_to_send()  # idempotent
        assert mode(path) == 0o600
        assert mode(Path(f"{path}-wal")) == 0o600
        assert mode(Path(f"{path}-shm")) == 0o600
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: survives kill -9
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        other.close()


def test_the_first_batch_makes_the_journal_durable_by_itself(path: Path) -> None:
    with Journal.create(path, run_id="R", meta={}) as j:
        j.add_outcomes([line("3191234567")])
        j.begin_batch(1, list(j.items()))
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with Journal.open(path) as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert j.in_flight_batches() == [1]


def test_create_refuses_an_existing_file(path: Path) -> None:
    path.write_bytes(b"")
    with pytest.raises(JournalError) as caught:
        Journal.create(path, run_id="R", meta={})
    assert str(caught.value) == (
        f"run journal {path} already exists: a run id is used once; start a new run, "
        f"or `dnc-import resume` that one"
    )
    assert path.read_bytes() == b""


def test_create_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "journal.sqlite"
    with pytest.raises(JournalError) as caught:
        Journal.create(path, run_id="R", meta={})
    assert str(caught.value) == (
        f"run journal {path} cannot be created (No such file or directory): "
        f"give --reports-dir a folder you can write"
    )


def test_create_with_meta_that_is_not_json_leaves_no_file(path: Path) -> None:
    with pytest.raises(JournalError, match=r"the value of 'when' cannot be stored"):
        Journal.create(path, run_id="R", meta={"when": object()})
    assert not path.exists()
    assert not Path(f"{path}-wal").exists()


def test_open_a_missing_journal(path: Path) -> None:
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert str(caught.value) == (
        f"run journal {path} does not exist: check the run id, and give --reports-dir "
        f"as it was given to the run"
    )


def test_open_a_corrupt_file(path: Path) -> None:
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert str(caught.value) == (
        f"run journal {path} is corrupt or not a journal (file is not a database): "
        f"the run cannot be resumed; its reports, if written, are in the same folder"
    )
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_open_another_sqlite_file(path: Path) -> None:
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE t (x)")
    other.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert str(caught.value) == (
        f"{path} is not a dnc-import run journal: give the journal.sqlite of a run folder"
    )


def test_open_another_schema_version(path: Path) -> None:
    Journal.create(path, run_id="R", meta={}).close()
    other = sqlite3.connect(path)
    other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    other.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert str(caught.value) == (
        f"run journal {path} has schema version {SCHEMA_VERSION + 1}, this dnc-import reads "
        f"version {SCHEMA_VERSION}: use the dnc-import version that made the run"
    )


def test_a_closed_journal_raises_journal_error(path: Path) -> None:
    j = Journal.create(path, run_id="R", meta={})
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError, match=r"cannot count the lines \(Cannot operate on a closed"):
        j.line_count()


def test_meta_values_must_be_json(journal: Journal) -> None:
    with pytest.raises(JournalError) as caught:
        journal.set_meta("bad", {1, 2})
    assert "the value of 'bad' cannot be stored (Object of type set is not JSON serializable)" in (
        str(caught.value)
    )
    journal.set_meta("finished", "2026-11-28T08:31:02+00:00")
    journal.set_meta("finished", "later")
    assert journal.get_meta("finished") == "later"
    assert journal.get_meta("missing") is None


def test_reopen_after_close_keeps_everything(path: Path) -> None:
    outcomes = [line("3191234567", 30, row=2), line("3001112233", 15, row=3)]
    with Journal.create(path, run_id="R", meta={"settings": {"x": 1}}) as j:
        j.add_outcomes(outcomes)
        j.add_source("clientes.csv", "ab" * 32, {"encoding": "cp1252", "delimiter": ";"})
        items = list(j.items())
        j.begin_batch(1, items[:1])
        j.record_batch(BatchResult(1, items[:1], Status.ADDED, "added", "1 telephones were added"))
        j.begin_batch(2, items[1:])
    with Journal.open(path) as j:
        assert j.get_meta("settings") == {"x": 1}
        assert j.sources() == [
            {"path": "clientes.csv", "sha256": "ab" * 32,
             "detected": {"delimiter": ";", "encoding": "cp1252"}},
        ]  # fmt: skip
        got = list(j.outcomes())
        assert [o.status for o in got] == [Status.ADDED, Status.READY]
        assert got[0].batch == 1 and got[1].batch is None
        assert j.in_flight_batches() == [2]
        assert j.batch_line_ids(2) == [items[1].line_id]
        assert j.next_batch_number() == 3


# -- lines -------------------------------------------------------------------------------------


def test_add_outcomes_keeps_order_across_chunks_and_pages(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_INSERT_CHUNK", 3)
    monkeypatch.setattr(journal_module, "_PAGE", 4)
    outcomes = [line(f"31912345{i:02d}", i + 1, row=i + 2) for i in range(8)]
    outcomes[5].status, outcomes[5].reason = Status.INVALID, "too-short"
    outcomes[6].batch = 7
    assert journal.add_outcomes(iter(outcomes)) == 8
    assert list(journal.outcomes()) == outcomes  # 8 lines: two full pages, then an empty one
    more = [line("3000000000", 9, row=20)]
    assert journal.add_outcomes(more) == 1
    assert list(journal.outcomes()) == outcomes + more
    assert [item.line_id for item in journal.items()] == [1, 2, 3, 4, 5, 7, 8, 9]
    assert journal.line_count() == 9


def test_add_outcomes_keeps_nothing_when_the_stream_fails(journal: Journal) -> None:
    def failing() -> Iterator[Outcome]:
        yield line("3191234567")
        raise ValueError("the reader broke")

    with pytest.raises(ValueError, match="the reader broke"):
        journal.add_outcomes(failing())
    assert journal.line_count() == 0
    assert journal.add_outcomes([line("3191234567")]) == 1
    assert [o.telephone for o in journal.outcomes()] == ["3191234567"]


def test_add_outcomes_with_text_sqlite_cannot_store(journal: Journal) -> None:
    with pytest.raises(JournalError, match=r"cannot store outcome lines: a cell holds text"):
        journal.add_outcomes([line("319\udc80")])
    assert journal.line_count() == 0


def test_duplicates_longest_block_wins_and_the_message_names_the_kept_line(
    journal: Journal,
) -> None:
    journal.add_outcomes(
        [
            line("3191234567", 30, row=2),  # 1: loses to 3
            line("3001112233", 15, row=3),  # 2: tie with 4, earliest: kept
            line("3191234567", 90, file="crm.xlsx", sheet="Clientes", row=7),  # 3: kept
            line("3001112233", 15, row=5),  # 4: duplicate of 2
            line("3191234567", 90, row=8),  # 5: tie with 3, later: duplicate
            line("3101234567", 1, file="b.csv", row=4, part=2),  # 6: kept
            line("3101234567", 1, row=9),  # 7: duplicate of 6 (part 2, 1 day)
            line("3101234567", None, row=10, status=Status.INVALID, reason="missing-days"),
            line("3222222222", 10, row=11),  # 9: alone
        ]
    )
    assert journal.mark_duplicates() == 4
    got = list(journal.outcomes())
    assert [(o.status, o.reason) for o in got] == [
        (Status.DUPLICATE, "duplicate"),
        (Status.READY, "valid"),
        (Status.READY, "valid"),
        (Status.DUPLICATE, "duplicate"),
        (Status.DUPLICATE, "duplicate"),
        (Status.READY, "valid"),
        (Status.DUPLICATE, "duplicate"),
        (Status.INVALID, "missing-days"),
        (Status.READY, "valid"),
    ]
    assert got[0].message == "duplicate of crm.xlsx:Clientes row 7 (kept there with 90 days)"
    assert got[3].message == "duplicate of clientes.csv row 3 (kept there with 15 days)"
    assert got[4].message == got[0].message
    assert got[6].message == "duplicate of b.csv row 4 part 2 (kept there with 1 day)"
    assert got[7].message == ""
    assert journal.mark_duplicates() == 0
    assert list(journal.outcomes()) == got


def test_duplicates_three_way_with_a_tie_on_the_longest(journal: Journal) -> None:
    journal.add_outcomes(
        [line("3191234567", 30, row=2), line("3191234567", 60, row=3),
         line("3191234567", 60, row=4)]
    )  # fmt: skip
    assert journal.mark_duplicates() == 2
    assert [o.status for o in journal.outcomes()] == [
        Status.DUPLICATE, Status.READY, Status.DUPLICATE,
    ]  # fmt: skip
    assert {o.message for o in journal.outcomes() if o.status is Status.DUPLICATE} == {
        "duplicate of clientes.csv row 3 (kept there with 60 days)"
    }


def test_items_skips_lines_changed_while_iterating_and_never_repeats(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_PAGE", 2)
    journal.add_outcomes([line(f"31912345{i:02d}", 30, row=i + 2) for i in range(6)])
    seen: list[int] = []
    for item in journal.items():
        seen.append(item.line_id)
        journal.begin_batch(item.line_id, [item])
        journal.record_batch(BatchResult(item.line_id, [item], Status.ADDED, "added", "ok"))
        if item.line_id == 2:
            assert journal.mark_status({Status.READY}, Status.NOT_SENT, "interrupted", "stop") == 4
    assert seen == [1, 2]
    assert journal.counts_by_status()["not_sent"] == 4
    assert [i.line_id for i in journal.items({Status.NOT_SENT})] == [3, 4, 5, 6]
    assert list(journal.items(())) == []


# -- batches -----------------------------------------------------------------------------------


def test_batches_begin_record_and_totals(journal: Journal) -> None:
    journal.add_outcomes([line(f"31912345{i:02d}", 30, row=i + 2) for i in range(5)])
    items = list(journal.items())
    assert items[0] == SendItem(1, "3191234500", 30)
    assert journal.next_batch_number() == 1
    journal.begin_batch(1, items[:2])
    assert journal.in_flight_batches() == [1]
    assert journal.next_batch_number() == 2
    totals = ServerTotals(added=2, rejected=0, sent=2, http_status=200, code="201", msg="2 added")
    journal.record_batch(
        BatchResult(1, items[:2], Status.ADDED, "added", "the server added its batch", totals, 3)
    )
    assert journal.in_flight_batches() == []
    assert journal.batch_line_ids(1) == []
    journal.begin_batch(2, items[2:4])
    journal.record_batch(
        BatchResult(2, items[2:4], Status.UNCERTAIN, "no-counts", "no counts", ServerTotals())
    )
    journal.begin_batch(3, items[4:])
    assert journal.batch_line_ids(3) == [5]
    assert journal.batch_totals() == {
        "batches": 2, "in_flight": 1, "attempts": 4, "added": 2, "rejected": 0, "sent": 2,
    }  # fmt: skip
    journal.abandon_batch(3)
    assert journal.in_flight_batches() == []
    assert journal.next_batch_number() == 4
    got = list(journal.outcomes())
    assert [(o.status, o.batch) for o in got] == [
        (Status.ADDED, 1), (Status.ADDED, 1), (Status.UNCERTAIN, 2), (Status.UNCERTAIN, 2),
        (Status.READY, None),
    ]  # fmt: skip
    assert got[2].reason == "no-counts" and got[2].message == "no counts"


def test_a_split_or_resent_batch_is_no_longer_in_flight(journal: Journal) -> None:
    journal.add_outcomes([line(f"31912345{i:02d}", 30, row=i + 2) for i in range(4)])
    items = list(journal.items())
    journal.begin_batch(1, items)  # refused as malformed: the chunker splits it
    journal.begin_batch(2, items[:2])
    assert journal.in_flight_batches() == [2]
    journal.record_batch(BatchResult(2, items[:2], Status.ADDED, "added", "ok"))
    journal.begin_batch(3, items[2:])
    assert journal.in_flight_batches() == [3]
    assert journal.batch_line_ids(1) == []
    assert journal.batch_totals()["in_flight"] == 1
    assert journal.next_batch_number() == 4


def test_a_batch_is_begun_once_and_recorded_once(journal: Journal) -> None:
    journal.add_outcomes([line("3191234567")])
    items = list(journal.items())
    result = BatchResult(1, items, Status.ADDED, "added", "ok")
    with pytest.raises(JournalError) as caught:
        journal.record_batch(result)
    assert str(caught.value) == (
        f"run journal {journal.path}: batch 1 is not begun, so its verdict cannot be recorded: "
        f"call begin_batch before each request (this is a bug)"
    )
    journal.begin_batch(1, items)
    with pytest.raises(JournalError, match=r"batch 1 was already begun: number each batch"):
        journal.begin_batch(1, items)
    journal.record_batch(result)
    with pytest.raises(JournalError, match=r"batch 1 is done, so its verdict cannot be recorded"):
        journal.record_batch(result)
    assert journal.counts_by_status()["added"] == 1


def test_a_killed_process_keeps_every_committed_batch(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from importer.journal import Journal
        from importer.model import BatchResult, Outcome, Status
        j = Journal.create(Path({str(path)!r}), run_id="R", meta={{}})
        j.add_outcomes(
            Outcome("a.csv", "", r, 1, "x", "30", f"31912345{{r:02d}}", 30, Status.READY, "valid", "")
            for r in range(2, 6)
        )
        items = list(j.items())
        j.begin_batch(1, items[:2])
        j.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"))
        j.begin_batch(2, items[2:])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    with Journal.open(path) as j:
        assert [o.status for o in j.outcomes()] == [Status.ADDED] * 2 + [Status.READY] * 2
        assert j.in_flight_batches() == [2]
        assert j.batch_line_ids(2) == [3, 4]


# -- counts ------------------------------------------------------------------------------------


def test_counts_cover_every_status_and_reason(journal: Journal) -> None:
    journal.add_outcomes(
        [
            line("3191234567", row=2),
            line("3191234567", row=3),
            line("", None, row=3, part=2, status=Status.INVALID, reason="missing-phone"),
            line("12", 30, file="x.xlsx", sheet="A", row=3, status=Status.INVALID,
                 reason="too-short"),
        ]
    )  # fmt: skip
    journal.mark_duplicates()
    assert journal.counts_by_status() == {
        "ready": 1, "added": 0, "rejected": 0, "uncertain": 0, "invalid": 2, "duplicate": 1,
        "failed": 0, "not_sent": 0, "skipped": 0,
    }  # fmt: skip
    assert journal.counts_by_reason() == {
        "duplicate": 1, "missing-phone": 1, "too-short": 1, "valid": 1,
    }  # fmt: skip
    assert journal.distinct_rows() == 3
    assert journal.line_count() == 4
    assert journal.mark_status({Status.READY, Status.DUPLICATE}, Status.NOT_SENT, "r", "m") == 2
    assert journal.mark_status((), Status.NOT_SENT, "r", "m") == 0
    assert journal.counts_by_reason() == {"missing-phone": 1, "r": 2, "too-short": 1}


def test_set_lines_changes_only_the_lines_named(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "j.sqlite", run_id="r", meta={}) as journal:
        journal.add_outcomes(
            [
                Outcome(
                    "a.csv", "", row, 1, "x", "1", f"300000000{row}", 1, Status.READY, "valid", "ok"
                )
                for row in range(2, 5)
            ]
        )
        changed = journal.set_lines([(2, Status.SKIPPED, "already-blocked", "blocked until X")])
        lines = list(journal.outcomes())
    assert changed == 1
    assert [(o.row, o.status, o.reason, o.message) for o in lines] == [
        (2, Status.READY, "valid", "ok"),
        (3, Status.SKIPPED, "already-blocked", "blocked until X"),
        (4, Status.READY, "valid", "ok"),
    ]


def test_counts_in_one_pass_agree_with_the_single_counts(journal: Journal) -> None:
    journal.add_outcomes(
        [line("3191234567", row=2), line("3191234567", row=3),
         line("12", 30, row=4, status=Status.INVALID, reason="too-short")]
    )  # fmt: skip
    journal.mark_duplicates()
    assert journal.counts() == {
        "lines": journal.line_count(),
        "by_status": journal.counts_by_status(),
        "by_reason": journal.counts_by_reason(),
    }
    assert journal.counts()["by_reason"] == {"duplicate": 1, "too-short": 1, "valid": 1}


# -- rows: the fast read -----------------------------------------------------------------------


def test_rows_are_plain_tuples_in_line_order_across_pages(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_PAGE", 4)
    outcomes = [line(f"31912345{i:02d}", i + 1, row=i + 2) for i in range(9)]
    journal.add_outcomes(outcomes)
    assert list(journal.rows(("row", "status", "days_block"))) == [
        (i + 2, "ready", i + 1) for i in range(9)
    ]
    seen = []
    for row in journal.rows(("row",)):
        seen.append(row[0])
        if row[0] == 10:  # the last page: a line added meanwhile is read too
            journal.add_outcomes([line("3000000000", row=99)])
    assert seen == [*range(2, 11), 99]
    assert next(journal.rows()) == (
        "clientes.csv", "", 2, 1, "3191234500", "1", "3191234500", 1, "ready", "valid", "", None,
    )  # fmt: skip
    as_rows = [
        tuple(o.status.value if name == "status" else getattr(o, name) for name in OUTCOME_COLUMNS)
        for o in journal.outcomes()
    ]
    assert list(journal.rows()) == as_rows


def test_rows_escape_only_the_cells_that_start_with_a_listed_character(journal: Journal) -> None:
    journal.add_outcomes(
        [
            Outcome("=a.csv", "-S", 2, 1, "+57 319", "-5", "3191234567", 30, Status.READY,
                    "@r", "=m", None),
            Outcome("a.csv", "", 3, 1, "x=1", "5", "", None, Status.INVALID, "too-short",
                    "plain", None),
        ]
    )  # fmt: skip
    called: list[str] = []

    def mark(cell: str) -> str:
        called.append(cell)
        return "!" + cell

    rows = list(journal.rows(OUTCOME_COLUMNS, escape=mark, escape_first="=+-@"))
    assert rows == [
        ("!=a.csv", "!-S", 2, 1, "!+57 319", "!-5", "3191234567", 30, "ready", "!@r", "!=m",
         None),
        ("a.csv", "", 3, 1, "x=1", "5", "", None, "invalid", "too-short", "plain", None),
    ]  # fmt: skip
    assert sorted(called) == sorted(["=a.csv", "-S", "+57 319", "-5", "@r", "=m"])


def test_rows_of_a_column_that_does_not_exist(journal: Journal) -> None:
    with pytest.raises(JournalError) as caught:
        list(journal.rows(("row", "id; DROP TABLE lines")))
    assert str(caught.value) == (
        f"run journal {journal.path}: cannot read the columns ['row', 'id; DROP TABLE lines']: "
        f"name some of {', '.join(OUTCOME_COLUMNS)} (this is a bug)"
    )


# -- duplicates: the SQL against a plain Python reading of the rule ----------------------------


def expected_duplicates(outcomes: list[Outcome]) -> list[tuple[Status, str]]:
    kept: dict[str, int] = {}
    for index, o in enumerate(outcomes):
        if o.status is Status.READY:
            best = kept.get(o.telephone)
            if best is None or (o.days_block or 0) > (outcomes[best].days_block or 0):
                kept[o.telephone] = index
    verdicts = []
    for index, o in enumerate(outcomes):
        if o.status is not Status.READY or kept[o.telephone] == index:
            verdicts.append((o.status, o.message))
            continue
        k = outcomes[kept[o.telephone]]
        where = k.source_file + (f":{k.sheet}" if k.sheet else "") + f" row {k.row}"
        where += f" part {k.part}" if k.part > 1 else ""
        unit = "day" if k.days_block == 1 else "days"
        message = f"duplicate of {where} (kept there with {k.days_block} {unit})"
        verdicts.append((Status.DUPLICATE, message))
    return verdicts


def test_duplicates_agree_with_the_rule_on_many_random_lines(journal: Journal) -> None:
    pick = random.Random(5)
    outcomes = [
        line(
            f"31900000{pick.randrange(60):02d}",
            pick.choice([1, 15, 30, 30, 90]),
            file=pick.choice(["a.csv", "crm.xlsx"]),
            sheet=pick.choice(["", "Hoja 1"]),
            row=index + 2,
            part=pick.choice([1, 1, 2]),
            status=pick.choice([Status.READY] * 6 + [Status.INVALID, Status.ADDED]),
        )
        for index in range(400)
    ]
    marked = journal.add_outcomes(outcomes) and journal.mark_duplicates()
    got = [(o.status, o.message) for o in journal.outcomes()]
    assert got == expected_duplicates(outcomes)
    assert marked == sum(status is Status.DUPLICATE for status, _ in got) > 100


# -- the ledger skip: one UPDATE against the Python path over the same real files ---------------


def test_skip_confirmed_agrees_with_skip_verdict(tmp_path: Path, journal: Journal) -> None:
    today = date(2026, 11, 28)
    ledger_path = tmp_path / "state" / "ledger.sqlite"
    with Ledger.open(ledger_path) as ledger:
        ledger.record_added("wv0002", [("3000000001", 90), ("3000000002", 30)], date(2026, 11, 1))
        ledger.record_added("wv0002", [("3000000003", 1), ("3000000004", 365)], date(2026, 11, 27))
        ledger.record_added("wv0042", [("3000000005", 365)], date(2026, 11, 27))  # another server
    outcomes = [
        line("3000000001", 62, row=2),  # until 2027-01-30 = today + 63: skipped with 62
        line("3000000001", 63, row=3),  # ... and with 63 (the boundary)
        line("3000000001", 64, row=4),  # one day short: sent
        line("3000000002", 2, row=5),  # until 2026-12-01: skipped with 2 days
        line("3000000003", 1, row=6),  # until 2026-11-28 = today: not today + 1: sent
        line("3000000004", 300, row=7),  # until 2027-11-27: skipped
        line("3000000004", 300, row=8, status=Status.INVALID, reason="days-too-large"),
        line("3000000005", 1, row=9),  # confirmed on another server only: sent
        line("3999999999", 1, row=10),  # never confirmed: sent
    ]
    journal.add_outcomes(outcomes)
    with Ledger.open(ledger_path) as ledger:  # the Python path, as the pipeline takes it
        blocks = ledger.blocks("wv0002", (item.telephone for item in journal.items()))
        expected = {
            item.line_id: skip_verdict(
                blocks.get(item.telephone), item.days_block, today, server="wv0002"
            )
            for item in journal.items()
        }
    assert journal.skip_confirmed(ledger_path, "wv0002", today) == 4
    got = list(journal.outcomes())
    for line_id, why in expected.items():
        o = got[line_id - 1]
        if why is None:
            assert (o.status, o.reason) == (Status.READY, "valid"), o
        else:
            assert (o.status, o.reason, o.message) == (Status.SKIPPED, "already-blocked", why)
    assert [o.row for o in got if o.status is Status.SKIPPED] == [2, 3, 5, 7]
    assert got[0].message == (
        "already blocked on wv0002 until 2027-01-30 (confirmed 2026-11-01 for 90 days); "
        "--no-skip sends it again"
    )
    assert got[6].status is Status.INVALID
    assert journal.skip_confirmed(ledger_path, "wv0002", today) == 0
    assert journal.skip_confirmed(ledger_path, "wv9999", today) == 0  # a server it never saw
    assert [o.status for o in journal.outcomes()] == [o.status for o in got]


def test_skip_confirmed_with_a_one_day_block_and_no_write_to_the_ledger(
    tmp_path: Path, journal: Journal
) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    with Ledger.open(ledger_path) as ledger:
        ledger.record_added("wv0002", [("3000000003", 1)], date(2026, 11, 27))
    before = ledger_path.read_bytes()
    journal.add_outcomes([line("3000000003", 1, row=2)])
    assert journal.skip_confirmed(ledger_path, "wv0002", date(2026, 11, 27)) == 1
    assert next(journal.outcomes()).message == (
        "already blocked on wv0002 until 2026-11-28 (confirmed 2026-11-27 for 1 day); "
        "--no-skip sends it again"
    )
    assert ledger_path.read_bytes() == before
    assert journal._db.execute("PRAGMA database_list").fetchall()[1:] == []  # detached


def test_skip_confirmed_with_a_file_that_is_no_ledger(tmp_path: Path, journal: Journal) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()
    journal.add_outcomes([line("3000000003", 1, row=2)])
    with pytest.raises(JournalError) as caught:
        journal.skip_confirmed(other, "wv0002", date(2026, 11, 27))
    assert str(caught.value) == (
        f"run journal {journal.path}: cannot skip the numbers the ledger {other} confirmed "
        f"(no such table: dnc_ledger.blocks): check the disk has space and the run folder is "
        f"writable; everything committed before is kept"
    )
    assert journal.counts_by_status()["ready"] == 1


# -- batches as rows: held verdicts, settling, the send queue (issue 5) -----------------------


def five_lines(journal: Journal) -> list[SendItem]:
    journal.add_outcomes([line(f"31912345{i:02d}", 30, row=i + 2) for i in range(5)])
    return list(journal.items())


def raw_statuses(path: Path) -> list[str]:
    """Line statuses as stored, read by another connection (no settling on the way)."""
    other = sqlite3.connect(path)
    try:
        return [row[0] for row in other.execute("SELECT status FROM lines ORDER BY id")]
    finally:
        other.close()


def test_a_verdict_is_one_row_and_reaches_its_lines_before_anyone_reads_them(
    journal: Journal, path: Path
) -> None:
    items = five_lines(journal)
    journal.begin_batch(1, items[:3])
    finished = journal.record_batch(BatchResult(1, items[:3], Status.ADDED, "added", "ok"))
    assert raw_statuses(path) == ["ready"] * 5  # the batch row holds the verdict for now
    other = sqlite3.connect(path)
    stored = other.execute("SELECT state, finished FROM batches WHERE batch = 1").fetchone()
    other.close()
    assert stored == ("done", finished)
    assert journal.counts_by_status()["added"] == 3  # settled first
    assert raw_statuses(path) == ["added"] * 3 + ["ready"] * 2
    assert [o.batch for o in journal.outcomes()] == [1, 1, 1, None, None]


def test_a_stop_never_marks_a_recorded_line_not_sent(journal: Journal) -> None:
    items = five_lines(journal)
    journal.begin_batch(1, items[:2])
    journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"))
    assert journal.mark_status({Status.READY}, Status.NOT_SENT, "interrupted", "stop") == 3
    assert [o.status for o in journal.outcomes()] == [Status.ADDED] * 2 + [Status.NOT_SENT] * 3


def test_a_held_verdict_is_written_with_the_next_begin_or_before_any_other_use(
    journal: Journal, path: Path
) -> None:
    items = five_lines(journal)
    journal.begin_batch(1, items[:2])
    journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"), with_next=True)
    other = sqlite3.connect(path)
    assert other.execute("SELECT state FROM batches").fetchall() == [("in_flight",)]
    journal.begin_batch(2, items[2:4])  # one transaction: batch 1 done, batch 2 in flight
    assert other.execute("SELECT state FROM batches ORDER BY batch").fetchall() == [
        ("done",),
        ("in_flight",),
    ]
    journal.record_batch(BatchResult(2, items[2:4], Status.REJECTED, "x", "no"), with_next=True)
    assert journal.in_flight_batches() == []  # any use writes it first
    assert other.execute("SELECT state FROM batches WHERE batch = 2").fetchone() == ("done",)
    journal.begin_batch(3, items[4:5])
    journal.record_batch(BatchResult(3, items[4:5], Status.ADDED, "added", "ok"), with_next=True)
    journal.commit()  # and so does commit
    assert other.execute("SELECT state FROM batches WHERE batch = 3").fetchone() == ("done",)
    journal.mark_status({Status.ADDED}, Status.READY, "valid", "again")
    journal.begin_batch(4, items[4:5])
    journal.record_batch(BatchResult(4, items[4:5], Status.ADDED, "added", "ok"), with_next=True)
    journal.close()  # and so does close
    assert other.execute("SELECT state FROM batches WHERE batch = 4").fetchone() == ("done",)
    other.close()


def test_a_killed_process_loses_a_held_verdict_only_before_the_next_begin(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from importer.journal import Journal
        from importer.model import BatchResult, Outcome, Status
        j = Journal.create(Path({str(path)!r}), run_id="R", meta={{}})
        j.add_outcomes(
            Outcome("a.csv", "", r, 1, "x", "30", f"31912345{{r:02d}}", 30, Status.READY, "valid", "")
            for r in range(2, 8)
        )
        items = list(j.items())
        j.begin_batch(1, items[:2])
        j.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"), with_next=True)
        j.begin_batch(2, items[2:4])
        j.record_batch(BatchResult(2, items[2:4], Status.ADDED, "added", "ok"), with_next=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    with Journal.open(path) as j:
        # batch 1 was written with batch 2's begin; batch 2's verdict died with the process
        # before any request could follow it, so batch 2 is what resume treats as in flight
        assert j.in_flight_batches() == [2]
        assert [o.status for o in j.outcomes()] == [Status.ADDED] * 2 + [Status.READY] * 4


def test_the_send_queue_hands_each_line_once_and_never_one_already_recorded(
    journal: Journal,
) -> None:
    items = five_lines(journal)
    queue = journal.send_queue()
    assert queue.take(2) == [(1, "3191234500", 30), (2, "3191234501", 30)]
    # a batch recorded from elsewhere, ahead of the queue: it must not be handed out again
    journal.begin_batch(1, items[2:4])
    journal.record_batch(BatchResult(1, items[2:4], Status.ADDED, "added", "ok"))
    assert queue.take(10) == [(5, "3191234504", 30)]
    assert queue.take(10) == []
    assert journal.send_queue({Status.ADDED}).take(10) == [
        (3, "3191234502", 30),
        (4, "3191234503", 30),
    ]


def test_a_version_1_journal_is_refused_with_the_fix(path: Path) -> None:
    Journal.create(path, run_id="R", meta={}).close()
    other = sqlite3.connect(path)
    other.execute("PRAGMA user_version = 1")
    other.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert str(caught.value) == (
        f"run journal {path} has schema version 1, this dnc-import reads version 2: use the "
        "dnc-import version that made the run"
    )


def test_confirmed_batches_are_listed_until_marked_in_the_ledger(journal: Journal) -> None:
    items = five_lines(journal)
    journal.begin_batch(1, items[:2])
    first = journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"))
    journal.begin_batch(2, items[2:3])
    journal.record_batch(BatchResult(2, items[2:3], Status.UNCERTAIN, "no-counts", "?"))
    journal.begin_batch(3, items[3:])
    third = journal.record_batch(BatchResult(3, items[3:], Status.ADDED, "added", "ok"))
    assert journal.unledgered_batches() == [(1, first), (3, third)]
    before = journal.batch_numbers([1, 3])  # not settled yet: read through the batch's ids
    journal.settle()
    assert (
        journal.batch_numbers([1, 3])
        == before
        == {
            1: [("3191234500", 30), ("3191234501", 30)],
            3: [("3191234503", 30), ("3191234504", 30)],
        }
    )
    journal.mark_ledgered([1])
    assert journal.unledgered_batches() == [(3, third)]


def test_changed_lines_are_what_a_settle_would_change_read_without_settling(
    journal: Journal, path: Path
) -> None:
    """A reader holding the lines as loaded (ready, invalid, duplicate) is brought up to date
    by ``changed_lines``: its lines first, then each unsettled verdict over its ranges, equal
    what the journal holds once settled; and nothing is written meanwhile."""
    journal.add_outcomes(
        [line(f"31912345{i:02d}", 30, row=i + 2) for i in range(8)]
        + [line("x", status=Status.INVALID, reason="not-a-number", row=10)]
    )
    loaded = [[o.status.value, o.reason, o.message, o.batch] for o in journal.outcomes()]
    items = list(journal.items())
    journal.begin_batch(1, items[:2])
    journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "all added"))
    journal.settle()  # batch 1 is on its lines: changed lines, not a verdict
    journal.set_lines([(items[5].line_id, Status.SKIPPED, "already-blocked", "blocked")])
    journal.begin_batch(2, items[2:5])
    journal.record_batch(
        BatchResult(2, items[2:5], Status.UNCERTAIN, "partial-batch", "2 of 3"), with_next=True
    )
    journal.begin_batch(3, [items[6]])  # writes batch 2's held verdict; 3 stays in flight
    journal.begin_batch(4, [items[7]])
    journal.record_batch(BatchResult(4, [items[7]], Status.REJECTED, "rejected-by-server", "no"))
    stored = raw_statuses(path)

    changes = journal.changed_lines((Status.READY, Status.INVALID, Status.DUPLICATE))
    assert raw_statuses(path) == stored  # read, not settled
    assert changes.line_count == 9
    assert [row[0] for row in changes.lines] == [1, 2, 6]  # batch 1 and the skipped line
    assert [(v[0], v[1], v[4]) for v in changes.verdicts] == [
        (2, "uncertain", [(3, 5)]),
        (4, "rejected", [(8, 8)]),
    ]
    view = loaded
    for line_id, *values in changes.lines:
        view[line_id - 1] = values
    for batch, status, reason, message, ranges in changes.verdicts:
        for first, last in ranges:
            for line_id in range(first, last + 1):
                view[line_id - 1] = [status, reason, message, batch]
    assert view == [list(row) for row in journal.rows(("status", "reason", "message", "batch"))]
    assert raw_statuses(path) != stored  # rows() settled

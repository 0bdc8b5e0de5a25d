"""A bulk run's lines after sending (``sent_lines``) and its second process (``aftercare``).

A sending run that takes the bulk path writes its reports from its lines in memory, brought up
to date from what sending changed in the journal (no settle first, no reading every line back),
while a second process folds the ledger and settles the journal. Through the CLI, against the
real simulator: the reports are the bytes the row-at-a-time path writes from the journal,
whatever the batches met; and once the run is over its journal is settled and the ledger folded.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from importer import line_loader
from importer.aftercare import Aftercare
from importer.cli import cli
from importer.columns import (
    LINE_SCHEMA,
    SENT_MESSAGE,
    Duplicates,
    RunLines,
    SheetLines,
    with_messages,
)
from importer.journal import Journal
from importer.ledger import Ledger
from importer.model import BatchResult, Outcome, Status
from importer.sent_lines import ready_lines, refresh_sent
from importer.simulator import Simulator

StartSim = Callable[..., Simulator]
MISMATCH = "do not match the journal"
"""In run.log when the lines in memory could not be used (to send from, or for the reports)."""


@pytest.fixture(autouse=True)
def _second_process_for_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_loader, "SECOND_PROCESS_LINES", 1)


def _input(path: Path, count: int = 150) -> Path:
    """Valid mobiles (a few ending in 7 or 99), some twice, some invalid."""
    rows = ["telefono;dias"]
    for i in range(count):
        phone = "12345" if i % 17 == 0 else f"300{(i * 7919) % 10_000_000:07d}"
        rows.append(f"{phone};{30 + i % 3}")
        if i % 23 == 0:
            rows.append(f"{phone};90")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _reports(folder: Path, server: str) -> dict[str, Any]:
    """The reports of the one run in ``folder``: bytes, the server's URL blanked; and whether
    its lines had to be read back (run.log)."""
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    found: dict[str, Any] = {}
    for name in ("outcomes.csv", "errors.csv"):
        found[name] = (run_dir / name).read_bytes().replace(server.encode(), b"SERVER")
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    found["counts"], found["sending"] = summary["counts"], summary["sending"]
    found["stopped"], found["exit_code"] = summary["stopped"], summary["exit_code"]
    found["read back"] = MISMATCH in (run_dir / "run.log").read_text("utf-8")
    found["run_dir"] = run_dir
    return found


def _run(args: list[str], env: dict[str, str]) -> None:
    outcome = CliRunner().invoke(cli, ["run", *args], env=env)
    assert outcome.exit_code in (0, 1, 3), outcome.output


@pytest.mark.parametrize(
    ("sim_config", "extra", "met"),
    [
        (
            {"reject_patterns": ("7$",), "malformed_patterns": ("99$",), "max_records": 16},
            [],
            ("uncertain", "rejected"),
        ),
        ({}, ["--max-calls", "2"], ("not_sent", "skipped")),  # stopped
    ],
)
def test_a_bulk_run_reports_what_the_row_path_reports_from_its_journal(
    tmp_path: Path,
    simulator: StartSim,
    sim_token: str,
    sim_config: dict[str, Any],
    extra: list[str],
    met: tuple[str, ...],
) -> None:
    """Rejected, partly added, refused-malformed and split batches, a batch size lowered by the
    server, numbers skipped as confirmed by a first run, or a stop: the same reports."""
    first, whole = _input(tmp_path / "first.csv", 40), _input(tmp_path / "whole.csv")
    results = {}
    for path, bulk in (("rows", None), ("bulk", "0")):
        sim = simulator(token=sim_token, **sim_config)
        env = {"WOLKVOX_TOKEN": sim_token, "DNC_IMPORT_STATE_DIR": str(tmp_path / path / "state")}
        if bulk:
            env["DNC_IMPORT_BULK_BYTES"] = bulk
        common = ["--base-url", sim.base_url, "--batch-size", "40", "--reports-dir"]
        _run([str(first), *common, str(tmp_path / path / "first")], env)  # confirms some
        _run([str(whole), *common, str(tmp_path / path / "reports"), *extra], env)
        results[path] = _reports(tmp_path / path / "reports", sim.base_url)
    rows, bulk_ = results["rows"], results["bulk"]
    assert b",skipped,already-blocked," in rows["outcomes.csv"]
    assert all(rows["counts"]["by_status"][status] > 0 for status in met)
    for name in ("outcomes.csv", "errors.csv", "counts", "sending", "stopped", "exit_code"):
        assert bulk_[name] == rows[name], name
    assert bulk_["read back"] is False  # sent from memory, then brought up to date likewise


def test_once_a_bulk_run_is_over_its_journal_is_settled_and_the_ledger_folded(
    tmp_path: Path, simulator: StartSim, sim_token: str
) -> None:
    sim = simulator(token=sim_token)
    state = tmp_path / "state"
    env = {"WOLKVOX_TOKEN": sim_token, "DNC_IMPORT_STATE_DIR": str(state),
           "DNC_IMPORT_BULK_BYTES": "0"}  # fmt: skip
    reports = tmp_path / "reports"
    args = [str(_input(tmp_path / "in.csv")), "--base-url", sim.base_url, "--batch-size", "40"]
    _run([*args, "--reports-dir", str(reports)], env)
    run_dir = _reports(reports, sim.base_url)["run_dir"]
    journal = sqlite3.connect(run_dir / "journal.sqlite")
    unsettled = "SELECT COUNT(*) FROM batches WHERE state = 'done' AND line_ranges IS NOT NULL"
    assert journal.execute(unsettled).fetchone() == (0,)
    added = journal.execute("SELECT COUNT(*) FROM lines WHERE status = 'added'").fetchone()[0]
    assert added == len(sim.dnc_list()) > 100
    journal.close()
    ledger = sqlite3.connect(state / "ledger.sqlite")
    assert ledger.execute("SELECT COUNT(*) FROM pending").fetchone() == (0,)
    assert ledger.execute("SELECT COUNT(*) FROM blocks").fetchone() == (added,)
    ledger.close()


def _journal_and_lines(tmp_path: Path) -> tuple[Journal, RunLines]:
    """Four ready lines and an invalid one, in a journal and in memory, as a load leaves them."""
    outcomes = [
        Outcome("in.csv", "", row, 1, f"300000000{row}", "30", f"300000000{row}", 30,
                Status.READY, "valid", "")
        for row in range(2, 6)
    ] + [Outcome("in.csv", "", 6, 1, "x", "30", "", 30, Status.INVALID, "not-a-number", "no")]  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    journal = Journal.create(tmp_path / "journal.sqlite", run_id="R", meta={})
    journal.add_outcomes(outcomes)
    columns = {name: [getattr(o, name) for o in outcomes] for name in LINE_SCHEMA.names}
    columns["status"] = [o.status.value for o in outcomes]
    table = pa.Table.from_pydict(columns, schema=LINE_SCHEMA)
    return journal, RunLines([SheetLines("in.csv", "", table)])


def _view(lines: RunLines) -> list[tuple[object, ...]]:
    table = with_messages(lines.sheets[0].table)  # the messages as the reports see them
    names = ("status", "reason", "message", "batch")
    return list(zip(*(table.column(name).to_pylist() for name in names), strict=True))


def test_lines_that_do_not_match_the_journal_are_all_read_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal, lines = _journal_and_lines(tmp_path)
    with journal:
        items = list(journal.items())
        journal.begin_batch(1, items[:2])
        journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "all added"))
        expected = [
            ("added", "added", "all added", 1), ("added", "added", "all added", 1),
            ("ready", "valid", "", None), ("ready", "valid", "", None),
            ("invalid", "not-a-number", "no", None),
        ]  # fmt: skip
        refresh_sent(lines, journal)
        assert _view(lines) == expected
        assert MISMATCH not in caplog.text

        again, lines = _journal_and_lines(tmp_path / "again")
        table = lines.sheets[0].table  # in memory, line 2 is not ready: the journal decides
        lines.sheets[0].table = table.set_column(
            table.schema.get_field_index("status"), "status",
            pa.array(["ready", "invalid", "ready", "ready", "invalid"]),
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="importer"), again:
            items = list(again.items())
            again.begin_batch(1, items[:2])
            again.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "all added"))
            refresh_sent(lines, again)
        assert _view(lines) == expected
        assert MISMATCH in caplog.text


def test_sent_lines_hold_their_batch_message_once_and_the_queue_lets_go(tmp_path: Path) -> None:
    """Peak memory (issue 5): a sent line's message is its batch's, held once per batch (a
    dictionary, written out per page by ``with_messages``), not once per line; and the queue
    of ready lines frees its columns once it has handed them all out."""
    journal, lines = _journal_and_lines(tmp_path)
    with journal:
        queue = ready_lines(lines, journal)
        assert queue is not None and len(queue) == 4
        held = pa.total_allocated_bytes()
        items = list(journal.items())
        for batch, pair in enumerate((items[:2], items[2:4]), 1):
            journal.begin_batch(batch, pair)
            message = f"all added, batch {batch}"
            journal.record_batch(BatchResult(batch, pair, Status.ADDED, "added", message))
        assert len(queue.take(10)) == 4 and queue.take(10) == [] and len(queue) == 4
        assert pa.total_allocated_bytes() < held  # its telephones and days are gone
        refresh_sent(lines, journal)
        table = lines.sheets[0].table
        sent = table.column(SENT_MESSAGE).combine_chunks()
        assert pa.types.is_dictionary(sent.type) and len(sent.dictionary) == 2
        assert table.column("message").null_count == 4
    assert _view(lines) == [
        ("added", "added", "all added, batch 1", 1), ("added", "added", "all added, batch 1", 1),
        ("added", "added", "all added, batch 2", 2), ("added", "added", "all added, batch 2", 2),
        ("invalid", "not-a-number", "no", None),
    ]  # fmt: skip


def test_the_ready_lines_in_memory_are_what_the_journal_would_hand_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ready lines less the duplicates and the lines the ledger skipped, in line order, each
    once; lines in memory that do not match the journal's are not used."""
    journal, lines = _journal_and_lines(tmp_path)
    with journal:
        lines.duplicates = Duplicates(pa.array([1], pa.int64()), pa.array(["duplicate of 1"]))
        journal.set_lines(
            [
                (2, Status.DUPLICATE, "duplicate", "duplicate of 1"),
                (3, Status.SKIPPED, "already-blocked", "blocked"),
            ]
        )
        queue = ready_lines(lines, journal)
        assert queue is not None and len(queue) == 2
        expected = journal.send_queue().take(10)
        assert [(1, "3000000002", 30), (4, "3000000005", 30)] == expected
        assert queue.take(1) + queue.take(5) + queue.take(5) == expected

        table = lines.sheets[0].table  # one telephone differs in memory: not used
        at = table.schema.get_field_index("telephone")
        telephones = table.column("telephone").to_pylist()
        telephones[3] = "30000000051"
        lines.sheets[0].table = table.set_column(at, "telephone", pa.array(telephones))
        with caplog.at_level(logging.WARNING, logger="importer"):
            assert ready_lines(lines, journal) is None
        assert MISMATCH in caplog.text


def test_an_aftercare_that_fails_is_logged_and_its_work_left_for_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="importer"):
        Aftercare(tmp_path / "missing" / "journal.sqlite", None).wait()
    assert "settling the journal or folding the ledger failed (exit 1: " in caplog.text
    assert "does not exist" in caplog.text


def test_a_bulk_run_killed_while_its_aftercare_works_resumes_whole(
    tmp_path: Path, simulator: StartSim, sim_token: str
) -> None:
    """SIGKILL while the reports are written, the journal not settled and the ledger not
    folded (the aftercare at work, which goes on alone): resume finishes the run from its
    journal and sends nothing again."""
    sim = simulator(token=sim_token)
    valid = [f"300{i:07d}" for i in range(30_000)]  # the xlsx takes a while to write
    source = tmp_path / "in.csv"
    source.write_text("telefono;dias\n" + "".join(f"{p};30\n" for p in valid), encoding="utf-8")
    reports, state = tmp_path / "reports", tmp_path / "state"
    env = {**os.environ, "WOLKVOX_TOKEN": sim_token, "DNC_IMPORT_STATE_DIR": str(state),
           "DNC_IMPORT_BULK_BYTES": "0"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "importer", "run", str(source), "--base-url", sim.base_url,
         "--reports-dir", str(reports), "--xlsx", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if list(reports.glob("*/.outcomes.xlsx.partial")):
            process.kill()
            break
        time.sleep(0.002)
    process.wait()
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    journal = sqlite3.connect(run_dir / "journal.sqlite")
    assert journal.execute("SELECT value FROM meta WHERE key = 'state'").fetchone() == (
        '"sending"',
    )  # killed before the run's end
    journal.close()

    outcome = CliRunner().invoke(
        cli, ["resume", run_dir.name, "--reports-dir", str(reports)], env=env
    )
    assert outcome.exit_code == 0, outcome.output
    assert sorted(sim.received()) == valid  # each once
    with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as f:
        statuses = {(row["telephone"], row["status"]) for row in csv.DictReader(f)}
    assert statuses == {(phone, "added") for phone in valid}
    with Ledger.open(state / "ledger.sqlite") as ledger:
        assert len(ledger.blocks(sim.base_url, valid)) == len(valid)

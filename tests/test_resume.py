"""Issue 4: a run killed at any moment loses nothing, and ``dnc-import resume`` finishes it.

A real ``python -m importer run`` subprocess sends ~600 numbers in batches of 50 to the local
simulator over loopback HTTP and is killed (SIGKILL, or SIGTERM once) at a spread of moments;
then ``dnc-import resume RUN_ID`` finishes it (in process: nothing kills it). Afterwards the
simulator holds every valid number, received none twice except the numbers of at most the one
batch that was in flight at the kill, and the run's reports have one line per input number and
counts that reconcile. Also the quota stop and its resume, and what resume refuses.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import Result

from benchmarks.cli_runs import (
    finish,
    in_flight,
    journal_row,
    journal_state,
    read_lines,
    read_summary,
    run_dirs,
    wait_until,
)
from importer.errors import ExitCode
from importer.journal import Journal
from importer.simulator import Faults, SimConfig, Simulator
from tests import helpers
from tests.helpers import (
    assert_at_most_one_batch_again,
    invoke,
    own_state,
    received_twice,
    resume,
    token_held,
)

TOKEN = "resume-token-Qw8-DISTINCT"
BATCH = 50
FIRST = 3001000000
VALID = [str(FIRST + i) for i in range(600)]
INVALID = ("12345", "no tengo", "300100000012345")
"""Too short, not a number, too long: never sent."""
BATCHES = [VALID[i : i + BATCH] for i in range(0, len(VALID), BATCH)]

StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_state(tmp_path, monkeypatch, TOKEN)


# --- helpers ---------------------------------------------------------------------------------


def write_numbers(path: Path, valid: Sequence[str] = VALID, repeat: int = 1) -> Path:
    """``telefono;dias`` rows: the valid numbers (``repeat`` times over), invalid ones among them."""
    rows = [(phone, "30") for _ in range(repeat) for phone in valid]
    for index, bad in enumerate(INVALID):
        rows.insert(1 + index * 97, (bad, "30"))
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.writelines(f"{phone};{days}\n" for phone, days in rows)
    return path


def start_run(sim: Simulator, source: Path, reports: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m importer run`` as cron would start it: batches of ``BATCH``, short waits."""
    return helpers.start_run(
        sim, source, reports, "--batch-size", str(BATCH), "--max-wait", "0.05", *extra
    )


def run(sim: Simulator, source: Path, reports: Path, *extra: str) -> Result:
    """``dnc-import run`` in process, batches of ``BATCH``."""
    return invoke([
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--batch-size", str(BATCH), *extra,
    ])  # fmt: skip


def only_run_state(reports: Path) -> str | None:
    """The journal state of the only run under ``reports`` (None while there is none)."""
    folders = run_dirs(reports)
    return journal_state(folders[0]) if len(folders) == 1 else None


def kill(process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> tuple[int, str, str]:
    process.send_signal(signum)
    return finish(process, timeout=30)


def assert_complete(
    run_dir: Path, sim: Simulator, *, valid: Sequence[str] = VALID, duplicates: int = 0
) -> None:
    """The run's reports and the simulator agree: every valid number added exactly once in the
    reports and on the list; ``duplicates`` outcome lines are repeats of a kept line."""
    lines = read_lines(run_dir)
    assert len(lines) == len(INVALID) + len(valid) + duplicates
    added = [line["telephone"] for line in lines if line["status"] == "added"]
    assert sorted(added) == sorted(valid)  # each once
    invalid = [line["raw_phone"] for line in lines if line["status"] == "invalid"]
    assert sorted(invalid) == sorted(INVALID)
    assert sum(line["status"] == "duplicate" for line in lines) == duplicates
    assert set(valid) <= set(sim.dnc_list())
    assert set(sim.received()) == set(valid)

    summary = read_summary(run_dir)
    by_status = {key: value for key, value in summary["counts"]["by_status"].items() if value}
    expected = {"added": len(valid), "invalid": len(INVALID)}
    if duplicates:
        expected["duplicate"] = duplicates
    assert by_status == expected
    assert summary["counts"]["lines"] == len(lines)
    assert sum(summary["counts"]["by_reason"].values()) == len(lines)
    assert summary["exit_code"] == 0
    assert summary["stopped"] is None
    assert [row["phone"] for row in read_lines(run_dir, "errors.csv")] == [
        line["raw_phone"] for line in lines if line["status"] == "invalid"
    ]
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.in_flight_batches() == []
        assert journal.get_meta("state") == "finished"


def run_cut_while_writing_reports(
    sim: Simulator, source: Path, reports: Path, monkeypatch: pytest.MonkeyPatch
) -> Result:
    """``run`` in process, interrupted (Ctrl-C) as it begins to write the reports."""

    def interrupted(*args: object, **kwargs: object) -> dict[str, str]:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("importer.pipeline.write_reports", interrupted)
        return run(sim, source, reports)


# --- 1. SIGKILL at a spread of moments, then resume -----------------------------------------


def batches_recorded(reports: Path) -> int:
    """Batches whose verdict the run committed to its journal, read as another process would."""
    [run_dir] = run_dirs(reports)
    row = journal_row(run_dir, "SELECT COUNT(*) FROM batches WHERE state = 'done'")
    return 0 if row is None else int(row[0])


@dataclass(frozen=True)
class KillPoint:
    """When to kill the run: ``ready(sim, reports)`` polled every 2 ms; what the kill leaves."""

    latency: float
    ready: Callable[[Simulator, Path], bool]
    answered: Callable[[int], bool] = field(default=lambda count: True)
    """A check of how many requests the simulator answered before the kill."""
    resent: int | None = None
    """How many numbers the resume must send again (None: at most one batch)."""
    extra: tuple[str, ...] = ()


KILL_POINTS = {
    "after-3-batches": KillPoint(0.05, lambda sim, _: len(sim.requests()) >= 3),
    "mid-request": KillPoint(
        0.15, lambda sim, _: sim.calls == 2 and in_flight(sim), lambda n: n == 1, BATCH
    ),
    # the last verdict committed: killed while writing the reports (the xlsx makes that longer)
    "while-writing-reports": KillPoint(
        0.02,
        lambda sim, reports: batches_recorded(reports) == len(BATCHES),
        lambda n: n == len(BATCHES),
        resent=0,
        extra=("--xlsx",),
    ),
}


@pytest.mark.parametrize("point", list(KILL_POINTS), ids=list(KILL_POINTS))
def test_a_run_killed_while_sending_resumes_to_every_number_once(
    simulator: StartSim, tmp_path: Path, point: str
) -> None:
    kill_at = KILL_POINTS[point]
    sim = simulator(token=TOKEN, faults=Faults(latency=kill_at.latency))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    process = start_run(sim, source, reports, *kill_at.extra)
    wait_until(lambda: only_run_state(reports) == "sending" or process.poll() is not None)
    wait_until(lambda: kill_at.ready(sim, reports) or process.poll() is not None)
    kill(process)
    assert process.returncode == -signal.SIGKILL
    assert only_run_state(reports) == "sending"
    answered = len([r for r in sim.requests() if r.outcome == "added"])
    assert kill_at.answered(answered), answered
    [run_dir] = run_dirs(reports)
    assert not (run_dir / "summary.json").exists()
    wait_until(lambda: not in_flight(sim))  # a request the kill cut still ends in the server
    received = len(sim.received())

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert done.stdout == f"run_id: {run_dir.name}\n"
    again = assert_at_most_one_batch_again(sim.received(), BATCHES)
    if kill_at.resent is not None:
        assert len(again) == kill_at.resent
        assert len(sim.received()) - received == len(VALID) - received + kill_at.resent
    assert_complete(run_dir, sim)
    summary = read_summary(run_dir)
    assert len(summary["resumed"]) == 1
    assert summary["sending"]["batches"] == len(BATCHES)  # recorded ones; not the abandoned
    assert "had already finished" not in done.stderr

    # resuming it again: it says so, sends nothing and leaves the reports as they are
    calls, before = sim.calls, (run_dir / "summary.json").read_bytes()
    again_done = resume(run_dir)
    assert again_done.exit_code == 0, again_done.output
    assert again_done.stdout == f"run_id: {run_dir.name}\n"
    assert again_done.stderr.endswith(
        f"run {run_dir.name} had already finished: nothing left to send\n"
    )
    assert sim.calls == calls
    assert (run_dir / "summary.json").read_bytes() == before
    assert_complete(run_dir, sim)


def test_a_run_killed_before_its_first_batch_sends_everything_on_resume(
    simulator: StartSim, tmp_path: Path
) -> None:
    """Killed after loading, while waiting for the token another run holds: nothing sent yet."""
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    with token_held(sim, TOKEN):
        process = start_run(sim, source, reports)
        wait_until(lambda: only_run_state(reports) == "sending" or process.poll() is not None)
        time.sleep(0.05)
        kill(process)
    assert process.returncode == -signal.SIGKILL
    assert sim.calls == 0
    [run_dir] = run_dirs(reports)
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.counts_by_status()["ready"] == len(VALID)

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert received_twice(sim.received()) == set()
    assert sim.calls == len(BATCHES)
    assert_complete(run_dir, sim)


def test_a_run_killed_while_reading_has_nothing_to_resume_and_a_new_run_works(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    # 12 copies of the 600 numbers: long enough to read that the kill lands while reading
    source = write_numbers(tmp_path / "grande.csv", repeat=12)
    reports = tmp_path / "reports"
    process = start_run(sim, source, reports)
    wait_until(lambda: only_run_state(reports) is not None or process.poll() is not None)
    kill(process)
    assert only_run_state(reports) == "loading"
    assert sim.calls == 0
    [run_dir] = run_dirs(reports)

    done = resume(run_dir)
    assert done.exit_code == ExitCode.USAGE
    assert done.stderr == (
        f"Error: run {run_dir.name} stopped while reading its inputs, before anything was "
        "sent: there is nothing to resume; start a new run on the same files\n"
    )
    assert sim.calls == 0

    fresh = run(sim, source, reports, "-q")
    assert fresh.exit_code == 0, fresh.output
    [new_dir] = [path for path in run_dirs(reports) if path != run_dir]
    assert received_twice(sim.received()) == set()
    assert_complete(new_dir, sim, duplicates=11 * len(VALID))


def test_sigterm_mid_request_stops_with_exit_3_and_resumes(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.15))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    process = start_run(sim, source, reports)
    wait_until(lambda: (sim.calls == 3 and in_flight(sim)) or process.poll() is not None)
    code, stdout, stderr = kill(process, signal.SIGTERM)
    assert code == ExitCode.STOPPED, stderr
    assert len(run_dirs(reports)) == 1, (stdout, stderr, sim.calls, sim.requests())
    [run_dir] = run_dirs(reports)
    assert stdout == f"run_id: {run_dir.name}\n", stderr
    summary = read_summary(run_dir)
    assert summary["exit_code"] == 3
    assert summary["stopped"]["reason"] == "interrupted"
    statuses = Counter(line["status"] for line in read_lines(run_dir))
    assert statuses == {"added": 2 * BATCH, "not_sent": len(VALID) - 2 * BATCH, "invalid": 3}
    assert only_run_state(reports) == "stopped"
    wait_until(lambda: not in_flight(sim))

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    # the batch in flight at the signal, only
    assert received_twice(sim.received()) == set(BATCHES[2])
    assert_complete(run_dir, sim)
    assert len(read_summary(run_dir)["resumed"]) == 1


# --- 2. the quota stop, and what resume refuses ----------------------------------------------


@pytest.fixture
def quota_stopped(tmp_path: Path) -> Iterator[tuple[Path, Simulator, Path]]:
    """A run stopped by the daily quota after 4 calls: (run folder, its simulator, its db)."""
    db = tmp_path / "sim.sqlite"
    sim = Simulator(SimConfig(token=TOKEN, daily_quota=4, db_path=db)).start()
    try:
        source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
        stopped = run(sim, source, reports, "--max-wait", "0.05")
        assert stopped.exit_code == ExitCode.STOPPED, stopped.output
        [run_dir] = run_dirs(reports)
        yield run_dir, sim, db
    finally:
        sim.stop()


def test_a_quota_stop_resumes_on_a_fresh_quota_and_sends_exactly_the_rest(
    quota_stopped: tuple[Path, Simulator, Path],
) -> None:
    run_dir, sim, db = quota_stopped
    lines = read_lines(run_dir)
    not_sent = [line for line in lines if line["status"] == "not_sent"]
    assert {line["reason"] for line in not_sent} == {"quota-exhausted"}
    assert [line["telephone"] for line in not_sent] == VALID[4 * BATCH :]
    assert read_summary(run_dir)["stopped"]["reason"] == "quota-exhausted"
    first = sim.received()
    assert first == VALID[: 4 * BATCH]
    port = int(sim.base_url.rsplit(":", 1)[1])
    sim.stop()

    # the next day: the same server (same port, same list), a fresh quota
    with Simulator(SimConfig(token=TOKEN, daily_quota=100, db_path=db), port=port) as next_day:
        done = resume(run_dir)
        assert done.exit_code == 0, done.output
        assert next_day.received() == VALID[4 * BATCH :]  # exactly the rest, in order, once
        assert next_day.calls == len(BATCHES) - 4
        assert set(next_day.dnc_list()) == set(VALID)
        lines = read_lines(run_dir)
        assert Counter(line["status"] for line in lines) == {"added": 600, "invalid": 3}
        summary = read_summary(run_dir)
        assert summary["exit_code"] == 0
        assert summary["sending"]["calls"] == len(BATCHES) - 4

        calls = next_day.calls
        finished = resume(run_dir)
        assert finished.exit_code == 0
        assert finished.stderr.endswith(
            f"run {run_dir.name} had already finished: nothing left to send\n"
        )
        assert next_day.calls == calls


def test_resume_refuses_a_changed_input_naming_the_file(
    quota_stopped: tuple[Path, Simulator, Path],
) -> None:
    run_dir, sim, _ = quota_stopped
    source = run_dir.parent.parent / "numeros.csv"
    with source.open("a", encoding="utf-8") as out:
        out.write("3009999999;30\n")
    calls = sim.calls
    done = resume(run_dir)
    assert done.exit_code == ExitCode.USAGE
    assert done.stderr == (
        f"Error: {source} changed since run {run_dir.name} read it (its sha256 differs): "
        "resume sends only what that run read; start a new run for the new file\n"
    )
    assert sim.calls == calls
    assert journal_state(run_dir) == "stopped"


def test_resume_of_an_unknown_run_names_the_fix(tmp_path: Path) -> None:
    done = invoke(["resume", "20261128T083102Z-abcdef", "--reports-dir", str(tmp_path)])
    assert done.exit_code == ExitCode.USAGE
    assert done.stderr == (
        f"Error: no run 20261128T083102Z-abcdef in {tmp_path}: check the run id, and give "
        "--reports-dir as it was given to the run\n"
    )


def test_resume_needs_the_token_again(
    quota_stopped: tuple[Path, Simulator, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, sim, _ = quota_stopped
    calls = sim.calls
    monkeypatch.delenv("WOLKVOX_TOKEN")
    done = resume(run_dir)
    assert done.exit_code == ExitCode.USAGE
    assert "WOLKVOX_TOKEN" in done.stderr
    assert sim.calls == calls
    assert journal_state(run_dir) == "stopped"


# --- 3. Ctrl-C or SIGTERM outside the sending loop -------------------------------------------


def test_an_interrupt_while_writing_the_reports_says_resume(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "nothing was sent: run it again": everything was sent; resume writes the reports."""
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    cut = run_cut_while_writing_reports(sim, source, reports, monkeypatch)
    [run_dir] = run_dirs(reports)
    assert cut.exit_code == ExitCode.STOPPED
    assert cut.stderr == (
        f"Error: run {run_dir.name} was interrupted before it finished; nothing is lost: "
        f"`dnc-import resume {run_dir.name}` finishes it\n"
    )
    assert sim.received() == VALID
    assert only_run_state(reports) == "sending"

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert sim.received() == VALID  # nothing sent again
    assert_complete(run_dir, sim)


def test_resume_with_nothing_to_send_still_brings_confirmed_batches_to_the_ledger(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between the last verdict and its queueing in the ledger: every number was sent,
    so resume sends nothing, but it must still put the confirmations in the ledger, or the next
    run would send them all again instead of skipping them."""
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    cut = run_cut_while_writing_reports(sim, source, reports, monkeypatch)
    assert cut.exit_code == ExitCode.STOPPED
    [run_dir] = run_dirs(reports)
    # the moment after the verdicts, before the ledger: no confirmation queued, none marked
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (tmp_path / "state" / name).unlink(missing_ok=True)
    db = sqlite3.connect(run_dir / "journal.sqlite")
    with db:
        marked = db.execute("UPDATE batches SET ledgered = 0 WHERE status = 'added'").rowcount
    db.close()
    assert marked == len(BATCHES)

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert sim.received() == VALID  # nothing sent again

    again = run(sim, source, reports)
    assert again.exit_code == 0, again.output
    assert sim.received() == VALID  # the second run skipped every number the ledger holds
    [second] = [path for path in run_dirs(reports) if path != run_dir]
    summary = read_summary(second)
    assert summary["counts"]["by_status"]["skipped"] == len(VALID)

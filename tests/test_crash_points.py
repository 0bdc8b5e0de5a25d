"""Issue 6: SIGTERM (and SIGKILL) at a spread of moments of a real run, then ``dnc-import resume``.

tests/test_resume.py kills a run at five moments with SIGKILL and once with SIGTERM (mid-request).
Here the rest of the spread: SIGTERM while reading, while waiting for the token another run
holds, during a retry's backoff, between two batches, while writing the reports, and twice in a
row; SIGKILL during a backoff and between two batches. "Between two batches" and "while writing
the reports" are hit exactly: the run is held with SIGSTOP once its log (or its report files)
shows the moment, signalled, then let go with SIGCONT, so the signal lands at that step.

After each: the exit code (3 for SIGTERM, a clean one-line error, the reports when the run
stopped while sending; killed for SIGKILL), then ``resume`` (in process) finishes it: every
valid number added exactly once in the reports and on the simulator's list, at most one batch
received twice, the counts reconcile, no request overlapped another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from benchmarks.cli_runs import (
    finish,
    in_flight,
    journal_state,
    read_lines,
    read_summary,
    run_dirs,
    wait_until,
)
from importer.errors import ExitCode
from importer.simulator import Faults, SimConfig, Simulator
from tests import helpers
from tests.helpers import assert_at_most_one_batch_again, own_state, resume, token_held

TOKEN = "crash-token-Vb7-DISTINCT"
BATCH = 50
VALID = [str(3002000000 + i) for i in range(600)]
BATCHES = [VALID[i : i + BATCH] for i in range(0, len(VALID), BATCH)]
INVALID = ("12345", "no tengo")
StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_state(tmp_path, monkeypatch, TOKEN)


# --- helpers ---------------------------------------------------------------------------------


def write_numbers(path: Path, repeat: int = 1) -> Path:
    """``telefono;dias``: the valid numbers ``repeat`` times over (repeats are duplicates), and
    two invalid rows."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.write(f"{INVALID[0]};30\n")
        out.writelines(f"{phone};30\n" for _ in range(repeat) for phone in VALID)
        out.write(f"{INVALID[1]};30\n")
    return path


def start_run(sim: Simulator, source: Path, reports: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Batches of ``BATCH``; retries wait up to 5 s (a signal can land in the wait); quiet."""
    return helpers.start_run(
        sim, source, reports, "--batch-size", str(BATCH), "--max-wait", "5", "--quiet", *extra
    )


def signal_held(process: subprocess.Popen[bytes], *signums: int) -> None:
    """Stop the process where it is, send it ``signums``, let it go: they land at that step."""
    process.send_signal(signal.SIGSTOP)
    try:
        for signum in signums:
            process.send_signal(signum)
    finally:
        process.send_signal(signal.SIGCONT)


def in_run(reports: Path, name: str) -> Path | None:
    found = run_dirs(reports)
    return found[0] / name if len(found) == 1 else None


def logged(reports: Path, text: str) -> bool:
    log = in_run(reports, "run.log")
    return log is not None and log.is_file() and text in log.read_text(encoding="utf-8")


def exists(reports: Path, name: str) -> bool:
    path = in_run(reports, name)
    return path is not None and path.exists()


def assert_finished(run_dir: Path, received: Sequence[str], *, duplicates: int = 0) -> None:
    """Every valid number added once in the reports and received at least once; at most one
    batch received twice; the counts reconcile."""
    lines = read_lines(run_dir)
    assert sorted(line["telephone"] for line in lines if line["status"] == "added") == VALID
    assert Counter(line["status"] for line in lines) == {
        "added": len(VALID),
        "invalid": len(INVALID),
        **({"duplicate": duplicates} if duplicates else {}),
    }
    assert set(received) == set(VALID)
    assert_at_most_one_batch_again(received, BATCHES)
    summary = read_summary(run_dir)
    assert summary["counts"]["lines"] == len(lines) == sum(summary["counts"]["by_status"].values())
    assert sum(summary["counts"]["by_reason"].values()) == len(lines)
    assert (summary["exit_code"], summary["stopped"]) == (0, None)
    assert len(read_lines(run_dir, "errors.csv")) == len(INVALID)
    assert journal_state(run_dir) == "finished"


def assert_stopped_by_sigterm(run_dir: Path, code: int, stdout: str, stderr: str) -> None:
    """SIGTERM while sending: exit 3, the run id, one notice line at most, reports that say why."""
    assert code == ExitCode.STOPPED, stderr
    assert stdout == f"run_id: {run_dir.name}\n"
    assert "Traceback" not in stderr
    summary = read_summary(run_dir)
    assert summary["exit_code"] == 3
    assert summary["stopped"]["reason"] == "interrupted"
    lines = read_lines(run_dir)
    assert {line["reason"] for line in lines if line["status"] == "not_sent"} == {"interrupted"}
    assert journal_state(run_dir) == "stopped"


def one_line_interrupt(stderr: str, run_id: str) -> None:
    assert stderr == (
        f"Error: run {run_id} was interrupted before it finished; nothing is lost: "
        f"`dnc-import resume {run_id}` finishes it\n"
    )


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_while_reading_leaves_nothing_and_a_new_run_works(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "grande.csv", repeat=20), tmp_path / "reports"
    process = start_run(sim, source, reports)
    wait_until(lambda: exists(reports, "journal.sqlite") or process.poll() is not None)
    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)
    assert (code, stdout) == (ExitCode.STOPPED, "")
    assert stderr == (
        "Error: interrupted: nothing more is sent; a run that had begun sending is finished by "
        "`dnc-import resume RUN_ID`\n"
    )
    assert run_dirs(reports) == [] and sim.calls == 0  # the half-read run is gone

    code, stdout, stderr = finish(start_run(sim, source, reports))
    assert code == 0, stderr
    [run_dir] = run_dirs(reports)
    assert_finished(run_dir, sim.received(), duplicates=19 * len(VALID))


def test_sigterm_while_waiting_for_the_token_sends_nothing_and_resumes(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    with token_held(sim, TOKEN):
        process = start_run(sim, source, reports)
        wait_until(lambda: logged(reports, "sending 600 number(s)") or process.poll() is not None)
        time.sleep(0.1)  # inside the lock's wait
        process.send_signal(signal.SIGTERM)
        code, stdout, stderr = finish(process)
    [run_dir] = run_dirs(reports)
    assert_stopped_by_sigterm(run_dir, code, stdout, stderr)
    # --quiet: only the notice of the wait; the reports say the rest
    assert stderr.startswith(f"another dnc-import run (pid {os.getpid()} on host ")
    assert stderr.endswith(") is sending with this token; waiting up to 30 s (--lock-wait)\n")
    assert stderr.count("\n") == 1
    assert read_summary(run_dir)["stopped"]["message"] == (
        "interrupted while waiting for another run to release the token; nothing was sent"
    )
    assert sim.calls == 0

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert sim.calls == len(BATCHES)
    assert_finished(run_dir, sim.received())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_during_a_retry_backoff_resumes(tmp_path: Path, signum: signal.Signals) -> None:
    """The server says 429 Retry-After 5 s to every call; the signal lands in the wait. The
    next day the same server (same port, same list) answers."""
    db = tmp_path / "sim.sqlite"
    faults = Faults(rate_429=1.0, retry_after=5.0)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    with Simulator(SimConfig(token=TOKEN, db_path=db, faults=faults)) as busy:
        process = start_run(busy, source, reports)
        wait_until(lambda: len(busy.requests()) == 1 or process.poll() is not None)
        time.sleep(0.1)  # the 429 was read: the client sleeps 5 s
        process.send_signal(signum)
        code, stdout, stderr = finish(process)
        assert [record.outcome for record in busy.requests()] == ["429"]
        port = int(busy.base_url.rsplit(":", 1)[1])
    [run_dir] = run_dirs(reports)
    if signum == signal.SIGTERM:
        assert_stopped_by_sigterm(run_dir, code, stdout, stderr)
        message = read_summary(run_dir)["stopped"]["message"]
        assert message.startswith(f"interrupted while waiting to retry {BATCH} numbers (last: ")
    else:
        assert code == -signal.SIGKILL and journal_state(run_dir) == "sending"

    with Simulator(SimConfig(token=TOKEN, db_path=db), port=port) as calm:
        done = resume(run_dir)
        assert done.exit_code == 0, done.output
        assert calm.calls == len(BATCHES)
        assert_finished(run_dir, calm.received())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_between_two_batches_resumes_with_nothing_twice(
    simulator: StartSim, tmp_path: Path, signum: signal.Signals
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.02))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    process = start_run(sim, source, reports)
    wait_until(lambda: logged(reports, "batch 3: ") or process.poll() is not None)
    signal_held(process, signum)
    code, stdout, stderr = finish(process)
    [run_dir] = run_dirs(reports)
    if signum == signal.SIGTERM:
        assert_stopped_by_sigterm(run_dir, code, stdout, stderr)
        statuses = Counter(line["status"] for line in read_lines(run_dir))
        assert statuses["added"] == 3 * BATCH  # batch 4 left or not: it is not counted added
    else:
        assert code == -signal.SIGKILL and journal_state(run_dir) == "sending"
    wait_until(lambda: not in_flight(sim))

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert_finished(run_dir, sim.received())
    assert sim.violations == 0


def test_sigterm_while_writing_the_reports_resumes_without_sending(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    # 10 copies: 6,000 lines make the xlsx take long enough to be caught writing it
    source, reports = write_numbers(tmp_path / "numeros.csv", repeat=10), tmp_path / "reports"
    process = start_run(sim, source, reports, "--xlsx")
    # reports are written under temporary names (.NAME.partial) and moved into place whole
    wait_until(lambda: exists(reports, ".outcomes.xlsx.partial") or process.poll() is not None)
    signal_held(process, signal.SIGTERM)
    code, stdout, stderr = finish(process)
    [run_dir] = run_dirs(reports)
    assert (code, stdout) == (ExitCode.STOPPED, "")
    one_line_interrupt(stderr, run_dir.name)
    assert not (run_dir / "summary.json").exists()
    assert journal_state(run_dir) == "sending"
    assert sim.received() == VALID

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert sim.received() == VALID  # nothing sent again
    assert_finished(run_dir, sim.received(), duplicates=9 * len(VALID))
    assert len(read_lines(run_dir)) == 10 * len(VALID) + len(INVALID)


def test_two_sigterms_in_a_row_mid_request_still_resume(
    simulator: StartSim, tmp_path: Path
) -> None:
    """A supervisor that signals twice: the second lands while the first is being handled."""
    sim = simulator(token=TOKEN, faults=Faults(latency=0.15))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    process = start_run(sim, source, reports)
    wait_until(lambda: (sim.calls == 3 and in_flight(sim)) or process.poll() is not None)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == ExitCode.STOPPED, stderr
    assert "Traceback" not in stderr and stderr.count("\n") <= 1, stderr
    [run_dir] = run_dirs(reports)
    assert journal_state(run_dir) in ("sending", "stopped")
    wait_until(lambda: not in_flight(sim))

    done = resume(run_dir)
    assert done.exit_code == 0, done.output
    assert_finished(run_dir, sim.received())
    assert sim.violations == 0

"""Issue 6, the leftovers of the full-disk battery: a ``resume`` whose reports cannot be written,
and an unattended (``--config``) job whose resume of an unfinished run fails once it sends.

Same means as tests/test_disk_full.py (a real ``python -m importer`` against the simulator, writes
made to fail by RLIMIT_FSIZE, so no root is needed), kept apart to keep each file fast.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from importer.simulator import Faults
from tests.test_disk_full import (
    BATCH,
    BATCHES,
    TOKEN,
    StartSim,
    assert_complete,
    assert_one_line,
    assert_resumable_stop,
    fail_writes,
    finish,
    folders,
    logged,
    run_args,
    start,
    wait_until,
    write_numbers,
)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WOLKVOX_TOKEN", TOKEN)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


def test_a_resume_that_cannot_write_the_reports_keeps_the_old_ones_whole_and_says_so(
    simulator: StartSim, tmp_path: Path
) -> None:
    """A finished run whose summary.json is gone gets its reports rewritten by ``resume``; here
    no file can grow past 64 KiB (outcomes.csv is ~10 times that). The previous outcomes.csv
    stays whole (a report is never left cut short), and the line says what to fix and that
    ``dnc-import resume`` then writes them (not --reports-dir: resume writes in the run's
    folder)."""
    sim = simulator(token=TOKEN)
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    assert finish(start(run_args(sim, source, reports))) == (0, "")
    [run_dir] = folders(reports)
    before = {name: (run_dir / name).read_bytes() for name in ("outcomes.csv", "errors.csv")}
    assert len(before["outcomes.csv"]) > 4 * (64 << 10)
    (run_dir / "summary.json").unlink()

    resume = ["resume", run_dir.name, "--reports-dir", str(reports), "--quiet"]
    code, stderr = finish(start(resume, file_limit=64 << 10))
    assert code == 2, stderr
    assert assert_one_line(stderr) == (
        f"reports cannot be written in {run_dir} (File too large): free disk space there or "
        f"fix that folder's permissions; then `dnc-import resume {run_dir.name}` writes them "
        "(its journal holds every line)"
    )
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert not list(run_dir.glob(".*.partial")) and not (run_dir / "summary.json").exists()

    assert finish(start(resume)) == (0, "")
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert_complete(run_dir, sim, stops=0)


def test_a_config_job_whose_resume_fails_mid_send_stops_with_exit_3(
    simulator: StartSim, tmp_path: Path
) -> None:
    """An unattended job first resumes its unfinished run; if that fails once it sends again (a
    full disk), the exit is 3 and names that run, as for ``run`` and ``resume``: never 2,
    which says nothing was sent."""
    sim = simulator(token=TOKEN, faults=Faults(latency=0.01))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'base_url = "{sim.base_url}"\nreports_dir = "reports"\nstate_dir = "state"\n'
        f"batch_size = {BATCH}\nmax_wait = 0.05\n",
        encoding="utf-8",
    )
    rest = ["--read-timeout", "2", "--lost-answer-wait", "0.05"]  # a stop mid-request: 2.05 s
    rest_told = re.compile(r"^waiting [0-9.]+ s before using the token: [^\n]*\n", re.MULTILINE)
    first = start(["run", str(source), "--config", str(config), "--quiet", *rest])
    wait_until(lambda: logged(reports, "batch 3: ") or first.poll() is not None)
    first.send_signal(signal.SIGTERM)
    code, stderr = finish(first)
    assert code == 3, stderr
    [run_dir] = folders(reports)

    job = ["run", "--config", str(config), "--quiet", *rest]
    second = start(job, ignore_sigxfsz=True)
    wait_until(lambda: logged(reports, f"batch {BATCHES // 2}: ") or second.poll() is not None)
    fail_writes(second)
    code, stderr = finish(second)
    stderr = rest_told.sub("", stderr)  # the first stopped mid-request: the token rested first
    assert folders(reports) == [run_dir]
    notice = f"finishing the unfinished run {run_dir.name} first\n"
    assert stderr.startswith(notice), stderr
    assert_resumable_stop(code, stderr[len(notice) :], run_dir.name)

    code, stderr = finish(start(job))
    assert (code, rest_told.sub("", stderr)) == (0, notice)
    assert_complete(run_dir, sim, stops=2)

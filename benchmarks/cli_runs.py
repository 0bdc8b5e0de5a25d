"""The real CLI in a process of its own, and its run folders read as another process would.

Shared by the chaos battery (``benchmarks/chaos.py``) and the crash tests
(``tests/test_resume.py``, ``tests/test_crash_points.py``): start ``python -m importer``, wait
for a moment of its run, let it end, and read what the run left (its journal's state, its
outcome lines, its summary) without taking a lock or a write transaction from it.

    process = start_cli(["run", "numeros.csv", "--reports-dir", "reports"])
    wait_until(lambda: journal_state(run_dirs(reports)[0]) == "sending")
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from importer.simulator import Simulator


def start_cli(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[bytes] = subprocess.PIPE,
    stderr: int | IO[bytes] = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """``python -m importer ARGS`` as cron would start it, unbuffered (``env``: os.environ)."""
    return subprocess.Popen(
        [sys.executable, "-m", "importer", *args],
        cwd=cwd,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        stdout=stdout,
        stderr=stderr,
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 60.0) -> tuple[int, str, str]:
    """Its exit code, stdout and stderr ("" where not piped) once it ends; killed whatever
    happens (``subprocess.TimeoutExpired`` after ``timeout`` seconds)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, (stdout or b"").decode(), (stderr or b"").decode()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, poll: float = 0.002) -> None:
    """Poll ``condition`` every ``poll`` seconds; ``TimeoutError`` if it does not hold in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"still not so after {timeout} s")
        time.sleep(poll)


def in_flight(sim: Simulator) -> bool:
    """A request is inside the simulator: counted, its answer not decided yet."""
    return sim.calls > len(sim.requests())


def run_dirs(reports: Path) -> list[Path]:
    """The run folders under ``reports``, oldest run id first."""
    return sorted(path for path in reports.iterdir() if path.is_dir()) if reports.is_dir() else []


def journal_row(run_dir: Path, query: str) -> tuple[Any, ...] | None:
    """The first row ``query`` finds in the run's journal, read-only; None if there is no
    journal yet, it cannot be read (a run still creating it), or the query finds nothing."""
    path = run_dir / "journal.sqlite"
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            row: tuple[Any, ...] | None = db.execute(query).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row


def journal_state(run_dir: Path) -> str | None:
    """The journal's ``state`` meta (``loading``, ``sending``, ``stopped``, ``finished``)."""
    row = journal_row(run_dir, "SELECT value FROM meta WHERE key = 'state'")
    return None if row is None else str(json.loads(row[0]))


def read_lines(run_dir: Path, name: str = "outcomes.csv") -> list[dict[str, str]]:
    """The lines of one of the run's CSV reports (``outcomes.csv``, ``errors.csv``)."""
    with (run_dir / name).open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def read_summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return summary

"""A bulk-path dry run stores no lines in its journal, says so there, and resume is not fooled.

Its reports come from the lines it holds (``tests/test_bulk_path.py``: the same bytes as the
row path's); its journal keeps the run's meta and inputs only, and ``keeps_lines`` is False.
``DNC_IMPORT_BULK_BYTES=0`` makes these small real files (a CSV and an XLSX) take the bulk path.
A sending bulk run, and a row-path dry run, still store every line.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from importer import line_loader
from importer.cli import cli
from importer.errors import ExitCode, JournalError
from importer.journal import Journal
from importer.pipeline import resume_import
from importer.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [str(ROOT / "sample_data/clientes_bogota.csv"), str(ROOT / "sample_data/crm_export.xlsx")]
REPORTS = ("outcomes.csv", "errors.csv", "outcomes.xlsx")


@pytest.fixture(autouse=True)
def _second_process_for_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sending run of these few lines stores them from the second process, as a big one."""
    monkeypatch.setattr(line_loader, "SECOND_PROCESS_LINES", 1)


def _run(tmp_path: Path, *args: str, bulk: bool = True, env: dict[str, str] | None = None) -> Path:
    """``dnc-import run INPUTS ARGS``; its run folder."""
    extra = {"DNC_IMPORT_STATE_DIR": str(tmp_path / "state")}
    if bulk:
        extra["DNC_IMPORT_BULK_BYTES"] = "0"
    reports = tmp_path / "reports"
    done = CliRunner().invoke(
        cli, ["run", *INPUTS, *args, "--reports-dir", str(reports)], env={**(env or {}), **extra}
    )
    assert done.exit_code == 0, done.output
    (run_dir,) = reports.iterdir()
    return run_dir


def _stored(run_dir: Path) -> tuple[int, str | None, int]:
    """The journal's line count, its raw ``lines_kept`` meta, and how many inputs it records."""
    db = sqlite3.connect(run_dir / "journal.sqlite")
    try:
        (lines,) = db.execute("SELECT COUNT(*) FROM lines").fetchone()
        kept = db.execute("SELECT value FROM meta WHERE key = 'lines_kept'").fetchone()
        (sources,) = db.execute("SELECT COUNT(*) FROM sources").fetchone()
    finally:
        db.close()
    return lines, None if kept is None else kept[0], sources


def _summary_lines(run_dir: Path) -> int:
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    lines = summary["counts"]["lines"]
    assert isinstance(lines, int)
    return lines


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Each report's bytes and modification time."""
    return {
        name: ((run_dir / name).read_bytes(), (run_dir / name).stat().st_mtime_ns)
        for name in REPORTS
    }


def _resume(run_dir: Path) -> Result:
    return CliRunner().invoke(cli, ["resume", run_dir.name, "--reports-dir", str(run_dir.parent)])


def test_a_bulk_dry_run_stores_no_lines_and_its_journal_says_so(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "--dry-run")
    assert _stored(run_dir) == (0, "false", 2)
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert not journal.keeps_lines()
        assert journal.get_meta("state") == "finished"
    lines = _summary_lines(run_dir)
    assert lines == 53
    outcomes = (run_dir / "outcomes.csv").read_text("utf-8-sig").splitlines()
    assert len(outcomes) == 1 + lines  # the header, then every line held in memory


def test_a_row_path_dry_run_still_stores_every_line(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "--dry-run", bulk=False)
    assert _stored(run_dir) == (_summary_lines(run_dir), None, 2)
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.keeps_lines()


def test_resume_leaves_a_finished_bulk_dry_run_as_it_is(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "--dry-run")
    before, summary = _files(run_dir), (run_dir / "summary.json").read_bytes()
    done = _resume(run_dir)
    assert done.exit_code == ExitCode.OK, done.output
    assert done.stderr.endswith(f"run {run_dir.name} had already finished: nothing left to send\n")
    assert _files(run_dir) == before
    assert (run_dir / "summary.json").read_bytes() == summary


def test_resume_refuses_to_rebuild_a_bulk_dry_runs_reports_from_no_lines(tmp_path: Path) -> None:
    """summary.json gone: a row-path run's reports are written again from its journal; this
    one's journal has no lines to write them from, and says what to do instead."""
    run_dir = _run(tmp_path, "--dry-run")
    (run_dir / "summary.json").unlink()
    before = _files(run_dir)
    done = _resume(run_dir)
    assert done.exit_code == ExitCode.USAGE, done.output
    assert done.stderr == (
        f"Error: run {run_dir.name} was a dry run whose lines are not kept: its reports cannot "
        f"be written again; run the dry run again (nothing was sent)\n"
    )
    assert _files(run_dir) == before
    assert not (run_dir / "summary.json").exists()
    assert _stored(run_dir) == (0, "false", 2)


def test_resume_refuses_a_journal_without_lines_in_any_state(tmp_path: Path) -> None:
    """Whatever its state says, a journal without lines is never resumed as if it had none."""
    run_dir = _run(tmp_path, "--dry-run")
    with Journal.open(run_dir / "journal.sqlite") as journal:
        journal.set_meta("state", "stopped")
    before = _files(run_dir)
    with pytest.raises(JournalError, match="was a dry run whose lines are not kept"):
        resume_import(run_dir, None)
    assert _files(run_dir) == before


def test_a_sending_bulk_run_stores_every_line_and_resume_rebuilds_from_them(
    tmp_path: Path, simulator: Callable[..., Simulator], sim_token: str
) -> None:
    sim = simulator(token=sim_token)
    env = {"WOLKVOX_TOKEN": sim_token}
    run_dir = _run(tmp_path, "--base-url", sim.base_url, "--batch-size", "10", env=env)
    lines = _summary_lines(run_dir)
    assert _stored(run_dir) == (lines, None, 2)
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.keeps_lines()
    written = (run_dir / "outcomes.csv").read_bytes()
    (run_dir / "summary.json").unlink()
    done = CliRunner().invoke(
        cli, ["resume", run_dir.name, "--reports-dir", str(run_dir.parent)], env=env
    )
    assert done.exit_code == ExitCode.OK, done.output
    assert _summary_lines(run_dir) == lines
    assert (run_dir / "outcomes.csv").read_bytes() == written  # rebuilt from the journal

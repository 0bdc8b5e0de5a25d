"""--keep-days: old run folders go, unfinished and foreign folders stay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from importer.errors import UsageError
from importer.journal import Journal
from importer.retention import prune_runs, run_started

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_run(reports: Path, run_id: str, state: str) -> Path:
    folder = reports / run_id
    folder.mkdir(parents=True)
    with Journal.create(folder / "journal.sqlite", run_id=run_id, meta={"state": state}):
        pass
    (folder / "outcomes.csv").write_text("x")
    return folder


def test_old_finished_runs_are_deleted_and_recent_ones_kept(tmp_path: Path) -> None:
    old = make_run(tmp_path, "20261101T080000Z-aaaaaa", "finished")
    recent = make_run(tmp_path, "20261127T080000Z-bbbbbb", "finished")
    pruned = prune_runs(tmp_path, 7, now=NOW)
    assert pruned.deleted == [old]
    assert not old.exists() and recent.is_dir()


def test_unfinished_runs_are_kept_so_nothing_unsent_is_lost(tmp_path: Path) -> None:
    stopped = make_run(tmp_path, "20261101T080000Z-cccccc", "stopped")
    cut = make_run(tmp_path, "20261102T080000Z-dddddd", "sending")
    pruned = prune_runs(tmp_path, 7, now=NOW)
    assert pruned.deleted == []
    assert pruned.kept_unfinished == [stopped, cut]
    assert stopped.is_dir() and cut.is_dir()


def test_folders_that_are_not_runs_are_never_touched(tmp_path: Path) -> None:
    mine = tmp_path / "20261101T080000Z-eeeeee"  # a run-like name without a journal
    mine.mkdir()
    other = tmp_path / "keep-me"
    other.mkdir()
    (tmp_path / ".gitkeep").write_text("")
    assert prune_runs(tmp_path, 1, now=NOW).deleted == []
    assert mine.is_dir() and other.is_dir()


def test_the_current_run_can_be_protected(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261101T080000Z-ffffff", "finished")
    assert prune_runs(tmp_path, 1, now=NOW, keep=frozenset({run.name})).deleted == []


def test_keep_days_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--keep-days 0: give a number of days, 1 or more$"):
        prune_runs(tmp_path, 0, now=NOW)


def test_a_missing_reports_folder_prunes_nothing(tmp_path: Path) -> None:
    assert prune_runs(tmp_path / "none", 3, now=NOW).deleted == []


def test_run_started_reads_the_run_id() -> None:
    assert run_started("20261128T083102Z-3f9a1c") == datetime(2026, 11, 28, 8, 31, 2, tzinfo=UTC)
    assert run_started("notes") is None

"""Retention: delete old run folders (they hold personal phone numbers).

Only folders that this tool made are touched: a name that is a run id (``20261128T083102Z-3f9a1c``)
holding a ``journal.sqlite``. A run's age comes from its id (when it started). A run that was
stopped and never finished is kept until it is finished or resumed, so that ``--keep-days``
never throws away numbers that were not sent yet; it is listed as kept.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from importer.errors import ReportError, UsageError

RUN_ID = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")


@dataclass
class Pruned:
    """What ``prune_runs`` did."""

    deleted: list[Path] = field(default_factory=list)
    kept_unfinished: list[Path] = field(default_factory=list)


def run_started(run_id: str) -> datetime | None:
    """When a run started, from its id; None if the name is not a run id.

    >>> run_started("20261128T083102Z-3f9a1c")
    datetime.datetime(2026, 11, 28, 8, 31, 2, tzinfo=datetime.timezone.utc)
    """
    found = RUN_ID.fullmatch(run_id)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def prune_runs(
    reports_dir: Path, keep_days: int, *, now: datetime | None = None, keep: frozenset[str] = frozenset()
) -> Pruned:
    """Delete the run folders in ``reports_dir`` that started more than ``keep_days`` days ago."""
    if keep_days < 1:
        raise UsageError(f"--keep-days {keep_days}: give a number of days, 1 or more")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    pruned = Pruned()
    if not reports_dir.is_dir():
        return pruned
    for folder in sorted(reports_dir.iterdir()):
        started = run_started(folder.name)
        if started is None or started >= cutoff or folder.name in keep:
            continue
        if folder.is_symlink() or not (folder / "journal.sqlite").is_file():
            continue
        if _unfinished(folder):
            pruned.kept_unfinished.append(folder)
            continue
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise ReportError(
                f"old run folder {folder} cannot be deleted ({exc.strerror}): check its "
                f"permissions, or delete it by hand"
            ) from exc
        pruned.deleted.append(folder)
    return pruned


def _unfinished(folder: Path) -> bool:
    """Whether the run's journal says it stopped or was cut while sending."""
    uri = f"{(folder / 'journal.sqlite').resolve().as_uri()}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return row is not None and row[0] in ('"sending"', '"stopped"')

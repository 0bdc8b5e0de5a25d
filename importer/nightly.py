"""The unattended run: finish yesterday's unfinished runs, import the inbox, prune old runs.

>>> result = run_scheduled(ScheduledRequest(run=request, inbox=Path("inbox")))  # doctest: +SKIP

Order, each step safe to cut at any moment:

1. every unfinished run started by the same config (``config_id``) is resumed first, from its
   journal even if its export was rewritten since; never one still running in another process;
2. the inbox is scanned: files still being written wait for the next run, files whose sha256 was
   already imported are left alone (unless ``force``), files that cannot be read (or lack a days
   column with no default days) move to ``failed/`` with a ``.error.txt`` beside them;
3. the readable files (and any explicit inputs) are imported as one run; once all their rows are
   in the journal (before anything is sent) they move to ``archive/`` and their sha256 is
   recorded, so a crash after that point is finished by ``resume``, never imported twice. A dry
   run moves nothing;
4. run folders older than ``keep_days`` are deleted (never an unfinished one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from importer.config import Token
from importer.errors import ExitCode, InputError
from importer.inbox import InboxScan, archive, fail, scan
from importer.ledger import Ledger, default_ledger_path
from importer.pipeline import (
    JOURNAL_NAME,
    NoProgress,
    Progress,
    RunRequest,
    RunResult,
    check_days_columns,
    resume_import,
    run_import,
    run_in_progress,
)
from importer.reader import open_source, sha256_file
from importer.reporter import new_run_id
from importer.retention import Pruned, prune_runs


@dataclass(frozen=True)
class ScheduledRequest:
    """A nightly run: ``run`` holds the settings and the explicit inputs (may be none)."""

    run: RunRequest
    inbox: Path | None = None
    force: bool = False
    """Import inbox files again even if their sha256 was imported before."""
    keep_days: int | None = None
    token: Token | None = None
    """For resuming unfinished runs (the new run's token is in ``run.send``)."""
    settle: float = 5.0
    """An inbox file modified less than this many seconds ago is still being written."""
    on_loaded: Callable[[str], None] | None = None
    """Called with the new run's id once its rows are all in its journal (before sending)."""
    on_resume: Callable[[str | None], None] | None = None
    """Called with an unfinished run's id before it is resumed, and with None once the resumes
    are over (the CLI then knows which run an error stopped: exit 3 once it sent again)."""


@dataclass
class ScheduledResult:
    """Everything one scheduled run did."""

    resumed: list[RunResult] = field(default_factory=list)
    run: RunResult | None = None
    scan: InboxScan | None = None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    """(the file's new place in failed/, why it could not be read)."""
    archived: list[Path] = field(default_factory=list)
    pruned: Pruned | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The most serious outcome of all the runs; an unreadable inbox file counts as 1."""
        codes = [result.exit_code for result in self.resumed]
        if self.run is not None:
            codes.append(self.run.exit_code)
        if self.unreadable:
            codes.append(ExitCode.SOME_FAILED)
        return max(codes, default=ExitCode.OK)


def run_scheduled(request: ScheduledRequest, progress: Progress | None = None) -> ScheduledResult:
    """Resume, scan, import, prune; see the module docstring."""
    shown = progress or NoProgress()
    result = ScheduledResult()
    reports_dir = request.run.report.reports_dir
    if request.run.config_id is not None and request.run.send is not None:
        for run_dir in unfinished_runs(reports_dir, request.run.config_id):
            if run_in_progress(run_dir):
                shown.notice(f"run {run_dir.name} is still running in another process: left to it")
                continue
            shown.notice(f"finishing the unfinished run {run_dir.name} first")
            if request.on_resume is not None:
                request.on_resume(run_dir.name)
            resumed = resume_import(run_dir, request.token, shown, check_inputs=False)
            result.resumed.append(resumed)
        if request.on_resume is not None:
            request.on_resume(None)
    inputs = list(request.run.inputs)
    inbox_files: list[Path] = []
    if request.inbox is not None:
        inbox_files = _inbox_files(request, result, shown)
        inputs += [str(path) for path in inbox_files]
    if inputs:
        hooks = [] if request.on_loaded is None else [request.on_loaded]
        if request.inbox is not None and inbox_files and request.run.send is not None:
            # a dry run leaves the inbox as it is: the files are still to be imported
            hooks.insert(0, _archiver(request, inbox_files, result))
        run = replace(request.run, inputs=tuple(inputs))
        result.run = run_import(run, shown, on_loaded=_each(hooks) if hooks else None)
    elif not result.resumed and not result.unreadable:
        shown.notice("nothing new to import")
    if request.keep_days is not None:
        keep = frozenset(r.run_id for r in [*result.resumed, *([result.run] if result.run else [])])
        result.pruned = prune_runs(reports_dir, request.keep_days, keep=keep)
    return result


def _inbox_files(
    request: ScheduledRequest, result: ScheduledResult, progress: Progress
) -> list[Path]:
    """The inbox files to import now; the unreadable ones are moved to failed/."""
    inbox = request.inbox
    assert inbox is not None
    with Ledger.open(_ledger_path(request.run)) as ledger:
        found = scan(inbox, ledger, force=request.force, settle=request.settle)
    result.scan = found
    for path in found.still_writing:
        progress.notice(f"{path} is still being written: left for the next run")
    for path, run_id in found.already_imported:
        progress.notice(
            f"{path} was imported by run {run_id}: left alone (--force imports it again)"
        )
    readable: list[Path] = []
    for path in found.ready:
        try:
            check_days_columns([open_source(path, request.run.read)], request.run.validate)
        except InputError as exc:
            if request.run.send is None:  # a dry run leaves the inbox as it is
                result.unreadable.append((path, str(exc)))
                progress.notice(f"{path} cannot be read (left in place by a dry run): {exc}")
                continue
            moved = fail(inbox, path, new_run_id(), str(exc))
            result.unreadable.append((moved, str(exc)))
            progress.notice(f"{path} cannot be read, moved to {moved}: {exc}")
            continue
        readable.append(path)
    return readable


def _each(hooks: list[Callable[[str], None]]) -> Callable[[str], None]:
    def call_each(run_id: str) -> None:
        for hook in hooks:
            hook(run_id)

    return call_each


def _archiver(
    request: ScheduledRequest, files: list[Path], result: ScheduledResult
) -> Callable[[str], None]:
    """The on_loaded hook: archive the inbox files and record their sha256 as imported."""
    inbox = request.inbox
    assert inbox is not None
    digests = {path: sha256_file(path) for path in files}

    def archive_all(run_id: str) -> None:
        with Ledger.open(_ledger_path(request.run)) as ledger:
            for path in files:
                moved = archive(inbox, path, run_id)
                ledger.record_imported(digests[path], str(path), run_id)
                result.archived.append(moved)

    return archive_all


def _ledger_path(run: RunRequest) -> Path:
    return run.ledger if run.ledger is not None else default_ledger_path()


def unfinished_runs(reports_dir: Path, config_id: str) -> list[Path]:
    """Run folders started by this config whose journal says they stopped or were cut."""
    found: list[Path] = []
    if not reports_dir.is_dir():
        return found
    for folder in sorted(reports_dir.iterdir()):
        journal = folder / JOURNAL_NAME
        if not journal.is_file() or folder.is_symlink():
            continue
        meta = _meta(journal)
        if meta.get("config_id") == f'"{config_id}"' and meta.get("state") in (
            '"stopped"',
            '"sending"',
        ):
            found.append(folder)
    return found


def _meta(journal: Path) -> dict[str, str]:
    try:
        db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT key, value FROM meta WHERE key IN ('config_id', 'state')"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {str(key): str(value) for key, value in rows}

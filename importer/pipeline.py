"""The whole job, UI-free: read -> validate -> journal -> (send) -> report.

>>> result = run_import(RunRequest(inputs=("clientes.csv",), send=None))  # doctest: +SKIP
>>> result.exit_code
<ExitCode.OK: 0>

Every input is opened (and so checked) before the run folder exists; every row is judged and
committed to the run's journal before the first number leaves; each batch's verdict is committed
before the next batch leaves; the reports are written from the journal, and the counts are
checked to reconcile with the rows that were read before anything is written.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import phonenumbers

from importer import __version__
from importer.chunker import Chunker
from importer.client import WolkvoxClient, make_http_client
from importer.config import ReadOptions, ReportOptions, SendOptions, ValidateOptions
from importer.errors import ExitCode, ImporterError, InputError, Interrupted, SendStopped
from importer.journal import Journal
from importer.lock import token_lock
from importer.model import BatchResult, Outcome, RawRow, Status
from importer.reader import Source, open_source
from importer.reporter import create_run_dir, new_run_id, write_reports
from importer.validator import check_options, validate

JOURNAL_NAME = "journal.sqlite"
WORKBOOK_FORMATS = frozenset({"xlsx", "xlsm", "xls", "ods"})
PROBLEM_STATUSES = frozenset({Status.REJECTED, Status.UNCERTAIN, Status.FAILED, Status.NOT_SENT})


class Progress(Protocol):
    """What the core tells a front end while it works. Every method may be a no-op."""

    def rows_read(self, count: int) -> None: ...
    def sending(self, numbers: int) -> None: ...
    def batch_done(self, result: BatchResult) -> None: ...
    def notice(self, message: str) -> None: ...


class NoProgress:
    """A Progress that shows nothing (library use, --quiet, cron)."""

    def rows_read(self, count: int) -> None:
        pass

    def sending(self, numbers: int) -> None:
        pass

    def batch_done(self, result: BatchResult) -> None:
        pass

    def notice(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class RunRequest:
    """One import: the inputs and the settings of each stage. ``send=None`` is a dry run."""

    inputs: tuple[str, ...]
    read: ReadOptions = field(default_factory=ReadOptions)
    validate: ValidateOptions = field(default_factory=ValidateOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    send: SendOptions | None = None
    strict: bool = False


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left behind."""

    run_id: str
    run_dir: Path
    exit_code: ExitCode
    summary: dict[str, object]
    files: dict[str, str]


@dataclass
class _SendStats:
    calls: int = 0
    retries: int = 0
    stopped: SendStopped | None = None


def run_import(request: RunRequest, progress: Progress | None = None) -> RunResult:
    """Run one import from its inputs to its reports; raise ImporterError for bad input."""
    shown = progress or NoProgress()
    started = _now()
    check_options(request.validate)
    if not request.inputs:
        raise InputError("no input files given: name one or more .csv/.xlsx/.xls/.ods files")
    sources = [open_source(path, request.read) for path in request.inputs]
    _check_days_columns(sources, request.validate)

    run_id = new_run_id()
    run_dir = create_run_dir(request.report.reports_dir, run_id)
    try:
        journal = Journal.create(
            run_dir / JOURNAL_NAME, run_id=run_id, meta=_settings(request, run_id, started)
        )
    except ImporterError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        _load(journal, sources, request.validate, shown)
    except BaseException:
        journal.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    with journal:
        stats = _send(journal, request.send, shown) if request.send is not None else None
        return _finish(journal, request, sources, run_id, run_dir, started, stats)


def _check_days_columns(sources: list[Source], options: ValidateOptions) -> None:
    if options.default_days is not None:
        return
    for source in sources:
        for sheet in source.info.sheets:
            if sheet.days_column is None:
                where = f"{source.info.path}:{sheet.name}" if sheet.name else source.info.path
                raise InputError(
                    f"{where} has no days column and no --default-days was given: add a "
                    f'"days_block" (or "Días de bloqueo") column, name it with --days-column, '
                    f"or give --default-days N"
                )


def _load(
    journal: Journal, sources: list[Source], options: ValidateOptions, progress: Progress
) -> None:
    journal.add_outcomes(validate(_counted(_all_rows(sources), progress), options))
    for source in sources:
        journal.add_source(source.info.path, source.info.sha256, source.info.to_dict())
    journal.mark_duplicates()
    read = sum(sheet.rows for source in sources for sheet in source.info.sheets)
    judged = journal.distinct_rows()
    if read != judged:
        raise ImporterError(
            f"{read} rows were read but {judged} rows have outcome lines; nothing was sent "
            f"(this is a bug: please report it with the input files)"
        )


def _all_rows(sources: list[Source]) -> Iterator[RawRow]:
    for source in sources:
        yield from source.rows()


def _counted(rows: Iterable[RawRow], progress: Progress, every: int = 5000) -> Iterator[RawRow]:
    count = 0
    for row in rows:
        yield row
        count += 1
        if count % every == 0:
            progress.rows_read(every)
    progress.rows_read(count % every)


def _send(journal: Journal, options: SendOptions, progress: Progress) -> _SendStats:
    stats = _SendStats()
    pending = sum(1 for _ in journal.items())
    if pending == 0:
        return stats
    progress.sending(pending)
    try:
        with (
            token_lock(
                options.lock_key, options.token, wait=options.lock_wait, on_wait=progress.notice
            ),
            make_http_client(options) as http,
        ):
            client = WolkvoxClient(http, options, on_retry=progress.notice)
            chunker = Chunker(
                client,
                options,
                first_batch=journal.next_batch_number(),
                on_begin=journal.begin_batch,
            )
            try:
                for result in chunker.send(journal.items()):
                    journal.record_batch(result)
                    progress.batch_done(result)
            finally:
                stats.calls, stats.retries = client.calls, client.retries
    except SendStopped as exc:
        stats.stopped = exc
    except KeyboardInterrupt:
        stats.stopped = Interrupted("interrupted (Ctrl-C or SIGTERM) between batches")
    if stats.stopped is not None:
        journal.mark_status(
            {Status.READY},
            Status.NOT_SENT,
            stats.stopped.reason,
            f"not sent: {stats.stopped}; `dnc-import resume` sends it later",
        )
    return stats


def _exit_code(counts: dict[str, int], stats: _SendStats | None, strict: bool) -> ExitCode:
    if stats is not None and stats.stopped is not None:
        return stats.stopped.exit_code
    if any(counts.get(status.value, 0) for status in PROBLEM_STATUSES):
        return ExitCode.SOME_FAILED
    if strict and counts.get(Status.INVALID.value, 0):
        return ExitCode.SOME_FAILED
    return ExitCode.OK


def _finish(
    journal: Journal,
    request: RunRequest,
    sources: list[Source],
    run_id: str,
    run_dir: Path,
    started: str,
    stats: _SendStats | None,
) -> RunResult:
    by_status = journal.counts_by_status()
    exit_code = _exit_code(by_status, stats, request.strict)
    summary: dict[str, object] = {
        "schema": 1,
        "run_id": run_id,
        "started": started,
        "finished": _now(),
        "dry_run": request.send is None,
        "versions": {
            "dnc_import": __version__,
            "phonenumbers": phonenumbers.__version__,
            "python": platform.python_version(),
        },
        "settings": journal.get_meta("settings"),
        "inputs": [source.info.to_dict() for source in sources],
        "counts": {
            "lines": journal.line_count(),
            "rows": journal.distinct_rows(),
            "by_status": by_status,
            "by_reason": journal.counts_by_reason(),
        },
        "sending": _sending_summary(journal, stats),
        "stopped": None
        if stats is None or stats.stopped is None
        else {"reason": stats.stopped.reason, "message": str(stats.stopped)},
        "exit_code": int(exit_code),
    }
    xlsx = request.report.xlsx or any(s.info.format in WORKBOOK_FORMATS for s in sources)
    outcomes: Callable[[], Iterable[Outcome]] = journal.outcomes
    files = write_reports(run_dir, outcomes, summary, xlsx=xlsx)
    journal.set_meta("finished", summary["finished"])
    journal.set_meta("exit_code", int(exit_code))
    return RunResult(run_id, run_dir, exit_code, summary, files)


def _sending_summary(journal: Journal, stats: _SendStats | None) -> dict[str, object] | None:
    if stats is None:
        return None
    totals: dict[str, object] = dict(journal.batch_totals())
    totals["calls"] = stats.calls
    totals["retries"] = stats.retries
    return totals


def _settings(request: RunRequest, run_id: str, started: str) -> dict[str, object]:
    settings: dict[str, object] = {
        "inputs": list(request.inputs),
        "read": _plain(asdict(request.read)),
        "validate": _plain(asdict(request.validate)),
        "report": _plain(asdict(request.report)),
        "strict": request.strict,
        "dry_run": request.send is None,
    }
    if request.send is not None:
        send = {f.name: getattr(request.send, f.name) for f in fields(request.send)}
        del send["token"]
        settings["send"] = _plain(send)
    return {"run_id": run_id, "started": started, "settings": settings}


def _plain(values: dict[str, object]) -> dict[str, object]:
    """JSON-ready copies of settings (paths and enums as text)."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        elif hasattr(value, "value"):
            out[key] = value.value
        else:
            out[key] = value
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

"""The whole job, UI-free: read -> validate -> journal -> (send) -> report; and resume.

>>> result = run_import(RunRequest(inputs=("clientes.csv",), send=None))  # doctest: +SKIP
>>> result.exit_code
<ExitCode.OK: 0>

Every input is opened (and so checked) before the run folder exists; every row is judged and
committed to the run's journal before the first number leaves; each batch's verdict is committed
before the next batch leaves; the reports are written from the journal, after the code checked
that every row read has its outcome lines and that the counts reconcile.

The journal's ``state`` meta says where a run is: ``loading`` (no number sent yet; a crash
here leaves nothing to resume), ``sending``, ``stopped`` (resumable), ``finished``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import filelock
import phonenumbers

from importer import __version__
from importer.bulk_load import bulk_wanted, load_bulk
from importer.chunker import Chunker, request_body
from importer.client import WolkvoxClient, encode_body
from importer.config import ReadOptions, ReportOptions, SendOptions, Token, ValidateOptions
from importer.errors import (
    ExitCode,
    ImporterError,
    InputError,
    Interrupted,
    JournalError,
    SendStopped,
    UsageError,
)
from importer.heap import give_back
from importer.http11 import make_sender
from importer.journal import LINES_KEPT_META, Journal, line_ranges_json
from importer.ledger import Ledger
from importer.lock import token_lock
from importer.model import BatchResult, RawRow, Reason, Status
from importer.reader import Source, open_source, sha256_file
from importer.reporter import SUMMARY_JSON, create_run_dir, new_run_id, write_reports
from importer.validator import check_options, validate

if TYPE_CHECKING:
    from importer.aftercare import Aftercare
    from importer.columns import RunLines
    from importer.sent_lines import ReadyLines

JOURNAL_NAME = "journal.sqlite"
LOG_NAME = "run.log"
RUN_LOCK_NAME = ".run.lock"
WORKBOOK_FORMATS = frozenset({"xlsx", "xlsm", "xlsb", "xls", "ods"})
PROBLEM_STATUSES = frozenset({Status.REJECTED, Status.UNCERTAIN, Status.FAILED, Status.NOT_SENT})
RESENDABLE = frozenset({Status.NOT_SENT, Status.FAILED})
"""What resume sends again besides READY lines: never confirmed by the server."""

IN_FLIGHT_MESSAGE = (
    "in flight when the run was interrupted: the server may or may not have added it; "
    "`dnc-import resume` sends it again"
)
NOT_ADDED_MESSAGE = (
    "the run was interrupted while its batch waited to be sent (again): the server has not "
    "added it; `dnc-import resume` sends it"
)
"""The lines of the batch a run was interrupted on, when no attempt of it lost its answer."""

log = logging.getLogger("importer")
log.addHandler(logging.NullHandler())


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
    config_id: str | None = None
    """Which config file started the run (nightly runs resume their own unfinished runs)."""
    ledger: Path | None = None
    """The state database of confirmed numbers; None: no ledger (every valid number is sent)."""
    skip_confirmed: bool = True
    """Skip numbers the ledger says are still blocked long enough (``--no-skip`` turns it off)."""


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left behind."""

    run_id: str
    run_dir: Path
    exit_code: ExitCode
    summary: dict[str, object]
    files: dict[str, str]
    resumed: bool = False
    nothing_to_do: bool = False


@dataclass
class _SendStats:
    calls: int = 0
    retries: int = 0
    stopped: SendStopped | None = None


@dataclass
class _Clock:
    """Wall seconds spent per stage, for summary.json's ``timings``."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - since, 3)
        return now


def _refuse_repeated_inputs(inputs: Sequence[str | Path]) -> None:
    """Refuse a file named twice (the same name, or two names of one file): its rows would be
    read twice and every one of them reported as its own duplicate."""
    seen: dict[tuple[int, int] | str, str | Path] = {}
    for path in inputs:
        try:
            stat = os.stat(path)
            key: tuple[int, int] | str = (stat.st_dev, stat.st_ino)
        except OSError:
            key = str(path)  # open_source names the problem
        if key in seen:
            first = seen[key]
            same = f"{path}" if str(first) == str(path) else f"{first} and {path}"
            raise InputError(f"{same}: the same file is given twice; give each input file once")
        seen[key] = path


def run_import(
    request: RunRequest,
    progress: Progress | None = None,
    on_loaded: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one import from its inputs to its reports; raise ImporterError for bad input.

    ``on_loaded(run_id)`` is called once every row is committed to the journal, before anything
    is sent (the inbox archives its files then: from there on the journal is the truth).
    """
    shown = progress or NoProgress()
    clock, started_at = _Clock(), time.perf_counter()
    started = _now()
    check_options(request.validate)
    if not request.inputs:
        raise InputError("no input files given: name one or more .csv/.xlsx/.xls/.ods files")
    _refuse_repeated_inputs(request.inputs)
    sources = [open_source(path, request.read) for path in request.inputs]
    check_days_columns(sources, request.validate)
    for warning in unread_phone_columns(sources):
        shown.notice(warning)

    run_id = new_run_id()
    run_dir = create_run_dir(request.report.reports_dir, run_id)
    try:
        lock = _RunLock(run_dir, run_id)
        journal = Journal.create(
            run_dir / JOURNAL_NAME, run_id=run_id, meta=_meta(request, run_id, started)
        )
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    with lock, journal, _run_log(run_dir):
        log.info(
            "run %s started: %d input(s), dry run: %s", run_id, len(sources), request.send is None
        )
        try:
            lines = _load(journal, sources, request.validate, shown)
        except BaseException:
            journal.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        since = clock.add("read_validate", started_at)
        if request.send is not None:
            # from here a crash is resumable: the inbox may archive the files (on_loaded)
            journal.ready_to_send()
            journal.set_meta("state", "sending")
        try:
            if on_loaded is not None:
                on_loaded(run_id)
            stats = None
            if request.send is not None:
                # a bulk run leaves the settle and the fold to a second process (_finish)
                with _ledger(request.ledger, fold=lines is None) as ledger:
                    if ledger is not None and request.skip_confirmed:
                        _skip_confirmed(journal, ledger, request.send.lock_key)
                        since = clock.add("ledger", since)
                    queue = None if lines is None else _ready_lines(lines, journal)
                    stats = _send(
                        journal, request.send, shown, ledger, settle=lines is None, queue=queue
                    )
                    del queue
                    give_back()  # the send queue and the batches' work (issue 5's peak)
                since = clock.add("send", since)
            return _finish(journal, run_dir, stats, clock, since, lines, ledger=request.ledger)
        except KeyboardInterrupt:
            raise _interrupted(run_id, resumable=request.send is not None) from None


def resume_import(
    run_dir: Path,
    token: Token | None,
    progress: Progress | None = None,
    *,
    check_inputs: bool = True,
) -> RunResult:
    """Send what a stopped or crashed run did not get confirmed, then rewrite its reports.

    At most the batch that was in flight at a crash goes again. A finished run is left as it is
    (``nothing_to_do``, exit code 0). The inputs are checked against the sha256 the run
    recorded: a changed one is an InputError, or with ``check_inputs=False`` (an unattended
    run, whose export may be rewritten in place every night) a notice, and the run goes on from
    its journal, which holds every row it read.
    """
    shown = progress or NoProgress()
    clock, since = _Clock(), time.perf_counter()
    journal = Journal.open(run_dir / JOURNAL_NAME)
    try:
        lock = _RunLock(run_dir, run_dir.name)
    except BaseException:
        journal.close()
        raise
    with lock, journal, _run_log(run_dir):
        run_id = str(journal.get_meta("run_id"))
        state = journal.get_meta("state")
        if state == "loading":
            raise JournalError(
                f"run {run_id} stopped while reading its inputs, before anything was sent: "
                f"there is nothing to resume; start a new run on the same files"
            )
        if state == "finished":
            return _already_finished(journal, run_dir, run_id)
        if not journal.keeps_lines():  # a dry run's: it finishes or stays "loading"
            raise JournalError(_lines_not_kept(run_id))
        try:
            _check_inputs(journal, run_id, shown, strict=check_inputs)
            send = _stored_send_options(journal, token)
            pending = journal.in_flight_batches()
            _note_answer_lost(journal, [n for b in pending for n in journal.batch_line_ids(b)])
            for batch in pending:
                journal.abandon_batch(batch)
            requeued = journal.mark_status(
                RESENDABLE, Status.READY, Reason.VALID, "to be sent again (resumed)"
            )
            _note_resume(journal)
            stats = None if send is None else _SendStats()
            if send is not None and journal.counts_by_status()[Status.READY.value]:
                log.info(
                    "resuming run %s: %d line(s) to send again, %d batch(es) were in flight",
                    run_id, requeued, len(pending),
                )  # fmt: skip
                journal.set_meta("state", "sending")
                with _ledger(_stored_ledger(journal)) as ledger:
                    if ledger is not None and _stored_setting(journal, "skip_confirmed"):
                        _skip_confirmed(journal, ledger, send.lock_key)
                    stats = _send(journal, send, shown, ledger)
                since = clock.add("send", since)
            else:
                log.info("resume of run %s: nothing left to send; writing its reports", run_id)
                if send is not None:
                    # a kill between the last verdict and the end of _send: its confirmed
                    # batches reach the ledger here (_send does it when there is more to send)
                    with _ledger(_stored_ledger(journal)) as ledger:
                        if ledger is not None:
                            _push_confirmed(journal, ledger, send.lock_key)
            result = _finish(journal, run_dir, stats, clock, since)
        except KeyboardInterrupt:
            raise _interrupted(run_id, resumable=True) from None
    return replace(result, resumed=True)


def _already_finished(journal: Journal, run_dir: Path, run_id: str) -> RunResult:
    """A finished run: its reports are left as they are (rebuilt only if summary.json is gone,
    from the journal: a JournalError if it holds no lines)."""
    log.info("resume of run %s: it had already finished, nothing left to send", run_id)
    try:
        summary = json.loads((run_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    if isinstance(summary, dict) and isinstance(summary.get("reports"), dict):
        names = summary["reports"].get("files")
        files = {str(n).replace(".", "_"): str(run_dir / str(n)) for n in names or ()}
        result = RunResult(run_id, run_dir, ExitCode.OK, summary, files)
    elif not journal.keeps_lines():
        raise JournalError(_lines_not_kept(run_id))
    else:
        result = _finish(journal, run_dir, None, _Clock(), time.perf_counter())
    return replace(result, exit_code=ExitCode.OK, resumed=True, nothing_to_do=True)


def _lines_not_kept(run_id: str) -> str:
    """Why the reports of a run whose journal holds no lines (``Journal.keeps_lines``) cannot
    be written again."""
    return (
        f"run {run_id} was a dry run whose lines are not kept: its reports cannot be written "
        f"again; run the dry run again (nothing was sent)"
    )


def _interrupted(run_id: str, *, resumable: bool) -> Interrupted:
    """Ctrl-C or SIGTERM outside the sending loop (which stops cleanly on its own)."""
    if not resumable:
        return Interrupted(
            f"run {run_id} was interrupted before its reports were written: run it again"
        )
    return Interrupted(
        f"run {run_id} was interrupted before it finished; nothing is lost: "
        f"`dnc-import resume {run_id}` finishes it"
    )


class _RunLock:
    """An OS lock on ``run_dir/.run.lock``, held while a process works on the run.

    So a run is never resumed while it is still running (a nightly run started while
    yesterday's is still sending, or ``dnc-import resume`` typed meanwhile). The OS drops it
    when the process dies, so a crashed run can be resumed at once.
    """

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self._lock = filelock.FileLock(
            str(run_dir / RUN_LOCK_NAME), mode=0o600, thread_local=False, preserve_lock_file=True
        )
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise JournalError(
                f"run {run_id} is still running in another process: let it finish (or stop "
                f"it), then resume it"
            ) from None
        except OSError as exc:
            raise JournalError(
                f"run {run_id}: its lock file in {run_dir} cannot be created ({exc.strerror}): "
                f"check the run folder is writable"
            ) from exc

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def run_in_progress(run_dir: Path) -> bool:
    """Whether a process is working on the run in ``run_dir`` right now."""
    lock = filelock.FileLock(
        str(run_dir / RUN_LOCK_NAME), mode=0o600, thread_local=False, preserve_lock_file=True
    )
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:
        return False  # resume says what is wrong with the folder
    lock.release()
    return False


def run_sends(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` was a sending run (a dry run's resume needs no token)."""
    with Journal.open(run_dir / JOURNAL_NAME) as journal:
        settings = journal.get_meta("settings")
    return isinstance(settings, dict) and isinstance(settings.get("send"), dict)


def _check_inputs(journal: Journal, run_id: str, progress: Progress, *, strict: bool) -> None:
    for source in journal.sources():
        path = Path(str(source["path"]))
        if not path.is_file():
            progress.notice(f"{path} is no longer there; resuming from the journal alone")
            continue
        if sha256_file(path) == source["sha256"]:
            continue
        if not strict:
            message = (
                f"{path} changed since run {run_id} read it: sending what that run read, "
                f"from its journal"
            )
            log.warning("%s", message)
            progress.notice(message)
            continue
        raise InputError(
            f"{path} changed since run {run_id} read it (its sha256 differs): resume sends "
            f"only what that run read; start a new run for the new file"
        )


def _stored_send_options(journal: Journal, token: Token | None) -> SendOptions | None:
    settings = journal.get_meta("settings")
    send = settings.get("send") if isinstance(settings, dict) else None
    if not isinstance(send, dict):
        return None
    if token is None:
        raise UsageError("resume needs the token: set WOLKVOX_TOKEN or give --token-file")
    known = {f.name for f in fields(SendOptions)} - {"token"}
    values = {key: value for key, value in send.items() if key in known}
    if values.get("ca_bundle"):
        values["ca_bundle"] = Path(str(values["ca_bundle"]))
    return SendOptions(token=token, **values)


def _note_resume(journal: Journal) -> None:
    resumes = journal.get_meta("resumes")
    history = list(resumes) if isinstance(resumes, list) else []
    history.append(_now())
    journal.set_meta("resumes", history)


def unread_phone_columns(sources: Iterable[Source]) -> list[str]:
    """A warning for each sheet with more phone-like columns than the one read.

    Only one phone column per sheet is read; numbers in the others are NOT blocked, so the
    person must know (and can import them in another run with --phone-column).
    """
    warnings = []
    for source in sources:
        for sheet in source.info.sheets:
            if sheet.other_phone_columns:
                where = f"{source.info.path}:{sheet.name}" if sheet.name else source.info.path
                others = ", ".join(f'"{name}"' for name in sheet.other_phone_columns)
                warnings.append(
                    f'warning: {where} also has {others}; only "{sheet.phone_column}" is read. '
                    f"To block those numbers too, run again with --phone-column NAME"
                )
    return warnings


def check_days_columns(sources: Iterable[Source], options: ValidateOptions) -> None:
    """InputError for a sheet without a days column when no default days were given."""
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
) -> RunLines | None:
    """Judge every row into the journal, duplicates marked; check every row has its lines.

    Big runs take the bulk path (``importer.bulk_load``), which returns the lines it keeps for
    the reports (a dry run's only there, not in the journal); the row-at-a-time path returns
    None.
    """
    lines: RunLines | None = None
    if bulk_wanted(sources):
        lines, duplicates = load_bulk(journal, sources, options, progress.rows_read)
        judged, count = lines.rows(), lines.count
    else:
        journal.add_outcomes(validate(_counted(_all_rows(sources), progress), options))
        duplicates = journal.mark_duplicates()
        judged, count = journal.distinct_rows(), journal.line_count()
    for source in sources:
        journal.add_source(source.info.path, source.info.sha256, source.info.to_dict())
    read = sum(sheet.rows for source in sources for sheet in source.info.sheets)
    if read != judged:
        raise ImporterError(
            f"{read} rows were read but {judged} rows have outcome lines; nothing was sent "
            f"(this is a bug: please report it with the input files)"
        )
    log.info("read %d row(s) into %d line(s); %d duplicate(s)", read, count, duplicates)
    return lines


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


def _send(
    journal: Journal,
    options: SendOptions,
    progress: Progress,
    ledger: Ledger | None = None,
    *,
    settle: bool = True,
    queue: ReadyLines | None = None,
) -> _SendStats:
    """Send every ready line (``queue``: the journal's ready lines, as a bulk run holds them;
    None: read from the journal); ``settle``: copy the verdicts onto their lines at the end
    (else the journal does it at its next use of the lines)."""
    stats = _SendStats()
    if ledger is not None:
        _push_confirmed(journal, ledger, options.lock_key)  # what a killed run left unqueued
    pending = journal.counts_by_status()[Status.READY.value] if queue is None else len(queue)
    if pending == 0:
        return stats
    progress.sending(pending)
    log.info(
        "sending %d number(s) to %s in batches of %d", pending, options.url, options.batch_size
    )
    client: WolkvoxClient | None = None
    chunker: Chunker | None = None
    maybe_added = True  # the interrupted batch's numbers, unless the client knows they were not
    try:
        with (
            token_lock(
                options.lock_key,
                options.token,
                wait=options.lock_wait,
                on_wait=_logged(progress.notice),
            ) as rest,
            make_sender(options) as http,
        ):
            client = WolkvoxClient(
                http, options, on_retry=_logged(progress.notice), note_rest=rest.note
            )
            chunker = Chunker(
                client,
                options,
                first_batch=journal.next_batch_number(),
                on_begin=journal.begin_batch,
                answer_lost=_answer_lost_lines(journal),
            )
            later = _Later(journal, progress, ledger, options.lock_key)
            # No garbage collection while sending: what the run holds by now made a full one
            # take ~130 ms, and each batch read ahead triggered ~5 young ones (~1 ms); the
            # loop makes no reference cycles worth collecting (reference counting frees it).
            collecting = gc.isenabled()
            gc.disable()
            try:
                # Between two requests there is only the verdict and one journal commit (this
                # verdict with the next batch's begin). The next batch is read, and this one
                # queued in the ledger and logged, while the next request is in flight.
                rows = journal.send_queue() if queue is None else queue
                for result in chunker.send_queue(rows, later.flush):
                    # committed with the next batch's begin, before that request leaves
                    later.add(result, journal.record_batch(result, with_next=True))
            finally:
                if collecting:
                    gc.enable()
                stats.calls, stats.retries = client.calls, client.retries
                later.flush()
        if settle:
            journal.settle()  # every verdict onto its lines now, in one transaction
    except SendStopped as exc:
        stats.stopped = exc
        maybe_added = client is None or client.last_answer_lost
        if chunker is not None:  # resume sends its lines again: they may have been added
            _note_answer_lost(journal, chunker.failed_after_lost_answer)
    except KeyboardInterrupt:
        stats.stopped = Interrupted("interrupted (Ctrl-C or SIGTERM) between batches")
    if stats.stopped is not None:
        log.warning("run stopped: %s", stats.stopped)
        if isinstance(stats.stopped, Interrupted):
            _mark_in_flight(journal, stats.stopped, maybe_added=maybe_added)
        journal.mark_status(
            {Status.READY},
            Status.NOT_SENT,
            stats.stopped.reason,
            f"not sent: {stats.stopped}; `dnc-import resume` sends it later",
        )
    return stats


class _Later:
    """What ``_send`` does for a recorded batch while the next request is in flight: queue its
    numbers in the ledger if the server confirmed them all added (then mark it so in the
    journal), log it and show it.

    The journal is the record of what was confirmed; the ledger is fed from it. A batch whose
    verdict is recorded but which a kill left unmarked is queued again by ``_push_confirmed``,
    with the same confirmation time (the journal's ``finished``): the ledger orders
    confirmations by that time, so a batch queued twice changes nothing.
    """

    def __init__(
        self, journal: Journal, progress: Progress, ledger: Ledger | None, server: str
    ) -> None:
        self._journal, self._progress, self._ledger, self._server = (
            journal, progress, ledger, server,
        )  # fmt: skip
        self._results: list[tuple[BatchResult, str]] = []

    def add(self, result: BatchResult, finished: str) -> None:
        self._results.append((result, finished))

    def flush(self) -> None:
        self._journal.commit()  # the verdicts first (the last one may still be held)
        results, self._results = self._results, []
        if self._ledger is not None:
            confirmed = [(r, at) for r, at in results if r.status is Status.ADDED]
            for result, finished in confirmed:
                at = datetime.fromisoformat(finished)
                self._ledger.queue_added(self._server, request_body(result.items), at)
            if confirmed:
                self._journal.mark_ledgered([result.batch for result, _ in confirmed])
        for result, _ in results:
            _log_batch(result)
            self._progress.batch_done(result)


def _ready_lines(lines: RunLines, journal: Journal) -> ReadyLines | None:
    """The ready lines a bulk run sends, from its lines in memory (None: from the journal)."""
    from importer.sent_lines import ready_lines

    return ready_lines(lines, journal)


def _push_confirmed(journal: Journal, ledger: Ledger, server: str) -> int:
    """Queue in the ledger every batch the journal holds as confirmed added and not queued yet
    (a run killed between its verdict and the queueing); return how many batches.

    ``_send`` calls it first; ``resume_import`` must too when it has nothing left to send.
    """
    unqueued = journal.unledgered_batches()
    for start in range(0, len(unqueued), 50):
        group = unqueued[start : start + 50]
        numbers = journal.batch_numbers([batch for batch, _ in group])
        for batch, finished in group:
            if numbers.get(batch):
                body = encode_body(numbers[batch])
                ledger.queue_added(server, body, datetime.fromisoformat(finished))
        journal.mark_ledgered([batch for batch, _ in group])
    if unqueued:
        log.info("%d confirmed batch(es) queued in the ledger late", len(unqueued))
    return len(unqueued)


def _mark_in_flight(journal: Journal, stopped: SendStopped, *, maybe_added: bool) -> None:
    """The lines of the batch a Ctrl-C stopped: ``not_sent`` (resume sends them again); the
    server may have added them only if an attempt's answer was lost (``maybe_added``)."""
    message = IN_FLIGHT_MESSAGE if maybe_added else NOT_ADDED_MESSAGE
    updates = [
        (
            line_id,
            Status.NOT_SENT,
            stopped.reason,
            message,
        )
        for batch in journal.in_flight_batches()
        for line_id in journal.batch_line_ids(batch)
    ]
    if updates:
        journal.set_lines(updates)
    if not maybe_added:  # no request of theirs can be running: resume sends them as new
        for batch in journal.in_flight_batches():
            journal.abandon_batch(batch)


_ANSWER_LOST_META = "answer_lost_lines"
"""Journal meta: lines a request whose answer was lost may have added, as line ranges."""


def _note_answer_lost(journal: Journal, line_ids: Iterable[int]) -> None:
    """Lines a request whose answer was lost may have added (a batch given up after it, or in
    flight at a stop, which resume abandons): resume sends them again, and judges such a batch
    as sent again after a lost answer (``Chunker(answer_lost=...)``). Kept across resumes."""
    lost = _answer_lost_lines(journal)
    new = set(line_ids) - lost
    if new:
        lost.update(new)
        journal.set_meta(_ANSWER_LOST_META, json.loads(line_ranges_json(sorted(lost))))


def _answer_lost_lines(journal: Journal) -> set[int]:
    ranges = journal.get_meta(_ANSWER_LOST_META)
    if not isinstance(ranges, list):
        return set()
    return {line for first, last in ranges for line in range(first, last + 1)}


@contextmanager
def _ledger(path: Path | None, *, fold: bool = True) -> Iterator[Ledger | None]:
    """The ledger at ``path`` (None: none), closed at the end; ``fold``: folding what was
    queued (else the next ``Ledger.open`` does, as the bulk run's aftercare)."""
    if path is None:
        yield None
        return
    ledger = Ledger.open(path)
    try:
        yield ledger
    except BaseException:
        ledger.close(fold=False)  # the next open folds what was queued
        raise
    ledger.close(fold=fold)


def _stored_setting(journal: Journal, name: str) -> object:
    settings = journal.get_meta("settings")
    return settings.get(name) if isinstance(settings, dict) else None


def _stored_ledger(journal: Journal) -> Path | None:
    settings = journal.get_meta("settings")
    path = settings.get("ledger") if isinstance(settings, dict) else None
    return Path(path) if isinstance(path, str) else None


def _skip_confirmed(journal: Journal, ledger: Ledger, server: str) -> int:
    """Mark ``skipped`` every ready number the server confirmed blocked for long enough."""
    skipped = journal.skip_confirmed(ledger.path, server, _today())
    log.info("%d number(s) skipped: already blocked long enough on %s", skipped, server)
    return skipped


def _today() -> date:
    return datetime.now(UTC).date()


def _logged(notice: Callable[[str], None]) -> Callable[[str], None]:
    def both(message: str) -> None:
        log.warning("%s", message)
        notice(message)

    return both


def _log_batch(result: BatchResult) -> None:
    first, last = result.items[0].telephone, result.items[-1].telephone
    log.info(
        "batch %d: %d number(s) %s..%s -> %s (%s) in %d attempt(s)",
        result.batch, len(result.items), mask_phone(first), mask_phone(last),
        result.status.value, result.reason, result.attempts,
    )  # fmt: skip


def mask_phone(telephone: str) -> str:
    """A phone number for a log line: first 3 and last 3 digits.

    >>> mask_phone("3191234567")
    '319****567'
    """
    if len(telephone) <= 6:
        return "*" * len(telephone)
    return telephone[:3] + "*" * (len(telephone) - 6) + telephone[-3:]


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
    run_dir: Path,
    stats: _SendStats | None,
    clock: _Clock,
    since: float,
    lines: RunLines | None = None,
    ledger: Path | None = None,
) -> RunResult:
    """Write the reports and close the run. ``lines``: the run's lines as the bulk path keeps
    them (brought up to date from what sending changed in the journal), written from instead
    of the journal: the same reports, faster; a second process (``Aftercare``) meanwhile
    settles the journal and folds the ``ledger``."""
    meta = journal.meta()
    aftercare = None
    try:  # ``_report`` waits for the aftercare before it closes the run
        if lines is not None and stats is not None:
            from importer.aftercare import Aftercare
            from importer.sent_lines import refresh_sent

            aftercare = Aftercare(journal.path, ledger)  # it folds the ledger meanwhile
            refresh_sent(lines, journal)  # before the settle: it reads only what changed
            aftercare.go()
        return _report(journal, run_dir, stats, clock, since, lines, meta, aftercare)
    except BaseException:
        if aftercare is not None:
            aftercare.go()  # an error or an interrupt ends the run now: it finishes alone
        raise


def _report(
    journal: Journal,
    run_dir: Path,
    stats: _SendStats | None,
    clock: _Clock,
    since: float,
    lines: RunLines | None,
    meta: dict[str, object],
    aftercare: Aftercare | None,
) -> RunResult:
    """``_finish`` once the lines are up to date: the reports, then the run's end."""
    settings = meta.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    if lines is None and meta.get(LINES_KEPT_META) is False:  # never empty reports
        raise JournalError(_lines_not_kept(str(meta.get("run_id"))))
    counts = journal.counts() if lines is None else lines.counts()
    by_status = counts["by_status"]
    exit_code = _exit_code(by_status, stats, bool(settings.get("strict")))
    inputs = [source["detected"] for source in journal.sources()]
    summary: dict[str, object] = {
        "schema": 1,
        "run_id": meta.get("run_id"),
        "started": meta.get("started"),
        "finished": _now(),
        "resumed": meta.get("resumes", []),
        "dry_run": bool(settings.get("dry_run")),
        "versions": _versions(),
        "settings": settings,
        "inputs": inputs,
        "counts": {
            "lines": counts["lines"],
            "rows": journal.distinct_rows() if lines is None else lines.rows(),
            "by_status": by_status,
            "by_reason": counts["by_reason"],
        },
        "sending": _sending_summary(journal, stats),
        "stopped": None
        if stats is None or stats.stopped is None
        else {"reason": stats.stopped.reason, "message": str(stats.stopped)},
        "exit_code": int(exit_code),
        "timings": clock.stages,
    }
    xlsx = bool(_dig(settings, "report", "xlsx")) or any(
        isinstance(i, dict) and i.get("format") in WORKBOOK_FORMATS for i in inputs
    )
    files = write_reports(run_dir, journal if lines is None else lines, summary, xlsx=xlsx)
    log.info("reports written in %.3f s", time.perf_counter() - since)
    if aftercare is not None:
        aftercare.wait()  # its settle holds the journal's writes a while
    stopped = stats is not None and stats.stopped is not None
    journal.set_meta("state", "stopped" if stopped else "finished")
    journal.set_meta("finished", summary["finished"])
    journal.set_meta("exit_code", int(exit_code))
    log.info(
        "run finished: exit code %d, counts %s",
        int(exit_code),
        {k: v for k, v in by_status.items() if v},
    )
    return RunResult(str(meta.get("run_id")), run_dir, exit_code, summary, files)


def _dig(values: dict[str, object], *keys: str) -> object:
    current: object = values
    for key in keys:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def _versions() -> dict[str, str]:
    return {
        "dnc_import": __version__,
        "phonenumbers": phonenumbers.__version__,
        "python": platform.python_version(),
    }


def _sending_summary(journal: Journal, stats: _SendStats | None) -> dict[str, object] | None:
    if stats is None:
        return None
    totals: dict[str, object] = dict(journal.batch_totals())
    totals["calls"] = stats.calls
    totals["retries"] = stats.retries
    return totals


def _meta(request: RunRequest, run_id: str, started: str) -> dict[str, object]:
    settings: dict[str, object] = {
        "inputs": list(request.inputs),
        "read": _plain(asdict(request.read)),
        "validate": _plain(asdict(request.validate)),
        "report": _plain(asdict(request.report)),
        "strict": request.strict,
        "dry_run": request.send is None,
        "ledger": None if request.ledger is None else str(request.ledger),
        "skip_confirmed": request.skip_confirmed,
    }
    if request.send is not None:
        send = {f.name: getattr(request.send, f.name) for f in fields(request.send)}
        del send["token"]
        settings["send"] = _plain(send)
    return {
        "run_id": run_id,
        "started": started,
        "settings": settings,
        "state": "loading",
        "config_id": request.config_id,
    }


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


class _run_log:
    """Log the core's lines to run.log (0600) in the run folder while the run lasts.

    Log lines never hold the token (it is never logged) nor a whole phone number (mask_phone).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOG_NAME
        self.handler: logging.Handler | None = None

    def __enter__(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        stream = os.fdopen(fd, "a", encoding="utf-8")
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self.handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()
            self.handler = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

"""The command line: parse options, build the settings, call the core, map errors to exit codes.

This is the only module that prints, draws progress or exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from importer import __version__
from importer.cli_options import (
    build_read,
    build_send,
    build_validate,
    merge_config,
    nightly_options,
    read_options,
    report_options,
    send_options,
    validate_options,
)
from importer.client import build_url
from importer.config import (
    ReportOptions,
    SendOptions,
    Token,
)
from importer.configfile import expand_inputs, load_config
from importer.credentials import TOKEN_ENV, load_token
from importer.errors import ExitCode, ImporterError, ReportError, SendStopped, UsageError
from importer.ledger import default_ledger_path
from importer.model import BatchResult
from importer.pipeline import RunRequest, RunResult, resume_import, run_import, run_sends
from importer.reporter import human_summary
from importer.validator import check_options

if TYPE_CHECKING:  # the other commands' modules load when used (~50 ms less to start a run)
    from tqdm import tqdm

    from importer.nightly import ScheduledRequest

F = TypeVar("F", bound=Callable[..., Any])
SAMPLE_PATTERNS = ("*.csv", "*.xlsx", "*.xls", "*.ods", "*.tsv", "*.txt")


class Began:
    """The run that began: its rows are all in its journal and it is about to send, or sending.

    From then on an error (a full disk, a journal or ledger that cannot be written) does not
    mean "nothing was sent, fix and run again" (exit 2) but "stopped, resume it" (exit 3): the
    run folder holds numbers that only ``dnc-import resume`` will send.
    """

    def __init__(self, run_id: str | None = None, *, resumable: bool = False) -> None:
        self.run_id = run_id
        self.active = False
        self.resumable = resumable
        """The run exists and ``dnc-import resume`` finishes it (a resume, before it sends)."""

    def loaded(self, run_id: str) -> None:
        """The core's ``on_loaded`` hook."""
        self.run_id, self.active = run_id, True

    def resuming(self, run_id: str | None) -> None:
        """The unattended job's ``on_resume`` hook: it resumes ``run_id`` now (None: done)."""
        self.run_id, self.active, self.resumable = run_id, False, run_id is not None

    def hint(self) -> str:
        """What to add to an error's line once the run began."""
        run_id = self.run_id or "RUN_ID"
        return (
            f"; run {run_id} had begun sending: nothing is lost (its journal holds every line), "
            f"once that is fixed `dnc-import resume {run_id}` finishes it"
        )

    def resume_hint(self) -> str:
        """What to add to a report error of a resume that had not sent anything yet."""
        return (
            f"; then `dnc-import resume {self.run_id}` writes them (its journal holds every line)"
        )


class BarProgress:
    """tqdm bars on stderr, only when stderr is a terminal (never under cron or CI)."""

    def __init__(self, enabled: bool, began: Began | None = None) -> None:
        self.enabled = enabled
        self.began = began
        self._read: tqdm[Any] | None = None
        self._send: tqdm[Any] | None = None

    def rows_read(self, count: int) -> None:
        if not self.enabled:
            return
        if self._read is None:
            from tqdm import tqdm

            self._read = tqdm(desc="reading", unit=" rows", file=sys.stderr, leave=False)
        self._read.update(count)

    def sending(self, numbers: int) -> None:
        if self.began is not None:
            self.began.active = True
        self._close_read()
        if self.enabled:
            from tqdm import tqdm

            self._send = tqdm(total=numbers, desc="sending", unit=" numbers", file=sys.stderr)

    def batch_done(self, result: BatchResult) -> None:
        if self._send is not None:
            self._send.update(len(result.items))
            self._send.set_postfix_str(f"batch {result.batch}")

    def notice(self, message: str) -> None:
        if self._send is not None:
            self._send.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)

    def close(self) -> None:
        self._close_read()
        if self._send is not None:
            self._send.close()
            self._send = None

    def _close_read(self) -> None:
        if self._read is not None:
            self._read.close()
            self._read = None


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _errors(
    verbose: bool, token: Token | None = None, began: Began | None = None
) -> Iterator[None]:
    """Turn every error into one line `Error: ...` and its documented exit code.

    Once a run began (``began.active``), an error that would say "nothing was sent" (exit 2)
    stops the run instead: exit 3 and how to resume it.
    """
    try:
        yield
    except ImporterError as exc:
        code, message = exc.exit_code, str(exc)
        if began is not None and began.active and not isinstance(exc, SendStopped):
            code, message = ExitCode.STOPPED, message + began.hint()
        elif began is not None and began.resumable and isinstance(exc, ReportError):
            message += began.resume_hint()
        _fail(message, code, verbose, token)
    except KeyboardInterrupt:
        if began is not None and began.active and began.run_id is not None:
            message = (
                f"interrupted: nothing more is sent; nothing is lost: "
                f"`dnc-import resume {began.run_id}` finishes run {began.run_id}"
            )
        else:
            message = (
                "interrupted: nothing more is sent; a run that had begun sending is finished "
                "by `dnc-import resume RUN_ID`"
            )
        _fail(message, ExitCode.STOPPED, verbose, token)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback behind --verbose
        hint = began.hint() if began is not None and began.active else ""
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the "
            f"traceback){hint}",
            ExitCode.STOPPED,
            verbose,
            token,
        )


def _fail(message: str, code: ExitCode, verbose: bool, token: Token | None) -> None:
    if verbose:
        click.echo(_scrub(traceback.format_exc(), token), err=True)
    click.echo(f"Error: {_scrub(message, token)}", err=True)
    sys.exit(int(code))


def _scrub(text: str, token: Token | None) -> str:
    """A last guard: the token never reaches the terminal, whatever a library put in a message."""
    if token is not None and token.reveal():
        return text.replace(token.reveal(), "***")
    return text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnc-import")
def cli() -> None:
    """Load phone numbers from spreadsheets into a Wolkvox Do-Not-Call list, row by row.

    Start with `dnc-import demo`; then `dnc-import run FILE... --dry-run`.
    """


@cli.command()
@click.argument("files", nargs=-1)
@click.option(
    "--dry-run", is_flag=True, help="Judge every row and write the reports; send nothing."
)
@read_options
@validate_options
@send_options
@report_options
@nightly_options
@click.pass_context
def run(ctx: click.Context, /, files: tuple[str, ...], dry_run: bool, **given: Any) -> None:
    """Import FILE... (.csv .tsv .txt .xlsx .xlsm .xls .ods) into the Do-Not-Call list.

    With --config, --inbox or --keep-days it is an unattended run: it first finishes the
    unfinished runs of the same config, imports the inbox, then deletes old run folders.
    """
    verbose = bool(given["verbose"])
    token: Token | None = None
    with _errors(verbose):
        config_file = given.pop("config_file")
        settings = load_config(config_file) if config_file is not None else None
        opts = merge_config(ctx, given, settings)
        inputs = files or (tuple(expand_inputs(settings)) if settings is not None else ())
        send: SendOptions | None = None
        if not dry_run:
            url, lock_key = build_url(opts["server"], opts["base_url"])
            token = load_token(opts["token_file"], env_name=opts["token_env"] or TOKEN_ENV)
            send = build_send(opts, url, lock_key, token)
        state_dir = opts["state_dir"]
        request = RunRequest(
            inputs=inputs,
            read=build_read(opts),
            validate=build_validate(opts),
            report=ReportOptions(reports_dir=opts["reports_dir"], xlsx=bool(opts["xlsx"])),
            send=send,
            strict=bool(opts["strict"]),
            config_id=None if config_file is None else _config_id(config_file),
            ledger=None if send is None else _ledger_path(state_dir),
            skip_confirmed=not opts["no_skip"],
        )
        scheduled = settings is not None or opts["inbox"] is not None or opts["keep_days"]
        if not scheduled and not inputs:
            raise UsageError(
                "no input files: name them (dnc-import run FILE...), or give --config or --inbox"
            )
    began = Began()
    on_loaded = began.loaded if send is not None else None  # a dry run leaves nothing to resume
    if not scheduled:
        result = _execute(
            lambda progress: run_import(request, progress, on_loaded=on_loaded),
            opts,
            token,
            began,
        )
        sys.exit(int(result.exit_code))
    from importer.nightly import ScheduledRequest

    job = ScheduledRequest(
        run=request,
        inbox=opts["inbox"],
        force=bool(opts["force"]),
        keep_days=opts["keep_days"],
        token=token,
        on_loaded=on_loaded,
        on_resume=began.resuming,
    )
    sys.exit(int(_execute_scheduled(job, opts, token, began)))


def _config_id(path: Path) -> str:
    """A config file's identity: a hash of its absolute path (runs of the same file resume each other)."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _ledger_path(state_dir: Path | None) -> Path:
    return default_ledger_path() if state_dir is None else Path(state_dir) / "ledger.sqlite"


def _execute_scheduled(
    job: ScheduledRequest, opts: dict[str, Any], token: Token | None, began: Began | None = None
) -> ExitCode:
    from importer.nightly import run_scheduled

    verbose, quiet = bool(opts["verbose"]), bool(opts["quiet"])
    # a run the job resumes has begun once it sends again (BarProgress.sending)
    progress = BarProgress(enabled=not quiet and sys.stderr.isatty(), began=began)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with _errors(verbose, token, began):
            done = run_scheduled(job, progress)
    finally:
        progress.close()
        signal.signal(signal.SIGTERM, previous)
    runs = [*done.resumed, *([done.run] if done.run is not None else [])]
    if opts.get("as_json"):
        # stdout is one JSON document for monitoring: the summary of the last run made
        if runs:
            click.echo(json.dumps(runs[-1].summary, indent=2, ensure_ascii=False))
    else:
        for result in done.resumed:
            click.echo(f"resumed run_id: {result.run_id}")
        if done.run is not None:
            click.echo(f"run_id: {done.run.run_id}")
    if not quiet:
        for result in runs:
            click.echo(_scrub(human_summary(result.summary), token), err=True)
        where = "moved to" if job.run.send is not None else "left in place:"
        for moved, why in done.unreadable:
            click.echo(f"unreadable, {where} {moved}: {why}", err=True)
        if done.pruned is not None and done.pruned.deleted:
            click.echo(
                f"deleted {len(done.pruned.deleted)} run folder(s) older than --keep-days", err=True
            )
    return done.exit_code


def _execute(
    job: Callable[[BarProgress], RunResult],
    opts: dict[str, Any],
    token: Token | None,
    began: Began | None = None,
) -> RunResult:
    verbose, quiet = bool(opts["verbose"]), bool(opts["quiet"])
    progress = BarProgress(enabled=not quiet and sys.stderr.isatty(), began=began)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with _errors(verbose, token, began):
            result = job(progress)
    finally:
        progress.close()
        signal.signal(signal.SIGTERM, previous)
    if opts.get("as_json"):
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False))
    else:
        click.echo(f"run_id: {result.run_id}")
    if not quiet:
        click.echo(_scrub(human_summary(result.summary), token), err=True)
    return result


@cli.command("check-config")
@click.argument("config_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--verbose", "-v", is_flag=True, help="Tracebacks on errors.")
def check_config(config_file: Path, verbose: bool) -> None:
    """Check a config file, and that its token can be read, without sending anything."""
    with _errors(verbose):
        settings = load_config(config_file)
        ctx = run.make_context("run", [])  # every option at its default (or environment) value
        defaults = {name: value for name, value in ctx.params.items() if name != "files"}
        opts = merge_config(ctx, defaults, settings)
        url, _ = build_url(opts["server"], opts["base_url"])
        load_token(opts["token_file"], env_name=opts["token_env"] or TOKEN_ENV)
        check_options(build_validate(opts))
        build_read(opts)
        inputs = expand_inputs(settings)
        inbox = opts["inbox"]
        if inbox is not None and not Path(inbox).is_dir():
            raise UsageError(
                f"{config_file}: inbox {inbox} does not exist: create it, or fix 'inbox'"
            )
        if not inputs and inbox is None:
            raise UsageError(
                f"{config_file}: no inputs matched and no inbox: set 'inputs' or 'inbox'"
            )
    click.echo(f"{config_file}: OK")
    click.echo(f"  sends to {url}, the token is there (not shown)")
    click.echo(f"  inputs now: {len(inputs)} file(s); inbox: {inbox or 'none'}")
    click.echo(f"  reports in {opts['reports_dir']}; ledger {_ledger_path(opts['state_dir'])}")


@cli.command()
@click.argument("run_id")
@click.option(
    "--reports-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="reports",
    show_default=True,
    help="The reports folder given to the run.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the token (mode 600). Default: env WOLKVOX_TOKEN.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary on stderr.")
@click.option("--verbose", "-v", is_flag=True, help="Tracebacks on errors.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout.")
def resume(
    run_id: str,
    reports_dir: Path,
    token_file: Path | None,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Send what run RUN_ID did not get confirmed (after a stop or a crash); rewrite its reports."""
    run_dir = reports_dir / run_id
    token: Token | None = None
    with _errors(verbose):
        if "/" in run_id or run_id in ("", ".", ".."):
            raise UsageError(f"{run_id!r} is not a run id: give the id printed as run_id: ...")
        if not (run_dir / "journal.sqlite").is_file():
            raise UsageError(
                f"no run {run_id} in {reports_dir}: check the run id, and give --reports-dir "
                f"as it was given to the run"
            )
        if run_sends(run_dir):
            token = load_token(token_file)
    opts: dict[str, Any] = {"verbose": verbose, "quiet": quiet, "as_json": as_json}
    # the resume of a sending run began once it sends again (BarProgress.sending)
    began = Began(run_id, resumable=True)
    result = _execute(lambda progress: resume_import(run_dir, token, progress), opts, token, began)
    if result.nothing_to_do and not quiet:
        click.echo(f"run {run_id} had already finished: nothing left to send", err=True)
    sys.exit(int(result.exit_code))


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port (0: any free one).",
)
@click.option(
    "--token",
    "sim_token",
    default="sim-token",
    show_default=True,
    help="The token the simulator accepts.",
)
@click.option(
    "--quota",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="add_dnc calls per day.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
@click.option(
    "--latency", type=click.FloatRange(0.0), default=0.0, help="Seconds added to every answer."
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="Share of calls answered 5xx.",
)
@click.option(
    "--rate-429", type=click.FloatRange(0.0, 1.0), default=0.0, help="Share of calls answered 429."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="Share of connections dropped.",
)
@click.option(
    "--garbage-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="Share of 200s with a non-JSON body.",
)
@click.option(
    "--reject", "reject_patterns", multiple=True, help="Regex of telephones the server rejects."
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SQLite file of the list.",
)
def simulate(
    host: str,
    port: int,
    sim_token: str,
    quota: int,
    seed: int,
    latency: float,
    error_rate: float,
    rate_429: float,
    drop_rate: float,
    garbage_rate: float,
    reject_patterns: tuple[str, ...],
    db_path: Path | None,
) -> None:
    """Run a local Wolkvox add_dnc/get_dnc simulator until Ctrl-C."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            "Error: --host must be a loopback address (127.0.0.1, localhost or ::1)", err=True
        )
        sys.exit(int(ExitCode.USAGE))
    from importer.simulator import Faults, SimConfig, Simulator

    with _errors(False):
        faults = Faults(
            latency=latency,
            error_5xx_rate=error_rate,
            rate_429=rate_429,
            drop_rate=drop_rate,
            garbage_rate=garbage_rate,
        )
        config = SimConfig(
            token=sim_token,
            daily_quota=quota,
            seed=seed,
            faults=faults,
            reject_patterns=reject_patterns,
            db_path=db_path,
        )
        sim = Simulator(config, host=host, port=port, log=lambda line: click.echo(line, err=True))
        sim.start()
    click.echo(
        f"simulator listening on {sim.base_url} (add_dnc: {sim.add_dnc_url}); Ctrl-C stops it"
    )
    click.echo(f"try: WOLKVOX_TOKEN=... dnc-import run FILE --base-url {sim.base_url}")
    try:
        signal.signal(signal.SIGTERM, _terminate)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


@cli.command()
@click.argument("files", nargs=-1)
@click.option(
    "--reports-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="reports",
    show_default=True,
    help="Where the run folder is written.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary on stderr.")
@click.option("--verbose", "-v", is_flag=True, help="Tracebacks on errors.")
def demo(files: tuple[str, ...], reports_dir: Path, quiet: bool, verbose: bool) -> None:
    """Start the simulator, import sample_data/ (or FILE...) into it, show the result."""
    with _errors(verbose):
        inputs = files or _sample_files()
    from importer.simulator import SimConfig, Simulator

    token = Token("demo-" + secrets.token_hex(8))
    with Simulator(SimConfig(token=token.reveal())) as sim:
        url, lock_key = build_url(None, sim.base_url)
        opts: dict[str, Any] = {"verbose": verbose, "quiet": quiet, "as_json": False}
        request = RunRequest(
            inputs=inputs,
            report=ReportOptions(reports_dir=reports_dir),
            send=SendOptions(url=url, token=token, lock_key=lock_key, lock_wait=10.0),
        )
        if not quiet:
            click.echo(
                f"demo: simulator on {sim.base_url}; importing {', '.join(inputs)}", err=True
            )
        result = _execute(lambda progress: run_import(request, progress), opts, token)
        listed = len(sim.dnc_list())
    click.echo(f"simulator list now holds {listed} numbers; reports in {result.run_dir}")
    sys.exit(int(result.exit_code))


def _sample_files() -> tuple[str, ...]:
    """sample_data/ of the current folder, else the one beside the installed package."""
    here = Path("sample_data")
    if not here.is_dir():
        here = Path(__file__).resolve().parent.parent / "sample_data"
    found = sorted({str(p) for pattern in SAMPLE_PATTERNS for p in here.glob(pattern)})
    if not found:
        raise UsageError(
            "no sample_data/ folder here: run `dnc-import demo` from the project's folder, "
            "or name the files: dnc-import demo FILE..."
        )
    return tuple(os.path.relpath(p) for p in found)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="dnc-import")

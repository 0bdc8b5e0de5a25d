"""The command line: parse options, build the settings, call the core, map errors to exit codes.

This is the only module that prints, draws progress or exits.
"""

from __future__ import annotations

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
from typing import Any, TypeVar

import click
from tqdm import tqdm

from importer import __version__
from importer.client import build_url
from importer.config import (
    NumberForm,
    ReadOptions,
    ReportOptions,
    SendOptions,
    Token,
    ValidateOptions,
)
from importer.credentials import load_token
from importer.errors import ExitCode, ImporterError, UsageError
from importer.model import BatchResult
from importer.pipeline import RunRequest, RunResult, resume_import, run_import, run_sends
from importer.reporter import human_summary
from importer.simulator import Faults, SimConfig, Simulator

F = TypeVar("F", bound=Callable[..., Any])
SAMPLE_PATTERNS = ("*.csv", "*.xlsx", "*.xls", "*.ods", "*.tsv", "*.txt")


class BarProgress:
    """tqdm bars on stderr, only when stderr is a terminal (never under cron or CI)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._read: tqdm[Any] | None = None
        self._send: tqdm[Any] | None = None

    def rows_read(self, count: int) -> None:
        if not self.enabled:
            return
        if self._read is None:
            self._read = tqdm(desc="reading", unit=" rows", file=sys.stderr, leave=False)
        self._read.update(count)

    def sending(self, numbers: int) -> None:
        self._close_read()
        if self.enabled:
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
def _errors(verbose: bool, token: Token | None = None) -> Iterator[None]:
    """Turn every error into one line `Error: ...` and its documented exit code."""
    try:
        yield
    except ImporterError as exc:
        _fail(str(exc), exc.exit_code, verbose, token)
    except KeyboardInterrupt:
        _fail(
            "interrupted before sending began; nothing was sent: run it again",
            ExitCode.STOPPED,
            verbose,
            token,
        )
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback behind --verbose
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the traceback)",
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


def read_options(func: F) -> F:
    options = [
        click.option(
            "--encoding", help="Force the text encoding of CSV files (default: detected)."
        ),
        click.option(
            "--delimiter", help="Force the CSV delimiter (default: sniffed among , ; tab |)."
        ),
        click.option(
            "--phone-column", help="The phone column: a header name or a 1-based position."
        ),
        click.option("--days-column", help="The days column: a header name or a 1-based position."),
        click.option("--no-header", is_flag=True, help="The file is a bare column of numbers."),
        click.option("--sheet", "sheets", multiple=True, help="Read only this sheet (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def validate_options(func: F) -> F:
    options = [
        click.option(
            "--region", default="CO", show_default=True, help="Default region of numbers."
        ),
        click.option(
            "--number-form",
            type=click.Choice([f.value for f in NumberForm]),
            default=NumberForm.NATIONAL.value,
            show_default=True,
            help="How `telephone` is written (see README: which form your operation dials).",
        ),
        click.option("--dial-prefix", default="", help="Digits put before every number, e.g. 9."),
        click.option("--allow-foreign", is_flag=True, help="Send numbers of other countries too."),
        click.option("--default-days", type=int, help="Days for rows whose days cell is blank."),
        click.option(
            "--max-days", type=int, default=3650, show_default=True, help="Largest days value."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def send_options(func: F) -> F:
    options = [
        click.option(
            "--server",
            envvar="WOLKVOX_SERVER",
            help="Wolkvox server code, e.g. 0002 (env WOLKVOX_SERVER).",
        ),
        click.option("--base-url", help="Replace https://wvNNNN.wolkvox.com (simulator, tests)."),
        click.option(
            "--token-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="File holding the token (mode 600). Default: env WOLKVOX_TOKEN.",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            help="CA bundle for a corporate proxy.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 10_000),
            default=1000,
            show_default=True,
            help="Numbers per add_dnc call.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 20),
            default=5,
            show_default=True,
            help="Retries of a failing call.",
        ),
        click.option(
            "--max-wait",
            type=click.FloatRange(0.0),
            default=120.0,
            show_default=True,
            help="Longest wait between retries, seconds.",
        ),
        click.option(
            "--lock-wait",
            type=click.FloatRange(0.0),
            default=300.0,
            show_default=True,
            help="Seconds to wait for another run using the same token.",
        ),
        click.option(
            "--max-calls",
            type=click.IntRange(1),
            help="Stop cleanly after this many calls (quota budget).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def report_options(func: F) -> F:
    options = [
        click.option(
            "--reports-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default="reports",
            show_default=True,
            help="Where run folders are written.",
        ),
        click.option("--xlsx", is_flag=True, help="Also write outcomes.xlsx for text inputs."),
        click.option("--strict", is_flag=True, help="Invalid rows make the run fail (exit 1)."),
        click.option(
            "--quiet", "-q", is_flag=True, help="No progress bar and no summary on stderr."
        ),
        click.option("--verbose", "-v", is_flag=True, help="Tracebacks on errors."),
        click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--dry-run", is_flag=True, help="Judge every row and write the reports; send nothing."
)
@read_options
@validate_options
@send_options
@report_options
def run(files: tuple[str, ...], dry_run: bool, **opts: Any) -> None:
    """Import FILE... (.csv .tsv .txt .xlsx .xlsm .xls .ods) into the Do-Not-Call list."""
    verbose = bool(opts["verbose"])
    token: Token | None = None
    with _errors(verbose):
        send: SendOptions | None = None
        if not dry_run:
            url, lock_key = build_url(opts["server"], opts["base_url"])
            token = load_token(opts["token_file"])
            send = _send_options(opts, url, lock_key, token)
    request = RunRequest(
        inputs=files,
        read=_read_options(opts),
        validate=_validate_options(opts),
        report=ReportOptions(reports_dir=opts["reports_dir"], xlsx=bool(opts["xlsx"])),
        send=send,
        strict=bool(opts["strict"]),
    )
    result = _execute(lambda progress: run_import(request, progress), opts, token)
    sys.exit(int(result.exit_code))


def _execute(
    job: Callable[[BarProgress], RunResult], opts: dict[str, Any], token: Token | None
) -> RunResult:
    verbose, quiet = bool(opts["verbose"]), bool(opts["quiet"])
    progress = BarProgress(enabled=not quiet and sys.stderr.isatty())
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with _errors(verbose, token):
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


def _read_options(opts: dict[str, Any]) -> ReadOptions:
    delimiter = opts["delimiter"]
    if delimiter in ("tab", "\\t"):
        delimiter = "\t"
    if delimiter is not None and len(delimiter) != 1:
        raise click.BadParameter("give one character, or 'tab'", param_hint="--delimiter")
    return ReadOptions(
        encoding=opts["encoding"],
        delimiter=delimiter,
        phone_column=opts["phone_column"],
        days_column=opts["days_column"],
        no_header=bool(opts["no_header"]),
        sheets=tuple(opts["sheets"]),
    )


def _validate_options(opts: dict[str, Any]) -> ValidateOptions:
    return ValidateOptions(
        region=str(opts["region"]).upper(),
        form=NumberForm(opts["number_form"]),
        dial_prefix=str(opts["dial_prefix"] or ""),
        allow_foreign=bool(opts["allow_foreign"]),
        default_days=opts["default_days"],
        max_days=int(opts["max_days"]),
    )


def _send_options(opts: dict[str, Any], url: str, lock_key: str, token: Token) -> SendOptions:
    return SendOptions(
        url=url,
        token=token,
        lock_key=lock_key,
        batch_size=int(opts["batch_size"]),
        retries=int(opts["retries"]),
        max_wait=float(opts["max_wait"]),
        lock_wait=float(opts["lock_wait"]),
        ca_bundle=opts["ca_bundle"],
        max_calls=opts["max_calls"],
    )


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
    result = _execute(lambda progress: resume_import(run_dir, token, progress), opts, token)
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

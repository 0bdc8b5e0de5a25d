"""The options of the commands, and how they become the core's settings.

Precedence, highest first: options on the command line; the config file (``--config``);
environment variables (``WOLKVOX_SERVER``, the token's variable); the built-in defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from importer.config import NumberForm, ReadOptions, SendOptions, Token, ValidateOptions
from importer.configfile import FileSettings
from importer.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])
PAIRS = (("server", "base_url"), ("token_file", "token_env"))
"""Options that say one thing two ways: giving one on the command line drops the file's other."""


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
            "--read-timeout",
            type=click.FloatRange(0.0, min_open=True),
            default=75.0,
            show_default=True,
            help="Seconds to wait for the server's answer to one call.",
        ),
        click.option(
            "--lost-answer-wait",
            type=click.FloatRange(0.0),
            metavar="SECONDS",
            help=(
                "After a call whose answer was lost (no answer in time, a broken connection), "
                "seconds before the token is used again: the server may still be working on "
                "it. Default: --read-timeout."
            ),
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
            type=click.Path(path_type=Path),
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


def nightly_options(func: F) -> F:
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="A TOML config file for unattended runs (see docs/config-example.toml).",
        ),
        click.option(
            "--inbox",
            type=click.Path(path_type=Path, file_okay=False),
            help="Import every new file of this folder, then move it to archive/ or failed/.",
        ),
        click.option("--force", is_flag=True, help="Import inbox files already imported before."),
        click.option(
            "--no-skip", is_flag=True, help="Send numbers the ledger says are still blocked."
        ),
        click.option(
            "--state-dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="Folder of the ledger (default: ~/.local/state/dnc-import, or $DNC_IMPORT_STATE_DIR).",
        ),
        click.option(
            "--keep-days", type=click.IntRange(1), help="Delete run folders older than N days."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def merge_config(
    ctx: click.Context, opts: dict[str, Any], settings: FileSettings | None
) -> dict[str, Any]:
    """The options with the config file's values where the command line gave none.

    Of two options that say one thing two ways (``PAIRS``), the one given on the command line
    drops the other whatever gave it (the file, the environment: ``--base-url`` beats
    ``WOLKVOX_SERVER``); likewise the file's one drops the environment's other.
    """
    merged = dict(opts)
    merged.setdefault("token_env", None)
    given = {name for name in opts if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    covered = set(given)
    for first, second in PAIRS:
        for mine, other in ((first, second), (second, first)):
            if mine in given and other not in given:
                merged[other] = None
                covered.add(other)
    if settings is None:
        return merged
    for name, value in settings.values.items():
        if name not in covered:
            merged[name] = value
    for first, second in PAIRS:  # the file beats the environment: its one drops the other
        for mine, other in ((first, second), (second, first)):
            if mine in settings.values and mine not in covered:
                merged[other] = None
    return merged


def build_read(opts: dict[str, Any]) -> ReadOptions:
    delimiter = opts["delimiter"]
    if delimiter in ("tab", "\\t"):
        delimiter = "\t"
    if delimiter is not None and len(delimiter) != 1:
        raise UsageError(
            f"--delimiter {delimiter!r}: give one character, e.g. --delimiter ';' (or 'tab')"
        )
    return ReadOptions(
        encoding=opts["encoding"],
        delimiter=delimiter,
        phone_column=opts["phone_column"],
        days_column=opts["days_column"],
        no_header=bool(opts["no_header"]),
        sheets=tuple(opts["sheets"]),
    )


def build_validate(opts: dict[str, Any]) -> ValidateOptions:
    return ValidateOptions(
        region=str(opts["region"]).upper(),
        form=NumberForm(opts["number_form"]),
        dial_prefix=str(opts["dial_prefix"] or ""),
        allow_foreign=bool(opts["allow_foreign"]),
        default_days=opts["default_days"],
        max_days=int(opts["max_days"]),
    )


def build_send(opts: dict[str, Any], url: str, lock_key: str, token: Token) -> SendOptions:
    return SendOptions(
        url=url,
        token=token,
        lock_key=lock_key,
        batch_size=int(opts["batch_size"]),
        retries=int(opts["retries"]),
        max_wait=float(opts["max_wait"]),
        lock_wait=float(opts["lock_wait"]),
        read_timeout=float(opts["read_timeout"]),
        lost_answer_wait=None
        if opts["lost_answer_wait"] is None
        else float(opts["lost_answer_wait"]),
        ca_bundle=opts["ca_bundle"],
        max_calls=opts["max_calls"],
    )

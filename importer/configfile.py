"""A config file for unattended runs: ``dnc-import run --config nightly.toml``.

The file is flat TOML (no ``[sections]``): one ``key = value`` per line, every key optional. The
keys are the long options of ``dnc-import run`` in snake_case (``--batch-size`` is
``batch_size``), plus ``inputs`` (paths or globs), ``token_env`` (the NAME of the environment
variable holding the token) and the nightly settings (``inbox``, ``state_dir``, ``keep_days``,
``no_skip``). ``docs/config-example.toml`` shows every key.

The token itself is never allowed in the file (files get shared, copied and committed): give
``token_file = PATH`` (mode 600) or ``token_env = NAME``.

Relative paths and globs in the file are relative to the file's own folder, not to the current
directory, so a scheduler may start the run from anywhere.

Precedence, highest first (the CLI applies it):

1. options given on the command line;
2. the config file;
3. environment variables (``WOLKVOX_SERVER``; the token from ``$WOLKVOX_TOKEN`` or the variable
   ``token_env`` names);
4. the built-in defaults.

Options that name the same thing in two ways count as one setting: ``--base-url`` on the command
line replaces the file's ``server`` (and the reverse), ``--token-file`` replaces ``token_env``.

>>> settings = load_config(Path("nightly.toml"))  # doctest: +SKIP
>>> settings.get("batch_size", 1000)  # doctest: +SKIP
500
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import glob
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import phonenumbers

from importer.config import NumberForm
from importer.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVER = re.compile(r"(?:wv)?[0-9]{4}", re.IGNORECASE)
_DIAL_PREFIX = re.compile(r"[0-9]{1,4}")
_MAGIC = re.compile(r"[*?[]")
_SHOWN_TEXT = 40
"""Longest text quoted back in a message; longer values are cut (they may be pasted secrets)."""
_EXCLUSIVE = (("server", "base_url"), ("token_file", "token_env"))


class _Wrong(Exception):
    """A value of the wrong type or range; the loader turns it into the key's message."""


Convert = Callable[[object, Path], object]
"""(value as TOML gave it, the config file's folder) -> the converted value, or raise _Wrong."""


@dataclass(frozen=True)
class FileSettings:
    """What a config file says, checked and converted.

    ``values`` maps option names (snake_case, as click names the parameters) to values for the
    keys the file gives, and only those: paths are absolute (relative ones joined to the file's
    folder), lists are tuples, ``number_form`` is its text. ``inputs`` is kept apart from
    ``values``: paths or glob patterns, made absolute the same way.
    """

    path: Path
    """The config file, absolute."""
    values: dict[str, object]
    inputs: tuple[str, ...] = ()

    def get(self, name: str, default: object = None) -> object:
        """The file's value of option ``name``, or ``default`` when the file does not give it."""
        return self.values.get(name, default)


def load_config(path: Path) -> FileSettings:
    """Read and check the config file ``path``; ``ConfigError`` names the key and the fix.

    >>> load_config(Path("nightly.toml")).get("server")  # doctest: +SKIP
    '0002'
    """
    name = str(path)
    data = _parse(path, name)
    absolute = Path(os.path.abspath(path))
    folder = absolute.parent
    if "token" in data:
        raise ConfigError(
            f"{name}: 'token' is not allowed: the token never goes in a file that may be "
            "shared; use token_file = PATH or token_env = NAME"
        )
    values: dict[str, object] = {}
    for key, raw in data.items():
        if key not in _KEYS:
            raise ConfigError(_unknown_key(name, key, raw))
        values[key] = _convert(name, key, raw, folder)
    for first, second in _EXCLUSIVE:
        if first in values and second in values:
            raise ConfigError(
                f"{name}: '{first}' and '{second}' are both given; keep one of them "
                "(they say the same thing two ways)"
            )
    inputs = cast(tuple[str, ...], values.pop("inputs", ()))
    return FileSettings(path=absolute, values=values, inputs=inputs)


def expand_inputs(settings: FileSettings) -> list[str]:
    """The files ``settings.inputs`` names now: globs expanded, sorted, files only, no repeats.

    A pattern that matches nothing is not an error (tonight's inbox may be empty). Excel's
    owner files (``~$name.xlsx``, left while a workbook is open) are not inputs and are skipped
    when a glob matches them.
    """
    found: list[str] = []
    seen: set[str] = set()
    folder = str(settings.path.parent)
    for pattern in settings.inputs:
        for match in _matches(pattern, folder):
            key = os.path.realpath(match)
            if key not in seen:
                seen.add(key)
                found.append(match)
    return found


def _matches(pattern: str, folder: str) -> list[str]:
    if os.path.isfile(pattern):
        return [pattern]  # a real name such as "export [1].csv" is not read as a pattern
    if not _MAGIC.search(pattern):
        return []
    # the config's own folder is taken literally, even if its name holds [ ] * or ?
    prefix = folder + os.sep
    escaped = (
        glob.escape(prefix) + pattern[len(prefix) :] if pattern.startswith(prefix) else pattern
    )
    return sorted(
        match
        for match in glob.glob(escaped, recursive=True)
        if os.path.isfile(match) and not os.path.basename(match).startswith("~$")
    )


def _parse(path: Path, name: str) -> dict[str, object]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{name}: no such config file; check the path (docs/config-example.toml shows one)"
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{name}: is a folder, not a config file; give the .toml file") from exc
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot read the config file ({exc.strerror or type(exc).__name__}); "
            "check its permissions"
        ) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}: line {line} is not UTF-8 text; save the file as UTF-8") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{name}: not valid TOML: {exc}; fix that line (text goes in quotes: "
            'region = "CO"; one key = value per line)'
        ) from exc


def _unknown_key(name: str, key: str, raw: object) -> str:
    dashed = key.replace("-", "_")
    close = [dashed] if dashed in _KEYS else difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    known = ", ".join(KNOWN_KEYS)
    if isinstance(raw, dict):
        return (
            f"{name}: unknown key '{key}' (a [section] or dotted key); the file is flat: "
            f"write the keys at the top level. Known keys: {known}"
        )
    if close:
        return f"{name}: unknown key '{key}'; did you mean '{close[0]}'? Known keys: {known}"
    return f"{name}: unknown key '{key}'; remove it or use one of the known keys: {known}"


def _convert(name: str, key: str, raw: object, folder: Path) -> object:
    convert, expects = _KEYS[key]
    try:
        return convert(raw, folder)
    except _Wrong:
        if key == "token_env":
            # never echo it: a token pasted here by mistake must not reach a log
            raise ConfigError(
                f"{name}: 'token_env' must be {expects}; the value given is not one "
                "(it is not shown, in case it is the token itself)"
            ) from None
        raise ConfigError(f"{name}: '{key}' must be {expects}, got {_show(raw)}") from None


def _show(value: object) -> str:
    """A value as the file wrote it, for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        cut = value if len(value) <= _SHOWN_TEXT else value[: _SHOWN_TEXT - 3] + "..."
        return repr(cut)
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


def _text(value: object, folder: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Wrong
    return value


def _matching(pattern: re.Pattern[str], empty_ok: bool = False) -> Convert:
    def convert(value: object, folder: Path) -> str:
        if isinstance(value, str) and (pattern.fullmatch(value) or (empty_ok and value == "")):
            return value
        raise _Wrong

    return convert


def _whole(low: int, high: int | None = None) -> Convert:
    def convert(value: object, folder: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Wrong
        if value < low or (high is not None and value > high):
            raise _Wrong
        return value

    return convert


def _seconds(value: object, folder: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Wrong
    if not math.isfinite(value) or value < 0:
        raise _Wrong
    return float(value)


def _positive_seconds(value: object, folder: Path) -> float:
    seconds = _seconds(value, folder)
    if seconds == 0:
        raise _Wrong
    return seconds


def _flag(value: object, folder: Path) -> bool:
    if not isinstance(value, bool):
        raise _Wrong
    return value


def _path(value: object, folder: Path) -> Path:
    return folder / os.path.expanduser(_text(value, folder))


def _number_form(value: object, folder: Path) -> str:
    if not isinstance(value, str) or value not in {form.value for form in NumberForm}:
        raise _Wrong
    return value


def _region(value: object, folder: Path) -> str:
    if not isinstance(value, str) or value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise _Wrong
    return value.upper()


def _encoding(value: object, folder: Path) -> str:
    text = _text(value, folder)
    try:
        codecs.lookup(text)
    except LookupError:
        raise _Wrong from None
    return text


def _delimiter(value: object, folder: Path) -> str:
    if not isinstance(value, str) or not (len(value) == 1 or value in ("tab", "\\t")):
        raise _Wrong
    return value


def _column(value: object, folder: Path) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    return _text(value, folder)


def _texts(value: object, folder: Path) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Wrong
    return tuple(_text(item, folder) for item in value)


def _patterns(value: object, folder: Path) -> tuple[str, ...]:
    return tuple(os.path.join(folder, os.path.expanduser(item)) for item in _texts(value, folder))


_SECONDS = "a number of seconds, 0 or more"
_BOOL = "true or false (without quotes)"

_KEYS: dict[str, tuple[Convert, str]] = {
    "server": (
        _matching(_SERVER),
        'the 4-digit code of your Wolkvox server, in quotes, e.g. server = "0002"',
    ),
    "base_url": (_text, 'a URL in quotes, e.g. base_url = "http://127.0.0.1:8080"'),
    "token_env": (
        _matching(_ENV_NAME),
        (
            "the NAME of the environment variable that holds the token (letters, digits "
            'and _), e.g. token_env = "WOLKVOX_TOKEN"'
        ),
    ),
    "token_file": (_path, 'a path in quotes, e.g. token_file = "/etc/dnc-import/wv0002.token"'),
    "ca_bundle": (_path, 'a path in quotes, e.g. ca_bundle = "corporate-ca.pem"'),
    "region": (
        _region,
        'a two-letter region code phonenumbers knows, in quotes, e.g. region = "CO"',
    ),
    "number_form": (_number_form, 'one of "national", "e164" or "international", in quotes'),
    "dial_prefix": (
        _matching(_DIAL_PREFIX, empty_ok=True),
        '1 to 4 digits in quotes, e.g. dial_prefix = "9" (or "" for none)',
    ),
    "allow_foreign": (_flag, _BOOL),
    "default_days": (_whole(1), "a whole number of days, 1 or more"),
    "max_days": (_whole(1), "a whole number of days, 1 or more"),
    "batch_size": (_whole(1, 10_000), "a whole number from 1 to 10000"),
    "retries": (_whole(0, 20), "a whole number from 0 to 20"),
    "max_wait": (_seconds, _SECONDS),
    "lock_wait": (_seconds, _SECONDS),
    "read_timeout": (_positive_seconds, "a number of seconds, more than 0"),
    "lost_answer_wait": (_seconds, _SECONDS),
    "max_calls": (_whole(1), "a whole number, 1 or more"),
    "encoding": (_encoding, 'a text encoding Python knows, in quotes, e.g. encoding = "cp1252"'),
    "delimiter": (_delimiter, 'one character in quotes, or "tab", e.g. delimiter = ";"'),
    "phone_column": (
        _column,
        'a header name in quotes or a column position from 1, e.g. phone_column = "Telefono"',
    ),
    "days_column": (
        _column,
        'a header name in quotes or a column position from 1, e.g. days_column = "Dias"',
    ),
    "no_header": (_flag, _BOOL),
    "sheets": (_texts, 'a list of sheet names, e.g. sheets = ["Hoja1", "Base"]'),
    "inputs": (_patterns, 'a list of paths or globs, e.g. inputs = ["exports/*.xlsx"]'),
    "inbox": (_path, 'a folder path in quotes, e.g. inbox = "inbox"'),
    "reports_dir": (_path, 'a folder path in quotes, e.g. reports_dir = "reports"'),
    "keep_days": (_whole(1), "a whole number of days, 1 or more"),
    "state_dir": (_path, 'a folder path in quotes, e.g. state_dir = "state"'),
    "no_skip": (_flag, _BOOL),
    "xlsx": (_flag, _BOOL),
    "strict": (_flag, _BOOL),
}
KNOWN_KEYS: tuple[str, ...] = tuple(sorted(_KEYS))
"""Every key a config file may hold."""

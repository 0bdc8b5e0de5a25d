"""The config file of unattended runs: every key, every wrong value, paths from the file's folder."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from importer.configfile import KNOWN_KEYS, FileSettings, expand_inputs, load_config
from importer.errors import ConfigError, ExitCode, UsageError

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "config-example.toml"
KNOWN = ", ".join(KNOWN_KEYS)


@pytest.fixture
def conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config's folder; the test runs from another folder, so relative paths would show."""
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder


def write(folder: Path, text: str, name: str = "nightly.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    """The error's message, with the file as the user named it shortened to its bare name."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    return path.name + message[len(str(path)) :]


# (key, TOML value, expected value; "@/x" stands for the config folder / "x")
GOOD: list[tuple[str, str, object]] = [
    ("server", '"0002"', "0002"),
    ("base_url", '"http://127.0.0.1:8080"', "http://127.0.0.1:8080"),
    ("token_env", '"WOLKVOX_TOKEN_WV0002"', "WOLKVOX_TOKEN_WV0002"),
    ("token_file", '"secrets/wv0002.token"', "@/secrets/wv0002.token"),
    ("ca_bundle", '"ca.pem"', "@/ca.pem"),
    ("region", '"co"', "CO"),
    ("number_form", '"e164"', "e164"),
    ("dial_prefix", '"09"', "09"),
    ("allow_foreign", "true", True),
    ("default_days", "365", 365),
    ("max_days", "3650", 3650),
    ("batch_size", "10000", 10000),
    ("retries", "0", 0),
    ("max_wait", "120", 120.0),
    ("lock_wait", "0.5", 0.5),
    ("read_timeout", "2.5", 2.5),
    ("lost_answer_wait", "0", 0.0),
    ("max_calls", "1", 1),
    ("encoding", '"cp1252"', "cp1252"),
    ("delimiter", '"tab"', "tab"),
    ("phone_column", "3", "3"),
    ("days_column", '"Días"', "Días"),
    ("no_header", "false", False),
    ("sheets", '["Hoja1", "No llamar"]', ("Hoja1", "No llamar")),
    ("inbox", '"inbox"', "@/inbox"),
    ("reports_dir", '"../reports"', "@/../reports"),
    ("keep_days", "30", 30),
    ("state_dir", '"state"', "@/state"),
    ("no_skip", "true", True),
    ("xlsx", "true", True),
    ("strict", "false", False),
]


def test_every_key_has_a_good_value_case() -> None:
    assert sorted([key for key, _, _ in GOOD] + ["inputs"]) == list(KNOWN_KEYS)


@pytest.mark.parametrize(("key", "toml", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_each_key_accepts_a_good_value(
    conf_dir: Path, key: str, toml: str, expected: object
) -> None:
    settings = load_config(write(conf_dir, f"{key} = {toml}\n"))
    if isinstance(expected, str) and expected.startswith("@/"):
        expected = conf_dir / expected[2:]
    assert settings.values == {key: expected}
    assert settings.get(key) == expected
    assert type(settings.get(key)) is type(expected)
    assert settings.inputs == ()


def test_path_and_absent_keys(conf_dir: Path) -> None:
    path = write(conf_dir, "")
    settings = load_config(Path(os.path.relpath(path)))
    assert settings.path == path
    assert settings.path.is_absolute()
    assert settings.values == {}
    assert settings.get("batch_size") is None
    assert settings.get("batch_size", 1000) == 1000
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.path = path  # type: ignore[misc]


def test_other_good_values(conf_dir: Path) -> None:
    text = (
        'server = "wv0002"\nphone_column = "Telefono"\ndelimiter = ";"\ndial_prefix = ""\n'
        'number_form = "international"\nsheets = []\nmax_wait = 0\n'
    )
    assert load_config(write(conf_dir, text)).values == {
        "server": "wv0002",
        "phone_column": "Telefono",
        "delimiter": ";",
        "dial_prefix": "",
        "number_form": "international",
        "sheets": (),
        "max_wait": 0.0,
    }


def test_a_tab_written_as_an_escape_is_one_character(conf_dir: Path) -> None:
    assert load_config(write(conf_dir, 'delimiter = "\\t"\n')).get("delimiter") == "\t"


def test_relative_paths_are_from_the_files_folder_not_the_current_one(conf_dir: Path) -> None:
    path = write(conf_dir, 'reports_dir = "reports"\ntoken_file = "/etc/wv.token"\n')
    settings = load_config(Path(os.path.relpath(path)))
    assert Path.cwd() != conf_dir
    assert settings.get("reports_dir") == conf_dir / "reports"
    assert settings.get("token_file") == Path("/etc/wv.token")


def test_home_is_expanded(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/operador")
    settings = load_config(write(conf_dir, 'token_file = "~/wv.token"\ninputs = ["~/x/*.csv"]\n'))
    assert settings.get("token_file") == Path("/home/operador/wv.token")
    assert settings.inputs == ("/home/operador/x/*.csv",)


def bad(line: str, expects: str, got: str) -> tuple[str, str]:
    """A wrong ``line`` and the exact message after "nightly.toml: "."""
    key = line.split(" ", 1)[0]
    return line, f"'{key}' must be {expects}, got {got}"


WHOLE_1 = "a whole number, 1 or more"
DAYS = "a whole number of days, 1 or more"
BATCH = "a whole number from 1 to 10000"
SECONDS = "a number of seconds, 0 or more"
BOOL = "true or false (without quotes)"
SERVER = 'the 4-digit code of your Wolkvox server, in quotes, e.g. server = "0002"'
PATH = "a path in quotes, e.g. "
DIAL = '1 to 4 digits in quotes, e.g. dial_prefix = "9" (or "" for none)'
REGION = 'a two-letter region code phonenumbers knows, in quotes, e.g. region = "CO"'
COLUMN = "a header name in quotes or a column position from 1, e.g. "
SHEETS = 'a list of sheet names, e.g. sheets = ["Hoja1", "Base"]'
FOLDER = "a folder path in quotes, e.g. "

BAD: list[tuple[str, str]] = [
    bad('batch_size = "1000"', BATCH, "'1000'"),
    bad("batch_size = 0", BATCH, "0"),
    bad("batch_size = 10001", BATCH, "10001"),
    bad("batch_size = 500.0", BATCH, "500.0"),
    bad("batch_size = true", BATCH, "true"),
    bad("retries = 21", "a whole number from 0 to 20", "21"),
    bad("retries = -1", "a whole number from 0 to 20", "-1"),
    bad("max_calls = 0", WHOLE_1, "0"),
    bad("default_days = 0", DAYS, "0"),
    bad('max_days = "3650"', DAYS, "'3650'"),
    bad("keep_days = 7.5", DAYS, "7.5"),
    bad("max_wait = -1", SECONDS, "-1"),
    bad("max_wait = inf", SECONDS, "inf"),
    bad("lock_wait = nan", SECONDS, "nan"),
    bad("read_timeout = 0", "a number of seconds, more than 0", "0"),
    bad("lost_answer_wait = -1", SECONDS, "-1"),
    bad('lock_wait = "300"', SECONDS, "'300'"),
    bad('allow_foreign = "yes"', BOOL, "'yes'"),
    bad("no_header = 1", BOOL, "1"),
    bad('no_skip = "true"', BOOL, "'true'"),
    bad("xlsx = 0", BOOL, "0"),
    bad('strict = "false"', BOOL, "'false'"),
    bad("server = 2", SERVER, "2"),
    bad('server = "wv2"', SERVER, "'wv2'"),
    bad('base_url = ""', 'a URL in quotes, e.g. base_url = "http://127.0.0.1:8080"', "''"),
    bad("token_file = 600", PATH + 'token_file = "/etc/dnc-import/wv0002.token"', "600"),
    bad('ca_bundle = ["a.pem"]', PATH + 'ca_bundle = "corporate-ca.pem"', "['a.pem']"),
    bad('region = "Colombia"', REGION, "'Colombia'"),
    bad('region = "' + "x" * 60 + '"', REGION, "'" + "x" * 37 + "...'"),
    bad(
        'number_form = "E.164"',
        'one of "national", "e164" or "international", in quotes',
        "'E.164'",
    ),
    bad("dial_prefix = 9", DIAL, "9"),
    bad('dial_prefix = "+57"', DIAL, "'+57'"),
    bad('dial_prefix = "12345"', DIAL, "'12345'"),
    # an Arabic-Indic nine: str.isdigit() would take it
    bad('dial_prefix = "\u0669"', DIAL, "'\u0669'"),
    bad(
        'encoding = "latin-9x"',
        'a text encoding Python knows, in quotes, e.g. encoding = "cp1252"',
        "'latin-9x'",
    ),
    bad('delimiter = ";;"', 'one character in quotes, or "tab", e.g. delimiter = ";"', "';;'"),
    bad("phone_column = 0", COLUMN + 'phone_column = "Telefono"', "0"),
    bad("days_column = true", COLUMN + 'days_column = "Dias"', "true"),
    bad('sheets = "Hoja1"', SHEETS, "'Hoja1'"),
    bad('sheets = ["Hoja1", 2024]', SHEETS, "['Hoja1', 2024]"),
    bad(
        'inputs = "exports/*.csv"',
        'a list of paths or globs, e.g. inputs = ["exports/*.xlsx"]',
        "'exports/*.csv'",
    ),
    bad(
        'inputs = ["a.csv", ""]',
        'a list of paths or globs, e.g. inputs = ["exports/*.xlsx"]',
        "['a.csv', '']",
    ),
    bad("inbox = 2024-05-01", FOLDER + 'inbox = "inbox"', "2024-05-01"),
    bad('reports_dir = "  "', FOLDER + 'reports_dir = "reports"', "'  '"),
    bad("state_dir = false", FOLDER + 'state_dir = "state"', "false"),
    bad("state_dir = {a = 1}", FOLDER + 'state_dir = "state"', "a table"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0] for b in BAD])
def test_each_wrong_value_is_named_with_its_fix(conf_dir: Path, line: str, message: str) -> None:
    assert load_error(write(conf_dir, f"# nightly\n{line}\n")) == f"nightly.toml: {message}"


def test_every_key_has_a_wrong_value_case() -> None:
    named = {re.match(r"\w+", line).group() for line, _ in BAD}  # type: ignore[union-attr]
    assert named | {"token_env"} == set(KNOWN_KEYS)


def test_the_file_is_named_as_given(conf_dir: Path) -> None:
    path = write(conf_dir, "retries = 99\n")
    with pytest.raises(ConfigError) as err:
        load_config(Path(os.path.relpath(path)))
    assert (
        str(err.value)
        == "../conf/nightly.toml: 'retries' must be a whole number from 0 to 20, got 99"
    )


def test_config_error_is_a_usage_error() -> None:
    assert issubclass(ConfigError, UsageError)
    assert ConfigError("x").exit_code is ExitCode.USAGE


def test_token_in_the_file_is_refused_and_never_shown(conf_dir: Path) -> None:
    secret = "wvtok-7Qz3-DISTINCTIVE-c0ffee-91x"
    message = load_error(write(conf_dir, f'server = "0002"\ntoken = "{secret}"\n'))
    assert message == (
        "nightly.toml: 'token' is not allowed: the token never goes in a file that may be "
        "shared; use token_file = PATH or token_env = NAME"
    )


def test_token_refused_before_any_other_problem(conf_dir: Path) -> None:
    message = load_error(write(conf_dir, 'batchsize = 1\ntoken = "abc"\n'))
    assert message.startswith("nightly.toml: 'token' is not allowed")


@pytest.mark.parametrize("value", ['"wvtok-7Qz3-DISTINCTIVE-c0ffee-91x"', "12345", '""'])
def test_token_env_that_is_not_a_name_is_not_echoed(conf_dir: Path, value: str) -> None:
    message = load_error(write(conf_dir, f"token_env = {value}\n"))
    assert message == (
        "nightly.toml: 'token_env' must be the NAME of the environment variable that holds the "
        'token (letters, digits and _), e.g. token_env = "WOLKVOX_TOKEN"; the value given is '
        "not one (it is not shown, in case it is the token itself)"
    )


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("batchsize", "batch_size"),
        ("batch-size", "batch_size"),
        ("sheet", "sheets"),
        ("phone_colum", "phone_column"),
        ("reports-dir", "reports_dir"),
    ],
)
def test_unknown_key_suggests_the_close_one(conf_dir: Path, key: str, suggestion: str) -> None:
    message = load_error(write(conf_dir, f'"{key}" = 1\n'))
    assert message == (
        f"nightly.toml: unknown key '{key}'; did you mean '{suggestion}'? Known keys: {KNOWN}"
    )


def test_unknown_key_without_a_close_one_lists_the_known(conf_dir: Path) -> None:
    message = load_error(write(conf_dir, 'password = "hunter2"\n'))
    assert message == (
        f"nightly.toml: unknown key 'password'; remove it or use one of the known keys: {KNOWN}"
    )
    assert "hunter2" not in message


@pytest.mark.parametrize("text", ["[nightly]\nbatch_size = 1\n", "nightly.batch_size = 1\n"])
def test_a_section_is_an_unknown_key(conf_dir: Path, text: str) -> None:
    assert load_error(write(conf_dir, text)) == (
        "nightly.toml: unknown key 'nightly' (a [section] or dotted key); the file is flat: "
        f"write the keys at the top level. Known keys: {KNOWN}"
    )


@pytest.mark.parametrize(("first", "second"), [("server", "base_url"), ("token_file", "token_env")])
def test_two_ways_of_saying_one_thing_are_refused(conf_dir: Path, first: str, second: str) -> None:
    values = {
        "server": '"0002"',
        "base_url": '"http://127.0.0.1:8080"',
        "token_file": '"t"',
        "token_env": '"TOK"',
    }
    text = f"{second} = {values[second]}\n{first} = {values[first]}\n"
    assert load_error(write(conf_dir, text)) == (
        f"nightly.toml: '{first}' and '{second}' are both given; keep one of them "
        "(they say the same thing two ways)"
    )


def test_syntax_error_names_the_line(conf_dir: Path) -> None:
    path = write(conf_dir, 'server = "0002"\n\nregion = CO\n')
    assert load_error(path) == (
        "nightly.toml: not valid TOML: Invalid value (at line 3, column 10); fix that line "
        '(text goes in quotes: region = "CO"; one key = value per line)'
    )


def test_a_key_given_twice_is_a_syntax_error(conf_dir: Path) -> None:
    message = load_error(write(conf_dir, "retries = 1\nretries = 2\n"))
    assert message.startswith("nightly.toml: not valid TOML: ")
    assert "(at line 2, column " in message


def test_not_utf8_names_the_line(conf_dir: Path) -> None:
    path = conf_dir / "nightly.toml"
    path.write_bytes('server = "0002"\nsheets = ["Teléfonos"]\n'.encode("cp1252"))
    assert load_error(path) == "nightly.toml: line 2 is not UTF-8 text; save the file as UTF-8"


def test_a_byte_order_mark_is_accepted(conf_dir: Path) -> None:
    path = conf_dir / "nightly.toml"
    path.write_bytes('sheets = ["Teléfonos"]\n'.encode("utf-8-sig"))
    assert load_config(path).get("sheets") == ("Teléfonos",)


def test_missing_file(conf_dir: Path) -> None:
    assert load_error(Path("nightly.toml")) == (
        "nightly.toml: no such config file; check the path (docs/config-example.toml shows one)"
    )


def test_a_folder_is_not_a_config_file(conf_dir: Path) -> None:
    assert load_error(conf_dir) == "conf: is a folder, not a config file; give the .toml file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(conf_dir: Path) -> None:
    path = write(conf_dir, "retries = 1\n")
    path.chmod(0)
    assert load_error(path) == (
        "nightly.toml: cannot read the config file (Permission denied); check its permissions"
    )


def test_the_original_error_is_chained(conf_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(conf_dir, "a = \n"))
    assert type(err.value.__cause__).__name__ == "TOMLDecodeError"


# --- inputs and their globs --------------------------------------------------------------------


def make_files(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("telefono\n3191234567\n", encoding="utf-8")


def test_inputs_are_resolved_from_the_files_folder(conf_dir: Path) -> None:
    text = 'inputs = ["exports/*.csv", "/data/extra.xlsx", "../shared/b.csv"]\n'
    settings = load_config(write(conf_dir, text))
    assert "inputs" not in settings.values
    assert settings.inputs == (
        f"{conf_dir}/exports/*.csv",
        "/data/extra.xlsx",
        f"{conf_dir}/../shared/b.csv",
    )


def test_globs_expand_sorted_files_only(conf_dir: Path) -> None:
    make_files(
        conf_dir,
        "exports/b.csv",
        "exports/a.csv",
        "exports/c.xlsx",
        "exports/~$c.xlsx",
        "exports/notes.txt",
        "exports/deep/d.csv",
        "single.csv",
    )
    (conf_dir / "exports" / "folder.csv").mkdir()
    text = 'inputs = ["exports/*.csv", "exports/*.xlsx", "single.csv", "missing.csv"]\n'
    found = expand_inputs(load_config(write(conf_dir, text)))
    assert found == [
        f"{conf_dir}/exports/a.csv",
        f"{conf_dir}/exports/b.csv",
        f"{conf_dir}/exports/c.xlsx",
        f"{conf_dir}/single.csv",
    ]


def test_a_file_matched_twice_is_listed_once(conf_dir: Path) -> None:
    make_files(conf_dir, "exports/a.csv", "exports/b.csv")
    text = 'inputs = ["exports/b.csv", "exports/*.csv", "../conf/exports/a.csv"]\n'
    found = expand_inputs(load_config(write(conf_dir, text)))
    assert found == [f"{conf_dir}/exports/b.csv", f"{conf_dir}/exports/a.csv"]


def test_recursive_glob(conf_dir: Path) -> None:
    make_files(conf_dir, "inbox/x.csv", "inbox/2024/y.csv", "inbox/2024/05/z.csv")
    found = expand_inputs(load_config(write(conf_dir, 'inputs = ["inbox/**/*.csv"]\n')))
    assert found == [
        f"{conf_dir}/inbox/2024/05/z.csv",
        f"{conf_dir}/inbox/2024/y.csv",
        f"{conf_dir}/inbox/x.csv",
    ]


def test_an_empty_inbox_is_not_an_error(conf_dir: Path) -> None:
    (conf_dir / "inbox").mkdir()
    settings = load_config(write(conf_dir, 'inputs = ["inbox/*.xlsx", "nowhere/*.csv"]\n'))
    assert expand_inputs(settings) == []
    assert expand_inputs(load_config(write(conf_dir, "", name="empty.toml"))) == []


def test_brackets_in_names_are_taken_literally(tmp_path: Path) -> None:
    folder = tmp_path / "ops [wv0002]"
    make_files(folder, "exports/a.csv", "exports/export [1].csv")
    text = 'inputs = ["exports/*.csv", "exports/export [1].csv"]\n'
    found = expand_inputs(load_config(write(folder, text)))
    assert found == [f"{folder}/exports/a.csv", f"{folder}/exports/export [1].csv"]


# --- the example in docs/ --------------------------------------------------------------------


def test_the_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_config(EXAMPLE)
    docs = EXAMPLE.parent
    assert settings.get("server") == "0002"
    assert settings.get("token_file") == docs / "secrets/wv0002.token"
    assert settings.get("inbox") == docs / "inbox"
    assert settings.get("batch_size") == 1000
    assert settings.get("sheets") == ("Hoja1", "No llamar")
    assert settings.inputs == (f"{docs}/exports/*.csv", f"{docs}/exports/*.xlsx")
    assert set(settings.values) == set(KNOWN_KEYS) - {"inputs", "base_url", "token_env"}


def test_the_example_shows_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    shown = set(re.findall(r"^(?:# )?(\w+) = ", text, re.MULTILINE))
    assert shown == set(KNOWN_KEYS)


def test_the_examples_alternatives_load(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    swapped = re.sub(r"^(server|token_file) = ", r"# \1 = ", text, flags=re.MULTILINE)
    swapped = re.sub(r"^# (base_url|token_env) = ", r"\1 = ", swapped, flags=re.MULTILINE)
    settings = load_config(write(tmp_path, swapped))
    assert settings.get("base_url") == "http://127.0.0.1:8080"
    assert settings.get("token_env") == "WOLKVOX_TOKEN_WV0002"
    assert settings.get("server") is None
    assert settings.get("token_file") is None


def test_file_settings_can_be_built_directly(tmp_path: Path) -> None:
    settings = FileSettings(path=tmp_path / "x.toml", values={"retries": 2})
    assert settings.get("retries") == 2
    assert settings.inputs == ()

"""The command line through its real entry points: click's CliRunner on ``importer.cli.cli``,
and ``python -m importer`` in a subprocess where the console entry, the exit code, the
separation of stdout and stderr or a terminal matter.

The sample data's verdicts are transcribed from docs/sample_data.md (the reviewed truth).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import pty
import re
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import openpyxl
import phonenumbers
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer import __version__
from importer.cli import cli
from importer.model import OUTCOME_COLUMNS
from importer.reporter import ERROR_COLUMNS
from importer.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SAMPLES = tuple(sorted(f"sample_data/{p.name}" for p in (ROOT / "sample_data").iterdir()))
CSV_SAMPLE = "sample_data/clientes_bogota.csv"
XLSX_SAMPLE = "sample_data/crm_export.xlsx"
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
REPORT_FILES = {"outcomes.csv", "errors.csv", "outcomes.xlsx", "summary.json", "journal.sqlite"}

Verdict = tuple[str, str, int, int, str, str]
"""(source_file, sheet, row, part, status, reason) of one outcome line."""


def _verdicts() -> set[Verdict]:
    """docs/sample_data.md, row by row (defaults: region CO, no --default-days)."""
    ready, dup = ("ready", "valid"), ("duplicate", "duplicate")
    csv_rows: dict[int, tuple[str, str]] = {
        4: dup,
        5: ready,
        6: ready,
        7: ready,
        8: ready,
        10: ("invalid", "days-zero"),
        11: ("invalid", "days-negative"),
        12: ("invalid", "days-fractional"),
        13: ("invalid", "days-not-a-number"),
        14: ("invalid", "missing-days"),
        15: ("invalid", "lost-digits-scientific-notation"),
        16: ("invalid", "too-short"),
        17: ("invalid", "foreign-number"),
        18: ("invalid", "missing-phone"),
        19: dup,
        20: ("invalid", "too-long"),
        21: ("invalid", "not-a-number"),
        22: ("invalid", "days-too-large"),
        23: ("invalid", "invalid-number"),
        24: ("invalid", "not-a-whole-number"),
        **{row: ready for row in range(25, 35)},
        35: dup,
        36: ready,
        37: ready,
        # 38 is blank: no line
        **{row: ready for row in range(39, 43)},
        43: ("invalid", "missing-phone"),  # the footer "Total de registros: 38"
    }
    xlsx_rows: dict[int, tuple[str, str]] = {
        4: ready,
        5: ready,
        7: ready,
        8: ("invalid", "days-not-a-number"),
        9: ("invalid", "not-a-whole-number"),
        10: ("invalid", "days-fractional"),
        11: ("invalid", "missing-phone"),
        12: ready,
        13: dup,
        14: ("invalid", "lost-digits-scientific-notation"),
        # 15 is blank: no line
        16: ready,
    }
    out = {(CSV_SAMPLE, "", row, 1, *v) for row, v in csv_rows.items()}
    out |= {(CSV_SAMPLE, "", 9, part, *ready) for part in (1, 2)}
    out |= {(XLSX_SAMPLE, "Clientes", row, 1, *v) for row, v in xlsx_rows.items()}
    out |= {(XLSX_SAMPLE, "Clientes", 6, part, *ready) for part in (1, 2)}
    return out


SAMPLE_VERDICTS = _verdicts()


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token or server from the developer's shell; token locks under tmp_path."""
    monkeypatch.delenv("WOLKVOX_TOKEN", raising=False)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))


def invoke(args: Sequence[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def run_module(
    args: Sequence[str], cwd: Path, stderr: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """``python -m importer ARGS`` as a user would start it (no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "importer", *args],
        cwd=cwd,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def only_run_dir(reports: Path) -> Path:
    runs = list(reports.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def verdicts(rows: list[dict[str, str]]) -> set[Verdict]:
    return {
        (r["source_file"], r["sheet"], int(r["row"]), int(r["part"]), r["status"], r["reason"])
        for r in rows
    }


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the sample data, end to end ------------------------------------------------------------


def test_sample_dry_run_through_the_console_entry(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = run_module(["run", *SAMPLES, "--dry-run", "--reports-dir", str(reports)], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"run_id: (\S+)\n", done.stdout)
    assert match is not None, done.stdout
    run_id = match.group(1)
    assert RUN_ID.fullmatch(run_id)
    run_dir = only_run_dir(reports)
    assert run_dir.name == run_id
    # The summary goes to stderr; no progress bar without a terminal; no traceback.
    assert done.stderr.startswith(f"Run {run_id}: 53 lines\n"), done.stderr
    assert re.search(r"^  ready +29$", done.stderr, re.MULTILINE)
    assert re.search(r"^  invalid +20$", done.stderr, re.MULTILINE)
    assert re.search(r"^  duplicate +4$", done.stderr, re.MULTILINE)
    assert done.stderr.endswith(
        f"Reports in {run_dir}: outcomes.csv, errors.csv, outcomes.xlsx, summary.json\n"
    )
    assert "\r" not in done.stderr and "Traceback" not in done.stderr
    # Owner-only folder and files.
    assert mode(run_dir) == 0o700
    names = {p.name for p in run_dir.iterdir()}
    assert REPORT_FILES <= names
    assert {p.name: mode(p) for p in run_dir.iterdir()} == dict.fromkeys(names, 0o600)
    # Every sample row's verdict, exactly as docs/sample_data.md says.
    rows = read_csv(run_dir / "outcomes.csv")
    assert list(rows[0]) == list(OUTCOME_COLUMNS)
    assert len(rows) == len(SAMPLE_VERDICTS) == 53
    assert verdicts(rows) == SAMPLE_VERDICTS
    by_key = {(r["source_file"], r["sheet"], r["row"], r["part"]): r for r in rows}
    row5 = by_key[CSV_SAMPLE, "", "5", "1"]
    assert (row5["telephone"], row5["days_block"]) == ("3191234568", "30")
    assert by_key[CSV_SAMPLE, "", "39", "1"]["days_block"] == "30"
    assert by_key[CSV_SAMPLE, "", "4", "1"]["message"] == (
        "duplicate of sample_data/crm_export.xlsx:Clientes row 7 (kept there with 180 days)"
    )
    assert by_key[CSV_SAMPLE, "", "35", "1"]["message"] == (
        "duplicate of sample_data/clientes_bogota.csv row 5 (kept there with 30 days)"
    )
    assert by_key[XLSX_SAMPLE, "Clientes", "7", "1"]["days_block"] == "180"
    # errors.csv holds exactly the invalid lines, in ERROR_COLUMNS.
    errors = read_csv(run_dir / "errors.csv")
    assert list(errors[0]) == list(ERROR_COLUMNS)
    assert len(errors) == 20 and {e["status"] for e in errors} == {"invalid"}


def test_the_docs_totals_agree_with_the_transcribed_verdicts() -> None:
    doc = (ROOT / "docs" / "sample_data.md").read_text(encoding="utf-8")
    found = re.search(
        r"give (\d+) outcome lines: \*\*(\d+) ready, (\d+) duplicate, (\d+) invalid\*\*", doc
    )
    assert found is not None
    counts = Counter(v[4] for v in SAMPLE_VERDICTS)
    assert [int(n) for n in found.groups()] == [
        len(SAMPLE_VERDICTS),
        counts["ready"],
        counts["duplicate"],
        counts["invalid"],
    ]


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    """The control for the "no \\r" checks: with stderr on a terminal the bar is drawn."""
    master, slave = pty.openpty()
    # A real terminal has a size; tqdm draws nothing in 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = run_module(
            ["run", CSV_SAMPLE, "--dry-run", "--reports-dir", str(tmp_path / "r")],
            cwd=ROOT,
            stderr=slave,
        )
    finally:
        os.close(slave)
    seen = b""
    try:
        while chunk := os.read(master, 65536):
            seen += chunk
    except OSError:  # EIO: the terminal's other end is closed
        pass
    finally:
        os.close(master)
    assert done.returncode == 0
    assert b"reading" in seen and b"\r" in seen
    assert done.stdout.startswith("run_id: ")


# -- exit codes and messages ------------------------------------------------------------------

INPUT_ERRORS = [
    (["nope.csv"], "nope.csv: no such file: check the name and the folder"),
    (
        ["expected"],
        "expected is a folder, not a file: name the files inside it (e.g. expected/*.csv)",
    ),
    (["empty.csv"], "empty.csv is empty (0 bytes): export it again with its rows"),
    (["header_only.csv"], "header_only.csv has no data rows below the header (row 2): export it again with its rows, or remove it from the run"),
    (
        ["garbage.xlsx"],
        (
            "garbage.xlsx is not a valid Excel workbook (a damaged zip archive): open it in Excel "
            "and save it again as .xlsx"
        ),
    ),
    (
        ["README.md"],
        (
            "README.md is not a spreadsheet (.md file): give .csv, .tsv, .txt, .xlsx, .xlsm, .xls or "
            ".ods files (rename a CSV export to .csv)"
        ),
    ),
    (
        ["no_phone_column.csv"],
        (
            'no_phone_column.csv: no phone column found; headers seen: "Nombre", "Cédula", '
            '"Ciudad". Name it with --phone-column NAME or a position (--phone-column 2).'
        ),
    ),
    (
        ["sheets.xlsx", "--sheet", "Bogota"],
        (
            'sheets.xlsx: no sheet named "Bogota"; its sheets are "Clientes", "Notas", "Config", '
            '"Vacía", "Más". Name one with --sheet NAME'
        ),
    ),
    (
        ["one_column.txt", "--no-header"],
        (
            'one_column.txt has no days column and no --default-days was given: add a "days_block" '
            '(or "Días de bloqueo") column, name it with --days-column, or give --default-days N'
        ),
    ),
    (
        # read twice, every row would be its own duplicate (and the lines of both would clash)
        ["utf8_comma.csv", "tab.tsv", "utf8_comma.csv"],
        "utf8_comma.csv: the same file is given twice; give each input file once",
    ),
    (
        ["utf8_comma.csv", "./utf8_comma.csv"],
        (
            "utf8_comma.csv and ./utf8_comma.csv: the same file is given twice; give each input "
            "file once"
        ),
    ),
    (
        # a bad file among good ones stops the whole run
        ["utf8_comma.csv", "garbage.xlsx", "tab.tsv"],
        (
            "garbage.xlsx is not a valid Excel workbook (a damaged zip archive): open it in Excel "
            "and save it again as .xlsx"
        ),
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), INPUT_ERRORS, ids=[" ".join(a) for a, _ in INPUT_ERRORS]
)
def test_input_errors_exit_2_with_one_line_and_nothing_written(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DATA)
    reports = tmp_path / "reports"
    result = invoke(["run", *args, "--dry-run", "--reports-dir", str(reports)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""
    assert not reports.exists()


def test_a_file_without_days_among_good_ones_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "good.csv", [["telefono", "dias"], ["3191234567", "30"]])
    write_csv(tmp_path / "nodays.csv", [["telefono", "nombre"], ["3001234567", "Ana"]])
    result = invoke(["run", "good.csv", "nodays.csv", "--dry-run", "--reports-dir", "reports"])
    assert result.exit_code == 2
    assert result.stderr == (
        'Error: nodays.csv has no days column and no --default-days was given: add a "days_block" '
        '(or "Días de bloqueo") column, name it with --days-column, or give --default-days N\n'
    )
    assert not (tmp_path / "reports").exists()
    # --default-days makes the same pair a run
    result = invoke(
        [
            "run",
            "good.csv",
            "nodays.csv",
            "--dry-run",
            "--reports-dir",
            "reports",
            "--default-days",
            "15",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(only_run_dir(tmp_path / "reports") / "outcomes.csv")
    assert [(r["source_file"], r["telephone"], r["days_block"], r["status"]) for r in rows] == [
        ("good.csv", "3191234567", "30", "ready"),
        ("nodays.csv", "3001234567", "15", "ready"),
    ]


def test_input_error_through_the_console_entry(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = run_module(
        ["run", "utf8_comma.csv", "empty.csv", "--dry-run", "--reports-dir", str(reports)],
        cwd=DATA,
    )
    assert done.returncode == 2
    assert done.stderr == "Error: empty.csv is empty (0 bytes): export it again with its rows\n"
    assert done.stdout == ""
    assert not reports.exists()


def test_verbose_adds_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    args = ["run", "empty.csv", "--dry-run", "--reports-dir", str(tmp_path / "r"), "--verbose"]
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "importer.errors.InputError: empty.csv is empty (0 bytes)" in result.stderr
    assert result.stderr.endswith(
        "\nError: empty.csv is empty (0 bytes): export it again with its rows\n"
    )


USAGE_ERRORS = [
    (
        ["--number-form", "x"],
        (
            "Error: Invalid value for '--number-form': 'x' is not one of 'national', 'e164', "
            "'international'."
        ),
    ),
    (
        ["--batch-size", "0"],
        "Error: Invalid value for '--batch-size': 0 is not in the range 1<=x<=10000.",
    ),
    (
        ["--dial-prefix", "abc"],
        (
            "Error: --dial-prefix 'abc' is not 1 to 4 digits; give the digits your dialer puts "
            "before each number, such as 9"
        ),
    ),
    (
        ["--number-form", "e164", "--dial-prefix", "9"],
        (
            "Error: --dial-prefix cannot be used with --number-form e164 (an E.164 number starts "
            "with +); use --number-form national or international with it"
        ),
    ),
    (
        ["--region", "XX"],
        (
            "Error: --region XX is not a region code phonenumbers knows; use a two-letter code "
            "such as CO, MX or PE"
        ),
    ),
    (
        ["--delimiter", "ab"],
        "Error: --delimiter 'ab': give one character, e.g. --delimiter ';' (or 'tab')",
    ),
    (
        ["--max-days", "0"],
        "Error: --max-days 0 is below 1; give the longest block you allow in days, such as 3650",
    ),
    (
        ["--default-days", "0"],
        (
            "Error: --default-days 0 is not between 1 and --max-days 3650; give a whole number of "
            "days in that range"
        ),
    ),
]


@pytest.mark.parametrize(
    ("args", "last_line"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS]
)
def test_usage_errors_exit_2(
    args: list[str], last_line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DATA)
    reports = tmp_path / "reports"
    result = invoke(["run", "utf8_comma.csv", "--dry-run", "--reports-dir", str(reports), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == last_line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not reports.exists()


def test_strict_makes_invalid_rows_fail(tmp_path: Path) -> None:
    data = write_csv(
        tmp_path / "in.csv", [["telefono", "dias"], ["3191234567", "30"], ["12", "30"]]
    )
    codes = {}
    for flags in ([], ["--strict"]):
        reports = tmp_path / ("strict" if flags else "plain")
        result = invoke(["run", str(data), "--dry-run", "--reports-dir", str(reports), *flags])
        summary = json.loads((only_run_dir(reports) / "summary.json").read_text("utf-8"))
        assert summary["exit_code"] == result.exit_code
        assert summary["counts"]["by_status"]["invalid"] == 1
        codes[bool(flags)] = result.exit_code
    assert codes == {False: 0, True: 1}


def test_strict_without_invalid_rows_is_ok(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "in.csv", [["telefono", "dias"], ["3191234567", "30"]])
    result = invoke(["run", str(data), "--dry-run", "--strict", "--reports-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output


# -- the server and the token ------------------------------------------------------------------


def test_a_bad_server_is_refused_before_the_token_is_read(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "in.csv", [["telefono", "dias"], ["3191234567", "30"]])
    reports = tmp_path / "reports"
    # No WOLKVOX_TOKEN, and a token file that does not exist: only the server is named.
    for extra in ([], ["--token-file", str(tmp_path / "missing-token")]):
        result = invoke(
            ["run", str(data), "--server", "evil.example/x", "--reports-dir", str(reports), *extra]
        )
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: --server 'evil.example/x' is not a Wolkvox server code: give the 4 digits "
            "Wolkvox support gave your operation, e.g. --server 0002\n"
        )
    assert not reports.exists()


def test_no_token_exits_2_naming_both_ways(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "in.csv", [["telefono", "dias"], ["3191234567", "30"]])
    reports = tmp_path / "reports"
    done = run_module(
        ["run", str(data), "--server", "0002", "--reports-dir", str(reports)], tmp_path
    )
    assert done.returncode == 2
    assert done.stderr == (
        "Error: no token: set WOLKVOX_TOKEN in the environment, or give --token-file PATH "
        "(a file holding only the token, mode 600)\n"
    )
    assert done.stdout == ""
    assert not reports.exists()


def test_a_real_send_keeps_the_token_out_of_every_output(
    tmp_path: Path,
    simulator: Callable[..., Simulator],
    sim_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = simulator(token=sim_token)
    reports = tmp_path / "reports"
    monkeypatch.chdir(ROOT)
    result = invoke(
        ["run", CSV_SAMPLE, "--base-url", sim.base_url, "--reports-dir", str(reports)],
        env={"WOLKVOX_TOKEN": sim_token},
    )
    assert result.exit_code == 0, result.output
    assert sim_token not in result.stdout and sim_token not in result.stderr
    run_dir = only_run_dir(reports)
    for path in run_dir.iterdir():
        assert sim_token.encode() not in path.read_bytes(), path.name
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert summary["dry_run"] is False
    send = summary["settings"]["send"]
    assert "token" not in send and send["url"] == sim.add_dnc_url
    assert summary["counts"]["by_status"]["added"] == 23
    assert len(sim.dnc_list()) == 23
    assert summary["sending"]["calls"] == 1


# -- what a run prints and writes --------------------------------------------------------------


def sample_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> Result:
    monkeypatch.chdir(ROOT)
    return invoke(["run", *SAMPLES, "--dry-run", "--reports-dir", str(tmp_path / "r"), *flags])


def test_json_prints_summary_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = sample_run(tmp_path, monkeypatch, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "r")
    printed = json.loads(result.stdout)
    assert printed == json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert printed["run_id"] == run_dir.name
    assert "run_id:" not in result.stdout


def test_quiet_prints_no_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = sample_run(tmp_path, monkeypatch, "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == f"run_id: {only_run_dir(tmp_path / 'r').name}\n"


def test_without_quiet_the_summary_is_on_stderr_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = sample_run(tmp_path, monkeypatch)
    run_id = only_run_dir(tmp_path / "r").name
    assert result.stdout == f"run_id: {run_id}\n"
    assert result.stderr.startswith(f"Run {run_id}: 53 lines\n")
    assert "Top reasons:\n  valid " in result.stderr
    assert "\r" not in result.stderr


def test_summary_json_has_every_field_and_reconciles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = sample_run(tmp_path, monkeypatch, "--region", "co", "--max-days", "3650")
    assert result.exit_code == 0
    run_dir = only_run_dir(tmp_path / "r")
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert summary["run_id"] == run_dir.name
    started = datetime.fromisoformat(summary["started"])
    finished = datetime.fromisoformat(summary["finished"])
    assert started.utcoffset() is not None and started <= finished
    assert summary["versions"]["dnc_import"] == __version__
    assert summary["versions"]["phonenumbers"] == phonenumbers.__version__
    assert summary["dry_run"] is True and summary["exit_code"] == 0
    settings = summary["settings"]
    assert settings["inputs"] == list(SAMPLES)
    assert settings["validate"]["region"] == "CO"
    assert settings["validate"]["form"] == "national"
    assert settings["validate"]["default_days"] is None
    assert "send" not in settings and "token" not in json.dumps(settings).lower()
    inputs = {entry["path"]: entry for entry in summary["inputs"]}
    assert list(inputs) == list(SAMPLES)
    for path, entry in inputs.items():
        assert entry["sha256"] == hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
    text, book = inputs[CSV_SAMPLE], inputs[XLSX_SAMPLE]
    assert (text["format"], text["encoding"], text["delimiter"]) == ("csv", "cp1252", ";")
    assert text["sheets"][0]["header_row"] == 3
    assert text["sheets"][0]["phone_column"] == "Teléfono"
    assert (book["format"], [s["name"] for s in book["sheets"]]) == ("xlsx", ["Clientes"])
    assert book["skipped_sheets"] == [
        {"sheet": "Config", "why": "hidden"},
        {"sheet": "Notas", "why": "no phone column"},
    ]
    # The counts reconcile with outcomes.csv, line by line.
    rows = read_csv(run_dir / "outcomes.csv")
    counts = summary["counts"]
    assert counts["lines"] == len(rows) == sum(counts["by_status"].values())
    assert counts["rows"] == len({(r["source_file"], r["sheet"], r["row"]) for r in rows}) == 51
    by_status = {k: v for k, v in counts["by_status"].items() if v}
    assert by_status == dict(Counter(r["status"] for r in rows))
    assert by_status == {"ready": 29, "invalid": 20, "duplicate": 4}
    assert counts["by_reason"] == dict(Counter(r["reason"] for r in rows))
    assert counts["by_reason"]["lost-digits-scientific-notation"] == 2


# -- formula safety, end to end ------------------------------------------------------------------

RISKY_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")


def test_no_report_cell_can_run_as_a_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_csv(
        tmp_path / "=evil.csv",
        [
            ["nombre", "telefono", "dias"],
            ["=1+1", '=HYPERLINK("http://x","y")', "30"],
            ["@x", "@SUM(1)", "=2+3"],
            ["+a", "+57 319 123 4567", "-1"],
            ["-b", "-1", "@SUM(1)"],
            ["c", "+57 300 123 4567", "+30"],
            ["d", "\t3101234567", "30"],
        ],
    )
    args = ["run", "=evil.csv", "--dry-run", "--number-form", "e164", "--xlsx"]
    result = invoke([*args, "--reports-dir", "r", "--quiet"])
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "r")
    rows = read_csv(run_dir / "outcomes.csv")
    got = [
        (
            r["source_file"],
            r["row"],
            r["raw_phone"],
            r["raw_days"],
            r["telephone"],
            r["status"],
            r["reason"],
        )
        for r in rows
    ]
    assert got == [
        ("'=evil.csv", "2", '\'=HYPERLINK("http://x","y")', "30", "", "invalid", "not-a-number"),
        ("'=evil.csv", "3", "'@SUM(1)", "'=2+3", "", "invalid", "not-a-number"),
        ("'=evil.csv", "4", "'+57 319 123 4567", "-1", "+573191234567", "invalid", "days-negative"),
        ("'=evil.csv", "5", "-1", "'@SUM(1)", "", "invalid", "not-a-number"),
        ("'=evil.csv", "6", "'+57 300 123 4567", "+30", "+573001234567", "ready", "valid"),
        ("'=evil.csv", "7", "'\t3101234567", "30", "+573101234567", "ready", "valid"),
    ]
    errors = read_csv(run_dir / "errors.csv")
    assert [(e["phone"], e["days_block"], e["source_file"]) for e in errors] == [
        ('\'=HYPERLINK("http://x","y")', "30", "'=evil.csv"),
        ("'@SUM(1)", "'=2+3", "'=evil.csv"),
        ("'+57 319 123 4567", "-1", "'=evil.csv"),
        ("-1", "'@SUM(1)", "'=evil.csv"),
    ]
    # Every cell of both CSV files: risky starts only on plain numbers.
    for name in ("outcomes.csv", "errors.csv"):
        with (run_dir / name).open(encoding="utf-8-sig", newline="") as f:
            for record in csv.reader(f):
                for cell in record:
                    assert not cell.startswith(RISKY_START) or PLAIN_NUMBER.fullmatch(cell), cell
    # The workbook: no formula cell, in openpyxl's reading and in the sheet XML itself.
    book = openpyxl.load_workbook(run_dir / "outcomes.xlsx")
    for sheet in book.worksheets:
        for line in sheet.iter_rows():
            for cell in line:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    sheet = book["Outcomes"]
    assert [c.value for c in sheet[4]][4:7] == ["'+57 319 123 4567", "-1", "+573191234567"]
    with zipfile.ZipFile(run_dir / "outcomes.xlsx") as archive:
        for member in archive.namelist():
            if member.startswith("xl/worksheets/"):
                xml = archive.read(member)
                assert b"<f>" not in xml and b"<f " not in xml, member


# -- errors.csv imports again as it is ---------------------------------------------------------


def test_errors_csv_imports_again_with_the_same_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = sample_run(tmp_path, monkeypatch, "--quiet")
    assert first.exit_code == 0
    errors_csv = only_run_dir(tmp_path / "r") / "errors.csv"
    errors = read_csv(errors_csv)
    assert len(errors) == 20
    assert not any("\n" in cell or "\r" in cell for e in errors for cell in e.values())
    again = invoke(
        [
            "run",
            str(errors_csv),
            "--dry-run",
            "--default-days",
            "30",
            "--quiet",
            "--reports-dir",
            str(tmp_path / "again"),
        ]
    )
    assert again.exit_code == 0, again.output
    run_dir = only_run_dir(tmp_path / "again")
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    sheet = summary["inputs"][0]["sheets"][0]
    assert (sheet["header_row"], sheet["phone_column"], sheet["days_column"]) == (
        1,
        "phone",
        "days_block",
    )
    rows = read_csv(run_dir / "outcomes.csv")
    assert [int(r["row"]) for r in rows] == list(range(2, 22))
    for before, after in zip(errors, rows, strict=True):
        if before["reason"] == "missing-days":  # the one row --default-days fixes
            assert (after["status"], after["reason"], after["days_block"]) == (
                "ready",
                "valid",
                "30",
            )
        else:
            assert (after["status"], after["reason"]) == (before["status"], before["reason"])
    assert sum(1 for e in errors if e["reason"] == "missing-days") == 1


# -- the counts always reconcile, whatever the rows ---------------------------------------------

PHONE_PARTS = st.sampled_from(
    [
        "3191234567",
        "+57 ",
        "(319) ",
        "123-4567",
        "3,19E+09",
        "319123",
        "/",
        ";",
        ",",
        "|",
        "\n",
        " ",
        "0",
        "9",
        ".",
        "5",
        "e",
        "ñ",
        "=",
        '"',
        "",
        "601 234 5678",
        "+1 415 555 2671",
    ]
)
DAYS = st.one_of(
    st.sampled_from(["", "30", " 15 ", "0", "-5", "15,5", "30.0", "treinta", "3651", "1e3"]),
    st.text(alphabet="0123456789 .,-", max_size=6),
)
ROWS = st.lists(
    st.tuples(st.lists(PHONE_PARTS, max_size=4).map("".join), DAYS), min_size=1, max_size=12
)


def _is_blank(cells: tuple[str, ...]) -> bool:
    return all(not c or c.isspace() for c in cells)


@settings(
    max_examples=int(os.environ.get("CLI_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS, strict=st.booleans())
def test_counts_always_reconcile(rows: list[tuple[str, str]], strict: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_csv(folder / "in.csv", [["telefono", "dias"], *[list(r) for r in rows]])
        # The row a person sees: 1 for the header, then each record's first line.
        expected_rows, line = [], 2
        for phone, days in rows:
            if not _is_blank((phone, days)):
                expected_rows.append(line)
            line += phone.count("\n") + days.count("\n") + 1
        flags = ["--strict"] if strict else []
        result = invoke(
            ["run", str(data), "--dry-run", "--quiet", "--reports-dir", str(folder / "r"), *flags]
        )
        if not expected_rows:  # only blank rows: an input error, nothing written
            assert result.exit_code == 2, result.output
            assert result.stderr.startswith("Error: ") and not (folder / "r").exists()
            return
        assert result.exit_code in (0, 1), result.output
        run_dir = only_run_dir(folder / "r")
        lines = read_csv(run_dir / "outcomes.csv")
        counts = json.loads((run_dir / "summary.json").read_text("utf-8"))["counts"]
        assert sorted({int(r["row"]) for r in lines}) == expected_rows
        assert sum(counts["by_status"].values()) == counts["lines"] == len(lines)
        assert counts["rows"] == len(expected_rows)
        invalid = sum(1 for r in lines if r["status"] == "invalid")
        assert result.exit_code == (1 if strict and invalid else 0)


def test_a_second_phone_column_is_named_in_a_warning(tmp_path: Path) -> None:
    data = Path(__file__).parent / "data" / "two_phone_columns.csv"
    result = invoke(["run", str(data), "--dry-run", "--reports-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (
        f'warning: {data} also has "Celular"; only "Teléfono" is read. '
        "To block those numbers too, run again with --phone-column NAME"
    ) in result.stderr

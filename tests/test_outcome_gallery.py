"""The expected-outcome gallery: a dry run (``--default-days 30``) of every readable input of the
reader's gallery gives exactly the checked-in tests/data/outcomes/<case>.csv.

The expected files were drafted by tests/data/outcomes/regenerate.py and then checked line by
line against the inputs (see tests/data/outcomes/README.md). A change of verdict fails here:
check the new verdict by hand before regenerating.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from importer.cli import cli

DATA = Path(__file__).resolve().parent / "data"
OUTCOMES = DATA / "outcomes"
EXPECTED = sorted(OUTCOMES.glob("*.csv"))
COLUMNS = [
    "source_file",
    "sheet",
    "row",
    "part",
    "raw_phone",
    "raw_days",
    "telephone",
    "days_block",
    "status",
    "reason",
]
STATUSES = {"ready", "invalid", "duplicate"}


def reader_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((DATA / "expected" / f"{name}.json").read_text("utf-8"))
    return case


def readable_cases() -> set[str]:
    return {
        path.stem
        for path in (DATA / "expected").glob("*.json")
        if "error" not in json.loads(path.read_text("utf-8"))
    }


def flags(options: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        if key == "no_header":
            out += ["--no-header"] if value else []
        elif key == "sheets":
            out += [arg for sheet in value for arg in ("--sheet", sheet)]
        else:
            out += ["--" + key.replace("_", "-"), str(value)]
    return out


def read_expected(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        records = list(csv.reader(f))
    assert records[0] == COLUMNS, path.name
    return records[1:]


@pytest.mark.parametrize("expected_file", EXPECTED, ids=[p.stem for p in EXPECTED])
def test_dry_run_gives_the_checked_in_outcomes(
    expected_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = reader_case(expected_file.stem)
    monkeypatch.chdir(DATA)
    reports = tmp_path / "reports"
    args = ["run", case["input"], "--dry-run", "--default-days", "30", "--quiet"]
    result = CliRunner().invoke(
        cli, [*args, *flags(case.get("options", {})), "--reports-dir", str(reports)]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = reports.iterdir()
    with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as f:
        lines = [
            [Path(line["source_file"]).name if c == "source_file" else line[c] for c in COLUMNS]
            for line in csv.DictReader(f)
        ]
    assert lines == read_expected(expected_file)


@pytest.mark.parametrize("expected_file", EXPECTED, ids=[p.stem for p in EXPECTED])
def test_expected_outcomes_cover_every_row_the_reader_reads(expected_file: Path) -> None:
    """Independent of the pipeline: each row of the reader's expected reading has its lines."""
    case = reader_case(expected_file.stem)
    lines = read_expected(expected_file)
    read: set[tuple[str, int]] = set()
    if "rows" in case:  # a single-sheet case does not name its sheet: take the lines' one
        (sheet,) = {line[1] for line in lines}
        read = {(sheet, row) for row, _, _ in case["rows"]}
    for name, rows in case.get("sheets", {}).items():
        read |= {(name, row) for row, _, _ in rows}
    assert read
    assert {(line[1], int(line[2])) for line in lines} == read
    assert {line[0] for line in lines} == {case["input"]}
    for line in lines:
        assert line[8] in STATUSES and line[9], line
        assert (line[8] == "ready") == (line[9] == "valid"), line
        if line[8] == "ready":  # a ready line always has what would be sent
            assert line[6] and int(line[7]) >= 1, line


def test_every_readable_input_has_expected_outcomes() -> None:
    assert {p.stem for p in EXPECTED} == readable_cases()
    inputs = {reader_case(name)["input"] for name in readable_cases()}
    assert {p.stem for p in EXPECTED} >= inputs  # each readable input under its own name

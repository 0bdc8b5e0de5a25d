"""Write tests/data/outcomes/<case>.csv: the verdicts of a dry run on each readable gallery input.

    .venv/bin/python tests/data/outcomes/regenerate.py

A case is a reader case of tests/data/expected/ without an ``error``: its ``input`` is read with
its ``options`` turned into command-line flags, plus ``--default-days 30`` (so inputs without a
days column run too). Each expected file keeps the columns of outcomes.csv that do not depend on
the machine or the wording of messages, as outcomes.csv writes them (formula-safe cells
included), with ``source_file`` reduced to its base name.

The output is only a draft until a person has read every line against the input: see README.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
COLUMNS = (
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
)
FLAGS = {
    "encoding": "--encoding",
    "delimiter": "--delimiter",
    "phone_column": "--phone-column",
    "days_column": "--days-column",
}


def readable_cases() -> dict[str, dict[str, object]]:
    """{case name: reader case} for every case of tests/data/expected/ the reader accepts."""
    cases = {}
    for path in sorted((DATA / "expected").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if "error" not in case:
            cases[path.stem] = case
    return cases


def cli_args(case: dict[str, object]) -> list[str]:
    args = [str(case["input"]), "--dry-run", "--default-days", "30"]
    options = case.get("options", {})
    assert isinstance(options, dict)
    for key, value in options.items():
        if key == "no_header":
            args += ["--no-header"] if value else []
        elif key == "sheets":
            for sheet in value:
                args += ["--sheet", sheet]
        else:
            args += [FLAGS[key], str(value)]
    return args


def dry_run(case: dict[str, object]) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as reports:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "importer",
                "run",
                *cli_args(case),
                "--quiet",
                "--reports-dir",
                reports,
            ],
            cwd=DATA,
            check=True,
            stdout=subprocess.DEVNULL,
            env=dict(os.environ),
        )
        (run_dir,) = Path(reports).iterdir()
        with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as f:
            lines = list(csv.DictReader(f))
    return [
        [
            Path(line["source_file"]).name if name == "source_file" else line[name]
            for name in COLUMNS
        ]
        for line in lines
    ]


def main() -> None:
    for name, case in readable_cases().items():
        lines = dry_run(case)
        with (HERE / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(lines)
        print(f"{name}.csv: {len(lines)} lines")


if __name__ == "__main__":
    main()

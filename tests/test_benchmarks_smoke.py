"""The benchmark runner works end to end on a tiny file (benchmarks are not timed tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import phonenumbers
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _expected_valid(path: Path) -> set[str]:
    """The distinct valid Colombian numbers of a generated XLSX, judged here independently."""
    found: set[str] = set()
    sheet = openpyxl.load_workbook(path, read_only=True)["Clientes"]
    for (phone,) in sheet.iter_rows(min_row=2, min_col=2, max_col=2, values_only=True):
        try:
            number = phonenumbers.parse(str(phone or ""), "CO")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            found.add(phonenumbers.national_significant_number(number))
    return found


def test_runner_times_both_programs_and_writes_the_report(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    argv = [
        "--rows",
        "250",
        "--rounds",
        "1",
        "--batch-size",
        "100",
        "--baseline-requests",
        "5",
        "--only",
        "xlsx-import",  # the import path: simulators, sending, gaps (a few seconds)
        "--data-dir",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(output),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = output.read_text(encoding="utf-8")

    valid = len(_expected_valid(tmp_path / "data" / "numbers-250.xlsx"))
    assert 200 < valid < 250  # ~3% invalid and ~5% duplicates among 250 rows
    assert (
        f"- passed: xlsx-import: the tool and the reference find the same {valid:,} valid numbers"
    ) in report
    assert re.search(r"^\| xlsx-import \| 250 \| [0-9.]+ \| [0-9.]+ \| ", report, re.MULTILINE)
    assert "**FAILED**" not in report
    assert "> **Reduced sizes** (xlsx-import: 250 rows)" in report
    # 3 batches of 100 give 2 gaps per tool import; the baseline client's 5 requests give 4
    assert "(2 gaps)" in report and "(4 gaps)" in report
    assert re.search(
        r"^\| 3\. tool's own cost per request .* \(batch 100: the floor is for 1000\)"
        r" \|$",
        report,
        re.MULTILINE,
    )

    results = json.loads((tmp_path / "work" / "results.json").read_text(encoding="utf-8"))
    runs = {(r["scenario"], r["program"]): r for r in results["runs"]}
    assert set(runs) == {("xlsx-import", "tool"), ("xlsx-import", "reference")}
    assert all(r["exit_code"] == 0 and r["wall"] > 0 and r["peak_mib"] > 10 for r in runs.values())
    assert len(runs["xlsx-import", "tool"]["gaps"]) == 2
    assert len(results["baseline_gaps"]) == 4


def test_a_difference_in_the_valid_sets_is_named_with_examples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.run import compare_sets

    assert compare_sets("csv-dry-run", {"3001234567"}, {"3001234567"}) is None
    tool, reference = {"3001234567", "6012345678"}, {"3001234567", "3019999999"}
    assert compare_sets("csv-dry-run", tool, reference) == (
        "csv-dry-run: the valid sets differ: 1 only in the tool (e.g. ['6012345678']), "
        "1 only in the reference (e.g. ['3019999999'])"
    )


def test_the_profile_stages_name_functions_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renamed stage function would print as "not called": the names must follow the code."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.profile_stages import STAGES, missing_functions

    assert missing_functions() == []
    assert len(STAGES) > 10


def test_a_measured_program_does_not_inherit_the_runners_peak(tmp_path: Path) -> None:
    """Linux carries a process's peak RSS across fork and exec: a program forked from a big
    runner would report the runner's size as its own peak. ``measure`` forks it from a small
    launcher instead: a program that holds next to nothing reports next to nothing."""
    from benchmarks.run import measure

    held = bytearray(200 * 1024 * 1024)  # this process, as the runner after a big round
    for at in range(0, len(held), 4096):
        held[at] = 1
    wall, peak, code = measure([sys.executable, "-I", "-c", "pass"], {}, tmp_path / "tiny")
    del held
    assert code == 0 and 0 < wall < 30
    assert peak < 60, f"a bare interpreter measured {peak:.0f} MiB: the runner's peak leaked in"
    wall, peak, code = measure(
        [sys.executable, "-I", "-c", "import sys; b = bytearray(80 << 20); sys.exit(3)"],
        {},
        tmp_path / "big",
    )
    assert code == 3 and peak >= 80  # its own peak and exit code are measured
    _, _, code = measure(
        [sys.executable, "-I", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        {},
        tmp_path / "killed",
    )
    assert code == -9  # a signal stays a signal, as subprocess reports it

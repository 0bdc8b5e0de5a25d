"""A run that takes the bulk path writes exactly the reports of the row-at-a-time path.

Through the CLI, ``DNC_IMPORT_BULK_BYTES=0`` makes any run take the bulk path (columns, the
column validator, the duplicates found in the columns, the second process storing the lines
of a sending run, the reports written from the columns); the default takes the row path for
these small files.
Every report file must be the same bytes (summary.json but its times, run id and folder), for
dry runs over the sample data and the test gallery, and for a run that sends to the simulator
(where the lines sending changed are read back from the journal).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from importer import line_loader
from importer.cli import cli
from importer.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RUN_ID = re.compile(rb"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
GALLERY = [
    f"tests/data/{name}"
    for name in ("cp1252_spanish.csv", "multiline_cells.csv", "utf8_comma.csv",
                 "utf8_bom_semicolon.csv", "pipe.txt", "tab.tsv", "sep_hint.csv",
                 "excel_unicode_text.txt", "numeric.xlsx", "sheets.xlsx", "formula_cached.xlsx",
                 "legacy.xls", "calc.ods", "really_xlsx.csv")
]  # fmt: skip


def _reports(folder: Path) -> dict[str, bytes]:
    """Every report of the one run in ``folder``, run-specific values blanked."""
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    found: dict[str, bytes] = {}
    for name in ("outcomes.csv", "errors.csv"):
        found[name] = (run_dir / name).read_bytes()
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    for key in ("run_id", "started", "finished", "timings"):
        summary.pop(key)
    summary["reports"].pop("dir")
    summary["settings"]["report"].pop("reports_dir")
    summary["settings"].pop("ledger")  # each run has a state folder of its own
    for key in ("url", "lock_key"):  # and a simulator of its own
        summary["settings"].get("send", {}).pop(key, None)
    found["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    if (run_dir / "outcomes.xlsx").exists():
        with zipfile.ZipFile(run_dir / "outcomes.xlsx") as book:
            for name in book.namelist():
                found[name] = RUN_ID.sub(b"RUN", book.read(name))
    return found


def _both(
    tmp_path: Path,
    args: Sequence[str],
    env: dict[str, str] | None = None,
    per_run: Callable[[], list[str]] = list,
) -> None:
    """Run ``args`` by both paths (``per_run()``: more arguments for each run) and compare."""
    results = {}
    for path, bulk in (("rows", None), ("bulk", "0")):
        extra = {"DNC_IMPORT_STATE_DIR": str(tmp_path / path / "state")}
        if bulk:
            extra["DNC_IMPORT_BULK_BYTES"] = bulk
        reports = tmp_path / path / "reports"
        outcome = CliRunner().invoke(
            cli,
            ["run", *args, *per_run(), "--reports-dir", str(reports)],
            env={**(env or {}), **extra},
        )
        assert outcome.exit_code in (0, 1), outcome.output
        results[path] = _reports(reports)
    assert results["bulk"].keys() == results["rows"].keys()
    for name, data in results["rows"].items():
        assert results["bulk"][name] == data, name


@pytest.fixture(scope="module", autouse=True)
def _benchmark_files() -> None:
    """The 300-row benchmark inputs (git-ignored): generated, deterministically, when missing."""
    from benchmarks import generate

    generate.ensure("csv", 300, ROOT / "benchmarks" / "data")
    generate.ensure("xlsx", 300, ROOT / "benchmarks" / "data")


@pytest.fixture(autouse=True)
def _second_process_for_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_loader, "SECOND_PROCESS_LINES", 1)
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    "args",
    [
        ["sample_data/clientes_bogota.csv", "sample_data/crm_export.xlsx"],
        ["sample_data/crm_export.xlsx", "--number-form", "e164", "--allow-foreign"],
        [
            "benchmarks/data/numbers-300.csv",
            "--xlsx",
            "--number-form",
            "international",
            "--dial-prefix",
            "9",
        ],
        ["benchmarks/data/numbers-300.xlsx", "--default-days", "30", "--max-days", "100"],
        [*GALLERY, "--default-days", "7"],
        ["tests/data/two_phone_columns.csv", "--default-days", "7", "--region", "MX"],
    ],
)
def test_dry_runs_write_the_same_reports(tmp_path: Path, args: list[str]) -> None:
    _both(tmp_path, [*args, "--dry-run"])


def test_a_sending_run_writes_the_same_reports(
    tmp_path: Path, simulator: Callable[..., Simulator], sim_token: str
) -> None:
    """Each run sends to a simulator of its own (a fresh list)."""
    args = ["benchmarks/data/numbers-300.xlsx", "sample_data/clientes_bogota.csv",
            "--batch-size", "40"]  # fmt: skip
    _both(
        tmp_path,
        args,
        env={"WOLKVOX_TOKEN": sim_token},
        per_run=lambda: ["--base-url", simulator(token=sim_token).base_url],
    )


def test_the_bulk_path_leaves_pandas_unimported() -> None:
    """pyarrow would import pandas (~0.4 s, ~35 MB) on its first conversion of a Python value;
    ``pyarrow_without_pandas`` keeps it from looking, and pandas stays importable after."""
    script = (
        "import sys\n"
        "from importer.columns import pyarrow_without_pandas\n"
        "pyarrow_without_pandas()\n"
        "import pyarrow as pa, pyarrow.compute as pc\n"
        "pc.add(pa.array([1, 2]), 3); pa.array(['x']); pa.scalar(1.5)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
        "assert pa.table({'a': [1]}).to_pandas()['a'].tolist() == [1]\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr

"""The chaos battery (benchmarks/chaos.py) works end to end on a small import, and the simulator
gives it what it needs: which numbers each request stored, and a new day for the quota.

The battery itself (100,000 numbers, several seeds) is a separate command, see
docs/RELIABILITY.md: ``.venv/bin/python -m benchmarks.chaos --seeds 1,2,3 --numbers 100000``.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from importer.journal import Journal
from importer.model import BatchResult, Outcome, ServerTotals, Status
from importer.simulator import Faults, SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the root out
    sys.path.insert(0, str(ROOT))

from benchmarks.chaos import Driver, plan_for, run_seed
from benchmarks.chaos_checks import TOKEN, check, write_input
from benchmarks.cli_runs import read_lines

StartSim = Callable[..., Simulator]


def post(sim: Simulator, *phones: str) -> httpx.Response:
    rows = [{"telephone": phone, "days_block": "30"} for phone in phones]
    return httpx.post(sim.add_dnc_url, headers={"wolkvox-token": "t"}, json=rows, timeout=10)


def test_each_request_says_which_numbers_it_stored(simulator: StartSim) -> None:
    sim = simulator(token="t", faults=Faults(drop_after_rate=1.0), reject_patterns=("999$",))
    try:
        post(sim, "3001234567", "3001234999")
    except httpx.HTTPError:
        pass  # the answer was dropped after the numbers were stored
    [record] = sim.requests()
    assert (record.outcome, record.stored) == ("drop-after", ("3001234567",))


def test_refused_requests_stored_nothing_and_a_new_day_resets_the_quota(
    simulator: StartSim,
) -> None:
    sim = simulator(token="t", daily_quota=1)
    assert post(sim, "3001234567").status_code == 200
    assert post(sim, "3001234568").json()["msg"] == "TOKEN LIMIT EXCEEDED"
    sim.new_day()
    assert post(sim, "3001234568").status_code == 200
    assert [(r.outcome, r.stored) for r in sim.requests()] == [
        ("added", ("3001234567",)),
        ("quota", ()),
        ("added", ("3001234568",)),
    ]
    assert sim.quota_used == 1


def test_a_small_chaos_run_passes_every_check(tmp_path: Path) -> None:
    """300 numbers, every fault, a maintenance window, a small quota and one SIGTERM."""
    plan = plan_for(seed=2, numbers=300, batch_size=20, kills=1)
    verdict = run_seed(plan, tmp_path)
    figures = verdict.figures
    assert verdict.problems == []
    assert (figures["lost"], figures["overlaps"], figures["valid"]) == (0, 0, 300)
    assert figures["added"] + figures["uncertain"] == 300
    assert figures["faults_total"] >= 5 and figures["faults"]["maintenance"] >= 6
    assert len(figures["invocations"]) >= 2  # stopped, then resumed
    assert figures["files_searched_for_the_token"] > 5


def test_the_command_prints_the_table_and_saves_the_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--seeds", "3", "--numbers", "60",
         "--batch-size", "20", "--kills", "0", "--json", str(tmp_path / "chaos.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| seed | numbers | requests | faults injected |" in done.stdout
    assert done.stdout.endswith("chaos: every check passed\n")
    saved = json.loads((tmp_path / "chaos.json").read_text(encoding="utf-8"))
    [result] = saved["results"]
    assert (result["seed"], result["lost"], result["problems"]) == (3, 0, [])
    assert saved["plans"][0]["faults"]["maintenance_calls"] == result["maintenance_calls"]


def test_the_checks_catch_a_number_the_reports_lost(tmp_path: Path) -> None:
    """The checks are not vacuous: one added line turned back to ready is a lost number."""
    plan = plan_for(seed=4, numbers=80, batch_size=20, kills=0)
    source = write_input(tmp_path / "numeros.csv", 80, random.Random(4))
    with Simulator(SimConfig(token=TOKEN, daily_quota=1000)) as sim:
        driver = Driver(plan, sim, source.path, tmp_path)
        run_dir = driver.drive()
    assert run_dir is not None
    assert check(source, run_dir, sim, driver.invocations, tmp_path).problems == []

    lines = read_lines(run_dir)
    victim = next(line for line in lines if line["status"] == "added")
    victim["status"] = "ready"
    with (run_dir / "outcomes.csv").open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    problems = check(source, run_dir, sim, driver.invocations, tmp_path).problems
    assert "by_status != lines" in problems
    assert f"1 valid numbers lost, e.g. ['{victim['telephone']}']" in problems


def test_settling_many_batches_at_once_is_not_quadratic(tmp_path: Path) -> None:
    """A stop (quota, maintenance, SIGTERM) after many batches settles every verdict at once.

    Found by the chaos battery: the resume of seed 1 sat in ``Journal._settle`` for minutes.
    5,000 lines in 100 batches take ~3 s with the quadratic plan, milliseconds without.
    """
    outcomes = (
        Outcome("a.csv", "", i + 2, 1, str(3001000000 + i), "30", str(3001000000 + i), 30,
                Status.READY, "valid", "valid CO mobile number")
        for i in range(5000)
    )  # fmt: skip
    meta = {"state": "sending"}
    with Journal.create(
        tmp_path / "journal.sqlite", run_id="20261128T083102Z-3f9a1c", meta=meta
    ) as journal:
        journal.add_outcomes(outcomes)
        journal.ready_to_send()
        items = list(journal.items())
        for number, start in enumerate(range(0, len(items), 50), 1):
            chunk = items[start : start + 50]
            journal.begin_batch(number, chunk)
            totals = ServerTotals(added=len(chunk), rejected=0, sent=len(chunk))
            journal.record_batch(BatchResult(number, chunk, Status.ADDED, "added", "ok", totals))
        started = time.perf_counter()
        journal.settle()
        took = time.perf_counter() - started
        assert journal.counts_by_status()["added"] == 5000
    assert took < 1.0, f"settling 100 batches of 50 took {took:.2f} s"

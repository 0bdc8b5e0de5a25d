"""The chaos battery of issue 6: a big import against a simulator that misbehaves in every way.

    .venv/bin/python -m benchmarks.chaos --seeds 1,2,3 --numbers 100000

Per seed, over real HTTP on loopback: a ``telefono;dias`` CSV of ``--numbers`` distinct valid
Colombian mobiles (some written ``+57 300 123 4567`` or ``(300) 123-4567``, 1% of the cells
holding two numbers, 1% repeated on a later row with other days, 1% invalid rows, 1% rows whose
days are invalid) is imported by the real CLI (``python -m importer run``, a subprocess)
into the simulator, with every fault it has turned on, each drawn per call from the seed:
5xx, 429 with Retry-After, connections dropped before and after the numbers are stored, 200s
whose body is not JSON, spurious "simultaneous" 403s, latency spikes, a maintenance window
longer than the retries (so the run stops) and a daily quota smaller than the job (so the run
stops). ``--kills`` more times a SIGKILL or a SIGTERM lands at a random moment (a delay after
the start, or after some requests). Every stop is finished by ``dnc-import resume`` (the quota
resets first when the quota stopped it; a run killed before its rows were in its journal is
started again), until the run says it finished.

Then it checks, and prints one table row per seed (exit 1 if any check failed):

- nothing lost: every valid number is on the simulator's list with the days of its kept line
  (status ``added``, or ``skipped`` as ``already-blocked`` when the ledger kept a confirmation
  the journal missed), or its line is ``uncertain``/``failed``/``not_sent`` with a reason;
  nothing outside the valid numbers ever reached the server;
- none stored twice, except the numbers of a request whose answer never came (``drop-after``)
  and, per crash, at most the one batch that was in flight;
- zero overlapping requests (the simulator's count, and its request times);
- the reports reconcile: one outcome line per input row and part, summary counts equal to the
  lines by status and by reason, errors.csv holding exactly the lines that need attention,
  and the calls the summaries report equal to the requests the server saw;
- the token is in no file the runs left (reports, journal, run.log, ledger, locks, stderr), and
  run.log shows no whole phone number.

Options: ``--seeds 1,2,3``, ``--numbers 100000``, ``--batch-size 250``, ``--kills 3``,
``--json FILE`` (every seed's figures and plan), ``--keep DIR`` (keep each seed's folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_checks import TOKEN, Invocation, Verdict, check, write_input
from benchmarks.cli_runs import (
    finish,
    in_flight,
    journal_state,
    read_summary,
    run_dirs,
    start_cli,
    wait_until,
)
from importer.simulator import Faults, SimConfig, Simulator

MAX_INVOCATIONS = 40
TIMEOUT = 1200.0
"""Seconds one CLI process may take before the battery gives up on it."""


# --- the plan of one seed ---------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """One crash: ``signum`` once ``seconds`` passed, or once ``calls`` more requests came."""

    signum: int
    seconds: float | None = None
    calls: int | None = None


@dataclass(frozen=True)
class Plan:
    seed: int
    numbers: int
    batch_size: int
    retries: int
    max_wait: float
    faults: Faults
    quota: int
    kills: tuple[Kill, ...]


def plan_for(seed: int, numbers: int, batch_size: int, kills: int) -> Plan:
    """Fault rates, a maintenance window, a quota and crash moments, all drawn from the seed."""
    rng = random.Random(f"chaos:{seed}")
    retries = 5
    batches = math.ceil(numbers / batch_size)
    window = rng.randint(2, max(2, batches // 2))
    faults = Faults(
        latency=0.002,
        spike_rate=rng.uniform(0.02, 0.04),
        spike_latency=rng.uniform(0.5, 1.0),
        error_5xx_rate=rng.uniform(0.05, 0.10),
        rate_429=rng.uniform(0.03, 0.07),
        retry_after=rng.uniform(0.1, 0.3),
        drop_rate=rng.uniform(0.03, 0.06),
        drop_after_rate=rng.uniform(0.02, 0.04),
        garbage_rate=rng.uniform(0.005, 0.015),
        simultaneous_rate=rng.uniform(0.02, 0.04),
        maintenance_calls=(window, window + retries + 1 + rng.randint(0, 2)),
    )
    calls = batches * 1.5 + retries
    longest = 1.0 + numbers / 20_000  # reading 100,000 rows takes a few seconds
    crashes = tuple(_kill(rng, longest, batches) for _ in range(kills))
    return Plan(
        seed=seed,
        numbers=numbers,
        batch_size=batch_size,
        retries=retries,
        max_wait=0.3,
        faults=faults,
        quota=max(3, int(calls * rng.uniform(0.4, 0.7))),
        kills=crashes,
    )


def _kill(rng: random.Random, longest: float, batches: int) -> Kill:
    """A crash after a random delay (often while reading) or after some requests."""
    signum = rng.choice((signal.SIGKILL, signal.SIGTERM))
    seconds = rng.uniform(0.5, longest) if rng.random() < 0.5 else None
    calls = rng.randint(1, max(1, batches // 3))
    return Kill(signum, seconds=seconds) if seconds is not None else Kill(signum, calls=calls)


# --- driving the CLI --------------------------------------------------------------------------


class Driver:
    """Runs the import, then resumes it until it finishes, killing it as the plan says."""

    def __init__(self, plan: Plan, sim: Simulator, source: Path, work: Path) -> None:
        self.plan, self.sim, self.source, self.work = plan, sim, source, work
        self.reports = work / "reports"
        self.env = {
            **os.environ,
            "WOLKVOX_TOKEN": TOKEN,
            "DNC_IMPORT_STATE_DIR": str(work / "state"),
        }
        self.invocations: list[Invocation] = []
        self.abandoned: list[Path] = []
        """Run folders killed before their rows were all in the journal (nothing sent)."""
        self.quota_days = 1
        self.failure = ""
        self.oddities: list[str] = []
        """Stops the battery did not cause that wrote no summary (an unexpected error)."""

    def drive(self) -> Path | None:
        """The finished run's folder (None if it never finished)."""
        kills = list(self.plan.kills)
        run_dir: Path | None = None
        for _ in range(MAX_INVOCATIONS):
            before = set(run_dirs(self.reports))
            args = self._run_args() if run_dir is None else self._resume_args(run_dir)
            done = self._invoke(args, kills.pop(0) if kills else None)
            self.invocations.append(done)
            if run_dir is None:
                new = sorted(set(run_dirs(self.reports)) - before)
                run_dir = next((p for p in new if journal_state(p) not in (None, "loading")), None)
                self.abandoned += [p for p in new if p != run_dir]
            self._wait_idle()
            if done.exit_code == 3 and done.summary is None and not done.killed:
                self.oddities.append(f"{done.command} exited 3, no summary: {done.stderr_tail}")
                if len(self.oddities) >= 3:
                    self.failure = "3 stops the battery did not cause: see the next lines"
                    return None
            if done.exit_code not in (0, 1, 3) and not done.killed:
                self.failure = f"{done.command} exited {done.exit_code}: {done.stderr_tail}"
                return None
            if run_dir is None:
                continue
            if done.exit_code in (0, 1) and journal_state(run_dir) == "finished":
                return run_dir
            stopped = (done.summary or {}).get("stopped") or {}
            if stopped.get("reason") == "quota-exhausted":
                self.sim.new_day()
                self.quota_days += 1
        return None

    def _run_args(self) -> list[str]:
        plan = self.plan
        return [
            "run", str(self.source), "--base-url", self.sim.base_url,
            "--reports-dir", str(self.reports), "--batch-size", str(plan.batch_size),
            "--retries", str(plan.retries), "--max-wait", str(plan.max_wait),
            # its lost answers are dropped connections, whose request the simulator has ended
            "--lost-answer-wait", str(plan.max_wait), "--lock-wait", "60", "--quiet",
            # over its spikes (1 s at most); a kill mid-request makes the resume rest this long
            "--read-timeout", "5",
        ]  # fmt: skip

    def _resume_args(self, run_dir: Path) -> list[str]:
        return ["resume", run_dir.name, "--reports-dir", str(self.reports), "--quiet"]

    def _invoke(self, args: list[str], kill: Kill | None) -> Invocation:
        number = len(self.invocations) + 1
        err_path = self.work / f"invocation-{number}.stderr"
        started, wall, calls = time.monotonic(), time.time(), self.sim.calls
        with err_path.open("wb") as err:
            process = start_cli(
                args, cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=err
            )
            killed = ""
            if kill is not None:
                while process.poll() is None and not self._due(kill, started, calls):
                    time.sleep(0.005)
                if process.poll() is None:
                    process.send_signal(kill.signum)
                    killed = signal.Signals(kill.signum).name
            code, _, _ = finish(process, timeout=TIMEOUT)
        summary = self._fresh_summary(wall)
        tail = err_path.read_text(encoding="utf-8", errors="replace")[-600:]
        seconds = round(time.monotonic() - started, 2)
        return Invocation(args[0], code, seconds, killed, summary, tail)

    def _due(self, kill: Kill, started: float, calls: int) -> bool:
        if kill.seconds is not None:
            return time.monotonic() - started >= kill.seconds
        return kill.calls is not None and self.sim.calls - calls >= kill.calls

    def _fresh_summary(self, since: float) -> dict[str, Any] | None:
        """The summary.json written by the last process (none if it wrote none)."""
        found = [p / "summary.json" for p in run_dirs(self.reports)]
        fresh = [p for p in found if p.is_file() and p.stat().st_mtime >= since]
        if not fresh:
            return None
        return read_summary(max(fresh, key=lambda p: p.stat().st_mtime).parent)

    def _wait_idle(self) -> None:
        """A request a killed process left in the server ends before the next process starts."""
        with contextlib.suppress(TimeoutError):  # the next process's checks will say so
            wait_until(lambda: not in_flight(self.sim), timeout=30, poll=0.01)


# --- one seed, many seeds ---------------------------------------------------------------------


def run_seed(plan: Plan, work: Path) -> Verdict:
    """Generate, import with every fault, resume until done, check. Nothing kept in ``work``."""
    started = time.monotonic()
    source = write_input(work / "numeros.csv", plan.numbers, random.Random(f"input:{plan.seed}"))
    config = SimConfig(token=TOKEN, daily_quota=plan.quota, seed=plan.seed, faults=plan.faults)
    sim = Simulator(config).start()
    try:
        driver = Driver(plan, sim, source.path, work)
        run_dir = driver.drive()
    finally:
        sim.stop()
    if run_dir is None:
        why = driver.failure or f"the run did not finish in {MAX_INVOCATIONS} invocations"
        verdict = Verdict([why])
    else:
        verdict = check(source, run_dir, sim, driver.invocations, work)
    verdict.problems += driver.oddities
    stops = Counter(
        ((done.summary or {}).get("stopped") or {}).get("reason", "")
        for done in driver.invocations
        if done.exit_code == 3 and not done.killed
    )
    verdict.figures.update(
        seed=plan.seed,
        numbers=plan.numbers,
        input_rows=source.rows,
        invocations=[
            f"{d.command}:{d.exit_code}{'/' + d.killed if d.killed else ''}"
            for d in driver.invocations
        ],
        crashes={
            name: sum(d.killed == name for d in driver.invocations)
            for name in ("SIGKILL", "SIGTERM")
        },
        stops=dict(stops),
        quota_days=driver.quota_days,
        abandoned_loading_runs=len(driver.abandoned),
        seconds=round(time.monotonic() - started, 1),
        quota=plan.quota,
        maintenance_calls=plan.faults.maintenance_calls,
    )
    return verdict


def _n(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as the Markdown table of docs/RELIABILITY.md."""
    head = (
        "| seed | numbers | requests | faults injected | crashes (KILL/TERM) | stops | "
        "resumes | added | uncertain | stored twice | overlaps | lost | time |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for f in rows:
        faults = ", ".join(f"{kind} {count}" for kind, count in f.get("faults", {}).items())
        stops = ", ".join(f"{reason} {count}" for reason, count in f["stops"].items())
        resumes = sum(entry.startswith("resume") for entry in f["invocations"])
        body += (
            f"| {f['seed']} | {_n(f['numbers'])} | {_n(f.get('requests'))} | "
            f"{_n(f.get('faults_total'))}: {faults} | "
            f"{f['crashes']['SIGKILL']}/{f['crashes']['SIGTERM']} | {stops or '-'} | {resumes} | "
            f"{_n(f.get('added'))} | {_n(f.get('uncertain'))} | {_n(f.get('stored_twice'))} | "
            f"{_n(f.get('overlaps'))} | {_n(f.get('lost'))} | {f['seconds']} s |\n"
        )
    return head + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--seeds", default="1,2,3", help="Comma-separated seeds (default 1,2,3).")
    parser.add_argument("--numbers", type=int, default=100_000, help="Valid numbers per seed.")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--kills", type=int, default=3, help="Crashes (SIGKILL/SIGTERM) per seed.")
    parser.add_argument("--json", type=Path, help="Also write every seed's figures here.")
    parser.add_argument("--keep", type=Path, help="Keep each seed's work folder under this one.")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    failed = False
    for seed in (int(text) for text in args.seeds.split(",") if text.strip()):
        plan = plan_for(seed, args.numbers, args.batch_size, args.kills)
        if args.keep is not None:
            work = args.keep / f"seed-{seed}"
            work.mkdir(parents=True, exist_ok=True)
            verdict = run_seed(plan, work)
        else:
            with tempfile.TemporaryDirectory(prefix="dnc-chaos-") as folder:
                verdict = run_seed(plan, Path(folder))
        figures = verdict.figures | {"problems": verdict.problems}
        results.append(figures)
        failed = failed or bool(verdict.problems)
        print(json.dumps(figures, default=str), flush=True)
        for problem in verdict.problems:
            print(f"seed {seed}: FAILED: {problem}", flush=True)
    print(table(results))
    if args.json is not None:
        plans = [
            asdict(plan_for(int(s), args.numbers, args.batch_size, args.kills))
            for s in args.seeds.split(",")
            if s.strip()
        ]
        args.json.write_text(
            json.dumps({"results": results, "plans": plans}, indent=2, default=str),
            encoding="utf-8",
        )
    print("chaos: FAILED" if failed else "chaos: every check passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

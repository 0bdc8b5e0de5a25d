"""The chaos battery's input and its checks: what a correct import must show, and whether it does.

``write_input`` writes the CSV and keeps its ground truth (judged here, not by the tool);
``check`` compares a finished run's reports, the simulator's list and every request it saw
with it. See ``benchmarks/chaos.py`` for the battery itself.
"""

from __future__ import annotations

import csv
import itertools
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

from benchmarks.cli_runs import read_lines, read_summary
from importer.simulator import Simulator

TOKEN = "chaos-token-Zr4-DISTINCT"
PREFIXES = tuple(
    [f"30{d}" for d in range(6)] + [f"31{d}" for d in range(10)] + ["320", "321", "322", "350"]
)
INVALID_PHONES = ("12345", "no tengo", "3,19123E+09", "300100000012345", "N/A")
BAD_DAYS = ("0", "-5", "quince", "2,5")
FLAGGED = frozenset({"uncertain", "failed", "not_sent"})
"""Statuses that say a person must check the number (with a reason)."""
ATTENTION = frozenset({"invalid", "rejected", "uncertain", "failed", "not_sent"})


# --- the input --------------------------------------------------------------------------------


@dataclass
class Input:
    """The CSV and what a correct import of it must show (judged here, not by the tool)."""

    path: Path
    valid: dict[str, int] = field(default_factory=dict)
    """Each distinct valid telephone (national digits) -> the days of its longest block."""
    lines: set[tuple[int, int]] = field(default_factory=set)
    """(row, part) of every outcome line the run must write."""
    rows: int = 0
    invalid_lines: int = 0


def _phone(rng: random.Random, taken: set[str]) -> str:
    while True:
        phone = rng.choice(PREFIXES) + f"{rng.randrange(10**7):07d}"
        if phone not in taken:
            taken.add(phone)
            return phone


def _written(phone: str, rng: random.Random) -> str:
    form = rng.random()
    if form < 0.8:
        return phone
    if form < 0.9:
        return f"+57 {phone[:3]} {phone[3:6]} {phone[6:]}"
    return f"({phone[:3]}) {phone[3:6]}-{phone[6:]}"


def write_input(path: Path, numbers: int, rng: random.Random) -> Input:
    """The CSV of ``numbers`` distinct valid numbers and some bad rows, and its expectations."""
    made = Input(path)
    taken: set[str] = set()
    rows: list[tuple[str, str]] = []
    kept: list[str] = []

    def add(cell: str, days: str, parts: int) -> None:
        rows.append((cell, days))
        made.lines.update((len(rows) + 1, part) for part in range(1, parts + 1))

    while len(made.valid) < numbers:
        days = rng.randint(1, 3650)
        first = _phone(rng, taken)
        if rng.random() < 0.01 and len(made.valid) + 2 <= numbers:
            second = _phone(rng, taken)
            add(f"{_written(first, rng)} / {_written(second, rng)}", str(days), 2)
            made.valid.update({first: days, second: days})
            kept += [first, second]
        else:
            add(_written(first, rng), str(days), 1)
            made.valid[first] = days
            kept.append(first)
        draw = rng.random()
        if draw < 0.01:
            add(rng.choice(INVALID_PHONES), str(days), 1)
            made.invalid_lines += 1
        elif draw < 0.02:
            add(_phone(rng, taken), rng.choice(BAD_DAYS), 1)
            made.invalid_lines += 1
        elif draw < 0.03:
            again = rng.choice(kept)
            days = rng.randint(1, 3650)
            add(_written(again, rng), str(days), 1)
            made.valid[again] = max(made.valid[again], days)
    for phone in rng.sample(kept, min(len(kept), 50)):  # the ground truth, checked
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone, "CO")), phone
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(("telefono", "dias"))
        writer.writerows(rows)
    made.rows = len(rows)
    return made


@dataclass
class Invocation:
    """One CLI process: what it was, how it ended, and its fresh summary.json (if it wrote one)."""

    command: str
    exit_code: int
    seconds: float
    killed: str = ""
    """The signal's name if the battery killed it."""
    summary: dict[str, Any] | None = None
    stderr_tail: str = ""


# --- the checks -------------------------------------------------------------------------------


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


def check(
    source: Input, run_dir: Path, sim: Simulator, invocations: list[Invocation], work: Path
) -> Verdict:
    """Every guarantee of the module docstring, on the finished run and the server."""
    verdict = Verdict()
    lines = read_lines(run_dir)
    summary = read_summary(run_dir)
    _check_reports(verdict, source, run_dir, lines, summary)
    _check_nothing_lost(verdict, source, lines, sim)
    _check_requests(verdict, sim, invocations)
    statuses = Counter(line["status"] for line in lines)
    verdict.figures.update(
        added=statuses["added"],
        uncertain=statuses["uncertain"],
        skipped=statuses["skipped"],
        failed=statuses["failed"],
        not_sent=statuses["not_sent"],
        invalid=statuses["invalid"],
        duplicate=statuses["duplicate"],
        final_exit=summary["exit_code"],
    )
    verdict.expect(summary["exit_code"] == (1 if statuses["uncertain"] else 0), "exit code")
    verdict.expect(
        summary["stopped"] is None, f"the last summary says stopped: {summary['stopped']}"
    )
    leaks = [path for path in sorted(work.rglob("*")) if _holds_token(path)]
    verdict.expect(not leaks, f"the token is in {[str(path) for path in leaks]}")
    verdict.figures["files_searched_for_the_token"] = sum(p.is_file() for p in work.rglob("*"))
    log = (run_dir / "run.log").read_text(encoding="utf-8").replace(run_dir.name, "")
    whole = re.findall(r"\d{7,}", log)
    verdict.expect(not whole, f"run.log shows whole numbers: {whole[:3]}")
    verdict.figures["log_lines"] = log.count("\n")
    return verdict


def _holds_token(path: Path) -> bool:
    """Whether a file holds the token (as UTF-8 or UTF-16), e.g. a report, journal, log, lock."""
    if not path.is_file() or path.is_symlink():
        return False
    data = path.read_bytes()
    return TOKEN.encode() in data or TOKEN.encode("utf-16-le") in data


def _check_reports(
    verdict: Verdict,
    source: Input,
    run_dir: Path,
    lines: list[dict[str, str]],
    summary: dict[str, Any],
) -> None:
    keys = [(int(line["row"]), int(line["part"])) for line in lines]
    verdict.expect(len(keys) == len(set(keys)), "a (row, part) has two outcome lines")
    missing, extra = source.lines - set(keys), set(keys) - source.lines
    verdict.expect(not missing and not extra, f"lines missing {len(missing)}, extra {len(extra)}")
    counts = summary["counts"]
    by_status = {key: value for key, value in counts["by_status"].items() if value}
    verdict.expect(counts["lines"] == len(lines), "summary lines != outcome lines")
    verdict.expect(sum(counts["by_status"].values()) == len(lines), "by_status does not add up")
    verdict.expect(by_status == Counter(line["status"] for line in lines), "by_status != lines")
    verdict.expect(
        counts["by_reason"] == Counter(line["reason"] for line in lines), "by_reason != lines"
    )
    verdict.expect(counts["rows"] == source.rows, f"rows {counts['rows']} != {source.rows}")
    attention = sum(line["status"] in ATTENTION for line in lines)
    verdict.expect(len(read_lines(run_dir, "errors.csv")) == attention, "errors.csv != attention")
    invalid = sum(line["status"] == "invalid" for line in lines)
    verdict.expect(
        invalid == source.invalid_lines, f"{invalid} invalid lines, expected {source.invalid_lines}"
    )


def _check_nothing_lost(
    verdict: Verdict, source: Input, lines: list[dict[str, str]], sim: Simulator
) -> None:
    listed = sim.dnc_list()
    kept = {
        line["telephone"]: line for line in lines if line["status"] not in ("duplicate", "invalid")
    }
    lost, wrong_days = [], []
    for telephone, days in source.valid.items():
        line = kept.get(telephone)
        if line is None:
            lost.append(telephone)
        elif line["status"] in ("added", "skipped"):
            # skipped: the ledger had this run's own confirmation that the journal missed
            # (a stop between the two): it must be on the list all the same
            if telephone not in listed or line["reason"] not in ("added", "already-blocked"):
                lost.append(telephone)
            elif listed[telephone] != days or int(line["days_block"]) != days:
                wrong_days.append(telephone)
        elif not (line["status"] in FLAGGED and line["reason"] and line["message"]):
            lost.append(telephone)
    outside = set(sim.received()) - set(source.valid)
    verdict.figures.update(lost=len(lost), valid=len(source.valid))
    verdict.expect(not lost, f"{len(lost)} valid numbers lost, e.g. {lost[:3]}")
    verdict.expect(not wrong_days, f"{len(wrong_days)} listed with other days: {wrong_days[:3]}")
    verdict.expect(not outside, f"{len(outside)} numbers sent that were not valid input")
    verdict.expect(
        set(kept) == set(source.valid), "the kept lines are not exactly the valid numbers"
    )


def _check_requests(verdict: Verdict, sim: Simulator, invocations: list[Invocation]) -> None:
    records = sorted(sim.requests(), key=lambda record: record.call)
    storings: dict[str, list[tuple[int, str]]] = {}
    for record in records:
        for telephone in record.stored:
            storings.setdefault(telephone, []).append((record.call, record.outcome))
    unexplained = {
        call
        for stored in storings.values()
        for call, outcome in stored[:-1]
        if outcome != "drop-after"
    }
    kills = sum(bool(done.killed) for done in invocations)
    twice = sum(len(stored) > 1 for stored in storings.values())
    verdict.expect(
        len(unexplained) <= kills,
        f"{len(unexplained)} requests stored numbers sent again, but only {kills} crashes",
    )
    overlaps = sum(b.start < a.end for a, b in itertools.pairwise(records))
    verdict.expect(sim.violations == 0 and overlaps == 0, f"{sim.violations} overlaps")
    verdict.expect(sim.max_in_flight <= 1, f"{sim.max_in_flight} requests at once")
    verdict.expect(sim.calls == len(records), "a request never ended in the server")
    reported = [done.summary for done in invocations]
    if all(summary is not None for summary in reported):
        calls = sum((summary or {}).get("sending", {}).get("calls", 0) for summary in reported)
        verdict.expect(
            calls == sim.calls, f"summaries report {calls} calls, server saw {sim.calls}"
        )
    outcomes = Counter(record.outcome for record in records)
    spikes = sum(r.end - r.start >= sim.config.faults.spike_latency for r in records)
    faults = {kind: count for kind, count in sorted(outcomes.items()) if kind != "added"}
    verdict.figures.update(
        requests=sim.calls,
        faults=faults | {"latency-spike": spikes},
        faults_total=sum(faults.values()) + spikes,
        stored_twice=twice,
        resent_after_crash=len(unexplained),
        overlaps=sim.violations + overlaps,
    )

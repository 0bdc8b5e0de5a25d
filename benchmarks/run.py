"""Time dnc-import against the reference script, as whole processes, and write BENCHMARKS.md.

    python -m benchmarks.run                                   # full sizes, 3 rounds
    python -m benchmarks.run --csv-rows 100000 --xlsx-rows 20000 --rounds 1

Two scenarios, each run by both programs on the same file, alternating which goes first:

- ``xlsx-import``: the XLSX, a full import against the simulator (batch 1000), all reports;
- ``csv-dry-run``: the CSV, ``--dry-run``, all reports.

Each program runs as its own process (``sys.executable``), timed from spawn to exit;
its peak memory is the ``ru_maxrss`` that ``os.wait4`` returns for it (the largest of it and its
children, each counted alone), forked from a small launcher (``benchmarks/peak.py``: forked from
the runner, a program would start with the runner's own peak). Each
import is given a fresh simulator (fresh SQLite list) in another process
(``benchmarks.simserver``) so that the server never shares the GIL with the measured process.
The tool's modules are compiled to bytecode first (``compile_tool``), as installing it does.

Honesty checks (any failure makes the exit code 1 and is listed in BENCHMARKS.md): both programs
exit 0; in round 1 the tool's telephones with status ready/added are exactly the reference's
valid telephones; after an import the simulator's list holds exactly the numbers sent, every
call was answered "added", and the tool never had two requests in flight.

The tool's own cost per request (floor 3) comes from the server's clock: for consecutive
requests, the gap between the moment the server decided one answer and the moment it started
judging the next (its body already read) is the client's work (parse the answer, commit the
batch to the journal, build and encode the next body, httpx) plus the HTTP framing on both
sides and loopback, plus whatever of the work the tool does while a request is in flight
(reading the next batch) outlasts the server's own time on that request. That mean gap is an
upper bound of the tool's own cost. A no-work client
(``http.client``, one pre-encoded body sent again and again) measures the framing alone; the
difference is the estimate.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import http.client
import itertools
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from benchmarks import generate
from benchmarks.report import BATCH_SIZE, Results, Run, Scenario, load_average, render

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "reference.py"
PEAK = Path(__file__).resolve().parent / "peak.py"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TOKEN = "bench-token-5f0c1e7a"
VALID_STATUSES = frozenset({"ready", "added"})
BASELINE_REQUESTS = 200
PROGRAMS = ("tool", "reference")


class BenchError(Exception):
    """The benchmark could not run (not a failed check: those are collected)."""


# -- measuring a process ------------------------------------------------------------------


def measure(cmd: Sequence[str], env: dict[str, str], log_stem: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of ``cmd``, its output in ``log_stem.out/.err``.

    ``cmd`` is forked by ``benchmarks/peak.py``, a small process of its own, which times it and
    takes its ``ru_maxrss``: forked from this one it would start with this process's peak (see
    there)."""
    measured = log_stem.with_suffix(".peak")
    launcher = [sys.executable, "-I", str(PEAK), str(measured), *cmd]
    with (
        log_stem.with_suffix(".out").open("wb") as out,
        log_stem.with_suffix(".err").open("wb") as err,
    ):
        proc = subprocess.run(
            launcher, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=ROOT,
            check=False,
        )  # fmt: skip
    try:
        wall, peak_kib, code = measured.read_text(encoding="ascii").split()
    except (OSError, ValueError) as exc:
        raise BenchError(
            f"{cmd[0]} was not measured (launcher exit {proc.returncode}, {exc}): see "
            f"{log_stem}.err"
        ) from exc
    return float(wall), int(peak_kib) / 1024, int(code)


@dataclass
class SimHandle:
    base_url: str
    add_dnc_url: str
    stats_path: Path

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.stats_path.read_text(encoding="utf-8")))


@contextmanager
def simulator(stats_path: Path) -> Iterator[SimHandle]:
    """A fresh simulator process; its stats file is written once the block ends."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.simserver",
        "--token",
        TOKEN,
        "--stats",
        str(stats_path),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    stdin, stdout = cast(IO[bytes], proc.stdin), cast(IO[bytes], proc.stdout)
    try:
        line = stdout.readline()
        if not line:
            raise BenchError(f"the simulator did not start (exit {proc.wait()}): run {cmd}")
        info = json.loads(line)
        yield SimHandle(info["base_url"], info["add_dnc_url"], stats_path)
    finally:
        stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stdout.close()


def request_gaps(requests: list[dict[str, Any]]) -> list[float]:
    """Seconds between the server deciding one answer and starting on the next request."""
    ordered = sorted(requests, key=lambda r: float(r["start"]))
    return [float(b["start"]) - float(a["end"]) for a, b in itertools.pairwise(ordered)]


def baseline_gaps(
    work: Path, count: int = BASELINE_REQUESTS, batch_size: int = BATCH_SIZE
) -> list[float]:
    """The gaps of a client that does nothing but resend one pre-encoded body."""
    body = json.dumps(
        [{"telephone": f"300{i:07d}", "days_block": "30"} for i in range(batch_size)]
    ).encode()
    headers = {"wolkvox-token": TOKEN, "Content-Type": "application/json"}
    with simulator(work / "baseline.sim.json") as sim:
        url = urlsplit(sim.add_dnc_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
        try:
            for _ in range(count):
                conn.request("POST", f"{url.path}?{url.query}", body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    raise BenchError(f"the baseline client got HTTP {answer.status}")
        finally:
            conn.close()
    return request_gaps(sim.stats()["requests"])


# -- one run of each program --------------------------------------------------------------


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WOLKVOX_TOKEN": TOKEN,
        "DNC_IMPORT_STATE_DIR": str(work / "state"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def run_tool(sc: Scenario, rnd: int, work: Path, results: Results) -> set[str]:
    """One tool run; returns its ready/added telephones."""
    label = f"{sc.name}-r{rnd}-tool"
    reports = work / label
    cmd = [
        sys.executable,
        "-m",
        "importer",
        "run",
        str(sc.path),
        "--reports-dir",
        str(reports),
        "--quiet",
        "--batch-size",
        str(results.batch_size),
    ]
    server: dict[str, Any] | None = None
    if sc.send:
        with simulator(work / f"{label}.sim.json") as sim:
            wall, peak, code = measure([*cmd, "--base-url", sim.base_url], _env(work), work / label)
        server = sim.stats()
    else:
        wall, peak, code = measure([*cmd, "--dry-run"], _env(work), work / label)
    run = Run(sc.name, "tool", rnd, wall, peak, code)
    results.runs.append(run)
    if code != 0:
        results.failures.append(
            f"{label}: the tool exited {code}: {_tail(work / (label + '.err'))}"
        )
        return set()
    run_dirs = [p for p in reports.iterdir() if p.is_dir()]
    if len(run_dirs) != 1:
        raise BenchError(f"{reports} should hold one run folder, found {len(run_dirs)}")
    summary = json.loads((run_dirs[0] / "summary.json").read_text(encoding="utf-8"))
    run.timings = stage_timings(summary)
    telephones = read_telephones(run_dirs[0] / "outcomes.csv", status_column="status")
    if server is not None:
        run.gaps = request_gaps(server["requests"])
        check_server(label, server, len(telephones), results, tool=True)
    return telephones


def run_reference(sc: Scenario, rnd: int, work: Path, results: Results) -> set[str]:
    """One reference run; returns its valid telephones."""
    label = f"{sc.name}-r{rnd}-reference"
    out = work / f"{label}.csv"
    cmd = [
        sys.executable,
        str(REFERENCE),
        str(sc.path),
        "--out",
        str(out),
        "--batch-size",
        str(results.batch_size),
    ]
    server: dict[str, Any] | None = None
    if sc.send:
        with simulator(work / f"{label}.sim.json") as sim:
            wall, peak, code = measure([*cmd, "--url", sim.add_dnc_url], _env(work), work / label)
        server = sim.stats()
    else:
        wall, peak, code = measure([*cmd, "--dry-run"], _env(work), work / label)
    results.runs.append(Run(sc.name, "reference", rnd, wall, peak, code))
    if code != 0:
        results.failures.append(
            f"{label}: the reference exited {code}: {_tail(work / (label + '.err'))}"
        )
        return set()
    telephones = read_telephones(out, status_column=None)
    if server is not None:
        check_server(label, server, len(telephones), results, tool=False)
    return telephones


def stage_timings(summary: dict[str, Any]) -> dict[str, float]:
    """``summary["timings"]`` flattened to stage -> seconds; {} when the tool has none."""
    found: dict[str, float] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            found[prefix] = float(value)
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)

    walk("", summary.get("timings"))
    return found


def read_telephones(path: Path, status_column: str | None) -> set[str]:
    """Non-empty ``telephone`` values (with status ready/added when a status column is named)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        return {
            row["telephone"]
            for row in reader
            if row["telephone"] and (status_column is None or row[status_column] in VALID_STATUSES)
        }


def check_server(
    label: str, server: dict[str, Any], valid: int, results: Results, tool: bool
) -> None:
    outcomes = {r["outcome"] for r in server["requests"]}
    if server["listed"] != valid:
        results.failures.append(
            f"{label}: the simulator's list holds {server['listed']} numbers, "
            f"the program reports {valid} valid"
        )
    if outcomes - {"added"}:
        results.failures.append(f"{label}: calls answered {sorted(outcomes - {'added'})}")
    if tool and server["violations"]:
        results.failures.append(f"{label}: {server['violations']} requests overlapped")


def compare_sets(scenario: str, tool: set[str], reference: set[str]) -> str | None:
    """None when equal, else a failure line with a few examples of each difference."""
    if tool == reference:
        return None
    only_tool, only_ref = sorted(tool - reference), sorted(reference - tool)
    return (
        f"{scenario}: the valid sets differ: {len(only_tool)} only in the tool "
        f"(e.g. {only_tool[:5]}), {len(only_ref)} only in the reference "
        f"(e.g. {only_ref[:5]})"
    )


# -- the whole run ------------------------------------------------------------------------


def compile_tool() -> None:
    """Compile the tool's modules to bytecode (``importer/__pycache__``, git-ignored), as
    installing it does, before any is timed.

    The measured processes run with ``PYTHONDONTWRITEBYTECODE=1`` (so does this machine's
    shell): without this, each run of the tool compiled its ~30 modules from source again
    (~0.3 s), which an installed tool never does. The reference script is a script: Python
    compiles it on every run either way (it is 100 lines), and pandas and the rest of
    site-packages were compiled when installed.
    """
    if not compileall.compile_dir(ROOT / "importer", quiet=1):
        raise BenchError(f"the tool's modules in {ROOT / 'importer'} do not compile")


def run_all(results: Results, work: Path, keep: bool, baseline: int = BASELINE_REQUESTS) -> None:
    compile_tool()
    for rnd in range(1, results.rounds + 1):
        for sc in results.scenarios:
            order = PROGRAMS if rnd % 2 else PROGRAMS[::-1]
            found: dict[str, set[str]] = {}
            for program in order:
                runner = run_tool if program == "tool" else run_reference
                found[program] = runner(sc, rnd, work, results)
                print(
                    f"  round {rnd} {sc.name} {program}: {results.runs[-1].wall:.2f} s, "
                    f"{results.runs[-1].peak_mib:.0f} MiB",
                    file=sys.stderr,
                )
            if rnd == 1:
                problem = compare_sets(sc.name, found["tool"], found["reference"])
                if problem is None:
                    results.checks.append(
                        f"{sc.name}: the tool and the reference find the same "
                        f"{len(found['tool']):,} valid numbers"
                    )
                else:
                    results.failures.append(problem)
            if not keep:
                _clean(work, sc.name, rnd)
    if baseline and any(sc.send for sc in results.scenarios):
        results.baseline_gaps = baseline_gaps(work, baseline, results.batch_size)


def _clean(work: Path, scenario: str, rnd: int) -> None:
    """Big outputs of a round go once checked (logs and stats stay)."""
    for path in work.glob(f"{scenario}-r{rnd}-*"):
        if path.is_dir():
            for inner in sorted(path.rglob("*"), reverse=True):
                inner.rmdir() if inner.is_dir() else inner.unlink()
            path.rmdir()
        elif path.suffix == ".csv":
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, help="Rows of both files (default: full sizes).")
    parser.add_argument("--csv-rows", type=int, help=f"default {generate.FULL_CSV_ROWS:,}")
    parser.add_argument("--xlsx-rows", type=int, help=f"default {generate.FULL_XLSX_ROWS:,}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help="Numbers per call; the floors are stated for 1000.",
    )
    parser.add_argument(
        "--only", choices=("xlsx-import", "csv-dry-run"), help="Run one scenario only."
    )
    parser.add_argument("--data-dir", type=Path, default=generate.DATA_DIR)
    parser.add_argument("--work-dir", type=Path, help="Default: benchmarks/results/<time>.")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="Keep every run's reports.")
    parser.add_argument(
        "--baseline-requests",
        type=int,
        default=BASELINE_REQUESTS,
        help="Requests of the no-work client (floor 3); 0 skips it.",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    xlsx_rows = args.xlsx_rows or args.rows or generate.FULL_XLSX_ROWS
    csv_rows = args.csv_rows or args.rows or generate.FULL_CSV_ROWS
    scenarios = []
    if args.only in (None, "xlsx-import"):
        path = generate.ensure("xlsx", xlsx_rows, args.data_dir.resolve())
        scenarios.append(
            Scenario(
                "xlsx-import", "xlsx", path, xlsx_rows, True, xlsx_rows == generate.FULL_XLSX_ROWS
            )
        )
    if args.only in (None, "csv-dry-run"):
        path = generate.ensure("csv", csv_rows, args.data_dir.resolve())
        scenarios.append(
            Scenario(
                "csv-dry-run", "csv", path, csv_rows, False, csv_rows == generate.FULL_CSV_ROWS
            )
        )
    work = (args.work_dir or RESULTS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = Results(scenarios, args.rounds, args.batch_size, load_before=load_average())
    run_all(results, work, args.keep, args.baseline_requests)
    command = "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = render(results, command.strip())
    args.output.write_text(text, encoding="utf-8")
    (work / "results.json").write_text(
        json.dumps(
            {
                "runs": [vars(r) for r in results.runs],
                "failures": results.failures,
                "checks": results.checks,
                "baseline_gaps": results.baseline_gaps,
            },
            indent=1,
        )
    )
    print(text)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())

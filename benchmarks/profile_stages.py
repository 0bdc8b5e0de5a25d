"""Where the tool's time goes: one run under cProfile, split by pipeline stage.

    python -m benchmarks.profile_stages --xlsx-rows 20000          # an import against the simulator
    python -m benchmarks.profile_stages --csv-rows 100000          # a dry run of the CSV

Prints the time of each stage (derived from cumulative times: the stages are generators
feeding each other, so "validate" is the validator's time minus the rows it pulled from the
reader), the top 15 functions of each stage by cumulative time, and the top 15 of the whole
run by own time. cProfile slows many small
calls more than few big ones: read the shares, not the seconds. The profile itself is kept
beside the logs (``benchmarks/results/profile-*.prof``) for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import io
import pstats
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from benchmarks import generate
from benchmarks.report import BATCH_SIZE
from benchmarks.run import RESULTS_DIR, ROOT, _env, simulator

# (stage, function whose cumulative time it is, function subtracted: time of the stage below)
STAGES: tuple[tuple[str, tuple[str, str], tuple[str, str] | None], ...] = (
    ("whole run (run_import)", ("pipeline.py", "run_import"), None),
    ("open inputs (sniff, hash, header)", ("reader.py", "open_source"), None),
    ("read rows", ("pipeline.py", "_all_rows"), None),
    ("validate", ("validator.py", "_validate"), ("pipeline.py", "_counted")),
    ("journal: insert outcomes", ("journal.py", "add_outcomes"), ("validator.py", "_validate")),
    ("journal: mark duplicates", ("journal.py", "mark_duplicates"), None),
    ("send", ("pipeline.py", "_send"), None),
    ("reports", ("reporter.py", "write_reports"), None),
)


Func = tuple[str, int, str]
StatsTable = dict[Func, tuple[int, int, float, float, dict[Func, tuple[int, int, float, float]]]]


def _table(stats: pstats.Stats) -> StatsTable:
    return stats.stats  # type: ignore[attr-defined, no-any-return]


def _find(table: StatsTable, where: tuple[str, str]) -> list[Func]:
    return [f for f in table if f[2] == where[1] and f[0].endswith("importer/" + where[0])]


def _cumulative(table: StatsTable, where: tuple[str, str]) -> float | None:
    found = _find(table, where)
    return sum(table[f][3] for f in found) if found else None


def stage_table(table: StatsTable) -> list[str]:
    """One line per stage: its seconds under cProfile."""
    lines = []
    for label, root, below in STAGES:
        total = _cumulative(table, root)
        if total is None:
            lines.append(f"  {label:<38} n/a ({root[0]}:{root[1]} not called or renamed)")
            continue
        if below is not None:
            total -= _cumulative(table, below) or 0.0
        lines.append(f"  {label:<38} {total:8.2f} s")
    return lines


def stage_top(table: StatsTable, root: tuple[str, str], below: tuple[str, str] | None,
              count: int = 15) -> list[str]:
    """The functions under one stage by the cumulative time of their calls from inside it.

    A function called from several stages is counted here only for its calls made from the
    functions this stage reaches (an approximation when callers are shared). The walk does not
    go through builtins or imports: what ``next()`` resumes is missed, but no other stage leaks
    in through them.
    """
    callees: dict[Func, set[Func]] = {}
    for func, (_, _, _, _, callers) in table.items():
        for caller in callers:
            callees.setdefault(caller, set()).add(func)
    stop = set(_find(table, below)) if below else set()
    reached = set(_find(table, root))
    ceiling = sum(table[f][3] for f in reached)
    frontier = list(reached)
    while frontier:
        func = frontier.pop()
        if func[0] == "~" or func[0].startswith("<frozen"):
            continue  # builtins (next, exec) and imports are hubs: their callees are anyone's
        for callee in callees.get(func, ()):
            # A callee costing more than the whole stage is a hub shared with other stages
            # (exec of a lazy import reaches runpy and everything): never walk through it.
            if callee not in reached and callee not in stop and table[callee][3] <= ceiling:
                reached.add(callee)
                frontier.append(callee)
    attributed: list[tuple[float, float, int, Func]] = []
    for func in reached:
        _, _, own, _, callers = table[func]
        inside = [edge for caller, edge in callers.items() if caller in reached]
        if inside:
            attributed.append((sum(e[3] for e in inside), own, sum(e[1] for e in inside), func))
    attributed.sort(reverse=True)
    return [f"    {cum:8.2f} s cum  {own:7.2f} s own  {calls:>9} calls  {_name(func)}"
            for cum, own, calls, func in attributed[:count]]


def _name(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = Path(filename).parts
    short = "/".join(parts[parts.index("site-packages") + 1:] if "site-packages" in parts
                     else parts[-2:])
    return f"{short}:{line}({name})"


def top(stats: pstats.Stats, key: str, count: int = 15) -> str:
    stream = io.StringIO()
    stats.stream = stream  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(count)
    text = stream.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--xlsx-rows", type=int, help="Import the XLSX of this many rows.")
    group.add_argument("--csv-rows", type=int, help="Dry-run the CSV of this many rows.")
    parser.add_argument("--data-dir", type=Path, default=generate.DATA_DIR)
    args = parser.parse_args(argv)
    kind, rows = ("xlsx", args.xlsx_rows) if args.xlsx_rows else ("csv", args.csv_rows)
    path = generate.ensure(kind, rows, args.data_dir.resolve())
    work = RESULTS_DIR / f"profile-{kind}-{rows}-{datetime.now():%Y%m%d-%H%M%S}"
    work.mkdir(parents=True)
    prof = work.with_suffix(".prof")
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "importer", "run",
           str(path), "--reports-dir", str(work), "--quiet", "--batch-size", str(BATCH_SIZE)]
    if kind == "xlsx":
        with simulator(work / "sim.json") as sim:
            done = subprocess.run([*cmd, "--base-url", sim.base_url], check=False,
                                  env=_env(work), cwd=ROOT)
    else:
        done = subprocess.run([*cmd, "--dry-run"], check=False, env=_env(work), cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the profiled run exited {done.returncode}")
    stats = pstats.Stats(str(prof))
    table = _table(stats)
    print(f"profile of: {' '.join(cmd[5:])}  ({prof})")
    print("stages (cumulative, under cProfile):")
    print("\n".join(stage_table(table)))
    for label, root, below in STAGES[1:]:
        lines = stage_top(table, root, below)
        if lines:
            print(f"\ntop {len(lines)} under {label} ({root[0]}:{root[1]}):")
            print("\n".join(lines))
    print("\ntop 15 by own time, whole run:")
    print(top(stats, "tottime"))


if __name__ == "__main__":
    main()

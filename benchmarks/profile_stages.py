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

Where = tuple[str, str]
"""A function: (its file under importer/, its name)."""

# (stage, functions whose cumulative times add up to it, functions whose times are taken off:
# the stage below, when the stages are generators feeding each other). A run takes one of two
# load paths (row at a time, or the bulk path of columns, from 1 MiB of input): the stages of
# the other path show as "not called". ``test_benchmarks_smoke`` checks every name still exists.
STAGES: tuple[tuple[str, tuple[Where, ...], tuple[Where, ...]], ...] = (
    ("whole run (run_import)", (("pipeline.py", "run_import"),), ()),
    ("open inputs (sniff, hash, header)", (("reader.py", "open_source"),), ()),
    ("load: read, judge, store lines", (("pipeline.py", "_load"),), ()),
    ("  rows: read rows", (("pipeline.py", "_all_rows"),), ()),
    ("  rows: validate", (("validator.py", "_validate"),), (("pipeline.py", "_counted"),)),
    ("  rows: journal insert", (("journal.py", "add_outcomes"),), (("validator.py", "_validate"),)),
    ("  rows: mark duplicates", (("journal.py", "mark_duplicates"),), ()),
    (
        "  bulk: read columns",
        (
            ("columnar_reader.py", "grouped"),
            ("columnar_reader.py", "text_columns"),  # the wait for parts split ahead too
            ("columnar_reader.py", "workbook_columns"),
        ),
        (),
    ),
    ("  bulk: validate columns", (("columnar_validator.py", "compact_lines"),), ()),
    ("  bulk: find duplicates", (("duplicates.py", "find_duplicates"),), ()),
    (
        "  bulk: store lines (2nd process)",
        (("line_loader.py", "add"), ("line_loader.py", "mark"), ("line_loader.py", "close")),
        (),
    ),
    ("ledger: skip confirmed", (("pipeline.py", "_skip_confirmed"),), ()),
    ("journal: ready to send (flush)", (("journal.py", "ready_to_send"),), ()),
    ("lines to send (bulk)", (("sent_lines.py", "ready_lines"),), ()),
    ("send (the loop)", (("pipeline.py", "_send"),), ()),
    ("  read ahead (journal, batches)", (("chunker.py", "_take"),), ()),
    ("  verdicts to ledger, log", (("pipeline.py", "flush"),), ()),
    ("  HTTP exchange", (("client.py", "_exchange"),), (("client.py", "_run_waiting"),)),
    ("journal: settle", (("journal.py", "settle"),), ()),
    ("ledger: fold", (("ledger.py", "fold"),), ()),
    ("lines after sending (bulk)", (("sent_lines.py", "refresh_sent"),), ()),
    ("reports", (("reporter.py", "write_reports"),), ()),
    ("wait for the aftercare (bulk)", (("aftercare.py", "wait"),), ()),
)


Func = tuple[str, int, str]
StatsTable = dict[Func, tuple[int, int, float, float, dict[Func, tuple[int, int, float, float]]]]


def _table(stats: pstats.Stats) -> StatsTable:
    return stats.stats  # type: ignore[attr-defined, no-any-return]


def _find(table: StatsTable, where: Where) -> list[Func]:
    return [f for f in table if f[2] == where[1] and f[0].endswith("importer/" + where[0])]


def _cumulative(table: StatsTable, wheres: tuple[Where, ...]) -> float | None:
    found = [f for where in wheres for f in _find(table, where)]
    return sum(table[f][3] for f in found) if found else None


def missing_functions(root: Path = ROOT) -> list[str]:
    """The STAGES functions no longer defined in importer/ (renamed: fix STAGES)."""
    missing = []
    for _, roots, below in STAGES:
        for file, name in (*roots, *below):
            path = root / "importer" / file
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            if f"def {name}(" not in text:
                missing.append(f"{file}:{name}")
    return missing


def stage_table(table: StatsTable) -> list[str]:
    """One line per stage: its seconds under cProfile."""
    lines = []
    for label, roots, below in STAGES:
        total = _cumulative(table, roots)
        if total is None:
            lines.append(f"  {label:<38}      -   (not called in this run)")
            continue
        total -= _cumulative(table, below) or 0.0
        lines.append(f"  {label:<38} {total:8.2f} s")
    return lines


def stage_top(
    table: StatsTable, roots: tuple[Where, ...], below: tuple[Where, ...], count: int = 15
) -> list[str]:
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
    stop = {f for where in below for f in _find(table, where)}
    reached = {f for where in roots for f in _find(table, where)}
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
    return [
        f"    {cum:8.2f} s cum  {own:7.2f} s own  {calls:>9} calls  {_name(func)}"
        for cum, own, calls, func in attributed[:count]
    ]


def _name(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = Path(filename).parts
    short = "/".join(
        parts[parts.index("site-packages") + 1 :] if "site-packages" in parts else parts[-2:]
    )
    return f"{short}:{line}({name})"


def top(stats: pstats.Stats, key: str, count: int = 15) -> str:
    stream = io.StringIO()
    stats.stream = stream  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(count)
    text = stream.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_stages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(prof),
        "-m",
        "importer",
        "run",
        str(path),
        "--reports-dir",
        str(work),
        "--quiet",
        "--batch-size",
        str(BATCH_SIZE),
    ]
    if kind == "xlsx":
        with simulator(work / "sim.json") as sim:
            done = subprocess.run(
                [*cmd, "--base-url", sim.base_url], check=False, env=_env(work), cwd=ROOT
            )
    else:
        done = subprocess.run([*cmd, "--dry-run"], check=False, env=_env(work), cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the profiled run exited {done.returncode}")
    stale = missing_functions()
    if stale:
        print(f"warning: STAGES names functions that are gone: {', '.join(stale)}")
    stats = pstats.Stats(str(prof))
    table = _table(stats)
    print(f"profile of: {' '.join(cmd[5:])}  ({prof})")
    print("stages (cumulative, under cProfile):")
    print("\n".join(stage_table(table)))
    for label, roots, below in STAGES[1:]:
        lines = stage_top(table, roots, below)
        if lines:
            names = ", ".join(f"{file}:{name}" for file, name in roots)
            print(f"\ntop {len(lines)} under {label.strip()} ({names}):")
            print("\n".join(lines))
    print("\ntop 15 by own time, whole run:")
    print(top(stats, "tottime"))


if __name__ == "__main__":
    main()

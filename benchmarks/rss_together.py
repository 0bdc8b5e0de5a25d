"""The memory a run holds at once: its main process and its children, sampled together.

    python -m benchmarks.rss_together xlsx   # the 200k-row XLSX import against the simulator
    python -m benchmarks.rss_together csv    # the 1M-row CSV dry run

``benchmarks.run`` reports ``ru_maxrss``, as ``/usr/bin/time -v`` does: the largest of the
program and of each child counted alone. A bulk import stores its lines from a second process
while the main one judges, so the machine holds more at once; this samples the resident size of
the main process and of every descendant every 10 ms and prints both peaks: the main process's
RSS, and the sum of every process's PSS (shared pages counted once, in shares).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.run import ROOT, _env, simulator

DATA = ROOT / "benchmarks" / "data"


def _rss_mib(pid: int, field: str = "Rss:") -> float:
    """A process's resident size (``Pss:``: its pages shared with others counted in shares:
    a child forked and not yet exec'd shares all of its parent's)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass  # gone meanwhile
    return 0.0


def _cmdline(pid: int) -> bytes:
    """A process's command line: a child forked and not yet exec'd has its parent's (and is
    left out: the parent's pages it shares are the parent's, and sampling the two at different
    instants of the fork would count them twice)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of any of its threads, theirs, ...)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = []
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids += [int(n) for n in children.read_text(encoding="ascii").split()]
            except OSError:  # the thread or the process ended meanwhile
                continue
        found += kids
        todo += kids
    return found


def sample(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(main peak RSS MiB, peak of the PSS of main + descendants MiB, exit code) of ``cmd``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    main_peak = together_peak = 0.0
    own = _cmdline(proc.pid)
    while proc.poll() is None:
        main = _rss_mib(proc.pid)
        kids = [kid for kid in _descendants(proc.pid) if _cmdline(kid) != own]
        together = _rss_mib(proc.pid, "Pss:") + sum(_rss_mib(kid, "Pss:") for kid in kids)
        main_peak, together_peak = max(main_peak, main), max(together_peak, together)
        time.sleep(0.01)
    return main_peak, together_peak, proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("xlsx", "csv"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dnc-rss-") as folder:
        work = Path(folder)
        cmd = [sys.executable, "-m", "importer", "run", "--reports-dir", str(work / "r"), "-q"]
        if args.scenario == "xlsx":
            with simulator(work / "sim.json") as sim:
                cmd += [str(DATA / "numbers-200000.xlsx"), "--batch-size", "1000"]
                result = sample([*cmd, "--base-url", sim.base_url], _env(work))
        else:
            result = sample([*cmd, str(DATA / "numbers-1000000.csv"), "--dry-run"], _env(work))
    main_peak, together_peak, code = result
    print(f"{args.scenario}: main process {main_peak:.1f} MiB, with its children at the same "
          f"moment {together_peak:.1f} MiB (exit {code})")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())

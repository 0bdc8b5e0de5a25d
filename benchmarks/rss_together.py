"""The memory a run holds at once: its main process and its children, sampled together.

    python -m benchmarks.rss_together xlsx   # the 200k-row XLSX import against the simulator
    python -m benchmarks.rss_together csv    # the 1M-row CSV dry run

``benchmarks.run`` reports ``ru_maxrss``, as ``/usr/bin/time -v`` does: the largest of the
program and of each child counted alone. A bulk import stores its lines from a second process
while the main one judges, so the machine holds more at once; this samples the resident size of
the main process and of every descendant every 10 ms and prints both peaks.
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


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass  # gone meanwhile
    return 0.0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            path = f"/proc/{parent}/task/{parent}/children"
            with open(path, encoding="ascii") as children:
                kids = [int(n) for n in children.read().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def sample(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(main peak MiB, main + descendants peak MiB, exit code) of ``cmd``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    main_peak = together_peak = 0.0
    while proc.poll() is None:
        main = _rss_mib(proc.pid)
        together = main + sum(_rss_mib(kid) for kid in _descendants(proc.pid))
        main_peak, together_peak = max(main_peak, main), max(together_peak, together)
        time.sleep(0.01)
    return main_peak, together_peak, proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("xlsx", "csv"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dnc-rss-"))
    cmd = [sys.executable, "-m", "importer", "run", "--reports-dir", str(work / "r"), "--quiet"]
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

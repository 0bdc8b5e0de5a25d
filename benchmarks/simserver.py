"""The simulator in a process of its own, for the runner: one fresh list per measured run.

    python -m benchmarks.simserver --token T --stats stats.json

Prints one JSON line on stdout (``{"base_url": ..., "add_dnc_url": ...}``), serves until its
stdin is closed, then writes ``stats.json``: the calls, the size of the list and every add_dnc
request as the server timed it (``time.monotonic`` of this process): the runner derives the
client's own cost per request from the gaps between one answer and the next request.

Its own process so that the server never shares the GIL with the process being measured. No
added latency, a daily quota no run reaches, a temporary SQLite list removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from importer.simulator import SimConfig, Simulator

QUOTA = 10**9


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simserver")
    parser.add_argument("--token", required=True)
    parser.add_argument("--stats", type=Path, required=True, help="Where stats are written.")
    args = parser.parse_args(argv)
    sim = Simulator(SimConfig(token=args.token, daily_quota=QUOTA)).start()
    try:
        print(json.dumps({"base_url": sim.base_url, "add_dnc_url": sim.add_dnc_url}), flush=True)
        sys.stdin.read()  # until the runner closes our stdin
    finally:
        sim.stop()
    stats = {
        "calls": sim.calls,
        "violations": sim.violations,
        "connections": sim.connections,
        "listed": len(sim.dnc_list()),
        "requests": [
            {
                "call": r.call,
                "start": r.start,
                "end": r.end,
                "records": r.records,
                "status": r.http_status,
                "outcome": r.outcome,
            }
            for r in sim.requests()
        ],
    }
    args.stats.write_text(json.dumps(stats), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Run one command from a small process and write its wall time and peak RSS to a file.

    python -I benchmarks/peak.py OUT COMMAND...

Linux records a process's peak RSS (``ru_maxrss``) across ``exec``: a child forked from a
big process starts with that process's peak as its own. The benchmark runner holds the sets
of valid numbers it compares (~250 MB after a 1M-row round), so every program it forked after
that reported at least the runner's size (a 143 MiB import measured 248 MiB in round 2). Forked
from this process instead (~10 MB, standard library only, no site packages with ``-I``), the
measured program's peak is its own. OUT gets ``wall_seconds peak_kib exit_code`` (``-N`` when
signal N killed it); this process exits with the program's code (128 + N for a signal).
"""

import os
import sys
import time


def main() -> int:
    out, command = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child becomes the command
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
    with open(out, "w", encoding="ascii") as f:
        f.write(f"{wall:.6f} {usage.ru_maxrss} {code}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

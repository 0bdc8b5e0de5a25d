"""What the validator benchmarks share: a differential (rows judged two ways, chunk by chunk,
disagreements counted), the best CPU time of tasks timed in interleaved rounds, and the
options that drive both (``--rows``, ``--repeat``, ``--differential``, ``--diff-rows``).

``bench_validator`` pits the fast path against the full parse, ``bench_columns`` the column
validator against the full parse; each brings its own ``disagreements`` and both judge the
sets of ``bench_validator.differential_sets`` (the mixed set and the 1M set of
``benchmarks.generate``).

    sets = differential_sets(1_000_000)
    total = count_disagreements(sets, disagreements, 50_000, ("fast", "full"))
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from importer.config import ValidateOptions
from importer.model import RawRow

RowSet = tuple[str, Callable[[], Iterator[RawRow]], tuple[ValidateOptions, ...]]
"""A set's name, what makes its rows (afresh each time), and the option sets it is judged under."""
Disagreements = Callable[[Sequence[RawRow], ValidateOptions], Sequence[tuple[object, object]]]
"""The pairs of lines on which the two ways differ, for one chunk of rows."""
Key = TypeVar("Key", bound=Hashable)


def chunks(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    """``rows`` in lists of ``size`` (the last one shorter), so a 1M set never is whole in memory."""
    chunk: list[RawRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_disagreements(
    sets: Sequence[RowSet],
    disagreements: Disagreements,
    chunk_size: int,
    labels: tuple[str, str],
) -> int:
    """Judge every set under each of its option sets, ``chunk_size`` rows at a time; print the
    first three disagreements of each chunk (named by ``labels``), a line per set and options,
    and the total, and return it."""
    width = max(len(label) for label in labels)
    ours, theirs = (f"{label:<{width}}" for label in labels)
    total = 0
    for name, make, option_sets in sets:
        for options in option_sets:
            started = time.perf_counter()
            seen = found = 0
            for chunk in chunks(make(), chunk_size):
                seen += len(chunk)
                pairs = disagreements(chunk, options)
                found += len(pairs)
                for one, other in pairs[:3]:
                    print(f"    DISAGREE\n      {ours} {one}\n      {theirs} {other}")
            took = time.perf_counter() - started
            print(f"  {name}: {seen:,} rows, {options}: {found} disagreements ({took:.0f} s)")
            total += found
    print(f"differential: {total} disagreements in all")
    return total


def best_cpu_seconds(tasks: Mapping[Key, Callable[[], object]], repeat: int) -> dict[Key, float]:
    """The least CPU seconds each task took in ``repeat`` rounds, every round running every task
    once (in order) so that each sees the same machine. CPU time of this process, not wall
    time: on a shared machine the wall clock also counts the time other processes held the CPU.
    """
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(repeat):
        for key, task in tasks.items():
            started = time.process_time()
            task()
            best[key] = min(best[key], time.process_time() - started)
    return best


def arguments(
    prog: str, description: str | None, rows: int, versus: str
) -> argparse.ArgumentParser:
    """The options both benchmarks take: ``--rows`` (``rows`` by default) and ``--repeat`` for
    the timings, ``--differential`` (``versus``: what it compares) and ``--diff-rows``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=rows, help=f"Rows timed ({rows:,}).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per timing; the best counts.")
    parser.add_argument("--differential", action="store_true", help=versus)
    parser.add_argument(
        "--diff-rows", type=int, default=1_000_000, help="Rows of the differential."
    )
    return parser

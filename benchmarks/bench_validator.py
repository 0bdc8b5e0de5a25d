"""The validator alone: microseconds per number, fast path against the full parse, by form.

    python -m benchmarks.bench_validator                   # timings on 100,000 mixed rows
    python -m benchmarks.bench_validator --rows 20000 --repeat 5
    python -m benchmarks.bench_validator --differential    # + 1,000,000 rows, fast vs full
    python -m benchmarks.bench_validator --processes       # + does a second process pay?

The rows are Colombian numbers in the forms of issue 5 (``3191234567``, ``+57 319 123 4567``,
``(319) 123-4567``, ``57-319-1234567``, landlines ``601 234 5678``, numeric cells as ints and
as floats ``3191234567.0``, float text, ~3% invalid) with days as text, made deterministically
by ``mixed_rows``. ``--differential`` judges every row both ways (the fast path, and the full
phonenumbers parse that ``validate`` used before it) under several option sets, and prints the
count of disagreements: it must be 0 (exit 1 otherwise). It also runs over the rows of
``benchmarks.generate`` (the 1M set of the benchmark suite), numeric cells as ints and floats.

Timings are the best of ``--repeat`` runs of the whole validator over the rows (days,
messages, the ``Outcome`` lines), in CPU time, divided by the number of rows. A shared
machine is noisy: read the ratios.
"""

from __future__ import annotations

import collections
import functools
import os
import pickle
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple

from benchmarks.differential import (
    RowSet,
    arguments,
    best_cpu_seconds,
    chunks,
    count_disagreements,
)
from importer import validator
from importer.config import NumberForm, ValidateOptions
from importer.model import CellValue, Outcome, RawRow

_MOBILE_PREFIXES = tuple(
    [f"30{d}" for d in range(6)]
    + [f"31{d}" for d in range(10)]
    + ["320", "321", "322", "323"]
    + ["350", "351"]
)
_LANDLINE_PREFIXES = ("601", "602", "604", "605", "606", "607", "608")
_DAYS = ("30", "30", "60", "90", "90", "180", "365", "365", "730")

FORMS: dict[str, Callable[[str], CellValue]] = {
    "digits": lambda n: n,
    "spaced": lambda n: f"{n[:3]} {n[3:6]} {n[6:]}",
    "+57 spaced": lambda n: f"+57 {n[:3]} {n[3:6]} {n[6:]}",
    "(area) dash": lambda n: f"({n[:3]}) {n[3:6]}-{n[6:]}",
    "57-dash": lambda n: f"57-{n[:3]}-{n[3:]}",
    "+57digits": lambda n: f"+57{n}",
    "57digits": lambda n: f"57{n}",
    "int cell": int,
    "float cell": lambda n: float(int(n)),
    "float text": lambda n: f"{n}.0",
}
"""How a valid national number is written, by name (the keys label the timings)."""
_WEIGHTS = (20, 10, 10, 8, 6, 4, 4, 14, 16, 8)


def _invalid(rng: random.Random) -> tuple[str, CellValue]:
    mobile = rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}"
    return rng.choice(
        (
            ("invalid", mobile[: rng.randint(5, 8)]),
            ("invalid", mobile + f"{rng.randrange(100):02d}"),
            ("invalid", rng.choice(("306", "309", "352", "399")) + mobile[3:]),
            ("invalid", "1" + mobile[1:]),
            ("invalid", int("1" + mobile[1:])),
            ("invalid", "N/A"),
            ("invalid", "no tiene"),
            ("invalid", ""),
            ("invalid", "0057 " + mobile),
        )
    )


def mixed_cells(count: int, seed: int = 0) -> Iterator[tuple[str, CellValue, CellValue]]:
    """``count`` (form, phone cell, days cell) triples; the same ones for the same seed."""
    rng = random.Random(seed)
    names = list(FORMS)
    for _ in range(count):
        days = rng.choice(_DAYS)
        if rng.random() < 0.03:
            form, phone = _invalid(rng)
            yield form, phone, days
            continue
        if rng.random() < 0.12:
            national = rng.choice(_LANDLINE_PREFIXES) + rng.choice("2345678")
        else:
            national = rng.choice(_MOBILE_PREFIXES) + rng.choice("0123456789")
        national += f"{rng.randrange(10**6):06d}"
        form = rng.choices(names, _WEIGHTS)[0]
        yield form, FORMS[form](national), days


def mixed_rows(count: int, seed: int = 0) -> list[RawRow]:
    """The mixed set as the reader would hand it on."""
    return [
        RawRow("mixed.csv", "", row, phone, days)
        for row, (_form, phone, days) in enumerate(mixed_cells(count, seed), start=2)
    ]


def generated_rows(count: int) -> Iterator[RawRow]:
    """The rows of ``benchmarks.generate``; numeric cells once as int, once as float (calamine)."""
    from benchmarks import generate

    for number, row in enumerate(generate.rows(count), start=2):
        yield RawRow("generated.csv", "", number, row.phone, row.days)
        if isinstance(row.phone, int):
            yield RawRow("generated.xlsx", "", number, float(row.phone), float(row.days))


OPTION_SETS: tuple[ValidateOptions, ...] = (
    ValidateOptions(),
    ValidateOptions(form=NumberForm.E164, default_days=30),
    ValidateOptions(form=NumberForm.INTERNATIONAL, dial_prefix="9", max_days=365),
    ValidateOptions(dial_prefix="0057", allow_foreign=True),
)
"""The option sets the differential judges each row under."""


def differential_sets(count: int) -> list[RowSet]:
    """``count`` mixed rows under every option set, and the first ``count`` rows of
    ``benchmarks.generate`` (the 1M set) under the default options."""
    return [
        ("mixed", lambda: iter(mixed_rows(count)), OPTION_SETS),
        ("benchmarks.generate", lambda: generated_rows(count), OPTION_SETS[:1]),
    ]


def judge(rows: Iterable[RawRow], options: ValidateOptions, fast: bool) -> list[Outcome]:
    """Every outcome of ``rows``, by the fast path or (``fast=False``) the full parse only."""
    validator.check_options(options)
    return list(validator._validate(rows, options, fast=fast))


def disagreements(
    rows: Sequence[RawRow], options: ValidateOptions
) -> list[tuple[Outcome, Outcome]]:
    """The (fast, full) outcome pairs that differ in any field; the row count must match too."""
    fast, full = judge(rows, options, True), judge(rows, options, False)
    if len(fast) != len(full):
        raise AssertionError(f"fast path gave {len(fast)} outcomes, full parse {len(full)}")
    return [(a, b) for a, b in zip(fast, full, strict=True) if astuple(a) != astuple(b)]


def _validate_all(rows: list[RawRow], options: ValidateOptions, fast: bool) -> None:
    collections.deque(validator._validate(rows, options, fast=fast), maxlen=0)


def timings(count: int, repeat: int) -> None:
    """µs per number, full vs fast, for the whole mixed set and for each form alone.

    Rounds interleave every form and both ways, so that each sees the same machine; each
    figure is the best of ``repeat`` rounds.
    """
    options = ValidateOptions()
    by_form: dict[str, list[RawRow]] = collections.defaultdict(list)
    for row, (form, phone, days) in enumerate(mixed_cells(count), start=2):
        by_form[form].append(RawRow("mixed.csv", "", row, phone, days))
    sets = [("ALL (mixed)", mixed_rows(count)), *sorted(by_form.items())]
    tasks = {
        (form, fast): functools.partial(_validate_all, rows, options, fast)
        for form, rows in sets
        for fast in (False, True)
    }
    best = best_cpu_seconds(tasks, repeat)
    print(f"µs per number (best of {repeat}, CPU time), {count:,} mixed rows, region CO, national")
    print(f"  {'form':<14}{'rows':>9}{'full':>9}{'fast':>9}{'ratio':>8}")
    for form, rows in sets:
        full, fast_ = (best[form, fast] / len(rows) * 1e6 for fast in (False, True))
        print(f"  {form:<14}{len(rows):>9,}{full:>9.2f}{fast_:>9.2f}{full / fast_:>7.1f}x")


def differential(count: int) -> int:
    """Judge ``count`` mixed rows and the generated set both ways; print and return disagreements."""
    return count_disagreements(differential_sets(count), disagreements, 50_000, ("fast", "full"))


def _validate_chunk(rows: list[RawRow], fast: bool = True) -> list[Outcome]:
    return judge(rows, ValidateOptions(), fast)


def processes(count: int, chunk_size: int) -> None:
    """Does a second process pay? One process against a pool of 2, rows sent in chunks.

    The pool pickles every row to a worker and every outcome back, as the pipeline would.
    Timed both with the fast path and with the full parse alone (wall time, warm workers).
    """
    rows = mixed_rows(count)
    batches = list(chunks(rows, chunk_size))
    print(f"{count:,} mixed rows, chunks of {chunk_size:,}, {os.cpu_count()} CPUs (wall time)")
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_validate_chunk, [rows[:10], rows[10:20]]))  # the workers are up and warm
        for fast in (True, False):
            started = time.perf_counter()
            one = _validate_chunk(rows, fast)
            alone = time.perf_counter() - started
            started = time.perf_counter()
            pooled = [
                o
                for part in pool.map(_validate_chunk, batches, [fast] * len(batches))
                for o in part
            ]
            took = time.perf_counter() - started
            if [astuple(o) for o in pooled] != [astuple(o) for o in one]:
                raise AssertionError("the pool gave other outcomes")
            name = "fast path " if fast else "full parse"
            print(
                f"  {name}: one process {alone / count * 1e6:6.2f} µs/row, pool of 2 "
                f"{took / count * 1e6:6.2f} µs/row ({alone / took:.2f}x)"
            )
    outcomes = [_validate_chunk(chunk) for chunk in batches]
    started = time.perf_counter()
    for chunk, judged in zip(batches, outcomes, strict=True):
        pickle.loads(pickle.dumps(chunk))
        pickle.loads(pickle.dumps(judged))
    took = time.perf_counter() - started
    print(f"  pickling rows there and outcomes back, alone: {took / count * 1e6:.2f} µs/row")


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(
        "python -m benchmarks.bench_validator",
        __doc__,
        100_000,
        "Fast vs full on --diff-rows.",
    )
    parser.add_argument("--processes", action="store_true", help="Time a pool of 2 processes.")
    parser.add_argument(
        "--chunk", type=int, default=10_000, help="Rows per chunk sent to the pool."
    )
    parser.add_argument("--no-timings", action="store_true", help="Skip the per-form timings.")
    args = parser.parse_args(argv)
    if not args.no_timings:
        timings(args.rows, args.repeat)
    if args.processes:
        processes(args.rows, args.chunk)
    if args.differential and differential(args.diff_rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

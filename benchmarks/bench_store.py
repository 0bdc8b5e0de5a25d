"""The journal's and the reporter's speed on synthetic outcome lines (issue 5).

    python -m benchmarks.bench_store                     # 1,000,000 lines, outcomes.xlsx of 200,000
    python -m benchmarks.bench_store --lines 100000 --xlsx-lines 20000

Times each step the pipeline takes on a big run, in one process, on a fresh journal in a
temporary folder, and prints the peak RSS (``resource.getrusage``) after each step: the peak
only grows, so a step's figure is the largest the process has been so far.

The lines look like a validated export: ~92% ready mobiles in mixed written forms, ~3% invalid
with a message, ~5% the same telephone again with another block (so the duplicate pass has real
work), over a CSV and a workbook sheet. ``make`` is the cost of building the Outcome objects
alone (the validator's side); ``add_outcomes`` includes it, as in a run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from importer import reporter
from importer.journal import Journal
from importer.model import Outcome, Status
from importer.reporter import write_reports

_DAYS = (30, 30, 60, 90, 90, 180, 365)


def synthetic(lines: int) -> Iterator[Outcome]:
    """``lines`` deterministic outcome lines (a generator: memory stays flat).

    Arithmetic, not a random generator, so that making them costs little next to storing
    them: ``index * 2654435761 mod 10**9`` is a bijection, so telephones repeat only where a
    line is made a duplicate on purpose (every 20th line repeats a telephone 1000-1800 lines back).
    """
    for index in range(lines):
        file, sheet = ("crm.xlsx", "Clientes") if index % 3 == 0 else ("numbers-a.csv", "")
        days = _DAYS[(index * 7919 >> 3) % len(_DAYS)]
        if index % 33 == 5:
            raw = str(10_000 + index % 90_000)
            yield Outcome(
                file, sheet, index + 2, 1, raw, str(days), "", days, Status.INVALID,
                "too-short", f"too short: {raw} has 5 digits, a Colombian number has 10",
            )  # fmt: skip
            continue
        source = (
            index - 1000 - 13 * (index // 20 % 61) if index % 20 == 7 and index > 2000 else index
        )
        telephone = f"3{source * 2654435761 % 10**9:09d}"
        a, b, c = telephone[:3], telephone[3:6], telephone[6:]
        raw = (telephone, f"+57 {a} {b} {c}", f"({a}) {b}-{c}", f"57-{a}-{b}{c}")[index % 4]
        yield Outcome(
            file, sheet, index + 2, 1, raw, str(days), telephone, days, Status.READY, "valid", ""
        )


def peak_mib() -> float:
    """The process's peak resident set so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name: str, step: Callable[[], object]) -> object:
    """Run ``step``, print its wall time and the peak RSS so far; return what it returned."""
    start, cpu = time.perf_counter(), time.process_time()
    result = step()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{name:<28} {elapsed:8.3f} s  (cpu {cpu:7.3f} s)   peak {peak_mib():7.1f} MiB   -> {result}",
        flush=True,
    )
    return result


def _counts(journal: Journal) -> dict[str, object]:
    """summary.json's counts: one pass where the journal has ``counts`` (issue 5), else three."""
    if hasattr(journal, "counts"):
        return dict(journal.counts())
    return {
        "lines": journal.line_count(),
        "by_status": journal.counts_by_status(),
        "by_reason": journal.counts_by_reason(),
    }


def _source(journal: Journal) -> Any:
    """What write_reports reads: the journal itself where the reporter takes one (issue 5)."""
    return journal if hasattr(reporter, "RowSource") else journal.outcomes


def _drain(lines: int) -> int:
    return sum(1 for _ in synthetic(lines))


def _scan(journal: Journal) -> int:
    return sum(1 for _ in journal.outcomes())


def run(lines: int, xlsx_lines: int, folder: Path, ledger: Path | None) -> None:
    """Every step on ``lines`` lines, then the XLSX report of ``xlsx_lines`` lines."""
    print(
        f"{lines:,} lines; outcomes.xlsx of {xlsx_lines:,} lines; python {sys.version.split()[0]}"
    )
    timed("make (Outcome objects only)", lambda: _drain(lines))
    big = folder / "big"
    big.mkdir()
    with Journal.create(big / "journal.sqlite", run_id="bench", meta={}) as journal:
        timed("add_outcomes", lambda: journal.add_outcomes(synthetic(lines)))
        timed("mark_duplicates", journal.mark_duplicates)
        if ledger is not None and hasattr(journal, "skip_confirmed"):
            timed(
                "skip_confirmed",
                lambda: journal.skip_confirmed(ledger, "wv0002", date(2026, 11, 28)),
            )
        counts = timed("counts", lambda: _counts(journal))
        timed("distinct_rows", journal.distinct_rows)
        timed("outcomes() scan", lambda: _scan(journal))
        if hasattr(journal, "rows"):
            timed("rows() scan", lambda: sum(1 for _ in journal.rows()))
        summary = {"run_id": "bench", "counts": counts}
        timed(
            "write_reports (CSV only)",
            lambda: len(write_reports(big, _source(journal), summary, xlsx=False)),
        )
    small = folder / "small"
    small.mkdir()
    with Journal.create(small / "journal.sqlite", run_id="bench", meta={}) as journal:
        journal.add_outcomes(synthetic(xlsx_lines))
        journal.mark_duplicates()
        summary = {"run_id": "bench", "counts": _counts(journal)}
        start = time.perf_counter()
        write_reports(small, _source(journal), dict(summary), xlsx=False)
        csv_only = time.perf_counter() - start
        start = time.perf_counter()
        write_reports(small, _source(journal), dict(summary), xlsx=True)
        both = time.perf_counter() - start
        print(
            f"{'outcomes.xlsx':<28} {both - csv_only:8.3f} s   peak {peak_mib():7.1f} MiB"
            f"   ({xlsx_lines:,} lines: all reports {both:.3f} s minus CSV only {csv_only:.3f} s)"
        )


def _ledger(path: Path, lines: int) -> Path:
    """A ledger confirming every 10th ready telephone of the synthetic lines on wv0002."""
    from importer.ledger import Ledger

    telephones = (
        o.telephone for i, o in enumerate(synthetic(lines)) if o.telephone and i % 10 == 0
    )
    with Ledger.open(path) as ledger:
        ledger.record_added("wv0002", ((t, 365) for t in telephones), date(2026, 11, 20))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--xlsx-lines", type=int, default=200_000)
    parser.add_argument("--ledger", action="store_true", help="also time skip_confirmed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        ledger = _ledger(Path(folder) / "ledger.sqlite", args.lines) if args.ledger else None
        run(args.lines, args.xlsx_lines, Path(folder), ledger)


if __name__ == "__main__":
    main()

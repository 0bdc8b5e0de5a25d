"""The bulk path of a run's load: columns read, judged, de-duplicated and stored, in batches.

``pipeline`` takes it when a run's inputs are big (``bulk_wanted``): each input's rows come as
batches of columns (``Source.columns``), ``importer.columnar_validator`` judges them,
``importer.duplicates`` marks the duplicates among all of them, and ``importer.line_loader``
puts them into the journal. The lines, their order, their ids in the journal and the counts
are those of the row-at-a-time path (``validate`` -> ``Journal.add_outcomes`` ->
``Journal.mark_duplicates``); the run keeps them (``RunLines``) to write its reports from.

``DNC_IMPORT_BULK_BYTES`` sets the size (in bytes, all inputs together) from which a run takes
the bulk path (default ``BULK_BYTES``; ``0``: always), for tests and benchmarks.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from importer.config import ValidateOptions
from importer.journal import Journal
from importer.reader import Source
from importer.reporter import write_csv_reports

if TYPE_CHECKING:
    from importer.columns import RunLines

__all__ = ["BULK_BYTES", "bulk_wanted", "load_bulk", "refresh_lines"]

BULK_BYTES = 1024 * 1024
"""Below this (about 30,000 rows) the row-at-a-time path is as fast: pyarrow alone takes
~0.5 s to load and warm up."""


def bulk_wanted(sources: Sequence[Source]) -> bool:
    """Whether a run of ``sources`` takes the bulk path (see the module docstring)."""
    limit = os.environ.get("DNC_IMPORT_BULK_BYTES", "").strip()
    threshold = int(limit) if limit.isdigit() else BULK_BYTES
    return sum(source.info.size for source in sources) >= threshold


def load_bulk(
    journal: Journal,
    sources: Sequence[Source],
    options: ValidateOptions,
    rows_read: Callable[[int], None],
) -> tuple[RunLines, int]:
    """Judge every row of ``sources`` into the journal; return the lines and the duplicates.

    The lines go into the journal as they are judged; the duplicates are marked in it last.
    """
    # pyarrow (~0.4 s to load) only for the runs that take this path
    from importer.columnar_validator import ColumnValidator
    from importer.columns import RunLines, SheetLines, pyarrow_without_pandas
    from importer.duplicates import find_duplicates
    from importer.line_loader import LineWriter

    pyarrow_without_pandas()
    _give_memory_back()
    validator = ColumnValidator(options)
    sheets: list[SheetLines] = []
    with LineWriter(journal) as writer:
        for source in sources:
            for batch in source.columns():
                table = validator.compact_lines(batch)
                sheets.append(SheetLines(batch.source_file, batch.sheet, table))
                writer.add(sheets[-1])
                rows_read(len(batch.rows))
            _trim()  # a workbook's cells, freed now
        lines = RunLines(sheets, find_duplicates(sheets))
        writer.mark(lines.duplicates)
        if writer.elsewhere:  # this process only counts the lines stored: no 16 MB cache
            journal.lower_cache()
        if writer.elsewhere and _dry_run(journal):
            # a dry run's lines never change: its CSV reports are written while they are stored
            lines.csv_written = write_csv_reports(journal.path.parent, lines)
        writer.close()
    journal.lower_cache()  # the lines are held here from now on (issue 5: peak memory)
    _trim()  # what judging, the duplicates and the reports freed
    return lines, len(lines.duplicates.lines)


def _trim() -> None:
    """Hand the C heap's free memory back to the system (glibc's ``malloc_trim``): reading and
    judging free tens of MB (calamine's cells, rows as Python lists, regular expressions)
    that the heap would otherwise keep for the rest of the run (~13 MB of a 200,000-row
    workbook's). Nothing where the C library has no such call."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc, or no C library by that name
        return
    trim(0)


def _dry_run(journal: Journal) -> bool:
    """Whether the run of ``journal`` sends nothing (its settings say so)."""
    settings = journal.get_meta("settings")
    return isinstance(settings, dict) and settings.get("dry_run") is True


def refresh_lines(lines: RunLines, journal: Journal) -> None:
    """Read again the columns sending changes (status, reason, message, batch) from the journal."""
    from importer.line_loader import read_back

    read_back(lines, journal)


def _give_memory_back() -> None:
    """Make pyarrow allocate from jemalloc, returning freed memory within a second, where it
    can.

    The bulk path frees as much as it keeps (a batch's work columns); pyarrow's default pools
    keep freed pages for reuse, which cost ~75 MB more peak memory on a 1M-row run here. At
    once (0 ms) costs ~1 s more CPU a million lines than a second (page faults), for ~3 MB.
    """
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc (Windows): keep its pool
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(1000)

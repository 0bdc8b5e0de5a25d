"""The bulk path of a run's load: columns read, judged, de-duplicated and stored, in batches.

``pipeline`` takes it when a run's inputs are big (``bulk_wanted``): each input's rows come as
batches of columns (``Source.columns``), ``importer.columnar_validator`` judges them,
``importer.duplicates`` marks the duplicates among all of them, and ``importer.line_loader``
puts them into the journal. The lines, their order, their ids in the journal and the counts
are those of the row-at-a-time path (``validate`` -> ``Journal.add_outcomes`` ->
``Journal.mark_duplicates``); the run keeps them (``RunLines``) to write its reports from.
A dry run stores none (``Journal.keep_no_lines``): its reports come from those it keeps, and
it leaves nothing to resume (a million lines cost a second process 3-4 s of CPU to store,
and 170 MB of disk).

``DNC_IMPORT_BULK_BYTES`` sets the size (in bytes, all inputs together) from which a run takes
the bulk path (default ``BULK_BYTES``; ``0``: always), for tests and benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from importer.config import ValidateOptions
from importer.heap import give_back
from importer.journal import Journal
from importer.reader import Source

if TYPE_CHECKING:
    from importer.columns import RunLines, SheetLines

__all__ = ["BULK_BYTES", "bulk_wanted", "load_bulk"]

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
    """Judge every row of ``sources``; return the lines and how many are duplicates.

    A sending run's lines go into the journal as they are judged, the duplicates marked in it
    last; a dry run's are not stored (the journal says so: ``Journal.keeps_lines``).
    """
    # pyarrow (~0.4 s to load) only for the runs that take this path
    from importer.columns import pyarrow_without_pandas
    from importer.line_loader import LineWriter

    pyarrow_without_pandas()
    _give_memory_back()
    if _dry_run(journal):
        journal.keep_no_lines()
        lines = _judged(sources, options, rows_read)
    else:
        with LineWriter(journal) as writer:
            lines = _judged(sources, options, rows_read, writer.add)
            writer.mark(lines.duplicates)
            if writer.elsewhere:  # this process only counts the lines stored: no 16 MB cache
                journal.lower_cache()
            writer.close()
    journal.lower_cache()  # the lines are held here from now on (issue 5: peak memory)
    give_back()  # what judging and the duplicates freed
    return lines, len(lines.duplicates.lines)


def _judged(
    sources: Sequence[Source],
    options: ValidateOptions,
    rows_read: Callable[[int], None],
    store: Callable[[SheetLines], None] | None = None,
) -> RunLines:
    """The lines of every row of ``sources``, each batch handed to ``store`` as judged, and
    their duplicates."""
    from importer.columnar_validator import ColumnValidator
    from importer.columns import RunLines, SheetLines
    from importer.duplicates import find_duplicates

    validator = ColumnValidator(options)
    sheets: list[SheetLines] = []
    for source in sources:
        for batch in source.columns():
            sheets.append(
                SheetLines(batch.source_file, batch.sheet, validator.compact_lines(batch))
            )
            if store is not None:
                store(sheets[-1])
            rows_read(len(batch.rows))
        give_back()  # a workbook's cells, freed now
    return RunLines(sheets, find_duplicates(sheets))


def _dry_run(journal: Journal) -> bool:
    """Whether the run of ``journal`` sends nothing (its settings say so)."""
    settings = journal.get_meta("settings")
    return isinstance(settings, dict) and settings.get("dry_run") is True


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

"""A bulk run's lines to send, and after sending, taken from its lines in memory.

A bulk run keeps its lines in memory (``columns.RunLines``), in journal order (line ids 1, 2,
...). Sending and the ledger's skip change a line only by giving it a status the load never
gives (the load gives ``ready``, ``invalid`` and ``duplicate``), so ``Journal.changed_lines``
(the lines with another status, and the verdicts recorded but not yet copied onto their lines)
is all that differs from them. Hence, with no journal read per line (issue 5):

- ``ready_lines``: what the journal's send queue would hand out (its ``ready`` lines, in line
  order), as a ``RowQueue``: reading 1000 lines from the journal cost ~1 ms, more than the
  server took on a request (so the request waited for it); a slice here ~0.1 ms;
- ``refresh_sent``: the lines as the journal has them after sending, for the reports: a few
  SELECTs and no settle first (the run settles its journal in the background meanwhile,
  ``importer.aftercare``), where settling and reading every line back cost ~1.5 s for 200,000.

Each checks what it takes against the journal (``ready_lines``: a digest of the journal's
ready lines; ``refresh_sent``: every changed line must be ``ready`` and not a duplicate in
memory, the journal must hold as many lines); if they differ, the journal's own queue is used,
or every line is read back from it (``line_loader.read_back``), which is always right.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import SENT_MESSAGE, RunLines, with_messages
from importer.heap import give_back
from importer.journal import DIGEST_MODULUS, Journal, LineChanges
from importer.line_loader import read_back
from importer.model import Status

__all__ = ["LOADED", "ReadyLines", "ready_lines", "refresh_sent"]

log = logging.getLogger("importer")

LOADED = (Status.READY, Status.INVALID, Status.DUPLICATE)
"""The statuses a bulk run's lines have when loaded; sending never gives one of them."""
_VALUES = (("status", pa.string()), ("reason", pa.string()), ("message", pa.string()))


class ReadyLines:
    """The ready lines of a bulk run, handed out in line order as ``(line_id, telephone,
    days_block)`` rows, ``size`` at a time (``chunker.RowQueue``), each once."""

    def __init__(
        self,
        ids: np.ndarray,
        telephones: pa.Array | pa.ChunkedArray,
        days: pa.Array | pa.ChunkedArray,
    ) -> None:
        self._ids, self._telephones, self._days = ids, telephones, days
        self._next = 0

    def __len__(self) -> int:
        """How many lines, handed out or not."""
        return len(self._ids)

    def digest(self) -> tuple[int, ...]:
        """``Journal.digest`` of these lines."""
        ids = self._ids
        if not len(ids):
            return (0, 0, 0, 0, 0)
        return (
            len(ids),
            int(ids.sum()),
            int((ids * ids % DIGEST_MODULUS).sum()),
            int(pc.sum(self._days).as_py() or 0),
            int(pc.sum(pc.utf8_length(self._telephones)).as_py() or 0),
        )

    def take(self, size: int) -> list[tuple[int, str, int]]:
        """The next ``size`` lines at most; [] once none is left."""
        start = self._next
        count = max(0, min(size, len(self._ids) - start))
        self._next = start + count
        taken = list(
            zip(
                self._ids[start : start + count].tolist(),
                self._telephones.slice(start, count).to_pylist(),
                self._days.slice(start, count).to_pylist(),
                strict=True,
            )
        )
        if not taken and len(self._telephones):  # all handed out: free the columns (the
            self._telephones = pa.chunked_array([], pa.string())  # run holds this queue
            self._days = pa.chunked_array([], pa.int64())  # until its reports are written)
        return taken


def ready_lines(lines: RunLines, journal: Journal) -> ReadyLines | None:
    """What ``journal.send_queue()`` would hand out now, from ``lines`` (as the bulk path
    loaded them); None when they do not match the journal's ready lines (send from its queue)."""
    changes = journal.changed_lines(LOADED)
    count = lines.count
    if changes.verdicts or changes.line_count != count:
        return None
    gone = np.zeros(count, dtype=bool)  # duplicates, and lines the ledger skipped
    gone[lines.duplicates.lines.to_numpy(zero_copy_only=False)] = True
    gone[[row[0] - 1 for row in changes.lines]] = True
    ids, telephones, days, start = [], [], [], 0
    for sheet in lines.sheets:
        table, size = sheet.table, sheet.table.num_rows
        ready = pc.fill_null(pc.equal(table.column("status"), Status.READY.value), False)
        ready = np.asarray(ready.to_numpy(zero_copy_only=False), dtype=bool)
        ready &= ~gone[start : start + size]
        mask = pa.array(ready)
        ids.append(np.flatnonzero(ready) + start + 1)
        telephones += pc.filter(table.column("telephone"), mask).chunks
        days += pc.filter(table.column("days_block"), mask).chunks
        start += size
    del gone
    ready_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    del ids
    # kept in chunks, as filtered: one copy of the ready lines, never two (issue 5's peak)
    queue = ReadyLines(
        ready_ids.astype(np.int64, copy=False),
        pa.chunked_array(telephones, pa.string()),
        pa.chunked_array(days, pa.int64()),
    )
    del telephones, days
    if journal.digest(Status.READY) != queue.digest():
        log.warning("the lines in memory do not match the journal: sending from the journal")
        return None
    give_back()  # what finding the ready lines freed (~6 MB of 200,000 lines' peak)
    return queue


def refresh_sent(lines: RunLines, journal: Journal) -> None:
    """Make ``lines`` (as the bulk path loaded them) say what ``journal`` says after sending."""
    changes = journal.changed_lines(LOADED)
    where = _changed_at(changes, lines.count)
    if where is None or not _all_ready(lines, where):
        log.warning("the lines in memory do not match the journal: reading them all back")
        read_back(lines, journal)
        return
    values = _values(changes)
    # the messages as a dictionary (one per batch, not one per line: columns.SENT_MESSAGE)
    messages = pc.dictionary_encode(values.pop("message"))
    start = 0
    for sheet in lines.sheets:
        size = sheet.table.num_rows
        at = where[start : start + size]
        start += size
        changed = at >= 0
        if not changed.any():
            continue
        mask, taken = pa.array(changed), pa.array(at[changed])
        table = (
            with_messages(sheet.table) if SENT_MESSAGE in sheet.table.column_names else sheet.table
        )
        for name in ("status", "reason"):
            column = table.schema.get_field_index(name)
            new = pc.take(values[name], taken)
            table = table.set_column(
                column, name, pc.replace_with_mask(table.column(column), mask, new)
            )
        column = table.schema.get_field_index("message")
        nulls = pa.nulls(len(taken), pa.string())
        table = table.set_column(
            column, "message", pc.replace_with_mask(table.column(column), mask, nulls)
        )
        sent = pc.take(messages, pa.array(at, mask=~changed))  # null where unchanged
        table = table.append_column(SENT_MESSAGE, sent)
        if "batch" in table.column_names:
            batch = table.column("batch")
            table = table.drop_columns(["batch"])
        else:
            batch = pa.chunked_array([pa.nulls(size, pa.int64())])
        batch = pc.replace_with_mask(batch, mask, pc.take(values["batch"], taken))
        sheet.table = table.append_column("batch", batch)
    give_back()  # the old columns and the work arrays (~6 MB of 200,000 lines' peak)


def _changed_at(changes: LineChanges, count: int) -> np.ndarray | None:
    """For each line (by place), which value of ``_values`` it now has (-1: unchanged); None
    when the journal's lines are not these (another count, an id out of range)."""
    if changes.line_count != count:
        return None
    where = np.full(count, -1, dtype=np.int64)
    if changes.lines:  # first: a verdict not settled yet still goes over its lines
        ids = np.fromiter((row[0] for row in changes.lines), np.int64, len(changes.lines))
        if ids.min() < 1 or ids.max() > count:
            return None
        where[ids - 1] = np.arange(len(ids))
    kind = len(changes.lines)
    for verdict in changes.verdicts:
        for first, last in verdict[4]:
            if not 1 <= first <= last <= count:
                return None
            where[first - 1 : last] = kind
        kind += 1
    return where


def _all_ready(lines: RunLines, where: np.ndarray) -> bool:
    """Whether every changed line is ready, and no duplicate, in ``lines``."""
    changed = np.flatnonzero(where >= 0)
    duplicate = np.zeros(len(where), dtype=bool)  # a mask, not np.isin: no sorted copies
    duplicate[lines.duplicates.lines.to_numpy(zero_copy_only=False)] = True
    if duplicate[changed].any():
        return False
    del duplicate
    start = 0
    for sheet in lines.sheets:
        size = sheet.table.num_rows
        inside = changed[(changed >= start) & (changed < start + size)] - start
        start += size
        if len(inside):
            statuses = pc.take(sheet.table.column("status"), pa.array(inside))
            if not pc.all(pc.equal(statuses, Status.READY.value)).as_py():
                return False
    return True


def _values(changes: LineChanges) -> dict[str, pa.Array]:
    """The new values, changed lines first, then the verdicts (as ``_changed_at`` numbers them)."""
    rows = [row[1:] for row in changes.lines] + [
        (status, reason, message, batch) for batch, status, reason, message, _ in changes.verdicts
    ]
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    values = {name: pa.array(columns[n], kind) for n, (name, kind) in enumerate(_VALUES)}
    values["batch"] = pa.array(columns[3], pa.int64())
    return values

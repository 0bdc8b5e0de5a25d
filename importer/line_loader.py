"""Put a run's lines, held as columns, into its journal: the bulk path's last step of the load.

The lines go in in line order, so that their ids are 1, 2, ... as ``Journal.add_outcomes`` gives
them. A few lines go in through ``Journal.add_outcomes`` itself. Many go in from a second
process (``python -m importer.line_loader JOURNAL``) that reads them as an Arrow stream on its
standard input and appends them with the ADBC SQLite driver, which binds whole columns in C:
a million lines cost the journal ~7 s through Python's sqlite3 module and ~2.5 s this way, on
the other core, while this process goes on judging rows (and a dry run, writing its reports).
The journal is a WAL-mode SQLite file,
so the second process is one more connection to it, in its own transaction: if it fails,
nothing of it is kept, and the lines go in through ``add_outcomes`` instead (which raises
JournalError if the journal cannot take them). The run's own connection writes nothing
meanwhile.

``read_back`` takes again from the journal what sending changes in the lines.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from itertools import islice
from pathlib import Path
from queue import SimpleQueue
from types import TracebackType
from typing import IO, Self

import pyarrow as pa

from importer.columns import (
    LINE_SCHEMA,
    SENT_AS,
    SENT_MESSAGE,
    Duplicates,
    RunLines,
    SheetLines,
    pyarrow_without_pandas,
    with_messages,
)
from importer.errors import JournalError
from importer.journal import Journal
from importer.model import OUTCOME_COLUMNS, Outcome, Reason, Status

__all__ = ["LineWriter", "read_back"]

log = logging.getLogger("importer")

SECOND_PROCESS_LINES = 50_000
"""From this many lines a second process stores them (below, starting it costs more)."""
_STATUSES = {status.value: status for status in Status}
_SCHEMA = pa.schema(
    [
        pa.field(name, pa.int64() if name == "batch" else LINE_SCHEMA.field(name).type)
        if name not in ("source_file", "sheet")
        else pa.field(name, pa.dictionary(pa.int8(), pa.string()))
        for name in OUTCOME_COLUMNS
    ]
)
"""The columns of the journal's ``lines`` table (but its id), as the second process gets them."""


class LineWriter:
    """Append lines to a new run's journal as they are judged; ``close`` waits until they are in.

    >>> with LineWriter(journal) as writer:  # doctest: +SKIP
    ...     writer.add(sheet_lines)
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._before = journal.line_count()
        self._added: list[SheetLines] = []
        self._count = 0
        self._child: _Child | None = None
        self._duplicates: Duplicates | None = None

    def add(self, lines: SheetLines) -> None:
        """Queue the lines of one batch (they go in after every line added before them), as
        they are now (a table is never changed in place; ``lines.table`` may be replaced)."""
        lines = SheetLines(lines.source_file, lines.sheet, lines.table)
        self._added.append(lines)
        self._count += lines.table.num_rows
        if self._child is not None:
            self._child.send(lines)
        elif self._count >= SECOND_PROCESS_LINES and _can_start():
            self._child = _Child(self._journal.path)
            for added in self._added:
                self._child.send(added)

    @property
    def elsewhere(self) -> bool:
        """Whether a second process stores the lines (``close`` waits for it; this process is
        free meanwhile)."""
        return self._child is not None

    def mark(self, duplicates: Duplicates) -> None:
        """Have ``duplicates`` marked (their places counted from the first line added), after
        every line added (none may be added after them); ``close`` waits until they are."""
        self._duplicates = duplicates
        if self._child is not None:
            self._child.send(_updates(duplicates, self._before + 1))

    def close(self, duplicates: Duplicates | None = None) -> int:
        """Wait until every line added is in the journal, the duplicates marked (``mark``, or
        ``duplicates`` here); return how many lines were added."""
        if duplicates is not None or self._duplicates is None:
            self.mark(duplicates or Duplicates.none())
        marked = self._duplicates or Duplicates.none()
        before = self._before
        if self._child is not None:
            child, self._child = self._child, None
            try:
                child.finish()
            except JournalError as exc:  # its transaction was rolled back: store them here
                log.warning("%s; storing them in this process", exc)
        if self._journal.line_count() == before:
            self._journal.add_outcomes(_outcomes(self._added))
            self._journal.set_lines(
                (before + 1 + at, Status.DUPLICATE, Reason.DUPLICATE, message)
                for at, message in zip(
                    marked.lines.to_pylist(), marked.messages.to_pylist(), strict=True
                )
            )
        stored = self._journal.line_count() - before
        if stored != self._count:
            raise JournalError(
                f"run journal {self._journal.path}: {self._count} lines were judged but "
                f"{stored} stored (this is a bug)"
            )
        return stored

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._child is not None:
            self._child.kill()


def _can_start() -> bool:
    """Whether the ADBC SQLite driver is there (else every line goes in through sqlite3)."""
    return importlib.util.find_spec("adbc_driver_sqlite") is not None


def _outcomes(sheets: Sequence[SheetLines]) -> Iterator[Outcome]:
    for sheet in sheets:
        table = with_messages(sheet.table)
        columns = [table.column(name).to_pylist() for name in LINE_SCHEMA.names]
        for row, part, phone, days, telephone, block, status, reason, message in zip(
            *columns, strict=True
        ):
            yield Outcome(
                sheet.source_file, sheet.sheet, row, part, phone, days, telephone, block,
                _STATUSES[status], reason, message,
            )  # fmt: skip


def _record_batch(lines: SheetLines) -> pa.RecordBatch:
    """The lines of one batch with every column of the journal's ``lines`` table; the sheet's
    own columns dictionary-encoded (one byte a line to send)."""
    table = with_messages(lines.table)
    size = table.num_rows
    columns = []
    for name in OUTCOME_COLUMNS:
        if name in ("source_file", "sheet"):
            value = lines.source_file if name == "source_file" else lines.sheet
            indices = pa.repeat(pa.scalar(0, pa.int8()), size)
            columns.append(pa.DictionaryArray.from_arrays(indices, pa.array([value])))
        elif name == "batch":
            columns.append(pa.nulls(size, pa.int64()))
        else:
            column = table.column(name)  # one chunk as it is (combining would copy it)
            columns.append(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks())
    return pa.RecordBatch.from_arrays(columns, schema=_SCHEMA)


_UPDATES = pa.schema([("message", pa.string()), ("id", pa.int64())])
"""The second stream: the duplicates' messages and line ids."""
_UPDATE = "UPDATE lines SET status = 'duplicate', reason = 'duplicate', message = ? WHERE id = ?"


def _updates(duplicates: Duplicates, first: int) -> pa.RecordBatch:
    ids = pa.array(duplicates.lines.to_numpy() + first)
    return pa.RecordBatch.from_arrays([duplicates.messages, ids], schema=_UPDATES)


def _command(journal: Path) -> list[str]:
    """The second process's command line."""
    return [sys.executable, "-m", "importer.line_loader", str(journal)]


class _Child:
    """The second process, fed by a thread of this one (so that judging never waits on it).

    Its standard input gets two Arrow IPC streams: the lines, then the duplicates to mark.
    """

    def __init__(self, journal: Path) -> None:
        self._process = subprocess.Popen(
            _command(journal),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._queue: SimpleQueue[SheetLines | pa.RecordBatch] = SimpleQueue()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="dnc-line-loader", daemon=True)
        self._thread.start()

    def send(self, lines: SheetLines | pa.RecordBatch) -> None:
        """Queue a batch of lines, or (last) the duplicates' updates."""
        self._queue.put(lines)

    def _feed(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        sink = pa.PythonFile(stdin, mode="w")  # written a buffer at a time, never copied whole
        try:
            with pa.ipc.new_stream(sink, _SCHEMA) as writer:
                while isinstance(lines := self._queue.get(), SheetLines):
                    writer.write_batch(_record_batch(lines))
            with pa.ipc.new_stream(sink, _UPDATES) as writer:
                writer.write_batch(lines)
        except (OSError, ValueError, pa.ArrowException) as exc:  # the process says why
            self._failed = exc
        finally:
            with suppress(OSError):  # what is left in its buffer cannot go to a dead process
                stdin.close()

    def finish(self) -> None:
        """Wait for the process to commit everything (the updates sent last)."""
        self._thread.join()
        self._process.stdin = None  # the feeding thread closed it
        out, err = self._process.communicate()
        if self._process.returncode != 0 or self._failed is not None:
            why = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise JournalError(f"the lines could not be stored in the run journal ({why})")
        del out

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._queue.put(_updates(Duplicates.none(), 0))
        self._thread.join()


def _store(journal: str, stream: IO[bytes]) -> int:
    """The second process: append the lines of an Arrow stream to ``journal``'s ``lines``, then
    mark the duplicates of the second stream, in one transaction.

    Through the driver manager's own statements, not its DB-API module, which imports
    ``pyarrow.dataset`` (~0.3 s); the driver reads the whole stream of lines in one bind.
    """
    import adbc_driver_sqlite
    from adbc_driver_manager import AdbcConnection, AdbcStatement

    with adbc_driver_sqlite.connect(journal) as database, AdbcConnection(database) as connection:

        def run(sql: str) -> None:
            with AdbcStatement(connection) as statement:
                statement.set_sql_query(sql)
                statement.execute_update()

        run("PRAGMA synchronous = OFF")  # as the run's own connection while loading
        run("PRAGMA busy_timeout = 10000")
        run("BEGIN IMMEDIATE")
        try:
            with AdbcStatement(connection) as statement:
                statement.set_options(**_INGEST)
                statement.bind_stream(pa.ipc.open_stream(stream))
                stored = int(statement.execute_update())
            updates = pa.ipc.open_stream(stream).read_all()
            if updates.num_rows:
                with AdbcStatement(connection) as statement:
                    statement.set_sql_query(_UPDATE)
                    statement.prepare()
                    statement.bind_stream(updates)
                    statement.execute_update()
        except BaseException:
            run("ROLLBACK")
            raise
        run("COMMIT")
    return stored


_INGEST = {"adbc.ingest.target_table": "lines", "adbc.ingest.mode": "adbc.ingest.mode.append"}


_CHANGED = ("status", "reason", "message", "batch")
"""The columns of a line that sending (and the ledger's skip) may change."""


def read_back(lines: RunLines, journal: Journal) -> None:
    """Take ``_CHANGED`` of every line from the journal (where the lines are, in line order)."""
    rows = journal.rows(_CHANGED)
    for sheet in lines.sheets:
        size = sheet.table.num_rows
        status, reason, message, batch = zip(*islice(rows, size), strict=True) if size else [()] * 4
        table = sheet.table
        table = table.drop_columns(  # every message is the journal's now
            [name for name in (SENT_AS, SENT_MESSAGE) if name in table.column_names]
        )
        for name, values in (("status", status), ("reason", reason), ("message", message)):
            table = table.set_column(
                table.schema.get_field_index(name), name, pa.array(values, pa.string())
            )
        if "batch" in table.column_names:
            table = table.drop_columns(["batch"])
        sheet.table = table.append_column("batch", pa.array(batch, pa.int64()))
    if next(rows, None) is not None:
        raise JournalError(f"run journal {journal.path} holds more lines than the run read")
    lines.duplicates = Duplicates.none()  # the journal's statuses hold them now


if __name__ == "__main__":
    pyarrow_without_pandas()
    print(json.dumps({"lines": _store(sys.argv[1], sys.stdin.buffer)}))

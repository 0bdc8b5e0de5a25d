"""The run journal: every line of a run, its verdict and every batch, in one SQLite file.

The pipeline streams validator outcomes in (``add_outcomes``), marks duplicates in SQL
(``mark_duplicates``), reads the ready items to send (``items``), records each batch as in
flight before its request leaves (``begin_batch``) and commits each verdict durably before
the next batch leaves (``record_batch``). The reporter writes every report from it
(``rows`` and ``counts``), so reports can be rebuilt at any time and ``resume`` finds
exactly what was not confirmed.

The file is WAL-mode SQLite. A new journal loads with ``synchronous=OFF`` (nothing is sent
yet, so a crash then leaves nothing to resume: the run is started again); ``ready_to_send``
(called by ``begin_batch`` at the latest) flushes it to disk and switches to
``synchronous=NORMAL``: in WAL mode a commit then survives the process being killed at any moment
(``kill -9`` loses nothing that was committed); only a power cut may lose the last verdicts, and
resume then sends those batches again. An fsync per batch (FULL) cost 4-10 ms a request here,
more than the tool's whole budget per request (issue 5). ``open`` always uses NORMAL. The file is created mode 0600 (it holds personal phone
numbers). Every ``sqlite3.Error`` becomes a ``JournalError`` here.

Speed (1M lines, issue 5): lines go in as plain tuples built in C, 20 per INSERT; duplicates
are found by one GROUP BY, then judged among the few candidates; reports read plain tuples
(``rows``), not Outcome objects. ``python -m benchmarks.bench_store`` times each step.

Iterators (``items``, ``outcomes``, ``rows``) read in pages by line id, holding no statement open
between pages, so the journal may be written while they are being consumed: a line already
handed out is never handed out again, and a line whose status changes before its page is
read is seen with its new status.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime
from functools import cache
from itertools import chain, islice
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict

from importer.errors import JournalError
from importer.model import OUTCOME_COLUMNS, BatchResult, Outcome, SendItem, Status

SCHEMA_VERSION = 1
APPLICATION_ID = 0x444E4349  # "DNCI": tells our journals from any other SQLite file

_STATUSES = {status.value: status for status in Status}
_INSERT_CHUNK = 20
"""Lines per INSERT statement: one statement of 20 rows costs ~40% less than 20 of one row."""
_PAGE = 10_000
"""Lines per page read (``outcomes``, ``rows``), by line id: no statement stays open between."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, detected TEXT NOT NULL
);
CREATE TABLE lines (
    id INTEGER PRIMARY KEY,
    source_file TEXT NOT NULL, sheet TEXT NOT NULL, row INTEGER NOT NULL, part INTEGER NOT NULL,
    raw_phone TEXT NOT NULL, raw_days TEXT NOT NULL, telephone TEXT NOT NULL,
    days_block INTEGER, status TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL,
    batch INTEGER
);
CREATE TABLE batches (
    batch INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'done', 'abandoned')),
    size INTEGER NOT NULL, started TEXT NOT NULL, finished TEXT,
    status TEXT, reason TEXT, message TEXT, http_status INTEGER, code TEXT, msg TEXT,
    added INTEGER, rejected INTEGER, sent INTEGER, attempts INTEGER
);
CREATE TABLE batch_lines (batch INTEGER NOT NULL, line_id INTEGER NOT NULL);
CREATE INDEX batch_lines_batch ON batch_lines (batch);
CREATE INDEX batch_lines_line ON batch_lines (line_id);
"""

_LINE_COLUMNS = ", ".join(OUTCOME_COLUMNS)
_TEXT_COLUMNS = frozenset(
    {"source_file", "sheet", "raw_phone", "raw_days", "telephone", "reason", "message"}
)
"""The columns ``rows(escape=...)`` escapes: any text (``status`` holds only Status values)."""

# An Outcome as the values of one row, built in C (no Python code per line). ``status._value_``
# binds the plain text: a str-subclass enum member costs SQLite's adapter lookup ~2 us a line.
_OUTCOME_ROW = attrgetter(
    *("status._value_" if name == "status" else name for name in OUTCOME_COLUMNS)
)
_ROW_MARKS = "(" + ",".join("?" * len(OUTCOME_COLUMNS)) + ")"

# The kept line of each telephone among READY lines: the longest block, then the earliest line.
# Only lines whose telephone is on more than one READY line take part: one GROUP BY finds those
# telephones (~5% of a big run), so the window and the update work on a small temp table, never
# on every line (4x faster on 1M lines than a window over them all).
_DUPLICATE_CANDIDATES = """
CREATE TEMP TABLE dnc_candidates AS
SELECT id, telephone, days_block FROM lines
WHERE status = 'ready' AND telephone IN (
    SELECT telephone FROM lines WHERE status = 'ready' GROUP BY telephone HAVING COUNT(*) > 1
)
"""
_MARK_DUPLICATES = """
WITH dup AS MATERIALIZED (
    SELECT id, kept_id FROM (
        SELECT id, FIRST_VALUE(id) OVER w AS kept_id, ROW_NUMBER() OVER w AS rn
        FROM temp.dnc_candidates
        WINDOW w AS (PARTITION BY telephone ORDER BY days_block DESC, id)
    )
    WHERE rn > 1 ORDER BY id
)
UPDATE lines
SET status = 'duplicate', reason = 'duplicate',
    message = 'duplicate of ' || kept.source_file
        || CASE WHEN kept.sheet = '' THEN '' ELSE ':' || kept.sheet END
        || ' row ' || kept.row
        || CASE WHEN kept.part > 1 THEN ' part ' || kept.part ELSE '' END
        || ' (kept there with ' || COALESCE(kept.days_block, '?')
        || CASE WHEN kept.days_block = 1 THEN ' day)' ELSE ' days)' END
FROM dup JOIN lines AS kept ON kept.id = dup.kept_id
WHERE lines.id = dup.id
"""

# skip_verdict in SQL: blocked until added_on + days, skipped when that is at least today plus
# the line's block. ISO dates compare as text; SQLite's date() writes them as date.isoformat().
_SKIP_CONFIRMED = """
UPDATE lines
SET status = 'skipped', reason = 'already-blocked',
    message = 'already blocked on ' || :server || ' until '
        || date(b.added_on, '+' || b.days || ' days') || ' (confirmed ' || b.added_on
        || ' for ' || b.days || CASE WHEN b.days = 1 THEN ' day' ELSE ' days' END
        || '); --no-skip sends it again'
FROM dnc_ledger.blocks AS b
WHERE lines.status = 'ready'
    AND b.server_id = (SELECT id FROM dnc_ledger.servers WHERE name = :server)
    AND b.telephone = lines.telephone
    AND date(b.added_on, '+' || b.days || ' days')
        >= date(:today, '+' || lines.days_block || ' days')
"""


class LineCounts(TypedDict):
    """The lines of a run counted (``Journal.counts``), as summary.json's ``counts`` hold them."""

    lines: int
    by_status: dict[str, int]
    """Every Status value, 0 included."""
    by_reason: dict[str, int]
    """Every reason present, sorted."""


class Journal:
    """One run's journal file. Use ``create`` for a new run, ``open`` to read or resume one.

    >>> with Journal.open(run_dir / "journal.sqlite") as journal:  # doctest: +SKIP
    ...     journal.counts_by_status()["ready"]
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._loading = False

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, *, run_id: str, meta: Mapping[str, object]) -> Journal:
        """Create a new journal file (mode 0600, WAL); fail if the file already exists."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise JournalError(
                f"run journal {path} already exists: a run id is used once; "
                f"start a new run, or `dnc-import resume` that one"
            ) from exc
        except OSError as exc:
            raise JournalError(
                f"run journal {path} cannot be created ({exc.strerror}): "
                f"give --reports-dir a folder you can write"
            ) from exc
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        journal: Journal | None = None
        try:
            with _translated(path, "create the journal"):
                connection = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None
                )
                journal = cls(path, connection)
                journal._configure()
                journal._db.execute("PRAGMA synchronous = OFF")  # until ready_to_send()
                journal._loading = True
                journal._db.executescript(
                    f"PRAGMA application_id = {APPLICATION_ID};"
                    f"PRAGMA user_version = {SCHEMA_VERSION};"
                    f"BEGIN; {_SCHEMA} COMMIT;"
                )
            journal._put_meta({**meta, "run_id": run_id})
        except BaseException:
            if journal is not None:
                journal.close()
            _remove_journal_files(path)
            raise
        return journal

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open an existing journal; JournalError naming the path if missing, corrupt or foreign."""
        if not path.is_file():
            raise JournalError(
                f"run journal {path} does not exist: check the run id, and give --reports-dir "
                f"as it was given to the run"
            )
        try:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise JournalError(f"run journal {path} cannot be opened ({exc})") from exc
        journal = cls(path, connection)
        try:
            journal._check_schema()
        except BaseException:
            connection.close()
            raise
        return journal

    def close(self) -> None:
        """Close the file (idempotent). Everything committed stays."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _configure(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(
                f"run journal {self.path} cannot use write-ahead logging (journal mode {mode}): "
                f"put --reports-dir on a local disk"
            )
        # NORMAL in WAL: every commit survives kill -9 (see the module docstring).
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA cache_size = -16000")  # 16 MB: bulk loads and the duplicate pass

    def _check_schema(self) -> None:
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise JournalError(
                f"run journal {self.path} is corrupt or not a journal ({exc}): "
                f"the run cannot be resumed; its reports, if written, are in the same folder"
            ) from exc
        if app_id != APPLICATION_ID:
            raise JournalError(
                f"{self.path} is not a dnc-import run journal: give the journal.sqlite of a run folder"
            )
        if version != SCHEMA_VERSION:
            raise JournalError(
                f"run journal {self.path} has schema version {version}, this dnc-import reads "
                f"version {SCHEMA_VERSION}: use the dnc-import version that made the run"
            )
        with self._guard("open the journal"):
            self._configure()

    def _guard(self, action: str) -> AbstractContextManager[None]:
        return _translated(self.path, action)

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._guard(action):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta and sources ---------------------------------------------------------------

    def set_meta(self, key: str, value: object) -> None:
        """Store one JSON value under ``key`` (replacing any earlier value)."""
        self._put_meta({key: value})

    def _put_meta(self, values: Mapping[str, object]) -> None:
        rows = [(key, _to_json(self.path, key, value)) for key, value in values.items()]
        with self._transaction("store run settings") as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)

    def get_meta(self, key: str) -> object | None:
        """The value stored under ``key``, or None."""
        with self._guard("read run settings"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def meta(self) -> dict[str, object]:
        """Every stored key and value."""
        with self._guard("read run settings"):
            rows = self._db.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def add_source(self, path: str, sha256: str, detected: Mapping[str, object]) -> None:
        """Record one input file, its sha256 and what the reader detected in it."""
        text = _to_json(self.path, f"source {path}", dict(detected))
        with self._transaction("record an input file") as db:
            db.execute(
                "INSERT INTO sources (path, sha256, detected) VALUES (?, ?, ?)",
                (path, sha256, text),
            )

    def sources(self) -> list[dict[str, object]]:
        """The input files in the order recorded: ``{"path", "sha256", "detected"}``."""
        with self._guard("read the input files"):
            rows = self._db.execute("SELECT path, sha256, detected FROM sources ORDER BY id")
            return [
                {"path": path, "sha256": sha, "detected": json.loads(detected)}
                for path, sha, detected in rows.fetchall()
            ]

    # -- lines ----------------------------------------------------------------------------

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> int:
        """Append outcome lines in the order given, in one transaction; return how many.

        The iterable is consumed as it goes, so a generator of any length streams through.
        If it raises, nothing of this call is kept and the error goes on unchanged. Each
        ``status`` must be a Status member (its value is read in C, as ``status._value_``).
        """
        rows = map(_OUTCOME_ROW, outcomes)
        chunk, width = _INSERT_CHUNK, len(OUTCOME_COLUMNS)
        with self._transaction("store outcome lines") as db:
            before = db.total_changes
            while values := tuple(chain.from_iterable(islice(rows, chunk))):
                db.execute(_insert_lines(len(values) // width), values)
            return db.total_changes - before

    def mark_duplicates(self) -> int:
        """Among READY lines of one telephone keep the longest block (tie: the earliest line).

        Every other becomes ``duplicate`` with a message naming the kept line, e.g.
        ``duplicate of crm.xlsx:Clientes row 7 (kept there with 90 days)``. Returns how many.
        """
        with self._transaction("mark duplicates") as db:
            db.execute(_DUPLICATE_CANDIDATES)
            before = db.total_changes
            db.execute(_MARK_DUPLICATES)
            marked = db.total_changes - before
            db.execute("DROP TABLE temp.dnc_candidates")
            return marked

    def skip_confirmed(self, ledger_path: Path, server: str, today: date) -> int:
        """Mark ``skipped`` every READY line the ledger says ``server`` still blocks long enough.

        The same rule and message as ``importer.ledger.skip_verdict`` (blocked until
        ``added_on + days`` >= ``today + days_block``), in one UPDATE over the ledger file
        attached read-only. Returns how many lines were skipped.
        """
        action = f"skip the numbers the ledger {ledger_path} confirmed"
        with self._guard(action):
            self._db.execute(
                "ATTACH DATABASE ? AS dnc_ledger", (f"{ledger_path.resolve().as_uri()}?mode=ro",)
            )
        try:
            with self._transaction(action) as db:
                return db.execute(
                    _SKIP_CONFIRMED, {"server": server, "today": today.isoformat()}
                ).rowcount
        finally:
            with self._guard(action):
                self._db.execute("DETACH DATABASE dnc_ledger")

    def items(self, statuses: Collection[Status] = (Status.READY,)) -> Iterator[SendItem]:
        """The lines with one of ``statuses`` as items to send, in line order, page by page."""
        wanted = [Status(status).value for status in statuses]
        if not wanted:
            return
        marks = ",".join("?" * len(wanted))
        query = (
            f"SELECT id, telephone, days_block FROM lines WHERE status IN ({marks}) AND id > ?"
            f" ORDER BY id LIMIT {_PAGE}"
        )
        last = 0
        while True:
            with self._guard("read the lines to send"):
                page = self._db.execute(query, (*wanted, last)).fetchall()
            for line_id, telephone, days_block in page:
                yield SendItem(line_id, telephone, days_block)
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def outcomes(self) -> Iterator[Outcome]:
        """Every line as an Outcome, in line order, page by page."""
        query = self._rows_query(OUTCOME_COLUMNS, None, "")
        for file, sheet, row, part, phone, days, tel, block, status, *rest in self._paged(query):
            yield Outcome(file, sheet, row, part, phone, days, tel, block, _STATUSES[status], *rest)

    def rows(
        self,
        columns: Sequence[str] = OUTCOME_COLUMNS,
        *,
        escape: Callable[[str], str] | None = None,
        escape_first: str = "",
    ) -> Iterator[tuple[object, ...]]:
        """Every line as a plain tuple of ``columns`` (OUTCOME_COLUMNS names), in line order.

        The fast way to read many lines: no Outcome objects, ``status`` as its text. With
        ``escape``, each text cell whose first character is in ``escape_first`` is replaced by
        ``escape(cell)`` inside SQLite, which calls it for those cells alone (the reporter passes
        ``safe_cell`` and the characters a spreadsheet may run as a formula).

        >>> next(journal.rows(("row", "status")))  # doctest: +SKIP
        (2, 'ready')
        """
        return self._paged(self._rows_query(columns, escape, escape_first))

    def _paged(self, query: str) -> Iterator[Any]:
        first, last = 1, self._last_id()
        while first <= last:
            with self._guard("read the outcome lines"):
                page = self._db.execute(query, (first, first + _PAGE - 1)).fetchall()
            yield from page
            first = min(first + _PAGE, last + 1)
            if first > last:  # lines added meanwhile are read too
                last = self._last_id()

    def _rows_query(
        self, columns: Sequence[str], escape: Callable[[str], str] | None, escape_first: str
    ) -> str:
        unknown = [name for name in columns if name not in OUTCOME_COLUMNS]
        if unknown or not columns:
            raise JournalError(
                f"run journal {self.path}: cannot read the columns {list(columns)!r}: name "
                f"some of {', '.join(OUTCOME_COLUMNS)} (this is a bug)"
            )
        selected = list(columns)
        if escape is not None and escape_first:
            with self._guard("read the outcome lines"):
                self._db.create_function("dnc_escape", 1, escape, deterministic=True)
            codes = ", ".join(str(ord(char)) for char in escape_first)
            selected = [
                f"CASE WHEN unicode({name}) IN ({codes}) THEN dnc_escape({name}) ELSE {name} END"
                if name in _TEXT_COLUMNS
                else name
                for name in columns
            ]
        # Pages are ranges of line ids: lines are never deleted, so ids run 1..N without gaps,
        # and a page needs no id handed back (nor a Python slice per line to drop it).
        return f"SELECT {', '.join(selected)} FROM lines WHERE id BETWEEN ? AND ? ORDER BY id"

    def _last_id(self) -> int:
        return self._scalar("SELECT COALESCE(MAX(id), 0) FROM lines")

    def mark_status(
        self, from_statuses: Collection[Status], to: Status, reason: str, message: str
    ) -> int:
        """Move every line in ``from_statuses`` to ``to`` with one reason and message."""
        wanted = [Status(status).value for status in from_statuses]
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        with self._transaction("update line statuses") as db:
            return db.execute(
                f"UPDATE lines SET status = ?, reason = ?, message = ? WHERE status IN ({marks})",
                (Status(to).value, reason, message, *wanted),
            ).rowcount

    def set_lines(self, updates: Iterable[tuple[int, Status, str, str]]) -> int:
        """Give single lines a new status, reason and message: ``(line_id, status, reason, message)``."""
        rows = (
            (Status(status).value, reason, message, line_id)
            for line_id, status, reason, message in updates
        )
        with self._transaction("update lines") as db:
            return db.executemany(
                "UPDATE lines SET status = ?, reason = ?, message = ? WHERE id = ?", rows
            ).rowcount

    # -- batches --------------------------------------------------------------------------

    def ready_to_send(self) -> None:
        """Flush the load to disk and keep every later commit (``synchronous=NORMAL``); idempotent.

        A new journal loads with ``synchronous=OFF``: until a number is sent a crash leaves
        nothing to resume (the run is started again), so the bulk load and the duplicate pass
        wait on no fsync. This flushes all of it to disk first. ``begin_batch`` calls it, so no
        request ever leaves before the journal is durable.
        """
        if not self._loading:
            return
        with self._guard("make the journal durable"):
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with _writing_file(self.path, "make the journal durable"):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)  # what the checkpoints wrote without syncing
            finally:
                os.close(fd)
        self._loading = False

    def begin_batch(self, batch: int, items: Sequence[SendItem]) -> None:
        """Record ``batch`` as in flight with its lines, committed before the request leaves.

        An earlier in-flight batch holding any of these lines is closed as abandoned: it was
        split, or it died with a crash or a stop and its lines go again in this one.
        """
        self.ready_to_send()
        try:
            with self._transaction(f"record batch {batch} as in flight") as db:
                db.execute(
                    "INSERT INTO batches (batch, state, size, started) VALUES (?, 'in_flight', ?, ?)",
                    (batch, len(items), _now()),
                )
                db.executemany(
                    "INSERT INTO batch_lines (batch, line_id) VALUES (?, ?)",
                    ((batch, item.line_id) for item in items),
                )
                superseded = [
                    row[0]
                    for row in db.execute(
                        "SELECT DISTINCT old.batch FROM batch_lines AS new"
                        " JOIN batch_lines AS old ON old.line_id = new.line_id"
                        " WHERE new.batch = ? AND old.batch != ?",
                        (batch, batch),
                    ).fetchall()
                ]
                for old in superseded:
                    self._abandon(db, old)
        except JournalError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise JournalError(
                    f"run journal {self.path}: batch {batch} was already begun: number each "
                    f"batch from next_batch_number() (this is a bug)"
                ) from exc.__cause__
            raise

    def record_batch(self, result: BatchResult) -> None:
        """Commit the verdict on every line of ``result`` and close the batch, durably."""
        action = f"record the verdict of batch {result.batch}"
        status = Status(result.status).value
        totals = result.totals
        with self._transaction(action) as db:
            state = db.execute(
                "SELECT state FROM batches WHERE batch = ?", (result.batch,)
            ).fetchone()
            if state is None or state[0] != "in_flight":
                raise JournalError(
                    f"run journal {self.path}: batch {result.batch} is "
                    f"{'not begun' if state is None else state[0]}, so its verdict cannot be "
                    f"recorded: call begin_batch before each request (this is a bug)"
                )
            db.executemany(
                "UPDATE lines SET status = ?, reason = ?, message = ?, batch = ? WHERE id = ?",
                (
                    (status, result.reason, result.message, result.batch, item.line_id)
                    for item in result.items
                ),
            )
            db.execute(
                "UPDATE batches SET state = 'done', finished = ?, status = ?, reason = ?,"
                " message = ?, http_status = ?, code = ?, msg = ?, added = ?, rejected = ?,"
                " sent = ?, attempts = ? WHERE batch = ?",
                (
                    _now(), status, result.reason, result.message, totals.http_status,
                    totals.code, totals.msg, totals.added, totals.rejected, totals.sent,
                    result.attempts, result.batch,
                ),
            )  # fmt: skip
            db.execute("DELETE FROM batch_lines WHERE batch = ?", (result.batch,))

    def abandon_batch(self, batch: int) -> None:
        """Close an in-flight batch that will get no verdict (``begin_batch`` does it for a batch
        whose lines go again).

        Its lines keep their status (still READY: they go again in another batch).
        """
        with self._transaction(f"abandon batch {batch}") as db:
            self._abandon(db, batch)

    @staticmethod
    def _abandon(db: sqlite3.Connection, batch: int) -> None:
        db.execute(
            "UPDATE batches SET state = 'abandoned', finished = ? "
            "WHERE batch = ? AND state = 'in_flight'",
            (_now(), batch),
        )
        db.execute("DELETE FROM batch_lines WHERE batch = ?", (batch,))

    def in_flight_batches(self) -> list[int]:
        """Batches begun and never recorded nor abandoned (a crash mid-request)."""
        with self._guard("read the batches"):
            rows = self._db.execute(
                "SELECT batch FROM batches WHERE state = 'in_flight' ORDER BY batch"
            ).fetchall()
        return [row[0] for row in rows]

    def batch_line_ids(self, batch: int) -> list[int]:
        """The line ids of an in-flight batch (empty once it is recorded or abandoned)."""
        with self._guard("read the batches"):
            rows = self._db.execute(
                "SELECT line_id FROM batch_lines WHERE batch = ? ORDER BY rowid", (batch,)
            ).fetchall()
        return [row[0] for row in rows]

    def next_batch_number(self) -> int:
        """1 + the largest batch number ever begun (1 for a new run)."""
        with self._guard("read the batches"):
            row = self._db.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM batches").fetchone()
        return int(row[0])

    # -- counts ---------------------------------------------------------------------------

    def line_count(self) -> int:
        """How many outcome lines the run has."""
        return self._scalar("SELECT COUNT(*) FROM lines")

    def counts_by_status(self) -> dict[str, int]:
        """Lines per status; every Status value is a key, 0 included."""
        counts = {status.value: 0 for status in Status}
        with self._guard("count the lines"):
            rows = self._db.execute("SELECT status, COUNT(*) FROM lines GROUP BY status")
            counts.update({status: count for status, count in rows.fetchall()})
        return counts

    def counts_by_reason(self) -> dict[str, int]:
        """Lines per reason code present, sorted by reason."""
        with self._guard("count the lines"):
            rows = self._db.execute(
                "SELECT reason, COUNT(*) FROM lines GROUP BY reason ORDER BY reason"
            ).fetchall()
        return dict(rows)

    def counts(self) -> LineCounts:
        """``{"lines": N, "by_status": {...}, "by_reason": {...}}`` in one pass over the lines.

        The same as ``line_count``, ``counts_by_status`` (every Status, 0 included) and
        ``counts_by_reason`` (sorted), which take a pass each.
        """
        by_status = {status.value: 0 for status in Status}
        by_reason: dict[str, int] = {}
        with self._guard("count the lines"):
            rows = self._db.execute(
                "SELECT status, reason, COUNT(*) FROM lines GROUP BY status, reason"
            ).fetchall()
        for status, reason, count in rows:
            by_status[status] = by_status.get(status, 0) + count
            by_reason[reason] = by_reason.get(reason, 0) + count
        return LineCounts(
            lines=sum(by_status.values()),
            by_status=by_status,
            by_reason=dict(sorted(by_reason.items())),
        )

    def distinct_rows(self) -> int:
        """How many distinct (source_file, sheet, row) the lines come from."""
        return self._scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT source_file, sheet, row FROM lines)"
        )

    def batch_totals(self) -> dict[str, int]:
        """Recorded batches, in-flight ones, HTTP attempts, and the sums of known server totals."""
        with self._guard("count the batches"):
            row = self._db.execute(
                "SELECT COUNT(*) FILTER (WHERE state = 'done'),"
                " COUNT(*) FILTER (WHERE state = 'in_flight'),"
                " COALESCE(SUM(attempts), 0), COALESCE(SUM(added), 0),"
                " COALESCE(SUM(rejected), 0), COALESCE(SUM(sent), 0) FROM batches"
            ).fetchone()
        keys = ("batches", "in_flight", "attempts", "added", "rejected", "sent")
        return {key: int(value) for key, value in zip(keys, row, strict=True)}

    def _scalar(self, query: str) -> int:
        with self._guard("count the lines"):
            return int(self._db.execute(query).fetchone()[0])


@contextmanager
def _translated(path: Path, action: str) -> Iterator[None]:
    """Translate sqlite3 errors (and text SQLite cannot store) into JournalError: the one place."""
    try:
        yield
    except sqlite3.Error as exc:
        raise JournalError(
            f"run journal {path}: cannot {action} ({exc}): check the disk has space and "
            f"the run folder is writable; everything committed before is kept"
        ) from exc
    except UnicodeEncodeError as exc:
        raise JournalError(
            f"run journal {path}: cannot {action}: a cell holds text that is not valid "
            f"Unicode ({exc.reason}); re-save the input as UTF-8"
        ) from exc


@contextmanager
def _writing_file(path: Path, action: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise JournalError(
            f"run journal {path}: cannot {action} ({exc.strerror or exc}): check the disk has "
            f"space and the run folder is writable"
        ) from exc


@cache
def _insert_lines(count: int) -> str:
    """One INSERT of ``count`` lines."""
    return f"INSERT INTO lines ({_LINE_COLUMNS}) VALUES " + ",".join([_ROW_MARKS] * count)


def _to_json(path: Path, key: str, value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise JournalError(
            f"run journal {path}: the value of {key!r} cannot be stored ({exc}): "
            f"give plain text, numbers, lists and dicts (this is a bug)"
        ) from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _remove_journal_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

"""The run journal: every line of a run, its verdict and every batch, in one SQLite file.

The pipeline streams validator outcomes in (``add_outcomes``), marks duplicates in SQL
(``mark_duplicates``), reads the ready items to send (``send_queue``, or ``items``), records
each batch as in flight before its request leaves (``begin_batch``) and commits each verdict
durably before the next batch leaves (``record_batch``). The reporter writes every report from
it (``rows`` and ``counts``), so reports can be rebuilt at any time and ``resume`` finds
exactly what was not confirmed. A bulk-path dry run alone stores no lines (``keeps_lines``):
it writes its reports from the lines it holds, and leaves nothing to resume.

A batch is one row (``batches``), its line ids held as runs of consecutive ids: beginning and
closing a batch of 1000 numbers writes that row, not 1000 (issue 5: 1000 single-line writes
cost ~10 ms a request here, ten times the tool's budget). A verdict is committed on the
batch row alone; it reaches the batch's lines later, in bulk (``settle``): at the end of the
sending (a bulk run has a second process do it, ``importer.aftercare``, and reads what changed
meanwhile with ``changed_lines``), and before anything reads or changes line statuses (every
method here that does calls ``_settle`` first, so no caller ever sees a line without its
verdict). Until then the batch row
is the truth, and it is durable: after a crash the next use of the journal settles it. A line
is never handed out to send while its verdict is unsettled (``SendQueue`` only moves forward
past what it handed out, and settles first if an unsettled batch lies ahead of it). The send
loop commits each verdict in the same transaction as the next batch's begin
(``record_batch(with_next=True)``): one commit per request, still before the next request
leaves; a kill before that commit leaves the answered batch in flight, as a kill just after
its answer always did, and resume treats its lines as "may have been added".

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
from operator import attrgetter, sub
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypedDict, cast

from importer.errors import JournalError
from importer.model import OUTCOME_COLUMNS, BatchResult, Outcome, SendItem, Status

SCHEMA_VERSION = 2
"""2: batch_lines (a row per line of each batch) replaced by batches.line_ranges (runs of line
ids, JSON); batches.ledgered (its confirmations are in the ledger's queue)."""
APPLICATION_ID = 0x444E4349  # "DNCI": tells our journals from any other SQLite file

_STATUSES = {status.value: status for status in Status}
_INSERT_CHUNK = 20
"""Lines per INSERT statement: one statement of 20 rows costs ~40% less than 20 of one row."""
DIGEST_MODULUS = 2_147_483_647
"""``Journal.digest`` sums the squares of line ids modulo this prime."""
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
    added INTEGER, rejected INTEGER, sent INTEGER, attempts INTEGER,
    ledgered INTEGER NOT NULL DEFAULT 0,
    line_ranges TEXT
);
"""
# batches.line_ranges: the line ids of a batch in flight, or done and not settled yet, as a JSON
# array of [first, last] runs of consecutive ids (~2 KB for 1000 lines, one page); NULL once its
# verdict is on its lines (settled) or once it is abandoned.

# Copy each done batch's verdict onto its lines, in batch order: one UPDATE of a range of rowids
# per run of line ids (an UPDATE ... FROM json_each joining them all scans every line instead).
_UNSETTLED_BATCHES = """
SELECT batch, status, reason, message, line_ranges FROM batches
WHERE state = 'done' AND line_ranges IS NOT NULL ORDER BY batch
"""
_SETTLE = """
UPDATE lines SET status = ?, reason = ?, message = ?, batch = ? WHERE id BETWEEN ? AND ?
"""
_SETTLED = "UPDATE batches SET line_ranges = NULL WHERE state = 'done' AND line_ranges IS NOT NULL"
_UNSETTLED = (
    "SELECT EXISTS (SELECT 1 FROM batches WHERE state = 'done' AND line_ranges IS NOT NULL)"
)
_RECORD = """
UPDATE batches SET state = 'done', finished = ?, status = ?, reason = ?, message = ?,
    http_status = ?, code = ?, msg = ?, added = ?, rejected = ?, sent = ?, attempts = ?
WHERE batch = ? AND state = 'in_flight'
"""
_BEGIN = """
INSERT INTO batches (batch, state, size, started, line_ranges) VALUES (?, 'in_flight', ?, ?, ?)
"""
_LINES_OF_RANGES = """
SELECT telephone, days_block FROM lines, json_each(?) AS r
WHERE lines.id BETWEEN json_extract(r.value, '$[0]') AND json_extract(r.value, '$[1]')
ORDER BY lines.id
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


class PreparedItems(Protocol):
    """Items that carry their line ids already, ascending, as a list and as ``line_ranges_json``
    (``chunker.Batch``, built while the previous request was in flight): ``begin_batch`` then
    does no work per line."""

    line_ids: list[int]
    line_ranges_json: str


def line_ranges_json(line_ids: Sequence[int]) -> str:
    """Ascending, distinct line ids as the journal stores a batch's: runs ``[first, last]``.

    >>> line_ranges_json([3, 4, 5, 9, 11, 12])
    '[[3,5],[9,9],[11,12]]'
    """
    if not line_ids:
        return "[]"
    # a run ends where the next id is not the next integer (the steps taken in C)
    steps = map(sub, line_ids[1:], line_ids[:-1])
    breaks = [n for n, step in enumerate(steps, 1) if step != 1]
    firsts = [line_ids[0], *(line_ids[n] for n in breaks)]
    lasts = [*(line_ids[n - 1] for n in breaks), line_ids[-1]]
    return "[" + ",".join(f"[{a},{b}]" for a, b in zip(firsts, lasts, strict=True)) + "]"


def _expand(ranges_json: str) -> list[int]:
    return [n for first, last in json.loads(ranges_json) for n in range(first, last + 1)]


class LineChanges(NamedTuple):
    """The lines whose values differ from a load's (``Journal.changed_lines``)."""

    line_count: int
    """How many lines the journal holds."""
    lines: list[tuple[int, str, str, str, int | None]]
    """``(line_id, status, reason, message, batch)``, in line order."""
    verdicts: list[tuple[int, str, str, str, list[tuple[int, int]]]]
    """``(batch, status, reason, message, [(first, last) line ids, ...])``, in batch order."""


class LineCounts(TypedDict):
    """The lines of a run counted (``Journal.counts``), as summary.json's ``counts`` hold them."""

    lines: int
    by_status: dict[str, int]
    """Every Status value, 0 included."""
    by_reason: dict[str, int]
    """Every reason present, sorted."""


LINES_KEPT_META = "lines_kept"
"""Meta: ``false`` when the run's lines are not stored (``Journal.keep_no_lines``)."""


class Journal:
    """One run's journal file. Use ``create`` for a new run, ``open`` to read or resume one.

    >>> with Journal.open(run_dir / "journal.sqlite") as journal:  # doctest: +SKIP
    ...     journal.counts_by_status()["ready"]
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._loading = False
        self._unsettled: bool | None = None
        """Whether a done batch's verdict is not on its lines yet; None: not known (opened)."""
        self._unsettled_top = 0
        """The largest line id of a batch recorded here and not settled yet (0: none)."""
        self._in_flight: dict[int, int] | None = None
        """The batches in flight and the largest line id of each (None: not read yet)."""
        self._held: tuple[BatchResult, str] | None = None
        """A verdict to write with the next batch begun (``record_batch(with_next=True)``)."""

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
        """Close the file (idempotent), writing a held verdict first. Everything committed
        stays."""
        try:
            self._write_held()
        finally:
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

    def lower_cache(self) -> None:
        """SQLite's default page cache (~2 MB) from here on: a bulk run keeps its lines in
        memory after its load, and the 16 MB cache the load filled would stay in its peak."""
        with self._guard("lower the page cache"):
            self._db.execute("PRAGMA cache_size = -2000")

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
        if self._held is not None:  # every use of the file writes a held verdict first
            self._write_held()
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

    def keep_no_lines(self) -> None:
        """Record that the run's lines are not stored here (a bulk-path dry run holds them in
        memory for its reports, and leaves nothing to resume): see ``keeps_lines``."""
        self.set_meta(LINES_KEPT_META, False)

    def keeps_lines(self) -> bool:
        """Whether the journal holds every line of its run, as every run's does but a
        bulk-path dry run's (``keep_no_lines``): only then can its reports be written from it."""
        return self.get_meta(LINES_KEPT_META) is not False

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
        self._settle()
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
        self._settle()
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
        queue = self.send_queue(statuses)
        while page := queue.take(_PAGE):
            for line_id, telephone, days_block in page:
                yield SendItem(line_id, telephone, days_block)

    def send_queue(self, statuses: Collection[Status] = (Status.READY,)) -> SendQueue:
        """The lines with one of ``statuses``, to be taken in line order: ``take(size)`` rows
        ``(line_id, telephone, days_block)`` at a time (the chunker's fast way; see SendQueue)."""
        self._settle()
        return SendQueue(self, [Status(status).value for status in statuses])

    def settle(self) -> None:
        """Copy every recorded verdict onto its lines now (the pipeline calls it once sending
        ends; every method that reads or changes line statuses does it first anyway)."""
        self._unsettled = None
        self._settle()

    def _settle(self) -> None:
        if self._unsettled is None:
            self._unsettled = bool(self._scalar(_UNSETTLED))
        if not self._unsettled:
            return
        with self._transaction("copy the verdicts onto their lines") as db:
            batches = db.execute(_UNSETTLED_BATCHES).fetchall()
            db.executemany(
                _SETTLE,
                (
                    (status, reason, message, batch, first, last)
                    for batch, status, reason, message, ranges in batches
                    for first, last in json.loads(ranges)
                ),
            )
            db.execute(_SETTLED)
        self._unsettled, self._unsettled_top = False, 0

    def digest(self, status: Status) -> tuple[int, ...]:
        """A digest of the lines with ``status``: how many, and the sums of their ids, of the
        squares of their ids modulo ``DIGEST_MODULUS`` (no sum overflows), of their days and of
        their telephones' lengths; to check a copy of them held elsewhere
        (``sent_lines.ready_lines``)."""
        self._settle()
        with self._guard("count the lines"):
            row = self._db.execute(
                "SELECT COUNT(*), SUM(id), SUM(id * id % ?), SUM(days_block),"
                " SUM(length(telephone)) FROM lines WHERE status = ?",
                (DIGEST_MODULUS, Status(status).value),
            ).fetchone()
        return tuple(int(value or 0) for value in row)

    def changed_lines(self, unchanged: Collection[Status]) -> LineChanges:
        """What a reader holding the lines with statuses among ``unchanged`` needs to be up to
        date, read without settling (one snapshot, no write): every line with another status,
        and the recorded verdicts not copied onto their lines yet, each of which then applies
        to the lines of its ranges (those lines are still among ``unchanged`` here).

        The bulk path's reports after sending: a few SELECTs, where settling then reading every
        line back cost ~1.5 s for 200,000 lines (issue 5); the settle is left to whoever comes
        next (``settle``).
        """
        marks = ",".join("?" * len(unchanged))
        with self._guard("read the changed lines"):
            self._db.execute("BEGIN")  # one snapshot: a settle elsewhere moves both at once
            try:
                lines = self._db.execute(
                    f"SELECT id, status, reason, message, batch FROM lines"
                    f" WHERE status NOT IN ({marks}) ORDER BY id",
                    [Status(status).value for status in unchanged],
                ).fetchall()
                batches = self._db.execute(_UNSETTLED_BATCHES).fetchall()
                # ids run 1..N without gaps (lines are never deleted): the last is the count
                count = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM lines").fetchone()[0]
            finally:
                self._db.execute("COMMIT")
        return LineChanges(
            int(count),
            lines,
            [
                (batch, status, reason, message, [(a, b) for a, b in json.loads(ranges)])
                for batch, status, reason, message, ranges in batches
            ],
        )

    def outcomes(self) -> Iterator[Outcome]:
        """Every line as an Outcome, in line order, page by page."""
        self._settle()
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
        self._settle()
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
        self._settle()
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
        self._settle()
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
        split, or it died with a crash or a stop and its lines go again in this one. ``items``
        that carry their line ids already (``PreparedItems``, the chunker's batches) cost no
        Python work per line here.
        """
        self.ready_to_send()
        in_flight = self._known_in_flight()
        held, self._held = self._held, None
        if hasattr(items, "line_ranges_json"):  # PreparedItems (isinstance on a Protocol: 30 us)
            prepared = cast(PreparedItems, items)
            ranges, size = prepared.line_ranges_json, len(prepared.line_ids)
            top = prepared.line_ids[-1] if size else 0
        else:
            line_ids = sorted({item.line_id for item in items})
            ranges, size, top = line_ranges_json(line_ids), len(line_ids), max(line_ids, default=0)
        others = [old for old in in_flight if held is None or old != held[0].batch]
        try:
            with self._transaction(f"record batch {batch} as in flight") as db:
                if held is not None:  # the previous batch's verdict, in the same commit
                    self._record(db, *held)
                db.execute(_BEGIN, (batch, size, _now(), ranges))
                superseded = self._overlapping(db, others, ranges) if others else []
                for old in superseded:
                    self._abandon(db, old)
        except JournalError as exc:
            self._held = held  # rolled back with this batch: written alone at the next use
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise JournalError(
                    f"run journal {self.path}: batch {batch} was already begun: number each "
                    f"batch from next_batch_number() (this is a bug)"
                ) from exc.__cause__
            raise
        except BaseException:
            self._held = held
            raise
        if held is not None:
            self._recorded(held[0].batch)
        for old in superseded:
            in_flight.pop(old, None)
        in_flight[batch] = top

    def _known_in_flight(self) -> dict[int, int]:
        """The batches in flight (read once; this instance keeps it up to date after)."""
        if self._in_flight is None:
            with self._guard("read the batches"):
                rows = self._db.execute(
                    "SELECT batch, line_ranges FROM batches WHERE state = 'in_flight'"
                ).fetchall()
            self._in_flight = {
                batch: max(_expand(ranges), default=0) if ranges else 0 for batch, ranges in rows
            }
        return self._in_flight

    @staticmethod
    def _overlapping(db: sqlite3.Connection, batches: list[int], ranges: str) -> list[int]:
        """Which of these in-flight batches hold one of the lines of ``ranges``."""
        mine = set(_expand(ranges))
        found = []
        for old in batches:
            row = db.execute("SELECT line_ranges FROM batches WHERE batch = ?", (old,)).fetchone()
            if row is not None and row[0] and not mine.isdisjoint(_expand(row[0])):
                found.append(old)
        return found

    def record_batch(self, result: BatchResult, *, with_next: bool = False) -> str:
        """Commit the verdict of ``result`` and close the batch, durably (one row); return the
        time it was recorded (``finished``: the time of the confirmation, for the ledger).

        ``with_next=True`` (the send loop, which begins the next batch at once): the verdict
        is written in the same transaction as the next ``begin_batch``, one commit per request
        instead of two, so it is still durable before the next request leaves. Until then it
        is held here, and any other use of the journal (or ``close``) writes it first.

        The verdict reaches each line of the batch at the next ``settle`` (module docstring).
        """
        self._write_held()
        finished = _now()
        if with_next and self._in_flight is not None and result.batch in self._in_flight:
            self._held = (result, finished)  # begun here and in flight: it will be written
        else:
            with self._transaction(f"record the verdict of batch {result.batch}") as db:
                self._record(db, result, finished)
            self._recorded(result.batch)
        return finished

    def _record(self, db: sqlite3.Connection, result: BatchResult, finished: str) -> None:
        totals = result.totals
        changed = db.execute(
            _RECORD,
            (
                finished, Status(result.status).value, result.reason, result.message,
                totals.http_status, totals.code, totals.msg, totals.added, totals.rejected,
                totals.sent, result.attempts, result.batch,
            ),
        ).rowcount  # fmt: skip
        if changed != 1:
            state = db.execute("SELECT state FROM batches WHERE batch = ?", (result.batch,))
            row = state.fetchone()
            raise JournalError(
                f"run journal {self.path}: batch {result.batch} is "
                f"{'not begun' if row is None else row[0]}, so its verdict cannot be "
                f"recorded: call begin_batch before each request (this is a bug)"
            )

    def _recorded(self, batch: int) -> None:
        self._unsettled = True
        top = None if self._in_flight is None else self._in_flight.pop(batch, None)
        # a batch this instance did not see begun: settle before any take
        self._unsettled_top = max(self._unsettled_top, top if top is not None else 1 << 62)

    def commit(self) -> None:
        """Write now a verdict ``record_batch(with_next=True)`` holds (any other use of the
        journal does it first too); nothing to do if none is held."""
        self._write_held()

    def _write_held(self) -> None:
        """Write a verdict ``record_batch(with_next=True)`` held, alone."""
        held, self._held = self._held, None
        if held is not None:
            result, finished = held
            with self._transaction(f"record the verdict of batch {result.batch}") as db:
                self._record(db, result, finished)
            self._recorded(result.batch)

    # -- confirmations for the ledger ----------------------------------------------------

    def unledgered_batches(self) -> list[tuple[int, str]]:
        """``(batch, finished)`` of every batch confirmed ``added`` whose numbers are not marked
        as queued in the ledger (``mark_ledgered``), in batch order."""
        with self._guard("read the batches"):
            return self._db.execute(
                "SELECT batch, finished FROM batches"
                " WHERE state = 'done' AND status = 'added' AND ledgered = 0 ORDER BY batch"
            ).fetchall()

    def batch_numbers(self, batches: Collection[int]) -> dict[int, list[tuple[str, int]]]:
        """``(telephone, days_block)`` of the lines of each of these recorded batches, in line
        order: an indexed read for a batch not settled yet, one pass over the lines for all
        the settled ones (give a few dozen batches at a time)."""
        found: dict[int, list[tuple[str, int]]] = {}
        with self._guard("read the batches"):
            for batch in batches:
                row = self._db.execute(
                    "SELECT line_ranges FROM batches WHERE batch = ?", (batch,)
                ).fetchone()
                if row is not None and row[0] is not None:  # not settled: lines do not name it
                    found[batch] = self._db.execute(_LINES_OF_RANGES, (row[0],)).fetchall()
            settled = [batch for batch in batches if batch not in found]
            if settled:
                marks = ",".join("?" * len(settled))
                for batch, telephone, days_block in self._db.execute(
                    f"SELECT batch, telephone, days_block FROM lines WHERE batch IN ({marks})"
                    " ORDER BY id",
                    settled,
                ):
                    found.setdefault(batch, []).append((telephone, days_block))
        return found

    def mark_ledgered(self, batches: Collection[int]) -> None:
        """Mark these batches' confirmations as queued in the ledger (``unledgered_batches``)."""
        with self._transaction("mark batches as in the ledger") as db:
            db.executemany(
                "UPDATE batches SET ledgered = 1 WHERE batch = ?", [(batch,) for batch in batches]
            )

    def abandon_batch(self, batch: int) -> None:
        """Close an in-flight batch that will get no verdict (``begin_batch`` does it for a batch
        whose lines go again).

        Its lines keep their status (still READY: they go again in another batch).
        """
        with self._transaction(f"abandon batch {batch}") as db:
            self._abandon(db, batch)
        if self._in_flight is not None:
            self._in_flight.pop(batch, None)

    def _abandon(self, db: sqlite3.Connection, batch: int) -> None:
        db.execute(
            "UPDATE batches SET state = 'abandoned', finished = ?, line_ranges = NULL "
            "WHERE batch = ? AND state = 'in_flight'",
            (_now(), batch),
        )

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
            row = self._db.execute(
                "SELECT line_ranges FROM batches WHERE batch = ? AND state = 'in_flight'",
                (batch,),
            ).fetchone()
        return [] if row is None or row[0] is None else _expand(row[0])

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
        self._settle()
        with self._guard("count the lines"):
            rows = self._db.execute("SELECT status, COUNT(*) FROM lines GROUP BY status")
            counts.update({status: count for status, count in rows.fetchall()})
        return counts

    def counts_by_reason(self) -> dict[str, int]:
        """Lines per reason code present, sorted by reason."""
        self._settle()
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
        self._settle()
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

    def _take(self, query: str, params: tuple[object, ...], after: int) -> list[Any]:
        """One page of a SendQueue: settle first if an unsettled batch lies ahead of ``after``."""
        if self._unsettled_top > after:
            self._settle()
        with self._guard("read the lines to send"):
            return self._db.execute(query, params).fetchall()


class SendQueue:
    """The lines still to send, in line order (``Journal.send_queue``).

    ``take(size)`` hands out the next ``size`` lines at most as ``(line_id, telephone,
    days_block)`` rows: one indexed query each time, read fresh (a line whose status changed
    meanwhile is seen so), never a line already handed out (it only moves forward by line id),
    and no Python object per line beyond the row.

    >>> journal.send_queue().take(2)  # doctest: +SKIP
    [(1, '3191234567', 90), (3, '3001234567', 30)]
    """

    def __init__(self, journal: Journal, statuses: Sequence[str]) -> None:
        self._journal = journal
        self._statuses = tuple(statuses)
        marks = ",".join("?" * len(statuses))
        self._query = (
            f"SELECT id, telephone, days_block FROM lines WHERE status IN ({marks}) AND id > ?"
            " ORDER BY id LIMIT ?"
        )
        self._last = 0

    def take(self, size: int) -> list[tuple[int, str, int]]:
        """The next ``size`` lines at most; [] once none is left."""
        if not self._statuses or size < 1:
            return []
        rows = self._journal._take(self._query, (*self._statuses, self._last, size), self._last)
        if rows:
            self._last = rows[-1][0]
        return rows


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

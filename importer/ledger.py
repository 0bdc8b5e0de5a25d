"""The ledger: what each server confirmed added, so a nightly run sends only what is new.

One SQLite file per user (``default_ledger_path()``), shared by every run, that remembers:

- per server, the latest block each telephone got **confirmed** (status ``added``): its days and
  the UTC date of the confirmation. The same number confirmed on wv0002 says nothing about
  wv0042. ``uncertain`` numbers must never be recorded: the caller passes only the items of
  batches whose verdict is ``added``.
- per input file, by sha256, the run that imported it (the inbox does not import it again).

Before sending, the pipeline asks ``blocks(server, telephones)`` and ``skip_verdict`` tells it
which numbers are still blocked long enough to be ``skipped`` (reason ``already-blocked``).

A run records each confirmed batch with ``queue_added``: one row holding the request body as
sent, compressed (~0.1 ms), where an upsert of 1000 numbers into ``blocks`` costs ~5 ms a
request here (their keys land all over the table), five times the tool's budget per request
(issue 5). The pipeline does it while the next request is in flight, from what the run
journal recorded (the journal is the record of what the server confirmed; the ledger is fed
from it, and a batch a kill left unqueued is queued from the journal by the next send or
resume). Queued rows are folded into ``blocks`` in bulk (``fold``): when the ledger is closed
after a run, and when any process opens it, so a run killed with ``kill -9`` has its queued
confirmations folded by the next run, resume or nightly job that opens the ledger.

Why this never skips a number wrongly:

- ``blocks`` only ever holds what a server confirmed: a number queued and not folded yet, or
  confirmed and not queued yet, is simply not there, and is sent once more (a missed skip).
- Every confirmation carries its time (``confirmed_at``, UTC; the journal's ``finished`` for
  a run's batches), and a block is replaced only by a confirmation at least as new: the same
  batch queued twice (a kill between queueing it and marking it queued in the journal), or
  folded late after another run confirmed the number anew, never puts back an older, longer
  block over a newer one. Within a fold, one telephone's confirmations are applied in queue
  order, so the newest wins as it would have, one call at a time.
- An unreadable queued body is left out of the fold (never folded as something else).

It is WAL-mode SQLite with ``synchronous=NORMAL``: a confirmation recorded survives the
process being killed at any moment (the WAL write is done when ``record_added`` or
``queue_added`` returns); only a power cut may lose the last ones, and a lost confirmation
merely sends a number again on a later night. An fsync per batch (FULL) cost 4-10 ms a call on
this kind of machine, more than the tool's whole budget per request. Created mode 0600 in a
0700 folder, and every ``sqlite3.Error`` becomes a ``LedgerError`` here. It never holds the
token.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Self, TypeGuard

from importer.config import state_dir_path
from importer.errors import LedgerError, UsageError

SCHEMA_VERSION = 2
"""2 adds ``pending`` (confirmed batches not folded yet); a version-1 ledger is upgraded."""
APPLICATION_ID = 0x444E434C  # "DNCL": tells our ledger from a run journal ("DNCI") or any file
LEDGER_NAME = "ledger.sqlite"

_CHUNK = 5000
"""Rows per executemany."""

_SCHEMA = """
CREATE TABLE servers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE blocks (
    server_id INTEGER NOT NULL REFERENCES servers (id),
    telephone TEXT NOT NULL,
    days INTEGER NOT NULL CHECK (days > 0),
    added_on TEXT NOT NULL,
    PRIMARY KEY (server_id, telephone)
) WITHOUT ROWID;
CREATE TABLE imports (
    sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, run_id TEXT NOT NULL, imported_at TEXT NOT NULL
);
"""
_VERSION_2 = (
    "ALTER TABLE blocks ADD COLUMN confirmed_at TEXT",
    """CREATE TABLE pending (
        id INTEGER PRIMARY KEY,
        server_id INTEGER NOT NULL REFERENCES servers (id),
        confirmed_at TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
)
"""What version 2 adds (a new ledger is made as version 1, then this): ``confirmed_at``, the
UTC time of a confirmation (ISO; a bare date counts as the start of that day), which orders
confirmations exactly; ``pending``, each row a confirmed add_dnc request body, zlib-compressed
(``queue_added``: 1000 numbers take ~2.6 KB, one page), until folded into blocks."""

# A later confirmation replaces an earlier one: the newest block is what the server holds (even
# a shorter one, so the ledger never claims more than the server has). A confirmation timed
# before the stored one (a clock set back, or the same confirmation recorded again after a
# crash) does not replace it; one timed the same (a bare date: the same day) does.
_UPSERT = """
INSERT INTO blocks (server_id, telephone, days, added_on, confirmed_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (server_id, telephone) DO UPDATE
SET days = excluded.days, added_on = excluded.added_on, confirmed_at = excluded.confirmed_at
WHERE excluded.confirmed_at >= COALESCE(blocks.confirmed_at, blocks.added_on)
"""

_FOLD_ROWS = 50
"""Queued requests folded per step (~50,000 numbers held in memory at once)."""
_BLOCK_KEY = itemgetter(1)
"""The order a fold writes blocks in: by telephone, for B-tree locality (a key of one field
sorts 3x faster than of (server_id, telephone); one run's numbers share a server anyway)."""
_ITEM = r'\{"telephone":"([0-9+]+)","days_block":"([1-9][0-9]{0,8})"\}'
_PLAIN_BODY = re.compile(rf"\[(?:{_ITEM}(?:,{_ITEM})*)?\]")
"""A body as ``client.encode_body`` writes validated numbers: read by regex, ~3x faster."""
_PLAIN_ITEM = re.compile(_ITEM)

_WAL_WAIT = 10.0
"""Seconds to retry the switch to WAL while other processes hold the new file."""
_LOOKUP_CHUNK = 900
"""Telephones per lookup query: bound parameters, under SQLite's oldest limit of 999."""


def default_state_dir() -> Path:
    """The per-user state folder, created 0700 (the token locks live in its ``locks/``).

    ``$DNC_IMPORT_STATE_DIR``, else ``$XDG_STATE_HOME/dnc-import``, else
    ``~/.local/state/dnc-import`` (the same rule as ``lock.default_lock_dir``).
    """
    folder = state_dir_path()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise UsageError(
            f"the state folder {str(folder)!r} cannot be created or made private "
            f"({type(exc).__name__}: {exc.strerror}): set DNC_IMPORT_STATE_DIR to a folder "
            "of yours"
        ) from exc
    return folder


def default_ledger_path() -> Path:
    """``default_state_dir() / "ledger.sqlite"``."""
    return default_state_dir() / LEDGER_NAME


@dataclass(frozen=True, slots=True)
class Block:
    """The latest block a server confirmed for one telephone."""

    telephone: str
    days: int
    added_on: date
    """The UTC date the server confirmed it."""

    @property
    def until(self) -> date:
        """The last day it is known blocked: ``added_on + days``."""
        return self.added_on + timedelta(days=self.days)


def skip_verdict(block: Block | None, days: int, today: date, *, server: str) -> str | None:
    """Why a number need not be sent, or None when it must be sent.

    It is skipped when still blocked for at least ``days`` more days: ``block.until >=
    today + days``. Only confirmed blocks are in the ledger; ``--no-skip`` is the caller's.

    >>> block = Block("3191234567", 90, date(2026, 11, 28))
    >>> skip_verdict(block, 30, date(2026, 12, 1), server="wv0002")[:61]
    'already blocked on wv0002 until 2027-02-26 (confirmed 2026-11'
    """
    if block is None or block.until < today + timedelta(days=days):
        return None
    unit = "day" if block.days == 1 else "days"
    return (
        f"already blocked on {server} until {block.until.isoformat()} "
        f"(confirmed {block.added_on.isoformat()} for {block.days} {unit}); "
        "--no-skip sends it again"
    )


class Ledger:
    """The ledger file. ``Ledger.open(path)`` creates it or opens it.

    >>> with Ledger.open(default_ledger_path()) as ledger:  # doctest: +SKIP
    ...     ledger.record_added("wv0002", [("3191234567", 90)], on=date(2026, 11, 28))
    1
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._server_ids: dict[str, int] = {}
        self._queued = False
        """Whether this connection queued confirmations that are not folded yet."""
        self._closed = False

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Create (missing folders 0700, the file 0600) or open the ledger; check its schema.

        LedgerError, naming the path and the fix, when it cannot be created, is corrupt, is
        another kind of file, or has another schema version.
        """
        _create_file(path)
        try:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {path} cannot be opened ({exc}): {_MOVE_ASIDE}") from exc
        ledger = cls(path, connection)
        try:
            ledger._prepare()
            ledger.fold()  # what a run killed mid-way queued
        except BaseException:
            connection.close()
            raise
        return ledger

    def close(self, *, fold: bool = True) -> None:
        """Fold what this connection queued (``fold``), then close the file (idempotent).

        Everything recorded or queued stays, even if the fold fails or is not asked for (it is
        done at the next open).
        """
        self._close(fold=fold)

    def _close(self, *, fold: bool) -> None:
        if self._closed:
            return
        try:
            if fold and self._queued:
                self.fold()
        finally:
            self._closed = True
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # after an error, only close: the next open folds what was queued
        self._close(fold=exc is None)

    def _prepare(self) -> None:
        """Check the file is ours (before changing anything in it), then set it up."""
        try:
            self._db.execute("PRAGMA busy_timeout = 10000")
            app_id, version, tables = self._header()
        except sqlite3.Error as exc:
            raise LedgerError(
                f"ledger {self.path} is corrupt or not a dnc-import ledger ({exc}): {_MOVE_ASIDE}"
            ) from exc
        fresh = app_id == 0 and version == 0 and tables == 0
        if not fresh and app_id != APPLICATION_ID:
            raise LedgerError(
                f"{self.path} is not a dnc-import ledger (another SQLite file): give the path "
                f"of a ledger, or of a file that does not exist yet"
            )
        if not fresh and version not in (1, SCHEMA_VERSION):
            raise LedgerError(
                f"ledger {self.path} has schema version {version}, this dnc-import reads "
                f"version {SCHEMA_VERSION}: use a newer dnc-import, or {_MOVE_ASIDE}"
            )
        with self._guard("open the ledger"):
            mode = self._use_wal()
            if mode != "wal":
                raise LedgerError(
                    f"ledger {self.path} cannot use write-ahead logging (journal mode {mode}): "
                    f"put it on a local disk (set DNC_IMPORT_STATE_DIR)"
                )
            # NORMAL: safe against kill -9 in WAL mode; see the module docstring.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA cache_size = -65536")  # 64 MB: lookups over millions
        if fresh:
            with self._transaction("create the ledger") as db:
                if self._header()[2] == 0:  # not created meanwhile by another process
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    for statement in (*_SCHEMA.split(";"), *_VERSION_2):
                        if statement.strip():
                            db.execute(statement)
        elif version == 1:
            with self._transaction("upgrade the ledger") as db:
                if self._header()[1] == 1:  # not upgraded meanwhile by another process
                    for statement in _VERSION_2:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _use_wal(self) -> str:
        """Switch to WAL (kept in the file), the journal mode the file ends up in.

        The switch needs the file to itself and SQLite does not wait for it (no busy
        handler), so while other runs create or open the same new ledger, retry a while.
        """
        deadline = time.monotonic() + _WAL_WAIT
        while True:
            try:
                mode = str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode == "wal":
                    return mode
                return str(self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _header(self) -> tuple[int, int, int]:
        # one statement, so one snapshot: never half of another process's creation
        app_id, version, tables = self._db.execute(
            "SELECT (SELECT application_id FROM pragma_application_id()),"
            " (SELECT user_version FROM pragma_user_version()),"
            " (SELECT COUNT(*) FROM sqlite_master)"
        ).fetchone()
        return int(app_id), int(version), int(tables)

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

    # -- blocks ---------------------------------------------------------------------------

    def blocks(self, server: str, telephones: Iterable[str]) -> dict[str, Block]:
        """The latest confirmed block of each of ``telephones`` that ``server`` holds.

        Telephones never confirmed on that server are absent. ``telephones`` is consumed in
        chunks (one indexed query per 900), so millions stream through.
        """
        found: dict[str, Block] = {}
        with self._guard("read the confirmed blocks"):
            row = self._db.execute("SELECT id FROM servers WHERE name = ?", (server,)).fetchone()
            if row is None:
                return found
            server_id = row[0]
            numbers = iter(telephones)
            while chunk := list(islice(numbers, _LOOKUP_CHUNK)):
                query = (
                    "SELECT telephone, days, added_on FROM blocks"
                    f" WHERE server_id = ? AND telephone IN ({','.join('?' * len(chunk))})"
                )
                for telephone, days, added_on in self._db.execute(query, (server_id, *chunk)):
                    found[telephone] = Block(telephone, days, date.fromisoformat(added_on))
        return found

    def record_added(self, server: str, items: Iterable[tuple[str, int]], on: date) -> int:
        """Record numbers ``server`` confirmed added on the UTC date ``on``; return how many.

        Pass only numbers whose batch verdict is ``added``, never ``uncertain`` ones. All of
        them are committed durably, in one transaction, before this returns; if ``items``
        raises, nothing of this call is kept. A later confirmation of a number replaces the
        earlier one (the newest block is what the server holds).
        """
        if isinstance(on, datetime) or not isinstance(on, date):
            raise LedgerError(
                f"ledger {self.path}: record_added takes the UTC date of the confirmation, "
                f"not {on!r} (this is a bug)"
            )
        day = on.isoformat()
        recorded = 0
        with self._transaction("record confirmed numbers") as db:
            server_id = self._server_id(db, server)
            rows = (self._row(server_id, telephone, days, day) for telephone, days in items)
            while chunk := list(islice(rows, _CHUNK)):
                db.executemany(_UPSERT, chunk)
                recorded += len(chunk)
        return recorded

    def queue_added(self, server: str, body: bytes, at: datetime) -> None:
        """Record that ``server`` confirmed added, at the time ``at``, every number of one
        add_dnc request ``body`` (``client.encode_body``: ``[{"telephone": ..., "days_block":
        "N"}, ...]``), as one row: durable when this returns, in ``blocks`` once folded.

        The same rule as ``record_added`` (pass only batches whose verdict is ``added``), at a
        fraction of its cost per batch; the module docstring says when it is folded. ``at``
        (timezone-aware) orders it exactly among other confirmations of the same numbers, so
        queueing the same confirmation twice changes nothing.
        """
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise LedgerError(
                f"ledger {self.path}: queue_added takes the time of the confirmation, with its "
                f"time zone, not {at!r} (this is a bug)"
            )
        confirmed = at.astimezone(UTC).isoformat(timespec="microseconds")
        packed = zlib.compress(body, 1)
        with self._transaction("record confirmed numbers") as db:
            db.execute(
                "INSERT INTO pending (server_id, confirmed_at, body) VALUES (?, ?, ?)",
                (self._server_id(db, server), confirmed, packed),
            )
        self._queued = True

    def fold(self) -> int:
        """Move every queued confirmation (of any process) into ``blocks``; return how many
        numbers. ``open`` and ``close`` call it.

        One transaction: all of it is folded or none. Exactly as ``record_added`` for each
        queued request in turn: within a step, numbers are written sorted by telephone (for
        B-tree locality) and, for one telephone, in queue order, so the newest confirmation
        still wins. An element that is not a telephone with whole days >= 1 (never, from our
        client) is left out: a number not recorded is only sent again, never skipped wrongly.
        """
        with self._guard("fold the queued confirmations"):
            if self._db.execute("SELECT NOT EXISTS (SELECT 1 FROM pending)").fetchone()[0]:
                self._queued = False
                return 0
        folded, last = 0, 0
        with self._transaction("fold the queued confirmations") as db:
            while rows := db.execute(
                "SELECT id, server_id, confirmed_at, body FROM pending WHERE id > ? ORDER BY id"
                " LIMIT ?",
                (last, _FOLD_ROWS),
            ).fetchall():
                numbers = [
                    number
                    for _, server_id, confirmed_at, body in rows
                    for number in _confirmed(server_id, confirmed_at, body)
                ]
                numbers.sort(key=_BLOCK_KEY)  # stable: one telephone's stay in queue order
                db.executemany(_UPSERT, numbers)
                folded += len(numbers)
                last = rows[-1][0]
            db.execute("DELETE FROM pending")
        self._queued = False
        return folded

    def _server_id(self, db: sqlite3.Connection, server: str) -> int:
        """The id of ``server`` (created if new); call inside a transaction."""
        known = self._server_ids.get(server)
        if known is not None:
            return known
        row = db.execute("SELECT id FROM servers WHERE name = ?", (server,)).fetchone()
        if row is None:  # new: not remembered, as this transaction may yet be rolled back
            db.execute("INSERT INTO servers (name) VALUES (?)", (server,))
            return int(db.execute("SELECT id FROM servers WHERE name = ?", (server,)).fetchone()[0])
        known = self._server_ids[server] = int(row[0])
        return known

    def _row(
        self, server_id: int, telephone: str, days: int, day: str
    ) -> tuple[int, str, int, str, str]:
        if not isinstance(telephone, str) or not telephone:
            raise LedgerError(
                f"ledger {self.path}: cannot record telephone {telephone!r}: give the exact "
                f"string the server confirmed (this is a bug)"
            )
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise LedgerError(
                f"ledger {self.path}: cannot record {telephone} with days {days!r}: "
                f"days are a whole number >= 1 (this is a bug)"
            )
        return server_id, telephone, days, day, day

    # -- imported files -------------------------------------------------------------------

    def was_imported(self, sha256: str) -> dict[str, object] | None:
        """``{"path", "run_id", "imported_at"}`` of the run that imported this file, or None."""
        with self._guard("read the imported files"):
            row = self._db.execute(
                "SELECT path, run_id, imported_at FROM imports WHERE sha256 = ?", (sha256,)
            ).fetchone()
        if row is None:
            return None
        return {"path": row[0], "run_id": row[1], "imported_at": row[2]}

    def record_imported(self, sha256: str, path: str, run_id: str) -> None:
        """Remember that ``run_id`` imported the file with this sha256 (the newest run wins)."""
        with self._transaction("record an imported file") as db:
            db.execute(
                "INSERT OR REPLACE INTO imports (sha256, path, run_id, imported_at)"
                " VALUES (?, ?, ?, ?)",
                (sha256, path, run_id, datetime.now(UTC).isoformat(timespec="seconds")),
            )


def _confirmed(
    server_id: int, confirmed_at: str, packed: bytes
) -> list[tuple[int, str, int, str, str]]:
    """The blocks rows of one queued request; what cannot be read is left out (see ``fold``)."""
    added_on = confirmed_at[:10]  # the UTC date: confirmed_at is ISO, in UTC
    try:
        text = zlib.decompress(packed).decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return []
    if _PLAIN_BODY.fullmatch(text):
        return [
            (server_id, telephone, int(days), added_on, confirmed_at)
            for telephone, days in _PLAIN_ITEM.findall(text)
        ]
    try:
        numbers = json.loads(text)
    except (ValueError, RecursionError):
        return []
    return [
        (server_id, telephone, int(days), added_on, confirmed_at)
        for number in (numbers if isinstance(numbers, list) else [])
        if isinstance(number, dict)
        for telephone, days in [(number.get("telephone"), number.get("days_block"))]
        if isinstance(telephone, str) and telephone and _is_days(days)
    ]


def _is_days(value: object) -> TypeGuard[str]:
    """A ``days_block`` as our client writes it: whole days >= 1, as text."""
    return isinstance(value, str) and value.isascii() and value.isdigit() and value[0] != "0"


_MOVE_ASIDE = (
    "move the file aside and run again (a new, empty ledger is made; numbers it knew are "
    "then sent once more)"
)


def _create_file(path: Path) -> None:
    """Create the missing folders 0700 and the file 0600 (an existing file is left as it is)."""
    missing: list[Path] = []
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for created in reversed(missing):
            created.mkdir(mode=0o700, exist_ok=True)
            created.chmod(0o700)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not path.is_file():
            raise LedgerError(
                f"ledger {path} is not a file: give the path of a ledger file"
            ) from None
        return
    except OSError as exc:
        raise LedgerError(
            f"ledger {path} cannot be created ({type(exc).__name__}: {exc.strerror}): "
            "set DNC_IMPORT_STATE_DIR to a folder of yours"
        ) from exc
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
    finally:
        os.close(descriptor)


@contextmanager
def _translated(path: Path, action: str) -> Iterator[None]:
    """Translate sqlite3 errors (and text SQLite cannot store) into LedgerError: the one place."""
    try:
        yield
    except sqlite3.Error as exc:
        raise LedgerError(
            f"ledger {path}: cannot {action} ({exc}): check the disk has space and the "
            f"state folder is writable; everything recorded before is kept"
        ) from exc
    except UnicodeEncodeError as exc:
        raise LedgerError(
            f"ledger {path}: cannot {action}: text that is not valid Unicode ({exc.reason}) "
            "(this is a bug)"
        ) from exc

"""A local stand-in for Wolkvox's ``add_dnc`` API: a real HTTP server on loopback.

It answers as ``wolkvox-api.md`` says Wolkvox does, so the tool can be tried without an
account and tests run over real HTTP:

    with Simulator(SimConfig(token="t")) as sim:
        httpx.post(sim.add_dnc_url, headers={"wolkvox-token": "t"},
                   json=[{"telephone": "3001234567", "days_block": "30"}])
        sim.dnc_list()  # {"3001234567": 30}

Order of the checks on ``POST /api/v2/campaign.php?api=add_dnc`` (call numbers are 1-based):

1. concurrency, per token header: a request arriving while another with the same token is in
   flight is a violation; over ``max_simultaneous`` it is answered 403 at once;
2. latency (and a spike), then the injected infrastructure faults, none of which adds a number
   or spends quota: maintenance window, dropped connection, 5xx, 429, spurious 403
   "simultaneous";
3. token (401 missing, 403 wrong), then quota (403 TOKEN LIMIT EXCEEDED), then the body
   (400 SOME PARAMETERS ARE REQUIRED, 413 over ``max_records``);
4. the numbers are stored, then ``drop_after`` (no answer) or ``garbage`` (200, not JSON), else
   HTTP 200 with body code 201 and the totals.

Guesses of ours, not Wolkvox's documentation: the maintenance message, the error bodies'
``error`` field (the HTTP reason phrase), that a request without a token header is not
counted for concurrency, the ``get_dnc`` message and ``date_delete`` (the day the block ends),
that ``days_block`` above 999,999,999 is malformed. The handler never prints: request lines go
to the optional ``log`` callback and never contain the token.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

from importer.errors import UsageError

ADD_DNC_PATH = "/api/v2/campaign.php"
GET_DNC_PATH = "/api/v2/information.php"

MSG_NO_TOKEN = "PLEASE ENTER THE WOLKVOX-TOKEN"
MSG_BAD_TOKEN = "PLEASE VALIDATE TOKEN"
MSG_NO_API = "THE API YOU WANT TO CONSULT DOES NOT EXIST"
MSG_PARAMETERS = "SOME PARAMETERS ARE REQUIRED"
MSG_QUOTA = "TOKEN LIMIT EXCEEDED"
MSG_SIMULTANEOUS = "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"
MSG_MAINTENANCE = "THE API IS TEMPORARILY UNAVAILABLE DUE TO MAINTENANCE (SERVER BACKUP)"
MSG_TOO_MANY = "TOO MANY RECORDS: THE LIMIT IS {limit} PER REQUEST"

_TELEPHONE = re.compile(r"\+?[0-9]{7,15}")
_DAYS = re.compile(r"[1-9][0-9]{0,8}")
_PLAIN_ITEM = re.compile(r'\{"telephone": ?"([0-9+]+)", ?"days_block": ?"([1-9][0-9]{0,8})"\}')
"""An element as clients write one (compact or with a space after ``:`` and ``,``): a body of
them alone (``_plain_batch``) is read without json.loads, ~3x faster; any other takes the
general way (json.loads and the checks of ``_parse_batch``), which accepts the same and more."""
_PLAIN_OPEN = re.compile(r"[ \t\n\r]*\[[ \t\n\r]*")
_PLAIN_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_PLAIN_CLOSE = re.compile(r"[ \t\n\r]*\][ \t\n\r]*")
_GARBAGE = b'{"code": 201, "error": null, "msg": "3 telephones were add'
_HTML_5XX = b"<html><head><title>{s}</title></head><body><h1>{s}</h1></body></html>"


@dataclass(frozen=True)
class Faults:
    """Faults injected into ``add_dnc`` calls, each drawn per call with its own rate (0 to 1)."""

    latency: float = 0.0
    """Seconds added to every add_dnc answer."""
    spike_rate: float = 0.0
    """Share of calls that wait ``spike_latency`` more."""
    spike_latency: float = 2.0
    error_5xx_rate: float = 0.0
    """500/502/503 with an HTML or empty body; nothing added."""
    rate_429: float = 0.0
    """429 with ``Retry-After: retry_after``; nothing added."""
    retry_after: float = 1.0
    drop_rate: float = 0.0
    """The connection is closed without an answer; nothing added."""
    drop_after_rate: float = 0.0
    """The numbers are added, then the connection is closed without an answer."""
    garbage_rate: float = 0.0
    """The numbers are added, then a 200 whose body is not JSON."""
    simultaneous_rate: float = 0.0
    """A spurious 403 EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)."""
    maintenance_calls: tuple[int, int] | None = None
    """Calls numbered [a, b) (1-based) get the 403 maintenance answer."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("rate") or f.name.startswith("rate"):
                if not 0.0 <= value <= 1.0:
                    raise UsageError(f"{f.name} must be a share between 0 and 1, got {value}")
            elif isinstance(value, (int, float)) and value < 0:
                raise UsageError(f"{f.name} must be 0 seconds or more, got {value}")
        window = self.maintenance_calls
        if window is not None and not 1 <= window[0] <= window[1]:
            raise UsageError(
                f"maintenance_calls must be two call numbers 1 <= a <= b, got {window}"
            )


@dataclass(frozen=True)
class SimConfig:
    """How the simulated Wolkvox operation behaves."""

    token: str = field(default="sim-token", repr=False)
    daily_quota: int = 1000
    """add_dnc calls per token per day; then 403 TOKEN LIMIT EXCEEDED."""
    max_records: int = 10_000
    """More records in one call: 413 TOO MANY RECORDS."""
    max_simultaneous: int = 1
    """More requests in flight with one token: 403 EXCEEDS THE LIMIT OF SIMULTANEOUS ..."""
    reject_existing: bool = False
    """Numbers already on the list count as rejected."""
    reject_patterns: tuple[str, ...] = ()
    """Regexes (searched): matching telephones are rejected, not added."""
    malformed_patterns: tuple[str, ...] = ()
    """Regexes (searched): a batch holding a matching telephone gets 400 SOME PARAMETERS."""
    totals: str = "full"
    """"full": data[0] totals as strings; "empty": "" as in the vendor's example."""
    string_code: bool = False
    """The body's "code" as a string ("201")."""
    seed: int = 0
    faults: Faults = Faults()
    db_path: Path | None = None
    """The SQLite file of the DNC list; None: a temporary file, removed on stop."""

    def __post_init__(self) -> None:
        if not self.token:
            raise UsageError("the simulator token must not be empty")
        for name in ("daily_quota", "max_records", "max_simultaneous"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if self.totals not in ("full", "empty"):
            raise UsageError(f'totals must be "full" or "empty", got {self.totals!r}')
        for pattern in (*self.reject_patterns, *self.malformed_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UsageError(
                    f"pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from exc


@dataclass(frozen=True)
class RequestRecord:
    """One add_dnc request as the simulator saw it (times from ``time.monotonic``)."""

    call: int
    start: float
    end: float
    """When the answer was decided, just before it was written (or the connection closed)."""
    token_ok: bool
    records: int
    """Records in the body when it was a JSON array, else 0."""
    http_status: int
    """0 when no answer was sent (dropped connection)."""
    outcome: str
    """added, simultaneous, maintenance, drop, 5xx, 429, spurious-simultaneous, no-token,
    bad-token, quota, malformed, too-many, drop-after, garbage."""
    stored: tuple[str, ...] = ()
    """The telephones this request added to the list (outcomes added, drop-after, garbage)."""


@dataclass(frozen=True)
class _Answer:
    status: int
    """0: close the connection without answering."""
    body: bytes
    outcome: str
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    records: int = 0
    stored: tuple[str, ...] = ()


class _Refused(Exception):
    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.outcome)
        self.answer = answer


@dataclass(frozen=True)
class _Draws:
    """Every random number of one call, drawn in a fixed order whatever the rates."""

    spike: float
    drop: float
    error_5xx: float
    status_5xx: int
    html_5xx: bool
    rate_429: float
    simultaneous: float
    drop_after: float
    garbage: float

    @classmethod
    def for_call(cls, seed: int, call: int) -> _Draws:
        rng = random.Random(f"{seed}:{call}")
        return cls(
            spike=rng.random(),
            drop=rng.random(),
            error_5xx=rng.random(),
            status_5xx=rng.choice((500, 502, 503)),
            html_5xx=rng.random() < 0.5,
            rate_429=rng.random(),
            simultaneous=rng.random(),
            drop_after=rng.random(),
            garbage=rng.random(),
        )


class Simulator:
    """A Wolkvox add_dnc/get_dnc server on ``host:port`` (port 0: a free one), bound at once.

    ``start()`` serves from a background thread (tests), ``serve_forever()`` from the caller's
    (the ``simulate`` command); ``stop()`` ends either and removes a temporary database.
    """

    def __init__(
        self,
        config: SimConfig = SimConfig(),
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._log = log
        self._state = threading.Lock()
        self._db_lock = threading.Lock()
        self._calls = 0
        self._violations = 0
        self._max_in_flight = 0
        self._connections = 0
        self._in_flight: dict[str, int] = {}
        self._records: list[RequestRecord] = []
        self._received: list[str] = []
        self._quota_day = date.today()
        self._quota_used = 0
        self._sockets: set[socket.socket] = set()
        self._reject = [re.compile(p) for p in config.reject_patterns]
        self._malformed = [re.compile(p) for p in config.malformed_patterns]
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False
        self._final_list: dict[str, int] | None = None
        self._tmpdir: str | None = None
        if config.db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="dnc-sim-")
            self._db_path = Path(self._tmpdir) / "dnc.sqlite3"
        else:
            self._db_path = config.db_path
        self._db = self._open_db(self._db_path)
        self._listed: set[str] | None = None
        """The telephones on the list, kept for ``reject_existing`` alone."""
        if config.reject_existing:
            self._listed = {t for (t,) in self._db.execute("SELECT telephone FROM dnc")}
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            self._close_db()
            raise UsageError(
                f"the simulator cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "choose another --port, or 0 for a free one"
            ) from exc

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve from a background thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="dnc-simulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from this thread until Ctrl-C or ``stop()`` from another thread."""
        self._serving = True
        if self._log is not None:
            self._log(f"simulator listening on {self.base_url}")
        try:
            self._server.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close open connections and the database (idempotent)."""
        with self._state:
            if self._stopped:
                return
            self._stopped = True
        if self._serving:
            self._server.shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._state:
            sockets = list(self._sockets)
        for sock in sockets:  # idle keep-alive connections would hold their threads
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._close_db()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test reads -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def add_dnc_url(self) -> str:
        return f"{self.base_url}{ADD_DNC_PATH}?api=add_dnc"

    @property
    def get_dnc_url(self) -> str:
        return f"{self.base_url}{GET_DNC_PATH}?api=get_dnc&type=all"

    @property
    def db_path(self) -> Path:
        return self._db_path

    @property
    def calls(self) -> int:
        """add_dnc requests that reached the handler."""
        return self._calls

    @property
    def violations(self) -> int:
        """Requests that arrived while another with the same token was in flight."""
        return self._violations

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @property
    def connections(self) -> int:
        """TCP connections accepted (few when clients keep connections alive)."""
        return self._connections

    @property
    def quota_used(self) -> int:
        """Calls spent today on the configured token."""
        return self._quota_used

    def new_day(self) -> None:
        """The quota resets, as it does each day on Wolkvox (the list stays as it is)."""
        with self._state:
            self._quota_day, self._quota_used = date.today(), 0

    def requests(self) -> list[RequestRecord]:
        """Every add_dnc request, in the order their answers were decided."""
        with self._state:
            return list(self._records)

    def received(self) -> list[str]:
        """Every telephone added, in order, duplicates included."""
        with self._db_lock:
            return list(self._received)

    def dnc_list(self) -> dict[str, int]:
        """Telephone -> days_block, as the SQLite list holds it (a snapshot after stop)."""
        with self._db_lock:
            if self._final_list is not None:
                return dict(self._final_list)
            return dict(self._read_list("SELECT telephone, days_block FROM dnc"))

    # -- the database ----------------------------------------------------------------------

    @staticmethod
    def _open_db(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # A stand-in for the remote list, not a store of record: no fsync (the list survives
            # the simulator's own death, not the machine's), and a cache the size of a big
            # list for the folds (``_fold``).
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-65536")
            db.execute(
                "CREATE TABLE IF NOT EXISTS dnc (telephone TEXT PRIMARY KEY,"
                " days_block INTEGER NOT NULL, added_at TEXT NOT NULL) WITHOUT ROWID"
            )
            # each request's additions, a JSON object telephone -> days_block, until folded
            db.execute(
                "CREATE TABLE IF NOT EXISTS dnc_added (seq INTEGER PRIMARY KEY,"
                " added_at TEXT NOT NULL, numbers TEXT NOT NULL)"
            )
            _fold(db)  # what a simulator killed mid-way appended
        except sqlite3.Error as exc:
            raise UsageError(
                f"the simulator cannot use the database {path} ({exc}); give a writable --db path"
            ) from exc
        return db

    def _read_list(self, query: str) -> list[Any]:
        """Rows of ``dnc`` once the additions appended meanwhile are in it (hold _db_lock)."""
        _fold(self._db)
        return self._db.execute(query).fetchall()

    def _close_db(self) -> None:
        with self._db_lock:
            if self._final_list is None:
                try:
                    self._final_list = dict(
                        self._read_list("SELECT telephone, days_block FROM dnc")
                    )
                finally:
                    self._db.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _store(self, telephones: list[str], days: list[int]) -> tuple[str, ...]:
        """Adds the acceptable telephones (with their days); returns those added.

        Each request's additions go into ``dnc_added`` as one row, committed before the answer,
        and are folded into ``dnc`` before the list is read (``dnc_list``, get_dnc, stop) and
        at the next start: ~0.5 ms a request, where 1000 upserts of random keys into a list of
        200,000 cost ~10 ms (every leaf page rewritten), which timed the simulator, not the
        client.
        """
        now = datetime.now().isoformat(timespec="seconds")
        reject_existing, reject, valid = self.config.reject_existing, self._reject, _TELEPHONE
        with self._db_lock:
            listed = self._listed if self._listed is not None else set()
            pairs: list[tuple[str, int]] | zip[tuple[str, int]]
            if reject_existing or reject:
                pairs, seen = [], set()
                for telephone, day in zip(telephones, days, strict=True):
                    if (
                        valid.fullmatch(telephone) is None
                        or (reject_existing and (telephone in listed or telephone in seen))
                        or (reject and any(p.search(telephone) for p in reject))
                    ):
                        continue
                    seen.add(telephone)
                    pairs.append((telephone, day))
                stored = tuple(t for t, _ in pairs)
            elif all(map(valid.fullmatch, telephones)):  # the usual batch: every one is added
                pairs, stored = zip(telephones, days, strict=True), tuple(telephones)
            else:
                pairs = [
                    (t, d) for t, d in zip(telephones, days, strict=True) if valid.fullmatch(t)
                ]
                stored = tuple(t for t, _ in pairs)
            added = dict(pairs)  # a telephone twice: its last days, as one after the other
            self._db.execute(
                "INSERT INTO dnc_added (added_at, numbers) VALUES (?, ?)",
                (now, json.dumps(added, separators=(",", ":"))),
            )
            if self._listed is not None:
                self._listed.update(added)
            self._received.extend(stored)
        return stored

    # -- answering -------------------------------------------------------------------------

    def _answer(self, method: str, target: str, token: str | None, body: bytes) -> _Answer:
        """Decides the answer to one request; concurrency is accounted around it."""
        url = urlsplit(target)
        query = parse_qs(url.query)
        api = query.get("api", [""])[0]
        is_add = method == "POST" and url.path == ADD_DNC_PATH and api == "add_dnc"
        is_get = method == "GET" and url.path == GET_DNC_PATH and api == "get_dnc"
        start = time.monotonic()
        call = 0
        with self._state:
            if is_add:
                self._calls += 1
                call = self._calls
            over = self._enter(token)
        try:
            if not (is_add or is_get):
                answer = self._error(400, MSG_NO_API, "no-api")
            elif over:
                answer = self._error(403, MSG_SIMULTANEOUS, "simultaneous")
            elif is_get:
                answer = self._get_dnc(token, query.get("type", [""])[0])
            else:
                answer = self._add_dnc(call, token, body)
        finally:
            # Leave before the answer is written: a client may send its next request the
            # instant it reads this one, and that must not count as an overlap.
            with self._state:
                self._leave(token)
        if is_add:
            record = RequestRecord(
                call,
                start,
                time.monotonic(),
                self._token_ok(token),
                answer.records,
                answer.status,
                answer.outcome,
                answer.stored,
            )
            with self._state:
                self._records.append(record)
        return answer

    def _enter(self, token: str | None) -> bool:
        """Counts a request in flight; True when it is over the simultaneous limit."""
        if token is None:
            return False
        count = self._in_flight.get(token, 0) + 1
        self._in_flight[token] = count
        if count > 1:
            self._violations += 1
        self._max_in_flight = max(self._max_in_flight, count)
        return count > self.config.max_simultaneous

    def _leave(self, token: str | None) -> None:
        if token is not None:
            self._in_flight[token] -= 1

    def _token_ok(self, token: str | None) -> bool:
        return token == self.config.token

    def _add_dnc(self, call: int, token: str | None, body: bytes) -> _Answer:
        faults = self.config.faults
        draws = _Draws.for_call(self.config.seed, call)
        delay = faults.latency + (faults.spike_latency if draws.spike < faults.spike_rate else 0)
        if delay > 0:
            time.sleep(delay)
        try:
            self._infrastructure_fault(call, draws)
            self._check_token(token)
            self._spend_quota()
            telephones, days = self._parse_batch(body)
        except _Refused as refused:
            return refused.answer
        stored, count = self._store(telephones, days), len(telephones)
        if draws.drop_after < faults.drop_after_rate:
            return _Answer(0, b"", "drop-after", records=count, stored=stored)
        if draws.garbage < faults.garbage_rate:
            return _Answer(200, _GARBAGE, "garbage", records=count, stored=stored)
        answer = self._success(len(stored), count - len(stored), count)
        return replace(answer, stored=stored)

    def _infrastructure_fault(self, call: int, draws: _Draws) -> None:
        faults = self.config.faults
        window = faults.maintenance_calls
        if window is not None and window[0] <= call < window[1]:
            raise _Refused(self._error(403, MSG_MAINTENANCE, "maintenance"))
        if draws.drop < faults.drop_rate:
            raise _Refused(_Answer(0, b"", "drop"))
        if draws.error_5xx < faults.error_5xx_rate:
            status = draws.status_5xx
            phrase = f"{status} {HTTPStatus(status).phrase}".encode()
            page = _HTML_5XX.replace(b"{s}", phrase) if draws.html_5xx else b""
            raise _Refused(_Answer(status, page, "5xx", content_type="text/html"))
        if draws.rate_429 < faults.rate_429:
            retry = (("Retry-After", f"{faults.retry_after:g}"),)
            raise _Refused(self._error(429, "TOO MANY REQUESTS", "429", headers=retry))
        if draws.simultaneous < faults.simultaneous_rate:
            raise _Refused(self._error(403, MSG_SIMULTANEOUS, "spurious-simultaneous"))

    def _check_token(self, token: str | None) -> None:
        if token is None:
            raise _Refused(self._error(401, MSG_NO_TOKEN, "no-token"))
        if not self._token_ok(token):
            raise _Refused(self._error(403, MSG_BAD_TOKEN, "bad-token"))

    def _spend_quota(self) -> None:
        with self._state:
            today = date.today()
            if today != self._quota_day:
                self._quota_day, self._quota_used = today, 0
            if self._quota_used >= self.config.daily_quota:
                raise _Refused(self._error(403, MSG_QUOTA, "quota"))
            self._quota_used += 1

    def _parse_batch(self, body: bytes) -> tuple[list[str], list[int]]:
        """The telephones and days of a well-formed body, else the 400 or 413 answer."""
        plain = _plain_batch(body)
        if plain is not None:
            telephones, days = plain
            count = len(telephones)
            if count > self.config.max_records:
                msg = MSG_TOO_MANY.format(limit=self.config.max_records)
                raise _Refused(self._error(413, msg, "too-many", records=count))
            malformed = self._malformed
            if malformed and any(p.search(t) for t in telephones for p in malformed):
                raise _Refused(self._error(400, MSG_PARAMETERS, "malformed", records=count))
            return telephones, days
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, list) or not data:
            raise _Refused(self._error(400, MSG_PARAMETERS, "malformed"))
        count = len(data)
        if count > self.config.max_records:
            msg = MSG_TOO_MANY.format(limit=self.config.max_records)
            raise _Refused(self._error(413, msg, "too-many", records=count))
        telephones, days = [], []
        for item in data:
            if type(item) is not dict:
                raise _Refused(self._error(400, MSG_PARAMETERS, "malformed", records=count))
            telephone, day = item.get("telephone"), item.get("days_block")
            if (
                type(telephone) is not str
                or type(day) is not str
                or not telephone.strip()
                or _DAYS.fullmatch(day) is None
                or (self._malformed and any(p.search(telephone) for p in self._malformed))
            ):
                raise _Refused(self._error(400, MSG_PARAMETERS, "malformed", records=count))
            telephones.append(telephone)
            days.append(int(day))
        return telephones, days

    def _get_dnc(self, token: str | None, kind: str) -> _Answer:
        try:
            self._check_token(token)
        except _Refused as refused:
            return refused.answer
        if kind not in ("all", "inbound", "outbound"):
            return self._error(400, MSG_PARAMETERS, "malformed")
        data: list[dict[str, str]] = []
        if kind != "inbound":
            with self._db_lock:
                rows = self._read_list(
                    "SELECT telephone, days_block, added_at FROM dnc ORDER BY telephone"
                )
            data = [
                {"phone_number": t, "type": "outbound", "date_delete": _block_end(added, days)}
                for t, days, added in rows
            ]
        code = self._code(200)
        msg = f"{len(data)} records found"
        return self._json(200, {"code": code, "error": None, "msg": msg, "data": data}, "listed")

    def _success(self, added: int, rejected: int, sent: int) -> _Answer:
        if self.config.totals == "full":
            totals = {
                "total_added": str(added),
                "total_rejected": str(rejected),
                "total_sent": str(sent),
            }
        else:
            totals = {"total_added": "", "total_rejected": "", "total_sent": ""}
        body = {
            "code": self._code(201),
            "error": None,
            "msg": f"{added} telephones were added",
            "data": [totals],
        }
        return self._json(200, body, "added", records=sent)

    def _error(
        self,
        status: int,
        msg: str,
        outcome: str,
        headers: tuple[tuple[str, str], ...] = (),
        records: int = 0,
    ) -> _Answer:
        body: dict[str, Any] = {
            "code": self._code(status),
            "error": HTTPStatus(status).phrase,
            "msg": msg,
            "data": [],
        }
        return self._json(status, body, outcome, headers=headers, records=records)

    def _code(self, code: int) -> int | str:
        return str(code) if self.config.string_code else code

    @staticmethod
    def _json(
        status: int,
        body: dict[str, Any],
        outcome: str,
        headers: tuple[tuple[str, str], ...] = (),
        records: int = 0,
    ) -> _Answer:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return _Answer(status, data, outcome, headers=headers, records=records)

    # -- used by the handler ---------------------------------------------------------------

    def _connected(self, sock: socket.socket) -> None:
        with self._state:
            self._connections += 1
            self._sockets.add(sock)

    def _disconnected(self, sock: socket.socket) -> None:
        with self._state:
            self._sockets.discard(sock)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)


def _plain_batch(body: bytes) -> tuple[list[str], list[int]] | None:
    """The telephones and days of a body made of ``_PLAIN_ITEM`` elements alone, else None."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = _PLAIN_ITEM.split(text)  # [before, telephone, days, between, ..., after]
    if len(parts) < 4 or not (
        _PLAIN_OPEN.fullmatch(parts[0]) and _PLAIN_CLOSE.fullmatch(parts[-1])
    ):
        return None
    if not all(map(_PLAIN_COMMA.fullmatch, set(parts[3:-1:3]))):
        return None
    return parts[1::3], list(map(int, parts[2::3]))


def _fold(db: sqlite3.Connection) -> None:
    """Move ``dnc_added`` into ``dnc``, in the order appended (a later add replaces)."""
    if not db.execute("SELECT EXISTS (SELECT 1 FROM dnc_added)").fetchone()[0]:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "INSERT OR REPLACE INTO dnc (telephone, days_block, added_at)"
            " SELECT n.key, n.value, a.added_at"
            " FROM dnc_added AS a, json_each(a.numbers) AS n ORDER BY a.seq"
        )
        db.execute("DELETE FROM dnc_added")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _block_end(added_at: str, days: int) -> str:
    """The day a block ends, as ``YYYY-MM-DD`` (the last representable day if far off)."""
    start = datetime.fromisoformat(added_at).date()
    try:
        return (start + timedelta(days=days)).isoformat()
    except OverflowError:
        return date.max.isoformat()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer is routine here; never print a traceback.
        exc = sys.exc_info()[1]
        self.sim._say(f"connection error: {type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    server_version = "wolkvox-simulator"

    @property
    def sim(self) -> Simulator:
        return cast(_Server, self.server).sim

    def setup(self) -> None:
        super().setup()
        self.sim._connected(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.sim._disconnected(self.connection)

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            body = b""
        answer = self.sim._answer(self.command, self.path, self.headers.get("wolkvox-token"), body)
        took = (time.monotonic() - started) * 1000
        # Logged before the answer leaves, so a client that has its answer finds the line.
        self.sim._say(
            f"{self.command} {self.path} -> {answer.status or 'no answer'} {answer.outcome}"
            f" records={answer.records} {took:.1f}ms"
        )
        if answer.status == 0:
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return b"".join(self._chunks())
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline(1024)

    def log_message(self, format: str, *args: Any) -> None:
        self.sim._say(format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _dispatch logs one line per request, with the outcome

"""The Wolkvox ``add_dnc`` HTTP client: where to send, how to read an answer, when to retry.

``build_url`` checks the server before any token is read; ``parse_answer`` is a pure function
that classifies one HTTP answer; ``WolkvoxClient.add_dnc`` makes one logical call, retrying
transient failures, and raises the ``errors`` exception that tells the caller what to do next.
No message built here ever contains the token (it only travels in one request header).

A token is never used by two requests at once (Wolkvox: "the same token cannot be consumed
simultaneously"). A request whose answer was lost (no answer in time, a connection broken
after the request left) may still be running on the server, so after one the client sends
nothing with the token until ``SendOptions.lost_answer_wait`` seconds have passed (default:
the read timeout): not the retry, not the next batch, and it does not give up the batch (and
so the token, to whoever waits for it) before then either. So that the rest outlives the process
(a kill mid-request or during a rest), the client tells ``note_rest`` (the token lock's
``TokenRest.note``) before each request until when that request may run, and after it what rest
is still owed; the next holder of the token waits that out.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from urllib.parse import urlsplit

import httpx

from importer import __version__
from importer.config import SendOptions
from importer.errors import (
    AuthRefused,
    BatchFailed,
    BatchTooLarge,
    EndpointRefused,
    Interrupted,
    MalformedBatch,
    QuotaExhausted,
    TokenError,
    UsageError,
)
from importer.http11 import KeepAliveTransport, timeout_of
from importer.model import SendItem, ServerTotals

API_PATH = "/api/v2/campaign.php?api=add_dnc"
_SERVER_RE = re.compile(r"(?:wv)?([0-9]{4})", re.IGNORECASE)
_ADDED_RE = re.compile(r"(\d+)\s+telephones?\s+(?:were|was)\s+added", re.IGNORECASE)
_MSG_MAX = 200
_TEXT_SCAN = 4096
_BASE_WAIT = 1.0
"""First backoff ceiling, seconds; doubled at each retry."""
_MAINTENANCE_WAIT = 30.0
"""First backoff ceiling during a server backup/maintenance window."""
_UNKNOWN_403_RETRIES = 2
_PLAIN_TELEPHONES = re.compile(r"[0-9+]*")
"""Telephones that JSON writes as they are (the validator's forms): no escaping to do."""
_BODY_ITEM = '{"telephone":"%s","days_block":"%s"}'


class AnswerKind(str, Enum):
    """What one HTTP answer means for the call."""

    OK = "ok"
    AUTH = "auth"
    QUOTA = "quota"
    SIMULTANEOUS = "simultaneous"
    MAINTENANCE = "maintenance"
    ENDPOINT = "endpoint"
    REDIRECT = "redirect"
    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    RETRY = "retry"


_TRANSIENT = frozenset({AnswerKind.SIMULTANEOUS, AnswerKind.MAINTENANCE, AnswerKind.RETRY})


@dataclass(frozen=True)
class Answer:
    """One classified HTTP answer."""

    kind: AnswerKind
    totals: ServerTotals
    retry_after: float | None = None
    location: str = ""
    """The Location of a redirect (never followed)."""


# --- where to send ---------------------------------------------------------------------------


def build_url(server: str | None, base_url: str | None) -> tuple[str, str]:
    """The full add_dnc URL and the lock key, from ``--server`` or ``--base-url``.

    >>> build_url("wv0002", None)
    ('https://wv0002.wolkvox.com/api/v2/campaign.php?api=add_dnc', 'wv0002')
    """
    if server is not None and base_url is not None:
        raise UsageError("give --server or --base-url, not both")
    if server is not None:
        match = _SERVER_RE.fullmatch(server.strip())
        if match is None:
            raise UsageError(
                f"--server {server!r} is not a Wolkvox server code: give the 4 digits Wolkvox "
                "support gave your operation, e.g. --server 0002"
            )
        name = f"wv{match.group(1)}"
        return f"https://{name}.wolkvox.com{API_PATH}", name
    if base_url is not None:
        return _check_base_url(base_url)
    raise UsageError(
        "no Wolkvox server given: give --server NNNN (the 4 digits Wolkvox support gave your "
        "operation) or set WOLKVOX_SERVER"
    )


def _check_base_url(base_url: str) -> tuple[str, str]:
    text = base_url.strip()
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in text):
        raise UsageError(f"--base-url {base_url!r} contains spaces or control characters")
    parts = urlsplit(text)
    if parts.username is not None or "@" in parts.netloc:
        # never echo it: the user part may hold a password
        raise UsageError(
            "--base-url must not contain a user name or password (user@host): give "
            "https://host[:port][/path]"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(
            f"--base-url {text!r} is not an http(s) URL: give https://host[:port][/path]"
        )
    if "?" in text or "#" in text:
        raise UsageError(
            f"--base-url {text!r} has a query or fragment: give only https://host[:port][/path]"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--base-url {text!r} has an invalid port") from exc
    host = parts.hostname
    if scheme == "http" and not _is_loopback(host):
        raise UsageError(
            f"--base-url {text!r} uses plain http to a host that is not loopback: the token "
            "would cross the network unencrypted; use https://, or http only to 127.0.0.1, "
            "localhost or ::1"
        )
    shown_host = f"[{host}]" if ":" in host else host
    given = f"{scheme}://{shown_host}" + (f":{port}" if port is not None else "")
    default_port = 443 if scheme == "https" else 80
    lock_key = f"{scheme}://{shown_host}:{port if port is not None else default_port}"
    return f"{given}{parts.path.rstrip('/')}{API_PATH}", lock_key


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def encode_body(numbers: Sequence[tuple[str, object]]) -> bytes:
    """The add_dnc body for ``(telephone, days_block)`` pairs, exactly as ``json.dumps`` writes it.

    >>> encode_body([("3001234567", 30)])
    b'[{"telephone":"3001234567","days_block":"30"}]'

    Telephones of digits and ``+`` (every validated form) are formatted without a dict per
    number (~3x faster than ``json.dumps``); anything else goes through ``json.dumps``.
    """
    return _encode(numbers, _BODY_ITEM, 0)


def encode_rows(rows: Sequence[tuple[int, str, object]]) -> bytes:
    """``encode_body`` of ``(line_id, telephone, days_block)`` rows, as the journal gives them."""
    return _encode(rows, "%.0s" + _BODY_ITEM, 1)  # "%.0s": the line id, formatted as nothing


def _encode(rows: Sequence[tuple[object, ...]], item: str, first: int) -> bytes:
    width = first + 2
    plain = _PLAIN_TELEPHONES.fullmatch("".join(map(itemgetter(first), rows)))
    if plain and set(map(len, rows)) <= {width}:
        # one format of the whole body (~0.3 ms for 1000 numbers, half of one per number),
        # done while the previous request is in flight
        values = tuple(chain.from_iterable(rows))
        return (_body_format(item, len(rows)) % values).encode("ascii")
    return json.dumps(
        [{"telephone": row[first], "days_block": str(row[first + 1])} for row in rows],
        separators=(",", ":"),
    ).encode("ascii")


@lru_cache(maxsize=8)
def _body_format(item: str, count: int) -> str:
    """``[item,item,...]``: the format of a body of ``count`` numbers."""
    return "[" + ",".join([item] * count) + "]"


# --- reading an answer -----------------------------------------------------------------------


def parse_answer(
    status_code: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> Answer:
    """Classify one HTTP answer of add_dnc (pure; ``now`` only dates a Retry-After date)."""
    decoded = _json(body)
    obj = decoded if isinstance(decoded, dict) else None
    code = _code_of(obj)
    text = _text_of(decoded, body)
    totals = ServerTotals(http_status=status_code, code=code, msg=_one_line(text))
    retry_after = _retry_after(headers, time.time() if now is None else now)
    location = _header(headers, "location") or ""
    if 200 <= status_code < 300:
        code_int = _int(code)
        if obj is None or code_int is None:
            # processed, but said nothing usable: never resend it
            return Answer(AnswerKind.OK, totals, retry_after)
        if 200 <= code_int < 300:
            _fill_counts(totals, obj)
            return Answer(AnswerKind.OK, totals, retry_after)
        return Answer(_classify(code_int, text), totals, retry_after)
    if 300 <= status_code < 400:
        return Answer(AnswerKind.REDIRECT, totals, retry_after, location)
    return Answer(_classify(status_code, text), totals, retry_after)


_MSG_RULES: tuple[tuple[str, AnswerKind], ...] = (
    ("VALIDATE TOKEN", AnswerKind.AUTH),
    ("ENTER THE WOLKVOX-TOKEN", AnswerKind.AUTH),
    ("TOKEN LIMIT", AnswerKind.QUOTA),
    ("SIMULTANEOUS", AnswerKind.SIMULTANEOUS),
    ("MAINTENANCE", AnswerKind.MAINTENANCE),
    ("BACKUP", AnswerKind.MAINTENANCE),
    ("DOES NOT EXIST", AnswerKind.ENDPOINT),
    ("SOME PARAMETERS", AnswerKind.MALFORMED),
)
_TOO_LARGE_WORDS = ("TOO MANY", "TOO LARGE", "LIMIT IS")


def _classify(status: int, text: str) -> AnswerKind:
    if status == 401:
        return AnswerKind.AUTH
    upper = text.upper()
    for needle, kind in _MSG_RULES:
        if needle in upper:
            return kind
    if status == 413:
        return AnswerKind.TOO_LARGE
    # "429 Too Many Requests" and 5xx pages are transient, whatever words they use
    if status == 429 or status >= 500 or "TOO MANY REQUESTS" in upper:
        return AnswerKind.RETRY
    if any(word in upper for word in _TOO_LARGE_WORDS):
        return AnswerKind.TOO_LARGE
    if status in (404, 405):
        return AnswerKind.ENDPOINT
    return AnswerKind.RETRY


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _code_of(obj: dict[str, object] | None) -> str | None:
    if obj is None:
        return None
    code = obj.get("code")
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, int):
        return str(code)
    if isinstance(code, float) and code.is_integer():
        return str(int(code))
    if isinstance(code, str) and code.strip():
        return code.strip()
    return None


def _text_of(decoded: object, body: bytes) -> str:
    if isinstance(decoded, dict):
        pieces = [decoded.get(key) for key in ("msg", "error")]
        return " ".join(piece for piece in pieces if isinstance(piece, str))
    if isinstance(decoded, str):
        return decoded
    return body[:_TEXT_SCAN].decode("utf-8", errors="replace")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MSG_MAX else line[: _MSG_MAX - 1] + "…"


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _fill_counts(totals: ServerTotals, obj: dict[str, object]) -> None:
    data = obj.get("data")
    first = data[0] if isinstance(data, list) and data else data
    if isinstance(first, dict):
        totals.added = _int(first.get("total_added"))
        totals.rejected = _int(first.get("total_rejected"))
        totals.sent = _int(first.get("total_sent"))
    if totals.added is None:
        msg = obj.get("msg")
        match = _ADDED_RE.search(msg) if isinstance(msg, str) else None
        if match is not None:
            totals.added = int(match.group(1))
    sent, rejected = totals.sent, totals.rejected
    if totals.added is None and sent is not None and rejected is not None and sent >= rejected:
        totals.added = sent - rejected


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, seconds)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --- one logical call ------------------------------------------------------------------------


class WolkvoxClient:
    """Makes add_dnc calls one at a time, retrying what is transient.

    ``calls`` counts HTTP requests (retries included), ``retries`` the retries;
    ``last_attempts`` and ``last_totals`` describe the last ``add_dnc`` call, even one that
    raised; ``last_answer_lost`` says that one of its attempts broke after the request may
    have reached the server (so that attempt may have added the numbers, unanswered), or was
    abandoned by an interrupt while it was out. After such an attempt nothing is sent until
    the lost answer's grace has passed (see the module docstring); every wait is interruptible
    (``Interrupted``) and told through ``on_retry``.

    ``http`` is an httpx Client (all of httpx: proxies, hooks; the tests' MockTransport) or a
    bare transport, called directly: ``make_sender`` gives the one a run uses.
    """

    def __init__(
        self,
        http: httpx.Client | httpx.BaseTransport,
        options: SendOptions,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        note_rest: Callable[[float, float], None] | None = None,
    ) -> None:
        secret = options.token.reveal()
        if (
            not secret
            or secret != secret.strip()
            or any(not 0x20 <= ord(ch) < 0x7F for ch in secret)
        ):
            raise TokenError(
                "the token is empty or has characters an HTTP header cannot carry (line breaks, "
                "non-ASCII letters, spaces around it): check WOLKVOX_TOKEN or the --token-file"
            )
        self._http = http
        self._options = options
        self._secret = secret
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._on_retry = on_retry
        grace = options.lost_answer_wait
        self._grace = options.read_timeout if grace is None else grace
        self._note_rest = note_rest
        self._rest_span = options.read_timeout + self._grace
        """The longest a request may keep the token busy: its read timeout, then the rest."""
        self._not_before = -math.inf
        """``clock()`` time before which the token must not be used (a lost answer's grace)."""
        self.calls = 0
        self.retries = 0
        self.last_attempts = 0
        self.last_totals = ServerTotals()
        self.last_answer_lost = False
        self._url = httpx.URL(options.url)
        self._headers = httpx.Headers(
            {
                "User-Agent": f"dnc-import/{__version__}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "wolkvox-token": secret,
            }
        )
        self._timeouts: dict[str, float | None] = timeout_of(options).as_dict()
        head = [b"POST %s HTTP/1.1" % self._url.raw_path, b"Host: %s" % self._url.netloc]
        head += [b"%s: %s" % pair for pair in self._headers.raw]
        self._head = b"\r\n".join([*head, b"Content-Length: "])
        """The request line and headers of every request, up to the Content-Length value."""
        self._waiting: Callable[[], None] | None = None

    def add_dnc(
        self,
        items: Sequence[SendItem],
        *,
        body: bytes | None = None,
        while_waiting: Callable[[], None] | None = None,
    ) -> ServerTotals:
        """Send one batch; return the server's totals, or raise what stops or splits it.

        ``body``: the batch already encoded (``encode_body`` of its numbers), if the caller
        has it. ``while_waiting`` is called at most once, while the server works on the first
        attempt (a ``KeepAliveTransport``), else once that attempt is over: work that does not
        need this answer (reading the next batch) is then done for free. Any exception it
        raises is raised here, after the connection is dropped (its answer is then lost).
        """
        if not items:
            return ServerTotals(added=0, rejected=0, sent=0)
        if body is None:
            body = encode_body([(item.telephone, item.days_block) for item in items])
        self.last_attempts = 0
        self.last_totals = ServerTotals()
        self.last_answer_lost = False
        self._waiting = while_waiting
        unknown_403 = 0
        while True:
            self.check_max_calls()
            if self.last_attempts == 0:  # a retry's wait already holds the grace
                self._rest_before(len(items))
            self.last_attempts += 1
            answer, problem = self._attempt(body, len(items))
            self._run_waiting()
            if answer is not None:
                self.last_totals = answer.totals
                if answer.kind is AnswerKind.OK:
                    return answer.totals
                self._raise_final(answer, len(items))
                problem = self._describe(answer)
                if answer.kind is AnswerKind.RETRY and _is_403(answer.totals):
                    unknown_403 += 1
                    if unknown_403 > _UNKNOWN_403_RETRIES:
                        raise BatchFailed(
                            f"the server at {self._options.url} refused {len(items)} numbers "
                            f"with an unknown 403 {unknown_403} times (last: {problem}); the "
                            "run stopped there: check the token's permissions with Wolkvox "
                            "support, then resume the run"
                        )
            self._wait_before_retry(answer, problem, len(items))

    def check_max_calls(self) -> None:
        """Raise ``QuotaExhausted`` if ``--max-calls`` requests were made (before each request,
        and by the chunker before it begins a batch: a batch never sent is never in flight)."""
        limit = self._options.max_calls
        if limit is not None and self.calls >= limit:
            raise QuotaExhausted(
                f"--max-calls {limit} reached after {self.calls} requests; the numbers not "
                "yet sent are marked not_sent: resume the run to send them, or raise --max-calls"
            )

    def _run_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting()

    def _exchange(self, payload: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        """One HTTP request and its whole answer (status, body, headers), through ``http``."""
        http = self._http
        if isinstance(http, KeepAliveTransport):
            http.start(
                self._url, self._head + b"%d\r\n\r\n" % len(payload), payload, self._timeouts
            )
            try:
                self._run_waiting()
            except BaseException:
                http.close()  # its answer is never read: the connection is unusable
                raise
            status, headers, content = http.finish()
            return status, content, dict(headers)
        if isinstance(http, httpx.Client):
            response = http.post(
                self._options.url,
                content=payload,
                headers={"wolkvox-token": self._secret, "Content-Type": "application/json"},
                follow_redirects=False,
            )
        else:
            response = http.handle_request(
                httpx.Request(
                    "POST",
                    self._url,
                    headers=self._headers,
                    content=payload,
                    extensions={"timeout": self._timeouts},
                )
            )
            try:
                response.read()
            finally:
                response.close()
        return response.status_code, response.content, response.headers

    def _attempt(self, payload: bytes, count: int) -> tuple[Answer | None, str]:
        url = self._options.url
        self.calls += 1
        note = self._note_rest
        if note is not None:  # if the process dies before the answer, the next run waits this
            note(time.time() + self._rest_span, self._rest_span)
        try:
            status, content, headers = self._exchange(payload)
        except httpx.HTTPError as exc:
            if not isinstance(exc, _NEVER_SENT):
                self._answer_lost()
            self._note_owed()
            return None, self._network_problem(exc)
        except KeyboardInterrupt as exc:
            self._answer_lost()
            raise Interrupted(
                f"interrupted while {count} numbers were in flight to {url}: the server may or "
                "may not have added them; resume the run to send what is left"
            ) from exc
        except BaseException:
            self._answer_lost()  # e.g. while_waiting failed while the request was out
            raise
        self._note_owed()
        answer = parse_answer(status, content, headers)
        return self._scrubbed(answer), ""

    def _network_problem(self, exc: httpx.HTTPError) -> str:
        url = self._options.url
        if _is_certificate_error(exc):
            raise EndpointRefused(
                f"the TLS certificate of {url} could not be verified: if your network uses a "
                "corporate proxy, give its CA certificate with --ca-bundle"
            ) from exc
        what = _NETWORK_WORDS.get(type(exc))
        if what is None:
            what = next(
                (words for cls, words in _NETWORK_WORDS.items() if isinstance(exc, cls)),
                "the request failed",
            )
        what = what.format(connect=self._options.connect_timeout, read=self._options.read_timeout)
        # only OS-level text (e.g. "[Errno 111] Connection refused"): it never holds headers
        detail = self._scrub(_one_line(str(exc))) if isinstance(exc, httpx.ConnectError) else ""
        return f"{what} ({type(exc).__name__}{': ' + detail if detail else ''})"

    def _raise_final(self, answer: Answer, count: int) -> None:
        url = self._options.url
        said = self._describe(answer)
        kind = answer.kind
        if kind is AnswerKind.AUTH:
            raise AuthRefused(
                f"the server at {url} refused the token ({said}): check WOLKVOX_TOKEN or "
                "--token-file, get a valid token from Wolkvox, then resume the run"
            )
        if kind is AnswerKind.QUOTA:
            raise QuotaExhausted(
                f"the token's daily call quota is spent ({said}): resume the run after the "
                "quota resets"
            )
        if kind is AnswerKind.ENDPOINT:
            raise EndpointRefused(
                f"the server at {url} does not know this API ({said}): check --server/--base-url"
            )
        if kind is AnswerKind.REDIRECT:
            raise EndpointRefused(
                f"the server answered a redirect to {answer.location or '(no location)'} "
                f"(HTTP {answer.totals.http_status}) instead of an answer from {url}; it was "
                "not followed (the token is never sent elsewhere): check --server/--base-url"
            )
        if kind is AnswerKind.MALFORMED:
            raise MalformedBatch(f"the server refused {count} numbers as malformed ({said})")
        if kind is AnswerKind.TOO_LARGE:
            raise BatchTooLarge(f"the server refused {count} numbers as too large ({said})")

    def _wait_before_retry(self, answer: Answer | None, problem: str, count: int) -> None:
        options = self._options
        grace = self._grace_left()
        if self.last_attempts > options.retries:
            lost = (
                "; an attempt's answer was lost, so the server may have added them"
                if self.last_answer_lost
                else ""
            )
            if grace > 0:  # the token stays out of use (and this run holds it) until then
                self._tell(
                    f"giving up on {count} numbers in {grace:.1f} s: the server may still be "
                    f"working on the last request ({problem}), so the token rests until then "
                    f"(--lost-answer-wait)"
                )
                self._pause(grace, f"waiting to give up on {count} numbers", problem)
            raise BatchFailed(
                f"{count} numbers could not be sent to {options.url} after "
                f"{self.last_attempts} attempts (last: {problem}){lost}; the run stopped there: "
                "resume it later, or raise --retries/--max-wait"
            )
        if answer is not None and answer.retry_after is not None:
            backoff = min(answer.retry_after, options.max_wait)
        else:
            maintenance = answer is not None and answer.kind is AnswerKind.MAINTENANCE
            base = _MAINTENANCE_WAIT if maintenance else _BASE_WAIT
            ceiling = min(options.max_wait, base * 2.0 ** (self.last_attempts - 1))
            backoff = self._rng.uniform(0.0, ceiling)
        wait = max(backoff, grace)
        self.retries += 1
        resting = (
            f"; the server may still be working on that request, so the token rests "
            f"{grace:.1f} s (--lost-answer-wait)"
            if grace > backoff
            else ""
        )
        self._tell(
            f"retry {self.last_attempts}/{options.retries} in {wait:.1f} s: {problem}{resting}"
        )
        self._pause(wait, f"waiting to retry {count} numbers", problem)

    def _rest_before(self, count: int) -> None:
        """Before a batch's first attempt: wait out the grace of an earlier lost answer."""
        grace = self._grace_left()
        if grace <= 0:
            return
        self._tell(
            f"waiting {grace:.1f} s before sending {count} numbers: an earlier request's answer "
            f"was lost and the server may still be working on it (--lost-answer-wait)"
        )
        self._pause(grace, f"waiting to send {count} numbers", "")

    def _answer_lost(self) -> None:
        """An attempt's request may have reached the server and its answer will never come."""
        self.last_answer_lost = True
        self._not_before = max(self._not_before, self._clock() + self._grace)

    def _grace_left(self) -> float:
        return max(0.0, self._not_before - self._clock())

    def _note_owed(self) -> None:
        """Once an attempt is over: the rest still owed (none, or a lost answer's), for the
        next run should this one stop now. An interrupt mid-request skips it: the note made
        before the request (it may run until its read timeout, then the rest) stands."""
        if self._note_rest is not None:
            grace = self._grace_left()
            self._note_rest(time.time() + grace if grace > 0 else 0.0, self._rest_span)

    def _tell(self, message: str) -> None:
        if self._on_retry is not None:
            self._on_retry(message)

    def _pause(self, seconds: float, doing: str, problem: str) -> None:
        """Sleep; Ctrl-C or SIGTERM meanwhile raises ``Interrupted``, which says whether the
        server may have added the numbers (only if an attempt's answer was lost)."""
        try:
            self._sleep(seconds)
        except KeyboardInterrupt as exc:
            last = f" (last: {problem})" if problem else ""
            said = (
                "an attempt's answer was lost, so the server may or may not have added them"
                if self.last_answer_lost
                else "the server has not added them"
            )
            raise Interrupted(
                f"interrupted while {doing}{last}: {said}; resume the run to send what is left"
            ) from exc

    def _describe(self, answer: Answer) -> str:
        totals = answer.totals
        same = totals.code == str(totals.http_status)
        code = f", code {totals.code}" if totals.code and not same else ""
        msg = f" {totals.msg!r}" if totals.msg else ""
        return f"HTTP {totals.http_status}{code}{msg}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***")

    def _scrubbed(self, answer: Answer) -> Answer:
        if self._secret not in answer.totals.msg and self._secret not in answer.location:
            return answer
        answer.totals.msg = self._scrub(answer.totals.msg)
        return Answer(answer.kind, answer.totals, answer.retry_after, self._scrub(answer.location))


_NETWORK_WORDS: dict[type[httpx.HTTPError], str] = {
    httpx.ConnectTimeout: "could not connect within {connect:g} s",
    httpx.ReadTimeout: "no answer within {read:g} s",
    httpx.WriteTimeout: "could not send the request within {read:g} s",
    httpx.PoolTimeout: "no free connection within {connect:g} s",
    httpx.ConnectError: "could not connect",
    httpx.RemoteProtocolError: "the server closed the connection without a valid answer",
    httpx.ReadError: "the connection broke while reading the answer",
    httpx.WriteError: "the connection broke while sending the request",
    httpx.ProxyError: "the proxy refused the request",
    httpx.TimeoutException: "timed out",
    httpx.NetworkError: "network error",
    httpx.TransportError: "transport error",
}


_NEVER_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
"""Failures before a request can have reached the server; after any other, it may have."""


def _is_403(totals: ServerTotals) -> bool:
    return totals.http_status == 403 or totals.code == "403"


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)

"""The add_dnc client: URL checks, answer parsing, retries, error mapping, token secrecy."""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path

import certifi
import httpx
import pytest

from importer.client import (
    AnswerKind,
    WolkvoxClient,
    build_url,
    parse_answer,
)
from importer.config import SendOptions, Token
from importer.errors import (
    AuthRefused,
    BatchFailed,
    BatchTooLarge,
    EndpointRefused,
    ImporterError,
    Interrupted,
    MalformedBatch,
    QuotaExhausted,
    TokenError,
    UsageError,
)
from importer.http11 import make_http_client
from importer.model import SendItem

SECRET = "tok-ZQX9-distinctive-7731"
URL = "https://wv0002.wolkvox.com/api/v2/campaign.php?api=add_dnc"
ITEMS = [SendItem(1, "3001234567", 30), SendItem(2, "3109876543", 365)]

Reply = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, replies: Iterable[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply(request)
        return reply


class Ceiling(random.Random):
    """Full jitter made predictable: always the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FakeTime:
    """The client's clock, moved on only by its own sleeps (each recorded in ``waits``)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def body(code: object = 201, msg: str = "2 telephones were added", **data: str) -> bytes:
    payload: dict[str, object] = {"code": code, "error": None, "msg": msg}
    if data:
        payload["data"] = [data]
    return json.dumps(payload).encode()


def reply(status: int, content: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


def ok(added: str = "2", rejected: str = "0", sent: str = "2") -> httpx.Response:
    return reply(200, body(total_added=added, total_rejected=rejected, total_sent=sent))


def opts(**changes: object) -> SendOptions:
    settings: dict[str, object] = {"url": URL, "token": Token(SECRET), "lock_key": "wv0002"}
    settings.update(changes)
    return SendOptions(**settings)  # type: ignore[arg-type]


def make(
    server: FakeServer, *, follow: bool = False, **changes: object
) -> tuple[WolkvoxClient, list[float], list[str]]:
    clock = FakeTime()
    notes: list[str] = []
    http = httpx.Client(transport=httpx.MockTransport(server), follow_redirects=follow)
    client = WolkvoxClient(
        http,
        opts(**changes),
        sleep=clock.sleep,
        rng=Ceiling(),
        on_retry=notes.append,
        clock=clock.clock,
    )
    return client, clock.waits, notes


# --- build_url -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "url", "key"),
    [
        ("0002", URL, "wv0002"),
        ("wv0042", "https://wv0042.wolkvox.com/api/v2/campaign.php?api=add_dnc", "wv0042"),
        ("WV0100", "https://wv0100.wolkvox.com/api/v2/campaign.php?api=add_dnc", "wv0100"),
        (" 0002 ", URL, "wv0002"),
    ],
)
def test_build_url_accepts_server_codes(server: str, url: str, key: str) -> None:
    assert build_url(server, None) == (url, key)


@pytest.mark.parametrize(
    "server",
    ["evil.example/x", "0002.evil.com", "002", "00020", "wv", "wv 0002", "0002/", "٠٠٠٢", ""],
)
def test_build_url_refuses_anything_else_as_server(server: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_url(server, None)
    assert str(caught.value) == (
        f"--server {server!r} is not a Wolkvox server code: give the 4 digits Wolkvox support "
        "gave your operation, e.g. --server 0002"
    )


@pytest.mark.parametrize(
    ("base", "url", "key"),
    [
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/api/v2/campaign.php?api=add_dnc",
            "http://127.0.0.1:8080",
        ),
        (
            "http://localhost",
            "http://localhost/api/v2/campaign.php?api=add_dnc",
            "http://localhost:80",
        ),
        (
            "http://[::1]:9000/",
            "http://[::1]:9000/api/v2/campaign.php?api=add_dnc",
            "http://[::1]:9000",
        ),
        (
            "http://127.9.8.7:81",
            "http://127.9.8.7:81/api/v2/campaign.php?api=add_dnc",
            "http://127.9.8.7:81",
        ),
        (
            "https://example.com/base/",
            "https://example.com/base/api/v2/campaign.php?api=add_dnc",
            "https://example.com:443",
        ),
        (
            "HTTPS://Example.com:8443",
            "https://example.com:8443/api/v2/campaign.php?api=add_dnc",
            "https://example.com:8443",
        ),
    ],
)
def test_build_url_accepts_base_urls(base: str, url: str, key: str) -> None:
    assert build_url(None, base) == (url, key)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (
            "http://10.0.0.1",
            (
                "--base-url 'http://10.0.0.1' uses plain http to a host that is not "
                "loopback: the token would cross the network unencrypted; use https://, or http only "
                "to 127.0.0.1, localhost or ::1"
            ),
        ),
        (
            "http://localhost.evil.com",
            (
                "--base-url 'http://localhost.evil.com' uses plain http to "
                "a host that is not loopback: the token would cross the network unencrypted; use "
                "https://, or http only to 127.0.0.1, localhost or ::1"
            ),
        ),
        (
            "https://user:pw@example.com",
            (
                "--base-url must not contain a user name or password "
                "(user@host): give https://host[:port][/path]"
            ),
        ),
        (
            "https://example.com/?x=1",
            (
                "--base-url 'https://example.com/?x=1' has a query or "
                "fragment: give only https://host[:port][/path]"
            ),
        ),
        (
            "https://example.com/#f",
            (
                "--base-url 'https://example.com/#f' has a query or "
                "fragment: give only https://host[:port][/path]"
            ),
        ),
        (
            "ftp://example.com",
            (
                "--base-url 'ftp://example.com' is not an http(s) URL: give "
                "https://host[:port][/path]"
            ),
        ),
        (
            "example.com",
            ("--base-url 'example.com' is not an http(s) URL: give https://host[:port][/path]"),
        ),
        (
            "https://example.com:99999",
            ("--base-url 'https://example.com:99999' has an invalid port"),
        ),
        (
            "https://exa mple.com",
            ("--base-url 'https://exa mple.com' contains spaces or control characters"),
        ),
    ],
)
def test_build_url_refuses_bad_base_urls(base: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_url(None, base)
    assert str(caught.value) == message


def test_build_url_wants_exactly_one_of_server_and_base_url() -> None:
    with pytest.raises(UsageError, match=r"^give --server or --base-url, not both$"):
        build_url("0002", "https://example.com")
    with pytest.raises(UsageError) as caught:
        build_url(None, None)
    assert str(caught.value) == (
        "no Wolkvox server given: give --server NNNN (the 4 digits Wolkvox support gave your "
        "operation) or set WOLKVOX_SERVER"
    )


# --- make_http_client ------------------------------------------------------------------------


def test_http_client_is_safe_by_default() -> None:
    with make_http_client(opts(connect_timeout=7.0, read_timeout=80.0)) as http:
        assert http.follow_redirects is False
        assert http.timeout == httpx.Timeout(connect=7.0, read=80.0, write=80.0, pool=7.0)
        assert "wolkvox-token" not in http.headers


def test_http_client_takes_a_ca_bundle(tmp_path: Path) -> None:
    with make_http_client(opts(ca_bundle=Path(certifi.where()))) as http:
        assert http.follow_redirects is False
    missing = tmp_path / "proxy-ca.pem"
    with pytest.raises(UsageError) as caught:
        make_http_client(opts(ca_bundle=missing))
    assert str(caught.value) == (
        f"--ca-bundle {str(missing)!r} cannot be used as a CA bundle (FileNotFoundError): "
        "give a readable PEM file of your proxy's CA"
    )


# --- parse_answer ----------------------------------------------------------------------------

EMPTY = {"total_added": "", "total_rejected": "", "total_sent": ""}


@pytest.mark.parametrize(
    ("status", "content", "added", "rejected", "sent"),
    [
        (200, body(total_added="3", total_rejected="1", total_sent="4"), 3, 1, 4),
        (201, body(code="201", total_added="2", total_rejected="0", total_sent="2"), 2, 0, 2),
        (
            200,
            body(code=" 201 ", msg="", total_added="7", total_rejected="", total_sent=""),
            7,
            None,
            None,
        ),
        (200, body(msg="5 telephones were added", **EMPTY), 5, None, None),
        (200, body(msg="1 TELEPHONES WERE ADDED", **EMPTY), 1, None, None),
        (200, body(msg="done", total_added="", total_rejected="2", total_sent="10"), 8, 2, 10),
        (200, body(code=200, msg="ok"), None, None, None),
        (200, body(total_added=" 4 ", total_rejected="x", total_sent="-1"), 4, None, None),
        (200, json.dumps({"code": 201, "data": {"total_added": 9}}).encode(), 9, None, None),
    ],
)
def test_parse_answer_reads_counts(
    status: int, content: bytes, added: int | None, rejected: int | None, sent: int | None
) -> None:
    answer = parse_answer(status, content, {})
    assert answer.kind is AnswerKind.OK
    assert (answer.totals.added, answer.totals.rejected, answer.totals.sent) == (
        added,
        rejected,
        sent,
    )
    assert answer.totals.http_status == status


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<html>ok</html>",
        b'{"code": 201, "msg": "3 telephones were add',
        b"[1, 2]",
        b'{"msg": "2 telephones were added"}',
        b'{"code": "OK"}',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
    ],
)
def test_parse_answer_2xx_without_a_usable_code_is_processed_with_unknown_counts(
    content: bytes,
) -> None:
    answer = parse_answer(200, content, {})
    assert answer.kind is AnswerKind.OK
    assert (answer.totals.added, answer.totals.rejected, answer.totals.sent) == (None, None, None)


def jbody(code: int | str, msg: str) -> bytes:
    return json.dumps({"code": code, "error": "Err", "msg": msg}).encode()


@pytest.mark.parametrize(
    ("status", "content", "kind"),
    [
        (400, jbody(400, "THE API YOU WANT TO CONSULT DOES NOT EXIST"), AnswerKind.ENDPOINT),
        (400, jbody("400", "SOME PARAMETERS ARE REQUIRED"), AnswerKind.MALFORMED),
        (401, jbody(401, "PLEASE ENTER THE WOLKVOX-TOKEN"), AnswerKind.AUTH),
        (401, b"", AnswerKind.AUTH),
        (403, jbody(403, "PLEASE VALIDATE TOKEN"), AnswerKind.AUTH),
        (403, jbody("403", "please validate token"), AnswerKind.AUTH),
        (403, b"PLEASE VALIDATE TOKEN", AnswerKind.AUTH),
        (403, jbody(403, "TOKEN LIMIT EXCEEDED"), AnswerKind.QUOTA),
        (
            403,
            jbody(403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"),
            AnswerKind.SIMULTANEOUS,
        ),
        (403, jbody(403, "API UNAVAILABLE: MAINTENANCE"), AnswerKind.MAINTENANCE),
        (503, b"<h1>Server backup in progress</h1>", AnswerKind.MAINTENANCE),
        (413, b"", AnswerKind.TOO_LARGE),
        (400, jbody(400, "TOO MANY RECORDS: THE LIMIT IS 10000 PER REQUEST"), AnswerKind.TOO_LARGE),
        (400, jbody(400, "payload too large"), AnswerKind.TOO_LARGE),
        (429, b"Too Many Requests", AnswerKind.RETRY),
        (403, b"Too Many Requests", AnswerKind.RETRY),
        (500, b"<html>Internal Server Error</html>", AnswerKind.RETRY),
        (502, b"too many connections", AnswerKind.RETRY),
        (503, b"", AnswerKind.RETRY),
        (403, jbody(403, "FORBIDDEN"), AnswerKind.RETRY),
        (418, b"teapot", AnswerKind.RETRY),
        (404, b"Not Found", AnswerKind.ENDPOINT),
        (200, jbody(403, "TOKEN LIMIT EXCEEDED"), AnswerKind.QUOTA),
        (200, jbody("401", "whatever"), AnswerKind.AUTH),
        (200, jbody(500, "internal"), AnswerKind.RETRY),
        (302, b"Moved", AnswerKind.REDIRECT),
    ],
)
def test_parse_answer_error_table(status: int, content: bytes, kind: AnswerKind) -> None:
    assert parse_answer(status, content, {}).kind is kind


def test_parse_answer_keeps_code_msg_and_location() -> None:
    answer = parse_answer(403, jbody("403", "TOKEN   LIMIT\nEXCEEDED"), {})
    assert (answer.totals.code, answer.totals.msg) == ("403", "TOKEN LIMIT EXCEEDED Err")
    moved = parse_answer(301, b"", {"Location": "https://elsewhere.example/"})
    assert moved.location == "https://elsewhere.example/"
    long = parse_answer(500, b"x" * 5000, {})
    assert len(long.totals.msg) == 200 and long.totals.msg.endswith("…")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("-3", None),
        ("nan", None),
    ],
)
def test_parse_answer_reads_retry_after(value: str, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    answer = parse_answer(429, b"", {"retry-after": value}, now=now)
    assert answer.retry_after == seconds
    assert parse_answer(429, b"", httpx.Headers({"Retry-After": "4"})).retry_after == 4.0


# --- the request -----------------------------------------------------------------------------


def test_add_dnc_sends_the_documented_request() -> None:
    server = FakeServer([ok()])
    client, waits, _ = make(server)
    totals = client.add_dnc(ITEMS)
    (request,) = server.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["wolkvox-token"] == SECRET
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == [
        {"telephone": "3001234567", "days_block": "30"},
        {"telephone": "3109876543", "days_block": "365"},
    ]
    assert (totals.added, totals.rejected, totals.sent, totals.code) == (2, 0, 2, "201")
    assert (client.calls, client.retries, client.last_attempts, waits) == (1, 0, 1, [])


def test_add_dnc_with_nothing_sends_nothing() -> None:
    server = FakeServer([ok()])
    client, _, _ = make(server)
    assert client.add_dnc([]).added == 0
    assert server.requests == [] and client.calls == 0


def test_garbage_2xx_is_never_resent() -> None:
    server = FakeServer([reply(200, b'{"code": 201, "msg": "3 telephones were add'), ok()])
    client, waits, _ = make(server)
    totals = client.add_dnc(ITEMS)
    assert (totals.added, totals.rejected, totals.sent) == (None, None, None)
    assert len(server.requests) == 1 and waits == []


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            reply(401, jbody(401, "PLEASE ENTER THE WOLKVOX-TOKEN")),
            AuthRefused,
            (
                f"the server at {URL} refused the token (HTTP 401 'PLEASE ENTER THE WOLKVOX-TOKEN Err'):"
                " check WOLKVOX_TOKEN or --token-file, get a valid token from Wolkvox, then resume the "
                "run"
            ),
        ),
        (
            reply(403, jbody("403", "PLEASE VALIDATE TOKEN")),
            AuthRefused,
            (
                f"the server at {URL} refused the token (HTTP 403 'PLEASE VALIDATE TOKEN Err'): check "
                "WOLKVOX_TOKEN or --token-file, get a valid token from Wolkvox, then resume the run"
            ),
        ),
        (
            reply(403, jbody(403, "TOKEN LIMIT EXCEEDED")),
            QuotaExhausted,
            (
                "the token's daily call quota is spent (HTTP 403 'TOKEN LIMIT EXCEEDED Err'): resume "
                "the run after the quota resets"
            ),
        ),
        (
            reply(400, jbody(400, "THE API YOU WANT TO CONSULT DOES NOT EXIST")),
            EndpointRefused,
            (
                f"the server at {URL} does not know this API (HTTP 400 'THE API YOU WANT TO CONSULT "
                "DOES NOT EXIST Err'): check --server/--base-url"
            ),
        ),
        (
            reply(200, jbody("400", "SOME PARAMETERS ARE REQUIRED")),
            MalformedBatch,
            (
                "the server refused 2 numbers as malformed (HTTP 200, code 400 'SOME PARAMETERS ARE "
                "REQUIRED Err')"
            ),
        ),
        (reply(413), BatchTooLarge, "the server refused 2 numbers as too large (HTTP 413)"),
        (
            reply(302, b"", location="https://login.example/"),
            EndpointRefused,
            (
                "the server answered a redirect to https://login.example/ (HTTP 302) instead of an "
                f"answer from {URL}; it was not followed (the token is never sent elsewhere): check "
                "--server/--base-url"
            ),
        ),
    ],
)
def test_final_answers_raise_at_once_without_retry(
    response: httpx.Response, error: type[ImporterError], message: str
) -> None:
    server = FakeServer([response, ok()])
    client, waits, _ = make(server, follow=True)
    with pytest.raises(error) as caught:
        client.add_dnc(ITEMS)
    assert type(caught.value) is error
    assert str(caught.value) == message
    assert len(server.requests) == 1 and waits == []
    assert client.last_totals.http_status == response.status_code


# --- retries ---------------------------------------------------------------------------------


def test_transient_failures_back_off_exponentially_then_succeed() -> None:
    server = FakeServer(
        [
            reply(503),
            reply(500, b"<html>oops</html>"),
            reply(403, jbody(403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS")),
            ok(),
        ]
    )
    client, waits, notes = make(server)
    assert client.add_dnc(ITEMS).added == 2
    assert waits == [1.0, 2.0, 4.0]
    assert (client.calls, client.retries, client.last_attempts) == (4, 3, 4)
    assert notes[0] == "retry 1/5 in 1.0 s: HTTP 503"
    assert notes[1] == "retry 2/5 in 2.0 s: HTTP 500 '<html>oops</html>'"


def test_waits_are_capped_and_retries_bounded() -> None:
    server = FakeServer([reply(502)])
    client, waits, _ = make(server, retries=6, max_wait=5.0)
    with pytest.raises(BatchFailed) as caught:
        client.add_dnc(ITEMS)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert len(server.requests) == 7
    assert str(caught.value) == (
        f"2 numbers could not be sent to {URL} after 7 attempts (last: HTTP 502); the run "
        "stopped there: resume it later, or raise --retries/--max-wait"
    )


def test_full_jitter_stays_under_the_ceiling() -> None:
    server = FakeServer([reply(503)] * 5 + [ok()])
    waits: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = WolkvoxClient(http, opts(), sleep=waits.append, rng=random.Random(4))
    client.add_dnc(ITEMS)
    assert len(waits) == 5
    assert all(0.0 <= wait <= 2.0**n for n, wait in enumerate(waits))
    assert waits != [1.0, 2.0, 4.0, 8.0, 16.0]


def test_retry_after_is_honoured_and_capped() -> None:
    server = FakeServer(
        [reply(429, b"", **{"Retry-After": "7"}), reply(503, b"", **{"Retry-After": "900"}), ok()]
    )
    client, waits, _ = make(server, max_wait=60.0)
    client.add_dnc(ITEMS)
    assert waits == [7.0, 60.0]


def test_maintenance_waits_longer() -> None:
    server = FakeServer([reply(403, jbody(403, "MAINTENANCE (SERVER BACKUP)"))] * 3 + [ok()])
    client, waits, _ = make(server, max_wait=100.0)
    client.add_dnc(ITEMS)
    assert waits == [30.0, 60.0, 100.0]


def test_unknown_403_is_retried_twice_then_fails() -> None:
    server = FakeServer([reply(403, jbody(403, "FORBIDDEN"))])
    client, waits, _ = make(server, retries=5)
    with pytest.raises(BatchFailed) as caught:
        client.add_dnc(ITEMS)
    assert len(server.requests) == 3 and waits == [1.0, 2.0]
    assert str(caught.value) == (
        f"the server at {URL} refused 2 numbers with an unknown 403 3 times (last: HTTP 403 "
        "'FORBIDDEN Err'); the run stopped there: check the token's permissions with Wolkvox "
        "support, then resume the run"
    )


NETWORK_ERRORS = [
    (
        httpx.ConnectError("[Errno 111] Connection refused"),
        "could not connect (ConnectError: [Errno 111] Connection refused)",
    ),
    (httpx.ConnectTimeout("timed out"), "could not connect within 10 s (ConnectTimeout)"),
    (httpx.ReadTimeout("timed out"), "no answer within 75 s (ReadTimeout)"),
    (httpx.WriteTimeout("timed out"), "could not send the request within 75 s (WriteTimeout)"),
    (httpx.PoolTimeout("timed out"), "no free connection within 10 s (PoolTimeout)"),
    (
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        "the server closed the connection without a valid answer (RemoteProtocolError)",
    ),
    (httpx.ReadError("reset"), "the connection broke while reading the answer (ReadError)"),
    (
        httpx.WriteError("broken pipe"),
        "the connection broke while sending the request (WriteError)",
    ),
    (httpx.ProxyError("407"), "the proxy refused the request (ProxyError)"),
    (httpx.CloseError("x"), "network error (CloseError)"),
    (httpx.DecodingError("bad gzip"), "the request failed (DecodingError)"),
]
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@pytest.mark.parametrize(("exc", "said"), NETWORK_ERRORS)
def test_network_errors_are_retried_then_mapped(exc: Exception, said: str) -> None:
    """After an error that may have left the request with the server, the token rests the lost
    answer's grace (the read timeout, 75 s) before the retry and before giving up."""
    lost = not isinstance(exc, NEVER_SENT)
    server = FakeServer([exc, exc, ok()])
    client, waits, _ = make(server)
    assert client.add_dnc(ITEMS).added == 2
    assert waits == ([75.0, 75.0] if lost else [1.0, 2.0])
    failing, waits, _ = make(FakeServer([exc]), retries=1)
    with pytest.raises(BatchFailed) as caught:
        failing.add_dnc(ITEMS)
    assert waits == ([75.0, 75.0] if lost else [1.0])
    maybe = "; an attempt's answer was lost, so the server may have added them" if lost else ""
    assert str(caught.value) == (
        f"2 numbers could not be sent to {URL} after 2 attempts (last: {said}){maybe}; the run "
        "stopped there: resume it later, or raise --retries/--max-wait"
    )
    assert isinstance(caught.value, ImporterError)


def test_an_unverifiable_certificate_stops_with_the_fix() -> None:
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    server = FakeServer([error])
    client, waits, _ = make(server)
    with pytest.raises(EndpointRefused) as caught:
        client.add_dnc(ITEMS)
    assert str(caught.value) == (
        f"the TLS certificate of {URL} could not be verified: if your network uses a corporate "
        "proxy, give its CA certificate with --ca-bundle"
    )
    assert len(server.requests) == 1 and waits == []


def test_max_calls_is_checked_before_each_request_retries_included() -> None:
    server = FakeServer([ok()])
    client, _, _ = make(server, max_calls=2)
    client.add_dnc(ITEMS)
    client.add_dnc(ITEMS)
    with pytest.raises(QuotaExhausted) as caught:
        client.add_dnc(ITEMS)
    assert str(caught.value) == (
        "--max-calls 2 reached after 2 requests; the numbers not yet sent are marked not_sent: "
        "resume the run to send them, or raise --max-calls"
    )
    assert len(server.requests) == 2
    retrying, _, _ = make(FakeServer([reply(503)]), max_calls=3)
    with pytest.raises(QuotaExhausted):
        retrying.add_dnc(ITEMS)
    assert retrying.calls == 3


def test_ctrl_c_in_flight_or_while_waiting_is_interrupted() -> None:
    client, _, _ = make(FakeServer([KeyboardInterrupt()]))
    with pytest.raises(Interrupted) as caught:
        client.add_dnc(ITEMS)
    assert isinstance(caught.value.__cause__, KeyboardInterrupt)
    assert str(caught.value) == (
        f"interrupted while 2 numbers were in flight to {URL}: the server may or may not have "
        "added them; resume the run to send what is left"
    )

    def no_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    http = httpx.Client(transport=httpx.MockTransport(FakeServer([reply(503)])))
    waiting = WolkvoxClient(http, opts(), sleep=no_sleep)
    with pytest.raises(Interrupted) as caught:
        waiting.add_dnc(ITEMS)
    assert str(caught.value) == (
        "interrupted while waiting to retry 2 numbers (last: HTTP 503): the server has not "
        "added them; resume the run to send what is left"
    )
    assert waiting.last_answer_lost is False


@pytest.mark.parametrize("secret", ["", " padded", "line\nbreak", "ñandú"])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(secret: str) -> None:
    http = httpx.Client(transport=httpx.MockTransport(FakeServer([ok()])))
    with pytest.raises(TokenError) as caught:
        WolkvoxClient(http, opts(token=Token(secret)))
    assert str(caught.value) == (
        "the token is empty or has characters an HTTP header cannot carry (line breaks, "
        "non-ASCII letters, spaces around it): check WOLKVOX_TOKEN or the --token-file"
    )


# --- the token never shows -------------------------------------------------------------------


def echo(status: int, msg: str) -> Callable[[httpx.Request], httpx.Response]:
    """A server that repeats the token it received in its message (worst case)."""

    def answer(request: httpx.Request) -> httpx.Response:
        text = f"{msg} {request.headers['wolkvox-token']}"
        return httpx.Response(
            status,
            json={"code": status, "msg": text},
            headers={"Location": f"https://x.example/{SECRET}"},
        )

    return answer


ALL_PATHS: list[list[Reply]] = [
    [echo(401, "PLEASE ENTER THE WOLKVOX-TOKEN")],
    [echo(403, "PLEASE VALIDATE TOKEN")],
    [echo(403, "TOKEN LIMIT EXCEEDED")],
    [echo(400, "THE API DOES NOT EXIST")],
    [echo(400, "SOME PARAMETERS ARE REQUIRED")],
    [echo(413, "TOO LARGE")],
    [echo(302, "moved")],
    [echo(403, "unknown")],
    [echo(503, "busy")],
    [echo(403, "SIMULTANEOUS")],
    [httpx.ConnectError(f"refused {SECRET}")],
    [httpx.ReadTimeout("timed out")],
    [httpx.RemoteProtocolError("dropped")],
    [KeyboardInterrupt()],
    [echo(200, "1 telephones were added")],
]


@pytest.mark.parametrize("replies", ALL_PATHS)
def test_the_token_appears_in_no_message(replies: list[Reply]) -> None:
    server = FakeServer(replies)
    client, _, notes = make(server, retries=2)
    texts: list[str] = list(notes)
    try:
        totals = client.add_dnc(ITEMS)
        texts += [repr(totals), totals.msg]
    except ImporterError as exc:
        texts += [str(exc), repr(exc), repr(exc.args)]
    texts += [repr(client.last_totals), repr(opts()), repr(client.__dict__.get("_options"))]
    texts += notes
    assert server.requests[0].headers["wolkvox-token"] == SECRET
    assert texts and all(SECRET not in text for text in texts), texts


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("timed out"), False),
        (httpx.ProxyError("407"), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
        (httpx.ReadError("reset"), True),
        (httpx.WriteError("broken pipe"), True),
        (httpx.WriteTimeout("timed out"), True),
    ],
)
def test_an_answer_lost_after_the_request_left_is_remembered(exc: Exception, lost: bool) -> None:
    client, _, _ = make(FakeServer([exc, ok(), ok()]))
    assert client.last_answer_lost is False
    client.add_dnc(ITEMS)
    assert client.last_answer_lost is lost
    client.add_dnc(ITEMS)  # a new call starts clean
    assert client.last_answer_lost is False


# --- a lost answer's grace: the token rests before it is used again --------------------------


def test_the_retry_after_a_lost_answer_waits_the_grace_and_says_why() -> None:
    client, waits, notes = make(FakeServer([httpx.ReadTimeout("timed out"), ok()]))
    assert client.add_dnc(ITEMS).added == 2
    assert waits == [75.0]  # the read timeout, not the 1 s backoff
    assert notes == [
        (
            "retry 1/5 in 75.0 s: no answer within 75 s (ReadTimeout); the server may still be "
            "working on that request, so the token rests 75.0 s (--lost-answer-wait)"
        )
    ]
    assert client.last_answer_lost is True


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"read_timeout": 20.0}, [20.0]),  # the default follows --read-timeout
        ({"lost_answer_wait": 10.0}, [10.0]),
        ({"lost_answer_wait": 0.0}, [1.0]),  # no grace: the backoff alone
        ({"lost_answer_wait": 0.5}, [1.0]),  # a backoff longer than the grace covers it
    ],
)
def test_the_grace_is_lost_answer_wait_or_the_read_timeout(
    changes: dict[str, float], expected: list[float]
) -> None:
    client, waits, notes = make(FakeServer([httpx.RemoteProtocolError("dropped"), ok()]), **changes)
    client.add_dnc(ITEMS)
    assert waits == expected
    assert notes[0].endswith("(--lost-answer-wait)") is (expected[0] > 1.0)


def test_a_grace_shorter_than_the_backoff_leaves_the_backoff_alone() -> None:
    lost = httpx.ReadTimeout("timed out")
    client, waits, notes = make(FakeServer([lost, lost, lost, ok()]), lost_answer_wait=1.5)
    client.add_dnc(ITEMS)
    assert waits == [1.5, 2.0, 4.0]
    assert [note.endswith("(--lost-answer-wait)") for note in notes] == [True, False, False]


def test_giving_up_after_a_lost_answer_waits_the_grace_first() -> None:
    """The run stops and its token lock goes to whoever waits for it: not before the server
    may have finished the request whose answer was lost."""
    server = FakeServer([httpx.ReadTimeout("timed out")])
    client, waits, notes = make(server, retries=0, lost_answer_wait=30.0)
    with pytest.raises(BatchFailed):
        client.add_dnc(ITEMS)
    assert len(server.requests) == 1 and waits == [30.0]
    assert notes == [
        (
            "giving up on 2 numbers in 30.0 s: the server may still be working on the last request "
            "(no answer within 75 s (ReadTimeout)), so the token rests until then "
            "(--lost-answer-wait)"
        )
    ]


def test_the_next_batch_waits_what_is_left_of_an_earlier_grace() -> None:
    """A request abandoned by an interrupt (a library caller that goes on) rests the token too:
    the next call waits what is left of the grace before its first request."""
    server = FakeServer([KeyboardInterrupt(), ok()])
    clock = FakeTime()
    notes: list[str] = []
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = WolkvoxClient(
        http, opts(), sleep=clock.sleep, rng=Ceiling(), on_retry=notes.append, clock=clock.clock
    )
    with pytest.raises(Interrupted):
        client.add_dnc(ITEMS)
    assert client.last_answer_lost is True
    clock.now += 30.0
    assert len(server.requests) == 1
    assert client.add_dnc(ITEMS).added == 2
    assert clock.waits == [45.0]
    assert notes == [
        (
            "waiting 45.0 s before sending 2 numbers: an earlier request's answer was lost and the "
            "server may still be working on it (--lost-answer-wait)"
        )
    ]
    assert client.add_dnc(ITEMS).added == 2  # once over, no more waiting
    assert clock.waits == [45.0]


def interrupting(after: int) -> Callable[[float], None]:
    """A sleep that lets ``after`` waits pass, then gets Ctrl-C (SIGTERM raises the same)."""
    seen: list[float] = []

    def sleep(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) > after:
            raise KeyboardInterrupt

    return sleep


@pytest.mark.parametrize(
    ("replies", "retries", "after", "message"),
    [
        (
            [httpx.ReadTimeout("timed out")],
            5,
            0,
            (
                "interrupted while waiting to retry 2 numbers (last: no answer within 75 s "
                "(ReadTimeout)): an attempt's answer was lost, so the server may or may not have "
                "added them; resume the run to send what is left"
            ),
        ),
        (
            [httpx.ReadTimeout("timed out")],
            0,
            0,
            (
                "interrupted while waiting to give up on 2 numbers (last: no answer within 75 s "
                "(ReadTimeout)): an attempt's answer was lost, so the server may or may not have "
                "added them; resume the run to send what is left"
            ),
        ),
        (
            [httpx.ReadTimeout("timed out"), reply(429, b"", **{"Retry-After": "3"})],
            5,
            1,
            (
                "interrupted while waiting to retry 2 numbers (last: HTTP 429): an attempt's answer "
                "was lost, so the server may or may not have added them; resume the run to send "
                "what is left"
            ),
        ),
        (
            [reply(429, b"", **{"Retry-After": "3"})],
            5,
            0,
            (
                "interrupted while waiting to retry 2 numbers (last: HTTP 429): the server has not "
                "added them; resume the run to send what is left"
            ),
        ),
    ],
    ids=["grace-before-retry", "grace-before-giving-up", "backoff-after-a-lost-try", "backoff"],
)
def test_every_wait_is_interruptible_and_says_whether_numbers_may_be_added(
    replies: list[Reply], retries: int, after: int, message: str
) -> None:
    server = FakeServer(replies)
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = WolkvoxClient(http, opts(retries=retries), sleep=interrupting(after), rng=Ceiling())
    with pytest.raises(Interrupted) as caught:
        client.add_dnc(ITEMS)
    assert str(caught.value) == message
    assert isinstance(caught.value.__cause__, KeyboardInterrupt)
    assert len(server.requests) == after + 1


def test_the_wait_before_a_first_request_is_interruptible() -> None:
    server = FakeServer([KeyboardInterrupt(), ok()])
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = WolkvoxClient(http, opts(), sleep=interrupting(0))
    with pytest.raises(Interrupted):
        client.add_dnc(ITEMS)
    with pytest.raises(Interrupted) as caught:
        client.add_dnc(ITEMS)
    assert str(caught.value) == (
        "interrupted while waiting to send 2 numbers: the server has not added them; resume "
        "the run to send what is left"
    )
    assert len(server.requests) == 1

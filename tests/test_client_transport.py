"""KeepAliveTransport over real sockets: one kept-alive connection, what it reads, what it raises.

A scripted loopback server answers each request with raw bytes chosen by the test (chunked,
interim 100, close-delimited, broken, slow), so every path of ``_read_answer`` and of the
error mapping is exercised on a real socket; the Wolkvox simulator and a TLS server check the
rest. The client's own rules on top of these errors are tested in ``test_client.py``.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.client import WolkvoxClient, encode_body
from importer.config import SendOptions, Token
from importer.errors import EndpointRefused, UsageError
from importer.http11 import KeepAliveTransport, make_http_client, make_sender
from importer.model import SendItem
from importer.simulator import SimConfig, Simulator

TOKEN = "transport-token-Zx81"
ITEMS = [SendItem(1, "3001234567", 30), SendItem(2, "3109876543", 365)]
ADDED = (
    b'{"code": 201, "error": null, "msg": "2 telephones were added",'
    b' "data": [{"total_added": "2", "total_rejected": "0", "total_sent": "2"}]}'
)


def ok(body: bytes = ADDED, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", *extra]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join([*head, b"", body])


@dataclass
class Scripted:
    """A loopback HTTP server: answer ``n`` of a connection is ``answers[n]`` (bytes, or a
    function of the socket); it records every request (head and body) and connection."""

    answers: list[bytes | Callable[[socket.socket], None]]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> httpx.URL:
        return httpx.URL(f"http://127.0.0.1:{self.port}/api/v2/campaign.php?api=add_dnc")

    def close(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, suppress(OSError):  # a client that hung up (reset): next connection
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buffer = b""
        while self.answers:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.requests.append((head, buffer[:length]))
            buffer = buffer[length:]
            answer = self.answers.pop(0)
            if callable(answer):
                answer(conn)
                return
            conn.sendall(answer)


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(*answers: bytes | Callable[[socket.socket], None]) -> Scripted:
        server = Scripted(list(answers))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def post(transport: KeepAliveTransport, url: httpx.URL, body: bytes = b"[]") -> httpx.Response:
    request = httpx.Request(
        "POST", url, content=body, extensions={"timeout": {"connect": 5, "read": 5, "write": 5}}
    )
    return transport.handle_request(request)


def options(url: str, **changes: object) -> SendOptions:
    settings: dict[str, object] = {
        "url": url, "token": Token(TOKEN), "lock_key": "k", "read_timeout": 5.0, "retries": 0,
    }  # fmt: skip
    settings.update(changes)
    return SendOptions(**settings)  # type: ignore[arg-type]


# --- the body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "numbers",
    [
        [("3001234567", 30), ("+573001234567", 3650), ("93191234567", 1)],
        [('30012"34567', 30), ("3001234567\\", 5), ("tel\u00e9fono", 7)],  # escaped by json
        [],
    ],
)
def test_encode_body_is_what_json_dumps_writes(numbers: list[tuple[str, int]]) -> None:
    expected = json.dumps(
        [{"telephone": t, "days_block": str(d)} for t, d in numbers], separators=(",", ":")
    ).encode("ascii")
    assert encode_body(numbers) == expected


# --- one connection, kept -------------------------------------------------------------------


def test_one_connection_carries_every_request_and_the_request_is_one_write(
    scripted: Callable[..., Scripted],
) -> None:
    server = scripted(ok(), ok(), ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    try:
        for n in range(3):
            response = post(transport, server.url, b'[{"n":%d}]' % n)
            assert (response.status_code, response.content) == (200, ADDED)
            assert response.headers["content-type"] == "application/json"
    finally:
        transport.close()
    assert server.connections == 1 and transport.connections == 1
    head, body = server.requests[2]
    assert body == b'[{"n":2}]'
    assert head.split(b"\r\n")[0] == b"POST /api/v2/campaign.php?api=add_dnc HTTP/1.1"
    assert b"Host: 127.0.0.1:%d" % server.port in head.split(b"\r\n")


def test_a_connection_the_server_closed_is_opened_again(
    scripted: Callable[..., Scripted],
) -> None:
    server = scripted(ok(ADDED, b"Connection: close"), ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    try:
        assert post(transport, server.url).status_code == 200
        assert post(transport, server.url).status_code == 200
    finally:
        transport.close()
    assert server.connections == 2


def test_an_idle_connection_closed_by_the_server_is_not_reused(
    scripted: Callable[..., Scripted],
) -> None:
    def answer_then_hang_up(conn: socket.socket) -> None:
        conn.sendall(ok())  # keep-alive answer, then the server drops it while idle

    server = scripted(answer_then_hang_up, ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    try:
        assert post(transport, server.url).status_code == 200
        time.sleep(0.05)  # the close reaches us: the next request must not use that socket
        assert post(transport, server.url).content == ADDED
    finally:
        transport.close()
    assert server.connections == 2


# --- what it reads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n"
            ),
            200,
            b"hello world",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), 200, ADDED),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
        (
            b"HTTP/1.1 403 Forbidden\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nno",
            403,
            b"no",
        ),
    ],
    ids=["chunked", "interim-100", "no-content", "folded-header"],
)
def test_answers_are_read_whole(
    scripted: Callable[..., Scripted], raw: bytes, status: int, body: bytes
) -> None:
    server = scripted(raw, ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    try:
        response = post(transport, server.url)
        assert (response.status_code, response.content) == (status, body)
        assert post(transport, server.url).content == ADDED  # the same connection goes on
    finally:
        transport.close()
    assert server.connections == 1


def test_a_body_up_to_the_close_is_read_and_the_connection_dropped(
    scripted: Callable[..., Scripted],
) -> None:
    def close_delimited(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>")
        conn.sendall(b"down</html>")

    server = scripted(close_delimited, ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    try:
        response = post(transport, server.url)
        assert (response.status_code, response.content) == (502, b"<html>down</html>")
        assert post(transport, server.url).status_code == 200
    finally:
        transport.close()
    assert server.connections == 2


# --- what it raises -------------------------------------------------------------------------


def hang_up(conn: socket.socket) -> None:
    conn.close()


def half_answer(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"code": 201')


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (hang_up, httpx.RemoteProtocolError, "closed the connection without a whole answer"),
        (half_answer, httpx.RemoteProtocolError, "closed the connection 38 bytes early"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", httpx.RemoteProtocolError, "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", httpx.RemoteProtocolError, "bad Content"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", httpx.RemoteProtocolError, "bad header line"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            httpx.RemoteProtocolError,
            "bad chunk size",
        ),
    ],
    ids=["hang-up", "half-body", "not-http", "bad-length", "bad-header", "bad-chunk"],
)
def test_a_broken_answer_is_a_remote_protocol_error(
    scripted: Callable[..., Scripted],
    answer: bytes | Callable[[socket.socket], None],
    error: type[Exception],
    words: str,
) -> None:
    server = scripted(answer)
    transport = KeepAliveTransport(ssl.create_default_context())
    with pytest.raises(error, match=words):
        post(transport, server.url)
    transport.close()


def test_no_answer_in_time_is_a_read_timeout(scripted: Callable[..., Scripted]) -> None:
    server = scripted(lambda conn: time.sleep(1.0))
    transport = KeepAliveTransport(ssl.create_default_context())
    request = httpx.Request(
        "POST", server.url, content=b"[]", extensions={"timeout": {"read": 0.1, "write": 1}}
    )
    with pytest.raises(httpx.ReadTimeout):
        transport.handle_request(request)
    transport.close()


def test_nobody_listening_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    transport = KeepAliveTransport(ssl.create_default_context())
    with pytest.raises(httpx.ConnectError, match="Connection refused"):
        post(transport, httpx.URL(f"http://127.0.0.1:{port}/x"))


def test_a_header_with_a_line_break_is_never_written(scripted: Callable[..., Scripted]) -> None:
    server = scripted(ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    with pytest.raises(httpx.LocalProtocolError, match="line break"):
        transport.start(server.url, b"POST / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n", b"", {})
    assert server.requests == []


# --- the client on top ----------------------------------------------------------------------


def test_while_waiting_runs_while_the_request_is_out(scripted: Callable[..., Scripted]) -> None:
    called: list[float] = []
    answered: list[float] = []

    def slow_answer(conn: socket.socket) -> None:
        time.sleep(0.2)
        answered.append(time.monotonic())
        conn.sendall(ok())

    server = scripted(slow_answer)
    transport = KeepAliveTransport(ssl.create_default_context())
    client = WolkvoxClient(transport, options(str(server.url)))
    totals = client.add_dnc(ITEMS, while_waiting=lambda: called.append(time.monotonic()))
    assert totals.added == 2
    assert len(called) == 1 and called[0] < answered[0]  # once, before the answer came
    _, body = server.requests[0]
    assert body == encode_body([("3001234567", 30), ("3109876543", 365)])
    transport.close()


def test_an_interrupt_while_waiting_drops_the_connection(
    scripted: Callable[..., Scripted],
) -> None:
    server = scripted(ok(), ok())
    transport = KeepAliveTransport(ssl.create_default_context())
    # no rest for the abandoned request's token: this server has answered it at once
    client = WolkvoxClient(transport, options(str(server.url), lost_answer_wait=0.0))

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(Exception, match="in flight"):
        client.add_dnc(ITEMS, while_waiting=interrupt)
    assert client.add_dnc(ITEMS).added == 2  # a new connection: the old answer is never read
    assert server.connections == 2
    transport.close()


def test_against_the_simulator_one_connection_for_every_batch() -> None:
    with Simulator(SimConfig(token=TOKEN)) as sim:
        opts = options(sim.add_dnc_url)
        with make_sender(opts) as sender:
            assert isinstance(sender, KeepAliveTransport)
            client = WolkvoxClient(sender, opts)
            for first in range(0, 30, 10):
                batch = [SendItem(n, f"30010000{n:02d}", 30) for n in range(first, first + 10)]
                assert client.add_dnc(batch).added == 10
        assert sim.connections == 1 and sim.calls == 3
        assert len(sim.dnc_list()) == 30


def test_the_ca_store_is_loaded_only_for_https(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the default CA store costs ~1.6 MB for the whole run (issue 5's peak memory):
    a run over http:// (the simulator) never loads it."""
    made: list[object] = []
    real = httpx.create_ssl_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs.get("verify"))
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    with Simulator(SimConfig(token=TOKEN)) as sim:
        opts = options(sim.add_dnc_url)
        with make_sender(opts) as sender:
            assert WolkvoxClient(sender, opts).add_dnc(ITEMS).added == 2
    assert made == []  # https: test_tls_is_verified_and_a_ca_bundle_is_honoured


def test_a_ca_store_that_cannot_be_loaded_is_a_setup_error_before_sending(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Over https the CA store is loaded when the sender is made: a missing one is named with
    its fix, not retried batch after batch as a connection error."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="SSL_CERT_FILE and SSL_CERT_DIR, or give --ca-bundle"):
        make_sender(options("https://wv0002.wolkvox.com/api/v2/campaign.php?api=add_dnc"))
    plain = make_sender(options("http://127.0.0.1:9/api/v2/campaign.php?api=add_dnc"))
    assert isinstance(plain, KeepAliveTransport)  # http:// never needs it
    plain.close()


def test_make_sender_leaves_a_proxy_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for scheme in ("https", "http", "all"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    opts = options("https://wv0002.wolkvox.com/api/v2/campaign.php?api=add_dnc")
    assert isinstance(make_sender(opts), KeepAliveTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with make_sender(opts) as sender:
        assert isinstance(sender, httpx.Client)
        assert sender.follow_redirects is False


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on loopback with a self-signed certificate for ``localhost``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    data = b""
                    while True:  # answer every request, until the client hangs up
                        while b"\r\n\r\n" not in data:
                            more = conn.recv(65536)
                            if not more:
                                raise EOFError
                            data += more
                        head, _, data = data.partition(b"\r\n\r\n")
                        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                        while len(data) < length:
                            data += conn.recv(65536)
                        data = data[length:]
                        conn.sendall(ok())
            except (OSError, ssl.SSLError, EOFError):
                continue  # the client hung up, or refused our certificate

    threading.Thread(target=serve, daemon=True).start()
    yield port, cert
    listener.close()


def test_tls_is_verified_and_a_ca_bundle_is_honoured(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    url = f"https://localhost:{port}/api/v2/campaign.php?api=add_dnc"
    untrusting = make_sender(options(url))
    assert isinstance(untrusting, KeepAliveTransport)
    with pytest.raises(EndpointRefused) as caught:
        WolkvoxClient(untrusting, options(url), sleep=lambda _: None).add_dnc([ITEMS[0]])
    assert "could not be verified" in str(caught.value)
    assert "--ca-bundle" in str(caught.value)
    trusting = make_sender(options(url, ca_bundle=cert))
    assert isinstance(trusting, KeepAliveTransport)
    client = WolkvoxClient(trusting, options(url))
    assert [client.add_dnc(ITEMS).added for _ in range(3)] == [2, 2, 2]
    assert trusting.connections == 1  # kept alive over TLS too
    trusting.close()
    with make_http_client(options(url, ca_bundle=cert)) as http:  # the same trust for httpx
        assert WolkvoxClient(http, options(url)).add_dnc(ITEMS).added == 2

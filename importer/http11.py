"""HTTP/1.1 for the add_dnc calls: one kept-alive connection, TLS always verified, never a redirect.

``make_sender`` gives what a run sends through: ``KeepAliveTransport`` (a lean HTTP/1.1 client
of its own, ~15 us to read an answer where httpx's stack costs ~1.5 ms of CPU a request, more
than issue 5's budget of 1 ms), or httpx's own ``Client`` when the environment names a proxy.
Both raise httpx's exception types, so ``client.WolkvoxClient`` judges retries and lost answers
the same way whichever carries the request.
"""

from __future__ import annotations

import select
import socket
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

import httpx

from importer.config import SendOptions
from importer.errors import UsageError


def make_http_client(options: SendOptions) -> httpx.Client:
    """One keep-alive client for the whole run: TLS verified, redirects never followed."""
    return httpx.Client(
        timeout=timeout_of(options),
        verify=_verify(options),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


def make_sender(options: SendOptions) -> httpx.Client | KeepAliveTransport:
    """What a run sends through: a ``KeepAliveTransport``, or httpx's Client behind a proxy.

    When the environment names a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``), the
    run goes through ``make_http_client`` as before, which honours them and ``NO_PROXY``;
    otherwise through the lean transport (issue 5). Both verify TLS the same way.
    """
    proxies = urllib.request.getproxies_environment()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return make_http_client(options)
    verify = _verify(options)  # a bad --ca-bundle is refused now, before anything is sent
    if urllib.parse.urlsplit(options.url).scheme == "https":
        # the CA store loaded now too: one that cannot be is a setup error before any request,
        # not a connection error retried batch after batch
        try:
            return KeepAliveTransport(httpx.create_ssl_context(verify=verify))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"the CA certificates that verify the server cannot be loaded ({exc}): check "
                "SSL_CERT_FILE and SSL_CERT_DIR, or give --ca-bundle FILE"
            ) from exc
    # over http:// (the simulator) no CA store is ever needed (~1.6 MB: issue 5's peak); a
    # redirect is never followed, so the connection can only become https through a new URL
    return KeepAliveTransport(lambda: httpx.create_ssl_context(verify=verify))


def _verify(options: SendOptions) -> ssl.SSLContext | bool:
    if options.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(options.ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"--ca-bundle {str(options.ca_bundle)!r} cannot be used as a CA bundle "
            f"({type(exc).__name__}): give a readable PEM file of your proxy's CA"
        ) from exc


def timeout_of(options: SendOptions) -> httpx.Timeout:
    """The connect and read limits of ``options`` as httpx wants them (both senders use it)."""
    return httpx.Timeout(
        connect=options.connect_timeout,
        read=options.read_timeout,
        write=options.read_timeout,
        pool=options.connect_timeout,
    )


Timeouts = Mapping[str, float | None]
"""``connect``, ``read``, ``write`` seconds, as in httpx's ``timeout`` request extension."""


class KeepAliveTransport(httpx.BaseTransport):
    """HTTP/1.1 over one kept-alive connection: what a run sends through.

    httpx's own stack costs ~1.5 ms of CPU a request here (its Client ~0.8 ms, httpcore and h11
    ~0.5 ms), more than the tool's whole budget per request (issue 5); this one writes each
    request with one ``sendall`` and reads the answer itself (``_read_answer``: status line,
    headers, a Content-Length, chunked or close-delimited body; ~15 us where ``http.client``
    takes ~100). It keeps one connection to one origin and opens
    it again only when the server closed it (checked before each request, as httpcore does);
    it never follows a redirect (a 3xx is handed back); it raises httpx's exceptions, mapped as
    httpx maps httpcore's, so the client's retry rules see the same types whatever the
    transport. TLS uses the given context (certificate and host name verified).

    ``start(url, head, body)`` writes a request and ``finish()`` reads its answer, with no
    httpx object on the way (``WolkvoxClient`` uses them): between the two the caller may work
    while the server does. ``handle_request`` is the httpx interface over the same two steps.
    """

    def __init__(self, ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext]) -> None:
        """``ssl_context``: the TLS context, or what makes it when a first https connection
        needs it."""
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._origin: tuple[bytes, str, int] | None = None
        self._started = False
        self._timeouts: Timeouts = {}
        self._write_error: OSError | None = None
        self.connections = 0
        """Connections opened so far (one for a whole run, unless the server closes it)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
        lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw]
        head = b"\r\n".join([*lines, b"", b""])
        timeouts = request.extensions.get("timeout", {})
        self.start(request.url, head, request.read(), timeouts)
        status, headers, content = self.finish()
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def start(self, url: httpx.URL, head: bytes, body: bytes, timeouts: Timeouts) -> None:
        """Write one request (``head``: its request line and headers, CRLF-ended, blank line
        included), connecting to ``url``'s origin first if needed."""
        if self._started:
            self.close()
            raise httpx.LocalProtocolError(
                "a request was started before the answer of the previous one was read "
                "(this is a bug)"
            )
        lines = head[:-4].replace(b"\r\n", b"")
        if b"\n" in lines or b"\r" in lines:
            raise httpx.LocalProtocolError("a header holds a line break (this is a bug)")
        sock = self._connection(url, timeouts.get("connect"))
        self._started, self._timeouts, self._write_error = True, timeouts, None
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(head + body)  # one write: one segment, one wake-up of the server
        except TimeoutError as exc:
            self.close()
            raise httpx.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            # The server may have answered and closed (a 413 before the whole body): finish()
            # reads that answer, or reports this write error.
            self._write_error = exc
        except BaseException:
            self.close()
            raise

    def finish(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Read the whole answer to the request ``start`` wrote: status, headers, body."""
        sock = self._sock
        if not self._started or sock is None:
            raise httpx.LocalProtocolError("finish() without start() (this is a bug)")
        self._started = False
        try:
            sock.settimeout(self._timeouts.get("read"))
            status, headers, content, close = _read_answer(sock)
        except TimeoutError as exc:
            self.close()
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except (OSError, _BadAnswer) as exc:
            self.close()
            raise self._broken(exc) from (self._write_error or exc)
        except BaseException:
            self.close()
            raise
        if close or self._write_error is not None:
            self.close()
        return status, headers, content

    def close(self) -> None:
        """Drop the connection (a request started and not finished is abandoned)."""
        sock, self._sock, self._started = self._sock, None, False
        if sock is not None:
            sock.close()

    def _broken(self, exc: BaseException) -> httpx.TransportError:
        if self._write_error is not None:
            return httpx.WriteError(str(self._write_error))
        if isinstance(exc, _BadAnswer):
            return httpx.RemoteProtocolError(str(exc))
        return httpx.ReadError(str(exc))

    def _connection(self, url: httpx.URL, timeout: float | None) -> socket.socket:
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (scheme, url.host, url.port or (443 if scheme == b"https" else 80))
        sock = self._sock
        if sock is not None and (origin != self._origin or not _still_open(sock)):
            self.close()
            sock = None
        if sock is not None:
            return sock
        try:
            sock = socket.create_connection(origin[1:], timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:  # refused, unreachable, unknown host
            raise httpx.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == b"https":
                sock = self._tls().wrap_socket(sock, server_hostname=origin[1])
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:  # TLS: certificate, host name, handshake (ssl.SSLError)
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
        self._sock, self._origin = sock, origin
        self.connections += 1
        return sock

    def _tls(self) -> ssl.SSLContext:
        if not isinstance(self._ssl_context, ssl.SSLContext):
            self._ssl_context = self._ssl_context()
        return self._ssl_context


class _BadAnswer(Exception):
    """What the server sent is not an HTTP/1.1 answer (or it closed before the end of one)."""


_LINE_LIMIT = 65536
"""Longest status line, header block or chunk-size line accepted, in bytes."""


def _read_answer(sock: socket.socket) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    """Read one whole HTTP/1.x answer from ``sock``: its status, headers, body, and whether the
    connection must be closed after it. Interim (1xx) answers are skipped."""
    buffer = b""
    while True:
        head, buffer = _read_until(sock, buffer, b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not (code.isdigit() and len(code) == 3):
            raise _BadAnswer(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(code)
        if not 100 <= status < 200:
            break
    headers = _header_fields(lines)
    fields = {name.lower(): value for name, value in headers}
    connection = fields.get("connection", "").lower()
    close = connection == "close" or (version == b"HTTP/1.0" and connection != "keep-alive")
    if status in (204, 304):
        body = b""
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        body, buffer = _read_chunked(sock, buffer)
    elif "content-length" in fields:
        length = fields["content-length"].strip()
        if not length.isdigit():
            raise _BadAnswer(f"bad Content-Length {length[:40]!r}")
        body, buffer = _read_exactly(sock, buffer, int(length))
    else:  # the body ends when the server closes the connection
        parts = [buffer]
        while data := sock.recv(65536):
            parts.append(data)
        body, buffer, close = b"".join(parts), b"", True
    return status, headers, body, close or bool(buffer)  # bytes after an answer: a bad server


def _header_fields(lines: list[bytes]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and headers:  # an obsolete folded continuation
            known, value = headers[-1]
            headers[-1] = (known, f"{value} {line.strip().decode('latin-1')}")
            continue
        name, colon, raw = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadAnswer(f"bad header line {line[:80]!r}")
        headers.append((name.decode("latin-1"), raw.strip().decode("latin-1")))
    return headers


def _read_until(sock: socket.socket, buffer: bytes, end: bytes) -> tuple[bytes, bytes]:
    """What comes before ``end`` (read as needed), and what follows it."""
    start = 0
    while (found := buffer.find(end, start)) < 0:
        if len(buffer) > _LINE_LIMIT:
            raise _BadAnswer(f"no end of line within {_LINE_LIMIT} bytes")
        data = sock.recv(65536)
        if not data:
            raise _BadAnswer("the server closed the connection without a whole answer")
        start = max(0, len(buffer) - len(end) + 1)
        buffer += data
    return buffer[:found], buffer[found + len(end) :]


def _read_exactly(sock: socket.socket, buffer: bytes, count: int) -> tuple[bytes, bytes]:
    parts, have = [buffer], len(buffer)
    while have < count:
        data = sock.recv(max(65536, count - have))
        if not data:
            raise _BadAnswer(f"the server closed the connection {count - have} bytes early")
        parts.append(data)
        have += len(data)
    whole = b"".join(parts) if len(parts) > 1 else buffer
    return whole[:count], whole[count:]


def _read_chunked(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes]:
    chunks: list[bytes] = []
    while True:
        line, buffer = _read_until(sock, buffer, b"\r\n")
        size = line.partition(b";")[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise _BadAnswer(f"bad chunk size {line[:40]!r}")
        if int(size, 16) == 0:
            while True:  # trailer fields, up to a blank line
                line, buffer = _read_until(sock, buffer, b"\r\n")
                if not line:
                    return b"".join(chunks), buffer
        chunk, buffer = _read_exactly(sock, buffer, int(size, 16) + 2)
        if chunk[-2:] != b"\r\n":
            raise _BadAnswer("a chunk does not end where its size says")
        chunks.append(chunk[:-2])


def _still_open(sock: socket.socket) -> bool:
    """Whether a kept-alive connection may carry a request: not readable (no EOF, no stray data)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False

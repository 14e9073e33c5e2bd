"""A small buffered HTTP/1.1 client for the request pipeline (plugins, function invocations).

The streaming proxy (``fastgw.server._protocol_py``) relays bodies as they flow; this client is for
exchanges whose whole request and whole response are buffered: it writes one request and returns
one ``ClientResponse``. It is built on a raw asyncio ``Protocol`` and ``httptools`` (no third-party
HTTP client) and creates no task of its own: the caller's task awaits a future that the protocol
callbacks resolve.

Connections are pooled per (host, port, TLS context): an idle list used LIFO (the warmest connection first),
capped at ``max_idle`` per pool, and expired after ``idle_timeout`` (checked when a connection is
taken, and by one timer per client while anything is idle). A connection goes back to the pool only
after a clean, complete exchange that both sides agree to keep alive; any anomaly closes it
(DESIGN-RULES 4): a timeout, a reset, a parse error, bytes beyond the response or on an idle
connection, an unexpected 1xx, a response that arrived while the request was still being written,
a response to HEAD (httptools cannot be told that such a response has no body).

Limits and deadlines (DESIGN-RULES 3): ``timeout`` covers the whole exchange (connect, write,
response), ``connect_timeout`` the TCP connect alone (either raises ``HttpClientTimeout``); the
response body is bounded by ``max_response_bytes``, the response head by ``MAX_HEAD_BYTES`` and
``MAX_HEADERS`` (``HttpClientError``).

HTTPS: ``request(..., ssl=context)`` speaks TLS with that ``ssl.SSLContext`` (``server_hostname``
is the host, so the certificate is checked against it when the context checks host names, as
``ssl.create_default_context()`` does); TLS and plain connections, and connections made with
different contexts, never share a pool. ``max_response_bytes`` can be lowered per request.

One retry, and only one: when a reused idle connection fails before any byte of the response
arrived (the server closed it while we were picking it: the classic keep-alive race), the request
is sent again on a new connection. Nothing else is retried.
"""

from __future__ import annotations

import asyncio
import re
import ssl as _ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httptools

from fastgw.server.protocol import set_nodelay

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "ClientResponse",
    "HttpClient",
    "HttpClientError",
    "HttpClientTimeout",
]

MAX_HEAD_BYTES = 64 * 1024
"""Most bytes of response head (status line, headers, interim 1xx heads and trailers) accepted."""
MAX_HEADERS = 256
"""Most response header lines (interim heads and trailers included) accepted."""

# Request headers never sent: hop-by-hop ones (RFC 9110 7.6.1, plus proxy-*), and those the client
# writes itself (host, content-length).
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e]+")
# Header names already checked (names repeat from request to request); bounded.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 4096


# (host, port, TLS context or None): connections are reused only under the same key.
_PoolKey = tuple[str, int, "_ssl.SSLContext | None"]


async def _connect_within(loop: asyncio.AbstractEventLoop, aw: Any, seconds: float) -> Any:
    """``await aw`` (a ``create_connection``) for at most ``seconds`` (TimeoutError after).

    Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation of the caller that races the
    connection's completion is never lost (wait_for swallows it, and the request would run to its
    own deadline); a connection made after all is closed, never leaked."""
    fut = asyncio.ensure_future(aw)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        fut.cancel()

    timer = loop.call_later(seconds, expire)
    try:
        return await fut
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            fut.result()[0].close()  # connected as the caller was cancelled
        task = asyncio.current_task()
        if expired and (task is None or not task.cancelling()):
            raise TimeoutError() from None  # our timer, not the caller, cancelled it
        raise
    finally:
        timer.cancel()
        if not fut.done():
            fut.cancel()


class HttpClientError(Exception):
    """The exchange failed: connect failure, reset, malformed or too large response (answer 502)."""


class HttpClientTimeout(HttpClientError):
    """The deadline passed before the whole response arrived (answer 504)."""


class _ConnectionLost(HttpClientError):
    """The connection ended before the response did; ``got_bytes`` says whether any had arrived."""

    def __init__(self, message: str, got_bytes: bool) -> None:
        super().__init__(message)
        self.got_bytes = got_bytes


@dataclass(slots=True)
class ClientResponse:
    """One whole response: status, header list in received order (names as sent), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


class _Connection(asyncio.Protocol):
    """One TCP connection to an upstream; parses responses with httptools."""

    __slots__ = (
        "body_parts",
        "body_size",
        "clean",
        "client",
        "complete",
        "framed",
        "got_bytes",
        "head_bytes",
        "head_done",
        "headers",
        "idle",
        "idle_since",
        "keep_alive",
        "key",
        "max_body",
        "n_headers",
        "parser",
        "seen",
        "skip_body",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, client: HttpClient, key: _PoolKey) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.idle = False
        self.idle_since = 0.0
        self.clean = True  # False after any anomaly: never reused
        self.max_body = 0
        self._reset(False)

    def _reset(self, skip_body: bool) -> None:
        self.skip_body = skip_body
        self.got_bytes = False
        self.seen = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.framed = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.head_bytes = 0
        self.n_headers = 0
        self.body_parts: list[bytes] = []
        self.body_size = 0

    # -- use by the client
    def start(self, waiter: asyncio.Future[None], skip_body: bool, max_body: int) -> None:
        self._reset(skip_body)
        self.max_body = max_body
        self.waiter = waiter

    def abort(self) -> None:
        self.clean = False
        self.waiter = None
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.clean = False
        self.client._forget(self)
        waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        if waiter.done():
            return
        if exc is None and self.head_done and not self.framed and not self.complete:
            # A close-delimited body (no Content-Length, not chunked) ends at a clean EOF.
            self.complete = True
            waiter.set_result(None)
            return
        if exc is not None:
            msg = f"connection reset ({exc})"
        elif self.got_bytes:
            msg = "connection closed in the middle of the response"
        else:
            msg = "connection closed before a response"
        waiter.set_exception(_ConnectionLost(msg, self.got_bytes))

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost decides

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # Bytes on an idle connection, or after the response: never reuse it.
            self.abort()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as ex:
            cause = ex.__context__
            if isinstance(cause, HttpClientError):
                self._fail(cause)
            else:
                self._fail(HttpClientError(f"malformed response: {cause or ex}"))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as ex:
            self._fail(HttpClientError(f"malformed response: {ex}"))
            return
        if not self.head_done and self.waiter is not None:
            # Bounds a head that never ends (a huge status line sends no callback).
            self.seen += len(data)
            if self.seen > MAX_HEAD_BYTES:
                self._fail(HttpClientError("response head too large"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            self.clean = False  # bytes beyond the response

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        self.n_headers += 1
        if self.head_bytes > MAX_HEAD_BYTES or self.n_headers > MAX_HEADERS:
            raise HttpClientError("response head too large")
        if self.head_done:
            return  # a trailer: dropped
        lname = name.lower()
        if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if status < 200:
            if status not in (100, 103):
                raise HttpClientError(f"unexpected interim response {status}")
            self.headers = []  # informational: the final head follows
            self.framed = False
            return
        self.status = status
        self.head_done = True
        if self.skip_body:
            # A response to HEAD has no body whatever its framing headers say; the parser cannot
            # be told so, hence the response ends here and the connection is not reused.
            self.clean = False
            self._done()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        size = self.body_size + len(body)
        if size > self.max_body:
            raise HttpClientError(f"response body over {self.max_body} bytes")
        self.body_size = size
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.complete or self.parser.get_status_code() < 200:
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._done()

    # -- internals
    def _done(self) -> None:
        self.complete = True
        waiter = self.waiter
        # waiter stays set until the client takes the response, so that bytes parsed after the
        # response in the same read are seen (on_message_begin) and bytes in a later read abort.
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: HttpClientError) -> None:
        waiter = self.waiter
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class _Expired(Exception):
    """The exchange's deadline passed (``request`` turns it into HttpClientTimeout)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class HttpClient:
    """Buffered HTTP/1.1 requests over pooled keep-alive connections (one loop, one owner)."""

    __slots__ = (
        "_closed",
        "_conns",
        "_idle",
        "_sweep_handle",
        "connect_timeout",
        "idle_timeout",
        "loop",
        "max_idle",
        "max_response_bytes",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        connect_timeout: float = 5.0,
        max_idle: int = 64,
        idle_timeout: float = 30.0,
        max_response_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.loop = loop
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_response_bytes = max_response_bytes
        self._idle: dict[_PoolKey, list[_Connection]] = {}
        self._conns: set[_Connection] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._closed = False

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def idle_connections(self, host: str, port: int, ssl: _ssl.SSLContext | None = None) -> int:
        """How many idle connections the pool for (host, port[, TLS context]) holds."""
        return len(self._idle.get((host, port, ssl), ()))

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeout: float,
        host_header: str | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
        max_response_bytes: int | None = None,
    ) -> ClientResponse:
        """Send one request and return the whole response.

        ``ssl``: speak TLS with this context (``server_hostname`` = ``host``); ``max_response_bytes``:
        a lower body cap than the client's for this request.

        Raises ``HttpClientTimeout`` when ``timeout`` (the whole exchange) passes,
        ``HttpClientError`` on any other failure, ``ValueError`` for a request that cannot be
        written safely (a CR, LF or NUL in it, a bad method, target or header name).
        """
        if self._closed:
            raise HttpClientError("the client is closed")
        head = _build_head(method, target, headers, body, host, port, host_header, ssl is not None)
        limit = self.max_response_bytes
        if max_response_bytes is not None:
            limit = min(limit, max_response_bytes)
        # PERF: one timer on the loop bounds the exchange, not asyncio.timeout (which needs a
        # Task, and costs a few µs and getpid() calls per use on Python 3.11): requests may run
        # in pipelines started outside a Task (fastgw.pipeline.runtime.launch).
        deadline = self.loop.time() + timeout
        try:
            return await self._exchange((host, port, ssl), head, body, method == "HEAD", limit, deadline)
        except _Expired:
            raise HttpClientTimeout(
                f"{method} to {host}:{port}: no whole response within {timeout:g}s"
            ) from None

    async def aclose(self) -> None:
        """Close every connection, idle or busy; later requests fail."""
        self._closed = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._idle.clear()
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run

    # -- internals
    async def _exchange(
        self, key: _PoolKey, head: bytes, body: bytes, skip_body: bool, max_body: int, deadline: float
    ) -> ClientResponse:
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._send(conn, head, body, skip_body, max_body, deadline)
            except _ConnectionLost as ex:
                if ex.got_bytes:
                    raise
                # The keep-alive race: the upstream closed the idle connection as we reused it.
                # Once, on a new connection.
        conn = await self._connect(key, deadline)
        return await self._send(conn, head, body, skip_body, max_body, deadline)

    async def _connect(self, key: _PoolKey, deadline: float | None = None) -> _Connection:
        host, port, context = key
        wait = self.connect_timeout
        if deadline is not None:
            wait = min(wait, deadline - self.loop.time())
            if wait <= 0:
                raise _Expired()
        try:
            if context is None:
                connecting = self.loop.create_connection(lambda: _Connection(self, key), host, port)
            else:
                connecting = self.loop.create_connection(
                    lambda: _Connection(self, key), host, port, ssl=context, server_hostname=host
                )
            _, conn = await _connect_within(self.loop, connecting, wait)
        except TimeoutError:
            if deadline is not None and self.loop.time() >= deadline:
                raise _Expired() from None
            raise HttpClientTimeout(
                f"connect to {host}:{port}: no answer within {self.connect_timeout:g}s"
            ) from None
        except (OSError, _ssl.SSLError, _ssl.CertificateError) as ex:
            raise HttpClientError(f"connect to {host}:{port} failed: {ex}") from None
        if self._closed:
            conn.abort()
            raise HttpClientError("the client is closed")
        self._conns.add(conn)
        return conn

    async def _send(
        self, conn: _Connection, head: bytes, body: bytes, skip_body: bool, max_body: int, deadline: float
    ) -> ClientResponse:
        loop = self.loop
        waiter: asyncio.Future[None] = loop.create_future()
        conn.start(waiter, skip_body, max_body)
        transport = conn.transport
        if transport is None or transport.is_closing() or not conn.clean:
            conn.abort()
            raise _ConnectionLost("connection closed before the request", False)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            if body:
                transport.writelines((head, body))
            else:
                transport.write(head)
            await waiter
        except BaseException:
            conn.abort()  # timeout, cancellation, failure: never reused
            raise
        finally:
            timer.cancel()
        conn.waiter = None
        response = ClientResponse(conn.status, conn.headers, b"".join(conn.body_parts))
        if (
            conn.clean
            and conn.keep_alive
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0  # else the response came early
        ):
            self._put_idle(conn)
        elif conn.clean and transport.get_write_buffer_size() == 0:
            transport.close()  # a clean exchange the upstream does not keep alive
        else:
            conn.abort()
        return response

    def _take_idle(self, key: _PoolKey) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        limit = self.loop.time() - self.idle_timeout
        while idle:
            conn = idle.pop()
            conn.idle = False
            transport = conn.transport
            if transport is None or transport.is_closing() or not conn.clean:
                continue
            if conn.idle_since < limit:
                # The newest is expired, so are all the older ones.
                conn.abort()
                for old in idle:
                    old.idle = False
                    old.abort()
                idle.clear()
                break
            return conn
        return None

    def _put_idle(self, conn: _Connection) -> None:
        if self._closed or self.max_idle <= 0:
            conn.transport.close()  # type: ignore[union-attr]
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        conn.idle = True
        conn.idle_since = self.loop.time()
        idle.append(conn)
        if len(idle) > self.max_idle:
            old = idle.pop(0)  # the coldest
            old.idle = False
            old.abort()
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self.idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close idle connections past ``idle_timeout``; rearm while anything is idle."""
        self._sweep_handle = None
        now = self.loop.time()
        limit = now - self.idle_timeout
        next_expiry: float | None = None
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= limit:
                conn = idle.pop(0)
                conn.idle = False
                conn.abort()
            if not idle:
                del self._idle[key]
                continue
            expiry = idle[0].idle_since + self.idle_timeout
            if next_expiry is None or expiry < next_expiry:
                next_expiry = expiry
        if next_expiry is not None and not self._closed:
            self._sweep_handle = self.loop.call_at(next_expiry, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if conn.idle:
            conn.idle = False
            idle = self._idle.get(conn.key)
            if idle is not None:
                try:
                    idle.remove(conn)
                except ValueError:  # pragma: no cover
                    pass


def _build_head(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    host: str,
    port: int,
    host_header: str | None,
    tls: bool = False,
) -> bytes:
    """The request head: request line, Host, the caller's end-to-end headers, Content-Length."""
    if _TOKEN.fullmatch(method) is None:
        raise ValueError(f"bad request method {method!r}")
    if _TARGET.fullmatch(target) is None:
        raise ValueError(f"bad request target {target!r}")
    if host_header is None:
        name = f"[{host}]" if ":" in host else host
        host_header = name if port == (443 if tls else 80) else f"{name}:{port}"
    parts = [f"{method} {target} HTTP/1.1\r\nhost: {host_header}\r\n"]
    good = _GOOD_NAMES
    for name, value in headers:
        if name not in good:
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"bad header name {name!r}")
            if len(good) < _GOOD_NAMES_MAX:
                good.add(name)
        lname = name.lower()
        if lname in _DROP or lname.startswith("proxy-"):
            continue
        parts.append(f"{name}: {value}\r\n")
    if body or method in _BODY_METHODS:
        parts.append(f"content-length: {len(body)}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    # Every CR and LF is one the client wrote: none came in with the host or a header value.
    lines = len(parts) + 1
    if text.count("\n") != lines or text.count("\r") != lines or "\x00" in text:
        raise ValueError("CR, LF or NUL in the request head")
    return text.encode("latin-1")  # UnicodeEncodeError is a ValueError

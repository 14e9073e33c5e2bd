"""fastgw.upstream.client.HttpClient against real loopback servers started by each test.

Every test runs twice, on the asyncio and the uvloop event loops. The server (``Upstream``) is a raw
asyncio server on a free 127.0.0.1 port in the same loop; it records every connection it accepted,
every request head and body it read, and which connections it saw closed, so that the tests can
check keep-alive reuse and that a connection is never reused after an anomaly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvloop

from fastgw.upstream.client import (
    MAX_HEAD_BYTES,
    ClientResponse,
    HttpClient,
    HttpClientError,
    HttpClientTimeout,
    _build_head,
)

HOST = "127.0.0.1"
Body = Callable[[], Awaitable[None]]


# ---------------------------------------------------------------- harness
@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Body], None]]:
    """Run an async test body on a fresh event loop of the parametrised kind, bounded to 20 s."""

    def runner(body: Body) -> None:
        async def main() -> None:
            async with asyncio.timeout(20):
                await body()

        if request.param == "uvloop":
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
                r.run(main())
        else:
            asyncio.run(main())

    yield runner


@dataclass
class Req:
    conn: int
    seq: int
    method: str
    target: str
    head: bytes
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def query(self, name: str, default: str) -> str:
        return parse_qs(urlsplit(self.target).query).get(name, [default])[0]


class Upstream:
    """A scripted HTTP/1.1 server; the behaviour is chosen by the request path (see ``respond``)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[Req] = []
        self.closed: set[int] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await asyncio.sleep(0.01)
        await self.server.wait_closed()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def wait_closed(self, conn: int, timeout: float = 2.0) -> bool:
        """Whether the server sees connection ``conn`` end within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while conn not in self.closed:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.writers.add(writer)
        seq = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seq += 1
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
                req = Req(conn, seq, method, target, head, headers)
                self.requests.append(req)
                if req.path == "/early":
                    # Answer before reading the body, then stop reading for a while.
                    writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    await asyncio.sleep(1.0)
                    return
                cl = dict((k.lower(), v) for k, v in headers).get("content-length")
                if cl is not None:
                    try:
                        req.body = await reader.readexactly(int(cl))
                    except (asyncio.IncompleteReadError, ConnectionError):
                        return
                if not await self.respond(req, reader, writer):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.closed.add(conn)
            self.writers.discard(writer)
            writer.close()

    async def respond(self, req: Req, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer ``req``; False ends the connection."""
        path = req.path
        if path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in (b"first,", b"second,", b"third"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\nx-trailer: t\r\n\r\n")
            await writer.drain()
            return True
        if path == "/close-delimited":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            for piece in (b"until ", b"the ", b"end"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)
            return False
        if path == "/conn-close":
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye")
            await writer.drain()
            await _wait_eof(reader, 2.0)  # the client closes first
            return False
        if path == "/partial":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            await writer.drain()
            return False
        if path == "/drop":
            return False
        if path == "/drop-reused":
            if req.seq > 1:
                return False  # close a reused connection without a byte of response
            return await _send_json(writer, req)
        if path == "/hang":
            await _wait_eof(reader, 10.0)
            return False
        if path == "/big":
            n = int(req.query("n", "1000"))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % n + b"x" * n)
            await writer.drain()
            return True
        if path == "/big-chunked":
            n = int(req.query("n", "1000"))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(n // 100):
                writer.write(b"64\r\n" + b"y" * 100 + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/big-head":
            filler = "".join(f"x-filler-{i}: {'z' * 200}\r\n" for i in range(400))
            writer.write(f"HTTP/1.1 200 OK\r\n{filler}content-length: 0\r\n\r\n".encode())
            await writer.drain()
            return True
        if path == "/endless-status":
            writer.write(b"HTTP/1.1 200 " + b"O" * (MAX_HEAD_BYTES + 4096))
            await writer.drain()
            await _wait_eof(reader, 5.0)
            return False
        if path == "/garbage":
            writer.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
            await writer.drain()
            await _wait_eof(reader, 5.0)  # the server keeps it open: the client must close it
            return False
        if path == "/extra":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
            await writer.drain()
            await _wait_eof(reader, 5.0)
            return False
        if path == "/late-junk":
            await _send_json(writer, req)
            await asyncio.sleep(0.05)
            writer.write(b"junk on an idle connection")
            await writer.drain()
            await _wait_eof(reader, 5.0)
            return False
        if path == "/idle-close":
            await _send_json(writer, req)
            await asyncio.sleep(0.05)
            return False
        if path == "/interim":
            code = int(req.query("code", "100"))
            writer.write(b"HTTP/1.1 %d Interim\r\nlink: </style.css>\r\n\r\n" % code)
            await writer.drain()
            await asyncio.sleep(0.02)
            return await _send_json(writer, req)
        if path == "/head":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\n")
            await writer.drain()
            return True
        if path == "/no-content":
            writer.write(b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n")
            await writer.drain()
            return True
        if path == "/http10":
            writer.write(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await _wait_eof(reader, 2.0)
            return False
        return await _send_json(writer, req)


async def _send_json(writer: asyncio.StreamWriter, req: Req) -> bool:
    doc = {"conn": req.conn, "seq": req.seq, "method": req.method, "target": req.target}
    body = json.dumps(doc).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi: a\r\nx-multi: b\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return True


async def _wait_eof(reader: asyncio.StreamReader, timeout: float) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass


@contextlib.asynccontextmanager
async def setup(**client_kwargs: Any) -> AsyncIterator[tuple[Upstream, HttpClient]]:
    srv = Upstream()
    await srv.start()
    client = HttpClient(asyncio.get_running_loop(), **client_kwargs)
    try:
        yield srv, client
    finally:
        await client.aclose()
        await srv.close()


async def get(
    srv: Upstream, client: HttpClient, target: str, timeout: float = 5.0, **kw: Any
) -> ClientResponse:
    return await client.request(
        HOST, srv.port, kw.pop("method", "GET"), target, kw.pop("headers", []), b"", timeout
    )


def doc(resp: ClientResponse) -> dict[str, Any]:
    return dict(json.loads(resp.body))


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- requests and responses
def test_get(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            resp = await client.request(HOST, srv.port, "GET", "/json?x=1", [("x-a", "1")], b"", 5.0)
            assert resp.status == 200
            assert resp.headers == [
                ("Content-Type", "application/json"),
                ("X-Multi", "a"),
                ("x-multi", "b"),
                ("Content-Length", str(len(resp.body))),
            ]
            assert resp.header("content-type") == "application/json"
            assert resp.header("x-multi") == "a"
            assert doc(resp) == {"conn": 1, "seq": 1, "method": "GET", "target": "/json?x=1"}
            # Exactly what was written: no Content-Length for a body-less GET, nothing added.
            assert (
                srv.requests[0].head
                == f"GET /json?x=1 HTTP/1.1\r\nhost: {HOST}:{srv.port}\r\nx-a: 1\r\n\r\n".encode()
            )

    run(body)


def test_post_headers_and_body(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            headers = [
                ("Host", "evil.example"),
                ("Connection", "keep-alive, x-hop"),
                ("Content-Length", "999"),
                ("Transfer-Encoding", "chunked"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "x-t"),
                ("Upgrade", "h2c"),
                ("Proxy-Authorization", "Basic eA=="),
                ("Proxy-Connection", "keep-alive"),
                ("X-B", "2"),
                ("x-a", "1"),
                ("X-B", "3"),
            ]
            resp = await client.request(HOST, srv.port, "POST", "/json", headers, b"hello", 5.0)
            assert resp.status == 200
            req = srv.requests[0]
            assert (
                req.head
                == (
                    f"POST /json HTTP/1.1\r\nhost: {HOST}:{srv.port}\r\nX-B: 2\r\nx-a: 1\r\nX-B: 3\r\n"
                    "content-length: 5\r\n\r\n"
                ).encode()
            )
            assert req.body == b"hello"

            # POST, PUT, PATCH always carry a Content-Length; other methods only with a body.
            for method in ("POST", "PUT", "PATCH"):
                await client.request(HOST, srv.port, method, "/json", [], b"", 5.0)
                assert srv.requests[-1].head.endswith(b"content-length: 0\r\n\r\n")
            await client.request(HOST, srv.port, "DELETE", "/json", [], b"", 5.0)
            assert b"content-length" not in srv.requests[-1].head
            await client.request(HOST, srv.port, "DELETE", "/json", [], b"xy", 5.0)
            assert srv.requests[-1].head.endswith(b"content-length: 2\r\n\r\n")
            assert srv.requests[-1].body == b"xy"

            await client.request(HOST, srv.port, "GET", "/json", [], b"", 5.0, host_header="api.example")
            assert srv.requests[-1].head == b"GET /json HTTP/1.1\r\nhost: api.example\r\n\r\n"
            assert srv.connections == 1  # all on one keep-alive connection

    run(body)


def test_host_header_defaults() -> None:
    assert (
        _build_head("GET", "/", [], b"", "example.com", 80, None)
        == b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"
    )
    assert (
        _build_head("GET", "/", [], b"", "::1", 8080, None) == b"GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n"
    )


def test_unsafe_request_rejected(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            bad: list[tuple[str, str, list[tuple[str, str]]]] = [
                ("GET", "/json", [("x-a", "1\r\nx-injected: 1")]),
                ("GET", "/json", [("x-a", "1\nx-injected: 1")]),
                ("GET", "/json", [("x-a", "a\x00b")]),
                ("GET", "/json", [("x a", "1")]),
                ("GET", "/json", [("x-a:", "1")]),
                ("GET", "/a b", []),
                ("GET", "", []),
                ("GE T", "/json", []),
                ("GET", "/json", [("x-a", "\u20ac")]),
            ]
            for method, target, headers in bad:
                with pytest.raises(ValueError):
                    await client.request(HOST, srv.port, method, target, headers, b"", 5.0)
            with pytest.raises(ValueError):
                await client.request(HOST, srv.port, "GET", "/", [], b"", 5.0, host_header="a\r\nx: 1")
            assert srv.connections == 0  # nothing was sent

    run(body)


def test_chunked_response(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            resp = await get(srv, client, "/chunked")
            assert resp.status == 200
            assert resp.body == b"first,second,third"
            assert ("transfer-encoding", "chunked") in resp.headers
            assert resp.header("x-trailer") is None  # trailers are dropped
            # A clean chunked exchange keeps the connection.
            assert doc(await get(srv, client, "/json"))["conn"] == 1

    run(body)


def test_close_delimited_response(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            resp = await get(srv, client, "/close-delimited")
            assert resp.status == 200
            assert resp.body == b"until the end"
            assert client.idle_connections(HOST, srv.port) == 0
            assert doc(await get(srv, client, "/json"))["conn"] == 2

    run(body)


def test_premature_close_is_an_error(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            with pytest.raises(HttpClientError) as info:
                await get(srv, client, "/partial")
            assert not isinstance(info.value, HttpClientTimeout)
            assert srv.connections == 1  # a fresh connection: no retry

    run(body)


def test_connection_close_and_http10(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            resp = await get(srv, client, "/conn-close")
            assert (resp.status, resp.body) == (200, b"bye")
            assert await srv.wait_closed(1)
            resp = await get(srv, client, "/http10")
            assert (resp.status, resp.body) == (200, b"ok")
            assert await srv.wait_closed(2)
            assert client.idle_connections(HOST, srv.port) == 0
            assert doc(await get(srv, client, "/json"))["conn"] == 3

    run(body)


def test_head_and_no_content(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            resp = await get(srv, client, "/head", method="HEAD")
            assert (resp.status, resp.body) == (200, b"")
            assert resp.header("content-length") == "10"
            # A response to HEAD is not reused (its framing headers describe no bytes).
            assert await srv.wait_closed(1)
            resp = await get(srv, client, "/no-content")
            assert (resp.status, resp.body, resp.headers) == (204, b"", [("x-a", "1")])
            assert doc(await get(srv, client, "/json"))["conn"] == 2  # 204 kept the connection

    run(body)


def test_interim_responses(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            for code in (100, 103):
                resp = await get(srv, client, f"/interim?code={code}")
                assert resp.status == 200
                assert resp.header("link") is None  # the interim head is not part of the response
                assert doc(resp)["conn"] == 1
            for n, code in enumerate((102, 101, 199), start=1):
                with pytest.raises(HttpClientError):
                    await get(srv, client, f"/interim?code={code}")
                assert await srv.wait_closed(n)

    run(body)


# ---------------------------------------------------------------- the pool
def test_keep_alive_reuse(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            for i in range(1, 6):
                assert doc(await get(srv, client, "/json")) == {
                    "conn": 1,
                    "seq": i,
                    "method": "GET",
                    "target": "/json",
                }
            assert srv.connections == 1
            assert client.idle_connections(HOST, srv.port) == 1

    run(body)


def test_concurrent_requests_and_idle_cap(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup(max_idle=2) as (srv, client):
            resps = await asyncio.gather(*(get(srv, client, "/chunked") for _ in range(4)))
            assert [r.body for r in resps] == [b"first,second,third"] * 4
            assert srv.connections == 4
            assert client.idle_connections(HOST, srv.port) == 2
            await asyncio.sleep(0.05)
            assert len(srv.closed) == 2  # the other two were closed
            # LIFO: the warmest idle connection is used first.
            last = max(set(range(1, 5)) - srv.closed)
            assert doc(await get(srv, client, "/json"))["conn"] == last

    run(body)


def test_idle_expiry(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup(idle_timeout=0.2) as (srv, client):
            await get(srv, client, "/json")
            assert client.idle_connections(HOST, srv.port) == 1
            assert await srv.wait_closed(1, timeout=2.0)  # closed by the idle timer
            assert client.idle_connections(HOST, srv.port) == 0
            assert doc(await get(srv, client, "/json"))["conn"] == 2

    run(body)


def test_server_closed_idle_connection(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            await get(srv, client, "/idle-close")
            assert await srv.wait_closed(1)
            await asyncio.sleep(0.05)
            assert client.idle_connections(HOST, srv.port) == 0  # noticed while idle
            assert doc(await get(srv, client, "/json"))["conn"] == 2
            assert len(srv.requests) == 2  # no retry was needed

    run(body)


def test_keep_alive_race_retried_once(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            assert doc(await get(srv, client, "/drop-reused"))["conn"] == 1
            # The reused connection is closed without a byte of response: one retry, on a new one.
            resp = await get(srv, client, "/drop-reused")
            assert doc(resp) == {"conn": 2, "seq": 1, "method": "GET", "target": "/drop-reused"}
            assert [(r.conn, r.seq) for r in srv.requests] == [(1, 1), (1, 2), (2, 1)]

    run(body)


def test_no_retry_on_fresh_connection(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            with pytest.raises(HttpClientError):
                await get(srv, client, "/drop")
            assert srv.connections == 1
            assert len(srv.requests) == 1

    run(body)


def test_no_retry_after_response_bytes(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            await get(srv, client, "/json")
            with pytest.raises(HttpClientError):
                await get(srv, client, "/partial")  # on the reused connection, bytes then EOF
            assert srv.connections == 1
            assert len(srv.requests) == 2

    run(body)


# ---------------------------------------------------------------- failures
def test_timeout(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            start = time.monotonic()
            with pytest.raises(HttpClientTimeout):
                await get(srv, client, "/hang", timeout=0.3)
            elapsed = time.monotonic() - start
            assert 0.29 <= elapsed < 0.8
            assert await srv.wait_closed(1)  # the connection was closed, not pooled
            assert client.idle_connections(HOST, srv.port) == 0
            # The deadline covers the whole exchange, including a slow body.
            with pytest.raises(HttpClientTimeout):
                await get(srv, client, "/chunked", timeout=0.03)

    run(body)


def test_connect_timeout(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        # A listener that never accepts, its backlog full: the kernel drops further SYNs.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(0)
            port = lsock.getsockname()[1]
            fillers = []
            try:
                for _ in range(4):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        s.connect((HOST, port))
                    fillers.append(s)
                await asyncio.sleep(0.1)
                client = HttpClient(asyncio.get_running_loop(), connect_timeout=0.3)
                start = time.monotonic()
                try:
                    await client.request(HOST, port, "GET", "/", [], b"", 5.0)
                except HttpClientTimeout:
                    assert time.monotonic() - start < 1.0
                except HttpClientError:
                    pytest.skip("this kernel answered the SYN; no connect timeout to observe")
                else:
                    pytest.fail("a request to a never-accepting listener succeeded")
                finally:
                    await client.aclose()
            finally:
                for s in fillers:
                    s.close()

    run(body)


def test_connection_refused(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        client = HttpClient(asyncio.get_running_loop())
        try:
            with pytest.raises(HttpClientError) as info:
                await client.request(HOST, closed_port(), "GET", "/", [], b"", 5.0)
            assert not isinstance(info.value, HttpClientTimeout)
        finally:
            await client.aclose()

    run(body)


def test_oversize_response(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup(max_response_bytes=1000) as (srv, client):
            assert len((await get(srv, client, "/big?n=1000")).body) == 1000
            assert len((await get(srv, client, "/big-chunked?n=1000")).body) == 1000
            for n, target in enumerate(
                ("/big?n=1001", "/big-chunked?n=1100", "/big-head", "/endless-status"), start=1
            ):
                with pytest.raises(HttpClientError) as info:
                    await get(srv, client, target)
                assert "large" in str(info.value) or "over" in str(info.value)
                assert await srv.wait_closed(n)

    run(body)


def test_malformed_response_not_reused(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            with pytest.raises(HttpClientError) as info:
                await get(srv, client, "/garbage")
            assert "malformed" in str(info.value)
            assert await srv.wait_closed(1)  # the server kept it open; the client closed it
            assert doc(await get(srv, client, "/json"))["conn"] == 2

            # A whole response followed by extra bytes: the response is good, the connection is not.
            resp = await get(srv, client, "/extra")
            assert (resp.status, resp.body) == (200, b"ok")
            assert await srv.wait_closed(2)
            assert doc(await get(srv, client, "/json"))["conn"] == 3

            # Bytes arriving on an idle connection.
            await get(srv, client, "/late-junk")
            assert await srv.wait_closed(3)
            assert doc(await get(srv, client, "/json"))["conn"] == 4

    run(body)


def test_early_response_not_reused(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            big = b"b" * (16 * 1024 * 1024)
            resp = await client.request(HOST, srv.port, "POST", "/early", [], big, 5.0)
            assert resp.status == 413
            assert client.idle_connections(HOST, srv.port) == 0
            assert doc(await get(srv, client, "/json"))["conn"] == 2

    run(body)


def test_cancelled_request_closes_connection(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            task = asyncio.ensure_future(get(srv, client, "/hang"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await srv.wait_closed(1)
            assert client.idle_connections(HOST, srv.port) == 0

    run(body)


def test_aclose(run: Callable[[Body], None]) -> None:
    async def body() -> None:
        async with setup() as (srv, client):
            await get(srv, client, "/json")
            await client.aclose()
            assert await srv.wait_closed(1)
            with pytest.raises(HttpClientError):
                await get(srv, client, "/json")

    run(body)

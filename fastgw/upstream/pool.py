"""Keep-alive connection pools towards upstream targets, and passive ejection.

A pool belongs to one worker and one ``Target`` (scheme, host, port); pools outlive config
snapshots, so a reload keeps warm connections. A connection goes back to the pool only after a
clean, complete exchange: any anomaly (timeout, reset, framing error, extra bytes, an early
response, a 1xx other than 100) closes it (DESIGN-RULES 4).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import TYPE_CHECKING, Protocol

import httptools

if TYPE_CHECKING:
    from fastgw.config.compile import Target
    from fastgw.config.model import UpstreamSettings

log = logging.getLogger("fastgw.upstream")


class UpstreamClient(Protocol):
    """What a connection reports to the exchange that uses it (fastgw.server.protocol.Exchange)."""

    def upstream_ready(self, conn: UpstreamConnection) -> None: ...
    def upstream_failed(self, reused: bool, got_bytes: bool) -> None: ...
    def upstream_head(self, status: int, raw_head: bytes, conn: UpstreamConnection) -> None: ...
    def upstream_body(self, data: bytes) -> None: ...
    def flush_out(self) -> None: ...
    def upstream_done(self, keep_alive: bool) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a target, parsing responses with httptools."""

    __slots__ = (
        "awaiting_head",
        "client",
        "got_bytes",
        "head_buf",
        "idle_since",
        "parser",
        "pool",
        "reused",
        "skip_body",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: UpstreamClient | None = None
        self.head_buf = b""
        self.awaiting_head = False
        self.idle_since = 0.0
        self.reused = False
        self.got_bytes = False
        self.skip_body = False

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        client = self.client
        if client is not None:
            self.client = None
            client.upstream_failed(self.reused, self.got_bytes)

    def data_received(self, data: bytes) -> None:
        if self.client is None:
            # Bytes on an idle connection: the upstream is confused; never reuse it.
            self.abort()
            return
        self.got_bytes = True
        client = self.client
        if self.awaiting_head:
            # PERF: no on_header callback is bound; the raw head is kept and rewritten by
            # fastgw_core.headers in one call once httptools has validated it.
            self.head_buf = self.head_buf + data if self.head_buf else data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.client = None
            self.abort()
            client.upstream_failed(False, True)
            return
        client.flush_out()

    def eof_received(self) -> bool | None:
        client = self.client
        if client is not None:
            # A close-delimited body ends here; anything else is a premature close.
            try:
                self.parser.feed_data(b"")
            except httptools.HttpParserError:
                pass
        return None

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_resume_writing()

    # -- httptools callbacks (no on_header: see data_received)
    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        buf = self.head_buf
        if status < 200:
            end = buf.find(b"\r\n\r\n")
            if end < 0 or status not in (100, 103):
                raise _Anomaly()  # an unexpected 1xx / 101 is never relayed
            self.head_buf = buf[end + 4 :]  # informational: the final head follows
            return
        self.awaiting_head = False
        self.head_buf = b""
        client = self.client
        if client is not None:
            client.upstream_head(status, buf, self)
            if self.skip_body and self.client is not None:
                # A response to HEAD has no body, whatever its framing headers say; the parser
                # cannot be told so, hence the connection is closed rather than reused.
                self.client = None
                client.upstream_done(False)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is not None:
            client.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        client = self.client
        if client is None:
            return
        self.client = None
        keep_alive = self.parser.should_keep_alive() and not self.skip_body
        client.upstream_done(keep_alive)

    # -- use by exchanges
    def send(self, client: UpstreamClient, data: bytes) -> None:
        self.client = client
        self.got_bytes = False
        self.awaiting_head = True
        self.head_buf = b""
        self.transport.write(data)  # type: ignore[union-attr]

    def abort(self) -> None:
        self.client = None
        if self.transport is not None:
            self.transport.abort()

    def release(self, reusable: bool) -> None:
        """Hand the connection back after an exchange; ``reusable`` only after a clean one."""
        self.client = None
        if reusable and self.transport is not None and not self.transport.is_closing():
            self.pool.put_idle(self)
        else:
            self.abort()


class _Anomaly(Exception):
    """An upstream response the gateway will not relay (an unexpected 1xx or 101)."""


class UpstreamPool:
    """Connections of one worker to one target: idle LIFO, a cap, and waiters."""

    __slots__ = (
        "all",
        "connecting",
        "ejected_until",
        "failures",
        "idle",
        "loop",
        "settings",
        "target",
        "waiters",
    )

    def __init__(self, target: Target, settings: UpstreamSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.settings = settings
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.all: set[UpstreamConnection] = set()
        self.connecting = 0
        self.waiters: collections.deque[UpstreamClient] = collections.deque()
        self.failures = 0
        self.ejected_until = 0.0

    def acquire(self, client: UpstreamClient) -> None:
        """Give ``client`` a connection now (``upstream_ready``) or as soon as one is free."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                client.upstream_ready(conn)
                return
        if len(self.all) + self.connecting < self.settings.max_connections:
            self.connecting += 1
            task = self.loop.create_task(self._connect(client))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        else:
            self.waiters.append(client)

    def cancel(self, client: UpstreamClient) -> None:
        try:
            self.waiters.remove(client)
        except ValueError:
            pass

    async def _connect(self, client: UpstreamClient) -> None:
        t = self.target
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self), t.host, t.port),
                self.settings.connect_timeout,
            )
        except (TimeoutError, OSError) as ex:
            self.connecting -= 1
            self.record_failure()
            log.warning("upstream connect failed", extra={"target": f"{t.host}:{t.port}", "error": repr(ex)})
            client.upstream_failed(False, False)
            self._serve_waiters()
            return
        self.connecting -= 1
        self.failures = 0
        self.all.add(conn)
        client.upstream_ready(conn)

    def put_idle(self, conn: UpstreamConnection) -> None:
        self.failures = 0
        if self.waiters:
            conn.reused = True
            self.waiters.popleft().upstream_ready(conn)
            return
        if len(self.idle) >= self.settings.max_idle:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self._serve_waiters()

    def _serve_waiters(self) -> None:
        while self.waiters and len(self.all) + self.connecting < self.settings.max_connections:
            self.acquire(self.waiters.popleft())

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.settings.eject_after:
            self.ejected_until = self.loop.time() + self.settings.eject_seconds
            self.failures = 0
            log.warning(
                "upstream target ejected",
                extra={
                    "target": f"{self.target.host}:{self.target.port}",
                    "seconds": self.settings.eject_seconds,
                },
            )

    def expire_idle(self, now: float) -> None:
        limit = now - self.settings.idle_timeout
        idle = self.idle
        while idle and idle[0].idle_since < limit:
            idle.pop(0).abort()

    def close(self) -> None:
        for conn in list(self.all):
            conn.abort()
        self.idle.clear()


_TASKS: set[asyncio.Task[None]] = set()


class Pools:
    """All pools of a worker, by target key; survives config reloads."""

    __slots__ = ("loop", "pools", "settings")

    def __init__(self, settings: UpstreamSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.pools: dict[tuple[str, str, int], UpstreamPool] = {}

    def get(self, target: Target) -> UpstreamPool:
        pool = self.pools.get(target.key)
        if pool is None:
            pool = self.pools[target.key] = UpstreamPool(target, self.settings, self.loop)
        return pool

    def pick(self, targets: list[Target], rr: int, now: float) -> UpstreamPool:
        """Round-robin over targets, skipping ejected ones (all ejected: plain round-robin)."""
        n = len(targets)
        if n == 1:
            return self.get(targets[0])
        for i in range(n):
            pool = self.get(targets[(rr + i) % n])
            if pool.ejected_until <= now:
                return pool
        return self.get(targets[rr % n])

    def tick(self, now: float) -> None:
        for pool in self.pools.values():
            if pool.idle:
                pool.expire_idle(now)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

"""Raw-socket WebSocket clients of the WebSocket benches (asyncio protocols, no library).

- ``echo_run``: N connections, each keeping ``window`` masked 16-byte text frames in flight and
  sending one more for every frame that comes back; counts the frames returned in a measurement
  window and records each one's round trip (send of the frame to receipt of its echo).
- ``IdleSet``: opens many connections fast (handshake only, no library object per connection),
  leaves them idle, and timestamps the first complete frame each receives (the broadcast run).
- ``http_post``: one HTTP/1.1 request on loopback (the broadcast trigger).

Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the machine),
so a time taken in the gateway can be compared with one taken here.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

HOST = "127.0.0.1"
ECHO_PAYLOAD = b"0123456789abcdef"

T = TypeVar("T")


def run_loop(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on uvloop when installed (fastgw's own loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a fastgw dependency
        return asyncio.run(main())  # type: ignore[arg-type]
    return uvloop.run(main())  # type: ignore[arg-type,no-any-return]


def handshake_request(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked frame as a client sends it (payload under 126 bytes)."""
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


def split_frames(buf: bytes) -> tuple[int, int, int]:
    """(complete frames, bytes they take, payload length of the last one) at the start of ``buf``
    (server frames: unmasked)."""
    i = 0
    n = len(buf)
    got = 0
    size = 0
    while n - i >= 2:
        size = buf[i + 1] & 0x7F
        head = 2
        if size == 126:
            if n - i < 4:
                break
            size = int.from_bytes(buf[i + 2 : i + 4], "big")
            head = 4
        elif size == 127:
            if n - i < 10:
                break
            size = int.from_bytes(buf[i + 2 : i + 10], "big")
            head = 10
        if n - i < head + size:
            break
        i += head + size
        got += 1
    return got, i, size


def percentiles(values: Any, qs: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles (each q in 0..100) of a sequence; NaN when it is empty."""
    n = len(values)
    if not n:
        return [float("nan")] * len(qs)
    ordered = sorted(values)
    return [float(ordered[max(0, min(n - 1, math.ceil(q / 100.0 * n) - 1))]) for q in qs]


def percentile(values: Any, q: float) -> float:
    return percentiles(values, [q])[0]


# --------------------------------------------------------------------------- echo load


@dataclass
class EchoStats:
    """One echo run: frames returned in the window, their round trips (seconds)."""

    recording: bool = False
    stopping: bool = False
    count: int = 0
    lat: array[float] = field(default_factory=lambda: array("d"))
    failures: list[str] = field(default_factory=list)


class _RawClient(asyncio.Protocol):
    """A raw WebSocket client connection: its data is buffered until the 101 (``ready`` resolves,
    or fails on any other status), then counted in whole frames (``_frames``)."""

    __slots__ = ("buf", "open", "ready", "transport")

    buf: bytes
    open: bool
    ready: asyncio.Future[None]

    def _frames(self, data: bytes) -> tuple[int, int]:
        """(whole frames received, size of the last one); the rest stays buffered."""
        buf = self.buf + data if self.buf else data
        if not self.open:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = buf
                return 0, 0
            if not head.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1")))
                return 0, 0
            self.open = True
            if not self.ready.done():
                self.ready.set_result(None)
            buf = rest
        got, used, size = split_frames(buf)
        self.buf = buf[used:]
        return got, size


class _EchoProto(_RawClient):
    def __init__(self, path: str, window: int, stats: EchoStats, ready: asyncio.Future[None]) -> None:
        self.path = path
        self.window = window
        self.stats = stats
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buf = b""
        self.sent: deque[float] = deque()
        self.msg = client_frame(ECHO_PAYLOAD)
        self.paced = False  # paced_run: frames are sent on a schedule, not one per answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(handshake_request(self.path))  # type: ignore[union-attr]

    def start(self) -> None:
        assert self.transport is not None
        now = time.monotonic()
        self.sent.extend([now] * self.window)
        self.transport.write(self.msg * self.window)

    def data_received(self, data: bytes) -> None:
        got, _ = self._frames(data)
        if not got:
            return
        now = time.monotonic()
        sent = self.sent
        stats = self.stats
        if stats.recording:
            stats.count += got
            lat = stats.lat
            for _ in range(got):
                lat.append(now - sent.popleft())
        else:
            for _ in range(got):
                sent.popleft()
        if not stats.stopping and not self.paced and self.transport is not None:
            sent.extend([now] * got)
            self.transport.write(self.msg * got)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        elif not self.stats.stopping:
            self.stats.failures.append(f"connection lost during the run: {exc}")


@dataclass
class EchoResult:
    rate: float  # messages/s
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    count: int
    seconds: float
    client_cpu: float  # share of one core the client process used during the window
    failures: list[str]


async def echo_run(
    port: int,
    path: str,
    connections: int,
    window: int,
    seconds: float,
    warmup: float,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> EchoResult:
    """Open ``connections``, load them for ``warmup`` + ``seconds``; measure the last ``seconds``.

    ``on_start`` / ``on_end`` run right before / after the measurement window (CPU snapshots).
    """
    loop = asyncio.get_running_loop()
    stats = EchoStats()
    protos: list[_EchoProto] = []
    readies: list[asyncio.Future[None]] = []
    for _ in range(connections):
        ready: asyncio.Future[None] = loop.create_future()
        proto = _EchoProto(path, window, stats, ready)
        await asyncio.wait_for(loop.create_connection(lambda p=proto: p, HOST, port), 10)  # type: ignore[misc]
        protos.append(proto)
        readies.append(ready)
    try:
        await asyncio.wait_for(asyncio.gather(*readies), 10)
        for proto in protos:
            proto.start()
        await asyncio.sleep(warmup)
        if on_start is not None:
            on_start()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        stats.recording = True
        await asyncio.sleep(seconds)
        stats.recording = False
        t1 = time.monotonic()
        cpu1 = time.process_time()
        if on_end is not None:
            on_end()
        stats.stopping = True
    finally:
        stats.stopping = True
        for proto in protos:
            if proto.transport is not None:
                proto.transport.close()
    wall = t1 - t0
    p50, p99, p999, top = percentiles(stats.lat, [50, 99, 99.9, 100])
    return EchoResult(
        rate=stats.count / wall,
        p50_ms=p50 * 1000.0,
        p99_ms=p99 * 1000.0,
        p999_ms=p999 * 1000.0,
        max_ms=top * 1000.0,
        count=stats.count,
        seconds=wall,
        client_cpu=(cpu1 - cpu0) / wall,
        failures=stats.failures,
    )


async def paced_run(
    port: int,
    path: str,
    rate: float,
    seconds: float,
    warmup: float,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> EchoResult:
    """One connection sending ``rate`` frames/s whatever comes back (open loop): a frame that waits
    behind a stall of the server counts the stall, as a user's message would. The schedule is kept
    by sending, at each wake-up (every millisecond or so), the frames due by then."""
    loop = asyncio.get_running_loop()
    stats = EchoStats()
    ready: asyncio.Future[None] = loop.create_future()
    proto = _EchoProto(path, 0, stats, ready)
    proto.paced = True
    await asyncio.wait_for(loop.create_connection(lambda: proto, HOST, port), 10)
    try:
        await asyncio.wait_for(ready, 10)
        assert proto.transport is not None
        start = time.monotonic()
        sent = 0
        phase = 0
        t0 = t1 = cpu0 = cpu1 = 0.0
        while True:
            now = time.monotonic()
            if phase == 0 and now - start >= warmup:
                if on_start is not None:
                    on_start()
                cpu0 = time.process_time()
                t0 = time.monotonic()
                stats.recording = True
                phase = 1
            elif phase == 1 and now - t0 >= seconds:
                stats.recording = False
                t1 = time.monotonic()
                cpu1 = time.process_time()
                if on_end is not None:
                    on_end()
                break
            due = int((now - start) * rate) - sent
            if due > 0:
                proto.sent.extend([now] * due)
                proto.transport.write(proto.msg * due)
                sent += due
            await asyncio.sleep(0.001)
        stats.stopping = True
        await asyncio.sleep(0.05)  # let the last answers of the window in (they are not counted)
    finally:
        stats.stopping = True
        if proto.transport is not None:
            proto.transport.close()
    wall = t1 - t0
    p50, p99, p999, top = percentiles(stats.lat, [50, 99, 99.9, 100])
    return EchoResult(
        rate=stats.count / wall,
        p50_ms=p50 * 1000.0,
        p99_ms=p99 * 1000.0,
        p999_ms=p999 * 1000.0,
        max_ms=top * 1000.0,
        count=stats.count,
        seconds=wall,
        client_cpu=(cpu1 - cpu0) / wall,
        failures=stats.failures,
    )


# --------------------------------------------------------------------------- idle connections


class _IdleProto(_RawClient):
    __slots__ = ("got_at", "owner")

    def __init__(self, owner: IdleSet, ready: asyncio.Future[None]) -> None:
        self.owner = owner
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buf = b""
        self.got_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.owner.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        got, size = self._frames(data)
        if got:
            owner = self.owner
            if not self.got_at:
                self.got_at = time.monotonic()
                owner.received += 1
                owner.last_size = size
                if owner.received >= owner.expect and owner.all_in is not None and not owner.all_in.done():
                    owner.all_in.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        elif not self.owner.closing:
            self.owner.lost += 1


class IdleSet:
    """Many open, idle WebSocket connections held by this process."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request = handshake_request(path)  # one key for all: the server does not care
        self.protos: list[_IdleProto] = []
        self.errors: list[str] = []
        self.received = 0
        self.expect = 0
        self.last_size = 0
        self.lost = 0
        self.closing = False
        self.all_in: asyncio.Future[None] | None = None

    async def open(self, n: int, concurrency: int = 256, timeout: float = 120.0) -> float:
        """Open ``n`` connections, ``concurrency`` handshakes at a time; return the seconds it took."""
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)
        t0 = time.monotonic()

        async def one() -> None:
            async with sem:
                ready: asyncio.Future[None] = loop.create_future()
                proto = _IdleProto(self, ready)
                try:
                    await asyncio.wait_for(loop.create_connection(lambda: proto, HOST, self.port), 10)
                    await asyncio.wait_for(ready, 10)
                except (OSError, TimeoutError) as ex:
                    self.errors.append(repr(ex))
                    if proto.transport is not None:
                        proto.transport.abort()
                    return
                self.protos.append(proto)

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout)
        return time.monotonic() - t0

    def arm(self) -> asyncio.Future[None]:
        """Forget previous receipts; the returned future is done once every connection got a frame."""
        for p in self.protos:
            p.got_at = 0.0
        self.received = 0
        self.expect = len(self.protos)
        self.all_in = asyncio.get_running_loop().create_future()
        return self.all_in

    def receipts(self) -> list[float]:
        return [p.got_at for p in self.protos if p.got_at]

    def close(self) -> None:
        self.closing = True
        for p in self.protos:
            if p.transport is not None:
                p.transport.abort()
        self.protos.clear()


# --------------------------------------------------------------------------- HTTP


async def http_post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """POST ``body``; (status, response body). ``Connection: close``, Content-Length framing."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            data = await reader.readexactly(length) if length else b""
            return int(head.split(b" ", 2)[1]), data
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)

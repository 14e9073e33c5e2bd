"""Every limit with a test, set low: idle timeout, maximum duration, slow readers (outbound
backpressure), new connections per second, route throttling, and the size limits' defaults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from tests.helpers import GatewayFactory, rss_bytes
from tests.websocket.conftest import ws_config
from tests.websocket.rawws import RawWs, frame


def url(gw: Any) -> str:
    return f"ws://127.0.0.1:{gw.port}/prod"


async def disconnects(gw: Any) -> list[dict[str, Any]]:
    async with websockets.connect(url(gw)) as c:
        await c.send("disconnects")
        return json.loads(await asyncio.wait_for(c.recv(), 5))  # type: ignore[no-any-return]


def test_idle_timeout_closes_1001_and_runs_disconnect(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(settings={"idle_timeout": 0.5}))

    async def run() -> tuple[int | None, float, list[dict[str, Any]]]:
        async with websockets.connect(url(gw), ping_interval=None) as c:
            await c.send(json.dumps({"action": "whoami"}))
            me = await c.recv()
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(c.recv(), 5)
            except websockets.ConnectionClosed as ex:
                code = ex.rcvd.code if ex.rcvd else None
            took = time.monotonic() - t0
        await asyncio.sleep(0.2)
        return code, took, [d for d in await disconnects(gw) if d["requestContext"]["connectionId"] == me]

    code, took, disc = asyncio.run(run())
    assert code == 1001
    assert 0.3 < took < 2.0
    assert len(disc) == 1 and disc[0]["requestContext"]["disconnectStatusCode"] == 1001


def test_activity_keeps_an_idle_connection_open(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(settings={"idle_timeout": 0.6}))

    async def run() -> str:
        async with websockets.connect(url(gw), ping_interval=None) as c:
            for _ in range(6):
                await asyncio.sleep(0.25)
                await c.send(json.dumps({"action": "mock"}))
                assert await c.recv() == "mocked"
            return "open"

    assert asyncio.run(run()) == "open"


def test_max_duration_closes_1001(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(settings={"max_duration": 1.0}))

    async def run() -> tuple[int | None, float]:
        t0 = time.monotonic()
        async with websockets.connect(url(gw), ping_interval=0.2) as c:
            try:
                while True:
                    await c.send(json.dumps({"action": "mock"}))
                    await asyncio.wait_for(c.recv(), 5)
                    await asyncio.sleep(0.1)
            except websockets.ConnectionClosed as ex:
                return (ex.rcvd.code if ex.rcvd else None), time.monotonic() - t0

    code, took = asyncio.run(run())
    assert code == 1001
    assert 0.8 < took < 2.5


def test_slow_reader_is_closed_1008_not_buffered(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(settings={"max_outbound_bytes": 65536}))
    with RawWs(gw.port, rcvbuf=4096) as ws:
        assert ws.handshake()[0] == 101
        ws.send(frame(0x1, json.dumps({"action": "whoami"}).encode()))
        me = ws.recv_frame()[1].decode()
        chunk = b"x" * 60000
        statuses = []
        for _ in range(400):
            req = urllib.request.Request(
                f"http://127.0.0.1:{gw.port}/prod/@connections/{me}", data=chunk, method="POST"
            )
            try:
                statuses.append(urllib.request.urlopen(req, timeout=5).status)
            except urllib.error.HTTPError as ex:
                statuses.append(ex.code)
                break
        assert statuses[-1] == 410, "the gateway kept buffering for a reader that does not read"
        assert len(statuses) < 400
        ws.sock.settimeout(5)
        try:
            code = ws.recv_close()
        except ConnectionError:
            code = None  # dropped after the close grace: also bounded
        assert code in (1008, None)


def test_new_connections_per_second(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(settings={"new_connections_per_second": 2}))

    async def run() -> list[int]:
        out = []
        for _ in range(4):
            try:
                async with websockets.connect(url(gw)):
                    out.append(101)
            except InvalidStatus as ex:
                out.append(ex.response.status_code)
        return out

    got = asyncio.run(run())
    assert got[:2] == [101, 101]
    assert 429 in got[2:]


def test_new_connections_per_second_is_per_node(gateway_factory: GatewayFactory) -> None:
    """Two workers take from one bucket (the node's shared table): 12 connections opened at
    once get the node's burst of 2 (plus its refill meanwhile), not 2 per worker."""
    gw = gateway_factory(ws_config(settings={"new_connections_per_second": 2}), workers=2)

    async def one() -> int:
        try:
            async with websockets.connect(url(gw)):
                return 101
        except InvalidStatus as ex:
            return int(ex.response.status_code)

    async def run() -> tuple[list[int], float]:
        t0 = time.monotonic()
        got = list(await asyncio.gather(*(one() for _ in range(12))))
        return got, time.monotonic() - t0

    got, elapsed = asyncio.run(run())
    # The node's bucket: its burst (2) plus what refilled while the attempts ran (2/s). One
    # bucket per worker would let both bursts through.
    assert 2 <= got.count(101) <= 2 + int(2 * elapsed), (got, elapsed)
    assert got.count(429) == 12 - got.count(101)


def test_route_throttle_answers_too_many_requests_and_keeps_the_connection(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(ws_config(stage={"route_throttle": {"echo": {"rateLimit": 1, "burstLimit": 1}}}))

    async def run() -> list[Any]:
        async with websockets.connect(url(gw)) as c:
            out = []
            for i in range(3):
                await c.send(json.dumps({"action": "echo", "i": i}))
                out.append(json.loads(await asyncio.wait_for(c.recv(), 5)))
            await c.send(json.dumps({"action": "mock"}))
            out.append(await asyncio.wait_for(c.recv(), 5))
            return out

    first, second, third, after = asyncio.run(run())
    assert first == {"action": "echo", "i": 0}
    assert second["message"] == "Too Many Requests" and "connectionId" in second
    assert third["message"] == "Too Many Requests"
    assert after == "mocked"


def test_default_size_limits_are_aws(chat_gateway: Any) -> None:
    """32 KiB frames and 128 KiB messages pass; one byte more closes 1009."""
    with RawWs(chat_gateway.port) as ws:
        assert ws.handshake()[0] == 101
        ws.send(frame(0x1, b"a" * 32768))
        assert ws.recv_frame()[1] == b"default:" + b"a" * 32768
        parts = frame(0x1, b"b" * 32768, fin=False) + frame(0x0, b"b" * 32768, fin=False) * 2
        ws.send(parts + frame(0x0, b"b" * 32768))
        assert len(ws.recv_frame()[1]) == 8 + 131072
        ws.send(frame(0x1, b"c" * 32769))
        assert ws.recv_close() == 1009


def test_ping_flood_from_a_client_that_never_reads_is_bounded(gateway_factory: GatewayFactory) -> None:
    """Pongs queue towards the client like messages: a client flooding pings and reading
    nothing is no longer read once its queue is full (pause_writing) and is closed with 1008 past
    max_outbound_bytes; the worker's memory stays flat."""
    gw = gateway_factory(ws_config(settings={"max_outbound_bytes": 65536}))
    (worker,) = gw.children()
    ping = frame(0x9, b"p" * 125)
    blob = ping * 2000  # ~262 KB a write
    with RawWs(gw.port, rcvbuf=4096) as ws:
        assert ws.handshake()[0] == 101
        before = rss_bytes(worker)
        ws.sock.settimeout(0.5)
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            try:
                ws.sock.sendall(blob)
            except (TimeoutError, OSError):
                break  # the gateway stopped reading (or closed): the flood is held back
            sent += len(blob)
        grown = rss_bytes(worker) - before
        assert grown < 24 * 1024 * 1024, f"the worker grew {grown >> 20} MiB for {sent >> 20} MiB of pings"
        assert sent < 24 * 1024 * 1024, "the gateway kept reading a client that reads nothing"
        # What it did send: pongs, then the close frame (1008), unless dropped after the grace.
        code = None
        deadline = time.monotonic() + 5
        ws.sock.settimeout(2)
        with contextlib.suppress(ConnectionError, TimeoutError):
            while time.monotonic() < deadline:
                op, payload = ws.recv_frame()
                if op == 0x8:
                    code = int.from_bytes(payload[:2], "big")
                    break
        assert code in (1008, None)

"""A connection across the gateway's own life: a config reload (SIGHUP) rebinds it or ends it,
SIGTERM while its $connect runs still ends it politely, and a restarted worker never hands out
an id its predecessor gave."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from tests.helpers import EchoServer, GatewayFactory, wait_for
from tests.websocket.conftest import ws_config


def url(gw: Any, stage: str = "prod", query: str = "") -> str:
    return f"ws://127.0.0.1:{gw.port}/{stage}" + (f"?{query}" if query else "")


async def ask(c: Any, message: str) -> Any:
    await c.send(message)
    return await asyncio.wait_for(c.recv(), 5)


def test_reload_rebinds_open_connections_and_ends_those_of_removed_stages(
    gateway_factory: GatewayFactory,
) -> None:
    config = ws_config()
    config["apis"][0]["stages"].append({"name": "beta"})
    gw = gateway_factory(config)
    new = ws_config(settings={"idle_timeout": 1.0})
    new["apis"][0]["routes"] = [r for r in new["apis"][0]["routes"] if r["route"] != "whoami"]

    async def beta_is_gone() -> bool:
        try:
            async with websockets.connect(url(gw, "beta")):
                return False
        except InvalidStatus:
            return True

    async def run() -> None:
        p = await websockets.connect(url(gw), ping_interval=None)
        b = await websockets.connect(url(gw, "beta"), ping_interval=None)
        try:
            assert len(await ask(p, json.dumps({"action": "whoami"}))) == 16
            b_id = await ask(b, json.dumps({"action": "whoami"}))
            gw.write_config(new)
            gw.reload()
            deadline = time.monotonic() + 10
            while not await beta_is_gone():
                assert time.monotonic() < deadline, "the reload never took effect"
                await asyncio.sleep(0.1)
            # The removed stage's connection: $disconnect, then 1001 "Going away".
            try:
                await asyncio.wait_for(b.recv(), 5)
                raise AssertionError("the removed stage's connection stayed open")
            except websockets.ConnectionClosed as ex:
                assert ex.rcvd is not None and (ex.rcvd.code, ex.rcvd.reason) == (1001, "Going away")
            # The kept stage's connection runs the new routes: "whoami" is gone, so $default.
            assert await ask(p, json.dumps({"action": "whoami"})) == 'default:{"action": "whoami"}'
            disconnects = json.loads(await ask(p, "disconnects"))
            mine = [d["requestContext"] for d in disconnects if d["requestContext"]["connectionId"] == b_id]
            assert [(d["stage"], d["disconnectStatusCode"]) for d in mine] == [("beta", 1001)]
            # ... and the new limits: an idle timeout of 1 s instead of 600.
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(p.recv(), 5)
                raise AssertionError("the new idle timeout did not apply")
            except websockets.ConnectionClosed as ex:
                assert ex.rcvd is not None and ex.rcvd.code == 1001
            assert time.monotonic() - t0 < 3.0
        finally:
            await p.close()
            await b.close()

    asyncio.run(run())


def test_sigterm_while_connect_runs_ends_the_connection_politely(
    gateway_factory: GatewayFactory, echo_server: EchoServer
) -> None:
    """$connect finishes after the drain began: the connection is accepted, its $disconnect
    runs and it is closed with 1001, as every open connection of a draining worker (it used to
    stay open until the drain timeout, then be dropped without a close frame)."""
    routes = [
        {"route": "$connect", "integration": {"type": "AWS_PROXY", "uri": "connect"}},
        {
            "route": "$disconnect",
            "integration": {"type": "HTTP", "uri": f"http://127.0.0.1:{echo_server.port}/disconnected"},
        },
        {
            "route": "$default",
            "integration": {"type": "MOCK", "body": "m"},
            "routeResponseSelectionExpression": "$default",
        },
    ]
    gw = gateway_factory(ws_config(routes, gateway={"limits": {"drain_timeout": 6.0}}))
    before = sum(1 for t in echo_server.completed if "/disconnected" in t)

    async def run() -> tuple[int | None, str, float]:
        opening = asyncio.ensure_future(websockets.connect(url(gw, query="slow=0.6"), ping_interval=None))
        await asyncio.sleep(0.3)
        os.kill(gw.pid, signal.SIGTERM)
        t0 = time.monotonic()
        c = await asyncio.wait_for(opening, 5)
        try:
            await asyncio.wait_for(c.recv(), 4)
            raise AssertionError("a message on a draining connection")
        except websockets.ConnectionClosed as ex:
            return (
                (ex.rcvd.code if ex.rcvd else None),
                (ex.rcvd.reason if ex.rcvd else ""),
                time.monotonic() - t0,
            )
        finally:
            await c.close()

    code, reason, took = asyncio.run(run())
    assert (code, reason) == (1001, "Going away")
    assert took < 4.0
    assert wait_for(lambda: sum(1 for t in echo_server.completed if "/disconnected" in t) - before == 1, 5)
    gw.proc.wait(10)


def sequence(conn_id: str) -> int:
    """The id's 48-bit sequence (after 4 bytes of node and 1 of worker index)."""
    return int.from_bytes(base64.urlsafe_b64decode(conn_id)[5:11], "big")


def test_ids_never_repeat_after_a_worker_restart(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config())

    async def ids(n: int) -> list[str]:
        out = []
        for _ in range(n):
            async with websockets.connect(url(gw)) as c:
                out.append(await ask(c, json.dumps({"action": "whoami"})))
        return out

    before = asyncio.run(ids(3))
    (worker,) = gw.children()
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: [p for p in gw.children() if p != worker] != [], 10)

    async def ids_when_ready() -> list[str]:
        deadline = time.monotonic() + 10
        while True:
            try:
                return await ids(3)
            except (OSError, InvalidStatus):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

    after = asyncio.run(ids_when_ready())
    # Same node and worker slot: the ids differ by construction, not by chance. The restarted
    # worker's sequence starts past everything its predecessor handed out.
    holders = {base64.urlsafe_b64decode(i)[:5] for i in before + after}
    assert len(holders) == 1
    assert min(sequence(i) for i in after) > max(sequence(i) for i in before)
    assert len(set(before) | set(after)) == 6

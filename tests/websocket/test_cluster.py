"""Several workers and nodes: unique ids, @connections and broadcasts reaching a connection held
by another worker (the node's sockets) or another node (Redis pub/sub, a real redis-server),
a dead holder answered "gone", and SIGTERM closing every WebSocket with 1001 after $disconnect."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any

import websockets

from tests.helpers import EchoServer, GatewayFactory, wait_for
from tests.websocket.conftest import ws_config


def url(gw: Any) -> str:
    return f"ws://127.0.0.1:{gw.port}/prod"


async def whoami(c: Any) -> str:
    await c.send(json.dumps({"action": "whoami"}))
    return str(await asyncio.wait_for(c.recv(), 5))


def post(gw: Any, conn_id: str, data: bytes) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{gw.port}/prod/@connections/{conn_id}", data=data, method="POST"
    )
    try:
        return int(urllib.request.urlopen(req, timeout=5).status)
    except urllib.error.HTTPError as ex:
        return ex.code


def get(gw: Any, conn_id: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{gw.port}/prod/@connections/{conn_id}", timeout=5
        ) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as ex:
        return ex.code, None


def worker_of(conn_id: str) -> int:
    return base64.urlsafe_b64decode(conn_id)[4]


def test_two_workers_one_node(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ws_config(), workers=2)

    async def run() -> None:
        clients: list[Any] = []
        ids: list[str] = []
        try:
            for _ in range(40):
                c = await websockets.connect(url(gw))
                clients.append(c)
                ids.append(await whoami(c))
                if len({worker_of(i) for i in ids}) == 2 and len(ids) >= 4:
                    break
            assert len(set(ids)) == len(ids)
            assert {worker_of(i) for i in ids} == {0, 1}, "the kernel never balanced to the second worker"
            # @connections from whichever worker takes the HTTP request, to every connection.
            for _ in range(3):
                for c, i in zip(clients, ids, strict=True):
                    assert await asyncio.to_thread(post, gw, i, f"to {i}".encode()) == 200
                    assert await asyncio.wait_for(c.recv(), 5) == f"to {i}"
            status, info = await asyncio.to_thread(get, gw, ids[-1])
            assert status == 200 and info["identity"]["sourceIp"] == "127.0.0.1"
            # A broadcast from a handler on one worker reaches both workers' connections.
            await clients[0].send(json.dumps({"action": "sendmessage", "data": "everyone"}))
            assert [await asyncio.wait_for(c.recv(), 5) for c in clients] == ["everyone"] * len(clients)
        finally:
            for c in clients:
                await c.close()
        await asyncio.sleep(0.3)
        for i in ids:
            assert await asyncio.to_thread(post, gw, i, b"x") == 410

    asyncio.run(run())


def test_two_nodes_through_redis(gateway_factory: GatewayFactory, redis_url: str) -> None:
    import redis

    gateway = {"state": {"backend": "redis", "redis": {"url": redis_url, "prefix": "wstest:"}}}
    node_a = gateway_factory(ws_config(gateway=gateway))
    node_b = gateway_factory(ws_config(gateway=gateway))

    async def run() -> None:
        a = await websockets.connect(url(node_a))
        b = await websockets.connect(url(node_b))
        try:
            id_a, id_b = await whoami(a), await whoami(b)
            assert id_a[:6] != id_b[:6]  # different nodes
            # A message posted on node A reaches the client connected to node B.
            assert await asyncio.to_thread(post, node_a, id_b, b"across nodes") == 200
            assert await asyncio.wait_for(b.recv(), 5) == "across nodes"
            status, info = await asyncio.to_thread(get, node_a, id_b)
            assert status == 200 and info["identity"]["sourceIp"] == "127.0.0.1"
            # The chat sample across nodes: a broadcast from node A's handler reaches node B.
            await a.send(json.dumps({"action": "sendmessage", "data": "hello both"}))
            assert await asyncio.wait_for(a.recv(), 5) == "hello both"
            assert await asyncio.wait_for(b.recv(), 5) == "hello both"
            # Groups across nodes: B joins through its node, A's node broadcasts to the group.
            await b.send(json.dumps({"action": "join", "group": "g"}))
            assert await asyncio.wait_for(b.recv(), 5) == "joined"
            await a.send(json.dumps({"action": "togroup", "group": "g", "data": "group msg"}))
            assert await asyncio.wait_for(b.recv(), 5) == "group msg"
            r = redis.Redis.from_url(redis_url)
            assert r.exists(f"wstest:ws:c:{id_b}") == 1
            assert 0 < r.ttl(f"wstest:ws:c:{id_b}") <= 30
            r.close()
            # Node B dies without a word: its connections are gone for node A at once.
            os.killpg(node_b.pid, signal.SIGKILL)
            await asyncio.to_thread(node_b.proc.wait, 5)
            assert await asyncio.to_thread(post, node_a, id_b, b"x") == 410
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_sigterm_runs_disconnect_then_closes_1001(
    gateway_factory: GatewayFactory, echo_server: EchoServer
) -> None:
    routes = [
        {
            "route": "$disconnect",
            "integration": {"type": "HTTP", "uri": f"http://127.0.0.1:{echo_server.port}/disconnected"},
        },
        {
            "route": "$default",
            "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{echo_server.port}/message"},
            "routeResponseSelectionExpression": "$default",
        },
    ]
    gw = gateway_factory(ws_config(routes))

    async def run() -> list[int | None]:
        clients = [await websockets.connect(url(gw)) for _ in range(3)]
        await clients[0].send("through http")
        echoed = await asyncio.wait_for(clients[0].recv(), 5)
        assert "/message" in str(echoed)
        os.kill(gw.pid, signal.SIGTERM)
        codes = []
        for c in clients:
            try:
                await asyncio.wait_for(c.recv(), 10)
            except websockets.ConnectionClosed as ex:
                codes.append(ex.rcvd.code if ex.rcvd else None)
        return codes

    before = sum(1 for t in echo_server.completed if "/disconnected" in t)
    assert asyncio.run(run()) == [1001, 1001, 1001]
    assert wait_for(lambda: sum(1 for t in echo_server.completed if "/disconnected" in t) - before == 3, 5)
    gw.proc.wait(10)

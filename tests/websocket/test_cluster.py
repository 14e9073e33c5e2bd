"""Several workers and nodes: unique ids, @connections and broadcasts reaching a connection held
by another worker (the node's sockets) or another node (Redis pub/sub, a real redis-server),
a dead holder answered "gone", and SIGTERM closing every WebSocket with 1001 after $disconnect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import websockets

from tests.helpers import EchoServer, GatewayFactory, process_name, wait_for
from tests.redis_server import RedisServer
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
            # Node B dies without a word. Once Redis has dropped its subscription (the kernel
            # closes the dead process's sockets), node A answers 410; a call racing that can
            # only time out (504: published, never answered), never succeed.
            os.killpg(node_b.pid, signal.SIGKILL)
            await asyncio.to_thread(node_b.proc.wait, 5)
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen.append(await asyncio.to_thread(post, node_a, id_b, b"x"))
                if seen[-1] == 410:
                    break
            assert seen[-1] == 410 and set(seen) <= {410, 504}, seen
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


def two_stages_two_apis() -> dict[str, Any]:
    """chat (stages prod and beta) and a second WebSocket API whose @connections has a token."""
    config = ws_config(
        extra_apis=[
            {
                "name": "tenant",
                "id": "tenantapi",
                "kind": "websocket",
                "routes": [
                    {
                        "route": "$default",
                        "integration": {"type": "MOCK", "body": "t"},
                        "routeResponseSelectionExpression": "$default",
                    }
                ],
                "stages": [{"name": "tstage"}],
                "websocket": {"connections_api_token": "tenant-token-0123456789"},
            }
        ]
    )
    config["apis"][0]["stages"].append({"name": "beta"})
    return config


def call(gw: Any, method: str, stage: str, conn_id: str, token: str | None = None) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{gw.port}/{stage}/@connections/{conn_id}",
        data=b"intruder" if method == "POST" else None,
        method=method,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as ex:
        return ex.code


def test_connections_api_never_crosses_stages_or_apis_on_any_worker(gateway_factory: GatewayFactory) -> None:
    """An @connections call of one stage (or API) answers 410 for a connection of another,
    whichever worker holds it: the stage goes with the call and the holder checks it."""
    gw = gateway_factory(two_stages_two_apis(), workers=2)

    async def run() -> None:
        clients: list[Any] = []
        ids: list[str] = []
        try:
            for _ in range(40):
                c = await websockets.connect(f"ws://127.0.0.1:{gw.port}/beta")
                clients.append(c)
                ids.append(await whoami(c))
                if {worker_of(i) for i in ids} == {0, 1}:
                    break
            assert {worker_of(i) for i in ids} == {0, 1}, "the kernel never balanced to the second worker"
            token = "tenant-token-0123456789"
            for i in ids:
                # Each urllib call is a new TCP connection: they land on both workers.
                for _ in range(6):
                    assert await asyncio.to_thread(call, gw, "POST", "prod", i) == 410
                    assert await asyncio.to_thread(call, gw, "POST", "tstage", i, token) == 410
                assert await asyncio.to_thread(call, gw, "GET", "prod", i) == 410
                assert await asyncio.to_thread(call, gw, "GET", "tstage", i, token) == 410
                for _ in range(4):
                    assert await asyncio.to_thread(call, gw, "DELETE", "tstage", i, token) == 410
                    assert await asyncio.to_thread(call, gw, "DELETE", "prod", i) == 410
            for c in clients:
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(c.recv(), 0.3)
                    raise AssertionError(f"a beta connection received {got!r} through another stage")
            # Its own stage still reaches it, from either worker.
            for c, i in zip(clients, ids, strict=True):
                for _ in range(3):
                    assert await asyncio.to_thread(call, gw, "POST", "beta", i) == 200
                    assert await asyncio.wait_for(c.recv(), 5) == "intruder"
        finally:
            for c in clients:
                await c.close()

    asyncio.run(run())


def worker_pids(gw: Any) -> dict[int, int]:
    """Worker index -> pid (the processes are named fastgw-w{index})."""
    return {int(process_name(p)[len("fastgw-w") :]): p for p in gw.children()}


def test_a_busy_holder_is_waited_for_never_reported_gone(gateway_factory: GatewayFactory) -> None:
    """The holder stops reading for a second (SIGSTOP: a long GC, a burst): its datagram queue
    fills up (net.unix.max_dgram_qlen), and calls are retried until their deadline instead of
    being answered 410 for a live connection."""
    gw = gateway_factory(ws_config(), workers=2)

    def post_new_conn(conn_id: str, data: bytes) -> int:
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        try:
            c.request("POST", f"/prod/@connections/{conn_id}", body=data)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    async def run() -> tuple[Counter[int], set[str]]:
        c = await websockets.connect(url(gw))
        try:
            me = await whoami(c)
            holder = worker_pids(gw)[worker_of(me)]
            loop = asyncio.get_running_loop()
            os.kill(holder, signal.SIGSTOP)
            with ThreadPoolExecutor(30) as pool:  # 30 calls at once: more than the queue holds
                try:
                    posts = [loop.run_in_executor(pool, post_new_conn, me, b"m%d" % i) for i in range(30)]
                    running = asyncio.gather(*posts)
                    await asyncio.sleep(1.0)
                finally:
                    os.kill(holder, signal.SIGCONT)
                statuses = Counter(await running)
            got: set[str] = set()
            with contextlib.suppress(TimeoutError):
                while True:
                    got.add(str(await asyncio.wait_for(c.recv(), 1.0)))
            return statuses, got
        finally:
            await c.close()

    statuses, got = asyncio.run(run())
    assert statuses[410] == 0, statuses
    assert statuses[200] == 30, statuses  # the holder came back within the 2 s deadline
    assert got == {f"m{i}" for i in range(30)}


def redis_gateway(redis_url: str) -> dict[str, Any]:
    return {"state": {"backend": "redis", "redis": {"url": redis_url, "prefix": "wsout:", "timeout_ms": 500}}}


async def connect_on_both_workers(gw: Any) -> tuple[list[Any], list[str]]:
    clients: list[Any] = []
    ids: list[str] = []
    for _ in range(40):
        c = await websockets.connect(url(gw))
        i = await whoami(c)
        if worker_of(i) in {worker_of(x) for x in ids}:
            await c.close()
            continue
        clients.append(c)
        ids.append(i)
        if len(ids) == 2:
            return clients, ids
    raise AssertionError("the kernel never balanced to the second worker")


def test_redis_outage_and_restart(
    gateway_factory: GatewayFactory, redis_server: RedisServer, redis_url: str
) -> None:
    """Redis hangs: calls across nodes answer 504, never 410. Redis dies: a broadcast still
    reaches this node's workers. Redis restarts (empty): every worker subscribes again and lists
    its connections again, and calls across nodes work without any new connection."""
    import redis

    gateway = redis_gateway(redis_url)
    node_a = gateway_factory(ws_config(gateway=gateway))
    node_b = gateway_factory(ws_config(gateway=gateway), workers=2)
    r = redis.Redis.from_url(redis_url)

    async def run() -> None:
        (b0, b1), (id0, id1) = await connect_on_both_workers(node_b)
        try:
            assert wait_for(lambda: r.exists(f"wsout:ws:c:{id0}") == 1, 5)
            assert await asyncio.to_thread(post, node_a, id0, b"before") == 200
            assert await asyncio.wait_for(b0.recv(), 5) == "before"
            redis_server.pause()
            try:
                assert await asyncio.to_thread(post, node_a, id0, b"hung") == 504
            finally:
                redis_server.resume()
            # The PUBLISH that timed out runs once Redis answers again: delivered late, once.
            late = []
            with contextlib.suppress(TimeoutError):
                while True:
                    late.append(await asyncio.wait_for(b0.recv(), 1.0))
            assert late in ([], ["hung"])
            redis_server.kill()
            await b0.send(json.dumps({"action": "sendmessage", "data": "redis is down"}))
            assert await asyncio.wait_for(b0.recv(), 5) == "redis is down"
            assert await asyncio.wait_for(b1.recv(), 5) == "redis is down"  # the sibling worker
            redis_server.start()
            assert wait_for(lambda: r.exists(f"wsout:ws:c:{id0}", f"wsout:ws:c:{id1}") == 2, 10)

            def reached() -> bool:
                return post(node_a, id1, b"after restart") == 200

            assert await asyncio.to_thread(wait_for, reached, 10, 0.2)
            assert await asyncio.wait_for(b1.recv(), 5) == "after restart"
        finally:
            await b0.close()
            await b1.close()

    try:
        asyncio.run(run())
    finally:
        r.close()


def test_redis_down_when_the_gateway_starts(
    gateway_factory: GatewayFactory, redis_server: RedisServer, redis_url: str
) -> None:
    """The hub's Redis side starts with the worker and retries in the background: a gateway
    started while Redis is down serves local broadcasts, and is reachable from other nodes once
    Redis is back, without a new connection."""
    gateway = redis_gateway(redis_url)
    redis_server.stop()
    node_a = gateway_factory(ws_config(gateway=gateway))
    node_c = gateway_factory(ws_config(gateway=gateway))

    async def run() -> None:
        c = await websockets.connect(url(node_c))
        try:
            me = await whoami(c)
            await c.send(json.dumps({"action": "sendmessage", "data": "local while down"}))
            assert await asyncio.wait_for(c.recv(), 5) == "local while down"
            redis_server.start()

            def reached() -> bool:
                return post(node_a, me, b"across nodes") == 200

            assert await asyncio.to_thread(wait_for, reached, 10, 0.2)
            assert await asyncio.wait_for(c.recv(), 5) == "across nodes"
        finally:
            await c.close()

    try:
        asyncio.run(run())
    finally:
        redis_server.start()

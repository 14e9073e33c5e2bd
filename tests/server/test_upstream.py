"""HTTP_PROXY integrations against misbehaving upstreams: errors, timeouts, reuse, balancing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import (
    EchoServer,
    Gateway,
    GatewayFactory,
    LoopThread,
    RawConn,
    ScriptedUpstream,
    build_request,
    chunked,
    closed_port,
    get,
    pattern_bytes,
    rss_bytes,
    wait_for,
)

INTERNAL_ERROR = b'{"message": "Internal server error"}'
TIMED_OUT = b'{"message": "Endpoint request timed out"}'
TIMEOUT_MS = 300
EJECT_AFTER = 3


def proxy(uri: str, timeout_ms: int = 10000, targets: list[str] | None = None) -> dict[str, Any]:
    integ: dict[str, Any] = {"type": "HTTP_PROXY", "uri": uri, "timeout_ms": timeout_ms}
    if targets:
        integ["targets"] = targets
    return integ


@pytest.fixture(scope="module")
def upstreams(loop_thread: LoopThread) -> Iterator[dict[str, ScriptedUpstream]]:
    """Dedicated scripted upstreams: rr1/rr2 for round-robin, healthy for ejection."""
    servers = {name: ScriptedUpstream(loop_thread) for name in ("rr1", "rr2", "healthy")}
    yield servers
    for srv in servers.values():
        srv.close()


@pytest.fixture(scope="module")
def gw(
    module_gateway_factory: GatewayFactory,
    echo_server: EchoServer,
    scripted: ScriptedUpstream,
    upstreams: dict[str, ScriptedUpstream],
) -> Iterator[Gateway]:
    up = f"http://127.0.0.1:{scripted.port}"
    config = {
        "gateway": {
            "limits": {"drain_timeout": 2.0},
            "upstream": {
                "connect_timeout": 1.0,
                "eject_after": EJECT_AFTER,
                "eject_seconds": 120.0,
                "idle_timeout": 30.0,
            },
        },
        "apis": [
            {
                "name": "up",
                "kind": "rest",
                "routes": [
                    {"route": "ANY /up/{proxy+}", "integration": proxy(f"{up}/{{proxy}}", TIMEOUT_MS)},
                    {"route": "ANY /ka/{proxy+}", "integration": proxy(f"{up}/{{proxy}}")},
                    {
                        "route": "ANY /echo/{proxy+}",
                        "integration": proxy(f"http://127.0.0.1:{echo_server.port}/{{proxy}}"),
                    },
                    {
                        "route": "ANY /refused/{proxy+}",
                        "integration": proxy(f"http://127.0.0.1:{closed_port()}/{{proxy}}"),
                    },
                    {
                        "route": "ANY /rr/{proxy+}",
                        "integration": proxy(
                            f"http://127.0.0.1:{upstreams['rr1'].port}/{{proxy}}",
                            targets=[f"http://127.0.0.1:{upstreams['rr2'].port}"],
                        ),
                    },
                    {
                        "route": "ANY /ej/{proxy+}",
                        "integration": proxy(
                            f"http://127.0.0.1:{upstreams['healthy'].port}/{{proxy}}",
                            targets=[f"http://127.0.0.1:{closed_port()}"],
                        ),
                    },
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    gateway = module_gateway_factory(config)
    yield gateway
    gateway.stop()


def assert_502(resp: Any) -> None:
    assert resp.status == 502, (resp.status, resp.body)
    assert resp.body == INTERNAL_ERROR
    assert resp.header("content-type") == "application/json"
    assert resp.header("x-amzn-RequestId")


# ---------------------------------------------------------------- failures
@pytest.mark.parametrize(
    "target", ["/prod/refused/x", "/prod/up/reset", "/prod/up/garbage", "/prod/up/close"]
)
def test_upstream_failure_is_502(gw: Gateway, target: str) -> None:
    with RawConn(gw.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", target)
        assert time.monotonic() - t0 < 2.0
        assert_502(r)
        # the client connection survives an upstream failure
        r2 = c.request("GET", "/prod/ka/after-failure")
        assert r2.status == 200


def test_upstream_timeout_is_504(gw: Gateway, scripted: ScriptedUpstream) -> None:
    warm = get(gw.port, "/prod/ka/warm-before-timeout").json()
    with RawConn(gw.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/prod/up/slow?ms=2000")
        elapsed = time.monotonic() - t0
        assert r.status == 504, (r.status, r.body)
        assert r.body == TIMED_OUT
        assert r.header("x-amzn-RequestId")
        assert TIMEOUT_MS / 1000 - 0.05 <= elapsed < 1.5
        after = c.request("GET", "/prod/ka/after-timeout").json()
    slow_conns = scripted.conn_ids_for("slow?ms=2000")
    assert len(slow_conns) == 1
    # the idle connection was reused for the slow request, and never again after the timeout
    assert slow_conns[0] == warm["conn"]
    assert after["conn"] != slow_conns[0]
    assert wait_for(lambda: slow_conns[0] in scripted.closed_conns, 3.0)


def test_partial_response_closes_client_connection(gw: Gateway, scripted: ScriptedUpstream) -> None:
    with RawConn(gw.port, timeout=3.0) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/prod/ka/partial")
        assert r.status == 200
        assert r.header("content-length") == "100"
        assert r.body == b"0123456789"
        assert not r.complete
        assert c.is_closed(1.0)
        assert time.monotonic() - t0 < 2.0
    after = get(gw.port, "/prod/ka/after-partial").json()
    assert after["conn"] not in scripted.conn_ids_for("/partial")


def test_hanging_response_body_is_cut_at_the_integration_timeout(
    gw: Gateway, scripted: ScriptedUpstream
) -> None:
    """Headers then silence: the integration deadline covers the whole response, not only its head."""
    with RawConn(gw.port, timeout=3.0) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/prod/up/hang-body"))
        status, _, _, _ = c.read_head()
        assert status == 200
        got = c.buf
        try:
            while c._fill():
                got = c.buf
        except TimeoutError:
            pytest.fail(
                f"client connection still open {time.monotonic() - t0:.1f}s after a {TIMEOUT_MS} ms "
                f"integration timeout (upstream stalled mid-body); got {got!r}"
            )
        assert time.monotonic() - t0 < TIMEOUT_MS / 1000 + 1.5
        assert len(got) < 100
    after = get(gw.port, "/prod/ka/after-hang").json()
    assert after["conn"] not in scripted.conn_ids_for("/hang-body")


# ---------------------------------------------------------------- reuse
def test_upstream_keep_alive_reuse(gw: Gateway, scripted: ScriptedUpstream) -> None:
    docs = [get(gw.port, f"/prod/ka/reuse-{i}").json() for i in range(4)]
    with RawConn(gw.port) as c:
        docs += [c.request("GET", f"/prod/ka/reuse-same-{i}").json() for i in range(4)]
    conns = {d["conn"] for d in docs}
    assert len(conns) == 1, docs
    seqs = [d["seq"] for d in docs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_response_headers_relayed_and_hop_by_hop_dropped(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/ka/headers")
        assert r.status == 200
        assert r.body == b"headers"
        assert r.header_all("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
        assert r.header("x-hop") is None
        assert r.header("connection") is None
        assert r.header("x-upstream") == "kept"
        assert len(r.header_all("x-amzn-RequestId")) == 1
        assert c.request("GET", "/prod/ka/after-headers").status == 200


@pytest.mark.parametrize("code", [201, 204, 304, 404, 500, 503])
def test_upstream_status_relayed(gw: Gateway, code: int) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", f"/prod/ka/status?code={code}")
        assert r.status == code
        assert r.body == (b"" if code in (204, 304) else b"status %d" % code)
        assert c.request("GET", "/prod/ka/after-status").status == 200


# ---------------------------------------------------------------- balancing
def test_round_robin_over_targets(gw: Gateway, upstreams: dict[str, ScriptedUpstream]) -> None:
    for i in range(10):
        assert get(gw.port, f"/prod/rr/spread-{i}").status == 200
    n1 = len(upstreams["rr1"].requests_for("spread-"))
    n2 = len(upstreams["rr2"].requests_for("spread-"))
    assert n1 + n2 == 10
    assert n1 >= 4 and n2 >= 4, (n1, n2)


def test_passive_ejection(gw: Gateway, upstreams: dict[str, ScriptedUpstream]) -> None:
    statuses = [get(gw.port, f"/prod/ej/try-{i}").status for i in range(14)]
    assert set(statuses) <= {200, 502}, statuses
    assert statuses[-6:] == [200] * 6, statuses
    # a target is ejected after `eject_after` consecutive failures, not before
    assert statuses.count(502) == EJECT_AFTER, statuses
    assert len(upstreams["healthy"].requests_for("try-")) == statuses.count(200)


# ---------------------------------------------------------------- sizes
def test_large_response_complete(gw: Gateway) -> None:
    n = 5 * 1024 * 1024
    with RawConn(gw.port, timeout=10.0) as c:
        r = c.request("GET", f"/prod/ka/big?n={n}")
        assert r.status == 200
        assert r.header("content-length") == str(n)
        assert r.complete
        assert r.body == pattern_bytes(n)
        assert c.request("GET", "/prod/ka/after-big").status == 200


def test_large_response_to_a_slow_reader_is_not_buffered(gw: Gateway) -> None:
    worker = gw.children()[0]
    n = 24 * 1024 * 1024
    with RawConn(gw.port, timeout=10.0) as c:
        before = rss_bytes(worker)
        c.send(build_request("GET", f"/prod/ka/big?n={n}"))
        time.sleep(1.0)  # do not read: the gateway must stop reading the upstream
        during = rss_bytes(worker)
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == n
        assert r.body == pattern_bytes(n)
    assert during - before < 8 * 1024 * 1024, (before, during)


def test_one_mib_upload(gw: Gateway) -> None:
    body = (b"0123456789abcdef" * 65536)[: 1024 * 1024]
    with RawConn(gw.port, timeout=10.0) as c:
        r = c.request("POST", "/prod/echo/upload", [("Content-Type", "text/plain")], body=body)
        assert r.status == 200
        doc = r.json()
        assert doc["body"].encode() == body
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        c.send(
            build_request("PUT", "/prod/echo/upload-chunked", [("Transfer-Encoding", "chunked")])
            + chunked(*pieces)
        )
        r2 = c.read_response()
        assert r2.status == 200
        assert r2.json()["body"].encode() == body

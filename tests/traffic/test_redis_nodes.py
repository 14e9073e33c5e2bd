"""Several gateway nodes sharing one real Redis: one limit per key, changes everywhere within a
second, and a Redis outage that degrades to per-node limits and heals by itself."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from helpers import Gateway, GatewayFactory, RawConn, wait_for
from helpers import admin_call as admin
from redis_server import RedisServer

from .loadgen import drive, request_bytes

KEY = "nodes-key-0123456789abcdef"


def mock(body: str) -> dict[str, Any]:
    return {"type": "MOCK", "status": 200, "headers": {"content-type": "text/plain"}, "body": body}


def redis_config(url: str, rate: float = 20, burst: int = 10) -> dict[str, Any]:
    return {
        "gateway": {
            "limits": {"drain_timeout": 2.0},
            "state": {"backend": "redis", "redis": {"url": url, "retry_seconds": 0.5}},
        },
        "apis": [
            {
                "name": "shop",
                "routes": [
                    {"route": "GET /keyed", "integration": mock("keyed"), "apiKeyRequired": True},
                    {"route": "GET /open", "integration": mock("open")},
                ],
                "stages": [
                    {"name": "prod", "route_throttle": {"GET /open": {"rateLimit": 5, "burstLimit": 5}}}
                ],
            }
        ],
        "apiKeys": [{"name": "k", "value": KEY}],
        "usagePlans": [
            {
                "name": "plan",
                "apiStages": [{"apiId": "shop", "stage": "prod"}],
                "throttle": {"rateLimit": rate, "burstLimit": burst},
                "quota": {"limit": 100000, "period": "DAY"},
                "keys": ["k"],
            }
        ],
    }


def status(gw: Gateway, path: str, key: str | None = None) -> int:
    with RawConn(gw.port) as c:
        return c.request("GET", path, headers=[("x-api-key", key)] if key else []).status


@pytest.mark.timeout(120)
def test_three_nodes_enforce_one_limit_per_key(gateway_factory: GatewayFactory, redis_url: str) -> None:
    cfg = redis_config(redis_url, rate=20, burst=10)
    nodes = [gateway_factory(cfg, workers=1) for _ in range(3)]
    req = request_bytes("/prod/keyed", {"x-api-key": KEY})
    seconds = 10.0
    counts = drive([(n.port, req) for n in nodes], rate=60, seconds=seconds, conns_per_target=3)
    expected = 20 * seconds + 10
    assert abs(counts[200] - expected) <= 0.05 * expected, counts
    assert counts[200] + counts[429] == sum(counts.values()), counts
    # Every node admitted part of it: the limit is shared, not per node.
    for n in nodes:
        assert "redis" not in n.stderr_text().lower() or "unreachable" not in n.stderr_text()


@pytest.mark.timeout(60)
def test_key_changes_reach_every_node_within_a_second(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    cfg = redis_config(redis_url, rate=1000, burst=1000)
    a, b, c = (gateway_factory(cfg) for _ in range(3))
    created = admin(a, "POST", "/apikeys", {"name": "late"})
    plan = next(p for p in admin(b, "GET", "/usageplans")["items"] if p["name"] == "plan")
    admin(c, "POST", f"/usageplans/{plan['id']}/keys", {"keyId": created["id"], "keyType": "API_KEY"})
    assert wait_for(lambda: all(status(n, "/prod/keyed", created["value"]) == 200 for n in (a, b, c)), 2.0)
    admin(b, "PATCH", f"/apikeys/{created['id']}", {"enabled": False})
    t0 = time.monotonic()
    assert wait_for(lambda: all(status(n, "/prod/keyed", created["value"]) == 403 for n in (a, b, c)), 3.0)
    assert time.monotonic() - t0 < 1.2
    # The config key keeps working throughout.
    assert all(status(n, "/prod/keyed", KEY) == 200 for n in (a, b, c))


@pytest.mark.timeout(90)
def test_redis_outage_falls_back_to_local_limits_and_recovers(
    gateway_factory: GatewayFactory, redis_url: str, redis_server: RedisServer
) -> None:
    gw = gateway_factory(redis_config(redis_url))
    client = redis.Redis.from_url(redis_url)
    try:
        assert status(gw, "/prod/open") == 200
        assert any(b"bucket" in k for k in client.keys("*")), client.keys("*")
        redis_server.kill()
        # Keyed and open routes keep being served, within the node's own limits.
        t0 = time.monotonic()
        got = [status(gw, "/prod/open") for _ in range(12)]
        assert time.monotonic() - t0 < 3.0
        assert set(got) <= {200, 429} and got.count(200) <= 5 + 3, got
        assert status(gw, "/prod/keyed", KEY) == 200  # quota fails open by default
        redis_server.start()
        client.flushall()
        time.sleep(0.1)
        assert client.keys("*") == []
        # After retry_seconds the gateway uses Redis again, by itself.
        assert wait_for(
            lambda: status(gw, "/prod/keyed", KEY) in (200, 429) and bool(client.keys("*bucket*")), 5.0
        ), client.keys("*")
        assert "unreachable" in gw.stderr_text()
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_usage_is_shared_by_the_nodes(gateway_factory: GatewayFactory, redis_url: str) -> None:
    cfg = redis_config(redis_url, rate=1000, burst=1000)
    cfg["usagePlans"].append(
        {"name": "free", "apiStages": [{"apiId": "shop", "stage": "prod"}], "keys": ["other"]}
    )
    cfg["apiKeys"].append({"name": "other", "value": "other-key-0123456789abcdef"})
    # A key is in one plan per stage: move "k" out of the way.
    cfg["usagePlans"][0]["apiStages"] = [{"apiId": "shop", "stage": "dev"}]
    cfg["apis"][0]["stages"].append({"name": "dev"})
    a, b = gateway_factory(cfg), gateway_factory(cfg)
    for n in (a, b, a):
        assert status(n, "/prod/keyed", "other-key-0123456789abcdef") == 200
    for n in (a, b):
        assert status(n, "/dev/keyed", KEY) == 200
    today = time.strftime("%Y-%m-%d", time.gmtime())
    plans = {p["name"]: p for p in admin(a, "GET", "/usageplans")["items"]}

    def used(plan: str) -> Any:
        pid = plans[plan]["id"]
        kid = admin(b, "GET", f"/usageplans/{pid}/keys")["items"][0]["id"]
        items = admin(b, "GET", f"/usageplans/{pid}/usage?keyId={kid}&startDate={today}&endDate={today}")
        return items["items"].get(kid)

    assert wait_for(lambda: used("free") == [[3, None]], 4.0), used("free")
    assert used("plan") == [[2, 99998]]


@pytest.mark.timeout(90)
def test_quota_is_exact_across_nodes_and_workers(gateway_factory: GatewayFactory, redis_url: str) -> None:
    """2 nodes x 2 workers with quota leases: exactly the quota passes; the usage they report
    (ahead while units are leased) settles at exactly what passed once the leases go back."""
    cfg = redis_config(redis_url, rate=1000, burst=1000)
    cfg["usagePlans"][0]["quota"] = {"limit": 1000, "period": "DAY"}
    nodes = [gateway_factory(cfg, workers=2) for _ in range(2)]
    req = request_bytes("/prod/keyed", {"x-api-key": KEY})
    counts = drive([(n.port, req) for n in nodes], rate=300, seconds=5.0, conns_per_target=4)
    assert counts[200] == 1000, counts
    assert counts[200] + counts[429] == sum(counts.values()), counts
    today = time.strftime("%Y-%m-%d", time.gmtime())
    plan = next(p for p in admin(nodes[0], "GET", "/usageplans")["items"] if p["name"] == "plan")
    kid = admin(nodes[1], "GET", f"/usageplans/{plan['id']}/keys")["items"][0]["id"]

    def used() -> Any:
        items = admin(
            nodes[1], "GET", f"/usageplans/{plan['id']}/usage?keyId={kid}&startDate={today}&endDate={today}"
        )
        return items["items"].get(kid)

    assert wait_for(lambda: used() == [[1000, 0]], 3.0), used()

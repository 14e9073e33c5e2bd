"""Metrics end to end: a real gateway with two workers, traffic of known shape, and a Prometheus
scrape of the admin listener's ``/metrics`` that must count it exactly (node totals, not one
worker's): Count, 4XXError, 5XXError per route with AWS's dimensions, CacheHitCount and
CacheMissCount, IntegrationLatency only where an integration ran, Latency histograms that
bracket what the client measured, and the gateway's own gauges."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest
from helpers import ADMIN_TOKEN, HOST, Gateway, GatewayFactory, RawConn, wait_for

pytestmark = pytest.mark.timeout(60)


def config(port: int) -> dict[str, Any]:
    slow = {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/slow?ms=120"}
    return {
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "routes": [
                    {"route": "GET /ok", "integration": {"type": "MOCK", "body": "ok"}},
                    {"route": "GET /missing", "integration": {"type": "MOCK", "status": 404, "body": "no"}},
                    {
                        "route": "GET /fail",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{port}/status?code=503",
                        },
                    },
                    {"route": "GET /slow", "integration": slow},
                    {
                        "route": "GET /cached",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/plain"},
                    },
                ],
                "stages": [
                    {
                        "name": "prod",
                        "cache": {"ttl_seconds": 60},
                        "route_cache": {
                            "GET /ok": {"enabled": False},
                            "GET /missing": {"enabled": False},
                            "GET /slow": {"enabled": False},
                        },
                    }
                ],
            },
            {
                "name": "lean",
                "id": "lean1",
                "kind": "http",
                "routes": [
                    {
                        "route": "GET /h/{id}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/h/{{id}}"},
                    }
                ],
                "stages": [{"name": "$default"}],
            },
        ]
    }


def scrape(gw: Gateway) -> str:
    req = urllib.request.Request(
        f"http://{HOST}:{gw.admin_port}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        return str(resp.read().decode())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    hits = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) == 1, (name, labels, [k for k in found if k[0] == name])
    return hits[0]


def test_a_scrape_counts_the_node_traffic_exactly(gateway_factory: GatewayFactory, scripted: Any) -> None:
    gw = gateway_factory(config(scripted.port), workers=2)
    plan = {"/prod/ok": 7, "/prod/missing": 3, "/prod/fail": 2, "/prod/cached": 4}
    for target, n in plan.items():
        for _ in range(n):
            with RawConn(gw.port) as c:  # new connections: both workers serve
                c.request("GET", target)
    timings = []
    for _ in range(2):
        t0 = time.monotonic()
        with RawConn(gw.port) as c:
            assert c.request("GET", "/prod/slow").status == 200
        timings.append((time.monotonic() - t0) * 1000)
    for i in range(5):
        with RawConn(gw.port) as c:
            assert c.request("GET", f"/h/{i}", host="lean1.execute-api.local").status == 200

    rest = {"ApiName": "shop", "Stage": "prod"}

    def settled() -> bool:
        # Each worker publishes its counts once a second on its own ticker: wait until both
        # have published everything (the last requests of one worker say nothing of the other's).
        found = samples(scrape(gw))
        expected = {"/slow": 2, "/ok": 7, "/missing": 3, "/fail": 2, "/cached": 4}
        lean = {"ApiId": "lean1", "Stage": "$default", "Route": "GET /h/{id}"}
        try:
            return (
                all(
                    value(found, "fastgw_Count_total", Resource=res, Method="GET", **rest) == n
                    for res, n in expected.items()
                )
                and value(found, "fastgw_Count_total", **lean) == 5
            )
        except AssertionError:
            return False

    assert wait_for(settled, 5.0)
    found = samples(scrape(gw))
    assert value(found, "fastgw_Count_total", Resource="/ok", Method="GET", **rest) == 7
    assert value(found, "fastgw_4XXError_total", Resource="/ok", Method="GET", **rest) == 0
    assert value(found, "fastgw_4XXError_total", Resource="/missing", Method="GET", **rest) == 3
    assert value(found, "fastgw_5XXError_total", Resource="/fail", Method="GET", **rest) == 2
    # Each worker has its own memory cache: one miss per worker that served the route.
    misses = value(found, "fastgw_CacheMissCount_total", Resource="/cached", Method="GET", **rest)
    hits = value(found, "fastgw_CacheHitCount_total", Resource="/cached", Method="GET", **rest)
    assert 1 <= misses <= 2 and hits + misses == 4
    assert value(found, "fastgw_Count_total", ApiId="lean1", Stage="$default", Route="GET /h/{id}") == 5
    # Latency: the two slow requests fall in the buckets around what the client measured.
    count = value(found, "fastgw_Latency_milliseconds_count", Resource="/slow", Method="GET", **rest)
    assert count == 2
    total = value(found, "fastgw_Latency_milliseconds_sum", Resource="/slow", Method="GET", **rest)
    assert 2 * 115 <= total <= sum(timings) + 5
    assert (
        value(found, "fastgw_Latency_milliseconds_bucket", Resource="/slow", Method="GET", le="100.0", **rest)
        == 0
    )
    assert (
        value(found, "fastgw_Latency_milliseconds_bucket", Resource="/slow", Method="GET", le="+Inf", **rest)
        == 2
    )
    integ = value(
        found, "fastgw_IntegrationLatency_milliseconds_count", Resource="/slow", Method="GET", **rest
    )
    assert integ == 2
    assert (
        value(found, "fastgw_IntegrationLatency_milliseconds_count", Resource="/ok", Method="GET", **rest)
        == 0
    )
    assert "fastgw_active_connections" in {n for n, _ in found}


def test_gateway_internals_are_scraped(gateway_factory: GatewayFactory) -> None:
    cfg = {
        "apis": [
            {
                "name": "tight",
                "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "x"}}],
                "stages": [{"name": "prod", "throttle": {"rateLimit": 0.01, "burstLimit": 1}}],
            }
        ]
    }
    gw = gateway_factory(cfg)
    with RawConn(gw.port) as c:
        got = [c.request("GET", "/prod/x").status for _ in range(4)]
    assert got == [200, 429, 429, 429]

    def throttled() -> float:
        found = samples(scrape(gw))
        return next((v for (n, _), v in found.items() if n == "fastgw_throttled_total"), -1.0)

    assert wait_for(lambda: throttled() == 3, 5.0), throttled()
    found = samples(scrape(gw))
    assert value(found, "fastgw_Count_total", ApiName="tight", Resource="/x") == 4
    assert value(found, "fastgw_4XXError_total", ApiName="tight", Resource="/x") == 3
    names = {n for n, _ in found}
    assert {"fastgw_quota_refused_total", "fastgw_cache_entries", "fastgw_active_connections"} <= names


def test_unmatched_requests_and_reload_outcomes_are_counted(gateway_factory: GatewayFactory) -> None:
    cfg: dict[str, Any] = {
        "apis": [
            {
                "name": "one",
                "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "x"}}],
                "stages": [{"name": "prod"}],
            }
        ]
    }
    gw = gateway_factory(cfg, workers=2)

    def node() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return samples(scrape(gw))

    def now(name: str) -> float:
        hits = [v for (n, _), v in node().items() if n == name]
        return hits[0] if len(hits) == 1 else -1.0

    assert wait_for(lambda: now("fastgw_config_version") == 1, 5.0)
    assert value(node(), "fastgw_reloads_ok_total") == 0
    # The test helper's readiness probe (GET /) was one: count from what is published now.
    assert wait_for(lambda: now("fastgw_unmatched_requests_total") >= 1, 5.0)
    base = now("fastgw_unmatched_requests_total")
    for target in ("/prod/nothing", "/other/x", "/prod/x/y"):
        with RawConn(gw.port) as c:
            assert c.request("GET", target).status == 403
    with RawConn(gw.port) as c:
        c.send(b"GET /prod/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # two Hosts: 400
        assert c.read_response("GET").status == 400
    assert wait_for(lambda: now("fastgw_unmatched_requests_total") == base + 4, 5.0)

    cfg["apis"][0]["routes"].append({"route": "GET /y", "integration": {"type": "MOCK", "body": "y"}})
    gw.write_config(cfg)
    gw.reload()
    assert wait_for(lambda: now("fastgw_reloads_ok_total") == 1, 5.0)
    assert value(node(), "fastgw_config_version") == 2
    gw.write_config("apis: [{name: bad, kind: nope}]\n")
    gw.reload()
    assert wait_for(lambda: now("fastgw_reloads_failed_total") == 1, 5.0)
    found = node()
    assert value(found, "fastgw_reloads_ok_total") == 1 and value(found, "fastgw_config_version") == 2
    with RawConn(gw.port) as c:
        assert c.request("GET", "/prod/y").status == 200  # the applied reload keeps serving


def test_cut_responses_and_worker_restarts_keep_the_counts(
    gateway_factory: GatewayFactory, scripted: Any
) -> None:
    import os
    import signal

    cfg = {
        "gateway": {"throttle": {"rateLimit": 0.01, "burstLimit": 4}},
        "apis": [
            {
                "name": "cut",
                "routes": [
                    {
                        "route": "GET /partial",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{scripted.port}/partial",
                        },
                    }
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    gw = gateway_factory(cfg)
    for _ in range(6):  # 4 cut responses (the upstream closes mid-body), then 2 throttled
        try:
            with RawConn(gw.port) as c:
                c.request("GET", "/prod/partial")
        except Exception:
            pass

    def counts() -> tuple[float, float]:
        found = samples(scrape(gw))
        count = next((v for (n, ls), v in found.items() if n == "fastgw_Count_total"), -1.0)
        throttled = next((v for (n, _), v in found.items() if n == "fastgw_throttled_total"), -1.0)
        return count, throttled

    assert wait_for(lambda: counts() == (6, 2), 5.0), counts()
    (worker,) = gw.children()
    os.kill(worker, signal.SIGKILL)

    def replaced() -> bool:
        children = gw.children()  # one read: the list changes while the worker restarts
        return len(children) == 1 and children[0] != worker

    assert wait_for(replaced, 10.0)
    time.sleep(2.5)  # the new worker has published (it carries the old one's counts over)
    assert counts() == (6, 2)

"""The stage response cache, end to end: a real gateway in front of the scripted upstream, whose
JSON answer names its connection and the request's number on it (a hit repeats the stored
body; a miss has a new pair, ``seq``). Keys, TTLs, per-route overrides, errors and oversize
bodies never cached, callers' credentials in the key, AWS's three invalidation policies, the
admin flush / purge, and the Redis backend shared by two gateways."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn, admin_call, wait_for
from helpers import upstream_response_id as seq

pytestmark = pytest.mark.timeout(60)


def proxy(port: int, path: str) -> dict[str, Any]:
    return {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}{path}"}


def config(port: int, backend: str = "memory", redis_url: str | None = None) -> dict[str, Any]:
    cache = {"ttl_seconds": 60, "max_item_bytes": 4096, "backend": backend}
    gateway: dict[str, Any] = {}
    if redis_url is not None:
        gateway["state"] = {"backend": "redis", "redis": {"url": redis_url, "prefix": f"t{port}:"}}
    return {
        "gateway": gateway,
        "apis": [
            {
                "name": "cachey",
                "id": "cachey1",
                "routes": [
                    {
                        "route": "GET /items/{id}",
                        "integration": proxy(port, "/items/{id}"),
                        "cacheKeyParameters": [
                            "method.request.path.id",
                            "method.request.querystring.lang",
                            "method.request.header.X-Tenant",
                        ],
                    },
                    {"route": "GET /plain", "integration": proxy(port, "/plain")},
                    {
                        # An HTTP (non-proxy) integration with templates: its pipeline runs
                        # without a Task (runtime._Stepper), and its reply is stored as well.
                        "route": "GET /mapped",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{port}/mapped",
                            "requestTemplates": {"application/json": "{}"},
                            "responses": {
                                "default": {
                                    "statusCode": 200,
                                    "responseTemplates": {"application/json": "{\"got\": $input.json('$')}"},
                                }
                            },
                        },
                    },
                    {"route": "GET /short", "integration": proxy(port, "/short")},
                    {"route": "GET /off", "integration": proxy(port, "/off")},
                    {"route": "POST /post", "integration": proxy(port, "/post")},
                    {"route": "PUT /put", "integration": proxy(port, "/put")},
                    {
                        "route": "GET /status",
                        "integration": proxy(port, "/status"),
                        "cacheKeyParameters": ["method.request.querystring.code"],
                    },
                    {
                        "route": "GET /big",
                        "integration": proxy(port, "/big"),
                        "cacheKeyParameters": ["method.request.querystring.n"],
                    },
                ],
                "stages": [
                    {
                        "name": "prod",
                        "cache": cache,
                        "route_cache": {
                            "GET /short": {"ttl_seconds": 1},
                            "GET /off": {"enabled": False},
                            "POST /post": {"enabled": True},
                        },
                    },
                    {"name": "open", "cache": {**cache, "requireAuthorizationForCacheControl": False}},
                    {
                        "name": "strict",
                        "cache": {**cache, "unauthorizedCacheControlHeaderStrategy": "FAIL_WITH_403"},
                    },
                    {
                        "name": "quiet",
                        "cache": {
                            **cache,
                            "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITHOUT_RESPONSE_HEADER",
                        },
                    },
                    {"name": "nocache"},
                ],
            }
        ],
    }


def call(port: int, method: str, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    with RawConn(port) as c:
        return c.request(method, target, headers=headers or [])


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, scripted: Any) -> Any:
    return module_gateway_factory(config(scripted.port))


def test_a_hit_repeats_the_stored_response_without_calling_the_upstream(gw: Any, scripted: Any) -> None:
    before = len(scripted.requests_for("/plain"))
    first = call(gw.port, "GET", "/prod/plain")
    second = call(gw.port, "GET", "/prod/plain")
    assert seq(first) == seq(second)
    assert second.body == first.body
    assert second.header("content-type") == "application/json"
    assert second.header("x-amzn-RequestId") != first.header("x-amzn-RequestId")
    assert len(scripted.requests_for("/plain")) == before + 1


def test_a_mapped_route_s_reply_is_cached(gw: Any, scripted: Any) -> None:
    before = len(scripted.requests_for("/mapped"))
    first = call(gw.port, "GET", "/prod/mapped")
    second = call(gw.port, "GET", "/prod/mapped")
    assert first.status == second.status == 200
    assert set(first.json()) == {"got"}  # the response template's output
    assert second.body == first.body
    assert len(scripted.requests_for("/mapped")) == before + 1
    fresh = call(gw.port, "GET", "/nocache/mapped")  # a stage without a cache: a new answer
    assert fresh.body != first.body


def test_the_key_is_method_resource_and_declared_parameters(gw: Any) -> None:
    a = seq(call(gw.port, "GET", "/prod/items/1?lang=en"))
    assert seq(call(gw.port, "GET", "/prod/items/1?lang=en&other=x")) == a  # undeclared: ignored
    assert seq(call(gw.port, "GET", "/prod/items/1?lang=fr")) != a
    assert seq(call(gw.port, "GET", "/prod/items/2?lang=en")) != a
    t1 = seq(call(gw.port, "GET", "/prod/items/1?lang=en", [("X-Tenant", "t1")]))
    assert t1 != a
    assert seq(call(gw.port, "GET", "/prod/items/1?lang=en", [("x-tenant", "t1")])) == t1


def test_stages_have_their_own_caches_and_a_stage_without_one_never_caches(gw: Any) -> None:
    prod = seq(call(gw.port, "GET", "/prod/plain"))
    assert seq(call(gw.port, "GET", "/open/plain")) != prod
    a = seq(call(gw.port, "GET", "/nocache/plain"))
    assert seq(call(gw.port, "GET", "/nocache/plain")) != a


def test_per_route_settings_ttl_and_methods(gw: Any) -> None:
    short = seq(call(gw.port, "GET", "/prod/short"))
    assert seq(call(gw.port, "GET", "/prod/short")) == short
    time.sleep(1.2)
    assert seq(call(gw.port, "GET", "/prod/short")) != short  # expired after its own 1 s TTL
    off = seq(call(gw.port, "GET", "/prod/off"))
    assert seq(call(gw.port, "GET", "/prod/off")) != off
    put = seq(call(gw.port, "PUT", "/prod/put"))
    assert seq(call(gw.port, "PUT", "/prod/put")) != put  # only GET unless a route enables it
    post = seq(call(gw.port, "POST", "/prod/post"))
    assert seq(call(gw.port, "POST", "/prod/post")) == post


def test_errors_and_oversize_responses_are_never_cached(gw: Any, scripted: Any) -> None:
    before = len(scripted.requests_for("/status"))
    for _ in range(2):
        resp = call(gw.port, "GET", "/prod/status?code=500")
        assert resp.status == 500
    assert len(scripted.requests_for("/status")) == before + 2
    before = len(scripted.requests_for("/big"))
    for _ in range(2):
        resp = call(gw.port, "GET", "/prod/big?n=5000")  # over max_item_bytes (4096)
        assert resp.status == 200 and len(resp.body) == 5000
    assert len(scripted.requests_for("/big")) == before + 2
    small = call(gw.port, "GET", "/prod/big?n=100")
    again = call(gw.port, "GET", "/prod/big?n=100")
    assert small.body == again.body
    assert len(scripted.requests_for("/big")) == before + 3


def test_callers_credentials_are_part_of_the_key(gw: Any) -> None:
    anon = seq(call(gw.port, "GET", "/prod/items/9"))
    alice = seq(call(gw.port, "GET", "/prod/items/9", [("Authorization", "Bearer alice")]))
    bob = seq(call(gw.port, "GET", "/prod/items/9", [("Authorization", "Bearer bob")]))
    assert len({anon, alice, bob}) == 3
    assert seq(call(gw.port, "GET", "/prod/items/9", [("Authorization", "Bearer alice")])) == alice
    assert seq(call(gw.port, "GET", "/prod/items/9", [("Cookie", "session=1")])) not in (anon, alice, bob)
    assert seq(call(gw.port, "GET", "/prod/items/9")) == anon


def test_invalidation_without_authorization_requirement_refreshes_the_entry(gw: Any) -> None:
    first = seq(call(gw.port, "GET", "/open/items/5"))
    fresh = seq(call(gw.port, "GET", "/open/items/5", [("Cache-Control", "max-age=0")]))
    assert fresh != first
    assert seq(call(gw.port, "GET", "/open/items/5")) == fresh  # the refreshed entry is stored


def test_unauthorized_invalidation_policies(gw: Any) -> None:
    # SUCCEED_WITH_RESPONSE_HEADER (the default): served from the cache, with a warning.
    first = seq(call(gw.port, "GET", "/prod/items/6"))
    resp = call(gw.port, "GET", "/prod/items/6", [("Cache-Control", "max-age=0")])
    assert seq(resp) == first
    assert "Unauthorized cache invalidation" in (resp.header("warning") or "")
    # SUCCEED_WITHOUT_RESPONSE_HEADER: served from the cache, silently.
    first = seq(call(gw.port, "GET", "/quiet/items/6"))
    resp = call(gw.port, "GET", "/quiet/items/6", [("Cache-Control", "no-cache, max-age=0")])
    assert seq(resp) == first and resp.header("warning") is None
    # FAIL_WITH_403.
    seq(call(gw.port, "GET", "/strict/items/6"))
    resp = call(gw.port, "GET", "/strict/items/6", [("Cache-Control", "max-age=0")])
    assert resp.status == 403
    assert resp.json() == {"message": "Unauthorized"}


def test_admin_flush_and_purge_reach_the_workers(gw: Any) -> None:
    a = seq(call(gw.port, "GET", "/prod/items/7"))
    b = seq(call(gw.port, "GET", "/prod/items/8"))
    p = seq(call(gw.port, "GET", "/prod/plain"))
    admin_call(gw, "POST", "/restapis/cachey1/stages/prod/cache/purge", {"path": "/items", "prefix": True})
    assert wait_for(lambda: seq(call(gw.port, "GET", "/prod/items/7")) != a, 3.0)
    assert seq(call(gw.port, "GET", "/prod/items/8")) != b
    assert seq(call(gw.port, "GET", "/prod/plain")) == p  # outside the prefix
    admin_call(gw, "DELETE", "/restapis/cachey1/stages/prod/cache/data")
    assert wait_for(lambda: seq(call(gw.port, "GET", "/prod/plain")) != p, 3.0)


def test_two_gateways_share_the_redis_cache(
    gateway_factory: GatewayFactory, scripted: Any, redis_url: str
) -> None:
    cfg = config(scripted.port, backend="redis", redis_url=redis_url)
    one = gateway_factory(cfg)
    two = gateway_factory(cfg)
    first = seq(call(one.port, "GET", "/prod/items/42"))
    # Generous deadlines: met in well under a second, but the suite's load once stretched it
    # past 3 s (wait_for returns as soon as the condition holds).
    assert wait_for(lambda: seq(call(two.port, "GET", "/prod/items/42")) == first, 10.0)
    admin_call(one, "DELETE", "/restapis/cachey1/stages/prod/cache/data")
    assert wait_for(lambda: seq(call(two.port, "GET", "/prod/items/42")) != first, 10.0)


def test_keyed_routes_with_the_redis_traffic_backend_still_hit_the_cache(
    gateway_factory: GatewayFactory, scripted: Any, redis_url: str
) -> None:
    # The traffic gate waits for Redis on these requests, so the protocol's head-time cache
    # lookup cannot run then: it must run once the gate has answered.
    cfg = config(scripted.port, redis_url=redis_url)  # memory cache, Redis traffic state
    cfg["apis"][0]["routes"][1]["apiKeyRequired"] = True  # GET /plain
    key = "cache-key-value-0123456789abcdef"
    cfg["apiKeys"] = [{"name": "k", "value": key}]
    cfg["usagePlans"] = [
        {
            "name": "p",
            "apiStages": [{"apiId": "cachey1", "stage": "prod"}],
            "throttle": {"rateLimit": 1000, "burstLimit": 1000},
            "keys": ["k"],
        }
    ]
    gw = gateway_factory(cfg)
    before = len(scripted.requests_for("/plain"))
    with RawConn(gw.port) as c:
        got = [c.request("GET", "/prod/plain", headers=[("x-api-key", key)]) for _ in range(4)]
    assert {seq(r) for r in got} == {seq(got[0])}
    assert len(scripted.requests_for("/plain")) == before + 1

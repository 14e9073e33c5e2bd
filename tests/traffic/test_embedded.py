"""Throttling, API keys, usage plans and quotas on one node (the embedded backend), from outside.

Gateways are real processes; the limits are checked by what clients receive: 429
``{"message":"Too Many Requests"}`` / ``{"message":"Limit Exceeded"}`` and 403 ``Forbidden``,
exactly as AWS API Gateway sends them, and the number of admitted requests against rate·T + burst.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn, get, wait_for
from helpers import admin_call as admin

from .loadgen import drive, request_bytes

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-0123456789abcdef"
FORBIDDEN = b'{"message":"Forbidden"}'
TOO_MANY = b'{"message":"Too Many Requests"}'
LIMIT = b'{"message":"Limit Exceeded"}'


def mock(body: str) -> dict[str, Any]:
    return {"type": "MOCK", "status": 200, "headers": {"content-type": "text/plain"}, "body": body}


def config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "gateway": {"limits": {"drain_timeout": 2.0}},
        "apis": [
            {
                "name": "shop",
                "id": "shopid",
                "routes": [
                    {"route": "GET /free", "integration": mock("free")},
                    {"route": "GET /slow", "integration": mock("slow")},
                    {"route": "GET /keyed", "integration": mock("keyed"), "apiKeyRequired": True},
                    {"route": "GET /keyed/{id}", "integration": mock("item"), "apiKeyRequired": True},
                ],
                "stages": [
                    {
                        "name": "prod",
                        "throttle": {"rateLimit": 1000, "burstLimit": 1000},
                        "route_throttle": {"GET /slow": {"rateLimit": 1, "burstLimit": 3}},
                    },
                    {"name": "dev"},
                ],
            }
        ],
        "apiKeys": [{"name": "a", "value": KEY_A}, {"name": "b", "value": KEY_B}],
        "usagePlans": [
            {
                "name": "basic",
                "apiStages": [
                    {
                        "apiId": "shop",
                        "stage": "prod",
                        "throttle": {"/keyed/{id}/GET": {"rateLimit": 1, "burstLimit": 1}},
                    }
                ],
                "throttle": {"rateLimit": 1, "burstLimit": 4},
                "quota": {"limit": 6, "period": "DAY"},
                "keys": ["a"],
            },
            {"name": "gold", "apiStages": [{"apiId": "shopid", "stage": "prod"}], "keys": ["b"]},
            {
                "name": "devplan",
                "apiStages": [{"apiId": "shop", "stage": "dev"}],
                "throttle": {"rateLimit": 1, "burstLimit": 2},
                "keys": ["a"],
            },
        ],
    }
    cfg.update(over)
    return cfg


def statuses(port: int, path: str, n: int, headers: dict[str, str] | None = None) -> list[tuple[int, bytes]]:
    out = []
    with RawConn(port) as c:
        for _ in range(n):
            r = c.request("GET", path, headers=list((headers or {}).items()))
            out.append((r.status, r.body))
    return out


@pytest.mark.timeout(60)
def test_route_limit_of_a_stage_with_aws_429(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config())
    got = statuses(gw.port, "/prod/slow", 6)
    assert [s for s, _ in got[:3]] == [200, 200, 200]
    assert got[3] == (429, TOO_MANY)
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/slow")
    assert r.status == 429
    assert r.header("x-amzn-ErrorType") == "TooManyRequestsException"
    assert r.header("x-amzn-RequestId")
    assert r.header("retry-after") is None  # off by default, as AWS
    # Other routes of the stage have their own buckets; the dev stage has no stage limit.
    assert {s for s, _ in statuses(gw.port, "/prod/free", 20)} == {200}
    assert {s for s, _ in statuses(gw.port, "/dev/slow", 20)} == {200}
    time.sleep(1.1)  # rate 1/s: one more token
    assert statuses(gw.port, "/prod/slow", 2) == [(200, b"slow"), (429, TOO_MANY)]


@pytest.mark.timeout(60)
def test_retry_after_and_ratelimit_headers_when_enabled(gateway_factory: GatewayFactory) -> None:
    cfg = config()
    cfg["gateway"]["throttle_headers"] = True
    gw = gateway_factory(cfg)
    statuses(gw.port, "/prod/slow", 3)
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/slow")
    assert r.status == 429
    assert r.header("retry-after") == "1"
    assert r.header("ratelimit-policy") == "3;w=3"
    assert r.header("ratelimit") == "limit=3, remaining=0, reset=1"


@pytest.mark.timeout(60)
def test_gateway_wide_limit(gateway_factory: GatewayFactory) -> None:
    cfg = config()
    cfg["gateway"]["throttle"] = {"rateLimit": 2, "burstLimit": 5}
    gw = gateway_factory(cfg)
    got = [s for s, _ in statuses(gw.port, "/dev/free", 5)] + [
        s for s, _ in statuses(gw.port, "/prod/free", 3)
    ]
    assert got[:5] == [200] * 5
    assert got[5:] == [429, 429, 429]


@pytest.mark.timeout(60)
def test_api_key_required(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config())
    assert statuses(gw.port, "/prod/keyed", 1) == [(403, FORBIDDEN)]
    assert statuses(gw.port, "/prod/keyed", 1, {"x-api-key": "not-a-key-0123456789abc"}) == [(403, FORBIDDEN)]
    assert statuses(gw.port, "/prod/keyed", 1, {"x-api-key": KEY_A}) == [(200, b"keyed")]
    assert statuses(gw.port, "/prod/keyed", 1, {"X-API-Key": KEY_B}) == [(200, b"keyed")]
    # Key b is in no plan of the dev stage; key a is, in another plan than on prod, with its limits.
    assert statuses(gw.port, "/dev/keyed", 1, {"x-api-key": KEY_B}) == [(403, FORBIDDEN)]
    got = statuses(gw.port, "/dev/keyed", 3, {"x-api-key": KEY_A})
    assert [s for s, _ in got] == [200, 200, 429]
    # Repeated, oversized, non-ASCII key headers are refused cleanly, and the connection serves on.
    with RawConn(gw.port) as c:
        for extra in (
            b"x-api-key: " + KEY_B.encode() + b"\r\nx-api-key: " + KEY_B.encode() + b"\r\n",
            b"x-api-key: " + b"k" * 5000 + b"\r\n",
            b"x-api-key: " + KEY_B.encode()[:-2] + b"\xc3\xa9\r\n",
            b"x-api-key: \r\n",
        ):
            c.send(b"GET /prod/keyed HTTP/1.1\r\nhost: gw.test\r\n" + extra + b"\r\n")
            r = c.read_response()
            assert (r.status, r.body) == (403, FORBIDDEN), extra[:40]
            assert r.header("x-amzn-ErrorType") == "ForbiddenException"
        assert c.request("GET", "/prod/keyed", headers=[("x-api-key", KEY_B)]).status == 200
    # A key does not open routes that do not require one any differently.
    assert statuses(gw.port, "/prod/free", 1, {"x-api-key": "junk"}) == [(200, b"free")]


@pytest.mark.timeout(60)
def test_usage_plan_throttle_method_override_and_quota(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config())
    h = {"x-api-key": KEY_A}
    # Per-method override inside the plan: /keyed/{id} GET has burst 1, and its own bucket.
    assert [s for s, _ in statuses(gw.port, "/prod/keyed/1", 2, h)] == [200, 429]
    # The plan's own bucket (burst 4) for the other methods.
    got = statuses(gw.port, "/prod/keyed", 5, h)
    assert [s for s, _ in got] == [200, 200, 200, 200, 429]
    # Key b (plan without limits) is not affected by key a's buckets.
    assert {s for s, _ in statuses(gw.port, "/prod/keyed", 10, {"x-api-key": KEY_B})} == {200}
    # Quota: 6 a day; 5 were counted (1 + 4 admitted). One more, then Limit Exceeded.
    time.sleep(1.05)
    assert statuses(gw.port, "/prod/keyed", 1, h) == [(200, b"keyed")]
    time.sleep(1.05)
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/keyed", headers=[("x-api-key", KEY_A)])
    assert (r.status, r.body) == (429, LIMIT)
    assert r.header("x-amzn-ErrorType") == "LimitExceededException"


@pytest.mark.timeout(90)
def test_quota_survives_restart(gateway_factory: GatewayFactory, tmp_path: Any) -> None:
    cfg = config()
    cfg["usagePlans"][0]["throttle"] = {"rateLimit": 100, "burstLimit": 100}
    cfg["usagePlans"][0]["apiStages"][0]["throttle"] = {}
    gw = gateway_factory(cfg)
    h = {"x-api-key": KEY_A}
    assert [s for s, _ in statuses(gw.port, "/prod/keyed", 4, h)] == [200] * 4
    # Usage is visible through the admin API (AWS GetUsage shape) once flushed (every second).
    plans = admin(gw, "GET", "/usageplans")["items"]
    plan = next(p for p in plans if p["name"] == "basic")
    keys = admin(gw, "GET", f"/usageplans/{plan['id']}/keys")["items"]
    key_id = keys[0]["id"]
    today = time.strftime("%Y-%m-%d", time.gmtime())

    def usage() -> Any:
        return admin(
            gw, "GET", f"/usageplans/{plan['id']}/usage?keyId={key_id}&startDate={today}&endDate={today}"
        )

    assert wait_for(lambda: usage()["items"].get(key_id) == [[4, 2]], 5.0), usage()
    assert gw.stop() == 0
    gw2 = gateway_factory(cfg, state_path=gw.state_path)
    got = [s for s, _ in statuses(gw2.port, "/prod/keyed", 3, h)]
    assert got == [200, 200, 429]


@pytest.mark.timeout(90)
def test_one_limit_for_the_node_whatever_the_workers(gateway_factory: GatewayFactory) -> None:
    cfg = config()
    cfg["apis"][0]["stages"][1]["throttle"] = {"rateLimit": 40, "burstLimit": 20}
    gw = gateway_factory(cfg, workers=2)
    seconds = 3.0
    counts = drive([(gw.port, request_bytes("/dev/free"))], rate=160, seconds=seconds, conns_per_target=16)
    admitted = counts[200]
    expected = 40 * seconds + 20
    # Split per worker, 2 workers would admit about twice as much.
    assert expected * 0.9 <= admitted <= expected * 1.08, counts
    assert counts[429] > 0


@pytest.mark.timeout(90)
def test_admin_changes_reach_every_worker_within_a_second(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config(), workers=2)
    created = admin(gw, "POST", "/apikeys", {"name": "late"})
    value = created["value"]
    plans = admin(gw, "GET", "/usageplans")["items"]
    gold = next(p for p in plans if p["name"] == "gold")
    admin(gw, "POST", f"/usageplans/{gold['id']}/keys", {"keyId": created["id"], "keyType": "API_KEY"})

    def all_status(expected: int) -> bool:
        # New connections until both workers have answered (a worker's request ids share a
        # 24-character prefix): eight tries could all land on one worker by chance.
        if get(gw.port, "/prod/keyed").status != 403:
            return False
        seen: set[str] = set()
        for _ in range(64):
            with RawConn(gw.port) as c:
                r = c.request("GET", "/prod/keyed", headers=[("x-api-key", value)])
            if r.status != expected:
                return False
            seen.add((r.header("x-amzn-RequestId") or "")[:24])
            if len(seen) == 2:
                return True
        raise AssertionError(f"64 connections reached only {seen}")

    def seconds_until(expected: int, timeout: float = 3.0) -> float:
        """Seconds from now to the start of the first check that saw ``expected`` everywhere."""
        t0 = time.monotonic()
        while True:
            started = time.monotonic()
            if all_status(expected):
                return started - t0
            assert started - t0 < timeout, f"still not {expected} after {timeout} s"
            time.sleep(0.02)

    assert seconds_until(200) < 1.1
    # A keep-alive client that keeps sending the key (its worker caches the lookup per
    # connection) is refused too once the key is disabled.
    with RawConn(gw.port) as kept:
        assert kept.request("GET", "/prod/keyed", headers=[("x-api-key", value)]).status == 200
        disable = {"patchOperations": [{"op": "replace", "path": "/enabled", "value": "false"}]}
        admin(gw, "PATCH", f"/apikeys/{created['id']}", disable)
        assert seconds_until(403) < 1.1
        assert kept.request("GET", "/prod/keyed", headers=[("x-api-key", value)]).status == 403
        # And an enabled key sent on the same connection after another one is looked up anew.
        assert kept.request("GET", "/prod/keyed", headers=[("x-api-key", KEY_B)]).status == 200


@pytest.mark.timeout(60)
def test_usage_of_a_plan_without_quota_is_counted(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config(), workers=2)
    for _ in range(3):  # separate connections: both workers count into the node's counter
        assert statuses(gw.port, "/prod/keyed", 2, {"x-api-key": KEY_B}) == [(200, b"keyed")] * 2
    gold = next(p for p in admin(gw, "GET", "/usageplans")["items"] if p["name"] == "gold")
    key_id = admin(gw, "GET", f"/usageplans/{gold['id']}/keys")["items"][0]["id"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    query = f"keyId={key_id}&startDate={today}&endDate={today}"

    def used() -> Any:
        return admin(gw, "GET", f"/usageplans/{gold['id']}/usage?{query}")["items"].get(key_id)

    assert wait_for(lambda: used() == [[6, None]], 5.0), used()


@pytest.mark.timeout(60)
def test_quota_refusals_take_no_tokens(gateway_factory: GatewayFactory) -> None:
    cfg = config()
    # The dev stage's route limit is shared by every client: burst 3, one token every 10 s.
    cfg["apis"][0]["stages"][1]["throttle"] = {"rateLimit": 0.1, "burstLimit": 3}
    cfg["usagePlans"][2]["throttle"] = None
    cfg["usagePlans"][2]["quota"] = {"limit": 1, "period": "DAY"}
    cfg["usagePlans"][2]["keys"] = ["a"]
    cfg["usagePlans"].append(
        {"name": "devgold", "apiStages": [{"apiId": "shop", "stage": "dev"}], "keys": ["b"]}
    )
    gw = gateway_factory(cfg)
    got = statuses(gw.port, "/dev/keyed", 6, {"x-api-key": KEY_A})
    assert got[0] == (200, b"keyed")
    assert got[1:] == [(429, LIMIT)] * 5
    # Key a's refused requests left the shared route bucket alone: 2 tokens remain for b.
    got = statuses(gw.port, "/dev/keyed", 3, {"x-api-key": KEY_B})
    assert got == [(200, b"keyed"), (200, b"keyed"), (429, TOO_MANY)]

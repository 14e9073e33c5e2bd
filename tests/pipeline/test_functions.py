"""Functions behind the gateway, end to end: a real gateway process, real sockets.

Handlers live in ``tests.pipeline.handlers``; the gateway imports them as configured. What is
checked is what a client sees (status, headers, body) and what the handler saw (the event and
the context, echoed back).
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn

H = "tests.pipeline.handlers"


def fn(handler: str, **kw: Any) -> dict[str, Any]:
    return {"handler": f"{H}:{handler}", **kw}


def aws_proxy(name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "AWS_PROXY", "uri": name, **kw}


ARN = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:{}/invocations"
)

CONFIG: dict[str, Any] = {
    "functions": {
        "echo": fn("echo", environment={"GREETING": "hi"}, memory_mb=256),
        "echo_async": fn("echo_async"),
        "boom": fn("boom"),
        "malformed": fn("malformed"),
        "slow": fn("slow", timeout_ms=300),
        "slow_async": fn("slow_async", timeout_ms=300),
        "slow_pool": fn("slow_async", timeout_ms=2000, max_concurrency=2),
        "binary": fn("binary"),
        "infer": fn("infer"),
        "inline": fn("echo", executor="inline"),
    },
    "apis": [
        {
            "name": "fnapi",
            "id": "fnapi00001",
            "binaryMediaTypes": ["application/octet-stream"],
            "routes": [
                {"route": "GET /echo/{id}", "integration": aws_proxy(ARN.format("echo"))},
                {
                    "route": "ANY /async/{proxy+}",
                    "integration": aws_proxy("arn:aws:lambda:us-east-1:123456789012:function:echo_async"),
                },
                {"route": "GET /boom", "integration": aws_proxy("boom")},
                {"route": "GET /malformed", "integration": aws_proxy("malformed")},
                {"route": "GET /slow", "integration": aws_proxy("slow")},
                {"route": "GET /slow-async", "integration": aws_proxy("slow_async")},
                {"route": "GET /pool", "integration": aws_proxy("slow_pool")},
                {"route": "POST /binary", "integration": aws_proxy("binary")},
                {"route": "GET /inline", "integration": aws_proxy("inline")},
                {"route": "GET /staged", "integration": aws_proxy("${stageVariables.fn}")},
            ],
            "stages": [{"name": "prod", "variables": {"fn": "echo_async"}}],
        },
        {
            "name": "httpapi",
            "kind": "http",
            "routes": [
                {"route": "GET /v2/{id}", "integration": aws_proxy("echo")},
                {"route": "GET /v1", "integration": aws_proxy("echo", payloadFormatVersion="1.0")},
                {"route": "$default", "integration": aws_proxy("infer")},
            ],
            "stages": [{"name": "$default"}],
        },
    ],
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, kernel_build: str) -> Any:
    # Both builds of the protocol (compiled and pure Python) hand requests to pipelines.
    return module_gateway_factory(CONFIG, workers=1, no_extensions=kernel_build == "python")


def request(
    port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Any:
    with RawConn(port) as c:
        return c.request(method, target, headers=list((headers or {}).items()), body=body)


def test_rest_v1_event_and_context(gw: Any) -> None:
    r = request(gw.port, "GET", "/prod/echo/42?a=1&a=2&b=x%20y", {"X-Multi": "one", "Cookie": "c=1"})
    assert r.status == 200, r.body
    assert r.header("x-handler") == "echo"
    assert r.header_all("set-cookie") == ["a=1", "b=2"]
    assert r.header("x-amzn-RequestId")
    data = r.json()
    ev = data["event"]
    assert ev["resource"] == "/echo/{id}"
    assert ev["path"] == "/echo/42"
    assert ev["httpMethod"] == "GET"
    assert ev["pathParameters"] == {"id": "42"}
    assert ev["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert ev["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert ev["headers"]["X-Multi"] == "one"
    assert ev["multiValueHeaders"]["X-Multi"] == ["one"]
    assert ev["headers"]["Host"] == "gw.test"
    assert ev["stageVariables"] == {"fn": "echo_async"}
    assert ev["body"] is None and ev["isBase64Encoded"] is False
    rc = ev["requestContext"]
    assert rc["stage"] == "prod" and rc["apiId"] == "fnapi00001"
    assert rc["resourcePath"] == "/echo/{id}" and rc["httpMethod"] == "GET"
    assert rc["path"] == "/prod/echo/42"
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["requestId"] == r.header("x-amzn-RequestId")
    assert abs(rc["requestTimeEpoch"] - time.time() * 1000) < 60_000
    ctx = data["context"]
    assert ctx["function_name"] == "echo"
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:echo"
    assert ctx["log_group_name"] == "/aws/lambda/echo"
    assert len(ctx["aws_request_id"]) == 36
    assert 0 < ctx["remaining"] <= 3000
    assert ctx["thread"].startswith("fastgw-fn")  # a sync handler runs in the worker's pool
    assert ctx["env"] == "hi"


def test_async_handler_and_body(gw: Any) -> None:
    r = request(gw.port, "POST", "/prod/async/a/b", {"content-type": "application/json"}, b'{"x": 1}')
    assert r.status == 201
    ev = r.json()["event"]
    assert ev["resource"] == "/async/{proxy+}"
    assert ev["pathParameters"] == {"proxy": "a/b"}
    assert ev["body"] == '{"x": 1}' and ev["isBase64Encoded"] is False
    assert r.json()["context"]["thread"] == "MainThread"  # async: on the worker's loop


def test_stage_variable_function(gw: Any) -> None:
    r = request(gw.port, "GET", "/prod/staged")
    assert r.status == 201 and r.json()["context"]["function_name"] == "echo_async"


def test_inline_sync_handler(gw: Any) -> None:
    r = request(gw.port, "GET", "/prod/inline/")
    assert r.status == 200 and r.json()["context"]["thread"] == "MainThread"


@pytest.mark.parametrize("path", ["/prod/boom", "/prod/malformed"])
def test_handler_errors_are_502(gw: Any, path: str) -> None:
    r = request(gw.port, "GET", path)
    assert r.status == 502
    assert r.body == b'{"message": "Internal server error"}'
    assert r.header("x-amzn-ErrorType") == "InternalServerErrorException"
    # The connection and the worker carry on.
    assert request(gw.port, "GET", "/prod/echo/1").status == 200


@pytest.mark.parametrize("path", ["/prod/slow?s=2", "/prod/slow-async?s=2"])
def test_timeout_504_without_blocking_others(gw: Any, path: str) -> None:
    out: dict[str, Any] = {}

    def slow_call() -> None:
        t0 = time.monotonic()
        out["r"] = request(gw.port, "GET", path)
        out["t"] = time.monotonic() - t0

    th = threading.Thread(target=slow_call)
    th.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    fast = request(gw.port, "GET", "/prod/echo/2")
    fast_t = time.monotonic() - t0
    th.join(5)
    assert fast.status == 200 and fast_t < 0.25
    assert out["r"].status == 504
    assert out["r"].body == b'{"message": "Endpoint request timed out"}'
    assert out["t"] < 1.0


def test_max_concurrency_bounds_and_queues(gw: Any) -> None:
    # 2 slots, each call 0.3 s: 4 concurrent calls take two rounds, all succeed.
    results: list[tuple[int, float]] = []
    t0 = time.monotonic()

    def call() -> None:
        r = request(gw.port, "GET", "/prod/pool?s=0.3")
        results.append((r.status, time.monotonic() - t0))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    assert sorted(s for s, _ in results) == [200] * 4
    times = sorted(t for _, t in results)
    assert times[1] < 0.55 and times[3] >= 0.55


def test_binary_round_trip(gw: Any) -> None:
    payload = bytes(range(256)) * 4
    # REST (AWS): a base64 response body is decoded when the client Accepts a binary media type.
    headers = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}
    r = request(gw.port, "POST", "/prod/binary", headers, payload)
    assert r.status == 200
    assert r.body == payload[::-1]
    # Without such an Accept, the client gets the base64 text, as from AWS.
    r = request(gw.port, "POST", "/prod/binary", {"content-type": "application/octet-stream"}, payload)
    assert base64.b64decode(r.body) == payload[::-1]


def test_http_api_v2_event(gw: Any) -> None:
    r = request(gw.port, "GET", "/v2/7?x=1&x=2", {"Cookie": "a=1; b=2", "X-Two": "p"})
    assert r.status == 200
    ev = r.json()["event"]
    assert ev["version"] == "2.0"
    assert ev["routeKey"] == "GET /v2/{id}"
    assert ev["rawPath"] == "/v2/7" and ev["rawQueryString"] == "x=1&x=2"
    assert ev["queryStringParameters"] == {"x": "1,2"}
    assert ev["cookies"] == ["a=1", "b=2"]
    assert ev["headers"]["x-two"] == "p" and "cookie" not in ev["headers"]
    assert ev["pathParameters"] == {"id": "7"}
    assert ev["requestContext"]["http"]["method"] == "GET"
    assert ev["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert ev["requestContext"]["stage"] == "$default"


def test_http_api_v1_event(gw: Any) -> None:
    ev = request(gw.port, "GET", "/v1").json()["event"]
    assert ev["version"] == "1.0" and ev["httpMethod"] == "GET" and ev["path"] == "/v1"


def test_http_api_v2_inferred_response(gw: Any) -> None:
    r = request(gw.port, "GET", "/anything/here")
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.json() == {"hello": "inferred", "path": "/anything/here"}


def test_concurrent_sync_and_async_load(gw: Any) -> None:
    """Many clients at once on sync (pool) and async handlers: every answer is right."""
    errors: list[str] = []

    def client(i: int) -> None:
        try:
            with RawConn(gw.port) as c:
                for j in range(20):
                    path = f"/prod/echo/{i}-{j}" if j % 2 else f"/prod/async/{i}/{j}"
                    r = c.request("GET", path)
                    ev = r.json()["event"]
                    want = {"id": f"{i}-{j}"} if j % 2 else {"proxy": f"{i}/{j}"}
                    if ev["pathParameters"] != want:
                        errors.append(f"{path}: {ev['pathParameters']}")
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(repr(ex))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []


def test_head_and_keepalive(gw: Any) -> None:
    with RawConn(gw.port) as c:
        for _ in range(3):
            r = c.request("GET", "/prod/echo/1")
            assert r.status == 200
        assert not c.is_closed(0.1)


def test_bad_function_config_is_rejected(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = {
        "functions": {"f": {"handler": "tests.pipeline.handlers:nope"}, "g": {"handler": "no_such_mod.x"}},
        "apis": [
            {
                "name": "a",
                "routes": [
                    {"route": "GET /x", "integration": aws_proxy("missing")},
                    {"route": "GET /y", "integration": aws_proxy("f", payloadFormatVersion="2.0")},
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "$.functions.f.handler" in text and "has no attribute 'nope'" in text
    assert "$.functions.g.handler" in text and "no_such_mod" in text
    assert "$.apis[0].routes[0].integration.uri" in text
    assert "$.apis[0].routes[1].integration.payloadFormatVersion" in text

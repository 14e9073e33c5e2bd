"""The REST pipeline's edges, end to end (found by review): mapped values never break the
upstream request line; cache hits answered in the protocol never skip access plugins,
validation or headers the protocol does not keep; buffered upstream responses are bounded in
size and time; the pipeline keeps its deadline after a buffered exchange; headers named by the
upstream's ``Connection`` do not reach the client; customised gateway responses are not served
stale."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn
from helpers import upstream_response_id as seq

pytestmark = pytest.mark.timeout(60)

H = "tests.pipeline.handlers"


def proxy(port: int, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}{path}", **extra}


def config(port: int) -> dict[str, Any]:
    rest = {
        "name": "hard",
        "id": "hard1",
        "routes": [
            {
                "route": "GET /mapped",
                "integration": proxy(
                    port,
                    "/r/{uid}",
                    requestParameters={"integration.request.path.uid": "method.request.header.X-Uid"},
                ),
            },
            {
                "route": "GET /retarget/{proxy+}",
                "integration": proxy(port, "/t/{proxy}"),
                "plugins": [{"name": "test-retarget"}],
            },
            {
                "route": "GET /upper/{proxy+}",
                "integration": proxy(port, "/t/{proxy}"),
                "plugins": [{"name": "test-upper-param"}],
            },
            {
                "route": "GET /guarded",
                "integration": proxy(port, "/guarded"),
                "plugins": [{"name": "test-waf"}],
            },
            {
                "route": "GET /validated",
                "integration": proxy(port, "/validated"),
                "requestParameters": {"method.request.querystring.lang": True},
                "requestValidator": "params",
            },
            {
                "route": "GET /byhost",
                "integration": proxy(port, "/byhost"),
                "cacheKeyParameters": ["method.request.header.Host"],
            },
            {
                # Buffered (the response is mapped), so the whole response is collected.
                "route": "GET /buffered/{name}",
                "integration": proxy(
                    port,
                    "/{name}",
                    timeout_ms=1000,
                    requestParameters={"integration.request.path.name": "method.request.path.name"},
                ),
                "plugins": [{"name": "test-trace", "config": {"tag": "b"}}],
                "cacheKeyParameters": ["method.request.path.name", "method.request.querystring.n"],
            },
            {
                "route": "GET /stalled",
                "integration": proxy(port, "/stalled", timeout_ms=500),
                "plugins": [{"name": "test-stall"}],
            },
        ],
        "requestValidators": {"params": {"validateRequestBody": False, "validateRequestParameters": True}},
        "gatewayResponses": {
            "DEFAULT_4XX": {"responseParameters": {"gatewayresponse.header.X-Gw": "'custom'"}}
        },
        "stages": [
            {
                "name": "prod",
                "cache": {"ttl_seconds": 60},
                "route_cache": {"GET /upper/{proxy+}": {"enabled": False}},
            }
        ],
    }
    http = {
        "name": "hardhttp",
        "id": "hardhttp1",
        "kind": "http",
        "routes": [
            {
                "route": "GET /p",
                "integration": proxy(
                    port, "/ignored", parameterMapping={"overwrite:path": "$request.header.x-path"}
                ),
            }
        ],
        "stages": [{"name": "$default"}],
    }
    return {"plugin_modules": [H], "apis": [rest, http]}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, scripted: Any) -> Any:
    return module_gateway_factory(config(scripted.port))


def call(port: int, target: str, headers: list[tuple[str, str]] | None = None, host: str = "gw.test") -> Any:
    with RawConn(port) as c:
        return c.request("GET", target, headers=headers or [], host=host)


def test_a_plugin_editing_path_parameters_edits_only_its_request(gw: Any) -> None:
    """The protocol remembers each path's route match (its parameters included) for the next
    request of that path: a plugin that changes ``req.params`` in place changes its own
    request's copy, never what the next request of the same path gets."""
    with RawConn(gw.port) as c:
        for upper in (True, False, True, False):
            headers = [("X-Upper", "1")] if upper else []
            resp = c.request("GET", "/prod/upper/abc", headers=headers)
            assert resp.status == 200
            assert resp.json()["target"] == ("/t/ABC" if upper else "/t/abc")


def test_mapped_path_values_are_percent_encoded_in_the_request_line(gw: Any, scripted: Any) -> None:
    resp = call(gw.port, "/prod/mapped", [("X-Uid", "a b HTTP/1.1?x=1#f")])
    assert resp.status == 200
    assert resp.json()["target"] == "/r/a%20b%20HTTP/1.1%3Fx=1%23f"
    # Already-encoded text is kept as it is, and an HTTP API's overwritten path too.
    resp = call(gw.port, "/p", [("x-path", "/v 1/ü?q")], host="hardhttp1.execute-api.local")
    assert resp.status == 200
    assert resp.json()["target"] == "/v%201/%C3%BC%3Fq"
    assert not scripted.requests_for(" ")


def test_a_plugin_cannot_put_a_space_in_the_upstream_request_line(gw: Any, scripted: Any) -> None:
    before = len(scripted.requests)
    resp = call(gw.port, "/prod/retarget/x", [("X-Target", "a HTTP/1.1\tb")])
    assert resp.status == 500
    assert resp.json() == {"message": "Internal server error"}
    assert len(scripted.requests) == before
    ok = call(gw.port, "/prod/retarget/x", [("X-Target", "fine")])
    assert ok.json()["target"] == "/t/fine"


def test_cache_hits_still_pass_access_plugins(gw: Any) -> None:
    first = seq(call(gw.port, "/prod/guarded"))
    assert seq(call(gw.port, "/prod/guarded")) == first  # cached
    refused = call(gw.port, "/prod/guarded?attack")  # same key (the query is not declared)
    assert refused.status == 403
    assert refused.header("x-amzn-ErrorType") == "WAFFilteredException"


def test_cache_hits_still_pass_validation(gw: Any) -> None:
    first = seq(call(gw.port, "/prod/validated?lang=en"))
    assert seq(call(gw.port, "/prod/validated?lang=fr")) == first  # lang is not part of the key
    missing = call(gw.port, "/prod/validated")
    assert missing.status == 400
    assert missing.json() == {"message": "Missing required request parameters: [lang]"}


def test_a_host_cache_key_parameter_keys_on_the_host(gw: Any) -> None:
    a = seq(call(gw.port, "/prod/byhost", host="a.test"))
    b = seq(call(gw.port, "/prod/byhost", host="b.test"))
    assert a != b
    assert seq(call(gw.port, "/prod/byhost", host="a.test")) == a


def test_buffered_responses_over_10_mb_become_502(gw: Any) -> None:
    with RawConn(gw.port, timeout=20) as c:
        resp = c.request("GET", "/prod/buffered/big?n=11000000")
        assert resp.status == 502
        assert resp.json() == {"message": "Internal server error"}
        # The connection goes on serving.
        ok = c.request("GET", "/prod/buffered/big?n=1000")
        assert ok.status == 200 and len(ok.body) == 1000


def test_the_integration_timeout_bounds_the_whole_buffered_response(gw: Any) -> None:
    # hang-body sends 10 bytes of 100 and then nothing: 504 after the 1 s integration timeout.
    t0 = time.monotonic()
    resp = call(gw.port, "/prod/buffered/hang-body")
    assert resp.status == 504
    assert time.monotonic() - t0 < 4.0


def test_the_pipeline_deadline_holds_after_a_buffered_exchange(gw: Any) -> None:
    # The response plugin sleeps 30 s; the pipeline's deadline (5 s + the 0.5 s integration
    # timeout) ends it.
    t0 = time.monotonic()
    with RawConn(gw.port, timeout=20) as c:
        resp = c.request("GET", "/prod/stalled")
    assert resp.status == 504
    assert 4.0 < time.monotonic() - t0 < 9.0


def test_headers_named_by_the_upstream_connection_header_are_dropped(gw: Any) -> None:
    resp = call(gw.port, "/prod/buffered/headers")
    assert resp.status == 200
    assert resp.header("x-hop") is None
    assert resp.header("X-Upstream") == "kept"
    assert resp.header("x-trace") == "b:rewrite,b:access,b:response"


def test_customised_gateway_responses_keep_each_error_its_own_body(gw: Any) -> None:
    bodies = set()
    for target in ("/prod/validated", "/prod/guarded?attack", "/prod/nowhere"):
        resp = call(gw.port, target)
        assert resp.header("X-Gw") == "custom"
        bodies.add(resp.body)
    assert len(bodies) == 3

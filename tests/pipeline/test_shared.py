"""Pieces that cross process and node boundaries: remote functions behind the Lambda Invoke API,
authorizer decisions shared by two nodes through Redis, plugins found through entry points."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from functions.rie import RieServer
from helpers import REPO, GatewayFactory, RawConn

H = "tests.pipeline.handlers"


def remote_handler(event: dict[str, Any], context: Any) -> Any:
    if event["path"] == "/raise":
        raise KeyError("missing")
    if event["path"] == "/sleep":
        time.sleep(1.5)
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"path": event["path"], "rid": context.aws_request_id}),
    }


def get(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    with RawConn(port) as c:
        return c.request("GET", target, headers=headers or [])


def test_remote_function_through_the_invoke_api(gateway_factory: GatewayFactory) -> None:
    with RieServer(remote_handler, timeout=1.0) as url:
        gw = gateway_factory(
            {
                "functions": {"remote": {"url": url, "timeout_ms": 3000}},
                "apis": [
                    {
                        "name": "r",
                        "routes": [
                            {"route": "ANY /{proxy+}", "integration": {"type": "AWS_PROXY", "uri": "remote"}}
                        ],
                        "stages": [{"name": "prod"}],
                    }
                ],
            }
        )
        r = get(gw.port, "/prod/hello")
        assert r.status == 200
        body = r.json()
        assert body["path"] == "/hello"
        # The gateway's request id is the invocation id (RIE reads X-Amzn-RequestId).
        assert body["rid"] == r.header("x-amzn-RequestId")
        r = get(gw.port, "/prod/raise")
        assert r.status == 502 and r.body == b'{"message": "Internal server error"}'
        t0 = time.monotonic()
        r = get(gw.port, "/prod/sleep")  # RIE's own 1 s timeout answers first
        assert r.status == 504 and time.monotonic() - t0 < 2.5
    # The endpoint gone: 502, never a hang.
    r = get(gw.port, "/prod/hello")
    assert r.status == 502


def _nodes_config(url: str) -> dict[str, Any]:
    return {
        "gateway": {"state": {"backend": "redis", "redis": {"url": url}}},
        "functions": {"authz": {"handler": f"{H}:token_authorizer"}},
        "apis": [
            {
                "name": "n",
                "authorizers": [
                    {
                        "name": "tok",
                        "type": "TOKEN",
                        "authorizerUri": "authz",
                        "identitySource": "method.request.header.Authorization",
                    }
                ],
                "routes": [
                    {"route": "GET /x", "integration": {"type": "MOCK", "body": "{}"}, "authorizer": "tok"}
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }


@pytest.mark.timeout(120)
def test_authorizer_decisions_shared_by_nodes_through_redis(
    gateway_factory: GatewayFactory, redis_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    env = {"FASTGW_TEST_CALLS": str(calls)}
    a = gateway_factory(_nodes_config(redis_url), extra_env=env, state_path=tmp_path / "a.db")
    b = gateway_factory(_nodes_config(redis_url), extra_env=env, state_path=tmp_path / "b.db")
    assert get(a.port, "/prod/x", [("Authorization", "allow-nodes")]).status == 200
    for gw in (b, a, b):
        assert get(gw.port, "/prod/x", [("Authorization", "allow-nodes")]).status == 200
    assert calls.read_text().count("token allow-nodes") == 1
    # A decision for another token is its own, and a deny is shared as well.
    for gw in (a, b):
        assert get(gw.port, "/prod/x", [("Authorization", "deny")]).status == 403
    assert calls.read_text().count("token deny") == 1


def test_plugin_from_an_entry_point(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "fastgw_ep_demo-1.0.dist-info").mkdir(parents=True)
    (site / "fastgw_ep_demo-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fastgw-ep-demo\nVersion: 1.0\n"
    )
    (site / "fastgw_ep_demo-1.0.dist-info" / "entry_points.txt").write_text(
        "[fastgw.plugins]\nstamp = fastgw_ep_demo:Stamp\n"
    )
    (site / "fastgw_ep_demo.py").write_text(
        "from fastgw.plugins import Plugin\n\n"
        "class Stamp(Plugin):\n"
        "    name = 'ep-stamp'\n\n"
        "    def response(self, req, resp):\n"
        "        resp.set_header('x-stamp', 'from-entry-point')\n"
    )
    gw = gateway_factory(
        {
            "plugins": [{"name": "ep-stamp"}],
            "apis": [
                {
                    "name": "e",
                    "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "{}"}}],
                    "stages": [{"name": "prod"}],
                }
            ],
        },
        extra_env={"PYTHONPATH": f"{REPO}:{site}"},
    )
    r = get(gw.port, "/prod/x")
    assert r.status == 200 and r.header("x-stamp") == "from-entry-point"


def test_source_ip_behind_trusted_proxies(gateway_factory: GatewayFactory) -> None:
    """The client is the rightmost X-Forwarded-For address that is not a trusted proxy."""
    gw = gateway_factory(
        {
            "gateway": {"trusted_proxies": ["127.0.0.1/32", "10.9.0.0/16"]},
            "functions": {"echo": {"handler": f"{H}:echo"}},
            "apis": [
                {
                    "name": "t",
                    "routes": [{"route": "GET /x", "integration": {"type": "AWS_PROXY", "uri": "echo"}}],
                    "stages": [{"name": "prod"}],
                }
            ],
        }
    )
    r = get(gw.port, "/prod/x", [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.9.1.1")])
    assert r.json()["event"]["requestContext"]["identity"]["sourceIp"] == "203.0.113.7"
    r = get(gw.port, "/prod/x")
    assert r.json()["event"]["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


def test_authorized_proxy_route_streams_through_the_pools(
    gateway_factory: GatewayFactory, echo_server: Any
) -> None:
    """An HTTP_PROXY route behind an authorizer (no response plugin): once admitted, the request
    goes out on the worker's upstream pools like any proxied request."""
    gw = gateway_factory(
        {
            "plugin_modules": [H],
            "functions": {"authz": {"handler": f"{H}:token_authorizer"}},
            "apis": [
                {
                    "name": "p",
                    "authorizers": [
                        {
                            "name": "tok",
                            "type": "TOKEN",
                            "authorizerUri": "authz",
                            "identitySource": "method.request.header.Authorization",
                        }
                    ],
                    "routes": [
                        {
                            "route": "ANY /up/{proxy+}",
                            "integration": {
                                "type": "HTTP_PROXY",
                                "uri": f"http://127.0.0.1:{echo_server.port}/{{proxy}}?fixed=1",
                            },
                            "authorizer": "tok",
                            "plugins": [{"name": "test-early"}],
                        }
                    ],
                    "stages": [{"name": "prod"}],
                }
            ],
        }
    )
    assert get(gw.port, "/prod/up/a").status == 401
    with RawConn(gw.port) as c:
        for i in range(3):
            r = c.request(
                "POST",
                f"/prod/up/x/{i}?q=2",
                headers=[("Authorization", "allow-me"), ("X-Keep", "k")],
                body=b"payload-%d" % i,
            )
            assert r.status == 200, r.body
            seen = r.json()
            assert seen["method"] == "POST" and seen["path"] == f"/x/{i}"
            assert seen["query"] == "fixed=1&q=2"
            assert seen["body"] == f"payload-{i}"
            names = {k.lower(): v for k, v in seen["headers"]}
            assert names["authorization"] == "allow-me" and names["x-keep"] == "k"
            assert names["x-forwarded-for"] == "127.0.0.1"
            assert names["host"] == f"127.0.0.1:{echo_server.port}"


def test_a_slow_answer_after_a_body_gets_no_stray_408(gateway_factory: GatewayFactory) -> None:
    """The body's read deadline ends with the body: a function slower than body_timeout answers
    once, and the connection stays usable."""
    gw = gateway_factory(
        {
            "gateway": {"limits": {"body_timeout": 0.5}},
            "functions": {"slow": {"handler": f"{H}:slow_async", "timeout_ms": 5000}},
            "apis": [
                {
                    "name": "s",
                    "routes": [{"route": "POST /s", "integration": {"type": "AWS_PROXY", "uri": "slow"}}],
                    "stages": [{"name": "prod"}],
                }
            ],
        }
    )
    with RawConn(gw.port, timeout=5.0) as c:
        r = c.request("POST", "/prod/s?s=1.2", body=b"{}")
        assert r.status == 200 and r.body == b"slow async"
        assert not c.is_closed(0.5)  # no 408, no close
        r = c.request("POST", "/prod/s?s=0", body=b"{}")
        assert r.status == 200

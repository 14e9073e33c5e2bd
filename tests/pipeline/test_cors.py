"""HTTP API CORS end to end: preflights answered by the gateway, headers on every response
(integration replies and gateway errors), the backend's own CORS headers replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, GatewayFactory, RawConn

H = "tests.pipeline.handlers"
APP = "https://app.example.com"

CONFIG: dict[str, Any] = {
    "functions": {"echo": {"handler": f"{H}:echo"}, "authz": {"handler": f"{H}:simple_authorizer"}},
    "apis": [
        {
            "name": "web",
            "kind": "http",
            "cors": {
                "allowOrigins": [APP],
                "allowMethods": ["GET", "POST"],
                "allowHeaders": ["content-type", "x-user"],
                "exposeHeaders": ["x-handler"],
                "maxAge": 600,
                "allowCredentials": True,
            },
            "authorizers": [
                {
                    "name": "simple",
                    "type": "REQUEST",
                    "authorizerUri": "authz",
                    "identitySource": ["$request.header.x-user"],
                    "authorizerPayloadFormatVersion": "2.0",
                    "enableSimpleResponses": True,
                }
            ],
            "routes": [
                {"route": "GET /items", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                {
                    "route": "GET /mock",
                    "integration": {
                        "type": "MOCK",
                        "body": "{}",
                        "headers": {"access-control-allow-origin": "*"},
                    },
                },
                {
                    "route": "GET /private",
                    "integration": {"type": "MOCK", "body": "{}"},
                    "authorizer": "simple",
                },
                {"route": "GET /closed", "integration": {"type": "MOCK", "body": "{}"}},
            ],
            "stages": [
                {"name": "$default", "route_throttle": {"GET /closed": {"rateLimit": 0, "burstLimit": 0}}}
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Any:
    return module_gateway_factory(CONFIG)


def call(gw: Any, method: str, target: str, headers: list[tuple[str, str]]) -> Any:
    with RawConn(gw.port) as c:
        return c.request(method, target, headers=headers)


def test_preflight_is_answered_without_an_options_route(gw: Any) -> None:
    r = call(
        gw,
        "OPTIONS",
        "/items",
        [
            ("Origin", APP),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "Content-Type, X-User"),
        ],
    )
    assert r.status == 204 and r.body == b""
    assert r.header("access-control-allow-origin") == APP
    assert r.header("access-control-allow-methods") == "GET,POST"
    assert r.header("access-control-allow-headers") == "content-type,x-user"
    assert r.header("access-control-max-age") == "600"
    assert r.header("access-control-allow-credentials") == "true"


@pytest.mark.parametrize(
    "headers",
    [
        [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
        [("Origin", APP), ("Access-Control-Request-Method", "DELETE")],
        [
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "x-other"),
        ],
    ],
)
def test_refused_preflights_carry_no_cors_headers(gw: Any, headers: list[tuple[str, str]]) -> None:
    r = call(gw, "OPTIONS", "/items", headers)
    assert r.status == 204
    assert r.header("access-control-allow-origin") is None


def test_responses_get_the_headers_and_backend_ones_are_replaced(gw: Any) -> None:
    r = call(gw, "GET", "/items", [("Origin", APP)])
    assert r.status == 200
    assert r.header("access-control-allow-origin") == APP
    assert r.header("access-control-expose-headers") == "x-handler"
    assert r.header("vary") == "Origin"
    r = call(gw, "GET", "/mock", [("Origin", "https://evil.example")])
    assert r.status == 200 and r.header("access-control-allow-origin") is None  # the backend's '*' is gone
    r = call(gw, "GET", "/mock", [("Origin", APP)])
    assert r.header_all("access-control-allow-origin") == [APP]


def test_gateway_errors_get_the_headers_too(gw: Any) -> None:
    r = call(gw, "GET", "/private", [("Origin", APP)])
    assert r.status == 401 and r.header("access-control-allow-origin") == APP
    r = call(gw, "GET", "/closed", [("Origin", APP)])
    assert r.status == 429 and r.header("access-control-allow-origin") == APP
    r = call(gw, "GET", "/no/such/route", [("Origin", APP)])
    assert r.status == 404 and r.header("access-control-allow-origin") == APP
    r = call(gw, "GET", "/no/such/route", [("Origin", "https://evil.example")])
    assert r.status == 404 and r.header("access-control-allow-origin") is None


def test_cors_config_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = {
        "apis": [
            {"name": "r", "cors": {"allowOrigins": ["*"]}, "stages": [{"name": "prod"}]},
            {
                "name": "h",
                "kind": "http",
                "cors": {"allowOrigins": ["*"], "allowCredentials": True},
                "stages": [{"name": "$default"}],
            },
        ]
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "$.apis[0].cors" in text and "$.apis[1].cors.allowCredentials" in text

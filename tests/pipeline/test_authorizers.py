"""Lambda authorizers end to end: TOKEN, REQUEST, HTTP API simple responses, caching across
workers, API keys from the authorizer. Calls are counted from the authorizer's own log file
(it runs in the gateway's worker processes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn

H = "tests.pipeline.handlers"
USAGE_KEY = "usage-key-from-authorizer-0123456789"


def config() -> dict[str, Any]:
    tok = {
        "type": "TOKEN",
        "authorizerUri": "authz",
        "identitySource": "method.request.header.Authorization",
        "identityValidationExpression": "^(Bearer )?[a-z0-9-]+$",
    }
    return {
        "functions": {
            "echo": {"handler": f"{H}:echo"},
            "authz": {"handler": f"{H}:token_authorizer", "timeout_ms": 500},
            "reqauthz": {"handler": f"{H}:request_authorizer_v1"},
            "simple": {"handler": f"{H}:simple_authorizer"},
        },
        "apis": [
            {
                "name": "authapi",
                "authorizers": [
                    {"name": "tok", **tok},
                    {"name": "tok0", **tok, "authorizerResultTtlInSeconds": 0},
                    {"name": "tok1", **tok, "authorizerResultTtlInSeconds": 1},
                    {
                        "name": "req",
                        "type": "REQUEST",
                        "authorizerUri": "reqauthz",
                        "identitySource": "method.request.header.X-User, method.request.querystring.q",
                    },
                ],
                "routes": [
                    {
                        "route": "GET /private",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "tok",
                    },
                    {
                        "route": "POST /private",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "tok",
                    },
                    {
                        "route": "GET /nocache",
                        "integration": {"type": "MOCK", "body": "{}"},
                        "authorizer": "tok0",
                    },
                    {
                        "route": "GET /short",
                        "integration": {"type": "MOCK", "body": "{}"},
                        "authorizer": "tok1",
                    },
                    {
                        "route": "GET /req",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "req",
                    },
                ],
                "stages": [{"name": "prod"}],
            },
            {
                "name": "keyapi",
                "apiKeySource": "AUTHORIZER",
                "authorizers": [{"name": "tok", **tok}],
                "routes": [
                    {
                        "route": "GET /metered",
                        "integration": {"type": "MOCK", "body": "{}"},
                        "authorizer": "tok",
                        "apiKeyRequired": True,
                    },
                    {
                        "route": "GET /metered-fn",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "tok",
                        "apiKeyRequired": True,
                    },
                ],
                "stages": [{"name": "keyed"}],
            },
            {
                "name": "hauth",
                "kind": "http",
                "authorizers": [
                    {
                        "name": "simple",
                        "type": "REQUEST",
                        "authorizerUri": "simple",
                        "identitySource": ["$request.header.x-user"],
                        "authorizerPayloadFormatVersion": "2.0",
                        "enableSimpleResponses": True,
                    }
                ],
                "routes": [
                    {
                        "route": "GET /simple",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "simple",
                    }
                ],
                "stages": [{"name": "$default"}],
            },
        ],
        "apiKeys": [{"name": "k", "value": USAGE_KEY}],
        "usagePlans": [
            {
                "name": "p",
                "apiStages": [{"apiId": "keyapi", "stage": "keyed"}],
                "quota": {"limit": 2, "period": "DAY"},
                "keys": ["k"],
            }
        ],
    }


@pytest.fixture(scope="module")
def calls_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calls") / "calls.log"


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, calls_file: Path) -> Any:
    return module_gateway_factory(
        config(),
        workers=2,
        extra_env={"FASTGW_TEST_CALLS": str(calls_file), "FASTGW_TEST_USAGE_KEY": USAGE_KEY},
    )


def calls(calls_file: Path, prefix: str) -> list[str]:
    if not calls_file.exists():
        return []
    return [line for line in calls_file.read_text().splitlines() if line.startswith(prefix)]


def req(port: int, method: str, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    with RawConn(port) as c:  # a new connection each time: both workers get requests
        return c.request(method, target, headers=headers or [])


def test_missing_or_invalid_token_is_401_without_a_call(gw: Any, calls_file: Path) -> None:
    r = req(gw.port, "GET", "/prod/private")
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'
    r = req(gw.port, "GET", "/prod/private", [("Authorization", "Not Valid!")])
    assert r.status == 401
    assert calls(calls_file, "token Not") == []


def test_allow_passes_context_to_the_integration(gw: Any) -> None:
    r = req(gw.port, "GET", "/prod/private", [("Authorization", "Bearer allow-ctx")])
    assert r.status == 200, r.body
    auth = r.json()["event"]["requestContext"]["authorizer"]
    assert auth["principalId"] == "user-allow-ctx"
    assert auth["user"] == "allow-ctx"
    assert str(auth["level"]) == "3"


def test_cached_decision_is_shared_by_workers(gw: Any, calls_file: Path) -> None:
    for _ in range(12):
        assert req(gw.port, "GET", "/prod/private", [("Authorization", "allow-cache")]).status == 200
    assert len(calls(calls_file, "token allow-cache")) == 1
    # Another identity is another decision.
    assert req(gw.port, "GET", "/prod/private", [("Authorization", "allow-other")]).status == 200
    assert len(calls(calls_file, "token allow-other")) == 1


def test_ttl_zero_calls_every_time(gw: Any, calls_file: Path) -> None:
    for _ in range(3):
        assert req(gw.port, "GET", "/prod/nocache", [("Authorization", "allow-nocache")]).status == 200
    assert len(calls(calls_file, "token allow-nocache")) == 3


def test_cache_expires(gw: Any, calls_file: Path) -> None:
    assert req(gw.port, "GET", "/prod/short", [("Authorization", "allow-short")]).status == 200
    assert req(gw.port, "GET", "/prod/short", [("Authorization", "allow-short")]).status == 200
    assert len(calls(calls_file, "token allow-short")) == 1
    time.sleep(1.2)
    assert req(gw.port, "GET", "/prod/short", [("Authorization", "allow-short")]).status == 200
    assert len(calls(calls_file, "token allow-short")) == 2


def test_explicit_deny_and_policy_not_covering_the_method(gw: Any) -> None:
    r = req(gw.port, "GET", "/prod/private", [("Authorization", "deny")])
    assert r.status == 403
    assert b"explicit deny" in r.body
    assert r.header("x-amzn-ErrorType") == "AccessDeniedException"
    # 'get-only' allows GET /*: the cached policy is evaluated per method ARN.
    assert req(gw.port, "GET", "/prod/private", [("Authorization", "get-only")]).status == 200
    r = req(gw.port, "POST", "/prod/private", [("Authorization", "get-only")])
    assert r.status == 403 and b"explicit deny" not in r.body


def test_unauthorized_error_is_401(gw: Any) -> None:
    r = req(gw.port, "GET", "/prod/private", [("Authorization", "unauthorized")])
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'


@pytest.mark.parametrize("token", ["error", "nopolicy", "slow"])
def test_authorizer_failures_fail_closed_500(gw: Any, token: str) -> None:
    t0 = time.monotonic()
    r = req(gw.port, "GET", "/prod/private", [("Authorization", token)])
    assert r.status == 500
    assert r.header("x-amzn-ErrorType") in ("AuthorizerConfigurationException", "AuthorizerFailureException")
    assert time.monotonic() - t0 < 2.0  # 'slow' sleeps 3 s; its timeout is 0.5 s


def test_request_authorizer(gw: Any, calls_file: Path) -> None:
    assert req(gw.port, "GET", "/prod/req", [("X-User", "alice")]).status == 401  # q missing
    r = req(gw.port, "GET", "/prod/req?q=42", [("X-User", "alice")])
    assert r.status == 200
    auth = r.json()["event"]["requestContext"]["authorizer"]
    assert auth["principalId"] == "alice" and auth["q"] == "42"
    assert req(gw.port, "GET", "/prod/req?q=42", [("X-User", "bob")]).status == 403


def test_http_api_simple_responses(gw: Any) -> None:
    assert req(gw.port, "GET", "/simple").status == 401
    r = req(gw.port, "GET", "/simple", [("x-user", "alice")])
    assert r.status == 200
    auth = r.json()["event"]["requestContext"]["authorizer"]
    assert auth == {"lambda": {"user": "alice", "route": "GET /simple"}}
    r = req(gw.port, "GET", "/simple", [("x-user", "bob")])
    assert r.status == 403 and r.body == b'{"message":"Forbidden"}'


def test_api_key_from_the_authorizer(gw: Any) -> None:
    """apiKeySource AUTHORIZER: the usageIdentifierKey selects the key (quota 2 a day)."""
    auth = [("Authorization", "allow-metered")]
    assert req(gw.port, "GET", "/keyed/metered", auth).status == 200
    # A function route behind the authorizer (one coroutine: authorizer, gate, function): the
    # same key and quota, and the key reaches the event.
    r = req(gw.port, "GET", "/keyed/metered-fn", auth)
    assert r.status == 200, r.body
    identity = r.json()["event"]["requestContext"]["identity"]
    assert identity["apiKey"] == USAGE_KEY and identity["apiKeyId"]
    for path in ("/keyed/metered-fn", "/keyed/metered"):
        r = req(gw.port, "GET", path, auth)
        assert r.status == 429 and r.json() == {"message": "Limit Exceeded"}, (path, r.body)
    # No identity: 401 before the gate, on the function route too.
    assert req(gw.port, "GET", "/keyed/metered-fn").status == 401

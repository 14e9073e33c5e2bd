"""Fixtures of the WebSocket tests: a gateway with a WebSocket API, clients from ``websockets``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import GatewayFactory

H = "tests.websocket.handlers"


def ws_config(
    routes: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    stage: dict[str, Any] | None = None,
    authorizers: list[dict[str, Any]] | None = None,
    gateway: dict[str, Any] | None = None,
    extra_apis: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A config with one WebSocket API "chat" (id "wsapi", stage "prod") and the test handlers."""
    fn = {"timeout_ms": 1000}
    functions = {
        name: {"handler": f"{H}:{name}", **fn}
        for name in (
            "connect",
            "disconnect",
            "echo",
            "default",
            "sendmessage",
            "join",
            "togroup",
            "whoami",
            "authorizer",
            "sync_post",
            "slow_http",
        )
    }
    if routes is None:
        routes = [
            {"route": "$connect", "integration": {"type": "AWS_PROXY", "uri": "connect"}},
            {"route": "$disconnect", "integration": {"type": "AWS_PROXY", "uri": "disconnect"}},
            {
                "route": "$default",
                "integration": {"type": "AWS_PROXY", "uri": "default"},
                "routeResponseSelectionExpression": "$default",
            },
            {
                "route": "echo",
                "integration": {"type": "AWS_PROXY", "uri": "echo"},
                "routeResponseSelectionExpression": "$default",
            },
            {"route": "sendmessage", "integration": {"type": "AWS_PROXY", "uri": "sendmessage"}},
            {
                "route": "join",
                "integration": {"type": "AWS_PROXY", "uri": "join"},
                "routeResponseSelectionExpression": "$default",
            },
            {"route": "togroup", "integration": {"type": "AWS_PROXY", "uri": "togroup"}},
            {
                "route": "whoami",
                "integration": {"type": "AWS_PROXY", "uri": "whoami"},
                "routeResponseSelectionExpression": "$default",
            },
            {
                "route": "mock",
                "integration": {"type": "MOCK", "body": "mocked"},
                "routeResponseSelectionExpression": "$default",
            },
            {"route": "oneway", "integration": {"type": "MOCK", "body": "never sent"}},
            {"route": "syncpost", "integration": {"type": "AWS_PROXY", "uri": "sync_post"}},
        ]
    api: dict[str, Any] = {
        "name": "chat",
        "id": "wsapi",
        "kind": "websocket",
        "routeSelectionExpression": "$request.body.action",
        "routes": routes,
        "stages": [{"name": "prod", **(stage or {})}],
    }
    if settings:
        api["websocket"] = settings
    if authorizers:
        api["authorizers"] = authorizers
    config: dict[str, Any] = {"functions": functions, "apis": [api, *(extra_apis or [])]}
    if gateway:
        config["gateway"] = gateway
    return config


@pytest.fixture(scope="module")
def chat_gateway(module_gateway_factory: GatewayFactory) -> Any:
    """One gateway (one worker) with the default chat config, shared by a module."""
    return module_gateway_factory(ws_config())

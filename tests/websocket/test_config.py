"""A WebSocket API's config: accepted as documented, and every unsupported field refused at load
with its path (nothing accepted that does not work)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastgw.config.compile import compile_config
from fastgw.config.load import ConfigError
from fastgw.config.model import GatewayConfig
from tests.websocket.conftest import ws_config


def compile_dict(data: dict[str, Any]) -> Any:
    return compile_config(msgspec.convert(data, GatewayConfig))


def issues_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as got:
        compile_dict(data)
    return {i.path: i.message for i in got.value.issues}


def test_the_chat_config_compiles() -> None:
    snap = compile_dict(ws_config())
    stage = snap.stages[0]
    ws = stage.websocket
    assert ws.selection == ("action",)
    assert ws.connect is not None and ws.disconnect is not None and ws.default is not None
    assert set(ws.routes) >= {"echo", "sendmessage"}
    assert ws.settings.max_frame_bytes == 32768 and ws.settings.max_message_bytes == 131072
    assert ws.settings.idle_timeout == 600 and ws.settings.max_duration == 7200


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda a: a.update(routeSelectionExpression="$request.header.x"),
            "$.apis[0].routeSelectionExpression",
        ),
        (lambda a: a.update(cors={"allowOrigins": ["*"]}), "$.apis[0].cors"),
        (lambda a: a.update(models={"m": {}}), "$.apis[0].models"),
        (
            lambda a: a["routes"][2].update(authorizationType="AWS_IAM"),
            "$.apis[0].routes[2].authorizationType",
        ),
        (lambda a: a["routes"][3].update(authorizer="x"), "$.apis[0].routes[3].authorizer"),
        (lambda a: a["routes"][3].update(apiKeyRequired=True), "$.apis[0].routes[3].apiKeyRequired"),
        (
            lambda a: a["routes"][0].update(routeResponseSelectionExpression="$default"),
            "$.apis[0].routes[0].routeResponseSelectionExpression",
        ),
        (
            lambda a: a["routes"][8]["integration"].update(responses={"default": {}}),
            "$.apis[0].routes[8].integration",
        ),
        (lambda a: a["stages"][0].update(cache={"enabled": True}), "$.apis[0].stages[0].cache"),
        (
            lambda a: a.update(websocket={"max_frame_bytes": 4096, "max_message_bytes": 2048}),
            "$.apis[0].websocket.max_message_bytes",
        ),
        (
            lambda a: a["routes"].append({"route": "x", "integration": {"type": "AWS", "uri": "echo"}}),
            "$.apis[0].routes[11].integration.type",
        ),
        (
            lambda a: a["routes"].append({"route": "bad key", "integration": {"type": "MOCK"}}),
            "$.apis[0].routes[11].route",
        ),
    ],
)
def test_unsupported_fields_are_refused_with_their_path(edit: Any, path: str) -> None:
    data = ws_config()
    edit(data["apis"][0])
    assert path in issues_of(data)


def test_websocket_settings_on_other_kinds_are_refused() -> None:
    data = ws_config()
    data["apis"].append(
        {
            "name": "rest",
            "kind": "http",
            "routeSelectionExpression": "$request.body.action",
            "websocket": {},
            "routes": [
                {
                    "route": "GET /",
                    "integration": {"type": "MOCK"},
                    "routeResponseSelectionExpression": "$default",
                }
            ],
            "stages": [{"name": "$default"}],
        }
    )
    found = issues_of(data)
    assert "$.apis[1].routeSelectionExpression" in found
    assert "$.apis[1].websocket" in found
    assert "$.apis[1].routes[0].routeResponseSelectionExpression" in found


def test_authorizer_must_be_a_websocket_request_authorizer() -> None:
    data = ws_config(
        [{"route": "$connect", "authorizer": "a", "integration": {"type": "MOCK"}}],
        authorizers=[
            {
                "name": "a",
                "type": "REQUEST",
                "authorizerUri": "authorizer",
                "identitySource": "$request.header.x",
            }
        ],
    )
    assert "$.apis[0].authorizers[0].identitySource" in issues_of(data)


def test_a_bad_iam_section_is_refused_when_only_websocket_apis_would_use_it() -> None:
    """The @connections API's SigV4 verifier is the config's one: its errors are reported."""
    cfg = ws_config()
    cfg["iam"] = {
        "users": [
            {
                "accessKeyId": "AKIAWSMANAGER0001",
                "secret_env": "FASTGW_TEST_UNSET_SECRET_VARIABLE",
                "arn": "arn:aws:iam::123456789012:user/manager",
            }
        ]
    }
    assert "unset or empty" in issues_of(cfg)["$.iam"]

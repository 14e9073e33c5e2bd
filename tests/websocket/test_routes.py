"""The AWS model of a WebSocket API: route selection, $connect before the 101, $disconnect once,
route responses, events field for field, AWS's error messages, the $connect authorizer and API key."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.helpers import GatewayFactory
from tests.websocket.conftest import ws_config


def url(gw: Any, query: str = "") -> str:
    return f"ws://127.0.0.1:{gw.port}/prod" + (f"?{query}" if query else "")


async def ask(c: Any, message: str) -> Any:
    await c.send(message)
    return await asyncio.wait_for(c.recv(), 5)


def test_route_selection_on_json_bodies_falls_back_to_default(chat_gateway: Any) -> None:
    async def run() -> list[Any]:
        async with websockets.connect(url(chat_gateway)) as c:
            return [
                await ask(c, json.dumps({"action": "echo", "x": 1})),
                await ask(c, json.dumps({"action": "nope"})),
                await ask(c, "not json"),
                await ask(c, json.dumps({"other": 1})),
                await ask(c, json.dumps({"action": "mock"})),
            ]

    echo, unknown, text, no_key, mock = asyncio.run(run())
    assert json.loads(echo) == {"action": "echo", "x": 1}
    assert unknown == 'default:{"action": "nope"}'
    assert text == "default:not json"
    assert no_key == 'default:{"other": 1}'
    assert mock == "mocked"


def test_nested_selection_expression(gateway_factory: GatewayFactory) -> None:
    config = ws_config(
        [
            {
                "route": "a.b",
                "integration": {"type": "MOCK", "body": "nested"},
                "routeResponseSelectionExpression": "$default",
            }
        ]
    )
    config["apis"][0]["routeSelectionExpression"] = "$request.body.meta.kind"
    gw = gateway_factory(config)

    async def run() -> Any:
        async with websockets.connect(url(gw)) as c:
            return await ask(c, json.dumps({"meta": {"kind": "a.b"}}))

    assert asyncio.run(run()) == "nested"


def test_one_way_routes_send_nothing_back(chat_gateway: Any) -> None:
    async def run() -> Any:
        async with websockets.connect(url(chat_gateway)) as c:
            await c.send(json.dumps({"action": "oneway"}))
            return await ask(c, json.dumps({"action": "mock"}))

    assert asyncio.run(run()) == "mocked"


def test_no_route_and_no_default_sends_forbidden_and_keeps_the_connection(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(
        ws_config(
            [
                {
                    "route": "mock",
                    "integration": {"type": "MOCK", "body": "m"},
                    "routeResponseSelectionExpression": "$default",
                }
            ]
        )
    )

    async def run() -> tuple[Any, Any]:
        async with websockets.connect(url(gw)) as c:
            return await ask(c, json.dumps({"action": "missing"})), await ask(
                c, json.dumps({"action": "mock"})
            )

    err, after = asyncio.run(run())
    body = json.loads(err)
    assert body["message"] == "Forbidden"
    assert set(body) == {"message", "connectionId", "requestId"}
    assert err.startswith('{"message": "Forbidden", "connectionId": "')
    assert after == "m"


def test_handler_error_sends_internal_server_error_and_keeps_the_connection(chat_gateway: Any) -> None:
    async def run() -> tuple[Any, Any, Any]:
        async with websockets.connect(url(chat_gateway)) as c:
            me = await ask(c, json.dumps({"action": "whoami"}))
            return me, await ask(c, "boom"), await ask(c, "still here")

    me, err, after = asyncio.run(run())
    body = json.loads(err)
    assert body["message"] == "Internal server error"
    assert body["connectionId"] == me
    assert body["requestId"]
    assert after == "default:still here"


def test_handler_that_never_returns_is_cut_at_its_timeout(chat_gateway: Any) -> None:
    async def run() -> tuple[Any, Any]:
        async with websockets.connect(url(chat_gateway)) as c:
            return await ask(c, "sleep"), await ask(c, "after")

    err, after = asyncio.run(run())
    assert json.loads(err)["message"] == "Endpoint request timed out"
    assert after == "default:after"


def test_binary_messages_reach_default_base64_encoded(chat_gateway: Any) -> None:
    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(url(chat_gateway)) as c:
            await c.send(b"\x00\x01binary")
            await asyncio.wait_for(c.recv(), 5)
            return json.loads(await ask(c, "events"))  # type: ignore[no-any-return]

    evs = asyncio.run(run())
    binary = [e for e in evs if e.get("isBase64Encoded")]
    assert binary and binary[0]["body"] == "AAFiaW5hcnk="


def test_connect_disconnect_and_message_events_as_aws(chat_gateway: Any) -> None:
    async def run() -> tuple[str, list[dict[str, Any]]]:
        async with websockets.connect(
            url(chat_gateway, "a=1&a=2&b=x"), additional_headers={"X-Test": "v"}
        ) as c:
            me = await ask(c, json.dumps({"action": "whoami"}))
            await ask(c, json.dumps({"action": "echo", "m": 1}))
            evs = json.loads(await ask(c, "events"))
        await asyncio.sleep(0.3)
        async with websockets.connect(url(chat_gateway)) as c2:
            disc = json.loads(await ask(c2, "disconnects"))
        return me, evs + [d for d in disc if d["requestContext"]["connectionId"] == me]

    me, evs = asyncio.run(run())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        by_type.setdefault(e["requestContext"]["eventType"], []).append(e)
    connect = by_type["CONNECT"][0]
    assert connect["headers"]["X-Test"] == "v"
    assert connect["multiValueHeaders"]["X-Test"] == ["v"]
    assert connect["queryStringParameters"] == {"a": "2", "b": "x"}
    assert connect["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x"]}
    assert connect["isBase64Encoded"] is False
    ctx = connect["requestContext"]
    assert ctx["routeKey"] == "$connect"
    assert ctx["connectionId"] == me and len(me) == 16 and me.endswith("=")
    assert ctx["messageDirection"] == "IN"
    assert ctx["stage"] == "prod" and ctx["apiId"] == "wsapi"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"].startswith("Python/")
    for key in (
        "extendedRequestId",
        "requestTime",
        "requestTimeEpoch",
        "requestId",
        "domainName",
        "connectedAt",
    ):
        assert key in ctx
    # The headers AWS adds to the handshake's.
    assert connect["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connect["headers"]["X-Forwarded-Port"] == str(chat_gateway.port)
    assert connect["headers"]["X-Forwarded-Proto"] == "http"
    message = next(e for e in by_type["MESSAGE"] if e["requestContext"]["routeKey"] == "echo")
    assert json.loads(message["body"]) == {"action": "echo", "m": 1}
    assert message["isBase64Encoded"] is False
    mctx = message["requestContext"]
    assert mctx["messageId"] and mctx["eventType"] == "MESSAGE"
    assert mctx["connectedAt"] == ctx["connectedAt"]
    assert "headers" not in message
    disconnects = by_type["DISCONNECT"]
    assert len(disconnects) == 1  # once per connection
    dctx = disconnects[0]["requestContext"]
    assert dctx["routeKey"] == "$disconnect"
    assert dctx["disconnectStatusCode"] == 1000
    assert "disconnectReason" in dctx
    # Every request id has one form (AWS's: 16 characters of URL-safe base64), $connect's too;
    # a message's id is its own, and no two ids repeat.
    ids = [e["requestContext"]["requestId"] for e in evs] + [mctx["messageId"]]
    for i in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", i), i
    assert ctx["extendedRequestId"] == ctx["requestId"]
    assert mctx["messageId"] != mctx["requestId"]
    assert len(set(ids)) == len(ids)


def test_connect_refusal_uses_the_integration_status(chat_gateway: Any) -> None:
    async def status_of(query: str) -> int:
        try:
            async with websockets.connect(url(chat_gateway, query)):
                return 101
        except InvalidStatus as ex:
            return ex.response.status_code

    assert asyncio.run(status_of("refuse=403")) == 403
    assert asyncio.run(status_of("refuse=401")) == 401
    assert asyncio.run(status_of("boom=1")) == 500


def test_connect_refusal_never_runs_disconnect(chat_gateway: Any) -> None:
    async def run() -> list[dict[str, Any]]:
        with pytest.raises(InvalidStatus):
            async with websockets.connect(url(chat_gateway, "refuse=403")):
                pass
        await asyncio.sleep(0.2)
        async with websockets.connect(url(chat_gateway)) as c:
            return json.loads(await ask(c, "disconnects"))  # type: ignore[no-any-return]

    before = asyncio.run(run())
    after = asyncio.run(run())
    assert len(after) == len(before) + 1  # only the previous successful probe connection


def test_subprotocol_is_chosen_by_the_connect_answer(chat_gateway: Any) -> None:
    async def run() -> Any:
        async with websockets.connect(url(chat_gateway), subprotocols=["chat.v2", "chat.v1"]) as c:  # type: ignore[list-item]
            return c.subprotocol

    assert asyncio.run(run()) == "chat.v2"


AUTH = [
    {
        "name": "auth",
        "type": "REQUEST",
        "authorizerUri": "authorizer",
        "identitySource": "route.request.querystring.token",
        "authorizerResultTtlInSeconds": 0,
    }
]


def test_connect_authorizer_allows_denies_and_fails_closed(gateway_factory: GatewayFactory) -> None:
    routes = [
        {"route": "$connect", "authorizer": "auth", "integration": {"type": "AWS_PROXY", "uri": "connect"}},
        {
            "route": "$default",
            "integration": {"type": "AWS_PROXY", "uri": "default"},
            "routeResponseSelectionExpression": "$default",
        },
    ]
    gw = gateway_factory(ws_config(routes, authorizers=AUTH))

    async def status_of(query: str) -> int:
        try:
            async with websockets.connect(url(gw, query)):
                return 101
        except InvalidStatus as ex:
            return ex.response.status_code

    async def events() -> list[dict[str, Any]]:
        async with websockets.connect(url(gw, "token=good")) as c:
            return json.loads(await ask(c, "events"))  # type: ignore[no-any-return]

    assert asyncio.run(status_of("token=good")) == 101
    assert asyncio.run(status_of("token=bad")) == 403
    assert asyncio.run(status_of("")) == 401
    assert asyncio.run(status_of("token=unauthorized")) == 401
    assert asyncio.run(status_of("token=error")) == 500
    evs = asyncio.run(events())
    auth = evs[0]["requestContext"]["authorizer"]
    assert auth["principalId"] == "user-1"
    assert auth["tenant"] == "t1" and auth["n"] == "3"
    assert "integrationLatency" in auth
    assert all("authorizer" in e["requestContext"] for e in evs)


def test_connect_api_key(gateway_factory: GatewayFactory) -> None:
    routes = [
        {"route": "$connect", "apiKeyRequired": True, "integration": {"type": "MOCK"}},
        {
            "route": "$default",
            "integration": {"type": "MOCK", "body": "ok"},
            "routeResponseSelectionExpression": "$default",
        },
    ]
    config = ws_config(routes)
    config["apiKeys"] = [{"name": "k1", "value": "key-value-0123456789abcdef"}]
    config["usagePlans"] = [{"name": "p", "apiStages": [{"apiId": "chat", "stage": "prod"}], "keys": ["k1"]}]
    gw = gateway_factory(config)

    async def status_of(headers: dict[str, str]) -> int:
        try:
            async with websockets.connect(url(gw), additional_headers=headers) as c:
                assert await ask(c, "x") == "ok"
                return 101
        except InvalidStatus as ex:
            return ex.response.status_code

    assert asyncio.run(status_of({"x-api-key": "key-value-0123456789abcdef"})) == 101
    assert asyncio.run(status_of({"x-api-key": "wrong"})) == 403
    assert asyncio.run(status_of({})) == 403

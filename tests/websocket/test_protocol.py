"""RFC 6455 on the gateway's own server: handshake checks, framing, control frames, close codes,
and every bad-input case closing with the RFC's code before any route runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.helpers import GatewayFactory, RawConn
from tests.websocket.conftest import ws_config
from tests.websocket.rawws import RawWs, close_payload, frame

MOCK_ROUTES = [
    {
        "route": "$default",
        "integration": {"type": "AWS_PROXY", "uri": "default"},
        "routeResponseSelectionExpression": "$default",
    },
    {
        "route": "mock",
        "integration": {"type": "MOCK", "body": "mocked"},
        "routeResponseSelectionExpression": "$default",
    },
]


# A REST API next to the WebSocket one: an HTTP request that takes a while (GET /rest/slow).
REST_API = {
    "name": "plain",
    "id": "restapi",
    "kind": "rest",
    "routes": [{"route": "GET /slow", "integration": {"type": "AWS_PROXY", "uri": "slow_http"}}],
    "stages": [{"name": "rest"}],
}


@pytest.fixture(scope="module", params=["compiled", "python"])
def gw(request: pytest.FixtureRequest, module_gateway_factory: GatewayFactory) -> Any:
    """The same API on both builds of the HTTP protocol (the upgrade path is in both)."""
    return module_gateway_factory(
        ws_config(
            MOCK_ROUTES, settings={"max_frame_bytes": 1024, "max_message_bytes": 4096}, extra_apis=[REST_API]
        ),
        no_extensions=request.param == "python",
    )


def test_echo_through_default_route_with_a_real_client(gw: Any) -> None:
    async def run() -> list[str]:
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/prod") as c:
            out = []
            for text in ("a", "b", json.dumps({"action": "mock"})):
                await c.send(text)
                out.append(await c.recv())
            return out

    assert asyncio.run(run()) == ["default:a", "default:b", "mocked"]


def test_ping_is_answered_and_fragmented_message_is_routed(gw: Any) -> None:
    with RawWs(gw.port) as ws:
        assert ws.handshake()[0] == 101
        ws.send(frame(0x9, b"hi"))
        assert ws.recv_frame() == (0xA, b"hi")
        ws.send(frame(0x1, b'{"act', fin=False))
        ws.send(frame(0x9, b"in-between"))  # control frames may come between fragments
        ws.send(frame(0x0, b'ion": ', fin=False))
        ws.send(frame(0x0, b'"mock"}'))
        assert ws.recv_frame() == (0xA, b"in-between")
        assert ws.recv_frame() == (0x1, b"mocked")
        ws.send(frame(0x8, close_payload(1000, b"bye")))
        assert ws.recv_frame() == (0x8, close_payload(1000, b"bye"))
        assert ws.at_eof()


def test_plain_get_of_the_stage_is_426(gw: Any) -> None:
    with RawConn(gw.port) as c:
        resp = c.request("GET", "/prod")
    assert resp.status == 426
    assert resp.header("sec-websocket-version") == "13"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"headers": {"Sec-WebSocket-Key": None}}, 400),
        ({"headers": {"Sec-WebSocket-Key": "short"}}, 400),
        ({"headers": {"Sec-WebSocket-Version": "8"}}, 426),
        ({"headers": {"Sec-WebSocket-Version": None}}, 426),
        ({"headers": {"Upgrade": "h2c, websocket2"}}, 426),
        ({"method": "POST"}, 405),
        ({"version": "1.0", "headers": {"Host": "localhost"}}, 400),
    ],
    ids=["no-key", "bad-key", "version-8", "no-version", "bad-upgrade", "post", "http10"],
)
def test_malformed_upgrades_are_refused(gw: Any, kwargs: dict[str, Any], status: int) -> None:
    with RawWs(gw.port) as ws:
        got, headers, body = ws.handshake(**kwargs)
        assert got == status
        if status == 426:
            assert headers["sec-websocket-version"] == "13"
        # AWS-style JSON, whichever layer refused (never the framing library's plain text).
        assert headers["content-type"] == "application/json"
        assert set(json.loads(body)) == {"message"}
        assert ws.at_eof()


def test_upgrade_pipelined_behind_a_request_in_flight_is_refused(gw: Any) -> None:
    """An upgrade behind an HTTP request still being served is never taken over (the HTTP
    answer would follow the 101 and corrupt the stream): that answer first, then 400, closed."""
    with RawConn(gw.port) as c:
        c.send(
            b"GET /rest/slow HTTP/1.1\r\nHost: localhost\r\n\r\n"
            b"GET /prod HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + frame(0x1, b'{"action":"mock"}')
        )
        first = c.read_response()
        assert (first.status, first.body) == (200, b"slow")
        second = c.read_response()
        assert second.status == 400
        assert c.is_closed(2.0)


BAD_FRAMES = {
    "unmasked": (frame(0x1, b"x", mask=False), 1002),
    "reserved-bits": (frame(0x1, b"x", rsv=4), 1002),
    "bad-opcode": (frame(0x3, b"x"), 1002),
    "fragmented-control": (frame(0x9, b"x", fin=False), 1002),
    "control-too-long": (frame(0x9, b"x" * 126), 1002),
    "continuation-first": (frame(0x0, b"x"), 1002),
    "frame-too-big": (frame(0x2, b"x" * 1025), 1009),
    "message-too-big": (
        frame(0x2, b"x" * 1000, fin=False) + frame(0x0, b"x" * 1000, fin=False) * 3 + frame(0x0, b"x" * 1000),
        1009,
    ),
    "invalid-utf8-text": (frame(0x1, b"\xff\xfe"), 1007),
    "invalid-utf8-fragments": (frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"\x28"), 1007),
    "invalid-utf8-close-reason": (frame(0x8, close_payload(1000, b"\xff")), 1007),
    "close-code-999": (frame(0x8, close_payload(999)), 1002),
    "close-code-1005": (frame(0x8, close_payload(1005)), 1002),
    "close-one-byte": (frame(0x8, b"\x03"), 1002),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frames_close_with_the_rfc_code(gw: Any, case: str) -> None:
    data, code = BAD_FRAMES[case]
    with RawWs(gw.port) as ws:
        assert ws.handshake()[0] == 101
        ws.send(data)
        assert ws.recv_close() == code
        assert ws.at_eof()


def test_bad_frames_never_reach_a_handler(gw: Any) -> None:
    """A text message with invalid UTF-8 after valid ones: the handler saw the valid ones only."""

    async def run() -> str:
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/prod") as c:
            await c.send("allbodies")
            return str(await c.recv())

    with RawWs(gw.port) as ws:
        assert ws.handshake()[0] == 101
        ws.send(frame(0x1, b"ok-1"))
        assert ws.recv_frame() == (0x1, b"default:ok-1")
        ws.send(frame(0x1, b"bad-\xff"))
        assert ws.recv_close() == 1007
    seen = asyncio.run(run())
    assert "ok-1" in seen and "bad-" not in seen


def test_http_requests_still_work_next_to_websockets(gw: Any) -> None:
    """Upgrade headers on a non-WebSocket path are served as before (and the connection closed)."""
    with RawConn(gw.port) as c:
        resp = c.request("GET", "/nope", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert resp.status == 403

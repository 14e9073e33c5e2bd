"""WebSocket stages' access logs: one line per $connect, message and $disconnect, in the stage's
``$context`` format, written by a real gateway while real clients connect, talk and leave; bad
formats refused at load with their path."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets

from fastgw.config.compile import compile_config
from fastgw.config.load import ConfigError
from fastgw.config.model import GatewayConfig
from fastgw.telemetry.accesslog import preset
from tests.helpers import GatewayFactory, wait_for
from tests.websocket.conftest import ws_config

pytestmark = pytest.mark.timeout(60)

FORMAT = (
    '{"requestId":"$context.requestId","eventType":"$context.eventType","routeKey":"$context.routeKey",'
    '"status":"$context.status","connectionId":"$context.connectionId","connectedAt":"$context.connectedAt",'
    '"ip":"$context.identity.sourceIp","ua":"$context.identity.userAgent","error":"$context.error.message",'
    '"type":"$context.error.responseType","lat":"$context.integrationLatency","epoch":"$context.requestTimeEpoch",'
    '"stage":"$context.stage","api":"$context.apiId","caller":"$context.identity.caller",'
    '"direction":"$context.messageDirection","messageId":"$context.messageId"}'
)


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_every_event_is_one_line_in_the_stage_format(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    log = tmp_path / "ws-access.log"
    cfg = ws_config(
        stage={
            "accessLogSettings": {"format": FORMAT, "destination": str(log)},
            "route_throttle": {"mock": {"rateLimit": 0.01, "burstLimit": 1}},
        }
    )
    gw = gateway_factory(cfg)
    url = f"ws://127.0.0.1:{gw.port}/prod"
    before_ms = int(time.time() * 1000)

    async def run() -> str:
        async with websockets.connect(url, user_agent_header="ws-test/1.0") as ws:
            await ws.send(json.dumps({"action": "echo", "n": 1}))
            await asyncio.wait_for(ws.recv(), 5)
            await ws.send("boom")  # $default raises: 500 to the client, the connection stays
            assert "Internal server error" in await asyncio.wait_for(ws.recv(), 5)
            await ws.send(json.dumps({"action": "mock"}))
            assert await asyncio.wait_for(ws.recv(), 5) == "mocked"
            await ws.send(json.dumps({"action": "mock"}))  # burst 1: throttled
            assert "Too Many Requests" in await asyncio.wait_for(ws.recv(), 5)
            conn_id = await _whoami(ws)
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url + "?refuse=403"):
                pass
        return conn_id

    conn_id = asyncio.run(run())
    assert wait_for(lambda: len(lines_of(log)) == 8, 5.0), lines_of(log)
    got = lines_of(log)
    first = [e for e in got if e["connectionId"] == conn_id]
    assert [(e["eventType"], e["routeKey"], e["status"]) for e in first] == [
        ("CONNECT", "$connect", "200"),
        ("MESSAGE", "echo", "200"),
        ("MESSAGE", "$default", "500"),
        ("MESSAGE", "mock", "200"),
        ("MESSAGE", "mock", "429"),
        ("MESSAGE", "whoami", "200"),
        ("DISCONNECT", "$disconnect", "200"),
    ]
    # The refused client: its $connect (the function answered 403), and no $disconnect.
    (refused,) = [e for e in got if e["connectionId"] != conn_id]
    assert (refused["eventType"], refused["routeKey"], refused["status"]) == ("CONNECT", "$connect", "403")
    assert refused["error"] == "-" and refused["type"] == "-"  # the integration's answer, no gateway error
    assert {e["connectionId"] for e in first} == {conn_id}
    assert len({e["requestId"] for e in got}) == len(got)  # one id per event
    for e in first:
        assert e["ip"] == "127.0.0.1" and e["ua"] == "ws-test/1.0"
        assert e["stage"] == "prod" and e["api"] == "wsapi"
        assert e["caller"] == "-"  # no IAM caller: AWS prints '-'
        assert e["direction"] == "IN"
        assert before_ms <= int(e["connectedAt"]) <= int(e["epoch"]) <= int(time.time() * 1000)
    by_route = {(e["routeKey"], e["status"]): e for e in first}
    assert by_route[("$default", "500")]["error"] == "Internal server error"
    assert by_route[("$default", "500")]["type"] == "INTEGRATION_FAILURE"
    throttled = by_route[("mock", "429")]
    assert throttled["error"] == "Too Many Requests" and throttled["type"] == "THROTTLED"
    assert throttled["lat"] == "-"  # refused before any integration ran
    assert by_route[("echo", "200")]["error"] == "-"
    # Messages carry their messageId (one per message); $connect and $disconnect have none.
    ids = [e["messageId"] for e in first if e["eventType"] == "MESSAGE"]
    assert len(set(ids)) == 5 and "-" not in ids
    assert {e["messageId"] for e in first if e["eventType"] != "MESSAGE"} == {"-"}
    assert float(by_route[("echo", "200")]["lat"]) >= 0


async def _whoami(ws: Any) -> str:
    await ws.send(json.dumps({"action": "whoami"}))
    return str(await asyncio.wait_for(ws.recv(), 5))


def _issues(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as got:
        compile_config(msgspec.convert(data, GatewayConfig))
    return {i.path: i.message for i in got.value.issues}


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ("$context.requestId $context.httpMethod", "HTTP request variable"),
        ("$context.requestId $context.conectionId", "did you mean $context.connectionId"),
        ("$context.eventType $context.routeKey", "must include $context.requestId"),
        ("$context.requestId $context.waf.error", "AWS WAF"),
    ],
)
def test_bad_websocket_formats_are_refused_with_their_path(fmt: str, needle: str) -> None:
    data = ws_config(stage={"accessLogSettings": {"format": fmt}})
    issues = _issues(data)
    assert needle in issues["$.apis[0].stages[0].accessLogSettings.format"]


def test_websocket_presets_compile_and_name_events() -> None:
    for name in ("clf", "json", "xml", "csv"):
        data = ws_config(stage={"accessLogSettings": {"format": name}})
        snap = compile_config(msgspec.convert(data, GatewayConfig))
        ws = snap.stages[0].websocket
        assert ws.access_log is not None
        assert "eventType" in ws.access_log.format.slots and "connectionId" in ws.access_log.format.slots
        assert ws.access_log.format.source == preset(name, "websocket")
    # The HTTP side of the stage (@connections) writes no line with the WebSocket format.
    assert snap.stages[0].access_log is None

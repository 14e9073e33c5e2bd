"""WebSocket metrics end to end: AWS's names (ConnectCount, MessageCount, ClientError,
ExecutionError, IntegrationLatency) per route, and the gateway's WebSocket counters, in the
admin listener's Prometheus scrape after real clients connected and sent messages."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
import websockets

from tests.helpers import ADMIN_TOKEN, HOST, GatewayFactory, wait_for
from tests.websocket.conftest import ws_config

pytestmark = pytest.mark.timeout(60)


def scrape(gw: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    req = urllib.request.Request(
        f"http://{HOST}:{gw.admin_port}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def get(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    hits = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    return hits[0] if len(hits) == 1 else -1.0


def test_websocket_metrics_count_what_clients_did(gateway_factory: GatewayFactory) -> None:
    cfg = ws_config(
        stage={"route_throttle": {"mock": {"rateLimit": 0.01, "burstLimit": 2}}},
    )
    gw = gateway_factory(cfg)
    url = f"ws://127.0.0.1:{gw.port}/prod"

    async def run() -> None:
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            for c in (a, b):
                await c.send(json.dumps({"action": "echo", "n": 1}))
                await asyncio.wait_for(c.recv(), 5)
            await a.send("boom")  # $default raises: ExecutionError, the connection stays
            assert "Internal server error" in await asyncio.wait_for(a.recv(), 5)
            for _ in range(3):  # burst 2: the third is throttled (ClientError)
                await a.send(json.dumps({"action": "mock"}))
            got = [await asyncio.wait_for(a.recv(), 5) for _ in range(3)]
            assert sum("Too Many Requests" in g for g in got) == 1
            assert got.count("mocked") == 2
            assert wait_for(lambda: get(scrape(gw), "fastgw_websocket_connections") == 2, 5.0)
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url + "?refuse=403"):
                pass

    asyncio.run(run())
    dims = {"ApiId": "wsapi", "Stage": "prod"}

    def settled() -> bool:
        return get(scrape(gw), "fastgw_ConnectCount_total", Route="$connect", **dims) == 3

    assert wait_for(settled, 5.0)
    assert wait_for(lambda: get(scrape(gw), "fastgw_websocket_connections") == 0, 5.0)
    found = scrape(gw)
    assert get(found, "fastgw_ClientError_total", Route="$connect", **dims) == 1  # the refused one
    assert get(found, "fastgw_MessageCount_total", Route="echo", **dims) == 2
    assert get(found, "fastgw_MessageCount_total", Route="$default", **dims) == 1
    assert get(found, "fastgw_ExecutionError_total", Route="$default", **dims) == 1
    assert get(found, "fastgw_MessageCount_total", Route="mock", **dims) == 3
    assert get(found, "fastgw_ClientError_total", Route="mock", **dims) == 1
    assert get(found, "fastgw_ExecutionError_total", Route="$disconnect", **dims) == 0
    assert get(found, "fastgw_Count_total", Route="$disconnect", **dims) == 2
    # Functions are integrations (IntegrationLatency); MOCK routes are not.
    assert get(found, "fastgw_IntegrationLatency_milliseconds_count", Route="echo", **dims) == 2
    assert get(found, "fastgw_IntegrationLatency_milliseconds_count", Route="mock", **dims) == 0
    assert get(found, "fastgw_Latency_milliseconds_count", Route="mock", **dims) == 3
    # The @connections and plain-GET routes of the stage are not WebSocket routes.
    assert not any(n == "fastgw_MessageCount_total" and " /" in dict(ls).get("Route", "") for n, ls in found)
    assert get(found, "fastgw_websocket_connects_total") == 2
    assert get(found, "fastgw_websocket_refused_total") == 1
    assert get(found, "fastgw_websocket_throttled_total") == 1
    assert get(found, "fastgw_websocket_messages_in_total") == 6


def test_malformed_upgrades_are_counted_as_refused(gateway_factory: GatewayFactory) -> None:
    """Every refused upgrade counts, whichever check refused it (request line and framing, the
    WebSocket handshake, $connect)."""
    from tests.websocket.rawws import RawWs

    gw = gateway_factory(ws_config())
    for kwargs in (
        {"method": "POST"},  # 405
        {"version": "1.0"},  # 400
        {"headers": {"Sec-WebSocket-Version": "8"}},  # 426
        {"headers": {"Sec-WebSocket-Key": "short"}},  # 400, from the handshake layer
    ):
        with RawWs(gw.port) as ws:
            assert ws.handshake(**kwargs)[0] in (400, 405, 426)  # type: ignore[arg-type]
    assert wait_for(lambda: get(scrape(gw), "fastgw_websocket_refused_total") == 4, 5.0)

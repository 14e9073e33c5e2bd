"""examples/websocket-chat end to end: the config as shipped, two chat clients and a direct post."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.helpers import REPO, GatewayFactory


def test_websocket_chat_example(gateway_factory: GatewayFactory) -> None:
    config = (REPO / "examples" / "websocket-chat" / "chat.yaml").read_text()
    gw = gateway_factory(config)
    base = f"ws://127.0.0.1:{gw.port}/production"

    async def run() -> tuple[Any, Any, Any, Any]:
        async with (
            websockets.connect(base + "?name=ann") as ann,
            websockets.connect(base + "?name=bob") as bob,
        ):
            await ann.send(json.dumps({"action": "sendmessage", "data": "hi bob"}))
            got_ann = json.loads(await asyncio.wait_for(ann.recv(), 5))
            got_bob = json.loads(await asyncio.wait_for(bob.recv(), 5))
            await bob.send("hello?")
            hint = json.loads(await asyncio.wait_for(bob.recv(), 5))
            await bob.send(json.dumps({"action": "direct", "to": "AAAAAAAAAAAAAAA=", "data": "x"}))
            gone = json.loads(await asyncio.wait_for(bob.recv(), 5))
            return got_ann, got_bob, hint, gone

    got_ann, got_bob, hint, gone = asyncio.run(run())
    assert got_ann == got_bob == {"from": "ann", "text": "hi bob"}
    assert "sendmessage" in hint["error"]
    assert gone == {"error": "gone"}

"""The AWS WebSocket chat sample, as fastgw runs it: $connect, $disconnect, sendmessage.

AWS's sample keeps connection ids in DynamoDB and posts to each through the @connections API.
Here the gateway keeps the registry: ``sendmessage`` broadcasts to the stage in one call. The
``direct`` route shows the AWS way, one ``post_to_connection`` per id, with the same errors
(``GoneException`` for a connection that has left).
"""

from __future__ import annotations

import json
from typing import Any

from fastgw import websocket

# Who is in the chat, per worker (a demo; several workers or nodes would use a shared store).
NAMES: dict[str, str] = {}


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = (event.get("queryStringParameters") or {}).get("name") or "anonymous"
    NAMES[event["requestContext"]["connectionId"]] = name[:32]
    return {"statusCode": 200}


async def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    NAMES.pop(event["requestContext"]["connectionId"], None)
    return {"statusCode": 200}


async def sendmessage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    me = event["requestContext"]["connectionId"]
    text = str(json.loads(event["body"]).get("data", ""))[:1000]
    line = json.dumps({"from": NAMES.get(me, "?"), "text": text})
    await websocket.broadcast(websocket.stage_of(event), line)
    return {"statusCode": 200}


async def direct(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Send to one connection id, as AWS handlers do with apigatewaymanagementapi."""
    msg = json.loads(event["body"])
    try:
        await websocket.post_to_connection(
            str(msg["to"]), json.dumps({"from": "direct", "text": msg.get("data")})
        )
    except websocket.GoneException:
        return {"statusCode": 410, "body": json.dumps({"error": "gone"})}
    return {"statusCode": 200, "body": json.dumps({"sent": True})}


async def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"error": 'use {"action": "sendmessage", "data": ...}'})}

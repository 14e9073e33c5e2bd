"""Lambda-style handlers the WebSocket tests route to (imported by the gateway process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastgw import websocket

#: Events received, by connection id (the tests read them back through the "events" route).
EVENTS: list[dict[str, Any]] = []


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    qs = event.get("queryStringParameters") or {}
    if qs.get("refuse"):
        return {"statusCode": int(qs["refuse"]), "body": "refused"}
    if qs.get("boom"):
        raise RuntimeError("connect failed")
    if qs.get("slow"):
        await asyncio.sleep(float(qs["slow"]))
    headers = {}
    proto = (event.get("headers") or {}).get("Sec-WebSocket-Protocol")
    if proto:
        headers["Sec-WebSocket-Protocol"] = proto.split(",")[0].strip()
    return {"statusCode": 200, "headers": headers}


async def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    return {"statusCode": 200}


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    return {"statusCode": 200, "body": event["body"]}


async def default(event: dict[str, Any], context: Any) -> Any:
    EVENTS.append(event)
    body = event["body"]
    if body == "boom":
        raise ValueError("handler failed")
    if body == "sleep":
        await asyncio.sleep(30)
    if body == "events":
        conn = event["requestContext"]["connectionId"]
        mine = [e for e in EVENTS if e["requestContext"]["connectionId"] == conn]
        return {"statusCode": 200, "body": json.dumps(mine)}
    if body == "allbodies":
        return {"statusCode": 200, "body": json.dumps([e.get("body") for e in EVENTS])}
    if body == "disconnects":
        return {
            "statusCode": 200,
            "body": json.dumps([e for e in EVENTS if e["requestContext"]["eventType"] == "DISCONNECT"]),
        }
    return {"statusCode": 200, "body": "default:" + body}


async def sendmessage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The AWS chat sample: send the message to every connection of the stage."""
    data = json.loads(event["body"])["data"]
    await websocket.broadcast(websocket.stage_of(event), data)
    return {"statusCode": 200}


async def join(event: dict[str, Any], context: Any) -> dict[str, Any]:
    msg = json.loads(event["body"])
    conn = event["requestContext"]["connectionId"]
    await websocket.join_group(conn, msg["group"])
    return {"statusCode": 200, "body": "joined"}


async def togroup(event: dict[str, Any], context: Any) -> dict[str, Any]:
    msg = json.loads(event["body"])
    await websocket.broadcast(websocket.stage_of(event), msg["data"], group=msg["group"])
    return {"statusCode": 200}


async def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}


async def authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token") or event["headers"].get("Auth")
    if token == "error":
        raise RuntimeError("broken authorizer")
    if token == "unauthorized":
        raise Exception("Unauthorized")
    effect = "Allow" if token == "good" else "Deny"
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"tenant": "t1", "n": 3},
    }


def sync_post(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A thread-pool handler posting back through the in-process helper."""
    conn = event["requestContext"]["connectionId"]
    websocket.run_sync(websocket.post_to_connection(conn, "from a thread"))
    return {"statusCode": 200}


async def slow_http(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A REST route that takes a while (an HTTP request in flight on a connection)."""
    await asyncio.sleep(0.5)
    return {"statusCode": 200, "body": "slow"}

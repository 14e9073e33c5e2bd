"""The @connections API (boto3's apigatewaymanagementapi client against the gateway), the
in-process helpers, broadcast to a stage or a group, and the AWS chat sample's flow."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import boto3
import botocore.exceptions
import pytest
import websockets
from botocore.config import Config

from tests.websocket.conftest import ws_config


def url(gw: Any) -> str:
    return f"ws://127.0.0.1:{gw.port}/prod"


def client(gw: Any) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{gw.port}/prod",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


async def whoami(c: Any) -> str:
    await c.send(json.dumps({"action": "whoami"}))
    return str(await asyncio.wait_for(c.recv(), 5))


def test_boto3_post_get_delete_and_gone(chat_gateway: Any) -> None:
    api = client(chat_gateway)

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with websockets.connect(url(chat_gateway), user_agent_header="ua-test") as c:
            me = await whoami(c)
            out["me"] = me
            await asyncio.to_thread(api.post_to_connection, ConnectionId=me, Data=b"hello from boto3")
            out["got"] = await asyncio.wait_for(c.recv(), 5)
            out["info"] = await asyncio.to_thread(api.get_connection, ConnectionId=me)
            await asyncio.to_thread(api.delete_connection, ConnectionId=me)
            try:
                await asyncio.wait_for(c.recv(), 5)
            except websockets.ConnectionClosed as ex:
                out["closed"] = ex.rcvd.code if ex.rcvd else None
        return out

    out = asyncio.run(run())
    assert out["got"] == "hello from boto3"
    info = out["info"]
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ua-test"}
    assert info["ConnectedAt"] <= info["LastActiveAt"]
    assert out["closed"] == 1000
    for call in (
        lambda: api.post_to_connection(ConnectionId=out["me"], Data=b"x"),
        lambda: api.get_connection(ConnectionId=out["me"]),
        lambda: api.delete_connection(ConnectionId=out["me"]),
        lambda: api.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x"),
        lambda: api.post_to_connection(ConnectionId="nonsense", Data=b"x"),
    ):
        with pytest.raises(api.exceptions.GoneException):
            call()


def test_gone_is_answered_as_aws(chat_gateway: Any) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{chat_gateway.port}/prod/@connections/AAAAAAAAAAAAAAA%3D", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(req, timeout=5)
    assert got.value.code == 410
    assert got.value.headers["x-amzn-ErrorType"] == "GoneException"
    assert got.value.read() == b""


def test_chat_sample_flow_send_to_all(chat_gateway: Any) -> None:
    """AWS's chat sample: connect, sendmessage reaches every connection, disconnect."""

    async def run() -> list[Any]:
        clients = [await websockets.connect(url(chat_gateway)) for _ in range(3)]
        try:
            await clients[0].send(json.dumps({"action": "sendmessage", "data": "hi all"}))
            return [await asyncio.wait_for(c.recv(), 5) for c in clients]
        finally:
            for c in clients:
                await c.close()

    assert asyncio.run(run()) == ["hi all"] * 3


def test_groups_and_thread_helpers(chat_gateway: Any) -> None:
    async def run() -> tuple[list[Any], Any, Any]:
        a = await websockets.connect(url(chat_gateway))
        b = await websockets.connect(url(chat_gateway))
        c = await websockets.connect(url(chat_gateway))
        try:
            for ws in (a, b):
                await ws.send(json.dumps({"action": "join", "group": "room"}))
                assert await asyncio.wait_for(ws.recv(), 5) == "joined"
            await c.send(json.dumps({"action": "togroup", "group": "room", "data": "to the room"}))
            got = [await asyncio.wait_for(ws.recv(), 5) for ws in (a, b)]
            await c.send(json.dumps({"action": "mock"}))
            not_in_room = await asyncio.wait_for(c.recv(), 5)  # c got nothing from the room
            await c.send(json.dumps({"action": "syncpost"}))
            threaded = await asyncio.wait_for(c.recv(), 5)
            return got, not_in_room, threaded
        finally:
            for ws in (a, b, c):
                await ws.close()

    got, not_in_room, threaded = asyncio.run(run())
    assert got == ["to the room"] * 2
    assert not_in_room == "mocked"
    assert threaded == "from a thread"


def test_connections_api_token_and_limits(gateway_factory: Any) -> None:
    gw = gateway_factory(
        ws_config(
            settings={"connections_api_token": "t" * 32, "max_frame_bytes": 1024, "max_message_bytes": 1024}
        )
    )

    async def run() -> tuple[int, int]:
        async with websockets.connect(url(gw)) as c:
            me = await whoami(c)
            req = urllib.request.Request(
                f"http://127.0.0.1:{gw.port}/prod/@connections/{me}",
                data=b"x" * 2000,
                method="POST",
                headers={"Authorization": "Bearer " + "t" * 32},
            )
            try:
                await asyncio.to_thread(urllib.request.urlopen, req, timeout=5)
                too_big = 200
            except urllib.error.HTTPError as ex:
                too_big = ex.code
            ok = urllib.request.Request(
                f"http://127.0.0.1:{gw.port}/prod/@connections/{me}",
                data=b"fine",
                method="POST",
                headers={"Authorization": "Bearer " + "t" * 32},
            )
            status = (await asyncio.to_thread(urllib.request.urlopen, ok, timeout=5)).status
            assert await asyncio.wait_for(c.recv(), 5) == "fine"
            return too_big, status

    assert asyncio.run(run()) == (413, 200)


def post_as(gw: Any, conn_id: str, xff: str | None) -> int:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    req = urllib.request.Request(
        f"http://127.0.0.1:{gw.port}/prod/@connections/{conn_id}", data=b"x", method="POST", headers=headers
    )
    try:
        return int(urllib.request.urlopen(req, timeout=5).status)
    except urllib.error.HTTPError as ex:
        return ex.code


def test_loopback_rule_judges_the_client_behind_a_trusted_proxy(
    gateway_factory: Any, chat_gateway: Any
) -> None:
    """Behind a same-host TLS terminator (trusted_proxies: 127.0.0.1/32) the socket's peer is
    always loopback: the client that proxy forwarded is judged instead, as sourceIp is."""
    gw = gateway_factory(ws_config(gateway={"trusted_proxies": ["127.0.0.1/32"]}))

    async def run(target: Any, cases: list[str | None]) -> list[int]:
        async with websockets.connect(url(target)) as c:
            me = await whoami(c)
            return [await asyncio.to_thread(post_as, target, me, xff) for xff in cases]

    behind_proxy = asyncio.run(
        run(gw, ["203.0.113.9", "127.0.0.1, 203.0.113.9", "not-an-address", "127.0.0.1", "::1", None])
    )
    # An internet client (even one claiming loopback on the left), or an unreadable forwarded
    # address: 403. A loopback client through the proxy, or a local caller without a proxy: 200.
    assert behind_proxy == [403, 403, 403, 200, 200, 200]
    # Without trusted proxies a client's own X-Forwarded-For is never believed: the socket counts.
    assert asyncio.run(run(chat_gateway, ["203.0.113.9"])) == [200]


def test_sigv4_signed_calls_are_verified_against_iam_users(gateway_factory: Any) -> None:
    """boto3 signs @connections calls with SigV4: with `iam.users` in the config, a signature is
    verified (from any address; a bad one is refused even from loopback) and the caller's policy
    must allow execute-api:ManageConnections on the connection's ARN."""
    manage = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "execute-api:ManageConnections",
                "Resource": "arn:aws:execute-api:us-east-1:123456789012:wsapi/prod/POST/@connections/*",
            }
        ],
    }
    invoke_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}],
    }
    cfg = ws_config()
    cfg["iam"] = {
        "users": [
            {
                "accessKeyId": "AKIAWSMANAGER0001",
                "secretAccessKey": "manager-secret",
                "arn": "arn:aws:iam::123456789012:user/manager",
                "policy": manage,
            },
            {
                "accessKeyId": "AKIAWSINVOKER0001",
                "secretAccessKey": "invoker-secret",
                "arn": "arn:aws:iam::123456789012:user/invoker",
                "policy": invoke_only,
            },
        ]
    }
    gw = gateway_factory(cfg)

    def signed(key: str, secret: str) -> Any:
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"http://127.0.0.1:{gw.port}/prod",
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )

    manager = signed("AKIAWSMANAGER0001", "manager-secret")
    forged = signed("AKIAWSMANAGER0001", "not-the-secret")
    invoker = signed("AKIAWSINVOKER0001", "invoker-secret")

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with websockets.connect(url(gw)) as c:
            me = await whoami(c)
            await asyncio.to_thread(manager.post_to_connection, ConnectionId=me, Data=b"signed")
            out["got"] = await asyncio.wait_for(c.recv(), 5)
            for name, api, call in (
                ("forged", forged, "post_to_connection"),
                ("invoker", invoker, "post_to_connection"),
                ("get", manager, "get_connection"),  # the policy allows POST only
            ):
                kwargs: dict[str, Any] = {"ConnectionId": me}
                if call == "post_to_connection":
                    kwargs["Data"] = b"x"
                try:
                    await asyncio.to_thread(getattr(api, call), **kwargs)
                    out[name] = 200
                except botocore.exceptions.ClientError as ex:
                    out[name] = (
                        ex.response["ResponseMetadata"]["HTTPStatusCode"],
                        ex.response["Error"]["Code"],
                    )
        return out

    out = asyncio.run(run())
    assert out["got"] == "signed"
    assert out["forged"][0] == 403 and "Signature" in out["forged"][1]
    assert out["invoker"] == (403, "AccessDeniedException")
    assert out["get"] == (403, "AccessDeniedException")

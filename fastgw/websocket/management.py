"""The ``@connections`` API of a WebSocket stage, on the data-plane listener.

``POST /{stage}/@connections/{connectionId}`` sends the request body to the connection,
``GET`` describes it (``connectedAt``, ``identity.sourceIp``, ``identity.userAgent``,
``lastActiveAt``: AWS's GetConnection, ISO 8601 times), ``DELETE`` closes it (its
``$disconnect`` runs). An unknown or closed connection answers ``410`` with
``x-amzn-ErrorType: GoneException`` and an empty body, as AWS (boto3's
``apigatewaymanagementapi`` client raises ``GoneException``). A connection held by another worker
or node is reached through the hub (``fastgw.websocket.hub``); a holder that does not answer
within ``delivery_timeout_ms`` gives 504 (so does a holder that cannot be reached for a
while: 410 only when it is certainly gone). A connection of another stage or API answers 410,
wherever it is held (the hub checks the stage, locally and on the holder).

Access (APPSEC): AWS signs these calls with SigV4, and so may callers here: a signed call (the
``Authorization: AWS4-HMAC-SHA256 ...`` header or a presigned query) is verified against the
config's ``iam.users``, from any address, and the caller's identity policy must allow
``execute-api:ManageConnections`` on ``arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/
@connections/ID`` (else AWS's 403); a bad signature is refused even from loopback. Unsigned
calls are open to loopback clients only, unless the API sets ``websocket.connections_api_token``
and the caller sends ``Authorization: Bearer <token>``. The client is the socket's peer, unless
the peer is one of ``gateway.trusted_proxies``: then it is the address that proxy forwarded
(X-Forwarded-For read from the right past the trusted proxies, as the gateway's ``sourceIp``),
so a same-host TLS terminator does not open the API to everyone behind it. Anyone else gets 403
``{"message":"Forbidden"}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from fastgw.server import replies
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.pipeline.request import Request
    from fastgw.pipeline.runtime import Services

_GONE = LocalReply(410, [("content-type", "application/json"), ("x-amzn-ErrorType", "GoneException")], b"")
_FORBIDDEN = replies.aws_error(403, "Forbidden", "ForbiddenException")
_TIMEOUT = replies.aws_error(504, "Endpoint request timed out", "IntegrationTimeout")
_PAYLOAD_TOO_LARGE = replies.aws_error(413, "Request entity too large", "PayloadTooLargeException")
_OK = LocalReply(200, [("content-type", "application/json")], b"")
_NO_CONTENT = LocalReply(204, [], b"")


def _client(req: Request) -> str | None:
    """The address judged for access: the socket's peer, or, when the peer is a trusted proxy,
    the client it forwarded. None when a trusted proxy forwarded something unreadable."""
    ex = req.exchange
    if ex is None:
        return req.source_ip
    proto = ex.proto
    peer: str = proto.peer
    if not proto.peer_trusted or not ex.p_xff:
        return peer
    trusted = ex.snapshot.trusted_proxies
    client = peer
    for part in reversed(ex.p_xff.decode("latin-1").split(",")):
        try:
            addr = ipaddress.ip_address(part.strip())
        except ValueError:
            return None  # fail closed: the forwarded client is not an address
        client = part.strip()
        if not any(addr in net for net in trusted):
            break
    return client


def _signed(req: Request) -> LocalReply | None:
    """A SigV4-signed call (boto3's apigatewaymanagementapi client, the AWS CLI), verified
    against ``iam.users``: None when the signature is good and the caller's identity policy
    allows ``execute-api:ManageConnections`` on the connection's ARN, else AWS's 403."""
    from fastgw.authorizers.sigv4 import access_denied_reply

    ws = req.route.stage.websocket
    iam = ws.iam
    got = iam.verify(req, time.time(), authorize=False)
    if type(got) is LocalReply:
        return got
    conn_id = (req.params or {}).get("connectionId", "")
    arn = (
        f"arn:aws:execute-api:{iam.region}:{iam.account_id}:{ws.api.id}/{ws.name}/"
        f"{req.method}/@connections/{conn_id}"
    )
    if not iam.may(got, arn, "execute-api:ManageConnections"):  # type: ignore[arg-type]
        return access_denied_reply(got["userArn"], arn, False)  # type: ignore[index]
    return None


def _is_signed(req: Request) -> bool:
    ws = req.route.stage.websocket
    if ws is None or ws.iam is None:
        return False
    return (req.header("authorization") or "").startswith("AWS4-") or "X-Amz-Signature=" in req.query


def _allowed(req: Request) -> bool:
    ws = req.route.stage.websocket
    token = ws.settings.connections_api_token if ws is not None else None
    if token is not None:
        auth = req.header("authorization") or ""
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True
    client = _client(req)
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return client == ""  # a Unix socket


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def _run(req: Request, op: str) -> LocalReply:
    from fastgw.websocket.hub import DeliveryTimeout, Gone, hub

    if _is_signed(req):
        # A signature is checked whatever the caller's address: a bad one is never let in as
        # a loopback call.
        refused = _signed(req)
        if refused is not None:
            return refused
    elif not _allowed(req):
        return _FORBIDDEN
    ws = req.route.stage.websocket
    conn_id = unquote((req.params or {}).get("connectionId", ""))
    h = hub()
    timeout = ws.settings.delivery_timeout_ms / 1000.0
    try:
        # The stage goes with the call: a connection of another stage or API is "gone".
        if op == "POST":
            if len(req.body) > ws.settings.max_message_bytes:
                return _PAYLOAD_TOO_LARGE
            await h.post(conn_id, req.body, timeout, ws.uid)
            return _OK
        if op == "DELETE":
            await h.delete(conn_id, timeout, ws.uid)
            return _NO_CONTENT
        info = await h.info(conn_id, timeout, ws.uid)
    except Gone:
        return _GONE
    except DeliveryTimeout:
        return _TIMEOUT
    # The wire names of AWS's GetConnection output (botocore's model: connectedAt, identity...).
    ident = info["Identity"]
    body = {
        "connectedAt": _iso(info["ConnectedAt"]),
        "identity": {"sourceIp": ident["SourceIp"], "userAgent": ident["UserAgent"]},
        "lastActiveAt": _iso(info["LastActiveAt"]),
    }
    return LocalReply(200, [("content-type", "application/json")], orjson.dumps(body))


async def post_connection(req: Request, svc: Services) -> Any:
    return await _run(req, "POST")


async def get_connection(req: Request, svc: Services) -> Any:
    return await _run(req, "GET")


async def delete_connection(req: Request, svc: Services) -> Any:
    return await _run(req, "DELETE")


HANDLERS = {"POST": post_connection, "GET": get_connection, "DELETE": delete_connection}

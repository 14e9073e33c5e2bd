"""Lambda proxy events of WebSocket routes, field for field as AWS builds them.

AWS (developer guide, "WebSocket API Lambda proxy integration input format" and the events a
function logs): every event has ``requestContext`` with ``routeKey``, ``eventType``
(``CONNECT`` | ``MESSAGE`` | ``DISCONNECT``), ``extendedRequestId``, ``requestTime`` (CLF),
``messageDirection`` (``IN``), ``stage``, ``connectedAt`` (ms), ``requestTimeEpoch`` (ms),
``identity`` (``sourceIp``, and ``userAgent`` on $connect/$disconnect), ``requestId``,
``domainName``, ``connectionId`` and ``apiId``; ``authorizer`` when the $connect route had one.
``$connect`` events carry the handshake's ``headers`` / ``multiValueHeaders`` and, when the URL
had a query, ``queryStringParameters`` / ``multiValueQueryStringParameters``; MESSAGE events
``messageId``, ``body`` and ``isBase64Encoded``; DISCONNECT events ``disconnectStatusCode`` and
``disconnectReason``.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from fastgw.functions.events import _request_time

if TYPE_CHECKING:
    from fastgw.websocket.connection import WsConnection


def query_params(query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """queryStringParameters (last value wins, as AWS) and multiValueQueryStringParameters."""
    if not query:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote_plus(name)
        value = unquote_plus(value)
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single or None, multi or None


def header_maps(headers: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        if name in single:
            single[name] = single[name] + "," + value
        else:
            single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _context(
    conn: WsConnection, route_key: str, event_type: str, request_id: str, now_ms: int
) -> dict[str, Any]:
    ctx = dict(conn.static_context)
    ctx["routeKey"] = route_key
    ctx["eventType"] = event_type
    ctx["extendedRequestId"] = request_id
    ctx["requestTime"] = _request_time(now_ms)
    ctx["requestTimeEpoch"] = now_ms
    ctx["requestId"] = request_id
    if conn.authorizer is not None:
        ctx["authorizer"] = conn.authorizer
    return ctx


def connect_event(conn: WsConnection, request_id: str, now_ms: int) -> dict[str, Any]:
    ctx = _context(conn, "$connect", "CONNECT", request_id, now_ms)
    ctx["identity"] = {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}
    single, multi = header_maps(conn.headers)
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    qs, mqs = query_params(conn.query)
    if qs is not None:
        event["queryStringParameters"] = qs
        event["multiValueQueryStringParameters"] = mqs
    event["requestContext"] = ctx
    event["isBase64Encoded"] = False
    return event


def message_event(
    conn: WsConnection, route_key: str, body: bytes | str, request_id: str, message_id: str, now_ms: int
) -> dict[str, Any]:
    ctx = _context(conn, route_key, "MESSAGE", request_id, now_ms)
    ctx["messageId"] = message_id
    if type(body) is str:
        return {"requestContext": ctx, "body": body, "isBase64Encoded": False}
    return {"requestContext": ctx, "body": base64.b64encode(body).decode(), "isBase64Encoded": True}  # type: ignore[arg-type]


def disconnect_event(
    conn: WsConnection, request_id: str, now_ms: int, code: int, reason: str
) -> dict[str, Any]:
    ctx = _context(conn, "$disconnect", "DISCONNECT", request_id, now_ms)
    ctx["identity"] = {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}
    ctx["disconnectStatusCode"] = code
    ctx["disconnectReason"] = reason
    single, multi = header_maps(conn.disconnect_headers())
    return {"headers": single, "multiValueHeaders": multi, "requestContext": ctx, "isBase64Encoded": False}

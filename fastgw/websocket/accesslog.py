"""Access logs of WebSocket stages: one line per ``$connect``, message and ``$disconnect``.

AWS logs a WebSocket API's events (not its frames) with the stage's ``accessLogSettings``, in a
format of ``$context`` variables ("WebSocket API $context variables ... CloudWatch access
logging"). The format is compiled and checked by ``fastgw.telemetry.accesslog`` (kind
``websocket``: the WebSocket variables, the console's presets); the lines go to the same
writers as the HTTP stages' (``fastgw.telemetry.access.writer_for``: queued by the event loop,
written by the worker's ticker, reopened on SIGUSR1).

What a line knows: the connection (``connectionId``, ``connectedAt``, ``identity.sourceIp``,
``identity.userAgent``, ``domainName``, ``apiId``, ``stage``, the ``$connect`` authorizer's
``principalId`` and context), the event (``eventType`` CONNECT / MESSAGE / DISCONNECT,
``routeKey``, ``requestId``, ``requestTime``, ``status``, ``responseLatency``,
``integrationLatency``, ``error.message`` of a refused or failed event). Variables that can have
no value here print ``-``, as AWS prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastgw.telemetry.access import _clf_time, check_destination, writer_for
from fastgw.telemetry.accesslog import AccessLogFormat, compile_format, preset

if TYPE_CHECKING:
    from fastgw.websocket.connection import WsConnection

__all__ = ["WsAccessLog", "WsEvent", "compile_ws_access_log"]


class WsEvent:
    """One logged event: what ``$context`` reads for it."""

    __slots__ = (
        "conn",
        "error",
        "event_type",
        "int_ms",
        "message_id",
        "ms",
        "request_id",
        "route_key",
        "status",
        "t_ms",
    )

    def __init__(
        self,
        conn: WsConnection,
        event_type: str,
        route_key: str | None,
        request_id: str,
        status: int,
        ms: float,
        int_ms: float | None,
        error: str | None,
        message_id: str | None = None,
    ) -> None:
        self.conn = conn
        self.message_id = message_id
        self.event_type = event_type
        self.route_key = route_key
        self.request_id = request_id
        self.status = status
        self.ms = ms
        self.int_ms = int_ms
        self.error = error
        # When the event arrived (the line is written when it is answered).
        self.t_ms = int(time.time() * 1000 - ms)


def _authorizer(name: str) -> Callable[[WsEvent], object]:
    def get(e: WsEvent) -> object:
        auth = e.conn.authorizer
        return auth.get(name) if auth else None

    return get


def _response_type(e: WsEvent) -> object:
    return _RESPONSE_TYPES.get(e.status) if e.error else None


# $context.error.responseType of the errors a WebSocket client gets (AWS's gateway response types).
_RESPONSE_TYPES = {
    401: "UNAUTHORIZED",
    403: "ACCESS_DENIED",
    429: "THROTTLED",
    500: "INTEGRATION_FAILURE",
    502: "INTEGRATION_FAILURE",
    504: "INTEGRATION_TIMEOUT",
}

_GETTERS: dict[str, Callable[[WsEvent], object]] = {
    "apiId": lambda e: e.conn.stage.api.id,
    "stage": lambda e: e.conn.stage.name,
    "connectionId": lambda e: e.conn.conn_id,
    "connectedAt": lambda e: e.conn.connected_at,
    "domainName": lambda e: e.conn.domain,
    "domainPrefix": lambda e: (e.conn.domain or "").split(".", 1)[0] or None,
    "eventType": lambda e: e.event_type,
    "messageDirection": lambda e: "IN",
    "messageId": lambda e: e.message_id,
    "routeKey": lambda e: e.route_key,
    "requestId": lambda e: e.request_id,
    "extendedRequestId": lambda e: e.request_id,
    "requestTime": lambda e: _clf_time(e.t_ms / 1000.0),
    "requestTimeEpoch": lambda e: e.t_ms,
    "status": lambda e: e.status,
    "responseLatency": lambda e: round(e.ms),
    "integration.latency": lambda e: round(e.int_ms) if e.int_ms is not None else None,
    "integration.status": lambda e: e.status if e.int_ms is not None else None,
    "integration.integrationStatus": lambda e: e.status if e.int_ms is not None else None,
    "identity.sourceIp": lambda e: e.conn.source_ip,
    "identity.userAgent": lambda e: e.conn.user_agent,
    "identity.apiKey": lambda e: e.conn.api_key,
    "error.message": lambda e: e.error,
    "error.responseType": _response_type,
    "authorizer.principalId": _authorizer("principalId"),
}


def _getter(name: str) -> Callable[[WsEvent], object]:
    got = _GETTERS.get(name)
    if got is not None:
        return got
    head, _, rest = name.partition(".")
    if head == "authorizer" and rest and "." not in rest:
        return _authorizer(rest)  # a key of the $connect authorizer's context
    return lambda e: None  # nothing here knows it: AWS prints '-'


class WsAccessLog:
    """A WebSocket stage's compiled format, one getter per variable, and its destination."""

    __slots__ = ("destination", "format", "getters", "writer")

    def __init__(self, fmt: AccessLogFormat, destination: str | None) -> None:
        self.format = fmt
        self.destination = destination
        self.getters = tuple(_getter(name) for name in fmt.slots)
        self.writer: Any = None

    def render(self, event: WsEvent) -> str:
        return self.format.render_values([g(event) for g in self.getters])

    def emit(self, event: WsEvent) -> None:
        writer = self.writer
        if writer is None:
            writer = self.writer = writer_for(self.destination)
        writer.write(self.render(event))


def compile_ws_access_log(fmt: str, destination: str | None) -> WsAccessLog:
    """A WebSocket stage's access log; AccessLogFormatError for a bad format, OSError for a
    destination that cannot be written."""
    text = preset(fmt, "websocket") if fmt.strip().lower() in ("clf", "json", "xml", "csv") else fmt
    check_destination(destination)
    return WsAccessLog(compile_format(text, "websocket"), destination)

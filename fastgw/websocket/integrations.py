"""Running a WebSocket route's integration: MOCK, AWS_PROXY (a function) or HTTP / HTTP_PROXY.

``invoke`` returns an ``Answer``: the status (``$connect`` accepts on 2xx), the headers (the
``$connect`` answer may choose a subprotocol with ``Sec-WebSocket-Protocol``) and the body that a
two-way route sends back to the client. A function's answer is read as AWS reads a WebSocket
Lambda proxy result: ``{"statusCode", "headers", "body", "isBase64Encoded"}`` when it has one of
those keys, else the JSON of whatever it returned (None: nothing to send).

HTTP and HTTP_PROXY integrations get a ``POST`` of the message body (empty for ``$connect`` and
``$disconnect``) with ``x-amzn-connectionid`` and ``x-amzn-routekey`` headers (AWS maps such
values with request parameters, which fastgw's WebSocket routes do not take).

Errors: ``IntegrationError`` (a failing function, an unreachable backend, an invalid answer)
and ``IntegrationTimeout``.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError

if TYPE_CHECKING:
    from fastgw.pipeline.runtime import Services
    from fastgw.websocket.config import WsIntegration

log = logging.getLogger("fastgw.websocket")


class IntegrationError(Exception):
    pass


class IntegrationTimeout(Exception):
    pass


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes | str | None) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


def function_answer(result: Any) -> Answer:
    """A function's return value as a WebSocket route reads it."""
    if isinstance(result, dict) and ("statusCode" in result or "body" in result):
        status = result.get("statusCode", 200)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise IntegrationError(f"invalid statusCode {status!r}")
        headers: list[tuple[str, str]] = []
        raw_headers = result.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise IntegrationError("headers must be an object")
        for k, v in raw_headers.items():
            headers.append((str(k), str(v)))
        body = result.get("body")
        if body is not None and not isinstance(body, str):
            body = orjson.dumps(body).decode()
        if body is not None and result.get("isBase64Encoded"):
            try:
                return Answer(status, headers, base64.b64decode(body, validate=True))
            except ValueError:
                raise IntegrationError("body is not base64") from None
        return Answer(status, headers, body)
    if result is None:
        return Answer(200, [], None)
    if isinstance(result, str):
        return Answer(200, [], result)
    try:
        return Answer(200, [], orjson.dumps(result).decode())
    except TypeError:
        raise IntegrationError("the function's result is not JSON") from None


async def call_function(
    integ: WsIntegration, event: dict[str, Any], svc: Services, request_id: str
) -> Answer:
    from fastgw.authorizers.runtime import call_function as call

    try:
        result = await call(integ.function, event, svc, integ.timeout, request_id)
    except FunctionTimeout:
        raise IntegrationTimeout() from None
    except FunctionError as ex:
        log.error(
            "websocket function failed",
            extra={
                "function": getattr(integ.function, "name", "?"),
                "error": f"{ex.error_type}: {ex.error_message}",
            },
        )
        raise IntegrationError(ex.error_message) from None
    except InvokeError as ex:
        log.error("websocket function unreachable", extra={"error": str(ex)})
        raise IntegrationError(str(ex)) from None
    return function_answer(result)


async def call_http(integ: WsIntegration, body: bytes, conn_id: str, route_key: str, svc: Services) -> Answer:
    from fastgw.upstream.client import HttpClientError, HttpClientTimeout

    http = integ.http
    assert http is not None
    headers = [
        ("content-type", "application/json"),
        ("x-amzn-connectionid", conn_id),
        ("x-amzn-routekey", route_key),
    ]
    try:
        resp = await svc.client.request(
            http.host,
            http.port,
            "POST",
            http.target,
            headers,
            body,
            integ.timeout,
            http.host_header,
            ssl=http.tls,
            max_response_bytes=10 * 1024 * 1024,
        )
    except HttpClientTimeout:
        raise IntegrationTimeout() from None
    except (HttpClientError, ValueError, OSError) as ex:
        log.error("websocket HTTP integration failed", extra={"error": str(ex)})
        raise IntegrationError(str(ex)) from None
    out_headers = [(k, v) for k, v in resp.headers]
    return Answer(resp.status, out_headers, resp.body)

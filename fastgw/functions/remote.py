"""Functions behind the Lambda Invoke API (AWS Lambda, the Runtime Interface Emulator, look-alikes).

``RemoteFunction.invoke`` sends ``POST {url}/2015-03-31/functions/{remote_name}/invocations`` with
the JSON event as the body and returns the function's parsed JSON result. Request headers:
``Content-Type: application/json``, ``X-Amz-Invocation-Type: RequestResponse`` and
``X-Amzn-RequestId: <request id>`` (RIE uses it as the invocation id, the handler's
``context.aws_request_id``; it generates a UUID without it). No SigV4: this talks to RIE-style
endpoints, not to the AWS control plane.

How the answer is read (RIE facts from aws/aws-lambda-runtime-interface-emulator,
cmd/aws-lambda-rie/handlers.go and util.go; AWS facts from the Invoke API reference):

* 200 and a JSON body: the result. AWS marks a function error with the header
  ``X-Amz-Function-Error: Unhandled`` (or ``Handled``) and the body
  ``{"errorMessage", "errorType", "stackTrace"}``. RIE never sends that header (its response
  writer proxy drops every header; RIE issue #20), so a 200 body that is exactly an error object
  (``errorType`` and ``errorMessage`` strings, no keys but those of the runtimes' error shapes:
  ``requestId``, ``stackTrace``, ``trace``, ``cause``) is taken as a function error too. A
  function that *returns* such an object is therefore reported as failed; for an API Gateway
  proxy integration such a result is invalid anyway.
* RIE reports a handler past its timeout with 200 and the plain-text body
  ``Task timed out after N.00 seconds`` (RIE issue #21); AWS with the error header and
  ``errorType: Sandbox.Timedout`` (or, in older runtimes, only an ``errorMessage`` ending in that
  sentence). Both raise ``FunctionTimeout``, as does our own deadline (``timeout``) passing.
* Any other status (RIE: 502 when the runtime crashed or its init failed, 400/500 on internal
  errors, 404 for an unknown function name), a body that is not JSON, or a transport failure
  raise ``InvokeError``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError
from fastgw.upstream.client import HttpClient, HttpClientError, HttpClientTimeout

__all__ = ["FunctionError", "FunctionTimeout", "InvokeError", "RemoteFunction"]

# The keys of the error objects the Lambda runtimes send (Python: errorMessage, errorType,
# requestId, stackTrace; Node.js: errorType, errorMessage, trace; Java adds cause).
_ERROR_KEYS = frozenset({"errorMessage", "errorType", "requestId", "stackTrace", "trace", "cause"})
_RIE_TIMEOUT = re.compile(rb"Task timed out after \d+(?:\.\d+)? seconds")
_TIMEOUT_SENTENCE = "Task timed out after "
_SNIPPET = 200  # bytes of an unexpected body quoted in an InvokeError


class RemoteFunction:
    """One function reached through the Lambda Invoke API at ``url`` (``http://host[:port][/base]``)."""

    __slots__ = (
        "_host",
        "_host_header",
        "_port",
        "_target",
        "client",
        "name",
        "remote_name",
        "timeout",
        "url",
    )

    def __init__(
        self, name: str, url: str, client: HttpClient, timeout: float, remote_name: str = "function"
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"function {name}: only http:// Invoke API URLs are supported, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"function {name}: no host in {url!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError(f"function {name}: {url!r} has userinfo, a query or a fragment")
        if not remote_name:
            raise ValueError(f"function {name}: empty remote function name")
        self.name = name
        self.url = url
        self.client = client
        self.timeout = timeout
        self.remote_name = remote_name
        self._host = parts.hostname
        self._port = parts.port or 80
        self._host_header = parts.netloc
        base = parts.path.rstrip("/")
        # Function names, versions and ARNs hold letters, digits, - _ : $ (ARN qualifiers).
        self._target = f"{base}/2015-03-31/functions/{quote(remote_name, safe=':$')}/invocations"

    def __repr__(self) -> str:
        return f"RemoteFunction({self.name!r}, {self.url!r}, remote_name={self.remote_name!r})"

    async def invoke(self, event: dict[str, Any], request_id: str, timeout: float | None = None) -> object:
        """Run the function on ``event``; return its parsed JSON result.

        Raises ``FunctionError`` (the function failed), ``FunctionTimeout`` (no answer within
        ``timeout`` (this call's, else the function's), or the function's own) or ``InvokeError``
        (anything else).
        """
        limit = self.timeout if timeout is None else timeout
        try:
            payload = orjson.dumps(event)
        except TypeError as ex:
            raise InvokeError(f"function {self.name}: the event is not JSON-serialisable: {ex}") from None
        headers = [
            ("Content-Type", "application/json"),
            ("X-Amz-Invocation-Type", "RequestResponse"),
            ("X-Amzn-RequestId", request_id),
        ]
        try:
            resp = await self.client.request(
                self._host,
                self._port,
                "POST",
                self._target,
                headers,
                payload,
                limit,
                self._host_header,
            )
        except HttpClientTimeout:
            raise FunctionTimeout(
                f"function {self.name} (request {request_id}): no answer within {limit:g}s"
            ) from None
        except HttpClientError as ex:
            raise InvokeError(f"function {self.name} (request {request_id}): {ex}") from None
        except ValueError as ex:  # the request id (or the URL) cannot be written into a request head
            raise InvokeError(f"function {self.name} (request {request_id}): {ex}") from None
        body = resp.body
        if resp.status != 200:
            raise InvokeError(
                f"function {self.name} (request {request_id}): the Invoke API answered {resp.status}"
                f" {body[:_SNIPPET]!r}"
            )
        try:
            result = orjson.loads(body)
        except orjson.JSONDecodeError:
            if _RIE_TIMEOUT.fullmatch(body.strip()):
                raise FunctionTimeout(
                    f"function {self.name} (request {request_id}): {body.strip().decode('ascii')}"
                ) from None
            raise InvokeError(
                f"function {self.name} (request {request_id}): the result is not JSON: {body[:_SNIPPET]!r}"
            ) from None
        marked = resp.header("x-amz-function-error")
        if marked is not None or _is_error_object(result):
            raise _function_failure(self.name, request_id, result, marked or "Unhandled")
        return result


def _is_error_object(result: object) -> bool:
    """Whether a 200 body is a runtime's error object (what RIE sends for a failed handler)."""
    return (
        type(result) is dict
        and isinstance(result.get("errorType"), str)
        and isinstance(result.get("errorMessage"), str)
        and result.keys() <= _ERROR_KEYS
    )


def _function_failure(
    name: str, request_id: str, result: object, default_type: str
) -> FunctionError | FunctionTimeout:
    """The exception for a function error body (any JSON value); ``default_type`` when it names none."""
    if type(result) is not dict:
        return FunctionError(
            default_type, result if isinstance(result, str) else orjson.dumps(result).decode()
        )
    error_type = result.get("errorType")
    error_message = result.get("errorMessage")
    error_type = error_type if isinstance(error_type, str) else ""
    error_message = error_message if isinstance(error_message, str) else ""
    if error_type == "Sandbox.Timedout" or (not error_type and _TIMEOUT_SENTENCE in error_message):
        return FunctionTimeout(f"function {name} (request {request_id}): {error_message}")
    trace = result.get("stackTrace", result.get("trace"))
    stack_trace = (
        [s if isinstance(s, str) else orjson.dumps(s).decode() for s in trace]
        if isinstance(trace, list)
        else []
    )
    return FunctionError(error_type or default_type, error_message, stack_trace)

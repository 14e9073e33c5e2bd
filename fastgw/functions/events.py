"""Lambda proxy events, Lambda proxy responses and Lambda authorizer events, as AWS builds them.

Everything here follows the AWS API Gateway developer guide, checked against events and
behaviour recorded from AWS where the guide is vague:

* REST APIs, "Set up Lambda proxy integrations" / "Input format of a Lambda function for proxy
  integration" and "Output format ...": ``build_event_v1`` / ``parse_response_v1``.
* HTTP APIs, "Create AWS Lambda proxy integrations for HTTP APIs" (payload format 1.0 and 2.0,
  "Lambda function response format" with response inference): ``build_event_v1`` /
  ``build_event_v2``, ``parse_response_v1`` / ``parse_response_v2``.
* "Input to an API Gateway Lambda authorizer" (REST, TOKEN and REQUEST) and "Working with AWS
  Lambda authorizers for HTTP APIs" (payload 1.0 and 2.0): the ``build_*authorizer_event*``
  functions.

Events
------
v1 (REST and HTTP payload 1.0): ``headers`` keeps the client's spelling and the *last* value of a
repeated header, ``multiValueHeaders`` every value; ``queryStringParameters`` the last value of a
repeated key, ``multiValueQueryStringParameters`` all of them (names and values URL-decoded, '+'
as space); ``pathParameters`` / ``stageVariables`` / both query maps are null when empty, ``body``
null when there is none. REST: ``path`` is the path inside the stage (on a custom domain: the
path as requested, API mapping included), ``requestContext.path`` the full path with the stage,
``resource`` / ``resourcePath`` the resource template, ``resourceId`` a stable opaque id; REST
drops ``Content-Length`` from the header maps (as AWS). HTTP payload 1.0: ``"version": "1.0"``
first, ``path`` is the full path (with a named stage's prefix or the API mapping, as AWS sends
it), ``resourceId`` the route key, ``requestContext.authorizer`` is always present (``{"claims":
null, "scopes": null}`` without an authorizer) and ``identity`` also has ``cognitoAmr``.

v2 (HTTP payload 2.0): header names lower-cased, repeated values joined with ',', ``Cookie``
headers moved to ``cookies`` (split on "; "), query values joined with ','; ``cookies``,
``queryStringParameters``, ``pathParameters``, ``stageVariables`` and ``body`` are left out when
empty, as AWS does. ``rawPath`` and ``requestContext.http.path`` are the full path with a
named stage's prefix, but without a custom domain's API mapping ("rawPath doesn't provide the
API mapping value").

``requestContext.authorizer``: ``req.authorizer`` holding a ``"jwt"`` key is a JWT authorizer's
result (``{"jwt": {"claims": ..., "scopes": ...}}``): v2 sends it as ``{"jwt": {...}}``, v1 as
``{"claims": ..., "scopes": ...}``. Anything else is a Lambda authorizer's result
(``{"principalId": ..., **context}``, or the bare context of a simple response): v1 sends it flat
as it is; v2 sends ``{"lambda": context}`` (``principalId`` is not part of the context).

Request bodies are text (``isBase64Encoded`` false) unless ``body_is_binary``: REST APIs encode
a body whose Content-Type matches ``binaryMediaTypes``; HTTP APIs send as text only ``text/*``,
``application/json``, ``application/xml`` and ``application/javascript`` and base64-encode every
other body (``application/x-www-form-urlencoded`` and a missing Content-Type included).

Responses
---------
``BadResponse`` is raised where AWS answers with an error instead; its ``status`` is what AWS
sends: 502 for a malformed proxy response of a REST API, 500 on HTTP APIs ("Internal Server
Error") and for a REST base64 body that cannot be decoded.

* REST (1.0): an object with only ``statusCode``, ``headers``, ``multiValueHeaders``, ``body`` and
  ``isBase64Encoded``, not empty; any other key is a malformed response. ``statusCode`` defaults to
  200, may be a numeric string; ``body`` a string; header values strings or booleans (numbers
  are written as JSON writes them), null values dropped; ``multiValueHeaders`` values lists and
  their names replace the same names of ``headers``. Without a Content-Type the response gets
  ``application/json``. A base64 body is decoded only when the request's first ``Accept`` media
  type matches ``binaryMediaTypes``; otherwise the client receives the base64 text.
* HTTP payload 1.0: the same shape, but ``statusCode`` is required, unknown keys are ignored and a
  base64 body is always decoded.
* HTTP payload 2.0: a result without ``statusCode`` is inferred (200, ``application/json``, the
  result's JSON as body; a string result is the body itself), except an object with
  ``errorMessage`` (a function error: 500). ``cookies`` become ``set-cookie`` headers, unknown
  keys are ignored and a base64 body is always decoded.
* HTTP APIs (both formats): a response with a ``statusCode`` but no Content-Type gets
  ``text/plain; charset=utf-8``.

Whatever Lambda itself could not serialise (a set, an arbitrary object; ``Decimal`` is written
as a number, as the Python runtime does) is a ``BadResponse`` too, unknown keys included.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.pipeline.request import Request, Response
from fastgw_core import _env

if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = [
    "BadResponse",
    "body_is_binary",
    "build_event_v1",
    "build_event_v2",
    "build_request_authorizer_event_v1",
    "build_request_authorizer_event_v2",
    "build_token_authorizer_event",
    "parse_response_v1",
    "parse_response_v2",
]


class BadResponse(Exception):
    """The function's result is not a valid Lambda proxy response; ``str(ex)`` says why.

    ``status`` is the status AWS answers with: 502 (REST APIs, "Malformed Lambda proxy
    response"), 500 (HTTP APIs, and a REST base64 body that cannot be decoded).
    """

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------- the compiled per-request half
# The route constants (``_Static``), the helpers and the proxy events are compiled
# (``fastgw.functions._lambda_py``, built as ``_lambda_c``; ``FASTGW_NO_EXTENSIONS=1`` selects the
# Python build): both builds make the same dicts, key order included.
_impl, COMPILED = _env.select("fastgw.functions._lambda_c", "fastgw.functions._lambda_py")

_Static = _impl._Static
#: The route's event constants (``route.event_static``), built on first use.
_static_of: Callable[[Request], Any] = _impl._static_of
_staged: Callable[[Request, str], bool] = _impl._staged
_request_time: Callable[[int], str] = _impl._request_time
_unquote: Callable[[str], str] = _impl._unquote
_query_v1: Callable[[str], tuple[dict[str, str] | None, dict[str, list[str]] | None]] = _impl._query_v1
_headers_v1: Callable[
    [list[tuple[str, str]], bool, bool], tuple[dict[str, str], dict[str, list[str]], str | None]
] = _impl._headers_v1
_header: Callable[[Request, str], str | None] = _impl._header
_media_type: Callable[[str | None], str | None] = _impl._media_type
_binary: Callable[[Request, Any], bool] = _impl._binary
_body: Callable[[Request, Any], tuple[str | None, bool]] = _impl._body
_identity: Callable[[Request, Any, str | None, bool], dict[str, Any]] = _impl._identity
_authorizer_v1: Callable[[dict[str, Any]], dict[str, Any]] = _impl._authorizer_v1
_authorizer_v2: Callable[[dict[str, Any]], dict[str, Any]] = _impl._authorizer_v2
_context_v1: Callable[..., dict[str, Any]] = _impl._context_v1
_parts_v2: Callable[[Request, Any, bool], tuple[dict[str, str], list[str] | None, dict[str, Any]]] = (
    _impl._parts_v2
)
_fill_v2: Callable[[dict[str, Any], str, list[str] | None, dict[str, str], dict[str, Any]], None] = (
    _impl._fill_v2
)
body_is_binary: Callable[[Request], bool] = _impl.body_is_binary
#: The Lambda proxy event of a REST API, or of an HTTP API with payload format 1.0.
build_event_v1: Callable[[Request], dict[str, Any]] = _impl.build_event_v1
#: The Lambda proxy event of an HTTP API with payload format 2.0.
build_event_v2: Callable[[Request], dict[str, Any]] = _impl.build_event_v2
#: A payload 1.0 response of the common shape as the reply the gateway writes, else None
#: (``fastgw.pipeline.runtime.fast_reply_v1``).
fast_reply_v1: Callable[[Any, bool], Any] = _impl.fast_reply_v1
#: An AWS_PROXY integration (``fastgw.pipeline.build.function_integration``).
FunctionRoute = _impl.FunctionRoute


# ----------------------------------------------------------------------- authorizer events
def build_token_authorizer_event(req: Request, token: str, method_arn: str) -> dict[str, Any]:
    """The input of a REST TOKEN authorizer: type, authorizationToken, methodArn."""
    return {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}


def build_request_authorizer_event_v1(
    req: Request, method_arn: str, identity_source: Iterable[str] | None = None
) -> dict[str, Any]:
    """The input of a REST REQUEST authorizer, or of an HTTP API authorizer with payload 1.0.

    The request's parameters as in a proxy event (without body), ``type`` and ``methodArn``;
    empty maps are ``{}`` here (AWS's examples). HTTP APIs add ``"version": "1.0"`` and, when
    ``identity_source`` (the identity source values, in order) is given, ``identitySource`` and
    ``authorizationToken`` (both the values joined with ',') and leave out the multi-value maps.
    """
    st = _static_of(req)
    rest = st.rest
    headers, multi, ua = _headers_v1(req.headers, rest, bool(req.body))
    query = req.query
    if query:
        qs, mqs = _query_v1(query)
    else:
        qs = mqs = None
    params = req.params
    variables = st.variables
    ctx = _context_v1(req, st, ua, True)
    if rest:
        return {
            "type": "REQUEST",
            "methodArn": method_arn,
            "resource": st.resource,
            "path": req.resource_path if _staged(req, st.stage_prefix) else req.path,
            "httpMethod": req.method,
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": qs or {},
            "multiValueQueryStringParameters": mqs or {},
            "pathParameters": dict(params) if params else {},
            "stageVariables": dict(variables) if variables else {},
            "requestContext": ctx,
        }
    event: dict[str, Any] = {"version": "1.0", "type": "REQUEST", "methodArn": method_arn}
    if identity_source is not None:
        joined = ",".join(identity_source)
        event["identitySource"] = joined
        event["authorizationToken"] = joined
    event["resource"] = st.resource
    event["path"] = req.path
    event["httpMethod"] = req.method
    event["headers"] = headers
    event["queryStringParameters"] = qs or {}
    event["pathParameters"] = dict(params) if params else {}
    event["stageVariables"] = dict(variables) if variables else {}
    event["requestContext"] = ctx
    return event


def build_request_authorizer_event_v2(
    req: Request, route_arn: str, identity_source: list[str]
) -> dict[str, Any]:
    """The input of an HTTP API Lambda authorizer with payload format 2.0."""
    st = _static_of(req)
    headers, cookies, ctx = _parts_v2(req, st, False)
    query = req.query
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": route_arn,
        "identitySource": list(identity_source),
        "routeKey": st.route_key,
        "rawPath": ctx["http"]["path"],
        "rawQueryString": query,
    }
    _fill_v2(event, query, cookies, headers, ctx)
    params = req.params
    if params:
        event["pathParameters"] = dict(params)
    variables = st.variables
    if variables:
        event["stageVariables"] = dict(variables)
    return event


# ------------------------------------------------------------------------------ responses
_V1_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
_V2_KEYS = frozenset({"statusCode", "headers", "cookies", "body", "isBase64Encoded"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_JSON_OPTS = orjson.OPT_NON_STR_KEYS


def _json_default(o: object) -> Any:
    # The Python Lambda runtime serialises Decimal as a number; anything else it cannot write.
    if isinstance(o, Decimal):
        return float(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _kind(o: object) -> str:
    if o is None:
        return "null"
    if isinstance(o, bool):
        return "a boolean"
    if isinstance(o, str):
        return "a string"
    if isinstance(o, (int, float, Decimal)):
        return "a number"
    if isinstance(o, (list, tuple)):
        return "an array"
    if isinstance(o, dict):
        return "an object"
    return f"a {type(o).__name__} (not JSON)"


def _check_json(values: Iterable[object], status: int) -> None:
    """Raise BadResponse when Lambda could not have serialised the function's result."""
    try:
        orjson.dumps(list(values), default=_json_default, option=_JSON_OPTS)
    except TypeError as ex:
        raise BadResponse(f"the result is not JSON-serializable: {ex}", status) from None


def _status(value: object, default: int | None, status: int) -> int:
    t = type(value)
    if t is int:
        code: int = value  # type: ignore[assignment]
    elif value is None:
        if default is None:
            raise BadResponse("statusCode is missing", status)
        return default
    elif t is str and value.isascii() and value.isdigit():  # type: ignore[attr-defined]
        code = int(value)  # type: ignore[call-overload]
    elif t is float and value.is_integer():  # type: ignore[attr-defined]
        code = int(value)  # type: ignore[call-overload]
    elif t is Decimal and value == value.to_integral_value():  # type: ignore[attr-defined]
        code = int(value)  # type: ignore[call-overload]
    else:
        raise BadResponse(f"statusCode must be an integer, got {value!r}", status)
    if not 100 <= code <= 599:
        raise BadResponse(f"statusCode {code} is not an HTTP status", status)
    return code


def _scalar(value: object, what: str, status: int) -> str:
    """A header value or body given as a JSON scalar, as text (JSON's spelling for non-strings)."""
    t = type(value)
    if t is str:
        return value  # type: ignore[return-value]
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float or t is Decimal:
        return orjson.dumps(float(value)).decode()  # type: ignore[arg-type]
    raise BadResponse(f"{what} must be a string, got {_kind(value)}", status)


def _header_value(value: object, status: int) -> str:
    text = _scalar(value, "a header value", status)
    if "\n" in text or "\r" in text or "\0" in text:
        raise BadResponse("a header value contains CR, LF or NUL", status)
    return text


_names: dict[str, str] = {}  # valid header names seen in responses -> lower-case


def _header_lname(name: object, status: int) -> str:
    """The lower-cased header name; BadResponse unless it is an HTTP token."""
    lname = _names.get(name)  # type: ignore[call-overload]
    if lname is None:
        if type(name) is not str or _TOKEN(name) is None:
            raise BadResponse(f"invalid header name {name!r}", status)
        lname = name.lower()
        if len(_names) < 4096:
            _names[name] = lname
    return lname


def _body_bytes(result: dict[Any, Any], status: int) -> tuple[bytes, bool]:
    """(body, isBase64Encoded) of a structured response; the body not yet decoded."""
    body = result.get("body")
    if body is None:
        data = b""
    else:
        try:
            data = _scalar(body, "body", status).encode("utf-8")
        except UnicodeEncodeError:
            raise BadResponse("body is not valid Unicode", status) from None
    b64 = result.get("isBase64Encoded")
    if b64 is None or b64 is False:
        return data, False
    if b64 is True:
        return data, True
    if type(b64) is str and b64.lower() in ("true", "false"):
        return data, b64.lower() == "true"
    raise BadResponse(f"isBase64Encoded must be a boolean, got {_kind(b64)}", status)


def _b64decode(data: bytes, status: int) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadResponse("isBase64Encoded is true but the body is not valid base64", status) from None


def _accept_is_binary(req: Request, st: _Static) -> bool:
    """AWS (REST): "API Gateway only honors the first Accept media type" for binary responses."""
    accept = _header(req, "accept")
    if accept is None:
        return st.bin_all
    return st.binary(_media_type(accept.partition(",")[0]))


def parse_response_v1(result: object, req: Request) -> Response:
    """Turn a payload 1.0 Lambda proxy response into the HTTP response AWS would send."""
    st = _static_of(req)
    rest = st.rest
    err = 502 if rest else 500
    if not isinstance(result, dict):
        raise BadResponse(f"the response must be a JSON object, got {_kind(result)}", err)
    if rest:
        if not result:
            raise BadResponse("the response is an empty object", err)
        if not result.keys() <= _V1_KEYS:
            extra = sorted(str(k) for k in result.keys() - _V1_KEYS)
            raise BadResponse(f"unexpected keys in the response: {', '.join(extra)}", err)
    elif not result.keys() <= _V1_KEYS:
        _check_json((v for k, v in result.items() if k not in _V1_KEYS), err)
    status = _status(result.get("statusCode"), 200 if rest else None, err)

    out: list[tuple[str, str]] = []
    has_type = False
    single = result.get("headers")
    multi = result.get("multiValueHeaders")
    replaced: set[str] = set()
    if multi is not None:
        if not isinstance(multi, dict):
            raise BadResponse(f"multiValueHeaders must be an object, got {_kind(multi)}", err)
        for name, values in multi.items():
            if not isinstance(values, (list, tuple)):
                raise BadResponse(f"multiValueHeaders[{name!r}] must be an array, got {_kind(values)}", err)
            replaced.add(_header_lname(name, err))
    if single is not None:
        if not isinstance(single, dict):
            raise BadResponse(f"headers must be an object, got {_kind(single)}", err)
        for name, value in single.items():
            lname = _header_lname(name, err)
            if lname == "content-type":
                has_type = True
            if value is None or lname in replaced:
                continue
            out.append((name, _header_value(value, err)))
    if multi:
        for name, values in multi.items():
            if _header_lname(name, err) == "content-type":
                has_type = True
            for value in values:
                if value is not None:
                    out.append((name, _header_value(value, err)))
    if not has_type:
        out.insert(0, ("Content-Type", "application/json" if rest else "text/plain; charset=utf-8"))

    data, b64 = _body_bytes(result, err)
    if b64 and (not rest or _accept_is_binary(req, st)):
        data = _b64decode(data, 500)
    return Response(status, out, data)


def _inferred(body: bytes) -> Response:
    return Response(200, [("Content-Type", "application/json")], body)


def parse_response_v2(result: object, req: Request) -> Response:
    """Turn a payload 2.0 Lambda proxy response into the HTTP response AWS would send.

    Without ``statusCode`` the response is inferred ("Lambda function response format"): 200,
    ``content-type: application/json``, the function's output as body (a string output is the
    body itself, anything else its JSON).
    """
    if isinstance(result, str):
        try:
            return _inferred(result.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadResponse("the response is not valid Unicode", 500) from None
    if not isinstance(result, dict) or result.get("statusCode") is None:
        if isinstance(result, dict) and "errorMessage" in result:
            # What Lambda returns for a failed invocation: AWS answers 500.
            raise BadResponse(f"the function returned an error: {result['errorMessage']!r}", 500)
        try:
            body = orjson.dumps(result, default=_json_default, option=_JSON_OPTS)
        except TypeError as ex:
            raise BadResponse(f"the result is not JSON-serializable: {ex}", 500) from None
        return _inferred(body)

    err = 500
    if not result.keys() <= _V2_KEYS:
        _check_json((v for k, v in result.items() if k not in _V2_KEYS), err)
    status = _status(result["statusCode"], None, err)
    out: list[tuple[str, str]] = []
    has_type = False
    headers = result.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise BadResponse(f"headers must be an object, got {_kind(headers)}", err)
        for name, value in headers.items():
            if _header_lname(name, err) == "content-type":
                has_type = True
            if value is not None:
                out.append((name, _header_value(value, err)))
    if not has_type:
        out.insert(0, ("Content-Type", "text/plain; charset=utf-8"))
    cookies = result.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, (list, tuple)):
            raise BadResponse(f"cookies must be an array, got {_kind(cookies)}", err)
        for cookie in cookies:
            if cookie is not None:
                out.append(("set-cookie", _header_value(cookie, err)))
    data, b64 = _body_bytes(result, err)
    if b64:
        data = _b64decode(data, err)
    return Response(status, out, data)

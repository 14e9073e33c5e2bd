# cython: annotation_typing=False
"""The per-request half of an AWS_PROXY route: the Lambda proxy event in, the handler's first
step, the common payload 1.0 response out, in one coroutine per request.

This file is compiled as ``_lambda_c`` (Cython pure-Python mode, as ``fastgw.telemetry._access``);
``fastgw.functions.events`` binds the compiled build unless it is missing or disabled
(``FASTGW_NO_EXTENSIONS=1``), and documents what the events hold (``build_event_v1``,
``build_event_v2``). Both builds make the same dicts, key order included.

PERF: what a route's events share is computed once (``_Static``, kept in
``route.event_static``), with templates of the event and of its ``requestContext`` that hold
the route's constants in AWS's key order: an event is a ``dict.copy()`` of them with the
request's values filled in (cheaper than a dict display of the same keys). ``fast_reply_v1``
writes a payload 1.0 response of the common shape straight to a ``LocalReply``. ``FunctionCore``
(the base of ``registry.LocalFunction``) and ``LambdaContext`` are extension types; an async
handler's first step is taken with ``PyIter_Send`` (no StopIteration). ``FunctionRoute`` is the
integration: ``serve`` is the Task of a request of a route that has nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import traceback
import uuid
from asyncio import CancelledError
from time import gmtime, monotonic
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError
from fastgw.server.replies import (
    INTEGRATION_FAILURE,
    INTEGRATION_TIMEOUT,
    INTERNAL_ERROR,
    STATUS_LINE,
    LocalReply,
    status_line,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from concurrent.futures import Executor

    from fastgw.config.compile import RouteRuntime
    from fastgw.pipeline.request import Request

log = logging.getLogger("fastgw.pipeline")
_FAILURES = (FunctionTimeout, FunctionError, InvokeError)

#: This source runs as ``_lambda_c`` (compiled) or as ``_lambda_py`` (plain Python, where no
#: ``cython`` module may be installed at run time).
_COMPILED = __name__.endswith("_lambda_c") and not __file__.endswith(".py")  # not the build copy


# ------------------------------------------------------------------------ per-route constants
# requestContext.identity: every key null but sourceIp and userAgent (no IAM / Cognito auth).
_IDENTITY_REST: dict[str, Any] = dict.fromkeys(
    (
        "accessKey",
        "accountId",
        "caller",
        "cognitoAuthenticationProvider",
        "cognitoAuthenticationType",
        "cognitoIdentityId",
        "cognitoIdentityPoolId",
        "principalOrgId",
        "sourceIp",
        "user",
        "userAgent",
        "userArn",
    )
)
# HTTP APIs' 1.0 events also carry cognitoAmr (recorded AWS events; not in the guide's example).
_IDENTITY_HTTP: dict[str, Any] = dict.fromkeys(
    (
        "accessKey",
        "accountId",
        "caller",
        "cognitoAmr",
        "cognitoAuthenticationProvider",
        "cognitoAuthenticationType",
        "cognitoIdentityId",
        "cognitoIdentityPoolId",
        "principalOrgId",
        "sourceIp",
        "user",
        "userAgent",
        "userArn",
    )
)
_NO_AUTHORIZER: dict[str, Any] = {"claims": None, "scopes": None}
# The keys of a v1 requestContext, in AWS's order ("authorizer": HTTP APIs only, and not in an
# authorizer's input).
_CTX_V1_KEYS = (
    "accountId",
    "apiId",
    "authorizer",
    "domainName",
    "domainPrefix",
    "extendedRequestId",
    "httpMethod",
    "identity",
    "path",
    "protocol",
    "requestId",
    "requestTime",
    "requestTimeEpoch",
    "resourceId",
    "resourcePath",
    "stage",
)
_EVENT_V1_REST_KEYS = (
    "resource",
    "path",
    "httpMethod",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "stageVariables",
    "requestContext",
    "body",
    "isBase64Encoded",
)
_EVENT_V1_HTTP_KEYS = (
    "version",
    "resource",
    "path",
    "httpMethod",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "requestContext",
    "pathParameters",
    "stageVariables",
    "body",
    "isBase64Encoded",
)
_CTX_V2_KEYS = (
    "accountId",
    "apiId",
    "domainName",
    "domainPrefix",
    "http",
    "requestId",
    "routeKey",
    "stage",
    "time",
    "timeEpoch",
)


class _Static:
    """What the events of one route share; built once and kept in ``route.event_static``."""

    def __init__(self, route: RouteRuntime) -> None:
        api = route.api
        self.rest = api.kind != "http"
        self.api_id = api.id
        self.account_id = api.account_id
        self.stage = route.stage.name
        #: The deployment the stage serves (requestContext.deploymentId), None: the config's.
        self.deployment_id = route.stage.deployment_id
        # What a stage adds in front of the path on the execute-api host ("/prod").
        self.stage_prefix = "" if self.stage == "$default" else "/" + self.stage
        self.variables = dict(route.stage.variables) or None
        self.route_key = route.key
        self.key_required = route.api_key_required
        template = route.template
        if self.rest:
            self.resource = template or "/"
            # AWS resource ids are opaque [a-z0-9] strings ("roq9wj"); keep ours stable.
            digest = int.from_bytes(hashlib.sha1(f"{api.id}\0{self.resource}".encode()).digest()[:8])
            rid = ""
            for _ in range(6):
                digest, d = divmod(digest, 36)
                rid += "0123456789abcdefghijklmnopqrstuvwxyz"[d]
            self.resource_id = rid
        else:
            self.resource = template or "$default"
            self.resource_id = route.key
        self.default_domain = f"{api.id}.execute-api.{api.region}.amazonaws.com"
        # (Host, domainName, domainPrefix) of the last request; no Host: the execute-api name.
        self.domain = ("", self.default_domain, api.id)
        types = api.binary_types
        self.bin_all = "*/*" in types
        self.bin_exact = frozenset(t for t in types if not t.endswith("/*"))
        self.bin_prefixes = tuple(t[: len(t) - 1] for t in types if t.endswith("/*") and t != "*/*")
        # Templates (see the module's PERF note): the route's constants in place, None elsewhere.
        ctx: dict[str, Any] = dict.fromkeys(_CTX_V1_KEYS)
        ctx["accountId"] = self.account_id
        ctx["apiId"] = self.api_id
        ctx["resourceId"] = self.resource_id
        ctx["resourcePath"] = self.resource
        ctx["stage"] = self.stage
        if self.rest:
            del ctx["authorizer"]
            if self.deployment_id is not None:
                ctx["deploymentId"] = self.deployment_id
            self.ctx_v1 = ctx
            self.ctx_v1_auth = ctx
            event = dict.fromkeys(_EVENT_V1_REST_KEYS)
        else:
            self.ctx_v1 = ctx
            self.ctx_v1_auth = {k: v for k, v in ctx.items() if k != "authorizer"}
            event = dict.fromkeys(_EVENT_V1_HTTP_KEYS)
            event["version"] = "1.0"
        event["resource"] = self.resource
        event["isBase64Encoded"] = False
        self.event_v1 = event
        ctx = dict.fromkeys(_CTX_V2_KEYS)
        ctx["accountId"] = self.account_id
        ctx["apiId"] = self.api_id
        ctx["routeKey"] = self.route_key
        ctx["stage"] = self.stage
        self.ctx_v2 = ctx

    def domain_of(self, host: str) -> tuple[str, str, str]:
        cached = self.domain
        if cached[0] == host:
            return cached
        name = host or self.default_domain
        cached = (host, name, name.partition(".")[0])
        self.domain = cached
        return cached

    def binary(self, media_type: str | None) -> bool:
        """Whether a media type (lower-case, no parameters) matches binaryMediaTypes."""
        if self.bin_all:
            return True
        if media_type is None:
            return False
        if media_type in self.bin_exact:
            return True
        for p in self.bin_prefixes:
            if media_type.startswith(p):
                return True
        return False


def _copy(mapping: Any) -> dict[str, str]:
    """``dict(mapping)``; PERF: ``dict.copy`` for a dict."""
    if type(mapping) is dict:
        d = mapping
        return d.copy()
    return dict(mapping)


def _static(route: RouteRuntime) -> _Static:
    st = _Static(route)
    route.event_static = st
    return st


def _static_of(req: Request) -> _Static:
    route = req.route
    st = route.event_static
    if st is None:
        st = _static(route)
    return st


def _staged(req: Request, prefix: str) -> bool:
    """Whether ``req.path`` is the stage prefix plus the resource path (execute-api style).

    Otherwise the request came through a custom domain's API mapping (base path).
    """
    return _is_staged(req.path, req.resource_path, prefix)


def _is_staged(path: str, rpath: str, prefix: str) -> bool:
    # ``path == prefix + rpath``, without making that string.
    if len(path) == len(prefix) + len(rpath) and path.startswith(prefix) and path.endswith(rpath):
        return True
    return rpath == "/" and path == prefix


# -------------------------------------------------------------------------------- helpers
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_clock_sec = -1
_clock_text = ""


def _request_time(ms: int) -> str:
    """CLF time of ``ms`` ("09/Apr/2015:12:34:56 +0000"); formatted once per second."""
    global _clock_sec, _clock_text
    sec = ms // 1000
    if sec == _clock_sec:
        return _clock_text
    t = gmtime(sec)
    text = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _clock_sec = sec
    _clock_text = text
    return text


def _unquote(s: str) -> str:
    return unquote_plus(s) if "%" in s or "+" in s else s


def _query_v1(query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = _unquote(name)
        if not name:
            continue
        value = _unquote(value)
        single[name] = value
        values = multi.get(name)
        if values is None:
            multi[name] = [value]
        else:
            values.append(value)
    if not single:
        return None, None
    return single, multi


def _query_v2(query: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = _unquote(name)
        if not name:
            continue
        value = _unquote(value)
        old = out.get(name)
        out[name] = value if old is None else f"{old},{value}"
    return out or None


def _headers_v1(
    headers: list[tuple[str, str]], rest: bool, has_body: bool
) -> tuple[dict[str, str], dict[str, list[str]], str | None]:
    """(headers, multiValueHeaders, User-Agent) of a v1 event."""
    single = {}
    multi = {}
    for name, value in headers:
        single[name] = value  # a repeated name keeps its last value, as AWS's ``headers``
        multi[name] = [value]
    if len(single) == len(headers):  # no repeated name: the usual case
        # REST APIs do not pass Content-Length to the function (Request has one with a body).
        if rest:
            if single.pop("Content-Length", None) is not None:
                del multi["Content-Length"]
            elif single.pop("content-length", None) is not None:
                del multi["content-length"]
            elif has_body:
                for name in [n for n in single if len(n) == 14 and n.lower() == "content-length"]:
                    del single[name]
                    del multi[name]
    else:
        single = {}
        multi = {}
        for name, value in headers:
            if rest and len(name) == 14 and name.lower() == "content-length":
                continue
            single[name] = value
            values = multi.get(name)
            if values is None:
                multi[name] = [value]
            else:
                values.append(value)
    ua = single.get("User-Agent")
    if ua is None:
        ua = single.get("user-agent")
        if ua is None:
            for name, value in single.items():
                if len(name) == 10 and name.lower() == "user-agent":
                    ua = value
    return single, multi, ua


def _header(req: Request, lname: str) -> str | None:
    """The first header ``lname`` (lower-case), without building the request's header map."""
    n = len(lname)
    for name, value in req.headers:
        if len(name) == n and name.lower() == lname:
            return value
    return None


def _media_type(value: str | None) -> str | None:
    if value is None:
        return None
    return value.partition(";")[0].strip().lower()


_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})


def _binary(req: Request, st: _Static) -> bool:
    media_type = _media_type(_header(req, "content-type"))
    if st.rest:
        return st.binary(media_type)
    return media_type is None or not (media_type.startswith("text/") or media_type in _TEXT_TYPES)


def body_is_binary(req: Request) -> bool:
    """Whether AWS passes this request's body base64-encoded (``isBase64Encoded``).

    REST APIs: the Content-Type matches the API's binaryMediaTypes (exact, ``type/*``, ``*/*``).
    HTTP APIs: anything but ``text/*``, ``application/json``, ``application/xml`` and
    ``application/javascript`` (a missing Content-Type included).
    """
    return _binary(req, _static_of(req))


def _body(req: Request, st: _Static) -> tuple[str | None, bool]:
    body = req.body
    if not body:
        return None, False
    if _binary(req, st):
        return base64.b64encode(body).decode("ascii"), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace"), False


def _identity(req: Request, st: _Static, ua: str | None, for_authorizer: bool) -> dict[str, Any]:
    iam = req.iam
    cert = req.client_cert
    if st.rest:
        identity = _IDENTITY_REST.copy()
        identity["sourceIp"] = req.source_ip
        identity["userAgent"] = ua
        if cert is not None:  # mutual TLS: $context.identity.clientCert
            identity["clientCert"] = cert
        # $context.identity.apiKey / apiKeyId: set for methods that require an API key.
        key_id = req.api_key_id
        if key_id is not None:
            key = req.api_key
            identity["apiKey"] = key if key is not None else req.usage_key
            identity["apiKeyId"] = key_id
        elif for_authorizer and st.key_required:
            identity["apiKey"] = req.api_key
        # AWS_IAM: the verified caller's accessKey, accountId, caller, user, userArn.
        if iam is not None:
            identity.update(iam)
        return identity
    identity = _IDENTITY_HTTP.copy()
    identity["sourceIp"] = req.source_ip
    identity["userAgent"] = ua
    if cert is not None:  # mutual TLS: $context.identity.clientCert
        identity["clientCert"] = cert
    if iam is not None:
        identity.update(iam)
    return identity


def _authorizer_v1(auth: dict[str, Any]) -> dict[str, Any]:
    jwt = auth.get("jwt")
    if isinstance(jwt, dict):
        return {"claims": jwt.get("claims"), "scopes": jwt.get("scopes")}
    return dict(auth)


def _authorizer_v2(auth: dict[str, Any]) -> dict[str, Any]:
    jwt = auth.get("jwt")
    if isinstance(jwt, dict):
        return {"jwt": {"claims": jwt.get("claims"), "scopes": jwt.get("scopes")}}
    return {"lambda": {k: v for k, v in auth.items() if k != "principalId"}}


def _context_v1(req: Request, st: _Static, ua: str | None, for_authorizer: bool = False) -> dict[str, Any]:
    return _ctx_v1(req, st, ua, for_authorizer, req.path, req.method)


def _ctx_v1(
    req: Request, st: _Static, ua: str | None, for_authorizer: bool, path: str, method: str
) -> dict[str, Any]:
    ms = req.time_ms
    rid = req.request_id
    domain = st.domain_of(req.domain)
    auth = req.authorizer
    if for_authorizer:
        ctx = st.ctx_v1_auth.copy()
    else:
        ctx = st.ctx_v1.copy()
        if not st.rest:
            ctx["authorizer"] = _authorizer_v1(auth) if auth is not None else _NO_AUTHORIZER.copy()
    ctx["domainName"] = domain[1]
    ctx["domainPrefix"] = domain[2]
    ctx["extendedRequestId"] = rid
    ctx["httpMethod"] = method
    ctx["identity"] = _identity(req, st, ua, for_authorizer)
    ctx["path"] = path
    ctx["protocol"] = req.http_version
    ctx["requestId"] = rid
    ctx["requestTime"] = _request_time(ms)
    ctx["requestTimeEpoch"] = ms
    if st.rest and auth is not None and not for_authorizer:
        ctx["authorizer"] = _authorizer_v1(auth)
    return ctx


# ------------------------------------------------------------------------------ v1 events
def build_event_v1(req: Request) -> dict[str, Any]:
    """The Lambda proxy event of a REST API, or of an HTTP API with payload format 1.0."""
    st = _static_of(req)
    rest = st.rest
    body = req.body
    path = req.path
    method = req.method
    headers, multi, ua = _headers_v1(req.headers, rest, bool(body))
    event = st.event_v1.copy()
    if rest and _is_staged(path, req.resource_path, st.stage_prefix):
        event["path"] = req.resource_path
    else:
        event["path"] = path
    event["httpMethod"] = method
    if headers:
        event["headers"] = headers
    if multi:
        event["multiValueHeaders"] = multi
    query = req.query
    if query:
        qs, mqs = _query_v1(query)
        if qs is not None:
            event["queryStringParameters"] = qs
            event["multiValueQueryStringParameters"] = mqs
    params = req.params
    if params:
        event["pathParameters"] = _copy(params)
    variables = st.variables
    if variables:
        event["stageVariables"] = variables.copy()
    event["requestContext"] = _ctx_v1(req, st, ua, False, path, method)
    if body:
        text, b64 = _body(req, st)
        event["body"] = text
        if b64:
            event["isBase64Encoded"] = True
    return event


# ------------------------------------------------------------------------------ v2 events
def _parts_v2(
    req: Request, st: _Static, with_authorizer: bool
) -> tuple[dict[str, str], list[str] | None, dict[str, Any]]:
    raw = req.headers
    headers = {}
    for name, value in raw:
        headers[name.lower()] = value
    cookies: list[str] | None = None
    if len(headers) == len(raw):  # no repeated name: the usual case
        cookie = headers.pop("cookie", None)
        if cookie is not None:
            cookies = [c for c in cookie.split("; ") if c]
    else:
        headers = {}
        for name, value in raw:
            lname = name.lower()
            if lname == "cookie":
                if cookies is None:
                    cookies = []
                cookies.extend([c for c in value.split("; ") if c])
                continue
            old = headers.get(lname)
            headers[lname] = value if old is None else f"{old},{value}"
    ms = req.time_ms
    domain = st.domain_of(req.domain)
    # rawPath: the path with a named stage's prefix; "rawPath doesn't provide the API mapping
    # value" of a custom domain (AWS), so a mapped request's path is the one inside the stage.
    path = req.path
    if not _is_staged(path, req.resource_path, st.stage_prefix):
        path = req.resource_path
    ctx = st.ctx_v2.copy()
    ctx["domainName"] = domain[1]
    ctx["domainPrefix"] = domain[2]
    ctx["http"] = {
        "method": req.method,
        "path": path,
        "protocol": req.http_version,
        "sourceIp": req.source_ip,
        "userAgent": headers.get("user-agent", ""),
    }
    ctx["requestId"] = req.request_id
    ctx["time"] = _request_time(ms)
    ctx["timeEpoch"] = ms
    if with_authorizer:
        auth = req.authorizer
        if auth is not None:
            ctx["authorizer"] = _authorizer_v2(auth)
        else:
            iam = req.iam
            if iam is not None:
                # AWS_IAM on payload 2.0: requestContext.authorizer.iam (AWS's example event).
                ctx["authorizer"] = {
                    "iam": {
                        "accessKey": iam.get("accessKey"),
                        "accountId": iam.get("accountId"),
                        "callerId": iam.get("caller"),
                        "cognitoIdentity": None,
                        "principalOrgId": None,
                        "userArn": iam.get("userArn"),
                        "userId": iam.get("user"),
                    }
                }
    cert = req.client_cert
    if cert is not None:
        # Mutual TLS on payload 2.0: requestContext.authentication.clientCert.
        ctx["authentication"] = {"clientCert": cert}
    return headers, cookies, ctx


def _fill_v2(
    event: dict[str, Any], query: str, cookies: list[str] | None, headers: dict[str, str], ctx: dict[str, Any]
) -> None:
    """A payload 2.0 event's (a proxy event's or an authorizer's) fields after its head, in
    AWS's order: ``cookies``, ``headers``, ``queryStringParameters``, ``requestContext``."""
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        qs = _query_v2(query)
        if qs is not None:
            event["queryStringParameters"] = qs
    event["requestContext"] = ctx


def build_event_v2(req: Request) -> dict[str, Any]:
    """The Lambda proxy event of an HTTP API with payload format 2.0."""
    st = _static_of(req)
    headers, cookies, ctx = _parts_v2(req, st, True)
    query = req.query
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": st.route_key,
        "rawPath": ctx["http"]["path"],
        "rawQueryString": query,
    }
    _fill_v2(event, query, cookies, headers, ctx)
    b64 = False
    if req.body:
        body, b64 = _body(req, st)
        event["body"] = body
    params = req.params
    if params:
        event["pathParameters"] = _copy(params)
    event["isBase64Encoded"] = b64
    variables = st.variables
    if variables:
        event["stageVariables"] = variables.copy()
    return event


# ------------------------------------------------------------------------------ responses
# Response headers a function cannot set: the gateway frames the response itself
# (``_header_line``, also ``fastgw.pipeline.runtime``'s for every local reply).
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date"})
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# (name, value) -> its encoded header line (b"" for framing headers), and whether it is a
# Content-Type (``header_line_of``). PERF: replies repeat the same few headers again and again.
_LINES: dict[tuple[str, str], tuple[bytes, bool]] = {}
_MAX_LINES = 4096
# AWS's Content-Type of a payload 1.0 response without one (events.parse_response_v1).
_CT_V1_REST = b"Content-Type: application/json\r\n"
_CT_V1_HTTP = b"Content-Type: text/plain; charset=utf-8\r\n"
_MISSING: Any = object()


def _header_line(name: str, value: str) -> tuple[bytes, bool]:
    """A response header as the gateway writes it, and whether it is a Content-Type; b"" for a
    framing header. ValueError for a name that is not a token or a value with CR, LF or NUL."""
    lname = name.lower()
    if lname in _FRAMING:
        return b"", False
    if not name or "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"invalid response header {name!r}: {value!r}")
    for c in name:
        if c not in _TOKEN:
            raise ValueError(f"invalid response header {name!r}: {value!r}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode()
    return b"%s: %s\r\n" % (name.encode("latin-1"), raw), lname == "content-type"


def header_line_of(name: str, value: str) -> tuple[bytes, bool]:
    """``_header_line``, remembered per (name, value) (up to ``_MAX_LINES`` pairs)."""
    pair = (name, value)
    got = _LINES.get(pair)
    if got is None:
        got = _header_line(name, value)
        if len(_LINES) < _MAX_LINES:
            _LINES[pair] = got
    return got


def fast_reply_v1(result: Any, rest: bool) -> LocalReply | None:
    """The common payload 1.0 response (``statusCode`` int, ``headers`` of strings, ``body``
    str), written straight to a reply; None for anything else, which then takes the full
    ``events.parse_response_v1`` + ``to_reply`` path (same bytes for what this accepts).

    PERF: it skips the Response object and a second walk over the headers."""
    if type(result) is not dict:
        return None
    res = result
    # Only statusCode, headers and body may be there.
    found = 0
    status = res.get("statusCode", _MISSING)
    if status is _MISSING:
        status = None
    else:
        found += 1
    body = res.get("body", _MISSING)
    if body is _MISSING:
        body = None
    else:
        found += 1
    headers = res.get("headers", _MISSING)
    if headers is _MISSING:
        headers = None
    else:
        found += 1
    if found != len(res) or not found:
        return None  # other keys, or ``{}`` (the full path refuses an empty object)
    if type(status) is not int:
        if status is not None or not rest:
            return None
        status = 200
    if not 200 <= status <= 599:
        return None  # 1xx: the full path sends it without a body
    code = status
    if type(body) is str:
        text = body
        data = text.encode()
    elif body is None:
        data = b""
    else:
        return None
    line = STATUS_LINE.get(code)
    if line is None:
        line = status_line(code)
    parts = [line, b""]
    typed = False
    if headers is not None:
        if type(headers) is not dict:
            return None
        hdrs = headers
        for name, value in hdrs.items():
            # Types first: an unhashable value is refused (full parse: 502), not raised (500).
            if type(name) is not str or type(value) is not str:
                return None
            try:
                got = header_line_of(name, value)
            except ValueError:
                return None
            if got[1]:
                typed = True
            parts.append(got[0])
    if not typed:
        parts[1] = _CT_V1_REST if rest else _CT_V1_HTTP
    no_body = code == 204 or code == 304
    if no_body:
        data = b""
    if _COMPILED:
        head = _head(parts, -1 if no_body else len(data))  # noqa: F821
    else:
        if not no_body:
            parts.append(b"content-length: %d\r\n" % len(data))
        head = b"".join(parts)
    return _raw_reply(code, head, data)


def _raw_reply(status: int, head: bytes, body: bytes) -> LocalReply:
    """``LocalReply.raw(status, head, body)``; PERF compiled: the compiled reply type made and
    filled in C (its ``tp_new`` sets every field to None first)."""
    if _COMPILED:
        reply = CReply.__new__(CReply)  # noqa: F821
        reply.status = status
        reply.head = head
        reply.body = body
        reply.kind = None
        reply.message = None
        return reply  # type: ignore[no-any-return]
    return LocalReply.raw(status, head, body)


# ---------------------------------------------------------------------------- invocations
class LambdaContext:
    """The ``context`` object of AWS Lambda's Python runtime."""

    __slots__ = (
        "_deadline",
        "_rid",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    )

    def __init__(self, fn: Any, deadline: float) -> None:
        self._fill(fn, deadline)

    def _fill(self, fn: Any, deadline: float) -> None:
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory_mb
        self.log_group_name = fn.log_group_name
        self.log_stream_name = fn.log_stream_name
        self.identity = None
        self.client_context = None
        self._deadline = deadline
        self._rid = None

    @property
    def aws_request_id(self) -> str:
        """The invocation's id (a UUID, made on first use)."""
        rid = self._rid
        if rid is None:
            rid = self._rid = str(uuid.uuid4())
        return rid

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - monotonic()) * 1000))


def _new_context(fn: FunctionCore, deadline: float) -> LambdaContext:
    """``LambdaContext(fn, deadline)``; PERF: no call of ``__init__`` in the compiled build."""
    ctx = LambdaContext.__new__(LambdaContext)
    ctx._fill(fn, deadline)
    return ctx


def _error_of(ex: BaseException) -> FunctionError:
    """An exception as Lambda's Python runtime reports it (errorType, errorMessage, stackTrace)."""
    stack = traceback.format_list(traceback.extract_tb(ex.__traceback__))
    return FunctionError(type(ex).__name__, str(ex), [s.rstrip("\n") for s in stack])


class _Pending:
    """A function result still to come: ``awaitable`` gives it."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


def _first_step(coro: Any) -> Any:
    """Run a coroutine up to its first suspension: its return value, or ``_Pending`` of what it
    yielded. PERF: the compiled build asks with ``PyIter_Send`` (no StopIteration made)."""
    if _COMPILED:
        return _send_none(coro, _Pending)  # noqa: F821
    try:
        fut = coro.send(None)
    except StopIteration as stop:
        return stop.value
    return _Pending(fut)


class FunctionCore:
    """What the request path reads of an in-process function (``registry.LocalFunction``, which
    adds the rest): its handler, its limits and this worker's concurrency count."""

    __slots__ = (
        "arn",
        "executor_kind",
        "handler",
        "is_async",
        "log_group_name",
        "log_stream_name",
        "max_concurrency",
        "memory_mb",
        "name",
        "running",
        "timeout",
        "waiters",
    )

    def start(self, event: Any, executor: Executor | None, timeout: float) -> tuple[bool, Any]:
        """``(True, result)`` when an async handler finished without suspending (most that
        build a small reply do), else ``(False, awaitable of the result)``. Errors as ``invoke``.

        PERF: the caller awaits nothing, and no coroutine of ours is made, in the first case."""
        got = self._begin(event, executor, timeout)
        if type(got) is _Pending:
            return False, got.awaitable
        return True, got

    def _begin(self, event: Any, executor: Executor | None, timeout: float) -> Any:
        """``start`` without the tuple: the result, or ``_Pending`` of an awaitable of it."""
        if not self.is_async or self.running >= self.max_concurrency:
            return _Pending(self.invoke(event, executor, timeout))  # type: ignore[attr-defined]
        limit = self.timeout if timeout > self.timeout else timeout
        self.running += 1
        return self._step_begin(event, monotonic() + limit)

    def _step(self, event: Any, deadline: float) -> tuple[bool, Any]:
        """Run an async handler up to its first suspension (its slot already taken):
        ``(True, result)``, or ``(False, awaitable of the rest)``, which frees the slot at the end."""
        got = self._step_begin(event, deadline)
        if type(got) is _Pending:
            return False, got.awaitable
        return True, got

    def _step_begin(self, event: Any, deadline: float) -> Any:
        try:
            coro = self.handler(event, _new_context(self, deadline))
            got = _first_step(coro)
        except StopIteration as stop:  # a handler's object raising it as it is called
            self._release()
            return stop.value
        except Exception as ex:
            self._release()
            raise _error_of(ex) from ex
        if type(got) is _Pending:
            return _Pending(self._continue(coro, got.awaitable, deadline))  # type: ignore[attr-defined]
        self._release()
        return got

    def _release(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to this waiter (running stays)
                return
        self.running -= 1


class FunctionRoute:
    """An AWS_PROXY integration (``fastgw.pipeline.build.function_integration``): the Lambda
    proxy event in, the function run, the Lambda proxy response out, as AWS.

    Called as ``(req, svc)`` like every integration: ``timed``, which keeps
    ``runtime.timed_integration``'s accounting itself. PERF: ``serve`` is ``runtime._serve`` of a
    route that is nothing but this integration, maybe behind a Lambda authorizer (no plugins,
    cache, CORS or compression), with ``timed`` inlined: one coroutine per request instead of
    three."""

    def __init__(
        self,
        fn: Any,
        local: FunctionCore | None,
        version: str,
        timeout: float,
        api_kind: str,
        raw_ok: bool,
        failure: LocalReply,
        to_reply: Callable[[Any], LocalReply],
    ) -> None:
        from fastgw.functions import events

        self.fn = fn
        self.local = local
        self.v2 = version == "2.0"
        self.parse = events.parse_response_v2 if self.v2 else events.parse_response_v1
        self.bad_response = events.BadResponse
        # Without response-phase plugins, the common payload 1.0 response goes straight to bytes.
        self.fast = raw_ok and version == "1.0"
        self.rest = api_kind == "rest"
        self.http = api_kind == "http"
        self.timeout = timeout
        self.failure = failure
        self.to_reply = to_reply

    def __call__(self, req: Request, svc: Any) -> Awaitable[Any]:
        """The integration (a Response or a LocalReply), timed as every function is."""
        return self.timed(req, svc)

    def _invoke(self, req: Request, svc: Any) -> Any:
        """The function's result, or ``_Pending`` of an awaitable of it."""
        event = build_event_v2(req) if self.v2 else build_event_v1(req)
        local = self.local
        if local is not None:
            return local._begin(event, svc.executor, self.timeout)
        return _Pending(self.fn.invoke(event, svc, self.timeout, req.request_id))

    def _failed(self, ex: Exception, req: Request) -> Any:
        """The reply to a failed invocation (logged); ``ex`` again if it is no such failure."""
        if isinstance(ex, FunctionTimeout):
            log.error("function timed out", extra={"function": self.fn.name, "route": req.route.key})
            return INTEGRATION_TIMEOUT
        if isinstance(ex, FunctionError):
            stack = ex.stack_trace
            log.error(
                "function failed",
                extra={
                    "function": self.fn.name,
                    "route": req.route.key,
                    "error": f"{ex.error_type}: {ex.error_message}",
                    "stack": stack[max(0, len(stack) - 3) :],  # the last 3 (no negative index: C)
                },
            )
            return self.failure
        if isinstance(ex, InvokeError):
            log.error("function unreachable", extra={"function": self.fn.name, "error": str(ex)})
            return self.failure
        return ex

    def _reply(self, result: Any, req: Request) -> Any:
        """The function's result as the response (or reply) the client gets."""
        if self.fast:
            reply = fast_reply_v1(result, self.rest)
            if reply is not None:
                return reply
        try:
            return self.parse(result, req)
        except self.bad_response as ex:
            log.error(
                "malformed Lambda proxy response",
                extra={"function": self.fn.name, "route": req.route.key, "error": str(ex)},
            )
            if self.http:
                return self.failure
            return INTEGRATION_FAILURE if ex.status == 502 else INTERNAL_ERROR

    async def timed(self, req: Request, svc: Any) -> Any:
        """The function's reply, its start and duration kept on the exchange (``t_int``,
        ``int_ms``) and the invocation's status (200) as ``up_status``, as
        ``runtime.timed_integration`` does for other integrations."""
        loop = svc.loop
        t = loop.time()
        ex = req.exchange
        try:
            try:
                got = self._invoke(req, svc)
                if type(got) is _Pending:
                    got = await got.awaitable
            except _FAILURES as err:
                result = self._failed(err, req)
            else:
                result = self._reply(got, req)
        finally:
            if ex is not None:
                ex.t_int = t
                ex.int_ms = (loop.time() - t) * 1000.0
        if ex is not None and not ex.up_status:
            ex.up_status = 200  # the invocation's status, as AWS's $context.integration.status
        return result

    async def serve(self, ex: Any, pipeline: Any, req: Request, svc: Any) -> None:
        """The Task of one request of a route that is only this integration, maybe behind a
        Lambda authorizer (``lean_auth``): ``runtime._serve`` with ``run_authorized`` and
        ``timed`` inlined (same replies, logs and exchange fields)."""
        loop = svc.loop
        try:
            if pipeline.lean_auth:
                # A Lambda authorizer (and the traffic gate after it) first: a cached decision
                # answers without waiting (``RoutePipeline.pass_authorizer``).
                passed = pipeline.pass_authorizer(req, svc)
                if passed is not None:
                    if type(passed) is not LocalReply:
                        passed = await passed
                    if passed is not None:
                        ex.task = None
                        ex.pipeline_done(self.to_reply(passed))
                        return
            t = loop.time()
            try:
                try:
                    got = self._invoke(req, svc)
                    if type(got) is _Pending:
                        got = await got.awaitable
                except _FAILURES as err:
                    result = self._failed(err, req)
                else:
                    result = self._reply(got, req)
            finally:
                ex.t_int = t
                ex.int_ms = (loop.time() - t) * 1000.0
            if not ex.up_status:
                ex.up_status = 200
            reply = result if type(result) is LocalReply else self.to_reply(result)
        except CancelledError:
            ex.task = None
            raise
        except Exception:
            log.exception("request pipeline failed", extra={"route": pipeline.route.key})
            reply = INTERNAL_ERROR
        ex.task = None
        ex.pipeline_done(reply)

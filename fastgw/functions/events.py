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
import hashlib
import re
from decimal import Decimal
from time import gmtime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

from fastgw.pipeline.request import Request, Response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fastgw.config.compile import RouteRuntime

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


# ------------------------------------------------------------------------ per-route constants
class _Static:
    """What the events of one route share; built once and kept in ``route.event_static``."""

    __slots__ = (
        "account_id",
        "api_id",
        "bin_all",
        "bin_exact",
        "bin_prefixes",
        "default_domain",
        "deployment_id",
        "domain",
        "key_required",
        "resource",
        "resource_id",
        "rest",
        "route_key",
        "stage",
        "stage_prefix",
        "variables",
    )

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
        self.variables: dict[str, str] | None = dict(route.stage.variables) or None
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
        self.bin_prefixes = tuple(t[:-1] for t in types if t.endswith("/*") and t != "*/*")

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
        return any(media_type.startswith(p) for p in self.bin_prefixes)


def _staged(req: Request, prefix: str) -> bool:
    """Whether ``req.path`` is the stage prefix plus the resource path (execute-api style).

    Otherwise the request came through a custom domain's API mapping (base path).
    """
    rpath = req.resource_path
    return req.path == prefix + rpath or (rpath == "/" and req.path == prefix)


def _static(route: RouteRuntime) -> _Static:
    st = _Static(route)
    route.event_static = st
    return st


# -------------------------------------------------------------------------------- helpers
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_clock: tuple[int, str] = (-1, "")


def _request_time(ms: int) -> str:
    """CLF time of ``ms`` ("09/Apr/2015:12:34:56 +0000"); formatted once per second."""
    global _clock
    sec = ms // 1000
    cached = _clock
    if cached[0] == sec:
        return cached[1]
    t = gmtime(sec)
    text = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _clock = (sec, text)
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
    single = dict(headers)  # a repeated name keeps its last value, as AWS's ``headers``
    if len(single) == len(headers):  # no repeated name: the usual case
        # REST APIs do not pass Content-Length to the function (Request has one with a body).
        if (
            rest
            and single.pop("Content-Length", None) is None
            and single.pop("content-length", None) is None
            and has_body
        ):
            for name in [n for n in single if len(n) == 14 and n.lower() == "content-length"]:
                del single[name]
        multi = {name: [value] for name, value in single.items()}
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
    st = req.route.event_static or _static(req.route)
    return _binary(req, st)


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


# requestContext.identity: every key null but sourceIp and userAgent (no IAM / Cognito auth).
# Copying a template is faster than a dict display of the same keys.
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


def _identity(req: Request, st: _Static, ua: str | None, for_authorizer: bool) -> dict[str, Any]:
    if st.rest:
        identity = _IDENTITY_REST.copy()
        identity["sourceIp"] = req.source_ip
        identity["userAgent"] = ua
        if req.client_cert is not None:  # mutual TLS: $context.identity.clientCert
            identity["clientCert"] = req.client_cert
        # $context.identity.apiKey / apiKeyId: set for methods that require an API key.
        if req.api_key_id is not None:
            identity["apiKey"] = req.api_key if req.api_key is not None else req.usage_key
            identity["apiKeyId"] = req.api_key_id
        elif for_authorizer and st.key_required:
            identity["apiKey"] = req.api_key
        # AWS_IAM: the verified caller's accessKey, accountId, caller, user, userArn.
        if req.iam is not None:
            identity.update(req.iam)
        return identity
    identity = _IDENTITY_HTTP.copy()
    identity["sourceIp"] = req.source_ip
    identity["userAgent"] = ua
    if req.client_cert is not None:  # mutual TLS: $context.identity.clientCert
        identity["clientCert"] = req.client_cert
    if req.iam is not None:
        identity.update(req.iam)
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


_NO_AUTHORIZER: dict[str, Any] = {"claims": None, "scopes": None}


def _context_v1(req: Request, st: _Static, ua: str | None, for_authorizer: bool = False) -> dict[str, Any]:
    ms = req.time_ms
    rid = req.request_id
    _, domain, prefix = st.domain_of(req.domain)
    identity = _identity(req, st, ua, for_authorizer)
    auth = req.authorizer
    if st.rest:
        ctx: dict[str, Any] = {
            "accountId": st.account_id,
            "apiId": st.api_id,
            "domainName": domain,
            "domainPrefix": prefix,
            "extendedRequestId": rid,
            "httpMethod": req.method,
            "identity": identity,
            "path": req.path,
            "protocol": req.http_version,
            "requestId": rid,
            "requestTime": _request_time(ms),
            "requestTimeEpoch": ms,
            "resourceId": st.resource_id,
            "resourcePath": st.resource,
            "stage": st.stage,
        }
        if st.deployment_id is not None:
            ctx["deploymentId"] = st.deployment_id
        if auth is not None and not for_authorizer:
            ctx["authorizer"] = _authorizer_v1(auth)
        return ctx
    ctx = {
        "accountId": st.account_id,
        "apiId": st.api_id,
        "authorizer": _authorizer_v1(auth) if auth is not None else dict(_NO_AUTHORIZER),
        "domainName": domain,
        "domainPrefix": prefix,
        "extendedRequestId": rid,
        "httpMethod": req.method,
        "identity": identity,
        "path": req.path,
        "protocol": req.http_version,
        "requestId": rid,
        "requestTime": _request_time(ms),
        "requestTimeEpoch": ms,
        "resourceId": st.resource_id,
        "resourcePath": st.resource,
        "stage": st.stage,
    }
    if for_authorizer:
        del ctx["authorizer"]
    return ctx


# ------------------------------------------------------------------------------ v1 events
def build_event_v1(req: Request) -> dict[str, Any]:
    """The Lambda proxy event of a REST API, or of an HTTP API with payload format 1.0."""
    st = req.route.event_static or _static(req.route)
    rest = st.rest
    headers, multi, ua = _headers_v1(req.headers, rest, bool(req.body))
    query = req.query
    if query:
        qs, mqs = _query_v1(query)
    else:
        qs = mqs = None
    params = req.params
    variables = st.variables
    body, b64 = _body(req, st)
    if rest:
        return {
            "resource": st.resource,
            "path": req.resource_path if _staged(req, st.stage_prefix) else req.path,
            "httpMethod": req.method,
            "headers": headers or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": qs,
            "multiValueQueryStringParameters": mqs,
            "pathParameters": dict(params) if params else None,
            "stageVariables": dict(variables) if variables else None,
            "requestContext": _context_v1(req, st, ua),
            "body": body,
            "isBase64Encoded": b64,
        }
    return {
        "version": "1.0",
        "resource": st.resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": headers or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": qs,
        "multiValueQueryStringParameters": mqs,
        "requestContext": _context_v1(req, st, ua),
        "pathParameters": dict(params) if params else None,
        "stageVariables": dict(variables) if variables else None,
        "body": body,
        "isBase64Encoded": b64,
    }


# ------------------------------------------------------------------------------ v2 events
def _parts_v2(
    req: Request, st: _Static, with_authorizer: bool
) -> tuple[dict[str, str], list[str] | None, dict[str, Any]]:
    raw = req.headers
    headers = {name.lower(): value for name, value in raw}
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
                cookies.extend(c for c in value.split("; ") if c)
                continue
            old = headers.get(lname)
            headers[lname] = value if old is None else f"{old},{value}"
    ms = req.time_ms
    _, domain, prefix = st.domain_of(req.domain)
    # rawPath: the path with a named stage's prefix; "rawPath doesn't provide the API mapping
    # value" of a custom domain (AWS), so a mapped request's path is the one inside the stage.
    path = req.path
    if not _staged(req, st.stage_prefix):
        path = req.resource_path
    ctx: dict[str, Any] = {
        "accountId": st.account_id,
        "apiId": st.api_id,
        "domainName": domain,
        "domainPrefix": prefix,
        "http": {
            "method": req.method,
            "path": path,
            "protocol": req.http_version,
            "sourceIp": req.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": req.request_id,
        "routeKey": st.route_key,
        "stage": st.stage,
        "time": _request_time(ms),
        "timeEpoch": ms,
    }
    if with_authorizer:
        auth = req.authorizer
        if auth is not None:
            ctx["authorizer"] = _authorizer_v2(auth)
        elif req.iam is not None:
            iam = req.iam
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
    if req.client_cert is not None:
        # Mutual TLS on payload 2.0: requestContext.authentication.clientCert.
        ctx["authentication"] = {"clientCert": req.client_cert}
    return headers, cookies, ctx


def build_event_v2(req: Request) -> dict[str, Any]:
    """The Lambda proxy event of an HTTP API with payload format 2.0."""
    st = req.route.event_static or _static(req.route)
    headers, cookies, ctx = _parts_v2(req, st, True)
    query = req.query
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": st.route_key,
        "rawPath": ctx["http"]["path"],
        "rawQueryString": query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        qs = _query_v2(query)
        if qs is not None:
            event["queryStringParameters"] = qs
    event["requestContext"] = ctx
    if req.body:
        body, b64 = _body(req, st)
        event["body"] = body
    else:
        b64 = False
    params = req.params
    if params:
        event["pathParameters"] = dict(params)
    event["isBase64Encoded"] = b64
    variables = st.variables
    if variables:
        event["stageVariables"] = dict(variables)
    return event


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
    st = req.route.event_static or _static(req.route)
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
    st = req.route.event_static or _static(req.route)
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
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        qs = _query_v2(query)
        if qs is not None:
            event["queryStringParameters"] = qs
    event["requestContext"] = ctx
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
    st = req.route.event_static or _static(req.route)
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

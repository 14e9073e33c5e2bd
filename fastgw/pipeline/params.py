"""Parameter mapping: REST ``requestParameters`` / ``responseParameters`` and HTTP API ``parameterMapping``.

Every mapping is compiled once, at config load, into a tuple of small steps (a destination and
a getter closure); a request only runs the getters. Nothing is parsed per request: no regex, no
string splitting of expressions, and a body is parsed as JSON only when a mapping reads a
JSONPath of it (once per request, however many mappings do). An invalid mapping raises
``MappingError`` naming every offending key.

REST APIs (https://docs.aws.amazon.com/apigateway/latest/developerguide/rest-api-parameter-mapping-sources.html)

- ``compile_request_parameters({"integration.request.header.X-User":
  "method.request.querystring.user", ...})``: sources ``method.request.{path,querystring,header,
  multivaluequerystring,multivalueheader}.NAME``, ``method.request.body``,
  ``method.request.body.JSONPATH`` (without ``$.``, as AWS writes it), ``context.VAR``,
  ``stageVariables.NAME``, ``'static'``; destinations ``integration.request.{header,querystring,
  path,multivalueheader,multivaluequerystring}.NAME``. ``apply`` returns the integration's
  headers, query pairs (decoded) and path parameters (the values of the backend URI's ``{NAME}``).
- ``compile_response_parameters({"method.response.header.Location":
  "integration.response.body.redirect.url", ...})``: sources ``integration.response.header.NAME``,
  ``integration.response.multivalueheader.NAME``, ``integration.response.body[.JSONPATH]``,
  ``context.VAR``, ``stageVariables.NAME``, ``'static'``. ``apply`` returns the method response
  headers to set.

A source that is missing (no such header, parameter, JSON field, stage or context variable)
leaves its destination unset, as AWS does. A single-value source of a repeated header or query
parameter gives its last value (as the Lambda proxy event's ``headers`` does); a multi-value
source gives every value: one query pair or one header line per value for a query string or
``multivalueheader`` destination, the values joined with "," for a ``header`` or ``path`` one.

HTTP APIs (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-parameter-mapping.html)

- ``compile_http_request_mapping({"append:header.X": "$request.header.y", "remove:querystring.q":
  "''", "overwrite:path": "/v2/${request.path.id}"})``: keys ``append|overwrite|remove:header.NAME``,
  ``append|overwrite|remove:querystring.NAME``, ``overwrite:path``; values ``$request.header.NAME``,
  ``$request.querystring.NAME``, ``$request.path``, ``$request.path.NAME``, ``$request.body[.JSONPATH]``,
  ``$context.VAR``, ``$stageVariables.NAME``, static text, or text mixing them (``prefix-$request.header.x``,
  ``${request.path.a}-${request.path.b}``: braces delimit an expression). Values are evaluated
  on the request as received; then removes, overwrites and appends are applied, in that order.
- ``compile_http_response_mapping({"500": {"overwrite:statuscode": "403", "append:header.X":
  "$context.requestId"}})``: per integration status code, keys ``append|overwrite|remove:header.NAME``
  and ``overwrite:statuscode``; values ``$response.header.NAME``, ``$response.body[.JSONPATH]``,
  ``$context.VAR``, ``$stageVariables.NAME``, static text, or a mix.

Repeated headers are read joined with "," ("value1,value2", as AWS documents); an ``append`` to
a header that exists joins the new value to it the same way. A JSONPath of an HTTP API request
body reads its first 100 KB only (AWS truncates it before selecting).

``context`` is the request's ``$context`` as a nested mapping (the Lambda event's
``requestContext`` fits: ``identity.sourceIp``, ``authorizer.claims.sub``, ...) or a callable
taking the dotted name (``"identity.sourceIp"``) and returning its value (None if unset). Mappers
say whether they read it (``needs_context``) and the body (``needs_body``), so a caller builds
neither for mappings that do not.

JSONPath: the dotted subset AWS supports: ``a.b``, ``a[0]``, ``a[-1]``, ``['a b']``, ``[*]`` and
``.*``; recursive descent (``..``), filters, slices and unions are refused at load. A string
result is used as is, anything else as its JSON text (``1``, ``true``, ``{"a":1}``); ``null`` is a
missing value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias
from urllib.parse import quote, unquote_plus

import orjson

if TYPE_CHECKING:
    from fastgw.pipeline.request import Request

__all__ = [
    "HTTP_JSON_PATH_BODY_LIMIT",
    "HTTP_RESERVED_HEADERS",
    "HTTP_RESERVED_PREFIXES",
    "REST_RESTRICTED_REQUEST_HEADERS",
    "REST_RESTRICTED_REQUEST_PREFIXES",
    "REST_RESTRICTED_RESPONSE_HEADERS",
    "WILDCARD",
    "Context",
    "HttpMappedRequest",
    "HttpRequestMapper",
    "HttpResponseMapper",
    "IntegrationParams",
    "MappingError",
    "RequestMapper",
    "ResponseMapper",
    "compile_http_request_mapping",
    "compile_http_response_mapping",
    "compile_json_path",
    "compile_request_parameters",
    "compile_response_parameters",
]

#: ``$context``: a nested mapping, or a callable taking the dotted variable name.
Context: TypeAlias = "Mapping[str, Any] | Callable[[str], Any] | None"

# ------------------------------------------------------------------------- reserved headers
# HTTP APIs: "The following headers are reserved. You can't configure request or response
# mappings for these headers." -- "Reserved headers" in
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-parameter-mapping.html
# (the list as published, names lower-cased; the page spells the trailer header "Trailers").
HTTP_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-location",
        "forwarded",
        "keep-alive",
        "origin",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        # APPSEC(fastgw): the RFC 9110 name of what the page calls "Trailers" (hop-by-hop).
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "via",
    }
)
#: The page's wildcard entries: access-control-*, apigw-*, x-amz-*, x-amzn-*.
HTTP_RESERVED_PREFIXES = ("access-control-", "apigw-", "x-amz-", "x-amzn-")

# REST APIs: AWS publishes no list of headers that requestParameters may not name. Its
# "Amazon API Gateway important notes for REST APIs"
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-known-issues.html)
# lists the headers API Gateway drops, overwrites or remaps (X-Amzn-Remapped-*) between the
# method and the integration. fastgw refuses mappings to those that API Gateway drops or
# overwrites on the integration request (Host is replaced by the endpoint's, Content-Length is
# computed from the body, Expect / Max-Forwards / TE / Trailer / Transfer-Encoding / Upgrade /
# Proxy-Authenticate are dropped), so the mapping could never reach the backend on AWS either,
# plus the rest of RFC 9110's hop-by-hop set. APPSEC(fastgw): framing headers taken from
# client data are a request-smuggling vector; x-amzn-* are the gateway's own (request id,
# trace id, x-amzn-apigateway-api-id) and must not be forged by a mapping. Content-Type,
# Accept, Authorization and x-amz-* (X-Amz-Target, X-Amz-Invocation-Type, ...) stay mappable:
# AWS service integrations depend on them.
REST_RESTRICTED_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "max-forwards",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REST_RESTRICTED_REQUEST_PREFIXES = ("x-amzn-",)
# Method response headers: the framing the gateway writes itself (AWS drops these from an
# integration response too) and the request id it adds to every response.
REST_RESTRICTED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-amzn-requestid",
    }
)

#: "When you specify a JSON path, API Gateway truncates the request body at 100 KB and then
#: applies the selection expression" (HTTP APIs).
HTTP_JSON_PATH_BODY_LIMIT = 100 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_STAGE_VAR = re.compile(r"[A-Za-z0-9_]+")
_HTTP_EXPR = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z][A-Za-z0-9_.\-\[\]*]*))")


# -------------------------------------------------------------------------------- errors
class MappingError(ValueError):
    """Invalid mappings: ``errors`` lists every (key, message); ``key`` / ``message`` are the first.

    For an HTTP API response mapping the key is ``"STATUS.KEY"`` (``"500.overwrite:statuscode"``).
    """

    def __init__(self, key: str, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        self.key = key
        self.message = message
        self.errors = errors if errors else [(key, message)]
        super().__init__("; ".join(f"{k}: {m}" for k, m in self.errors))


def _raise(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise MappingError(errors[0][0], errors[0][1], errors)


class _Invalid(Exception):
    """One key's error while compiling (becomes a MappingError entry)."""


# ------------------------------------------------------------------------------ sources
_MISSING: Any = object()
_UNPARSED: Any = object()


class _Src:
    """What getters read, for one request or response; maps are built at first use."""

    __slots__ = (
        "_hmap",
        "_json",
        "_qmap",
        "body",
        "context",
        "headers",
        "json_limit",
        "params",
        "path",
        "query",
        "stage_vars",
    )

    def __init__(
        self,
        headers: list[tuple[str, str]],
        body: bytes,
        context: Context,
        stage_vars: Mapping[str, str] | None,
        query: str = "",
        params: Mapping[str, str] | None = None,
        path: str = "",
        json_limit: int | None = None,
    ) -> None:
        self.headers = headers
        self.body = body
        self.context = context
        self.stage_vars = stage_vars
        self.query = query
        self.params = params
        self.path = path
        self.json_limit = json_limit
        self._hmap: dict[str, list[str]] | None = None
        self._qmap: dict[str, list[str]] | None = None
        self._json: Any = _UNPARSED

    def header_values(self, lname: str) -> list[str] | None:
        hmap = self._hmap
        if hmap is None:
            hmap = {}
            for name, value in self.headers:
                values = hmap.get(name.lower())
                if values is None:
                    hmap[name.lower()] = [value]
                else:
                    values.append(value)
            self._hmap = hmap
        return hmap.get(lname)

    def query_values(self, name: str) -> list[str] | None:
        qmap = self._qmap
        if qmap is None:
            qmap = {}
            for part in self.query.split("&"):
                if not part:
                    continue
                key, _, value = part.partition("=")
                key = _unquote(key)
                if not key:
                    continue
                values = qmap.get(key)
                if values is None:
                    qmap[key] = [_unquote(value)]
                else:
                    values.append(_unquote(value))
            self._qmap = qmap
        return qmap.get(name)

    def json(self) -> Any:
        doc = self._json
        if doc is _UNPARSED:
            body = self.body
            limit = self.json_limit
            if limit is not None and len(body) > limit:
                body = body[:limit]
            try:
                doc = orjson.loads(body) if body else _MISSING
            except orjson.JSONDecodeError:
                doc = _MISSING
            self._json = doc
        return doc


def _unquote(s: str) -> str:
    return unquote_plus(s) if "%" in s or "+" in s else s


def _text(value: Any) -> str | None:
    """A value as mapped text: strings as is, JSON null / None missing, the rest as JSON."""
    if type(value) is str:
        return value  # type: ignore[no-any-return]
    if value is None or value is _MISSING:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


# Getters take the _Src and return str, list[str] (multi-value sources) or None (missing).
Getter: TypeAlias = Callable[[_Src], Any]


def _static(value: str) -> Getter:
    def get(src: _Src) -> str:
        return value

    return get


def _stage_var(name: str) -> Getter:
    def get(src: _Src) -> str | None:
        variables = src.stage_vars
        return variables.get(name) if variables is not None else None

    return get


def _context_var(name: str) -> Getter:
    parts = tuple(name.split("."))

    def get(src: _Src) -> str | None:
        node: Any = src.context
        if node is None:
            return None
        if type(node) is not dict and not isinstance(node, Mapping):
            return _text(node(name))
        for part in parts:
            if type(node) is not dict and not isinstance(node, Mapping):
                return None
            node = node.get(part)
            if node is None:
                return None
        return _text(node)

    return get


def _whole_body() -> Getter:
    def get(src: _Src) -> str | None:
        body = src.body
        if not body:
            return None
        return body.decode("utf-8", "replace")

    return get


def _body_path(path: str) -> Getter:
    steps = compile_json_path(path)

    def get(src: _Src) -> str | None:
        doc = src.json()
        if doc is _MISSING:
            return None
        return _text(_select(doc, steps))

    return get


# ------------------------------------------------------------------------------ JSONPath
class _Wild:
    """``*`` in a JSONPath: every member of an object, every item of an array."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


WILDCARD = _Wild()
JsonStep: TypeAlias = "str | int | _Wild"


def compile_json_path(path: str) -> tuple[JsonStep, ...]:
    """Steps of a simple JSONPath (``$.a.b[0]``, ``a['x y'][*]``; the ``$`` is optional).

    Raises ValueError for what AWS does not support: recursive descent, filters, slices,
    unions, scripts."""
    steps: list[JsonStep] = []
    n = len(path)
    i = 0
    if path.startswith("$"):
        i = 1
        if i == n:
            return ()
    elif path.startswith((".", "[")):
        pass
    else:
        path = "." + path
        n += 1
    while i < n:
        c = path[i]
        if c == ".":
            if i + 1 < n and path[i + 1] == ".":
                raise ValueError(f"recursive descent (..) is not supported in {path!r}")
            j = i + 1
            while j < n and path[j] not in ".[":
                j += 1
            name = path[i + 1 : j]
            if not name:
                raise ValueError(f"empty name in {path!r}")
            steps.append(WILDCARD if name == "*" else name)
            i = j
        elif c == "[":
            if i + 1 < n and path[i + 1] in "'\"":
                quote_char = path[i + 1]
                end = path.find(quote_char, i + 2)
                if end < 0 or end + 1 >= n or path[end + 1] != "]":
                    raise ValueError(f"unterminated quoted name in {path!r}")
                steps.append(path[i + 2 : end])
                i = end + 2
                continue
            end = path.find("]", i)
            if end < 0:
                raise ValueError(f"unterminated [ in {path!r}")
            inner = path[i + 1 : end].strip()
            if inner == "*":
                steps.append(WILDCARD)
            else:
                try:
                    steps.append(int(inner))
                except ValueError:
                    raise ValueError(
                        f"only [N], [*] and ['name'] are supported in {path!r}, not [{inner}]"
                    ) from None
            i = end + 1
        else:
            raise ValueError(f"unexpected {c!r} in {path!r}")
    return tuple(steps)


def _select(doc: Any, steps: tuple[JsonStep, ...]) -> Any:
    """The value at ``steps`` (_MISSING if none); after a wildcard, the list of matches."""
    node = doc
    for k, step in enumerate(steps):
        if type(step) is str:
            if type(node) is not dict:
                return _MISSING
            node = node.get(step, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif type(step) is int:
            if type(node) is not list or not -len(node) <= step < len(node):
                return _MISSING
            node = node[step]
        else:
            if type(node) is dict:
                items: Iterable[Any] = node.values()
            elif type(node) is list:
                items = node
            else:
                return _MISSING
            rest = steps[k + 1 :]
            nested = WILDCARD in rest
            out: list[Any] = []
            for item in items:
                got = _select(item, rest)
                if got is _MISSING:
                    continue
                if nested:
                    out.extend(got)
                else:
                    out.append(got)
            return out
    return node


# --------------------------------------------------------------------------------- REST
class IntegrationParams(NamedTuple):
    """What a REST integration request gets from ``requestParameters``."""

    #: (name, value) to set on the integration request; each replaces any header of its name.
    headers: list[tuple[str, str]]
    #: (name, value) query pairs, decoded (the caller encodes them into the URL).
    query: list[tuple[str, str]]
    #: Values of the backend URI template's ``{name}`` parameters, decoded.
    path: dict[str, str]


_DEST_HEADER = 0
_DEST_MULTI_HEADER = 1
_DEST_QUERY = 2
_DEST_PATH = 3

_REST_DESTS = {
    "header": _DEST_HEADER,
    "multivalueheader": _DEST_MULTI_HEADER,
    "querystring": _DEST_QUERY,
    "multivaluequerystring": _DEST_QUERY,
    "path": _DEST_PATH,
}


def _unsafe(value: str) -> bool:
    """APPSEC: a value that would split or end a header line (a JSON body can hold "\\n")."""
    return "\r" in value or "\n" in value or "\0" in value


def _check_header_name(name: str, reserved: frozenset[str], prefixes: tuple[str, ...], what: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise _Invalid(f"{name!r} is not a valid header name")
    lname = name.lower()
    if lname in reserved or lname.startswith(prefixes):
        raise _Invalid(f"{name} is a {what} header and cannot be mapped")


def _check_static(value: str) -> str:
    if _unsafe(value):
        raise _Invalid("a static value cannot contain CR, LF or NUL")
    return value


def _rest_static(value: str) -> str | None:
    """The text of a 'quoted' static value, or None if ``value`` is not one."""
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1]
    return None


def _rest_common(value: str) -> tuple[Getter, bool] | None:
    """Static values, context and stage variables (both REST sides); (getter, reads context)."""
    static = _rest_static(value)
    if static is not None:
        return _static(_check_static(static)), False
    if value.startswith("context."):
        name = value[8:]
        if not _CONTEXT_NAME.fullmatch(name):
            raise _Invalid(f"{value!r}: invalid context variable name")
        return _context_var(name), True
    if value.startswith("stageVariables."):
        name = value[15:]
        if not _STAGE_VAR.fullmatch(name):
            raise _Invalid(f"{value!r}: invalid stage variable name")
        return _stage_var(name), False
    return None


def _method_request_source(location: str, name: str) -> Getter:
    if location == "path":

        def get_path(src: _Src) -> str | None:
            params = src.params
            return params.get(name) if params is not None else None

        return get_path
    if location == "querystring":

        def get_query(src: _Src) -> str | None:
            values = src.query_values(name)
            return values[-1] if values else None

        return get_query
    if location == "multivaluequerystring":

        def get_query_all(src: _Src) -> list[str] | None:
            return src.query_values(name)

        return get_query_all
    lname = name.lower()
    if location == "header":

        def get_header(src: _Src) -> str | None:
            values = src.header_values(lname)
            return values[-1] if values else None

        return get_header

    def get_header_all(src: _Src) -> list[str] | None:
        return src.header_values(lname)

    return get_header_all


_METHOD_REQUEST_LOCATIONS = ("header", "querystring", "path", "multivalueheader", "multivaluequerystring")


class RequestMapper:
    """A REST integration's ``requestParameters``, compiled."""

    __slots__ = ("method_params", "needs_body", "needs_context", "path_names", "steps")

    def __init__(
        self,
        steps: tuple[tuple[int, str, Getter], ...],
        method_params: tuple[tuple[str, str], ...],
        needs_body: bool,
        needs_context: bool,
    ) -> None:
        #: (destination kind, name, getter), in the mapping's order.
        self.steps = steps
        #: (location, name) of every ``method.request.*`` parameter read, for the caller to
        #: check against the method's declared requestParameters (AWS requires them).
        self.method_params = method_params
        #: Names of the integration path parameters set (``{name}`` in the backend URI).
        self.path_names = tuple(name for kind, name, _ in steps if kind == _DEST_PATH)
        self.needs_body = needs_body
        self.needs_context = needs_context

    def apply(
        self, req: Request, context: Context = None, stage_vars: Mapping[str, str] | None = None
    ) -> IntegrationParams:
        headers: list[tuple[str, str]] = []
        query: list[tuple[str, str]] = []
        path: dict[str, str] = {}
        if not self.steps:
            return IntegrationParams(headers, query, path)
        src = _Src(req.headers, req.body, context, stage_vars, req.query, req.params)
        for kind, name, get in self.steps:
            value = get(src)
            if value is None:
                continue
            if type(value) is list:  # a multi-value source: never empty
                if kind == _DEST_QUERY:
                    query.extend((name, v) for v in value)
                    continue
                if kind == _DEST_MULTI_HEADER:
                    headers.extend((name, v) for v in value if not _unsafe(v))
                    continue
                value = ",".join(value)
            if kind == _DEST_QUERY:
                query.append((name, value))
            elif kind == _DEST_PATH:
                path[name] = value
            elif not _unsafe(value):
                headers.append((name, value))
        return IntegrationParams(headers, query, path)


def compile_request_parameters(mapping: Mapping[str, str]) -> RequestMapper:
    """Compile a REST integration's ``requestParameters`` (destination -> source)."""
    errors: list[tuple[str, str]] = []
    steps: list[tuple[int, str, Getter]] = []
    method_params: list[tuple[str, str]] = []
    seen: dict[tuple[int, str], str] = {}
    needs_body = needs_context = False
    for key, value in mapping.items():
        try:
            if not isinstance(value, str):
                raise _Invalid("the source must be a string")
            location, name = _split(key, "integration.request.", _REST_DESTS)
            kind = _REST_DESTS[location]
            if kind in (_DEST_HEADER, _DEST_MULTI_HEADER):
                _check_header_name(
                    name, REST_RESTRICTED_REQUEST_HEADERS, REST_RESTRICTED_REQUEST_PREFIXES, "restricted"
                )
                ident = (_DEST_HEADER, name.lower())
            else:
                if not name.strip() or _unsafe(name):
                    raise _Invalid(f"invalid {location} parameter name {name!r}")
                ident = (kind, name)
            if ident in seen:
                raise _Invalid(f"the same destination as {seen[ident]}")
            seen[ident] = key
            common = _rest_common(value)
            if common is not None:
                get, reads_context = common
                needs_context = needs_context or reads_context
            elif value == "method.request.body":
                get = _whole_body()
                needs_body = True
            elif value.startswith("method.request.body."):
                try:
                    get = _body_path("$." + value[20:])
                except ValueError as ex:
                    raise _Invalid(str(ex)) from None
                needs_body = True
            elif value.startswith("method.request."):
                src_location, src_name = _split(value, "method.request.", _METHOD_REQUEST_LOCATIONS)
                get = _method_request_source(src_location, src_name)
                method_params.append((src_location, src_name))
            else:
                raise _Invalid(
                    f"unsupported source {value!r}: expected method.request.(path|querystring|header|"
                    "multivaluequerystring|multivalueheader).NAME, method.request.body[.JSONPATH], "
                    "context.VAR, stageVariables.NAME or 'static'"
                )
            steps.append((kind, name, get))
        except _Invalid as ex:
            errors.append((key, str(ex)))
    _raise(errors)
    return RequestMapper(tuple(steps), tuple(method_params), needs_body, needs_context)


def _split(expr: str, prefix: str, locations: Iterable[str]) -> tuple[str, str]:
    """(location, name) of ``prefix + location + "." + name``; _Invalid if it is not one."""
    if expr.startswith(prefix):
        location, dot, name = expr[len(prefix) :].partition(".")
        if dot and location in locations and name:
            return location, name
    raise _Invalid(f"expected {prefix}({'|'.join(locations)}).NAME, got {expr!r}")


class ResponseMapper:
    """A REST integration response's ``responseParameters``, compiled."""

    __slots__ = ("names", "needs_body", "needs_context", "steps")

    def __init__(self, steps: tuple[tuple[str, Getter], ...], needs_body: bool, needs_context: bool) -> None:
        #: (method response header name, getter), in the mapping's order.
        self.steps = steps
        #: The method response headers set, for the caller to check against the method response.
        self.names = tuple(name for name, _ in steps)
        self.needs_body = needs_body
        self.needs_context = needs_context

    def apply(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        context: Context = None,
        stage_vars: Mapping[str, str] | None = None,
    ) -> list[tuple[str, str]]:
        """The (name, value) headers of the method response; each replaces any of its name.

        ``status``, ``headers`` and ``body`` are the integration response's."""
        out: list[tuple[str, str]] = []
        if not self.steps:
            return out
        src = _Src(headers, body, context, stage_vars)
        for name, get in self.steps:
            value = get(src)
            if value is None:
                continue
            if type(value) is list:
                value = ",".join(value)
            if not _unsafe(value):
                out.append((name, value))
        return out


def _integration_response_header(name: str, multi: bool) -> Getter:
    lname = name.lower()
    if multi:

        def get_all(src: _Src) -> list[str] | None:
            return src.header_values(lname)

        return get_all

    def get(src: _Src) -> str | None:
        values = src.header_values(lname)
        return values[-1] if values else None

    return get


def compile_response_parameters(mapping: Mapping[str, str]) -> ResponseMapper:
    """Compile a REST integration response's ``responseParameters`` (destination -> source)."""
    errors: list[tuple[str, str]] = []
    steps: list[tuple[str, Getter]] = []
    seen: dict[str, str] = {}
    needs_body = needs_context = False
    for key, value in mapping.items():
        try:
            if not isinstance(value, str):
                raise _Invalid("the source must be a string")
            _, name = _split(key, "method.response.", ("header",))
            _check_header_name(name, REST_RESTRICTED_RESPONSE_HEADERS, (), "restricted")
            if name.lower() in seen:
                raise _Invalid(f"the same destination as {seen[name.lower()]}")
            seen[name.lower()] = key
            common = _rest_common(value)
            if common is not None:
                get, reads_context = common
                needs_context = needs_context or reads_context
            elif value == "integration.response.body":
                get = _whole_body()
                needs_body = True
            elif value.startswith("integration.response.body."):
                try:
                    get = _body_path("$." + value[26:])
                except ValueError as ex:
                    raise _Invalid(str(ex)) from None
                needs_body = True
            elif value.startswith("integration.response."):
                location, src_name = _split(value, "integration.response.", ("header", "multivalueheader"))
                get = _integration_response_header(src_name, location == "multivalueheader")
            else:
                raise _Invalid(
                    f"unsupported source {value!r}: expected integration.response.(header|"
                    "multivalueheader).NAME, integration.response.body[.JSONPATH], context.VAR, "
                    "stageVariables.NAME or 'static'"
                )
            steps.append((name, get))
        except _Invalid as ex:
            errors.append((key, str(ex)))
    _raise(errors)
    return ResponseMapper(tuple(steps), needs_body, needs_context)


# ----------------------------------------------------------------------------- HTTP APIs
class _Value:
    """A compiled HTTP API mapping value: static text, expressions, or a mix of both."""

    __slots__ = ("const", "needs_body", "needs_context", "parts")

    def __init__(self, parts: tuple[str | Getter, ...], needs_body: bool, needs_context: bool) -> None:
        self.parts = parts
        #: The whole value when it is static text (no expression), else None.
        self.const = parts[0] if len(parts) == 1 and type(parts[0]) is str else ("" if not parts else None)
        self.needs_body = needs_body
        self.needs_context = needs_context

    def __call__(self, src: _Src) -> str | None:
        const = self.const
        if const is not None:
            return const  # type: ignore[return-value]
        parts = self.parts
        if len(parts) == 1:
            return _joined(parts[0](src))  # type: ignore[operator]
        out = []
        for part in parts:
            if type(part) is str:
                out.append(part)
                continue
            got = _joined(part(src))  # type: ignore[operator]
            if got is None:
                return None  # a missing source leaves the destination unset
            out.append(got)
        return "".join(out)


def _joined(value: Any) -> str | None:
    if type(value) is list:
        return ",".join(value)
    return value  # type: ignore[no-any-return]


def _http_expression(expr: str, response: bool) -> tuple[Getter, bool, bool]:
    """(getter, reads body, reads context) of one ``$...`` expression (without the ``$``)."""
    if expr.startswith("context."):
        name = expr[8:]
        if not _CONTEXT_NAME.fullmatch(name):
            raise _Invalid(f"invalid context variable ${expr}")
        return _context_var(name), False, True
    if expr.startswith("stageVariables."):
        name = expr[15:]
        if not _STAGE_VAR.fullmatch(name):
            raise _Invalid(f"invalid stage variable ${expr}")
        return _stage_var(name), False, False
    root = "response" if response else "request"
    other = "request" if response else "response"
    if expr == other or expr.startswith(other + ".") or expr.startswith(other + "["):
        raise _Invalid(f"${expr} cannot be used in a {root} mapping")
    if expr == root + ".body":
        return _whole_body(), True, False
    if expr.startswith(root + ".body.") or expr.startswith(root + ".body["):
        rest = expr[len(root) + 5 :]  # ".a.b" or "[0]..."
        try:
            return _body_path("$" + rest), True, False
        except ValueError as ex:
            raise _Invalid(str(ex)) from None
    if not response and expr == "request.path":

        def get_path(src: _Src) -> str:
            return src.path

        return get_path, False, False
    location, dot, name = (
        expr[len(root) + 1 :].partition(".") if expr.startswith(root + ".") else ("", "", "")
    )
    if not dot or not name:
        allowed = (
            "$response.header.NAME, $response.body[.JSONPATH]"
            if response
            else "$request.header.NAME, $request.querystring.NAME, $request.path[.NAME], "
            "$request.body[.JSONPATH]"
        )
        raise _Invalid(
            f"unsupported expression ${expr}: expected {allowed}, $context.VAR or $stageVariables.NAME"
        )
    if location == "header":
        if not _TOKEN.fullmatch(name):
            raise _Invalid(f"{name!r} is not a valid header name")
        lname = name.lower()

        def get_header(src: _Src) -> list[str] | None:
            return src.header_values(lname)

        return get_header, False, False
    if not response and location == "querystring":

        def get_query(src: _Src) -> list[str] | None:
            return src.query_values(name)

        return get_query, False, False
    if not response and location == "path":

        def get_param(src: _Src) -> str | None:
            params = src.params
            return params.get(name) if params is not None else None

        return get_param, False, False
    raise _Invalid(f"unsupported expression ${expr}")


_ROOTS = ("request", "response", "context", "stageVariables")


def _http_value(value: str, response: bool) -> _Value:
    """Compile an HTTP API mapping value: text with ``$expr`` / ``${expr}`` in it."""
    parts: list[str | Getter] = []
    needs_body = needs_context = False
    pos = 0
    literal: list[str] = []
    for m in _HTTP_EXPR.finditer(value):
        braced, bare = m.group(1), m.group(2)
        expr = braced if braced is not None else bare
        tail = ""
        if bare is not None:
            first = re.split(r"[.\[]", bare, maxsplit=1)[0]
            if first not in _ROOTS:
                continue  # "$5", "$x": literal text
            stripped = bare.rstrip(".")
            tail = bare[len(stripped) :]  # "$context.requestId." -> the dot is text
            expr = stripped
        literal.append(value[pos : m.start()])
        get, body, ctx = _http_expression(expr.strip(), response)
        needs_body = needs_body or body
        needs_context = needs_context or ctx
        text = "".join(literal)
        if text:
            parts.append(text)
        parts.append(get)
        literal = [tail]
        pos = m.end()
    literal.append(value[pos:])
    text = "".join(literal)
    if "${" in text:
        raise _Invalid("unterminated ${ in the value")
    if text:
        parts.append(text)
    for part in parts:
        if type(part) is str:
            _check_static(part)
    return _Value(tuple(parts), needs_body, needs_context)


_APPEND = 2
_OVERWRITE = 1
_REMOVE = 0
_OPS = {"append": _APPEND, "overwrite": _OVERWRITE, "remove": _REMOVE}


def _http_key(key: str) -> tuple[int, str, str]:
    """(op, target, name) of ``op:target.name`` / ``overwrite:path`` / ``overwrite:statuscode``."""
    op_name, colon, rest = key.partition(":")
    op = _OPS.get(op_name)
    if not colon or op is None:
        raise _Invalid("expected append|overwrite|remove:header.NAME, ...:querystring.NAME or overwrite:path")
    if rest in ("path", "statuscode"):
        if op != _OVERWRITE:
            raise _Invalid(f"{rest} can only be overwritten (overwrite:{rest})")
        return op, rest, ""
    target, dot, name = rest.partition(".")
    if not dot or not name or target not in ("header", "querystring"):
        raise _Invalid("expected append|overwrite|remove:header.NAME, ...:querystring.NAME or overwrite:path")
    return op, target, name


def _check_http_header(name: str) -> None:
    _check_header_name(name, HTTP_RESERVED_HEADERS, HTTP_RESERVED_PREFIXES, "reserved")


class HttpMappedRequest(NamedTuple):
    """An HTTP API request after ``parameterMapping``."""

    #: Every header of the integration request (the request's own list when none is mapped).
    headers: list[tuple[str, str]]
    #: The raw query string: parameters not mapped keep the client's encoding, mapped ones are
    #: percent-encoded.
    query: str
    #: The integration path (``overwrite:path``, decoded), or None to keep the request's.
    path: str | None


_HeaderOp: TypeAlias = "tuple[int, str, str, _Value]"


def _edit_headers(
    headers: list[tuple[str, str]], ops: tuple[_HeaderOp, ...], src: _Src
) -> list[tuple[str, str]]:
    values = [op[3](src) for op in ops]  # all read from the headers as received
    out = list(headers)
    for (op, name, lname, _), value in zip(ops, values, strict=True):
        if op == _REMOVE:
            out = [h for h in out if h[0].lower() != lname]
            continue
        if value is None or _unsafe(value):
            continue
        if op == _OVERWRITE:
            out = [h for h in out if h[0].lower() != lname]
            out.append((name, value))
            continue
        first = -1
        joined = []
        for i, (k, v) in enumerate(out):
            if k.lower() == lname:
                if first < 0:
                    first = i
                joined.append(v)
        if first < 0:
            out.append((name, value))
        else:
            joined.append(value)
            kept = [h for h in out if h[0].lower() != lname]
            kept.insert(first, (out[first][0], ",".join(joined)))
            out = kept
    return out


def _encode(s: str) -> str:
    return quote(s, safe="")


class HttpRequestMapper:
    """An HTTP API integration's request ``parameterMapping``, compiled."""

    __slots__ = ("header_ops", "needs_body", "needs_context", "path", "query_ops")

    def __init__(
        self,
        header_ops: tuple[_HeaderOp, ...],
        query_ops: tuple[tuple[int, str, _Value], ...],
        path: _Value | None,
    ) -> None:
        #: (op, name, lower-case name, value): removes, then overwrites, then appends.
        self.header_ops = header_ops
        #: (op, name, value), in the same order.
        self.query_ops = query_ops
        self.path = path
        values: list[_Value] = [op[3] for op in header_ops] + [op[2] for op in query_ops]
        if path is not None:
            values.append(path)
        self.needs_body = any(v.needs_body for v in values)
        self.needs_context = any(v.needs_context for v in values)

    def apply(
        self, req: Request, context: Context = None, stage_vars: Mapping[str, str] | None = None
    ) -> HttpMappedRequest:
        src = _Src(
            req.headers,
            req.body,
            context,
            stage_vars,
            req.query,
            req.params,
            req.resource_path,
            HTTP_JSON_PATH_BODY_LIMIT,
        )
        headers = _edit_headers(req.headers, self.header_ops, src) if self.header_ops else req.headers
        query = req.query
        if self.query_ops:
            query = self._edit_query(query, src)
        path = self.path(src) if self.path is not None else None
        return HttpMappedRequest(headers, query, path)

    def _edit_query(self, query: str, src: _Src) -> str:
        values = [op[2](src) for op in self.query_ops]
        parts = [p for p in query.split("&") if p]
        for (op, name, _), value in zip(self.query_ops, values, strict=True):
            if op != _APPEND and (op == _REMOVE or value is not None):
                parts = [p for p in parts if _unquote(p.partition("=")[0]) != name]
            if op != _REMOVE and value is not None:
                parts.append(f"{_encode(name)}={_encode(value)}")
        return "&".join(parts)


def compile_http_request_mapping(mapping: Mapping[str, str]) -> HttpRequestMapper:
    """Compile an HTTP API integration's ``requestParameters`` (key -> value)."""
    errors: list[tuple[str, str]] = []
    header_ops: list[_HeaderOp] = []
    query_ops: list[tuple[int, str, _Value]] = []
    path: _Value | None = None
    for key, value in mapping.items():
        try:
            if not isinstance(value, str):
                raise _Invalid("the value must be a string")
            op, target, name = _http_key(key)
            if target == "statuscode":
                raise _Invalid("overwrite:statuscode is a response mapping")
            if target == "header":
                _check_http_header(name)
            elif target == "querystring" and _unsafe(name):
                raise _Invalid(f"invalid query string name {name!r}")
            compiled = _http_value(value, response=False) if op != _REMOVE else _Value((), False, False)
            if target == "header":
                header_ops.append((op, name, name.lower(), compiled))
            elif target == "querystring":
                query_ops.append((op, name, compiled))
            else:
                path = compiled
        except _Invalid as ex:
            errors.append((key, str(ex)))
    _raise(errors)
    header_ops.sort(key=lambda o: o[0])  # stable: removes, overwrites, appends
    query_ops.sort(key=lambda o: o[0])
    return HttpRequestMapper(tuple(header_ops), tuple(query_ops), path)


class HttpResponseMapper:
    """An HTTP API integration's ``responseParameters`` (by status code), compiled."""

    __slots__ = ("by_status", "needs_body", "needs_context")

    def __init__(self, by_status: dict[int, tuple[tuple[_HeaderOp, ...], _Value | None]]) -> None:
        #: Integration status -> (header ops: removes, overwrites, appends; the status value).
        self.by_status = by_status
        values: list[_Value] = []
        for ops, status in by_status.values():
            values.extend(op[3] for op in ops)
            if status is not None:
                values.append(status)
        self.needs_body = any(v.needs_body for v in values)
        self.needs_context = any(v.needs_context for v in values)

    def apply(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        context: Context = None,
        stage_vars: Mapping[str, str] | None = None,
    ) -> tuple[int, list[tuple[str, str]]]:
        """(status, headers) sent to the client for an integration response; unchanged (the
        same list) when its status has no mapping."""
        entry = self.by_status.get(status)
        if entry is None:
            return status, headers
        ops, new_status = entry
        src = _Src(headers, body, context, stage_vars)
        if new_status is not None:
            got = new_status(src)
            code = _status_code(got)
            if code is not None:
                status = code
        if ops:
            headers = _edit_headers(headers, ops, src)
        return status, headers


def _status_code(text: str | None) -> int | None:
    """``text`` as an HTTP status code (100..599), or None."""
    if text is None or len(text) != 3 or not text.isascii() or not text.isdigit():
        return None
    code = int(text)
    return code if 100 <= code <= 599 else None


def compile_http_response_mapping(mapping: Mapping[str, Mapping[str, str]]) -> HttpResponseMapper:
    """Compile an HTTP API integration's ``responseParameters``: status code -> (key -> value)."""
    errors: list[tuple[str, str]] = []
    by_status: dict[int, tuple[tuple[_HeaderOp, ...], _Value | None]] = {}
    for code, params in mapping.items():
        code_text = str(code)
        got = _status_code(code_text)
        if got is None or got < 200:
            errors.append((code_text, "expected an integration status code between 200 and 599"))
            continue
        if not isinstance(params, Mapping):
            errors.append((code_text, "expected a map of response parameters"))
            continue
        ops: list[_HeaderOp] = []
        status_value: _Value | None = None
        for key, value in params.items():
            try:
                if not isinstance(value, str):
                    raise _Invalid("the value must be a string")
                op, target, name = _http_key(key)
                if target == "statuscode":
                    status_value = _http_value(value, response=True)
                    const = status_value.const
                    if const is not None and _status_code(const) is None:
                        raise _Invalid(f"{const!r} is not an HTTP status code")
                elif target == "header":
                    _check_http_header(name)
                    compiled = (
                        _http_value(value, response=True) if op != _REMOVE else _Value((), False, False)
                    )
                    ops.append((op, name, name.lower(), compiled))
                else:
                    raise _Invalid(f"{key} is a request mapping; responses map header.NAME and statuscode")
            except _Invalid as ex:
                errors.append((f"{code_text}.{key}", str(ex)))
        ops.sort(key=lambda o: o[0])
        by_status[int(code_text)] = (tuple(ops), status_value)
    _raise(errors)
    return HttpResponseMapper(by_status)

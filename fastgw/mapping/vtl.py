"""AWS API Gateway mapping templates (Velocity, VTL): request, integration response and gateway
response templates.

A template is parsed once, when the configuration is loaded (``MappingTemplate(source)``; a
syntax error is a ``TemplateError`` with the line and column), and rendered per request::

    template = MappingTemplate(source, name="POST /pets request")
    out = template.render(TemplateInput(body, headers, query, path_params), context, stage_vars)
    out.body                        # the text to send
    out.request_override.header     # what #set($context.requestOverride.header.X = ...) set
    out.response_override.status    # what #set($context.responseOverride.status = ...) set

A failure while rendering is a ``TemplateError`` too (AWS answers 500 ``{"message": "Internal
server error"}``), except a payload that is not JSON when the template reads it as JSON:
``InvalidJsonBody`` (status 400, as AWS's "Could not parse request body into json").

The variables are AWS's (developer guide, "Variables for data transformations"):

``$input``
    ``$input.body`` the payload as text; ``$input.json(x)`` the JSONPath ``x`` of the payload as
    JSON text; ``$input.path(x)`` the same as an object (``$input.path('$').foo``,
    ``.size()``); ``$input.params()`` a map with ``path``, ``querystring`` and ``header`` maps
    (in that order; a repeated query parameter or header gives its last value);
    ``$input.params(x)`` the parameter ``x`` from the path, else the query string, else the
    headers (names case-insensitive there), else ``""``. An empty payload reads as ``{}``
    (``$input.json('$')`` is ``{}``, as AWS sends to a Lambda function for a GET); a JSONPath
    with no match gives null (``$input.path``, renders as nothing) or ``null``
    (``$input.json``). See ``fastgw.mapping.jsonpath`` for the JSONPath dialect.
``$util``
    ``escapeJavaScript`` (Apache Commons Lang's ``escapeJavaScript``, as AWS: ``'`` and ``"``
    and ``\\`` and ``/`` escaped, control and non-ASCII characters as ``\\uXXXX``),
    ``parseJson``, ``urlEncode`` / ``urlDecode`` (Java's ``URLEncoder``: ``+`` for space, ``*``
    kept, ``~`` encoded), ``base64Encode`` / ``base64Decode`` (UTF-8 text).
``$context``
    the ``Mapping`` given to ``render``, with AWS's names (``requestId``, ``identity.sourceIp``,
    ``authorizer.claims``, ``error.message``, ...): ``context_from_request`` makes it lazily from
    the gateway's request, ``input_from_event`` from a Lambda proxy event's ``requestContext``.
    ``$context.requestOverride.{header,querystring,path}.NAME`` and
    ``$context.responseOverride.{status,header.NAME}`` start empty; what the template sets is
    returned in ``Rendered``. An override may be set once (AWS: "Overrides are final"; setting
    one again is a ``TemplateError``).
``$stageVariables``
    the stage variables (``$stageVariables.name``, ``$stageVariables['name']``,
    ``$stageVariables.get('name')``).

Velocity itself is airspeed-ext's (LocalStack's AWS-compatible airspeed) with the changes listed
in ``fastgw.mapping._engine``: Java's ``toString()`` and String / List / Map methods
(``fastgw.mapping._java``), ``#foreach`` stopped after 1,000 iterations per loop as AWS does
(the 1,000th element still sees ``$foreach.hasNext`` true when there are more, so a loop that
writes separators leaves a trailing one: AWS truncates the same way), ``#break``, and no way to
reach Python attributes from a template.

PERF: nothing is computed before a template asks for it: the payload is decoded and parsed as
JSON on the first ``$input.json`` / ``$input.path`` / ``$input.body`` (once per
``TemplateInput``), the parameter maps on the first ``$input.params``, and
``context_from_request`` builds the context on the first ``$context`` lookup.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus

import airspeed
import orjson

from fastgw.mapping import _compile, _engine
from fastgw.mapping._engine import PROPERTIES, LoopBudgetExceeded, Out, RenderState
from fastgw.mapping._java import METHODS, StringTooLong, java_str, to_json
from fastgw.mapping.jsonpath import JsonPathError, compile_path

if TYPE_CHECKING:
    from fastgw.pipeline.request import Request

__all__ = [
    "InvalidJsonBody",
    "MappingTemplate",
    "Rendered",
    "RequestContext",
    "RequestOverride",
    "ResponseOverride",
    "TemplateError",
    "TemplateInput",
    "context_from_request",
    "error_context",
    "input_from_event",
    "render",
]


class TemplateError(ValueError):
    """A template that cannot be parsed, or that failed while rendering.

    ``line`` / ``column`` (1-based) say where, when known; ``status`` is what AWS answers with
    when rendering fails (500: ``{"message": "Internal server error"}``).
    """

    status = 500

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class InvalidJsonBody(TemplateError):
    """The template read the payload as JSON (``$input.json`` / ``$input.path``) and it is not.

    AWS answers 400 ``{"message": "Could not parse request body into json: ..."}`` for a
    request template; ``aws_message`` is that message.
    """

    status = 400
    #: What the JSON parser said.
    reason = ""

    @property
    def aws_message(self) -> str:
        return f"Could not parse request body into json: {self.reason}"


# ------------------------------------------------------------------------------ $input
class TemplateInput:
    """What ``$input`` reads: the payload, its headers, query string and path parameters.

    ``headers``: (name, value) pairs as received (a name may repeat; lookups ignore case).
    ``query``: the raw query string (no ``?``, not decoded) or decoded (name, value) pairs.
    Everything derived (text, JSON, parameter maps) is computed on first use and kept.
    """

    __slots__ = ("_doc", "_params", "_qmap", "_qpairs", "_text", "body", "headers", "path_params", "query")

    def __init__(
        self,
        body: bytes | str = b"",
        headers: Sequence[tuple[str, str]] = (),
        query: str | Sequence[tuple[str, str]] = "",
        path_params: Mapping[str, str] | None = None,
    ) -> None:
        self.body = body
        self.headers = headers
        self.query = query
        self.path_params = path_params
        self._text: str | None = None
        self._doc: Any = _UNSET
        self._params: dict[str, dict[str, str]] | None = None
        self._qpairs: Sequence[tuple[str, str]] | None = None
        self._qmap: dict[str, str] | None = None

    # -------------------------------------------------------------- Python-side accessors
    def text(self) -> str:
        """The payload as text (UTF-8; undecodable bytes replaced)."""
        text = self._text
        if text is None:
            body = self.body
            if isinstance(body, str):
                text = body
            else:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = body.decode("utf-8", "replace")
            self._text = text
        return text

    def document(self) -> Any:
        """The payload parsed as JSON (``{}`` when empty); ``InvalidJsonBody`` if it is not JSON."""
        doc = self._doc
        if doc is _UNSET:
            body = self.body
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as ex:
                # PERF: an empty or blank payload is checked only once orjson refused it.
                if not body or (isinstance(body, (bytes, str)) and not body.strip()):
                    doc = {}
                else:
                    doc = _slow_json(self.text(), ex)
            else:
                # orjson reads integers beyond 64 bits as floats; Java's parser keeps them. Such an
                # integer has a run of at least 19 digits (-9223372036854775809: i64's minimum - 1).
                raw = body if type(body) is bytes else body.encode() if isinstance(body, str) else bytes(body)
                # PERF: fewer than 19 digits in all cannot make a run of 19 (the regex
                # search costs about four times the count).
                if len(raw) - len(raw.translate(None, _DIGITS)) >= 19 and _LONG_DIGITS.search(raw):
                    doc = _slow_json(self.text(), None)
            self._doc = doc
        return doc

    def query_pairs(self) -> Sequence[tuple[str, str]]:
        """The query parameters, decoded (``+`` as space), in order."""
        pairs = self._qpairs
        if pairs is None:
            query = self.query
            if isinstance(query, str):
                out = []
                for part in query.split("&"):
                    if not part:
                        continue
                    name, _, value = part.partition("=")
                    if "%" in part or "+" in part:
                        name = unquote_plus(name)
                        value = unquote_plus(value)
                    if name:
                        out.append((name, value))
                pairs = out
            else:
                pairs = query
            self._qpairs = pairs
        return pairs

    def query_map(self) -> dict[str, str]:
        """The query parameters by name (a repeated name: its last value)."""
        qmap = self._qmap
        if qmap is None:
            qmap = self._qmap = dict(self.query_pairs())
        return qmap

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (any case), or None."""
        lname = name.lower()
        found = None
        for k, v in self.headers:
            if k.lower() == lname:
                found = v
        return found

    def params_map(self) -> dict[str, dict[str, str]]:
        """``$input.params()``: ``{"path": {...}, "querystring": {...}, "header": {...}}``."""
        params = self._params
        if params is None:
            header: dict[str, str] = {}
            seen: dict[str, str] = {}
            for k, v in self.headers:
                lk = k.lower()
                name = seen.setdefault(lk, k)  # the first spelling, the last value
                header[name] = v
            params = {
                "path": dict(self.path_params) if self.path_params else {},
                "querystring": dict(self.query_map()),
                "header": header,
            }
            self._params = params
        return params

    # -------------------------------------------------------------- what templates call
    def vtl_json(self, path: Any = "$") -> str:
        value = self.vtl_path(path)
        return to_json(value)

    def vtl_path(self, path: Any = "$") -> Any:
        try:
            compiled = compile_path(path)
        except JsonPathError as ex:
            raise TemplateError(str(ex)) from None
        return compiled.find(self.document())

    def vtl_params(self, name: Any = None) -> Any:
        if name is None:
            return self.params_map()
        name = java_str(name)
        path_params = self.path_params
        value = path_params.get(name) if path_params else None
        if value is None:
            value = self.query_map().get(name) if self.query else None
            if value is None:
                value = self.header(name)
        return "" if value is None else value

    def vtl_body(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"TemplateInput({self.body[:40]!r}, ...)"


_UNSET: Any = object()


_LONG_DIGITS = re.compile(rb"\d{19}")
_DIGITS = b"0123456789"


def _slow_json(text: str, ex: Exception | None) -> Any:
    # The standard parser: exact for integers beyond 64 bits, and the judge of what is not JSON.
    import json

    try:
        return json.loads(text)
    except ValueError as slow:
        reason = str(ex or slow)
        err = InvalidJsonBody(f"the payload is not JSON: {reason}")
        err.reason = reason
        raise err from None


def _input_property(obj: TemplateInput, name: str) -> Any:
    return obj.text() if name == "body" else None


METHODS[TemplateInput] = {
    "json": TemplateInput.vtl_json,
    "path": TemplateInput.vtl_path,
    "params": TemplateInput.vtl_params,
    "getBody": TemplateInput.vtl_body,
}
PROPERTIES[TemplateInput] = _input_property


# ------------------------------------------------------------------------------ $util
_JS_ESCAPES = {
    ord("'"): "\\'",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("/"): "\\/",
    ord("\b"): "\\b",
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\f"): "\\f",
    ord("\r"): "\\r",
}
for _c in range(32):
    _JS_ESCAPES.setdefault(_c, f"\\u{_c:04X}")
_JS_SPECIAL = re.compile(r"['\"\\/\x00-\x1f]")
_JS_CONTROL = re.compile(r"[\x00-\x1f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _js_unicode(m: re.Match[str]) -> str:
    cp = ord(m.group())
    if cp > 0xFFFF:  # Java strings are UTF-16: one escape per surrogate
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    return f"\\u{cp:04X}"


def escape_javascript(value: Any) -> str | None:
    """Apache Commons Lang 2 ``StringEscapeUtils.escapeJavaScript(String.valueOf(value))``."""
    if value is None:
        return None
    s = value if type(value) is str else java_str(value)
    if s.isascii() and s.isprintable():
        # PERF: printable ASCII (a User-Agent, a URL, an id): no control character to map, so
        # only the four characters below can need escaping, and ``in`` finds them faster than
        # any regex (backslashes first, so that none added is escaped again).
        if "\\" in s:
            s = s.replace("\\", "\\\\")
        if "'" in s:
            s = s.replace("'", "\\'")
        if '"' in s:
            s = s.replace('"', '\\"')
        if "/" in s:
            s = s.replace("/", "\\/")
        return s
    m = _JS_SPECIAL.search(s)
    if m is not None:
        if _JS_CONTROL.search(s, m.start()) is None:
            # PERF: quotes, backslashes and slashes only (a URL, a User-Agent): str.replace is
            # several times faster than translate() with its per-character table lookups, and
            # gives the same text (backslashes first, so that none added is escaped again).
            s = s.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("/", "\\/")
        else:
            s = s.translate(_JS_ESCAPES)
    if not s.isascii():
        s = _NON_ASCII.sub(_js_unicode, s)
    return s


class _Util:
    """``$util``."""

    __slots__ = ()

    def escapeJavaScript(self, value: Any) -> str | None:
        return escape_javascript(value)

    def parseJson(self, value: Any) -> Any:
        if value is None:
            return None
        text = value if type(value) is str else java_str(value)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as ex:
            raise TemplateError(f"$util.parseJson: not JSON: {ex}") from None

    def urlEncode(self, value: Any) -> str | None:
        if value is None:
            return None
        return quote_plus(java_str(value), safe="*").replace("~", "%7E")

    def urlDecode(self, value: Any) -> str | None:
        if value is None:
            return None
        return unquote_plus(java_str(value), errors="replace")

    def base64Encode(self, value: Any) -> str | None:
        if value is None:
            return None
        return base64.b64encode(java_str(value).encode("utf-8")).decode("ascii")

    def base64Decode(self, value: Any) -> str | None:
        if value is None:
            return None
        text = java_str(value)
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise TemplateError("$util.base64Decode: not base64") from None
        return data.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return "$util"


UTIL = _Util()
METHODS[_Util] = {
    name: getattr(_Util, name)
    for name in ("escapeJavaScript", "parseJson", "urlEncode", "urlDecode", "base64Encode", "base64Decode")
}


# ------------------------------------------------------------------------------ $context
class _Final(dict):  # type: ignore[type-arg]
    """An override map: each entry may be set once (AWS: "Overrides are final")."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        if dict.get(self, key) is not None:
            raise TemplateError(f"override {key!r} is set twice (AWS: overrides are final)")
        dict.__setitem__(self, key, value)


class _ContextView(Mapping[str, Any]):
    """``$context``: the caller's mapping, the override maps, and what the template sets on it."""

    __slots__ = ("_base", "_overlay", "request_override", "response_override")

    def __init__(self, base: Mapping[str, Any]) -> None:
        self._base = base
        self._overlay: dict[str, Any] | None = None
        # PERF: made on first use; most templates set no override.
        self.request_override: dict[str, Any] | None = None
        self.response_override: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        if key == "requestOverride":
            if self.request_override is None:
                self.request_override = {"header": _Final(), "querystring": _Final(), "path": _Final()}
            return self.request_override
        if key == "responseOverride":
            if self.response_override is None:
                self.response_override = _Final(header=_Final())
            return self.response_override
        overlay = self._overlay
        if overlay is not None and key in overlay:
            return overlay[key]
        return self._base.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _UNSET)
        if value is _UNSET:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key in ("requestOverride", "responseOverride"):
            raise TemplateError(f"$context.{key} cannot be replaced; set its entries")
        if self._overlay is None:
            self._overlay = {}
        self._overlay[key] = value

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for source in (self._base, self._overlay or {}, ("requestOverride", "responseOverride")):
            for key in source:
                if key not in seen:
                    seen.add(key)
                    yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


PROPERTIES[_ContextView] = _ContextView.get


class RequestContext(Mapping[str, Any]):
    """``$context`` of a gateway request, built on first use from ``fastgw.functions.events``.

    The same values as the ``requestContext`` of the REST (payload 1.0) Lambda proxy event,
    with ``extra`` merged in (nested maps merged key by key): ``error``, ``authorizer``, ...
    """

    __slots__ = ("_data", "_extra", "_req")

    def __init__(self, req: Request, extra: Mapping[str, Any] | None = None) -> None:
        self._req = req
        self._extra = extra
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        # NOTE: reuses the v1 event's requestContext builder (fastgw.functions.events), so that
        # $context and the Lambda event can never disagree.
        from fastgw.functions import events

        req = self._req
        st = events._static_of(req)
        data = events._context_v1(req, st, req.header("user-agent"))
        if self._extra:
            deep_merge(data, self._extra)
        self._data = data
        return data

    def get(self, key: str, default: Any = None) -> Any:
        data = self._data if self._data is not None else self._load()
        return data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        data = self._data if self._data is not None else self._load()
        return data[key]

    def __iter__(self) -> Iterator[str]:
        data = self._data if self._data is not None else self._load()
        return iter(data)

    def __len__(self) -> int:
        data = self._data if self._data is not None else self._load()
        return len(data)


PROPERTIES[RequestContext] = RequestContext.get


def context_from_request(req: Request, extra: Mapping[str, Any] | None = None) -> RequestContext:
    """``$context`` for ``req`` (a ``fastgw.pipeline.request.Request``), computed on first use."""
    return RequestContext(req, extra)


def error_context(message: str, response_type: str, validation_error: str | None = None) -> dict[str, Any]:
    """``{"error": ...}`` to merge into a gateway response's ``$context`` (AWS's error fields)."""
    return {
        "error": {
            "message": message,
            "messageString": orjson.dumps(message).decode(),
            "responseType": response_type,
            "validationErrorString": validation_error,
        }
    }


def deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into ``into``: nested maps key by key, anything else replaced."""
    for key, value in extra.items():
        old = into.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict):
            deep_merge(old, value)
        elif isinstance(value, Mapping):
            into[key] = deep_merge({}, value)
        else:
            into[key] = value
    return into


# ------------------------------------------------------------------------------ results
class RequestOverride:
    """What the template set under ``$context.requestOverride``: names to values.

    A value is a string, or a list of strings when the template set a list (several header
    lines / query parameters).
    """

    __slots__ = ("header", "path", "querystring")

    def __init__(
        self,
        header: dict[str, str | list[str]],
        querystring: dict[str, str | list[str]],
        path: dict[str, str],
    ) -> None:
        self.header = header
        self.querystring = querystring
        self.path = path

    def __bool__(self) -> bool:
        return bool(self.header or self.querystring or self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "querystring": self.querystring, "path": self.path}

    def __repr__(self) -> str:
        return f"RequestOverride({self.to_dict()!r})"


class ResponseOverride:
    """What the template set under ``$context.responseOverride``: ``status`` and headers."""

    __slots__ = ("header", "status")

    def __init__(self, status: int | None, header: dict[str, str | list[str]]) -> None:
        self.status = status
        self.header = header

    def __bool__(self) -> bool:
        return self.status is not None or bool(self.header)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "header": self.header}

    def __repr__(self) -> str:
        return f"ResponseOverride({self.to_dict()!r})"


class Rendered:
    """The result of a render: ``body`` and the overrides the template set."""

    __slots__ = ("body", "request_override", "response_override")

    def __init__(
        self, body: str, request_override: RequestOverride, response_override: ResponseOverride
    ) -> None:
        self.body = body
        self.request_override = request_override
        self.response_override = response_override

    def __repr__(self) -> str:
        return f"Rendered({self.body[:60]!r}, {self.request_override!r}, {self.response_override!r})"


def _override_values(m: Any, what: str) -> dict[str, Any]:
    if not m:
        return {}
    if not isinstance(m, Mapping):
        raise TemplateError(f"$context.{what} must be a map, got {java_str(m)!r}")
    out: dict[str, Any] = {}
    for name, value in m.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out[java_str(name)] = [java_str(v) for v in value if v is not None]
        else:
            out[java_str(name)] = java_str(value)
    return out


def _status(value: Any) -> int | None:
    if value is None:
        return None
    code: int | None = None
    if type(value) is int:
        code = value
    elif type(value) is float and value.is_integer():
        code = int(value)
    elif type(value) is str and value.strip().isdigit():
        code = int(value)
    if code is None or not 100 <= code <= 599:
        raise TemplateError(f"$context.responseOverride.status is not an HTTP status: {java_str(value)!r}")
    return code


def _request_override(m: dict[str, Any] | None) -> RequestOverride:
    if m is None:
        return RequestOverride({}, {}, {})
    path = _override_values(m.get("path"), "requestOverride.path")
    for name, value in path.items():
        if isinstance(value, list):
            path[name] = value[-1] if value else ""
    return RequestOverride(
        _override_values(m.get("header"), "requestOverride.header"),
        _override_values(m.get("querystring"), "requestOverride.querystring"),
        path,
    )


def _response_override(m: dict[str, Any] | None) -> ResponseOverride:
    if m is None:
        return ResponseOverride(None, {})
    return ResponseOverride(
        _status(m.get("status")), _override_values(m.get("header"), "responseOverride.header")
    )


# ------------------------------------------------------------------------------ templates
#: Compile templates to Python functions (``fastgw.mapping._compile``); False: every template is
#: rendered by the tree walk (``_engine``). Read when a template is created (tests flip it).
COMPILE = True


class MappingTemplate:
    """A template, parsed once; ``render`` is safe to call from any number of requests.

    PERF: the parse tree is also compiled, once, into one Python function
    (``fastgw.mapping._compile``), which renders it with the same results and errors in a
    fraction of the tree walk's time; a template that cannot be compiled is walked."""

    __slots__ = ("_fn", "_root", "_stage_vars", "_text", "contextless", "name", "source")

    def __init__(self, source: str, name: str = "template") -> None:
        self.source = source
        self.name = name
        try:
            self._root = _engine.parse(source, name)
        except airspeed.TemplateSyntaxError as ex:
            message = str(ex).replace("\r", "\\r").replace("\n", "\\n")  # "got: ..." is raw source
            raise TemplateError(f"{name}: {message}", ex.line, ex.column) from None
        except RecursionError:
            raise TemplateError(f"{name}: the template is nested too deeply") from None
        except Exception as ex:
            raise TemplateError(f"{name}: cannot parse the template: {type(ex).__name__}: {ex}") from None
        self._fn: Any = _compile.compile_template(self._root, name, _COMPILE_HELPERS) if COMPILE else None
        needs = self._fn.__needs__ if self._fn is not None else _compile.BASE_NAMES
        #: The template never reads ``$context`` (so sets no override either): ``render_text``
        #: renders it without building ``$context``.
        self.contextless = "context" not in needs
        self._stage_vars = "stageVariables" in needs
        self._text: Any = self._fn.__text__ if self._fn is not None else None

    def render(
        self,
        inp: TemplateInput | None = None,
        context: Mapping[str, Any] | None = None,
        stage_variables: Mapping[str, str] | None = None,
    ) -> Rendered:
        """Render with ``$input`` = ``inp``, ``$context`` = ``context``, ``$stageVariables``."""
        ctx = _ContextView(context if context is not None else {})
        namespace = {
            "input": inp if inp is not None else TemplateInput(),
            "util": UTIL,
            "context": ctx,
            "stageVariables": dict(stage_variables) if stage_variables else {},
        }
        out = Out()
        try:
            fn = self._fn
            if fn is not None and type(namespace["input"]) is TemplateInput:
                fn(out, namespace)
            else:
                self._root.evaluate(out, namespace, RenderState())
        except (_engine.Stop, _engine.Break):
            pass
        except airspeed.TemplateExecutionError as ex:
            raise self._runtime_error(ex) from ex.__cause__
        except RecursionError:
            raise TemplateError(f"{self.name}: recursion too deep while rendering") from None
        return Rendered(
            "".join(out), _request_override(ctx.request_override), _response_override(ctx.response_override)
        )

    def render_text(self, inp: TemplateInput, stage_variables: Mapping[str, str] | None = None) -> str:
        """``render(inp, context, stage_variables).body`` of a ``contextless`` template, whatever
        the context: the template cannot read it, and its overrides are empty (any other
        template is rendered with an empty ``$context``).

        PERF: the compiled template's ``text`` function (``fastgw.mapping._compile``): no
        namespace, no ``$context`` view, no override maps, no ``Rendered``; ``$stageVariables``
        is copied only for a template that reads it."""
        text = self._text
        if text is None or type(inp) is not TemplateInput:
            return self.render(inp, None, stage_variables).body
        try:
            if self._stage_vars:
                return text(inp, dict(stage_variables) if stage_variables else {})  # type: ignore[no-any-return]
            return text(inp, None)  # type: ignore[no-any-return]
        except airspeed.TemplateExecutionError as ex:
            raise self._runtime_error(ex) from ex.__cause__
        except RecursionError:
            raise TemplateError(f"{self.name}: recursion too deep while rendering") from None

    def _runtime_error(self, ex: airspeed.TemplateExecutionError) -> TemplateError:
        start = getattr(ex, "start", 0)
        source = self.source
        line = source.count("\n", 0, start) + 1
        column = start - source.rfind("\n", 0, start)
        cause = ex.__cause__
        where = f"{self.name}: line {line}, column {column}"
        if isinstance(cause, TemplateError):
            err = type(cause)(f"{where}: {cause}", line, column)
            if isinstance(cause, InvalidJsonBody) and isinstance(err, InvalidJsonBody):
                err.reason = cause.reason
            return err
        if isinstance(cause, (LoopBudgetExceeded, StringTooLong)):
            return TemplateError(f"{where}: {cause}", line, column)
        expr = ex.element.my_text().strip().replace("\n", " ")
        if len(expr) > 80:
            expr = expr[:77] + "..."
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(ex)
        return TemplateError(f"{where}: {detail} (in {expr!r})", line, column)

    def __repr__(self) -> str:
        return f"MappingTemplate(name={self.name!r})"


_compile.bind(TemplateInput, _Util, _ContextView)


def _input_param(inp: TemplateInput, name: str) -> str:
    """``$input.params(name)`` for a string name that is no path parameter (``vtl_params``)."""
    value = inp.query_map().get(name) if inp.query else None
    if value is None:
        value = inp.header(name)
    return "" if value is None else value


_COMPILE_HELPERS: dict[str, Any] = {
    "_escape_javascript": escape_javascript,
    "_input_param": _input_param,
    "_UNSET_DOC": _UNSET,
    "_UTIL": UTIL,
}


def render(
    template: MappingTemplate,
    inp: TemplateInput,
    context: Mapping[str, Any] | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> Rendered:
    """``template.render(inp, context, stage_variables)``."""
    return template.render(inp, context, stage_variables)


# ------------------------------------------------------------------------------ events
def input_from_event(event: Mapping[str, Any]) -> tuple[TemplateInput, dict[str, Any], dict[str, str]]:
    """``(TemplateInput, $context, $stageVariables)`` of a Lambda proxy event (payload 1.0).

    ``$context`` is the event's ``requestContext`` (its field names are AWS's ``$context``
    names), with ``httpMethod`` and ``resourcePath`` taken from the event when it lacks them.
    Raises ``ValueError`` for an event of the wrong shape.
    """
    if not isinstance(event, Mapping):
        raise ValueError("the event must be a JSON object")
    body = event.get("body")
    if body is None:
        data: bytes = b""
    elif not isinstance(body, str):
        raise ValueError("event.body must be a string or null")
    elif event.get("isBase64Encoded") in (True, "true"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("event.body is not base64 although isBase64Encoded is true") from None
    else:
        data = body.encode("utf-8")

    headers: list[tuple[str, str]] = []
    multi = _map(event, "multiValueHeaders")
    single = _map(event, "headers")
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), java_str(value)))
    lowered = {name.lower() for name, _ in headers}
    for name, value in single.items():
        if str(name).lower() not in lowered:
            headers.append((str(name), java_str(value)))

    query: list[tuple[str, str]] = []
    mqs = _map(event, "multiValueQueryStringParameters")
    qs = _map(event, "queryStringParameters")
    for name, values in mqs.items():
        for value in values if isinstance(values, list) else [values]:
            query.append((str(name), java_str(value)))
    for name, value in qs.items():
        if name not in mqs:
            query.append((str(name), java_str(value)))

    path_params = {str(k): java_str(v) for k, v in _map(event, "pathParameters").items()}
    stage_variables = {str(k): java_str(v) for k, v in _map(event, "stageVariables").items()}
    context = deep_merge({}, _map(event, "requestContext"))
    if "httpMethod" not in context and isinstance(event.get("httpMethod"), str):
        context["httpMethod"] = event["httpMethod"]
    if "resourcePath" not in context and isinstance(event.get("resource"), str):
        context["resourcePath"] = event["resource"]
    return TemplateInput(data, headers, query, path_params), context, stage_variables


def _map(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"event.{key} must be an object or null")
    return value

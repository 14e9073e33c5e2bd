# cython: annotation_typing=False
"""The usual mapped HTTP route, driven by the exchange's callbacks (no coroutine, no Task).

An HTTP (non-proxy) integration whose request template never reads ``$context``, with no
``requestParameters`` and one ``default`` integration response with one such template (the
route ``bench.load --rest`` measures, and the shape most AWS exports have): ``LeanHttp.start``
renders the request template and sends the request on the exchange's upstream pools, and the
exchange hands the buffered response to a ``LeanCall``, which renders the response template and
answers. Everything else (another Content-Type, binary media, parameters, overrides, plugins)
takes ``fastgw.pipeline.mapped``'s coroutine, which this path must match byte for byte.

The pure-Python source; compiled as ``_lean_c`` (Cython pure-Python mode, types in
``_lean_c.pxd``); ``fastgw.pipeline.lean`` binds the build in use.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastgw.mapping.vtl import TemplateInput
from fastgw.server.replies import LocalReply
from fastgw_core.headers import find_header

log = logging.getLogger("fastgw.pipeline")

_JSON_CT = ("Content-Type", "application/json")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_URI_QUOTE_SAFE = "/-_.~!$&'()*+,;=:@"

#: The upstream head lines of one header (a mapped request's Content-Type), without the
#: framing: ``head_lines`` (``build.upstream_head_lines``) validates and encodes them once.
HEAD_LINES: dict[tuple[str, str], bytes] = {}
_head_lines: Any = None


def bind(head_lines: Any) -> None:
    """``fastgw.pipeline.build.upstream_head_lines`` (imported late: build imports mapped)."""
    global _head_lines
    _head_lines = head_lines


def upstream_head(headers: list[tuple[str, str]], body: bytes, method: str) -> bytes:
    """``build.upstream_head_lines(headers, body, method)``, cached for the usual single header."""
    if len(headers) != 1:
        return _head_lines(headers, body, method)  # type: ignore[no-any-return]
    pair = headers[0]
    lines = HEAD_LINES.get(pair)
    if lines is None:
        lines = _head_lines(headers, b"", "GET")
        lines = lines[: len(lines) - 2]  # without the blank line
        if len(HEAD_LINES) >= 256:
            HEAD_LINES.clear()
        HEAD_LINES[pair] = lines
    if body or method in _BODY_METHODS:
        return lines + length_line(len(body)) + b"\r\n"  # type: ignore[operator]
    return lines + b"\r\n"  # type: ignore[operator]


def render_path(prefix: str, name: str, suffix: str, params: dict[str, str] | None) -> str:
    """An integration URI's path with its one ``{name}`` placeholder filled (``mapped._Uri``)."""
    return prefix + uri_value(params.get(name, "") if params else "") + suffix


def uri_value(value: Any) -> str:
    """A path parameter as an integration URI carries it: percent-encoded as
    ``quote(value, safe=_URI_QUOTE_SAFE)`` does, a value of safe characters only as it is."""
    if type(value) is not str or not _uri_safe(value):
        return quote(value, safe=_URI_QUOTE_SAFE)
    return value  # type: ignore[no-any-return]


def _uri_safe(value: str) -> bool:
    """Whether ``quote(value, safe=_URI_QUOTE_SAFE)`` leaves ``value`` as it is (letters,
    digits, ``_.-~`` and the safe set). PERF: compiled, the membership test of a literal is a C
    switch (``str.strip`` with the 86 characters builds a set of them on every call: ~1,400
    instructions)."""
    for ch in value:
        if ch not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/!$&'()*+,;=:@":
            return False
    return True


#: ``b"content-length: %d\r\n" % n`` by body length (``%`` on bytes costs ~1,000 instructions).
_LENGTH_LINES: dict[int, bytes] = {}


def length_line(n: int) -> bytes:
    """``b"content-length: %d\r\n" % n``, remembered for the lengths seen (up to 4,096 of them)."""
    line = _LENGTH_LINES.get(n)
    if line is None:
        line = b"content-length: %d\r\n" % n
        if len(_LENGTH_LINES) >= 4096:
            _LENGTH_LINES.clear()
        _LENGTH_LINES[n] = line
    return line


def lean_reply(status: int, head: bytes, body: bytes) -> LocalReply:
    """``LocalReply.raw`` of a reply whose ``head`` is its status line and fixed headers: the
    body and its content-length line, none for a status without content (RFC 9110 8.6).
    ``runtime.to_reply`` of such a response makes the same reply."""
    reply = LocalReply.__new__(LocalReply)
    reply.status = status
    if status in (204, 304) or status < 200:
        reply.head = head
        reply.body = b""
    else:
        reply.head = head + length_line(len(body))
        reply.body = body
    reply.kind = None
    reply.message = None
    return reply


class LeanHttp:
    """The compiled parts of one such route (built by ``mapped.http_mapped``)."""

    __slots__ = (
        "api_binary",
        "binary_types",
        "failure",
        "fixed_method",
        "head",
        "lean",
        "one",
        "prefix",
        "query",
        "seen_api",
        "status",
        "suffix",
        "template_failure",
        "templates",
        "upstream",
        "uri",
        "variables",
    )

    def __init__(
        self,
        templates: Any,
        uri: Any,
        upstream: Any,
        selected: Any,
        variables: dict[str, str],
        fixed_method: str | None,
        failure: Any,
        binary_types: Any,
        template_failure: Any,
    ) -> None:
        #: ``mapped.RequestTemplates`` and ``mapped._Uri`` of the route.
        self.templates = templates
        self.uri = uri
        self.one = uri.one
        self.prefix = uri.prefix
        self.suffix = uri.suffix
        self.query = uri.query
        #: The endpoint as the protocol's pools know it (``config.compile.ProxyIntegration``).
        self.upstream = upstream
        #: What the default integration response (``mapped._Selected``) answers with.
        self.lean = selected.lean
        self.status = selected.status
        self.head = selected.head
        self.variables = variables
        self.fixed_method = fixed_method
        #: ``mapped.request_failure``, ``mapped.api_binary_types``, ``mapped.TEMPLATE_FAILURE``.
        self.failure = failure
        self.binary_types = binary_types
        self.template_failure = template_failure
        #: The API of the last request and whether it has binaryMediaTypes (a route's API is fixed).
        self.seen_api: Any = None
        self.api_binary = False

    def start(self, ex: Any) -> bool:
        """Send the mapped request of the exchange ``ex`` (its body in) on its pools; False: not
        this path's request (``mapped``'s coroutine runs it, with the exchange's ``Request``).

        PERF: no ``Request``: the templates read the header pairs, query and parameters of the
        exchange as ``Request`` would hold them (``Exchange.request_headers``)."""
        buf = ex.buf
        payload = b"".join(buf) if buf else b""
        headers = ex.request_headers(payload)[0]
        content_type = find_header(headers, "content-type")
        params = ex.params
        query = ex.query.decode("latin-1")
        try:
            # As in ``mapped``'s coroutine, a failure from here on is the route's 500.
            templates = self.templates
            template = templates.untyped if content_type is None else templates.select(None, content_type)
            if template is None or type(template) is LocalReply:
                return False
            api = ex.route.api
            if api is not self.seen_api:
                self.api_binary = bool(self.binary_types(api))
                self.seen_api = api
            if self.api_binary:
                return False
            inp = TemplateInput(payload.decode("utf-8", "replace"), headers, query, params)
            body = template.render_text(inp, self.variables).encode()
            name = self.one
            if name is not None:
                target = render_path(self.prefix, name, self.suffix, params)
            else:
                target = self.uri.render(params)
        except Exception as err:
            ex.task = None
            ex.pipeline_done(self.failure(err, ex.build_request(), "integration request mapping failed"))
            return True
        if self.query:
            target = target + "?" + self.query
        method = self.fixed_method or ex.method
        if body:
            pair = ("Content-Type", content_type) if content_type else _JSON_CT
            head = upstream_head([pair], body, method)
        else:
            head = upstream_head([], body, method)
        call = LeanCall(self, ex, headers, query, params)
        ex.task = call
        ex.collect_upstream(self.upstream, method, target.encode("latin-1"), head, body, call)
        return True

    def respond(self, ex: Any, call: LeanCall, result: Any) -> None:
        """Answer ``ex`` with the method response of the upstream's ``result`` ((status, raw
        head, body), or the gateway's error reply)."""
        if type(result) is LocalReply:
            reply = result
        else:
            try:
                inp = TemplateInput(result[2], call.headers, call.query, call.params)
                body = self.lean.render_text(inp, self.variables).encode()
            except Exception:
                log.exception("integration response mapping failed", extra={"route": ex.route.key})
                reply = self.template_failure
            else:
                reply = lean_reply(self.status, self.head, body)
        ex.task = None
        ex.pipeline_done(reply)


class LeanCall:
    """One request of a ``LeanHttp`` route: what its exchange resolves with the upstream's
    response (``set_result``, as a Future) and cancels (``cancel``, as a Task) when the client
    goes or the deadline passes. It keeps what the response template reads of the request."""

    __slots__ = ("ex", "headers", "params", "query", "route")

    def __init__(
        self, route: LeanHttp, ex: Any, headers: list[tuple[str, str]], query: str, params: Any
    ) -> None:
        self.route = route
        self.ex = ex
        self.headers = headers
        self.query = query
        self.params = params

    def done(self) -> bool:
        return self.ex is None

    def cancel(self, msg: object = None) -> bool:
        if self.ex is None:
            return False
        self.ex = None
        return True

    def set_result(self, result: Any) -> None:
        ex = self.ex
        if ex is None:
            return
        self.ex = None
        try:
            self.route.respond(ex, self, result)
        except Exception:  # it runs inside the upstream's callback: nothing raised goes there
            log.exception("request pipeline failed", extra={"route": ex.route.key})

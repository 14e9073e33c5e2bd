"""Non-proxy integrations (AWS's HTTP, AWS and MOCK with mapping): templates in, responses out.

The request side: parameters are mapped (``requestParameters``), a request template is chosen
by the request's Content-Type (``passthroughBehavior`` decides what happens without one:
pass the body through or answer 415), rendered (``fastgw.mapping.vtl``) and sent. The response
side: an integration response is selected by its ``selectionPattern`` (a regex on the status
code; on the ``errorMessage`` of a failed function), which gives the method response's status,
its headers (``responseParameters``) and its body (a response template, else the integration's
body as it is). A template that fails at run time gives AWS's 500.

Everything here is compiled once per route and stage at config load (``compile_*``); the
closures they return are the route's integration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from fastgw.config.load import ConfigIssue
from fastgw.mapping import vtl
from fastgw.pipeline import content
from fastgw.pipeline import lean as lean_route
from fastgw.pipeline.build import _parse_head, exchange_call, upstream_head_lines
from fastgw.pipeline.lean import lean_reply as _lean_reply
from fastgw.pipeline.lean import render_path as _render_path
from fastgw.pipeline.lean import upstream_head as _upstream_head
from fastgw.pipeline.lean import uri_value as _uri_value
from fastgw.pipeline.request import Request, Response
from fastgw.pipeline.runtime import upstream_waiter
from fastgw.server import replies
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import (
        AwsIntegration,
        HttpIntegration,
        IntegrationResponse,
        MockIntegration,
        Stage,
    )
    from fastgw.pipeline.runtime import Integration, Services

log = logging.getLogger("fastgw.pipeline")

#: A mapping template or mapping that fails at run time (AWS: 500 Internal server error).
TEMPLATE_FAILURE = replies.aws_error(
    500, "Internal server error", "InternalServerErrorException", spaced=True, kind="API_CONFIGURATION_ERROR"
)
lean_route.bind(upstream_head_lines)
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\+?\}")
_JSON = "application/json"
_UNSET: Any = object()


def _media(value: str | None) -> str:
    """A Content-Type's media type, lower-case, without parameters ('' when absent)."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------------------- request templates
class RequestTemplates:
    """The request templates of an integration and its passthrough behaviour."""

    __slots__ = ("behavior", "contextless", "templates", "untyped")

    def __init__(self, templates: dict[str, Any], behavior: str) -> None:
        self.templates = templates
        self.behavior = behavior
        #: No template reads ``$context`` (``MappingTemplate.contextless``).
        self.contextless = all(t.contextless for t in templates.values())
        #: ``select`` of a request without Content-Type (taken as application/json).
        self.untyped: Any = self._select(_JSON)

    def select(self, req: Request, content_type: str | Any | None = _UNSET) -> Any:
        """The template for the request (None: pass the body through; a LocalReply: 415).

        AWS: a request without Content-Type is taken as application/json. ``content_type``:
        the request's Content-Type header when the caller has read it already."""
        if content_type is _UNSET:
            content_type = req.header("content-type")
        if content_type is None:
            return self.untyped
        return self._select(_media(content_type) or _JSON)

    def _select(self, ctype: str) -> Any:
        templates = self.templates
        got = templates.get(ctype)
        if got is not None:
            return got
        behavior = self.behavior
        if behavior == "WHEN_NO_MATCH" or (behavior == "WHEN_NO_TEMPLATES" and not templates):
            return None
        return replies.UNSUPPORTED_MEDIA_TYPE


def compile_templates(
    templates: dict[str, str], behavior: str, path: str, issues: list[ConfigIssue]
) -> RequestTemplates:
    from fastgw.mapping.vtl import MappingTemplate, TemplateError

    compiled: dict[str, Any] = {}
    for ctype, source in templates.items():
        try:
            compiled[_media(ctype)] = MappingTemplate(source, f"request {ctype}")
        except TemplateError as ex:
            issues.append(ConfigIssue(f"{path}.{ctype}", str(ex)))
    return RequestTemplates(compiled, behavior)


# ---------------------------------------------------------------------------- integration responses
class IntegrationResponses:
    """Integration responses in selection order: patterns first (as declared), then default."""

    __slots__ = ("contextless", "default", "patterns")

    def __init__(self, patterns: list[tuple[re.Pattern[str], _Selected]], default: _Selected | None) -> None:
        self.patterns = patterns
        self.default = default
        #: No response reads ``$context`` (no parameters, contextless templates only).
        every = [selected for _, selected in patterns] + ([default] if default is not None else [])
        self.contextless = all(
            s.params is None and all(t.contextless for _, t in s.templates.values()) for s in every
        )

    def select(self, value: str) -> _Selected | None:
        for pattern, selected in self.patterns:
            if pattern.fullmatch(value) is not None:
                return selected
        return self.default


class _Selected:
    """One integration response, compiled."""

    __slots__ = ("content_handling", "head", "lean", "only", "params", "status", "templates")

    def __init__(self, status: int, params: Any, templates: dict[str, tuple[str, Any]], handling: str | None):
        self.status = status
        self.params = params
        self.templates = templates
        self.content_handling = handling
        #: The one template, when there is one: whatever the Accept header, it is the one chosen.
        self.only = next(iter(templates.values())) if len(templates) == 1 else None
        #: That template when nothing else shapes the response (no parameters, no $context, so
        #: no override): the method response is its text as ``ctype`` with ``status``
        #: (``lean_reply``), and the integration response's headers are not read.
        self.lean: Any = None
        #: The reply head of such a response (the status line and its Content-Type line, as
        #: ``runtime.to_reply`` writes them), without the framing.
        self.head = b""
        if params is None and self.only is not None and self.only[1].contextless:
            from fastgw.pipeline.runtime import _header_line

            try:
                line, _ = _header_line("Content-Type", self.only[0])
            except ValueError:
                return  # to_reply refuses it (500), as on the general path
            self.lean = self.only[1]
            self.head = replies.status_line(status) + line

    def lean_reply(self, body: bytes) -> LocalReply:
        """``runtime.to_reply(Response(status, [("Content-Type", ctype)], body))`` of a ``lean``
        response, with its head precomputed."""
        return _lean_reply(self.status, self.head, body)  # type: ignore[no-any-return]


def compile_responses(
    responses: dict[str, IntegrationResponse], path: str, issues: list[ConfigIssue]
) -> IntegrationResponses | None:
    if not responses:
        return None
    from fastgw.mapping.vtl import MappingTemplate, TemplateError
    from fastgw.pipeline import params as pm

    patterns: list[tuple[re.Pattern[str], _Selected]] = []
    default = None
    for key, spec in responses.items():
        r_path = f"{path}.{key}"
        mapper = None
        if spec.responseParameters:
            try:
                mapper = pm.compile_response_parameters(spec.responseParameters)
            except pm.MappingError as ex:
                issues.append(ConfigIssue(f"{r_path}.responseParameters.{ex.key}", ex.message))
        templates: dict[str, tuple[str, Any]] = {}
        for ctype, source in spec.responseTemplates.items():
            try:
                templates[_media(ctype)] = (ctype, MappingTemplate(source, f"response {key} {ctype}"))
            except TemplateError as ex:
                issues.append(ConfigIssue(f"{r_path}.responseTemplates.{ctype}", str(ex)))
        selected = _Selected(int(spec.statusCode), mapper, templates, spec.contentHandling)
        if key == "default":
            default = selected
            continue
        try:
            patterns.append((re.compile(key, re.DOTALL), selected))
        except re.error as ex:
            issues.append(ConfigIssue(r_path, f"selectionPattern is not a valid regex: {ex}"))
    return IntegrationResponses(patterns, default)


def _pick_template(templates: dict[str, tuple[str, Any]], req: Request) -> tuple[str, Any] | None:
    if not templates:
        return None
    accept = req.header("accept")
    if accept:
        for part in accept.split(","):
            got = templates.get(_media(part))
            if got is not None:
                return got
    got = templates.get(_JSON)
    if got is not None:
        return got
    return next(iter(templates.values()))


def method_response(
    selected: _Selected,
    req: Request,
    status: int,
    headers: list[tuple[str, str]] | None,
    body: bytes,
    context: Any,
    variables: dict[str, str],
    reply: bool = False,
) -> Response | LocalReply:
    """The method response of one selected integration response. ``headers`` (the integration
    response's) may be None for a ``lean`` response, which does not read them; ``reply``: answer
    such a response as the LocalReply ``runtime.to_reply`` would make of it."""
    lean = selected.lean
    if lean is not None:
        text = lean.render_text(vtl.TemplateInput(body, req.headers, req.query, req.params), variables)
        if reply:
            return selected.lean_reply(text.encode())
        return Response(selected.status, [("Content-Type", selected.only[0])], text.encode())  # type: ignore[index]
    if headers is None:
        raise ValueError("the integration response's headers are needed")
    out_status = selected.status
    out_headers: list[tuple[str, str]] = []
    if selected.params is not None:
        out_headers.extend(selected.params.apply(status, headers, body, context, variables))
    chosen = selected.only or _pick_template(selected.templates, req)
    if chosen is not None:
        ctype, template = chosen
        got = template.render(vtl.TemplateInput(body, req.headers, req.query, req.params), context, variables)
        out_body = got.body.encode()
        override = got.response_override
        if override.status is not None:
            out_status = int(override.status)
        for name, value in override.header.items():
            out_headers = [(k, v) for k, v in out_headers if k.lower() != name.lower()]
            out_headers.append((name, str(value)))
        if not out_headers or not any(k.lower() == "content-type" for k, _ in out_headers):
            out_headers.append(("Content-Type", ctype))
    else:
        types = _binary_types(req)
        ctype_in = next((v for k, v in headers if k.lower() == "content-type"), None)
        binary = bool(types) and types.matches(ctype_in)
        accept_binary = bool(types) and types.accept_is_binary(req.header("accept"))
        try:
            out_body = content.convert_response(body, binary, accept_binary, selected.content_handling)
        except content.ContentError:
            return TEMPLATE_FAILURE
        if not any(k.lower() == "content-type" for k, _ in out_headers):
            ctype = next((v for k, v in headers if k.lower() == "content-type"), _JSON)
            out_headers.append(("Content-Type", ctype))
    return Response(out_status, out_headers, out_body)


# ---------------------------------------------------------------------------- request side
def _binary_types(req: Request) -> Any:
    """The API's binaryMediaTypes, compiled once per API (fastgw.pipeline.content)."""
    return api_binary_types(req.route.api)


def api_binary_types(api: Any) -> Any:
    """``_binary_types`` of an API."""
    got = _BINARY.get(api.binary_types)
    if got is None:
        from fastgw.pipeline.content import BinaryTypes

        got = _BINARY[api.binary_types] = BinaryTypes(api.binary_types)
    return got


_BINARY: dict[tuple[str, ...], Any] = {}


def _render_request(
    req: Request,
    templates: RequestTemplates,
    context: Any,
    variables: dict[str, str],
    handling: str | None = None,
    content_type: str | Any | None = _UNSET,
) -> tuple[bytes, Any] | LocalReply:
    """The integration request body (and the template's requestOverride, or None), with
    AWS's binary conversions (``binaryMediaTypes``, ``contentHandling``). ``content_type``:
    the request's Content-Type header when the caller has read it already."""
    if content_type is _UNSET:
        content_type = req.header("content-type")
    types = _binary_types(req)
    binary = bool(types) and types.matches(content_type)
    template = None if handling == "CONVERT_TO_BINARY" else templates.select(req, content_type)
    if type(template) is LocalReply:
        return template  # type: ignore[no-any-return]
    if template is None:
        got_body = content.convert_request(req.body, binary, handling, False)
        return got_body if type(got_body) is bytes else got_body.encode(), None  # type: ignore[union-attr]
    text = content.convert_request(req.body, binary, handling, True)
    inp = vtl.TemplateInput(text, req.headers, req.query, req.params)
    if template.contextless:
        return template.render_text(inp, variables).encode(), None
    got = template.render(inp, context, variables)
    return got.body.encode(), got.request_override


def request_input(req: Request) -> Any:
    """``$input`` of a request template: the method request's body and parameters."""
    return vtl.TemplateInput(req.body, req.headers, req.query, req.params)


def request_failure(ex: Exception, req: Request, what: str) -> LocalReply:
    """A request mapping failed: AWS's 400 when a template read a body that is not JSON, else
    its 500."""
    if isinstance(ex, vtl.InvalidJsonBody):
        return replies.aws_error(400, ex.aws_message, "BadRequestException", kind="BAD_REQUEST_BODY")
    log.exception(what, extra={"route": req.route.key})
    return TEMPLATE_FAILURE


def mapping_context(req: Request) -> Any:
    return vtl.RequestContext(req)


# ---------------------------------------------------------------------------- MOCK (AWS form)
def mock_mapped(integ: MockIntegration, stage: Stage, path: str, issues: list[ConfigIssue]) -> Integration:
    """MOCK with request templates and integration responses (as AWS builds CORS preflights)."""
    templates = compile_templates(
        integ.requestTemplates, integ.passthroughBehavior, f"{path}.requestTemplates", issues
    )
    responses = compile_responses(integ.responses, f"{path}.responses", issues)
    variables = dict(stage.variables)

    async def run(req: Request, svc: Services) -> Response | LocalReply:
        context = mapping_context(req)
        try:
            got = _render_request(req, templates, context, variables)
            if type(got) is LocalReply:
                return got  # type: ignore[return-value]
            body, _ = got  # type: ignore[misc]
            status = 200
            if body.strip():
                try:
                    data = orjson.loads(body)
                    status = int(data.get("statusCode", 200)) if type(data) is dict else 200
                except (orjson.JSONDecodeError, TypeError, ValueError):
                    return TEMPLATE_FAILURE
            selected = responses.select(str(status)) if responses is not None else None
            if selected is None:
                return Response(status, [], b"")
            return method_response(selected, req, status, [], b"", context, variables)
        except Exception as ex:
            return request_failure(ex, req, "MOCK mapping failed")

    return run


# ---------------------------------------------------------------------------- HTTP
class _Uri:
    """An HTTP integration URI: its target and path template ({name} from the mapped path)."""

    __slots__ = ("one", "parts", "prefix", "query", "slots", "suffix", "target")

    def __init__(self, target: Any, parts: list[str | tuple[str]], query: str) -> None:
        self.target = target
        self.parts = parts
        self.query = query
        #: (index in ``parts``, parameter name) of each placeholder.
        self.slots = tuple((i, part[0]) for i, part in enumerate(parts) if type(part) is tuple)
        #: PERF: the usual single placeholder: its name and the text around it.
        self.one = self.slots[0][1] if len(self.slots) == 1 else None
        at = self.slots[0][0] if self.one is not None else -1
        self.prefix = "".join(parts[:at]) if at >= 0 else ""  # type: ignore[arg-type]
        self.suffix = "".join(parts[at + 1 :]) if at >= 0 else ""  # type: ignore[arg-type]

    def render(self, params: dict[str, str] | None) -> str:
        name = self.one
        if name is not None:
            return _render_path(self.prefix, name, self.suffix, params)  # type: ignore[no-any-return]
        out = self.parts.copy()
        for i, name in self.slots:
            out[i] = _uri_value(params.get(name, "") if params else "")
        return "".join(out)  # type: ignore[arg-type]


def _compile_uri(uri: str, stage: Stage, path: str, issues: list[ConfigIssue]) -> _Uri | None:
    from fastgw.config.compile import _parse_base, _substitute_stage_vars

    before = len(issues)
    text = _substitute_stage_vars(uri, stage, path, issues)
    target, rest = _parse_base(text, path, issues)
    if target is None or len(issues) > before:
        return None
    path_part, _, query = rest.partition("?")
    if not path_part.startswith("/"):
        path_part = "/" + path_part
    parts: list[str | tuple[str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(path_part):
        parts.append(path_part[pos : m.start()])
        parts.append((m.group(1),))
        pos = m.end()
    parts.append(path_part[pos:])
    return _Uri(target, [p for p in parts if p != ""], query)


def http_mapped(
    integ: HttpIntegration, stage: Stage, path: str, issues: list[ConfigIssue]
) -> Integration | None:
    """AWS's HTTP (non-proxy) integration."""
    from fastgw.pipeline import params as pm

    uri = _compile_uri(integ.uri, stage, f"{path}.uri", issues)
    mapper = None
    if integ.requestParameters:
        try:
            mapper = pm.compile_request_parameters(integ.requestParameters)
        except pm.MappingError as ex:
            issues.append(ConfigIssue(f"{path}.requestParameters.{ex.key}", ex.message))
    templates = compile_templates(
        integ.requestTemplates, integ.passthroughBehavior, f"{path}.requestTemplates", issues
    )
    responses = compile_responses(integ.responses, f"{path}.responses", issues)
    if uri is None:
        return None
    variables = dict(stage.variables)
    timeout = integ.timeout_ms / 1000.0
    fixed_method = integ.httpMethod.upper() if integ.httpMethod else None
    handling = integ.contentHandling
    from fastgw.config.compile import ProxyIntegration

    # The endpoint as the protocol's upstream pools know it (the path is rendered per request).
    upstream = ProxyIntegration(
        targets=[uri.target],
        path_parts=(b"/",),
        static_path=b"/",
        single_param=None,
        uri_query=b"",
        timeout=timeout,
        pass_query=False,
    )

    # $context is built (lazily, fastgw.mapping.vtl.RequestContext) only when something can read it.
    needs_context = (
        mapper is not None
        or not templates.contextless
        or (responses is not None and not responses.contextless)
    )

    # PERF: the usual request side (a contextless template, no contentHandling, a text payload)
    # renders in ``run`` itself; anything else goes through ``_render_request``.
    lean_request = handling is None and templates.contextless
    TemplateInput = vtl.TemplateInput
    # The API of the last request and whether it has binaryMediaTypes (a route's API is fixed).
    seen_api: Any = None
    api_binary = False

    async def run(req: Request, svc: Services) -> Response | LocalReply:
        nonlocal seen_api, api_binary
        context = vtl.RequestContext(req) if needs_context else None
        try:
            content_type = req.header("content-type")
            if not lean_request:
                template = None
            elif content_type is None:
                template = templates.untyped
            else:
                template = templates.select(req, content_type)
            if req.route.api is not seen_api:
                api_binary = bool(_binary_types(req))
                seen_api = req.route.api
            if template is not None and type(template) is not LocalReply and not api_binary:
                text = req.body.decode("utf-8", "replace")  # content.convert_request, for a template
                inp = TemplateInput(text, req.headers, req.query, req.params)
                body = template.render_text(inp, variables).encode()
                override = None
            else:
                got = _render_request(req, templates, context, variables, handling, content_type)
                if type(got) is LocalReply:
                    return got  # type: ignore[return-value]
                body, override = got  # type: ignore[misc]
            headers: list[tuple[str, str]] = []
            if mapper is None and not override:
                # PERF: nothing mapped: the URI's own query, the Content-Type of a body.
                target_path = uri.render(req.params)
                if uri.query:
                    target_path = f"{target_path}?{uri.query}"
                if body:
                    headers.append(("Content-Type", content_type) if content_type else _JSON_CT)
            else:
                target_path = _mapped_target(req, uri, mapper, override, context, variables, headers)
                if body and not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("Content-Type", content_type or _JSON))
        except Exception as ex:
            return request_failure(ex, req, "integration request mapping failed")
        method = fixed_method or req.method
        ex = req.exchange
        r_headers: list[tuple[str, str]] | None
        if ex is None:
            resp = await exchange_call(svc, req, upstream, method, target_path, headers, body)
            if type(resp) is LocalReply:
                return resp  # type: ignore[no-any-return]
            r_status, r_headers, r_body = resp.status, resp.headers, resp.body  # type: ignore[union-attr]
        else:
            # PERF: exchange_call inlined: the exchange's own upstream pools, a cached head for
            # the usual headers, and the response head parsed only when something reads it.
            fut = upstream_waiter(ex, svc.loop)
            head = _upstream_head(headers, body, method)
            ex.collect_upstream(upstream, method, target_path.encode("latin-1"), head, body, fut)
            done = await fut
            if type(done) is LocalReply:
                return done  # type: ignore[no-any-return]
            r_status, raw_head, r_body = done
            r_headers = None
        if responses is None:
            return Response(r_status, _parse_head(raw_head) if r_headers is None else r_headers, r_body)
        selected = responses.default if not responses.patterns else responses.select(str(r_status))
        if selected is None:
            # No response matches and there is no default: AWS answers 500 (the method has no
            # response for the endpoint's status).
            return TEMPLATE_FAILURE
        lean = selected.lean
        # A reply for the protocol at once, unless response plugins edit the Response.
        pipeline = req.route.pipeline
        reply = pipeline is not None and not pipeline.response
        try:
            if lean is not None and reply:
                inp = TemplateInput(r_body, req.headers, req.query, req.params)
                return selected.lean_reply(lean.render_text(inp, variables).encode())
            if r_headers is None and lean is None:
                r_headers = _parse_head(raw_head)
            return method_response(
                selected,
                req,
                r_status,
                r_headers,
                r_body,
                context,
                variables,
                reply,
            )
        except Exception:
            log.exception("integration response mapping failed", extra={"route": req.route.key})
            return TEMPLATE_FAILURE

    if (
        mapper is None
        and lean_request
        and responses is not None
        and not responses.patterns
        and responses.default is not None
        and responses.default.lean is not None
    ):
        # PERF: the usual shape of all runs without this coroutine (fastgw.pipeline.lean), which
        # hands back to it any request it does not take (another Content-Type, binary media).
        run.lean = lean_route.LeanHttp(  # type: ignore[attr-defined]
            templates,
            uri,
            upstream,
            responses.default,
            variables,
            fixed_method,
            request_failure,
            api_binary_types,
            TEMPLATE_FAILURE,
        )
    return run


def _mapped_target(
    req: Request,
    uri: _Uri,
    mapper: Any,
    override: Any,
    context: Any,
    variables: dict[str, str],
    headers: list[tuple[str, str]],
) -> str:
    """The upstream target of a request with ``requestParameters`` or a template's
    ``requestOverride``; the mapped headers are added to ``headers``."""
    query: list[tuple[str, str]] = []
    path_params = req.params  # read only, unless a mapping or an override changes it
    if mapper is not None:
        path_params = dict(path_params or {})
        m_headers, m_query, m_path = mapper.apply(req, context, variables)
        headers.extend(m_headers)
        query.extend(m_query)
        path_params.update(m_path)
    if override is not None and (override.header or override.querystring or override.path):
        if mapper is None:
            path_params = dict(path_params or {})
        _apply_override(override, headers, query, path_params)  # type: ignore[arg-type]
    target_path = uri.render(path_params)
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query) if query else ""
    if uri.query:
        qs = f"{uri.query}&{qs}" if qs else uri.query
    if qs:
        target_path = f"{target_path}?{qs}"
    return target_path


_JSON_CT = ("Content-Type", _JSON)
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}
)


def _apply_override(
    override: Any, headers: list[tuple[str, str]], query: list[tuple[str, str]], path_params: dict[str, str]
) -> None:
    for name, value in override.header.items():
        headers[:] = [(k, v) for k, v in headers if k.lower() != name.lower()]
        headers.append((name, str(value)))
    for name, value in override.querystring.items():
        query[:] = [(k, v) for k, v in query if k != name]
        query.append((name, str(value)))
    for name, value in override.path.items():
        path_params[name] = str(value)


# ---------------------------------------------------------------------------- AWS (functions)
def aws_mapped(
    integ: AwsIntegration, fn: Any, stage: Stage, path: str, issues: list[ConfigIssue]
) -> Integration:
    """AWS's non-proxy Lambda integration: the mapped body is the function's event."""
    from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError
    from fastgw.functions.registry import LocalFunction

    templates = compile_templates(
        integ.requestTemplates, integ.passthroughBehavior, f"{path}.requestTemplates", issues
    )
    responses = compile_responses(integ.responses, f"{path}.responses", issues)
    variables = dict(stage.variables)
    timeout = integ.timeout_ms / 1000.0
    local = fn if type(fn) is LocalFunction else None

    async def run(req: Request, svc: Services) -> Response | LocalReply:
        context = mapping_context(req)
        try:
            got = _render_request(req, templates, context, variables)
            if type(got) is LocalReply:
                return got  # type: ignore[return-value]
            body, _ = got  # type: ignore[misc]
        except Exception as ex:
            return request_failure(ex, req, "integration request mapping failed")
        try:
            event = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            # AWS: a non-JSON payload cannot be a Lambda event.
            return replies.aws_error(400, "Could not parse request body into json", "BadRequestException")
        error: str | None = None
        try:
            if local is not None:
                done, result = local.start(event, svc.executor, timeout)
                if not done:
                    result = await result
            else:
                result = await fn.invoke(event, svc, timeout, req.request_id)
            out = orjson.dumps(result)
        except FunctionTimeout:
            return replies.INTEGRATION_TIMEOUT
        except FunctionError as ex:
            error = ex.error_message or ""
            out = orjson.dumps(
                {"errorMessage": ex.error_message, "errorType": ex.error_type, "stackTrace": ex.stack_trace}
            )
        except InvokeError as ex:
            log.error("function unreachable", extra={"function": fn.name, "error": str(ex)})
            return replies.INTEGRATION_FAILURE
        except TypeError:
            log.error("function result is not JSON", extra={"function": fn.name})
            return replies.INTEGRATION_FAILURE
        headers = [("Content-Type", _JSON)]
        if responses is None:
            return Response(200 if error is None else 502, headers, out)
        selected = responses.select(error) if error is not None else responses.default
        if selected is None:
            return TEMPLATE_FAILURE
        try:
            return method_response(selected, req, 200, headers, out, context, variables)
        except Exception:
            log.exception("integration response mapping failed", extra={"route": req.route.key})
            return TEMPLATE_FAILURE

    return run


MappedFactory = Callable[..., Any]

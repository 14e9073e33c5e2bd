"""Gateway responses: the gateway's own error replies, as AWS REST APIs let users customise them.

Every error the gateway answers itself is a ``LocalReply`` tagged with its AWS gateway-response
type (``reply.kind``) and message (``reply.message``, AWS's ``$context.error.message``). The
default bytes of each are built once, where the error is raised (``fastgw.server.replies``,
the authorizers, the traffic gate, validation); they are AWS's defaults. An API with
``gatewayResponses`` gets a ``GatewayResponses`` here, and the exchange passes each tagged
reply through ``render`` just before writing it (``Exchange.respond_local``): one mechanism for
every error path, and no cost at all for APIs that customise nothing.

A type left unset inherits DEFAULT_4XX or DEFAULT_5XX (by the error's status), as on AWS; with
neither, the default reply goes out unchanged. A customised response keeps the error's headers
(``x-amzn-ErrorType``, ``Retry-After``...) and status unless it sets its own; its template, when
given, renders the body with ``$context.error.message``, ``.messageString`` (the message as a
JSON string), ``.responseType`` and ``.validationErrorString``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.load import ConfigIssue
    from fastgw.config.model import Api, GatewayResponseConfig
    from fastgw.pipeline.request import Request

log = logging.getLogger("fastgw.pipeline")

#: AWS's 21 gateway-response types: default status (None: the error's own) and where each is
#: raised in fastgw ("Gateway response types for API Gateway", developer guide).
TYPES: dict[str, int | None] = {
    "ACCESS_DENIED": 403,  # authorizer / resource policy / IAM policy denies
    "API_CONFIGURATION_ERROR": 500,  # a mapping template or mapping fails at run time
    "AUTHORIZER_CONFIGURATION_ERROR": 500,  # Lambda authorizer failed or answered badly
    "AUTHORIZER_FAILURE": 500,
    "BAD_REQUEST_PARAMETERS": 400,  # request validator: required parameters missing
    "BAD_REQUEST_BODY": 400,  # request validator: body does not match its model
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
    "EXPIRED_TOKEN": 403,
    "INTEGRATION_FAILURE": 504,  # fastgw keeps AWS's observed 502 for failed functions
    "INTEGRATION_TIMEOUT": 504,
    "INVALID_API_KEY": 403,  # traffic gate: no / unknown / disabled key
    "INVALID_SIGNATURE": 403,  # SigV4
    "MISSING_AUTHENTICATION_TOKEN": 403,  # no route (AWS's answer to unknown paths)
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "RESOURCE_NOT_FOUND": 404,
    "THROTTLED": 429,
    "UNAUTHORIZED": 401,
    "UNSUPPORTED_MEDIA_TYPE": 415,  # passthroughBehavior NEVER
    "WAF_FILTERED": 403,  # raised by plugins (fastgw has no WAF of its own)
}

DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'

#: AWS's default x-amzn-ErrorType and message of the types a plugin may raise itself.
_PLUGIN_DEFAULTS: dict[str, tuple[str, str]] = {
    "ACCESS_DENIED": ("AccessDeniedException", "Forbidden"),
    "BAD_REQUEST_BODY": ("BadRequestException", "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": ("BadRequestException", "Bad request parameters"),
    "INVALID_API_KEY": ("ForbiddenException", "Forbidden"),
    "QUOTA_EXCEEDED": ("LimitExceededException", "Limit Exceeded"),
    "THROTTLED": ("TooManyRequestsException", "Too Many Requests"),
    "UNAUTHORIZED": ("UnauthorizedException", "Unauthorized"),
    "UNSUPPORTED_MEDIA_TYPE": ("UnsupportedMediaTypeException", "Unsupported Media Type"),
    "WAF_FILTERED": ("WAFFilteredException", "Forbidden"),
}


def gateway_error(kind: str, message: str | None = None, status: int | None = None) -> LocalReply:
    """A gateway error of AWS type ``kind`` for a plugin to return (e.g. ``WAF_FILTERED`` from a
    request-filtering plugin): AWS's default status and body, customisable by the API's
    ``gatewayResponses`` like the gateway's own errors."""
    from fastgw.server.replies import aws_error

    if kind not in TYPES:
        raise ValueError(f"unknown gateway response type {kind!r}")
    error_type, default_message = _PLUGIN_DEFAULTS.get(kind, ("BadRequestException", "Bad Request"))
    code = status or TYPES[kind] or (500 if kind == "DEFAULT_5XX" else 400)
    if kind == "DEFAULT_5XX" or (TYPES[kind] or 0) >= 500:
        error_type, default_message = "InternalServerErrorException", "Internal server error"
    return aws_error(code, message or default_message, error_type, kind=kind)


_FRAMING = (b"content-length:", b"content-type:")


class _HeaderMap:
    """``gatewayresponse.header.NAME`` mappings: the same sources as an integration request's
    ``requestParameters`` (``method.request.*``, ``context.*``, ``stageVariables.*``, static),
    compiled by ``fastgw.pipeline.params``."""

    __slots__ = ("mapper", "static")

    _PREFIX = "gatewayresponse.header."

    def __init__(self, mapper: Any, static: bool) -> None:
        self.mapper = mapper
        #: Every value is a quoted literal: the result does not depend on the request.
        self.static = static

    @classmethod
    def compile(cls, mapping: dict[str, str], path: str, issues: list[ConfigIssue]) -> _HeaderMap | None:
        from fastgw.pipeline import params as pm

        renamed: dict[str, str] = {}
        back: dict[str, str] = {}
        for key, value in mapping.items():
            if not key.startswith(cls._PREFIX) or len(key) == len(cls._PREFIX):
                issues.append(
                    ConfigIssue(f"{path}.responseParameters.{key}", "expected gatewayresponse.header.NAME")
                )
                return None
            inner = "integration.request.header." + key[len(cls._PREFIX) :]
            renamed[inner] = value
            back[inner] = key
        try:
            mapper = pm.compile_request_parameters(renamed)
        except pm.MappingError as ex:
            issues.append(ConfigIssue(f"{path}.responseParameters.{back.get(ex.key, ex.key)}", ex.message))
            return None
        static = all(len(v) >= 2 and v[0] == v[-1] == "'" for v in mapping.values())
        return cls(mapper, static)

    def apply(self, req: Request | None, context: Any, variables: dict[str, str]) -> list[tuple[str, str]]:
        if req is None:  # static: no request needed
            return [(name, get(None)) for _, name, get in self.mapper.steps]  # type: ignore[arg-type]
        return self.mapper.apply(req, context, variables).headers  # type: ignore[no-any-return]


class _Custom:
    """One customised type, compiled: status, header mappings, templates by content type."""

    __slots__ = ("headers", "status", "templates")

    def __init__(self, status: int | None, headers: Any, templates: dict[str, Any]) -> None:
        self.status = status
        self.headers = headers
        self.templates = templates


def compile_gateway_responses(api: Api, path: str, issues: list[ConfigIssue]) -> dict[str, _Custom] | None:
    """The API's customised gateway responses (None when it customises none); each stage
    wraps them in a ``GatewayResponses`` with its variables."""
    from fastgw.config.load import ConfigIssue

    if not api.gatewayResponses:
        return None
    if api.kind != "rest":
        issues.append(
            ConfigIssue(f"{path}.gatewayResponses", "gateway responses exist only on REST APIs (AWS)")
        )
        return None
    customs: dict[str, _Custom] = {}
    failed = False
    for kind, cfg in api.gatewayResponses.items():
        g_path = f"{path}.gatewayResponses.{kind}"
        mapper = None
        if cfg.responseParameters:
            mapper = _HeaderMap.compile(cfg.responseParameters, g_path, issues)
            failed = failed or mapper is None
        templates: dict[str, Any] = {}
        for ctype, source in cfg.responseTemplates.items():
            from fastgw.mapping.vtl import MappingTemplate, TemplateError

            try:
                templates[ctype.lower()] = (ctype, MappingTemplate(source, f"{kind} {ctype}"))
            except TemplateError as ex:
                issues.append(ConfigIssue(f"{g_path}.responseTemplates.{ctype}", str(ex)))
                failed = True
        customs[kind] = _Custom(_status(cfg), mapper, templates)
    return None if failed else customs


def _status(cfg: GatewayResponseConfig) -> int | None:
    return None if cfg.statusCode is None else int(cfg.statusCode)


def _head_lines(reply: LocalReply) -> list[bytes]:
    """The reply's header lines without the status line and the framing / type lines."""
    lines = reply.head.split(b"\r\n")[1:]
    return [ln + b"\r\n" for ln in lines if ln and not ln.lower().startswith(_FRAMING)]


def _content_type(reply: LocalReply) -> bytes:
    for ln in reply.head.split(b"\r\n")[1:]:
        if ln.lower().startswith(b"content-type:"):
            return ln + b"\r\n"
    return b"content-type: application/json\r\n"


class GatewayResponses:
    """An API's customised gateway responses, applied to the gateway's own error replies."""

    __slots__ = ("customs", "no_route", "rendered", "variables")

    def __init__(self, customs: dict[str, _Custom], variables: dict[str, str], no_route: Any = None) -> None:
        self.customs = customs
        #: The stage's stand-in route for requests that matched none (their $context).
        self.no_route = no_route
        #: The stage's variables (``$stageVariables``, ``stageVariables.NAME`` sources).
        self.variables = variables
        #: (kind, status, id(default reply)) -> the reply, for customisations that depend on
        #: nothing in the request (status / static headers only): built once.
        self.rendered: dict[tuple[str | None, int, bytes, bytes], LocalReply] = {}

    def pick(self, reply: LocalReply) -> _Custom | None:
        customs = self.customs
        custom = customs.get(reply.kind)  # type: ignore[arg-type]
        if custom is None:
            custom = customs.get("DEFAULT_5XX" if reply.status >= 500 else "DEFAULT_4XX")
        return custom

    def render(self, reply: LocalReply, ex: Any) -> LocalReply:
        """``reply`` as this API answers it; ``ex`` is the exchange (or a ``Request``)."""
        custom = self.pick(reply)
        if custom is None:
            return reply
        try:
            return self._render(reply, custom, ex)
        except Exception:
            log.exception("gateway response failed", extra={"type": reply.kind})
            return reply

    def _render(self, reply: LocalReply, custom: _Custom, ex: Any) -> LocalReply:
        from fastgw.pipeline.request import Request
        from fastgw.server.replies import status_line

        status = custom.status or reply.status
        static = custom.headers is None or custom.headers.static
        if static and not custom.templates:
            # Keyed on the reply's bytes: an id() could be reused by a later, different reply.
            key = (reply.kind, status, reply.head, reply.body)
            done = self.rendered.get(key)
            if done is not None:
                return done
        req: Request | None = None
        if not static or custom.templates:
            req = ex if type(ex) is Request else ex.build_request()
            if req.route is None:
                req.route = self.no_route
        lines = _head_lines(reply)
        if custom.headers is not None:
            context = None
            if req is not None:
                from fastgw.mapping import vtl

                context = vtl.context_from_request(req, {"error": _error_context(reply, req)})
            got = custom.headers.apply(req, context, self.variables)
            names = {n.lower() for n, _ in got}
            lines = [ln for ln in lines if ln.split(b":", 1)[0].decode("latin-1").lower() not in names]
            lines.extend(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in got)
        body = reply.body
        ctype_line = _content_type(reply)
        if custom.templates:
            assert req is not None
            ctype, template = self._template(custom.templates, req)
            body = _render_template(template, reply, req, self.variables)
            ctype_line = b"content-type: %s\r\n" % ctype.encode("latin-1")
        parts = [status_line(status), *lines, ctype_line]
        if status in (204, 304) or status < 200:
            body = b""
        else:
            parts.append(b"content-length: %d\r\n" % len(body))
        out = LocalReply.raw(status, b"".join(parts), body)
        if static and not custom.templates and len(self.rendered) < 256:
            self.rendered[(reply.kind, status, reply.head, reply.body)] = out
        return out

    @staticmethod
    def _template(templates: dict[str, Any], req: Request) -> tuple[str, Any]:
        accept = req.header("accept")
        if accept:
            for part in accept.split(","):
                got = templates.get(part.split(";", 1)[0].strip().lower())
                if got is not None:
                    return got  # type: ignore[no-any-return]
        got = templates.get("application/json")
        if got is not None:
            return got  # type: ignore[no-any-return]
        return next(iter(templates.values()))  # type: ignore[no-any-return]


def _error_context(reply: LocalReply, req: Request | None) -> dict[str, Any]:
    """``$context.error.*`` of a gateway response."""
    message = reply.message
    return {
        "message": message,
        "messageString": orjson.dumps(message).decode(),
        "responseType": reply.kind,
        "validationErrorString": message
        if reply.kind in ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS")
        else "",
    }


def _render_template(template: Any, reply: LocalReply, req: Request, variables: dict[str, str]) -> bytes:
    from fastgw.mapping import vtl

    context = vtl.context_from_request(req, {"error": _error_context(reply, req)})
    from fastgw.pipeline.mapped import request_input

    got = vtl.render(template, request_input(req), context, variables)
    return got.body.encode()

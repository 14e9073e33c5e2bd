"""The Lambda REQUEST authorizer of a WebSocket API's ``$connect`` route.

AWS: a WebSocket API's authorizer guards ``$connect`` only; it is a REQUEST authorizer whose
identity sources are ``route.request.header.NAME``, ``route.request.querystring.NAME``,
``stageVariables.NAME`` or ``context.NAME``; a missing source answers 401 without calling the
function. The function receives a REQUEST event whose ``methodArn`` is
``arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/$connect`` and returns an IAM policy
(``principalId``, ``policyDocument``, ``context``) evaluated against that ARN: allowed goes on,
denied is 403, an error (or an invalid answer, or a timeout) is 500, and a function failing
with the message ``Unauthorized`` is 401. The policy output parsing and evaluation are the
ones of REST/HTTP authorizers (``fastgw.authorizers.lambda_auth``); decisions are kept for
``authorizerResultTtlInSeconds`` in this worker, keyed by the identity values.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from fastgw.authorizers import lambda_auth as la
from fastgw.config.load import ConfigIssue
from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError

if TYPE_CHECKING:
    from fastgw.config.compile import ApiRuntime
    from fastgw.config.model import Api, Stage
    from fastgw.pipeline.runtime import Services
    from fastgw.websocket.connection import WsConnection

log = logging.getLogger("fastgw.websocket")

_PREFIXES = (
    ("route.request.header.", "header"),
    ("route.request.querystring.", "querystring"),
    ("stageVariables.", "stageVariables"),
    ("context.", "context"),
)
_CONTEXT = frozenset({"apiId", "connectionId", "domainName", "identity.sourceIp", "routeKey", "stage"})
_CACHE_MAX = 10000


class Refusal(Exception):
    """The handshake is refused with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class WsAuthorizer:
    """One compiled $connect authorizer."""

    def __init__(
        self, name: str, function: Any, sources: list[tuple[str, str]], ttl: int, timeout: float, arn: str
    ) -> None:
        self.name = name
        self.function = function
        self.sources = sources
        self.ttl = ttl
        self.timeout = timeout
        self.arn = arn
        self.calls = 0
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any] | None]] = {}

    def _values(self, conn: WsConnection) -> list[str] | None:
        out = []
        for kind, name in self.sources:
            value: str | None
            if kind == "header":
                value = conn.header(name)
            elif kind == "querystring":
                value = conn.query_value(name)
            elif kind == "stageVariables":
                value = conn.stage.variables.get(name)
            else:
                value = conn.context_value(name)
            if not value:
                return None
            out.append(value)
        return out

    async def authorize(self, conn: WsConnection, svc: Services, request_id: str) -> dict[str, Any]:
        """requestContext.authorizer for an allowed connection; raises ``Refusal`` otherwise."""
        from fastgw.authorizers.runtime import call_function
        from fastgw.websocket import events

        values = self._values(conn)
        if values is None:
            raise Refusal(401, "Unauthorized")
        key = tuple(values)
        now = time.monotonic()
        if self.ttl > 0 and self.sources:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                if hit[1] is None:
                    raise Refusal(403, "Forbidden")
                return dict(hit[1])
        single, multi = events.header_maps(conn.headers)
        qs, mqs = events.query_params(conn.query)
        ctx = events._context(conn, "$connect", "CONNECT", request_id, int(time.time() * 1000))
        ctx["identity"] = {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}
        ctx.pop("authorizer", None)
        event = {
            "type": "REQUEST",
            "methodArn": self.arn,
            "headers": single,
            "multiValueHeaders": multi,
            "queryStringParameters": qs or {},
            "multiValueQueryStringParameters": mqs or {},
            "stageVariables": dict(conn.stage.variables),
            "requestContext": ctx,
        }
        self.calls += 1
        t0 = time.monotonic()
        try:
            result = await call_function(self.function, event, svc, self.timeout, request_id)
        except FunctionError as ex:
            if ex.error_message == "Unauthorized":
                raise Refusal(401, "Unauthorized") from None
            log.error("authorizer failed", extra={"authorizer": self.name, "error": ex.error_message})
            raise Refusal(500, "Internal server error") from None
        except (FunctionTimeout, InvokeError) as ex:
            log.error("authorizer failed", extra={"authorizer": self.name, "error": str(ex)})
            raise Refusal(500, "Internal server error") from None
        latency = int((time.monotonic() - t0) * 1000)
        try:
            out = la.parse_policy_output(result, "rest")
            verdict = out.compiled.decide(self.arn) if out.compiled is not None else la.IMPLICIT_DENY
        except la.AuthorizerConfigError as ex:
            log.error(
                "authorizer returned an invalid response", extra={"authorizer": self.name, "error": str(ex)}
            )
            raise Refusal(500, "Internal server error") from None
        allowed: dict[str, Any] | None = None
        if verdict == la.ALLOW:
            allowed = {k: _as_string(v) for k, v in out.context.items()}
            allowed["principalId"] = out.principal_id
            allowed["integrationLatency"] = latency
        if self.ttl > 0 and self.sources:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + self.ttl, allowed)
        if allowed is None:
            raise Refusal(403, "Forbidden")
        return dict(allowed)


def _as_string(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if type(value) is str else str(value)


def compile_authorizer(
    api: Api,
    name: str,
    rt_api: ApiRuntime,
    stage: Stage,
    functions: dict[str, Any],
    path: str,
    issues: list[ConfigIssue],
    api_path: str = "$.apis[?]",
) -> WsAuthorizer | None:
    from fastgw.pipeline.build import resolve_function

    auth = next((a for a in api.authorizers if a.name == name), None)
    if auth is None:
        issues.append(ConfigIssue(path, f"no authorizer named {name!r} in the API"))
        return None
    a_path = f"{api_path}.authorizers[{api.authorizers.index(auth)}]"
    if auth.type != "REQUEST":
        issues.append(ConfigIssue(f"{a_path}.type", "WebSocket APIs take Lambda REQUEST authorizers"))
        return None
    for field_name, present in (
        ("authorizerPayloadFormatVersion", auth.authorizerPayloadFormatVersion not in (None, "1.0")),
        ("enableSimpleResponses", auth.enableSimpleResponses),
        ("identityValidationExpression", auth.identityValidationExpression is not None),
        ("cache_per_route", auth.cache_per_route),
        ("jwtConfiguration", auth.jwtConfiguration is not None),
        ("providerARNs", bool(auth.providerARNs)),
    ):
        if present:
            issues.append(ConfigIssue(f"{a_path}.{field_name}", "not supported by WebSocket authorizers"))
            return None
    if auth.authorizerUri is None:
        issues.append(ConfigIssue(f"{a_path}.authorizerUri", "a REQUEST authorizer needs its function"))
        return None
    fn = resolve_function(auth.authorizerUri, functions, stage, f"{a_path}.authorizerUri", issues)
    if fn is None:
        return None
    spec = auth.identitySource
    entries = [e.strip() for e in (spec.split(",") if isinstance(spec, str) else spec)]
    sources: list[tuple[str, str]] = []
    for entry in entries:
        if not entry:
            continue
        match = next(((k, entry[len(p) :]) for p, k in _PREFIXES if entry.startswith(p)), None)
        if match is None or not match[1]:
            issues.append(
                ConfigIssue(
                    f"{a_path}.identitySource",
                    f"{entry!r}: expected route.request.header.NAME, route.request.querystring.NAME, "
                    "stageVariables.NAME or context.NAME",
                )
            )
            return None
        if match[0] == "context" and match[1] not in _CONTEXT:
            issues.append(
                ConfigIssue(
                    f"{a_path}.identitySource", f"{entry!r}: supported: {', '.join(sorted(_CONTEXT))}"
                )
            )
            return None
        sources.append(match)
    if auth.authorizerResultTtlInSeconds > 0 and not sources:
        issues.append(
            ConfigIssue(
                f"{a_path}.identitySource", "caching (authorizerResultTtlInSeconds > 0) needs a source"
            )
        )
        return None
    arn = (
        f"arn:{la._partition(rt_api.region)}:execute-api:{rt_api.region}:{rt_api.account_id}:"
        f"{rt_api.id}/{stage.name}/$connect"
    )
    return WsAuthorizer(name, fn, sources, auth.authorizerResultTtlInSeconds, auth.timeout_ms / 1000.0, arn)

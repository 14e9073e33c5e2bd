"""Compile a WebSocket API (``kind: websocket``) into its stages' runtime objects.

A WebSocket stage is an ordinary ``StageRuntime`` (so custom domains, ``{id}.execute-api.*``
hosts and base paths resolve it as any stage) whose ``websocket`` attribute holds a
``WsStage``: the route table read by route selection, the ``$connect`` authorizer and the
limits. Its route trie serves the plain-HTTP side of the stage: the ``@connections`` management
API (``POST|GET|DELETE /@connections/{connectionId}``) and a 426 for a GET of the stage
without an upgrade.

Everything a WebSocket API does not implement is refused here with its JSON path, never
accepted silently.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastgw.config.load import ConfigIssue
from fastgw.config.model import (
    Api,
    AwsProxyIntegration,
    HttpIntegration,
    HttpProxyIntegration,
    MockIntegration,
    Stage,
    WebSocketSettings,
)
from fastgw.server import replies

if TYPE_CHECKING:
    from fastgw.config.compile import ApiRuntime, RouteRuntime, StageRuntime
    from fastgw.config.model import GatewayConfig

_STAGE_VAR = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.:/?\-+=&#~]+)\}")
_SELECTION = re.compile(r"^\$request\.body(?:\.[A-Za-z0-9_\-]+)+$")
# AWS: route keys are at most 128 characters; custom keys are matched as whole strings.
_ROUTE_KEY = re.compile(r"^[^\s]{1,128}$")
DEFAULT_SELECTION = "$request.body.action"

#: The answer to a plain GET of a WebSocket stage (no Upgrade).
UPGRADE_REQUIRED = replies.LocalReply(
    426,
    [("content-type", "application/json"), ("sec-websocket-version", "13"), ("upgrade", "websocket")],
    b'{"message":"Upgrade Required"}',
)


@dataclass(slots=True, eq=False)
class HttpTarget:
    """Where an HTTP / HTTP_PROXY integration of a WebSocket route sends its request."""

    host: str
    port: int
    target: str  # path and query
    host_header: str
    tls: ssl.SSLContext | None


@dataclass(slots=True, eq=False)
class WsIntegration:
    """One WebSocket route's integration, bound to a stage."""

    kind: str  # "MOCK" | "AWS_PROXY" | "HTTP" | "HTTP_PROXY"
    timeout: float
    # MOCK: the status ($connect: 2xx accepts), headers and body (sent back on two-way routes).
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # AWS_PROXY: the function (fastgw.functions: LocalFunction or RemoteFunction).
    function: Any = None
    # HTTP / HTTP_PROXY.
    http: HttpTarget | None = None


@dataclass(slots=True, eq=False)
class WsRoute:
    """One route of a WebSocket stage."""

    key: str
    integration: WsIntegration
    #: The route has a $default route response: the integration's answer goes back to the client.
    two_way: bool
    #: The ``RouteRuntime`` the traffic gate (route_throttle buckets) and the metrics know it by.
    rt: RouteRuntime


@dataclass(slots=True, eq=False)
class WsStage:
    """What the WebSocket side of one stage needs at run time."""

    api: ApiRuntime
    stage: StageRuntime
    name: str
    variables: dict[str, str]
    settings: WebSocketSettings
    #: The path under ``$request.body`` route keys are read from (("action",) by default).
    selection: tuple[str, ...]
    routes: dict[str, WsRoute]
    connect: WsRoute | None = None
    disconnect: WsRoute | None = None
    default: WsRoute | None = None
    #: The $connect route's Lambda REQUEST authorizer (fastgw.websocket.authorizer), or None.
    authorizer: Any = None
    #: "apiId/stage": the stage's name in @connections calls between workers and nodes.
    uid: str = ""
    #: SigV4 verifier of ``iam.users`` (fastgw.authorizers.sigv4) for signed @connections calls,
    #: None when the config has no IAM users.
    iam: Any = None
    #: The stage's access log (fastgw.websocket.accesslog.WsAccessLog): one line per $connect,
    #: message and $disconnect; None without ``accessLogSettings``.
    access_log: Any = None


def _reject_unsupported(api: Api, a_path: str, issues: list[ConfigIssue]) -> None:
    unsupported = {
        "cors": api.cors is not None,
        "binaryMediaTypes": bool(api.binaryMediaTypes),
        "models": bool(api.models),
        "requestValidators": bool(api.requestValidators),
        "requestValidator": api.requestValidator is not None,
        "policy": api.policy is not None,
        "plugins": bool(api.plugins),
        "gatewayResponses": bool(api.gatewayResponses),
        "minimumCompressionSize": api.minimumCompressionSize is not None,
        "apiKeySource": api.apiKeySource != "HEADER",
    }
    for name, present in unsupported.items():
        if present:
            issues.append(ConfigIssue(f"{a_path}.{name}", "not supported on WebSocket APIs"))


def _substitute(text: str, stage: Stage, path: str, issues: list[ConfigIssue]) -> str | None:
    missing = [m.group(1) for m in _STAGE_VAR.finditer(text) if m.group(1) not in stage.variables]
    if missing:
        issues.append(ConfigIssue(path, f"stage '{stage.name}' has no variable {missing[0]!r}"))
        return None
    return _STAGE_VAR.sub(lambda m: stage.variables[m.group(1)], text)


def _http_target(uri: str, path: str, issues: list[ConfigIssue]) -> HttpTarget | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        issues.append(ConfigIssue(path, f"expected http(s)://host[:port]/path, got {uri!r}"))
        return None
    if "{" in uri:
        issues.append(ConfigIssue(path, "WebSocket integrations have no path parameters"))
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        issues.append(ConfigIssue(path, f"bad port in {uri!r}"))
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tls = None
    if parts.scheme == "https":
        from fastgw.config.compile import upstream_ssl_context

        tls = upstream_ssl_context()
    return HttpTarget(parts.hostname, port, target, parts.netloc, tls)


def _integration(
    route: Any,
    stage: Stage,
    functions: dict[str, Any],
    r_path: str,
    issues: list[ConfigIssue],
) -> WsIntegration | None:
    from fastgw.pipeline.build import resolve_function

    integ = route.integration
    i_path = f"{r_path}.integration"
    if isinstance(integ, MockIntegration):
        if integ.requestTemplates or integ.responses:
            issues.append(
                ConfigIssue(
                    i_path, "WebSocket MOCK integrations take the simple form (status, headers, body)"
                )
            )
            return None
        return WsIntegration(
            "MOCK", 29.0, integ.status, list(integ.headers.items()), integ.body.encode("utf-8")
        )
    if isinstance(integ, AwsProxyIntegration):
        if integ.payloadFormatVersion not in (None, "1.0"):
            issues.append(ConfigIssue(f"{i_path}.payloadFormatVersion", "WebSocket events have one format"))
            return None
        fn = resolve_function(integ.uri, functions, stage, f"{i_path}.uri", issues)
        if fn is None:
            return None
        return WsIntegration("AWS_PROXY", integ.timeout_ms / 1000.0, function=fn)
    if isinstance(integ, (HttpIntegration, HttpProxyIntegration)):
        kind = "HTTP" if isinstance(integ, HttpIntegration) else "HTTP_PROXY"
        extra: list[str] = []
        if isinstance(integ, HttpIntegration):
            if integ.requestParameters:
                extra.append("requestParameters")
            if integ.requestTemplates:
                extra.append("requestTemplates")
            if integ.responses:
                extra.append("responses")
            if integ.contentHandling is not None:
                extra.append("contentHandling")
            if integ.httpMethod not in (None, "POST"):
                extra.append("httpMethod")
        else:
            if integ.targets:
                extra.append("targets")
            if integ.requestParameters:
                extra.append("requestParameters")
            if integ.parameterMapping:
                extra.append("parameterMapping")
            if integ.responseParameters:
                extra.append("responseParameters")
        for name in extra:
            issues.append(ConfigIssue(f"{i_path}.{name}", "not supported on WebSocket routes"))
        if extra:
            return None
        uri = _substitute(integ.uri, stage, f"{i_path}.uri", issues)
        if uri is None:
            return None
        target = _http_target(uri, f"{i_path}.uri", issues)
        if target is None:
            return None
        return WsIntegration(kind, integ.timeout_ms / 1000.0, http=target)
    issues.append(ConfigIssue(f"{i_path}.type", "WebSocket routes take MOCK, AWS_PROXY, HTTP or HTTP_PROXY"))
    return None


def _check_route(route: Any, r_path: str, issues: list[ConfigIssue]) -> bool:
    ok = True
    key = route.route
    if not _ROUTE_KEY.fullmatch(key):
        issues.append(ConfigIssue(f"{r_path}.route", f"route key {key!r}: 1-128 characters, no spaces"))
        ok = False
    checks = {
        "authorizationScopes": bool(route.authorizationScopes),
        "requestParameters": bool(route.requestParameters),
        "requestModels": bool(route.requestModels),
        "requestValidator": route.requestValidator is not None,
        "cacheKeyParameters": bool(route.cacheKeyParameters),
        "authorizationType": route.authorizationType != "NONE",
        "plugins": bool(route.plugins),
    }
    for name, present in checks.items():
        if present:
            issues.append(ConfigIssue(f"{r_path}.{name}", "not supported on WebSocket routes"))
            ok = False
    if key != "$connect":
        if route.authorizer is not None:
            issues.append(
                ConfigIssue(f"{r_path}.authorizer", "only the $connect route has an authorizer (AWS)")
            )
            ok = False
        if route.apiKeyRequired:
            issues.append(
                ConfigIssue(f"{r_path}.apiKeyRequired", "only the $connect route requires API keys (AWS)")
            )
            ok = False
    if key in ("$connect", "$disconnect") and route.routeResponseSelectionExpression is not None:
        issues.append(
            ConfigIssue(f"{r_path}.routeResponseSelectionExpression", f"{key} has no route responses")
        )
        ok = False
    return ok


def compile_websocket_api(
    config: GatewayConfig,
    api: Api,
    rt_api: ApiRuntime,
    a_path: str,
    functions: dict[str, Any],
    issues: list[ConfigIssue],
    access: Any,
) -> dict[str, StageRuntime]:
    """The stages of one WebSocket API (with their ``WsStage``), by name. ``access`` is the
    config's ``fastgw.pipeline.build.AccessControl`` (its SigV4 verifier serves @connections)."""
    from fastgw.config.compile import FunctionRuntime, MockRuntime, RouteRuntime, StageRuntime
    from fastgw.pipeline.runtime import RoutePipeline
    from fastgw.websocket import management
    from fastgw_core.router import RouteTrie

    _reject_unsupported(api, a_path, issues)
    expr = api.routeSelectionExpression or DEFAULT_SELECTION
    if not _SELECTION.fullmatch(expr):
        issues.append(
            ConfigIssue(
                f"{a_path}.routeSelectionExpression",
                f"expected '$request.body.NAME[.NAME...]', got {expr!r}",
            )
        )
    selection = tuple(expr.split(".")[2:])
    settings = api.websocket or WebSocketSettings()
    if settings.max_message_bytes < settings.max_frame_bytes:
        issues.append(ConfigIssue(f"{a_path}.websocket.max_message_bytes", "smaller than max_frame_bytes"))
    keys: set[str] = set()
    for r_i, route in enumerate(api.routes):
        if route.route in keys:
            issues.append(ConfigIssue(f"{a_path}.routes[{r_i}].route", f"duplicate route {route.route!r}"))
        keys.add(route.route)
    # The config's one verifier (a bad iam section is reported once, with its path).
    iam = access.iam() if config.iam is not None and config.iam.users else None
    out: dict[str, StageRuntime] = {}
    for s_i, stage in enumerate(api.stages):
        s_path = f"{a_path}.stages[{s_i}]"
        report = issues if s_i == 0 else []
        if stage.name == "$default":
            issues.append(ConfigIssue(f"{s_path}.name", "'$default' stages exist only on HTTP APIs"))
            continue
        if stage.name in out:
            issues.append(ConfigIssue(f"{s_path}.name", f"duplicate stage {stage.name!r}"))
            continue
        for name, present in (
            ("plugins", bool(stage.plugins)),
            ("cache", stage.cache is not None),
            ("route_cache", bool(stage.route_cache)),
            ("autoDeploy", stage.autoDeploy is not None),
        ):
            if present:
                issues.append(ConfigIssue(f"{s_path}.{name}", "not supported on WebSocket stages"))
        for key in stage.route_throttle:
            if key not in keys:
                issues.append(ConfigIssue(f"{s_path}.route_throttle.{key}", f"no route {key!r} in the API"))
        trie = RouteTrie()
        rt_stage = StageRuntime(rt_api, stage.name, dict(stage.variables), trie)
        ws = WsStage(
            rt_api,
            rt_stage,
            stage.name,
            dict(stage.variables),
            settings,
            selection,
            {},
            uid=f"{rt_api.id}/{stage.name}",
            iam=iam,
        )
        rt_stage.websocket = ws
        log_settings = stage.accessLogSettings
        if log_settings is not None:
            from fastgw.telemetry.accesslog import AccessLogFormatError
            from fastgw.websocket.accesslog import compile_ws_access_log

            try:
                ws.access_log = compile_ws_access_log(log_settings.format, log_settings.destination)
            except AccessLogFormatError as ex:
                issues.append(ConfigIssue(f"{s_path}.accessLogSettings.format", str(ex)))
            except OSError as ex:
                issues.append(
                    ConfigIssue(f"{s_path}.accessLogSettings.destination", f"cannot open: {ex.strerror}")
                )
        uid = f"{rt_api.id}:{stage.name}"
        for r_i, route in enumerate(api.routes):
            r_path = f"{a_path}.routes[{r_i}]"
            if not _check_route(route, r_path, report):
                continue
            integ = _integration(route, stage, functions, r_path, report)
            if integ is None:
                continue
            rt = RouteRuntime(
                route.route,
                rt_api,
                rt_stage,
                FunctionRuntime("websocket"),
                api_key_required=route.apiKeyRequired,
                throttle=stage.route_throttle.get(route.route, stage.throttle),
                stage_uid=uid,
                resource_method=route.route,
                method=route.route,
                template="",
            )
            rt_stage.routes.append(rt)
            wr = WsRoute(route.route, integ, route.routeResponseSelectionExpression == "$default", rt)
            if route.route == "$connect":
                ws.connect = wr
                if route.authorizer is not None:
                    from fastgw.websocket.authorizer import compile_authorizer

                    ws.authorizer = compile_authorizer(
                        api,
                        route.authorizer,
                        rt_api,
                        stage,
                        functions,
                        f"{r_path}.authorizer",
                        report,
                        a_path,
                    )
            elif route.route == "$disconnect":
                ws.disconnect = wr
            elif route.route == "$default":
                ws.default = wr
            else:
                ws.routes[route.route] = wr
        # The HTTP side of the stage: @connections and a 426 for plain GETs of the stage.
        for method, handler in management.HANDLERS.items():
            rt = RouteRuntime(
                f"{method} /@connections/{{connectionId}}",
                rt_api,
                rt_stage,
                FunctionRuntime("@connections"),
                stage_uid=uid,
                resource_method=f"/@connections/{{connectionId}}/{method}",
                method=method,
                template="/@connections/{connectionId}",
            )
            rt.pipeline = RoutePipeline(
                rt, handler, "@connections", settings.delivery_timeout_ms / 1000.0 + 1.0
            )
            rt_stage.routes.append(rt)
            trie.add(method, "/@connections/{connectionId}", rt)
        root = RouteRuntime(
            "GET /",
            rt_api,
            rt_stage,
            MockRuntime(UPGRADE_REQUIRED),
            stage_uid=uid,
            method="GET",
            template="/",
        )
        rt_stage.routes.append(root)
        trie.add("GET", "/", root)
        out[stage.name] = rt_stage
    return out

"""Compile a ``GatewayConfig`` into an immutable ``RuntimeSnapshot``.

Everything a request needs is prepared here once: one route trie per stage whose values are
``RouteRuntime`` objects with their integration already bound to the stage's variables,
precomputed MOCK replies, parsed upstream targets and path templates, and the host/base-path
table that turns ``Host`` + path into a stage. A request only looks things up.
Semantic errors are collected with their JSON paths, as ``load.py`` does for type errors.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from fastgw.config.load import ConfigError, ConfigIssue
from fastgw.config.model import (
    Api,
    AwsIntegration,
    AwsProxyIntegration,
    GatewayConfig,
    HttpIntegration,
    HttpProxyIntegration,
    MockIntegration,
    Stage,
)
from fastgw.config.runtime import (
    ApiRuntime,
    FunctionRuntime,
    MockRuntime,
    ProxyIntegration,
    RouteRuntime,
    RuntimeSnapshot,
    Site,
    StageRuntime,
    Target,
)
from fastgw.server import replies
from fastgw_core.errors import RouteError
from fastgw_core.router import RouteTrie

if TYPE_CHECKING:
    from fastgw.deployments import StageDeployment

_STAGE_VAR = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.:/?\-+=&#~]+)\}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_ROUTE_PARAM = re.compile(r"\{([A-Za-z0-9_.-]+)\+?\}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"})
# What an integration URI (stage variables substituted) may never hold: it becomes a request line.
_BAD_URI = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


def _api_id(api: Api) -> str:
    if api.id:
        return api.id
    return hashlib.sha1(api.name.encode()).hexdigest()[:10]


def _substitute_stage_vars(text: str, stage: Stage, path: str, issues: list[ConfigIssue]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in stage.variables:
            issues.append(
                ConfigIssue(path, f"stage '{stage.name}' has no variable '{name}' used in {text!r}")
            )
            return ""
        return stage.variables[name]

    return _STAGE_VAR.sub(repl, text)


def _parse_base(url: str, path: str, issues: list[ConfigIssue]) -> tuple[Target | None, str]:
    if _BAD_URI.search(url) is not None:
        issues.append(ConfigIssue(path, f"URI {url!r} has spaces, control or non-ASCII characters"))
        return None, ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as ex:
        issues.append(ConfigIssue(path, f"invalid URI {url!r}: {ex}"))
        return None, ""
    if parts.scheme not in ("http", "https"):
        issues.append(ConfigIssue(path, f"URI {url!r}: scheme must be http or https"))
        return None, ""
    if not parts.hostname or "{" in parts.netloc:
        issues.append(ConfigIssue(path, f"URI {url!r} has no literal host"))
        return None, ""
    default_port = 443 if parts.scheme == "https" else 80
    if port is None:
        port = default_port
    host_header = parts.hostname if port == default_port else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        host_header = f"[{parts.hostname}]" if port == default_port else f"[{parts.hostname}]:{port}"
    rest = url.split(parts.netloc, 1)[1]
    return Target(parts.scheme, parts.hostname, port, host_header.encode("idna")), rest


_UPSTREAM_TLS: dict[str, Any] = {"ca_file": None, "context": None}


def set_upstream_ca(ca_file: str | None) -> None:
    """The CA file https integrations are verified against (the worker's gateway.upstream)."""
    if ca_file != _UPSTREAM_TLS["ca_file"]:
        _UPSTREAM_TLS["ca_file"] = ca_file
        _UPSTREAM_TLS["context"] = None


def upstream_ssl_context() -> Any:
    """The client TLS context of https integrations: verifying, host name included."""
    ctx = _UPSTREAM_TLS["context"]
    if ctx is None:
        import ssl

        ctx = ssl.create_default_context(cafile=_UPSTREAM_TLS["ca_file"])
        _UPSTREAM_TLS["context"] = ctx
    return ctx


def _compile_proxy(
    integ: HttpProxyIntegration,
    stage: Stage,
    route_params: set[str],
    path: str,
    issues: list[ConfigIssue],
    targets: dict[tuple[str, str, int], Target],
) -> ProxyIntegration | None:
    before = len(issues)
    uri = _substitute_stage_vars(integ.uri, stage, f"{path}.uri", issues)
    target, rest = _parse_base(uri, f"{path}.uri", issues)
    extra: list[Target] = []
    for i, t in enumerate(integ.targets):
        t_url = _substitute_stage_vars(t, stage, f"{path}.targets[{i}]", issues)
        tt, tail = _parse_base(t_url, f"{path}.targets[{i}]", issues)
        if tt is not None:
            if tail not in ("", "/"):
                issues.append(ConfigIssue(f"{path}.targets[{i}]", "a target is scheme://host:port only"))
            extra.append(tt)
    if target is None or len(issues) > before:
        return None
    path_part, _, query = rest.partition("?")
    if not path_part.startswith("/"):
        path_part = "/" + path_part
    parts: list[bytes | str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(path_part):
        name = m.group(1)
        if name not in route_params:
            issues.append(ConfigIssue(f"{path}.uri", f"{{{name}}} is not a path parameter of the route"))
        parts.append(path_part[pos : m.start()].encode("latin-1"))
        parts.append(name)
        pos = m.end()
    parts.append(path_part[pos:].encode("latin-1"))
    parts = [p for p in parts if p != b""]
    static = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else None
    shared = []
    for t in [target, *extra]:
        shared.append(targets.setdefault(t.key, t))
    single = [p for p in parts if isinstance(p, str)]
    return ProxyIntegration(
        targets=shared,
        path_parts=tuple(parts),
        static_path=static if static is not None else (b"/" if not parts else None),
        single_param=single[0] if len(single) == 1 else None,
        uri_query=query.encode("latin-1"),
        timeout=integ.timeout_ms / 1000.0,
        pass_query=integ.pass_query,
    )


def _route_key(key: str, kind: str, path: str, issues: list[ConfigIssue]) -> tuple[str, str] | None:
    if key == "$default":
        if kind != "http":
            issues.append(ConfigIssue(path, "'$default' routes exist only on HTTP APIs"))
            return None
        return ("$default", "")
    method, sep, template = key.partition(" ")
    if not sep or method not in _METHODS:
        issues.append(
            ConfigIssue(path, f"route key {key!r}: expected 'METHOD /path' with METHOD in {sorted(_METHODS)}")
        )
        return None
    return method, template


def _check_binary_types(types: list[str], path: str, issues: list[ConfigIssue]) -> None:
    """Each binaryMediaTypes entry must be a media type or range (``type/subtype``, ``type/*``,
    ``*/*``; ``~1`` for ``/`` as in AWS exports): the request paths read them as such."""
    from fastgw.pipeline.content import BinaryTypes

    for i, media in enumerate(types):
        try:
            BinaryTypes((media,))
        except ValueError as ex:
            issues.append(ConfigIssue(f"{path}[{i}]", str(ex)))


def compile_config(
    config: GatewayConfig,
    source: str = "config",
    deployments: Mapping[tuple[str, str], StageDeployment] | None = None,
) -> RuntimeSnapshot:
    """Build the runtime snapshot or raise ``ConfigError`` listing every semantic problem.

    ``deployments``: (API id, stage name) -> the deployment that stage serves instead of the
    config's definition of the API (fastgw.deployments), with its canary."""
    issues: list[ConfigIssue] = []
    targets: dict[tuple[str, str, int], Target] = {}
    proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, cidr in enumerate(config.gateway.trusted_proxies):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as ex:
            issues.append(ConfigIssue(f"$.gateway.trusted_proxies[{i}]", str(ex)))
    host, _, port = config.gateway.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        issues.append(ConfigIssue("$.gateway.listen", f"expected HOST:PORT, got {config.gateway.listen!r}"))
    from fastgw.pipeline import build as pb

    functions = pb.compile_functions(config, issues)
    access = pb.AccessControl(config, issues)
    binder = pb.PluginBinder(pb.load_plugins(config, issues), issues)
    global_plugins = binder.bind(config.plugins, "$.plugins", "gateway")

    apis: list[ApiRuntime] = []
    stages: list[StageRuntime] = []
    by_name: dict[str, tuple[ApiRuntime, dict[str, StageRuntime]]] = {}
    api_sites: dict[str, Site] = {}
    default_site = Site()
    seen_ids: dict[str, int] = {}
    for a_i, api in enumerate(config.apis):
        a_path = f"$.apis[{a_i}]"
        api_id = _api_id(api)
        if api_id in seen_ids or api.name in by_name:
            issues.append(ConfigIssue(a_path, f"duplicate API name or id {api.name!r}/{api_id!r}"))
            continue
        seen_ids[api_id] = a_i
        not_found = replies.NOT_FOUND if api.kind == "http" else replies.MISSING_AUTH_TOKEN
        _check_binary_types(api.binaryMediaTypes, f"{a_path}.binaryMediaTypes", issues)
        if api.kind == "rest" and config.gateway.unknown_route_404:
            not_found = replies.NOT_FOUND
        rt_api = ApiRuntime(
            api.name,
            api_id,
            api.kind,
            not_found,
            region=config.gateway.aws.region,
            account_id=config.gateway.aws.account_id,
            binary_types=tuple(t.lower() for t in api.binaryMediaTypes),
        )
        apis.append(rt_api)
        if api.kind == "websocket":
            # fastgw.websocket: its stages are compiled there; they resolve as any stage.
            from fastgw.websocket.config import compile_websocket_api

            ws_site = Site(not_found=not_found)
            ws_stages = compile_websocket_api(config, api, rt_api, a_path, functions, issues, access)
            for name, rt_stage in ws_stages.items():
                stages.append(rt_stage)
                ws_site.prefixes[name] = rt_stage
                default_site.prefixes.setdefault(name, rt_stage)
            by_name[api.name] = (rt_api, ws_stages)
            by_name.setdefault(api_id, (rt_api, ws_stages))
            api_sites[api_id] = ws_site
            continue
        for key, present in (
            ("routeSelectionExpression", api.routeSelectionExpression is not None),
            ("websocket", api.websocket is not None),
        ):
            if present:
                issues.append(ConfigIssue(f"{a_path}.{key}", "only WebSocket APIs have this setting"))
        for r_i, route in enumerate(api.routes):
            if route.routeResponseSelectionExpression is not None:
                issues.append(
                    ConfigIssue(
                        f"{a_path}.routes[{r_i}].routeResponseSelectionExpression",
                        "only WebSocket routes have route responses",
                    )
                )
        if api.cors is not None:
            from fastgw.pipeline.cors import CorsRuntime

            if api.kind != "http":
                issues.append(
                    ConfigIssue(
                        f"{a_path}.cors", "CORS configuration is for HTTP APIs (REST: OPTIONS MOCK routes)"
                    )
                )
            elif api.cors.allowCredentials and "*" in api.cors.allowOrigins:
                issues.append(
                    ConfigIssue(f"{a_path}.cors.allowCredentials", "credentials cannot go with origin '*'")
                )
            else:
                rt_api.cors = CorsRuntime(api.cors)
        from fastgw.pipeline.gateway_responses import GatewayResponses, compile_gateway_responses

        gw_customs = compile_gateway_responses(api, a_path, issues)
        if not api.stages:
            issues.append(ConfigIssue(f"{a_path}.stages", "an API needs at least one stage"))
        site = Site(not_found=not_found)
        api_plugins = binder.bind(api.plugins, f"{a_path}.plugins", f"api {api.name}")
        stage_map: dict[str, StageRuntime] = {}
        config_api = api

        def build_stage(
            stage: Stage,
            s_i: int,
            s_path: str,
            api: Api,
            cache_uid: str,
            customs: Any,
            *,
            rt_api: ApiRuntime = rt_api,
            api_id: str = api_id,
            a_path: str = a_path,
            api_plugins: Any = api_plugins,
            config_api: Api = config_api,
        ) -> StageRuntime:
            """One stage of this API, routes compiled from ``api`` (the config's definition or a
            deployment's); ``cache_uid`` names its response cache."""
            trie = RouteTrie()
            rt_stage = StageRuntime(rt_api, stage.name, dict(stage.variables), trie)
            settings = stage.accessLogSettings
            if settings is not None:
                from fastgw.telemetry.access import compile_access_log
                from fastgw.telemetry.accesslog import AccessLogFormatError

                try:
                    rt_stage.access_log = compile_access_log(settings.format, settings.destination, api.kind)
                except AccessLogFormatError as ex:
                    issues.append(ConfigIssue(f"{s_path}.accessLogSettings.format", str(ex)))
                except OSError as ex:
                    issues.append(
                        ConfigIssue(f"{s_path}.accessLogSettings.destination", f"cannot open: {ex.strerror}")
                    )
            if customs is not None:
                no_route = RouteRuntime(
                    "",
                    rt_api,
                    rt_stage,
                    MockRuntime(replies.MISSING_AUTH_TOKEN),
                    stage_uid=f"{api_id}:{stage.name}",
                )
                rt_stage.gateway_responses = GatewayResponses(customs, rt_stage.variables, no_route)
            stage_plugins = binder.bind(stage.plugins, f"{s_path}.plugins", f"stage {stage.name}")
            authorizers = pb.compile_authorizers(
                api, api_id, stage, functions, a_path, issues, True, config.gateway.aws.region
            )
            for r_i, route in enumerate(api.routes):
                r_path = f"{a_path}.routes[{r_i}]"
                parsed = _route_key(route.route, api.kind, f"{r_path}.route", issues if s_i == 0 else [])
                if parsed is None:
                    continue
                method, template = parsed
                params = set(_ROUTE_PARAM.findall(template))
                integ = route.integration
                compiled: ProxyIntegration | MockRuntime | FunctionRuntime | None
                if isinstance(integ, MockIntegration):
                    compiled = MockRuntime(
                        replies.LocalReply(integ.status, list(integ.headers.items()), integ.body.encode())
                    )
                elif isinstance(integ, (AwsProxyIntegration, HttpIntegration, AwsIntegration)):
                    # Served by the route's pipeline (fastgw.pipeline): functions and mapping.
                    compiled = FunctionRuntime(integ.uri)
                else:
                    # Path parameters of the backend URI: the route's, and those that REST
                    # requestParameters map (integration.request.path.NAME).
                    mapped = {
                        k[len("integration.request.path.") :]
                        for k in integ.requestParameters
                        if k.startswith("integration.request.path.")
                    }
                    compiled = _compile_proxy(
                        integ, stage, params | mapped, f"{r_path}.integration", issues, targets
                    )
                if compiled is None:
                    continue
                rt_route = RouteRuntime(
                    route.route,
                    rt_api,
                    rt_stage,
                    compiled,
                    api_key_required=route.apiKeyRequired,
                    throttle=stage.route_throttle.get(route.route, stage.throttle),
                    stage_uid=f"{api_id}:{stage.name}",
                    resource_method=f"{template}/{method}" if method != "$default" else "$default",
                    method=method,
                    template=template,
                    auth_scopes=tuple(route.authorizationScopes),
                )
                if stage.cache is not None or route.cacheKeyParameters:
                    from fastgw.pipeline.caching import compile_route_cache

                    rt_route.cache = compile_route_cache(
                        cache_uid,
                        stage.cache,
                        stage.route_cache.get(route.route),
                        route,
                        method,
                        template,
                        r_path,
                        issues if s_i == 0 else [],
                    )
                merged = {
                    **global_plugins,
                    **api_plugins,
                    **stage_plugins,
                    **binder.bind(route.plugins, f"{r_path}.plugins", "route"),
                }
                pipe = pb.build_pipeline(
                    rt_route,
                    route,
                    api,
                    compiled,
                    functions,
                    authorizers,
                    merged,
                    stage,
                    r_path,
                    issues,
                    (*access.for_route(api, a_path, route, r_path), access.last_validation),
                )
                if pipe is False:
                    continue
                rt_route.pipeline = pipe
                rt_stage.routes.append(rt_route)
                try:
                    if method == "$default":
                        trie.set_default(rt_route)
                    else:
                        trie.add(method, template, rt_route)
                except RouteError as ex:
                    if s_i == 0:
                        issues.append(ConfigIssue(f"{r_path}.route", str(ex)))
            # Per-route settings name the config's routes (a deployment may predate some).
            keys = {r.route for r in config_api.routes}
            for field_name in ("route_throttle", "route_cache"):
                for key in getattr(stage, field_name):
                    if key not in keys:
                        issues.append(
                            ConfigIssue(f"{s_path}.{field_name}.{key}", f"no route {key!r} in the API")
                        )
            if stage.cache is not None and api.kind != "rest":
                issues.append(ConfigIssue(f"{s_path}.cache", "the response cache is for REST APIs (AWS)"))
            return rt_stage

        def build_deployed(
            stage: Stage,
            s_i: int,
            path: str,
            defn: Api,
            cache_uid: str,
            deployment_id: str,
            *,
            rt_api: ApiRuntime = rt_api,
        ) -> StageRuntime:
            """A stage compiled from a deployment's definition: its own gateway responses, CORS,
            binary media types and API plugins (a deployment snapshots them, as AWS's do), the
            config's identity of the API."""
            from fastgw.pipeline.cors import CorsRuntime

            cors = CorsRuntime(defn.cors) if defn.cors is not None and defn.kind == "http" else None
            served = rt_api.with_content(tuple(t.lower() for t in defn.binaryMediaTypes), cors)
            rt = build_stage(
                stage,
                s_i,
                path,
                defn,
                cache_uid,
                compile_gateway_responses(defn, path, issues),
                rt_api=served,
                api_plugins=binder.bind(defn.plugins, f"{path}.plugins", f"api {rt_api.name}"),
            )
            rt.deployment_id = deployment_id
            return rt

        for s_i, stage in enumerate(api.stages):
            s_path = f"{a_path}.stages[{s_i}]"
            if stage.name in stage_map:
                issues.append(ConfigIssue(f"{s_path}.name", f"duplicate stage {stage.name!r}"))
                continue
            if stage.name == "$default" and api.kind != "http":
                issues.append(ConfigIssue(f"{s_path}.name", "'$default' stages exist only on HTTP APIs"))
                continue
            uid = f"{api_id}:{stage.name}"
            deployed = deployments.get((api_id, stage.name)) if deployments else None
            if deployed is None:
                rt_stage = build_stage(stage, s_i, s_path, api, uid, gw_customs)
            else:
                # The stage serves a deployment's snapshot of the API, not the config's.
                d_path = f"{s_path} (deployment {deployed.deployment_id})"
                rt_stage = build_deployed(stage, s_i, d_path, deployed.api, uid, deployed.deployment_id)
                canary = deployed.canary
                if canary is not None:
                    c_stage = msgspec.structs.replace(
                        stage, variables={**stage.variables, **canary.variables}
                    )
                    c_path = f"{s_path} (canary deployment {canary.deployment_id})"
                    c_uid = uid if canary.use_stage_cache else f"{uid}:canary"
                    rt_canary = build_deployed(c_stage, s_i, c_path, canary.api, c_uid, canary.deployment_id)
                    rt_canary.is_canary = True
                    rt_stage.canary = rt_canary
                    rt_stage.canary_percent = canary.percent
            stage_map[stage.name] = rt_stage
            stages.append(rt_stage)
            if stage.name == "$default":
                site.root = rt_stage
            else:
                site.prefixes[stage.name] = rt_stage
            if stage.name == "$default":
                if default_site.root is None:
                    default_site.root = rt_stage
            else:
                default_site.prefixes.setdefault(stage.name, rt_stage)
        by_name[api.name] = (rt_api, stage_map)
        by_name.setdefault(api_id, (rt_api, stage_map))
        api_sites[api_id] = site
    if apis:
        default_site.not_found = apis[0].not_found
        if default_site.root is not None:
            default_site.not_found = default_site.root.api.not_found

    _check_traffic(config, by_name, issues)
    _check_tls(config, issues)
    ca_file = config.gateway.upstream.ca_file
    if ca_file is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as ex:
            issues.append(ConfigIssue("$.gateway.upstream.ca_file", f"cannot load {ca_file!r}: {ex}"))
    hosts: dict[str, Site] = {}
    for d_i, domain in enumerate(config.domains):
        d_path = f"$.domains[{d_i}]"
        name = domain.name.lower()
        if name in hosts:
            issues.append(ConfigIssue(f"{d_path}.name", f"duplicate domain {domain.name!r}"))
            continue
        site = Site()
        if domain.mutualTls is not None:
            from fastgw.server.tls import normalize_name

            site.mtls = normalize_name(domain.name)
        for m_i, mapping in enumerate(domain.mappings):
            m_path = f"{d_path}.mappings[{m_i}]"
            entry = by_name.get(mapping.api)
            if entry is None:
                issues.append(ConfigIssue(f"{m_path}.api", f"no API named {mapping.api!r}"))
                continue
            rt_stage = entry[1].get(mapping.stage)
            if rt_stage is None:
                issues.append(
                    ConfigIssue(f"{m_path}.stage", f"API {mapping.api!r} has no stage {mapping.stage!r}")
                )
                continue
            bp = mapping.base_path.strip("/")
            if not bp:
                if site.root is not None:
                    issues.append(ConfigIssue(f"{m_path}.base_path", "the root is mapped twice"))
                site.root = rt_stage
            elif "/" in bp:
                site.long_prefixes.append(("/" + bp, rt_stage))
            elif bp in site.prefixes:
                issues.append(ConfigIssue(f"{m_path}.base_path", f"base path {bp!r} is mapped twice"))
            else:
                site.prefixes[bp] = rt_stage
        site.long_prefixes.sort(key=lambda p: -len(p[0]))
        first = site.root or next(iter(site.prefixes.values()), None)
        if first is not None:
            site.not_found = first.api.not_found
        hosts[name] = site

    if issues:
        # Stage-major compilation meets an API-level problem once per stage: report it once.
        unique = list({(i.path, i.message): i for i in issues}.values())
        raise ConfigError(unique, source)
    served = sorted(
        (k, d.deployment_id, d.canary and (d.canary.deployment_id, d.canary.percent))
        for k, d in (deployments or {}).items()
    )
    digest = hashlib.sha256((repr(config) + repr(served)).encode()).hexdigest()[:12]
    return RuntimeSnapshot(
        config=config,
        digest=digest,
        default_site=default_site,
        hosts=hosts,
        api_sites=api_sites,
        apis=apis,
        stages=stages,
        trusted_proxies=tuple(proxies),
        targets=targets,
    )


def _check_tls(config: GatewayConfig, issues: list[ConfigIssue]) -> None:
    """Checks of the HTTPS settings (files exist, are PEM, load) before any worker starts."""
    # TLS: certificate, key and truststore files exist, are PEM and load (fastgw.server.tls).
    from fastgw.server.tls import check_tls

    check_tls(config, issues)


def _check_traffic(
    config: GatewayConfig,
    by_name: dict[str, tuple[ApiRuntime, dict[str, StageRuntime]]],
    issues: list[ConfigIssue],
) -> None:
    """References and AWS rules of API keys, usage plans and the state/admin settings."""
    gw = config.gateway
    for name, listen in (("admin", gw.admin.listen),):
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            issues.append(ConfigIssue(f"$.gateway.{name}.listen", f"expected HOST:PORT, got {listen!r}"))
    if gw.state.backend == "redis":
        scheme = urlsplit(gw.state.redis.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            issues.append(
                ConfigIssue(
                    "$.gateway.state.redis.url", f"expected redis://, rediss:// or unix://, got {scheme!r}"
                )
            )
    names: dict[str, int] = {}
    values: dict[str, int] = {}
    for i, key in enumerate(config.apiKeys):
        if key.name in names:
            issues.append(ConfigIssue(f"$.apiKeys[{i}].name", f"duplicate API key name {key.name!r}"))
        if key.value in values:
            issues.append(
                ConfigIssue(f"$.apiKeys[{i}].value", f"the same value as $.apiKeys[{values[key.value]}]")
            )
        names.setdefault(key.name, i)
        values.setdefault(key.value, i)
    plan_names: set[str] = set()
    taken: dict[tuple[str, str, str], str] = {}  # (key, api id, stage) -> plan name
    for i, plan in enumerate(config.usagePlans):
        p_path = f"$.usagePlans[{i}]"
        if plan.name in plan_names:
            issues.append(ConfigIssue(f"{p_path}.name", f"duplicate usage plan name {plan.name!r}"))
        plan_names.add(plan.name)
        if plan.quota is not None and plan.quota.period == "DAY" and plan.quota.offset:
            issues.append(ConfigIssue(f"{p_path}.quota.offset", "a DAY quota has offset 0 (AWS)"))
        for j, key_name in enumerate(plan.keys):
            if key_name not in names:
                issues.append(ConfigIssue(f"{p_path}.keys[{j}]", f"no API key named {key_name!r} in apiKeys"))
        for j, ps in enumerate(plan.apiStages):
            s_path = f"{p_path}.apiStages[{j}]"
            entry = by_name.get(ps.apiId)
            if entry is None:
                issues.append(ConfigIssue(f"{s_path}.apiId", f"no API named {ps.apiId!r}"))
                continue
            stage = entry[1].get(ps.stage)
            if stage is None:
                issues.append(ConfigIssue(f"{s_path}.stage", f"API {ps.apiId!r} has no stage {ps.stage!r}"))
                continue
            methods = {r.resource_method for r in stage.routes}
            for rm in ps.throttle:
                if rm not in methods:
                    issues.append(
                        ConfigIssue(
                            f"{s_path}.throttle.{rm}",
                            f"no route {rm!r} (expected '/resource/path/METHOD', one of {sorted(methods)})",
                        )
                    )
            for key_name in plan.keys:
                where = (key_name, entry[0].id, ps.stage)
                if where in taken:
                    issues.append(
                        ConfigIssue(
                            f"{s_path}",
                            f"API key {key_name!r} is already in usage plan {taken[where]!r} for this stage "
                            "(AWS: one plan per key per API stage)",
                        )
                    )
                taken.setdefault(where, plan.name)


def check_document(data: object, source: str = "config") -> list[ConfigIssue]:
    """Every problem in a parsed document: type errors and, as far as they allow, semantic ones.

    ``fastgw validate`` reports both kinds in one run: when some parts fail type validation,
    each API that is valid on its own is still compiled alone and its semantic errors are
    reported under its own index.
    """
    import msgspec

    from fastgw.config.load import decode_config
    from fastgw.config.model import Api

    try:
        config = decode_config(data, source)
    except ConfigError as ex:
        issues = list(ex.issues)
    else:
        try:
            compile_config(config, source)
        except ConfigError as ex:
            return list(ex.issues)
        return []
    apis = data.get("apis") if isinstance(data, dict) else None
    if isinstance(apis, list):
        for i, raw in enumerate(apis):
            try:
                api = msgspec.convert(raw, Api)
            except msgspec.ValidationError:
                continue
            try:
                compile_config(GatewayConfig(apis=[api]), source)
            except ConfigError as ex:
                prefix = "$.apis[0]"
                for issue in ex.issues:
                    if issue.path.startswith(prefix):
                        issues.append(ConfigIssue(f"$.apis[{i}]" + issue.path[len(prefix) :], issue.message))
    return issues

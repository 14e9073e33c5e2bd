"""The compiled config's runtime objects: what a request reads once it is routed.

``fastgw.config.compile`` builds them once per config (a ``RuntimeSnapshot``); requests only read
them. This file is the source of both builds (``fastgw.config.runtime`` selects one): run as it
is, or compiled with Cython in pure-Python mode as ``_runtime_c`` (the types are in
``_runtime_c.pxd``), where every class is an extension type with its fields in C slots.

PERF: the compiled protocol (``fastgw.server._protocol_c``) cimports these types, so a field
read on the request path (``route.integration``, ``stage.trie``, ``integ.static_path``...) is
a struct read instead of an attribute lookup through the type's dictionary (about 140
instructions each, some twenty per proxied request).

The classes take their fields as the dataclasses they replace did: positionally in the order
below, or by keyword; fields not given take their defaults.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from fastgw.server import replies

if TYPE_CHECKING:
    import ipaddress

    from fastgw.config.model import GatewayConfig, ThrottleSettings
    from fastgw_core.router import RouteTrie


class Target:
    """One upstream endpoint (scheme, host, port); the worker owns its connection pool."""

    def __init__(self, scheme: str, host: str, port: int, host_header: bytes) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.host_header = host_header
        self.key: tuple[str, str, int] = (scheme, host, port)
        # The request line's tail and Host line for this target, built once.
        self.version_host = b" HTTP/1.1\r\nhost: " + host_header + b"\r\n"
        # This worker's pool for the target (set on first use by Pools.get; the worker process
        # owns both the snapshot and the pools).
        self.pool: object | None = None

    def __repr__(self) -> str:
        return f"Target({self.scheme!r}, {self.host!r}, {self.port!r})"


class ProxyIntegration:
    """A compiled HTTP_PROXY integration, bound to one stage."""

    def __init__(
        self,
        targets: list[Target],
        path_parts: tuple[bytes | str, ...],
        static_path: bytes | None,
        single_param: str | None,
        uri_query: bytes,
        timeout: float,
        pass_query: bool,
        rr: itertools.count[int] | None = None,
    ) -> None:
        self.targets = targets
        # Path template as alternating literal bytes and parameter names: [b"/a/", "id", b"/b"].
        self.path_parts = path_parts
        self.static_path = static_path  # set when the path has no placeholders
        # Set when the path is prefix + one parameter + suffix (the usual `/{proxy}` shape).
        self.single_param = single_param
        self.uri_query = uri_query  # the URI's own query string (without '?'), merged with the client's
        self.timeout = timeout
        self.pass_query = pass_query
        self.rr = rr if rr is not None else itertools.count()

    def render_path(self, params: dict[str, str] | None) -> bytes:
        from fastgw.server.protocol import render_path

        return render_path(self, params)

    def __repr__(self) -> str:
        return f"ProxyIntegration({self.targets!r}, {self.path_parts!r})"


class MockRuntime:
    """A MOCK integration: its reply, built once."""

    def __init__(self, reply: replies.LocalReply) -> None:
        self.reply = reply

    def __repr__(self) -> str:
        return f"MockRuntime({self.reply!r})"


class FunctionRuntime:
    """An AWS_PROXY integration: always served by the route's pipeline (fastgw.pipeline)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __repr__(self) -> str:
        return f"FunctionRuntime({self.uri!r})"


class PipelineHead:
    """What the protocol reads of a route's request pipeline at the request head:
    ``fastgw.pipeline.runtime.RoutePipeline`` extends it with the rest.

    - ``early_gate``: nothing runs before the traffic gate (no rewrite plugins, no authorizer):
      the protocol admits the request at its head, as on the fast path;
    - ``fast_auth``: a JWT authorizer whose cached tokens the protocol may check in the request
      head, on a route that is otherwise a plain streamed proxy (None: none).
    """

    __slots__ = ("early_gate", "fast_auth")

    def __init__(self, early_gate: bool = False) -> None:
        self.early_gate = early_gate
        self.fast_auth: Any = None


class RouteRuntime:
    """What a matched route needs at request time."""

    def __init__(
        self,
        key: str,
        api: ApiRuntime,
        stage: StageRuntime,
        integration: ProxyIntegration | MockRuntime | FunctionRuntime,
        api_key_required: bool = False,
        throttle: ThrottleSettings | None = None,
        stage_uid: str = "",
        resource_method: str = "",
        levels: Any = None,
        method: str = "",
        template: str = "",
        pipeline: Any = None,
        event_static: Any = None,
        auth_scopes: tuple[str, ...] = (),
        cache: Any = None,
        stats: Any = None,
    ) -> None:
        self.key = key
        self.api = api
        self.stage = stage
        self.integration = integration
        self.api_key_required = api_key_required
        # The stage's limit for this route (route_throttle, else the stage default), or None.
        self.throttle = throttle
        # "apiId:stage" (usage plans bind keys to it) and AWS's "/resource/path/METHOD" form
        # (per-method overrides inside a usage plan).
        self.stage_uid = stage_uid
        self.resource_method = resource_method
        # Token-bucket levels (route, gateway), set by the worker's traffic gate for this snapshot,
        # and their (slots, rates, bursts) lists as ``SharedTable.take_many`` takes them (PERF:
        # the compiled protocol reads them here without the Levels object's attribute lookups).
        self.levels = levels
        self.level_args: tuple[list[int], list[float], list[float]] | None = None
        # The route key's parts: "GET" / "ANY" / "$default", and the resource template
        # "/pets/{id}" ("" for $default).
        self.method = method
        self.template = template
        # The request pipeline (fastgw.pipeline) when the route needs one (functions,
        # authorizers, plugins); None keeps the streaming fast path.
        self.pipeline = pipeline
        # Per-route constants of the Lambda events (built on first use by fastgw.functions.events).
        self.event_static = event_static
        # JWT / Cognito authorizers: scopes the token needs one of (Route.authorizationScopes).
        self.auth_scopes = auth_scopes
        # The stage's response cache for this route (fastgw.pipeline.caching.RouteCache), or None.
        self.cache = cache
        # This worker's metrics of the route (fastgw.telemetry.metrics.RouteStats), or None.
        self.stats = stats

    def __repr__(self) -> str:
        return f"RouteRuntime({self.key!r}, stage={self.stage.name!r})"


class ApiRuntime:
    """An API as its stages share it: identity, kind, its not-found reply."""

    def __init__(
        self,
        name: str,
        id: str,
        kind: str,
        not_found: replies.LocalReply,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        binary_types: tuple[str, ...] = (),
        cors: Any = None,
    ) -> None:
        self.name = name
        self.id = id
        self.kind = kind
        self.not_found = not_found
        self.region = region
        self.account_id = account_id
        # REST binaryMediaTypes, lower-case ("image/png", "image/*", "*/*").
        self.binary_types = binary_types
        # HTTP API CORS (fastgw.pipeline.cors.CorsRuntime), or None.
        self.cors = cors

    def with_content(self, binary_types: tuple[str, ...], cors: Any) -> ApiRuntime:
        """The same API serving a deployment's binary media types and CORS."""
        return ApiRuntime(
            self.name, self.id, self.kind, self.not_found, self.region, self.account_id, binary_types, cors
        )

    def __repr__(self) -> str:
        return f"ApiRuntime({self.name!r}, {self.id!r}, {self.kind!r})"


class StageRuntime:
    """One stage of one API: its variables, route trie and stage-wide settings."""

    def __init__(
        self,
        api: ApiRuntime,
        name: str,
        variables: dict[str, str],
        trie: RouteTrie,
        routes: list[RouteRuntime] | None = None,
        gateway_responses: Any = None,
        deployment_id: str | None = None,
        canary: StageRuntime | None = None,
        canary_percent: float = 0.0,
        is_canary: bool = False,
        access_log: Any = None,
        websocket: Any = None,
    ) -> None:
        self.api = api
        self.name = name
        self.variables = variables
        self.trie = trie
        self.routes: list[RouteRuntime] = routes if routes is not None else []
        # REST gatewayResponses (fastgw.pipeline.gateway_responses.GatewayResponses), or None.
        self.gateway_responses = gateway_responses
        # The deployment served (None: the config's definition of the API).
        self.deployment_id = deployment_id
        # A canary release: the canary deployment's stage and the percentage of requests it gets.
        self.canary = canary
        self.canary_percent = canary_percent
        self.is_canary = is_canary
        # The stage's access log (fastgw.telemetry.access.StageAccessLog), or None.
        self.access_log = access_log
        # A WebSocket API's stage: its routes, authorizer and limits (fastgw.websocket.config.WsStage).
        self.websocket = websocket

    def __repr__(self) -> str:
        return f"StageRuntime({self.api.name!r}, {self.name!r})"


class Site:
    """What one Host serves: stages by first path segment, multi-segment base paths, a root."""

    def __init__(
        self,
        prefixes: dict[str, StageRuntime] | None = None,
        long_prefixes: list[tuple[str, StageRuntime]] | None = None,
        root: StageRuntime | None = None,
        not_found: replies.LocalReply = replies.MISSING_AUTH_TOKEN,
        mtls: str | None = None,
    ) -> None:
        self.prefixes: dict[str, StageRuntime] = prefixes if prefixes is not None else {}
        self.long_prefixes: list[tuple[str, StageRuntime]] = (
            long_prefixes if long_prefixes is not None else []
        )
        self.root = root
        self.not_found = not_found
        # A mutual-TLS custom domain's name: requests for it are served only on connections
        # whose TLS handshake was verified for that name (SNI); None: any connection.
        self.mtls = mtls
        # The protocol's route cache (fastgw.server): a request path's raw bytes -> its
        # normalised path and what the stage lookup and the route trie made of it, filled by
        # requests and bounded there.
        self.resolved: dict[bytes, Any] = {}

    def resolve(self, path: str) -> tuple[StageRuntime | None, str]:
        """Map a normalised path to (stage, path inside the stage)."""
        from fastgw.server.protocol import resolve_stage

        return resolve_stage(self, path)

    def __repr__(self) -> str:
        return f"Site({sorted(self.prefixes)!r}, root={self.root!r})"


class RuntimeSnapshot:
    """Immutable compiled config. A request keeps the snapshot it started with."""

    def __init__(
        self,
        config: GatewayConfig,
        digest: str,
        default_site: Site,
        hosts: dict[str, Site],
        api_sites: dict[str, Site],
        apis: list[ApiRuntime],
        stages: list[StageRuntime],
        trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        targets: dict[tuple[str, str, int], Target],
        host_cache: dict[bytes | None, Site] | None = None,
    ) -> None:
        self.config = config
        self.digest = digest
        self.default_site = default_site
        self.hosts = hosts
        self.api_sites = api_sites
        self.apis = apis
        self.stages = stages
        self.trusted_proxies = trusted_proxies
        self.targets = targets
        self.host_cache: dict[bytes | None, Site] = host_cache if host_cache is not None else {}

    def site_for_header(self, host: bytes | None) -> Site:
        """The site for a raw Host header value; memoised (bounded) since hosts repeat."""
        site = self.host_cache.get(host)
        if site is not None:
            return site
        if host:
            h = host.decode("latin-1").lower()
            if h[0] == "[":
                h = h[: h.find("]") + 1]
            else:
                colon = h.rfind(":")
                if colon >= 0:
                    h = h[:colon]
            site = self.site_for(h)
        else:
            site = self.default_site
        if len(self.host_cache) < 4096:
            self.host_cache[host] = site
        return site

    def site_for(self, host: str) -> Site:
        """Pick the site for a Host value (already lower-case, port stripped)."""
        site = self.hosts.get(host)
        if site is not None:
            return site
        dot = host.find(".execute-api.")
        if dot > 0:
            site = self.api_sites.get(host[:dot])
            if site is not None:
                return site
        return self.default_site

    def __repr__(self) -> str:
        return f"RuntimeSnapshot({self.digest[:12]!r}, {len(self.stages)} stages)"

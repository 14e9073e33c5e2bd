"""The configuration model: msgspec Structs, frozen, unknown fields rejected.

The model is AWS API Gateway's: APIs (kind ``rest`` | ``http`` | ``websocket``) hold routes,
each route one integration; stages give an API its address (``/{stage}`` for REST, ``$default``
or a named prefix for HTTP APIs) and its stage variables; custom domains map ``Host`` plus a
base path to an (API, stage). Every field carries a ``description`` that the README's
configuration reference and ``fastgw schema`` repeat.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct, field

PositiveInt = Annotated[int, Meta(ge=1)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class _Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Base of every config Struct."""


class Limits(_Model):
    """Named resource limits of the HTTP server (AWS-like defaults)."""

    max_header_bytes: Annotated[
        int, Meta(ge=512, description="Request line + headers, bytes. Over it: 431 and close.")
    ] = 10240
    max_headers: Annotated[int, Meta(ge=1, description="Header fields per request. Over it: 431.")] = 100
    max_url_bytes: Annotated[
        int, Meta(ge=16, description="Request-target length, bytes. Over it: 414 and close.")
    ] = 8192
    max_body_bytes: Annotated[
        int, Meta(ge=0, description="Request body, bytes (AWS: 10 MB). Over it: 413 and close.")
    ] = 10 * 1024 * 1024
    header_timeout: Annotated[
        float, Meta(gt=0, description="Seconds to receive a whole request head. Over it: 408 and close.")
    ] = 10.0
    body_timeout: Annotated[
        float, Meta(gt=0, description="Seconds without any request-body bytes while a body is expected.")
    ] = 30.0
    min_body_rate: Annotated[
        int,
        Meta(
            ge=0,
            description="Bytes/s a request body must average once it has taken body_timeout "
            "seconds (against slow-trickle uploads). Under it: 408 and close. 0 disables.",
        ),
    ] = 1024
    keepalive_timeout: Annotated[
        float, Meta(gt=0, description="Seconds an idle keep-alive client connection is kept open.")
    ] = 60.0
    max_pipelined: Annotated[
        int, Meta(ge=1, description="Pipelined requests queued per connection before reading pauses.")
    ] = 16
    write_high_water: Annotated[
        int,
        Meta(ge=1024, description="Bytes buffered towards a peer before reading from the other side pauses."),
    ] = 256 * 1024
    drain_timeout: Annotated[
        float, Meta(gt=0, description="Seconds SIGTERM waits for in-flight requests before closing.")
    ] = 30.0


class UpstreamSettings(_Model):
    """Connection pool and timeouts towards HTTP integrations."""

    connect_timeout: Annotated[float, Meta(gt=0, description="Seconds to open a TCP connection.")] = 5.0
    max_connections: Annotated[
        int, Meta(ge=1, description="Connections per upstream target per worker (in use + idle).")
    ] = 512
    max_idle: Annotated[
        int,
        Meta(ge=0, description="Idle keep-alive connections kept per target per worker."),
    ] = 512
    idle_timeout: Annotated[
        float, Meta(gt=0, description="Seconds an idle upstream connection is kept before closing.")
    ] = 30.0
    eject_after: Annotated[
        int, Meta(ge=1, description="Consecutive connect/reset failures before a target is ejected.")
    ] = 3
    eject_seconds: Annotated[
        float, Meta(gt=0, description="Seconds an ejected target stays out of the round-robin.")
    ] = 10.0


class ThrottleSettings(_Model):
    """Token-bucket limits: a steady rate and a burst (AWS ``ThrottleSettings``)."""

    rateLimit: Annotated[float, Meta(ge=0, description="Steady-state requests per second (0 refuses all).")]
    burstLimit: Annotated[int, Meta(ge=0, description="Bucket capacity: requests admitted at once.")]


class AdminSettings(_Model):
    """The admin API listener (API keys, usage plans, usage). Never the data-plane port."""

    enabled: Annotated[bool, Meta(description="Serve the admin API.")] = True
    listen: Annotated[
        str,
        Meta(description="HOST:PORT of the admin listener; a non-loopback host needs an explicit token."),
    ] = "127.0.0.1:9001"
    token_file: Annotated[
        str | None,
        Meta(
            description="File holding the bearer token. Without it and without FASTGW_ADMIN_TOKEN, "
            "a random token is generated at start and written (mode 0600) next to the state file."
        ),
    ] = None


class RedisSettings(_Model):
    """The Redis backend: shared limits, quotas, keys and usage for several nodes."""

    url: Annotated[str, Meta(description="redis:// or unix:// URL (redis-py syntax).")] = (
        "redis://127.0.0.1:6379/0"
    )
    prefix: Annotated[str, Meta(description="Prefix of every Redis key fastgw writes.")] = "fastgw:"
    timeout_ms: Annotated[
        int, Meta(ge=1, description="Deadline of every Redis call, ms; past it the call counts as failed.")
    ] = 100
    lease_ms: Annotated[
        int,
        Meta(
            ge=0,
            description="Local budget: each worker leases up to rate*lease_ms/1000 tokens of a bucket "
            "(and up to 1 % of a quota) per Redis round trip, for lease_ms; unused ones go back "
            "(0 = one token per request, exact but one round trip each).",
        ),
    ] = 50
    retry_seconds: Annotated[
        float, Meta(gt=0, description="After a Redis failure, seconds before it is tried again.")
    ] = 1.0


class StateSettings(_Model):
    """Where API keys, usage plans, quotas and throttle state live."""

    backend: Annotated[
        Literal["embedded", "redis"],
        Meta(
            description="embedded: SQLite file + the node's shared memory (one node, any workers); "
            "redis: shared by several nodes."
        ),
    ] = "embedded"
    path: Annotated[
        str, Meta(description="SQLite file of the embedded backend (keys, plans, daily usage).")
    ] = "fastgw-state.db"
    shm_slots: Annotated[
        int,
        Meta(
            ge=64,
            description="Slots of the node's shared-memory table (one per bucket or counter; 64 B "
            "each; rounded up to a power of two).",
        ),
    ] = 65536
    redis: RedisSettings = field(default_factory=RedisSettings)


class GatewaySettings(_Model):
    """Process-wide settings."""

    listen: Annotated[str, Meta(description="HOST:PORT of the data-plane listener.")] = "127.0.0.1:8080"
    workers: Annotated[
        int, Meta(ge=0, description="Worker processes sharing the port (SO_REUSEPORT); 0 = CPU count.")
    ] = 0
    trusted_proxies: Annotated[
        list[str],
        Meta(description="CIDRs of proxies in front of fastgw whose X-Forwarded-For is believed."),
    ] = field(default_factory=list)
    unknown_route_404: Annotated[
        bool,
        Meta(description="Answer unmatched REST requests 404 Not Found instead of AWS's 403."),
    ] = False
    limits: Limits = field(default_factory=Limits)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    throttle: Annotated[
        ThrottleSettings,
        Meta(description="Gateway-wide limit over all APIs (AWS account level: 10,000 rps, burst 5,000)."),
    ] = field(default_factory=lambda: ThrottleSettings(rateLimit=10000, burstLimit=5000))
    throttle_headers: Annotated[
        bool,
        Meta(
            description="Add Retry-After and IETF RateLimit-Policy / RateLimit headers to throttled (429) "
            "responses (off by default: AWS sends neither)."
        ),
    ] = False
    admin: AdminSettings = field(default_factory=AdminSettings)
    state: StateSettings = field(default_factory=StateSettings)


class MockIntegration(_Model, tag="MOCK", tag_field="type"):
    """Answers without a backend (AWS MOCK integration)."""

    status: Annotated[int, Meta(ge=100, le=599, description="Response status code.")] = 200
    headers: Annotated[dict[str, str], Meta(description="Response headers.")] = field(default_factory=dict)
    body: Annotated[str, Meta(description="Response body (UTF-8 text).")] = ""


class HttpProxyIntegration(_Model, tag="HTTP_PROXY", tag_field="type"):
    """Proxies the request to an HTTP endpoint (AWS HTTP_PROXY integration)."""

    uri: Annotated[
        str,
        Meta(
            description="Endpoint URI template: http://host[:port]/path with {param}, {proxy} "
            "(greedy path parameter) and ${stageVariables.NAME} placeholders."
        ),
    ]
    targets: Annotated[
        list[str],
        Meta(
            description="Extra base URLs (scheme://host:port) balanced round-robin with the URI's own "
            "host; a failing target is ejected for a while."
        ),
    ] = field(default_factory=list)
    timeout_ms: Annotated[
        int, Meta(ge=50, description="Integration timeout, ms (AWS: 29000). Over it: 504.")
    ] = 29000
    pass_query: Annotated[bool, Meta(description="Forward the client's query string.")] = True


Integration = MockIntegration | HttpProxyIntegration


class Route(_Model):
    """One route: a route key and its integration."""

    route: Annotated[
        str,
        Meta(
            description="Route key: 'METHOD /path' with {param} and a final {name+}; METHOD may be ANY; "
            "'$default' (HTTP APIs) catches what no other route matches."
        ),
    ]
    integration: Annotated[
        Integration, Meta(description="What serves the route; `type` selects MOCK or HTTP_PROXY.")
    ]
    apiKeyRequired: Annotated[
        bool,
        Meta(description="Require an enabled API key in a usage plan of the stage; else 403 Forbidden."),
    ] = False


class Stage(_Model):
    """A stage: the address prefix of an API and its stage variables."""

    name: Annotated[
        str,
        Meta(
            pattern=r"^(\$default|[A-Za-z0-9_-]{1,128})$",
            description="Stage name. REST APIs answer at /{name}/...; HTTP APIs' '$default' has no prefix.",
        ),
    ]
    variables: Annotated[
        dict[str, str], Meta(description="Stage variables, used as ${stageVariables.NAME} in URIs.")
    ] = field(default_factory=dict)
    description: Annotated[str, Meta(description="Free text.")] = ""
    throttle: Annotated[
        ThrottleSettings | None, Meta(description="Default limit of every route of the stage.")
    ] = None
    route_throttle: Annotated[
        dict[str, ThrottleSettings],
        Meta(
            description="Per-route limits of this stage, keyed by the route key as written in `routes` "
            "(AWS method/route settings); they replace the stage default for that route."
        ),
    ] = field(default_factory=dict)


class Api(_Model):
    """An API: kind, routes and stages."""

    name: Annotated[str, Meta(min_length=1, description="API name (dimension ApiName).")]
    id: (
        Annotated[
            str,
            Meta(
                pattern=r"^[a-z0-9]{1,32}$",
                description="API id (as AWS's 10-char ids); derived from the name if omitted. "
                "Host {id}.execute-api.* reaches the API.",
            ),
        ]
        | None
    ) = None
    kind: Annotated[Literal["rest", "http", "websocket"], Meta(description="rest | http | websocket")] = (
        "rest"
    )
    description: Annotated[str, Meta(description="Free text.")] = ""
    apiKeySource: Annotated[
        Literal["HEADER", "AUTHORIZER"],
        Meta(
            description="Where the API key comes from: the x-api-key header, or a custom authorizer's "
            "usageIdentifierKey."
        ),
    ] = "HEADER"
    routes: Annotated[list[Route], Meta(description="Routes of the API.")] = field(default_factory=list)
    stages: Annotated[list[Stage], Meta(description="Stages; at least one.")] = field(default_factory=list)


class BasePathMapping(_Model):
    """Maps a base path of a custom domain to an API stage."""

    api: Annotated[str, Meta(description="API name or id.")]
    stage: Annotated[str, Meta(description="Stage name of that API.")]
    base_path: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$",
            description="Base path without leading slash; '' maps the domain root.",
        ),
    ] = ""


class Domain(_Model):
    """A custom domain name: Host header value and its base-path mappings."""

    name: Annotated[str, Meta(min_length=1, description="Domain name, matched against Host (port ignored).")]
    mappings: Annotated[list[BasePathMapping], Meta(description="Base-path mappings.")] = field(
        default_factory=list
    )


class ApiKeyConfig(_Model):
    """An API key declared in the config (upserted into the state store at start and reload)."""

    name: Annotated[str, Meta(min_length=1, description="Key name (unique among config keys).")]
    value: Annotated[
        str,
        Meta(
            min_length=20,
            max_length=128,
            pattern=r"^[\x21-\x7e]+$",
            description="The key value clients send in x-api-key (20-128 printable ASCII characters). "
            "Only its SHA-256 is stored.",
        ),
    ]
    id: Annotated[str | None, Meta(description="Key id; derived from the name if omitted.")] = None
    enabled: Annotated[bool, Meta(description="A disabled key is refused with 403.")] = True
    description: Annotated[str, Meta(description="Free text.")] = ""
    customerId: Annotated[str, Meta(description="AWS Marketplace customer id (kept, not used).")] = ""


class PlanStage(_Model):
    """An API stage a usage plan applies to."""

    apiId: Annotated[str, Meta(description="API name or id.")]
    stage: Annotated[str, Meta(description="Stage name of that API.")]
    throttle: Annotated[
        dict[str, ThrottleSettings],
        Meta(
            description="Per-method overrides of the plan's throttle, keyed '/resource/path/METHOD' as "
            "AWS writes them (e.g. '/pets/{id}/GET')."
        ),
    ] = field(default_factory=dict)


class QuotaSettings(_Model):
    """Requests allowed per key per UTC period."""

    limit: Annotated[int, Meta(ge=0, description="Requests per period.")]
    period: Annotated[Literal["DAY", "WEEK", "MONTH"], Meta(description="DAY | WEEK | MONTH")]
    offset: Annotated[
        int,
        Meta(
            ge=0,
            le=27,
            description="Start of the period: WEEK 0 = Sunday .. 6; MONTH 0 = the 1st .. 27; DAY 0.",
        ),
    ] = 0


class UsagePlanConfig(_Model):
    """A usage plan declared in the config (upserted into the state store at start and reload)."""

    name: Annotated[str, Meta(min_length=1, description="Plan name (unique among config plans).")]
    id: Annotated[str | None, Meta(description="Plan id; derived from the name if omitted.")] = None
    description: Annotated[str, Meta(description="Free text.")] = ""
    apiStages: Annotated[list[PlanStage], Meta(description="API stages the plan covers.")] = field(
        default_factory=list
    )
    throttle: Annotated[ThrottleSettings | None, Meta(description="Per-key token bucket.")] = None
    quota: Annotated[QuotaSettings | None, Meta(description="Per-key quota.")] = None
    fail_open: Annotated[
        bool,
        Meta(
            description="When the shared store (Redis) is unreachable: admit requests without counting "
            "the quota (true) or refuse them with 503 (false)."
        ),
    ] = True
    keys: Annotated[list[str], Meta(description="Names of config API keys in the plan.")] = field(
        default_factory=list
    )


class GatewayConfig(_Model):
    """The whole configuration file."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    apis: Annotated[list[Api], Meta(description="APIs served.")] = field(default_factory=list)
    domains: Annotated[list[Domain], Meta(description="Custom domain names.")] = field(default_factory=list)
    apiKeys: Annotated[list[ApiKeyConfig], Meta(description="API keys declared here.")] = field(
        default_factory=list
    )
    usagePlans: Annotated[list[UsagePlanConfig], Meta(description="Usage plans declared here.")] = field(
        default_factory=list
    )


def json_schema() -> dict[str, object]:
    """JSON Schema of the config file (``fastgw schema``)."""
    return msgspec.json.schema(GatewayConfig)

"""The configuration model: msgspec Structs, frozen, unknown fields rejected.

The model is AWS API Gateway's: APIs (kind ``rest`` | ``http`` | ``websocket``) hold routes,
each route one integration; stages give an API its address (``/{stage}`` for REST, ``$default``
or a named prefix for HTTP APIs) and its stage variables; custom domains map ``Host`` plus a
base path to an (API, stage). Every field carries a ``description`` that the README's
configuration reference and ``fastgw schema`` repeat.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    ca_file: Annotated[
        str | None,
        Meta(
            description="PEM file of the CAs trusted for https:// integrations (default: the system's). "
            "Certificates are always verified, host name included."
        ),
    ] = None


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


class AwsSettings(_Model):
    """The AWS identity fastgw presents in ARNs, events and contexts (nothing is sent to AWS)."""

    region: Annotated[
        str, Meta(pattern=r"^[a-z0-9-]{1,32}$", description="Region in ARNs (methodArn, function ARNs).")
    ] = "us-east-1"
    account_id: Annotated[
        str, Meta(pattern=r"^[0-9]{12}$", description="Account id in ARNs and requestContext.accountId.")
    ] = "123456789012"


class FunctionSettings(_Model):
    """How in-process functions run."""

    threads: Annotated[
        int,
        Meta(ge=1, description="Threads per worker running synchronous handlers (the bounded pool)."),
    ] = 32


class OtlpMetricsSettings(_Model):
    """Push the node's metrics to an OpenTelemetry collector (OTLP/HTTP, protobuf); off without an
    endpoint here or in OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT."""

    endpoint: Annotated[
        str | None,
        Meta(
            description="Base URL of the collector, e.g. http://127.0.0.1:4318 (metrics go to "
            "{endpoint}/v1/metrics). Absent: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / "
            "OTEL_EXPORTER_OTLP_ENDPOINT."
        ),
    ] = None
    metrics_endpoint: Annotated[
        str | None, Meta(description="Full URL of the metrics endpoint (wins over endpoint).")
    ] = None
    headers: Annotated[
        dict[str, str],
        Meta(
            description="Headers of every export; OTEL_EXPORTER_OTLP_HEADERS / "
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS add to them."
        ),
    ] = field(default_factory=dict)
    interval_seconds: Annotated[
        Annotated[float, Meta(gt=0)] | None,
        Meta(description="Seconds between exports. Absent: OTEL_METRIC_EXPORT_INTERVAL (ms), else 10."),
    ] = None
    timeout_seconds: Annotated[
        Annotated[float, Meta(gt=0)] | None,
        Meta(
            description="Seconds one export may take, retries included. Absent: "
            "OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT (ms), else 5.",
        ),
    ] = None
    service_name: Annotated[
        str | None, Meta(description="Resource service.name. Absent: OTEL_SERVICE_NAME, else fastgw.")
    ] = None
    resource_attributes: Annotated[
        dict[str, str], Meta(description="More resource attributes; OTEL_RESOURCE_ATTRIBUTES adds to them.")
    ] = field(default_factory=dict)


class TracingSettings(_Model):
    """Distributed tracing (W3C trace context, OTLP/HTTP spans); off unless a sampler is set here
    or in OTEL_TRACES_SAMPLER. Exporter address, headers and resource come from gateway.otlp and
    the OTEL_* variables."""

    sampler: Annotated[
        Literal[
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ]
        | None,
        Meta(
            description="OpenTelemetry sampler: parentbased_* follow an incoming traceparent's sampled "
            "flag. Absent: OTEL_TRACES_SAMPLER, else tracing is off."
        ),
    ] = None
    ratio: Annotated[
        Annotated[float, Meta(ge=0, le=1)] | None,
        Meta(
            description="Fraction of root traces sampled by *traceidratio. Absent: "
            "OTEL_TRACES_SAMPLER_ARG, else 1."
        ),
    ] = None
    endpoint: Annotated[
        str | None,
        Meta(
            description="Full URL spans are POSTed to. Absent: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else "
            "{gateway.otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces; none: spans are not "
            "exported (trace context is still propagated)."
        ),
    ] = None
    max_queue_size: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        Meta(
            description="Spans a worker queues for export; beyond, spans are dropped and counted. "
            "Absent: OTEL_BSP_MAX_QUEUE_SIZE, else 2048."
        ),
    ] = None
    max_export_batch_size: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        Meta(description="Spans per export request. Absent: OTEL_BSP_MAX_EXPORT_BATCH_SIZE, else 512."),
    ] = None
    schedule_delay_ms: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        Meta(description="Longest wait between exports. Absent: OTEL_BSP_SCHEDULE_DELAY, else 5000."),
    ] = None
    export_timeout_ms: Annotated[
        Annotated[int, Meta(ge=1)] | None,
        Meta(description="Deadline of one export. Absent: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, else 10000."),
    ] = None


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
    metrics: Annotated[
        bool,
        Meta(
            description="Count every request per API, stage and route (AWS's metrics, scraped at the "
            "admin listener's /metrics)."
        ),
    ] = True
    otlp: OtlpMetricsSettings = field(default_factory=OtlpMetricsSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
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
    aws: AwsSettings = field(default_factory=AwsSettings)
    functions: FunctionSettings = field(default_factory=FunctionSettings)
    tls: Annotated[
        TlsSettings | None, Meta(description="An HTTPS listener beside the HTTP one (off when absent).")
    ] = None


ContentHandling = Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"]
PassthroughBehavior = Literal["WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER"]


class IntegrationResponse(_Model):
    """How one integration outcome becomes the method response (AWS IntegrationResponse)."""

    statusCode: Annotated[
        Annotated[int, Meta(ge=100, le=599)] | Annotated[str, Meta(pattern=r"^[1-5][0-9][0-9]$")],
        Meta(description="Status of the method response."),
    ] = 200
    responseParameters: Annotated[
        dict[str, str],
        Meta(
            description="'method.response.header.NAME' -> 'integration.response.header.NAME' | "
            "'integration.response.multivalueheader.NAME' | 'integration.response.body[.JSONPath]' | "
            "'context.VAR' | 'stageVariables.NAME' | \"'static value'\"."
        ),
    ] = field(default_factory=dict)
    responseTemplates: Annotated[
        dict[str, str],
        Meta(
            description="Content-Type -> VTL mapping template of the response body; chosen by the "
            "client's Accept (else application/json, else the first). Empty: the body passes through."
        ),
    ] = field(default_factory=dict)
    contentHandling: Annotated[
        ContentHandling | None,
        Meta(description="Convert the integration body: CONVERT_TO_TEXT (base64) or CONVERT_TO_BINARY."),
    ] = None


class MockIntegration(_Model, tag="MOCK", tag_field="type"):
    """Answers without a backend (AWS MOCK integration).

    Simple form: `status`, `headers`, `body`. AWS form (with `responses`): the request template's
    output `{"statusCode": N}` selects the integration response whose `selectionPattern` (the key)
    matches N, which gives the status, headers and body (REST CORS preflights are built so)."""

    status: Annotated[int, Meta(ge=100, le=599, description="Response status code.")] = 200
    headers: Annotated[dict[str, str], Meta(description="Response headers.")] = field(default_factory=dict)
    body: Annotated[str, Meta(description="Response body (UTF-8 text).")] = ""
    requestTemplates: Annotated[
        dict[str, str],
        Meta(description='Content-Type -> VTL template whose output is `{"statusCode": N}` (AWS form).'),
    ] = field(default_factory=dict)
    passthroughBehavior: Annotated[
        PassthroughBehavior, Meta(description="When no request template matches the Content-Type.")
    ] = "WHEN_NO_MATCH"
    responses: Annotated[
        dict[str, IntegrationResponse],
        Meta(
            description="Integration responses by selection pattern (a regex on the status code, "
            "'default' for the rest): the AWS form."
        ),
    ] = field(default_factory=dict)


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
    requestParameters: Annotated[
        dict[str, str],
        Meta(
            description="REST: 'integration.request.header|querystring|path.NAME' -> "
            "'method.request.header|querystring|path.NAME' | 'context.VAR' | 'stageVariables.NAME' | "
            "\"'static'\" (AWS request parameter mapping)."
        ),
    ] = field(default_factory=dict)
    parameterMapping: Annotated[
        dict[str, str],
        Meta(
            description="HTTP APIs: 'append|overwrite|remove:header.NAME', "
            "'append|overwrite|remove:querystring.NAME', 'overwrite:path' -> a value with "
            "$request.header.NAME, $request.querystring.NAME, $request.path[.NAME], $context.VAR, "
            "$stageVariables.NAME."
        ),
    ] = field(default_factory=dict)
    responseParameters: Annotated[
        dict[str, dict[str, str]],
        Meta(
            description="HTTP APIs: status code -> {'append|overwrite|remove:header.NAME' | "
            "'overwrite:statuscode' -> value with $response.header.NAME, $response.body.JSONPath, "
            "$context.VAR}."
        ),
    ] = field(default_factory=dict)


class HttpIntegration(_Model, tag="HTTP", tag_field="type"):
    """An HTTP endpoint with mapping (AWS HTTP, non-proxy): request templates and parameters in,
    integration responses out."""

    uri: Annotated[
        str,
        Meta(
            description="Endpoint URI template: http(s)://host[:port]/path with {param} (filled from "
            "integration.request.path.* mappings, else the route's path parameters) and "
            "${stageVariables.NAME}."
        ),
    ]
    httpMethod: Annotated[
        str | None, Meta(description="Method sent to the endpoint (default: the client's).")
    ] = None
    requestParameters: Annotated[
        dict[str, str],
        Meta(
            description="'integration.request.header|querystring|path.NAME' -> 'method.request.*' | "
            "'context.VAR' | 'stageVariables.NAME' | \"'static'\". Only mapped query strings and "
            "headers are sent (AWS)."
        ),
    ] = field(default_factory=dict)
    requestTemplates: Annotated[
        dict[str, str], Meta(description="Content-Type -> VTL template of the body sent to the endpoint.")
    ] = field(default_factory=dict)
    passthroughBehavior: Annotated[
        PassthroughBehavior,
        Meta(
            description="No template for the request's Content-Type: WHEN_NO_MATCH passes the body "
            "through; WHEN_NO_TEMPLATES only if no template is defined at all; NEVER answers 415."
        ),
    ] = "WHEN_NO_MATCH"
    contentHandling: Annotated[
        ContentHandling | None, Meta(description="Convert the request body before it is sent.")
    ] = None
    responses: Annotated[
        dict[str, IntegrationResponse],
        Meta(
            description="Integration responses by selection pattern: a regex on the endpoint's status "
            "code; 'default' for the rest. Without one, the status and body pass through."
        ),
    ] = field(default_factory=dict)
    timeout_ms: Annotated[
        int, Meta(ge=50, description="Integration timeout, ms (AWS: 29000). Over it: 504.")
    ] = 29000


class AwsIntegration(_Model, tag="AWS", tag_field="type"):
    """A registered function invoked with a mapped payload (AWS's non-proxy Lambda integration)."""

    uri: Annotated[
        str,
        Meta(
            min_length=1,
            description="The function: a name in `functions`, a Lambda ARN or AWS's integration URI.",
        ),
    ]
    requestTemplates: Annotated[
        dict[str, str],
        Meta(description="Content-Type -> VTL template whose output (JSON) is the function's event."),
    ] = field(default_factory=dict)
    passthroughBehavior: Annotated[
        PassthroughBehavior,
        Meta(description="No template for the Content-Type: as HTTP integrations (NEVER: 415)."),
    ] = "WHEN_NO_MATCH"
    responses: Annotated[
        dict[str, IntegrationResponse],
        Meta(
            description="Integration responses by selection pattern: a regex on a failed function's "
            "errorMessage ('default' for success and unmatched errors)."
        ),
    ] = field(default_factory=dict)
    timeout_ms: Annotated[
        int, Meta(ge=50, description="Integration timeout, ms (AWS: 29000). Over it: 504.")
    ] = 29000


class AwsProxyIntegration(_Model, tag="AWS_PROXY", tag_field="type"):
    """Invokes a function with an AWS Lambda proxy event (AWS AWS_PROXY integration)."""

    uri: Annotated[
        str,
        Meta(
            min_length=1,
            description="The function: a name in `functions`, a Lambda function ARN, or AWS's "
            "integration URI (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/"
            "arn:aws:lambda:REGION:ACCOUNT:function:NAME/invocations); ${stageVariables.NAME} allowed.",
        ),
    ]
    payloadFormatVersion: Annotated[
        Literal["1.0", "2.0"] | None,
        Meta(description="Event format: REST APIs use 1.0; HTTP APIs 1.0 or 2.0 (default 2.0)."),
    ] = None
    timeout_ms: Annotated[
        int, Meta(ge=50, description="Integration timeout, ms (AWS: 29000). Over it: 504.")
    ] = 29000


Integration = MockIntegration | HttpProxyIntegration | AwsProxyIntegration | HttpIntegration | AwsIntegration


class PluginRef(_Model):
    """A plugin enabled at some level (gateway, API, stage, route); the most specific wins."""

    name: Annotated[str, Meta(min_length=1, description="Plugin name (its class's `name`).")]
    config: Annotated[
        dict[str, Any], Meta(description="The plugin's settings, validated by its `Config` Struct.")
    ] = field(default_factory=dict)
    enabled: Annotated[
        bool, Meta(description="false turns off a plugin that a less specific level enabled.")
    ] = True


class JwtConfiguration(_Model):
    """How a JWT (or Cognito) authorizer checks tokens."""

    issuer: Annotated[
        str | None,
        Meta(
            description="Expected `iss`; also where OIDC discovery looks "
            "(ISSUER/.well-known/openid-configuration)."
        ),
    ] = None
    audience: Annotated[
        list[str],
        Meta(description="Accepted `aud` values (or `client_id` for access tokens without `aud`, as AWS)."),
    ] = field(default_factory=list)
    jwks_uri: Annotated[
        str | None, Meta(description="JWKS URL; without it, taken from the issuer's OIDC discovery document.")
    ] = None
    algorithms: Annotated[
        list[
            Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
        ],
        Meta(description="Signature algorithms accepted (never taken from the token alone). AWS: RS256."),
    ] = field(default_factory=lambda: ["RS256"])
    clock_skew_seconds: Annotated[
        int, Meta(ge=0, le=300, description="Leeway for exp, nbf and iat, seconds.")
    ] = 60
    jwks_cache_seconds: Annotated[
        int, Meta(ge=1, description="Seconds the key set is kept before it is fetched again.")
    ] = 3600
    jwks_min_refresh_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="At most one fetch per this many seconds on an unknown `kid` (a flood of bad "
            "tokens cannot hammer the provider).",
        ),
    ] = 10.0
    fetch_timeout_ms: Annotated[int, Meta(ge=50, description="Deadline of a JWKS / discovery fetch, ms.")] = (
        3000
    )
    max_jwks_bytes: Annotated[int, Meta(ge=1024, description="Size cap of a JWKS / discovery document.")] = (
        256 * 1024
    )


class AuthorizerConfig(_Model):
    """A Lambda (custom) authorizer of an API."""

    name: Annotated[str, Meta(min_length=1, description="Authorizer name, used by routes' `authorizer`.")]
    type: Annotated[
        Literal["TOKEN", "REQUEST", "JWT", "COGNITO_USER_POOLS"],
        Meta(
            description="TOKEN: a Lambda authorizer reading one header (REST); REQUEST: a Lambda "
            "authorizer with several identity sources; JWT: tokens of an OIDC issuer checked by the "
            "gateway (HTTP API semantics, REST routes too); COGNITO_USER_POOLS: the same with "
            "Cognito's issuer and token-use rules."
        ),
    ] = "REQUEST"
    authorizerUri: Annotated[
        str | None,
        Meta(description="TOKEN / REQUEST: the authorizer function, same forms as an AWS_PROXY `uri`."),
    ] = None
    jwtConfiguration: Annotated[
        JwtConfiguration | None, Meta(description="JWT: issuer, audiences and keys (AWS's JwtConfiguration).")
    ] = None
    providerARNs: Annotated[
        list[str],
        Meta(
            description="COGNITO_USER_POOLS: user pool ARNs (arn:aws:cognito-idp:REGION:ACCOUNT:userpool/"
            "POOL_ID); tokens of any of them are accepted."
        ),
    ] = field(default_factory=list)
    identitySource: Annotated[
        str | list[str],
        Meta(
            description="Identity sources, AWS syntax: 'method.request.header.Authorization' "
            "(REST; comma-separated for several) or ['$request.header.Authorization', "
            "'$request.querystring.q', '$stageVariables.v', '$context.routeKey'] (HTTP APIs). "
            "A request missing one gets 401 (REST REQUEST authorizers with caching off call the "
            "function anyway)."
        ),
    ] = ""
    identityValidationExpression: Annotated[
        str | None,
        Meta(description="TOKEN: a regular expression the token must match in full, else 401."),
    ] = None
    authorizerResultTtlInSeconds: Annotated[
        int, Meta(ge=0, le=3600, description="Seconds a decision is cached (0 disables the cache).")
    ] = 300
    authorizerPayloadFormatVersion: Annotated[
        Literal["1.0", "2.0"] | None,
        Meta(description="HTTP APIs: event format 1.0 or 2.0 (default 2.0). REST APIs: 1.0."),
    ] = None
    enableSimpleResponses: Annotated[
        bool,
        Meta(description="HTTP APIs, format 2.0: the function returns {isAuthorized, context}."),
    ] = False
    cache_per_route: Annotated[
        bool,
        Meta(
            description="Key the cache by route as well as identity (a REST policy is otherwise cached "
            "once and evaluated against each method ARN, as AWS does)."
        ),
    ] = False
    timeout_ms: Annotated[
        int, Meta(ge=50, description="Authorizer call timeout, ms (AWS: 10000). Over it: 500.")
    ] = 10000


class FunctionConfig(_Model):
    """A function that integrations and authorizers invoke: in-process Python, or remote."""

    handler: Annotated[
        str | None,
        Meta(
            description="'package.module:callable', or Lambda's 'module.callable'; sync or async "
            "def handler(event, context)."
        ),
    ] = None
    url: Annotated[
        str | None,
        Meta(
            description="A remote function instead: base URL of an endpoint speaking the Lambda "
            "Invoke API (POST /2015-03-31/functions/NAME/invocations), e.g. the AWS Lambda Runtime "
            "Interface Emulator."
        ),
    ] = None
    remote_name: Annotated[
        str | None, Meta(description="Function name in the remote Invoke path (default 'function', as RIE).")
    ] = None
    code_path: Annotated[
        str | None,
        Meta(
            description="Directory put first on sys.path before importing the handler (relative "
            "paths: to the working directory)."
        ),
    ] = None
    timeout_ms: Annotated[
        int, Meta(ge=1, description="Function timeout, ms (Lambda's default: 3000). Over it: 504.")
    ] = 3000
    max_concurrency: Annotated[
        int,
        Meta(
            ge=1,
            description="Invocations running at once per worker; more wait for a slot within the timeout.",
        ),
    ] = 64
    memory_mb: Annotated[
        int, Meta(ge=128, description="Reported by context.memory_limit_in_mb (not enforced).")
    ] = 128
    environment: Annotated[
        dict[str, str],
        Meta(
            description="Environment variables set (os.environ, the worker's process) before the handler "
            "is imported; two functions may not set one variable differently."
        ),
    ] = field(default_factory=dict)
    executor: Annotated[
        Literal["thread", "inline"],
        Meta(
            description="Sync handlers: 'thread' runs them in the worker's bounded pool; 'inline' calls "
            "them on the event loop (fast, but a slow one stalls the worker and cannot be timed out)."
        ),
    ] = "thread"


class WebSocketSettings(_Model):
    """Limits of a WebSocket API's connections (AWS's quotas as defaults) and its @connections API."""

    max_frame_bytes: Annotated[
        int, Meta(ge=125, description="Largest frame a client may send, bytes (AWS: 32 KiB). Over it: 1009.")
    ] = 32 * 1024
    max_message_bytes: Annotated[
        int,
        Meta(ge=125, description="Largest message (all its frames), bytes (AWS: 128 KiB). Over it: 1009."),
    ] = 128 * 1024
    idle_timeout: Annotated[
        float,
        Meta(
            gt=0, description="Seconds without a frame from the client before the gateway closes (AWS: 600)."
        ),
    ] = 600.0
    max_duration: Annotated[
        float, Meta(gt=0, description="Seconds a connection may last in all (AWS: 7200); then closed 1001.")
    ] = 7200.0
    max_outbound_bytes: Annotated[
        int,
        Meta(
            ge=1024,
            description="Bytes queued towards one client (slow reader); over it the connection is closed "
            "with 1008 and counted, never buffered without bound.",
        ),
    ] = 1024 * 1024
    new_connections_per_second: Annotated[
        float,
        Meta(
            ge=0,
            description="New connections per second a node accepts on each stage of this API, all "
            "workers together (AWS: 500 per account); more get 429. 0: no limit.",
        ),
    ] = 500.0
    permessage_deflate: Annotated[
        bool, Meta(description="Offer the permessage-deflate extension (RFC 7692) to clients that ask.")
    ] = False
    connections_api_token: Annotated[
        Annotated[str, Meta(min_length=16)] | None,
        Meta(
            description="Bearer token that opens POST/GET/DELETE /{stage}/@connections/{id} to any "
            "address; without it (or without the header) only loopback clients may call it.",
        ),
    ] = None
    delivery_timeout_ms: Annotated[
        int,
        Meta(
            ge=10,
            description="Deadline of a @connections call for a connection held by another worker or "
            "node (through Redis pub/sub or the node's sockets), ms.",
        ),
    ] = 2000


class Route(_Model):
    """One route: a route key and its integration."""

    route: Annotated[
        str,
        Meta(
            description="Route key: 'METHOD /path' with {param} and a final {name+}; METHOD may be ANY; "
            "'$default' (HTTP APIs) catches what no other route matches. WebSocket APIs: '$connect', "
            "'$disconnect', '$default' or a custom key matched against routeSelectionExpression."
        ),
    ]
    integration: Annotated[
        Integration,
        Meta(description="What serves the route; `type` selects MOCK, HTTP_PROXY, HTTP, AWS_PROXY or AWS."),
    ]
    apiKeyRequired: Annotated[
        bool,
        Meta(description="Require an enabled API key in a usage plan of the stage; else 403 Forbidden."),
    ] = False
    authorizer: Annotated[
        str | None, Meta(description="Name of one of the API's `authorizers` guarding the route.")
    ] = None
    authorizationScopes: Annotated[
        list[str],
        Meta(
            description="JWT / Cognito authorizers: the token needs one of these scopes "
            "(`scope`/`scp`), else 403."
        ),
    ] = field(default_factory=list)
    requestParameters: Annotated[
        dict[str, bool],
        Meta(
            description="Method request parameters, AWS syntax: 'method.request.header.NAME', "
            "'method.request.querystring.NAME', 'method.request.path.NAME' -> required (checked by a "
            "validator with validateRequestParameters)."
        ),
    ] = field(default_factory=dict)
    requestModels: Annotated[
        dict[str, str],
        Meta(
            description="Content-Type -> model name, for body validation ('$default' for any other "
            "type; a request without Content-Type is application/json)."
        ),
    ] = field(default_factory=dict)
    requestValidator: Annotated[
        str | None, Meta(description="Name of one of the API's requestValidators (else the API's default).")
    ] = None
    cacheKeyParameters: Annotated[
        list[str],
        Meta(
            description="Response cache key parameters besides method and resource: "
            "'method.request.header|querystring|path.NAME' (AWS cacheKeyParameters)."
        ),
    ] = field(default_factory=list)
    authorizationType: Annotated[
        Literal["NONE", "AWS_IAM"],
        Meta(
            description="AWS_IAM: requests must be SigV4-signed with credentials in `iam.users` "
            "(and allowed by their policy)."
        ),
    ] = "NONE"
    plugins: Annotated[list[PluginRef], Meta(description="Plugins enabled on this route.")] = field(
        default_factory=list
    )
    routeResponseSelectionExpression: Annotated[
        Literal["$default"] | None,
        Meta(
            description="WebSocket APIs: '$default' gives the route a $default route response, so the "
            "integration's answer is sent back to the client (two-way route); absent: one-way."
        ),
    ] = None


class CorsConfiguration(_Model):
    """HTTP API CORS (AWS's Cors object): preflights answered by the gateway, headers added."""

    allowOrigins: Annotated[
        list[str], Meta(description="Origins allowed ('https://app.example.com', or '*').")
    ] = field(default_factory=list)
    allowMethods: Annotated[list[str], Meta(description="Methods allowed ('GET', ..., or '*').")] = field(
        default_factory=list
    )
    allowHeaders: Annotated[list[str], Meta(description="Request headers allowed ('*' for any).")] = field(
        default_factory=list
    )
    exposeHeaders: Annotated[list[str], Meta(description="Response headers exposed to the page.")] = field(
        default_factory=list
    )
    maxAge: Annotated[
        Annotated[int, Meta(ge=0, le=86400)] | None,
        Meta(description="Seconds a browser may cache a preflight answer (0-86400)."),
    ] = None
    allowCredentials: Annotated[
        bool, Meta(description="Send Access-Control-Allow-Credentials: true (not with origin '*').")
    ] = False


class RequestValidatorConfig(_Model):
    """What a request validator checks (AWS's RequestValidator)."""

    validateRequestBody: Annotated[
        bool, Meta(description="Check the body against the route's model for its Content-Type.")
    ] = False
    validateRequestParameters: Annotated[
        bool, Meta(description="Check that the route's required request parameters are present.")
    ] = False


class CacheSettings(_Model):
    """A stage's response cache (AWS stage cache, with fastgw's additions)."""

    enabled: Annotated[bool, Meta(description="Cache GET responses of the stage's routes.")] = True
    ttl_seconds: Annotated[
        int, Meta(ge=0, le=3600, description="Seconds an entry is served (AWS: 300, at most 3600; 0 = off).")
    ] = 300
    capacity_bytes: Annotated[
        int,
        Meta(
            ge=4096,
            le=1 << 50,
            description="Memory backend: bytes per worker (at most 2^50); least recently used go first.",
        ),
    ] = 64 * 1024 * 1024
    max_item_bytes: Annotated[
        int, Meta(ge=1, le=1 << 50, description="Responses larger than this are not cached (AWS: 1 MB).")
    ] = 1024 * 1024
    backend: Annotated[
        Literal["memory", "redis"],
        Meta(
            description="memory: per worker; redis: one cache shared by every node through "
            "gateway.state.redis (a Redis failure is a miss)."
        ),
    ] = "memory"
    requireAuthorizationForCacheControl: Annotated[
        bool,
        Meta(
            description="A client's 'Cache-Control: max-age=0' refreshes the entry only if the caller "
            "may (an IAM identity allowed execute-api:InvalidateCache)."
        ),
    ] = True
    unauthorizedCacheControlHeaderStrategy: Annotated[
        Literal["FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER", "SUCCEED_WITHOUT_RESPONSE_HEADER"],
        Meta(description="What an unauthorized invalidation gets (AWS's three policies)."),
    ] = "SUCCEED_WITH_RESPONSE_HEADER"


class MethodCacheSettings(_Model):
    """Per-route cache overrides of a stage (AWS method settings)."""

    enabled: Annotated[
        bool, Meta(description="Cache this route (also non-GET routes, which are off by default).")
    ] = True
    ttl_seconds: Annotated[
        Annotated[int, Meta(ge=0, le=3600)] | None, Meta(description="TTL for this route (else the stage's).")
    ] = None


# AWS's rules for stage variables: names of alphanumerics and underscores, values of
# alphanumerics and -._~:/?#&=, (up to 2048 characters).
STAGE_VARIABLE_NAME = r"^[A-Za-z0-9_]{1,64}$"
STAGE_VARIABLE_VALUE = r"^[A-Za-z0-9\-._~:/?#&=,]{0,2048}$"


class AccessLogSettings(_Model):
    """A stage's access log (AWS accessLogSettings): one line per request."""

    format: Annotated[
        str,
        Meta(
            min_length=1,
            description="'clf', 'json', 'xml' or 'csv' (AWS's console formats), or a format string of "
            "$context variables ($context.requestId, $context.identity.sourceIp, $context.status, "
            "$context.responseLatency, ...); unknown variables are refused at load. On a WebSocket stage: "
            "one line per $connect, message and $disconnect, with the WebSocket variables "
            "($context.eventType, $context.connectionId, $context.routeKey, ...).",
        ),
    ]
    destination: Annotated[
        str | None,
        Meta(
            description="File the lines are appended to (reopened on SIGUSR1, for logrotate); "
            "absent: standard error."
        ),
    ] = None


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
        dict[
            Annotated[str, Meta(pattern=STAGE_VARIABLE_NAME)],
            Annotated[str, Meta(pattern=STAGE_VARIABLE_VALUE)],
        ],
        Meta(
            description="Stage variables, used as ${stageVariables.NAME} in URIs and templates. As on AWS, "
            "names are [A-Za-z0-9_] and values [A-Za-z0-9-._~:/?#&=,] (nothing that could end a "
            "request line or header)."
        ),
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
    plugins: Annotated[list[PluginRef], Meta(description="Plugins enabled on this stage.")] = field(
        default_factory=list
    )
    cache: Annotated[
        CacheSettings | None, Meta(description="Response cache of the stage (off when absent).")
    ] = None
    route_cache: Annotated[
        dict[str, MethodCacheSettings],
        Meta(description="Per-route cache settings, keyed by the route key as written in `routes`."),
    ] = field(default_factory=dict)
    autoDeploy: Annotated[
        bool | None,
        Meta(
            description="Absent: REST stages serve the config's definition until their first "
            "`fastgw deploy`; from then on config changes take effect only when deployed (as AWS REST "
            "APIs); HTTP API stages behave as true. true: once a deployment is chosen for the stage, "
            "every start or reload that changes the definition deploys it anew (AWS autoDeploy). false: "
            "the first start deploys the config's definition, and changes take effect only when deployed."
        ),
    ] = None
    accessLogSettings: Annotated[
        AccessLogSettings | None, Meta(description="Access log of the stage (none when absent).")
    ] = None


GatewayResponseType = Literal[
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_PARAMETERS",
    "BAD_REQUEST_BODY",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
]


class GatewayResponseConfig(_Model):
    """A customised gateway response (AWS GatewayResponse)."""

    statusCode: Annotated[
        Annotated[int, Meta(ge=100, le=599)] | Annotated[str, Meta(pattern=r"^[1-5][0-9][0-9]$")] | None,
        Meta(description="Status sent instead of the error's own."),
    ] = None
    responseParameters: Annotated[
        dict[str, str],
        Meta(
            description="'gatewayresponse.header.NAME' -> 'method.request.header|querystring|path.NAME' "
            "| 'stageVariables.NAME' | 'context.VAR' | \"'static value'\"."
        ),
    ] = field(default_factory=dict)
    responseTemplates: Annotated[
        dict[str, str],
        Meta(
            description="Content-Type -> VTL body template (default "
            '{"message":$context.error.messageString}).'
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
    binaryMediaTypes: Annotated[
        list[str],
        Meta(
            description="REST APIs: Content-Types ('image/png', 'image/*', '*/*'; '~1' for '/' as in AWS "
            "exports) whose bodies reach functions base64-encoded; an entry that is not a media type "
            "or range is refused at load."
        ),
    ] = field(default_factory=list)
    routes: Annotated[list[Route], Meta(description="Routes of the API.")] = field(default_factory=list)
    stages: Annotated[list[Stage], Meta(description="Stages; at least one.")] = field(default_factory=list)
    authorizers: Annotated[
        list[AuthorizerConfig], Meta(description="Authorizers (Lambda, JWT, Cognito) routes may use.")
    ] = field(default_factory=list)
    cors: Annotated[
        CorsConfiguration | None,
        Meta(
            description="HTTP APIs: CORS handled by the gateway (preflights answered, headers added to "
            "every response of the API, the integration's own CORS headers replaced)."
        ),
    ] = None
    models: Annotated[
        dict[str, dict[str, Any]],
        Meta(
            description="Models by name: JSON Schema draft 4 documents (AWS's models); a model may "
            "$ref another as https://apigateway.amazonaws.com/restapis/API_ID/models/NAME."
        ),
    ] = field(default_factory=dict)
    requestValidators: Annotated[
        dict[str, RequestValidatorConfig], Meta(description="Request validators by name.")
    ] = field(default_factory=dict)
    requestValidator: Annotated[
        str | None,
        Meta(
            description="The validator of every route that names none "
            "(x-amazon-apigateway-request-validator)."
        ),
    ] = None
    policy: Annotated[
        dict[str, Any] | None,
        Meta(
            description="Resource policy (IAM JSON, as AWS): Allow/Deny on execute-api:Invoke with "
            "aws:SourceIp (IpAddress / NotIpAddress) and principal conditions; explicit deny wins."
        ),
    ] = None
    plugins: Annotated[list[PluginRef], Meta(description="Plugins enabled on every route of the API.")] = (
        field(default_factory=list)
    )
    gatewayResponses: Annotated[
        dict[GatewayResponseType, GatewayResponseConfig],
        Meta(
            description="REST APIs: the gateway's own error responses customised by type; DEFAULT_4XX "
            "and DEFAULT_5XX apply to the types left unset."
        ),
    ] = field(default_factory=dict)
    minimumCompressionSize: Annotated[
        Annotated[int, Meta(ge=0, le=10485760)] | None,
        Meta(
            description="Compress responses of at least this many bytes (gzip or deflate, by the "
            "client's Accept-Encoding); absent: never. Compressed request bodies are always inflated "
            "before mapping."
        ),
    ] = None
    routeSelectionExpression: Annotated[
        str | None,
        Meta(
            description="WebSocket APIs: where a message's route key is read, "
            "'$request.body.NAME[.NAME...]' on JSON messages (AWS's selection expression); default "
            "'$request.body.action'. A message without it (or not JSON) goes to '$default'."
        ),
    ] = None
    websocket: Annotated[
        WebSocketSettings | None,
        Meta(description="WebSocket APIs: limits and the @connections API (AWS's defaults when absent)."),
    ] = None


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
    certificate: Annotated[
        TlsCertificate | None, Meta(description="This domain's certificate on the HTTPS listener (by SNI).")
    ] = None
    mutualTls: Annotated[
        MutualTls | None,
        Meta(description="Require client certificates from this truststore on the HTTPS listener."),
    ] = None


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


class IamUser(_Model):
    """Credentials that SigV4-signed requests (authorizationType AWS_IAM) may use."""

    accessKeyId: Annotated[str, Meta(pattern=r"^[A-Z0-9]{16,128}$", description="The access key id.")]
    arn: Annotated[
        str,
        Meta(
            description="The principal's ARN (arn:aws:iam::ACCOUNT:user/NAME), in $context.identity.userArn."
        ),
    ]
    secretAccessKey: Annotated[str | None, Meta(description="The secret key (or `secret_env`).")] = None
    secret_env: Annotated[str | None, Meta(description="Environment variable holding the secret key.")] = None
    policy: Annotated[
        dict[str, Any] | None,
        Meta(description="Identity policy (IAM JSON): execute-api:Invoke on method ARNs, wildcards allowed."),
    ] = None


class IamSettings(_Model):
    """AWS_IAM authorization: the credentials the gateway verifies signatures against."""

    users: Annotated[list[IamUser], Meta(description="Principals and their keys.")] = field(
        default_factory=list
    )
    clock_skew_seconds: Annotated[
        int, Meta(ge=0, le=3600, description="Accepted difference between X-Amz-Date and now (AWS: 300).")
    ] = 300


class TlsCertificate(_Model):
    """A certificate chain and its key (PEM files)."""

    certificate: Annotated[str, Meta(description="PEM file: the certificate and its chain.")]
    key: Annotated[str, Meta(description="PEM file: the private key.")]


class MutualTls(_Model):
    """Client certificates required on a custom domain."""

    truststore: Annotated[
        str, Meta(description="PEM file of the CA certificates client certificates must chain to.")
    ]


class TlsSettings(_Model):
    """HTTPS listener: a default certificate, one per custom domain by SNI."""

    default: Annotated[TlsCertificate, Meta(description="Certificate for names without one of their own.")]
    listen: Annotated[str, Meta(description="HOST:PORT of the HTTPS listener.")] = "127.0.0.1:8443"
    min_version: Annotated[
        Literal["TLSv1.2", "TLSv1.3"], Meta(description="Oldest protocol accepted (AWS's TLS_1_2 policy).")
    ] = "TLSv1.2"
    ciphers: Annotated[
        str,
        Meta(
            description="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's): forward-secret "
            "AEAD suites only by default."
        ),
    ] = "ECDHE+AESGCM:ECDHE+CHACHA20"


class OpenApiSource(_Model):
    """An OpenAPI document (an AWS API Gateway export) served as one of the config's APIs."""

    file: Annotated[
        str, Meta(min_length=1, description="JSON or YAML file, relative to the config file's folder.")
    ]
    kind: Annotated[
        Literal["rest", "http"] | None,
        Meta(description="API kind; absent: detected (x-amazon-apigateway-importexport-version: http)."),
    ] = None
    name: Annotated[str | None, Meta(description="API name; absent: info.title.")] = None
    id: Annotated[
        str | None, Meta(description="API id; absent: the id in the exported address, else derived.")
    ] = None
    stage: Annotated[
        str | None, Meta(description="Stage to serve it on; absent: prod ($default for HTTP APIs).")
    ] = None
    stageVariables: Annotated[
        dict[str, str], Meta(description="Variables of that stage (those the document's URIs use).")
    ] = field(default_factory=dict)
    strict: Annotated[bool, Meta(description="Refuse what cannot apply on fastgw instead of warning.")] = (
        False
    )


class GatewayConfig(_Model):
    """The whole configuration file."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    apis: Annotated[list[Api], Meta(description="APIs served.")] = field(default_factory=list)
    openapi: Annotated[
        list[OpenApiSource],
        Meta(
            description="OpenAPI documents imported at every load (start, SIGHUP) and served with `apis`; "
            "a document that no longer imports is refused with its problems' paths."
        ),
    ] = field(default_factory=list)
    domains: Annotated[list[Domain], Meta(description="Custom domain names.")] = field(default_factory=list)
    apiKeys: Annotated[list[ApiKeyConfig], Meta(description="API keys declared here.")] = field(
        default_factory=list
    )
    usagePlans: Annotated[list[UsagePlanConfig], Meta(description="Usage plans declared here.")] = field(
        default_factory=list
    )
    functions: Annotated[
        dict[str, FunctionConfig],
        Meta(description="Functions by name, for AWS_PROXY integrations and Lambda authorizers."),
    ] = field(default_factory=dict)
    plugin_modules: Annotated[
        list[str],
        Meta(
            description="Modules imported at load so that their Plugin subclasses register (besides "
            "the `fastgw.plugins` entry-point group)."
        ),
    ] = field(default_factory=list)
    plugins: Annotated[list[PluginRef], Meta(description="Plugins enabled on every route.")] = field(
        default_factory=list
    )
    iam: Annotated[IamSettings, Meta(description="AWS_IAM (SigV4) credentials and policies.")] = field(
        default_factory=IamSettings
    )


def json_schema() -> dict[str, object]:
    """JSON Schema of the config file (``fastgw schema``)."""
    return msgspec.json.schema(GatewayConfig)

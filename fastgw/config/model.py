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


class GatewayConfig(_Model):
    """The whole configuration file."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    apis: Annotated[list[Api], Meta(description="APIs served.")] = field(default_factory=list)
    domains: Annotated[list[Domain], Meta(description="Custom domain names.")] = field(default_factory=list)


def json_schema() -> dict[str, object]:
    """JSON Schema of the config file (``fastgw schema``)."""
    return msgspec.json.schema(GatewayConfig)

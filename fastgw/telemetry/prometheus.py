"""Prometheus text exposition (format 0.0.4) of a node's metrics.

Names keep AWS API Gateway's CloudWatch metric names and follow Prometheus's conventions: counters
end in ``_total`` and histograms carry their unit.

- ``fastgw_Count_total`` (counter): AWS Count.
- ``fastgw_4XXError_total`` (counter): AWS 4XXError.
- ``fastgw_5XXError_total`` (counter): AWS 5XXError.
- ``fastgw_CacheHitCount_total`` (counter): AWS CacheHitCount.
- ``fastgw_CacheMissCount_total`` (counter): AWS CacheMissCount.
- ``fastgw_Latency_milliseconds`` (histogram: ``_bucket{le}``, ``_sum``, ``_count``): AWS Latency.
- ``fastgw_IntegrationLatency_milliseconds`` (histogram): AWS IntegrationLatency.
- WebSocket routes also: ``fastgw_ConnectCount_total`` (``$connect``), ``fastgw_MessageCount_total``
  (other routes but ``$disconnect``), ``fastgw_ClientError_total`` (4XX), ``fastgw_ExecutionError_total``
  (5XX): AWS's WebSocket names for the same counts.
- ``fastgw_<name>_total`` (counter): the gateway's internal counters (``WorkerMetrics.counters``).
- ``fastgw_<name>`` (gauge): the gateway's internal gauges (``WorkerMetrics.gauges``).
- ``fastgw_workers_reporting`` (gauge): the number of workers whose snapshot was summed.

Latencies stay in milliseconds, as in CloudWatch, rather than Prometheus's base unit (seconds),
and the unit is in the name. The labels are the CloudWatch dimensions:

- REST APIs: ``ApiName``, ``ApiId``, ``Stage``, ``Resource``, ``Method``.
- HTTP and WebSocket APIs: ``ApiName``, ``ApiId``, ``Stage``, ``Route`` (the route key, e.g.
  ``GET /pets/{id}`` or ``$default``).

Every series of a known route is exported, zeros included, so the first increment is not lost
to ``rate()``. The counters are node totals: they survive worker restarts (see
``fastgw.telemetry.metrics``). A drop is a counter reset, which Prometheus handles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from fastgw.telemetry.metrics import LATENCY_BUCKETS_MS, NodeMetrics, RouteStats

#: The Content-Type of ``exposition``'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_:]")

_ROUTE_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("Count", "count", "The total number of API requests (AWS Count)."),
    ("4XXError", "errors_4xx", "The number of client-side errors, status 4xx (AWS 4XXError)."),
    ("5XXError", "errors_5xx", "The number of server-side errors, status 5xx (AWS 5XXError)."),
    (
        "CacheHitCount",
        "cache_hits",
        "The number of requests served from the API cache (AWS CacheHitCount).",
    ),
    (
        "CacheMissCount",
        "cache_misses",
        "The number of requests served from the backend while API caching is on (AWS CacheMissCount).",
    ),
)

_WS_COUNTERS: tuple[tuple[str, Callable[[str], bool], str, str], ...] = (
    (
        "ConnectCount",
        lambda k: k == "$connect",
        "count",
        "Messages sent to the $connect route (AWS ConnectCount).",
    ),
    (
        "MessageCount",
        lambda k: k not in ("$connect", "$disconnect"),
        "count",
        "Messages sent to a WebSocket route other than $connect and $disconnect (AWS MessageCount).",
    ),
    (
        "ClientError",
        lambda k: k != "$disconnect",
        "errors_4xx",
        "WebSocket messages and connects answered 4XX by the gateway (throttled, refused) (AWS ClientError).",
    ),
    (
        "ExecutionError",
        lambda k: True,
        "errors_5xx",
        "WebSocket integrations that failed or timed out (AWS ExecutionError).",
    ),
)

_HISTOGRAMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "Latency",
        "latency",
        "latency_sum",
        "Time from receiving a request to returning the response, in milliseconds, "
        "integration included (AWS Latency).",
    ),
    (
        "IntegrationLatency",
        "integration",
        "integration_sum",
        "Time from relaying a request to the backend to receiving its response, "
        "in milliseconds (AWS IntegrationLatency).",
    ),
)

_INTERNAL_HELP: dict[str, str] = {
    "active_connections": "Open client connections.",
    "upstream_pool_in_use": "Upstream connections in use.",
    "upstream_pool_idle": "Idle upstream connections kept in the pools.",
    "upstream_connections_in_use": "Upstream connections in use.",
    "upstream_connections_idle": "Idle upstream connections kept in the pools.",
    "cache_entries": "Entries in the response caches.",
    "cache_bytes": "Bytes held by the response caches.",
    "config_version": "Configuration generation: 1 at start, +1 per applied reload (SIGHUP).",
    "throttled": "Requests refused with 429 by throttling.",
    "quota_refused": "Requests refused because a usage plan quota was exhausted.",
    "authorizer_cache_hits": "Authorizer results served from the authorizer cache.",
    "authorizer_cache_misses": "Authorizer calls that missed the authorizer cache.",
    "jwt_token_cache_hits": "Requests whose JWT was found in the verified-token cache (no signature check).",
    "jwt_verified": "JWT signatures checked (tokens not in the verified-token cache).",
    "redis_fallbacks": "Redis operations that failed and fell back to local state.",
    "unmatched_requests": "Requests answered without a route (unknown stage or route, refused at the head).",
    "reloads_ok": "Configuration reloads (SIGHUP) applied.",
    "reloads_failed": "Configuration reloads (SIGHUP) rejected; the running config kept serving.",
    "access_log_dropped": "Access log records dropped because the queue was full.",
    "websocket_connections": "Open WebSocket connections.",
    "websocket_connects": "WebSocket connections accepted.",
    "websocket_refused": "WebSocket upgrades refused ($connect, authorizer, limits).",
    "websocket_messages_in": "WebSocket messages received from clients.",
    "websocket_messages_out": "WebSocket messages sent to clients.",
    "websocket_bad_frames": "WebSocket connections closed for a protocol error (1002, 1007, 1009).",
    "websocket_slow_closed": "WebSocket connections closed because the client read too slowly.",
    "websocket_throttled": "WebSocket messages refused by throttling (the connection is kept).",
    "trace_spans_exported": "Spans accepted by the OTLP trace collector.",
    "trace_spans_dropped": "Spans dropped: export queue full or export failed.",
    "trace_exports_failed": "OTLP trace export requests that failed.",
}

_LE = [repr(b) for b in LATENCY_BUCKETS_MS] + ["+Inf"]


def escape_label_value(value: str) -> str:
    """Escape a label value per the text format: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _route_labels(r: RouteStats) -> str:
    labels = [("ApiName", r.api_name), ("ApiId", r.api_id), ("Stage", r.stage)]
    if r.kind == "rest":
        labels += [("Resource", r.resource), ("Method", r.method)]
    else:
        labels.append(("Route", r.route_key))
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)


def _metric_name(prefix: str, name: str) -> str:
    return prefix + _INVALID_NAME_CHARS.sub("_", name)


def exposition(node: NodeMetrics, prefix: str = "fastgw_") -> str:
    """Render the node's metrics in the Prometheus text format 0.0.4 (serve with ``CONTENT_TYPE``).

    Routes are sorted by their labels. Each family has ``# HELP`` and ``# TYPE`` lines, and its
    samples are contiguous. An internal metric whose name collides with a family already written
    is skipped.
    """
    if not _NAME_RE.fullmatch(prefix + "4XXError"):
        raise ValueError(f"invalid metric name prefix {prefix!r}")
    out: list[str] = []
    seen: set[str] = set()

    def family(name: str, kind: str, help_text: str) -> None:
        seen.add(name)
        out.append(f"# HELP {name} {_escape_help(help_text)}")
        out.append(f"# TYPE {name} {kind}")

    routes = sorted(
        node.routes.values(),
        key=lambda r: (r.api_name, r.api_id, r.stage, r.resource, r.method, r.route_key),
    )
    labelled = [(r, _route_labels(r)) for r in routes]

    for aws, attr, help_text in _ROUTE_COUNTERS:
        name = f"{prefix}{aws}_total"
        family(name, "counter", help_text)
        for r, labels in labelled:
            out.append(f"{name}{{{labels}}} {getattr(r, attr)}")

    # WebSocket APIs: AWS's names for the same counts of their routes (the @connections and
    # plain-GET routes of a WebSocket stage are HTTP routes: their keys hold " /").
    ws = [(r, labels) for r, labels in labelled if r.kind == "websocket" and " /" not in r.route_key]
    if ws:
        for aws, pick, attr, help_text in _WS_COUNTERS:
            name = f"{prefix}{aws}_total"
            family(name, "counter", help_text)
            for r, labels in ws:
                if pick(r.route_key):
                    out.append(f"{name}{{{labels}}} {getattr(r, attr)}")

    for aws, attr, sum_attr, help_text in _HISTOGRAMS:
        name = f"{prefix}{aws}_milliseconds"
        family(name, "histogram", help_text)
        for r, labels in labelled:
            cum = 0
            for le, c in zip(_LE, getattr(r, attr), strict=True):
                cum += c
                out.append(f'{name}_bucket{{{labels},le="{le}"}} {cum}')
            out.append(f"{name}_sum{{{labels}}} {_num(getattr(r, sum_attr))}")
            out.append(f"{name}_count{{{labels}}} {cum}")

    for key in sorted(node.counters):
        name = _metric_name(prefix, key)
        if not name.endswith("_total"):
            name += "_total"
        if name in seen:
            continue
        family(name, "counter", _INTERNAL_HELP.get(key, f"Gateway counter {key}, summed over the workers."))
        out.append(f"{name} {_num(node.counters[key])}")

    for key in sorted(node.gauges):
        name = _metric_name(prefix, key)
        if name in seen:
            continue
        family(name, "gauge", _INTERNAL_HELP.get(key, f"Gateway gauge {key}, summed over the workers."))
        out.append(f"{name} {_num(node.gauges[key])}")

    name = f"{prefix}workers_reporting"
    if name not in seen:
        family(name, "gauge", "Workers whose fresh metrics snapshot is included in these totals.")
        out.append(f"{name} {len(node.workers)}")
    return "\n".join(out) + "\n"

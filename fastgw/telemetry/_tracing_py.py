# cython: annotation_typing=False
"""Distributed tracing: W3C trace context in and out, spans per request, OTLP/HTTP export.

This file is compiled as ``_tracing_c`` (Cython pure-Python mode, as ``fastgw.server._protocol``);
``fastgw.telemetry.tracing`` binds the compiled build unless it is missing or disabled.

What a traced request gets:

- A **server span** named ``{method} {route template}`` (``GET /pets/{petId}``; ``GET`` alone when no
  route matched), kind SERVER, from the moment the request head was in until the response was
  written, with the HTTP semantic-convention attributes (``http.request.method``, ``http.route``,
  ``url.path``, ``url.query``, ``http.response.status_code``, ``client.address``) and the
  gateway's own (``fastgw.api_id``, ``fastgw.stage``, ``fastgw.request_id``). 5xx responses set
  the span status to ERROR.
- **Child spans**: ``integration`` (kind CLIENT: the upstream exchange, or the in-process
  function), ``cache`` (the response-cache lookup, ``fastgw.cache.hit``) and ``authorizer`` (kind
  INTERNAL, with the authorizer's type and outcome).
- **Propagation**: a sampled request's upstream request carries ``traceparent`` with the trace
  id and the integration span as parent, and the client's ``tracestate``; the same headers
  reach Lambda-style functions in their event's ``headers``. An unsampled request is forwarded
  with the client's trace headers unchanged.

Sampling follows the OpenTelemetry samplers (``OTEL_TRACES_SAMPLER``): ``always_on``,
``always_off``, ``traceidratio`` and their ``parentbased_*`` forms, which follow the sampled flag
of an incoming ``traceparent`` and use the root sampler only without one. With no sampler in the
config nor in the environment tracing is off and costs nothing.

PERF: the OpenTelemetry SDK spends about 16 µs of CPU on one span (``start_span`` + ``end``
with a ``BatchSpanProcessor``, measured on this project's machine), as much as proxying the
request. So spans are not SDK objects: a finished request's spans are encoded at once into OTLP
protobuf (``opentelemetry.proto.trace.v1.Span``, hand-encoded here, decoded by the tests with the
official ``opentelemetry-proto`` classes) and queued as bytes; a thread per worker posts them in
batches to the collector's ``/v1/traces`` (OTLP/HTTP, ``application/x-protobuf``), as the SDK's
``BatchSpanProcessor`` and ``OTLPSpanExporter`` would. The queue is bounded
(``OTEL_BSP_MAX_QUEUE_SIZE``): when it is full spans are dropped and counted, never waited for.
"""

from __future__ import annotations

import binascii
import collections
import http.client
import logging
import os
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastgw.server.heads import header_values

log = logging.getLogger("fastgw.telemetry")

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
TRACES_PATH = "/v1/traces"
SCOPE_NAME = "fastgw"

# Span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
KIND_INTERNAL = 1
KIND_SERVER = 2
KIND_CLIENT = 3

_VALUE = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\r\n]*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_MAX_TRACESTATE = 512  # W3C: up to 32 list members; longer values are dropped, not forwarded

#: This process's span counts (all its tracers, across reloads), for the node's metrics.
COUNTERS: dict[str, int] = {"trace_spans_exported": 0, "trace_spans_dropped": 0, "trace_exports_failed": 0}

_rand = random.getrandbits
_hexlify = binascii.hexlify  # NOTE: reseeded in each forked worker by the random module


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, int] | None:
    """(trace id, parent span id, flags) of a ``traceparent`` value, or None when invalid
    (W3C Trace Context: lowercase hex, version ``ff`` and all-zero ids refused, version ``00``
    with nothing after the flags; later versions may append fields)."""
    m = _VALUE.fullmatch(value)
    if m is None:
        return None
    version, trace_hex, parent_hex, flags_hex, rest = m.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    if trace_hex == _ZERO_TRACE or parent_hex == _ZERO_SPAN:
        return None
    return bytes.fromhex(trace_hex.decode()), bytes.fromhex(parent_hex.decode()), int(flags_hex, 16)


# ---------------------------------------------------------------------- protobuf encoding
def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` is the whole key byte: field << 3 | 2)."""
    n = len(payload)
    if n < 0x80:
        return b"%c%c%b" % (tag, n, payload)
    if n < 0x4000:
        return b"%c%c%c%b" % (tag, (n & 0x7F) | 0x80, n >> 7, payload)
    return bytes((tag,)) + _varint(n) + payload


_KV_KEYS: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    got = _KV_KEYS.get(name)
    if got is None:
        got = _KV_KEYS[name] = _ld(0x0A, name.encode())
    return got


def _kv_str(key_field: bytes, value: bytes) -> bytes:
    """A ``KeyValue`` message: an encoded key (``_key``) and a string ``AnyValue``."""
    return key_field + _ld(0x12, _ld(0x0A, value))


def attr_str(name: str, value: str) -> bytes:
    """A ``KeyValue`` attribute with a string value, as the span's field 9."""
    return _attr_bytes(_key(name), value.encode("utf-8", "replace"))


def attr_int(name: str, value: int) -> bytes:
    return _ld(0x4A, _key(name) + _ld(0x12, b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)))


def attr_bool(name: str, value: bool) -> bytes:
    return _ld(0x4A, _key(name) + _ld(0x12, b"\x10\x01" if value else b"\x10\x00"))


_TIMES = struct.Struct("<BQBQ").pack  # Span fields 7 and 8 (fixed64 start and end)
_STATUS_ERROR = _ld(0x7A, b"\x18\x02")


def _attr_bytes(key_field: bytes, value: bytes) -> bytes:
    """``attr_str`` for a key already encoded (``_key``) and a UTF-8 value: PERF one format
    operation when every length fits in one byte (the common case)."""
    n = len(value)
    k = len(key_field)
    if n < 100 and k < 20:
        return b"J%c%b\x12%c\n%c%b" % (k + n + 4, key_field, n + 2, n, value)
    return _ld(0x4A, _kv_str(key_field, value))


_K_PATH = _key("url.path")
_K_QUERY = _key("url.query")
_K_CLIENT = _key("client.address")
_K_RID = _key("fastgw.request_id")
_STATUS_ATTRS: dict[int, bytes] = {}


def _attr_heads(key_field: bytes) -> list[bytes]:
    """``_attr_bytes(key_field, value)`` without the value, by the value's length, for the lengths
    its one-format form takes (under 100): PERF the hot path joins a head and the value."""
    return [_attr_bytes(key_field, b"\0" * n)[:-n] if n else _attr_bytes(key_field, b"") for n in range(100)]


_PATH_HEADS = _attr_heads(_K_PATH)
_QUERY_HEADS = _attr_heads(_K_QUERY)
_RID_HEADS = _attr_heads(_K_RID)
#: ``_ld(0x12, body)`` without the body, by the body's length (a span as ScopeSpans.spans).
_SPAN_HEADS = [b"\x12" + _varint(n) for n in range(4096)]


def _span_head(n: int) -> bytes:
    """``_ld(0x12, body)`` without the body, for a body of ``n`` bytes (ScopeSpans.spans)."""
    if n < 4096:
        return _SPAN_HEADS[n]
    return b"\x12" + _varint(n)


def _status_attr(status: int) -> bytes:
    got = _STATUS_ATTRS.get(status)
    if got is None:
        got = _STATUS_ATTRS[status] = attr_int("http.response.status_code", status)
    return got


def _name_kind(name: bytes, kind: int) -> bytes:
    """Span fields 5 (name) and 6 (kind), encoded."""
    return _ld(0x2A, name) + bytes((0x30, kind))


def _ids(state: bytes | None, parent_id: bytes | None) -> bytes:
    """Span fields 3 (trace state) and 4 (parent span id), encoded; empty for a root span."""
    out = _ld(0x1A, state) if state else b""
    if parent_id is not None:
        out += b'"\x08' + parent_id
    return out


def _span(
    trace_id: bytes, span_id: bytes, ids: bytes, name_kind: bytes, start_ns: int, end_ns: int, attrs: bytes
) -> bytes:
    """One span as ``ScopeSpans.spans`` (field 2): ``ids`` from ``_ids``, ``name_kind`` from
    ``_name_kind``, ``attrs`` the encoded attributes (and status). PERF: one format operation."""
    body = b"\n\x10%b\x12\x08%b%b%b%b%b" % (
        trace_id,
        span_id,
        ids,
        name_kind,
        _TIMES(0x39, start_ns, 0x41, end_ns if end_ns >= start_ns else start_ns),
        attrs,
    )
    return _ld(0x12, body)


def _times(start_ns: int, end_ns: int) -> bytes:
    """Span fields 7 and 8 (an end before the start is the start)."""
    return _TIMES(0x39, start_ns, 0x41, end_ns if end_ns >= start_ns else start_ns)


def encode_span(
    trace_id: bytes,
    span_id: bytes,
    parent_id: bytes | None,
    state: bytes | None,
    name: bytes,
    kind: int,
    start_ns: int,
    end_ns: int,
    attrs: bytes,
    error: bool = False,
) -> bytes:
    """One ``opentelemetry.proto.trace.v1.Span`` message (ids as raw bytes, times in ns)."""
    if error:
        attrs += _STATUS_ERROR
    return _span(trace_id, span_id, _ids(state, parent_id), _name_kind(name, kind), start_ns, end_ns, attrs)


def encode_request(resource_attrs: dict[str, str], scope_version: str, spans: list[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans`` (each already encoded as ScopeSpans.spans)."""
    resource = b"".join(_ld(0x0A, _kv_str(_key(k), v.encode())) for k, v in resource_attrs.items())
    scope = _ld(0x0A, _ld(0x0A, SCOPE_NAME.encode()) + _ld(0x12, scope_version.encode()))
    scope_spans = _ld(0x12, scope + b"".join(spans))
    return _ld(0x0A, _ld(0x0A, resource) + scope_spans)


def _server_span(
    head: bytes,
    span_id: bytes,
    ids: bytes,
    name_kind: bytes,
    times: bytes,
    fixed: bytes,
    url: bytes,
    status_attr: bytes,
    client: bytes,
    rid: bytes,
    error: bool,
) -> bytes:
    """The server span as ``ScopeSpans.spans``: ``head`` is fields 1 and 2's keys with the trace
    id, ``fixed`` the route's attributes, then ``url.path``, the status, ``client.address``,
    ``fastgw.request_id``, ``url.query`` when the URL has one, and the ERROR status.

    PERF: the same bytes as ``_span`` over the attributes ``_attr_bytes`` encodes, in one join:
    the attributes' key and length bytes come from tables by the value's length."""
    q = url.find(b"?")
    if q >= 0:
        path = url[:q]
        query = url[q + 1 :]
    else:
        path = url
        query = b""
    n = len(path)
    if n < 100:
        path_head = _PATH_HEADS[n]
    else:
        path_head = _attr_bytes(_K_PATH, path)
        path = b""
    n = len(rid)
    if n < 100:
        rid_head = _RID_HEADS[n]
    else:
        rid_head = _attr_bytes(_K_RID, rid)
        rid = b""
    query_head = b""
    if q >= 0:
        n = len(query)
        if n < 100:
            query_head = _QUERY_HEADS[n]
        else:
            query_head = _attr_bytes(_K_QUERY, query)
            query = b""
    tail = _STATUS_ERROR if error else b""
    n = (
        len(head)
        + len(span_id)
        + len(ids)
        + len(name_kind)
        + len(times)
        + len(fixed)
        + len(path_head)
        + len(path)
        + len(status_attr)
        + len(client)
        + len(rid_head)
        + len(rid)
        + len(query_head)
        + len(query)
        + len(tail)
    )
    return b"".join(
        [
            _span_head(n),
            head,
            span_id,
            ids,
            name_kind,
            times,
            fixed,
            path_head,
            path,
            status_attr,
            client,
            rid_head,
            rid,
            query_head,
            query,
            tail,
        ]
    )


def _child_span(
    head: bytes, span_id: bytes, under: bytes, name_kind: bytes, times: bytes, attrs: bytes
) -> bytes:
    """A child span as ``ScopeSpans.spans`` (``head`` and ``under`` as ``_server_span``'s head and
    ``_ids(None, parent)``): ``_span`` in one join."""
    n = len(head) + len(span_id) + len(under) + len(name_kind) + len(times) + len(attrs)
    return b"".join([_span_head(n), head, span_id, under, name_kind, times, attrs])


# ---------------------------------------------------------------------- per request
_INTEGRATION = _name_kind(b"integration", KIND_CLIENT)
_CACHE_HIT = attr_bool("fastgw.cache.hit", True)
_CACHE_MISS = attr_bool("fastgw.cache.hit", False)


class TraceContext:
    """One sampled request's trace: its ids, the client's trace state, the child spans so far."""

    __slots__ = ("children", "int_id", "parent_id", "replace", "span_id", "state", "trace_id")

    def __init__(self, trace_id: bytes, parent_id: bytes | None, state: bytes | None, replace: bool) -> None:
        self.trace_id = trace_id
        self.span_id = _rand(64).to_bytes(8, "big") or b"\x00" * 7 + b"\x01"
        self.parent_id = parent_id
        self.state = state
        #: The client sent trace headers: they are replaced in what goes upstream.
        self.replace = replace
        #: The integration span's id (the upstream's parent), made when first propagated.
        self.int_id: bytes | None = None
        self.children: list[tuple[bytes, bytes, int, float, float, bytes]] | None = None

    def child(self, name: bytes, kind: int, start: float, end: float, attrs: bytes = b"") -> None:
        """Record a finished child span (loop times); encoded with the server span."""
        span = (_rand(64).to_bytes(8, "big"), name, kind, start, end, attrs)
        if self.children is None:
            self.children = [span]
        else:
            self.children.append(span)

    def cache_lookup(self, start: float, end: float, hit: bool) -> None:
        self.child(b"cache", KIND_INTERNAL, start, end, _CACHE_HIT if hit else _CACHE_MISS)

    def authorizer(self, start: float, end: float, kind: str, allowed: bool) -> None:
        attrs = attr_str("fastgw.authorizer.type", kind) + attr_bool("fastgw.authorizer.allowed", allowed)
        self.child(b"authorizer", KIND_INTERNAL, start, end, attrs)

    def integration_id(self) -> bytes:
        int_id = self.int_id
        if int_id is None:
            int_id = self.int_id = _rand(64).to_bytes(8, "big")
        return int_id

    def header_lines(self) -> bytes:
        """The ``traceparent`` (and ``tracestate``) header lines for the upstream request."""
        line = b"traceparent: 00-%s-%s-01\r\n" % (_hexlify(self.trace_id), _hexlify(self.integration_id()))
        if self.state:
            line += b"tracestate: %s\r\n" % self.state
        return line

    def inject(self, parts: list[bytes]) -> None:
        """Replace the client's trace headers in the raw header lines ``parts`` by ours."""
        if self.replace:
            for i, part in enumerate(parts):
                if b"\ntrace" in b"\n" + part.lower():
                    parts[i] = b"".join(
                        line
                        for line in part.splitlines(keepends=True)
                        if not line[:12].lower().startswith((b"traceparent:", b"tracestate:"))
                    )
        parts.append(self.header_lines())

    def inject_pairs(self, headers: list[tuple[str, str]]) -> None:
        """The same for a (name, value) header list (the pipeline's Request)."""
        if self.replace:
            headers[:] = [h for h in headers if h[0].lower() not in ("traceparent", "tracestate")]
        headers.append(("traceparent", f"00-{self.trace_id.hex()}-{self.integration_id().hex()}-01"))
        if self.state:
            headers.append(("tracestate", self.state.decode("latin-1")))


# ---------------------------------------------------------------------- settings
class TraceSettings:
    """Resolved tracing settings (config first, then the ``OTEL_*`` variables)."""

    __slots__ = (
        "batch",
        "delay",
        "endpoint",
        "headers",
        "max_queue",
        "ratio",
        "resource",
        "sampler",
        "timeout",
    )

    def __init__(
        self,
        sampler: str,
        ratio: float = 1.0,
        endpoint: str | None = None,
        headers: dict[str, str] | None = None,
        max_queue: int = 2048,
        batch: int = 512,
        delay: float = 5.0,
        timeout: float = 10.0,
        resource: dict[str, str] | None = None,
    ) -> None:
        self.sampler = sampler
        self.ratio = ratio
        self.endpoint = endpoint
        self.headers = headers or {}
        self.max_queue = max_queue
        self.batch = batch
        self.delay = delay
        self.timeout = timeout
        self.resource = resource or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceSettings) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value > 0:
        return value
    log.warning("invalid value ignored, expected a positive integer", extra={"variable": name})
    return None


def resolve(gateway: Any, environ: Mapping[str, str] | None = None) -> TraceSettings | None:
    """The tracing settings of ``gateway`` (``GatewaySettings``) completed from the environment,
    or None when tracing is off (no sampler anywhere, or ``OTEL_SDK_DISABLED=true``)."""
    from fastgw import __version__
    from fastgw.telemetry.otel import DEFAULT_SERVICE_NAME, parse_pairs

    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    cfg = gateway.tracing
    sampler = cfg.sampler or env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or None
    if sampler is None:
        return None
    if sampler not in SAMPLERS:
        log.warning("unknown OTEL_TRACES_SAMPLER ignored; tracing is off", extra={"sampler": sampler})
        return None
    ratio = cfg.ratio
    if ratio is None:
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            ratio = float(raw) if raw else 1.0
        except ValueError:
            ratio = 1.0
        ratio = min(max(ratio, 0.0), 1.0)
    otlp = gateway.otlp
    endpoint = cfg.endpoint
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    exporting = not exporters or "otlp" in {e.strip() for e in exporters.split(",")}
    if endpoint is None and exporting:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or None
        base = otlp.endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if endpoint is None and base:
            endpoint = base.rstrip("/") + TRACES_PATH
    if not exporting and cfg.endpoint is None:
        endpoint = None
    headers: dict[str, str] = {}
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        headers.update({k.lower(): v for k, v in parse_pairs(env.get(name, ""), name).items()})
    headers.update({k.lower(): v for k, v in otlp.headers.items()})
    timeout = cfg.export_timeout_ms
    if timeout is None:
        timeout = _env_int(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or _env_int(
            env, "OTEL_EXPORTER_OTLP_TIMEOUT"
        )
    resource = parse_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES")
    resource.update(otlp.resource_attributes)
    resource["service.name"] = (
        otlp.service_name
        or env.get("OTEL_SERVICE_NAME", "").strip()
        or resource.get("service.name")
        or DEFAULT_SERVICE_NAME
    )
    resource.setdefault("service.version", __version__)
    resource.setdefault("host.name", socket.gethostname())
    return TraceSettings(
        sampler,
        ratio,
        endpoint,
        headers,
        cfg.max_queue_size or _env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE") or 2048,
        cfg.max_export_batch_size or _env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512,
        (cfg.schedule_delay_ms or _env_int(env, "OTEL_BSP_SCHEDULE_DELAY") or 5000) / 1000.0,
        (timeout or 10000) / 1000.0,
        resource,
    )


# ---------------------------------------------------------------------- the worker's tracer
class Tracer:
    """A worker's sampler, span encoder and export queue (only its event loop calls ``begin``
    and ``finish``; the export thread only takes from the queue)."""

    def __init__(self, settings: TraceSettings, loop_time: Any = time.monotonic) -> None:
        self.settings = settings
        sampler = settings.sampler
        self.parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        #: Root decisions: trace ids whose low 64 bits are under the bound are sampled.
        self.bound = {"always_on": 1 << 64, "always_off": 0}.get(root, int(settings.ratio * (1 << 64)))
        self.exporting = settings.endpoint is not None
        self.loop_time = loop_time
        self.offset = time.time() - loop_time()
        self.queue: collections.deque[bytes] = collections.deque()
        self.max_queue = settings.max_queue
        self.batch = settings.batch
        #: By route (None: no route matched), then by method: ``_route_name``.
        self._names: dict[object, dict[str, tuple[bytes, bytes, bytes]]] = {}
        self._clients: dict[str, bytes] = {}  # client.address attributes by peer address
        self._wake = threading.Event()
        self._kicked = False  # the export thread was woken for a full batch and has not run yet
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- the hot path
    def begin(self, fwd: list[bytes]) -> TraceContext | None:
        """The trace of a request whose raw header lines are ``fwd``, or None when unsampled."""
        tp = None
        values = header_values(fwd, b"traceparent")
        seen = bool(values)
        if seen:
            tp = parse_traceparent(values[0])
        if tp is not None:
            trace_id, parent, flags = tp
            if self.parent_based:
                if not flags & 1:
                    return None
            elif int.from_bytes(trace_id[8:], "big") >= self.bound:
                return None
            states = header_values(fwd, b"tracestate")
            state = b",".join(states) if states else None
            if state is not None and (len(state) > _MAX_TRACESTATE or not state):
                state = None
            return TraceContext(trace_id, parent, state, True)
        bound = self.bound
        if not bound:
            return None
        low = _rand(64)
        if low >= bound:
            return None
        return TraceContext(((_rand(64) << 64) | low).to_bytes(16, "big"), None, None, seen)

    def _route_name(self, route: Any, method: str) -> tuple[bytes, bytes, bytes]:
        """The server span's encoded name and kind, its fixed attributes, and the integration
        span's attributes, for ``method`` on ``route`` (an ``ANY`` route serves several)."""
        by_method = self._names.get(route)
        if by_method is None:
            if len(self._names) > 4096:
                self._names.clear()
            by_method = self._names[route] = {}
        got = by_method.get(method)
        if got is None:
            integration = b""
            if route is None:
                name = method.encode()
                attrs = attr_str("http.request.method", method)
            else:
                pipe = route.pipeline
                kind = pipe.integration_name.split()[0] if pipe is not None else "HTTP_PROXY"
                integration = attr_str("fastgw.integration", kind)
                template = route.template or ("$default" if route.method == "$default" else route.key)
                name = (f"{method} {template}" if route.method != "$default" else template).encode()
                attrs = (
                    attr_str("http.request.method", method)
                    + attr_str("http.route", template)
                    + attr_str("fastgw.api_id", route.api.id)
                    + attr_str("fastgw.stage", route.stage.name)
                )
            if len(by_method) > 64:
                by_method.clear()
            got = by_method[method] = (_name_kind(name, KIND_SERVER), attrs, integration)
        return got

    def finish(self, ex: Any, route: Any, status: int, now: float) -> None:
        """Encode the finished request's spans and queue them for export."""
        trace: TraceContext = ex.trace
        ex.trace = None
        if not self.exporting:
            return
        queue = self.queue
        children = trace.children
        t_int = ex.t_int
        n = 1 + (len(children) if children else 0) + (1 if t_int else 0)
        if len(queue) + n > self.max_queue:
            COUNTERS["trace_spans_dropped"] += n
            return
        offset = self.offset
        name_kind, attrs, int_attrs = self._route_name(route, ex.method)
        peer = ex.proto.peer
        client = self._clients.get(peer)
        if client is None:
            if len(self._clients) > 4096:
                self._clients.clear()
            client = self._clients[peer] = _attr_bytes(_K_CLIENT, peer.encode())
        trace_id = trace.trace_id
        span_id = trace.span_id
        head = b"\n\x10" + trace_id + b"\x12\x08"
        start_ns = int((ex.t0 + offset) * 1e9)
        queue.append(
            _server_span(
                head,
                span_id,
                _ids(trace.state, trace.parent_id),
                name_kind,
                _times(start_ns, int((now + offset) * 1e9)),
                attrs,
                ex.url,
                _status_attr(status),
                client,
                ex.request_id,
                status >= 500,
            )
        )
        under = b'"\x08' + span_id  # the parent field of the children (_ids(None, span_id))
        if t_int:
            int_ms = ex.int_ms
            end = t_int + int_ms / 1000.0 if int_ms >= 0.0 else now
            up = ex.up_status
            if up:
                int_attrs = _status_attr(up) + int_attrs
            if up >= 500 or int_ms < 0.0:
                int_attrs += _STATUS_ERROR
            queue.append(
                _child_span(
                    head,
                    trace.integration_id(),
                    under,
                    _INTEGRATION,
                    _times(int((t_int + offset) * 1e9), int((end + offset) * 1e9)),
                    int_attrs,
                )
            )
        if children:
            for cid, cname, kind, start, end, cattrs in children:
                queue.append(
                    _child_span(
                        head,
                        cid,
                        under,
                        _name_kind(cname, kind),
                        _times(int((start + offset) * 1e9), int((end + offset) * 1e9)),
                        cattrs,
                    )
                )
        if len(queue) >= self.batch and not self._kicked:
            self._kicked = True
            self._wake.set()

    # -- housekeeping (the worker's ticker)
    def tick(self) -> None:
        """Re-anchor loop times to the wall clock (NTP steps)."""
        self.offset = time.time() - self.loop_time()

    # -- export
    def start(self) -> None:
        if self.exporting and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fastgw-trace-export", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Export what is queued (bounded by ``timeout``), then end the thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def export_body(self) -> tuple[bytes, int]:
        """Up to one batch of queued spans, taken off the queue, as the body of one export
        request, and how many spans it holds (the export thread's work per request)."""
        from fastgw import __version__

        spans: list[bytes] = []
        queue = self.queue
        try:
            for _ in range(self.batch):
                spans.append(queue.popleft())
        except IndexError:
            pass
        return encode_request(self.settings.resource, __version__, spans), len(spans)

    def _run(self) -> None:
        settings = self.settings

        parts = urlsplit(settings.endpoint or "")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        path = parts.path or TRACES_PATH
        if parts.query:
            path += "?" + parts.query
        headers = {"Content-Type": "application/x-protobuf", **settings.headers}
        conn: http.client.HTTPConnection | None = None
        while True:
            self._wake.wait(settings.delay)
            self._wake.clear()
            self._kicked = False
            stopping = self._stop
            while self.queue:
                body, n = self.export_body()
                try:
                    if conn is None:
                        if secure:
                            conn = http.client.HTTPSConnection(
                                parts.hostname or "",
                                port,
                                timeout=settings.timeout,
                                context=ssl.create_default_context(),
                            )
                        else:
                            conn = http.client.HTTPConnection(
                                parts.hostname or "", port, timeout=settings.timeout
                            )
                    conn.request("POST", path, body, headers)
                    resp = conn.getresponse()
                    resp.read()
                    ok = 200 <= resp.status < 300
                    if resp.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as ex:
                    ok = False
                    if conn is not None:
                        conn.close()
                        conn = None
                    log.warning("trace export failed", extra={"error": str(ex)})
                if ok:
                    COUNTERS["trace_spans_exported"] += n
                else:
                    COUNTERS["trace_exports_failed"] += 1
                    COUNTERS["trace_spans_dropped"] += n
                if n < self.batch and not stopping:
                    break
            if stopping:
                if conn is not None:
                    conn.close()
                return

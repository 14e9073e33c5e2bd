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
official ``opentelemetry-proto`` classes) and a thread per worker posts them in batches to the
collector's ``/v1/traces`` (OTLP/HTTP, ``application/x-protobuf``), as the SDK's
``BatchSpanProcessor`` and ``OTLPSpanExporter`` would. The queue is bounded
(``OTEL_BSP_MAX_QUEUE_SIZE``): when it is full spans are dropped and counted, never waited for.

PERF: the export batch is built on the event loop, in place, once. ``Tracer.finish`` appends the
request's spans to the open chunk, a bytearray that already is the export body's spans field
(compiled: written with ``memcpy`` and varints by the C writers of ``_tracing_c.pxd``, into room
reserved ahead; the Python build joins the same bytes). A chunk is sealed when it holds a batch
(``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``: never more, but one request's spans stay together), when its
first span is older than the schedule delay (checked by ``finish`` and by the worker's ticker,
every second: an idle worker's last spans leave up to a second after the delay), or when the
tracer stops. The export thread posts the body's head (``export_head``, ~100 bytes) and the sealed
chunk as they are: no object and no queue entry per span, no join, no copy. Ids are slices of a
pool of random bytes, the upstream's ``traceparent`` line is written in place, and ``begin`` looks
for a ``traceparent`` with a C scan of the header lines before any Python lookup. Measured with
``bench.telemetry_pipeline`` (``--tracing``, ``--export``).
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

#: This source runs as ``_tracing_c`` (compiled, where the C branches below apply) or as
#: ``_tracing_py`` (plain Python, where no ``cython`` module may be installed at run time).
_COMPILED = __name__.endswith("_tracing_c") and not __file__.endswith(".py")  # not the build copy

_VALUE = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\r\n]*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_NO_TRACE_ID = b"\x00" * 16
_LOW_MAX = (1 << 64) - 1  # a bound above it samples every trace id
_MAX_TRACESTATE = 512  # W3C: up to 32 list members; longer values are dropped, not forwarded

#: This process's span counts (all its tracers, across reloads), for the node's metrics.
COUNTERS: dict[str, int] = {"trace_spans_exported": 0, "trace_spans_dropped": 0, "trace_exports_failed": 0}

_rand = random.getrandbits  # NOTE: reseeded in each forked worker by the random module
_hexlify = binascii.hexlify


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
#: ``http.response.status_code`` attributes by status (100-599), then others by status.
_STATUS_TABLE: list[bytes | None] = [None] * 600
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
    if 0 <= status < 600:
        got = _STATUS_TABLE[status]  # PERF: a list, not a dict, for the statuses HTTP has
        if got is None:
            got = _STATUS_TABLE[status] = attr_int("http.response.status_code", status)
        return got
    got = _STATUS_ATTRS.get(status)
    if got is None:
        if len(_STATUS_ATTRS) > 64:
            _STATUS_ATTRS.clear()
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


def _resource(resource_attrs: dict[str, str]) -> bytes:
    """``Resource.attributes``, encoded."""
    return b"".join(_ld(0x0A, _kv_str(_key(k), v.encode())) for k, v in resource_attrs.items())


def _scope(scope_version: str) -> bytes:
    """``ScopeSpans.scope`` (field 1), encoded."""
    return _ld(0x0A, _ld(0x0A, SCOPE_NAME.encode()) + _ld(0x12, scope_version.encode()))


def _request_head(resource_field: bytes, scope_field: bytes, spans_len: int) -> bytes:
    """``encode_request``'s bytes before its spans, for ``spans_len`` bytes of spans:
    ``resource_field`` is ``_ld(0x0A, _resource(...))``, ``scope_field`` is ``_scope(...)``."""
    scope_spans = len(scope_field) + spans_len
    resource_spans = len(resource_field) + 1 + len(_varint(scope_spans)) + scope_spans
    return b"\n" + _varint(resource_spans) + resource_field + b"\x12" + _varint(scope_spans) + scope_field


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
_CACHE = _name_kind(b"cache", KIND_INTERNAL)
_AUTHORIZER = _name_kind(b"authorizer", KIND_INTERNAL)
_CACHE_HIT = attr_bool("fastgw.cache.hit", True)
_CACHE_MISS = attr_bool("fastgw.cache.hit", False)
_AUTHORIZER_ATTRS: dict[tuple[str, bool], bytes] = {}

#: Random bytes drawn at once for ids (``_random_id``).
_POOL_BYTES = 4096
_pool = b""
_pool_at = 0
_ZERO_ID = b"\x00" * 8


def _random_id(n: int) -> bytes:
    """``n`` random bytes (an id). PERF: sliced from a pool that one ``getrandbits`` refills every
    ``_POOL_BYTES`` bytes, instead of one ``getrandbits`` and one ``to_bytes`` per id."""
    global _pool, _pool_at
    at = _pool_at
    if at + n > len(_pool):
        _pool = _rand(_POOL_BYTES * 8).to_bytes(_POOL_BYTES, "little")
        at = 0
    _pool_at = at + n
    if _COMPILED:
        return _bytes_at(_pool, at, n)  # noqa: F821
    return _pool[at : at + n]


def _span_id() -> bytes:
    """A new span id (never all zeros, which W3C and OTLP reserve for "none")."""
    got = _random_id(8)
    if got == _ZERO_ID:
        return b"\x00" * 7 + b"\x01"
    return got


def _forget_pool() -> None:
    """A forked child draws its own ids (the random module reseeds it; the pool must follow)."""
    global _pool, _pool_at
    _pool = b""
    _pool_at = 0


os.register_at_fork(after_in_child=_forget_pool)


class TraceContext:
    """One sampled request's trace: its ids, the client's trace state, the child spans so far."""

    __slots__ = ("children", "int_id", "parent_id", "replace", "span_id", "state", "trace_id")

    def __init__(self, trace_id: bytes, parent_id: bytes | None, state: bytes | None, replace: bool) -> None:
        self.trace_id = trace_id
        self.span_id = _span_id()
        self.parent_id = parent_id
        self.state = state
        #: The client sent trace headers: they are replaced in what goes upstream.
        self.replace = replace
        #: The integration span's id (the upstream's parent), made when first propagated.
        self.int_id: bytes | None = None
        #: Finished child spans: (span id, encoded name and kind, start, end, encoded attributes).
        self.children: list[tuple[bytes, bytes, float, float, bytes]] | None = None

    def child(self, name: bytes, kind: int, start: float, end: float, attrs: bytes = b"") -> None:
        """Record a finished child span (loop times); encoded with the server span."""
        self._child(_name_kind(name, kind), start, end, attrs)

    def _child(self, name_kind: bytes, start: float, end: float, attrs: bytes) -> None:
        span = (_span_id(), name_kind, start, end, attrs)
        if self.children is None:
            self.children = [span]
        else:
            self.children.append(span)

    def cache_lookup(self, start: float, end: float, hit: bool) -> None:
        self._child(_CACHE, start, end, _CACHE_HIT if hit else _CACHE_MISS)

    def authorizer(self, start: float, end: float, kind: str, allowed: bool) -> None:
        attrs = _AUTHORIZER_ATTRS.get((kind, allowed))
        if attrs is None:
            attrs = attr_str("fastgw.authorizer.type", kind) + attr_bool("fastgw.authorizer.allowed", allowed)
            if len(_AUTHORIZER_ATTRS) < 64:
                _AUTHORIZER_ATTRS[kind, allowed] = attrs
        self._child(_AUTHORIZER, start, end, attrs)

    def integration_id(self) -> bytes:
        int_id = self.int_id
        if int_id is None:
            int_id = self.int_id = _span_id()
        return int_id

    def header_lines(self) -> bytes:
        """The ``traceparent`` (and ``tracestate``) header lines for the upstream request."""
        int_id = self.integration_id()
        state = self.state
        if _COMPILED:
            # PERF: one bytes object filled in place (no hexlify, no format).
            n = 22 + 2 * len(self.trace_id) + 2 * len(int_id)
            if state:
                n += 14 + len(state)
            line = _new_bytes(n)  # noqa: F821
            p = _bytes_ptr(line)  # noqa: F821
            p = _w_text(p, b"traceparent: 00-", 16)  # noqa: F821
            p = _w_hex(p, self.trace_id)  # noqa: F821
            p[0] = 45  # "-"
            p = _w_hex(p + 1, int_id)  # noqa: F821
            p = _w_text(p, b"-01\r\n", 5)  # noqa: F821
            if state:
                p = _w_text(p, b"tracestate: ", 12)  # noqa: F821
                p = _w_bytes(p, state)  # noqa: F821
                _w_text(p, b"\r\n", 2)  # noqa: F821
            return line
        line = b"traceparent: 00-%s-%s-01\r\n" % (_hexlify(self.trace_id), _hexlify(int_id))
        if state:
            line += b"tracestate: %s\r\n" % state
        return line

    def inject(self, parts: list[bytes]) -> None:
        """Replace the client's trace headers in the raw header lines ``parts`` by ours."""
        if self.replace:
            for i, part in enumerate(parts):
                if b"\ntrace" in b"\n" + part.lower():
                    kept = []  # (a loop, not a generator: compiled, this method is cpdef)
                    for line in part.splitlines(keepends=True):
                        if not line[:12].lower().startswith((b"traceparent:", b"tracestate:")):
                            kept.append(line)
                    parts[i] = b"".join(kept)
        parts.append(self.header_lines())

    def inject_pairs(self, headers: list[tuple[str, str]]) -> None:
        """The same for a (name, value) header list (the pipeline's Request)."""
        if self.replace:
            headers[:] = [h for h in headers if h[0].lower() not in ("traceparent", "tracestate")]
        headers.append(("traceparent", f"00-{self.trace_id.hex()}-{self.integration_id().hex()}-01"))
        if self.state:
            headers.append(("tracestate", self.state.decode("latin-1")))


def _context(trace_id: bytes, parent_id: bytes | None, state: bytes | None, replace: bool) -> TraceContext:
    """``TraceContext(...)`` for the hot path: PERF no argument parsing, and a free list compiled."""
    ctx = TraceContext.__new__(TraceContext)
    ctx.trace_id = trace_id
    ctx.span_id = _span_id()
    ctx.parent_id = parent_id
    ctx.state = state
    ctx.replace = replace
    ctx.int_id = None
    ctx.children = None
    return ctx


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
_UNSET = object()


class Tracer:
    """A worker's sampler, span encoder and export queue.

    Only the worker's event loop calls ``begin``, ``finish``, ``flush``, ``tick`` and ``stop``: it
    encodes each finished request's spans at the end of the open chunk (``chunk``, ``pending``
    spans) and seals the chunk (``flush``) when it holds a batch, when its first span is older than
    the schedule delay, or when the tracer stops. Sealed chunks wait in ``sealed`` for the export
    thread, which only takes them (``next_export``). Each counter has one writer (``sealed_spans``
    the loop, ``taken_spans`` the thread), so neither build needs a lock."""

    def __init__(self, settings: TraceSettings, loop_time: Any = time.monotonic) -> None:
        from fastgw import __version__

        self.settings = settings
        sampler = settings.sampler
        self.parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        #: Root decisions: trace ids whose low 64 bits are under the bound are sampled.
        self.bound = {"always_on": 1 << 64, "always_off": 0}.get(root, int(settings.ratio * (1 << 64)))
        self.exporting = settings.endpoint is not None
        self.loop_time = loop_time
        self.offset = time.time() - loop_time()
        self.max_queue = settings.max_queue
        self.batch = max(settings.batch, 1)
        self.delay = settings.delay
        #: The open chunk: ``used`` bytes of encoded spans (ScopeSpans.spans fields), ``pending``
        #: spans, the first one finished at ``chunk_t0`` (loop time). Compiled, the bytearray is
        #: allocated ahead (``cap_hint``: the last sealed chunk's size) and filled in place.
        self.chunk = bytearray()
        self.used = 0
        self.pending = 0
        self.chunk_t0 = 0.0
        self.cap_hint = 4096
        #: Sealed chunks, (bytearray, spans), oldest first, for the export thread.
        self.sealed: collections.deque[tuple[bytearray, int]] = collections.deque()
        self.sealed_spans = 0  # spans ever sealed (written by the loop only)
        self.taken_spans = 0  # spans ever taken by the export thread (written by it only)
        #: ``ResourceSpans.resource`` and ``ScopeSpans.scope``, encoded (``export_head``).
        self._resource_field = _ld(0x0A, _resource(settings.resource))
        self._scope_field = _scope(__version__)
        #: By route (None: no route matched), then by method: ``_route_name``.
        self._names: dict[object, dict[str, tuple[bytes, bytes, bytes]]] = {}
        self._clients: dict[str, bytes] = {}  # client.address attributes by peer address
        #: The last lookups of ``_route_name`` and ``_client_attr`` (compared by identity).
        self._last_route: Any = _UNSET
        self._last_method: Any = _UNSET
        self._last_names = (b"", b"", b"")
        self._last_peer: Any = _UNSET
        self._last_client = b""
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Spans waiting for the export thread (the open chunk's and the sealed ones)."""
        return self.pending + self.sealed_spans - self.taken_spans

    # -- the hot path
    def begin(self, fwd: list[bytes]) -> TraceContext | None:
        """The trace of a request whose raw header lines are ``fwd``, or None when unsampled."""
        if _COMPILED:
            # PERF: most requests carry no traceparent; a C scan of the lines says so.
            seen = _may_name(fwd, b"traceparent:")  # noqa: F821
        else:
            seen = True
        tp = None
        if seen:
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
            return _context(trace_id, parent, state, True)
        bound = self.bound
        if not bound:
            return None
        trace_id = _random_id(16)
        if bound <= _LOW_MAX and int.from_bytes(trace_id[8:], "big") >= bound:
            return None
        if trace_id == _NO_TRACE_ID:
            trace_id = _NO_TRACE_ID[:15] + b"\x01"  # 2**-128: W3C reserves it for "none"
        return _context(trace_id, None, None, seen)

    def _route_name(self, route: Any, method: str) -> tuple[bytes, bytes, bytes]:
        """The server span's encoded name and kind, its fixed attributes, and the integration
        span's attributes, for ``method`` on ``route`` (an ``ANY`` route serves several)."""
        if route is self._last_route and method is self._last_method:
            return self._last_names  # PERF: the same route as the previous request
        got = self._names_of(route, method)
        self._last_route = route
        self._last_method = method
        self._last_names = got
        return got

    def _names_of(self, route: Any, method: str) -> tuple[bytes, bytes, bytes]:
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

    def _client_attr(self, peer: str) -> bytes:
        """The ``client.address`` attribute of ``peer``."""
        if peer is self._last_peer:
            return self._last_client  # PERF: a keep-alive connection's next request
        got = self._clients.get(peer)
        if got is None:
            if len(self._clients) > 4096:
                self._clients.clear()
            got = self._clients[peer] = _attr_bytes(_K_CLIENT, (peer or "").encode())
        self._last_peer = peer
        self._last_client = got
        return got

    def finish(self, ex: Any, route: Any, status: int, now: float) -> None:
        """Encode the finished request's spans (``ex``: the exchange, its trace then cleared) at
        the end of the open chunk."""
        trace: TraceContext = ex.trace
        ex.trace = None
        if trace is None or not self.exporting:
            return
        self.record(
            trace,
            route,
            status,
            now,
            ex.method,
            ex.url,
            ex.t0,
            ex.t_int,
            ex.int_ms,
            ex.up_status,
            ex.request_id,
            ex.proto.peer,
        )

    def record(
        self,
        trace: TraceContext,
        route: Any,
        status: int,
        now: float,
        method: str,
        url: bytes | None,
        t0: float,
        t_int: float,
        int_ms: float,
        up_status: int,
        rid: bytes | None,
        peer: str,
    ) -> None:
        """``finish`` with the exchange's values given (``t_int`` 0.0: no integration; ``int_ms``
        negative: no answer). PERF: compiled, a caller that cimports ``Tracer`` reads no attribute
        and boxes no number."""
        if trace is None or not self.exporting:
            return
        children = trace.children
        n = 1 + (len(children) if children is not None else 0) + (1 if t_int else 0)
        pending = self.pending
        if pending + self.sealed_spans - self.taken_spans + n > self.max_queue:
            COUNTERS["trace_spans_dropped"] += n
            return
        if pending and pending + n > self.batch:
            self.flush()  # a batch never holds more than max_export_batch_size spans
        if not self.pending:
            self.chunk_t0 = now
        offset = self.offset
        name_kind, fixed, int_attrs = self._route_name(route, method)
        client = self._client_attr(peer)
        trace_id = trace.trace_id
        span_id = trace.span_id
        if url is None:
            url = b""
        if rid is None:
            rid = b""
        start_ns = int((t0 + offset) * 1e9)
        end_ns = int((now + offset) * 1e9)
        if _COMPILED:
            self._put_server(
                trace_id,
                span_id,
                trace.state,
                trace.parent_id,
                name_kind,
                start_ns,
                end_ns,
                fixed,
                url,
                _status_attr(status),
                client,
                rid,
                status >= 500,
            )
        else:
            head = b"\n\x10" + trace_id + b"\x12\x08"
            self.chunk += _server_span(
                head,
                span_id,
                _ids(trace.state, trace.parent_id),
                name_kind,
                _times(start_ns, end_ns),
                fixed,
                url,
                _status_attr(status),
                client,
                rid,
                status >= 500,
            )
        if t_int:
            end = t_int + int_ms / 1000.0 if int_ms >= 0.0 else now
            up_attr = _status_attr(up_status) if up_status else b""
            tail = _STATUS_ERROR if up_status >= 500 or int_ms < 0.0 else b""
            int_id = trace.integration_id()
            start_ns = int((t_int + offset) * 1e9)
            end_ns = int((end + offset) * 1e9)
            if _COMPILED:
                self._put_child(
                    trace_id, int_id, span_id, _INTEGRATION, start_ns, end_ns, up_attr, int_attrs, tail
                )
            else:
                self.chunk += _child_span(
                    b"\n\x10" + trace_id + b"\x12\x08",
                    int_id,
                    b'"\x08' + span_id,  # the parent field of the children (_ids(None, span_id))
                    _INTEGRATION,
                    _times(start_ns, end_ns),
                    up_attr + int_attrs + tail,
                )
        if children is not None:
            for cid, cname_kind, start, end, cattrs in children:
                start_ns = int((start + offset) * 1e9)
                end_ns = int((end + offset) * 1e9)
                if _COMPILED:
                    self._put_child(trace_id, cid, span_id, cname_kind, start_ns, end_ns, cattrs, b"", b"")
                else:
                    self.chunk += _child_span(
                        b"\n\x10" + trace_id + b"\x12\x08",
                        cid,
                        b'"\x08' + span_id,
                        cname_kind,
                        _times(start_ns, end_ns),
                        cattrs,
                    )
        if not _COMPILED:
            self.used = len(self.chunk)
        self.pending += n
        if self.pending >= self.batch or now - self.chunk_t0 >= self.delay:
            self.flush()

    # -- compiled writers (the Python build joins the same bytes with _server_span / _child_span)
    def _reserve(self, n: int) -> Any:
        """Where to write ``n`` more bytes of the open chunk (compiled only): the bytearray grows
        by doubling, the bytes past ``used`` are free."""
        chunk = self.chunk
        at = self.used
        need = at + n
        size = PyByteArray_GET_SIZE(chunk)  # noqa: F821
        if need > size:
            PyByteArray_Resize(chunk, max(need, 2 * size, self.cap_hint))  # noqa: F821
        self.used = need
        return _bytearray_ptr(chunk) + at  # noqa: F821

    def _put_server(
        self,
        trace_id: bytes,
        span_id: bytes,
        state: bytes | None,
        parent_id: bytes | None,
        name_kind: bytes,
        start_ns: int,
        end_ns: int,
        fixed: bytes,
        url: bytes,
        status_attr: bytes,
        client: bytes,
        rid: bytes,
        error: bool,
    ) -> None:
        """``_server_span``'s bytes written into the open chunk (compiled only)."""
        u = _bytes_ptr(url)  # noqa: F821
        plen = len(url)
        q = _find_byte(u, plen, 63)  # noqa: F821  ("?")
        qlen = 0
        if q >= 0:
            qlen = plen - q - 1
            plen = q
        rlen = len(rid)
        body = (
            4
            + len(trace_id)
            + len(span_id)
            + len(name_kind)
            + 18
            + len(fixed)
            + _attr_len(len(_K_PATH), plen)  # noqa: F821
            + len(status_attr)
            + len(client)
            + _attr_len(len(_K_RID), rlen)  # noqa: F821
        )
        if q >= 0:
            body += _attr_len(len(_K_QUERY), qlen)  # noqa: F821
        if state is not None and len(state):
            body += 1 + _vlen(len(state)) + len(state)  # noqa: F821
        if parent_id is not None:
            body += 2 + len(parent_id)
        if error:
            body += len(_STATUS_ERROR)
        p = self._reserve(1 + _vlen(body) + body)  # noqa: F821
        p[0] = 0x12
        p = _w_varint(p + 1, body)  # noqa: F821
        p = _w_key_bytes(p, 0x0A, trace_id)  # noqa: F821
        p = _w_key_bytes(p, 0x12, span_id)  # noqa: F821
        if state is not None and len(state):
            p = _w_key_bytes(p, 0x1A, state)  # noqa: F821
        if parent_id is not None:
            p = _w_key_bytes(p, 0x22, parent_id)  # noqa: F821
        p = _w_bytes(p, name_kind)  # noqa: F821
        p = _w_times(p, start_ns, end_ns)  # noqa: F821
        p = _w_bytes(p, fixed)  # noqa: F821
        p = _w_attr(p, _K_PATH, u, plen)  # noqa: F821
        p = _w_bytes(p, status_attr)  # noqa: F821
        p = _w_bytes(p, client)  # noqa: F821
        p = _w_attr(p, _K_RID, _bytes_ptr(rid), rlen)  # noqa: F821
        if q >= 0:
            p = _w_attr(p, _K_QUERY, u + q + 1, qlen)  # noqa: F821
        if error:
            _w_bytes(p, _STATUS_ERROR)  # noqa: F821

    def _put_child(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes,
        name_kind: bytes,
        start_ns: int,
        end_ns: int,
        a1: bytes,
        a2: bytes,
        a3: bytes,
    ) -> None:
        """``_child_span``'s bytes, attributes ``a1 + a2 + a3``, written into the open chunk
        (compiled only)."""
        body = (
            6
            + len(trace_id)
            + len(span_id)
            + len(parent_id)
            + len(name_kind)
            + 18
            + len(a1)
            + len(a2)
            + len(a3)
        )
        p = self._reserve(1 + _vlen(body) + body)  # noqa: F821
        p[0] = 0x12
        p = _w_varint(p + 1, body)  # noqa: F821
        p = _w_key_bytes(p, 0x0A, trace_id)  # noqa: F821
        p = _w_key_bytes(p, 0x12, span_id)  # noqa: F821
        p = _w_key_bytes(p, 0x22, parent_id)  # noqa: F821
        p = _w_bytes(p, name_kind)  # noqa: F821
        p = _w_times(p, start_ns, end_ns)  # noqa: F821
        p = _w_bytes(p, a1)  # noqa: F821
        p = _w_bytes(p, a2)  # noqa: F821
        _w_bytes(p, a3)  # noqa: F821

    def flush(self) -> None:
        """Seal the open chunk: hand its spans to the export thread (the loop's thread only)."""
        n = self.pending
        if not n:
            return
        chunk = self.chunk
        if _COMPILED:
            PyByteArray_Resize(chunk, self.used)  # noqa: F821  (shrinks in place)
            self.cap_hint = self.used + (self.used >> 3) + 64
            self.chunk = _new_bytearray(0)  # noqa: F821
        else:
            self.chunk = bytearray()
        self.used = 0
        self.pending = 0
        self.sealed.append((chunk, n))
        self.sealed_spans += n
        self._wake.set()

    # -- housekeeping (the worker's ticker)
    def tick(self) -> None:
        """Re-anchor loop times to the wall clock (NTP steps); seal a chunk older than the delay."""
        now = self.loop_time()
        self.offset = time.time() - now
        if self.pending and now - self.chunk_t0 >= self.delay:
            self.flush()

    # -- export
    def start(self) -> None:
        if self.exporting and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fastgw-trace-export", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Export what is queued (bounded by ``timeout``), then end the thread."""
        self.flush()
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def export_head(self, spans_len: int) -> bytes:
        """The ``ExportTraceServiceRequest`` up to its spans, for ``spans_len`` bytes of them:
        the export body is this and a sealed chunk, sent as they are (no join, no copy)."""
        return _request_head(self._resource_field, self._scope_field, spans_len)

    def next_export(self) -> tuple[bytes, bytearray, int] | None:
        """The oldest sealed chunk, taken off the queue, as (head, spans, count): the export
        thread's work per request, minus the POST (``export_head``)."""
        try:
            chunk, n = self.sealed.popleft()
        except IndexError:
            return None
        self.taken_spans += n
        return self.export_head(len(chunk)), chunk, n

    def export_body(self) -> tuple[bytes, int]:
        """Seal the open chunk, then take the oldest sealed one as the body of one export
        request, and how many spans it holds (the loop's thread only; tests and tools)."""
        self.flush()
        got = self.next_export()
        if got is None:
            return self.export_head(0), 0
        head, chunk, n = got
        return head + bytes(chunk), n

    def _run(self) -> None:
        settings = self.settings

        parts = urlsplit(settings.endpoint or "")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        path = parts.path or TRACES_PATH
        if parts.query:
            path += "?" + parts.query
        headers = [("Content-Type", "application/x-protobuf"), *settings.headers.items()]
        skip_host = "host" in settings.headers
        skip_accept_encoding = "accept-encoding" in settings.headers
        conn: http.client.HTTPConnection | None = None
        while True:
            self._wake.wait(settings.delay)
            self._wake.clear()
            stopping = self._stop
            while True:
                got = self.next_export()
                if got is None:
                    break
                head, chunk, n = got
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
                    # PERF: the head and the chunk go out as they are (http.client's request()
                    # would need them joined into one body).
                    conn.putrequest("POST", path, skip_host, skip_accept_encoding)
                    for name, value in headers:
                        conn.putheader(name, value)
                    conn.putheader("Content-Length", str(len(head) + len(chunk)))
                    conn.endheaders(head)
                    conn.send(chunk)
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
            if stopping:
                if conn is not None:
                    conn.close()
                return

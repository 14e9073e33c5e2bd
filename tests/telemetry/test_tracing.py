"""Tracing end to end: W3C trace context in and out, spans exported over OTLP/HTTP.

A real gateway process exports to an in-process OTLP/HTTP receiver; the spans are decoded with
the official ``opentelemetry-proto`` classes, and what the upstream (the echo backend) and a
Lambda-style function received is read from their answers."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from typing import Any

import pytest
from helpers import ADMIN_TOKEN, HOST, Gateway, GatewayFactory, RawConn, closed_port, wait_for
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from fastgw.telemetry import tracing
from tests.telemetry.conftest import Collector

pytestmark = pytest.mark.timeout(90)

H = "tests.pipeline.handlers"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TP_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def config(echo_port: int, tracing_cfg: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "functions": {"echo": {"handler": f"{H}:echo"}, "authz": {"handler": f"{H}:token_authorizer"}},
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "authorizers": [
                    {
                        "name": "tok",
                        "type": "TOKEN",
                        "authorizerUri": "authz",
                        "identitySource": "method.request.header.Authorization",
                    }
                ],
                "routes": [
                    {
                        "route": "ANY /up/{proxy+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{echo_port}/{{proxy}}",
                        },
                    },
                    {"route": "GET /fn", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                    {
                        "route": "GET /private",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "tok",
                    },
                    {
                        "route": "GET /cached",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{echo_port}/c"},
                    },
                ],
                "stages": [
                    {
                        "name": "prod",
                        "cache": {"ttl_seconds": 60},
                        "route_cache": {
                            "ANY /up/{proxy+}": {"enabled": False},
                            "GET /fn": {"enabled": False},
                            "GET /private": {"enabled": False},
                        },
                    }
                ],
            }
        ],
    }
    if tracing_cfg is not None:
        cfg["gateway"] = {"tracing": tracing_cfg}
    return cfg


def upstream_headers(body: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def get(gw: Gateway, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    with RawConn(gw.port) as c:
        return c.request("GET", target, headers)


def scrape(gw: Gateway) -> str:
    req = urllib.request.Request(
        f"http://{HOST}:{gw.admin_port}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(resp.read().decode())


def counter(text: str, name: str) -> float:
    m = re.search(rf"^fastgw_{name}_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


# ---------------------------------------------------------------------- unit
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", True),
        (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00", True),
        (f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-01-future", True),  # later versions may add fields
        (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra", False),
        (f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01", False),
        (f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01", False),
        (f"00-{'0' * 32}-{CLIENT_SPAN}-01", False),
        (f"00-{CLIENT_TRACE}-{'0' * 16}-01", False),
        (f"00-{CLIENT_TRACE[:-1]}-{CLIENT_SPAN}-01", False),
        ("", False),
    ],
)
def test_traceparent_parsing_follows_w3c(value: str, ok: bool) -> None:
    got = tracing.parse_traceparent(value.encode())
    assert (got is not None) == ok
    if ok and got is not None:
        assert got[0].hex() == CLIENT_TRACE and got[1].hex() == CLIENT_SPAN


def test_encoded_spans_decode_with_the_official_proto() -> None:
    from opentelemetry.proto.trace.v1 import trace_pb2

    attrs_b = (
        tracing.attr_str("http.route", "/a/{b}") + tracing.attr_int("n", 300) + tracing.attr_bool("f", True)
    )
    raw = tracing.encode_span(
        bytes(range(16)),
        bytes(range(8)),
        b"\x09" * 8,
        b"k=v",
        b"GET /a/{b}",
        2,
        10**18,
        10**18 + 5,
        attrs_b,
        True,
    )
    body = tracing.encode_request({"service.name": "svc"}, "1.2.3", [raw, raw])
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    (rs,) = req.resource_spans
    assert rs.resource.attributes[0].key == "service.name"
    (ss,) = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("fastgw", "1.2.3")
    span = ss.spans[1]
    assert span.trace_id == bytes(range(16)) and span.span_id == bytes(range(8))
    assert span.parent_span_id == b"\x09" * 8 and span.trace_state == "k=v"
    assert span.name == "GET /a/{b}" and span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (10**18, 10**18 + 5)
    assert attrs(span) == {"http.route": "/a/{b}", "n": 300, "f": True}
    assert span.status.code == trace_pb2.Status.STATUS_CODE_ERROR


def test_samplers_decide_as_opentelemetry_does() -> None:
    sampled = f"traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n".encode()
    unsampled = f"Traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-00\r\n".encode()

    def tracer(sampler: str, ratio: float = 1.0) -> tracing.Tracer:
        return tracing.Tracer(tracing.TraceSettings(sampler, ratio))

    pb_off = tracer("parentbased_always_off")
    assert pb_off.begin([b"host: x\r\n"]) is None
    ctx = pb_off.begin([b"a: b\r\n" + sampled])
    assert ctx is not None and ctx.trace_id.hex() == CLIENT_TRACE and ctx.parent_id is not None
    assert pb_off.begin([unsampled]) is None
    pb_on = tracer("parentbased_always_on")
    assert pb_on.begin([unsampled]) is None
    root = pb_on.begin([])
    assert root is not None and root.parent_id is None and len(root.trace_id) == 16
    assert tracer("always_off").begin([sampled]) is None
    assert tracer("always_on").begin([unsampled]) is not None  # not parent-based: its own decision
    half = tracer("traceidratio", 0.5)
    n = sum(half.begin([]) is not None for _ in range(4000))
    assert 1700 < n < 2300
    assert all(tracer("traceidratio", 0.0).begin([]) is None for _ in range(100))


# ---------------------------------------------------------------------- end to end
def test_spans_and_trace_context_reach_the_collector_and_the_upstream(
    gateway_factory: GatewayFactory, echo_server: Any, collector: Collector, kernel_build: str
) -> None:
    gw = gateway_factory(
        config(
            echo_server.port,
            {"sampler": "parentbased_always_on", "endpoint": collector.url, "schedule_delay_ms": 100},
        ),
        no_extensions=kernel_build == "python",
    )
    # 1. The client's trace continues: same trace id, the gateway's spans under the client's.
    resp = get(
        gw,
        "/prod/up/a?x=1",
        [
            ("traceparent", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            ("tracestate", "vendor=abc"),
        ],
    )
    assert resp.status == 200
    up = upstream_headers(resp.body)
    assert len(up["traceparent"]) == 1, "the client's traceparent is replaced, not repeated"
    m = TP_RE.fullmatch(up["traceparent"][0])
    assert m is not None and m.group(1) == CLIENT_TRACE and m.group(2) != CLIENT_SPAN
    assert up["tracestate"] == ["vendor=abc"]
    assert wait_for(lambda: len(collector.trace(CLIENT_TRACE)) >= 2, 5.0)
    spans = {s.name: s for s in collector.trace(CLIENT_TRACE)}
    server = spans["GET /up/{proxy+}"]
    integ = spans["integration"]
    assert server.parent_span_id.hex() == CLIENT_SPAN
    assert server.kind == 2 and integ.kind == 3
    assert integ.parent_span_id == server.span_id
    assert integ.span_id.hex() == m.group(2), "the upstream's parent is the integration span"
    assert server.trace_state == "vendor=abc"
    a = attrs(server)
    assert a["http.route"] == "/up/{proxy+}" and a["http.request.method"] == "GET"
    assert a["http.response.status_code"] == 200 and a["url.path"] == "/prod/up/a"
    assert a["url.query"] == "x=1" and a["client.address"] == "127.0.0.1"
    assert a["fastgw.api_id"] == "shop1" and a["fastgw.stage"] == "prod"
    assert a["fastgw.request_id"] == resp.header("x-amzn-RequestId")
    assert attrs(integ)["fastgw.integration"] == "HTTP_PROXY"
    assert server.start_time_unix_nano <= integ.start_time_unix_nano <= integ.end_time_unix_nano
    assert integ.end_time_unix_nano <= server.end_time_unix_nano
    assert abs(server.start_time_unix_nano / 1e9 - time.time()) < 30
    resource = next(r for r, s in collector.spans if s.trace_id.hex() == CLIENT_TRACE)
    assert resource["service.name"] == "fastgw"
    assert collector.content_types[0] == "application/x-protobuf"
    assert {name for name, _ in collector.scopes} == {"fastgw"}

    # 2. An unsampled parent under a parent-based sampler: no spans, headers forwarded as sent.
    other = "1" * 32
    resp = get(gw, "/prod/up/b", [("traceparent", f"00-{other}-{CLIENT_SPAN}-00")])
    assert upstream_headers(resp.body)["traceparent"] == [f"00-{other}-{CLIENT_SPAN}-00"]

    # 3. No traceparent: a new trace starts here and goes upstream.
    resp = get(gw, "/prod/up/c")
    m = TP_RE.fullmatch(upstream_headers(resp.body)["traceparent"][0])
    assert m is not None
    root_trace = m.group(1)
    assert wait_for(lambda: len(collector.trace(root_trace)) == 2, 5.0)
    root = next(s for s in collector.trace(root_trace) if s.kind == 2)
    assert root.parent_span_id == b""

    # 4. A Lambda-style function sees the trace context in its event and is a timed integration.
    resp = get(gw, "/prod/fn", [("traceparent", f"00-{'2' * 32}-{CLIENT_SPAN}-01")])
    event = json.loads(resp.body)["event"]
    tp = event["headers"]["traceparent"]
    assert tp.startswith(f"00-{'2' * 32}-") and event["multiValueHeaders"]["traceparent"] == [tp]
    assert wait_for(lambda: len(collector.trace("2" * 32)) == 2, 5.0)
    fn_integ = next(s for s in collector.trace("2" * 32) if s.name == "integration")
    assert fn_integ.span_id.hex() == tp.split("-")[2]
    assert attrs(fn_integ)["fastgw.integration"] == "AWS_PROXY"

    # 5. Authorizer and cache spans are children of the server span.
    get(
        gw, "/prod/private", [("traceparent", f"00-{'3' * 32}-{CLIENT_SPAN}-01"), ("authorization", "allow1")]
    )
    get(gw, "/prod/private", [("traceparent", f"00-{'4' * 32}-{CLIENT_SPAN}-01"), ("authorization", "deny")])
    for trace in ("5" * 32, "6" * 32):
        assert get(gw, "/prod/cached", [("traceparent", f"00-{trace}-{CLIENT_SPAN}-01")]).status == 200
    assert wait_for(lambda: len(collector.trace("6" * 32)) >= 2, 5.0)
    assert wait_for(lambda: len(collector.trace("4" * 32)) >= 2, 5.0)
    allowed = {s.name: s for s in collector.trace("3" * 32)}
    assert attrs(allowed["authorizer"]) == {
        "fastgw.authorizer.type": "TOKEN",
        "fastgw.authorizer.allowed": True,
    }
    assert allowed["authorizer"].parent_span_id == allowed["GET /private"].span_id
    denied = {s.name: s for s in collector.trace("4" * 32)}
    assert attrs(denied["authorizer"])["fastgw.authorizer.allowed"] is False
    assert "integration" not in denied
    assert attrs(denied["GET /private"])["http.response.status_code"] == 403
    miss = {s.name: s for s in collector.trace("5" * 32)}
    hit = {s.name: s for s in collector.trace("6" * 32)}
    assert attrs(miss["cache"])["fastgw.cache.hit"] is False and "integration" in miss
    assert attrs(hit["cache"])["fastgw.cache.hit"] is True and "integration" not in hit

    # 6. No route: one server span named by the method, 403 as AWS answers.
    assert get(gw, "/prod/nothing", [("traceparent", f"00-{'7' * 32}-{CLIENT_SPAN}-01")]).status == 403
    assert wait_for(lambda: len(collector.trace("7" * 32)) == 1, 5.0)
    (lost,) = collector.trace("7" * 32)
    assert lost.name == "GET" and attrs(lost)["http.response.status_code"] == 403

    # The exported spans are counted for the scrape.
    assert wait_for(lambda: counter(scrape(gw), "trace_spans_exported") >= len(collector.spans) - 2, 5.0)


def test_tracing_off_by_default_leaves_trace_headers_alone(
    gateway_factory: GatewayFactory, echo_server: Any
) -> None:
    gw = gateway_factory(config(echo_server.port, None))
    sent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    up = upstream_headers(get(gw, "/prod/up/a", [("traceparent", sent), ("tracestate", "a=1")]).body)
    assert up["traceparent"] == [sent] and up["tracestate"] == ["a=1"]
    assert "traceparent" not in upstream_headers(get(gw, "/prod/up/b").body)
    assert "trace_spans_exported" not in scrape(gw)


def test_environment_variables_configure_tracing(
    gateway_factory: GatewayFactory, echo_server: Any, collector: Collector
) -> None:
    gw = gateway_factory(
        config(echo_server.port, None),
        extra_env={
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{collector.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "edge-gw",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        },
    )
    m = TP_RE.fullmatch(upstream_headers(get(gw, "/prod/up/a").body)["traceparent"][0])
    assert m is not None
    assert wait_for(lambda: len(collector.trace(m.group(1))) == 2, 5.0)
    resource = next(r for r, s in collector.spans if s.trace_id.hex() == m.group(1))
    assert resource["service.name"] == "edge-gw" and resource["deployment.environment"] == "test"


def _stalled_collector() -> tuple[socket.socket, int]:
    """A listener that accepts connections and never answers."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(64)
    return s, s.getsockname()[1]


@pytest.mark.parametrize("where", ["refused", "stalled"])
def test_a_dead_collector_never_slows_requests_and_drops_are_counted(
    gateway_factory: GatewayFactory, echo_server: Any, where: str
) -> None:
    stalled, port = _stalled_collector() if where == "stalled" else (None, closed_port())
    try:
        gw = gateway_factory(
            config(echo_server.port, None)
            | {
                "gateway": {
                    "tracing": {
                        "sampler": "always_on",
                        "endpoint": f"http://{HOST}:{port}/v1/traces",
                        "schedule_delay_ms": 50,
                        "max_queue_size": 20,
                        "max_export_batch_size": 10,
                        "export_timeout_ms": 3000,
                    }
                }
            }
        )
        t0 = time.monotonic()
        with RawConn(gw.port) as c:
            for i in range(60):
                assert c.request("GET", f"/prod/up/{i}").status == 200
        assert time.monotonic() - t0 < 5.0
        assert wait_for(lambda: counter(scrape(gw), "trace_spans_dropped") >= 60, 8.0)
        text = scrape(gw)
        assert counter(text, "trace_spans_exported") == 0
        if where == "refused":
            assert counter(text, "trace_exports_failed") >= 1
    finally:
        if stalled is not None:
            stalled.close()

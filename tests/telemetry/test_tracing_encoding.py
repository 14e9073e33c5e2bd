"""The tracer's hot-path span encoding (``Tracer.finish``), on both builds, against the plain
encoder (``encode_span`` over ``attr_*``) and the official ``opentelemetry-proto`` decoder."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from fastgw import __version__
from tests.telemetry.conftest import Route, twin

BUILDS = ["fastgw.telemetry._tracing_py", "fastgw.telemetry._tracing_c"]


@pytest.fixture(params=BUILDS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return twin(request)


def make_route(method: str = "ANY", template: str = "/pets/{id}") -> Any:
    return Route(
        pipeline=None,
        template=template,
        method=method,
        key=f"{method} {template}",
        api=SimpleNamespace(id="api1"),
        stage=SimpleNamespace(name="prod"),
    )


def make_exchange(impl: ModuleType, tracer: Any, method: str = "GET", url: bytes = b"/pets/7") -> Any:
    return SimpleNamespace(
        trace=tracer.begin([]),
        t_int=101.0,
        int_ms=2.5,
        up_status=200,
        method=method,
        url=url,
        t0=100.0,
        request_id=b"0123abcd-0000-0000-0000-000000000001",
        proto=SimpleNamespace(peer="10.1.2.3"),
    )


def tracer_of(impl: ModuleType) -> Any:
    settings = impl.TraceSettings("always_on", endpoint="http://127.0.0.1:9/v1/traces")
    return impl.Tracer(settings, lambda: 0.0)


def expected(impl: ModuleType, tracer: Any, ex: Any, trace: Any, status: int, now: float) -> list[bytes]:
    """What finish queues, built with the plain encoder."""
    off = tracer.offset
    path, _, query = ex.url.partition(b"?")
    route_attrs = (
        impl.attr_str("http.request.method", ex.method)
        + impl.attr_str("http.route", "/pets/{id}")
        + impl.attr_str("fastgw.api_id", "api1")
        + impl.attr_str("fastgw.stage", "prod")
    )
    attrs = (
        route_attrs
        + impl.attr_str("url.path", path.decode("latin-1"))
        + impl.attr_int("http.response.status_code", status)
        + impl.attr_str("client.address", "10.1.2.3")
        + impl.attr_str("fastgw.request_id", ex.request_id.decode())
    )
    if b"?" in ex.url:
        attrs += impl.attr_str("url.query", query.decode("latin-1"))
    server = impl.encode_span(
        trace.trace_id,
        trace.span_id,
        trace.parent_id,
        trace.state,
        f"{ex.method} /pets/{{id}}".encode(),
        impl.KIND_SERVER,
        int((ex.t0 + off) * 1e9),
        int((now + off) * 1e9),
        attrs,
        status >= 500,
    )
    integration = impl.encode_span(
        trace.trace_id,
        trace.int_id,
        trace.span_id,
        None,
        b"integration",
        impl.KIND_CLIENT,
        int((ex.t_int + off) * 1e9),
        int((ex.t_int + ex.int_ms / 1000.0 + off) * 1e9),
        impl.attr_int("http.response.status_code", ex.up_status)
        + impl.attr_str("fastgw.integration", "HTTP_PROXY"),
    )
    return [server, integration]  # each already framed as ScopeSpans.spans


@pytest.mark.parametrize(
    "url",
    [b"/pets/7", b"/pets/7?a=1&b=2", b"/" + b"p" * 99, b"/" + b"p" * 300 + b"?" + b"q" * 150, b"/x?"],
)
@pytest.mark.parametrize("status", [200, 503])
def test_finish_queues_the_plain_encoders_bytes(impl: ModuleType, url: bytes, status: int) -> None:
    tracer = tracer_of(impl)
    route = make_route()
    ex = make_exchange(impl, tracer, url=url)
    trace = ex.trace
    tracer.finish(ex, route, status, 100.004)
    assert tracer.queued == 2
    body, n = tracer.export_body()
    assert n == 2 and tracer.queued == 0
    spans = expected(impl, tracer, ex, trace, status, 100.004)
    assert body == impl.encode_request(tracer.settings.resource, __version__, spans)
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    spans = req.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["GET /pets/{id}", "integration"]
    assert spans[0].status.code == (2 if status >= 500 else 0)


def test_children_and_client_trace_state(impl: ModuleType) -> None:
    tracer = tracer_of(impl)
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ex = make_exchange(impl, tracer)
    ex.trace = tracer.begin([b"traceparent: %s\r\ntracestate: k=v\r\n" % tp])
    ex.trace.cache_lookup(100.001, 100.002, True)
    ex.trace.authorizer(100.0005, 100.0009, "TOKEN", False)
    tracer.finish(ex, make_route(), 200, 100.004)
    body, n = tracer.export_body()
    assert n == 4
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    spans = req.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["GET /pets/{id}", "integration", "cache", "authorizer"]
    assert spans[0].trace_state == "k=v"
    assert spans[0].parent_span_id.hex() == "b7ad6b7169203331"
    assert {s.parent_span_id for s in spans[1:]} == {spans[0].span_id}
    assert all(s.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c" for s in spans)


def test_any_route_spans_name_each_method(impl: ModuleType) -> None:
    """One ANY route serves several methods: each request's span names its own method."""
    tracer = tracer_of(impl)
    route = make_route()
    for method in ("GET", "POST", "GET"):
        ex = make_exchange(impl, tracer, method=method)
        tracer.finish(ex, route, 200, 100.004)
    body, _ = tracer.export_body()
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    spans = req.resource_spans[0].scope_spans[0].spans
    servers = [s for s in spans if s.name != "integration"]
    assert [s.name for s in servers] == ["GET /pets/{id}", "POST /pets/{id}", "GET /pets/{id}"]
    methods = [
        next(kv.value.string_value for kv in s.attributes if kv.key == "http.request.method") for s in servers
    ]
    assert methods == ["GET", "POST", "GET"]


@pytest.mark.parametrize("up_status", [0, 200, 502])
def test_long_fields_and_children_encode_as_the_plain_encoder(impl: ModuleType, up_status: int) -> None:
    """Every length past one varint byte, a failed integration and each kind of child span."""
    tracer = tracer_of(impl)
    state = b"v=" + b"s" * 398
    fwd = [
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: %s\r\n" % state
    ]
    ex = make_exchange(impl, tracer, url=b"/" + b"p" * 20000 + b"?" + b"q" * 9000)
    ex.trace = trace = tracer.begin(fwd)
    ex.request_id = b"r" * 200
    ex.up_status = up_status
    ex.int_ms = -1.0 if not up_status else 2.5  # no answer: the integration ends with the request
    trace.cache_lookup(100.001, 100.002, False)
    trace.authorizer(100.0005, 100.0009, "TOKEN", True)
    trace.child(b"custom", impl.KIND_CLIENT, 100.003, 100.0029, impl.attr_int("n", 1 << 40))  # ends first
    route = make_route(template="/" + "t" * 300)
    tracer.finish(ex, route, 599, 100.004)
    off = tracer.offset
    fixed = (
        impl.attr_str("http.request.method", "GET")
        + impl.attr_str("http.route", "/" + "t" * 300)
        + impl.attr_str("fastgw.api_id", "api1")
        + impl.attr_str("fastgw.stage", "prod")
    )
    server_attrs = (
        fixed
        + impl.attr_str("url.path", "/" + "p" * 20000)
        + impl.attr_int("http.response.status_code", 599)
        + impl.attr_str("client.address", "10.1.2.3")
        + impl.attr_str("fastgw.request_id", "r" * 200)
        + impl.attr_str("url.query", "q" * 9000)
    )

    def ns(t: float) -> int:
        return int((t + off) * 1e9)

    tid, sid = trace.trace_id, trace.span_id
    int_attrs = impl.attr_str("fastgw.integration", "HTTP_PROXY")
    if up_status:
        int_attrs = impl.attr_int("http.response.status_code", up_status) + int_attrs
    int_end = 101.0025 if up_status else 100.004
    (cache_id, *_), (auth_id, *_), (custom_id, *_) = trace.children
    spans = [
        impl.encode_span(
            tid,
            sid,
            trace.parent_id,
            state,
            b"GET /" + b"t" * 300,
            2,
            ns(100.0),
            ns(100.004),
            server_attrs,
            True,
        ),
        impl.encode_span(
            tid,
            trace.int_id,
            sid,
            None,
            b"integration",
            3,
            ns(101.0),
            ns(int_end),
            int_attrs,
            up_status != 200,
        ),
        impl.encode_span(
            tid,
            cache_id,
            sid,
            None,
            b"cache",
            1,
            ns(100.001),
            ns(100.002),
            impl.attr_bool("fastgw.cache.hit", False),
        ),
        impl.encode_span(
            tid,
            auth_id,
            sid,
            None,
            b"authorizer",
            1,
            ns(100.0005),
            ns(100.0009),
            impl.attr_str("fastgw.authorizer.type", "TOKEN")
            + impl.attr_bool("fastgw.authorizer.allowed", True),
        ),
        impl.encode_span(
            tid, custom_id, sid, None, b"custom", 3, ns(100.003), ns(100.003), impl.attr_int("n", 1 << 40)
        ),
    ]
    body, n = tracer.export_body()
    assert n == 5
    assert body == impl.encode_request(tracer.settings.resource, __version__, spans)
    decoded = trace_service_pb2.ExportTraceServiceRequest()
    decoded.ParseFromString(body)
    got = decoded.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in got] == ["GET /" + "t" * 300, "integration", "cache", "authorizer", "custom"]
    assert got[0].trace_state == state.decode() and got[4].end_time_unix_nano == got[4].start_time_unix_nano


def test_record_is_finish_with_the_values_given(impl: ModuleType) -> None:
    """``record`` (the entry a compiled caller can use without attribute reads) and ``finish``."""
    by_finish, by_record = tracer_of(impl), tracer_of(impl)
    by_record.offset = by_finish.offset  # the same wall clock anchor
    ex = make_exchange(impl, by_finish, url=b"/pets/7?x=1")
    trace = ex.trace
    trace.cache_lookup(100.001, 100.002, True)
    by_finish.finish(ex, make_route(), 504, 100.004)
    assert ex.trace is None
    by_record.record(
        trace,
        make_route(),
        504,
        100.004,
        "GET",
        b"/pets/7?x=1",
        100.0,
        101.0,
        2.5,
        200,
        ex.request_id,
        "10.1.2.3",
    )
    assert by_record.export_body() == by_finish.export_body()

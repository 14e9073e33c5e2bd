"""The tracer's queue and export thread, on both builds: spans sealed in batches (by size, by age,
on stop), the queue bound and its drop count, the export body (head + sealed spans) against the
plain encoder, the POSTs an OTLP/HTTP receiver gets, and the W3C headers and ids a trace makes."""

from __future__ import annotations

import os
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from fastgw import __version__
from tests.telemetry.conftest import Collector, Route, twin

BUILDS = ["fastgw.telemetry._tracing_py", "fastgw.telemetry._tracing_c"]
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode()


@pytest.fixture(params=BUILDS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return twin(request)


class Clock:
    """A loop clock the test moves."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_tracer(impl: ModuleType, clock: Clock | None = None, **settings: Any) -> Any:
    settings.setdefault("endpoint", "http://127.0.0.1:9/v1/traces")
    return impl.Tracer(impl.TraceSettings("always_on", **settings), clock or Clock())


ROUTE = Route(
    pipeline=None,
    template="/pets/{id}",
    method="GET",
    key="GET /pets/{id}",
    api=SimpleNamespace(id="api1"),
    stage=SimpleNamespace(name="prod"),
)


def serve(tracer: Any, rid: int, now: float = 100.004, integration: bool = True) -> Any:
    """One finished request: a server span, and an integration span when ``integration``."""
    ex = SimpleNamespace(
        trace=tracer.begin([]),
        t_int=100.001 if integration else 0.0,
        int_ms=2.0,
        up_status=200,
        method="GET",
        url=b"/pets/%d" % rid,
        t0=100.0,
        request_id=b"rid-%d" % rid,
        proto=SimpleNamespace(peer="10.1.2.3"),
    )
    trace = ex.trace
    tracer.finish(ex, ROUTE, 200, now)
    return trace


def decode(body: bytes) -> list[Any]:
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    (rs,) = req.resource_spans
    (ss,) = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("fastgw", __version__)
    return list(ss.spans)


def take_all(tracer: Any) -> list[tuple[list[Any], int]]:
    """Every sealed chunk, oldest first, as (decoded spans, count)."""
    out = []
    while (got := tracer.next_export()) is not None:
        head, chunk, n = got
        out.append((decode(head + bytes(chunk)), n))
    return out


def request_ids(spans: list[Any]) -> list[str]:
    return [
        next(kv.value.string_value for kv in s.attributes if kv.key == "fastgw.request_id")
        for s in spans
        if s.kind == 2
    ]


# ---------------------------------------------------------------------- the queue
def test_a_batch_is_sealed_when_full_and_never_holds_more(impl: ModuleType) -> None:
    tracer = make_tracer(impl, batch=5)
    for rid in range(7):  # two spans each: 4 fit a batch of 5, the third request starts the next
        serve(tracer, rid)
    chunks = take_all(tracer)
    assert [n for _, n in chunks] == [4, 4, 4]
    assert [len(spans) for spans, _ in chunks] == [4, 4, 4]
    assert tracer.queued == 2  # the 7th request: in the open chunk until a flush
    body, n = tracer.export_body()
    assert n == 2
    served = [rid for spans, _ in chunks for rid in request_ids(spans)] + request_ids(decode(body))
    assert served == [f"rid-{i}" for i in range(7)]  # each span once, in order
    assert tracer.queued == 0 and tracer.next_export() is None


def test_a_full_batch_goes_at_once(impl: ModuleType) -> None:
    tracer = make_tracer(impl, batch=2)
    serve(tracer, 1)
    ((spans, n),) = take_all(tracer)
    assert n == 2 and [s.name for s in spans] == ["GET /pets/{id}", "integration"]


def test_a_batch_older_than_the_delay_is_sealed(impl: ModuleType) -> None:
    clock = Clock(100.0)
    tracer = make_tracer(impl, clock, batch=100, delay=0.5)
    serve(tracer, 1, now=100.0)
    serve(tracer, 2, now=100.2)
    assert take_all(tracer) == []
    serve(tracer, 3, now=100.6)  # the open chunk's first span is 0.6 s old
    assert [n for _, n in take_all(tracer)] == [6]
    serve(tracer, 4, now=101.0)
    clock.now = 101.2
    tracer.tick()  # the worker's ticker: not old enough yet
    assert take_all(tracer) == []
    clock.now = 101.6
    tracer.tick()
    ((spans, n),) = take_all(tracer)
    assert n == 2 and request_ids(spans) == ["rid-4"]


def test_the_queue_is_bounded_and_drops_are_counted(impl: ModuleType) -> None:
    tracer = make_tracer(impl, batch=4, max_queue=5)
    before = impl.COUNTERS["trace_spans_dropped"]
    serve(tracer, 1)
    serve(tracer, 2)  # sealed: 4 spans queued
    serve(tracer, 3)  # 4 + 2 > 5: dropped, both spans
    serve(tracer, 4, integration=False)  # 4 + 1 fits
    assert impl.COUNTERS["trace_spans_dropped"] - before == 2
    assert tracer.queued == 5
    assert [n for _, n in take_all(tracer)] == [4]  # taken by the export thread: room again
    serve(tracer, 5)
    assert tracer.queued == 3
    body, n = tracer.export_body()
    assert request_ids(decode(body)) == ["rid-4", "rid-5"] and n == 3
    assert impl.COUNTERS["trace_spans_dropped"] - before == 2


@pytest.mark.parametrize("spans_len", [0, 1, 90, 127, 128, 5000, 20000, 300000])
def test_the_export_head_is_the_plain_encoders(impl: ModuleType, spans_len: int) -> None:
    tracer = make_tracer(impl, resource={"service.name": "svc", "host.name": "h" * 200})
    spans = b"\x12" + b"x" * (spans_len - 1) if spans_len else b""  # only lengths matter here
    whole = impl.encode_request(tracer.settings.resource, __version__, [spans])
    assert tracer.export_head(spans_len) + spans == whole


# ---------------------------------------------------------------------- the export thread
def test_the_export_thread_posts_every_span_in_batches(impl: ModuleType, collector: Collector) -> None:
    tracer = make_tracer(impl, endpoint=collector.url, batch=4, delay=30.0, headers={"x-team": "edge"})
    exported = impl.COUNTERS["trace_spans_exported"]
    tracer.start()
    traces = [serve(tracer, rid) for rid in range(9)]
    tracer.stop(10.0)  # seals the last, partial batch and waits for the thread
    assert [len(spans) for _, spans in collector.posts] == [4, 4, 4, 4, 2]
    assert set(collector.scopes) == {("fastgw", __version__)}
    headers = collector.posts[0][0]
    assert headers["content-type"] == "application/x-protobuf" and headers["x-team"] == "edge"
    spans = [s for _, post in collector.posts for s in post]
    assert request_ids(spans) == [f"rid-{i}" for i in range(9)]
    by_trace = {s.trace_id: s for s in spans if s.kind == 2}
    assert set(by_trace) == {t.trace_id for t in traces}
    integrations = [s for s in spans if s.kind == 3]
    assert all(s.parent_span_id == by_trace[s.trace_id].span_id for s in integrations)
    assert impl.COUNTERS["trace_spans_exported"] - exported == 18


# ---------------------------------------------------------------------- propagation and ids
@pytest.mark.parametrize("state", [None, b"vendor=abc,k=v"])
def test_header_lines_carry_the_trace_and_the_integration_span(impl: ModuleType, state: bytes | None) -> None:
    tracer = make_tracer(impl)
    fwd = [b"traceparent: %s\r\n" % TRACEPARENT + (b"tracestate: %s\r\n" % state if state else b"")]
    trace = tracer.begin(fwd)
    want = f"traceparent: 00-{CLIENT_TRACE}-{trace.integration_id().hex()}-01\r\n".encode()
    if state:
        want += b"tracestate: " + state + b"\r\n"
    assert trace.header_lines() == want
    parts = [b"accept: */*\r\n", fwd[0]]
    trace.inject(parts)
    assert parts == [b"accept: */*\r\n", b"", want]  # the client's lines replaced by ours


@pytest.mark.parametrize(
    ("fwd", "continued"),
    [
        ([b"TraceParent: %s\r\n" % TRACEPARENT], True),
        ([b"accept: */*\r\n", b"x-a: 1\r\ntraceparent:%s\r\nx-b: 2\r\n" % TRACEPARENT], True),
        ([b"x-traceparent: %s\r\n" % TRACEPARENT], False),  # another header's name
        ([b"accept: traceparent: %s\r\n" % TRACEPARENT], False),  # in a value, not a name
        ([b"traceparent2: %s\r\n" % TRACEPARENT], False),
        ([b"traceparen"], False),
        ([], False),
    ],
)
def test_only_a_traceparent_header_continues_a_trace(
    impl: ModuleType, fwd: list[bytes], continued: bool
) -> None:
    trace = make_tracer(impl).begin(fwd)
    assert trace is not None
    assert (trace.trace_id.hex() == CLIENT_TRACE) is continued
    assert (trace.parent_id is not None) is continued
    assert trace.replace is continued


def test_ids_are_random_and_never_zero(impl: ModuleType) -> None:
    tracer = make_tracer(impl)
    traces = [tracer.begin([]) for _ in range(3000)]
    ids = [t.trace_id for t in traces] + [t.span_id for t in traces] + [t.integration_id() for t in traces]
    assert len(set(ids)) == len(ids)
    assert {len(t.trace_id) for t in traces} == {16} and {len(t.span_id) for t in traces} == {8}
    assert all(any(i) for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_makes_its_own_ids(impl: ModuleType) -> None:
    tracer = make_tracer(impl)
    tracer.begin([])  # the parent has drawn ids: a pool of them is ready
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, tracer.begin([]).trace_id)
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 16)
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != tracer.begin([]).trace_id

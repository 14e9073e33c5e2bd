"""CPU per span of the OpenTelemetry SDK against fastgw's span encoder (the reason fastgw does
not build SDK span objects on the request path; see README "Tracing").

Usage: ``python3 -m bench.otel_sdk_span [N]``. Prints microseconds per request for: one SDK span
(``start_span`` with three attributes + ``end``, ``BatchSpanProcessor`` with an exporter that
drops everything), and fastgw's ``Tracer`` (``begin`` + ``inject`` + ``finish``: a server span
and an integration span encoded as OTLP protobuf and queued), both in this process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any


def sdk_span_us(n: int) -> float:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=1 << 20))
    tracer = provider.get_tracer("bench")
    attrs = {"http.request.method": "GET", "http.route": "/pets/{id}", "http.response.status_code": 200}
    t = time.perf_counter()
    for _ in range(n):
        tracer.start_span("GET /pets/{id}", attributes=attrs).end()
    us = (time.perf_counter() - t) / n * 1e6
    provider.shutdown()
    return us


def fastgw_request_us(n: int) -> float:
    from fastgw.telemetry import tracing

    tracer = tracing.Tracer(
        tracing.TraceSettings("always_on", endpoint="http://127.0.0.1:9/v1/traces", max_queue=n * 3)
    )

    class Peer:
        peer = "127.0.0.1"

    class Api:
        id = "bench"

    class Stage:
        name = "prod"

    class Route:
        api, stage, pipeline = Api(), Stage(), None
        template, key, method = "/pets/{id}", "GET /pets/{id}", "GET"

    class Ex:
        request_id = b"0f9c1a52-7d7e-4c3b-9a51-00000000001"
        method = "GET"
        proto = Peer()
        url = b"/prod/pets/7"
        t0 = time.monotonic()
        t_int = t0 + 0.0001
        int_ms = 0.4
        up_status = 200
        trace: Any = None

    ex, route, fwd = Ex(), Route(), [b"host: gw\r\nuser-agent: wrk\r\n"]
    t = time.perf_counter()
    for _ in range(n):
        ex.trace = tracer.begin(fwd)
        ex.trace.inject([b"accept: */*\r\n"])
        tracer.finish(ex, route, 200, ex.t0 + 0.001)
    return (time.perf_counter() - t) / n * 1e6


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 50_000
    from fastgw.telemetry import tracing

    build = "compiled" if tracing.COMPILED else "pure Python"
    print(f"OpenTelemetry SDK, one span:                       {sdk_span_us(n):6.2f} us")
    print(f"fastgw ({build}), server + integration spans:  {fastgw_request_us(n):6.2f} us per request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""User-space cost of telemetry on one proxied request, without sockets (``bench.pipeline``'s
request, route and in-memory transports, with the stage's JSON access log and/or tracing on).

    python -m bench.telemetry_pipeline                      # plain, --access-log, --tracing, both
    python -m bench.telemetry_pipeline --access-log         # one mode only
    FASTGW_NO_EXTENSIONS=1 python -m bench.telemetry_pipeline   # pure-Python build

Each mode prints the best µs per request over 5 runs, and its cost against the plain request.

``--access-log``: the JSON preset (``bench.load --telemetry``'s config) to a temporary file,
flushed every 5,000 requests (the worker's ticker flushes every 100 ms, about 5,000 requests at
the load bench's rate) and truncated, so the render (to bytes), the queue and the ``write`` are all
counted (the ``write``'s kernel time too: this is wall time on one thread).

``--tracing``: ``sampler: always_on`` with the load bench's export batch (4,096 spans); every time
a batch is queued its export body is built as the export thread builds it
(``Tracer.export_body``), without posting it: the spans' work on both threads, minus the network.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.pipeline import HUGE, REQUEST, RESPONSE
from bench.pipeline import build as build_protocols

TRACE_BATCH = 4096  # bench.load --telemetry's max_export_batch_size
FLUSH_EVERY = 5000  # requests per access log flush (100 ms at ~50k req/s)
MODES = ("plain", "access-log", "tracing", "both")


def config(access_log: str | None, tracing: bool) -> str:
    log_settings = f', accessLogSettings: {{format: json, destination: "{access_log}"}}' if access_log else ""
    trace = (
        '\n  tracing: {sampler: always_on, endpoint: "http://127.0.0.1:9/v1/traces", '
        f"max_queue_size: 1000000, max_export_batch_size: {TRACE_BATCH}}}"
        if tracing
        else ""
    )
    return f"""
gateway:
  throttle: {HUGE}{trace}
apis:
  - name: bench
    routes:
      - route: "ANY /{{proxy+}}"
        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:19000/{{proxy}}"}}
    stages: [{{name: prod, throttle: {HUGE}{log_settings}}}]
"""


def build(access_log: str | None, tracing: bool) -> tuple[Callable[[], None], Any]:
    """A function driving one request through a fresh worker, and that worker."""
    from fastgw.telemetry import access

    client, upstream, client_t, upstream_t = build_protocols(text=config(access_log, tracing))
    worker = client.worker
    tracer = worker.tracer
    count = [0]

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)
        count[0] += 1
        if count[0] == FLUSH_EVERY:
            count[0] = 0
            if access_log is not None:
                access.flush_all()
                os.truncate(access_log, 0)  # page-cache writes, not a growing file
        if tracer is not None and len(tracer.queue) >= TRACE_BATCH:
            tracer.export_body()

    for _ in range(2000):
        one()
    assert upstream_t.last.startswith(b"GET /small HTTP/1.1\r\n"), upstream_t.last
    assert client_t.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
    return one, worker


def best_of(one: Callable[[], None], iterations: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iterations):
            one()
        best = min(best, (time.perf_counter() - t0) / iterations)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--access-log", action="store_true", help="only plain and the JSON access log")
    parser.add_argument("--tracing", action="store_true", help="only plain and tracing 100 %%")
    parser.add_argument("--once", action="store_true", help="one pass of the chosen mode (for perf)")
    args = parser.parse_args()

    from fastgw.server import protocol
    from fastgw.telemetry import access, tracing

    modes = ["plain"]
    if args.access_log:
        modes.append("access-log")
    if args.tracing:
        modes.append("tracing")
    if len(modes) == 1:
        modes = list(MODES)
    with tempfile.TemporaryDirectory(prefix="fastgw-telemetry-") as tmp:
        results: dict[str, float] = {}
        for mode in modes:
            path = os.path.join(tmp, f"{mode}.log") if mode in ("access-log", "both") else None
            one, worker = build(path, mode in ("tracing", "both"))
            if args.once:
                if mode != "plain":
                    for _ in range(args.iterations):
                        one()
                continue
            results[mode] = best_of(one, args.iterations)
            if worker.tracer is not None:
                worker.tracer.queue.clear()
            access.close_all()
    if args.once:
        return
    build_name = "compiled" if protocol.COMPILED else "pure Python"
    print(
        f"{build_name} build (protocol compiled: {protocol.COMPILED}, tracing compiled: {tracing.COMPILED})"
    )
    base = results["plain"]
    for mode, t in results.items():
        extra = "" if mode == "plain" else f"  (+{(t - base) * 1e6:.2f} µs)"
        print(f"  {mode:<11} {t * 1e6:6.2f} µs per request{extra}")


if __name__ == "__main__":
    main()

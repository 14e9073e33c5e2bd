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
a batch is sealed, the export thread's work on it is done here (``Tracer.next_export``: the
request's head before the spans), without posting it: the spans' work on both threads, minus the
network.

``--export``: the same tracing worker with its export thread running, posting to ``bench.span_sink``
(a subprocess: its CPU is not counted) over loopback, as in the load bench. Prints, per request,
the wall time and the loop thread's CPU (``time.thread_time``), and per span the export thread's
CPU (user + kernel, ``time.pthread_getcpuclockid``), which the load bench pays on the worker's core,
counted over ``--iterations`` requests (rounded to full batches) until all their spans are
exported.

    python -m bench.telemetry_pipeline --export --iterations 200000

Instructions per request (steadier than times on a shared machine): run ``--only MODE --once``
under ``valgrind --tool=callgrind`` with two ``--iterations`` and divide the difference of the
totals by the difference of the counts, for ``plain`` and ``tracing``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
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
        if tracer is not None and tracer.sealed:
            tracer.next_export()  # the export thread's work on a sealed batch, minus the POST

    for _ in range(2000):
        one()
    assert upstream_t.last.startswith(b"GET /small HTTP/1.1\r\n"), upstream_t.last
    assert client_t.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
    return one, worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_run(iterations: int, tmp: str) -> dict[str, float]:
    """Requests through a tracing worker whose export thread posts to ``bench.span_sink``: CPU
    and wall time per request, the export thread's CPU per span, the POSTs and bytes received."""
    import json

    from fastgw.telemetry import tracing

    port = _free_port()
    out = os.path.join(tmp, "sink.json")
    sink = subprocess.Popen([sys.executable, "-m", "bench.span_sink", str(port), out])
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        text = config(None, True).replace(
            "http://127.0.0.1:9/v1/traces", f"http://127.0.0.1:{port}/v1/traces"
        )
        client, upstream, client_t, _ = build_protocols(text=text)
        tracer = client.worker.tracer
        tracer.start()
        per_batch = TRACE_BATCH // 2  # requests per export (two spans each)

        def drive(n: int) -> tuple[float, float]:
            """``n`` requests: their wall time and the loop thread's CPU time, in seconds; then
            waits until the export thread has exported their spans."""
            target = tracing.COUNTERS["trace_spans_exported"] + 2 * n
            w0, m0 = time.perf_counter(), time.thread_time()
            for _ in range(n):
                client.data_received(REQUEST)
                upstream.data_received(RESPONSE)
            took = time.perf_counter() - w0, time.thread_time() - m0
            deadline = time.monotonic() + 60.0
            while tracing.COUNTERS["trace_spans_exported"] < target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"spans not exported: {tracing.COUNTERS}")
                time.sleep(0.005)
            return took

        drive(per_batch)  # warm up, and the connection to the sink
        assert client_t.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
        n = max(iterations // per_batch, 1) * per_batch
        thread_clock = time.pthread_getcpuclockid(tracer._thread.ident)
        with open(out) as f:
            before = json.load(f)
        x0 = time.clock_gettime(thread_clock)
        wall, loop_cpu = drive(n)
        exporter_cpu = time.clock_gettime(thread_clock) - x0
        time.sleep(0.2)
        with open(out) as f:
            after = json.load(f)
        tracer.stop(5.0)
    finally:
        sink.terminate()
        sink.wait()
    spans = 2 * n
    return {
        "requests": n,
        "wall us/request": wall / n * 1e6,
        "loop thread CPU us/request": loop_cpu / n * 1e6,
        "export thread CPU us/span": exporter_cpu / spans * 1e6,
        "export thread CPU us/request": exporter_cpu / n * 1e6,
        "both threads CPU us/request": (loop_cpu + exporter_cpu) / n * 1e6,
        "POSTs": after["requests"] - before["requests"],
        "bytes/span": (after["bytes"] - before["bytes"]) / spans,
    }


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
    parser.add_argument(
        "--export", action="store_true", help="tracing with the export thread posting to a sink"
    )
    parser.add_argument("--only", choices=MODES, help="this mode alone (--once: plain too, for callgrind)")
    args = parser.parse_args()

    from fastgw.server import protocol
    from fastgw.telemetry import access, tracing

    if args.export:
        with tempfile.TemporaryDirectory(prefix="fastgw-telemetry-") as tmp:
            got = export_run(args.iterations, tmp)
        print(f"export thread posting to bench.span_sink (tracing compiled: {tracing.COMPILED})")
        for key, value in got.items():
            print(f"  {key:<30} {value:10.3f}" if isinstance(value, float) else f"  {key:<30} {value:10d}")
        return

    modes = ["plain"]
    if args.access_log:
        modes.append("access-log")
    if args.tracing:
        modes.append("tracing")
    if len(modes) == 1:
        modes = list(MODES)
    if args.only:
        modes = [args.only]
    with tempfile.TemporaryDirectory(prefix="fastgw-telemetry-") as tmp:
        results: dict[str, float] = {}
        for mode in modes:
            path = os.path.join(tmp, f"{mode}.log") if mode in ("access-log", "both") else None
            one, worker = build(path, mode in ("tracing", "both"))
            if args.once:
                if mode != "plain" or args.only:
                    for _ in range(args.iterations):
                        one()
                continue
            results[mode] = best_of(one, args.iterations)
            if worker.tracer is not None:
                while worker.tracer.next_export() is not None:
                    pass
            access.close_all()
    if args.once:
        return
    build_name = "compiled" if protocol.COMPILED else "pure Python"
    print(
        f"{build_name} build (protocol compiled: {protocol.COMPILED}, tracing compiled: {tracing.COMPILED})"
    )
    base = results.get("plain")
    for mode, t in results.items():
        extra = "" if base is None or mode == "plain" else f"  (+{(t - base) * 1e6:.2f} µs)"
        print(f"  {mode:<11} {t * 1e6:6.2f} µs per request{extra}")


if __name__ == "__main__":
    main()

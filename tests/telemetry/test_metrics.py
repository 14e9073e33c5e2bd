"""The metrics store: per-route counts and histograms, node totals across processes, Prometheus text."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import re
import time
import timeit
from pathlib import Path

import pytest

from fastgw.telemetry.metrics import (
    CACHE_HIT,
    CACHE_MISS,
    CACHE_NONE,
    LATENCY_BUCKETS_MS,
    MetricsPublisher,
    NodeMetrics,
    RouteKey,
    RouteStats,
    WorkerMetrics,
    bucket_quantile,
    decode_snapshot,
    node_totals,
    snapshot_path,
)
from fastgw.telemetry.prometheus import CONTENT_TYPE, escape_label_value, exposition

# Python 3.12+ warns when forking a process that has threads (other test modules start some); the
# workers forked here only count, publish and exit.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* use of fork:DeprecationWarning")

REST_KEY: RouteKey = ("a1b2c3", "prod", "/pets/{id}", "GET")
HTTP_KEY: RouteKey = ("h7h7h7", "$default", "POST /orders", "")


def _rest(m: WorkerMetrics, name: str = "pets") -> RouteStats:
    return m.route(REST_KEY, name, "a1b2c3", "rest", "prod", "/pets/{id}", "GET", "GET /pets/{id}")


def _http(m: WorkerMetrics) -> RouteStats:
    return m.route(HTTP_KEY, "orders", "h7h7h7", "http", "$default", "/orders", "POST", "POST /orders")


# Requests as (status, latency_ms, integration_ms, cache). Latencies are binary fractions, so the
# float sums are exact whatever the summing order.
Request = tuple[int, float, float | None, int]


def _traffic(worker: int) -> tuple[list[Request], list[Request]]:
    rest: list[Request] = []
    http: list[Request] = []
    for i in range(200 + 50 * worker):
        status = (200, 201, 404, 429, 500, 502, 503)[i % 7]
        cache = (CACHE_NONE, CACHE_HIT, CACHE_MISS)[i % 3]
        integration = None if cache == CACHE_HIT else (i % 40) * 0.5
        rest.append((status, (i % 80) * 0.75 + worker, integration, cache))
    for i in range(120 + worker):
        http.append((200 if i % 5 else 400, i * 4.25, i * 4.0, CACHE_NONE))
    return rest, http


def _replay(m: WorkerMetrics, worker: int) -> None:
    rest, http = _traffic(worker)
    r, h = _rest(m), _http(m)
    for req in rest:
        r.record(*req)
    for req in http:
        h.record(*req)
    m.gauges["active_connections"] = 3 + worker
    m.gauges["config_version"] = 7 + worker
    m.incr("throttled", 5 * (worker + 1))
    m.incr("reloads_ok")


def _worker_process(directory: str, worker: int, replays: int) -> None:
    m = WorkerMetrics()
    for _ in range(replays):
        _replay(m, worker)
    MetricsPublisher(directory, worker).publish(m)


def _run_workers(directory: Path, *jobs: tuple[int, int]) -> None:
    """Run each (worker slot, replays) in its own forked process, one after the other."""
    ctx = multiprocessing.get_context("fork")
    for worker, replays in jobs:
        p = ctx.Process(target=_worker_process, args=(str(directory), worker, replays))
        p.start()
        p.join(10)
        assert p.exitcode == 0


def _same(a: RouteStats, b: RouteStats) -> None:
    fields = [s for s in RouteStats.__slots__]
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


# ----------------------------------------------------------------------------- RouteStats


def test_record_counts_exactly() -> None:
    m = WorkerMetrics()
    rest, _ = _traffic(0)
    r = _rest(m)
    for req in rest:
        r.record(*req)
    assert r.count == len(rest) == 200
    assert r.errors_4xx == sum(1 for s, *_ in rest if 400 <= s < 500)
    assert r.errors_5xx == sum(1 for s, *_ in rest if 500 <= s < 600)
    assert r.cache_hits == sum(1 for *_, c in rest if c == CACHE_HIT) == 67
    assert r.cache_misses == sum(1 for *_, c in rest if c == CACHE_MISS) == 66
    assert sum(r.latency) == r.count
    assert r.latency_sum == sum(lat for _, lat, _, _ in rest)
    assert r.integration_count == sum(1 for _, _, i, _ in rest if i is not None) == 133
    assert r.integration_sum == sum(i for _, _, i, _ in rest if i is not None)


def test_status_classes_and_no_cache() -> None:
    r = RouteStats("a", "id", "http", "s", "/", "GET", "GET /")
    for status in (100, 200, 204, 301, 399, 400, 403, 499, 500, 504, 599):
        r.record(status, 1.0, None)
    assert (r.count, r.errors_4xx, r.errors_5xx) == (11, 3, 3)
    assert (r.cache_hits, r.cache_misses, r.integration_count) == (0, 0, 0)


def test_histogram_buckets_bracket_the_values() -> None:
    bounds = LATENCY_BUCKETS_MS
    values = [0.0, 0.3, 1.0, 1.0000001, 2.0, 4.99, 5.0, 99.9, 100.0, 100.5, 29999.0, 30000.0, 30000.5, 1e9]
    for v in values:
        r = RouteStats("a", "id", "rest", "s", "/", "GET", "GET /")
        r.record(200, v, v)
        (i,) = [i for i, c in enumerate(r.latency) if c]
        assert r.integration == r.latency
        lower = bounds[i - 1] if i else -math.inf
        upper = bounds[i] if i < len(bounds) else math.inf
        assert lower < v <= upper, (v, i)  # Prometheus buckets: le is inclusive
    assert len(r.latency) == len(bounds) + 1


def test_route_survives_reload_by_key_and_takes_new_labels() -> None:
    m = WorkerMetrics()
    r = _rest(m)
    r.record(200, 3.0, 2.0)
    again = _rest(m, name="pets-v2")
    assert again is r and again.count == 1 and again.api_name == "pets-v2"
    assert len(m.routes) == 1


# ----------------------------------------------------------------------------- percentiles


def test_percentiles_interpolate_inside_buckets() -> None:
    r = RouteStats("a", "id", "rest", "s", "/", "GET", "GET /")
    for _ in range(100):
        r.record(200, 75.0, None)  # all in (50, 100]
    assert r.percentile("Latency", 0.5) == pytest.approx(75.0)
    assert r.percentile("Latency", 0.9) == pytest.approx(95.0)
    assert r.percentile("Latency", 1.0) == pytest.approx(100.0)
    assert r.percentile("IntegrationLatency", 0.5) is None

    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    counts[0] = 90  # (0, 1]
    counts[10] = 10  # (1000, 2500]
    assert bucket_quantile(counts, 0.5) == pytest.approx(50 / 90)
    assert bucket_quantile(counts, 0.9) == pytest.approx(1.0)
    assert bucket_quantile(counts, 0.99) == pytest.approx(1000 + 1500 * 0.9)
    assert bucket_quantile(counts, 0.0) == 0.0
    counts[-1] = 1000  # mostly above the last bound: Prometheus answers the highest finite bound
    assert bucket_quantile(counts, 0.99) == LATENCY_BUCKETS_MS[-1]
    with pytest.raises(ValueError):
        bucket_quantile(counts, 1.5)
    with pytest.raises(ValueError):
        r.percentile("Count", 0.5)


def test_percentiles_of_a_uniform_distribution() -> None:
    # 0.01 .. 1000 ms uniformly: the true quantile is q * 1000; the estimate is within one bucket
    # and exact where the distribution is uniform across the bucket.
    r = RouteStats("a", "id", "rest", "s", "/", "GET", "GET /")
    for i in range(1, 100_001):
        r.record(200, i / 100, None)
    for q, expected in ((0.5, 500.0), (0.9, 900.0), (0.99, 990.0)):
        assert r.percentile("Latency", q) == pytest.approx(expected, rel=1e-3)
    node = NodeMetrics()
    node.routes[REST_KEY] = r
    assert node.percentile(REST_KEY, "Latency", 0.5) == pytest.approx(500.0, rel=1e-3)
    assert node.percentile(None, "Latency", 0.9) == pytest.approx(900.0, rel=1e-3)
    assert node.percentile(HTTP_KEY, "Latency", 0.9) is None


# ----------------------------------------------------------------------------- across processes


def test_two_processes_sum_exactly(tmp_path: Path) -> None:
    _run_workers(tmp_path, (0, 1), (1, 1))
    node = node_totals(str(tmp_path))
    assert node.workers == [0, 1] and node.stale == []

    expected = WorkerMetrics()
    _replay(expected, 0)
    _replay(expected, 1)
    assert set(node.routes) == {REST_KEY, HTTP_KEY}
    for key in (REST_KEY, HTTP_KEY):
        _same(node.routes[key], expected.routes[key])
    assert node.routes[REST_KEY].count == 200 + 250
    assert node.routes[HTTP_KEY].count == 120 + 121
    assert node.counters == {"throttled": 5 + 10, "reloads_ok": 2}
    assert node.gauges == {"active_connections": 3 + 4, "config_version": 8}  # versions: max
    assert node.worker_gauges[1] == {"active_connections": 4, "config_version": 8}

    total = node.totals()
    assert total.count == 450 + 241
    assert total.errors_4xx == node.routes[REST_KEY].errors_4xx + node.routes[HTTP_KEY].errors_4xx
    assert sum(total.latency) == total.count


def test_restarted_worker_carries_the_slot_forward(tmp_path: Path) -> None:
    _run_workers(tmp_path, (0, 1), (1, 1))
    before = node_totals(str(tmp_path))
    _run_workers(tmp_path, (0, 2))  # slot 0 restarted: a new process counts two more rounds
    after = node_totals(str(tmp_path))
    assert after.routes[REST_KEY].count == before.routes[REST_KEY].count + 2 * 200
    assert after.counters["throttled"] == 15 + 2 * 5
    assert after.gauges["active_connections"] == 3 + 4  # gauges are not carried

    # A slot whose file is older than carry_max_age starts again from zero (a reset).
    old = time.time() - 60
    os.utime(snapshot_path(str(tmp_path), 0), (old, old))
    _run_workers(tmp_path, (0, 1))
    reset = node_totals(str(tmp_path))
    assert reset.routes[REST_KEY].count == 200 + 250


def test_stale_and_broken_files_are_ignored(tmp_path: Path) -> None:
    _run_workers(tmp_path, (0, 1), (1, 1))
    old = time.time() - 11
    os.utime(snapshot_path(str(tmp_path), 1), (old, old))
    (tmp_path / "worker-2.msgpack").write_bytes(b"\x00not msgpack")
    (tmp_path / "worker-3.msgpack.tmp").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("ignored")

    node = node_totals(str(tmp_path), max_age=10.0)
    assert node.workers == [0] and node.stale == [1]
    assert node.routes[REST_KEY].count == 200
    assert node_totals(str(tmp_path), max_age=60.0).workers == [0, 1]
    assert node_totals(str(tmp_path / "missing")).routes == {}


def test_snapshot_round_trip_and_cost() -> None:
    m = WorkerMetrics()
    for i in range(1000):
        key = (f"api{i % 10}", "prod", f"/r{i}", "GET")
        r = m.route(key, f"api{i % 10}", f"id{i % 10}", "rest", "prod", f"/r{i}", "GET", f"GET /r{i}")
        r.record(200, float(i % 300), 1.0, CACHE_MISS)
    m.gauges["cache_bytes"] = 1 << 20
    m.counters["redis_fallbacks"] = 3
    data = m.snapshot()
    snap = decode_snapshot(data)
    assert snap is not None and snap.pid == os.getpid() and len(snap.routes) == 1000
    back = WorkerMetrics()
    back.restore(snap)
    for key, r in m.routes.items():
        _same(back.routes[key], r)
    assert back.counters == {"redis_fallbacks": 3} and back.gauges == {}

    seconds = min(timeit.repeat(m.snapshot, number=20, repeat=3)) / 20
    print(f"\nWorkerMetrics.snapshot(): 1000 routes, {len(data)} bytes, {seconds * 1e3:.2f} ms")
    assert seconds < 0.05


def test_publisher_run_publishes_until_cancelled(tmp_path: Path) -> None:
    m = WorkerMetrics()
    r = _http(m)
    publisher = MetricsPublisher(str(tmp_path / "node"), 4)

    async def main() -> None:
        task = asyncio.create_task(publisher.run(m, interval=0.01))
        await asyncio.sleep(0.03)
        r.record(200, 1.0, 1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    node = node_totals(str(tmp_path / "node"))
    assert node.workers == [4] and node.routes[HTTP_KEY].count == 1  # the final publish landed


# ----------------------------------------------------------------------------- Prometheus


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_LINE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        m = _LABEL_RE.match(text, i)
        assert m is not None, text[i:]
        i = m.end()
        value: list[str] = []
        while text[i] != '"':
            if text[i] == "\\":
                value.append(_UNESCAPE[text[i + 1]])
                i += 2
            else:
                value.append(text[i])
                i += 1
        assert m.group(1) not in labels
        labels[m.group(1)] = "".join(value)
        i += 1
        if i < len(text):
            assert text[i] == ",", text[i:]
            i += 1
    return labels


def _parse_strict(text: str) -> tuple[Samples, dict[str, str]]:
    """A strict reader of the text format 0.0.4 (used when prometheus_client is not installed)."""
    assert text.endswith("\n")
    samples: Samples = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    current = ""
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types and name in helps
            types[name] = kind
            current = name
            continue
        m = _LINE_RE.fullmatch(line)
        assert m is not None, line
        name, labels, value = m.group(1), _parse_labels(m.group(2) or ""), float(m.group(3))
        family = name
        if types.get(current) == "histogram":
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert ("le" in labels) == name.endswith("_bucket")
        assert family == current, f"{name} outside its family {current}"
        key = (name, frozenset(labels.items()))
        assert key not in samples
        samples[key] = value
    normal = {(n.removesuffix("_total") if k == "counter" else n): k for n, k in types.items()}
    return samples, normal


def _parse(text: str) -> tuple[Samples, dict[str, str]]:
    samples, types = _parse_strict(text)
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return samples, types
    client: Samples = {}
    for fam in text_string_to_metric_families(text):
        assert fam.type == types[fam.name.removesuffix("_total")]
        for s in fam.samples:
            client[(s.name, frozenset(s.labels.items()))] = s.value
    assert client == samples
    return client, types


def _labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_exposition_parses_and_matches(tmp_path: Path) -> None:
    _run_workers(tmp_path, (0, 1), (1, 1))
    node = node_totals(str(tmp_path))
    text = exposition(node)
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    samples, types = _parse(text)

    assert types == {
        "fastgw_Count": "counter",
        "fastgw_4XXError": "counter",
        "fastgw_5XXError": "counter",
        "fastgw_CacheHitCount": "counter",
        "fastgw_CacheMissCount": "counter",
        "fastgw_Latency_milliseconds": "histogram",
        "fastgw_IntegrationLatency_milliseconds": "histogram",
        "fastgw_reloads_ok": "counter",
        "fastgw_throttled": "counter",
        "fastgw_active_connections": "gauge",
        "fastgw_config_version": "gauge",
        "fastgw_workers_reporting": "gauge",
    }
    rest = node.routes[REST_KEY]
    http = node.routes[HTTP_KEY]
    rl = dict(ApiName="pets", ApiId="a1b2c3", Stage="prod", Resource="/pets/{id}", Method="GET")
    hl = dict(ApiName="orders", ApiId="h7h7h7", Stage="$default", Route="POST /orders")
    for r, lab in ((rest, rl), (http, hl)):
        assert samples["fastgw_Count_total", _labels(**lab)] == r.count
        assert samples["fastgw_4XXError_total", _labels(**lab)] == r.errors_4xx
        assert samples["fastgw_5XXError_total", _labels(**lab)] == r.errors_5xx
        assert samples["fastgw_CacheHitCount_total", _labels(**lab)] == r.cache_hits
        assert samples["fastgw_CacheMissCount_total", _labels(**lab)] == r.cache_misses
        for metric, counts, total in (
            ("Latency", r.latency, r.latency_sum),
            ("IntegrationLatency", r.integration, r.integration_sum),
        ):
            name = f"fastgw_{metric}_milliseconds"
            cum = 0
            for bound, c in zip([*LATENCY_BUCKETS_MS, math.inf], counts, strict=True):
                cum += c
                le = "+Inf" if bound == math.inf else repr(bound)
                assert samples[f"{name}_bucket", _labels(**lab, le=le)] == cum
            assert samples[f"{name}_count", _labels(**lab)] == cum == sum(counts)
            assert samples[f"{name}_sum", _labels(**lab)] == total
    assert samples["fastgw_throttled_total", frozenset()] == 15
    assert samples["fastgw_active_connections", frozenset()] == 7
    assert samples["fastgw_workers_reporting", frozenset()] == 2
    assert "# TYPE fastgw_Count_total counter" in text
    assert "# TYPE fastgw_Latency_milliseconds histogram" in text


def test_label_values_are_escaped() -> None:
    m = WorkerMetrics()
    nasty = 'say "hi"\\now\nbye'
    m.route(("x", "s", "/", "GET"), nasty, "x", "rest", "s", "/a\\b", "GET", "GET /").record(200, 1.0, None)
    node = NodeMetrics()
    node.routes.update(m.routes)
    node.counters["odd-name.total"] = 1
    node.gauges["Count_total"] = 1.5  # collides with a route family: skipped
    text = exposition(node, prefix="gw_")
    assert escape_label_value(nasty) == 'say \\"hi\\"\\\\now\\nbye'
    assert f'ApiName="{escape_label_value(nasty)}"' in text
    samples, types = _parse(text)
    lab = dict(ApiName=nasty, ApiId="x", Stage="s", Resource="/a\\b", Method="GET")
    assert samples["gw_Count_total", _labels(**lab)] == 1
    assert samples["gw_odd_name_total", frozenset()] == 1
    assert types["gw_Count"] == "counter"
    with pytest.raises(ValueError):
        exposition(node, prefix="")  # "4XXError" is not a metric name


def test_empty_node_exposition() -> None:
    samples, types = _parse(exposition(NodeMetrics()))
    assert samples == {("fastgw_workers_reporting", frozenset()): 0}
    assert types["fastgw_Latency_milliseconds"] == "histogram"


# ----------------------------------------------------------------------------- cost


def test_record_cost() -> None:
    r = RouteStats("a", "id", "rest", "s", "/", "GET", "GET /")
    n = 100_000
    results: dict[str, float] = {}
    for stmt in ("record(200, 12.5, 10.0, CACHE_MISS)", "record(503, 12.5, None)"):
        t = timeit.Timer(f"r.{stmt}", globals={"r": r, "CACHE_MISS": CACHE_MISS})
        results[stmt] = min(t.repeat(repeat=5, number=n)) / n
    baseline = min(timeit.Timer("pass").repeat(repeat=5, number=n)) / n
    for stmt, seconds in results.items():
        print(f"\nRouteStats.{stmt}: {seconds * 1e9:.0f} ns/call (loop overhead {baseline * 1e9:.0f} ns)")
        assert seconds < 20e-6

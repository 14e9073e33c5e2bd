"""OTLP/HTTP metrics export: node totals pushed to a real OTLP receiver (http.server + protobuf)."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from fastgw import __version__
from fastgw.telemetry.metrics import (
    CACHE_HIT,
    CACHE_MISS,
    CACHE_NONE,
    LATENCY_BUCKETS_MS,
    MetricsPublisher,
    RouteKey,
    WorkerMetrics,
    snapshot_path,
)
from fastgw.telemetry.otel import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    OtlpMetricsExporter,
    OtlpSettings,
    parse_pairs,
    settings_from_env,
)

ExportRequest = metrics_service_pb2.ExportMetricsServiceRequest

# ----------------------------------------------------------------------------- the receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    request: Any  # ExportMetricsServiceRequest


class Receiver:
    """A minimal OTLP/HTTP collector: POST /v1/metrics, protobuf (gzip or deflate), recorded."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportRequest.FromString(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.status
                if status == 200:
                    with receiver._cond:
                        receiver.received.append(Received(self.path, headers, request))
                        receiver._cond.notify_all()
                payload = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            block_on_close = False

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02})
        self._thread.daemon = True
        self._thread.start()

    def wait_for(self, n: int, timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., OtlpMetricsExporter]]:
    made: list[OtlpMetricsExporter] = []

    def make(settings: OtlpSettings, directory: Path, **kwargs: Any) -> OtlpMetricsExporter:
        kwargs.setdefault("instance_id", "node-a:42")
        exporter = OtlpMetricsExporter(settings, str(directory), **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.stop(timeout=2.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- the node's data

REST_KEY: RouteKey = ("a1b2c3", "prod", "/pets/{id}", "GET")
HTTP_KEY: RouteKey = ("h7h7h7", "$default", "POST /orders", "")
REST_ATTRS = {
    "ApiName": "pets",
    "ApiId": "a1b2c3",
    "Stage": "prod",
    "Resource": "/pets/{id}",
    "Method": "GET",
}
HTTP_ATTRS = {"ApiName": "orders", "ApiId": "h7h7h7", "Stage": "$default", "Route": "POST /orders"}

# (status, latency_ms, integration_ms, cache) per worker and route.
Request = tuple[int, float, float | None, int]
TRAFFIC: dict[int, tuple[list[Request], list[Request]]] = {
    0: (
        [(200, 0.5, None, CACHE_HIT), (404, 3.0, 2.0, CACHE_MISS), (500, 120.0, 100.0, CACHE_MISS)],
        [(201, 12.0, 10.0, CACHE_NONE)],
    ),
    1: (
        [(200, 7.5, 5.0, CACHE_MISS), (503, 40000.0, 30000.0, CACHE_MISS)],
        [(400, 1.0, None, CACHE_NONE)],
    ),
}


def _publish(directory: Path, worker: int, extra_rest: int = 0) -> None:
    """Publish a real snapshot of ``worker``: its TRAFFIC, plus ``extra_rest`` 200s of 0.5 ms."""
    m = WorkerMetrics()
    rest = m.route(REST_KEY, "pets", "a1b2c3", "rest", "prod", "/pets/{id}", "GET", "GET /pets/{id}")
    http = m.route(HTTP_KEY, "orders", "h7h7h7", "http", "$default", "/orders", "POST", "POST /orders")
    rest_requests, http_requests = TRAFFIC[worker]
    for req in rest_requests + [(200, 0.5, 0.25, CACHE_MISS)] * extra_rest:
        rest.record(*req)
    for req in http_requests:
        http.record(*req)
    m.gauges["active_connections"] = 3 + worker
    m.gauges["config_version"] = 7 + worker
    m.incr("throttled", 5 * (worker + 1))
    m.incr("reloads_ok")
    MetricsPublisher(str(directory), worker).publish(m)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    _publish(tmp_path, 0)
    _publish(tmp_path, 1)
    return tmp_path


def _metrics(request: Any) -> dict[str, Any]:
    (rm,) = request.resource_metrics
    (sm,) = rm.scope_metrics
    names = [m.name for m in sm.metrics]
    assert len(names) == len(set(names))
    return {m.name: m for m in sm.metrics}


def _attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def _points(metric: Any) -> dict[str, Any]:
    """A metric's points by their ``ApiName`` (``""`` for the gateway's own metrics)."""
    data = getattr(metric, metric.WhichOneof("data"))
    out = {_attrs(p.attributes).get("ApiName", ""): p for p in data.data_points}
    assert len(out) == len(data.data_points)
    return out


def _buckets(*indexes: int) -> list[int]:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for i in indexes:
        counts[i] += 1
    return counts


# ----------------------------------------------------------------------------- the payload


def test_export_once_sends_every_metric(
    node: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    exporter = make_exporter(OtlpSettings(endpoint=receiver.url, timeout_seconds=2.0), node)
    before = time.time_ns()
    assert exporter.export_once() is True
    after = time.time_ns()
    assert (exporter.exported, exporter.failures, exporter.last_error) == (1, 0, None)
    (got,) = receiver.received
    assert got.path == "/v1/metrics"
    assert got.headers["content-type"] == "application/x-protobuf"

    (rm,) = got.request.resource_metrics
    assert _attrs(rm.resource.attributes) == {
        "service.name": "fastgw",
        "service.version": __version__,
        "service.instance.id": "node-a:42",
        "host.name": socket.gethostname(),
    }
    (sm,) = rm.scope_metrics
    assert (sm.scope.name, sm.scope.version) == ("fastgw", __version__)

    metrics = _metrics(got.request)
    assert list(metrics) == [
        "Count",
        "4XXError",
        "5XXError",
        "CacheHitCount",
        "CacheMissCount",
        "Latency",
        "IntegrationLatency",
        "fastgw.reloads_ok",
        "fastgw.throttled",
        "fastgw.active_connections",
        "fastgw.config_version",
        "fastgw.workers_reporting",
    ]
    start = exporter.start_time_unix_nano
    assert start < before

    expected_sums = {
        "Count": (5, 2),
        "4XXError": (1, 1),
        "5XXError": (2, 0),
        "CacheHitCount": (1, 0),
        "CacheMissCount": (4, 0),
    }
    for name, (rest, http) in expected_sums.items():
        metric = metrics[name]
        assert metric.unit == "{request}"
        assert metric.description
        assert metric.sum.is_monotonic
        assert metric.sum.aggregation_temporality == 2  # CUMULATIVE
        points = _points(metric)
        assert _attrs(points["pets"].attributes) == REST_ATTRS
        assert _attrs(points["orders"].attributes) == HTTP_ATTRS
        assert (points["pets"].as_int, points["orders"].as_int) == (rest, http), name
        for p in points.values():
            assert p.start_time_unix_nano == start
            assert before <= p.time_unix_nano <= after

    latency = metrics["Latency"]
    integration = metrics["IntegrationLatency"]
    expected_histograms = {
        # 0.5, 3, 120, 7.5, 40000 ms (the last one above every bound)
        ("Latency", "pets"): (5, 40131.0, _buckets(0, 2, 7, 3, 14)),
        # 12, 1 ms
        ("Latency", "orders"): (2, 13.0, _buckets(4, 0)),
        # 2, 100, 5, 30000 ms: bounds are inclusive; the cache hit has none
        ("IntegrationLatency", "pets"): (4, 30107.0, _buckets(1, 6, 2, 13)),
        # 10 ms; the 400 has none
        ("IntegrationLatency", "orders"): (1, 10.0, _buckets(3)),
    }
    for metric in (latency, integration):
        assert metric.unit == "ms"
        assert metric.histogram.aggregation_temporality == 2
        points = _points(metric)
        assert _attrs(points["pets"].attributes) == REST_ATTRS
        assert _attrs(points["orders"].attributes) == HTTP_ATTRS
        for api, p in points.items():
            count, total, buckets = expected_histograms[(metric.name, api)]
            assert (p.count, p.sum, list(p.bucket_counts)) == (count, total, buckets), (metric.name, api)
            assert list(p.explicit_bounds) == list(LATENCY_BUCKETS_MS)
            assert not p.HasField("min") and not p.HasField("max")
            assert p.start_time_unix_nano == start

    throttled = metrics["fastgw.throttled"]
    assert throttled.sum.is_monotonic and throttled.sum.aggregation_temporality == 2
    assert throttled.description == "Requests refused with 429 by throttling."
    assert _points(throttled)[""].as_int == 15
    assert _points(metrics["fastgw.reloads_ok"])[""].as_int == 2
    gauges = {"fastgw.active_connections": 7.0, "fastgw.config_version": 8.0, "fastgw.workers_reporting": 2.0}
    for name, value in gauges.items():
        (p,) = metrics[name].gauge.data_points
        assert (p.as_double, list(p.attributes)) == (value, []), name


def test_cumulative_values_grow_and_a_drop_moves_the_start_time(
    node: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    exporter = make_exporter(OtlpSettings(endpoint=receiver.url, timeout_seconds=2.0), node)
    start = exporter.start_time_unix_nano
    assert exporter.export_once()
    _publish(node, 0, extra_rest=3)
    assert exporter.export_once()
    first, second = (_metrics(r.request) for r in receiver.received)
    count = _points(second["Count"])["pets"]
    assert (count.as_int, count.start_time_unix_nano) == (8, start)
    assert _points(second["Latency"])["pets"].bucket_counts[0] == 4
    assert _points(second["IntegrationLatency"])["pets"].count == 7

    # Worker 1's file disappears: its counts leave the totals. The series that went down get the
    # previous collection as their start time; the others keep the exporter's.
    previous = _points(second["Count"])["pets"].time_unix_nano
    os.remove(snapshot_path(str(node), 1))
    assert exporter.export_once()
    third = _metrics(receiver.received[2].request)
    count = _points(third["Count"])["pets"]
    assert (count.as_int, count.start_time_unix_nano) == (6, previous)
    errors_4xx = _points(third["4XXError"])["pets"]  # worker 1 had no 4xx on this route
    assert (errors_4xx.as_int, errors_4xx.start_time_unix_nano) == (1, start)
    assert _points(third["5XXError"])["pets"].start_time_unix_nano == previous
    assert _points(third["Latency"])["orders"].start_time_unix_nano == previous
    assert _points(third["fastgw.throttled"])[""].start_time_unix_nano == previous
    assert _points(third["fastgw.reloads_ok"])[""].as_int == 1
    assert third["fastgw.workers_reporting"].gauge.data_points[0].as_double == 1.0
    assert first["Count"].sum.data_points[0].start_time_unix_nano == start

    # Growing again from there keeps the moved start time.
    _publish(node, 0, extra_rest=4)
    assert exporter.export_once()
    fourth = _metrics(receiver.received[3].request)
    count = _points(fourth["Count"])["pets"]
    assert (count.as_int, count.start_time_unix_nano) == (7, previous)


def test_an_empty_node_exports_workers_reporting_only(
    tmp_path: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    exporter = make_exporter(OtlpSettings(endpoint=receiver.url), tmp_path / "missing")
    assert exporter.export_once()
    metrics = _metrics(receiver.received[0].request)
    assert list(metrics) == ["fastgw.workers_reporting"]
    assert metrics["fastgw.workers_reporting"].gauge.data_points[0].as_double == 0.0


# ----------------------------------------------------------------------------- configuration


def test_env_configuration_reaches_the_receiver(
    node: Path,
    receiver: Receiver,
    make_exporter: Callable[..., OtlpMetricsExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url + "/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20s3cret,x-tenant=a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=b")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gw")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.instance.id=i-1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "250")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")  # read by the SDK exporter
    settings = settings_from_env(OtlpSettings(headers={"X-Extra": "1"}))
    assert settings == OtlpSettings(
        endpoint=None,
        metrics_endpoint=receiver.url + "/v1/metrics",
        headers={"authorization": "Bearer s3cret", "x-tenant": "b", "x-extra": "1"},
        interval_seconds=0.25,
        timeout_seconds=2.0,
        service_name="edge-gw",
        resource_attributes={"deployment.environment": "prod", "service.instance.id": "i-1"},
    )
    exporter = make_exporter(settings, node)
    assert exporter.interval == 0.25 and exporter.timeout == 2.0
    assert exporter.export_once()
    (got,) = receiver.received
    assert got.path == "/v1/metrics"
    assert got.headers["content-encoding"] == "gzip"
    assert got.headers["authorization"] == "Bearer s3cret"
    assert (got.headers["x-tenant"], got.headers["x-extra"]) == ("b", "1")
    resource = _attrs(got.request.resource_metrics[0].resource.attributes)
    assert resource["service.name"] == "edge-gw"
    assert resource["service.instance.id"] == "i-1"
    assert resource["deployment.environment"] == "prod"
    assert _points(_metrics(got.request)["Count"])["pets"].as_int == 5


def test_settings_off_without_endpoint_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_env(OtlpSettings()) is None
    base = OtlpSettings(endpoint="http://collector:4318")
    assert settings_from_env(base) is not None
    for name, value in [
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_SDK_DISABLED", "TRUE"),
    ]:
        assert settings_from_env(base, {name: value}) is None, (name, value)
    assert settings_from_env(base, {"OTEL_METRICS_EXPORTER": "prometheus, otlp"}) is not None
    assert settings_from_env(base, {"OTEL_SDK_DISABLED": "false"}) is not None
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert settings_from_env(base) is None


def _resolved(base: OtlpSettings, **env: str) -> OtlpSettings:
    settings = settings_from_env(base, env)
    assert settings is not None
    return settings


def test_settings_precedence() -> None:
    # Endpoints: the config, then the metrics URL, then the base URL (+ /v1/metrics).
    assert (
        _resolved(OtlpSettings(), OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318").url
        == "http://c:4318/v1/metrics"
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/x",
    }
    assert _resolved(OtlpSettings(), **env).url == "http://m/x"
    assert _resolved(OtlpSettings(endpoint="http://cfg:1/"), **env).url == "http://cfg:1/v1/metrics"
    both = OtlpSettings(endpoint="http://cfg:1", metrics_endpoint="http://cfg:2/ingest")
    assert _resolved(both, **env).url == "http://cfg:2/ingest"

    base = OtlpSettings(endpoint="http://c:4318")
    # Durations: the config, then the variables (milliseconds), then the defaults.
    defaults = _resolved(base)
    assert (defaults.interval_seconds, defaults.timeout_seconds) == (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
    assert (DEFAULT_INTERVAL, DEFAULT_TIMEOUT) == (10.0, 5.0)
    timeouts = {"OTEL_EXPORTER_OTLP_TIMEOUT": "3000", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1500"}
    assert _resolved(base, **timeouts).timeout_seconds == 1.5
    assert _resolved(base, OTEL_EXPORTER_OTLP_TIMEOUT="3000").timeout_seconds == 3.0
    own = OtlpSettings(endpoint="http://c:4318", interval_seconds=30.0, timeout_seconds=1.0)
    settings = _resolved(own, OTEL_METRIC_EXPORT_INTERVAL="1000", **timeouts)
    assert (settings.interval_seconds, settings.timeout_seconds) == (30.0, 1.0)

    # Service name: the config, OTEL_SERVICE_NAME, the resource attributes, then fastgw.
    attrs = "service.name=from-attrs,team=gw"
    assert _resolved(base).service_name == "fastgw"
    assert _resolved(base, OTEL_RESOURCE_ATTRIBUTES=attrs).service_name == "from-attrs"
    assert _resolved(base, OTEL_RESOURCE_ATTRIBUTES=attrs, OTEL_SERVICE_NAME="env").service_name == "env"
    named = OtlpSettings(endpoint="http://c:4318", service_name="cfg", resource_attributes={"team": "edge"})
    settings = _resolved(named, OTEL_RESOURCE_ATTRIBUTES=attrs, OTEL_SERVICE_NAME="env")
    assert settings.service_name == "cfg"
    assert settings.resource_attributes == {"service.name": "from-attrs", "team": "edge"}


def test_invalid_values_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fastgw.telemetry")
    base = OtlpSettings(endpoint="http://c:4318")
    settings = _resolved(base, OTEL_METRIC_EXPORT_INTERVAL="soon", OTEL_EXPORTER_OTLP_TIMEOUT="-5")
    assert (settings.interval_seconds, settings.timeout_seconds) == (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
    assert sorted(r.variable for r in caplog.records) == [  # type: ignore[attr-defined]
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ]
    caplog.clear()
    pairs = parse_pairs("a=1, bogus-s3cret ,=x,,b=%3D%20c,url=http://h/?q=1", "OTEL_EXPORTER_OTLP_HEADERS")
    assert pairs == {"a": "1", "b": "= c", "url": "http://h/?q=1"}
    assert [r.position for r in caplog.records] == [1, 2]  # type: ignore[attr-defined]
    assert "s3cret" not in caplog.text


def test_exporter_needs_an_endpoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        OtlpMetricsExporter(OtlpSettings(), str(tmp_path))


# ----------------------------------------------------------------------------- failures


def test_collector_down_then_back(
    node: Path, make_exporter: Callable[..., OtlpMetricsExporter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = _closed_port()
    settings = OtlpSettings(endpoint=f"http://user:pw@127.0.0.1:{port}", timeout_seconds=0.3)
    exporter = make_exporter(settings, node)
    for attempt in (1, 2, 3):
        t0 = time.monotonic()
        assert exporter.export_once() is False
        assert time.monotonic() - t0 < 2.0
        assert (exporter.failures, exporter.exported) == (attempt, 0)
    assert exporter.last_error
    ours = [r for r in caplog.records if r.name == "fastgw.telemetry"]
    assert [(r.levelname, r.getMessage()) for r in ours] == [
        ("WARNING", "OTLP metrics export failing; logged again when it recovers")
    ]
    assert ours[0].endpoint == f"http://127.0.0.1:{port}/v1/metrics"  # type: ignore[attr-defined]
    assert ours[0].error == exporter.last_error  # type: ignore[attr-defined]
    # The SDK's own error lines (one per attempt) are folded into ours.
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]

    receiver = Receiver(port)
    try:
        caplog.clear()
        assert exporter.export_once() is True
        assert (exporter.failures, exporter.exported, exporter.last_error) == (3, 1, None)
        (record,) = [r for r in caplog.records if r.name == "fastgw.telemetry"]
        assert record.getMessage() == "OTLP metrics export recovered"
        assert record.failed_exports == 3  # type: ignore[attr-defined]
        assert _points(_metrics(receiver.received[0].request)["Count"])["pets"].as_int == 5

        # A refusal (not retried) counts as a failure too, and starts a new outage.
        caplog.clear()
        receiver.status = 400
        assert exporter.export_once() is False
        assert exporter.failures == 4 and "400" in (exporter.last_error or "")
        assert [r.levelname for r in caplog.records if r.name == "fastgw.telemetry"] == ["WARNING"]
        receiver.status = 200
        assert exporter.export_once() is True
        exporter.stop(timeout=2.0)
    finally:
        receiver.close()


def test_a_collector_that_never_answers_times_out(
    node: Path, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    with socket.socket() as silent:  # connections complete in the backlog; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings = OtlpSettings(endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_seconds=0.3)
        exporter = make_exporter(settings, node)
        t0 = time.monotonic()
        assert exporter.export_once() is False
        elapsed = time.monotonic() - t0
        assert 0.25 < elapsed < 1.5
        assert exporter.failures == 1
        exporter.start()
        t0 = time.monotonic()
        exporter.stop(timeout=2.0)  # the last export times out too, within its own timeout
        assert time.monotonic() - t0 < 1.5
        assert (exporter.failures, exporter.exported) == (2, 0)


def test_a_broken_node_directory_counts_as_a_failure(
    tmp_path: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    exporter = make_exporter(OtlpSettings(endpoint=receiver.url), not_a_directory)
    assert exporter.export_once() is False
    assert exporter.failures == 1 and "NotADirectoryError" in (exporter.last_error or "")
    assert receiver.received == []


def test_stop_with_the_collector_down_is_bounded(
    node: Path, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    settings = OtlpSettings(endpoint=f"http://127.0.0.1:{_closed_port()}", timeout_seconds=0.3)
    exporter = make_exporter(settings, node)
    exporter.start()
    t0 = time.monotonic()
    exporter.stop(timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    assert (exporter.failures, exporter.exported) == (1, 0)


# ----------------------------------------------------------------------------- the thread


def test_thread_exports_periodically_and_stop_exports_last(
    node: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    settings = OtlpSettings(endpoint=receiver.url, interval_seconds=0.05, timeout_seconds=2.0)
    exporter = make_exporter(settings, node)
    t0 = time.monotonic()
    exporter.start()
    assert time.monotonic() - t0 < 0.05  # never blocks the caller
    exporter.start()  # idempotent
    assert receiver.wait_for(3)
    _publish(node, 0, extra_rest=10)
    exporter.stop()
    assert exporter._thread is not None and not exporter._thread.is_alive()
    assert exporter.exported == len(receiver.received) >= 4
    assert exporter.failures == 0
    assert _points(_metrics(receiver.received[-1].request)["Count"])["pets"].as_int == 15
    starts = {_points(_metrics(r.request)["Count"])["pets"].start_time_unix_nano for r in receiver.received}
    assert starts == {exporter.start_time_unix_nano}

    exporter.stop()  # idempotent
    assert exporter.export_once() is False  # stopped: nothing more is sent
    with pytest.raises(RuntimeError):
        exporter.start()
    assert exporter.exported == len(receiver.received)


def test_stop_exports_once_even_if_never_started_or_before_the_first_interval(
    node: Path, receiver: Receiver, make_exporter: Callable[..., OtlpMetricsExporter]
) -> None:
    slow = OtlpSettings(endpoint=receiver.url, interval_seconds=60.0, timeout_seconds=2.0)
    make_exporter(slow, node).stop()
    assert len(receiver.received) == 1
    started = make_exporter(slow, node)
    started.start()
    started.stop()
    assert len(receiver.received) == 2
    assert started.exported == 1


def test_a_gateway_pushes_its_metrics_to_the_collector(gateway_factory: Any, receiver: Receiver) -> None:
    from helpers import RawConn

    cfg = {
        "gateway": {"otlp": {"endpoint": receiver.url, "interval_seconds": 0.5}},
        "apis": [
            {
                "name": "pushed",
                "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "x"}}],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    gw = gateway_factory(cfg, workers=2)
    for _ in range(6):
        with RawConn(gw.port) as c:
            assert c.request("GET", "/prod/x").status == 200

    def counted() -> float:
        for got in list(receiver.received):
            metrics = _metrics(got.request)
            if "Count" in metrics:
                point = _points(metrics["Count"]).get("pushed")
                if point is not None and point.as_int == 6:
                    return 6
        return -1

    deadline = time.monotonic() + 6.0
    while counted() != 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted() == 6
    resource = _attrs(receiver.received[-1].request.resource_metrics[0].resource.attributes)
    assert resource["service.name"] == "fastgw"

"""OpenTelemetry metrics over OTLP/HTTP: the node's totals pushed to a collector.

The admin process runs one ``OtlpMetricsExporter``. Every interval it sums the workers' snapshots
(``fastgw.telemetry.metrics.node_totals``), turns them into OTLP ``MetricsData`` with the SDK's
data classes, and POSTs them (protobuf) with the SDK's ``OTLPMetricExporter``. No ``MeterProvider``
is involved: the numbers are already aggregated, so they are sent as they are, with cumulative
temporality. The request path is not touched.

Metrics (the same numbers as the Prometheus exposition, ``fastgw.telemetry.prometheus``):

- ``Count``, ``4XXError``, ``5XXError``, ``CacheHitCount``, ``CacheMissCount``: monotonic cumulative
  Sums, unit ``{request}``, one point per route (AWS's CloudWatch names).
- ``Latency``, ``IntegrationLatency``: cumulative explicit-bucket Histograms, unit ``ms``, bounds
  ``LATENCY_BUCKETS_MS`` (upper bounds inclusive, as OTLP defines them). Min and max are unset:
  the buckets do not keep them.
- ``fastgw.<name>``: the gateway's internal counters (monotonic cumulative Sums) and gauges
  (Gauges), summed over the workers (``config_version``: the max).
- ``fastgw.workers_reporting`` (Gauge): the workers whose snapshot was summed.

Route attributes are the CloudWatch dimensions: ``ApiName``, ``ApiId``, ``Stage``, then
``Resource`` and ``Method`` for REST APIs or ``Route`` (the route key) for HTTP and WebSocket APIs.
The resource carries ``service.name`` (``fastgw`` unless configured), ``service.version``,
``service.instance.id`` (host name and supervisor pid) and ``host.name``, plus the attributes of
``OTEL_RESOURCE_ATTRIBUTES`` and the config. The scope is ``fastgw``.

Start times. A point's ``start_time_unix_nano`` is the exporter's start, as the node totals
survive worker restarts (``fastgw.telemetry.metrics``). When a series goes down anyway (a slot
went stale, the files were removed), that series' start time moves to the previous collection,
so that backends see a reset, as the OTel data model asks.

Configuration: the config's ``OtlpSettings`` first, then the standard ``OTEL_*`` variables
(``settings_from_env``). The SDK exporter also reads the certificate and compression variables
(``OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE``, ``..._CLIENT_KEY``, ``..._CLIENT_CERTIFICATE``,
``..._COMPRESSION``).

The OpenTelemetry packages are optional: this module imports them only when an exporter is
created.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote, urlsplit

from fastgw import __version__
from fastgw.telemetry.metrics import LATENCY_BUCKETS_MS, NodeMetrics, RouteKey, RouteStats, node_totals

# NOTE: the Prometheus tables are the single source of the descriptions.
from fastgw.telemetry.prometheus import _HISTOGRAMS, _INTERNAL_HELP, _ROUTE_COUNTERS

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import Metric, MetricsData
    from opentelemetry.util.types import Attributes

log = logging.getLogger("fastgw.telemetry")

DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_SERVICE_NAME = "fastgw"
METRICS_PATH = "/v1/metrics"
SCOPE_NAME = "fastgw"

_REQUEST_UNIT = "{request}"
_LATENCY_UNIT = "ms"
# NOTE: the SDK types min and max as float; None leaves the optional proto fields unset.
_UNKNOWN = cast("float", None)


@dataclass
class OtlpSettings:
    """Where and how often the node's metrics are pushed. ``settings_from_env`` completes it."""

    #: Base URL of the collector (``http://127.0.0.1:4318``); metrics go to ``{endpoint}/v1/metrics``.
    #: None: ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (full URL) or ``OTEL_EXPORTER_OTLP_ENDPOINT``
    #: (base URL); neither: export is off.
    endpoint: str | None = None
    #: Full URL of the metrics endpoint, for a collector that does not serve ``/v1/metrics``.
    #: Wins over ``endpoint``.
    metrics_endpoint: str | None = None
    #: Headers of every export (authentication, tenant). ``OTEL_EXPORTER_OTLP_HEADERS`` and
    #: ``OTEL_EXPORTER_OTLP_METRICS_HEADERS`` add to them; these win on the same name.
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds between exports. None: ``OTEL_METRIC_EXPORT_INTERVAL`` (ms), else 10 s.
    interval_seconds: float | None = None
    #: Seconds one export may take, retries included. None: ``OTEL_EXPORTER_OTLP_METRICS_TIMEOUT``
    #: or ``OTEL_EXPORTER_OTLP_TIMEOUT`` (ms), else 5 s.
    timeout_seconds: float | None = None
    #: The resource's ``service.name``. None: ``OTEL_SERVICE_NAME``, else ``service.name`` of the
    #: resource attributes, else ``fastgw``.
    service_name: str | None = None
    #: More resource attributes (``deployment.environment``...); ``OTEL_RESOURCE_ATTRIBUTES`` adds
    #: to them and these win on the same key.
    resource_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        """The URL exports are POSTed to, or None when no endpoint is set."""
        if self.metrics_endpoint:
            return self.metrics_endpoint
        if self.endpoint:
            return self.endpoint.rstrip("/") + METRICS_PATH
        return None


def parse_pairs(text: str, variable: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (the format of ``OTEL_EXPORTER_OTLP_HEADERS`` and
    ``OTEL_RESOURCE_ATTRIBUTES``), URL-decoding keys and values. Malformed entries are skipped."""
    out: dict[str, str] = {}
    for position, item in enumerate(text.split(",")):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        if not sep or not key:
            # APPSEC: the entry may hold a secret (an API key header); only its position is logged.
            log.warning("malformed entry ignored", extra={"variable": variable, "position": position})
            continue
        out[key] = unquote(value).strip()
    return out


def _env_seconds(environ: Mapping[str, str], *names: str) -> float | None:
    """The first of the variables that is set, read as milliseconds, in seconds."""
    for name in names:
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        try:
            ms = float(raw)
        except ValueError:
            ms = -1.0
        if ms > 0 and ms != float("inf"):
            return ms / 1000.0
        log.warning("invalid duration ignored, expected positive milliseconds", extra={"variable": name})
    return None


def settings_from_env(base: OtlpSettings, environ: Mapping[str, str] | None = None) -> OtlpSettings | None:
    """``base`` completed from the ``OTEL_*`` variables, or None when metrics export is off.

    Off: no endpoint in ``base`` nor in the environment, ``OTEL_SDK_DISABLED=true``, or
    ``OTEL_METRICS_EXPORTER`` set without ``otlp`` (``none``, ``prometheus``...). The result has
    every field resolved: ``metrics_endpoint`` is the full URL, the durations and the service
    name are set, and the environment's headers and resource attributes are merged in.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = env.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if exporters and "otlp" not in {e.strip() for e in exporters.split(",")}:
        return None
    url = base.url
    if url is None:
        url = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip() or None
    if url is None:
        generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        url = generic.rstrip("/") + METRICS_PATH if generic else None
    if url is None:
        return None
    headers: dict[str, str] = {}
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"):
        headers.update({k.lower(): v for k, v in parse_pairs(env.get(name, ""), name).items()})
    headers.update({k.lower(): v for k, v in base.headers.items()})
    attributes = parse_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES")
    attributes.update(base.resource_attributes)
    interval = base.interval_seconds or _env_seconds(env, "OTEL_METRIC_EXPORT_INTERVAL") or DEFAULT_INTERVAL
    timeout = (
        base.timeout_seconds
        or _env_seconds(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        or DEFAULT_TIMEOUT
    )
    service = (
        base.service_name
        or env.get("OTEL_SERVICE_NAME", "").strip()
        or attributes.get("service.name")
        or DEFAULT_SERVICE_NAME
    )
    return OtlpSettings(
        endpoint=base.endpoint,
        metrics_endpoint=url,
        headers=headers,
        interval_seconds=interval,
        timeout_seconds=timeout,
        service_name=service,
        resource_attributes=attributes,
    )


def _redact(url: str) -> str:
    """The URL without credentials or query, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def route_attributes(r: RouteStats) -> dict[str, str]:
    """The CloudWatch dimensions of a route, as the Prometheus labels are."""
    attrs = {"ApiName": r.api_name, "ApiId": r.api_id, "Stage": r.stage}
    if r.kind == "rest":
        attrs["Resource"] = r.resource
        attrs["Method"] = r.method
    else:
        attrs["Route"] = r.route_key
    return attrs


class _SdkLogCapture(logging.Filter):
    """Takes the SDK exporter's records away while one of our exports runs, on that thread only.

    The SDK logs every failed attempt at ERROR; we log once per outage, with its last message.
    Records of other threads (another user of the SDK in the process) pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sink: list[str] | None = getattr(self.local, "sink", None)
        if sink is None:
            return True
        sink.append(record.getMessage())
        return False


_SDK_LOGGER = "opentelemetry.exporter.otlp.proto.http.metric_exporter"
_capture = _SdkLogCapture()
_capture_lock = threading.Lock()


def _install_capture() -> None:
    with _capture_lock:
        logger = logging.getLogger(_SDK_LOGGER)
        if _capture not in logger.filters:
            logger.addFilter(_capture)


class OtlpMetricsExporter:
    """Runs in the admin process: every interval, node_totals(directory) -> OTLP MetricsData -> POST.

    ``start`` runs the exports on a daemon thread; ``stop`` makes one last export and ends it.
    ``export_once`` never raises: a collector that cannot be reached or refuses the data is logged
    once per outage (a warning, then an info line when it recovers) and counted in ``failures``;
    successful exports are counted in ``exported``, and ``last_error`` says why the last one failed.
    One export takes at most about ``timeout_seconds`` (the SDK retries transient errors within it).

    ``instance_id`` is the resource's ``service.instance.id``. By default it is the host name and
    the parent's pid: the supervisor's, when the admin process runs the exporter.
    """

    def __init__(
        self,
        settings: OtlpSettings,
        directory: str,
        *,
        instance_id: str | None = None,
        max_age: float = 10.0,
    ) -> None:
        url = settings.url
        if url is None:
            raise ValueError("OTLP metrics export needs an endpoint")
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError as ex:
            raise RuntimeError(
                "OTLP metrics export needs the opentelemetry-sdk and "
                "opentelemetry-exporter-otlp-proto-http packages"
            ) from ex
        self.settings = settings
        self.directory = directory
        self.max_age = max_age
        self.url = url
        self.interval = settings.interval_seconds or DEFAULT_INTERVAL
        self.timeout = settings.timeout_seconds or DEFAULT_TIMEOUT
        hostname = socket.gethostname()
        attributes: dict[str, str] = {
            "service.version": __version__,
            "service.instance.id": instance_id or f"{hostname}:{os.getppid()}",
            "host.name": hostname,
        }
        attributes.update(settings.resource_attributes)
        attributes["service.name"] = (
            settings.service_name or settings.resource_attributes.get("service.name") or DEFAULT_SERVICE_NAME
        )
        self.resource = Resource(attributes)
        self._scope = InstrumentationScope(SCOPE_NAME, __version__)
        #: Wall-clock start of the cumulative series, in ns.
        self.start_time_unix_nano = time.time_ns()
        self.exported = 0
        self.failures = 0
        self.last_error: str | None = None
        # Per series: (start time, last value), to move the start time when a series goes down.
        self._series: dict[tuple[str, RouteKey | str], tuple[int, float]] = {}
        self._previous_ns = self.start_time_unix_nano
        self._failing = False
        self._streak = 0
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _install_capture()
        self._exporter = OTLPMetricExporter(
            endpoint=url, headers=dict(settings.headers), timeout=self.timeout
        )

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        """Export every ``interval`` on a daemon thread, the first one interval from now."""
        if self._stop.is_set():
            raise RuntimeError("the exporter was stopped")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fastgw-otlp-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export_once()
        self.export_once()  # the last counts, on stop

    def stop(self, timeout: float = 5.0) -> None:
        """Make one last export and stop, waiting at most ``timeout`` seconds for it."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is None:  # never started: the last export runs on a thread all the same
            self._thread = threading.Thread(target=self._run, name="fastgw-otlp-metrics", daemon=True)
            self._thread.start()
        self._thread.join(timeout)
        # The SDK's shutdown aborts a retry backoff still in progress and closes its session.
        self._closed = True
        self._exporter.shutdown()
        if self._thread.is_alive():
            log.warning("OTLP metrics export still running at stop", extra={"endpoint": _redact(self.url)})

    # ------------------------------------------------------------------ exports
    def export_once(self) -> bool:
        """Collect the node's totals and send them. True when the collector accepted them."""
        with self._lock:
            if self._closed:
                return False
            try:
                ok, error = self._send(self.collect(node_totals(self.directory, self.max_age)))
            except Exception as ex:  # telemetry must never stop the admin process
                ok, error = False, f"{type(ex).__name__}: {ex}"
            self._account(ok, error)
            return ok

    def _send(self, data: MetricsData) -> tuple[bool, str | None]:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        sink: list[str] = []
        _capture.local.sink = sink
        try:
            result = self._exporter.export(data)
        finally:
            _capture.local.sink = None
        if result is MetricExportResult.SUCCESS:
            return True, None
        return False, sink[-1] if sink else "export failed"

    def _account(self, ok: bool, error: str | None) -> None:
        if ok:
            self.exported += 1
            if self._failing:
                log.info(
                    "OTLP metrics export recovered",
                    extra={"endpoint": _redact(self.url), "failed_exports": self._streak},
                )
            self._failing = False
            self._streak = 0
            self.last_error = None
            return
        self.failures += 1
        self._streak += 1
        self.last_error = error
        if not self._failing:
            log.warning(
                "OTLP metrics export failing; logged again when it recovers",
                extra={"endpoint": _redact(self.url), "error": error},
            )
        self._failing = True

    def _start(self, key: tuple[str, RouteKey | str], value: float) -> int:
        """The start time of a cumulative series; it moves when the series went down."""
        seen = self._series.get(key)
        start = self.start_time_unix_nano
        if seen is not None:
            start = seen[0] if value >= seen[1] else self._previous_ns
        self._series[key] = (start, value)
        return start

    def collect(self, node: NodeMetrics) -> MetricsData:
        """The node's totals as OTLP ``MetricsData`` (one observation: it updates the start times)."""
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Gauge,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )

        cumulative = AggregationTemporality.CUMULATIVE
        now = time.time_ns()
        metrics: list[Metric] = []
        routes = sorted(
            node.routes.items(),
            key=lambda kv: (kv[1].api_name, kv[1].api_id, kv[1].stage, kv[1].resource, kv[1].method, kv[0]),
        )
        labelled: list[tuple[RouteKey, RouteStats, Attributes]] = [
            (key, r, route_attributes(r)) for key, r in routes
        ]
        if labelled:
            for aws, attr, help_text in _ROUTE_COUNTERS:
                points = []
                for key, r, attrs in labelled:
                    value: int = getattr(r, attr)
                    points.append(NumberDataPoint(attrs, self._start((aws, key), value), now, value))
                metrics.append(Metric(aws, help_text, _REQUEST_UNIT, Sum(points, cumulative, True)))
            for aws, attr, sum_attr, help_text in _HISTOGRAMS:
                hpoints = []
                for key, r, attrs in labelled:
                    counts: list[int] = list(getattr(r, attr))
                    total = sum(counts)
                    hpoints.append(
                        HistogramDataPoint(
                            attrs,
                            self._start((aws, key), total),
                            now,
                            total,
                            getattr(r, sum_attr),
                            counts,
                            LATENCY_BUCKETS_MS,
                            _UNKNOWN,
                            _UNKNOWN,
                        )
                    )
                metrics.append(Metric(aws, help_text, _LATENCY_UNIT, Histogram(hpoints, cumulative)))
        seen: set[str] = {m.name for m in metrics}
        for name, count in sorted(node.counters.items()):
            full = f"fastgw.{name}"
            if full in seen:
                continue
            seen.add(full)
            help_text = _INTERNAL_HELP.get(name, f"Gateway counter {name}, summed over the workers.")
            point = NumberDataPoint({}, self._start((full, ""), count), now, count)
            metrics.append(Metric(full, help_text, "", Sum([point], cumulative, True)))
        gauges = sorted(node.gauges.items())
        gauges.append(("workers_reporting", float(len(node.workers))))
        for name, gauge in gauges:
            full = f"fastgw.{name}"
            if full in seen:
                continue
            seen.add(full)
            help_text = (
                "Workers whose fresh metrics snapshot is included in these totals."
                if name == "workers_reporting"
                else _INTERNAL_HELP.get(name, f"Gateway gauge {name}, summed over the workers.")
            )
            metrics.append(Metric(full, help_text, "", Gauge([NumberDataPoint({}, 0, now, gauge)])))
        self._previous_ns = now
        scope = ScopeMetrics(self._scope, metrics, "")
        return MetricsData([ResourceMetrics(self.resource, [scope], "")])

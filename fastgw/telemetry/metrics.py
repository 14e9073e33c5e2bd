"""Request metrics: per-route counters and latency histograms, counted per worker, summed per node.

The model is AWS API Gateway's CloudWatch metrics. Every (API, stage, route) counts ``Count``,
``4XXError``, ``5XXError``, ``CacheHitCount`` and ``CacheMissCount``, and keeps the ``Latency`` and
``IntegrationLatency`` distributions as histograms over the fixed bounds ``LATENCY_BUCKETS_MS``.

How the numbers travel:

- Each worker owns one ``WorkerMetrics``. Only its event loop updates it, so nothing is locked.
  The request path holds a ``RouteStats`` per route (bound when the snapshot is compiled, found
  again by key after a reload) and calls ``RouteStats.record`` once per request. ``RouteStats``,
  the bounds and ``bucket_quantile`` live in the ``fastgw_core.stats`` kernel (compiled, with a
  pure-Python twin) and are re-exported here.
- About once a second a ``MetricsPublisher`` writes ``WorkerMetrics.snapshot()`` (msgpack) to
  ``<directory>/worker-<index>.msgpack`` with write-then-rename, so a reader never sees half a file.
- The admin process calls ``node_totals(directory)``. It sums the fresh snapshots into a
  ``NodeMetrics``, and ``fastgw.telemetry.prometheus.exposition`` renders that.

Counter resets. A worker's counters start at zero in a new process. To keep node totals from going
backwards when the supervisor restarts a crashed worker, the worker's first publish loads what the
previous occupant of its slot last published (when that file is at most ``carry_max_age`` old).
The counts continue from there, with one exception: requests counted after the dead worker's last
publish, at most one interval's worth, are lost. Totals can still drop in these cases:

- A slot stays empty for longer than ``max_age`` (its file goes stale and is ignored).
- The node restarts after more than ``carry_max_age``.
- The files are deleted.

Prometheus treats every such drop as a counter reset, so ``rate()`` and ``increase()`` stay correct.
Gauges are never carried over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import cast

import msgspec

from fastgw_core.stats import CACHE_HIT as CACHE_HIT
from fastgw_core.stats import CACHE_MISS as CACHE_MISS
from fastgw_core.stats import CACHE_NONE as CACHE_NONE
from fastgw_core.stats import HISTOGRAMS as HISTOGRAMS
from fastgw_core.stats import LATENCY_BUCKETS_MS as LATENCY_BUCKETS_MS
from fastgw_core.stats import NBUCKETS as _NBUCKETS
from fastgw_core.stats import RouteStats as RouteStats
from fastgw_core.stats import bucket_quantile as bucket_quantile

log = logging.getLogger("fastgw.telemetry")

#: Gauges that the node aggregates with max instead of sum (a sum of versions means nothing).
MAX_GAUGES = frozenset({"config_version"})

SNAPSHOT_VERSION = 1
_FILE_RE = re.compile(r"worker-(\d+)\.msgpack")

RouteKey = tuple[str, str, str, str]


# ----------------------------------------------------------------------------- snapshots


class RouteSnapshot(msgspec.Struct, array_like=True):
    key: tuple[str, str, str, str]
    api_name: str
    api_id: str
    kind: str
    stage: str
    resource: str
    method: str
    route_key: str
    count: int
    errors_4xx: int
    errors_5xx: int
    cache_hits: int
    cache_misses: int
    latency: list[int]
    latency_sum: float
    integration: list[int]
    integration_sum: float


class WorkerSnapshot(msgspec.Struct):
    """What one worker publishes. ``time`` is the wall clock when the snapshot was taken."""

    version: int
    pid: int
    time: float
    buckets: tuple[float, ...]
    routes: list[RouteSnapshot]
    gauges: dict[str, float]
    counters: dict[str, int | float]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerSnapshot)


def decode_snapshot(data: bytes) -> WorkerSnapshot | None:
    """Decode a published snapshot. Returns None for a file of another version or bucket layout."""
    try:
        snap = _decoder.decode(data)
    except msgspec.DecodeError as ex:
        log.warning("unreadable metrics snapshot", extra={"error": str(ex)})
        return None
    if snap.version != SNAPSHOT_VERSION or tuple(snap.buckets) != LATENCY_BUCKETS_MS:
        return None
    for r in snap.routes:
        if len(r.latency) != _NBUCKETS or len(r.integration) != _NBUCKETS:
            return None
    return snap


class WorkerMetrics:
    """Everything one worker counts: its ``RouteStats`` by key, plus the gateway's internal metrics.

    ``gauges`` are set by the worker (active_connections, upstream_pool_in_use, upstream_pool_idle,
    cache_entries, cache_bytes, config_version, ...). ``counters`` are incremented by the worker
    (throttled, quota_refused, authorizer_cache_hits, authorizer_cache_misses, redis_fallbacks,
    reloads_ok, reloads_failed, access_log_dropped, ...). Names are snake_case and have no prefix
    and no ``_total`` suffix; the exposition adds both.
    """

    __slots__ = ("counters", "gauges", "routes")

    def __init__(self) -> None:
        self.routes: dict[RouteKey, RouteStats] = {}
        self.gauges: dict[str, float] = {}
        self.counters: dict[str, int] = {}

    def route(
        self,
        key: RouteKey,
        api_name: str,
        api_id: str,
        kind: str,
        stage: str,
        resource: str,
        method: str,
        route_key: str,
    ) -> RouteStats:
        """Get or create the stats of a route. Call it when a snapshot is compiled, not per request.

        The stats survive config reloads through their key. The labels are refreshed, so a renamed
        API shows its new name with its old counts. Routes removed by a reload keep their series
        (and their counts) for as long as the worker lives.
        """
        stats = self.routes.get(key)
        if stats is None:
            stats = self.routes[key] = RouteStats(api_name, api_id, kind, stage, resource, method, route_key)
        else:
            stats.api_name, stats.api_id, stats.kind, stats.stage = api_name, api_id, kind, stage
            stats.resource, stats.method, stats.route_key = resource, method, route_key
        return stats

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the internal counter ``name`` (off the hot path; hot code may keep its own int)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self) -> bytes:
        """Everything, as msgpack (a ``WorkerSnapshot``). About 0.5 ms for 1000 routes."""
        # NOTE: with the Python build the structs reference the live histogram lists (the compiled
        # build gives copies); either way, encoding happens before the loop runs again.
        routes = [
            RouteSnapshot(
                key,
                r.api_name,
                r.api_id,
                r.kind,
                r.stage,
                r.resource,
                r.method,
                r.route_key,
                r.count,
                r.errors_4xx,
                r.errors_5xx,
                r.cache_hits,
                r.cache_misses,
                r.latency,
                r.latency_sum,
                r.integration,
                r.integration_sum,
            )
            for key, r in self.routes.items()
        ]
        snap = WorkerSnapshot(
            SNAPSHOT_VERSION,
            os.getpid(),
            time.time(),
            LATENCY_BUCKETS_MS,
            routes,
            self.gauges,
            cast("dict[str, int | float]", self.counters),
        )
        return _encoder.encode(snap)

    def restore(self, snap: WorkerSnapshot) -> None:
        """Add a snapshot's counters and route counts (not its gauges) into this worker's."""
        for r in snap.routes:
            stats = self.routes.get(r.key)
            if stats is None:
                stats = self.routes[r.key] = RouteStats(
                    r.api_name, r.api_id, r.kind, r.stage, r.resource, r.method, r.route_key
                )
            stats.add(r)
        for name, value in snap.counters.items():
            self.counters[name] = self.counters.get(name, 0) + int(value)


# ----------------------------------------------------------------------------- publishing


def snapshot_path(directory: str, worker_index: int) -> str:
    return os.path.join(directory, f"worker-{worker_index}.msgpack")


def _read_snapshot(path: str) -> WorkerSnapshot | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return decode_snapshot(data)


class MetricsPublisher:
    """Shares a worker's snapshot with the rest of the node.

    ``publish`` writes the snapshot to ``<directory>/worker-<index>.msgpack`` through a temporary
    file and ``os.replace``, so readers see whole files only. Each slot has one writer at a time,
    because the supervisor forks a slot's replacement only after the old worker has exited.
    Create the publisher in the worker, after the fork. On its first publish it takes over the
    counts of the slot's previous worker when their file is at most ``carry_max_age`` seconds old,
    so node totals continue across a worker restart (see the module docstring).

    ``directory`` should be private to one node (for example under ``/run/fastgw``) and local
    (tmpfs is best: the files are rewritten every second and need no durability).
    """

    def __init__(self, directory: str, worker_index: int, carry_max_age: float = 10.0) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.worker_index = worker_index
        self.carry_max_age = carry_max_age
        self.path = snapshot_path(directory, worker_index)
        self._tmp = self.path + ".tmp"
        self._first = True

    def publish(self, metrics: WorkerMetrics) -> None:
        """Write the worker's current snapshot. Raises OSError when the directory is unwritable."""
        if self._first:
            self._first = False
            self._carry_over(metrics)
        data = metrics.snapshot()
        with open(self._tmp, "wb") as f:
            f.write(data)
        os.replace(self._tmp, self.path)

    def _carry_over(self, metrics: WorkerMetrics) -> None:
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return
        if age > self.carry_max_age:
            return
        previous = _read_snapshot(self.path)
        if previous is not None and previous.pid != os.getpid():
            metrics.restore(previous)
            log.info(
                "metrics carried over from the slot's previous worker",
                extra={"worker": self.worker_index, "previous_pid": previous.pid},
            )

    async def run(self, metrics: WorkerMetrics, interval: float = 1.0) -> None:
        """Publish every ``interval`` seconds until cancelled, then once more (a drained worker's
        last counts land). Errors are logged, never raised: metrics must not stop a worker."""
        failing = False
        try:
            while True:
                try:
                    self.publish(metrics)
                    failing = False
                except OSError as ex:
                    if not failing:  # once per failure streak
                        log.warning("cannot publish metrics", extra={"path": self.path, "error": str(ex)})
                    failing = True
                await asyncio.sleep(interval)
        finally:
            try:
                self.publish(metrics)
            except OSError:
                pass


# ----------------------------------------------------------------------------- node totals


class NodeMetrics:
    """The sum of a node's fresh worker snapshots.

    ``routes`` are summed by key. ``counters`` are summed. ``gauges`` are summed, except the ones in
    ``MAX_GAUGES``, which take the max. ``worker_gauges`` keeps each worker's own gauges, so
    per-worker skew such as config versions stays visible. ``workers`` lists the slots that were
    summed, and ``stale`` the slots whose files were too old to count.
    """

    __slots__ = ("counters", "gauges", "routes", "stale", "worker_gauges", "workers")

    def __init__(self) -> None:
        self.routes: dict[RouteKey, RouteStats] = {}
        self.gauges: dict[str, float] = {}
        self.counters: dict[str, int | float] = {}
        self.worker_gauges: dict[int, dict[str, float]] = {}
        self.workers: list[int] = []
        self.stale: list[int] = []

    def add(self, worker_index: int, snap: WorkerSnapshot) -> None:
        self.workers.append(worker_index)
        for r in snap.routes:
            stats = self.routes.get(r.key)
            if stats is None:
                stats = self.routes[r.key] = RouteStats(
                    r.api_name, r.api_id, r.kind, r.stage, r.resource, r.method, r.route_key
                )
            stats.add(r)
        for name, value in snap.counters.items():
            self.counters[name] = self.counters.get(name, 0) + value
        for name, gauge in snap.gauges.items():
            if name in MAX_GAUGES:
                self.gauges[name] = max(self.gauges.get(name, gauge), gauge)
            else:
                self.gauges[name] = self.gauges.get(name, 0.0) + gauge
        self.worker_gauges[worker_index] = dict(snap.gauges)

    def totals(self, routes: Iterable[RouteStats] | None = None) -> RouteStats:
        """All routes (or the given ones) summed into one ``RouteStats`` labelled ``*``."""
        total = RouteStats("*", "*", "*", "*", "*", "*", "*")
        for r in self.routes.values() if routes is None else routes:
            total.add(r)
        return total

    def percentile(
        self, route_key: RouteKey | None, metric: str = "Latency", q: float = 0.99
    ) -> float | None:
        """p50/p90/p99... of a route's histogram (``route_key`` None: across all routes), in ms.

        Returns None when the route is unknown or has no values.
        """
        if route_key is None:
            return self.totals().percentile(metric, q)
        stats = self.routes.get(route_key)
        return None if stats is None else stats.percentile(metric, q)


#: The supervisor's own numbers in the node directory: reload outcomes and the config generation.
SUPERVISOR_FILE = "supervisor.json"


def publish_supervisor(directory: str, reloads_ok: int, reloads_failed: int, config_version: int) -> None:
    """Write the supervisor's reload counters (write-then-rename) for ``node_totals``."""
    path = os.path.join(directory, SUPERVISOR_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(
            msgspec.json.encode(
                {"reloads_ok": reloads_ok, "reloads_failed": reloads_failed, "config_version": config_version}
            )
        )
    os.replace(tmp, path)


def _add_supervisor(node: NodeMetrics, directory: str) -> None:
    try:
        with open(os.path.join(directory, SUPERVISOR_FILE), "rb") as f:
            data = msgspec.json.decode(f.read(), type=dict[str, int])
    except (OSError, msgspec.DecodeError):
        return
    for name in ("reloads_ok", "reloads_failed"):
        if name in data:
            node.counters[name] = data[name]
    if "config_version" in data:
        node.gauges["config_version"] = float(data["config_version"])


def node_totals(directory: str, max_age: float = 10.0) -> NodeMetrics:
    """Sum the fresh worker snapshots of the node's directory.

    A file whose mtime is more than ``max_age`` seconds old (a dead worker, or a slot dropped by a
    smaller worker count) is ignored. Its slot is listed in ``stale``. A missing directory gives
    empty totals.
    """
    node = NodeMetrics()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return node
    now = time.time()
    found: list[tuple[int, str]] = []
    for name in names:
        m = _FILE_RE.fullmatch(name)
        if m is not None:
            found.append((int(m.group(1)), name))
    for index, name in sorted(found):
        path = os.path.join(directory, name)
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            continue
        if now - mtime > max_age:
            node.stale.append(index)
            continue
        snap = _read_snapshot(path)
        if snap is not None:
            node.add(index, snap)
    _add_supervisor(node, directory)
    return node

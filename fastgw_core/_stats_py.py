"""Per-route request statistics, pure-Python build (the specification).

``RouteStats`` counts what AWS API Gateway reports to CloudWatch for one (API, stage, route):
``Count``, ``4XXError``, ``5XXError``, ``CacheHitCount``, ``CacheMissCount``, and the ``Latency``
and ``IntegrationLatency`` distributions as histograms over the fixed bounds
``LATENCY_BUCKETS_MS``. ``record`` runs once per request on every worker; the rest (``add``,
``percentile``, the labels) runs when metrics are published or summed.
``fastgw.telemetry.metrics`` owns the snapshots, the publishing and the node sums.

Histograms are stored per bucket, not cumulatively: ``latency[i]`` counts the values in
``(LATENCY_BUCKETS_MS[i-1], LATENCY_BUCKETS_MS[i]]`` (the upper bound is inclusive, Prometheus
``le``), and the last slot counts the values above the highest bound. A value goes to the
bucket ``bisect_left(LATENCY_BUCKETS_MS, value)``: negative values go to the first bucket,
``inf`` to the last, NaN to the first.

The compiled build (``_stats_c``) keeps the histograms in C arrays and gives ``latency`` and
``integration`` as a new list on every read (this build gives its live lists): treat them as
values, and change counts through ``record`` and ``add`` only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "CACHE_HIT",
    "CACHE_MISS",
    "CACHE_NONE",
    "HISTOGRAMS",
    "LATENCY_BUCKETS_MS",
    "NBUCKETS",
    "Counts",
    "RouteStats",
    "bucket_quantile",
]

#: Upper bounds (inclusive, Prometheus ``le``) of the latency histogram buckets, in milliseconds.
#: A last ``+Inf`` bucket is implicit. Changing them makes older snapshot files unreadable
#: (their bounds are checked), so a rolling upgrade just drops a worker from the totals until it
#: republishes. The compiled build has them as C constants and refuses to load if they differ.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1.0,
    2.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
)
#: Slots of a histogram: one per bound, plus ``+Inf``.
NBUCKETS = len(LATENCY_BUCKETS_MS) + 1

#: ``cache`` argument of ``RouteStats.record``.
CACHE_NONE = 0
CACHE_HIT = 1
CACHE_MISS = 2

#: Histogram metric names accepted by ``percentile``.
HISTOGRAMS = ("Latency", "IntegrationLatency")


class Counts(Protocol):
    """What ``RouteStats.add`` reads: another ``RouteStats`` or a published route snapshot."""

    @property
    def count(self) -> int: ...
    @property
    def errors_4xx(self) -> int: ...
    @property
    def errors_5xx(self) -> int: ...
    @property
    def cache_hits(self) -> int: ...
    @property
    def cache_misses(self) -> int: ...
    @property
    def latency(self) -> Sequence[int]: ...
    @property
    def latency_sum(self) -> float: ...
    @property
    def integration(self) -> Sequence[int]: ...
    @property
    def integration_sum(self) -> float: ...


class RouteStats:
    """One (api, stage, route) of one worker. Updated by the worker's event loop only: no locks.

    Histograms are stored per bucket, not cumulatively (see the module docstring). The same class
    holds node-level sums (``NodeMetrics.routes``).
    """

    __slots__ = (
        "api_id",
        "api_name",
        "cache_hits",
        "cache_misses",
        "count",
        "errors_4xx",
        "errors_5xx",
        "integration",
        "integration_sum",
        "kind",
        "latency",
        "latency_sum",
        "method",
        "resource",
        "route_key",
        "stage",
    )

    def __init__(
        self,
        api_name: str,
        api_id: str,
        kind: str,
        stage: str,
        resource: str,
        method: str,
        route_key: str,
    ) -> None:
        self.api_name = api_name
        self.api_id = api_id
        self.kind = kind
        self.stage = stage
        self.resource = resource
        self.method = method
        self.route_key = route_key
        self.count = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.latency: list[int] = [0] * NBUCKETS
        self.latency_sum = 0.0
        self.integration: list[int] = [0] * NBUCKETS
        self.integration_sum = 0.0

    def record(self, status: int, latency_ms: float, integration_ms: float | None, cache: int = 0) -> None:
        """Count one finished request.

        ``latency_ms`` and ``integration_ms`` must be finite and non-negative. ``integration_ms`` is
        None when no integration ran (a cache hit, a local reply, a mock). ``cache`` is
        ``CACHE_NONE`` (0) when the route has no cache, ``CACHE_HIT`` (1) or ``CACHE_MISS`` (2).
        """
        # PERF: plain attributes, a preallocated list and one bisect per histogram (about 0.3 µs).
        # Nothing is allocated except the boxed float sums.
        self.count += 1
        if status >= 400:
            if status >= 500:
                self.errors_5xx += 1
            else:
                self.errors_4xx += 1
        self.latency[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum += latency_ms
        if integration_ms is not None:
            self.integration[bisect_left(LATENCY_BUCKETS_MS, integration_ms)] += 1
            self.integration_sum += integration_ms
        if cache:
            if cache == CACHE_HIT:
                self.cache_hits += 1
            else:
                self.cache_misses += 1

    @property
    def integration_count(self) -> int:
        return sum(self.integration)

    def add(self, other: RouteStats | Counts) -> None:
        """Add another worker's (or a snapshot's) counts for the same route into this one."""
        self.count += other.count
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.latency_sum += other.latency_sum
        self.integration_sum += other.integration_sum
        for i, c in enumerate(other.latency):
            self.latency[i] += c
        for i, c in enumerate(other.integration):
            self.integration[i] += c

    def percentile(self, metric: str, q: float) -> float | None:
        """The ``q`` quantile (0..1) of ``Latency`` or ``IntegrationLatency``, in ms; None if empty."""
        if metric == "Latency":
            return bucket_quantile(self.latency, q)
        if metric == "IntegrationLatency":
            return bucket_quantile(self.integration, q)
        raise ValueError(f"unknown histogram {metric!r}; expected one of {HISTOGRAMS}")

    def __repr__(self) -> str:
        return (
            f"RouteStats({self.api_name!r}, {self.stage!r}, {self.route_key!r}, count={self.count}, "
            f"4xx={self.errors_4xx}, 5xx={self.errors_5xx})"
        )


def bucket_quantile(
    counts: Sequence[int], q: float, bounds: tuple[float, ...] = LATENCY_BUCKETS_MS
) -> float | None:
    """Estimate a quantile from per-bucket counts the way Prometheus's ``histogram_quantile`` does.

    The value is interpolated linearly inside the bucket that holds rank ``q * total``, and the
    first bucket starts at 0. A rank that falls in the ``+Inf`` bucket gives the highest finite
    bound. The result is None when the histogram is empty.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    cum = 0
    for i, c in enumerate(counts):
        if c and cum + c >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - cum) / c
        cum += c
    return bounds[-1]  # pragma: no cover - float rounding only

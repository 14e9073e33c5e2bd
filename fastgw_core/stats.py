"""Per-route request statistics facade: binds the compiled build unless it is missing or disabled.

``RouteStats`` is the selected build; ``RouteStatsPy`` and ``RouteStatsC`` (``None`` when the
extension is not built) stay importable for tests and benchmarks. ``_stats_py`` documents the
buckets and the counting rules, which both builds share; ``fastgw.telemetry.metrics`` publishes
and sums the stats.

Once per route, when a config snapshot is compiled (``WorkerMetrics.route``)::

    stats = RouteStats(api_name, api_id, kind, stage, resource, method, route_key)

per request (tens of ns compiled, allocation-free)::

    stats.record(status, latency_ms, integration_ms_or_None, CACHE_HIT)
"""

from typing import Any

from fastgw_core import _env
from fastgw_core._stats_py import (
    CACHE_HIT,
    CACHE_MISS,
    CACHE_NONE,
    HISTOGRAMS,
    LATENCY_BUCKETS_MS,
    NBUCKETS,
    Counts,
    bucket_quantile,
)
from fastgw_core._stats_py import RouteStats as RouteStatsPy

__all__ = [
    "CACHE_HIT",
    "CACHE_MISS",
    "CACHE_NONE",
    "COMPILED",
    "HISTOGRAMS",
    "LATENCY_BUCKETS_MS",
    "NBUCKETS",
    "Counts",
    "RouteStats",
    "RouteStatsC",
    "RouteStatsPy",
    "bucket_quantile",
]

RouteStatsC: Any = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._stats_c import RouteStats as RouteStatsC
    except ImportError:  # pragma: no cover - depends on the build
        RouteStatsC = None

COMPILED: bool = RouteStatsC is not None

RouteStats: Any = RouteStatsC if COMPILED else RouteStatsPy

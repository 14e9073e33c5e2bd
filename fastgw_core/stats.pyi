"""Public typing of the per-route statistics facade (both builds share it)."""

from collections.abc import Sequence
from typing import Final, Protocol

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

COMPILED: Final[bool]
LATENCY_BUCKETS_MS: Final[tuple[float, ...]]
NBUCKETS: Final[int]
CACHE_NONE: Final[int]
CACHE_HIT: Final[int]
CACHE_MISS: Final[int]
HISTOGRAMS: Final[tuple[str, str]]

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
    """One (api, stage, route) of one worker: counters and per-bucket latency histograms.

    ``latency`` and ``integration`` hold ``NBUCKETS`` counts; treat a read as a value (the
    compiled build returns a new list) and change counts through ``record`` and ``add``.
    """

    __slots__: tuple[str, ...]
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

    def __init__(
        self,
        api_name: str,
        api_id: str,
        kind: str,
        stage: str,
        resource: str,
        method: str,
        route_key: str,
    ) -> None: ...
    def record(self, status: int, latency_ms: float, integration_ms: float | None, cache: int = 0) -> None:
        """Count one finished request; ``integration_ms`` None = no IntegrationLatency sample."""
    @property
    def integration_count(self) -> int: ...
    def add(self, other: RouteStats | Counts) -> None:
        """Add another worker's (or a snapshot's) counts for the same route into this one."""
    def percentile(self, metric: str, q: float) -> float | None:
        """The ``q`` quantile (0..1) of ``Latency`` or ``IntegrationLatency``, in ms; None if empty."""

RouteStatsPy: type[RouteStats]
RouteStatsC: type[RouteStats] | None

def bucket_quantile(counts: Sequence[int], q: float, bounds: tuple[float, ...] = ...) -> float | None:
    """A quantile estimated from per-bucket counts, as Prometheus's ``histogram_quantile``."""

# cython: language_level=3
"""Per-route request statistics, compiled build.

Counts exactly like ``_stats_py`` (the specification; read its docstring for the buckets and
the rules) and shares ``bucket_quantile`` and the constants with it. ``tests/core/test_stats.py``
runs one suite on both builds and compares them on random input.

Differences, all outside what the gateway does with a ``RouteStats``:

- ``latency`` and ``integration`` are C arrays, read as a new list each time (the Python build
  gives its live lists) and replaced as a whole on assignment (the length must be ``NBUCKETS``).
- Counters are C ``long long`` and sums C ``double``: assigning a non-integer count, or ``add``
  of a count that does not fit in 64 bits, raises instead of storing it.
- ``record`` converts its arguments first: a ``status`` or ``cache`` that is not an integer, or a
  ``latency_ms`` that is not a number, raises ``TypeError`` before anything is counted.
- The class is final (not subclassable).

PERF: ``record`` allocates nothing. Each bucket is found by a linear scan of the 14 constant
bounds (typical latencies sit in the first five buckets); the counters, the sums and the
histograms are C fields of the object. ``record`` is ``cpdef``, so Cython callers that see this
class's declaration call it without a Python call.
"""

cimport cython
from libc.string cimport memset

from fastgw_core._stats_py import CACHE_HIT as _CACHE_HIT_PY
from fastgw_core._stats_py import HISTOGRAMS, LATENCY_BUCKETS_MS, NBUCKETS as _NBUCKETS_PY, bucket_quantile

__all__ = ["RouteStats"]

cdef extern from *:
    """
    /* The upper bounds of fastgw_core._stats_py.LATENCY_BUCKETS_MS, checked equal at import
       (FGW_NBOUNDS and FGW_NBUCKETS: _stats_c.pxd). */
    static const double FGW_BOUNDS[FGW_NBOUNDS] = {
        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0
    };

    /* bisect_left(FGW_BOUNDS, x): the first bound that is not below x (NaN: 0). */
    static inline int fgw_bucket(double x) {
        int i = 0;
        while (i < FGW_NBOUNDS && FGW_BOUNDS[i] < x)
            i++;
        return i;
    }
    """
    const double FGW_BOUNDS[FGW_NBOUNDS]
    int fgw_bucket(double x) noexcept nogil

if tuple([FGW_BOUNDS[i] for i in range(FGW_NBOUNDS)]) != LATENCY_BUCKETS_MS or _NBUCKETS_PY != FGW_NBUCKETS:
    raise ImportError("fastgw_core._stats_c: its bounds differ from _stats_py.LATENCY_BUCKETS_MS; rebuild")

cdef enum:
    CACHE_HIT = 1

assert _CACHE_HIT_PY == CACHE_HIT


cdef inline list _as_list(const long long *counts):
    return [counts[i] for i in range(FGW_NBUCKETS)]


cdef int _set_counts(long long *counts, object value) except -1:
    cdef long long tmp[FGW_NBUCKETS]
    cdef Py_ssize_t i
    values = list(value)
    if len(values) != FGW_NBUCKETS:
        raise ValueError(f"a histogram has {FGW_NBUCKETS} buckets, got {len(values)}")
    for i in range(FGW_NBUCKETS):
        tmp[i] = values[i]
    for i in range(FGW_NBUCKETS):
        counts[i] = tmp[i]
    return 0


cdef int _add_counts(long long *counts, object other) except -1:
    # The Python build's ``for i, c in enumerate(other): counts[i] += c``: a longer sequence
    # raises IndexError after adding the first NBUCKETS (as a list index would).
    cdef Py_ssize_t i = 0
    for c in other:
        if i >= FGW_NBUCKETS:
            raise IndexError("list index out of range")
        counts[i] += <long long>c
        i += 1
    return 0


@cython.final
cdef class RouteStats:
    """One (api, stage, route) of one worker. Updated by the worker's event loop only: no locks.

    Histograms are stored per bucket, not cumulatively (see ``_stats_py``). The same class holds
    node-level sums (``NodeMetrics.routes``). Its fields are declared in ``_stats_c.pxd`` (the
    compiled protocol cimports the class and calls ``record`` as a C method).
    """

    # The public attributes, as the Python build's __slots__ (no storage meaning here).
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

    def __init__(self, api_name, api_id, kind, stage, resource, method, route_key):
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
        memset(self._latency, 0, sizeof(self._latency))
        self.latency_sum = 0.0
        memset(self._integration, 0, sizeof(self._integration))
        self.integration_sum = 0.0

    cpdef void record(self, long status, double latency_ms, object integration_ms, int cache=0):
        """Count one finished request.

        ``latency_ms`` and ``integration_ms`` must be finite and non-negative. ``integration_ms`` is
        None when no integration ran (a cache hit, a local reply, a mock). ``cache`` is
        ``CACHE_NONE`` (0) when the route has no cache, ``CACHE_HIT`` (1) or ``CACHE_MISS`` (2).
        """
        cdef double int_ms
        self.count += 1
        if status >= 400:
            if status >= 500:
                self.errors_5xx += 1
            else:
                self.errors_4xx += 1
        self._latency[fgw_bucket(latency_ms)] += 1
        self.latency_sum += latency_ms
        if integration_ms is not None:
            int_ms = integration_ms
            self._integration[fgw_bucket(int_ms)] += 1
            self.integration_sum += int_ms
        if cache:
            if cache == CACHE_HIT:
                self.cache_hits += 1
            else:
                self.cache_misses += 1

    @property
    def latency(self):
        """Counts per bucket (a new list of ``NBUCKETS`` ints)."""
        return _as_list(self._latency)

    @latency.setter
    def latency(self, value):
        _set_counts(self._latency, value)

    @property
    def integration(self):
        """Counts per bucket (a new list of ``NBUCKETS`` ints)."""
        return _as_list(self._integration)

    @integration.setter
    def integration(self, value):
        _set_counts(self._integration, value)

    @property
    def integration_count(self):
        cdef long long total = 0
        cdef Py_ssize_t i
        for i in range(FGW_NBUCKETS):
            total += self._integration[i]
        return total

    def add(self, other):
        """Add another worker's (or a snapshot's) counts for the same route into this one."""
        cdef RouteStats o
        cdef Py_ssize_t i
        if type(other) is RouteStats:
            o = <RouteStats>other
            self.count += o.count
            self.errors_4xx += o.errors_4xx
            self.errors_5xx += o.errors_5xx
            self.cache_hits += o.cache_hits
            self.cache_misses += o.cache_misses
            self.latency_sum += o.latency_sum
            self.integration_sum += o.integration_sum
            for i in range(FGW_NBUCKETS):
                self._latency[i] += o._latency[i]
            for i in range(FGW_NBUCKETS):
                self._integration[i] += o._integration[i]
            return
        # Same order as the Python build, so a failure leaves the same partial sums.
        self.count += <long long>other.count
        self.errors_4xx += <long long>other.errors_4xx
        self.errors_5xx += <long long>other.errors_5xx
        self.cache_hits += <long long>other.cache_hits
        self.cache_misses += <long long>other.cache_misses
        self.latency_sum += <double>other.latency_sum
        self.integration_sum += <double>other.integration_sum
        _add_counts(self._latency, other.latency)
        _add_counts(self._integration, other.integration)

    def percentile(self, metric, q):
        """The ``q`` quantile (0..1) of ``Latency`` or ``IntegrationLatency``, in ms; None if empty."""
        if metric == "Latency":
            return bucket_quantile(self.latency, q)
        if metric == "IntegrationLatency":
            return bucket_quantile(self.integration, q)
        raise ValueError(f"unknown histogram {metric!r}; expected one of {HISTOGRAMS}")

    def __repr__(self):
        return (
            f"RouteStats({self.api_name!r}, {self.stage!r}, {self.route_key!r}, count={self.count}, "
            f"4xx={self.errors_4xx}, 5xx={self.errors_5xx})"
        )

    def __reduce__(self):
        return (
            _restore,
            (
                self.api_name,
                self.api_id,
                self.kind,
                self.stage,
                self.resource,
                self.method,
                self.route_key,
                (
                    self.count,
                    self.errors_4xx,
                    self.errors_5xx,
                    self.cache_hits,
                    self.cache_misses,
                    self.latency,
                    self.latency_sum,
                    self.integration,
                    self.integration_sum,
                ),
            ),
        )


def _restore(api_name, api_id, kind, stage, resource, method, route_key, state):
    """Unpickle a ``RouteStats`` (``__reduce__``)."""
    r = RouteStats(api_name, api_id, kind, stage, resource, method, route_key)
    (
        r.count,
        r.errors_4xx,
        r.errors_5xx,
        r.cache_hits,
        r.cache_misses,
        r.latency,
        r.latency_sum,
        r.integration,
        r.integration_sum,
    ) = state
    return r

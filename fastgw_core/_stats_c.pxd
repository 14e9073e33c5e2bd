# The declaration of the compiled RouteStats: the compiled protocol cimports it, so that a
# route's metrics are recorded by a C call (no Python call, no float objects).
cimport cython


cdef extern from *:
    """
    #define FGW_NBOUNDS 14
    #define FGW_NBUCKETS (FGW_NBOUNDS + 1)
    """
    enum:
        FGW_NBOUNDS
        FGW_NBUCKETS


@cython.final
cdef class RouteStats:
    cdef public object api_name
    cdef public object api_id
    cdef public object kind
    cdef public object stage
    cdef public object resource
    cdef public object method
    cdef public object route_key
    cdef public long long count
    cdef public long long errors_4xx
    cdef public long long errors_5xx
    cdef public long long cache_hits
    cdef public long long cache_misses
    cdef public double latency_sum
    cdef public double integration_sum
    cdef long long _latency[FGW_NBUCKETS]
    cdef long long _integration[FGW_NBUCKETS]

    cpdef void record(self, long status, double latency_ms, object integration_ms, int cache=*)

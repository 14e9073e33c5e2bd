# Types of the compiled build of _tracing_py.py (Cython pure-Python mode).
cimport cython


cdef class TraceContext:
    cdef public bytes trace_id, span_id
    cdef public object parent_id, state, int_id, children
    cdef public bint replace


cdef list _PATH_HEADS, _QUERY_HEADS, _RID_HEADS, _SPAN_HEADS

cdef bytes _span_head(Py_ssize_t n)
cdef bytes _times(long long start_ns, long long end_ns)

@cython.locals(q=Py_ssize_t, n=Py_ssize_t, path=bytes, query=bytes, path_head=bytes, rid_head=bytes,
               query_head=bytes, tail=bytes)
cdef bytes _server_span(bytes head, bytes span_id, bytes ids, bytes name_kind, bytes times, bytes fixed,
                        bytes url, bytes status_attr, bytes client, bytes rid, bint error)

@cython.locals(n=Py_ssize_t)
cdef bytes _child_span(bytes head, bytes span_id, bytes under, bytes name_kind, bytes times, bytes attrs)


cdef class Tracer:
    cdef public object settings, bound, loop_time, queue, _wake, _thread
    cdef public bint parent_based, exporting, _kicked, _stop
    cdef public double offset
    cdef public Py_ssize_t max_queue, batch
    cdef public dict _names, _clients

    @cython.locals(trace=TraceContext, t_int=double, int_ms=double, end=double, start=double, offset=double,
                   n=Py_ssize_t, up=int, head=bytes, under=bytes, span_id=bytes, int_attrs=bytes)
    cpdef finish(self, ex, route, int status, double now)

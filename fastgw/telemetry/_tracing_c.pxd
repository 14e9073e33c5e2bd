# Types of the compiled build of _tracing_py.py (Cython pure-Python mode).

cdef class TraceContext:
    cdef public bytes trace_id, span_id
    cdef public object parent_id, state, int_id, children
    cdef public bint replace

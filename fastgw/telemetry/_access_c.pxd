# Types of the compiled build of _access_py.py (Cython pure-Python mode).
cimport cython

ctypedef char* p_char
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef extern from "Python.h":
    ctypedef struct PyByteArrayObject:
        Py_ssize_t ob_alloc
        char *ob_bytes
        char *ob_start
        Py_ssize_t ob_exports
    void Py_SET_SIZE(object o, Py_ssize_t size)


cdef inline Py_ssize_t _capacity(bytearray buf):
    """Bytes allocated for ``buf`` (its size can grow to this less one without a realloc)."""
    return (<PyByteArrayObject*>buf).ob_alloc


cdef inline bint _clear_keep(bytearray buf):
    """Set ``buf``'s size to 0 keeping its allocation; False (nothing done) while it is exported."""
    cdef PyByteArrayObject *b = <PyByteArrayObject*>buf
    if b.ob_exports > 0 or b.ob_bytes == NULL:
        return False
    b.ob_start = b.ob_bytes
    Py_SET_SIZE(buf, 0)
    b.ob_bytes[0] = 0
    return True


cdef inline bint _set_size(bytearray buf, Py_ssize_t size):
    """Set ``buf``'s size to ``size`` within its allocation (the bytes past the old size are left
    as they are); False when it does not fit, or ``buf`` is exported.

    PERF: PyByteArray_Resize gives back an allocation more than half unused, which undid
    ``empty``'s kept allocation on the first line after a flush."""
    cdef PyByteArrayObject *b = <PyByteArrayObject*>buf
    if b.ob_exports > 0 or b.ob_bytes == NULL or size + (b.ob_start - b.ob_bytes) >= b.ob_alloc:
        return False
    Py_SET_SIZE(buf, size)
    b.ob_start[size] = 0
    return True


cdef Py_ssize_t _MAX_QUEUED, KEEP_ALLOCATED
cpdef empty(bytearray buf)

cdef int OP_RID, OP_METHOD, OP_PROTOCOL, OP_TIME, OP_EPOCH, OP_STATUS, OP_RESP_LEN, OP_LATENCY, OP_PEER
cdef int OP_GET, OP_GET_QUOTED
cdef tuple _SMALL
cdef dict _METHODS
cdef object _time, _round
cdef Py_ssize_t _clf_sec
cdef bytes _clf_text
cdef bint _COMPILED

@cython.locals(sec=Py_ssize_t)
cdef bytes _clf_bytes(double t)

cdef bytes _digits(Py_ssize_t n)

cdef bytes _value_bytes(object value, bint quoted)

cdef object _last_peer
cdef bytes _last_peer_bytes
cdef bytes _peer_bytes(object peer)

@cython.locals(size=Py_ssize_t, start=Py_ssize_t, need=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t, p=p_char, part=bytes)
cdef _append(bytearray buf, tuple lits, list vals, Py_ssize_t n)


cdef class AccessLine:
    cdef public object format, destination, render, values, writer_for, writer, clock
    cdef public bytearray buf
    cdef public tuple literals
    cdef public list slots
    cdef public dict routes
    cdef public bint needs_time, needs_values

    cdef public list scratch
    cdef public object last_route
    cdef public tuple last_program
    cdef public double wall_offset, wall_at

    cpdef tuple program(self, route)

    cdef emit_fields(self, route, int status, double now, bytes rid, method, bint http10, Py_ssize_t resp_len,
                     double t0, peer, ex)

    @cython.locals(lits=tuple, codes=tuple, getters=tuple, prog=tuple, vals=list, n=Py_ssize_t,
                   i=Py_ssize_t, code=int, t=double, got=object)
    cdef _render(self, bytearray buf, route, int status, double now, bytes rid, method, bint http10,
                 Py_ssize_t resp_len, double t0, peer, ex)

# Types of the compiled build of _access_py.py (Cython pure-Python mode).
cimport cython

ctypedef char* p_char
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef extern from "Python.h":
    ctypedef struct PyByteArrayObject:
        Py_ssize_t ob_alloc


cdef inline Py_ssize_t _capacity(bytearray buf):
    """Bytes allocated for ``buf`` (its size can grow to this less one without a realloc)."""
    return (<PyByteArrayObject*>buf).ob_alloc


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
    cdef public object format, destination, render, values, writer_for, writer
    cdef public bytearray buf
    cdef public tuple literals
    cdef public list slots
    cdef public dict routes
    cdef public bint needs_time, needs_values

    cpdef tuple program(self, route)

    @cython.locals(lits=tuple, codes=tuple, getters=tuple, prog=tuple, vals=list, rid=object, n=Py_ssize_t,
                   i=Py_ssize_t, code=int, t=double, resp_len=Py_ssize_t, got=object)
    cdef _render(self, bytearray buf, ex, route, int status, double now)

# The compiled table's declaration: the compiled protocol cimports it, so that a route's
# throttle levels are taken by a C call (``take_many``). The slot's C layout is defined in
# _limits_c.pyx; modules that cimport this file see the slot type by name only.
cimport cython
from cpython.buffer cimport Py_buffer
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from *:
    """
    struct fgw_slot_s;
    typedef struct fgw_slot_s fgw_slot;
    """
    ctypedef struct fgw_slot:
        uint64_t hash
        uint32_t lock
        double tokens
        double last
        int64_t period
        int64_t count


@cython.final
cdef class SharedTable:
    cdef Py_buffer _view
    cdef bint _has_view
    cdef fgw_slot* _slots
    cdef readonly Py_ssize_t nslots
    cdef Py_ssize_t _mask

    cdef fgw_slot* _slot(self, Py_ssize_t i) except NULL
    cpdef tuple take_many(self, list idx, list rates, list bursts, double now)
    cdef tuple _take_many(self, list idx, list rates, list bursts, double now)

# Types for compiling _memory_py.py as _memory_c (Cython pure-Python mode): the store, its
# entries and slots, and a cached route's head part as extension types, their fields C slots.
# The compiled protocol cimports CacheHead, so that a cache hit is C calls and struct reads.
cimport cython

from fastgw_core._headers_c cimport has_header_line


cdef class Entry:
    cdef public object status, head, body, method, path, reply
    cdef public double stored_at, expires_at


@cython.final
cdef class _Slot:
    cdef public object key
    cdef public Entry entry
    cdef public Py_ssize_t size
    cdef public _Slot older, newer


@cython.final
cdef class MemoryCache:
    cdef dict _slots
    cdef _Slot _oldest, _newest
    cdef public Py_ssize_t capacity_bytes, max_item_bytes, size_bytes
    cdef public Py_ssize_t hits, misses, evictions, expired, refused

    @cython.locals(slot=_Slot, entry=Entry)
    cpdef Entry get(self, key, double now)
    @cython.locals(last=_Slot)
    cdef void _append(self, _Slot slot)
    @cython.locals(older=_Slot, newer=_Slot)
    cdef void _unlink(self, _Slot slot)
    cdef void _drop(self, _Slot slot)
    @cython.locals(slot=_Slot, newer=_Slot)
    cdef void _unlink_all(self)


cdef class CacheHead:
    cdef public object spec, static_keys
    cdef public bint plain, early
    cdef public MemoryCache memory

    @cython.locals(keys=dict, store=MemoryCache, entry=Entry)
    cpdef object lookup(self, str method, list fwd, bytes query, params, double now)

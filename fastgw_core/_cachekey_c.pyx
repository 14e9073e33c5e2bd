# cython: language_level=3
"""Response-cache keys, compiled build.

Gives exactly the bytes of ``_cachekey_py`` (the specification; read its docstring for the
key format, where values come from and the hash), raises the same exception types, and shares
``key_hash``, ``parse_key`` and ``parse_parameter`` with it (they are not hot). Golden vectors
and differential tests in ``tests/core/test_cachekey.py`` hold the two builds together.

PERF: ``KeySpec.build`` writes the key into one C buffer (512 bytes on the stack, on the heap
past that) and allocates only the result. An ASCII query is scanned once in C: each "&" piece
gets a bit mask of the query parameters it names (loose names compared with ``memcmp``). A
query with other characters, more than 64 query parameters, a declared query name longer than
255 bytes or more than 64 matching pieces take the Python build's path (same result).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_AsUTF8AndSize, PyUnicode_GET_LENGTH
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

from fastgw_core import _cachekey_py as _py

__all__ = ["KEY_VERSION", "KINDS", "KeySpec", "cache_key", "key_hash", "parse_key", "parse_parameter"]

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)

KEY_VERSION = _py.KEY_VERSION
KINDS = _py.KINDS
key_hash = _py.key_hash
parse_key = _py.parse_key
parse_parameter = _py.parse_parameter

cdef object _Sequence = _py.Sequence
cdef object _canonical = _py._canonical
cdef object _param_prefix = _py._param_prefix
cdef object _declared_loose = _py.declared_loose
cdef object _query_values = _py.query_values
cdef object _KeySpecPy = _py.KeySpec
cdef dict _CODE_KIND = _py._CODE_KIND

cdef enum:
    STACK_BYTES = 512  # key bytes built on the stack
    MAX_QPARAMS = 64  # query parameters of a spec (bits of a piece mask)
    MAX_LOOSE = 255  # bytes of a declared loose query name
    MAX_PIECES = 64  # matching query pieces per request

cdef enum:
    K_HEADER = 0x68
    K_PATH = 0x70
    K_QUERY = 0x71

# Value of a hex digit, or 0xFF.
cdef unsigned char _HEXVAL[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        if c'0' <= c <= c'9':
            _HEXVAL[c] = c - c'0'
        elif c'a' <= c <= c'f':
            _HEXVAL[c] = c - c'a' + 10
        elif c'A' <= c <= c'F':
            _HEXVAL[c] = c - c'A' + 10
        else:
            _HEXVAL[c] = 0xFF


_init_tables()


# -- output buffer ----------------------------------------------------------------------------

cdef struct Buf:
    char* p
    Py_ssize_t n
    Py_ssize_t cap
    char* heap


cdef inline void _buf_init(Buf* b, char* stack, Py_ssize_t cap):
    b.p = stack
    b.n = 0
    b.cap = cap
    b.heap = NULL


cdef int _grow(Buf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2
    cdef char* mem
    while cap < b.n + need:
        cap *= 2
    if b.heap == NULL:
        mem = <char*>PyMem_Malloc(cap)
        if mem == NULL:
            raise MemoryError()
        memcpy(mem, b.p, b.n)
    else:
        mem = <char*>PyMem_Realloc(b.heap, cap)
        if mem == NULL:
            raise MemoryError()
    b.heap = mem
    b.p = mem
    b.cap = cap
    return 0


cdef inline int _put(Buf* b, const char* s, Py_ssize_t n) except -1:
    if b.n + n > b.cap:
        _grow(b, n)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef inline int _put_byte(Buf* b, char c) except -1:
    if b.n + 1 > b.cap:
        _grow(b, 1)
    b.p[b.n] = c
    b.n += 1
    return 0


cdef inline int _put_varint(Buf* b, size_t v) except -1:
    if b.n + 10 > b.cap:
        _grow(b, 10)
    while v >= 0x80:
        b.p[b.n] = <char>((v & 0x7F) | 0x80)
        b.n += 1
        v >>= 7
    b.p[b.n] = <char>v
    b.n += 1
    return 0


cdef inline int _put_bytes_obj(Buf* b, bytes data) except -1:
    return _put(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef int _put_field(Buf* b, object s, str what) except -1:
    """varint(len) + UTF-8 (surrogatepass) of the str ``s``."""
    cdef Py_ssize_t n
    cdef const char* data
    cdef bytes tmp
    if not isinstance(s, str):
        raise TypeError(f"{what} must be str, not {type(s).__name__}")
    try:
        data = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:  # lone surrogates
        tmp = (<str>s).encode("utf-8", "surrogatepass")
        _put_varint(b, PyBytes_GET_SIZE(tmp))
        return _put_bytes_obj(b, tmp)
    _put_varint(b, n)
    return _put(b, data, n)


cdef int _put_values(Buf* b, object value) except -1:
    cdef Py_ssize_t n
    if value is None:
        return _put_byte(b, 0)
    if isinstance(value, str):
        _put_byte(b, 1)
        return _put_field(b, value, "value")
    if isinstance(value, (bytes, bytearray, memoryview)) or not isinstance(value, _Sequence):
        raise TypeError(
            f"a parameter value must be str, a sequence of str or None, not {type(value).__name__}"
        )
    n = len(value)
    _put_varint(b, n)
    for v in value:
        _put_field(b, v, "value")
    return 0


cdef inline bytes _finish(Buf* b):
    return PyBytes_FromStringAndSize(b.p, b.n)


cdef inline void _release(Buf* b):
    if b.heap != NULL:
        PyMem_Free(b.heap)
        b.heap = NULL


def cache_key(str method not None, str resource not None, parts):
    """The key of ``method`` + ``resource`` + the parameters ``(kind, name, value)``."""
    cdef char stack[STACK_BYTES]
    cdef Buf b
    _buf_init(&b, stack, STACK_BYTES)
    try:
        _put_byte(&b, 1)
        _put_field(&b, method, "method")
        _put_field(&b, resource, "resource")
        if parts:
            order = _canonical([(p[0], p[1]) for p in parts])
            for code, nb, i in order:
                _put_bytes_obj(&b, _param_prefix(code, nb))
                _put_values(&b, parts[i][2])
        return _finish(&b)
    finally:
        _release(&b)


# -- query scanning ---------------------------------------------------------------------------

cdef struct Piece:
    Py_ssize_t start
    Py_ssize_t end
    uint64_t mask


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _loose(const unsigned char* src, Py_ssize_t n, unsigned char* out) noexcept:
    """The loose name of ``src[:n]`` into ``out`` (MAX_LOOSE + 1 bytes); -1 if longer."""
    cdef Py_ssize_t k = 0, o = 0
    cdef unsigned char c, hi, lo
    while k < n:
        c = src[k]
        if c == c'%' and k + 2 < n:
            hi = _HEXVAL[src[k + 1]]
            lo = _HEXVAL[src[k + 2]]
            if hi != 0xFF and lo != 0xFF:
                c = (hi << 4) | lo
                k += 3
            else:
                k += 1
        else:
            k += 1
        if c == c'+':
            c = c' '
        elif c'A' <= c <= c'Z':
            c += 32
        if o > MAX_LOOSE:
            return -1
        out[o] = c
        o += 1
    return o


@cython.final
cdef class KeySpec:
    """A route's key recipe, prepared once: ``build`` makes the key of one request."""

    cdef readonly str resource
    cdef readonly tuple params
    cdef bytes _resource_field
    cdef Py_ssize_t _n
    cdef tuple _prefixes  # bytes: kind + field(name), per step
    cdef tuple _names  # str: the lookup name, per step
    cdef unsigned char* _codes
    cdef int* _slots
    cdef int _nq
    cdef tuple _qloose  # bytes: the loose name of each query slot
    cdef const unsigned char* _qdata[MAX_QPARAMS]
    cdef Py_ssize_t _qlen[MAX_QPARAMS]
    cdef dict _qwanted  # loose name (latin-1 str) -> slots, for the Python path
    cdef object _fallback  # a _cachekey_py.KeySpec when the C path does not apply

    def __cinit__(self):
        self._codes = NULL
        self._slots = NULL

    def __init__(self, str resource not None, params=()):
        cdef Py_ssize_t i
        cdef bytes loose
        # The Python build validates and canonicalises; this one copies its plan.
        spec = _KeySpecPy(resource, params)
        self.resource = resource
        self.params = spec.params
        self._resource_field = spec._resource_field
        steps = spec._steps
        self._n = len(steps)
        self._codes = <unsigned char*>PyMem_Malloc(max(self._n, 1) * sizeof(unsigned char))
        self._slots = <int*>PyMem_Malloc(max(self._n, 1) * sizeof(int))
        if self._codes == NULL or self._slots == NULL:
            raise MemoryError()
        prefixes = []
        names = []
        qloose = []
        for i in range(self._n):
            code, prefix, name, slot = steps[i]
            self._codes[i] = code
            self._slots[i] = slot
            prefixes.append(prefix)
            names.append(name)
            if code == K_QUERY:
                qloose.append(_declared_loose(name).encode("latin-1"))
        self._prefixes = tuple(prefixes)
        self._names = tuple(names)
        self._nq = len(qloose)
        self._qloose = tuple(qloose)
        self._qwanted = spec._qwanted
        self._fallback = None
        if self._nq > MAX_QPARAMS or any(len(q) > MAX_LOOSE for q in qloose):
            self._fallback = spec
            return
        for i in range(self._nq):
            loose = self._qloose[i]
            self._qdata[i] = <const unsigned char*>PyBytes_AS_STRING(loose)
            self._qlen[i] = PyBytes_GET_SIZE(loose)

    def __dealloc__(self):
        PyMem_Free(self._codes)
        PyMem_Free(self._slots)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef uint64_t _piece_mask(self, const unsigned char* q, Py_ssize_t start, Py_ssize_t end) noexcept:
        cdef uint64_t mask = 0
        cdef unsigned char loose[MAX_LOOSE + 1]
        cdef Py_ssize_t s = start, e, ne, n, k
        while s <= end:
            e = s
            while e < end and q[e] != c';':
                e += 1
            ne = s
            while ne < e and q[ne] != c'=':
                ne += 1
            n = _loose(q + s, ne - s, loose)
            if n >= 0:
                for k in range(self._nq):
                    if n == self._qlen[k] and memcmp(loose, self._qdata[k], n) == 0:
                        mask |= (<uint64_t>1) << k
            s = e + 1
        return mask

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def build(self, str method not None, header, query, path_params):
        """The key of one request (see ``_cachekey_py.KeySpec.build``)."""
        if self._fallback is not None:
            return self._fallback.build(method, header, query, path_params)
        cdef char stack[STACK_BYTES]
        cdef Buf b
        cdef Piece pieces[MAX_PIECES]
        cdef Py_ssize_t npieces = 0, i, j, qn = 0, count, k
        cdef const unsigned char* q = NULL
        cdef uint64_t mask, bit
        cdef unsigned char code
        cdef list pyq = None
        cdef PyObject* found
        if self._nq and query:
            if type(query) is str:
                if PyUnicode_IS_ASCII(query):
                    q = <const unsigned char*>PyUnicode_1BYTE_DATA(query)
                    qn = PyUnicode_GET_LENGTH(query)
            elif type(query) is bytes:
                q = <const unsigned char*>PyBytes_AS_STRING(query)
                qn = PyBytes_GET_SIZE(query)
                for i in range(qn):
                    if q[i] >= 0x80:
                        q = NULL
                        break
            if q != NULL:
                i = 0
                while i <= qn:
                    j = i
                    while j < qn and q[j] != c'&':
                        j += 1
                    if j > i:
                        mask = self._piece_mask(q, i, j)
                        if mask:
                            if npieces == MAX_PIECES:
                                q = NULL  # pathological: let the Python build count them
                                break
                            pieces[npieces].start = i
                            pieces[npieces].end = j
                            pieces[npieces].mask = mask
                            npieces += 1
                    i = j + 1
            if q == NULL:
                npieces = 0
                pyq = _query_values(query, self._qwanted, self._nq)
        _buf_init(&b, stack, STACK_BYTES)
        try:
            _put_byte(&b, 1)
            _put_field(&b, method, "method")
            _put_bytes_obj(&b, self._resource_field)
            for i in range(self._n):
                code = self._codes[i]
                _put_bytes_obj(&b, <bytes>self._prefixes[i])
                if code == K_HEADER:
                    v = header(<str>self._names[i]) if header is not None else None
                elif code == K_PATH:
                    if not path_params:
                        v = None
                    elif type(path_params) is dict:
                        found = PyDict_GetItem(path_params, <str>self._names[i])
                        v = <object>found if found != NULL else None
                    else:
                        v = path_params.get(<str>self._names[i])
                else:
                    if pyq is not None:
                        values = pyq[self._slots[i]]
                        _put_varint(&b, len(values))
                        for v in values:
                            _put_field(&b, v, "value")
                        continue
                    bit = (<uint64_t>1) << self._slots[i]
                    count = 0
                    for k in range(npieces):
                        if pieces[k].mask & bit:
                            count += 1
                    _put_varint(&b, count)
                    if count:
                        for k in range(npieces):
                            if pieces[k].mask & bit:
                                _put_varint(&b, pieces[k].end - pieces[k].start)
                                _put(&b, <const char*>q + pieces[k].start, pieces[k].end - pieces[k].start)
                    continue
                if v is None:
                    _put_byte(&b, 0)
                else:
                    _put_byte(&b, 1)
                    _put_field(&b, v, "value")
            return _finish(&b)
        finally:
            _release(&b)

    def __repr__(self):
        return f"KeySpec({self.resource!r}, {list(self.params)!r})"

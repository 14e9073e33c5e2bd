# Types of the compiled build of _tracing_py.py (Cython pure-Python mode), and the C-level writers
# its compiled branches use (``if _COMPILED:``; the Python build takes the other branch).
cimport cython

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE
from cpython.bytearray cimport PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcpy

ctypedef unsigned char* p_uchar
ctypedef const unsigned char* p_cuchar
ctypedef long long i64


cdef bint _COMPILED
cdef object _rand
cdef bytes _pool
cdef Py_ssize_t _pool_at

@cython.locals(at=Py_ssize_t)
cdef bytes _random_id(Py_ssize_t n)
cdef bytes _span_id()
cdef bytes _ZERO_ID, _NO_TRACE_ID
cdef object _LOW_MAX


# ---------------------------------------------------------------------- C writers (compiled only)
cdef inline Py_ssize_t _vlen(Py_ssize_t n) noexcept:
    """Bytes of the varint of ``n`` (n >= 0)."""
    cdef Py_ssize_t k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


cdef inline p_uchar _w_varint(p_uchar p, Py_ssize_t n) noexcept:
    while n >= 0x80:
        p[0] = <unsigned char>((n & 0x7F) | 0x80)
        p += 1
        n >>= 7
    p[0] = <unsigned char>n
    return p + 1


cdef inline p_uchar _w_bytes(p_uchar p, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


cdef inline p_uchar _w_key_bytes(p_uchar p, unsigned char key, bytes b) noexcept:
    """A length-delimited field of one key byte holding ``b``."""
    p[0] = key
    p = _w_varint(p + 1, PyBytes_GET_SIZE(b))
    return _w_bytes(p, b)


cdef inline p_uchar _w_times(p_uchar p, long long start, long long end) noexcept:
    """Span fields 7 and 8 (fixed64, little-endian); an end before the start is the start."""
    cdef int i
    cdef unsigned long long s = <unsigned long long>start
    cdef unsigned long long e = <unsigned long long>(end if end >= start else start)
    p[0] = 0x39
    p[9] = 0x41
    for i in range(8):
        p[1 + i] = <unsigned char>(s >> (8 * i))
        p[10 + i] = <unsigned char>(e >> (8 * i))
    return p + 18


cdef inline Py_ssize_t _attr_len(Py_ssize_t k, Py_ssize_t n) noexcept:
    """Bytes of a string attribute (span field 9) whose encoded key (``_key``) has ``k`` bytes and
    whose value has ``n``."""
    cdef Py_ssize_t any_len = 1 + _vlen(n) + n
    cdef Py_ssize_t kv_len = k + 1 + _vlen(any_len) + any_len
    return 1 + _vlen(kv_len) + kv_len


cdef inline p_uchar _w_attr(p_uchar p, bytes key, p_cuchar value, Py_ssize_t n) noexcept:
    """A string attribute: ``KeyValue`` with the encoded ``key`` and ``value[:n]`` (``attr_str``)."""
    cdef Py_ssize_t any_len = 1 + _vlen(n) + n
    p[0] = 0x4A
    p = _w_varint(p + 1, PyBytes_GET_SIZE(key) + 1 + _vlen(any_len) + any_len)
    p = _w_bytes(p, key)
    p[0] = 0x12
    p = _w_varint(p + 1, any_len)
    p[0] = 0x0A
    p = _w_varint(p + 1, n)
    memcpy(p, value, n)
    return p + n


cdef inline p_uchar _w_hex(p_uchar p, bytes b) noexcept:
    """``b`` as lower-case hex."""
    cdef const char* digits = b"0123456789abcdef"
    cdef p_cuchar s = <p_cuchar>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(b)):
        p[0] = digits[s[i] >> 4]
        p[1] = digits[s[i] & 15]
        p += 2
    return p


cdef inline p_uchar _w_text(p_uchar p, const char* s, Py_ssize_t n) noexcept:
    memcpy(p, s, n)
    return p + n


cdef inline bytes _new_bytes(Py_ssize_t n):
    """A bytes object of ``n`` bytes to fill (fresh: nothing else holds it yet)."""
    return PyBytes_FromStringAndSize(NULL, n)


cdef inline p_uchar _bytes_ptr(bytes b) noexcept:
    return <p_uchar>PyBytes_AS_STRING(b)


cdef inline bytes _bytes_at(bytes b, Py_ssize_t at, Py_ssize_t n):
    """``b[at:at + n]`` (the caller checked the bounds)."""
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b) + at, n)


cdef inline p_uchar _bytearray_ptr(bytearray b) noexcept:
    return <p_uchar>PyByteArray_AS_STRING(b)


cdef inline Py_ssize_t _find_byte(p_cuchar s, Py_ssize_t n, int c) noexcept:
    """The index of the first byte ``c`` in ``s[:n]``, or -1."""
    cdef p_cuchar at = <p_cuchar>memchr(s, c, n)
    return at - s if at != NULL else -1


cdef inline bytearray _new_bytearray(Py_ssize_t n):
    """A bytearray of ``n`` bytes, not zeroed."""
    return PyByteArray_FromStringAndSize(NULL, n)


cdef inline bint _may_name(object fwd, bytes name) noexcept:
    """Whether a header line of ``fwd`` may be named ``name`` (lower-case, with its colon): every
    line start compared with ASCII case folded loosely (``c | 0x20``), so a superset of what
    ``header_values`` matches; a hit is then looked up with it."""
    cdef Py_ssize_t k = PyBytes_GET_SIZE(name)
    cdef p_cuchar want = <p_cuchar>PyBytes_AS_STRING(name)
    cdef p_cuchar s
    cdef p_cuchar end
    cdef p_cuchar nl
    cdef Py_ssize_t i
    cdef object part
    if type(fwd) is not list:
        return True
    for part in <list>fwd:
        if type(part) is not bytes:
            return True  # not ours to judge: the caller's lookup decides
        s = <p_cuchar>PyBytes_AS_STRING(part)
        end = s + PyBytes_GET_SIZE(part)
        while end - s >= k:
            for i in range(k):
                if (s[i] | 0x20) != (want[i] | 0x20):
                    break
            else:
                return True
            nl = <p_cuchar>memchr(s, 10, end - s)
            if nl == NULL:
                break
            s = nl + 1
    return False


# ---------------------------------------------------------------------- the per-request objects
@cython.freelist(64)
@cython.no_gc
cdef class TraceContext:
    cdef public bytes trace_id, span_id
    cdef public object parent_id, state, int_id, children
    cdef public bint replace

    cpdef bytes integration_id(self)

    @cython.locals(int_id=bytes, state=bytes, line=bytes, p=p_uchar, n=Py_ssize_t)
    cpdef bytes header_lines(self)

    cdef _child(self, bytes name_kind, double start, double end, bytes attrs)

    cpdef inject(self, list parts)


@cython.locals(ctx=TraceContext)
cdef TraceContext _context(bytes trace_id, object parent_id, object state, bint replace)


cdef list _PATH_HEADS, _QUERY_HEADS, _RID_HEADS, _SPAN_HEADS
cdef bytes _K_PATH, _K_QUERY, _K_CLIENT, _K_RID, _STATUS_ERROR, _INTEGRATION, _CACHE, _AUTHORIZER
cdef dict _STATUS_ATTRS
cdef list _STATUS_TABLE
cdef object _UNSET

cdef bytes _span_head(Py_ssize_t n)
cdef bytes _times(long long start_ns, long long end_ns)
@cython.locals(got=bytes)
cdef bytes _status_attr(int status)

@cython.locals(q=Py_ssize_t, n=Py_ssize_t, path=bytes, query=bytes, path_head=bytes, rid_head=bytes,
               query_head=bytes, tail=bytes)
cdef bytes _server_span(bytes head, bytes span_id, bytes ids, bytes name_kind, bytes times, bytes fixed,
                        bytes url, bytes status_attr, bytes client, bytes rid, bint error)

@cython.locals(n=Py_ssize_t)
cdef bytes _child_span(bytes head, bytes span_id, bytes under, bytes name_kind, bytes times, bytes attrs)


cdef class Tracer:
    cdef public object settings, bound, loop_time, sealed, _wake, _thread
    cdef public bint parent_based, exporting, _stop
    cdef public double offset, delay, chunk_t0
    cdef public Py_ssize_t max_queue, batch, used, pending, sealed_spans, taken_spans, cap_hint
    cdef public bytearray chunk
    cdef public bytes _resource_field, _scope_field
    cdef public dict _names, _clients
    cdef public object _last_route, _last_method, _last_peer
    cdef public tuple _last_names
    cdef public bytes _last_client

    cpdef TraceContext begin(self, fwd)

    @cython.locals(got=tuple)
    cdef tuple _route_name(self, route, method)

    @cython.locals(by_method=dict, got=tuple)
    cdef tuple _names_of(self, route, method)

    @cython.locals(got=bytes)
    cdef bytes _client_attr(self, peer)

    @cython.locals(size=Py_ssize_t, need=Py_ssize_t, at=Py_ssize_t, chunk=bytearray)
    cdef p_uchar _reserve(self, Py_ssize_t n) except NULL

    @cython.locals(q=Py_ssize_t, plen=Py_ssize_t, qlen=Py_ssize_t, rlen=Py_ssize_t, body=Py_ssize_t,
                   p=p_uchar, u=p_cuchar)
    cdef _put_server(self, bytes trace_id, bytes span_id, bytes state, bytes parent_id, bytes name_kind,
                     long long start_ns, long long end_ns, bytes fixed, bytes url, bytes status_attr,
                     bytes client, bytes rid, bint error)

    @cython.locals(body=Py_ssize_t, p=p_uchar)
    cdef _put_child(self, bytes trace_id, bytes span_id, bytes parent_id, bytes name_kind,
                    long long start_ns, long long end_ns, bytes a1, bytes a2, bytes a3)

    @cython.locals(chunk=bytearray, n=Py_ssize_t)
    cpdef flush(self)

    @cython.locals(trace=TraceContext)
    cpdef finish(self, ex, route, int status, double now)

    @cython.locals(end=double, offset=double, n=Py_ssize_t, pending=Py_ssize_t, name_kind=bytes, fixed=bytes,
                   int_attrs=bytes, client=bytes, trace_id=bytes, span_id=bytes, up_attr=bytes, tail=bytes,
                   head=bytes, int_id=bytes, start=double, cid=bytes, cname_kind=bytes, cattrs=bytes,
                   start_ns=i64, end_ns=i64)
    cpdef record(self, TraceContext trace, route, int status, double now, method, bytes url, double t0,
                 double t_int, double int_ms, int up_status, bytes rid, peer)

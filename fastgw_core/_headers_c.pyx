# cython: language_level=3
"""Compiled twin of ``_headers_py``: one pass over the raw upstream head in C.

PERF: replaces an httptools ``on_header`` callback per upstream header plus a Python loop
that lower-cased, filtered and re-formatted each line (about a fifth of the user-space time
of a small proxied request, by cProfile of the in-memory pipeline).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcpy
from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ, PyUnicode_KIND, PyUnicode_DATA

from fastgw_core.includes.http cimport (
    TOKEN_CLOSE,
    connection_tokens,
    eq_lower,
    find_head_end,
    is_ows,
    is_tchar,
    is_valchar,
    all_valchar,
    lower,
)

from fastgw_core._headers_py import local_response as _local_response_py
from fastgw_core.errors import HeadError

cdef enum:
    MAX_LINES = 256
    MAX_TOKENS = 32

cdef enum:
    IN_HEAD = 1
    IN_HTTP10 = 2
    IN_CLOSE = 4
    OUT_CHUNKED = 1
    OUT_CLOSE = 2

cdef int _hop_kind(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """0: relay; 1: hop-by-hop / replaced; 2: connection; 3: content-length; 4: transfer-encoding."""
    if n == 10 and eq_lower(s, n, b"connection", 10):
        return 2
    if n == 14 and eq_lower(s, n, b"content-length", 14):
        return 3
    if n == 17 and eq_lower(s, n, b"transfer-encoding", 17):
        return 4
    if (
        (n == 10 and eq_lower(s, n, b"keep-alive", 10))
        or (n == 16 and eq_lower(s, n, b"proxy-connection", 16))
        or (n == 2 and eq_lower(s, n, b"te", 2))
        or (n == 7 and eq_lower(s, n, b"trailer", 7))
        or (n == 7 and eq_lower(s, n, b"upgrade", 7))
        or (n == 16 and eq_lower(s, n, b"x-amzn-requestid", 16))
    ):
        return 1
    return 0


cdef struct Head:
    # One upstream response head, as pass 1 (``_scan`` or ``relay_response``) found it.
    Py_ssize_t sl_end  # the status line's CR
    Py_ssize_t sp  # the space before the status code
    int status
    int nlines
    int ntok
    Py_ssize_t cl_s, cl_e  # the Content-Length value (cl_s -1: none)
    bint has_te
    Py_ssize_t starts[MAX_LINES]
    Py_ssize_t ends[MAX_LINES]
    Py_ssize_t name_ends[MAX_LINES]
    int kinds[MAX_LINES]
    Py_ssize_t tok_s[MAX_TOKENS]  # the Connection header's tokens (headers they name are dropped)
    Py_ssize_t tok_e[MAX_TOKENS]


cpdef tuple rewrite_response_head(bytes raw, bytes request_id, int flags):
    return _rewrite(raw, request_id, flags)


cdef inline int _add_line(Head* h, const unsigned char* p, Py_ssize_t i, Py_ssize_t j, Py_ssize_t k) noexcept nogil:
    """Record the header line p[i:j] (its colon at k) and return its ``_hop_kind``; -1: too many."""
    if h.nlines == MAX_LINES:
        return -1
    cdef int kind = _hop_kind(p + i, k - i)
    h.starts[h.nlines] = i
    h.ends[h.nlines] = j
    h.name_ends[h.nlines] = k
    h.kinds[h.nlines] = kind
    h.nlines += 1
    return kind


cdef int _add_tokens(const unsigned char* p, Py_ssize_t vs, Py_ssize_t ve, Head* h) noexcept nogil:
    """Record the comma-separated tokens of a Connection value p[vs:ve]; -1: too many."""
    cdef Py_ssize_t ts = vs, te, a, b
    while ts < ve:
        te = ts
        while te < ve and p[te] != 44:
            te += 1
        a = ts
        b = te
        while a < b and is_ows(p[a]):
            a += 1
        while b > a and is_ows(p[b - 1]):
            b -= 1
        if b > a:
            if h.ntok == MAX_TOKENS:
                return -1
            h.tok_s[h.ntok] = a
            h.tok_e[h.ntok] = b
            h.ntok += 1
        ts = te + 1
    return 0


cdef tuple _rewrite(bytes raw, bytes request_id, int flags):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t end = -1, i, j, k
    cdef const unsigned char* q
    cdef Head h
    end = find_head_end(p, 0, n)
    if end < 0:
        raise HeadError("response head is not terminated by CRLF CRLF")
    # Status line.
    h.sl_end = end
    q = <const unsigned char*>memchr(p, 13, end + 1)
    if q != NULL:
        h.sl_end = q - p
    if h.sl_end < 5 or not (p[0] == 72 and p[1] == 84 and p[2] == 84 and p[3] == 80 and p[4] == 47):
        raise HeadError("bad status line")
    h.sp = -1
    for i in range(h.sl_end):
        if p[i] == 32:
            h.sp = i
            break
    if h.sp < 0 or h.sp + 4 > h.sl_end:
        raise HeadError("bad status code")
    for i in range(h.sp + 1, h.sp + 4):
        if p[i] < 48 or p[i] > 57:
            raise HeadError("bad status code")
    h.status = (p[h.sp + 1] - 48) * 100 + (p[h.sp + 2] - 48) * 10 + (p[h.sp + 3] - 48)

    # Pass 1: header lines, their kinds, and the Connection tokens.
    h.nlines = 0
    h.ntok = 0
    h.cl_s = -1
    h.cl_e = -1
    h.has_te = False
    cdef int kind
    cdef Py_ssize_t vs, ve
    i = h.sl_end + 2
    while i < end:
        q = <const unsigned char*>memchr(p + i, 13, end - i)
        j = end if q == NULL else q - p
        while j < end and p[j + 1] != 10:
            q = <const unsigned char*>memchr(p + j + 1, 13, end - j - 1)
            j = end if q == NULL else q - p
        q = <const unsigned char*>memchr(p + i, 58, j - i)
        k = j if q == NULL else q - p
        if k == i or k == j:
            raise HeadError("bad header line")
        kind = _add_line(&h, p, i, j, k)
        if kind < 0:
            raise HeadError("too many header lines")
        vs = k + 1
        ve = j
        while vs < ve and is_ows(p[vs]):
            vs += 1
        while ve > vs and is_ows(p[ve - 1]):
            ve -= 1
        if kind == 2:
            if _add_tokens(p, vs, ve, &h) < 0:
                raise HeadError("too many Connection tokens")
        elif kind == 3:
            h.cl_s = vs
            h.cl_e = ve
        elif kind == 4:
            h.has_te = True
        i = j + 2
    return _emit(p, &h, request_id, flags, 0, 0)


cdef tuple _emit(const unsigned char* p, Head* h, bytes request_id, int flags, Py_ssize_t body_at, Py_ssize_t body_len):
    """Pass 2: the client's head (its status, OUT_* flags), followed in the same bytes by
    ``p[body_at:body_at + body_len]`` (relay_response: one allocation for head and body)."""
    # Decide framing.
    cdef int out_flags = 0
    cdef int status = h.status
    cdef bint no_body = (flags & IN_HEAD) or status < 200 or status == 204 or status == 304
    cdef bint emit_cl = h.cl_s >= 0 and not h.has_te
    cdef bint emit_chunked = False
    if not emit_cl and not no_body:
        if flags & IN_HTTP10:
            out_flags |= OUT_CLOSE
        else:
            out_flags |= OUT_CHUNKED
            emit_chunked = True
    cdef bint emit_close = (flags & IN_CLOSE) or (out_flags & OUT_CLOSE)
    if emit_close:
        out_flags |= OUT_CLOSE
    cdef bint emit_ka = not emit_close and (flags & IN_HTTP10)

    # Size, then copy.
    cdef Py_ssize_t sp = h.sp, sl_end = h.sl_end, cl_s = h.cl_s, cl_e = h.cl_e
    cdef Py_ssize_t rid_n = PyBytes_GET_SIZE(request_id)
    cdef Py_ssize_t size = 9 + (sl_end - sp - 1) + 2
    cdef int t, L
    cdef bint drop
    for L in range(h.nlines):
        drop = h.kinds[L] != 0
        if not drop and h.ntok:
            for t in range(h.ntok):
                if eq_lower_tok(
                    p + h.starts[L], h.name_ends[L] - h.starts[L], p + h.tok_s[t], h.tok_e[t] - h.tok_s[t]
                ):
                    drop = True
                    break
        if drop:
            h.kinds[L] = -1
        else:
            size += h.ends[L] - h.starts[L] + 2
    size += 18 + rid_n + 2
    if emit_cl:
        size += 16 + (cl_e - cl_s) + 2
    if emit_chunked:
        size += 28
    if emit_close:
        size += 19
    if emit_ka:
        size += 24
    size += 2
    out = PyBytes_FromStringAndSize(NULL, size + body_len)
    cdef char* o = PyBytes_AS_STRING(out)
    cdef Py_ssize_t w = 0
    memcpy(o + w, b"HTTP/1.1 ", 9)
    w += 9
    memcpy(o + w, p + sp + 1, sl_end - sp - 1)
    w += sl_end - sp - 1
    memcpy(o + w, b"\r\n", 2)
    w += 2
    for L in range(h.nlines):
        if h.kinds[L] == 0:
            memcpy(o + w, p + h.starts[L], h.ends[L] - h.starts[L])
            w += h.ends[L] - h.starts[L]
            memcpy(o + w, b"\r\n", 2)
            w += 2
    memcpy(o + w, b"x-amzn-RequestId: ", 18)
    w += 18
    memcpy(o + w, PyBytes_AS_STRING(request_id), rid_n)
    w += rid_n
    memcpy(o + w, b"\r\n", 2)
    w += 2
    if emit_cl:
        memcpy(o + w, b"content-length: ", 16)
        w += 16
        memcpy(o + w, p + cl_s, cl_e - cl_s)
        w += cl_e - cl_s
        memcpy(o + w, b"\r\n", 2)
        w += 2
    if emit_chunked:
        memcpy(o + w, b"transfer-encoding: chunked\r\n", 28)
        w += 28
    if emit_close:
        memcpy(o + w, b"connection: close\r\n", 19)
        w += 19
    if emit_ka:
        memcpy(o + w, b"connection: keep-alive\r\n", 24)
        w += 24
    memcpy(o + w, b"\r\n", 2)
    w += 2
    if body_len:
        memcpy(o + w, p + body_at, body_len)
    return out, status, out_flags


cdef inline bint eq_lower_tok(const unsigned char* a, Py_ssize_t n, const unsigned char* b, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if lower(a[i]) != lower(b[i]):
            return False
    return True


cpdef tuple relay_response(bytes data, bytes request_id, int flags):
    """See ``_headers_py.relay_response``.

    PERF: one pass validates the head and records its lines for the emitter (``_rewrite`` would
    find them again), and the client's bytes (head and body) are one allocation.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const unsigned char* q
    cdef Py_ssize_t i, j, k, le, vs, ve, ts
    cdef long long length = -1
    cdef int kind
    cdef bint keep_alive = True
    cdef Head h
    if n < 16 or not (
        p[0] == 72 and p[1] == 84 and p[2] == 84 and p[3] == 80 and p[4] == 47
        and p[5] == 49 and p[6] == 46 and p[7] == 49 and p[8] == 32
    ):
        return None
    q = <const unsigned char*>memchr(p, 13, n - 1)
    if q == NULL:
        return None
    le = q - p
    if le < 12 or p[le + 1] != 10:
        return None
    for i in range(9, 12):
        if p[i] < 48 or p[i] > 57:
            return None
    h.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    if h.status < 200 or h.status == 204 or h.status == 304:
        return None
    if le > 12:
        if p[12] != 32 or not all_valchar(p + 12, le - 12):
            return None
    h.sl_end = le
    h.sp = 8
    h.nlines = 0
    h.ntok = 0
    h.cl_s = -1
    h.cl_e = -1
    h.has_te = False
    i = le + 2
    while True:
        # Each line strictly ``token ":" OWS value CRLF``, up to the empty line.
        if i + 1 >= n:
            return None
        if p[i] == 13:
            if p[i + 1] != 10:
                return None
            break
        q = <const unsigned char*>memchr(p + i, 13, n - 1 - i)
        if q == NULL:
            return None
        j = q - p
        if p[j + 1] != 10:
            return None
        k = i
        while k < j and is_tchar(p[k]):
            k += 1
        if k == i or k == j or p[k] != 58 or not all_valchar(p + k + 1, j - k - 1):
            return None
        kind = _add_line(&h, p, i, j, k)
        if kind < 0:
            return None
        if kind:
            vs = k + 1
            while vs < j and is_ows(p[vs]):
                vs += 1
            if kind == 3:
                if length >= 0 or j - vs < 1 or j - vs > 15:
                    return None
                length = 0
                for ts in range(vs, j):
                    if p[ts] < 48 or p[ts] > 57:
                        return None
                    length = length * 10 + (p[ts] - 48)
                h.cl_s = vs
                h.cl_e = j
            elif kind == 4:
                return None
            elif kind == 2:
                if connection_tokens(p, vs, j) & TOKEN_CLOSE:
                    keep_alive = False
                ve = j
                while ve > vs and is_ows(p[ve - 1]):
                    ve -= 1
                if _add_tokens(p, vs, ve, &h) < 0:
                    return None
        i = j + 2
    # p[i:i + 2] is the empty line's CRLF: the body starts after it.
    if length < 0 or n != i + 2 + length:
        return None
    if flags & 8:  # IN_RAW: the bytes as they came (a buffered exchange of the gateway's)
        return data, h.status, 0, keep_alive, length
    out, status, out_flags = _emit(p, &h, request_id, flags, i + 2, length)
    return out, status, out_flags, keep_alive, length


cpdef bytes request_id(bytes prefix, unsigned long long n):
    """See ``_headers_py.request_id``."""
    cdef Py_ssize_t pn = PyBytes_GET_SIZE(prefix)
    out = PyBytes_FromStringAndSize(NULL, pn + 12)
    cdef char* o = PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(prefix), pn)
    cdef int i
    cdef unsigned int d
    for i in range(11, -1, -1):
        d = n & 15
        o[pn + i] = (48 + d) if d < 10 else (87 + d)
        n >>= 4
    return out


cpdef bytes local_response(head, request_id, date_line, conn_line, body):
    """See ``_headers_py.local_response``.

    PERF: one allocation and five copies (``bytes.join`` of the eight parts checks each for
    the buffer protocol and builds a tuple first: ~900 instructions against ~200). Parts that
    are not all ``bytes`` (another bytes-like object) take the Python twin's join."""
    if not (
        type(head) is bytes
        and type(request_id) is bytes
        and type(date_line) is bytes
        and type(conn_line) is bytes
        and type(body) is bytes
    ):
        return _local_response_py(head, request_id, date_line, conn_line, body)
    cdef Py_ssize_t nh = PyBytes_GET_SIZE(head), nr = PyBytes_GET_SIZE(request_id)
    cdef Py_ssize_t nd = PyBytes_GET_SIZE(date_line), nc = PyBytes_GET_SIZE(conn_line)
    cdef Py_ssize_t nb = PyBytes_GET_SIZE(body)
    out = PyBytes_FromStringAndSize(NULL, nh + 18 + nr + 2 + nd + nc + 2 + nb)
    cdef char* o = PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(head), nh)
    o += nh
    memcpy(o, b"x-amzn-RequestId: ", 18)
    o += 18
    memcpy(o, PyBytes_AS_STRING(request_id), nr)
    o += nr
    o[0] = 13
    o[1] = 10
    o += 2
    memcpy(o, PyBytes_AS_STRING(date_line), nd)
    o += nd
    memcpy(o, PyBytes_AS_STRING(conn_line), nc)
    o += nc
    o[0] = 13
    o[1] = 10
    o += 2
    memcpy(o, PyBytes_AS_STRING(body), nb)
    return out


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)


cdef bint _same_name(str k, str lname, Py_ssize_t n):
    """``k.lower() == lname`` for an ASCII ``k`` of ``lname``'s length, without a new str."""
    cdef int kk = PyUnicode_KIND(k), kl = PyUnicode_KIND(lname)
    cdef void* dk = PyUnicode_DATA(k)
    cdef void* dl = PyUnicode_DATA(lname)
    cdef Py_ssize_t i
    cdef unsigned int c
    for i in range(n):
        c = <unsigned int>PyUnicode_READ(kk, dk, i)
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned int>PyUnicode_READ(kl, dl, i):
            return False
    return True


def find_header(headers, str lname):
    """See ``_headers_py.find_header``.

    PERF: str names are compared in place (no lower-cased copy per header)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(lname)
    cdef object value = None
    for item in headers:
        if type(item) is tuple and len(<tuple>item) == 2:
            k = (<tuple>item)[0]
            v = (<tuple>item)[1]
        else:
            k, v = item
        if type(k) is str:
            if PyUnicode_GET_LENGTH(k) != n:
                continue
            if PyUnicode_IS_ASCII(k):
                if not _same_name(k, lname, n):
                    continue
            elif k.lower() != lname:
                continue
        elif len(k) != n or k.lower() != lname:
            continue
        value = v if value is None else value + "," + v
    return value


cpdef bint has_header_line(lines, tuple names) except -1:
    """See ``_headers_py.has_header_line``.

    PERF: no joined, lower-cased copy of the head and no bytes method calls: line ends and
    colons found by memchr, names compared in place."""
    cdef const unsigned char* p
    cdef const unsigned char* q
    cdef Py_ssize_t n, start, end, colon, s
    if not lines:
        return False
    for chunk in lines:
        p = <const unsigned char*>PyBytes_AS_STRING(chunk)
        n = PyBytes_GET_SIZE(chunk)
        start = 0
        while start < n:
            end = n  # the first CRLF at or after start, else the end of the item
            s = start
            while s < n:
                q = <const unsigned char*>memchr(p + s, 13, n - s)
                if q == NULL:
                    break
                s = q - p
                if s + 1 < n and p[s + 1] == 10:
                    end = s
                    break
                s += 1
            q = <const unsigned char*>memchr(p + start, 58, end - start)
            if q != NULL:
                colon = q - p
                for name in names:
                    if eq_lower(p + start, colon - start, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)):
                        return True
            start = end + 2
    return False

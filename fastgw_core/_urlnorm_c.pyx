# cython: language_level=3
"""Request-path normalisation, compiled build.

Behaves exactly like ``_urlnorm_py`` (the specification; read its docstring for the rules),
including which error is reported first and the message text. Differential tests in
``tests/core/test_differential.py`` hold the two builds together.

PERF: one scan over the 1-byte (latin-1) data of the str validates the characters and
decides whether the fast path applies; the slow path is a single pass that decodes escapes
and resolves dot segments into one C buffer.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_DATA,
    PyUnicode_DecodeASCII,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
)
from libc.string cimport memcpy

from fastgw_core.errors import InvalidPathError

__all__ = ["normalize_path"]

cdef object _InvalidPathError = InvalidPathError

# 1 for characters a client must percent-encode (<= 0x20, 0x7F, >= 0x80), per latin-1 byte.
cdef unsigned char _BAD[256]
# 1 for unreserved characters: ALPHA / DIGIT / "-" / "." / "_" / "~".
cdef unsigned char _UNRESERVED[256]
# Value of a hex digit, or 0xFF.
cdef unsigned char _HEXVAL[256]
cdef const char* _HEXUPPER = b"0123456789ABCDEF"


cdef void _init_tables():
    cdef int c
    for c in range(256):
        _BAD[c] = 1 if (c <= 0x20 or c >= 0x7F) else 0
        _UNRESERVED[c] = 1 if (
            (c'A' <= c <= c'Z') or (c'a' <= c <= c'z') or (c'0' <= c <= c'9')
            or c == c'-' or c == c'.' or c == c'_' or c == c'~'
        ) else 0
        if c'0' <= c <= c'9':
            _HEXVAL[c] = c - c'0'
        elif c'a' <= c <= c'f':
            _HEXVAL[c] = c - c'a' + 10
        elif c'A' <= c <= c'F':
            _HEXVAL[c] = c - c'A' + 10
        else:
            _HEXVAL[c] = 0xFF


_init_tables()


cdef object _invalid_char(str raw, Py_ssize_t i):
    return _InvalidPathError(
        f"invalid character {raw[i]!r} at offset {i} in path (must be percent-encoded)"
    )


cdef Py_ssize_t _first_bad_wide(str raw) except -2:
    """Index of the first bad character of a str wider than latin-1 (there is one)."""
    cdef int kind = PyUnicode_KIND(raw)
    cdef void* data = PyUnicode_DATA(raw)
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(raw)
    cdef Py_UCS4 ch
    for i in range(n):
        ch = PyUnicode_READ(kind, data, i)
        if ch <= 0x20 or ch >= 0x7F:
            return i
    return -1


cdef str _slow_path(str raw, const unsigned char* src, Py_ssize_t n, unsigned char* out):
    """Decode escapes and remove dot segments of raw (n latin-1 bytes at src) into out.

    out has room for n bytes; the result never grows (an escape shrinks or stays, and a
    trailing slash is only written where the input had a '/' or a dot segment).
    """
    cdef Py_ssize_t i = 0, o = 0, seg_start, seg_len, j
    cdef unsigned char c, hi, lo, v
    cdef bint trailing_slash = False
    while i < n:
        # src[i] == '/': skip the run of slashes (empty segments collapse).
        while i < n and src[i] == c'/':
            i += 1
        if i >= n:
            trailing_slash = True
            break
        # Copy one segment as "/segment", decoding escapes on the way.
        seg_start = o
        out[o] = c'/'
        o += 1
        while i < n:
            c = src[i]
            if c == c'/':
                break
            if c == c'%':
                if i + 2 >= n:
                    raise _InvalidPathError(
                        f"truncated percent-escape {raw[i:]!r} at offset {i} in path"
                    )
                hi = _HEXVAL[src[i + 1]]
                lo = _HEXVAL[src[i + 2]]
                if hi == 0xFF or lo == 0xFF:
                    raise _InvalidPathError(
                        f"invalid percent-escape {raw[i : i + 3]!r} at offset {i} in path"
                    )
                v = (hi << 4) | lo
                if v == 0:
                    raise _InvalidPathError(f"percent-encoded NUL at offset {i} in path")
                if _UNRESERVED[v]:
                    out[o] = v
                    o += 1
                else:
                    out[o] = c'%'
                    out[o + 1] = _HEXUPPER[hi]
                    out[o + 2] = _HEXUPPER[lo]
                    o += 3
                i += 3
            else:
                out[o] = c
                o += 1
                i += 1
        seg_len = o - seg_start - 1
        if seg_len == 1 and out[seg_start + 1] == c'.':
            o = seg_start
            trailing_slash = True
        elif seg_len == 2 and out[seg_start + 1] == c'.' and out[seg_start + 2] == c'.':
            # Drop this segment and the one before it (never above the root).
            o = seg_start
            j = o - 1
            while j >= 0 and out[j] != c'/':
                j -= 1
            o = j if j > 0 else 0
            trailing_slash = True
        else:
            trailing_slash = False
    if o == 0:
        return "/"
    if trailing_slash:
        out[o] = c'/'
        o += 1
    return PyUnicode_DecodeASCII(<char*>out, o, NULL)


cpdef str normalize_path(str raw):
    """Return the normal form of the request path ``raw``; raise ``InvalidPathError``."""
    cdef Py_ssize_t i, n
    cdef const unsigned char* src
    cdef unsigned char c, prev
    cdef bint slow = False
    cdef unsigned char stack_buf[512]
    cdef unsigned char* out
    if raw is None:
        raise TypeError("normalize_path() argument must be str, not None")
    n = PyUnicode_GET_LENGTH(raw)
    if n == 0 or raw[0] != u'/':
        raise _InvalidPathError(f"path must start with '/': {raw[:64]!r}")
    if PyUnicode_KIND(raw) != PyUnicode_1BYTE_KIND:
        # Some character is above U+00FF, so the path is invalid; report the first bad one.
        raise _invalid_char(raw, _first_bad_wide(raw))
    src = PyUnicode_1BYTE_DATA(raw)
    prev = 0
    for i in range(n):
        c = src[i]
        if _BAD[c]:
            raise _invalid_char(raw, i)
        if c == c'%' or (prev == c'/' and (c == c'/' or c == c'.')):
            slow = True
        prev = c
    if not slow:
        return raw  # fast path: already in normal form, no allocation
    if n <= 512:
        return _slow_path(raw, src, n, stack_buf)
    out = <unsigned char*>PyMem_Malloc(n)
    if out == NULL:
        raise MemoryError()
    try:
        return _slow_path(raw, src, n, out)
    finally:
        PyMem_Free(out)

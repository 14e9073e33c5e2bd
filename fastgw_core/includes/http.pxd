# Byte-level helpers shared by the HTTP kernels (_headers_c, _reqhead_c): inline, no I/O,
# no Python objects. Character classes follow RFC 9110 (tchar) and field-value rules
# restricted to visible ASCII, SP and HTAB (no obs-text: the fast paths decline it).

from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcpy

cdef extern from *:
    """
    /* RFC 9110 tchar, by byte value (fastgw_core/includes/http.pxd). */
    static const unsigned char fastgw_tchar[256] = {
        ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\\''] = 1, ['*'] = 1, ['+'] = 1,
        ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
        ['8'] = 1, ['9'] = 1,
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
        ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
        ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
        ['Y'] = 1, ['Z'] = 1,
        ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
        ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
        ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
        ['y'] = 1, ['z'] = 1,
    };
    """
    const unsigned char fastgw_tchar[256]


cdef inline unsigned char lower(unsigned char c) noexcept nogil:
    if c >= 65 and c <= 90:
        return c + 32
    return c


cdef inline bint eq_lower(const unsigned char* s, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept nogil:
    """Case-insensitive compare of s[:n] with the lower-case literal ``lit`` of length m."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if lower(s[i]) != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint is_ows(unsigned char c) noexcept nogil:
    return c == 32 or c == 9


cdef inline bint is_tchar(unsigned char c) noexcept nogil:
    return fastgw_tchar[c]


cdef inline bint is_valchar(unsigned char c) noexcept nogil:
    return (c >= 0x20 and c < 0x7F) or c == 9


cdef inline bint all_valchar(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """Every byte of p[:n] is_valchar.

    PERF: eight bytes at a time: a word with no byte below SP and none above '~' passes at once
    (the exact any-byte-less-than / any-byte-greater-than word tests); a word with one (HTAB, or
    a byte that fails) is checked byte by byte.
    """
    cdef uint64_t w
    cdef Py_ssize_t i = 0, k
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if ((w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL) | (
            ((w + 0x0101010101010101ULL) | w) & 0x8080808080808080ULL
        ):
            for k in range(i, i + 8):
                if not is_valchar(p[k]):
                    return False
        i += 8
    while i < n:
        if not is_valchar(p[i]):
            return False
        i += 1
    return True


cdef inline Py_ssize_t find_head_end(const unsigned char* p, Py_ssize_t start, Py_ssize_t limit) noexcept nogil:
    """Offset of the CR of the first CRLF CRLF in p[start:limit], or -1 (memchr: SIMD in libc)."""
    cdef const unsigned char* q
    cdef Py_ssize_t i = start
    while i + 3 < limit:
        q = <const unsigned char*>memchr(p + i, 13, limit - i - 3)
        if q == NULL:
            return -1
        i = q - p
        if p[i + 1] == 10 and p[i + 2] == 13 and p[i + 3] == 10:
            return i
        i += 1
    return -1


cdef inline Py_ssize_t strict_field(
    const unsigned char* p, Py_ssize_t i, Py_ssize_t end, Py_ssize_t* name_end, Py_ssize_t* value_start
) noexcept nogil:
    """Check the field line starting at p[i] (head ends at p[end]) against the fast paths' strict
    grammar: ``token ":" OWS value CRLF`` with a value of visible ASCII, SP and HTAB.

    Returns the offset of the line's CR (its value ends there; trailing OWS is kept, as llhttp
    keeps it), or -1 when the line does not qualify. Sets ``name_end`` (the colon) and
    ``value_start`` (after leading OWS).
    """
    cdef const unsigned char* q = <const unsigned char*>memchr(p + i, 13, end - i)
    cdef Py_ssize_t j = end if q == NULL else q - p
    cdef Py_ssize_t k = i, v
    if p[j + 1] != 10:
        return -1
    while k < j and is_tchar(p[k]):
        k += 1
    if k == i or k == j or p[k] != 58:
        return -1
    if not all_valchar(p + k + 1, j - k - 1):
        return -1
    v = k + 1
    while v < j and is_ows(p[v]):
        v += 1
    name_end[0] = k
    value_start[0] = v
    return j


cdef enum:
    TOKEN_CLOSE = 1
    TOKEN_KEEP_ALIVE = 2
    TOKEN_OTHER = 4


cdef inline int connection_tokens(const unsigned char* p, Py_ssize_t vs, Py_ssize_t ve) noexcept nogil:
    """The comma-separated tokens of a Connection value p[vs:ve], as TOKEN_* bits."""
    cdef int found = 0
    cdef Py_ssize_t ts = vs, te, k
    while ts <= ve:
        te = ts
        while te < ve and p[te] != 44:
            te += 1
        k = te
        while ts < k and is_ows(p[ts]):
            ts += 1
        while k > ts and is_ows(p[k - 1]):
            k -= 1
        if k - ts == 5 and eq_lower(p + ts, 5, b"close", 5):
            found |= TOKEN_CLOSE
        elif k - ts == 10 and eq_lower(p + ts, 10, b"keep-alive", 10):
            found |= TOKEN_KEEP_ALIVE
        elif k > ts:
            found |= TOKEN_OTHER
        ts = te + 1
    return found

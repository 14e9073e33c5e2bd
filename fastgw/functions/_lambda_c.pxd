# Types of the compiled build of _lambda_py.py (Cython pure-Python mode): the route constants as an
# extension type, and the event helpers as C functions (cpdef: the ones other modules call).
cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport Py_DECREF, PyObject
from libc.string cimport memcpy

from fastgw.server._reply_c cimport LocalReply as CReply

cdef bint _COMPILED
cdef dict _IDENTITY_REST, _IDENTITY_HTTP, _NO_AUTHORIZER
cdef tuple _MONTHS
cdef long long _clock_sec
cdef str _clock_text
cdef frozenset _TEXT_TYPES


cdef class _Static:
    cdef public bint rest, bin_all, key_required
    cdef public object api_id, account_id, stage, deployment_id, stage_prefix, variables, route_key
    cdef public object resource, resource_id, default_domain
    cdef public tuple domain, bin_prefixes
    cdef public frozenset bin_exact
    cdef public dict ctx_v1, ctx_v1_auth, event_v1, ctx_v2

    @cython.locals(cached=tuple)
    cpdef tuple domain_of(self, host)
    cpdef bint binary(self, media_type)


@cython.locals(d=dict)
cdef dict _copy(mapping)
cpdef _Static _static(route)
@cython.locals(st=_Static)
cpdef _Static _static_of(req)
cpdef bint _staged(req, prefix)
cdef bint _is_staged(str path, str rpath, str prefix)

@cython.locals(sec=cython.longlong)
cpdef str _request_time(ms)
cpdef _unquote(s)
@cython.locals(single=dict, multi=dict, values=list)
cpdef tuple _query_v1(query)
@cython.locals(out=dict)
cpdef _query_v2(query)
@cython.locals(single=dict, multi=dict, values=list)
cpdef tuple _headers_v1(headers, bint rest, bint has_body)
@cython.locals(n=Py_ssize_t)
cpdef _header(req, str lname)
cpdef _media_type(value)
cpdef bint _binary(req, _Static st)
cpdef tuple _body(req, _Static st)
@cython.locals(identity=dict)
cpdef dict _identity(req, _Static st, ua, bint for_authorizer)
cpdef dict _authorizer_v1(auth)
cpdef dict _authorizer_v2(auth)
cpdef dict _context_v1(req, _Static st, ua, bint for_authorizer=*)
@cython.locals(ctx=dict, domain=tuple)
cdef dict _ctx_v1(req, _Static st, ua, bint for_authorizer, path, method)
@cython.locals(st=_Static, headers=dict, multi=dict, event=dict, variables=dict, path=str)
cpdef dict build_event_v1(req)
@cython.locals(headers=dict, cookies=list, ctx=dict, domain=tuple, path=str)
cpdef tuple _parts_v2(req, _Static st, bint with_authorizer)
cpdef _fill_v2(dict event, query, cookies, dict headers, dict ctx)
@cython.locals(st=_Static, headers=dict, event=dict, ctx=dict, variables=dict)
cpdef dict build_event_v2(req)

cdef frozenset _FRAMING, _TOKEN
cdef dict _LINES
cdef Py_ssize_t _MAX_LINES
cdef bytes _CT_V1_REST, _CT_V1_HTTP
cdef object _MISSING, status_line
cdef type LocalReply
cdef dict STATUS_LINE

@cython.locals(lname=str, c=Py_UCS4)
cpdef tuple _header_line(str name, str value)
@cython.locals(pair=tuple, got=tuple)
cpdef tuple header_line_of(str name, str value)
@cython.locals(res=dict, hdrs=dict, found=Py_ssize_t, code=int, data=bytes, line=bytes, parts=list,
               typed=bint, no_body=bint, got=tuple, head=bytes, text=str)
cpdef fast_reply_v1(result, bint rest)
@cython.locals(reply=CReply)
cdef object _raw_reply(int status, bytes head, bytes body)


# ---------------------------------------------------------------------- C writers (compiled only)
cdef inline bytes _head(list parts, Py_ssize_t content_length):
    """``b"".join(parts)``, plus ``content-length: N\r\n`` unless ``content_length`` < 0."""
    cdef Py_ssize_t n = len(parts), i, size = 0, k
    cdef bytes part
    cdef char digits[24]
    cdef int nd = 0
    cdef Py_ssize_t v = content_length
    for i in range(n):
        size += PyBytes_GET_SIZE(<bytes>parts[i])
    if content_length >= 0:
        while True:
            digits[nd] = <char>(48 + v % 10)
            nd += 1
            v //= 10
            if v == 0:
                break
        size += 18 + nd
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for i in range(n):
        part = <bytes>parts[i]
        k = PyBytes_GET_SIZE(part)
        memcpy(p, PyBytes_AS_STRING(part), k)
        p += k
    if content_length >= 0:
        memcpy(p, b"content-length: ", 16)
        p += 16
        while nd > 0:
            nd -= 1
            p[0] = digits[nd]
            p += 1
        p[0] = 13
        p[1] = 10
    return out


# ---------------------------------------------------------------------------- invocations
cdef object log, _FAILURES, INTEGRATION_FAILURE, INTEGRATION_TIMEOUT, INTERNAL_ERROR
cdef object monotonic, CancelledError, FunctionError, FunctionTimeout, InvokeError


@cython.freelist(16)
cdef class LambdaContext:
    cdef public object function_name, function_version, invoked_function_arn, memory_limit_in_mb
    cdef public object log_group_name, log_stream_name, identity, client_context, _rid
    cdef public double _deadline

    cdef _fill(self, fn, double deadline)


@cython.freelist(8)
cdef class _Pending:
    cdef public object awaitable


cdef class FunctionCore:
    cdef public object arn, executor_kind, handler, log_group_name, log_stream_name, memory_mb, name
    cdef public object waiters
    cdef public bint is_async
    cdef public double timeout
    cdef public Py_ssize_t max_concurrency, running

    cpdef tuple start(self, event, executor, double timeout)
    @cython.locals(limit=double)
    cdef _begin(self, event, executor, double timeout)
    cpdef tuple _step(self, event, double deadline)
    cdef _step_begin(self, event, double deadline)
    cpdef _release(self)


cdef class FunctionRoute:
    cdef public object fn, parse, bad_response, failure, to_reply
    cdef public FunctionCore local
    cdef public bint v2, fast, rest, http
    cdef public double timeout

    cdef _invoke(self, req, svc)
    cdef _failed(self, ex, req)
    cdef _reply(self, result, req)


@cython.locals(ctx=LambdaContext)
cdef LambdaContext _new_context(FunctionCore fn, double deadline)
cdef _first_step(coro)


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iter, object arg, PyObject** presult) except? PYGEN_ERROR


cdef inline object _send_none(object coro, type pending):
    """``coro.send(None)`` by ``PyIter_Send``: the return value, or ``pending(yielded)``."""
    cdef PyObject* got = NULL
    cdef PySendResult r = PyIter_Send(coro, None, &got)
    cdef object value = <object>got  # takes a reference: the one PyIter_Send gave is dropped below
    Py_DECREF(value)
    if r == PYGEN_RETURN:
        return value
    return pending(value)

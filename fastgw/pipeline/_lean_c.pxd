# Types for compiling _lean_py.py as _lean_c (Cython pure-Python mode): the route and its calls
# as extension types, their fields C slots.
cimport cython

from fastgw.server._reply_c cimport LocalReply as CReply

cdef object _head_lines

cdef tuple _JSON_CT, _BODY_METHODS
cdef str _URI_QUOTE_SAFE

@cython.locals(lines=bytes)
cpdef bytes upstream_head(list headers, bytes body, method)
cpdef str render_path(str prefix, name, str suffix, dict params)
cpdef str uri_value(value)
@cython.locals(ch=Py_UCS4)
cdef bint _uri_safe(str value)
cdef dict _LENGTH_LINES
@cython.locals(line=bytes)
cpdef bytes length_line(Py_ssize_t n)
@cython.locals(reply=CReply)
cpdef CReply lean_reply(status, bytes head, bytes body)


cdef class LeanHttp:
    cdef public object templates, uri, upstream, lean, variables, fixed_method
    cdef public object failure, binary_types, template_failure, seen_api
    cdef public object one, prefix, suffix, query, head, status
    cdef public bint api_binary

    @cython.locals(body=bytes, payload=bytes, target=str, method=str, query=str, headers=list)
    cpdef bint start(self, ex)
    @cython.locals(body=bytes)
    cpdef respond(self, ex, LeanCall call, result)


cdef class LeanCall:
    cdef public LeanHttp route
    cdef public object ex, params
    cdef public list headers
    cdef public str query

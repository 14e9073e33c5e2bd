# cython: language_level=3
"""Declarations of the compiled route trie, for other kernels to cimport.

The fields are final: ``_router_c.pyx`` is the only writer.
"""


cdef class RouteMatch:
    cdef readonly object value
    cdef readonly str method
    cdef readonly str template
    # None until the route has parameters or .params is read. Readable from Python as well (the
    # Python build of the protocol reads it, as the compiled one does, to skip the property).
    cdef readonly dict _params


cdef class _Route:
    cdef readonly str method
    cdef readonly str template
    cdef readonly object value
    cdef readonly tuple param_names
    cdef Py_ssize_t n_params

    cdef str describe(self)


cdef class _Node:
    cdef dict literals          # segment text -> _Node
    cdef list lit_keys          # the same children as parallel lists, scanned when few
    cdef list lit_nodes
    cdef Py_ssize_t n_literals
    cdef _Node param
    cdef str param_name
    cdef _Node greedy
    cdef str greedy_name
    cdef dict methods           # exact method -> _Route
    cdef _Route any_route
    cdef str origin             # "METHOD /template" of the route that created this node

    cdef _Route route_for(self, str method)
    cdef _Node add_literal(self, str text, str origin)


cdef class RouteTrie:
    cdef _Node _root
    cdef _Route _default
    cdef Py_ssize_t _count
    cdef Py_ssize_t _max_params  # most parameters of any route: size of the match scratch

    cdef _Route _match(
        self, _Node node, str method, str path, const unsigned char* data,
        Py_ssize_t pos, Py_ssize_t n, Py_ssize_t k, Py_ssize_t* starts, Py_ssize_t* ends,
    )
    cpdef RouteMatch match(self, str method, str path)

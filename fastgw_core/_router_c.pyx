# cython: language_level=3
"""Route trie, compiled build.

Behaves exactly like ``_router_py`` (the specification; read its docstring for the rules),
including error types and messages. Template validation is config-time code and is shared:
this module calls ``_router_py._parse_template`` so both builds reject templates with the
same words. The trie and ``match`` are C.

PERF: ``match`` walks the path str with offsets and never builds a segment list. Nodes with
at most ``_SCAN_LITERALS`` literal children compare the segment bytes in place (no substring),
larger fan-outs slice once and look up a dict. Parameter offsets go to a C scratch array and
become strs only for the route that wins; ``RouteMatch`` comes from a freelist.
"""

cimport cython
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_FindChar,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_Substring,
)
from libc.string cimport memchr, memcmp

from fastgw_core._router_py import ANY as _ANY_PY
from fastgw_core._router_py import DEFAULT_TEMPLATE as _DEFAULT_TEMPLATE_PY
from fastgw_core._router_py import _LITERAL as _LITERAL_PY
from fastgw_core._router_py import _PARAM as _PARAM_PY
from fastgw_core._router_py import _parse_template
from fastgw_core.errors import RouteConflictError

__all__ = ["RouteMatch", "RouteTrie"]

cdef str ANY = _ANY_PY
cdef str DEFAULT_TEMPLATE = _DEFAULT_TEMPLATE_PY
cdef int _LITERAL = _LITERAL_PY
cdef int _PARAM = _PARAM_PY
cdef object _RouteConflictError = RouteConflictError
cdef object _parse = _parse_template

cdef enum:
    # Literal fan-out up to which a node compares segment bytes instead of slicing + dict lookup.
    _SCAN_LITERALS = 8
    # Parameters per route that fit the on-stack scratch of match().
    _STACK_PARAMS = 16


@cython.freelist(64)
@cython.final
cdef class RouteMatch:
    """The result of a successful ``RouteTrie.match``; read-only."""

    def __init__(self, value, str method, str template, dict params=None):
        self.value = value
        self.method = method
        self.template = template
        self._params = params

    @property
    def params(self):
        # PERF: the dict is only created for routes that have parameters (or on first access).
        if self._params is None:
            self._params = {}
        return self._params

    def __repr__(self):
        return (
            f"RouteMatch(method={self.method!r}, template={self.template!r}, "
            f"params={self.params!r}, value={self.value!r})"
        )


@cython.final
cdef class _Route:
    def __init__(self, str method, str template, value, tuple param_names):
        self.method = method
        self.template = template
        self.value = value
        self.param_names = param_names
        self.n_params = len(param_names)

    cdef str describe(self):
        return f"{self.method} {self.template}"


@cython.final
cdef class _Node:
    def __init__(self, str origin):
        self.literals = {}
        self.lit_keys = []
        self.lit_nodes = []
        self.n_literals = 0
        self.param = None
        self.param_name = ""
        self.greedy = None
        self.greedy_name = ""
        self.methods = {}
        self.any_route = None
        self.origin = origin

    cdef _Route route_for(self, str method):
        cdef PyObject* found
        if self.methods:
            found = PyDict_GetItem(self.methods, method)
            if found != NULL:
                return <_Route>found
        return self.any_route

    cdef _Node add_literal(self, str text, str origin):
        cdef _Node child = _Node(origin)
        self.literals[text] = child
        self.lit_keys.append(text)
        self.lit_nodes.append(child)
        self.n_literals += 1
        return child


cdef object _sibling_conflict(_Route route, _Node sibling, str sibling_segment):
    return _RouteConflictError(
        f"route {route.describe()} conflicts with route {sibling.origin}: a sibling path parameter "
        f"{sibling_segment} with a different name already exists"
    )


cdef void _collect(_Node node, list out):
    cdef str method, text
    for method in sorted(node.methods):
        out.append((method, (<_Route>node.methods[method]).template))
    if node.any_route is not None:
        out.append((ANY, node.any_route.template))
    for text in sorted(node.literals):
        _collect(<_Node>node.literals[text], out)
    if node.param is not None:
        _collect(node.param, out)
    if node.greedy is not None:
        _collect(node.greedy, out)


cdef class RouteTrie:
    """Routes by (method, path template) with AWS API Gateway precedence."""

    def __init__(self):
        self._root = _Node("/")
        self._default = None
        self._count = 0
        self._max_params = 0

    # -- building ------------------------------------------------------------------------

    def add(self, str method, str template, value):
        """Add a route; raise ``RouteError`` if invalid, ``RouteConflictError`` on a clash."""
        if method is None or template is None:
            raise TypeError("method and template must be str")
        cdef list segments = _parse(method, template)
        cdef tuple seg
        cdef int kind
        cdef str text
        cdef _Node node, child
        cdef _Route existing
        cdef _Route route = _Route(
            method, template, value, tuple([seg[1] for seg in segments if seg[0] != _LITERAL])
        )
        # Check every conflict before creating any node, so a failed add changes nothing.
        node = self._root
        for seg in segments:
            kind = seg[0]
            text = seg[1]
            if kind == _LITERAL:
                node = node.literals.get(text)
            elif kind == _PARAM:
                if node.param is not None and node.param_name != text:
                    raise _sibling_conflict(route, node.param, "{" + node.param_name + "}")
                node = node.param
            else:
                if node.greedy is not None and node.greedy_name != text:
                    raise _sibling_conflict(route, node.greedy, "{" + node.greedy_name + "+}")
                node = node.greedy
            if node is None:
                break  # a new branch: nothing below can clash
        if node is not None:
            existing = node.any_route if method == ANY else node.methods.get(method)
            if existing is not None:
                raise _RouteConflictError(
                    f"route {route.describe()} conflicts with route {existing.describe()}: "
                    "same method on the same path"
                )
        # Insert.
        node = self._root
        cdef str origin = route.describe()
        for seg in segments:
            kind = seg[0]
            text = seg[1]
            if kind == _LITERAL:
                child = node.literals.get(text)
                if child is None:
                    child = node.add_literal(text, origin)
            elif kind == _PARAM:
                child = node.param
                if child is None:
                    child = node.param = _Node(origin)
                    node.param_name = text
            else:
                child = node.greedy
                if child is None:
                    child = node.greedy = _Node(origin)
                    node.greedy_name = text
            node = child
        if method == ANY:
            node.any_route = route
        else:
            node.methods[method] = route
        self._count += 1
        if route.n_params > self._max_params:
            self._max_params = route.n_params

    def set_default(self, value):
        """Set the ``$default`` route (method ``ANY``); it can be set once."""
        if self._default is not None:
            raise _RouteConflictError(f"route ANY {DEFAULT_TEMPLATE} is already set")
        self._default = _Route(ANY, DEFAULT_TEMPLATE, value, ())
        self._count += 1

    # -- matching ------------------------------------------------------------------------

    cpdef RouteMatch match(self, str method, str path):
        """Return the best route for ``method`` and the normalised ``path``, or ``None``."""
        cdef Py_ssize_t starts_buf[_STACK_PARAMS]
        cdef Py_ssize_t ends_buf[_STACK_PARAMS]
        cdef Py_ssize_t* starts = starts_buf
        cdef Py_ssize_t* ends = ends_buf
        cdef const unsigned char* data = NULL
        cdef Py_ssize_t i, n
        cdef _Route route
        cdef RouteMatch m
        cdef dict params
        if method is None or path is None:
            raise TypeError("method and path must be str")
        n = PyUnicode_GET_LENGTH(path)
        if PyUnicode_KIND(path) == PyUnicode_1BYTE_KIND:
            data = PyUnicode_1BYTE_DATA(path)
        if self._max_params > _STACK_PARAMS:
            starts = <Py_ssize_t*>PyMem_Malloc(2 * self._max_params * sizeof(Py_ssize_t))
            if starts == NULL:
                raise MemoryError()
            ends = starts + self._max_params
        try:
            route = self._match(self._root, method, path, data, 1, n, 0, starts, ends)
            if route is None:
                route = self._default
                if route is None:
                    return None
            m = RouteMatch.__new__(RouteMatch)
            m.value = route.value
            m.method = route.method
            m.template = route.template
            if route.n_params:
                params = {}
                for i in range(route.n_params):
                    params[route.param_names[i]] = PyUnicode_Substring(path, starts[i], ends[i])
                m._params = params
            return m
        finally:
            if starts != starts_buf:
                PyMem_Free(starts)

    cdef _Route _match(
        self, _Node node, str method, str path, const unsigned char* data,
        Py_ssize_t pos, Py_ssize_t n, Py_ssize_t k, Py_ssize_t* starts, Py_ssize_t* ends,
    ):
        """Match path[pos:n] (pos is just after a '/') below node; parameter offsets go to
        starts[k:] / ends[k:]."""
        cdef Py_ssize_t end, seglen, i
        cdef const unsigned char* slash
        cdef _Node child = None
        cdef _Route route
        cdef str key
        cdef PyObject* found
        if pos >= n:  # every segment consumed ("/a" and "/a/" both end here)
            return node.route_for(method)
        if data != NULL:
            slash = <const unsigned char*>memchr(data + pos, c'/', n - pos)
            end = n if slash == NULL else slash - data
        else:
            end = PyUnicode_FindChar(path, u'/', pos, n, 1)
            if end == -1:
                end = n
        seglen = end - pos
        if node.n_literals:
            if data != NULL and node.n_literals <= _SCAN_LITERALS:
                for i in range(node.n_literals):
                    key = <str>node.lit_keys[i]
                    if (
                        PyUnicode_GET_LENGTH(key) == seglen
                        and PyUnicode_KIND(key) == PyUnicode_1BYTE_KIND
                        and memcmp(PyUnicode_1BYTE_DATA(key), data + pos, seglen) == 0
                    ):
                        child = <_Node>node.lit_nodes[i]
                        break
            else:
                found = PyDict_GetItem(node.literals, PyUnicode_Substring(path, pos, end))
                if found != NULL:
                    child = <_Node>found
            if child is not None:
                route = self._match(child, method, path, data, end + 1, n, k, starts, ends)
                if route is not None:
                    return route
        if node.param is not None and seglen > 0:
            starts[k] = pos
            ends[k] = end
            route = self._match(node.param, method, path, data, end + 1, n, k + 1, starts, ends)
            if route is not None:
                return route
        if node.greedy is not None:
            route = node.greedy.route_for(method)
            if route is not None:
                starts[k] = pos
                ends[k] = n
                return route
        return None

    # -- introspection -------------------------------------------------------------------

    def routes(self):
        """(method, template) of every route in precedence order, ``$default`` last."""
        cdef list out = []
        _collect(self._root, out)
        if self._default is not None:
            out.append((ANY, DEFAULT_TEMPLATE))
        return out

    def __len__(self):
        return self._count

    def __repr__(self):
        return f"<RouteTrie with {self._count} routes>"

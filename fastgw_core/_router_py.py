"""Route trie, pure-Python build (the specification).

A route is ``(method, template, value)``. Templates are ``/`` or ``/seg/seg...``, where each
segment is a literal, a path parameter ``{name}`` (one non-empty segment) or, as the last
segment only, a greedy parameter ``{name+}`` (the rest of the path, one or more segments).
``method`` is an upper-case HTTP token or ``ANY``. An HTTP API ``$default`` route may be set;
it matches whatever nothing else matches.

Matching walks the trie depth first over the path segments and backtracks. At every node
the precedence is: literal child (exact, case-sensitive), then the parameter child, then the
greedy child. A node reached with every segment consumed yields its route for the exact
method, else its ``ANY`` route; with neither the search backtracks. When the search fails
the ``$default`` route matches (with no parameters), if it is set.

``match`` expects a normalised path (``fastgw_core.urlnorm.normalize_path``): it starts with
``/`` and has no empty segment except a trailing slash, which is ignored. Parameter values
are the segment text as given, still percent-encoded. A greedy value is the rest of the
path string exactly as given, trailing slash included.

The compiled build ``_router_c`` follows this module exactly, error messages included.
"""

import re

from fastgw_core.errors import RouteConflictError, RouteError

__all__ = ["RouteMatch", "RouteTrie"]

ANY = "ANY"
DEFAULT_TEMPLATE = "$default"

# An upper-case RFC 9110 token (tchar without lower-case letters).
_METHOD_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")


class RouteMatch:
    """The result of a successful ``RouteTrie.match``; read-only."""

    __slots__ = ("_method", "_params", "_template", "_value")

    def __init__(
        self, value: object, method: str, template: str, params: dict[str, str] | None = None
    ) -> None:
        self._value = value
        self._method = method
        self._template = template
        self._params = params

    @property
    def value(self) -> object:
        return self._value

    @property
    def method(self) -> str:
        return self._method

    @property
    def template(self) -> str:
        return self._template

    @property
    def params(self) -> dict[str, str]:
        # PERF: the dict is only created for routes that have parameters (or on first access).
        if self._params is None:
            self._params = {}
        return self._params

    def __repr__(self) -> str:
        return (
            f"RouteMatch(method={self._method!r}, template={self._template!r}, "
            f"params={self.params!r}, value={self._value!r})"
        )


class _Route:
    """One added route: what a match returns, and the parameter names along its path."""

    __slots__ = ("method", "param_names", "template", "value")

    def __init__(self, method: str, template: str, value: object, param_names: tuple[str, ...]) -> None:
        self.method = method
        self.template = template
        self.value = value
        self.param_names = param_names

    def describe(self) -> str:
        return f"{self.method} {self.template}"


class _Node:
    """A trie node: one path prefix, its routes and its children."""

    __slots__ = (
        "any_route",
        "greedy",
        "greedy_name",
        "literals",
        "methods",
        "origin",
        "param",
        "param_name",
    )

    def __init__(self, origin: str) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.param_name: str = ""
        self.greedy: _Node | None = None
        self.greedy_name: str = ""
        self.methods: dict[str, _Route] = {}  # exact methods
        self.any_route: _Route | None = None
        self.origin = origin  # "METHOD /template" of the route that created this node

    def route_for(self, method: str) -> _Route | None:
        route = self.methods.get(method)
        return route if route is not None else self.any_route


# Segment kinds of a parsed template.
_LITERAL, _PARAM, _GREEDY = 0, 1, 2


def _parse_template(method: str, template: str) -> list[tuple[int, str]]:
    """Validate ``method`` and ``template``; return the template's segments as (kind, text)."""
    if not isinstance(method, str) or not isinstance(template, str):
        raise TypeError("method and template must be str")
    if method != ANY and _METHOD_RE.fullmatch(method) is None:
        raise RouteError(f"invalid route {method!r} {template}: method must be an upper-case token or ANY")

    def fail(reason: str) -> RouteError:
        return RouteError(f"invalid route {method} {template}: {reason}")

    if not template.startswith("/"):
        raise fail("template must start with '/'")
    if template == "/":
        return []
    texts = template[1:].split("/")
    segments: list[tuple[int, str]] = []
    seen: set[str] = set()
    last = len(texts) - 1
    for index, text in enumerate(texts):
        if not text:
            raise fail("trailing slash" if index == last else "empty segment")
        if text.startswith("{") and text.endswith("}") and len(text) >= 2:
            name = text[1:-1]
            kind = _PARAM
            if name.endswith("+"):
                name = name[:-1]
                kind = _GREEDY
                if index != last:
                    raise fail(f"greedy parameter {text} must be the last segment")
            if _PARAM_NAME_RE.fullmatch(name) is None:
                raise fail(f"invalid parameter name in {text}")
            if name in seen:
                raise fail(f"duplicate parameter name {name!r}")
            seen.add(name)
            segments.append((kind, name))
        elif "{" in text or "}" in text:
            raise fail(f"braces inside literal segment {text!r}")
        elif text in (".", ".."):
            raise fail(f"dot segment {text!r} can never match a normalised path")
        else:
            segments.append((_LITERAL, text))
    return segments


class RouteTrie:
    """Routes by (method, path template) with AWS API Gateway precedence."""

    __slots__ = ("_count", "_default", "_root")

    def __init__(self) -> None:
        self._root = _Node("/")
        self._default: _Route | None = None
        self._count = 0

    # -- building ------------------------------------------------------------------------

    def add(self, method: str, template: str, value: object) -> None:
        """Add a route; raise ``RouteError`` if invalid, ``RouteConflictError`` on a clash."""
        segments = _parse_template(method, template)
        route = _Route(method, template, value, tuple(name for kind, name in segments if kind != _LITERAL))
        # Check every conflict before creating any node, so a failed add changes nothing.
        node: _Node | None = self._root
        for kind, text in segments:
            assert node is not None
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
                raise RouteConflictError(
                    f"route {route.describe()} conflicts with route {existing.describe()}: "
                    "same method on the same path"
                )
        # Insert.
        node = self._root
        origin = route.describe()
        for kind, text in segments:
            if kind == _LITERAL:
                child = node.literals.get(text)
                if child is None:
                    child = node.literals[text] = _Node(origin)
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

    def set_default(self, value: object) -> None:
        """Set the ``$default`` route (method ``ANY``); it can be set once."""
        if self._default is not None:
            raise RouteConflictError(f"route ANY {DEFAULT_TEMPLATE} is already set")
        self._default = _Route(ANY, DEFAULT_TEMPLATE, value, ())
        self._count += 1

    # -- matching ------------------------------------------------------------------------

    def match(self, method: str, path: str) -> RouteMatch | None:
        """Return the best route for ``method`` and the normalised ``path``, or ``None``."""
        values: list[str] = []
        route = self._match(self._root, method, path, 1, values)
        if route is None:
            route = self._default
            if route is None:
                return None
        params = dict(zip(route.param_names, values, strict=True)) if route.param_names else None
        return RouteMatch(route.value, route.method, route.template, params)

    def _match(self, node: _Node, method: str, path: str, pos: int, values: list[str]) -> _Route | None:
        """Match path[pos:] (pos is just after a '/') below node; values collects parameters."""
        if pos >= len(path):  # every segment consumed ("/a" and "/a/" both end here)
            return node.route_for(method)
        end = path.find("/", pos)
        if end == -1:
            end = len(path)
        segment = path[pos:end]
        child = node.literals.get(segment)
        if child is not None:
            route = self._match(child, method, path, end + 1, values)
            if route is not None:
                return route
        if node.param is not None and segment:
            values.append(segment)
            route = self._match(node.param, method, path, end + 1, values)
            if route is not None:
                return route
            values.pop()
        if node.greedy is not None:
            route = node.greedy.route_for(method)
            if route is not None:
                values.append(path[pos:])
                return route
        return None

    # -- introspection -------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str]]:
        """(method, template) of every route in precedence order, ``$default`` last."""
        out: list[tuple[str, str]] = []
        _collect(self._root, out)
        if self._default is not None:
            out.append((ANY, DEFAULT_TEMPLATE))
        return out

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<RouteTrie with {self._count} routes>"


def _sibling_conflict(route: _Route, sibling: _Node, sibling_segment: str) -> RouteConflictError:
    return RouteConflictError(
        f"route {route.describe()} conflicts with route {sibling.origin}: a sibling path parameter "
        f"{sibling_segment} with a different name already exists"
    )


def _collect(node: _Node, out: list[tuple[str, str]]) -> None:
    for method in sorted(node.methods):
        out.append((method, node.methods[method].template))
    if node.any_route is not None:
        out.append((ANY, node.any_route.template))
    for text in sorted(node.literals):
        _collect(node.literals[text], out)
    if node.param is not None:
        _collect(node.param, out)
    if node.greedy is not None:
        _collect(node.greedy, out)

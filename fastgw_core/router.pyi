"""Public typing of the route trie facade (both builds share it)."""

from typing import Final, final

__all__ = ["COMPILED", "RouteMatch", "RouteMatchC", "RouteMatchPy", "RouteTrie", "RouteTrieC", "RouteTriePy"]

COMPILED: Final[bool]

@final
class RouteMatch:
    """The result of a successful ``RouteTrie.match``; read-only."""

    def __init__(
        self, value: object, method: str, template: str, params: dict[str, str] | None = None
    ) -> None: ...
    @property
    def value(self) -> object: ...
    @property
    def method(self) -> str:
        """The route's method ("GET", ...) or "ANY" (also for ``$default``)."""
    @property
    def template(self) -> str:
        """The route's path template, e.g. "/pets/{id}", or "$default"."""
    @property
    def params(self) -> dict[str, str]:
        """Path parameters by name (a greedy name without '+'), still percent-encoded."""

class RouteTrie:
    """Routes by (method, path template) with AWS API Gateway precedence."""

    def __init__(self) -> None: ...
    def add(self, method: str, template: str, value: object) -> None: ...
    def set_default(self, value: object) -> None: ...
    def match(self, method: str, path: str) -> RouteMatch | None: ...
    def routes(self) -> list[tuple[str, str]]: ...
    def __len__(self) -> int: ...

RouteTriePy: type[RouteTrie]
RouteMatchPy: type[RouteMatch]
RouteTrieC: type[RouteTrie] | None
RouteMatchC: type[RouteMatch] | None

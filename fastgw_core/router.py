"""Route trie facade: binds the compiled build unless it is missing or disabled.

``RouteTrie`` and ``RouteMatch`` are the selected build; ``RouteTriePy`` and ``RouteTrieC``
(``None`` when the extension is not built) stay importable for tests and benchmarks.
"""

from typing import Any

from fastgw_core import _env
from fastgw_core._router_py import RouteMatch as RouteMatchPy
from fastgw_core._router_py import RouteTrie as RouteTriePy

__all__ = ["COMPILED", "RouteMatch", "RouteMatchC", "RouteMatchPy", "RouteTrie", "RouteTrieC", "RouteTriePy"]

RouteTrieC: Any = None
RouteMatchC: Any = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._router_c import RouteMatch as RouteMatchC
        from fastgw_core._router_c import RouteTrie as RouteTrieC
    except ImportError:  # pragma: no cover - depends on the build
        RouteTrieC = RouteMatchC = None

COMPILED: bool = RouteTrieC is not None

RouteTrie: Any
RouteMatch: Any
if COMPILED:
    RouteTrie, RouteMatch = RouteTrieC, RouteMatchC
else:
    RouteTrie, RouteMatch = RouteTriePy, RouteMatchPy

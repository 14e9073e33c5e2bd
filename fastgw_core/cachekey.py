"""Response-cache key facade: binds the compiled build unless it is missing or disabled.

``cache_key`` and ``KeySpec`` are the selected build; ``cache_key_py`` / ``KeySpecPy`` and
``cache_key_c`` / ``KeySpecC`` (``None`` when the extension is not built) stay importable for
tests and benchmarks. ``_cachekey_py`` documents the byte format, where ``KeySpec.build`` reads
each value from a request, and ``key_hash`` (blake2b-64, one implementation for both builds).

At configuration time, once per route::

    spec = KeySpec("/pets/{id}", [parse_parameter(p) for p in route.cacheKeyParameters])

per request (a few hundred ns compiled)::

    key = spec.build(req.method, req.header, req.query, req.params)
    name = f"{key_hash(key):016x}"  # Redis key names only; stores compare ``key`` itself
"""

from collections.abc import Callable
from typing import Any

from fastgw_core import _env
from fastgw_core._cachekey_py import KEY_VERSION, KINDS, key_hash, parse_key, parse_parameter
from fastgw_core._cachekey_py import KeySpec as KeySpecPy
from fastgw_core._cachekey_py import cache_key as cache_key_py

__all__ = [
    "COMPILED",
    "KEY_VERSION",
    "KINDS",
    "KeySpec",
    "KeySpecC",
    "KeySpecPy",
    "cache_key",
    "cache_key_c",
    "cache_key_py",
    "key_hash",
    "parse_key",
    "parse_parameter",
]

KeySpecC: Any = None
cache_key_c: Callable[..., bytes] | None = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._cachekey_c import KeySpec as KeySpecC
        from fastgw_core._cachekey_c import cache_key as cache_key_c
    except ImportError:  # pragma: no cover - depends on the build
        KeySpecC = cache_key_c = None

COMPILED: bool = KeySpecC is not None

KeySpec: Any = KeySpecC if COMPILED else KeySpecPy
cache_key: Callable[..., bytes] = cache_key_c if cache_key_c is not None else cache_key_py

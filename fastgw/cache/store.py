"""The per-worker response cache (``MemoryCache``, ``Entry``; see ``_memory_py``) in the build
in use, and the cache errors.

``_memory_py.py`` is compiled as ``_memory_c`` (Cython pure-Python mode, types in
``_memory_c.pxd``); ``FASTGW_NO_EXTENSIONS=1`` selects the Python build.

``CacheUnavailable`` is raised by shared backends (``redis_cache.RedisCache``) when the backend
cannot answer; callers treat it as a miss (and skip the store), never as a client error.
"""

from __future__ import annotations

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.cache._memory_c", "fastgw.cache._memory_py")

ANY_METHOD = _impl.ANY_METHOD
CREDENTIAL_HEADERS: tuple[str, ...] = _impl.CREDENTIAL_HEADERS
DEFAULT_MAX_ITEM_BYTES: int = _impl.DEFAULT_MAX_ITEM_BYTES
ENTRY_OVERHEAD: int = _impl.ENTRY_OVERHEAD
REFRESH_OR_CREDENTIALS: tuple[bytes, ...] = _impl.REFRESH_OR_CREDENTIALS
CacheHead = _impl.CacheHead
Entry = _impl.Entry
MemoryCache = _impl.MemoryCache
entry_size = _impl.entry_size
method_matches = _impl.method_matches
path_under = _impl.path_under

__all__ = [
    "ANY_METHOD",
    "COMPILED",
    "CREDENTIAL_HEADERS",
    "DEFAULT_MAX_ITEM_BYTES",
    "ENTRY_OVERHEAD",
    "REFRESH_OR_CREDENTIALS",
    "CacheError",
    "CacheHead",
    "CacheUnavailable",
    "Entry",
    "MemoryCache",
    "entry_size",
    "method_matches",
    "path_under",
]


class CacheError(Exception):
    """Root of the response cache's errors."""


class CacheUnavailable(CacheError):
    """A shared cache backend did not answer (down, timed out, refused, error reply).

    Callers serve the request as a miss and do not store the response."""

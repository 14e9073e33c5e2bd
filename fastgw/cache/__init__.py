"""The response cache (AWS stage cache): keys from ``fastgw_core.cachekey``, and two stores.

``store.MemoryCache`` (per worker, byte-bounded LRU with TTL) and ``redis_cache.RedisCache``
(shared by every node through Redis; a Redis failure raises ``CacheUnavailable``, which is a
miss). Both keep ``Entry`` objects: status, the ready head block, the body, and the method and
path that ``purge_prefix`` matches.
"""

from fastgw.cache.redis_cache import RedisCache, RedisFull
from fastgw.cache.store import (
    DEFAULT_MAX_ITEM_BYTES,
    ENTRY_OVERHEAD,
    CacheError,
    CacheUnavailable,
    Entry,
    MemoryCache,
    path_under,
)

__all__ = [
    "DEFAULT_MAX_ITEM_BYTES",
    "ENTRY_OVERHEAD",
    "CacheError",
    "CacheUnavailable",
    "Entry",
    "MemoryCache",
    "RedisCache",
    "RedisFull",
    "path_under",
]

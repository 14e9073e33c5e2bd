"""The shared response cache: one Redis holds the entries of every worker of every node.

``RedisCache`` has the meaning of ``store.MemoryCache`` with async calls: ``get``, ``put``,
``purge``, ``purge_prefix`` and ``flush``. A failure of Redis raises ``CacheUnavailable``,
which the caller treats as a miss (serve from the integration, store nothing): never an error
to the client.

Layout, for a namespace ``ns`` (e.g. ``fastgw:cache:shop:prod``)::

    {ns}:gen            string  the current generation G (decimal)
    {ns}:{G}:{h:016x}   string  one entry, SET with PX = its TTL; h = key_hash(key)

An entry's value is a small binary record, big-endian, 21 fixed bytes then the data::

    0  u8   format version (1)
    1  u16  status
    3  u32  ttl in ms (as stored)
    7  u16  len(method)       9  u32 len(path)     13  u32 len(key)     17  u32 len(head)
    21 method, path (UTF-8), key, head, body (the rest)

The full key travels inside the value: ``get`` compares it, so two keys with the same 64-bit
hash never serve each other's response (the later ``put`` wins the slot; the other is a miss).

Generations: every call runs one Lua script that reads ``{ns}:gen`` and builds the entry's
name, so ``flush`` is one ``INCR``: atomic, O(1), seen by every node on its next call, with
no ``KEYS``. The old generation's entries are unreachable at once; ``flush`` then reclaims
their memory with ``SCAN MATCH {ns}:*`` + ``UNLINK`` (only generations older than its own, so
a concurrent flush elsewhere loses nothing); entries it misses expire by their TTL (at most
an hour) or are evicted first under memory pressure, never being read. A missing ``gen``
(evicted, or Redis restarted empty) is recreated from Redis's clock in microseconds, so it
does not return to a generation already used (that would take more flushes than microseconds
have passed). ``purge_prefix`` scans the current generation
with ``SCAN MATCH`` and deletes, server-side in a Lua script per batch, the entries whose
recorded method and path match (``GETRANGE`` on their 21-byte header and the two strings:
bodies are never read or sent). Purges and reclaims are O(keys in the database); they are
admin operations. Key names are built inside scripts, so a standalone Redis (or a
Sentinel-managed primary) is needed, not Redis Cluster (as for ``fastgw.state.redis_store``).

Age: ``get`` reads the entry's remaining ``PTTL`` in the same script, so the age
(ttl - remaining) comes from Redis's own clock and node clocks never matter; the returned
entry's ``stored_at`` and ``expires_at`` are in the caller's clock (``now``).

Capacity is Redis's: ``maxmemory`` with a policy that evicts (``volatile-lru``,
``volatile-ttl`` or ``allkeys-lru``; every entry has a TTL, the small ``gen`` key has none).
Under ``noeviction`` a full Redis refuses SETs: ``put`` then returns False (counted in
``refused``) and Redis stays usable for reads. ``max_item_bytes`` is checked here.

Failures: every call has a deadline (``timeout``, plus the client's own socket timeouts:
build it with ``fastgw.state.redis_store.make_client``) and no retries. A failure (timeout,
refused, reset, error reply) raises ``CacheUnavailable`` and marks Redis down for
``retry_after`` seconds, during which every call raises ``CacheUnavailable`` at once without
I/O, so requests do not each wait for a dead Redis; the first call after that tries again.
Transitions are logged once each on the ``fastgw.cache`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, RedisError

from fastgw.cache.store import (
    ANY_METHOD,
    DEFAULT_MAX_ITEM_BYTES,
    CacheUnavailable,
    Entry,
)
from fastgw.state.redis_store import Script
from fastgw_core.cachekey import key_hash

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "RedisCache",
    "RedisFull",
    "decode_entry",
    "encode_entry",
    "glob_escape",
]

T = TypeVar("T")
log = logging.getLogger("fastgw.cache")

FORMAT_VERSION = 1
HEADER = struct.Struct(">BHIHIII")  # version, status, ttl ms, len method, path, key, head
_HEADER_SIZE = HEADER.size  # 21
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_MAX_TTL_MS = 0xFFFFFFFF
_GLOB_SPECIAL = {c: "\\" + c for c in "*?[]\\"}

# Every script: KEYS[1] = {ns}:gen. ARGV[1] = "{ns}:". The generation is read (or created from
# TIME, in microseconds, when missing) and the entry name is ARGV[1] .. G .. ":" .. hash.
_GEN = """
local function gen(k)
  local g = redis.call('GET', k)
  if not g then
    local t = redis.call('TIME')
    g = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', k, g)
  end
  return g
end
local function u16(s, i) local a, b = string.byte(s, i, i + 1) return a * 256 + b end
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
"""

# ARGV[2] = hash. Returns {value, pttl} or false.
_GET = Script(
    _GEN
    + """
local name = ARGV[1] .. gen(KEYS[1]) .. ':' .. ARGV[2]
local v = redis.call('GET', name)
if not v then return false end
return {v, redis.call('PTTL', name)}
"""
)

# ARGV[2] = hash, ARGV[3] = value, ARGV[4] = ttl ms.
_PUT = Script(
    _GEN
    + """
redis.call('SET', ARGV[1] .. gen(KEYS[1]) .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
return 1
"""
)

# ARGV[2] = hash, ARGV[3] = the full key: deleted only if the entry is that key's.
_PURGE = Script(
    _GEN
    + """
local name = ARGV[1] .. gen(KEYS[1]) .. ':' .. ARGV[2]
local h = redis.call('GETRANGE', name, 0, 20)
if #h ~= 21 or string.byte(h, 1) ~= 1 then return 0 end
local kl = u32(h, 14)
local off = 21 + u16(h, 8) + u32(h, 10)
if kl ~= #ARGV[3] or redis.call('GETRANGE', name, off, off + kl - 1) ~= ARGV[3] then return 0 end
return redis.call('UNLINK', name)
"""
)

# Returns the current generation.
_READ_GEN = Script(_GEN + "return gen(KEYS[1])\n")

# Returns the new generation (an integer reply: exact, it is below 2**53).
_FLUSH = Script(
    _GEN
    + """
gen(KEYS[1])
return redis.call('INCR', KEYS[1])
"""
)

# KEYS[1] = gen (unused here, for the shared header). KEYS[2..] = entry names from SCAN.
# ARGV[2] = method ('' = any), ARGV[3] = path prefix (whole segments). Returns how many.
_PURGE_BATCH = Script(
    _GEN
    + """
local method, prefix = ARGV[2], ARGV[3]
local np = #prefix
local n = 0
for i = 2, #KEYS do
  local h = redis.call('GETRANGE', KEYS[i], 0, 20)
  if #h == 21 and string.byte(h, 1) == 1 then
    local ml, pl = u16(h, 8), u32(h, 10)
    local mp = redis.call('GETRANGE', KEYS[i], 21, 20 + ml + pl)
    local m, p = string.sub(mp, 1, ml), string.sub(mp, ml + 1)
    local under = np == 0 or (string.sub(p, 1, np) == prefix and
      (#p == np or string.byte(prefix, np) == 47 or string.byte(p, np + 1) == 47))
    if under and (method == '' or m == method) then
      n = n + redis.call('UNLINK', KEYS[i])
    end
  end
end
return n
"""
)


class RedisFull(CacheUnavailable):
    """Redis refused a write for lack of memory (``maxmemory`` under ``noeviction``).

    Not a failure of Redis: it does not mark Redis down; ``put`` answers False."""


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return "".join(_GLOB_SPECIAL.get(c, c) for c in text)


def encode_entry(key: bytes, entry: Entry, ttl_ms: int) -> bytes:
    """The Redis value of ``entry`` (see the module docstring)."""
    method = entry.method.encode("utf-8", "surrogatepass")
    path = entry.path.encode("utf-8", "surrogatepass")
    header = _pack_header(
        FORMAT_VERSION, entry.status, ttl_ms, len(method), len(path), len(key), len(entry.head)
    )
    return b"".join((header, method, path, key, entry.head, entry.body))


def decode_entry(value: bytes, key: bytes, now: float, pttl_ms: int) -> Entry | None:
    """The entry in ``value`` if it is ``key``'s and well formed, else None.

    ``pttl_ms`` is the remaining TTL Redis reported; times come out in the clock of ``now``."""
    if len(value) < _HEADER_SIZE or value[0] != FORMAT_VERSION:
        return None
    _, status, ttl_ms, ml, pl, kl, hl = _unpack_header(value)
    off = _HEADER_SIZE
    end = off + ml + pl + kl + hl
    if end > len(value):
        return None
    k0 = off + ml + pl
    if kl != len(key) or value[k0 : k0 + kl] != key:
        return None  # another key with the same hash
    method = value[off : off + ml].decode("utf-8", "surrogatepass")
    path = value[off + ml : k0].decode("utf-8", "surrogatepass")
    head = value[k0 + kl : end]
    body = value[end:]
    remaining = pttl_ms / 1000 if pttl_ms >= 0 else ttl_ms / 1000
    stored_at = now - max(0.0, ttl_ms / 1000 - remaining)
    return Entry(status, head, body, method, path, stored_at, now + remaining)


class RedisCache:
    """A response cache shared through one Redis (see the module docstring)."""

    __slots__ = (
        "_down_until",
        "_gen_key",
        "_monotonic",
        "_prefix",
        "client",
        "errors",
        "hits",
        "max_item_bytes",
        "misses",
        "namespace",
        "refused",
        "retry_after",
        "scan_count",
        "stores",
        "timeout",
    )

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        timeout: float = 0.1,
        retry_after: float = 1.0,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        scan_count: int = 500,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        if timeout <= 0 or retry_after < 0 or max_item_bytes <= 0 or scan_count <= 0:
            raise ValueError("timeout, max_item_bytes and scan_count must be positive, retry_after >= 0")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must return bytes (decode_responses=False)")
        self.client = client
        self.namespace = namespace
        self.timeout = timeout
        self.retry_after = retry_after
        self.max_item_bytes = max_item_bytes
        self.scan_count = scan_count
        self._monotonic = monotonic
        self._prefix = namespace + ":"
        self._gen_key = namespace + ":gen"
        self._down_until = 0.0
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.refused = 0
        self.errors = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def available(self) -> bool:
        """False while Redis is marked down (after a failure, for ``retry_after`` seconds)."""
        return not self._down_until or self._monotonic() >= self._down_until

    def _check(self) -> None:
        if self._down_until:
            left = self._down_until - self._monotonic()
            if left > 0:
                self.errors += 1
                raise CacheUnavailable(f"redis cache {self.namespace!r}: down, next try in {left:.2f} s")

    def _failed(self, ex: BaseException, what: str) -> CacheUnavailable:
        self.errors += 1
        if not self._down_until:
            log.warning("redis cache %r unavailable (%s); serving misses", self.namespace, what)
        self._down_until = self._monotonic() + self.retry_after
        return CacheUnavailable(f"redis cache {self.namespace!r}: {what}")

    async def _call(self, op: Awaitable[T]) -> T:
        """Await one Redis operation under the deadline; every failure becomes ``CacheUnavailable``."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await op
        except TimeoutError as ex:
            raise self._failed(ex, f"no answer within {self.timeout * 1000:.0f} ms") from ex
        except OutOfMemoryError as ex:  # full under noeviction: Redis itself is fine
            raise RedisFull(f"redis cache {self.namespace!r}: {ex}") from ex
        except (RedisError, OSError) as ex:
            raise self._failed(ex, f"{type(ex).__name__}: {ex}") from ex
        if self._down_until:
            self._down_until = 0.0
            log.info("redis cache %r available again", self.namespace)
        return result

    async def _script(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        return await self._call(script(self.client, keys, args))

    # ------------------------------------------------------------------ the cache
    async def get(self, key: bytes, now: float) -> Entry | None:
        """The live entry of ``key``, or None; ``CacheUnavailable`` when Redis fails."""
        self._check()
        h = f"{key_hash(key):016x}"
        raw = await self._script(_GET, [self._gen_key], [self._prefix, h])
        if not raw:
            self.misses += 1
            return None
        value, pttl = raw
        entry = decode_entry(value, key, now, int(pttl))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    async def put(self, key: bytes, entry: Entry, ttl: float, now: float) -> bool:
        """Store ``entry`` for ``ttl`` seconds (SET PX); False when refused (too big, ttl <= 0,
        Redis out of memory under ``noeviction``)."""
        if ttl <= 0 or len(entry.head) + len(entry.body) > self.max_item_bytes:
            self.refused += 1
            return False
        self._check()
        ttl_ms = min(max(1, round(ttl * 1000)), _MAX_TTL_MS)
        h = f"{key_hash(key):016x}"
        value = encode_entry(key, entry, ttl_ms)
        try:
            await self._script(_PUT, [self._gen_key], [self._prefix, h, value, ttl_ms])
        except RedisFull:
            self.refused += 1
            return False
        entry.stored_at = now
        entry.expires_at = now + ttl_ms / 1000
        self.stores += 1
        return True

    async def purge(self, key: bytes) -> bool:
        """Drop the entry of ``key`` on every node; False when there was none."""
        self._check()
        h = f"{key_hash(key):016x}"
        n = await self._script(_PURGE, [self._gen_key], [self._prefix, h, key])
        return bool(n)

    async def _scan(self, pattern: str, cursor: int) -> tuple[int, list[bytes]]:
        self._check()
        next_cursor, names = await self._call(
            self.client.scan(cursor=cursor, match=pattern, count=self.scan_count)
        )
        return int(next_cursor), list(names)

    async def purge_prefix(self, method: str | None, path_prefix: str) -> int:
        """Drop every entry of ``method`` (None, "*", "ANY": any) at or below ``path_prefix``
        (whole segments); returns how many. A failure midway leaves the rest in place."""
        self._check()
        gen = await self._current_gen()
        want = "" if method is None or method in ANY_METHOD else method
        pattern = f"{glob_escape(self._prefix)}{gen}:" + "?" * 16
        total = 0
        cursor = 0
        while True:
            cursor, names = await self._scan(pattern, cursor)
            if names:
                total += int(
                    await self._script(
                        _PURGE_BATCH, [self._gen_key, *names], [self._prefix, want, path_prefix]
                    )
                )
            if cursor == 0:
                return total

    async def _current_gen(self) -> str:
        raw = await self._script(_READ_GEN, [self._gen_key], [])
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def flush(self, reclaim: bool = True) -> int:
        """Empty the cache for every node at once (a new generation); with ``reclaim``, UNLINK
        the older generations' entries too and return how many (a failure while reclaiming is
        logged: the flush itself has happened, and the rest expires by TTL)."""
        self._check()
        raw = await self._script(_FLUSH, [self._gen_key], [self._prefix])
        gen = int(raw)
        if not reclaim:
            return 0
        try:
            return await self.reclaim(gen)
        except CacheUnavailable as ex:
            log.warning("redis cache %r: flushed, reclaim stopped: %s", self.namespace, ex)
            return 0

    async def reclaim(self, current: int) -> int:
        """UNLINK the entries of generations older than ``current``; returns how many."""
        prefix = self._prefix.encode()
        pattern = glob_escape(self._prefix) + "*:" + "?" * 16
        total = 0
        cursor = 0
        while True:
            cursor, names = await self._scan(pattern, cursor)
            old = []
            for name in names:
                g, sep, h = name[len(prefix) :].partition(b":")
                if sep and len(h) == 16 and g.isdigit() and int(g) < current:
                    old.append(name)
            if old:
                total += int(await self._call(self.client.unlink(*old)))
            if cursor == 0:
                return total

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "refused": self.refused,
            "errors": self.errors,
        }

    def __repr__(self) -> str:
        return f"<RedisCache {self.namespace!r} {'up' if self.available else 'down'}>"

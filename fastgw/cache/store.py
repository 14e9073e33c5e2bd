"""The per-worker response cache: entries by full key, TTL, a byte capacity, LRU eviction.

``MemoryCache`` is the AWS stage cache of one worker process. It is sans-IO and takes ``now``
from the caller (``loop.time()``, monotonic seconds); it is not thread-safe (one event loop).

- ``get(key, now)``: the entry, or None. An expired entry is removed and counts as a miss. A
  hit makes the entry the most recently used.
- ``put(key, entry, ttl, now)``: stores the entry for ``ttl`` seconds (stamping
  ``entry.stored_at`` and ``entry.expires_at``), replacing an entry of the same key. Refused
  (False) when ``ttl <= 0`` (AWS: 0 = caching off), when the response (head + body) is over
  ``max_item_bytes`` (AWS: 1 MB) or when the entry alone would not fit the capacity. Otherwise
  least recently used entries are evicted (expired or not) until it fits.
- Size of an entry: ``len(key) + len(head) + len(body) + len(method) + len(path)`` plus
  ``ENTRY_OVERHEAD`` for the objects and the table slot.
- ``flush()``, ``purge(key)``, ``purge_prefix(method, path_prefix)``, ``sweep(now)`` (drop
  every expired entry) and the counters ``hits``, ``misses``, ``evictions``, ``expired``,
  ``refused``, ``size_bytes``, ``items`` (``stats()`` returns them all).

Keys are compared whole (the dict does), so two requests never share an entry unless their
keys are equal. ``get``, ``put``, ``purge`` are O(1); ``purge_prefix`` and ``sweep`` scan.

``purge_prefix`` matches the ``method`` and ``path`` recorded in the entry (the caller chooses:
the request path inside the stage, "/pets/12", lets an operator purge what clients asked for).
The prefix matches whole segments (``path_under``): "/pets" covers "/pets" and "/pets/12" but
not "/petshop"; "/" and "" cover everything. ``method`` None, "*" or "ANY" is any method.

``CacheUnavailable`` is raised by shared backends (``redis_cache.RedisCache``) when the backend
cannot answer; callers treat it as a miss (and skip the store), never as a client error.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = [
    "ANY_METHOD",
    "DEFAULT_MAX_ITEM_BYTES",
    "ENTRY_OVERHEAD",
    "CacheError",
    "CacheUnavailable",
    "Entry",
    "MemoryCache",
    "method_matches",
    "path_under",
]

DEFAULT_MAX_ITEM_BYTES = 1_048_576
# Bytes charged per entry besides the lengths of its key and data: the Entry and its two
# floats, the table slots and the OrderedDict link (about 250 on CPython 3.11, measured with
# tracemalloc), plus the object headers of the key, head, body and path (about 150).
ENTRY_OVERHEAD = 400
ANY_METHOD = frozenset({"*", "ANY"})


class CacheError(Exception):
    """Root of the response cache's errors."""


class CacheUnavailable(CacheError):
    """A shared cache backend did not answer (down, timed out, refused, error reply).

    Callers serve the request as a miss and do not store the response."""


class Entry:
    """One cached response: status, the ready head block (header lines), the body.

    ``method`` and ``path`` are what ``purge_prefix`` matches. ``stored_at`` and ``expires_at``
    are set by the store, in the caller's clock (``now``)."""

    __slots__ = ("body", "expires_at", "head", "method", "path", "status", "stored_at")

    def __init__(
        self,
        status: int,
        head: bytes,
        body: bytes,
        method: str = "",
        path: str = "",
        stored_at: float = 0.0,
        expires_at: float = 0.0,
    ) -> None:
        self.status = status
        self.head = head
        self.body = body
        self.method = method
        self.path = path
        self.stored_at = stored_at
        self.expires_at = expires_at

    def age(self, now: float) -> int:
        """Whole seconds since the entry was stored (the ``Age`` header), never negative."""
        age = now - self.stored_at
        return int(age) if age > 0 else 0

    def ttl(self, now: float) -> float:
        """Seconds left before the entry expires (<= 0: expired)."""
        return self.expires_at - now

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (
            self.status == other.status
            and self.head == other.head
            and self.body == other.body
            and self.method == other.method
            and self.path == other.path
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Entry({self.status}, {self.method} {self.path!r}, head={len(self.head)}B, "
            f"body={len(self.body)}B, stored_at={self.stored_at}, expires_at={self.expires_at})"
        )


def path_under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or below it, by whole segments."""
    n = len(prefix)
    if n == 0:
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == n or prefix[-1] == "/" or path[n] == "/"


def method_matches(method: str | None, entry_method: str) -> bool:
    """True when ``method`` (None, "*" and "ANY" are any method) selects ``entry_method``."""
    return method is None or method in ANY_METHOD or method == entry_method


def entry_size(key: bytes, entry: Entry) -> int:
    """The bytes an entry is charged (see the module docstring)."""
    return len(key) + len(entry.head) + len(entry.body) + len(entry.method) + len(entry.path) + ENTRY_OVERHEAD


class MemoryCache:
    """A byte-bounded LRU of ``Entry`` by key, with per-entry expiry (see the module docstring)."""

    __slots__ = (
        "_entries",
        "_sizes",
        "capacity_bytes",
        "evictions",
        "expired",
        "hits",
        "max_item_bytes",
        "misses",
        "refused",
        "size_bytes",
    )

    def __init__(self, capacity_bytes: int, max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES) -> None:
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        if max_item_bytes <= 0:
            raise ValueError("max_item_bytes must be positive")
        self.capacity_bytes = capacity_bytes
        self.max_item_bytes = max_item_bytes
        # Least recently used first. Sizes live beside the entries so that an Entry handed to
        # a caller carries nothing the store depends on.
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0
        self.refused = 0

    @property
    def items(self) -> int:
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: bytes, now: float) -> Entry | None:
        """The live entry of ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= now:
            self._remove(key)
            self.expired += 1
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: bytes, entry: Entry, ttl: float, now: float) -> bool:
        """Store ``entry`` under ``key`` for ``ttl`` seconds; False when refused."""
        if ttl <= 0 or len(entry.head) + len(entry.body) > self.max_item_bytes:
            self.refused += 1
            return False
        size = entry_size(key, entry)
        if size > self.capacity_bytes:
            self.refused += 1
            return False
        entries = self._entries
        if key in entries:
            self._remove(key)
        limit = self.capacity_bytes - size
        while self.size_bytes > limit:
            old, _ = entries.popitem(last=False)
            self.size_bytes -= self._sizes.pop(old)
            self.evictions += 1
        entry.stored_at = now
        entry.expires_at = now + ttl
        entries[key] = entry
        self._sizes[key] = size
        self.size_bytes += size
        return True

    def _remove(self, key: bytes) -> None:
        del self._entries[key]
        self.size_bytes -= self._sizes.pop(key)

    def purge(self, key: bytes) -> bool:
        """Drop the entry of ``key``; False when there was none."""
        if key not in self._entries:
            return False
        self._remove(key)
        return True

    def purge_prefix(self, method: str | None, path_prefix: str) -> int:
        """Drop every entry of ``method`` (None, "*", "ANY": any) at or below ``path_prefix``."""
        doomed = [
            key
            for key, entry in self._entries.items()
            if method_matches(method, entry.method) and path_under(entry.path, path_prefix)
        ]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def flush(self) -> int:
        """Drop every entry; returns how many there were."""
        n = len(self._entries)
        self._entries.clear()
        self._sizes.clear()
        self.size_bytes = 0
        return n

    def sweep(self, now: float) -> int:
        """Drop every expired entry (O(n), for a periodic timer); returns how many."""
        doomed = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in doomed:
            self._remove(key)
        self.expired += len(doomed)
        return len(doomed)

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "expired": self.expired,
            "refused": self.refused,
            "items": len(self._entries),
            "size_bytes": self.size_bytes,
            "capacity_bytes": self.capacity_bytes,
        }

    def __repr__(self) -> str:
        return f"<MemoryCache {len(self._entries)} items, {self.size_bytes}/{self.capacity_bytes} bytes>"

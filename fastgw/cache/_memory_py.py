# cython: annotation_typing=False
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
- ``flush()``, ``purge(key)``, ``purge_prefix(method, path_prefix)``, ``purge_path(method,
  path)``, ``sweep(now)`` (drop every expired entry) and the counters ``hits``, ``misses``,
  ``evictions``, ``expired``, ``refused``, ``size_bytes``, ``items`` (``stats()`` returns them
  all); ``keys()`` lists the keys from the least to the most recently used.

Keys are compared whole (the dict does), so two requests never share an entry unless their
keys are equal. ``get``, ``put``, ``purge`` are O(1); ``purge_prefix``, ``purge_path`` and
``sweep`` scan.

``purge_prefix`` matches the ``method`` and ``path`` recorded in the entry (the caller chooses:
the request path inside the stage, "/pets/12", lets an operator purge what clients asked for).
The prefix matches whole segments (``path_under``): "/pets" covers "/pets" and "/pets/12" but
not "/petshop"; "/" and "" cover everything. ``method`` None, "*" or "ANY" is any method.

``CacheHead`` is what the protocol reads of a cached route on every request head
(``fastgw.pipeline.caching.RouteCache`` extends it): ``lookup`` answers the usual head here.

The pure-Python source; compiled as ``_memory_c`` (Cython pure-Python mode, types in
``_memory_c.pxd``), so that a hit is C calls and struct reads: the table is a plain dict of
slots, and the recency order a list linked through them (an ``OrderedDict``'s ``get`` and
``move_to_end`` are Python method calls). ``fastgw.cache.store`` binds the build in use.
"""

from __future__ import annotations

from typing import Any

from fastgw_core.headers import has_header_line

DEFAULT_MAX_ITEM_BYTES = 1_048_576
# Bytes charged per entry besides the lengths of its key and data: the Entry, its slot and the
# table slot (about 250 on CPython 3.11), plus the object headers of the key, head, body and
# path (about 150).
ENTRY_OVERHEAD = 400
ANY_METHOD = frozenset({"*", "ANY"})
#: Headers that carry a caller's credentials: part of a cached route's key unless declared.
CREDENTIAL_HEADERS = ("authorization", "cookie")
#: A head without these headers needs no header lookup when the key reads none itself.
REFRESH_OR_CREDENTIALS = (*(name.encode() for name in CREDENTIAL_HEADERS), b"cache-control")


class Entry:
    """One cached response: status, the ready head block (header lines), the body.

    ``method`` and ``path`` are what ``purge_prefix`` matches. ``stored_at`` and ``expires_at``
    are set by the store, in the caller's clock (``now``). ``reply`` is the ``LocalReply`` a
    hit is answered with, when the storing pipeline made one (no object per hit)."""

    __slots__ = ("body", "expires_at", "head", "method", "path", "reply", "status", "stored_at")

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
        self.reply: Any = None

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
    return len(path) == n or prefix[n - 1] == "/" or path[n] == "/"  # (no negative index: compiled)


def method_matches(method: str | None, entry_method: str) -> bool:
    """True when ``method`` (None, "*" and "ANY" are any method) selects ``entry_method``."""
    return method is None or method in ANY_METHOD or method == entry_method


def entry_size(key: bytes, entry: Entry) -> int:
    """The bytes an entry is charged (see the module docstring)."""
    return len(key) + len(entry.head) + len(entry.body) + len(entry.method) + len(entry.path) + ENTRY_OVERHEAD


class _Slot:
    """An entry in the table: its key, its size, and its neighbours in the recency order."""

    __slots__ = ("entry", "key", "newer", "older", "size")

    def __init__(self, key: bytes, entry: Entry, size: int) -> None:
        self.key = key
        self.entry = entry
        self.size = size
        self.older: _Slot | None = None
        self.newer: _Slot | None = None


class MemoryCache:
    """A byte-bounded LRU of ``Entry`` by key, with per-entry expiry (see the module docstring)."""

    __slots__ = (
        "_newest",
        "_oldest",
        "_slots",
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
        self._slots: dict[bytes, _Slot] = {}
        # The recency order: a list linked through the slots, least recently used first.
        self._oldest: _Slot | None = None
        self._newest: _Slot | None = None
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        if max_item_bytes <= 0:
            raise ValueError("max_item_bytes must be positive")
        self.capacity_bytes = capacity_bytes
        self.max_item_bytes = max_item_bytes
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0
        self.refused = 0

    @property
    def items(self) -> int:
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def keys(self) -> list[bytes]:
        """The keys, least recently used first."""
        out = []
        slot = self._oldest
        while slot is not None:
            out.append(slot.key)
            slot = slot.newer
        return out

    def get(self, key: bytes, now: float) -> Entry | None:
        """The live entry of ``key`` (now the most recently used), or None."""
        slot = self._slots.get(key)
        if slot is None:
            self.misses += 1
            return None
        entry = slot.entry
        if entry.expires_at <= now:
            self._drop(slot)
            self.expired += 1
            self.misses += 1
            return None
        if slot is not self._newest:
            self._unlink(slot)
            self._append(slot)
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
        old = self._slots.get(key)
        if old is not None:
            self._drop(old)
        limit = self.capacity_bytes - size
        while self.size_bytes > limit:
            self._drop(self._oldest)
            self.evictions += 1
        entry.stored_at = now
        entry.expires_at = now + ttl
        slot = _Slot(key, entry, size)
        self._slots[key] = slot
        self._append(slot)
        self.size_bytes += size
        return True

    def _append(self, slot: _Slot) -> None:
        """Link ``slot`` in as the most recently used."""
        last = self._newest
        slot.older = last
        slot.newer = None
        if last is None:
            self._oldest = slot
        else:
            last.newer = slot
        self._newest = slot

    def _unlink(self, slot: _Slot) -> None:
        older = slot.older
        newer = slot.newer
        if older is None:
            self._oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self._newest = older
        else:
            newer.older = older
        slot.older = None
        slot.newer = None

    def _drop(self, slot: _Slot) -> None:
        self._unlink(slot)
        del self._slots[slot.key]
        self.size_bytes -= slot.size

    def purge(self, key: bytes) -> bool:
        """Drop the entry of ``key``; False when there was none."""
        slot = self._slots.get(key)
        if slot is None:
            return False
        self._drop(slot)
        return True

    def _purge_where(self, method: str | None, path: str, exact: bool) -> int:
        doomed = []
        slot = self._oldest
        while slot is not None:
            entry = slot.entry
            if method_matches(method, entry.method) and (
                entry.path == path if exact else path_under(entry.path, path)
            ):
                doomed.append(slot)
            slot = slot.newer
        for slot in doomed:
            self._drop(slot)
        return len(doomed)

    def purge_prefix(self, method: str | None, path_prefix: str) -> int:
        """Drop every entry of ``method`` (None, "*", "ANY": any) at or below ``path_prefix``."""
        return self._purge_where(method, path_prefix, False)

    def purge_path(self, method: str | None, path: str) -> int:
        """Drop every entry of ``method`` (None, "*", "ANY": any) of exactly ``path``."""
        return self._purge_where(method, path, True)

    def flush(self) -> int:
        """Drop every entry; returns how many there were."""
        n = len(self._slots)
        self._unlink_all()
        self._slots.clear()
        self.size_bytes = 0
        return n

    def _unlink_all(self) -> None:
        """Break the links between the slots (a cycle), so that none keeps another alive."""
        slot = self._oldest
        while slot is not None:
            newer = slot.newer
            slot.older = None
            slot.newer = None
            slot = newer
        self._oldest = None
        self._newest = None

    def sweep(self, now: float) -> int:
        """Drop every expired entry (O(n), for a periodic timer); returns how many."""
        doomed = []
        slot = self._oldest
        while slot is not None:
            if slot.entry.expires_at <= now:
                doomed.append(slot)
            slot = slot.newer
        for slot in doomed:
            self._drop(slot)
        self.expired += len(doomed)
        return len(doomed)

    def __del__(self) -> None:
        # The slots link each other (a cycle): unlinked now, so that a dropped store (a stage's
        # settings changed) frees its entries at once, not at the next cycle collection.
        self._unlink_all()

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "expired": self.expired,
            "refused": self.refused,
            "items": len(self._slots),
            "size_bytes": self.size_bytes,
            "capacity_bytes": self.capacity_bytes,
        }

    def __repr__(self) -> str:
        return f"<MemoryCache {len(self._slots)} items, {self.size_bytes}/{self.capacity_bytes} bytes>"


class CacheHead:
    """What the protocol reads of a cached route on every request head; ``fastgw.pipeline.
    caching.RouteCache`` extends it with the rest (and provides ``lookup_head`` and
    ``memory_store``).

    - ``plain``: the key reads no header but the credential ones;
    - ``static_keys``: a plain head's key by method, when the key reads no path or query
      parameter either (then it is the same for every plain head of a method): filled by
      ``lookup``, a few methods at most. None: keys are built per request;
    - ``early``: looked up in the protocol (set by the compiler when nothing runs before the
      traffic gate);
    - ``memory``: the worker's memory store for the route's stage, once looked up;
    - ``spec``: the key recipe (``fastgw_core.cachekey.KeySpec``).
    """

    __slots__ = ("early", "memory", "plain", "spec", "static_keys")

    def __init__(self, spec: Any, plain: bool, static_keys: bool) -> None:
        self.spec = spec
        self.plain = plain
        self.static_keys: dict[str, bytes] | None = {} if static_keys else None
        self.early = False
        self.memory: MemoryCache | None = None

    def lookup(
        self, method: str, fwd: list[bytes] | None, query: bytes, params: dict[str, str] | None, now: float
    ) -> object:
        """In the protocol: a hit (or a refusal), or the key for the pipeline to store under
        (None: do not cache this request).

        The usual head is answered here: a route whose key reads no header, and a head without
        Authorization, Cookie and Cache-Control, needs no header lookup; a hit is ``get``'s
        (counted, made the most recently used) and answers with the entry's reply. Other heads
        are ``lookup_head``'s."""
        if not self.plain or has_header_line(fwd, REFRESH_OR_CREDENTIALS):
            return self.lookup_head(method, fwd, query, params, now)  # type: ignore[attr-defined]
        keys = self.static_keys
        key = keys.get(method) if keys is not None else None
        if key is None:
            key = self.spec.build(method, None, query, params)
            if keys is not None and len(keys) < 8:
                keys[method] = key  # the same for every plain head of this method
        store = self.memory
        if store is None:
            store = self.memory_store()  # type: ignore[attr-defined]
        entry = store.get(key, now)
        if entry is not None and entry.reply is not None:
            return entry.reply
        return key

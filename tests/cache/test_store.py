"""MemoryCache: LRU order, byte capacity, item cap, TTL with explicit ``now``, purges, stats.

Every test runs on both builds of ``fastgw.cache._memory_py`` (the Python source and its
compiled ``_memory_c``), and a random sequence of operations is checked against a reference
LRU built on ``OrderedDict``."""

from __future__ import annotations

import importlib
import random
from collections import OrderedDict
from types import ModuleType
from typing import Any

import pytest

from fastgw.cache import store
from fastgw_core._env import NO_EXTENSIONS
from fastgw_core.cachekey import KeySpec


def _build(name: str) -> ModuleType:
    if name == "c":
        try:
            module = importlib.import_module("fastgw.cache._memory_c")
        except ImportError:
            if NO_EXTENSIONS:
                pytest.skip("extensions disabled")
            pytest.fail("compiled fastgw.cache._memory_c missing")
        if (module.__file__ or "").endswith(".py"):
            pytest.fail("fastgw.cache._memory_c is the uncompiled copy")
        return module
    return importlib.import_module("fastgw.cache._memory_py")


@pytest.fixture(params=["py", "c"], autouse=True)
def build(request: pytest.FixtureRequest) -> ModuleType:
    """Bind this module's names to one build for the test."""
    module = _build(request.param)
    g = globals()
    for name in ("DEFAULT_MAX_ITEM_BYTES", "ENTRY_OVERHEAD", "Entry", "MemoryCache", "entry_size"):
        g[name] = getattr(module, name)
    g["method_matches"] = module.method_matches
    g["path_under"] = module.path_under
    return module


DEFAULT_MAX_ITEM_BYTES: Any = store.DEFAULT_MAX_ITEM_BYTES
ENTRY_OVERHEAD: Any = store.ENTRY_OVERHEAD
Entry: Any = store.Entry
MemoryCache: Any = store.MemoryCache
entry_size: Any = store.entry_size
method_matches: Any = store.method_matches
path_under: Any = store.path_under

HEAD = b"Content-Type: application/json\r\n"


def entry(body: bytes = b"{}", path: str = "/pets", method: str = "GET", status: int = 200) -> Any:
    return Entry(status, HEAD, body, method, path)


def size_of(key: bytes, e: Any) -> int:
    return len(key) + len(e.head) + len(e.body) + len(e.method) + len(e.path) + ENTRY_OVERHEAD


def test_put_get_and_entry_times() -> None:
    c = MemoryCache(1 << 20)
    e = entry(b"hello")
    assert c.put(b"k", e, 300, now=1000.0)
    got = c.get(b"k", 1000.5)
    assert got is e
    assert (got.status, got.head, got.body) == (200, HEAD, b"hello")
    assert got.stored_at == 1000.0 and got.expires_at == 1300.0
    assert got.age(1061.9) == 61 and got.age(999.0) == 0
    assert got.ttl(1100.0) == 200.0
    assert c.get(b"other", 1000.5) is None
    assert (c.hits, c.misses, c.items, len(c)) == (1, 1, 1, 1)
    assert b"k" in c and b"other" not in c
    assert c.size_bytes == size_of(b"k", e) == entry_size(b"k", e)


def test_ttl_expiry_with_explicit_now() -> None:
    c = MemoryCache(1 << 20)
    c.put(b"k", entry(), 10, now=50.0)
    assert c.get(b"k", 59.999) is not None
    assert c.get(b"k", 60.0) is None  # expires_at is exclusive
    assert c.items == 0 and c.size_bytes == 0
    assert (c.hits, c.misses, c.expired) == (1, 1, 1)
    # ttl <= 0 is "caching off": refused, nothing stored.
    assert not c.put(b"k", entry(), 0, now=1.0)
    assert not c.put(b"k", entry(), -5, now=1.0)
    assert c.items == 0 and c.refused == 2


def test_replacing_a_key_keeps_one_entry_and_the_right_size() -> None:
    c = MemoryCache(1 << 20)
    c.put(b"k", entry(b"a" * 100), 60, 0.0)
    e2 = entry(b"b" * 10)
    c.put(b"k", e2, 60, 1.0)
    assert c.items == 1
    assert c.size_bytes == size_of(b"k", e2)
    assert c.get(b"k", 2.0) is e2
    assert c.evictions == 0


def test_lru_eviction_order_follows_use() -> None:
    e = entry(b"x" * 100)
    one = size_of(b"k0", e)
    c = MemoryCache(3 * one)  # room for exactly three
    for i in range(3):
        assert c.put(f"k{i}".encode(), entry(b"x" * 100), 60, float(i))
    assert c.size_bytes == 3 * one
    # Use k0: k1 is now the least recently used.
    assert c.get(b"k0", 5.0) is not None
    c.put(b"k3", entry(b"x" * 100), 60, 6.0)
    assert b"k1" not in c and {b"k0", b"k2", b"k3"} == {k for k in (b"k0", b"k2", b"k3") if k in c}
    assert c.evictions == 1
    # A miss does not change the order; k2 goes next.
    assert c.get(b"nope", 7.0) is None
    c.put(b"k4", entry(b"x" * 100), 60, 8.0)
    assert b"k2" not in c and b"k0" in c and b"k3" in c and b"k4" in c
    assert c.size_bytes <= c.capacity_bytes


def test_a_big_item_evicts_as_many_as_needed() -> None:
    small = entry(b"x" * 10)
    unit = size_of(b"k0", small)
    c = MemoryCache(10 * unit)
    for i in range(10):
        c.put(f"k{i}".encode(), entry(b"x" * 10), 60, 0.0)
    assert c.items == 10
    big = entry(b"y" * (unit * 3))
    assert c.put(b"big", big, 60, 1.0)
    # Four small entries had to go (the big one is 3 units of body plus its own overhead).
    assert c.evictions == 4 and c.items == 7
    assert [k for k in (f"k{i}".encode() for i in range(10)) if k in c] == [
        f"k{i}".encode() for i in range(4, 10)
    ]
    assert c.size_bytes <= c.capacity_bytes


def test_item_cap_and_capacity_refusals() -> None:
    c = MemoryCache(10_000, max_item_bytes=1000)
    assert c.put(b"ok", Entry(200, b"h" * 500, b"b" * 500), 60, 0.0)  # head + body == cap
    assert not c.put(b"big", Entry(200, b"h" * 500, b"b" * 501), 60, 0.0)
    assert c.refused == 1
    # Under the item cap but bigger than the whole cache: refused, nothing evicted.
    tiny = MemoryCache(ENTRY_OVERHEAD + 50, max_item_bytes=1000)
    assert not tiny.put(b"k", Entry(200, b"", b"b" * 100), 60, 0.0)
    assert tiny.evictions == 0 and tiny.refused == 1
    assert MemoryCache(1).max_item_bytes == DEFAULT_MAX_ITEM_BYTES == 1_048_576
    with pytest.raises(ValueError):
        MemoryCache(0)
    with pytest.raises(ValueError):
        MemoryCache(100, max_item_bytes=0)


def test_expired_entries_are_evicted_like_others_and_swept() -> None:
    unit = size_of(b"k0", entry())
    c = MemoryCache(4 * unit)
    for i in range(4):
        c.put(f"k{i}".encode(), entry(), 10 if i % 2 else 100, 0.0)
    assert c.sweep(50.0) == 2
    assert c.items == 2 and c.expired == 2
    assert c.size_bytes == 2 * unit
    assert c.sweep(50.0) == 0


def test_purge_and_flush() -> None:
    c = MemoryCache(1 << 20)
    for i in range(5):
        c.put(f"k{i}".encode(), entry(), 60, 0.0)
    assert c.purge(b"k1") is True
    assert c.purge(b"k1") is False
    assert c.items == 4
    assert c.flush() == 4
    assert c.items == 0 and c.size_bytes == 0
    assert c.get(b"k0", 1.0) is None


def test_purge_prefix_by_segment_and_method() -> None:
    c = MemoryCache(1 << 20)
    paths = ["/pets", "/pets/1", "/pets/1/toys", "/petshop", "/people/1", "/"]
    for p in paths:
        for m in ("GET", "HEAD"):
            c.put(f"{m} {p}".encode(), entry(path=p, method=m), 60, 0.0)
    assert c.purge_prefix("GET", "/pets") == 3
    assert {k for k in (f"GET {p}".encode() for p in paths) if k in c} == {
        b"GET /petshop",
        b"GET /people/1",
        b"GET /",
    }
    assert c.purge_prefix(None, "/pets/") == 2  # HEAD /pets/1, HEAD /pets/1/toys
    assert c.purge_prefix("*", "/pets") == 1  # HEAD /pets
    assert c.purge_prefix("ANY", "/people") == 2
    assert c.purge_prefix("POST", "/") == 0
    assert c.purge_prefix(None, "") == 4
    assert c.items == 0 and c.size_bytes == 0


def test_path_under_and_method_matches() -> None:
    assert path_under("/a/b", "/a") and path_under("/a", "/a") and path_under("/a/b", "/a/")
    assert path_under("/anything", "/") and path_under("/x", "")
    assert not path_under("/ab", "/a") and not path_under("/a", "/a/b") and not path_under("/b", "/a")
    assert method_matches(None, "GET") and method_matches("*", "PUT") and method_matches("ANY", "GET")
    assert method_matches("GET", "GET") and not method_matches("GET", "HEAD")


def test_stats() -> None:
    c = MemoryCache(1 << 20, max_item_bytes=10)
    c.put(b"a", Entry(200, b"", b"12345"), 1, 0.0)
    c.put(b"b", Entry(200, b"", b"x" * 11), 1, 0.0)
    c.get(b"a", 0.5)
    c.get(b"a", 2.0)
    c.get(b"z", 2.0)
    assert c.stats() == {
        "hits": 1,
        "misses": 2,
        "evictions": 0,
        "expired": 1,
        "refused": 1,
        "items": 0,
        "size_bytes": 0,
        "capacity_bytes": 1 << 20,
    }
    assert "MemoryCache 0 items" in repr(c)


def test_entry_equality_and_repr() -> None:
    a, b = entry(b"x"), entry(b"x")
    assert a == b and a != entry(b"y") and a != "x"
    assert "GET '/pets'" in repr(a)


def test_keys_from_the_kernel_never_share_an_entry() -> None:
    """Entries are found by the whole key: requests that differ in a key parameter do not mix."""
    spec = KeySpec("/pets/{id}", [("header", "Accept"), ("querystring", "page")])
    c = MemoryCache(1 << 20)
    seen = {}
    rng = random.Random(3)
    for _ in range(500):
        accept = rng.choice([None, "", "a/b", "a/b,c"])
        query = rng.choice(["", "page=1", "page=2", "page=1&page=2", "PAGE=1", "x=1"])
        headers: dict[str, str] = {} if accept is None else {"accept": accept}
        key = spec.build("GET", headers.get, query, {"id": "1"})
        # What the upstream would vary on: Accept and the page pieces ("x" is not a key param).
        pages = [p for p in query.split("&") if p.lower().startswith("page")]
        body = f"{accept}|{pages}".encode()
        got = c.get(key, 0.0)
        if got is None:
            c.put(key, entry(body), 60, 0.0)
            seen[key] = body
        else:
            assert got.body == body
    assert len(seen) == c.items == 20


def test_keys_follow_use_and_purges_unlink() -> None:
    c = MemoryCache(1 << 20)
    for i in range(4):
        c.put(f"k{i}".encode(), entry(path=f"/p/{i}"), 60, 0.0)
    c.get(b"k1", 1.0)
    c.get(b"k3", 1.0)  # already the most recently used
    assert c.keys() == [b"k0", b"k2", b"k1", b"k3"]
    assert c.purge(b"k2") and c.keys() == [b"k0", b"k1", b"k3"]
    assert c.purge_path("GET", "/p/0") == 1 and c.purge_path(None, "/p") == 0
    assert c.keys() == [b"k1", b"k3"]
    c.put(b"k1", entry(), 60, 2.0)  # replaced: the most recently used
    assert c.keys() == [b"k3", b"k1"] and c.items == 2
    assert c.flush() == 2 and c.keys() == [] and c.get(b"k1", 3.0) is None
    c.put(b"k9", entry(), 60, 4.0)
    assert c.keys() == [b"k9"]


def test_an_entry_carries_the_reply_a_hit_answers_with() -> None:
    e = entry()
    assert e.reply is None
    e.reply = reply = object()
    c = MemoryCache(1 << 20)
    c.put(b"k", e, 60, 0.0)
    assert c.get(b"k", 1.0).reply is reply


def test_entries_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(entry())


class _Reference:
    """The LRU the store must behave as: an OrderedDict, sizes beside it."""

    def __init__(self, capacity: int, max_item: int) -> None:
        self.capacity, self.max_item = capacity, max_item
        self.entries: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self.size = 0
        self.counts = {"hits": 0, "misses": 0, "evictions": 0, "expired": 0, "refused": 0}

    def drop(self, key: bytes) -> None:
        self.size -= self.entries.pop(key)[1]

    def get(self, key: bytes, now: float) -> Any:
        got = self.entries.get(key)
        if got is None:
            self.counts["misses"] += 1
            return None
        if got[0].expires_at <= now:
            self.drop(key)
            self.counts["expired"] += 1
            self.counts["misses"] += 1
            return None
        self.entries.move_to_end(key)
        self.counts["hits"] += 1
        return got[0]

    def put(self, key: bytes, e: Any, ttl: float, now: float) -> bool:
        size = entry_size(key, e)
        if ttl <= 0 or len(e.head) + len(e.body) > self.max_item or size > self.capacity:
            self.counts["refused"] += 1
            return False
        if key in self.entries:
            self.drop(key)
        while self.size > self.capacity - size:
            self.drop(next(iter(self.entries)))
            self.counts["evictions"] += 1
        e.stored_at, e.expires_at = now, now + ttl
        self.entries[key] = (e, size)
        self.size += size
        return True


def test_random_operations_match_a_reference_lru() -> None:
    rng = random.Random(11)
    for round_ in range(20):
        capacity = rng.choice([2000, 5000, 20000])
        c = MemoryCache(capacity, max_item_bytes=1500)
        ref = _Reference(capacity, 1500)
        now = 0.0
        for _ in range(400):
            now += rng.choice([0.0, 0.5, 3.0])
            key = f"k{rng.randrange(25)}".encode()
            op = rng.random()
            if op < 0.45:
                got, want = c.get(key, now), ref.get(key, now)
                assert (got is None) == (want is None) and (got is None or got is want)
            elif op < 0.85:
                body = b"x" * rng.choice([0, 10, 300, 1200, 1600])
                ttl = rng.choice([0.0, 2.0, 10.0, 60.0])
                path = rng.choice(["/a", "/a/b", "/b"])
                e = Entry(200, b"h: 1\r\n", body, rng.choice(["GET", "HEAD"]), path)
                f = Entry(200, b"h: 1\r\n", body, e.method, path)
                stored = c.put(key, e, ttl, now)
                assert stored == ref.put(key, f, ttl, now)
                if stored:  # the store's object, so that a hit can be compared by identity
                    assert (e.stored_at, e.expires_at) == (f.stored_at, f.expires_at)
                    ref.entries[key] = (e, ref.entries[key][1])
            elif op < 0.9:
                assert c.purge(key) == (key in ref.entries)
                if key in ref.entries:
                    ref.drop(key)
            elif op < 0.95:
                doomed = [k for k, (e, _) in ref.entries.items() if e.expires_at <= now]
                for k in doomed:
                    ref.drop(k)
                ref.counts["expired"] += len(doomed)
                assert c.sweep(now) == len(doomed)
            else:
                method = rng.choice([None, "GET", "ANY"])
                prefix = rng.choice(["/a", "/", "/b"])
                doomed = [
                    k
                    for k, (e, _) in ref.entries.items()
                    if method_matches(method, e.method) and path_under(e.path, prefix)
                ]
                for k in doomed:
                    ref.drop(k)
                assert c.purge_prefix(method, prefix) == len(doomed)
            assert c.keys() == list(ref.entries), round_
            assert c.size_bytes == ref.size
            stats = c.stats()
            assert {k: stats[k] for k in ref.counts} == ref.counts


def test_a_dropped_store_frees_its_entries_at_once() -> None:
    """The slots link each other: a store that is dropped (a stage's cache settings changed)
    unlinks them, so its entries go with it, not at the next cycle collection."""
    import gc
    import sys

    body = b"x" * 1000 + bytes(range(3))  # an object of its own
    before = sys.getrefcount(body)
    c = MemoryCache(1 << 20)
    for i in range(3):
        c.put(f"k{i}".encode(), Entry(200, b"", body), 60, 0.0)
    c.get(b"k0", 1.0)
    assert sys.getrefcount(body) == before + 3
    gc.disable()
    try:
        del c
        assert sys.getrefcount(body) == before
    finally:
        gc.enable()


def test_cache_sizes_beyond_the_store_are_refused_at_load() -> None:
    """The compiled store counts bytes in a machine word: a stage cache over 2^50 bytes (or an
    item cap over it) is refused with its path, not by a 500 at the first lookup."""
    from fastgw.config.load import ConfigError, load_config_text

    def config(cache: str) -> str:
        return (
            "apis:\n  - name: a\n    kind: rest\n    routes:\n      - route: GET /x\n"
            "        integration: {type: MOCK, status: 200, body: x}\n"
            f"    stages:\n      - name: prod\n        cache: {cache}\n"
        )

    load_config_text(config("{capacity_bytes: 1125899906842624, max_item_bytes: 1125899906842624}"))
    for field in ("capacity_bytes", "max_item_bytes"):
        with pytest.raises(ConfigError) as err:
            load_config_text(config(f"{{{field}: 1125899906842625}}"))
        assert [i.path for i in err.value.issues] == [f"$.apis[0].stages[0].cache.{field}"], err.value.issues
    # The largest accepted sizes fit the compiled store.
    MemoryCache(1 << 50, max_item_bytes=1 << 50)

"""MemoryCache: LRU order, byte capacity, item cap, TTL with explicit ``now``, purges, stats."""

from __future__ import annotations

import random

import pytest

from fastgw.cache.store import (
    DEFAULT_MAX_ITEM_BYTES,
    ENTRY_OVERHEAD,
    Entry,
    MemoryCache,
    entry_size,
    method_matches,
    path_under,
)
from fastgw_core.cachekey import KeySpec

HEAD = b"Content-Type: application/json\r\n"


def entry(body: bytes = b"{}", path: str = "/pets", method: str = "GET", status: int = 200) -> Entry:
    return Entry(status, HEAD, body, method, path)


def size_of(key: bytes, e: Entry) -> int:
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

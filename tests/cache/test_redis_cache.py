"""RedisCache against a real redis-server: two clients as two nodes, TTL, flush, purges, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
from redis_server import RedisServer

from fastgw.cache.redis_cache import HEADER, RedisCache, encode_entry, glob_escape
from fastgw.cache.store import CacheUnavailable, Entry
from fastgw.config.model import RedisSettings
from fastgw.state.redis_store import make_client
from fastgw_core.cachekey import KeySpec, key_hash

T = TypeVar("T")
NS = "t:cache:shop:prod"
HEAD = b"Content-Type: application/json\r\nX-Up: 1\r\n"
SPEC = KeySpec("/pets/{id}", [("header", "Accept"), ("querystring", "page"), ("path", "id")])


def key_for(pet: str, page: str = "", accept: str = "application/json") -> bytes:
    return SPEC.build("GET", {"accept": accept}.get, f"page={page}" if page else "", {"id": pet})


def entry(body: bytes = b'{"id": 1}', path: str = "/pets/1", method: str = "GET") -> Entry:
    return Entry(200, HEAD, body, method, path)


def nodes(
    url: str,
    fn: Callable[[RedisCache, RedisCache], Awaitable[T]],
    timeout: float = 0.2,
    retry_after: float = 0.3,
    namespace: str = NS,
) -> T:
    """Run ``fn`` with two caches on two separate clients (two nodes) of one Redis."""

    async def main() -> T:
        settings = RedisSettings(url=url, timeout_ms=int(timeout * 1000))
        a_client, b_client = make_client(settings), make_client(settings)
        a = RedisCache(a_client, namespace, timeout=timeout, retry_after=retry_after)
        b = RedisCache(b_client, namespace, timeout=timeout, retry_after=retry_after)
        try:
            return await fn(a, b)
        finally:
            await a_client.aclose()
            await b_client.aclose()

    return asyncio.run(main())


def sync_client(url: str) -> Any:
    """A plain client to look at (and tamper with) what the caches wrote."""
    return redis.Redis.from_url(url, socket_timeout=2)


@pytest.mark.timeout(20)
def test_two_nodes_share_entries(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        assert await b.get(k, 10.0) is None
        e = entry(b"x" * 5000)
        assert await a.put(k, e, 300, now=5.0)
        assert (e.stored_at, e.expires_at) == (5.0, 305.0)
        got = await b.get(k, 1000.0)  # another node, another clock
        assert got is not None
        assert got == e
        assert (got.status, got.head, got.body, got.method, got.path) == (200, HEAD, e.body, "GET", "/pets/1")
        assert got.age(1000.0) == 0 and 299.0 < got.ttl(1000.0) <= 300.0
        # Other key parameters are other entries.
        assert await b.get(key_for("1", page="2"), 0.0) is None
        assert await b.get(key_for("1", accept="text/html"), 0.0) is None
        assert await b.get(key_for("2"), 0.0) is None
        # Replace from the other node.
        await b.put(k, entry(b"new"), 300, 0.0)
        replaced = await a.get(k, 0.0)
        assert replaced is not None and replaced.body == b"new"
        assert (a.hits, a.misses, b.hits, b.misses, a.stores, b.stores) == (1, 0, 1, 4, 1, 1)
        assert a.stats() == {"hits": 1, "misses": 0, "stores": 1, "refused": 0, "errors": 0}

    nodes(redis_url, body)


@pytest.mark.timeout(20)
def test_layout_value_and_ttl_in_redis(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        await a.put(k, entry(b"hello"), 120, 0.0)

    nodes(redis_url, body)
    r = sync_client(redis_url)
    gen = r.get(f"{NS}:gen")
    assert gen is not None and gen.isdigit()
    # The generation starts from Redis's clock in microseconds.
    assert abs(int(gen) / 1e6 - time.time()) < 60
    k = key_for("1")
    name = f"{NS}:{gen.decode()}:{key_hash(k):016x}"
    value = r.get(name)
    assert value == encode_entry(k, entry(b"hello"), 120_000)
    assert HEADER.unpack_from(value) == (1, 200, 120_000, 3, 7, len(k), len(HEAD))
    assert 119_000 < r.pttl(name) <= 120_000
    assert sorted(r.keys("*")) == sorted([f"{NS}:gen".encode(), name.encode()])
    r.close()


@pytest.mark.timeout(20)
def test_ttl_expiry_and_age(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k1, k2 = key_for("1"), key_for("2")
        await a.put(k1, entry(), 0.3, 0.0)
        await a.put(k2, entry(), 3.0, 0.0)
        await asyncio.sleep(1.1)
        assert await b.get(k1, 0.0) is None  # Redis expired it (PX)
        got = await b.get(k2, 50.0)
        assert got is not None
        # Age from Redis's clock: about 1.1 s of 3 s.
        assert got.age(50.0) == 1
        assert 1.5 < got.ttl(50.0) < 2.0
        assert got.stored_at == pytest.approx(50.0 - 1.1, abs=0.15)
        # ttl <= 0 is "off".
        assert not await a.put(k1, entry(), 0, 0.0)
        assert a.refused == 1

    nodes(redis_url, body)


@pytest.mark.timeout(20)
def test_item_cap(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        assert a.max_item_bytes == 1_048_576
        big = Entry(200, HEAD, b"x" * (1_048_576 - len(HEAD)))
        assert await a.put(k, big, 60, 0.0)
        got = await b.get(k, 0.0)
        assert got is not None and got.body == big.body
        assert not await a.put(k, Entry(200, HEAD, big.body + b"x"), 60, 0.0)
        assert a.refused == 1

    nodes(redis_url, body)


@pytest.mark.timeout(20)
def test_flush_is_seen_by_every_node_and_reclaims(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        keys = [key_for(str(i)) for i in range(50)]
        for k in keys:
            await a.put(k, entry(), 300, 0.0)
        assert await b.get(keys[0], 0.0) is not None
        assert await b.flush() == 50
        for k in keys:
            assert await a.get(k, 0.0) is None
        # A put after the flush lands in the new generation.
        await a.put(keys[0], entry(b"after"), 300, 0.0)
        got = await b.get(keys[0], 0.0)
        assert got is not None and got.body == b"after"
        # Without reclaim: unreachable at once, left to expire.
        assert await a.flush(reclaim=False) == 0
        assert await b.get(keys[0], 0.0) is None

    nodes(redis_url, body)
    r = sync_client(redis_url)
    assert r.dbsize() == 2  # gen + the unreclaimed entry
    r.close()


@pytest.mark.timeout(20)
def test_flush_leaves_other_namespaces_and_newer_generations(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        nested = RedisCache(a.client, NS + ":1")  # a namespace that shares the prefix
        glob = RedisCache(a.client, "t:c*[?]\\")  # glob characters in the name
        k = key_for("1")
        await a.put(k, entry(), 300, 0.0)
        await nested.put(k, entry(b"nested"), 300, 0.0)
        await glob.put(k, entry(b"glob"), 300, 0.0)
        assert await a.flush() == 1
        assert (await nested.get(k, 0.0)) is not None
        assert (await glob.get(k, 0.0)) is not None
        assert await glob.flush() == 1
        assert (await nested.get(k, 0.0)) is not None
        # A reclaim for an older generation does not touch the current one.
        await a.put(k, entry(), 300, 0.0)
        assert await a.reclaim(1) == 0
        assert await b.get(k, 0.0) is not None

    nodes(redis_url, body)
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


@pytest.mark.timeout(20)
def test_lost_generation_never_revives_old_entries(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        await a.put(k, entry(b"old"), 300, 0.0)
        sync = sync_client(redis_url)
        sync.delete(f"{NS}:gen")  # evicted, say
        assert await b.get(k, 0.0) is None
        await b.put(k, entry(b"new"), 300, 0.0)
        got = await a.get(k, 0.0)
        assert got is not None and got.body == b"new"
        sync.close()

    nodes(redis_url, body)


@pytest.mark.timeout(20)
def test_purge_one_key_from_another_node(redis_url: str) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k1, k2 = key_for("1"), key_for("2")
        await a.put(k1, entry(), 300, 0.0)
        await a.put(k2, entry(), 300, 0.0)
        assert await b.purge(k1) is True
        assert await b.purge(k1) is False
        assert await a.get(k1, 0.0) is None
        assert await a.get(k2, 0.0) is not None

    nodes(redis_url, body)


@pytest.mark.timeout(20)
def test_a_hash_collision_is_a_miss_and_not_purged(redis_url: str) -> None:
    """Another key's entry sitting in this key's slot (a 64-bit collision) is never served."""
    k_mine, k_other = key_for("1"), key_for("2")

    async def body(a: RedisCache, b: RedisCache) -> None:
        await a.put(k_mine, entry(b"mine"), 300, 0.0)
        r = sync_client(redis_url)
        gen = r.get(f"{NS}:gen")
        assert gen is not None
        name = f"{NS}:{gen.decode()}:{key_hash(k_mine):016x}"
        r.set(name, encode_entry(k_other, entry(b"other"), 300_000), px=300_000)
        assert await b.get(k_mine, 0.0) is None
        assert await b.purge(k_mine) is False
        assert r.exists(name) == 1
        r.close()

    nodes(redis_url, body)


@pytest.mark.timeout(30)
def test_purge_prefix(redis_url: str) -> None:
    paths = ["/pets", "/pets/1", "/pets/1/toys", "/petshop", "/people/1", "/caf\u00e9/x"]

    async def body(a: RedisCache, b: RedisCache) -> None:
        for i, p in enumerate(paths):
            for m in ("GET", "HEAD"):
                await a.put(f"{m}{i}".encode(), entry(path=p, method=m), 300, 0.0)
        # Enough other entries for several SCAN batches.
        for i in range(1200):
            await a.put(f"bulk{i}".encode(), entry(path=f"/bulk/{i}"), 300, 0.0)
        assert await b.purge_prefix("GET", "/pets") == 3
        assert await a.get(b"GET3", 0.0) is not None  # /petshop
        assert await a.get(b"HEAD0", 0.0) is not None
        assert await a.get(b"GET1", 0.0) is None
        assert await b.purge_prefix(None, "/pets/") == 2
        assert await b.purge_prefix("*", "/pets") == 1
        assert await b.purge_prefix("ANY", "/caf\u00e9") == 2
        assert await b.purge_prefix("POST", "/") == 0
        assert await b.purge_prefix("GET", "/bulk/1") == 1
        assert await b.purge_prefix(None, "/bulk") == 1199
        assert await b.purge_prefix(None, "") == 4  # GET/HEAD /petshop and /people/1

    nodes(redis_url, body)
    r = sync_client(redis_url)
    assert r.keys("*") == [f"{NS}:gen".encode()]
    r.close()


@pytest.mark.timeout(30)
def test_server_down_is_unavailable_quickly_then_recovers(redis_url: str, redis_server: RedisServer) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        await a.put(k, entry(), 300, 0.0)
        redis_server.kill()
        t0 = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await a.get(k, 0.0)
        assert time.monotonic() - t0 < 0.5
        assert not a.available
        # Marked down: every call fails at once, without I/O.
        t0 = time.monotonic()
        for call in (
            a.get(k, 0.0),
            a.put(k, entry(), 60, 0.0),
            a.purge(k),
            a.purge_prefix(None, "/"),
            a.flush(),
        ):
            with pytest.raises(CacheUnavailable):
                await call
        assert time.monotonic() - t0 < 0.05
        assert a.errors == 6
        # Back after retry_after.
        redis_server.start()
        await asyncio.sleep(0.35)
        assert a.available
        assert await a.get(k, 0.0) is None  # a fresh, empty Redis
        await a.put(k, entry(), 60, 0.0)
        assert await b.get(k, 0.0) is not None

    nodes(redis_url, body, retry_after=0.3)


@pytest.mark.timeout(30)
def test_hung_server_times_out(redis_url: str, redis_server: RedisServer) -> None:
    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        await a.put(k, entry(), 300, 0.0)
        redis_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(CacheUnavailable, match="no answer within 150 ms"):
                await a.get(k, 0.0)
            assert 0.1 < time.monotonic() - t0 < 0.5
        finally:
            redis_server.resume()
        await asyncio.sleep(0.35)
        got = await a.get(k, 0.0)
        assert got is not None

    nodes(redis_url, body, timeout=0.15, retry_after=0.3)


@pytest.mark.timeout(30)
def test_full_redis_refuses_puts_but_serves_gets(redis_url: str) -> None:
    r = sync_client(redis_url)
    old = r.config_get("maxmemory-policy")["maxmemory-policy"]
    used = int(r.info("memory")["used_memory"])

    async def body(a: RedisCache, b: RedisCache) -> None:
        k = key_for("1")
        await a.put(k, entry(), 300, 0.0)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", str(used + 200_000))
        try:
            refused = 0
            for i in range(20):
                if not await a.put(f"big{i}".encode(), Entry(200, b"", b"x" * 100_000), 300, 0.0):
                    refused += 1
            assert refused > 0 and a.refused == refused
            assert a.available and a.errors == 0
            assert await b.get(k, 0.0) is not None
        finally:
            r.config_set("maxmemory", "0")
            r.config_set("maxmemory-policy", old)

    nodes(redis_url, body)
    r.close()


def test_bad_arguments(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(ValueError):
        RedisCache(client, "")
    with pytest.raises(ValueError):
        RedisCache(client, "ns", timeout=0)
    decoding = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="bytes"):
        RedisCache(decoding, "ns")
    assert "up" in repr(RedisCache(client, "ns"))

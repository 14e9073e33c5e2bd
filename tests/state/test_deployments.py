"""Deployments and stage pointers in both state stores.

Every parametrised case runs on the SQLite store (a file in the test's tmp dir) and on the Redis
store (the session's real redis-server, under a prefix of its own): workers apply what ``load()``
returns without knowing which backend wrote it, so the two must behave alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
import redis

from fastgw.config.model import RedisSettings
from fastgw.state.model import (
    ApiKey,
    CanaryPointer,
    Deployment,
    DeploymentInUseError,
    StagePointer,
    StateData,
    UsagePlan,
    hash_key_value,
)
from fastgw.state.redis_store import RedisStore
from fastgw.state.sqlite_store import SqliteStore
from fastgw.state.store import MAX_DEFINITION_BYTES, MAX_DEPLOYMENTS_PER_API, Store, StoreError

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
StoreFactory = Callable[[], Store]
ID_RE = re.compile(r"^[a-z0-9]{6}$")


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of store objects on one backend (several objects: several processes or nodes)."""
    if request.param == "sqlite":
        path = str(tmp_path / "state.db")
        yield lambda: SqliteStore(path)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"dep-{uuid.uuid4().hex[:8]}:"
        yield lambda: RedisStore(RedisSettings(url=url, prefix=prefix, timeout_ms=5000))


def run_with(make_store: StoreFactory, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = make_store()
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def definition(n: int) -> bytes:
    """A definition whose bytes a re-encoding would change (key order, spacing, escapes, UTF-8)."""
    text = '{"z": 1,  "a": [1.50, 2e3],\n "name": "caf\u00e9 \\u00e9 \\"q\\"", "n": N, "paths": {}}'
    return text.replace("N", str(n)).encode()


def pointer(
    api: str, stage: str, dep: str, canary: CanaryPointer | None = None, at: float = 1.0
) -> StagePointer:
    return StagePointer(apiId=api, stage=stage, deploymentId=dep, canary=canary, updatedAt=at)


# ---------------------------------------------------------------------- records
def test_state_data_defaults() -> None:
    data = StateData()
    assert data.stages == [] and data.deployments == {}


def test_public_views() -> None:
    dep = Deployment(
        id="abc123",
        apiId="shop1",
        number=7,
        createdDate=1714564800.75,
        description="v7",
        definition=b'{"b": 1, "a": [true, null]}',
        digest="0123456789abcdef",
    )
    assert dep.public() == {
        "id": "abc123",
        "number": 7,
        "createdDate": "2024-05-01T12:00:00Z",
        "description": "v7",
        "digest": "0123456789abcdef",
    }
    assert dep.public(with_definition=True)["definition"] == {"b": 1, "a": [True, None]}
    assert dep.key == "shop1/abc123"

    plain = pointer("shop1", "prod", "abc123", at=0.0)
    assert plain.public() == {
        "apiId": "shop1",
        "stage": "prod",
        "deploymentId": "abc123",
        "updatedAt": "1970-01-01T00:00:00Z",
    }
    canary = CanaryPointer(deploymentId="def456", percentTraffic=12.5, stageVariableOverrides={"v": "2"})
    with_canary = pointer("shop1", "prod", "abc123", canary)
    assert with_canary.public()["canary"] == {
        "deploymentId": "def456",
        "percentTraffic": 12.5,
        "stageVariableOverrides": {"v": "2"},
        "useStageCache": False,
    }
    assert with_canary.deployment_ids() == ("abc123", "def456")


@pytest.mark.parametrize("pct", [-0.1, 100.5, float("nan"), float("inf")])
def test_canary_percent_out_of_range_is_refused(pct: float) -> None:
    with pytest.raises(ValueError, match="percentTraffic"):
        CanaryPointer(deploymentId="abc123", percentTraffic=pct)


def test_canary_percent_is_checked_on_decode() -> None:
    doc = b'{"deploymentId": "abc123", "percentTraffic": 100.5}'
    with pytest.raises(msgspec.ValidationError, match="percentTraffic"):
        msgspec.json.decode(doc, type=CanaryPointer)
    assert msgspec.json.decode(doc.replace(b"100.5", b"100"), type=CanaryPointer).percentTraffic == 100.0


@pytest.mark.parametrize("api", ["", "a/b"])
def test_bad_api_id_is_refused(api: str) -> None:
    with pytest.raises(ValueError, match="API id"):
        pointer(api, "prod", "abc123")


def test_bad_pointer_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="stage"):
        pointer("shop1", "", "abc123")
    with pytest.raises(ValueError, match="deploymentId"):
        pointer("shop1", "prod", "")


# ---------------------------------------------------------------------- deployments
def test_numbering_ids_definitions_and_order(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        v0 = await s.version()
        made = [await s.add_deployment("shop1", definition(i), f"d{i}", at=1000.0 + i) for i in range(1, 6)]
        assert [d.number for d in made] == [1, 2, 3, 4, 5]
        assert len({d.id for d in made}) == 5 and all(ID_RE.match(d.id) for d in made)
        for i, d in enumerate(made, 1):
            assert d.apiId == "shop1" and d.description == f"d{i}" and d.createdDate == 1000.0 + i
            assert d.definition == definition(i)
            assert d.digest == hashlib.sha256(definition(i)).hexdigest()[:16]
        # Stored and returned byte for byte, oldest first.
        assert await s.list_deployments("shop1") == made
        assert await s.get_deployment("shop1", made[2].id) == made[2]
        assert await s.get_deployment("shop1", "zzzzzz") is None
        assert await s.get_deployment("other", made[2].id) is None  # ids are per API
        assert await s.list_deployments("other") == []
        # Adding or deleting a deployment nobody points at is invisible to load(): no bump.
        assert await s.version() == v0

        # Numbers are never reused, not even the last one's after its delete.
        assert await s.delete_deployment("shop1", made[4].id) is True
        assert await s.delete_deployment("shop1", made[4].id) is False
        assert await s.delete_deployment("shop1", "zzzzzz") is False
        assert await s.delete_deployment("nope", made[0].id) is False
        assert await s.delete_deployment("shop1", made[1].id) is True
        six = await s.add_deployment("shop1", b"{}")
        assert (
            six.number == 6 and six.description == "" and six.digest == hashlib.sha256(b"{}").hexdigest()[:16]
        )
        assert [d.number for d in await s.list_deployments("shop1")] == [1, 3, 4, 6]
        for d in await s.list_deployments("shop1"):
            await s.delete_deployment("shop1", d.id)
        assert await s.list_deployments("shop1") == []
        assert (await s.add_deployment("shop1", b"[]")).number == 7
        # Each API counts on its own; createdDate defaults to now.
        other = await s.add_deployment("other", b"[1]")
        assert other.number == 1 and other.createdDate > 1.7e9
        assert await s.version() == v0

    run_with(make_store, body)


def test_definition_must_be_json_within_the_limit(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        biggest = b'"' + b"x" * (MAX_DEFINITION_BYTES - 2) + b'"'
        big = await s.add_deployment("shop1", biggest)
        assert (await s.get_deployment("shop1", big.id)) == big
        assert big.definition == biggest
        with pytest.raises(ValueError, match="over the"):
            await s.add_deployment("shop1", biggest + b" ")
        with pytest.raises(ValueError, match="not JSON"):
            await s.add_deployment("shop1", b'{"a": ')
        with pytest.raises(ValueError, match="API id"):
            await s.add_deployment("a/b", b"{}")
        with pytest.raises(TypeError):
            await s.add_deployment("shop1", "{}")  # type: ignore[arg-type]
        # Refused definitions use up no number.
        assert (await s.add_deployment("shop1", bytearray(b"{}"))).number == 2

    run_with(make_store, body)


def test_delete_in_use_is_refused(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        d1, d2, d3 = [await s.add_deployment("shop1", definition(i)) for i in range(3)]
        await s.put_stage_pointer(pointer("shop1", "prod", d1.id, CanaryPointer(deploymentId=d2.id)))
        await s.put_stage_pointer(pointer("shop1", "beta", d1.id))
        with pytest.raises(DeploymentInUseError, match="beta, prod"):
            await s.delete_deployment("shop1", d1.id)
        with pytest.raises(DeploymentInUseError, match="prod"):  # a canary's deployment is in use too
            await s.delete_deployment("shop1", d2.id)
        assert isinstance(DeploymentInUseError("x"), ValueError)
        assert [d.id for d in await s.list_deployments("shop1")] == [d1.id, d2.id, d3.id]
        assert await s.delete_deployment("shop1", d3.id) is True

        # Once no stage uses them, they go.
        await s.put_stage_pointer(pointer("shop1", "prod", d1.id))  # the canary is promoted away
        assert await s.delete_deployment("shop1", d2.id) is True
        assert await s.delete_stage_pointer("shop1", "prod") is True
        with pytest.raises(DeploymentInUseError):
            await s.delete_deployment("shop1", d1.id)
        assert await s.delete_stage_pointer("shop1", "beta") is True
        assert await s.delete_deployment("shop1", d1.id) is True
        assert await s.list_deployments("shop1") == []

    run_with(make_store, body)


def test_cap_evicts_the_oldest_unused(make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Store.max_deployments == MAX_DEPLOYMENTS_PER_API == 500
    monkeypatch.setattr(Store, "max_deployments", 3)

    async def body(s: Store) -> None:
        d = {i: await s.add_deployment("shop1", definition(i)) for i in (1, 2, 3)}
        await s.put_stage_pointer(pointer("shop1", "prod", d[1].id))

        async def numbers() -> list[int]:
            return [x.number for x in await s.list_deployments("shop1")]

        d[4] = await s.add_deployment("shop1", definition(4))  # 2 is the oldest unused
        assert await numbers() == [1, 3, 4]
        await s.put_stage_pointer(pointer("shop1", "prod", d[1].id, CanaryPointer(deploymentId=d[3].id)))
        d[5] = await s.add_deployment("shop1", definition(5))  # 1 and 3 are in use: 4 goes
        assert await numbers() == [1, 3, 5]
        # Other APIs are not counted nor touched.
        others = [await s.add_deployment("other", b"{}") for _ in range(3)]
        assert await s.list_deployments("other") == others

        v = await s.version()
        await s.put_stage_pointer(pointer("shop1", "beta", d[5].id))
        with pytest.raises(StoreError, match="limit"):
            await s.add_deployment("shop1", definition(6))
        assert await numbers() == [1, 3, 5]  # nothing written, no number used up
        assert await s.version() == v + 1
        await s.delete_stage_pointer("shop1", "beta")
        assert (await s.add_deployment("shop1", definition(6))).number == 6
        assert await numbers() == [1, 3, 6]

    run_with(make_store, body)


def test_concurrent_adds_get_distinct_contiguous_numbers(make_store: StoreFactory) -> None:
    writers, each = 4, 10

    async def body(s: Store) -> None:
        others = [make_store() for _ in range(writers)]

        async def write(store: Store) -> list[Deployment]:
            await store.open()
            out = []
            for i in range(each):
                out.append(await store.add_deployment("shop1", definition(i)))
                await asyncio.sleep(0)
            return out

        try:
            results = await asyncio.gather(*(write(o) for o in others))
        finally:
            for o in others:
                await o.close()
        made = [d for ds in results for d in ds]
        assert sorted(d.number for d in made) == list(range(1, writers * each + 1))
        assert len({d.id for d in made}) == writers * each
        assert await s.list_deployments("shop1") == sorted(made, key=lambda d: d.number)

    run_with(make_store, body)


# ---------------------------------------------------------------------- stage pointers
def test_unknown_deployment_is_refused(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        d1 = await s.add_deployment("shop1", b"{}")
        theirs = await s.add_deployment("other", b"{}")
        v = await s.version()
        with pytest.raises(KeyError, match="zzzzzz"):
            await s.put_stage_pointer(pointer("shop1", "prod", "zzzzzz"))
        with pytest.raises(KeyError, match="zzzzzz"):
            await s.put_stage_pointer(pointer("shop1", "prod", d1.id, CanaryPointer(deploymentId="zzzzzz")))
        if theirs.id != d1.id:  # another API's deployment is not this API's
            with pytest.raises(KeyError):
                await s.put_stage_pointer(pointer("shop1", "prod", theirs.id))
        assert await s.version() == v
        assert await s.get_stage_pointer("shop1", "prod") is None
        assert await s.list_stage_pointers() == []

    run_with(make_store, body)


def test_pointer_writes_bump_version(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        d1, d2 = await s.add_deployment("shop1", b"{}"), await s.add_deployment("shop1", b"[]")
        seen = [await s.version()]

        async def bumped(op: Awaitable[object]) -> None:
            await op
            v = await s.version()
            assert v > seen[-1]
            seen.append(v)

        await bumped(s.put_stage_pointer(pointer("shop1", "prod", d1.id)))
        await bumped(s.put_stage_pointer(pointer("shop1", "prod", d1.id)))  # even an identical one
        await bumped(s.put_stage_pointer(pointer("shop1", "prod", d2.id)))  # a release
        await bumped(s.put_stage_pointer(pointer("shop1", "prod", d2.id, CanaryPointer(deploymentId=d1.id))))
        await bumped(s.put_stage_pointer(pointer("shop1", "prod", d1.id)))  # a rollback
        await bumped(s.put_stage_pointer(pointer("shop1", "beta", d2.id)))
        await bumped(s.delete_stage_pointer("shop1", "beta"))
        assert await s.delete_stage_pointer("shop1", "beta") is False
        assert await s.delete_stage_pointer("nope", "prod") is False
        assert await s.version() == seen[-1]  # deleting nothing is no write
        assert (await s.load()).version == seen[-1]

    run_with(make_store, body)


def test_pointers_round_trip_and_load(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        a = [await s.add_deployment("shop1", definition(i), f"a{i}") for i in range(3)]
        b = [await s.add_deployment("b-api", definition(10 + i)) for i in range(2)]
        await s.add_deployment("idle", b"{}")  # no stage: never loaded
        canary = CanaryPointer(
            deploymentId=a[2].id,
            percentTraffic=10.5,
            stageVariableOverrides={"backend": 'v2 "caf\u00e9" {x}\\'},
            useStageCache=True,
        )
        prod = pointer("shop1", "prod", a[0].id, canary, at=1700000000.125)
        odd = pointer("shop1", '$default "caf\u00e9"/x', a[0].id, at=2.5)  # shares a[0] with prod
        other = pointer("b-api", "prod", b[1].id)
        for p in (prod, other, odd):
            await s.put_stage_pointer(p)

        assert await s.get_stage_pointer("shop1", "prod") == prod
        assert await s.get_stage_pointer("shop1", odd.stage) == odd
        assert await s.get_stage_pointer("shop1", "nope") is None
        assert await s.get_stage_pointer("nope", "prod") is None
        assert await s.list_stage_pointers() == [other, odd, prod]  # by (apiId, stage)
        assert await s.list_stage_pointers("shop1") == [odd, prod]
        assert await s.list_stage_pointers("nope") == []

        # A key and a plan come in the same consistent read.
        await s.put_key(ApiKey(id="k1", name="k", valueHash=hash_key_value("v" * 20)))
        await s.put_plan(UsagePlan(id="p1", name="plan"))
        data = await s.load()
        assert data.version == await s.version()
        assert [k.id for k in data.keys] == ["k1"] and [p.id for p in data.plans] == ["p1"]
        assert data.stages == [other, odd, prod]
        assert data.deployments == {
            "b-api/" + b[1].id: b[1],
            "shop1/" + a[0].id: a[0],
            "shop1/" + a[2].id: a[2],
        }
        assert data.deployments["shop1/" + a[0].id].definition == definition(0)

        # Moving the stages moves what load() carries.
        await s.put_stage_pointer(pointer("shop1", "prod", a[1].id))
        await s.delete_stage_pointer("shop1", odd.stage)
        await s.delete_stage_pointer("b-api", "prod")
        data = await s.load()
        assert data.stages == [pointer("shop1", "prod", a[1].id)]
        assert data.deployments == {"shop1/" + a[1].id: a[1]}

    run_with(make_store, body)


def test_two_store_objects_see_each_others_writes(make_store: StoreFactory) -> None:
    """Two nodes (Redis: one prefix) or two processes (SQLite: one file)."""

    async def body(s: Store) -> None:
        t = make_store()
        await t.open()
        try:
            d1 = await s.add_deployment("shop1", b'{"v": 1}')
            assert await t.get_deployment("shop1", d1.id) == d1
            d2 = await t.add_deployment("shop1", b'{"v": 2}')
            assert d2.number == 2
            assert await s.list_deployments("shop1") == [d1, d2]
            v = await t.version()
            await s.put_stage_pointer(pointer("shop1", "prod", d1.id))
            assert await t.version() == v + 1
            assert (await t.load()).deployments == {"shop1/" + d1.id: d1}
            await t.put_stage_pointer(pointer("shop1", "prod", d2.id))
            assert await s.get_stage_pointer("shop1", "prod") == pointer("shop1", "prod", d2.id)
            with pytest.raises(DeploymentInUseError):
                await s.delete_deployment("shop1", d2.id)
            assert await t.delete_deployment("shop1", d1.id) is True
            assert await s.get_deployment("shop1", d1.id) is None
        finally:
            await t.close()

    run_with(make_store, body)


# ---------------------------------------------------------------------- SQLite migration
# The DDL of schema 2 as released (before deployments): schema 1 plus cache_purges.
SCHEMA_2 = """
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, schema INTEGER NOT NULL);
INSERT INTO meta (id, version, schema) VALUES (1, 7, 2);
CREATE TABLE keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE plans (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE plan_keys (
    plan_id TEXT NOT NULL, key_id TEXT NOT NULL, PRIMARY KEY (plan_id, key_id)
) WITHOUT ROWID;
CREATE INDEX plan_keys_by_key ON plan_keys (key_id);
CREATE TABLE usage (
    plan_id TEXT NOT NULL, key_id TEXT NOT NULL, day INTEGER NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (plan_id, key_id, day)
) WITHOUT ROWID;
CREATE TABLE cache_purges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT NOT NULL, op TEXT NOT NULL, path TEXT NOT NULL,
    method TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL
);
"""
NEW_TABLES = {"deployments", "deployment_seq", "stages"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {name for (name,) in rows}


def test_sqlite_file_from_before_deployments_opens_and_gains_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    key_hash = hash_key_value("v" * 20)
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_2)
        conn.execute(
            "INSERT INTO keys (id, hash, doc) VALUES ('k1', ?, ?)",
            (key_hash, msgspec.json.encode({"id": "k1", "name": "old", "valueHash": key_hash}).decode()),
        )
        conn.execute('INSERT INTO plans (id, doc) VALUES (\'p1\', \'{"id": "p1", "name": "gold"}\')')
        conn.execute("INSERT INTO plan_keys (plan_id, key_id) VALUES ('p1', 'k1')")
    conn.close()
    assert not NEW_TABLES & _tables(path)

    async def body() -> None:
        store = SqliteStore(str(path))
        await store.open()
        data = await store.load()
        assert NEW_TABLES <= _tables(path)
        assert [k.name for k in data.keys] == ["old"] and [p.name for p in data.plans] == ["gold"]
        assert data.plan_keys == {"p1": ["k1"]}
        assert data.stages == [] and data.deployments == {} and data.version == 7  # no bump on open
        d1 = await store.add_deployment("shop1", b"{}")
        await store.put_stage_pointer(pointer("shop1", "prod", d1.id))
        assert await store.version() == 8
        await store.close()

        again = SqliteStore(str(path))
        data = await again.load()
        assert [k.name for k in data.keys] == ["old"] and data.deployments == {"shop1/" + d1.id: d1}
        await again.close()

    asyncio.run(body())


def test_sqlite_tables_dropped_after_open_come_back(tmp_path: Path) -> None:
    """A file whose new tables are gone (as an older release's would be) gets them on the next open."""
    path = tmp_path / "state.db"
    store = SqliteStore(str(path))
    store.put_key_sync(ApiKey(id="k1", name="kept", valueHash=hash_key_value("w" * 20)))
    store.close_sync()
    with sqlite3.connect(path) as conn:
        for table in sorted(NEW_TABLES):
            conn.execute(f"DROP TABLE {table}")
    conn.close()
    assert not NEW_TABLES & _tables(path)

    async def body() -> None:
        s = SqliteStore(str(path))
        assert [k.name for k in (await s.load()).keys] == ["kept"]
        assert (await s.add_deployment("shop1", b"{}")).number == 1
        await s.close()

    asyncio.run(body())
    assert NEW_TABLES <= _tables(path)


# ---------------------------------------------------------------------- Redis layout
def test_redis_layout(redis_url: str) -> None:
    prefix = f"lay-{uuid.uuid4().hex[:8]}:"
    settings = RedisSettings(url=redis_url, prefix=prefix, timeout_ms=5000)

    async def body(s: Store) -> tuple[Deployment, Deployment]:
        d1 = await s.add_deployment("shop1", definition(1), "first", at=5.0)
        d2 = await s.add_deployment("shop1", definition(2))
        await s.delete_deployment("shop1", d2.id)
        await s.put_stage_pointer(pointer("shop1", "prod", d1.id))
        return d1, d2

    d1, d2 = run_with(lambda: RedisStore(settings), body)
    with redis.Redis.from_url(redis_url) as r:
        names = sorted(n.decode() for n in r.keys(prefix + "*"))
        assert names == [
            f"{prefix}deploy:shop1",
            f"{prefix}deploynums:shop1",
            f"{prefix}deployseq:shop1",
            f"{prefix}stages",
            f"{prefix}version",
        ]
        raw: Any = r.hget(f"{prefix}deploy:shop1", d1.id)
        assert msgspec.msgpack.decode(raw, type=Deployment) == d1  # a whole record, number included
        assert r.zrange(f"{prefix}deploynums:shop1", 0, -1, withscores=True) == [(d1.id.encode(), 1.0)]
        assert int(r.get(f"{prefix}deployseq:shop1") or 0) == 2  # not lowered by the delete
        stage: Any = r.hget(f"{prefix}stages", "shop1/prod")
        assert msgspec.json.decode(stage, type=StagePointer) == pointer("shop1", "prod", d1.id)
        assert int(r.get(f"{prefix}version") or 0) == 1
    assert d2.number == 2

"""Cache purges in both state stores: seq, version bump, trimming, consistency, migration, layout.

Every case runs on the SQLite store (a file in the test's tmp dir) and on the Redis store (the
session's real redis-server): the two must behave alike, since workers apply what ``load()``
returns without knowing which backend wrote it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from fastgw.config.model import RedisSettings
from fastgw.state.model import ApiKey, CachePurge, StateData, hash_key_value
from fastgw.state.redis_store import RedisStore
from fastgw.state.sqlite_store import SCHEMA_VERSION, SqliteStore
from fastgw.state.store import MAX_CACHE_PURGES, Store

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
PREFIX = "cp:"
REPO = Path(__file__).resolve().parents[2]

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of store objects on one backend (several objects: several processes or nodes)."""
    if request.param == "sqlite":
        path = str(tmp_path / "state.db")
        yield lambda: SqliteStore(path)
    else:
        url = request.getfixturevalue("redis_url")
        yield lambda: RedisStore(RedisSettings(url=url, prefix=PREFIX, timeout_ms=2000))


def run_with(make_store: StoreFactory, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = make_store()
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_state_data_default_has_no_purges() -> None:
    assert StateData().cache_purges == []


def test_add_assigns_seq_bumps_version_and_loads(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        assert (await s.load()).cache_purges == []
        v0 = await s.version()
        t0 = time.time()
        assert await s.add_cache_purge("shop1:prod", "flush") == 1
        assert await s.version() == v0 + 1
        assert (
            await s.add_cache_purge("shop1:prod", "prefix", path="/pets", method="GET", at=1700000000.125)
            == 2
        )
        assert await s.add_cache_purge("shop1:test", "key", path="/pets/1") == 3
        assert await s.add_cache_purge("shop1:test", "key", key="9f86d081884c7d65") == 4
        data = await s.load()
        assert data.version == v0 + 4 == await s.version()
        flush, prefix, by_path, by_key = data.cache_purges
        assert t0 - 1 <= flush.at <= time.time() + 1  # "at" defaults to now
        assert flush == CachePurge(seq=1, stage="shop1:prod", op="flush", at=flush.at)
        assert flush.path == "" and flush.method == "*" and flush.key == ""
        assert prefix == CachePurge(
            seq=2, stage="shop1:prod", op="prefix", path="/pets", method="GET", at=1700000000.125
        )
        assert by_path == CachePurge(seq=3, stage="shop1:test", op="key", path="/pets/1", at=by_path.at)
        assert by_key == CachePurge(seq=4, stage="shop1:test", op="key", key="9f86d081884c7d65", at=by_key.at)
        # Purges and keys come in the same consistent read.
        await s.put_key(ApiKey(id="k1", name="k", valueHash=hash_key_value("v" * 20)))
        data = await s.load()
        assert [k.id for k in data.keys] == ["k1"] and len(data.cache_purges) == 4
        assert data.version == v0 + 5

    run_with(make_store, body)


def test_unknown_op_is_refused_and_changes_nothing(make_store: StoreFactory) -> None:
    async def body(s: Store) -> None:
        v0 = await s.version()
        with pytest.raises(ValueError, match="unknown cache purge op"):
            await s.add_cache_purge("shop1:prod", "everything")  # type: ignore[arg-type]
        assert await s.version() == v0
        assert (await s.load()).cache_purges == []
        assert await s.add_cache_purge("shop1:prod", "flush") == 1  # no seq was used up

    run_with(make_store, body)


def test_odd_strings_round_trip(make_store: StoreFactory) -> None:
    """Quotes, backslashes, braces and non-ASCII survive (the Redis script splices JSON)."""

    async def body(s: Store) -> None:
        path = '/caf\u00e9/"q"/\\x/{id}/%2F'
        key = '{"seq":99}\\"'
        await s.add_cache_purge("api:$default", "key", path=path, method="DELETE", key=key, at=0.5)
        (p,) = (await s.load()).cache_purges
        assert p == CachePurge(
            seq=1, stage="api:$default", op="key", path=path, method="DELETE", key=key, at=0.5
        )

    run_with(make_store, body)


def test_only_the_last_purges_are_kept_and_seq_keeps_growing(make_store: StoreFactory) -> None:
    total = MAX_CACHE_PURGES + 44

    async def body(s: Store) -> None:
        v0 = await s.version()
        for i in range(total):
            assert await s.add_cache_purge("shop1:prod", "key", path=f"/p{i}", at=float(i)) == i + 1
        data = await s.load()
        assert len(data.cache_purges) == MAX_CACHE_PURGES
        seqs = [p.seq for p in data.cache_purges]
        assert seqs == list(range(total - MAX_CACHE_PURGES + 1, total + 1))  # oldest first, no gap
        assert data.cache_purges[-1].path == f"/p{total - 1}"
        assert data.version == v0 + total
        # Trimming never lowers the next seq.
        assert await s.add_cache_purge("shop1:prod", "flush") == total + 1
        assert (await s.load()).cache_purges[0].seq == total - MAX_CACHE_PURGES + 2

    run_with(make_store, body)


def test_concurrent_writers_get_distinct_contiguous_seqs(make_store: StoreFactory) -> None:
    """Several store objects (processes, nodes) adding at once: every seq once, no gaps, and the
    version counts every purge."""
    writers, each = 4, 25

    async def body(s: Store) -> None:
        others = [make_store() for _ in range(writers)]

        async def write(store: Store, w: int) -> list[int]:
            await store.open()
            out = []
            for i in range(each):
                out.append(await store.add_cache_purge(f"a:s{w}", "key", path=f"/{i}"))
                await asyncio.sleep(0)
            return out

        try:
            results = await asyncio.gather(*(write(o, w) for w, o in enumerate(others)))
        finally:
            for o in others:
                await o.close()
        assigned = sorted(seq for seqs in results for seq in seqs)
        assert assigned == list(range(1, writers * each + 1))
        for seqs in results:
            assert seqs == sorted(seqs)  # each writer sees its own purges in order
        data = await s.load()
        assert [p.seq for p in data.cache_purges] == assigned
        assert data.version == writers * each

    run_with(make_store, body)


WRITER_SCRIPT = """
import asyncio, sys
from fastgw.state.sqlite_store import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    for i in range(int(sys.argv[3])):
        print(await store.add_cache_purge("a:" + sys.argv[2], "prefix", path=f"/{i}"), flush=True)
    await store.close()

asyncio.run(main())
"""


def test_sqlite_writers_in_several_processes(tmp_path: Path) -> None:
    """The embedded backend's real case: the admin process and others write one file at once."""
    path = tmp_path / "state.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), f"w{n}", "40"],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    seqs: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        mine = [int(line) for line in out.split()]
        assert mine == sorted(mine) and len(mine) == 40
        seqs.extend(mine)
    assert sorted(seqs) == list(range(1, 161))
    data = SqliteStore(str(path)).load_sync()
    assert [p.seq for p in data.cache_purges] == list(range(1, 161))
    assert data.version == 160


# The DDL of schema 1 (before cache purges), as released.
SCHEMA_1 = """
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, schema INTEGER NOT NULL);
INSERT INTO meta (id, version, schema) VALUES (1, 7, 1);
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
"""


def _meta(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT version, schema FROM meta WHERE id = 1").fetchone()
    return int(row[0]), int(row[1])


def test_sqlite_schema_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    doc = json.dumps({"id": "k1", "name": "old", "valueHash": hash_key_value("v" * 20)})
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1)
        conn.execute("INSERT INTO keys (id, hash, doc) VALUES ('k1', ?, ?)", (hash_key_value("v" * 20), doc))
    conn.close()

    store = SqliteStore(str(path))
    data = store.load_sync()
    assert SCHEMA_VERSION == 2
    assert _meta(path) == (7, 2)  # the migration is not a state change: no version bump
    assert [k.name for k in data.keys] == ["old"] and data.cache_purges == [] and data.version == 7
    assert store.add_cache_purge_sync("shop1:prod", "flush", at=1.0) == 1
    assert store.version_sync() == 8
    store.close_sync()

    # Opening the migrated file again changes nothing.
    again = SqliteStore(str(path))
    assert again.load_sync().cache_purges == [CachePurge(seq=1, stage="shop1:prod", op="flush", at=1.0)]
    assert _meta(path) == (8, 2)
    again.close_sync()

    # A release before cache purges still reads the migrated file (the change is additive).
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM keys").fetchone()[0] == 1
        assert conn.execute("SELECT version FROM meta WHERE id = 1").fetchone()[0] == 8
    conn.close()


def test_sqlite_new_file_has_the_current_schema(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "new.db"))
    store.open_sync()
    store.close_sync()
    assert _meta(tmp_path / "new.db") == (0, SCHEMA_VERSION)


def test_redis_layout(redis_url: str) -> None:
    """A list and a counter under the store's prefix; the seq counter survives trimming."""
    store = lambda: RedisStore(RedisSettings(url=redis_url, prefix=PREFIX, timeout_ms=2000))  # noqa: E731

    async def body(s: Store) -> None:
        for i in range(MAX_CACHE_PURGES + 3):
            await s.add_cache_purge("shop1:prod", "key", path=f"/{i}", at=2.0)

    run_with(store, body)
    with redis.Redis.from_url(redis_url) as r:
        names = sorted(n.decode() for n in r.keys("*"))
        assert names == [f"{PREFIX}cachepurges", f"{PREFIX}cachepurgeseq", f"{PREFIX}version"]
        assert r.llen(f"{PREFIX}cachepurges") == MAX_CACHE_PURGES
        assert int(r.get(f"{PREFIX}cachepurgeseq") or 0) == MAX_CACHE_PURGES + 3
        first: Any = r.lindex(f"{PREFIX}cachepurges", 0)
        assert first.startswith(b'{"seq":4,"stage":"shop1:prod"')

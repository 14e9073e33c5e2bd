"""RedisLimiter against a real redis-server: exactness across nodes, levels, quotas, failover.

"Nodes" are separate processes, each with its own RedisLimiter (and its own local table), all
sharing one Redis, as gateway workers on several machines would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis_server import RedisServer

from fastgw.config.model import RedisSettings
from fastgw.state.redis_store import RedisStore
from fastgw.traffic.limiter import (
    QUOTA_EXCEEDED,
    QUOTA_UNAVAILABLE,
    BucketSpec,
    Levels,
    LocalLimiter,
    QuotaSpec,
)
from fastgw.traffic.redis_limiter import RedisLimiter
from fastgw_core.limits import SharedTable, table_bytes

T = TypeVar("T")
PREFIX = "t:"
REPO = Path(__file__).resolve().parents[2]


def settings(url: str, lease_ms: int = 0, timeout_ms: int = 200, retry: float = 1.0) -> RedisSettings:
    return RedisSettings(
        url=url, prefix=PREFIX, timeout_ms=timeout_ms, lease_ms=lease_ms, retry_seconds=retry
    )


def new_table() -> SharedTable:
    return SharedTable(bytearray(table_bytes(256)), 256)


def run_limiters(
    n: int, cfg: RedisSettings, fn: Callable[[list[RedisLimiter], SharedTable], Awaitable[T]]
) -> T:
    """Run ``fn`` with ``n`` limiters (one table: the specs' slots are valid in all of them)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        table = new_table()
        lims = [RedisLimiter(cfg, loop, LocalLimiter(table)) for _ in range(n)]
        try:
            return await fn(lims, table)
        finally:
            for lim in lims:
                await lim.aclose()

    return asyncio.run(main())


async def answer(got: Any) -> Any:
    return await got if isinstance(got, asyncio.Future) else got


# ---------------------------------------------------------------------- exactness across nodes
DRIVER = r"""
import asyncio, json, sys, time
from fastgw.config.model import RedisSettings
from fastgw.traffic.limiter import BucketSpec, Levels, LocalLimiter
from fastgw.traffic.redis_limiter import RedisLimiter
from fastgw_core.limits import SharedTable, table_bytes

cfg = json.loads(sys.argv[1])

async def main():
    loop = asyncio.get_running_loop()
    table = SharedTable(bytearray(table_bytes(64)), 64)
    lim = RedisLimiter(RedisSettings(**cfg["settings"]), loop, LocalLimiter(table))
    spec = BucketSpec(cfg["name"], cfg["rate"], cfg["burst"], table)
    print("ready", flush=True)
    start_at = float(sys.stdin.readline().split()[1])
    await asyncio.sleep(max(0.0, start_at - time.time()))
    per_s, seconds = cfg["per_second"], cfg["seconds"]
    st = {"issued": 0, "admitted": 0, "sync": 0, "max_wait": 0.0}
    pending = set()
    t0 = time.monotonic()
    first = time.time()

    def done(f, t_issue):
        pending.discard(f)
        if f.result()[0] == -1:
            st["admitted"] += 1
        st["max_wait"] = max(st["max_wait"], time.monotonic() - t_issue)

    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        for _ in range(int((now - t0) * per_s) - st["issued"]):
            got = lim.take(Levels([spec]), now)
            st["issued"] += 1
            if type(got) is tuple:
                st["sync"] += 1
                st["admitted"] += got[0] == -1
            else:
                pending.add(got)
                got.add_done_callback(lambda f, t=now: done(f, t))
        await asyncio.sleep(0.001)
    last = time.time()
    if pending:
        await asyncio.wait(list(pending))
    st.update(first=first, last=last, fallbacks=lim.fallbacks, round_trips=lim.round_trips)
    await lim.aclose()
    print(json.dumps(st), flush=True)

asyncio.run(main())
"""


def drive_nodes(
    url: str, lease_ms: int, nodes: int, rate: float, burst: int, seconds: float
) -> list[dict[str, Any]]:
    """``nodes`` processes hammer one bucket at 3 x its rate in total for ``seconds``."""
    cfg = {
        "settings": {"url": url, "prefix": PREFIX, "timeout_ms": 500, "lease_ms": lease_ms},
        "name": f"shared-{lease_ms}",
        "rate": rate,
        "burst": burst,
        "per_second": 3 * rate / nodes,
        "seconds": seconds,
    }
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for _ in range(nodes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        start_at = time.time() + 0.2
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"go {start_at}\n")
            p.stdin.close()
        results = []
        for p in procs:
            assert p.wait(timeout=seconds + 20) == 0
            assert p.stdout is not None
            results.append(json.loads(p.stdout.read().strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lease_ms", [0, 50])
def test_rate_is_exact_across_three_nodes(redis_url: str, lease_ms: int) -> None:
    rate, burst, seconds = 300.0, 30, 3.0
    results = drive_nodes(redis_url, lease_ms, nodes=3, rate=rate, burst=burst, seconds=seconds)
    admitted = sum(r["admitted"] for r in results)
    issued = sum(r["issued"] for r in results)
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    expected = rate * span + burst
    error = (admitted - expected) / expected
    print(
        f"lease_ms={lease_ms}: admitted {admitted} of {issued}, expected {expected:.0f} "
        f"({error:+.2%}); round trips {[r['round_trips'] for r in results]}, "
        f"answered at once {sum(r['sync'] for r in results) / issued:.0%}, "
        f"longest wait {max(r['max_wait'] for r in results) * 1000:.1f} ms"
    )
    assert issued >= 2.5 * expected
    assert abs(error) <= 0.05
    assert all(r["fallbacks"] == 0 for r in results)
    # Under overload every node competes for each new token, so most requests ask Redis (the
    # lease benefit under normal load is test_leases_answer_without_waiting); none waits long.
    assert max(r["max_wait"] for r in results) < 0.5


# ---------------------------------------------------------------------- levels
@pytest.mark.timeout(20)
@pytest.mark.parametrize("lease_ms", [0, 50])
def test_levels_are_all_or_nothing(redis_url: str, lease_ms: int) -> None:
    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        narrow = BucketSpec("narrow", 0.01, 5, table)  # ~no refill during the test
        wide = BucketSpec("wide", 0.01, 100, table)
        got = [await answer(lim.take(Levels([wide, narrow]), time.monotonic())) for _ in range(8)]
        assert got[:5] == [(-1, 0.0)] * 5
        for level, wait in got[5:]:
            assert level == 1 and wait > 50  # narrow is empty; a token in ~100 s
        # The other order reports the other level; refused requests took nothing from wide.
        level, _ = await answer(lim.take(Levels([narrow, wide]), time.monotonic()))
        assert level == 0
        # wide held 100 and gave 5: exactly 95 more, taken concurrently from two "nodes" (with
        # leases, a token may still sit in a lease after the rush: the stragglers spend it).
        now = time.monotonic()
        pending = [lims[i % 2].take(Levels([wide]), now) for i in range(150)]
        results = [await answer(p) for p in pending]
        results += [await answer(lims[i % 2].take(Levels([wide]), time.monotonic())) for i in range(6)]
        assert sum(r == (-1, 0.0) for r in results) == 95
        with redis.Redis.from_url(redis_url) as r:
            for name in ("narrow", "wide"):
                tokens = float(r.hget(f"{PREFIX}bucket:{name}", "tokens") or -1)
                assert 0 <= tokens < 1
                assert 0 < r.pttl(f"{PREFIX}bucket:{name}") <= 1000 * (100 / 0.01) + 1000

    run_limiters(2, settings(redis_url, lease_ms), body)


@pytest.mark.timeout(20)
def test_rate_zero_never_admits_nor_asks_redis(redis_url: str) -> None:
    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        ok = BucketSpec("ok", 10, 10, table)
        shut = BucketSpec("shut", 0, 10, table)
        assert lim.take(Levels([ok, shut]), time.monotonic()) == (1, float("inf"))
        assert lim.round_trips == 0

    run_limiters(1, settings(redis_url), body)


@pytest.mark.timeout(20)
def test_leases_answer_without_waiting(redis_url: str) -> None:
    """With lease_ms, a steady stream is served from the lease, refilled in the background."""

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        spec = BucketSpec("steady", 2000, 200, table)
        sync = waited = 0
        for _ in range(400):  # 1000 requests/s for 0.4 s: half the rate
            got = lim.take(Levels([spec]), time.monotonic())
            if isinstance(got, asyncio.Future):
                waited += 1
                assert await got == (-1, 0.0)
            else:
                sync += 1
                assert got == (-1, 0.0)
            await asyncio.sleep(0.001)
        assert sync > 0.8 * (sync + waited)
        assert lim.round_trips < 200

    run_limiters(1, settings(redis_url, lease_ms=50), body)


# ---------------------------------------------------------------------- quotas
@pytest.mark.timeout(20)
def test_quota_is_exact_resets_by_period_and_counts_usage(redis_url: str) -> None:
    day = int(time.time() // 86400)

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        q = QuotaSpec("plan", "key", 50, "DAY", 0, False, table)
        # 80 concurrent requests from two nodes: exactly 50 pass, each remaining value once.
        pending = [lims[i % 2].quota(q, day, day) for i in range(80)]
        got = [await answer(p) for p in pending]
        assert sorted(g for g in got if g >= 0) == list(range(50))
        assert got.count(QUOTA_EXCEEDED) == 30
        # Once a node has seen it used up for this period, it refuses at once, without Redis.
        assert await answer(lims[0].quota(q, day, day)) == QUOTA_EXCEEDED
        trips = lims[0].round_trips
        assert lims[0].quota(q, day, day) == QUOTA_EXCEEDED
        assert lims[0].round_trips == trips
        # A new period starts from zero; a raised limit is checked against Redis again.
        assert await answer(lims[0].quota(q, day + 1, day + 1)) == 49
        q2 = QuotaSpec("plan", "key", 52, "DAY", 0, False, table)
        assert await answer(lims[1].quota(q2, day, day)) == 1

        store = RedisStore(settings(redis_url))
        try:
            assert await store.usage("plan", ["key"], day - 1, day + 1) == {"key": {day: 51, day + 1: 1}}
        finally:
            await store.close()
        with redis.Redis.from_url(redis_url) as r:
            for name in (f"quota:plan:key:{day}", f"usage:plan:key:{day}"):
                assert r.ttl(PREFIX + name) > 0
            assert int(r.get(f"{PREFIX}quota:plan:key:{day}") or 0) == 51

    run_limiters(2, settings(redis_url), body)


# ---------------------------------------------------------------------- failures
@pytest.mark.timeout(30)
def test_redis_down_falls_back_locally_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastgw.redis")
    day = int(time.time() // 86400)

    with RedisServer() as server, redis.Redis.from_url(server.url, socket_timeout=2) as r:
        cfg = settings(server.url, lease_ms=0, timeout_ms=150, retry=0.3)

        async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
            lim = lims[0]
            spec = BucketSpec("b", 1000, 1000, table)
            open_q = QuotaSpec("plan", "k1", 10, "DAY", 0, True, table)
            closed_q = QuotaSpec("plan", "k2", 10, "DAY", 0, False, table)
            assert await answer(lim.take(Levels([spec]), time.monotonic())) == (-1, 0.0)
            assert float(r.hget(f"{PREFIX}bucket:b", "tokens") or 0) < 1000

            server.kill()
            t0 = time.monotonic()
            got = lim.take(Levels([spec]), time.monotonic())
            assert await answer(got) == (-1, 0.0)  # from the local table
            assert time.monotonic() - t0 < 0.3
            assert lim.down and lim.fallbacks == 1
            # While down: answered at once, never waiting on Redis.
            for _ in range(20):
                assert lim.take(Levels([spec]), time.monotonic()) == (-1, 0.0)
            assert lim.quota(open_q, day, day) == 10
            assert lim.quota(closed_q, day, day) == QUOTA_UNAVAILABLE
            assert lim.fallbacks == 23
            assert table.bucket(spec.slot)[0] < 1000  # the local table did the counting

            server.start()  # same port, empty
            assert not r.exists(f"{PREFIX}bucket:b")
            await asyncio.sleep(0.35)  # retry_seconds
            got = lim.take(Levels([spec]), time.monotonic())
            assert isinstance(got, asyncio.Future)  # the probe asks Redis
            assert await got == (-1, 0.0)
            assert not lim.down
            assert float(r.hget(f"{PREFIX}bucket:b", "tokens") or 1000) < 1000
            assert await answer(lim.quota(closed_q, day, day)) == 9

            # A hung Redis (SIGSTOP) costs one deadline, then local answers.
            server.pause()
            try:
                t0 = time.monotonic()
                assert await answer(lim.take(Levels([spec]), time.monotonic())) == (-1, 0.0)
                assert 0.1 < time.monotonic() - t0 < 0.4
                assert lim.down
                t0 = time.monotonic()
                assert lim.take(Levels([spec]), time.monotonic()) == (-1, 0.0)
            finally:
                server.resume()
            await asyncio.sleep(0.35)
            assert await answer(lim.take(Levels([spec]), time.monotonic())) == (-1, 0.0)
            assert not lim.down

        run_limiters(1, cfg, body)

    messages = [rec.getMessage() for rec in caplog.records if rec.name == "fastgw.redis"]
    assert sum("unreachable" in m for m in messages) == 2  # killed, then hung: once each
    assert sum("reachable again" in m for m in messages) == 2


@pytest.mark.timeout(20)
def test_close_answers_waiting_requests_and_returns_leases(redis_url: str) -> None:
    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        spec = BucketSpec("lease", 1000, 100, table)
        # Demand builds a lease: 40 requests at once, then the next fetch leases more.
        first = [lim.take(Levels([spec]), time.monotonic()) for _ in range(40)]
        assert [await answer(f) for f in first] == [(-1, 0.0)] * 40
        await answer(lim.take(Levels([spec]), time.monotonic()))
        await asyncio.sleep(0.01)
        with redis.Redis.from_url(redis_url) as r:
            before = float(r.hget(f"{PREFIX}bucket:lease", "tokens") or 0)
            waiting = lim.take(Levels([BucketSpec("other", 10, 10, table)]), time.monotonic())
            await lim.aclose()
            assert await answer(waiting) == (-1, 0.0)  # answered (locally), not left hanging
            after = float(r.hget(f"{PREFIX}bucket:lease", "tokens") or 0)
        assert after > before  # the unused lease went back

    run_limiters(1, settings(redis_url, lease_ms=50), body)


@pytest.mark.timeout(20)
def test_expired_leases_go_back(redis_url: str) -> None:
    """Tokens a worker leased and did not use return to Redis after the lease window."""

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        spec = BucketSpec("idle", 0.01, 100, table)  # ~no refill during the test
        first = [lim.take(Levels([spec]), time.monotonic()) for _ in range(20)]
        assert [await answer(f) for f in first] == [(-1, 0.0)] * 20
        await answer(lim.take(Levels([spec]), time.monotonic()))  # this fetch leases tokens
        with redis.Redis.from_url(redis_url) as r:
            leased = float(r.hget(f"{PREFIX}bucket:idle", "tokens") or 0)
            assert leased < 79
            await asyncio.sleep(0.2)  # > 2 lease windows, no requests
            assert float(r.hget(f"{PREFIX}bucket:idle", "tokens") or 0) == pytest.approx(79, abs=0.01)

    run_limiters(1, settings(redis_url, lease_ms=50), body)

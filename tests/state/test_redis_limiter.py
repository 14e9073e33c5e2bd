"""RedisLimiter against a real redis-server: exactness across nodes, levels, quotas, failover.

"Nodes" are separate processes, each with its own RedisLimiter (and its own local table), all
sharing one Redis, as gateway workers on several machines would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import redis
from redis_server import RedisServer

from fastgw.config.model import RedisSettings
from fastgw.state.redis_store import RedisStore
from fastgw.traffic import gate as gate_module
from fastgw.traffic.gate import Gate, KeyRuntime, PlanBinding
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
    return run_processes(DRIVER, cfg, nodes, seconds)


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


# ---------------------------------------------------------------------- quota leases
QUOTA_DRIVER = r"""
import asyncio, json, sys, time
from fastgw.config.model import RedisSettings
from fastgw.traffic.limiter import LocalLimiter, QuotaSpec
from fastgw.traffic.redis_limiter import RedisLimiter
from fastgw_core.limits import SharedTable, table_bytes

cfg = json.loads(sys.argv[1])

async def main():
    loop = asyncio.get_running_loop()
    table = SharedTable(bytearray(table_bytes(64)), 64)
    lim = RedisLimiter(RedisSettings(**cfg["settings"]), loop, LocalLimiter(table))
    q = QuotaSpec("plan", "key", cfg["limit"], "DAY", 0, False, table)
    day = cfg["day"]
    print("ready", flush=True)
    start_at = float(sys.stdin.readline().split()[1])
    await asyncio.sleep(max(0.0, start_at - time.time()))
    per_s, seconds = cfg["per_second"], cfg["seconds"]
    st = {"issued": 0, "admitted": 0, "sync": 0, "refused": 0}
    pending = set()
    t0 = time.monotonic()

    def done(f):
        pending.discard(f)
        st["admitted" if f.result() >= 0 else "refused"] += 1

    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        for _ in range(int((now - t0) * per_s) - st["issued"]):
            got = lim.quota(q, day, day)
            st["issued"] += 1
            if type(got) is int:
                st["sync"] += 1
                st["admitted" if got >= 0 else "refused"] += 1
            else:
                pending.add(got)
                got.add_done_callback(done)
        await asyncio.sleep(0.001)
    if pending:
        await asyncio.wait(list(pending))
    st.update(fallbacks=lim.fallbacks, round_trips=lim.round_trips)
    await lim.aclose()
    print(json.dumps(st), flush=True)

asyncio.run(main())
"""


def run_processes(driver: str, cfg: dict[str, Any], nodes: int, seconds: float) -> list[dict[str, Any]]:
    """``nodes`` processes run ``driver`` with ``cfg``, started together; their JSON reports."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", driver, json.dumps(cfg)],
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


def counters(url: str, day: int, key: str = "key") -> tuple[int, int]:
    """(quota counter, usage counter) of plan/``key`` for ``day`` in Redis."""
    with redis.Redis.from_url(url) as r:
        return (
            int(r.get(f"{PREFIX}quota:plan:{key}:{day}") or 0),
            int(r.get(f"{PREFIX}usage:plan:{key}:{day}") or 0),
        )


@pytest.mark.timeout(60)
def test_quota_lease_is_exact_across_three_processes(redis_url: str) -> None:
    """3 processes (nodes) with quota leases hammer one key at 5x its limit: exactly the limit
    passes, most answers come from the leases, and Redis counts exactly what passed."""
    day = int(time.time() // 86400)
    limit, seconds = 3000, 2.5
    cfg = {
        "settings": {"url": redis_url, "prefix": PREFIX, "timeout_ms": 500, "lease_ms": 50},
        "limit": limit,
        "day": day,
        "per_second": 2000,
        "seconds": seconds,
    }
    results = run_processes(QUOTA_DRIVER, cfg, nodes=3, seconds=seconds)
    admitted = sum(r["admitted"] for r in results)
    issued = sum(r["issued"] for r in results)
    sync = sum(r["sync"] for r in results)
    print(
        f"quota {limit}: admitted {admitted} of {issued}, per process {[r['admitted'] for r in results]}; "
        f"answered at once {sync / issued:.0%}; round trips {[r['round_trips'] for r in results]}"
    )
    assert issued >= 4 * limit
    assert admitted == limit  # never more; and no unit stranded once every process kept asking
    assert all(r["admitted"] > 0 for r in results)
    assert all(r["fallbacks"] == 0 for r in results)
    assert sync > 0.9 * issued  # leases while under the limit, local refusals once used up
    assert counters(redis_url, day) == (limit, limit)  # every unleased unit given back


@pytest.mark.timeout(20)
def test_quota_lease_is_spent_synchronously_without_redis(redis_url: str) -> None:
    day = int(time.time() // 86400)

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        q = QuotaSpec("plan", "key", 100_000, "DAY", 0, False, table)
        admitted = 0
        for _ in range(30):  # demand builds a lease: 40 requests per ms
            got = [await answer(lim.quota(q, day, day)) for _ in range(40)]
            assert all(g >= 0 for g in got)
            admitted += len(got)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)  # the last refill lands
        lease = lim._qleases[q.name]
        assert lease.units >= 10
        trips, held = lim.round_trips, lease.units
        assert counters(redis_url, day) == (admitted + held, admitted + held)
        # Spending up to half the lease: ints at once, nothing queued, no round trip.
        for _ in range(held // 2):
            got = lim.quota(q, day, day)
            assert type(got) is int and 0 <= got < 100_000
            admitted += 1
        assert lim.round_trips == trips and lim._task is None and not lim._quotas and not lim._qwants
        assert counters(redis_url, day)[0] == admitted + lease.units  # Redis did not move
        await lim.aclose()
        assert counters(redis_url, day) == (admitted, admitted)

    run_limiters(1, settings(redis_url, lease_ms=50), body)


@pytest.mark.timeout(20)
def test_quota_lease_goes_back_on_expiry_new_day_and_close(redis_url: str) -> None:
    """Leased units are counted at once (quota and usage), and the unspent ones are given back:
    after the lease window, when the day changes, and at close."""
    day = int(time.time() // 86400)

    async def build(lim: RedisLimiter, q: QuotaSpec, d: int) -> int:
        n = 0
        for _ in range(20):
            got = [await answer(lim.quota(q, d, d)) for _ in range(30)]
            assert all(g >= 0 for g in got)
            n += len(got)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)
        return n

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        q = QuotaSpec("plan", "key", 100_000, "DAY", 0, False, table)
        admitted = await build(lim, q, day)
        held = lim._qleases[q.name].units
        assert held > 0
        assert counters(redis_url, day) == (admitted + held, admitted + held)  # usage runs ahead
        await asyncio.sleep(0.2)  # > 2 lease windows, no requests
        assert lim._qleases[q.name].units == 0
        assert counters(redis_url, day) == (admitted, admitted)

        # A new day (and period): the old day's unspent units go back to the old counters.
        admitted = await build(lim, q, day)
        total = counters(redis_url, day)[1] - lim._qleases[q.name].units
        assert await answer(lim.quota(q, day + 1, day + 1)) >= 0
        await asyncio.sleep(0.01)
        assert counters(redis_url, day) == (total, total)
        assert counters(redis_url, day + 1)[0] >= 1

        admitted = await build(lim, q, day + 1) + 1
        assert lim._qleases[q.name].units > 0
        await lim.aclose()
        assert counters(redis_url, day + 1) == (admitted, admitted)

    run_limiters(1, settings(redis_url, lease_ms=50), body)


@pytest.mark.timeout(20)
def test_quota_lease_shrinks_near_the_limit_and_units_given_back_reopen_it(redis_url: str) -> None:
    day = int(time.time() // 86400)
    limit = 10_000

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        a, b = lims
        q = QuotaSpec("plan", "key", limit, "DAY", 0, False, table)
        # a builds a full-size lease (1 % of the limit) far from the limit.
        admitted = 0
        for _ in range(30):
            admitted += sum([await answer(a.quota(q, day, day)) >= 0 for _ in range(100)])
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)
        held = a._qleases[q.name].units
        assert 50 <= held <= limit // 100
        assert a._sweeper is not None
        a._sweeper.cancel()  # a holds its units until the test lets it sweep again
        a._sweeper = None
        with redis.Redis.from_url(redis_url) as r:
            r.set(f"{PREFIX}quota:plan:key:{day}", limit - 40)  # a's units counted in; 40 left
        # b hammers: 40 pass, each lease at most 1/16 of what is left (1 near the end), then
        # refusals while a still holds its units.
        got: list[int] = []
        biggest = 0
        for _ in range(20):
            got += [await answer(b.quota(q, day, day)) for _ in range(10)]
            lease = b._qleases.get(q.name)
            if lease is not None:
                left = limit - counters(redis_url, day)[0] + lease.units
                biggest = max(biggest, lease.units)
                assert lease.units <= max(1, left // 16) + 1
            await asyncio.sleep(0.001)
        assert sum(g >= 0 for g in got) == 40
        assert got[-1] == QUOTA_EXCEEDED
        assert biggest < 40
        # Used up for b: refused locally, without Redis.
        trips = b.round_trips
        assert b.quota(q, day, day) == QUOTA_EXCEEDED
        assert b.round_trips == trips
        # a's units go back (a is idle: after its lease window), and b (asking again after a
        # short while) gets exactly those: never more than the limit in all.
        a._arm_sweeper()
        await asyncio.sleep(0.25)
        assert a._qleases[q.name].units == 0
        late = 0
        for _ in range(30):
            late += sum([await answer(b.quota(q, day, day)) >= 0 for _ in range(10)])
            await asyncio.sleep(0.02)
        assert late == held
        assert counters(redis_url, day)[0] == limit

    run_limiters(2, settings(redis_url, lease_ms=50), body)


@pytest.mark.timeout(20)
def test_gate_admits_synchronously_from_leases(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Key + 2 throttle levels + quota over Redis: once the leases are built, ``Gate.admit``
    answers None at once, creating no future and no task, and asking Redis nothing."""
    value = b"gate-key-0123456789abcdef"

    async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
        lim = lims[0]
        loop = asyncio.get_running_loop()
        gate = Gate(table, lim)
        route: Any = SimpleNamespace(
            api_key_required=True,
            stage_uid="api:prod",
            resource_method="GET /x",
            levels=Levels([BucketSpec("gw", 1e6, 1e6, table)]),
        )
        key = KeyRuntime("k1", hashlib.sha256(value).digest(), True)
        q = QuotaSpec("plan", "k1", 10**9, "MONTH", 0, False, table)
        bucket = BucketSpec("key:plan:k1", 1e6, 1e6, table)
        key.stages["api:prod"] = PlanBinding("plan", "k1", bucket, {}, q, q)
        gate.keys = {key.digest: key}

        def conn(api_key: bytes) -> Any:  # the client connection the gate reads the key from
            return SimpleNamespace(api_key=api_key, key_value=None, key_rt=None, key_gen=-1)

        client = conn(value)
        assert gate.admit(route, conn(b"wrong-key-0123456789abcdef"), loop.time()) is gate_module.FORBIDDEN
        for _ in range(30):  # 40 requests per ms build the leases
            for _ in range(40):
                verdict = gate.admit(route, client, loop.time())
                if verdict is not None:
                    assert await verdict is None  # type: ignore[misc]
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.005)
        held = min(lz.tokens for lz in lim._leases.values())
        units = lim._qleases[q.name].units
        assert held >= 20 and units >= 20
        trips = lim.round_trips

        def no_future(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a future or a task on the leased path")

        tasks: list[Any] = []
        create_task = loop.create_task

        def background(coro: Any, **kwargs: Any) -> Any:
            tasks.append(coro)  # a background refill (the limiter's one round-trip pump) is fine
            return create_task(coro, **kwargs)

        monkeypatch.setattr(gate_module.asyncio, "ensure_future", no_future)
        monkeypatch.setattr(loop, "create_future", no_future)
        monkeypatch.setattr(loop, "create_task", background)
        try:
            for _ in range(int(min(held, units) // 3)):
                assert gate.admit(route, client, loop.time()) is None
        finally:
            monkeypatch.undo()
        assert lim.round_trips == trips
        assert len(tasks) <= 1
        assert gate.refused == gate.quota_refused == 0

    run_limiters(1, settings(redis_url, lease_ms=50), body)


@pytest.mark.timeout(30)
def test_quota_lease_through_an_outage() -> None:
    """Units leased before Redis goes away are still spent (they are counted), then the plan's
    fail_open decides; after recovery the quota is counted in Redis again."""
    day = int(time.time() // 86400)
    with RedisServer() as server, redis.Redis.from_url(server.url, socket_timeout=2) as r:
        cfg = settings(server.url, lease_ms=50, timeout_ms=150, retry=0.3)

        async def body(lims: list[RedisLimiter], table: SharedTable) -> None:
            lim = lims[0]
            q = QuotaSpec("plan", "key", 100_000, "DAY", 0, False, table)  # fails closed
            for _ in range(30):
                assert all([await answer(lim.quota(q, day, day)) >= 0 for _ in range(40)])
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.005)
            held = lim._qleases[q.name].units
            assert held > 0
            server.kill()
            got = [await answer(lim.quota(q, day, day)) for _ in range(held + 20)]
            assert got[:held] == sorted(got[:held], reverse=True) and min(got[:held]) >= 0
            assert got[held:] == [QUOTA_UNAVAILABLE] * 20
            assert lim.down and lim.fallbacks == 20

            server.start()  # same port, empty
            await asyncio.sleep(0.35)  # retry_seconds
            assert await answer(lim.quota(q, day, day)) >= 0  # the probe
            assert not lim.down
            assert int(r.get(f"{PREFIX}quota:plan:key:{day}") or 0) >= 1

        run_limiters(1, cfg, body)

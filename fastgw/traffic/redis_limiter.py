"""The Redis limiter: token buckets and quotas shared by every worker of every node.

Buckets
-------
A bucket lives in Redis as the hash ``{prefix}bucket:{name}`` (fields ``tokens``, ``ts``). One
Lua script (``_LIMITS``) refills it from Redis's own clock (``TIME``; node clocks do not matter),
``tokens = min(burst, tokens + elapsed * rate)``, takes tokens and sets a ``PEXPIRE`` of the time
to refill completely plus a margin (an expired bucket is a full one, so nothing lives forever).

Each worker process keeps a *lease* per bucket name: tokens it took from Redis ahead of need.
``take()`` spends leased tokens synchronously (no I/O, no allocation). When a level has no
leased token, the call returns an ``asyncio.Future``: the request joins the next round trip,
one script call for every waiting request and every lease to refill. Inside the script each
request takes one token from each of its short levels or from none (all-or-nothing across
levels, in Redis, in arrival order); tokens for leases are handed out after the requests. A
request arriving while a round trip is in flight waits for it and is first served from the
leases it brought back, so concurrent requests for one bucket share one fetch. A lease is
refilled in the background when it falls below half, so a steady stream of requests does not
wait.

Lease size: ``max(1, min(burst, rate * lease_ms / 1000))`` at most, sized down to about twice
the worker's own recent demand per lease window (an idle worker leases nothing). A leased
token unused ``lease_ms`` after its fetch expires locally and is given back to Redis (by the
next round trip for that bucket, or a sweep every lease window; at close, every unused lease).

Accuracy: Redis never hands out more than ``burst + rate * T`` tokens over T seconds, so leases
cannot over-admit over a run; they shift admissions in time. Within one lease window at most
``workers x nodes x lease size`` tokens may be admitted from leases taken in the previous window
(over-admission) or sit unused in other workers' leases (early refusal). ``lease_ms: 0`` takes
exactly one token per request in Redis: exact, one round trip per batch of concurrent requests.
Measured (tests/state/test_redis_limiter.py, 3 processes as 3 nodes at 3x a 300/s, burst 30
bucket for 3 s on a 2-core machine): admitted within 0.5 % of ``rate * T + burst`` (927 vs 932)
with ``lease_ms`` 0 and 50 alike, no request waiting more than 5 ms.

A refusal tells how long until Redis holds a token again; until then the worker refuses that
bucket locally (exact: only time adds tokens). Specs with ``rate <= 0`` or ``burst < 1`` never
admit and never reach Redis (wait ``inf``, as in the local table).

Quotas
------
Exact per request, batched: every admitted request is counted in Redis by the same script,
``INCRBY`` of ``{prefix}quota:{plan}:{key}:{period}`` when under the limit (expiring a day after
the period ends) and of the day's usage counter ``{prefix}usage:{plan}:{key}:{day}`` (expiring
``USAGE_TTL_DAYS`` after the day, the layout ``RedisStore.usage`` reads). Concurrent requests
for one key are counted by one ``INCRBY``. Once Redis reports a quota used up for a period, the
worker refuses it locally for the rest of that period (quota counters only grow); there is no
local quota lease.

Failures
--------
Any failure of a round trip (timeout after ``timeout_ms``, refused, reset, an error reply) marks
Redis down for ``retry_seconds``: the requests of that round trip and every request until then
are answered by ``local`` (the node's shared-memory table: exact across the node's workers) for
buckets; quotas admit without counting (``fail_open``, answering ``q.limit`` as remaining) or
answer ``QUOTA_UNAVAILABLE``. ``fallbacks`` counts those answers. While down, no request waits
on Redis; after ``retry_seconds`` one request probes it (waiting at most ``timeout_ms``) and
the next answers come from Redis again if it answered. Transitions are logged once each, on the
``fastgw.redis`` logger. A request waits at most about two deadlines (the round trip in flight
and its own).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import Any

from redis.exceptions import RedisError

from fastgw.config.model import RedisSettings
from fastgw.state.periods import DAY_SECONDS, period_end
from fastgw.state.redis_store import Script, make_client, usage_expire_at
from fastgw.traffic.limiter import (
    QUOTA_EXCEEDED,
    QUOTA_UNAVAILABLE,
    BucketSpec,
    Levels,
    Limiter,
    LocalLimiter,
    QuotaSpec,
)

log = logging.getLogger("fastgw.redis")

_ADMIT = (-1, 0.0)
_INF = float("inf")
MAX_BATCH = 256  # waiting requests (and quota keys) per round trip
MAX_LEASES = 50_000  # bucket names remembered per worker before idle ones are dropped
QUOTA_EXPIRE_MARGIN = DAY_SECONDS  # a quota counter outlives its period by a day (clock skew)

# KEYS: nb bucket hashes, then (quota counter, usage counter) x nq.
# ARGV: nb, nq; (rate, burst, want) x nb; ngroups, (n, i1..in) x ngroups;
#       (limit, n, quota expire-at, usage expire-at) x nq.
# want < 0: give -want tokens back (before the groups); want > 0: lease up to want tokens
# (after the groups).
# Returns: grant x nb, wait-ms x nb (0 when a token is available), group result x ngroups
# (0 admitted, else the index of the first bucket short of a token), (granted, count) x nq.
_LIMITS = Script("""
local nb, nq = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens, rate, burst, want, stamp = {}, {}, {}, {}, {}
local a = 3
for i = 1, nb do
  local r, b = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  rate[i], burst[i], want[i] = r, b, tonumber(ARGV[a + 2])
  a = a + 3
  local s = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk, ts = tonumber(s[1]), tonumber(s[2])
  if tk == nil or ts == nil then
    tk, ts = b, now
  elseif now > ts then
    tk, ts = tk + (now - ts) * r / 1000000, now
  end
  if want[i] < 0 then tk = tk - want[i] end
  if tk > b then tk = b end
  tokens[i], stamp[i] = tk, ts
end
local out = {}
local ng = tonumber(ARGV[a])
a = a + 1
for g = 1, ng do
  local n, fail = tonumber(ARGV[a]), 0
  for j = 1, n do
    local k = tonumber(ARGV[a + j])
    if tokens[k] < 1 then fail = k break end
  end
  if fail == 0 then
    for j = 1, n do
      local k = tonumber(ARGV[a + j])
      tokens[k] = tokens[k] - 1
    end
  end
  out[2 * nb + g] = fail
  a = a + n + 1
end
for i = 1, nb do
  local tk, w, g = tokens[i], want[i], 0
  if w > 0 then
    g = math.floor(tk)
    if g > w then g = w end
    if g < 0 then g = 0 end
    tk = tk - g
  end
  redis.call('HSET', KEYS[i], 'tokens', tk, 'ts', stamp[i])
  redis.call('PEXPIRE', KEYS[i], math.ceil((burst[i] - tk) * 1000 / rate[i]) + 1000)
  local wait = 0
  if tk < 1 then wait = math.ceil((1 - tk) * 1000 / rate[i]) end
  out[i], out[nb + i] = g, wait
end
local o = 2 * nb + ng
for j = 1, nq do
  local qk, uk = KEYS[nb + 2 * j - 1], KEYS[nb + 2 * j]
  local limit, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local qexp, uexp = ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local c = tonumber(redis.call('GET', qk)) or 0
  local g = limit - c
  if g > n then g = n end
  if g < 0 then g = 0 end
  if g > 0 then
    c = redis.call('INCRBY', qk, g)
    redis.call('EXPIREAT', qk, qexp)
    redis.call('INCRBY', uk, g)
    redis.call('EXPIREAT', uk, uexp)
  end
  out[o + 2 * j - 1], out[o + 2 * j] = g, c
end
return out
""")


@functools.lru_cache(maxsize=256)
def _quota_expire_at(period: str, offset: int, start: int) -> int:
    return period_end(period, offset, start) * DAY_SECONDS + QUOTA_EXPIRE_MARGIN


class _Lease:
    """A worker's leased tokens of one bucket, and what it knows of the bucket in Redis."""

    __slots__ = (
        "burst",
        "cap",
        "empty_until",
        "expires",
        "fetched_at",
        "key",
        "low",
        "queued",
        "rate",
        "tokens",
        "used",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.rate = 0.0
        self.burst = 0.0
        self.cap = 1  # most tokens one fetch may lease
        self.tokens = 0.0  # leased, usable while now < expires
        self.expires = 0.0
        self.low = 0.0  # refill in the background below this
        self.empty_until = 0.0  # Redis holds no token before this (caller's clock)
        self.queued = False  # in the next or the current round trip
        self.used = 0  # demand since the last fetch
        self.fetched_at = 0.0


class _Take:
    __slots__ = ("buckets", "fut", "now")

    def __init__(self, fut: asyncio.Future[Any], buckets: list[BucketSpec], now: float) -> None:
        self.fut = fut
        self.buckets = buckets
        self.now = now


class _Quota:
    __slots__ = ("day", "fut", "period", "q")

    def __init__(self, fut: asyncio.Future[Any], q: QuotaSpec, period: int, day: int) -> None:
        self.fut = fut
        self.q = q
        self.period = period
        self.day = day


class _Group:
    """A waiting request in a round trip: the leased tokens it holds and the levels it lacks."""

    __slots__ = ("levels", "req", "reserved", "slots")

    def __init__(self, req: _Take, reserved: list[_Lease], levels: list[int], slots: list[int]) -> None:
        self.req = req
        self.reserved = reserved
        self.levels = levels  # positions in req.buckets
        self.slots = slots  # matching bucket indexes in the round trip


class RedisLimiter(Limiter):
    """``Limiter`` over Redis with local leases and a fallback to ``local`` (module docstring)."""

    def __init__(self, settings: RedisSettings, loop: asyncio.AbstractEventLoop, local: LocalLimiter) -> None:
        self.settings = settings
        self.loop = loop
        self.local = local
        self.prefix = settings.prefix
        self.timeout = settings.timeout_ms / 1000
        self.lease_s = settings.lease_ms / 1000
        self.retry_s = float(settings.retry_seconds)
        self.client = make_client(settings, max_connections=2)
        self.fallbacks = 0
        self.round_trips = 0
        # Global
        self._leases: dict[str, _Lease] = {}
        self._exhausted: dict[str, tuple[int, int]] = {}  # quota name -> (period, limit) used up
        # Waiting work
        self._takes: list[_Take] = []
        self._quotas: list[_Quota] = []
        self._wants: list[_Lease] = []
        self._leased: set[_Lease] = set()  # leases holding tokens, swept when they expire
        self._sweeper: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._closed = False
        # Usage of plans without a quota, added to Redis in batches
        self._usage: dict[tuple[str, str, int], int] = {}
        self._usage_timer: asyncio.TimerHandle | None = None
        self._bg: set[asyncio.Task[None]] = set()
        # Redis health
        self._down = False
        self._probing = False
        self._retry_at = 0.0  # time.monotonic()
        # caller's clock (``now`` of take()) minus loop.time(), to stamp leases off-request
        self._clock_off = 0.0

    # ------------------------------------------------------------------ buckets
    def take(self, levels: Levels, now: float) -> tuple[int, float] | asyncio.Future[Any]:
        buckets = levels.buckets
        leases = self._leases
        if len(buckets) == 1:
            lz = leases.get(buckets[0].name)
            if lz is not None and lz.tokens >= 1.0 and now < lz.expires:
                lz.tokens -= 1.0
                lz.used += 1
                if lz.tokens < lz.low and not lz.queued:
                    self._prefetch(lz)
                return _ADMIT
            return self._take_slow(buckets, now)
        for b in buckets:
            lz = leases.get(b.name)
            if lz is None or lz.tokens < 1.0 or now >= lz.expires:
                return self._take_slow(buckets, now)
        for b in buckets:
            lz = leases[b.name]
            lz.tokens -= 1.0
            lz.used += 1
            if lz.tokens < lz.low and not lz.queued:
                self._prefetch(lz)
        return _ADMIT

    def _take_slow(self, buckets: list[BucketSpec], now: float) -> tuple[int, float] | asyncio.Future[Any]:
        self._clock_off = now - self.loop.time()
        if self._closed or (self._down and (self._probing or time.monotonic() < self._retry_at)):
            self.fallbacks += 1
            return self.local.take(Levels(buckets), now)
        for i, b in enumerate(buckets):
            if not (b.rate > 0.0 and b.burst >= 1.0):
                return (i, _INF)
            lz = self._lease(b)
            lz.used += 1
            if (lz.tokens < 1.0 or now >= lz.expires) and lz.empty_until > now:
                return (i, lz.empty_until - now)
        if self._down:
            self._probing = True
        fut = self.loop.create_future()
        self._takes.append(_Take(fut, buckets, now))
        self._kick()
        return fut

    def _lease(self, b: BucketSpec) -> _Lease:
        lz = self._leases.get(b.name)
        if lz is None:
            if len(self._leases) >= MAX_LEASES:
                self._prune()
            lz = self._leases[b.name] = _Lease(f"{self.prefix}bucket:{b.name}")
        if lz.rate != b.rate or lz.burst != b.burst:
            lz.rate, lz.burst = b.rate, b.burst
            lz.cap = max(1, int(min(b.burst, b.rate * self.lease_s)))
        return lz

    def _prune(self) -> None:
        now = self.loop.time() + self._clock_off
        for name, lz in list(self._leases.items()):
            if not lz.queued and (lz.tokens < 1.0 or now >= lz.expires) and lz.empty_until <= now:
                del self._leases[name]
        if len(self._leases) >= MAX_LEASES:
            for name, lz in list(self._leases.items()):
                if not lz.queued:
                    del self._leases[name]

    def _prefetch(self, lz: _Lease) -> None:
        lz.queued = True
        self._wants.append(lz)
        self._kick()

    def _want(self, lz: _Lease, now: float) -> int:
        """Tokens to lease for ``lz`` now: about twice the worker's demand per lease window."""
        if self.lease_s <= 0.0:
            return 0
        elapsed = max(now - lz.fetched_at, self.lease_s)
        target = min(lz.cap, int(2.0 * lz.used * self.lease_s / elapsed + 0.5))
        have = lz.tokens if now < lz.expires else 0.0
        return max(0, target - int(have))

    def _net_want(self, lz: _Lease, now: float) -> int:
        """The lease request of ``lz`` in a round trip: tokens to lease, less leased tokens that
        expired unused (those go back: a negative answer gives tokens back)."""
        want = self._want(lz, now)
        if now >= lz.expires and lz.tokens >= 1.0:
            want -= int(lz.tokens)
        return want

    def _sweep(self) -> None:
        """Every lease window while leases exist: give back leased tokens that expired unused
        (an idle worker must not strand tokens that other workers and nodes need)."""
        self._sweeper = None
        now = self.loop.time() + self._clock_off
        for lz in list(self._leased):
            if lz.tokens < 1.0:
                self._leased.discard(lz)
            elif now >= lz.expires and not lz.queued and not self._down and not self._closed:
                self._leased.discard(lz)
                self._prefetch(lz)
        if self._leased and not self._closed:
            self._sweeper = self.loop.call_later(self.lease_s, self._sweep)

    # ------------------------------------------------------------------ quotas
    def quota(self, q: QuotaSpec, period: int, day: int) -> int | asyncio.Future[Any]:
        used_up = self._exhausted.get(q.name)
        if used_up is not None and used_up[0] == period and used_up[1] == q.limit:
            return QUOTA_EXCEEDED
        if self._closed or (self._down and (self._probing or time.monotonic() < self._retry_at)):
            self.fallbacks += 1
            return q.limit if q.fail_open else QUOTA_UNAVAILABLE
        if self._down:
            self._probing = True
        fut = self.loop.create_future()
        self._quotas.append(_Quota(fut, q, period, day))
        self._kick()
        return fut

    def count_usage(self, q: QuotaSpec, day: int) -> None:
        """Usage of plans without a quota: counted locally and added to Redis every second
        (one pipeline of INCRBY; counts are dropped, and logged at debug, if Redis is down)."""
        k = (q.plan_id, q.key_id, day)
        self._usage[k] = self._usage.get(k, 0) + 1
        if self._usage_timer is None and not self._closed:
            self._usage_timer = self.loop.call_later(1.0, self._flush_usage_soon)

    def _flush_usage_soon(self) -> None:
        self._usage_timer = None
        task = self.loop.create_task(self._flush_usage())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _flush_usage(self) -> None:
        counts, self._usage = self._usage, {}
        if not counts or self._down:
            return
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.pipeline(transaction=False) as pipe:
                    for (plan, key, day), n in counts.items():
                        name = f"{self.prefix}usage:{plan}:{key}:{day}"
                        pipe.incrby(name, n)
                        pipe.expireat(name, usage_expire_at(day))
                    await pipe.execute()
        except Exception as ex:
            log.debug("usage counts lost: %s", ex)

    # ------------------------------------------------------------------ round trips
    def _kick(self) -> None:
        if self._task is None and not self._closed:
            self._task = self.loop.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while (self._takes or self._quotas or self._wants) and not self._closed:
                if self._down and not self._probing:
                    self._answer_locally(self._takes, self._quotas)
                    self._takes, self._quotas = [], []
                    self._drop_wants()
                    break
                await self._round()
        finally:
            self._task = None

    async def _round(self) -> None:
        takes, self._takes = self._takes[:MAX_BATCH], self._takes[MAX_BATCH:]
        quotas, self._quotas = self._quotas[:MAX_BATCH], self._quotas[MAX_BATCH:]
        wants, self._wants = self._wants, []
        now = self.loop.time() + self._clock_off

        # Requests: serve from leases refilled meanwhile, or reserve what is leased and wait.
        slot_of: dict[str, int] = {}
        blist: list[_Lease] = []
        groups: list[_Group] = []
        for req in takes:
            if req.fut.done():
                continue
            self._group(req, now, slot_of, blist, groups)
        nwaiting = len(blist)
        for lz in wants:
            if lz.key not in slot_of:
                slot_of[lz.key] = len(blist)
                blist.append(lz)
        lease_want = [self._net_want(lz, now) for lz in blist]
        if len(blist) > nwaiting:  # a lease refill with nothing to take or give is no reason to ask
            keep = [i for i in range(len(blist)) if i < nwaiting or lease_want[i] != 0]
            for i in range(nwaiting, len(blist)):
                if lease_want[i] == 0:
                    blist[i].queued = False
            blist = [blist[i] for i in keep]
            lease_want = [lease_want[i] for i in keep]

        # Quotas: one INCRBY per (key, period, day) for all its waiting requests.
        qgroups: dict[tuple[str, int, int, int], list[_Quota]] = {}
        for qr in quotas:
            if not qr.fut.done():
                qgroups.setdefault((qr.q.name, qr.period, qr.day, qr.q.limit), []).append(qr)
        if not blist and not qgroups:
            self._probing = False  # a probe that needed no round trip (abandoned): the next one probes
            return

        keys: list[str] = [lz.key for lz in blist]
        args: list[Any] = [len(blist), len(qgroups)]
        for lz, want in zip(blist, lease_want, strict=True):
            lz.queued = True
            if now >= lz.expires:
                lz.tokens = 0.0  # expired: given back by the net want
            lz.used = 0
            lz.fetched_at = now
            args += (lz.rate, lz.burst, want)
        args.append(len(groups))
        for g in groups:
            args.append(len(g.slots))
            args += [s + 1 for s in g.slots]
        p = self.prefix
        for (_, period, day, limit), reqs in qgroups.items():
            q = reqs[0].q
            keys.append(f"{p}quota:{q.plan_id}:{q.key_id}:{period}")
            keys.append(f"{p}usage:{q.plan_id}:{q.key_id}:{day}")
            args += (limit, len(reqs), _quota_expire_at(q.period, q.offset, period), usage_expire_at(day))

        try:
            self.round_trips += 1
            async with asyncio.timeout(self.timeout):
                res = await _LIMITS(self.client, keys, args)
            nb, ng = len(blist), len(groups)
            if len(res) != 2 * nb + ng + 2 * len(qgroups):
                raise RedisError(f"limits script answered {len(res)} values")
        except asyncio.CancelledError:
            self._unqueue(blist)
            self._answer_locally([g.req for g in groups], [r for rs in qgroups.values() for r in rs])
            raise
        except Exception as ex:  # any failure of the round trip: timeout, connection, error reply
            self._mark_down(ex)
            self._unqueue(blist)
            self._answer_locally([g.req for g in groups], [r for rs in qgroups.values() for r in rs])
            return
        self._mark_up()
        self._settle(now, blist, groups, qgroups, res)

    def _group(
        self, req: _Take, now: float, slot_of: dict[str, int], blist: list[_Lease], groups: list[_Group]
    ) -> None:
        reserved: list[_Lease] = []
        levels: list[int] = []
        short: list[_Lease] = []
        for level, b in enumerate(req.buckets):
            lz = self._lease(b)
            if lz in reserved or lz in short:
                continue  # the same bucket twice: one token
            if lz.tokens >= 1.0 and now < lz.expires:
                reserved.append(lz)
            elif not (b.rate > 0.0 and b.burst >= 1.0):
                req.fut.set_result((level, _INF))
                return
            elif lz.empty_until > now:
                req.fut.set_result((level, lz.empty_until - now))
                return
            else:
                levels.append(level)
                short.append(lz)
        for lz in reserved:
            lz.tokens -= 1.0
            if lz.tokens < lz.low and not lz.queued:
                self._prefetch(lz)
        if not short:
            req.fut.set_result(_ADMIT)
            return
        slots = []
        for lz in short:
            s = slot_of.get(lz.key)
            if s is None:
                s = slot_of[lz.key] = len(blist)
                blist.append(lz)
            slots.append(s)
        groups.append(_Group(req, reserved, levels, slots))

    def _settle(
        self,
        now: float,
        blist: list[_Lease],
        groups: list[_Group],
        qgroups: dict[tuple[str, int, int, int], list[_Quota]],
        res: list[Any],
    ) -> None:
        nb, ng = len(blist), len(groups)
        for i, lz in enumerate(blist):
            lz.queued = False
            grant = int(res[i])
            wait_ms = int(res[nb + i])
            if grant > 0:
                if now >= lz.expires:
                    lz.tokens = 0.0
                lz.tokens += grant
                lz.expires = now + self.lease_s
                lz.low = lz.tokens / 2.0
                self._leased.add(lz)
            lz.empty_until = now + wait_ms / 1000 if wait_ms > 0 else 0.0
        if self._leased and self._sweeper is None:
            self._sweeper = self.loop.call_later(self.lease_s, self._sweep)
        for k, g in enumerate(groups):
            failed = int(res[2 * nb + k])
            fut = g.req.fut
            if failed == 0:
                if not fut.done():
                    fut.set_result(_ADMIT)
                    continue
                # Admitted but abandoned: its tokens serve the next requests (when leasing).
                for lz in g.reserved:
                    lz.tokens += 1.0
                if self.lease_s > 0:
                    for s in g.slots:
                        blist[s].tokens += 1.0
                continue
            for lz in g.reserved:
                lz.tokens += 1.0
            if not fut.done():
                slot = failed - 1
                level = g.levels[g.slots.index(slot)]
                wait = int(res[nb + slot]) / 1000
                fut.set_result((level, wait if wait > 0 else 0.001))
        o = 2 * nb + ng
        for j, ((name, period, _, limit), reqs) in enumerate(qgroups.items()):
            granted = int(res[o + 2 * j])
            count = int(res[o + 2 * j + 1])
            first = count - granted  # count before this batch's requests
            for n, qr in enumerate(reqs):
                if qr.fut.done():
                    continue
                qr.fut.set_result(limit - (first + n + 1) if n < granted else QUOTA_EXCEEDED)
            if count >= limit:
                if len(self._exhausted) >= MAX_LEASES:
                    self._exhausted.clear()
                self._exhausted[name] = (period, limit)

    # ------------------------------------------------------------------ failures
    def _answer_locally(self, takes: list[_Take], quotas: list[_Quota]) -> None:
        now = self.loop.time() + self._clock_off
        for req in takes:
            if not req.fut.done():
                self.fallbacks += 1
                req.fut.set_result(self.local.take(Levels(req.buckets), now))
        for qr in quotas:
            if not qr.fut.done():
                self.fallbacks += 1
                qr.fut.set_result(qr.q.limit if qr.q.fail_open else QUOTA_UNAVAILABLE)

    def _unqueue(self, blist: list[_Lease]) -> None:
        for lz in blist:
            lz.queued = False

    def _drop_wants(self) -> None:
        self._unqueue(self._wants)
        self._wants = []

    def _mark_down(self, ex: BaseException) -> None:
        if not self._down:
            log.warning(
                "redis unreachable (%s: %s): limits fall back to this node's table, quotas to each "
                "plan's fail_open; retrying in %.1fs",
                type(ex).__name__,
                ex,
                self.retry_s,
            )
        self._down = True
        self._probing = False
        self._retry_at = time.monotonic() + self.retry_s
        for lz in self._leases.values():
            lz.tokens = 0.0
            lz.empty_until = 0.0
        self._leased.clear()
        self._drop_wants()

    def _mark_up(self) -> None:
        if self._down:
            log.info("redis reachable again: limits and quotas are shared again")
            self._down = False
            self._probing = False

    @property
    def down(self) -> bool:
        """True while decisions come from the local table."""
        return self._down

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop using Redis: answer waiting requests locally, then (in the background) give
        unused leased tokens back and close the connections. ``await aclose()`` to wait."""
        if self._closed:
            return
        self._closed = True
        self._answer_locally(self._takes, self._quotas)
        self._takes, self._quotas = [], []
        self._drop_wants()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            self._closing = self.loop.create_task(self._shutdown())
        else:
            self.loop.run_until_complete(self._shutdown())

    async def aclose(self) -> None:
        self.close()
        if self._closing is not None:
            await self._closing

    async def _shutdown(self) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._usage_timer is not None:
            self._usage_timer.cancel()
            self._usage_timer = None
        try:
            if not self._down:
                await self._give_back()
                await self._flush_usage()
        finally:
            await self.client.aclose()

    async def _give_back(self) -> None:
        """Return unexpired leased tokens to Redis (best effort, one round trip, under the deadline)."""
        now = self.loop.time() + self._clock_off
        back = [lz for lz in self._leases.values() if lz.tokens >= 1.0 and now < lz.expires]
        if not back:
            return
        keys = [lz.key for lz in back]
        args: list[Any] = [len(back), 0]
        for lz in back:
            args += (lz.rate, lz.burst, -math.floor(lz.tokens))
            lz.tokens = 0.0
        args.append(0)
        try:
            async with asyncio.timeout(self.timeout):
                await _LIMITS(self.client, keys, args)
        except Exception as ex:  # best effort: the tokens are lost, as if spent
            log.debug("could not return leased tokens: %s", ex)

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
refilled in the background when it falls below half or half its window has passed (a refill
renews the lease's window), so a steady stream of requests does not wait.

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
A quota is the counter ``{prefix}quota:{plan}:{key}:{period}`` (expiring a day after the period
ends), and every unit counted there is also counted in the day's usage
``{prefix}usage:{plan}:{key}:{day}`` (expiring ``USAGE_TTL_DAYS`` after the day, the layout
``RedisStore.usage`` reads). The same script counts them, never past the limit.

Each worker keeps a *quota lease* per key, like the token leases: units reserved in Redis in
one script call (counted at once, atomically against the limit, in the counter and in the
day's usage) and spent locally by ``quota()``, synchronously (no I/O, no allocation). A lease
belongs to one period, day and limit; a request for another one gives the unspent units back
first. A waiting request is served from the lease if a round trip in flight refilled it, else
counted in Redis with the other waiting requests for that key (one ``INCRBY``), and the lease
is refilled in the same call. Refills happen in the background when the lease falls below half.

Lease size: about twice the worker's demand per lease window, none below one request per
window (a trickle is counted per request, as without leases), at most ``limit / 100``, and at
most 1/16 of what the limit leaves after the call's requests (at least 1): near exhaustion the
batch shrinks to one unit. Unspent units are given back (the counter and the day's usage
decremented) when the lease expires, ``lease_ms`` after its last refill (the sweep, or the next
round trip for that key, re-sizes it to the demand: an idle worker gives all back), and at close.

Accuracy: never more admitted than the limit, in any case: a unit is admitted only after Redis
counted it, and a unit given back is no longer spendable (its local count is dropped before the
round trip; a round trip that fails leaves its units counted, as if spent). A request may be
refused early only while other workers or nodes hold unspent units: at most workers x nodes x
the batch (itself at most 1 % of the limit, and 1/16 of what is left), while they hold them
(an idle worker gives them back within two lease windows) and until the refused worker asks
Redis again: once Redis reports a quota used up, a worker refuses it locally and asks again
after ``max(lease_ms, 50 ms)``, doubling up to 1 s while it stays used up (units given back by
others reopen it). Usage read back (``GetUsage``) runs ahead by the units leased and not spent
until they are given back (at most workers x nodes x the batch). ``lease_ms: 0`` leases nothing:
every request is counted in Redis (batched per key). Measured
(tests/state/test_redis_limiter.py, 3 processes at 5x a 3000-request quota, lease_ms 50):
exactly 3000 admitted, 99-100 % of the answers synchronous, about 80 round trips per process.

Failures
--------
Any failure of a round trip (timeout after ``timeout_ms``, refused, reset, an error reply) marks
Redis down for ``retry_seconds``: the requests of that round trip and every request until then
are answered by ``local`` (the node's shared-memory table: exact across the node's workers) for
buckets; quotas admit without counting (``fail_open``, answering ``q.limit`` as remaining) or
answer ``QUOTA_UNAVAILABLE``, once the worker's quota lease is spent (leased units are counted:
spent as usual, the unspent ones given back once Redis answers again; a failed round trip
leaves the units it leased or gave back counted). ``fallbacks`` counts those answers. While
down, no request waits on Redis; after ``retry_seconds`` one request probes it (waiting at most
``timeout_ms``) and the next answers come from Redis again if it answered. Transitions are
logged once each, on the ``fastgw.redis`` logger. A request waits at most about two deadlines
(the round trip in flight and its own).
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
QUOTA_LEASE_SHARE = 100  # a quota lease holds at most limit / 100 units (1 %)
RECHECK_MIN = 0.05  # a quota seen used up is asked again after this (at least the lease window),
RECHECK_MAX = 1.0  # doubling up to this while it stays used up (units given back reopen it)

# KEYS: nb bucket hashes, then (quota counter, usage counter) x nq.
# ARGV: nb, nq; (rate, burst, want) x nb; ngroups, (n, i1..in) x ngroups;
#       (limit, n, want, quota expire-at, usage expire-at) x nq.
# Bucket want < 0: give -want tokens back (before the groups); want > 0: lease up to want
# tokens (after the groups). Quota want < 0: give -want units back (the counter and the day's
# usage, before the n requests); want > 0: lease up to want units after the n requests, at
# most 1/16 of what is then left (at least 1: the batch shrinks to 1 near the limit).
# Returns: grant x nb, wait-ms x nb (0 when a token is available), group result x ngroups
# (0 admitted, else the index of the first bucket short of a token), (granted requests,
# leased units, count) x nq.
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
  local limit, n, w = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local qexp, uexp = ARGV[a + 3], ARGV[a + 4]
  a = a + 5
  local c = tonumber(redis.call('GET', qk)) or 0
  if w < 0 then
    local b = -w
    if b > c then b = c end
    if b > 0 then
      c = redis.call('DECRBY', qk, b)
      local u = tonumber(redis.call('GET', uk)) or 0
      if b > u then b = u end
      if b > 0 then redis.call('DECRBY', uk, b) end
    end
  end
  local g = limit - c
  if g > n then g = n end
  if g < 0 then g = 0 end
  local l = 0
  if w > 0 then
    local left = limit - c - g
    l = math.floor(left / 16)
    if l < 1 then l = 1 end
    if l > w then l = w end
    if l > left then l = left end
    if l < 0 then l = 0 end
  end
  if g + l > 0 then
    c = redis.call('INCRBY', qk, g + l)
    redis.call('EXPIREAT', qk, qexp)
    redis.call('INCRBY', uk, g + l)
    redis.call('EXPIREAT', uk, uexp)
  end
  out[o + 3 * j - 2], out[o + 3 * j - 1], out[o + 3 * j] = g, l, c
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
        "refresh",
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
        self.refresh = 0.0  # or from this time on (half the lease window: it never lapses in use)
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


class _QLease:
    """A worker's leased quota units of one key: reserved in Redis (counted in the period's
    counter and the day's usage), spent locally, the unspent ones given back."""

    __slots__ = (
        "cap",
        "day",
        "expires",
        "fetched_at",
        "key",
        "limit",
        "low",
        "name",
        "period",
        "pos",
        "q",
        "queued",
        "ukey",
        "units",
        "used",
    )

    def __init__(self, q: QuotaSpec) -> None:
        self.q = q
        self.name = q.name
        self.key = ""  # the period's quota counter in Redis
        self.ukey = ""  # the day's usage counter
        self.period = -1
        self.day = -1
        self.limit = -1
        self.cap = 1  # most units one fetch may lease
        self.units = 0  # reserved in Redis, not spent yet (valid until given back)
        self.pos = 0  # the counter's value at the last spent unit, as this worker sees it
        self.low = 0.0  # refill in the background below this
        self.expires = 0.0  # unspent units go back after this (loop clock)
        self.queued = False  # in the next or the current round trip
        self.used = 0  # demand since the last fetch
        self.fetched_at = 0.0


class _QEntry:
    """One quota counter in a round trip: its waiting requests, and the lease fetching for it."""

    __slots__ = ("day", "key", "lease", "limit", "name", "period", "q", "reqs", "ukey", "want")

    def __init__(self, q: QuotaSpec, period: int, day: int, limit: int, key: str, ukey: str) -> None:
        self.q = q
        self.name = q.name
        self.period = period
        self.day = day
        self.limit = limit
        self.key = key
        self.ukey = ukey
        self.reqs: list[_Quota] = []
        self.lease: _QLease | None = None
        self.want = 0


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
        self._qleases: dict[str, _QLease] = {}  # quota name -> lease
        # quota name -> (period, limit, ask again at (loop clock), interval): seen used up
        self._exhausted: dict[str, tuple[int, int, float, float]] = {}
        # Waiting work
        self._takes: list[_Take] = []
        self._quotas: list[_Quota] = []
        self._wants: list[_Lease] = []
        self._qwants: list[_QLease] = []
        self._qbacks: list[tuple[str, str, int]] = []  # (quota key, usage key, units) to give back
        self._leased: set[_Lease] = set()  # leases holding tokens, swept when they expire
        self._qleased: set[_QLease] = set()  # quota leases holding units, swept likewise
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
                if (lz.tokens < lz.low or now >= lz.refresh) and not lz.queued:
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
            if (lz.tokens < lz.low or now >= lz.refresh) and not lz.queued:
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
        """Every lease window while leases exist: give back leased tokens and quota units that
        expired unused (an idle worker must not strand tokens or units that others need)."""
        self._sweeper = None
        now = self.loop.time() + self._clock_off
        for lz in list(self._leased):
            if lz.tokens < 1.0:
                self._leased.discard(lz)
            elif now >= lz.expires and not lz.queued and not self._down and not self._closed:
                self._leased.discard(lz)
                self._prefetch(lz)
        qnow = self.loop.time()
        for qz in list(self._qleased):
            if qz.units <= 0:
                self._qleased.discard(qz)
            elif qnow >= qz.expires and not qz.queued and not self._down and not self._closed:
                # Units are kept while Redis is down (they are counted): given back once it is up.
                self._qleased.discard(qz)
                self._qprefetch(qz)
        self._arm_sweeper()

    def _arm_sweeper(self) -> None:
        if self._sweeper is None and (self._leased or self._qleased) and not self._closed:
            self._sweeper = self.loop.call_later(self.lease_s, self._sweep)

    # ------------------------------------------------------------------ quotas
    def quota(self, q: QuotaSpec, period: int, day: int) -> int | asyncio.Future[Any]:
        qz = self._qleases.get(q.name)
        if qz is not None and qz.units > 0 and qz.period == period and qz.day == day and qz.limit == q.limit:
            # A leased unit: already counted in Redis, spent here (no I/O, no allocation).
            qz.units -= 1
            qz.used += 1
            qz.pos += 1
            if qz.units < qz.low and not qz.queued:
                self._qprefetch(qz)
            return qz.limit - qz.pos
        return self._quota_slow(q, period, day)

    def _quota_slow(self, q: QuotaSpec, period: int, day: int) -> int | asyncio.Future[Any]:
        used_up = self._exhausted.get(q.name)
        if (
            used_up is not None
            and used_up[0] == period
            and used_up[1] == q.limit
            and self.loop.time() < used_up[2]
        ):
            return QUOTA_EXCEEDED
        if self._closed or (self._down and (self._probing or time.monotonic() < self._retry_at)):
            self.fallbacks += 1
            return q.limit if q.fail_open else QUOTA_UNAVAILABLE
        if self.lease_s > 0.0:
            self._qlease(q, period, day).used += 1
        if self._down:
            self._probing = True
        fut = self.loop.create_future()
        self._quotas.append(_Quota(fut, q, period, day))
        self._kick()
        return fut

    def _qlease(self, q: QuotaSpec, period: int, day: int) -> _QLease:
        """The lease of ``q``, for this period, day and limit: a lease held for others gives its
        units back first (a new period or day, or a changed limit)."""
        qz = self._qleases.get(q.name)
        if qz is None:
            if len(self._qleases) >= MAX_LEASES:
                self._prune_qleases()
            qz = self._qleases[q.name] = _QLease(q)
        if qz.period != period or qz.day != day or qz.limit != q.limit:
            if qz.units > 0:
                self._qbacks.append((qz.key, qz.ukey, qz.units))
                qz.units = 0
                self._kick()
            p = self.prefix
            qz.q = q
            qz.period, qz.day, qz.limit = period, day, q.limit
            qz.key = f"{p}quota:{q.plan_id}:{q.key_id}:{period}"
            qz.ukey = f"{p}usage:{q.plan_id}:{q.key_id}:{day}"
            qz.cap = max(1, q.limit // QUOTA_LEASE_SHARE)
            qz.low = 0.0
        return qz

    def _prune_qleases(self) -> None:
        for name, qz in list(self._qleases.items()):
            if not qz.queued:
                if qz.units > 0:
                    self._qbacks.append((qz.key, qz.ukey, qz.units))
                    qz.units = 0
                    self._kick()
                self._qleased.discard(qz)
                del self._qleases[name]

    def _qprefetch(self, qz: _QLease) -> None:
        if self._down:
            return  # units leased before the outage are spent; refilled once Redis is back
        qz.queued = True
        self._qwants.append(qz)
        self._kick()

    def _qwant(self, qz: _QLease, now: float) -> int:
        """Units to lease (> 0) or give back (< 0) for ``qz`` now: hold about twice the worker's
        demand per lease window, none below one request per window (no lease for a trickle)."""
        if self.lease_s <= 0.0:
            return -qz.units
        elapsed = max(now - qz.fetched_at, self.lease_s)
        demand = qz.used * self.lease_s / elapsed
        target = min(qz.cap, int(2.0 * demand + 0.5)) if demand >= 1.0 else 0
        return target - qz.units

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
            while (
                self._takes or self._quotas or self._wants or self._qwants or self._qbacks
            ) and not self._closed:
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
                    blist[i].refresh = blist[i].expires  # enough for now: no refresh until it lapses
            blist = [blist[i] for i in keep]
            lease_want = [lease_want[i] for i in keep]

        qbacks, self._qbacks = self._qbacks[:MAX_BATCH], self._qbacks[MAX_BATCH:]
        qwants, self._qwants = self._qwants[:MAX_BATCH], self._qwants[MAX_BATCH:]
        entries = self._quota_entries(quotas, qwants)
        if not blist and not entries and not qbacks:
            self._probing = False  # a probe that needed no round trip (abandoned): the next one probes
            return

        keys: list[str] = [lz.key for lz in blist]
        args: list[Any] = [len(blist), len(qbacks) + len(entries)]
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
        for qkey, ukey, units in qbacks:  # stale leases: given back before anything is counted
            keys += (qkey, ukey)
            args += (0, 0, -units, 0, 0)
        for e in entries:
            q = e.q
            keys += (e.key, e.ukey)
            args += (
                e.limit,
                len(e.reqs),
                e.want,
                _quota_expire_at(q.period, q.offset, e.period),
                usage_expire_at(e.day),
            )

        try:
            self.round_trips += 1
            async with asyncio.timeout(self.timeout):
                res = await _LIMITS(self.client, keys, args)
            nb, ng = len(blist), len(groups)
            if len(res) != 2 * nb + ng + 3 * (len(qbacks) + len(entries)):
                raise RedisError(f"limits script answered {len(res)} values")
        except asyncio.CancelledError:
            self._unqueue(blist)
            self._quota_failed(entries, qbacks)
            self._answer_locally([g.req for g in groups], [r for e in entries for r in e.reqs])
            raise
        except Exception as ex:  # any failure of the round trip: timeout, connection, error reply
            self._mark_down(ex)
            self._unqueue(blist)
            self._quota_failed(entries, qbacks)
            self._answer_locally([g.req for g in groups], [r for e in entries for r in e.reqs])
            return
        self._mark_up()
        self._settle(now, blist, groups, res)
        self._settle_quotas(entries, res[2 * len(blist) + len(groups) + 3 * len(qbacks) :])

    def _quota_entries(self, quotas: list[_Quota], qwants: list[_QLease]) -> list[_QEntry]:
        """The quota part of a round trip: waiting requests served from a lease refilled
        meanwhile, the others grouped per (key, period, day, limit), each group with its key's
        lease fetch (or give-back); then the leases to refill or give back on their own."""
        now = self.loop.time()
        entries: dict[tuple[str, int, int, int], _QEntry] = {}
        p = self.prefix
        for qr in quotas:
            if qr.fut.done():
                continue
            q = qr.q
            qz = self._qleases.get(q.name)
            if qz is not None and (qz.period != qr.period or qz.day != qr.day or qz.limit != q.limit):
                qz = None
            if qz is not None and qz.units > 0:
                qr.fut.set_result(self.quota(q, qr.period, qr.day))
                continue
            k = (q.name, qr.period, qr.day, q.limit)
            e = entries.get(k)
            if e is None:
                e = entries[k] = _QEntry(
                    q,
                    qr.period,
                    qr.day,
                    q.limit,
                    f"{p}quota:{q.plan_id}:{q.key_id}:{qr.period}",
                    f"{p}usage:{q.plan_id}:{q.key_id}:{qr.day}",
                )
                e.lease = qz
            e.reqs.append(qr)
        for qz in qwants:
            k = (qz.name, qz.period, qz.day, qz.limit)
            e = entries.get(k)
            if e is None:
                e = entries[k] = _QEntry(qz.q, qz.period, qz.day, qz.limit, qz.key, qz.ukey)
            e.lease = qz
        out: list[_QEntry] = []
        for e in entries.values():
            qz = e.lease
            if qz is not None:
                e.want = self._qwant(qz, now)
                if e.want == 0 and not e.reqs:  # nothing to fetch nor give back: keep them
                    qz.queued = False
                    qz.used = 0
                    qz.fetched_at = now
                    if qz.units > 0:
                        qz.expires = now + self.lease_s
                        self._qleased.add(qz)
                        self._arm_sweeper()
                    continue
                qz.queued = True
                if e.want < 0:
                    qz.units += e.want  # given back now: never spent meanwhile
                qz.used = 0
                qz.fetched_at = now
            out.append(e)
        return out

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

    def _settle(self, now: float, blist: list[_Lease], groups: list[_Group], res: list[Any]) -> None:
        nb = len(blist)
        for i, lz in enumerate(blist):
            lz.queued = False
            grant = int(res[i])
            wait_ms = int(res[nb + i])
            if grant > 0:
                if now >= lz.expires:
                    lz.tokens = 0.0
                lz.tokens += grant
                lz.expires = now + self.lease_s
                lz.refresh = now + self.lease_s / 2.0
                lz.low = lz.tokens / 2.0
                self._leased.add(lz)
            else:
                lz.refresh = lz.expires  # nothing to add: no time-based refill before it lapses
            lz.empty_until = now + wait_ms / 1000 if wait_ms > 0 else 0.0
        self._arm_sweeper()
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

    def _settle_quotas(self, entries: list[_QEntry], res: list[Any]) -> None:
        now = self.loop.time()
        for j, e in enumerate(entries):
            granted, leased, count = int(res[3 * j]), int(res[3 * j + 1]), int(res[3 * j + 2])
            first = count - granted - leased  # the counter before this entry's requests
            limit = e.limit
            for n, qr in enumerate(e.reqs):
                if not qr.fut.done():
                    qr.fut.set_result(limit - (first + n + 1) if n < granted else QUOTA_EXCEEDED)
                elif n < granted and e.lease is not None:
                    leased += 1  # admitted but abandoned: its unit serves the next request
            qz = e.lease
            if qz is not None:
                qz.queued = False
                if qz.key == e.key and qz.ukey == e.ukey and qz.limit == limit:
                    qz.units += leased
                    qz.pos = count - qz.units  # the units held count as the last ones counted
                    qz.low = qz.units / 2.0
                    if qz.units > 0:
                        qz.expires = now + self.lease_s
                        self._qleased.add(qz)
                elif leased > 0:  # the lease moved on (new period, day or limit) meanwhile
                    self._qbacks.append((e.key, e.ukey, leased))
            if count >= limit:
                old = self._exhausted.get(e.name)
                wait = max(self.lease_s, RECHECK_MIN)
                if old is not None and old[0] == e.period and old[1] == limit:
                    wait = min(2.0 * old[3], RECHECK_MAX)
                elif len(self._exhausted) >= MAX_LEASES:
                    self._exhausted.clear()
                self._exhausted[e.name] = (e.period, limit, now + wait, wait)
            else:
                self._exhausted.pop(e.name, None)
        self._arm_sweeper()

    def _quota_failed(self, entries: list[_QEntry], qbacks: list[tuple[str, str, int]]) -> None:
        """A round trip failed (or was cancelled): whether Redis ran it is unknown, so units it
        may have leased are not used and units it was to give back are not taken back (either
        way they stay counted: never more admitted than the limit)."""
        for e in entries:
            if e.lease is not None:
                e.lease.queued = False
        if qbacks or any(e.want != 0 for e in entries):
            log.debug("quota units may stay counted: %d give-backs, %d leases", len(qbacks), len(entries))

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
        for qz in self._qwants:
            qz.queued = False
        self._qwants = []

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
        # Quota leases keep their units: counted in Redis, they are still spent exactly, and
        # given back once Redis answers again.

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
        """Return unexpired leased tokens and every unspent quota unit to Redis (best effort,
        one round trip, under the deadline)."""
        now = self.loop.time() + self._clock_off
        back = [lz for lz in self._leases.values() if lz.tokens >= 1.0 and now < lz.expires]
        qbacks, self._qbacks = self._qbacks, []
        for qz in self._qleases.values():
            if qz.units > 0:
                qbacks.append((qz.key, qz.ukey, qz.units))
                qz.units = 0
        self._qleased.clear()
        if not back and not qbacks:
            return
        keys = [lz.key for lz in back]
        args: list[Any] = [len(back), len(qbacks)]
        for lz in back:
            args += (lz.rate, lz.burst, -math.floor(lz.tokens))
            lz.tokens = 0.0
        args.append(0)
        for qkey, ukey, units in qbacks:
            keys += (qkey, ukey)
            args += (0, 0, -units, 0, 0)
        try:
            async with asyncio.timeout(self.timeout):
                await _LIMITS(self.client, keys, args)
        except Exception as ex:  # best effort: the tokens and units are lost, as if spent
            log.debug("could not return leased tokens and quota units: %s", ex)

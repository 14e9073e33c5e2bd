"""Limiters: where token buckets and quota counters live.

``LocalLimiter`` keeps them in the node's shared-memory table (``fastgw_core.limits``), exact
across the node's workers. ``redis_limiter.RedisLimiter`` keeps them in Redis, shared by several
nodes, and falls back to the local table while Redis is unreachable.

Buckets and quotas are described by specs built once when a config or a state version is
loaded (never per request); a request hands the limiter the specs of its levels, in AWS's order
(per-key per-method, per-key, per-route, stage, gateway). Both calls either answer at once or,
for the Redis limiter when its local lease is spent, return an ``asyncio.Future`` of the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastgw_core.limits import SharedTable, key_hash

# quota() answers: remaining requests (>= 0) when admitted, or one of these.
QUOTA_EXCEEDED = -1
QUOTA_UNAVAILABLE = -2  # the shared store is down and the plan fails closed


class BucketSpec:
    """One token bucket: a stable name (shared across workers and nodes) and its limits."""

    __slots__ = ("burst", "name", "rate", "slot")

    def __init__(self, name: str, rate: float, burst: float, table: SharedTable | None) -> None:
        self.name = name
        self.rate = float(rate)
        self.burst = float(burst)
        self.slot = table.find(key_hash(name)) if table is not None else -1

    def __repr__(self) -> str:
        return f"BucketSpec({self.name!r}, rate={self.rate}, burst={self.burst})"


class Levels:
    """The buckets of one request kind (route, or key plan + route), in AWS's order, with their
    slots and limits as lists ready for ``SharedTable.take_many`` (built once, reused)."""

    __slots__ = ("buckets", "bursts", "rates", "single", "slots")

    def __init__(self, buckets: list[BucketSpec]) -> None:
        self.buckets = buckets
        self.slots = [b.slot for b in buckets]
        self.rates = [b.rate for b in buckets]
        self.bursts = [b.burst for b in buckets]
        self.single = buckets[0] if len(buckets) == 1 else None


class QuotaSpec:
    """A key's quota in a usage plan, and its daily usage counter."""

    __slots__ = (
        "day_slot",
        "fail_open",
        "key_id",
        "limit",
        "name",
        "offset",
        "period",
        "period_end_ts",
        "period_start",
        "plan_id",
        "slot",
    )

    def __init__(
        self,
        plan_id: str,
        key_id: str,
        limit: int,
        period: str,
        offset: int,
        fail_open: bool,
        table: SharedTable | None,
    ) -> None:
        self.plan_id = plan_id
        self.key_id = key_id
        self.limit = limit
        self.period = period
        self.offset = offset
        self.fail_open = fail_open
        # The current period (UTC day number it started on), recomputed when it ends.
        self.period_start = 0
        self.period_end_ts = 0.0
        self.name = f"quota:{plan_id}:{key_id}"
        self.slot = table.find(key_hash(self.name)) if table is not None else -1
        self.day_slot = table.find(key_hash(f"usage:{plan_id}:{key_id}")) if table is not None else -1


class Limiter:
    """Interface; see the module docstring."""

    fallbacks = 0  # times a shared-store failure made a decision fall back to local state

    def take(self, levels: Levels, now: float) -> tuple[int, float] | asyncio.Future[Any]:
        """Take one token from every bucket or none: (-1, 0.0) admitted, else (level, wait seconds)."""
        raise NotImplementedError

    def quota(self, q: QuotaSpec, period: int, day: int) -> int | asyncio.Future[Any]:
        """Count one request against ``q`` in the period starting on day ``period`` (and in ``day``'s
        usage): remaining (>= 0), ``QUOTA_EXCEEDED`` or ``QUOTA_UNAVAILABLE``."""
        raise NotImplementedError

    def count_usage(self, q: QuotaSpec, day: int) -> None:
        """Count one request in ``day``'s usage of a key in a plan without a quota."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and return unused leases if possible."""

    async def aclose(self) -> None:
        self.close()


class LocalLimiter(Limiter):
    """The embedded backend: the node's shared-memory table, exact across its workers.

    The gate calls the table itself on this backend (buckets, quotas and usage inline, the hot
    path); ``take`` serves the Redis limiter's fallback to node-local limits."""

    def __init__(self, table: SharedTable) -> None:
        self.table = table

    def take(self, levels: Levels, now: float) -> tuple[int, float]:
        b = levels.single
        if b is not None:
            wait = self.table.take(b.slot, b.rate, b.burst, now)
            return (-1, 0.0) if wait == 0.0 else (0, wait)
        return self.table.take_many(levels.slots, levels.rates, levels.bursts, now)

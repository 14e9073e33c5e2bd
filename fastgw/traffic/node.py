"""Wiring of traffic management into a node: shared table, store, limiter, polling, flushing.

The supervisor calls ``create_table`` before it forks (the table is an anonymous shared mapping
the workers inherit), ``prepare_state`` to upsert the config's keys and plans into the store and
seed the quota counters from the usage the store recorded (so a restart loses nothing), and
starts the admin process, whose ``usage_flusher`` copies the live daily counters from shared
memory into the SQLite file every second. Each worker builds its ``Gate`` with ``make_gate``
and polls the store's version with ``StatePoller``.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import time
from collections.abc import Awaitable, Callable

from fastgw.config.compile import RuntimeSnapshot
from fastgw.config.model import GatewayConfig, StateSettings
from fastgw.state.model import StateData
from fastgw.state.periods import day_number, period_start
from fastgw.state.store import POLL_SECONDS, Store, StoreError
from fastgw.traffic.gate import Gate
from fastgw.traffic.limiter import Limiter, LocalLimiter, QuotaSpec
from fastgw_core.limits import SharedTable, table_bytes

log = logging.getLogger("fastgw.traffic")


def create_table(settings: StateSettings, shared: bool = True) -> SharedTable:
    """The node's bucket/counter table: shared memory when the node forks workers."""
    n = 1 << max(6, (settings.shm_slots - 1).bit_length())
    buf: mmap.mmap | bytearray = mmap.mmap(-1, table_bytes(n)) if shared else bytearray(table_bytes(n))
    return SharedTable(buf, n)


def make_store(settings: StateSettings) -> Store:
    if settings.backend == "redis":
        from fastgw.state.redis_store import RedisStore

        return RedisStore(settings.redis)
    from fastgw.state.sqlite_store import SqliteStore

    return SqliteStore(settings.path)


def make_limiter(settings: StateSettings, table: SharedTable, loop: asyncio.AbstractEventLoop) -> Limiter:
    local = LocalLimiter(table)
    if settings.backend == "redis":
        from fastgw.traffic.redis_limiter import RedisLimiter

        return RedisLimiter(settings.redis, loop, local)
    return local


def make_gate(
    snapshot: RuntimeSnapshot, table: SharedTable, limiter: Limiter, state: StateData | None = None
) -> Gate:
    """A worker's gate for ``snapshot``, with the keys and plans of ``state`` (built once)."""
    gate = Gate(table, limiter)
    if state is not None:
        gate.state = state
    gate.bind(snapshot)
    return gate


def quota_specs(data: StateData, table: SharedTable, with_unquoted: bool = False) -> list[QuotaSpec]:
    """Every (plan with a quota, member key) pair with its slots in the table; ``with_unquoted``
    adds the pairs of plans without a quota (their daily usage is counted too)."""
    specs = []
    for plan in data.plans:
        q = plan.quota
        if q is None and not with_unquoted:
            continue
        for key_id in data.plan_keys.get(plan.id, ()):
            if q is None:
                specs.append(QuotaSpec(plan.id, key_id, 0, "DAY", 0, plan.fail_open, table))
            else:
                specs.append(QuotaSpec(plan.id, key_id, q.limit, q.period, q.offset, plan.fail_open, table))
    return specs


async def prepare_state(config: GatewayConfig, store: Store, table: SharedTable | None) -> StateData:
    """Upsert the config's keys and plans; seed the table's quota and daily counters."""
    from fastgw.state.sync import apply_config

    await store.open()
    await apply_config(store, config)
    data = await store.load()
    if table is not None and config.gateway.state.backend == "embedded":
        today = day_number(time.time())
        for spec in quota_specs(data, table):
            start = period_start(spec.period, spec.offset, today)
            used = await store.usage(spec.plan_id, [spec.key_id], start, today)
            days = used.get(spec.key_id, {})
            table.set_counter(spec.slot, start, sum(days.values()))
            table.set_counter(spec.day_slot, today, days.get(today, 0))
    return data


def usage_flusher(table: SharedTable) -> Callable[[Store], Callable[[], Awaitable[None]]]:
    """For the admin process: a coroutine function writing live daily counters to the store."""

    def factory(store: Store) -> Callable[[], Awaitable[None]]:
        written: dict[tuple[str, str, int], int] = {}
        specs: list[QuotaSpec] = []
        built_for: int | None = None  # the store version the specs were built for

        async def flush() -> None:
            nonlocal specs, built_for
            if await store.version() != built_for:  # keys or plans changed: rebuild the pairs
                data = await store.load()
                specs = quota_specs(data, table, with_unquoted=True)
                built_for = data.version
            for spec in specs:
                day, count = table.counter(spec.day_slot)
                if day and written.get((spec.plan_id, spec.key_id, day)) != count:
                    await store.set_usage(spec.plan_id, spec.key_id, day, count)
                    written[(spec.plan_id, spec.key_id, day)] = count

        return flush

    return factory


class StatePoller:
    """Reloads a worker's keys and plans when the store's version changes (every 0.5 s)."""

    def __init__(
        self,
        gate: Gate,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_state: Callable[[StateData], None] | None = None,
    ) -> None:
        self.gate = gate
        self.store = store
        self.loop = loop
        #: Called with every newly loaded state (the worker recompiles when stage pointers move).
        self.on_state = on_state
        self.version: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())

    async def poll_once(self) -> None:
        version = await self.store.version()
        if version != self.version:
            data = await self.store.load()
            self.gate.set_state(data)
            self.version = data.version
            # Stage cache invalidations from the admin API (fastgw.pipeline.caching).
            from fastgw.pipeline.caching import caches

            caches().apply_purges(data.cache_purges, self.loop)
            if self.on_state is not None:
                self.on_state(data)

    async def run(self) -> None:
        await self.store.open()
        while True:
            try:
                await self.poll_once()
                if self.failures:
                    log.info("state store reachable again")
                self.failures = 0
            except StoreError as ex:
                if not self.failures:
                    log.warning("state store unreachable; keeping the last keys and plans: %s", ex)
                self.failures += 1
            except Exception:
                log.exception("state poll failed")
            await asyncio.sleep(POLL_SECONDS)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        await self.store.close()

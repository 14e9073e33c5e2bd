"""The traffic gate of a worker: API keys, usage plans, throttling and quotas for each request.

Built once per config snapshot and per state version (``bind`` / ``set_state``), never per
request: every route gets its list of token buckets (route or stage default, then gateway),
and every API key its plan bindings per API stage. A request then costs one key hash (only on
routes that require a key) and one call into the limiter.

Levels, in AWS's order: the key's usage-plan limit (a per-method override inside the plan
replaces the plan's own limit for that method), the route's stage limit (``route_throttle``, else
the stage default; each route has its own bucket, as AWS's default route/method throttling),
then the gateway-wide limit. One token is taken from every level or from none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from fastgw.config.model import ThrottleSettings
from fastgw.server import replies
from fastgw.server.replies import LocalReply
from fastgw.state.model import StateData
from fastgw.state.periods import DAY_SECONDS, day_number, period_end, period_start
from fastgw.state.sync import config_state
from fastgw.traffic.limiter import (
    QUOTA_EXCEEDED,
    QUOTA_UNAVAILABLE,
    BucketSpec,
    Levels,
    Limiter,
    LocalLimiter,
    QuotaSpec,
)

if TYPE_CHECKING:
    from fastgw.config.compile import RouteRuntime, RuntimeSnapshot
    from fastgw.server.protocol import HttpProtocol
    from fastgw_core.limits import SharedTable

log = logging.getLogger("fastgw.traffic")

FORBIDDEN = replies.aws_error(403, "Forbidden", "ForbiddenException", kind="INVALID_API_KEY")
TOO_MANY_REQUESTS = replies.aws_error(429, "Too Many Requests", "TooManyRequestsException", kind="THROTTLED")
LIMIT_EXCEEDED = replies.aws_error(429, "Limit Exceeded", "LimitExceededException", kind="QUOTA_EXCEEDED")
QUOTA_STORE_DOWN = replies.SERVICE_UNAVAILABLE
MAX_KEY_BYTES = 128  # AWS: API key values are 20-128 characters


class PlanBinding:
    """An API key's usage plan on one API stage."""

    __slots__ = ("bucket", "key_id", "lists", "method_buckets", "plan_id", "quota", "usage")

    def __init__(
        self,
        plan_id: str,
        key_id: str,
        bucket: BucketSpec | None,
        method_buckets: dict[str, BucketSpec],
        quota: QuotaSpec | None,
        usage: QuotaSpec,
    ) -> None:
        self.plan_id = plan_id
        self.key_id = key_id
        self.bucket = bucket
        self.method_buckets = method_buckets
        self.quota = quota  # None when the plan has no quota
        self.usage = usage  # its daily usage counter (the quota's own when it has one)
        self.lists: dict[int, Levels] = {}  # id(route) -> levels, built on first use

    def levels_for(self, route: RouteRuntime) -> Levels:
        levels = self.lists.get(id(route))
        if levels is None:
            own = self.method_buckets.get(route.resource_method, self.bucket)
            levels = Levels(([own] if own is not None else []) + route.levels.buckets)
            self.lists[id(route)] = levels
        return levels


class KeyRuntime:
    __slots__ = ("digest", "enabled", "id", "stages")

    def __init__(self, key_id: str, digest: bytes, enabled: bool) -> None:
        self.id = key_id
        self.digest = digest
        self.enabled = enabled
        self.stages: dict[str, PlanBinding] = {}  # "apiId:stage" -> binding


class Gate:
    """Per-worker admission control; see the module docstring."""

    def __init__(self, table: SharedTable, limiter: Limiter, headers: bool = False) -> None:
        self.table = table
        self.limiter = limiter
        self.headers = headers
        self.snapshot: RuntimeSnapshot | None = None
        self.state = StateData()
        self.config_state = StateData()
        self.generation = 0
        self.keys: dict[bytes, KeyRuntime] = {}
        # PERF: with the embedded backend the gate calls the shared table directly.
        self.local = limiter.table if type(limiter) is LocalLimiter else None
        self.refused = 0
        self.forbidden = 0
        self.quota_refused = 0

    # ------------------------------------------------------------------ building
    def bind(self, snapshot: RuntimeSnapshot) -> None:
        """Give every route of a new snapshot its bucket levels, and rebuild key bindings."""
        gw = snapshot.config.gateway
        self.headers = gw.throttle_headers
        gw_bucket = BucketSpec("gw", gw.throttle.rateLimit, gw.throttle.burstLimit, self.table)
        # A canary's routes share their stage's buckets (same names).
        canaries = [s.canary for s in snapshot.stages if s.canary is not None]
        for stage in [*snapshot.stages, *canaries]:
            for route in stage.routes:
                t: ThrottleSettings | None = route.throttle
                if t is not None:
                    name = f"route:{route.api.id}:{stage.name}:{route.key}"
                    levels = Levels([BucketSpec(name, t.rateLimit, t.burstLimit, self.table), gw_bucket])
                else:
                    levels = Levels([gw_bucket])
                route.levels = levels
                route.level_args = (levels.slots, levels.rates, levels.bursts)
        self.snapshot = snapshot
        self.config_state = config_state(snapshot.config)
        self._build_keys()

    def set_state(self, data: StateData) -> None:
        self.state = data
        self._build_keys()

    def _build_keys(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        data = _merge(self.config_state, self.state)
        ids = {}
        for api in snapshot.apis:
            ids[api.name] = api.id
            ids[api.id] = api.id
        keys: dict[str, KeyRuntime] = {}
        for k in data.keys:
            if k.valueHash:
                keys[k.id] = KeyRuntime(k.id, bytes.fromhex(k.valueHash), k.enabled)
        table = self.table
        for plan in data.plans:
            members = [keys[i] for i in data.plan_keys.get(plan.id, ()) if i in keys]
            for stage in plan.apiStages:
                api_id = ids.get(stage.apiId)
                if api_id is None:
                    continue
                uid = f"{api_id}:{stage.stage}"
                for key in members:
                    if uid in key.stages:
                        continue  # AWS: a key is in at most one plan per API stage; first wins
                    t = plan.throttle
                    base = f"key:{plan.id}:{key.id}"
                    bucket = BucketSpec(base, t.rateLimit, t.burstLimit, table) if t else None
                    methods = {
                        rm: BucketSpec(f"{base}:{rm}", mt.rateLimit, mt.burstLimit, table)
                        for rm, mt in stage.throttle.items()
                    }
                    q = plan.quota
                    usage = QuotaSpec(
                        plan.id,
                        key.id,
                        q.limit if q else 0,
                        q.period if q else "DAY",
                        q.offset if q else 0,
                        plan.fail_open,
                        table,
                    )
                    quota = usage if q is not None else None
                    key.stages[uid] = PlanBinding(plan.id, key.id, bucket, methods, quota, usage)
        self.keys = {k.digest: k for k in keys.values()}
        self.generation += 1  # connections' cached key lookups are stale now

    # ------------------------------------------------------------------ per request
    def lookup(self, value: bytes | None) -> KeyRuntime | None:
        """The key whose value the client sent (the protocol hands over one ``X-API-Key`` value;
        b"" when the header was repeated)."""
        if not value or len(value) > MAX_KEY_BYTES + 8 or not value.isascii():
            return None
        value = value.rstrip(b" \t")  # trailing whitespace is kept by the parsers
        if not value or len(value) > MAX_KEY_BYTES:
            return None
        digest = hashlib.sha256(value).digest()
        key = self.keys.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        return key

    def admit(
        self, route: RouteRuntime, conn: HttpProtocol, now: float
    ) -> LocalReply | asyncio.Future[Any] | None:
        """None to go on, a reply to answer with, or a future of either (shared store lease).

        ``conn`` is the client connection: its ``api_key`` is the request's X-API-Key value, and
        it caches the last lookup (a keep-alive client sends the same key again and again; the
        cache compares the value with the one this same client sent before, never with a stored
        key, and is dropped whenever keys or plans change)."""
        binding = None
        if route.api_key_required:
            api_key = conn.api_key
            if api_key is not None and conn.key_gen == self.generation and api_key == conn.key_value:
                key = conn.key_rt
            else:
                key = self.lookup(api_key)
                conn.key_value = api_key
                conn.key_rt = key
                conn.key_gen = self.generation
            binding = key.stages.get(route.stage_uid) if key is not None and key.enabled else None
            if binding is None:
                self.forbidden += 1
                return FORBIDDEN
            levels = binding.lists.get(id(route))
            if levels is None:
                levels = binding.levels_for(route)
        else:
            levels = route.levels
        table = self.local
        if table is not None:
            # The embedded backend, inline (the common case): no futures.
            refused = self.take_local(table, levels, now)
            if refused is not None:
                return refused
            if binding is None:
                return None
            ts = time.time()
            q = binding.quota
            if q is None:
                table.add(binding.usage.day_slot, int(ts // DAY_SECONDS), 1)
                return None
            if ts >= q.period_end_ts:
                _new_period(q, ts)
            if table.count(q.slot, q.period_start, q.limit) < 0:
                # A request the quota refuses uses none of the buckets: give the tokens back
                # (the route's and gateway's buckets are shared with other clients).
                for b in levels.buckets:
                    table.refund(b.slot, b.burst)
                self.quota_refused += 1
                return LIMIT_EXCEEDED
            table.add(q.day_slot, int(ts // DAY_SECONDS), 1)
            return None
        # A shared store (Redis): answered at once from the worker's leases (tokens and quota
        # units), else a future of the answer; a Task only when a lease falls short.
        got = self.limiter.take(levels, now)
        if type(got) is not tuple:
            return asyncio.ensure_future(self._admit_later(got, binding, levels))  # type: ignore[arg-type]
        if got[0] != -1:
            return self.throttled(levels, got)
        return self._count(binding)

    async def _admit_later(
        self, pending: asyncio.Future[Any], binding: PlanBinding | None, levels: Levels
    ) -> LocalReply | None:
        got = await pending
        if got[0] != -1:
            return self.throttled(levels, got)
        res = self._count(binding)
        if isinstance(res, asyncio.Future):
            return await res
        return res

    def take_local(self, table: Any, levels: Levels, now: float) -> LocalReply | None:
        """A token from each of ``levels`` in the embedded backend's ``table`` (all or none): None,
        or the 429 of the first level that has none. The protocol calls it directly for a route
        without an API key (nothing else of ``admit`` applies to it)."""
        got = table.take_levels(levels, now)
        return None if got is None else self.throttled(levels, got)

    def throttled(self, levels: Levels, got: tuple[int, float]) -> LocalReply:
        self.refused += 1
        if not self.headers:
            return TOO_MANY_REQUESTS
        b = levels.buckets[got[0]]
        wait = got[1]
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 60
        return replies.aws_error(
            429,
            "Too Many Requests",
            "TooManyRequestsException",
            extra=[
                ("retry-after", str(retry)),
                ("ratelimit-policy", f"{b.burst:g};w={_window(b)}"),
                ("ratelimit", f"limit={b.burst:g}, remaining=0, reset={retry}"),
            ],
            kind="THROTTLED",
        )

    def _count(self, binding: PlanBinding | None) -> LocalReply | asyncio.Future[Any] | None:
        """A keyed request passed the buckets: count it in its plan's quota (which may refuse
        it) or, for a plan without a quota, in the day's usage (shared-store limiters)."""
        if binding is None:
            return None
        if binding.quota is None:
            self.limiter.count_usage(binding.usage, day_number(time.time()))
            return None
        return self._quota(binding.quota)

    def _quota(self, q: QuotaSpec) -> LocalReply | asyncio.Future[Any] | None:
        ts = time.time()
        if ts >= q.period_end_ts:
            _new_period(q, ts)
        left = self.limiter.quota(q, q.period_start, int(ts // DAY_SECONDS))
        if type(left) is not int:
            return self._quota_later(left)  # type: ignore[arg-type]
        return self._quota_reply(left)

    def _quota_later(self, pending: asyncio.Future[Any]) -> asyncio.Future[LocalReply | None]:
        """The reply of a quota answer still on its way (a future chained to it, no Task)."""
        out: asyncio.Future[LocalReply | None] = pending.get_loop().create_future()

        def done(f: asyncio.Future[Any]) -> None:
            if out.done():
                return
            if f.cancelled():
                out.cancel()
            elif f.exception() is not None:
                out.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                out.set_result(self._quota_reply(f.result()))

        pending.add_done_callback(done)
        return out

    def _quota_reply(self, left: int) -> LocalReply | None:
        if left >= 0:
            return None
        self.quota_refused += 1
        if left == QUOTA_EXCEEDED:
            return LIMIT_EXCEEDED
        if left == QUOTA_UNAVAILABLE:
            return QUOTA_STORE_DOWN
        return None


def _new_period(q: QuotaSpec, ts: float) -> None:
    """Move a quota to the period containing ``ts`` (UTC)."""
    day = day_number(ts)
    q.period_start = period_start(q.period, q.offset, day)
    q.period_end_ts = period_end(q.period, q.offset, day) * float(DAY_SECONDS)


def _merge(config: StateData, store: StateData) -> StateData:
    """The config's own records under the store's (the store's copy of a record wins)."""
    if not config.keys and not config.plans:
        return store
    keys = {k.id: k for k in config.keys}
    keys.update((k.id, k) for k in store.keys)
    plans = {p.id: p for p in config.plans}
    plans.update((p.id, p) for p in store.plans)
    members = {pid: set(ids) for pid, ids in config.plan_keys.items()}
    for pid, ids in store.plan_keys.items():
        members.setdefault(pid, set()).update(ids)
    return StateData(
        version=store.version,
        keys=list(keys.values()),
        plans=list(plans.values()),
        plan_keys={pid: sorted(ids) for pid, ids in members.items()},
    )


def _window(b: BucketSpec) -> str:
    return f"{b.burst / b.rate:g}" if b.rate > 0 else "0"

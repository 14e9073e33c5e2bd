"""The state store interface: API keys, usage plans, plan membership, daily usage, cache purges.

Two implementations: ``sqlite_store.SqliteStore`` (the embedded default: one local SQLite
file, so a restart loses nothing) and ``redis_store.RedisStore`` (several nodes). Every write
bumps ``version``; workers poll it (``POLL_SECONDS``) and reload the whole ``StateData`` when it
changes, which is how a disabled key is refused on every worker and node within a second, and
how a stage-cache purge requested through the admin API reaches them (``add_cache_purge``).

Days are UTC day numbers (days since 1970-01-01), see ``periods``.
"""

from __future__ import annotations

import abc

from fastgw.state.model import ApiKey, CachePurgeOp, StateData, UsagePlan

POLL_SECONDS = 0.5
MAX_CACHE_PURGES = 256  # cache purges kept (and loaded); older ones are dropped


class StoreError(Exception):
    """The store cannot be reached or answered wrongly (callers decide fail-open or closed)."""


class Store(abc.ABC):
    """Async interface of a state store (the SQLite one runs its calls inline)."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / create tables."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def version(self) -> int:
        """A number that changes on every write of keys, plans, plan membership or cache purges."""

    @abc.abstractmethod
    async def load(self) -> StateData:
        """Everything, consistent with the returned ``version``."""

    # API keys -----------------------------------------------------------------------
    @abc.abstractmethod
    async def put_key(self, key: ApiKey) -> None:
        """Insert or replace by ``key.id`` (its ``valueHash`` must be unique)."""

    @abc.abstractmethod
    async def get_key(self, key_id: str) -> ApiKey | None: ...

    @abc.abstractmethod
    async def list_keys(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def key_by_hash(self, value_hash: str) -> ApiKey | None: ...

    @abc.abstractmethod
    async def delete_key(self, key_id: str) -> bool:
        """Remove a key and its plan memberships; False if unknown."""

    # usage plans --------------------------------------------------------------------
    @abc.abstractmethod
    async def put_plan(self, plan: UsagePlan) -> None: ...

    @abc.abstractmethod
    async def get_plan(self, plan_id: str) -> UsagePlan | None: ...

    @abc.abstractmethod
    async def list_plans(self) -> list[UsagePlan]: ...

    @abc.abstractmethod
    async def delete_plan(self, plan_id: str) -> bool:
        """Remove a plan and its memberships; False if unknown."""

    @abc.abstractmethod
    async def add_plan_key(self, plan_id: str, key_id: str) -> None: ...

    @abc.abstractmethod
    async def remove_plan_key(self, plan_id: str, key_id: str) -> bool: ...

    @abc.abstractmethod
    async def plan_key_ids(self, plan_id: str) -> list[str]: ...

    # usage --------------------------------------------------------------------------
    @abc.abstractmethod
    async def usage(
        self, plan_id: str, key_ids: list[str] | None, start_day: int, end_day: int
    ) -> dict[str, dict[int, int]]:
        """Requests counted per key per UTC day in [start_day, end_day] (days with none omitted)."""

    @abc.abstractmethod
    async def set_usage(self, plan_id: str, key_id: str, day: int, used: int) -> None:
        """Record a key's count for a day (absolute; the embedded flusher writes live counters)."""

    # cache purges -------------------------------------------------------------------
    @abc.abstractmethod
    async def add_cache_purge(
        self,
        stage: str,
        op: CachePurgeOp,
        *,
        path: str = "",
        method: str = "*",
        key: str = "",
        at: float | None = None,
    ) -> int:
        """Record a purge of ``stage``'s cache ("apiId:stageName") and bump ``version`` in the same
        write; return its ``seq`` (one more than the last one's). ``at`` defaults to now. Only the
        last ``MAX_CACHE_PURGES`` are kept; ``load()`` returns them, oldest first."""

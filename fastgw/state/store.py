"""The state store interface: API keys, usage plans, plan membership, daily usage, cache purges,
deployments and stage pointers.

Two implementations: ``sqlite_store.SqliteStore`` (the embedded default: one local SQLite
file, so a restart loses nothing) and ``redis_store.RedisStore`` (several nodes). Every write
bumps ``version``; workers poll it (``POLL_SECONDS``) and reload the whole ``StateData`` when it
changes, which is how a disabled key is refused on every worker and node within a second, and
how a stage-cache purge requested through the admin API reaches them (``add_cache_purge``), and
how a stage moves to another deployment (``put_stage_pointer``: a release, a canary, a rollback).

Deployments are immutable and only reach workers through a stage pointer: ``load()`` returns the
deployments some stage or canary points at, so adding or deleting a deployment (never pointed at
when deleted) changes nothing ``load()`` returns and leaves ``version`` alone.

Days are UTC day numbers (days since 1970-01-01), see ``periods``.
"""

from __future__ import annotations

import abc

import msgspec

from fastgw.state.model import ApiKey, CachePurgeOp, Deployment, StagePointer, StateData, UsagePlan

POLL_SECONDS = 0.5
MAX_CACHE_PURGES = 256  # cache purges kept (and loaded); older ones are dropped
MAX_DEPLOYMENTS_PER_API = 500  # deployments kept per API (AWS's default quota is similar)
MAX_DEFINITION_BYTES = 8 * 1024 * 1024  # the largest deployment definition accepted


class StoreError(Exception):
    """The store cannot be reached or answered wrongly (callers decide fail-open or closed)."""


class Store(abc.ABC):
    """Async interface of a state store (the SQLite one runs its calls inline)."""

    # Deployments kept per API; an instance (or a test) may lower it.
    max_deployments: int = MAX_DEPLOYMENTS_PER_API

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

    # deployments ----------------------------------------------------------------------
    @abc.abstractmethod
    async def add_deployment(
        self, api_id: str, definition: bytes, description: str = "", *, at: float | None = None
    ) -> Deployment:
        """Store a new deployment of ``api_id``: the store assigns its ``id`` (unique within the API),
        its ``number`` (one more than the API's last, never reused) and its ``digest``; ``at`` (its
        ``createdDate``) defaults to now. ``definition`` is JSON, at most ``MAX_DEFINITION_BYTES``
        (``ValueError`` otherwise). When the API already has ``max_deployments``, the oldest one no
        stage or canary points at is deleted; ``StoreError`` if every one is in use. Does not bump
        ``version`` (see the module docstring)."""

    @abc.abstractmethod
    async def list_deployments(self, api_id: str) -> list[Deployment]:
        """The API's deployments, oldest first (by ``number``), definitions included."""

    @abc.abstractmethod
    async def get_deployment(self, api_id: str, deployment_id: str) -> Deployment | None: ...

    @abc.abstractmethod
    async def delete_deployment(self, api_id: str, deployment_id: str) -> bool:
        """Remove a deployment; False if unknown, ``DeploymentInUseError`` if a stage or a canary
        points at it. Does not bump ``version``."""

    # stage pointers -------------------------------------------------------------------
    @abc.abstractmethod
    async def put_stage_pointer(self, pointer: StagePointer) -> None:
        """Insert or replace by (apiId, stage) and bump ``version`` in the same write; ``KeyError``
        if ``pointer.deploymentId`` (or its canary's) is not a deployment of ``pointer.apiId``."""

    @abc.abstractmethod
    async def get_stage_pointer(self, api_id: str, stage: str) -> StagePointer | None: ...

    @abc.abstractmethod
    async def delete_stage_pointer(self, api_id: str, stage: str) -> bool:
        """Remove a stage pointer and bump ``version``; False (and no bump) if unknown."""

    @abc.abstractmethod
    async def list_stage_pointers(self, api_id: str | None = None) -> list[StagePointer]:
        """The stage pointers of ``api_id`` (of every API when None), sorted by (apiId, stage)."""


def check_definition(definition: bytes) -> bytes:
    """The definition of a new deployment as ``bytes``; ``ValueError`` if it is over
    ``MAX_DEFINITION_BYTES`` or not JSON (``Deployment.public`` decodes it)."""
    if not isinstance(definition, bytes | bytearray | memoryview):
        raise TypeError(f"a deployment definition is bytes, not {type(definition).__name__}")
    data = bytes(definition)
    if len(data) > MAX_DEFINITION_BYTES:
        raise ValueError(f"deployment definition is {len(data)} bytes, over the {MAX_DEFINITION_BYTES} limit")
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as ex:
        raise ValueError(f"deployment definition is not JSON: {ex}") from ex
    return data

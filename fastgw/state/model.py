"""API keys, usage plans, usage, cache purges, deployments and stage pointers: the state store's records.

Field names and shapes are AWS API Gateway's management API (``ApiKey``, ``UsagePlan``,
``UsagePlanKey``, ``Usage``), so that people who know AWS know them. Records are msgspec
Structs; the admin API decodes its payloads into the ``*Create`` / ``*Patch`` Structs, which
reject unknown fields and report the path of a bad one. ``CachePurge`` (a fastgw record, no AWS
counterpart) carries a stage-cache invalidation from the admin API to every worker of every node.
``Deployment`` (AWS: a deployment, an immutable snapshot of one API's definition) and ``StagePointer``
(which deployment a stage serves, and its canary) carry deployments, stages, canaries and rollbacks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import time
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta, Struct, field

from fastgw.config.model import PlanStage, QuotaSettings, ThrottleSettings

KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
KEY_PREFIX_CHARS = 5
# AWS: an API key value is 20 to 128 printable ASCII characters.
KeyValue = Annotated[str, Meta(min_length=20, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class _Rec(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Base of every state record."""


class DuplicateValueError(ValueError):
    """``Store.put_key``: another key already has this value (its ``valueHash`` is taken)."""


class DeploymentInUseError(ValueError):
    """``Store.delete_deployment``: a stage, or a stage's canary, points at this deployment."""


def full_builtins(obj: object) -> object:
    """Like ``msgspec.to_builtins`` but keeping fields at their defaults (``omit_defaults`` is for
    storage; API consumers want ``enabled: true`` spelled out). ``None`` fields are left out, as AWS
    leaves out unset ``throttle`` / ``quota``."""
    if isinstance(obj, Struct):
        out: dict[str, object] = {}
        for name in obj.__struct_fields__:
            value = getattr(obj, name)
            if value is not None:
                out[name] = full_builtins(value)
        return out
    if isinstance(obj, list | tuple):
        return [full_builtins(v) for v in obj]
    if isinstance(obj, dict):
        return {k: full_builtins(v) for k, v in obj.items()}
    return obj


# The throttle, quota and plan-stage shapes are the config file's own.
Throttle = ThrottleSettings
Quota = QuotaSettings
ApiStage = PlanStage


class ApiKey(_Rec):
    """An API key as stored. ``value`` is never stored: only its SHA-256 and a short prefix."""

    id: str
    name: str
    enabled: bool = True
    description: str = ""
    customerId: str = ""
    createdDate: float = 0.0
    lastUpdatedDate: float = 0.0
    stageKeys: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    valuePrefix: str = ""
    valueHash: str = ""  # hex SHA-256 of the value; never leaves the store (see public())
    source: Literal["api", "config", "import"] = "api"

    def public(self, value: str | None = None) -> dict[str, object]:
        """The admin API's view: everything but the hash; the value only right after creation."""
        out = full_builtins(self)
        assert isinstance(out, dict)
        out.pop("valueHash", None)
        if value is not None:
            out["value"] = value
        return out


class UsagePlan(_Rec):
    """A usage plan: throttle + quota per API key, bound to API stages."""

    id: str
    name: str
    description: str = ""
    apiStages: list[ApiStage] = field(default_factory=list)
    throttle: Throttle | None = None
    quota: Quota | None = None
    fail_open: bool = True  # quota enforcement when the shared store (Redis) is unreachable
    tags: dict[str, str] = field(default_factory=dict)
    source: Literal["api", "config"] = "api"

    def public(self) -> dict[str, object]:
        """The admin API's view (every field, unset ``throttle`` / ``quota`` left out)."""
        out = full_builtins(self)
        assert isinstance(out, dict)
        return out


CachePurgeOp = Literal["flush", "key", "prefix"]
CACHE_PURGE_OPS: frozenset[str] = frozenset(get_args(CachePurgeOp))
PurgeMethod = Literal["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class CachePurge(_Rec, frozen=True, kw_only=True):
    """One invalidation of a stage's response cache, as the store keeps it and workers apply it.

    ``seq`` is assigned by the store, one more than the previous purge's (never reused, no gaps),
    so a worker applies the purges with a ``seq`` above the last it applied, in order. The store
    keeps the last ``store.MAX_CACHE_PURGES``: when the lowest ``seq`` it returns is above the
    last applied + 1, purges were missed and only a whole flush is safe.

    - ``flush``: every entry of the stage (AWS FlushStageCache);
    - ``key``: the entries of one resource path (``path``, normalised as requests are), or the one
      entry named by ``key`` (a cache key hash in hex, or a canonical key, stored as given);
    - ``prefix``: the entries whose resource path starts with ``path``.

    ``method`` narrows ``key`` and ``prefix`` to one HTTP method ("*": every method).
    """

    seq: int
    stage: str  # "apiId:stageName", the stage_uid of the compiled config
    op: CachePurgeOp
    path: str = ""
    method: str = "*"
    key: str = ""
    at: float  # unix time the purge was requested (admin clock)

    def public(self) -> dict[str, object]:
        """The admin API's view (every field spelled out)."""
        out = full_builtins(self)
        assert isinstance(out, dict)
        return out


class Deployment(_Rec, frozen=True, kw_only=True):
    """An immutable snapshot of one API's definition (AWS: a deployment).

    The store assigns ``id`` (6 lowercase alphanumerics, unique within the API), ``number`` (1, 2,
    3, ... per API, never reused, even after a delete) and ``digest``; ``definition`` is the API's
    definition as JSON, kept and returned byte for byte.
    """

    id: str
    apiId: str
    number: int
    createdDate: float  # unix time
    description: str = ""
    definition: bytes
    digest: str  # the first 16 hex digits of the SHA-256 of ``definition``

    @property
    def key(self) -> str:
        """``"apiId/id"``: the key of ``StateData.deployments``."""
        return f"{self.apiId}/{self.id}"

    def public(self, with_definition: bool = False) -> dict[str, object]:
        """The admin API's view (AWS field names, ``createdDate`` as an ISO 8601 UTC string); the
        definition, decoded, only when asked for (it can be megabytes)."""
        out: dict[str, object] = {
            "id": self.id,
            "number": self.number,
            "createdDate": iso_utc(self.createdDate),
            "description": self.description,
            "digest": self.digest,
        }
        if with_definition:
            out["definition"] = msgspec.json.decode(self.definition)
        return out


class CanaryPointer(_Rec, frozen=True, kw_only=True):
    """A stage's canary (AWS ``canarySettings``): ``percentTraffic`` % of the stage's requests go to
    ``deploymentId``, with ``stageVariableOverrides`` applied over the stage's variables."""

    deploymentId: str
    percentTraffic: float = 0.0  # 0..100
    stageVariableOverrides: dict[str, str] = field(default_factory=dict)
    useStageCache: bool = False

    def __post_init__(self) -> None:
        if not self.deploymentId:
            raise ValueError("canary deploymentId is required")
        if not (math.isfinite(self.percentTraffic) and 0.0 <= self.percentTraffic <= 100.0):
            raise ValueError(f"canary percentTraffic must be within 0..100, got {self.percentTraffic!r}")


class StagePointer(_Rec, frozen=True, kw_only=True):
    """Which deployment a stage of an API serves (AWS: a stage's ``deploymentId``), and its canary.

    Pointing a stage at another deployment is a release or a rollback: one small write that every
    worker picks up at its next reload (``Store.put_stage_pointer`` bumps the version).
    """

    apiId: str
    stage: str
    deploymentId: str
    canary: CanaryPointer | None = None
    updatedAt: float  # unix time

    def __post_init__(self) -> None:
        check_api_id(self.apiId)
        if not self.stage:
            raise ValueError("stage is required")
        if not self.deploymentId:
            raise ValueError("deploymentId is required")

    @property
    def key(self) -> str:
        """``"apiId/stage"``."""
        return f"{self.apiId}/{self.stage}"

    def deployment_ids(self) -> tuple[str, ...]:
        """The deployments this stage uses: its own, then its canary's (when it has one)."""
        if self.canary is None:
            return (self.deploymentId,)
        return (self.deploymentId, self.canary.deploymentId)

    def public(self) -> dict[str, object]:
        """The admin API's view: every field (no ``canary`` without one), ``updatedAt`` as an ISO
        8601 UTC string."""
        out = full_builtins(self)
        assert isinstance(out, dict)
        out["updatedAt"] = iso_utc(self.updatedAt)
        return out


class StateData(Struct, kw_only=True):
    """Everything workers need to authorise and limit keyed requests, as one versioned read."""

    version: int = 0
    keys: list[ApiKey] = field(default_factory=list)
    plans: list[UsagePlan] = field(default_factory=list)
    plan_keys: dict[str, list[str]] = field(default_factory=dict)  # plan id -> key ids
    # The most recent cache purges (at most store.MAX_CACHE_PURGES), oldest first.
    cache_purges: list[CachePurge] = field(default_factory=list)
    # Every stage pointer, sorted by (apiId, stage).
    stages: list[StagePointer] = field(default_factory=list)
    # "apiId/deploymentId" -> Deployment: only those a stage or a canary points at.
    deployments: dict[str, Deployment] = field(default_factory=dict)


# ---------------------------------------------------------------------- admin payloads
class ApiKeyCreate(_Rec, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=1024)]
    description: str = ""
    enabled: bool = True
    value: KeyValue | None = None  # generated when omitted
    customerId: str = ""
    stageKeys: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    generateDistinctId: bool = False  # AWS's flag; accepted and ignored (ids are always distinct)


class ApiKeyRotate(_Rec, frozen=True):
    """Body of ``POST /apikeys/{id}/rotate`` (optional): the new value, generated when omitted."""

    value: KeyValue | None = None


class ApiKeyPatch(_Rec, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    description: str | None = None
    enabled: bool | None = None
    customerId: str | None = None
    tags: dict[str, str] | None = None


class UsagePlanCreate(_Rec, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=1024)]
    description: str = ""
    apiStages: list[ApiStage] = field(default_factory=list)
    throttle: Throttle | None = None
    quota: Quota | None = None
    fail_open: bool = True
    tags: dict[str, str] = field(default_factory=dict)


class UsagePlanPatch(_Rec, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    description: str | None = None
    apiStages: list[ApiStage] | None = None
    throttle: Throttle | None = None
    quota: Quota | None = None
    fail_open: bool | None = None
    tags: dict[str, str] | None = None


class UsagePlanKeyCreate(_Rec, frozen=True):
    keyId: Annotated[str, Meta(min_length=1)]
    keyType: Literal["API_KEY"] = "API_KEY"


class CachePurgeRequest(_Rec, frozen=True):
    """Body of ``POST /restapis/{restapi_id}/stages/{stage_name}/cache/purge`` (fastgw extension).

    ``path`` is a resource path inside the stage (``/pets/1``), without the stage's base path;
    ``prefix: true`` purges every path that starts with it. ``key`` instead names one entry (a
    cache key hash in hex or a canonical key); ``path`` may then be omitted.
    """

    path: Annotated[str, Meta(max_length=2048)] = ""
    method: PurgeMethod = "*"
    prefix: bool = False
    key: Annotated[str, Meta(max_length=4096, pattern=r"^[\x21-\x7e]*$")] = ""


class PatchOperation(_Rec, frozen=True):
    """One AWS ``PatchOperation`` (values are strings, as AWS sends them)."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: str | None = None
    # AWS's field; fastgw does not support move/copy, so it is accepted and never used.
    from_: str | None = field(default=None, name="from")


class PatchRequest(_Rec, frozen=True):
    """AWS's PATCH body: ``{"patchOperations": [...]}``."""

    patchOperations: list[PatchOperation] = field(default_factory=list)


# ---------------------------------------------------------------------- helpers
def new_id(n: int = 10) -> str:
    """A random lowercase id, AWS-like (10 characters)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


def generate_key_value(n: int = 40) -> str:
    """A new API key value (AWS generates 40 characters)."""
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(n))


def hash_key_value(value: str | bytes) -> str:
    """Hex SHA-256 of a key value: what is stored and compared (values are random, not passwords)."""
    if isinstance(value, str):
        value = value.encode()
    return hashlib.sha256(value).hexdigest()


def now_ts() -> float:
    return round(time.time(), 3)


def iso_utc(ts: float) -> str:
    """A unix time as AWS shows it: ISO 8601 UTC to the second (``2024-05-01T12:00:00Z``)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_api_id(api_id: str) -> None:
    """``ValueError`` unless ``api_id`` can name an API in the store: not empty, no "/" (the store
    joins it with a stage name or deployment id by "/")."""
    if not api_id or "/" in api_id:
        raise ValueError(f"invalid API id {api_id!r}: it must be non-empty and contain no '/'")


def deployment_digest(definition: bytes) -> str:
    """``Deployment.digest``: the first 16 hex digits of the SHA-256 of the definition."""
    return hashlib.sha256(definition).hexdigest()[:16]


def stable_id(prefix: str, name: str) -> str:
    """The id of a config-declared record without an explicit id: ``prefix`` + 9 hex of SHA-256(name)."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:9]

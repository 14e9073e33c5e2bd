"""The admin API: API keys, usage plans, plan keys, usage and stage caches, on its own listener.

A small HTTP/1.1 server straight on asyncio (uvloop in production) with httptools parsing, no
framework: the admin API is a handful of JSON resources and must not share anything with the data
plane (its own port, its own process, never the plugin chain).

Resources, field names and error bodies follow AWS API Gateway's management API (``ApiKey``,
``UsagePlan``, ``UsagePlanKey``, ``Usage``, ``ImportApiKeys``, ``FlushStageCache``;
``{"message": ...}`` with ``x-amzn-ErrorType``), with three fastgw extensions:
``POST /apikeys/{id}/rotate``, ``GET /usageplans/{id}/keys/{keyId}/quota`` and
``POST /restapis/{restapi_id}/stages/{stage_name}/cache/purge``. ``fastgw.admin.openapi`` documents
all of it.

Rules:

- every request but ``GET /health`` and ``GET /openapi.json`` needs ``Authorization: Bearer
  TOKEN`` (compared in constant time); a missing or wrong token gets 401 before anything is read
  or changed (the read-only ``/dashboard`` pages also take their session cookie:
  ``fastgw.admin.dashboard``);
- bodies are capped (``MAX_BODY_BYTES``), the request head has a deadline (``HEADER_TIMEOUT``),
  idle keep-alive connections are closed after ``KEEPALIVE_TIMEOUT``;
- a request either fully succeeds or changes nothing: payloads and cross-record rules are checked
  before the first write;
- key values are never logged, never stored (only SHA-256 and a 5-character prefix) and returned
  only once, by the request that created or rotated them;
- records declared in the config file (``source: "config"``) are read-only here: the config file
  owns them and the next reload would undo an edit. Memberships of API-created keys in config
  plans are fine.

Stage caches: the admin process holds no cache. A flush or purge is recorded in the state store
(``Store.add_cache_purge``, which bumps the version), and every worker of every node applies it on
its next state reload (within ``POLL_SECONDS``); hence 202 Accepted. The API and stage must exist in
the config the admin process was started with.

Usage figures: ``GET /usageplans/{id}/usage`` answers AWS's GetUsage shape, ``[used, remaining]``
per key per day, where ``remaining`` is the quota limit minus everything used in that day's quota
period up to and including that day (what AWS reports), and ``null`` when the plan has no quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote

import httptools
import msgspec

from fastgw.config.compile import _api_id
from fastgw.config.model import GatewayConfig, PlanStage, QuotaSettings
from fastgw.state.model import (
    KEY_PREFIX_CHARS,
    ApiKey,
    ApiKeyCreate,
    ApiKeyPatch,
    ApiKeyRotate,
    CachePurge,
    CachePurgeOp,
    CachePurgeRequest,
    DuplicateValueError,
    PatchRequest,
    StateData,
    UsagePlan,
    UsagePlanCreate,
    UsagePlanKeyCreate,
    UsagePlanPatch,
    generate_key_value,
    hash_key_value,
    new_id,
    now_ts,
)
from fastgw.state.periods import date_day, day_date, day_number, period_end, period_start
from fastgw.state.store import Store, StoreError
from fastgw_core.errors import InvalidPathError
from fastgw_core.urlnorm import normalize_path

log = logging.getLogger("fastgw.admin")

T = TypeVar("T")

# ---------------------------------------------------------------------- limits
MAX_BODY_BYTES = 1 << 20  # request body (CSV imports included)
LINGER_SECONDS = 2.0  # after an error reply: how long a client's unread upload is drained
MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 16384  # request line + header fields
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0  # seconds to receive a whole request head
BODY_TIMEOUT = 30.0  # seconds to receive a whole body once the head is in
KEEPALIVE_TIMEOUT = 30.0  # idle keep-alive connection
MAX_PIPELINED = 8  # queued requests per connection before reading pauses
DRAIN_TIMEOUT = 5.0  # SIGTERM: seconds in-flight requests get before connections are aborted
FLUSH_INTERVAL = 1.0  # seconds between background flushes (embedded backend)
MAX_USAGE_DAYS = 90

PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})

# ---------------------------------------------------------------------- AWS wording
INVALID_KEY = "Invalid API Key identifier specified"
INVALID_PLAN = "Invalid Usage Plan ID specified"
INVALID_PLAN_KEY = "Invalid Usage Plan Key identifier specified"
INVALID_API = "Invalid API identifier specified"
INVALID_STAGE = "Invalid Stage identifier specified"
NOT_FOUND = "NotFoundException"
BAD_REQUEST = "BadRequestException"
CONFLICT = "ConflictException"

Handler = Callable[..., Awaitable[tuple[int, Any]]]
FlushFn = Callable[[], Awaitable[None]]
QuotaViewFn = Callable[[str, str], Awaitable[dict[str, Any] | None]]


class ApiError(Exception):
    """An expected failure: its status, AWS error type and ``{"message", "path"?}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        path: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.path = path
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.path is not None:
            out["path"] = self.path
        if self.extra:
            out.update(self.extra)
        return out


def bad_request(message: str, path: str | None = None) -> ApiError:
    return ApiError(400, message, BAD_REQUEST, path)


def not_found(message: str) -> ApiError:
    return ApiError(404, message, NOT_FOUND)


def conflict(message: str) -> ApiError:
    return ApiError(409, message, CONFLICT)


def validation_error(ex: msgspec.DecodeError, base: str = "$") -> ApiError:
    """400 from a msgspec error: ``"Expected `float`, got `str` - at `$.x`"`` -> message + path."""
    text = str(ex)
    message, sep, where = text.partition(" - at `")
    path = base + where.rstrip("`")[1:] if sep else base
    if message.startswith("Object contains unknown field `"):
        path += "." + message.split("`")[1]
    if not isinstance(ex, msgspec.ValidationError):
        message = f"Invalid JSON: {text}"
    return bad_request(message, path)


def decode_json(body: bytes, tp: type[T]) -> T:
    if not body.strip():
        raise bad_request("A JSON request body is required", "$")
    try:
        return msgspec.json.decode(body, type=tp)
    except msgspec.DecodeError as ex:
        raise validation_error(ex) from None


def convert(data: Any, tp: type[T], *, strict: bool = True, base: str = "$") -> T:
    try:
        return msgspec.convert(data, tp, strict=strict)
    except msgspec.ValidationError as ex:
        raise validation_error(ex, base) from None


# ---------------------------------------------------------------------- requests
@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]
    body: bytes
    keep_alive: bool

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        value = self.arg(name)
        return value is not None and value.strip().lower() in ("true", "1", "")


@dataclass(slots=True)
class Raw:
    """A response body sent as it is (not JSON): Prometheus text, a page."""

    data: bytes
    content_type: str


@dataclass(slots=True)
class _Failure:
    """A request the parser refused: answered in order, then the connection closes."""

    status: int
    message: str


@dataclass
class _Route:
    # Literal segments; "{name}" captures one (named as in the OpenAPI document's paths).
    pattern: tuple[str, ...]
    methods: dict[str, str]  # method -> AdminApp method name


_KEY, _PLAN = "{keyId}", "{usageplanId}"
_API, _STAGE = "{restapi_id}", "{stage_name}"

ROUTES: list[_Route] = [
    _Route(("apikeys",), {"GET": "list_keys", "POST": "create_key"}),
    _Route(("apikeys", _KEY), {"GET": "get_key", "PATCH": "patch_key", "DELETE": "delete_key"}),
    _Route(("apikeys", _KEY, "rotate"), {"POST": "rotate_key"}),
    _Route(("usageplans",), {"GET": "list_plans", "POST": "create_plan"}),
    _Route(("usageplans", _PLAN), {"GET": "get_plan", "PATCH": "patch_plan", "DELETE": "delete_plan"}),
    _Route(("usageplans", _PLAN, "keys"), {"GET": "list_plan_keys", "POST": "add_plan_key"}),
    _Route(("usageplans", _PLAN, "keys", _KEY), {"GET": "get_plan_key", "DELETE": "remove_plan_key"}),
    _Route(("usageplans", _PLAN, "keys", _KEY, "quota"), {"GET": "get_quota"}),
    _Route(("usageplans", _PLAN, "usage"), {"GET": "get_usage"}),
    _Route(("restapis", _API, "stages", _STAGE, "cache", "data"), {"DELETE": "flush_stage_cache"}),
    _Route(("restapis", _API, "stages", _STAGE, "cache", "purge"), {"POST": "purge_stage_cache"}),
    _Route(("restapis", _API, "deployments"), {"GET": "list_deployments", "POST": "create_deployment"}),
    _Route(
        ("restapis", _API, "deployments", "{deployment_id}"),
        {"GET": "get_deployment", "DELETE": "delete_deployment"},
    ),
    _Route(("restapis", _API, "stages"), {"GET": "list_stages"}),
    _Route(("restapis", _API, "stages", _STAGE), {"GET": "get_stage", "PATCH": "patch_stage"}),
    _Route(("restapis", _API, "stages", _STAGE, "exports", "{export_type}"), {"GET": "get_export"}),
    _Route(("metrics",), {"GET": "metrics"}),
]


def match_route(path: str) -> tuple[_Route, list[str]] | None:
    segments = [unquote(s) if "%" in s else s for s in path.strip("/").split("/")]
    for route in ROUTES:
        if len(route.pattern) != len(segments):
            continue
        params: list[str] = []
        for lit, seg in zip(route.pattern, segments, strict=True):
            if lit[0] == "{":
                if not seg:
                    break
                params.append(seg)
            elif lit != seg:
                break
        else:
            return route, params
    return None


# ---------------------------------------------------------------------- helpers
def _iso_date(day: int) -> str:
    return day_date(day).isoformat()


def _iso_instant(day: int) -> str:
    return day_date(day).isoformat() + "T00:00:00Z"


def _parse_date(value: str | None, name: str) -> int:
    if not value:
        raise bad_request(f"{name} is required (YYYY-MM-DD)", f"$.{name}")
    try:
        return date_day(dt.date.fromisoformat(value))
    except ValueError:
        raise bad_request(f"Invalid {name} {value!r}: expected YYYY-MM-DD", f"$.{name}") from None


def _check_quota(quota: QuotaSettings | None, base: str) -> None:
    """AWS's cross-field rule: the offset must fall inside the period."""
    if quota is None:
        return
    top = {"DAY": 0, "WEEK": 6, "MONTH": 27}[quota.period]
    if quota.offset > top:
        raise bad_request(
            f"Invalid quota offset {quota.offset} for period {quota.period} (0..{top})", f"{base}.offset"
        )


def _plan_key_view(key: ApiKey) -> dict[str, Any]:
    """AWS ``UsagePlanKey`` (without ``value``: fastgw does not keep key values)."""
    return {"id": key.id, "type": "API_KEY", "name": key.name}


KEY_PATCH_PATHS = {
    "/name": "name",
    "/description": "description",
    "/enabled": "enabled",
    "/customerId": "customerId",
}
PLAN_PATCH_PATHS = {
    "/name": ("name",),
    "/description": ("description",),
    "/fail_open": ("fail_open",),
    "/throttle/rateLimit": ("throttle", "rateLimit"),
    "/throttle/burstLimit": ("throttle", "burstLimit"),
    "/quota/limit": ("quota", "limit"),
    "/quota/period": ("quota", "period"),
    "/quota/offset": ("quota", "offset"),
}


def _op_path(origin: dict[str, int], ops: PatchRequest, err: ApiError) -> ApiError:
    """Point a validation error of a translated patch at the patch operation it came from."""
    if err.path in origin:
        i = origin[err.path]
        op = ops.patchOperations[i]
        err.message = f"Invalid value {op.value!r} for {op.path}: {err.message.replace(' | null', '')}"
        err.path = f"$.patchOperations[{i}].value"
    return err


def parse_csv(text: str) -> list[list[str]]:
    """CSV rows; fields may be quoted with " or ' (AWS's key-file format allows both)."""
    rows: list[list[str]] = []
    row: list[str] = []
    cur: list[str] = []
    i, n = 0, len(text)
    quote: str | None = None
    at_field_start = True
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == quote:
                if i + 1 < n and text[i + 1] == quote:
                    cur.append(ch)
                    i += 2
                    continue
                quote = None
            else:
                cur.append(ch)
            i += 1
            continue
        if at_field_start and ch in "\"'":
            quote = ch
            at_field_start = False
        elif ch == ",":
            row.append("".join(cur))
            cur = []
            at_field_start = True
        elif ch in "\r\n":
            if ch == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            row.append("".join(cur))
            rows.append(row)
            row, cur = [], []
            at_field_start = True
        else:
            cur.append(ch)
            at_field_start = False
        i += 1
    if cur or row:
        row.append("".join(cur))
        rows.append(row)
    return rows


def _valid_key_value(value: str) -> bool:
    return 20 <= len(value) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in value)


# ---------------------------------------------------------------------- the application
class AdminApp:
    """The resources: one instance per admin listener."""

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        token: str,
        flush: FlushFn | None = None,
        quota_view: QuotaViewFn | None = None,
        load: Callable[[], GatewayConfig] | None = None,
    ) -> None:
        self.config = config
        #: Reads the config file as it is now (deployments snapshot it); None: ``config``.
        self.load = load
        self.store = store
        self._token = token.encode()
        self.flush = flush
        self.quota_view = quota_view
        self.connections: set[AdminProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.server: asyncio.AbstractServer | None = None
        self.flush_task: asyncio.Task[None] | None = None
        self._deploy: Any = None  # fastgw.admin.deploy.DeploymentHandlers, on first use
        # API stage names as the config spells them -> canonical "apiId:stage".
        self._api_ids: dict[str, str] = {}
        self._stages: set[tuple[str, str]] = set()
        for api in config.apis:
            api_id = _api_id(api)
            self._api_ids[api.name] = api_id
            self._api_ids[api_id] = api_id
            for stage in api.stages:
                self._stages.add((api_id, stage.name))

    # ------------------------------------------------------------------ dispatch
    def authorized(self, req: Request) -> bool:
        values = req.headers.get("authorization", [])
        if len(values) != 1:
            return False
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._token)

    async def dispatch(self, req: Request) -> tuple[int, Any, list[tuple[str, str]]]:
        """Route and run one request: (status, JSON-able body or None, extra headers)."""
        try:
            if req.path in PUBLIC_PATHS:
                if req.method not in ("GET", "HEAD"):
                    return 405, {"message": "Method Not Allowed"}, [("allow", "GET")]
                if req.path == "/health":
                    return 200, {"status": "ok"}, []
                from fastgw.admin.openapi import openapi_document

                return 200, openapi_document(), []
            if req.path == "/dashboard" or req.path.startswith("/dashboard/"):
                # The page, its data and assets: bearer token or session cookie (fastgw.admin.dashboard).
                from fastgw.admin.dashboard import dispatch_dashboard

                return await dispatch_dashboard(self, req, self._token)
            if not self.authorized(req):
                return (
                    401,
                    {"message": "Unauthorized"},
                    [("www-authenticate", "Bearer"), ("x-amzn-ErrorType", "UnauthorizedException")],
                )
            found = match_route(req.path)
            if found is None:
                raise not_found("Not Found")
            route, params = found
            name = route.methods.get(req.method)
            if name is None:
                return 405, {"message": "Method Not Allowed"}, [("allow", ", ".join(route.methods))]
            handler: Handler | None = getattr(self, "h_" + name, None)
            if handler is None:
                if self._deploy is None:
                    from fastgw.admin.deploy import DeploymentHandlers

                    self._deploy = DeploymentHandlers(self)
                handler = getattr(self._deploy, "h_" + name)
            status, body = await handler(req, *params)
            return status, body, []
        except ApiError as ex:
            headers = [("x-amzn-ErrorType", ex.error_type)] if ex.error_type else []
            return ex.status, ex.body(), headers

    # ------------------------------------------------------------------ lookups
    async def _key(self, key_id: str) -> ApiKey:
        key = await self.store.get_key(key_id)
        if key is None:
            raise not_found(INVALID_KEY)
        return key

    async def _plan(self, plan_id: str) -> UsagePlan:
        plan = await self.store.get_plan(plan_id)
        if plan is None:
            raise not_found(INVALID_PLAN)
        return plan

    @staticmethod
    def _writable_key(key: ApiKey) -> None:
        if key.source == "config":
            raise conflict(f"API key {key.id} is declared in the config file (apiKeys); change it there")

    @staticmethod
    def _writable_plan(plan: UsagePlan) -> None:
        if plan.source == "config":
            raise conflict(
                f"Usage plan {plan.id} is declared in the config file (usagePlans); change it there"
            )

    def _stage_id(self, stage: PlanStage) -> tuple[str, str]:
        return self._api_ids.get(stage.apiId, stage.apiId), stage.stage

    def _check_stages(self, stages: list[PlanStage], base: str) -> None:
        """Stages must exist in the config (when it declares APIs) and appear once per plan."""
        seen: set[tuple[str, str]] = set()
        for i, stage in enumerate(stages):
            sid = self._stage_id(stage)
            if self._stages and sid not in self._stages:
                raise bad_request(
                    f"Invalid API Stage {{api: {stage.apiId}, stage: {stage.stage}}} specified",
                    f"{base}[{i}]",
                )
            if sid in seen:
                raise bad_request(f"Duplicate API Stage {stage.apiId}:{stage.stage}", f"{base}[{i}]")
            seen.add(sid)

    def _stage_clash(
        self, state: StateData, key_id: str, stages: list[PlanStage], plan_id: str
    ) -> str | None:
        """AWS: a key may be in only one plan per API stage (else which plan limits it?)."""
        mine = {self._stage_id(s) for s in stages}
        if not mine:
            return None
        for other in state.plans:
            if other.id == plan_id or key_id not in state.plan_keys.get(other.id, ()):
                continue
            shared = mine & {self._stage_id(s) for s in other.apiStages}
            if shared:
                api, stage = sorted(shared)[0]
                return (
                    f"Usage Plan {plan_id} cannot be added because API Key {key_id} cannot reference "
                    f"multiple Usage Plans with the same API Stage: {api}:{stage} (plan {other.id})"
                )
        return None

    # ------------------------------------------------------------------ API keys
    async def h_list_keys(self, req: Request) -> tuple[int, Any]:
        if req.flag("includeValues"):
            raise bad_request(
                "includeValues is not supported: fastgw keeps only a hash of each API key value; the "
                "value is returned once, by the request that creates or rotates the key",
                "$.includeValues",
            )
        name_query = req.arg("nameQuery")
        customer = req.arg("customerId")
        keys = await self.store.list_keys()
        if name_query:
            keys = [k for k in keys if k.name.startswith(name_query)]
        if customer:
            keys = [k for k in keys if k.customerId == customer]
        keys.sort(key=lambda k: (k.createdDate, k.id))
        return 200, {"items": [k.public() for k in keys], "position": None}

    async def h_get_key(self, req: Request, key_id: str) -> tuple[int, Any]:
        if req.flag("includeValue"):
            raise bad_request(
                "includeValue is not supported: fastgw keeps only a hash of each API key value",
                "$.includeValue",
            )
        return 200, (await self._key(key_id)).public()

    async def h_create_key(self, req: Request) -> tuple[int, Any]:
        if req.arg("mode") is not None:
            if req.arg("mode") != "import":
                raise bad_request(f"Invalid mode {req.arg('mode')!r}: only 'import' is supported", "$.mode")
            return await self.import_keys(req)
        body = decode_json(req.body, ApiKeyCreate)
        value = body.value or generate_key_value()
        value_hash = hash_key_value(value)
        if await self.store.key_by_hash(value_hash) is not None:
            raise conflict("API Key already exists")
        now = now_ts()
        key = ApiKey(
            id=new_id(),
            name=body.name,
            enabled=body.enabled,
            description=body.description,
            customerId=body.customerId,
            createdDate=now,
            lastUpdatedDate=now,
            stageKeys=list(body.stageKeys),
            tags=dict(body.tags),
            valuePrefix=value[:KEY_PREFIX_CHARS],
            valueHash=value_hash,
            source="api",
        )
        try:
            await self.store.put_key(key)
        except DuplicateValueError:
            raise conflict("API Key already exists") from None
        log.info("api key created", extra={"key_id": key.id})
        return 201, key.public(value)

    async def h_patch_key(self, req: Request, key_id: str) -> tuple[int, Any]:
        key = await self._key(key_id)
        data = decode_json(req.body, object)
        if isinstance(data, dict) and "patchOperations" in data:
            ops = convert(data, PatchRequest)
            translated: dict[str, Any] = {}
            origin: dict[str, int] = {}
            for i, op in enumerate(ops.patchOperations):
                if op.op != "replace":
                    raise bad_request(
                        f"Invalid patch operation specified: {op.op} (API keys support replace)",
                        f"$.patchOperations[{i}].op",
                    )
                name = KEY_PATCH_PATHS.get(op.path)
                if name is None:
                    raise bad_request(
                        f"Invalid patch path {op.path} (supported: {', '.join(KEY_PATCH_PATHS)})",
                        f"$.patchOperations[{i}].path",
                    )
                value: Any = op.value
                if value is None and name in ("description", "customerId"):
                    value = ""
                translated[name] = value
                origin[f"$.{name}"] = i
            try:
                patch = convert(translated, ApiKeyPatch, strict=False)
            except ApiError as ex:
                raise _op_path(origin, ops, ex) from None
        else:
            patch = convert(data, ApiKeyPatch)
        self._writable_key(key)
        changes = {f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not None}
        updated = msgspec.structs.replace(key, **changes, lastUpdatedDate=now_ts())
        await self.store.put_key(updated)
        log.info("api key updated", extra={"key_id": key.id, "fields": sorted(changes)})
        return 200, updated.public()

    async def h_delete_key(self, req: Request, key_id: str) -> tuple[int, Any]:
        key = await self._key(key_id)
        self._writable_key(key)
        if not await self.store.delete_key(key_id):
            raise not_found(INVALID_KEY)
        log.info("api key deleted", extra={"key_id": key_id})
        return 202, None

    async def h_rotate_key(self, req: Request, key_id: str) -> tuple[int, Any]:
        key = await self._key(key_id)
        body = decode_json(req.body, ApiKeyRotate) if req.body.strip() else ApiKeyRotate()
        self._writable_key(key)
        value = body.value or generate_key_value()
        value_hash = hash_key_value(value)
        holder = await self.store.key_by_hash(value_hash)
        if holder is not None:
            raise conflict("API Key already exists")
        updated = msgspec.structs.replace(
            key, valueHash=value_hash, valuePrefix=value[:KEY_PREFIX_CHARS], lastUpdatedDate=now_ts()
        )
        try:
            await self.store.put_key(updated)
        except DuplicateValueError:
            raise conflict("API Key already exists") from None
        log.info("api key rotated", extra={"key_id": key_id})
        return 200, updated.public(value)

    async def import_keys(self, req: Request) -> tuple[int, Any]:
        """AWS ImportApiKeys: ``POST /apikeys?mode=import&format=csv[&failonwarnings=true]``."""
        fmt = (req.arg("format") or "").lower()
        if fmt != "csv":
            raise bad_request("Invalid format: only format=csv is supported", "$.format")
        fail_on_warnings = req.flag("failonwarnings") or req.flag("failOnWarnings")
        try:
            text = req.body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise bad_request("The API key file is not UTF-8 text", "$") from None
        rows = [r for r in parse_csv(text) if any(c.strip() for c in r)]
        if not rows:
            raise bad_request("The API key file is empty", "$")
        header = [c.strip().lower() for c in rows[0]]
        if "name" not in header or "key" not in header:
            raise bad_request("The API key file must have the columns Name and Key (in its first line)", "$")
        col = {
            name: header.index(name)
            for name in ("name", "key", "description", "enabled", "usageplanids")
            if name in header
        }

        state = await self.store.load()
        plans = {p.id: p for p in state.plans}
        members = {pid: set(kids) for pid, kids in state.plan_keys.items()}
        by_hash = {k.valueHash: k for k in state.keys}
        warnings: list[str] = []
        # value hash -> (key record, plan ids), in file order; a later row with the same value wins.
        planned: dict[str, tuple[ApiKey, list[str]]] = {}
        now = now_ts()

        def cell(row: list[str], name: str) -> str:
            idx = col.get(name)
            return row[idx].strip() if idx is not None and idx < len(row) else ""

        for line, row in enumerate(rows[1:], start=2):
            name, value = cell(row, "name"), cell(row, "key")
            if not name or len(name) > 1024:
                warnings.append(f"line {line}: Name must be 1 to 1024 characters; row skipped")
                continue
            if not _valid_key_value(value):
                warnings.append(f"line {line}: Key must be 20 to 128 printable ASCII characters; row skipped")
                continue
            enabled_text = cell(row, "enabled").lower()
            if enabled_text not in ("", "true", "false"):
                warnings.append(f"line {line}: Enabled must be true or false; row skipped")
                continue
            value_hash = hash_key_value(value)
            existing = planned[value_hash][0] if value_hash in planned else by_hash.get(value_hash)
            if existing is not None and existing.source == "config":
                warnings.append(
                    f"line {line}: this key is declared in the config file (apiKeys); row skipped"
                )
                continue
            if existing is not None:
                key = msgspec.structs.replace(
                    existing,
                    name=name,
                    description=cell(row, "description"),
                    enabled=enabled_text != "false",
                    lastUpdatedDate=now,
                )
            else:
                key = ApiKey(
                    id=new_id(),
                    name=name,
                    description=cell(row, "description"),
                    enabled=enabled_text != "false",
                    createdDate=now,
                    lastUpdatedDate=now,
                    valuePrefix=value[:KEY_PREFIX_CHARS],
                    valueHash=value_hash,
                    source="import",
                )
            plan_ids: list[str] = []
            row_stages: set[tuple[str, str]] = set()
            for plan_id in (p.strip() for p in cell(row, "usageplanids").split(",")):
                if not plan_id or plan_id in plan_ids:
                    continue
                plan = plans.get(plan_id)
                if plan is None:
                    warnings.append(f"line {line}: {INVALID_PLAN}: {plan_id}; key not added to it")
                    continue
                stage_ids = {self._stage_id(s) for s in plan.apiStages}
                clash = self._stage_clash(state, key.id, plan.apiStages, plan.id)
                if clash is None and stage_ids & row_stages:
                    clash = (
                        f"API Key cannot reference multiple Usage Plans with the same API Stage ({plan_id})"
                    )
                if clash is not None:
                    warnings.append(f"line {line}: {clash}; key not added to it")
                    continue
                row_stages |= stage_ids
                plan_ids.append(plan_id)
            planned[value_hash] = (key, plan_ids)

        if warnings and fail_on_warnings:
            raise ApiError(
                400,
                f"{len(warnings)} warning(s) with failonwarnings=true: nothing was imported",
                BAD_REQUEST,
                extra={"warnings": warnings},
            )
        ids: list[str] = []
        for key, plan_ids in planned.values():
            await self.store.put_key(key)
            for plan_id in plan_ids:
                if key.id not in members.get(plan_id, set()):
                    await self.store.add_plan_key(plan_id, key.id)
            ids.append(key.id)
        log.info("api keys imported", extra={"count": len(ids), "warnings": len(warnings)})
        return 201, {"ids": ids, "warnings": warnings}

    # ------------------------------------------------------------------ usage plans
    async def h_list_plans(self, req: Request) -> tuple[int, Any]:
        key_id = req.arg("keyId")
        if key_id:  # AWS GetUsagePlans?keyId=: the plans the key is in
            state = await self.store.load()
            plans = [p for p in state.plans if key_id in state.plan_keys.get(p.id, ())]
        else:
            plans = await self.store.list_plans()
        plans.sort(key=lambda p: (p.name, p.id))
        return 200, {"items": [p.public() for p in plans], "position": None}

    async def h_get_plan(self, req: Request, plan_id: str) -> tuple[int, Any]:
        return 200, (await self._plan(plan_id)).public()

    async def h_create_plan(self, req: Request) -> tuple[int, Any]:
        body = decode_json(req.body, UsagePlanCreate)
        _check_quota(body.quota, "$.quota")
        self._check_stages(body.apiStages, "$.apiStages")
        plan = UsagePlan(
            id=new_id(),
            name=body.name,
            description=body.description,
            apiStages=list(body.apiStages),
            throttle=body.throttle,
            quota=body.quota,
            fail_open=body.fail_open,
            tags=dict(body.tags),
            source="api",
        )
        await self.store.put_plan(plan)
        log.info("usage plan created", extra={"plan_id": plan.id})
        return 201, plan.public()

    async def h_patch_plan(self, req: Request, plan_id: str) -> tuple[int, Any]:
        plan = await self._plan(plan_id)
        data = decode_json(req.body, object)
        clear: set[str] = set()
        stages = list(plan.apiStages)
        stages_changed = False
        if isinstance(data, dict) and "patchOperations" in data:
            ops = convert(data, PatchRequest)
            translated: dict[str, Any] = {}
            origin: dict[str, int] = {}
            for i, op in enumerate(ops.patchOperations):
                where = f"$.patchOperations[{i}]"
                if op.path == "/apiStages" and op.op in ("add", "remove"):
                    api_id, sep, stage_name = (op.value or "").partition(":")
                    if not sep or not api_id or not stage_name:
                        raise bad_request("An API stage is written 'apiId:stage'", f"{where}.value")
                    target = (self._api_ids.get(api_id, api_id), stage_name)
                    present = [s for s in stages if self._stage_id(s) == target]
                    if op.op == "add" and not present:
                        stages.append(PlanStage(apiId=api_id, stage=stage_name))
                    elif op.op == "remove":
                        if not present:
                            raise not_found(f"Invalid API Stage {op.value} specified")
                        stages = [s for s in stages if self._stage_id(s) != target]
                    stages_changed = True
                    continue
                if op.op == "remove" and op.path in ("/throttle", "/quota"):
                    clear.add(op.path[1:])
                    translated.pop(op.path[1:], None)
                    continue
                if op.op != "replace":
                    raise bad_request(f"Invalid patch operation specified: {op.op} {op.path}", f"{where}.op")
                parts = PLAN_PATCH_PATHS.get(op.path)
                if parts is None:
                    raise bad_request(
                        f"Invalid patch path {op.path} (supported: {', '.join(PLAN_PATCH_PATHS)}, "
                        "add/remove /apiStages, remove /throttle and /quota)",
                        f"{where}.path",
                    )
                if len(parts) == 1:
                    value: Any = op.value
                    if value is None and parts[0] == "description":
                        value = ""
                    translated[parts[0]] = value
                else:
                    section, name = parts
                    clear.discard(section)
                    if section not in translated:
                        current = getattr(plan, section)
                        translated[section] = msgspec.to_builtins(current) if current is not None else {}
                        if section == "quota" and current is not None:
                            translated[section]["offset"] = current.offset
                    translated[section][name] = op.value
                origin[f"$.{'.'.join(parts)}"] = i
            try:
                patch = convert(translated, UsagePlanPatch, strict=False)
            except ApiError as ex:
                raise _op_path(origin, ops, ex) from None
        else:
            patch = convert(data, UsagePlanPatch)
            if patch.apiStages is not None:
                stages = list(patch.apiStages)
                stages_changed = True
        self._writable_plan(plan)
        changes: dict[str, Any] = {
            f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not None
        }
        changes.pop("apiStages", None)
        for name in clear:
            changes[name] = None
        if stages_changed:
            self._check_stages(stages, "$.apiStages")
            changes["apiStages"] = stages
        updated = msgspec.structs.replace(plan, **changes)
        _check_quota(updated.quota, "$.quota")
        if stages_changed:
            state = await self.store.load()
            for key_id in state.plan_keys.get(plan_id, []):
                clash = self._stage_clash(state, key_id, updated.apiStages, plan_id)
                if clash is not None:
                    raise conflict(clash)
        await self.store.put_plan(updated)
        log.info("usage plan updated", extra={"plan_id": plan_id, "fields": sorted(changes)})
        return 200, updated.public()

    async def h_delete_plan(self, req: Request, plan_id: str) -> tuple[int, Any]:
        plan = await self._plan(plan_id)
        self._writable_plan(plan)
        if not await self.store.delete_plan(plan_id):
            raise not_found(INVALID_PLAN)
        log.info("usage plan deleted", extra={"plan_id": plan_id})
        return 202, None

    # ------------------------------------------------------------------ plan keys
    async def h_list_plan_keys(self, req: Request, plan_id: str) -> tuple[int, Any]:
        await self._plan(plan_id)
        name_query = req.arg("nameQuery")
        items = []
        for key_id in await self.store.plan_key_ids(plan_id):
            key = await self.store.get_key(key_id)
            if key is not None and (not name_query or key.name.startswith(name_query)):
                items.append(_plan_key_view(key))
        return 200, {"items": items, "position": None}

    async def h_add_plan_key(self, req: Request, plan_id: str) -> tuple[int, Any]:
        plan = await self._plan(plan_id)
        body = decode_json(req.body, UsagePlanKeyCreate)
        key = await self._key(body.keyId)
        state = await self.store.load()
        if key.id in state.plan_keys.get(plan_id, ()):
            raise conflict(f"API Key {key.id} is already in Usage Plan {plan_id}")
        clash = self._stage_clash(state, key.id, plan.apiStages, plan_id)
        if clash is not None:
            raise conflict(clash)
        await self.store.add_plan_key(plan_id, key.id)
        log.info("usage plan key added", extra={"plan_id": plan_id, "key_id": key.id})
        return 201, _plan_key_view(key)

    async def _member(self, plan_id: str, key_id: str) -> tuple[UsagePlan, ApiKey]:
        plan = await self._plan(plan_id)
        if key_id not in await self.store.plan_key_ids(plan_id):
            raise not_found(INVALID_PLAN_KEY)
        return plan, await self._key(key_id)

    async def h_get_plan_key(self, req: Request, plan_id: str, key_id: str) -> tuple[int, Any]:
        _, key = await self._member(plan_id, key_id)
        return 200, _plan_key_view(key)

    async def h_remove_plan_key(self, req: Request, plan_id: str, key_id: str) -> tuple[int, Any]:
        plan, key = await self._member(plan_id, key_id)
        if plan.source == "config" and key.source == "config":
            raise conflict(
                f"API key {key_id} is in usage plan {plan_id} by the config file (usagePlans[].keys); "
                "change it there"
            )
        if not await self.store.remove_plan_key(plan_id, key_id):
            raise not_found(INVALID_PLAN_KEY)
        log.info("usage plan key removed", extra={"plan_id": plan_id, "key_id": key_id})
        return 202, None

    # ------------------------------------------------------------------ stage caches
    def _stage_uid(self, restapi_id: str, stage_name: str) -> str:
        """The canonical "apiId:stageName" of a configured stage (the API by id or name), else 404."""
        api_id = self._api_ids.get(restapi_id)
        if api_id is None:
            raise not_found(INVALID_API)
        if (api_id, stage_name) not in self._stages:
            raise not_found(INVALID_STAGE)
        return f"{api_id}:{stage_name}"

    async def _add_purge(
        self, stage: str, op: CachePurgeOp, path: str = "", method: str = "*", key: str = ""
    ) -> CachePurge:
        at = now_ts()
        seq = await self.store.add_cache_purge(stage, op, path=path, method=method, key=key, at=at)
        purge = CachePurge(seq=seq, stage=stage, op=op, path=path, method=method, key=key, at=at)
        log.info(
            "stage cache purge recorded",
            extra={"seq": seq, "stage": stage, "op": op, "path": path, "method": method},
        )
        return purge

    async def h_metrics(self, req: Request) -> tuple[int, Any]:
        """Prometheus text exposition of the node's metrics (every worker's, summed)."""
        from fastgw.telemetry import metrics, prometheus
        from fastgw.telemetry.node import node_directory

        directory = node_directory()
        if directory is None:
            raise not_found("Metrics are not collected by this process")
        text = prometheus.exposition(metrics.node_totals(directory))
        return 200, Raw(text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    async def h_flush_stage_cache(self, req: Request, restapi_id: str, stage_name: str) -> tuple[int, Any]:
        """AWS FlushStageCache: 202 and no body; every worker drops the stage's entries."""
        stage = self._stage_uid(restapi_id, stage_name)
        await self._add_purge(stage, "flush")
        return 202, None

    async def h_purge_stage_cache(self, req: Request, restapi_id: str, stage_name: str) -> tuple[int, Any]:
        """fastgw: purge one resource path, a path prefix, or one cache key; 202 and the record."""
        stage = self._stage_uid(restapi_id, stage_name)
        body = decode_json(req.body, CachePurgeRequest)
        path = body.path
        if path:
            try:
                # APPSEC: the form requests are cached under (one parse, one truth).
                path = normalize_path(path)
            except InvalidPathError as ex:
                raise bad_request(f"Invalid path: {ex}", "$.path") from None
        elif not body.key:
            raise bad_request("path is required (a resource path such as /pets, or key)", "$.path")
        if body.key and body.prefix:
            raise bad_request("key names one cache entry: it cannot be combined with prefix", "$.key")
        op: CachePurgeOp = "prefix" if body.prefix else "key"
        purge = await self._add_purge(stage, op, path, body.method, body.key)
        return 202, purge.public()

    # ------------------------------------------------------------------ usage
    async def _flush(self) -> None:
        if self.flush is None:
            return
        try:
            await self.flush()
        except Exception:
            # Serve what the store has; the flusher logs its own trouble once per failure.
            log.warning("usage flush failed; answering from stored figures", exc_info=True)

    async def h_get_usage(self, req: Request, plan_id: str) -> tuple[int, Any]:
        start = _parse_date(req.arg("startDate"), "startDate")
        end = _parse_date(req.arg("endDate"), "endDate")
        if end < start:
            raise bad_request("endDate must not be before startDate", "$.endDate")
        if end - start + 1 > MAX_USAGE_DAYS:
            raise bad_request(f"At most {MAX_USAGE_DAYS} days of usage per request", "$.endDate")
        plan = await self._plan(plan_id)
        key_id = req.arg("keyId")
        if key_id:
            await self._key(key_id)
            key_ids = [key_id]
        else:
            key_ids = await self.store.plan_key_ids(plan_id)
        await self._flush()
        quota = plan.quota
        first = period_start(quota.period, quota.offset, start) if quota is not None else start
        rows = await self.store.usage(plan_id, key_ids, first, end)
        items: dict[str, list[list[int | None]]] = {}
        for kid in key_ids:
            per_day = rows.get(kid, {})
            series: list[list[int | None]] = []
            for day in range(start, end + 1):
                used = per_day.get(day, 0)
                remaining: int | None = None
                if quota is not None:
                    since = period_start(quota.period, quota.offset, day)
                    in_period = sum(per_day.get(d, 0) for d in range(since, day + 1))
                    remaining = max(0, quota.limit - in_period)
                series.append([used, remaining])
            items[kid] = series
        return 200, {
            "usagePlanId": plan_id,
            "startDate": _iso_date(start),
            "endDate": _iso_date(end),
            "position": None,
            "items": items,
        }

    async def h_get_quota(self, req: Request, plan_id: str, key_id: str) -> tuple[int, Any]:
        plan, _ = await self._member(plan_id, key_id)
        if self.quota_view is not None:
            live = await self.quota_view(plan_id, key_id)
            if live is not None:
                return 200, live
        quota = plan.quota
        if quota is None:
            return 200, dict.fromkeys(
                ("limit", "period", "offset", "periodStart", "periodEnd", "used", "remaining")
            )
        await self._flush()
        today = day_number(time.time())
        since = period_start(quota.period, quota.offset, today)
        until = period_end(quota.period, quota.offset, today)
        rows = await self.store.usage(plan_id, [key_id], since, until - 1)
        used = sum(rows.get(key_id, {}).values())
        return 200, {
            "limit": quota.limit,
            "period": quota.period,
            "offset": quota.offset,
            "periodStart": _iso_instant(since),
            "periodEnd": _iso_instant(until),
            "used": used,
            "remaining": max(0, quota.limit - used),
        }

    # ------------------------------------------------------------------ lifecycle
    async def flush_loop(self) -> None:
        assert self.flush is not None
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("usage flush failed", exc_info=True)

    async def shutdown(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop accepting, finish in-flight requests (bounded), close every connection."""
        loop = asyncio.get_running_loop()
        self.draining = True
        if self.server is not None:
            self.server.close()
        for proto in list(self.connections):
            proto.shutdown()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for proto in list(self.connections):
            proto.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(0.1, deadline - loop.time()))
        for task in list(self.tasks):
            task.cancel()
        if self.flush_task is not None:
            self.flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.flush_task
            self.flush_task = None
            await self._flush()  # persist the last counters
        if self.server is not None:
            await self.server.wait_closed()


# ---------------------------------------------------------------------- the protocol
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _ParseAbort(Exception):
    """Raised from a parser callback to stop parsing with a status."""


class AdminProtocol(asyncio.Protocol):
    """One admin connection: httptools parsing, in-order answers, one timer."""

    def __init__(self, app: AdminApp) -> None:
        # Global
        self.app = app
        self.loop = asyncio.get_running_loop()
        # Per-connection
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request | _Failure] = deque()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False
        self.closing = False  # close after the response being produced
        self.failed = False
        # Per-request
        self.in_message = False
        self.url = bytearray()
        self.headers: dict[str, list[str]] = {}
        self.head_bytes = 0
        self.header_count = 0
        self.body = bytearray()
        self.abort_status: tuple[int, str] | None = None

    # ------------------------------------------------------------------ timer
    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, self._on_timer)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.task is not None or self.transport is None:
            return
        if self.in_message:
            self._fail(408, "Request Timeout")
        else:
            self.transport.close()  # idle keep-alive connection

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.app.connections.add(self)
        if self.app.draining:
            self.transport.close()
            return
        self._arm(HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self._disarm()
        self.pending.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Upgrade is not supported")
        except httptools.HttpParserError:
            status, message = self.abort_status or (400, "Bad Request")
            self._fail(status, message)

    def eof_received(self) -> bool | None:
        if self.failed:
            # The error reply is out (lingering): close; else it closes after writing it.
            return None if self.task is None and not self.pending else True
        if self.task is None and not self.pending:
            return None  # idle: close
        self.closing = True  # answer what was received, then close
        return True

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self.in_message = True
        self.url.clear()
        self.headers = {}
        self.head_bytes = 0
        self.header_count = 0
        self.body.clear()
        if self.task is None:
            self._arm(HEADER_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            self.abort_status = (414, "URI Too Long")
            raise _ParseAbort

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.head_bytes += len(name) + len(value) + 4
        if self.header_count > MAX_HEADERS or self.head_bytes > MAX_HEADER_BYTES:
            self.abort_status = (431, "Request Header Fields Too Large")
            raise _ParseAbort
        self.headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length")
        if length and length[-1].isdigit() and int(length[-1]) > MAX_BODY_BYTES:
            self.abort_status = (413, f"Request body too large (limit {MAX_BODY_BYTES} bytes)")
            raise _ParseAbort
        if self.task is None:
            self._arm(BODY_TIMEOUT)

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > MAX_BODY_BYTES:
            self.abort_status = (413, f"Request body too large (limit {MAX_BODY_BYTES} bytes)")
            raise _ParseAbort

    def on_message_complete(self) -> None:
        self.in_message = False
        url = httptools.parse_url(bytes(self.url))
        path = (url.path or b"/").decode("latin-1")
        query = parse_qs(url.query.decode("latin-1"), keep_blank_values=True) if url.query else {}
        req = Request(
            method=self.parser.get_method().decode("latin-1"),
            target=self.url.decode("latin-1"),
            path=path if path == "/" else path.rstrip("/"),
            query=query,
            headers=self.headers,
            body=bytes(self.body),
            keep_alive=self.parser.should_keep_alive(),
        )
        self.pending.append(req)
        self._disarm()
        if len(self.pending) >= MAX_PIPELINED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._start()

    # ------------------------------------------------------------------ answering
    def _fail(self, status: int, message: str) -> None:
        self.failed = True
        self.in_message = False
        self.pending.append(_Failure(status, message))
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._start()

    def _start(self) -> None:
        if self.task is None and self.pending:
            self._disarm()
            self.task = self.loop.create_task(self._run())
            self.app.tasks.add(self.task)
            self.task.add_done_callback(self.app.tasks.discard)

    async def _run(self) -> None:
        try:
            while self.pending and self.transport is not None:
                item = self.pending.popleft()
                if isinstance(item, _Failure):
                    self._write(item.status, {"message": item.message}, [], close=True)
                    return
                started = time.monotonic()
                try:
                    status, body, headers = await self.app.dispatch(item)
                except StoreError:
                    log.exception("state store failed", extra={"method": item.method, "path": item.path})
                    status, body, headers = 503, {"message": "The state store is unavailable"}, []
                except Exception:
                    log.exception("admin request failed", extra={"method": item.method, "path": item.path})
                    status, body, headers = 500, {"message": "Internal server error"}, []
                close = not item.keep_alive or self.closing or self.app.draining
                if item.method != "GET" or status >= 400:
                    log.info(
                        "admin request",
                        extra={
                            "method": item.method,
                            "path": item.path,
                            "status": status,
                            "ms": round((time.monotonic() - started) * 1000, 1),
                        },
                    )
                self._write(status, body, headers, close=close, head=item.method == "HEAD")
                if close:
                    return
                if self.paused and len(self.pending) < MAX_PIPELINED and not self.failed:
                    self.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
        finally:
            self.task = None
        if self.transport is not None and not self.transport.is_closing():
            if self.pending:
                self._start()
            elif self.in_message:
                self._arm(HEADER_TIMEOUT)
            else:
                self._arm(KEEPALIVE_TIMEOUT)

    def _write(
        self, status: int, body: Any, headers: list[tuple[str, str]], *, close: bool, head: bool = False
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if isinstance(body, Raw):
            payload, content_type = body.data, body.content_type
        else:
            payload = b"" if body is None else msgspec.json.encode(body)
            content_type = "application/json"
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"content-length: {len(payload)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
            "cache-control: no-store",
        ]
        if body is not None:
            lines.append(f"content-type: {content_type}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if close:
            lines.append("connection: close")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else payload))
        if close:
            if self.failed and transport.can_write_eof():
                # Lingering close (nginx's lingering_close): closing on a client that is still
                # sending a refused body resets the connection, and a reset can destroy the
                # error response in flight. Send FIN, discard what still arrives
                # (data_received ignores it once failed), close at EOF or after LINGER_SECONDS.
                transport.write_eof()
                if self.paused:
                    self.paused = False
                    transport.resume_reading()
                self.loop.call_later(LINGER_SECONDS, transport.close)
            else:
                transport.close()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Drain: close now if idle, else after the response being produced."""
        self.closing = True
        if self.task is None and not self.in_message and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# ---------------------------------------------------------------------- entry points
_APPS: dict[int, AdminApp] = {}


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_admin(
    config: GatewayConfig,
    store: Store,
    token: str,
    *,
    flush: FlushFn | None = None,
    quota_view: QuotaViewFn | None = None,
    sock: socket.socket | None = None,
    load: Callable[[], GatewayConfig] | None = None,
) -> asyncio.Server:
    """Listen on ``gateway.admin.listen`` (or serve ``sock``, already bound by the supervisor)
    and serve the admin API; stop it with ``stop_admin``."""
    app = AdminApp(config, store, token, flush, quota_view, load)
    loop = asyncio.get_running_loop()
    if sock is not None:
        server = await loop.create_server(lambda: AdminProtocol(app), sock=sock)
    else:
        host, port = _split_listen(config.gateway.admin.listen)
        server = await loop.create_server(lambda: AdminProtocol(app), host, port, reuse_address=True)
    app.server = server
    if flush is not None:
        app.flush_task = loop.create_task(app.flush_loop())
    _APPS[id(server)] = app
    return server


async def stop_admin(server: asyncio.AbstractServer, timeout: float = DRAIN_TIMEOUT) -> None:
    """Close the listener, let in-flight requests finish (at most ``timeout`` s), close connections."""
    app = _APPS.pop(id(server), None)
    if app is None:
        server.close()
        await server.wait_closed()
        return
    await app.shutdown(timeout)


def start_otlp(config: GatewayConfig) -> Any:
    """The OTLP metrics exporter of this node (fastgw.telemetry.otel), started; None when off."""
    import os

    from fastgw.telemetry.node import node_directory

    o = config.gateway.otlp
    directory = node_directory()
    if directory is None or not config.gateway.metrics:
        return None
    try:
        from fastgw.telemetry.otel import OtlpMetricsExporter, OtlpSettings, settings_from_env
    except ImportError:  # pragma: no cover - the otel extra is part of the install
        return None
    settings = settings_from_env(
        OtlpSettings(
            o.endpoint,
            o.metrics_endpoint,
            dict(o.headers),
            o.interval_seconds,
            o.timeout_seconds,
            o.service_name,
            dict(o.resource_attributes),
        )
    )
    if settings is None:
        return None
    try:
        exporter = OtlpMetricsExporter(
            settings, directory, instance_id=f"{socket.gethostname()}:{os.getppid()}"
        )
    except (RuntimeError, ValueError) as ex:
        log.error("OTLP metrics export disabled", extra={"error": str(ex)})
        return None
    exporter.start()
    log.info("OTLP metrics export", extra={"url": exporter.url, "interval_s": exporter.interval})
    return exporter


@dataclass
class _Stopper:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    signal: int = 0


def run_admin_process(
    config: GatewayConfig,
    store_factory: Callable[[], Store],
    flush_factory: Callable[[Store], Callable[[], Awaitable[None]]] | None = None,
    *,
    token: str | None = None,
    sock: socket.socket | None = None,
    load: Callable[[], GatewayConfig] | None = None,
) -> None:
    """Entry point of the admin process: serve until SIGTERM/SIGINT, then drain (bounded).

    ``token``: the one the caller resolved (the supervisor, which logs a generated file's path);
    resolved here with ``resolve_token`` when omitted.
    """
    import uvloop

    from fastgw.admin.token import check_listen, resolve_token, token_is_explicit

    admin = config.gateway.admin
    check_listen(admin, token_is_explicit(admin))
    generated: str | None = None
    if token is None:
        token, generated = resolve_token(admin, config.gateway.state.path)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    store = store_factory()
    otlp: Any = None
    try:
        loop.run_until_complete(store.open())
        flush = flush_factory(store) if flush_factory is not None else None
        server = loop.run_until_complete(serve_admin(config, store, token, flush=flush, sock=sock, load=load))
        otlp = start_otlp(config)
        stopper = _Stopper()

        def on_signal(signum: int) -> None:
            stopper.signal = signum
            stopper.event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

        def on_reload() -> None:
            # The supervisor accepted a new config: deployments are checked against it.
            app = next(iter(_APPS.values()), None)
            if app is None or load is None:
                return
            try:
                app.config = load()
            except Exception as ex:  # the supervisor validated it; a racing edit is logged
                log.warning("admin config not refreshed", extra={"error": str(ex)})

        loop.add_signal_handler(signal.SIGHUP, on_reload)
        log.info(
            "admin API serving",
            extra={"listen": admin.listen, **({"token_file": generated} if generated else {})},
        )
        loop.run_until_complete(stopper.event.wait())
        log.info("admin API draining", extra={"signal": signal.Signals(stopper.signal).name})
        loop.run_until_complete(stop_admin(server, DRAIN_TIMEOUT))
    finally:
        if otlp is not None:
            otlp.stop(timeout=5.0)  # a last export, with the workers' last publishes
        try:
            loop.run_until_complete(store.close())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)
    log.info("admin API stopped")

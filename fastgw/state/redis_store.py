"""The Redis state store: API keys, usage plans, membership, usage, cache purges, deployments and
stage pointers, for several nodes.

Layout, every key under ``settings.prefix`` (default ``fastgw:``)::

    keys              hash   key id -> ApiKey JSON (msgspec)
    keyhash           hash   valueHash -> key id (unique)
    plans             hash   plan id -> UsagePlan JSON
    plankeys:{plan}   set    key ids of the plan
    cachepurges       list   the last MAX_CACHE_PURGES CachePurge JSON, oldest first
    cachepurgeseq     string INCR: the seq of the last cache purge (never reset by trimming)
    deploy:{api}      hash   deployment id -> Deployment (msgpack: the definition stays raw bytes)
    deploynums:{api}  zset   deployment id, scored by its number (oldest first, for the cap)
    deployseq:{api}   string INCR: the API's last deployment number (never reset by deletes)
    stages            hash   "apiId/stage" -> StagePointer JSON (Lua reads its deployment ids)
    version           string INCR on every write of keys, plans, membership, cache purges or stages
    usage:{plan}:{key}:{day}  integer: requests counted on that UTC day, expiring
                      USAGE_TTL_DAYS days after the day ended (nothing lives forever)

Writes that touch several keys run as one Lua script or one MULTI/EXEC, and ``load()`` reads
everything and the version in one script (with the deployments the stages point at), so a worker
never sees a half-applied write. The deployment scripts check "is it in use" against ``stages``
inside the same script that writes, so a stage never points at a deleted or evicted deployment.
Scripts build some key names from the prefix inside Redis: a standalone Redis (or a
Sentinel-managed primary) is required, not Redis Cluster.

Every call has a deadline (``timeout_ms``: socket timeouts plus ``asyncio.timeout``) and no
retries; any failure (refused, timed out, reset, an error reply) is raised as ``StoreError``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from fastgw.config.model import RedisSettings
from fastgw.state.model import (
    CACHE_PURGE_OPS,
    ApiKey,
    CachePurge,
    CachePurgeOp,
    Deployment,
    DeploymentInUseError,
    StagePointer,
    StateData,
    UsagePlan,
    check_api_id,
    deployment_digest,
    new_id,
    now_ts,
)
from fastgw.state.periods import DAY_SECONDS
from fastgw.state.store import MAX_CACHE_PURGES, Store, StoreError, check_definition

T = TypeVar("T")

USAGE_TTL_DAYS = 100
MGET_CHUNK = 1000  # keys per MGET in usage()
MAX_CONNECTIONS = 8

DUPLICATE_VALUE = "FASTGW_DUPLICATE_VALUE"
DUPLICATE_ID = "FASTGW_DUPLICATE_ID"
DEPLOYMENTS_FULL = "FASTGW_DEPLOYMENTS_FULL"
DEPLOYMENT_IN_USE = "FASTGW_DEPLOYMENT_IN_USE"
UNKNOWN_DEPLOYMENT = "FASTGW_UNKNOWN_DEPLOYMENT"
# Error replies of our scripts that callers turn into their own exceptions.
_ERROR_MARKERS = (DUPLICATE_VALUE, DUPLICATE_ID, DEPLOYMENTS_FULL, DEPLOYMENT_IN_USE, UNKNOWN_DEPLOYMENT)
ID_ATTEMPTS = 16  # fresh random deployment ids tried before giving up


def usage_expire_at(day: int) -> int:
    """Unix time at which the usage counter of UTC ``day`` expires."""
    return (day + 1 + USAGE_TTL_DAYS) * DAY_SECONDS


def make_client(settings: RedisSettings, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A redis.asyncio client with deadlines on every socket operation and no retries.

    The pool is bounded and blocks at most ``timeout_ms`` for a free connection. redis-py picks
    the hiredis parser when hiredis is installed.
    """
    timeout = settings.timeout_ms / 1000
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        lib_name=None,  # no CLIENT SETINFO round trips on each new connection
        lib_version=None,
    )
    return aioredis.Redis.from_pool(pool)


class Script:
    """A Lua script run with EVALSHA, loaded on NOSCRIPT (a restarted Redis forgets scripts)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await client.script_load(self.source)  # type: ignore[misc]
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]


# KEYS: keys, keyhash, version. ARGV: id, json, valueHash.
_PUT_KEY = Script("""
local id, hash = ARGV[1], ARGV[3]
if hash ~= '' then
  local owner = redis.call('HGET', KEYS[2], hash)
  if owner and owner ~= id then return redis.error_reply('FASTGW_DUPLICATE_VALUE') end
end
local old = redis.call('HGET', KEYS[1], id)
if old then
  local ok, rec = pcall(cjson.decode, old)
  if ok and type(rec) == 'table' and type(rec.valueHash) == 'string' and rec.valueHash ~= hash then
    if redis.call('HGET', KEYS[2], rec.valueHash) == id then redis.call('HDEL', KEYS[2], rec.valueHash) end
  end
end
redis.call('HSET', KEYS[1], id, ARGV[2])
if hash ~= '' then redis.call('HSET', KEYS[2], hash, id) end
return redis.call('INCR', KEYS[3])
""")

# KEYS: keys, keyhash, version, plans. ARGV: id, prefix.
_DELETE_KEY = Script("""
local id = ARGV[1]
local old = redis.call('HGET', KEYS[1], id)
if not old then return 0 end
local ok, rec = pcall(cjson.decode, old)
if ok and type(rec) == 'table' and type(rec.valueHash) == 'string' then
  if redis.call('HGET', KEYS[2], rec.valueHash) == id then redis.call('HDEL', KEYS[2], rec.valueHash) end
end
redis.call('HDEL', KEYS[1], id)
for _, plan in ipairs(redis.call('HKEYS', KEYS[4])) do
  redis.call('SREM', ARGV[2] .. 'plankeys:' .. plan, id)
end
redis.call('INCR', KEYS[3])
return 1
""")

# KEYS: plans, plankeys:{plan}, version. ARGV: id.
_DELETE_PLAN = Script("""
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if n > 0 then redis.call('INCR', KEYS[3]) end
return n
""")

# KEYS: plankeys:{plan}, version. ARGV: key id.
_REMOVE_PLAN_KEY = Script("""
local n = redis.call('SREM', KEYS[1], ARGV[1])
if n > 0 then redis.call('INCR', KEYS[2]) end
return n
""")

# KEYS: version, keys, plans, cachepurges, stages. ARGV: prefix. One consistent read of everything,
# with the deployments the stages and canaries point at (each once).
_LOAD = Script("""
local members = {}
local plans = redis.call('HGETALL', KEYS[3])
for i = 1, #plans, 2 do
  members[#members + 1] = plans[i]
  members[#members + 1] = redis.call('SMEMBERS', ARGV[1] .. 'plankeys:' .. plans[i])
end
local stages = redis.call('HVALS', KEYS[5])
local deployments, seen = {}, {}
for _, raw in ipairs(stages) do
  local p = cjson.decode(raw)
  local ids = {p.deploymentId}
  if type(p.canary) == 'table' then ids[2] = p.canary.deploymentId end
  for _, id in ipairs(ids) do
    local k = p.apiId .. '/' .. id
    if not seen[k] then
      seen[k] = true
      local rec = redis.call('HGET', ARGV[1] .. 'deploy:' .. p.apiId, id)
      if rec then deployments[#deployments + 1] = rec end
    end
  end
end
return {redis.call('GET', KEYS[1]) or '0', redis.call('HVALS', KEYS[2]), plans, members,
        redis.call('LRANGE', KEYS[4], 0, -1), stages, deployments}
""")

# Lua shared by the deployment scripts: deployment id -> the stages of API `api` whose pointer or
# canary points at it (`stages` is the stages hash, fields "apiId/stage").
_IN_USE = """
local function in_use(stages, api)
  local used, pfx = {}, api .. '/'
  local all = redis.call('HGETALL', stages)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #pfx) == pfx then
      local p = cjson.decode(all[i + 1])
      local ids = {p.deploymentId}
      if type(p.canary) == 'table' then ids[2] = p.canary.deploymentId end
      for _, id in ipairs(ids) do
        used[id] = used[id] or {}
        table.insert(used[id], string.sub(all[i], #pfx + 1))
      end
    end
  end
  return used
end
"""

# KEYS: deploy:{api}, deploynums:{api}, deployseq:{api}, stages. ARGV: id, the Deployment as a msgpack
# map without "number" (a fixmap: its first byte is 0x80 + the field count), apiId, the cap. Past the
# cap, the oldest deployments no stage uses go first; nothing is written when too few are free. The
# number goes in front of the other fields (the map's count + 1).
_ADD_DEPLOYMENT = Script(
    _IN_USE
    + """
local id, rec = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], id) == 1 then return redis.error_reply('FASTGW_DUPLICATE_ID') end
local excess = redis.call('HLEN', KEYS[1]) - tonumber(ARGV[4]) + 1
if excess > 0 then
  local used, victims = in_use(KEYS[4], ARGV[3]), {}
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if #victims >= excess then break end
    if not used[old] then victims[#victims + 1] = old end
  end
  if #victims < excess then return redis.error_reply('FASTGW_DEPLOYMENTS_FULL') end
  redis.call('HDEL', KEYS[1], unpack(victims))
  redis.call('ZREM', KEYS[2], unpack(victims))
end
local number = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], id, string.char(string.byte(rec, 1) + 1) .. cmsgpack.pack('number')
  .. cmsgpack.pack(number) .. string.sub(rec, 2))
redis.call('ZADD', KEYS[2], number, id)
return number
"""
)

# KEYS: deploy:{api}, deploynums:{api}, stages. ARGV: apiId, deployment id.
_DELETE_DEPLOYMENT = Script(
    _IN_USE
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
local users = in_use(KEYS[3], ARGV[1])[ARGV[2]]
if users then
  table.sort(users)
  return redis.error_reply('FASTGW_DEPLOYMENT_IN_USE ' .. table.concat(users, ', '))
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""
)

# KEYS: stages, deploy:{api}, version. ARGV: "apiId/stage", StagePointer JSON, deployment id, the
# canary's deployment id or ''.
_PUT_STAGE = Script("""
for i = 3, 4 do
  if ARGV[i] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    return redis.error_reply('FASTGW_UNKNOWN_DEPLOYMENT ' .. ARGV[i])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[3])
""")

# KEYS: stages, version. ARGV: "apiId/stage".
_DELETE_STAGE = Script("""
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n > 0 then redis.call('INCR', KEYS[2]) end
return n
""")

# KEYS: cachepurges, cachepurgeseq, version. ARGV: the purge's JSON object without "seq" (it starts
# with '{"stage":'), how many to keep. The seq goes in front of the other fields.
_ADD_CACHE_PURGE = Script("""
local seq = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('INCR', KEYS[3])
return seq
""")

# KEYS: usage counter. ARGV: count, expire-at (unix s). SET keeps the day's fixed expiry.
_SET_USAGE = Script("""
redis.call('SET', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
""")

_key_decoder = msgspec.json.Decoder(ApiKey)
_plan_decoder = msgspec.json.Decoder(UsagePlan)
_purge_decoder = msgspec.json.Decoder(CachePurge)
_pointer_decoder = msgspec.json.Decoder(StagePointer)
_deployment_decoder = msgspec.msgpack.Decoder(Deployment)
_encoder = msgspec.json.Encoder()
_packer = msgspec.msgpack.Encoder()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pointer_order(p: StagePointer) -> tuple[str, str]:
    return (p.apiId, p.stage)


def _deployment_order(d: Deployment) -> tuple[str, int]:
    return (d.apiId, d.number)


class RedisStore(Store):
    """``Store`` over one Redis (see the module docstring for the layout)."""

    def __init__(self, settings: RedisSettings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.timeout = settings.timeout_ms / 1000
        self.client = client if client is not None else make_client(settings)
        p = self.prefix
        self.k_keys = p + "keys"
        self.k_keyhash = p + "keyhash"
        self.k_plans = p + "plans"
        self.k_version = p + "version"
        self.k_purges = p + "cachepurges"
        self.k_purge_seq = p + "cachepurgeseq"
        self.k_stages = p + "stages"

    def plankeys_key(self, plan_id: str) -> str:
        return f"{self.prefix}plankeys:{plan_id}"

    def usage_key(self, plan_id: str, key_id: str, day: int) -> str:
        return f"{self.prefix}usage:{plan_id}:{key_id}:{day}"

    def deploy_key(self, api_id: str) -> str:
        return f"{self.prefix}deploy:{api_id}"

    def deploynums_key(self, api_id: str) -> str:
        return f"{self.prefix}deploynums:{api_id}"

    def deployseq_key(self, api_id: str) -> str:
        return f"{self.prefix}deployseq:{api_id}"

    async def _call(self, op: Awaitable[T]) -> T:
        """Await one Redis operation under the deadline; every failure becomes ``StoreError``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await op
        except TimeoutError as ex:
            raise StoreError(f"redis: no answer within {self.settings.timeout_ms} ms") from ex
        except ResponseError as ex:
            if any(marker in str(ex) for marker in _ERROR_MARKERS):
                raise
            raise StoreError(f"redis: {ex}") from ex
        except (RedisError, OSError) as ex:
            raise StoreError(f"redis: {ex}") from ex

    async def _script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._call(script(self.client, keys, args))

    async def _transaction(self, *commands: tuple[Any, ...]) -> list[Any]:
        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                for cmd in commands:
                    pipe.execute_command(*cmd)
                return await pipe.execute()

        return await self._call(run())

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Nothing to do: connections are made on first use (so a down Redis never fails this)."""

    async def close(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ version / load
    async def version(self) -> int:
        raw = await self._call(self.client.get(self.k_version))
        return int(raw) if raw is not None else 0

    async def load(self) -> StateData:
        raw = await self._script(
            _LOAD, [self.k_version, self.k_keys, self.k_plans, self.k_purges, self.k_stages], [self.prefix]
        )
        try:
            version = int(raw[0])
            keys = sorted((_key_decoder.decode(v) for v in raw[1]), key=lambda k: k.id)
            plans_flat = raw[2]
            plans = sorted(
                (_plan_decoder.decode(plans_flat[i + 1]) for i in range(0, len(plans_flat), 2)),
                key=lambda p: p.id,
            )
            members = raw[3]
            plan_keys = {
                _text(members[i]): sorted(_text(m) for m in members[i + 1]) for i in range(0, len(members), 2)
            }
            purges = [_purge_decoder.decode(v) for v in raw[4]]
            stages = sorted((_pointer_decoder.decode(v) for v in raw[5]), key=_pointer_order)
            deployments = {
                d.key: d for d in sorted(map(_deployment_decoder.decode, raw[6]), key=_deployment_order)
            }
        except (msgspec.DecodeError, ValueError, IndexError, TypeError) as ex:
            raise StoreError(f"redis: unreadable state: {ex}") from ex
        return StateData(
            version=version,
            keys=keys,
            plans=plans,
            plan_keys=plan_keys,
            cache_purges=purges,
            stages=stages,
            deployments=deployments,
        )

    # ------------------------------------------------------------------ API keys
    async def put_key(self, key: ApiKey) -> None:
        """Insert or replace; ``ValueError`` if another key already has this ``valueHash``."""
        try:
            await self._script(
                _PUT_KEY,
                [self.k_keys, self.k_keyhash, self.k_version],
                [key.id, _encoder.encode(key), key.valueHash],
            )
        except ResponseError as ex:
            raise ValueError("an API key with this value already exists") from ex

    async def get_key(self, key_id: str) -> ApiKey | None:
        raw = await self._call(self.client.hget(self.k_keys, key_id))  # type: ignore[arg-type]
        return self._decode_key(raw)

    async def list_keys(self) -> list[ApiKey]:
        raw = await self._call(self.client.hvals(self.k_keys))  # type: ignore[arg-type]
        try:
            return sorted((_key_decoder.decode(v) for v in raw), key=lambda k: k.id)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable key: {ex}") from ex

    async def key_by_hash(self, value_hash: str) -> ApiKey | None:
        key_id = await self._call(self.client.hget(self.k_keyhash, value_hash))  # type: ignore[arg-type]
        if key_id is None:
            return None
        key = await self.get_key(_text(key_id))
        return key if key is not None and key.valueHash == value_hash else None

    async def delete_key(self, key_id: str) -> bool:
        n = await self._script(
            _DELETE_KEY,
            [self.k_keys, self.k_keyhash, self.k_version, self.k_plans],
            [key_id, self.prefix],
        )
        return bool(n)

    def _decode_key(self, raw: bytes | None) -> ApiKey | None:
        if raw is None:
            return None
        try:
            return _key_decoder.decode(raw)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable key: {ex}") from ex

    # ------------------------------------------------------------------ usage plans
    async def put_plan(self, plan: UsagePlan) -> None:
        await self._transaction(
            ("HSET", self.k_plans, plan.id, _encoder.encode(plan)), ("INCR", self.k_version)
        )

    async def get_plan(self, plan_id: str) -> UsagePlan | None:
        raw = await self._call(self.client.hget(self.k_plans, plan_id))  # type: ignore[arg-type]
        if raw is None:
            return None
        try:
            return _plan_decoder.decode(raw)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable plan: {ex}") from ex

    async def list_plans(self) -> list[UsagePlan]:
        raw = await self._call(self.client.hvals(self.k_plans))  # type: ignore[arg-type]
        try:
            return sorted((_plan_decoder.decode(v) for v in raw), key=lambda p: p.id)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable plan: {ex}") from ex

    async def delete_plan(self, plan_id: str) -> bool:
        n = await self._script(
            _DELETE_PLAN, [self.k_plans, self.plankeys_key(plan_id), self.k_version], [plan_id]
        )
        return bool(n)

    async def add_plan_key(self, plan_id: str, key_id: str) -> None:
        await self._transaction(("SADD", self.plankeys_key(plan_id), key_id), ("INCR", self.k_version))

    async def remove_plan_key(self, plan_id: str, key_id: str) -> bool:
        n = await self._script(_REMOVE_PLAN_KEY, [self.plankeys_key(plan_id), self.k_version], [key_id])
        return bool(n)

    async def plan_key_ids(self, plan_id: str) -> list[str]:
        raw = await self._call(self.client.smembers(self.plankeys_key(plan_id)))  # type: ignore[arg-type]
        return sorted(_text(m) for m in raw)

    # ------------------------------------------------------------------ usage
    async def usage(
        self, plan_id: str, key_ids: list[str] | None, start_day: int, end_day: int
    ) -> dict[str, dict[int, int]]:
        """Counted requests per key per day in [start_day, end_day]; ``key_ids=None`` means the
        plan's current keys. Keys and days without requests are omitted."""
        if key_ids is None:
            key_ids = await self.plan_key_ids(plan_id)
        days = range(start_day, end_day + 1)
        cells = [(key_id, day) for key_id in key_ids for day in days]
        out: dict[str, dict[int, int]] = {}
        for lo in range(0, len(cells), MGET_CHUNK):
            chunk = cells[lo : lo + MGET_CHUNK]
            names = [self.usage_key(plan_id, key_id, day) for key_id, day in chunk]
            values = await self._call(self.client.mget(names))
            for (key_id, day), value in zip(chunk, values, strict=True):
                if value is None:
                    continue
                n = int(value)
                if n:
                    out.setdefault(key_id, {})[day] = n
        return out

    async def set_usage(self, plan_id: str, key_id: str, day: int, used: int) -> None:
        """Set the day's counter; it expires ``USAGE_TTL_DAYS`` after the day (a fixed instant,
        so rewriting it keeps its expiry; a day older than that is gone at once)."""
        await self._script(
            _SET_USAGE, [self.usage_key(plan_id, key_id, day)], [int(used), usage_expire_at(day)]
        )

    # ------------------------------------------------------------------ cache purges
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
        if op not in CACHE_PURGE_OPS:
            raise ValueError(f"unknown cache purge op {op!r}")
        # Field order matters: the script puts "seq" in front of the object, so it must not be empty.
        doc = {
            "stage": stage,
            "op": op,
            "path": path,
            "method": method,
            "key": key,
            "at": now_ts() if at is None else float(at),
        }
        seq = await self._script(
            _ADD_CACHE_PURGE,
            [self.k_purges, self.k_purge_seq, self.k_version],
            [_encoder.encode(doc), MAX_CACHE_PURGES],
        )
        return int(seq)

    # ------------------------------------------------------------------ deployments
    async def add_deployment(
        self, api_id: str, definition: bytes, description: str = "", *, at: float | None = None
    ) -> Deployment:
        check_api_id(api_id)
        data = check_definition(definition)
        digest = deployment_digest(data)
        created = now_ts() if at is None else float(at)
        keys = [
            self.deploy_key(api_id),
            self.deploynums_key(api_id),
            self.deployseq_key(api_id),
            self.k_stages,
        ]
        cap = max(1, int(self.max_deployments))
        for _ in range(ID_ATTEMPTS):
            dep_id = new_id(6)
            # Every field but "number", which the script assigns and puts in front.
            packed = _packer.encode(
                {
                    "id": dep_id,
                    "apiId": api_id,
                    "createdDate": created,
                    "description": description,
                    "definition": data,
                    "digest": digest,
                }
            )
            assert packed[0] == 0x86  # a fixmap of 6 entries (see _ADD_DEPLOYMENT)
            try:
                number = await self._script(_ADD_DEPLOYMENT, keys, [dep_id, packed, api_id, cap])
            except ResponseError as ex:
                if DUPLICATE_ID in str(ex):
                    continue
                if DEPLOYMENTS_FULL in str(ex):
                    raise StoreError(
                        f"API {api_id} has {cap} deployments (the limit) and stages use them all"
                    ) from ex
                raise StoreError(f"redis: {ex}") from ex  # pragma: no cover - no other marker here
            return Deployment(
                id=dep_id,
                apiId=api_id,
                number=int(number),
                createdDate=created,
                description=description,
                definition=data,
                digest=digest,
            )
        raise StoreError(f"no free deployment id for API {api_id}")  # pragma: no cover - 36**6 ids

    async def list_deployments(self, api_id: str) -> list[Deployment]:
        raw = await self._call(self.client.hvals(self.deploy_key(api_id)))  # type: ignore[arg-type]
        try:
            return sorted(map(_deployment_decoder.decode, raw), key=_deployment_order)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable deployment: {ex}") from ex

    async def get_deployment(self, api_id: str, deployment_id: str) -> Deployment | None:
        raw = await self._call(self.client.hget(self.deploy_key(api_id), deployment_id))  # type: ignore[arg-type]
        if raw is None:
            return None
        try:
            return _deployment_decoder.decode(raw)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable deployment: {ex}") from ex

    async def delete_deployment(self, api_id: str, deployment_id: str) -> bool:
        try:
            n = await self._script(
                _DELETE_DEPLOYMENT,
                [self.deploy_key(api_id), self.deploynums_key(api_id), self.k_stages],
                [api_id, deployment_id],
            )
        except ResponseError as ex:
            if DEPLOYMENT_IN_USE not in str(ex):
                raise StoreError(f"redis: {ex}") from ex  # pragma: no cover - no other marker here
            stages = str(ex).split(DEPLOYMENT_IN_USE, 1)[1].strip()
            raise DeploymentInUseError(
                f"deployment {deployment_id} of API {api_id} is in use by stage(s) {stages}"
            ) from None
        return bool(n)

    # ------------------------------------------------------------------ stage pointers
    async def put_stage_pointer(self, pointer: StagePointer) -> None:
        canary_id = pointer.canary.deploymentId if pointer.canary is not None else ""
        try:
            await self._script(
                _PUT_STAGE,
                [self.k_stages, self.deploy_key(pointer.apiId), self.k_version],
                [pointer.key, _encoder.encode(pointer), pointer.deploymentId, canary_id],
            )
        except ResponseError as ex:
            if UNKNOWN_DEPLOYMENT not in str(ex):
                raise StoreError(f"redis: {ex}") from ex  # pragma: no cover - no other marker here
            dep_id = str(ex).split(UNKNOWN_DEPLOYMENT, 1)[1].strip()
            raise KeyError(f"API {pointer.apiId} has no deployment {dep_id}") from None

    async def get_stage_pointer(self, api_id: str, stage: str) -> StagePointer | None:
        raw = await self._call(self.client.hget(self.k_stages, f"{api_id}/{stage}"))  # type: ignore[arg-type]
        if raw is None:
            return None
        try:
            return _pointer_decoder.decode(raw)
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable stage pointer: {ex}") from ex

    async def delete_stage_pointer(self, api_id: str, stage: str) -> bool:
        n = await self._script(_DELETE_STAGE, [self.k_stages, self.k_version], [f"{api_id}/{stage}"])
        return bool(n)

    async def list_stage_pointers(self, api_id: str | None = None) -> list[StagePointer]:
        raw = await self._call(self.client.hvals(self.k_stages))  # type: ignore[arg-type]
        try:
            pointers = [_pointer_decoder.decode(v) for v in raw]
        except msgspec.DecodeError as ex:
            raise StoreError(f"redis: unreadable stage pointer: {ex}") from ex
        if api_id is not None:
            pointers = [p for p in pointers if p.apiId == api_id]
        return sorted(pointers, key=_pointer_order)

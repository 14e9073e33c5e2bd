"""Lambda authorizers at request time, and the cache of their decisions.

An ``AuthorizerRuntime`` is compiled once per (API, authorizer) at config load. For a request it
reads the identity sources, answers 401 when one is missing (AWS does not call the function
then), looks the decision up in the cache, calls the function on a miss (TOKEN or REQUEST
event; payload 1.0 or 2.0 on HTTP APIs) and applies the decision: an IAM policy evaluated
against the method ARN (the result is memoised per ARN in the cached decision), or a simple
``isAuthorized`` response. ``principalId``, ``context`` and ``usageIdentifierKey`` go to the
request (``requestContext.authorizer``, and API-key selection with ``apiKeySource: AUTHORIZER``).
Authorizers fail closed: a timeout, an exception or a malformed answer is a 500, never a pass.

``DecisionCache``: every worker keeps recent decisions in memory (a hit costs a dict lookup)
in front of a store shared by the node's workers (the embedded SQLite state file) or by every
node (Redis, when ``gateway.state.backend`` is ``redis``). A decision is stored with its
expiry; an entry read from the shared store keeps the expiry it was written with. Keys are
SHA-256 digests of the identity values, so tokens are not kept in clear.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.authorizers import lambda_auth as la
from fastgw.functions.errors import FunctionError, FunctionTimeout, InvokeError
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import RedisSettings, StateSettings
    from fastgw.pipeline.request import Request
    from fastgw.pipeline.runtime import Services

log = logging.getLogger("fastgw.authorizer")

LOCAL_ENTRIES = 10000


class Decision:
    """A cached authorizer answer."""

    __slots__ = (
        "arns",
        "auth",
        "authorized",
        "compiled",
        "context",
        "policy",
        "principal_id",
        "simple",
        "usage_key",
    )

    def __init__(
        self,
        simple: bool,
        authorized: bool = False,
        principal_id: str | None = None,
        policy: Any = None,
        context: dict[str, Any] | None = None,
        usage_key: str | None = None,
    ) -> None:
        self.simple = simple
        self.authorized = authorized
        self.principal_id = principal_id
        self.policy = policy
        self.context = context or {}
        self.usage_key = usage_key
        # (route, method, path inside the stage) -> the policy's result for that request's
        # method ARN (memoised: the policy does not change; PERF: no ARN made per request)
        self.arns: dict[tuple[Any, str, str], str] = {}
        self.compiled: la.CompiledPolicy | None = None
        # requestContext.authorizer of a cache hit, built once (the events copy it).
        self.auth: dict[str, Any] | None = None

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "s": self.simple,
                "a": self.authorized,
                "p": self.principal_id,
                "d": self.policy,
                "c": self.context,
                "u": self.usage_key,
            }
        )

    @classmethod
    def load(cls, data: bytes) -> Decision:
        d = orjson.loads(data)
        return cls(d["s"], d["a"], d["p"], d["d"], d["c"], d["u"])


class _SqliteShared:
    """Decisions shared by a node's workers in the embedded state file (a thread does the I/O)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastgw-authz")
        self.conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        conn = self.conn
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS authorizer_cache (k TEXT PRIMARY KEY, exp REAL, v BLOB)")
            self.conn = conn
        return conn

    def _get(self, key: str, now: float) -> tuple[float, bytes] | None:
        row = self._db().execute("SELECT exp, v FROM authorizer_cache WHERE k = ?", (key,)).fetchone()
        if row is None or row[0] <= now:
            return None
        return row[0], row[1]

    def _put(self, key: str, exp: float, value: bytes) -> None:
        db = self._db()
        db.execute("INSERT OR REPLACE INTO authorizer_cache (k, exp, v) VALUES (?, ?, ?)", (key, exp, value))
        if hash(key) % 64 == 0:  # now and then, drop what expired
            db.execute("DELETE FROM authorizer_cache WHERE exp <= ?", (time.time(),))

    async def get(self, key: str) -> tuple[float, bytes] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._get, key, time.time())

    async def put(self, key: str, exp: float, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, self._put, key, exp, value)

    async def aclose(self) -> None:
        self.pool.shutdown(wait=False)


class _RedisShared:
    """Decisions shared by every node through Redis (SET with PX)."""

    def __init__(self, settings: RedisSettings) -> None:
        import redis.asyncio as aioredis

        self.prefix = settings.prefix + "authz:"
        self.timeout = settings.timeout_ms / 1000.0
        self.redis = aioredis.Redis.from_url(settings.url, socket_timeout=self.timeout)

    async def get(self, key: str) -> tuple[float, bytes] | None:
        async with asyncio.timeout(self.timeout):
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            value, ttl = await pipe.execute()
        if value is None or ttl is None or ttl <= 0:
            return None
        return time.time() + ttl / 1000.0, value

    async def put(self, key: str, exp: float, value: bytes) -> None:
        ms = int((exp - time.time()) * 1000)
        if ms > 0:
            async with asyncio.timeout(self.timeout):
                await self.redis.set(self.prefix + key, value, px=ms)

    async def aclose(self) -> None:
        await self.redis.aclose()


class DecisionCache:
    """Per-worker decisions in front of the node's (or cluster's) shared store."""

    def __init__(self, shared: _SqliteShared | _RedisShared | None) -> None:
        self.local: dict[str, tuple[float, Decision]] = {}
        self.shared = shared
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0
        self.shared_errors = 0

    def get_local(self, key: Any, now: float) -> Decision | None:
        entry = self.local.get(key)
        if entry is not None:
            if entry[0] > now:
                self.hits += 1
                return entry[1]
            del self.local[key]
        return None

    def _remember(self, key: Any, exp: float, decision: Decision) -> None:
        local = self.local
        if len(local) >= LOCAL_ENTRIES:
            # Drop the oldest eighth (insertion order) rather than one entry per insert.
            for k in list(local)[: LOCAL_ENTRIES // 8]:
                del local[k]
        local[key] = (exp, decision)

    async def get_shared(self, key: str, local_key: Any) -> Decision | None:
        shared = self.shared
        if shared is None:
            return None
        try:
            got = await shared.get(key)
        except Exception as ex:  # a cache: failures only cost a call to the authorizer
            self.shared_errors += 1
            log.warning("authorizer cache read failed", extra={"error": repr(ex)})
            return None
        if got is None:
            return None
        self.shared_hits += 1
        decision = Decision.load(got[1])
        self._remember(local_key, got[0], decision)
        return decision

    async def put(self, key: str, local_key: Any, ttl: int, decision: Decision) -> None:
        exp = time.time() + ttl
        self._remember(local_key, exp, decision)
        if self.shared is not None:
            try:
                await self.shared.put(key, exp, decision.dump())
            except Exception as ex:
                self.shared_errors += 1
                log.warning("authorizer cache write failed", extra={"error": repr(ex)})

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()


def make_decision_cache(settings: StateSettings, loop: asyncio.AbstractEventLoop) -> DecisionCache:
    if settings.backend == "redis":
        return DecisionCache(_RedisShared(settings.redis))
    return DecisionCache(_SqliteShared(settings.path))


class AuthorizerRuntime:
    """One compiled Lambda authorizer of an API."""

    def __init__(
        self,
        name: str,
        api_kind: str,
        auth_type: str,
        function: Any,
        sources: list[la.IdentitySource],
        ttl: int,
        version: str,
        simple: bool,
        per_route: bool,
        timeout: float,
        validation: str | None,
        namespace: str,
    ) -> None:
        self.name = name
        self.api_kind = api_kind
        self.type = auth_type
        self.function = function
        self.sources = sources
        self.ttl = ttl
        self.version = version
        self.simple = simple
        self.per_route = per_route
        self.timeout = timeout
        self.validation = validation
        self.namespace = namespace
        self.calls = 0
        #: The one header a cached TOKEN authorizer reads (the usual shape), else None.
        self.token_header = (
            sources[0].name
            if auth_type == "TOKEN" and len(sources) == 1 and sources[0].kind == "header" and ttl > 0
            else None
        )

    async def authorize(self, req: Request, svc: Services) -> LocalReply | None:
        """None to go on (``req.authorizer`` set), else the reply that ends the request."""
        got = self.check_cached(req, svc)
        if type(got) is tuple:
            return await self.authorize_miss(req, svc, *got)
        return got  # type: ignore[return-value]

    def check_cached(self, req: Request, svc: Services) -> LocalReply | tuple[list[str], Any] | None:
        """Without waiting: the answer (identity missing, or a decision in this worker's
        memory), else ``(values, local_key)`` for ``authorize_miss``."""
        name = self.token_header
        cache = svc.decisions
        if name is not None and self.validation is None and cache is not None:
            # PERF: a TOKEN authorizer with its cache on, without identityValidationExpression:
            # one header read and one lookup (the same key as below).
            token = req.header(name)
            if not token:
                return la.unauthorized_reply(self.api_kind)
            local_key = (self, req.route.key if self.per_route else None, token)
            now = time.time()
            entry = cache.local.get(local_key)
            if entry is not None and entry[0] > now:  # PERF: ``cache.get_local``, inline
                cache.hits += 1
                return self._apply(entry[1], req, 0)
            decision = cache.get_local(local_key, now)  # drops an expired entry
            if decision is not None:
                return self._apply(decision, req, 0)
            return [token], local_key
        values = la.identity_values(self.sources, req) if self.sources else []
        if values is None:
            if self.type == "TOKEN" or self.ttl > 0 or self.api_kind == "http":
                return la.unauthorized_reply(self.api_kind)
            values = []  # REQUEST without caching: identity sources are optional (AWS)
        if (
            self.type == "TOKEN"
            and self.validation is not None
            and not la.token_valid(values[0], self.validation)
        ):
            return la.unauthorized_reply(self.api_kind)
        local_key: Any = None
        cache = svc.decisions
        if self.ttl > 0 and cache is not None:
            # PERF: this worker's memory is keyed by the identity values themselves (no hash
            # per hit); the shared store only ever sees their SHA-256 (la.cache_key).
            local_key = (self, req.route.key if self.per_route else None, *values)
            decision = cache.get_local(local_key, time.time())
            if decision is not None:
                return self._apply(decision, req, 0)
        return values, local_key

    async def authorize_miss(
        self, req: Request, svc: Services, values: list[str], local_key: Any
    ) -> LocalReply | None:
        """Not in this worker's memory: the shared store, else the function."""
        key = None
        decision = None
        latency = 0
        cache = svc.decisions
        if local_key is not None and cache is not None:
            key = self.namespace + la.cache_key(values, req.route.key if self.per_route else None)
            decision = await cache.get_shared(key, local_key)
        if decision is None:
            if cache is not None:
                cache.misses += 1
            t0 = time.monotonic()
            got = await self._call(req, values, svc)
            latency = int((time.monotonic() - t0) * 1000)
            if type(got) is LocalReply:
                return got  # type: ignore[return-value]
            decision = got  # type: ignore[assignment]
            if key is not None and cache is not None:
                await cache.put(key, local_key, self.ttl, decision)
        return self._apply(decision, req, latency)

    async def _call(self, req: Request, values: list[str], svc: Services) -> Decision | LocalReply:
        from fastgw.functions import events

        route = req.route
        if self.type == "TOKEN":
            event = events.build_token_authorizer_event(req, values[0], la.method_arn(req))
        elif self.api_kind == "http" and self.version == "2.0":
            event = events.build_request_authorizer_event_v2(req, la.method_arn(req), values)
        else:
            event = events.build_request_authorizer_event_v1(req, la.method_arn(req), values)
        self.calls += 1
        try:
            result = await call_function(self.function, event, svc, self.timeout, req.request_id)
        except FunctionError as ex:
            if ex.error_message == "Unauthorized":
                # AWS: an authorizer failing with the message "Unauthorized" means 401.
                return la.unauthorized_reply(self.api_kind)
            log.error(
                "authorizer failed",
                extra={
                    "authorizer": self.name,
                    "route": route.key,
                    "error": f"{ex.error_type}: {ex.error_message}",
                },
            )
            return la.authorizer_error_reply(self.api_kind)
        except FunctionTimeout:
            log.error("authorizer timed out", extra={"authorizer": self.name, "route": route.key})
            return la.authorizer_error_reply(self.api_kind)
        except InvokeError as ex:
            log.error("authorizer unreachable", extra={"authorizer": self.name, "error": str(ex)})
            return la.authorizer_error_reply(self.api_kind)
        try:
            if self.simple:
                ok, context = la.parse_simple_output(result)
                return Decision(True, ok, context=context)
            out = la.parse_policy_output(result, self.api_kind)
            decision = Decision(
                False, False, out.principal_id, out.policy, out.context, out.usage_identifier_key
            )
            decision.compiled = out.compiled  # a malformed policy raised already: never cached
            return decision
        except la.AuthorizerConfigError as ex:
            log.error(
                "authorizer returned an invalid response",
                extra={"authorizer": self.name, "route": route.key, "error": str(ex)},
            )
            return la.authorizer_error_reply(self.api_kind)

    def _apply(self, decision: Decision, req: Request, latency: int) -> LocalReply | None:
        if decision.simple:
            if not decision.authorized:
                return la.deny_reply(self.api_kind, False)
            req.authorizer = dict(decision.context)
            return None
        where = (req.route, req.method, req.resource_path)
        verdict = decision.arns.get(where)
        if verdict is None:
            try:
                compiled = decision.compiled
                if compiled is None:
                    compiled = decision.compiled = la.compile_policy(decision.policy)
                verdict = compiled.decide(la.method_arn(req))
            except la.AuthorizerConfigError:
                return la.authorizer_error_reply(self.api_kind)
            if len(decision.arns) < 256:
                decision.arns[where] = verdict
        if verdict != la.ALLOW:
            return la.deny_reply(self.api_kind, verdict == la.EXPLICIT_DENY)
        auth = decision.auth
        if auth is None or latency:
            if self.api_kind == "rest":
                # REST: context values reach the integration as strings (principalId and
                # integrationLatency beside them), as in AWS's requestContext.authorizer.
                auth = {k: _as_string(v) for k, v in decision.context.items()}
                auth["principalId"] = decision.principal_id
                auth["integrationLatency"] = latency
            else:
                auth = dict(decision.context)
                auth["principalId"] = decision.principal_id
            if not latency:
                decision.auth = auth
        req.authorizer = auth
        req.usage_key = decision.usage_key
        return None


def _as_string(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if type(value) is str else str(value)


async def call_function(fn: Any, event: Any, svc: Services, timeout: float, request_id: str = "") -> Any:
    """Invoke a compiled function reference (local or remote) with the worker's resources."""
    from fastgw.functions.registry import LocalFunction

    if type(fn) is LocalFunction:
        return await fn.invoke(event, svc.executor, timeout)
    return await fn.invoke(event, svc, timeout, request_id)

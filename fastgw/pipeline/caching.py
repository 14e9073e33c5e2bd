"""The stage response cache at request time (AWS's API cache, with fastgw's additions).

A cached route has a ``RouteCache`` (built at config load): its key recipe (``fastgw_core.
cachekey.KeySpec``: method, the route's resource template and its ``cacheKeyParameters``), its
TTL and the stage's invalidation policy. The store is the worker's (``Caches``): an in-memory
LRU per stage (``fastgw.cache.store.MemoryCache``), or Redis shared by every node
(``fastgw.cache.redis_cache.RedisCache``); stores outlive config reloads with the same settings.

Where a request is looked up:

- a route with nothing before its integration but the traffic gate (no authorizer, no IAM):
  in the protocol, from the request head, as soon as the gate admits it; a hit is answered like
  a MOCK (no Request, no Task); a miss goes to the route's pipeline with its key;
- any other route (and every route on the Redis backend): in the pipeline, after access
  control, the gate and validation, before the integration.

Only successful responses (2xx but 206) are stored, never the gateway's own errors. Requests
carrying credentials (``Authorization``, ``Cookie``) are keyed by them as well, so one caller's
response never goes to another, unless the route declares those headers itself.

``Cache-Control: max-age=0`` from a client refreshes the entry only when the stage does not
require authorization for it, or the caller is an IAM identity allowed
``execute-api:InvalidateCache`` on the method; else the stage's
``unauthorizedCacheControlHeaderStrategy`` applies (AWS's three policies).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastgw.cache.store import CREDENTIAL_HEADERS, CacheHead, Entry
from fastgw.server import replies
from fastgw.server.heads import values_in
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import CacheSettings, MethodCacheSettings, Route
    from fastgw.pipeline.request import Request
    from fastgw.pipeline.runtime import Services

log = logging.getLogger("fastgw.cache")

INVALIDATE_ACTION = "execute-api:InvalidateCache"
#: FAIL_WITH_403's reply.
INVALIDATION_FORBIDDEN = replies.aws_error(403, "Unauthorized", "AccessDeniedException", kind="ACCESS_DENIED")
#: SUCCEED_WITH_RESPONSE_HEADER's header.
WARNING_LINE = b'warning: 199 fastgw "Unauthorized cache invalidation"\r\n'
_NOT_CACHED = frozenset({206})


def parse_cache_parameter(text: str) -> tuple[str, str] | None:
    """'method.request.header|querystring|path.NAME' -> (kind, name); None if not one."""
    for prefix, kind in (
        ("method.request.header.", "header"),
        ("method.request.querystring.", "querystring"),
        ("method.request.path.", "path"),
        ("method.request.multivaluequerystring.", "querystring"),
        ("method.request.multivalueheader.", "header"),
    ):
        if text.startswith(prefix) and len(text) > len(prefix):
            return kind, text[len(prefix) :]
    return None


# Request headers the protocol does not keep among the forwarded lines it hands to
# ``lookup_head`` (it reads or rewrites them itself).
_NOT_FORWARDED = frozenset(
    (
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "expect",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
    )
)


class RouteCache(CacheHead):
    """One cached route of one stage: key recipe, TTL, invalidation policy, its store.

    The fields the protocol reads on every head (``plain``, ``static_keys``, ``early``,
    ``memory``, ``spec``) and the usual head's lookup are ``CacheHead``'s (compiled)."""

    __slots__ = (
        "backend",
        "credential_names",
        "fail_403",
        "head_safe",
        "method",
        "require_auth",
        "settings",
        "stage_uid",
        "ttl",
        "warn",
    )

    def __init__(
        self,
        stage_uid: str,
        settings: CacheSettings,
        method: str,
        template: str,
        params: list[tuple[str, str]],
        ttl: float,
    ) -> None:
        from fastgw_core.cachekey import KeySpec

        declared = {name.lower() for kind, name in params if kind == "header"}
        extra = [("header", h) for h in CREDENTIAL_HEADERS if h not in declared]
        CacheHead.__init__(
            self,
            KeySpec(template, [*params, *extra]),
            not declared,
            not any(kind in ("path", "querystring") for kind, _ in params),
        )
        #: Every header the key reads is among the forwarded header lines the protocol keeps
        #: (Host, X-Forwarded-* and framing headers are not): the key can be built from the head.
        self.head_safe = not (declared & _NOT_FORWARDED)
        self.credential_names = tuple(h for _, h in extra)
        self.stage_uid = stage_uid
        self.settings = settings
        self.backend = settings.backend
        self.method = method
        self.ttl = ttl
        self.require_auth = settings.requireAuthorizationForCacheControl
        strategy = settings.unauthorizedCacheControlHeaderStrategy
        self.fail_403 = strategy == "FAIL_WITH_403"
        self.warn = strategy == "SUCCEED_WITH_RESPONSE_HEADER"

    def memory_store(self) -> Any:
        store = self.memory
        if store is None:
            store = self.memory = caches().memory(self)
        return store

    # ------------------------------------------------------------------ keys
    def key_of_request(self, req: Request) -> bytes:
        return self.spec.build(req.method, req.header, req.query, req.params)

    # ------------------------------------------------------------------ lookup
    def lookup_head(
        self, method: str, fwd: list[bytes] | None, query: bytes, params: dict[str, str] | None, now: float
    ) -> LocalReply | bytes | None:
        """In the protocol: a hit (or a refusal), or the key for the pipeline to store under
        (None: do not cache this request). The protocol answers a plain route's head without
        credentials or Cache-Control itself (``CacheHead.lookup``)."""
        lookup = _HeadLookup(fwd)
        key = self.spec.build(method, lookup.get, query, params)
        refresh = _wants_refresh(lookup.get("cache-control"))
        extra = b""
        if refresh:
            # The protocol path has no IAM identity: an invalidation is authorized only when
            # the stage does not require it.
            if self.require_auth:
                if self.fail_403:
                    return INVALIDATION_FORBIDDEN
                if self.warn:
                    extra = WARNING_LINE
            else:
                return key
        entry = self.memory_store().get(key, now)
        if entry is None:
            return key
        return entry.reply if not extra else LocalReply.raw(entry.status, entry.head + extra, entry.body)

    async def lookup_request(self, req: Request, svc: Services, iam: Any) -> LocalReply | bytes | None:
        """In the pipeline: as ``lookup_head``, with the caller's IAM identity known."""
        key = self.key_of_request(req)
        extra = b""
        if _wants_refresh(req.header("cache-control")):
            allowed = not self.require_auth
            if not allowed and req.iam is not None and iam is not None:
                from fastgw.authorizers.lambda_auth import method_arn

                allowed = iam.may(req.iam, method_arn(req), INVALIDATE_ACTION)
            if allowed:
                return key
            if self.fail_403:
                return INVALIDATION_FORBIDDEN
            if self.warn:
                extra = WARNING_LINE
        if self.backend == "memory":
            entry = self.memory_store().get(key, svc.loop.time())
        else:
            from fastgw.cache.store import CacheUnavailable

            try:
                entry = await caches().redis(self, svc).get(key, svc.loop.time())
            except CacheUnavailable:
                caches().redis_errors += 1
                return None  # a miss that is not stored either
        if entry is None:
            return key
        reply = entry.reply  # None: a Redis entry (rebuilt on every get)
        if reply is None or extra:
            return LocalReply.raw(entry.status, entry.head + extra, entry.body)
        return reply  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ store
    def store(self, key: bytes, reply: LocalReply, req: Request, svc: Services) -> None:
        """Keep a successful response (errors and partial content never)."""
        status = reply.status
        if reply.kind is not None or not 200 <= status < 300 or status in _NOT_CACHED:
            return
        if self.ttl <= 0:
            return
        now = svc.loop.time()
        if self.backend == "memory":
            entry = Entry(status, reply.head, reply.body, req.method, req.resource_path)
            entry.reply = reply
            self.memory_store().put(key, entry, self.ttl, now)
            return
        store = caches().redis(self, svc)
        entry = Entry(status, reply.head, reply.body, req.method, req.resource_path)
        task = svc.loop.create_task(store.put(key, entry, self.ttl, now))
        task.add_done_callback(_put_done)


def _put_done(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        caches().redis_errors += 1


def _wants_refresh(value: str | None) -> bool:
    """A client's ``Cache-Control: max-age=0`` (AWS's invalidation request)."""
    if not value:
        return False
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name.lower() == "max-age" and arg.strip().strip('"') == "0":
            return True
    return False


class _HeadLookup:
    """Case-insensitive header lookup over the protocol's captured header lines
    (b"name: value\\r\\n" each, as both head parsers emit them).

    PERF: a key asks for a few names (its declared headers, Authorization, Cookie, and
    Cache-Control); each is one search in the lower-cased head, no per-header objects."""

    __slots__ = ("blob", "lower")

    def __init__(self, fwd: list[bytes] | None) -> None:
        blob = (fwd[0] if len(fwd) == 1 else b"".join(fwd)) if fwd else b""
        self.blob = b"\r\n" + blob
        self.lower = self.blob.lower()

    def get(self, name: str) -> str | None:
        values = values_in(self.blob, self.lower, name.encode("latin-1"))
        if not values:
            return None
        return values[0].decode("latin-1") if len(values) == 1 else b",".join(values).decode("latin-1")


def compile_route_cache(
    stage_uid: str,
    settings: CacheSettings | None,
    override: MethodCacheSettings | None,
    route: Route,
    method: str,
    template: str,
    path: str,
    issues: list[Any],
) -> RouteCache | None:
    """The route's cache, or None when the stage caches nothing for it."""
    from fastgw.config.load import ConfigIssue

    params: list[tuple[str, str]] = []
    for i, text in enumerate(route.cacheKeyParameters):
        got = parse_cache_parameter(text)
        if got is None:
            issues.append(
                ConfigIssue(
                    f"{path}.cacheKeyParameters[{i}]",
                    "expected method.request.header|querystring|path.NAME",
                )
            )
            return None
        params.append(got)
    if settings is None or not settings.enabled:
        return None
    enabled = method in ("GET", "HEAD") if override is None else override.enabled
    ttl = settings.ttl_seconds
    if override is not None and override.ttl_seconds is not None:
        ttl = override.ttl_seconds
    if not enabled or ttl <= 0 or method == "$default":
        return None
    return RouteCache(stage_uid, settings, method, template, params, float(ttl))


# ---------------------------------------------------------------------------- the worker's stores
class Caches:
    """This process's cache stores by stage (kept across config reloads with equal settings)."""

    def __init__(self) -> None:
        self.memories: dict[tuple[str, int, int], Any] = {}
        self.redises: dict[str, Any] = {}
        self.redis_errors = 0
        #: The last purge applied (fastgw.state CachePurge.seq); None until the first state.
        self.purge_seq: int | None = None
        self.redis_client: Any = None
        self.redis_settings: Any = None

    def memory(self, rc: RouteCache) -> Any:
        s = rc.settings
        key = (rc.stage_uid, s.capacity_bytes, s.max_item_bytes)
        store = self.memories.get(key)
        if store is None:
            from fastgw.cache.store import MemoryCache

            for old in [k for k in self.memories if k[0] == rc.stage_uid]:
                del self.memories[old]  # the stage's settings changed: start afresh
            store = self.memories[key] = MemoryCache(s.capacity_bytes, s.max_item_bytes)
        return store

    def redis(self, rc: RouteCache, svc: Services) -> Any:
        store = self.redises.get(rc.stage_uid)
        if store is None:
            from fastgw.cache.redis_cache import RedisCache

            client = self._client(svc)
            prefix = self.redis_settings.prefix if self.redis_settings is not None else "fastgw:"
            store = self.redises[rc.stage_uid] = RedisCache(
                client, f"{prefix}cache:{rc.stage_uid}", max_item_bytes=rc.settings.max_item_bytes
            )
        return store

    def _client(self, svc: Services) -> Any:
        if self.redis_client is None:
            import redis.asyncio as aioredis

            s = self.redis_settings
            if s is None:
                raise RuntimeError("the Redis cache backend needs gateway.state.redis")
            self.redis_client = aioredis.Redis.from_url(
                s.url, socket_timeout=s.timeout_ms / 1000.0, socket_connect_timeout=s.timeout_ms / 1000.0
            )
        return self.redis_client

    # ------------------------------------------------------------------ purges (admin API)
    def apply_purges(self, purges: list[Any], loop: Any = None) -> int:
        """Apply the state store's purges newer than the last seen; the number applied."""
        if not purges:
            if self.purge_seq is None:
                self.purge_seq = 0
            return 0
        top = purges[-1].seq
        if self.purge_seq is None or top < self.purge_seq:
            # First state of this worker (older purges were applied by whoever was running
            # then), or the store was wiped and its sequence started again.
            self.purge_seq = top
            return 0
        if top == self.purge_seq:
            return 0
        missed = purges[0].seq > self.purge_seq + 1
        done = 0
        for p in purges:
            if p.seq <= self.purge_seq:
                continue
            done += 1
            if missed:
                self._flush(p.stage, loop)
            else:
                self._purge(p, loop)
        self.purge_seq = top
        return done

    def _stores(self, stage: str) -> list[Any]:
        # A stage's canary has its own cache unless it shares the stage's: purge both.
        canary = stage + ":canary"
        return [s for k, s in self.memories.items() if k[0] == stage or k[0] == canary]

    def _flush(self, stage: str, loop: Any) -> None:
        for store in self._stores(stage):
            store.flush()
        for redis_store in (self.redises.get(stage), self.redises.get(stage + ":canary")):
            if redis_store is not None and loop is not None:
                loop.create_task(_quiet(redis_store.flush()))

    def _purge(self, p: Any, loop: Any) -> None:
        if p.op == "flush":
            self._flush(p.stage, loop)
            return
        method = None if p.method == "*" else p.method
        for store in self._stores(p.stage):
            if p.op == "key" and p.key:
                try:
                    store.purge(bytes.fromhex(p.key))
                except ValueError:
                    store.purge(p.key.encode("latin-1"))
            else:
                store.purge_prefix(method, p.path) if p.op == "prefix" else store.purge_path(method, p.path)
        for redis_store in (self.redises.get(p.stage), self.redises.get(p.stage + ":canary")):
            if redis_store is None or loop is None:
                continue
            if p.op == "prefix" or (p.op == "key" and not p.key):
                loop.create_task(_quiet(redis_store.purge_prefix(method, p.path)))
            elif p.op == "key":
                loop.create_task(_quiet(redis_store.purge(bytes.fromhex(p.key))))

    def stats(self) -> dict[str, int]:
        out = {"hits": 0, "misses": 0, "items": 0, "size_bytes": 0, "evictions": 0}
        for store in self.memories.values():
            got = store.stats()
            for k in out:
                out[k] += got.get(k, 0)
        out["redis_errors"] = self.redis_errors
        return out


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except Exception as ex:
        log.warning("cache purge on Redis failed: %s", ex)


_CACHES: Caches | None = None


def caches() -> Caches:
    """This process's stores (one per worker process)."""
    global _CACHES
    if _CACHES is None:
        _CACHES = Caches()
    return _CACHES

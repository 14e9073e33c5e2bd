"""Running a route's pipeline: the stages of ``order.PHASES`` over one buffered request.

A ``RoutePipeline`` is built once per route at config load (``build.py``): the plugin phase
methods bound in order, the authorizer, the integration. ``launch`` turns a finished
``Exchange`` (head and whole body received) into a ``Request`` and runs the pipeline in a
Task; the result, a ``LocalReply``, goes back to the exchange, which writes it in its turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastgw.pipeline.request import Request, Response
from fastgw.server import replies
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.authorizers.runtime import AuthorizerRuntime, DecisionCache
    from fastgw.config.compile import RouteRuntime
    from fastgw.server.protocol import Exchange
    from fastgw.traffic.gate import Gate
    from fastgw.upstream.client import HttpClient

log = logging.getLogger("fastgw.pipeline")

# Response headers a function or plugin cannot set: the gateway frames the response itself.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date"})
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Services:
    """A worker's shared resources for pipelines: loop, thread pool, HTTP client, caches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: Gate, threads: int = 32) -> None:
        self.loop = loop
        self.gate = gate
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastgw-fn")
        self._client: HttpClient | None = None
        self.decisions: DecisionCache | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def client(self) -> HttpClient:
        client = self._client
        if client is None:
            from fastgw.upstream.client import HttpClient

            client = self._client = HttpClient(self.loop)
        return client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self.decisions is not None:
            await self.decisions.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Step:
    """One plugin phase method, bound to its instance."""

    __slots__ = ("fn", "is_async", "phase", "plugin")

    def __init__(self, plugin: str, phase: str, fn: Callable[..., Any], is_async: bool) -> None:
        self.plugin = plugin
        self.phase = phase
        self.fn = fn
        self.is_async = is_async


class KeyHolder:
    """What the traffic gate reads of a client: the key value and its cached lookup."""

    __slots__ = ("api_key", "key_gen", "key_rt", "key_value")

    def __init__(self, api_key: bytes | None) -> None:
        self.api_key = api_key
        self.key_value: bytes | None = None
        self.key_rt: object = None
        self.key_gen = -1


Integration = Callable[[Request, Services], Awaitable["Response | LocalReply"]]


class RoutePipeline:
    """The stages of one route, ready to run."""

    __slots__ = (
        "access",
        "authorizer",
        "deadline",
        "integration",
        "integration_name",
        "key_from_authorizer",
        "logs",
        "plugins",
        "response",
        "rewrite",
        "route",
    )

    def __init__(
        self,
        route: RouteRuntime,
        integration: Integration,
        integration_name: str,
        deadline: float,
        authorizer: AuthorizerRuntime | None = None,
        steps: list[Step] | None = None,
        plugins: list[tuple[str, int, str]] | None = None,
        key_from_authorizer: bool = False,
    ) -> None:
        self.route = route
        self.integration = integration
        self.integration_name = integration_name
        #: Seconds the whole pipeline may take before the client gets a 504.
        self.deadline = deadline
        self.authorizer = authorizer
        steps = steps or []
        self.rewrite = tuple(s for s in steps if s.phase == "rewrite")
        self.access = tuple(s for s in steps if s.phase == "access")
        self.response = tuple(s for s in steps if s.phase == "response")
        self.logs = tuple(s for s in steps if s.phase == "log")
        #: (name, priority, where enabled) of the plugins in effect, for --explain.
        self.plugins = plugins or []
        self.key_from_authorizer = key_from_authorizer

    async def run(self, req: Request, svc: Services) -> LocalReply:
        step: Step | None = None
        try:
            for step in self.rewrite:
                res = step.fn(req)
                if step.is_async:
                    res = await res
                if res is not None:
                    return to_reply(res)
            step = None
            auth = self.authorizer
            if auth is not None:
                # PERF: a decision this worker holds is applied without a coroutine.
                denied = auth.check_cached(req, svc)
                if type(denied) is tuple:
                    denied = await auth.authorize_miss(req, svc, *denied)
                if denied is not None:
                    return denied  # type: ignore[return-value]
            route = self.route
            if route.api_key_required or route.levels is not None:
                if self.key_from_authorizer:
                    key = req.usage_key.encode() if req.usage_key is not None else None
                else:
                    key = req.api_key.encode("latin-1") if req.api_key is not None else None
                holder = KeyHolder(key)
                verdict = svc.gate.admit(route, holder, svc.loop.time())  # type: ignore[arg-type]
                if verdict is not None:
                    if type(verdict) is not LocalReply:
                        verdict = await verdict  # type: ignore[misc]
                    if verdict is not None:
                        return verdict  # type: ignore[return-value]
                if holder.key_rt is not None:
                    req.api_key_id = getattr(holder.key_rt, "id", None)
            for step in self.access:
                res = step.fn(req)
                if step.is_async:
                    res = await res
                if res is not None:
                    return to_reply(res)
            step = None
            result = await self.integration(req, svc)
            if type(result) is LocalReply or not self.response:
                return to_reply(result)
            for step in self.response:
                res = step.fn(req, result)
                if step.is_async:
                    await res
            return to_reply(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            if step is None:
                log.exception("request pipeline failed", extra={"route": self.route.key})
            else:
                log.exception(
                    "plugin failed",
                    extra={"plugin": step.plugin, "phase": step.phase, "route": self.route.key},
                )
            return replies.INTERNAL_ERROR

    def run_log(self, req: Request, reply: LocalReply) -> None:
        """The log phase: after the response is written; failures are logged and dropped."""
        resp = Response(reply.status, [], reply.body)
        for step in self.logs:
            try:
                res = step.fn(req, resp)
                if step.is_async:
                    task = asyncio.ensure_future(res)
                    task.add_done_callback(functools.partial(_log_task_done, step.plugin))
            except Exception:
                log.exception("plugin failed", extra={"plugin": step.plugin, "phase": "log"})


def _log_task_done(plugin: str, task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("plugin failed", exc_info=task.exception(), extra={"plugin": plugin, "phase": "log"})


# (name, value) -> its encoded header line (b"" for framing headers), and whether it is a
# Content-Type. PERF: functions answer with the same few headers again and again.
_LINES: dict[tuple[str, str], tuple[bytes, bool]] = {}
_CT_JSON = b"content-type: application/json\r\n"


def _header_line(name: str, value: str) -> tuple[bytes, bool]:
    lname = name.lower()
    if lname in _FRAMING:
        return b"", False
    if not name or any(c not in _TOKEN for c in name) or "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"invalid response header {name!r}: {value!r}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode()
    return b"%s: %s\r\n" % (name.encode("latin-1"), raw), lname == "content-type"


def to_reply(res: Response | LocalReply) -> LocalReply:
    """A Response as the gateway writes it (framing headers are the gateway's own); as
    ``LocalReply`` does, a body without a Content-Type is sent as application/json."""
    if type(res) is LocalReply:
        return res  # type: ignore[return-value]
    if not isinstance(res, Response):
        raise TypeError(f"a phase returned {type(res).__name__}, expected Response or None")
    status = res.status
    parts = [replies.status_line(status)]
    typed = False
    lines = _LINES
    for pair in res.headers:
        got = lines.get(pair)  # type: ignore[call-overload]
        if got is None:
            got = _header_line(pair[0], pair[1])
            if len(lines) < 4096:
                lines[pair] = got  # type: ignore[index]
        if got[1]:
            typed = True
        parts.append(got[0])
    body = res.body
    if type(body) is not bytes:
        body = bytes(body) if not isinstance(body, str) else body.encode()
    if status in (204, 304) or status < 200:
        body = b""
    else:
        if body and not typed:
            parts.append(_CT_JSON)
        parts.append(b"content-length: %d\r\n" % len(body))
    return LocalReply.raw(status, b"".join(parts), body)


# ---------------------------------------------------------------------------- the bridge
def launch(ex: Exchange, svc: Services) -> None:
    """Build the request of a finished exchange and run its route's pipeline in a Task."""
    route: RouteRuntime = ex.route
    pipeline: RoutePipeline = route.pipeline
    req = request_of(ex)
    task = svc.loop.create_task(pipeline.run(req, svc))
    ex.task = task

    def done(t: asyncio.Task[LocalReply]) -> None:
        ex.task = None
        if t.cancelled():
            return
        exc = t.exception()
        reply = replies.INTERNAL_ERROR if exc is not None else t.result()
        if exc is not None:
            log.error("request pipeline failed", exc_info=exc)
        ex.pipeline_done(reply)
        if pipeline.logs:
            pipeline.run_log(req, reply)

    task.add_done_callback(done)


def request_of(ex: Exchange) -> Request:
    """The pipeline's view of an exchange (see ``Request`` for which headers it holds)."""
    headers: list[tuple[str, str]] = []
    host = ex.p_host
    if host is not None:
        headers.append(("Host", host.decode("latin-1")))
    for chunk in ex.p_fwd:
        for line in chunk.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    buf = ex.buf
    body = b"".join(buf) if buf else b""
    if body or ex.body_mode:
        headers.append(("Content-Length", str(len(body))))
    peer = ex.proto.peer
    xff = ex.p_xff
    source_ip = peer
    if xff:
        xff_s = xff.decode("latin-1")
        if ex.proto.peer_trusted:
            source_ip = xff_s.split(",")[0].strip() or peer
        headers.append(("X-Forwarded-For", f"{xff_s}, {peer}"))
    else:
        headers.append(("X-Forwarded-For", peer))
    headers.append(("X-Forwarded-Proto", "http"))
    port = ex.proto.local_port
    if port:
        headers.append(("X-Forwarded-Port", port))
    domain = ""
    if host:
        h = host.decode("latin-1").lower()
        if h.startswith("["):
            domain = h[: h.find("]") + 1]
        else:
            domain = h.rpartition(":")[0] if ":" in h else h
    api_key = ex.p_api_key
    return Request(
        ex.route,
        ex.method,
        ex.p_path,
        ex.p_inner,
        ex.query.decode("latin-1"),
        headers,
        body,
        source_ip,
        ex.request_id.decode(),
        int(time.time() * 1000),
        ex.params,
        domain,
        "HTTP/1.0" if ex.http10 else "HTTP/1.1",
        api_key.decode("latin-1") if api_key else (None if api_key is None else ""),
    )

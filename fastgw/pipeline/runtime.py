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

from fastgw.config.runtime import PipelineHead
from fastgw.functions import events as _fn_events
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


class Services:
    """A worker's shared resources for pipelines: loop, thread pool, HTTP client, caches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: Gate, threads: int = 32) -> None:
        self.loop = loop
        self.gate = gate
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastgw-fn")
        self._client: HttpClient | None = None
        self.decisions: DecisionCache | None = None
        #: Cap of a request body once inflated (gateway.limits.max_body_bytes).
        self.max_body = 10 * 1024 * 1024
        #: The worker's response caches (fastgw.pipeline.caching.Caches), or None.
        self.caches: Any = None

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


_NO_KEY = KeyHolder(None)

Integration = Callable[[Request, Services], Awaitable["Response | LocalReply"]]


class RoutePipeline(PipelineHead):
    """The stages of one route, ready to run (``early_gate`` and ``fast_auth``, which the
    protocol reads at the request head, are ``PipelineHead``'s: C slots in the compiled build)."""

    __slots__ = (
        "access",
        "authorizer",
        "cache",
        "compress",
        "cors",
        "deadline",
        "direct",
        "eager",
        "iam",
        "integration",
        "integration_name",
        "key_from_authorizer",
        "lean",
        "lean_auth",
        "logs",
        "plugins",
        "policy",
        "response",
        "rewrite",
        "route",
        "stepped",
        "timed",
        "validation",
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
        #: Nothing runs before the traffic gate (no rewrite plugins, no authorizer): the
        #: protocol admits the request at its head, as on the fast path, and ``run`` skips it.
        PipelineHead.__init__(self, authorizer is None and not self.rewrite)
        #: Nothing but the integration: ``launch`` runs it directly (one coroutine less).
        self.direct = integration if self.early_gate and not steps else None
        #: AWS_IAM (SigV4) verifier and the API's resource policy (fastgw.authorizers).
        self.iam: Any = None
        self.policy: Any = None
        #: Request validation (fastgw.pipeline.validation), after the access plugins.
        self.validation: Any = None
        #: HTTP API CORS (fastgw.pipeline.cors): every reply of the route is decorated.
        self.cors: Any = None
        #: No user code runs in this pipeline: ``launch`` may start it outside a Task (set by
        #: the compiler, fastgw.pipeline.build).
        self.eager = False
        #: Its only waits are futures the exchange resolves (a mapped HTTP integration's
        #: upstream exchange): ``launch`` drives it from their callbacks, without a Task.
        self.stepped = False
        #: A stepped pipeline's integration as callbacks (``fastgw.pipeline.lean.LeanHttp``):
        #: the usual mapped route runs without a coroutine (set by the compiler).
        self.lean: Any = None
        #: The API's minimumCompressionSize: responses of at least this many bytes are
        #: compressed, compressed request bodies inflated first (None: neither).
        self.compress: int | None = None
        #: The route's response cache (fastgw.pipeline.caching.RouteCache), or None.
        self.cache: Any = None
        #: The integration is a function (AWS_PROXY, AWS): the pipeline times it for
        #: IntegrationLatency and the trace (upstream exchanges are timed by the protocol).
        self.timed = integration_name.startswith("AWS")
        # fast_auth (PipelineHead): set by the compiler; a cached token skips the pipeline
        # (``JwtAuthorizerRuntime.head_allows``).
        #: Nothing but a Lambda authorizer, the traffic gate and the integration (set by the
        #: compiler): ``_serve`` runs ``run_authorized``, without the checks of ``run``.
        self.lean_auth = False

    def set_access(self, iam: Any, policy: Any) -> None:
        self.iam = iam
        self.policy = policy
        if iam is not None or policy is not None:
            self.early_gate = False
            self.direct = None

    def check_access(self, req: Request) -> LocalReply | str | None:
        """IAM signature and the resource policy, before any authorizer (AWS's first phase).

        A reply ends the request; else the resource policy's result (None without one) for
        ``combine`` once the authorizer has answered."""
        from fastgw.authorizers import lambda_auth as la
        from fastgw.authorizers import resource_policy as rp

        policy = self.policy
        iam = self.iam
        if iam is not None:
            got = iam.verify(req, time.time(), authorize=policy is None)
            if type(got) is LocalReply:
                return got  # type: ignore[no-any-return]
            req.iam = got
            if policy is None:
                return None
            arn = la.method_arn(req)
            result = policy.evaluate(arn, req.source_ip, got["userArn"])
            allowed = iam.authorize(got, arn)
            same = got["accountId"] == self.route.api.account_id
            if rp.combine("AWS_IAM", result, allowed, same_account=same):
                return None
            if allowed is False:
                from fastgw.authorizers.sigv4 import access_denied_reply

                return access_denied_reply(got["userArn"], arn, True)
            return rp.resource_policy_deny_reply(arn, result == la.EXPLICIT_DENY, got["userArn"])
        if policy is None:
            return None
        arn = la.method_arn(req)
        result = policy.evaluate(arn, req.source_ip, None)
        if self.authorizer is None:
            if rp.combine("NONE", result, None):
                return None
            return rp.resource_policy_deny_reply(arn, result == la.EXPLICIT_DENY)
        if result == la.EXPLICIT_DENY:
            return rp.resource_policy_deny_reply(arn, True)
        return result  # type: ignore[no-any-return]

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
            policy_result = None
            if self.iam is not None or self.policy is not None:
                checked = self.check_access(req)
                if type(checked) is LocalReply:
                    return checked  # type: ignore[return-value]
                policy_result = checked
            auth = self.authorizer
            if auth is not None:
                ex = req.exchange
                trace = ex.trace if ex is not None else None
                t = svc.loop.time() if trace is not None else 0.0
                # PERF: a decision this worker holds is applied without a coroutine.
                denied = auth.check_cached(req, svc)
                if type(denied) is tuple:
                    denied = await auth.authorize_miss(req, svc, *denied)
                if trace is not None:
                    trace.authorizer(t, svc.loop.time(), auth.type, denied is None)
                if denied is not None:
                    return denied  # type: ignore[return-value]
                if policy_result is not None:
                    from fastgw.authorizers import lambda_auth as la
                    from fastgw.authorizers import resource_policy as rp

                    kind = "JWT" if auth.type in ("JWT", "COGNITO_USER_POOLS") else "CUSTOM"
                    if not rp.combine(kind, policy_result, True):
                        arn = la.method_arn(req)
                        return rp.resource_policy_deny_reply(arn, policy_result == la.EXPLICIT_DENY)
            route = self.route
            if not self.early_gate:
                holder = self._key_holder(req)
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
            if self.compress is not None:
                encoding = req.header("content-encoding")
                if encoding is not None:
                    from fastgw.pipeline import content

                    try:
                        req.body = content.decompress_request(req.body, encoding, svc.max_body)
                    except content.ContentError as ex:
                        return ex.reply
                    req.set_header("Content-Encoding", None)
                    req.set_header("Content-Length", str(len(req.body)))
            validation = self.validation
            if validation is not None:
                invalid = validation.check(req)
                if invalid is not None:
                    return invalid
            cache = self.cache
            if cache is not None and not cache.early:
                t = svc.loop.time()
                got = await cache.lookup_request(req, svc, self.iam)
                ex = req.exchange
                if ex is not None and ex.trace is not None and got is not None:
                    ex.trace.cache_lookup(t, svc.loop.time(), type(got) is not bytes)
                if type(got) is bytes:
                    req.cache_key = got
                    if ex is not None:
                        ex.cache_state = 2
                elif got is not None:
                    if ex is not None:
                        ex.cache_state = 1
                    return got  # type: ignore[return-value]
            if self.timed:
                result = await timed_integration(self.integration, req, svc)
            else:
                result = await self.integration(req, svc)
            if type(result) is Handoff:
                return result  # type: ignore[return-value]
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

    def _key_holder(self, req: Request) -> KeyHolder:
        """The API key the traffic gate reads for ``req`` (none unless the route requires one)."""
        if not self.route.api_key_required:
            return _NO_KEY
        if self.key_from_authorizer:
            key = req.usage_key.encode() if req.usage_key is not None else None
        else:
            key = req.api_key.encode("latin-1") if req.api_key is not None else None
        return KeyHolder(key)

    async def run_authorized(self, req: Request, svc: Services) -> Any:
        """``run`` for a route that has only an authorizer in front of its integration (no
        plugins, IAM, resource policy, validation, compression, CORS or pipeline cache).

        PERF: a cached decision costs what the authorizer and the gate do, nothing more."""
        try:
            got = self.pass_authorizer(req, svc)
            if got is not None:
                if type(got) is not LocalReply:
                    got = await got  # type: ignore[misc]
                if got is not None:
                    return got
            if self.timed:
                return await timed_integration(self.integration, req, svc)
            return await self.integration(req, svc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request pipeline failed", extra={"route": self.route.key})
            return replies.INTERNAL_ERROR

    def pass_authorizer(self, req: Request, svc: Services) -> Any:
        """The authorizer and the traffic gate of a ``lean_auth`` route, without waiting when
        they answer at once (a decision in this worker's memory, the embedded backend): None to
        go on, the reply that ends the request, or an awaitable of either (a cache miss, a
        shared store's lease). ``req.api_key_id`` is set when a key was admitted."""
        auth: Any = self.authorizer
        ex = req.exchange
        trace = ex.trace if ex is not None else None
        t = svc.loop.time() if trace is not None else 0.0
        denied = auth.check_cached(req, svc)
        if type(denied) is tuple:
            return self._pass_miss(req, svc, denied, trace, t)
        # PERF: ``_pass_miss``'s steps after the answer, inline (no frame on a cached decision).
        if trace is not None:
            trace.authorizer(t, svc.loop.time(), auth.type, denied is None)
        if denied is not None:
            return denied
        return self._admit_authorized(req, svc)

    async def _pass_miss(
        self, req: Request, svc: Services, miss: tuple[Any, ...], trace: Any, t: float
    ) -> Any:
        auth: Any = self.authorizer
        denied = await auth.authorize_miss(req, svc, *miss)
        if trace is not None:
            trace.authorizer(t, svc.loop.time(), auth.type, denied is None)
        if denied is not None:
            return denied
        got = self._admit_authorized(req, svc)
        if got is not None and type(got) is not LocalReply:
            got = await got
        return got

    def _admit_authorized(self, req: Request, svc: Services) -> Any:
        """The traffic gate after the authorizer: None, a reply, or an awaitable of either."""
        route = self.route
        gate = svc.gate
        table = gate.local
        if table is not None and not route.api_key_required:
            # PERF: no key, the embedded backend: ``Gate.take_local`` inline (as the protocol).
            got = table.take_levels(route.levels, svc.loop.time())
            return None if got is None else gate.throttled(route.levels, got)
        holder = self._key_holder(req)
        verdict = gate.admit(route, holder, svc.loop.time())  # type: ignore[arg-type]
        if verdict is None:
            if holder.key_rt is not None:
                req.api_key_id = getattr(holder.key_rt, "id", None)
            return None
        if type(verdict) is LocalReply:
            return verdict
        return self._admit_wait(verdict, req, holder)

    async def _admit_wait(self, verdict: Any, req: Request, holder: KeyHolder) -> LocalReply | None:
        got: LocalReply | None = await verdict
        if got is None and holder.key_rt is not None:
            req.api_key_id = getattr(holder.key_rt, "id", None)
        return got

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


_CT_JSON = b"content-type: application/json\r\n"


#: A response header as the gateway writes it, and whether it is a Content-Type (b"" for a
#: framing header; ValueError for a bad name or value): the function replies' own, and the
#: same remembered per (name, value) (PERF: replies repeat the same few headers).
_header_line: Callable[[str, str], tuple[bytes, bool]] = _fn_events._impl._header_line
_header_line_of: Callable[[str, str], tuple[bytes, bool]] = _fn_events._impl.header_line_of


#: The common payload 1.0 response (``statusCode`` int, ``headers`` of strings, ``body`` str)
#: written straight to a reply, or None (then ``events.parse_response_v1`` + ``to_reply``): compiled
#: with the Lambda proxy events (fastgw.functions._lambda_py, built as ``_lambda_c``).
fast_reply_v1: Callable[[Any, bool], LocalReply | None] = _fn_events.fast_reply_v1
FunctionRoute = _fn_events.FunctionRoute


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
    for pair in res.headers:
        got = _header_line_of(pair[0], pair[1])
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
class Handoff:
    """An HTTP_PROXY pipeline's answer: the exchange proxies the (possibly edited) request on
    its own upstream pools and streams the response back."""

    __slots__ = ("body", "head", "integration", "target")

    def __init__(self, integration: Any, target: bytes, head: bytes, body: bytes) -> None:
        self.integration = integration
        self.target = target
        self.head = head
        self.body = body


def launch(ex: Exchange, svc: Services) -> None:
    """Build the request of a finished exchange and run its route's pipeline in a Task."""
    pipeline: RoutePipeline = ex.route.pipeline
    lean = pipeline.lean
    if lean is not None:
        # PERF: the usual mapped route, without a Request (fastgw.pipeline.lean).
        try:
            if lean.start(ex):
                return
        except Exception:  # it runs in the protocol's callback: nothing raised goes there
            log.exception("request pipeline failed", extra={"route": pipeline.route.key})
            ex.task = None
            ex.pipeline_done(replies.INTERNAL_ERROR)
            return
    req = ex.build_request()
    direct = pipeline.direct
    integ = pipeline.integration
    if type(integ) is FunctionRoute and pipeline.cache is None and (direct is integ or pipeline.lean_auth):
        # PERF: a route that is only an in-process or remote function (AWS_PROXY), maybe behind a
        # Lambda authorizer: one coroutine does what ``_serve``, ``run_authorized``,
        # ``timed_integration`` and the integration do (still in a Task: the handler may use
        # asyncio.current_task() or asyncio.timeout()).
        ex.task = svc.loop.create_task(integ.serve(ex, pipeline, req, svc))
        return
    if pipeline.stepped:
        # PERF: the integration's own coroutine, without ``_serve`` around it (the stepper
        # finishes the request as ``_serve`` does: ``_finish``).
        _Stepper(direct(req, svc), ex, pipeline, req, svc)  # type: ignore[misc]
        return
    coro = _serve(ex, pipeline, req, svc)
    if pipeline.eager:
        # PERF: a pipeline with no user code in it (no plugins, no Lambda function or Lambda
        # authorizer: a JWT check, IAM, policies, validation, a proxy or MOCK) runs at once;
        # most finish without waiting (keys and tokens cached) and need no Task at all. One
        # that must wait (a JWKS fetch, a Redis lease) continues in a Task from where it is.
        try:
            fut = coro.send(None)
        except StopIteration:
            return
        task = svc.loop.create_task(_continue(coro, fut))
    else:
        task = svc.loop.create_task(coro)
    ex.task = task  # the exchange holds the Task (and cancels it if the client goes)


class _Stepper:
    """Drives the integration coroutine of a pipeline that is only an integration whose only
    waits are futures its exchange resolves (see ``RoutePipeline.stepped``): each step runs
    from the previous future's done callback, the first one at once, and its result finishes
    the request as ``_serve``'s does (``_finish``). It stands in for the Task as
    ``Exchange.task``: ``cancel()`` throws CancelledError into the coroutine where it waits, as
    a Task's would at its next step.

    PERF: no Task to create, and no loop iteration before the first step (a Task starts from
    ``call_soon``); the mapped route's request and response mapping run in the callbacks, the
    response's inside the upstream's own (it awaits a ``_Wait``, not a Future).
    """

    __slots__ = ("cancelled", "coro", "ex", "fut", "pipeline", "req", "running", "svc")

    def __init__(self, coro: Any, ex: Exchange, pipeline: RoutePipeline, req: Request, svc: Services) -> None:
        self.coro = coro
        self.ex = ex
        self.pipeline = pipeline
        self.req = req
        self.svc = svc
        self.fut: Any = None
        self.running = False
        self.cancelled = False
        ex.task = self  # type: ignore[assignment]
        self._step(None)

    def _step(self, _fut: Any) -> None:
        coro = self.coro
        if coro is None:
            return
        self.fut = None
        self.running = True
        try:
            nxt = coro.throw(asyncio.CancelledError()) if self.cancelled else coro.send(None)
        except StopIteration as done:
            self.coro = None
            self._finish(done.value)
            return
        except asyncio.CancelledError:
            self.coro = None
            self.ex.task = None
            return
        except Exception:
            self.coro = None
            log.exception("request pipeline failed", extra={"route": self.pipeline.route.key})
            self._finish(replies.INTERNAL_ERROR)
            return
        finally:
            self.running = False
        if self.cancelled:
            # Cancelled during this step: the coroutine gets it at its next wait, now.
            self.svc.loop.call_soon(self._step, None)
        elif nxt is None:  # a bare yield (asyncio.sleep(0)): go on at the next iteration
            self.svc.loop.call_soon(self._step, None)
        else:
            self.fut = nxt
            nxt.add_done_callback(self._step)

    def _finish(self, result: Any) -> None:
        # It may run inside the upstream's callback (``_Wait``): nothing raised goes there.
        try:
            _finish(self.ex, self.pipeline, self.req, self.svc, result)
        except Exception:
            log.exception("request pipeline failed", extra={"route": self.pipeline.route.key})

    def cancel(self, msg: object = None) -> bool:
        coro = self.coro
        if coro is None or self.cancelled:
            return False
        self.cancelled = True
        if self.running:
            return True  # thrown in when the running step yields
        fut = self.fut
        if fut is not None:
            fut.remove_done_callback(self._step)
            self.fut = None
        self._step(None)
        return True

    def done(self) -> bool:
        return self.coro is None


_PENDING: Any = object()


class _Wait:
    """What a stepped pipeline awaits for its exchange's buffered upstream response, in place
    of a Future (``upstream_waiter``): ``set_result`` runs the pipeline's next step at once,
    inside the upstream's callback.

    PERF: no Future, no callback handle scheduled and no loop pass between the upstream's
    response and the response mapping. A result set during the step that awaits it (an
    exchange that fails at once) is returned without suspending."""

    __slots__ = ("callback", "result")

    def __init__(self) -> None:
        self.result: Any = _PENDING
        self.callback: Callable[[Any], None] | None = None

    def __await__(self) -> Any:
        if self.result is _PENDING:
            yield self
        return self.result

    def done(self) -> bool:
        return self.result is not _PENDING

    def set_result(self, result: Any) -> None:
        self.result = result
        callback = self.callback
        if callback is not None:
            self.callback = None
            callback(self)

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self.result is _PENDING:
            self.callback = callback
        else:
            callback(self)

    def remove_done_callback(self, callback: Callable[[Any], None]) -> int:
        if self.callback is None:
            return 0
        self.callback = None
        return 1


def upstream_waiter(ex: Exchange, loop: asyncio.AbstractEventLoop) -> Any:
    """What a pipeline gives ``Exchange.collect_upstream`` and awaits: a ``_Wait`` when its
    exchange is driven by a ``_Stepper``, else a Future of ``loop`` (a Task awaits only those)."""
    return _Wait() if type(ex.task) is _Stepper else loop.create_future()


def timed_integration(integration: Integration, req: Request, svc: Services) -> Awaitable[Any]:
    """Run a function integration, keeping its start and duration on the exchange (as the
    protocol does for upstream exchanges: ``t_int``, ``int_ms``).

    PERF: an AWS_PROXY integration does it in its own coroutine (``FunctionRoute.timed``)."""
    if type(integration) is FunctionRoute:
        return integration.timed(req, svc)  # type: ignore[no-any-return]
    return _timed(integration, req, svc)


async def _timed(integration: Integration, req: Request, svc: Services) -> Any:
    t = svc.loop.time()
    ex = req.exchange
    try:
        result = await integration(req, svc)
    finally:
        if ex is not None:
            ex.t_int = t
            ex.int_ms = (svc.loop.time() - t) * 1000.0
    if ex is not None and not ex.up_status:
        ex.up_status = 200  # the invocation's status, as AWS's $context.integration.status
    return result


async def _continue(coro: Any, fut: Any) -> Any:
    from fastgw.functions.registry import _Resume

    return await _Resume(coro, fut)


async def _serve(ex: Exchange, pipeline: RoutePipeline, req: Request, svc: Services) -> None:
    """The Task of one request: the pipeline, then the reply handed to the exchange.

    PERF: the exchange is answered from inside the Task (no done-callback round through the
    loop), and a pipeline that is only an integration runs it directly."""
    direct = pipeline.direct
    try:
        if direct is None:
            if pipeline.lean_auth:
                result = await pipeline.run_authorized(req, svc)
            else:
                result = await pipeline.run(req, svc)
        elif pipeline.timed:
            result = await timed_integration(direct, req, svc)
        else:
            result = await direct(req, svc)
    except asyncio.CancelledError:
        ex.task = None
        raise
    except Exception:
        log.exception("request pipeline failed", extra={"route": pipeline.route.key})
        result = replies.INTERNAL_ERROR
    _finish(ex, pipeline, req, svc, result)


def _finish(ex: Exchange, pipeline: RoutePipeline, req: Request, svc: Services, result: Any) -> None:
    """The end of a request's pipeline (``_serve``'s, or a ``_Stepper``'s): a Handoff proxied,
    anything else replied (stored in the stage cache, compressed, CORS-decorated as set)."""
    if type(result) is Handoff:
        ex.task = None
        ex.pipeline_proxy(result.integration, result.target, result.head, result.body)
        return
    try:
        reply = to_reply(result)
    except Exception:
        log.exception("request pipeline failed", extra={"route": pipeline.route.key})
        reply = replies.INTERNAL_ERROR
    cache = pipeline.cache
    if cache is not None and req.cache_key is not None:
        cache.store(req.cache_key, reply, req, svc)
    if pipeline.compress is not None and reply.kind is None:
        reply = compress_reply(reply, req.header("accept-encoding"), pipeline.compress)
    if pipeline.cors is not None:
        reply = pipeline.cors.decorate(reply, req)
    ex.task = None
    ex.pipeline_done(reply)
    if pipeline.logs:
        pipeline.run_log(req, reply)


def compress_reply(reply: LocalReply, accept_encoding: str | None, minimum: int) -> LocalReply:
    """``reply`` gzip- or deflate-encoded when AWS would compress it (fastgw.pipeline.content)."""
    from fastgw.pipeline import content

    body = reply.body
    if len(body) < minimum or not body or accept_encoding is None:
        return reply
    lines = reply.head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    new_headers, new_body = content.compress_response(reply.status, headers, body, accept_encoding, minimum)
    if new_body is body:
        return reply
    parts = [lines[0] + b"\r\n"]
    parts.extend(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in new_headers)
    parts.append(b"content-length: %d\r\n" % len(new_body))
    return LocalReply.raw(reply.status, b"".join(parts), new_body)

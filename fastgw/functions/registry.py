"""The function registry: Lambda-style handlers run in-process, or remote ones.

``functions: {NAME: {handler: "pkg.mod:fn", ...}}`` in the config becomes one ``LocalFunction``
per name, compiled with the snapshot: the handler is imported at load, so a typo is a config
error with its path, not a 502 at the first request. Each worker process has its own copy.

- ``async def`` handlers run on the worker's event loop, bounded by ``asyncio.timeout``.
- Plain ``def`` handlers run in the worker's bounded thread pool (``gateway.functions.threads``);
  a handler past its timeout is answered 504 at once while its thread finishes on its own
  (Python cannot kill a thread); its concurrency slot frees only then. ``executor: inline``
  calls them on the loop instead (no thread hop; nothing can interrupt them).
- ``max_concurrency`` bounds invocations running at once per worker; more wait for a slot,
  within the same timeout.

The ``context`` argument is a ``LambdaContext`` with the attributes and methods AWS's Python
runtime provides.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import inspect
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from fastgw.functions.errors import FunctionError, FunctionTimeout
from fastgw.functions.events import _impl

log = logging.getLogger("fastgw.functions")


# The request path's half (the context, the first step of an async handler, the slot
# accounting) is compiled with the Lambda proxy events (``fastgw.functions._lambda_py``, built
# as ``_lambda_c``); the loader in ``fastgw.functions.events`` picks the build.
LambdaContext = _impl.LambdaContext
_error_of: Callable[[BaseException], FunctionError] = _impl._error_of


def ensure_cwd_importable() -> None:
    """Make modules of the working directory importable (the ``fastgw`` console script, unlike
    ``python -m``, does not put it on sys.path); appended, so it never shadows a package."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def load_handler(spec: str, code_path: str | None = None) -> Callable[..., Any]:
    """Import ``pkg.mod:callable`` or Lambda's ``pkg/mod.callable`` / ``mod.callable``.

    Raises ValueError with the reason (ImportError text, missing attribute, not callable)."""
    ensure_cwd_importable()
    if code_path:
        code_path = os.path.abspath(code_path)
        if code_path not in sys.path:
            sys.path.insert(0, code_path)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, dot, attr = spec.rpartition(".")
        if not dot:
            raise ValueError(f"handler {spec!r}: expected 'module:callable' or 'module.callable'")
        module_name = module_name.replace("/", ".")
    if not module_name or not attr:
        raise ValueError(f"handler {spec!r}: expected 'module:callable' or 'module.callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as ex:  # ImportError, SyntaxError, or the module raising at import
        raise ValueError(f"cannot import {module_name!r}: {type(ex).__name__}: {ex}") from ex
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


class LocalFunction(_impl.FunctionCore):  # type: ignore[misc,name-defined]
    """An in-process handler, its limits and this worker's concurrency count.

    ``start``, ``_step`` and ``_release`` (the request path) come from ``FunctionCore``."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        timeout: float,
        max_concurrency: int,
        memory_mb: int,
        region: str,
        account_id: str,
        executor: str = "thread",
    ) -> None:
        self.name = name
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.memory_mb = memory_mb
        self.executor_kind = executor
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex
        self.running = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def _continue(self, coro: Any, fut: Any, deadline: float) -> Any:
        try:
            return await _finish(coro, fut, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise FunctionTimeout(self.name) from None
        except Exception as ex:
            raise _error_of(ex) from ex
        finally:
            self._release()

    async def invoke(self, event: Any, executor: Executor | None, timeout: float | None = None) -> Any:
        """Run the handler on ``event``; its return value, or FunctionError / FunctionTimeout."""
        limit = self.timeout if timeout is None or timeout > self.timeout else timeout
        deadline = time.monotonic() + limit
        if self.running >= self.max_concurrency:
            await self._wait_slot(limit)
        self.running += 1
        if self.is_async:
            # PERF: a handler that completes without suspending (most that build a small
            # reply) is finished by one send(), with no timer armed.
            done, got = self._step(event, deadline)
            return got if done else await got
        context = LambdaContext(self, deadline)
        if self.executor_kind == "inline" or executor is None:
            try:
                return self.handler(event, context)
            except Exception as ex:
                raise _error_of(ex) from ex
            finally:
                self._release()
        loop = asyncio.get_running_loop()
        cfut = executor.submit(self.handler, event, context)
        # The slot is freed when the thread is done, even if the caller stopped waiting.
        cfut.add_done_callback(lambda _f: loop.call_soon_threadsafe(self._release))
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await asyncio.wrap_future(cfut)
        except TimeoutError:
            raise FunctionTimeout(self.name) from None
        except Exception as ex:
            raise _error_of(ex) from ex

    async def _wait_slot(self, limit: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        got = False
        try:
            async with asyncio.timeout(limit):
                await fut
            got = True
        except TimeoutError:
            raise FunctionTimeout(self.name) from None
        finally:
            if not got:
                if fut.done() and not fut.cancelled():
                    # The slot was handed over just as this waiter gave up (timeout, or the
                    # client went away): pass it on, or it would be lost for good.
                    self._release()
                elif not fut.done():
                    fut.cancel()
            try:
                self.waiters.remove(fut)
            except ValueError:
                pass
        self.running -= 1  # the slot handed over by _release


class _Resume:
    """Continue a coroutine that already ran its first step and yielded ``fut`` (see invoke)."""

    __slots__ = ("coro", "fut")

    def __init__(self, coro: Any, fut: Any) -> None:
        self.coro = coro
        self.fut = fut

    def __await__(self) -> Any:
        coro = self.coro
        fut = self.fut
        while True:
            try:
                value = yield fut
            except BaseException as ex:  # cancellation or a timeout's CancelledError
                try:
                    fut = coro.throw(ex)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                fut = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _finish(coro: Any, fut: Any, remaining: float) -> Any:
    async with asyncio.timeout(remaining):
        return await _Resume(coro, fut)


def apply_environment(functions: dict[str, Any]) -> list[tuple[str, str]]:
    """Set every function's ``environment`` in os.environ; returns conflicts (name, variable)."""
    seen: dict[str, tuple[str, str]] = {}
    conflicts = []
    for name, spec in functions.items():
        for var, value in spec.environment.items():
            prev = seen.get(var)
            if prev is not None and prev[1] != value:
                conflicts.append((name, var))
                continue
            seen[var] = (name, value)
    for var, (_, value) in seen.items():
        os.environ[var] = value
    return conflicts

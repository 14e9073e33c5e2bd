"""The function registry's concurrency accounting: a slot handed to a waiter that gives up in
the same loop iteration (its client went away, or its timeout fired) is passed on, not lost."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastgw.functions.errors import FunctionTimeout
from fastgw.functions.registry import LocalFunction


def sleeper(event: Any, context: Any) -> str:
    time.sleep(event)
    return "ok"


def make() -> LocalFunction:
    return LocalFunction(
        "f",
        sleeper,
        timeout=5,
        max_concurrency=1,
        memory_mb=128,
        region="us-east-1",
        account_id="123456789012",
    )


def test_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    async def main() -> None:
        fn = make()
        pool = ThreadPoolExecutor(2)
        fn.running = 1  # one invocation in flight
        waiter = asyncio.ensure_future(fn.invoke(0.0, pool, 5))
        await asyncio.sleep(0.01)
        fn._release()  # the one in flight ends: its slot goes to the waiter...
        waiter.cancel()  # ...whose client goes away in the same iteration
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        assert fn.running == 0
        assert await fn.invoke(0.0, pool, 1) == "ok"
        pool.shutdown()

    asyncio.run(main())


def test_slot_handed_as_the_wait_times_out_is_passed_on() -> None:
    async def main() -> None:
        fn = make()
        pool = ThreadPoolExecutor(2)
        fn.running = 1
        waiter = asyncio.ensure_future(fn.invoke(0.0, pool, 0.2))
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.2, fn._release)
        try:
            await waiter
        except FunctionTimeout:
            pass
        assert fn.running == 0
        assert await fn.invoke(0.0, pool, 1) == "ok"
        pool.shutdown()

    asyncio.run(main())

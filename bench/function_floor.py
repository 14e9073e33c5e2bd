"""What one in-process function invocation costs, part by part, without sockets.

The functions budget (an async handler serves at least 1.5x the requests/s of the same reply
proxied) leaves a function route ``proxy CPU / 1.5 - MOCK CPU`` of CPU per request on top of
a MOCK reply (``python -m bench.load --functions`` prints that allowance from its own rounds).
This measures, on the same machine, what the invocation itself takes, in the order a request
meets it:

* ``Request``: the buffered request the pipeline works on (a MOCK builds none);
* ``event``: the payload 1.0 Lambda proxy event of bench.load's function request (its headers
  and path; ``fastgw.functions.events.build_event_v1``);
* ``invoke``: bench.functions' ``small`` handler called and run to its return (the context
  object, the coroutine, its first and only step; ``LocalFunction.start``);
* ``reply``: its ``{"statusCode", "headers", "body"}`` turned into the bytes sent
  (``fast_reply_v1``);
* ``Task``: the asyncio Task the request runs in (created, scheduled, stepped, freed; 64 per
  loop iteration, as under load), less driving the same coroutine by hand. The handler may call
  ``asyncio.current_task()`` or use ``asyncio.timeout()``, which need it; Python 3.11 has no
  eager tasks.

The Task and the handler's coroutine are what any asyncio gateway pays to run an ``async def``
handler; the other parts are fastgw's code. Best of 5 runs each::

    python -m bench.function_floor
    FASTGW_NO_EXTENSIONS=1 python -m bench.function_floor   # the pure-Python build
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.pipeline import best_of_5

#: The function request of ``bench.load --functions`` as the pipeline sees it (wrk sends Host;
#: the bench adds Authorization to every request; fastgw adds the X-Forwarded-* headers).
HEADERS = [
    ("Host", "127.0.0.1:8080"),
    ("Authorization", "bench-token-0123456789"),
    ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Port", "8080"),
    ("X-Forwarded-Proto", "http"),
]


async def _noop() -> int:
    return 1


def task_cost(loop: asyncio.AbstractEventLoop, rounds: int, batch: int = 64) -> tuple[float, float]:
    """(seconds per Task of a coroutine that returns at once, seconds per driving it by hand):
    ``batch`` of them per loop iteration."""

    async def tasks(n: int) -> None:
        create = loop.create_task
        for _ in range(n):
            for _ in range(batch):
                create(_noop())
            await asyncio.sleep(0)

    async def by_hand(n: int) -> None:
        for _ in range(n):
            for _ in range(batch):
                coro = _noop()
                try:
                    coro.send(None)
                except StopIteration:
                    pass
            await asyncio.sleep(0)

    with_task = best_of_5(lambda n: loop.run_until_complete(tasks(n)), rounds, False) / batch
    direct = best_of_5(lambda n: loop.run_until_complete(by_hand(n)), rounds, False) / batch
    return with_task, direct


def parts(iterations: int) -> list[tuple[str, float]]:
    """(part, seconds per invocation) of bench.load's function route, in request order."""
    import uvloop

    from bench.pipeline import function_config
    from fastgw.config.compile import compile_config
    from fastgw.config.load import load_config_text
    from fastgw.functions import events
    from fastgw.pipeline.request import Request
    from fastgw.server.worker import Worker

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    snapshot = compile_config(load_config_text(function_config()))
    Worker(snapshot, loop)  # registers the functions, as a worker does
    route = snapshot.stages[0].trie.match("GET", "/fn/x").value
    integ = route.pipeline.integration
    local = integ.local
    if type(integ) is not events.FunctionRoute or local is None:
        raise SystemExit("bench: /prod/fn/x is not an in-process function route")
    now_ms = int(time.time() * 1000)

    def request() -> Request:
        return Request(
            route,
            "GET",
            "/prod/fn/x",
            "/fn/x",
            "",
            HEADERS,
            b"",
            "127.0.0.1",
            "c0ffee00-0000-4000-8000-000000000000",
            now_ms,
            {"x": "x"},
            "127.0.0.1",
        )

    req = request()
    event = events.build_event_v1(req)
    done, result = local.start(event, None, integ.timeout)
    if not done:
        raise SystemExit("bench: bench.functions:small suspended; it should return at once")
    if events.fast_reply_v1(result, True) is None:
        raise SystemExit("bench: the handler's response did not take the direct path")

    def build_requests(n: int) -> None:
        for _ in range(n):
            request()

    def build_events(n: int) -> None:
        build = events.build_event_v1
        for _ in range(n):
            build(req)

    def invoke(n: int) -> None:
        start = local.start
        timeout = integ.timeout
        for _ in range(n):
            start(event, None, timeout)

    def reply(n: int) -> None:
        fast = events.fast_reply_v1
        for _ in range(n):
            fast(result, True)

    with_task, direct = task_cost(loop, max(1, iterations // 64))
    out = [
        ("Request", best_of_5(build_requests, iterations, False)),
        ("event", best_of_5(build_events, iterations, False)),
        ("invoke", best_of_5(invoke, iterations, False)),
        ("reply", best_of_5(reply, iterations, False)),
        ("Task", with_task - direct),
    ]
    loop.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.function_floor",
        description="User-space cost of one in-process function invocation, part by part.",
    )
    ap.add_argument("--iterations", type=int, default=50_000, help="per run (50,000)")
    args = ap.parse_args(argv)
    from fastgw.functions import events

    rows = parts(args.iterations)
    build = "compiled" if events.COMPILED else "pure-Python"
    width = max(len(name) for name, _ in rows)
    for name, sec in rows:
        print(f"{name:<{width}}  {sec * 1e6:6.2f} µs")
    total = sum(sec for _, sec in rows)
    print(f"{'total':<{width}}  {total * 1e6:6.2f} µs per invocation ({build} build, best of 5 runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

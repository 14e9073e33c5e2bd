"""User-space cost of one proxied request, without sockets.

Drives a small proxied GET (client head in, upstream head + 100-byte body back) through the
real protocol objects of the selected build with in-memory transports, and prints the best
time per request over 5 runs. Kernel time, uvloop and the network are left out on purpose:
this is the part of a request's CPU that fastgw's own code decides.

    python -m bench.pipeline                       # compiled build
    FASTGW_NO_EXTENSIONS=1 python -m bench.pipeline  # pure-Python build
    python -m bench.pipeline --keyed               # the route requires an API key (usage plan)
    python -m bench.pipeline --mapped              # bench.rest's mapped route (VTL templates)
    python -m bench.pipeline --function            # bench.functions' in-process function route
    python -m bench.pipeline --authorized          # the same behind a cached TOKEN authorizer
    python -m bench.pipeline --cached              # bench.rest's cached route, a cache hit
    python -m bench.pipeline --mock                # bench.functions' MOCK route
    python -m bench.pipeline --iterations 20000 --once   # one pass, for valgrind --tool=callgrind

``--mapped`` drives ``GET /prod/mapped/small`` of ``bench.rest.rest_config`` (an HTTP integration
with a request and a response template): that route's pipeline runs in an asyncio Task, so each
request is driven by a coroutine that lets the loop run until the upstream request, then the
client response, has been written.

``--function`` drives ``GET /prod/fn/x`` of ``bench.functions.functions_config`` (an AWS_PROXY
route to an async in-process handler answering 100 bytes of JSON): no upstream; each request is
driven until the client response has been written. ``--authorized`` drives ``GET /prod/auth/x``,
the same function behind a TOKEN authorizer whose decision is cached after the warm-up.

``--cached`` drives ``GET /prod/cached/small`` of ``bench.rest.rest_config`` after one miss has
stored the response: every timed request is a hit, answered from the head without a Task.
``--mock`` drives ``GET /prod/mock/x`` of ``bench.functions.functions_config``: a MOCK reply, the
floor of any locally answered route.

Instructions per request: run ``--once`` under callgrind with two iteration counts and divide
the difference of the totals by the difference of the counts (startup cancels out).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

HUGE = "{rateLimit: 1000000000, burstLimit: 1000000000}"  # checked on every request, never reached


def config(keyed: bool) -> str:
    """One proxied route; keyed: it requires an API key in a usage plan (throttle + quota)."""
    key_required = "\n        apiKeyRequired: true" if keyed else ""
    text = f"""
gateway:
  throttle: {HUGE}
apis:
  - name: bench
    routes:
      - route: "ANY /{{proxy+}}"{key_required}
        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:19000/{{proxy}}"}}
    stages: [{{name: prod, throttle: {HUGE}}}]
"""
    if keyed:
        text += f"""
apiKeys: [{{name: k, value: bench-key-0123456789abcdef}}]
usagePlans:
  - name: p
    apiStages: [{{apiId: bench, stage: prod}}]
    throttle: {HUGE}
    quota: {{limit: 1000000000000, period: MONTH}}
    keys: [k]
"""
    return text


REQUEST = b"GET /prod/small HTTP/1.1\r\nHost: 127.0.0.1:19002\r\n\r\n"
KEYED_REQUEST = (
    b"GET /prod/small HTTP/1.1\r\nHost: 127.0.0.1:19002\r\nx-api-key: bench-key-0123456789abcdef\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 13:05:10 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n" + b"x" * 100
)


class MemoryTransport:
    """Just enough of an asyncio transport: writes are kept (and dropped) in memory."""

    def __init__(self) -> None:
        self.last = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def mapped_config() -> str:
    """bench.load --rest's config: the proxied route plus the cached and the mapped routes."""
    from bench.rest import rest_config
    from bench.servers import bench_config

    return rest_config(bench_config(19000), 19000)


def mapped_messages() -> tuple[bytes, bytes, bytes]:
    """(client request, upstream response, the client response expected) of the mapped route."""
    from bench.rest import JSON_BODY, USER_AGENT

    request = (
        b"GET /prod/mapped/small HTTP/1.1\r\nHost: 127.0.0.1:19002\r\nUser-Agent: %s\r\n\r\n"
        % USER_AGENT.encode()
    )
    response = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 13:05:10 GMT\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s"
        % (len(JSON_BODY), JSON_BODY.encode())
    )
    return request, response, b'{"wrapped": %s}' % JSON_BODY.encode()


def build(
    keyed: bool = False, mapped: bool = False, text: str | None = None
) -> tuple[Any, Any, MemoryTransport, MemoryTransport]:
    """The client and upstream protocols of one worker on in-memory transports; ``text``: a
    config of the caller's (its first stage must route ``GET /small`` to the upstream)."""
    import uvloop

    from fastgw.config.compile import compile_config
    from fastgw.config.load import load_config_text
    from fastgw.server.protocol import HttpProtocol, UpstreamConnection
    from fastgw.server.worker import Worker

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    if text is None:
        text = mapped_config() if mapped else config(keyed)
    snapshot = compile_config(load_config_text(text))
    worker = Worker(snapshot, loop)
    client, client_t = HttpProtocol(worker), MemoryTransport()
    client.connection_made(client_t)
    target = snapshot.stages[0].trie.match("GET", "/small").value.integration.targets[0]
    pool = worker.pools.get(target)
    upstream, upstream_t = UpstreamConnection(pool), MemoryTransport()
    upstream.connection_made(upstream_t)
    pool.all.add(upstream)
    pool.idle.append(upstream)
    return client, upstream, client_t, upstream_t


def best_of_5(run: Callable[[int], object], iterations: int, once: bool) -> float:
    """Best seconds per request of ``run(iterations)`` over 5 runs (``once``: one pass, 0.0)."""
    if once:
        run(iterations)
        return 0.0
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        run(iterations)
        best = min(best, (time.perf_counter() - t0) / iterations)
    return best


async def round_trip(
    client: Any,
    upstream: Any,
    client_t: MemoryTransport,
    upstream_t: MemoryTransport,
    request: bytes,
    response: bytes,
) -> None:
    """One request of a route whose pipeline runs on the loop: the client's request in, the
    loop run until the upstream request is written, the upstream's response in, the loop run
    until the client's response is written."""
    upstream_t.last = client_t.last = b""
    client.data_received(request)
    while not upstream_t.last:
        await asyncio.sleep(0)
    upstream.data_received(response)
    while not client_t.last:
        await asyncio.sleep(0)


def run_mapped(iterations: int, once: bool) -> float:
    """Best seconds per mapped request over 5 runs (``once``: one unchecked pass, 0.0)."""
    client, upstream, client_t, upstream_t = build(mapped=True)
    request, response, expected = mapped_messages()
    loop = asyncio.get_event_loop()

    async def many(n: int) -> None:
        for _ in range(n):
            await round_trip(client, upstream, client_t, upstream_t, request, response)

    loop.run_until_complete(many(2000))
    assert upstream_t.last.startswith(b"GET /small.json HTTP/1.1\r\n"), upstream_t.last
    head, _, body = client_t.last.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
    assert body == expected, client_t.last
    return best_of_5(lambda n: loop.run_until_complete(many(n)), iterations, once)


def function_config() -> str:
    """bench.load --functions' config: the proxied route plus the MOCK and function routes."""
    from bench.functions import functions_config
    from bench.servers import bench_config

    return functions_config(bench_config(19000))


FUNCTION_REQUEST = (
    b"GET /prod/fn/x HTTP/1.1\r\nHost: 127.0.0.1:19002\r\n"
    b"Authorization: bench-token-0123456789\r\nUser-Agent: wrk\r\n\r\n"
)
AUTHORIZED_REQUEST = FUNCTION_REQUEST.replace(b"/prod/fn/", b"/prod/auth/")


def run_function(iterations: int, once: bool, authorized: bool = False) -> float:
    """Best seconds per function request over 5 runs (``once``: one unchecked pass, 0.0);
    ``authorized``: the route behind a cached TOKEN authorizer."""
    from bench.functions import BODY

    client, _upstream, client_t, _upstream_t = build(text=function_config())
    request = AUTHORIZED_REQUEST if authorized else FUNCTION_REQUEST
    loop = asyncio.get_event_loop()
    sleep = asyncio.sleep

    async def many(n: int) -> None:
        for _ in range(n):
            client_t.last = b""
            client.data_received(request)
            while not client_t.last:
                await sleep(0)

    loop.run_until_complete(many(2000))
    head, _, body = client_t.last.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
    assert body == BODY.encode(), client_t.last
    return best_of_5(lambda n: loop.run_until_complete(many(n)), iterations, once)


MOCK_REQUEST = b"GET /prod/mock/x HTTP/1.1\r\nHost: 127.0.0.1:19002\r\nUser-Agent: wrk\r\n\r\n"
CACHED_REQUEST = b"GET /prod/cached/small HTTP/1.1\r\nHost: 127.0.0.1:19002\r\nUser-Agent: wrk\r\n\r\n"


def run_local(cached: bool, iterations: int, once: bool) -> float:
    """Best seconds per locally answered request (a cache hit, or a MOCK) over 5 runs."""
    client, upstream, client_t, upstream_t = build(text=mapped_config() if cached else function_config())
    request = CACHED_REQUEST if cached else MOCK_REQUEST
    if cached:
        # One miss through the upstream stores the response; the rest are hits.
        loop = asyncio.get_event_loop()
        loop.run_until_complete(round_trip(client, upstream, client_t, upstream_t, request, RESPONSE))
        upstream_t.last = b""
    for _ in range(2000):
        client_t.last = b""
        client.data_received(request)
    head, _, body = client_t.last.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last
    assert not upstream_t.last, "a cache hit went upstream"
    if cached:
        assert body == b"x" * 100, client_t.last

    def many(n: int) -> None:
        for _ in range(n):
            client.data_received(request)

    return best_of_5(many, iterations, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--once", action="store_true", help="one pass, no timing (for callgrind)")
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="the route requires an API key in a usage plan (key lookup, 3 bucket levels, quota)",
    )
    parser.add_argument(
        "--mapped",
        action="store_true",
        help="bench.rest's mapped route: HTTP integration with a request and a response template",
    )
    parser.add_argument(
        "--function",
        action="store_true",
        help="bench.functions' AWS_PROXY route: an async in-process handler, 100 bytes of JSON",
    )
    parser.add_argument(
        "--authorized",
        action="store_true",
        help="--function's route behind a TOKEN authorizer (its decision cached after the warm-up)",
    )
    parser.add_argument("--cached", action="store_true", help="bench.rest's cached route: a cache hit")
    parser.add_argument("--mock", action="store_true", help="bench.functions' MOCK route")
    args = parser.parse_args()

    from fastgw.server import protocol

    build_name = "compiled" if protocol.COMPILED else "pure Python"
    if args.cached or args.mock:
        best = run_local(args.cached, args.iterations, args.once)
        if not args.once:
            what = "cache hit" if args.cached else "MOCK request"
            print(f"{best * 1e6:.2f} µs per {what} ({build_name} build, user space, in-memory transports)")
        return
    if args.mapped or args.function or args.authorized:
        if args.mapped:
            best = run_mapped(args.iterations, args.once)
        else:
            best = run_function(args.iterations, args.once, args.authorized)
        if not args.once:
            where = f"{build_name} build, user space, in-memory transports"
            what = "mapped" if args.mapped else "authorized function" if args.authorized else "function"
            print(f"{best * 1e6:.2f} µs per {what} request ({where})")
        return
    client, upstream, client_t, upstream_t = build(args.keyed)
    request = KEYED_REQUEST if args.keyed else REQUEST

    def one() -> None:
        client.data_received(request)
        upstream.data_received(RESPONSE)

    for _ in range(2000):
        one()
    assert upstream_t.last.startswith(b"GET /small HTTP/1.1\r\n"), upstream_t.last
    assert client_t.last.startswith(b"HTTP/1.1 200 OK\r\n"), client_t.last

    def many(n: int) -> None:
        for _ in range(n):
            one()

    best = best_of_5(many, args.iterations, args.once)
    if args.once:
        return
    what = "keyed request" if args.keyed else "proxied request"
    print(f"{best * 1e6:.2f} µs per {what} ({build_name} build, user space, in-memory transports)")


if __name__ == "__main__":
    main()

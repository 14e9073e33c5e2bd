"""A paced HTTP/1.1 load driver for the traffic tests: real sockets, keep-alive, counts statuses.

``drive(targets, rate, seconds)`` sends ``rate`` requests per second in total for ``seconds``,
spread over keep-alive connections to the given (port, raw request bytes) targets in turn (one
target per gateway node), and returns how many responses had each status. It stays well inside
what one Python process can send on a 2-core machine (a few hundred requests per second).
"""

from __future__ import annotations

import asyncio
import collections
import time

HOST = "127.0.0.1"


def request_bytes(path: str, headers: dict[str, str] | None = None, host: str = "gw.test") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _conn(
    port: int, req: bytes, times: list[float], counts: collections.Counter[int], deadline: float
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for t in times:
            delay = t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > deadline:
                break
            writer.write(req)
            status, _ = await asyncio.wait_for(_read_response(reader), 5.0)
            counts[status] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def drive_async(
    targets: list[tuple[int, bytes]], rate: float, seconds: float, conns_per_target: int = 4
) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    n = int(rate * seconds)
    start = time.monotonic() + 0.05
    nconn = conns_per_target * len(targets)
    schedule: list[list[float]] = [[] for _ in range(nconn)]
    for i in range(n):
        schedule[i % nconn].append(start + i / rate)
    tasks = []
    for j in range(nconn):
        port, req = targets[j % len(targets)]
        tasks.append(_conn(port, req, schedule[j], counts, start + seconds + 2))
    await asyncio.gather(*tasks)
    return counts


def drive(
    targets: list[tuple[int, bytes]], rate: float, seconds: float, conns_per_target: int = 4
) -> collections.Counter[int]:
    return asyncio.run(drive_async(targets, rate, seconds, conns_per_target))

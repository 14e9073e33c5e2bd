"""WebSocket echo: fastgw (one worker, an in-process ``$default`` echo function or a MOCK) next to
a plain ``websockets`` echo server, each pinned to core 0; the client on core 1.

    python -m bench.websocket_echo [--seconds 5] [--connections 64] [--window 8]

The client is one process of raw asyncio sockets: each connection keeps ``--window`` masked
16-byte text frames in flight and counts the frames that come back (no library on the client
side, so the client is not the bottleneck). Prints messages/s per target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PLAIN = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    port = int(sys.argv[1])
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=2**20, ping_interval=None):
        await asyncio.Future()
asyncio.run(main())
"""

_HANDLER = """
async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def _frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def _one(port: int, path: str, window: int, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    msg = _frame(b"0123456789abcdef")
    writer.write(msg * window)
    buf = b""
    n = 0
    while time.monotonic() < stop:
        buf += await reader.read(65536)
        got = 0
        while len(buf) >= 2:
            size = buf[1] & 0x7F
            if len(buf) < 2 + size:
                break
            buf = buf[2 + size :]
            got += 1
        n += got
        if got:
            writer.write(msg * got)
    counts.append(n)
    writer.close()


async def _client(port: int, path: str, conns: int, window: int, seconds: float) -> float:
    counts: list[int] = []
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_one(port, path, window, stop, counts) for _ in range(conns)))
    return sum(counts) / seconds


def run_target(
    name: str, cmd: list[str], port: int, path: str, args: argparse.Namespace, env: dict[str, str]
) -> float:
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(port)
        time.sleep(0.5)
        os.sched_setaffinity(0, {1})
        rate = asyncio.run(_client(port, path, args.connections, args.window, args.seconds))
        print(f"{name:28s} {rate:12,.0f} msg/s", flush=True)
        return rate
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--window", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastgw-wsbench-"))
    (tmp / "wsbench_handler.py").write_text(_HANDLER)
    env = dict(os.environ)
    results = {}
    port = _port()
    results["websockets"] = run_target(
        "plain websockets echo", [sys.executable, "-c", _PLAIN, str(port)], port, "/", args, env
    )
    for kind, integ in (
        ("function", {"type": "AWS_PROXY", "uri": "echo"}),
        ("mock", {"type": "MOCK", "body": "0123456789abcdef"}),
    ):
        port = _port()
        config = {
            "gateway": {"listen": f"127.0.0.1:{port}", "admin": {"enabled": False}, "metrics": False},
            "functions": {"echo": {"handler": "wsbench_handler:echo", "code_path": str(tmp)}},
            "apis": [
                {
                    "name": "bench",
                    "kind": "websocket",
                    "routes": [
                        {
                            "route": "$default",
                            "integration": integ,
                            "routeResponseSelectionExpression": "$default",
                        }
                    ],
                    "stages": [
                        {"name": "prod", "variables": {}},
                    ],
                    "websocket": {"new_connections_per_second": 0},
                }
            ],
        }
        path = tmp / f"{kind}.json"
        path.write_text(json.dumps(config))
        cmd = [
            sys.executable,
            "-m",
            "fastgw",
            "run",
            "-c",
            str(path),
            "--workers",
            "1",
            "--state",
            str(tmp / "s.db"),
        ]
        results[kind] = run_target(f"fastgw $default {kind}", cmd, port, "/prod", args, env)
    base = results["websockets"]
    for kind in ("function", "mock"):
        print(f"fastgw {kind} / websockets: {results[kind] / base:.0%}")


if __name__ == "__main__":
    main()

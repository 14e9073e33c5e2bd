"""What the WebSocket benches share: the servers under test, their configs, the RESULTS.md block.

Targets (each one process tree, the server pinned by the caller):

- ``websockets``: a plain ``websockets`` echo server (``serve``, stock asyncio loop), one process;
- ``websockets-uvloop``: the same on uvloop (the loop fastgw runs on);
- ``fastgw-function`` / ``fastgw-mock``: fastgw, one worker, WebSocket API ``wsbench`` (stage
  ``prod``, path ``/prod``) whose only route is ``$default`` two-way, to an in-process ``async def``
  echo function or a MOCK. The config also holds an HTTP API ``ctl`` whose ``POST
  /ctl/broadcast`` runs a function calling ``fastgw.websocket.broadcast("wsbench/prod", ...)``
  (the broadcast bench's trigger; it adds nothing to the WebSocket path). Connection limits are
  lifted: ``new_connections_per_second: 0``, ``idle_timeout`` and ``max_duration`` one day.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import report
from bench.procs import Managed, ProcessSet, children_of, free_port, log, wait_port

REPO = Path(__file__).resolve().parents[1]
WS_API_ID = "wsbench"
WS_PATH = "/prod"
BROADCAST_PATH = "/ctl/broadcast"
BROADCAST_BYTES = 100

PLAIN_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    port = int(sys.argv[1])
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=2**20, ping_interval=None):
        await asyncio.Future()
if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""

HANDLERS = """
import json, time
from fastgw import websocket

async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}

async def bcast(event, context):
    seq = int(json.loads(event.get("body") or "{}").get("seq", 0))
    t0 = time.monotonic()
    data = f"{seq:08d} {t0:.6f} ".ljust(BYTES, ".")
    n = await websocket.broadcast(STAGE, data)
    t1 = time.monotonic()
    return {"statusCode": 200, "body": json.dumps({"seq": seq, "t0": t0, "t1": t1, "n": n})}
"""
HANDLERS = HANDLERS.replace("BYTES", str(BROADCAST_BYTES)).replace("STAGE", repr(f"{WS_API_ID}/prod"))

TARGETS = ("websockets", "websockets-uvloop", "fastgw-function", "fastgw-mock")
LABELS = {
    "websockets": "plain `websockets` echo (asyncio)",
    "websockets-uvloop": "plain `websockets` echo (uvloop)",
    "fastgw-function": "fastgw `$default` in-process function",
    "fastgw-mock": "fastgw `$default` MOCK",
}


def fastgw_config(kind: str, code_path: Path) -> dict[str, object]:
    integration: dict[str, object] = {"type": "AWS_PROXY", "uri": "echo"}
    if kind == "mock":
        integration = {"type": "MOCK", "body": "0123456789abcdef"}
    return {
        "gateway": {"admin": {"enabled": False}, "metrics": False, "workers": 1},
        "functions": {
            "echo": {"handler": "wsbench_handlers:echo", "code_path": str(code_path)},
            "bcast": {"handler": "wsbench_handlers:bcast", "code_path": str(code_path), "timeout_ms": 20000},
        },
        "apis": [
            {
                "name": "wsbench",
                "id": WS_API_ID,
                "kind": "websocket",
                "routes": [
                    {
                        "route": "$default",
                        "integration": integration,
                        "routeResponseSelectionExpression": "$default",
                    }
                ],
                "stages": [{"name": "prod"}],
                "websocket": {
                    "new_connections_per_second": 0,
                    "idle_timeout": 86400,
                    "max_duration": 86400,
                },
            },
            {
                "name": "ctl",
                "id": "wsbenchctl",
                "kind": "http",
                "routes": [
                    {"route": "POST /broadcast", "integration": {"type": "AWS_PROXY", "uri": "bcast"}}
                ],
                "stages": [{"name": "ctl"}],
            },
        ],
    }


@dataclass
class Started:
    key: str
    port: int
    managed: Managed
    worker: int  # pid of the process serving the connections

    @property
    def pid(self) -> int:
        return self.managed.proc.pid

    def alive(self) -> bool:
        return self.managed.proc.poll() is None


def start_target(procs: ProcessSet, key: str, tmp: Path, cores: Sequence[int] | None) -> Started:
    """Start one target on a free loopback port; raise RuntimeError (with its log) if it fails."""
    port = free_port()
    log_path = tmp / f"{key}-{port}.log"
    if key.startswith("websockets"):
        loop = "uvloop" if key.endswith("uvloop") else "asyncio"
        script = tmp / "plain_ws_server.py"
        script.write_text(PLAIN_SERVER)
        cmd = [sys.executable, str(script), str(port), loop]
    else:
        (tmp / "wsbench_handlers.py").write_text(HANDLERS)
        cfg = tmp / f"{key}.json"
        cfg.write_text(json.dumps(fastgw_config(key.split("-", 1)[1], tmp)))
        cmd = [
            sys.executable,
            "-m",
            "fastgw",
            "run",
            "-c",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--no-admin",
            "--state",
            str(tmp / f"state-{port}.db"),
        ]
    m = procs.start(key, cmd, log_path=log_path, cores=cores, cwd=str(REPO))
    if not wait_port(port, m.proc, 30):
        tail = m.tail()
        procs.stop(m)
        raise RuntimeError(f"{key} did not start; its output:\n{tail}")
    worker = m.proc.pid
    if key.startswith("fastgw"):
        # the supervisor forks the worker (which inherits the pinning): that child holds the sockets
        import time

        deadline = time.monotonic() + 10
        kids = children_of(m.proc.pid)
        while not kids and time.monotonic() < deadline:
            time.sleep(0.1)
            kids = children_of(m.proc.pid)
        if len(kids) != 1:
            procs.stop(m)
            raise RuntimeError(f"{key}: expected one worker process, found {kids}")
        worker = kids[0]
    log(f"bench: {key} listening on {port}, worker pid {worker}")
    return Started(key, port, m, worker)


def foreign_load(busy: dict[int, float], server_share: float, client_share: float) -> str:
    """Why a run looks contaminated by other work on the machine, or "".

    Core 0 is the server's alone: when it is ~100 % busy, the server's own CPU share should be
    too (under 90 %: something else ran there). Core 1 is the client's: busy well above the
    client's own share (over 15 points: loopback softirq accounts for a few) means another
    process ran there."""
    notes = []
    if busy.get(0, 0.0) > 0.95 and server_share < 0.90:
        notes.append(f"c0 {busy[0]:.0%} but the server {server_share:.0%}")
    if 1 in busy and busy[1] - client_share > 0.15:
        notes.append(f"c1 {busy[1]:.0%} but the client {client_share:.0%}")
    return "; ".join(notes)


def versions() -> list[tuple[str, str]]:
    """Versions of the reference server's and the client's libraries, for the machine block."""
    out = []
    for name in ("websockets", "uvloop"):
        try:
            mod = __import__(name)
            out.append((name, str(getattr(mod, "__version__", "?"))))
        except ImportError:
            out.append((name, "not installed"))
    return out


def io_syscalls(pid: int) -> tuple[int, int]:
    """(read, write) syscalls of a process so far (``/proc/PID/io`` syscr, syscw; (0, 0) if gone).

    Linux counts read(2)/write(2)-family calls there, not send/recv: libuv (uvloop) uses write(2)
    on sockets, asyncio's selector loop send(2), which reads as 0."""
    try:
        fields = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except OSError:
        return 0, 0
    return int(fields.get("syscr", 0)), int(fields.get("syscw", 0))


def path_of(key: str) -> str:
    return "/" if key.startswith("websockets") else WS_PATH


# --------------------------------------------------------------------------- RESULTS.md


def write_block(block: str, body: str, path: Path | None = None) -> None:
    """Replace the ``block`` part (``echo`` or ``scale``) of RESULTS.md's websocket section; text of
    the section outside the two blocks (hand-written notes) is kept."""
    path = path or report.RESULTS_MD
    start, end = f"<!-- websocket:{block}:start -->", f"<!-- websocket:{block}:end -->"
    text = path.read_text() if path.exists() else ""
    sec_start, sec_end = "<!-- bench:websocket:start -->", "<!-- bench:websocket:end -->"
    current = ""
    if sec_start in text and sec_end in text:
        current = text.split(sec_start, 1)[1].split(sec_end, 1)[0].strip("\n")
    piece = f"{start}\n{body.rstrip()}\n{end}"
    if start in current and end in current:
        pre, rest = current.split(start, 1)
        _, post = rest.split(end, 1)
        current = pre + piece + post
    else:
        # blocks in a fixed order: echo, then scale; anything else (an older text) is dropped
        blocks = {}
        for name in ("echo", "scale"):
            s, e = f"<!-- websocket:{name}:start -->", f"<!-- websocket:{name}:end -->"
            if s in current and e in current:
                blocks[name] = s + current.split(s, 1)[1].split(e, 1)[0] + e
        blocks[block] = piece
        current = "\n\n".join(blocks[name] for name in ("echo", "scale") if name in blocks)
    report.update_results("websocket", current, path)

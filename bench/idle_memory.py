"""Memory held per idle client connection (``python -m bench.idle_memory --help``).

Starts the upstream nginx, fastgw (1 worker, the load bench's config with 600 s keep-alive and
header timeouts) and, for reference, nginx (1 worker) as a proxy; then for each of the two:

1. RSS of the worker with no client connection;
2. N connections opened and left fully idle (no byte sent);
3. one ``GET /prod/small`` sent and answered on each, one connection after the other, the
   connections then idle in keep-alive;
4. all closed.

KiB per connection = (RSS at step 2 or 3 - RSS at step 1) / connections accepted. The worker is
the process of the server's tree holding the most sockets (fastgw: the supervisor's child).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import report
from bench.procs import (
    ProcessSet,
    ensure_tools,
    log,
    proc_tree,
    raise_nofile,
    rss_kib,
    sigterm_as_interrupt,
    socket_fds,
)
from bench.servers import Server, bench_config, start_fastgw, start_nginx_proxy, start_upstream

IDLE_TIMEOUT = 600.0


@dataclass
class MemResult:
    target: str
    worker_pid: int
    wanted: int
    opened: int = 0
    accepted: int = 0
    answered: int = 0
    rss_base: int = 0
    rss_idle: int = 0
    rss_keepalive: int = 0
    rss_closed: int = 0
    error: str | None = None

    def per_conn(self, rss: int) -> float:
        return (rss - self.rss_base) / self.accepted if self.accepted else float("nan")


def _worker_of(srv: Server) -> int:
    """The process of the tree holding the most sockets (the listener counts one)."""
    tree = proc_tree(srv.pid)
    return max(tree, key=lambda p: (socket_fds(p), p != srv.pid))


def _settle(seconds: float) -> None:
    time.sleep(seconds)


def _wait_accepted(pid: int, base_fds: int, want: int, timeout: float) -> int:
    """Poll the worker's socket count until ``want`` more sockets appear (or time runs out)."""
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = socket_fds(pid) - base_fds
        if got >= want:
            return got
        time.sleep(0.2)
    return max(0, got)


def _read_response(sock: socket.socket) -> bool:
    """Read one HTTP/1.1 response with a Content-Length body; True on a 2xx."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.split(b" ", 2)[1].startswith(b"2")


def measure(srv: Server, name: str, n: int, path: str, settle: float) -> MemResult:
    _settle(settle)
    tree = proc_tree(srv.pid)
    base_fds = {pid: socket_fds(pid) for pid in tree}
    base_rss = {pid: rss_kib(pid) for pid in tree}
    res = MemResult(name, _worker_of(srv), n)
    socks: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            except OSError as ex:
                res.error = f"connect #{len(socks) + 1} failed: {ex}"
                break
            socks.append(s)
        res.opened = len(socks)
        log(f"idle_memory: {name}: {res.opened} connections opened in {time.monotonic() - t0:.1f}s")
        # the worker is the process of the tree whose socket count grows with the connections
        time.sleep(0.5)
        res.worker_pid = max(tree, key=lambda p: socket_fds(p) - base_fds[p])
        worker = res.worker_pid
        res.rss_base = base_rss[worker]
        res.accepted = _wait_accepted(worker, base_fds[worker], res.opened, 20)
        if res.accepted < res.opened:
            log(f"idle_memory: {name}: only {res.accepted} of {res.opened} connections held by the worker")
        _settle(settle)
        res.rss_idle = rss_kib(worker)
        log(
            f"idle_memory: {name}: worker pid {worker}: RSS {res.rss_base} KiB -> {res.rss_idle} KiB "
            "with idle connections"
        )

        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        # one request at a time, so that the reading shows idle keep-alive connections,
        # not the peak of N requests in flight at once
        for s in socks:
            try:
                s.sendall(request)
                if _read_response(s):
                    res.answered += 1
            except (OSError, ValueError, IndexError):
                pass
        _settle(settle)
        res.rss_keepalive = rss_kib(worker)
        log(
            f"idle_memory: {name}: {res.answered} requests answered; RSS {res.rss_keepalive} KiB "
            "with the connections idle in keep-alive"
        )
    finally:
        for s in socks:
            s.close()
    _settle(settle)
    res.rss_closed = rss_kib(res.worker_pid)
    return res


def table(results: Sequence[MemResult]) -> str:
    rows = []
    for r in results:
        if r.error and not r.accepted:
            rows.append([r.target, "-", "-", "-", "-", "-", "-", "-", r.error])
            continue
        rows.append(
            [
                r.target,
                f"{r.accepted:,}",
                f"{r.rss_base:,}",
                f"{r.rss_idle:,}",
                f"{r.per_conn(r.rss_idle):.2f}",
                f"{r.rss_keepalive:,}",
                f"{r.per_conn(r.rss_keepalive):.2f}",
                f"{r.rss_closed:,}",
                r.error or (f"{r.answered:,} answered" if r.answered != r.accepted else "ok"),
            ]
        )
    return report.markdown_table(
        [
            "server (1 worker)",
            "connections",
            "RSS before KiB",
            "RSS idle KiB",
            "KiB/conn idle",
            "RSS after 1 req KiB",
            "KiB/conn keep-alive",
            "RSS closed KiB",
            "notes",
        ],
        rows,
        align="lrrrrrrrl",
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.idle_memory",
        description="Worker RSS per idle client connection, fastgw vs nginx (1 worker each).",
    )
    p.add_argument("--connections", type=int, default=10000, help="idle connections to open (10000)")
    p.add_argument("--settle", type=float, default=1.5, help="seconds to wait before each RSS reading (1.5)")
    p.add_argument("--no-nginx", action="store_true", help="measure fastgw only")
    p.add_argument("--write", action="store_true", help="also add the table to bench/RESULTS.md")
    args = p.parse_args(argv)
    n = args.connections
    limit = raise_nofile(n + 1024)
    if limit < n + 64:
        log(f"idle_memory: RLIMIT_NOFILE is {limit}; opening at most {limit - 64} connections")
        n = max(1, limit - 64)
    nginx, _ = ensure_tools(need_nginx=True, need_wrk=False)
    assert nginx is not None
    results: list[MemResult] = []
    try:
        with (
            sigterm_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="fastgw-idle-") as tmpdir,
            ProcessSet() as procs,
        ):
            tmp = Path(tmpdir)
            upstream = start_upstream(procs, nginx, tmp, None)
            if upstream.error:
                return 2
            cfg = tmp / "fastgw.yaml"
            cfg.write_text(bench_config(upstream.port, keepalive_timeout=IDLE_TIMEOUT))
            fgw = start_fastgw(procs, "fastgw", cfg, 1, tmp, None)
            if fgw.error:
                results.append(MemResult("fastgw", 0, n, error="fastgw failed to start"))
                log(fgw.error)
            else:
                results.append(measure(fgw, "fastgw", n, "/prod/small", args.settle))
                if fgw.managed is not None:
                    procs.stop(fgw.managed)
            if not args.no_nginx:
                ngx = start_nginx_proxy(
                    procs, nginx, tmp, upstream.port, 1, None, client_timeout=IDLE_TIMEOUT
                )
                if ngx.error:
                    results.append(MemResult("nginx", 0, n, error="nginx failed to start"))
                else:
                    results.append(measure(ngx, "nginx", n, "/prod/small", args.settle))
            info = report.machine_info(nginx, None)
    except KeyboardInterrupt:
        log("idle_memory: interrupted; servers stopped")
        return 130
    out = table(results)
    print()
    print(out)
    if args.write:
        body = "\n\n".join(
            [
                "## Memory per idle client connection",
                report.machine_md(info),
                f"Command: `python -m bench.idle_memory --connections {args.connections}`. "
                "RSS (VmRSS) of the worker process; fastgw's config sets keepalive_timeout and "
                f"header_timeout to {IDLE_TIMEOUT:.0f} s "
                "(nginx: client_header_timeout and keepalive_timeout) "
                "so that no connection is closed during the measurement.",
                out,
            ]
        )
        report.update_results("idle-memory", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

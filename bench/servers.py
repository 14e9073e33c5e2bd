"""The servers of the bench: nginx upstream, nginx reverse proxy, fastgw."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Managed, ProcessSet, free_port, log, wait_port

REPO_ROOT = Path(__file__).resolve().parent.parent

SMALL_BODY = ("fastgw bench small response " * 4)[:99] + "\n"  # 100 bytes
BODY_16K = 16 * 1024
MAX_BODY = 2 * 1024 * 1024


@dataclass
class Server:
    """A started server: where it listens, its process (tree root) or why it failed."""

    name: str
    port: int
    managed: Managed | None
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.managed is not None and self.managed.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.managed is not None
        return self.managed.proc.pid

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_alive(self) -> bool:
        """False (and ``error`` set) once the process died."""
        if self.error is None and (self.managed is None or self.managed.proc.poll() is not None):
            code = self.managed.proc.returncode if self.managed else None
            tail = self.managed.tail() if self.managed else ""
            self.error = f"exited (code {code})" + (f":\n{tail}" if tail else "")
        return self.error is None


# --------------------------------------------------------------------------- nginx


def _nginx_common(tmp: Path, tag: str, workers: int) -> str:
    d = tmp / tag
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes {workers};\n"
        "daemon off;\nmaster_process on;\n"
        f"pid {d}/nginx.pid;\n"
        f"error_log {d}/error.log warn;\n"
        "worker_rlimit_nofile 65536;\n"
        "events { worker_connections 16384; multi_accept on; }\n"
        "http {\n"
        "  access_log off;\n"
        "  default_type application/octet-stream;\n"
        f"  client_body_temp_path {d}/client_body;\n"
        f"  proxy_temp_path {d}/proxy;\n"
        f"  fastcgi_temp_path {d}/fastcgi;\n"
        f"  uwsgi_temp_path {d}/uwsgi;\n"
        f"  scgi_temp_path {d}/scgi;\n"
        "  keepalive_requests 1000000;\n"
        "  client_max_body_size 2m;\n"
    )


def upstream_conf(tmp: Path, port: int) -> Path:
    """nginx serving the fixed responses: /small (100 B), /16k (16 KiB), POST /upload (body discarded)."""
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    (www / "16k").write_bytes(b"x" * BODY_16K)
    conf = _nginx_common(tmp, "upstream", 1) + (
        "  sendfile on;\n  tcp_nopush on;\n"
        f"  upstream self {{ server 127.0.0.1:{port}; keepalive 16; keepalive_requests 1000000; }}\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        f"    root {www};\n"
        f'    location = /small {{ default_type text/plain; return 200 "{SMALL_BODY[:-1]}\\n"; }}\n'
        "    location = /16k { }\n"
        # POST /upload: the whole body is read (into memory) before the answer, as an application
        # would. A bare `return 200` would answer first and discard the body afterwards, and a
        # streaming proxy in front (proxy_request_buffering off) then closes the client connection.
        # proxy_pass reads the complete body before it forwards; it forwards a bodiless GET to
        # /uploaded on this same server over a keep-alive connection.
        "    location = /upload {\n"
        "      client_body_buffer_size 2m;\n"
        "      proxy_pass http://self/uploaded;\n"
        "      proxy_method GET;\n"
        "      proxy_pass_request_body off;\n"
        '      proxy_set_header Content-Length "";\n'
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }\n"
        '    location = /uploaded { default_type text/plain; return 200 "ok"; }\n'
        "    location / { return 404; }\n"
        "  }\n}\n"
    )
    path = tmp / "upstream.conf"
    path.write_text(conf)
    return path


def proxy_conf(
    tmp: Path,
    port: int,
    upstream_port: int,
    workers: int,
    tag: str = "proxy",
    keepalive: int = 64,
    client_timeout: float | None = None,
) -> Path:
    """nginx as reverse proxy: /prod/X -> upstream /X, keep-alive pool of ``keepalive`` idle connections."""
    conf = _nginx_common(tmp, tag, workers) + (
        "  upstream backend {\n"
        f"    server 127.0.0.1:{upstream_port};\n"
        f"    keepalive {keepalive};\n"
        "    keepalive_requests 1000000;\n"
        "  }\n"
        + (
            f"  client_header_timeout {client_timeout:.0f}s;\n  keepalive_timeout {client_timeout:.0f}s;\n"
            if client_timeout
            else ""
        )
        + "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        "    proxy_request_buffering off;\n"
        "    location /prod/ {\n"
        "      proxy_pass http://backend/;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }\n"
        "  }\n}\n"
    )
    path = tmp / f"{tag}.conf"
    path.write_text(conf)
    return path


def start_nginx(
    procs: ProcessSet,
    nginx: str,
    name: str,
    conf: Path,
    port: int,
    tmp: Path,
    cores: Sequence[int] | None,
) -> Server:
    test = procs.start(
        f"{name} (config test)",
        [nginx, "-t", "-q", "-p", str(tmp), "-e", "stderr", "-c", str(conf)],
        log_path=tmp / f"{name}-test.log",
    )
    test.proc.wait(30)
    procs.stop(test)
    if test.proc.returncode != 0:
        return Server(name, port, None, error=f"nginx -t failed:\n{test.tail()}")
    m = procs.start(
        name,
        [nginx, "-p", str(tmp), "-e", str(tmp / f"{name}-stderr.log"), "-c", str(conf)],
        log_path=tmp / f"{name}.log",
        cores=cores,
    )
    srv = Server(name, port, m)
    if not wait_port(port, m.proc, 15):
        srv.error = f"did not accept connections on {port}:\n{m.tail()}"
    return srv


# --------------------------------------------------------------------------- fastgw


def bench_config(upstream_port: int, keepalive_timeout: float | None = None) -> str:
    limits = f"max_body_bytes: {MAX_BODY}"
    if keepalive_timeout is not None:
        limits += f", keepalive_timeout: {keepalive_timeout}, header_timeout: {keepalive_timeout}"
    return (
        "gateway:\n"
        f"  limits: {{{limits}}}\n"
        # The gateway-wide bucket is checked on every request, but set far above what one
        # machine serves (AWS's default of 10,000 rps would throttle the bench).
        "  throttle: {rateLimit: 100000000, burstLimit: 100000000}\n"
        "apis:\n"
        "  - name: bench\n"
        "    kind: rest\n"
        "    routes:\n"
        '      - route: "ANY /{proxy+}"\n'
        f'        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:{upstream_port}/{{proxy}}"}}\n'
        "    stages: [{name: prod}]\n"
    )


def fastgw_cmd(config: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fastgw",
        "run",
        "-c",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--no-admin",
        "--state",
        str(Path(tempfile.gettempdir()) / f"fastgw-bench-state-{port}.db"),
    ]


def start_fastgw(
    procs: ProcessSet,
    name: str,
    config: Path,
    workers: int,
    tmp: Path,
    cores: Sequence[int] | None,
    startup_timeout: float = 30.0,
) -> Server:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    m = procs.start(
        name,
        fastgw_cmd(config, port, workers),
        log_path=tmp / f"{name}.log",
        cores=cores,
        cwd=str(REPO_ROOT),
        env=env,
    )
    srv = Server(name, port, m)
    if not wait_port(port, m.proc, startup_timeout):
        code = m.proc.poll()
        state = (
            f"exited with code {code}" if code is not None else f"no listener after {startup_timeout:.0f}s"
        )
        srv.error = f"fastgw {state}; its output:\n{m.tail()}"
        log(f"bench: {name} FAILED to start ({state}); output:\n{m.tail()}")
        procs.stop(m)
        return srv
    # the supervisor forks its workers; give them a moment to all be listening
    wait_workers(srv, workers)
    return srv


def wait_workers(srv: Server, workers: int, timeout: float = 10.0) -> None:
    import time

    from bench.procs import children_of

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(children_of(srv.pid)) < workers:
        time.sleep(0.1)
    time.sleep(0.3)


def start_upstream(procs: ProcessSet, nginx: str, tmp: Path, cores: Sequence[int] | None) -> Server:
    port = free_port()
    srv = start_nginx(procs, nginx, "upstream", upstream_conf(tmp, port), port, tmp, cores)
    if srv.error:
        log(f"bench: upstream nginx failed: {srv.error}")
    return srv


def start_nginx_proxy(
    procs: ProcessSet,
    nginx: str,
    tmp: Path,
    upstream_port: int,
    workers: int,
    cores: Sequence[int] | None,
    tag: str = "nginx",
    keepalive: int = 64,
    client_timeout: float | None = None,
) -> Server:
    port = free_port()
    conf = proxy_conf(tmp, port, upstream_port, workers, tag, keepalive, client_timeout)
    srv = start_nginx(procs, nginx, tag, conf, port, tmp, cores)
    if srv.error:
        log(f"bench: {tag} failed: {srv.error}")
    return srv

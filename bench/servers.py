"""The servers of the bench: nginx upstream, nginx reverse proxy, fastgw."""

from __future__ import annotations

import os
import socket
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
    scheme: str = "http"

    @property
    def ok(self) -> bool:
        return self.error is None and self.managed is not None and self.managed.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.managed is not None
        return self.managed.proc.pid

    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

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


# Far above what one machine serves, so that no level of the traffic gate ever refuses.
UNLIMITED_RATE = 100_000_000
UNLIMITED_QUOTA = 10**12
BENCH_API_KEY = "fastgw-bench-api-key-0123456789abcdef"  # sent in x-api-key by the traffic mode


def bench_config(
    upstream_port: int,
    keepalive_timeout: float | None = None,
    api_key: str | None = None,
    redis_url: str | None = None,
    metrics: bool = True,
    access_log: str | None = None,
    tracing: str | None = None,
) -> str:
    """The bench's fastgw config: REST API ``bench``, route ``ANY /{proxy+}`` to the upstream, stage prod.

    ``api_key`` turns on the traffic gate's full path: the route requires a key, a usage plan on
    the stage gives that key a throttle and a quota, the stage has its own throttle, all far above
    the load. ``redis_url`` moves limits and quotas to the Redis backend. ``tracing`` is the
    ``gateway.tracing`` mapping (YAML flow style).
    """
    limits = f"max_body_bytes: {MAX_BODY}"
    if keepalive_timeout is not None:
        limits += f", keepalive_timeout: {keepalive_timeout}, header_timeout: {keepalive_timeout}"
    unlimited = f"{{rateLimit: {UNLIMITED_RATE}, burstLimit: {UNLIMITED_RATE}}}"
    state = ""
    if redis_url is not None:
        state = f'  state:\n    backend: redis\n    redis: {{url: "{redis_url}"}}\n'
    key_required = "        apiKeyRequired: true\n" if api_key is not None else ""
    stages = (
        f"    stages: [{{name: prod, throttle: {unlimited}}}]\n"
        if api_key
        else "    stages: [{name: prod}]\n"
    )
    if access_log is not None:
        log_settings = f'{{format: json, destination: "{access_log}"}}'
        stages = f"    stages: [{{name: prod, accessLogSettings: {log_settings}}}]\n"
    if not metrics:
        state += "  metrics: false\n"
    if tracing is not None:
        state += f"  tracing: {tracing}\n"
    plans = ""
    if api_key is not None:
        plans = (
            "apiKeys:\n"
            f'  - {{name: bench, value: "{api_key}"}}\n'
            "usagePlans:\n"
            "  - name: bench\n"
            "    apiStages: [{apiId: bench, stage: prod}]\n"
            f"    throttle: {unlimited}\n"
            f"    quota: {{limit: {UNLIMITED_QUOTA}, period: MONTH}}\n"
            "    keys: [bench]\n"
        )
    return "".join(
        [
            "gateway:\n",
            f"  limits: {{{limits}}}\n",
            # The gateway-wide bucket is checked on every request, but set far above what one
            # machine serves (AWS's default of 10,000 rps would throttle the bench).
            f"  throttle: {unlimited}\n",
            state,
            "apis:\n",
            "  - name: bench\n",
            "    kind: rest\n",
            "    routes:\n",
            '      - route: "ANY /{proxy+}"\n',
            f'        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:{upstream_port}/{{proxy}}"}}\n',
            key_required,
            stages,
            plans,
        ]
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


# --------------------------------------------------------------------------- redis


def _redis_call(port: int, command: bytes, timeout: float = 2.0) -> bytes | None:
    """One inline command over a plain socket; the reply's payload (simple or bulk string), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(command + b"\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head[:1] in (b"+", b":"):
                return head[1:]
            if head[:1] != b"$":
                return None
            size = int(head[1:])
            while len(rest) < size + 2:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                rest += chunk
            return rest[:size]
    except (OSError, ValueError):
        return None


def redis_info(port: int) -> dict[str, str]:
    """``INFO`` of the server on ``port`` as a dict ({} when it does not answer)."""
    raw = _redis_call(port, b"INFO")
    out: dict[str, str] = {}
    for line in (raw or b"").decode(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[name.strip()] = value.strip()
    return out


def redis_commands(port: int) -> float:
    """Commands the server has processed so far (``total_commands_processed``; NaN if unreachable)."""
    value = redis_info(port).get("total_commands_processed")
    return float(value) if value is not None else float("nan")


def redis_dbsize(port: int) -> int:
    raw = _redis_call(port, b"DBSIZE")
    return int(raw) if raw is not None and raw.isdigit() else -1


def start_redis(procs: ProcessSet, binary: str, tmp: Path, cores: Sequence[int] | None) -> Server:
    """redis-server (or valkey-server) on a free loopback port, no persistence, answering PING."""
    import time

    port = free_port()
    d = tmp / "redis"
    d.mkdir(exist_ok=True)
    cmd = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(d),
        "--daemonize",
        "no",
    ]
    m = procs.start("redis", cmd, log_path=tmp / "redis.log", cores=cores)
    srv = Server("redis", port, m)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and m.proc.poll() is None:
        if _redis_call(port, b"PING", timeout=0.5) == b"PONG":
            srv.extra["version"] = redis_info(port).get("redis_version", "?")
            return srv
        time.sleep(0.05)
    code = m.proc.poll()
    state = f"exited with code {code}" if code is not None else "did not answer PING within 15 s"
    srv.error = f"{binary} on port {port}: {state}; its output:\n{m.tail()}"
    log(f"bench: redis FAILED to start: {srv.error}")
    procs.stop(m)
    return srv


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(status, start of the body) of one ``GET path`` on 127.0.0.1:port; (None, the error) if it failed."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read(300)
        return resp.status, body.decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as ex:
        return None, f"{type(ex).__name__}: {ex}"
    finally:
        conn.close()

"""The gateway as a process: CLI, workers, reload, drain, crash recovery, the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from helpers import (
    HOST,
    REPO,
    ConnectionClosed,
    GatewayFactory,
    RawConn,
    ScriptedUpstream,
    child_pids,
    free_port,
    gateway_env,
    get,
    is_refused,
    wait_for,
    write_config,
)

DRAIN_TIMEOUT = 5.0


def mock_config(body: str, up_port: int | None = None) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [
        {
            "route": "GET /hello",
            "integration": {
                "type": "MOCK",
                "status": 200,
                "headers": {"content-type": "text/plain"},
                "body": body,
            },
        }
    ]
    if up_port is not None:
        routes.append(
            {
                "route": "ANY /up/{proxy+}",
                "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{up_port}/{{proxy}}"},
            }
        )
    return {
        "gateway": {
            "limits": {"drain_timeout": DRAIN_TIMEOUT, "keepalive_timeout": 5.0},
            # ClientLoop's four threads send more than AWS's default account throttle (10,000
            # requests/s, burst 5,000) on this machine: these tests of processes lift the
            # gateway-wide limit (throttling has its own tests).
            "throttle": {"rateLimit": 1_000_000, "burstLimit": 1_000_000},
        },
        "apis": [{"name": "proc", "kind": "rest", "routes": routes, "stages": [{"name": "prod"}]}],
    }


def fastgw(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *args],
        capture_output=True,
        text=True,
        env=env or gateway_env(),
        cwd=str(cwd or REPO),
        timeout=30,
    )


# ---------------------------------------------------------------- validate
def test_validate_good_file(tmp_path: Path) -> None:
    cfg = tmp_path / "good.yaml"
    write_config(cfg, mock_config("ok", up_port=9))
    res = fastgw("validate", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout
    assert str(cfg) in res.stdout


def test_validate_bad_file(tmp_path: Path) -> None:
    cfg = mock_config("ok", up_port=9)
    cfg["gateway"]["bogus"] = 1
    cfg["apis"][0]["routes"][1]["integration"]["uri"] = 123
    bad = tmp_path / "bad.yaml"
    write_config(bad, cfg)
    res = fastgw("validate", str(bad))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "$.gateway.bogus" in out, out
    assert "$.apis[0].routes[1].integration.uri" in out, out
    assert "OK" not in res.stdout


def test_validate_reports_type_and_semantic_errors_together(tmp_path: Path) -> None:
    """DESIGN-RULES 8: every bad field, not only those of the first validation phase."""
    cfg = mock_config("ok", up_port=9)
    cfg["gateway"]["bogus"] = 1
    cfg["apis"][0]["routes"][1]["integration"]["uri"] = "ftp://nowhere/{proxy}"
    bad = tmp_path / "bad.yaml"
    write_config(bad, cfg)
    res = fastgw("validate", str(bad))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "$.gateway.bogus" in out, out
    assert "$.apis[0].routes[1].integration.uri" in out, out


def test_validate_semantic_error(tmp_path: Path) -> None:
    cfg = mock_config("ok", up_port=9)
    cfg["apis"][0]["routes"][1]["integration"]["uri"] = "ftp://nowhere/{proxy}"
    bad = tmp_path / "bad.yaml"
    write_config(bad, cfg)
    res = fastgw("validate", str(bad))
    assert res.returncode != 0
    assert "$.apis[0].routes[1].integration.uri" in res.stderr, res.stderr
    assert "scheme must be http" in res.stderr


def test_validate_reports_every_bad_field(tmp_path: Path) -> None:
    cfg = mock_config("ok")
    cfg["gateway"]["limits"]["max_headers"] = 0
    cfg["apis"][0]["routes"][0]["route"] = "FETCH /hello"
    cfg["apis"][0]["routes"][0]["integration"]["status"] = 99
    bad = tmp_path / "bad2.yaml"
    write_config(bad, cfg)
    res = fastgw("validate", str(bad))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "$.gateway.limits.max_headers" in out, out
    assert "$.apis[0].routes[0].integration.status" in out, out


# ---------------------------------------------------------------- run
def test_run_two_workers_serves(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("two workers"), workers=2)
    assert wait_for(lambda: len(gw.children()) == 2, 5.0), gw.children()
    for _ in range(20):
        r = get(gw.port, "/prod/hello")
        assert (r.status, r.body) == (200, b"two workers")
    assert Path(gw.pid_file).read_text().strip() == str(gw.pid)
    assert gw.stop() == 0
    assert not Path(gw.pid_file).exists()


class ClientLoop:
    """Threads doing requests on fresh connections until stopped; records every failure."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop_flag = threading.Event()
        self.failures: list[str] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                r = get(self.port, "/prod/hello", timeout=3.0)
                with self.lock:
                    if r.status != 200:
                        self.failures.append(f"{r.status} {r.body!r}")
                    self.bodies.append(r.body)
            except Exception as ex:
                with self.lock:
                    self.failures.append(repr(ex))

    def __enter__(self) -> ClientLoop:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)


def new_body_served(port: int, body: bytes, times: int = 10) -> bool:
    return all(get(port, "/prod/hello").body == body for _ in range(times))


def test_sighup_reload_without_failures(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("version one"), workers=2)
    with ClientLoop(gw.port) as loop:
        time.sleep(0.5)
        gw.write_config(mock_config("version two"))
        gw.reload()
        assert wait_for(lambda: new_body_served(gw.port, b"version two"), 5.0)
        time.sleep(1.0)
    assert loop.failures == []
    assert len(loop.bodies) > 50
    assert set(loop.bodies) == {b"version one", b"version two"}
    assert "config reloaded" in gw.stderr_text()


def test_reload_with_invalid_file_keeps_serving(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("still here"), workers=1)
    gw.write_config("gateway:\n  bogus: 1\napis: [\n")  # not even YAML
    gw.reload()
    assert wait_for(lambda: "reload rejected" in gw.stderr_text(), 5.0), gw.stderr_text()
    bad = mock_config("never served")
    bad["apis"][0]["routes"][0]["route"] = "GET hello"
    gw.write_config(bad)
    gw.reload()
    assert wait_for(lambda: gw.stderr_text().count("reload rejected") >= 2, 5.0), gw.stderr_text()
    for _ in range(5):
        r = get(gw.port, "/prod/hello")
        assert (r.status, r.body) == (200, b"still here")
    assert gw.proc.poll() is None


def test_reload_command_with_pid_file(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("before"), workers=1)
    gw.write_config(mock_config("after"))
    res = fastgw("reload", "--pid-file", str(gw.pid_file))
    assert res.returncode == 0, res.stderr
    assert str(gw.pid) in res.stdout
    assert wait_for(lambda: get(gw.port, "/prod/hello").body == b"after", 5.0)


def test_reload_command_without_gateway(tmp_path: Path) -> None:
    res = fastgw("reload", "--pid-file", str(tmp_path / "missing.pid"))
    assert res.returncode != 0
    assert "missing.pid" in res.stderr


# ---------------------------------------------------------------- drain
def new_connection_outcome(port: int) -> str:
    """What a new client sees: 'refused', 'served <status>', 'closed without a response' or 'no answer'."""
    if is_refused(port):
        return "refused"
    try:
        with RawConn(port, timeout=1.0) as c:
            return f"served {c.request('GET', '/prod/hello').status}"
    except ConnectionClosed:
        return "accepted, then closed without a response"
    except TimeoutError:
        return "accepted, then no answer for 1 s"
    except ConnectionRefusedError:
        return "refused"


def test_sigterm_drains_in_flight_requests(
    gateway_factory: GatewayFactory, scripted: ScriptedUpstream
) -> None:
    gw = gateway_factory(mock_config("drain", up_port=scripted.port), workers=1)
    with RawConn(gw.port, timeout=10.0) as idle, RawConn(gw.port, timeout=10.0) as busy:
        assert idle.request("GET", "/prod/hello").status == 200
        busy.send(b"GET /prod/up/slow?ms=1500 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        assert wait_for(lambda: bool(scripted.requests_for("slow?ms=1500")), 2.0)
        t0 = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        # an idle keep-alive connection is closed politely, at once
        assert idle.is_closed(1.0)
        # new connections are refused while the in-flight request finishes
        time.sleep(0.3)
        assert gw.proc.poll() is None, "gateway exited before the in-flight request finished"
        during_drain = new_connection_outcome(gw.port)
        r = busy.read_response()
        assert (r.status, r.body) == (200, b"slow done")
        assert busy.is_closed(1.0)
    rc = gw.proc.wait(DRAIN_TIMEOUT + 1)
    assert rc == 0
    assert time.monotonic() - t0 < DRAIN_TIMEOUT
    assert is_refused(gw.port)
    assert during_drain == "refused", f"a new connection during the drain was {during_drain}"


# ---------------------------------------------------------------- crash
def test_killed_worker_is_restarted(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("resilient"), workers=2)
    assert wait_for(lambda: len(gw.children()) == 2, 5.0)
    before = gw.children()
    os.kill(before[0], signal.SIGKILL)
    assert wait_for(lambda: len(gw.children()) == 2 and before[0] not in gw.children(), 5.0), gw.children()
    assert before[1] in gw.children()
    for _ in range(20):
        r = get(gw.port, "/prod/hello", timeout=5.0)
        assert (r.status, r.body) == (200, b"resilient")
    assert "worker exited; restarting" in gw.stderr_text()


# ---------------------------------------------------------------- demo, version
def test_demo_served_without_config(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    gw = gateway_factory(None, workers=1, cwd=empty)
    r = get(gw.port, "/prod/hello")
    assert r.status == 200
    assert r.body == b'{"message":"hello from fastgw"}'
    assert r.header("content-type") == "application/json"
    # the echo backend is a helper process started beside the worker
    assert wait_for(lambda: get(gw.port, "/prod/echo/x").status == 200, 5.0)
    r = get(gw.port, "/prod/echo/x?y=1")
    assert r.json()["path"] == "/x"
    assert r.json()["query"] == "y=1"
    # The demo's keyed route: 403 without the key, 200 with it.
    assert get(gw.port, "/prod/private").status == 403
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/private", headers=[("x-api-key", "demo-key-0123456789abcdef")])
    assert (r.status, r.body) == (200, b'{"message":"hello, key holder"}')
    # The demo's Lambda handler, run in-process with a payload 1.0 event.
    r = get(gw.port, "/prod/lambda/ada?x=1")
    assert r.status == 200
    assert r.json()["message"] == "hello ada, from a Lambda handler in fastgw"
    assert r.json()["resource"] == "/lambda/{name}" and r.json()["query"] == {"x": "1"}
    assert r.json()["requestId"] == r.header("x-amzn-RequestId")
    assert "serving the demo" in gw.stderr_text()
    assert list(empty.iterdir()) == []
    assert gw.stop() == 0


def test_version_verbose_reports_kernel_builds() -> None:
    res = fastgw("version", "--verbose")
    assert res.returncode == 0, res.stderr
    assert "fastgw 0.1.0" in res.stdout
    assert "fastgw_core.router: compiled (Cython)" in res.stdout
    assert "fastgw_core.urlnorm: compiled (Cython)" in res.stdout
    assert "fastgw.server.replies: compiled (Cython)" in res.stdout
    assert "fastgw.pipeline.lean: compiled (Cython)" in res.stdout
    res = fastgw("version", "--verbose", env=gateway_env(no_extensions=True))
    assert res.returncode == 0, res.stderr
    assert "fastgw_core.router: pure Python" in res.stdout
    assert "fastgw_core.urlnorm: pure Python" in res.stdout
    assert "compiled (Cython)" not in res.stdout


def test_listen_port_busy_fails_cleanly(tmp_path: Path) -> None:
    cfg = tmp_path / "busy.yaml"
    write_config(cfg, mock_config("busy"))
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "fastgw",
                "run",
                "-c",
                str(cfg),
                "--listen",
                f"{HOST}:{port}",
                "--workers",
                "1",
                "--pid-file",
                str(tmp_path / "p.pid"),
                "--no-admin",
                "--state",
                str(tmp_path / "state.db"),
            ],
            capture_output=True,
            text=True,
            env=gateway_env(),
            cwd=str(REPO),
            timeout=20,
        )
    assert res.returncode != 0
    assert "cannot listen" in res.stderr
    assert "Traceback" not in res.stderr


def test_admin_port_busy_fails_cleanly(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    first = gateway_factory(mock_config("first"))
    cfg = tmp_path / "second.yaml"
    write_config(cfg, mock_config("second"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastgw",
            "run",
            "-c",
            str(cfg),
            "--listen",
            f"{HOST}:{free_port()}",
            "--admin-listen",
            f"{HOST}:{first.admin_port}",
            "--state",
            str(tmp_path / "second.db"),
            "--pid-file",
            str(tmp_path / "second.pid"),
        ],
        capture_output=True,
        text=True,
        env=gateway_env(),
        cwd=str(REPO),
        timeout=20,
    )
    assert res.returncode == 1
    assert f"admin API {HOST}:{first.admin_port}" in res.stderr
    assert "helper exited" not in res.stderr and "Traceback" not in res.stderr
    assert get(first.port, "/prod/hello").body == b"first"


def test_children_helper_sees_workers(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(mock_config("pids"), workers=1)
    assert wait_for(lambda: len(gw.children()) == 1, 5.0)
    assert set(gw.helper_pids()) == {"admin"}
    assert len(child_pids(gw.pid)) == 2
    with RawConn(gw.port) as c:
        assert c.request("GET", "/prod/hello").body == b"pids"

"""Plugins end to end: order, scoping (most specific wins), local replies, failures, config
errors with paths, the built-in header-transform, and `fastgw routes --explain`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, EchoServer, GatewayFactory, RawConn, echo_header_values, wait_for

H = "tests.pipeline.handlers"


def config(echo_port: int) -> dict[str, Any]:
    return {
        "plugin_modules": [H],
        "plugins": [{"name": "test-trace", "config": {"tag": "g"}}],
        "functions": {"echo": {"handler": f"{H}:echo"}},
        "apis": [
            {
                "name": "plug",
                "routes": [
                    {
                        "route": "GET /fn",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "plugins": [{"name": "test-early"}],
                    },
                    {
                        "route": "GET /fails",
                        "integration": {"type": "MOCK"},
                        "plugins": [{"name": "test-trace", "config": {"tag": "r", "fail_in": "access"}}],
                    },
                    {
                        "route": "GET /off",
                        "integration": {"type": "MOCK", "body": "{}"},
                        "plugins": [{"name": "test-trace", "enabled": False}],
                    },
                    {
                        "route": "GET /up/{proxy+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{echo_port}/{{proxy}}",
                        },
                        "plugins": [
                            {
                                "name": "header-transform",
                                "config": {
                                    "request_set": {"x-added": "yes"},
                                    "request_remove": ["x-secret"],
                                    "response_set": {"x-resp": "1"},
                                },
                            }
                        ],
                    },
                ],
                "stages": [
                    {"name": "prod"},
                    {"name": "beta", "plugins": [{"name": "test-trace", "config": {"tag": "s"}}]},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def calls_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calls") / "calls.log"


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, echo_server: EchoServer, calls_file: Path) -> Any:
    return module_gateway_factory(config(echo_server.port), extra_env={"FASTGW_TEST_CALLS": str(calls_file)})


def get(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    with RawConn(port) as c:
        return c.request("GET", target, headers=headers or [])


def test_phase_order_and_priority(gw: Any, calls_file: Path) -> None:
    r = get(gw.port, "/prod/fn")
    assert r.status == 200
    # rewrite (g), then access: test-early (priority 2000) before test-trace (100), then response.
    assert r.header("x-trace") == "g:rewrite,early:access,g:access,g:response"
    ev = r.json()["event"]
    assert ev["headers"]["x-trace"] == "g:rewrite,early:access,g:access"
    # The log phase runs after the response is written.
    assert wait_for(lambda: calls_file.exists() and "log g 200" in calls_file.read_text(), 5.0)


def test_most_specific_config_wins(gw: Any) -> None:
    assert get(gw.port, "/beta/fn").header("x-trace") == "s:rewrite,early:access,s:access,s:response"
    assert get(gw.port, "/prod/off").header("x-trace") is None


def test_plugin_answers_locally(gw: Any) -> None:
    r = get(gw.port, "/prod/fn", [("x-stop", "yes")])
    assert r.status == 418 and r.body == b"stopped by plugin"


def test_plugin_failure_is_500_and_logged(gw: Any) -> None:
    r = get(gw.port, "/prod/fails")
    assert r.status == 500
    assert r.body == b'{"message": "Internal server error"}'
    log = gw.stderr_text()
    assert "plugin failed" in log and "test-trace" in log and "access" in log
    assert get(gw.port, "/prod/fn").status == 200  # the worker carries on


def test_header_transform_on_a_proxied_route(gw: Any) -> None:
    r = get(gw.port, "/prod/up/x", [("x-secret", "s3cr3t"), ("x-keep", "k")])
    assert r.status == 200
    assert echo_header_values(r, "x-added") == ["yes"]
    assert echo_header_values(r, "x-secret") == []
    assert echo_header_values(r, "x-keep") == ["k"]
    assert r.header("x-resp") == "1"
    assert r.header("x-trace") == "g:rewrite,g:access,g:response"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *args], capture_output=True, text=True, timeout=60, cwd=str(REPO)
    )


def test_routes_explain_prints_the_order(tmp_path: Path, echo_server: EchoServer) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(echo_server.port)))
    out = run_cli("routes", "-c", str(path), "--explain", "GET /prod/fn")
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines()]
    names = [
        line.split()[0] for line in lines if "[" in line and "]" in line and line.split()[0].isidentifier()
    ]
    assert names == [
        "rewrite",
        "authorizer",
        "api_key",
        "throttle",
        "access",
        "validation",
        "cache",
        "integration",
        "response_mapping",
        "response",
        "log",
    ]
    access = next(line for line in lines if line.startswith("access"))
    assert access.index("test-early") < access.index("test-trace")
    assert any(line.startswith("integration") and "AWS_PROXY" in line for line in lines)


def test_bad_plugin_configs_have_paths(tmp_path: Path, echo_server: EchoServer) -> None:
    cfg = config(echo_server.port)
    cfg["plugins"] = [{"name": "test-trace", "config": {"tag": 5}}, {"name": "no-such-plugin"}]
    cfg["apis"][0]["routes"][3]["plugins"][0]["config"]["bogus"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = run_cli("validate", str(path))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "$.plugins[0].config.tag" in text
    assert "$.plugins[1].name" in text and "no-such-plugin" in text
    assert "$.apis[0].routes[3].plugins[0].config" in text and "bogus" in text

"""Access logs end to end: a real gateway with a JSON preset on one stage and a custom $context
format on another, traffic of every kind (success, error, throttled, cached, proxied), the
lines the file then holds, logrotate's rename + SIGUSR1, and bad formats refused at load with
the field's path."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn, wait_for

from fastgw.config.compile import compile_config
from fastgw.config.load import ConfigError, decode_config

pytestmark = pytest.mark.timeout(60)

CUSTOM = (
    "$context.requestId $context.httpMethod $context.resourcePath $context.status "
    "$context.integrationStatus $context.identity.sourceIp [$context.requestTime] "
    "ua=$context.identity.userAgent key=$context.identity.apiKeyId lat=$context.responseLatency"
)


def config(port: int, json_log: Path, custom_log: Path) -> dict[str, Any]:
    return {
        "apis": [
            {
                "name": "logged",
                "id": "logged1",
                "routes": [
                    {"route": "GET /ok", "integration": {"type": "MOCK", "body": "fine"}},
                    {"route": "GET /teapot", "integration": {"type": "MOCK", "status": 418, "body": "no"}},
                    {
                        "route": "GET /up/{proxy+}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/{{proxy}}"},
                    },
                    {
                        "route": "GET /cached",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/plain"},
                    },
                ],
                "stages": [
                    {
                        "name": "prod",
                        "accessLogSettings": {"format": "json", "destination": str(json_log)},
                        "route_throttle": {"GET /teapot": {"rateLimit": 0.01, "burstLimit": 1}},
                        "cache": {"ttl_seconds": 60},
                        "route_cache": {
                            "GET /ok": {"enabled": False},
                            "GET /up/{proxy+}": {"enabled": False},
                        },
                    },
                    {"name": "dev", "accessLogSettings": {"format": CUSTOM, "destination": str(custom_log)}},
                    {"name": "quiet"},
                ],
            }
        ]
    }


def lines(path: Path, n: int) -> list[str]:
    assert wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= n, 5.0), (
        path.read_text() if path.exists() else "no file"
    )
    return path.read_text().splitlines()


def test_stage_access_logs_record_every_kind_of_request(
    gateway_factory: GatewayFactory, scripted: Any, tmp_path: Path
) -> None:
    json_log, custom_log = tmp_path / "prod.log", tmp_path / "dev.log"
    gw = gateway_factory(config(scripted.port, json_log, custom_log))
    ids = []
    with RawConn(gw.port) as c:
        for target in (
            "/prod/ok",
            "/prod/teapot",
            "/prod/teapot",
            "/prod/up/x",
            "/prod/cached",
            "/prod/cached",
        ):
            ids.append((target, c.request("GET", target)))
        c.request("GET", "/quiet/ok")
    assert [r.status for _, r in ids] == [200, 418, 429, 200, 200, 200]
    got = [json.loads(line) for line in lines(json_log, 6)]
    assert len(got) == 6  # the quiet stage logs nothing
    for (target, resp), doc in zip(ids, got, strict=True):
        assert doc["requestId"] == resp.header("x-amzn-RequestId")
        assert doc["status"] == str(resp.status)
        assert doc["httpMethod"] == "GET" and doc["protocol"] == "HTTP/1.1"
        assert doc["ip"] == "127.0.0.1"
        assert doc["resourcePath"] == {"/prod/up/x": "/up/{proxy+}"}.get(target, target[5:])
        assert time.strptime(doc["requestTime"], "%d/%b/%Y:%H:%M:%S +0000")
    assert got[0]["responseLength"] == "4"  # "fine"

    with RawConn(gw.port) as c:
        resp = c.request("GET", "/dev/up/y", headers=[("User-Agent", "probe/1.0\r\nX-Injected: 1")])
    # A header value cannot carry CR/LF onto the wire; a value with spaces is logged as given.
    with RawConn(gw.port) as c:
        resp = c.request("GET", "/dev/up/z", headers=[("User-Agent", "probe 1.0")])
    line = lines(custom_log, 1)[-1]
    rid = resp.header("x-amzn-RequestId")
    assert line.startswith(f"{rid} GET /up/{{proxy+}} 200 200 127.0.0.1 [")
    assert "ua=probe 1.0 key=- lat=" in line

    # logrotate: rename the file, SIGUSR1 the supervisor, new lines go to a new file.
    rotated = tmp_path / "prod.log.1"
    os.rename(json_log, rotated)
    os.kill(gw.pid, signal.SIGUSR1)
    time.sleep(0.5)
    with RawConn(gw.port) as c:
        c.request("GET", "/prod/ok")
    assert len(lines(json_log, 1)) == 1
    assert len(rotated.read_text().splitlines()) == 6
    assert gw.proc.poll() is None  # nobody died of the signal


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ("$context.requestId $context.waf.status", "waf"),
        ("$context.requestId $context.nosuch", "nosuch"),
        ("$context.status only", "requestId"),
    ],
)
def test_bad_formats_are_refused_with_the_field_path(fmt: str, needle: str, tmp_path: Path) -> None:
    cfg = config(1, tmp_path / "a.log", tmp_path / "b.log")
    cfg["apis"][0]["stages"][1]["accessLogSettings"]["format"] = fmt
    with pytest.raises(ConfigError) as info:
        compile_config(decode_config(cfg))
    issues = [i for i in info.value.issues if i.path == "$.apis[0].stages[1].accessLogSettings.format"]
    assert issues and needle in issues[0].message


def test_a_destination_that_blocks_never_stalls_the_worker(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    try:
        cfg = {
            "apis": [
                {
                    "name": "f",
                    "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "x"}}],
                    "stages": [
                        {"name": "prod", "accessLogSettings": {"format": "json", "destination": str(fifo)}}
                    ],
                }
            ]
        }
        gw = gateway_factory(cfg)
        t0 = time.monotonic()
        with RawConn(gw.port) as c:
            for _ in range(3000):  # ~600 KB of lines: ten times the pipe's buffer
                assert c.request("GET", "/prod/x").status == 200
        assert time.monotonic() - t0 < 30
    finally:
        os.close(reader)


def test_validate_creates_no_log_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    log = tmp_path / "never.log"
    cfg = config(1, log, tmp_path / "other.log")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    got = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)], capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    assert not log.exists()
    cfg["apis"][0]["stages"][0]["accessLogSettings"]["destination"] = str(tmp_path / "no" / "such" / "x.log")
    with pytest.raises(ConfigError) as info:
        compile_config(decode_config(cfg))
    assert any(i.path == "$.apis[0].stages[0].accessLogSettings.destination" for i in info.value.issues)

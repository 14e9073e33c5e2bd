"""``fastgw run --openapi``: AWS exports served with no config file, end to end.

Two documents (a REST export whose Lambda proxy integration is bound with ``--function``, and an
HTTP API export proxying to the echo backend through a stage variable), each reached by its API
id in the Host; the ids printed at start; a reload with a document that no longer imports is
refused and the running APIs keep serving; a fixed document is picked up by the next reload;
unbound functions and ``--strict`` refuse to start with the problem's path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, GatewayFactory, RawConn, gateway_env, wait_for

pytestmark = pytest.mark.timeout(60)

LAMBDA = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:{name}/invocations"
)


def rest_doc(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.0.1",
        "info": {"title": "pets", "version": "1"},
        "servers": [{"url": "https://pets12345.execute-api.us-east-1.amazonaws.com/{basePath}"}],
        "paths": {
            "/hello": {
                "get": {
                    "responses": {"200": {"description": "ok"}},
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": LAMBDA.format(name="HelloFn"),
                    },
                }
            },
            **(extra_paths or {}),
        },
    }


def http_doc() -> dict[str, Any]:
    return {
        "openapi": "3.0.1",
        "info": {"title": "echoes", "version": "1"},
        "x-amazon-apigateway-importexport-version": "1.0",
        "paths": {
            "/echo/{proxy+}": {
                "x-amazon-apigateway-any-method": {
                    "parameters": [{"name": "proxy+", "in": "path", "required": True}],
                    "x-amazon-apigateway-integration": {
                        "type": "http_proxy",
                        "httpMethod": "ANY",
                        "uri": "http://${stageVariables.echo}/{proxy}",
                        "payloadFormatVersion": "1.0",
                    },
                }
            }
        },
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def call(port: int, target: str, host: str) -> Any:
    with RawConn(port) as c:
        return c.request("GET", target, host=host)


def run_args(*docs: Path, echo_port: int) -> list[str]:
    args: list[str] = []
    for d in docs:
        args += ["--openapi", str(d)]
    return [
        *args,
        "--function",
        "HelloFn=tests.pipeline.handlers:hello",
        "--stage-variable",
        f"echo=127.0.0.1:{echo_port}",
    ]


def test_two_exports_are_served_by_api_id(
    gateway_factory: GatewayFactory, echo_server: Any, tmp_path: Path
) -> None:
    rest = write(tmp_path / "pets.yaml", rest_doc())
    http = write(tmp_path / "echoes.json", http_doc())
    gw = gateway_factory(None, extra_args=run_args(rest, http, echo_port=echo_server.port))
    text = gw.stderr_text()
    assert "rest API 'pets' id pets12345" in text  # the id of the exported address
    echo_id = next(line.split(" id ")[1].split(":")[0] for line in text.splitlines() if "'echoes'" in line)
    resp = call(gw.port, "/prod/hello", "pets12345.execute-api.us-east-1.amazonaws.com")
    assert resp.status == 200 and resp.json() == {"hello": "world"}
    resp = call(gw.port, "/echo/a/b?x=1", f"{echo_id}.execute-api.local")
    assert resp.status == 200
    doc = resp.json()
    assert doc["path"] == "/a/b" and doc["query"] == "x=1"
    # Each API only under its own id.
    assert call(gw.port, "/prod/hello", f"{echo_id}.execute-api.local").status == 404

    # A reload with a document that no longer imports is refused: the APIs keep serving.
    broken = rest_doc({"/bad": {"get": {"x-amazon-apigateway-integration": {"type": 42}}}})
    write(rest, broken)
    gw.reload()
    assert wait_for(lambda: "reload rejected" in gw.stderr_text(), 5.0)
    assert "x-amazon-apigateway-integration.type" in gw.stderr_text()
    assert call(gw.port, "/prod/hello", "pets12345.execute-api.local").status == 200
    # A fixed one is picked up.
    mock = {
        "get": {
            "responses": {"200": {"description": "ok"}},
            "x-amazon-apigateway-integration": {
                "type": "mock",
                "requestTemplates": {"application/json": '{"statusCode": 200}'},
                "responses": {
                    "default": {"statusCode": "200", "responseTemplates": {"application/json": '{"new":1}'}}
                },
            },
        }
    }
    write(rest, rest_doc({"/new": mock}))
    gw.reload()
    assert wait_for(lambda: call(gw.port, "/prod/new", "pets12345.execute-api.local").status == 200, 5.0)
    assert json.loads(call(gw.port, "/prod/new", "pets12345.execute-api.local").body) == {"new": 1}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", "run", *args, "--listen", "127.0.0.1:0", "--no-admin"],
        capture_output=True,
        text=True,
        env=gateway_env(),
        cwd=str(REPO),
        timeout=30,
    )


def test_unbound_functions_and_strict_refuse_to_start(tmp_path: Path) -> None:
    rest = write(tmp_path / "pets.yaml", rest_doc())
    got = run_cli("--openapi", str(rest))
    assert got.returncode == 2
    assert "--function HelloFn=module:callable" in got.stderr
    doc = rest_doc()
    doc["x-amazon-apigateway-documentation"] = {"version": "1", "documentationParts": []}
    write(rest, doc)
    t0 = time.monotonic()
    got = run_cli("--openapi", str(rest), "--function", "HelloFn=tests.pipeline.handlers:hello", "--strict")
    assert got.returncode == 2, got.stderr
    assert "$.x-amazon-apigateway-documentation" in got.stderr
    assert time.monotonic() - t0 < 20


def test_documents_listed_in_the_config_are_served_and_reloaded(
    gateway_factory: GatewayFactory, echo_server: Any, tmp_path: Path
) -> None:
    from fastgw.config.load import ConfigError, load_config_file

    write(tmp_path / "echoes.yaml", http_doc())
    cfg = {
        "openapi": [{"file": "echoes.yaml", "stageVariables": {"echo": f"127.0.0.1:{echo_server.port}"}}],
        "apis": [
            {
                "name": "own",
                "routes": [{"route": "GET /own", "integration": {"type": "MOCK", "body": "own"}}],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    path = tmp_path / "fastgw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config_file(path)
    assert [a.name for a in loaded.apis] == ["own", "echoes"] and loaded.openapi == []
    gw = gateway_factory(cfg, cwd=tmp_path)
    # The gateway's config file is written elsewhere: list the document by absolute path there.
    cfg["openapi"][0]["file"] = str(tmp_path / "echoes.yaml")
    gw.write_config(cfg)
    gw.reload()
    echo_id = next(a.id for a in loaded.apis if a.name == "echoes") or ""
    from fastgw.openapi.importer import derive_api_id

    echo_id = echo_id or derive_api_id("echoes")

    def echo_status() -> int:
        return int(call(gw.port, "/echo/a", f"{echo_id}.execute-api.local").status)

    assert wait_for(lambda: echo_status() == 200, 5.0)
    assert call(gw.port, "/prod/own", "own.example").status == 200
    # A document that stops importing: the reload is refused with its path, the APIs keep serving.
    write(
        tmp_path / "echoes.yaml",
        {**http_doc(), "paths": {"/x": {"get": {"x-amazon-apigateway-integration": 5}}}},
    )
    with pytest.raises(ConfigError) as info:
        load_config_file(gw.config_path)
    assert any(i.path.startswith("$.openapi[0]") for i in info.value.issues)
    gw.reload()
    assert wait_for(lambda: "reload rejected" in gw.stderr_text(), 5.0)
    assert echo_status() == 200

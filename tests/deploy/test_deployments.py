"""Deployments, stages, canary releases and rollback, end to end: real gateways, the ``fastgw``
CLI against their admin API, clients on sockets.

- a manual stage (``autoDeploy: false``) keeps serving its deployment across config reloads
  until ``fastgw deploy``; ``fastgw rollback`` moves it back; the choice survives a restart;
- an auto-deploy stage serves the config, and once deployed is redeployed by each reload that
  changes the definition;
- a canary gets its share of requests (±2 % over 10,000), per request not per connection, with
  its stage-variable overrides; promote and delete;
- bad changes are refused with a clear error and change nothing; every worker follows within 1 s;
- ``fastgw export`` gives the served API back as OpenAPI with the extensions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, Gateway, GatewayFactory, RawConn, admin_call, gateway_env, wait_for

pytestmark = pytest.mark.timeout(120)


def mock(version: str) -> dict[str, Any]:
    """A MOCK in AWS's form whose body names the version and the stage variable ``color``."""
    return {
        "type": "MOCK",
        "requestTemplates": {"application/json": '{"statusCode": 200}'},
        "responses": {
            "default": {
                "statusCode": 200,
                "responseTemplates": {
                    "application/json": '{"v": "' + version + '", "color": "$stageVariables.color"}'
                },
            }
        },
    }


def config(
    version: str, auto: bool = False, extra_routes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "routes": [{"route": "GET /v", "integration": mock(version)}, *(extra_routes or [])],
                "stages": [
                    {"name": "prod", "variables": {"color": "green"}, "autoDeploy": auto},
                    {"name": "live", "variables": {"color": "red"}},
                ],
            }
        ]
    }


def fastgw(gw: Gateway, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fastgw", *args, "--admin", f"http://127.0.0.1:{gw.admin_port}"],
        capture_output=True,
        text=True,
        env=gateway_env(),
        cwd=str(REPO),
        timeout=30,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def version(gw: Gateway, stage: str = "prod") -> Any:
    with RawConn(gw.port) as c:
        resp = c.request("GET", f"/{stage}/v")
    assert resp.status == 200, resp.body
    return resp.json()


def versions_on_new_connections(gw: Gateway, n: int = 12) -> set[str]:
    """Versions served across several connections (so that every worker answers)."""
    return {version(gw)["v"] for _ in range(n)}


def settle(gw: Gateway, expected: str) -> float:
    t0 = time.monotonic()
    assert wait_for(lambda: versions_on_new_connections(gw) == {expected}, 3.0), versions_on_new_connections(
        gw
    )
    return time.monotonic() - t0


def test_a_manual_stage_changes_only_when_deployed_and_rolls_back(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory(config("v1"), workers=2)
    assert version(gw) == {"v": "v1", "color": "green"}
    stages = json.loads(fastgw(gw, "stages", "shop", "--json").stdout)
    prod = next(s for s in stages if s["stageName"] == "prod")
    first = prod["deploymentId"]
    assert first and prod["autoDeploy"] is False
    live = next(s for s in stages if s["stageName"] == "live")
    assert live["deploymentId"] is None and live["servesConfig"] is True

    gw.write_config(config("v2"))
    gw.reload()
    # The auto-deploy stage follows the config at once; the manual one does not.
    assert wait_for(lambda: version(gw, "live")["v"] == "v2", 5.0)
    time.sleep(1.0)
    assert versions_on_new_connections(gw) == {"v1"}

    out = fastgw(gw, "deploy", "shop", "--stage", "prod", "--description", "second").stdout
    assert "deployment 2" in out
    assert settle(gw, "v2") < 1.5
    deps = json.loads(fastgw(gw, "deployments", "shop", "--json").stdout)
    assert [d["number"] for d in deps] == [2, 1]
    assert deps[0]["description"] == "second" and deps[1]["id"] == first
    assert deps[0]["digest"] != deps[1]["digest"]

    fastgw(gw, "rollback", "shop", "--stage", "prod", "--to", first)
    assert settle(gw, "v1") < 1.5

    # The stage's deployment is kept by the store: a restart serves it, not the config's v2.
    state = gw.state_path
    assert gw.stop() == 0
    gw2 = gateway_factory(config("v2"), state_path=state)
    assert version(gw2) == {"v": "v1", "color": "green"}
    assert version(gw2, "live")["v"] == "v2"


def test_an_auto_deploy_stage_is_redeployed_by_reloads_once_deployed(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config("v1", auto=True))
    fastgw(gw, "deploy", "shop", "--stage", "prod")
    gw.write_config(config("v2", auto=True))
    gw.reload()
    assert wait_for(lambda: version(gw)["v"] == "v2", 5.0)
    deps = admin_call(gw, "GET", "/restapis/shop1/deployments")["items"]
    assert [d["number"] for d in deps] == [2, 1]
    assert deps[0]["description"] == "auto-deployed from the config"
    stage = admin_call(gw, "GET", "/restapis/shop1/stages/prod")
    assert stage["deploymentId"] == deps[0]["id"]
    # A reload that does not change the definition deploys nothing.
    gw.reload()
    time.sleep(1.0)
    assert len(admin_call(gw, "GET", "/restapis/shop1/deployments")["items"]) == 2


def test_a_canary_gets_its_share_per_request_and_can_be_promoted(gateway_factory: GatewayFactory) -> None:
    # 10,000 requests as fast as one client sends them: above AWS's default account throttle
    # (10,000 requests/s, burst 5,000) on a fast machine since the gateway got faster, so this
    # test of the canary split lifts the gateway-wide limit (throttling has its own tests).
    unthrottled = {"throttle": {"rateLimit": 1_000_000, "burstLimit": 1_000_000}}
    gw = gateway_factory({**config("v1"), "gateway": unthrottled}, workers=2)
    gw.write_config({**config("v2"), "gateway": unthrottled})
    gw.reload()
    time.sleep(0.5)
    fastgw(gw, "deploy", "shop", "--stage", "prod", "--canary", "30", "--override", "color=blue")
    assert wait_for(lambda: "v2" in versions_on_new_connections(gw, 30), 3.0)
    stage = admin_call(gw, "GET", "/restapis/shop1/stages/prod")
    assert stage["canarySettings"]["percentTraffic"] == 30.0
    assert stage["canarySettings"]["stageVariableOverrides"] == {"color": "blue"}

    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    total = 10_000
    per_conn = 500
    for _ in range(total // per_conn):
        with RawConn(gw.port) as c:  # one keep-alive connection sees both: the split is per request
            conn_versions = set()
            for _ in range(per_conn):
                doc = c.request("GET", "/prod/v").json()
                counts[doc["v"]] = counts.get(doc["v"], 0) + 1
                conn_versions.add(doc["v"])
                seen.add((doc["v"], doc["color"]))
            assert conn_versions == {"v1", "v2"}
    share = counts["v2"] / total
    assert abs(share - 0.30) <= 0.02, counts
    assert seen == {("v1", "green"), ("v2", "blue")}  # the canary's overrides, and only there

    fastgw(gw, "canary", "shop", "--stage", "prod", "--percent", "0")
    assert settle(gw, "v1") < 1.5
    fastgw(gw, "canary", "shop", "--stage", "prod", "--promote")
    assert settle(gw, "v2") < 1.5
    assert version(gw)["color"] == "green"  # promoted: the stage's own variables
    stage = admin_call(gw, "GET", "/restapis/shop1/stages/prod")
    assert "canarySettings" not in stage


def test_bad_changes_are_refused_and_change_nothing(gateway_factory: GatewayFactory) -> None:
    handler = {"type": "AWS_PROXY", "uri": "hello"}
    cfg = config("v1", extra_routes=[{"route": "GET /fn", "integration": handler}])
    cfg["functions"] = {"hello": {"handler": "fastgw.demo.functions:handler"}}
    gw = gateway_factory(cfg)
    first = admin_call(gw, "GET", "/restapis/shop1/stages/prod")["deploymentId"]
    # A config without the function: the first deployment (which uses it) no longer compiles.
    gw.write_config(config("v2"))
    gw.reload()
    fastgw(gw, "deploy", "shop", "--stage", "prod")
    assert wait_for(lambda: version(gw)["v"] == "v2", 3.0)
    bad = fastgw(gw, "rollback", "shop", "--stage", "prod", "--to", first, ok=False)
    assert bad.returncode == 1
    assert "does not compile" in bad.stderr and "hello" in bad.stderr
    assert version(gw)["v"] == "v2"

    bad = fastgw(gw, "rollback", "shop", "--stage", "prod", "--to", "nosuch", ok=False)
    assert bad.returncode == 1 and "nosuch" in bad.stderr
    bad = fastgw(gw, "canary", "shop", "--stage", "prod", "--percent", "20", ok=False)
    assert bad.returncode == 1 and "has no canary" in bad.stderr
    bad = fastgw(gw, "deploy", "shop", "--stage", "prod", "--canary", "150", ok=False)
    assert bad.returncode == 1 and "percentTraffic" in bad.stderr
    bad = fastgw(gw, "deploy", "shop", "--stage", "live", "--canary", "10", ok=False)
    assert bad.returncode == 1 and "no deployment yet" in bad.stderr
    bad = fastgw(gw, "deploy", "shop", "--stage", "nope", ok=False)
    assert bad.returncode == 1 and "Invalid Stage identifier" in bad.stderr
    bad = fastgw(gw, "deploy", "nope", "--stage", "prod", ok=False)
    assert bad.returncode == 1 and "Invalid API identifier" in bad.stderr
    in_use = admin_call(gw, "GET", "/restapis/shop1/stages/prod")["deploymentId"]
    with pytest.raises(urllib.error.HTTPError) as info:
        admin_call(gw, "DELETE", f"/restapis/shop1/deployments/{in_use}")
    assert info.value.code == 409
    info.value.close()
    # The unused first deployment can go.
    assert admin_call(gw, "DELETE", f"/restapis/shop1/deployments/{first}") is None
    assert version(gw)["v"] == "v2"


def test_export_gives_the_served_api_back_as_openapi(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gw = gateway_factory(config("v1"))
    out = tmp_path / "shop.yaml"
    fastgw(gw, "export", "shop", "--stage", "prod", "--yaml", "-o", str(out))
    doc = yaml.safe_load(out.read_text())
    assert doc["openapi"].startswith("3.0")
    integ = doc["paths"]["/v"]["get"]["x-amazon-apigateway-integration"]
    assert integ["type"] == "mock"
    assert "v1" in json.dumps(integ["responses"])
    plain = json.loads(
        fastgw(gw, "export", "shop", "--stage", "prod", "--type", "swagger", "--no-extensions").stdout
    )
    assert plain["swagger"] == "2.0"
    assert "x-amazon-apigateway" not in json.dumps(plain)
    # Import it into a new config and serve it: the same answers.
    gw2_cfg = tmp_path / "imported.yaml"
    subprocess.run(
        [sys.executable, "-m", "fastgw", "import", str(out), "-o", str(gw2_cfg), "--stage", "prod"],
        check=True,
        env=gateway_env(),
        cwd=str(REPO),
        capture_output=True,
        timeout=30,
    )
    gw2 = gateway_factory(yaml.safe_load(gw2_cfg.read_text()))
    assert version(gw2)["v"] == "v1"


def test_nodes_sharing_redis_follow_one_deployment(gateway_factory: GatewayFactory, redis_url: str) -> None:
    def shared(version_: str) -> dict[str, Any]:
        cfg = config(version_)
        prefix = f"dep{time.monotonic_ns()}:"
        cfg["gateway"] = {"state": {"backend": "redis", "redis": {"url": redis_url, "prefix": prefix}}}
        return cfg

    cfg = shared("v1")
    a = gateway_factory(cfg)
    b = gateway_factory(cfg)
    first = admin_call(a, "GET", "/restapis/shop1/stages/prod")["deploymentId"]
    # Both nodes started on the same store: one initial deployment, served by both.
    assert admin_call(b, "GET", "/restapis/shop1/stages/prod")["deploymentId"] == first
    v2 = {**cfg, "apis": config("v2")["apis"]}
    a.write_config(v2)
    b.write_config(v2)
    fastgw(a, "deploy", "shop", "--stage", "prod")
    t0 = time.monotonic()
    assert wait_for(lambda: version(a)["v"] == version(b)["v"] == "v2", 3.0)
    assert time.monotonic() - t0 < 1.5
    fastgw(b, "rollback", "shop", "--stage", "prod", "--to", first)
    assert wait_for(lambda: version(a)["v"] == version(b)["v"] == "v1", 3.0)


def test_stage_variables_cannot_break_a_request_line(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    from fastgw.config.load import ConfigError, decode_config

    cfg = config("v1")
    cfg["apis"][0]["stages"][0]["variables"]["color"] = "v HTTP/1.1\r\nX-Evil: 1"
    with pytest.raises(ConfigError) as info:
        decode_config(cfg)
    assert any(i.path == "$.apis[0].stages[0].variables.color" for i in info.value.issues)
    gw = gateway_factory(config("v1"))
    gw.write_config(config("v2"))
    gw.reload()
    time.sleep(0.5)
    bad = {
        "stageName": "prod",
        "canarySettings": {"percentTraffic": 50, "stageVariableOverrides": {"p": "a b"}},
    }
    with pytest.raises(urllib.error.HTTPError) as err:
        admin_call(gw, "POST", "/restapis/shop1/deployments", bad)
    assert err.value.code == 400
    err.value.close()
    # Nothing was deployed by the refused request.
    assert len(admin_call(gw, "GET", "/restapis/shop1/deployments")["items"]) == 1
    fastgw(gw, "deploy", "shop", "--stage", "prod", "--canary", "10")
    ops = {
        "patchOperations": [
            {"op": "replace", "path": "/canarySettings/stageVariableOverrides/p", "value": "x\ny"}
        ]
    }
    with pytest.raises(urllib.error.HTTPError) as err:
        admin_call(gw, "PATCH", "/restapis/shop1/stages/prod", ops)
    assert err.value.code == 400
    err.value.close()
    # A canary on a stage that serves the config (no deployment yet) is a 400, not a 500.
    ops = {"patchOperations": [{"op": "replace", "path": "/canarySettings/deploymentId", "value": "x"}]}
    with pytest.raises(urllib.error.HTTPError) as err:
        admin_call(gw, "PATCH", "/restapis/shop1/stages/live", ops)
    assert err.value.code == 400
    err.value.close()


def test_a_deployment_keeps_its_cors_and_needs_a_reload_for_new_functions(
    gateway_factory: GatewayFactory,
) -> None:
    def http_config(origin: str, with_fn: bool = False) -> dict[str, Any]:
        routes: list[dict[str, Any]] = [{"route": "GET /x", "integration": {"type": "MOCK", "body": "x"}}]
        cfg: dict[str, Any] = {
            "apis": [
                {
                    "name": "h",
                    "id": "h1",
                    "kind": "http",
                    "cors": {"allowOrigins": [origin], "allowMethods": ["GET"]},
                    "routes": routes,
                    "stages": [{"name": "prod", "autoDeploy": False}],
                }
            ]
        }
        if with_fn:
            fn = {"type": "AWS_PROXY", "uri": "hello", "payloadFormatVersion": "1.0"}
            routes.append({"route": "GET /fn", "integration": fn})
            cfg["functions"] = {"hello": {"handler": "fastgw.demo.functions:handler"}}
        return cfg

    def allowed(gw: Gateway, origin: str) -> str | None:
        with RawConn(gw.port) as c:
            resp = c.request(
                "OPTIONS",
                "/prod/x",
                headers=[("Origin", origin), ("Access-Control-Request-Method", "GET")],
                host="h1.execute-api.local",
            )
        return resp.header("access-control-allow-origin")

    gw = gateway_factory(http_config("https://a.example"))
    assert allowed(gw, "https://a.example") == "https://a.example"
    gw.write_config(http_config("https://b.example"))
    gw.reload()
    time.sleep(1.0)
    # The manual stage still serves its deployment, CORS included.
    assert allowed(gw, "https://a.example") == "https://a.example"
    assert allowed(gw, "https://b.example") is None
    fastgw(gw, "deploy", "h1", "--stage", "prod")
    assert wait_for(lambda: allowed(gw, "https://b.example") == "https://b.example", 3.0)
    # A definition that needs a function the running config lacks: refused until a reload.
    gw.write_config(http_config("https://b.example", with_fn=True))
    bad = fastgw(gw, "deploy", "h1", "--stage", "prod", ok=False)
    assert bad.returncode == 1 and "reload the gateway first" in bad.stderr
    gw.reload()
    time.sleep(1.0)
    fastgw(gw, "deploy", "h1", "--stage", "prod")

    def fn_status() -> int:
        with RawConn(gw.port) as c:
            return c.request("GET", "/prod/fn", host="h1.execute-api.local").status

    assert wait_for(lambda: fn_status() == 200, 3.0), (fn_status(), gw.stderr_text()[-3000:])


def test_a_rest_stage_follows_the_config_until_its_first_deployment(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config("v1"))
    gw.write_config(config("v2"))
    gw.reload()
    # Never deployed: the REST stage serves the config as it is reloaded.
    assert wait_for(lambda: version(gw, "live")["v"] == "v2", 5.0)
    assert admin_call(gw, "GET", "/restapis/shop1/stages/live")["autoDeploy"] is False
    fastgw(gw, "deploy", "shop", "--stage", "live")
    gw.write_config(config("v3"))
    gw.reload()
    time.sleep(1.0)
    # Deployed once: as on AWS, config changes now wait for a deployment.
    assert version(gw, "live")["v"] == "v2"
    fastgw(gw, "deploy", "shop", "--stage", "live")
    assert wait_for(lambda: version(gw, "live")["v"] == "v3", 3.0)

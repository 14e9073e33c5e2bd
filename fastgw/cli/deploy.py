"""``fastgw deploy | deployments | stages | rollback | canary | export``: versions of an API.

They talk to a running gateway's admin API (``fastgw.admin.deploy``), with the connection
options and exit codes of the other admin commands (``--admin``, ``--token``, ``-c``,
``--json``, ``--timeout``; 1: refused, 2: unreachable):

- ``fastgw deploy API --stage prod [--description TEXT] [--canary PERCENT [--override K=V]...
  [--use-stage-cache]]``: snapshot the API as the config file defines it now and point the
  stage at it (or, with ``--canary``, make it the stage's canary);
- ``fastgw deployments API``: the API's deployments, newest first;
- ``fastgw stages API``: its stages and what each serves;
- ``fastgw rollback API --stage prod --to DEPLOYMENT``: point the stage at an older deployment;
- ``fastgw canary API --stage prod (--percent P | --promote | --delete)``;
- ``fastgw export API --stage prod [--type oas30|swagger] [--no-extensions] [--yaml] [-o FILE]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from fastgw.admin.client import AdminClient, _common, _done, _leaf, _out_json, _table


def _api_path(api: str) -> str:
    return f"/restapis/{quote(api, safe='')}"


def _stage_path(api: str, stage: str) -> str:
    return f"{_api_path(api)}/stages/{quote(stage, safe='')}"


def _overrides(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--override {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _stage_line(stage: dict[str, Any]) -> str:
    served = stage.get("deploymentId") or "the config's definition"
    text = f"{stage['stageName']}: serves {served}"
    canary = stage.get("canarySettings")
    if canary:
        text += f"; canary {canary['deploymentId']} gets {canary['percentTraffic']:g}% of requests"
    return text


def cmd_deploy(c: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"stageName": args.stage, "description": args.description or ""}
    if args.canary is not None:
        body["canarySettings"] = {
            "percentTraffic": args.canary,
            "stageVariableOverrides": _overrides(args.override),
            "useStageCache": args.use_stage_cache,
        }
    dep = c.request("POST", _api_path(args.api) + "/deployments", body=body)
    role = f"canary of {args.stage} ({args.canary:g}% of requests)" if args.canary is not None else args.stage
    return _done(
        args, dep, f"deployment {dep['number']} ({dep['id']}) created; {role} serves it within a second"
    )


def cmd_deployments(c: AdminClient, args: argparse.Namespace) -> int:
    items = c.request("GET", _api_path(args.api) + "/deployments")["items"]
    if args.json:
        _out_json(items)
        return 0
    _table(
        ["NUMBER", "ID", "CREATED", "DIGEST", "DESCRIPTION"],
        [[d["number"], d["id"], d["createdDate"], d["digest"], d.get("description") or ""] for d in items],
    )
    return 0


def cmd_stages(c: AdminClient, args: argparse.Namespace) -> int:
    items = c.request("GET", _api_path(args.api) + "/stages")["item"]
    if args.json:
        _out_json(items)
        return 0
    rows = []
    for s in items:
        canary = s.get("canarySettings")
        rows.append(
            [
                s["stageName"],
                s.get("deploymentId") or "(config)",
                "yes" if s.get("autoDeploy") else "no",
                f"{canary['deploymentId']} {canary['percentTraffic']:g}%" if canary else "-",
            ]
        )
    _table(["STAGE", "DEPLOYMENT", "AUTODEPLOY", "CANARY"], rows)
    return 0


def _patch(c: AdminClient, args: argparse.Namespace, ops: list[dict[str, str]]) -> dict[str, Any]:
    return dict(c.request("PATCH", _stage_path(args.api, args.stage), body={"patchOperations": ops}))


def cmd_rollback(c: AdminClient, args: argparse.Namespace) -> int:
    stage = _patch(c, args, [{"op": "replace", "path": "/deploymentId", "value": args.to}])
    return _done(args, stage, _stage_line(stage) + " (within a second on every worker)")


def cmd_canary(c: AdminClient, args: argparse.Namespace) -> int:
    if args.promote:
        ops = [
            {"op": "copy", "from": "/canarySettings/deploymentId", "path": "/deploymentId"},
            {"op": "remove", "path": "/canarySettings"},
        ]
    elif args.delete:
        ops = [{"op": "remove", "path": "/canarySettings"}]
    else:
        ops = [{"op": "replace", "path": "/canarySettings/percentTraffic", "value": str(args.percent)}]
        for name, value in _overrides(args.override).items():
            ops.append(
                {"op": "replace", "path": f"/canarySettings/stageVariableOverrides/{name}", "value": value}
            )
    stage = _patch(c, args, ops)
    return _done(args, stage, _stage_line(stage))


def cmd_export(c: AdminClient, args: argparse.Namespace) -> int:
    query = {"extensions": "apigateway"} if not args.no_extensions else None
    doc = c.request("GET", _stage_path(args.api, args.stage) + f"/exports/{args.type}", query=query)
    from fastgw.openapi.export import dump

    data = dump(doc, "yaml" if args.yaml else "json")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        if not data.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
    return 0


def add_deploy_commands(sub: Any) -> None:
    """Add the deployment commands to the ``fastgw`` subcommands."""
    common = _common()

    def api_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("api", metavar="API", help="API id (apis[].id or derived) or name")

    p = _leaf(sub, "deploy", cmd_deploy, "deploy the API as the config defines it now to a stage", common)
    api_arg(p)
    p.add_argument("--stage", required=True, help="stage to point at the new deployment")
    p.add_argument("--description", help="the deployment's description")
    p.add_argument(
        "--canary", type=float, metavar="PERCENT", help="make it the stage's canary with this share"
    )
    p.add_argument("--override", action="append", metavar="NAME=VALUE", help="canary stage variable")
    p.add_argument("--use-stage-cache", action="store_true", help="the canary shares the stage's cache")
    p = _leaf(sub, "deployments", cmd_deployments, "list an API's deployments", common)
    api_arg(p)
    p = _leaf(sub, "stages", cmd_stages, "list an API's stages and what each serves", common)
    api_arg(p)
    p = _leaf(sub, "rollback", cmd_rollback, "point a stage at an earlier deployment", common)
    api_arg(p)
    p.add_argument("--stage", required=True)
    p.add_argument("--to", required=True, metavar="DEPLOYMENT", help="deployment id")
    p = _leaf(sub, "canary", cmd_canary, "change, promote or delete a stage's canary", common)
    api_arg(p)
    p.add_argument("--stage", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--percent", type=float, help="share of requests for the canary (0-100)")
    what.add_argument("--promote", action="store_true", help="the stage serves the canary's deployment")
    what.add_argument("--delete", action="store_true", help="remove the canary")
    p.add_argument("--override", action="append", metavar="NAME=VALUE", help="canary stage variable")
    p = _leaf(sub, "export", cmd_export, "export the API a stage serves as OpenAPI", common)
    api_arg(p)
    p.add_argument("--stage", required=True)
    p.add_argument("--type", choices=("oas30", "swagger"), default="oas30")
    p.add_argument("--no-extensions", action="store_true", help="a plain document, no x-amazon-apigateway-*")
    p.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    p.add_argument("-o", "--output", help="write to this file")

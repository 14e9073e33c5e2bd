"""A small client of the admin API (stdlib urllib) and the ``fastgw keys|plans|usage`` commands.

``fastgw cache`` (``fastgw.cli.cache``) uses the same client and connection options.

Where the CLI finds the admin API: ``--admin URL``, else ``$FASTGW_ADMIN_URL``, else
``http://`` + ``gateway.admin.listen`` of the config file found the usual way (``-c/--config``,
``$FASTGW_CONFIG``, ``./fastgw.yaml``), else ``http://127.0.0.1:9001``. The token: ``--token``,
else ``read_token_for_cli`` (``$FASTGW_ADMIN_TOKEN``, ``token_file``, the generated file next to
the state file).

Exit codes: 0 success, 1 the admin API refused the request (its message is printed), 2 the admin
API cannot be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_ADMIN_URL = "http://127.0.0.1:9001"
ADMIN_URL_ENV = "FASTGW_ADMIN_URL"
TIMEOUT = 10.0


class AdminError(Exception):
    """The admin API answered with an error status."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}


class AdminUnreachable(Exception):
    """No answer from the admin API (refused, timed out, name not resolved)."""

    def __init__(self, url: str, reason: str, refused: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.refused = refused


class AdminClient:
    """Blocking JSON calls to the admin API."""

    def __init__(self, base_url: str, token: str | None, timeout: float = TIMEOUT) -> None:
        import urllib.request

        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # No proxies: the admin API is local, and $http_proxy must not see the token.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Any:
        payload = self.request_bytes(method, path, body=body, raw=raw, content_type=content_type, query=query)
        return json.loads(payload) if payload else None

    def request_bytes(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        accept: str = "application/json",
    ) -> bytes:
        """The response body as sent (``/metrics`` is text); errors raised as ``request`` does."""
        import urllib.error
        import urllib.request

        url = self.base_url + path
        if query:
            url += "?" + urlencode(query)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("content-type", content_type)
        req.add_header("accept", accept)
        if self.token:
            req.add_header("authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as ex:
            with ex:
                payload = ex.read()
            try:
                doc = json.loads(payload) if payload else {}
            except ValueError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            raise AdminError(ex.code, str(doc.get("message") or ex.reason), doc) from None
        except urllib.error.URLError as ex:
            reason = ex.reason
            refused = isinstance(reason, ConnectionRefusedError)
            raise AdminUnreachable(self.base_url, str(reason), refused) from None
        except TimeoutError:
            raise AdminUnreachable(self.base_url, f"no answer within {self.timeout:g}s") from None
        except OSError as ex:
            raise AdminUnreachable(self.base_url, str(ex), isinstance(ex, ConnectionRefusedError)) from None
        return bytes(payload)

    # API keys ---------------------------------------------------------------------------
    def list_keys(self, name_query: str | None = None) -> list[dict[str, Any]]:
        query = {"nameQuery": name_query} if name_query else None
        return list(self.request("GET", "/apikeys", query=query)["items"])

    def get_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/apikeys/{quote(key_id, safe='')}"))

    def create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/apikeys", body=body))

    def patch_key(self, key_id: str, operations: list[dict[str, str]]) -> dict[str, Any]:
        return dict(
            self.request("PATCH", f"/apikeys/{quote(key_id, safe='')}", body={"patchOperations": operations})
        )

    def rotate_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/apikeys/{quote(key_id, safe='')}/rotate"))

    def delete_key(self, key_id: str) -> None:
        self.request("DELETE", f"/apikeys/{quote(key_id, safe='')}")

    def import_keys(self, csv_bytes: bytes, fail_on_warnings: bool = False) -> dict[str, Any]:
        query = {"mode": "import", "format": "csv"}
        if fail_on_warnings:
            query["failonwarnings"] = "true"
        return dict(self.request("POST", "/apikeys", raw=csv_bytes, content_type="text/csv", query=query))

    # usage plans ------------------------------------------------------------------------
    def list_plans(self, key_id: str | None = None) -> list[dict[str, Any]]:
        query = {"keyId": key_id} if key_id else None
        return list(self.request("GET", "/usageplans", query=query)["items"])

    def get_plan(self, plan_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/usageplans/{quote(plan_id, safe='')}"))

    def create_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/usageplans", body=body))

    def delete_plan(self, plan_id: str) -> None:
        self.request("DELETE", f"/usageplans/{quote(plan_id, safe='')}")

    def plan_keys(self, plan_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/usageplans/{quote(plan_id, safe='')}/keys")["items"])

    def add_plan_key(self, plan_id: str, key_id: str) -> dict[str, Any]:
        path = f"/usageplans/{quote(plan_id, safe='')}/keys"
        return dict(self.request("POST", path, body={"keyId": key_id, "keyType": "API_KEY"}))

    def remove_plan_key(self, plan_id: str, key_id: str) -> None:
        self.request("DELETE", f"/usageplans/{quote(plan_id, safe='')}/keys/{quote(key_id, safe='')}")

    def usage(self, plan_id: str, start: str, end: str, key_id: str | None = None) -> dict[str, Any]:
        query = {"startDate": start, "endDate": end}
        if key_id:
            query["keyId"] = key_id
        return dict(self.request("GET", f"/usageplans/{quote(plan_id, safe='')}/usage", query=query))

    def quota(self, plan_id: str, key_id: str) -> dict[str, Any]:
        path = f"/usageplans/{quote(plan_id, safe='')}/keys/{quote(key_id, safe='')}/quota"
        return dict(self.request("GET", path))

    # stage caches -----------------------------------------------------------------------
    @staticmethod
    def _stage_path(api_id: str, stage: str) -> str:
        return f"/restapis/{quote(api_id, safe='')}/stages/{quote(stage, safe='')}/cache"

    def flush_stage_cache(self, api_id: str, stage: str) -> None:
        """AWS FlushStageCache (202, no body)."""
        self.request("DELETE", self._stage_path(api_id, stage) + "/data")

    def purge_stage_cache(
        self, api_id: str, stage: str, path: str = "", method: str = "*", prefix: bool = False, key: str = ""
    ) -> dict[str, Any]:
        """Purge one resource path, a path prefix or one cache key; returns the recorded purge."""
        body: dict[str, Any] = {"method": method, "prefix": prefix}
        if path:
            body["path"] = path
        if key:
            body["key"] = key
        return dict(self.request("POST", self._stage_path(api_id, stage) + "/purge", body=body))


# ---------------------------------------------------------------------- CLI plumbing
def _load_config(args: argparse.Namespace) -> Any:
    """The config the CLI takes the admin address and token from (None: defaults)."""
    from fastgw.cli.main import _find_config
    from fastgw.config.load import ConfigError, load_config_file

    path = _find_config(getattr(args, "config", None))
    if path is None:
        return None
    try:
        return load_config_file(path)
    except ConfigError as ex:
        if getattr(args, "config", None):
            raise
        print(f"fastgw: ignoring {path} ({len(ex.issues)} config error(s)); using defaults", file=sys.stderr)
        return None


def admin_url_from(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def client_from_args(args: argparse.Namespace) -> AdminClient:
    from fastgw.admin.token import read_token_for_cli

    config = None
    url = args.admin or os.environ.get(ADMIN_URL_ENV)
    if not url or not args.token:
        config = _load_config(args)
    if not url:
        url = admin_url_from(config.gateway.admin.listen) if config is not None else DEFAULT_ADMIN_URL
    token = args.token or read_token_for_cli(config)
    return AdminClient(url, token, timeout=args.timeout)


def _out_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def _done(args: argparse.Namespace, doc: Any, text: str) -> int:
    """Report a finished change: ``doc`` as JSON with --json, else one line of ``text``."""
    if args.json:
        _out_json(doc)
    else:
        print(text)
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _date(ts: Any) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _throttle_text(plan: dict[str, Any]) -> str:
    t = plan.get("throttle")
    return f"{t['rateLimit']:g}/s burst {t['burstLimit']}" if t else "-"


def _quota_text(plan: dict[str, Any]) -> str:
    q = plan.get("quota")
    if not q:
        return "-"
    offset = f" offset {q.get('offset', 0)}" if q.get("offset") else ""
    return f"{q['limit']}/{q['period']}{offset}"


def _stages_text(plan: dict[str, Any]) -> str:
    return ",".join(f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])) or "-"


# ---------------------------------------------------------------------- keys
def cmd_keys_create(c: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "enabled": not args.disabled}
    if args.value:
        body["value"] = args.value
    if args.description:
        body["description"] = args.description
    key = c.create_key(body)
    plans: list[str] = []
    for plan_id in args.plan or []:
        c.add_plan_key(plan_id, key["id"])
        plans.append(plan_id)
    if args.json:
        _out_json({**key, "usagePlanIds": plans})
        return 0
    print(f"id:    {key['id']}")
    print(f"value: {key['value']}")
    if plans:
        print(f"plans: {', '.join(plans)}")
    print("(the value is shown only this once; fastgw keeps only its hash)", file=sys.stderr)
    return 0


def cmd_keys_list(c: AdminClient, args: argparse.Namespace) -> int:
    keys = c.list_keys(args.name_query)
    if args.json:
        _out_json(keys)
        return 0
    _table(
        ("ID", "NAME", "ENABLED", "PREFIX", "SOURCE", "CREATED"),
        [
            (
                k["id"],
                k["name"],
                k["enabled"],
                k.get("valuePrefix") or "-",
                k["source"],
                _date(k["createdDate"]),
            )
            for k in keys
        ],
    )
    return 0


def _print_key(key: dict[str, Any]) -> None:
    for name in ("id", "name", "enabled", "description", "customerId", "valuePrefix", "source"):
        print(f"{name + ':':13}{key.get(name, '')}")
    print(f"{'created:':13}{_date(key.get('createdDate'))}")
    print(f"{'updated:':13}{_date(key.get('lastUpdatedDate'))}")


def cmd_keys_get(c: AdminClient, args: argparse.Namespace) -> int:
    key = c.get_key(args.id)
    if args.json:
        _out_json(key)
    else:
        _print_key(key)
    return 0


def _set_enabled(c: AdminClient, args: argparse.Namespace, enabled: bool) -> int:
    key = c.patch_key(args.id, [{"op": "replace", "path": "/enabled", "value": str(enabled).lower()}])
    return _done(args, key, f"{key['id']} {'enabled' if key['enabled'] else 'disabled'}")


def cmd_keys_enable(c: AdminClient, args: argparse.Namespace) -> int:
    return _set_enabled(c, args, True)


def cmd_keys_disable(c: AdminClient, args: argparse.Namespace) -> int:
    return _set_enabled(c, args, False)


def cmd_keys_rotate(c: AdminClient, args: argparse.Namespace) -> int:
    key = c.rotate_key(args.id)
    if args.json:
        _out_json(key)
        return 0
    print(f"id:    {key['id']}")
    print(f"value: {key['value']}")
    print("(the old value no longer works; the new one is shown only this once)", file=sys.stderr)
    return 0


def cmd_keys_delete(c: AdminClient, args: argparse.Namespace) -> int:
    c.delete_key(args.id)
    return _done(args, {"id": args.id, "deleted": True}, f"deleted {args.id}")


def cmd_keys_import(c: AdminClient, args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as ex:
        print(f"fastgw: cannot read {args.file}: {ex.strerror}", file=sys.stderr)
        return 1
    result = c.import_keys(data, args.fail_on_warnings)
    if args.json:
        _out_json(result)
        return 0
    print(f"imported {len(result['ids'])} key(s): {' '.join(result['ids']) or '-'}")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- plans
def cmd_plans_create(c: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.description:
        body["description"] = args.description
    if (args.rate is None) != (args.burst is None):
        print("fastgw: --rate and --burst go together", file=sys.stderr)
        return 1
    if args.rate is not None:
        body["throttle"] = {"rateLimit": args.rate, "burstLimit": args.burst}
    if (args.quota_limit is None) != (args.quota_period is None):
        print("fastgw: --quota-limit and --quota-period go together", file=sys.stderr)
        return 1
    if args.quota_limit is not None:
        body["quota"] = {"limit": args.quota_limit, "period": args.quota_period, "offset": args.quota_offset}
    stages = []
    for text in args.stage or []:
        api, sep, stage = text.partition(":")
        if not sep or not api or not stage:
            print(f"fastgw: --stage {text!r}: expected API:STAGE", file=sys.stderr)
            return 1
        stages.append({"apiId": api, "stage": stage})
    if stages:
        body["apiStages"] = stages
    if args.fail_closed:
        body["fail_open"] = False
    plan = c.create_plan(body)
    if args.json:
        _out_json(plan)
    else:
        print(f"id: {plan['id']}")
    return 0


def cmd_plans_list(c: AdminClient, args: argparse.Namespace) -> int:
    plans = c.list_plans()
    if args.json:
        _out_json(plans)
        return 0
    _table(
        ("ID", "NAME", "THROTTLE", "QUOTA", "STAGES", "SOURCE"),
        [
            (p["id"], p["name"], _throttle_text(p), _quota_text(p), _stages_text(p), p["source"])
            for p in plans
        ],
    )
    return 0


def cmd_plans_get(c: AdminClient, args: argparse.Namespace) -> int:
    plan = c.get_plan(args.id)
    keys = c.plan_keys(args.id)
    if args.json:
        _out_json({**plan, "keys": keys})
        return 0
    print(f"{'id:':11}{plan['id']}")
    print(f"{'name:':11}{plan['name']}")
    print(f"{'throttle:':11}{_throttle_text(plan)}")
    print(f"{'quota:':11}{_quota_text(plan)}")
    print(f"{'stages:':11}{_stages_text(plan)}")
    print(f"{'on outage:':11}{'fail open' if plan.get('fail_open', True) else 'fail closed'}")
    print(f"{'source:':11}{plan['source']}")
    members = ", ".join(f"{k['id']} ({k['name']})" for k in keys)
    print(f"{'keys:':11}{members or '-'}")
    return 0


def cmd_plans_delete(c: AdminClient, args: argparse.Namespace) -> int:
    c.delete_plan(args.id)
    return _done(args, {"id": args.id, "deleted": True}, f"deleted {args.id}")


def cmd_plans_add_key(c: AdminClient, args: argparse.Namespace) -> int:
    result = c.add_plan_key(args.plan, args.key)
    return _done(args, result, f"added {args.key} to {args.plan}")


def cmd_plans_remove_key(c: AdminClient, args: argparse.Namespace) -> int:
    c.remove_plan_key(args.plan, args.key)
    doc = {"usagePlanId": args.plan, "keyId": args.key, "removed": True}
    return _done(args, doc, f"removed {args.key} from {args.plan}")


# ---------------------------------------------------------------------- usage
def cmd_usage(c: AdminClient, args: argparse.Namespace) -> int:
    today = dt.datetime.now(dt.UTC).date()
    end = args.end or today.isoformat()
    try:
        start = args.start or (dt.date.fromisoformat(end) - dt.timedelta(days=6)).isoformat()
    except ValueError:
        print(f"fastgw: --end {end!r}: expected YYYY-MM-DD", file=sys.stderr)
        return 1
    plans = [c.get_plan(args.plan)] if args.plan else c.list_plans(key_id=args.key_id)
    if not plans:
        c.get_key(args.key_id)  # an unknown key is an error (404), a key without plans is not
    report = []
    for plan in plans:
        usage = c.usage(plan["id"], start, end, args.key_id)
        quota = c.quota(plan["id"], args.key_id)
        report.append({"plan": plan, "usage": usage, "quota": quota})
    if args.json:
        _out_json({"keyId": args.key_id, "startDate": start, "endDate": end, "plans": report})
        return 0
    if not report:
        print(f"API key {args.key_id} is in no usage plan")
        return 0
    first = dt.date.fromisoformat(start)
    for i, entry in enumerate(report):
        plan, usage, quota = entry["plan"], entry["usage"], entry["quota"]
        if i:
            print()
        print(
            f"plan {plan['name']} ({plan['id']}): quota {_quota_text(plan)}, throttle {_throttle_text(plan)}"
        )
        if quota.get("limit") is not None:
            since = str(quota["periodStart"])[:10]
            until = dt.date.fromisoformat(str(quota["periodEnd"])[:10]) - dt.timedelta(days=1)
            print(
                f"current period {since} .. {until.isoformat()}: used {quota['used']}, "
                f"remaining {quota['remaining']} of {quota['limit']}"
            )
        series = usage["items"].get(args.key_id, [])
        _table(
            ("DAY", "USED", "REMAINING"),
            [((first + dt.timedelta(days=d)).isoformat(), u, r) for d, (u, r) in enumerate(series)],
        )
    return 0


# ---------------------------------------------------------------------- argparse
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--admin",
        metavar="URL",
        help=f"admin API base URL (default: ${ADMIN_URL_ENV}, else http://<gateway.admin.listen>, "
        f"else {DEFAULT_ADMIN_URL})",
    )
    common.add_argument(
        "--token", help="bearer token (default: $FASTGW_ADMIN_TOKEN, admin.token_file, the generated file)"
    )
    common.add_argument("-c", "--config", help="config file to read the admin address and token from")
    common.add_argument("--json", action="store_true", help="print the raw JSON")
    common.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds to wait for the admin API")
    return common


def _leaf(
    sub: Any, name: str, func: Any, help_text: str, common: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, parents=[common])
    p.set_defaults(func=_run(func))
    return p


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(client_from_args(args), args))
        except AdminError as ex:
            where = f" (at {ex.body['path']})" if ex.body.get("path") else ""
            print(f"fastgw: {ex.status} {ex.message}{where}", file=sys.stderr)
            for warning in ex.body.get("warnings") or []:
                print(f"  warning: {warning}", file=sys.stderr)
            if ex.status == 401:
                print(
                    "fastgw: hint: pass --token or set FASTGW_ADMIN_TOKEN (the gateway writes a generated "
                    "token to fastgw-admin.token next to its state file)",
                    file=sys.stderr,
                )
            return 1
        except AdminUnreachable as ex:
            why = "connection refused" if ex.refused else ex.reason
            print(
                f"fastgw: cannot reach the admin API at {ex.url} ({why}); is the gateway running with "
                f"gateway.admin enabled? Point --admin or ${ADMIN_URL_ENV} at it.",
                file=sys.stderr,
            )
            return 2
        except ValueError as ex:  # an unreadable token_file, a bad config given with -c
            print(f"fastgw: {ex}", file=sys.stderr)
            return 1

    return run


def add_admin_commands(sub: Any) -> None:
    """Add ``keys``, ``plans`` and ``usage`` to the ``fastgw`` subcommands."""
    common = _common()

    keys = sub.add_parser("keys", help="API keys (through the admin API)")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    p = _leaf(ks, "create", cmd_keys_create, "create a key; prints its id and value (once)", common)
    p.add_argument("--name", required=True)
    p.add_argument("--value", help="the key value (20-128 printable ASCII); generated when omitted")
    p.add_argument("--description")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    p.add_argument(
        "--plan", action="append", metavar="PLAN_ID", help="add it to this usage plan (repeatable)"
    )
    p = _leaf(ks, "list", cmd_keys_list, "list keys", common)
    p.add_argument("--name-query", help="only names starting with this")
    for name, func, text in (
        ("get", cmd_keys_get, "show a key"),
        ("enable", cmd_keys_enable, "enable a key"),
        ("disable", cmd_keys_disable, "disable a key (refused within a second everywhere)"),
        ("rotate", cmd_keys_rotate, "give a key a new value (printed once); the old one stops working"),
        ("delete", cmd_keys_delete, "delete a key"),
    ):
        _leaf(ks, name, func, text, common).add_argument("id", metavar="ID")
    p = _leaf(ks, "import", cmd_keys_import, "import an AWS CSV key file (Name,Key[,...])", common)
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--fail-on-warnings", action="store_true", help="import nothing if any row has a warning")

    plans = sub.add_parser("plans", help="usage plans (through the admin API)")
    ps = plans.add_subparsers(dest="plans_command", required=True)
    p = _leaf(ps, "create", cmd_plans_create, "create a usage plan", common)
    p.add_argument("--name", required=True)
    p.add_argument("--description")
    p.add_argument("--rate", type=float, help="throttle: steady requests per second per key")
    p.add_argument("--burst", type=int, help="throttle: burst per key")
    p.add_argument("--quota-limit", type=int, help="requests per quota period per key")
    p.add_argument("--quota-period", choices=["DAY", "WEEK", "MONTH"])
    p.add_argument("--quota-offset", type=int, default=0, help="WEEK: 0 = Sunday; MONTH: 0 = the 1st")
    p.add_argument("--stage", action="append", metavar="API:STAGE", help="API stage covered (repeatable)")
    p.add_argument("--fail-closed", action="store_true", help="refuse requests (503) when Redis is down")
    _leaf(ps, "list", cmd_plans_list, "list usage plans", common)
    _leaf(ps, "get", cmd_plans_get, "show a usage plan and its keys", common).add_argument("id", metavar="ID")
    _leaf(ps, "delete", cmd_plans_delete, "delete a usage plan", common).add_argument("id", metavar="ID")
    for name, func, text in (
        ("add-key", cmd_plans_add_key, "add an API key to a plan"),
        ("remove-key", cmd_plans_remove_key, "remove an API key from a plan"),
    ):
        p = _leaf(ps, name, func, text, common)
        p.add_argument("plan", metavar="PLAN")
        p.add_argument("key", metavar="KEY")

    p = _leaf(sub, "usage", cmd_usage, "daily usage and quota of an API key", common)
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--plan", metavar="ID", help="only this plan (default: every plan the key is in)")
    p.add_argument("--start", metavar="YYYY-MM-DD", help="first day (default: 6 days before --end)")
    p.add_argument("--end", metavar="YYYY-MM-DD", help="last day (default: today, UTC)")

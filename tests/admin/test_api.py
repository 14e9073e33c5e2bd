"""The admin API over real HTTP: resources, AWS shapes, auth, errors, limits, usage arithmetic."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admin.util import HOST, TOKEN, AdminThread, Reply, make_config
from fastgw.admin import server as admin_server
from fastgw.admin.openapi import openapi_document
from fastgw.state.model import hash_key_value
from fastgw.state.periods import date_day, day_date, day_number
from fastgw.state.sqlite_store import SqliteStore

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminThread]:
    store = SqliteStore(str(tmp_path / "state.db"))
    srv = AdminThread(make_config(tmp_path / "state.db"), store)
    yield srv
    srv.close()


def create_key(admin: AdminThread, name: str = "k", **body: Any) -> dict[str, Any]:
    r = admin.call("POST", "/apikeys", {"name": name, **body})
    assert r.status == 201, r.body
    return dict(r.body)


def create_plan(admin: AdminThread, name: str = "p", **body: Any) -> dict[str, Any]:
    r = admin.call("POST", "/usageplans", {"name": name, **body})
    assert r.status == 201, r.body
    return dict(r.body)


def assert_error(r: Reply, status: int, message: str, error_type: str | None = None) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.body["message"] == message
    if error_type is not None:
        assert r.header("x-amzn-ErrorType") == error_type


# ---------------------------------------------------------------------- public paths and auth
def test_health_and_openapi_need_no_token(admin: AdminThread) -> None:
    r = admin.call("GET", "/health", token=None)
    assert (r.status, r.body) == (200, {"status": "ok"})
    r = admin.call("GET", "/openapi.json", token=None)
    assert r.status == 200
    doc = r.body
    assert doc["openapi"] == "3.1.0"
    assert doc["paths"]["/health"]["get"]["security"] == []
    # Every route the server has is documented, with every method it answers.
    for route in admin_server.ROUTES:
        names = iter(["keyId"] if route.pattern[0] == "apikeys" else ["usageplanId", "keyId"])
        path = "/" + "/".join("{" + next(names) + "}" if s == "*" else s for s in route.pattern)
        assert path in doc["paths"], path
        assert {m.lower() for m in route.methods} <= set(doc["paths"][path]), path
    for name in ("ApiKey", "ApiKeyCreate", "UsagePlan", "UsagePlanCreate", "Usage", "PatchRequest"):
        assert name in doc["components"]["schemas"]
    assert "valueHash" not in doc["components"]["schemas"]["ApiKey"]["properties"]
    assert doc == openapi_document()


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}, {"authorization": "Bearer"}],
    ids=["missing", "wrong", "basic", "empty"],
)
def test_unauthorized_changes_nothing(admin: AdminThread, headers: dict[str, str]) -> None:
    before = admin.store.version_sync()
    for method, path, body in (
        ("GET", "/apikeys", None),
        ("POST", "/apikeys", {"name": "x"}),
        ("POST", "/usageplans", {"name": "x"}),
        ("DELETE", "/apikeys/abc", None),
        ("GET", "/no/such/path", None),
    ):
        r = admin.call(method, path, body, token=None, headers=headers)
        assert_error(r, 401, "Unauthorized")
        assert r.header("www-authenticate") == "Bearer"
    assert admin.store.version_sync() == before
    assert admin.store.load_sync().keys == []


# ---------------------------------------------------------------------- API keys
def test_api_key_lifecycle_and_aws_shapes(admin: AdminThread) -> None:
    key = create_key(admin, "alice", description="first", customerId="c-1", tags={"team": "a"})
    assert set(key) >= {
        "id",
        "name",
        "value",
        "enabled",
        "description",
        "customerId",
        "createdDate",
        "lastUpdatedDate",
        "stageKeys",
        "tags",
    }
    assert "valueHash" not in key
    assert len(key["value"]) == 40 and key["valuePrefix"] == key["value"][:5]
    assert key["enabled"] is True and key["source"] == "api" and key["tags"] == {"team": "a"}
    stored = admin.store.load_sync().keys[0]
    assert stored.valueHash == hash_key_value(key["value"])

    r = admin.call("GET", f"/apikeys/{key['id']}")
    assert r.status == 200 and "value" not in r.body and r.body["name"] == "alice"

    create_key(admin, "bob")
    r = admin.call("GET", "/apikeys")
    assert r.status == 200 and r.body["position"] is None
    assert [k["name"] for k in r.body["items"]] == ["alice", "bob"]
    assert all("value" not in k and "valueHash" not in k for k in r.body["items"])
    r = admin.call("GET", "/apikeys?nameQuery=bo")
    assert [k["name"] for k in r.body["items"]] == ["bob"]

    ops = {
        "patchOperations": [
            {"op": "replace", "path": "/enabled", "value": "false"},
            {"op": "replace", "path": "/name", "value": "alice2"},
        ]
    }
    r = admin.call("PATCH", f"/apikeys/{key['id']}", ops)
    assert r.status == 200 and r.body["enabled"] is False and r.body["name"] == "alice2"
    r = admin.call("PATCH", f"/apikeys/{key['id']}", {"description": "plain", "enabled": True})
    assert r.status == 200 and r.body["description"] == "plain" and r.body["enabled"] is True
    assert r.body["lastUpdatedDate"] >= r.body["createdDate"]

    r = admin.call("DELETE", f"/apikeys/{key['id']}")
    assert r.status == 202 and r.body is None
    assert_error(
        admin.call("GET", f"/apikeys/{key['id']}"), 404, admin_server.INVALID_KEY, "NotFoundException"
    )
    assert_error(admin.call("DELETE", f"/apikeys/{key['id']}"), 404, admin_server.INVALID_KEY)


def test_given_value_and_duplicate_value_conflict(admin: AdminThread) -> None:
    value = "given-value-0123456789abcdef"
    key = create_key(admin, "a", value=value)
    assert key["value"] == value
    version = admin.store.version_sync()
    r = admin.call("POST", "/apikeys", {"name": "b", "value": value})
    assert_error(r, 409, "API Key already exists", "ConflictException")
    assert admin.store.version_sync() == version and len(admin.store.load_sync().keys) == 1


def test_values_are_never_listed(admin: AdminThread) -> None:
    key = create_key(admin)
    r = admin.call("GET", "/apikeys?includeValues=true")
    assert r.status == 400 and "includeValues is not supported" in r.body["message"]
    r = admin.call("GET", f"/apikeys/{key['id']}?includeValue=true")
    assert r.status == 400


def test_rotate_invalidates_the_old_value(admin: AdminThread) -> None:
    key = create_key(admin)
    old_hash = hash_key_value(key["value"])
    r = admin.call("POST", f"/apikeys/{key['id']}/rotate")
    assert r.status == 200
    new = r.body
    assert new["id"] == key["id"] and new["value"] != key["value"] and new["valuePrefix"] == new["value"][:5]
    assert admin.run(admin.store.key_by_hash(old_hash)) is None
    found = admin.run(admin.store.key_by_hash(hash_key_value(new["value"])))
    assert found is not None and found.id == key["id"]
    assert "value" not in admin.call("GET", f"/apikeys/{key['id']}").body
    # A chosen new value; a value another key has is a conflict.
    other = create_key(admin, "other")
    r = admin.call("POST", f"/apikeys/{key['id']}/rotate", {"value": other["value"]})
    assert_error(r, 409, "API Key already exists", "ConflictException")
    assert_error(admin.call("POST", "/apikeys/nope/rotate"), 404, admin_server.INVALID_KEY)


# ---------------------------------------------------------------------- usage plans
def test_usage_plan_lifecycle(admin: AdminThread) -> None:
    plan = create_plan(
        admin,
        "gold",
        description="d",
        throttle={"rateLimit": 10, "burstLimit": 20},
        quota={"limit": 1000, "period": "MONTH"},
        apiStages=[{"apiId": "shop", "stage": "prod"}],
    )
    assert plan["quota"] == {"limit": 1000, "period": "MONTH", "offset": 0}
    assert plan["throttle"] == {"rateLimit": 10.0, "burstLimit": 20}
    assert plan["apiStages"][0]["apiId"] == "shop" and plan["source"] == "api"
    r = admin.call("GET", f"/usageplans/{plan['id']}")
    assert r.status == 200 and r.body == plan
    r = admin.call("GET", "/usageplans")
    assert r.body == {"items": [plan], "position": None}

    ops = {
        "patchOperations": [
            {"op": "replace", "path": "/throttle/rateLimit", "value": "50"},
            {"op": "replace", "path": "/quota/limit", "value": "2000"},
            {"op": "replace", "path": "/quota/period", "value": "WEEK"},
            {"op": "replace", "path": "/quota/offset", "value": "1"},
            {"op": "replace", "path": "/name", "value": "platinum"},
            {"op": "add", "path": "/apiStages", "value": "shop:test"},
        ]
    }
    r = admin.call("PATCH", f"/usageplans/{plan['id']}", ops)
    assert r.status == 200, r.body
    assert r.body["throttle"] == {"rateLimit": 50.0, "burstLimit": 20}
    assert r.body["quota"] == {"limit": 2000, "period": "WEEK", "offset": 1}
    assert r.body["name"] == "platinum" and len(r.body["apiStages"]) == 2
    r = admin.call(
        "PATCH",
        f"/usageplans/{plan['id']}",
        {
            "patchOperations": [
                {"op": "remove", "path": "/throttle"},
                {"op": "remove", "path": "/apiStages", "value": "shop:test"},
            ]
        },
    )
    assert r.status == 200 and "throttle" not in r.body and len(r.body["apiStages"]) == 1
    r = admin.call(
        "PATCH", f"/usageplans/{plan['id']}", {"description": "plain", "quota": {"limit": 5, "period": "DAY"}}
    )
    assert r.status == 200 and r.body["description"] == "plain" and r.body["quota"]["limit"] == 5

    assert admin.call("DELETE", f"/usageplans/{plan['id']}").status == 202
    assert_error(
        admin.call("GET", f"/usageplans/{plan['id']}"),
        404,
        "Invalid Usage Plan ID specified",
        "NotFoundException",
    )


def test_plan_keys(admin: AdminThread) -> None:
    plan = create_plan(admin, apiStages=[{"apiId": "shop", "stage": "prod"}])
    key = create_key(admin, "member")
    r = admin.call("POST", f"/usageplans/{plan['id']}/keys", {"keyId": key["id"], "keyType": "API_KEY"})
    assert r.status == 201 and r.body == {"id": key["id"], "type": "API_KEY", "name": "member"}
    r = admin.call("GET", f"/usageplans/{plan['id']}/keys")
    assert r.body == {"items": [{"id": key["id"], "type": "API_KEY", "name": "member"}], "position": None}
    assert admin.call("GET", f"/usageplans/{plan['id']}/keys/{key['id']}").status == 200
    assert admin.call("GET", f"/usageplans?keyId={key['id']}").body["items"][0]["id"] == plan["id"]
    assert admin.store.load_sync().plan_keys == {plan["id"]: [key["id"]]}

    r = admin.call("POST", f"/usageplans/{plan['id']}/keys", {"keyId": key["id"]})
    assert r.status == 409
    assert_error(
        admin.call("POST", f"/usageplans/{plan['id']}/keys", {"keyId": "nokey"}),
        404,
        admin_server.INVALID_KEY,
    )
    assert_error(
        admin.call("POST", "/usageplans/noplan/keys", {"keyId": key["id"]}), 404, admin_server.INVALID_PLAN
    )

    # A key may be in one plan per API stage (AWS), else which plan would limit it?
    other = create_plan(admin, "other", apiStages=[{"apiId": "shop1", "stage": "prod"}])
    r = admin.call("POST", f"/usageplans/{other['id']}/keys", {"keyId": key["id"]})
    assert r.status == 409 and "same API Stage" in r.body["message"]

    assert admin.call("DELETE", f"/usageplans/{plan['id']}/keys/{key['id']}").status == 202
    assert_error(
        admin.call("GET", f"/usageplans/{plan['id']}/keys/{key['id']}"), 404, admin_server.INVALID_PLAN_KEY
    )
    # Deleting a key removes its memberships.
    assert admin.call("POST", f"/usageplans/{other['id']}/keys", {"keyId": key["id"]}).status == 201
    assert admin.call("DELETE", f"/apikeys/{key['id']}").status == 202
    assert admin.call("GET", f"/usageplans/{other['id']}/keys").body["items"] == []


# ---------------------------------------------------------------------- errors
BAD_PAYLOADS = [
    (
        "POST",
        "/usageplans",
        {"name": "p", "throttle": {"rateLimit": "x", "burstLimit": 1}},
        "$.throttle.rateLimit",
    ),
    ("POST", "/usageplans", {"name": "p", "quota": {"limit": 5, "period": "YEAR"}}, "$.quota.period"),
    (
        "POST",
        "/usageplans",
        {"name": "p", "quota": {"limit": 5, "period": "WEEK", "offset": 9}},
        "$.quota.offset",
    ),
    (
        "POST",
        "/usageplans",
        {"name": "p", "apiStages": [{"apiId": "shop", "stage": "nope"}]},
        "$.apiStages[0]",
    ),
    ("POST", "/usageplans", {"name": ""}, "$.name"),
    ("POST", "/apikeys", {"name": "k", "bogus": 1}, "$.bogus"),
    ("POST", "/apikeys", {"name": "k", "value": "short"}, "$.value"),
    ("POST", "/apikeys", {"name": 5}, "$.name"),
    ("POST", "/apikeys", [1, 2], "$"),
    ("POST", "/apikeys", None, "$"),
    (
        "PATCH",
        "/apikeys/{key}",
        {"patchOperations": [{"op": "replace", "path": "/enabled", "value": "maybe"}]},
        "$.patchOperations[0].value",
    ),
    (
        "PATCH",
        "/apikeys/{key}",
        {"patchOperations": [{"op": "replace", "path": "/value", "value": "x"}]},
        "$.patchOperations[0].path",
    ),
    (
        "PATCH",
        "/apikeys/{key}",
        {"patchOperations": [{"op": "delete", "path": "/name"}]},
        "$.patchOperations[0].op",
    ),
    ("PATCH", "/apikeys/{key}", {"enabled": "yes"}, "$.enabled"),
    (
        "PATCH",
        "/usageplans/{plan}",
        {"patchOperations": [{"op": "replace", "path": "/throttle/burstLimit", "value": "lots"}]},
        "$.patchOperations[0].value",
    ),
    (
        "PATCH",
        "/usageplans/{plan}",
        {"patchOperations": [{"op": "replace", "path": "/quota/offset", "value": "30"}]},
        "$.patchOperations[0].value",
    ),
    ("POST", "/usageplans/{plan}/keys", {"keyId": ""}, "$.keyId"),
]


@pytest.mark.parametrize(("method", "path", "body", "where"), BAD_PAYLOADS)
def test_bad_payload_is_400_with_path_and_changes_nothing(
    admin: AdminThread, method: str, path: str, body: Any, where: str
) -> None:
    key = create_key(admin)
    plan = create_plan(
        admin, throttle={"rateLimit": 1, "burstLimit": 1}, quota={"limit": 9, "period": "MONTH"}
    )
    before = admin.store.load_sync()
    r = admin.call(method, path.format(key=key["id"], plan=plan["id"]), body)
    assert r.status == 400, r.body
    assert r.body["path"] == where, r.body
    assert r.header("x-amzn-ErrorType") == "BadRequestException"
    assert admin.store.load_sync() == before


def test_malformed_json(admin: AdminThread) -> None:
    r = admin.call("POST", "/apikeys", raw=b'{"name": "k"')
    assert r.status == 400 and r.body["path"] == "$" and r.body["message"].startswith("Invalid JSON")


def test_unknown_path_and_wrong_method(admin: AdminThread) -> None:
    assert_error(admin.call("GET", "/restapis"), 404, "Not Found")
    assert_error(admin.call("GET", "/apikeys/a/b/c"), 404, "Not Found")
    r = admin.call("PUT", "/apikeys")
    assert r.status == 405 and r.header("allow") == "GET, POST"
    assert admin.call("POST", "/health", token=None).status == 405


def test_config_records_are_read_only(admin: AdminThread, tmp_path: Path) -> None:
    from fastgw.state.sync import apply_config

    config = make_config(
        tmp_path / "state.db",
        apiKeys=[{"name": "cfg", "value": "config-key-value-000000001"}],
        usagePlans=[{"name": "cfgplan", "keys": ["cfg"]}],
    )
    admin.run(apply_config(admin.store, config))
    state = admin.store.load_sync()
    kid, pid = state.keys[0].id, state.plans[0].id
    for method, path, body in (
        ("PATCH", f"/apikeys/{kid}", {"enabled": False}),
        ("DELETE", f"/apikeys/{kid}", None),
        ("POST", f"/apikeys/{kid}/rotate", None),
        ("PATCH", f"/usageplans/{pid}", {"name": "x"}),
        ("DELETE", f"/usageplans/{pid}", None),
        ("DELETE", f"/usageplans/{pid}/keys/{kid}", None),
    ):
        r = admin.call(method, path, body)
        assert r.status == 409 and "config file" in r.body["message"], (method, path, r.body)
    assert admin.store.load_sync() == state
    # An API key may join a config plan.
    key = create_key(admin, "api")
    assert admin.call("POST", f"/usageplans/{pid}/keys", {"keyId": key["id"]}).status == 201


# ---------------------------------------------------------------------- CSV import
def test_csv_import_with_warnings(admin: AdminThread) -> None:
    p1 = create_plan(admin, "p1", apiStages=[{"apiId": "shop", "stage": "prod"}])
    p2 = create_plan(admin, "p2", apiStages=[{"apiId": "shop", "stage": "test"}])
    v1, v2 = "imported-value-000000000001", "imported-value-000000000002"
    csv = (
        "Name,key,description,Enabled,usageplanIds,Extra\r\n"
        f'first,{v1},An imported key,TRUE,"{p1["id"]},{p2["id"]}",x\r\n'
        f"second,{v2},,false,'{p1['id']},nope'\r\n"
        "third,short,,true,\r\n"
        f",{'z' * 30},,,\r\n"
    )
    url = "/apikeys?mode=import&format=csv"
    before = admin.store.load_sync()
    r = admin.call("POST", url + "&failonwarnings=true", raw=csv.encode())
    assert r.status == 400 and len(r.body["warnings"]) == 3
    assert admin.store.load_sync() == before

    r = admin.call("POST", url, raw=csv.encode(), headers={"content-type": "text/csv"})
    assert r.status == 201, r.body
    assert len(r.body["ids"]) == 2 and len(r.body["warnings"]) == 3
    assert any("nope" in w for w in r.body["warnings"])
    assert any(w.startswith("line 4:") for w in r.body["warnings"])
    state = admin.store.load_sync()
    by_name = {k.name: k for k in state.keys}
    assert by_name["first"].source == "import" and by_name["first"].enabled
    assert by_name["first"].description == "An imported key"
    assert by_name["second"].enabled is False
    assert by_name["first"].valueHash == hash_key_value(v1)
    assert sorted(state.plan_keys[p1["id"]]) == sorted([by_name["first"].id, by_name["second"].id])
    assert state.plan_keys[p2["id"]] == [by_name["first"].id]

    # AWS: importing the same value again overwrites the key (same id).
    r = admin.call("POST", url, raw=f"key,name\n{v1},renamed\n".encode())
    assert r.status == 201 and r.body == {"ids": [by_name["first"].id], "warnings": []}
    assert admin.call("GET", f"/apikeys/{by_name['first'].id}").body["name"] == "renamed"

    r = admin.call("POST", url, raw=b"name,description\nx,y\n")
    assert r.status == 400 and "Name and Key" in r.body["message"]
    assert admin.call("POST", "/apikeys?mode=import&format=json", raw=b"x").status == 400


# ---------------------------------------------------------------------- usage
def _day(text: str) -> int:
    return date_day(dt.date.fromisoformat(text))


def test_usage_remaining_across_week_and_month_boundaries(admin: AdminThread) -> None:
    key = create_key(admin)
    # WEEK starting Monday (offset 1). 2024-03-03 is a Sunday, 2024-03-04 a Monday.
    week = create_plan(admin, "week", quota={"limit": 100, "period": "WEEK", "offset": 1})
    month = create_plan(admin, "month", quota={"limit": 1000, "period": "MONTH"})
    free = create_plan(admin, "free")
    for plan in (week, month, free):
        assert admin.call("POST", f"/usageplans/{plan['id']}/keys", {"keyId": key["id"]}).status == 201
    rows = {
        "2024-02-27": 5,
        "2024-02-29": 10,
        "2024-03-01": 20,
        "2024-03-03": 30,
        "2024-03-04": 7,
        "2024-03-05": 1,
    }
    for plan in (week, month, free):
        admin.store.set_usage_many_sync((plan["id"], key["id"], _day(d), n) for d, n in rows.items())
    version = admin.store.version_sync()

    def usage(plan: dict[str, Any], start: str = "2024-02-28", end: str = "2024-03-05") -> list[list[Any]]:
        r = admin.call(
            "GET", f"/usageplans/{plan['id']}/usage?keyId={key['id']}&startDate={start}&endDate={end}"
        )
        assert r.status == 200, r.body
        assert (r.body["usagePlanId"], r.body["startDate"], r.body["endDate"]) == (plan["id"], start, end)
        assert r.body["position"] is None and list(r.body["items"]) == [key["id"]]
        return list(r.body["items"][key["id"]])

    # Week of Mon 02-26 .. Sun 03-03 holds 5+10+20+30; the next week starts on 03-04.
    assert usage(week) == [
        [0, 95],  # 02-28: 5 used on 02-27 counts
        [10, 85],
        [20, 65],
        [0, 65],  # 03-02
        [30, 35],  # 03-03 (Sunday, still the same week)
        [7, 93],  # 03-04 (Monday: a new period)
        [1, 92],
    ]
    # Month: February (leap year) then March.
    assert usage(month) == [[0, 995], [10, 985], [20, 980], [0, 980], [30, 950], [7, 943], [1, 942]]
    # No quota: remaining is null.
    assert usage(free, "2024-03-03", "2024-03-04") == [[30, None], [7, None]]
    # Usage writes do not bump the version (workers do not reload for counters).
    assert admin.store.version_sync() == version

    # Every key of the plan when keyId is omitted.
    r = admin.call("GET", f"/usageplans/{week['id']}/usage?startDate=2024-03-04&endDate=2024-03-04")
    assert r.body["items"] == {key["id"]: [[7, 93]]}


def test_usage_query_errors(admin: AdminThread) -> None:
    plan = create_plan(admin)
    base = f"/usageplans/{plan['id']}/usage"
    r = admin.call("GET", base + "?endDate=2024-01-01")
    assert r.status == 400 and r.body["path"] == "$.startDate"
    assert admin.call("GET", base + "?startDate=2024-13-01&endDate=2024-12-01").status == 400
    assert admin.call("GET", base + "?startDate=2024-02-01&endDate=2024-01-01").status == 400
    r = admin.call("GET", base + "?startDate=2024-01-01&endDate=2024-03-31")  # 91 days
    assert r.status == 400 and "90 days" in r.body["message"]
    assert admin.call("GET", base + "?startDate=2024-01-01&endDate=2024-03-30").status == 200
    r = admin.call("GET", "/usageplans/nope/usage?startDate=2024-01-01&endDate=2024-01-01")
    assert_error(r, 404, admin_server.INVALID_PLAN)
    r = admin.call("GET", base + "?startDate=2024-01-01&endDate=2024-01-01&keyId=nokey")
    assert_error(r, 404, admin_server.INVALID_KEY)


def test_quota_from_rows(admin: AdminThread) -> None:
    key = create_key(admin)
    plan = create_plan(admin, quota={"limit": 50, "period": "DAY"})
    free = create_plan(admin, "free")
    for p in (plan, free):
        admin.call("POST", f"/usageplans/{p['id']}/keys", {"keyId": key["id"]})
    today = day_number(time.time())
    admin.store.set_usage_many_sync(
        [(plan["id"], key["id"], today, 12), (plan["id"], key["id"], today - 1, 40)]
    )
    r = admin.call("GET", f"/usageplans/{plan['id']}/keys/{key['id']}/quota")
    assert r.status == 200
    start = day_date(today)
    assert r.body == {
        "limit": 50,
        "period": "DAY",
        "offset": 0,
        "periodStart": f"{start.isoformat()}T00:00:00Z",
        "periodEnd": f"{(start + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
        "used": 12,
        "remaining": 38,
    }
    r = admin.call("GET", f"/usageplans/{free['id']}/keys/{key['id']}/quota")
    assert r.status == 200 and r.body["limit"] is None and r.body["remaining"] is None
    other = create_key(admin, "outsider")
    assert_error(
        admin.call("GET", f"/usageplans/{plan['id']}/keys/{other['id']}/quota"),
        404,
        admin_server.INVALID_PLAN_KEY,
    )


def test_flush_and_quota_view(tmp_path: Path) -> None:
    """The embedded backend's hooks: flush runs before usage reads and every second; quota_view wins."""
    store = SqliteStore(str(tmp_path / "state.db"))
    calls: list[str] = []
    target: dict[str, str] = {}

    async def flush() -> None:
        calls.append("flush")
        if target:  # the live counter of today, copied into the store
            await store.set_usage(target["plan"], target["key"], day_number(time.time()), 3)

    async def quota_view(plan_id: str, key_id: str) -> dict[str, Any] | None:
        return {"live": True, "plan": plan_id, "key": key_id} if plan_id == target.get("plan") else None

    admin = AdminThread(make_config(tmp_path / "state.db"), store, flush=flush, quota_view=quota_view)
    try:
        key = create_key(admin)
        plan = create_plan(admin, quota={"limit": 10, "period": "DAY"})
        other = create_plan(admin, "other", quota={"limit": 10, "period": "DAY"})
        for p in (plan, other):
            admin.call("POST", f"/usageplans/{p['id']}/keys", {"keyId": key["id"]})
        target.update(plan=plan["id"], key=key["id"])
        today = dt.datetime.now(dt.UTC).date().isoformat()
        r = admin.call("GET", f"/usageplans/{plan['id']}/usage?startDate={today}&endDate={today}")
        assert r.body["items"] == {key["id"]: [[3, 7]]}
        r = admin.call("GET", f"/usageplans/{plan['id']}/keys/{key['id']}/quota")
        assert r.body == {"live": True, "plan": plan["id"], "key": key["id"]}
        r = admin.call("GET", f"/usageplans/{other['id']}/keys/{key['id']}/quota")
        assert r.body["used"] == 0 and r.body["remaining"] == 10
        n = len(calls)
        deadline = time.monotonic() + 3
        while len(calls) == n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) > n, "no background flush within 3 s"
    finally:
        admin.close()


# ---------------------------------------------------------------------- the HTTP server
def _raw(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_keep_alive_and_pipelining(admin: AdminThread) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    one = f"GET /apikeys HTTP/1.1\r\nHost: a\r\n{auth}\r\n".encode()
    last = f"GET /usageplans HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n".encode()
    out = _raw(admin.port, one + one + last)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.rstrip().endswith(b'{"items":[],"position":null}')


def test_body_cap_413(admin: AdminThread) -> None:
    head = (
        f"POST /apikeys HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {admin_server.MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    out = _raw(admin.port, head)
    assert out.startswith(b"HTTP/1.1 413 ") and b"connection: close" in out
    # Chunked bodies are counted as they come.
    head = (
        f"POST /apikeys HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (600 * 1024, b"x" * 600 * 1024)
    out = _raw(admin.port, head.encode() + chunk + chunk)
    assert out.startswith(b"HTTP/1.1 413 ")
    assert admin.store.load_sync().keys == []


def test_garbage_is_400(admin: AdminThread) -> None:
    out = _raw(admin.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def test_header_deadline(admin: AdminThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_server, "HEADER_TIMEOUT", 0.3)
    started = time.monotonic()
    out = _raw(admin.port, b"GET /apikeys HTTP/1.1\r\nHost: a\r\n", timeout=5.0)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3


def test_stop_admin_finishes_in_flight_requests(tmp_path: Path) -> None:
    """A request in progress when the listener stops still gets its answer; new connections are refused."""
    store = SqliteStore(str(tmp_path / "state.db"))

    async def slow_flush() -> None:
        await asyncio.sleep(0.5)

    admin = AdminThread(make_config(tmp_path / "state.db"), store, flush=slow_flush)
    plan_id = create_plan(admin)["id"]
    result: list[Reply] = []
    t = threading.Thread(
        target=lambda: result.append(
            admin.call("GET", f"/usageplans/{plan_id}/usage?startDate=2024-01-01&endDate=2024-01-01")
        )
    )
    t.start()
    try:
        time.sleep(0.2)  # the request is inside its flush now
        admin.close()
    finally:
        t.join(5)
    assert result and result[0].status == 200
    with pytest.raises(OSError):
        socket.create_connection((HOST, admin.port), timeout=1).close()

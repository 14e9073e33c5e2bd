"""Stage-cache invalidation through the admin API, over real HTTP, to the workers' state reload.

``DELETE /restapis/{restapi_id}/stages/{stage_name}/cache/data`` (AWS FlushStageCache) and
``POST .../cache/purge`` (fastgw) record a ``CachePurge`` in the state store; a worker's
``StatePoller`` (on any node) picks it up with its next reload. Also: the ``fastgw cache`` CLI
against an admin process, as production runs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, wait_port

from admin.util import HOST, AdminProcess, AdminThread, Reply, run_cli, write_yaml
from fastgw.admin import server as admin_server
from fastgw.admin.openapi import openapi_document
from fastgw.config.compile import compile_config
from fastgw.config.load import decode_config
from fastgw.config.model import GatewayConfig, RedisSettings
from fastgw.state.model import CachePurge, StateData
from fastgw.state.redis_store import RedisStore
from fastgw.state.sqlite_store import SqliteStore
from fastgw.state.store import POLL_SECONDS, Store
from fastgw.traffic.node import StatePoller

pytestmark = pytest.mark.timeout(30)

MOCK = {"type": "MOCK", "status": 200}
PETS_ID = hashlib.sha1(b"pets").hexdigest()[:10]  # an API without an explicit id


def config_dict(state_path: Path, listen: str = f"{HOST}:0", **state: Any) -> dict[str, Any]:
    """Three APIs: ``shop`` (id shop1; prod, test), ``pets`` (derived id) and an HTTP API."""
    return {
        "gateway": {"admin": {"listen": listen}, "state": {"path": str(state_path), **state}},
        "apis": [
            {
                "name": "shop",
                "id": "shop1",
                "routes": [{"route": "GET /x", "integration": MOCK}],
                "stages": [{"name": "prod"}, {"name": "test"}],
            },
            {
                "name": "pets",
                "routes": [{"route": "GET /pets", "integration": MOCK}],
                "stages": [{"name": "v1"}],
            },
            {
                "name": "hapi",
                "id": "hapi1",
                "kind": "http",
                "routes": [{"route": "GET /items/{id}", "integration": MOCK}],
                "stages": [{"name": "$default"}],
            },
        ],
    }


def make_config(state_path: Path, **state: Any) -> GatewayConfig:
    return decode_config(config_dict(state_path, **state))


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminThread]:
    srv = AdminThread(make_config(tmp_path / "state.db"), SqliteStore(str(tmp_path / "state.db")))
    yield srv
    srv.close()


def purges(admin: AdminThread) -> list[CachePurge]:
    return admin.store.load_sync().cache_purges


def flush(admin: AdminThread, api: str, stage: str, **kw: Any) -> Reply:
    return admin.call("DELETE", f"/restapis/{api}/stages/{stage}/cache/data", **kw)


def purge(admin: AdminThread, api: str, stage: str, body: Any = None, **kw: Any) -> Reply:
    return admin.call("POST", f"/restapis/{api}/stages/{stage}/cache/purge", body, **kw)


def assert_error(r: Reply, status: int, message: str, path: str | None = None) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.body["message"].startswith(message), r.body
    if path is not None:
        assert r.body.get("path") == path, r.body
    if status == 404:
        assert r.header("x-amzn-ErrorType") == "NotFoundException"
    elif status == 400:
        assert r.header("x-amzn-ErrorType") == "BadRequestException"


# ---------------------------------------------------------------------- flush
def test_flush_stage_cache_is_awss_202_without_body(admin: AdminThread) -> None:
    before = admin.store.version_sync()
    t0 = time.time()
    r = flush(admin, "shop1", "prod")
    assert r.status == 202 and r.body is None
    assert r.header("content-length") == "0" and r.header("content-type") is None
    assert r.header("x-amzn-RequestId")
    assert admin.store.version_sync() == before + 1  # every worker reloads
    (p,) = purges(admin)
    assert p == CachePurge(seq=1, stage="shop1:prod", op="flush", at=p.at)
    assert t0 - 1 <= p.at <= time.time() + 1
    # Each flush is a new record, even when nothing changed in between.
    assert flush(admin, "shop1", "prod").status == 202
    assert [x.seq for x in purges(admin)] == [1, 2]


def test_stage_is_named_by_id_name_or_derived_id(admin: AdminThread) -> None:
    assert flush(admin, "shop", "test").status == 202  # the API's name
    assert flush(admin, PETS_ID, "v1").status == 202  # the id derived from the name
    assert flush(admin, "pets", "v1").status == 202
    assert flush(admin, "hapi1", "%24default").status == 202  # "$default", percent-encoded
    assert flush(admin, "hapi1", "$default").status == 202
    stages = [p.stage for p in purges(admin)]
    assert stages == ["shop1:test", f"{PETS_ID}:v1", f"{PETS_ID}:v1", "hapi1:$default", "hapi1:$default"]
    # The stage recorded is the compiled config's stage_uid (what the cache and usage plans use).
    config = decode_config(config_dict(Path("x.db"), f"{HOST}:9001"))
    uids = {r.stage_uid for s in compile_config(config).stages for r in s.routes}
    assert set(stages) <= uids


@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_unknown_api_or_stage_is_404_and_records_nothing(admin: AdminThread, method: str) -> None:
    before = admin.store.version_sync()
    leaf = "data" if method == "DELETE" else "purge"
    body = {"path": "/x"} if method == "POST" else None
    for api, stage, message in (
        ("nope", "prod", "Invalid API identifier specified"),
        ("shop1", "nope", "Invalid Stage identifier specified"),
        ("shop1", "v1", "Invalid Stage identifier specified"),  # pets' stage, not shop's
        ("shop1", "PROD", "Invalid Stage identifier specified"),  # names are case-sensitive
    ):
        r = admin.call(method, f"/restapis/{api}/stages/{stage}/cache/{leaf}", body)
        assert_error(r, 404, message)
    assert admin.store.version_sync() == before and purges(admin) == []


def test_wrong_method_and_missing_token(admin: AdminThread) -> None:
    r = admin.call("GET", "/restapis/shop1/stages/prod/cache/data")
    assert r.status == 405 and r.header("allow") == "DELETE"
    r = admin.call("DELETE", "/restapis/shop1/stages/prod/cache/purge")
    assert r.status == 405 and r.header("allow") == "POST"
    assert admin.call("DELETE", "/restapis/shop1/stages/prod/cache").status == 404
    for r in (
        flush(admin, "shop1", "prod", token=None),
        purge(admin, "shop1", "prod", {"path": "/x"}, token="no"),
    ):
        assert r.status == 401 and r.body == {"message": "Unauthorized"}
    assert purges(admin) == [] and admin.store.version_sync() == 0


# ---------------------------------------------------------------------- purge
def test_purge_by_path_prefix_and_key(admin: AdminThread) -> None:
    r = purge(admin, "shop1", "prod", {"path": "/pets/1"})
    assert r.status == 202
    assert r.body == {
        "seq": 1,
        "stage": "shop1:prod",
        "op": "key",
        "path": "/pets/1",
        "method": "*",
        "key": "",
        "at": r.body["at"],
    }
    assert isinstance(r.body["at"], float)
    r = purge(admin, "shop", "test", {"path": "/pets", "method": "GET", "prefix": True})
    assert r.status == 202
    assert {k: r.body[k] for k in ("seq", "stage", "op", "path", "method")} == {
        "seq": 2,
        "stage": "shop1:test",
        "op": "prefix",
        "path": "/pets",
        "method": "GET",
    }
    r = purge(admin, "shop1", "prod", {"key": "9f86d081884c7d65", "method": "GET"})
    assert r.status == 202 and (r.body["op"], r.body["key"], r.body["path"]) == (
        "key",
        "9f86d081884c7d65",
        "",
    )
    r = purge(admin, "shop1", "prod", {"path": "/pets/{id}", "key": "01036765740a", "prefix": False})
    assert r.status == 202 and (r.body["path"], r.body["key"]) == ("/pets/{id}", "01036765740a")
    # The answers are the stored records, in order.
    stored = purges(admin)
    assert [p.public() for p in stored] == [
        {
            "seq": 1,
            "stage": "shop1:prod",
            "op": "key",
            "path": "/pets/1",
            "method": "*",
            "key": "",
            "at": stored[0].at,
        },
        {
            "seq": 2,
            "stage": "shop1:test",
            "op": "prefix",
            "path": "/pets",
            "method": "GET",
            "key": "",
            "at": stored[1].at,
        },
        {
            "seq": 3,
            "stage": "shop1:prod",
            "op": "key",
            "path": "",
            "method": "GET",
            "key": "9f86d081884c7d65",
            "at": stored[2].at,
        },
        r.body,
    ]
    assert admin.store.version_sync() == 4


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("/pets/./1", "/pets/1"),
        ("//pets//1", "/pets/1"),
        ("/a/%2e%2e/pets", "/pets"),
        ("/p%65ts/", "/pets/"),
        ("/pets%2f1", "/pets%2F1"),
    ],
)
def test_purge_path_is_normalised_as_requests_are(admin: AdminThread, given: str, normal: str) -> None:
    """One parse, one truth: the path is stored in the form the gateway routes and caches on."""
    r = purge(admin, "shop1", "prod", {"path": given, "prefix": True})
    assert r.status == 202, r.body
    assert r.body["path"] == normal and purges(admin)[0].path == normal


@pytest.mark.parametrize(
    ("body", "message", "path"),
    [
        (None, "A JSON request body is required", "$"),
        ({}, "path is required", "$.path"),
        ({"method": "GET"}, "path is required", "$.path"),
        ({"path": "pets"}, "Invalid path: path must start with '/'", "$.path"),
        ({"path": "/a b"}, "Invalid path: invalid character", "$.path"),
        ({"path": "/a%00"}, "Invalid path:", "$.path"),
        ({"path": "/a%zz"}, "Invalid path:", "$.path"),
        ({"path": "/x", "method": "get"}, "Invalid enum value 'get'", "$.method"),
        ({"path": "/x", "method": "ANY"}, "Invalid enum value 'ANY'", "$.method"),
        ({"path": "/x", "prefix": "yes"}, "Expected `bool`, got `str`", "$.prefix"),
        ({"path": 5}, "Expected `str`, got `int`", "$.path"),
        ({"path": "/" + "x" * 2048}, "Expected `str` of length <= 2048", "$.path"),
        ({"path": "/x", "key": "a b"}, "Expected `str` matching regex", "$.key"),
        ({"path": "/x", "key": "abc", "prefix": True}, "key names one cache entry", "$.key"),
        ({"path": "/x", "op": "flush"}, "Object contains unknown field `op`", "$.op"),
        ([], "Expected `object`, got `array`", "$"),
    ],
)
def test_purge_validation(admin: AdminThread, body: Any, message: str, path: str) -> None:
    r = purge(admin, "shop1", "prod", body)
    assert_error(r, 400, message, path)
    assert purges(admin) == [] and admin.store.version_sync() == 0


def test_invalid_json_is_400(admin: AdminThread) -> None:
    r = purge(admin, "shop1", "prod", raw=b'{"path": ', headers={"content-type": "application/json"})
    assert_error(r, 400, "Invalid JSON", "$")


def test_unknown_stage_wins_over_a_bad_body(admin: AdminThread) -> None:
    """As for the other resources: the URL is checked before the payload."""
    assert_error(purge(admin, "nope", "prod", {"path": 5}), 404, "Invalid API identifier specified")


def test_openapi_documents_the_cache_routes(admin: AdminThread) -> None:
    doc = admin.call("GET", "/openapi.json", token=None).body
    assert doc == openapi_document()
    flush_op = doc["paths"]["/restapis/{restapi_id}/stages/{stage_name}/cache/data"]["delete"]
    purge_op = doc["paths"]["/restapis/{restapi_id}/stages/{stage_name}/cache/purge"]["post"]
    assert flush_op["operationId"] == "FlushStageCache" and "202" in flush_op["responses"]
    assert purge_op["operationId"] == "PurgeStageCache"
    assert purge_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CachePurgeRequest"
    )
    for op in (flush_op, purge_op):
        assert [p["name"] for p in op["parameters"]] == ["restapi_id", "stage_name"]
    schemas = doc["components"]["schemas"]
    assert set(schemas["CachePurgeRequest"]["properties"]) == {"path", "method", "prefix", "key"}
    assert set(schemas["CachePurge"]["properties"]) == {"seq", "stage", "op", "path", "method", "key", "at"}
    # Route captures are named as the document's parameters: ROUTES and paths are one list.
    for route in admin_server.ROUTES:
        path = "/" + "/".join(route.pattern)
        assert {m.lower() for m in route.methods} <= set(doc["paths"][path]), path


# ---------------------------------------------------------------------- to the workers
class RecordingGate:
    """Stands in for a worker's Gate: records what StatePoller hands it."""

    def __init__(self) -> None:
        self.states: list[StateData] = []

    def set_state(self, data: StateData) -> None:
        self.states.append(data)


def poll_until(poller: StatePoller, gate: RecordingGate, n: int, timeout: float = 3.0) -> list[CachePurge]:
    """Run the worker's poll loop until it has seen ``n`` purges; return them."""

    async def main() -> list[CachePurge]:
        poller.loop = asyncio.get_running_loop()
        poller.start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if gate.states and len(gate.states[-1].cache_purges) >= n:
                    return gate.states[-1].cache_purges
                await asyncio.sleep(0.02)
            raise AssertionError(f"the poller saw {gate.states[-1:]} after {timeout}s")
        finally:
            await poller.stop()

    return asyncio.run(main())


def test_a_worker_poller_picks_up_purges(admin: AdminThread, tmp_path: Path) -> None:
    """The embedded backend: another process's store on the same file (a worker) reloads."""
    assert flush(admin, "shop1", "prod").status == 202
    assert purge(admin, "shop1", "test", {"path": "/pets", "prefix": True}).status == 202
    gate = RecordingGate()
    store: Store = SqliteStore(str(tmp_path / "state.db"))
    t0 = time.monotonic()
    seen = poll_until(StatePoller(gate, store, None), gate, 2)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < POLL_SECONDS * 4
    assert [(p.seq, p.stage, p.op, p.path) for p in seen] == [
        (1, "shop1:prod", "flush", ""),
        (2, "shop1:test", "prefix", "/pets"),
    ]


def test_purges_reach_every_node_through_redis(redis_url: str, tmp_path: Path) -> None:
    """The Redis backend: the admin API of one node writes, a worker of another node reloads."""
    settings = RedisSettings(url=redis_url, prefix="gw:", timeout_ms=2000)
    config = make_config(tmp_path / "state.db", backend="redis", redis={"url": redis_url, "prefix": "gw:"})
    srv = AdminThread(config, RedisStore(settings))  # type: ignore[arg-type]
    try:
        r = purge(srv, "pets", "v1", {"path": "/pets", "method": "GET"})
        assert r.status == 202 and r.body["stage"] == f"{PETS_ID}:v1"
        assert flush(srv, "shop1", "prod").status == 202
    finally:
        srv.close()
    gate = RecordingGate()
    seen = poll_until(StatePoller(gate, RedisStore(settings), None), gate, 2)  # type: ignore[arg-type]
    assert [(p.seq, p.stage, p.op, p.path, p.method) for p in seen] == [
        (1, f"{PETS_ID}:v1", "key", "/pets", "GET"),
        (2, "shop1:prod", "flush", "", "*"),
    ]
    assert gate.states[-1].version == 2


# ---------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """An admin process (generated token next to its state file) and its config in ./fastgw.yaml."""
    tmp = tmp_path_factory.mktemp("cache-cli")
    port = free_port()
    write_yaml(tmp / "fastgw.yaml", config_dict(tmp / "state.db", f"{HOST}:{port}"))
    proc = AdminProcess(tmp / "fastgw.yaml", token=None)
    try:
        wait_port(HOST, port, 10)
        yield tmp, port
    finally:
        code = proc.stop()
        err = proc.stderr()
        assert code == 0, err


def cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("cache", *args, cwd=tmp)


def test_cli_flush_and_purge(running: tuple[Path, int]) -> None:
    tmp, _ = running
    store = SqliteStore(str(tmp / "state.db"))
    first = len(store.load_sync().cache_purges)

    out = cli(tmp, "flush", "--api", "shop1", "--stage", "prod")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flush of shop1:prod accepted")
    out = cli(tmp, "flush", "--api", "pets", "--stage", "v1", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"restApiId": "pets", "stageName": "v1", "flushed": True}

    out = cli(
        tmp, "purge", "--api", "shop1", "--stage", "test", "--path", "/pets", "--method", "get", "--prefix"
    )
    assert out.returncode == 0, out.stderr
    assert "of shop1:test accepted: GET /pets*" in out.stdout
    out = cli(tmp, "purge", "--api", "hapi1", "--stage", "$default", "--path", "/items/7", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {k: doc[k] for k in ("stage", "op", "path", "method")} == {
        "stage": "hapi1:$default",
        "op": "key",
        "path": "/items/7",
        "method": "*",
    }
    out = cli(tmp, "purge", "--api", "shop1", "--stage", "prod", "--key", "9f86d081884c7d65")
    assert out.returncode == 0 and "accepted: key 9f86d081884c7d65" in out.stdout, out.stderr

    stored = store.load_sync().cache_purges[first:]
    assert [(p.stage, p.op, p.path, p.method, p.key) for p in stored] == [
        ("shop1:prod", "flush", "", "*", ""),
        (f"{PETS_ID}:v1", "flush", "", "*", ""),
        ("shop1:test", "prefix", "/pets", "GET", ""),
        ("hapi1:$default", "key", "/items/7", "*", ""),
        ("shop1:prod", "key", "", "*", "9f86d081884c7d65"),
    ]
    assert doc["seq"] == stored[3].seq
    store.close_sync()


def test_cli_errors(running: tuple[Path, int], tmp_path: Path) -> None:
    tmp, port = running
    out = cli(tmp, "flush", "--api", "nope", "--stage", "prod")
    assert out.returncode == 1 and "404 Invalid API identifier specified" in out.stderr
    out = cli(tmp, "purge", "--api", "shop1", "--stage", "nope", "--path", "/x")
    assert out.returncode == 1 and "404 Invalid Stage identifier specified" in out.stderr
    out = cli(tmp, "purge", "--api", "shop1", "--stage", "prod")
    assert out.returncode == 1 and "400 path is required" in out.stderr and "(at $.path)" in out.stderr
    out = cli(tmp, "purge", "--api", "shop1", "--stage", "prod", "--path", "/x", "--key", "k", "--prefix")
    assert out.returncode == 1 and "(at $.key)" in out.stderr
    out = cli(tmp, "purge", "--api", "shop1", "--stage", "prod", "--path", "/x", "--method", "FETCH")
    assert out.returncode == 2 and "invalid choice" in out.stderr  # argparse
    out = cli(tmp, "flush", "--stage", "prod")
    assert out.returncode == 2 and "--api" in out.stderr
    out = run_cli(
        "cache",
        "flush",
        "--api",
        "shop1",
        "--stage",
        "prod",
        "--admin",
        f"http://{HOST}:{port}",
        "--token",
        "x",
        cwd=tmp_path,
    )
    assert out.returncode == 1 and "401 Unauthorized" in out.stderr
    out = run_cli(
        "cache",
        "flush",
        "--api",
        "a",
        "--stage",
        "s",
        "--admin",
        f"http://{HOST}:{free_port()}",
        "--token",
        "t",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "connection refused" in out.stderr

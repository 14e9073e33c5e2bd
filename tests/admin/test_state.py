"""The SQLite store, config sync and the admin token (no HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from admin.util import REPO, env_for_child, make_config
from fastgw.admin.token import (
    GENERATED_TOKEN_NAME,
    TOKEN_ENV,
    check_listen,
    read_token_for_cli,
    resolve_token,
    token_is_explicit,
)
from fastgw.config.model import AdminSettings
from fastgw.state.model import ApiKey, DuplicateValueError, UsagePlan, hash_key_value, stable_id
from fastgw.state.sqlite_store import SqliteStore
from fastgw.state.sync import apply_config

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def key(kid: str, value: str, **kw: Any) -> ApiKey:
    return ApiKey(id=kid, name=kid, valueHash=hash_key_value(value), valuePrefix=value[:5], **kw)


# ---------------------------------------------------------------------- SqliteStore
def test_version_bump_rules(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "deep" / "dir" / "state.db"))  # parents are created

    async def scenario() -> list[tuple[str, int]]:
        steps: list[tuple[str, int]] = [("start", await store.version())]

        async def step(name: str, coro: Coroutine[Any, Any, Any]) -> None:
            await coro
            steps.append((name, await store.version()))

        await step("put_key", store.put_key(key("k1", "v" * 20)))
        await step("put_key again", store.put_key(key("k1", "v" * 20, enabled=False)))
        await step("put_plan", store.put_plan(UsagePlan(id="p1", name="p")))
        await step("add_plan_key", store.add_plan_key("p1", "k1"))
        await step("add_plan_key dup", store.add_plan_key("p1", "k1"))
        await step("set_usage", store.set_usage("p1", "k1", 100, 5))
        await step("remove_plan_key", store.remove_plan_key("p1", "k1"))
        await step("remove_plan_key unknown", store.remove_plan_key("p1", "k1"))
        await step("delete_key unknown", store.delete_key("nope"))
        await step("delete_plan", store.delete_plan("p1"))
        await step("delete_key", store.delete_key("k1"))
        await store.close()
        return steps

    steps = dict(run(scenario()))
    assert steps == {
        "start": 0,
        "put_key": 1,
        "put_key again": 2,
        "put_plan": 3,
        "add_plan_key": 4,
        "add_plan_key dup": 4,  # nothing changed
        "set_usage": 4,  # usage never bumps
        "remove_plan_key": 5,
        "remove_plan_key unknown": 5,
        "delete_key unknown": 5,
        "delete_plan": 6,
        "delete_key": 7,
    }


def test_store_contract(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))

    async def scenario() -> None:
        await store.open()
        a, b = key("ka", "value-a" * 4), key("kb", "value-b" * 4)
        await store.put_key(a)
        await store.put_key(b)
        with pytest.raises(DuplicateValueError):
            await store.put_key(key("kc", "value-a" * 4))
        assert await store.get_key("kc") is None
        assert await store.key_by_hash(a.valueHash) == a
        assert [k.id for k in await store.list_keys()] == ["ka", "kb"]
        await store.put_plan(UsagePlan(id="p", name="p"))
        await store.add_plan_key("p", "ka")
        await store.add_plan_key("p", "kb")
        assert await store.plan_key_ids("p") == ["ka", "kb"]
        await store.set_usage("p", "ka", 10, 1)
        await store.set_usage("p", "ka", 10, 4)  # absolute, not added
        await store.set_usage("p", "ka", 12, 2)
        await store.set_usage("p", "kb", 11, 7)
        assert await store.usage("p", None, 10, 11) == {"ka": {10: 4}, "kb": {11: 7}}
        assert await store.usage("p", ["ka"], 0, 99) == {"ka": {10: 4, 12: 2}}
        assert await store.usage("p", [], 0, 99) == {}
        state = await store.load()
        assert state.version == await store.version() == 5
        assert state.plan_keys == {"p": ["ka", "kb"]}
        assert await store.delete_key("ka")
        assert await store.plan_key_ids("p") == ["kb"]
        assert await store.usage("p", None, 0, 99) == {"kb": {11: 7}}
        assert await store.delete_plan("p")
        assert (await store.load()).plan_keys == {}
        await store.close()

    run(scenario())


WRITER = """
import asyncio, os, sys, time
from fastgw.state.model import ApiKey, UsagePlan, hash_key_value
from fastgw.state.sqlite_store import SqliteStore

path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqliteStore(path)
store.open_sync()
open(path + "." + tag + ".ready", "w").close()
while not os.path.exists(path + ".go"):  # both writers start together
    time.sleep(0.005)

async def main():
    await store.put_plan(UsagePlan(id="p-" + tag, name=tag))
    last = -1
    for i in range(n):
        kid = f"{tag}{i}"
        await store.put_key(ApiKey(id=kid, name=kid, valueHash=hash_key_value(f"value-{kid}-" + "x" * 20)))
        await store.add_plan_key("p-" + tag, kid)
        await store.set_usage("p-" + tag, kid, i, i)
        state = await store.load()
        assert state.version >= last, (state.version, last)
        last = state.version
        # A snapshot is consistent: every member it lists is a key it has.
        ids = {k.id for k in state.keys}
        assert all(m in ids for ms in state.plan_keys.values() for m in ms)
    await store.close()

asyncio.run(main())
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, tag, str(n)],
            cwd=str(REPO),
            env=env_for_child(),
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while not all(os.path.exists(f"{path}.{tag}.ready") for tag in ("a", "b")):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        Path(path + ".go").touch()
    finally:
        for p in procs:
            try:
                _, err = p.communicate(timeout=25)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode != 0:
                errors.append(err.decode())
    assert not errors, errors
    store = SqliteStore(path)
    state = store.load_sync()
    store.close_sync()
    assert len(state.keys) == 2 * n
    assert sorted(state.plan_keys) == ["p-a", "p-b"] and all(len(v) == n for v in state.plan_keys.values())
    # Every write of a key, a plan or a membership bumped the version exactly once.
    assert state.version == 2 * (1 + 2 * n)


FORKER = """
import os, sys
from fastgw.state.model import ApiKey, hash_key_value
from fastgw.state.sqlite_store import SqliteStore

store = SqliteStore(sys.argv[1])
store.put_key_sync(ApiKey(id="k1", name="k1", valueHash=hash_key_value("v" * 20)))
pid = os.fork()
if pid == 0:
    code = 1
    try:
        store.put_key_sync(ApiKey(id="k2", name="k2", valueHash=hash_key_value("w" * 20)))
        code = 0 if store.version_sync() == 2 else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert store.version_sync() == 2 and len(store.load_sync().keys) == 2
store.put_key_sync(ApiKey(id="k3", name="k3", valueHash=hash_key_value("x" * 20)))
store.close_sync()
print("ok")
"""


def test_fork_gets_its_own_connection(tmp_path: Path) -> None:
    """The supervisor seeds the store, then forks workers: a child must not reuse the parent's connection."""
    out = subprocess.run(
        [sys.executable, "-c", FORKER, str(tmp_path / "state.db")],
        cwd=str(REPO),
        env=env_for_child(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------- apply_config
KV1, KV2, KV3 = "config-value-0000000000001", "config-value-0000000000002", "config-value-0000000000003"


def test_apply_config_upserts_removes_and_is_idempotent(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    first = make_config(
        tmp_path / "state.db",
        apiKeys=[
            {"name": "alice", "value": KV1},
            {"name": "bob", "value": KV2, "id": "bobid", "enabled": False},
        ],
        usagePlans=[
            {
                "name": "gold",
                "quota": {"limit": 10, "period": "DAY"},
                "apiStages": [{"apiId": "shop", "stage": "prod"}],
                "keys": ["alice", "bob"],
            },
            {"name": "old", "id": "oldplan"},
        ],
    )
    second = make_config(
        tmp_path / "state.db",
        apiKeys=[{"name": "alice", "value": KV1, "description": "changed"}],
        usagePlans=[{"name": "gold", "quota": {"limit": 20, "period": "DAY"}, "keys": ["alice"]}],
    )

    async def scenario() -> None:
        # An API-created key and plan, which config sync must leave alone.
        await store.put_key(ApiKey(id="apikey", name="api", valueHash=hash_key_value(KV3), source="api"))
        await store.put_plan(UsagePlan(id="apiplan", name="api"))
        await apply_config(store, first)
        state = await store.load()
        alice, gold = stable_id("k", "alice"), stable_id("p", "gold")
        assert alice == "k" + hashlib.sha256(b"alice").hexdigest()[:9]
        by_id = {k.id: k for k in state.keys}
        assert set(by_id) == {"apikey", alice, "bobid"}
        assert by_id[alice].source == "config" and by_id[alice].valuePrefix == KV1[:5]
        assert by_id[alice].valueHash == hash_key_value(KV1) and by_id["bobid"].enabled is False
        assert {p.id for p in state.plans} == {"apiplan", gold, "oldplan"}
        assert sorted(state.plan_keys[gold]) == sorted([alice, "bobid"])
        # The API key joins the config plan through the admin API.
        await store.add_plan_key(gold, "apikey")

        version = await store.version()
        await apply_config(store, first)  # same config: no write, no version bump
        assert await store.version() == version

        await apply_config(store, second)
        state = await store.load()
        by_id = {k.id: k for k in state.keys}
        assert set(by_id) == {"apikey", alice}  # bob left the config
        assert by_id[alice].description == "changed"
        assert by_id[alice].createdDate == {k.id: k for k in (await store.list_keys())}[alice].createdDate
        assert {p.id for p in state.plans} == {"apiplan", gold}  # "old" left the config
        plan = next(p for p in state.plans if p.id == gold)
        assert plan.quota is not None and plan.quota.limit == 20 and plan.apiStages == []
        assert sorted(state.plan_keys[gold]) == sorted([alice, "apikey"])  # API membership kept
        version = await store.version()
        await apply_config(store, second)
        assert await store.version() == version
        await store.close()

    run(scenario())


def test_apply_config_rejects_clashes_without_writing(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))

    async def scenario() -> None:
        await store.put_key(ApiKey(id="apikey", name="api", valueHash=hash_key_value(KV3), source="api"))
        await store.put_plan(UsagePlan(id="apiplan", name="api"))
        version = await store.version()
        cases = [
            ({"apiKeys": [{"name": "a", "value": KV1}, {"name": "b", "value": KV3}]}, "$.apiKeys[1].value"),
            ({"apiKeys": [{"name": "a", "value": KV1, "id": "apikey"}]}, "$.apiKeys[0].id"),
            ({"apiKeys": [{"name": "a", "value": KV1}, {"name": "b", "value": KV1}]}, "$.apiKeys[1].value"),
            ({"usagePlans": [{"name": "p", "id": "apiplan"}]}, "$.usagePlans[0].id"),
            ({"usagePlans": [{"name": "p", "keys": ["ghost"]}]}, "$.usagePlans[0].keys[0]"),
        ]
        for extra, where in cases:
            with pytest.raises(ValueError) as info:
                await apply_config(store, make_config(tmp_path / "state.db", **extra))
            assert str(info.value).startswith(where + ":"), (where, str(info.value))
        assert await store.version() == version
        # A config key renamed (same value, new name => new id) moves the value over.
        await apply_config(store, make_config(tmp_path / "state.db", apiKeys=[{"name": "a", "value": KV1}]))
        await apply_config(store, make_config(tmp_path / "state.db", apiKeys=[{"name": "b", "value": KV1}]))
        found = await store.key_by_hash(hash_key_value(KV1))
        assert found is not None and found.id == stable_id("k", "b")
        await store.close()

    run(scenario())


# ---------------------------------------------------------------------- token
def test_generated_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    state = tmp_path / "var" / "state.db"
    settings = AdminSettings()
    token, path = resolve_token(settings, str(state))
    assert path == str(tmp_path / "var" / GENERATED_TOKEN_NAME)
    assert len(token) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Path(path).read_text().strip() == token
    assert not token_is_explicit(settings)
    # Reused across restarts (the admin process, the supervisor and the CLI agree).
    assert resolve_token(settings, str(state)) == (token, path)
    config = make_config(state)
    assert read_token_for_cli(config) == token
    # A file others can read is not trusted: a new token replaces it, private again.
    os.chmod(path, 0o644)
    token2, _ = resolve_token(settings, str(state))
    assert token2 != token and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_explicit_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token_file = tmp_path / "admin.token"
    token_file.write_text("  from-file-token \n")
    settings = AdminSettings(token_file=str(token_file))
    assert resolve_token(settings, str(tmp_path / "s.db")) == ("from-file-token", None)
    assert token_is_explicit(settings)
    assert not (tmp_path / GENERATED_TOKEN_NAME).exists()
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(settings, str(tmp_path / "s.db")) == ("from-env", None)
    assert read_token_for_cli(None) == "from-env"
    monkeypatch.delenv(TOKEN_ENV)
    token_file.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        resolve_token(settings, str(tmp_path / "s.db"))
    with pytest.raises(ValueError, match="cannot read"):
        resolve_token(AdminSettings(token_file=str(tmp_path / "missing")), str(tmp_path / "s.db"))


@pytest.mark.parametrize(
    ("listen", "explicit", "ok"),
    [
        ("127.0.0.1:9001", False, True),
        ("localhost:9001", False, True),
        ("[::1]:9001", False, True),
        ("0.0.0.0:9001", False, False),
        ("10.1.2.3:9001", False, False),
        ("admin.example:9001", False, False),
        ("0.0.0.0:9001", True, True),
    ],
)
def test_non_loopback_listen_needs_an_explicit_token(listen: str, explicit: bool, ok: bool) -> None:
    settings = AdminSettings(listen=listen)
    if ok:
        check_listen(settings, explicit)
    else:
        with pytest.raises(ValueError, match="not a loopback address"):
            check_listen(settings, explicit)

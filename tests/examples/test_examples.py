"""The examples/ folder, end to end: one real gateway started with examples/functions.yaml.

What is checked is what the examples' README promises: the notes API over HTTP (REST, payload
1.0), the TOKEN authorizer in front of its writes (401, 403, the principal reaching the
handler), the HTTP API (payload 2.0, async handler) behind the hmac-signature plugin, and that
the config validates. Secrets are read from the example config itself.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
import yaml

from tests.helpers import REPO, GatewayFactory, RawConn


def load_example(name: str) -> ModuleType:
    """An examples/ module, by path: in this process ``examples`` is the tests/examples package."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Config's annotations through it
    spec.loader.exec_module(module)
    return module


CONFIG_PATH = REPO / "examples" / "functions.yaml"
CONFIG_TEXT = CONFIG_PATH.read_text()
CONFIG: dict[str, Any] = yaml.safe_load(CONFIG_TEXT)
TOKEN_SECRET: str = CONFIG["functions"]["bearer-authorizer"]["environment"]["NOTES_TOKEN_SECRET"]
HMAC_SECRET: str = CONFIG["apis"][1]["plugins"][0]["config"]["secret"]


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Any:
    # The example file as it is; the test harness chooses the ports and the state file.
    return module_gateway_factory(CONFIG_TEXT)


def call(
    port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Any:
    with RawConn(port) as c:
        return c.request(method, target, headers=list((headers or {}).items()), body=body)


# Clients, written from the formats the examples document (not with the examples' own code).
def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_token(user: str, role: str, ttl: int = 3600, secret: str = TOKEN_SECRET) -> str:
    payload = f"{user}:{role}:{int(time.time()) + ttl}"
    return f"{payload}:{hmac_hex(secret, payload.encode())}"


def bearer(user: str = "alice", role: str = "editor", ttl: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, role, ttl)}"}


def sign_request(secret: str, method: str, target: str, stamp: str, body: bytes = b"") -> str:
    return "sha256=" + hmac_hex(secret, f"{method}\n{target}\n{stamp}\n".encode() + body)


def signed(method: str, target: str, body: bytes = b"", ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-Timestamp": stamp, "X-Signature": sign_request(HMAC_SECRET, method, target, stamp, body)}


JSON = {"Content-Type": "application/json"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------------------ the config
def test_the_example_config_validates() -> None:
    out = run_cli("fastgw", "validate", "examples/functions.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK (2 API(s), 2 stage(s), 8 route(s))" in out.stdout


def test_a_missing_secret_env_refuses_the_config(tmp_path: Path) -> None:
    cfg = yaml.safe_load(CONFIG_TEXT)
    cfg["apis"][1]["plugins"][0]["config"] = {"secret_env": "FASTGW_EXAMPLE_UNSET_SECRET"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = run_cli("fastgw", "validate", str(path))
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "$.apis[1].plugins[0].config" in text
    assert "FASTGW_EXAMPLE_UNSET_SECRET is not set" in text


# ------------------------------------------------------------------------ the notes API (REST)
def test_create_list_get_delete(gw: Any) -> None:
    body = json.dumps({"text": "buy milk", "tags": ["home"]}).encode()
    r = call(gw.port, "POST", "/prod/notes", {**bearer("alice"), **JSON}, body)
    assert r.status == 201, r.body
    note = r.json()
    assert note["text"] == "buy milk" and note["tags"] == ["home"]
    assert note["owner"] == "alice"  # the authorizer's principalId, as the handler saw it
    assert r.header("Location") == f"/prod/notes/{note['id']}"

    r = call(gw.port, "GET", "/prod/notes")
    assert r.status == 200 and r.header("content-type") == "application/json"
    assert note in r.json()["notes"]
    r = call(gw.port, "GET", f"/prod/notes/{note['id']}")
    assert r.status == 200 and r.json() == note

    assert call(gw.port, "DELETE", f"/prod/notes/{note['id']}", bearer()).status == 204
    assert call(gw.port, "DELETE", f"/prod/notes/{note['id']}", bearer()).status == 404


def test_unknown_note_is_404(gw: Any) -> None:
    r = call(gw.port, "GET", "/prod/notes/does-not-exist")
    assert r.status == 404 and r.json() == {"message": "note not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "a JSON body is required"),
        (b"{not json", "the body is not valid JSON"),
        (b'["a list"]', "the body must be a JSON object"),
        (b'{"text": ""}', "'text' must be a non-empty string"),
        (b'{"text": "x", "colour": "red"}', "unknown field(s): colour"),
        (b'{"text": "x", "tags": "not-a-list"}', "'tags' must be a list"),
    ],
)
def test_invalid_notes_are_400(gw: Any, body: bytes, message: str) -> None:
    r = call(gw.port, "POST", "/prod/notes", {**bearer(), **JSON}, body)
    assert r.status == 400
    assert r.json()["message"].startswith(message)


# ----------------------------------------------------------------------------- the authorizer
def test_no_token_is_401(gw: Any) -> None:
    r = call(gw.port, "POST", "/prod/notes", JSON, b'{"text": "x"}')
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'


@pytest.mark.parametrize(
    "token",
    [
        # Refused by identityValidationExpression, before the function is called.
        pytest.param("Bearer nonsense", id="malformed"),
        pytest.param("Bearer alice:editor:9999999999:" + "0" * 64, id="bad-signature"),
        pytest.param("Basic " + make_token("alice", "editor"), id="wrong-scheme"),
    ],
)
def test_bad_tokens_are_401(gw: Any, token: str) -> None:
    r = call(gw.port, "POST", "/prod/notes", {"Authorization": token, **JSON}, b'{"text": "x"}')
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'


def test_expired_token_is_401(gw: Any) -> None:
    r = call(gw.port, "POST", "/prod/notes", {**bearer(ttl=-10), **JSON}, b'{"text": "x"}')
    assert r.status == 401


def test_viewer_is_denied_writes(gw: Any) -> None:
    r = call(gw.port, "POST", "/prod/notes", {**bearer("bob", "viewer"), **JSON}, b'{"text": "x"}')
    assert r.status == 403
    assert r.json() == {"Message": "User is not authorized to access this resource with an explicit deny"}
    assert r.header("x-amzn-ErrorType") == "AccessDeniedException"
    # The viewer's policy covers the whole stage: DELETE is denied as well.
    assert call(gw.port, "DELETE", "/prod/notes/x", bearer("bob", "viewer")).status == 403


def test_unknown_role_is_denied(gw: Any) -> None:
    r = call(gw.port, "POST", "/prod/notes", {**bearer("eve", "intruder"), **JSON}, b'{"text": "x"}')
    assert r.status == 403


# ---------------------------------------------------------- the HTTP API behind hmac-signature
def test_signed_requests_pass_and_responses_are_signed(gw: Any) -> None:
    body = b'{"text": "from a signed client"}'
    headers = signed("POST", "/notes", body)
    r = call(gw.port, "POST", "/notes", {**headers, **JSON}, body)
    assert r.status == 201, r.body
    note = r.json()
    assert note["owner"] is None and r.header("Location") == f"/notes/{note['id']}"
    expected = hmac_hex(HMAC_SECRET, headers["X-Timestamp"].encode() + b"\n" + r.body)
    assert r.header("X-Response-Signature") == f"sha256={expected}"

    r = call(gw.port, "GET", f"/notes/{note['id']}", signed("GET", f"/notes/{note['id']}"))
    assert r.status == 200 and r.json() == note
    # GET /notes returns no statusCode: payload 2.0 infers 200 and application/json.
    r = call(gw.port, "GET", "/notes?limit=5", signed("GET", "/notes?limit=5"))
    assert r.status == 200 and r.header("content-type") == "application/json"
    assert note in r.json()["notes"]
    r = call(gw.port, "GET", "/notes/nope", signed("GET", "/notes/nope"))
    assert r.status == 404


def test_both_apis_share_the_worker_memory(gw: Any) -> None:
    r = call(gw.port, "POST", "/prod/notes", {**bearer("carol"), **JSON}, b'{"text": "shared"}')
    note = r.json()
    target = f"/notes/{note['id']}"
    assert call(gw.port, "GET", target, signed("GET", target)).json() == note


def test_unsigned_request_is_401(gw: Any) -> None:
    r = call(gw.port, "GET", "/notes")
    assert r.status == 401 and r.json() == {"message": "Missing X-Signature or X-Timestamp"}
    r = call(gw.port, "GET", "/notes", {"X-Timestamp": "soon", "X-Signature": "sha256=00"})
    assert r.status == 401 and r.json() == {"message": "Malformed X-Signature or X-Timestamp"}


def test_bad_signature_is_403(gw: Any) -> None:
    body = b'{"text": "tampered"}'
    headers = signed("POST", "/notes", b'{"text": "original"}')
    r = call(gw.port, "POST", "/notes", {**headers, **JSON}, body)
    assert r.status == 403 and r.json() == {"message": "Signature mismatch"}
    # Signed for another path, or with another secret.
    r = call(gw.port, "GET", "/notes", signed("GET", "/notes/other"))
    assert r.status == 403
    stamp = str(int(time.time()))
    wrong = sign_request("another-secret-entirely", "GET", "/notes", stamp)
    other = {"X-Timestamp": stamp, "X-Signature": wrong}
    assert call(gw.port, "GET", "/notes", other).status == 403


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_timestamp_is_403(gw: Any, offset: int) -> None:
    r = call(gw.port, "GET", "/notes", signed("GET", "/notes", ts=int(time.time()) + offset))
    assert r.status == 403 and r.json() == {"message": "Signature expired"}


def test_plugin_disabled_on_health(gw: Any) -> None:
    r = call(gw.port, "GET", "/health")
    assert r.status == 200 and r.json() == {"ok": True}
    assert r.header("X-Response-Signature") is None


# ------------------------------------------------------------------- the modules, in process
def test_token_cli_prints_a_valid_token(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"NOTES_TOKEN_SECRET": "s"}
    out = run_cli("examples.token_authorizer", "dave", "viewer", "--ttl", "60", env=env)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    user, role, expiry, signature = token.split(":")
    assert (user, role) == ("dave", "viewer") and 0 < int(expiry) - time.time() <= 60
    assert signature == hmac_hex("s", f"dave:viewer:{expiry}".encode())
    authorizer = load_example("token_authorizer")
    monkeypatch.setenv("NOTES_TOKEN_SECRET", "s")
    assert authorizer.verify_token(token) == ("dave", "viewer", int(expiry))
    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.verify_token(token, now=int(expiry))
    monkeypatch.delenv("NOTES_TOKEN_SECRET")
    with pytest.raises(RuntimeError, match="NOTES_TOKEN_SECRET is not set"):  # a 500, not a 401
        authorizer.verify_token(token)


def test_authorizer_policy_covers_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load_example("token_authorizer")
    monkeypatch.setenv("NOTES_TOKEN_SECRET", "s")
    arn = "arn:aws:execute-api:us-east-1:123456789012:notes00001/prod/POST/notes"
    event = {"type": "TOKEN", "authorizationToken": f"Bearer {make_token('bob', 'viewer', secret='s')}"}
    out = authorizer.handler({**event, "methodArn": arn}, None)
    assert out["principalId"] == "bob"
    assert out["context"] == {"user": "bob", "role": "viewer", "expiresAt": out["context"]["expiresAt"]}
    stage = "arn:aws:execute-api:us-east-1:123456789012:notes00001/prod"
    assert out["policyDocument"]["Statement"][:2] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{stage}/GET/*"},
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": f"{stage}/POST/*"},
    ]


def test_plugin_config_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = load_example("hmac_plugin")
    HmacConfig, HmacSignature = plugin.HmacConfig, plugin.HmacSignature
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert({}, HmacConfig)
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert({"secret": "s" * 16, "secret_env": "X"}, HmacConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"secret": "s" * 16, "max_skew_seconds": 0}, HmacConfig)
    monkeypatch.delenv("FASTGW_EXAMPLE_SECRET", raising=False)
    conf = msgspec.convert({"secret_env": "FASTGW_EXAMPLE_SECRET"}, HmacConfig)
    with pytest.raises(ValueError, match="FASTGW_EXAMPLE_SECRET is not set"):
        HmacSignature(conf)
    monkeypatch.setenv("FASTGW_EXAMPLE_SECRET", "from-the-environment")
    assert HmacSignature(conf).key == b"from-the-environment"

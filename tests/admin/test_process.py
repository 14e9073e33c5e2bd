"""The admin API as production runs it: ``run_admin_process`` in its own process, and the CLI."""

from __future__ import annotations

import csv
import io
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, wait_port

from admin.util import HOST, TOKEN, AdminProcess, Reply, call, config_dict, env_for_child, run_cli, write_yaml
from fastgw.admin.token import GENERATED_TOKEN_NAME

pytestmark = pytest.mark.timeout(30)


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    port = free_port()
    config = write_yaml(tmp_path / "fastgw.yaml", config_dict(tmp_path / "state.db", f"{HOST}:{port}"))
    proc = AdminProcess(config, slow_flush=0.6)  # every usage read awaits a 0.6 s flush
    try:
        wait_port(HOST, port, 10)
        r = call(port, "POST", "/usageplans", {"name": "p"})
        assert r.status == 201
        plan_id = r.body["id"]
        assert call(port, "GET", "/apikeys", token="wrong").status == 401
        result: list[Reply] = []
        t = threading.Thread(
            target=lambda: result.append(
                call(port, "GET", f"/usageplans/{plan_id}/usage?startDate=2024-01-01&endDate=2024-01-01")
            )
        )
        t.start()
        time.sleep(0.3)  # the request waits in its flush
        proc.proc.send_signal(signal.SIGTERM)
        t.join(5)
        assert result and result[0].status == 200, result
        assert proc.proc.wait(6) == 0
    finally:
        code = proc.stop()
        err = proc.stderr()
    assert code == 0, err
    assert "admin API draining" in err and "SIGTERM" in err
    assert TOKEN not in err  # the token is never logged
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1).close()


def test_non_loopback_listen_without_explicit_token_is_refused(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "fastgw.yaml", config_dict(tmp_path / "state.db", f"0.0.0.0:{free_port()}")
    )
    proc = AdminProcess(config, token=None)
    code = proc.proc.wait(10)
    err = proc.stderr()
    assert code != 0 and "not a loopback address" in err
    assert not (tmp_path / GENERATED_TOKEN_NAME).exists()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """An admin process whose token is generated (next to its state file), for the CLI tests."""
    tmp = tmp_path_factory.mktemp("cli")
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
    """``python -m fastgw ...`` in the config's directory: ./fastgw.yaml gives the URL and the token."""
    return run_cli(*args, cwd=tmp)


def test_cli_end_to_end(running: tuple[Path, int]) -> None:
    tmp, port = running
    token = (tmp / GENERATED_TOKEN_NAME).read_text().strip()
    assert (tmp / GENERATED_TOKEN_NAME).stat().st_mode & 0o777 == 0o600

    out = cli(
        tmp,
        "plans",
        "create",
        "--name",
        "gold",
        "--rate",
        "10",
        "--burst",
        "20",
        "--quota-limit",
        "100",
        "--quota-period",
        "WEEK",
        "--quota-offset",
        "1",
        "--stage",
        "shop:prod",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["quota"] == {"limit": 100, "period": "WEEK", "offset": 1} and plan["fail_open"] is True

    out = cli(tmp, "keys", "create", "--name", "alice", "--description", "d", "--plan", plan["id"])
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines())
    key_id, value = lines["id"].strip(), lines["value"].strip()
    assert len(value) == 40 and "shown only this once" in out.stderr
    # The CLI talked to the admin API the config points at, with the generated token.
    r = call(port, "GET", f"/usageplans/{plan['id']}/keys", token=token)
    assert r.body["items"] == [{"id": key_id, "type": "API_KEY", "name": "alice"}]

    out = cli(tmp, "keys", "list")
    assert (
        out.returncode == 0 and key_id in out.stdout and value[:5] in out.stdout and value not in out.stdout
    )
    assert out.stdout.splitlines()[0].split() == ["ID", "NAME", "ENABLED", "PREFIX", "SOURCE", "CREATED"]
    out = cli(tmp, "keys", "disable", key_id)
    assert out.returncode == 0 and out.stdout.strip() == f"{key_id} disabled"
    assert json.loads(cli(tmp, "keys", "get", key_id, "--json").stdout)["enabled"] is False
    assert cli(tmp, "keys", "enable", key_id).stdout.strip() == f"{key_id} enabled"

    out = cli(tmp, "keys", "rotate", key_id)
    new_value = dict(line.split(":", 1) for line in out.stdout.splitlines())["value"].strip()
    assert out.returncode == 0 and new_value != value

    out = cli(tmp, "plans", "list")
    assert out.returncode == 0 and "gold" in out.stdout and "10/s burst 20" in out.stdout
    out = cli(tmp, "plans", "get", plan["id"])
    assert out.returncode == 0 and f"{key_id} (alice)" in out.stdout

    out = cli(tmp, "usage", key_id, "--start", "2024-03-03", "--end", "2024-03-05")
    assert out.returncode == 0, out.stderr
    assert "plan gold" in out.stdout and "2024-03-04" in out.stdout and "current period" in out.stdout
    doc = json.loads(cli(tmp, "usage", key_id, "--json").stdout)
    series = doc["plans"][0]["usage"]["items"][key_id]
    assert len(series) == 7 and all(used == 0 for used, _ in series)
    assert doc["plans"][0]["quota"]["remaining"] == 100

    # CSV import, with a warning, then with --fail-on-warnings.
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Name", "Key", "UsagePlanIds"])
    writer.writerow(["imported", "imported-cli-value-000000001", ""])
    writer.writerow(["bad", "short", ""])
    (tmp / "keys.csv").write_text(buf.getvalue())
    out = cli(tmp, "keys", "import", "keys.csv", "--fail-on-warnings")
    assert out.returncode == 1 and "nothing was imported" in out.stderr and "line 3" in out.stderr
    out = cli(tmp, "keys", "import", "keys.csv")
    assert out.returncode == 0 and out.stdout.startswith("imported 1 key(s)") and "line 3" in out.stderr

    out = cli(tmp, "plans", "remove-key", plan["id"], key_id)
    assert out.returncode == 0
    out = cli(tmp, "usage", key_id)
    assert out.returncode == 0 and "in no usage plan" in out.stdout
    assert cli(tmp, "plans", "add-key", plan["id"], key_id).returncode == 0
    assert cli(tmp, "keys", "delete", key_id).stdout.strip() == f"deleted {key_id}"
    assert cli(tmp, "plans", "delete", plan["id"]).returncode == 0

    # Errors: the admin API's message, exit 1.
    out = cli(tmp, "keys", "get", key_id)
    assert out.returncode == 1 and "404 Invalid API Key identifier specified" in out.stderr
    out = cli(
        tmp,
        "plans",
        "create",
        "--name",
        "x",
        "--quota-limit",
        "5",
        "--quota-period",
        "DAY",
        "--quota-offset",
        "3",
    )
    assert out.returncode == 1 and "$.quota.offset" in out.stderr
    out = run_cli("keys", "list", "--admin", f"http://{HOST}:{port}", "--token", "wrong", cwd=tmp)
    assert out.returncode == 1 and "401 Unauthorized" in out.stderr and "--token" in out.stderr


def test_cli_explicit_admin_url_and_token(running: tuple[Path, int], tmp_path: Path) -> None:
    tmp, port = running
    token = (tmp / GENERATED_TOKEN_NAME).read_text().strip()
    env = env_for_child({"FASTGW_ADMIN_URL": f"http://{HOST}:{port}"}, token=token)
    out = run_cli("keys", "create", "--name", "elsewhere", "--json", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"] == "elsewhere"


def test_cli_connection_refused_hint(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    out = run_cli("keys", "list", "--admin", f"http://{HOST}:{port}", "--token", "t", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "connection refused" in lines[0] and "--admin" in lines[0]


def test_cli_finds_the_admin_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--admin, else $FASTGW_ADMIN_URL, else the config's admin.listen, else the default address."""
    from fastgw.admin.client import DEFAULT_ADMIN_URL, admin_url_from, client_from_args
    from fastgw.cli.main import build_parser

    for name in ("FASTGW_ADMIN_URL", "FASTGW_ADMIN_TOKEN", "FASTGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def resolved(*argv: str) -> tuple[str, str | None]:
        c = client_from_args(build_parser().parse_args(["keys", "list", *argv]))
        return c.base_url, c.token

    assert resolved() == (DEFAULT_ADMIN_URL, None)  # no config anywhere
    write_yaml(tmp_path / "fastgw.yaml", config_dict(tmp_path / "state.db", "0.0.0.0:9123"))
    (tmp_path / GENERATED_TOKEN_NAME).write_text("generated\n")
    (tmp_path / GENERATED_TOKEN_NAME).chmod(0o600)
    assert resolved() == ("http://127.0.0.1:9123", "generated")
    monkeypatch.setenv("FASTGW_ADMIN_URL", "http://10.0.0.1:1")
    monkeypatch.setenv("FASTGW_ADMIN_TOKEN", "from-env")
    assert resolved() == ("http://10.0.0.1:1", "from-env")
    assert resolved("--admin", "http://h:2/", "--token", "t") == ("http://h:2", "t")
    assert admin_url_from("[::]:9001") == "http://[::1]:9001"
    assert admin_url_from("[::1]:9001") == "http://[::1]:9001"

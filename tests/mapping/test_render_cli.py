"""``fastgw render-template``, run as users run it: ``python3 -m fastgw render-template ...``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "examples" / "templates"
REQUEST = TEMPLATES / "request.json"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", "render-template", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def event(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(REQUEST.read_bytes())
    data.update(changes)
    return data


def write(tmp_path: Path, name: str, content: str | bytes | dict[str, Any]) -> Path:
    path = tmp_path / name
    if isinstance(content, dict):
        content = orjson.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def test_petstore_example() -> None:
    res = run(TEMPLATES / "petstore-response.vtl", "--request", REQUEST)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    item = '\n  {{\n    "description" : "Item {} is a {}.",\n    "askingPrice" : {}\n  }}'
    assert res.stdout == (
        "[\n"
        + item.format(1, "dog", "249.99")
        + ",\n"
        + item.format(2, "cat", "124.99")
        + ",\n"
        + item.format(3, "fish", "0.99")
        + "\n]\n"
    )


def test_all_params_example() -> None:
    res = run(TEMPLATES / "all-params.vtl", "--request", REQUEST)
    assert res.returncode == 0, res.stderr
    assert orjson.loads(res.stdout) == {
        "params": {
            "path": {"petId": "1"},
            "querystring": {"type": "dog", "page": "2"},
            "header": {
                "Content-Type": "application/json",
                "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
                "User-Agent": "curl/8.5.0",
            },
        }
    }
    assert '"User-Agent" : "curl\\/8.5.0"' in res.stdout  # escapeJavaScript escapes '/'


def test_overrides_go_to_stderr_or_json(tmp_path: Path) -> None:
    error_body = '{"errors": [{"key": "GetPetRequest.petId", "message": "The value is out of range."}]}'
    request = write(tmp_path, "request.json", event(body=error_body))
    res = run(TEMPLATES / "override-status.vtl", "--request", request)
    assert res.returncode == 0, res.stderr
    assert res.stdout == '{"errors":[{"key":"GetPetRequest.petId","message":"The value is out of range."}]}\n'
    assert res.stderr == 'responseOverride: {"status":400,"header":{}}\n'

    res = run(TEMPLATES / "override-status.vtl", "--request", request, "--json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert orjson.loads(res.stdout) == {
        "body": '{"errors":[{"key":"GetPetRequest.petId","message":"The value is out of range."}]}\n',
        "requestOverride": {"header": {}, "querystring": {}, "path": {}},
        "responseOverride": {"status": 400, "header": {}},
    }

    headers = write(
        tmp_path,
        "headers.vtl",
        "#set($context.requestOverride.header.X-Pet = \"pet-$input.params('petId')\")"
        "#set($context.requestOverride.querystring.page = 3)ok",
    )
    res = run(headers, "--request", REQUEST)
    assert (res.returncode, res.stdout) == (0, "ok")
    assert (
        res.stderr == 'requestOverride: {"header":{"X-Pet":"pet-1"},"querystring":{"page":"3"},"path":{}}\n'
    )


def test_context_and_stage_variables(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        "t.vtl",
        "$context.requestId|$context.identity.sourceIp|$context.identity.userAgent|$context.stage"
        "|$context.authorizer.principalId|$stageVariables.env|$stageVariables.extra",
    )
    res = run(template, "--request", REQUEST)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef|192.0.2.1|curl/8.5.0|prod||prod|"

    context = write(
        tmp_path,
        "context.json",
        {"identity": {"sourceIp": "203.0.113.9"}, "authorizer": {"principalId": "me"}},
    )
    res = run(
        template,
        "--request",
        REQUEST,
        "--context",
        context,
        "--stage-variable",
        "env=test",
        "--stage-variable",
        "extra=a=b",
    )
    assert res.returncode == 0, res.stderr
    # Merged key by key: the user agent from the event is kept.
    assert res.stdout == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef|203.0.113.9|curl/8.5.0|prod|me|test|a=b"


def test_template_errors_exit_1_without_traceback(tmp_path: Path) -> None:
    syntax = write(tmp_path, "syntax.vtl", '{\n  "a": "$input.params(\'x\')",\n  #foreach($x in)\n}')
    res = run(syntax, "--request", REQUEST)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.startswith(f"fastgw render-template: {syntax}: line 3, column ")
    assert "Traceback" not in res.stderr

    runtime = write(tmp_path, "runtime.vtl", "ok\n#set($s = 'abc')\n$s.substring(9)")
    res = run(runtime, "--request", REQUEST)
    assert res.returncode == 1
    assert res.stdout == ""
    assert f"{runtime}: line 3, column 1: IndexError" in res.stderr
    assert "Traceback" not in res.stderr

    not_json = write(tmp_path, "request.json", event(body="{not json"))
    res = run(TEMPLATES / "petstore-response.vtl", "--request", not_json)
    assert res.returncode == 1
    assert "the payload is not JSON" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.vtl", "--request", REQUEST], "cannot read template missing.vtl"),
        (
            [TEMPLATES / "petstore-response.vtl", "--request", "missing.json"],
            "cannot read request missing.json",
        ),
        ([TEMPLATES / "petstore-response.vtl", "--request", TEMPLATES / "README.md"], "is not JSON"),
        (
            [TEMPLATES / "petstore-response.vtl", "--request", REQUEST, "--stage-variable", "novalue"],
            "NAME=VALUE",
        ),
    ],
)
def test_input_errors_exit_2(args: list[Any], message: str) -> None:
    res = run(*args)
    assert res.returncode == 2
    assert res.stdout == ""
    assert message in res.stderr and "Traceback" not in res.stderr


def test_bad_event_and_context_shapes(tmp_path: Path) -> None:
    res = run(TEMPLATES / "petstore-response.vtl", "--request", write(tmp_path, "e.json", event(headers=[1])))
    assert res.returncode == 2 and "event.headers must be an object" in res.stderr
    ctx = write(tmp_path, "c.json", b"[1]")
    res = run(TEMPLATES / "petstore-response.vtl", "--request", REQUEST, "--context", ctx)
    assert res.returncode == 2 and "must be a JSON object" in res.stderr


def test_base64_body_and_help(tmp_path: Path) -> None:
    request = write(tmp_path, "r.json", event(body="aMOpbGxv", isBase64Encoded=True))
    template = write(tmp_path, "t.vtl", "$input.body")
    res = run(template, "--request", request)
    assert (res.returncode, res.stdout) == (0, "héllo")
    res = run("--help")
    assert res.returncode == 0 and "--stage-variable" in res.stdout

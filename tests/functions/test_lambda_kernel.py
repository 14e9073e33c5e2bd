"""The compiled per-request half of AWS_PROXY routes (``fastgw.functions._lambda_py``, built as
``_lambda_c``): both builds make the same events, key order included, and the same replies; the
compiled build is the one loaded after a build; a gateway of either build gives a function the
same event for the same request (through real sockets).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn

from fastgw.functions import _lambda_py, events
from tests.core.conftest import NO_EXTENSIONS, require_compiled
from tests.functions.test_events import make_req, make_route

REPO_ROOT = Path(__file__).resolve().parents[2]


def compiled_build() -> ModuleType:
    try:
        return importlib.import_module("fastgw.functions._lambda_c")
    except ImportError:
        return require_compiled(None, "fastgw.functions._lambda_c")  # type: ignore[no-any-return]


def items(value: Any) -> Any:
    """A value with every dict as its list of items (so that key order counts) and types kept."""
    if isinstance(value, dict):
        return [(k, items(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [items(v) for v in value]
    return (type(value).__name__, value)


HEADER_SETS: list[list[tuple[str, str]] | None] = [
    None,
    [("Host", "api.example.com"), ("User-Agent", "ua"), ("X-A", "1"), ("x-a", "2"), ("X-A", "3")],
    [("host", "abcdef1234.execute-api.us-east-1.amazonaws.com"), ("Cookie", "a=1; b=2"), ("cookie", "c=3")],
    [("Host", "h"), ("Content-Length", "3"), ("Content-Type", "application/json")],
    [("Host", "h"), ("content-length", "3"), ("Content-Type", "text/plain; charset=utf-8")],
    [("Host", "h"), ("CONTENT-LENGTH", "3"), ("content-type", "Application/Octet-Stream; q=1"), ("UA", "")],
    [("Host", "h"), ("Content-Length", "3"), ("Content-Length", "3"), ("Content-Type", "image/png")],
    [],
]
QUERIES = ["", "a=1&a=2&b=x%20y&c=+&&=z&d", "q=%E2%9C%93", "&&&"]
BODIES = [b"", b"{}", b"\xff\xfe\x00binary", "h\u00e9llo".encode()]
AUTHORIZERS: list[dict[str, Any] | None] = [
    None,
    {"principalId": "me", "k": "v", "n": 1},
    {"jwt": {"claims": {"sub": "x"}, "scopes": ["a"]}},
]


def cases() -> list[tuple[Any, ...]]:
    """(route arguments, request arguments, extras) of many varied requests."""
    out = []
    for kind in ("rest", "http"):
        for stage, variables, binary, deployment in (
            ("prod", None, (), None),
            ("$default", {"a": "1", "b": "2"}, ("application/octet-stream",), "dep1"),
            ("prod", {"v": "x"}, ("image/*",), None),
            ("beta", None, ("*/*",), "dep2"),
        ):
            for i, headers in enumerate(HEADER_SETS):
                for j, query in enumerate(QUERIES):
                    body = BODIES[(i + j) % len(BODIES)]
                    auth = AUTHORIZERS[(i + 2 * j) % len(AUTHORIZERS)]
                    extra = (i + j) % 4  # 0 plain, 1 custom domain, 2 API key + IAM + mTLS + HTTP/1.0
                    route = (kind, stage, variables, binary, deployment)
                    out.append((*route, headers, query, body, auth, extra))
    return out


def build_request(case: tuple[Any, ...]) -> Any:
    kind, stage, variables, binary, deployment, headers, query, body, auth, extra = case
    route = make_route(kind, stage=stage, variables=variables, binary=binary, key_required=extra == 2)
    route.stage.deployment_id = deployment
    prefix = "" if stage == "$default" else "/" + stage
    path = "/base/pets/1" if extra == 1 else prefix + "/pets/1"
    req = make_req(
        route,
        path=path,
        query=query,
        headers=headers,
        body=body,
        params={"id": "1", "rest": "a/b"} if extra != 1 else None,
    )
    if extra == 2:
        req.http_version = "HTTP/1.0"
        req.api_key = "key"
        req.api_key_id = "kid"
        req.iam = {"accessKey": "AK", "accountId": "1", "caller": "c", "user": "u", "userArn": "arn:u"}
        req.client_cert = {"clientCertPem": "pem", "validity": {"notBefore": "a"}}
    if extra == 3:
        req.api_key_id = "kid"
        req.usage_key = "usage"
    req.authorizer = auth
    return req


def outputs(impl: ModuleType, req: Any) -> list[Any]:
    """Everything the build makes of ``req`` (its own route constants: a fresh ``_Static``)."""
    req.route.event_static = None
    st = impl._static(req.route)
    got = [impl.build_event_v1(req)]
    if not st.rest:
        got.append(impl.build_event_v2(req))
        got.append(impl._parts_v2(req, st, False))
    got.append(impl._context_v1(req, st, "ua", True))
    got.append(impl.body_is_binary(req))
    got.append(impl._headers_v1(req.headers, st.rest, bool(req.body)))
    return items(got)


@pytest.mark.parametrize("case", cases())
def test_builds_make_the_same_events(case: tuple[Any, ...]) -> None:
    compiled = compiled_build()
    req = build_request(case)
    expected = outputs(_lambda_py, req)
    assert outputs(compiled, req) == expected
    # A second request of the route reuses its constants (and the cached domain and time).
    assert outputs(compiled, req) == expected


def test_events_of_the_loaded_build_match_the_python_build() -> None:
    # Whatever build is loaded (compiled, or the twin under FASTGW_NO_EXTENSIONS), the public
    # builders are that build's, and make the Python build's events.
    for case in cases()[::7]:
        req = build_request(case)
        req.route.event_static = None
        got = [events.build_event_v1(req)]
        if req.route.api.kind == "http":
            got.append(events.build_event_v2(req))
        req.route.event_static = None
        want = [_lambda_py.build_event_v1(req)]
        if req.route.api.kind == "http":
            want.append(_lambda_py.build_event_v2(req))
        assert items(got) == items(want)


RESULTS: list[Any] = [
    {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "x" * 100},
    {"statusCode": 201, "body": "h\u00e9"},
    {"statusCode": 204, "body": "x"},
    {"statusCode": 304},
    {"statusCode": 101, "body": "a"},
    {"statusCode": 599, "body": ""},
    {"body": "no status"},
    {},
    {"statusCode": None},
    {"statusCode": "200"},
    {"statusCode": True},
    {"statusCode": 99},
    {"statusCode": 600},
    {"statusCode": 10**30},
    {"statusCode": 200, "headers": None},
    {"statusCode": 200, "headers": []},
    {"statusCode": 200, "headers": {"X-A": "1", "Content-Length": "5", "Date": "d", "Content-TYPE": "t/p"}},
    {"statusCode": 200, "headers": {"bad name": "1"}},
    {"statusCode": 200, "headers": {"X": "a\r\nb"}},
    {"statusCode": 200, "headers": {"X": 1}},
    {"statusCode": 200, "headers": {"X": ["a"]}},
    {"statusCode": 200, "headers": {"X": "\u20acuro"}},
    {"statusCode": 200, "headers": {"": "x"}},
    {"statusCode": 200, "body": None, "extra": 1},
    {"statusCode": 200, "body": b"bytes"},
    {"statusCode": 200, "multiValueHeaders": {}},
    [1],
    "text",
    None,
]


def reply_of(reply: Any) -> Any:
    if reply is None:
        return None
    return (type(reply).__name__, reply.status, reply.head, reply.body, reply.kind, reply.message)


@pytest.mark.parametrize("rest", [True, False])
@pytest.mark.parametrize("result", RESULTS)
def test_builds_make_the_same_replies(result: Any, rest: bool) -> None:
    compiled = compiled_build()
    for _ in range(2):  # the second time from the header line cache
        expected = reply_of(_lambda_py.fast_reply_v1(result, rest))
        assert reply_of(compiled.fast_reply_v1(result, rest)) == expected
    if type(result) is dict and type(result.get("headers")) is dict:
        for name, value in result["headers"].items():
            if type(name) is str and type(value) is str:
                try:
                    want: Any = _lambda_py._header_line(name, value)
                except ValueError:
                    want = ValueError
                try:
                    got: Any = compiled._header_line(name, value)
                except ValueError:
                    got = ValueError
                assert got == want


def test_fast_reply_is_what_the_full_path_writes() -> None:
    from fastgw.pipeline import runtime

    route = make_route("rest")
    req = make_req(route)
    for result in RESULTS:
        fast = runtime.fast_reply_v1(result, True)
        if fast is not None:
            full = runtime.to_reply(events.parse_response_v1(result, req))
            assert (fast.status, fast.head, fast.body) == (full.status, full.head, full.body), result


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
def test_compiled_build_is_loaded() -> None:
    from fastgw.functions import _lambda_c, registry
    from fastgw.pipeline import runtime

    assert events.COMPILED is True
    assert events._impl is _lambda_c
    assert _lambda_c.__file__ is not None and _lambda_c.__file__.endswith(".so"), _lambda_c.__file__
    assert events.build_event_v1 is _lambda_c.build_event_v1
    assert events.build_event_v2 is _lambda_c.build_event_v2
    assert runtime.fast_reply_v1 is _lambda_c.fast_reply_v1
    assert runtime.FunctionRoute is _lambda_c.FunctionRoute
    assert registry.LambdaContext is _lambda_c.LambdaContext
    assert registry.LocalFunction.__mro__[1] is _lambda_c.FunctionCore


def test_no_extensions_loads_the_python_build() -> None:
    code = (
        "from fastgw.functions import events, registry, _lambda_py\n"
        "from fastgw.pipeline import runtime\n"
        "import sys\n"
        "assert events.COMPILED is False and events._impl is _lambda_py\n"
        "assert runtime.fast_reply_v1 is _lambda_py.fast_reply_v1\n"
        "assert registry.LocalFunction.__mro__[1] is _lambda_py.FunctionCore\n"
        "assert 'fastgw.functions._lambda_c' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "FASTGW_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_context_attributes() -> None:
    from fastgw.functions.registry import LambdaContext, LocalFunction

    async def handler(event: Any, context: Any) -> Any:
        return None

    fn = LocalFunction(
        "f", handler, timeout=3, max_concurrency=2, memory_mb=256, region="eu-west-1", account_id="1"
    )
    for ctx in (LambdaContext(fn, 0.0), _lambda_py._new_context(fn, 0.0)):
        assert ctx.function_name == "f"
        assert ctx.function_version == "$LATEST"
        assert ctx.invoked_function_arn == "arn:aws:lambda:eu-west-1:1:function:f"
        assert ctx.memory_limit_in_mb == 256
        assert ctx.log_group_name == "/aws/lambda/f"
        assert ctx.log_stream_name == fn.log_stream_name
        assert ctx.identity is None and ctx.client_context is None
        assert len(ctx.aws_request_id) == 36 and ctx.aws_request_id == ctx.aws_request_id
        assert ctx.get_remaining_time_in_millis() == 0
    done, got = fn.start({}, None, 1.0)
    assert done is True and got is None and fn.running == 0


# ------------------------------------------------------------------- through real sockets
H = "tests.functions.kernel_handlers"
CONFIG: dict[str, Any] = {
    "functions": {
        "echo": {"handler": f"{H}:event_echo"},
        "in_task": {"handler": f"{H}:in_task"},
        "unhashable": {"handler": f"{H}:unhashable_header"},
    },
    "apis": [
        {
            "name": "rest",
            "id": "restapi001",
            "binaryMediaTypes": ["application/octet-stream"],
            "routes": [
                {"route": "ANY /echo/{id}", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                {"route": "GET /task", "integration": {"type": "AWS_PROXY", "uri": "in_task"}},
                {"route": "GET /unhashable", "integration": {"type": "AWS_PROXY", "uri": "unhashable"}},
            ],
            "stages": [{"name": "prod", "variables": {"v": "1"}}],
        },
        {
            "name": "http",
            "kind": "http",
            "routes": [
                {
                    "route": "ANY /v1/{proxy+}",
                    "integration": {"type": "AWS_PROXY", "uri": "echo", "payloadFormatVersion": "1.0"},
                },
            ],
            "stages": [{"name": "$default"}],
        },
    ],
}
# Per request or per gateway: ids, times, the gateway's port.
VARIES = {"requestId", "extendedRequestId", "requestTime", "requestTimeEpoch", "X-Forwarded-Port"}
REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes, str]] = [
    ("GET", "/prod/echo/1", [], b"", "HTTP/1.1"),
    (
        "GET",
        "/prod/echo/2?a=1&a=2&b=x%20y&c",
        [("X-M", "1"), ("x-m", "2"), ("Cookie", "a=1")],
        b"",
        "HTTP/1.1",
    ),
    ("POST", "/prod/echo/3", [("Content-Type", "application/json")], b'{"k": "v"}', "HTTP/1.1"),
    ("POST", "/prod/echo/4", [("Content-Type", "application/octet-stream")], b"\x00\xff\x01", "HTTP/1.1"),
    ("PUT", "/prod/echo/5", [("Content-Type", "text/plain")], b"\xff\xfebad utf-8", "HTTP/1.0"),
    ("GET", "/prod/echo/6", [("User-Agent", "curl/8"), ("Host", "api.example.org")], b"", "HTTP/1.1"),
    ("GET", "/v1/a/b?q=%E2%9C%93", [("Cookie", "a=1; b=2")], b"", "HTTP/1.1"),
    ("POST", "/v1/x", [("Content-Type", "application/x-www-form-urlencoded")], b"a=1&b=2", "HTTP/1.1"),
]


def normalised(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, "-" if k in VARIES else v) for k, v in pairs]


def echoed(port: int) -> list[Any]:
    out = []
    for method, target, headers, body, version in REQUESTS:
        host = next((v for k, v in headers if k.lower() == "host"), "gw.test")
        rest = [(k, v) for k, v in headers if k.lower() != "host"]
        with RawConn(port) as c:
            r = c.request(method, target, headers=rest, body=body, host=host, version=version)
        assert r.status == 200, r.body
        out.append(json.loads(r.body, object_pairs_hook=normalised))
    return out


def test_gateways_of_both_builds_send_the_same_events(gateway_factory: GatewayFactory) -> None:
    compiled = gateway_factory(CONFIG, workers=1, no_extensions=NO_EXTENSIONS)
    python = gateway_factory(CONFIG, workers=1, no_extensions=True)
    got = echoed(compiled.port)
    assert got == echoed(python.port)
    first = dict(got[0])
    assert list(first)[:3] == ["resource", "path", "httpMethod"]
    assert first["requestContext"][0] == ("accountId", "123456789012")
    assert first["stageVariables"] == [("v", "1")]
    for gw in (compiled, python):
        with RawConn(gw.port) as c:
            r = c.request("GET", "/prod/task")
            assert r.status == 200 and r.json() == {"task": True}
            # A list as a header value is a malformed proxy response (502), as on the full path.
            assert c.request("GET", "/prod/unhashable").status == 502

"""The HTTP (non-proxy) integration's lean path (``fastgw.pipeline.mapped.http_mapped``), in process.

A route whose templates never read ``$context`` and that maps no parameters renders its request
template in ``run``, sends the upstream request on the exchange's pools with a cached head, and
answers its response template as the reply ``runtime.to_reply`` would make of the Response (the
upstream's head is not even parsed). These tests drive the real protocol objects on in-memory
transports (as ``bench.pipeline --mapped`` does) and check the bytes on both sides, and that the
general path is taken where it must be (response plugins, parameters, overrides, $context).
Every test runs against both builds of ``fastgw.pipeline.lean`` (``_lean_c`` and ``_lean_py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fastgw.pipeline import _lean_py, lean, mapped, runtime
from fastgw.pipeline.build import upstream_head_lines
from fastgw.pipeline.request import Response
from fastgw.pipeline.runtime import to_reply
from fastgw.server.replies import UNSUPPORTED_MEDIA_TYPE, LocalReply

UPSTREAM_BODY = b'{"message":"hi","n":1}'
REQUEST_TEMPLATE = (
    '{"id": "$input.params(\'id\')", '
    '"ua": "$util.escapeJavaScript($input.params().header.get(\'User-Agent\'))"}'
)
RESPONSE_TEMPLATE = "#set($b = $input.path('$'))\n{\"wrapped\": $input.json('$')}"


class _Transport:
    def __init__(self) -> None:
        self.data = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.data += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


@pytest.fixture(autouse=True, params=["compiled", "python"])
def lean_build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The build of ``fastgw.pipeline.lean`` the routes are compiled with (its module)."""
    if request.param == "python":
        _lean_py.bind(upstream_head_lines)
        monkeypatch.setattr(mapped.lean_route, "LeanHttp", _lean_py.LeanHttp)
        return _lean_py
    if not lean.COMPILED:
        pytest.skip("the compiled build of fastgw.pipeline.lean is not in use")
    return lean


def _config(integration: dict[str, Any], plugins: str = "") -> str:
    return f"""
plugin_modules: [tests.pipeline.handlers]
apis:
  - name: lean
    routes:
      - route: "ANY /{{proxy+}}"
        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:19000/{{proxy}}"}}
      - route: "GET /mapped/{{id}}"{plugins}
        integration: {json.dumps(integration)}
      - route: "POST /mapped/{{id}}"{plugins}
        integration: {json.dumps(integration)}
    stages: [{{name: prod, variables: {{env: test}}}}]
"""


def _integration(
    request: str = REQUEST_TEMPLATE, response: str = RESPONSE_TEMPLATE, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "HTTP",
        "uri": "http://127.0.0.1:19000/{id}.json",
        "requestTemplates": {"application/json": request},
        "responses": {"default": {"statusCode": 200, "responseTemplates": {"application/json": response}}},
        **extra,
    }


class Gateway:
    """One worker's client and upstream protocols on in-memory transports."""

    def __init__(self, text: str) -> None:
        import uvloop

        from fastgw.config.compile import compile_config
        from fastgw.config.load import load_config_text
        from fastgw.server.protocol import HttpProtocol, UpstreamConnection
        from fastgw.server.worker import Worker

        self.loop = uvloop.new_event_loop()
        snapshot = compile_config(load_config_text(text))
        worker = Worker(snapshot, self.loop)
        self.client, self.client_t = HttpProtocol(worker), _Transport()
        self.client.connection_made(self.client_t)
        target = snapshot.stages[0].trie.match("GET", "/small").value.integration.targets[0]
        pool = worker.pools.get(target)
        self.upstream, self.upstream_t = UpstreamConnection(pool), _Transport()
        self.upstream.connection_made(self.upstream_t)
        pool.all.add(self.upstream)
        pool.idle.append(self.upstream)

    def exchange(self, request: bytes, response: bytes) -> tuple[bytes, bytes]:
        """(what the upstream got, what the client got) for one request."""
        self.client_t.data = self.upstream_t.data = b""

        async def one() -> None:
            self.client.data_received(request)
            for _ in range(100):
                if self.upstream_t.data or self.client_t.data:
                    break
                await asyncio.sleep(0)
            if self.upstream_t.data:
                self.upstream.data_received(response)
            for _ in range(100):
                if self.client_t.data:
                    break
                await asyncio.sleep(0)

        self.loop.run_until_complete(one())
        return self.upstream_t.data, self.client_t.data

    def close(self) -> None:
        self.loop.close()


def _upstream_response(body: bytes = UPSTREAM_BODY, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nServer: t\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        extra,
        len(body),
        body,
    )


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.fixture
def gateway_of() -> Any:
    made: list[Gateway] = []

    def make(integration: dict[str, Any], plugins: str = "") -> Gateway:
        gw = Gateway(_config(integration, plugins))
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


XML_POST = (
    b"POST /prod/mapped/x HTTP/1.1\r\nHost: gw\r\nContent-Type: text/xml\r\nContent-Length: 2\r\n\r\n<a"
)
GET = b"GET /prod/mapped/small HTTP/1.1\r\nHost: gw\r\nUser-Agent: ua/1.0 'x'\r\n\r\n"


def test_the_mapped_request_and_response_bytes(gateway_of: Any) -> None:
    gw = gateway_of(_integration())
    for _ in range(3):  # the cached heads give the same bytes every time
        sent, got = gw.exchange(GET, _upstream_response())
        lines, body = _split(sent)
        assert lines[0] == b"GET /small.json HTTP/1.1"
        assert b"Content-Type: application/json" in lines
        assert body == b'{"id": "small", "ua": "ua\\/1.0 \\\'x\\\'"}'
        assert b"content-length: %d" % len(body) in [line.lower() for line in lines]
        lines, body = _split(got)
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert body == b'{"wrapped": ' + UPSTREAM_BODY + b"}"
        assert b"Content-Type: application/json" in lines
        assert b"content-length: %d" % len(body) in lines
        assert not any(line.lower().startswith(b"server:") for line in lines)  # the upstream's headers


def test_a_body_not_json_in_the_response_is_a_500(gateway_of: Any) -> None:
    gw = gateway_of(_integration())
    _, got = gw.exchange(GET, _upstream_response(b"not json"))
    lines, body = _split(got)
    assert lines[0] == b"HTTP/1.1 500 Internal Server Error"
    assert json.loads(body) == {"message": "Internal server error"}


def test_a_post_body_and_its_content_type_reach_the_upstream(gateway_of: Any) -> None:
    gw = gateway_of(_integration(request="$input.json('$.a')"))
    payload = b'{"a": [1, 2]}'
    for ctype, sent_ctype in ((b"", b"application/json"), (b"application/json; charset=utf-8",) * 2):
        header = b"Content-Type: %s\r\n" % ctype if ctype else b""
        request = b"POST /prod/mapped/x HTTP/1.1\r\nHost: gw\r\n%sContent-Length: %d\r\n\r\n%s" % (
            header,
            len(payload),
            payload,
        )
        sent, got = gw.exchange(request, _upstream_response())
        lines, body = _split(sent)
        assert lines[0] == b"POST /x.json HTTP/1.1"
        assert body == b"[1,2]"
        assert b"Content-Type: " + sent_ctype in lines
        assert _split(got)[0][0] == b"HTTP/1.1 200 OK"
    # a Content-Type without a template: passed through (WHEN_NO_MATCH, AWS's default)
    request = XML_POST
    sent, got = gw.exchange(request, _upstream_response())
    lines, body = _split(sent)
    assert body == b"<a" and b"Content-Type: text/xml" in lines
    assert _split(got)[0][0] == b"HTTP/1.1 200 OK"


class _Counted(runtime._Stepper):
    """``runtime._Stepper``, counting the requests it drives (the coroutine's path)."""

    started = 0

    def __init__(self, *args: Any) -> None:
        type(self).started += 1
        super().__init__(*args)


def test_the_usual_route_runs_without_a_coroutine(
    gateway_of: Any, lean_build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_Stepper", _Counted)
    _Counted.started = 0
    gw = gateway_of(_integration())
    assert type(gw.client.worker.snapshot.stages[0].trie.match("GET", "/mapped/a").value.pipeline.lean) is (
        lean_build.LeanHttp
    )
    _, got = gw.exchange(GET, _upstream_response())
    assert _split(got)[1] == b'{"wrapped": ' + UPSTREAM_BODY + b"}"
    assert _Counted.started == 0
    # a Content-Type without a template (passed through) is the coroutine's
    sent, got = gw.exchange(XML_POST, _upstream_response())
    assert _split(sent)[1] == b"<a" and _split(got)[0][0] == b"HTTP/1.1 200 OK"
    assert _Counted.started == 1


def test_a_request_body_not_json_is_a_400_and_nothing_is_sent(gateway_of: Any) -> None:
    gw = gateway_of(_integration(request="$input.json('$.a')"))
    request = b"POST /prod/mapped/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\n{bad"
    sent, got = gw.exchange(request, _upstream_response())
    lines, body = _split(got)
    assert sent == b""
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert json.loads(body)["message"].startswith("Could not parse request body into json: ")  # AWS's
    # the connection goes on serving
    sent, got = gw.exchange(GET, _upstream_response())
    assert _split(sent)[0][0] == b"GET /small.json HTTP/1.1" and _split(got)[0][0] == b"HTTP/1.1 200 OK"


def test_a_client_gone_before_the_upstream_answers_gets_nothing(
    gateway_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw = gateway_of(_integration())
    gw.client_t.data = gw.upstream_t.data = b""

    async def gone() -> None:
        gw.client.data_received(GET)
        for _ in range(100):
            if gw.upstream_t.data:
                break
            await asyncio.sleep(0)
        assert gw.upstream_t.data.startswith(b"GET /small.json HTTP/1.1")
        gw.client.connection_lost(None)
        gw.upstream.data_received(_upstream_response())
        for _ in range(10):
            await asyncio.sleep(0)

    with caplog.at_level("ERROR"):
        gw.loop.run_until_complete(gone())
    assert gw.client_t.data == b""
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.records


def test_never_passes_through(gateway_of: Any) -> None:
    gw = gateway_of(_integration(passthroughBehavior="NEVER"))
    request = XML_POST
    sent, got = gw.exchange(request, _upstream_response())
    assert sent == b"" and _split(got)[0][0].startswith(b"HTTP/1.1 415")


def test_response_plugins_still_get_a_response(gateway_of: Any) -> None:
    plugins = "\n        plugins: [{name: test-trace, config: {tag: t}}]"
    gw = gateway_of(_integration(), plugins)
    _, got = gw.exchange(GET, _upstream_response())
    lines, body = _split(got)
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert body == b'{"wrapped": ' + UPSTREAM_BODY + b"}"
    assert any(line.lower().startswith(b"x-trace:") and b"t:response" in line for line in lines), lines


def test_context_parameters_and_overrides_take_the_general_path(gateway_of: Any) -> None:
    integration = _integration(
        request='{"ip": "$context.identity.sourceIp", "env": "$stageVariables.env"}'
        "#set($context.requestOverride.querystring.q = 'v')",
        response='{"s": "$context.stage"}#set($context.responseOverride.status = 201)',
        requestParameters={"integration.request.header.X-Id": "method.request.path.id"},
    )
    integration["responses"]["default"]["responseParameters"] = {
        "method.response.header.X-Up": "integration.response.header.Server"
    }
    gw = gateway_of(integration)
    sent, got = gw.exchange(GET, _upstream_response())
    lines, body = _split(sent)
    assert lines[0] == b"GET /small.json?q=v HTTP/1.1"
    assert b"X-Id: small" in lines
    assert body == b'{"ip": "127.0.0.1", "env": "test"}'
    lines, body = _split(got)
    assert lines[0] == b"HTTP/1.1 201 Created"
    assert b"X-Up: t" in lines
    assert body == b'{"s": "prod"}'


# ---------------------------------------------------------------------------- units
@pytest.mark.parametrize("status", [200, 201, 204, 304, 404, 500])
@pytest.mark.parametrize("ctype", ["application/json", "text/plain; charset=utf-8"])
def test_lean_reply_is_what_to_reply_makes(lean_build: Any, status: int, ctype: str) -> None:
    template = mapped.vtl.MappingTemplate("$input.body")
    selected = mapped._Selected(status, None, {ctype: (ctype, template)}, None)
    assert selected.lean is template
    for body in (b"", b"{}", b"x" * 300):
        want = to_reply(Response(status, [("Content-Type", ctype)], body))
        got = selected.lean_reply(body)
        assert type(got) is LocalReply
        twin = lean_build.lean_reply(status, selected.head, body)  # the build under test
        assert (twin.status, twin.head, twin.body, twin.kind, twin.message) == (
            got.status,
            got.head,
            got.body,
            got.kind,
            got.message,
        )
        assert type(got) is LocalReply
        assert (got.status, got.head, got.body, got.kind, got.message) == (
            want.status,
            want.head,
            want.body,
            want.kind,
            want.message,
        )


def test_no_lean_response_with_parameters_or_several_templates() -> None:
    template = mapped.vtl.MappingTemplate("$input.body")
    assert mapped._Selected(200, object(), {"a/b": ("a/b", template)}, None).lean is None
    two = {"a/b": ("a/b", template), "c/d": ("c/d", template)}
    assert mapped._Selected(200, None, two, None).lean is None
    uses_context = mapped.vtl.MappingTemplate("$context.requestId")
    assert mapped._Selected(200, None, {"a/b": ("a/b", uses_context)}, None).lean is None
    # a Content-Type to_reply refuses stays on the general path (its 500)
    assert mapped._Selected(200, None, {"a/b": ("a\nb", template)}, None).lean is None


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Type", "application/json")],
        [("Content-Type", "text/plain; charset=é")],
        [("Content-Type", "a"), ("X-B", "b")],
        [("Host", "dropped")],
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("body", [b"", b"abc"])
def test_upstream_head_is_upstream_head_lines(
    lean_build: Any, headers: list[tuple[str, str]], method: str, body: bytes
) -> None:
    for _ in range(2):  # uncached, then cached
        got = lean_build.upstream_head(headers, body, method)
        assert got == upstream_head_lines(headers, body, method)


def test_upstream_head_refuses_what_upstream_head_lines_refuses(lean_build: Any) -> None:
    for value in ("a\r\nb", "a\0"):
        with pytest.raises(ValueError):
            lean_build.upstream_head([("Content-Type", value)], b"x", "POST")
        assert ("Content-Type", value) not in lean_build.HEAD_LINES


@pytest.mark.parametrize("behavior", ["WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER"])
@pytest.mark.parametrize("types", [{}, {"application/json": "x"}, {"text/plain": "y"}])
def test_the_template_of_a_request_without_content_type(behavior: str, types: dict[str, str]) -> None:
    templates = mapped.compile_templates(types, behavior, "p", [])
    got = templates.untyped
    expected = templates.templates.get("application/json")
    if expected is None:
        no_match = behavior == "WHEN_NO_MATCH" or (behavior == "WHEN_NO_TEMPLATES" and not types)
        expected = None if no_match else UNSUPPORTED_MEDIA_TYPE
    assert got is expected
    assert templates.select(None, None) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "parts",
    [["/", ("id",), ".json"], [("id",)], ["/a/", ("x",), "/", ("y",)], ["/static"], ["/", ("id",)]],
)
def test_uri_render(parts: list[Any]) -> None:
    from urllib.parse import quote

    uri = mapped._Uri(None, parts, "")
    for params in ({"id": "a b", "x": "1", "y": "é/2?"}, {"id": "plain"}, None, {}):
        want = "".join(
            quote((params or {}).get(p[0], ""), safe="/-_.~!$&'()*+,;=:@") if type(p) is tuple else p
            for p in parts
        )
        assert uri.render(params) == want


def test_render_path_quotes_what_quote_quotes(lean_build: Any) -> None:
    """The one-placeholder URI path (``render_path``): a value of safe characters as it is,
    anything else percent-encoded as ``urllib.parse.quote`` does."""
    from urllib.parse import quote

    safe = "/-_.~!$&'()*+,;=:@"
    for code in [*range(0x300), 0x20AC, 0x1F600]:
        ch = chr(code)
        for value in (ch, f"a{ch}b"):
            got = lean_build.render_path("/p/", "id", ".json", {"id": value})
            assert got == f"/p/{quote(value, safe=safe)}.json", (code, got)
            assert lean_build.uri_value(value) == quote(value, safe=safe), code
    assert lean_build.render_path("/p/", "id", "", None) == "/p/"
    assert lean_build.render_path("/p/", "id", "", {"other": "x"}) == "/p/"


@pytest.mark.parametrize("n", [0, 1, 99, 100, 65536])
def test_length_line(lean_build: Any, n: int) -> None:
    for _ in range(2):  # computed, then remembered
        assert lean_build.length_line(n) == b"content-length: %d\r\n" % n


# ---------------------------------------------------------------------------- lean = general
_DIFF_REQUEST = (
    '{"id": "$input.params(\'id\')", "all": "$util.escapeJavaScript($input.params())", '
    '"body": "$util.escapeJavaScript($input.body)", "env": "$stageVariables.env", '
    '"q": "$input.params(\'q\')"}'
)
_DIFF_RESPONSE = (
    '{"up": $input.json(\'$\'), "hdrs": "$util.escapeJavaScript($input.params().header)", '
    '"q": "$input.params().querystring", "env": "$stageVariables.env"}'
)


def _diff_integration(**extra: Any) -> dict[str, Any]:
    out = _integration(_DIFF_REQUEST, _DIFF_RESPONSE, uri="http://127.0.0.1:19000/{id}.json?fixed=1")
    out["requestTemplates"]["text/plain"] = "plain $input.body"
    out.update(extra)
    return out


def _req(
    method: bytes, path: bytes = b"/prod/mapped/abc", headers: bytes = b"", body: bytes | None = None
) -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: gw\r\nUser-Agent: ua\r\n%s" % (method, path, headers)
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + (body or b"")


_JSON_CT_LINE = b"Content-Type: application/json\r\n"
_DIFF_CASES = [
    (_req(b"GET", b"/prod/mapped/a%20b?q=1&q=2&x=%C3%A9"), _upstream_response()),
    (_req(b"HEAD"), _upstream_response()),
    (_req(b"POST", headers=_JSON_CT_LINE, body=b'{"a":1}'), _upstream_response()),
    (_req(b"POST", headers=b"Content-Type: text/plain\r\n", body=b"hi"), _upstream_response()),
    (_req(b"POST", headers=b"Content-Type: text/xml\r\n", body=b"<a/>"), _upstream_response()),
    (_req(b"POST", headers=_JSON_CT_LINE, body=b"{bad"), _upstream_response()),
    (_req(b"DELETE", headers=b"X-Forwarded-For: 1.2.3.4\r\n"), _upstream_response()),
    (_req(b"GET"), _upstream_response(b"", status="204 No Content")),
    (_req(b"GET"), _upstream_response(b'{"e":1}', status="500 Oops")),
    (_req(b"GET"), _upstream_response(b"nope")),
    (_req(b"GET"), b"garbage\r\n\r\n"),  # the upstream's 502
]
_DIFF_VARIANTS = {
    "default": {},
    "never": {"passthroughBehavior": "NEVER"},
    "fixed-post": {"httpMethod": "POST"},
    "two-params": {"uri": "http://127.0.0.1:19000/{id}/{id}.json"},
    "stage-variable": {"uri": "http://127.0.0.1:19000/${stageVariables.env}/{id}"},
    "204": {"responses": {"default": {"statusCode": 204, "responseTemplates": {"application/json": "x"}}}},
    "text": {
        "responses": {
            "default": {"statusCode": 201, "responseTemplates": {"text/html": "<p>$input.body</p>"}}
        }
    },
}


def _normal(raw: bytes) -> bytes:
    import re

    raw = re.sub(rb"x-amzn-RequestId: [^\r]*", b"RID", raw)
    return re.sub(rb"[Dd]ate: [^\r]*", b"DATE", raw)


@pytest.mark.parametrize("binary", [[], ["image/png"]])
@pytest.mark.parametrize("variant", sorted(_DIFF_VARIANTS))
def test_the_lean_path_sends_and_answers_what_the_coroutine_does(
    lean_build: Any, monkeypatch: pytest.MonkeyPatch, variant: str, binary: list[str]
) -> None:
    """Every request on both paths (the coroutine's: the route built without ``lean``): the
    same bytes to the upstream and to the client, whichever path takes the request."""
    integration = _diff_integration(**_DIFF_VARIANTS[variant])
    text = _config(integration).replace(
        "    stages:", f"    binaryMediaTypes: {json.dumps(binary)}\n    stages:"
    )
    got = {}
    for lean_on in (True, False):
        if not lean_on:
            monkeypatch.setattr(mapped.lean_route, "LeanHttp", lambda *a: None)
        gw = Gateway(text)
        pipe = gw.client.worker.snapshot.stages[0].trie.match("GET", "/mapped/a").value.pipeline
        assert (pipe.lean is not None) is lean_on
        got[lean_on] = [tuple(_normal(b) for b in gw.exchange(req, resp)) for req, resp in _DIFF_CASES]
        gw.close()
    for case, (on_lean, general) in enumerate(zip(got[True], got[False], strict=True)):
        assert on_lean == general, (case, on_lean, general)
    assert any(b"HTTP/1.1 502" in reply for _, reply in got[True])  # the upstream's fault was served


def test_an_invalid_binary_media_type_is_refused_at_load() -> None:
    from fastgw.config.compile import compile_config
    from fastgw.config.load import ConfigError, load_config_text

    text = _config(_integration()).replace(
        "    stages:", '    binaryMediaTypes: ["bogus", "image/png"]\n    stages:'
    )
    with pytest.raises(ConfigError) as err:
        compile_config(load_config_text(text))
    assert [i.path for i in err.value.issues] == ["$.apis[0].binaryMediaTypes[0]"], err.value.issues
    assert "'bogus' is not a media type" in str(err.value)


def test_a_failure_before_the_template_is_the_routes_500(
    gateway_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(api: Any) -> Any:
        raise ValueError("broken binaryMediaTypes")

    monkeypatch.setattr(mapped, "api_binary_types", broken)
    gw = gateway_of(_integration())
    for _ in range(2):  # the connection goes on serving
        sent, got = gw.exchange(GET, _upstream_response())
        lines, body = _split(got)
        assert sent == b"" and lines[0] == b"HTTP/1.1 500 Internal Server Error"
        assert json.loads(body) == {"message": "Internal server error"}


def test_launch_answers_500_when_the_lean_path_raises(
    gateway_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Raising:
        def start(self, ex: Any) -> bool:
            raise RuntimeError("boom")

    gw = gateway_of(_integration())
    gw.client.worker.snapshot.stages[0].trie.match("GET", "/mapped/a").value.pipeline.lean = Raising()
    with caplog.at_level("ERROR"):
        sent, got = gw.exchange(GET, _upstream_response())
    assert sent == b"" and _split(got)[0][0] == b"HTTP/1.1 500 Internal Server Error"
    assert any("request pipeline failed" in r.getMessage() for r in caplog.records)

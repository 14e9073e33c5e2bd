"""Unit tests of fastgw.pipeline.params: REST request/response parameters and HTTP API
parameter mapping, compiled once and applied to requests and responses."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest

from fastgw.pipeline import params
from fastgw.pipeline.params import (
    HTTP_RESERVED_HEADERS,
    MappingError,
    compile_http_request_mapping,
    compile_http_response_mapping,
    compile_json_path,
    compile_request_parameters,
    compile_response_parameters,
)
from fastgw.pipeline.request import Request

CONTEXT: dict[str, Any] = {
    "requestId": "req-42",
    "requestTimeEpoch": 1_700_000_000_123,
    "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8", "apiKey": None},
    "authorizer": {"principalId": "user-1", "claims": {"sub": "abc-123", "admin": True}},
    "stage": "prod",
}
STAGE = {"env": "test", "backend": "api.internal"}


def _req(
    headers: list[tuple[str, str]] | None = None,
    query: str = "",
    path_params: dict[str, str] | None = None,
    body: bytes = b"",
    resource_path: str = "/pets/7",
) -> Request:
    return Request(
        cast("Any", None),  # the mappers never read the route
        "POST",
        "/prod" + resource_path,
        resource_path,
        query,
        headers if headers is not None else [],
        body,
        "203.0.113.7",
        "req-42",
        1_700_000_000_123,
        params=path_params,
    )


def _errors(ex: pytest.ExceptionInfo[MappingError]) -> dict[str, str]:
    return dict(ex.value.errors)


# ============================================================================ JSONPath
@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("a", ("a",)),
        ("a.b", ("a", "b")),
        ("$.a.b", ("a", "b")),
        ("$", ()),
        ("petstore.pets[0].name", ("petstore", "pets", 0, "name")),
        ("$['a b'].c", ("a b", "c")),
        ('$["x.y"]', ("x.y",)),
        ("items[-1]", ("items", -1)),
        ("items[*].id", ("items", params.WILDCARD, "id")),
        ("a.*", ("a", params.WILDCARD)),
        ("$[0]", (0,)),
        ("[0].a", (0, "a")),
        (".a", ("a",)),
    ],
)
def test_json_path_compiles(path: str, steps: tuple[Any, ...]) -> None:
    assert compile_json_path(path) == steps


@pytest.mark.parametrize(
    "path",
    ["$..a", "a..b", "a[?(@.x)]", "a[0:2]", "a[0,1]", "a[", "a['x", "a.", "$.a[(@.length-1)]", "a[0]b"],
)
def test_json_path_unsupported(path: str) -> None:
    with pytest.raises(ValueError):
        compile_json_path(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.b", 1),
        ("a.c", params._MISSING),
        ("list[1].id", "y"),
        ("list[-1].id", "y"),
        ("list[5]", params._MISSING),
        ("list[*].id", ["x", "y"]),
        ("mixed[*].id", [1]),
        ("a.*", [1, [1, 2]]),
        ("grid[*][*]", [1, 2, 3, 4]),
        ("a.b.c", params._MISSING),
        ("list.id", params._MISSING),
        ("a.b[*]", params._MISSING),
    ],
)
def test_json_path_select(path: str, expected: Any) -> None:
    doc = {
        "a": {"b": 1, "d": [1, 2]},
        "list": [{"id": "x"}, {"id": "y"}],
        "grid": [[1, 2], [3, 4]],
        "mixed": [{"id": 1}, {"no": 2}, 3],
    }
    assert params._select(doc, compile_json_path(path)) == expected


# ======================================================================= REST requests
def test_rest_request_sources() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.X-User": "method.request.querystring.user",
            "integration.request.header.X-Token": "method.request.header.Authorization",
            "integration.request.querystring.id": "method.request.path.petId",
            "integration.request.path.region": "stageVariables.env",
            "integration.request.header.X-Static": "'fixed value'",
            "integration.request.header.X-Request": "context.requestId",
            "integration.request.header.X-Ip": "context.identity.sourceIp",
            "integration.request.header.X-Sub": "context.authorizer.claims.sub",
            "integration.request.header.X-Principal": "context.authorizer.principalId",
            "integration.request.header.X-Epoch": "context.requestTimeEpoch",
        }
    )
    req = _req(
        [("authorization", "Bearer t"), ("Host", "gw")],
        query="user=alice%20b&other=1",
        path_params={"petId": "7"},
    )
    out = mapper.apply(req, CONTEXT, STAGE)
    assert out.headers == [
        ("X-User", "alice b"),
        ("X-Token", "Bearer t"),
        ("X-Static", "fixed value"),
        ("X-Request", "req-42"),
        ("X-Ip", "203.0.113.7"),
        ("X-Sub", "abc-123"),
        ("X-Principal", "user-1"),
        ("X-Epoch", "1700000000123"),
    ]
    assert out.query == [("id", "7")]
    assert out.path == {"region": "test"}
    headers, query, path = out  # the tuple shape
    assert (headers, query, path) == (out.headers, out.query, out.path)
    assert mapper.needs_context and not mapper.needs_body
    assert mapper.method_params == (("querystring", "user"), ("header", "Authorization"), ("path", "petId"))
    assert mapper.path_names == ("region",)


def test_rest_request_missing_sources_leave_destinations_unset() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.X-A": "method.request.header.absent",
            "integration.request.querystring.q": "method.request.querystring.absent",
            "integration.request.path.p": "method.request.path.absent",
            "integration.request.header.X-B": "stageVariables.absent",
            "integration.request.header.X-C": "context.authorizer.claims.absent",
            "integration.request.header.X-D": "context.identity.apiKey",  # null
            "integration.request.header.X-E": "method.request.body.a",  # no body
            "integration.request.header.X-F": "method.request.multivalueheader.absent",
        }
    )
    assert mapper.apply(_req(), CONTEXT, STAGE) == ([], [], {})
    assert mapper.apply(_req(), None, None) == ([], [], {})


def test_rest_request_repeated_values() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.X-Last": "method.request.header.x-multi",
            "integration.request.header.X-Joined": "method.request.multivalueheader.X-Multi",
            "integration.request.multivalueheader.X-Each": "method.request.multivalueheader.x-multi",
            "integration.request.querystring.last": "method.request.querystring.q",
            "integration.request.querystring.all": "method.request.multivaluequerystring.q",
            "integration.request.multivaluequerystring.all2": "method.request.multivaluequerystring.q",
            "integration.request.path.p": "method.request.multivaluequerystring.q",
        }
    )
    req = _req([("X-Multi", "a"), ("x-multi", "b")], query="q=1&q=2+3&r=")
    out = mapper.apply(req)
    assert out.headers == [("X-Last", "b"), ("X-Joined", "a,b"), ("X-Each", "a"), ("X-Each", "b")]
    assert out.query == [("last", "2 3"), ("all", "1"), ("all", "2 3"), ("all2", "1"), ("all2", "2 3")]
    assert out.path == {"p": "1,2 3"}


def test_rest_request_empty_query_value_is_present() -> None:
    mapper = compile_request_parameters({"integration.request.querystring.r": "method.request.querystring.r"})
    assert mapper.apply(_req(query="r=&s&=nameless")).query == [("r", "")]


def test_wildcard_repr() -> None:
    assert repr(params.WILDCARD) == "*"


def test_text_of_values() -> None:
    assert params._text(False) == "false"
    assert params._text(1.5) == "1.5"
    assert params._text({1, 2}).startswith("{")  # not JSON: str()


def test_rest_request_body() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.body-header": "method.request.body",
            "integration.request.path.pet-name": "method.request.body.petstore.pets[0].name",
            "integration.request.header.X-Price": "method.request.body.petstore.pets[0].price",
            "integration.request.header.X-Obj": "method.request.body.petstore.owner",
            "integration.request.header.X-Flag": "method.request.body.petstore.open",
            "integration.request.header.X-Null": "method.request.body.petstore.none",
            "integration.request.querystring.ids": "method.request.body.petstore.pets[*].id",
        }
    )
    body = orjson.dumps(
        {
            "petstore": {
                "pets": [{"id": 1, "name": "Rex", "price": 249.99}, {"id": 2, "name": "Tom"}],
                "owner": {"name": "Ann"},
                "open": True,
                "none": None,
            }
        }
    )
    out = mapper.apply(_req(body=body))
    assert out.headers == [
        ("body-header", body.decode()),
        ("X-Price", "249.99"),
        ("X-Obj", '{"name":"Ann"}'),
        ("X-Flag", "true"),
    ]
    assert out.path == {"pet-name": "Rex"}
    assert out.query == [("ids", "[1,2]")]
    assert mapper.needs_body and not mapper.needs_context


def test_rest_request_empty_body() -> None:
    mapper = compile_request_parameters({"integration.request.header.X-Body": "method.request.body"})
    assert mapper.apply(_req(body=b"")).headers == []


def test_rest_request_body_not_json() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.X-A": "method.request.body.a",
            "integration.request.header.X-Body": "method.request.body",
        }
    )
    assert mapper.apply(_req(body=b"not json")).headers == [("X-Body", "not json")]


def test_rest_request_body_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = orjson.loads

    def loads(data: bytes) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(params.orjson, "loads", loads)
    mapper = compile_request_parameters(
        {f"integration.request.header.X-{i}": f"method.request.body.k{i}" for i in range(5)}
    )
    out = mapper.apply(_req(body=b'{"k0": "a", "k3": "d"}'))
    assert out.headers == [("X-0", "a"), ("X-3", "d")]
    assert len(calls) == 1


def test_rest_request_unsafe_dynamic_header_values_are_dropped() -> None:
    mapper = compile_request_parameters(
        {
            "integration.request.header.X-A": "method.request.body.a",
            "integration.request.querystring.a": "method.request.body.a",
        }
    )
    out = mapper.apply(_req(body=b'{"a": "x\\r\\nInjected: 1"}'))
    assert out.headers == []
    assert out.query == [("a", "x\r\nInjected: 1")]  # encoded into the URL by the caller


def test_rest_request_context_callable() -> None:
    mapper = compile_request_parameters({"integration.request.header.X-Ip": "context.identity.sourceIp"})
    seen = []

    def ctx(name: str) -> Any:
        seen.append(name)
        return {"identity.sourceIp": "198.51.100.1"}.get(name)

    assert mapper.apply(_req(), ctx).headers == [("X-Ip", "198.51.100.1")]
    # Walking past a leaf (requestId is a string) finds nothing.
    deep = compile_request_parameters({"integration.request.header.X": "context.requestId.x"})
    assert deep.apply(_req(), CONTEXT).headers == []
    assert seen == ["identity.sourceIp"]
    assert mapper.apply(_req(), lambda name: None).headers == []


def test_rest_request_empty_mapping() -> None:
    mapper = compile_request_parameters({})
    assert mapper.apply(_req([("a", "b")])) == ([], [], {})
    assert not mapper.needs_body and not mapper.needs_context


@pytest.mark.parametrize(
    "header", ["Authorization", "Content-Type", "Accept", "X-Amz-Target", "X-Amz-Invocation-Type", "Cookie"]
)
def test_rest_request_mappable_headers(header: str) -> None:
    mapper = compile_request_parameters({f"integration.request.header.{header}": "'v'"})
    assert mapper.apply(_req()).headers == [(header, "v")]


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "Expect",
        "TE",
        "Trailer",
        "Upgrade",
        "Keep-Alive",
        "Max-Forwards",
        "Proxy-Authorization",
        "X-Amzn-Trace-Id",
        "x-amzn-apigateway-api-id",
    ],
)
@pytest.mark.parametrize("kind", ["header", "multivalueheader"])
def test_rest_request_restricted_headers(header: str, kind: str) -> None:
    key = f"integration.request.{kind}.{header}"
    with pytest.raises(MappingError) as ex:
        compile_request_parameters({key: "'v'"})
    assert ex.value.key == key
    assert "restricted" in ex.value.message
    assert key in str(ex.value)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("integration.request.body", "'x'", "expected integration.request."),
        ("integration.request.header.", "'x'", "expected integration.request."),
        ("integration.request.cookie.a", "'x'", "expected integration.request."),
        ("method.request.header.a", "'x'", "expected integration.request."),
        ("integration.request.header.bad name", "'x'", "not a valid header name"),
        ("integration.request.querystring. ", "'x'", "invalid querystring parameter name"),
        ("integration.request.path.a\nb", "'x'", "invalid path parameter name"),
        ("integration.request.header.X", "method.request.cookie.a", "expected method.request."),
        ("integration.request.header.X", "method.request.header.", "expected method.request."),
        ("integration.request.header.X", "$request.header.a", "unsupported source"),
        ("integration.request.header.X", "static", "unsupported source"),
        ("integration.request.header.X", "'a\r\nB: c'", "CR, LF or NUL"),
        ("integration.request.header.X", "method.request.body..name", "recursive descent"),
        ("integration.request.header.X", "method.request.body.a[?(@.b)]", "only [N]"),
        ("integration.request.header.X", "context.", "invalid context variable"),
        ("integration.request.header.X", "context.a..b", "invalid context variable"),
        ("integration.request.header.X", "stageVariables.a-b", "invalid stage variable"),
        ("integration.request.header.X", 3, "must be a string"),
    ],
)
def test_rest_request_invalid(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(MappingError) as ex:
        compile_request_parameters({key: value})
    assert ex.value.key == key
    assert fragment in ex.value.message


def test_rest_request_every_error_is_reported() -> None:
    with pytest.raises(MappingError) as ex:
        compile_request_parameters(
            {
                "integration.request.header.Host": "'h'",
                "integration.request.header.X-Ok": "'fine'",
                "integration.request.querystring.q": "nonsense",
                "integration.request.header.x-ok": "'dup'",
            }
        )
    errors = _errors(ex)
    assert set(errors) == {
        "integration.request.header.Host",
        "integration.request.querystring.q",
        "integration.request.header.x-ok",
    }
    assert "integration.request.header.X-Ok" in errors["integration.request.header.x-ok"]


# ====================================================================== REST responses
def test_rest_response_sources() -> None:
    mapper = compile_response_parameters(
        {
            "method.response.header.Location": "integration.response.body.redirect.url",
            "method.response.header.id": "integration.response.header.x-app-id",
            "method.response.header.all": "integration.response.multivalueheader.X-Multi",
            "method.response.header.last": "integration.response.header.X-Multi",
            "method.response.header.Access-Control-Allow-Origin": "'*'",
            "method.response.header.X-Request": "context.requestId",
            "method.response.header.X-Env": "stageVariables.env",
            "method.response.header.X-Body": "integration.response.body",
            "method.response.header.X-Missing": "integration.response.header.absent",
        }
    )
    body = b'{"redirect": {"url": "https://example.com/x"}}'
    headers = [("X-App-Id", "app-1"), ("x-multi", "a"), ("X-Multi", "b")]
    assert mapper.apply(200, headers, body, CONTEXT, STAGE) == [
        ("Location", "https://example.com/x"),
        ("id", "app-1"),
        ("all", "a,b"),
        ("last", "b"),
        ("Access-Control-Allow-Origin", "*"),
        ("X-Request", "req-42"),
        ("X-Env", "test"),
        ("X-Body", body.decode()),
    ]
    assert mapper.names[0] == "Location"
    assert mapper.needs_body and mapper.needs_context


def test_rest_response_empty_and_unsafe() -> None:
    assert compile_response_parameters({}).apply(200, [], b"") == []
    mapper = compile_response_parameters({"method.response.header.X": "integration.response.body.a"})
    assert mapper.apply(200, [], b'{"a": "1\\n2"}') == []
    assert mapper.apply(200, [], b'{"a": "12"}') == [("X", "12")]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("method.response.header.Content-Length", "'1'", "restricted"),
        ("method.response.header.Transfer-Encoding", "'chunked'", "restricted"),
        ("method.response.header.Connection", "'close'", "restricted"),
        ("method.response.header.x-amzn-RequestId", "'x'", "restricted"),
        ("method.response.body", "'x'", "expected method.response.(header).NAME"),
        ("method.response.header.X", "method.request.header.a", "unsupported source"),
        ("method.response.header.X", "integration.response.path.a", "expected integration.response."),
        ("method.response.header.X", "integration.response.body..a", "recursive descent"),
        ("method.response.header.X", None, "must be a string"),
    ],
)
def test_rest_response_invalid(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(MappingError) as ex:
        compile_response_parameters({key: value})
    assert ex.value.key == key
    assert fragment in ex.value.message


def test_rest_response_duplicate_destination() -> None:
    with pytest.raises(MappingError) as ex:
        compile_response_parameters(
            {"method.response.header.X-A": "'1'", "method.response.header.x-a": "'2'"}
        )
    assert ex.value.key == "method.response.header.x-a"


# ======================================================================= HTTP requests
def test_http_request_aws_examples() -> None:
    # "adds a header named header1 ... API Gateway populates the header with the request ID"
    mapper = compile_http_request_mapping({"append:header.header1": "$context.requestId"})
    req = _req([("Host", "api")])
    out = mapper.apply(req, CONTEXT)
    assert out.headers == [("Host", "api"), ("header1", "req-42")]
    assert out.query == "" and out.path is None
    assert req.headers == [("Host", "api")]  # the request itself is not edited
    # "renames a request header from header1 to header2"
    mapper = compile_http_request_mapping(
        {"append:header.header2": "$request.header.header1", "remove:header.header1": "''"}
    )
    out = mapper.apply(_req([("Header1", "v"), ("Other", "o")]))
    assert out.headers == [("Other", "o"), ("header2", "v")]


def test_http_request_header_ops() -> None:
    mapper = compile_http_request_mapping(
        {
            "append:header.X-Tags": "new",
            "overwrite:header.X-Mode": "${stageVariables.env}",
            "remove:header.X-Drop": "",
            "append:header.X-Fresh": "prefix-$request.header.x-user",
        }
    )
    req = _req([("x-tags", "a"), ("X-Drop", "1"), ("X-Mode", "old"), ("X-Tags", "b"), ("X-User", "u1")])
    out = mapper.apply(req, None, STAGE)
    assert out.headers == [
        ("x-tags", "a,b,new"),
        ("X-User", "u1"),
        ("X-Mode", "test"),
        ("X-Fresh", "prefix-u1"),
    ]


def test_http_request_values_read_the_request_as_received() -> None:
    mapper = compile_http_request_mapping(
        {"overwrite:header.a": "$request.header.b", "overwrite:header.b": "$request.header.a"}
    )
    out = mapper.apply(_req([("a", "1"), ("b", "2")]))
    assert sorted(out.headers) == [("a", "2"), ("b", "1")]


def test_http_request_repeated_values_are_joined() -> None:
    mapper = compile_http_request_mapping(
        {"append:header.X-H": "$request.header.X-Multi", "append:header.X-Q": "$request.querystring.q"}
    )
    out = mapper.apply(_req([("X-Multi", "v1"), ("x-multi", "v2")], query="q=1&q=2"))
    assert out.headers[-2:] == [("X-H", "v1,v2"), ("X-Q", "1,2")]


def test_http_request_missing_sources_leave_destinations_unset() -> None:
    mapper = compile_http_request_mapping(
        {
            "append:header.X-A": "$request.header.absent",
            "overwrite:header.X-Keep": "$request.querystring.absent",
            "append:header.X-Mixed": "a-${request.header.x-user}-${request.header.absent}",
            "append:querystring.q": "$stageVariables.absent",
            "overwrite:path": "/v2/$request.path.absent",
        }
    )
    req = _req([("X-Keep", "kept"), ("X-User", "u")], query="z=1")
    out = mapper.apply(req, None, STAGE)
    assert out == (req.headers, "z=1", None)


def test_http_request_query_ops() -> None:
    mapper = compile_http_request_mapping(
        {
            "append:querystring.tag": "new value",
            "overwrite:querystring.mode": "$request.header.x-mode",
            "remove:querystring.secret": "''",
            "append:querystring.copy": "${request.querystring.a b}",
        }
    )
    out = mapper.apply(_req([("X-Mode", "fast&loose")], query="a+b=%7E1&secret=s&mode=slow&secret=t&x"))
    assert out.query == "a+b=%7E1&x&mode=fast%26loose&tag=new%20value&copy=~1"
    assert compile_http_request_mapping({"remove:querystring.x": ""}).apply(_req(query="x=1")).query == ""


def test_http_request_path() -> None:
    req = _req(path_params={"id": "7", "kind": "cat"}, resource_path="/pets/7")
    for value, expected in [
        ("$request.path", "/pets/7"),
        ("/v2${request.path}", "/v2/pets/7"),
        ("/items/${request.path.kind}/${request.path.id}", "/items/cat/7"),
        ("/items/$request.path.id/details", "/items/7/details"),
        ("/static", "/static"),
    ]:
        assert compile_http_request_mapping({"overwrite:path": value}).apply(req).path == expected


def test_http_request_unbraced_expression_ends_at_a_non_name_character() -> None:
    mapper = compile_http_request_mapping({"append:header.X": "$request.header.a b,$request.header.c/d"})
    assert mapper.apply(_req([("a", "1"), ("c", "3")])).headers[-1] == ("X", "1 b,3/d")


def test_http_request_body_and_context() -> None:
    mapper = compile_http_request_mapping(
        {
            "append:header.X-Name": "$request.body.pet.name",
            "append:header.X-First": "${request.body.tags[0]}",
            "append:header.X-Ip": "${context.identity.sourceIp}",
            "append:header.X-Sub": "$context.authorizer.claims.sub",
            "append:header.X-Dot": "$context.requestId.",
            "append:header.X-Cost": "$5 and $x",
            "append:header.X-Body": "$request.body",
        }
    )
    body = b'{"pet": {"name": "Rex"}, "tags": ["a", "b"]}'
    out = mapper.apply(_req(body=body), CONTEXT)
    assert out.headers == [
        ("X-Name", "Rex"),
        ("X-First", "a"),
        ("X-Ip", "203.0.113.7"),
        ("X-Sub", "abc-123"),
        ("X-Dot", "req-42."),
        ("X-Cost", "$5 and $x"),
        ("X-Body", body.decode()),
    ]
    assert mapper.needs_body and mapper.needs_context


def test_http_request_body_json_path_reads_100_kb() -> None:
    mapper = compile_http_request_mapping({"append:header.X-A": "$request.body.a"})
    small = b'{"a": "yes", "pad": "' + b"x" * 1000 + b'"}'
    big = b'{"a": "yes", "pad": "' + b"x" * params.HTTP_JSON_PATH_BODY_LIMIT + b'"}'
    assert mapper.apply(_req(body=small)).headers == [("X-A", "yes")]
    assert mapper.apply(_req(body=big)).headers == []  # truncated: no longer JSON


def test_http_request_flags() -> None:
    mapper = compile_http_request_mapping({"append:header.X": "static", "remove:header.Y": "$context.x"})
    assert not mapper.needs_body and not mapper.needs_context


@pytest.mark.parametrize("op", ["append", "overwrite", "remove"])
@pytest.mark.parametrize(
    "header",
    [
        *sorted(HTTP_RESERVED_HEADERS),
        *["Access-Control-Allow-Origin", "apigw-requestid", "X-Amz-Date", "x-amzn-trace-id", "AUTHORIZATION"],
    ],
)
def test_http_reserved_headers(op: str, header: str) -> None:
    key = f"{op}:header.{header}"
    with pytest.raises(MappingError) as ex:
        compile_http_request_mapping({key: "v"})
    assert ex.value.key == key and "reserved" in ex.value.message
    with pytest.raises(MappingError) as ex:
        compile_http_response_mapping({"200": {key: "v"}})
    assert ex.value.key == f"200.{key}" and "reserved" in ex.value.message


@pytest.mark.parametrize("header", ["Host", "Content-Type", "Accept", "Cookie", "X-Custom", "Expect"])
def test_http_mappable_headers(header: str) -> None:
    out = compile_http_request_mapping({f"overwrite:header.{header}": "v"}).apply(_req())
    assert out.headers == [(header, "v")]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("append:path", "/x", "can only be overwritten"),
        ("remove:path", "", "can only be overwritten"),
        ("overwrite:statuscode", "200", "response mapping"),
        ("prepend:header.x", "v", "expected append|overwrite|remove"),
        ("append:body.x", "v", "expected append|overwrite|remove"),
        ("append:header", "v", "expected append|overwrite|remove"),
        ("header.x", "v", "expected append|overwrite|remove"),
        ("append:header.bad name", "v", "not a valid header name"),
        ("append:querystring.a\nb", "v", "invalid query string name"),
        ("append:header.x", "$response.header.y", "cannot be used in a request mapping"),
        ("append:header.x", "$request.cookie.y", "unsupported expression"),
        ("append:header.x", "$request", "unsupported expression"),
        ("append:header.x", "${request.header.y", "unterminated ${"),
        ("append:header.x", "${nonsense}", "unsupported expression"),
        ("append:header.x", "${request.header.a b}", "not a valid header name"),
        ("append:header.x", "$request.body..name", "recursive descent"),
        ("append:header.x", "${request.body.a[?(@.b)]}", "only [N]"),
        ("append:header.x", "${context.a-b}", "invalid context variable"),
        ("append:header.x", "${stageVariables.a.b}", "invalid stage variable"),
        ("append:header.x", "line\nbreak", "CR, LF or NUL"),
        ("append:header.x", ["v"], "must be a string"),
    ],
)
def test_http_request_invalid(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(MappingError) as ex:
        compile_http_request_mapping({key: value})
    assert ex.value.key == key
    assert fragment in ex.value.message


def test_http_request_every_error_is_reported() -> None:
    with pytest.raises(MappingError) as ex:
        compile_http_request_mapping(
            {"append:header.Connection": "x", "append:header.ok": "x", "append:path": "/"}
        )
    assert set(_errors(ex)) == {"append:header.Connection", "append:path"}
    assert str(ex.value).startswith("append:header.Connection: ")


# ====================================================================== HTTP responses
def test_http_response_aws_example() -> None:
    mapper = compile_http_response_mapping(
        {
            "500": {"append:header.header1": "$context.requestId", "overwrite:statuscode": "403"},
            "404": {"append:header.error": "$stageVariables.environmentId"},
        }
    )
    headers = [("Content-Type", "application/json")]
    assert mapper.apply(500, headers, b"{}", CONTEXT) == (403, [*headers, ("header1", "req-42")])
    assert mapper.apply(404, headers, b"", None, {"environmentId": "e-1"}) == (
        404,
        [*headers, ("error", "e-1")],
    )
    same = mapper.apply(200, headers, b"")
    assert same == (200, headers) and same[1] is headers
    assert mapper.needs_context and not mapper.needs_body


def test_http_response_sources() -> None:
    mapper = compile_http_response_mapping(
        {
            200: {
                "overwrite:header.X-Version": "v-$response.header.x-backend-version",
                "append:header.X-Id": "$response.body.data.id",
                "remove:header.X-Internal": "",
                "overwrite:statuscode": "$response.header.x-status",
            }
        }
    )
    headers = [("X-Backend-Version", "3"), ("X-Internal", "secret"), ("x-status", "201")]
    status, out = mapper.apply(200, headers, b'{"data": {"id": 9}}')
    assert status == 201
    assert out == [("X-Backend-Version", "3"), ("x-status", "201"), ("X-Version", "v-3"), ("X-Id", "9")]
    assert mapper.needs_body


@pytest.mark.parametrize("got", ["abc", "99", "600", "2000", "", "²00"])
def test_http_response_dynamic_status_must_be_a_code(got: str) -> None:
    mapper = compile_http_response_mapping({"200": {"overwrite:statuscode": "$response.header.s"}})
    assert mapper.apply(200, [("s", got)], b"")[0] == 200
    assert mapper.apply(200, [], b"")[0] == 200


@pytest.mark.parametrize(
    ("mapping", "key", "fragment"),
    [
        ({"abc": {}}, "abc", "status code between 200 and 599"),
        ({"199": {}}, "199", "status code between 200 and 599"),
        ({"600": {}}, "600", "status code between 200 and 599"),
        ({"200": "x"}, "200", "expected a map"),
        ({"200": {"overwrite:statuscode": "abc"}}, "200.overwrite:statuscode", "not an HTTP status code"),
        ({"200": {"overwrite:statuscode": "1000"}}, "200.overwrite:statuscode", "not an HTTP status code"),
        ({"200": {"append:statuscode": "201"}}, "200.append:statuscode", "can only be overwritten"),
        ({"200": {"append:querystring.a": "1"}}, "200.append:querystring.a", "is a request mapping"),
        ({"200": {"overwrite:path": "/"}}, "200.overwrite:path", "is a request mapping"),
        (
            {"200": {"append:header.x": "$request.header.y"}},
            "200.append:header.x",
            "cannot be used in a response",
        ),
        ({"200": {"append:header.x": "$response.querystring.y"}}, "200.append:header.x", "unsupported"),
        ({"200": {"append:header.x": 1}}, "200.append:header.x", "must be a string"),
    ],
)
def test_http_response_invalid(mapping: dict[Any, Any], key: str, fragment: str) -> None:
    with pytest.raises(MappingError) as ex:
        compile_http_response_mapping(mapping)
    assert ex.value.key == key
    assert fragment in ex.value.message

"""Routing as a client sees it: hosts, custom domains, stages, route precedence, URI templates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import EchoServer, Gateway, GatewayFactory, RawConn, ScriptedUpstream, build_request, get

MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'
NOT_FOUND = b'{"message":"Not Found"}'


def mock(body: str) -> dict[str, Any]:
    return {"type": "MOCK", "status": 200, "headers": {"content-type": "text/plain"}, "body": body}


def routing_config(echo_port: int, up_port: int) -> dict[str, Any]:
    return {
        "gateway": {"limits": {"drain_timeout": 2.0}},
        "apis": [
            {
                "name": "alpha",
                "id": "alphaid",
                "kind": "rest",
                "routes": [
                    {"route": "GET /hello", "integration": mock("alpha-hello")},
                    {"route": "GET /items/special", "integration": mock("literal")},
                    {"route": "GET /items/{id}", "integration": mock("param-get")},
                    {"route": "ANY /items/{id}", "integration": mock("param-any")},
                    {"route": "GET /items/{rest+}", "integration": mock("greedy")},
                    {
                        "route": "GET /users/{uid}/orders/{oid}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": "http://127.0.0.1:${stageVariables.port}/u/{uid}/o/{oid}?src=gw",
                        },
                    },
                    {
                        "route": "POST /users/{uid}/orders/{oid}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": "http://127.0.0.1:${stageVariables.port}/new-order/{oid}",
                        },
                    },
                    {
                        "route": "ANY /files/{path+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": "http://127.0.0.1:${stageVariables.port}/static/{path}",
                        },
                    },
                ],
                "stages": [
                    {"name": "prod", "variables": {"port": str(echo_port)}},
                    {"name": "dev", "variables": {"port": str(up_port)}},
                ],
            },
            {
                "name": "beta",
                "id": "betaid",
                "kind": "rest",
                "routes": [{"route": "GET /hello", "integration": mock("beta-hello")}],
                "stages": [{"name": "prod"}],
            },
            {
                "name": "pets",
                "id": "petsid",
                "kind": "http",
                "routes": [{"route": "GET /pets/{id}", "integration": mock("pet")}],
                "stages": [{"name": "$default"}],
            },
            {
                "name": "gamma",
                "id": "gammaid",
                "kind": "http",
                "routes": [
                    {"route": "GET /pets/{id}", "integration": mock("gamma-pet")},
                    {"route": "$default", "integration": mock("gamma-default")},
                ],
                "stages": [{"name": "v2"}],
            },
        ],
        "domains": [
            {
                "name": "api.example.com",
                "mappings": [
                    {"api": "alpha", "stage": "prod", "base_path": "v1"},
                    {"api": "betaid", "stage": "prod", "base_path": ""},
                    {"api": "gamma", "stage": "v2", "base_path": "v2/deep"},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(
    module_gateway_factory: GatewayFactory, echo_server: EchoServer, scripted: ScriptedUpstream
) -> Iterator[Gateway]:
    gateway = module_gateway_factory(routing_config(echo_server.port, scripted.port))
    yield gateway
    gateway.stop()


def assert_missing_token(resp: Any) -> None:
    assert resp.status == 403
    assert resp.body == MISSING_TOKEN
    assert resp.header("x-amzn-ErrorType") == "MissingAuthenticationTokenException"
    assert resp.header("content-type") == "application/json"
    assert resp.header("x-amzn-RequestId")


def assert_not_found(resp: Any) -> None:
    assert resp.status == 404
    assert resp.body == NOT_FOUND
    assert resp.header("content-type") == "application/json"
    assert resp.header("x-amzn-RequestId")


@pytest.mark.parametrize(
    ("method", "target", "host"),
    [
        ("GET", "/prod/nope", "gw.test"),
        ("POST", "/prod/hello", "gw.test"),
        ("GET", "/prod", "gw.test"),
        ("GET", "/prod/nope", "alphaid.execute-api.local"),
        ("GET", "/nostage/hello", "alphaid.execute-api.local"),
        ("GET", "/hello", "betaid.execute-api.local"),
    ],
)
def test_rest_unmatched_is_missing_authentication_token(
    gw: Gateway, method: str, target: str, host: str
) -> None:
    assert_missing_token(get(gw.port, target, host=host, method=method))


def test_http_api_default_stage(gw: Gateway) -> None:
    for host in ("petsid.execute-api.local", "gw.test"):
        r = get(gw.port, "/pets/12", host=host)
        assert (r.status, r.body) == (200, b"pet")
    assert_not_found(get(gw.port, "/cats", host="petsid.execute-api.local"))
    assert_not_found(get(gw.port, "/pets/12/toys", host="petsid.execute-api.local"))
    assert_not_found(get(gw.port, "/pets/12", host="petsid.execute-api.local", method="POST"))


def test_http_api_named_stage(gw: Gateway) -> None:
    host = "gammaid.execute-api.local"
    r = get(gw.port, "/v2/pets/3", host=host)
    assert (r.status, r.body) == (200, b"gamma-pet")
    r = get(gw.port, "/v2/anything/else", host=host)
    assert (r.status, r.body) == (200, b"gamma-default")
    r = get(gw.port, "/v2/pets/3", host=host, method="DELETE")
    assert (r.status, r.body) == (200, b"gamma-default")


def test_unknown_stage_gets_the_api_kinds_not_found(gw: Gateway) -> None:
    assert_not_found(get(gw.port, "/pets/3", host="gammaid.execute-api.local"))
    assert_not_found(get(gw.port, "/nostage", host="gammaid.execute-api.local"))
    assert_missing_token(get(gw.port, "/nostage/hello", host="alphaid.execute-api.local"))
    assert_missing_token(get(gw.port, "/dev2/hello", host="alphaid.execute-api.local"))


def test_api_id_hosts(gw: Gateway) -> None:
    r = get(gw.port, "/prod/hello", host="alphaid.execute-api.local")
    assert (r.status, r.body) == (200, b"alpha-hello")
    r = get(gw.port, "/prod/hello", host="betaid.execute-api.local:443")
    assert (r.status, r.body) == (200, b"beta-hello")
    r = get(gw.port, "/prod/hello", host="BETAID.Execute-Api.Local")
    assert (r.status, r.body) == (200, b"beta-hello")


@pytest.mark.parametrize("host", ["api.example.com", "API.Example.COM:8443"])
def test_custom_domain_base_path_mappings(gw: Gateway, host: str) -> None:
    r = get(gw.port, "/v1/hello", host=host)
    assert (r.status, r.body) == (200, b"alpha-hello")
    r = get(gw.port, "/hello", host=host)
    assert (r.status, r.body) == (200, b"beta-hello")
    r = get(gw.port, "/v2/deep/pets/5", host=host)
    assert (r.status, r.body) == (200, b"gamma-pet")
    r = get(gw.port, "/v2/deep/whatever", host=host)
    assert (r.status, r.body) == (200, b"gamma-default")
    # a base path is a whole segment: /v1x is not /v1, and falls to the root mapping (beta)
    assert_missing_token(get(gw.port, "/v1x/hello", host=host))
    # the stage name is not part of a custom domain's path
    assert_missing_token(get(gw.port, "/v1/prod/hello", host=host))


def test_remembered_routes_keep_methods_stages_and_paths_apart(gw: Gateway) -> None:
    """Each site remembers what a path resolved to (its stage, the route of the last method it
    was asked with, and a proxied route's upstream path): the same paths asked again, with other
    methods, on another stage and after more distinct paths than the site keeps (1,024), route
    as they did the first time."""
    host = "alphaid.execute-api.local"
    # (method, target, status, body, or for a proxied route what the upstream got)
    steps: list[tuple[str, str, int, bytes | dict[str, str]]] = [
        ("GET", "/prod/items/7", 200, b"param-get"),
        ("POST", "/prod/items/7", 200, b"param-any"),
        ("GET", "/prod/items/7", 200, b"param-get"),
        ("GET", "/prod/items/special", 200, b"literal"),
        ("DELETE", "/prod/items/special", 200, b"param-any"),
        ("GET", "/prod/items/a/b", 200, b"greedy"),
        ("POST", "/prod/items/a/b", 403, MISSING_TOKEN),
        ("POST", "/prod/items/a/b", 403, MISSING_TOKEN),
        ("GET", "/prod/items/a/b", 200, b"greedy"),
        ("GET", "/dev/items/7", 200, b"param-get"),
        ("GET", "/nostage/items/7", 403, MISSING_TOKEN),
        ("GET", "/prod/hello", 200, b"alpha-hello"),
        ("GET", "/prod/users/7/orders/9", 200, {"method": "GET", "path": "/u/7/o/9", "query": "src=gw"}),
        ("GET", "/prod/users/8/orders/9", 200, {"method": "GET", "path": "/u/8/o/9", "query": "src=gw"}),
        ("POST", "/prod/users/8/orders/9", 200, {"method": "POST", "path": "/new-order/9", "query": ""}),
        ("GET", "/prod/users/8/orders/9", 200, {"method": "GET", "path": "/u/8/o/9", "query": "src=gw"}),
        ("PUT", "/prod/files/a/b?q=1", 200, {"method": "PUT", "path": "/static/a/b", "query": "q=1"}),
        ("GET", "/prod/files/a/b", 200, {"method": "GET", "path": "/static/a/b", "query": ""}),
        ("GET", "/dev/users/7/orders/9", 200, {"method": "GET", "target": "/u/7/o/9?src=gw"}),
        # Paths are remembered by their raw bytes: other spellings of the same path route (and
        # are forwarded) as the normalised path.
        ("GET", "/prod/items/%37", 200, b"param-get"),
        ("GET", "/prod//items/./7", 200, b"param-get"),
        ("GET", "/prod/x/../users/7/orders/%39", 200, {"method": "GET", "path": "/u/7/o/9"}),
        ("GET", "/prod/items/7", 200, b"param-get"),
    ]

    def check(c: RawConn) -> None:
        for method, target, status, want in steps:
            r = c.request(method, target, host=host)
            assert r.status == status, (method, target)
            if isinstance(want, bytes):
                assert r.body == want, (method, target)
            else:
                doc = r.json()
                assert {k: doc[k] for k in want} == want, (method, target)

    with RawConn(gw.port) as c:
        check(c)
        check(c)
        # More distinct paths than a site keeps, pipelined in batches: each its own route.
        for start in range(0, 1300, 100):
            c.send(
                b"".join(
                    build_request("GET", f"/prod/items/{i}/x", host=host) for i in range(start, start + 100)
                )
            )
            for _ in range(100):
                r = c.read_response()
                assert (r.status, r.body) == (200, b"greedy")
        check(c)
    for _ in range(2):  # an invalid path is never remembered: refused every time
        with RawConn(gw.port) as c:
            assert c.request("GET", "/prod/items/%zz", host=host).status == 400


def test_hosts_change_on_one_keep_alive_connection(gw: Gateway) -> None:
    """The connection remembers the site of the last Host it sent (a keep-alive client sends the
    same one again and again): another Host, or an absolute-form target, routes by its own."""
    steps = [
        ("/prod/hello", "alphaid.execute-api.local", b"alpha-hello"),
        ("/prod/hello", "alphaid.execute-api.local", b"alpha-hello"),
        ("/prod/hello", "betaid.execute-api.local", b"beta-hello"),
        ("/hello", "api.example.com", b"beta-hello"),
        ("/v1/hello", "api.example.com", b"alpha-hello"),
        ("http://betaid.execute-api.local/prod/hello", "alphaid.execute-api.local", b"beta-hello"),
        ("/prod/hello", "alphaid.execute-api.local", b"alpha-hello"),
        ("/pets/12", "petsid.execute-api.local", b"pet"),
    ]
    with RawConn(gw.port) as c:
        for target, host, body in steps:
            r = c.request("GET", target, host=host)
            assert (r.status, r.body) == (200, body), (target, host)


@pytest.mark.parametrize(
    ("target", "host", "body"),
    [
        # the authority of an absolute-form target replaces Host (RFC 9112 3.2.2)
        ("http://api.example.com/v1/hello", "elsewhere.test", b"alpha-hello"),
        ("HTTP://API.example.com:8080/hello?x=1", "elsewhere.test", b"beta-hello"),
        ("http://betaid.execute-api.local/prod/hello", "alphaid.execute-api.local", b"beta-hello"),
    ],
)
def test_absolute_form_targets(gw: Gateway, target: str, host: str, body: bytes) -> None:
    r = get(gw.port, target, host=host)
    assert (r.status, r.body) == (200, body)


@pytest.mark.parametrize(
    "target", ["*", "api.example.com:443", "ftp://api.example.com/v1/hello", "http:///x"]
)
def test_other_target_forms_are_refused(gw: Gateway, target: str) -> None:
    r = get(gw.port, target, method="OPTIONS" if target == "*" else "GET")
    assert r.status == 400


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/prod/items/special", b"literal"),
        ("GET", "/prod/items/42", b"param-get"),
        ("POST", "/prod/items/42", b"param-any"),
        ("DELETE", "/prod/items/special", b"param-any"),
        ("GET", "/prod/items/a/b/c", b"greedy"),
        ("GET", "/prod/items/42/", b"param-get"),
    ],
)
def test_route_precedence(gw: Gateway, method: str, target: str, body: bytes) -> None:
    r = get(gw.port, target, method=method)
    assert (r.status, r.body) == (200, body)


def test_greedy_route_method_not_defined(gw: Gateway) -> None:
    assert_missing_token(get(gw.port, "/prod/items/a/b", method="POST"))


def test_stage_variables_select_the_backend(gw: Gateway, scripted: ScriptedUpstream) -> None:
    r = get(gw.port, "/prod/users/7/orders/9")
    assert r.status == 200
    doc = r.json()
    assert (doc["path"], doc["query"]) == ("/u/7/o/9", "src=gw")
    r = get(gw.port, "/dev/users/7/orders/9?x=1")
    assert r.status == 200
    assert r.json()["target"] == "/u/7/o/9?src=gw&x=1"
    assert scripted.requests_for("/u/7/o/9?src=gw&x=1")


def test_param_substitution_into_upstream_path(gw: Gateway) -> None:
    r = get(gw.port, "/prod/users/a%2Fb/orders/x%20y")
    assert r.status == 200
    assert r.json()["path"] == "/u/a%2Fb/o/x%20y"
    r = get(gw.port, "/prod/files/css/site.css?v=3")
    assert r.status == 200
    assert (r.json()["path"], r.json()["query"]) == ("/static/css/site.css", "v=3")
    r = get(gw.port, "/prod/files/a/../b/c.txt")
    assert r.json()["path"] == "/static/b/c.txt"

"""Parameter mapping on proxy routes and response compression, end to end through a real
gateway and the echo backend (which answers with the request it received).

REST ``requestParameters`` on HTTP_PROXY (headers, query strings and path parameters from the
method request, ``context``, stage variables and literals); HTTP API ``parameterMapping``
(append / overwrite / remove, ``overwrite:path``) and ``responseParameters`` (by status);
reserved headers refused at load with the path of the field; ``minimumCompressionSize``
(gzip / deflate by Accept-Encoding, ``Vary``), and compressed request bodies inflated before
they reach the integration."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn, echo_header_values

pytestmark = pytest.mark.timeout(60)


def call(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str = "gw.test",
) -> Any:
    with RawConn(port) as c:
        return c.request(method, target, headers=headers or [], body=body, host=host)


def rest_api(port: int) -> dict[str, Any]:
    return {
        "name": "mapped",
        "id": "mapped1",
        "minimumCompressionSize": 200,
        "routes": [
            {
                "route": "GET /users/{id}",
                "integration": {
                    "type": "HTTP_PROXY",
                    "uri": f"http://127.0.0.1:{port}/backend/{{uid}}",
                    "requestParameters": {
                        "integration.request.header.X-User": "method.request.querystring.user",
                        "integration.request.header.X-Static": "'fixed value'",
                        "integration.request.header.X-Request-Id": "context.requestId",
                        "integration.request.header.X-Env": "stageVariables.env",
                        "integration.request.querystring.from": "method.request.header.X-From",
                        "integration.request.path.uid": "method.request.path.id",
                    },
                },
            },
            {
                "route": "ANY /echo/{proxy+}",
                "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{port}/{{proxy}}"},
            },
            {
                "route": "GET /big",
                "integration": {
                    "type": "MOCK",
                    "status": 200,
                    "headers": {"content-type": "text/plain"},
                    "body": "x" * 1000,
                },
            },
            {"route": "GET /small", "integration": {"type": "MOCK", "status": 200, "body": '{"small":true}'}},
        ],
        "stages": [{"name": "prod", "variables": {"env": "production"}}],
    }


def http_api(port: int) -> dict[str, Any]:
    return {
        "name": "hmapped",
        "id": "hmapped1",
        "kind": "http",
        "routes": [
            {
                "route": "GET /h/{id}",
                "integration": {
                    "type": "HTTP_PROXY",
                    "uri": f"http://127.0.0.1:{port}/ignored",
                    "parameterMapping": {
                        "overwrite:path": "/items/$request.path.id",
                        "append:header.X-Tag": "tag-$request.querystring.t",
                        "overwrite:header.X-Mode": "mapped",
                        "remove:header.X-Secret": "''",
                        "append:querystring.extra": "$context.stage",
                        "remove:querystring.drop": "''",
                    },
                    "responseParameters": {
                        "200": {"append:header.X-Served-By": "fastgw", "overwrite:statuscode": "202"}
                    },
                },
            }
        ],
        "stages": [{"name": "$default"}],
    }


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, echo_server: Any) -> Any:
    return module_gateway_factory({"apis": [rest_api(echo_server.port), http_api(echo_server.port)]})


def test_rest_request_parameters_reach_the_upstream(gw: Any) -> None:
    resp = call(gw.port, "GET", "/prod/users/42?user=alice", [("X-From", "mobile app")])
    assert resp.status == 200
    doc = resp.json()
    assert doc["path"] == "/backend/42"
    assert "from=mobile%20app" in doc["query"] and "user=alice" in doc["query"]
    assert echo_header_values(resp, "X-User") == ["alice"]
    assert echo_header_values(resp, "X-Static") == ["fixed value"]
    assert echo_header_values(resp, "X-Env") == ["production"]
    assert echo_header_values(resp, "X-Request-Id") == [resp.header("x-amzn-RequestId")]


def test_a_missing_source_leaves_the_destination_unset(gw: Any) -> None:
    doc = call(gw.port, "GET", "/prod/users/7").json()
    names = {k.lower() for k, _ in doc["headers"]}
    assert "x-user" not in names and "x-static" in names
    assert "from=" not in doc["query"]


def test_http_api_parameter_mapping_and_response_parameters(gw: Any) -> None:
    resp = call(
        gw.port,
        "GET",
        "/h/9?t=blue&drop=1&keep=2",
        [("X-Secret", "s3cr3t"), ("X-Mode", "client")],
        host="hmapped1.execute-api.local",
    )
    assert resp.status == 202
    assert resp.header("X-Served-By") == "fastgw"
    doc = resp.json()
    assert doc["path"] == "/items/9"
    assert "keep=2" in doc["query"] and "drop=" not in doc["query"] and "extra=%24default" in doc["query"]
    assert echo_header_values(resp, "X-Tag") == ["tag-blue"]
    assert echo_header_values(resp, "X-Mode") == ["mapped"]
    assert echo_header_values(resp, "X-Secret") == []


def test_responses_are_compressed_over_the_minimum_size(gw: Any) -> None:
    big = call(gw.port, "GET", "/prod/big", [("Accept-Encoding", "gzip, deflate")])
    assert big.status == 200
    assert big.header("content-encoding") == "gzip"
    assert "Accept-Encoding" in (big.header("vary") or "")
    assert gzip.decompress(big.body) == b"x" * 1000
    assert int(big.header("content-length") or 0) == len(big.body) < 1000
    deflated = call(gw.port, "GET", "/prod/big", [("Accept-Encoding", "deflate")])
    assert deflated.header("content-encoding") == "deflate"
    assert zlib.decompress(deflated.body) == b"x" * 1000
    plain = call(gw.port, "GET", "/prod/big")
    assert plain.header("content-encoding") is None and plain.body == b"x" * 1000
    small = call(gw.port, "GET", "/prod/small", [("Accept-Encoding", "gzip")])
    assert small.header("content-encoding") is None and small.json() == {"small": True}
    refused = call(gw.port, "GET", "/prod/big", [("Accept-Encoding", "br")])
    assert refused.header("content-encoding") is None


def test_compressed_request_bodies_are_inflated_before_the_integration(gw: Any) -> None:
    payload = json.dumps({"pets": ["dog"] * 50}).encode()
    resp = call(
        gw.port,
        "POST",
        "/prod/echo/upload",
        [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        gzip.compress(payload),
    )
    assert resp.status == 200
    doc = json.loads(gzip.decompress(resp.body)) if resp.header("content-encoding") == "gzip" else resp.json()
    assert doc["body"] == payload.decode()
    assert echo_header_values_doc(doc, "content-encoding") == []
    assert echo_header_values_doc(doc, "content-length") == [str(len(payload))]
    bad = call(gw.port, "POST", "/prod/echo/upload", [("Content-Encoding", "gzip")], b"not gzip at all")
    assert bad.status == 415
    assert bad.json() == {"message": "Unsupported Media Type"}


def echo_header_values_doc(doc: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"requestParameters": {"integration.request.header.Content-Length": "'5'"}}, "requestParameters"),
        (
            {"requestParameters": {"integration.request.header.X-A": "method.request.bogus.x"}},
            "requestParameters",
        ),
    ],
)
def test_bad_mappings_are_refused_at_load_with_their_path(
    tmp_path: Any, mapping: dict[str, Any], field: str
) -> None:
    import subprocess
    import sys

    import yaml

    api = {
        "name": "bad",
        "routes": [
            {
                "route": "GET /x",
                "integration": {"type": "HTTP_PROXY", "uri": "http://127.0.0.1:9/x", **mapping},
            }
        ],
        "stages": [{"name": "prod"}],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"apis": [api]}))
    got = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)], capture_output=True, text=True, timeout=30
    )
    assert got.returncode != 0
    assert f"apis[0].routes[0].integration.{field}." in got.stdout + got.stderr

# ruff: noqa: E501  (AWS mapping templates are kept on one line each, as users write them)
"""Non-proxy integrations, gateway responses and REST CORS, end to end (real gateway, real
upstreams), with the AWS developer guide's shapes.

- HTTP (non-proxy): request templates chosen by Content-Type, passthroughBehavior (415 as AWS),
  requestParameters, $context.requestOverride, integration responses by selectionPattern with
  response templates, parameters and $context.responseOverride.
- AWS (functions, non-proxy): the mapped event, errorMessage selection patterns.
- MOCK in AWS's form: the CORS preflight the console's "Enable CORS" builds.
- gatewayResponses: status, headers and templates per type; DEFAULT_4XX / DEFAULT_5XX inherited.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import GatewayFactory, RawConn

pytestmark = pytest.mark.timeout(60)

FUNCTIONS = {"pets": {"handler": "tests.pipeline.handlers:pet_lookup"}}

PET_REQUEST = (
    '{"petType": "$input.path(\'$.type\')", "cost": $input.json(\'$.price\'), '
    '"caller": "$context.identity.sourceIp", "env": "$stageVariables.env", '
    '"id": "$input.params(\'id\')"'
    '#set($context.requestOverride.header.X-Override = "yes")}'
)
# The developer guide's PetStore response template (array of pets -> a described list).
PETS_RESPONSE = (
    "#set($inputRoot = $input.path('$'))\n"
    "[\n"
    "#foreach($elem in $inputRoot)\n"
    '  {"description": "Item $elem.id is a $elem.type.", "askingPrice": $elem.price}'
    "#if($foreach.hasNext),#end\n"
    "#end\n"
    "]"
)
CORS_HEADERS = {
    "method.response.header.Access-Control-Allow-Headers": (
        "'Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token'"
    ),
    "method.response.header.Access-Control-Allow-Methods": "'GET,POST,OPTIONS'",
    "method.response.header.Access-Control-Allow-Origin": "'*'",
}


def config(echo: int, scripted: int) -> dict[str, Any]:
    return {
        "functions": FUNCTIONS,
        "plugin_modules": ["tests.pipeline.handlers"],
        "apis": [
            {
                "name": "mapped",
                "id": "mapped2",
                "binaryMediaTypes": ["image/png"],
                "gatewayResponses": {
                    "MISSING_AUTHENTICATION_TOKEN": {
                        "statusCode": 404,
                        "responseTemplates": {
                            "application/json": (
                                '{"error": "no such route", "path": "$context.path", '
                                '"type": "$context.error.responseType"}'
                            )
                        },
                    },
                    "DEFAULT_4XX": {
                        "responseParameters": {
                            "gatewayresponse.header.Access-Control-Allow-Origin": "'*'",
                            "gatewayresponse.header.X-Trace": "method.request.header.X-Trace",
                        }
                    },
                    "DEFAULT_5XX": {
                        "responseTemplates": {
                            "application/json": '{"oops": $context.error.messageString, "id": "$context.requestId"}'
                        }
                    },
                    "WAF_FILTERED": {
                        "statusCode": 451,
                        "responseTemplates": {"application/json": '{"blocked": true}'},
                    },
                    "BAD_REQUEST_PARAMETERS": {
                        "responseTemplates": {
                            "application/json": '{"invalid": "$context.error.validationErrorString"}'
                        }
                    },
                },
                "requestValidators": {"params": {"validateRequestParameters": True}},
                "routes": [
                    {
                        "route": "POST /pets/{id}",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/store/{{id}}",
                            "httpMethod": "PUT",
                            "requestParameters": {
                                "integration.request.header.X-Pet-Id": "method.request.path.id",
                                "integration.request.querystring.source": "'gateway'",
                            },
                            "requestTemplates": {"application/json": PET_REQUEST},
                            "passthroughBehavior": "NEVER",
                            "responses": {
                                "default": {
                                    "statusCode": 201,
                                    "responseParameters": {
                                        "method.response.header.X-Backend-Type": "integration.response.header.Content-Type",
                                        "method.response.header.X-Method": "integration.response.body.method",
                                    },
                                    "responseTemplates": {
                                        "application/json": (
                                            '{"sent": $input.path(\'$.body\'), "path": "$input.path(\'$.path\')"}'
                                        )
                                    },
                                }
                            },
                        },
                    },
                    {
                        "route": "POST /raw",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/raw",
                            "requestTemplates": {"application/json": "{\"wrapped\": $input.json('$')}"},
                            "passthroughBehavior": "WHEN_NO_MATCH",
                        },
                    },
                    {
                        "route": "POST /strict",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/strict",
                            "requestTemplates": {"application/json": "{}"},
                            "passthroughBehavior": "WHEN_NO_TEMPLATES",
                        },
                    },
                    {
                        "route": "GET /status",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{scripted}/status",
                            "requestParameters": {
                                "integration.request.querystring.code": "method.request.querystring.code"
                            },
                            "responses": {
                                "4\\d{2}": {
                                    "statusCode": 400,
                                    "responseTemplates": {
                                        "application/json": '{"backendSaid": "$input.body"}'
                                    },
                                },
                                "5\\d{2}": {
                                    "statusCode": 502,
                                    "responseTemplates": {
                                        "application/json": (
                                            "#set($context.responseOverride.status = 503)"
                                            '#set($context.responseOverride.header.Retry-After = "7")'
                                            '{"down": true}'
                                        )
                                    },
                                },
                                "default": {"statusCode": 200},
                            },
                        },
                    },
                    {
                        "route": "GET /petstore",
                        "integration": {
                            "type": "MOCK",
                            "requestTemplates": {"application/json": '{"statusCode": 200}'},
                            "responses": {
                                "default": {
                                    "statusCode": 200,
                                    "responseTemplates": {
                                        "application/json": (
                                            '#set($pets = $util.parseJson(\'[{"id": 1, "type": "dog", "price": 249.99},'
                                            ' {"id": 2, "type": "cat", "price": 124.99}]\'))'
                                            "[#foreach($elem in $pets)"
                                            '{"description": "Item $elem.id is a $elem.type.", '
                                            '"askingPrice": $elem.price}#if($foreach.hasNext),#end#end]'
                                        )
                                    },
                                }
                            },
                        },
                    },
                    {
                        "route": "GET /fn/{id}",
                        "integration": {
                            "type": "AWS",
                            "uri": "pets",
                            "requestTemplates": {
                                "application/json": (
                                    '{"petId": "$input.params(\'id\')", "caller": "$context.identity.sourceIp"}'
                                )
                            },
                            "responses": {
                                "NotFound.*": {
                                    "statusCode": 404,
                                    "responseTemplates": {
                                        "application/json": "{\"error\": $input.json('$.errorMessage')}"
                                    },
                                },
                                "default": {
                                    "statusCode": 200,
                                    "responseTemplates": {
                                        "application/json": (
                                            '{"pet": "$input.path(\'$.id\')", "kind": "$input.path(\'$.type\')"}'
                                        )
                                    },
                                },
                            },
                        },
                    },
                    {
                        "route": "OPTIONS /pets/{id}",
                        "integration": {
                            "type": "MOCK",
                            "requestTemplates": {"application/json": '{"statusCode": 200}'},
                            "passthroughBehavior": "WHEN_NO_MATCH",
                            "responses": {
                                "default": {
                                    "statusCode": 200,
                                    "responseParameters": CORS_HEADERS,
                                    "responseTemplates": {"application/json": ""},
                                }
                            },
                        },
                    },
                    {
                        "route": "GET /down",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": "http://127.0.0.1:9/down",
                            "timeout_ms": 500,
                        },
                    },
                    {
                        "route": "GET /needs",
                        "integration": {"type": "MOCK", "status": 200, "body": "{}"},
                        "requestValidator": "params",
                        "requestParameters": {"method.request.querystring.q": True},
                    },
                    {
                        "route": "GET /ok",
                        "integration": {"type": "MOCK", "status": 200, "body": '{"ok":true}'},
                    },
                    {
                        "route": "POST /img",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/img",
                            "contentHandling": "CONVERT_TO_TEXT",
                        },
                    },
                    {
                        "route": "POST /img-template",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/img",
                            "requestTemplates": {"image/png": '{"b64": "$input.body"}'},
                        },
                    },
                    {
                        "route": "GET /slow",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{scripted}/slow",
                            "requestParameters": {"integration.request.querystring.ms": "'3000'"},
                            "timeout_ms": 300,
                        },
                    },
                    {
                        # The lean path: templates that never read $context, no parameters.
                        "route": "GET /lean/{id}",
                        "integration": {
                            "type": "HTTP",
                            "uri": f"http://127.0.0.1:{echo}/lean/{{id}}",
                            "requestTemplates": {"application/json": '{"id": "$input.params(\'id\')"}'},
                            "responses": {
                                "default": {
                                    "statusCode": 200,
                                    "responseTemplates": {
                                        "application/json": '{"path": "$input.path(\'$.path\')"}'
                                    },
                                }
                            },
                        },
                    },
                    {
                        "route": "GET /lean-refused",
                        "integration": {
                            "type": "HTTP",
                            "uri": "http://127.0.0.1:9/refused",
                            "requestTemplates": {"application/json": "{}"},
                            "responses": {"default": {"statusCode": 200}},
                        },
                    },
                    {
                        "route": "GET /guarded",
                        "integration": {"type": "MOCK", "status": 200, "body": '{"ok":true}'},
                        "plugins": [{"name": "test-waf"}],
                    },
                ],
                "stages": [{"name": "prod", "variables": {"env": "production"}}],
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, echo_server: Any, scripted: Any) -> Any:
    return module_gateway_factory(config(echo_server.port, scripted.port))


def call(
    gw: Any, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Any:
    with RawConn(gw.port) as c:
        return c.request(method, target, headers=headers or [], body=body)


def test_http_integration_maps_request_and_response(gw: Any) -> None:
    resp = call(
        gw,
        "POST",
        "/prod/pets/7",
        [("Content-Type", "application/json")],
        json.dumps({"type": "dog", "price": 249.99}).encode(),
    )
    assert resp.status == 201, resp.body
    assert resp.header("content-type") == "application/json"
    assert resp.header("X-Backend-Type") == "application/json"
    assert resp.header("X-Method") == "PUT"
    doc = resp.json()
    assert doc["path"] == "/store/7"
    sent = doc["sent"]  # the echoed body, a JSON document written into the template's output
    assert sent == {
        "petType": "dog",
        "cost": 249.99,
        "caller": "127.0.0.1",
        "env": "production",
        "id": "7",
    }


def test_http_integration_sends_only_mapped_parameters_and_overrides(gw: Any, echo_server: Any) -> None:
    resp = call(
        gw,
        "POST",
        "/prod/pets/8?leak=1",
        [("Content-Type", "application/json"), ("X-Private", "secret")],
        b'{"type": "cat", "price": 1}',
    )
    assert resp.status == 201
    # The echo's view of the request is in the response template's input; ask again raw.
    raw = call(gw, "POST", "/prod/raw", [("Content-Type", "application/json")], b'{"a": 1}').json()
    assert json.loads(raw["body"]) == {"wrapped": {"a": 1}}
    names = {k.lower() for k, _ in raw["headers"]}
    assert "x-private" not in names


def test_passthrough_behaviors(gw: Any) -> None:
    never = call(gw, "POST", "/prod/pets/1", [("Content-Type", "text/plain")], b"hello")
    assert never.status == 415
    assert never.json() == {"message": "Unsupported Media Type"}
    assert never.header("x-amzn-ErrorType") == "UnsupportedMediaTypeException"
    passed = call(gw, "POST", "/prod/raw", [("Content-Type", "text/plain")], b"as is").json()
    assert passed["body"] == "as is"
    no_templates = call(gw, "POST", "/prod/strict", [("Content-Type", "text/plain")], b"x")
    assert no_templates.status == 415
    assert call(gw, "POST", "/prod/strict", [("Content-Type", "application/json")], b"{}").status == 200


def test_a_request_template_on_a_body_that_is_not_json_is_a_400(gw: Any) -> None:
    resp = call(gw, "POST", "/prod/pets/1", [("Content-Type", "application/json")], b"{not json")
    assert resp.status == 400
    assert resp.json()["message"].startswith("Could not parse request body into json")


def test_integration_responses_are_selected_by_status_pattern(gw: Any) -> None:
    ok = call(gw, "GET", "/prod/status?code=200")
    assert ok.status == 200 and ok.body == b"status 200"
    client = call(gw, "GET", "/prod/status?code=404")
    assert client.status == 400
    assert client.json() == {"backendSaid": "status 404"}
    server = call(gw, "GET", "/prod/status?code=500")
    assert server.status == 503  # $context.responseOverride.status
    assert server.header("Retry-After") == "7"
    assert server.json() == {"down": True}


def test_petstore_mock_response_template(gw: Any) -> None:
    resp = call(gw, "GET", "/prod/petstore")
    assert resp.status == 200
    assert resp.json() == [
        {"description": "Item 1 is a dog.", "askingPrice": 249.99},
        {"description": "Item 2 is a cat.", "askingPrice": 124.99},
    ]


def test_aws_function_integration_with_error_patterns(gw: Any) -> None:
    ok = call(gw, "GET", "/prod/fn/12")
    assert ok.status == 200
    assert ok.json() == {"pet": "12", "kind": "dog"}
    missing = call(gw, "GET", "/prod/fn/404")
    assert missing.status == 404
    assert missing.json() == {"error": "NotFound: no pet 404"}


def test_rest_cors_preflight_as_the_console_builds_it(gw: Any) -> None:
    resp = call(
        gw,
        "OPTIONS",
        "/prod/pets/3",
        [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")],
    )
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == "*"
    assert resp.header("Access-Control-Allow-Methods") == "GET,POST,OPTIONS"
    assert resp.header("Access-Control-Allow-Headers") == (
        "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token"
    )
    assert resp.body == b""


def test_gateway_responses_customised_per_type(gw: Any) -> None:
    missing = call(gw, "GET", "/prod/nowhere")
    assert missing.status == 404
    assert missing.json() == {
        "error": "no such route",
        "path": "/prod/nowhere",
        "type": "MISSING_AUTHENTICATION_TOKEN",
    }
    assert missing.header("x-amzn-ErrorType") == "MissingAuthenticationTokenException"
    # DEFAULT_4XX applies to a type left unset: UNSUPPORTED_MEDIA_TYPE keeps its status and body.
    unsupported = call(gw, "POST", "/prod/pets/1", [("Content-Type", "text/plain"), ("X-Trace", "t-1")], b"x")
    assert unsupported.status == 415
    assert unsupported.header("Access-Control-Allow-Origin") == "*"
    assert unsupported.header("X-Trace") == "t-1"
    assert unsupported.json() == {"message": "Unsupported Media Type"}
    # DEFAULT_5XX: the integration failure with the template.
    down = call(gw, "GET", "/prod/down")
    assert down.status == 502
    assert down.json() == {"oops": "Internal server error", "id": down.header("x-amzn-RequestId")}
    # A type's own template with the validation error.
    invalid = call(gw, "GET", "/prod/needs")
    assert invalid.status == 400
    assert invalid.json() == {"invalid": "Missing required request parameters: [q]"}
    assert invalid.header("Access-Control-Allow-Origin") is None  # its own type, not DEFAULT_4XX
    # Successful responses are not touched.
    ok = call(gw, "GET", "/prod/ok")
    assert ok.status == 200 and ok.header("Access-Control-Allow-Origin") is None


def test_template_errors_are_config_errors(tmp_path: Any) -> None:
    import subprocess
    import sys

    import yaml

    api = {
        "name": "bad",
        "routes": [
            {
                "route": "GET /x",
                "integration": {
                    "type": "MOCK",
                    "requestTemplates": {"application/json": "#foreach($a in $b)"},
                    "responses": {"default": {"statusCode": 200}},
                },
            }
        ],
        "gatewayResponses": {"THROTTLED": {"responseTemplates": {"application/json": "#if($x"}}},
        "stages": [{"name": "prod"}],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"apis": [api]}))
    got = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)], capture_output=True, text=True, timeout=30
    )
    out = got.stdout + got.stderr
    assert got.returncode != 0
    assert "apis[0].routes[0].integration.requestTemplates.application/json" in out
    assert "apis[0].gatewayResponses.THROTTLED.responseTemplates.application/json" in out


def test_a_plugin_raises_a_gateway_response_type(gw: Any) -> None:
    assert call(gw, "GET", "/prod/guarded").status == 200
    blocked = call(gw, "GET", "/prod/guarded?attack=1")
    assert blocked.status == 451
    assert blocked.json() == {"blocked": True}
    assert blocked.header("x-amzn-ErrorType") == "WAFFilteredException"


def test_an_integration_timeout_is_a_504_and_the_gateway_keeps_serving(gw: Any) -> None:
    import time

    start = time.monotonic()
    slow = call(gw, "GET", "/prod/slow")
    assert slow.status == 504
    assert time.monotonic() - start < 2.5
    assert slow.json() == {"oops": "Endpoint request timed out", "id": slow.header("x-amzn-RequestId")}
    assert call(gw, "GET", "/prod/ok").status == 200


def test_a_client_gone_while_a_mapped_request_waits_leaves_the_gateway_serving(gw: Any) -> None:
    """The mapped pipeline runs without a Task (runtime._Stepper): a client that leaves while
    the upstream is slow cancels it, and the connection's next clients are served."""
    import socket
    import time

    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        sock.sendall(b"GET /prod/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        sock.close()
    assert call(gw, "GET", "/prod/ok").status == 200
    slow = call(gw, "GET", "/prod/slow")
    assert slow.status == 504
    assert call(gw, "GET", "/prod/ok").json() == {"ok": True}


def test_pipelined_mapped_requests_are_answered_in_order(gw: Any) -> None:
    """The lean mapped path resumes its pipeline inside the upstream's callback
    (``runtime._Wait``): requests sent in one write get their own answers, in order, and an
    unreachable upstream is a 502 while the connection keeps serving."""
    import socket

    ids = [str(i) for i in range(6)]
    wire = b"".join(b"GET /prod/lean/%s HTTP/1.1\r\nHost: x\r\n\r\n" % i.encode() for i in ids)
    wire += b"GET /prod/lean-refused HTTP/1.1\r\nHost: x\r\n\r\n"
    wire += b"GET /prod/lean/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(wire)
        got = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    bodies = []
    rest = got
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(v) for k, _, v in (ln.partition(b": ") for ln in lines[1:]) if k.lower() == b"content-length"
        )
        bodies.append((lines[0], rest[:length]))
        rest = rest[length:]
    assert [b for _, b in bodies[:6]] == [b'{"path": "/lean/%s"}' % i.encode() for i in ids]
    assert all(status == b"HTTP/1.1 200 OK" for status, _ in bodies[:6])
    assert bodies[6][0] == b"HTTP/1.1 502 Bad Gateway", bodies[6]
    assert json.loads(bodies[6][1])["oops"] == "Internal server error"  # this API's DEFAULT_5XX
    assert bodies[7] == (b"HTTP/1.1 200 OK", b'{"path": "/lean/last"}')
    assert len(bodies) == 8


def test_binary_media_types_and_content_handling_on_the_request(gw: Any) -> None:
    import base64

    png = bytes(range(256))
    as_text = call(gw, "POST", "/prod/img", [("Content-Type", "image/png")], png).json()
    assert as_text["body"] == base64.b64encode(png).decode()  # CONVERT_TO_TEXT: base64 to the endpoint
    templated = call(gw, "POST", "/prod/img-template", [("Content-Type", "image/png")], png).json()
    # A binary payload reaches a template as base64 text in $input.body (AWS).
    assert json.loads(templated["body"]) == {"b64": base64.b64encode(png).decode()}

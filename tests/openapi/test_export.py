"""OpenAPI export (fastgw.openapi.export): AWS's GetExport shapes, fastgw extensions, plain documents.

The APIs below cover every config feature an export carries; each is validated through
``decode_config`` first, exported as OpenAPI 3.0 and Swagger 2.0, checked field by field and
validated as OpenAPI (openapi-spec-validator when importable). Config -> export -> import
(``fastgw.openapi.importer.import_document``) must give the same Api, up to the differences
listed in ``ROUND_TRIP_IGNORED``, and the export of that import is the export again
(tests/openapi/test_round_trip.py does the same over every OpenAPI document of the repository).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastgw.config.load import decode_config, load_config_file
from fastgw.config.model import Api
from fastgw.openapi.export import DEFAULT_REGION, config_builtins, dump, export_api

ANY = "x-amazon-apigateway-any-method"
INTEG = "x-amazon-apigateway-integration"

REST_API: dict[str, Any] = {
    "name": "pets",
    "id": "abc123defg",
    "description": "Pet store",
    "apiKeySource": "AUTHORIZER",
    "binaryMediaTypes": ["image/png", "application/octet-stream"],
    "minimumCompressionSize": 1024,
    "requestValidators": {
        "all": {"validateRequestBody": True, "validateRequestParameters": True},
        "params": {"validateRequestParameters": True},
    },
    "requestValidator": "params",
    "policy": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/*",
            }
        ],
    },
    "gatewayResponses": {
        "UNAUTHORIZED": {
            "statusCode": "401",
            "responseTemplates": {"application/json": '{"message": $context.error.messageString}'},
        },
        "DEFAULT_4XX": {"responseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}},
    },
    "models": {
        "Pet": {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "owner": {"$ref": "https://apigateway.amazonaws.com/restapis/abc123defg/models/Owner"},
                "tags": {
                    "type": "array",
                    "items": {"$ref": "https://apigateway.amazonaws.com/restapis/abc123defg/models/Tag"},
                },
            },
            "required": ["id"],
        },
        "Owner": {"type": "object", "properties": {"name": {"type": "string"}}},
        "Tag": {"type": "string"},
        "PetForm": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
    "authorizers": [
        {
            "name": "tok",
            "type": "TOKEN",
            "authorizerUri": "authfn",
            "identitySource": "method.request.header.Authorization",
            "identityValidationExpression": "^Bearer .+$",
            "authorizerResultTtlInSeconds": 60,
        },
        {
            "name": "req",
            "type": "REQUEST",
            "authorizerUri": "arn:aws:lambda:us-east-1:123456789012:function:auth",
            "identitySource": "method.request.header.X-User, method.request.querystring.tenant",
            "timeout_ms": 2000,
            "cache_per_route": True,
        },
        {
            "name": "cognito",
            "type": "COGNITO_USER_POOLS",
            "providerARNs": ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc"],
            "identitySource": "method.request.header.Authorization",
        },
        {
            "name": "jwt",
            "type": "JWT",
            "jwtConfiguration": {
                "issuer": "https://issuer.example.com",
                "audience": ["aud1"],
                "jwks_uri": "https://issuer.example.com/jwks",
                "algorithms": ["RS256", "ES256"],
            },
        },
    ],
    "stages": [
        {"name": "prod", "description": "Production", "variables": {"backend": "127.0.0.1:9000"}},
        {
            "name": "dev",
            "variables": {"backend": "127.0.0.1:9100"},
            "throttle": {"rateLimit": 10, "burstLimit": 5},
        },
    ],
    "plugins": [{"name": "request_id", "config": {"header": "X-Req"}}],
    "routes": [
        {
            "route": "GET /pets",
            "integration": {
                "type": "HTTP_PROXY",
                "uri": "http://${stageVariables.backend}/pets",
                "targets": ["http://127.0.0.1:9001"],
                "timeout_ms": 40000,
                "pass_query": False,
                "requestParameters": {
                    "integration.request.header.X-Tenant": "method.request.header.X-Tenant"
                },
            },
            "apiKeyRequired": True,
            "authorizer": "tok",
            "requestParameters": {
                "method.request.querystring.limit": False,
                "method.request.header.X-Tenant": True,
            },
            "cacheKeyParameters": ["method.request.querystring.limit"],
            "plugins": [{"name": "rate_limit", "config": {"rate": 5}}],
        },
        {
            "route": "POST /pets",
            "integration": {"type": "AWS_PROXY", "uri": "createPet", "timeout_ms": 5000},
            "authorizer": "cognito",
            "authorizationScopes": ["pets/write"],
            "requestModels": {"application/json": "Pet", "application/x-www-form-urlencoded": "PetForm"},
            "requestValidator": "all",
        },
        {
            "route": "GET /pets/{petId}",
            "integration": {
                "type": "HTTP",
                "uri": "http://127.0.0.1:9000/pets/{id}",
                "httpMethod": "GET",
                "requestParameters": {"integration.request.path.id": "method.request.path.petId"},
                "requestTemplates": {"application/json": '{"id": "$input.params(\'petId\')"}'},
                "passthroughBehavior": "NEVER",
                "contentHandling": "CONVERT_TO_TEXT",
                "responses": {
                    "default": {
                        "statusCode": 200,
                        "responseParameters": {
                            "method.response.header.X-Trace": "integration.response.header.X-Trace"
                        },
                        "responseTemplates": {"application/json": "$input.body"},
                    },
                    "4\\d{2}": {"statusCode": "404"},
                },
            },
            "authorizer": "tok",
            "requestParameters": {"method.request.path.petId": True},
        },
        {
            "route": "DELETE /pets/{petId}",
            "integration": {
                "type": "AWS",
                "uri": "deletePet",
                "requestTemplates": {"application/json": '{"id": "$input.params(\'petId\')"}'},
                "passthroughBehavior": "WHEN_NO_TEMPLATES",
                "responses": {
                    "default": {"statusCode": 204},
                    "Not found.*": {"statusCode": 404, "contentHandling": "CONVERT_TO_TEXT"},
                },
            },
            "authorizationType": "AWS_IAM",
        },
        {
            "route": "OPTIONS /pets",
            "integration": {
                "type": "MOCK",
                "requestTemplates": {"application/json": '{"statusCode": 200}'},
                "responses": {
                    "default": {
                        "statusCode": 200,
                        "responseParameters": {"method.response.header.Access-Control-Allow-Origin": "'*'"},
                    }
                },
            },
        },
        {
            "route": "GET /health",
            "integration": {
                "type": "MOCK",
                "status": 203,
                "headers": {"Content-Type": "application/json"},
                "body": '{"ok": true}',
            },
        },
        {
            "route": "ANY /proxy/{path+}",
            "integration": {"type": "HTTP_PROXY", "uri": "http://127.0.0.1:9000/{path}"},
            "authorizer": "req",
        },
        {
            "route": "GET /jwt",
            "integration": {"type": "MOCK"},
            "authorizer": "jwt",
            "authorizationScopes": ["read"],
        },
    ],
}

HTTP_API: dict[str, Any] = {
    "name": "orders",
    "kind": "http",
    "description": "Orders HTTP API",
    "cors": {
        "allowOrigins": ["https://app.example.com"],
        "allowMethods": ["GET", "POST"],
        "allowHeaders": ["content-type"],
        "exposeHeaders": ["x-trace"],
        "maxAge": 300,
        "allowCredentials": True,
    },
    "authorizers": [
        {
            "name": "jwt",
            "type": "JWT",
            "identitySource": "$request.header.Authorization",
            "jwtConfiguration": {"issuer": "https://issuer.example.com", "audience": ["orders"]},
        },
        {
            "name": "lambda",
            "type": "REQUEST",
            "authorizerUri": "authfn",
            "identitySource": ["$request.header.Authorization", "$request.querystring.key"],
            "authorizerPayloadFormatVersion": "2.0",
            "enableSimpleResponses": True,
            "authorizerResultTtlInSeconds": 0,
        },
    ],
    "stages": [{"name": "$default"}, {"name": "beta", "variables": {"v": "1"}}],
    "routes": [
        {
            "route": "GET /orders/{id}",
            "integration": {
                "type": "HTTP_PROXY",
                "uri": "http://127.0.0.1:9000/orders/{id}",
                "parameterMapping": {
                    "append:header.X-Request-Id": "$context.requestId",
                    "overwrite:path": "/v2/orders/$request.path.id",
                },
                "responseParameters": {
                    "200": {"overwrite:header.Cache-Control": "max-age=60"},
                    "404": {"overwrite:statuscode": "410"},
                },
                "timeout_ms": 30000,
            },
            "authorizer": "jwt",
            "authorizationScopes": ["orders/read"],
        },
        {
            "route": "POST /orders",
            "integration": {"type": "AWS_PROXY", "uri": "createOrder", "payloadFormatVersion": "1.0"},
            "authorizer": "lambda",
        },
        {
            "route": "ANY /admin/{proxy+}",
            "integration": {"type": "AWS_PROXY", "uri": "admin", "timeout_ms": 45000},
            "authorizationType": "AWS_IAM",
        },
        {"route": "GET /admin/{proxy+}", "integration": {"type": "MOCK", "status": 204}},
        {"route": "$default", "integration": {"type": "HTTP_PROXY", "uri": "http://127.0.0.1:9000/"}},
    ],
}


def _api(data: dict[str, Any]) -> Api:
    config = decode_config({"apis": [copy.deepcopy(data)]})
    return config.apis[0]


@pytest.fixture(scope="module")
def rest() -> Api:
    return _api(REST_API)


@pytest.fixture(scope="module")
def http() -> Api:
    return _api(HTTP_API)


@pytest.fixture(scope="module")
def rest3(rest: Api) -> dict[str, Any]:
    return export_api(rest, spec="oas30", stage="prod")


@pytest.fixture(scope="module")
def rest2(rest: Api) -> dict[str, Any]:
    return export_api(rest, spec="swagger", stage="prod")


@pytest.fixture(scope="module")
def http3(http: Api) -> dict[str, Any]:
    return export_api(http, stage="$default")


def _walk_keys(node: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k
            yield from _walk_keys(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_keys(v, f"{path}[{i}]")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _aws_conventions_adapted(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy without the two AWS export conventions a strict validator rejects.

    AWS writes the greedy path ``/{proxy+}`` with a parameter named ``proxy`` (OpenAPI's
    template name would be ``proxy+``) and marks the ``$default`` route with ``isDefaultRoute``
    (not an OpenAPI field). Real AWS exports carry both; they are adapted only to validate.
    """
    doc = copy.deepcopy(doc)
    for template, item in doc["paths"].items():
        greedy = {m.group(1) for m in re.finditer(r"\{([^{}]+)\+\}", template)}
        ops = [v for k, v in item.items() if k != "parameters"]
        for params in [item.get("parameters", []), *(op.get("parameters", []) for op in ops)]:
            for p in params:
                if p["in"] == "path" and p["name"] in greedy:
                    p["name"] += "+"
        for op in ops:
            op.pop("isDefaultRoute", None)
    return doc


def _validate(doc: dict[str, Any]) -> None:
    doc = _aws_conventions_adapted(json.loads(json.dumps(doc)))
    if importlib.util.find_spec("openapi_spec_validator") is not None:
        from openapi_spec_validator import validate

        validate(doc)
        return
    # Without the validator: the required top-level fields and basic shapes.
    if "openapi" in doc:  # pragma: no cover - the validator is installed in CI
        assert doc["openapi"].startswith("3.0.")
        assert {"title", "version"} <= set(doc["info"])
        for item in doc["paths"].values():
            for key, op in item.items():
                if key != "parameters" and not key.startswith("x-"):
                    assert op["responses"]
    else:  # pragma: no cover
        assert doc["swagger"] == "2.0"
        assert {"title", "version"} <= set(doc["info"])
        assert doc["basePath"].startswith("/")


# ---------------------------------------------------------------------------------------------- REST
def test_rest_oas30_top_level(rest3: dict[str, Any]) -> None:
    assert list(rest3)[:5] == ["openapi", "info", "servers", "paths", "components"]
    assert rest3["openapi"] == "3.0.1"
    assert rest3["info"] == {"title": "pets", "description": "Pet store", "version": "1.0"}
    assert rest3["servers"] == [
        {
            "url": f"https://abc123defg.execute-api.{DEFAULT_REGION}.amazonaws.com/{{basePath}}",
            "description": "Production",
            "variables": {"basePath": {"default": "/prod"}},
        }
    ]
    assert list(rest3["paths"]) == sorted(rest3["paths"])
    assert list(rest3["paths"]) == ["/health", "/jwt", "/pets", "/pets/{petId}", "/proxy/{path+}"]
    assert list(rest3["paths"]["/pets"]) == ["get", "post", "options"]
    assert list(rest3["paths"]["/proxy/{path+}"]) == [ANY]
    assert "x-amazon-apigateway-importexport-version" not in rest3


def test_rest_root_extensions(rest3: dict[str, Any], rest2: dict[str, Any]) -> None:
    for doc in (rest3, rest2):
        assert doc["x-amazon-apigateway-api-key-source"] == "AUTHORIZER"
        assert doc["x-amazon-apigateway-binary-media-types"] == ["image/png", "application/octet-stream"]
        assert doc["x-amazon-apigateway-minimum-compression-size"] == 1024
        assert doc["x-amazon-apigateway-request-validators"] == {
            "all": {"validateRequestBody": True, "validateRequestParameters": True},
            "params": {"validateRequestBody": False, "validateRequestParameters": True},
        }
        assert doc["x-amazon-apigateway-request-validator"] == "params"
        assert doc["x-amazon-apigateway-policy"] == REST_API["policy"]
        assert doc["x-amazon-apigateway-gateway-responses"] == {
            "DEFAULT_4XX": {
                "responseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}
            },
            "UNAUTHORIZED": {
                "statusCode": 401,
                "responseTemplates": {"application/json": '{"message": $context.error.messageString}'},
            },
        }
        assert "x-amazon-apigateway-cors" not in doc


def test_rest_parameters_body_and_responses(rest3: dict[str, Any]) -> None:
    get_pets = rest3["paths"]["/pets"]["get"]
    assert get_pets["parameters"] == [
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}},
    ]
    assert get_pets["responses"] == {"200": {"description": "200 response"}}
    post = rest3["paths"]["/pets"]["post"]
    assert "parameters" not in post
    assert post["requestBody"] == {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}},
            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/PetForm"}},
        }
    }
    assert post["x-amazon-apigateway-request-validator"] == "all"
    get_pet = rest3["paths"]["/pets/{petId}"]["get"]
    assert get_pet["parameters"] == [
        {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert get_pet["responses"] == {
        "200": {"description": "200 response", "headers": {"X-Trace": {"schema": {"type": "string"}}}},
        "404": {"description": "404 response"},
    }
    delete = rest3["paths"]["/pets/{petId}"]["delete"]
    # The route does not name method.request.path.petId: declared (OpenAPI requires it), marked.
    assert delete["parameters"] == [{**get_pet["parameters"][0], "x-fastgw-implicit": True}]
    assert list(delete["responses"]) == ["204", "404"]
    options = rest3["paths"]["/pets"]["options"]
    assert options["responses"] == {
        "200": {
            "description": "200 response",
            "headers": {"Access-Control-Allow-Origin": {"schema": {"type": "string"}}},
        }
    }
    health = rest3["paths"]["/health"]["get"]
    assert health["responses"] == {
        "203": {"description": "203 response", "headers": {"Content-Type": {"schema": {"type": "string"}}}}
    }
    proxy = rest3["paths"]["/proxy/{path+}"][ANY]
    # AWS's convention: the greedy template /{path+} declares a parameter named "path".
    assert proxy["parameters"] == [
        {
            "name": "path",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "x-fastgw-implicit": True,
        }
    ]


def test_rest_integrations(rest3: dict[str, Any]) -> None:
    paths = rest3["paths"]
    assert paths["/pets"]["get"][INTEG] == {
        "httpMethod": "GET",
        "uri": "http://${stageVariables.backend}/pets",
        "requestParameters": {"integration.request.header.X-Tenant": "method.request.header.X-Tenant"},
        "cacheKeyParameters": ["method.request.querystring.limit"],
        "type": "http_proxy",
    }
    assert paths["/pets"]["post"][INTEG] == {
        "httpMethod": "POST",
        "uri": "createPet",
        "timeoutInMillis": 5000,
        "type": "aws_proxy",
    }
    assert paths["/pets/{petId}"]["get"][INTEG] == {
        "httpMethod": "GET",
        "uri": "http://127.0.0.1:9000/pets/{id}",
        "responses": {
            "default": {
                "statusCode": "200",
                "responseParameters": {
                    "method.response.header.X-Trace": "integration.response.header.X-Trace"
                },
                "responseTemplates": {"application/json": "$input.body"},
            },
            "4\\d{2}": {"statusCode": "404"},
        },
        "requestParameters": {"integration.request.path.id": "method.request.path.petId"},
        "requestTemplates": {"application/json": '{"id": "$input.params(\'petId\')"}'},
        "passthroughBehavior": "never",
        "contentHandling": "CONVERT_TO_TEXT",
        "timeoutInMillis": 29000,
        "type": "http",
    }
    delete = paths["/pets/{petId}"]["delete"][INTEG]
    assert delete["type"] == "aws"
    assert delete["httpMethod"] == "POST"
    assert delete["passthroughBehavior"] == "when_no_templates"
    assert delete["responses"] == {
        "default": {"statusCode": "204"},
        "Not found.*": {"statusCode": "404", "contentHandling": "CONVERT_TO_TEXT"},
    }
    assert paths["/pets"]["options"][INTEG] == {
        "responses": {
            "default": {
                "statusCode": "200",
                "responseParameters": {"method.response.header.Access-Control-Allow-Origin": "'*'"},
            }
        },
        "requestTemplates": {"application/json": '{"statusCode": 200}'},
        "passthroughBehavior": "when_no_match",
        "type": "mock",
    }
    # fastgw's simple MOCK: AWS's equivalent mapped MOCK, and the simple form for fastgw.
    health = paths["/health"]["get"]
    assert health[INTEG] == {
        "responses": {
            "default": {
                "statusCode": "203",
                "responseParameters": {"method.response.header.Content-Type": "'application/json'"},
                "responseTemplates": {"application/json": '{"ok": true}'},
            }
        },
        "requestTemplates": {"application/json": '{"statusCode": 203}'},
        "passthroughBehavior": "when_no_match",
        "type": "mock",
    }
    assert health["x-fastgw-integration"] == {
        "mock": {"status": 203, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}
    }
    assert paths["/proxy/{path+}"][ANY][INTEG]["httpMethod"] == "ANY"


def test_rest_security(rest3: dict[str, Any]) -> None:
    paths = rest3["paths"]
    # AWS reads one requirement object: the authorizer and the API key together.
    assert paths["/pets"]["get"]["security"] == [{"tok": [], "api_key": []}]
    assert paths["/pets"]["post"]["security"] == [{"cognito": ["pets/write"]}]
    assert paths["/pets/{petId}"]["get"]["security"] == [{"tok": []}]
    assert paths["/pets/{petId}"]["delete"]["security"] == [{"sigv4": []}]
    assert paths["/proxy/{path+}"][ANY]["security"] == [{"req": []}]
    assert paths["/jwt"]["get"]["security"] == [{"jwt": ["read"]}]
    assert "security" not in paths["/health"]["get"]
    schemes = rest3["components"]["securitySchemes"]
    assert list(schemes) == ["api_key", "sigv4", "cognito", "jwt", "req", "tok"]
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert schemes["sigv4"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }
    assert schemes["tok"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "custom",
        "x-amazon-apigateway-authorizer": {
            "type": "token",
            "authorizerUri": "authfn",
            "identitySource": "method.request.header.Authorization",
            "identityValidationExpression": "^Bearer .+$",
            "authorizerResultTtlInSeconds": 60,
        },
    }
    assert schemes["req"] == {
        "type": "apiKey",
        "name": "Unused",
        "in": "header",
        "x-amazon-apigateway-authtype": "custom",
        "x-amazon-apigateway-authorizer": {
            "type": "request",
            "authorizerUri": "arn:aws:lambda:us-east-1:123456789012:function:auth",
            "identitySource": "method.request.header.X-User, method.request.querystring.tenant",
            "authorizerResultTtlInSeconds": 300,
        },
        "x-fastgw-authorizer": {"cache_per_route": True, "timeout_ms": 2000},
    }
    assert schemes["cognito"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "cognito_user_pools",
        "x-amazon-apigateway-authorizer": {
            "type": "cognito_user_pools",
            "providerARNs": ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc"],
            "identitySource": "method.request.header.Authorization",
            "authorizerResultTtlInSeconds": 300,
        },
    }
    assert schemes["jwt"] == {
        "type": "oauth2",
        "flows": {},
        "x-amazon-apigateway-authorizer": {
            "identitySource": "method.request.header.Authorization",
            "jwtConfiguration": {"audience": ["aud1"], "issuer": "https://issuer.example.com"},
            "type": "jwt",
        },
        "x-fastgw-authorizer": {
            "jwtConfiguration": {
                "jwks_uri": "https://issuer.example.com/jwks",
                "algorithms": ["RS256", "ES256"],
            }
        },
    }


def test_rest_fastgw_extensions(rest3: dict[str, Any]) -> None:
    assert rest3["x-fastgw-api"] == {
        "kind": "rest",
        "id": "abc123defg",
        "stages": [
            {"name": "prod", "variables": {"backend": "127.0.0.1:9000"}, "description": "Production"},
            {
                "name": "dev",
                "variables": {"backend": "127.0.0.1:9100"},
                "throttle": {"rateLimit": 10.0, "burstLimit": 5},
            },
        ],
        "plugins": [{"name": "request_id", "config": {"header": "X-Req"}}],
    }
    get_pets = rest3["paths"]["/pets"]["get"]
    assert get_pets["x-fastgw-route"] == {"plugins": [{"name": "rate_limit", "config": {"rate": 5}}]}
    # 40 s is beyond AWS's REST limit: no timeoutInMillis, the value stays fastgw's.
    assert get_pets["x-fastgw-integration"] == {
        "targets": ["http://127.0.0.1:9001"],
        "timeout_ms": 40000,
        "pass_query": False,
    }
    assert "x-fastgw-route" not in rest3["paths"]["/pets"]["post"]
    assert "x-fastgw-integration" not in rest3["paths"]["/pets"]["post"]


def test_route_fields_without_aws_form() -> None:
    api = _api(
        {
            "name": "odd",
            "routes": [
                {
                    "route": "GET /a/{id}",
                    "integration": {
                        "type": "AWS_PROXY",
                        "uri": "fn",
                        "payloadFormatVersion": "1.0",
                        "timeout_ms": 29001,
                    },
                    "authorizationScopes": ["s"],
                    "requestParameters": {
                        "method.request.header.X.Y": True,
                        "method.request.multivaluequerystring.q": False,
                        "method.request.path.id": False,
                    },
                }
            ],
        }
    )
    op = export_api(api)["paths"]["/a/{id}"]["get"]
    assert op["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "X.Y", "in": "header", "required": True, "schema": {"type": "string"}},
    ]
    assert "security" not in op
    assert op["x-fastgw-route"] == {
        "authorizationScopes": ["s"],
        "requestParameters": {
            "method.request.multivaluequerystring.q": False,
            "method.request.path.id": False,
        },
    }
    # REST integrations have no payload format; 29001 ms is past AWS's REST limit.
    assert "timeoutInMillis" not in op[INTEG]
    assert op["x-fastgw-integration"] == {"payloadFormatVersion": "1.0", "timeout_ms": 29001}


def test_rest_swagger(rest2: dict[str, Any]) -> None:
    assert list(rest2)[:7] == [
        "swagger",
        "info",
        "host",
        "basePath",
        "schemes",
        "paths",
        "securityDefinitions",
    ]
    assert rest2["swagger"] == "2.0"
    assert rest2["host"] == f"abc123defg.execute-api.{DEFAULT_REGION}.amazonaws.com"
    assert rest2["basePath"] == "/prod"
    assert rest2["schemes"] == ["https"]
    assert "components" not in rest2 and "servers" not in rest2
    post = rest2["paths"]["/pets"]["post"]
    assert post["consumes"] == ["application/json", "application/x-www-form-urlencoded"]
    assert post["parameters"] == [
        {"in": "body", "name": "Pet", "required": True, "schema": {"$ref": "#/definitions/Pet"}}
    ]
    # A body parameter holds one model: the full map stays in the fastgw extension.
    assert post["x-fastgw-route"] == {
        "requestModels": {"application/json": "Pet", "application/x-www-form-urlencoded": "PetForm"}
    }
    assert rest2["paths"]["/pets"]["get"]["parameters"][0] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "type": "string",
    }
    assert rest2["paths"]["/pets/{petId}"]["get"]["responses"]["200"] == {
        "description": "200 response",
        "headers": {"X-Trace": {"type": "string"}},
    }
    assert rest2["securityDefinitions"]["jwt"]["type"] == "apiKey"
    assert rest2["securityDefinitions"]["jwt"]["x-amazon-apigateway-authorizer"]["type"] == "jwt"
    assert set(rest2["definitions"]) == {"Owner", "Pet", "PetForm", "Tag"}


def test_models_refs_rewritten(rest3: dict[str, Any], rest2: dict[str, Any]) -> None:
    for doc, prefix in ((rest3, "#/components/schemas/"), (rest2, "#/definitions/")):
        models = doc["components"]["schemas"] if "components" in doc else doc["definitions"]
        assert list(models) == ["Owner", "Pet", "PetForm", "Tag"]
        pet = models["Pet"]
        assert "$schema" not in pet
        assert pet["properties"]["owner"] == {"$ref": prefix + "Owner"}
        assert pet["properties"]["tags"]["items"] == {"$ref": prefix + "Tag"}
        assert pet["required"] == ["id"]
        assert not any("apigateway.amazonaws.com/restapis" in s for s in _strings(doc))


# ---------------------------------------------------------------------------------------------- HTTP
def test_http_api(http3: dict[str, Any]) -> None:
    doc = http3
    assert doc["openapi"] == "3.0.1"
    assert doc["x-amazon-apigateway-importexport-version"] == "1.0"
    assert list(doc)[-3:] == [
        "x-amazon-apigateway-cors",
        "x-amazon-apigateway-importexport-version",
        "x-fastgw-api",
    ]
    assert doc["servers"][0]["variables"] == {"basePath": {"default": ""}}
    assert doc["x-amazon-apigateway-cors"] == HTTP_API["cors"]
    assert list(doc["paths"]) == ["/$default", "/admin/{proxy+}", "/orders", "/orders/{id}"]
    default = doc["paths"]["/$default"]
    assert list(default) == [ANY]
    assert default[ANY]["isDefaultRoute"] is True
    assert default[ANY]["responses"] == {"default": {"description": "Default response for $default"}}
    assert default[ANY][INTEG] == {
        "payloadFormatVersion": "1.0",
        "type": "http_proxy",
        "httpMethod": "ANY",
        "uri": "http://127.0.0.1:9000/",
        "connectionType": "INTERNET",
        "timeoutInMillis": 29000,
    }
    order = doc["paths"]["/orders/{id}"]
    assert order["parameters"] == [
        {
            "name": "id",
            "in": "path",
            "description": "Generated path parameter for id",
            "required": True,
            "schema": {"type": "string"},
        }
    ]
    get = order["get"]
    assert "parameters" not in get
    assert get["responses"] == {"default": {"description": "Default response for GET /orders/{id}"}}
    assert get["security"] == [{"jwt": ["orders/read"]}]
    assert get[INTEG] == {
        "responseParameters": {
            "200": {"overwrite:header.Cache-Control": "max-age=60"},
            "404": {"overwrite:statuscode": "410"},
        },
        "requestParameters": {
            "append:header.X-Request-Id": "$context.requestId",
            "overwrite:path": "/v2/orders/$request.path.id",
        },
        "payloadFormatVersion": "1.0",
        "type": "http_proxy",
        "httpMethod": "GET",
        "uri": "http://127.0.0.1:9000/orders/{id}",
        "connectionType": "INTERNET",
        "timeoutInMillis": 30000,
    }
    post = doc["paths"]["/orders"]["post"]
    assert post[INTEG]["type"] == "aws_proxy"
    assert post[INTEG]["httpMethod"] == "POST"
    assert post[INTEG]["payloadFormatVersion"] == "1.0"
    admin = doc["paths"]["/admin/{proxy+}"]
    assert list(admin) == ["get", ANY, "parameters"]
    assert admin[ANY]["security"] == [{"sigv4": []}]
    assert admin[ANY][INTEG]["payloadFormatVersion"] == "2.0"
    # 45 s is beyond AWS's HTTP API limit (30 s).
    assert "timeoutInMillis" not in admin[ANY][INTEG]
    assert admin[ANY]["x-fastgw-integration"] == {"timeout_ms": 45000}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["jwt"] == {
        "type": "oauth2",
        "flows": {},
        "x-amazon-apigateway-authorizer": {
            "identitySource": "$request.header.Authorization",
            "jwtConfiguration": {"audience": ["orders"], "issuer": "https://issuer.example.com"},
            "type": "jwt",
        },
    }
    assert schemes["lambda"] == {
        "type": "apiKey",
        "name": "Unused",
        "in": "header",
        "x-amazon-apigateway-authtype": "custom",
        "x-amazon-apigateway-authorizer": {
            "type": "request",
            "authorizerUri": "authfn",
            "identitySource": "$request.header.Authorization, $request.querystring.key",
            "authorizerPayloadFormatVersion": "2.0",
            "enableSimpleResponses": True,
            "authorizerResultTtlInSeconds": 0,
        },
    }
    assert doc["x-fastgw-api"] == {"kind": "http", "stages": HTTP_API["stages"]}
    for key in ("x-amazon-apigateway-request-validators", "x-amazon-apigateway-gateway-responses"):
        assert key not in doc


def test_http_api_has_no_swagger_export(http: Api) -> None:
    with pytest.raises(ValueError, match=r"OpenAPI 3\.0 only"):
        export_api(http, spec="swagger")


# ---------------------------------------------------------------------------------------------- plain
@pytest.mark.parametrize("name,spec", [("rest", "oas30"), ("rest", "swagger"), ("http", "oas30")])
def test_no_extensions_is_plain_openapi(name: str, spec: Any, rest: Api, http: Api) -> None:
    api = rest if name == "rest" else http
    doc = export_api(api, spec=spec, extensions=False, stage="prod" if name == "rest" else "beta")
    # Extension fields begin with "x-" (case-sensitive); names in name maps are not fields.
    names = (".headers", ".properties", ".schemas", ".securitySchemes", ".securityDefinitions")
    extension_keys = [f"{p}.{k}" for p, k in _walk_keys(doc) if k.startswith("x-") and not p.endswith(names)]
    assert extension_keys == []
    assert "isDefaultRoute" not in {k for _, k in _walk_keys(doc)}
    assert not any(p.endswith("+}") or "$default" in p for p in doc["paths"])
    _validate(doc)
    if name == "rest":
        proxy = doc["paths"]["/proxy/{path}"]
        assert list(proxy) == ["get", "put", "post", "delete", "options", "head", "patch"]
        assert proxy["get"]["parameters"][0]["name"] == "path"
        assert proxy["get"]["parameters"][0]["description"].startswith("Greedy")
        if spec == "oas30":
            assert doc["components"]["securitySchemes"]["jwt"] == {
                "type": "openIdConnect",
                "openIdConnectUrl": "https://issuer.example.com/.well-known/openid-configuration",
            }
            assert doc["components"]["securitySchemes"]["sigv4"] == {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
            }
    else:
        admin = doc["paths"]["/admin/{proxy}"]
        # The explicit GET route wins over ANY's expansion.
        assert "security" not in admin["get"]
        assert admin["post"]["security"] == [{"sigv4": []}]
        assert doc["servers"][0]["variables"] == {"basePath": {"default": "/beta"}}


# ---------------------------------------------------------------------------------------------- validity
@pytest.mark.parametrize("name,spec", [("rest", "oas30"), ("rest", "swagger"), ("http", "oas30")])
def test_exports_validate(name: str, spec: Any, rest: Api, http: Api) -> None:
    doc = export_api(rest if name == "rest" else http, spec=spec)
    _validate(doc)
    # The serialised forms parse back to the same document.
    assert json.loads(dump(doc, "json")) == doc
    text = dump(doc, "yaml")
    assert b"&id" not in text and b"*id" not in text
    assert yaml.safe_load(text) == doc


def test_minimal_apis_validate() -> None:
    for data in (
        {"name": "m", "routes": [{"route": "GET /", "integration": {"type": "MOCK"}}]},
        {"name": "h", "kind": "http", "routes": [{"route": "$default", "integration": {"type": "MOCK"}}]},
        {"name": "empty"},
    ):
        api = _api(data)
        for spec in ("oas30", "swagger") if api.kind == "rest" else ("oas30",):
            _validate(export_api(api, spec=spec))  # type: ignore[arg-type]
            _validate(export_api(api, spec=spec, extensions=False))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- determinism
def test_deterministic(rest: Api) -> None:
    first = dump(export_api(rest, stage="prod"), "json")
    assert dump(export_api(rest, stage="prod"), "json") == first
    # The routes' order in the config does not change the document.
    shuffled = copy.deepcopy(REST_API)
    shuffled["routes"].reverse()
    assert dump(export_api(_api(shuffled), stage="prod"), "json") == first
    assert dump(export_api(rest, stage="prod"), "yaml") == dump(
        export_api(_api(shuffled), stage="prod"), "yaml"
    )


def test_accepts_a_mapping(rest: Api) -> None:
    assert export_api(copy.deepcopy(REST_API), stage="prod") == export_api(rest, stage="prod")
    with pytest.raises(ValueError, match="not a valid API"):
        export_api({"name": "x", "kind": "soap"})


@pytest.mark.parametrize("path", ["fastgw/demo/demo.yaml", "examples/functions.yaml"])
def test_repo_configs_export(path: str) -> None:
    """The configs shipped with fastgw export, in every form, to valid documents."""
    file = Path(__file__).resolve().parents[2] / path
    if not file.exists():  # pragma: no cover - the repository ships both
        pytest.skip(f"{path} is not in this tree")
    for api in load_config_file(file).apis:
        for spec in ("oas30", "swagger") if api.kind == "rest" else ("oas30",):
            for extensions in (True, False):
                _validate(export_api(api, spec=spec, extensions=extensions))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- stages, servers
def test_stage_and_server_url(rest: Api, http: Api) -> None:
    doc = export_api(rest, stage="dev", server_url="http://127.0.0.1:8080/")
    assert doc["servers"] == [
        {"url": "http://127.0.0.1:8080{basePath}", "variables": {"basePath": {"default": "/dev"}}}
    ]
    doc = export_api(rest, spec="swagger", stage="dev", server_url="http://127.0.0.1:8080")
    assert (doc["host"], doc["basePath"], doc["schemes"]) == ("127.0.0.1:8080", "/dev", ["http"])
    doc = export_api(rest, spec="swagger", server_url="https://gw.example.com/v1")
    assert (doc["host"], doc["basePath"], doc["schemes"]) == ("gw.example.com", "/v1", ["https"])
    # Without a stage: REST at "/", HTTP APIs without a prefix (AWS's latest-config export).
    assert export_api(rest)["servers"][0]["variables"]["basePath"]["default"] == "/"
    assert export_api(rest, spec="swagger")["basePath"] == "/"
    assert export_api(http)["servers"][0]["variables"]["basePath"]["default"] == ""
    assert export_api(http, stage="beta")["servers"][0]["variables"]["basePath"]["default"] == "/beta"
    # The id is derived from the name when the config has none (as the gateway does).
    no_id = export_api(http)["servers"][0]["url"]
    assert re.fullmatch(r"https://[0-9a-f]{10}\.execute-api\.us-east-1\.amazonaws\.com/\{basePath\}", no_id)
    with pytest.raises(ValueError, match="no stage 'qa'"):
        export_api(rest, stage="qa")
    with pytest.raises(ValueError, match="spec"):
        export_api(rest, spec="raml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="format"):
        dump({}, "toml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- round trip
DRAFT4 = "http://json-schema.org/draft-04/schema#"
COGNITO_POOL = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc"

# Fields that once did not come back from export -> import: fastgw's own route fields beside what
# the AWS form implies (a multi-value parameter, an optional path parameter), a simple MOCK's
# passthroughBehavior, a model of another draft than 4.
REST_EDGE: dict[str, Any] = {
    "name": "edge",
    "id": "edge000001",
    "models": {
        "Limit": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "maximum": 5},
        "Text": {"$schema": DRAFT4, "type": "string"},
    },
    "stages": [{"name": "prod"}],
    "routes": [
        {
            "route": "GET /things/{id}",
            "integration": {"type": "MOCK", "status": 204, "passthroughBehavior": "NEVER"},
            "requestParameters": {
                "method.request.header.X-Trace": True,
                "method.request.multivaluequerystring.tag": False,
                "method.request.path.id": False,
                "method.request.querystring.q": True,
            },
        },
        {
            "route": "POST /things",
            "integration": {"type": "MOCK"},
            "requestModels": {"application/json": "Limit", "text/plain": "Text"},
        },
    ],
}

# An HTTP API with what AWS's HTTP APIs do not have (models, method request parameters, request
# models: fastgw validates them all the same) and a Cognito authorizer without identitySource.
HTTP_EDGE: dict[str, Any] = {
    "name": "edge-http",
    "id": "edge000002",
    "kind": "http",
    "models": {"Note": {"$schema": DRAFT4, "type": "object", "required": ["text"]}},
    "requestValidators": {"all": {"validateRequestBody": True, "validateRequestParameters": True}},
    "authorizers": [{"name": "pool", "type": "COGNITO_USER_POOLS", "providerARNs": [COGNITO_POOL]}],
    "stages": [{"name": "$default"}],
    "routes": [
        {
            "route": "POST /notes/{id}",
            "integration": {"type": "MOCK", "status": 201},
            "authorizer": "pool",
            "requestValidator": "all",
            "requestParameters": {"method.request.header.X-Client": True, "method.request.path.id": True},
            "requestModels": {"application/json": "Note"},
        }
    ],
}

# The only differences between a config and its export -> import, evened out before comparing.
# Each is the same API spelled as AWS spells it (the config accepts both forms), or a default AWS
# requires written out; every fastgw-only setting comes back through the x-fastgw-* extensions.
ROUND_TRIP_IGNORED = {
    "model $schema": "a model without $schema comes back marked draft 4: AWS's models are draft 4 "
    "by definition and OpenAPI's schema objects cannot say otherwise (NOTE: fastgw's validator "
    "compiles a model without $schema as fastjsonschema's default, draft 7)",
    "status code types": "integration / gateway response status codes: AWS writes 200 as '200' "
    "and 401 as 401 (the config accepts both)",
    "identitySource list": "an identitySource list is written as AWS's comma-separated string",
    "identitySource default": "a JWT or Cognito authorizer without identitySource comes back with "
    "the gateway's default (the Authorization header): AWS requires a JWT authorizer's, and reads "
    "a Cognito authorizer's from its security scheme",
    "HTTP integration method": "an HTTP integration without httpMethod (the client's) is written "
    "with the route's method, ANY for ANY routes (AWS requires one)",
    "payload format defaults": "HTTP APIs' payloadFormatVersion / authorizerPayloadFormatVersion "
    "are written with the gateway's default when unset (AWS requires them)",
    "derived id": "an API without id comes back with the id it was served under, derived from its "
    "name (the importer pins an API's address)",
    "order": "routes and authorizers: the export sorts paths and security schemes (a deterministic "
    "document); neither order means anything to the gateway (routes match by precedence, "
    "authorizers by name)",
}


def _builtins(value: Any) -> Any:
    return config_builtins(value, tagged=True)


def _normalise(api: Api | Any) -> dict[str, Any]:
    """A plain Api mapping (through decode_config) with ROUND_TRIP_IGNORED's forms evened out."""
    if not isinstance(api, Api):
        api = decode_config({"apis": [api]}).apis[0]
    data: dict[str, Any] = _builtins(api)
    kind = data.get("kind", "rest")
    for model in data.get("models", {}).values():
        model.setdefault("$schema", DRAFT4)
    for gr in data.get("gatewayResponses", {}).values():
        if "statusCode" in gr:
            gr["statusCode"] = int(gr["statusCode"])
    for auth in data.get("authorizers", []):
        source = auth.get("identitySource", "")
        source = ", ".join(source) if isinstance(source, list) else source
        if auth.get("type") in ("JWT", "COGNITO_USER_POOLS") and not source:
            source = (
                "$request.header.Authorization" if kind == "http" else "method.request.header.Authorization"
            )
        auth["identitySource"] = source
        if kind == "http" and auth.get("type", "REQUEST") == "REQUEST":
            auth.setdefault("authorizerPayloadFormatVersion", "2.0")
    for route in data.get("routes", []):
        integ = route["integration"]
        method = route["route"].partition(" ")[0]
        for r in integ.get("responses", {}).values():
            r["statusCode"] = str(r.get("statusCode", 200))
        if integ["type"] == "HTTP" and integ.get("httpMethod") in (None, method, "ANY"):
            integ.pop("httpMethod", None)
        if integ["type"] == "AWS_PROXY" and kind == "http":
            integ.setdefault("payloadFormatVersion", "2.0")
    data.get("routes", []).sort(key=lambda r: r["route"])
    data.get("authorizers", []).sort(key=lambda a: a["name"])
    return data


ROUND_TRIPS = [
    ("rest", "oas30"),
    ("rest", "swagger"),
    ("http", "oas30"),
    ("rest_edge", "oas30"),
    ("rest_edge", "swagger"),
    ("http_edge", "oas30"),
]


@pytest.mark.parametrize("name,spec", ROUND_TRIPS)
def test_round_trip(name: str, spec: Any, rest: Api, http: Api) -> None:
    """config -> export -> import gives the config again (up to ROUND_TRIP_IGNORED), and the
    export of the import is the export again, byte for byte."""
    from fastgw.openapi.importer import derive_api_id, import_document

    api = {"rest": rest, "http": http, "rest_edge": _api(REST_EDGE), "http_edge": _api(HTTP_EDGE)}[name]
    stage = api.stages[0].name
    doc = dump(export_api(api, spec=spec, stage=stage), "json")
    result = import_document(doc)  # the document alone: no name, id, stage or variables given
    assert result.warnings == []
    before, after = _normalise(api), _normalise(result.api)
    if api.id is None:
        assert after.pop("id") == derive_api_id(api.name)
    assert before == after
    again = json.loads(dump(export_api(result.api, spec=spec, stage=stage), "json"))
    if api.id is None:
        del again["x-fastgw-api"]["id"]  # pinned by the import (above)
    assert dump(again, "json") == doc


def test_edge_exports() -> None:
    """The AWS-less fields of REST_EDGE / HTTP_EDGE, as the exports write them."""
    rest3 = export_api(_api(REST_EDGE), stage="prod")
    _validate(rest3)
    assert rest3["components"]["schemas"]["Limit"] == {
        "type": "number",
        "maximum": 5,
        "x-fastgw-schema": "http://json-schema.org/draft-07/schema#",
    }
    assert rest3["components"]["schemas"]["Text"] == {"type": "string"}  # draft 4: AWS's implicit one
    thing = rest3["paths"]["/things/{id}"]["get"]
    assert [(p["in"], p["name"]) for p in thing["parameters"]] == [
        ("path", "id"),
        ("header", "X-Trace"),
        ("query", "q"),
    ]
    assert "x-fastgw-implicit" not in thing["parameters"][0]  # the route names it (optional)
    assert thing["x-fastgw-route"] == {
        "requestParameters": {
            "method.request.multivaluequerystring.tag": False,
            "method.request.path.id": False,
        }
    }
    assert thing["x-fastgw-integration"] == {"mock": {"status": 204, "headers": {}, "body": ""}}
    assert thing[INTEG]["passthroughBehavior"] == "never"
    _validate(export_api(_api(REST_EDGE), spec="swagger", stage="prod"))

    http3 = export_api(_api(HTTP_EDGE))
    _validate(http3)
    assert http3["x-fastgw-api"]["models"] == HTTP_EDGE["models"]
    note = http3["paths"]["/notes/{id}"]["post"]
    assert note["x-fastgw-route"] == {
        "requestParameters": HTTP_EDGE["routes"][0]["requestParameters"],
        "requestModels": {"application/json": "Note"},
    }
    assert note["requestBody"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}
    }

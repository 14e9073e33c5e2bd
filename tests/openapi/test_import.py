"""The OpenAPI importer (fastgw.openapi): AWS exports in, fastgw Api mappings out.

Fixture documents in ``docs/`` are shaped as AWS writes them: a REST API exported as OpenAPI 3
(JSON) and as Swagger 2.0 (YAML), an HTTP API export (importexport-version, reusable
integrations, CORS, JWT and Lambda authorizers, the $default route), and a small API served end
to end by a real gateway process. Error cases are small documents built in the tests; each
checks the JSON path the problem is reported at.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import EchoServer, GatewayFactory, RawConn, get

from fastgw.config.compile import check_document
from fastgw.config.load import decode_config
from fastgw.openapi import (
    MAX_DOCUMENT_BYTES,
    ImportProblem,
    ImportResult,
    OpenApiImportError,
    detect_kind,
    import_document,
    load_document,
)

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).parent / "docs"
INTEG = "x-amazon-apigateway-integration"
MOCK = {"type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'}}


def doc(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A minimal OpenAPI 3 document with ``paths``."""
    out: dict[str, Any] = {"openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "paths": paths}
    out.update(extra)
    return out


def op(integration: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"responses": {}, INTEG: integration, **extra}


def problems(d: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """(path, message) of every problem an import refuses ``d`` with."""
    with pytest.raises(OpenApiImportError) as info:
        import_document(d, **kwargs)
    assert all(p.severity == "error" for p in info.value.problems)
    return [(p.path, p.message) for p in info.value.problems]


def warnings_of(result: ImportResult) -> dict[str, str]:
    assert all(w.severity == "warning" for w in result.warnings)
    return {w.path: w.message for w in result.warnings}


def routes(api: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["route"]: r for r in api.get("routes", [])}


def loads(result: ImportResult) -> None:
    """fastgw's loader accepts the API (functions bound to stubs, as a config would)."""
    config = {"apis": [result.api], "functions": {n: {"url": "http://127.0.0.1:9"} for n in result.functions}}
    decode_config(config)
    if any(r.get("authorizationType") == "AWS_IAM" for r in result.api.get("routes", [])):
        config["iam"] = {
            "users": [
                {
                    "accessKeyId": "AKIATEST0000000000",
                    "arn": "arn:aws:iam::123456789012:user/t",
                    "secretAccessKey": "s",
                }
            ]
        }
    assert check_document(config) == []


# ---------------------------------------------------------------------------- REST, OpenAPI 3
def test_rest_openapi3_export() -> None:
    result = import_document(DOCS / "rest_oas3.json", stage_variables={"backend": "10.0.0.5:9000"})
    api = result.api
    assert result.kind == "rest" and api["kind"] == "rest"
    assert api["name"] == "PetStore" and api["description"].startswith("Your first API")
    assert len(api["id"]) == 10 and api["id"].isalnum() and api["id"].islower()
    # basePath (servers[0].variables.basePath = prod) is ignored, as AWS's basepath=ignore.
    assert list(routes(api)) == [
        "GET /pets",
        "POST /pets",
        "OPTIONS /pets",
        "GET /pets/{petId}",
        "GET /health",
    ]
    r = routes(api)
    assert r["GET /pets"] == {
        "route": "GET /pets",
        "integration": {
            "type": "HTTP_PROXY",
            "uri": "http://${stageVariables.backend}/petstore/pets",
            "timeout_ms": 5000,
            "requestParameters": {
                "integration.request.querystring.page": "method.request.querystring.page",
                "integration.request.querystring.type": "method.request.querystring.type",
            },
        },
        "cacheKeyParameters": ["method.request.querystring.page"],
        "apiKeyRequired": True,
        "requestValidator": "params-only",
        "requestParameters": {
            "method.request.querystring.type": False,
            "method.request.querystring.page": True,
        },
    }
    post = r["POST /pets"]
    assert post["integration"]["type"] == "AWS_PROXY"
    assert post["integration"]["uri"].endswith("function:create-pet/invocations")
    assert post["authorizer"] == "petstore-token"
    assert post["requestModels"] == {"application/json": "NewPet"}
    preflight = r["OPTIONS /pets"]["integration"]
    assert preflight["type"] == "MOCK" and preflight["passthroughBehavior"] == "WHEN_NO_MATCH"
    assert (
        preflight["responses"]["default"]["responseParameters"][
            "method.response.header.Access-Control-Allow-Origin"
        ]
        == "'*'"
    )
    pet = r["GET /pets/{petId}"]
    assert pet["authorizationType"] == "AWS_IAM"
    assert pet["requestParameters"] == {"method.request.path.petId": True}
    assert pet["integration"]["type"] == "HTTP" and pet["integration"]["httpMethod"] == "GET"
    assert pet["integration"]["passthroughBehavior"] == "WHEN_NO_TEMPLATES"
    assert list(pet["integration"]["responses"]) == ["4\\d{2}", "default"]
    assert pet["integration"]["responses"]["4\\d{2}"]["statusCode"] == "404"
    # Authorizers: a TOKEN authorizer reads the header its security scheme names.
    assert api["authorizers"] == [
        {
            "name": "petstore-token",
            "type": "TOKEN",
            "authorizerUri": (
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
                "arn:aws:lambda:us-east-1:123456789012:function:token-auth/invocations"
            ),
            "identitySource": "method.request.header.Authorization",
            "identityValidationExpression": "^Bearer [-0-9a-zA-Z._]*$",
            "authorizerResultTtlInSeconds": 300,
        }
    ]
    # Models: draft 4, references rewritten into AWS's model URLs with this API's id.
    url = f"https://apigateway.amazonaws.com/restapis/{api['id']}/models/"
    assert api["models"]["Pets"]["items"] == {"$ref": url + "Pet"}
    assert api["models"]["NewPet"]["properties"]["type"] == {"$ref": url + "PetType"}
    assert all(m["$schema"] == "http://json-schema.org/draft-04/schema#" for m in api["models"].values())
    # API-level extensions.
    assert api["requestValidators"] == {
        "all": {"validateRequestBody": True, "validateRequestParameters": True},
        "params-only": {"validateRequestParameters": True},
    }
    assert api["requestValidator"] == "all"
    assert api["gatewayResponses"]["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    assert api["binaryMediaTypes"] == ["image/png", "application/octet-stream"]
    assert api["apiKeySource"] == "HEADER" and api["minimumCompressionSize"] == 1024
    assert api["policy"]["Statement"][0]["Action"] == "execute-api:Invoke"
    assert api["stages"] == [{"name": "prod", "variables": {"backend": "10.0.0.5:9000"}}]
    assert result.functions == ["create-pet", "token-auth"]
    assert set(warnings_of(result)) == {
        "$.servers[0].x-amazon-apigateway-endpoint-configuration.disableExecuteApiEndpoint",
        f"$.paths['/pets'].post.{INTEG}.credentials",
    }
    loads(result)


def test_models_validate_as_the_document_says() -> None:
    from fastgw.pipeline.validation import compile_models

    api = import_document(DOCS / "rest_oas3.json", stage_variables={"backend": "h:1"}).api
    validators, errors = compile_models(api["models"])
    assert errors == []
    validators["NewPet"]({"type": "dog", "price": 30})
    for bad in ({"type": "cow", "price": 30}, {"type": "dog", "price": 3}, {"price": 30}):
        with pytest.raises(Exception, match="must"):
            validators["NewPet"](bad)
    with pytest.raises(Exception, match="integer"):
        validators["Pets"]([{"id": "seven"}])


# ---------------------------------------------------------------------------- REST, Swagger 2.0 YAML
def test_rest_swagger2_yaml_export() -> None:
    result = import_document(DOCS / "rest_swagger.yaml")
    api = result.api
    r = routes(api)
    # basePath /v1 ignored; x-amazon-apigateway-any-method is ANY.
    assert list(r) == ["POST /orders", "GET /orders/{orderId}", "ANY /{proxy+}"]
    post = r["POST /orders"]
    assert post["integration"]["type"] == "AWS" and post["integration"]["passthroughBehavior"] == "NEVER"
    assert post["integration"]["responses"][".*OutOfStock.*"]["statusCode"] == "409"
    assert post["integration"]["requestTemplates"]["application/json"].startswith("#set($body")
    assert post["authorizer"] == "orders-pool" and post["authorizationScopes"] == ["orders/write"]
    assert post["requestModels"] == {"application/json": "Order"}  # the body parameter, by `consumes`
    assert post["requestParameters"] == {"method.request.header.X-Request-Id": True}
    assert post["requestValidator"] == "body-and-params"
    # Path-level parameters reach the operation.
    assert r["GET /orders/{orderId}"]["requestParameters"] == {"method.request.path.orderId": True}
    assert r["GET /orders/{orderId}"]["authorizationScopes"] == ["orders/read"]
    proxy = r["ANY /{proxy+}"]
    assert proxy["integration"] == {
        "type": "HTTP_PROXY",
        "uri": "http://legacy.internal:8080/{proxy}",
        "requestParameters": {"integration.request.path.proxy": "method.request.path.proxy"},
    }
    assert proxy["cacheKeyParameters"] == ["method.request.path.proxy"]
    assert api["authorizers"] == [
        {
            "name": "orders-pool",
            "type": "COGNITO_USER_POOLS",
            "identitySource": "method.request.header.Authorization",
            "providerARNs": ["arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEfGhI"],
        }
    ]
    # A recursive model keeps its reference (#/definitions/X -> the model URL).
    line = api["models"]["OrderLine"]["properties"]["parent"]["$ref"]
    assert line == f"https://apigateway.amazonaws.com/restapis/{api['id']}/models/OrderLine"
    # The Lambda alias qualifier (function:place-order:live) is not part of the name.
    assert result.functions == ["get-order", "place-order"]
    # Documentation is named in a warning; one route's cacheNamespace is not worth one.
    assert list(warnings_of(result)) == ["$.x-amazon-apigateway-documentation"]
    assert "2 documentation part(s)" in result.warnings[0].message
    loads(result)


# ---------------------------------------------------------------------------- HTTP API export
def test_http_api_export() -> None:
    assert detect_kind(load_document(DOCS / "http_api.yaml")) == "http"
    result = import_document(DOCS / "http_api.yaml")
    api = result.api
    assert result.kind == "http" and api["kind"] == "http"
    assert api["stages"] == [{"name": "$default"}]
    assert "models" not in api  # HTTP APIs have none
    r = routes(api)
    assert list(r) == ["GET /pets", "POST /pets", "GET /pets/{petId}", "ANY /admin/{proxy+}", "$default"]
    # Reusable integrations by $ref.
    assert r["GET /pets"]["integration"] == {"type": "HTTP_PROXY", "uri": "http://backend.internal:8080/pets"}
    assert r["ANY /admin/{proxy+}"]["integration"] == r["GET /pets"]["integration"]
    assert r["POST /pets"]["integration"] == {
        "type": "AWS_PROXY",
        "uri": (
            "arn:aws:apigateway:us-west-2:lambda:path/2015-03-31/functions/"
            "arn:aws:lambda:us-west-2:123456789012:function:create-pet/invocations"
        ),
        "payloadFormatVersion": "2.0",
        "timeout_ms": 30000,
    }
    assert r["GET /pets"]["authorizationScopes"] == ["pets/read"]
    assert r["POST /pets"]["authorizationScopes"] == ["pets/write", "pets/admin"]
    pet = r["GET /pets/{petId}"]
    assert pet["authorizer"] == "lambda-auth" and "authorizationScopes" not in pet
    assert pet["integration"]["parameterMapping"] == {
        "append:header.x-caller": "$context.identity.sourceIp",
        "overwrite:querystring.view": "full",
    }
    assert pet["integration"]["responseParameters"] == {
        "404": {"overwrite:statuscode": "410", "append:header.x-gone": "true"}
    }
    assert pet["integration"]["timeout_ms"] == 10000
    assert "requestParameters" not in pet  # no method request parameters on HTTP APIs
    assert r["ANY /admin/{proxy+}"]["authorizationType"] == "AWS_IAM"
    assert r["$default"]["integration"]["type"] == "AWS_PROXY"
    assert api["cors"] == {
        "allowOrigins": ["https://pets.example.com"],
        "allowMethods": ["GET", "POST"],
        "allowHeaders": ["authorization", "content-type"],
        "exposeHeaders": ["x-gone"],
        "maxAge": 600,
        "allowCredentials": True,
    }
    jwt, lam = api["authorizers"]
    assert jwt == {
        "name": "pets-jwt",
        "type": "JWT",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {
            "issuer": "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_Pets0001",
            "audience": ["pets-client"],
        },
    }
    assert lam["type"] == "REQUEST" and lam["enableSimpleResponses"] is True
    assert lam["authorizerPayloadFormatVersion"] == "2.0" and lam["authorizerResultTtlInSeconds"] == 60
    assert result.functions == ["create-pet", "fallback", "pets-authorizer"]
    assert list(warnings_of(result)) == ["$.tags[0].x-amazon-apigateway-tag-value"]
    loads(result)


def test_openid_connect_url_gives_the_jwt_issuer() -> None:
    d = load_document(DOCS / "http_api.yaml")
    scheme = d["components"]["securitySchemes"]["pets-jwt"]
    del scheme["x-amazon-apigateway-authorizer"]["jwtConfiguration"]["issuer"]
    scheme.update(
        type="openIdConnect", openIdConnectUrl="https://idp.example.com/.well-known/openid-configuration"
    )
    api = import_document(d).api
    assert api["authorizers"][0]["jwtConfiguration"]["issuer"] == "https://idp.example.com"


def test_kind_override_and_rest_only_settings_on_http_apis() -> None:
    d = doc({"/a": {"get": op(MOCK)}})
    d["x-amazon-apigateway-cors"] = {"allowOrigins": ["*"]}
    d["x-amazon-apigateway-gateway-responses"] = {"DEFAULT_4XX": {"statusCode": 400}}
    rest = import_document(d)
    assert "cors" not in rest.api and "$.x-amazon-apigateway-cors" in warnings_of(rest)
    http = import_document(d, kind="http")
    assert http.api["cors"] == {"allowOrigins": ["*"]} and "gatewayResponses" not in http.api
    assert "$.x-amazon-apigateway-gateway-responses" in warnings_of(http)
    # HTTP API mapping: AWS's requestParameters form, or fastgw's parameterMapping name; REST-style
    # keys are not an HTTP API mapping.
    mapped = doc(
        {
            "/a": {
                "get": op(
                    {"type": "http_proxy", "uri": "http://h/", "parameterMapping": {"remove:header.x": "''"}}
                )
            },
            "/b": {
                "get": op(
                    {
                        "type": "http_proxy",
                        "uri": "http://h/",
                        "requestParameters": {"integration.request.header.x": "method.request.header.y"},
                    }
                )
            },
        }
    )
    got = import_document(mapped, kind="http")
    assert routes(got.api)["GET /a"]["integration"]["parameterMapping"] == {"remove:header.x": "''"}
    assert routes(got.api)["GET /b"]["integration"] == {"type": "HTTP_PROXY", "uri": "http://h/"}
    assert "are ignored" in warnings_of(got)[f"$.paths['/b'].get.{INTEG}.requestParameters"]


# ---------------------------------------------------------------------------- loading
def test_load_document_forms(tmp_path: Path) -> None:
    text = (DOCS / "rest_swagger.yaml").read_text()
    by_path = load_document(DOCS / "rest_swagger.yaml")
    assert load_document(str(DOCS / "rest_swagger.yaml")) == by_path
    assert load_document(text) == by_path == load_document(text.encode())
    assert load_document(json.dumps(by_path)) == by_path
    # YAML reads `200:` as a number and dates as timestamps: keys become strings, dates stay text.
    assert "200" in by_path["paths"]["/orders"]["post"]["responses"]
    assert (
        load_document("openapi: 3.0.1\ninfo: {title: x, version: 2024-05-02}\n")["info"]["version"]
        == "2024-05-02"
    )
    for bad, message in (("[1, 2]", "root must be an object, got array"), ("just text", "got string")):
        with pytest.raises(OpenApiImportError, match=message):
            load_document(bad)
    with pytest.raises(OpenApiImportError, match=r"not valid JSON or YAML \(line 3, column 1\)"):
        load_document("openapi: 3.0.1\ninfo: [unclosed\n")
    with pytest.raises(OpenApiImportError, match="alias loop"):
        load_document("a: &x\n  b: *x\n")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    with pytest.raises(OpenApiImportError, match="expands to over"):
        load_document(bomb)


def test_what_is_not_an_openapi_document() -> None:
    assert problems({"info": {"title": "x"}, "x-amazon-apigateway-cors": {}}) == [
        ("$", "not an OpenAPI document: expected 'openapi: 3.0.x' or 'swagger: 2.0'")
    ]
    assert problems({"openapi": "2.0", "info": {"title": "x"}}) == [
        ("$.openapi", "OpenAPI '2.0' is not supported (3.0.x or Swagger 2.0)")
    ]
    newer = import_document({"openapi": "3.1.0", "info": {"title": "x"}, "paths": {}})
    assert warnings_of(newer) == {"$.openapi": "API Gateway imports OpenAPI 3.0; 3.1.0 is read as 3.0"}
    for deep in ('{"a":' * 3000 + "1" + "}" * 3000, "[" * 5000):
        assert problems(deep) == [("$", "the document is nested too deeply")]


def test_documents_over_6_mb_are_refused(tmp_path: Path) -> None:
    big = b'{"openapi": "3.0.1", "info": {"title": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}}'
    big_file = tmp_path / "big.json"
    big_file.write_bytes(big)
    for source in (big, big.decode(), big_file, json.loads(big)):
        with pytest.raises(OpenApiImportError, match="6 MB") as info:
            import_document(source)  # type: ignore[arg-type]
        assert info.value.problems[0].path == "$"
    # Just under the limit is fine.
    small = doc({"/a": {"get": op(MOCK)}}, **{"x-padding": "y" * (MAX_DOCUMENT_BYTES - 1000)})
    assert routes(import_document(json.dumps(small)).api)


def test_problem_and_error_text() -> None:
    p = ImportProblem("$.paths['/a'].get", "bad", "error")
    assert str(p) == "$.paths['/a'].get: bad"
    err = OpenApiImportError([p, ImportProblem("$.info", "worse", "error")])
    assert isinstance(err, ValueError) and len(err.problems) == 2
    assert "$.paths['/a'].get: bad" in str(err) and "$.info: worse" in str(err)


# ---------------------------------------------------------------------------- refused documents
def test_ref_loops_and_external_refs_are_reported_with_their_paths() -> None:
    d = doc(
        {
            "/a": {"get": op({"$ref": "#/components/x-loop/one"})},
            "/b": {"get": op(MOCK, parameters=[{"$ref": "shared.yaml#/parameters/q"}])},
        },
        components={
            "x-loop": {
                "one": {"$ref": "#/components/x-loop/two"},
                "two": {"$ref": "#/components/x-loop/one"},
            },
            "schemas": {
                "A": {"$ref": "#/components/schemas/B"},
                "B": {"$ref": "#/components/schemas/A"},
                "C": {"type": "object", "properties": {"x": {"$ref": "#/components/schemas/C/properties/x"}}},
                "D": {"$ref": "#/components/schemas/Nope"},
            },
        },
    )
    found = dict(problems(d))
    assert found[f"$.paths['/a'].get.{INTEG}.$ref"] == (
        "$ref loop: #/components/x-loop/one -> #/components/x-loop/two -> #/components/x-loop/one"
    )
    assert found["$.components.schemas.A.$ref"].startswith("$ref loop: #/components/schemas/A -> ")
    assert found["$.components.schemas.B.$ref"].startswith("$ref loop: #/components/schemas/B -> ")
    assert found["$.components.schemas.C.properties.x.$ref"].startswith("$ref loop:")
    assert "no model 'Nope'" in found["$.components.schemas.D.$ref"]
    assert "external $ref 'shared.yaml#/parameters/q'" in found["$.paths['/b'].get.parameters[0].$ref"]


def test_wrong_types_are_errors_at_their_paths() -> None:
    assert problems({"openapi": "3.0.1", "info": {"title": "t"}, "paths": []}) == [
        ("$.paths", "expected an object, got array")
    ]
    found = problems(
        doc(
            {
                "/a": {"get": op({"type": 5})},
                "/b": {"get": op({"type": "http_proxy", "uri": "http://h/", "timeoutInMillis": "soon"})},
                "/c": {"get": op({**MOCK, "requestTemplates": ["not", "a", "map"]})},
                "/d": {"get": op({"type": "lambda", "uri": "x"})},
            },
            **{"x-amazon-apigateway-binary-media-types": "image/png"},
        )
    )
    assert found == [
        ("$.x-amazon-apigateway-binary-media-types", "expected an array of strings, got string"),
        (f"$.paths['/a'].get.{INTEG}.type", "expected a string, got number"),
        (f"$.paths['/b'].get.{INTEG}.timeoutInMillis", "expected an integer, got string"),
        (f"$.paths['/c'].get.{INTEG}.requestTemplates", "expected an object of strings, got array"),
        (f"$.paths['/d'].get.{INTEG}.type", "'lambda' is not one of mock, http, http_proxy, aws, aws_proxy"),
    ]


def test_unknown_extensions_and_fields_are_errors() -> None:
    d = doc(
        {"/a": {"get": op({**MOCK, "fooBar": 1}, **{"x-amazon-apigateway-frobnicate": {}, "x-vendor": 1})}},
        **{
            "x-amazon-apigateway-nope": 1,
            INTEG: MOCK,  # a known extension where AWS does not read it
            "x-amazon-apigateway-cors": {"allowOrigins": ["*"], "allowEverything": True},
            # Another vendor's extension is opaque: what it holds is not read.
            "x-some-other-vendor": {"x-amazon-apigateway-whatever": 1},
        },
    )
    found = dict(problems(d))
    assert (
        found[f"$.paths['/a'].get.{INTEG}.fooBar"]
        == "unknown field 'fooBar' in x-amazon-apigateway-integration"
    )
    assert found["$.paths['/a'].get.x-amazon-apigateway-frobnicate"] == (
        "unknown API Gateway extension 'x-amazon-apigateway-frobnicate'"
    )
    assert found["$.x-amazon-apigateway-nope"] == "unknown API Gateway extension 'x-amazon-apigateway-nope'"
    assert found[f"$.{INTEG}"] == f"{INTEG} is not allowed here"
    assert found["$.x-amazon-apigateway-cors.allowEverything"] == (
        "unknown field 'allowEverything' in x-amazon-apigateway-cors"
    )
    assert not any("x-vendor" in path or "x-some-other-vendor" in path for path in found)


def test_unknown_fields_in_authorizers_and_responses() -> None:
    d = doc(
        {
            "/a": {
                "get": op({**MOCK, "responses": {"default": {"statusCode": "200", "selectionPattern": "x"}}})
            }
        },
        components={
            "securitySchemes": {
                "jwt": {
                    "type": "oauth2",
                    "x-amazon-apigateway-authorizer": {
                        "type": "jwt",
                        "jwtConfiguration": {"issuer": "https://i", "audience": ["a"], "jwksUri": "x"},
                        "authorizerTimeout": 5,
                    },
                }
            }
        },
    )
    found = dict(problems(d, kind="http"))
    base = "$.components.securitySchemes.jwt.x-amazon-apigateway-authorizer"
    assert (
        found[f"{base}.authorizerTimeout"]
        == "unknown field 'authorizerTimeout' in x-amazon-apigateway-authorizer"
    )
    assert found[f"{base}.jwtConfiguration.jwksUri"] == "unknown field 'jwksUri' in jwtConfiguration"
    assert f"$.paths['/a'].get.{INTEG}.responses.default.selectionPattern" in found


def test_templates_that_do_not_parse_are_errors() -> None:
    d = doc(
        {
            "/a": {
                "post": op(
                    {
                        "type": "http",
                        "uri": "http://h/",
                        "requestTemplates": {"application/json": '{"a": "$input.path(\'$.a\'"}'},
                        "responses": {
                            "default": {"statusCode": "200", "responseTemplates": {"text/plain": "#if($x)"}}
                        },
                    }
                )
            }
        },
        **{
            "x-amazon-apigateway-gateway-responses": {
                "DEFAULT_5XX": {"responseTemplates": {"application/json": "#foreach($x in"}}
            }
        },
    )
    found = dict(problems(d))
    assert set(found) == {
        f"$.paths['/a'].post.{INTEG}.requestTemplates['application/json']",
        f"$.paths['/a'].post.{INTEG}.responses.default.responseTemplates['text/plain']",
        "$.x-amazon-apigateway-gateway-responses.DEFAULT_5XX.responseTemplates['application/json']",
    }
    assert all(m.startswith("mapping template does not parse: line 1") for m in found.values())


def test_conflicting_routes_are_errors() -> None:
    same_shape = doc({"/pets/{id}": {"get": op(MOCK)}, "/pets/{petId}": {"get": op(MOCK)}})
    assert problems(same_shape) == [
        (
            "$.paths['/pets/{petId}'].get",
            "conflicting routes: {petId} and {id} (at $.paths['/pets/{id}'].get) are variables at the same "
            "position; API Gateway allows one name per position",
        )
    ]
    # Two $default routes; a greedy and a plain variable may be siblings (as AWS and fastgw allow).
    twice = doc(
        {
            "/$default": {"x-amazon-apigateway-any-method": op(MOCK, isDefaultRoute=True)},
            "/other": {"x-amazon-apigateway-any-method": op(MOCK, isDefaultRoute=True)},
            "/a/{id}": {"get": op(MOCK)},
            "/a/{rest+}": {"get": op(MOCK)},
        }
    )
    assert problems(twice, kind="http") == [
        (
            "$.paths['/other'].x-amazon-apigateway-any-method",
            "route '$default' is defined twice (also at $.paths['/$default'].x-amazon-apigateway-any-method)",
        )
    ]
    assert problems(doc({"/x": {"get": op(MOCK, isDefaultRoute=True)}})) == [
        ("$.paths['/x'].get.isDefaultRoute", "the $default route exists on HTTP APIs only")
    ]


def test_every_problem_is_reported_at_once() -> None:
    d = doc(
        {
            "/a": {"get": op({"type": "http_proxy"})},
            "/b": {"get": op({**MOCK, "requestTemplates": {"application/json": "#end"}})},
            "/c": {"get": op(MOCK, security=[{"missing": []}])},
            "/d": {"get": op(MOCK, **{"x-amazon-apigateway-request-validator": "nope"})},
            "/e": {"get": op(MOCK, parameters=[{"name": "id", "in": "path", "required": True}])},
        },
        **{"x-amazon-apigateway-minimum-compression-size": -1},
    )
    assert problems(d) == [
        ("$.x-amazon-apigateway-minimum-compression-size", "-1 is out of range (0-10485760)"),
        (f"$.paths['/a'].get.{INTEG}", "an http_proxy integration needs 'uri'"),
        (
            f"$.paths['/b'].get.{INTEG}.requestTemplates['application/json']",
            "mapping template does not parse: line 1, column 1: expected block element in template body, "
            "got: #end ...",
        ),
        ("$.paths['/c'].get.security[0].missing", "no security scheme 'missing' in the document"),
        (
            "$.paths['/d'].get.x-amazon-apigateway-request-validator",
            "no request validator 'nope' in x-amazon-apigateway-request-validators",
        ),
        ("$.paths['/e'].get.parameters[0]", "path parameter 'id' is not in the path '/e'"),
    ]


def test_what_fastgw_cannot_serve_is_refused() -> None:
    lam = (
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        "arn:aws:lambda:us-east-1:1:function:f/invocations"
    )
    d = doc(
        {
            "/s3": {"get": op({"type": "aws", "uri": "arn:aws:apigateway:us-east-1:s3:path/bucket/key"})},
            "/sqs": {"post": op({"type": "aws_proxy", "integrationSubtype": "SQS-SendMessage", "uri": lam})},
            "/alb": {
                "get": op(
                    {
                        "type": "http_proxy",
                        "connectionType": "VPC_LINK",
                        "connectionId": "vl1",
                        "uri": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/y/z",
                    }
                )
            },
        }
    )
    found = dict(problems(d, kind="http"))
    assert "AWS service integrations (s3) are not supported" in found[f"$.paths['/s3'].get.{INTEG}.uri"]
    assert f"$.paths['/tls'].get.{INTEG}.uri" not in found
    assert "(SQS-SendMessage) are not supported" in found[f"$.paths['/sqs'].post.{INTEG}.integrationSubtype"]
    assert "VPC link" in found[f"$.paths['/alb'].get.{INTEG}.uri"]


def test_vpc_link_is_a_warning_and_an_error_when_strict() -> None:
    d = doc(
        {
            "/a": {
                "get": op(
                    {
                        "type": "http_proxy",
                        "uri": "http://nlb.internal:8080/a",
                        "connectionType": "VPC_LINK",
                        "connectionId": "x1",
                    }
                )
            }
        }
    )
    where = f"$.paths['/a'].get.{INTEG}.connectionType"
    result = import_document(d)
    assert routes(result.api)["GET /a"]["integration"] == {
        "type": "HTTP_PROXY",
        "uri": "http://nlb.internal:8080/a",
    }
    assert "VPC links do not exist on bare metal" in warnings_of(result)[where]
    assert [p for p, _ in problems(d, strict=True)] == [where]


def test_loader_findings_are_reported_where_the_document_says_them() -> None:
    d = doc(
        {
            "/a": {"get": op({"type": "http_proxy", "uri": "http://backend/{nope}"})},
            "/b": {"get": op({"type": "http_proxy", "uri": "http://${stageVariables.host}/b"})},
            "/c": {"get": op(MOCK, security=[{"auth": []}])},
        },
        components={
            "securitySchemes": {
                "auth": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authorizer": {
                        "type": "token",
                        "identitySource": "method.request.querystring.token",
                        "authorizerUri": "arn:aws:lambda:us-east-1:123456789012:function:auth",
                    },
                }
            }
        },
    )
    found = problems(d)
    assert (f"$.paths['/a'].get.{INTEG}.uri", "{nope} is not a path parameter of the route") in found
    assert (
        f"$.paths['/b'].get.{INTEG}.uri",
        "stage 'prod' has no variable 'host' used in 'http://${stageVariables.host}/b'",
    ) in found
    auth = "$.components.securitySchemes.auth.x-amazon-apigateway-authorizer.identitySource"
    assert any(p == auth and "TOKEN authorizer needs exactly one identity source" in m for p, m in found)
    # With the stage variable given, that route is fine.
    d["paths"] = {"/b": d["paths"]["/b"]}
    del d["components"]
    result = import_document(d, stage_variables={"host": "10.1.1.1:80"})
    assert result.api["stages"] == [{"name": "prod", "variables": {"host": "10.1.1.1:80"}}]


def test_reported_not_honoured() -> None:
    d = doc(
        {
            "/a": {
                "get": op(
                    {
                        "type": "http_proxy",
                        "uri": "http://h/a",
                        "httpMethod": "POST",
                        "credentials": "arn:aws:iam::*:user/*",
                        "tlsConfig": {"insecureSkipVerification": True},
                        "cacheNamespace": "shared",
                    },
                    security=[{"oauth": ["read"]}],
                ),
                "trace": op(MOCK),
            },
            "/b": {"get": op({"type": "http_proxy", "uri": "http://h/b", "cacheNamespace": "shared"})},
            "/c": {"get": {"responses": {}}},
            "/d": {"get": op({"type": "aws_proxy", "uri": "f", "responseTransferMode": "STREAM"})},
        },
        components={"securitySchemes": {"oauth": {"type": "oauth2", "flows": {}}}},
        **{
            "x-amazon-apigateway-endpoint-access-mode": "STRICT",
            "x-amazon-apigateway-security-policy": "SecurityPolicy_TLS13_1_3_2025_09",
            "x-amazon-apigateway-endpoint-configuration": {"vpcEndpointIds": ["vpce-1"]},
        },
    )
    result = import_document(d)
    got = warnings_of(result)
    a = f"$.paths['/a'].get.{INTEG}"
    assert "forwards the client's method" in got[f"{a}.httpMethod"]
    assert "no IAM roles" in got[f"{a}.credentials"]
    assert (
        "tlsConfig.insecureSkipVerification has no effect" in got[f"{a}.tlsConfig.insecureSkipVerification"]
    )
    assert "shared by 2 integrations" in got[f"{a}.cacheNamespace"]
    assert "shared by 2 integrations" in got[f"$.paths['/b'].get.{INTEG}.cacheNamespace"]
    assert "does not enforce it" in got["$.components.securitySchemes.oauth"]
    assert "TRACE" in got["$.paths['/a'].trace"]
    assert "no backend and is skipped" in got["$.paths['/c'].get"]
    assert "buffered" in got[f"$.paths['/d'].get.{INTEG}.responseTransferMode"]
    assert "gateway-wide" in got["$.x-amazon-apigateway-security-policy"]
    assert "$.x-amazon-apigateway-endpoint-access-mode" in got
    assert "$.x-amazon-apigateway-endpoint-configuration.vpcEndpointIds" in got
    assert list(routes(result.api)) == ["GET /a", "GET /b", "GET /d"]
    assert result.functions == ["f"]
    # strict: every warning is an error.
    assert {p for p, _ in problems(d, strict=True)} == set(got)


# ---------------------------------------------------------------------------- ids, names, modes
def test_ids_names_and_stages() -> None:
    d = doc({"/a": {"get": op(MOCK)}})
    first, again = import_document(d), import_document(d)
    assert first.api["id"] == again.api["id"] and len(first.api["id"]) == 10
    assert import_document(d, name="other").api["id"] != first.api["id"]
    # The derived id is the one fastgw's loader gives an API without one, so a base without an
    # id keeps its address.
    from fastgw.config.compile import _api_id
    from fastgw.config.model import Api

    assert first.api["id"] == _api_id(Api(name="t"))
    legacy = import_document(d, base={"name": "legacy", "stages": [{"name": "prod"}]})
    assert legacy.api["id"] == _api_id(Api(name="legacy")) and legacy.api["name"] == "legacy"
    chosen = import_document(d, name="renamed", api_id="myapi01", stage="beta", stage_variables={"v": "1"})
    assert chosen.api["name"] == "renamed" and chosen.api["id"] == "myapi01"
    assert chosen.api["stages"] == [{"name": "beta", "variables": {"v": "1"}}]
    assert problems({"openapi": "3.0.1", "info": {"version": "1"}, "paths": {}}) == [
        ("$.info.title", "missing: the API needs a name (info.title, or name=)")
    ]
    assert problems(d, api_id="Not-An-Id")[0][1].startswith("API id 'Not-An-Id'")
    assert problems({"swagger": "3.0", "info": {"title": "x"}}) == [
        ("$.swagger", "expected '2.0', got '3.0'")
    ]


BASE: dict[str, Any] = {
    "name": "pets-prod",
    "id": "pets000001",
    "kind": "rest",
    "plugins": [{"name": "request_id"}],
    "routes": [
        {"route": "GET /old", "integration": {"type": "MOCK", "body": "old"}},
        {
            "route": "GET /pets/{id}",
            "integration": {"type": "HTTP_PROXY", "uri": "http://h/pets/{id}"},
            "plugins": [{"name": "cors_headers"}],
        },
        {
            "route": "GET /pets",
            "integration": {"type": "HTTP_PROXY", "uri": "http://h/pets", "targets": ["http://h2:80"]},
            "plugins": [{"name": "trace"}],
        },
    ],
    "models": {"Old": {"type": "object"}, "Pet": {"type": "string"}},
    "authorizers": [
        {
            "name": "auth",
            "type": "TOKEN",
            "authorizerUri": "old-fn",
            "identitySource": "method.request.header.A",
        }
    ],
    "stages": [
        {
            "name": "prod",
            "variables": {"x": "1"},
            "route_throttle": {
                "GET /old": {"rateLimit": 5, "burstLimit": 5},
                "GET /pets": {"rateLimit": 9, "burstLimit": 9},
            },
        }
    ],
}

UPDATE = doc(
    {
        "/pets": {"get": op({"type": "http_proxy", "uri": "http://h/pets"}, security=[{"auth": []}])},
        "/pets/{petId}": {"get": op({"type": "http_proxy", "uri": "http://h/v2/pets/{petId}"})},
    },
    components={
        "schemas": {"Pet": {"type": "object"}},
        "securitySchemes": {
            "auth": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": "new-fn"},
            }
        },
    },
)


def test_overwrite_keeps_id_name_stages_and_fastgw_settings() -> None:
    result = import_document(UPDATE, base=BASE, mode="overwrite")
    api = result.api
    assert (api["name"], api["id"], api["plugins"]) == ("pets-prod", "pets000001", [{"name": "request_id"}])
    assert list(routes(api)) == ["GET /pets", "GET /pets/{petId}"]
    # A kept route key keeps its plugins, and its targets while the URI is the same.
    pets = routes(api)["GET /pets"]
    assert pets["plugins"] == [{"name": "trace"}]
    assert pets["integration"]["targets"] == ["http://h2:80"]
    assert "plugins" not in routes(api)["GET /pets/{petId}"]
    assert list(api["models"]) == ["Pet"]
    assert api["authorizers"] == [
        {
            "name": "auth",
            "type": "TOKEN",
            "authorizerUri": "new-fn",
            "identitySource": "method.request.header.Authorization",
        }
    ]
    # Stages are kept; settings of a route that is gone are dropped with a warning.
    assert api["stages"][0]["variables"] == {"x": "1"}
    assert api["stages"][0]["route_throttle"] == {"GET /pets": {"rateLimit": 9, "burstLimit": 9}}
    assert "no route 'GET /old' any more" in warnings_of(result)["base.stages[0].route_throttle['GET /old']"]
    assert result.functions == ["new-fn"]
    assert BASE["routes"][0]["route"] == "GET /old"  # base is not modified


def test_merge_adds_and_the_document_wins() -> None:
    result = import_document(UPDATE, base=BASE, mode="merge", stage_variables={"y": "2"})
    api = result.api
    r = routes(api)
    # GET /old kept; GET /pets replaced in place; GET /pets/{petId} replaces GET /pets/{id},
    # which matches the same requests (AWS refuses two variable names at one position).
    assert list(r) == ["GET /old", "GET /pets/{petId}", "GET /pets"]
    assert r["GET /pets/{petId}"]["integration"]["uri"] == "http://h/v2/pets/{petId}"
    assert r["GET /pets"]["authorizer"] == "auth" and r["GET /pets"]["plugins"] == [{"name": "trace"}]
    assert (
        "replaces the existing route 'GET /pets/{id}' (base.routes[1])"
        in warnings_of(result)["$.paths['/pets/{petId}'].get"]
    )
    assert list(api["models"]) == ["Old", "Pet"] and api["models"]["Pet"]["type"] == "object"
    assert [a["authorizerUri"] for a in api["authorizers"]] == ["new-fn"]
    assert api["stages"][0]["variables"] == {"x": "1", "y": "2"}
    assert set(api["stages"][0]["route_throttle"]) == {"GET /old", "GET /pets"}
    assert api["plugins"] == [{"name": "request_id"}]


def test_merge_problems_in_base_are_reported_under_base() -> None:
    base = copy.deepcopy(BASE)
    base["routes"][0]["integration"] = {"type": "HTTP_PROXY", "uri": "http://h/{missing}"}
    found = problems(UPDATE, base=base, mode="merge")
    assert found == [("base.routes[0].integration.uri", "{missing} is not a path parameter of the route")]
    assert problems(UPDATE, base={**BASE, "kind": "http"}) == [
        ("$", "the document is a rest API; the existing API is http")
    ]
    with pytest.raises(ValueError, match="needs the existing API"):
        import_document(UPDATE, mode="merge")


@pytest.mark.parametrize("spec", ["oas30", "swagger"])
def test_fastgw_export_round_trips(spec: str) -> None:
    """What fastgw.openapi.export writes (AWS's extensions plus its x-fastgw-* leftovers) comes
    back as the same API."""
    export = pytest.importorskip("fastgw.openapi.export")
    import msgspec

    from fastgw.config.model import Api

    api = {
        "name": "round-trip",
        "id": "rt00000001",
        "kind": "rest",
        "plugins": [{"name": "request_id"}],
        "binaryMediaTypes": ["image/png"],
        "routes": [
            {"route": "GET /health", "integration": {"type": "MOCK", "status": 204, "headers": {"x-a": "b"}}},
            {
                "route": "ANY /files/{proxy+}",
                "integration": {
                    "type": "HTTP_PROXY",
                    "uri": "http://${stageVariables.backend}/store/{proxy}",
                    "targets": ["http://10.0.0.2:80"],
                    "pass_query": False,
                    "timeout_ms": 60000,
                },
                "apiKeyRequired": True,
                "plugins": [{"name": "cors_headers", "config": {"origin": "*"}}],
            },
            {
                "route": "POST /orders",
                "integration": {"type": "AWS_PROXY", "uri": "place-order"},
                "authorizer": "tok",
                "requestModels": {"application/json": "Order"},
                "requestValidator": "body",
            },
        ],
        "authorizers": [
            {
                "name": "tok",
                "type": "TOKEN",
                "authorizerUri": "auth-fn",
                "identitySource": "method.request.header.Authorization",
                "timeout_ms": 2000,
                "cache_per_route": True,
            }
        ],
        "models": {"Order": {"type": "object", "required": ["item"]}},
        "requestValidators": {"body": {"validateRequestBody": True}},
        "stages": [{"name": "prod", "variables": {"backend": "10.0.0.1:80"}}],
    }
    document = export.export_api(msgspec.convert(api, Api), spec=spec)
    result = import_document(json.loads(json.dumps(document)))
    assert result.warnings == []
    back = copy.deepcopy(result.api)
    back["models"]["Order"].pop("$schema")  # the draft-4 marker is the importer's
    # Path parameters are declared on every route (OpenAPI requires it), marked x-fastgw-implicit
    # where the route does not name them: none comes back as a method request parameter.
    assert all("requestParameters" not in route for route in back["routes"])
    back["routes"].sort(key=lambda r: r["route"])  # the export orders paths its own way
    want = copy.deepcopy(api)
    want["routes"].sort(key=lambda r: r["route"])
    assert msgspec.convert(back, Api) == msgspec.convert(want, Api)


def test_fastgw_export_marks_are_read_and_checked() -> None:
    """x-fastgw-implicit (a path parameter declared for OpenAPI's sake only) and x-fastgw-schema (a
    model's draft other than 4), as fastgw's export writes them."""
    param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    d = doc(
        {
            "/a/{id}": {
                "get": op(MOCK, parameters=[{**param, "x-fastgw-implicit": True}]),
                "put": op(MOCK, parameters=[{**param, "x-fastgw-implicit": False}]),
            }
        },
        components={
            "schemas": {"M": {"type": "number", "x-fastgw-schema": "http://json-schema.org/draft-07/schema#"}}
        },
    )
    api = import_document(d).api
    assert "requestParameters" not in routes(api)["GET /a/{id}"]
    assert routes(api)["PUT /a/{id}"]["requestParameters"] == {"method.request.path.id": True}
    assert api["models"]["M"] == {"$schema": "http://json-schema.org/draft-07/schema#", "type": "number"}
    d["paths"]["/a/{id}"]["get"]["parameters"][0]["x-fastgw-implicit"] = "yes"
    d["components"]["schemas"]["M"]["x-fastgw-schema"] = 7
    assert problems(d) == [
        ("$.components.schemas.M.x-fastgw-schema", "expected a string, got number"),
        ("$.paths['/a/{id}'].get.parameters[0].x-fastgw-implicit", "expected a boolean, got string"),
    ]


# ---------------------------------------------------------------------------- end to end
def test_imported_api_served_by_a_real_gateway(
    gateway_factory: GatewayFactory, echo_server: EchoServer
) -> None:
    result = import_document(
        DOCS / "e2e.yaml", stage="live", stage_variables={"backend": f"127.0.0.1:{echo_server.port}"}
    )
    assert result.warnings == [] and result.functions == []
    gw = gateway_factory({"apis": [result.api]})

    health = get(gw.port, "/live/health")
    assert health.status == 200 and health.header("X-Health") == "green"
    assert health.json() == {"ok": True, "stage": "live"}

    item = get(gw.port, "/live/items/42?view=full")
    assert item.status == 200
    echoed = item.json()
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("GET", "/backend/items/42", "view=full")
    assert [v for k, v in echoed["headers"] if k.lower() == "x-imported"] == ["yes"]

    with RawConn(gw.port) as c:
        pre = c.request("OPTIONS", "/live/items/42", headers=[("Origin", "https://app.example.com")])
        assert pre.status == 200 and pre.header("Access-Control-Allow-Methods") == "GET,OPTIONS"
        put = c.request("PUT", "/live/files/a/b.txt", body=b"hello")
        assert put.status == 200
        assert (put.json()["method"], put.json()["path"], put.json()["body"]) == (
            "PUT",
            "/store/a/b.txt",
            "hello",
        )
        # The base path (`live` in servers) is the stage, not a route prefix; unknown routes get AWS's 403.
        missing = c.request("GET", "/live/live/health")
        assert missing.status == 403 and missing.json() == {"message": "Missing Authentication Token"}


def test_the_api_id_comes_from_the_exported_address() -> None:
    # AWS exports name the API in servers[].url (OpenAPI 3) or host (Swagger): its resource
    # policy's ARNs use that id, so the import keeps it.
    examples = Path(__file__).resolve().parents[2] / "examples" / "openapi"
    variables = {"catalogHost": "127.0.0.1:9"}
    got = import_document(examples / "catalog-rest.yaml", stage_variables=variables)
    assert got.api["id"] == "c4t4l0g9xx"
    swagger = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "host": "abc123defg.execute-api.eu-west-1.amazonaws.com",
        "paths": {},
    }
    assert import_document(swagger).api["id"] == "abc123defg"
    swagger["host"] = "api.example.com"
    assert import_document(swagger).api["id"] != "api"


def test_https_endpoints_are_imported() -> None:
    d = doc({"/tls": {"get": op({"type": "http_proxy", "uri": "https://api.example.com/v1/x"})}})
    got = import_document(d)
    routes = {r["route"]: r for r in got.api["routes"]}
    assert routes["GET /tls"]["integration"]["uri"] == "https://api.example.com/v1/x"


def test_a_document_cannot_choose_an_access_log_file() -> None:
    d = doc(
        {"/a": {"get": op({"type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'}})}}
    )
    d["x-fastgw-api"] = {
        "stages": [
            {
                "name": "prod",
                "accessLogSettings": {
                    "format": "$context.requestId",
                    "destination": "/root/.ssh/authorized_keys",
                },
            }
        ]
    }
    got = import_document(d)
    assert "accessLogSettings" not in got.api["stages"][0]
    assert any(w.path.endswith("accessLogSettings") for w in got.warnings)

"""Request validators end to end (AWS's request validation: required parameters, JSON Schema
draft 4 body models), with the developer guide's PetStore-style model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, GatewayFactory, RawConn

PET = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "NewPet",
    "type": "object",
    "properties": {
        "type": {"$ref": "https://apigateway.amazonaws.com/restapis/petstore01/models/PetType"},
        "price": {"type": "number", "minimum": 25.0, "maximum": 500.0},
    },
    "required": ["type", "price"],
}
PET_TYPE = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "PetType",
    "type": "string",
    "enum": ["dog", "cat", "fish", "bird", "gecko"],
}

CONFIG: dict[str, Any] = {
    "apis": [
        {
            "name": "petstore",
            "id": "petstore01",
            "models": {"NewPet": PET, "PetType": PET_TYPE},
            "requestValidators": {
                "all": {"validateRequestBody": True, "validateRequestParameters": True},
                "params-only": {"validateRequestParameters": True},
            },
            "requestValidator": "all",
            "routes": [
                {
                    "route": "POST /pets",
                    "integration": {"type": "MOCK", "status": 200, "body": '{"ok":true}'},
                    "requestModels": {"application/json": "NewPet"},
                    "requestParameters": {
                        "method.request.header.x-client": True,
                        "method.request.querystring.dryRun": False,
                    },
                },
                {
                    "route": "GET /pets",
                    "integration": {"type": "MOCK", "status": 200, "body": "[]"},
                    "requestValidator": "params-only",
                    "requestParameters": {
                        "method.request.querystring.type": True,
                        "method.request.querystring.page": True,
                    },
                },
            ],
            "stages": [{"name": "prod"}],
        }
    ]
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Any:
    return module_gateway_factory(CONFIG)


def call(
    gw: Any, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Any:
    with RawConn(gw.port) as c:
        return c.request(method, target, headers=headers or [], body=body)


def test_valid_body_passes(gw: Any) -> None:
    r = call(
        gw,
        "POST",
        "/prod/pets",
        [("x-client", "t"), ("content-type", "application/json")],
        b'{"type": "dog", "price": 249.99}',
    )
    assert r.status == 200 and r.body == b'{"ok":true}'


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "dinosaur", "price": 249.99}',
        b'{"type": "dog", "price": 1}',
        b'{"type": "dog"}',
        b"not json",
        b"",
    ],
)
def test_invalid_bodies(gw: Any, body: bytes) -> None:
    r = call(gw, "POST", "/prod/pets", [("x-client", "t"), ("content-type", "application/json")], body)
    assert r.status == 400
    assert r.body == b'{"message": "Invalid request body"}'
    assert r.header("x-amzn-ErrorType") == "BadRequestException"


def test_missing_parameters_listed_before_the_body_is_checked(gw: Any) -> None:
    r = call(gw, "POST", "/prod/pets", [("content-type", "application/json")], b"{}")
    assert r.status == 400
    assert r.body == b'{"message": "Missing required request parameters: [x-client]"}'
    r = call(gw, "GET", "/prod/pets?page=")
    assert r.body == b'{"message": "Missing required request parameters: [type, page]"}'
    assert call(gw, "GET", "/prod/pets?type=dog&page=2").status == 200


def test_a_body_without_content_type_is_json(gw: Any) -> None:
    assert call(gw, "POST", "/prod/pets", [("x-client", "t")], b'{"type": "cat", "price": 30}').status == 200
    assert call(gw, "POST", "/prod/pets", [("x-client", "t")], b'{"type": "cow", "price": 30}').status == 400


def test_bad_models_and_validators_are_config_errors(tmp_path: Path) -> None:
    bad = {
        "apis": [
            {
                "name": "a",
                "models": {"Broken": {"type": "no-such-type"}},
                "requestValidators": {"v": {"validateRequestBody": True}},
                "routes": [
                    {"route": "POST /x", "integration": {"type": "MOCK"}, "requestValidator": "nope"},
                    {
                        "route": "POST /y",
                        "integration": {"type": "MOCK"},
                        "requestModels": {"application/json": "Gone"},
                        "requestParameters": {"method.request.cookie.c": True},
                    },
                ],
                "stages": [{"name": "prod"}],
            }
        ]
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = subprocess.run(
        [sys.executable, "-m", "fastgw", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "$.apis[0].models.Broken" in text
    assert "$.apis[0].routes[0].requestValidator" in text
    assert "$.apis[0].routes[1].requestModels.application/json" in text
    assert "$.apis[0].routes[1].requestParameters.method.request.cookie.c" in text


def test_models_are_draft_4_unless_they_say_otherwise() -> None:
    from fastjsonschema import JsonSchemaValueException

    from fastgw.pipeline.validation import compile_models

    compiled, errors = compile_models(
        {
            "Draft4": {"type": "number", "maximum": 5, "exclusiveMaximum": True},
            "Draft7": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "number",
                "exclusiveMaximum": 5,
            },
        }
    )
    assert errors == []
    for name in ("Draft4", "Draft7"):
        compiled[name](4)
        with pytest.raises(JsonSchemaValueException):
            compiled[name](5)

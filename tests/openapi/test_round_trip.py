"""import -> export -> import over every OpenAPI document of the repository (fastgw.openapi).

Each document of ``examples/openapi/`` and ``tests/openapi/docs/`` (and ``EDGE``, written for what
those do not exercise) is imported as its tests import it, exported as OpenAPI 3.0 (and Swagger
2.0 for REST APIs), and the export imported again from its JSON and from its YAML text, with
nothing else given: the export carries the name, the id, the stages and their variables. The
second import must be the first one, compared as fastgw's loader reads them
(``fastgw.config.load.decode_config``) up to ``NORMALISED``. And the export is a fixed point:
exporting the second import gives the first export again, byte for byte.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from fastgw.config.load import decode_config
from fastgw.config.model import Api
from fastgw.openapi import ImportResult, import_document
from fastgw.openapi.export import config_builtins, dump, export_api

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
INTEG = "x-amazon-apigateway-integration"
MOCK_200 = {
    "type": "mock",
    "requestTemplates": {"application/json": '{"statusCode": 200}'},
    "responses": {"default": {"statusCode": "200"}},
}

# What the documents do not exercise, each once lost on the way: a request body mapping two
# content types to two models (a Swagger body parameter holds one), an operation that does not
# declare its path parameter (an export must declare it), a model of another draft than 4
# (OpenAPI schema objects have no $schema).
EDGE: dict[str, Any] = {
    "openapi": "3.0.1",
    "info": {"title": "edge", "version": "1"},
    "paths": {
        "/orders": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Order"}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/Form"}
                        },
                    }
                },
                "responses": {"200": {"description": "200 response"}},
                INTEG: MOCK_200,
            }
        },
        "/limits/{id}": {
            "get": {"responses": {"200": {"description": "200 response"}}, INTEG: MOCK_200},
            "put": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Limit"}}}
                },
                "responses": {"200": {"description": "200 response"}},
                INTEG: MOCK_200,
            },
        },
    },
    "components": {
        "schemas": {
            "Order": {"type": "object", "required": ["item"]},
            "Form": {"type": "object"},
            "Limit": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "maximum": 5},
        }
    },
}

# Each document and the import_document arguments its own tests give (the examples': the api ids,
# stages and stage variables of tests/examples/test_openapi_examples.py).
DOCUMENTS: dict[str, tuple[Path | dict[str, Any], dict[str, Any]]] = {
    "petstore.yaml": (
        REPO / "examples" / "openapi" / "petstore.yaml",
        {"api_id": "k2zx8jh5ld", "stage": "prod", "stage_variables": {"petstoreHost": "127.0.0.1:8081"}},
    ),
    "orders-rest.yaml": (
        REPO / "examples" / "openapi" / "orders-rest.yaml",
        {"api_id": "q8r2v6x1m3", "stage": "prod"},
    ),
    "notes-http.yaml": (
        REPO / "examples" / "openapi" / "notes-http.yaml",
        {"api_id": "7t4kq9wz2c", "stage": "$default", "stage_variables": {"legacyHost": "127.0.0.1:8082"}},
    ),
    "catalog-rest.yaml": (
        REPO / "examples" / "openapi" / "catalog-rest.yaml",
        {"api_id": "c4t4l0g9xx", "stage": "live", "stage_variables": {"catalogHost": "127.0.0.1:8083"}},
    ),
    "rest_oas3.json": (
        REPO / "tests" / "openapi" / "docs" / "rest_oas3.json",
        {"stage_variables": {"backend": "10.0.0.5:9000"}},
    ),
    "rest_swagger.yaml": (REPO / "tests" / "openapi" / "docs" / "rest_swagger.yaml", {}),
    "http_api.yaml": (REPO / "tests" / "openapi" / "docs" / "http_api.yaml", {}),
    "e2e.yaml": (
        REPO / "tests" / "openapi" / "docs" / "e2e.yaml",
        {"stage": "live", "stage_variables": {"backend": "127.0.0.1:9"}},
    ),
    "edge": (EDGE, {}),
}
HTTP_DOCUMENTS = {"notes-http.yaml", "http_api.yaml"}

# The only difference allowed between the two imports, evened out by ``normalised``:
NORMALISED = {
    "order": "routes (by key) and authorizers (by name): the export sorts paths and security "
    "schemes so that it is deterministic, whatever the order of the config; neither order means "
    "anything to the gateway (routes match by the router's precedence and conflicts are refused, "
    "authorizers are named by the routes)",
}

CASES = [
    pytest.param(name, spec, id=f"{name}-{spec}")
    for name in DOCUMENTS
    for spec in (("oas30",) if name in HTTP_DOCUMENTS else ("oas30", "swagger"))
]


def test_every_document_is_covered() -> None:
    """A document added to the repository joins the round trip (or this test names it)."""
    found = {p.name for p in (REPO / "examples" / "openapi").glob("*.yaml")}
    found |= {p.name for p in (REPO / "tests" / "openapi" / "docs").iterdir() if p.is_file()}
    assert found == set(DOCUMENTS) - {"edge"}
    assert {n for n in DOCUMENTS if first_import(n).kind == "http"} == HTTP_DOCUMENTS


@functools.cache
def first_import(name: str) -> ImportResult:
    source, kwargs = DOCUMENTS[name]
    return import_document(source, **kwargs)


def plain(value: Any) -> Any:
    """Config data as builtins without the fields equal to their default, integrations tagged."""
    return config_builtins(value, tagged=True)


def normalised(api: dict[str, Any]) -> Api:
    """The Api fastgw's loader makes of an imported mapping, with NORMALISED's order evened out."""
    decoded = decode_config({"apis": [api]}).apis[0]
    return msgspec.structs.replace(
        decoded,
        routes=sorted(decoded.routes, key=lambda r: r.route),
        authorizers=sorted(decoded.authorizers, key=lambda a: a.name),
    )


def export(result: ImportResult, spec: Literal["oas30", "swagger"], fmt: Literal["json", "yaml"]) -> bytes:
    """The imported API's export at the stage the import made (the first: the only one)."""
    stage = result.api["stages"][0]["name"]
    return dump(export_api(result.api, spec=spec, stage=stage), fmt)


@pytest.mark.parametrize("name,spec", CASES)
def test_import_export_import_gives_the_same_api(name: str, spec: Literal["oas30", "swagger"]) -> None:
    first = first_import(name)
    want = normalised(first.api)
    for fmt in ("json", "yaml"):
        second = import_document(export(first, spec, fmt))
        assert [str(w) for w in second.warnings] == [], fmt  # the export says nothing fastgw ignores
        assert (second.kind, second.functions) == (first.kind, first.functions)
        got = normalised(second.api)
        assert plain(got) == plain(want), fmt
        assert got == want


@pytest.mark.parametrize("name,spec", CASES)
def test_the_export_is_a_fixed_point(name: str, spec: Literal["oas30", "swagger"]) -> None:
    first = first_import(name)
    for fmt in ("json", "yaml"):
        text = export(first, spec, fmt)
        assert export(import_document(text), spec, fmt) == text, fmt


def test_edge_document_round_trips_what_was_lost() -> None:
    """What EDGE exercises, asserted on the second import of its Swagger export."""
    first = first_import("edge")
    second = import_document(export(first, "swagger", "json")).api
    routes = {r["route"]: r for r in second["routes"]}
    assert routes["POST /orders"]["requestModels"] == {
        "application/json": "Order",
        "application/x-www-form-urlencoded": "Form",
    }
    assert "requestParameters" not in routes["GET /limits/{id}"]  # not declared by the document
    assert routes["PUT /limits/{id}"]["requestParameters"] == {"method.request.path.id": True}
    assert second["models"]["Limit"]["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert second["models"]["Order"]["$schema"] == "http://json-schema.org/draft-04/schema#"

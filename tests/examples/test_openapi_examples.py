"""examples/openapi/, end to end: AWS API Gateway exports imported, served and called over sockets.

Each document is imported with ``fastgw.openapi.import_document`` (the warnings are listed
exactly), the imported API is wrapped in a config with what an export never holds (the Lambda
functions, API keys and a usage plan, stage variables, the stage cache, a trusted proxy) and
served by a real gateway, one per document and module (a document the importer refuses fails
its own tests only). The clients reach each API at its AWS address, Host
``{api_id}.execute-api.us-east-1.amazonaws.com``:

- ``petstore.yaml``: the HTML root (MOCK), list / get / create through the local PetStore
  backend with the mapped query string and path parameters, a backend error mapped to 200 by
  the only (default) integration response, the CORS preflights (MOCK);
- ``orders-rest.yaml``: the TOKEN authorizer (401 with the customised body, 403 from a policy),
  the API key (403 without, 200 with, inside a usage plan), the request validators (AWS's body
  for parameters, the customised one for bodies), the non-proxy Lambda integration's mapping
  templates and its integration responses chosen by the error message, ``passthroughBehavior:
  never`` (415), a binary upload through a proxy route;
- ``notes-http.yaml``: the JWT authorizer (401, 403 without the scope, 200 / 201 with it),
  payload 2.0 routes sharing one integration by $ref, CORS answered by the API, the $default
  route with parameter mapping;
- ``catalog-rest.yaml``: the proxy routes and their mapped parameters, cache hits that never
  reach the backend, the resource policy (deny by source IP), gzip over the minimum
  compression size, MOCK status chosen by the request template.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fastgw.openapi import import_document
from tests.helpers import REPO, GatewayFactory, RawConn, Response

pytestmark = pytest.mark.timeout(120)

DOCS = REPO / "examples" / "openapi"
REGION_HOST = "execute-api.us-east-1.amazonaws.com"

# The ids the APIs have on AWS (their servers URLs); resource policies and method ARNs use them.
PETSTORE_ID = "k2zx8jh5ld"
ORDERS_ID = "q8r2v6x1m3"
NOTES_ID = "7t4kq9wz2c"
CATALOG_ID = "c4t4l0g9xx"

ORDERS_KEY = "orders-example-key-0123456789abcdef"
# Bearer tokens the authorizer knows: token -> CUSTOMER:ROLE.
ORDERS_TOKENS = {
    "alice-token-0001": "alice:customer",
    "bob-token-0002": "bob:customer",
    "audit-token-0003": "audit:auditor",
}
NOTES_AUDIENCE = "notes-web"
ORIGIN = "https://notes.example.com"


def load(name: str) -> ModuleType:
    """An examples/openapi module, by path: in this process ``examples`` is the tests package."""
    spec = importlib.util.spec_from_file_location(f"openapi_example_{name}", DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# -------------------------------------------------------------------------------- the imports
# What import_document says about each document: (severity, JSON path) of every problem.
EXPECTED_WARNINGS: dict[str, list[tuple[str, str]]] = {
    # Documentation parts are not served; AWS tags are not kept; an enabled default endpoint is
    # what fastgw does anyway (no warning).
    "petstore.yaml": [("warning", "$.x-amazon-apigateway-documentation")],
    "orders-rest.yaml": [],
    "notes-http.yaml": [("warning", "$.tags[0].x-amazon-apigateway-tag-value")],
    "catalog-rest.yaml": [],
}
EXPECTED_ROUTES: dict[str, list[str]] = {
    "petstore.yaml": [
        "GET /",
        "GET /pets",
        "GET /pets/{petId}",
        "OPTIONS /pets",
        "OPTIONS /pets/{petId}",
        "POST /pets",
    ],
    "orders-rest.yaml": [
        "GET /orders",
        "GET /orders/{orderId}",
        "POST /orders",
        "POST /orders/{orderId}/attachments",
    ],
    "notes-http.yaml": [
        "$default",
        "DELETE /notes/{noteId}",
        "GET /notes",
        "GET /notes/{noteId}",
        "POST /notes",
    ],
    "catalog-rest.yaml": ["ANY /products/{proxy+}", "GET /products", "GET /status", "POST /admin/reindex"],
}
EXPECTED_FUNCTIONS: dict[str, set[str]] = {
    "petstore.yaml": set(),
    "orders-rest.yaml": {"orders-api", "orders-attachments", "orders-authorizer"},
    "notes-http.yaml": {"notes-http"},
    "catalog-rest.yaml": set(),
}
STAGES = {
    "petstore.yaml": "prod",
    "orders-rest.yaml": "prod",
    "notes-http.yaml": "$default",
    "catalog-rest.yaml": "live",
}
API_IDS = {
    "petstore.yaml": PETSTORE_ID,
    "orders-rest.yaml": ORDERS_ID,
    "notes-http.yaml": NOTES_ID,
    "catalog-rest.yaml": CATALOG_ID,
}
KINDS = {
    "petstore.yaml": "rest",
    "orders-rest.yaml": "rest",
    "notes-http.yaml": "http",
    "catalog-rest.yaml": "rest",
}


# The stage variables the documents' URIs use (an import checks them: fastgw compiles the API).
VARIABLES = {
    "petstore.yaml": {"petstoreHost": "127.0.0.1:8081"},
    "orders-rest.yaml": {},
    "notes-http.yaml": {"legacyHost": "127.0.0.1:8082"},
    "catalog-rest.yaml": {"catalogHost": "127.0.0.1:8083"},
}


def import_example(name: str, variables: dict[str, str] | None = None) -> Any:
    return import_document(
        DOCS / name, api_id=API_IDS[name], stage=STAGES[name], stage_variables=variables or VARIABLES[name]
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_WARNINGS))
def test_every_document_imports_with_the_expected_warnings(name: str) -> None:
    result = import_example(name)
    got = [(p.severity, p.path) for p in result.warnings]
    assert got == EXPECTED_WARNINGS[name], [str(p) for p in result.warnings]
    assert result.kind == KINDS[name]
    assert set(result.functions) == EXPECTED_FUNCTIONS[name]
    api = result.api
    assert api["kind"] == KINDS[name]
    assert api["id"] == API_IDS[name]
    assert sorted(r["route"] for r in api["routes"]) == EXPECTED_ROUTES[name]
    assert [s["name"] for s in api["stages"]] == [STAGES[name]]


def test_the_imports_carry_the_api_level_extensions() -> None:
    orders = import_example("orders-rest.yaml").api
    assert orders["apiKeySource"] == "HEADER"
    assert orders["binaryMediaTypes"] == ["image/png", "application/pdf"]
    assert orders["requestValidator"] == "all"
    assert sorted(orders["requestValidators"]) == ["all", "params-only"]
    assert sorted(orders["gatewayResponses"]) == [
        "BAD_REQUEST_BODY",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "UNAUTHORIZED",
    ]
    assert {"NewOrder", "OrderLine"} <= set(orders["models"])
    catalog = import_example("catalog-rest.yaml").api
    assert catalog["minimumCompressionSize"] == 1024
    assert catalog["policy"]["Statement"][0]["Effect"] == "Allow"
    notes = import_example("notes-http.yaml").api
    assert notes["cors"]["allowOrigins"] == [ORIGIN]
    assert [a["type"] for a in notes["authorizers"]] == ["JWT"]


# ------------------------------------------------------------------------------- the backends
@pytest.fixture(scope="module")
def petstore_backend() -> Iterator[Any]:
    server = load("petstore_backend").start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def catalog_backend() -> Iterator[Any]:
    server = load("catalog_backend").start()
    yield server
    server.shutdown()
    server.server_close()


JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    """An OIDC issuer on loopback: discovery document and JWKS (plain HTTP), and its tokens."""

    def __init__(self) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(JWT_KEY.public_key()))
        jwk.update(kid="notes-1", use="sig", alg="RS256")
        keys = json.dumps({"keys": [jwk]}).encode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": owner.url, "jwks_uri": owner.url + "/keys"}).encode()
                else:
                    body = keys
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str, scope: str, **override: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": sub, "aud": NOTES_AUDIENCE, "iat": now, "exp": now + 600}
        claims["scope"] = scope
        claims.update(override)
        return jwt.encode(claims, JWT_KEY, algorithm="RS256", headers={"kid": "notes-1"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.close()


# ------------------------------------------------------------------------------- the gateways
# One gateway per document (a document the importer refuses fails its own tests only); each
# config wraps the imported API with what an AWS export does not hold.
def petstore_config(backend_port: int) -> dict[str, Any]:
    api = import_example("petstore.yaml", {"petstoreHost": f"127.0.0.1:{backend_port}"}).api
    return {"apis": [api]}


def orders_config() -> dict[str, Any]:
    api = import_example("orders-rest.yaml").api
    tokens = ",".join(f"{token}={who}" for token, who in ORDERS_TOKENS.items())
    return {
        "functions": {
            "orders-api": {"handler": "examples.openapi.orders:handler", "code_path": "."},
            "orders-attachments": {"handler": "examples.openapi.orders:attachments", "code_path": "."},
            "orders-authorizer": {
                "handler": "examples.openapi.orders_authorizer:handler",
                "code_path": ".",
                "environment": {"ORDERS_API_TOKENS": tokens},
            },
        },
        "apis": [api],
        # API keys and usage plans live beside the API, as on AWS.
        "apiKeys": [{"name": "orders-client", "value": ORDERS_KEY}],
        "usagePlans": [
            {
                "name": "orders-standard",
                "apiStages": [{"apiId": ORDERS_ID, "stage": "prod"}],
                "throttle": {"rateLimit": 100, "burstLimit": 50},
                "quota": {"limit": 10000, "period": "DAY"},
                "keys": ["orders-client"],
            }
        ],
    }


def notes_config(legacy_port: int, issuer_url: str) -> dict[str, Any]:
    api = import_example("notes-http.yaml", {"legacyHost": f"127.0.0.1:{legacy_port}"}).api
    # The document's issuer is a placeholder for the identity provider: here, the local one.
    api["authorizers"][0]["jwtConfiguration"]["issuer"] = issuer_url
    return {
        "functions": {"notes-http": {"handler": "examples.openapi.notes:handler", "code_path": "."}},
        "apis": [api],
    }


def catalog_config(backend_port: int) -> dict[str, Any]:
    api = import_example("catalog-rest.yaml", {"catalogHost": f"127.0.0.1:{backend_port}"}).api
    # Caching is a stage setting (AWS: the stage's cache cluster and its method settings), not
    # part of an export: GET methods are cached by default; here the proxy's ANY method is too,
    # and the status page is not.
    api["stages"][0]["cache"] = {"ttl_seconds": 300}
    api["stages"][0]["route_cache"] = {
        "ANY /products/{proxy+}": {"enabled": True},
        "GET /status": {"enabled": False},
    }
    # Loopback is a trusted proxy: a test says which client it forwards for (X-Forwarded-For).
    return {"gateway": {"trusted_proxies": ["127.0.0.1/32"]}, "apis": [api]}


@pytest.fixture(scope="module")
def petstore_gw(module_gateway_factory: GatewayFactory, petstore_backend: Any) -> Any:
    return module_gateway_factory(petstore_config(petstore_backend.port))


@pytest.fixture(scope="module")
def orders_gw(module_gateway_factory: GatewayFactory) -> Any:
    return module_gateway_factory(orders_config())  # one worker: one order store


@pytest.fixture(scope="module")
def notes_gw(module_gateway_factory: GatewayFactory, echo_server: Any, issuer: Issuer) -> Any:
    return module_gateway_factory(notes_config(echo_server.port, issuer.url))


@pytest.fixture(scope="module")
def catalog_gw(module_gateway_factory: GatewayFactory, catalog_backend: Any) -> Any:
    return module_gateway_factory(catalog_config(catalog_backend.port))  # one worker: one cache


def call(
    gw: Any,
    api_id: str,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Response:
    with RawConn(gw.port) as c:
        return c.request(
            method, target, headers=list((headers or {}).items()), body=body, host=f"{api_id}.{REGION_HOST}"
        )


JSON = {"Content-Type": "application/json"}


# ------------------------------------------------------------------------------- PetStore
def petstore(
    gw: Any, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Response:
    return call(gw, PETSTORE_ID, method, target, headers, body)


def test_petstore_root_is_the_mock_html_page(petstore_gw: Any) -> None:
    r = petstore(petstore_gw, "GET", "/prod/")
    assert r.status == 200, r.body
    assert r.header("content-type") == "text/html"
    page = r.body.decode()
    assert "<h1>Welcome to your Pet Store API</h1>" in page
    # $context.stage in the response template.
    assert '<a href="/prod/pets/" target="_blank">' in page and '<a href="/prod/pets/1"' in page


def test_petstore_lists_pets_with_the_mapped_query_string(petstore_gw: Any, petstore_backend: Any) -> None:
    before = len(petstore_backend.seen)
    r = petstore(petstore_gw, "GET", "/prod/pets?type=Dog&page=2&color=brown")
    assert r.status == 200, r.body
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.json() == [
        {"id": 4, "type": "Dog", "price": 999.99},
        {"id": 5, "type": "Dog", "price": 249.99},
        {"id": 6, "type": "Dog", "price": 49.97},
    ]
    seen = petstore_backend.seen[before:]
    assert len(seen) == 1
    parts = urlsplit(seen[0].target)
    assert parts.path == "/petstore/pets"
    # Only the mapped query strings reach an HTTP (non-proxy) integration.
    assert parse_qs(parts.query) == {"type": ["Dog"], "page": ["2"]}
    # Without parameters: the first page.
    assert [p["id"] for p in petstore(petstore_gw, "GET", "/prod/pets").json()] == [1, 2, 3]


def test_petstore_gets_one_pet_by_the_mapped_path_parameter(petstore_gw: Any, petstore_backend: Any) -> None:
    r = petstore(petstore_gw, "GET", "/prod/pets/2")
    assert r.status == 200 and r.json() == {"id": 2, "type": "cat", "price": 124.99}
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert petstore_backend.seen[-1].target == "/petstore/pets/2"


def test_petstore_backend_errors_become_200_as_on_aws(petstore_gw: Any) -> None:
    """The methods' only integration response is 'default' (200): the backend's 400 passes as 200."""
    r = petstore(petstore_gw, "GET", "/prod/pets/0")
    assert r.status == 200
    assert r.json() == {"errors": [{"key": "GetPetRequest.petId", "message": "The value is out of range."}]}


def test_petstore_creates_a_pet(petstore_gw: Any, petstore_backend: Any) -> None:
    body = b'{"type": "cat", "price": 123.11}'
    r = petstore(petstore_gw, "POST", "/prod/pets", JSON, body)
    assert r.status == 200, r.body
    assert r.json() == {"pet": {"type": "cat", "price": 123.11}, "message": "success"}
    assert r.header("Access-Control-Allow-Origin") == "*"
    seen = petstore_backend.seen[-1]
    assert (seen.method, seen.target, json.loads(seen.body)) == ("POST", "/petstore/pets", json.loads(body))


@pytest.mark.parametrize(
    ("target", "methods"), [("/prod/pets", "POST,GET,OPTIONS"), ("/prod/pets/7", "GET,OPTIONS")]
)
def test_petstore_cors_preflights_are_mocks(petstore_gw: Any, target: str, methods: str) -> None:
    headers = {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    r = petstore(petstore_gw, "OPTIONS", target, headers)
    assert r.status == 200, r.body
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.header("Access-Control-Allow-Methods") == methods
    assert r.header("Access-Control-Allow-Headers") == "Content-Type,X-Amz-Date,Authorization,X-Api-Key"


def test_petstore_unknown_route_is_aws_403(petstore_gw: Any) -> None:
    r = petstore(petstore_gw, "DELETE", "/prod/pets/1")
    assert r.status == 403 and r.json() == {"message": "Missing Authentication Token"}


# --------------------------------------------------------------------------------- orders
def orders(
    gw: Any,
    method: str,
    target: str,
    token: str | None = "alice-token-0001",
    key: str | None = ORDERS_KEY,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Response:
    h = dict(JSON) if headers is None else dict(headers)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if key is not None:
        h["x-api-key"] = key
    return call(gw, ORDERS_ID, method, target, h, body)


def place(gw: Any, items: list[dict[str, Any]], token: str = "alice-token-0001") -> Response:
    return orders(gw, "POST", "/prod/orders", token, body=json.dumps({"items": items}).encode())


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-token"),
        pytest.param("Basic YWxpY2U6c2VjcmV0", id="not-bearer"),  # identityValidationExpression
        pytest.param("Bearer unknown-token-9999", id="unknown-token"),  # the function says so
    ],
)
def test_orders_authorizer_401_has_the_customised_body(orders_gw: Any, authorization: str | None) -> None:
    headers = {"x-api-key": ORDERS_KEY, **({"Authorization": authorization} if authorization else {})}
    r = call(orders_gw, ORDERS_ID, "GET", "/prod/orders?status=PENDING", headers)
    assert r.status == 401, r.body
    assert r.json() == {
        "error": "unauthorized",
        "message": "Unauthorized",
        "requestId": r.header("x-amzn-RequestId"),
    }
    assert r.header("WWW-Authenticate") == "Bearer realm=orders"
    assert r.header("x-amzn-ErrorType") == "UnauthorizedException"


def test_orders_authorizer_policy_denies_the_auditor_writes(orders_gw: Any) -> None:
    r = place(orders_gw, [{"sku": "SKU-1001", "quantity": 1}], token="audit-token-0003")
    assert r.status == 403
    assert r.json() == {"Message": "User is not authorized to access this resource with an explicit deny"}
    assert r.header("Access-Control-Allow-Origin") == "*"  # DEFAULT_4XX's header
    # Reading is allowed by the same (cached) policy.
    assert orders(orders_gw, "GET", "/prod/orders?status=PENDING", "audit-token-0003").status == 200


def test_orders_api_key_is_required(orders_gw: Any) -> None:
    r = orders(orders_gw, "GET", "/prod/orders?status=PENDING", key=None)
    assert r.status == 403 and r.json() == {"message": "Forbidden"}
    r = orders(orders_gw, "GET", "/prod/orders?status=PENDING", key="not-a-known-key-0000000000")
    assert r.status == 403 and r.json() == {"message": "Forbidden"}
    assert orders(orders_gw, "GET", "/prod/orders?status=PENDING").status == 200


def test_orders_validator_missing_parameter_has_aws_body(orders_gw: Any) -> None:
    r = orders(orders_gw, "GET", "/prod/orders")
    assert r.status == 400
    assert r.body == b'{"message": "Missing required request parameters: [status]"}'
    assert r.header("x-amzn-ErrorType") == "BadRequestException"
    assert r.header("Access-Control-Allow-Origin") == "*"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"items": []}', id="no-items"),
        pytest.param(b'{"items": [{"sku": "1001", "quantity": 1}]}', id="bad-sku-pattern"),
        pytest.param(b'{"items": [{"sku": "SKU-1001", "quantity": 11}]}', id="too-many"),
        pytest.param(b'{"items": [{"sku": "SKU-1001", "quantity": 1}], "coupon": "x"}', id="extra-field"),
        pytest.param(b"not json", id="not-json"),
    ],
)
def test_orders_validator_bad_body_has_the_customised_body(orders_gw: Any, body: bytes) -> None:
    r = orders(orders_gw, "POST", "/prod/orders", body=body)
    assert r.status == 400, r.body
    doc = r.json()
    assert doc["error"] == "invalid_order" and doc["message"] == "Invalid request body"
    assert isinstance(doc["details"], str)


def test_orders_create_get_and_list_through_the_mapping_templates(orders_gw: Any) -> None:
    r = place(orders_gw, [{"sku": "SKU-1001", "quantity": 2}, {"sku": "SKU-1002", "quantity": 1}])
    assert r.status == 201, r.body
    order = r.json()
    order_id = order["orderId"]
    assert order_id.startswith("ord-") and r.header("X-Order-Id") == order_id
    assert order == {
        "orderId": order_id,
        "status": "PENDING",
        "items": [
            {"sku": "SKU-1001", "name": "Espresso beans, 1 kg", "quantity": 2, "unitPrice": 24.9},
            {"sku": "SKU-1002", "name": "Moka pot, 6 cups", "quantity": 1, "unitPrice": 39.0},
        ],
        "total": 88.8,
        "currency": "EUR",
        "links": {"self": f"/prod/orders/{order_id}"},  # $context.stage
    }
    # GET: no response template, the function's result passes through; its customerId is the
    # authorizer's principalId, read by the request template.
    r = orders(orders_gw, "GET", f"/prod/orders/{order_id}")
    assert r.status == 200, r.body
    stored = r.json()
    assert stored["id"] == order_id and stored["customerId"] == "alice" and stored["total"] == 88.8
    # The list goes through a #foreach template.
    listed = orders(orders_gw, "GET", "/prod/orders?status=PENDING").json()
    assert listed["status"] == "PENDING" and listed["count"] == len(listed["orders"]) >= 1
    assert {"orderId": order_id, "total": 88.8, "currency": "EUR"} in listed["orders"]
    # Another customer does not see it.
    r = orders(orders_gw, "GET", f"/prod/orders/{order_id}", token="bob-token-0002")
    assert r.status == 404 and r.json() == {"message": f"Order {order_id} not found"}
    assert order_id not in json.dumps(
        orders(orders_gw, "GET", "/prod/orders?status=PENDING", "bob-token-0002").json()
    )


def test_orders_lambda_errors_pick_the_integration_response(orders_gw: Any) -> None:
    r = place(orders_gw, [{"sku": "SKU-9999", "quantity": 1}])  # valid for the model, unknown to the shop
    assert r.status == 400 and r.json() == {"message": "unknown product SKU-9999"}
    r = place(orders_gw, [{"sku": "SKU-1003", "quantity": 1}])  # out of stock
    assert r.status == 409 and r.json() == {"message": "only 0 of SKU-1003 left in stock, 1 wanted"}
    r = orders(orders_gw, "GET", "/prod/orders?status=LOST")
    assert r.status == 400 and r.json() == {"message": "status must be one of CANCELLED, PENDING, SHIPPED"}


def test_orders_passthrough_never_refuses_other_media_types(orders_gw: Any) -> None:
    r = orders(orders_gw, "POST", "/prod/orders", body=b"items=1", headers={"Content-Type": "text/plain"})
    assert r.status == 415 and r.json() == {"message": "Unsupported Media Type"}


def test_orders_binary_attachment_reaches_the_proxy_function_base64(orders_gw: Any) -> None:
    order_id = place(orders_gw, [{"sku": "SKU-1001", "quantity": 1}]).json()["orderId"]
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    r = orders(
        orders_gw,
        "POST",
        f"/prod/orders/{order_id}/attachments",
        body=png,
        headers={"Content-Type": "image/png"},
    )
    assert r.status == 201, r.body
    assert r.json() == {
        "orderId": order_id,
        "attachments": 1,
        "contentType": "image/png",
        "bytes": len(png),
        "sha256": hashlib.sha256(png).hexdigest(),
        "binary": True,
    }
    r = orders(
        orders_gw,
        "POST",
        "/prod/orders/ord-none/attachments",
        body=png,
        headers={"Content-Type": "image/png"},
    )
    assert r.status == 404 and r.json() == {"message": "no order ord-none"}


# ---------------------------------------------------------------------------------- notes
def notes(
    gw: Any, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Response:
    return call(gw, NOTES_ID, method, target, headers, body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_notes_jwt_401_without_a_valid_token(notes_gw: Any, issuer: Issuer) -> None:
    assert notes(notes_gw, "GET", "/notes").status == 401
    r = notes(
        notes_gw, "GET", "/notes", bearer(issuer.token("ann", "notes/read", exp=int(time.time()) - 3600))
    )
    assert r.status == 401 and r.json() == {"message": "Unauthorized"}
    r = notes(notes_gw, "GET", "/notes", bearer(issuer.token("ann", "notes/read", aud="another-app")))
    assert r.status == 401


def test_notes_jwt_scopes_per_route(notes_gw: Any, issuer: Issuer) -> None:
    reader = bearer(issuer.token("ann", "notes/read"))
    r = notes(notes_gw, "GET", "/notes", reader)
    assert r.status == 200, r.body
    assert r.json() == {"owner": "ann", "scopes": ["notes/read"], "notes": []}  # inferred 200 JSON
    r = notes(notes_gw, "POST", "/notes", {**reader, **JSON}, b'{"text": "x"}')
    assert r.status == 403 and r.json() == {"message": "Forbidden"}

    writer = bearer(issuer.token("ann", "notes/read notes/write"))
    r = notes(notes_gw, "POST", "/notes", {**writer, **JSON}, b'{"text": "buy beans", "tags": ["shop"]}')
    assert r.status == 201, r.body
    note = r.json()
    assert note["owner"] == "ann" and r.header("location") == f"/notes/{note['id']}"
    assert notes(notes_gw, "GET", f"/notes/{note['id']}", reader).json() == note
    assert note in notes(notes_gw, "GET", "/notes", reader).json()["notes"]
    # Someone else's token: the note does not exist for them.
    other = bearer(issuer.token("ben", "notes/read notes/write"))
    assert notes(notes_gw, "GET", f"/notes/{note['id']}", other).status == 404
    assert notes(notes_gw, "DELETE", f"/notes/{note['id']}", reader).status == 403
    assert notes(notes_gw, "DELETE", f"/notes/{note['id']}", writer).status == 204
    assert notes(notes_gw, "GET", f"/notes/{note['id']}", writer).status == 404


def test_notes_cors_preflight_and_response_headers(notes_gw: Any, issuer: Issuer) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    r = notes(notes_gw, "OPTIONS", "/notes", preflight)  # no token: preflights skip the authorizer
    assert r.status == 204, r.body
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Access-Control-Max-Age") == "600"
    assert "POST" in (r.header("Access-Control-Allow-Methods") or "")
    assert set((r.header("Access-Control-Allow-Headers") or "").split(",")) == {
        "authorization",
        "content-type",
    }

    r = notes(notes_gw, "OPTIONS", "/notes", {**preflight, "Origin": "https://evil.example"})
    assert r.header("Access-Control-Allow-Origin") is None

    r = notes(notes_gw, "GET", "/notes", {"Origin": ORIGIN, **bearer(issuer.token("ann", "notes/read"))})
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Access-Control-Expose-Headers") == "location"


def test_notes_default_route_maps_parameters_to_the_legacy_site(notes_gw: Any) -> None:
    r = notes(notes_gw, "GET", "/about/team?lang=en", {"Cookie": "session=secret", "X-Kept": "yes"})
    assert r.status == 200, r.body
    assert r.header("x-served-by") == "legacy-site"  # responseParameters for 200
    echoed = r.json()
    assert echoed["path"] == "/legacy/about/team"  # overwrite:path
    assert "lang=en" in echoed["query"]
    sent = {k.lower(): v for k, v in echoed["headers"]}
    # $context.requestId: the response's request id. NOTE: AWS HTTP APIs name that header
    # apigw-requestid; fastgw sends x-amzn-RequestId on every API.
    assert sent["x-notes-request-id"] in (r.header("apigw-requestid"), r.header("x-amzn-RequestId"))
    assert "cookie" not in sent and sent["x-kept"] == "yes"


# -------------------------------------------------------------------------------- catalog
def catalog(gw: Any, method: str, target: str, headers: dict[str, str] | None = None) -> Response:
    return call(gw, CATALOG_ID, method, target, headers)


def test_catalog_proxy_maps_parameters_and_caches_by_key(catalog_gw: Any, catalog_backend: Any) -> None:
    first = catalog(catalog_gw, "GET", "/live/products?category=grinders")
    assert first.status == 200, first.body
    doc = first.json()
    assert doc["category"] == "grinders" and doc["count"] == 3
    seen = catalog_backend.seen[-1]
    assert urlsplit(seen.target).path == "/v1/products"
    # The client's query string passes through (HTTP_PROXY); the mapping adds a static value.
    assert parse_qs(urlsplit(seen.target).query) == {"category": ["grinders"], "currency": ["EUR"]}
    assert seen.headers["x-catalog-stage"] == "live"  # context.stage
    assert seen.headers["x-client-ip"] == "127.0.0.1"  # context.identity.sourceIp

    count = len(catalog_backend.seen)
    second = catalog(catalog_gw, "GET", "/live/products?category=grinders&utm=newsletter")  # utm: not a key
    assert second.status == 200 and second.json() == doc  # the same servedBy: a hit
    assert len(catalog_backend.seen) == count
    other = catalog(catalog_gw, "GET", "/live/products?category=beans")
    assert other.json()["servedBy"] != doc["servedBy"]
    assert len(catalog_backend.seen) == count + 1


def test_catalog_greedy_proxy_resource(catalog_gw: Any, catalog_backend: Any) -> None:
    r = catalog(catalog_gw, "GET", "/live/products/SKU-1001/reviews")
    assert r.status == 200, r.body
    assert r.json()["reviews"][0] == {"stars": 5, "text": "Crema for days."}
    assert catalog_backend.seen[-1].target == "/v1/products/SKU-1001/reviews"
    count = len(catalog_backend.seen)
    assert catalog(catalog_gw, "GET", "/live/products/SKU-1001/reviews").json() == r.json()  # cached by proxy
    assert len(catalog_backend.seen) == count
    assert catalog(catalog_gw, "GET", "/live/products/SKU-1007").json()["name"] == "French press"
    missing = catalog(catalog_gw, "GET", "/live/products/SKU-0000")
    assert missing.status == 404 and missing.json()["message"] == "no product SKU-0000"  # proxied as is


def test_catalog_compresses_over_the_minimum_size(catalog_gw: Any) -> None:
    r = catalog(catalog_gw, "GET", "/live/products", {"Accept-Encoding": "gzip"})
    assert r.status == 200, r.body
    assert r.header("content-encoding") == "gzip"
    doc = json.loads(gzip.decompress(r.body))
    assert doc["count"] == 17 and len(json.dumps(doc)) > 1024
    small = catalog(catalog_gw, "GET", "/live/products?category=cups", {"Accept-Encoding": "gzip"})
    assert len(small.body) < 1024 and small.header("content-encoding") is None
    assert small.json()["count"] == 4
    plain = catalog(catalog_gw, "GET", "/live/products")  # no Accept-Encoding: identity
    assert plain.header("content-encoding") is None and plain.json() == doc


def test_catalog_resource_policy_denies_by_source_ip(catalog_gw: Any) -> None:
    r = catalog(catalog_gw, "GET", "/live/products", {"X-Forwarded-For": "203.0.113.9"})
    assert r.status == 403
    assert r.json() == {
        "Message": "User: anonymous is not authorized to perform: execute-api:Invoke on resource: "
        f"arn:aws:execute-api:us-east-1:********9012:{CATALOG_ID}/live/GET/products with an explicit deny"
    }
    assert r.header("x-amzn-ErrorType") == "AccessDeniedException"
    assert catalog(catalog_gw, "GET", "/live/status", {"X-Forwarded-For": "198.51.100.20"}).status == 403
    # The admin resource: only from 10.20.0.0/16.
    assert catalog(catalog_gw, "POST", "/live/admin/reindex").status == 403
    r = catalog(catalog_gw, "POST", "/live/admin/reindex", {"X-Forwarded-For": "10.20.3.4"})
    assert r.status == 202, r.body
    assert r.json() == {"reindex": "queued", "requestedBy": "10.20.3.4"}


def test_catalog_mock_status_chosen_by_the_request_template(catalog_gw: Any) -> None:
    r = catalog(catalog_gw, "GET", "/live/status")
    assert r.status == 200, r.body
    doc = r.json()
    assert doc == {
        "service": "catalog",
        "stage": "live",
        "requestId": r.header("x-amzn-RequestId"),
        "sourceIp": "127.0.0.1",
    }
    r = catalog(catalog_gw, "GET", "/live/status?simulate=maintenance")
    assert r.status == 503
    assert r.header("Retry-After") == "120"
    assert r.json() == {"message": "The catalog is being updated, try again in two minutes."}


# -------------------------------------------------------------------------------- the modules
def test_orders_authorizer_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load("orders_authorizer")
    monkeypatch.setenv("ORDERS_API_TOKENS", "t1=carol:customer,t2=dan:auditor")
    arn = f"arn:aws:execute-api:us-east-1:123456789012:{ORDERS_ID}/prod/POST/orders"
    out = authorizer.handler({"type": "TOKEN", "authorizationToken": "Bearer t2", "methodArn": arn}, None)
    stage = f"arn:aws:execute-api:us-east-1:123456789012:{ORDERS_ID}/prod"
    assert out["principalId"] == "dan" and out["context"] == {"customerId": "dan", "role": "auditor"}
    assert [(s["Effect"], s["Resource"]) for s in out["policyDocument"]["Statement"]] == [
        ("Allow", f"{stage}/GET/*"),
        ("Deny", f"{stage}/POST/*"),
    ]
    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.handler({"authorizationToken": "Bearer t3", "methodArn": arn}, None)
    monkeypatch.delenv("ORDERS_API_TOKENS")
    with pytest.raises(RuntimeError, match="ORDERS_API_TOKENS is not set"):  # a 500, not a 401
        authorizer.handler({"authorizationToken": "Bearer t1", "methodArn": arn}, None)


def test_backends_answer_like_the_demo_backend() -> None:
    backend = load("petstore_backend")
    assert backend.list_pets({}) == (200, [backend.pet(1), backend.pet(2), backend.pet(3)])
    assert backend.get_pet("1") == (200, {"id": 1, "type": "dog", "price": 249.99})
    status, doc = backend.create_pet(b'{"type": "lizard", "price": 1}')
    assert status == 400 and doc["errors"][0]["key"] == "CreatePetRequest.type"

"""JWT authorizers end to end: a real gateway process, a real JWKS endpoint over HTTPS.

The JWKS server (a trustme CA's certificate for "localhost") runs in this test process; the
gateway trusts the CA through OpenSSL's ``SSL_CERT_FILE``, which the JWT authorizer's default TLS
context honours. An HTTP API route with a JWT authorizer and authorizationScopes integrates with
``tests.pipeline.handlers:echo``, which shows ``requestContext.authorizer.jwt``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import GatewayFactory, RawConn
from jwt.algorithms import RSAAlgorithm

H = "tests.pipeline.handlers"
AUD = "e2e-client"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Jwks:
    def __init__(self, tls: ssl.SSLContext) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
        jwk.update(kid="e2e", use="sig", alg="RS256")
        self.body = json.dumps({"keys": [jwk]}).encode()
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits += 1
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": owner.url, "jwks_uri": owner.url + "/keys"}).encode()
                else:
                    body = owner.body
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Jwks, Path]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = _Jwks(ctx)
    yield server, ca_file
    server.close()


def config(issuer: str, echo_port: int) -> dict[str, Any]:
    return {
        "functions": {"echo": {"handler": f"{H}:echo"}},
        "apis": [
            {
                "name": "jwtapi",
                "kind": "http",
                "authorizers": [
                    {
                        "name": "oidc",
                        "type": "JWT",
                        "identitySource": ["$request.header.Authorization"],
                        # No jwks_uri: OIDC discovery finds it.
                        "jwtConfiguration": {"issuer": issuer, "audience": [AUD]},
                    }
                ],
                "routes": [
                    {
                        "route": "GET /orders",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "oidc",
                        "authorizationScopes": ["orders/read"],
                    },
                    {
                        "route": "GET /me",
                        "integration": {"type": "AWS_PROXY", "uri": "echo"},
                        "authorizer": "oidc",
                    },
                    # Plain streamed proxies behind the authorizer: a token a worker verified is
                    # checked in the protocol (the fast path), anything else in the pipeline.
                    {
                        "route": "GET /proxied/{x}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{echo_port}/{{x}}"},
                        "authorizer": "oidc",
                    },
                    {
                        "route": "GET /scoped/{x}",
                        "integration": {"type": "HTTP_PROXY", "uri": f"http://127.0.0.1:{echo_port}/{{x}}"},
                        "authorizer": "oidc",
                        "authorizationScopes": ["orders/read"],
                    },
                ],
                "stages": [{"name": "$default"}],
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory, jwks: tuple[_Jwks, Path], echo_server: Any) -> Any:
    server, ca_file = jwks
    return module_gateway_factory(
        config(server.url, echo_server.port), workers=2, extra_env={"SSL_CERT_FILE": str(ca_file)}
    )


def token(iss: str, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": "alice", "aud": AUD, "iat": now, "exp": now + 300, **extra}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "e2e"})


def get(port: int, target: str, auth: str | None) -> Any:
    headers = [("Authorization", auth)] if auth is not None else []
    with RawConn(port) as c:
        return c.request("GET", target, headers=headers)


def test_valid_token_with_scope_reaches_the_function(gw: Any, jwks: tuple[_Jwks, Path]) -> None:
    server, _ = jwks
    r = get(gw.port, "/orders", "Bearer " + token(server.url, scope="openid orders/read"))
    assert r.status == 200, r.body
    auth = r.json()["event"]["requestContext"]["authorizer"]
    assert auth["jwt"]["claims"]["sub"] == "alice"
    assert auth["jwt"]["claims"]["aud"] == AUD
    assert auth["jwt"]["scopes"] == ["openid", "orders/read"]


def test_missing_scope_is_403(gw: Any, jwks: tuple[_Jwks, Path]) -> None:
    server, _ = jwks
    r = get(gw.port, "/orders", "Bearer " + token(server.url, scope="orders/write"))
    assert r.status == 403 and r.body == b'{"message":"Forbidden"}'
    # The same token on a route without scopes passes.
    assert get(gw.port, "/me", "Bearer " + token(server.url, scope="orders/write")).status == 200


def test_refusals_are_401_with_www_authenticate(gw: Any, jwks: tuple[_Jwks, Path]) -> None:
    server, _ = jwks
    r = get(gw.port, "/me", None)
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'
    r = get(gw.port, "/me", "Bearer " + token(server.url, aud="someone-else"))
    assert r.status == 401 and r.body == b'{"message":"Unauthorized"}'
    assert r.header("www-authenticate") == (
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"'
    )
    r = get(gw.port, "/me", "Bearer " + token(server.url, exp=int(time.time()) - 3600))
    assert r.status == 401
    assert 'error_description="the token has expired"' in (r.header("www-authenticate") or "")
    forged = token(server.url).rsplit(".", 1)[0] + ".AAAA"
    assert get(gw.port, "/me", "Bearer " + forged).status == 401


def _upstream_headers(body: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def test_proxied_routes_behind_a_jwt_authorizer(gw: Any, jwks: tuple[_Jwks, Path]) -> None:
    """The same answers whether a request takes the fast path (a token the worker verified)
    or the pipeline (first sight of a token, refusals): 200 with the request forwarded as sent,
    403 for a cached token without the route's scope, 401 for the rest."""
    server, _ = jwks
    good = "Bearer " + token(server.url, scope="orders/read")
    other_scope = "Bearer " + token(server.url, scope="orders/write")
    for i in range(6):  # new connections: both workers, first sight then cached
        r = get(gw.port, f"/proxied/p{i}?q={i}", good)
        assert r.status == 200, r.body
        sent = json.loads(r.body)
        assert sent["path"] == f"/p{i}" and sent["query"] == f"q={i}"
        assert _upstream_headers(r.body)["authorization"] == [good]
        assert get(gw.port, f"/scoped/s{i}", good).status == 200
        # Cached (verified on /proxied), but without the scope /scoped needs.
        assert get(gw.port, f"/proxied/o{i}", other_scope).status == 200
        r = get(gw.port, f"/scoped/o{i}", other_scope)
        assert r.status == 403 and r.body == b'{"message":"Forbidden"}'
    assert get(gw.port, "/proxied/x", None).status == 401
    assert get(gw.port, "/proxied/x", "Bearer " + token(server.url, aud="nope")).status == 401
    forged = good.rsplit(".", 1)[0] + ".AAAA"
    assert get(gw.port, "/proxied/x", forged).status == 401
    # Two Authorization headers, each a valid cached token: not one token, refused.
    with RawConn(gw.port) as c:
        r = c.request("GET", "/proxied/x", headers=[("Authorization", good), ("Authorization", good)])
    assert r.status == 401

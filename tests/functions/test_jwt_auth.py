"""JWT / OIDC / Cognito authorizers at unit level: real keys, real tokens, a real JWKS server.

The JWKS server is a ``ThreadingHTTPServer`` on 127.0.0.1 (plain, or HTTPS with a trustme CA)
that counts its hits per path; the runtime fetches through the gateway's own ``HttpClient``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from fastgw.authorizers.jwt_auth import (
    E_AUDIENCE,
    E_EXPIRED,
    E_KEYS,
    JwtAuthorizerRuntime,
    fetch_url,
    format_claims,
    www_authenticate,
)
from fastgw.config.model import AuthorizerConfig, JwtConfiguration
from fastgw.server.replies import LocalReply
from fastgw.upstream.client import HttpClient, HttpClientError

AUD = "client-app"

# ------------------------------------------------------------------------------- keys, tokens

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def claims(iss: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": iss, "sub": "user-1", "aud": AUD, "iat": now, "exp": now + 600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str | None, payload: dict[str, Any], alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(payload).encode())
    return f"{h}.{p}.{b64(signature)}"


# ------------------------------------------------------------------------------ JWKS server


class JwksServer:
    """A JWKS (and OIDC discovery) endpoint: ``keys`` served at /jwks, hits counted per path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}
        self.mode = "ok"  # ok | 500 | garbage | slow | huge
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                if owner.delay:
                    time.sleep(owner.delay)
                status = 200
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": owner.url, "jwks_uri": owner.url + "/jwks"}).encode()
                elif self.path in ("/jwks", "/.well-known/jwks.json"):
                    if owner.mode == "500":
                        status, body = 500, b"oops"
                    elif owner.mode == "garbage":
                        body = b"<html>not json"
                    elif owner.mode == "huge":
                        body = json.dumps({"keys": owner.keys, "pad": "x" * 200_000}).encode()
                    else:
                        body = json.dumps({"keys": owner.keys}).encode()
                else:
                    status, body = 404, b"{}"
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def jwks_hits(self) -> int:
        return self.hits.get("/jwks", 0) + self.hits.get("/.well-known/jwks.json", 0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def srv() -> Iterator[JwksServer]:
    s = JwksServer()
    s.keys = [public_jwk(RSA_KEY, "k1")]
    yield s
    s.close()


# ------------------------------------------------------------------------------ runtime glue


class FakeReq:
    def __init__(self, token: str | None, scopes: tuple[str, ...] = (), kind: str = "http") -> None:
        self.headers = [("Authorization", token)] if token is not None else []
        self.query = ""
        self.route = SimpleNamespace(auth_scopes=scopes, api=SimpleNamespace(kind=kind))
        self.authorizer: dict[str, Any] | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default


def make_rt(
    srv: JwksServer | None,
    kind: str = "http",
    auth_type: str = "JWT",
    provider_arns: list[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **jwt_cfg: Any,
) -> JwtAuthorizerRuntime:
    cfg: dict[str, Any] = {"audience": [AUD], "jwks_min_refresh_seconds": 0.2}
    if srv is not None:
        cfg.update(issuer=srv.url, jwks_uri=srv.url + "/jwks")
    cfg.update(jwt_cfg)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    config = AuthorizerConfig(
        name="jwt",
        type=auth_type,  # type: ignore[arg-type]
        jwtConfiguration=JwtConfiguration(**cfg),
        providerARNs=provider_arns or [],
    )
    return JwtAuthorizerRuntime("jwt", kind, config, "us-east-1", ssl_context=ssl_context)


async def authorize(rt: JwtAuthorizerRuntime, req: FakeReq, svc: Any) -> LocalReply | None:
    got = rt.check_cached(req, svc)  # type: ignore[arg-type]
    if type(got) is tuple:
        return await rt.authorize_miss(req, svc, *got)  # type: ignore[arg-type]
    return got  # type: ignore[return-value]


def run(coro_fn: Any) -> Any:
    async def main() -> Any:
        client = HttpClient(asyncio.get_running_loop())
        try:
            return await coro_fn(SimpleNamespace(client=client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def header_of(reply: LocalReply, name: str) -> str | None:
    for line in reply.head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            if k.decode().lower() == name.lower():
                return v.strip().decode()
    return None


def assert_401(reply: LocalReply | None, description: str | None = None) -> None:
    assert reply is not None and reply.status == 401, reply and reply.head
    assert reply.body == b'{"message":"Unauthorized"}'
    if description is not None:
        assert header_of(reply, "www-authenticate") == www_authenticate(description)


# -------------------------------------------------------------------------------------- tests


def test_rs256_valid_claims_and_key_cache(srv: JwksServer) -> None:
    rt = make_rt(srv)
    token = sign(RSA_KEY, "k1", claims(srv.url, scope="read write", email_verified=True, groups=["a", "b"]))

    async def go(svc: Any) -> None:
        req = FakeReq("Bearer " + token)
        assert await authorize(rt, req, svc) is None
        assert req.authorizer is not None
        got = req.authorizer["jwt"]
        assert got["scopes"] == ["read", "write"]
        c = got["claims"]
        assert c["sub"] == "user-1" and c["aud"] == AUD and c["iss"] == srv.url
        assert c["email_verified"] == "true" and c["groups"] == "[a b]"
        assert c["exp"] == str(int(c["iat"]) + 600)
        assert srv.jwks_hits() == 1
        # Second request: the key is held, verified without waiting, no fetch.
        req2 = FakeReq(token)  # without the Bearer prefix too
        assert rt.check_cached(req2, svc) is None  # type: ignore[arg-type]
        assert req2.authorizer is not None
        assert srv.jwks_hits() == 1

    run(go)


def test_ec_and_eddsa(srv: JwksServer) -> None:
    srv.keys = [public_jwk(EC_KEY, "ec"), public_jwk(ED_KEY, "ed"), public_jwk(RSA_KEY, "k1")]
    rt = make_rt(srv, algorithms=["ES256", "EdDSA"])

    async def go(svc: Any) -> None:
        assert await authorize(rt, FakeReq(sign(EC_KEY, "ec", claims(srv.url), "ES256")), svc) is None
        assert await authorize(rt, FakeReq(sign(ED_KEY, "ed", claims(srv.url), "EdDSA")), svc) is None
        # RS256 is not in this authorizer's allowlist, even with a good key and signature.
        assert_401(await authorize(rt, FakeReq(sign(RSA_KEY, "k1", claims(srv.url))), svc))
        # The token's alg must match the key's type: an ES256 header over the RSA key's kid.
        bad = raw_token({"alg": "ES256", "kid": "k1"}, claims(srv.url), b"x" * 64)
        assert_401(await authorize(rt, FakeReq(bad), svc))

    run(go)


def test_oidc_discovery(srv: JwksServer) -> None:
    rt = make_rt(srv, jwks_uri=None)
    rt_token = sign(RSA_KEY, "k1", claims(srv.url))

    async def go(svc: Any) -> None:
        assert await authorize(rt, FakeReq(rt_token), svc) is None

    run(go)
    assert srv.hits.get("/.well-known/openid-configuration") == 1
    assert srv.jwks_hits() == 1


def test_https_jwks_with_trustme_ca(tmp_path: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    s = JwksServer(tls=server_ctx)
    s.keys = [public_jwk(RSA_KEY, "k1")]
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        rt = make_rt(s, ssl_context=client_ctx)
        untrusted = make_rt(s)  # the system's CAs do not know the test CA: fail closed
        token = sign(RSA_KEY, "k1", claims(s.url))

        async def go(svc: Any) -> None:
            assert await authorize(rt, FakeReq(token), svc) is None
            # The TLS connection went back to its own pool (keyed by the TLS context).
            assert svc.client.idle_connections("localhost", s.port, client_ctx) == 1
            assert svc.client.idle_connections("localhost", s.port) == 0
            body = await fetch_url(svc.client, s.url + "/jwks", 2.0, 65536, client_ctx)
            assert json.loads(body)["keys"][0]["kid"] == "k1"
            assert svc.client.idle_connections("localhost", s.port, client_ctx) == 1  # reused
            with pytest.raises(HttpClientError, match="status 404"):
                await fetch_url(svc.client, s.url + "/nope", 2.0, 65536, client_ctx)
            with pytest.raises(ValueError):
                await fetch_url(svc.client, "ftp://localhost/x", 2.0, 65536)
            assert_401(await authorize(untrusted, FakeReq(token), svc), E_KEYS)

        run(go)
        assert s.jwks_hits() == 2  # the untrusted client never got a request through
    finally:
        s.close()


def test_alg_none_and_hs256_key_confusion(srv: JwksServer) -> None:
    rt = make_rt(srv)
    payload = claims(srv.url)

    async def go(svc: Any) -> None:
        assert await authorize(rt, FakeReq(sign(RSA_KEY, "k1", payload)), svc) is None  # keys held
        none_token = raw_token({"alg": "none", "kid": "k1"}, payload)
        assert_401(await authorize(rt, FakeReq(none_token), svc))
        # HS256 "signed" with the RSA public key's PEM as the HMAC secret.
        pem = RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        h = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
        p = b64(json.dumps(payload).encode())
        mac = hmac.new(pem, f"{h}.{p}".encode(), hashlib.sha256).digest()
        assert_401(await authorize(rt, FakeReq(f"{h}.{p}.{b64(mac)}"), svc))
        # Even an authorizer configured with RS256 only: a tampered payload fails the signature.
        good = sign(RSA_KEY, "k1", payload).split(".")
        forged = b64(json.dumps({**payload, "sub": "admin"}).encode())
        assert_401(await authorize(rt, FakeReq(f"{good[0]}.{forged}.{good[2]}"), svc))
        # Signed by another RSA key under the same kid.
        assert_401(await authorize(rt, FakeReq(sign(RSA_KEY2, "k1", payload)), svc))

    run(go)


def test_hs_and_none_refused_in_config(srv: JwksServer) -> None:
    for alg in ("HS256", "none"):
        with pytest.raises(ValueError, match="never HS"):
            make_rt(srv, algorithms=[alg])


def test_time_claims(srv: JwksServer) -> None:
    rt = make_rt(srv, clock_skew_seconds=5)
    now = int(time.time())

    async def go(svc: Any) -> None:
        expired = sign(RSA_KEY, "k1", claims(srv.url, exp=now - 60))
        assert_401(await authorize(rt, FakeReq(expired), svc), E_EXPIRED)
        within_skew = sign(RSA_KEY, "k1", claims(srv.url, exp=now - 2))
        assert await authorize(rt, FakeReq(within_skew), svc) is None
        not_yet = sign(RSA_KEY, "k1", claims(srv.url, nbf=now + 120))
        assert_401(await authorize(rt, FakeReq(not_yet), svc), "the token is not valid yet")
        future_iat = sign(RSA_KEY, "k1", claims(srv.url, iat=now + 120))
        assert_401(await authorize(rt, FakeReq(future_iat), svc), "the token was issued in the future")
        no_exp = sign(RSA_KEY, "k1", claims(srv.url, exp=None))
        assert_401(await authorize(rt, FakeReq(no_exp), svc))

    run(go)


def test_issuer_and_audience(srv: JwksServer) -> None:
    rt = make_rt(srv)

    async def go(svc: Any) -> None:
        assert await authorize(rt, FakeReq(sign(RSA_KEY, "k1", claims(srv.url))), svc) is None
        wrong_iss = sign(RSA_KEY, "k1", claims("https://evil.example"))
        assert_401(await authorize(rt, FakeReq(wrong_iss), svc), "the token does not have a valid issuer")
        wrong_aud = sign(RSA_KEY, "k1", claims(srv.url, aud="someone-else"))
        reply = await authorize(rt, FakeReq(wrong_aud), svc)
        assert_401(reply, E_AUDIENCE)
        # AWS's documented value, byte for byte.
        assert header_of(reply, "www-authenticate") == (  # type: ignore[arg-type]
            'Bearer scope="" error="invalid_token" '
            'error_description="the token does not have a valid audience"'
        )
        aud_list = sign(RSA_KEY, "k1", claims(srv.url, aud=["x", AUD]))
        assert await authorize(rt, FakeReq(aud_list), svc) is None
        # No aud: client_id is checked instead (access tokens).
        by_client = sign(RSA_KEY, "k1", claims(srv.url, aud=None, client_id=AUD))
        assert await authorize(rt, FakeReq(by_client), svc) is None
        bad_client = sign(RSA_KEY, "k1", claims(srv.url, aud=None, client_id="other"))
        assert_401(await authorize(rt, FakeReq(bad_client), svc), E_AUDIENCE)
        # aud present and wrong: client_id is not looked at ("when both are present, API Gateway
        # evaluates aud").
        both = sign(RSA_KEY, "k1", claims(srv.url, aud="other", client_id=AUD))
        assert_401(await authorize(rt, FakeReq(both), svc), E_AUDIENCE)

    run(go)


def test_missing_and_malformed_tokens(srv: JwksServer) -> None:
    rt = make_rt(srv)
    rest = make_rt(srv, kind="rest")

    async def go(svc: Any) -> None:
        reply = await authorize(rt, FakeReq(None), svc)
        assert_401(reply)
        for bad in ("Bearer ", "abc", "a.b.c", "Bearer x.y"):
            assert_401(await authorize(rt, FakeReq(bad), svc))
        # No kid: refused without any fetch.
        assert_401(await authorize(rt, FakeReq(sign(RSA_KEY, None, claims(srv.url))), svc))
        assert srv.jwks_hits() == 0
        # REST APIs: the UNAUTHORIZED gateway response.
        r = await authorize(rest, FakeReq(None, kind="rest"), svc)
        assert (
            r is not None and r.status == 401 and header_of(r, "x-amzn-ErrorType") == "UnauthorizedException"
        )

    run(go)


def test_scopes(srv: JwksServer) -> None:
    rt = make_rt(srv)

    async def go(svc: Any) -> None:
        need = ("orders/read", "admin")
        ok = sign(RSA_KEY, "k1", claims(srv.url, scope="openid orders/read"))
        assert await authorize(rt, FakeReq(ok, need), svc) is None
        scp = sign(RSA_KEY, "k1", claims(srv.url, scp=["admin"]))
        assert await authorize(rt, FakeReq(scp, need), svc) is None
        for token in (
            sign(RSA_KEY, "k1", claims(srv.url, scope="openid orders/write")),
            sign(RSA_KEY, "k1", claims(srv.url)),
        ):
            reply = await authorize(rt, FakeReq(token, need), svc)
            assert reply is not None and reply.status == 403 and reply.body == b'{"message":"Forbidden"}'
        # No scopes required: a token without any passes, with scopes None.
        req = FakeReq(sign(RSA_KEY, "k1", claims(srv.url)))
        assert await authorize(rt, req, svc) is None
        assert req.authorizer is not None and req.authorizer["jwt"]["scopes"] is None

    run(go)


def test_unknown_kid_refetch_is_rate_limited(srv: JwksServer) -> None:
    rt = make_rt(srv, jwks_min_refresh_seconds=30)

    async def go(svc: Any) -> None:
        assert await authorize(rt, FakeReq(sign(RSA_KEY, "k1", claims(srv.url))), svc) is None
        assert srv.jwks_hits() == 1
        # A flood of made-up kids, concurrently and then one by one: the provider is not hit again
        # (the last fetch was less than jwks_min_refresh_seconds ago).
        tokens = [sign(RSA_KEY, f"bogus-{i}", claims(srv.url)) for i in range(50)]
        replies = await asyncio.gather(*(authorize(rt, FakeReq(t), svc) for t in tokens))
        assert all(r is not None and r.status == 401 for r in replies)
        for t in tokens[:10]:
            assert_401(await authorize(rt, FakeReq(t), svc), "the token does not have a valid kid")
        assert srv.jwks_hits() == 1
        # The good kid still passes, without waiting.
        assert rt.check_cached(FakeReq(sign(RSA_KEY, "k1", claims(srv.url))), svc) is None  # type: ignore[arg-type]

    run(go)


def test_concurrent_misses_share_one_fetch(srv: JwksServer) -> None:
    srv.delay = 0.2
    rt = make_rt(srv)
    tokens = [sign(RSA_KEY, "k1", claims(srv.url, sub=f"u{i}")) for i in range(20)]

    async def go(svc: Any) -> None:
        replies = await asyncio.gather(*(authorize(rt, FakeReq(t), svc) for t in tokens))
        assert replies == [None] * 20

    run(go)
    assert srv.jwks_hits() == 1


def test_verified_tokens_are_cached_and_scopes_checked_per_route(srv: JwksServer) -> None:
    rt = make_rt(srv)

    async def go(svc: Any) -> None:
        token = sign(RSA_KEY, "k1", claims(srv.url, scope="orders/read"))
        for _ in range(3):
            req = FakeReq(token)
            assert await authorize(rt, req, svc) is None
            assert req.authorizer is not None and req.authorizer["jwt"]["scopes"] == ["orders/read"]
        assert (rt.verified, rt.token_hits) == (1, 2)
        # A cached token is still refused on a route needing another scope.
        reply = await authorize(rt, FakeReq(token, ("admin",)), svc)
        assert reply is not None and reply.status == 403
        # An expired token is not served from the cache.
        short = sign(RSA_KEY, "k1", {**claims(srv.url), "exp": int(time.time()) + 1})
        rt.leeway = 0
        assert await authorize(rt, FakeReq(short), svc) is None
        await asyncio.sleep(1.3)
        assert_401(await authorize(rt, FakeReq(short), svc))

    run(go)


def test_key_rotation(srv: JwksServer) -> None:
    rt = make_rt(srv, jwks_cache_seconds=1, jwks_min_refresh_seconds=0.2)

    async def go(svc: Any) -> None:
        old = sign(RSA_KEY, "k1", claims(srv.url))
        assert await authorize(rt, FakeReq(old), svc) is None
        # The provider adds k2 and signs with it: the unknown kid triggers one refetch.
        srv.keys = [public_jwk(RSA_KEY, "k1"), public_jwk(RSA_KEY2, "k2")]
        await asyncio.sleep(0.25)
        new = sign(RSA_KEY2, "k2", claims(srv.url))
        assert await authorize(rt, FakeReq(new), svc) is None
        assert srv.jwks_hits() == 2
        # k1 is removed: still accepted while the cached set is fresh, refused once it expires.
        srv.keys = [public_jwk(RSA_KEY2, "k2")]
        assert rt.check_cached(FakeReq(old), svc) is None  # type: ignore[arg-type]
        await asyncio.sleep(1.1)
        assert_401(await authorize(rt, FakeReq(old), svc))
        assert await authorize(rt, FakeReq(new), svc) is None
        assert srv.jwks_hits() == 3

    run(go)


@pytest.mark.parametrize("mode", ["down", "500", "garbage", "slow", "huge"])
def test_jwks_endpoint_failures_fail_closed(srv: JwksServer, mode: str) -> None:
    if mode == "down":
        port = srv.port
        srv.close()
        url = f"http://127.0.0.1:{port}"
        rt = make_rt(None, issuer=url, jwks_uri=url + "/jwks", jwks_min_refresh_seconds=5)
        iss = url
    else:
        srv.mode = mode if mode != "slow" else "ok"
        if mode == "slow":
            srv.delay = 1.0
        rt = make_rt(srv, fetch_timeout_ms=200, max_jwks_bytes=64 * 1024, jwks_min_refresh_seconds=5)
        iss = srv.url
    token = sign(RSA_KEY, "k1", claims(iss))

    async def go(svc: Any) -> None:
        t0 = time.monotonic()
        assert_401(await authorize(rt, FakeReq(token), svc), E_KEYS)
        assert time.monotonic() - t0 < 0.9
        # Within jwks_min_refresh_seconds the provider is not asked again: refused at once.
        assert_401(await authorize(rt, FakeReq(token), svc), E_KEYS)

    run(go)
    if mode != "down":
        assert srv.jwks_hits() == 1


def test_cognito_token_use_rules() -> None:
    s = JwksServer()
    s.keys = [public_jwk(RSA_KEY, "k1")]
    try:
        arn = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEf123"
        rt = make_rt(
            None, auth_type="COGNITO_USER_POOLS", provider_arns=[arn], kind="rest", issuer=s.url, audience=[]
        )
        idt = sign(RSA_KEY, "k1", claims(s.url, token_use="id", aud="any-client"))
        access = sign(
            RSA_KEY, "k1", claims(s.url, token_use="access", aud=None, client_id="c1", scope="res/read")
        )

        async def go(svc: Any) -> None:
            req = FakeReq(idt, kind="rest")
            assert await authorize(rt, req, svc) is None
            c = req.authorizer["jwt"]["claims"]  # type: ignore[index]
            # REST (Cognito) dates, as AWS writes them.
            assert c["exp"].endswith(time.strftime("%Y", time.gmtime())) and " UTC " in c["exp"]
            assert_401(await authorize(rt, FakeReq(access, kind="rest"), svc))  # no scopes: ID tokens only
            assert await authorize(rt, FakeReq(access, ("res/read",), kind="rest"), svc) is None
            assert_401(await authorize(rt, FakeReq(idt, ("res/read",), kind="rest"), svc))
            # An access token without the route's scope: 401 on REST.
            assert_401(await authorize(rt, FakeReq(access, ("res/write",), kind="rest"), svc))

        run(go)
        # With audience: the ID token's aud / the access token's client_id must be listed.
        strict = make_rt(
            None, auth_type="COGNITO_USER_POOLS", provider_arns=[arn], issuer=s.url, audience=["c1"]
        )

        async def go2(svc: Any) -> None:
            assert_401(await authorize(strict, FakeReq(idt), svc), E_AUDIENCE)
            assert await authorize(strict, FakeReq(access, ("res/read",)), svc) is None

        run(go2)
    finally:
        s.close()


def test_cognito_issuer_from_arn() -> None:
    arns = [
        "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AAAA",
        "arn:aws:cognito-idp:us-east-2:123456789012:userpool/us-east-2_BBBB",
    ]
    rt = make_rt(None, auth_type="COGNITO_USER_POOLS", provider_arns=arns, audience=[])
    assert set(rt.issuers) == {
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AAAA",
        "https://cognito-idp.us-east-2.amazonaws.com/us-east-2_BBBB",
    }
    one = rt.issuers["https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AAAA"]
    assert one.jwks_uri == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AAAA/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"issuer": None, "jwks_uri": "http://x/jwks"}, "needs jwtConfiguration.issuer"),
        ({"issuer": "http://x", "audience": []}, "audience"),
        ({"issuer": "ftp://x"}, "not an http"),
        ({"issuer": "http://x", "algorithms": ["XS1"]}, "not accepted"),
        ({"auth_type": "COGNITO_USER_POOLS", "provider_arns": ["arn:aws:iam::1:role/x"]}, "user pool ARN"),
        ({"auth_type": "COGNITO_USER_POOLS"}, "providerARNs"),
        ({"issuer": "http://x", "provider_arns": ["arn:aws:cognito-idp:r:123456789012:userpool/r_X"]}, "JWT"),
    ],
)
def test_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_rt(None, **kwargs)


def test_format_claims() -> None:
    c = {"s": "x", "n": 5, "f": 1.5, "b": False, "l": ["a", 1], "o": {"b": 1, "a": "z"}, "exp": 0}
    assert format_claims(c, "http") == {
        "s": "x",
        "n": "5",
        "f": "1.5",
        "b": "false",
        "l": "[a 1]",
        "o": "map[a:z b:1]",
        "exp": "0",
    }
    assert format_claims({"exp": 0, "iat": 86400}, "rest") == {
        "exp": "Thu Jan 01 00:00:00 UTC 1970",
        "iat": "Fri Jan 02 00:00:00 UTC 1970",
    }

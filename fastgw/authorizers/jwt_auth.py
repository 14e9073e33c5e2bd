"""JWT (OIDC) and Cognito user pool authorizers, checked by the gateway itself.

``JwtAuthorizerRuntime`` offers the pipeline the same interface as the Lambda
``AuthorizerRuntime``: ``check_cached(req, svc)`` answers without waiting when it can (no token,
a malformed one, or a token whose signing key this worker already holds), else returns a tuple
that ``authorize_miss(req, svc, *tuple)`` completes after fetching the key set.

What AWS does, and what is done here (HTTP APIs, "Control access to HTTP APIs with JWT
authorizers in API Gateway"):

1. The token is read from the identity source (default ``$request.header.Authorization``; REST:
   ``method.request.header.Authorization``); "The identitySource can include only the token, or
   the token prefixed with Bearer" (the prefix is removed). No token: 401.
2. The token is decoded; its signature is checked with the issuer's key whose ``kid`` the header
   names ("kid - The token must have a header claim that matches the key in the jwks_uri that
   signed the token"), under the authorizer's algorithm allowlist (``algorithms``, default
   RS256; AWS: "only RSA-based algorithms are supported"). The token's ``alg`` only ever picks
   one algorithm *inside* the allowlist; ``none`` and HS* are never accepted, and a key is used
   only with an algorithm of its own type (an RSA key never as an HMAC secret).
3. Claims: ``iss`` must be the issuer; ``aud`` must be one of ``audience``, and "API Gateway
   validates client_id only if aud is not present"; ``exp`` after now, ``nbf`` and ``iat``
   before now (each with ``clock_skew_seconds`` of leeway; a token without ``exp`` is refused);
   ``scope`` (space-separated) or ``scp`` (list) must hold at least one of the route's
   ``authorizationScopes`` when it has any.
4. Replies: 401 ``{"message":"Unauthorized"}`` with a ``www-authenticate`` header of AWS's form
   ``Bearer scope="" error="invalid_token" error_description="..."``: the description of a bad
   audience is AWS's documented one ("the token does not have a valid audience", "Troubleshooting
   issues with HTTP API JWT authorizers"); the others follow its wording and are fastgw's. Too few
   scopes: 403 ``{"message":"Forbidden"}``. REST APIs answer 401 UNAUTHORIZED (with
   ``x-amzn-ErrorType: UnauthorizedException``) to every refusal, as REST Cognito authorizers do.
5. Claims go to the integration as AWS passes them: every value a string (numbers as written,
   booleans "true"/"false", arrays "[a b c]", objects "map[k:v]": the observed HTTP API format).
   REST APIs (Cognito) write ``exp`` and ``iat`` as dates ("Wed Apr 08 12:26:03 UTC 2020").
   ``req.authorizer = {"jwt": {"claims": ..., "scopes": [...] or None}}``.

COGNITO_USER_POOLS: the issuer of each ``providerARNs`` entry
(``arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID``) is
``https://cognito-idp.REGION.amazonaws.com/POOL_ID`` and its keys are at
``ISSUER/.well-known/jwks.json``. A route without authorizationScopes takes ID tokens
(``token_use`` "id"), a route with scopes takes access tokens (``token_use`` "access") holding one
of them ("If there are no scopes defined the API Gateway Cognito Authorizer will require the ID
Token"; AWS knowledge center "api-gateway-cognito-401-unauthorized"). The pool's app clients are
not listed by AWS: any client of the pool is accepted unless ``jwtConfiguration.audience`` is
given (then an ID token's ``aud`` / an access token's ``client_id`` must be in it).
``jwtConfiguration.issuer`` and ``jwtConfiguration.jwks_uri``, when given, replace the issuer and
key URL derived from the (single) providerARN, or stand for it: this points a Cognito authorizer at
a local, Cognito-compatible issuer (tests, emulators).

Keys (DESIGN-RULES 3 and 6): the key set is fetched from ``jwks_uri`` (or the ``jwks_uri`` of the
issuer's ``ISSUER/.well-known/openid-configuration``) with the worker's HTTP client (http or
https), bounded by ``fetch_timeout_ms`` and ``max_jwks_bytes``; kept for ``jwks_cache_seconds``
(AWS: "API Gateway can cache the public keys for two hours"); fetched again before that only on
an unknown ``kid``, and at most once per ``jwks_min_refresh_seconds`` whatever the reason (a
flood of made-up kids, or a provider that is down, costs the provider one request per period).
Concurrent misses share one fetch. When the keys cannot be fetched the request is refused (401,
``error_description="unable to fetch the signing keys"``): nothing is let in without a verified
signature. Keys are per worker and per authorizer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
import orjson
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from fastgw.authorizers import lambda_auth as la
from fastgw.server.heads import header_values
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import AuthorizerConfig
    from fastgw.pipeline.request import Request
    from fastgw.pipeline.runtime import Services
    from fastgw.upstream.client import HttpClient

__all__ = ["JwtAuthorizerRuntime", "fetch_url", "format_claims", "www_authenticate"]

log = logging.getLogger("fastgw.authorizer")

#: Algorithms a JWT authorizer may accept, with the key type each needs. Never HS*, never none.
ALGORITHMS: dict[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC:P-256",
    "ES384": "EC:P-384",
    "ES512": "EC:P-521",
    "EdDSA": "OKP",
}

_COGNITO_ARN = re.compile(r"arn:aws[a-z-]*:cognito-idp:([a-z0-9-]+):(\d{12}):userpool/([\w-]+_[0-9A-Za-z]+)")
_JSON = ("content-type", "application/json")
_DEFAULT_TLS: ssl.SSLContext | None = None

# error_description values (AWS documents the audience one; the others follow its wording).
E_MALFORMED = "the token is malformed"
E_ALG = "the token's signing algorithm is not accepted"
E_KID = "the token does not have a valid kid"
E_SIGNATURE = "the token signature is invalid"
E_EXPIRED = "the token has expired"
E_NBF = "the token is not valid yet"
E_IAT = "the token was issued in the future"
E_ISSUER = "the token does not have a valid issuer"
E_AUDIENCE = "the token does not have a valid audience"
E_TOKEN_USE = "the token does not have a valid token_use"
E_KEYS = "unable to fetch the signing keys"


def www_authenticate(description: str) -> str:
    """AWS's challenge for a refused token (HTTP APIs)."""
    return f'Bearer scope="" error="invalid_token" error_description="{description}"'


def _default_tls() -> ssl.SSLContext:
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        # The system's CAs; OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR are honoured.
        _DEFAULT_TLS = ssl.create_default_context()
    return _DEFAULT_TLS


async def fetch_url(
    client: HttpClient,
    url: str,
    timeout: float,
    max_bytes: int,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """GET ``url`` (http or https) with ``client``; the body of a 200, else HttpClientError/ValueError.

    ``ssl_context`` is the TLS context of https URLs (default: the system's CAs, host names
    checked).
    """
    from fastgw.upstream.client import HttpClientError

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: expected an http:// or https:// URL")
    tls = scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.hostname
    response = await client.request(
        host,
        port,
        "GET",
        target,
        [("accept", "application/json")],
        b"",
        timeout,
        ssl=(ssl_context or _default_tls()) if tls else None,
        max_response_bytes=max_bytes,
    )
    if response.status != 200:
        raise HttpClientError(f"GET {url}: status {response.status}")
    return response.body


def _b64json(segment: str) -> Any:
    pad = "=" * (-len(segment) % 4)
    return orjson.loads(base64.urlsafe_b64decode(segment + pad))


# ------------------------------------------------------------------------------------ claims

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _claim_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"  # TODO(aws): unobserved; JSON's spelling
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + " ".join(_claim_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_claim_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _java_date(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _claim_str(value)
    t = time.gmtime(int(value))
    return (
        f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} UTC {t.tm_year}"
    )


def format_claims(claims: dict[str, Any], api_kind: str) -> dict[str, str]:
    """The claims as API Gateway hands them to integrations: every value a string."""
    out = {k: _claim_str(v) for k, v in claims.items()}
    if api_kind == "rest":
        for name in ("exp", "iat"):
            if name in claims:
                out[name] = _java_date(claims[name])
    return out


def token_scopes(claims: dict[str, Any]) -> list[str] | None:
    """``scope`` (space-separated string) or ``scp`` (list, or string); None without either."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list):
        return [s for s in scp if isinstance(s, str)]
    if isinstance(scp, str):
        return scp.split()
    return None


# -------------------------------------------------------------------------------------- keys


#: This process's JWT work since it started, for the node's metrics (fastgw.server.worker):
#: tokens verified (signature checked) and requests served from the verified-token cache.
COUNTERS: dict[str, int] = {"jwt_token_cache_hits": 0, "jwt_verified": 0}


def _bare_token(value: str) -> str:
    """An identity value as a token: trimmed, without a ``Bearer`` prefix (any case)."""
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token


class _Refused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _key_type(jwk: dict[str, Any]) -> str | None:
    kty = jwk.get("kty")
    if kty == "RSA":
        return "RSA"
    if kty == "EC":
        return f"EC:{jwk.get('crv')}"
    if kty == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448"):
        return "OKP"
    return None


def parse_jwks(data: bytes) -> dict[str, tuple[str, str | None, Any]]:
    """``{kid: (key type, jwk alg or None, public key)}`` of a JWKS document (ValueError if it is not one).

    Keys without a kid, with ``use`` other than "sig", of an unknown type, or that do not parse
    are skipped (AWS matches keys by kid only).
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as ex:
        raise ValueError(f"the JWKS is not JSON: {ex}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("the JWKS has no 'keys' list")
    out: dict[str, tuple[str, str | None, Any]] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or jwk.get("use", "sig") != "sig":
            continue
        ktype = _key_type(jwk)
        if ktype is None:
            continue
        alg = jwk.get("alg")
        try:
            if ktype == "RSA":
                key = RSAAlgorithm.from_jwk(jwk)
            elif ktype == "OKP":
                key = OKPAlgorithm.from_jwk(jwk)
            else:
                key = ECAlgorithm.from_jwk(jwk)
        except Exception:  # a key that does not parse is not usable
            continue
        if not hasattr(key, "verify") and hasattr(key, "public_key"):
            key = key.public_key()  # a private JWK: keep only its public half
        out[kid] = (ktype, alg if isinstance(alg, str) else None, key)
    return out


class _Issuer:
    """One issuer's keys in this worker: cache, refetch rate limit, shared in-flight fetch."""

    __slots__ = ("discovered", "expires", "fetches", "inflight", "issuer", "jwks_uri", "keys", "last_fetch")

    def __init__(self, issuer: str, jwks_uri: str | None) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.discovered: str | None = None
        self.keys: dict[str, tuple[str, str | None, Any]] = {}
        self.expires = 0.0  # monotonic
        self.last_fetch = float("-inf")  # monotonic time of the last attempt
        self.inflight: asyncio.Future[None] | None = None
        self.fetches = 0

    def fresh_key(self, kid: str, now: float) -> tuple[str, str | None, Any] | None:
        if now >= self.expires:
            return None
        return self.keys.get(kid)


# ------------------------------------------------------------------------------------ runtime


#: Verified tokens kept per worker and authorizer (see JwtAuthorizerRuntime.tokens).
TOKEN_CACHE_SECONDS = 300.0
TOKEN_CACHE_ENTRIES = 10000


class JwtAuthorizerRuntime:
    """One compiled JWT or COGNITO_USER_POOLS authorizer of an API (per worker)."""

    def __init__(
        self,
        name: str,
        api_kind: str,
        config: AuthorizerConfig,
        region: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: TLS context for https key URLs (default: the system's CAs, which
        OpenSSL's ``SSL_CERT_FILE`` can replace); tests pass one trusting their own CA."""
        from fastgw.config.model import JwtConfiguration

        if config.type not in ("JWT", "COGNITO_USER_POOLS"):
            raise ValueError(f"authorizer type {config.type!r} is not JWT or COGNITO_USER_POOLS")
        if api_kind not in ("http", "rest"):
            raise ValueError(f"JWT authorizers serve 'http' and 'rest' APIs, not {api_kind!r}")
        self.name = name
        self.type = config.type
        self.api_kind = api_kind
        self.region = region
        self.ttl = 0
        jc = config.jwtConfiguration or JwtConfiguration()
        self.cognito = config.type == "COGNITO_USER_POOLS"
        self.algorithms = tuple(jc.algorithms)
        if not self.algorithms:
            raise ValueError("jwtConfiguration.algorithms: at least one algorithm is needed")
        for alg in self.algorithms:
            if alg not in ALGORITHMS:
                raise ValueError(
                    f"jwtConfiguration.algorithms: {alg!r} is not accepted "
                    f"(one of {', '.join(ALGORITHMS)}; never HS* or none)"
                )
        self.audience = frozenset(jc.audience)
        self.leeway = jc.clock_skew_seconds
        self.cache_seconds = float(jc.jwks_cache_seconds)
        self.min_refresh = float(jc.jwks_min_refresh_seconds)
        self.timeout = jc.fetch_timeout_ms / 1000.0
        self.max_bytes = jc.max_jwks_bytes
        self.ssl_context = ssl_context
        for url in (jc.issuer, jc.jwks_uri):
            if url is not None:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ValueError(f"jwtConfiguration: {url!r} is not an http(s) URL")
        issuers: list[_Issuer] = []
        if self.cognito:
            pools = []
            for arn in config.providerARNs:
                m = _COGNITO_ARN.fullmatch(arn)
                if m is None:
                    raise ValueError(
                        f"providerARNs: {arn!r} is not a user pool ARN "
                        "(arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID)"
                    )
                pools.append(f"https://cognito-idp.{m.group(1)}.amazonaws.com/{m.group(3)}")
            if jc.issuer is not None or jc.jwks_uri is not None:
                if len(pools) > 1:
                    raise ValueError(
                        "jwtConfiguration.issuer / jwks_uri override the issuer of a single "
                        "providerARNs entry; this authorizer has several"
                    )
                issuer = jc.issuer or (pools[0] if pools else None)
                if issuer is None:
                    raise ValueError(
                        "a COGNITO_USER_POOLS authorizer needs providerARNs or jwtConfiguration.issuer"
                    )
                issuers.append(_Issuer(issuer, jc.jwks_uri or issuer.rstrip("/") + "/.well-known/jwks.json"))
            else:
                if not pools:
                    raise ValueError("a COGNITO_USER_POOLS authorizer needs at least one providerARNs entry")
                issuers = [_Issuer(p, p + "/.well-known/jwks.json") for p in pools]
        else:
            if config.providerARNs:
                raise ValueError("providerARNs belong to COGNITO_USER_POOLS authorizers, not JWT")
            if jc.issuer is None:
                raise ValueError(
                    "a JWT authorizer needs jwtConfiguration.issuer (the expected iss; its OIDC "
                    "discovery finds the keys unless jwks_uri is given)"
                )
            if not jc.audience:
                raise ValueError("a JWT authorizer needs jwtConfiguration.audience (at least one entry)")
            issuers.append(_Issuer(jc.issuer, jc.jwks_uri))
        self.issuers = {i.issuer: i for i in issuers}
        # Identity source: one header (AWS JWT authorizers take exactly one identity source).
        spec = config.identitySource or (
            "$request.header.Authorization" if api_kind == "http" else "method.request.header.Authorization"
        )
        try:
            sources = la.parse_identity_sources(spec, api_kind, "REQUEST")
        except ValueError as ex:
            raise ValueError(f"identitySource: {ex}") from None
        if len(sources) != 1:
            raise ValueError("identitySource: a JWT authorizer reads exactly one identity source")
        self.sources = sources
        #: The identity header's name (lower-case) for ``head_allows``, None for other sources.
        self._head_name: bytes | None = None
        if sources[0].kind == "header":
            self._head_name = sources[0].name.lower().encode("latin-1")
        self.verified = 0
        # Tokens this worker verified: token -> (valid until (epoch s), claims as sent to
        # integrations, scopes, token_use). PERF: a signature check costs ~50 µs; a client sends
        # the same token again and again. An entry lives until the token's exp, at most
        # TOKEN_CACHE_SECONDS; scopes and Cognito's token_use are checked per route on each hit.
        self.tokens: dict[str, tuple[float, dict[str, Any], list[str], Any, _Issuer, str]] = {}
        self.token_hits = 0
        self.refused = 0

    # -- replies
    def _unauthorized(self, description: str | None) -> LocalReply:
        self.refused += 1
        if self.api_kind != "http":
            return la.UNAUTHORIZED
        if description is None:
            return la.UNAUTHORIZED_HTTP
        return LocalReply(
            401,
            [_JSON, ("www-authenticate", www_authenticate(description))],
            b'{"message":"Unauthorized"}',
        )

    def _forbidden(self) -> LocalReply:
        self.refused += 1
        if self.api_kind != "http":
            return la.UNAUTHORIZED  # REST Cognito authorizers answer 401 to a missing scope
        return la.FORBIDDEN_HTTP

    # -- request time
    def head_allows(self, fwd: list[bytes], route: Any) -> bool:
        """PERF: whether the request whose raw header lines are ``fwd`` carries, in its one
        identity header, a token this worker verified that is still valid and passes the
        route's checks (``_accept``'s). Then the protocol proxies it on the fast path, without a
        Request or the pipeline; anything else (no token, two headers, an unknown or expired
        token, a refusal) returns False and goes through ``check_cached``, which answers it."""
        name = self._head_name
        if name is None:
            return False
        values = header_values(fwd, name)
        if len(values) != 1 or not values[0]:
            return False  # none, or a repeated header: the pipeline decides
        hit = self._remembered(_bare_token(values[0].decode("latin-1")))
        if hit is None or self._route_refusal(route, hit[2], hit[3]) is not None:
            return False
        self._count_hit()
        return True

    def _remembered(self, token: str) -> tuple[float, dict[str, Any], list[str], Any, _Issuer, str] | None:
        """The verified-token cache's entry for ``token`` while it is valid: the token has not
        expired and the key that signed it is still in a fresh key set."""
        hit = self.tokens.get(token)
        if hit is None or time.time() >= hit[0] or hit[4].fresh_key(hit[5], time.monotonic()) is None:
            return None
        return hit

    def _count_hit(self) -> None:
        self.token_hits += 1
        COUNTERS["jwt_token_cache_hits"] += 1

    def check_cached(self, req: Request, svc: Services) -> LocalReply | tuple[_Issuer, str, str, str] | None:
        """Without waiting: a refusal, or None (verified with a key this worker holds), else
        ``(issuer, kid, alg, token)`` for ``authorize_miss``."""
        values = la.identity_values(self.sources, req)
        token = values[0] if values else ""
        if not token:
            return self._unauthorized(None)
        token = _bare_token(token)
        hit = self._remembered(token)
        if hit is not None:
            self._count_hit()
            return self._accept(req, hit[1], hit[2], hit[3])
        self.tokens.pop(token, None)  # expired, or its key left the fresh set
        try:
            head_b64, payload_b64, _sig = token.split(".")
            header = _b64json(head_b64)
            payload = _b64json(payload_b64)
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return self._unauthorized(E_MALFORMED)
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return self._unauthorized(E_MALFORMED)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return self._unauthorized(E_ALG)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return self._unauthorized(E_KID)
        iss = payload.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            return self._unauthorized(E_ISSUER)
        now = time.monotonic()
        key = issuer.fresh_key(kid, now)
        if key is None:
            if (
                now < issuer.expires
                and issuer.inflight is None
                and now - issuer.last_fetch < self.min_refresh
            ):
                return self._unauthorized(E_KID)  # an unknown kid, and no refetch allowed yet
            return issuer, kid, alg, token
        return self._verify(req, issuer, key, alg, token, kid)

    async def authorize_miss(
        self, req: Request, svc: Services, issuer: _Issuer, kid: str, alg: str, token: str
    ) -> LocalReply | None:
        """Fetch the issuer's keys when allowed (see the module docstring), then verify."""
        now = time.monotonic()
        if now >= issuer.expires or kid not in issuer.keys:
            await self._refresh(issuer, svc)
        key = issuer.fresh_key(kid, time.monotonic())
        if key is None:
            if time.monotonic() >= issuer.expires:
                return self._unauthorized(E_KEYS)
            return self._unauthorized(E_KID)
        return self._verify(req, issuer, key, alg, token, kid)

    async def _refresh(self, issuer: _Issuer, svc: Services) -> None:
        while True:
            inflight = issuer.inflight
            if inflight is None:
                break
            await asyncio.shield(inflight)
            if issuer.last_fetch != 0.0:
                return
            # The fetch waited for was abandoned (its request went away): fetch here instead.
        if time.monotonic() - issuer.last_fetch < self.min_refresh:
            return  # rate limited: the keys held (if any) stay
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        issuer.inflight = fut
        issuer.last_fetch = time.monotonic()
        issuer.fetches += 1
        cancelled = False
        try:
            # wait_for (not asyncio.timeout): it also works when the request's pipeline was
            # started eagerly, outside any Task (fastgw.pipeline.runtime.launch).
            keys = await asyncio.wait_for(self._fetch_keys(issuer, svc), self.timeout)
            issuer.keys = keys
            issuer.expires = time.monotonic() + self.cache_seconds
        except asyncio.CancelledError:
            # The request that fetched went away: that is no verdict on the provider, so the
            # next request may fetch again at once (else one disconnect could lock out every
            # token until the refresh period ends).
            cancelled = True
            raise
        except Exception as ex:  # fail closed: the old keys stay until they expire, no longer
            log.warning(
                "JWKS fetch failed",
                extra={"authorizer": self.name, "issuer": issuer.issuer, "error": repr(ex)},
            )
        finally:
            # The period counts from the end of the attempt.
            issuer.last_fetch = 0.0 if cancelled else time.monotonic()
            issuer.inflight = None
            fut.set_result(None)

    async def _fetch_keys(self, issuer: _Issuer, svc: Services) -> dict[str, tuple[str, str | None, Any]]:
        client = svc.client
        uri = issuer.jwks_uri or issuer.discovered
        if uri is None:
            url = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = orjson.loads(await fetch_url(client, url, self.timeout, self.max_bytes, self.ssl_context))
            found = doc.get("jwks_uri") if isinstance(doc, dict) else None
            if not isinstance(found, str):
                raise ValueError(f"{url}: no jwks_uri")
            parts = urlsplit(found)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url}: jwks_uri {found!r} is not an http(s) URL")
            issuer.discovered = uri = found
        return parse_jwks(await fetch_url(client, uri, self.timeout, self.max_bytes, self.ssl_context))

    def _verify(
        self, req: Request, issuer: _Issuer, key: tuple[str, str | None, Any], alg: str, token: str, kid: str
    ) -> LocalReply | None:
        ktype, key_alg, public_key = key
        if ALGORITHMS[alg] != ktype or (key_alg is not None and key_alg != alg):
            return self._unauthorized(E_ALG)  # a key is used only with its own kind of algorithm
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=[alg],  # one algorithm, in the allowlist, matching the key
                issuer=issuer.issuer,
                leeway=self.leeway,
                options={
                    "require": ["exp", "iss"],
                    "verify_aud": False,  # below: AWS's aud / client_id rule
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": True,
                },
            )
        except jwt.ExpiredSignatureError:
            return self._unauthorized(E_EXPIRED)
        except jwt.ImmatureSignatureError as ex:
            return self._unauthorized(E_IAT if "iat" in str(ex) else E_NBF)
        except (jwt.InvalidIssuerError, jwt.MissingRequiredClaimError) as ex:
            if isinstance(ex, jwt.MissingRequiredClaimError) and ex.claim == "exp":
                return self._unauthorized(E_EXPIRED)
            return self._unauthorized(E_ISSUER)
        except jwt.InvalidSignatureError:
            return self._unauthorized(E_SIGNATURE)
        except jwt.InvalidTokenError:
            return self._unauthorized(E_MALFORMED)
        use = claims.get("token_use")
        if self.cognito:
            if self.audience:
                who = claims.get("client_id") if use == "access" else claims.get("aud")
                if not isinstance(who, str) or who not in self.audience:
                    return self._unauthorized(E_AUDIENCE)
        elif not self._audience_ok(claims):
            return self._unauthorized(E_AUDIENCE)
        scopes = token_scopes(claims)
        formatted = format_claims(claims, self.api_kind)
        self.verified += 1
        COUNTERS["jwt_verified"] += 1
        tokens = self.tokens
        if len(tokens) >= TOKEN_CACHE_ENTRIES:
            for old in list(tokens)[: TOKEN_CACHE_ENTRIES // 8]:
                del tokens[old]
        exp = claims.get("exp")
        until = time.time() + TOKEN_CACHE_SECONDS
        if isinstance(exp, (int, float)) and exp < until:
            until = float(exp)
        tokens[token] = (until, formatted, scopes, use, issuer, kid)
        return self._accept(req, formatted, scopes, use)

    def _accept(self, req: Request, claims: dict[str, Any], scopes: list[str], use: Any) -> LocalReply | None:
        """The checks that depend on the route (Cognito's token_use, scopes), then success."""
        refused = self._route_refusal(req.route, scopes, use)
        if refused is not None:
            return refused
        req.authorizer = {
            "jwt": {"claims": dict(claims), "scopes": list(scopes) if scopes is not None else None}
        }
        return None

    def _route_refusal(self, route: Any, scopes: list[str], use: Any) -> LocalReply | None:
        """The route's checks of a valid token: Cognito's ``token_use`` (401), then the route's
        authorizationScopes (403); None when it passes."""
        required = route.auth_scopes
        if self.cognito and use != ("access" if required else "id"):
            return self._unauthorized(E_TOKEN_USE)
        if required and not (scopes and any(s in required for s in scopes)):
            return self._forbidden()
        return None

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        aud = claims.get("aud")
        if aud is not None:
            values = [aud] if isinstance(aud, str) else aud
            return isinstance(values, list) and any(isinstance(a, str) and a in self.audience for a in values)
        client_id = claims.get("client_id")
        return isinstance(client_id, str) and client_id in self.audience

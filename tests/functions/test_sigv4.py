"""AWS_IAM authorization: SigV4 requests signed by botocore, verified as API Gateway verifies them."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fastgw.authorizers import sigv4
from fastgw.authorizers.sigv4 import IamVerifier
from fastgw.config.compile import RouteRuntime, compile_config
from fastgw.config.model import GatewayConfig, IamSettings, IamUser
from fastgw.pipeline.request import Request
from fastgw.server.replies import LocalReply

REGION = "us-west-2"
ACCOUNT = "111122223333"
API_ID = "abc123"
HOST = "api.example.com"
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/alice"
PREFIX = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": f"{PREFIX}/*"}],
}


@pytest.fixture(scope="module")
def routes() -> dict[str, RouteRuntime]:
    cfg = msgspec.convert(
        {
            "gateway": {"aws": {"region": REGION, "account_id": ACCOUNT}},
            "apis": [
                {
                    "name": "pets",
                    "id": API_ID,
                    "kind": "rest",
                    "stages": [{"name": "prod"}],
                    "routes": [
                        # authorizationType AWS_IAM is left out: the routes only give method ARNs here.
                        {"route": r, "integration": {"type": "MOCK"}}
                        for r in ("GET /pets/{id}", "POST /pets", "GET /admin/{x}", "GET /")
                    ],
                }
            ],
        },
        GatewayConfig,
    )
    return {r.key: r for r in compile_config(cfg).stages[0].routes}


def _settings(policy: dict[str, Any] | None = ALLOW_ALL, **extra: Any) -> IamSettings:
    return IamSettings(
        users=[IamUser(accessKeyId=AKID, arn=USER_ARN, secretAccessKey=SECRET, policy=policy)], **extra
    )


def _verifier(policy: dict[str, Any] | None = ALLOW_ALL, **extra: Any) -> IamVerifier:
    return IamVerifier(_settings(policy, **extra), REGION, ACCOUNT)


def _to_request(route: RouteRuntime, aws: AWSRequest) -> Request:
    parts = urlsplit(aws.url)
    headers = [("Host", parts.netloc), *((k, v) for k, v in aws.headers.items())]
    body = aws.body if isinstance(aws.body, bytes) else (aws.body or "").encode()
    return Request(
        route,
        aws.method,
        parts.path,
        parts.path.removeprefix("/prod") or "/",
        parts.query,
        headers,
        body,
        "203.0.113.7",
        "req-1",
        int(time.time() * 1000),
        domain=HOST,
    )


def _signed(
    route: RouteRuntime,
    method: str = "GET",
    path: str = "/prod/pets/1",
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    secret: str = SECRET,
    akid: str = AKID,
    region: str = REGION,
    token: str | None = None,
) -> Request:
    url = f"https://{HOST}{path}" + (f"?{query}" if query else "")
    aws = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(akid, secret, token), "execute-api", region).add_auth(aws)
    return _to_request(route, aws)


def _presigned(
    route: RouteRuntime, path: str = "/prod/pets/1", query: str = "", expires: int = 60
) -> Request:
    url = f"https://{HOST}{path}" + (f"?{query}" if query else "")
    aws = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(AKID, SECRET), "execute-api", REGION, expires=expires).add_auth(aws)
    if "Authorization" in aws.headers:
        del aws.headers["Authorization"]
    return _to_request(route, aws)


def _body(reply: object) -> dict[str, Any]:
    assert isinstance(reply, LocalReply), reply
    return json.loads(reply.body)


def _error_type(reply: object) -> str:
    assert isinstance(reply, LocalReply)
    for line in reply.head.split(b"\r\n"):
        if line.lower().startswith(b"x-amzn-errortype:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


# ----------------------------------------------------------------------------------- accepted


def test_header_signed_get_is_accepted_with_identity(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"], query="b=2&a=1&a=0&q=hello%20world")
    identity = _verifier().verify(req, time.time())
    assert isinstance(identity, dict)
    assert identity["accessKey"] == AKID
    assert identity["accountId"] == ACCOUNT
    assert identity["userArn"] == USER_ARN
    assert identity["caller"] == identity["user"]
    assert identity["user"].startswith("AIDA") and len(identity["user"]) == 21
    assert set(identity) == {"accessKey", "accountId", "caller", "user", "userArn"}


def test_post_with_body_and_extra_signed_header(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(
        routes["POST /pets"],
        method="POST",
        path="/prod/pets",
        body=b'{"name":"rex"}',
        headers={"Content-Type": "application/json", "X-Custom": "  a   b  "},
    )
    assert isinstance(_verifier().verify(req, time.time()), dict)


def test_root_path_and_encoded_path(routes: dict[str, RouteRuntime]) -> None:
    assert isinstance(_verifier().verify(_signed(routes["GET /"], path="/prod/"), time.time()), dict)
    req = _signed(routes["GET /pets/{id}"], path="/prod/pets/a%20b%2Fc")
    assert isinstance(_verifier().verify(req, time.time()), dict)


def test_presigned_url_is_accepted(routes: dict[str, RouteRuntime]) -> None:
    req = _presigned(routes["GET /pets/{id}"], query="z=1&a=x%2By")
    assert req.header("authorization") is None
    assert isinstance(_verifier().verify(req, time.time()), dict)


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch, routes: dict[str, RouteRuntime]) -> None:
    monkeypatch.setenv("FASTGW_TEST_SECRET", SECRET)
    settings = IamSettings(
        users=[IamUser(accessKeyId=AKID, arn=USER_ARN, secret_env="FASTGW_TEST_SECRET", policy=ALLOW_ALL)]
    )
    verifier = IamVerifier(settings, REGION, ACCOUNT)
    assert isinstance(verifier.verify(_signed(routes["GET /pets/{id}"]), time.time()), dict)


def test_signing_key_cached(routes: dict[str, RouteRuntime]) -> None:
    verifier = _verifier()
    for _ in range(3):
        assert isinstance(verifier.verify(_signed(routes["GET /pets/{id}"]), time.time()), dict)
    assert len(verifier._keys) == 1


# ----------------------------------------------------------------------------------- tampering

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


def _assert_mismatch(reply: object) -> None:
    assert isinstance(reply, LocalReply) and reply.status == 403
    assert _error_type(reply) == "InvalidSignatureException"
    message = _body(reply)["message"]
    assert message.startswith(MISMATCH + "\n\nThe Canonical String for this request should have been\n'")
    assert "\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n" in message


def test_tampered_path(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    req.path, req.resource_path = "/prod/pets/2", "/pets/2"
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_tampered_query(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"], query="a=1")
    req.query = "a=2"
    _assert_mismatch(_verifier().verify(req, time.time()))
    req.query = "a=1&b=1"
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_tampered_header(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"], headers={"X-Custom": "one"})
    req.set_header("X-Custom", "two")
    _assert_mismatch(_verifier().verify(req, time.time()))
    req = _signed(routes["GET /pets/{id}"])
    req.set_header("Host", "evil.example.com")
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_tampered_body(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["POST /pets"], method="POST", path="/prod/pets", body=b"abc")
    req.body = b"abd"
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_content_sha256_header_must_match_body(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(
        routes["POST /pets"],
        method="POST",
        path="/prod/pets",
        body=b"abc",
        headers={"X-Amz-Content-SHA256": "0" * 64},
    )
    reply = _verifier().verify(req, time.time())
    assert _error_type(reply) == "InvalidSignatureException"


def test_tampered_date(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    amz = req.header("x-amz-date")
    assert amz is not None
    new = amz[:-3] + ("00Z" if amz[-3:] != "00Z" else "01Z")
    req.set_header("X-Amz-Date", new)
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_wrong_secret(routes: dict[str, RouteRuntime]) -> None:
    _assert_mismatch(_verifier().verify(_signed(routes["GET /pets/{id}"], secret="x" * 40), time.time()))


# --------------------------------------------------------------------------- time and expiry


def test_skew_beyond_300_seconds(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    now = time.time()
    assert isinstance(_verifier().verify(req, now + 290), dict)
    reply = _verifier().verify(req, now + 400)
    assert _error_type(reply) == "InvalidSignatureException"
    message = _body(reply)["message"]
    assert message.startswith("Signature expired: ")
    assert " is now earlier than " in message and message.endswith(" - 5 min.)")
    reply = _verifier().verify(req, now - 400)
    assert _body(reply)["message"].startswith("Signature not yet current: ")
    assert _body(reply)["message"].endswith(" + 5 min.)")


def test_skew_setting(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    reply = _verifier(clock_skew_seconds=60).verify(req, time.time() + 120)
    assert _body(reply)["message"].endswith(" - 1 min.)")


def test_expired_presigned_url(routes: dict[str, RouteRuntime]) -> None:
    req = _presigned(routes["GET /pets/{id}"], expires=60)
    now = time.time()
    assert isinstance(_verifier().verify(req, now + 30), dict)
    reply = _verifier().verify(req, now + 120)
    assert _error_type(reply) == "InvalidSignatureException"
    assert _body(reply)["message"].startswith("Signature expired: ")


def test_presigned_tampered_query(routes: dict[str, RouteRuntime]) -> None:
    req = _presigned(routes["GET /pets/{id}"], query="a=1")
    req.query = req.query.replace("a=1", "a=2")
    _assert_mismatch(_verifier().verify(req, time.time()))


def test_presigned_missing_parameters(routes: dict[str, RouteRuntime]) -> None:
    req = _presigned(routes["GET /pets/{id}"])
    req.query = "&".join(p for p in req.query.split("&") if not p.startswith("X-Amz-Signature="))
    reply = _verifier().verify(req, time.time())
    assert _error_type(reply) == "IncompleteSignatureException"
    assert _body(reply)["message"] == (
        "AWS query-string parameters must include 'X-Amz-Signature'. Re-examine the query-string parameters."
    )


# ------------------------------------------------------------------------------ bad requests


def test_no_authentication_at_all(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    req.set_header("Authorization", None)
    reply = _verifier().verify(req, time.time())
    assert isinstance(reply, LocalReply) and reply.status == 403
    assert reply.body == b'{"message":"Missing Authentication Token"}'
    assert _error_type(reply) == "MissingAuthenticationTokenException"


def test_unknown_access_key(routes: dict[str, RouteRuntime]) -> None:
    reply = _verifier().verify(_signed(routes["GET /pets/{id}"], akid="AKIAUNKNOWNKEY000000"), time.time())
    assert isinstance(reply, LocalReply) and reply.status == 403
    assert reply.body == b'{"message":"The security token included in the request is invalid."}'
    assert _error_type(reply) == "UnrecognizedClientException"


def test_session_token_refused(routes: dict[str, RouteRuntime]) -> None:
    reply = _verifier().verify(_signed(routes["GET /pets/{id}"], token="FQoGZXIvYXdzEXAMPLE"), time.time())
    assert _error_type(reply) == "UnrecognizedClientException"


def test_wrong_region_scope(routes: dict[str, RouteRuntime]) -> None:
    reply = _verifier().verify(_signed(routes["GET /pets/{id}"], region="eu-west-1"), time.time())
    assert _error_type(reply) == "InvalidSignatureException"
    assert _body(reply)["message"] == "Credential should be scoped to a valid region, not 'eu-west-1'. "


def test_bearer_token_in_authorization(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    req.set_header("Authorization", "Bearer sometoken")
    reply = _verifier().verify(req, time.time())
    assert _error_type(reply) == "IncompleteSignatureException"
    message = _body(reply)["message"]
    assert message.startswith("Invalid key=value pair (missing equal-sign) in Authorization header (hashed")
    assert "sometoken" not in message


def test_authorization_missing_parameters(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    req.set_header("Authorization", "eyJhbGciOiJIUzI1NiJ9")
    req.set_header("X-Amz-Date", None)
    reply = _verifier().verify(req, time.time())
    assert reply.status == 403  # type: ignore[union-attr]
    assert _error_type(reply) == "IncompleteSignatureException"
    assert _body(reply)["message"] == (
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' "
        "parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires "
        "existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=eyJhbGciOiJIUzI1NiJ9"
    )


def test_malformed_credential_and_host_not_signed(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    auth = req.header("authorization") or ""
    req.set_header("Authorization", auth.replace(f"Credential={AKID}/", "Credential="))
    reply = _verifier().verify(req, time.time())
    assert _error_type(reply) == "IncompleteSignatureException"
    assert _body(reply)["message"].startswith("Credential must have exactly 5 slash-delimited elements")
    req = _signed(routes["GET /pets/{id}"])
    auth = req.header("authorization") or ""
    req.set_header("Authorization", auth.replace("SignedHeaders=host;", "SignedHeaders="))
    reply = _verifier().verify(req, time.time())
    assert (
        _body(reply)["message"] == "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_bad_date(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"])
    req.set_header("X-Amz-Date", "2024-01-01T00:00:00Z")
    reply = _verifier().verify(req, time.time())
    assert _error_type(reply) == "IncompleteSignatureException"
    assert _body(reply)["message"].startswith("Date must be in ISO-8601 'basic format'.")


# ----------------------------------------------------------------------------------- policies


def test_no_policy_is_denied(routes: dict[str, RouteRuntime]) -> None:
    reply = _verifier(policy=None).verify(_signed(routes["GET /pets/{id}"]), time.time())
    assert isinstance(reply, LocalReply) and reply.status == 403
    assert _error_type(reply) == "AccessDeniedException"
    assert _body(reply) == {
        "Message": f"User: {USER_ARN} is not authorized to perform: execute-api:Invoke on resource: "
        f"arn:aws:execute-api:{REGION}:********3333:{API_ID}/prod/GET/pets/1 because no identity-based "
        "policy allows the execute-api:Invoke action"
    }


def test_policy_wildcards_allow_and_deny(routes: dict[str, RouteRuntime]) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:*", "Resource": f"{PREFIX}/prod/GET/*"},
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": f"{PREFIX}/*/GET/admin/*"},
        ],
    }
    verifier = _verifier(policy)
    assert isinstance(verifier.verify(_signed(routes["GET /pets/{id}"]), time.time()), dict)
    reply = verifier.verify(_signed(routes["GET /admin/{x}"], path="/prod/admin/x"), time.time())
    assert _body(reply)["Message"].endswith(" with an explicit deny in an identity-based policy")
    reply = verifier.verify(_signed(routes["POST /pets"], method="POST", path="/prod/pets"), time.time())
    assert _body(reply)["Message"].endswith(
        " because no identity-based policy allows the execute-api:Invoke action"
    )


def test_authorize_for_combine(routes: dict[str, RouteRuntime]) -> None:
    verifier = _verifier(policy=None)
    identity = verifier.verify(_signed(routes["GET /pets/{id}"]), time.time(), authorize=False)
    assert isinstance(identity, dict)
    assert verifier.authorize(identity, f"{PREFIX}/prod/GET/pets/1") is None
    verifier = _verifier()
    assert verifier.authorize(identity, f"{PREFIX}/prod/GET/pets/1") is True


# --------------------------------------------------------------------------------- bad config


def test_bad_config() -> None:
    user = IamUser(accessKeyId=AKID, arn=USER_ARN, secretAccessKey=SECRET)
    with pytest.raises(ValueError, match="duplicate accessKeyId"):
        IamVerifier(IamSettings(users=[user, user]), REGION, ACCOUNT)
    with pytest.raises(ValueError, match="exactly one of secretAccessKey and secret_env"):
        IamVerifier(IamSettings(users=[IamUser(accessKeyId=AKID, arn=USER_ARN)]), REGION, ACCOUNT)
    missing = IamUser(accessKeyId=AKID, arn=USER_ARN, secret_env="FASTGW_NO_SUCH_VARIABLE_X")
    with pytest.raises(ValueError, match="unset or empty"):
        IamVerifier(IamSettings(users=[missing]), REGION, ACCOUNT)
    bad_arn = IamUser(accessKeyId=AKID, arn="alice", secretAccessKey=SECRET)
    with pytest.raises(ValueError, match="not an IAM ARN"):
        IamVerifier(IamSettings(users=[bad_arn]), REGION, ACCOUNT)
    bad_policy = IamUser(accessKeyId=AKID, arn=USER_ARN, secretAccessKey=SECRET, policy={"Version": "x"})
    with pytest.raises(ValueError, match="policy"):
        IamVerifier(IamSettings(users=[bad_policy]), REGION, ACCOUNT)


def test_mask_account() -> None:
    assert (
        sigv4.mask_account(f"{PREFIX}/prod/GET/")
        == f"arn:aws:execute-api:{REGION}:********3333:{API_ID}/prod/GET/"
    )


def test_verify_is_fast(routes: dict[str, RouteRuntime]) -> None:
    verifier = _verifier()
    req = _signed(routes["GET /pets/{id}"], query="a=1&b=2")
    now = time.time()
    verifier.verify(req, now)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        verifier.verify(req, now)
    per = (time.perf_counter() - start) / n
    assert per < 200e-6, per  # generous bound for CI; typically ~10-20 µs


def test_date_header_instead_of_x_amz_date(routes: dict[str, RouteRuntime]) -> None:
    req = _signed(routes["GET /pets/{id}"], headers={"Date": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert req.header("x-amz-date") is None and req.header("date") is not None
    assert isinstance(_verifier().verify(req, time.time()), dict)

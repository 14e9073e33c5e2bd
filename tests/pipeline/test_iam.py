"""AWS_IAM (SigV4, signed by botocore as AWS clients sign) and resource policies, end to end:
real gateway processes, real sockets."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from helpers import GatewayFactory, RawConn

H = "tests.pipeline.handlers"
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ARN = "arn:aws:iam::123456789012:user/alice"


def allow(resource: str, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource, **extra}],
    }


CONFIG: dict[str, Any] = {
    "iam": {
        "users": [
            {
                "accessKeyId": AKID,
                "secretAccessKey": SECRET,
                "arn": ARN,
                "policy": allow("arn:aws:execute-api:us-east-1:123456789012:*/prod/GET/*"),
            }
        ]
    },
    "functions": {"echo": {"handler": f"{H}:echo"}},
    "apis": [
        {
            "name": "iamapi",
            "id": "iamapi0001",
            "routes": [
                {
                    "route": "GET /iam/{x}",
                    "integration": {"type": "AWS_PROXY", "uri": "echo"},
                    "authorizationType": "AWS_IAM",
                },
                {
                    "route": "POST /iam/{x}",
                    "integration": {"type": "MOCK", "body": "{}"},
                    "authorizationType": "AWS_IAM",
                },
            ],
            "stages": [{"name": "prod"}],
        },
        {
            "name": "fenced",
            "id": "fenced0001",
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "execute-api:Invoke",
                        "Resource": "execute-api:/*",
                    },
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "execute-api:Invoke",
                        "Resource": "execute-api:/*/GET/blocked",
                        "Condition": {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}},
                    },
                ],
            },
            "routes": [
                {"route": "GET /open", "integration": {"type": "MOCK", "body": "{}"}},
                {"route": "GET /blocked", "integration": {"type": "MOCK", "body": "{}"}},
            ],
            "stages": [{"name": "fenced"}],
        },
        {
            "name": "intranet",
            "id": "intranet01",
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "execute-api:Invoke",
                        "Resource": "execute-api:/*",
                        "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
                    },
                ],
            },
            "routes": [{"route": "GET /x", "integration": {"type": "MOCK", "body": "{}"}}],
            "stages": [{"name": "intra"}],
        },
    ],
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Any:
    return module_gateway_factory(CONFIG)


def signed(port: int, method: str, path: str, body: bytes = b"", secret: str = SECRET) -> AWSRequest:
    req = AWSRequest(
        method=method,
        url=f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"content-type": "application/json"} if body else {},
    )
    SigV4Auth(Credentials(AKID, secret), "execute-api", "us-east-1").add_auth(req)
    return req


def send(port: int, req: AWSRequest, **changes: Any) -> Any:
    from urllib.parse import urlsplit

    url = urlsplit(changes.get("url", req.url))
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = [(k, v) for k, v in req.headers.items() if k.lower() != "host"]
    headers += changes.get("extra", [])
    with RawConn(port) as c:
        return c.request(
            req.method,
            target,
            headers=headers,
            body=changes.get("body", req.body or b""),
            host=req.headers.get("host", url.netloc),
        )


def test_signed_request_reaches_the_integration_with_the_caller(gw: Any) -> None:
    r = send(gw.port, signed(gw.port, "GET", "/prod/iam/a?q=1&b=two"))
    assert r.status == 200, r.body
    identity = r.json()["event"]["requestContext"]["identity"]
    assert identity["userArn"] == ARN and identity["accessKey"] == AKID
    assert identity["accountId"] == "123456789012"


def test_presigned_url(gw: Any) -> None:
    req = AWSRequest(method="GET", url=f"http://127.0.0.1:{gw.port}/prod/iam/p?x=1")
    SigV4QueryAuth(Credentials(AKID, SECRET), "execute-api", "us-east-1", expires=60).add_auth(req)
    r = send(gw.port, req)
    assert r.status == 200, r.body


@pytest.mark.parametrize(
    "change",
    [
        {"url": "/prod/iam/b?q=1&b=two"},  # another path
        {"url": "/prod/iam/a?q=2&b=two"},  # another query
        {"extra": [("x-amz-date", "20200101T000000Z")]},  # a second date
    ],
)
def test_tampered_requests_are_refused(gw: Any, change: dict[str, Any]) -> None:
    req = signed(gw.port, "GET", "/prod/iam/a?q=1&b=two")
    if "url" in change:
        change = {"url": f"http://127.0.0.1:{gw.port}{change['url']}"}
    r = send(gw.port, req, **change)
    assert r.status == 403
    assert r.header("x-amzn-ErrorType") in ("InvalidSignatureException", "IncompleteSignatureException")


def test_tampered_body_and_wrong_secret(gw: Any) -> None:
    req = signed(gw.port, "POST", "/prod/iam/a", b'{"a":1}')
    assert send(gw.port, req, body=b'{"a":2}').status == 403
    assert send(gw.port, signed(gw.port, "GET", "/prod/iam/a", secret="x" * 40)).status == 403


def test_unsigned_and_denied_by_the_identity_policy(gw: Any) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/iam/a")
    assert r.status == 403 and r.body == b'{"message":"Missing Authentication Token"}'
    # The policy allows GET only.
    r = send(gw.port, signed(gw.port, "POST", "/prod/iam/a", b"{}"))
    assert r.status == 403 and r.header("x-amzn-ErrorType") == "AccessDeniedException"
    assert ARN.encode() in r.body


def test_resource_policy_by_source_ip(gw: Any) -> None:
    with RawConn(gw.port) as c:
        assert c.request("GET", "/fenced/open").status == 200
    with RawConn(gw.port) as c:
        r = c.request("GET", "/fenced/blocked")
    assert r.status == 403 and b"explicit deny" in r.body
    with RawConn(gw.port) as c:
        r = c.request("GET", "/intra/x")  # allowed for 10.0.0.0/8 only
    assert r.status == 403 and b"explicit deny" not in r.body

"""A Lambda TOKEN authorizer in the shape of AWS's authorizer blueprint.

API Gateway calls it with ``{"type": "TOKEN", "authorizationToken": "<the header's value>",
"methodArn": "arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/METHOD/RESOURCE"}``. It answers
with a ``principalId``, an IAM policy over ``execute-api:Invoke`` and a ``context`` that reaches
the integration as ``requestContext.authorizer``; raising ``Exception("Unauthorized")`` makes
API Gateway answer 401.

Tokens are ``USER:ROLE:EXPIRY:SIGNATURE``: EXPIRY in Unix seconds, SIGNATURE the hex
HMAC-SHA256 of ``USER:ROLE:EXPIRY`` under the secret in the ``NOTES_TOKEN_SECRET`` environment
variable. Clients send ``Authorization: Bearer <token>``. Make one with::

    NOTES_TOKEN_SECRET=... python3 -m examples.token_authorizer alice editor --ttl 3600

The policy covers the whole stage (``.../API_ID/STAGE/METHOD/*``) rather than the one method
ARN of the call: API Gateway caches the answer per token (authorizerResultTtlInSeconds) and
evaluates the cached policy against every method the token is later used on.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import time
from typing import Any

SECRET_ENV = "NOTES_TOKEN_SECRET"

#: What each role may do: (Effect, HTTP method or "*") applied to every resource of the stage.
ROLES: dict[str, list[tuple[str, str]]] = {
    "editor": [("Allow", "*")],
    "viewer": [("Allow", "GET"), ("Deny", "POST"), ("Deny", "PUT"), ("Deny", "PATCH"), ("Deny", "DELETE")],
}

_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_ROLE = re.compile(r"[a-z]{1,16}")


def _secret() -> bytes:
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        # Not "Unauthorized": a configuration error, which API Gateway answers with a 500.
        raise RuntimeError(f"{SECRET_ENV} is not set")
    return secret.encode()


def _sign(payload: str, secret: bytes) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def make_token(user: str, role: str, ttl_seconds: int = 3600, secret: str | None = None) -> str:
    """A token for ``user`` with ``role``, valid for ``ttl_seconds``."""
    if not _USER.fullmatch(user) or not _ROLE.fullmatch(role):
        raise ValueError("user: 1-64 of A-Z a-z 0-9 _ . @ -; role: 1-16 of a-z")
    payload = f"{user}:{role}:{int(time.time()) + ttl_seconds}"
    return f"{payload}:{_sign(payload, secret.encode() if secret is not None else _secret())}"


def verify_token(token: str, now: float | None = None) -> tuple[str, str, int]:
    """``(user, role, expiry)`` of a valid token; ``Exception("Unauthorized")`` otherwise."""
    parts = token.split(":")
    if len(parts) != 4:
        raise Exception("Unauthorized")
    user, role, expiry, signature = parts
    expected = _sign(f"{user}:{role}:{expiry}", _secret())
    if not hmac.compare_digest(expected.encode(), signature.encode()):  # constant time
        raise Exception("Unauthorized")
    if not expiry.isdigit() or int(expiry) <= (time.time() if now is None else now):
        raise Exception("Unauthorized")
    return user, role, int(expiry)


def policy(principal_id: str, rules: list[tuple[str, str]], method_arn: str) -> dict[str, Any]:
    """An authorizer response: ``rules`` applied to every resource of the method ARN's stage."""
    # arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/GET/notes
    arn_prefix, _, path = method_arn.partition("/")
    stage = path.split("/", 1)[0]
    stage_arn = f"{arn_prefix}/{stage}"
    statements = [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": f"{stage_arn}/{method}/*"}
        for effect, method in rules
    ]
    return {
        "principalId": principal_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": statements},
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The authorizer: a principal and a policy, or ``Exception("Unauthorized")`` (401)."""
    token = event.get("authorizationToken") or ""
    scheme, _, credentials = token.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise Exception("Unauthorized")
    user, role, expiry = verify_token(credentials.strip())
    # An unknown role is denied everything (403) rather than refused (401): the token is genuine.
    response = policy(user, ROLES.get(role, [("Deny", "*")]), event["methodArn"])
    # Context values reach a REST API's integration as strings.
    response["context"] = {"user": user, "role": role, "expiresAt": expiry}
    return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m examples.token_authorizer",
        description=f"Print a bearer token signed with ${SECRET_ENV}.",
    )
    parser.add_argument("user")
    roles = ", ".join(ROLES)
    parser.add_argument("role", nargs="?", default="editor", help=f"one of {roles} (default editor)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    args = parser.parse_args(argv)
    try:
        print(make_token(args.user, args.role, args.ttl))
    except (RuntimeError, ValueError) as ex:
        parser.exit(2, f"error: {ex}\n")


if __name__ == "__main__":
    main()

"""The TOKEN authorizer of ``orders-rest.yaml`` (function ``orders-authorizer``): AWS Lambda code.

Clients send ``Authorization: Bearer TOKEN``. The API's ``identityValidationExpression`` refuses
other shapes with 401 before this function runs. The function looks the token up in a table
(a secrets store or a database in real life; here the environment variable ``ORDERS_API_TOKENS``,
``TOKEN=CUSTOMER:ROLE`` pairs separated by commas) and answers with:

- ``principalId``: the customer, which the request mapping templates read as
  ``$context.authorizer.principalId``;
- a policy over the whole stage: a ``customer`` may call every method, an ``auditor`` may only
  read (``GET``), and ``POST`` is explicitly denied (403);
- a ``context`` (``customerId``, ``role``), given to the integrations.

An unknown token raises ``Exception("Unauthorized")``: API Gateway answers 401.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

TOKENS_ENV = "ORDERS_API_TOKENS"
ROLES: dict[str, list[tuple[str, str]]] = {
    # (effect, "METHOD/resource" under the stage), as in AWS's authorizer blueprint.
    "customer": [("Allow", "*/*")],
    "auditor": [("Allow", "GET/*"), ("Deny", "POST/*")],
}


def load_tokens() -> dict[str, tuple[str, str]]:
    """``{token: (customer, role)}`` from ``ORDERS_API_TOKENS``; a missing variable is a 500."""
    raw = os.environ.get(TOKENS_ENV)
    if raw is None:
        raise RuntimeError(f"{TOKENS_ENV} is not set")
    table: dict[str, tuple[str, str]] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        token, _, who = pair.partition("=")
        customer, _, role = who.partition(":")
        table[token] = (customer, role or "customer")
    return table


def lookup(token: str) -> tuple[str, str]:
    """The (customer, role) of ``token``, compared in constant time; else Unauthorized."""
    found: tuple[str, str] | None = None
    for known, who in load_tokens().items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = who
    if found is None or found[1] not in ROLES:
        raise Exception("Unauthorized")  # API Gateway's contract for 401
    return found


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """TOKEN authorizer: ``{"type": "TOKEN", "authorizationToken": ..., "methodArn": ...}``."""
    scheme, _, token = event.get("authorizationToken", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise Exception("Unauthorized")
    customer, role = lookup(token)
    # arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/METHOD/resource: the policy covers the
    # stage, so that API Gateway may cache it for every method of this caller.
    stage_arn = "/".join(event["methodArn"].split("/")[:2])
    statements = [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": f"{stage_arn}/{resource}"}
        for effect, resource in ROLES[role]
    ]
    return {
        "principalId": customer,
        "policyDocument": {"Version": "2012-10-17", "Statement": statements},
        "context": {"customerId": customer, "role": role},
    }

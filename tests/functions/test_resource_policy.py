"""API Gateway resource policies: evaluation, the authorization-workflow tables, the deny replies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastgw.authorizers.resource_policy import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    ResourcePolicy,
    combine,
    resource_policy_deny_reply,
)

REGION = "us-east-1"
ACCOUNT = "111111111111"
PREFIX = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api123"
ARN = f"{PREFIX}/prod/GET/pets/1"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = "arn:aws:iam::222222222222:user/bob"


def _policy(*statements: dict[str, Any]) -> ResourcePolicy:
    return ResourcePolicy({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(**extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": f"{PREFIX}/*",
        **extra,
    }


def _deny(**extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": f"{PREFIX}/*",
        **extra,
    }


# ------------------------------------------------------------------------------- source IP


def test_ipv4_cidr_allow() -> None:
    policy = _policy(_allow(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "198.51.100.0/24"]}}))
    assert policy.evaluate(ARN, "192.0.2.7", None) == ALLOW
    assert policy.evaluate(ARN, "198.51.100.255", None) == ALLOW
    assert policy.evaluate(ARN, "203.0.113.1", None) == IMPLICIT_DENY
    assert policy.evaluate(ARN, "::ffff:192.0.2.9", None) == ALLOW  # IPv4-mapped IPv6 peer
    assert policy.evaluate(ARN, "not-an-ip", None) == IMPLICIT_DENY


def test_ipv6_cidr_and_single_address() -> None:
    policy = _policy(_allow(Condition={"IpAddress": {"aws:SourceIp": ["2001:db8::/32", "203.0.113.5"]}}))
    assert policy.evaluate(ARN, "2001:db8:1::1", None) == ALLOW
    assert policy.evaluate(ARN, "2001:db9::1", None) == IMPLICIT_DENY
    assert policy.evaluate(ARN, "203.0.113.5", None) == ALLOW
    assert policy.evaluate(ARN, "203.0.113.6", None) == IMPLICIT_DENY


def test_not_ip_address_deny_with_allow_all() -> None:
    policy = _policy(_allow(), _deny(Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert policy.evaluate(ARN, "10.1.2.3", None) == ALLOW
    assert policy.evaluate(ARN, "192.0.2.1", None) == EXPLICIT_DENY
    assert policy.evaluate(ARN, "garbage", None) == EXPLICIT_DENY  # unknown source: deny applies


def test_explicit_deny_wins() -> None:
    policy = _policy(_allow(), _deny(Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    assert policy.evaluate(ARN, "192.0.2.1", None) == EXPLICIT_DENY
    assert policy.evaluate(ARN, "198.51.100.1", None) == ALLOW


# ------------------------------------------------------------------------ resources, actions


def test_resource_wildcards_and_not_resource() -> None:
    policy = _policy(
        _allow(Resource=f"{PREFIX}/prod/GET/*"),
        _deny(Resource=[f"{PREFIX}/*/*/admin", f"{PREFIX}/*/*/admin/*"]),
    )
    assert policy.evaluate(ARN, "192.0.2.1", None) == ALLOW
    assert policy.evaluate(f"{PREFIX}/prod/POST/pets", "192.0.2.1", None) == IMPLICIT_DENY
    assert policy.evaluate(f"{PREFIX}/prod/GET/admin/x", "192.0.2.1", None) == EXPLICIT_DENY
    not_resource = _allow(NotResource=f"{PREFIX}/*/DELETE/*")
    del not_resource["Resource"]
    policy = _policy(not_resource)
    assert policy.evaluate(ARN, "192.0.2.1", None) == ALLOW
    assert policy.evaluate(f"{PREFIX}/prod/DELETE/pets/1", "192.0.2.1", None) == IMPLICIT_DENY


def test_abbreviated_resource() -> None:
    policy = _policy(_allow(Resource="execute-api:/prod/GET/pets/*"))
    assert policy.evaluate(ARN, "192.0.2.1", None) == ALLOW
    assert policy.evaluate(f"{PREFIX}/test/GET/pets/1", "192.0.2.1", None) == IMPLICIT_DENY


def test_actions() -> None:
    assert _policy(_allow(Action="execute-api:*")).evaluate(ARN, "192.0.2.1", None) == ALLOW
    assert _policy(_allow(Action="*")).evaluate(ARN, "192.0.2.1", None) == ALLOW
    assert _policy(_allow(Action="EXECUTE-API:invoke")).evaluate(ARN, "192.0.2.1", None) == ALLOW
    other = _policy(_allow(Action="execute-api:ManageConnections"))
    assert other.evaluate(ARN, "192.0.2.1", None) == IMPLICIT_DENY
    not_action = _allow(NotAction="execute-api:ManageConnections")
    del not_action["Action"]
    assert _policy(not_action).evaluate(ARN, "192.0.2.1", None) == ALLOW


# ------------------------------------------------------------------------------- principals


def test_principal_matching() -> None:
    by_arn = _policy(_allow(Principal={"AWS": [ALICE]}))
    assert by_arn.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    assert by_arn.evaluate(ARN, "192.0.2.1", BOB) == IMPLICIT_DENY
    assert by_arn.evaluate(ARN, "192.0.2.1", None) == IMPLICIT_DENY  # anonymous
    by_account = _policy(_allow(Principal={"AWS": "222222222222"}))
    assert by_account.evaluate(ARN, "192.0.2.1", BOB) == ALLOW
    assert by_account.evaluate(ARN, "192.0.2.1", ALICE) == IMPLICIT_DENY
    by_root = _policy(_allow(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    assert by_root.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    anyone = _policy(_allow(Principal={"AWS": "*"}))
    assert anyone.evaluate(ARN, "192.0.2.1", None) == ALLOW


def test_principal_arn_conditions() -> None:
    policy = _policy(_allow(Condition={"StringEquals": {"aws:PrincipalArn": ALICE}}))
    assert policy.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    assert policy.evaluate(ARN, "192.0.2.1", BOB) == IMPLICIT_DENY
    assert policy.evaluate(ARN, "192.0.2.1", None) == IMPLICIT_DENY  # key missing: false
    like = _policy(_allow(Condition={"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/a*"}}))
    assert like.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    assert like.evaluate(ARN, "192.0.2.1", BOB) == IMPLICIT_DENY
    # Negated operator with the key missing (anonymous) is true: the deny applies.
    deny = _policy(_allow(), _deny(Condition={"StringNotEquals": {"aws:PrincipalAccount": ACCOUNT}}))
    assert deny.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    assert deny.evaluate(ARN, "192.0.2.1", BOB) == EXPLICIT_DENY
    assert deny.evaluate(ARN, "192.0.2.1", None) == EXPLICIT_DENY
    arn_like = _policy(_allow(Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::222222222222:*"}}))
    assert arn_like.evaluate(ARN, "192.0.2.1", BOB) == ALLOW


def test_several_conditions_are_anded() -> None:
    policy = _policy(
        _allow(
            Condition={
                "IpAddress": {"aws:SourceIp": "192.0.2.0/24"},
                "StringEquals": {"aws:PrincipalArn": ALICE},
            }
        )
    )
    assert policy.evaluate(ARN, "192.0.2.1", ALICE) == ALLOW
    assert policy.evaluate(ARN, "198.51.100.1", ALICE) == IMPLICIT_DENY
    assert policy.evaluate(ARN, "192.0.2.1", BOB) == IMPLICIT_DENY


# ----------------------------------------------------------------------------- bad policies


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object"),
        ({"Version": "2000-01-01", "Statement": []}, "Version"),
        ({"Version": "2012-10-17", "Statement": []}, "non-empty"),
        ({"Version": "2012-10-17", "Statement": [_allow(Effect="Maybe")]}, "Effect"),
        (
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
            "Principal",
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [_allow(Condition={"StringEquals": {"aws:SourceVpce": "v"}})],
            },
            "condition key 'aws:SourceVpce' is not supported",
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [_allow(Condition={"DateLessThan": {"aws:CurrentTime": "x"}})],
            },
            "condition operator 'DateLessThan' is not supported",
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [_allow(Condition={"IpAddress": {"aws:SourceIp": "1.2.3.300"}})],
            },
            "aws:SourceIp",
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [_allow(Condition={"StringEquals": {"aws:SourceIp": "1.2.3.4"}})],
            },
            "IpAddress / NotIpAddress",
        ),
        ({"Version": "2012-10-17", "Statement": [_allow(Principal={"Service": "x"})]}, "only AWS"),
        ({"Version": "2012-10-17", "Statement": [_allow(Principal={"AWS": "bob"})]}, "not an account id"),
        ({"Version": "2012-10-17", "Statement": [_allow(NotPrincipal="*")]}, "unsupported element"),
        ({"Version": "2012-10-17", "Statement": [_allow(Resource=[])]}, "Resource"),
    ],
)
def test_bad_documents(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("/", "/")):
        ResourcePolicy(document)


# ---------------------------------------------------------------------------------- combine

A, N, D = ALLOW, IMPLICIT_DENY, EXPLICIT_DENY
T, X, F = True, None, False  # authorizer / IAM policy: Allow, neither, Deny

# Table A, "Account A calls API owned by account A": (IAM / authorizer, resource policy) -> allowed.
TABLE_A = [
    (T, A, True),
    (T, N, True),
    (T, D, False),
    (X, A, True),
    (X, N, False),
    (X, D, False),
    (F, A, False),
    (F, N, False),
    (F, D, False),
]
# Table B, "Account B calls API owned by account A".
TABLE_B = [
    (T, A, True),
    (T, N, False),
    (T, D, False),
    (X, A, False),
    (X, N, False),
    (X, D, False),
    (F, A, False),
    (F, N, False),
    (F, D, False),
]


@pytest.mark.parametrize(("auth", "policy", "expected"), TABLE_A)
@pytest.mark.parametrize("auth_type", ["AWS_IAM", "CUSTOM", "TOKEN", "REQUEST"])
def test_combine_table_a(auth_type: str, auth: bool | None, policy: str, expected: bool) -> None:
    assert combine(auth_type, policy, auth) is expected


@pytest.mark.parametrize(("auth", "policy", "expected"), TABLE_B)
def test_combine_table_b_cross_account_iam(auth: bool | None, policy: str, expected: bool) -> None:
    assert combine("AWS_IAM", policy, auth, same_account=False) is expected


@pytest.mark.parametrize(("policy", "expected"), [(A, True), (N, False), (D, False)])
def test_combine_resource_policy_only(policy: str, expected: bool) -> None:
    assert combine("NONE", policy, None) is expected


@pytest.mark.parametrize(
    ("auth", "policy", "expected"),
    [(T, A, True), (T, N, False), (T, D, False), (F, A, False), (X, A, False)],
)
def test_combine_cognito(auth: bool | None, policy: str, expected: bool) -> None:
    assert combine("COGNITO_USER_POOLS", policy, auth) is expected


def test_combine_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        combine("MAGIC", ALLOW, True)
    with pytest.raises(ValueError):
        combine("NONE", "maybe", True)


# ----------------------------------------------------------------------------------- replies


def test_deny_replies() -> None:
    reply = resource_policy_deny_reply(ARN, explicit=False)
    assert reply.status == 403
    assert b"x-amzn-ErrorType: AccessDeniedException\r\n" in reply.head
    assert json.loads(reply.body) == {
        "Message": "User: anonymous is not authorized to perform: execute-api:Invoke on resource: "
        "arn:aws:execute-api:us-east-1:********1111:api123/prod/GET/pets/1"
    }
    reply = resource_policy_deny_reply(ARN, explicit=True, user=ALICE)
    assert reply.body == (
        b'{"Message":"User: arn:aws:iam::111111111111:user/alice is not authorized to perform: '
        b"execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:********1111:api123/prod/GET/pets/1 "
        b'with an explicit deny"}'
    )

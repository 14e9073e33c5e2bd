"""The pure part of Lambda authorizers: identity sources, method ARNs, outputs, IAM policies, replies."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
import pytest

from fastgw.authorizers import lambda_auth as la
from fastgw.authorizers.lambda_auth import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    AuthorizerConfigError,
    IdentitySource,
    cache_key,
    compile_validation,
    decide,
    evaluate_policy,
    identity_values,
    method_arn,
    parse_identity_sources,
    parse_policy_output,
    parse_simple_output,
    token_valid,
)
from fastgw.config.compile import RouteRuntime, compile_config
from fastgw.config.model import GatewayConfig
from fastgw.pipeline.request import Request

REGION = "us-west-2"
ACCOUNT = "111122223333"
API_ID = "abc123"
PREFIX = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"


# ------------------------------------------------------------------------------------ helpers


def _routes(
    kind: str,
    stage: str = "prod",
    routes: tuple[str, ...] = ("GET /pets/{id}", "ANY /files/{path+}", "GET /"),
    region: str = REGION,
) -> dict[str, RouteRuntime]:
    cfg = msgspec.convert(
        {
            "gateway": {"aws": {"region": region, "account_id": ACCOUNT}},
            "apis": [
                {
                    "name": "pets",
                    "id": API_ID,
                    "kind": kind,
                    "stages": [{"name": stage, "variables": {"env": "blue", "empty": ""}}],
                    "routes": [{"route": r, "integration": {"type": "MOCK"}} for r in routes],
                }
            ],
        },
        GatewayConfig,
    )
    snapshot = compile_config(cfg)
    return {r.key: r for r in snapshot.stages[0].routes}


def _request(
    route: RouteRuntime,
    method: str,
    resource_path: str,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    path: str | None = None,
) -> Request:
    stage = route.stage.name
    if path is None:
        path = resource_path if stage == "$default" else f"/{stage}{resource_path}"
    return Request(
        route,
        method,
        path,
        resource_path,
        query,
        headers or [],
        b"",
        "203.0.113.7",
        "req-42",
        1_700_000_000_123,
        domain="api.example.com",
    )


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _st(effect: str, resource: Any, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource}


ARN_GET = f"{PREFIX}/prod/GET/pets/1"


# --------------------------------------------------------------------------- policy evaluation


def test_allow_exact_arn() -> None:
    doc = _policy(_st("Allow", ARN_GET))
    assert decide(doc, ARN_GET) == ALLOW
    assert evaluate_policy(doc, ARN_GET) is True


def test_deny_exact_arn_is_explicit() -> None:
    doc = _policy(_st("Deny", ARN_GET))
    assert decide(doc, ARN_GET) == EXPLICIT_DENY
    assert evaluate_policy(doc, ARN_GET) is False


def test_explicit_deny_overrides_allow_in_any_order() -> None:
    allow = _st("Allow", f"{PREFIX}/*")
    deny = _st("Deny", ARN_GET)
    assert decide(_policy(allow, deny), ARN_GET) == EXPLICIT_DENY
    assert decide(_policy(deny, allow), ARN_GET) == EXPLICIT_DENY
    # The Deny does not reach other methods: the Allow holds there.
    assert decide(_policy(allow, deny), f"{PREFIX}/prod/POST/pets/1") == ALLOW


def test_no_matching_statement_is_implicit_deny() -> None:
    doc = _policy(_st("Allow", f"{PREFIX}/prod/GET/pets/2"), _st("Deny", f"{PREFIX}/dev/*"))
    assert decide(doc, ARN_GET) == IMPLICIT_DENY
    assert evaluate_policy(doc, ARN_GET) is False
    assert decide(_policy(), ARN_GET) == IMPLICIT_DENY


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (f"{PREFIX}/*/GET/pets/1", ALLOW),  # any stage
        (f"{PREFIX}/prod/*/pets/1", ALLOW),  # any method
        (f"{PREFIX}/prod/GET/*", ALLOW),  # any path, '*' crosses '/'
        (f"{PREFIX}/prod/GET/pets/*", ALLOW),
        (f"{PREFIX}/*", ALLOW),
        (f"arn:aws:execute-api:{REGION}:{ACCOUNT}:*", ALLOW),  # any API
        (f"arn:aws:execute-api:*:{ACCOUNT}:{API_ID}/*", ALLOW),  # any region
        ("arn:aws:execute-api:*:*:*", ALLOW),  # "equivalent to *"
        ("*", ALLOW),
        (f"{PREFIX}/pr?d/GET/pets/?", ALLOW),  # '?' is one character
        (f"{PREFIX}/prod/G?T/pets/1", ALLOW),
        (f"{PREFIX}/prod/GET/pets/??", IMPLICIT_DENY),  # '?' is exactly one
        (f"{PREFIX}/prod/GET/pets", IMPLICIT_DENY),  # no implicit prefix match
        (f"{PREFIX}/prod/GET/pets/1/*", IMPLICIT_DENY),
        (f"{PREFIX}/prod/get/pets/1", IMPLICIT_DENY),  # ARNs are case-sensitive
        (f"{PREFIX}/dev/*", IMPLICIT_DENY),
        (f"{PREFIX}/*/POST/*", IMPLICIT_DENY),
        (f"{PREFIX}/prod/GET/pets/[1]", IMPLICIT_DENY),  # only * and ? are wildcards
        (f"{PREFIX}/prod/GET/pets/.", IMPLICIT_DENY),
    ],
)
def test_resource_wildcards(resource: str, expected: str) -> None:
    assert decide(_policy(_st("Allow", resource)), ARN_GET) == expected


def test_star_matches_a_deep_greedy_path() -> None:
    arn = f"{PREFIX}/prod/PUT/files/a/b/c.txt"
    assert decide(_policy(_st("Allow", f"{PREFIX}/prod/*/files/*")), arn) == ALLOW
    assert decide(_policy(_st("Allow", f"{PREFIX}/prod/PUT/files/*/c.txt")), arn) == ALLOW
    assert decide(_policy(_st("Allow", f"{PREFIX}/prod/PUT/files/*.jpg")), arn) == IMPLICIT_DENY


def test_resource_and_action_lists() -> None:
    doc = _policy(
        _st(
            "Allow",
            [f"{PREFIX}/prod/GET/pets/2", f"{PREFIX}/prod/GET/pets/1"],
            ["execute-api:InvalidateCache", "execute-api:Invoke"],
        )
    )
    assert decide(doc, ARN_GET) == ALLOW
    assert decide(doc, f"{PREFIX}/prod/GET/pets/3") == IMPLICIT_DENY


def test_action_list_without_invoke_does_not_apply() -> None:
    doc = _policy(_st("Allow", "*", ["execute-api:InvalidateCache", "execute-api:ManageConnections"]))
    assert decide(doc, ARN_GET) == IMPLICIT_DENY


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("execute-api:Invoke", ALLOW),
        ("execute-api:invoke", ALLOW),  # IAM actions are case-insensitive
        ("EXECUTE-API:INVOKE", ALLOW),
        ("Execute-Api:Invoke", ALLOW),
        ("execute-api:*", ALLOW),
        ("*", ALLOW),
        ("execute-api:Inv*", ALLOW),
        ("execute-api:Invok?", ALLOW),
        ("execute-api:InvalidateCache", IMPLICIT_DENY),
        ("execute-api:Invoke2", IMPLICIT_DENY),
        ("s3:GetObject", IMPLICIT_DENY),
        ("lambda:*", IMPLICIT_DENY),
    ],
)
def test_action_matching(action: str, expected: str) -> None:
    assert decide(_policy(_st("Allow", "*", action)), ARN_GET) == expected


def test_multiple_statements() -> None:
    doc = _policy(
        _st("Allow", f"{PREFIX}/prod/GET/pets/*"),
        _st("Allow", f"{PREFIX}/prod/POST/pets"),
        _st("Deny", f"{PREFIX}/prod/GET/pets/secret"),
    )
    assert decide(doc, ARN_GET) == ALLOW
    assert decide(doc, f"{PREFIX}/prod/POST/pets") == ALLOW
    assert decide(doc, f"{PREFIX}/prod/GET/pets/secret") == EXPLICIT_DENY
    assert decide(doc, f"{PREFIX}/prod/DELETE/pets/1") == IMPLICIT_DENY


def test_statement_as_a_single_object() -> None:
    doc = {"Version": "2012-10-17", "Statement": _st("Allow", ARN_GET)}
    assert decide(doc, ARN_GET) == ALLOW
    doc = {"Version": "2012-10-17", "Statement": _st("Deny", ARN_GET)}
    assert decide(doc, ARN_GET) == EXPLICIT_DENY


def test_the_2008_policy_version_is_accepted() -> None:
    assert decide({"Version": "2008-10-17", "Statement": [_st("Allow", "*")]}, ARN_GET) == ALLOW


def test_sid_and_principal_are_ignored() -> None:
    st = {**_st("Allow", ARN_GET), "Sid": "AllowPets", "Principal": "*"}
    assert decide({"Version": "2012-10-17", "Id": "p1", "Statement": [st]}, ARN_GET) == ALLOW


def test_not_resource() -> None:
    doc = _policy({"Effect": "Allow", "Action": "execute-api:Invoke", "NotResource": f"{PREFIX}/*/DELETE/*"})
    assert decide(doc, ARN_GET) == ALLOW
    assert decide(doc, f"{PREFIX}/prod/DELETE/pets/1") == IMPLICIT_DENY
    # Deny with NotResource: everything but the listed resources is denied.
    doc = _policy(
        _st("Allow", "*"),
        {"Effect": "Deny", "Action": "execute-api:Invoke", "NotResource": [f"{PREFIX}/prod/GET/*"]},
    )
    assert decide(doc, ARN_GET) == ALLOW
    assert decide(doc, f"{PREFIX}/prod/POST/pets") == EXPLICIT_DENY


def test_not_action() -> None:
    doc = _policy({"Effect": "Allow", "NotAction": "execute-api:InvalidateCache", "Resource": "*"})
    assert decide(doc, ARN_GET) == ALLOW
    doc = _policy({"Effect": "Allow", "NotAction": "execute-api:*", "Resource": "*"})
    assert decide(doc, ARN_GET) == IMPLICIT_DENY
    doc = _policy(_st("Allow", "*"), {"Effect": "Deny", "NotAction": "s3:*", "Resource": ARN_GET})
    assert decide(doc, ARN_GET) == EXPLICIT_DENY


def test_conditions_fail_closed() -> None:
    cond = {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}
    allow = {**_st("Allow", "*"), "Condition": cond}
    deny = {**_st("Deny", ARN_GET), "Condition": cond}
    assert decide(_policy(allow), ARN_GET) == IMPLICIT_DENY
    assert decide(_policy(_st("Allow", "*"), deny), ARN_GET) == EXPLICIT_DENY


@pytest.mark.parametrize(
    "doc",
    [
        None,
        "policy",
        [],
        {"Statement": [_st("Allow", "*")]},  # no Version
        {"Version": "2012-10-18", "Statement": [_st("Allow", "*")]},
        {"Version": 2012, "Statement": [_st("Allow", "*")]},
        {"Version": "2012-10-17"},  # no Statement
        {"Version": "2012-10-17", "Statement": "Allow"},
        {"Version": "2012-10-17", "Statement": None},
        {"Version": "2012-10-17", "Statement": ["Allow"]},
        {"version": "2012-10-17", "statement": [_st("Allow", "*")]},  # element names are case-sensitive
        _policy({"effect": "Allow", "action": "execute-api:Invoke", "resource": "*"}),
        _policy({"Action": "execute-api:Invoke", "Resource": "*"}),  # no Effect
        _policy(_st("allow", "*")),  # Effect values are case-sensitive
        _policy(_st("Allow|Deny", "*")),
        _policy({"Effect": "Allow", "Resource": "*"}),  # no Action
        _policy({"Effect": "Allow", "Action": "execute-api:Invoke"}),  # no Resource
        _policy({**_st("Allow", "*"), "NotAction": "s3:*"}),  # Action and NotAction
        _policy({**_st("Allow", "*"), "NotResource": "*"}),  # Resource and NotResource
        _policy(_st("Allow", 42)),
        _policy(_st("Allow", [])),
        _policy(_st("Allow", ["*", None])),
        _policy(_st("Allow", "*", {"execute-api": "Invoke"})),
        _policy({**_st("Allow", "*"), "Condition": "IpAddress"}),
    ],
)
def test_malformed_documents(doc: object) -> None:
    with pytest.raises(AuthorizerConfigError):
        decide(doc, ARN_GET)
    with pytest.raises(AuthorizerConfigError):
        evaluate_policy(doc, ARN_GET)


# The policies of "Control access for invoking an API" (IAM policy examples), copied as written.
DOC_PETS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["execute-api:Invoke"],
            "Resource": ["arn:aws:execute-api:us-east-1:account-id:api-id/*/GET/pets"],
        },
        {
            "Effect": "Deny",
            "Action": ["execute-api:Invoke"],
            "Resource": ["arn:aws:execute-api:us-east-1:account-id:api-id/*/POST/pets"],
        },
    ],
}
DOC_PET_A1B2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["execute-api:Invoke"],
            "Resource": ["arn:aws:execute-api:us-east-1:account-id:api-id/*/GET/pets/a1b2"],
        }
    ],
}
DOC_TEST_STAGE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["execute-api:Invoke", "execute-api:InvalidateCache"],
            "Resource": ["arn:aws:execute-api:*:*:*/test/*"],
        }
    ],
}
DOC_ARN = "arn:aws:execute-api:us-east-1:account-id:api-id"


def test_documented_example_view_pets_but_not_add() -> None:
    assert decide(DOC_PETS, f"{DOC_ARN}/prod/GET/pets") == ALLOW
    assert decide(DOC_PETS, f"{DOC_ARN}/test/GET/pets") == ALLOW
    assert decide(DOC_PETS, f"{DOC_ARN}/prod/POST/pets") == EXPLICIT_DENY
    assert decide(DOC_PETS, f"{DOC_ARN}/prod/GET/pets/1") == IMPLICIT_DENY


def test_documented_example_one_pet() -> None:
    assert decide(DOC_PET_A1B2, f"{DOC_ARN}/prod/GET/pets/a1b2") == ALLOW
    assert decide(DOC_PET_A1B2, f"{DOC_ARN}/prod/GET/pets/b2c3") == IMPLICIT_DENY


def test_documented_example_any_api_in_the_test_stage() -> None:
    assert decide(DOC_TEST_STAGE, "arn:aws:execute-api:eu-west-1:999999999999:xyz/test/DELETE/a/b") == ALLOW
    assert decide(DOC_TEST_STAGE, f"{DOC_ARN}/test/GET/") == ALLOW
    assert decide(DOC_TEST_STAGE, f"{DOC_ARN}/prod/GET/pets") == IMPLICIT_DENY


_RES = "arn:aws:execute-api:us-east-1:*:api-id"


@pytest.mark.parametrize(
    ("resource", "arn", "expected"),
    [
        # The resource expressions of the "Resource format" reference.
        ("arn:aws:execute-api:*:*:*", f"{DOC_ARN}/prod/GET/x", ALLOW),
        ("arn:aws:execute-api:us-east-1:*:*", f"{DOC_ARN}/prod/GET/x", ALLOW),
        ("arn:aws:execute-api:us-east-1:*:*", "arn:aws:execute-api:us-west-2:a:b/prod/GET/x", IMPLICIT_DENY),
        (f"{_RES}/*", f"{DOC_ARN}/dev/POST/", ALLOW),
        (f"{_RES}/*", "arn:aws:execute-api:us-east-1:a:other/dev/POST/", IMPLICIT_DENY),
        (f"{_RES}/test/*", f"{DOC_ARN}/test/PATCH/a", ALLOW),
        (f"{_RES}/test/*", f"{DOC_ARN}/prod/PATCH/a", IMPLICIT_DENY),
        (f"{_RES}/test/*/mydemoresource/*", f"{DOC_ARN}/test/PUT/mydemoresource/1", ALLOW),
        (f"{_RES}/test/*/mydemoresource/*", f"{DOC_ARN}/test/PUT/other/1", IMPLICIT_DENY),
        (f"{_RES}/test/GET/mydemoresource/*", f"{DOC_ARN}/test/GET/mydemoresource/a/b", ALLOW),
        (f"{_RES}/test/GET/mydemoresource/*", f"{DOC_ARN}/test/PUT/mydemoresource/a", IMPLICIT_DENY),
    ],
)
def test_documented_resource_expressions(resource: str, arn: str, expected: str) -> None:
    assert decide(_policy(_st("Allow", resource)), arn) == expected


def test_documented_output_example_deny_get_root_in_any_stage() -> None:
    # "Output from an API Gateway Lambda authorizer": block GET on the API in any stage (*).
    output = {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Deny",
                    "Resource": "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/",
                }
            ],
        },
    }
    decision = parse_policy_output(output)
    assert decision.principal_id == "user"
    assert decision.context == {}
    assert decision.usage_identifier_key is None
    arn = "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b"
    assert decision.decide(f"{arn}/prod/GET/") == EXPLICIT_DENY
    assert decision.decide(f"{arn}/test/GET/") == EXPLICIT_DENY
    assert decision.decide(f"{arn}/prod/GET/pets") == IMPLICIT_DENY
    assert decision.decide(f"{arn}/prod/POST/") == IMPLICIT_DENY


def test_documented_token_authorizer_allow_policy() -> None:
    # "Use API Gateway Lambda authorizers": the policy the TOKEN example returns for 'allow'.
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": "arn:aws:execute-api:us-east-1:123456789012:ivdtdhp7b5/ESTestInvoke-stage/GET/",
            }
        ],
    }
    arn = "arn:aws:execute-api:us-east-1:123456789012:ivdtdhp7b5/ESTestInvoke-stage/GET/"
    assert decide(doc, arn) == ALLOW
    assert decide(doc, arn + "pets") == IMPLICIT_DENY


# ------------------------------------------------------------------------------ output parsing


def test_documented_output_with_context_and_usage_key() -> None:
    # The example output of the developer guide (Effect chosen, placeholders filled in).
    output = {
        "principalId": "yyyyyyyy",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": f"{PREFIX}/prod/GET/pets/*",
                }
            ],
        },
        "context": {"stringKey": "value", "numberKey": "1", "booleanKey": "true"},
        "usageIdentifierKey": "key-0123456789",
    }
    decision = parse_policy_output(output)
    assert decision.principal_id == "yyyyyyyy"
    assert decision.policy is output["policyDocument"]
    assert decision.context == {"stringKey": "value", "numberKey": "1", "booleanKey": "true"}
    assert decision.usage_identifier_key == "key-0123456789"
    assert decision.decide(ARN_GET) == ALLOW
    assert decision.decide(f"{PREFIX}/prod/POST/pets/1") == IMPLICIT_DENY


def test_context_keeps_strings_numbers_and_booleans() -> None:
    output = {
        "principalId": "me",
        "policyDocument": _policy(_st("Allow", "*")),
        "context": {"stringKey": "stringval", "numberKey": 123, "floatKey": 1.5, "booleanKey": True},
    }
    decision = parse_policy_output(output)
    assert decision.context == {
        "stringKey": "stringval",
        "numberKey": 123,
        "floatKey": 1.5,
        "booleanKey": True,
    }
    # The decision owns a copy of the context.
    assert decision.context is not output["context"]


def test_missing_principal_id_fails_on_rest_apis() -> None:
    output = {"policyDocument": _policy(_st("Allow", "*"))}
    with pytest.raises(AuthorizerConfigError, match="principalId"):
        parse_policy_output(output)
    with pytest.raises(AuthorizerConfigError, match="principalId"):
        parse_policy_output({**output, "principalId": None})


def test_missing_principal_id_is_empty_on_http_apis() -> None:
    decision = parse_policy_output({"policyDocument": _policy(_st("Allow", "*"))}, "http")
    assert decision.principal_id == ""
    assert decision.decide(ARN_GET) == ALLOW


@pytest.mark.parametrize(("raw", "expected"), [("", ""), (42, "42"), (True, "true"), (False, "false")])
def test_scalar_principal_ids(raw: object, expected: str) -> None:
    assert parse_policy_output({"principalId": raw, "policyDocument": _policy()}).principal_id == expected


@pytest.mark.parametrize("raw", [{"id": 1}, ["a"]])
def test_non_scalar_principal_id_is_refused(raw: object) -> None:
    with pytest.raises(AuthorizerConfigError):
        parse_policy_output({"principalId": raw, "policyDocument": _policy()})


@pytest.mark.parametrize(
    "context",
    [{"arrayKey": ["value1", "value2"]}, {"mapKey": {"value1": "value2"}}, {"nullKey": None}],
)
def test_rest_context_values_must_be_scalars(context: dict[str, Any]) -> None:
    output = {"principalId": "me", "policyDocument": _policy(_st("Allow", "*")), "context": context}
    with pytest.raises(AuthorizerConfigError, match="context"):
        parse_policy_output(output)


def test_http_api_policy_context_may_hold_arrays_and_maps() -> None:
    # "Working with AWS Lambda authorizers for HTTP APIs", IAM policy example (format 2.0).
    context = {
        "stringKey": "value",
        "numberKey": 1,
        "booleanKey": True,
        "arrayKey": ["value1", "value2"],
        "mapKey": {"value1": "value2"},
    }
    output = {
        "principalId": "abcdef",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN_GET}],
        },
        "context": context,
    }
    decision = parse_policy_output(output, "http")
    assert decision.principal_id == "abcdef"
    assert decision.context == context
    assert decision.decide(ARN_GET) == EXPLICIT_DENY


@pytest.mark.parametrize(
    "output",
    [
        None,
        "Allow",
        [],
        {"principalId": "me"},  # no policyDocument
        {"principalId": "me", "policyDocument": None},
        {"principalId": "me", "policyDocument": {"Statement": []}},
        {"principalId": "me", "policyDocument": _policy(), "context": ["a"]},
        {"principalId": "me", "policyDocument": _policy(), "context": "a=b"},
        {"principalId": "me", "policyDocument": _policy(), "usageIdentifierKey": 12345},
        # Lambda proxy-style outputs are not authorizer outputs.
        {"statusCode": 401, "headers": {}, "body": "Unauthorized"},
    ],
)
def test_malformed_policy_outputs(output: object) -> None:
    with pytest.raises(AuthorizerConfigError):
        parse_policy_output(output)


def test_null_context_is_empty() -> None:
    decision = parse_policy_output({"principalId": "me", "policyDocument": _policy(), "context": None})
    assert decision.context == {}


def test_simple_response_documented_examples() -> None:
    context = {
        "stringKey": "value",
        "numberKey": 1,
        "booleanKey": True,
        "arrayKey": ["value1", "value2"],
        "mapKey": {"value1": "value2"},
    }
    assert parse_simple_output({"isAuthorized": True, "context": context}) == (True, context)
    assert parse_simple_output({"isAuthorized": False, "context": {"exampleKey": "exampleValue"}}) == (
        False,
        {"exampleKey": "exampleValue"},
    )
    assert parse_simple_output({"isAuthorized": True}) == (True, {})


@pytest.mark.parametrize(
    "output",
    [
        None,
        True,
        {},
        {"isAuthorized": "true"},
        {"isAuthorized": 1},
        {"isAuthorized": None},
        {"isauthorized": True},
        {"isAuthorized": True, "context": ["a"]},
        {"isAuthorized": True, "context": "x"},
    ],
)
def test_malformed_simple_responses(output: object) -> None:
    with pytest.raises(AuthorizerConfigError):
        parse_simple_output(output)


# ---------------------------------------------------------------------------- identity sources


def test_rest_token_source() -> None:
    assert parse_identity_sources("method.request.header.Authorization", "rest", "TOKEN") == [
        IdentitySource("header", "Authorization")
    ]


def test_rest_request_sources_comma_separated() -> None:
    spec = (
        "method.request.header.Auth, method.request.querystring.Name,stageVariables.env , context.requestId"
    )
    assert parse_identity_sources(spec, "rest", "REQUEST", ttl=300) == [
        IdentitySource("header", "Auth"),
        IdentitySource("querystring", "Name"),
        IdentitySource("stageVariables", "env"),
        IdentitySource("context", "requestId"),
    ]


def test_http_sources_as_a_list_or_a_string() -> None:
    expected = [
        IdentitySource("header", "Authorization"),
        IdentitySource("querystring", "q"),
        IdentitySource("stageVariables", "v"),
        IdentitySource("context", "routeKey"),
    ]
    spec = [
        "$request.header.Authorization",
        "$request.querystring.q",
        "$stageVariables.v",
        "$context.routeKey",
    ]
    assert parse_identity_sources(spec, "http", "REQUEST", ttl=300) == expected
    assert parse_identity_sources(",".join(spec), "http", "REQUEST", ttl=300) == expected


def test_empty_sources_only_without_caching() -> None:
    assert parse_identity_sources("", "rest", "REQUEST", ttl=0) == []
    assert parse_identity_sources([], "http", "REQUEST", ttl=0) == []
    with pytest.raises(ValueError, match="caching"):
        parse_identity_sources("", "rest", "REQUEST", ttl=300)
    with pytest.raises(ValueError, match="caching"):
        parse_identity_sources([], "http", "REQUEST", ttl=1)


@pytest.mark.parametrize(
    ("spec", "kind", "auth", "message"),
    [
        ("$request.header.Authorization", "rest", "REQUEST", "HTTP API syntax"),
        ("$context.requestId", "rest", "REQUEST", "HTTP API syntax"),
        ("method.request.header.Authorization", "http", "REQUEST", "REST API syntax"),
        (["stageVariables.v"], "http", "REQUEST", "REST API syntax"),
        ("route.request.header.Auth", "http", "REQUEST", "expected one of"),
        ("method.request.multivalueheader.Auth", "rest", "REQUEST", "expected one of"),
        ("Authorization", "rest", "TOKEN", "expected one of"),
        ("method.request.header.", "rest", "TOKEN", "header name"),
        ("method.request.header.Bad Header", "rest", "REQUEST", "header name"),
        ("method.request.querystring.", "rest", "REQUEST", "name"),
        ("$stageVariables.", "http", "REQUEST", "name"),
        ("context.nosuchvariable", "rest", "REQUEST", "context variable"),
        ("context.routeKey", "rest", "REQUEST", "context variable"),  # not a REST variable
        ("$context.resourcePath", "http", "REQUEST", "context variable"),  # not an HTTP API variable
        ("method.request.header.A,,method.request.header.B", "rest", "REQUEST", "empty entry"),
        (["$request.header.A", ""], "http", "REQUEST", "empty entry"),
        ("method.request.header.A,method.request.header.B", "rest", "TOKEN", "exactly one"),
        ("method.request.querystring.token", "rest", "TOKEN", "exactly one"),
        ("", "rest", "TOKEN", "exactly one"),
        ("$request.header.Authorization", "http", "TOKEN", "no TOKEN"),
        ("method.request.header.A", "websocket", "REQUEST", "'rest' and 'http'"),
        ("method.request.header.A", "rest", "JWT", "TOKEN or REQUEST"),
        ([42], "http", "REQUEST", "expected a string"),
    ],
)
def test_identity_source_errors(spec: Any, kind: str, auth: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_identity_sources(spec, kind, auth, ttl=300)


def test_identity_values_from_every_kind_of_source() -> None:
    route = _routes("rest")["GET /pets/{id}"]
    req = _request(
        route,
        "GET",
        "/pets/7",
        query="Name=a%20b&other=1",
        headers=[("authorization", "Bearer t0k3n"), ("Host", "api.example.com")],
    )
    sources = parse_identity_sources(
        "method.request.header.Authorization,method.request.querystring.Name,stageVariables.env,"
        "context.requestId,context.httpMethod,context.identity.sourceIp,context.stage,context.apiId,"
        "context.path,context.resourcePath,context.accountId,context.domainName,context.requestTimeEpoch",
        "rest",
        "REQUEST",
        ttl=300,
    )
    assert identity_values(sources, req) == [
        "Bearer t0k3n",
        "a b",
        "blue",
        "req-42",
        "GET",
        "203.0.113.7",
        "prod",
        API_ID,
        "/prod/pets/7",
        "/pets/{id}",
        ACCOUNT,
        "api.example.com",
        "1700000000123",
    ]


def test_identity_values_http_context() -> None:
    route = _routes("http", stage="$default")["GET /pets/{id}"]
    req = _request(route, "GET", "/pets/7")
    sources = parse_identity_sources(
        [
            "$context.routeKey",
            "$context.identity.sourceIp",
            "$context.sourceIp",
            "$context.stage",
            "$context.path",
        ],
        "http",
        "REQUEST",
    )
    assert identity_values(sources, req) == [
        "GET /pets/{id}",
        "203.0.113.7",
        "203.0.113.7",
        "$default",
        "/pets/7",
    ]


def test_no_sources_give_no_values() -> None:
    route = _routes("rest")["GET /pets/{id}"]
    assert identity_values([], _request(route, "GET", "/pets/1")) == []


@pytest.mark.parametrize(
    ("source", "query", "headers"),
    [
        (IdentitySource("header", "Authorization"), "", []),  # missing header
        (IdentitySource("header", "Authorization"), "", [("Authorization", "")]),  # empty header
        (IdentitySource("querystring", "token"), "other=1", []),  # missing parameter
        (IdentitySource("querystring", "token"), "token=", []),  # empty value
        (IdentitySource("querystring", "token"), "token", []),
        (IdentitySource("querystring", "Token"), "token=abc", []),  # names are case-sensitive
        (IdentitySource("stageVariables", "missing"), "", []),
        (IdentitySource("stageVariables", "empty"), "", []),
    ],
)
def test_missing_or_empty_identity_gives_none(
    source: IdentitySource, query: str, headers: list[tuple[str, str]]
) -> None:
    route = _routes("rest")["GET /pets/{id}"]
    req = _request(route, "GET", "/pets/1", query=query, headers=headers)
    present = IdentitySource("header", "X-Present")
    req.headers.append(("x-present", "yes"))
    assert identity_values([present], req) == ["yes"]
    assert identity_values([present, source], req) is None
    assert identity_values([source, present], req) is None


def test_header_names_are_case_insensitive() -> None:
    route = _routes("rest")["GET /pets/{id}"]
    req = _request(route, "GET", "/pets/1", headers=[("AUTHORIZATION", "tok")])
    sources = parse_identity_sources("method.request.header.authorization", "rest", "TOKEN")
    assert identity_values(sources, req) == ["tok"]


def test_repeated_query_parameter_rest_last_http_joined() -> None:
    source = [IdentitySource("querystring", "q")]
    rest = _routes("rest")["GET /pets/{id}"]
    http = _routes("http")["GET /pets/{id}"]
    assert identity_values(source, _request(rest, "GET", "/pets/1", query="q=a&q=b%2Cc")) == ["b,c"]
    assert identity_values(source, _request(http, "GET", "/pets/1", query="q=a&q=b")) == ["a,b"]


def test_query_names_and_values_are_percent_decoded_plus_kept() -> None:
    route = _routes("rest")["GET /pets/{id}"]
    req = _request(route, "GET", "/pets/1", query="my%20key=x+y%2Bz")
    assert identity_values([IdentitySource("querystring", "my key")], req) == ["x+y+z"]


# --------------------------------------------------------------------------------- method ARN


def test_method_arn_rest() -> None:
    routes = _routes("rest")
    assert method_arn(_request(routes["GET /pets/{id}"], "GET", "/pets/1")) == ARN_GET
    assert method_arn(_request(routes["GET /"], "GET", "/")) == f"{PREFIX}/prod/GET/"


def test_method_arn_rest_greedy_path_uses_the_actual_method_and_values() -> None:
    route = _routes("rest")["ANY /files/{path+}"]
    assert method_arn(_request(route, "POST", "/files/a/b/c.txt")) == f"{PREFIX}/prod/POST/files/a/b/c.txt"
    assert method_arn(_request(route, "DELETE", "/files/x")) == f"{PREFIX}/prod/DELETE/files/x"


def test_method_arn_http_api_named_stage() -> None:
    route = _routes("http", stage="dev")["GET /pets/{id}"]
    assert method_arn(_request(route, "GET", "/pets/9")) == f"{PREFIX}/dev/GET/pets/9"


def test_route_arn_http_api_default_stage_and_default_route() -> None:
    routes = _routes("http", stage="$default", routes=("GET /pets/{id}", "$default"))
    assert method_arn(_request(routes["GET /pets/{id}"], "GET", "/pets/9")) == f"{PREFIX}/$default/GET/pets/9"
    assert (
        method_arn(_request(routes["$default"], "PATCH", "/any/thing"))
        == f"{PREFIX}/$default/PATCH/any/thing"
    )
    assert method_arn(_request(routes["$default"], "GET", "/")) == f"{PREFIX}/$default/GET/"


def test_method_arn_partition_follows_the_region() -> None:
    route = _routes("rest", region="cn-north-1")["GET /pets/{id}"]
    assert method_arn(_request(route, "GET", "/pets/1")) == (
        f"arn:aws-cn:execute-api:cn-north-1:{ACCOUNT}:{API_ID}/prod/GET/pets/1"
    )


def test_method_arn_round_trips_through_a_policy_for_its_own_arn() -> None:
    route = _routes("rest")["ANY /files/{path+}"]
    arn = method_arn(_request(route, "PUT", "/files/a/b"))
    assert evaluate_policy(_policy(_st("Allow", arn)), arn) is True
    assert la.METHOD_ARN_MAX_BYTES == 1600


# ----------------------------------------------------------------------- token validation, cache


def test_token_validation_is_a_full_match() -> None:
    expr = r"Bearer [a-z0-9]+"
    assert token_valid("Bearer abc123", expr) is True
    assert token_valid("Bearer abc123 trailing", expr) is False
    assert token_valid("xBearer abc123", expr) is False
    assert token_valid("Bearer ABC", expr) is False
    assert token_valid("anything", None) is True
    assert token_valid("anything", "") is True


def test_validation_expression_is_compiled_once() -> None:
    assert compile_validation(r"^allow$") is compile_validation(r"^allow$")
    with pytest.raises(ValueError, match="not a valid regex"):
        compile_validation("(unclosed")


def _expected_key(parts: list[str], with_route: bool) -> str:
    h = hashlib.sha256()
    h.update(b"R" if with_route else b"N")
    h.update(len(parts).to_bytes(4, "big"))
    for p in parts:
        data = p.encode()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def test_cache_key_is_a_length_prefixed_sha256() -> None:
    assert cache_key(["tok", "x"], None) == _expected_key(["tok", "x"], False)
    assert cache_key(["tok"], "GET /pets") == _expected_key(["tok", "GET /pets"], True)
    assert re.fullmatch(r"[0-9a-f]{64}", cache_key(["secret-token"], None))
    assert "secret-token" not in cache_key(["secret-token"], None)


def test_cache_keys_do_not_collide() -> None:
    keys = {
        cache_key([], None),
        cache_key([""], None),
        cache_key(["a,b"], None),
        cache_key(["a", "b"], None),
        cache_key(["ab"], None),
        cache_key(["b", "a"], None),
        cache_key(["a"], "b"),
        cache_key(["a"], ""),
        cache_key([], "a"),
        cache_key(["a"], None),
    }
    assert len(keys) == 10
    assert cache_key(["a", "b"], "r") == cache_key(["a", "b"], "r")


# ------------------------------------------------------------------------------------- replies


def test_unauthorized_replies() -> None:
    assert la.UNAUTHORIZED.status == 401
    assert la.UNAUTHORIZED.body == b'{"message":"Unauthorized"}'
    assert la.UNAUTHORIZED.head == (
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
        b"x-amzn-ErrorType: UnauthorizedException\r\ncontent-length: 26\r\n"
    )
    assert la.UNAUTHORIZED_HTTP.body == b'{"message":"Unauthorized"}'
    assert la.UNAUTHORIZED_HTTP.head == (
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 26\r\n"
    )
    assert la.unauthorized_reply("rest") is la.UNAUTHORIZED
    assert la.unauthorized_reply("http") is la.UNAUTHORIZED_HTTP


def test_access_denied_replies() -> None:
    explicit = b'{"Message":"User is not authorized to access this resource with an explicit deny"}'
    implicit = b'{"Message":"User is not authorized to access this resource"}'
    assert la.ACCESS_DENIED_REST.body == explicit
    assert la.ACCESS_DENIED_REST.head == (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
        b"x-amzn-ErrorType: AccessDeniedException\r\ncontent-length: 82\r\n"
    )
    assert la.ACCESS_DENIED_REST_IMPLICIT.body == implicit
    assert la.ACCESS_DENIED_REST_IMPLICIT.head == (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
        b"x-amzn-ErrorType: AccessDeniedException\r\ncontent-length: 60\r\n"
    )
    assert la.FORBIDDEN_HTTP.body == b'{"message":"Forbidden"}'
    assert la.FORBIDDEN_HTTP.head == (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 23\r\n"
    )
    assert la.deny_reply("rest", explicit=True) is la.ACCESS_DENIED_REST
    assert la.deny_reply("rest", explicit=False) is la.ACCESS_DENIED_REST_IMPLICIT
    assert la.deny_reply("http", explicit=True) is la.FORBIDDEN_HTTP
    assert la.deny_reply("http", explicit=False) is la.FORBIDDEN_HTTP


def test_authorizer_error_replies() -> None:
    assert la.AUTHORIZER_CONFIGURATION_ERROR.body == b'{"message":null}'
    assert la.AUTHORIZER_CONFIGURATION_ERROR.head == (
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
        b"x-amzn-ErrorType: AuthorizerConfigurationException\r\ncontent-length: 16\r\n"
    )
    assert la.AUTHORIZER_FAILURE.body == b'{"message":null}'
    assert la.AUTHORIZER_FAILURE.head == (
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
        b"x-amzn-ErrorType: AuthorizerFailureException\r\ncontent-length: 16\r\n"
    )
    assert la.AUTHORIZER_ERROR_HTTP.body == b'{"message":"Internal Server Error"}'
    assert la.AUTHORIZER_ERROR_HTTP.head == (
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 35\r\n"
    )
    assert la.authorizer_error_reply("rest") is la.AUTHORIZER_CONFIGURATION_ERROR
    assert la.authorizer_error_reply("rest", failure=True) is la.AUTHORIZER_FAILURE
    assert la.authorizer_error_reply("http") is la.AUTHORIZER_ERROR_HTTP
    assert la.authorizer_error_reply("http", failure=True) is la.AUTHORIZER_ERROR_HTTP

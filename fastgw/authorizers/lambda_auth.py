"""The pure part of Lambda (custom) authorizers, as AWS API Gateway implements them.

Nothing here does I/O: the request pipeline invokes the function and keeps the decision cache;
this module parses the configuration (identity sources), reads identity values off a request,
builds the ARN the policy is evaluated against, parses the function's output, evaluates the IAM
policy it returned, and holds the gateway's replies (byte-exact AWS defaults).

The AWS developer guide is the specification; each function names the rule it implements:

* "Use API Gateway Lambda authorizers", "Input to an API Gateway Lambda authorizer" and
  "Output from an API Gateway Lambda authorizer" (REST APIs, TOKEN and REQUEST authorizers);
* "Control access to HTTP APIs with AWS Lambda authorizers" (HTTP APIs: identity sources,
  payload format 1.0 / 2.0, simple responses, caching);
* "Control access for invoking an API" (execute-api Action and Resource formats) and the
  "API Gateway ARN reference" (``execute-api`` ARNs of REST and HTTP APIs);
* "Gateway response types" (UNAUTHORIZED 401, ACCESS_DENIED 403, AUTHORIZER_FAILURE 500,
  AUTHORIZER_CONFIGURATION_ERROR 500) and the default bodies API Gateway sends for them.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastgw.server.replies import LocalReply, aws_error

if TYPE_CHECKING:
    from fastgw.pipeline.request import Request

__all__ = [
    "ACCESS_DENIED_REST",
    "ACCESS_DENIED_REST_IMPLICIT",
    "ALLOW",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_ERROR_HTTP",
    "AUTHORIZER_FAILURE",
    "EXPLICIT_DENY",
    "FORBIDDEN_HTTP",
    "IMPLICIT_DENY",
    "INVOKE_ACTION",
    "METHOD_ARN_MAX_BYTES",
    "UNAUTHORIZED",
    "UNAUTHORIZED_HTTP",
    "AuthorizerConfigError",
    "CompiledPolicy",
    "IdentitySource",
    "PolicyDecision",
    "authorizer_error_reply",
    "cache_key",
    "compile_policy",
    "compile_validation",
    "context_variables",
    "decide",
    "deny_reply",
    "evaluate_policy",
    "identity_values",
    "method_arn",
    "parse_identity_sources",
    "parse_policy_output",
    "parse_simple_output",
    "token_valid",
    "unauthorized_reply",
]


class AuthorizerConfigError(Exception):
    """The authorizer function's output is malformed: the client gets 500 AUTHORIZER_CONFIGURATION_ERROR.

    AWS: "If API Gateway can't invoke your Lambda authorizer, or your Lambda authorizer returns a
    response in an invalid format, clients receive a 500 Internal Server Error" (HTTP APIs); REST
    APIs log "Execution failed due to configuration error" and answer with x-amzn-ErrorType
    AuthorizerConfigurationException.
    """


# ------------------------------------------------------------------------------------ replies

_JSON = ("content-type", "application/json")

#: 401 UNAUTHORIZED (REST): a missing/empty identity source, a token failing
#: identityValidationExpression, or the function failing with the message "Unauthorized".
UNAUTHORIZED = aws_error(401, "Unauthorized", "UnauthorizedException", kind="UNAUTHORIZED")
#: 401 (HTTP APIs): same cases; HTTP APIs send no x-amzn-ErrorType header.
UNAUTHORIZED_HTTP = LocalReply(401, [_JSON], b'{"message":"Unauthorized"}')
#: 403 ACCESS_DENIED (REST), a matching Deny statement. AWS sends this body with a capital "M".
ACCESS_DENIED_REST = LocalReply(
    403,
    [_JSON, ("x-amzn-ErrorType", "AccessDeniedException")],
    b'{"Message":"User is not authorized to access this resource with an explicit deny"}',
    "ACCESS_DENIED",
    "User is not authorized to access this resource with an explicit deny",
)
#: 403 ACCESS_DENIED (REST), no statement allows the method ARN (implicit deny).
ACCESS_DENIED_REST_IMPLICIT = LocalReply(
    403,
    [_JSON, ("x-amzn-ErrorType", "AccessDeniedException")],
    b'{"Message":"User is not authorized to access this resource"}',
    "ACCESS_DENIED",
    "User is not authorized to access this resource",
)
#: 403 (HTTP APIs): isAuthorized false, or the returned policy does not allow the route ARN.
FORBIDDEN_HTTP = LocalReply(403, [_JSON], b'{"message":"Forbidden"}')
#: 500 AUTHORIZER_CONFIGURATION_ERROR (REST): the function failed (any error other than
#: "Unauthorized"), timed out, or returned an invalid output. The default gateway-response
#: template is {"message":$context.error.messageString}, and the message is null here.
AUTHORIZER_CONFIGURATION_ERROR = LocalReply(
    500,
    [_JSON, ("x-amzn-ErrorType", "AuthorizerConfigurationException")],
    b'{"message":null}',
    "AUTHORIZER_CONFIGURATION_ERROR",
)
#: 500 AUTHORIZER_FAILURE (REST): "a custom or Amazon Cognito authorizer failed to authenticate
#: the caller". Same body as AUTHORIZER_CONFIGURATION_ERROR.
AUTHORIZER_FAILURE = LocalReply(
    500,
    [_JSON, ("x-amzn-ErrorType", "AuthorizerFailureException")],
    b'{"message":null}',
    "AUTHORIZER_FAILURE",
)
#: 500 (HTTP APIs): the authorizer could not be invoked or returned an invalid response.
AUTHORIZER_ERROR_HTTP = LocalReply(500, [_JSON], b'{"message":"Internal Server Error"}')

#: The longest method ARN AWS evaluates; longer ones get 414 Request URI too long (AWS:
#: "For an authorization-enabled method ARN ... the maximum length is 1600 bytes").
METHOD_ARN_MAX_BYTES = 1600


def unauthorized_reply(api_kind: str) -> LocalReply:
    """The 401 reply (gateway response UNAUTHORIZED) of a REST or HTTP API."""
    return UNAUTHORIZED_HTTP if api_kind == "http" else UNAUTHORIZED


def deny_reply(api_kind: str, explicit: bool) -> LocalReply:
    """The 403 reply (gateway response ACCESS_DENIED) when the authorizer denies the request.

    REST APIs tell an explicit Deny ("... with an explicit deny") from a policy that allows
    nothing matching ("User is not authorized to access this resource"); HTTP APIs answer
    {"message":"Forbidden"} to both, and to a simple response with isAuthorized false.
    """
    if api_kind == "http":
        return FORBIDDEN_HTTP
    return ACCESS_DENIED_REST if explicit else ACCESS_DENIED_REST_IMPLICIT


def authorizer_error_reply(api_kind: str, failure: bool = False) -> LocalReply:
    """The 500 reply when the authorizer cannot give a decision.

    REST: AUTHORIZER_CONFIGURATION_ERROR (what AWS sends for a Lambda authorizer that throws
    anything but "Unauthorized", times out or returns an invalid output), or AUTHORIZER_FAILURE
    when ``failure``. HTTP APIs: 500 {"message":"Internal Server Error"}.
    """
    if api_kind == "http":
        return AUTHORIZER_ERROR_HTTP
    return AUTHORIZER_FAILURE if failure else AUTHORIZER_CONFIGURATION_ERROR


# --------------------------------------------------------------------------- identity sources

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PLAIN_NAME = re.compile(r"^[^\s,]+$")

# $context variables an identity source may name, per API kind (REST: the "$context Variables
# for data models, authorizers, mapping templates" reference; HTTP APIs: "Customizing HTTP API
# access logs"), limited to what a fastgw request knows.
_CONTEXT_COMMON = frozenset(
    {
        "accountId",
        "apiId",
        "domainName",
        "httpMethod",
        "identity.sourceIp",
        "path",
        "protocol",
        "requestId",
        "requestTimeEpoch",
        "stage",
        # Not an AWS variable: an alias of identity.sourceIp kept for convenience.
        "sourceIp",
    }
)
_CONTEXT_VARS: dict[str, frozenset[str]] = {
    "rest": _CONTEXT_COMMON | {"resourcePath"},
    "http": _CONTEXT_COMMON | {"routeKey"},
}

_REST_PREFIXES = (
    ("method.request.header.", "header"),
    ("method.request.querystring.", "querystring"),
    ("stageVariables.", "stageVariables"),
    ("context.", "context"),
)
_HTTP_PREFIXES = (
    ("$request.header.", "header"),
    ("$request.querystring.", "querystring"),
    ("$stageVariables.", "stageVariables"),
    ("$context.", "context"),
)


@dataclass(frozen=True, slots=True)
class IdentitySource:
    """One identity source: where a value comes from (kind) and its name."""

    kind: str  # "header" | "querystring" | "stageVariables" | "context"
    name: str


def context_variables(api_kind: str) -> frozenset[str]:
    """The $context variable names an identity source of this API kind may use."""
    return _CONTEXT_VARS[api_kind]


def _split_spec(spec: str | list[str]) -> list[str]:
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"identity source {item!r}: expected a string")
        for part in item.split(","):
            part = part.strip()
            if part:
                out.append(part)
            elif len(items) > 1 or item.strip():
                raise ValueError(f"identity source list {spec!r} has an empty entry")
    return out


def _parse_one(entry: str, api_kind: str) -> IdentitySource:
    prefixes, other, other_kind = (
        (_REST_PREFIXES, _HTTP_PREFIXES, "HTTP API")
        if api_kind == "rest"
        else (_HTTP_PREFIXES, _REST_PREFIXES, "REST API")
    )
    match = next(((k, entry[len(p) :]) for p, k in prefixes if entry.startswith(p)), None)
    if match is None:
        if any(entry.startswith(p) for p, _ in other):
            raise ValueError(
                f"identity source {entry!r} uses {other_kind} syntax; a {api_kind.upper()} API "
                f"expects {', '.join(p + 'NAME' for p, _ in prefixes)}"
            )
        raise ValueError(
            f"identity source {entry!r}: expected one of {', '.join(p + 'NAME' for p, _ in prefixes)}"
        )
    kind, name = match
    if kind == "header":
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"identity source {entry!r}: {name!r} is not a valid header name")
    elif not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"identity source {entry!r}: missing or invalid name")
    if kind == "context" and name not in _CONTEXT_VARS[api_kind]:
        raise ValueError(
            f"identity source {entry!r}: unsupported context variable {name!r} "
            f"(supported: {', '.join(sorted(_CONTEXT_VARS[api_kind]))})"
        )
    return IdentitySource(kind, name)


def parse_identity_sources(
    spec: str | list[str], api_kind: str, auth_type: str, *, ttl: int = 0
) -> list[IdentitySource]:
    """Parse an authorizer's ``identitySource`` as AWS validates it; raise ValueError otherwise.

    REST APIs (Authorizer.identitySource): "For a TOKEN ... authorizer, this is required and
    specifies the request header mapping expression for the custom header holding the
    authorization token" (``method.request.header.NAME``); "For the REQUEST authorizer, this is
    required when authorization caching is enabled. The value is a comma-separated string of one
    or more mapping expressions" (``method.request.header.NAME``,
    ``method.request.querystring.NAME``, ``stageVariables.NAME``, ``context.NAME``).

    HTTP APIs ("Identity sources"): selection expressions ``$request.header.NAME``,
    ``$request.querystring.NAME``, ``$context.NAME``, ``$stageVariables.NAME``; authorizers are
    REQUEST only (TOKEN is a REST type); "To enable caching, your authorizer must have at least
    one identity source". ``ttl`` is authorizerResultTtlInSeconds (0 disables caching).
    A string may list several sources separated by commas; a list may hold one per item.
    """
    if api_kind not in _CONTEXT_VARS:
        raise ValueError(f"Lambda authorizers here serve 'rest' and 'http' APIs, not {api_kind!r}")
    if auth_type not in ("TOKEN", "REQUEST"):
        raise ValueError(f"authorizer type {auth_type!r}: expected TOKEN or REQUEST")
    if auth_type == "TOKEN" and api_kind != "rest":
        raise ValueError("HTTP APIs have no TOKEN authorizers: use type REQUEST")
    sources = [_parse_one(entry, api_kind) for entry in _split_spec(spec)]
    if auth_type == "TOKEN":
        if len(sources) != 1 or sources[0].kind != "header":
            raise ValueError(
                "a TOKEN authorizer needs exactly one identity source, the token's header: "
                "'method.request.header.NAME'"
            )
    elif not sources and ttl > 0:
        raise ValueError(
            "a REQUEST authorizer with caching enabled (authorizerResultTtlInSeconds > 0) needs "
            "at least one identity source"
        )
    return sources


def _query_value(query: str, name: str, join_repeated: bool) -> str | None:
    found: list[str] = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if unquote(key) == name:
            found.append(unquote(value))
    if not found:
        return None
    return ",".join(found) if join_repeated else found[-1]


def _context_value(name: str, req: Request) -> str | None:
    route = req.route
    if name == "requestId":
        return req.request_id
    if name == "routeKey":
        return route.key
    if name == "httpMethod":
        return req.method
    if name in ("identity.sourceIp", "sourceIp"):
        return req.source_ip
    if name == "stage":
        return route.stage.name
    if name == "apiId":
        return route.api.id
    if name == "accountId":
        return route.api.account_id
    if name == "path":
        return req.path
    if name == "resourcePath":
        return route.template or None
    if name == "domainName":
        return req.domain
    if name == "protocol":
        return req.http_version
    if name == "requestTimeEpoch":
        return str(req.time_ms)
    return None


def identity_values(sources: list[IdentitySource], req: Request) -> list[str] | None:
    """The identity values of ``req``, in the order of ``sources``; None if one is missing or empty.

    AWS (REST): the sources are used "to perform runtime validation of the REQUEST authorizer by
    verifying all of the identity-related request parameters are present, not null and
    non-empty. Only when this is true does the authorizer invoke the authorizer Lambda
    function, otherwise, it returns a 401 Unauthorized response"; HTTP APIs: "If the client's
    request doesn't include the identity sources, API Gateway doesn't invoke your Lambda
    authorizer, and the client receives a 401 error". Header names are case-insensitive
    (repeated headers are joined with ','), query string names case-sensitive; a repeated query
    parameter gives its last value on REST APIs and the values joined with ',' on HTTP APIs (as
    their queryStringParameters). Query values are percent-decoded ('+' is kept).
    """
    values: list[str] = []
    join_repeated = req.route.api.kind == "http"
    for source in sources:
        kind = source.kind
        if kind == "header":
            value = req.header(source.name)
        elif kind == "querystring":
            value = _query_value(req.query, source.name, join_repeated)
        elif kind == "stageVariables":
            value = req.route.stage.variables.get(source.name)
        else:
            value = _context_value(source.name, req)
        if not value:
            return None
        values.append(value)
    return values


@functools.lru_cache(maxsize=256)
def compile_validation(expression: str) -> re.Pattern[str]:
    """Compile an identityValidationExpression once (ValueError if it is not a valid regex)."""
    try:
        return re.compile(expression)
    except re.error as ex:
        raise ValueError(f"identityValidationExpression {expression!r} is not a valid regex: {ex}") from None


def token_valid(token: str, expression: str | None) -> bool:
    """Whether a TOKEN authorizer's token passes identityValidationExpression.

    AWS: "API Gateway matches the token against this expression ... if the token doesn't match,
    API Gateway responds with 401 without invoking the function". The match is Java's
    ``String.matches``, i.e. the whole token. No expression accepts every token.
    """
    if not expression:
        return True
    return compile_validation(expression).fullmatch(token) is not None


def cache_key(values: list[str], route_key: str | None) -> str:
    """A stable key for the decision cache: SHA-256 hex of the length-prefixed identity values.

    AWS: "API Gateway uses the authorizer's identity sources as the cache key"; HTTP APIs share
    a cached decision across routes unless $context.routeKey is an identity source, which
    ``route_key`` (None: not part of the key) emulates for a REST policy cached per method.
    Values are hashed so that tokens are not kept in clear; each is prefixed by its length so
    that no two lists collide.
    """
    h = hashlib.sha256()
    h.update(b"R" if route_key is not None else b"N")
    parts = [*values, route_key] if route_key is not None else values
    h.update(len(parts).to_bytes(4, "big"))
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


# ------------------------------------------------------------------------------- method ARN


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def method_arn(req: Request) -> str:
    """The ARN a Lambda authorizer's policy is evaluated against (methodArn / routeArn).

    REST: ``arn:aws:execute-api:{region}:{accountId}:{apiId}/{stage}/{httpVerb}/[{resource}/
    [{child-resources}]]`` with the actual HTTP method and the path inside the stage with its
    actual values (the root is ``.../GET/``). HTTP APIs send the same form as ``routeArn``
    (the ARN reference's "HTTP API and REST API endpoint" form
    ``arn:partition:execute-api:region:account-id:api-id/stage/http-method/resource-path``),
    for the $default route too, with the stage written ``$default`` when it is the $default
    stage.
    """
    route = req.route
    memo_key = (route, req.method, req.resource_path)
    arn = _ARNS.get(memo_key)
    if arn is not None:
        return arn
    api = route.api
    path = req.resource_path or "/"
    if not path.startswith("/"):
        path = "/" + path
    arn = (
        f"arn:{_partition(api.region)}:execute-api:{api.region}:{api.account_id}:"
        f"{api.id}/{route.stage.name}/{req.method}{path}"
    )
    if len(_ARNS) >= 4096:
        _ARNS.clear()
    _ARNS[memo_key] = arn
    return arn


# (route, method, path) -> ARN. PERF: clients repeat the same paths; bounded, cleared when full.
_ARNS: dict[tuple[Any, str, str], str] = {}


# ---------------------------------------------------------------------------- policy documents

#: The action API Gateway authorizes ("execute-api:Invoke, used to invoke an API upon a client
#: request").
INVOKE_ACTION = "execute-api:Invoke"
ALLOW = "allow"
EXPLICIT_DENY = "explicit_deny"
IMPLICIT_DENY = "implicit_deny"

_VERSIONS = frozenset({"2012-10-17", "2008-10-17"})


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: '*' any run of characters (including '/' and ':'), '?' one character."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True, slots=True)
class _Statement:
    deny: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditional: bool

    def applies(self, arn: str, action: str = INVOKE_ACTION) -> bool:
        hit = any(p.fullmatch(action) for p in self.actions)
        if hit == self.not_action:
            return False
        hit = any(p.fullmatch(arn) for p in self.resources)
        return hit != self.not_resource


def _patterns(statement: dict[str, Any], key: str, ignore_case: bool) -> tuple[re.Pattern[str], ...]:
    value = statement[key]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise AuthorizerConfigError(
            f"policy statement {key}: expected a string or a non-empty list of strings"
        )
    return tuple(_glob(v, ignore_case) for v in items)


def _compile_statement(statement: object) -> _Statement:
    if not isinstance(statement, dict):
        raise AuthorizerConfigError("policy Statement entries must be objects")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise AuthorizerConfigError(f"policy statement Effect must be 'Allow' or 'Deny', got {effect!r}")
    if ("Action" in statement) == ("NotAction" in statement):
        raise AuthorizerConfigError("a policy statement needs exactly one of Action and NotAction")
    if ("Resource" in statement) == ("NotResource" in statement):
        raise AuthorizerConfigError("a policy statement needs exactly one of Resource and NotResource")
    not_action = "NotAction" in statement
    not_resource = "NotResource" in statement
    condition = statement.get("Condition")
    if condition is not None and not isinstance(condition, dict):
        raise AuthorizerConfigError("policy statement Condition must be an object")
    return _Statement(
        deny=effect == "Deny",
        # IAM: "The prefix and the action name are case insensitive".
        actions=_patterns(statement, "NotAction" if not_action else "Action", True),
        not_action=not_action,
        # ARNs are case-sensitive.
        resources=_patterns(statement, "NotResource" if not_resource else "Resource", False),
        not_resource=not_resource,
        conditional=bool(condition),
    )


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A validated policy document with its wildcards compiled, ready to decide many ARNs."""

    statements: tuple[_Statement, ...]

    def decide(self, arn: str, action: str = INVOKE_ACTION) -> str:
        """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for ``action`` on ``arn`` (see ``decide``)."""
        allowed = False
        for st in self.statements:
            if not st.applies(arn, action):
                continue
            if st.deny:
                return EXPLICIT_DENY
            if not st.conditional:
                allowed = True
        return ALLOW if allowed else IMPLICIT_DENY


def compile_policy(policy_document: object) -> CompiledPolicy:
    """Validate an authorizer's policyDocument; AuthorizerConfigError if AWS could not parse it.

    The document is IAM's grammar with its element names as IAM spells them (case-sensitive):
    ``Version`` ("2012-10-17" or "2008-10-17") and ``Statement`` (one object or a list), each
    statement with ``Effect`` ("Allow" | "Deny"), ``Action`` or ``NotAction`` and ``Resource``
    or ``NotResource`` (a string or a list of strings). ``Sid``, ``Principal`` and other
    elements are ignored. Conditions are not evaluated: a statement with a ``Condition`` never
    allows, but still denies (fail closed).
    """
    if not isinstance(policy_document, dict):
        raise AuthorizerConfigError("policyDocument must be an object")
    version = policy_document.get("Version")
    if version not in _VERSIONS:
        raise AuthorizerConfigError(f"policyDocument Version must be '2012-10-17', got {version!r}")
    if "Statement" not in policy_document:
        raise AuthorizerConfigError("policyDocument has no Statement")
    raw = policy_document["Statement"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise AuthorizerConfigError("policyDocument Statement must be an object or a list")
    return CompiledPolicy(tuple(_compile_statement(s) for s in raw))


def decide(policy_document: object, arn: str) -> str:
    """Evaluate an authorizer policy for ``arn``: ALLOW, EXPLICIT_DENY or IMPLICIT_DENY.

    IAM's evaluation logic, which API Gateway applies to the policy a Lambda authorizer returns:
    an explicit Deny in any statement that applies overrides everything; else an Allow that
    applies allows; else the request is implicitly denied. A statement applies when its
    Action matches ``execute-api:Invoke`` (``execute-api:*``, ``*`` and other wildcards;
    case-insensitive) or its NotAction does not, and its Resource matches ``arn`` (``*`` any
    run of characters including '/', ``?`` one character; "arn:aws:execute-api:*:*:*" is the
    same as "*") or its NotResource does not.
    """
    return compile_policy(policy_document).decide(arn)


def evaluate_policy(policy_document: object, arn: str) -> bool:
    """Whether the policy allows ``arn`` (``decide(...) == ALLOW``); AuthorizerConfigError if malformed."""
    return decide(policy_document, arn) == ALLOW


# ----------------------------------------------------------------------------- function output


@dataclass(slots=True)
class PolicyDecision:
    """A parsed policy output: principalId, policyDocument, context, usageIdentifierKey."""

    principal_id: str
    policy: dict[str, Any]
    # REST: str / int / float / bool values; HTTP APIs also pass lists and objects through.
    context: dict[str, Any]
    usage_identifier_key: str | None
    compiled: CompiledPolicy = field(default=CompiledPolicy(()), repr=False, compare=False)

    def decide(self, arn: str) -> str:
        """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for ``arn`` under this policy."""
        return self.compiled.decide(arn)


def _scalar_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _context(result: dict[str, Any], nested_ok: bool) -> dict[str, Any]:
    context = result.get("context")
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise AuthorizerConfigError("the authorizer's context must be an object")
    if not nested_ok:
        for key, value in context.items():
            if not isinstance(value, str | int | float | bool):
                raise AuthorizerConfigError(
                    f"context[{key!r}]: values must be strings, numbers or booleans "
                    "(AWS: you cannot set a JSON object or array as a value in the context map)"
                )
    return dict(context)


def parse_policy_output(result: object, api_kind: str = "rest") -> PolicyDecision:
    """Parse an IAM-policy output (REST; HTTP APIs' format 1.0, and 2.0 without simple responses).

    AWS (REST): "A Lambda authorizer function's output is a dictionary-like object, which must
    include the principal identifier (principalId) and a policy document (policyDocument)";
    "The Lambda function returns an IAM policy and a principal identifier. If the Lambda
    function does not return that information, the call fails" (500 AuthorizerConfiguration
    error): a missing principalId raises AuthorizerConfigError on REST APIs. Scalars are taken
    as their string form (a JSON number or boolean principalId). "context" values must be
    strings, numbers or booleans ("you cannot set a JSON object or array as a valid value of
    any key in the context map"); HTTP APIs document arrays and maps in the context and no
    requirement on principalId (missing: ""). ``usageIdentifierKey`` (apiKeySource AUTHORIZER)
    must be a string if present.
    """
    if not isinstance(result, dict):
        raise AuthorizerConfigError("the authorizer output must be a JSON object")
    raw_principal = result.get("principalId")
    if raw_principal is None:
        if api_kind == "rest":
            raise AuthorizerConfigError("the authorizer output has no principalId")
        principal = ""
    else:
        principal = _scalar_str(raw_principal)
        if principal is None:
            raise AuthorizerConfigError("principalId must be a string")
    if "policyDocument" not in result:
        raise AuthorizerConfigError("the authorizer output has no policyDocument")
    document = result["policyDocument"]
    compiled = compile_policy(document)
    usage_key = result.get("usageIdentifierKey")
    if usage_key is not None and not isinstance(usage_key, str):
        raise AuthorizerConfigError("usageIdentifierKey must be a string")
    return PolicyDecision(
        principal_id=principal,
        policy=document,
        context=_context(result, nested_ok=api_kind == "http"),
        usage_identifier_key=usage_key,
        compiled=compiled,
    )


def parse_simple_output(result: object) -> tuple[bool, dict[str, Any]]:
    """Parse a simple response (HTTP APIs, format 2.0, enableSimpleResponses): (isAuthorized, context).

    AWS: ``{"isAuthorized": true/false, "context": {...}}``; "The context object is optional"
    and may hold strings, numbers, booleans, arrays and maps (the documented example). A
    missing or non-boolean isAuthorized, or a context that is not an object, is an invalid
    response (AuthorizerConfigError, 500).
    """
    if not isinstance(result, dict):
        raise AuthorizerConfigError("the authorizer output must be a JSON object")
    authorized = result.get("isAuthorized")
    if not isinstance(authorized, bool):
        raise AuthorizerConfigError("a simple response needs a boolean isAuthorized")
    return authorized, _context(result, nested_ok=True)

"""API Gateway resource policies: evaluation, and how they combine with the route's authorization.

The AWS developer guide is the specification:

* "Control access to a REST API with API Gateway resource policies", "Access policy language
  overview for Amazon API Gateway" and "API Gateway resource policy examples" (IAM grammar;
  ``execute-api:Invoke``; ``Principal`` ``"*"`` or ``{"AWS": [...]}``; ``aws:SourceIp``
  conditions with ``IpAddress`` / ``NotIpAddress``; the abbreviated resource form
  ``execute-api:/stage/METHOD/path`` that API Gateway expands to the API's full ARN);
* "How API Gateway resource policies affect authorization workflow" (``combine``);
* IAM User Guide, "IAM JSON policy elements: Condition operators" (string, ARN and IP operators;
  a key missing from the request makes a positive operator false and a negated one true) and
  "Policy evaluation logic" (an explicit Deny wins; otherwise an Allow allows; otherwise the
  request is implicitly denied).

Only what fastgw can evaluate is accepted: any other condition operator or key (``aws:SourceVpc``,
``aws:SourceVpce``, ``...IfExists``, ``ForAnyValue:``...), ``NotPrincipal`` or a principal type
other than ``AWS`` raises ValueError when the policy is loaded; nothing is silently true.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastgw.authorizers.lambda_auth import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, INVOKE_ACTION
from fastgw.server.replies import LocalReply

__all__ = [
    "ALLOW",
    "EXPLICIT_DENY",
    "IMPLICIT_DENY",
    "ResourcePolicy",
    "combine",
    "resource_policy_deny_reply",
]

_VERSIONS = frozenset({"2012-10-17", "2008-10-17"})
_IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network
_IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: '*' any run of characters, '?' one character; everything else literal."""
    out = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _resource(pattern: str) -> re.Pattern[str]:
    """A Resource entry; ``execute-api:/stage/METHOD/path`` is this API's ARN abbreviated.

    AWS expands ``execute-api:/...`` to ``arn:aws:execute-api:region:account:api-id/...`` when the
    policy is saved; a policy here belongs to one API, so the prefix matches this API's ARN prefix.
    """
    if pattern.startswith("execute-api:/"):
        rest = _glob(pattern[len("execute-api:") :]).pattern
        return re.compile(r"arn:[^:]+:execute-api:[^:]+:[^:]+:[^/]+" + rest, re.DOTALL)
    return _glob(pattern)


def _strings(value: object, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError(f"{where}: expected a string or a non-empty list of strings")
    return list(items)


# ------------------------------------------------------------------------------- principals

_ARN_ACCOUNT = 4


def _principal_matcher(value: object, where: str) -> Callable[[str | None], bool]:
    """``"*"`` (anyone, anonymous included) or ``{"AWS": [...]}`` (ARNs, account ids, account roots)."""
    if value == "*":
        return lambda principal: True
    if not isinstance(value, dict) or not value:
        raise ValueError(f'{where}: Principal must be "*" or {{"AWS": [...]}}')
    unknown = set(value) - {"AWS"}
    if unknown:
        raise ValueError(f"{where}: Principal type(s) {sorted(unknown)} are not supported (only AWS)")
    entries = _strings(value["AWS"], f"{where}.AWS")
    if "*" in entries:
        return lambda principal: True
    arns: set[str] = set()
    accounts: set[str] = set()
    for entry in entries:
        if len(entry) == 12 and entry.isdigit():
            accounts.add(entry)
            continue
        parts = entry.split(":")
        if len(parts) < 6 or parts[0] != "arn" or parts[2] not in ("iam", "sts"):
            raise ValueError(f"{where}: principal {entry!r} is not an account id or an IAM ARN")
        if "*" in entry or "?" in entry:
            raise ValueError(f"{where}: principal {entry!r}: wildcards are not allowed in Principal ARNs")
        if parts[5] == "root":  # arn:aws:iam::ACCOUNT:root is the whole account
            accounts.add(parts[_ARN_ACCOUNT])
        else:
            arns.add(entry)

    def match(principal: str | None) -> bool:
        if principal is None:  # anonymous: only "*" matches
            return False
        if principal in arns:
            return True
        parts = principal.split(":")
        return len(parts) > _ARN_ACCOUNT and parts[_ARN_ACCOUNT] in accounts

    return match


# ------------------------------------------------------------------------------- conditions

_NEGATED = frozenset(
    {
        "NotIpAddress",
        "StringNotEquals",
        "StringNotLike",
        "StringNotEqualsIgnoreCase",
        "ArnNotEquals",
        "ArnNotLike",
    }
)
_IP_OPS = frozenset({"IpAddress", "NotIpAddress"})
_STRING_OPS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnNotEquals",
        "ArnLike",
        "ArnNotLike",
    }
)
# Condition keys fastgw knows for a request (lower-case, as IAM compares key names).
_KEYS = {"aws:sourceip": "ip", "aws:principalarn": "arn", "aws:principalaccount": "account"}


@dataclass(frozen=True, slots=True)
class _Condition:
    key: str  # "ip" | "arn" | "account"
    negated: bool
    networks: tuple[_IpNet, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    def holds(self, ip: _IpAddr | None, principal: str | None) -> bool:
        if self.key == "ip":
            if ip is None:
                hit = None
            else:
                hit = any(ip in net for net in self.networks if net.version == ip.version)
        else:
            value = principal
            if value is not None and self.key == "account":
                parts = value.split(":")
                value = parts[_ARN_ACCOUNT] if len(parts) > _ARN_ACCOUNT else None
            hit = None if value is None else any(p.fullmatch(value) for p in self.patterns)
        if hit is None:  # key missing from the request: positive operators false, negated true
            return self.negated
        return hit != self.negated


def _conditions(block: object, where: str) -> tuple[_Condition, ...]:
    if not isinstance(block, dict):
        raise ValueError(f"{where}: Condition must be an object")
    out: list[_Condition] = []
    for op, pairs in block.items():
        if op not in _IP_OPS and op not in _STRING_OPS:
            raise ValueError(
                f"{where}: condition operator {op!r} is not supported (supported: "
                f"{', '.join(sorted(_IP_OPS | _STRING_OPS))})"
            )
        if not isinstance(pairs, dict) or not pairs:
            raise ValueError(f"{where}.{op}: expected an object of condition keys")
        for raw_key, raw_values in pairs.items():
            kind = _KEYS.get(str(raw_key).lower())
            if kind is None:
                raise ValueError(
                    f"{where}.{op}: condition key {raw_key!r} is not supported "
                    "(supported: aws:SourceIp, aws:PrincipalArn, aws:PrincipalAccount)"
                )
            values = _strings(raw_values, f"{where}.{op}.{raw_key}")
            negated = op in _NEGATED
            if op in _IP_OPS:
                if kind != "ip":
                    raise ValueError(f"{where}.{op}: {raw_key} is not an IP address key")
                try:
                    nets = tuple(ipaddress.ip_network(v, strict=False) for v in values)
                except ValueError as ex:
                    raise ValueError(f"{where}.{op}.{raw_key}: {ex}") from None
                out.append(_Condition("ip", negated, networks=nets))
                continue
            if kind == "ip":
                raise ValueError(f"{where}.{op}: aws:SourceIp takes IpAddress / NotIpAddress")
            if op.startswith("Arn") and kind != "arn":
                raise ValueError(f"{where}.{op}: {raw_key} is not an ARN key")
            if op in ("StringEquals", "StringNotEquals"):
                patterns = tuple(re.compile(re.escape(v), re.DOTALL) for v in values)
            elif op.endswith("IgnoreCase"):
                patterns = tuple(re.compile(re.escape(v), re.DOTALL | re.IGNORECASE) for v in values)
            else:  # StringLike / ArnEquals / ArnLike (ARN operators accept wildcards)
                patterns = tuple(_glob(v) for v in values)
            out.append(_Condition(kind, negated, patterns=patterns))
    return tuple(out)


# ------------------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class _Statement:
    deny: bool
    principal: Callable[[str | None], bool]
    action_hit: bool  # whether the Action / NotAction element applies to execute-api:Invoke
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]

    def applies(self, arn: str, ip: _IpAddr | None, principal: str | None) -> bool:
        if not self.action_hit or not self.principal(principal):
            return False
        if any(p.fullmatch(arn) for p in self.resources) == self.not_resource:
            return False
        return all(c.holds(ip, principal) for c in self.conditions)


def _statement(raw: object, where: str) -> _Statement:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object")
    allowed = {"Sid", "Effect", "Principal", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    extra = set(raw) - allowed
    if extra:
        raise ValueError(f"{where}: unsupported element(s) {sorted(extra)}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise ValueError(f"{where}.Effect: expected 'Allow' or 'Deny', got {effect!r}")
    if "Principal" not in raw:
        raise ValueError(f"{where}: a resource policy statement needs a Principal")
    if ("Action" in raw) == ("NotAction" in raw):
        raise ValueError(f"{where}: needs exactly one of Action and NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise ValueError(f"{where}: needs exactly one of Resource and NotResource")
    not_action = "NotAction" in raw
    action_key = "NotAction" if not_action else "Action"
    actions = [_glob(a, ignore_case=True) for a in _strings(raw[action_key], f"{where}.{action_key}")]
    action_hit = any(p.fullmatch(INVOKE_ACTION) for p in actions) != not_action
    not_resource = "NotResource" in raw
    res_key = "NotResource" if not_resource else "Resource"
    resources = tuple(_resource(r) for r in _strings(raw[res_key], f"{where}.{res_key}"))
    condition = raw.get("Condition")
    return _Statement(
        deny=effect == "Deny",
        principal=_principal_matcher(raw["Principal"], f"{where}.Principal"),
        action_hit=action_hit,
        resources=resources,
        not_resource=not_resource,
        conditions=_conditions(condition, f"{where}.Condition") if condition is not None else (),
    )


class ResourcePolicy:
    """A compiled resource policy; ``evaluate(arn, source_ip, principal)`` gives ALLOW / EXPLICIT_DENY /
    IMPLICIT_DENY."""

    __slots__ = ("_ips", "statements")

    def __init__(self, document: dict[str, Any]) -> None:
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError as ex:
                raise ValueError(f"resource policy: not valid JSON: {ex}") from None
        if not isinstance(document, dict):
            raise ValueError("resource policy: expected a JSON object")
        version = document.get("Version")
        if version not in _VERSIONS:
            raise ValueError(f"resource policy: Version must be '2012-10-17', got {version!r}")
        raw = document.get("Statement")
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise ValueError("resource policy: Statement must be an object or a non-empty list")
        self.statements = tuple(_statement(s, f"resource policy: Statement[{i}]") for i, s in enumerate(raw))
        self._ips: dict[str, _IpAddr | None] = {}

    def _ip(self, source_ip: str) -> _IpAddr | None:
        ips = self._ips
        ip = ips.get(source_ip, False)
        if ip is False:
            try:
                parsed: _IpAddr | None = ipaddress.ip_address(source_ip)
            except ValueError:
                parsed = None
            if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
                parsed = parsed.ipv4_mapped
            if len(ips) >= 4096:
                ips.clear()
            ips[source_ip] = ip = parsed
        return ip  # type: ignore[return-value]

    def evaluate(self, arn: str, source_ip: str, principal: str | None) -> str:
        """Decide ``execute-api:Invoke`` on ``arn`` for a caller at ``source_ip``.

        ``principal`` is the caller's IAM ARN (AWS_IAM routes) or None (anonymous: only
        ``Principal: "*"`` statements apply to it). An explicit Deny wins; else an Allow allows;
        else IMPLICIT_DENY.
        """
        ip = self._ip(source_ip)
        allowed = False
        for st in self.statements:
            if st.applies(arn, ip, principal):
                if st.deny:
                    return EXPLICIT_DENY
                allowed = True
        return ALLOW if allowed else IMPLICIT_DENY


# ---------------------------------------------------------------------------------- combine

_LAMBDA = frozenset({"CUSTOM", "TOKEN", "REQUEST", "LAMBDA"})
_COGNITO = frozenset({"COGNITO_USER_POOLS", "JWT"})


def combine(
    auth_type: str, policy_result: str, auth_allowed: bool | None, *, same_account: bool = True
) -> bool:
    """Whether a request is let in, given the resource policy's result and the route's authorization.

    "How API Gateway resource policies affect authorization workflow" (API Gateway developer guide):

    * ``NONE`` (resource policy only): "Evaluation of the policy involves seeking an explicit allow
      ... An implicit denial or any explicit denial results in denying the caller."
    * Lambda authorizer (``CUSTOM`` / ``TOKEN`` / ``REQUEST``) and ``AWS_IAM``: Table A ("Account A
      calls API owned by account A"): any Deny (authorizer / IAM policy or resource policy) gives
      an explicit deny; otherwise an Allow from either side allows; neither: implicit deny. For
      the Lambda authorizer the pipeline also checks the resource policy for an explicit deny
      before calling the function ("two phases"). ``AWS_IAM`` with ``same_account`` False (the
      caller's account differs from the API owner's): Table B, "cross-account access requires
      that both the resource policy and the IAM policy ... explicitly grant access".
    * ``COGNITO_USER_POOLS`` (and ``JWT``): "If authentication is successful, the resource policy
      is evaluated independently, and an explicit allow is required. A deny or 'neither allow or
      deny' results in a deny."

    ``auth_allowed``: True when the authorizer / IAM policy allows, False when it explicitly
    denies, None when it neither allows nor denies (for Cognito: True = authenticated). Only
    call this when the API has a resource policy.
    """
    if policy_result not in (ALLOW, EXPLICIT_DENY, IMPLICIT_DENY):
        raise ValueError(f"unknown policy result {policy_result!r}")
    if auth_type == "NONE":
        return policy_result == ALLOW
    if auth_type in _COGNITO:
        return auth_allowed is True and policy_result == ALLOW
    if auth_type != "AWS_IAM" and auth_type not in _LAMBDA:
        raise ValueError(f"unknown authorization type {auth_type!r}")
    if policy_result == EXPLICIT_DENY or auth_allowed is False:
        return False  # Table A / B: any Deny is an explicit deny
    if auth_type == "AWS_IAM" and not same_account:
        return auth_allowed is True and policy_result == ALLOW  # Table B
    return auth_allowed is True or policy_result == ALLOW  # Table A


# ------------------------------------------------------------------------------------ reply


def _mask(arn: str) -> str:
    parts = arn.split(":", 5)
    if len(parts) == 6 and len(parts[4]) >= 4:
        parts[4] = "********" + parts[4][-4:]
        return ":".join(parts)
    return arn


def resource_policy_deny_reply(arn: str, explicit: bool, user: str | None = None) -> LocalReply:
    """403 AccessDeniedException when the resource policy (with the authorization) refuses the caller.

    Knowledge Center "How do I troubleshoot HTTP 403 errors from API Gateway?": "User: anonymous is
    not authorized to perform: execute-api:Invoke on resource: <api-resource-arn>" (the resource
    policy doesn't explicitly allow the caller) and "User: <user-arn> is not authorized to perform:
    execute-api:Invoke on resource: <api-resource-arn> with an explicit deny" (it explicitly
    denies). Observed bodies use the key "Message" and mask the account id in the resource ARN
    (``arn:aws:execute-api:us-west-2:********2543:vd2gh6uqw3/api/GET/``). ``user`` is the
    caller's IAM ARN on AWS_IAM routes, None (anonymous) otherwise.
    """
    message = (
        f"User: {user or 'anonymous'} is not authorized to perform: {INVOKE_ACTION} on resource: {_mask(arn)}"
        + (" with an explicit deny" if explicit else "")
    )
    body = json.dumps({"Message": message}, separators=(",", ":")).encode()
    return LocalReply(
        403,
        [("content-type", "application/json"), ("x-amzn-ErrorType", "AccessDeniedException")],
        body,
        "ACCESS_DENIED",
        message,
    )

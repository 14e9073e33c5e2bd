"""AWS API Gateway access logs: a stage's ``$context`` format string, compiled once, and its writer.

A stage's access log format is AWS's: literal text with ``$context.NAME`` variables, one line
per request ("Variables for access logging for API Gateway" for REST APIs, "Customize HTTP API
access logs" for HTTP APIs). ``compile_format`` parses it when the snapshot is built and rejects
what AWS would not log, or what cannot have a value in fastgw, with the variable and its offset:

- every name must be one that AWS documents for access logging for that kind of API;
- AWS WAF, Cognito identity pools, AWS Organizations, VPC endpoints and endpoint types do not
  exist here, so their variables are refused with the reason rather than printing ``-`` forever;
- mapping-template-only variables (``requestOverride.*``, ``responseOverride.*``), other roots
  (``$input``, ``$stageVariables``, ``$util``, ...) and VTL's ``${context.NAME}`` form are refused:
  AWS documents only ``$context.NAME`` for access logs;
- as AWS: the format must contain ``$context.requestId`` or ``$context.extendedRequestId``, and it
  must be one line (a newline only at its end), and an HTTP API's format is at most 3 KB.

``AccessLogFormat.render(get)`` is the per-request part: one ``%`` over the precompiled literals
with one ``get(name)`` per variable. Values are inserted as they are, as AWS does (no JSON or XML
escaping, so a JSON format stays JSON only for plain values); a missing or empty value prints
``-``; a CR or LF inside a value becomes the two characters ``\\r`` / ``\\n``, so one request is
always one line (and a JSON string stays valid). ``AccessLogWriter`` queues lines in memory and
a background thread appends them to the file (or stderr), so the event loop never does file I/O.
"""

from __future__ import annotations

import collections
import difflib
import logging
import re
import sys
import threading
from collections.abc import Callable
from typing import IO, Literal

import orjson

__all__ = [
    "PRESETS",
    "AccessLogFormat",
    "AccessLogFormatError",
    "AccessLogWriter",
    "compile_format",
    "preset",
]

log = logging.getLogger(__name__)

Kind = Literal["rest", "http", "websocket"]

# --------------------------------------------------------------------------------------------
# Presets: the examples the API Gateway console offers (CLF, JSON, XML, CSV), copied exactly from
# "Access logging for REST APIs" and "Configure logging for HTTP APIs" (current guide). NOTE(fastgw):
# the REST CLF has no space between "]" and the quote; that is AWS's string, kept as it is.
# --------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[Kind, str]] = {
    "clf": {
        "rest": "$context.identity.sourceIp $context.identity.caller $context.identity.user "
        '[$context.requestTime]"$context.httpMethod $context.resourcePath $context.protocol" '
        "$context.status $context.responseLength $context.requestId $context.extendedRequestId",
        "http": "$context.identity.sourceIp - - [$context.requestTime] "
        '"$context.httpMethod $context.routeKey $context.protocol" '
        "$context.status $context.responseLength $context.requestId $context.extendedRequestId",
    },
    "json": {
        "rest": '{ "requestId":"$context.requestId", "extendedRequestId":"$context.extendedRequestId",'
        '"ip": "$context.identity.sourceIp", "caller":"$context.identity.caller", '
        '"user":"$context.identity.user", "requestTime":"$context.requestTime", '
        '"httpMethod":"$context.httpMethod", "resourcePath":"$context.resourcePath", '
        '"status":"$context.status", "protocol":"$context.protocol", '
        '"responseLength":"$context.responseLength" }',
        "http": '{ "requestId":"$context.requestId", "ip": "$context.identity.sourceIp", '
        '"requestTime":"$context.requestTime", "httpMethod":"$context.httpMethod",'
        '"routeKey":"$context.routeKey", "status":"$context.status","protocol":"$context.protocol", '
        '"responseLength":"$context.responseLength", "extendedRequestId": "$context.extendedRequestId" }',
    },
    "xml": {
        "rest": '<request id="$context.requestId"> '
        "<extendedRequestId>$context.extendedRequestId</extendedRequestId> "
        "<ip>$context.identity.sourceIp</ip> <caller>$context.identity.caller</caller> "
        "<user>$context.identity.user</user> <requestTime>$context.requestTime</requestTime> "
        "<httpMethod>$context.httpMethod</httpMethod> <resourcePath>$context.resourcePath</resourcePath> "
        "<status>$context.status</status> <protocol>$context.protocol</protocol> "
        "<responseLength>$context.responseLength</responseLength> </request>",
        "http": '<request id="$context.requestId"> <ip>$context.identity.sourceIp</ip> '
        "<requestTime>$context.requestTime</requestTime> <httpMethod>$context.httpMethod</httpMethod> "
        "<routeKey>$context.routeKey</routeKey> <status>$context.status</status> "
        "<protocol>$context.protocol</protocol> <responseLength>$context.responseLength</responseLength> "
        "<extendedRequestId>$context.extendedRequestId</extendedRequestId> </request>",
    },
    "csv": {
        "rest": "$context.identity.sourceIp,$context.identity.caller,$context.identity.user,"
        "$context.requestTime,$context.httpMethod,$context.resourcePath,$context.protocol,"
        "$context.status,$context.responseLength,$context.requestId,$context.extendedRequestId",
        "http": "$context.identity.sourceIp,$context.requestTime,$context.httpMethod,$context.routeKey,"
        "$context.protocol,$context.status,$context.responseLength,$context.requestId,"
        "$context.extendedRequestId",
    },
}
# WebSocket stages: the console's examples for WebSocket APIs (events, not HTTP requests).
_WS_PRESETS = {
    "clf": "$context.identity.sourceIp $context.identity.caller $context.identity.user "
    '[$context.requestTime] "$context.eventType $context.routeKey $context.connectionId" '
    "$context.status $context.requestId",
    "json": '{ "requestId":"$context.requestId", "ip": "$context.identity.sourceIp", '
    '"caller":"$context.identity.caller", "user":"$context.identity.user", '
    '"requestTime":"$context.requestTime", "eventType":"$context.eventType", '
    '"routeKey":"$context.routeKey", "status":"$context.status", '
    '"connectionId":"$context.connectionId" }',
    "xml": '<request id="$context.requestId"> <ip>$context.identity.sourceIp</ip> '
    "<caller>$context.identity.caller</caller> <user>$context.identity.user</user> "
    "<requestTime>$context.requestTime</requestTime> <eventType>$context.eventType</eventType> "
    "<routeKey>$context.routeKey</routeKey> <status>$context.status</status> "
    "<connectionId>$context.connectionId</connectionId> </request>",
    "csv": "$context.identity.sourceIp,$context.identity.caller,$context.identity.user,"
    "$context.requestTime,$context.eventType,$context.routeKey,$context.connectionId,"
    "$context.status,$context.requestId",
}
for _name, _ws_format in _WS_PRESETS.items():
    PRESETS[_name]["websocket"] = _ws_format


def preset(name: str, kind: Kind) -> str:
    """AWS's console example ``name`` (clf, json, xml, csv; any case) for ``kind``."""
    try:
        return PRESETS[name.strip().lower()][kind]
    except KeyError:
        raise AccessLogFormatError(
            f"unknown access log preset {name!r}; presets: {', '.join(sorted(PRESETS))}", name=name
        ) from None


# --------------------------------------------------------------------------------------------
# The variables (names without "$context."): which kind of API documents each one.
# --------------------------------------------------------------------------------------------

_BOTH: frozenset[Kind] = frozenset(("rest", "http"))
_REST: frozenset[Kind] = frozenset(("rest",))
_HTTP: frozenset[Kind] = frozenset(("http",))

#: Documented access-log variables that fastgw provides, and the kinds of API that have them.
#: ``authorizer.claims.NAME`` and ``authorizer.PROPERTY`` (any one identifier) are patterns, below.
VARIABLES: dict[str, frozenset[Kind]] = {
    "accountId": _BOTH,
    "apiId": _BOTH,
    "authenticate.error": _REST,
    "authenticate.latency": _REST,
    "authenticate.status": _REST,
    "authorize.error": _REST,
    "authorize.latency": _REST,
    "authorize.status": _REST,
    # Reserved authorizer.* names are measured by the gateway; they also match authorizer.PROPERTY.
    "authorizer.error": _BOTH,
    "authorizer.integrationLatency": _BOTH,
    "authorizer.integrationStatus": _BOTH,
    "authorizer.latency": _BOTH,
    "authorizer.principalId": _BOTH,
    "authorizer.requestId": _BOTH,
    "authorizer.status": _BOTH,
    "customDomain.basePathMatched": _BOTH,
    "dataProcessed": _HTTP,
    "deploymentId": _REST,
    "domainName": _BOTH,
    "domainPrefix": _BOTH,
    "error.message": _BOTH,
    "error.messageString": _BOTH,
    "error.responseType": _BOTH,
    "error.validationErrorString": _REST,
    "extendedRequestId": _BOTH,
    "httpMethod": _BOTH,
    "identity.accountId": _BOTH,
    "identity.apiKey": _REST,
    "identity.apiKeyId": _REST,
    "identity.caller": _BOTH,
    "identity.clientCert.clientCertPem": _BOTH,
    "identity.clientCert.issuerDN": _BOTH,
    "identity.clientCert.serialNumber": _BOTH,
    "identity.clientCert.subjectDN": _BOTH,
    "identity.clientCert.validity.notAfter": _BOTH,
    "identity.clientCert.validity.notBefore": _BOTH,
    "identity.sourceIp": _BOTH,
    "identity.user": _BOTH,
    "identity.userAgent": _BOTH,
    "identity.userArn": _BOTH,
    "integration.error": _BOTH,
    "integration.integrationStatus": _BOTH,
    "integration.latency": _BOTH,
    "integration.requestId": _BOTH,
    "integration.status": _BOTH,
    "isCanaryRequest": _REST,
    "path": _BOTH,
    "protocol": _BOTH,
    "requestId": _BOTH,
    "requestTime": _BOTH,
    "requestTimeEpoch": _BOTH,
    "resourceId": _REST,
    "resourcePath": _REST,
    "responseLatency": _BOTH,
    "responseLength": _BOTH,
    "routeKey": _HTTP,
    "stage": _BOTH,
    "status": _BOTH,
    # REST APIs only (HTTP APIs have no X-Ray): the request's W3C trace id, "-" without one.
    "xrayTraceId": _REST,
}

#: Names AWS documents as equivalent: the format may use either, ``get`` is asked for the second.
ALIASES: dict[str, str] = {
    "awsEndpointRequestId": "integration.requestId",
    "integrationErrorMessage": "integration.error",
    "integrationLatency": "integration.latency",
    "integrationStatus": "integration.integrationStatus",
}
_ALIAS_KINDS: dict[str, frozenset[Kind]] = {
    "awsEndpointRequestId": _BOTH,
    "integrationErrorMessage": _BOTH,
    "integrationLatency": _BOTH,
    "integrationStatus": _BOTH,
}

_WAF = "AWS WAF variables do not apply to fastgw: no web ACL is associated with its stages"
_COGNITO_ID = (
    "Amazon Cognito identity pool (federated identity) variables do not apply to fastgw: "
    "its IAM authorization does not take Cognito credentials"
)

#: Documented variables that can have no value in fastgw, with the reason given to the user.
NOT_APPLICABLE: dict[str, str] = {
    "waf.error": _WAF,
    "waf.latency": _WAF,
    "waf.status": _WAF,
    "wafResponseCode": _WAF,
    "webaclArn": _WAF,
    "identity.cognitoAuthenticationProvider": _COGNITO_ID,
    "identity.cognitoAuthenticationType": _COGNITO_ID,
    "identity.cognitoIdentityId": _COGNITO_ID,
    "identity.cognitoIdentityPoolId": _COGNITO_ID,
    "identity.principalOrgId": "AWS Organizations do not exist in fastgw",
    "identity.vpcId": "private APIs behind VPC endpoints do not exist in fastgw",
    "identity.vpceId": "private APIs behind VPC endpoints do not exist in fastgw",
    "endpointType": "AWS endpoint types (EDGE, REGIONAL, PRIVATE) do not exist in fastgw",
    "awsEndpointRequestId2": "fastgw calls no AWS endpoint that returns an x-amz-id-2 header",
    "customDomain.routingRuleIdMatched": "fastgw's custom domains use base path mappings, not routing rules",
}

_WEBSOCKET = frozenset(("connectionId", "connectedAt", "eventType", "messageId", "messageDirection"))

#: The variables of WebSocket API access logs ("WebSocket API $context variables"): the
#: connection's and the event's, and those of HTTP requests that apply to events.
WEBSOCKET_VARIABLES: frozenset[str] = _WEBSOCKET | frozenset(
    (
        "apiId",
        "authenticate.error",
        "authenticate.latency",
        "authenticate.status",
        "authorize.error",
        "authorize.latency",
        "authorize.status",
        "authorizer.error",
        "authorizer.integrationLatency",
        "authorizer.integrationStatus",
        "authorizer.latency",
        "authorizer.principalId",
        "authorizer.requestId",
        "authorizer.status",
        "domainName",
        "error.message",
        "error.messageString",
        "error.responseType",
        "error.validationErrorString",
        "extendedRequestId",
        "identity.accountId",
        "identity.apiKey",
        "identity.apiKeyId",
        "identity.caller",
        "identity.sourceIp",
        "identity.user",
        "identity.userAgent",
        "identity.userArn",
        "integration.error",
        "integration.integrationStatus",
        "integration.latency",
        "integration.requestId",
        "integration.status",
        "requestId",
        "requestTime",
        "requestTimeEpoch",
        "routeKey",
        "stage",
        "status",
    )
)
_TEMPLATE_ONLY = ("requestOverride", "responseOverride")
_OTHER_ROOTS = ("input", "stageVariables", "util", "method", "integration", "request", "response")

_MAX_HTTP_FORMAT = 3 * 1024  # "Access log template size: 3 KB" (HTTP API quotas)

# A "$" that starts a variable reference: optional VTL brace, a root, then ".ident" segments.
# A trailing "." not followed by an identifier character stays literal ("... $context.status.").
_REF = re.compile(
    r"\$(?P<brace>\{)?(?P<root>context|" + "|".join(_OTHER_ROOTS) + r")\b"
    r"(?P<path>(?:\.[A-Za-z0-9_]+)*)"
)
_IDENT = re.compile(r"[A-Za-z0-9_]+")


class AccessLogFormatError(ValueError):
    """An access log format AWS would reject, or that names a variable fastgw cannot provide.

    ``name`` is the offending variable (``$context.waf.status``) or text, and ``position`` its
    0-based character offset in the format (None when the whole format is at fault), so the
    config loader can report it at the field's JSON path.
    """

    def __init__(self, message: str, *, name: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.position = position


# --------------------------------------------------------------------------------------------
# The compiled format.
# --------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    # $context.error.messageString: "the quoted value of $context.error.message". Quotes and
    # backslashes inside are escaped so that the documented use, an unquoted JSON value, parses.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    """A value that is not a non-empty str, as AWS prints it."""
    if type(value) is int:  # status, lengths, latencies: the common case after str
        return str(value)
    if value is None or value == "":
        return "-"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") or "-"
    return orjson.dumps(value, default=str).decode()


class AccessLogFormat:
    """A compiled access log format: literal parts and variable names, rendered in one pass."""

    __slots__ = ("_fmt", "_literals", "_quoted", "_slots", "kind", "names", "source")

    #: The format string as configured (a preset resolved to its text).
    source: str
    kind: Kind
    #: The names ``get`` is called with (canonical: see ``ALIASES``); what a caller must provide.
    names: frozenset[str]

    def __init__(
        self, source: str, kind: Kind, literals: list[str], slots: list[str], quoted: list[int]
    ) -> None:
        self.source = source
        self.kind = kind
        # PERF(fastgw): one "%" over literals with "%" escaped: the per-request work is one get
        # per variable, a str check per value and one C-level format (see render).
        fmt = [literals[0].replace("%", "%%")]
        for lit in literals[1:]:
            fmt.append("%s")
            fmt.append(lit.replace("%", "%%"))
        self._fmt = "".join(fmt)
        #: The literal text around the variables (len(slots) + 1 parts, unescaped).
        self._literals = tuple(literals)
        self._slots = tuple(slots)
        self._quoted = tuple(quoted)
        self.names = frozenset(slots)

    @property
    def slots(self) -> tuple[str, ...]:
        """The variable names in the order ``render_values`` takes their values."""
        return self._slots

    def render(self, get: Callable[[str], object | None]) -> str:
        """One log line (no newline): ``get(name)`` for each variable, ``-`` for None or empty."""
        return self.render_values(list(map(get, self._slots)))

    def render_values(self, values: list[object | None]) -> str:
        """One log line from the values of ``slots``, in order (the hot path's form: callers
        that precompile one getter per slot skip the lookups by name)."""
        vals = [v if type(v) is str and v else _text(v) for v in values]
        if self._quoted:
            for i in self._quoted:
                if vals[i] != "-":
                    vals[i] = _quote(vals[i])
        line = self._fmt % tuple(vals)
        # APPSEC(fastgw): the literals hold no CR/LF (compile_format refuses them), so any here
        # came from a value (a header, a claim, an error message): never let one split the line.
        if "\n" in line or "\r" in line:
            line = line.replace("\r", "\\r").replace("\n", "\\n")
        return line

    def __repr__(self) -> str:
        return f"AccessLogFormat({self.source!r}, kind={self.kind!r})"


def _all_names(kind: Kind) -> list[str]:
    if kind == "websocket":
        return sorted(WEBSOCKET_VARIABLES) + list(_ALIAS_KINDS) + ["authorizer.PROPERTY"]
    names = [n for n, kinds in VARIABLES.items() if kind in kinds]
    names += [n for n, kinds in _ALIAS_KINDS.items() if kind in kinds]
    names += ["authorizer.claims.NAME", "authorizer.PROPERTY"]
    return names


def _resolve(name: str, kind: Kind, at: int) -> str:
    """The name ``get`` is called with for ``$context.<name>``, or AccessLogFormatError."""
    var = "$context." + name
    where = f"at position {at}"
    if kind == "websocket":
        return _resolve_websocket(name, var, where, at)
    kinds = VARIABLES.get(name)
    if kinds is not None and kind in kinds:
        return name
    alias = ALIASES.get(name)
    if alias is not None and kind in _ALIAS_KINDS[name]:
        return alias
    if kinds is not None:
        other = "a REST" if kind == "http" else "an HTTP"
        hint = ""
        if name in ("resourcePath", "resourceId"):
            hint = "; HTTP APIs log the route as $context.routeKey"
        elif name == "routeKey":
            hint = "; REST APIs log the resource as $context.resourcePath"
        raise AccessLogFormatError(
            f"{var} ({where}) is {other} API access log variable, not available to {kind.upper()} APIs{hint}",
            name=var,
            position=at,
        )
    reason = NOT_APPLICABLE.get(name)
    head, _, rest = name.partition(".")
    if reason is None and head == "waf":
        reason = _WAF
    if reason is not None:
        raise AccessLogFormatError(f"{var} ({where}) is not supported: {reason}", name=var, position=at)
    if head in _TEMPLATE_ONLY:
        raise AccessLogFormatError(
            f"{var} ({where}) is a mapping template variable, not an access log one "
            "(overrides exist only inside integration templates)",
            name=var,
            position=at,
        )
    if head == "authorizer":
        if rest == "claims":
            raise AccessLogFormatError(
                f"{var} ({where}) is always null: name a claim, as $context.authorizer.claims.sub",
                name=var,
                position=at,
            )
        sub, _, claim = rest.partition(".")
        if sub == "claims" and claim and "." not in claim:
            return name  # a JWT / Cognito user pool claim
        if rest and "." not in rest:
            return name  # a key of the Lambda authorizer's context map
    if name in _WEBSOCKET:
        raise AccessLogFormatError(
            f"{var} ({where}) is a WebSocket API access log variable, not available to {kind.upper()} APIs",
            name=var,
            position=at,
        )
    close = difflib.get_close_matches(name, _all_names(kind), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join('$context.' + c for c in close)}?" if close else ""
    raise AccessLogFormatError(
        f"unknown access log variable {var} ({where}) for {kind.upper()} APIs{hint}",
        name=var,
        position=at,
    )


def _resolve_websocket(name: str, var: str, where: str, at: int) -> str:
    """``_resolve`` for a WebSocket stage's format."""
    if name in WEBSOCKET_VARIABLES:
        return name
    alias = ALIASES.get(name)
    if alias is not None:
        return alias
    head, _, rest = name.partition(".")
    if head == "authorizer" and rest and "." not in rest:
        return name  # a key of the $connect authorizer's context map
    reason = NOT_APPLICABLE.get(name) or (_WAF if head == "waf" else None)
    if reason is not None:
        raise AccessLogFormatError(f"{var} ({where}) is not supported: {reason}", name=var, position=at)
    if name in VARIABLES:
        raise AccessLogFormatError(
            f"{var} ({where}) is an HTTP request variable, not available to WebSocket API access logs",
            name=var,
            position=at,
        )
    close = difflib.get_close_matches(name, _all_names("websocket"), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join('$context.' + c for c in close)}?" if close else ""
    raise AccessLogFormatError(
        f"unknown access log variable {var} ({where}) for WEBSOCKET APIs{hint}",
        name=var,
        position=at,
    )


def compile_format(fmt: str, kind: Kind) -> AccessLogFormat:
    """Parse a stage's access log format once; ``fmt`` may also name a preset (clf, json, xml, csv).

    Raises AccessLogFormatError naming the first variable (and its offset) AWS would not log,
    or that fastgw cannot provide, or the rule the format breaks.
    """
    if kind not in ("rest", "http", "websocket"):
        raise AccessLogFormatError(f"access logs are for REST, HTTP and WebSocket APIs, not {kind!r}")
    if fmt.strip().lower() in PRESETS:
        fmt = preset(fmt, kind)
    # AWS: "Access Log format must be single line, new line character is allowed only at end".
    body = fmt[:-2] if fmt.endswith("\r\n") else fmt[:-1] if fmt.endswith("\n") else fmt
    for ch in ("\n", "\r"):
        at = body.find(ch)
        if at >= 0:
            raise AccessLogFormatError(
                f"an access log format must be a single line: line break at position {at} "
                "(AWS allows one only at the end)",
                name=repr(ch),
                position=at,
            )
    if not body.strip():
        raise AccessLogFormatError("an access log format must not be empty")
    if kind == "http" and len(body.encode("utf-8")) > _MAX_HTTP_FORMAT:
        raise AccessLogFormatError(
            f"an HTTP API access log format is at most 3 KB (AWS quota); this one is "
            f"{len(body.encode('utf-8'))} bytes"
        )
    literals: list[str] = []
    slots: list[str] = []
    quoted: list[int] = []
    seen_ids = False
    pos = 0
    for m in _REF.finditer(body):
        at = m.start()
        text = m.group(0)
        root, path = m.group("root"), m.group("path")
        if m.group("brace"):
            plain = f"${root}{path}"
            if body.startswith("}", m.end()):
                text += "}"
            raise AccessLogFormatError(
                f"{text} (at position {at}): the ${{...}} form is not an access log variable; write {plain}",
                name=text,
                position=at,
            )
        if root != "context":
            raise AccessLogFormatError(
                f"{text} (at position {at}): only $context variables can be used in access logs "
                f"(${root} exists only in mapping templates)",
                name=text,
                position=at,
            )
        if not path:
            raise AccessLogFormatError(
                f"$context (at position {at}) must name a variable, as $context.requestId",
                name="$context",
                position=at,
            )
        name = path[1:]
        get_name = _resolve(name, kind, at)
        if name in ("requestId", "extendedRequestId"):
            seen_ids = True
        if get_name == "error.messageString":
            get_name = "error.message"
            quoted.append(len(slots))
        literals.append(body[pos:at])
        slots.append(get_name)
        pos = m.end("path")  # a "}" after it, without "${", stays literal text
    literals.append(body[pos:])
    if not seen_ids:
        raise AccessLogFormatError(
            "an access log format must include $context.requestId or $context.extendedRequestId (AWS)"
        )
    return AccessLogFormat(body, kind, literals, slots, quoted)


# --------------------------------------------------------------------------------------------
# The writer.
# --------------------------------------------------------------------------------------------


class _Marker:
    """A queue entry that is not a line: reopen, flush (with its event), or close."""

    __slots__ = ("done", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.done = threading.Event()


class AccessLogWriter:
    """Appends access log lines to ``path`` (stderr when None) from a background thread.

    ``write`` is the only method the event loop calls per request: it appends to a deque (no
    lock) unless more than ``max_queued`` characters wait, in which case the line is dropped and
    counted in ``dropped``. The thread writes what is queued every ``flush_interval`` seconds, or
    as soon as ``flush_bytes`` characters wait (``write`` then sets an Event, once per batch).
    ``reopen()`` is logrotate's SIGUSR1: lines queued before it go to the old file, later ones to
    a file opened anew at ``path``. ``close()`` writes everything queued and stops the thread.
    Meant for one writing thread per process (the worker's event loop).
    """

    def __init__(
        self,
        path: str | None,
        *,
        flush_interval: float = 0.1,
        flush_bytes: int = 64 * 1024,
        max_queued: int = 4 * 1024 * 1024,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.max_queued = max_queued
        #: Lines dropped because the queue was full, or written after close().
        self.dropped = 0
        #: Failed batch writes or reopens (each one logged with its error; the thread carries on).
        self.errors = 0
        self._queue: collections.deque[str | _Marker] = collections.deque()
        # Characters queued / written so far: each counter has one writer thread, so no lock.
        self._in = 0
        self._out = 0
        self._closed = False
        self._wake = threading.Event()
        # Opened here so that a bad path fails at configuration, not in the thread.
        self._file: IO[bytes] | None = open(path, "ab") if path is not None else None
        self._thread = threading.Thread(target=self._run, name="fastgw-accesslog", daemon=True)
        self._thread.start()

    # -- called from the event loop ------------------------------------------------------------

    def write(self, line: str) -> None:
        """Queue one line (without its newline); drop it if the queue is full."""
        n = len(line) + 1
        pending = self._in - self._out
        if pending + n > self.max_queued or self._closed:
            self.dropped += 1
            return
        self._queue.append(line)
        self._in += n
        if pending + n >= self.flush_bytes and not self._wake.is_set():
            self._wake.set()

    def reopen(self) -> None:
        """Close and reopen ``path`` once the lines queued so far are written (logrotate)."""
        self._command("reopen", wait=None)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Block until the lines queued so far are written; False on timeout."""
        return self._command("flush", wait=timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Write everything queued, stop the thread and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True  # later writes are dropped (and counted)
        self._command("close", wait=timeout, closing=True)
        self._thread.join(timeout)

    def _command(self, what: str, wait: float | None, closing: bool = False) -> bool:
        if (self._closed and not closing) or not self._thread.is_alive():
            return True
        marker = _Marker(what)
        self._queue.append(marker)
        self._wake.set()
        if wait is None and what == "reopen":
            return True
        return marker.done.wait(wait)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[str] = []
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            queue = self._queue
            while True:
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                if type(item) is str:
                    batch.append(item)
                    continue
                assert isinstance(item, _Marker)
                self._emit(batch)
                batch = []
                if item.what == "reopen":
                    self._reopen()
                elif item.what == "close":
                    self._close_file()
                    item.done.set()
                    return
                item.done.set()
            self._emit(batch)
            batch = []

    def _emit(self, batch: list[str]) -> None:
        if not batch:
            return
        text = "\n".join(batch) + "\n"
        try:
            if self._file is not None:
                self._file.write(text.encode("utf-8", "backslashreplace"))
                self._file.flush()
            else:
                err = sys.stderr
                err.write(text)
                err.flush()
        except Exception as ex:  # the thread must outlive a full disk or a closed stderr
            self.errors += 1
            log.error("access log: cannot write %d lines to %s: %s", len(batch), self.path or "stderr", ex)
        self._out += len(text)

    def _reopen(self) -> None:
        if self.path is None:
            return
        try:
            new = open(self.path, "ab")
        except OSError as ex:
            self.errors += 1
            log.error("access log: cannot reopen %s (still writing the old file): %s", self.path, ex)
            return
        old, self._file = self._file, new
        if old is not None:
            old.close()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

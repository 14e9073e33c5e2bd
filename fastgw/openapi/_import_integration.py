"""``x-amazon-apigateway-integration`` objects into fastgw integrations.

AWS's integration types map one to one: ``mock`` -> MOCK (AWS's form: request templates and
integration responses), ``http_proxy`` -> HTTP_PROXY, ``http`` -> HTTP, ``aws_proxy`` ->
AWS_PROXY and ``aws`` -> AWS (Lambda functions only). What fastgw cannot honour is reported:
a warning when the route still works as the document means it in the essentials (an IAM role, a
VPC link in front of a reachable URL, a TLS setting), an error when it cannot be served at all
(an AWS service other than Lambda, a load balancer ARN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastgw.openapi._import_doc import Reader, child

TYPES = ("mock", "http", "http_proxy", "aws", "aws_proxy")

INTEGRATION_FIELDS = frozenset(
    {
        "type",
        "uri",
        "httpMethod",
        "requestParameters",
        "requestTemplates",
        "passthroughBehavior",
        "responses",
        "contentHandling",
        "cacheKeyParameters",
        "cacheNamespace",
        "timeoutInMillis",
        "payloadFormatVersion",
        "connectionType",
        "connectionId",
        "credentials",
        "integrationSubtype",
        "tlsConfig",
        "responseTransferMode",
        "parameterMapping",
        "responseParameters",
        "description",
    }
)
RESPONSE_FIELDS = frozenset({"statusCode", "responseParameters", "responseTemplates", "contentHandling"})
TLS_FIELDS = frozenset({"insecureSkipVerification", "serverNameToVerify"})

# arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations
LAMBDA_URI = re.compile(r"^arn:aws:apigateway:[^:]+:lambda:path/2015-03-31/functions/(.+)/invocations$")
# arn:aws:apigateway:REGION:SERVICE:... (an AWS service integration)
SERVICE_URI = re.compile(r"^arn:aws:apigateway:[^:]*:([^:]+):")
FUNCTION_ARN = re.compile(r"^arn:aws:lambda:[^:]+:[^:]+:function:([^:/]+)(?::[^:/]+)?$")
_STAGE_VAR = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.:/?\-+=&#~]+)\}")
_HTTP_MAPPING_KEY = re.compile(r"^(append|overwrite|remove):")
_PASSTHROUGH = ("WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER")
_CONTENT = ("CONVERT_TO_TEXT", "CONVERT_TO_BINARY")


@dataclass
class Context:
    """What converting one route's integration needs to know."""

    kind: str  # "rest" | "http"
    method: str | None  # the route's method (None: a reusable integration not used by any route)
    #: cacheNamespace -> integration paths using it (a namespace shared by several routes is the
    #: one case where AWS's cache differs from fastgw's per-route keys).
    namespaces: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Converted:
    """A fastgw integration mapping and the route fields the integration object carries."""

    integration: dict[str, Any]
    cache_key_parameters: list[str]


def function_name(uri: str, variables: dict[str, str]) -> str | None:
    """The Lambda function an AWS/AWS_PROXY/authorizer URI names (after stage variables), or None."""
    text = _STAGE_VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), uri)
    if "${" in text:
        return None
    m = LAMBDA_URI.match(text)
    if m:
        text = m.group(1)
    m = FUNCTION_ARN.match(text)
    if m:
        text = m.group(1)
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        return text
    return None


def check_lambda_uri(r: Reader, uri: str, path: str) -> bool:
    """Whether ``uri`` names a Lambda function (as fastgw resolves it); an error otherwise."""
    if LAMBDA_URI.match(uri) or uri.startswith("arn:aws:lambda:") or not uri.startswith("arn:"):
        return True
    m = SERVICE_URI.match(uri)
    service = m.group(1) if m else "?"
    r.error(
        path,
        f"AWS service integrations ({service}) are not supported: fastgw invokes Lambda-style "
        "functions only (bind them in the config's `functions`)",
    )
    return False


def _http_uri(r: Reader, uri: str, path: str) -> bool:
    """An endpoint fastgw's HTTP integrations can reach (http://, stage variables allowed)."""
    if uri.startswith("arn:"):
        r.error(
            path,
            f"{uri!r}: a load balancer or Cloud Map ARN is reached through a VPC link, which fastgw "
            "does not have; use the endpoint's http:// URL",
        )
        return False
    if not uri.lower().startswith(("http://", "https://")):
        r.error(path, f"{uri!r} is not an http:// or https:// URL")
        return False
    return True


def convert(node: Any, path: str, r: Reader, ctx: Context) -> Converted | None:
    """The fastgw integration of an ``x-amazon-apigateway-integration`` object (already
    dereferenced), or None after an error (recorded)."""
    obj = r.obj(node, path)
    if obj is None:
        return None
    before = sum(1 for p in r.problems if p.severity == "error")
    r.fields(obj, path, INTEGRATION_FIELDS, "x-amazon-apigateway-integration")

    def at(key: str) -> str:
        return child(path, key)

    kind = ctx.kind
    if "type" not in obj:
        r.error(path, "missing required field 'type'")
        itype = None
    else:
        itype = r.enum(obj["type"], at("type"), TYPES)
    uri = r.string(obj["uri"], at("uri")) if "uri" in obj else None
    http_method = r.string(obj["httpMethod"], at("httpMethod")) if "httpMethod" in obj else None
    timeout = (
        r.integer(obj["timeoutInMillis"], at("timeoutInMillis"), 50) if "timeoutInMillis" in obj else None
    )
    passthrough = (
        r.enum(obj["passthroughBehavior"], at("passthroughBehavior"), _PASSTHROUGH)
        if "passthroughBehavior" in obj
        else None
    )
    content = (
        r.enum(obj["contentHandling"], at("contentHandling"), _CONTENT) if "contentHandling" in obj else None
    )
    templates = (
        r.str_map(obj["requestTemplates"], at("requestTemplates")) if "requestTemplates" in obj else None
    )
    req_params = (
        r.str_map(obj["requestParameters"], at("requestParameters")) if "requestParameters" in obj else None
    )
    mapping = (
        r.str_map(obj["parameterMapping"], at("parameterMapping")) if "parameterMapping" in obj else None
    )
    version = (
        r.enum(obj["payloadFormatVersion"], at("payloadFormatVersion"), ("1.0", "2.0"))
        if ("payloadFormatVersion" in obj)
        else None
    )
    cache_keys = (
        r.str_list(obj["cacheKeyParameters"], at("cacheKeyParameters")) if "cacheKeyParameters" in obj else []
    )
    if "description" in obj:
        r.string(obj["description"], at("description"))

    # -- what bare metal does not have
    if "credentials" in obj and r.string(obj["credentials"], at("credentials")) is not None:
        r.warn(
            at("credentials"),
            "integration credentials (an IAM role or caller credentials) are ignored: fastgw has no IAM "
            "roles; functions run with the gateway's own permissions",
        )
    if "integrationSubtype" in obj:
        sub = r.string(obj["integrationSubtype"], at("integrationSubtype"))
        if sub is not None:
            r.error(
                at("integrationSubtype"),
                f"AWS service integrations ({sub}) are not supported: fastgw has no AWS service backends",
            )
    conn = (
        r.enum(obj["connectionType"], at("connectionType"), ("INTERNET", "VPC_LINK"))
        if ("connectionType" in obj)
        else None
    )
    if "connectionId" in obj:
        r.string(obj["connectionId"], at("connectionId"))
    if conn == "VPC_LINK":
        r.warn(
            at("connectionType"),
            "VPC links do not exist on bare metal: fastgw connects to the integration URI directly",
        )
    if "tlsConfig" in obj:
        tls = r.obj(obj["tlsConfig"], at("tlsConfig"))
        if tls is not None:
            r.fields(tls, at("tlsConfig"), TLS_FIELDS, "tlsConfig")
            for key in ("insecureSkipVerification", "serverNameToVerify"):
                if key in tls:
                    ok = (
                        r.boolean(tls[key], child(at("tlsConfig"), key))
                        if key == "insecureSkipVerification"
                        else r.string(tls[key], child(at("tlsConfig"), key))
                    )
                    if ok:
                        r.warn(
                            child(at("tlsConfig"), key),
                            f"tlsConfig.{key} has no effect: https:// endpoints are always verified "
                            "against gateway.upstream.ca_file (else the system's CAs) and the URI's host",
                        )
    if "cacheNamespace" in obj:
        ns = r.string(obj["cacheNamespace"], at("cacheNamespace"))
        if ns is not None and ctx.method is not None:
            ctx.namespaces.setdefault(ns, []).append(at("cacheNamespace"))
    transfer = (
        r.enum(obj["responseTransferMode"], at("responseTransferMode"), ("BUFFERED", "STREAM"))
        if ("responseTransferMode" in obj)
        else None
    )
    if transfer == "STREAM" and itype not in (None, "http_proxy"):
        r.warn(
            at("responseTransferMode"),
            "STREAM: fastgw streams HTTP_PROXY responses only; this integration's response is buffered",
        )
    resp_params = None
    if "responseParameters" in obj:
        raw = r.obj(obj["responseParameters"], at("responseParameters"))
        if raw is not None:
            resp_params = {}
            for status, m in raw.items():
                got = r.str_map(m, child(at("responseParameters"), status))
                if got is not None:
                    resp_params[status] = got
    responses = _responses(obj, at("responses"), r) if "responses" in obj else None
    if templates:
        _compile_templates(templates, at("requestTemplates"), r)

    errors = sum(1 for p in r.problems if p.severity == "error")
    if errors > before or itype is None:
        return None

    out: dict[str, Any]
    proxy = itype in ("http_proxy", "aws_proxy")
    if proxy:
        if templates:
            r.warn(at("requestTemplates"), "mapping templates are not applied to proxy integrations (as AWS)")
        if responses and any(set(v) - {"statusCode"} for v in responses.values()):
            r.warn(at("responses"), "integration responses are not applied to proxy integrations (as AWS)")
        # CONVERT_TO_TEXT on a Lambda proxy is what fastgw does for binaryMediaTypes (base64).
        if content is not None and not (itype == "aws_proxy" and content == "CONVERT_TO_TEXT"):
            r.warn(
                at("contentHandling"),
                f"contentHandling {content} is not applied to proxy integrations: HTTP bodies pass "
                "through as bytes, Lambda events carry binaryMediaTypes bodies base64-encoded",
            )
    if kind == "http" and req_params:
        if all(_HTTP_MAPPING_KEY.match(k) for k in req_params):
            # An HTTP API's parameter mapping, as AWS exports it (apigatewayv2 requestParameters).
            mapping = {**req_params, **(mapping or {})}
        else:
            r.warn(
                at("requestParameters"),
                "an HTTP API maps requests with 'append|overwrite|remove:...' keys; these "
                "requestParameters are ignored",
            )
        req_params = None
    if kind == "rest" and (mapping or resp_params):
        key = "parameterMapping" if mapping else "responseParameters"
        r.warn(at(key), f"{key} is an HTTP API setting; REST APIs map with requestParameters and responses")
        mapping = resp_params = None

    if itype == "mock":
        out = {"type": "MOCK"}
        if templates:
            out["requestTemplates"] = templates
        if passthrough:
            out["passthroughBehavior"] = passthrough
        if responses:
            out["responses"] = responses
        for key, value in (("requestParameters", req_params), ("contentHandling", content)):
            if value:
                r.warn(at(key), f"{key} has no effect on a MOCK integration")
    elif itype == "http_proxy":
        if uri is None:
            r.error(path, "an http_proxy integration needs 'uri'")
            return None
        if not _http_uri(r, uri, at("uri")):
            return None
        _same_method(r, http_method, ctx, at("httpMethod"))
        out = {"type": "HTTP_PROXY", "uri": uri}
        if timeout is not None:
            out["timeout_ms"] = timeout
        if req_params:
            out["requestParameters"] = req_params
        if mapping:
            out["parameterMapping"] = mapping
        if resp_params:
            out["responseParameters"] = resp_params
    elif itype == "http":
        if uri is None:
            r.error(path, "an http integration needs 'uri'")
            return None
        if not _http_uri(r, uri, at("uri")):
            return None
        out = {"type": "HTTP", "uri": uri}
        if http_method and http_method.upper() != "ANY":
            out["httpMethod"] = http_method.upper()
        for key, value in (
            ("requestParameters", req_params),
            ("requestTemplates", templates),
            ("passthroughBehavior", passthrough),
            ("contentHandling", content),
            ("responses", responses),
            ("timeout_ms", timeout),
        ):
            if value:
                out[key] = value
        for key, value in (("parameterMapping", mapping), ("responseParameters", resp_params)):
            if value:
                r.warn(at(key), f"{key} applies to HTTP_PROXY integrations only; ignored")
    else:  # aws, aws_proxy
        if uri is None:
            r.error(path, f"an {itype} integration needs 'uri'")
            return None
        if not check_lambda_uri(r, uri, at("uri")):
            return None
        if itype == "aws_proxy":
            out = {"type": "AWS_PROXY", "uri": uri}
            if version is not None:
                out["payloadFormatVersion"] = version
            if timeout is not None:
                out["timeout_ms"] = timeout
            for key, value in (
                ("requestParameters", req_params),
                ("parameterMapping", mapping),
                ("responseParameters", resp_params),
            ):
                if value:
                    r.warn(at(key), f"{key} is not applied to Lambda proxy integrations by fastgw; ignored")
        else:
            out = {"type": "AWS", "uri": uri}
            for key, value in (
                ("requestTemplates", templates),
                ("passthroughBehavior", passthrough),
                ("responses", responses),
                ("timeout_ms", timeout),
            ):
                if value:
                    out[key] = value
            for key, value in (("requestParameters", req_params), ("contentHandling", content)):
                if value:
                    r.warn(at(key), f"{key} is not applied to AWS (Lambda, non-proxy) integrations by fastgw")
    return Converted(out, cache_keys or [])


def _same_method(r: Reader, http_method: str | None, ctx: Context, path: str) -> None:
    if http_method is None or ctx.method is None:
        return
    want = http_method.upper()
    if want not in ("ANY", ctx.method):
        r.warn(
            path,
            f"the backend is called with {want} by AWS; fastgw's HTTP_PROXY forwards the client's method "
            f"({ctx.method if ctx.method != 'ANY' else 'whichever it is'})",
        )


def _responses(obj: dict[str, Any], path: str, r: Reader) -> dict[str, dict[str, Any]] | None:
    raw = r.obj(obj["responses"], path)
    if raw is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for pattern, spec in raw.items():
        p = child(path, pattern)
        if pattern != "default":
            try:
                re.compile(pattern, re.DOTALL)
            except re.error as ex:
                r.error(p, f"selection pattern is not a valid regular expression: {ex}")
                continue
        item = r.obj(spec, p)
        if item is None:
            continue
        r.fields(item, p, RESPONSE_FIELDS, "an integration response")
        resp: dict[str, Any] = {}
        if "statusCode" in item:
            code = item["statusCode"]
            text = str(code) if isinstance(code, int) and not isinstance(code, bool) else code
            if isinstance(text, str) and re.fullmatch(r"[1-5][0-9][0-9]", text):
                resp["statusCode"] = text
            else:
                r.error(child(p, "statusCode"), f"expected an HTTP status code, got {code!r}")
        for key in ("responseParameters", "responseTemplates"):
            if key in item:
                got = r.str_map(item[key], child(p, key))
                if got:
                    resp[key] = got
                    if key == "responseTemplates":
                        _compile_templates(got, child(p, key), r)
        if "contentHandling" in item:
            ch = r.enum(item["contentHandling"], child(p, "contentHandling"), _CONTENT)
            if ch:
                resp["contentHandling"] = ch
        out[pattern] = resp
    return out


def compile_template(source: str, path: str, r: Reader) -> None:
    """Parse a VTL template with fastgw's engine; a syntax error is an error at ``path``."""
    from fastgw.mapping.vtl import MappingTemplate, TemplateError

    try:
        MappingTemplate(source, "template")
    except TemplateError as ex:
        r.error(path, f"mapping template does not parse: {str(ex).removeprefix('template: ')}")


def _compile_templates(templates: dict[str, str], path: str, r: Reader) -> None:
    for ctype, source in templates.items():
        compile_template(source, child(path, ctype), r)

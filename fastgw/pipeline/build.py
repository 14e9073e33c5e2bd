"""Compile-time half of the request pipeline: functions, plugins, authorizers, route pipelines.

Called by ``fastgw.config.compile`` while it builds a snapshot; every problem becomes a
``ConfigIssue`` with the JSON path of the bad field (an unknown function or plugin, a plugin
config its ``Config`` Struct refuses, a handler that does not import, an identity source AWS
would refuse), so a bad config never replaces a running one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import msgspec

from fastgw.config.load import ConfigIssue
from fastgw.config.model import (
    Api,
    AuthorizerConfig,
    AwsIntegration,
    AwsProxyIntegration,
    FunctionConfig,
    GatewayConfig,
    HttpIntegration,
    HttpProxyIntegration,
    MockIntegration,
    PluginRef,
    Route,
    Stage,
)
from fastgw.functions.registry import LocalFunction, apply_environment, load_handler
from fastgw.pipeline.request import Request, Response
from fastgw.pipeline.runtime import Integration, RoutePipeline, Services, Step, upstream_waiter
from fastgw.plugins.base import Plugin, is_async, phases_of, registry
from fastgw.server import replies
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.authorizers.runtime import AuthorizerRuntime
    from fastgw.config.compile import ProxyIntegration, RouteRuntime

log = logging.getLogger("fastgw.pipeline")

# arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function ARN}/invocations
_INTEGRATION_ARN = re.compile(
    r"^arn:aws:apigateway:[a-z0-9-]+:lambda:path/2015-03-31/functions/(.+)/invocations$"
)
# arn:aws:lambda:{region}:{account}:function:{name}[:{alias or version}]
_FUNCTION_ARN = re.compile(
    r"^arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:function:([A-Za-z0-9_-]+)(?::[A-Za-z0-9$_-]+)?$"
)
_STAGE_VAR = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.:/?\-+=&#~]+)\}")


# ---------------------------------------------------------------------------- functions
class RemoteRef:
    """A function behind the Lambda Invoke API (fastgw.functions.remote), bound per worker."""

    def __init__(self, name: str, url: str, remote_name: str, timeout: float) -> None:
        self.name = name
        self.url = url
        self.remote_name = remote_name
        self.timeout = timeout
        self._client: object = None
        self._fn: Any = None

    async def invoke(self, event: Any, svc: Services, timeout: float, request_id: str = "") -> Any:
        client = svc.client
        if self._client is not client:
            from fastgw.functions.remote import RemoteFunction

            self._fn = RemoteFunction(self.name, self.url, client, self.timeout, self.remote_name)
            self._client = client
        # The call's own limit: concurrent calls (from routes with other timeouts) share _fn.
        return await self._fn.invoke(event, request_id, min(timeout, self.timeout))


FunctionRef = LocalFunction | RemoteRef


def compile_functions(config: GatewayConfig, issues: list[ConfigIssue]) -> dict[str, FunctionRef]:
    """Import in-process handlers (environment first) and check remote URLs."""
    out: dict[str, FunctionRef] = {}
    for name, var in apply_environment(config.functions):
        issues.append(
            ConfigIssue(
                f"$.functions.{name}.environment.{var}", "another function sets this variable differently"
            )
        )
    aws = config.gateway.aws
    for name, spec in config.functions.items():
        path = f"$.functions.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            issues.append(ConfigIssue(path, "function names are 1-64 of A-Z a-z 0-9 _ - (as Lambda's)"))
            continue
        if (spec.handler is None) == (spec.url is None):
            issues.append(ConfigIssue(path, "set exactly one of `handler` (in-process) or `url` (remote)"))
            continue
        if spec.handler is not None:
            try:
                handler = load_handler(spec.handler, spec.code_path)
            except ValueError as ex:
                issues.append(ConfigIssue(f"{path}.handler", str(ex)))
                continue
            out[name] = LocalFunction(
                name,
                handler,
                timeout=spec.timeout_ms / 1000.0,
                max_concurrency=spec.max_concurrency,
                memory_mb=spec.memory_mb,
                region=aws.region,
                account_id=aws.account_id,
                executor=spec.executor,
            )
        else:
            ref = _remote(name, spec, f"{path}.url", issues)
            if ref is not None:
                out[name] = ref
    return out


def _remote(name: str, spec: FunctionConfig, path: str, issues: list[ConfigIssue]) -> RemoteRef | None:
    url = spec.url or ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as ex:
        issues.append(ConfigIssue(path, f"invalid URL {url!r}: {ex}"))
        return None
    if parts.scheme != "http" or not parts.hostname:
        issues.append(ConfigIssue(path, f"expected http://host[:port][/base], got {url!r}"))
        return None
    return RemoteRef(name, url.rstrip("/"), spec.remote_name or "function", spec.timeout_ms / 1000.0)


def resolve_function(
    uri: str, functions: dict[str, FunctionRef], stage: Stage, path: str, issues: list[ConfigIssue]
) -> FunctionRef | None:
    """A function from an AWS integration URI, a Lambda function ARN or a bare name."""
    missing = [m.group(1) for m in _STAGE_VAR.finditer(uri) if m.group(1) not in stage.variables]
    if missing:
        issues.append(
            ConfigIssue(path, f"stage '{stage.name}' has no variable {missing[0]!r} used in {uri!r}")
        )
        return None
    text = _STAGE_VAR.sub(lambda m: stage.variables[m.group(1)], uri)
    m = _INTEGRATION_ARN.match(text)
    if m:
        text = m.group(1)
    elif text.startswith("arn:aws:apigateway:"):
        issues.append(
            ConfigIssue(
                path,
                f"{text!r}: expected arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/"
                "FUNCTION_ARN/invocations",
            )
        )
        return None
    m = _FUNCTION_ARN.match(text)
    if m:
        text = m.group(1)
    elif text.startswith("arn:"):
        issues.append(ConfigIssue(path, f"{text!r} is not a Lambda function ARN"))
        return None
    fn = functions.get(text)
    if fn is None:
        known = ", ".join(sorted(functions)) or "none"
        issues.append(ConfigIssue(path, f"no function named {text!r} in `functions` (known: {known})"))
    return fn


# ---------------------------------------------------------------------------- plugins
def load_plugins(config: GatewayConfig, issues: list[ConfigIssue]) -> dict[str, type[Plugin]]:
    """Built-ins, the config's ``plugin_modules`` and the ``fastgw.plugins`` entry points."""
    import fastgw.plugins.builtin  # noqa: F401 - registers the built-in plugins
    from fastgw.functions.registry import ensure_cwd_importable

    ensure_cwd_importable()

    for i, module in enumerate(config.plugin_modules):
        try:
            importlib.import_module(module)
        except Exception as ex:
            issues.append(
                ConfigIssue(f"$.plugin_modules[{i}]", f"cannot import {module!r}: {type(ex).__name__}: {ex}")
            )
    for ep in _entry_points():
        try:
            ep.load()
        except Exception as ex:  # a broken third-party package must not stop the gateway
            log.warning(
                "plugin entry point failed to load", extra={"entry_point": ep.name, "error": repr(ex)}
            )
    return registry()


_EPS: list[Any] | None = None


def _entry_points() -> list[Any]:
    global _EPS
    if _EPS is None:
        _EPS = list(importlib.metadata.entry_points(group="fastgw.plugins"))
    return _EPS


class PluginBinder:
    """Validates each ``PluginRef`` once and makes one instance of it, shared by its routes."""

    def __init__(self, classes: dict[str, type[Plugin]], issues: list[ConfigIssue]) -> None:
        self.classes = classes
        self.issues = issues
        self.bound: dict[int, tuple[PluginRef, Plugin | None, str]] = {}

    def bind(self, refs: list[PluginRef], path: str, where: str) -> dict[str, tuple[Plugin | None, str]]:
        out: dict[str, tuple[Plugin | None, str]] = {}
        for i, ref in enumerate(refs):
            r_path = f"{path}[{i}]"
            got = self.bound.get(id(ref))
            if got is None:
                got = (ref, self._make(ref, r_path), where)
                self.bound[id(ref)] = got
            if ref.name in out:
                self.issues.append(ConfigIssue(f"{r_path}.name", f"plugin {ref.name!r} is listed twice here"))
            if got[1] is not None or not ref.enabled:
                out[ref.name] = (got[1] if ref.enabled else None, where)
        return out

    def _make(self, ref: PluginRef, path: str) -> Plugin | None:
        cls = self.classes.get(ref.name)
        if cls is None:
            known = ", ".join(sorted(self.classes)) or "none"
            self.issues.append(ConfigIssue(f"{path}.name", f"no plugin named {ref.name!r} (known: {known})"))
            return None
        if not ref.enabled:
            return None
        try:
            conf = msgspec.convert(ref.config, cls.Config)
        except msgspec.ValidationError as ex:
            msg, _, at = str(ex).rpartition(" - at `")
            if at:
                self.issues.append(ConfigIssue(f"{path}.config{at.rstrip('`')[1:]}", msg))
            else:
                self.issues.append(ConfigIssue(f"{path}.config", str(ex)))
            return None
        try:
            return cls(conf)
        except Exception as ex:
            self.issues.append(ConfigIssue(f"{path}.config", f"plugin {ref.name!r} refused its config: {ex}"))
            return None


def plugin_steps(
    merged: dict[str, tuple[Plugin | None, str]],
) -> tuple[list[Step], list[tuple[str, int, str]]]:
    """Phase steps of the plugins in effect, each phase by descending priority (then name)."""
    active = [(p, where) for p, where in merged.values() if p is not None]
    active.sort(key=lambda item: (-item[0].priority, item[0].name))
    steps = []
    for plugin, _ in active:
        for phase in phases_of(type(plugin)):
            fn = getattr(plugin, phase)
            steps.append(Step(plugin.name, phase, fn, is_async(fn)))
    return steps, [(p.name, p.priority, where) for p, where in active]


# ---------------------------------------------------------------------------- authorizers
def compile_authorizers(
    api: Api,
    api_id: str,
    stage: Stage,
    functions: dict[str, FunctionRef],
    path: str,
    issues: list[ConfigIssue],
    report: bool,
    region: str = "us-east-1",
) -> dict[str, AuthorizerRuntime]:
    from fastgw.authorizers import lambda_auth as la
    from fastgw.authorizers.runtime import AuthorizerRuntime

    out: dict[str, AuthorizerRuntime] = {}
    sink = issues if report else []
    for i, auth in enumerate(api.authorizers):
        a_path = f"{path}.authorizers[{i}]"
        if auth.name in out:
            sink.append(ConfigIssue(f"{a_path}.name", f"duplicate authorizer {auth.name!r}"))
            continue
        if auth.type in ("JWT", "COGNITO_USER_POOLS"):
            from fastgw.authorizers.jwt_auth import JwtAuthorizerRuntime

            try:
                out[auth.name] = JwtAuthorizerRuntime(  # type: ignore[assignment]
                    auth.name, api.kind, auth, region
                )
            except ValueError as ex:
                sink.append(ConfigIssue(a_path, str(ex)))
            continue
        if auth.authorizerUri is None:
            sink.append(ConfigIssue(f"{a_path}.authorizerUri", f"{auth.type} authorizers need a function"))
            continue
        version = _auth_version(api, auth, a_path, sink)
        if auth.type == "TOKEN" and api.kind != "rest":
            sink.append(
                ConfigIssue(f"{a_path}.type", "TOKEN authorizers exist on REST APIs; HTTP APIs use REQUEST")
            )
            continue
        if auth.enableSimpleResponses and (api.kind != "http" or version != "2.0"):
            sink.append(
                ConfigIssue(
                    f"{a_path}.enableSimpleResponses", "simple responses need an HTTP API and payload 2.0"
                )
            )
        try:
            sources = la.parse_identity_sources(
                auth.identitySource, api.kind, auth.type, ttl=auth.authorizerResultTtlInSeconds
            )
        except ValueError as ex:
            sink.append(ConfigIssue(f"{a_path}.identitySource", str(ex)))
            continue
        if auth.identityValidationExpression is not None:
            try:
                la.compile_validation(auth.identityValidationExpression)
            except ValueError as ex:
                sink.append(ConfigIssue(f"{a_path}.identityValidationExpression", f"invalid regex: {ex}"))
        fn = resolve_function(auth.authorizerUri, functions, stage, f"{a_path}.authorizerUri", sink)
        if fn is None:
            continue
        # Decisions belong to one stage (AWS) and one function: the shared store keys say so.
        namespace = f"{api_id}:{stage.name}:{auth.name}:{fn.name}:{_digest(auth)}:"
        out[auth.name] = AuthorizerRuntime(
            auth.name,
            api.kind,
            auth.type,
            fn,
            sources,
            auth.authorizerResultTtlInSeconds,
            version,
            auth.enableSimpleResponses,
            auth.cache_per_route,
            auth.timeout_ms / 1000.0,
            auth.identityValidationExpression,
            namespace,
        )
    return out


def _auth_version(api: Api, auth: AuthorizerConfig, path: str, issues: list[ConfigIssue]) -> str:
    version = auth.authorizerPayloadFormatVersion
    if api.kind == "rest":
        if version not in (None, "1.0"):
            issues.append(ConfigIssue(f"{path}.authorizerPayloadFormatVersion", "REST APIs use payload 1.0"))
        return "1.0"
    return version or "2.0"


def _digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(msgspec.json.encode(obj)).hexdigest()[:12]


# ---------------------------------------------------------------------------- access control
class AccessControl:
    """The config's IAM verifier (built once, if a route uses AWS_IAM) and each API's compiled
    resource policy; problems become config issues at their paths."""

    def __init__(self, config: GatewayConfig, issues: list[ConfigIssue]) -> None:
        self.config = config
        self.issues = issues
        self._iam: Any = None
        self._iam_failed = False
        self._policies: dict[int, Any] = {}
        self._models: dict[int, dict[str, Any]] = {}

    def iam(self) -> Any:
        if self._iam is None and not self._iam_failed:
            from fastgw.authorizers.sigv4 import IamVerifier

            aws = self.config.gateway.aws
            try:
                self._iam = IamVerifier(self.config.iam, aws.region, aws.account_id)
            except ValueError as ex:
                self._iam_failed = True
                self.issues.append(ConfigIssue("$.iam", str(ex)))
        return self._iam

    def policy(self, api: Api, path: str) -> Any:
        if api.policy is None:
            return None
        key = id(api)
        if key not in self._policies:
            from fastgw.authorizers.resource_policy import ResourcePolicy

            try:
                self._policies[key] = ResourcePolicy(api.policy)
            except ValueError as ex:
                self._policies[key] = None
                self.issues.append(ConfigIssue(f"{path}.policy", str(ex)))
        return self._policies[key]

    def models(self, api: Api, path: str) -> dict[str, Any]:
        """The API's compiled models (each compiled once per config)."""
        key = id(api)
        got = self._models.get(key)
        if got is None:
            from fastgw.pipeline.validation import compile_models

            got, errors = compile_models(api.models)
            for name, message in errors:
                self.issues.append(ConfigIssue(f"{path}.models.{name}", message))
            self._models[key] = got
        return got

    def validation(self, api: Api, a_path: str, route: Route, r_path: str) -> Any:
        """The route's RequestValidation, None without checks, False after an issue."""
        from fastgw.pipeline.validation import RequestValidation, parse_parameters

        required, errors = parse_parameters(route.requestParameters)
        for key, message in errors:
            self.issues.append(ConfigIssue(f"{r_path}.requestParameters.{key}", message))
        models = self.models(api, a_path)
        for ctype, name in route.requestModels.items():
            if name not in api.models:
                self.issues.append(
                    ConfigIssue(f"{r_path}.requestModels.{ctype}", f"no model {name!r} in the API")
                )
                errors.append((ctype, name))
        name = route.requestValidator or api.requestValidator
        if name is None:
            return False if errors else None
        validator = api.requestValidators.get(name)
        if validator is None:
            where = f"{r_path}.requestValidator" if route.requestValidator else f"{a_path}.requestValidator"
            self.issues.append(ConfigIssue(where, f"no request validator {name!r} in the API"))
            return False
        if errors:
            return False
        params = required if validator.validateRequestParameters else None
        body = None
        if validator.validateRequestBody:
            body = {ctype.lower(): models[m] for ctype, m in route.requestModels.items() if m in models}
        if not params and not body:
            return None
        return RequestValidation(params, body)

    def for_route(self, api: Api, a_path: str, route: Route, r_path: str) -> tuple[Any, Any, bool]:
        """(IAM verifier or None, resource policy or None, failed); the route's request
        validation is left in ``self.last_validation``."""
        iam = None
        validation = self.validation(api, a_path, route, r_path)
        failed = validation is False
        self.last_validation = validation or None
        if route.authorizationType == "AWS_IAM":
            if route.authorizer is not None:
                self.issues.append(
                    ConfigIssue(
                        f"{r_path}.authorizer", "a route is either AWS_IAM or has an authorizer, not both"
                    )
                )
                failed = True
            if not self.config.iam.users:
                self.issues.append(
                    ConfigIssue(f"{r_path}.authorizationType", "AWS_IAM needs users in `iam.users`")
                )
                failed = True
            iam = self.iam()
            failed = failed or iam is None
        policy = self.policy(api, a_path)
        failed = failed or (api.policy is not None and policy is None)
        return iam, policy, failed


# ---------------------------------------------------------------------------- integrations
def mock_integration(integ: MockIntegration) -> Integration:
    headers = list(integ.headers.items())
    body = integ.body.encode()
    status = integ.status

    async def run(req: Request, svc: Services) -> Response | LocalReply:
        return Response(status, list(headers), body)

    return run


_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "host",
    }
)


# Request headers never forwarded as given: the gateway frames the upstream request itself.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


def _upstream_head(req: Request) -> bytes:
    """The request's headers as the upstream head's tail (after the Host line)."""
    return upstream_head_lines(req.headers, req.body, req.method)


def upstream_head_lines(headers: list[tuple[str, str]], body: bytes, method: str) -> bytes:
    """Headers as an upstream head's tail (after the Host line), framed for ``body``."""
    out = []
    for name, value in headers:
        if name.lower() in _NOT_FORWARDED:
            continue
        if "\r" in value or "\n" in value or "\0" in value or not name or ":" in name or " " in name:
            raise ValueError(f"invalid request header {name!r}: {value!r}")
        try:
            out.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            out.append(b"%s: %s\r\n" % (name.encode(), value.encode()))
    if body or method in ("POST", "PUT", "PATCH"):
        out.append(b"content-length: %d\r\n" % len(body))
    out.append(b"\r\n")
    return b"".join(out)


# Characters left as they are when a mapped value becomes part of an upstream path: RFC 3986
# pchar, "/" (a greedy {proxy+} value keeps its slashes, as on AWS) and "%" (values read from the
# request path arrive already encoded). Spaces, controls, "?", "#" and non-ASCII get encoded, so
# that no mapped value can end the request line or start a query.
_PATH_SAFE = "/-_.~!$&'()*+,;=:@%"


class ProxyMappings:
    """An HTTP_PROXY route's parameter mappings (fastgw.pipeline.params), compiled: REST
    ``requestParameters``; HTTP API ``parameterMapping`` and ``responseParameters``."""

    __slots__ = ("http_request", "http_response", "rest_request", "variables")

    def __init__(self, rest_request: Any, http_request: Any, http_response: Any, variables: dict[str, str]):
        self.rest_request = rest_request
        self.http_request = http_request
        self.http_response = http_response
        self.variables = variables

    @classmethod
    def compile(
        cls, integ: HttpProxyIntegration, api: Api, stage: Stage, path: str, issues: list[ConfigIssue]
    ) -> ProxyMappings | bool | None:
        """None without mappings; False after an issue."""
        if not (integ.requestParameters or integ.parameterMapping or integ.responseParameters):
            return None
        from fastgw.pipeline import params as pm

        rest = http_req = http_resp = None
        failed = False
        for field, want, compile_ in (
            ("requestParameters", "rest", pm.compile_request_parameters),
            ("parameterMapping", "http", pm.compile_http_request_mapping),
            ("responseParameters", "http", pm.compile_http_response_mapping),
        ):
            mapping = getattr(integ, field)
            if not mapping:
                continue
            if api.kind != want:
                issues.append(
                    ConfigIssue(
                        f"{path}.{field}", f"{field} is for {'REST' if want == 'rest' else 'HTTP'} APIs"
                    )
                )
                failed = True
                continue
            try:
                got = compile_(mapping)
            except pm.MappingError as ex:
                for key, message in ex.errors or [(ex.key, ex.message)]:
                    issues.append(ConfigIssue(f"{path}.{field}.{key}", message))
                failed = True
                continue
            if field == "requestParameters":
                rest = got
            elif field == "parameterMapping":
                http_req = got
            else:
                http_resp = got
        if failed:
            return False
        return cls(rest, http_req, http_resp, dict(stage.variables))

    def apply_request(self, req: Request) -> str | None:
        """Edit ``req`` as the mappings say; the upstream path when one overwrites it."""
        from fastgw.pipeline.mapped import mapping_context

        context = mapping_context(req)
        rest = self.rest_request
        if rest is not None:
            got = rest.apply(req, context, self.variables)
            for name, value in got.headers:
                req.set_header(name, value)
            if got.query:
                extra = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in got.query)
                req.query = f"{req.query}&{extra}" if req.query else extra
            if got.path:
                # Mapped values are decoded text: they reach the request line percent-encoded,
                # as the router's own (raw) path parameters are.
                mapped_params = {k: quote(v, safe=_PATH_SAFE) for k, v in got.path.items()}
                req.params = {**(req.params or {}), **mapped_params}
            return None
        mapped = self.http_request.apply(req, context, self.variables)
        req.headers = mapped.headers
        req.query = mapped.query
        path = mapped.path
        return None if path is None else quote(path, safe=_PATH_SAFE)


async def upstream_call(
    svc: Services,
    req: Request,
    target: Any,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
) -> Any:
    """One whole request to an upstream through the worker's HttpClient: its response, or
    the gateway's reply for a timeout (504) or a failure (502)."""
    from fastgw.upstream.client import HttpClientError, HttpClientTimeout

    ssl = None
    if target.scheme == "https":
        from fastgw.config.compile import upstream_ssl_context

        ssl = upstream_ssl_context()
    try:
        return await svc.client.request(
            target.host,
            target.port,
            method,
            path,
            headers,
            body,
            timeout,
            host_header=target.host_header.decode(),
            ssl=ssl,
        )
    except HttpClientTimeout:
        return replies.INTEGRATION_TIMEOUT
    except HttpClientError as ex:
        log.warning("upstream request failed", extra={"route": req.route.key, "error": str(ex)})
        return replies.INTEGRATION_FAILURE


class Collected:
    """A buffered upstream response: status, headers (hop-by-hop ones dropped), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _parse_head(raw: bytes) -> list[tuple[str, str]]:
    """The header lines of a raw response head (the protocol's buffer may hold body bytes
    after it; httptools has validated it).

    PERF: decoded once, split with str methods; and an upstream answers with the same head over
    and over (its Date changes once a second), so the parsed list of a head is kept
    (``_HEADS``, bounded) and a copy returned."""
    end = raw.find(b"\r\n\r\n")
    if end >= 0:
        raw = raw[:end]
    got = _HEADS.get(raw)
    if got is not None:
        return list(got)
    out = []
    named: list[str] = []
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        # bytes.strip() (ASCII whitespace), as the head is bytes on the wire
        name = name.strip(_ASCII_SPACE)
        lname = name.lower()
        if lname in _HOP or lname == "content-length":
            if lname == "connection":
                named.extend(t.strip().lower() for t in value.split(","))
            continue
        out.append((name, value.strip(" \t")))
    if named:
        # Headers the upstream's Connection header names are hop-by-hop too (RFC 9110 7.6.1).
        out = [h for h in out if h[0].lower() not in named]
    if len(_HEADS) >= 64:
        _HEADS.clear()
    _HEADS[raw] = tuple(out)
    return out


_HEADS: dict[bytes, tuple[tuple[str, str], ...]] = {}
_ASCII_SPACE = " \t\n\r\x0b\x0c"


def _end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop ones, those named by Connection included."""
    named = [t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")]
    return [(k, v) for k, v in headers if k.lower() not in _HOP and k.lower() not in named]


async def exchange_call(
    svc: Services,
    req: Request,
    integ: Any,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> Collected | LocalReply:
    """One buffered request to an upstream, on the exchange's own upstream pools (the fast
    path's connections and parser; ``integ`` is a compiled ProxyIntegration); without an
    exchange (tests driving an integration directly), through the worker's HttpClient."""
    ex = req.exchange
    if ex is None:
        target = integ.targets[0]
        got = await upstream_call(svc, req, target, method, path, headers, body, integ.timeout)
        if type(got) is LocalReply:
            return got  # type: ignore[no-any-return]
        return Collected(got.status, _end_to_end(got.headers), got.body)
    fut = upstream_waiter(ex, svc.loop)
    head = upstream_head_lines(headers, body, method)
    ex.collect_upstream(integ, method, path.encode("latin-1"), head, body, fut)
    got = await fut
    if type(got) is LocalReply:
        return got  # type: ignore[no-any-return]
    status, raw_head, data = got
    return Collected(status, _parse_head(raw_head), data)


def proxy_integration(
    integ: ProxyIntegration, stream: bool = False, edits: bool = True, mappings: ProxyMappings | None = None
) -> Integration:
    """HTTP_PROXY for pipeline routes. ``stream`` (no response-phase plugin needs the whole
    response): the exchange sends the request on its own upstream pools and streams the
    response back, as on the fast path (``Handoff``); else the whole request and response go
    through HttpClient. ``mappings``: parameter mapping on the way in (and out, HTTP APIs)."""
    from fastgw.pipeline.runtime import Handoff
    from fastgw.server.protocol import render_path

    map_request = mappings is not None and (mappings.rest_request or mappings.http_request) is not None
    map_response = mappings.http_response if mappings is not None else None

    def target_of(req: Request) -> str:
        if map_request:
            new_path = mappings.apply_request(req)  # type: ignore[union-attr]
            if new_path is not None:
                return f"{new_path}?{req.query}" if req.query and integ.pass_query else new_path
        path = render_path(integ, req.params).decode("latin-1")
        query = req.query
        uq = integ.uri_query.decode("latin-1")
        if uq:
            query = f"{uq}&{query}" if query and integ.pass_query else uq
        elif not integ.pass_query:
            query = ""
        return f"{path}?{query}" if query else path

    if stream:

        async def handoff(req: Request, svc: Services) -> Handoff:
            # Without plugins nothing can have edited the request: the exchange builds the
            # upstream head from what it captured, as on the fast path (head None).
            target = target_of(req).encode("latin-1")
            head = _upstream_head(req) if edits or map_request else None
            return Handoff(integ, target, head, req.body)

        return handoff  # type: ignore[return-value]

    async def run(req: Request, svc: Services) -> Response | LocalReply:
        try:
            path = target_of(req)
        except Exception:
            log.exception("parameter mapping failed", extra={"route": req.route.key})
            return replies.INTERNAL_ERROR
        headers = [(k, v) for k, v in req.headers if k.lower() not in ("host", "content-length")]
        got = await exchange_call(svc, req, integ, req.method, path, headers, req.body)
        if type(got) is LocalReply:
            return got  # type: ignore[no-any-return]
        headers = got.headers
        status = got.status
        if map_response is not None:
            from fastgw.pipeline.mapped import mapping_context

            status, headers = map_response.apply(
                status,
                headers,
                got.body,
                mapping_context(req),
                mappings.variables,  # type: ignore[union-attr]
            )
        return Response(status, headers, got.body)

    return run


# HTTP APIs answer a failed function (or a malformed response) with 500, REST APIs with 502.
HTTP_API_ERROR = replies.LocalReply(
    500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}'
)


def function_integration(
    fn: FunctionRef, version: str, timeout: float, api_kind: str, raw_ok: bool = False
) -> Integration:
    """AWS_PROXY: the Lambda proxy event in, the Lambda proxy response out (as AWS).

    The integration is a ``FunctionRoute`` (compiled with the events, fastgw.functions._lambda_py):
    called as ``(req, svc)`` like every integration; ``runtime.launch`` runs its ``serve`` (one
    coroutine for the whole request) on a route that is nothing but this integration."""
    from fastgw.functions import events
    from fastgw.pipeline.runtime import to_reply

    failure = HTTP_API_ERROR if api_kind == "http" else replies.INTEGRATION_FAILURE
    local = fn if type(fn) is LocalFunction else None
    # raw_ok (no response-phase plugins): the common payload 1.0 response goes straight to bytes.
    run: Integration = events.FunctionRoute(fn, local, version, timeout, api_kind, raw_ok, failure, to_reply)
    return run


# ---------------------------------------------------------------------------- routes
def build_pipeline(
    route_rt: RouteRuntime,
    route: Route,
    api: Api,
    compiled: Any,
    functions: dict[str, FunctionRef],
    authorizers: dict[str, AuthorizerRuntime],
    merged_plugins: dict[str, tuple[Plugin | None, str]],
    stage: Stage,
    path: str,
    issues: list[ConfigIssue],
    access: tuple[Any, ...] = (None, None, False),
) -> RoutePipeline | bool | None:
    """The route's pipeline; None when the fast path serves it; False after an issue."""
    integ = route.integration
    steps, plugins = plugin_steps(merged_plugins)
    iam, policy, access_failed = access[:3]
    validation = access[3] if len(access) > 3 else None
    if access_failed:
        return False
    mapped = isinstance(integ, (HttpIntegration, AwsIntegration)) or (
        isinstance(integ, MockIntegration) and bool(integ.responses or integ.requestTemplates)
    )
    mappings = None
    if isinstance(integ, HttpProxyIntegration):
        mappings = ProxyMappings.compile(integ, api, stage, f"{path}.integration", issues)
        if mappings is False:
            return False
    cached = route_rt.cache is not None
    compress = api.minimumCompressionSize
    if (
        not isinstance(integ, AwsProxyIntegration)
        and not mapped
        and mappings is None
        and not cached
        and compress is None
        and route.authorizer is None
        and not steps
        and iam is None
        and policy is None
        and validation is None
        and api.cors is None
    ):
        return None
    auth = None
    if route.authorizationScopes and not any(
        a.name == route.authorizer and a.type in ("JWT", "COGNITO_USER_POOLS") for a in api.authorizers
    ):
        issues.append(
            ConfigIssue(
                f"{path}.authorizationScopes", "scopes need a JWT or COGNITO_USER_POOLS authorizer (AWS)"
            )
        )
        return False
    if route.authorizer is not None:
        auth = authorizers.get(route.authorizer)
        if auth is None:
            if not any(a.name == route.authorizer for a in api.authorizers):
                issues.append(
                    ConfigIssue(f"{path}.authorizer", f"the API has no authorizer {route.authorizer!r}")
                )
            return False
    key_from_auth = api.apiKeySource == "AUTHORIZER"
    if key_from_auth and route.apiKeyRequired and auth is None:
        issues.append(
            ConfigIssue(f"{path}.apiKeyRequired", "apiKeySource AUTHORIZER needs an authorizer on this route")
        )
        return False
    deadline = 5.0 + (auth.timeout if auth is not None else 0.0)
    buffered = False
    if isinstance(integ, AwsProxyIntegration):
        version = integ.payloadFormatVersion or ("1.0" if api.kind == "rest" else "2.0")
        if api.kind == "rest" and version != "1.0":
            issues.append(
                ConfigIssue(f"{path}.integration.payloadFormatVersion", "REST APIs use payload 1.0")
            )
            return False
        fn = resolve_function(integ.uri, functions, stage, f"{path}.integration.uri", issues)
        if fn is None:
            return False
        timeout = integ.timeout_ms / 1000.0
        raw_ok = not any(s.phase == "response" for s in steps)
        run = function_integration(fn, version, timeout, api.kind, raw_ok)
        name = f"AWS_PROXY function {fn.name!r} (payload {version})"
        deadline += timeout
    elif isinstance(integ, AwsIntegration):
        from fastgw.pipeline.mapped import aws_mapped

        fn = resolve_function(integ.uri, functions, stage, f"{path}.integration.uri", issues)
        if fn is None:
            return False
        before = len(issues)
        run = aws_mapped(integ, fn, stage, f"{path}.integration", issues)
        if len(issues) > before:
            return False
        name = f"AWS function {fn.name!r} (mapped)"
        deadline += integ.timeout_ms / 1000.0
    elif isinstance(integ, HttpIntegration):
        from fastgw.pipeline.mapped import http_mapped

        before = len(issues)
        got = http_mapped(integ, stage, f"{path}.integration", issues)
        if got is None or len(issues) > before:
            return False
        run = got
        name = "HTTP (mapped)"
        deadline += integ.timeout_ms / 1000.0
    elif mapped:
        from fastgw.pipeline.mapped import mock_mapped

        before = len(issues)
        run = mock_mapped(integ, stage, f"{path}.integration", issues)  # type: ignore[arg-type]
        if len(issues) > before:
            return False
        name = "MOCK (mapped)"
    elif isinstance(integ, MockIntegration):
        run = mock_integration(integ)
        name = "MOCK"
    else:
        buffered = (
            api.cors is not None
            or any(s.phase in ("response", "log") for s in steps)
            or cached
            or compress is not None
            or (mappings is not None and mappings.http_response is not None)  # type: ignore[union-attr]
        )
        run = proxy_integration(compiled, stream=not buffered, edits=bool(steps), mappings=mappings)  # type: ignore[arg-type]
        name = "HTTP_PROXY" + (" (buffered)" if buffered else " (streamed)")
        deadline += compiled.timeout
    pipe = RoutePipeline(
        route_rt, run, name, deadline, auth, steps, plugins, key_from_auth and auth is not None
    )
    pipe.set_access(iam, policy)
    if validation is not None:
        pipe.validation = validation
        pipe.direct = None
    pipe.cors = route_rt.api.cors
    pipe.compress = compress
    if compress is not None:
        pipe.direct = None  # request bodies are inflated in ``run``
    if pipe.cors is not None:
        # Every reply of the route, the traffic gate's 429s included, gets the CORS headers:
        # the gate runs inside the pipeline.
        pipe.early_gate = False
        pipe.direct = None
    cache = route_rt.cache
    if cache is not None:
        pipe.cache = cache
        # Looked up in the protocol when nothing but the gate runs before the integration (no
        # access plugin, no validation), nothing must see the request afterwards (no log
        # plugin), the store answers at once (memory), no compression applies and the key reads
        # only headers the protocol keeps; else in ``run``.
        cache.early = (
            pipe.early_gate
            and not pipe.access
            and pipe.validation is None
            and not pipe.logs
            and cache.backend == "memory"
            and compress is None
            and cache.head_safe
        )
        if not cache.early:
            pipe.direct = None
    if (
        auth is not None
        and auth.type in ("JWT", "COGNITO_USER_POOLS")
        and not steps
        and name == "HTTP_PROXY (streamed)"
        and mappings is None
        and iam is None
        and policy is None
        and validation is None
        and pipe.cors is None
        and compress is None
        and cache is None
        and not key_from_auth
        and route_rt.integration is compiled
    ):
        # Nothing but the token check stands between the client and the streamed proxy: a
        # token this worker verified is checked in the protocol (fast path, no Request).
        pipe.fast_auth = auth
    pipe.lean_auth = (
        auth is not None
        and not steps
        and iam is None
        and policy is None
        and validation is None
        and pipe.cors is None
        and compress is None
        and cache is None
    )
    # User code (plugins, Lambda functions and authorizers) may rely on asyncio.current_task();
    # everything else may start outside a Task (see runtime.launch).
    pipe.eager = (
        not steps
        and (auth is None or auth.type in ("JWT", "COGNITO_USER_POOLS"))
        and not isinstance(integ, (AwsProxyIntegration, AwsIntegration))
        # The Redis cache bounds its calls with asyncio.timeout, which needs a Task; and routes on
        # HttpClient measured slower when started eagerly (the continuation is driven from Python).
        and (cache is None or cache.backend == "memory")
        and not (isinstance(integ, HttpIntegration) or (isinstance(integ, HttpProxyIntegration) and buffered))
    )
    # A mapped HTTP integration and nothing else: its one wait is the upstream exchange's future
    # (fastgw.pipeline.mapped), so it runs without a Task (runtime._Stepper).
    pipe.stepped = (
        pipe.direct is not None
        and isinstance(integ, HttpIntegration)
        and (cache is None or cache.backend == "memory")
    )
    if pipe.stepped and cache is None:
        # The usual mapped route (fastgw.pipeline.lean), when nothing stores its replies.
        pipe.lean = getattr(pipe.direct, "lean", None)
    return pipe

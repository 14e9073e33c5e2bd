"""Export an API as OpenAPI 3.0 or Swagger 2.0, as AWS's GetExport / ExportApi write it.

``export_api(api, spec=..., extensions=True)`` is AWS's ``integrations`` / ``apigateway`` export
type: every method carries ``x-amazon-apigateway-integration``, authorizers are security schemes
with ``x-amazon-apigateway-authorizer``, and the API's settings become the root extensions
(``-api-key-source``, ``-binary-media-types``, ``-gateway-responses``,
``-minimum-compression-size``, ``-request-validators``, ``-request-validator``, ``-policy``;
HTTP APIs: ``-cors`` and ``-importexport-version``). ``extensions=False`` is a plain OpenAPI
document: no ``x-`` key at all, ``ANY`` spelled out as the seven methods, no ``$default`` route
(a catch-all has no plain OpenAPI form) and greedy ``{proxy+}`` written ``{proxy}``.

The shapes follow real AWS exports: REST integration types and passthrough behaviours in lower
case, integration response status codes as strings, ``/{proxy+}`` declaring a parameter named
``proxy``; HTTP APIs with ``Default response for ROUTE`` responses, path parameters on the path
item ("Generated path parameter for NAME"), ``payloadFormatVersion`` and
``connectionType: INTERNET`` on every integration, ``parameterMapping`` written as the
integration's ``requestParameters`` / ``responseParameters``, and the ``$default`` route as
``/$default`` > ``x-amazon-apigateway-any-method`` with ``isDefaultRoute: true``.

Nothing the config says is lost with ``extensions=True``: what AWS's extensions cannot carry is
written as fastgw extensions, each holding the owner's leftover fields under their config names
(defaults omitted, as the config model encodes):

``x-fastgw-api`` (root)
    ``kind`` (always), then Api fields without an AWS form: ``id``, ``stages``, ``plugins``;
    HTTP APIs: ``models`` (AWS's HTTP APIs have none; ``components.schemas`` still describes them).
``x-fastgw-route`` (operation)
    Route fields without an AWS form: ``plugins``; ``authorizationScopes`` of a route without an
    authorizer; ``requestParameters`` other than header / querystring / path; Swagger only:
    ``requestModels`` when the body maps several models (a body parameter holds one); HTTP APIs:
    ``requestParameters`` and ``requestModels`` whole (also written as OpenAPI parameters and
    request body, which AWS's HTTP API import ignores).
``x-fastgw-integration`` (operation)
    ``targets``, ``pass_query``, ``timeout_ms`` beyond AWS's limit (29 s REST, 30 s HTTP APIs),
    the mapping of the other API kind (REST ``requestParameters`` on an HTTP API,
    ``parameterMapping`` / ``responseParameters`` on a REST API), REST ``payloadFormatVersion``.
    A MOCK in fastgw's simple form (``status`` / ``headers`` / ``body``, no templates or
    responses) is written as AWS's equivalent mapped MOCK (a ``{"statusCode": N}`` request
    template and a ``default`` integration response) and, here, ``{"mock": {"status", "headers",
    "body"}}``: an importer that finds ``mock`` restores the simple form.
``x-fastgw-authorizer`` (security scheme)
    ``cache_per_route``, ``timeout_ms``, JWT settings beyond issuer and audience, fields the API
    kind has no AWS form for.
``x-fastgw-schema`` (model)
    A model's ``$schema`` when it is not draft 4 (OpenAPI's schema objects cannot hold one).
``x-fastgw-implicit: true`` (REST path parameter)
    The route's ``requestParameters`` do not name ``method.request.path.NAME``: the parameter is
    declared only because OpenAPI requires every template variable to be (AWS's importer would
    make it a method request parameter; fastgw's does not).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from fastgw.config.model import (
    Api,
    AuthorizerConfig,
    AwsIntegration,
    AwsProxyIntegration,
    HttpIntegration,
    HttpProxyIntegration,
    IntegrationResponse,
    MockIntegration,
    Route,
)

__all__ = ["DEFAULT_REGION", "dump", "export_api"]

Spec = Literal["oas30", "swagger"]

# The region in the default (AWS-shaped) server URL: an Api does not know the gateway's
# `gateway.aws.region`; pass `server_url` for another one.
DEFAULT_REGION = "us-east-1"

_ANY = "x-amazon-apigateway-any-method"
_METHOD_ORDER = ("get", "put", "post", "delete", "options", "head", "patch")
_MODEL_URL = re.compile(r"^https://apigateway\.amazonaws\.com/restapis/[^/]+/models/([^/#?]+)$")
_TEMPLATE_PARAM = re.compile(r"\{([^{}]+?)(\+?)\}")
_DRAFT4 = "http://json-schema.org/draft-04/schema"
# Method request parameters with an OpenAPI form ("in"), by the AWS location word.
_PARAM_IN = {"path": "path", "querystring": "query", "header": "header"}
# Integration timeouts AWS accepts (ms): REST APIs 50..29000, HTTP APIs 50..30000.
_TIMEOUT_MAX = {"rest": 29000, "http": 30000}
_DEFAULT_TIMEOUT_MS = 29000
# Key order of x-amazon-apigateway-integration, as AWS's exports write them.
_REST_INTEGRATION_ORDER = (
    "httpMethod",
    "uri",
    "responses",
    "requestParameters",
    "requestTemplates",
    "passthroughBehavior",
    "contentHandling",
    "cacheKeyParameters",
    "timeoutInMillis",
    "type",
)
_HTTP_INTEGRATION_ORDER = (
    "responseParameters",
    "requestParameters",
    "requestTemplates",
    "passthroughBehavior",
    "contentHandling",
    "responses",
    "cacheKeyParameters",
    "payloadFormatVersion",
    "type",
    "httpMethod",
    "uri",
    "connectionType",
    "timeoutInMillis",
)
_ROOT_EXTENSIONS = (
    "x-amazon-apigateway-api-key-source",
    "x-amazon-apigateway-binary-media-types",
    "x-amazon-apigateway-minimum-compression-size",
    "x-amazon-apigateway-request-validators",
    "x-amazon-apigateway-request-validator",
    "x-amazon-apigateway-gateway-responses",
    "x-amazon-apigateway-policy",
    "x-amazon-apigateway-cors",
    "x-amazon-apigateway-importexport-version",
)


def export_api(
    api: Api | Mapping[str, Any],
    *,
    spec: Spec = "oas30",
    extensions: bool = True,
    stage: str | None = None,
    server_url: str | None = None,
) -> dict[str, Any]:
    """The API as an OpenAPI 3.0.1 (``oas30``) or Swagger 2.0 (``swagger``) document.

    ``stage`` sets the base path (``"/" + stage``; an HTTP API's ``$default`` stage and an export
    without a stage have none, as AWS writes them) and must be one of the API's stages when it
    has any. ``server_url`` (``http://127.0.0.1:8080``) replaces the AWS-shaped
    ``https://{api_id}.execute-api.{region}.amazonaws.com/{basePath}``.
    The result is plain JSON data with a stable key order (paths sorted), so that two exports of
    the same config are equal and the exports of two configs can be diffed.
    Raises ``ValueError`` for an unknown stage, a Swagger export of an HTTP API (AWS exports HTTP
    APIs as OpenAPI 3.0 only), a websocket API, or an unknown ``spec``.
    """
    if not isinstance(api, Api):
        try:
            api = msgspec.convert(dict(api), Api)
        except msgspec.ValidationError as ex:
            raise ValueError(f"not a valid API: {ex}") from None
    if spec not in ("oas30", "swagger"):
        raise ValueError(f"spec {spec!r}: expected 'oas30' or 'swagger'")
    if api.kind == "websocket":
        raise ValueError("websocket APIs have no OpenAPI export")
    if api.kind == "http" and spec == "swagger":
        raise ValueError("HTTP APIs export as OpenAPI 3.0 only (AWS): use spec='oas30'")
    if stage is not None and api.stages and stage not in {s.name for s in api.stages}:
        raise ValueError(f"API {api.name!r} has no stage {stage!r}")
    return _Exporter(api, spec, extensions).document(stage, server_url)


def dump(doc: Mapping[str, Any], fmt: Literal["json", "yaml"]) -> bytes:
    """Serialise an exported document: JSON (2-space indent) or YAML, keys in the document's order."""
    if fmt == "json":
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    if fmt == "yaml":
        text = yaml.dump(
            doc,
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=1 << 30,
        )
        return text.encode()
    raise ValueError(f"format {fmt!r}: expected 'json' or 'yaml'")


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors and aliases (a document reads the same in any tool)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _api_id(api: Api) -> str:
    """The API's id: its own, else derived from the name as the gateway does (config.compile)."""
    return api.id or hashlib.sha1(api.name.encode()).hexdigest()[:10]


def config_builtins(value: Any, *, tagged: bool = False) -> Any:
    """Config data as builtins, structs without their default-valued fields (factories included:
    msgspec's omit_defaults keeps an explicit ``timeout_ms: 29000``); ``tagged``: tagged structs
    (integrations) with their ``type``, as the config writes them."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in msgspec.structs.fields(value):
            v = getattr(value, f.name)
            if f.default is not msgspec.NODEFAULT and v == f.default:
                continue
            if f.default_factory is not msgspec.NODEFAULT and v == f.default_factory():
                continue
            out[f.encode_name] = config_builtins(v, tagged=tagged)
        tag = value.__struct_config__.tag
        return {"type": tag, **out} if tagged and isinstance(tag, str) else out
    if isinstance(value, dict):
        return {k: config_builtins(v, tagged=tagged) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [config_builtins(v, tagged=tagged) for v in value]
    return msgspec.to_builtins(value)


def _leftover(obj: msgspec.Struct, *carried: str) -> dict[str, Any]:
    """The struct's non-default fields (as the config encodes them) minus those carried elsewhere."""
    data: dict[str, Any] = config_builtins(obj)
    for name in carried:
        data.pop(name, None)
    return data


def _status(code: int | str | None) -> str:
    return str(code) if code is not None else "200"


def _sources(spec: str | list[str]) -> list[str]:
    items = spec if isinstance(spec, list) else spec.split(",")
    return [s.strip() for s in items if s.strip()]


class _Exporter:
    """One export: the API, the spec and whether AWS/fastgw extensions are written."""

    __slots__ = ("api", "ext", "kind", "oas3", "uses_api_key", "uses_sigv4")

    def __init__(self, api: Api, spec: Spec, ext: bool) -> None:
        self.api = api
        self.oas3 = spec == "oas30"
        self.ext = ext
        self.kind = api.kind
        self.uses_api_key = False
        self.uses_sigv4 = False

    # ------------------------------------------------------------------------ document
    def document(self, stage: str | None, server_url: str | None) -> dict[str, Any]:
        api = self.api
        doc: dict[str, Any] = {"openapi": "3.0.1"} if self.oas3 else {"swagger": "2.0"}
        info: dict[str, Any] = {"title": api.name}
        if api.description:
            info["description"] = api.description
        info["version"] = "1.0"
        doc["info"] = info
        base = "/" + stage if stage and stage != "$default" else ("" if self.kind == "http" else "/")
        if self.oas3:
            if server_url is None:
                url = f"https://{_api_id(api)}.execute-api.{DEFAULT_REGION}.amazonaws.com/{{basePath}}"
            else:
                url = server_url.rstrip("/") + "{basePath}"
            server: dict[str, Any] = {"url": url}
            described = next((s for s in api.stages if s.name == stage and s.description), None)
            if described is not None:
                server["description"] = described.description
            server["variables"] = {"basePath": {"default": base}}
            doc["servers"] = [server]
        else:
            if server_url is None:
                doc["host"] = f"{_api_id(api)}.execute-api.{DEFAULT_REGION}.amazonaws.com"
                doc["basePath"] = base or "/"
                doc["schemes"] = ["https"]
            else:
                parts = urlsplit(server_url)
                doc["host"] = parts.netloc
                doc["basePath"] = (parts.path.rstrip("/") + base).rstrip("/") or "/"
                doc["schemes"] = [parts.scheme or "https"]
        doc["paths"] = self.paths()
        schemes = self.security_schemes()
        schemas = {name: self.model(schema) for name, schema in sorted(api.models.items())}
        if self.oas3:
            components: dict[str, Any] = {}
            if schemas:
                components["schemas"] = schemas
            if schemes:
                components["securitySchemes"] = schemes
            if components:
                doc["components"] = components
        else:
            if schemes:
                doc["securityDefinitions"] = schemes
            if schemas:
                doc["definitions"] = schemas
        if self.ext:
            doc.update(self.root_extensions())
            # HTTP APIs: AWS's have no models, so the importer reads an HTTP API's from here.
            carried = _API_CARRIED if self.kind == "rest" else tuple(k for k in _API_CARRIED if k != "models")
            doc["x-fastgw-api"] = {"kind": api.kind, **_leftover(api, *carried, "kind")}
        return doc

    def root_extensions(self) -> dict[str, Any]:
        api = self.api
        out: dict[str, Any] = {}
        if api.apiKeySource != "HEADER":
            out["x-amazon-apigateway-api-key-source"] = api.apiKeySource
        if api.binaryMediaTypes:
            out["x-amazon-apigateway-binary-media-types"] = list(api.binaryMediaTypes)
        if api.minimumCompressionSize is not None:
            out["x-amazon-apigateway-minimum-compression-size"] = api.minimumCompressionSize
        if api.requestValidators:
            out["x-amazon-apigateway-request-validators"] = {
                name: {
                    "validateRequestBody": v.validateRequestBody,
                    "validateRequestParameters": v.validateRequestParameters,
                }
                for name, v in api.requestValidators.items()
            }
        if api.requestValidator is not None:
            out["x-amazon-apigateway-request-validator"] = api.requestValidator
        if api.gatewayResponses:
            responses: dict[str, Any] = {}
            for kind, gr in sorted(api.gatewayResponses.items()):
                entry: dict[str, Any] = {}
                if gr.statusCode is not None:
                    # AWS's exports write a gateway response's status as a number.
                    entry["statusCode"] = int(gr.statusCode)
                if gr.responseParameters:
                    entry["responseParameters"] = dict(gr.responseParameters)
                if gr.responseTemplates:
                    entry["responseTemplates"] = dict(gr.responseTemplates)
                responses[kind] = entry
            out["x-amazon-apigateway-gateway-responses"] = responses
        if api.policy is not None:
            out["x-amazon-apigateway-policy"] = copy.deepcopy(api.policy)
        if api.cors is not None:
            out["x-amazon-apigateway-cors"] = config_builtins(api.cors)
        if self.kind == "http":
            out["x-amazon-apigateway-importexport-version"] = "1.0"
        return {k: out[k] for k in _ROOT_EXTENSIONS if k in out}

    # ------------------------------------------------------------------------ models
    def model(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A model as a schema: AWS model URLs become local refs; ``$schema`` goes (OpenAPI's
        schema objects have none; AWS's models are draft 4, which an import restores), another
        draft than 4 is kept as ``x-fastgw-schema``."""
        out = self._rewrite_refs(schema)
        draft = out.pop("$schema", None)
        if self.ext and draft is not None and str(draft).rstrip("#") != _DRAFT4:
            out["x-fastgw-schema"] = draft
        return out

    def _rewrite_refs(self, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k == "$ref" and isinstance(v, str):
                    m = _MODEL_URL.match(v)
                    out[k] = self.ref(m.group(1)) if m else v
                else:
                    out[k] = self._rewrite_refs(v)
            return out
        if isinstance(value, list):
            return [self._rewrite_refs(v) for v in value]
        return value

    def ref(self, model: str) -> str:
        return ("#/components/schemas/" if self.oas3 else "#/definitions/") + model

    # ------------------------------------------------------------------------ paths
    def paths(self) -> dict[str, Any]:
        items: dict[str, dict[str, Any]] = {}
        path_params: dict[str, list[dict[str, Any]]] = {}
        for route in self.api.routes:
            if route.route == "$default":
                if not self.ext:
                    continue  # a catch-all has no plain OpenAPI form
                method, template = "ANY", "/$default"
            else:
                method, _, template = route.route.partition(" ")
            path = template if self.ext else re.sub(r"\{([^{}]+)\+\}", r"{\1}", template)
            item = items.setdefault(path, {})
            if self.kind == "http" and route.route != "$default":
                path_params.setdefault(
                    path, [self.parameter(n, "path", True, greedy=g) for n, g in _params(template)]
                )
            if method == "ANY" and not self.ext:
                for m in _METHOD_ORDER:
                    # An explicit route for the method wins over ANY.
                    if not any(r.route == f"{m.upper()} {template}" for r in self.api.routes):
                        item[m] = self.operation(route, m.upper(), template)
            else:
                item[_ANY if method == "ANY" else method.lower()] = self.operation(route, method, template)
        out: dict[str, Any] = {}
        for path in sorted(items):
            item = items[path]
            ordered = {m: item[m] for m in (*_METHOD_ORDER, _ANY) if m in item}
            if path_params.get(path):
                ordered["parameters"] = path_params[path]
            out[path] = ordered
        return out

    def parameter(self, name: str, where: str, required: bool, *, greedy: bool = False) -> dict[str, Any]:
        p: dict[str, Any] = {"name": name, "in": where}
        if self.kind == "http" and where == "path":
            p["description"] = f"Generated path parameter for {name}"
        elif greedy and not self.ext:
            p["description"] = "Greedy: the rest of the path, slashes included."
        p["required"] = required
        if self.oas3:
            p["schema"] = {"type": "string"}
        else:
            p["type"] = "string"
        return p

    # ------------------------------------------------------------------------ operations
    def operation(self, route: Route, method: str, template: str) -> dict[str, Any]:
        op: dict[str, Any] = {}
        if self.kind == "http":
            # AWS's HTTP APIs have no method request parameters or request models: written as
            # OpenAPI (for the reader) and, for the importer, in x-fastgw-route.
            route_left = _leftover(route, *(k for k in _ROUTE_CARRIED if k not in _HTTP_UNCARRIED))
        else:
            route_left = _leftover(route, *_ROUTE_CARRIED)
        params: list[dict[str, Any]] = []
        if self.kind != "http":
            for n, g in _params(template):
                param = self.parameter(n, "path", True, greedy=g)
                if self.ext and f"method.request.path.{n}" not in route.requestParameters:
                    # OpenAPI requires every template variable declared; the mark keeps an
                    # import from making it one of the route's method request parameters.
                    param["x-fastgw-implicit"] = True
                params.append(param)
        seen = {(p["in"], p["name"]) for p in params}
        uncarried: dict[str, bool] = {}
        for key, required in route.requestParameters.items():
            parts = key.split(".", 3)  # method.request.LOCATION.NAME (a header name may hold dots)
            where = (
                _PARAM_IN.get(parts[2]) if len(parts) == 4 and parts[:2] == ["method", "request"] else None
            )
            if where is None or not parts[3]:
                uncarried[key] = required
                continue
            name = parts[3]
            if (where, name) in seen:
                if where == "path" and not required:
                    uncarried[key] = required  # OpenAPI path parameters are always required
                continue
            seen.add((where, name))
            params.append(self.parameter(name, where, required or where == "path"))
        if uncarried and self.kind != "http":
            # Sorted: an import puts them after the declared ones, whatever the config's order.
            route_left["requestParameters"] = dict(sorted(uncarried.items()))
        if route.requestModels:
            if self.oas3:
                op["requestBody"] = {
                    "content": {
                        ct: {"schema": {"$ref": self.ref(m)}} for ct, m in route.requestModels.items()
                    }
                }
            else:
                op["consumes"] = list(route.requestModels)
                models = list(dict.fromkeys(route.requestModels.values()))
                body = route.requestModels.get("application/json", models[0])
                params.append(
                    {"in": "body", "name": body, "required": True, "schema": {"$ref": self.ref(body)}}
                )
                if len(models) > 1:
                    route_left["requestModels"] = dict(route.requestModels)
        if params:
            op["parameters"] = params
        op["responses"] = self.responses(route)
        requirement: dict[str, list[str]] = {}
        if route.authorizer is not None:
            requirement[route.authorizer] = list(route.authorizationScopes)
        elif route.authorizationScopes:
            route_left["authorizationScopes"] = list(route.authorizationScopes)
        if route.authorizationType == "AWS_IAM":
            requirement["sigv4"] = []
            self.uses_sigv4 = True
        if route.apiKeyRequired:
            requirement["api_key"] = []
            self.uses_api_key = True
        if requirement:
            op["security"] = [requirement]
        if self.ext:
            if route.route == "$default":
                op["isDefaultRoute"] = True
            if route.requestValidator is not None:
                op["x-amazon-apigateway-request-validator"] = route.requestValidator
            integration, integ_left = self.integration(route, method)
            op["x-amazon-apigateway-integration"] = integration
            if route_left:
                op["x-fastgw-route"] = route_left
            if integ_left:
                op["x-fastgw-integration"] = integ_left
        return op

    def responses(self, route: Route) -> dict[str, Any]:
        if self.kind == "http":
            return {"default": {"description": f"Default response for {route.route}"}}
        integ = route.integration
        declared: dict[str, list[str]] = {}
        if isinstance(integ, (MockIntegration, HttpIntegration, AwsIntegration)) and integ.responses:
            for r in integ.responses.values():
                headers = declared.setdefault(_status(r.statusCode), [])
                for target in r.responseParameters:
                    name = target.removeprefix("method.response.header.")
                    if name != target and name not in headers:
                        headers.append(name)
        elif isinstance(integ, MockIntegration) and not integ.requestTemplates:
            declared[str(integ.status)] = list(integ.headers)
        elif isinstance(integ, (HttpProxyIntegration, AwsProxyIntegration)):
            declared["200"] = []
        if not declared:
            return {"default": {"description": "Default response"}}
        out: dict[str, Any] = {}
        for code in sorted(declared):
            resp: dict[str, Any] = {"description": f"{code} response"}
            if declared[code]:
                resp["headers"] = {
                    h: ({"schema": {"type": "string"}} if self.oas3 else {"type": "string"})
                    for h in declared[code]
                }
            out[code] = resp
        return out

    # ------------------------------------------------------------------------ integrations
    def integration(self, route: Route, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(x-amazon-apigateway-integration, x-fastgw-integration leftovers) of a route."""
        integ = route.integration
        http_api = self.kind == "http"
        f: dict[str, Any] = {}
        carried = ["type"]
        if isinstance(integ, (HttpProxyIntegration, HttpIntegration)):
            fixed = integ.httpMethod if isinstance(integ, HttpIntegration) else None
            # No fixed method: the client's, which is the route's (ANY when the route takes any).
            f["httpMethod"] = fixed or ("ANY" if method in ("ANY", "$default") else method)
            carried.append("httpMethod")
        elif isinstance(integ, (AwsIntegration, AwsProxyIntegration)):
            f["httpMethod"] = "POST"
        if not isinstance(integ, MockIntegration):
            f["uri"] = integ.uri
            carried.append("uri")
        if isinstance(integ, HttpProxyIntegration):
            if http_api:
                if integ.parameterMapping:
                    f["requestParameters"] = dict(integ.parameterMapping)
                if integ.responseParameters:
                    f["responseParameters"] = {k: dict(v) for k, v in integ.responseParameters.items()}
                carried += ["parameterMapping", "responseParameters"]
            else:
                if integ.requestParameters:
                    f["requestParameters"] = dict(integ.requestParameters)
                carried.append("requestParameters")
        elif isinstance(integ, HttpIntegration) and not http_api:
            if integ.requestParameters:
                f["requestParameters"] = dict(integ.requestParameters)
            carried.append("requestParameters")
        mock_simple = (
            isinstance(integ, MockIntegration) and not integ.responses and not integ.requestTemplates
        )
        if isinstance(integ, MockIntegration) and mock_simple:
            f["requestTemplates"] = {"application/json": f'{{"statusCode": {integ.status}}}'}
            f["passthroughBehavior"] = integ.passthroughBehavior.lower()
            synthesized: dict[str, Any] = {"statusCode": str(integ.status)}
            if integ.headers:
                synthesized["responseParameters"] = {
                    f"method.response.header.{k}": f"'{v}'" for k, v in integ.headers.items()
                }
            if integ.body:
                synthesized["responseTemplates"] = {"application/json": integ.body}
            f["responses"] = {"default": synthesized}
            carried += ["requestTemplates", "passthroughBehavior", "responses", "status", "headers", "body"]
        elif isinstance(integ, (MockIntegration, HttpIntegration, AwsIntegration)):
            if integ.requestTemplates:
                f["requestTemplates"] = dict(integ.requestTemplates)
            f["passthroughBehavior"] = integ.passthroughBehavior.lower()
            if integ.responses:
                f["responses"] = {pattern: _integration_response(r) for pattern, r in integ.responses.items()}
            carried += ["requestTemplates", "passthroughBehavior", "responses"]
        if isinstance(integ, HttpIntegration) and integ.contentHandling is not None:
            f["contentHandling"] = integ.contentHandling
            carried.append("contentHandling")
        if route.cacheKeyParameters:
            f["cacheKeyParameters"] = list(route.cacheKeyParameters)
        if http_api:
            version = integ.payloadFormatVersion if isinstance(integ, AwsProxyIntegration) else None
            f["payloadFormatVersion"] = version or (
                "2.0" if isinstance(integ, AwsProxyIntegration) else "1.0"
            )
            carried.append("payloadFormatVersion")
            f["connectionType"] = "INTERNET"
        timeout = getattr(integ, "timeout_ms", _DEFAULT_TIMEOUT_MS)
        if timeout <= _TIMEOUT_MAX[self.kind] and not isinstance(integ, MockIntegration):
            f["timeoutInMillis"] = timeout
            carried.append("timeout_ms")
        f["type"] = str(integ.__struct_config__.tag).lower()
        order = _HTTP_INTEGRATION_ORDER if http_api else _REST_INTEGRATION_ORDER
        out = {k: f[k] for k in order if k in f}
        left = _leftover(integ, *carried)
        if isinstance(integ, MockIntegration):
            left.pop("timeout_ms", None)
            if mock_simple:
                left["mock"] = {"status": integ.status, "headers": dict(integ.headers), "body": integ.body}
        return out, left

    # ------------------------------------------------------------------------ security
    def security_schemes(self) -> dict[str, Any]:
        """Authorizers and the API key / SigV4 schemes the routes use (call after paths())."""
        out: dict[str, Any] = {}
        if self.uses_api_key:
            out["api_key"] = {"type": "apiKey", "name": "x-api-key", "in": "header"}
        if self.uses_sigv4:
            sigv4: dict[str, Any] = {"type": "apiKey", "name": "Authorization", "in": "header"}
            if self.ext:
                sigv4["x-amazon-apigateway-authtype"] = "awsSigv4"
            out["sigv4"] = sigv4
        for auth in sorted(self.api.authorizers, key=lambda a: a.name):
            out[auth.name] = self.authorizer(auth)
        return out

    def authorizer(self, auth: AuthorizerConfig) -> dict[str, Any]:
        http_api = self.kind == "http"
        sources = _sources(auth.identitySource)
        joined = (
            auth.identitySource
            if isinstance(auth.identitySource, str) and auth.identitySource
            else ", ".join(sources)
        )
        carried = ["name", "type", "identitySource"]
        spec: dict[str, Any] = {}
        scheme: dict[str, Any]
        if auth.type in ("JWT", "COGNITO_USER_POOLS"):
            source = joined or (
                "$request.header.Authorization" if http_api else "method.request.header.Authorization"
            )
            header = _header_name(source) or "Authorization"
            jc = auth.jwtConfiguration
            if auth.type == "JWT":
                if self.oas3 and self.ext:
                    scheme = {"type": "oauth2", "flows": {}}
                elif self.oas3 and jc is not None and jc.issuer:
                    url = jc.issuer.rstrip("/") + "/.well-known/openid-configuration"
                    scheme = {"type": "openIdConnect", "openIdConnectUrl": url}
                elif self.oas3:
                    scheme = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                else:
                    scheme = {"type": "apiKey", "name": header, "in": "header"}
                spec["identitySource"] = source
                if jc is not None:
                    aws_jc: dict[str, Any] = {}
                    if jc.audience:
                        aws_jc["audience"] = list(jc.audience)
                    if jc.issuer is not None:
                        aws_jc["issuer"] = jc.issuer
                    spec["jwtConfiguration"] = aws_jc
                spec["type"] = "jwt"
            else:
                scheme = {"type": "apiKey", "name": header, "in": "header"}
                if self.ext:
                    scheme["x-amazon-apigateway-authtype"] = "cognito_user_pools"
                spec["type"] = "cognito_user_pools"
                spec["providerARNs"] = list(auth.providerARNs)
                carried.append("providerARNs")
                spec["identitySource"] = source  # the gateway's default when unset, as for JWT
                spec["authorizerResultTtlInSeconds"] = auth.authorizerResultTtlInSeconds
                carried.append("authorizerResultTtlInSeconds")
        else:
            where = "header"
            name = "Unused"  # AWS: several sources, or a source neither header nor query
            if len(sources) == 1:
                single = _header_name(sources[0])
                query = _query_name(sources[0])
                if single is not None:
                    name = single
                elif query is not None:
                    name, where = query, "query"
            elif not sources:
                name = "Authorization"
            scheme = {"type": "apiKey", "name": name, "in": where}
            if self.ext:
                scheme["x-amazon-apigateway-authtype"] = "custom"
            spec["type"] = auth.type.lower()
            if auth.authorizerUri is not None:
                spec["authorizerUri"] = auth.authorizerUri
            carried.append("authorizerUri")
            if joined:
                spec["identitySource"] = joined
            if http_api:
                spec["authorizerPayloadFormatVersion"] = auth.authorizerPayloadFormatVersion or "2.0"
                spec["enableSimpleResponses"] = auth.enableSimpleResponses
                carried += ["authorizerPayloadFormatVersion", "enableSimpleResponses"]
            elif auth.identityValidationExpression is not None:
                spec["identityValidationExpression"] = auth.identityValidationExpression
                carried.append("identityValidationExpression")
            spec["authorizerResultTtlInSeconds"] = auth.authorizerResultTtlInSeconds
            carried.append("authorizerResultTtlInSeconds")
        if not self.ext:
            return scheme
        scheme["x-amazon-apigateway-authorizer"] = spec
        left = _leftover(auth, *carried)
        if auth.type == "JWT" and "jwtConfiguration" in left:
            rest = {k: v for k, v in left.pop("jwtConfiguration").items() if k not in ("issuer", "audience")}
            if rest:
                left["jwtConfiguration"] = rest
        if left:
            scheme["x-fastgw-authorizer"] = left
        return scheme


# Fields each exporter writes in an AWS form (the rest goes to the x-fastgw-* leftovers).
_API_CARRIED = (
    "name",
    "description",
    "apiKeySource",
    "binaryMediaTypes",
    "routes",
    "authorizers",
    "cors",
    "models",
    "requestValidators",
    "requestValidator",
    "policy",
    "gatewayResponses",
    "minimumCompressionSize",
)
_ROUTE_CARRIED = (
    "route",
    "integration",
    "apiKeyRequired",
    "authorizer",
    "authorizationScopes",
    "requestParameters",
    "requestModels",
    "requestValidator",
    "cacheKeyParameters",
    "authorizationType",
)

# Route fields an HTTP API's AWS form cannot carry (they go to x-fastgw-route whole).
_HTTP_UNCARRIED = ("requestParameters", "requestModels")


def _params(template: str) -> list[tuple[str, bool]]:
    """Path parameters of a resource template: (name, greedy)."""
    return [(m.group(1), bool(m.group(2))) for m in _TEMPLATE_PARAM.finditer(template)]


def _header_name(source: str) -> str | None:
    for prefix in ("method.request.header.", "$request.header."):
        if source.startswith(prefix):
            return source[len(prefix) :]
    return None


def _query_name(source: str) -> str | None:
    for prefix in ("method.request.querystring.", "$request.querystring."):
        if source.startswith(prefix):
            return source[len(prefix) :]
    return None


def _integration_response(r: IntegrationResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"statusCode": _status(r.statusCode)}
    if r.responseParameters:
        out["responseParameters"] = dict(r.responseParameters)
    if r.responseTemplates:
        out["responseTemplates"] = dict(r.responseTemplates)
    if r.contentHandling is not None:
        out["contentHandling"] = r.contentHandling
    return out

"""The body of an import: an OpenAPI document (Swagger 2.0 or OpenAPI 3.0) into the parts of a
fastgw ``Api`` mapping, with the JSON path of the document node each part came from.

``Builder.build()`` fills ``parts`` (routes, models, authorizers, API-level settings) and
``origins`` (fastgw config path -> document path, so that the loader's own findings can be
reported where the document says the thing), recording problems in the ``Reader``.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args

from fastgw.config.model import GatewayResponseType
from fastgw.openapi import _import_integration as integ
from fastgw.openapi._import_doc import EXT, Reader, child, pointer_tokens, type_name

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
ANY_METHOD = EXT + "any-method"
MODEL_URL = "https://apigateway.amazonaws.com/restapis/{api_id}/models/{name}"
_MODEL_URL = re.compile(r"^https://apigateway\.amazonaws\.com/restapis/[^/]+/models/([^/#]+)$")
DRAFT4 = "http://json-schema.org/draft-04/schema#"

AUTHORIZER_FIELDS = frozenset(
    {
        "type",
        "authorizerUri",
        "authorizerCredentials",
        "authorizerPayloadFormatVersion",
        "enableSimpleResponses",
        "identitySource",
        "jwtConfiguration",
        "identityValidationExpression",
        "authorizerResultTtlInSeconds",
        "providerARNs",
    }
)
JWT_FIELDS = frozenset({"issuer", "audience"})
CORS_FIELDS = frozenset(
    {"allowOrigins", "allowCredentials", "exposeHeaders", "maxAge", "allowMethods", "allowHeaders"}
)
GATEWAY_RESPONSE_FIELDS = frozenset({"statusCode", "responseParameters", "responseTemplates"})
VALIDATOR_FIELDS = frozenset({"validateRequestBody", "validateRequestParameters"})
ENDPOINT_FIELDS = frozenset({"types", "vpcEndpointIds", "disableExecuteApiEndpoint", "ipAddressType"})
DOCUMENTATION_FIELDS = frozenset({"version", "createdDate", "documentationParts"})
GATEWAY_RESPONSE_TYPES = frozenset(get_args(GatewayResponseType))
#: Root-level extensions, each read by ``Builder._root_extensions``.
ROOT_EXTENSIONS = frozenset(
    EXT + n
    for n in (
        "api-key-source",
        "binary-media-types",
        "cors",
        "documentation",
        "endpoint-configuration",
        "gateway-responses",
        "minimum-compression-size",
        "policy",
        "request-validator",
        "request-validators",
        "importexport-version",
        "importer-version",
        "endpoint-access-mode",
        "security-policy",
    )
)
#: Every extension name AWS documents (for "unknown extension" vs "not allowed here").
KNOWN_EXTENSIONS = ROOT_EXTENSIONS | frozenset(
    EXT + n
    for n in ("any-method", "integration", "integrations", "auth", "authorizer", "authtype", "tag-value")
)


FASTGW_API = "x-fastgw-api"
FASTGW_ROUTE = "x-fastgw-route"
FASTGW_INTEGRATION = "x-fastgw-integration"
FASTGW_AUTHORIZER = "x-fastgw-authorizer"
#: On a path parameter: declared only because OpenAPI requires every template variable to be
#: (not one of the route's method request parameters).
FASTGW_IMPLICIT = "x-fastgw-implicit"
#: On a model: its $schema, when not draft 4.
FASTGW_SCHEMA = "x-fastgw-schema"


def _merged(into: dict[str, Any], extra: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """``into`` with ``extra``'s fields (objects merged one level deep), ``skip`` left out."""
    out = dict(into)
    for key, value in extra.items():
        if key in skip:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class Builder:
    """One document's import; ``kind`` is "rest" or "http"."""

    def __init__(self, doc: dict[str, Any], r: Reader, kind: str, api_id: str) -> None:
        self.doc = doc
        self.r = r
        self.kind = kind
        self.api_id = api_id
        self.swagger = "swagger" in doc
        #: False when the document is not OpenAPI 3.0 / Swagger 2.0 at all (nothing else is read).
        self.readable = True
        self.parts: dict[str, Any] = {}
        self.routes: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.authorizers: list[dict[str, Any]] = []
        #: fastgw config path (relative to the API: "routes[3].integration") -> document path.
        self.origins: dict[str, str] = {}
        #: Route key -> the document path of its operation (conflict messages).
        self.route_paths: dict[str, str] = {}
        self._schemes: dict[str, tuple[str, str, str]] = {}  # name -> (class, path, authorizer type)
        self._scheme_warned: set[str] = set()
        self._validators: set[str] = set()
        self._model_paths: dict[str, str] = {}
        self._ctx_namespaces: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ entry point
    def build(self) -> None:
        doc, r = self.doc, self.r
        if self.swagger:
            if doc.get("swagger") != "2.0":
                r.error("$.swagger", f"expected '2.0', got {doc.get('swagger')!r}")
        else:
            version = doc.get("openapi")
            if not isinstance(version, str):
                r.error("$", "not an OpenAPI document: expected 'openapi: 3.0.x' or 'swagger: 2.0'")
                self.readable = False
                return
            if not version.startswith("3."):
                r.error("$.openapi", f"OpenAPI {version!r} is not supported (3.0.x or Swagger 2.0)")
                self.readable = False
                return
            if not version.startswith("3.0"):
                r.warn("$.openapi", f"API Gateway imports OpenAPI 3.0; {version} is read as 3.0")
        if "info" in doc:
            info = r.obj(doc["info"], "$.info")
            if info is not None and "description" in info:
                desc = r.string(info["description"], "$.info.description")
                if desc:
                    self.parts["description"] = desc
        self._root_extensions()
        self._servers()
        self._tags()
        if self.kind == "rest":
            self._models()
        self._security_schemes()
        self._integrations_component()
        self._paths()
        for ns, paths in self._ctx_namespaces.items():
            if len(paths) > 1:
                for p in paths:
                    r.warn(
                        p,
                        f"cacheNamespace {ns!r} is shared by {len(paths)} integrations: AWS shares their "
                        "cache entries, fastgw keys each route's entries apart",
                    )

    # ------------------------------------------------------------------ root extensions
    def _root_extensions(self) -> None:
        doc, r = self.doc, self.r
        for key, value in doc.items():
            if key not in ROOT_EXTENSIONS:
                continue
            path = child("$", key)
            r.claim(path)
            name = key[len(EXT) :]
            if name == "api-key-source":
                got = r.enum(value, path, ("HEADER", "AUTHORIZER"))
                if got:
                    self.parts["apiKeySource"] = got
            elif name == "binary-media-types":
                types = r.str_list(value, path)
                if types is not None:
                    self.parts["binaryMediaTypes"] = [t.replace("~1", "/") for t in types]
            elif name == "minimum-compression-size":
                size = r.integer(value, path, 0, 10485760)
                if size is not None:
                    self.parts["minimumCompressionSize"] = size
            elif name == "request-validators":
                self._request_validators(value, path)
            elif name == "request-validator":
                got_s = r.string(value, path)
                if got_s is not None:
                    self.parts["requestValidator"] = got_s
                    self.origins["requestValidator"] = path
            elif name == "gateway-responses":
                self._gateway_responses(value, path)
            elif name == "policy":
                self._policy(value, path)
            elif name == "cors":
                self._cors(value, path)
            elif name == "documentation":
                obj = r.obj(value, path)
                if obj is not None:
                    r.fields(obj, path, DOCUMENTATION_FIELDS, EXT + "documentation")
                    parts = obj.get("documentationParts")
                    count = len(parts) if isinstance(parts, list) else 0
                    r.warn(
                        path,
                        f"{key} is not served by fastgw: its {count} documentation part(s) are not kept",
                    )
            elif name == "endpoint-configuration":
                self._endpoint_configuration(value, path)
            elif name in ("importexport-version", "importer-version"):
                got_s = r.string(value, path)
                if got_s is not None and got_s != "1.0":
                    r.error(path, f"{key} {got_s!r} is not supported (only '1.0')")
            elif name == "endpoint-access-mode":
                got = r.enum(value, path, ("BASIC", "STRICT"))
                if got:
                    r.warn(path, f"{key}: endpoint access modes do not apply to fastgw's listeners; ignored")
            elif name == "security-policy":
                if r.string(value, path) is not None:
                    r.warn(
                        path,
                        f"{key}: the TLS policy is gateway-wide in fastgw (gateway.tls.min_version and "
                        "ciphers); ignored",
                    )
        if "requestValidator" in self.parts and self.parts["requestValidator"] not in self._validators:
            r.error(
                self.origins["requestValidator"],
                f"no request validator {self.parts['requestValidator']!r} in {EXT}request-validators",
            )

    def _request_validators(self, value: Any, path: str) -> None:
        obj = self.r.obj(value, path)
        if obj is None:
            return
        out = {}
        for name, spec in obj.items():
            p = child(path, name)
            self._validators.add(name)
            item = self.r.obj(spec, p)
            if item is None:
                continue
            self.r.fields(item, p, VALIDATOR_FIELDS, "a request validator")
            v = {}
            for key in ("validateRequestBody", "validateRequestParameters"):
                if key in item:
                    b = self.r.boolean(item[key], child(p, key))
                    if b:
                        v[key] = True
            out[name] = v
        self.parts["requestValidators"] = out
        self.origins["requestValidators"] = path

    def _gateway_responses(self, value: Any, path: str) -> None:
        r = self.r
        obj = r.obj(value, path)
        if obj is None:
            return
        out: dict[str, Any] = {}
        for rtype, spec in obj.items():
            p = child(path, rtype)
            if rtype not in GATEWAY_RESPONSE_TYPES:
                r.error(p, f"unknown gateway response type {rtype!r}")
                continue
            item = r.obj(spec, p)
            if item is None:
                continue
            r.fields(item, p, GATEWAY_RESPONSE_FIELDS, "a gateway response")
            g: dict[str, Any] = {}
            if "statusCode" in item:
                code = item["statusCode"]
                text = str(code) if isinstance(code, int) and not isinstance(code, bool) else code
                if isinstance(text, str) and re.fullmatch(r"[1-5][0-9][0-9]", text):
                    g["statusCode"] = text
                else:
                    r.error(child(p, "statusCode"), f"expected an HTTP status code, got {code!r}")
            for key in ("responseParameters", "responseTemplates"):
                if key in item:
                    m = r.str_map(item[key], child(p, key))
                    if m:
                        g[key] = m
                        if key == "responseTemplates":
                            for ctype, source in m.items():
                                integ.compile_template(source, child(child(p, key), ctype), r)
            out[rtype] = g
        if self.kind != "rest":
            r.warn(path, "gateway responses exist on REST APIs only (AWS); ignored for this HTTP API")
            return
        self.parts["gatewayResponses"] = out
        self.origins["gatewayResponses"] = path

    def _policy(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as ex:
                self.r.error(path, f"the policy is not a JSON document: {ex}")
                return
        obj = self.r.obj(value, path)
        if obj is not None:
            self.parts["policy"] = obj
            self.origins["policy"] = path

    def _cors(self, value: Any, path: str) -> None:
        r = self.r
        obj = r.obj(value, path)
        if obj is None:
            return
        r.fields(obj, path, CORS_FIELDS, EXT + "cors")
        out: dict[str, Any] = {}
        for key in ("allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders"):
            if key in obj:
                got = r.str_list(obj[key], child(path, key))
                if got is not None:
                    out[key] = got
        if "maxAge" in obj:
            age = r.integer(obj["maxAge"], child(path, "maxAge"), 0, 86400)
            if age is not None:
                out["maxAge"] = age
        if "allowCredentials" in obj:
            cred = r.boolean(obj["allowCredentials"], child(path, "allowCredentials"))
            if cred:
                out["allowCredentials"] = True
        if self.kind != "http":
            r.warn(path, f"{EXT}cors configures HTTP APIs; REST APIs answer preflights with OPTIONS routes")
            return
        self.parts["cors"] = out
        self.origins["cors"] = path

    def _endpoint_configuration(self, value: Any, path: str) -> None:
        r = self.r
        obj = r.obj(value, path)
        if obj is None:
            return
        r.fields(obj, path, ENDPOINT_FIELDS, EXT + "endpoint-configuration")
        for key, why in (
            ("types", "endpoint types (EDGE, REGIONAL, PRIVATE) do not apply to fastgw's own listeners"),
            ("vpcEndpointIds", "VPC endpoints do not exist on bare metal"),
            ("ipAddressType", "the listeners' addresses are set by gateway.listen"),
            (
                "disableExecuteApiEndpoint",
                "fastgw has no switch for the default endpoint: {id}.execute-api.* hosts and stage "
                "prefixes keep answering (put the gateway behind a domain mapping to hide them)",
            ),
        ):
            if key in obj and not (key == "disableExecuteApiEndpoint" and obj[key] is False):
                r.warn(child(path, key), f"{key}: {why}; ignored")

    def _servers(self) -> None:
        # NOTE: the base path (Swagger basePath, OpenAPI servers[].variables.basePath or the
        # servers[].url path) is ignored, as AWS's default basepath=ignore does for both REST
        # and HTTP APIs: the stage (or a domain mapping) gives the API its prefix.
        servers = self.doc.get("servers")
        if servers is None:
            return
        if not isinstance(servers, list):
            self.r.error("$.servers", f"expected an array, got {type_name(servers)}")
            return
        for i, server in enumerate(servers):
            p = child("$.servers", i)
            if isinstance(server, dict) and EXT + "endpoint-configuration" in server:
                ep = child(p, EXT + "endpoint-configuration")
                self.r.claim(ep)
                self._endpoint_configuration(server[EXT + "endpoint-configuration"], ep)

    def _tags(self) -> None:
        tags = self.doc.get("tags")
        if not isinstance(tags, list):
            return
        for i, tag in enumerate(tags):
            if isinstance(tag, dict) and EXT + "tag-value" in tag:
                p = child(child("$.tags", i), EXT + "tag-value")
                self.r.claim(p)
                if self.r.string(tag[EXT + "tag-value"], p) is not None:
                    self.r.warn(p, "AWS tags are not kept by fastgw")

    # ------------------------------------------------------------------ models
    def _model_container(self) -> tuple[Any, str, str]:
        if self.swagger:
            return self.doc.get("definitions"), "$.definitions", "#/definitions/"
        comps = self.doc.get("components")
        schemas = comps.get("schemas") if isinstance(comps, dict) else None
        return schemas, "$.components.schemas", "#/components/schemas/"

    def _models(self) -> None:
        r = self.r
        container, path, _ = self._model_container()
        if container is None:
            return
        obj = r.obj(container, path)
        if obj is None:
            return
        for name in obj:
            self._model_paths[name] = child(path, name)
        for name, schema in obj.items():
            p = child(path, name)
            if not isinstance(schema, dict):
                r.error(p, f"a model is a JSON Schema object, got {type_name(schema)}")
                continue
            alias = self._alias_loop(name)
            if alias is not None:
                r.error(child(p, "$ref"), f"$ref loop: {alias}")
                continue
            converted = self._schema(schema, p, ())
            if not isinstance(converted, dict):
                continue
            if FASTGW_SCHEMA in converted:
                # fastgw's export: the model's draft when not 4 (OpenAPI schemas have no $schema).
                draft = r.string(converted.pop(FASTGW_SCHEMA), child(p, FASTGW_SCHEMA))
                if draft is not None and "$schema" not in converted:
                    converted = {"$schema": draft, **converted}
            if "$schema" not in converted:
                converted = {"$schema": DRAFT4, **converted}
            self.models[name] = converted
            self.origins[f"models.{name}"] = p
        self._check_models()

    def _model_ref(self, ref: str) -> str | None:
        """The model a reference names ('#/definitions/X', '#/components/schemas/X' or AWS's
        model URL), else None."""
        _, _, prefix = self._model_container()
        if ref.startswith(prefix):
            tokens = pointer_tokens(ref)
            depth = prefix.count("/") - 1  # '#/definitions/' -> 1, '#/components/schemas/' -> 2
            return tokens[depth] if len(tokens) == depth + 1 else None
        m = _MODEL_URL.match(ref)
        return m.group(1) if m else None

    def _alias_loop(self, name: str) -> str | None:
        """A chain of models that are nothing but a $ref to the next, back to ``name``."""
        container, _, prefix = self._model_container()
        chain = [prefix + name]
        current = name
        while True:
            schema = container.get(current) if isinstance(container, dict) else None
            if not (isinstance(schema, dict) and isinstance(schema.get("$ref"), str)):
                return None
            target = self._model_ref(schema["$ref"])
            if target is None:
                return None
            ref = prefix + target
            if ref in chain:
                return " -> ".join([*chain, ref]) if ref == chain[0] else None
            chain.append(ref)
            current = target

    def _schema(self, node: Any, path: str, stack: tuple[str, ...]) -> Any:
        """A schema with model references rewritten into AWS's model URLs and other local
        references inlined (a loop among those is an error)."""
        r = self.r
        if isinstance(node, list):
            return [self._schema(v, child(path, i), stack) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            model = self._model_ref(ref)
            if model is not None:
                if model not in self._model_paths:
                    r.error(child(path, "$ref"), f"$ref {ref!r}: no model {model!r} in the document")
                    return {}
                return {"$ref": MODEL_URL.format(api_id=self.api_id, name=model)}
            if not ref.startswith("#"):
                r.error(
                    child(path, "$ref"),
                    f"external $ref {ref!r} is not supported (only local '#/...' references)",
                )
                return {}
            if ref in stack:
                r.error(child(path, "$ref"), "$ref loop: " + " -> ".join([*stack, ref]))
                return {}
            found, target = r.lookup(ref)
            if not found:
                r.error(child(path, "$ref"), f"$ref {ref!r} points at nothing in the document")
                return {}
            return self._schema(target, path, (*stack, ref))
        if ref is not None:
            r.error(child(path, "$ref"), f"$ref must be a string, got {type_name(ref)}")
            return {}
        return {k: self._schema(v, child(path, k), stack) for k, v in node.items()}

    def _check_models(self) -> None:
        from fastgw.pipeline.validation import compile_models

        _, errors = compile_models(self.models)
        for name, message in errors:
            self.r.error(self._model_paths.get(name, "$"), message)

    # ------------------------------------------------------------------ security
    def _security_schemes(self) -> None:
        r = self.r
        if self.swagger:
            raw, path = self.doc.get("securityDefinitions"), "$.securityDefinitions"
        else:
            comps = self.doc.get("components")
            raw = comps.get("securitySchemes") if isinstance(comps, dict) else None
            path = "$.components.securitySchemes"
        if raw is None:
            return
        schemes = r.obj(raw, path)
        if schemes is None:
            return
        for name, node in schemes.items():
            spec, p = r.deref(node, child(path, name))
            if spec is None:
                continue
            spec = r.obj(spec, p)
            if spec is None:
                continue
            for key in (EXT + "authorizer", EXT + "authtype"):
                if key in spec:
                    r.claim(child(p, key))
            authtype = spec.get(EXT + "authtype")
            if authtype is not None and r.string(authtype, child(p, EXT + "authtype")) is None:
                authtype = None
            if EXT + "authorizer" in spec:
                atype = self._authorizer(name, spec, p)
                self._schemes[name] = ("authorizer", p, atype or "")
            elif isinstance(authtype, str) and authtype.lower() == "awssigv4":
                self._schemes[name] = ("iam", p, "")
            elif (
                spec.get("type") == "apiKey"
                and spec.get("in") == "header"
                and isinstance(spec.get("name"), str)
                and spec["name"].lower() == "x-api-key"
            ):
                self._schemes[name] = ("apikey", p, "")
            else:
                self._schemes[name] = ("other", p, "")

    def _authorizer(self, name: str, scheme: dict[str, Any], path: str) -> str | None:
        r = self.r
        p = child(path, EXT + "authorizer")
        spec = r.obj(scheme[EXT + "authorizer"], p)
        if spec is None:
            return None
        r.fields(spec, p, AUTHORIZER_FIELDS, EXT + "authorizer")
        if "type" not in spec:
            r.error(p, "missing required field 'type'")
            return None
        atype = r.enum(spec["type"], child(p, "type"), ("token", "request", "cognito_user_pools", "jwt"))
        if atype is None:
            return None
        out: dict[str, Any] = {"name": name, "type": atype.upper()}

        def at(key: str) -> str:
            return child(p, key)

        if "authorizerUri" in spec:
            uri = r.string(spec["authorizerUri"], at("authorizerUri"))
            if uri is not None and integ.check_lambda_uri(r, uri, at("authorizerUri")):
                out["authorizerUri"] = uri
        if "authorizerCredentials" in spec and r.string(
            spec["authorizerCredentials"], at("authorizerCredentials")
        ):
            r.warn(
                at("authorizerCredentials"),
                "authorizer credentials (an IAM role) are ignored: fastgw has no IAM roles",
            )
        if "identitySource" in spec:
            src = spec["identitySource"]
            if isinstance(src, list):
                got_l = r.str_list(src, at("identitySource"))
                if got_l is not None:
                    out["identitySource"] = ", ".join(got_l)
            else:
                got = r.string(src, at("identitySource"))
                if got is not None:
                    out["identitySource"] = got
        elif atype in ("token", "cognito_user_pools") and scheme.get("in") == "header":
            header = scheme.get("name")
            if isinstance(header, str) and header:
                # AWS takes a TOKEN / Cognito authorizer's header from the scheme's `name`.
                prefix = "$request.header." if self.kind == "http" else "method.request.header."
                out["identitySource"] = prefix + header
        if "identityValidationExpression" in spec:
            got = r.string(spec["identityValidationExpression"], at("identityValidationExpression"))
            if got is not None:
                out["identityValidationExpression"] = got
        if "authorizerResultTtlInSeconds" in spec:
            ttl = r.integer(spec["authorizerResultTtlInSeconds"], at("authorizerResultTtlInSeconds"), 0, 3600)
            if ttl is not None:
                out["authorizerResultTtlInSeconds"] = ttl
        if "authorizerPayloadFormatVersion" in spec:
            v = r.enum(
                spec["authorizerPayloadFormatVersion"], at("authorizerPayloadFormatVersion"), ("1.0", "2.0")
            )
            if v is not None:
                out["authorizerPayloadFormatVersion"] = v
        if "enableSimpleResponses" in spec:
            b = r.boolean(spec["enableSimpleResponses"], at("enableSimpleResponses"))
            if b:
                out["enableSimpleResponses"] = True
        if "providerARNs" in spec:
            arns = r.str_list(spec["providerARNs"], at("providerARNs"))
            if arns is not None:
                out["providerARNs"] = arns
        jwt: dict[str, Any] = {}
        if "jwtConfiguration" in spec:
            jp = at("jwtConfiguration")
            jc = r.obj(spec["jwtConfiguration"], jp)
            if jc is not None:
                r.fields(jc, jp, JWT_FIELDS, "jwtConfiguration")
                if "issuer" in jc:
                    iss = r.string(jc["issuer"], child(jp, "issuer"))
                    if iss is not None:
                        jwt["issuer"] = iss
                if "audience" in jc:
                    aud = jc["audience"]
                    got_a = [aud] if isinstance(aud, str) else r.str_list(aud, child(jp, "audience"))
                    if got_a is not None:
                        jwt["audience"] = got_a
        if atype == "jwt" and "issuer" not in jwt:
            url = scheme.get("openIdConnectUrl")
            if isinstance(url, str) and url:
                # AWS finds the issuer from openIdConnectUrl (ISSUER/.well-known/openid-configuration).
                jwt["issuer"] = url.removesuffix("/.well-known/openid-configuration")
        if jwt:
            out["jwtConfiguration"] = jwt
        if FASTGW_AUTHORIZER in scheme:
            left = r.obj(scheme[FASTGW_AUTHORIZER], child(path, FASTGW_AUTHORIZER))
            for key, value in (left or {}).items():
                if key == "jwtConfiguration" and isinstance(value, dict):
                    out[key] = {**out.get(key, {}), **value}
                elif key not in ("name", "type"):
                    out[key] = value
        self.origins[f"authorizers[{len(self.authorizers)}]"] = p
        self.authorizers.append(out)
        return atype

    def _security(self, requirements: Any, path: str, route: dict[str, Any]) -> None:
        """Apply a security requirement list to a route (every scheme it names, as AWS does)."""
        r = self.r
        if not isinstance(requirements, list):
            r.error(path, f"expected an array of security requirements, got {type_name(requirements)}")
            return
        authorizer: str | None = None
        scopes: list[str] = []
        for i, req in enumerate(requirements):
            rp = child(path, i)
            obj = r.obj(req, rp)
            if obj is None:
                continue
            for name, scope_list in obj.items():
                sp = child(rp, name)
                got_scopes = r.str_list(scope_list, sp)
                scheme = self._schemes.get(name)
                if scheme is None:
                    r.error(sp, f"no security scheme {name!r} in the document")
                    continue
                cls, scheme_path, atype = scheme
                if cls == "authorizer":
                    if authorizer is not None and authorizer != name:
                        r.error(
                            sp, f"a method has one authorizer: both {authorizer!r} and {name!r} are required"
                        )
                        continue
                    authorizer = name
                    if got_scopes:
                        if atype in ("jwt", "cognito_user_pools"):
                            scopes.extend(s for s in got_scopes if s not in scopes)
                        else:
                            r.warn(
                                sp, f"scopes apply to JWT and Cognito authorizers only; {name!r} ignores them"
                            )
                elif cls == "iam":
                    route["authorizationType"] = "AWS_IAM"
                elif cls == "apikey":
                    route["apiKeyRequired"] = True
                elif name not in self._scheme_warned:
                    self._scheme_warned.add(name)
                    r.warn(
                        scheme_path,
                        f"security scheme {name!r} has no {EXT}authorizer: API Gateway (and fastgw) "
                        "does not enforce it",
                    )
        if authorizer is not None:
            route["authorizer"] = authorizer
            if scopes:
                route["authorizationScopes"] = scopes

    # ------------------------------------------------------------------ integrations
    def _integrations_component(self) -> None:
        """HTTP APIs' reusable integrations: each is checked once, even if no route uses it."""
        comps = self.doc.get("components")
        if not isinstance(comps, dict) or EXT + "integrations" not in comps:
            return
        path = child("$.components", EXT + "integrations")
        self.r.claim(path)
        obj = self.r.obj(comps[EXT + "integrations"], path)
        if obj is None:
            return
        if self.kind != "http":
            self.r.warn(path, f"{EXT}integrations is an HTTP API extension; routes may still $ref them")
        for name, node in obj.items():
            p = child(path, name)
            target, tp = self.r.deref(node, p)
            if target is not None:
                integ.convert(target, tp, self.r, integ.Context(self.kind, None))

    # ------------------------------------------------------------------ paths
    def _paths(self) -> None:
        r = self.r
        if "paths" not in self.doc:
            r.warn("$", "the document has no paths: the API has no routes")
            return
        paths = r.obj(self.doc["paths"], "$.paths")
        if paths is None:
            return
        root_security = self.doc.get("security")
        shapes: dict[tuple[str, tuple[str, ...]], str] = {}
        siblings: dict[tuple[tuple[str, ...], str], tuple[str, str]] = {}
        for template, item in paths.items():
            p = child("$.paths", template)
            if template.startswith("x-"):
                continue  # a vendor extension of the Paths object
            if not template.startswith("/"):
                r.error(p, f"a path must start with '/', got {template!r}")
                continue
            item, ip = r.deref(item, p)
            if item is None:
                continue
            item = r.obj(item, ip)
            if item is None:
                continue
            shared_params = item.get("parameters", [])
            for key, op in item.items():
                op_path = child(ip, key)
                if key == "trace":
                    r.warn(op_path, "TRACE is not an API Gateway method; the operation is skipped")
                    r.claim(op_path)
                    continue
                if key == ANY_METHOD:
                    r.allow(op_path)
                    method = "ANY"
                elif key in METHODS:
                    method = key.upper()
                else:
                    continue
                op_obj = r.obj(op, op_path)
                if op_obj is None:
                    continue
                self._operation(
                    template, method, op_obj, op_path, shared_params, ip, root_security, shapes, siblings
                )

    def _operation(
        self,
        template: str,
        method: str,
        op: dict[str, Any],
        path: str,
        shared_params: Any,
        item_path: str,
        root_security: Any,
        shapes: dict[tuple[str, tuple[str, ...]], str],
        siblings: dict[tuple[tuple[str, ...], str], tuple[str, str]],
    ) -> None:
        r = self.r
        for key in (EXT + "integration", EXT + "auth", EXT + "request-validator"):
            if key in op:
                r.claim(child(path, key))
        is_default = False
        if "isDefaultRoute" in op:
            is_default = bool(r.boolean(op["isDefaultRoute"], child(path, "isDefaultRoute")))
            if is_default and self.kind != "http":
                r.error(child(path, "isDefaultRoute"), "the $default route exists on HTTP APIs only")
                return
        key = "$default" if is_default else f"{method} {template}"
        if not is_default and not self._check_template(method, template, path, shapes, siblings):
            return
        ip = child(path, EXT + "integration")
        if EXT + "integration" not in op:
            r.warn(path, f"no {EXT}integration: the operation has no backend and is skipped")
            return
        target, tp = r.deref(op[EXT + "integration"], ip)
        if target is None:
            return
        ctx = integ.Context(self.kind, method, self._ctx_namespaces)
        converted = integ.convert(target, tp, r, ctx)
        if converted is None:
            return
        route: dict[str, Any] = {"route": key, "integration": converted.integration}
        if key in self.route_paths:
            r.error(path, f"route {key!r} is defined twice (also at {self.route_paths[key]})")
            return
        if converted.cache_key_parameters:
            route["cacheKeyParameters"] = converted.cache_key_parameters
        security = op["security"] if "security" in op else root_security
        if security is not None:
            self._security(security, child(path, "security") if "security" in op else "$.security", route)
        auth_path = child(path, EXT + "auth")
        if EXT + "auth" in op:
            auth = r.obj(op[EXT + "auth"], auth_path)
            if auth is not None:
                r.fields(auth, auth_path, frozenset({"type"}), EXT + "auth")
                atype = r.enum(auth.get("type"), child(auth_path, "type"), ("NONE", "AWS_IAM"))
                if atype == "AWS_IAM":
                    route["authorizationType"] = "AWS_IAM"
                elif atype == "NONE":
                    route.pop("authorizationType", None)
        if route.get("authorizationType") == "AWS_IAM" and "authorizer" in route:
            r.error(path, "a method is either AWS_IAM or guarded by an authorizer, not both")
            return
        vp = child(path, EXT + "request-validator")
        if EXT + "request-validator" in op:
            name = r.string(op[EXT + "request-validator"], vp)
            if name is not None:
                if name not in self._validators:
                    r.error(vp, f"no request validator {name!r} in {EXT}request-validators")
                else:
                    route["requestValidator"] = name
        if self.kind == "rest":
            self._request_parameters(template, method, op, path, shared_params, item_path, route)
        # NOTE: last, so that fastgw's own fields win over what the AWS form implies (a Swagger
        # body parameter's one model, the declared parameters' requestParameters).
        self._fastgw_leftovers(op, path, route)
        index = len(self.routes)
        self.origins[f"routes[{index}]"] = path
        self.origins[f"routes[{index}].integration"] = tp
        self.route_paths[key] = path
        self.routes.append(route)

    def _fastgw_leftovers(self, op: dict[str, Any], path: str, route: dict[str, Any]) -> None:
        """What fastgw's exporter wrote beside AWS's extensions (``x-fastgw-route`` and
        ``x-fastgw-integration``: settings AWS has no form for) goes back into the route, over
        what the AWS form said (objects merged one level deep: ``requestModels`` and
        ``requestParameters`` entries replace the ones read from the parameters and body)."""
        r = self.r
        if FASTGW_INTEGRATION in op:
            left = r.obj(op[FASTGW_INTEGRATION], child(path, FASTGW_INTEGRATION))
            if left is not None:
                current = route["integration"]
                if isinstance(left.get("mock"), dict):
                    # A MOCK in fastgw's simple form (status, headers, body), written as AWS's form
                    # (whose passthroughBehavior is the route's own).
                    aws_form = current
                    current = {"type": "MOCK", **left["mock"]}
                    if "passthroughBehavior" in aws_form:
                        current["passthroughBehavior"] = aws_form["passthroughBehavior"]
                route["integration"] = _merged(current, left, ("type", "mock"))
        if FASTGW_ROUTE in op:
            left = r.obj(op[FASTGW_ROUTE], child(path, FASTGW_ROUTE))
            if left is not None:
                route.update(_merged(route, left, ("route", "integration")))

    def _check_template(
        self,
        method: str,
        template: str,
        path: str,
        shapes: dict[tuple[str, tuple[str, ...]], str],
        siblings: dict[tuple[tuple[str, ...], str], tuple[str, str]],
    ) -> bool:
        """Route conflicts as AWS refuses them: the same method on two paths of one shape
        (/pets/{id} and /pets/{petId}), and differently named variables at one position."""
        r = self.r
        segments = template[1:].split("/") if template != "/" else []
        shape: list[str] = []
        ok = True
        for seg in segments:
            if seg.startswith("{") and seg.endswith("}"):
                kind = "{+}" if seg.endswith("+}") else "{}"
                prev = siblings.setdefault((tuple(shape), kind), (seg, path))
                if prev[0] != seg:
                    r.error(
                        path,
                        f"conflicting routes: {seg} and {prev[0]} (at {prev[1]}) are variables at the same "
                        "position; API Gateway allows one name per position",
                    )
                    ok = False
                shape.append(kind)
            else:
                shape.append(seg)
        key = (method, tuple(shape))
        if key in shapes and ok:
            r.error(
                path,
                f"conflicting routes: {method} {template} matches the same requests as {shapes[key]}",
            )
            return False
        shapes.setdefault(key, path)
        return ok

    def _request_parameters(
        self,
        template: str,
        method: str,
        op: dict[str, Any],
        path: str,
        shared: Any,
        item_path: str,
        route: dict[str, Any],
    ) -> None:
        """REST method request parameters and request models (Swagger body parameters,
        OpenAPI 3 request bodies)."""
        r = self.r
        params: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for raw, base in (
            (shared, child(item_path, "parameters")),
            (op.get("parameters", []), child(path, "parameters")),
        ):
            if not isinstance(raw, list):
                r.error(base, f"expected an array of parameters, got {type_name(raw)}")
                continue
            for i, node in enumerate(raw):
                param, pp = r.deref(node, child(base, i))
                if param is None:
                    continue
                param = r.obj(param, pp)
                if param is None:
                    continue
                name, where = param.get("name"), param.get("in")
                if not isinstance(name, str) or not isinstance(where, str):
                    r.error(pp, "a parameter needs a string 'name' and 'in'")
                    continue
                params[(where, name)] = (param, pp)  # the operation's replace the path item's
        out: dict[str, bool] = {}
        template_params = set(re.findall(r"\{([^}+]+)\+?\}", template))
        consumes = op.get("consumes", self.doc.get("consumes"))
        for (where, name), (param, pp) in params.items():
            required = param.get("required") is True
            if where == "path":
                if name not in template_params:
                    r.error(pp, f"path parameter {name!r} is not in the path {template!r}")
                    continue
                if FASTGW_IMPLICIT in param and r.boolean(param[FASTGW_IMPLICIT], child(pp, FASTGW_IMPLICIT)):
                    # fastgw's export declares every template variable (OpenAPI requires it) and
                    # marks those the route's requestParameters did not name.
                    continue
                out[f"method.request.path.{name}"] = True
            elif where == "query":
                out[f"method.request.querystring.{name}"] = required
            elif where == "header":
                out[f"method.request.header.{name}"] = required
            elif where == "body" and self.swagger:
                types = consumes if isinstance(consumes, list) and consumes else ["application/json"]
                self._body_model(param.get("schema"), child(pp, "schema"), types, method, template, op, route)
            else:
                r.warn(pp, f"{where!r} parameters are not API Gateway method request parameters; ignored")
        if out:
            route["requestParameters"] = out
        if "requestBody" in op and not self.swagger:
            body, bp = r.deref(op["requestBody"], child(path, "requestBody"))
            body = r.obj(body, bp) if body is not None else None
            content = body.get("content") if body is not None else None
            if isinstance(content, dict):
                for ctype, media in content.items():
                    mp = child(child(bp, "content"), ctype)
                    if isinstance(media, dict) and "schema" in media:
                        self._body_model(
                            media["schema"], child(mp, "schema"), [ctype], method, template, op, route
                        )
            elif content is not None:
                r.error(child(bp, "content"), f"expected an object, got {type_name(content)}")

    def _body_model(
        self,
        schema: Any,
        path: str,
        ctypes: list[Any],
        method: str,
        template: str,
        op: dict[str, Any],
        route: dict[str, Any],
    ) -> None:
        """The request model of each content type: the model a $ref names, or a model made for
        an inline JSON schema."""
        r = self.r
        if not isinstance(schema, dict):
            if schema is not None:
                r.error(path, f"expected a schema object, got {type_name(schema)}")
            return
        model: str | None = None
        ref = schema.get("$ref")
        if isinstance(ref, str) and self._model_ref(ref) is not None:
            model = self._model_ref(ref)
            if model not in self.models:
                if model not in self._model_paths:
                    r.error(child(path, "$ref"), f"$ref {ref!r}: no model {model!r} in the document")
                return  # a broken model was reported where it is
        elif not schema:
            return
        json_types = [c for c in ctypes if isinstance(c, str) and ("json" in c.lower() or c == "*/*")]
        if model is None:
            if not json_types:
                return  # API Gateway validates JSON bodies only
            converted = self._schema(schema, path, ())
            if not isinstance(converted, dict):
                return
            model = self._inline_model_name(method, template, op)
            self.models[model] = {"$schema": DRAFT4, **converted}
            self._model_paths[model] = path
            self.origins[f"models.{model}"] = path
            from fastgw.pipeline.validation import compile_models

            for _, message in compile_models({model: self.models[model]})[1]:
                r.error(path, message)
        models = route.setdefault("requestModels", {})
        for ctype in ctypes:
            if isinstance(ctype, str):
                models[ctype] = model

    def _inline_model_name(self, method: str, template: str, op: dict[str, Any]) -> str:
        op_id = op.get("operationId")
        base = ""
        if isinstance(op_id, str):
            base = "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", op_id))
        if not base:
            words = re.findall(r"[A-Za-z0-9]+", template)
            base = method.title() + "".join(w[:1].upper() + w[1:] for w in words)
        base = (base + "Body") if not base.endswith("Body") else base
        name, n = base, 2
        while name in self.models or name in self._model_paths:
            name, n = f"{base}{n}", n + 1
        return name

"""Import an OpenAPI definition with API Gateway extensions into a fastgw ``Api`` mapping.

Reads what ``aws apigateway get-export --parameters extensions=apigateway`` (REST APIs) and
``aws apigatewayv2 export-api`` (HTTP APIs) write, and what people write for ``import-rest-api``
/ ``import-api``: OpenAPI 3.0.x or Swagger 2.0, JSON or YAML, at most 6 MB (AWS's limit)::

    result = import_document("petstore.yaml", stage_variables={"backend": "10.0.0.5:8080"})
    config = {"apis": [result.api], "functions": {n: {...} for n in result.functions}}

Every problem is collected with the JSON path of the node it concerns, and one
``OpenApiImportError`` lists them all. Warnings (``ImportResult.warnings``) name what AWS would
honour and fastgw does not; ``strict=True`` refuses them, as AWS's ``failonwarnings=true``.
Unknown ``x-amazon-apigateway-*`` extensions, unknown fields inside a known one, a known one in a
place where AWS does not read it, wrong types, ``$ref`` loops, external references, mapping
templates that do not parse and conflicting routes are errors. Other ``x-`` vendor extensions are
ignored. Finally the produced API goes through fastgw's own loader (``decode_config`` and
``compile_config`` via ``check_document``, with every referenced function bound to a stub), so an
import that returns never yields a config fastgw refuses.

Choices, where AWS leaves one:

- **Base path.** Ignored (AWS's default ``basepath=ignore``, for REST and HTTP APIs alike): the
  Swagger ``basePath``, the OpenAPI ``servers[].variables.basePath`` and any path in
  ``servers[].url`` do not prefix routes; a stage (``/prod``) or a domain's base-path mapping gives
  the API its prefix, as on AWS.
- **Kind.** ``x-amazon-apigateway-importexport-version`` marks an HTTP API export; anything else is
  read as a REST API. HTTP APIs get no models, method request parameters or request models (AWS's
  HTTP APIs have none) but those fastgw's own export carries (below); ``isDefaultRoute`` makes the
  ``$default`` route.
- **Security.** Every scheme named by an operation's ``security`` list applies (AWS reads the
  requirement objects together): an authorizer scheme sets ``authorizer`` (scopes become
  ``authorizationScopes`` for JWT and Cognito authorizers), an ``x-api-key`` header scheme sets
  ``apiKeyRequired``, an ``awsSigv4`` scheme (or ``x-amazon-apigateway-auth: AWS_IAM``) sets
  ``authorizationType: AWS_IAM``. Schemes without an API Gateway meaning are reported, not
  enforced (AWS does not enforce them either). A TOKEN or Cognito authorizer without
  ``identitySource`` reads the header its scheme names.
- **Models.** ``definitions`` / ``components.schemas`` become draft-4 models whose references to
  one another are AWS's model URLs (``https://apigateway.amazonaws.com/restapis/ID/models/NAME``,
  what fastgw's validator resolves); other local references are inlined. An inline JSON request
  body schema becomes a model named after the operation (``operationId`` + ``Body``).
- **Operations without an integration** are skipped with a warning (AWS imports them but cannot
  deploy them).
- **cacheNamespace** is accepted silently when one route uses it (fastgw keys each route's cache
  apart, which is AWS's default namespace); a namespace shared by several routes is reported.
- **Id.** ``api_id``, else ``base``'s, else the one fastgw's export carried (``x-fastgw-api``),
  else the id fastgw's loader derives from the name (so importing never moves an API's
  ``{id}.execute-api`` address). The name is ``name``, else ``base``'s, else ``info.title``.
- **fastgw's own export.** ``x-fastgw-api`` / ``-route`` / ``-integration`` / ``-authorizer``
  (written by ``fastgw.openapi.export`` for what AWS's extensions cannot carry: stages, plugins,
  upstream targets, fastgw-only authorizer settings, an HTTP API's models) are read back, over
  what the AWS form says, and a path parameter marked ``x-fastgw-implicit: true`` (declared only
  because OpenAPI requires it) is not made a method request parameter, so export then import
  gives the API again. Other vendors' ``x-`` extensions are ignored, their content unread.
- **Modes.** ``overwrite`` replaces routes, models, authorizers and the API settings the document
  sets, keeping ``base``'s id, name, stages and plugins; ``merge`` adds the document to ``base``,
  the document winning on conflicts (a route of the same key or matching the same requests, a
  model, authorizer, validator or gateway response of the same name). In both modes a kept route
  key keeps its fastgw-only settings (``plugins``; an HTTP_PROXY's ``targets`` and
  ``pass_query`` when the URI is unchanged), and stage settings keyed by routes that no longer
  exist are dropped with a warning. Paths of problems in ``base`` start with ``base``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastgw.openapi import _import_integration as integ
from fastgw.openapi._import_api import FASTGW_API, KNOWN_EXTENSIONS, Builder
from fastgw.openapi._import_doc import (
    EXT,
    MAX_DOCUMENT_BYTES,
    ImportProblem,
    OpenApiImportError,
    Reader,
    approx_size,
    child,
    normalize,
    parse_text,
    read_source,
    type_name,
    walk_extensions,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ImportProblem",
    "ImportResult",
    "OpenApiImportError",
    "detect_kind",
    "import_document",
    "load_document",
]

_API_ID = re.compile(r"^[a-z0-9]{1,32}$")
#: The function every referenced name is bound to while the produced API is checked.
_STUB_FUNCTION = {"url": "http://127.0.0.1:9"}
_STUB_IAM = {
    "users": [
        {
            "accessKeyId": "AKIAIMPORTCHECK00000",
            "arn": "arn:aws:iam::123456789012:user/import-check",
            "secretAccessKey": "import-check",
        }
    ]
}


@dataclass
class ImportResult:
    """An imported API: the fastgw ``Api`` mapping, what was not honoured, the functions to bind."""

    api: dict[str, Any]
    warnings: list[ImportProblem]
    #: Lambda function names the API's integration and authorizer URIs reference (sorted, unique).
    functions: list[str]
    kind: Literal["rest", "http"]


def load_document(source: str | bytes | os.PathLike[str]) -> dict[str, Any]:
    """JSON or YAML text/bytes, or a path; refuses > MAX_DOCUMENT_BYTES and non-object roots with
    OpenApiImportError."""
    text, name = read_source(source)
    try:
        data = normalize(parse_text(text, name))
    except RecursionError:
        raise OpenApiImportError([ImportProblem("$", "the document is nested too deeply", "error")]) from None
    if not isinstance(data, dict):
        raise OpenApiImportError(
            [ImportProblem("$", f"the document's root must be an object, got {type_name(data)}", "error")]
        )
    return data


def detect_kind(doc: Mapping[str, Any]) -> Literal["rest", "http"]:
    """'http' when the document has x-amazon-apigateway-importexport-version (AWS's HTTP API
    export), else 'rest'."""
    return "http" if EXT + "importexport-version" in doc else "rest"


def exported_id(doc: Mapping[str, Any]) -> str | None:
    """The API id an AWS export names in its address (``servers[].url`` or Swagger ``host``:
    ``{id}.execute-api.{region}.amazonaws.com``), so that its resource policy's ARNs match."""
    hosts: list[Any] = [doc.get("host")]
    servers = doc.get("servers")
    if isinstance(servers, list):
        for server in servers:
            url = server.get("url") if isinstance(server, dict) else None
            if isinstance(url, str) and "://" in url:
                hosts.append(url.split("://", 1)[1].split("/", 1)[0])
    for host in hosts:
        if isinstance(host, str) and ".execute-api." in host:
            candidate = host.split(".", 1)[0].lower()
            if _API_ID.match(candidate):
                return candidate
    return None


def derive_api_id(name: str) -> str:
    """A stable AWS-looking id (10 lower-case alphanumerics) for an API name: the one fastgw's
    loader derives for an API without ``id``, so importing never changes an API's address."""
    return hashlib.sha1(name.encode()).hexdigest()[:10]


def import_document(
    doc: Mapping[str, Any] | str | bytes | os.PathLike[str],
    *,
    kind: Literal["rest", "http"] | None = None,
    strict: bool = False,
    mode: Literal["overwrite", "merge"] = "overwrite",
    base: Mapping[str, Any] | None = None,
    name: str | None = None,
    api_id: str | None = None,
    stage: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> ImportResult:
    """Import ``doc`` as a fastgw ``Api`` mapping; raise ``OpenApiImportError`` with every
    problem (warnings too when ``strict``)."""
    if mode not in ("overwrite", "merge"):
        raise ValueError(f"mode must be 'overwrite' or 'merge', got {mode!r}")
    if kind not in (None, "rest", "http"):
        raise ValueError(f"kind must be 'rest', 'http' or None, got {kind!r}")
    if mode == "merge" and base is None:
        raise ValueError("mode='merge' needs the existing API as `base`")
    if isinstance(doc, Mapping):
        size = approx_size(doc)
        if size > MAX_DOCUMENT_BYTES:
            raise OpenApiImportError(
                [
                    ImportProblem(
                        "$", f"the document is {size} bytes; API Gateway imports at most 6 MB", "error"
                    )
                ]
            )
        try:
            data = normalize(dict(doc))
        except RecursionError:
            raise OpenApiImportError(
                [ImportProblem("$", "the document is nested too deeply", "error")]
            ) from None
    else:
        data = load_document(doc)
    the_kind: Literal["rest", "http"] = kind or detect_kind(data)
    base_api = _plain(base) if base is not None else None

    r = Reader(data)
    api_name = name or (base_api.get("name") if base_api else None)
    info = data.get("info")
    if api_name is None:
        title = info.get("title") if isinstance(info, dict) else None
        if isinstance(title, str) and title.strip():
            api_name = title.strip()
        elif title is not None:
            r.error("$.info.title", f"expected a non-empty string, got {type_name(title)}")
        else:
            r.error("$.info.title", "missing: the API needs a name (info.title, or name=)")
    # fastgw's own export carries what AWS's extensions cannot (x-fastgw-api: id, stages, plugins).
    carried = data.get(FASTGW_API, {})
    if not isinstance(carried, dict):
        r.error(child("$", FASTGW_API), f"expected an object, got {type_name(carried)}")
        carried = {}
    the_id = (
        api_id
        or (base_api.get("id") or derive_api_id(str(base_api.get("name", ""))) if base_api else None)
        or carried.get("id")
        or exported_id(data)
        or derive_api_id(api_name or "api")
    )
    if not isinstance(the_id, str) or not _API_ID.match(the_id):
        r.error("$", f"API id {the_id!r}: expected 1-32 lower-case letters and digits")
        the_id = derive_api_id(api_name or "api")
    if base_api is not None and base_api.get("kind", "rest") != the_kind:
        r.error("$", f"the document is a {the_kind} API; the existing API is {base_api.get('kind', 'rest')}")

    builder = Builder(data, r, the_kind, the_id)
    try:
        builder.build()
    except RecursionError:
        raise OpenApiImportError([ImportProblem("$", "the document is nested too deeply", "error")]) from None
    for path, key in walk_extensions(data, r.claimed, r.allowed) if builder.readable else ():
        if key in KNOWN_EXTENSIONS:
            r.error(path, f"{key} is not allowed here")
        else:
            r.error(path, f"unknown API Gateway extension {key!r}")

    problems = _unique(r.problems)
    warnings = [p for p in problems if p.severity == "warning"]
    if any(p.severity == "error" for p in problems):
        raise OpenApiImportError(_refused(problems, strict))

    api, origins = _assemble(builder, base_api, mode, api_name or "api", the_id, the_kind, warnings)
    if isinstance(carried.get("plugins"), list):
        api["plugins"] = copy.deepcopy(carried["plugins"])
    if the_kind == "http" and isinstance(carried.get("models"), dict):
        # AWS's HTTP APIs have no models; fastgw's export carries an HTTP API's here.
        api["models"] = {**api.get("models", {}), **copy.deepcopy(carried["models"])}
        origins["models"] = child(child("$", FASTGW_API), "models")
    doc_stages = carried.get("stages") if isinstance(carried.get("stages"), list) else None
    if doc_stages and not (base_api and base_api.get("stages")):
        origins["stages"] = child(child("$", FASTGW_API), "stages")
    _stages(api, base_api, doc_stages, the_kind, stage, stage_variables, warnings)
    functions = _functions(api)
    found = _loader_problems(api, functions, origins)
    if found or (strict and warnings):
        raise OpenApiImportError(_refused(warnings, strict) + found)
    return ImportResult(api, warnings, functions, the_kind)


def _refused(problems: list[ImportProblem], strict: bool) -> list[ImportProblem]:
    """The errors among ``problems``; with ``strict``, the warnings too (as errors)."""
    if not strict:
        return [p for p in problems if p.severity == "error"]
    return [ImportProblem(p.path, p.message, "error") for p in problems]


# ---------------------------------------------------------------------------- assembly
def _plain(base: Any) -> dict[str, Any]:
    import msgspec

    if isinstance(base, msgspec.Struct):
        return msgspec.to_builtins(base)  # type: ignore[no-any-return]
    return copy.deepcopy(dict(base))


def _unique(problems: list[ImportProblem]) -> list[ImportProblem]:
    return list(dict.fromkeys(problems))


def _shape(key: str) -> tuple[str, tuple[str, ...]] | None:
    method, sep, template = key.partition(" ")
    if not sep:
        return None
    segments = template[1:].split("/") if template != "/" else []
    return method, tuple(
        ("{+}" if s.endswith("+}") else "{}") if s.startswith("{") and s.endswith("}") else s
        for s in segments
    )


def _assemble(
    b: Builder,
    base: dict[str, Any] | None,
    mode: str,
    name: str,
    api_id: str,
    kind: str,
    warnings: list[ImportProblem],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The Api mapping and the origins of its parts (config path under the API -> document
    path, ``base...`` for what comes from ``base``)."""
    origins: dict[str, str] = {
        k: v for k, v in b.origins.items() if not k.startswith(("routes[", "authorizers["))
    }
    base_routes: list[dict[str, Any]] = list(base.get("routes", [])) if base else []
    by_key = {r.get("route"): r for r in base_routes if isinstance(r, dict)}
    # (route, its path, its integration's document path: None for a route kept from base)
    routes: list[tuple[dict[str, Any], str, str | None]]
    authorizers: list[tuple[dict[str, Any], str]]
    api: dict[str, Any]
    if base is not None and base.get("stages"):
        origins["stages"] = "base.stages"
    if mode == "merge" and base is not None:
        api = copy.deepcopy(base)
        routes = [(r, f"base.routes[{i}]", None) for i, r in enumerate(base_routes)]
        for i, route in enumerate(b.routes):
            doc_path = b.origins[f"routes[{i}]"]
            shape = _shape(route["route"])
            for j, (old, old_path, _) in enumerate(routes):
                same = old.get("route") == route["route"]
                if same or (shape is not None and _shape(str(old.get("route", ""))) == shape):
                    if not same:
                        warnings.append(
                            ImportProblem(
                                doc_path,
                                f"replaces the existing route {old.get('route')!r} ({old_path}), which "
                                "matches the same requests",
                                "warning",
                            )
                        )
                    routes[j] = (route, doc_path, b.origins[f"routes[{i}].integration"])
                    break
            else:
                routes.append((route, doc_path, b.origins[f"routes[{i}].integration"]))
        models = dict(api.get("models", {}))
        models.update(b.models)
        authorizers = [(a, f"base.authorizers[{i}]") for i, a in enumerate(api.get("authorizers", []))]
        for i, auth in enumerate(b.authorizers):
            a_path = b.origins[f"authorizers[{i}]"]
            for j, (old, _) in enumerate(authorizers):
                if old.get("name") == auth["name"]:
                    authorizers[j] = (auth, a_path)
                    break
            else:
                authorizers.append((auth, a_path))
        for key in ("requestValidators", "gatewayResponses"):
            if key in b.parts:
                api[key] = {**api.get(key, {}), **b.parts[key]}
        if "binaryMediaTypes" in b.parts:
            old_types = list(api.get("binaryMediaTypes", []))
            api["binaryMediaTypes"] = old_types + [
                t for t in b.parts["binaryMediaTypes"] if t not in old_types
            ]
        for key, value in b.parts.items():
            if key not in ("requestValidators", "gatewayResponses", "binaryMediaTypes"):
                api[key] = value
        for key in ("models", "requestValidators", "requestValidator", "gatewayResponses", "cors", "policy"):
            if key in api and key not in origins:
                origins[key] = f"base.{key}"
    else:
        api = {}
        if base is not None:
            for key in ("description", "plugins"):
                if key in base:
                    api[key] = copy.deepcopy(base[key])
        api.update(b.parts)
        routes = [
            (route, b.origins[f"routes[{i}]"], b.origins[f"routes[{i}].integration"])
            for i, route in enumerate(b.routes)
        ]
        models = dict(b.models)
        authorizers = [(a, b.origins[f"authorizers[{i}]"]) for i, a in enumerate(b.authorizers)]
    api = {
        "name": name,
        "id": api_id,
        "kind": kind,
        **{k: v for k, v in api.items() if k not in ("name", "id", "kind")},
    }
    final_routes = []
    for i, (route, r_path, i_path) in enumerate(routes):
        old = by_key.get(route.get("route"))
        if i_path is not None and old is not None and old is not route:
            route = _keep_fastgw_settings(route, old)
        final_routes.append(route)
        origins[f"routes[{i}]"] = r_path
        if i_path is not None:
            origins[f"routes[{i}].integration"] = i_path
    api["routes"] = final_routes
    api["authorizers"] = [a for a, _ in authorizers]
    for i, (_, a_path) in enumerate(authorizers):
        origins[f"authorizers[{i}]"] = a_path
    api["models"] = models
    for key in ("routes", "authorizers", "models"):
        if not api[key]:
            del api[key]
    return api, origins


def _keep_fastgw_settings(route: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A document route with what only fastgw's config can say kept from the route it replaces."""
    route = dict(route)
    if old.get("plugins"):
        route["plugins"] = copy.deepcopy(old["plugins"])
    new_i, old_i = route["integration"], old.get("integration")
    if (
        isinstance(old_i, dict)
        and new_i.get("type") == "HTTP_PROXY"
        and old_i.get("type") == "HTTP_PROXY"
        and old_i.get("uri") == new_i.get("uri")
    ):
        new_i = dict(new_i)
        for key in ("targets", "pass_query"):
            if key in old_i:
                new_i[key] = copy.deepcopy(old_i[key])
        route["integration"] = new_i
    return route


def _stages(
    api: dict[str, Any],
    base: dict[str, Any] | None,
    doc_stages: list[Any] | None,
    kind: str,
    stage: str | None,
    variables: Mapping[str, str] | None,
    warnings: list[ImportProblem],
) -> None:
    """Keep ``base``'s stages (else those fastgw's export carried), settings of vanished routes
    dropped; or create one."""
    stages = [copy.deepcopy(s) for s in base.get("stages", []) if isinstance(s, dict)] if base else []
    where = "base.stages"
    if not stages and doc_stages:
        stages = [copy.deepcopy(s) for s in doc_stages if isinstance(s, dict)]
        where = child(child("$", FASTGW_API), "stages")
        for i, s in enumerate(stages):
            # APPSEC: a document never chooses files on this machine (an access log destination
            # would let it append request data to any file the gateway can write).
            if s.pop("accessLogSettings", None) is not None:
                warnings.append(
                    ImportProblem(
                        child(child(where, i), "accessLogSettings"),
                        "dropped: access logs are configured in the config file, not by documents",
                        "warning",
                    )
                )
    if not stages:
        new: dict[str, Any] = {"name": stage or ("$default" if kind == "http" else "prod")}
        if variables:
            new["variables"] = dict(variables)
        api["stages"] = [new]
        return
    target = next((s for s in stages if s.get("name") == stage), None) if stage else stages[0]
    if target is None:
        target = {"name": stage}
        stages.append(target)
    if variables:
        target["variables"] = {**target.get("variables", {}), **variables}
    keys = {r.get("route") for r in api.get("routes", [])}
    for i, s in enumerate(stages):
        for field_name in ("route_throttle", "route_cache"):
            settings = s.get(field_name)
            if not isinstance(settings, dict):
                continue
            for key in [k for k in settings if k not in keys]:
                del settings[key]
                warnings.append(
                    ImportProblem(
                        child(child(child(where, i), field_name), key),
                        f"dropped: the API has no route {key!r} any more",
                        "warning",
                    )
                )
    api["stages"] = stages


def _functions(api: dict[str, Any]) -> list[str]:
    """Function names of the API's AWS / AWS_PROXY integrations and Lambda authorizers, with
    ``${stageVariables.NAME}`` taken from each stage."""
    uris: list[str] = []
    for route in api.get("routes", []):
        i = route.get("integration", {})
        if i.get("type") in ("AWS", "AWS_PROXY") and isinstance(i.get("uri"), str):
            uris.append(i["uri"])
    for auth in api.get("authorizers", []):
        if isinstance(auth.get("authorizerUri"), str):
            uris.append(auth["authorizerUri"])
    names: set[str] = set()
    for stage in api.get("stages", []):
        variables = stage.get("variables", {})
        for uri in uris:
            got = integ.function_name(uri, variables)
            if got is not None:
                names.add(got)
    return sorted(names)


# ---------------------------------------------------------------------------- the loader's verdict
_RENAMES = {".timeout_ms": ".timeoutInMillis", ".requestValidator": "." + EXT + "request-validator"}


def _loader_problems(
    api: dict[str, Any], functions: list[str], origins: dict[str, str]
) -> list[ImportProblem]:
    """What fastgw's loader finds in the produced API, at the document paths it came from."""
    from fastgw.config.compile import check_document

    checked = copy.deepcopy(api)
    # Plugins belong to the whole config (plugin_modules): the full loader checks them.
    checked.pop("plugins", None)
    for part in (*checked.get("stages", []), *checked.get("routes", [])):
        if isinstance(part, dict):
            part.pop("plugins", None)
    config: dict[str, Any] = {"apis": [checked], "functions": {n: dict(_STUB_FUNCTION) for n in functions}}
    if any(r.get("authorizationType") == "AWS_IAM" for r in checked.get("routes", [])):
        config["iam"] = copy.deepcopy(_STUB_IAM)
    out = []
    for issue in check_document(config, "import"):
        out.append(_locate(issue.path, issue.message, origins))
    return _unique(out)


def _locate(path: str, message: str, origins: dict[str, str]) -> ImportProblem:
    prefix = "$.apis[0]"
    if path == prefix or path.startswith((prefix + ".", prefix + "[")):
        rel = path[len(prefix) :].lstrip(".")
        best = ""
        for key in origins:
            if len(key) > len(best) and (rel == key or rel.startswith((key + ".", key + "["))):
                best = key
        if best:
            rest = rel[len(best) :]
            for old, new in _RENAMES.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
            return ImportProblem(origins[best] + rest, message, "error")
        return ImportProblem("$", f"{message} (in the produced API at {rel or 'its root'})", "error")
    return ImportProblem("$", f"{message} (at {path} of the checked config)", "error")

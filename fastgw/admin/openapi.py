"""The OpenAPI 3.1 document of the admin API (``GET /openapi.json``, no token needed).

Schemas come from the msgspec Structs the server decodes and encodes
(``msgspec.json.schema_components``), so the document cannot drift from the code; the paths
below are the server's ``ROUTES`` (whose captures carry these parameter names), checked against
them by the tests.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec
from msgspec import Struct, field

import fastgw
from fastgw.admin.deploy import DeploymentCreate
from fastgw.state.model import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyPatch,
    ApiKeyRotate,
    CachePurge,
    CachePurgeRequest,
    PatchRequest,
    UsagePlan,
    UsagePlanCreate,
    UsagePlanKeyCreate,
    UsagePlanPatch,
)


# ---------------------------------------------------------------------- response shapes
class ApiKeys(Struct, kw_only=True):
    items: list[ApiKey]
    position: None = None


class UsagePlans(Struct, kw_only=True):
    items: list[UsagePlan]
    position: None = None


class UsagePlanKey(Struct, kw_only=True):
    """AWS ``UsagePlanKey`` without ``value`` (fastgw keeps only a hash of key values)."""

    id: str
    type: Literal["API_KEY"] = "API_KEY"
    name: str


class UsagePlanKeys(Struct, kw_only=True):
    items: list[UsagePlanKey]
    position: None = None


class Usage(Struct, kw_only=True):
    """AWS ``Usage``: per key id, one ``[used, remaining]`` pair per day from startDate to endDate.

    ``remaining`` is the quota limit minus what the key used in that day's quota period up to
    and including that day; ``null`` when the plan has no quota.
    """

    usagePlanId: str
    startDate: str
    endDate: str
    position: None = None
    items: dict[str, list[tuple[int, int | None]]]


class QuotaFigures(Struct, kw_only=True):
    """The current quota period of a key in a plan (fastgw extension); all null without a quota."""

    limit: int | None
    period: Literal["DAY", "WEEK", "MONTH"] | None
    offset: int | None
    periodStart: str | None = field(default=None)  # UTC instant the period began
    periodEnd: str | None = field(default=None)  # UTC instant the next period begins
    used: int | None = None
    remaining: int | None = None


class ImportResult(Struct, kw_only=True):
    """AWS ``ApiKeyIds``."""

    ids: list[str]
    warnings: list[str]


class Error(Struct, kw_only=True, omit_defaults=True):
    """Every error body: AWS's ``message``, plus the JSON path of a bad field when there is one."""

    message: str
    path: str | None = None
    warnings: list[str] | None = None


class Health(Struct, kw_only=True):
    status: str


_SCHEMA_TYPES: tuple[Any, ...] = (
    ApiKeyCreate,
    ApiKeyPatch,
    ApiKeyRotate,
    PatchRequest,
    UsagePlanCreate,
    UsagePlanPatch,
    UsagePlanKeyCreate,
    CachePurgeRequest,
    DeploymentCreate,
    ApiKey,
    ApiKeys,
    UsagePlan,
    UsagePlans,
    UsagePlanKey,
    UsagePlanKeys,
    Usage,
    QuotaFigures,
    ImportResult,
    CachePurge,
    Error,
    Health,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _resp(status: str, description: str, schema: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out.update(_json(schema))
    return out


_ERRORS = {
    "400": _resp("400", "Bad payload or query (message, and the JSON path of the bad field)", "Error"),
    "401": _resp("401", "Missing or wrong bearer token", "Error"),
    "404": _resp("404", "Unknown id (x-amzn-ErrorType: NotFoundException)", "Error"),
}
_CONFLICT = {"409": _resp("409", "Conflict (x-amzn-ErrorType: ConflictException)", "Error")}


def _op(
    op_id: str,
    summary: str,
    ok: tuple[str, str, str | None],
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    conflict: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": True, **_json(body)}
    responses = {ok[0]: _resp(*ok), **_ERRORS}
    if conflict:
        responses.update(_CONFLICT)
    out["responses"] = responses
    return out


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _query(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema or {"type": "string"},
        "description": description,
    }


_KEY = _path_param("keyId", "API key id")
_PLAN = _path_param("usageplanId", "Usage plan id")
_API = _path_param(
    "restapi_id", "API id (the config's apis[].id, or the id derived from its name), or its name"
)
_STAGE = _path_param("stage_name", "Stage name")
_DEPLOYMENT = _path_param("deployment_id", "Deployment id")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once)."""
    _, components = msgspec.json.schema_components(_SCHEMA_TYPES, ref_template="#/components/schemas/{name}")
    # The stored record carries the value's hash; the API shows the value instead (once).
    api_key = dict(components["ApiKey"])
    props = dict(api_key["properties"])
    props.pop("valueHash", None)
    props["value"] = {
        "type": "string",
        "description": "The key value: only in the answers of create and rotate, never again.",
    }
    api_key["properties"] = props
    components["ApiKey"] = api_key

    key_patch = {
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref("PatchRequest"), _ref("ApiKeyPatch")]},
            }
        },
        "required": True,
    }
    plan_patch = {
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref("PatchRequest"), _ref("UsagePlanPatch")]},
            }
        },
        "required": True,
    }

    create_key = _op(
        "CreateApiKey",
        "Create an API key (value generated when omitted and returned once), or import a CSV key file "
        "(mode=import&format=csv: AWS ImportApiKeys; answers ImportResult)",
        ("201", "The key, with its value (the only time it is shown)", "ApiKey"),
        params=[
            _query("mode", "'import' to import a CSV key file (AWS ImportApiKeys)", enum=["import"]),
            _query("format", "with mode=import: 'csv'", enum=["csv"]),
            _query("failonwarnings", "with mode=import: any warning fails the import; nothing changes"),
        ],
        conflict=True,
    )
    create_key["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("ApiKeyCreate")},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "AWS API key file: header row with Name and Key (case-insensitive), "
                    "optional Description, Enabled, UsagePlanIds (quoted, comma-separated)",
                }
            },
        },
    }
    update_key = _op(
        "UpdateApiKey",
        "Change an API key: AWS patchOperations (replace /name /description /enabled /customerId) or a "
        "plain ApiKeyPatch object",
        ("200", "The key", "ApiKey"),
        params=[_KEY],
        conflict=True,
    )
    update_key["requestBody"] = key_patch
    update_plan = _op(
        "UpdateUsagePlan",
        "Change a usage plan: AWS patchOperations (replace /name /description /throttle/rateLimit "
        "/throttle/burstLimit /quota/limit /quota/period /quota/offset; remove /throttle /quota; add|remove "
        "/apiStages 'apiId:stage') or a plain UsagePlanPatch object",
        ("200", "The plan", "UsagePlan"),
        params=[_PLAN],
        conflict=True,
    )
    update_plan["requestBody"] = plan_patch

    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "Health",
                "summary": "Liveness (no token needed)",
                "security": [],
                "responses": {"200": _resp("200", "Serving", "Health")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi",
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
        "/apikeys": {
            "get": _op(
                "GetApiKeys",
                "List API keys (values are never listed: includeValues=true is refused with 400)",
                ("200", "The keys", "ApiKeys"),
                params=[
                    _query("nameQuery", "Only keys whose name starts with this"),
                    _query("customerId", "Only keys with this customerId"),
                    _query("includeValues", "Not supported (fastgw keeps only hashes): 400 when true"),
                ],
            ),
            "post": create_key,
        },
        "/apikeys/{keyId}": {
            "get": _op("GetApiKey", "One API key", ("200", "The key", "ApiKey"), params=[_KEY]),
            "patch": update_key,
            "delete": _op(
                "DeleteApiKey",
                "Delete an API key, its plan memberships and its usage",
                ("202", "Deleted", None),
                params=[_KEY],
                conflict=True,
            ),
        },
        "/apikeys/{keyId}/rotate": {
            "post": {
                **_op(
                    "RotateApiKey",
                    "fastgw extension: give the key a new value (returned once); the old value stops "
                    "working within a second on every worker",
                    ("200", "The key, with its new value", "ApiKey"),
                    params=[_KEY],
                    conflict=True,
                ),
                "requestBody": {"required": False, **_json("ApiKeyRotate")},
            }
        },
        "/usageplans": {
            "get": _op(
                "GetUsagePlans",
                "List usage plans",
                ("200", "The plans", "UsagePlans"),
                params=[_query("keyId", "Only the plans this API key is in")],
            ),
            "post": _op(
                "CreateUsagePlan",
                "Create a usage plan",
                ("201", "The plan", "UsagePlan"),
                body="UsagePlanCreate",
            ),
        },
        "/usageplans/{usageplanId}": {
            "get": _op("GetUsagePlan", "One usage plan", ("200", "The plan", "UsagePlan"), params=[_PLAN]),
            "patch": update_plan,
            "delete": _op(
                "DeleteUsagePlan",
                "Delete a usage plan, its memberships and its usage",
                ("202", "Deleted", None),
                params=[_PLAN],
                conflict=True,
            ),
        },
        "/usageplans/{usageplanId}/keys": {
            "get": _op(
                "GetUsagePlanKeys",
                "The API keys of a plan",
                ("200", "The plan's keys", "UsagePlanKeys"),
                params=[_PLAN, _query("nameQuery", "Only keys whose name starts with this")],
            ),
            "post": _op(
                "CreateUsagePlanKey",
                "Add an API key to a plan (a key may be in one plan per API stage)",
                ("201", "The plan key", "UsagePlanKey"),
                params=[_PLAN],
                body="UsagePlanKeyCreate",
                conflict=True,
            ),
        },
        "/usageplans/{usageplanId}/keys/{keyId}": {
            "get": _op(
                "GetUsagePlanKey",
                "One API key of a plan",
                ("200", "The plan key", "UsagePlanKey"),
                params=[_PLAN, _KEY],
            ),
            "delete": _op(
                "DeleteUsagePlanKey",
                "Remove an API key from a plan",
                ("202", "Removed", None),
                params=[_PLAN, _KEY],
                conflict=True,
            ),
        },
        "/usageplans/{usageplanId}/keys/{keyId}/quota": {
            "get": _op(
                "GetUsagePlanKeyQuota",
                "fastgw extension: the key's current quota period (live figures when the backend has them)",
                ("200", "Quota figures", "QuotaFigures"),
                params=[_PLAN, _KEY],
            ),
        },
        "/restapis/{restapi_id}/stages/{stage_name}/cache/data": {
            "delete": _op(
                "FlushStageCache",
                "AWS FlushStageCache: drop every cached response of the stage, on every worker of every "
                "node (applied on their next state reload, within a second). 404: the API or stage is not "
                "in the config the admin process runs with",
                ("202", "Accepted (no body)", None),
                params=[_API, _STAGE],
            ),
        },
        "/restapis/{restapi_id}/stages/{stage_name}/cache/purge": {
            "post": _op(
                "PurgeStageCache",
                "fastgw extension: drop the cached responses of one resource path (prefix: false), of every "
                "path starting with it (prefix: true), or the one entry named by key; method narrows it "
                "('*': every method). Applied by every worker on its next state reload (within a second)",
                ("202", "Accepted: the recorded purge", "CachePurge"),
                params=[_API, _STAGE],
                body="CachePurgeRequest",
            ),
        },
        "/restapis/{restapi_id}/deployments": {
            "get": _op(
                "GetDeployments",
                "The API's deployments, newest first (id, number, createdDate, description, digest)",
                ("200", "{items: [Deployment]}", None),
                params=[_API],
            ),
            "post": _op(
                "CreateDeployment",
                "AWS CreateDeployment: snapshot the API's definition as the config file has it now; with "
                "stageName point that stage at it (workers switch within a second), with canarySettings "
                "make it the stage's canary instead. Refused (400, nothing written) when the stage would "
                "not compile",
                ("201", "The deployment", None),
                params=[_API],
                body="DeploymentCreate",
            ),
        },
        "/restapis/{restapi_id}/deployments/{deployment_id}": {
            "get": _op(
                "GetDeployment",
                "One deployment (embed=definition adds the stored definition)",
                ("200", "The deployment", None),
                params=[_API, _DEPLOYMENT, _query("embed", "'definition' to include it")],
            ),
            "delete": _op(
                "DeleteDeployment",
                "Delete a deployment no stage or canary serves (409 otherwise)",
                ("202", "Deleted (no body)", None),
                params=[_API, _DEPLOYMENT],
                conflict=True,
            ),
        },
        "/restapis/{restapi_id}/stages": {
            "get": _op(
                "GetStages",
                "The config's stages of the API with the deployment and canary each serves",
                ("200", "{item: [Stage]}", None),
                params=[_API],
            ),
        },
        "/restapis/{restapi_id}/stages/{stage_name}": {
            "get": _op("GetStage", "One stage", ("200", "The stage", None), params=[_API, _STAGE]),
            "patch": _op(
                "UpdateStage",
                "AWS patchOperations: replace /deploymentId (rollback), replace "
                "/canarySettings/percentTraffic|deploymentId|useStageCache, replace|remove "
                "/canarySettings/stageVariableOverrides/NAME, remove /canarySettings, copy from "
                "/canarySettings/deploymentId to /deploymentId (promote)",
                ("200", "The stage", None),
                params=[_API, _STAGE],
                body="PatchRequest",
            ),
        },
        "/restapis/{restapi_id}/stages/{stage_name}/exports/{export_type}": {
            "get": _op(
                "GetExport",
                "AWS GetExport: the API the stage serves as OpenAPI 3.0 (oas30) or Swagger 2.0 (swagger); "
                "extensions=integrations (or apigateway) adds the x-amazon-apigateway-* extensions",
                ("200", "The document", None),
                params=[
                    _API,
                    _STAGE,
                    _path_param("export_type", "oas30 | swagger"),
                    _query("extensions", "integrations | apigateway | authorizers (comma-separated)"),
                ],
            ),
        },
        "/metrics": {
            "get": _op(
                "GetMetrics",
                "Prometheus text exposition (format 0.0.4) of the node's metrics, every worker summed: "
                "AWS's Count, 4XXError, 5XXError, CacheHitCount, CacheMissCount, Latency and "
                "IntegrationLatency per API, stage and route, and the gateway's own gauges and counters",
                ("200", "text/plain; version=0.0.4", None),
            ),
        },
        "/usageplans/{usageplanId}/usage": {
            "get": _op(
                "GetUsage",
                "Daily usage and remaining quota per key (AWS GetUsage; at most 90 days)",
                ("200", "Usage", "Usage"),
                params=[
                    _PLAN,
                    _query("startDate", "First day, YYYY-MM-DD (UTC)", required=True, format="date"),
                    _query("endDate", "Last day, YYYY-MM-DD (UTC), inclusive", required=True, format="date"),
                    _query("keyId", "Only this API key (default: every key of the plan)"),
                ],
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fastgw admin API",
            "version": fastgw.__version__,
            "description": "API keys, usage plans, usage and stage-cache invalidation, shaped as AWS API "
            "Gateway's management API. "
            "Every operation but /health and /openapi.json needs 'Authorization: Bearer TOKEN'. Errors "
            'are {"message": ...} with x-amzn-ErrorType; a bad field adds its JSON path.',
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }

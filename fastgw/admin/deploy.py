"""Admin API: deployments, stages, canary releases and exports (AWS API Gateway's resources).

- ``POST /restapis/{restapi_id}/deployments``: snapshot the API's current definition (the config
  file as it is now, reloaded or not) as a new deployment; with ``stageName`` point that stage
  at it, or with ``canarySettings`` too make it the stage's canary (AWS CreateDeployment).
- ``GET /restapis/{restapi_id}/deployments[/{deployment_id}]``, ``DELETE .../{deployment_id}``
  (refused while a stage or canary serves it).
- ``GET /restapis/{restapi_id}/stages[/{stage_name}]``: the config's stages with the deployment
  and canary each serves.
- ``PATCH /restapis/{restapi_id}/stages/{stage_name}``: AWS patch operations: ``replace
  /deploymentId`` (rollback or roll forward), ``replace /canarySettings/percentTraffic |
  deploymentId | useStageCache``, ``replace|remove /canarySettings/stageVariableOverrides/NAME``,
  ``remove /canarySettings`` (delete the canary), ``copy`` from ``/canarySettings/deploymentId``
  to ``/deploymentId`` (promote).
- ``GET /restapis/{restapi_id}/stages/{stage_name}/exports/{export_type}``: the API that stage
  serves as OpenAPI 3.0 (``oas30``) or Swagger 2.0 (``swagger``); ``?extensions=`` with
  ``integrations``/``apigateway`` adds the ``x-amazon-apigateway-*`` extensions (AWS GetExport);
  always JSON (``fastgw export --yaml`` converts).

Every change is checked first: the stage's new deployments must compile with the running config
(a rollback to a deployment that names a function the config no longer has is refused with the
problem's path), and nothing is written otherwise. Workers pick a change up within a second.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from fastgw import deployments as dp
from fastgw.admin.server import (
    ApiError,
    Request,
    bad_request,
    conflict,
    decode_json,
    not_found,
)
from fastgw.config.load import ConfigError
from fastgw.config.model import STAGE_VARIABLE_NAME, STAGE_VARIABLE_VALUE, Api, GatewayConfig
from fastgw.state.model import (
    CanaryPointer,
    Deployment,
    DeploymentInUseError,
    PatchRequest,
    StagePointer,
    StateData,
    iso_utc,
    now_ts,
)

if TYPE_CHECKING:
    from fastgw.admin.server import AdminApp

INVALID_API = "Invalid API identifier specified"
INVALID_DEPLOYMENT = "Invalid Deployment identifier specified"
INVALID_STAGE = "Invalid Stage identifier specified"


_VarName = Annotated[str, msgspec.Meta(pattern=STAGE_VARIABLE_NAME)]
_VarValue = Annotated[str, msgspec.Meta(pattern=STAGE_VARIABLE_VALUE)]


def _check_override(name: str, value: str, path: str) -> None:
    """AWS's stage-variable rules: a value that could end a request line never gets in."""
    if re.fullmatch(STAGE_VARIABLE_NAME, name) is None:
        raise bad_request(f"Invalid stage variable name {name!r}: [A-Za-z0-9_]", path)
    if re.fullmatch(STAGE_VARIABLE_VALUE, value) is None:
        raise bad_request(f"Invalid stage variable value for {name}: only [A-Za-z0-9-._~:/?#&=,]", path)


class CanarySettingsInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    percentTraffic: float = 0.0
    stageVariableOverrides: dict[_VarName, _VarValue] = msgspec.field(default_factory=dict)
    useStageCache: bool = False


class DeploymentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stageName: str | None = None
    description: str = ""
    stageDescription: str | None = None
    canarySettings: CanarySettingsInput | None = None


def _percent(value: Any, path: str) -> float:
    try:
        pct = float(value)
    except (TypeError, ValueError):
        raise bad_request(f"Invalid percentTraffic {value!r}: expected a number 0..100", path) from None
    if not 0.0 <= pct <= 100.0:
        raise bad_request(f"Invalid percentTraffic {pct}: expected 0..100", path)
    return pct


class DeploymentHandlers:
    """The handlers (``h_*``), bound to one ``AdminApp``."""

    def __init__(self, app: AdminApp) -> None:
        self.app = app

    # ------------------------------------------------------------------ lookups
    def _config(self) -> GatewayConfig:
        """The config as the file says now (deployments snapshot it), else the running one."""
        load = self.app.load
        if load is None:
            return self.app.config
        try:
            return load()
        except ConfigError as ex:
            raise ApiError(
                400,
                "The config file does not load: " + "; ".join(str(i) for i in ex.issues),
                "BadRequestException",
            ) from None

    def _api(self, config: GatewayConfig, restapi_id: str) -> tuple[Api, str]:
        api = dp.find_api(config, restapi_id)
        if api is None:
            raise not_found(INVALID_API)
        return api, dp.api_id_of(api)

    @staticmethod
    def _has_stage(api: Api, stage: str) -> None:
        if not any(s.name == stage for s in api.stages):
            raise not_found(INVALID_STAGE)

    async def _check(self, config: GatewayConfig, changed: StagePointer, extra: list[Deployment]) -> None:
        """Compile the running config with the pointers as they would be after the change."""
        from fastgw.config.compile import compile_config

        store = self.app.store
        data = await store.load()
        stages = [p for p in data.stages if (p.apiId, p.stage) != (changed.apiId, changed.stage)]
        stages.append(changed)
        deployments = dict(data.deployments)
        for dep in extra:
            deployments[f"{dep.apiId}/{dep.id}"] = dep
        for dep_id in (changed.deploymentId, changed.canary.deploymentId if changed.canary else None):
            if dep_id is not None and f"{changed.apiId}/{dep_id}" not in deployments:
                got = await store.get_deployment(changed.apiId, dep_id)
                if got is None:
                    raise bad_request(f"No deployment {dep_id!r} in API {changed.apiId}", "$.deploymentId")
                deployments[f"{changed.apiId}/{dep_id}"] = got
        state = StateData(stages=stages, deployments=deployments)
        try:
            compile_config(config, deployments=dp.resolve(config, state))
        except ConfigError as ex:
            raise ApiError(
                400,
                "The deployment does not compile with the running config (reload the gateway first "
                "if the config file changed): " + "; ".join(str(i) for i in ex.issues),
                "BadRequestException",
            ) from None

    async def _stage_view(self, api: Api, api_id: str, stage_name: str) -> dict[str, Any]:
        stage = next(s for s in api.stages if s.name == stage_name)
        pointer = await self.app.store.get_stage_pointer(api_id, stage_name)
        view: dict[str, Any] = {
            "stageName": stage.name,
            "description": stage.description,
            "deploymentId": pointer.deploymentId if pointer is not None else None,
            "variables": dict(stage.variables),
            "autoDeploy": dp.effective_auto_deploy(api, stage),
            "cacheClusterEnabled": stage.cache is not None,
            "servesConfig": pointer is None,
        }
        if pointer is not None:
            view["lastUpdatedDate"] = iso_utc(pointer.updatedAt)
            if pointer.canary is not None:
                c = pointer.canary
                view["canarySettings"] = {
                    "deploymentId": c.deploymentId,
                    "percentTraffic": c.percentTraffic,
                    "stageVariableOverrides": dict(c.stageVariableOverrides),
                    "useStageCache": c.useStageCache,
                }
        return view

    # ------------------------------------------------------------------ deployments
    async def h_create_deployment(self, req: Request, restapi_id: str) -> tuple[int, Any]:
        body = decode_json(req.body, DeploymentCreate) if req.body.strip() else DeploymentCreate()
        config = self._config()
        api, api_id = self._api(config, restapi_id)
        store = self.app.store
        pointer: StagePointer | None = None
        if body.stageName is not None:
            self._has_stage(api, body.stageName)
            pointer = await store.get_stage_pointer(api_id, body.stageName)
        elif body.canarySettings is not None:
            raise bad_request("canarySettings needs stageName", "$.canarySettings")
        definition = dp.definition_of(api)
        if body.canarySettings is not None:
            _percent(body.canarySettings.percentTraffic, "$.canarySettings.percentTraffic")
        if body.canarySettings is not None and pointer is None:
            raise bad_request(
                f"Stage {body.stageName} has no deployment yet: deploy it before adding a canary",
                "$.canarySettings",
            )
        dep = await store.add_deployment(api_id, definition, body.description)
        if body.stageName is not None:
            now = now_ts()
            if body.canarySettings is not None:
                assert pointer is not None
                c = body.canarySettings
                canary = CanaryPointer(
                    deploymentId=dep.id,
                    percentTraffic=_percent(c.percentTraffic, "$.canarySettings.percentTraffic"),
                    stageVariableOverrides=dict(c.stageVariableOverrides),
                    useStageCache=c.useStageCache,
                )
                new = msgspec.structs.replace(pointer, canary=canary, updatedAt=now)
            else:
                canary = pointer.canary if pointer is not None else None
                new = StagePointer(
                    apiId=api_id, stage=body.stageName, deploymentId=dep.id, canary=canary, updatedAt=now
                )
            try:
                await self._check(self.app.config, new, [dep])
            except ApiError:
                await store.delete_deployment(api_id, dep.id)
                raise
            await store.put_stage_pointer(new)
        return 201, dep.public()

    async def h_list_deployments(self, req: Request, restapi_id: str) -> tuple[int, Any]:
        _, api_id = self._api(self._config(), restapi_id)
        items = await self.app.store.list_deployments(api_id)
        return 200, {"items": [d.public() for d in reversed(items)]}

    async def h_get_deployment(self, req: Request, restapi_id: str, deployment_id: str) -> tuple[int, Any]:
        _, api_id = self._api(self._config(), restapi_id)
        dep = await self.app.store.get_deployment(api_id, deployment_id)
        if dep is None:
            raise not_found(INVALID_DEPLOYMENT)
        return 200, dep.public(with_definition=req.flag("embed") or req.arg("embed") == "definition")

    async def h_delete_deployment(self, req: Request, restapi_id: str, deployment_id: str) -> tuple[int, Any]:
        _, api_id = self._api(self._config(), restapi_id)
        try:
            gone = await self.app.store.delete_deployment(api_id, deployment_id)
        except DeploymentInUseError:
            raise conflict(
                f"Deployment {deployment_id} is served by a stage or a canary: point them elsewhere first"
            ) from None
        if not gone:
            raise not_found(INVALID_DEPLOYMENT)
        return 202, None

    # ------------------------------------------------------------------ stages
    async def h_list_stages(self, req: Request, restapi_id: str) -> tuple[int, Any]:
        api, api_id = self._api(self._config(), restapi_id)
        return 200, {"item": [await self._stage_view(api, api_id, s.name) for s in api.stages]}

    async def h_get_stage(self, req: Request, restapi_id: str, stage_name: str) -> tuple[int, Any]:
        api, api_id = self._api(self._config(), restapi_id)
        self._has_stage(api, stage_name)
        return 200, await self._stage_view(api, api_id, stage_name)

    async def h_patch_stage(self, req: Request, restapi_id: str, stage_name: str) -> tuple[int, Any]:
        config = self._config()
        api, api_id = self._api(config, restapi_id)
        self._has_stage(api, stage_name)
        body = decode_json(req.body, PatchRequest)
        store = self.app.store
        pointer = await store.get_stage_pointer(api_id, stage_name)
        deployment_id = pointer.deploymentId if pointer is not None else None
        canary = pointer.canary if pointer is not None else None
        for i, op in enumerate(body.patchOperations):
            where = f"$.patchOperations[{i}]"
            path = op.path
            if op.op == "replace" and path == "/deploymentId":
                if not op.value:
                    raise bad_request("value is required (a deployment id)", f"{where}.value")
                deployment_id = op.value
            elif op.op == "copy" and path == "/deploymentId" and op.from_ == "/canarySettings/deploymentId":
                if canary is None:
                    raise bad_request("The stage has no canary to promote", where)
                deployment_id = canary.deploymentId
            elif op.op == "remove" and path == "/canarySettings":
                canary = None
            elif path.startswith("/canarySettings/"):
                canary = self._patch_canary(canary, op, path[len("/canarySettings/") :], where, deployment_id)
            else:
                raise bad_request(
                    f"Invalid patch operation {op.op} {path}: the stage's other settings are in the config",
                    where,
                )
        if deployment_id is None:
            raise bad_request(f"Stage {stage_name} has no deployment: set /deploymentId", "$.patchOperations")
        new = StagePointer(
            apiId=api_id, stage=stage_name, deploymentId=deployment_id, canary=canary, updatedAt=now_ts()
        )
        await self._check(self.app.config, new, [])
        try:
            await store.put_stage_pointer(new)
        except KeyError:
            raise bad_request("No such deployment in this API", "$.patchOperations") from None
        return 200, await self._stage_view(api, api_id, stage_name)

    @staticmethod
    def _patch_canary(
        canary: CanaryPointer | None, op: Any, field: str, where: str, base: str | None
    ) -> CanaryPointer:
        if canary is None:
            if base is None:
                raise bad_request("The stage has no deployment: replace /deploymentId first", where)
            if op.op != "replace" or field != "deploymentId":
                raise bad_request(
                    "The stage has no canary: replace /canarySettings/deploymentId first", where
                )
            canary = CanaryPointer(deploymentId=base or "")
        if field.startswith("stageVariableOverrides/"):
            name = field[len("stageVariableOverrides/") :]
            overrides = dict(canary.stageVariableOverrides)
            if op.op == "remove":
                overrides.pop(name, None)
            elif op.op == "replace":
                _check_override(name, op.value or "", f"{where}.value")
                overrides[name] = op.value or ""
            else:
                raise bad_request(f"Invalid op {op.op} for {field}", where)
            return msgspec.structs.replace(canary, stageVariableOverrides=overrides)
        if op.op != "replace":
            raise bad_request(f"Invalid op {op.op} for /canarySettings/{field}", where)
        if field == "percentTraffic":
            return msgspec.structs.replace(canary, percentTraffic=_percent(op.value, f"{where}.value"))
        if field == "deploymentId":
            if not op.value:
                raise bad_request("value is required (a deployment id)", f"{where}.value")
            return msgspec.structs.replace(canary, deploymentId=op.value)
        if field == "useStageCache":
            value = (op.value or "").lower()
            if value not in ("true", "false"):
                raise bad_request("useStageCache is true or false", f"{where}.value")
            return msgspec.structs.replace(canary, useStageCache=value == "true")
        raise bad_request(f"Invalid path /canarySettings/{field}", where)

    # ------------------------------------------------------------------ exports
    async def h_get_export(
        self, req: Request, restapi_id: str, stage_name: str, export_type: str
    ) -> tuple[int, Any]:
        from fastgw.openapi.export import export_api

        api, api_id = self._api(self._config(), restapi_id)
        self._has_stage(api, stage_name)
        if export_type not in ("oas30", "swagger"):
            raise bad_request(f"Invalid export type {export_type!r}: oas30 or swagger", "$.exportType")
        pointer = await self.app.store.get_stage_pointer(api_id, stage_name)
        served = api
        if pointer is not None:
            dep = await self.app.store.get_deployment(api_id, pointer.deploymentId)
            if dep is not None:
                served = dp.api_of(dep.definition, api)
        wanted = {e.strip() for e in (req.arg("extensions") or "").split(",") if e.strip()}
        try:
            doc = export_api(
                served,
                spec="oas30" if export_type == "oas30" else "swagger",
                extensions=bool(wanted & {"integrations", "apigateway", "authorizers"}),
                stage=stage_name,
            )
        except ValueError as ex:  # e.g. Swagger 2.0 of an HTTP API (AWS exports those as OAS 3 only)
            raise bad_request(str(ex), "$.exportType") from None
        return 200, doc

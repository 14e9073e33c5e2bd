"""Deployments: immutable snapshots of an API's definition that stages serve (AWS's model).

A deployment is the API as it was defined when deployed (routes, integrations, authorizers,
models, ... without its stages), stored byte for byte in the state store with a number (1, 2,
...) and a random id. A stage points at one deployment (``StagePointer``) and may send a
percentage of its requests to a canary deployment with its own stage-variable overrides. A
stage without a pointer serves the config's definition directly.

The config decides how pointers move (``Stage.autoDeploy``): auto-deploy stages are redeployed
by every start or reload that changes the definition, once they have a pointer; manual stages
get their first deployment at start and then change only through ``fastgw deploy`` /
``fastgw rollback`` / the admin API. Workers compile the stages against the deployments their
pointers name (``compile_config(..., deployments=resolve(config, state))``) and recompile when
the pointers change (the state poller, within a second).

What a deployment does not carry: the stage's own settings (variables, throttling, cache,
plugins), the gateway settings, functions and plugin modules; those stay the config's.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from fastgw.config.model import Api, GatewayConfig

if TYPE_CHECKING:
    from fastgw.config.compile import RuntimeSnapshot
    from fastgw.state.model import StateData
    from fastgw.state.store import Store

log = logging.getLogger("fastgw.deployments")


@dataclass(frozen=True, slots=True)
class CanaryDeployment:
    api: Api
    deployment_id: str
    percent: float
    variables: dict[str, str]
    use_stage_cache: bool


@dataclass(frozen=True, slots=True)
class StageDeployment:
    """What one stage serves: a deployment's definition of the API, and its canary."""

    api: Api
    deployment_id: str
    canary: CanaryDeployment | None = None


def api_id_of(api: Api) -> str:
    from fastgw.config.compile import _api_id

    return _api_id(api)


def find_api(config: GatewayConfig, name_or_id: str) -> Api | None:
    for api in config.apis:
        if api.name == name_or_id or api_id_of(api) == name_or_id:
            return api
    return None


def effective_auto_deploy(api: Api, stage: Any) -> bool:
    """Whether reloads redeploy ``stage`` once it has a deployment: its ``autoDeploy``, else
    (absent) false for REST APIs, as AWS's, and true for HTTP APIs."""
    if stage.autoDeploy is not None:
        return bool(stage.autoDeploy)
    return api.kind == "http"


def definition_of(api: Api) -> bytes:
    """What a deployment stores: the API's definition without its stages (canonical JSON)."""
    return msgspec.json.encode(msgspec.structs.replace(api, stages=[]), order="sorted")


def digest_of(definition: bytes) -> str:
    return hashlib.sha256(definition).hexdigest()[:16]


_DECODED: dict[bytes, Api] = {}


def api_of(definition: bytes, api: Api) -> Api:
    """A deployment's definition as the ``Api`` a stage of ``api`` serves (the config's name,
    id and stages)."""
    key = hashlib.sha256(definition).digest()
    got = _DECODED.get(key)
    if got is None:
        got = msgspec.json.decode(definition, type=Api)
        if len(_DECODED) < 256:
            _DECODED[key] = got
    return msgspec.structs.replace(got, name=api.name, id=api.id, stages=api.stages)


def resolve(config: GatewayConfig, state: StateData | None) -> dict[tuple[str, str], StageDeployment]:
    """(API id, stage) -> the deployment the store's pointers name, for the config's stages."""
    out: dict[tuple[str, str], StageDeployment] = {}
    if state is None or not getattr(state, "stages", None):
        return out
    apis = {api_id_of(a): a for a in config.apis}
    for pointer in state.stages:
        api = apis.get(pointer.apiId)
        if api is None or not any(s.name == pointer.stage for s in api.stages):
            continue
        dep = state.deployments.get(f"{pointer.apiId}/{pointer.deploymentId}")
        if dep is None:
            log.error(
                "stage points at an unknown deployment", extra={"api": api.name, "stage": pointer.stage}
            )
            continue
        canary = None
        c = pointer.canary
        if c is not None:
            c_dep = state.deployments.get(f"{pointer.apiId}/{c.deploymentId}")
            if c_dep is not None:
                canary = CanaryDeployment(
                    api_of(c_dep.definition, api),
                    c_dep.id,
                    c.percentTraffic,
                    dict(c.stageVariableOverrides),
                    c.useStageCache,
                )
        out[(pointer.apiId, pointer.stage)] = StageDeployment(api_of(dep.definition, api), dep.id, canary)
    return out


def compile_served(
    config: GatewayConfig, state: StateData | None, plain: RuntimeSnapshot | None = None, **log_extra: Any
) -> tuple[RuntimeSnapshot, bool]:
    """``config`` compiled with the deployments ``state``'s pointers name, and whether it serves
    what they say (false only after the fallback). Deployed definitions that do not compile with
    this config (a function removed, say) give the config's own definitions, logged, rather than
    no snapshot; ``plain`` is that snapshot when the caller has it already. ``ConfigError`` only
    when the config itself does not compile."""
    from fastgw.config.compile import compile_config
    from fastgw.config.load import ConfigError

    found = resolve(config, state)
    if found:
        try:
            return compile_config(config, deployments=found), True
        except ConfigError as ex:
            log.error(
                "deployed definitions do not compile with this config; stages serve the config's",
                extra={**log_extra, "errors": [str(i) for i in ex.issues]},
            )
    return (plain if plain is not None else compile_config(config)), not found


def served(state: StateData | None) -> tuple[Any, ...]:
    """What the pointers say, to tell whether a worker must recompile."""
    if state is None:
        return ()
    return tuple(
        (
            p.apiId,
            p.stage,
            p.deploymentId,
            None
            if p.canary is None
            else (
                p.canary.deploymentId,
                p.canary.percentTraffic,
                tuple(sorted(p.canary.stageVariableOverrides.items())),
                p.canary.useStageCache,
            ),
        )
        for p in getattr(state, "stages", ())
    )


async def sync(config: GatewayConfig, store: Store) -> list[str]:
    """Move pointers as the config's stages ask at a start or reload; what was deployed."""
    from fastgw.state.model import StagePointer, now_ts

    done: list[str] = []
    for api in config.apis:
        api_id = api_id_of(api)
        definition: bytes | None = None
        fresh: Any = None  # the deployment this sync made for the API (stages share it)
        for stage in api.stages:
            pointer = await store.get_stage_pointer(api_id, stage.name)
            auto = effective_auto_deploy(api, stage)
            if pointer is None and stage.autoDeploy is not False:
                continue  # serves the config's definition directly (until a first deployment)
            if definition is None:
                definition = definition_of(api)
            if pointer is not None:
                if not auto:
                    continue
                current = await store.get_deployment(api_id, pointer.deploymentId)
                if current is not None and current.digest == digest_of(definition):
                    continue
            dep = fresh
            if dep is None:
                note = "auto-deployed from the config" if auto else "initial deployment"
                dep = fresh = await store.add_deployment(api_id, definition, note)
            canary = pointer.canary if pointer is not None else None
            await store.put_stage_pointer(
                StagePointer(
                    apiId=api_id, stage=stage.name, deploymentId=dep.id, canary=canary, updatedAt=now_ts()
                )
            )
            done.append(f"{api.name}/{stage.name} -> deployment {dep.number} ({dep.id})")
    return done

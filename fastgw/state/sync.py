"""Make the state store hold what the config file declares (``apiKeys``, ``usagePlans``).

Config-declared records carry ``source="config"``: they are upserted at start and on every reload,
and removed from the store once they leave the config. Records created through the admin API
(``source="api"``) or imported from CSV (``source="import"``) are never touched, and neither are
their memberships in config plans (an operator may add an API-created key to a config plan).

Everything is checked before the first write, so a rejected config changes nothing. Applying the
same config twice writes nothing the second time (records are compared first), so the store's
``version`` does not move and workers do not reload for nothing.
"""

from __future__ import annotations

import msgspec

from fastgw.config.model import GatewayConfig
from fastgw.state.model import (
    KEY_PREFIX_CHARS,
    ApiKey,
    StateData,
    UsagePlan,
    hash_key_value,
    now_ts,
    stable_id,
)
from fastgw.state.store import Store

# Fields that change on every write and are left out of "is it different?".
_VOLATILE = ("createdDate", "lastUpdatedDate")


def config_key_id(name: str, explicit: str | None = None) -> str:
    """Id of a config API key: the one given, else "k" + 9 hex of SHA-256(name)."""
    return explicit or stable_id("k", name)


def config_plan_id(name: str, explicit: str | None = None) -> str:
    """Id of a config usage plan: the one given, else "p" + 9 hex of SHA-256(name)."""
    return explicit or stable_id("p", name)


def _same(a: msgspec.Struct, b: msgspec.Struct) -> bool:
    da = msgspec.structs.asdict(a)
    db = msgspec.structs.asdict(b)
    for name in _VOLATILE:
        da.pop(name, None)
        db.pop(name, None)
    return da == db


def desired_state(
    config: GatewayConfig, existing_keys: dict[str, ApiKey], existing_plans: dict[str, UsagePlan], now: float
) -> tuple[dict[str, ApiKey], dict[str, UsagePlan], dict[str, set[str]]]:
    """The records the config declares (keys, plans, plan members by plan id), checked against
    the store's existing records; raises ``ValueError`` as ``apply_config`` documents."""
    by_hash = {k.valueHash: k for k in existing_keys.values()}

    # ---------------------------------------------------------------- desired keys (checked)
    desired_keys: dict[str, ApiKey] = {}
    key_id_by_name: dict[str, str] = {}
    seen_hashes: dict[str, int] = {}
    for i, kc in enumerate(config.apiKeys):
        kid = config_key_id(kc.name, kc.id)
        if kc.name in key_id_by_name:
            raise ValueError(f"$.apiKeys[{i}].name: duplicate API key name {kc.name!r}")
        if kid in desired_keys:
            raise ValueError(f"$.apiKeys[{i}].id: duplicate API key id {kid!r}")
        value_hash = hash_key_value(kc.value)
        if value_hash in seen_hashes:
            raise ValueError(
                f"$.apiKeys[{i}].value: the same value as $.apiKeys[{seen_hashes[value_hash]}].value"
            )
        seen_hashes[value_hash] = i
        holder = by_hash.get(value_hash)
        if holder is not None and holder.source != "config":
            raise ValueError(
                f"$.apiKeys[{i}].value: this value already belongs to API key {holder.id} "
                f"(created through the admin API, source {holder.source!r})"
            )
        old = existing_keys.get(kid)
        if old is not None and old.source != "config":
            raise ValueError(
                f"$.apiKeys[{i}].id: id {kid!r} is already used by an API key created through the admin API"
            )
        key_id_by_name[kc.name] = kid
        desired_keys[kid] = ApiKey(
            id=kid,
            name=kc.name,
            enabled=kc.enabled,
            description=kc.description,
            customerId=kc.customerId,
            createdDate=old.createdDate if old is not None else now,
            lastUpdatedDate=now,
            valuePrefix=kc.value[:KEY_PREFIX_CHARS],
            valueHash=value_hash,
            source="config",
            stageKeys=old.stageKeys if old is not None else [],
            tags=old.tags if old is not None else {},
        )

    # ---------------------------------------------------------------- desired plans (checked)
    desired_plans: dict[str, UsagePlan] = {}
    desired_members: dict[str, set[str]] = {}
    plan_names: set[str] = set()
    for i, pc in enumerate(config.usagePlans):
        pid = config_plan_id(pc.name, pc.id)
        if pc.name in plan_names:
            raise ValueError(f"$.usagePlans[{i}].name: duplicate usage plan name {pc.name!r}")
        if pid in desired_plans:
            raise ValueError(f"$.usagePlans[{i}].id: duplicate usage plan id {pid!r}")
        plan_names.add(pc.name)
        old_plan = existing_plans.get(pid)
        if old_plan is not None and old_plan.source != "config":
            raise ValueError(
                f"$.usagePlans[{i}].id: id {pid!r} is already used by a usage plan created through the "
                "admin API"
            )
        members: set[str] = set()
        for j, key_name in enumerate(pc.keys):
            if key_name not in key_id_by_name:
                raise ValueError(f"$.usagePlans[{i}].keys[{j}]: no API key named {key_name!r} in apiKeys")
            members.add(key_id_by_name[key_name])
        desired_members[pid] = members
        desired_plans[pid] = UsagePlan(
            id=pid,
            name=pc.name,
            description=pc.description,
            apiStages=list(pc.apiStages),
            throttle=pc.throttle,
            quota=pc.quota,
            fail_open=pc.fail_open,
            tags=old_plan.tags if old_plan is not None else {},
            source="config",
        )

    return desired_keys, desired_plans, desired_members


def config_state(config: GatewayConfig) -> StateData:
    """The config's own keys and plans as state, without a store: workers merge it with the
    store's, so config keys keep working even if a shared store loses its data."""
    keys, plans, members = desired_state(config, {}, {}, 0.0)
    return StateData(
        keys=list(keys.values()),
        plans=list(plans.values()),
        plan_keys={pid: sorted(m) for pid, m in members.items()},
    )


async def apply_config(store: Store, config: GatewayConfig) -> None:
    """Upsert the config's keys and plans, delete config records it no longer declares.

    Raises ``ValueError`` (message starting with the JSON path of the bad field) when the config
    clashes with the store: a key value already used by a key not from the config
    (``$.apiKeys[i].value``), an id already used by an API-created record (``$.apiKeys[i].id``,
    ``$.usagePlans[i].id``), a duplicate name/id/value inside the config, or a plan listing an
    unknown key name (``$.usagePlans[i].keys[j]``).
    """
    now = now_ts()
    existing_keys = {k.id: k for k in await store.list_keys()}
    existing_plans = {p.id: p for p in await store.list_plans()}

    desired_keys, desired_plans, desired_members = desired_state(config, existing_keys, existing_plans, now)

    # ---------------------------------------------------------------- writes
    # Deletions first: a key renamed in the config keeps its value under a new id, and the old
    # record must release the value before the new one takes it.
    for kid, key in existing_keys.items():
        if key.source == "config" and kid not in desired_keys:
            await store.delete_key(kid)
    for pid, plan in existing_plans.items():
        if plan.source == "config" and pid not in desired_plans:
            await store.delete_plan(pid)
    for kid, key in desired_keys.items():
        old = existing_keys.get(kid)
        if old is None or not _same(old, key):
            await store.put_key(key)
    for pid, plan in desired_plans.items():
        old_plan = existing_plans.get(pid)
        if old_plan is None or not _same(old_plan, plan):
            await store.put_plan(plan)
        current = set(await store.plan_key_ids(pid)) if old_plan is not None else set()
        wanted = desired_members[pid]
        for kid in sorted(wanted - current):
            await store.add_plan_key(pid, kid)
        for kid in sorted(current - wanted):
            # Only memberships of config keys are the config's to remove.
            member = existing_keys.get(kid)
            if kid in desired_keys or (member is not None and member.source == "config"):
                await store.remove_plan_key(pid, kid)

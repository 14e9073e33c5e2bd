"""The order of a request's stages: built-in ones and user plugins' phases, in one place.

It is AWS API Gateway's documented request flow (authorizer, API key and usage plan,
throttling, request validation, cache lookup, integration request, integration, integration
response, method response) with the plugin phases placed around it. ``fastgw routes
--explain`` prints it for a route, marking what runs there and what is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    kind: str  # "plugins" (user plugin phase methods) or "built-in"
    what: str


PHASES: tuple[Phase, ...] = (
    Phase(
        "rewrite", "plugins", "plugins' rewrite(): may edit the request or answer it, before access checks"
    ),
    Phase("authorizer", "built-in", "the route's Lambda authorizer (TOKEN / REQUEST), decisions cached"),
    Phase("api_key", "built-in", "API key and usage plan (apiKeyRequired), quota"),
    Phase("throttle", "built-in", "token buckets: usage-plan key, stage/route, gateway"),
    Phase("access", "plugins", "plugins' access(): may edit the request or answer it"),
    Phase("validation", "built-in", "request validators: required parameters, JSON Schema body models"),
    Phase("cache", "built-in", "the stage's response cache: a hit ends the request here"),
    Phase(
        "integration",
        "built-in",
        "MOCK, HTTP_PROXY, HTTP, AWS_PROXY or AWS, with parameter mapping and request templates",
    ),
    Phase(
        "response_mapping", "built-in", "integration responses (selection pattern, templates), compression"
    ),
    Phase("response", "plugins", "plugins' response(): may edit status, headers, body"),
    Phase("log", "plugins", "plugins' log(): after the response is written; enqueue only"),
)

PHASE_NAMES = tuple(p.name for p in PHASES)


def describe(route: Any) -> list[str]:
    """The stages a request on ``route`` goes through, in order (``fastgw routes --explain``)."""
    pipe = route.pipeline
    lines = []
    for phase in PHASES:
        if phase.kind == "plugins":
            names = []
            if pipe is not None:
                steps = {
                    "rewrite": pipe.rewrite,
                    "access": pipe.access,
                    "response": pipe.response,
                    "log": pipe.logs,
                }
                prio = {name: (p, where) for name, p, where in pipe.plugins}
                for step in steps[phase.name]:
                    p, where = prio[step.plugin]
                    names.append(f"{step.plugin} (priority {p}, enabled at {where})")
            state = ", ".join(names) if names else "-"
        elif phase.name == "authorizer":
            auth = pipe.authorizer if pipe is not None else None
            parts = []
            if pipe is not None and pipe.iam is not None:
                parts.append("AWS_IAM (SigV4 + identity policy)")
            if pipe is not None and pipe.policy is not None:
                parts.append("resource policy")
            if auth is not None:
                if auth.type in ("JWT", "COGNITO_USER_POOLS"):
                    parts.append(f"{auth.type} authorizer {auth.name!r} (keys and verified tokens cached)")
                else:
                    parts.append(f"{auth.type} authorizer {auth.name!r} (cache {auth.ttl}s)")
            state = ", then ".join(parts) if parts else "none"
        elif phase.name == "api_key":
            source = (
                "authorizer's usageIdentifierKey"
                if pipe is not None and pipe.key_from_authorizer
                else "x-api-key"
            )
            state = f"required ({source})" if route.api_key_required else "not required"
        elif phase.name == "throttle":
            t = route.throttle
            state = (
                f"route {t.rateLimit:g} rps / burst {t.burstLimit}, then gateway" if t else "gateway limit"
            )
        elif phase.name == "validation":
            v = pipe.validation if pipe is not None else None
            if v is None:
                state = "off"
            else:
                parts = []
                if v.params:
                    parts.append("parameters " + ", ".join(f"{k}.{n}" for k, n in v.params))
                if v.models:
                    parts.append("body models for " + ", ".join(sorted(v.models)))
                state = "; ".join(parts)
        elif phase.name == "cache":
            c = route.cache
            if c is None:
                state = "off"
            else:
                where = "in the protocol, from the request head" if c.early else "in the pipeline"
                keyed = ", ".join(f"{k}.{n}" for k, n in c.spec.params)
                key = f"method + {c.spec.resource} + {keyed}"
                state = f"{c.backend}, TTL {c.ttl:g}s, key {key}; looked up {where}"
        elif phase.name == "integration":
            state = pipe.integration_name if pipe is not None else _fast_integration(route)
        elif phase.name == "response_mapping":
            parts = []
            if pipe is not None and "mapped" in pipe.integration_name:
                parts.append("integration responses")
            if pipe is not None and pipe.compress is not None:
                parts.append(f"compression from {pipe.compress} bytes")
            state = ", ".join(parts) if parts else "off"
        else:
            state = "off"
        lines.append(f"{phase.name:17} [{phase.kind}] {state}")
    if pipe is None:
        lines.append("(no pipeline: served on the streaming fast path)")
    return lines


def _fast_integration(route: Any) -> str:
    integ = route.integration
    targets = getattr(integ, "targets", None)
    if targets:
        t = targets[0]
        return f"HTTP_PROXY http://{t.host}:{t.port} (streaming)"
    return f"MOCK {integ.reply.status}"

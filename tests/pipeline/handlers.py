"""Lambda-style handlers, authorizers and plugins the pipeline tests point the gateway at.

The gateway process imports this module (``tests.pipeline.handlers:NAME``); authorizers record
each call in the file named by ``FASTGW_TEST_CALLS`` (one line per call) so that tests can
count calls across worker processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from typing import Any

import msgspec

from fastgw.plugins import Plugin, Request, Response


def _record(what: str) -> None:
    path = os.environ.get("FASTGW_TEST_CALLS")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {os.getpid()}\n")


def _ctx(context: Any) -> dict[str, Any]:
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "thread": threading.current_thread().name,
        "env": os.environ.get("GREETING"),
    }


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-handler": "echo"},
        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
        "body": json.dumps({"event": event, "context": _ctx(context)}),
    }


async def echo_async(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"event": event, "context": _ctx(context)}),
    }


async def hello(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": '{"hello":"world"}'}


def infer(event: dict[str, Any], context: Any) -> Any:
    """HTTP API 2.0: no statusCode, so API Gateway infers a 200 JSON response."""
    return {"hello": "inferred", "path": event["rawPath"]}


def boom(event: dict[str, Any], context: Any) -> Any:
    raise ValueError("boom")


def malformed(event: dict[str, Any], context: Any) -> Any:
    return {"statusCode": 200, "body": {"not": "a string"}}


def slow(event: dict[str, Any], context: Any) -> Any:
    time.sleep(float(event.get("queryStringParameters", {}).get("s", "2")))
    return {"statusCode": 200, "body": "slow"}


async def slow_async(event: dict[str, Any], context: Any) -> Any:
    await asyncio.sleep(float((event.get("queryStringParameters") or {}).get("s", "2")))
    return {"statusCode": 200, "body": "slow async"}


def binary(event: dict[str, Any], context: Any) -> Any:
    """Returns the request body reversed, base64 both ways."""
    raw = (
        base64.b64decode(event["body"])
        if event.get("isBase64Encoded")
        else (event.get("body") or "").encode()
    )
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "isBase64Encoded": True,
        "body": base64.b64encode(raw[::-1]).decode(),
    }


# ---------------------------------------------------------------- authorizers
def _policy(effect: str, resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
    }


def token_authorizer(event: dict[str, Any], context: Any) -> Any:
    """TOKEN authorizer: 'allow*' allows everything of the API stage, 'deny' denies, ..."""
    token = event["authorizationToken"]
    _record(f"token {token}")
    if token.startswith("Bearer "):
        token = token[7:]
    arn = event["methodArn"]
    stage_arn = "/".join(arn.split("/")[:2]) + "/*"
    if token.startswith("allow"):
        return {
            "principalId": "user-" + token,
            "policyDocument": _policy("Allow", stage_arn),
            "context": {"user": token, "level": 3, "admin": False},
            "usageIdentifierKey": os.environ.get("FASTGW_TEST_USAGE_KEY", ""),
        }
    if token == "get-only":
        return {
            "principalId": "reader",
            "policyDocument": _policy("Allow", "/".join(arn.split("/")[:2]) + "/GET/*"),
        }
    if token == "deny":
        return {"principalId": "nobody", "policyDocument": _policy("Deny", stage_arn)}
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "nopolicy":
        return {"principalId": "x"}
    if token == "slow":
        time.sleep(3)
    raise RuntimeError("authorizer bug")


def request_authorizer_v1(event: dict[str, Any], context: Any) -> Any:
    _record(f"request {event['headers'].get('x-user') or event['headers'].get('X-User')}")
    user = (event.get("headers") or {}).get("x-user") or (event.get("headers") or {}).get("X-User")
    effect = "Allow" if user == "alice" else "Deny"
    return {
        "principalId": user or "anonymous",
        "policyDocument": _policy(effect, event["methodArn"]),
        "context": {"user": user, "q": (event.get("queryStringParameters") or {}).get("q", "")},
    }


async def simple_authorizer(event: dict[str, Any], context: Any) -> Any:
    """HTTP API payload 2.0 with simple responses."""
    _record(f"simple {event['identitySource']}")
    user = event["headers"].get("x-user")
    return {"isAuthorized": user == "alice", "context": {"user": user, "route": event["routeKey"]}}


# ---------------------------------------------------------------- plugins
class TraceConfig(msgspec.Struct, forbid_unknown_fields=True):
    tag: str
    fail_in: str = ""


class Trace(Plugin):
    """Appends '<tag>:<phase>' to the x-trace request header and to the response's x-trace."""

    name = "test-trace"
    priority = 100
    Config = TraceConfig

    def _mark(self, req: Request, phase: str) -> None:
        if self.config.fail_in == phase:
            raise RuntimeError(f"trace plugin fails in {phase}")
        trail = req.ctx.setdefault("trace", [])
        trail.append(f"{self.config.tag}:{phase}")

    def rewrite(self, req: Request) -> Response | None:
        self._mark(req, "rewrite")
        return None

    async def access(self, req: Request) -> Response | None:
        self._mark(req, "access")
        if req.header("x-stop") == "yes":
            return Response(418, [("content-type", "text/plain")], b"stopped by plugin")
        req.set_header("x-trace", ",".join(req.ctx["trace"]))
        return None

    def response(self, req: Request, resp: Response) -> None:
        self._mark(req, "response")
        resp.set_header("x-trace", ",".join(req.ctx["trace"]))
        if req.authorizer is not None:
            resp.set_header("x-principal", str(req.authorizer.get("principalId")))

    def log(self, req: Request, resp: Response) -> None:
        _record(f"log {self.config.tag} {resp.status}")


class Early(Plugin):
    """A higher-priority plugin (runs before test-trace in every phase)."""

    name = "test-early"
    priority = 2000

    def access(self, req: Request) -> Response | None:
        req.ctx.setdefault("trace", []).append("early:access")
        return None


class Waf(Plugin):
    """Refuses requests with a ``?attack`` query as a WAF would (a WAF_FILTERED gateway error)."""

    name = "test-waf"

    def access(self, req: Request) -> Any:
        from fastgw.plugins import gateway_error

        if "attack" in req.query:
            return gateway_error("WAF_FILTERED")
        return None


class PetNotFound(Exception):
    pass


def pet_lookup(event: dict[str, Any], context: Any) -> Any:
    """AWS (non-proxy) integration: the mapped event in, a plain JSON result out."""
    pet_id = str(event.get("petId"))
    if pet_id == "404":
        raise PetNotFound(f"NotFound: no pet {pet_id}")
    return {"id": pet_id, "type": "dog", "price": 249.99, "seenBy": event.get("caller")}


class Retarget(Plugin):
    """Sets the ``proxy`` path parameter from ``X-Target`` (a plugin that edits the upstream
    path, to check what the gateway refuses to put in a request line)."""

    name = "test-retarget"

    def access(self, req: Request) -> None:
        target = req.header("x-target")
        if target is not None:
            req.params = {**(req.params or {}), "proxy": target}


class UpperParam(Plugin):
    """Upper-cases the ``proxy`` path parameter in place when ``X-Upper`` is sent (a plugin that
    edits ``req.params`` itself rather than replacing it)."""

    name = "test-upper-param"

    def access(self, req: Request) -> None:
        if req.header("x-upper") is not None and req.params:
            req.params["proxy"] = req.params["proxy"].upper()


class StallConfig(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float = 30.0


class Stall(Plugin):
    """A response phase that does not end in time (bounded by the pipeline's deadline)."""

    name = "test-stall"
    Config = StallConfig

    async def response(self, req: Request, resp: Response) -> None:
        await asyncio.sleep(self.config.seconds)

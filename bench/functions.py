"""What `python -m bench.load --functions` points the gateway at: a small async Lambda-style
handler and a TOKEN authorizer (the gateway imports this module as ``bench.functions``)."""

from __future__ import annotations

from typing import Any

# The same size as the upstream nginx's /small (100 bytes), so both routes send the same reply.
BODY = '{"message":"hello from an in-process function","padding":"' + "x" * 40 + '"}'
assert len(BODY) == 100

BENCH_TOKEN = "bench-token-0123456789"
_HEADERS = {"content-type": "application/json"}


async def small(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": _HEADERS, "body": BODY}


def authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["authorizationToken"] != BENCH_TOKEN:
        raise Exception("Unauthorized")
    stage_arn = "/".join(event["methodArn"].split("/")[:2]) + "/*"
    return {
        "principalId": "bench",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_arn}],
        },
        "context": {"user": "bench"},
    }


def functions_config(upstream_config: str) -> str:
    """The bench config plus ``/mock/{x}`` (the same body, no integration: the floor of a local
    reply), and two function routes: ``/fn/{x}`` and ``/auth/{x}`` (cached authorizer)."""
    mock = (
        '      - route: "GET /mock/{x}"\n'
        f"        integration: {{type: MOCK, headers: {{content-type: application/json}}, body: '{BODY}'}}\n"
    )
    routes = mock + (
        '      - route: "GET /fn/{x}"\n'
        "        integration: {type: AWS_PROXY, uri: small}\n"
        '      - route: "GET /auth/{x}"\n'
        "        integration: {type: AWS_PROXY, uri: small}\n"
        "        authorizer: tok\n"
    )
    text = upstream_config.replace("    routes:\n", "    routes:\n" + routes, 1)
    text = text.replace(
        "    stages:",
        "    authorizers:\n"
        "      - {name: tok, type: TOKEN, authorizerUri: authz,"
        " identitySource: method.request.header.Authorization}\n"
        "    stages:",
        1,
    )
    return text + (
        "functions:\n"
        "  small: {handler: 'bench.functions:small'}\n"
        "  authz: {handler: 'bench.functions:authorizer'}\n"
    )

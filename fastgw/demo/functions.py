"""The demo's Lambda-style function (``GET /prod/lambda/{name}``): an unchanged AWS handler."""

from __future__ import annotations

import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Greets ``{name}`` with what API Gateway passed (payload 1.0) and the Lambda context."""
    name = (event.get("pathParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "message": f"hello {name}, from a Lambda handler in fastgw",
                "resource": event["resource"],
                "query": event["queryStringParameters"],
                "sourceIp": event["requestContext"]["identity"]["sourceIp"],
                "requestId": event["requestContext"]["requestId"],
                "function": context.function_name,
            }
        ),
    }

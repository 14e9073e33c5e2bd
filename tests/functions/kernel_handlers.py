"""Handlers of ``test_lambda_kernel``'s gateways (imported as ``tests.functions.kernel_handlers``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def event_echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The event as JSON (key order kept), by the fast payload 1.0 reply path."""
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


async def in_task(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Needs a Task before its first await: asyncio.current_task() and asyncio.timeout()."""
    task = asyncio.current_task()
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
    return {"statusCode": 200, "body": json.dumps({"task": task is not None})}


async def unhashable_header(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A header value that is a list: a malformed REST proxy response (AWS: 502)."""
    return {"statusCode": 200, "headers": {"x-list": ["a"]}, "body": "x"}

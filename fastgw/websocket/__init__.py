"""WebSocket APIs (AWS API Gateway's third kind of API), and the helpers handlers call.

Handlers of any route (WebSocket or HTTP) running in a gateway worker can reach connections
without an HTTP round trip::

    from fastgw import websocket

    async def handler(event, context):
        stage = websocket.stage_of(event)             # "apiId/stage"
        await websocket.post_to_connection(conn_id, "hello")
        await websocket.broadcast(stage, "to everyone")
        await websocket.join_group(event["requestContext"]["connectionId"], "room-1")
        await websocket.broadcast(stage, "to the room", group="room-1")

``post_to_connection``, ``get_connection`` and ``delete_connection`` raise ``GoneException`` for
an unknown or closed connection (as boto3's ``apigatewaymanagementapi`` client does). These
are coroutines: call them from ``async def`` handlers (a thread-pool handler can use
``run_sync``).

Layout: ``config`` compiles a ``kind: websocket`` API; ``upgrade`` is the hand-over from the
HTTP protocol; ``connection`` runs one connection; ``integrations`` and ``events`` call routes as
AWS does; ``authorizer`` is the ``$connect`` authorizer; ``hub`` holds a worker's connections and
reaches the others (sibling workers, Redis); ``management`` is the ``@connections`` API.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastgw.websocket.hub import DeliveryTimeout
from fastgw.websocket.hub import Gone as GoneException

__all__ = [
    "DeliveryTimeout",
    "GoneException",
    "broadcast",
    "delete_connection",
    "get_connection",
    "join_group",
    "leave_group",
    "post_to_connection",
    "run_sync",
    "stage_of",
]

DEFAULT_TIMEOUT = 2.0


def _hub() -> Any:
    from fastgw.websocket.hub import hub

    return hub()


def stage_of(event: dict[str, Any]) -> str:
    """The "apiId/stage" a WebSocket event comes from (what ``broadcast`` takes)."""
    ctx = event["requestContext"]
    return f"{ctx['apiId']}/{ctx['stage']}"


async def post_to_connection(connection_id: str, data: bytes | str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Send a message (text for a str or UTF-8 bytes, else binary) to a connection anywhere."""
    await _hub().post(connection_id, data, timeout)


async def get_connection(connection_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """{"ConnectedAt", "Identity": {"SourceIp", "UserAgent"}, "LastActiveAt"} (epoch ms)."""
    return await _hub().info(connection_id, timeout)  # type: ignore[no-any-return]


async def delete_connection(connection_id: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Close a connection (its $disconnect route runs)."""
    await _hub().delete(connection_id, timeout)


async def join_group(connection_id: str, group: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Add a connection to a named group (it leaves all groups when it closes)."""
    await _hub().join(connection_id, group, timeout)


async def leave_group(connection_id: str, group: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    await _hub().join(connection_id, group, timeout, leave=True)


async def broadcast(
    stage: str, data: bytes | str, group: str | None = None, exclude: str | None = None
) -> int:
    """Send to every connection of a stage ("apiId/stage"), or of one group of it, on every
    worker and node; ``exclude`` skips one connection (the sender). Returns the number this
    worker delivered (other workers deliver on their own, without an answer)."""
    return await _hub().broadcast(stage, data, group, exclude)  # type: ignore[no-any-return]


def run_sync(coro: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Run one of these coroutines from a handler in the worker's thread pool."""
    loop = _hub().loop
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout + 1.0)

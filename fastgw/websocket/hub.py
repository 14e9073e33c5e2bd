"""Where a worker's WebSocket connections live, and how calls reach a connection anywhere.

One ``Hub`` per worker process (``hub()``), made on first use. It holds the connections this
worker serves (by connection id), the groups they joined, and the paths to the others:

- **Connection ids** name their holder: 11 bytes (node id, worker index, a counter, two random
  bytes) in URL-safe base64, 16 characters ending in ``=`` like AWS's ids. A call for an id
  goes straight to its holder; no lookup is needed to route it.
- **On one node** (``gateway.state.backend: embedded``) the workers reach each other through
  Unix datagram sockets in the node's directory (``ws-{index}.sock``).
- **Across nodes** (``backend: redis``) every worker subscribes to its own channel
  (``{prefix}ws:w:{node}:{index}``) and to the broadcast channel (``{prefix}ws:all``). Live
  connections are registered under ``{prefix}ws:c:{id}`` with a TTL that a heartbeat renews, so
  the connections of a crashed node disappear from the registry within ``REGISTRY_TTL``;
  ``PUBLISH`` reports how many subscribers got a call, so a call for a holder that is gone is
  answered "gone" at once.

Calls carry a request id and wait for the holder's reply up to ``delivery_timeout_ms``.
Messages between workers are msgpack maps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from fastgw.config.model import StateSettings
    from fastgw.websocket.connection import WsConnection

log = logging.getLogger("fastgw.websocket")

REGISTRY_TTL = 30  # seconds a registry entry outlives its last heartbeat
HEARTBEAT_SECONDS = 10.0
_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder()


class Gone(Exception):
    """The connection does not exist (any more), or its holder is gone."""


class DeliveryTimeout(Exception):
    """The holder of a connection did not answer in time."""


def _node_id() -> bytes:
    from fastgw.telemetry.node import node_directory

    directory = node_directory()
    if directory:
        # One id per running supervisor: its node directory is a fresh temporary name.
        return hashlib.sha256(f"{socket.gethostname()}:{directory}".encode()).digest()[:4]
    return secrets.token_bytes(4)


def holder_of(conn_id: str) -> tuple[bytes, int] | None:
    """(node id, worker index) encoded in a connection id, or None for a malformed id."""
    if len(conn_id) != 16:
        return None
    try:
        raw = base64.urlsafe_b64decode(conn_id)
    except (ValueError, TypeError):
        return None
    if len(raw) != 11:
        return None
    return raw[:4], raw[4]


class Hub:
    """This worker's WebSocket connections and its links to the other workers and nodes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int, state: StateSettings | None) -> None:
        self.loop = loop
        self.index = index
        self.node = _node_id()
        self.node_hex = self.node.hex()
        self._counter = itertools.count(1)
        #: conn id -> this worker's connection.
        self.local: dict[str, WsConnection] = {}
        #: group name -> ids of this worker's connections in it.
        self.groups: dict[str, set[str]] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._rid = itertools.count(1)
        self._tasks: set[asyncio.Future[Any]] = set()
        self.redis_settings = state.redis if state is not None and state.backend == "redis" else None
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._started: asyncio.Future[None] | None = None
        self._sock: socket.socket | None = None
        self._dir: str | None = None
        # Counters (published by the worker's metrics, see ``counters``).
        self.connects = 0
        self.refused = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bad_frames = 0
        self.slow_closed = 0
        self.throttled = 0

    # ------------------------------------------------------------------ ids and registry
    def new_id(self) -> str:
        n = next(self._counter) & 0xFFFFFFFF
        raw = self.node + bytes([self.index & 0xFF]) + n.to_bytes(4, "big") + secrets.token_bytes(2)
        return base64.urlsafe_b64encode(raw).decode()

    def register(self, conn: WsConnection) -> None:
        self.local[conn.conn_id] = conn
        self.connects += 1
        if self.redis_settings is not None:
            self.spawn(self._redis_register(conn))
        elif self._started is None:
            self.spawn(self._ensure_started())  # siblings can reach this worker from now on

    def unregister(self, conn: WsConnection) -> None:
        if self.local.pop(conn.conn_id, None) is None:
            return
        for name in conn.groups:
            members = self.groups.get(name)
            if members is not None:
                members.discard(conn.conn_id)
                if not members:
                    del self.groups[name]
        conn.groups.clear()
        if self.redis_settings is not None and self._redis is not None:
            self.spawn(self._redis.delete(self._key(conn.conn_id)))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("websocket hub task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ public operations
    async def post(self, conn_id: str, data: bytes | str, timeout: float) -> None:
        """Send ``data`` to a connection (text if it is a str or valid UTF-8). Raises Gone."""
        conn = self.local.get(conn_id)
        if conn is not None:
            if not conn.send_data(_as_text(data) if type(data) is bytes else data):
                raise Gone(conn_id)
            return
        payload = data.encode() if isinstance(data, str) else data
        await self._call(conn_id, {"op": "post", "id": conn_id, "data": payload}, timeout)

    async def info(self, conn_id: str, timeout: float) -> dict[str, Any]:
        """{"ConnectedAt", "Identity": {"SourceIp", "UserAgent"}, "LastActiveAt"} (ms). Raises Gone."""
        conn = self.local.get(conn_id)
        if conn is not None:
            if not conn.is_open():
                raise Gone(conn_id)
            return conn.info()
        got = await self._call(conn_id, {"op": "info", "id": conn_id}, timeout)
        return got  # type: ignore[no-any-return]

    async def delete(self, conn_id: str, timeout: float) -> None:
        """Close a connection (its $disconnect runs). Raises Gone."""
        conn = self.local.get(conn_id)
        if conn is not None:
            if not conn.is_open():
                raise Gone(conn_id)
            conn.close_by_api()
            return
        await self._call(conn_id, {"op": "delete", "id": conn_id}, timeout)

    async def join(self, conn_id: str, group: str, timeout: float, leave: bool = False) -> None:
        conn = self.local.get(conn_id)
        if conn is not None:
            if not conn.is_open():
                raise Gone(conn_id)
            self._join_local(conn, group, leave)
            return
        await self._call(
            conn_id, {"op": "leave" if leave else "join", "id": conn_id, "group": group}, timeout
        )

    def _join_local(self, conn: WsConnection, group: str, leave: bool) -> None:
        if leave:
            conn.groups.discard(group)
            members = self.groups.get(group)
            if members is not None:
                members.discard(conn.conn_id)
                if not members:
                    del self.groups[group]
        else:
            conn.groups.add(group)
            self.groups.setdefault(group, set()).add(conn.conn_id)

    async def broadcast(
        self, stage_uid: str, data: bytes | str, group: str | None = None, exclude: str | None = None
    ) -> int:
        """Send ``data`` to every connection of a stage (or of one group of it) on every worker
        and node; returns how many this worker delivered (the others deliver on their own)."""
        if asyncio.current_task() is None:
            return await asyncio.ensure_future(self.broadcast(stage_uid, data, group, exclude))
        payload = data.encode() if isinstance(data, str) else data
        msg = {"op": "bcast", "stage": stage_uid, "group": group, "exclude": exclude, "data": payload}
        await self._ensure_started()
        await self._send_all(msg)
        return self._broadcast_local(stage_uid, payload, group, exclude)

    def _broadcast_local(self, stage_uid: str, data: bytes, group: str | None, exclude: str | None) -> int:
        if group is not None:
            ids = self.groups.get(group)
            conns = [self.local[i] for i in ids if i in self.local] if ids else []
        else:
            conns = list(self.local.values())
        n = 0
        text = _as_text(data)
        for conn in conns:
            if conn.stage.uid == stage_uid and conn.conn_id != exclude and conn.send_data(text):
                n += 1
        return n

    # ------------------------------------------------------------------ calls to other workers
    async def _call(self, conn_id: str, msg: dict[str, Any], timeout: float) -> Any:
        if asyncio.current_task() is None:
            # A handler stepped outside a Task (fastgw.functions' fast path): timeouts and the
            # Redis client need one.
            return await asyncio.ensure_future(self._call(conn_id, msg, timeout))
        holder = holder_of(conn_id)
        if holder is None:
            raise Gone(conn_id)
        node, index = holder
        if node == self.node and index == self.index:
            raise Gone(conn_id)  # ours, and not in ``local``: closed
        if node != self.node and self.redis_settings is None:
            raise Gone(conn_id)  # another node, and no Redis to reach it
        await self._ensure_started()
        rid = next(self._rid)
        msg["rid"] = rid
        msg["from"] = [self.node_hex, self.index]
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        try:
            if not await self._send_to(node.hex(), index, msg):
                raise Gone(conn_id)
            try:
                async with asyncio.timeout(timeout):
                    reply = await fut
            except TimeoutError:
                raise DeliveryTimeout(conn_id) from None
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            raise Gone(conn_id)
        return reply.get("info")

    async def _on_message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "reply":
            fut = self._pending.get(msg.get("rid", 0))
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if op == "bcast":
            self._broadcast_local(msg["stage"], msg["data"], msg.get("group"), msg.get("exclude"))
            return
        conn = self.local.get(msg.get("id", ""))
        ok = conn is not None and conn.is_open()
        info = None
        if ok:
            assert conn is not None
            if op == "post":
                ok = conn.send_data(_as_text(msg["data"]))
            elif op == "info":
                info = conn.info()
            elif op == "delete":
                conn.close_by_api()
            elif op in ("join", "leave"):
                self._join_local(conn, msg["group"], op == "leave")
        sender = msg.get("from")
        if sender:
            await self._send_to(
                sender[0], sender[1], {"op": "reply", "rid": msg["rid"], "ok": ok, "info": info}
            )

    # ------------------------------------------------------------------ transports
    async def _ensure_started(self) -> None:
        if self._started is None:
            self._started = self.loop.create_future()
            try:
                if self.redis_settings is not None:
                    await self._start_redis()
                else:
                    self._start_unix()
            except Exception as ex:
                self._started.set_exception(ex)
                self._started.exception()
                self._started = None
                raise
            self._started.set_result(None)
        elif not self._started.done():
            await self._started

    def _start_unix(self) -> None:
        from fastgw.telemetry.node import node_directory

        self._dir = node_directory()
        if self._dir is None:
            return  # one worker, no node: nobody else to reach
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = os.path.join(self._dir, f"ws-{self.index}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock.bind(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setblocking(False)
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._unix_readable)

    def _unix_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                msg = _DECODE.decode(data)
            except msgspec.DecodeError:
                continue
            self.spawn(self._on_message(msg))

    async def _start_redis(self) -> None:
        import redis.asyncio as aioredis

        settings = self.redis_settings
        assert settings is not None
        timeout = settings.timeout_ms / 1000.0
        self._redis = aioredis.Redis.from_url(
            settings.url, socket_timeout=max(timeout, 1.0), socket_connect_timeout=max(timeout, 1.0)
        )
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel(self.node_hex, self.index), self._channel_all())
        self._reader = self.loop.create_task(self._read_pubsub())
        self._heartbeat = self.loop.call_later(HEARTBEAT_SECONDS, self._beat)

    async def _read_pubsub(self) -> None:
        pubsub = self._pubsub
        while True:
            try:
                got = await pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                log.warning("websocket pub/sub read failed", extra={"error": str(ex)})
                await asyncio.sleep(0.5)
                continue
            if got is None or got.get("type") != "message":
                continue
            try:
                msg = _DECODE.decode(got["data"])
            except msgspec.DecodeError:
                continue
            if msg.get("op") == "bcast" and msg.get("src") == [self.node_hex, self.index]:
                continue  # our own broadcast, delivered locally already
            await self._on_message(msg)

    def _channel(self, node_hex: str, index: int) -> str:
        assert self.redis_settings is not None
        return f"{self.redis_settings.prefix}ws:w:{node_hex}:{index}"

    def _channel_all(self) -> str:
        assert self.redis_settings is not None
        return f"{self.redis_settings.prefix}ws:all"

    def _key(self, conn_id: str) -> str:
        assert self.redis_settings is not None
        return f"{self.redis_settings.prefix}ws:c:{conn_id}"

    async def _send_to(self, node_hex: str, index: int, msg: dict[str, Any]) -> bool:
        """Deliver a message to one worker; False when it is certainly not there."""
        data = _ENCODE.encode(msg)
        if self.redis_settings is not None:
            try:
                n = await self._redis.publish(self._channel(node_hex, index), data)
            except Exception as ex:
                log.warning("websocket delivery through Redis failed", extra={"error": str(ex)})
                return False
            return bool(n)
        if self._dir is None or node_hex != self.node_hex:
            return False
        try:
            self._sock.sendto(data, os.path.join(self._dir, f"ws-{index}.sock"))  # type: ignore[union-attr]
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError as ex:
            log.warning("websocket delivery to a sibling worker failed", extra={"error": str(ex)})
            return False
        return True

    async def _send_all(self, msg: dict[str, Any]) -> None:
        if self.redis_settings is not None:
            msg["src"] = [self.node_hex, self.index]
            try:
                await self._redis.publish(self._channel_all(), _ENCODE.encode(msg))
            except Exception as ex:
                log.warning("websocket broadcast through Redis failed", extra={"error": str(ex)})
            return
        if self._dir is None:
            return
        data = _ENCODE.encode(msg)
        mine = f"ws-{self.index}.sock"
        for name in os.listdir(self._dir):
            if name.startswith("ws-") and name.endswith(".sock") and name != mine:
                with contextlib.suppress(OSError):
                    self._sock.sendto(data, os.path.join(self._dir, name))  # type: ignore[union-attr]

    async def _redis_register(self, conn: WsConnection) -> None:
        await self._ensure_started()
        entry = _ENCODE.encode({"node": self.node_hex, "worker": self.index, **conn.info()})
        await self._redis.set(self._key(conn.conn_id), entry, ex=REGISTRY_TTL)

    def _beat(self) -> None:
        self._heartbeat = self.loop.call_later(HEARTBEAT_SECONDS, self._beat)
        if self.local:
            self.spawn(self._renew(list(self.local)))

    async def _renew(self, ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for conn_id in ids:
                pipe.expire(self._key(conn_id), REGISTRY_TTL)
            await pipe.execute()

    async def registered(self, conn_id: str) -> bool:
        """Whether the Redis registry lists the connection (tests, diagnostics)."""
        await self._ensure_started()
        return bool(await self._redis.exists(self._key(conn_id)))

    def counters(self) -> dict[str, int]:
        return {
            "websocket_connects": self.connects,
            "websocket_refused": self.refused,
            "websocket_messages_in": self.messages_in,
            "websocket_messages_out": self.messages_out,
            "websocket_bad_frames": self.bad_frames,
            "websocket_slow_closed": self.slow_closed,
            "websocket_throttled": self.throttled,
        }


def _as_text(data: bytes) -> bytes | str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


_HUB: Hub | None = None


def running_hub() -> Hub | None:
    """This process's hub if a WebSocket connection or call has made it, else None."""
    return _HUB


def hub() -> Hub:
    """This process's hub (made on first use, for the running worker)."""
    global _HUB
    if _HUB is None:
        from fastgw.websocket import upgrade

        worker = upgrade.current_worker()
        if worker is None:
            _HUB = Hub(asyncio.get_running_loop(), 0, None)
        else:
            _HUB = Hub(worker.loop, worker.index, worker.snapshot.config.gateway.state)
    return _HUB

"""Where a worker's WebSocket connections live, and how calls reach a connection anywhere.

One ``Hub`` per worker process (``hub()``), made and started when the worker starts serving
(``fastgw.websocket.upgrade.bind_worker``). It holds the connections this worker serves (by
connection id), the groups they joined, and the paths to the others:

- **Connection ids** name their holder: 11 bytes (node id, worker index, a 48-bit sequence) in
  URL-safe base64, 16 characters ending in ``=`` like AWS's ids. A call for an id goes straight
  to its holder; no lookup is needed to route it. The sequence is a logical clock: milliseconds
  since 2024 shifted left by 7 bits, and never less than the previous id plus one. A restarted
  worker (same node, same index) therefore starts past every id its predecessor gave out, so ids
  never repeat across workers (the index), nodes (the node id) or restarts (the clock). Request
  and message ids come from the same sequence.
- **On one node** the workers reach each other through Unix datagram sockets in the node's
  directory (``ws-{index}.sock``), with or without Redis.
- **Across nodes** (``gateway.state.backend: redis``) every worker subscribes to its own channel
  (``{prefix}ws:w:{node}:{index}``) and to the broadcast channel (``{prefix}ws:all``). Live
  connections are registered under ``{prefix}ws:c:{id}`` with a TTL that a heartbeat renews
  (``SET ... EX``, so a restarted Redis gets the registry back), so the connections of a crashed
  node disappear from the registry within ``REGISTRY_TTL``; ``PUBLISH`` reports how many
  subscribers got a call, so a call for a holder that is gone is answered "gone" at once. The
  Redis side starts with the worker and retries with backoff while Redis is down; broadcasts
  still reach this node's connections meanwhile.

Every call carries the stage ("apiId/stage") it was made for, and the holder answers "gone"
for a connection of another stage: an ``@connections`` call of one stage never reaches another
stage's or API's connections, wherever they are held.

Calls carry a request id and wait for the holder's reply up to ``delivery_timeout_ms``. "Gone"
(410) is answered only when the holder is certainly not there (no subscriber on its channel, no
socket at its path, or its own answer); a transient failure (a full datagram queue, Redis down
or slow) is retried until the deadline, then answered as a timeout (504).
Messages between workers are msgpack maps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from fastgw.config.model import StateSettings
    from fastgw.server.worker import Worker
    from fastgw.websocket.config import WsStage
    from fastgw.websocket.connection import WsConnection

log = logging.getLogger("fastgw.websocket")

REGISTRY_TTL = 30  # seconds a registry entry outlives its last heartbeat
HEARTBEAT_SECONDS = 10.0
WATCH_SECONDS = 0.5  # how often the hub looks for a config swap (see ``resync``)
REDIS_RETRY_MAX = 5.0  # seconds between attempts to reach Redis, at most
SIBLING_RETRY_SECONDS = 1.0  # how long a broadcast retries a sibling whose queue is full
_ID_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_SEQ_MASK = (1 << 48) - 1
_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder()

# What one attempt to deliver a message to a worker gave.
_SENT = 0
_GONE = 1  # certainly not there: no subscriber, no socket
_RETRY = 2  # not delivered now (a full queue, Redis unreachable): try again until the deadline
_UNSURE = 3  # maybe delivered (Redis timed out after the command went out): not sent again


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

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        index: int,
        state: StateSettings | None,
        worker: Worker | None = None,
    ) -> None:
        self.loop = loop
        self.index = index
        self.worker = worker
        self.node = _node_id()
        self.node_hex = self.node.hex()
        self._prefix = self.node + bytes([index & 0xFF])
        self._seq = 0
        #: conn id -> this worker's connection.
        self.local: dict[str, WsConnection] = {}
        #: group name -> ids of this worker's connections in it.
        self.groups: dict[str, set[str]] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._rid = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self.redis_settings = state.redis if state is not None and state.backend == "redis" else None
        self._redis: Any = None
        self._pubsub: Any = None
        #: Subscribed to this worker's channels (the Redis side is up).
        self.redis_up = False
        self._redis_task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._started = False
        self._sock: socket.socket | None = None
        self._dir: str | None = None
        #: The snapshot the open connections are bound to, and its WebSocket stages by uid.
        self.bound: object = None
        self.stages: dict[str, WsStage] = {}
        if worker is not None:
            self._bind_stages(worker.snapshot)
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
        """A connection, request or message id, unique across workers, nodes and restarts."""
        seq = self._seq + 1
        clock = (int(time.time() * 1000) - _ID_EPOCH_MS) << 7
        if clock > seq:
            seq = clock
        self._seq = seq
        return base64.urlsafe_b64encode(self._prefix + (seq & _SEQ_MASK).to_bytes(6, "big")).decode()

    def register(self, conn: WsConnection) -> None:
        if self.worker is not None:
            # A config swapped while $connect ran: the connection joins the new config (or leaves).
            self.resync()
            if conn.stage is not self.stages.get(conn.stage.uid):
                self._rebind(conn)
        self.local[conn.conn_id] = conn
        self.connects += 1
        if self.redis_up:
            self.spawn(self._redis_register([conn]))

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
        if self._redis is not None:
            self.spawn(self._redis_forget(conn.conn_id))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("websocket hub task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ config swaps
    def _bind_stages(self, snapshot: Any) -> None:
        self.bound = snapshot
        self.stages = {s.websocket.uid: s.websocket for s in snapshot.stages if s.websocket is not None}

    def resync(self) -> None:
        """After a config swap: bind every open connection to its stage in the new config (same
        "apiId/stage": new routes, integrations and limits); a connection whose stage is gone
        gets its $disconnect and a close with 1001."""
        worker = self.worker
        if worker is None or worker.snapshot is self.bound:
            return
        self._bind_stages(worker.snapshot)
        for conn in list(self.local.values()):
            self._rebind(conn)

    def _rebind(self, conn: WsConnection) -> None:
        stage = self.stages.get(conn.stage.uid)
        if stage is None:
            conn.stage_removed()
        elif stage is not conn.stage:
            conn.rebind(stage)

    def _watch_tick(self) -> None:
        self._watch = self.loop.call_later(WATCH_SECONDS, self._watch_tick)
        self.resync()

    # ------------------------------------------------------------------ public operations
    def _local(self, conn_id: str, stage: str | None) -> WsConnection | None:
        """This worker's open connection ``conn_id`` (of ``stage`` when given). Raises Gone when
        it is held here but closed or of another stage; None when another worker holds it."""
        conn = self.local.get(conn_id)
        if conn is None:
            return None
        if not conn.is_open() or (stage is not None and conn.stage.uid != stage):
            raise Gone(conn_id)
        return conn

    async def post(self, conn_id: str, data: bytes | str, timeout: float, stage: str | None = None) -> None:
        """Send ``data`` to a connection (text if it is a str or valid UTF-8). Raises Gone.

        ``stage`` ("apiId/stage"): only a connection of that stage (the @connections API)."""
        conn = self._local(conn_id, stage)
        if conn is not None:
            if not conn.send_data(_as_text(data) if type(data) is bytes else data):
                raise Gone(conn_id)
            return
        payload = data.encode() if isinstance(data, str) else data
        await self._call(conn_id, {"op": "post", "id": conn_id, "stage": stage, "data": payload}, timeout)

    async def info(self, conn_id: str, timeout: float, stage: str | None = None) -> dict[str, Any]:
        """{"ConnectedAt", "Identity": {"SourceIp", "UserAgent"}, "LastActiveAt"} (ms). Raises Gone."""
        conn = self._local(conn_id, stage)
        if conn is not None:
            return conn.info()
        got = await self._call(conn_id, {"op": "info", "id": conn_id, "stage": stage}, timeout)
        return got  # type: ignore[no-any-return]

    async def delete(self, conn_id: str, timeout: float, stage: str | None = None) -> None:
        """Close a connection (its $disconnect runs). Raises Gone."""
        conn = self._local(conn_id, stage)
        if conn is not None:
            conn.close_by_api()
            return
        await self._call(conn_id, {"op": "delete", "id": conn_id, "stage": stage}, timeout)

    async def join(
        self, conn_id: str, group: str, timeout: float, leave: bool = False, stage: str | None = None
    ) -> None:
        conn = self._local(conn_id, stage)
        if conn is not None:
            self._join_local(conn, group, leave)
            return
        await self._call(
            conn_id,
            {"op": "leave" if leave else "join", "id": conn_id, "stage": stage, "group": group},
            timeout,
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
        and node; returns how many this worker delivered (the others deliver on their own).
        With Redis down, this node's workers still get it."""
        if asyncio.current_task() is None:
            return await asyncio.ensure_future(self.broadcast(stage_uid, data, group, exclude))
        payload = data.encode() if isinstance(data, str) else data
        msg = {"op": "bcast", "stage": stage_uid, "group": group, "exclude": exclude, "data": payload}
        n = self._broadcast_local(stage_uid, payload, group, exclude)
        await self._send_all(msg)
        return n

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
        if node == self.node and self._sock is None:
            raise Gone(conn_id)  # no siblings on this node
        self._rid += 1
        rid = self._rid
        msg["rid"] = rid
        msg["from"] = [self.node_hex, self.index]
        data = _ENCODE.encode(msg)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        try:
            async with asyncio.timeout(timeout):
                await self._deliver(node.hex(), index, data, conn_id)
                reply = await fut
        except TimeoutError:
            raise DeliveryTimeout(conn_id) from None
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            raise Gone(conn_id)
        return reply.get("info")

    async def _deliver(self, node_hex: str, index: int, data: bytes, conn_id: str) -> None:
        """Send until delivered (the caller's deadline bounds it). Raises Gone when the holder is
        certainly not there."""
        delay = 0.005
        while True:
            got = await self._send_to(node_hex, index, data)
            if got == _SENT or got == _UNSURE:
                return  # the holder's reply is awaited
            if got == _GONE:
                raise Gone(conn_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

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
        stage = msg.get("stage")
        ok = conn is not None and conn.is_open() and (stage is None or conn.stage.uid == stage)
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
            reply = _ENCODE.encode({"op": "reply", "rid": msg["rid"], "ok": ok, "info": info})
            deadline = self.loop.time() + 2.0
            delay = 0.005
            while await self._send_to(sender[0], sender[1], reply) == _RETRY:
                if self.loop.time() + delay > deadline:
                    log.warning("websocket reply not delivered", extra={"to": sender})
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)

    # ------------------------------------------------------------------ transports
    def start(self) -> None:
        """Open the paths to the other workers and nodes: the node's socket now, the Redis side in
        the background (retried with backoff while Redis is down). Called as the worker starts."""
        if self._started:
            return
        self._started = True
        try:
            self._start_unix()
        except OSError as ex:
            log.error("websocket: the node's socket could not be opened", extra={"error": str(ex)})
        if self.redis_settings is not None:
            import redis.asyncio as aioredis

            # The client connects on first use: publishing works from now on (when Redis is up);
            # subscribing is retried in the background.
            timeout = max(self.redis_settings.timeout_ms / 1000.0, 1.0)
            self._redis = aioredis.Redis.from_url(
                self.redis_settings.url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._redis_task = self.loop.create_task(self._run_redis())
        if self.worker is not None:
            self._watch = self.loop.call_later(WATCH_SECONDS, self._watch_tick)

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

    async def _run_redis(self) -> None:
        """Subscribe (retrying with backoff while Redis is down), then read the channels."""
        delay = 0.2
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel(self.node_hex, self.index), self._channel_all())
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                log.warning(
                    "websocket: Redis unreachable, retrying", extra={"error": str(ex), "retry_s": delay}
                )
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX)
                continue
            break
        self._pubsub = pubsub
        self._up()
        self._heartbeat = self.loop.call_later(HEARTBEAT_SECONDS, self._beat)
        await self._read_pubsub()

    def _up(self) -> None:
        self.redis_up = True
        if self.local:
            # The registry may have been lost with Redis: this worker's connections are listed again.
            self.spawn(self._redis_register(list(self.local.values())))

    async def _read_pubsub(self) -> None:
        pubsub = self._pubsub
        while True:
            try:
                got = await pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                if self.redis_up:
                    log.warning("websocket pub/sub read failed", extra={"error": str(ex)})
                self.redis_up = False
                await asyncio.sleep(0.5)
                continue
            if not self.redis_up:
                self._up()  # the client reconnected and subscribed again
            if got is None or got.get("type") != "message":
                continue
            try:
                msg = _DECODE.decode(got["data"])
            except msgspec.DecodeError:
                continue
            if msg.get("op") == "bcast":
                src = msg.get("src")
                if src and src[0] == self.node_hex and (self._sock is not None or src[1] == self.index):
                    continue  # this node's broadcast: delivered here and to the siblings already
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

    async def _send_to(self, node_hex: str, index: int, data: bytes) -> int:
        """One attempt to deliver a message to one worker: _SENT, _GONE or _RETRY."""
        if node_hex == self.node_hex:
            if self._sock is None or self._dir is None:
                return _GONE
            return self._sendto(os.path.join(self._dir, f"ws-{index}.sock"), data)
        if self._redis is None:
            return _RETRY  # the Redis side is starting
        from redis.exceptions import TimeoutError as RedisTimeout

        try:
            n = await self._redis.publish(self._channel(node_hex, index), data)
        except asyncio.CancelledError:
            raise
        except RedisTimeout:
            return _UNSURE  # the command may run when Redis answers again: never sent twice
        except Exception as ex:
            log.debug("websocket delivery through Redis failed", extra={"error": str(ex)})
            return _RETRY
        return _SENT if n else _GONE

    def _sendto(self, path: str, data: bytes) -> int:
        try:
            self._sock.sendto(data, path)  # type: ignore[union-attr]
        except (FileNotFoundError, ConnectionRefusedError):
            return _GONE  # no worker at that path
        except OSError as ex:
            if ex.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
                log.warning("websocket delivery to a sibling worker failed", extra={"error": str(ex)})
            return _RETRY  # its queue is full (it is busy): try again
        return _SENT

    async def _send_all(self, msg: dict[str, Any]) -> None:
        msg["src"] = [self.node_hex, self.index]
        data = _ENCODE.encode(msg)
        if self._sock is not None and self._dir is not None:
            mine = f"ws-{self.index}.sock"
            paths = [
                os.path.join(self._dir, name)
                for name in os.listdir(self._dir)
                if name.startswith("ws-") and name.endswith(".sock") and name != mine
            ]
            deadline = self.loop.time() + SIBLING_RETRY_SECONDS
            delay = 0.005
            while paths:
                paths = [p for p in paths if self._sendto(p, data) == _RETRY]
                if not paths or self.loop.time() + delay > deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
            if paths:
                log.warning(
                    "websocket broadcast not delivered to busy workers", extra={"workers": len(paths)}
                )
        if self._redis is not None:
            try:
                await self._redis.publish(self._channel_all(), data)
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                log.warning("websocket broadcast through Redis failed", extra={"error": str(ex)})

    def _entry(self, conn: WsConnection) -> bytes:
        return _ENCODE.encode({"node": self.node_hex, "worker": self.index, **conn.info()})

    async def _redis_register(self, conns: list[WsConnection]) -> None:
        """List connections in the registry (SET with a TTL: a restarted Redis gets them back)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for conn in conns:
                    pipe.set(self._key(conn.conn_id), self._entry(conn), ex=REGISTRY_TTL)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as ex:
            log.debug("websocket registry not updated", extra={"error": str(ex)})

    async def _redis_forget(self, conn_id: str) -> None:
        try:
            await self._redis.delete(self._key(conn_id))
        except asyncio.CancelledError:
            raise
        except Exception as ex:
            log.debug("websocket registry entry not removed", extra={"error": str(ex)})

    def _beat(self) -> None:
        self._heartbeat = self.loop.call_later(HEARTBEAT_SECONDS, self._beat)
        if self.local:
            self.spawn(self._redis_register(list(self.local.values())))

    async def registered(self, conn_id: str) -> bool:
        """Whether the Redis registry lists the connection (tests, diagnostics)."""
        return self._redis is not None and bool(await self._redis.exists(self._key(conn_id)))

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
    """This process's hub (made and started on first use, for the running worker)."""
    global _HUB
    if _HUB is None:
        from fastgw.websocket import upgrade

        worker = upgrade.current_worker()
        if worker is None:
            _HUB = Hub(asyncio.get_running_loop(), 0, None)
        else:
            _HUB = Hub(worker.loop, worker.index, worker.snapshot.config.gateway.state, worker)
        _HUB.start()
    return _HUB

"""One WebSocket connection: the opening handshake, ``$connect``, frames, routes, ``$disconnect``.

The HTTP protocol hands a connection over once the head of an upgrade request for a WebSocket
stage is in (``fastgw.websocket.upgrade``): ``WsConnection`` becomes the transport's protocol.
RFC 6455 framing is the ``websockets`` package's sans-IO ``ServerProtocol`` (masking,
fragmentation, control frames, ping answered with pong, the close handshake, UTF-8 of close
reasons, permessage-deflate): this module feeds it bytes, reads its frames and writes what it
has to send. It checks what that layer leaves to the application: UTF-8 of text messages (1007),
and sizes are capped there (``max_size`` = (message, frame): 1009).

Order of a connection, as AWS's:

1. The handshake is validated (method, ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key`` and
   ``-Version``: 400 / 426 otherwise, no route runs) and the worker's new-connection rate is
   checked (429).
2. ``$connect`` runs before the 101 goes out: its authorizer (401 / 403 / 500), its API key
   (403), its integration; a non-2xx answer refuses the upgrade with that status. Bytes the
   client sends meanwhile wait (reading is paused).
3. Messages: route selection on the JSON body, the route's throttle (``Too Many Requests``,
   connection kept), its integration; a two-way route sends the answer back. Handler failures
   send AWS's ``Internal server error`` message; the connection stays.
4. ``$disconnect`` runs once, whatever ended the connection (client close, idle timeout,
   maximum duration, ``DELETE @connections``, a protocol error, shutdown), best effort.

Limits: idle timeout and maximum duration are this connection's ``deadline``, watched by its
own lazily re-armed timer (``on_deadline``; not the worker's ticker, whose scan of every HTTP
connection would grow with idle WebSocket clients); bytes queued towards a slow reader are
capped (1008, counted), whatever queued them (messages, or pongs to a client that floods pings
and never reads); past the transport's high-water mark reading pauses, so a client that does
not read stops being read; at most ``MAX_INFLIGHT`` messages of one connection run at once
(reading pauses beyond).

A config swap (SIGHUP, a deployment) rebinds an open connection to its stage in the new config
(``rebind``, called by the hub): new routes, integrations and limits. A connection whose stage
left the config gets its ``$disconnect`` and a close with 1001 (``stage_removed``). A
``$connect`` that finishes while the worker drains (SIGTERM) is accepted, then ``$disconnect``
runs and the connection is closed with 1001, as every open connection of a draining worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from fastgw.websocket import events
from fastgw.websocket.accesslog import WsEvent
from fastgw.websocket.authorizer import Refusal
from fastgw.websocket.integrations import (
    Answer,
    IntegrationError,
    IntegrationTimeout,
    call_function,
    call_http,
    function_answer,
)

if TYPE_CHECKING:
    from fastgw.server.worker import Worker
    from fastgw.websocket.config import WsRoute, WsStage
    from fastgw.websocket.hub import Hub
    from fastgw.websocket.upgrade import Handshake

log = logging.getLogger("fastgw.websocket")

# The framing layer's own log (it reports every opened connection at INFO): warnings only.
_FRAMES_LOG = logging.getLogger("fastgw.websocket.frames")
_FRAMES_LOG.setLevel(logging.WARNING)

MAX_INFLIGHT = 32  # messages of one connection whose integrations run at once
CLOSE_GRACE = 2.0  # seconds a closing connection waits for the client's close frame

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN


class _NoKey:
    """What the traffic gate reads of a message: no API key (only $connect takes one)."""

    __slots__ = ("api_key", "key_gen", "key_rt", "key_value")

    def __init__(self, api_key: bytes | None = None) -> None:
        self.api_key = api_key
        self.key_value: bytes | None = None
        self.key_rt: object = None
        self.key_gen = -1


_NO_KEY = _NoKey()


def _observe(route: WsRoute | None, status: int, started: float, now: float, integrated: bool) -> None:
    """Count one $connect, message or $disconnect in its route's metrics (AWS's ConnectCount,
    MessageCount, ClientError, ExecutionError and IntegrationLatency: fastgw.telemetry)."""
    if route is None:
        return
    stats = route.rt.stats
    if stats is not None:
        ms = (now - started) * 1000.0
        stats.record(status, ms, ms if integrated else None, 0)


# $context.error.message of an event's access log line, by the status the client got.
_LOG_ERRORS = {
    401: "Unauthorized",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Internal server error",
    504: "Endpoint request timed out",
}


def _error(message: str, conn_id: str, request_id: str) -> str:
    # AWS's error messages to a WebSocket client (note the space after each colon).
    return (
        orjson.dumps({"message": message, "connectionId": conn_id, "requestId": request_id})
        .decode()
        .replace('":"', '": "')
        .replace('","', '", "')
    )


def _http_reply(
    status: int, body: bytes, request_id: str, extra: list[tuple[str, str]] | None = None
) -> bytes:
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = [f"HTTP/1.1 {status} {reason}\r\n", "content-type: application/json\r\n"]
    for k, v in extra or ():
        head.append(f"{k}: {v}\r\n")
    head.append(f"content-length: {len(body)}\r\nx-amzn-RequestId: {request_id}\r\nconnection: close\r\n\r\n")
    return "".join(head).encode("latin-1") + body


class WsConnection(asyncio.Protocol):
    """One client's WebSocket connection, from its upgrade request to its last frame."""

    def __init__(self, worker: Worker, hub: Hub, hs: Handshake) -> None:
        stage: WsStage = hs.stage
        self.worker = worker
        self.hub = hub
        self.loop = worker.loop
        self.stage = stage
        self.settings = stage.settings
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ws: ServerProtocol | None = None
        self.conn_id = hub.new_id()
        self.connected_at = int(time.time() * 1000)
        self.opened_at = 0.0  # loop time of the handshake, then of the 101
        self.active_at = 0.0  # loop time of the client's last frame
        self.last_active = self.connected_at
        self.headers = hs.headers
        self.query = hs.query
        self.source_ip = hs.source_ip
        self.user_agent = hs.header("user-agent") or ""
        self.domain = hs.domain
        self.api_key = hs.api_key
        self.authorizer: dict[str, Any] | None = None
        self.groups: set[str] = set()
        self.opened = False  # the 101 went out
        self.closed = False  # the transport is gone
        self.disconnect_done = False
        self.close_code: int | None = None  # what the gateway closed with
        self.close_reason = ""
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0.0  # when ``_timer`` fires
        self.end_at = 0.0
        self.closing_at = 0.0
        self.inflight = 0
        self.paused = False  # reading is paused (see ``_reading``)
        self.write_paused = False  # the transport is over its high-water mark
        self.buffered: list[bytes] = []
        self.parts: list[bytes] = []
        self.msg_text = False
        self.tasks: set[asyncio.Future[Any]] = set()
        self.connect_task: asyncio.Task[None] | None = None
        # Whether a failed $connect was refused by the gateway (False: by its integration).
        self.refusal = True
        # The $connect request's id, of the same form as every message's (AWS's).
        self.request_id = hub.new_id()
        self.static_context: dict[str, Any] = {
            "messageDirection": "IN",
            "stage": stage.name,
            "connectedAt": self.connected_at,
            "identity": {"sourceIp": self.source_ip},
            "domainName": self.domain,
            "connectionId": self.conn_id,
            "apiId": stage.api.id,
        }

    def _event(
        self,
        event_type: str,
        route: WsRoute | None,
        route_key: str | None,
        rid: str,
        status: int,
        started: float,
        integrated: bool,
        error: str | None = "",
        message_id: str | None = None,
    ) -> None:
        """One $connect, message or $disconnect is answered: its metrics and access log line
        (``error``: $context.error.message; by default the gateway's message for ``status``)."""
        now = self.loop.time()
        _observe(route, status, started, now, integrated)
        access_log = self.stage.access_log
        if access_log is not None:
            ms = (now - started) * 1000.0
            error = _LOG_ERRORS.get(status) if error == "" else error
            int_ms = ms if integrated else None
            access_log.emit(WsEvent(self, event_type, route_key, rid, status, ms, int_ms, error, message_id))

    # ------------------------------------------------------------------ lookups
    def header(self, name: str) -> str | None:
        lname = name.lower()
        value = None
        for k, v in self.headers:
            if k.lower() == lname:
                value = v if value is None else value + "," + v
        return value

    def query_value(self, name: str) -> str | None:
        qs, _ = events.query_params(self.query)
        return qs.get(name) if qs else None

    def context_value(self, name: str) -> str | None:
        if name == "identity.sourceIp":
            return self.source_ip
        if name == "routeKey":
            return "$connect"
        value = self.static_context.get(name)
        return str(value) if value is not None else None

    def disconnect_headers(self) -> list[tuple[str, str]]:
        host = self.header("host") or self.domain
        return [("Host", host), ("x-api-key", ""), ("X-Forwarded-For", ""), ("x-restapi", "")]

    def is_open(self) -> bool:
        return self.opened and not self.closed and self.ws is not None and self.ws.state is _OPEN

    def info(self) -> dict[str, Any]:
        """What GET @connections/{id} answers (AWS's GetConnection output, ms timestamps)."""
        return {
            "ConnectedAt": self.connected_at,
            "Identity": {"SourceIp": self.source_ip, "UserAgent": self.user_agent},
            "LastActiveAt": self.last_active,
        }

    # ------------------------------------------------------------------ handshake
    def start(self, transport: asyncio.Transport, hs: Handshake, rest: bytes) -> None:
        """Take the transport over from the HTTP protocol and answer the upgrade request."""
        self.transport = transport
        self.worker.ws_connections.add(self)
        settings = self.settings
        now = self.opened_at = self.loop.time()
        self.end_at = now + settings.max_duration
        self.deadline = now + 60.0  # the handshake's own bound; set again once open
        problem = hs.problem()
        if problem is not None:
            status, body, extra = problem
            self.hub.refused += 1
            self._refuse_raw(status, body, extra)
            return
        extensions = None
        if settings.permessage_deflate:
            from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

            extensions = [ServerPerMessageDeflateFactory()]
        ws = self.ws = ServerProtocol(
            extensions=extensions,
            select_subprotocol=lambda _p, _s: None,
            max_size=(settings.max_message_bytes, settings.max_frame_bytes),
            logger=_FRAMES_LOG,
        )
        request = Request(hs.path_for_ws, Headers(hs.ws_headers()))
        response = ws.accept(request)
        if response.status_code != 101:
            # The framing layer's refusals are plain text: sent as AWS-style JSON.
            self.hub.refused += 1
            text = response.body.decode("utf-8", "replace").strip().split("\n", 1)[0]
            extra = (
                [("upgrade", "websocket"), ("sec-websocket-version", "13")]
                if response.status_code == 426
                else []
            )
            self._refuse_raw(response.status_code, orjson.dumps({"message": text}), extra)
            return
        if not self.worker_admits(now):
            self.hub.refused += 1
            self._refuse_raw(429, b'{"message":"Too Many Requests"}', [])
            return
        if rest:
            self.buffered.append(rest)
        self._reading()  # paused until the 101 goes out
        stage = self.stage
        if stage.connect is None and stage.authorizer is None:
            self._accept(response, None)
            return
        self.connect_task = self.loop.create_task(self._run_connect(response))

    def worker_admits(self, now: float) -> bool:
        """The node's new-connections bucket of this stage (``new_connections_per_second``),
        in the node's shared table (every worker takes from the same bucket)."""
        rate = self.settings.new_connections_per_second
        if not rate:
            return True
        table = self.worker.table
        slot = _connect_slot(table, self.stage.uid)
        if slot >= 0:
            return bool(table.take(slot, rate, max(rate, 1.0), now) == 0.0)
        # The table is full (no slot to claim): this worker's own bucket.
        buckets = _connect_buckets
        key = id(self.stage)
        tokens, last = buckets.get(key, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            return False
        buckets[key] = (tokens - 1.0, now)
        return True

    async def _run_connect(self, response: Response) -> None:
        stage = self.stage
        svc = self.worker.services
        rid = self.request_id
        started = self.loop.time()
        status = 500
        try:
            status = await self._connect(response, stage, svc, rid)
        finally:
            route = stage.connect
            # A refusal by the $connect integration itself (its own status) is no gateway error.
            error = "" if self.refusal else None
            self._event("CONNECT", route, "$connect", rid, status, started, route is not None, error)

    async def _connect(self, response: Response, stage: WsStage, svc: Any, rid: str) -> int:
        """Authorize and run $connect; accept or refuse. The status the client got."""
        try:
            if stage.authorizer is not None:
                self.authorizer = await stage.authorizer.authorize(self, svc, rid)
            route = stage.connect
            if route is not None and route.rt.api_key_required:
                verdict = svc.gate.admit(route.rt, _NoKey(self.api_key), self.loop.time())  # type: ignore[arg-type]
                if verdict is not None and type(verdict) is not type(None):
                    if isinstance(verdict, asyncio.Future):
                        verdict = await verdict
                    if verdict is not None:
                        raise Refusal(
                            verdict.status, "Forbidden" if verdict.status == 403 else "Too Many Requests"
                        )
            answer = None
            if route is not None:
                try:
                    answer = await self._invoke(route, None, rid, "CONNECT")
                except IntegrationTimeout:
                    raise Refusal(504, "Endpoint request timed out") from None
                except IntegrationError:
                    raise Refusal(500, "Internal server error") from None
                if not 200 <= answer.status < 300:
                    body = answer.body
                    if body is None:
                        body = b""
                    self.hub.refused += 1
                    self.refusal = False
                    self._refuse_raw(answer.status, body.encode() if isinstance(body, str) else body, [])
                    return answer.status
        except Refusal as ex:
            self.hub.refused += 1
            body = orjson.dumps({"message": ex.message})
            self._refuse_raw(ex.status, body, [])
            return ex.status
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("websocket $connect failed", extra={"stage": stage.uid})
            self.hub.refused += 1
            self._refuse_raw(500, b'{"message":"Internal server error"}', [])
            return 500
        finally:
            self.connect_task = None
        if self.closed:
            return 499  # the client left during $connect
        self._accept(response, answer)
        return 200

    def _accept(self, response: Response, answer: Answer | None) -> None:
        ws = self.ws
        assert ws is not None
        if answer is not None:
            proto = answer.header("sec-websocket-protocol")
            if proto:
                response.headers["Sec-WebSocket-Protocol"] = proto
                ws.subprotocol = proto  # type: ignore[assignment]
        ws.send_response(response)
        # The head was parsed by the HTTP protocol, not by ``ws``: its parser starts at frames
        # (ServerProtocol.parse would wait for an HTTP request first).
        ws.parser = Protocol.parse(ws)
        next(ws.parser)
        self.opened = True
        now = self.active_at = self.loop.time()
        self.deadline = min(now + self.settings.idle_timeout, self.end_at)
        self.hub.register(self)  # may rebind the connection to a config swapped meanwhile
        self._flush()
        if self.worker.draining:
            # SIGTERM came while $connect ran: the connection ends as every open one does.
            self.shutdown()
        self._reading()
        if self.buffered:
            data = b"".join(self.buffered)
            self.buffered.clear()
            self.data_received(data)

    def _refuse_raw(self, status: int, body: bytes, extra: list[tuple[str, str]]) -> None:
        if self.closed:
            return
        self.transport.write(_http_reply(status, body, self.request_id, extra))
        self.transport.close()
        self.closed = True
        self.worker.ws_connections.discard(self)
        self._disarm()

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.ws_connections.discard(self)
        self._disarm()
        task = self.connect_task
        if task is not None:
            task.cancel()
        if not self.opened:
            return
        self.hub.unregister(self)
        if not self.disconnect_done:
            code, reason = self._disconnect_status()
            self._spawn(self._run_disconnect(code, reason))

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is None or self.closed:
            return
        if not self.opened:
            self.buffered.append(data)
            return
        ws.receive_data(data)
        evs = ws.events_received()
        if evs:
            self.last_active = int(time.time() * 1000)
            now = self.active_at = self.loop.time()
            self.deadline = min(now + self.settings.idle_timeout, self.end_at)
            for frame in evs:
                op = frame.opcode
                if op is _TEXT or op is _BINARY:
                    if frame.fin:
                        self._message(frame.data, op is _TEXT)
                    else:
                        self.parts = [frame.data]
                        self.msg_text = op is _TEXT
                elif op is _CONT:
                    self.parts.append(frame.data)
                    if frame.fin:
                        data = b"".join(self.parts)
                        self.parts = []
                        self._message(data, self.msg_text)
                if ws.state is not _OPEN:
                    break
        if ws.parser_exc is not None and self.close_code is None:
            self.hub.bad_frames += 1
            self.close_code = ws.close_sent.code if ws.close_sent is not None else 1002
            self.close_reason = ws.close_sent.reason if ws.close_sent is not None else ""
        self._flush()

    def eof_received(self) -> bool | None:
        ws = self.ws
        if ws is not None and self.opened:
            ws.receive_eof()
            self._flush()
        return None

    def pause_writing(self) -> None:
        # A client that does not read is not read either: what it sends (pings above all) would
        # only queue more bytes towards it.
        self.write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reading()

    def _reading(self) -> None:
        """Pause or resume reading: paused before the 101, past MAX_INFLIGHT running messages,
        and while the transport is over its high-water mark."""
        want = not self.opened or self.inflight >= MAX_INFLIGHT or self.write_paused
        if want is self.paused or self.closed:
            return
        self.paused = want
        if want:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # ------------------------------------------------------------------ writing
    def _flush(self) -> None:
        ws = self.ws
        if ws is None or self.closed:
            return
        transport = self.transport
        for chunk in ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()  # the server ends the TCP connection (after the close frames)
                return
        if ws.state is not _OPEN:
            if not self.closing_at:
                # A close frame went out: the client's answer is awaited for a while, then the
                # connection is dropped (so a silent client cannot hold it).
                self.closing_at = self.loop.time() + CLOSE_GRACE
                self.deadline = self.closing_at
        elif transport.get_write_buffer_size() > self.settings.max_outbound_bytes:
            # A reader slower than what it is sent (messages, or the pongs of a ping flood):
            # closed (1008) rather than buffered forever.
            self.hub.slow_closed += 1
            log.warning("websocket client too slow: closed", extra={"connection": self.conn_id})
            self.close(CloseCode.POLICY_VIOLATION, "Outbound buffer full")

    def send_data(self, data: bytes | str) -> bool:
        """Send a message to the client (text for a str). False when the connection is not open."""
        ws = self.ws
        if ws is None or not self.opened or self.closed or ws.state is not _OPEN:
            return False
        if type(data) is str:
            ws.send_text(data.encode())  # type: ignore[union-attr]
        else:
            ws.send_binary(data)  # type: ignore[arg-type]
        self.hub.messages_out += 1
        self._flush()
        return True

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake with ``code``."""
        ws = self.ws
        if ws is None or self.closed or ws.state is not _OPEN:
            return
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        ws.send_close(code, reason)
        self._flush()

    def close_by_api(self) -> None:
        self.close(CloseCode.NORMAL_CLOSURE, "")

    # ------------------------------------------------------------------ config swaps
    def rebind(self, stage: WsStage) -> None:
        """The config was swapped and this connection's stage is in the new one: its routes,
        integrations and limits from now on (the hub calls this)."""
        self.stage = stage
        settings = self.settings = stage.settings
        ws = self.ws
        if ws is not None:
            ws.max_message_size = settings.max_message_bytes
            ws.max_fragment_size = settings.max_frame_bytes
        self.end_at = self.opened_at + settings.max_duration
        if self.opened and not self.closing_at and not self.closed:
            self.deadline = min(self.active_at + settings.idle_timeout, self.end_at)

    def stage_removed(self) -> None:
        """The config was swapped and this connection's stage is not in the new one: its
        $disconnect runs, then it is closed with 1001 ("Going away")."""
        self.shutdown()

    # ------------------------------------------------------------------ deadlines and drain
    # PERF: each connection has one timer, armed lazily: a later deadline (every message pushes
    # the idle timeout back) is picked up when the timer fires and re-arms; only an earlier one
    # re-arms at once. No scan of all connections, however many sit idle.
    @property
    def deadline(self) -> float:
        """When the idle timeout, the maximum duration or the close grace ends (0: none)."""
        return self._deadline

    @deadline.setter
    def deadline(self, when: float) -> None:
        self._deadline = when
        if when and (self._timer is None or when < self._armed):
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = self.loop.call_at(when, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        when = self._deadline
        if not when or self.closed:
            return
        if when > self.loop.time():
            self._arm(when)
            return
        self.on_deadline()

    def on_deadline(self) -> None:
        """The worker's ticker: the idle timeout, the maximum duration or the close grace passed."""
        self.deadline = 0.0
        if not self.opened or self.closing_at:
            self.transport.abort()
            return
        # Idle timeout or maximum duration (now >= end_at): AWS closes both with 1001.
        self.close(CloseCode.GOING_AWAY, "Going away")
        if not self.closing_at:
            self.transport.abort()

    def shutdown(self) -> None:
        """Drain (SIGTERM), or a stage that left the config: $disconnect first, then close 1001."""
        if not self.opened:
            if self.connect_task is None:
                self.transport.abort()
            return
        if self.disconnect_done or self.closed:
            return
        self.disconnect_done = True
        self._spawn(self._drain())

    async def _drain(self) -> None:
        await self._run_disconnect(CloseCode.GOING_AWAY, "Going away", force=True)
        self.close(CloseCode.GOING_AWAY, "Going away")

    def _disconnect_status(self) -> tuple[int, str]:
        if self.close_code is not None:
            return self.close_code, self.close_reason
        ws = self.ws
        rcvd = ws.close_rcvd if ws is not None else None
        if rcvd is not None:
            if rcvd.code == CloseCode.NO_STATUS_RCVD:
                return 1005, "Client-side close frame status not set"
            return rcvd.code, rcvd.reason
        return 1006, "Connection closed abnormally"

    async def _run_disconnect(self, code: int, reason: str, force: bool = False) -> None:
        if self.disconnect_done and not force:
            return
        self.disconnect_done = True
        route = self.stage.disconnect
        rid = self.hub.new_id()
        started = self.loop.time()
        if route is None:
            if self.stage.access_log is not None:
                self._event("DISCONNECT", None, "$disconnect", rid, 200, started, False)
            return
        status = 200
        try:
            await self._invoke(route, None, rid, "DISCONNECT", (code, reason))
        except (IntegrationError, IntegrationTimeout):
            status = 502  # best effort, as AWS documents; the failure is logged by the integration
        except Exception:
            status = 500
            log.exception("websocket $disconnect failed", extra={"stage": self.stage.uid})
        self._event("DISCONNECT", route, "$disconnect", rid, status, started, True)

    # ------------------------------------------------------------------ messages
    def _select(self, data: bytes | str, is_text: bool) -> WsRoute | None:
        stage = self.stage
        if is_text and stage.routes:
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                doc = None
            for name in stage.selection:
                if type(doc) is not dict:
                    doc = None
                    break
                doc = doc.get(name)
            if doc is not None and type(doc) is not dict and type(doc) is not list:
                key = doc if type(doc) is str else orjson.dumps(doc).decode()
                route = stage.routes.get(key)
                if route is not None:
                    return route
        return stage.default

    def _message(self, data: bytes, is_text: bool) -> None:
        hub = self.hub
        hub.messages_in += 1
        if self.worker.snapshot is not hub.bound:
            hub.resync()  # a config swap: this message takes the new routes
        body: bytes | str = data
        if is_text:
            try:
                body = data.decode("utf-8")
            except UnicodeDecodeError:
                hub.bad_frames += 1
                self.close_code = CloseCode.INVALID_DATA
                self.close_reason = "Invalid UTF-8 in text message"
                self.ws.fail(CloseCode.INVALID_DATA, "Invalid UTF-8 in text message")  # type: ignore[union-attr]
                return
        rid = hub.new_id()
        mid = hub.new_id()  # the event's messageId (and the access log's)
        route = self._select(body, is_text)
        if route is None:
            self.send_data(_error("Forbidden", self.conn_id, rid))
            if self.stage.access_log is not None:
                self._event("MESSAGE", None, None, rid, 403, self.loop.time(), False, "", mid)
            return
        svc = self.worker.services
        started = self.loop.time()
        verdict = svc.gate.admit(route.rt, _NO_KEY, started)  # type: ignore[arg-type]
        if verdict is not None:
            if isinstance(verdict, asyncio.Future):
                self._track(self._admit_then_run(verdict, route, body, rid, started, mid))
                return
            hub.throttled += 1
            self.send_data(_error("Too Many Requests", self.conn_id, rid))
            self._event("MESSAGE", route, route.key, rid, 429, started, False, "", mid)
            return
        integ = route.integration
        if integ.kind == "MOCK":
            if route.two_way and integ.body:
                self.send_data(integ.body.decode("utf-8", "replace"))
            self._event("MESSAGE", route, route.key, rid, 200, started, False, "", mid)
            return
        if integ.kind == "AWS_PROXY":
            from fastgw.functions.registry import LocalFunction

            fn = integ.function
            if type(fn) is LocalFunction:
                # PERF: an async handler that finishes without suspending needs no Task.
                event = events.message_event(self, route.key, body, rid, mid, int(time.time() * 1000))
                try:
                    done, got = fn.start(event, svc.executor, integ.timeout)
                except Exception as ex:
                    self._answer(route, rid, None, ex, started, mid)
                    return
                if done:
                    try:
                        answer = function_answer(got)
                    except IntegrationError as ex:
                        self._answer(route, rid, None, ex, started, mid)
                        return
                    self._answer(route, rid, answer, None, started, mid)
                    return
                self._track(self._await_function(got, route, rid, started, mid))
                return
        self._track(self._run_message(route, body, rid, started, mid))

    def _track(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        self.inflight += 1
        if self.inflight >= MAX_INFLIGHT:
            self._reading()

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        self.inflight -= 1
        if self.paused:
            self._reading()
        if not task.cancelled() and task.exception() is not None:
            log.error("websocket message failed", exc_info=task.exception())

    def _spawn(self, coro: Any) -> None:
        self.hub.spawn(coro)

    async def _admit_then_run(
        self, verdict: Any, route: WsRoute, body: bytes | str, rid: str, started: float, mid: str
    ) -> None:
        got = await verdict
        if got is not None:
            self.hub.throttled += 1
            self.send_data(_error("Too Many Requests", self.conn_id, rid))
            self._event("MESSAGE", route, route.key, rid, 429, started, False, "", mid)
            return
        await self._run_message(route, body, rid, started, mid)

    async def _await_function(self, got: Any, route: WsRoute, rid: str, started: float, mid: str) -> None:
        from fastgw.functions.errors import FunctionError, FunctionTimeout

        try:
            answer = function_answer(await got)
        except FunctionTimeout:
            self._answer(route, rid, None, IntegrationTimeout(), started, mid)
            return
        except (FunctionError, IntegrationError) as ex:
            self._answer(route, rid, None, ex, started, mid)
            return
        self._answer(route, rid, answer, None, started, mid)

    async def _run_message(
        self, route: WsRoute, body: bytes | str, rid: str, started: float, mid: str
    ) -> None:
        try:
            answer = await self._invoke(route, body, rid, "MESSAGE", message_id=mid)
        except (IntegrationError, IntegrationTimeout) as ex:
            self._answer(route, rid, None, ex, started, mid)
            return
        self._answer(route, rid, answer, None, started, mid)

    def _answer(
        self,
        route: WsRoute,
        rid: str,
        answer: Answer | None,
        error: Exception | None,
        started: float,
        mid: str | None = None,
    ) -> None:
        if error is not None:
            if isinstance(error, IntegrationTimeout):
                self.send_data(_error("Endpoint request timed out", self.conn_id, rid))
                self._event("MESSAGE", route, route.key, rid, 504, started, True, "", mid)
            else:
                if not isinstance(error, IntegrationError):
                    log.error("websocket handler failed", extra={"route": route.key, "error": repr(error)})
                self.send_data(_error("Internal server error", self.conn_id, rid))
                self._event("MESSAGE", route, route.key, rid, 500, started, True, "", mid)
            return
        self._event("MESSAGE", route, route.key, rid, 200, started, True, "", mid)
        if route.two_way and answer is not None and answer.body is not None and answer.body != b"":
            self.send_data(answer.body)

    async def _invoke(
        self,
        route: WsRoute,
        body: bytes | str | None,
        rid: str,
        kind: str,
        closed: tuple[int, str] | None = None,
        message_id: str | None = None,
    ) -> Answer:
        integ = route.integration
        if integ.kind == "MOCK":
            return Answer(integ.status, integ.headers, integ.body)
        svc = self.worker.services
        if integ.kind == "AWS_PROXY":
            now_ms = int(time.time() * 1000)
            if kind == "CONNECT":
                event = events.connect_event(self, rid, now_ms)
            elif kind == "DISCONNECT":
                assert closed is not None
                event = events.disconnect_event(self, rid, now_ms, closed[0], closed[1])
            else:
                assert body is not None
                event = events.message_event(
                    self, route.key, body, rid, message_id or self.hub.new_id(), now_ms
                )
            return await call_function(integ, event, svc, rid)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        return await call_http(integ, raw, self.conn_id, route.key, svc)


_connect_buckets: dict[int, tuple[float, float]] = {}
_connect_slots: dict[tuple[int, str], int] = {}


def _connect_slot(table: Any, uid: str) -> int:
    """The shared-table slot of a stage's new-connections bucket (-1: the table is full)."""
    key = (id(table), uid)
    slot = _connect_slots.get(key)
    if slot is None:
        h = int.from_bytes(hashlib.blake2b(f"ws-connect:{uid}".encode(), digest_size=8).digest(), "big") or 1
        slot = table.find(h)
        if slot >= 0:
            _connect_slots[key] = slot
    return slot

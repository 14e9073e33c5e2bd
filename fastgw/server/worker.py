"""One worker process: an event loop, a listening socket and the current snapshot.

A worker serves until it is told to drain (SIGTERM, or its supervisor going away). New
configs reach it as validated YAML bytes on a pipe from the supervisor; the worker compiles
them and swaps ``snapshot`` in one assignment, so a request keeps the snapshot it started with.

With ``gateway.tls`` the worker also serves HTTPS (``fastgw.server.tls.TlsListener``) with the
same protocol; a swap rebuilds the TLS contexts, so new connections get the new certificates
and truststores while open ones keep theirs.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import resource
import signal
import socket
import ssl
import struct
import sys
import time
import uuid
from typing import Any

from fastgw.authorizers.runtime import make_decision_cache
from fastgw.config.compile import RuntimeSnapshot, compile_config, set_upstream_ca
from fastgw.config.load import ConfigError, load_config_text
from fastgw.pipeline.runtime import Services
from fastgw.server.protocol import Exchange, HttpProtocol, Pools, WorkerState
from fastgw.server.tls import TlsContexts, TlsListener, build_contexts
from fastgw.state.model import StateData
from fastgw.telemetry import access, tracing
from fastgw.traffic.node import StatePoller, create_table, make_gate, make_limiter, make_store
from fastgw_core.limits import SharedTable

log = logging.getLogger("fastgw.worker")

TICK_SECONDS = 0.1


def make_listen_socket(listen: str, reuse_port: bool = True) -> socket.socket:
    """A listening socket on ``HOST:PORT`` (``[v6]:PORT`` too), non-blocking."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    port = int(port_text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # pragma: no cover
            pass


class Worker:
    """State shared by all connections of one worker process."""

    @property
    def snapshot(self) -> RuntimeSnapshot:
        return self.hot.snapshot  # type: ignore[no-any-return]

    @snapshot.setter
    def snapshot(self, snapshot: RuntimeSnapshot) -> None:
        self.hot.snapshot = snapshot

    @property
    def tracer(self) -> tracing.Tracer | None:
        return self.hot.tracer  # type: ignore[no-any-return]

    @tracer.setter
    def tracer(self, tracer: tracing.Tracer | None) -> None:
        self.hot.tracer = tracer

    @property
    def gate(self) -> Any:
        return self.hot.gate

    @gate.setter
    def gate(self, gate: Any) -> None:
        self.hot.gate = gate
        self.hot.table = None if gate is None else gate.local

    @property
    def date_line(self) -> bytes:
        return self.hot.date_line  # type: ignore[no-any-return]

    @date_line.setter
    def date_line(self, line: bytes) -> None:
        self.hot.date_line = line

    @property
    def draining(self) -> bool:
        return self.hot.draining  # type: ignore[no-any-return]

    @draining.setter
    def draining(self, draining: bool) -> None:
        self.hot.draining = draining

    def __init__(
        self,
        snapshot: RuntimeSnapshot,
        loop: asyncio.AbstractEventLoop,
        index: int = 0,
        table: SharedTable | None = None,
        state: StateData | None = None,
    ) -> None:
        self.loop = loop
        self.index = index
        # What requests read on every request (the snapshot, tracer, gate, draining, Date): kept in
        # the protocol's WorkerState, behind the properties of the same names above.
        self.hot = WorkerState(snapshot)
        # Traffic management: the node's shared table (inherited from the supervisor), the
        # limiter over it (or over Redis) and this worker's gate. Without a supervisor (tests,
        # benchmarks) the table is private to the process.
        settings = snapshot.config.gateway.state
        self.table = table if table is not None else create_table(settings, shared=False)
        self.limiter = make_limiter(settings, self.table, loop)
        self.gate = make_gate(snapshot, self.table, self.limiter, state)
        # Request pipelines (functions, authorizers, plugins): thread pool, HTTP client, caches.
        self.services = Services(loop, self.gate, snapshot.config.gateway.functions.threads)
        self.services.decisions = make_decision_cache(settings, loop)
        self.services.max_body = snapshot.config.gateway.limits.max_body_bytes
        from fastgw.pipeline.caching import caches

        caches().redis_settings = settings.redis
        self.poller: StatePoller | None = None
        self.limits = snapshot.config.gateway.limits
        self.pools = Pools(snapshot.config.gateway.upstream, loop)
        set_upstream_ca(snapshot.config.gateway.upstream.ca_file)
        self.connections: set[HttpProtocol] = set()
        #: Open WebSocket connections (fastgw.websocket): each keeps its own deadline timer, so
        #: the ticker's scan of ``connections`` does not grow with idle WebSocket clients.
        self.ws_connections: set[Any] = set()
        self.waiting: set[Exchange] = set()
        self.draining = False
        self.server: asyncio.base_events.Server | None = None
        #: The HTTPS listener (``gateway.tls``), None without one.
        self.tls: TlsListener | None = None
        self.stopped = loop.create_future()
        # Request ids: a random UUID-shaped prefix per worker and a counter (Exchange builds them).
        self.rid_prefix = str(uuid.uuid4())[:24].encode()
        self.rid = 0
        self.date_line = b""
        self._update_date()
        self._ticker: asyncio.TimerHandle | None = None
        # Metrics (fastgw.telemetry): this worker's counters, bound to the snapshot's routes and
        # published once a second for the node's totals.
        from fastgw.telemetry.metrics import MetricsPublisher, WorkerMetrics
        from fastgw.telemetry.node import node_directory

        self.metrics = WorkerMetrics()
        directory = node_directory()
        self.publisher = MetricsPublisher(directory, index) if directory else None
        self._ticks = 0
        self._counter_base: dict[str, int] | None = None
        bind_metrics(self.metrics, snapshot)
        # Tracing (fastgw.telemetry.tracing): None when off; its export thread starts in serve.
        self.trace_settings = tracing.resolve(snapshot.config.gateway)
        self.tracer = tracing.Tracer(self.trace_settings, loop.time) if self.trace_settings else None
        # Requests answered without a route (unknown stage or route, refused at the head).
        self.unmatched = 0
        # What the stage pointers said when the snapshot was compiled (fastgw.deployments).
        from fastgw import deployments

        self.state = state
        self.served = deployments.served(state)
        if state is not None:
            # The cache purges already in the state this worker starts from are past: a purge
            # recorded after it (even before this worker's first poll of the store) is applied.
            # Without this the first poll took whatever it found as past, and a flush made in
            # the worker's first second was lost.
            caches().apply_purges(state.cache_purges)

    # ------------------------------------------------------------------ lifecycle
    async def serve(self, sock: socket.socket, tls_sock: socket.socket | None = None) -> None:
        from fastgw.websocket.upgrade import bind_worker

        bind_worker(self)  # WebSocket APIs: the hub and the @connections helpers find the worker
        self.server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=4096)
        tls = self.snapshot.config.gateway.tls
        if tls is not None:
            contexts = build_contexts(self.snapshot.config)
            assert contexts is not None
            if tls_sock is None:
                tls_sock = make_listen_socket(tls.listen)
            self.tls = TlsListener(
                self.loop, tls_sock, contexts, self._tls_protocol, self.limits.header_timeout
            )
            self.tls.start()
        self._ticker = self.loop.call_later(TICK_SECONDS, self.tick)
        if self.tracer is not None:
            self.tracer.start()
        self.poller = StatePoller(
            self.gate, make_store(self.snapshot.config.gateway.state), self.loop, self._on_state
        )
        self.poller.start()
        log.info(
            "worker serving",
            extra={"worker": self.index, "pid": os.getpid(), "config": self.snapshot.digest},
        )
        await self.stopped

    def _update_date(self) -> None:
        self.date_line = b"date: %s\r\n" % email.utils.formatdate(usegmt=True).encode()

    def tick(self) -> None:
        """Check deadlines of connections and exchanges, expire idle upstream connections."""
        now = self.loop.time()
        self._update_date()
        for proto in [p for p in self.connections if p.deadline and p.deadline <= now]:
            proto.on_deadline()
        if self.waiting:
            for ex in [e for e in self.waiting if e.deadline <= now]:
                self.waiting.discard(ex)
                ex.on_timeout()
        self.pools.tick(now)
        self._ticks += 1
        access.flush_all()
        if self._ticks % 10 == 0:
            if self.tracer is not None:
                self.tracer.tick()
            if self.publisher is not None:
                self.publish_metrics()
        if self.draining and not self.connections and not self.ws_connections:
            self._finish()
            return
        self._ticker = self.loop.call_later(TICK_SECONDS, self.tick)

    def _tls_protocol(self, server_name: str) -> HttpProtocol:
        proto = HttpProtocol(self)
        proto.tls_name = server_name
        return proto

    def _swap_tls(self, snapshot: RuntimeSnapshot) -> None:
        """New certificates and truststores for new HTTPS connections; open ones keep theirs."""
        if self.tls is None:
            if snapshot.config.gateway.tls is not None:
                log.warning("gateway.tls was added: the HTTPS listener starts only on restart")
            return
        if snapshot.config.gateway.tls is None:
            log.warning("gateway.tls was removed: the HTTPS listener stops only on restart")
            return
        try:
            contexts: TlsContexts | None = build_contexts(snapshot.config)
        except (OSError, ssl.SSLError) as ex:
            log.error("TLS reload failed; the old certificates keep serving", extra={"error": str(ex)})
            return
        if contexts is not None:
            self.tls.contexts = contexts
            self.tls.handshake_timeout = snapshot.config.gateway.limits.header_timeout

    def publish_metrics(self) -> None:
        """The gauges of the moment, then this worker's snapshot for the node's totals."""
        metrics = self.metrics
        gauges = metrics.gauges
        gauges["active_connections"] = float(len(self.connections) + len(self.ws_connections))
        in_use = idle = 0
        for pool in self.pools.pools.values():
            idle += len(pool.idle)
            in_use += len(pool.all) - len(pool.idle)
        gauges["upstream_connections_in_use"] = float(in_use)
        gauges["upstream_connections_idle"] = float(idle)
        # Counters other parts of the worker keep (absolute values: they only grow).
        from fastgw.pipeline.caching import caches

        gate = self.gate
        fallbacks = getattr(self.limiter, "fallbacks", 0)
        cache = caches().stats()
        gauges["cache_entries"] = float(cache["items"])
        gauges["cache_bytes"] = float(cache["size_bytes"])
        live = {
            "throttled": gate.refused,
            "quota_refused": gate.quota_refused,
            "forbidden": gate.forbidden,
            "redis_fallbacks": int(fallbacks) if isinstance(fallbacks, int) else 0,
            "cache_redis_errors": cache["redis_errors"],
            "access_log_dropped": access.dropped_lines(),
            "unmatched_requests": self.unmatched,
        }
        if self.tracer is not None or any(tracing.COUNTERS.values()):
            live.update(tracing.COUNTERS)
        # NOTE: only modules something already imported (importing PyJWT or websockets here
        # would stall the loop for tens of ms on the first publish).
        hub_module = sys.modules.get("fastgw.websocket.hub")
        ws_hub = hub_module.running_hub() if hub_module is not None else None
        if ws_hub is not None:
            live.update(ws_hub.counters())
            gauges["websocket_connections"] = float(len(ws_hub.local))
        jwt_module = sys.modules.get("fastgw.authorizers.jwt_auth")
        if jwt_module is not None:
            live.update(jwt_module.COUNTERS)
        decisions = self.services.decisions
        if decisions is not None:
            live["authorizer_cache_hits"] = decisions.hits
            live["authorizer_cache_misses"] = decisions.misses
        # This process's counts on top of what the slot's previous worker had published (the
        # publisher carries those over on its first publish): node counters never go back.
        counters = metrics.counters
        base = self._counter_base
        for name, value in live.items():
            counters[name] = (base.get(name, 0) if base is not None else 0) + value
        try:
            self.publisher.publish(metrics)  # type: ignore[union-attr]
        except OSError as ex:
            log.warning("metrics not published", extra={"worker": self.index, "error": str(ex)})
        if base is None:
            self._counter_base = {name: counters.get(name, 0) - value for name, value in live.items()}

    def swap(self, snapshot: RuntimeSnapshot) -> None:
        bind_metrics(self.metrics, snapshot)
        self._swap_tracing(snapshot)
        self._swap_tls(snapshot)
        set_upstream_ca(snapshot.config.gateway.upstream.ca_file)
        self.gate.bind(snapshot)
        self.snapshot = snapshot
        self.limits = snapshot.config.gateway.limits
        self.services.max_body = self.limits.max_body_bytes
        from fastgw.pipeline.caching import caches

        caches().redis_settings = snapshot.config.gateway.state.redis
        from fastgw.websocket.hub import running_hub

        ws_hub = running_hub()
        if ws_hub is not None:
            ws_hub.resync()  # open WebSocket connections move to the new config's stages
        log.info("config swapped", extra={"worker": self.index, "config": snapshot.digest})

    def _swap_tracing(self, snapshot: RuntimeSnapshot) -> None:
        """A reload that changed the tracing settings gets a new tracer (the old one flushes)."""
        settings = tracing.resolve(snapshot.config.gateway)
        if settings == self.trace_settings:
            return
        if self.tracer is not None:
            self.tracer.stop(0.0)
        self.trace_settings = settings
        self.tracer = tracing.Tracer(settings, self.loop.time) if settings is not None else None
        if self.tracer is not None and self.server is not None:
            self.tracer.start()

    def _on_state(self, state: StateData) -> None:
        """A new state from the store: recompile when the stage pointers moved."""
        from fastgw import deployments

        self.state = state
        served = deployments.served(state)
        if served == self.served:
            return
        config = self.snapshot.config
        try:
            snapshot = compile_config(config, deployments=deployments.resolve(config, state))
        except ConfigError as ex:
            log.error(
                "deployments rejected; the running stages keep serving",
                extra={"worker": self.index, "errors": [str(i) for i in ex.issues]},
            )
            return
        self.served = served
        self.swap(snapshot)

    def reload_text(self, text: bytes) -> bool:
        from fastgw import deployments

        try:
            config = load_config_text(text)
            snapshot, as_pointed = deployments.compile_served(config, self.state, worker=self.index)
            if as_pointed:
                self.served = deployments.served(self.state)
        except ConfigError as ex:
            log.error("config rejected", extra={"worker": self.index, "errors": [str(i) for i in ex.issues]})
            return False
        self.swap(snapshot)
        return True

    def drain(self) -> None:
        """Stop accepting, let in-flight requests finish, close idle keep-alive connections."""
        if self.draining:
            return
        self.draining = True
        log.info(
            "worker draining",
            extra={"worker": self.index, "connections": len(self.connections) + len(self.ws_connections)},
        )
        if self.server is not None:
            self.server.close()
        if self.tls is not None:
            self.tls.close()
        for proto in [*self.connections, *self.ws_connections]:
            proto.shutdown()
        self.loop.call_later(self.limits.drain_timeout, self._finish)

    def _finish(self) -> None:
        if self.stopped.done():
            return
        for proto in [*self.connections, *self.ws_connections]:
            proto.transport.abort()
        self.pools.close()
        if self._ticker is not None:
            self._ticker.cancel()
        self.stopped.set_result(None)


def _read_config_pipe(worker: Worker, fd: int, buf: bytearray) -> None:
    """Frames on the supervisor pipe: 4-byte big-endian length + config bytes."""
    try:
        chunk = os.read(fd, 1 << 20)
    except BlockingIOError:
        return
    if not chunk:
        # The supervisor is gone: drain and exit rather than serve unsupervised.
        worker.loop.remove_reader(fd)
        worker.drain()
        return
    buf += chunk
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        if len(buf) < 4 + n:
            break
        text = bytes(buf[4 : 4 + n])
        del buf[: 4 + n]
        worker.reload_text(text)


def bind_metrics(metrics: Any, snapshot: RuntimeSnapshot) -> None:
    """Give every route of ``snapshot`` (canaries included) its stats in ``metrics``, with AWS's
    dimensions: REST ApiName / Stage / Resource / Method, HTTP APIs ApiId / Stage / Route."""
    if not snapshot.config.gateway.metrics:
        return
    canaries = [s.canary for s in snapshot.stages if s.canary is not None]
    for stage in [*snapshot.stages, *canaries]:
        name = f"{stage.name}/Canary" if stage.is_canary else stage.name
        for route in stage.routes:
            api = route.api
            resource = route.template or ("$default" if route.method == "$default" else "/")
            route.stats = metrics.route(
                (api.id, name, route.method, resource),
                api.name,
                api.id,
                api.kind,
                name,
                resource,
                route.method,
                route.key,
            )


def run_worker(
    snapshot: RuntimeSnapshot,
    sock: socket.socket | None,
    index: int = 0,
    config_fd: int | None = None,
    table: SharedTable | None = None,
    state: StateData | None = None,
    tls_sock: socket.socket | None = None,
) -> None:
    """Entry point of a worker process (after fork): serve until drained.

    ``tls_sock`` is the HTTPS listening socket (``gateway.tls``) when the supervisor bound one.
    """
    import uvloop

    raise_nofile_limit()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(snapshot, loop, index, table, state)
    if sock is None:
        sock = make_listen_socket(snapshot.config.gateway.listen)
    loop.add_signal_handler(signal.SIGTERM, worker.drain)
    loop.add_signal_handler(signal.SIGINT, worker.drain)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor handles reloads
    loop.add_signal_handler(signal.SIGUSR1, access.reopen_all)  # logrotate
    if config_fd is not None:
        os.set_blocking(config_fd, False)
        loop.add_reader(config_fd, _read_config_pipe, worker, config_fd, bytearray())
    started = time.monotonic()
    try:
        loop.run_until_complete(worker.serve(sock, tls_sock))
        if worker.poller is not None:
            loop.run_until_complete(worker.poller.stop())
        loop.run_until_complete(asyncio.wait_for(worker.limiter.aclose(), 2.0))
        loop.run_until_complete(asyncio.wait_for(worker.services.aclose(), 2.0))
    finally:
        if worker.tracer is not None:
            worker.tracer.stop()
        access.close_all()
        log.info("worker stopped", extra={"worker": index, "uptime_s": round(time.monotonic() - started, 3)})
        loop.close()

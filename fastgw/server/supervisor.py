"""The supervisor: forks workers, restarts crashed ones, reloads and drains them.

It binds one ``SO_REUSEPORT`` socket per worker slot (and one for HTTPS when ``gateway.tls`` is
set) and keeps it, so a restarted worker
inherits the accept queue of the one that died. Reloads (SIGHUP) are validated here, once; only
a valid config is sent to the workers, as msgspec JSON on a pipe each, and every worker swaps
to it atomically. SIGTERM/SIGINT drain the workers and wait for them (bounded).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from fastgw.config.compile import RuntimeSnapshot, compile_config
from fastgw.config.load import ConfigError, ConfigIssue
from fastgw.config.model import GatewayConfig
from fastgw.server.worker import make_listen_socket, raise_nofile_limit, run_worker
from fastgw.state.model import StateData
from fastgw.state.store import StoreError
from fastgw.traffic.node import create_table, make_store, prepare_state, usage_flusher
from fastgw_core.limits import SharedTable

log = logging.getLogger("fastgw.supervisor")


@dataclass
class _Slot:
    index: int
    sock: socket.socket
    tls_sock: socket.socket | None = None
    pid: int = 0
    pipe_w: int = -1
    started: float = 0.0
    crashes: list[float] = field(default_factory=list)


@dataclass
class _Helper:
    """A side process (the demo's echo backend) restarted like a worker."""

    name: str
    target: Callable[[], None]
    pid: int = 0
    crashes: list[float] = field(default_factory=list)
    keep: socket.socket | None = None  # a listening socket this helper serves (the admin API's)


class Supervisor:
    def __init__(
        self,
        load: Callable[[], GatewayConfig],
        workers: int,
        pid_file: str | None = None,
        helpers: list[tuple[str, Callable[[], None]]] | None = None,
    ) -> None:
        self.load = load
        self.workers = workers
        self.pid_file = pid_file
        self.helpers = [_Helper(name, fn) for name, fn in helpers or []]
        self.slots: list[_Slot] = []
        self.config: GatewayConfig | None = None
        self.snapshot: RuntimeSnapshot | None = None
        self.stopping = False
        self.table: SharedTable | None = None
        self.state: StateData | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._signals: list[int] = []
        self.metrics_dir: str | None = None
        self._own_metrics_dir = False
        # Configuration reloads (SIGHUP) applied and rejected since start.
        self.reloads_ok = 0
        self.reloads_failed = 0

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self.config = self.load()
        self.snapshot = compile_config(self.config)
        # Metrics: the directory the workers publish their snapshots to (fastgw.telemetry).
        from fastgw.telemetry.node import create_node_directory

        self.metrics_dir, self._own_metrics_dir = create_node_directory()
        self.publish_reloads()
        # Traffic state: the shared table the workers inherit, the config's keys and plans in
        # the store, quota counters seeded from recorded usage; then the admin API process.
        self.table = create_table(self.config.gateway.state)
        self.state = self._prepare_state(self.config)
        self.snapshot = self._with_deployments(self.config, self.snapshot)
        if self.config.gateway.admin.enabled:
            # Bound here, once: a busy admin address fails the start with a clear error instead
            # of a helper that dies on every restart; the admin process inherits the socket.
            try:
                admin_sock = make_listen_socket(self.config.gateway.admin.listen, reuse_port=False)
            except OSError as ex:
                raise OSError(f"admin API {self.config.gateway.admin.listen}: {ex.strerror}") from None
            self.helpers.append(
                _Helper("admin", self._admin_target(self.config, admin_sock), keep=admin_sock)
            )
        raise_nofile_limit()
        tls = self.config.gateway.tls
        for i in range(self.workers):
            slot = _Slot(i, make_listen_socket(self.config.gateway.listen))
            self.slots.append(slot)
            if tls is not None:
                try:
                    slot.tls_sock = make_listen_socket(tls.listen)
                except OSError as ex:
                    raise OSError(f"HTTPS listener {tls.listen}: {ex.strerror}") from None
        for helper in self.helpers:
            self._spawn_helper(helper)
        for slot in self.slots:
            self._spawn(slot)
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        log.info(
            "fastgw started",
            extra={
                "listen": self.config.gateway.listen,
                "tls_listen": tls.listen if tls is not None else None,
                "workers": self.workers,
                "config": self.snapshot.digest,
                "apis": [f"{a.name} ({a.kind}, id {a.id})" for a in self.snapshot.apis],
            },
        )

    def _prepare_state(self, config: GatewayConfig, seed: bool = True) -> StateData:
        """Upsert the config's keys and plans (and at start seed the quota counters from the
        recorded usage); a store that cannot be reached is not fatal."""
        import asyncio

        store = make_store(config.gateway.state)

        async def run() -> StateData:
            from fastgw import deployments

            try:
                data = await prepare_state(config, store, self.table if seed else None)
                # Stage pointers as the config's stages ask (autoDeploy), then what they serve.
                done = await deployments.sync(config, store)
                if done:
                    log.info("deployed", extra={"deployments": done})
                    data = await store.load()
                return data
            finally:
                await store.close()

        try:
            return asyncio.run(run())
        except StoreError as ex:
            log.error("state store unreachable; workers will retry", extra={"error": str(ex)})
            return self.state or StateData()
        except ValueError as ex:
            raise ConfigError([ConfigIssue(*str(ex).split(": ", 1))]) from None

    def _with_deployments(self, config: GatewayConfig, snapshot: RuntimeSnapshot) -> RuntimeSnapshot:
        """``snapshot`` recompiled with the deployments the stage pointers name, if any."""
        from fastgw import deployments

        return deployments.compile_served(config, self.state, snapshot)[0]

    def _admin_target(self, config: GatewayConfig, sock: socket.socket) -> Callable[[], None]:
        from fastgw.admin.server import run_admin_process
        from fastgw.admin.token import check_listen, resolve_token

        settings = config.gateway.state
        token, path = resolve_token(config.gateway.admin, settings.path)
        check_listen(config.gateway.admin, explicit=path is None)
        if path is not None:
            log.info("admin token generated", extra={"token_file": path})
        table = self.table if settings.backend == "embedded" else None
        flush = usage_flusher(table) if table is not None else None

        def target() -> None:
            run_admin_process(
                config, lambda: make_store(settings), flush, token=token, sock=sock, load=self.load
            )

        return target

    def _spawn(self, slot: _Slot) -> None:
        r, w = os.pipe()
        snapshot = self.snapshot
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                os.close(w)
                os.close(self._wake_r)
                os.close(self._wake_w)
                for other in self.slots:
                    if other is not slot:
                        other.sock.close()
                        if other.tls_sock is not None:
                            other.tls_sock.close()
                        if other.pipe_w >= 0:
                            os.close(other.pipe_w)
                for helper in self.helpers:
                    if helper.keep is not None:
                        helper.keep.close()
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the worker's own handler
                set_process_name(f"fastgw-w{slot.index}")
                run_worker(
                    snapshot,  # type: ignore[arg-type]
                    slot.sock,
                    slot.index,
                    r,
                    self.table,
                    self.state,
                    tls_sock=slot.tls_sock,
                )
            except BaseException:
                log.exception("worker crashed", extra={"worker": slot.index})
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(r)
        if slot.pipe_w >= 0:
            os.close(slot.pipe_w)
        slot.pipe_w = w
        slot.pid = pid
        slot.started = time.monotonic()

    def _spawn_helper(self, helper: _Helper) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                for slot in self.slots:
                    slot.sock.close()
                    if slot.tls_sock is not None:
                        slot.tls_sock.close()
                for other in self.helpers:
                    if other is not helper and other.keep is not None:
                        other.keep.close()
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the admin process installs its own
                set_process_name(f"fastgw-{helper.name}")
                helper.target()
            except BaseException:
                log.exception("helper crashed", extra={"helper": helper.name})
                code = 1
            finally:
                os._exit(code)
        helper.pid = pid

    # ------------------------------------------------------------------ main loop
    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        try:
            self.start()
        except ConfigError as ex:
            log.error("config rejected", extra={"errors": [str(i) for i in ex.issues]})
            return 2
        except OSError as ex:
            log.error("cannot listen", extra={"error": str(ex)})
            return 1
        try:
            while True:
                select.select([self._wake_r], [], [], 1.0)
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
                pending, self._signals = self._signals, []
                for sig in pending:
                    if sig == signal.SIGHUP:
                        self.reload()
                    elif sig == signal.SIGUSR1:
                        # logrotate: the workers reopen their access log files.
                        for slot in self.slots:
                            if slot.pid:
                                _kill(slot.pid, signal.SIGUSR1)
                    elif sig in (signal.SIGTERM, signal.SIGINT):
                        return self.shutdown()
                self._reap()
        finally:
            if self.pid_file:
                try:
                    os.unlink(self.pid_file)
                except OSError:
                    pass
            if self.metrics_dir is not None and self._own_metrics_dir:
                from fastgw.telemetry.node import remove_node_directory

                remove_node_directory(self.metrics_dir)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for slot in self.slots:
                if slot.pid == pid:
                    slot.pid = 0
                    if self.stopping:
                        break
                    now = time.monotonic()
                    slot.crashes = [t for t in slot.crashes if now - t < 60] + [now]
                    log.error(
                        "worker exited; restarting",
                        extra={
                            "worker": slot.index,
                            "status": status,
                            "crashes_last_minute": len(slot.crashes),
                        },
                    )
                    if len(slot.crashes) > 5:
                        time.sleep(1.0)  # a crash loop: slow it down
                    self._spawn(slot)
                    break
            for helper in self.helpers:
                if helper.pid == pid and not self.stopping:
                    now = time.monotonic()
                    helper.crashes = [t for t in helper.crashes if now - t < 60] + [now]
                    log.warning(
                        "helper exited; restarting",
                        extra={"helper": helper.name, "crashes_last_minute": len(helper.crashes)},
                    )
                    if len(helper.crashes) > 5:
                        time.sleep(1.0)  # a crash loop: slow it down
                    self._spawn_helper(helper)

    # ------------------------------------------------------------------ reload / stop
    def publish_reloads(self) -> None:
        """The reload outcomes and the config generation, for the node's metrics
        (``fastgw.telemetry.metrics.SUPERVISOR_FILE``)."""
        if self.metrics_dir is None:
            return
        from fastgw.telemetry.metrics import publish_supervisor

        try:
            publish_supervisor(self.metrics_dir, self.reloads_ok, self.reloads_failed, 1 + self.reloads_ok)
        except OSError as ex:
            log.warning("reload counts not published", extra={"error": str(ex)})

    def reload(self) -> bool:
        ok = self._reload()
        if ok:
            self.reloads_ok += 1
        else:
            self.reloads_failed += 1
        self.publish_reloads()
        return ok

    def _reload(self) -> bool:
        try:
            config = self.load()
            snapshot = compile_config(config)
        except ConfigError as ex:
            log.error(
                "reload rejected; the running config keeps serving",
                extra={"errors": [str(i) for i in ex.issues]},
            )
            return False
        old = self.config
        if old is not None and (
            config.gateway.listen != old.gateway.listen or config.gateway.workers != old.gateway.workers
        ):
            log.warning("gateway.listen and gateway.workers change only on restart")
        old_tls = old.gateway.tls.listen if old is not None and old.gateway.tls is not None else None
        new_tls = config.gateway.tls.listen if config.gateway.tls is not None else None
        if old is not None and old_tls != new_tls:
            log.warning("the HTTPS listener (gateway.tls.listen) changes only on restart")
        try:
            self.state = self._prepare_state(config, seed=False)
        except ConfigError as ex:
            log.error(
                "reload rejected; the running config keeps serving",
                extra={"errors": [str(i) for i in ex.issues]},
            )
            return False
        self.config = config
        self.snapshot = self._with_deployments(config, snapshot)
        for helper in self.helpers:
            if helper.name == "admin" and helper.pid:
                _kill(helper.pid, signal.SIGHUP)  # it checks deployments against the running config
        data = msgspec.json.encode(config)
        frame = struct.pack(">I", len(data)) + data
        for slot in self.slots:
            if slot.pid and slot.pipe_w >= 0:
                try:
                    _write_all(slot.pipe_w, frame)
                except OSError as ex:
                    log.error("cannot send config to worker", extra={"worker": slot.index, "error": str(ex)})
        log.info("config reloaded", extra={"config": snapshot.digest})
        return True

    def shutdown(self) -> int:
        self.stopping = True
        log.info("draining workers")
        # Our copies of the listening sockets would keep the kernel accepting connections
        # that no worker will ever serve: close them before the workers close theirs.
        for slot in self.slots:
            slot.sock.close()
            if slot.tls_sock is not None:
                slot.tls_sock.close()
        for helper in self.helpers:
            if helper.keep is not None:
                helper.keep.close()
        for slot in self.slots:
            if slot.pid:
                _kill(slot.pid, signal.SIGTERM)
        for helper in self.helpers:
            if helper.pid:
                _kill(helper.pid, signal.SIGTERM)
        drain = self.config.gateway.limits.drain_timeout if self.config else 30.0
        deadline = time.monotonic() + drain + 5.0
        live = {s.pid for s in self.slots if s.pid} | {h.pid for h in self.helpers if h.pid}
        while live and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            live.discard(pid)
        for pid in live:
            _kill(pid, signal.SIGKILL)
        log.info("fastgw stopped")
        return 0


def set_process_name(name: str) -> None:
    """Name this process in ps/top (Linux ``comm``, 15 bytes): fastgw-w0, fastgw-admin, ..."""
    try:
        with open(f"/proc/{os.getpid()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:  # pragma: no cover - not Linux
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

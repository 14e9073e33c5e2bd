# cython: annotation_typing=False
"""The data plane's hot path: client protocol, exchanges, upstream connections and pools.

This file is the pure-Python build and the specification. The same file is compiled by Cython
in pure-Python mode as ``_protocol_c`` with the types of ``_protocol_c.pxd`` (the aiohttp
``reader_c`` pattern): one algorithm, two builds. ``fastgw.server.protocol`` picks the build
(``FASTGW_NO_EXTENSIONS=1`` selects this one).

PERF: profiling a small proxied GET showed about 110 Python-level calls and ~100k
instructions per request spread over these classes, not one hot function; compiling them as
extension types with typed attributes and C-level method calls is what moves that cost.

Shape after uvicorn's ``httptools_impl``: the parser callbacks fill per-request state, a
request becomes an ``Exchange`` at ``on_headers_complete``, pipelined exchanges wait in a
deque and are answered strictly in order. An ``Exchange`` runs the route's integration: a
MOCK reply written at once, or an HTTP_PROXY relay that streams both bodies with
backpressure (client reading pauses while the upstream's write buffer is over its high-water
mark, upstream reading pauses while the client's is).

Deadlines (header read, body idle, keep-alive idle, integration timeout) are not timers: each
connection and exchange stores a ``deadline`` and the worker's ticker checks them a few times a
second (``Worker.tick``), so a request arms and disarms nothing.

Upstream pools belong to one worker and one ``Target`` (scheme, host, port); they outlive
config snapshots, so a reload keeps warm connections. A connection goes back to the pool only
after a clean, complete exchange: any anomaly (timeout, reset, framing error, extra bytes, an
early response, an unexpected 1xx) closes it (DESIGN-RULES 4).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import re
import socket
import time
from random import random as _random
from typing import TYPE_CHECKING, Any

import httptools

from fastgw.config.runtime import MockRuntime as _MockRuntime
from fastgw.pipeline.cors import preflight_headers as _preflight_headers
from fastgw.pipeline.request import Request
from fastgw.pipeline.runtime import launch as _launch_pipeline
from fastgw.server import replies
from fastgw.server.replies import CONN_CLOSE, CONN_KEEP_ALIVE, CONTINUE_100, LocalReply
from fastgw.server.tls import FORBIDDEN as TLS_FORBIDDEN
from fastgw.server.tls import client_cert_of
from fastgw.websocket.upgrade import match as _ws_match
from fastgw.websocket.upgrade import take_over as _ws_take_over
from fastgw_core.errors import HeadError, InvalidPathError
from fastgw_core.headers import (
    IN_CLOSE,
    IN_HEAD,
    IN_HTTP10,
    IN_RAW,
    OUT_CHUNKED,
    OUT_CLOSE,
    local_response,
    relay_response,
    request_id,
    rewrite_response_head,
)
from fastgw_core.reqhead import parse_request_head
from fastgw_core.urlnorm import normalize_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastgw.config.compile import (
        ProxyIntegration,
        RouteRuntime,
        RuntimeSnapshot,
        Site,
        StageRuntime,
        Target,
    )
    from fastgw.config.model import UpstreamSettings
    from fastgw.server.worker import Worker

log = logging.getLogger("fastgw.protocol")

# The largest upstream response a pipeline buffers (AWS's integration payload limit).
COLLECT_MAX_BYTES = 10 * 1024 * 1024

# Bytes that cannot appear in a request target as sent upstream.
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")

# Request headers the gateway reads or never forwards, by lower-case name.
_H_HOST, _H_CL, _H_TE, _H_CONN, _H_EXPECT, _H_XFF, _H_HOP, _H_XFWD, _H_APIKEY, _H_UPGRADE = range(1, 11)
_REQ_SPECIAL: dict[bytes, int] = {
    b"host": _H_HOST,
    b"content-length": _H_CL,
    b"transfer-encoding": _H_TE,
    b"connection": _H_CONN,
    b"expect": _H_EXPECT,
    b"x-forwarded-for": _H_XFF,
    b"keep-alive": _H_HOP,
    b"proxy-connection": _H_HOP,
    b"te": _H_HOP,
    b"trailer": _H_HOP,
    b"upgrade": _H_UPGRADE,  # hop-by-hop; kept for a WebSocket handshake (fastgw.websocket)
    b"proxy-authorization": _H_HOP,
    b"x-forwarded-proto": _H_XFWD,
    b"x-forwarded-host": _H_XFWD,
    b"x-forwarded-port": _H_XFWD,
    b"x-api-key": _H_APIKEY,  # read by the traffic gate, and forwarded
}
_METHODS: dict[bytes, str] = {}
# Requests this process has numbered: a request id is its worker's random prefix and this count.
_rid = 0


# Method name -> its bytes, filled on first use (a plain dict: a subclass with ``__missing__``
# makes every lookup go through a slot wrapper).
_METHOD_BYTES: dict[str, bytes] = {}

# Reasons for which reading from a client is paused (a bit each).
_PAUSE_UPSTREAM = 1  # the upstream's write buffer is full
_PAUSE_PIPELINE = 2  # too many pipelined requests / bytes queued
_PAUSE_HALT = 4  # the connection is ending; never resumed


def _no_write(data: bytes) -> None:
    """``HttpProtocol.twrite`` before ``connection_made``."""
    raise RuntimeError("no transport yet")


def _closed() -> bool:
    """``UpstreamConnection.closing`` before ``connection_made``."""
    return True


class _Stop(Exception):
    """Raised from a parser callback: stop parsing; the connection is ending."""


class _Reject(Exception):
    """Raised from a parser callback: answer ``reply`` and close the connection."""

    def __init__(self, reply: LocalReply) -> None:
        self.reply = reply


def _absolute_form(url: bytes) -> tuple[bytes, bytes]:
    """Split an absolute-form target into (origin-form target, authority), or reject it."""
    scheme, sep, rest = url.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise _Reject(replies.BAD_REQUEST)  # asterisk-form, authority-form, other schemes
    end = len(rest)
    for stop in (b"/", b"?"):
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    if not authority or b"@" in authority:
        raise _Reject(replies.BAD_REQUEST)  # no host, or userinfo (never sent to origin servers)
    target = rest[end:]
    if not target.startswith(b"/"):
        target = b"/" + target
    return target, authority


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle on a TCP transport (heads and small bodies go out at once)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover
            pass


#: Paths whose stage and route a site remembers (``Site.resolved``); past this the cache is
#: emptied and refilled. Longer paths than _RESOLVED_PATH_MAX are never remembered.
_RESOLVED_MAX = 1024
_RESOLVED_PATH_MAX = 256


class _Resolved:
    """What one request path (the raw bytes of the target's path) of a site resolved to: its
    normalised path, its stage and the path inside it, and the route match of the last method
    it was requested with (the routers of Kong and APISIX keep such a cache too). A keep-alive
    client asks for the same few paths again and again; the normalisation, the stage lookup and
    the trie walk (with their slices, the match and its parameter dict) then run once per path
    and method, not once per request.

    The match is shared by the requests that use it: its parameters are read, never changed,
    and a pipeline (whose plugins and handlers may change them) gets a copy."""

    __slots__ = ("inner", "match", "method", "path", "stage", "target")

    def __init__(self, stage: StageRuntime | None, path: str, inner: str) -> None:
        self.stage = stage
        self.path = path
        self.inner = inner
        self.method: str | None = None  # no match made yet
        self.match: Any = None  # fastgw_core.router.RouteMatch, or None: no route
        # The upstream path an HTTP_PROXY route renders from the match (None: not yet).
        self.target: bytes | None = None


def resolve_stage(site: Site, path: str) -> tuple[StageRuntime | None, str]:
    """Map a normalised path to (stage, path inside the stage) on one site."""
    long_prefixes = site.long_prefixes
    if long_prefixes:
        for prefix, stage in long_prefixes:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return stage, path[len(prefix) :] or "/"
    end = path.find("/", 1)
    first = path[1:] if end < 0 else path[1:end]
    prefixes: dict[str, StageRuntime] = site.prefixes
    found = prefixes.get(first)
    if found is not None:
        return found, "/" if end < 0 else path[end:]
    return site.root, path


def render_path(integ: ProxyIntegration, params: dict[str, str] | None) -> bytes:
    """The upstream path of an HTTP_PROXY integration for one request's path parameters."""
    if integ.static_path is not None:
        return integ.static_path  # type: ignore[no-any-return]
    name = integ.single_param
    if name is not None and params:
        parts: tuple[bytes | str, ...] = integ.path_parts
        text: str = params[name]
        value = text.encode("latin-1")
        if len(parts) == 2:
            return parts[0] + value if parts[1] == name else value + parts[1]  # type: ignore[operator,no-any-return]
    out = []
    for part in integ.path_parts:
        if type(part) is bytes:
            out.append(part)
        else:
            out.append(params[part].encode("latin-1") if params else b"")
    return b"".join(out)


class WorkerState:
    """What every request reads off its worker: the snapshot it starts on, the tracer, the
    traffic gate, whether the worker drains, the Date line of local replies. ``Worker`` keeps
    them here (its attributes of the same names read and write this object, ``Worker.hot``).

    PERF: an extension type in the compiled build, so that the protocol's reads are C struct
    reads instead of lookups in the Worker's ``__dict__`` (six per request).
    """

    __slots__ = ("date_line", "draining", "gate", "snapshot", "table", "tracer")

    def __init__(self, snapshot: RuntimeSnapshot) -> None:
        self.snapshot = snapshot
        self.tracer: Any = None
        self.gate: Any = None
        self.table: Any = None  # the gate's embedded table (``Gate.local``), set with the gate
        self.draining = False
        self.date_line = b""  # b"date: <IMF-fixdate>\r\n", refreshed by the worker's tick


class HttpProtocol:
    """One client connection."""

    __slots__ = (
        "active",
        "api_key",
        "body_bytes",
        "body_start",
        "cl",
        "clock",
        "completed",
        "conn_tokens",
        "cur",
        "deadline",
        "deadline_reply",
        "expect",
        "fwd",
        "head_bytes",
        "headers_n",
        "host",
        "host_n",
        "hot",
        "in_head",
        "key_gen",
        "key_rt",
        "key_value",
        "lim_body",
        "lim_head",
        "lim_headers",
        "lim_url",
        "limits",
        "local_port",
        "loop",
        "min_body_rate",
        "parser",
        "parser_idle",
        "paused",
        "peer",
        "peer_trusted",
        "pools",
        "queue",
        "raw_left",
        "rid_prefix",
        "site",
        "site_host",
        "site_snapshot",
        "t_body",
        "t_header",
        "t_keepalive",
        "te",
        "tls_cert",
        "tls_name",
        "transport",
        "twrite",
        "upgrade",
        "url",
        "waiting",
        "worker",
        "write_paused",
        "ws",
        "xff",
        "xfwd",
        "xfwd_host_key",
        "xfwd_host_line",
        "xfwd_lines",
    )

    def __init__(self, worker: Worker) -> None:
        # Global
        self.worker = worker
        self.hot = worker.hot
        self.loop = worker.loop
        # PERF: bound once, not looked up on every call (``loop.time`` several times a request).
        self.clock = worker.loop.time
        self.waiting = worker.waiting
        self.rid_prefix = worker.rid_prefix
        self.pools = worker.pools
        limits = self.limits = worker.limits
        # PERF: the limits read on every request, copied out of the config Struct once.
        self.lim_head = limits.max_header_bytes
        self.lim_headers = limits.max_headers
        self.lim_url = limits.max_url_bytes
        self.lim_body = limits.max_body_bytes
        self.t_header = limits.header_timeout
        self.t_body = limits.body_timeout
        self.min_body_rate = limits.min_body_rate
        self.body_start = 0.0
        self.t_keepalive = limits.keepalive_timeout
        # Per connection
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.twrite: Callable[[bytes], None] = _no_write
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.local_port = ""
        self.peer_trusted = False
        self.paused = 0
        self.write_paused = False
        self.queue: collections.deque[Exchange] = collections.deque()
        self.active: Exchange | None = None
        self.deadline = 0.0
        self.deadline_reply: LocalReply | None = None
        self.upgrade = False
        # An Upgrade header's value, then the WebSocket handshake of a WebSocket stage (or None).
        self.ws: object = None
        self.completed = 0
        self.parser_idle = True
        self.xfwd_lines = b""
        self.xfwd_host_key: bytes | None = None
        self.xfwd_host_line = b""
        # HTTPS (fastgw.server.tls): the SNI name the connection's context was chosen by (""
        # without SNI; None on plain HTTP), set by the listener before connection_made, and the
        # verified client certificate as AWS's clientCert dict (mutual TLS), read once here.
        self.tls_name: str | None = None
        self.tls_cert: dict[str, Any] | None = None
        # The site (fastgw.config.compile.Site) of the last request's Host, and the snapshot and
        # Host it was found for (Exchange.prepare).
        self.site: Site | None = None
        self.site_host: bytes | None = None
        self.site_snapshot: RuntimeSnapshot | None = None
        # The traffic gate's cached API key lookup for this client (see Gate.admit).
        self.key_value: bytes | None = None
        self.key_rt: object = None
        self.key_gen = -1
        # Per request (the one being parsed)
        self.cur: Exchange | None = None
        self.in_head = True
        self.head_bytes = 0
        self.body_bytes = 0
        self.raw_left = 0
        self._reset_request()

    def _reset_request(self) -> None:
        self.url = b""
        self.fwd: list[bytes] = []
        self.headers_n = 0
        self.host: bytes | None = None
        self.host_n = 0
        self.cl: bytes | None = None
        self.te: bytes | None = None
        self.conn_tokens: bytes | None = None
        self.expect = False
        self.xff: bytes | None = None
        self.xfwd: list[tuple[bytes, bytes]] | None = None
        self.api_key: bytes | None = None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.twrite = transport.write  # type: ignore[attr-defined]
        worker = self.worker
        worker.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        sockname = transport.get_extra_info("sockname")
        if sockname and len(sockname) >= 2:
            self.local_port = str(sockname[1])
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            if self.tls_name is None:
                self.tls_name = ""
            self.tls_cert = client_cert_of(ssl_object)
            self.xfwd_lines = b"x-forwarded-for: %s\r\nx-forwarded-proto: https\r\n" % self.peer.encode()
        else:
            self.xfwd_lines = b"x-forwarded-for: %s\r\nx-forwarded-proto: http\r\n" % self.peer.encode()
        if worker.snapshot.trusted_proxies and self.peer:
            try:
                ip = ipaddress.ip_address(self.peer)
                self.peer_trusted = any(ip in net for net in worker.snapshot.trusted_proxies)
            except ValueError:
                pass
        set_nodelay(transport)
        transport.set_write_buffer_limits(high=self.limits.write_high_water)  # type: ignore[attr-defined]
        self.deadline = self.clock() + self.t_header
        self.deadline_reply = replies.REQUEST_TIMEOUT
        if worker.draining:
            self.deadline = self.clock() + 0.5

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.connections.discard(self)
        self.paused |= _PAUSE_HALT
        active = self.active
        self.active = None
        if active is not None:
            active.cancel()
        for ex in self.queue:
            ex.cancel()
        self.queue.clear()
        cur = self.cur
        if cur is not None and cur is not active:
            cur.cancel()
        self.cur = None

    def data_received(self, data: bytes) -> None:
        # One pass per chunk; another only when an ignored upgrade leaves bytes to read as HTTP
        # (a loop, not recursion: a chunk may hold many such requests).
        while True:
            if self.paused & _PAUSE_HALT:
                return
            if self.raw_left:
                # PERF: the rest of a Content-Length body is relayed as it arrives, without the
                # parser (which would copy every chunk into a new bytes for on_body); the parser is
                # replaced by a fresh one when the body ends.
                left = self.raw_left
                if len(data) <= left:
                    chunk = data
                    data = b""
                else:
                    chunk = data[:left]
                    data = data[left:]
                self.raw_left = left - len(chunk)
                try:
                    self.on_body(chunk)
                except _Reject as ex:
                    self.fail(ex.reply)
                    return
                if self.raw_left:
                    return
                self.parser = httptools.HttpRequestParser(self)
                self.on_message_complete()
                if not data or self.paused & _PAUSE_HALT:
                    return
            if self.parser_idle and self.cur is None:
                # PERF: whole body-less heads that the strict fast path accepts skip httptools and
                # its callbacks; anything else (and the rest of this chunk) goes to httptools.
                pos = 0
                n = len(data)
                while True:
                    got = parse_request_head(data, pos, self.lim_head, self.lim_headers, self.lim_url)
                    if got is None:
                        break
                    end, method, url, http10, keep_alive, host, fwd, api_key = got
                    self.url = url
                    self.api_key = api_key
                    if fwd:
                        self.fwd.append(fwd)
                    if host is not None:
                        self.host = host
                        self.host_n = 1
                    try:
                        self.head_done(method, http10, keep_alive)
                    except _Reject as ex:
                        self.fail(ex.reply)
                        return
                    except Exception:
                        log.exception("request handling failed")
                        self.fail(replies.INTERNAL_ERROR)
                        return
                    # (the head's time: this callback made the exchange)
                    self.on_message_complete(self.cur.t0 if self.cur is not None else 0.0)
                    if self.paused & _PAUSE_HALT:
                        return
                    pos = end
                    if pos == n:
                        return
                if pos:
                    data = data[pos:]
            in_head = self.in_head
            completed = self.completed
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as ex:
                ws = self.ws
                self.ws = None
                if ws is _UPGRADE_IGNORED:
                    data = self._upgrade_ignored(data[ex.args[0] :])
                    if data:
                        continue
                    return
                if ws is not None:
                    _ws_take_over(self, ws, data[ex.args[0] :])
                    return
                # CONNECT (httptools reports it as an upgrade) was handled as a plain request; the
                # bytes that follow belong to a tunnel we do not open, so the connection ends.
                self.upgrade = True
                self._halt_reading()
                return
            except httptools.HttpParserCallbackError as ex:
                ctx = ex.__context__
                if isinstance(ctx, _Reject):
                    self.fail(ctx.reply)
                    return
                if isinstance(ctx, _Stop):
                    return
                # A bug of ours: the client gets a 500, never a traceback; the log gets the trace.
                log.error("request handling failed", exc_info=ctx or ex)
                self.fail(replies.INTERNAL_ERROR)
                return
            except httptools.HttpParserError:
                self.fail(replies.BAD_REQUEST)
                return
            if in_head and self.in_head and self.completed == completed:
                # A head that is still incomplete: count raw bytes so that one endless header
                # line (which httptools buffers before any callback) cannot grow without bound.
                self.head_bytes += len(data)
                if self.head_bytes > self.lim_head:
                    self.fail(replies.HEADERS_TOO_LARGE)
                return
            cur = self.cur
            if cur is not None and not self.in_head and cur.body_mode == 1 and not self.paused & _PAUSE_HALT:
                # Inside a Content-Length body whose head and first bytes the parser has seen: the
                # rest bypasses it (see the top of this method).
                self.raw_left = cur.body_len - self.body_bytes
            return

    def eof_received(self) -> bool | None:
        # The client closed its sending side. Finish what is in flight, then close.
        if self.active is None and self.cur is None and not self.queue:
            return None
        self.paused |= _PAUSE_HALT
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        active = self.active
        if active is not None and active.conn is not None:
            active.conn.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.write_paused = False
        active = self.active
        if active is not None and active.conn is not None and active.conn.transport is not None:
            active.conn.transport.resume_reading()

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        if self.paused & _PAUSE_HALT:
            raise _Stop()
        self.parser_idle = False
        if not self.in_head:
            self.in_head = True
        self.head_bytes = 0
        if self.active is None and not self.queue:
            self.deadline = self.clock() + self.t_header
            self.deadline_reply = replies.REQUEST_TIMEOUT

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.lim_url:
            raise _Reject(replies.URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_n += 1
        self.head_bytes += len(name) + len(value) + 4
        if self.headers_n > self.lim_headers or self.head_bytes > self.lim_head:
            raise _Reject(replies.HEADERS_TOO_LARGE)
        kind = _REQ_SPECIAL.get(name.lower())
        if kind is None:
            self.fwd.append(b"%s: %s\r\n" % (name, value))
        elif kind == _H_HOST:
            self.host = value
            self.host_n += 1
        elif kind == _H_CL:
            if self.cl is not None and self.cl != value:
                raise _Reject(replies.BAD_REQUEST)
            self.cl = value
        elif kind == _H_TE:
            self.te = value if self.te is None else self.te + b"," + value
        elif kind == _H_CONN:
            self.conn_tokens = value if self.conn_tokens is None else self.conn_tokens + b"," + value
        elif kind == _H_EXPECT:
            if value.lower() != b"100-continue":
                raise _Reject(replies.aws_error(417, "Expectation Failed"))
            self.expect = True
        elif kind == _H_XFF:
            self.xff = value if self.xff is None else self.xff + b", " + value
        elif kind == _H_XFWD:
            if self.xfwd is None:
                self.xfwd = []
            self.xfwd.append((name.lower(), value))
        elif kind == _H_APIKEY:
            self.fwd.append(b"%s: %s\r\n" % (name, value))
            # A repeated key is no key (the gate refuses an empty one).
            self.api_key = value if self.api_key is None else b""
        elif kind == _H_UPGRADE:
            self.ws = value

    def on_headers_complete(self) -> None:
        parser = self.parser
        method_b = parser.get_method()
        method = _METHODS.get(method_b)
        if method is None:
            method = method_b.decode("latin-1")
            if len(_METHODS) < 64:
                _METHODS[method_b] = method
        http10 = parser.get_http_version() == "1.0"
        if self.ws is not None:
            if parser.should_upgrade() and method != "CONNECT":
                hs = _ws_match(self, method, http10)
                if hs is not None:
                    if self.active is not None or self.queue:
                        # Pipelined behind requests still in flight: never taken over (their
                        # answers would follow the 101); refused after them, then closed.
                        self.ws = None
                        raise _Reject(replies.BAD_REQUEST)
                    # An upgrade request for a WebSocket API's stage: that API takes the
                    # connection over when the parser stops at the end of the head
                    # (HttpParserUpgrade, in data_received).
                    self.ws = hs
                    return
                # Not a WebSocket stage: the Upgrade is ignored (RFC 9110 7.8). The parser
                # stops at the end of this head all the same, and skips its body: see
                # _upgrade_ignored.
                self.ws = _UPGRADE_IGNORED
            else:
                self.ws = None
        self.head_done(method, http10, parser.should_keep_alive())

    def head_done(self, method: str, http10: bool, keep_alive: bool) -> None:
        """A whole request head is in (from httptools or the fast path): check it, route it."""
        self.in_head = False
        if self.hot.draining:
            keep_alive = False
        ex = Exchange(self, method, http10, keep_alive)
        ex.expect = self.expect
        self.cur = ex
        # Framing and head checks (DESIGN-RULES 2): anything ambiguous is refused, never forwarded.
        if self.host_n != 1 and (self.host_n > 1 or not http10):
            raise _Reject(replies.BAD_REQUEST)
        if self.te is not None:
            if self.cl is not None or http10:
                raise _Reject(replies.BAD_REQUEST)
            if self.te.replace(b" ", b"").lower() != b"chunked":
                raise _Reject(replies.NOT_IMPLEMENTED)
            ex.body_mode = 2
        elif self.cl is not None:
            if not self.cl.isdigit():
                raise _Reject(replies.BAD_REQUEST)
            n = int(self.cl)
            if n > self.lim_body:
                raise _Reject(replies.PAYLOAD_TOO_LARGE)
            if n:
                ex.body_mode = 1
                ex.body_len = n
        if ex.body_mode:
            self.body_bytes = 0
            self.body_start = self.clock()
            if self.active is None and not self.queue:
                self.deadline = self.body_start + self.t_body
                self.deadline_reply = replies.REQUEST_TIMEOUT
        elif self.active is None and not self.queue:
            self.deadline = 0.0
        if self.conn_tokens is not None:
            self._drop_connection_tokens()
        ex.prepare(self.url)
        self.url = b""
        if self.active is None:
            self.active = ex
            ex.start(ex.t0)
        else:
            self.queue.append(ex)
            if len(self.queue) >= self.limits.max_pipelined:
                self._pause_reading(_PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        n = len(body)
        self.body_bytes += n
        if self.body_bytes > self.lim_body:
            raise _Reject(replies.PAYLOAD_TOO_LARGE)
        if self.deadline:
            now = self.clock()
            self.deadline = now + self.t_body
            elapsed = now - self.body_start
            if elapsed > self.t_body and self.body_bytes < elapsed * self.min_body_rate:
                raise _Reject(replies.REQUEST_TIMEOUT)  # a trickle: bytes keep coming, too few
        ex = self.cur
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self, now: float = 0.0) -> None:
        """The request is in (httptools' callback; ``now``: the loop's time if the caller has
        it, as the head fast path has)."""
        if self.ws is not None:
            # The parser ends an upgrade request at its head (its body, if any, is not read):
            # the request ends in _upgrade_ignored, or the connection is taken over.
            return
        self.parser_idle = True
        self.completed += 1
        ex = self.cur
        self.cur = None
        self.in_head = True
        self.head_bytes = 0
        self._reset_request()
        if self.deadline and self.active is not None and self.deadline_reply is replies.REQUEST_TIMEOUT:
            # The body is in: its read deadline is over. The exchange's own deadlines (integration,
            # pipeline) take it from here; when it ends, exchange_done sets the next one.
            self.deadline = 0.0
        if ex is not None:
            if not ex.keep_alive:
                # The client (or a drain) ends the connection with this request: nothing it
                # pipelined after it is read, let alone forwarded.
                self._halt_reading()
            ex.request_complete(now)

    # ------------------------------------------------------------------ helpers
    def _upgrade_ignored(self, rest: bytes) -> bytes:
        """The parser stopped at the head of an upgrade request for a stage that is not a
        WebSocket API's (httptools skips such a request's body): the Upgrade is ignored (RFC
        9110 7.8), the body is read as any request's, and the connection stays keep-alive.
        Returns what data_received reads next (``rest``: the body and what follows)."""
        self.parser = httptools.HttpRequestParser(self)
        cur = self.cur
        if cur is None or self.paused & _PAUSE_HALT:
            return b""
        if cur.body_mode == 1:
            self.raw_left = cur.body_len  # data_received relays it, then ends the request
        elif cur.body_mode == 2:
            # A chunked body: a parser fed a stand-in head decodes it, then serves as the
            # connection's parser (_ChunkedAfterUpgrade forwards everything after that head).
            self.parser = httptools.HttpRequestParser(_ChunkedAfterUpgrade(self))
            self.parser.feed_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            self.on_message_complete()
        return rest

    def _drop_connection_tokens(self) -> None:
        tokens = {t.strip().lower() for t in self.conn_tokens.split(b",")}  # type: ignore[union-attr]
        tokens.discard(b"close")
        tokens.discard(b"keep-alive")
        if tokens:
            self.fwd = [line for line in self.fwd if line.split(b":", 1)[0].lower() not in tokens]

    def _pause_reading(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume_reading(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.transport.is_closing():
                self.transport.resume_reading()

    def _halt_reading(self) -> None:
        if not self.paused and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= _PAUSE_HALT

    def fail(self, reply: LocalReply) -> None:
        """Answer a protocol-level error and close the connection once earlier replies are out."""
        self._halt_reading()
        active = self.active
        cur = self.cur
        self.cur = None
        if active is None:
            ex = cur if cur is not None else Exchange(self, "GET", False, False)
            ex.keep_alive = False
            self.active = ex
            ex.respond_local(reply)
        elif cur is active:
            # The error belongs to the request being served (its body, or its deadline).
            active.abort_upstream()
            active.keep_alive = False
            if active.response_started:
                self.transport.close()
            else:
                active.respond_local(reply)
        else:
            # A later, pipelined request: answer it in its turn, then close.
            if cur is not None and cur in self.queue:
                self.queue.remove(cur)
            ex = Exchange(self, "GET", False, False)
            ex.local_error = reply
            self.queue.append(ex)

    def exchange_done(self, ex: Exchange, now: float = 0.0) -> None:
        """Both the request and the response of the active exchange are complete (``now``: the
        loop's time if the caller has it)."""
        if ex is not self.active:
            return
        self.active = None
        if not ex.keep_alive or (self.paused & _PAUSE_HALT and not self.queue):
            self.transport.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            self._resume_reading(_PAUSE_PIPELINE)
            self.active = nxt
            if nxt.local_error is not None:
                nxt.respond_local(nxt.local_error)
            else:
                nxt.start()
            return
        if self.hot.draining:
            self.transport.close()
            return
        if not now:
            now = self.clock()
        if self.cur is None:
            self.deadline = now + self.t_keepalive
            self.deadline_reply = None
        else:
            self.deadline = now + self.t_body
            self.deadline_reply = replies.REQUEST_TIMEOUT
        if self.write_paused is False and self.paused & _PAUSE_UPSTREAM:
            self._resume_reading(_PAUSE_UPSTREAM)

    def on_deadline(self) -> None:
        """Called by the worker's ticker when ``deadline`` has passed."""
        self.deadline = 0.0
        reply = self.deadline_reply
        if reply is None or (self.active is not None and self.active.response_started):
            self.transport.close()  # idle keep-alive: close quietly
            return
        self.fail(reply)

    def shutdown(self) -> None:
        """Graceful drain: close if idle, else close after the current response."""
        if self.active is None and self.cur is None and not self.queue:
            self.transport.close()


class _ChunkedAfterUpgrade:
    """The callbacks of a parser that reads the chunked body of an ignored upgrade request
    (HttpProtocol._upgrade_ignored): the stand-in head it is fed first is dropped; the body and
    every later request go to the protocol."""

    __slots__ = ("head", "proto")

    def __init__(self, proto: HttpProtocol) -> None:
        self.proto = proto
        self.head = True

    def on_message_begin(self) -> None:
        if not self.head:
            self.proto.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.head:
            self.proto.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head:
            self.proto.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.head:
            self.head = False
        else:
            self.proto.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.proto.on_body(body)

    def on_message_complete(self) -> None:
        self.proto.on_message_complete()


# The ``ws`` slot of an upgrade request whose stage is not a WebSocket API's.
_UPGRADE_IGNORED = object()

# Host header value -> (its text, the domain: no port, lower-case). Bounded.
_HOSTS: dict[bytes, tuple[str, str]] = {}


def fwd_headers(fwd: list[bytes], out: list[tuple[str, str]]) -> None:
    """Append the (name, value) pairs of captured header lines to ``out``.

    Both head parsers emit each forwarded header as b"name: value\\r\\n" (leading whitespace of
    the value dropped): one decode, one split."""
    blob = fwd[0] if len(fwd) == 1 else b"".join(fwd)
    for line in blob.decode("latin-1").split("\r\n"):
        if line:
            name, _, value = line.partition(": ")
            if value.endswith((" ", "\t")):
                value = value.rstrip(" \t")
            out.append((name, value))


def _host(host: bytes) -> tuple[str, str]:
    got = _HOSTS.get(host)
    if got is None:
        text = host.decode("latin-1")
        h = text.lower()
        if h.startswith("["):
            domain = h[: h.find("]") + 1]
        else:
            domain = h.rpartition(":")[0] if ":" in h else h
        got = (text, domain)
        if len(_HOSTS) < 1024:
            _HOSTS[host] = got
    return got


def _forwarded(
    parts: list[bytes],
    proto: HttpProtocol,
    xff: bytes | None,
    xfwd: list[tuple[bytes, bytes]] | None,
    host: bytes | None,
) -> None:
    """Append the X-Forwarded-* lines of an upstream request head.

    From a trusted proxy, its X-Forwarded-For is extended with the peer and its
    X-Forwarded-Proto / -Host are kept; otherwise the client's are replaced by what the socket
    says."""
    if proto.peer_trusted and (xff or xfwd):
        peer = proto.peer.encode()
        parts.append(b"x-forwarded-for: %s\r\n" % (xff + b", " + peer if xff else peer))
        proto_v = b"http" if proto.tls_name is None else b"https"
        fwd_host = host or b""
        for name, value in xfwd or ():
            if name == b"x-forwarded-proto":
                proto_v = value
            elif name == b"x-forwarded-host":
                fwd_host = value
        parts.append(b"x-forwarded-proto: %s\r\n" % proto_v)
        if fwd_host:
            parts.append(b"x-forwarded-host: %s\r\n" % fwd_host)
        return
    # PERF: the peer never changes on a connection and the Host rarely does: the
    # X-Forwarded-* lines are built once per connection (and per Host value).
    parts.append(proto.xfwd_lines)
    if host:
        if host is not proto.xfwd_host_key and host != proto.xfwd_host_key:
            proto.xfwd_host_key = host
            proto.xfwd_host_line = b"x-forwarded-host: %s\r\n" % host
        parts.append(proto.xfwd_host_line)


def _client_of(xff: str, peer: str, trusted: tuple[object, ...]) -> str:
    """The client behind trusted proxies: X-Forwarded-For read from the right, skipping the
    trusted proxies' own addresses (the left part is whatever the client claimed)."""
    client = peer
    for part in reversed(xff.split(",")):
        text = part.strip()
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            break
        client = text
        if not any(addr in net for net in trusted):  # type: ignore[operator]
            break
    return client


class Exchange:
    """One request and its response, from head to last byte."""

    __slots__ = (
        "body_len",
        "body_mode",
        "buf",
        "buf_bytes",
        "cache_key",
        "cache_state",
        "collect",
        "conn",
        "deadline",
        "expect",
        "gate",
        "gwr",
        "http10",
        "int_ms",
        "integration",
        "keep_alive",
        "local_error",
        "method",
        "out",
        "p_api_key",
        "p_deadline",
        "p_fwd",
        "p_host",
        "p_inner",
        "p_key_id",
        "p_path",
        "p_xff",
        "p_xfwd",
        "params",
        "pipeline",
        "pool",
        "proto",
        "query",
        "req_head",
        "request_done",
        "request_id",
        "resp_chunked",
        "resp_len",
        "response_done",
        "response_started",
        "retried",
        "route",
        "snapshot",
        "t0",
        "t_int",
        "target_path",
        "task",
        "trace",
        "up_buf",
        "up_method",
        "up_status",
        "url",
    )

    def __init__(self, proto: HttpProtocol, method: str, http10: bool, keep_alive: bool) -> None:
        self.proto = proto
        # PERF: reads go through the typed field (``__init__``'s arguments are plain objects in
        # the compiled build: every read of one would be an attribute lookup).
        hp = self.proto
        self.method = method
        self.http10 = http10
        self.keep_alive = keep_alive
        self.expect = False
        self.body_mode = 0  # 0: none, 1: content-length, 2: chunked
        self.body_len = 0
        self.request_done = False
        self.response_started = False
        self.response_done = False
        self.local_error: LocalReply | None = None
        self.route: RouteRuntime | None = None
        self.integration: ProxyIntegration | None = None
        self.params: dict[str, str] | None = None
        self.query = b""
        self.target_path = b""
        self.req_head = b""
        self.buf: list[bytes] | None = None
        self.buf_bytes = 0
        self.conn: UpstreamConnection | None = None
        self.pool: UpstreamPool | None = None
        self.deadline = 0.0
        self.retried = False
        self.resp_chunked = False
        self.out: list[bytes] = []
        self.gate: asyncio.Future[LocalReply | None] | None = None
        # The API's customised gateway responses (REST gatewayResponses), or None.
        self.gwr: object = None
        # A cached route's key, when the protocol looked it up and missed (the pipeline stores
        # the response under it).
        self.cache_key: bytes | None = None
        # A pipeline's buffered upstream exchange (collect_upstream): the Future its response
        # goes to instead of the client, the method sent, and the response status.
        self.collect: asyncio.Future[Any] | None = None
        self.up_method: str | None = None
        self.up_status = 0
        self.up_buf: list[bytes] | None = None  # its body so far (``buf`` keeps the request's)
        # The pipeline's own deadline while a collected exchange runs under the integration's.
        self.p_deadline = 0.0
        # Metrics (fastgw.telemetry): when the request head was in, when the integration
        # request left and how long its response took (ms, -1: none), the cache outcome
        # (0: no cache, 1: hit, 2: miss).
        self.t0 = hp.clock()
        self.url = b""
        self.resp_len = -1  # body bytes sent (access logs' responseLength), -1: not known
        self.t_int = 0.0
        self.int_ms = -1.0
        self.cache_state = 0
        # Routes with a request pipeline (functions, authorizers, plugins): what the pipeline's
        # Request is built from once the body is in, and the Task running it.
        self.pipeline: object = None
        self.task: asyncio.Task[LocalReply] | None = None
        self.p_fwd: list[bytes] | None = None
        self.p_host: bytes | None = None
        self.p_xff: bytes | None = None
        self.p_xfwd: list[tuple[bytes, bytes]] | None = None
        self.p_api_key: bytes | None = None
        self.p_path = ""
        self.p_inner = ""
        self.p_key_id: str | None = None
        global _rid
        _rid += 1
        self.request_id = request_id(hp.rid_prefix, _rid)
        # Tracing (fastgw.telemetry.tracing): the sampled request's trace, None otherwise.
        tracer = hp.hot.tracer
        self.trace = tracer.begin(hp.fwd) if tracer is not None else None
        self.snapshot: RuntimeSnapshot = hp.hot.snapshot

    # ------------------------------------------------------------------ request side
    def prepare(self, url: bytes) -> None:
        """Route the request (host, stage, route) on its one normalised path."""
        proto = self.proto
        host = proto.host
        if not url or url[0] != 47:  # not "/"
            # Absolute-form (RFC 9112 3.2.2): accepted, and its authority replaces Host.
            url, host = _absolute_form(url)
        self.url = url
        if b"?" in url:
            # PERF: ``in`` first: most targets have no query, and ``find`` parses its
            # arguments before it searches (about 1,000 instructions to find nothing).
            q = url.find(b"?")
            raw_path = url[:q]
            self.query = url[q + 1 :]
        else:
            raw_path = url
        snapshot = self.snapshot
        if proto.site_snapshot is snapshot and proto.site_host == host:
            # PERF: a keep-alive client sends the same Host again and again.
            site = proto.site
        else:
            site = snapshot.host_cache.get(host)
            if site is None:
                site = snapshot.site_for_header(host)
            proto.site_snapshot = snapshot
            proto.site_host = host
            proto.site = site
        # PERF: a site remembers its paths by the request's raw bytes: a path asked for before
        # needs no decoding, normalising and hashing of the normalised text.
        resolved = site.resolved
        entry = resolved.get(raw_path)
        if entry is None:
            try:
                path = normalize_path(raw_path.decode("latin-1"))
            except InvalidPathError:
                raise _Reject(replies.BAD_REQUEST) from None
        else:
            path = entry.path
        # Mutual TLS (fastgw.server.tls): a request for an mTLS domain only on a connection
        # verified for that very name (SNI), never on plain HTTP or under another SNI.
        mtls = site.mtls
        if mtls is not None and mtls != proto.tls_name:
            self.local_error = TLS_FORBIDDEN
            return
        if entry is None:
            stage, inner = resolve_stage(site, path)
            if len(raw_path) <= _RESOLVED_PATH_MAX:
                if len(resolved) >= _RESOLVED_MAX:
                    resolved.clear()
                entry = resolved[raw_path] = _Resolved(stage, path, inner)
        else:
            stage = entry.stage
            inner = entry.inner
        if stage is None:
            self.local_error = site.not_found
            return
        canary = stage.canary
        if canary is not None and _random() * 100.0 < stage.canary_percent:
            # A canary release: this request (not the connection) goes to the canary deployment.
            stage = canary
        if stage.access_log is not None:
            # The access log reads headers once the response is out, by when the connection
            # has moved on to the next request's lists.
            self.p_fwd = proto.fwd
            self.p_host = host
        gwr = stage.gateway_responses
        if gwr is not None:
            # Customised gateway responses map request values: keep what the Request is built
            # from (the fast path would reuse the header list for the upstream head).
            self.gwr = gwr
            self.capture(list(proto.fwd), host, path, inner)
        if self.method == "OPTIONS":
            cors = stage.api.cors
            if cors is not None:
                # HTTP API CORS: the gateway answers preflights itself, OPTIONS route or not.
                origin, wanted, wanted_headers = _preflight_headers(proto.fwd)
                if origin is not None and wanted is not None:
                    self.local_error = cors.preflight(origin, wanted, wanted_headers)
                    return
        method = self.method
        if entry is not None and entry.stage is not stage:
            entry = None  # a canary request: its stage's trie, not remembered
        if entry is not None and entry.method == method:
            match = entry.match
        else:
            trie = stage.trie
            match = trie.match(method, inner)
            if entry is not None:
                entry.method = method
                entry.match = match
                entry.target = None
        if match is None:
            self.local_error = stage.api.not_found
            cors = stage.api.cors
            if cors is not None:
                self.local_error = cors.decorate_origin(self.local_error, _preflight_headers(proto.fwd)[0])
            return
        route: RouteRuntime = match.value
        self.route = route
        if gwr is not None:
            self.params = dict(match.params)  # (the match may be shared: see _Resolved)
        pipeline = route.pipeline
        if pipeline is not None and pipeline.fast_auth is not None:  # type: ignore[attr-defined]
            # A JWT-only proxy route: a token this worker verified goes on the fast path.
            t = proto.clock() if self.trace is not None else 0.0
            if pipeline.fast_auth.head_allows(proto.fwd, route):  # type: ignore[attr-defined]
                pipeline = None
                if self.trace is not None:
                    self.trace.authorizer(t, proto.clock(), "JWT", True)
        if pipeline is not None:
            self.pipeline = pipeline
            if not pipeline.early_gate:
                if gwr is None:  # (else the copy made above)
                    params = match._params
                    self.params = dict(params) if params else {}  # the pipeline's own (see _Resolved)
                    self.capture(proto.fwd, host, path, inner)
                return  # the pipeline runs the gate itself (after its authorizer, as AWS does)
        # Traffic management: API key, usage plan, throttle levels, quota (fastgw.traffic), at
        # the head's time (t0: prepare runs in the callback that made this exchange).
        hot = proto.hot
        gate = hot.gate
        table = hot.table
        if table is not None and not route.api_key_required:
            # PERF: a route without an API key on the embedded backend needs only its throttle
            # levels (route, stage, gateway): ``Gate.take_local`` without its Python frame.
            slots, rates, bursts = route.level_args
            taken = table.take_many(slots, rates, bursts, self.t0)
            verdict = None if taken[0] == -1 else gate.throttled(route.levels, taken)
        else:
            verdict = gate.admit(route, proto, self.t0)
        if verdict is not None:
            if type(verdict) is LocalReply:
                self.local_error = verdict  # type: ignore[assignment]
                return
            self.gate = verdict  # type: ignore[assignment]
        if pipeline is not None:
            # The pipeline gets its own copy of the match's parameters (see _Resolved), made
            # once the request goes to it (PERF: a cache hit needs none).
            params = match._params if gwr is None else self.params
            if route.api_key_required and proto.key_rt is not None:
                self.p_key_id = proto.key_rt.id  # type: ignore[attr-defined]
            cache = route.cache
            if cache is not None and cache.early and self.gate is None:
                # The stage cache (fastgw.pipeline.caching): a hit is answered like a MOCK. At the
                # head's time (PERF: uvloop's clock counts milliseconds, and this callback made the
                # exchange microseconds ago).
                t = self.t0 if self.trace is None else proto.clock()
                got = cache.lookup(self.method, proto.fwd, self.query, params, t)
                if self.trace is not None and got is not None:
                    self.trace.cache_lookup(t, proto.clock(), type(got) is not bytes)
                if type(got) is bytes:
                    self.cache_key = got
                    self.cache_state = 2
                elif got is not None:
                    self.local_error = got
                    self.cache_state = 1
                    return
            if gwr is None:
                self.params = dict(params) if params else {}
                self.capture(proto.fwd, host, path, inner)
            return
        integ = route.integration
        if type(integ) is not _MockRuntime:
            self.integration = integ  # type: ignore[assignment]
            # PERF: the match's own dict (None: no parameters), not the property that makes one;
            # with gateway responses the exchange keeps the copy made above.
            params = match._params
            if gwr is None:
                self.params = params
            if entry is not None:
                target = entry.target
                if target is None:
                    target = entry.target = render_path(integ, params)  # type: ignore[arg-type]
            else:
                target = render_path(integ, params)  # type: ignore[arg-type]
            self._build_upstream_head(target, host)

    def capture(self, fwd: list[bytes], host: bytes | None, path: str, inner: str) -> None:
        """Keep what ``build_request`` makes the pipeline's Request from."""
        proto = self.proto
        self.p_fwd = fwd
        self.p_host = host
        self.p_xff = proto.xff
        self.p_xfwd = proto.xfwd
        self.p_api_key = proto.api_key
        self.p_path = path
        self.p_inner = inner

    def _build_upstream_head(self, target: bytes, host: bytes | None) -> None:
        """The upstream request head after its request line (``target``: the rendered path)."""
        proto = self.proto
        integ: ProxyIntegration = self.integration  # type: ignore[assignment]
        query = self.query
        if integ.uri_query:
            query = integ.uri_query + b"&" + query if query and integ.pass_query else integ.uri_query
        elif not integ.pass_query:
            query = b""
        if query:
            target = target + b"?" + query
        self.target_path = target
        parts = proto.fwd
        if self.trace is not None:
            self.trace.inject(parts)
        _forwarded(parts, proto, proto.xff, proto.xfwd, host)
        if self.body_mode == 1:
            parts.append(b"content-length: %d\r\n" % self.body_len)
        elif self.body_mode == 2:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.req_head = b"".join(parts)

    def start(self, now: float = 0.0) -> None:
        """Become the active exchange: answer locally or dispatch upstream (``now``: the loop's
        time if the caller has it, as the head's callback has)."""
        gate = self.gate
        if gate is not None:
            # Admission waits on the shared store (a Redis lease): resume when it answers.
            if not gate.done():
                gate.add_done_callback(self._gate_done)
                return
            self.gate = None
            try:
                verdict = gate.result()
            except Exception:
                log.exception("traffic gate failed")
                verdict = replies.INTERNAL_ERROR
            if verdict is not None:
                self.local_error = verdict
        if self.local_error is not None:
            self.respond_local(self.local_error, now)
            return
        route = self.route
        if route is None:
            return
        if self.pipeline is not None:
            cache = route.cache  # type: ignore[union-attr]
            if cache is not None and cache.early and self.cache_state == 0 and self.cache_key is None:
                # The gate waited for the shared store (Redis), so the head's cache lookup was
                # not made: make it now.
                t = self.proto.clock()
                got = cache.lookup(self.method, self.p_fwd, self.query, self.params, t)
                if self.trace is not None and got is not None:
                    self.trace.cache_lookup(t, self.proto.clock(), type(got) is not bytes)
                if type(got) is bytes:
                    self.cache_key = got
                    self.cache_state = 2
                elif got is not None:
                    self.cache_state = 1
                    self.respond_local(got)
                    return
            if self.request_done:
                self.start_pipeline()
            elif self.expect:
                self.proto.twrite(CONTINUE_100)
            return
        if self.integration is None:
            self.respond_local(route.integration.reply, now)  # type: ignore[union-attr]
            return
        if self.expect and not self.request_done:
            self.proto.twrite(CONTINUE_100)
        self.dispatch(now)

    def _gate_done(self, fut: asyncio.Future[LocalReply | None]) -> None:
        if self.proto.active is self and not self.response_started:
            self.start()
        elif not fut.cancelled():
            fut.exception()  # retrieved: a cancelled exchange's admission is dropped

    def start_pipeline(self) -> None:
        proto = self.proto
        self.deadline = proto.clock() + self.pipeline.deadline  # type: ignore[attr-defined]
        proto.waiting.add(self)
        _launch_pipeline(self, proto.worker.services)

    def pipeline_proxy(self, integ: object, target: bytes, head: bytes | None, body: bytes) -> None:
        """The pipeline admitted the request: proxy it (as edited) on this worker's pools and
        stream the response back, as the fast path does. The body is whole by now. ``head``
        None: the request is as received; its upstream head is built from the captured head."""
        self.proto.waiting.discard(self)
        if self.proto.active is not self or self.response_started:
            return
        if _BAD_TARGET.search(target) is not None:
            # A mapping or plugin made a target that would break the request line (spaces,
            # controls, non-ASCII): never send it.
            log.error("refused upstream target %r", target[:200])
            if self.collect is not None:
                self._collected(replies.CONFIGURATION_ERROR)
            else:
                self.respond_local(replies.CONFIGURATION_ERROR)
            return
        self.integration = integ
        self.buf = [body] if body else None
        self.buf_bytes = len(body)
        self.body_mode = 1 if body else 0
        self.body_len = len(body)
        if head is None:
            self.params = None
            self._build_pipeline_head(target)
        else:
            self.target_path = target
            self.req_head = head
        self.dispatch()

    def collect_upstream(
        self, integ: object, method: str, target: bytes, head: bytes, body: bytes, fut: asyncio.Future[Any]
    ) -> None:
        """A pipeline's buffered exchange on this worker's upstream pools: the response (status,
        raw head, body) or the gateway's error reply goes to ``fut``, not to the client."""
        if self.proto.active is not self or self.response_started:
            fut.set_result(replies.INTEGRATION_FAILURE)
            return
        self.collect = fut
        self.up_method = method
        self.p_deadline = self.deadline
        self.pipeline_proxy(integ, target, head, body)

    def _collected(self, result: object) -> None:
        fut = self.collect
        self.collect = None
        self.up_method = None
        self.up_buf = None
        self.buf_bytes = 0
        if fut is not None and not fut.done():
            # The pipeline goes on (response mapping, plugins) under its own deadline again.
            self.deadline = self.p_deadline
            self.proto.waiting.add(self)
            fut.set_result(result)
        else:
            self.proto.waiting.discard(self)

    def _build_pipeline_head(self, target: bytes) -> None:
        """The upstream head of an unedited pipeline request, from the captured header lines."""
        proto = self.proto
        parts = list(self.p_fwd) if self.p_fwd else []
        _forwarded(parts, proto, self.p_xff, self.p_xfwd, self.p_host)
        if self.body_mode == 1:
            parts.append(b"content-length: %d\r\n" % self.body_len)
        parts.append(b"\r\n")
        self.target_path = target
        self.req_head = b"".join(parts)

    def pipeline_done(self, reply: LocalReply) -> None:
        """The pipeline's answer (its Task is done)."""
        self.proto.waiting.discard(self)
        if self.proto.active is self and not self.response_started:
            self.respond_local(reply)

    def request_headers(self, body: bytes) -> tuple[list[tuple[str, str]], str, str]:
        """The header pairs of the pipeline's view of this exchange (see ``Request``), its
        domain (the Host without the port) and its source IP, for a request body ``body``."""
        headers: list[tuple[str, str]] = []
        host = self.p_host
        domain = ""
        if host is not None:
            text, domain = _host(host)
            headers.append(("Host", text))
        fwd = self.p_fwd
        if fwd:
            fwd_headers(fwd, headers)
        if self.trace is not None:
            self.trace.inject_pairs(headers)
        if body or self.body_mode:
            headers.append(("Content-Length", str(len(body))))
        peer = self.proto.peer
        xff = self.p_xff
        source_ip = peer
        if xff:
            xff_s = xff.decode("latin-1")
            if self.proto.peer_trusted:
                source_ip = _client_of(xff_s, peer, self.snapshot.trusted_proxies)
            headers.append(("X-Forwarded-For", f"{xff_s}, {peer}"))
        else:
            headers.append(("X-Forwarded-For", peer))
        headers.append(("X-Forwarded-Proto", "http" if self.proto.tls_name is None else "https"))
        port = self.proto.local_port
        if port:
            headers.append(("X-Forwarded-Port", port))
        return headers, domain, source_ip

    def build_request(self) -> Request:
        """The request pipeline's view of this exchange (see ``Request`` for its headers)."""
        buf = self.buf
        body = b"".join(buf) if buf else b""
        headers, domain, source_ip = self.request_headers(body)
        api_key = self.p_api_key
        req = Request(
            self.route,
            self.method,
            self.p_path,
            self.p_inner,
            self.query.decode("latin-1"),
            headers,
            body,
            source_ip,
            self.request_id.decode(),
            int(time.time() * 1000),
            self.params,
            domain,
            "HTTP/1.0" if self.http10 else "HTTP/1.1",
            api_key.decode("latin-1") if api_key else (None if api_key is None else ""),
        )
        req.api_key_id = self.p_key_id
        req.client_cert = self.proto.tls_cert
        req.cache_key = self.cache_key
        req.exchange = self
        return req

    def dispatch(self, now: float = 0.0) -> None:
        integ: ProxyIntegration = self.integration  # type: ignore[assignment]
        proto = self.proto
        if not now:
            now = proto.clock()
        self.t_int = now
        pool = proto.pools.pick(integ, now)
        self.pool = pool
        self.deadline = now + integ.timeout
        proto.waiting.add(self)
        pool.acquire(self)

    def request_body(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.client is self:
            if self.body_mode == 2:
                conn.transport.write(b"%x\r\n%s\r\n" % (len(data), data))  # type: ignore[union-attr]
            else:
                conn.transport.write(data)  # type: ignore[union-attr]
            return
        if self.response_started or self.local_error is not None or self.route is None:
            return  # the answer did not need the body: drop it
        if self.pipeline is not None:
            # A pipeline works on the whole body (bounded by max_body_bytes).
            if self.buf is None:
                self.buf = []
            self.buf.append(data)
            return
        if self.integration is None:
            return  # MOCK: the body is read and dropped
        if self.buf is None:
            self.buf = []
        self.buf.append(data)
        self.buf_bytes += len(data)
        if self.buf_bytes > self.proto.limits.write_high_water:
            self.proto._pause_reading(_PAUSE_UPSTREAM)

    def request_complete(self, now: float = 0.0) -> None:
        self.request_done = True
        conn = self.conn
        if conn is not None and conn.client is self and self.body_mode == 2:
            conn.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
        elif (
            self.pipeline is not None
            and self.task is None
            and self.proto.active is self
            and not self.response_started
            and self.local_error is None
            and self.gate is None
        ):
            self.start_pipeline()
        if self.response_done:
            self.proto.exchange_done(self, now)

    # ------------------------------------------------------------------ upstream callbacks
    def upstream_ready(self, conn: UpstreamConnection) -> None:
        proto = self.proto
        if proto.active is not self or self.response_started:
            conn.release(True)
            return
        self.conn = conn
        method = self.up_method or self.method
        conn.skip_body = method == "HEAD"
        mb = _METHOD_BYTES.get(method)
        if mb is None:
            mb = _METHOD_BYTES[method] = method.encode("latin-1")
        head = b"".join((mb, b" ", self.target_path, conn.pool.target.version_host, self.req_head))
        buf = self.buf
        if buf:
            self.buf = None
            self.buf_bytes = 0
            if self.body_mode == 2:
                body = b"".join([b"%x\r\n%s\r\n" % (len(c), c) for c in buf])
            else:
                body = b"".join(buf)
            head += body
            proto._resume_reading(_PAUSE_UPSTREAM)
        if self.body_mode == 2 and self.request_done:
            head += b"0\r\n\r\n"
        conn.send(self, head)

    def upstream_failed(self, reused: bool, got_bytes: bool) -> None:
        conn = self.conn
        self.conn = None
        pool = self.pool
        if conn is not None:
            # A failure on an established connection (connect failures are counted by the pool).
            if pool is not None and not reused:
                pool.record_failure()
            conn.abort()
        if self.proto.active is not self:
            return
        if self.response_started:
            self.proto.waiting.discard(self)
            self.flush_out()
            self.proto.transport.abort()
            route = self.route
            if route is not None:
                self.observe(
                    route, self.up_status, self.proto.clock()
                )  # counted and logged with the status sent
            return
        if reused and not got_bytes and not self.retried and self.body_mode == 0:
            # The classic keep-alive race: the upstream closed an idle connection as we
            # reused it. Nothing was received, so resend once on another connection.
            self.retried = True
            self.dispatch()
            return
        if self.collect is not None:
            self._collected(replies.INTEGRATION_FAILURE)
            return
        self.proto.waiting.discard(self)
        self.respond_local(replies.INTEGRATION_FAILURE)

    def response_flags(self) -> int:
        """What the client side asks of the response head (fastgw_core.headers IN_* flags)."""
        if not self.request_done:
            self.keep_alive = False  # an early response: the rest of the request is not read
        flags = 0
        if self.method == "HEAD":
            flags = IN_HEAD
        if self.http10:
            flags |= IN_HTTP10
        if not self.keep_alive:
            flags |= IN_CLOSE
        return flags

    def upstream_whole(
        self, out: bytes, status: int, out_flags: int, keep_alive: bool, body_len: int
    ) -> None:
        """The whole response came in one read and the fast path relayed it (head + body)."""
        self.up_status = status
        self.resp_len = body_len
        if out_flags & OUT_CLOSE:
            self.keep_alive = False
        self.response_started = True
        self.out.append(out)
        self.upstream_done(keep_alive)

    def collected_whole(self, data: bytes, status: int, keep_alive: bool, body_len: int) -> None:
        """A buffered exchange's whole response came in one read (``data``: head and body):
        what ``upstream_head``, ``upstream_body`` and ``upstream_done`` make of it."""
        self.up_status = status
        self.target_path = data  # the raw head (followed by the body, as httptools' head_buf)
        self.up_buf = [data[len(data) - body_len :]] if body_len else []
        self.upstream_done(keep_alive)

    def upstream_head(self, status: int, raw_head: bytes, conn: UpstreamConnection) -> None:
        proto = self.proto
        if self.collect is not None:
            # The integration timeout bounds the whole exchange (as AWS's): the deadline set at
            # dispatch stays.
            self.up_status = status
            self.target_path = raw_head  # the raw head, until upstream_done
            self.up_buf = []
            self.buf_bytes = 0
            return
        self.up_status = status
        self.resp_len = 0
        flags = self.response_flags()
        head, _, out_flags = rewrite_response_head(raw_head, self.request_id, flags)
        if out_flags & OUT_CLOSE:
            self.keep_alive = False
        self.resp_chunked = bool(out_flags & OUT_CHUNKED)
        # The integration deadline now bounds the wait between body reads (the exchange stays
        # in worker.waiting until upstream_done).
        self.deadline = proto.clock() + self.integration.timeout  # type: ignore[union-attr]
        self.response_started = True
        # PERF: the head is not written here but gathered with the body bytes of the same
        # upstream read and written once (flush_out): one send() per read, not two.
        self.out.append(head)
        if proto.write_paused and conn.transport is not None:
            conn.transport.pause_reading()

    def upstream_body(self, data: bytes) -> None:
        if self.collect is not None:
            size = self.buf_bytes + len(data)
            if size > COLLECT_MAX_BYTES:
                # A buffered response larger than any integration response may be (AWS: 10 MB).
                log.error("upstream response over %d bytes", COLLECT_MAX_BYTES)
                conn = self.conn
                self.conn = None
                if conn is not None:
                    conn.abort()
                self._collected(replies.INTEGRATION_FAILURE)
                return
            self.buf_bytes = size
            self.up_buf.append(data)  # type: ignore[union-attr]
            return
        self.deadline = self.proto.clock() + self.integration.timeout  # type: ignore[union-attr]
        self.resp_len += len(data)
        if self.resp_chunked:
            self.out.append(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.out.append(data)

    def flush_out(self) -> None:
        """Write what the last upstream read produced, in one call."""
        out = self.out
        if out:
            self.proto.twrite(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def upstream_done(self, keep_alive: bool) -> None:
        conn = self.conn
        self.conn = None
        self.proto.waiting.discard(self)
        now = self.proto.clock()  # one reading for the latency, the metrics and the next deadline
        if conn is not None:
            conn.release(keep_alive and self.request_done, now)
        t_int = self.t_int
        if t_int:
            self.int_ms = (now - t_int) * 1000.0
        if self.collect is not None:
            buf = self.up_buf
            body = (buf[0] if len(buf) == 1 else b"".join(buf)) if buf else b""
            self._collected((self.up_status, self.target_path, body))
            return
        if self.resp_chunked:
            self.out.append(b"0\r\n\r\n")
        self.flush_out()
        self.response_done = True
        route = self.route
        if route is not None:
            self.observe(route, self.up_status, now)
        if self.request_done:
            self.proto.exchange_done(self, now)
        elif not self.keep_alive:
            self.proto.transport.close()

    def upstream_pause_writing(self) -> None:
        self.proto._pause_reading(_PAUSE_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self.proto._resume_reading(_PAUSE_UPSTREAM)

    # ------------------------------------------------------------------ endings
    def respond_local(self, reply: LocalReply, now: float = 0.0) -> None:
        """Answer with a local reply (``now``: the loop's time if the caller has it)."""
        proto = self.proto
        if reply.kind is not None and self.gwr is not None:
            reply = self.gwr.render(reply, self)  # type: ignore[attr-defined]
        self.response_started = True
        if not self.request_done and self.body_mode and (reply.status >= 400 or self.expect):
            self.keep_alive = False  # the body will not be read: the connection cannot continue
        conn_line = CONN_CLOSE if not self.keep_alive else (CONN_KEEP_ALIVE if self.http10 else b"")
        # PERF: head and body in one allocation (compiled: one C call, no tuple of the parts).
        body = b"" if self.method == "HEAD" else reply.body
        proto.twrite(local_response(reply.head, self.request_id, proto.hot.date_line, conn_line, body))
        self.resp_len = len(body)
        self.response_done = True
        if not now:
            now = proto.clock()
        route = self.route
        if route is not None:
            self.observe(route, reply.status, now)
        else:
            proto.worker.unmatched += 1  # no route: no stage, no route, or refused at the head
            if self.trace is not None:
                proto.worker.tracer.finish(self, None, reply.status, now)
        if self.request_done:
            proto.exchange_done(self, now)
        elif not self.keep_alive:
            proto.transport.close()

    def observe(self, route: RouteRuntime, status: int, now: float) -> None:
        """Count the finished response (at ``now``, the loop's time) in the route's metrics
        (fastgw.telemetry.metrics) and write its access log line (fastgw.telemetry.access)."""
        stats = route.stats
        if stats is not None:
            int_ms = self.int_ms
            stats.record(
                status, (now - self.t0) * 1000.0, int_ms if int_ms >= 0.0 else None, self.cache_state
            )
        access_log = route.stage.access_log
        if access_log is not None:
            access_log.emit_fields(
                route,
                status,
                now,
                self.request_id,
                self.method,
                self.http10,
                self.resp_len,
                self.t0,
                self.proto.peer,
                self,
            )
        if self.trace is not None:
            self.proto.worker.tracer.finish(self, route, status, now)

    def on_timeout(self) -> None:
        """The integration deadline passed (called by the worker's ticker)."""
        self.collect = None  # the pipeline waiting on it is cancelled below
        task = self.task
        if task is not None:
            self.task = None
            task.cancel()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.abort()
        elif self.pool is not None:
            self.pool.cancel(self)
        if self.proto.active is not self:
            return
        if self.response_started:
            self.proto.transport.abort()
            route = self.route
            if route is not None:
                self.observe(route, self.up_status, self.proto.clock())
        else:
            self.respond_local(replies.INTEGRATION_TIMEOUT)

    def abort_upstream(self) -> None:
        self.collect = None
        task = self.task
        if task is not None:
            self.task = None
            task.cancel()
        conn = self.conn
        self.conn = None
        self.proto.waiting.discard(self)
        if conn is not None:
            conn.abort()
        elif self.pool is not None:
            self.pool.cancel(self)

    def cancel(self) -> None:
        """The client went away."""
        self.abort_upstream()


_TASKS: set[asyncio.Task[None]] = set()


class UpstreamConnection:
    """One TCP connection to a target, parsing responses with httptools."""

    __slots__ = (
        "awaiting_head",
        "client",
        "closing",
        "got_bytes",
        "head_buf",
        "idle_since",
        "parser",
        "pool",
        "reused",
        "skip_body",
        "transport",
        "twrite",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.twrite: Callable[[bytes], None] = _no_write
        self.closing: Callable[[], bool] = _closed  # the transport's is_closing
        self.parser = httptools.HttpResponseParser(self)
        self.client: Exchange | None = None
        self.head_buf = b""
        self.awaiting_head = False
        self.idle_since = 0.0
        self.reused = False
        self.got_bytes = False
        self.skip_body = False

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.twrite = transport.write  # type: ignore[attr-defined]
        self.closing = transport.is_closing
        set_nodelay(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        client = self.client
        if client is not None:
            self.client = None
            client.upstream_failed(self.reused, self.got_bytes)

    def data_received(self, data: bytes) -> None:
        if self.client is None:
            # Bytes on an idle connection: the upstream is confused; never reuse it.
            self.abort()
            return
        self.got_bytes = True
        client = self.client
        if self.awaiting_head and not self.head_buf and not self.skip_body:
            # PERF: a whole Content-Length response in one read, strictly well-formed, is
            # relayed by one C call; httptools (still idle) is not involved. A pipeline's
            # buffered exchange takes it as it came (IN_RAW), as httptools would have given it.
            if client.collect is None:
                whole = relay_response(data, client.request_id, client.response_flags())
                if whole is not None:
                    self.awaiting_head = False
                    client.upstream_whole(whole[0], whole[1], whole[2], whole[3], whole[4])
                    return
            elif len(data) <= COLLECT_MAX_BYTES:  # (upstream_body enforces it otherwise)
                whole = relay_response(data, b"", IN_RAW)
                if whole is not None:
                    self.awaiting_head = False
                    client.collected_whole(data, whole[1], whole[3], whole[4])
                    return
        if self.awaiting_head:
            # PERF: no on_header callback is bound; the raw head is kept and rewritten by
            # fastgw_core.headers in one call once httptools has validated it.
            self.head_buf = self.head_buf + data if self.head_buf else data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as ex:
            ctx = ex.__context__
            if ctx is not None and not isinstance(ctx, (_Anomaly, HeadError)):
                log.error("upstream response handling failed", exc_info=ctx)
            self.client = None
            self.abort()
            client.upstream_failed(False, True)
            return
        client.flush_out()

    def eof_received(self) -> bool | None:
        client = self.client
        if client is not None:
            # A close-delimited body ends here; anything else is a premature close.
            try:
                self.parser.feed_data(b"")
            except httptools.HttpParserError:
                pass
        return None

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_resume_writing()

    # -- httptools callbacks (no on_header: see data_received)
    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        buf = self.head_buf
        if status < 200:
            end = buf.find(b"\r\n\r\n")
            if end < 0 or status not in (100, 103):
                raise _Anomaly()  # an unexpected 1xx / 101 is never relayed
            self.head_buf = buf[end + 4 :]  # informational: the final head follows
            return
        self.awaiting_head = False
        self.head_buf = b""
        client = self.client
        if client is not None:
            client.upstream_head(status, buf, self)
            if self.skip_body and self.client is not None:
                # A response to HEAD has no body, whatever its framing headers say; the parser
                # cannot be told so, hence the connection is closed rather than reused.
                self.client = None
                client.upstream_done(False)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is not None:
            client.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        client = self.client
        if client is None:
            return
        self.client = None
        keep_alive = self.parser.should_keep_alive() and not self.skip_body
        client.upstream_done(keep_alive)

    # -- use by exchanges
    def send(self, client: Exchange, data: bytes) -> None:
        self.client = client
        self.got_bytes = False
        self.awaiting_head = True
        self.head_buf = b""
        self.twrite(data)

    def abort(self) -> None:
        self.client = None
        if self.transport is not None:
            self.transport.abort()

    def release(self, reusable: bool, now: float = 0.0) -> None:
        """Hand the connection back after an exchange; ``reusable`` only after a clean one
        (``now``: the loop's time if the caller has it).

        PERF: a transport that is closing is not looked for here: ``UpstreamPool.acquire``
        checks every idle connection before it reuses it, and ``connection_lost`` takes a
        closed one out of the idle list."""
        self.client = None
        if reusable and self.transport is not None:
            self.pool.put_idle(self, now)
        else:
            self.abort()


class _Anomaly(Exception):
    """An upstream response the gateway will not relay (an unexpected 1xx or 101)."""


class UpstreamPool:
    """Connections of one worker to one target: idle LIFO, a cap, and waiters."""

    __slots__ = (
        "all",
        "clock",
        "connecting",
        "ejected_until",
        "failures",
        "idle",
        "loop",
        "max_idle",
        "settings",
        "target",
        "waiters",
    )

    def __init__(self, target: Target, settings: UpstreamSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.settings = settings
        self.max_idle = settings.max_idle  # read on every release
        self.loop = loop
        self.clock = loop.time
        self.idle: list[UpstreamConnection] = []
        self.all: set[UpstreamConnection] = set()
        self.connecting = 0
        self.waiters: collections.deque[Exchange] = collections.deque()
        self.failures = 0
        self.ejected_until = 0.0

    def acquire(self, client: Exchange) -> None:
        """Give ``client`` a connection now (``upstream_ready``) or as soon as one is free."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.closing():
                conn.reused = True
                client.upstream_ready(conn)
                return
        if len(self.all) + self.connecting < self.settings.max_connections:
            self.connecting += 1
            task = self.loop.create_task(self._connect(client))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        else:
            self.waiters.append(client)

    def cancel(self, client: Exchange) -> None:
        try:
            self.waiters.remove(client)
        except ValueError:
            pass

    async def _connect(self, client: Exchange) -> None:
        t = self.target
        try:
            if t.scheme == "https":
                from fastgw.config.compile import upstream_ssl_context

                connecting = self.loop.create_connection(
                    lambda: UpstreamConnection(self),
                    t.host,
                    t.port,
                    ssl=upstream_ssl_context(),
                    server_hostname=t.host,
                )
            else:
                connecting = self.loop.create_connection(lambda: UpstreamConnection(self), t.host, t.port)
            _, conn = await asyncio.wait_for(connecting, self.settings.connect_timeout)
        except (TimeoutError, OSError) as ex:
            self.connecting -= 1
            self.record_failure()
            log.warning("upstream connect failed", extra={"target": f"{t.host}:{t.port}", "error": repr(ex)})
            client.upstream_failed(False, False)
            self._serve_waiters()
            return
        self.connecting -= 1
        self.failures = 0
        self.all.add(conn)
        client.upstream_ready(conn)

    def put_idle(self, conn: UpstreamConnection, now: float = 0.0) -> None:
        self.failures = 0
        if self.waiters:
            if conn.closing():
                return  # its connection_lost serves the waiters
            conn.reused = True
            self.waiters.popleft().upstream_ready(conn)
            return
        if len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = now or self.clock()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self._serve_waiters()

    def _serve_waiters(self) -> None:
        while self.waiters and len(self.all) + self.connecting < self.settings.max_connections:
            self.acquire(self.waiters.popleft())

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.settings.eject_after:
            self.ejected_until = self.clock() + self.settings.eject_seconds
            self.failures = 0
            log.warning(
                "upstream target ejected",
                extra={
                    "target": f"{self.target.host}:{self.target.port}",
                    "seconds": self.settings.eject_seconds,
                },
            )

    def expire_idle(self, now: float) -> None:
        limit = now - self.settings.idle_timeout
        idle = self.idle
        while idle and idle[0].idle_since < limit:
            idle.pop(0).abort()

    def close(self) -> None:
        for conn in list(self.all):
            conn.abort()
        self.idle.clear()


class Pools:
    """All pools of a worker, by target key; survives config reloads."""

    __slots__ = ("loop", "pools", "settings")

    def __init__(self, settings: UpstreamSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.pools: dict[tuple[str, str, int], UpstreamPool] = {}

    def get(self, target: Target) -> UpstreamPool:
        # PERF: the pool is cached on the target (both belong to this worker process), so the
        # by-key lookup runs once per target and snapshot.
        pool = target.pool
        if pool is None:
            pool = self.pools.get(target.key)
            if pool is None:
                pool = self.pools[target.key] = UpstreamPool(target, self.settings, self.loop)
            target.pool = pool
        return pool  # type: ignore[return-value]

    def pick(self, integ: ProxyIntegration, now: float) -> UpstreamPool:
        """Round-robin over targets, skipping ejected ones (all ejected: plain round-robin)."""
        targets = integ.targets
        n = len(targets)
        if n == 1:
            return self.get(targets[0])
        rr = next(integ.rr)
        for i in range(n):
            pool = self.get(targets[(rr + i) % n])
            if pool.ejected_until <= now:
                return pool
        return self.get(targets[rr % n])

    def tick(self, now: float) -> None:
        for pool in self.pools.values():
            if pool.idle:
                pool.expire_idle(now)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

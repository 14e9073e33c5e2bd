# cython: annotation_typing=False
"""Access log lines rendered straight to bytes: the per-request half of ``fastgw.telemetry.access``.

This file is compiled as ``_access_c`` (Cython pure-Python mode, as ``fastgw.telemetry._tracing``);
``fastgw.telemetry.access`` binds the compiled build unless it is missing or disabled, and says
which variable becomes which operation (``AccessLine``'s ``slots``).

PERF: a stage's format is turned, once per route, into literal bytes (the format's text with the
route's constants folded in, the last one ending with the newline) between operations: a
variable read from the exchange and written as bytes (the request id as it is, numbers as ASCII
digits, the request time's text cached per second), or a getter's value made text as
``AccessLogFormat.render_values`` makes it (``-`` when missing, quoted for
``error.messageString``, CR and LF as ``\\r`` / ``\\n``) and encoded. The parts are joined once and
appended to the destination's queue (``LoopWriter.buf``, a bytearray), which the worker's ticker
writes with one ``os.write``: no str line, no join of lines, no encode per flush. The bytes are
those of the str renderer (``access._compile_render``, the thread writer's) encoded as UTF-8
(``errors="replace"``, as the queue always encoded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastgw.telemetry.accesslog import _quote, _text

#: This source runs as ``_access_c`` (compiled, where the C branches below apply) or as
#: ``_access_py`` (plain Python, where no ``cython`` module may be installed at run time).
_COMPILED = __name__.endswith("_access_c") and not __file__.endswith(".py")  # not the build copy

#: Bytes queued per destination before new lines are dropped (counted).
MAX_QUEUED = 4 * 1024 * 1024
_MAX_QUEUED = MAX_QUEUED  # PERF: a C integer in the compiled build
#: A queue's allocation kept when it is emptied (``empty``), for the next lines.
KEEP_ALLOCATED = 2 * MAX_QUEUED
#: Routes whose program a stage caches before it starts over (reloads make new routes).
MAX_ROUTES = 4096

# What a slot of a format is (``AccessLine``'s ``slots``: (kind, argument)).
SLOT_CONST = 0  # argument: route -> str, folded per route
SLOT_OP = 1  # argument: an operation code (below)
SLOT_GET = 2  # argument: (getter of the exchange's values, quoted)

# Operations: variables written from the exchange without a getter.
OP_RID = 1
OP_METHOD = 2
OP_PROTOCOL = 3
OP_TIME = 4
OP_EPOCH = 5
OP_STATUS = 6
OP_RESP_LEN = 7
OP_LATENCY = 8
OP_PEER = 9
OP_GET = 10
OP_GET_QUOTED = 11

#: The variables with an operation (the others go through a getter, or are folded per route).
# APPSEC(fastgw): none of these can hold a CR or LF (ids made by the worker, the parser's method
# token, numbers, the clock, the peer's IP address), so they are not checked for line breaks.
OPS: dict[str, int] = {
    "requestId": OP_RID,
    "extendedRequestId": OP_RID,
    "httpMethod": OP_METHOD,
    "protocol": OP_PROTOCOL,
    "requestTime": OP_TIME,
    "requestTimeEpoch": OP_EPOCH,
    "status": OP_STATUS,
    "responseLength": OP_RESP_LEN,
    "responseLatency": OP_LATENCY,
    "identity.sourceIp": OP_PEER,
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SMALL: tuple[bytes, ...] = tuple(str(i).encode() for i in range(1000))
_METHODS: dict[object, bytes] = {
    m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
}
_time = time.time
_round = round  # Python's round (half to even), as the str renderer's

_CLF_CACHE: list[object] = [-1, ""]
_clf_sec = -1
_clf_text = b""


def _clf_time(epoch: float) -> str:
    """``$context.requestTime`` (CLF: ``dd/Mon/yyyy:HH:MM:SS +0000``), cached per second."""
    sec = int(epoch)
    if sec == _CLF_CACHE[0]:
        return _CLF_CACHE[1]  # type: ignore[return-value]
    t = time.gmtime(sec)
    day = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}"
    text = f"{day}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    _CLF_CACHE[0], _CLF_CACHE[1] = sec, text
    return text


def _clf_bytes(t: float) -> bytes:
    global _clf_sec, _clf_text
    sec = int(t)
    if sec != _clf_sec:
        _clf_text = _clf_time(t).encode()
        _clf_sec = sec
    return _clf_text


def _digits(n: int) -> bytes:
    if 0 <= n < 1000:
        return _SMALL[n]  # type: ignore[no-any-return]
    return str(n).encode("ascii")


def _one_line(text: str) -> str:
    """``text`` with CR and LF written as the two characters ``\\r`` / ``\\n`` (one request is one line)."""
    if "\n" in text or "\r" in text:
        return text.replace("\r", "\\r").replace("\n", "\\n")
    return text


def _value_bytes(value: object, quoted: bool) -> bytes:
    """A getter's value as the str renderer writes it, encoded."""
    text = value if type(value) is str and value else _text(value)
    if quoted and text != "-":
        text = _quote(text)  # type: ignore[arg-type]
    if "\n" in text or "\r" in text:  # type: ignore[operator]
        text = text.replace("\r", "\\r").replace("\n", "\\n")  # type: ignore[union-attr]
    return text.encode("utf-8", "replace")  # type: ignore[union-attr]


class AccessLine:
    """A stage's access log: its compiled format rendered to bytes into its destination's queue.

    ``slots`` says, per variable of ``format``, what it is (``SLOT_*``); ``render`` is the str
    renderer (for writers that take str lines: stderr and pipes, ``AccessLogWriter``);
    ``values`` makes the object getters read (``access._Values``); ``writer_for`` gives the
    destination's writer on first use (after the fork)."""

    def __init__(
        self,
        fmt: Any,
        destination: str | None,
        slots: list[tuple[int, Any]],
        render: Callable[[Any, Any, int, float], str],
        values: Callable[[Any, Any, int, float], Any],
        writer_for: Callable[[str | None], Any],
    ) -> None:
        self.format = fmt
        self.destination = destination
        self.render = render
        self.values = values
        self.writer_for = writer_for
        self.writer = None
        self.buf = None
        self.literals = tuple(fmt._literals)
        self.slots = list(slots)
        self.routes = {}
        self.needs_time = any(s[0] == SLOT_OP and s[1] in (OP_TIME, OP_EPOCH) for s in slots)
        self.needs_values = any(s[0] == SLOT_GET for s in slots)
        #: The last route rendered and its program (a stage's requests often share a route).
        self.last_route = None
        self.last_program = None
        #: The values of the line being rendered (one list, reused).
        self.scratch = []
        #: The wall clock (``time.time``; a test may freeze it), ``clock()`` less the loop's
        #: clock, and the loop time when that was read.
        self.clock = _time
        self.wall_offset = 0.0
        self.wall_at = -1e300

    def emit(self, ex: Any, route: Any, status: int, now: float) -> None:
        """Queue the line of a finished exchange (its fields read here: ``emit_fields``)."""
        self.emit_fields(
            route, status, now, ex.request_id, ex.method, ex.http10, ex.resp_len, ex.t0, ex.proto.peer, ex
        )

    def emit_fields(
        self,
        route: Any,
        status: int,
        now: float,
        rid: bytes,
        method: object,
        http10: bool,
        resp_len: int,
        t0: float,
        peer: object,
        ex: Any,
    ) -> None:
        """Queue the line of a finished exchange ``ex`` (``Exchange.observe``, which passes the
        fields operations read: its request id, method, HTTP/1.0 flag, body bytes sent, start on
        the loop's clock and client address); dropped (and counted) past ``MAX_QUEUED`` bytes
        waiting.

        PERF: the compiled protocol calls this as a C method with its own typed fields (no
        attribute reads on the exchange, no Python call)."""
        buf = self.buf
        if buf is None:
            if self.writer is None:
                self.writer = self.writer_for(self.destination)
                self.buf = buf = getattr(self.writer, "buf", None)
            if buf is None:
                self.writer.write(self.render(ex, route, status, now))
                return
        if len(buf) > _MAX_QUEUED:
            self.writer.dropped += 1
            return
        if _COMPILED:
            self._render(buf, route, status, now, rid, method, http10, resp_len, t0, peer, ex)
        else:  # PERF: in Python the generated str renderer is the faster one (same text)
            buf += self.render(ex, route, status, now).encode("utf-8", "replace")
            buf += b"\n"

    def program(self, route: Any) -> tuple[tuple[bytes, ...], tuple[int, ...], tuple[Any, ...]]:
        """The route's literal bytes, operation codes and getters (``None`` for an operation)."""
        literals = self.literals
        lits: list[bytes] = []
        codes: list[int] = []
        getters: list[Any] = []
        text = [literals[0]]
        for i, (kind, arg) in enumerate(self.slots):
            if kind == SLOT_CONST:
                text.append(_one_line(arg(route)))
            else:
                lits.append("".join(text).encode("utf-8", "replace"))
                text = []
                if kind == SLOT_OP:
                    codes.append(arg)
                    getters.append(None)
                else:
                    codes.append(OP_GET_QUOTED if arg[1] else OP_GET)
                    getters.append(arg[0])
            text.append(literals[i + 1])
        text.append("\n")
        lits.append("".join(text).encode("utf-8", "replace"))
        prog = (tuple(lits), tuple(codes), tuple(getters))
        if len(self.routes) >= MAX_ROUTES:
            self.routes.clear()
            self.last_route = None
        self.routes[route] = prog
        return prog

    def render_into(self, buf: bytearray, ex: Any, route: Any, status: int, now: float) -> None:
        """Append the exchange's line, with its newline, to ``buf``."""
        self._render(
            buf,
            route,
            status,
            now,
            ex.request_id,
            ex.method,
            ex.http10,
            ex.resp_len,
            ex.t0,
            ex.proto.peer,
            ex,
        )

    def _render(
        self,
        buf: bytearray,
        route: Any,
        status: int,
        now: float,
        rid: bytes,
        method: object,
        http10: bool,
        resp_len: int,
        t0: float,
        peer: object,
        ex: Any,
    ) -> None:
        if route is self.last_route:
            prog = self.last_program
        else:
            prog = self.routes.get(route)
            if prog is None:
                prog = self.program(route)
            self.last_route = route
            self.last_program = prog
        lits = prog[0]
        codes = prog[1]
        getters = prog[2]
        n = len(codes)
        vals = self.scratch
        if len(vals) != n:
            self.scratch = vals = [b""] * n
        t = 0.0
        v = None
        if self.needs_time:
            # The request's start on the wall clock: its start on the loop's clock plus the
            # offset between the clocks (read again once a second, not per request).
            if now - self.wall_at > 1.0 or now < self.wall_at:
                self.wall_offset = self.clock() - now
                self.wall_at = now
            t = t0 + self.wall_offset
        if self.needs_values:
            v = self.values(ex, route, status, now)
        for i in range(n):
            code = codes[i]
            if code == OP_RID:
                vals[i] = rid
            elif code == OP_STATUS:
                vals[i] = _digits(status)
            elif code == OP_PEER:
                vals[i] = _peer_bytes(peer)
            elif code == OP_METHOD:
                got = _METHODS.get(method)
                vals[i] = got if got is not None else str(method).encode("utf-8", "replace")
            elif code == OP_PROTOCOL:
                vals[i] = b"HTTP/1.0" if http10 else b"HTTP/1.1"
            elif code == OP_TIME:
                vals[i] = _clf_bytes(t)
            elif code == OP_RESP_LEN:
                vals[i] = _digits(resp_len) if resp_len >= 0 else b"-"
            elif code == OP_EPOCH:
                vals[i] = str(int(t * 1000)).encode("ascii")
            elif code == OP_LATENCY:
                vals[i] = str(_round((now - t0) * 1000.0)).encode("ascii")
            else:
                vals[i] = _value_bytes(getters[i](v), code == OP_GET_QUOTED)
        _append(buf, lits, vals, n)


def empty(buf: bytearray) -> None:
    """Empty a queue once written (``LoopWriter.flush``).

    PERF: compiled, an allocation of up to ``KEEP_ALLOCATED`` bytes is kept for the next lines
    (``del buf[:]`` frees it, and the queue grew again by doubling, copying, and faulting in new
    pages, after every flush)."""
    if _COMPILED:
        if _capacity(buf) <= KEEP_ALLOCATED and _clear_keep(buf):  # noqa: F821
            return
    del buf[:]


def _peer_bytes(peer: object) -> bytes:
    """``$context.identity.sourceIp``: the client's address (the last one's bytes are kept: a
    connection's requests share it)."""
    global _last_peer, _last_peer_bytes
    if peer is _last_peer:
        return _last_peer_bytes
    got = str(peer).encode("utf-8", "replace") if peer else b"-"
    _last_peer = peer
    _last_peer_bytes = got
    return got


_last_peer: object = None
_last_peer_bytes = b"-"


def _append(buf: bytearray, lits: tuple[bytes, ...], vals: list[bytes], n: int) -> None:
    """Append ``lits[0] vals[0] lits[1] ... lits[n]`` to ``buf``.

    PERF: compiled, the parts are copied into the bytearray once it has been resized to their
    total length (no list of parts, no joined copy). Its allocation doubles when it must grow
    (CPython grows a bytearray by an eighth, which copied each queued byte about eight times
    before the flush, and the flush empties it)."""
    if _COMPILED:
        size = PyBytes_GET_SIZE(lits[n])  # noqa: F821
        for i in range(n):
            size += PyBytes_GET_SIZE(lits[i]) + PyBytes_GET_SIZE(vals[i])  # noqa: F821
        start = PyByteArray_GET_SIZE(buf)  # noqa: F821
        need = start + size
        if not _set_size(buf, need):  # noqa: F821
            # Allocate twice the size (a resize above an eighth more is exact), then set the
            # size back: a shrink to half the allocation or more keeps the allocation.
            PyByteArray_Resize(buf, 2 * need - 2)  # noqa: F821
            PyByteArray_Resize(buf, need)  # noqa: F821
        p = PyByteArray_AS_STRING(buf) + start  # noqa: F821
        for i in range(n):
            part = lits[i]
            k = PyBytes_GET_SIZE(part)  # noqa: F821
            memcpy(p, PyBytes_AS_STRING(part), k)  # noqa: F821
            p += k
            part = vals[i]
            k = PyBytes_GET_SIZE(part)  # noqa: F821
            memcpy(p, PyBytes_AS_STRING(part), k)  # noqa: F821
            p += k
        part = lits[n]
        memcpy(p, PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part))  # noqa: F821
    else:
        parts = [lits[0]]
        for i in range(n):
            parts.append(vals[i])
            parts.append(lits[i + 1])
        buf += b"".join(parts)

"""Access logs of the data plane: a stage's ``accessLogSettings`` applied to finished exchanges.

``compile_access_log`` (config load) resolves a preset or checks a ``$context`` format string
(fastgw.telemetry.accesslog) and gives the stage a ``StageAccessLog``; the protocol calls its
``emit`` when a response has been written (``Exchange.observe``). Values are read from the
exchange only for the variables the format names. For a regular file the line is rendered
straight to bytes, appended to the destination's queue (a bytearray) in the worker, and its
ticker writes the queue every 100 ms in one ``write`` (``LoopWriter``, one per destination and
process, created on first use: after the fork); the rendering is compiled
(``fastgw.telemetry._access_py``, built as ``_access_c``; ``FASTGW_NO_EXTENSIONS=1`` selects the
Python build). Pipes and stderr get a thread that takes str lines (``writer_for``), rendered by
one generated function per format (``_compile_render``): both give the same text.
``reopen_all`` is logrotate's SIGUSR1.

What the protocol knows is logged; variables that only a request pipeline knows (authorizer
results, error messages of mapped integrations) print ``-``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastgw.telemetry.accesslog import AccessLogFormat, AccessLogWriter, compile_format, preset
from fastgw_core import _env

if TYPE_CHECKING:
    from fastgw.config.compile import RouteRuntime

_impl, COMPILED = _env.select("fastgw.telemetry._access_c", "fastgw.telemetry._access_py")

#: Bytes queued per destination before new lines are dropped (counted).
MAX_QUEUED: int = _impl.MAX_QUEUED
_CLF_CACHE: list[object] = _impl._CLF_CACHE
_clf_time: Callable[[float], str] = _impl._clf_time
_one_line: Callable[[str], str] = _impl._one_line


class LoopWriter:
    """One destination's lines, queued by the event loop and written by its ticker in one
    ``write`` per flush (every 100 ms): no thread, so nothing competes for the GIL, and no
    request waits on the file. ``buf`` holds the queued lines as bytes, each with its newline
    (``StageAccessLog`` renders into it); ``reopen`` is logrotate's SIGUSR1."""

    __slots__ = ("buf", "dropped", "errors", "fd", "path")

    def __init__(self, path: str | None) -> None:
        import os
        import sys

        self.path = path
        self.fd = (
            os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else sys.stderr.fileno()
        )
        #: The queue: always this bytearray (renderers keep a reference), emptied by ``flush``.
        self.buf = bytearray()
        self.dropped = 0
        self.errors = 0

    @property
    def queued(self) -> int:
        """Bytes waiting to be written."""
        return len(self.buf)

    def write(self, line: str) -> None:
        """Queue one line (without its newline); drop it if ``MAX_QUEUED`` bytes wait."""
        buf = self.buf
        if len(buf) > MAX_QUEUED:
            self.dropped += 1
            return
        buf += line.encode("utf-8", "replace")
        buf += b"\n"

    def flush(self) -> None:
        import os

        buf = self.buf
        if not buf:
            return
        try:
            with memoryview(buf) as data:
                done = 0
                while done < len(data):
                    done += os.write(self.fd, data[done:])
        except OSError:
            self.errors += 1
        _impl.empty(buf)

    def reopen(self) -> None:
        import os

        self.flush()
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            self.errors += 1
            return
        os.close(self.fd)
        self.fd = fd

    def close(self, timeout: float | None = None) -> None:
        import os

        self.flush()
        if self.path is not None:
            os.close(self.fd)


_WRITERS: dict[str | None, Any] = {}


def writer_for(destination: str | None) -> Any:
    """The destination's writer in this process: a regular file is written from the event loop
    (``LoopWriter``: page-cache writes do not block); anything that can block (stderr, a pipe, a
    FIFO) gets a background thread with a bounded queue (``AccessLogWriter``), so that a slow
    reader never stalls the worker."""
    import os
    import stat

    w = _WRITERS.get(destination)
    if w is None:
        regular = False
        if destination is not None:
            try:
                regular = stat.S_ISREG(os.stat(destination).st_mode)
            except OSError:
                regular = True  # not there yet: O_CREAT makes a regular file
        w = LoopWriter(destination) if regular else AccessLogWriter(destination)
        _WRITERS[destination] = w
    return w


def flush_all() -> None:
    """Write what the event loop queued (the worker's ticker, every 100 ms)."""
    for w in _WRITERS.values():
        if type(w) is LoopWriter:
            w.flush()


def reopen_all() -> None:
    for w in _WRITERS.values():
        w.reopen()


def close_all() -> None:
    for w in list(_WRITERS.values()):
        w.close()
    _WRITERS.clear()


def dropped_lines() -> int:
    return sum(w.dropped for w in _WRITERS.values())


def compile_access_log(fmt: str, destination: str | None, kind: str) -> StageAccessLog:
    """A stage's access log; raises AccessLogFormatError for a bad format."""
    text = preset(fmt, kind) if fmt.strip().lower() in ("clf", "json", "xml", "csv") else fmt  # type: ignore[arg-type]
    check_destination(destination)
    return StageAccessLog(compile_format(text, kind), destination)  # type: ignore[arg-type]


def check_destination(destination: str | None) -> None:
    """OSError unless ``destination`` (None: standard error) can be appended to.

    A destination that cannot be written fails the load, not the worker (nothing is created
    here: ``fastgw validate`` has no side effects)."""
    if destination is None:
        return
    import errno
    import os

    folder = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(folder):
        raise OSError(errno.ENOENT, f"no folder {folder}")
    target = destination if os.path.exists(destination) else folder
    if not os.access(target, os.W_OK):
        raise OSError(errno.EACCES, f"{target} is not writable")


def _header(ex: Any, name: str) -> str | None:
    from fastgw.pipeline.caching import _HeadLookup

    fwd = ex.p_fwd if ex.p_fwd is not None else ex.proto.fwd
    return _HeadLookup(fwd).get(name)


def _host(ex: Any) -> str | None:
    host = ex.p_host if ex.p_host is not None else ex.proto.host
    if not host:
        return None
    text = host.decode("latin-1")
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class _Values:
    """The variables of one finished exchange, computed on demand."""

    __slots__ = ("ex", "now", "route", "status")

    def __init__(self, ex: Any, route: RouteRuntime, status: int, now: float) -> None:
        self.ex = ex
        self.route = route
        self.status = status
        self.now = now


def _path(v: _Values) -> str | None:
    url = getattr(v.ex, "url", None)
    if not url:
        return v.ex.p_path or None
    return str(url.split(b"?", 1)[0].decode("latin-1"))


def _int_ms(v: _Values) -> object | None:
    ms = v.ex.int_ms
    return round(ms) if ms >= 0.0 else None


def _up_status(v: _Values) -> object | None:
    return v.ex.up_status if v.ex.t_int else None


# The variables that are not in ``_EXPR`` (below), read through ``_Values``.
_GETTERS: dict[str, Callable[[_Values], object | None]] = {
    "domainName": lambda v: _host(v.ex),
    "domainPrefix": lambda v: (_host(v.ex) or "").split(".", 1)[0] or None,
    "path": _path,
    "integrationLatency": _int_ms,
    "integration.latency": _int_ms,
    "integrationStatus": _up_status,
    "integration.status": _up_status,
    "integration.integrationStatus": _up_status,
    "identity.userAgent": lambda v: _header(v.ex, "user-agent"),
    "identity.apiKeyId": lambda v: v.ex.p_key_id,
    "identity.apiKey": lambda v: v.ex.p_api_key.decode("latin-1") if v.ex.p_api_key else None,
}


# PERF: the common variables as expressions over the exchange, compiled into one function per
# format (no per-variable calls); the others go through their getter and ``_text``; those that
# depend only on the route are in ``_ROUTE_CONST`` (folded per route).
_EXPR: dict[str, str] = {
    "requestId": "rid",
    "extendedRequestId": "rid",
    "httpMethod": "ex.method",
    "protocol": "('HTTP/1.0' if ex.http10 else 'HTTP/1.1')",
    "requestTime": "(_CLF[1] if int(t) == _CLF[0] else _clf_time(t))",
    "requestTimeEpoch": "int(t * 1000)",
    "status": "status",
    "responseLength": "(ex.resp_len if ex.resp_len >= 0 else '-')",
    "responseLatency": "round((now - ex.t0) * 1000.0)",
    "identity.sourceIp": "(ex.proto.peer or '-')",
}
# APPSEC(fastgw): none of these can hold a CR or LF (ids made by the worker, the parser's method
# token, numbers, the clock, the peer's IP address), so a line made of them and the route's
# folded text (escaped when folded) needs no per-request check for line breaks.


# Variables whose value depends only on the route: folded into a per-route format string.
_ROUTE_CONST: dict[str, Callable[[Any], str]] = {
    "apiId": lambda route: str(route.api.id),
    "stage": lambda route: str(route.stage.name),
    "resourcePath": lambda route: str(route.template or route.key),
    "routeKey": lambda route: str(route.key),
    "resourceId": lambda route: str(route.key),
}
#: Routes whose format a renderer caches before it starts over (reloads make new routes).
_MAX_ROUTE_FORMATS = 4096


def _compile_render(
    fmt: AccessLogFormat, clock: Callable[[], float] = time.time
) -> Callable[[Any, Any, int, float], str]:
    """``fmt`` as one generated function of (exchange, route, status, now); ``clock`` is the
    wall clock it reads (``AccessLine.clock``'s, the bytes renderer's; a test may freeze it).

    PERF: what is the same for every request of a route (its API id, stage, resource path, route
    key, and the variables nothing here knows, printed ``-``) is written into a format string
    made once per route, so the per-request ``%`` fills only what changes."""
    from fastgw.telemetry.accesslog import _quote, _text

    quoted = set(getattr(fmt, "_quoted", ()))
    literals = fmt._literals
    getters: list[Callable[[_Values], object | None]] = []
    parts: list[str] = []
    # Per slot: None (filled per request) or a function of the route giving its folded text.
    folded: list[Callable[[Any], str] | None] = []
    needs_rid = needs_values = needs_time = False
    for i, name in enumerate(fmt.slots):
        const = _ROUTE_CONST.get(name)
        if const is not None:
            folded.append((lambda f: lambda route: _quote(f(route)))(const) if i in quoted else const)
            continue
        if name not in _GETTERS and name not in _EXPR:
            folded.append(lambda route: "-")  # nothing here knows it: AWS prints '-'
            continue
        folded.append(None)
        expr = _EXPR.get(name)
        if expr is not None:
            needs_rid = needs_rid or "rid" in expr
            needs_time = needs_time or name in ("requestTime", "requestTimeEpoch")
            parts.append(expr if i not in quoted else f"_quote_or_dash({expr})")
        else:
            needs_values = True
            getters.append(_GETTERS[name])
            j = len(getters) - 1
            conv = "_quote_or_dash" if i in quoted else "_text_of"
            parts.append(f"{conv}(_g[{j}](v))")

    def route_format(route: Any) -> str:
        out = [literals[0].replace("%", "%%")]
        for f, lit in zip(folded, literals[1:], strict=True):
            out.append("%s" if f is None else _one_line(f(route)).replace("%", "%%"))
            out.append(lit.replace("%", "%%"))
        text = "".join(out)
        if len(formats) >= _MAX_ROUTE_FORMATS:
            formats.clear()
        formats[route] = text
        return text

    formats: dict[Any, str] = {}
    lines = ["def render(ex, route, status, now):"]
    lines.append("    fmt = _RF.get(route)")
    lines.append("    if fmt is None:")
    lines.append("        fmt = _route_format(route)")
    if needs_rid:
        lines.append("    rid = ex.request_id.decode()")
    if needs_time:
        # The bytes renderer's arithmetic (its start plus the clocks' offset), not the same sum
        # in another order: float rounding would put a few lines a millisecond apart.
        lines.append("    t = ex.t0 + (_time() - now)")
    if needs_values:
        lines.append("    v = _Values(ex, route, status, now)")
    tuple_src = "(" + "".join(p + ", " for p in parts) + ")"
    lines.append(f"    line = fmt % {tuple_src}")
    if needs_values:  # PERF(fastgw): only getters' values may hold CR or LF (_EXPR)
        lines.append("    if '\\n' in line or '\\r' in line:")
        lines.append("        line = _one_line(line)")
    lines.append("    return line")

    def text_of(value: object) -> str:
        return value if type(value) is str and value else _text(value)

    def quote_or_dash(value: object) -> str:
        text = text_of(value)
        return text if text == "-" else _quote(text)

    env: dict[str, Any] = {
        "_RF": formats,
        "_route_format": route_format,
        "_g": tuple(getters),
        "_Values": _Values,
        "_clf_time": _clf_time,
        "_CLF": _CLF_CACHE,
        "_one_line": _one_line,
        "_time": clock,
        "_text_of": text_of,
        "_quote_or_dash": quote_or_dash,
    }
    exec("\n".join(lines), env)
    return env["render"]  # type: ignore[no-any-return]


def _slots(fmt: AccessLogFormat) -> list[tuple[int, Any]]:
    """What each variable of ``fmt`` is for the bytes renderer (``_impl.AccessLine``): folded
    per route, an operation on the exchange, or a getter (with the ``_compile_render`` rules)."""
    from fastgw.telemetry.accesslog import _quote

    quoted = set(getattr(fmt, "_quoted", ()))
    slots: list[tuple[int, Any]] = []
    for i, name in enumerate(fmt.slots):
        const = _ROUTE_CONST.get(name)
        if const is not None:
            slots.append(
                (
                    _impl.SLOT_CONST,
                    (lambda f: lambda route: _quote(f(route)))(const) if i in quoted else const,
                )
            )
        elif name not in _GETTERS and name not in _EXPR:
            slots.append((_impl.SLOT_CONST, lambda route: "-"))  # nothing here knows it: AWS prints '-'
        elif name in _GETTERS:
            slots.append((_impl.SLOT_GET, (_GETTERS[name], i in quoted)))
        else:
            # Only error.messageString is quoted, and it has no expression.
            assert i not in quoted, name
            slots.append((_impl.SLOT_OP, _impl.OPS[name]))
    return slots


class StageAccessLog(_impl.AccessLine):  # type: ignore[misc, name-defined]
    """A stage's compiled format and its destination: ``emit`` renders a finished exchange's line
    to bytes into a ``LoopWriter``'s queue, or as str (the generated ``render``) for a thread
    writer."""

    __slots__ = ()

    def __init__(self, fmt: AccessLogFormat, destination: str | None) -> None:
        super().__init__(fmt, destination, _slots(fmt), _compile_render(fmt), _Values, writer_for)

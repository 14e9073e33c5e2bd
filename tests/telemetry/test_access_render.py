"""Stage access logs rendered to bytes (fastgw.telemetry._access_py, compiled as _access_c): the
same text as the str renderer (``access._compile_render``, the thread writer's), encoded, for every
format; the event loop's bytes queue (``LoopWriter``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from fastgw.telemetry import access
from fastgw.telemetry.accesslog import PRESETS, Kind, compile_format
from tests.telemetry.conftest import Route, twin

BUILDS = ["fastgw.telemetry._access_py", "fastgw.telemetry._access_c"]


@pytest.fixture(params=BUILDS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param.endswith("_c") and not access.COMPILED:
        pytest.skip("compiled build not selected (FASTGW_NO_EXTENSIONS)")
    return twin(request)


def make_route(key: str = "GET /pets/{petId}", template: str = "/pets/{petId}") -> Any:
    return Route(
        key=key,
        template=template,
        api=SimpleNamespace(id="a1b2c3"),
        stage=SimpleNamespace(name="prod"),
    )


def make_exchange(**over: Any) -> Any:
    proto = SimpleNamespace(
        peer="203.0.113.7", fwd=[b"User-Agent: curl/8.5\r\n"], host=b"api.example.com:8443"
    )
    ex = SimpleNamespace(
        request_id=b"c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        method="GET",
        http10=False,
        t0=time.monotonic() - 0.0125,
        resp_len=512,
        int_ms=3.5,
        t_int=1.0,
        up_status=200,
        proto=proto,
        p_fwd=None,
        p_host=None,
        p_api_key=None,
        p_key_id=None,
        url=b"/pets/7?x=1",
        p_path=None,
    )
    for name, value in over.items():
        setattr(ex, name, value)
    return ex


ALL_REST = (
    " ".join(
        f"{name}=$context.{name}"
        for name in (
            "requestId",
            "extendedRequestId",
            "apiId",
            "stage",
            "resourcePath",
            "resourceId",
            "httpMethod",
            "protocol",
            "requestTime",
            "requestTimeEpoch",
            "status",
            "responseLength",
            "responseLatency",
            "identity.sourceIp",
            "domainName",
            "domainPrefix",
            "path",
            "integrationLatency",
            "integration.latency",
            "integrationStatus",
            "integration.status",
            "identity.userAgent",
            "identity.apiKeyId",
            "identity.apiKey",
            "identity.caller",
            "authorizer.principalId",
        )
    )
    + " error=$context.error.messageString 100% %s %% {} é ✓"
)

FORMATS: list[tuple[str, Kind]] = [(name, kind) for name in PRESETS for kind in ("rest", "http")] + [
    (ALL_REST, "rest"),
    ('{"id":"$context.requestId","route":"$context.routeKey","ua":"$context.identity.userAgent"}', "http"),
    ("$context.requestId", "rest"),
    ("$context.status $context.requestId", "http"),
]

EXCHANGES: list[dict[str, Any]] = [
    {},
    {"http10": True, "resp_len": -1, "int_ms": -1.0, "t_int": 0.0, "method": "PROPFIND"},
    {"resp_len": 123456, "proto": SimpleNamespace(peer="", fwd=[], host=b"")},
    {
        "p_fwd": [b"user-agent: evil\r\n"],
        "p_host": b"x.example.org",
        "p_api_key": b"key\xe9",
        "p_key_id": "kid-1",
        "url": None,
        "p_path": "/a\nb",
    },
]


def bytes_line(
    impl: ModuleType,
    fmt_text: str,
    kind: Kind,
    ex: Any,
    route: Any,
    status: int,
    now: float,
    clock: Callable[[], float] = time.time,
) -> bytes:
    fmt = compile_format(fmt_text, kind)
    line = impl.AccessLine(
        fmt, None, access._slots(fmt), access._compile_render(fmt), access._Values, access.writer_for
    )
    line.clock = clock
    buf = bytearray(b"queued\n")
    line.render_into(buf, ex, route, status, now)
    line.render_into(buf, ex, route, status, now)  # the route's program, cached
    assert buf.startswith(b"queued\n")
    first, second = bytes(buf[7:]).split(b"\n")[:2]
    assert bytes(buf).endswith(b"\n")
    return first if first == second else b"<time moved>"


def str_render(fmt_text: str, kind: Kind, wall: float) -> Any:
    """The str renderer of ``fmt_text`` with the wall clock frozen at ``wall``."""
    return access._compile_render(compile_format(fmt_text, kind), clock=lambda: wall)


@pytest.mark.parametrize("fmt_text, kind", FORMATS)
@pytest.mark.parametrize("over", range(len(EXCHANGES)))
def test_bytes_are_the_str_renderers_line_encoded(
    impl: ModuleType, fmt_text: str, kind: Kind, over: int
) -> None:
    # Both renderers read one frozen wall clock (requestTime, requestTimeEpoch): a clock read
    # twice can move between the reads (a fresh-clone run failed five retries that way).
    wall = time.time()
    ex = make_exchange(**EXCHANGES[over])
    route = make_route()
    now = time.monotonic()
    text = str_render(fmt_text, kind, wall)(ex, route, 200, now)
    got = bytes_line(impl, fmt_text, kind, ex, route, 200, now, clock=lambda: wall)
    assert got == text.encode("utf-8", "replace")
    assert b"\n" not in got and b"\r" not in got


# (wall clock, loop clock, request start) where ``T - (now - t0)`` and ``t0 + (T - now)`` truncate
# to different milliseconds: float rounding, not the clocks.
ROUNDING_CASES = [
    (1790899393.311653, 622452.060898, 622452.029245),
    (1790924427.268957, 485649.2876, 485649.202643),
    (1790963023.212664, 563602.441697, 563602.412033),
    (1790518848.983087, 685882.476313, 685882.469226),
]


@pytest.mark.parametrize("wall, now, t0", ROUNDING_CASES)
def test_the_renderers_add_the_clocks_in_one_order(
    impl: ModuleType, wall: float, now: float, t0: float
) -> None:
    """The request's wall-clock start is its start plus the clocks' offset, in both renderers:
    the same sum in another order truncates to another millisecond for these readings."""
    fmt_text = "$context.requestTimeEpoch $context.requestTime $context.requestId"
    ex, route = make_exchange(t0=t0), make_route()
    text = str_render(fmt_text, "rest", wall)(ex, route, 200, now)
    assert text.split()[0] == str(int((t0 + (wall - now)) * 1000))
    assert bytes_line(impl, fmt_text, "rest", ex, route, 200, now, clock=lambda: wall) == text.encode()


def test_route_constants_are_folded_escaped(impl: ModuleType) -> None:
    route = make_route(key="GET /a\r\nb", template="")
    got = bytes_line(
        impl, "$context.requestId $context.resourcePath", "rest", make_exchange(), route, 200, 0.0
    )
    assert got == b"c6af9ac6-7b61-11e6-9a41-93e8deadbeef GET /a\\r\\nb"


def test_loop_writer_queues_bytes_and_drops_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "access.log"
    writer = access.LoopWriter(str(path))
    log = access.StageAccessLog(compile_format("$context.requestId $context.status", "rest"), str(path))
    monkeypatch.setitem(access._WRITERS, str(path), writer)
    ex, route = make_exchange(), make_route()
    log.emit(ex, route, 200, 0.0)
    writer.write("ws é")  # the WebSocket stages' str lines share the queue
    assert log.buf is writer.buf
    assert writer.queued == len(writer.buf) > 0
    writer.flush()
    assert writer.queued == 0
    assert path.read_bytes() == b"c6af9ac6-7b61-11e6-9a41-93e8deadbeef 200\nws \xc3\xa9\n"
    writer.buf += b"x" * (access._impl.MAX_QUEUED + 1)
    log.emit(ex, route, 200, 0.0)
    writer.write("dropped too")
    assert writer.dropped == 2
    writer.close()


def test_loop_writer_keeps_every_line_across_flushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue is emptied by each flush (and, compiled, keeps its allocation for the next
    lines): rounds of lines of growing and shrinking sizes reach the file whole and in order."""
    path = tmp_path / "access.log"
    writer = access.LoopWriter(str(path))
    log = access.StageAccessLog(compile_format("$context.requestId $context.status", "rest"), str(path))
    monkeypatch.setitem(access._WRITERS, str(path), writer)
    route = make_route()
    expected = []
    n = 0
    for lines in (3000, 10, 1, 5000, 0, 200):
        for _ in range(lines):
            rid = b"r%d-" % n + b"x" * (n % 97)
            log.emit(make_exchange(request_id=rid), route, 200 + n % 300, 0.0)
            expected.append(b"%s %d\n" % (rid, 200 + n % 300))
            n += 1
        writer.flush()
        assert writer.queued == 0 and len(writer.buf) == 0
    writer.close()
    assert path.read_bytes() == b"".join(expected)

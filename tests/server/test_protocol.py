"""HTTP/1.1 protocol behaviour of the gateway, seen from the client's socket.

Each test runs against a real gateway process, once per kernel build (compiled and pure
Python), with the real echo backend and a scripted upstream behind it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EchoServer,
    Gateway,
    GatewayFactory,
    RawConn,
    ScriptedUpstream,
    build_request,
    chunked,
    echo_header_values,
    echo_headers,
    get,
    pattern_bytes,
    raw_exchange,
)

MAX_BODY = 1024
MAX_HEADER_BYTES = 2048
MAX_HEADERS = 20
MAX_URL = 512
HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.5
BODY_TIMEOUT = 1.0
HELLO = b'{"message":"hello"}'


def protocol_config(echo_port: int, up_port: int) -> dict[str, Any]:
    return {
        "gateway": {
            "limits": {
                "max_body_bytes": MAX_BODY,
                "max_header_bytes": MAX_HEADER_BYTES,
                "max_headers": MAX_HEADERS,
                "max_url_bytes": MAX_URL,
                "header_timeout": HEADER_TIMEOUT,
                "keepalive_timeout": KEEPALIVE_TIMEOUT,
                "body_timeout": BODY_TIMEOUT,
                "drain_timeout": 2.0,
            },
            "upstream": {"connect_timeout": 2.0},
        },
        "apis": [
            {
                "name": "main",
                "id": "mainapi",
                "kind": "rest",
                "routes": [
                    {
                        "route": "GET /hello",
                        "integration": {
                            "type": "MOCK",
                            "status": 200,
                            "headers": {"content-type": "application/json"},
                            "body": HELLO.decode(),
                        },
                    },
                    {
                        "route": "ANY /mock",
                        "integration": {"type": "MOCK", "status": 200, "body": "mock body"},
                    },
                    {
                        "route": "ANY /echo/{proxy+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{echo_port}/{{proxy}}",
                            "timeout_ms": 5000,
                        },
                    },
                    {
                        "route": "ANY /up/{proxy+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{up_port}/{{proxy}}",
                            "timeout_ms": 5000,
                        },
                    },
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }


@pytest.fixture(scope="module")
def gw(
    kernel_build: str,
    module_gateway_factory: GatewayFactory,
    echo_server: EchoServer,
    scripted: ScriptedUpstream,
) -> Iterator[Gateway]:
    gateway = module_gateway_factory(
        protocol_config(echo_server.port, scripted.port), workers=1, no_extensions=kernel_build == "python"
    )
    yield gateway
    gateway.stop()


def assert_error(resp: Any, status: int) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("content-type") == "application/json"
    assert resp.json()["message"]
    assert resp.header("x-amzn-RequestId")


# ---------------------------------------------------------------- keep-alive, pipelining
def test_keep_alive_several_requests(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        for i in range(6):
            if i % 2:
                r = c.request("GET", f"/prod/echo/ka{i}")
                assert r.status == 200
                assert r.json()["path"] == f"/ka{i}"
            else:
                r = c.request("GET", "/prod/hello")
                assert r.status == 200
                assert r.body == HELLO
            assert r.header("connection") is None
        assert not c.is_closed(0.2)


def test_pipelining_responses_in_order(gw: Gateway, scripted: ScriptedUpstream) -> None:
    data = (
        build_request("GET", "/prod/up/slow?ms=200")
        + build_request("GET", "/prod/hello")
        + build_request("POST", "/prod/echo/p3", body=b"third")
        + build_request("GET", "/prod/up/status?code=201")
    )
    with RawConn(gw.port) as c:
        c.send(data)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
        assert (r1.status, r1.body) == (200, b"slow done")
        assert (r2.status, r2.body) == (200, HELLO)
        assert r3.status == 200
        assert r3.json()["path"] == "/p3"
        assert r3.json()["body"] == "third"
        assert (r4.status, r4.body) == (201, b"status 201")
        assert not c.is_closed(0.2)
        # still usable afterwards
        assert c.request("GET", "/prod/hello").body == HELLO


# ---------------------------------------------------------------- HTTP/1.0
@pytest.mark.parametrize("target", ["/prod/hello", "/prod/echo/ten"])
def test_http10_closes_by_default(gw: Gateway, target: str) -> None:
    resp, closed = raw_exchange(gw.port, build_request("GET", target, host=None, version="HTTP/1.0"))
    assert resp.status == 200
    assert resp.version in ("HTTP/1.1", "HTTP/1.0")
    assert closed


@pytest.mark.parametrize("target", ["/prod/hello", "/prod/echo/ten"])
def test_http10_keep_alive_honoured(gw: Gateway, target: str) -> None:
    with RawConn(gw.port) as c:
        for _ in range(2):
            c.send(build_request("GET", target, [("Connection", "keep-alive")], version="HTTP/1.0"))
            r = c.read_response()
            assert r.status == 200
            assert (r.header("connection") or "").lower() == "keep-alive"
            assert r.header("content-length") is not None
        assert not c.is_closed(0.2)


# ---------------------------------------------------------------- HEAD
def test_head_mock(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        r = c.request("HEAD", "/prod/mock")
        assert r.status == 200
        assert r.header("content-length") == str(len(b"mock body"))
        assert r.body == b""
        # no stray body bytes: the next response parses cleanly
        r2 = c.request("GET", "/prod/mock")
        assert (r2.status, r2.body) == (200, b"mock body")
        assert not c.is_closed(0.1)


def test_head_proxied(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        r = c.request("HEAD", "/prod/echo/head")
        assert r.status == 200
        assert r.body == b""
        r2 = c.request("GET", "/prod/hello")
        assert (r2.status, r2.body) == (200, HELLO)
        r3 = c.request("GET", "/prod/echo/after-head")
        assert r3.json()["path"] == "/after-head"
        assert not c.is_closed(0.1)


# ---------------------------------------------------------------- bodies
def test_chunked_request_body_proxied(gw: Gateway) -> None:
    body = chunked(b"hello ", b"chunked ", b"world")
    data = build_request("POST", "/prod/echo/chunked-in", [("Transfer-Encoding", "chunked")]) + body
    with RawConn(gw.port) as c:
        c.send(data)
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body"] == "hello chunked world"
        assert r.json()["method"] == "POST"
        assert not c.is_closed(0.1)


def test_chunked_request_body_sent_in_pieces(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        c.send(build_request("PUT", "/prod/echo/pieces", [("Transfer-Encoding", "chunked")]))
        for piece in (b"a" * 10, b"b" * 20, b"c" * 30):
            time.sleep(0.05)
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body"] == "a" * 10 + "b" * 20 + "c" * 30


def test_content_length_body_in_pieces_then_pipelined_request(gw: Gateway) -> None:
    """A Content-Length body split across reads, whose last piece shares a read with the next
    request: the body arrives byte-exact and the next request is parsed and answered in turn."""
    body = pattern_bytes(MAX_BODY)
    head = build_request("POST", "/prod/echo/pieces", [("Content-Length", str(len(body)))])
    tail = MAX_BODY - 100
    with RawConn(gw.port) as c:
        c.send(head + body[:100])
        time.sleep(0.05)
        c.send(body[100:300])
        time.sleep(0.05)
        for i in range(300, tail, 70):
            c.send(body[i : min(i + 70, tail)])
            time.sleep(0.002)
        time.sleep(0.05)
        c.send(body[tail:] + build_request("POST", "/prod/echo/next", body=b"second") + b"GET /prod/hello")
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        got = base64.b64decode(doc["body"]) if doc.get("isBase64Encoded") else doc["body"].encode("latin-1")
        assert got == body
        r2 = c.read_response()
        assert r2.status == 200
        assert r2.json()["path"] == "/next" and r2.json()["body"] == "second"
        c.send(b" HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        assert c.read_response().status == 200
        # Then a body that begins in its own read, right after its head alone.
        c.send(build_request("PUT", "/prod/echo/third", [("Content-Length", "6")]))
        time.sleep(0.05)
        c.send(b"abc")
        time.sleep(0.05)
        c.send(b"def")
        r3 = c.read_response()
        assert r3.json()["body"] == "abcdef"
        assert not c.is_closed(0.1)


def test_chunked_upstream_response_relayed(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/up/chunked")
        assert r.status == 200
        assert (r.header("transfer-encoding") or "").lower() == "chunked"
        assert r.body == b"first,second,third"
        assert r.complete
        assert c.request("GET", "/prod/hello").body == HELLO


def test_expect_100_continue(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        c.send(
            build_request("POST", "/prod/echo/expect", [("Expect", "100-continue"), ("Content-Length", "5")])
        )
        interim = c.read_response(stop_at_interim=True)
        assert interim.status == 100
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body"] == "hello"
        assert not [h for h in echo_headers(r) if h[0].lower() == "expect"]


def test_body_too_large_content_length(gw: Gateway, scripted: ScriptedUpstream) -> None:
    data = build_request("POST", "/prod/up/too-large-cl", [("Content-Length", str(MAX_BODY + 1))])
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 413)
    assert closed
    time.sleep(0.1)
    assert scripted.requests_for("too-large-cl") == []


def test_body_too_large_chunked(gw: Gateway, scripted: ScriptedUpstream) -> None:
    body = chunked(b"x" * 600, b"y" * 600, b"z" * 600)
    data = build_request("POST", "/prod/up/too-large-chunked", [("Transfer-Encoding", "chunked")]) + body
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 413)
    assert closed
    time.sleep(0.1)
    assert [r for r in scripted.requests_for("too-large-chunked") if r.complete] == []


# ---------------------------------------------------------------- head limits
def test_header_section_too_large(gw: Gateway) -> None:
    data = build_request("GET", "/prod/hello", [("X-Big", "a" * (MAX_HEADER_BYTES + 100))])
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 431)
    assert closed


def test_endless_header_line_sent_slowly(gw: Gateway) -> None:
    with RawConn(gw.port) as c:
        start = b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX-Endless: "
        c.send(start)
        # one line that never ends, in pieces, until just past the limit (then stop sending)
        sent = len(start)
        while sent <= MAX_HEADER_BYTES:
            time.sleep(0.02)
            c.send(b"b" * 500)
            sent += 500
        r = c.read_response()
        assert_error(r, 431)
        assert c.is_closed(1.0)


def test_too_many_headers(gw: Gateway) -> None:
    headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS + 5)]
    resp, closed = raw_exchange(gw.port, build_request("GET", "/prod/hello", headers))
    assert_error(resp, 431)
    assert closed


def test_url_too_long(gw: Gateway) -> None:
    resp, closed = raw_exchange(gw.port, build_request("GET", "/prod/echo/" + "a" * MAX_URL))
    assert_error(resp, 414)
    assert closed


# ---------------------------------------------------------------- framing
def test_content_length_with_transfer_encoding(gw: Gateway, scripted: ScriptedUpstream) -> None:
    data = build_request(
        "POST",
        "/prod/up/cl-te",
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
    ) + chunked(b"hello")
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 400)
    assert closed
    time.sleep(0.1)
    assert scripted.requests_for("cl-te") == []


def test_two_differing_content_lengths(gw: Gateway, scripted: ScriptedUpstream) -> None:
    data = (
        build_request("POST", "/prod/up/two-cl", [("Content-Length", "5"), ("Content-Length", "6")])
        + b"hello!"
    )
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 400)
    assert closed
    time.sleep(0.1)
    assert scripted.requests_for("two-cl") == []


def test_bad_chunk_size(gw: Gateway, scripted: ScriptedUpstream) -> None:
    data = (
        build_request("POST", "/prod/up/bad-chunk", [("Transfer-Encoding", "chunked")])
        + b"zz\r\nhello\r\n0\r\n\r\n"
    )
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 400)
    assert closed
    time.sleep(0.1)
    assert [r for r in scripted.requests_for("bad-chunk") if r.complete] == []


def test_missing_host_http11(gw: Gateway) -> None:
    resp, closed = raw_exchange(gw.port, build_request("GET", "/prod/hello", host=None))
    assert_error(resp, 400)
    assert closed


def test_duplicate_host(gw: Gateway, echo_server: EchoServer) -> None:
    data = build_request("GET", "/prod/echo/dup-host", [("Host", "other.test")])
    resp, closed = raw_exchange(gw.port, data)
    assert_error(resp, 400)
    assert closed
    assert not echo_server.saw("dup-host")


GARBAGE = {
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    "binary": bytes(range(256)),
    "nul-in-header": b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "obs-fold": b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
    "bare-cr": b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
    "bad-version": b"GET /prod/hello HTTP/9.9\r\nHost: a\r\n\r\n",
    "space-in-name": b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
    "raw-space-in-path": b"GET /prod/he llo HTTP/1.1\r\nHost: a\r\n\r\n",
    "non-ascii-path": b"GET /prod/h\xc3\xa9llo HTTP/1.1\r\nHost: a\r\n\r\n",
    "nul-escape-path": b"GET /prod/echo/a%00b HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_gets_400_and_close(gw: Gateway, echo_server: EchoServer, name: str) -> None:
    resp, closed = raw_exchange(gw.port, GARBAGE[name])
    assert_error(resp, 400)
    assert closed
    assert "Traceback" not in gw.stderr_text()


# ---------------------------------------------------------------- deadlines
def test_slowloris_header_timeout(gw: Gateway) -> None:
    with RawConn(gw.port, timeout=5.0) as c:
        t0 = time.monotonic()
        c.send(b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        time.sleep(0.3)
        c.send(b"still")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert_error(r, 408)
        assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 1.5
        assert c.is_closed(1.0)


def test_stalled_request_body_times_out(gw: Gateway, echo_server: EchoServer) -> None:
    with RawConn(gw.port, timeout=5.0) as c:
        t0 = time.monotonic()
        c.send(build_request("POST", "/prod/echo/stalled-body", [("Content-Length", "10")]) + b"12345")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert_error(r, 408)
        assert BODY_TIMEOUT - 0.2 <= elapsed <= BODY_TIMEOUT + 1.5
        assert c.is_closed(1.0)
    assert not echo_server.saw("stalled-body")


def test_trickled_request_body_is_cut_by_the_minimum_rate(gw: Gateway, echo_server: EchoServer) -> None:
    # One byte every 0.3 s never trips the idle body_timeout (1 s), but averages far below
    # limits.min_body_rate (default 1024 B/s) once body_timeout has passed: 408 and close.
    with RawConn(gw.port, timeout=5.0) as c:
        t0 = time.monotonic()
        c.send(build_request("POST", "/prod/echo/trickle-body", [("Content-Length", "100")]))
        closed = False
        for _ in range(15):
            time.sleep(0.3)
            try:
                c.send(b"x")
            except OSError:
                closed = True
                break
            if time.monotonic() - t0 > BODY_TIMEOUT + 1.0:
                break
        r = c.read_response()
        assert_error(r, 408)
        assert time.monotonic() - t0 <= BODY_TIMEOUT + 2.0
        assert closed or c.is_closed(1.0)
    assert not echo_server.saw("trickle-body")


def test_pipelined_bad_request_answered_in_turn(gw: Gateway) -> None:
    bad = b"GET /prod/hello HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"
    with RawConn(gw.port) as c:
        c.send(build_request("GET", "/prod/up/slow?ms=200") + bad)
        r1 = c.read_response()
        assert (r1.status, r1.body) == (200, b"slow done")
        r2 = c.read_response()
        assert_error(r2, 400)
        assert c.is_closed(1.0)


@pytest.mark.parametrize("first", ["GET /prod/hello", "GET /prod/up/status?code=202", "POST /prod/echo/c"])
def test_nothing_after_connection_close_is_served(
    gw: Gateway, scripted: ScriptedUpstream, first: str
) -> None:
    method, target = first.split(" ")
    # Warm the pool towards the scripted upstream, so that a wrongly started exchange would
    # reach it at once.
    assert get(gw.port, "/prod/up/status?code=298").status == 298
    after = build_request("GET", "/prod/up/status?code=299")
    data = build_request(method, target, [("Connection", "close")], body=b"x" if method == "POST" else b"")
    before = len(scripted.requests_for("code=299"))
    with RawConn(gw.port) as c:
        c.send(data + after + after)
        resp = c.read_response(method)
        assert resp.status in (200, 202)
        assert resp.header("connection") == "close"
        assert c.is_closed(1.0)
    time.sleep(0.2)
    # the requests pipelined after the closing one were neither answered nor forwarded
    assert len(scripted.requests_for("code=299")) == before


@pytest.mark.parametrize("te", ["identity, chunked", "gzip, chunked", "chunked, identity", "xchunked"])
def test_unsupported_transfer_coding_refused(gw: Gateway, scripted: ScriptedUpstream, te: str) -> None:
    tag = "te-" + te.replace(",", "").replace(" ", "-")
    data = build_request("POST", f"/prod/up/{tag}", [("Transfer-Encoding", te)]) + chunked(b"hello")
    resp, closed = raw_exchange(gw.port, data)
    assert resp.status in (400, 501), (resp.status, resp.body)
    assert resp.header("x-amzn-RequestId")
    assert closed
    time.sleep(0.1)
    assert scripted.requests_for(tag) == []


def test_http10_client_gets_close_delimited_body_for_chunked_upstream(gw: Gateway) -> None:
    resp, closed = raw_exchange(gw.port, build_request("GET", "/prod/up/chunked", version="HTTP/1.0"))
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.body == b"first,second,third"
    assert closed


def test_idle_keep_alive_closed(gw: Gateway) -> None:
    with RawConn(gw.port, timeout=5.0) as c:
        assert c.request("GET", "/prod/hello").status == 200
        t0 = time.monotonic()
        assert not c.is_closed(0.5)  # not closed early
        assert c.is_closed(KEEPALIVE_TIMEOUT + 1.5)
        assert time.monotonic() - t0 >= KEEPALIVE_TIMEOUT - 0.3
        assert c.buf == b""  # closed quietly, no 408 for an idle connection


def test_other_clients_served_while_one_misbehaves(gw: Gateway) -> None:
    with RawConn(gw.port) as slow_head, RawConn(gw.port) as slow_body:
        slow_head.send(b"GET /prod/hello HTTP/1.1\r\nHost: a\r\n")
        slow_body.send(
            build_request("POST", "/prod/echo/slow-body", [("Content-Length", "100")]) + b"0123456789"
        )
        t0 = time.monotonic()
        for target in ("/prod/hello", "/prod/echo/meanwhile"):
            r = get(gw.port, target)
            assert r.status == 200
        assert time.monotonic() - t0 < 1.0


# ---------------------------------------------------------------- headers
def test_request_ids_present_and_unique(gw: Gateway) -> None:
    ids = []
    with RawConn(gw.port) as c:
        for target in ("/prod/hello", "/prod/echo/rid", "/prod/nothing-here", "/prod/up/status?code=404"):
            r = c.request("GET", target)
            ids.append(r.header("x-amzn-RequestId"))
    resp, _ = raw_exchange(gw.port, build_request("GET", "/prod/hello", host=None))
    assert resp.status == 400
    ids.append(resp.header("x-amzn-RequestId"))
    resp, _ = raw_exchange(gw.port, build_request("POST", "/prod/hello", [("Content-Length", "99999")]))
    assert resp.status == 413
    ids.append(resp.header("x-amzn-RequestId"))
    assert all(ids), ids
    assert len(set(ids)) == len(ids), ids


def test_hop_by_hop_request_headers_not_forwarded(gw: Gateway) -> None:
    headers = [
        ("Connection", "keep-alive, X-Private-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Private-Hop", "secret"),
        ("X-End-To-End", "kept"),
    ]
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/echo/hop", headers)
        assert r.status == 200
        names = {k.lower() for k, _ in echo_headers(r)}
        for hop in ("connection", "keep-alive", "te", "upgrade", "proxy-connection", "x-private-hop"):
            assert hop not in names, (hop, echo_headers(r))
        assert echo_header_values(r, "x-end-to-end") == ["kept"]


def test_upgrade_request_served_as_plain_http(gw: Gateway) -> None:
    """A stage that is not a WebSocket API's ignores Upgrade (RFC 9110 7.8): a plain request,
    hop-by-hop headers dropped, and the connection stays a keep-alive HTTP connection."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZQ==")]
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/echo/upgrade", headers)
        assert r.status == 200
        names = {k.lower() for k, _ in echo_headers(r)}
        assert "upgrade" not in names
        assert "connection" not in names
        assert c.request("GET", "/prod/hello").body == HELLO


H2C = [
    ("Connection", "Upgrade, HTTP2-Settings"),
    ("Upgrade", "h2c"),
    ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
]


def test_h2c_upgrade_on_a_mock_route_keeps_the_connection(gw: Gateway) -> None:
    """An h2c upgrade is ignored; the next keep-alive request, sent after the answer or
    pipelined behind it, is answered at once (it used to wait for the keep-alive timeout)."""
    with RawConn(gw.port, timeout=3.0) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/prod/mock", H2C)
        assert r.status == 200 and r.body == b"mock body"
        assert r.header("connection") != "close"
        assert c.request("GET", "/prod/hello").body == HELLO
        c.send(build_request("GET", "/prod/mock", H2C) + build_request("GET", "/prod/hello"))
        assert c.read_response().body == b"mock body"
        assert c.read_response().body == HELLO
        assert time.monotonic() - t0 < 2.0
        assert not c.is_closed(0.2)


def test_upgrade_with_a_body_sends_the_body_upstream(gw: Gateway) -> None:
    """httptools skips the body of an upgrade request: the gateway reads it itself (Content-Length
    and chunked), the upstream gets it whole, and the connection stays usable."""
    with RawConn(gw.port, timeout=3.0) as c:
        r = c.request("POST", "/prod/echo/withbody", [*H2C, ("Content-Type", "text/plain")], b"hello")
        assert r.status == 200
        assert r.json()["body"] == "hello"
        assert echo_header_values(r, "content-length") == ["5"]
        # Chunked, in pieces, with a pipelined request behind it.
        head = build_request("POST", "/prod/echo/chunked", [*H2C, ("Transfer-Encoding", "chunked")])
        c.send(head + b"5\r\nhel")
        time.sleep(0.05)
        c.send(b"lo\r\n6\r\n world\r\n0\r\n\r\n" + build_request("GET", "/prod/hello"))
        r = c.read_response()
        assert r.status == 200 and r.json()["body"] == "hello world"
        assert c.read_response().body == HELLO
        # A body split across writes, after the head alone.
        c.send(build_request("POST", "/prod/echo/split", [*H2C, ("Content-Length", "10")]))
        time.sleep(0.05)
        c.send(b"01234")
        time.sleep(0.05)
        c.send(b"56789")
        r = c.read_response()
        assert r.status == 200 and r.json()["body"] == "0123456789"
        assert c.request("GET", "/prod/hello").body == HELLO


def test_many_pipelined_upgrade_requests_in_one_write(gw: Gateway) -> None:
    """Each ignored upgrade restarts the parser: many in one chunk are read in a loop (no
    recursion), and every one is answered in order."""
    n = 300
    with RawConn(gw.port, timeout=5.0) as c:
        c.send(
            b"".join(build_request("GET", "/prod/mock", H2C) for _ in range(n))
            + build_request("GET", "/prod/hello")
        )
        bodies = [c.read_response().body for _ in range(n + 1)]
    assert bodies == [b"mock body"] * n + [HELLO]


def test_forwarded_headers_from_socket(gw: Gateway) -> None:
    headers = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "443"),
    ]
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/echo/xff", headers, host="gw.example:8443")
        assert r.status == 200
        assert echo_header_values(r, "x-forwarded-for") == ["127.0.0.1"]
        assert echo_header_values(r, "x-forwarded-proto") == ["http"]
        assert echo_header_values(r, "x-forwarded-host") == ["gw.example:8443"]
        assert echo_header_values(r, "x-forwarded-port") in ([], [str(gw.port)])


# ---------------------------------------------------------------- paths
@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/prod/echo/x/../y", "/y"),
        ("/prod/echo/a/%2e%2e/b", "/b"),
        ("/prod/echo/a/./b", "/a/b"),
        ("//prod//echo//z", "/z"),
        ("/prod/echo/a%2fb", "/a%2Fb"),
        ("/prod/echo/%7euser", "/~user"),
    ],
)
def test_path_normalised_before_routing_and_forwarding(gw: Gateway, target: str, forwarded: str) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", target)
        assert r.status == 200
        assert r.json()["path"] == forwarded


@pytest.mark.parametrize(
    "target", ["/prod/echo/%2e%2e/%2e%2e/admin", "/prod/echo/../../admin", "/prod/../admin"]
)
def test_path_cannot_escape_stage(gw: Gateway, echo_server: EchoServer, target: str) -> None:
    with RawConn(gw.port) as c:
        r = c.request("GET", target)
        assert r.status == 403
        assert r.body == b'{"message":"Missing Authentication Token"}'
    assert not echo_server.saw("admin")


def test_query_and_repeated_headers_byte_exact(gw: Gateway) -> None:
    query = "b=2&a=1&a=%20x&empty=&flag&enc=%2F%3F%26&plus=a+b"
    headers = [("X-Multi", "one"), ("X-Case", "MiXeD Value"), ("X-Multi", "two, three"), ("x-multi", "four")]
    with RawConn(gw.port) as c:
        r = c.request("GET", "/prod/echo/q?" + query, headers)
        assert r.status == 200
        doc = r.json()
        assert doc["query"] == query
        assert echo_header_values(r, "x-multi") == ["one", "two, three", "four"]
        assert [k for k, _ in echo_headers(r) if k.lower() == "x-case"] == ["X-Case"]
        assert echo_header_values(r, "x-case") == ["MiXeD Value"]


def test_binary_body_byte_exact_both_ways(gw: Gateway) -> None:
    payload = bytes(range(256))
    with RawConn(gw.port) as c:
        r = c.request("POST", "/prod/echo/bin", [("Content-Type", "application/octet-stream")], body=payload)
        assert r.status == 200
        doc = r.json()
        assert doc["isBase64Encoded"] is True
        assert base64.b64decode(doc["body"]) == payload
        r2 = c.request("GET", "/prod/up/big?n=300001")
        assert r2.status == 200
        assert r2.header("content-length") == "300001"
        assert r2.body == pattern_bytes(300001)


def test_no_traceback_in_gateway_stderr(gw: Gateway) -> None:
    text = gw.stderr_text()
    assert "Traceback" not in text, text[-4000:]
    assert '"level": "error"' not in text and '"level":"error"' not in text, text[-4000:]


def test_gateway_runs_the_selected_kernel_build(gw: Gateway, kernel_build: str) -> None:
    workers = gw.children()
    assert workers
    maps = Path(f"/proc/{workers[0]}/maps").read_text()
    loaded = "_router_c" in maps and "_urlnorm_c" in maps
    assert loaded == (kernel_build == "compiled")

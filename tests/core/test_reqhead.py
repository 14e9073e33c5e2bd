"""fastgw_core.reqhead: the request-head fast path, on both builds and against httptools.

The fast path may only take what httptools (llhttp) accepts, and must read it the same way;
anything else it declines (None) and the general path decides.
"""

from collections.abc import Callable
from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw_core import reqhead

from .conftest import NO_EXTENSIONS

Parse = Callable[..., Any]
LIMITS = (10240, 100, 8192)


def parse(impl: Parse, data: bytes, start: int = 0) -> Any:
    return impl(data, start, *LIMITS)


def test_typical_request(reqhead_impl: Parse) -> None:
    data = (
        b"GET /prod/orders/1?x=1&y=%20 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent:  curl/8 \r\n"
        b"Accept: */*\r\nConnection: keep-alive\r\nCookie: a=1; b=2\r\n\r\n"
    )
    assert parse(reqhead_impl, data) == (
        len(data),
        "GET",
        b"/prod/orders/1?x=1&y=%20",
        False,
        True,
        b"api.example.com",
        b"User-Agent: curl/8 \r\nAccept: */*\r\nCookie: a=1; b=2\r\n",
        None,
    )


def test_pipelined_heads_are_taken_one_at_a_time(reqhead_impl: Parse) -> None:
    one = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    two = b"HEAD /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    r1 = parse(reqhead_impl, one + two)
    assert r1[:2] == (len(one), "GET")
    r2 = parse(reqhead_impl, one + two, r1[0])
    assert r2 == (len(one + two), "HEAD", b"/b", True, True, None, b"", None)


def test_api_key_is_reported_and_forwarded(reqhead_impl: Parse) -> None:
    data = b"GET /k HTTP/1.1\r\nHost: h\r\nX-Api-Key:  abc-123 \r\nAccept: */*\r\n\r\n"
    got = parse(reqhead_impl, data)
    assert got[6] == b"X-Api-Key: abc-123 \r\nAccept: */*\r\n"
    assert got[7] == b"abc-123 "  # trailing whitespace kept, as llhttp (the gate strips it)
    # A repeated key declines the fast path (the general path refuses the request).
    twice = b"GET /k HTTP/1.1\r\nHost: h\r\nx-api-key: a\r\nx-api-key: a\r\n\r\n"
    assert parse(reqhead_impl, twice) is None


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    ],
)
def test_keep_alive(reqhead_impl: Parse, data: bytes, keep_alive: bool) -> None:
    assert parse(reqhead_impl, data)[4] is keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\n",  # incomplete
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",  # a method with a body
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host on 1.1
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-hop\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://h/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /<x> HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    ],
)
def test_declines(reqhead_impl: Parse, data: bytes) -> None:
    assert parse(reqhead_impl, data) is None


def test_limits_decline(reqhead_impl: Parse) -> None:
    data = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"
    assert reqhead_impl(data, 0, len(data), 3, 101) is not None
    assert reqhead_impl(data, 0, len(data) - 1, 3, 101) is None  # head size
    assert reqhead_impl(data, 0, len(data), 3, 100) is None  # URL length
    assert reqhead_impl(data, 0, len(data), 2, 101) is None  # header count (Host counts)


# -- property tests ----------------------------------------------------------------------------

_names = (
    st.sampled_from(["Accept", "User-Agent", "X-Request-Id", "Cookie", "X-API-Key", "x-api-key"])
    | st.sampled_from(
        [
            "Host",
            "host",
            "Connection",
            "Content-Length",
            "X-A",
            "Accept",
            "Upgrade",
            "Expect",
            "TE",
            "x-forwarded-for",
        ]
    )
    | st.text(alphabet="abcXYZ-_!~", min_size=1, max_size=6)
)
_values = st.text(alphabet="abc xyz\t,=:;0closekeep-alive/", max_size=16) | st.sampled_from(
    ["0", "close", "keep-alive", " Keep-Alive ", "1", "chunked"]
)
_chars = st.sampled_from(list(b"\r\n \t:\x00\xffGEThx/%"))


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"POST", b"GET"]))
    target = draw(st.sampled_from([b"/", b"/prod/x?y=1", b"/a%2Fb", b"/a b", b"*", b"/~u/(1)"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"]))
    lines = [method + b" " + target + b" " + version]
    if draw(st.integers(0, 3)):
        lines.append(b"Host: " + draw(st.sampled_from([b"h", b"api.example.com:8080", b"", b"x "])))
    for name, value in draw(st.lists(st.tuples(_names, _values), max_size=6)):
        lines.append(name.encode() + b":" + value.encode())
    data = bytearray(b"\r\n".join(lines) + b"\r\n\r\n")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = bytes([draw(_chars)])
    return bytes(data)


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
@settings(max_examples=400, deadline=None)
@given(data=heads())
def test_compiled_agrees_with_python(data: bytes) -> None:
    assert reqhead.parse_request_head_c is not None
    assert reqhead.parse_request_head_c(data, 0, *LIMITS) == reqhead.parse_request_head_py(data, 0, *LIMITS)


class _Collect:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False
        self.keep_alive: bool | None = None
        self.parser: Any = None

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # as the gateway reads it

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.done = True


@settings(max_examples=400, deadline=None)
@given(data=heads())
def test_what_the_fast_path_takes_httptools_reads_the_same_way(data: bytes) -> None:
    got = reqhead.parse_request_head_py(data, 0, *LIMITS)
    if got is None:
        return
    end, method, url, http10, keep_alive, host, fwd, api_key = got
    c = _Collect()
    p = httptools.HttpRequestParser(c)
    c.parser = p
    p.feed_data(data[:end])  # must not raise: the fast path takes only what llhttp accepts
    assert c.done
    assert p.get_method().decode() == method
    assert c.url == url
    assert (p.get_http_version() == "1.0") is http10
    assert c.keep_alive is keep_alive
    hosts = [v for n, v in c.headers if n.lower() == b"host"]
    assert hosts == ([host] if host is not None else [])
    others = [(n, v) for n, v in c.headers if n.lower() not in (b"host", b"connection", b"content-length")]
    assert b"".join(n + b": " + v + b"\r\n" for n, v in others) == fwd
    keys = [v for n, v in c.headers if n.lower() == b"x-api-key"]
    assert keys == ([api_key] if api_key is not None else [])

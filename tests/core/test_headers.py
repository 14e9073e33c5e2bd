"""fastgw_core.headers: the upstream response head as the client gets it, on both builds."""

from collections.abc import Callable
from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw_core import headers
from fastgw_core.errors import HeadError
from fastgw_core.headers import IN_CLOSE, IN_HEAD, IN_HTTP10, OUT_CHUNKED, OUT_CLOSE

from .conftest import NO_EXTENSIONS

Rewrite = Callable[[bytes, bytes, int], tuple[bytes, int, int]]
RID = b"0e4549fa-8fb5-4b04-8f6f-000000000001"


def lines(head: bytes) -> list[bytes]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def test_content_length_response_keeps_headers_in_order(rewrite_impl: Rewrite) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nServer: up\r\nSet-Cookie: a=1\r\nContent-Type: text/plain\r\n"
        b"Set-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello"
    )
    head, status, flags = rewrite_impl(raw, RID, 0)
    assert status == 200 and flags == 0
    assert lines(head) == [
        b"HTTP/1.1 200 OK",
        b"Server: up",
        b"Set-Cookie: a=1",
        b"Content-Type: text/plain",
        b"Set-Cookie: b=2",
        b"x-amzn-RequestId: " + RID,
        b"content-length: 5",
    ]


def test_hop_by_hop_and_connection_named_headers_are_dropped(rewrite_impl: Rewrite) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop ,x-other\r\nX-HOP: secret\r\n"
        b"x-other: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\n"
        b"Proxy-Connection: close\r\nX-Amzn-RequestId: upstream-id\r\nX-Keep: yes\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    head, _, _ = rewrite_impl(raw, RID, 0)
    assert lines(head) == [
        b"HTTP/1.1 200 OK",
        b"X-Keep: yes",
        b"x-amzn-RequestId: " + RID,
        b"content-length: 0",
    ]


def test_chunked_upstream_is_rechunked_for_http11_and_close_delimited_for_http10(
    rewrite_impl: Rewrite,
) -> None:
    raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
    head, status, flags = rewrite_impl(raw, RID, 0)
    assert status == 404 and flags == OUT_CHUNKED
    assert lines(head)[-1] == b"transfer-encoding: chunked"
    head, _, flags = rewrite_impl(raw, RID, IN_HTTP10)
    assert flags == OUT_CLOSE
    assert lines(head)[-1] == b"connection: close"
    assert b"transfer-encoding" not in head


def test_close_delimited_upstream_body(rewrite_impl: Rewrite) -> None:
    head, _, flags = rewrite_impl(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n", RID, 0)
    assert flags == OUT_CHUNKED
    assert lines(head)[0] == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_get_no_framing(rewrite_impl: Rewrite, status: int) -> None:
    head, got, flags = rewrite_impl(b"HTTP/1.1 %d X\r\nETag: 1\r\n\r\n" % status, RID, 0)
    assert got == status and flags == 0
    assert b"transfer-encoding" not in head and b"content-length" not in head


def test_head_request_keeps_content_length_and_gets_no_chunking(rewrite_impl: Rewrite) -> None:
    head, _, flags = rewrite_impl(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", RID, IN_HEAD)
    assert flags == 0 and b"content-length: 1234" in head
    head, _, flags = rewrite_impl(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", RID, IN_HEAD)
    assert flags == 0 and b"transfer-encoding" not in head


def test_connection_header_follows_the_client(rewrite_impl: Rewrite) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert lines(rewrite_impl(raw, RID, IN_CLOSE)[0])[-1] == b"connection: close"
    assert rewrite_impl(raw, RID, IN_CLOSE)[2] == OUT_CLOSE
    assert lines(rewrite_impl(raw, RID, IN_HTTP10)[0])[-1] == b"connection: keep-alive"
    assert lines(rewrite_impl(raw, RID, IN_HTTP10 | IN_CLOSE)[0])[-1] == b"connection: close"


def test_reason_phrase_kept_and_version_is_ours(rewrite_impl: Rewrite) -> None:
    head, status, _ = rewrite_impl(b"HTTP/1.0 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n", RID, 0)
    assert status == 418 and head.startswith(b"HTTP/1.1 418 I'm a teapot\r\n")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno-colon-here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty-name\r\n\r\n",
    ],
)
def test_malformed_heads_raise_head_error(rewrite_impl: Rewrite, raw: bytes) -> None:
    with pytest.raises(HeadError):
        rewrite_impl(raw, RID, 0)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12)
_name = st.one_of(
    _token,
    st.sampled_from(
        [
            "Connection",
            "content-length",
            "Transfer-Encoding",
            "keep-alive",
            "TE",
            "x-amzn-requestid",
            "Upgrade",
        ]
    ),
)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,=-", max_size=20)


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599),
    hdrs=st.lists(st.tuples(_name, _value), max_size=12),
    flags=st.integers(0, 7),
    tail=st.binary(max_size=8),
)
def test_compiled_agrees_with_python(
    status: int, hdrs: list[tuple[str, str]], flags: int, tail: bytes
) -> None:
    assert headers.rewrite_response_head_c is not None
    raw = b"HTTP/1.1 %d Reason\r\n" % status
    raw += b"".join(f"{n}: {v}\r\n".encode() for n, v in hdrs) + b"\r\n" + tail
    assert headers.rewrite_response_head_c(raw, RID, flags) == headers.rewrite_response_head_py(
        raw, RID, flags
    )


# -- relay_response: the whole-response fast path ------------------------------------------------


def relay_impls() -> list[Callable[[bytes, bytes, int], object]]:
    impls: list[Callable[[bytes, bytes, int], object]] = [headers.relay_response_py]
    if headers.relay_response_c is not None:
        impls.append(headers.relay_response_c)
    elif not NO_EXTENSIONS:
        pytest.fail("compiled relay_response missing")
    return impls


@pytest.mark.parametrize("impl", relay_impls())
def test_relay_takes_a_whole_content_length_response(impl: Callable[[bytes, bytes, int], object]) -> None:
    raw = b"HTTP/1.1 201 Created\r\nServer: up\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
    out = impl(raw, RID, 0)
    assert out == (
        b"HTTP/1.1 201 Created\r\nServer: up\r\nx-amzn-RequestId: "
        + RID
        + b"\r\ncontent-length: 5\r\n\r\nhello",
        201,
        0,
        True,
        5,
    )
    closing = raw.replace(b"keep-alive", b"close")
    assert impl(closing, RID, 0)[3] is False  # type: ignore[index]


@pytest.mark.parametrize("impl", relay_impls())
def test_relay_raw_takes_the_same_responses_and_returns_them_as_they_came(
    impl: Callable[[bytes, bytes, int], object],
) -> None:
    """IN_RAW (a pipeline's buffered exchange): the same checks, nothing rewritten."""
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\n{}"
    got = impl(raw, b"", headers.IN_RAW)
    assert got == (raw, 200, 0, False, 2)
    assert got[0] is raw  # type: ignore[index]
    for declined in (raw[:-1], raw + b"x", raw.replace(b"Content-Length: 2", b"Transfer-Encoding: chunked")):
        assert impl(declined, b"", headers.IN_RAW) is None


@pytest.mark.parametrize("impl", relay_impls())
@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell",  # body incomplete
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!",  # extra bytes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nclose-delimited",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nX: \xff\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_relay_declines(impl: Callable[[bytes, bytes, int], object], raw: bytes) -> None:
    assert impl(raw, RID, 0) is None


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 200, 200, 201, 204, 304, 404, 500, 101, 100]))
    reason = draw(st.sampled_from([b" OK", b" OK", b"", b" Not\tFound", b" \xff"]))
    lines = [b"HTTP/1.1 %d%s" % (status, reason)]
    body = draw(st.binary(max_size=20))
    for name, value in draw(st.lists(st.tuples(_name, _value), max_size=6)):
        lines.append(name.encode() + b":" + value.encode())
    if draw(st.integers(0, 3)):
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.sampled_from([0, 0, 0, 1, -1]))))
    data = bytearray(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = bytes([draw(st.sampled_from(list(b"\r\n \t:\x00\xff0")))])
    return bytes(data)


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
@settings(max_examples=400, deadline=None)
@given(data=responses(), flags=st.integers(0, 15))
def test_relay_compiled_agrees_with_python(data: bytes, flags: int) -> None:
    assert headers.relay_response_c is not None
    assert headers.relay_response_c(data, RID, flags) == headers.relay_response_py(data, RID, flags)


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
def test_relay_value_bytes_compiled_agrees_with_python() -> None:
    """Every byte value at every offset of a value long enough for the compiled build's
    eight-bytes-at-a-time check (and its byte-by-byte tail), in a header and a reason phrase."""
    assert headers.relay_response_c is not None
    for size in (7, 8, 9, 17, 24):
        for pos in range(size):
            for b in range(256):
                value = bytearray(b"v" * size)
                value[pos] = b
                data = b"HTTP/1.1 200 OK\r\nX-V: %s\r\nContent-Length: 0\r\n\r\n" % bytes(value)
                want = headers.relay_response_py(data, RID, 0)
                assert headers.relay_response_c(data, RID, 0) == want, (size, pos, b)
                assert (want is None) == (b not in range(0x20, 0x7F) and b != 9)
                status = b"HTTP/1.1 200 %s\r\nContent-Length: 0\r\n\r\n" % bytes(value)
                assert headers.relay_response_c(status, RID, 0) == headers.relay_response_py(status, RID, 0)


class _Resp:
    def __init__(self) -> None:
        self.body = b""
        self.done = 0
        self.keep_alive: bool | None = None
        self.parser: Any = None

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done += 1
        self.keep_alive = self.parser.should_keep_alive()


@settings(max_examples=400, deadline=None)
@given(data=responses())
def test_what_relay_takes_httptools_reads_the_same_way(data: bytes) -> None:
    got = headers.relay_response_py(data, RID, 0)
    if got is None:
        return
    out, status, _, keep_alive, length = got
    r = _Resp()
    p = httptools.HttpResponseParser(r)
    r.parser = p
    p.feed_data(data)  # must not raise
    assert r.done == 1
    assert p.get_status_code() == status
    assert r.keep_alive is keep_alive
    head_end = data.index(b"\r\n\r\n") + 4
    assert r.body == data[head_end:]
    assert length == len(r.body)
    assert out == headers.rewrite_response_head_py(data, RID, 0)[0] + r.body


@pytest.mark.parametrize("n", [0, 1, 255, 2**40 + 7, 2**48 - 1, 2**48, 2**63 + 5])
def test_request_id_builds_agree(n: int) -> None:
    prefix = b"0e4549fa-8fb5-4b04-8f6f-"
    expected = prefix + b"%012x" % (n & (2**48 - 1))
    assert headers.request_id_py(prefix, n) == expected
    if headers.request_id_c is not None:
        assert headers.request_id_c(prefix, n) == expected
    elif not NO_EXTENSIONS:
        pytest.fail("compiled request_id missing")


FIND_CASES: list[tuple[list[tuple[str, str]], str]] = [
    ([], "authorization"),
    ([("Host", "a"), ("Authorization", "tok"), ("User-Agent", "wrk")], "authorization"),
    ([("AUTHORIZATION", "a"), ("x", "y"), ("authorization", "b")], "authorization"),  # joined
    ([("AuthorizatioN", "a")], "authorization"),
    ([("Authorizatio", "a"), ("Authorizations", "b")], "authorization"),  # lengths differ
    ([("X-Ünïcode", "u"), ("x-ünïcode", "v")], "x-ünïcode"),  # not ASCII: str.lower()
    ([("K", "1"), ("k", "")], "k"),  # an empty value is joined too
    ([("[", "1"), ("{", "2"), ("@", "3"), ("`", "4")], "{"),  # just outside A-Z
    ([("Content-Type", "a")], "content_type"),
]


@pytest.mark.parametrize("pairs, lname", FIND_CASES)
def test_find_header_builds_agree(pairs: list[tuple[str, str]], lname: str) -> None:
    """A header in a list of pairs, case-insensitively, repeated values joined with ','."""
    expected = None
    for k, v in pairs:
        if k.lower() == lname:
            expected = v if expected is None else expected + "," + v
    assert headers.find_header_py(pairs, lname) == expected
    if headers.find_header_c is not None:
        assert headers.find_header_c(pairs, lname) == expected
    elif not NO_EXTENSIONS:
        pytest.fail("compiled find_header missing")


HAS_LINE_CASES: list[tuple[list[bytes] | None, bool]] = [
    (None, False),
    ([], False),
    ([b"accept: */*\r\n"], False),
    ([b"Authorization: Bearer x\r\n"], True),
    ([b"accept: */*\r\nCOOKIE: a=1\r\n"], True),
    ([b"accept: */*\r\n", b"cache-control: max-age=0\r\n"], True),
    # A name inside a value, a longer or shorter name, a line without a colon: not the header.
    ([b"x-note: cookie: no\r\n"], False),
    ([b"cookies: a\r\n", b"cooki: b\r\n", b"authorization-x: c\r\n"], False),
    ([b"cookie\r\n"], False),
    ([b"x: 1\r\ncache-control:no-cache"], True),  # the last line without CRLF
    ([b"\r\ncookie: 1\r\n"], True),
]


@pytest.mark.parametrize(("lines", "expected"), HAS_LINE_CASES)
def test_has_header_line_builds_agree(lines: list[bytes] | None, expected: bool) -> None:
    """Whether a header line is named Authorization, Cookie or Cache-Control, case-insensitively."""
    names = (b"authorization", b"cookie", b"cache-control")
    assert headers.has_header_line_py(lines, names) is expected
    if headers.has_header_line_c is not None:
        assert headers.has_header_line_c(lines, names) is expected
    elif not NO_EXTENSIONS:
        pytest.fail("compiled has_header_line missing")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_has_header_line_builds_agree_on_any_bytes(lines: list[bytes]) -> None:
    names = (b"authorization", b"cookie", b"cache-control", b"")
    expected = headers.has_header_line_py(lines, names)
    if headers.has_header_line_c is not None:
        assert headers.has_header_line_c(lines, names) is expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=5, max_size=5), st.booleans())
def test_local_response_builds_agree(parts: list[bytes], other: bool) -> None:
    """A local reply on the wire: head, request id line, Date and connection lines, blank line,
    body; other bytes-like parts give the same bytes."""
    head, rid, date, conn, body = parts
    want = head + b"x-amzn-RequestId: " + rid + b"\r\n" + date + conn + b"\r\n" + body
    args = (head, rid, date, conn, bytearray(body) if other else body)
    assert headers.local_response_py(*args) == want
    if headers.local_response_c is not None:
        got = headers.local_response_c(*args)
        assert type(got) is bytes and got == want
    elif not NO_EXTENSIONS:
        pytest.fail("compiled local_response missing")

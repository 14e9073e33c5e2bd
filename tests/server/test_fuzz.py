"""Protocol fuzzing: mutated requests get a defined answer, never a traceback (h11's invariant).

Hypothesis mutates valid requests (byte flips, insertions, deletions, duplicated or injected
header lines, odd framing) and sends them, then half-closes. Whatever arrives must be zero or
more well-formed responses with statuses the gateway documents; the gateway must keep serving;
its log must hold no traceback and no "handling failed" error. Runs on both builds.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import EchoServer, Gateway, GatewayFactory, get
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOWED = {100, 200, 400, 403, 404, 408, 413, 414, 417, 431, 501, 502, 504}
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")

BASES = [
    b"GET /prod/hello HTTP/1.1\r\nHost: gw\r\n\r\n",
    b"GET /prod/echo/a/b?x=1 HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n\r\n",
    b"POST /prod/echo/p HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /prod/echo/c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /prod/hello HTTP/1.0\r\n\r\n",
    b"HEAD /prod/echo/h HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
]
INJECT = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b"%",
    b"%2e%2e/",
    b"Content-Length: 3\r\n",
    b"Content-Length: -1\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Host: other\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close, x-a\r\n",
    b" folded\r\n",
    b"GET / HTTP/1.1\r\n",
    b"fffffffffffffffff\r\n",
    b"\xff\xfe",
]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(BASES), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "flip", "delete", "inject"]))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete" and pos < len(data):
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            data[pos:pos] = draw(st.sampled_from(INJECT))
    return bytes(data)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway may close first (e.g. 400 on an early byte)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return out


def check_responses(raw: bytes, sent: bytes) -> None:
    """Every response that arrived is framed and has a documented status.

    A response to HEAD carries Content-Length but no body; when HEAD was sent, a status line
    right after a head is taken as the next response.
    """
    head_sent = b"HEAD " in sent
    pos = 0
    while pos < len(raw):
        m = STATUS_LINE.match(raw, pos)
        assert m, raw[pos : pos + 200]
        assert int(m.group(1)) in ALLOWED, raw[pos : pos + 200]
        end = raw.find(b"\r\n\r\n", pos)
        assert end > 0, raw[pos:]
        head = raw[pos:end].decode("latin-1").lower()
        pos = end + 4
        length = re.search(r"\r\ncontent-length: (\d+)", head)
        if int(m.group(1)) == 100:
            continue
        if "\r\ntransfer-encoding: chunked" in head:
            while True:
                nl = raw.find(b"\r\n", pos)
                assert nl > 0
                size = int(raw[pos:nl].split(b";")[0], 16)
                pos = nl + 2 + size + 2
                if size == 0:
                    break
        elif length is not None:
            if head_sent and (pos == len(raw) or STATUS_LINE.match(raw, pos)):
                continue
            pos += int(length.group(1))
            assert pos <= len(raw), "truncated body"
        else:
            return  # close-delimited: the rest is the body


@pytest.fixture(scope="module")
def fuzz_gw(
    kernel_build: str, module_gateway_factory: GatewayFactory, echo_server: EchoServer
) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "gateway": {"limits": {"header_timeout": 2, "body_timeout": 2, "max_body_bytes": 4096}},
        "apis": [
            {
                "name": "fuzz",
                "routes": [
                    {"route": "GET /hello", "integration": {"type": "MOCK", "body": '{"message":"hello"}'}},
                    {
                        "route": "ANY /echo/{proxy+}",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{echo_server.port}/{{proxy}}",
                            "timeout_ms": 2000,
                        },
                    },
                ],
                "stages": [{"name": "prod"}],
            }
        ],
    }
    gw = module_gateway_factory(config, workers=1, no_extensions=kernel_build == "python")
    yield gw


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated_requests())
def test_mutated_requests_get_defined_answers(fuzz_gw: Gateway, data: bytes) -> None:
    check_responses(exchange(fuzz_gw.port, data), data)


def test_gateway_survives_the_fuzzing(fuzz_gw: Gateway) -> None:
    assert get(fuzz_gw.port, "/prod/hello").status == 200
    log = fuzz_gw.stderr_text()
    assert "Traceback" not in log
    assert "handling failed" not in log

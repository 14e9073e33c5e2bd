"""``build._parse_head``: the header list of a raw upstream response head."""

from __future__ import annotations

import pytest

from fastgw.pipeline import build


def reference(raw: bytes) -> list[tuple[str, str]]:
    """The straightforward bytes parser (what ``_parse_head`` must keep giving)."""
    end = raw.find(b"\r\n\r\n")
    if end >= 0:
        raw = raw[:end]
    out = []
    named: list[str] = []
    for line in raw.split(b"\r\n")[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        lname = name.strip().lower().decode("latin-1")
        if lname in build._HOP or lname == "content-length":
            if lname == "connection":
                named.extend(t.strip().lower() for t in value.decode("latin-1").split(","))
            continue
        out.append((name.strip().decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    if named:
        out = [h for h in out if h[0].lower() not in named]
    return out


HEADS = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 3\r\n"
    b"Connection: keep-alive\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nX-A:  1 \t\r\nConnection: X-A, close\r\nKeep-Alive: timeout=5\r\n"
    b"x-b: \xe9\xa0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nNoColon\r\n",
    b"HTTP/1.1 200 OK\r\n X-Sp : v\x0b\r\nUpgrade: h2c\r\nProxy-Authenticate: x\r\nHost: h\r\n\r\n",
]


@pytest.mark.parametrize("raw", HEADS)
def test_parse_head_as_the_reference(raw: bytes) -> None:
    first = build._parse_head(raw)
    assert first == reference(raw)
    # A cached head gives an equal list that the caller may change freely.
    first.append(("x", "y"))
    assert build._parse_head(raw) == reference(raw)


def test_parse_head_cache_is_bounded() -> None:
    for i in range(200):
        raw = b"HTTP/1.1 200 OK\r\nX-N: %d\r\n\r\n" % i
        assert build._parse_head(raw) == [("X-N", str(i))]
    assert len(build._HEADS) <= 64

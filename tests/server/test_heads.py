"""``header_values``: header lookups over the protocol's raw header lines, as both head parsers
capture them (one blob from the fast path, or one line per item from httptools)."""

from __future__ import annotations

from fastgw.server.heads import header_values


def test_finds_every_value_in_order_whatever_the_case_and_the_split() -> None:
    blob = b"Authorization: Bearer a\r\nX-Other: z\r\nAUTHORIZATION:  Bearer b \r\n"
    assert header_values([blob], b"authorization") == [b"Bearer a", b"Bearer b"]
    lines = [b"x-other: z\r\n", b"authorization:Bearer a\r\n", b"Authorization: \tBearer b\r\n"]
    assert header_values(lines, b"authorization") == [b"Bearer a", b"Bearer b"]


def test_names_match_whole_names_only() -> None:
    blob = b"X-Authorization: no\r\nAuthorizationX: no\r\nproxy-authorization: no\r\n"
    assert header_values([blob], b"authorization") == []
    assert header_values([], b"authorization") == []
    assert header_values([b"traceparent: 00-a-b-01"], b"traceparent") == [b"00-a-b-01"]  # no CRLF
    assert header_values([b"TraceParent:\r\n"], b"traceparent") == [b""]

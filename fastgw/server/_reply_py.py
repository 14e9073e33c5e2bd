"""A gateway-built response (``LocalReply``) and the status lines it starts with.

The pure-Python source of the class; compiled as ``_reply_c`` (Cython pure-Python mode, its
fields typed in ``_reply_c.pxd``) so that the compiled protocol reads a reply's head, body and
status as struct fields. ``fastgw.server.replies`` binds the build in use.
"""

from __future__ import annotations

import http

STATUS_LINE: dict[int, bytes] = {}
for _status in http.HTTPStatus:
    STATUS_LINE[_status.value] = b"HTTP/1.1 %d %s\r\n" % (_status.value, _status.phrase.encode())


def status_line(code: int) -> bytes:
    line = STATUS_LINE.get(code)
    if line is None:
        line = STATUS_LINE[code] = b"HTTP/1.1 %d \r\n" % code
    return line


class LocalReply:
    """A response the gateway writes itself (MOCK integrations, errors).

    ``head`` holds the status line and the fixed headers, ``body`` the body; the protocol
    adds ``x-amzn-RequestId``, ``date`` and the connection header.

    A gateway error carries its AWS gateway-response type (``kind``: "THROTTLED",
    "DEFAULT_4XX", ...) and message (``$context.error.message``): an API that customises its
    gateway responses (fastgw.pipeline.gateway_responses) re-renders it from those. Replies of
    integrations (MOCK, functions) have ``kind`` None and are never re-rendered.
    """

    __slots__ = ("body", "head", "kind", "message", "status")

    @classmethod
    def raw(cls, status: int, head: bytes, body: bytes) -> LocalReply:
        """A reply from a head already built (status line and headers, framing included)."""
        reply = cls.__new__(cls)
        reply.status = status
        reply.head = head
        reply.body = body
        reply.kind = None
        reply.message = None
        return reply

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        kind: str | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.kind = kind
        self.message = message
        parts = [status_line(status)]
        names = set()
        for name, value in headers or ():
            names.add(name.lower())
            parts.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if "content-type" not in names and body:
            parts.append(b"content-type: application/json\r\n")
        if status in (204, 304) or status < 200:
            self.body = b""  # no content, and no Content-Length either (RFC 9110 8.6)
        else:
            parts.append(b"content-length: %d\r\n" % len(body))
        self.head = b"".join(parts)

"""Reference implementation of the response-head rewrite (the spec of ``_headers_c``).

The upstream's response head arrives as raw bytes (status line through the blank line), already
validated by httptools. The gateway relays it to the client with:

- the status line re-emitted as ``HTTP/1.1 <code> <reason>`` (the upstream's code and reason);
- hop-by-hop headers removed: ``Connection``, ``Keep-Alive``, ``Proxy-Connection``,
  ``Transfer-Encoding``, ``TE``, ``Trailer``, ``Upgrade``, and every header named in
  ``Connection``; an upstream ``x-amzn-RequestId`` is replaced by the gateway's;
- every other header line copied byte for byte, in order (repeated headers stay repeated);
- then ``x-amzn-RequestId``, the framing the client gets, and the connection header:
  a ``Content-Length`` is kept; a body without one (chunked or close-delimited upstream) is
  re-chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0 clients; a response that
  has no body (HEAD, 1xx, 204, 304) keeps its ``Content-Length`` if any and gets no framing.

Flags in: ``IN_HEAD`` (the request was HEAD), ``IN_HTTP10`` (the client speaks HTTP/1.0),
``IN_CLOSE`` (the client connection closes after this response); ``relay_response`` only:
``IN_RAW`` (the response is for the gateway itself, a buffered exchange: the accepted bytes
are returned as they came, not rewritten).
Flags out: ``OUT_CHUNKED`` (re-chunk the body), ``OUT_CLOSE`` (close after the body).
"""

from __future__ import annotations

from fastgw_core.errors import HeadError

IN_HEAD = 1
IN_HTTP10 = 2
IN_CLOSE = 4
IN_RAW = 8
OUT_CHUNKED = 1
OUT_CLOSE = 2

_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"content-length",
        b"x-amzn-requestid",
    }
)


def rewrite_response_head(raw: bytes, request_id: bytes, flags: int) -> tuple[bytes, int, int]:
    """Return ``(client_head, status, out_flags)`` for the upstream head ``raw``."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise HeadError("response head is not terminated by CRLF CRLF")
    lines = raw[:end].split(b"\r\n")
    status_line = lines[0]
    sp = status_line.find(b" ")
    if sp < 0 or not status_line.startswith(b"HTTP/"):
        raise HeadError("bad status line")
    code_part = status_line[sp + 1 : sp + 4]
    if len(code_part) != 3 or not code_part.isdigit():
        raise HeadError("bad status code")
    status = int(code_part)
    dropped: set[bytes] = set()
    length: bytes | None = None
    has_te = False
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0:
            raise HeadError("bad header line")
        name = line[:colon].lower()
        value = line[colon + 1 :].strip(b" \t")
        headers.append((name, line))
        if name == b"connection":
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token:
                    dropped.add(token)
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            has_te = True
    out = [b"HTTP/1.1 ", status_line[sp + 1 :], b"\r\n"]
    for name, line in headers:
        if name in _HOP or name in dropped:
            continue
        out.append(line)
        out.append(b"\r\n")
    out.append(b"x-amzn-RequestId: ")
    out.append(request_id)
    out.append(b"\r\n")
    out_flags = 0
    no_body = flags & IN_HEAD or status < 200 or status == 204 or status == 304
    if length is not None and not has_te:
        out.append(b"content-length: ")
        out.append(length)
        out.append(b"\r\n")
    elif not no_body:
        if flags & IN_HTTP10:
            out_flags |= OUT_CLOSE
        else:
            out_flags |= OUT_CHUNKED
            out.append(b"transfer-encoding: chunked\r\n")
    if flags & IN_CLOSE or out_flags & OUT_CLOSE:
        out_flags |= OUT_CLOSE
        out.append(b"connection: close\r\n")
    elif flags & IN_HTTP10:
        out.append(b"connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out), status, out_flags


_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_VALCHAR = frozenset(range(0x20, 0x7F)) | {0x09}


def relay_response(data: bytes, request_id: bytes, flags: int) -> tuple[bytes, int, int, bool, int] | None:
    """Take a whole upstream response in one buffer, or decline (``None``).

    The fast path for the common case: ``data`` is exactly one complete HTTP/1.1 response with
    a Content-Length body (status 200-599 but 204 and 304), strictly well-formed (as
    ``_reqhead_py`` for requests: token names, visible-ASCII values, CRLF line ends, one
    Content-Length of digits, no Transfer-Encoding). Anything else is declined and the caller
    lets httptools parse it. Returns ``(client_bytes, status, out_flags, upstream_keep_alive,
    body_length)``: the rewritten head (``rewrite_response_head``) followed by the body; with
    ``IN_RAW`` in ``flags``, ``data`` itself and out_flags 0 (nothing is rewritten).
    """
    if not data.startswith(b"HTTP/1.1 "):
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    status_line = lines[0]
    code = status_line[9:12]
    if len(code) != 3 or not code.isdigit():
        return None
    status = int(code)
    if status < 200 or status == 204 or status == 304:
        return None
    rest = status_line[12:]
    if rest and (rest[0] != 0x20 or any(c not in _VALCHAR for c in rest)):
        return None
    length = -1
    keep_alive = True
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0 or any(c not in _TCHAR for c in line[:colon]):
            return None
        value = line[colon + 1 :]
        if any(c not in _VALCHAR for c in value):
            return None
        value = value.lstrip(b" \t")
        name = line[:colon].lower()
        if name == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 15:
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection":
            for token in value.split(b","):
                if token.strip(b" \t").lower() == b"close":
                    keep_alive = False
    if length < 0 or len(data) != end + 4 + length:
        return None
    if flags & IN_RAW:
        return data, status, 0, keep_alive, length
    head, status, out_flags = rewrite_response_head(data, request_id, flags)
    return head + data[end + 4 :], status, out_flags, keep_alive, length


def request_id(prefix: bytes, n: int) -> bytes:
    """``prefix`` followed by ``n`` as 12 lower-case hex digits (the low 48 bits)."""
    return prefix + b"%012x" % (n & 0xFFFFFFFFFFFF)


def local_response(head: bytes, request_id: bytes, date_line: bytes, conn_line: bytes, body: bytes) -> bytes:
    """A local reply on the wire: its precomputed head (status line and header lines), the
    request id line, the Date and connection lines, the blank line and the body."""
    return b"".join((head, b"x-amzn-RequestId: ", request_id, b"\r\n", date_line, conn_line, b"\r\n", body))


def find_header(headers: list[tuple[str, str]], lname: str) -> str | None:
    """The value of header ``lname`` (lower-case) in a list of (name, value) pairs, names
    compared case-insensitively; the values of a repeated name joined with ``,``; None if absent.
    (``Request.header`` before it builds its map.)"""
    n = len(lname)
    value = None
    for k, v in headers:
        if len(k) == n and k.lower() == lname:
            value = v if value is None else value + "," + v
    return value


def has_header_line(lines: list[bytes] | None, names: tuple[bytes, ...]) -> bool:
    """Whether a header line of ``lines`` is named one of ``names`` (lower-case).

    ``lines`` are the request's header lines as the protocol keeps them: items of one or more
    ``name: value\\r\\n`` lines each. A line's name is what precedes its first ``:``; names
    compare case-insensitively; a line without ``:`` has no name.
    """
    if not lines:
        return False
    for chunk in lines:
        start = 0
        n = len(chunk)
        while start < n:
            end = chunk.find(b"\r\n", start)
            if end < 0:
                end = n
            colon = chunk.find(b":", start, end)
            if colon >= 0 and chunk[start:colon].lower() in names:
                return True
            start = end + 2
    return False

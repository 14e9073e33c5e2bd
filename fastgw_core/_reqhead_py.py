"""Reference implementation of the request-head fast path (the spec of ``_reqhead_c``).

``parse_request_head(data, start, max_head, max_headers, max_url)`` looks at one complete,
body-less request head starting at ``data[start]`` and either takes it whole or declines
(returns ``None``). Declining is always safe: the caller then feeds the bytes to httptools,
which decides (and rejects what is malformed, with the right status). The fast path therefore
accepts only a strict subset of HTTP/1.1 that llhttp also accepts, and only requests whose
handling needs nothing but the head:

- request line ``METHOD SP origin-form SP HTTP/1.1|HTTP/1.0 CRLF``; METHOD is one of
  GET, HEAD, DELETE, OPTIONS (methods whose requests here carry no body);
- the target starts with ``/`` and uses only unreserved, sub-delims, ``: @ / ? %``;
- header lines ``token ":" OWS value OWS CRLF`` with values of visible ASCII, SP and HTAB;
  no obs-fold, no bare LF, no NUL, no obs-text;
- at most one Host (exactly one on HTTP/1.1); Connection only ``close`` or ``keep-alive``;
  ``Content-Length: 0`` at most once; no Transfer-Encoding, Expect, Upgrade, TE, Trailer,
  Keep-Alive, Proxy-*, X-Forwarded-* headers (those take the general path);
- within the limits: head size, header count, URL length.

It returns ``(end, method, url, http10, keep_alive, host, fwd)``: the offset after the head,
the method (str), the request target (bytes), whether the version is 1.0, whether the
connection stays open, the Host value (bytes or None), the other header lines re-emitted as
``name: value\\r\\n`` (the value without leading whitespace; trailing whitespace is kept, as
llhttp keeps it, so that both paths forward the same bytes), in order, as one bytes, and the
value of an ``X-API-Key`` header (bytes or None; it is also forwarded; a repeated one declines).
"""

from __future__ import annotations

_METHODS = {b"GET": "GET", b"HEAD": "HEAD", b"DELETE": "DELETE", b"OPTIONS": "OPTIONS"}
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_URLCHAR = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")
_VALCHAR = frozenset(range(0x20, 0x7F)) | {0x09}
_DECLINE = frozenset(
    {
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"te",
        b"trailer",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
    }
)

Result = tuple[int, str, bytes, bool, bool, bytes | None, bytes, bytes | None]


def parse_request_head(
    data: bytes, start: int, max_head: int, max_headers: int, max_url: int
) -> Result | None:
    end = data.find(b"\r\n\r\n", start)
    if end < 0 or end + 4 - start > max_head:
        return None
    head = data[start:end]
    lines = head.split(b"\r\n")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return None
    method_b, url, version = parts
    method = _METHODS.get(method_b)
    if method is None:
        return None
    if version == b"HTTP/1.1":
        http10 = False
    elif version == b"HTTP/1.0":
        http10 = True
    else:
        return None
    if not url or url[0] != 0x2F or len(url) > max_url or any(c not in _URLCHAR for c in url):
        return None
    if len(lines) - 1 > max_headers:
        return None
    host: bytes | None = None
    close = False
    ka = False
    cl_seen = False
    api_key: bytes | None = None
    out = []
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0:
            return None
        name = line[:colon]
        if any(c not in _TCHAR for c in name):
            return None
        value = line[colon + 1 :]
        if any(c not in _VALCHAR for c in value):
            return None
        value = value.lstrip(b" \t")  # as llhttp: leading OWS dropped, trailing OWS kept
        lname = name.lower()
        if lname == b"host":
            if host is not None:
                return None
            host = value
        elif lname == b"connection":
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    ka = True
                elif token:
                    return None
        elif lname == b"content-length":
            if cl_seen or value != b"0":
                return None
            cl_seen = True
        elif lname in _DECLINE or lname.startswith(b"proxy-"):
            return None
        else:
            if lname == b"x-api-key":
                if api_key is not None:
                    return None  # a repeated API key: the general path refuses it
                api_key = value
            out.append(name + b": " + value + b"\r\n")
    if (host is None and not http10) or (close and ka):
        return None  # (llhttp's reading of close + keep-alive together differs by version)
    keep_alive = ka and not close if http10 else not close
    return end + 4, method, url, http10, keep_alive, host, b"".join(out), api_key

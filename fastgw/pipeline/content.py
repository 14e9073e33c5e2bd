"""Binary media types, ``contentHandling`` conversions and payload compression (REST APIs).

Binary media types (``binaryMediaTypes``): ``BinaryTypes`` matches a Content-Type or the first
type of an Accept header (AWS "only honors the first Accept media type") against entries such
as ``image/png``, ``image/*`` and ``*/*``, without regard to case or parameters. ``image~1png``
(OpenAPI's escaping of ``/``) is read as ``image/png``.

Conversions (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings-workflow.html):
``convert_request`` and ``convert_response`` are AWS's two tables, written as code; their
docstrings hold the tables.

Compression (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gzip-compression-decompression.html):

- Responses: with ``minimumCompressionSize`` set (0..10485760 bytes; None: off), a response is
  compressed when the client's highest-priority ``Accept-Encoding`` is one AWS supports (gzip,
  deflate; identity means no compression), the integration response has no Content-Encoding,
  and its body is at least ``minimumCompressionSize`` bytes. It then gets ``Content-Encoding``
  and ``Vary: Accept-Encoding``. ``compress_response`` does all of it; ``negotiate``,
  ``should_compress`` and ``compress`` are its parts.
- Requests: a body with ``Content-Encoding: gzip`` or ``deflate`` is decompressed before the
  mapping templates and the integration (``decompress_request``). An unsupported coding, or a
  body that is not what its coding says, gets 415 ``{"message":"Unsupported Media Type"}`` (AWS:
  "If the specified coding isn't supported or the supplied payload isn't compressed with
  specified coding, API Gateway returns the 415 Unsupported Media Type error response"); a
  body that inflates past the payload limit gets 413 ``{"message":"Request Too Long"}``.
  Decompression is incremental and bounded: at most ``max_bytes`` (plus one chunk) is ever
  inflated, however small and however compressible the input (APPSEC: zip bombs).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastgw.server import replies

if TYPE_CHECKING:
    from fastgw.server.replies import LocalReply

__all__ = [
    "CONVERT_TO_BINARY",
    "CONVERT_TO_TEXT",
    "MAX_MINIMUM_COMPRESSION_SIZE",
    "BinaryTypes",
    "ContentError",
    "check_content_handling",
    "check_minimum_compression_size",
    "compress",
    "compress_response",
    "convert_request",
    "convert_response",
    "decompress_request",
    "negotiate",
    "should_compress",
]

CONVERT_TO_BINARY = "CONVERT_TO_BINARY"
CONVERT_TO_TEXT = "CONVERT_TO_TEXT"
_HANDLING = (None, CONVERT_TO_BINARY, CONVERT_TO_TEXT)

#: ``minimumCompressionSize`` is "a non-negative integer between 0 and 10485760 (10M bytes)".
MAX_MINIMUM_COMPRESSION_SIZE = 10_485_760

#: Bytes inflated per step of ``decompress_request`` (the most it inflates past ``max_bytes``).
INFLATE_CHUNK = 64 * 1024
#: zlib/gzip level of compressed responses (zlib's default: a good size/speed balance).
COMPRESS_LEVEL = 6


class ContentError(Exception):
    """A payload the gateway refuses or cannot convert; ``status`` is the response status.

    ``reply`` is the gateway response AWS sends: 415 UNSUPPORTED_MEDIA_TYPE, 413
    REQUEST_TOO_LARGE, 500 (a failed base64 conversion: "an API configuration error")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reply(self) -> LocalReply:
        if self.status == 415:
            return replies.UNSUPPORTED_MEDIA_TYPE
        if self.status == 413:
            return replies.PAYLOAD_TOO_LARGE
        return replies.INTERNAL_ERROR


def _unsupported() -> ContentError:
    return ContentError(415, "Unsupported Media Type")


def _too_large() -> ContentError:
    return ContentError(413, "Request Too Long")


def _bad_base64() -> ContentError:
    return ContentError(500, "Internal server error")


# --------------------------------------------------------------------------- media types
def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


class BinaryTypes:
    """An API's ``binaryMediaTypes``, ready to match.

    Entries are ``type/subtype`` (exact), ``type/*`` (any subtype) or ``*/*`` (anything, a
    request without Content-Type included); ValueError for anything else."""

    __slots__ = ("any", "exact", "patterns", "prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        normalised: list[str] = []
        any_type = False
        for raw in patterns:
            pattern = _media_type(raw.replace("~1", "/"))
            kind, slash, sub = pattern.partition("/")
            if not slash or not kind or not sub or "/" in sub or any(c.isspace() for c in pattern):
                raise ValueError(f"{raw!r} is not a media type (type/subtype, type/* or */*)")
            if kind == "*":
                if sub != "*":
                    raise ValueError(f"{raw!r}: only */* may have a wildcard type")
                any_type = True
            elif sub == "*":
                prefixes.append(kind + "/")
            elif "*" in pattern:
                raise ValueError(f"{raw!r}: a wildcard must be a whole subtype (type/*)")
            else:
                exact.add(pattern)
            normalised.append(pattern)
        #: The entries, normalised (lower case, no parameters, "/" unescaped).
        self.patterns = tuple(normalised)
        self.any = any_type
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, content_type: str | None) -> bool:
        """Whether a Content-Type header value (parameters allowed) is binary."""
        if self.any:
            return True
        if content_type is None or not self.patterns:
            return False
        media = _media_type(content_type)
        if media in self.exact:
            return True
        for prefix in self.prefixes:
            if media.startswith(prefix):
                return True
        return False

    def accept_is_binary(self, accept: str | None) -> bool:
        """Whether a response goes to the client as binary: the first media type of its
        Accept header matches ("API Gateway only honors the first Accept media type")."""
        if accept is None:
            return self.any
        return self.matches(accept.partition(",")[0])


# --------------------------------------------------------------------------- conversions
def check_content_handling(value: str | None) -> None:
    """ValueError unless ``value`` is a valid ``contentHandling`` (None, or CONVERT_TO_*)."""
    if value not in _HANDLING:
        raise ValueError(f"contentHandling must be CONVERT_TO_BINARY or CONVERT_TO_TEXT, not {value!r}")


def _b64decode(body: bytes) -> bytes:
    try:
        # Base64 text often arrives wrapped (MIME line breaks): whitespace is not data.
        return base64.b64decode(body.translate(None, b" \t\r\n"), validate=True)
    except (binascii.Error, ValueError):
        raise _bad_base64() from None


def convert_request(
    body: bytes, binary: bool, content_handling: str | None, template: bool = False
) -> bytes | str:
    """The integration request payload, by AWS's table of request conversions.

    ``binary``: the request's Content-Type matches ``binaryMediaTypes``. Without a mapping
    template (``template`` False), the bytes passed to the integration:

    ============  ==========================  ==================  ==========================
    payload       binaryMediaTypes match      contentHandling     integration request gets
    ============  ==========================  ==================  ==========================
    text          no (or no list)             unset               the text, unchanged
    text          no (or no list)             CONVERT_TO_BINARY   base64-decoded bytes
    text          no (or no list)             CONVERT_TO_TEXT     the text, unchanged
    binary        yes                         unset               the bytes, unchanged
    binary        yes                         CONVERT_TO_BINARY   the bytes, unchanged
    binary        yes                         CONVERT_TO_TEXT     base64-encoded text
    ============  ==========================  ==================  ==========================

    With a mapping template that applies (``template`` True), the text the template reads as
    ``$input.body`` (a ``str``): the UTF-8 text of a text payload, the base64 text of a binary
    one ("When converting a binary payload to a text string, API Gateway always applies a
    Base64 encoding ... can only access the Base64-encoded string in the mapping template
    through $input.body"). CONVERT_TO_BINARY takes no template ("You do not provide a mapping
    template for such a conversion"): its result is bytes, which the caller passes on as is.

    A payload that is not valid base64 under CONVERT_TO_BINARY raises ContentError(500):
    "If the conversion fails, it returns a 500 response indicating an API configuration error".
    """
    if content_handling == CONVERT_TO_BINARY:
        return body if binary else _b64decode(body)
    if content_handling is not None and content_handling != CONVERT_TO_TEXT:
        check_content_handling(content_handling)
    if binary:
        if template or content_handling == CONVERT_TO_TEXT:
            encoded = base64.b64encode(body)
            return encoded.decode("ascii") if template else encoded
        return body
    if template:
        return body.decode("utf-8", "replace")
    return body


def convert_response(body: bytes, binary: bool, accept_binary: bool, content_handling: str | None) -> bytes:
    """The method response payload, by AWS's table of response conversions.

    ``binary``: the integration response's Content-Type matches ``binaryMediaTypes``;
    ``accept_binary``: the first type of the request's Accept header does
    (``BinaryTypes.accept_is_binary``). With no ``binaryMediaTypes`` both are false.

    ============  ==============  ==================  ==================================
    integration   Accept          contentHandling     method response gets
    ============  ==============  ==================  ==================================
    text          text            unset               the text, unchanged
    text          text            CONVERT_TO_BINARY   base64-decoded bytes
    text          text            CONVERT_TO_TEXT     the text, unchanged
    text          binary          unset               base64-decoded bytes
    text          binary          CONVERT_TO_BINARY   base64-decoded bytes
    text          binary          CONVERT_TO_TEXT     the text, unchanged
    binary        text            unset               base64-encoded text
    binary        text            CONVERT_TO_BINARY   the bytes, unchanged
    binary        text            CONVERT_TO_TEXT     base64-encoded text
    binary        binary          unset               the bytes, unchanged
    binary        binary          CONVERT_TO_BINARY   the bytes, unchanged
    binary        binary          CONVERT_TO_TEXT     base64-encoded text
    ============  ==============  ==================  ==================================

    Text that is not valid base64 where it must be decoded raises ContentError(500).
    """
    if content_handling is None:
        if binary == accept_binary:
            return body
        return base64.b64encode(body) if binary else _b64decode(body)
    if content_handling == CONVERT_TO_TEXT:
        return base64.b64encode(body) if binary else body
    check_content_handling(content_handling)  # CONVERT_TO_BINARY, else ValueError
    return body if binary else _b64decode(body)


# --------------------------------------------------------------------- response compression
def check_minimum_compression_size(value: int | None) -> None:
    """ValueError unless ``value`` is None (compression off) or 0..10485760."""
    if value is None:
        return
    if type(value) is not int or not 0 <= value <= MAX_MINIMUM_COMPRESSION_SIZE:
        raise ValueError(
            f"minimumCompressionSize must be an integer from 0 to {MAX_MINIMUM_COMPRESSION_SIZE}, "
            f"not {value!r}"
        )


# Accept-Encoding value -> negotiated coding. PERF: clients send the same few values.
_NEGOTIATED: dict[str, str | None] = {}
_NEGOTIATED_MAX = 1024
_NO_ENTRY = object()


def negotiate(accept_encoding: str | None) -> str | None:
    """The coding to compress a response with for this Accept-Encoding: "gzip", "deflate" or
    None (send it as is).

    AWS: "The highest-priority content encoding must be one supported by API Gateway. If it is
    not, compression is not applied"; a request without Accept-Encoding is not compressed.
    Codings are ranked by q-value (RFC 9110 12.5.3; no q is 1, q=0 is "not acceptable"); among
    those of the highest q, in the order listed, the first that is gzip (x-gzip), deflate,
    identity (no compression) or ``*`` decides; ``*`` stands for a coding the header does not
    name: gzip, else deflate. Codings AWS does not support (br, zstd, ...) are passed over.
    """
    if not accept_encoding:
        return None
    cached = _NEGOTIATED.get(accept_encoding, _NO_ENTRY)
    if cached is not _NO_ENTRY:
        return cached  # type: ignore[return-value]
    result = _negotiate(accept_encoding)
    if len(_NEGOTIATED) < _NEGOTIATED_MAX:
        _NEGOTIATED[accept_encoding] = result
    return result


def _negotiate(value: str) -> str | None:
    entries: list[tuple[str, float]] = []
    for item in value.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";") if params else ():
            key, _, raw = param.partition("=")
            if key.strip().lower() != "q":
                continue
            try:
                q = float(raw.strip())
            except ValueError:
                q = -1.0
            if not 0.0 <= q <= 1.0:
                q = -1.0  # malformed: the entry is ignored
        if q >= 0.0:
            if coding == "x-gzip":
                coding = "gzip"
            entries.append((coding, q))
    if not entries:
        return None
    named = {coding for coding, _ in entries}
    best = max(q for _, q in entries)
    if best <= 0.0:
        return None
    for coding, q in entries:
        if q != best:
            continue
        if coding in ("gzip", "deflate"):
            return coding
        if coding == "identity":
            return None
        if coding == "*":
            for candidate in ("gzip", "deflate"):
                if candidate not in named:
                    return candidate
    return None


def should_compress(
    status: int, headers: Iterable[tuple[str, str]], body_len: int, minimum_compression_size: int | None
) -> bool:
    """Whether a response may be compressed (before looking at the client's Accept-Encoding).

    Yes when compression is on (``minimum_compression_size`` not None), the body is at least
    that many bytes (and not empty), the status carries a body (not 1xx, 204, 304), and the
    integration response has no Content-Encoding ("API Gateway assumes that the integration
    response payload is already compressed and skips the compression processing")."""
    if minimum_compression_size is None or body_len == 0 or body_len < minimum_compression_size:
        return False
    if status < 200 or status in (204, 304):
        return False
    for name, _ in headers:
        if len(name) == 16 and name.lower() == "content-encoding":
            return False
    return True


def compress(body: bytes, encoding: str, level: int = COMPRESS_LEVEL) -> bytes:
    """``body`` in a content coding: "gzip" (RFC 1952, mtime 0: the same input gives the same
    bytes) or "deflate" (RFC 9110's deflate: the zlib format, RFC 1950)."""
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=level, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body, level)
    raise ValueError(f"unsupported content coding {encoding!r}")


def compress_response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    accept_encoding: str | None,
    minimum_compression_size: int | None,
) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body) of a response, compressed when AWS would compress it.

    A compressed response gets ``Content-Encoding`` and ``Vary: Accept-Encoding`` (added to a
    Vary the integration sent), and loses any Content-Length (the gateway frames the body).
    Otherwise the same list and body come back."""
    if not should_compress(status, headers, len(body), minimum_compression_size):
        return headers, body
    encoding = negotiate(accept_encoding)
    if encoding is None:
        return headers, body
    out: list[tuple[str, str]] = []
    vary = False
    for name, value in headers:
        lname = name.lower()
        if lname == "content-length":
            continue
        if lname == "vary":
            tokens = {t.strip().lower() for t in value.split(",")}
            if "accept-encoding" not in tokens and "*" not in tokens:
                value = f"{value}, Accept-Encoding" if value.strip() else "Accept-Encoding"
            vary = True
        out.append((name, value))
    out.append(("Content-Encoding", encoding))
    if not vary:
        out.append(("Vary", "Accept-Encoding"))
    return out, compress(body, encoding)


# --------------------------------------------------------------------- request decompression
def decompress_request(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body of a request with ``Content-Encoding``, decompressed, at most ``max_bytes`` long.

    Codings: gzip (x-gzip), deflate (zlib-wrapped as RFC 9110 defines it, or the raw deflate
    some clients send), identity; a list (``gzip, identity``) is undone from the last. An empty
    body stays empty. ContentError 415 for any other coding or a body that is not what its
    coding says (truncated, corrupt, trailing bytes); 413 when it inflates past ``max_bytes``.
    """
    if not content_encoding:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return body
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise _unsupported()
    if not body:
        return body
    for coding in reversed(codings):
        body = _inflate(body, coding != "deflate", max_bytes)
    return body


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib (RFC 1950) header: CM 8, a window <= 32K, FCHECK."""
    if len(data) < 2:
        return False
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


def _inflate(data: bytes, is_gzip: bool, max_bytes: int) -> bytes:
    if is_gzip:
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
    out: list[bytes] = []
    total = 0
    d = zlib.decompressobj(wbits)
    pending = data
    while True:
        try:
            chunk = d.decompress(pending, INFLATE_CHUNK)
        except zlib.error:
            raise _unsupported() from None
        total += len(chunk)
        if total > max_bytes:
            raise _too_large()
        out.append(chunk)
        if d.eof:
            rest = d.unused_data
            if not rest:
                break
            if is_gzip and rest.strip(b"\0"):
                d = zlib.decompressobj(wbits)  # another gzip member (RFC 1952 2.2)
                pending = rest
                continue
            if is_gzip:
                break  # zero padding after the last member (tape-style writers)
            raise _unsupported()  # bytes after the end of a zlib / deflate stream
        pending = d.unconsumed_tail
        if not pending and len(chunk) < INFLATE_CHUNK:
            raise _unsupported()  # all input read, no end of stream: truncated
    return b"".join(out)

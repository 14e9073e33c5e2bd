"""Unit tests of fastgw.pipeline.content: binary media types, AWS's contentHandling tables,
response compression and bounded request decompression, on real gzip / zlib data."""

from __future__ import annotations

import base64
import gzip
import time
import zlib

import pytest

from fastgw.pipeline import content
from fastgw.pipeline.content import (
    CONVERT_TO_BINARY,
    CONVERT_TO_TEXT,
    BinaryTypes,
    ContentError,
    check_content_handling,
    check_minimum_compression_size,
    compress,
    compress_response,
    convert_request,
    convert_response,
    decompress_request,
    negotiate,
    should_compress,
)
from fastgw.server import replies

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
PNG_B64 = base64.b64encode(PNG)
TEXT = b'{"message": "h\xc3\xa9llo"}'


# ======================================================================== media types
@pytest.mark.parametrize(
    ("patterns", "content_type", "expected"),
    [
        (["image/png"], "image/png", True),
        (["image/png"], "IMAGE/PNG", True),
        (["image/png"], "image/png; charset=binary", True),
        (["image/png"], " image/png ;q=1", True),
        (["image/png"], "image/jpeg", False),
        (["image/png"], "image/pngx", False),
        (["image/png"], None, False),
        (["image/*"], "image/webp", True),
        (["image/*"], "image", False),
        (["image/*"], "application/octet-stream", False),
        (["Image/*"], "image/gif", True),
        (["*/*"], "text/plain", True),
        (["*/*"], None, True),
        (["image~1png"], "image/png", True),
        (["application~1*"], "application/zip", True),
        (["application/octet-stream; q=1"], "application/octet-stream", True),
        ([], "image/png", False),
        ([], None, False),
        (["image/png", "application/pdf", "audio/*"], "audio/mpeg", True),
    ],
)
def test_binary_types_match(patterns: list[str], content_type: str | None, expected: bool) -> None:
    assert BinaryTypes(patterns).matches(content_type) is expected


@pytest.mark.parametrize(
    "pattern", ["image", "", "*/png", "image/", "/png", "image/p*", "a/b/c", "im age/png"]
)
def test_binary_types_invalid(pattern: str) -> None:
    with pytest.raises(ValueError):
        BinaryTypes([pattern])


def test_binary_types_state() -> None:
    types = BinaryTypes(["IMAGE~1PNG", "audio/*; x=1"])
    assert types.patterns == ("image/png", "audio/*")
    assert types and not BinaryTypes([])


@pytest.mark.parametrize(
    ("patterns", "accept", "expected"),
    [
        # AWS: a browser sends Accept:image/webp,image/*,*/*;q=0.8 -- only the first counts.
        (["image/jpeg"], "image/webp,image/*,*/*;q=0.8", False),
        (["image/webp"], "image/webp,image/*,*/*;q=0.8", True),
        (["image/*"], "image/webp,image/*,*/*;q=0.8", True),
        (["image/png"], "application/json, image/png", False),
        (["image/png"], "image/png;q=0.9, application/json", True),
        (["image/png"], "*/*", False),
        (["*/*"], "*/*", True),
        (["*/*"], None, True),
        (["image/png"], None, False),
    ],
)
def test_accept_is_binary(patterns: list[str], accept: str | None, expected: bool) -> None:
    assert BinaryTypes(patterns).accept_is_binary(accept) is expected


# ======================================================================== conversions
# AWS "API Request Content Type Conversions in API Gateway": (payload, binaryMediaTypes match,
# contentHandling) -> integration request payload.
@pytest.mark.parametrize(
    ("body", "binary", "handling", "expected"),
    [
        (TEXT, False, None, TEXT),  # text, no binary types: UTF-8 string
        (PNG_B64, False, CONVERT_TO_BINARY, PNG),  # text: base64-decoded blob
        (TEXT, False, CONVERT_TO_TEXT, TEXT),  # text: UTF-8 string
        (PNG, True, None, PNG),  # binary: binary data
        (PNG, True, CONVERT_TO_BINARY, PNG),  # binary: binary data
        (PNG, True, CONVERT_TO_TEXT, PNG_B64),  # binary: base64-encoded string
    ],
)
def test_convert_request_table(body: bytes, binary: bool, handling: str | None, expected: bytes) -> None:
    got = convert_request(body, binary, handling)
    assert type(got) is bytes and got == expected


@pytest.mark.parametrize(
    ("body", "binary", "handling", "expected"),
    [
        (TEXT, False, None, TEXT.decode()),
        (TEXT, False, CONVERT_TO_TEXT, TEXT.decode()),
        (PNG, True, None, PNG_B64.decode()),  # a template only reads binary as base64 text
        (PNG, True, CONVERT_TO_TEXT, PNG_B64.decode()),
        (b"\xff\xfe", False, None, "\ufffd\ufffd"),  # "text" that is not UTF-8
    ],
)
def test_convert_request_for_a_template(
    body: bytes, binary: bool, handling: str | None, expected: str
) -> None:
    got = convert_request(body, binary, handling, template=True)
    assert type(got) is str and got == expected


def test_convert_request_to_binary_takes_no_template() -> None:
    assert convert_request(PNG_B64, False, CONVERT_TO_BINARY, template=True) == PNG
    assert convert_request(PNG, True, CONVERT_TO_BINARY, template=True) == PNG


def test_convert_request_base64_with_line_breaks() -> None:
    wrapped = base64.encodebytes(PNG * 10)  # MIME: a line break every 76 characters
    assert b"\n" in wrapped
    assert convert_request(wrapped, False, CONVERT_TO_BINARY) == PNG * 10


@pytest.mark.parametrize("body", [b"not base64!", b"QUJ", b"\xff"])
def test_convert_request_bad_base64_is_a_500(body: bytes) -> None:
    with pytest.raises(ContentError) as ex:
        convert_request(body, False, CONVERT_TO_BINARY)
    assert ex.value.status == 500
    assert ex.value.reply is replies.INTERNAL_ERROR


def test_convert_request_invalid_handling() -> None:
    with pytest.raises(ValueError):
        convert_request(TEXT, False, "CONVERT_TO_JSON")
    with pytest.raises(ValueError):
        convert_response(TEXT, False, False, "CONVERT_TO_JSON")


# AWS "API Gateway Response Content Type Conversions": (integration payload, Accept,
# contentHandling) -> method response payload. Without binaryMediaTypes both are text.
@pytest.mark.parametrize(
    ("body", "binary", "accept_binary", "handling", "expected"),
    [
        # binaryMediaTypes undefined: text or binary data, a text Accept
        (TEXT, False, False, None, TEXT),
        (PNG_B64, False, False, CONVERT_TO_BINARY, PNG),
        (TEXT, False, False, CONVERT_TO_TEXT, TEXT),
        # binaryMediaTypes set: text data
        (TEXT, False, False, None, TEXT),
        (PNG_B64, False, False, CONVERT_TO_BINARY, PNG),
        (TEXT, False, False, CONVERT_TO_TEXT, TEXT),
        (PNG_B64, False, True, None, PNG),
        (PNG_B64, False, True, CONVERT_TO_BINARY, PNG),
        (TEXT, False, True, CONVERT_TO_TEXT, TEXT),
        # binaryMediaTypes set: binary data
        (PNG, True, False, None, PNG_B64),
        (PNG, True, False, CONVERT_TO_BINARY, PNG),
        (PNG, True, False, CONVERT_TO_TEXT, PNG_B64),
        (PNG, True, True, None, PNG),
        (PNG, True, True, CONVERT_TO_BINARY, PNG),
        (PNG, True, True, CONVERT_TO_TEXT, PNG_B64),
    ],
)
def test_convert_response_table(
    body: bytes, binary: bool, accept_binary: bool, handling: str | None, expected: bytes
) -> None:
    assert convert_response(body, binary, accept_binary, handling) == expected


def test_convert_response_end_to_end() -> None:
    types = BinaryTypes(["image/png"])
    # A function returns a PNG base64-encoded as text; the browser asks for the image.
    binary = types.matches("application/json")
    accept_binary = types.accept_is_binary("image/png,*/*")
    assert convert_response(PNG_B64, binary, accept_binary, None) == PNG


@pytest.mark.parametrize("handling", [None, CONVERT_TO_BINARY])
def test_convert_response_bad_base64_is_a_500(handling: str | None) -> None:
    with pytest.raises(ContentError) as ex:
        convert_response(b"{not base64}", False, True, handling)
    assert ex.value.status == 500


def test_check_content_handling() -> None:
    for value in (None, CONVERT_TO_BINARY, CONVERT_TO_TEXT):
        check_content_handling(value)
    for bad in ("", "convert_to_text", "PASSTHROUGH"):
        with pytest.raises(ValueError):
            check_content_handling(bad)


# ======================================================================== negotiation
@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        # The formats AWS lists as supported (api-gateway-enable-compression).
        ("deflate,gzip", "deflate"),
        ("", None),
        ("*", "gzip"),
        ("deflate;q=0.5,gzip;q=1.0", "gzip"),
        ("gzip;q=1.0,identity;q=0.5,*;q=0", "gzip"),
        # No header: "the default value is * ... API Gateway does not compress the payload".
        (None, None),
        ("gzip", "gzip"),
        ("GZip", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate, br", "gzip"),  # browsers
        ("gzip, deflate, br, zstd", "gzip"),
        ("br, gzip", "gzip"),  # unsupported codings are passed over
        # "The highest-priority content encoding must be one supported by API Gateway."
        ("br;q=1.0, gzip;q=0.8", None),
        ("zstd", None),
        ("identity", None),
        ("identity, gzip", None),
        ("identity;q=0.5, gzip", "gzip"),
        ("gzip;q=0", None),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip;q=0.000", None),
        ("*;q=0", None),
        ("*;q=0.5, gzip;q=0.1", "deflate"),  # * stands for what is not named
        ("*, gzip;q=0.2, deflate;q=0.1", None),  # * can only be an unnamed, unsupported coding
        ("gzip;q=abc, deflate;q=0.5", "deflate"),  # a malformed q drops the entry
        ("gzip;q=2", None),
        ("gzip ; q=0.9 , deflate ; q=0.8", "gzip"),
        ("gzip;level=1", "gzip"),
        (",, ,", None),
    ],
)
def test_negotiate(accept_encoding: str | None, expected: str | None) -> None:
    assert negotiate(accept_encoding) == expected
    assert negotiate(accept_encoding) == expected  # cached


def test_negotiate_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content, "_NEGOTIATED", {})
    for i in range(content._NEGOTIATED_MAX + 50):
        assert negotiate(f"x-{i};q=0.05, gzip;q=0.{i % 9 + 1}") == "gzip"
    assert len(content._NEGOTIATED) == content._NEGOTIATED_MAX


# ======================================================================== compression
@pytest.mark.parametrize(
    ("status", "headers", "body_len", "minimum", "expected"),
    [
        (200, [], 100, None, False),  # compression off
        (200, [], 100, 0, True),
        (200, [], 0, 0, False),  # nothing to compress
        (200, [], 99, 100, False),
        (200, [], 100, 100, True),  # "greater than or equal to"
        (200, [("Content-Encoding", "gzip")], 1000, 0, False),
        (200, [("content-encoding", "identity")], 1000, 0, False),
        (204, [], 100, 0, False),
        (304, [], 100, 0, False),
        (101, [], 100, 0, False),
        (404, [], 100, 0, True),
        (500, [("Content-Type", "application/json")], 100, 10, True),
    ],
)
def test_should_compress(
    status: int, headers: list[tuple[str, str]], body_len: int, minimum: int | None, expected: bool
) -> None:
    assert should_compress(status, headers, body_len, minimum) is expected


def test_compress_round_trips() -> None:
    body = b'{"pets": [' + b'{"type": "dog", "price": 249.99},' * 200 + b"]}"
    gz = compress(body, "gzip")
    assert gz[:2] == b"\x1f\x8b" and gzip.decompress(gz) == body
    assert compress(body, "gzip") == gz  # mtime 0: deterministic
    zl = compress(body, "deflate")
    assert content._zlib_header(zl) and zlib.decompress(zl) == body
    assert len(gz) < len(body) // 10
    with pytest.raises(ValueError):
        compress(body, "br")


def test_compress_response() -> None:
    body = b"x" * 2000
    headers = [("Content-Type", "text/plain"), ("Content-Length", "2000")]
    out, data = compress_response(200, headers, body, "gzip, deflate, br", 1024)
    assert out == [("Content-Type", "text/plain"), ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    assert gzip.decompress(data) == body
    out, data = compress_response(200, [("Vary", "Origin")], body, "deflate", 0)
    assert out == [("Vary", "Origin, Accept-Encoding"), ("Content-Encoding", "deflate")]
    assert zlib.decompress(data) == body
    out, _ = compress_response(200, [("vary", "accept-encoding, Origin")], body, "gzip", 0)
    assert out == [("vary", "accept-encoding, Origin"), ("Content-Encoding", "gzip")]
    out, _ = compress_response(200, [("Vary", "")], body, "gzip", 0)
    assert out == [("Vary", "Accept-Encoding"), ("Content-Encoding", "gzip")]


@pytest.mark.parametrize(
    ("status", "headers", "accept_encoding", "minimum"),
    [
        (200, [], "gzip", None),
        (200, [], "gzip", 4096),
        (200, [("Content-Encoding", "br")], "gzip", 0),
        (204, [], "gzip", 0),
        (200, [], None, 0),
        (200, [], "br", 0),
        (200, [], "identity", 0),
    ],
)
def test_compress_response_unchanged(
    status: int, headers: list[tuple[str, str]], accept_encoding: str | None, minimum: int | None
) -> None:
    body = b"y" * 2000
    out, data = compress_response(status, headers, body, accept_encoding, minimum)
    assert out is headers and data is body


def test_check_minimum_compression_size() -> None:
    for value in (None, 0, 1, content.MAX_MINIMUM_COMPRESSION_SIZE):
        check_minimum_compression_size(value)
    for bad in (-1, content.MAX_MINIMUM_COMPRESSION_SIZE + 1, 1.5, True, "10"):
        with pytest.raises(ValueError):
            check_minimum_compression_size(bad)  # type: ignore[arg-type]


# ====================================================================== decompression
BODY = b'{"type": "dog", "price": 249.99}' * 100


def _corrupt(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (gzip.compress(BODY), "gzip"),
        (gzip.compress(BODY), "GZIP"),
        (gzip.compress(BODY), "x-gzip"),
        (zlib.compress(BODY), "deflate"),  # RFC 9110 deflate: zlib-wrapped
        (_raw_deflate(BODY), "deflate"),  # what some clients send
        (zlib.compress(BODY, 9), "deflate"),
        (zlib.compress(BODY, 1), "deflate"),
        (gzip.compress(BODY), "gzip, identity"),
        (gzip.compress(BODY), "identity, gzip"),
        (zlib.compress(gzip.compress(BODY)), "gzip, deflate"),  # undone from the last
        (gzip.compress(BODY[:100]) + gzip.compress(BODY[100:]), "gzip"),  # two members
        (gzip.compress(BODY) + b"\0" * 16, "gzip"),  # zero padding after the last member
        (BODY, "identity"),
        (BODY, None),
        (BODY, ""),
    ],
)
def test_decompress_request(encoded: bytes, encoding: str | None) -> None:
    assert decompress_request(encoded, encoding, 1 << 20) == BODY


def test_decompress_request_empty_body() -> None:
    assert decompress_request(b"", "gzip", 100) == b""


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (BODY, "br"),
        (BODY, "compress"),
        (BODY, "zstd"),
        (gzip.compress(BODY), "gzip, br"),
        (b"", "br"),  # an unsupported coding, even without a body
        (BODY, "gzip"),  # not gzip at all
        (BODY, "deflate"),
        (gzip.compress(BODY)[:-10], "gzip"),  # truncated
        (gzip.compress(BODY)[:20], "gzip"),
        (zlib.compress(BODY)[:-4], "deflate"),
        (zlib.compress(BODY) + b"trailing", "deflate"),
        (gzip.compress(BODY) + b"trailing", "gzip"),
        (_corrupt(gzip.compress(BODY), -8), "gzip"),  # bad CRC-32 in the trailer
        (_corrupt(gzip.compress(BODY), -4), "gzip"),  # bad length in the trailer
        (_corrupt(zlib.compress(BODY), -1), "deflate"),  # bad Adler-32
        (zlib.compress(BODY), "gzip"),  # the wrong coding
        (b"\x03", "deflate"),  # one byte: no zlib header, a truncated raw stream
    ],
)
def test_decompress_request_unsupported(encoded: bytes, encoding: str) -> None:
    with pytest.raises(ContentError) as ex:
        decompress_request(encoded, encoding, 1 << 20)
    assert ex.value.status == 415
    assert ex.value.message == "Unsupported Media Type"
    assert ex.value.reply is replies.UNSUPPORTED_MEDIA_TYPE
    assert ex.value.reply.body == b'{"message":"Unsupported Media Type"}'


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompress_request_limit(encoding: str) -> None:
    data = b"z" * 100_000
    encoded = compress(data, encoding)
    assert decompress_request(encoded, encoding, len(data)) == data  # exactly the limit
    with pytest.raises(ContentError) as ex:
        decompress_request(encoded, encoding, len(data) - 1)
    assert ex.value.status == 413
    assert ex.value.reply is replies.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompress_request_bomb_is_stopped_early(encoding: str) -> None:
    # 1 GiB of zeros in about 1 MB, as bombs are built: a full flush resets the compressor, so
    # every further 1 MiB block compresses to the same bytes, repeated (the trailer is never
    # reached: decompression must stop long before).
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    bomb = first + again * 1023
    assert len(bomb) < 2 << 20
    started = time.perf_counter()
    with pytest.raises(ContentError) as ex:
        decompress_request(bomb, encoding, 10 << 20)
    assert ex.value.status == 413
    assert time.perf_counter() - started < 2.0  # stopped at ~10 MB, not after 1 GiB
    # The stream is real: its first blocks inflate to zeros (then it ends without a trailer).
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    assert zlib.decompressobj(wbits).decompress(first + again * 2) == block * 3


def test_decompress_request_limit_spans_codings() -> None:
    data = b"q" * 50_000
    encoded = zlib.compress(gzip.compress(data))
    with pytest.raises(ContentError) as ex:
        decompress_request(encoded, "gzip, deflate", 40_000)
    assert ex.value.status == 413

"""Precomputed status lines and the gateway's own (local) replies.

Every byte that does not depend on the request is built here once, at import or at config
compile time (uvicorn's ``STATUS_LINE``). The request id and the connection header are the
only per-request parts of a local reply.
"""

from __future__ import annotations

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.server._reply_c", "fastgw.server._reply_py")

STATUS_LINE: dict[int, bytes] = _impl.STATUS_LINE
status_line = _impl.status_line
LocalReply = _impl.LocalReply

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CONN_CLOSE = b"connection: close\r\n"
CONN_KEEP_ALIVE = b"connection: keep-alive\r\n"


def aws_error(
    status: int,
    message: str,
    error_type: str | None = None,
    spaced: bool = False,
    extra: list[tuple[str, str]] | None = None,
    kind: str | None = None,
) -> LocalReply:
    """An AWS-style error reply: ``{"message":"..."}``, ``x-amzn-ErrorType`` and ``extra`` headers.

    ``kind`` is its gateway-response type; by default DEFAULT_4XX or DEFAULT_5XX by status."""
    sep = b'{"message": "' if spaced else b'{"message":"'
    body = sep + message.encode() + b'"}'
    headers = [("content-type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    if extra:
        headers.extend(extra)
    if kind is None:
        kind = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
    return LocalReply(status, headers, body, kind, message)


# The gateway's own errors, as AWS sends them.
MISSING_AUTH_TOKEN = aws_error(
    403,
    "Missing Authentication Token",
    "MissingAuthenticationTokenException",
    kind="MISSING_AUTHENTICATION_TOKEN",
)
NOT_FOUND = aws_error(404, "Not Found", "NotFoundException", kind="RESOURCE_NOT_FOUND")
BAD_REQUEST = aws_error(400, "Bad Request", "BadRequestException")
REQUEST_TIMEOUT = aws_error(408, "Request Timeout", "RequestTimeoutException")
PAYLOAD_TOO_LARGE = aws_error(413, "Request Too Long", "RequestTooLongException", kind="REQUEST_TOO_LARGE")
URI_TOO_LONG = aws_error(414, "Request-URI Too Long", "BadRequestException")
HEADERS_TOO_LARGE = aws_error(431, "Request Header Fields Too Large", "BadRequestException")
NOT_IMPLEMENTED = aws_error(501, "Not Implemented", "BadRequestException")
INTEGRATION_FAILURE = aws_error(
    502, "Internal server error", "InternalServerErrorException", spaced=True, kind="INTEGRATION_FAILURE"
)
INTEGRATION_TIMEOUT = aws_error(
    504, "Endpoint request timed out", "IntegrationTimeout", spaced=True, kind="INTEGRATION_TIMEOUT"
)
INTERNAL_ERROR = aws_error(500, "Internal server error", "InternalServerErrorException", spaced=True)
# A mapping produced something that cannot be sent (e.g. an upstream target with spaces).
CONFIGURATION_ERROR = aws_error(
    500, "Internal server error", "InternalServerErrorException", spaced=True, kind="API_CONFIGURATION_ERROR"
)
SERVICE_UNAVAILABLE = aws_error(503, "Service Unavailable", "ServiceUnavailableException")
UNSUPPORTED_MEDIA_TYPE = aws_error(
    415, "Unsupported Media Type", "UnsupportedMediaTypeException", kind="UNSUPPORTED_MEDIA_TYPE"
)

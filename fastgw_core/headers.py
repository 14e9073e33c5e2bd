"""Response-head rewrite facade: binds the compiled build unless missing or disabled.

``rewrite_response_head(raw, request_id, flags) -> (head, status, out_flags)``; see
``_headers_py`` for the rules. ``rewrite_response_head_py`` and ``rewrite_response_head_c``
(``None`` when the extension is not built) stay importable for tests and benchmarks.
"""

from collections.abc import Callable

from fastgw_core import _env
from fastgw_core._headers_py import IN_CLOSE, IN_HEAD, IN_HTTP10, IN_RAW, OUT_CHUNKED, OUT_CLOSE
from fastgw_core._headers_py import find_header as find_header_py
from fastgw_core._headers_py import has_header_line as has_header_line_py
from fastgw_core._headers_py import local_response as local_response_py
from fastgw_core._headers_py import relay_response as relay_response_py
from fastgw_core._headers_py import request_id as request_id_py
from fastgw_core._headers_py import rewrite_response_head as rewrite_response_head_py

__all__ = [
    "COMPILED",
    "IN_CLOSE",
    "IN_HEAD",
    "IN_HTTP10",
    "IN_RAW",
    "OUT_CHUNKED",
    "OUT_CLOSE",
    "find_header",
    "find_header_c",
    "find_header_py",
    "has_header_line",
    "has_header_line_c",
    "has_header_line_py",
    "local_response",
    "local_response_c",
    "local_response_py",
    "relay_response",
    "relay_response_c",
    "relay_response_py",
    "request_id",
    "request_id_c",
    "request_id_py",
    "rewrite_response_head",
    "rewrite_response_head_c",
    "rewrite_response_head_py",
]

Rewrite = Callable[[bytes, bytes, int], tuple[bytes, int, int]]

Relay = Callable[[bytes, bytes, int], tuple[bytes, int, int, bool, int] | None]

rewrite_response_head_c: Rewrite | None = None
relay_response_c: Relay | None = None
request_id_c: Callable[[bytes, int], bytes] | None = None
find_header_c: Callable[[list[tuple[str, str]], str], str | None] | None = None
HasLine = Callable[[list[bytes] | None, tuple[bytes, ...]], bool]
has_header_line_c: HasLine | None = None
LocalResponse = Callable[[bytes, bytes, bytes, bytes, bytes], bytes]
local_response_c: LocalResponse | None = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._headers_c import find_header as find_header_c
        from fastgw_core._headers_c import has_header_line as has_header_line_c
        from fastgw_core._headers_c import local_response as local_response_c
        from fastgw_core._headers_c import relay_response as relay_response_c
        from fastgw_core._headers_c import request_id as request_id_c
        from fastgw_core._headers_c import rewrite_response_head as rewrite_response_head_c
    except ImportError:  # pragma: no cover - depends on the build
        rewrite_response_head_c = None
        relay_response_c = None
        request_id_c = None
        find_header_c = None
        has_header_line_c = None
        local_response_c = None

COMPILED: bool = rewrite_response_head_c is not None

rewrite_response_head: Rewrite = (
    rewrite_response_head_c if rewrite_response_head_c is not None else rewrite_response_head_py
)

relay_response: Relay = relay_response_c if relay_response_c is not None else relay_response_py
request_id: Callable[[bytes, int], bytes] = request_id_c if request_id_c is not None else request_id_py
find_header: Callable[[list[tuple[str, str]], str], str | None] = (
    find_header_c if find_header_c is not None else find_header_py
)
has_header_line: HasLine = has_header_line_c if has_header_line_c is not None else has_header_line_py
local_response: LocalResponse = local_response_c if local_response_c is not None else local_response_py

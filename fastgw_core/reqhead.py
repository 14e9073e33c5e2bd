"""Request-head fast-path facade: binds the compiled build unless missing or disabled.

``parse_request_head(data, start, max_head, max_headers, max_url)`` takes a complete,
body-less, strictly well-formed request head or declines with ``None``; see ``_reqhead_py``.
``parse_request_head_py`` and ``parse_request_head_c`` (``None`` when not built) stay
importable for tests and benchmarks.
"""

from collections.abc import Callable

from fastgw_core import _env
from fastgw_core._reqhead_py import Result
from fastgw_core._reqhead_py import parse_request_head as parse_request_head_py

__all__ = ["COMPILED", "Result", "parse_request_head", "parse_request_head_c", "parse_request_head_py"]

Parse = Callable[[bytes, int, int, int, int], Result | None]

parse_request_head_c: Parse | None = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._reqhead_c import parse_request_head as parse_request_head_c
    except ImportError:  # pragma: no cover - depends on the build
        parse_request_head_c = None

COMPILED: bool = parse_request_head_c is not None

parse_request_head: Parse = (
    parse_request_head_c if parse_request_head_c is not None else parse_request_head_py
)

"""The usual mapped HTTP route without a coroutine: the build in use of ``_lean_py``
(compiled as ``_lean_c``; ``FASTGW_NO_EXTENSIONS=1`` selects the Python twin)."""

from __future__ import annotations

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.pipeline._lean_c", "fastgw.pipeline._lean_py")

LeanHttp = _impl.LeanHttp
LeanCall = _impl.LeanCall
upstream_head = _impl.upstream_head
render_path = _impl.render_path
uri_value = _impl.uri_value
lean_reply = _impl.lean_reply
length_line = _impl.length_line
HEAD_LINES = _impl.HEAD_LINES
bind = _impl.bind

"""Hot-path facade: binds the compiled build of ``_protocol_py`` unless missing or disabled.

``_protocol_py.py`` is compiled as ``_protocol_c`` (Cython pure-Python mode, types in
``_protocol_c.pxd``); ``FASTGW_NO_EXTENSIONS=1`` selects the Python build.
"""

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.server._protocol_c", "fastgw.server._protocol_py")

Exchange = _impl.Exchange
HttpProtocol = _impl.HttpProtocol
Pools = _impl.Pools
UpstreamConnection = _impl.UpstreamConnection
UpstreamPool = _impl.UpstreamPool
WorkerState = _impl.WorkerState
fwd_headers = _impl.fwd_headers
render_path = _impl.render_path
resolve_stage = _impl.resolve_stage
set_nodelay = _impl.set_nodelay

__all__ = [
    "COMPILED",
    "Exchange",
    "HttpProtocol",
    "Pools",
    "UpstreamConnection",
    "UpstreamPool",
    "WorkerState",
    "fwd_headers",
    "render_path",
    "resolve_stage",
    "set_nodelay",
]

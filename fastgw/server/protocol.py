"""Hot-path facade: binds the compiled build of ``_protocol_py`` unless missing or disabled.

``_protocol_py.py`` is compiled as ``_protocol_c`` (Cython pure-Python mode, types in
``_protocol_c.pxd``); ``FASTGW_NO_EXTENSIONS=1`` selects the Python build.
"""

from fastgw_core import _env

if not _env.NO_EXTENSIONS:
    try:
        from fastgw.server._protocol_c import (
            Exchange,
            HttpProtocol,
            Pools,
            UpstreamConnection,
            UpstreamPool,
            render_path,
            resolve_stage,
        )

        COMPILED = True
    except ImportError:  # pragma: no cover - depends on the build
        COMPILED = False
else:
    COMPILED = False

if not COMPILED:
    from fastgw.server._protocol_py import (  # type: ignore[assignment]
        Exchange,
        HttpProtocol,
        Pools,
        UpstreamConnection,
        UpstreamPool,
        render_path,
        resolve_stage,
    )

__all__ = [
    "COMPILED",
    "Exchange",
    "HttpProtocol",
    "Pools",
    "UpstreamConnection",
    "UpstreamPool",
    "render_path",
    "resolve_stage",
]

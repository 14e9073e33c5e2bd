"""The runtime objects of a compiled config, from the selected build.

The compiled build (``_runtime_c``, Cython pure-Python mode) unless ``FASTGW_NO_EXTENSIONS=1``
or it is not built; then the Python build (``_runtime_py``, the source of both). The compiled
protocol cimports the compiled types, so both are selected together.
"""

from __future__ import annotations

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.config._runtime_c", "fastgw.config._runtime_py")

ApiRuntime = _impl.ApiRuntime
FunctionRuntime = _impl.FunctionRuntime
MockRuntime = _impl.MockRuntime
PipelineHead = _impl.PipelineHead
ProxyIntegration = _impl.ProxyIntegration
RouteRuntime = _impl.RouteRuntime
RuntimeSnapshot = _impl.RuntimeSnapshot
Site = _impl.Site
StageRuntime = _impl.StageRuntime
Target = _impl.Target

__all__ = [
    "COMPILED",
    "ApiRuntime",
    "FunctionRuntime",
    "MockRuntime",
    "PipelineHead",
    "ProxyIntegration",
    "RouteRuntime",
    "RuntimeSnapshot",
    "Site",
    "StageRuntime",
    "Target",
]

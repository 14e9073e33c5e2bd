"""Tracing facade: binds the compiled build of ``_tracing_py`` unless missing or disabled.

``_tracing_py.py`` (the documentation of tracing is there) is compiled as ``_tracing_c``
(Cython pure-Python mode, as ``fastgw.server.protocol`` does); ``FASTGW_NO_EXTENSIONS=1``
selects the Python build.
"""

from fastgw_core import _env

_impl, COMPILED = _env.select("fastgw.telemetry._tracing_c", "fastgw.telemetry._tracing_py")

COUNTERS = _impl.COUNTERS
KIND_CLIENT = _impl.KIND_CLIENT
KIND_INTERNAL = _impl.KIND_INTERNAL
KIND_SERVER = _impl.KIND_SERVER
SAMPLERS = _impl.SAMPLERS
SCOPE_NAME = _impl.SCOPE_NAME
TRACES_PATH = _impl.TRACES_PATH
TraceContext = _impl.TraceContext
TraceSettings = _impl.TraceSettings
Tracer = _impl.Tracer
attr_bool = _impl.attr_bool
attr_int = _impl.attr_int
attr_str = _impl.attr_str
encode_request = _impl.encode_request
encode_span = _impl.encode_span
parse_traceparent = _impl.parse_traceparent
resolve = _impl.resolve

__all__ = [
    "COMPILED",
    "COUNTERS",
    "KIND_CLIENT",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "SAMPLERS",
    "SCOPE_NAME",
    "TRACES_PATH",
    "TraceContext",
    "TraceSettings",
    "Tracer",
    "attr_bool",
    "attr_int",
    "attr_str",
    "encode_request",
    "encode_span",
    "parse_traceparent",
    "resolve",
]

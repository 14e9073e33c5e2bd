"""AWS API Gateway mapping templates (VTL): parse once at config load, render per request.

See ``fastgw.mapping.vtl`` for the variables and behaviour, ``fastgw.mapping._engine`` for what
differs from airspeed-ext, ``fastgw.mapping.jsonpath`` for the JSONPath dialect.
"""

from fastgw.mapping.vtl import (
    InvalidJsonBody,
    MappingTemplate,
    Rendered,
    RequestContext,
    RequestOverride,
    ResponseOverride,
    TemplateError,
    TemplateInput,
    context_from_request,
    error_context,
    input_from_event,
    render,
)

__all__ = [
    "InvalidJsonBody",
    "MappingTemplate",
    "Rendered",
    "RequestContext",
    "RequestOverride",
    "ResponseOverride",
    "TemplateError",
    "TemplateInput",
    "context_from_request",
    "error_context",
    "input_from_event",
    "render",
]

"""Plugins: the public API (``Plugin``, ``Request``, ``Response``) and the built-in ones."""

from fastgw.pipeline.gateway_responses import gateway_error
from fastgw.pipeline.request import Request, Response
from fastgw.plugins.base import NoConfig, Plugin, registry

__all__ = ["NoConfig", "Plugin", "Request", "Response", "gateway_error", "registry"]

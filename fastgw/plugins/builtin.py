"""Plugins that ship with fastgw (enable them like any other, by name)."""

from __future__ import annotations

import msgspec

from fastgw.pipeline.request import Request, Response
from fastgw.plugins.base import Plugin


class HeaderTransformConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Header edits: `set` replaces (or adds), `remove` drops; request and response sides."""

    request_set: dict[str, str] = msgspec.field(default_factory=dict)
    request_remove: list[str] = msgspec.field(default_factory=list)
    response_set: dict[str, str] = msgspec.field(default_factory=dict)
    response_remove: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for name in [*self.request_set, *self.request_remove, *self.response_set, *self.response_remove]:
            if not name or any(c in name for c in " :\r\n\t"):
                raise msgspec.ValidationError(f"invalid header name {name!r}")
        for value in [*self.request_set.values(), *self.response_set.values()]:
            if "\r" in value or "\n" in value:
                raise msgspec.ValidationError(f"invalid header value {value!r}")


class HeaderTransform(Plugin):
    """Set or remove request headers before the integration and response headers after it."""

    name = "header-transform"
    priority = 800
    Config = HeaderTransformConfig

    def access(self, req: Request) -> Response | None:
        conf: HeaderTransformConfig = self.config
        for name in conf.request_remove:
            req.set_header(name, None)
        for name, value in conf.request_set.items():
            req.set_header(name, value)
        return None

    def response(self, req: Request, resp: Response) -> None:
        conf: HeaderTransformConfig = self.config
        for name in conf.response_remove:
            resp.set_header(name, None)
        for name, value in conf.response_set.items():
            resp.set_header(name, value)

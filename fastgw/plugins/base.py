"""The plugin API: a class with a name, a priority, a ``Config`` Struct and phase methods.

A plugin extends the request pipeline of the routes it is enabled on::

    import msgspec
    from fastgw.plugins import Plugin, Request, Response

    class AddHeader(Plugin):
        name = "add-header"
        priority = 500

        class Config(msgspec.Struct, forbid_unknown_fields=True):
            header: str
            value: str

        def access(self, req: Request) -> Response | None:
            req.set_header(self.config.header, self.config.value)
            return None

Phases (``fastgw.pipeline.order.PHASES`` is the one place that orders them with the built-in
stages; ``fastgw routes --explain`` prints it for a route):

- ``rewrite(req)``: before any access check (authorizer, API key, throttle). Edit the request,
  or return a ``Response`` to end the request with it.
- ``access(req)``: after the authorizer, API key and throttle stages, before the integration.
  Same contract as ``rewrite`` (an HMAC signature check belongs here).
- ``response(req, resp)``: after the integration; edit ``resp`` (status, headers, body) in place.
- ``log(req, resp)``: after the response is written. It must not block: enqueue and return.

Each phase method may be a plain or an ``async def``. Within a phase, plugins run by
descending ``priority`` (ties: by name). A phase method that raises ends the request with a
500 and a generic body; the log names the plugin and the phase; the worker carries on.

Plugins register by subclassing (a non-empty ``name``). Third-party plugins are found in the
modules listed in the config's ``plugin_modules`` and in the ``fastgw.plugins`` entry-point
group (each entry point names a module or a ``Plugin`` subclass). One instance is made per
``plugins`` entry when the config is loaded, shared by every route that entry covers.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import msgspec

from fastgw.pipeline.request import Request, Response

#: Phase method names, in pipeline order (see fastgw.pipeline.order for the whole order).
PHASE_METHODS = ("rewrite", "access", "response", "log")


class NoConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The config of a plugin that takes none."""


_REGISTRY: dict[str, type[Plugin]] = {}


class Plugin:
    """Base class of plugins. Override ``name``, ``priority``, ``Config`` and some phases."""

    #: Unique name, used in the config (``plugins: [{name: ...}]``).
    name: ClassVar[str] = ""
    #: Within a phase, higher runs first.
    priority: ClassVar[int] = 1000
    #: A msgspec Struct validating the plugin's ``config`` (unknown fields are best refused).
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, config: Any) -> None:
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            other = _REGISTRY.get(cls.name)
            if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
                raise ValueError(
                    f"plugin name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}"
                )
            _REGISTRY[cls.name] = cls

    # Phase methods. The base versions are never called: the pipeline binds only overrides.
    def rewrite(self, req: Request) -> Response | None:  # pragma: no cover - marker
        return None

    def access(self, req: Request) -> Response | None:  # pragma: no cover - marker
        return None

    def response(self, req: Request, resp: Response) -> None:  # pragma: no cover - marker
        return None

    def log(self, req: Request, resp: Response) -> None:  # pragma: no cover - marker
        return None


def registry() -> dict[str, type[Plugin]]:
    """Registered plugin classes by name (built-ins, plugin_modules and entry points loaded)."""
    return _REGISTRY


def phases_of(cls: type[Plugin]) -> list[str]:
    """The phases a plugin class implements (overrides of the base methods)."""
    return [m for m in PHASE_METHODS if getattr(cls, m) is not getattr(Plugin, m)]


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)

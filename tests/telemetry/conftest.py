"""Shared fixtures of the telemetry tests."""

from __future__ import annotations

import importlib
from types import ModuleType, SimpleNamespace

import pytest

from tests.core.conftest import require_compiled


class Route(SimpleNamespace):
    """A stand-in route: keys by identity (RouteRuntime: eq=False)."""

    __hash__ = object.__hash__


def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The module ``request.param`` names: a ``_py`` twin, or its ``_c`` build, which fails the
    test when it is missing unless FASTGW_NO_EXTENSIONS is set (then it skips), as the core
    kernels' tests do."""
    name: str = request.param
    try:
        return importlib.import_module(name)
    except ImportError:
        if not name.endswith("_c"):
            raise
        return require_compiled(None, name)  # type: ignore[no-any-return]

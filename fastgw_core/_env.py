"""Build selection switch (cf. aiohttp ``helpers.NO_EXTENSIONS``)."""

import importlib
import os
from types import ModuleType

NO_EXTENSIONS: bool = bool(os.environ.get("FASTGW_NO_EXTENSIONS"))


def select(compiled: str, python: str) -> tuple[ModuleType, bool]:
    """The module ``compiled`` (a Cython build) unless extensions are disabled or it is not
    built, else its pure-Python twin ``python``; and whether the compiled one was taken."""
    if not NO_EXTENSIONS:
        try:
            return importlib.import_module(compiled), True
        except ImportError:  # pragma: no cover - depends on the build
            pass
    return importlib.import_module(python), False

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
            module = importlib.import_module(compiled)
        except ImportError:  # pragma: no cover - depends on the build
            pass
        else:
            # A pure-mode source's build copy (``X_c.py``, left by setup.py in a source tree
            # whose extensions went into a wheel elsewhere) is not the compiled build.
            if not (getattr(module, "__file__", None) or "").endswith(".py"):
                return module, True
    return importlib.import_module(python), False

"""Request-path normalisation facade: binds the compiled build unless missing or disabled.

``normalize_path`` is the selected build; ``normalize_path_py`` and ``normalize_path_c``
(``None`` when the extension is not built) stay importable for tests and benchmarks.
"""

from collections.abc import Callable

from fastgw_core import _env
from fastgw_core._urlnorm_py import normalize_path as normalize_path_py

__all__ = ["COMPILED", "normalize_path", "normalize_path_c", "normalize_path_py"]

normalize_path_c: Callable[[str], str] | None = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._urlnorm_c import normalize_path as normalize_path_c
    except ImportError:  # pragma: no cover - depends on the build
        normalize_path_c = None

COMPILED: bool = normalize_path_c is not None

normalize_path: Callable[[str], str] = normalize_path_c if normalize_path_c is not None else normalize_path_py

"""Public typing of the request-path normalisation facade (both builds share it)."""

from collections.abc import Callable
from typing import Final

__all__ = ["COMPILED", "normalize_path", "normalize_path_c", "normalize_path_py"]

COMPILED: Final[bool]

def normalize_path(raw: str) -> str:
    """Return the normal form of the request path ``raw``; raise ``InvalidPathError``."""

def normalize_path_py(raw: str) -> str: ...

normalize_path_c: Callable[[str], str] | None

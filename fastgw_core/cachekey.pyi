"""Public typing of the response-cache key facade (both builds share it)."""

from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = [
    "COMPILED",
    "KEY_VERSION",
    "KINDS",
    "KeySpec",
    "KeySpecC",
    "KeySpecPy",
    "cache_key",
    "cache_key_c",
    "cache_key_py",
    "key_hash",
    "parse_key",
    "parse_parameter",
]

COMPILED: Final[bool]
KEY_VERSION: Final[int]
KINDS: Final[tuple[str, ...]]

Value = str | Sequence[str] | None

def cache_key(method: str, resource: str, parts: Sequence[tuple[str, str, Value]]) -> bytes:
    """The key of ``method`` + ``resource`` + the parameters ``(kind, name, value)``."""

def cache_key_py(method: str, resource: str, parts: Sequence[tuple[str, str, Value]]) -> bytes: ...

cache_key_c: Callable[[str, str, Sequence[tuple[str, str, Value]]], bytes] | None

def key_hash(key: bytes) -> int:
    """blake2b-64 of the key, little-endian unsigned (0 <= h < 2**64)."""

def parse_key(key: bytes) -> tuple[str, str, list[tuple[str, str, tuple[str, ...]]]]:
    """``(method, resource, [(kind, name, values), ...])``; ValueError if malformed."""

def parse_parameter(text: str) -> tuple[str, str]:
    """``"method.request.header.Accept"`` -> ``("header", "Accept")``."""

class KeySpec:
    """A route's key recipe, prepared once: ``build`` makes the key of one request."""

    @property
    def resource(self) -> str: ...
    @property
    def params(self) -> tuple[tuple[str, str], ...]:
        """``(kind, name)`` in canonical order, header names lower-cased."""
    def __init__(self, resource: str, params: Sequence[tuple[str, str]] = ()) -> None: ...
    def build(
        self,
        method: str,
        header: Callable[[str], str | None],
        query: str | bytes,
        path_params: Mapping[str, str] | None,
    ) -> bytes:
        """The key of one request; ``header`` gets lower-cased names, ``query`` is raw."""

KeySpecPy: type[KeySpec]
KeySpecC: type[KeySpec] | None

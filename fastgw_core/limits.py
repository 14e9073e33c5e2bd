"""Shared rate-limit table facade: binds the compiled build unless it is missing or disabled.

``SharedTable`` is the selected build; ``SharedTablePy`` and ``SharedTableC`` (``None`` when the
extension is not built) stay importable for tests and benchmarks. See ``_limits_py`` for the
slot layout and the rules, which both builds share.

The supervisor sizes and maps the table once, before it forks its workers::

    buf = mmap.mmap(-1, table_bytes(4096))  # MAP_SHARED | MAP_ANONYMOUS, zero-filled
    table = SharedTable(buf, 4096)          # also before fork (the Python build's lock)
    ...fork...
    i = table.find(key_hash("usage-plan:abc/key:123"))
    wait = table.take(i, rate=100.0, burst=200.0, now=loop.time())

``table_bytes`` and ``key_hash`` are plain Python: they run at configuration time or once per
key, not per slot operation.
"""

import hashlib
from typing import Any

from fastgw_core import _env
from fastgw_core._limits_py import MAX_PROBES, SLOT_BYTES
from fastgw_core._limits_py import SharedTable as SharedTablePy

__all__ = [
    "COMPILED",
    "MAX_PROBES",
    "SLOT_BYTES",
    "SharedTable",
    "SharedTableC",
    "SharedTablePy",
    "key_hash",
    "table_bytes",
]

SharedTableC: Any = None
if not _env.NO_EXTENSIONS:
    try:
        from fastgw_core._limits_c import SharedTable as SharedTableC
    except ImportError:  # pragma: no cover - depends on the build
        SharedTableC = None

COMPILED: bool = SharedTableC is not None

SharedTable: Any = SharedTableC if COMPILED else SharedTablePy


def table_bytes(nslots: int) -> int:
    """Buffer size for ``nslots`` slots (a power of two)."""
    if nslots <= 0 or nslots & (nslots - 1):
        raise ValueError("nslots must be a power of two")
    return nslots * SLOT_BYTES


def key_hash(name: str | bytes) -> int:
    """The slot hash of a limit key: blake2b-64 of its UTF-8 bytes, little-endian, never 0."""
    data = name.encode() if isinstance(name, str) else name
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") or 1

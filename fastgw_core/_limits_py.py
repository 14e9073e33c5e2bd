"""Shared rate-limit table, pure-Python build (the specification).

A ``SharedTable`` lays fixed 64-byte slots over a writable buffer that forked worker
processes share (the supervisor maps ``mmap.mmap(-1, table_bytes(n))`` before it forks, which
on Linux is MAP_SHARED|MAP_ANONYMOUS). A slot holds one token bucket and one quota counter,
found by a nonzero 64-bit key hash. No I/O: ``now`` is passed in (seconds, CLOCK_MONOTONIC,
which every process on the node shares).

Slot layout, little-endian, the same in both builds so either build reads what the other
wrote::

    0  uint64 hash       0 = empty; set once when a slot is claimed, never cleared
    8  uint32 lock       compiled build: pid of the process in the slot (0 = free)
    12 uint32 reserved
    16 double tokens
    24 double last       0.0 = a new bucket, which starts full
    32 int64  period
    40 int64  count
    48 16 bytes reserved

Rules (both builds run the same arithmetic in the same order, so results are bit-identical):

- ``find(h)`` probes linearly from ``h & (nslots - 1)``, at most ``MAX_PROBES`` slots, and
  returns the slot holding ``h`` or claims the first empty one; ``-1`` when the window is full.
  A claim does not clear the slot: slots start zeroed because the buffer does (a fresh
  anonymous mmap or bytearray) and nothing frees a slot. Do not write unclaimed slots.
- Refill: a new bucket (``last == 0``) holds ``burst``. Otherwise, when ``now - last > 0`` and
  ``rate > 0``, ``tokens += (now - last) * rate``; then ``tokens`` is capped at ``burst``.
  ``last`` becomes ``now`` only if ``now > last``: an out-of-order ``now`` from another
  process never moves ``last`` back and never refills.
- ``take`` admits when ``tokens >= n`` (and takes ``n``) and returns ``0.0``; a refusal takes
  nothing and returns the wait, always ``> 0``: ``inf`` when the bucket can never hold ``n``
  (``rate <= 0`` or ``burst < n``), else ``(n - tokens) / rate`` (the smallest positive float
  if that underflows to 0). The refill is stored either way.
- ``take_many`` takes 1 token from each bucket in order; at the first refusal it refunds the
  buckets already taken (in order) and returns ``(position, wait)``; ``(-1, 0.0)`` when all
  were admitted. Indexes must be distinct (a duplicate is taken twice). Every index is
  checked before anything is taken.
- ``count`` is a fixed-window quota: a ``period`` different from the stored one resets the
  count to 0 (that reset is stored even when the call is refused); ``count + n <= limit``
  admits and returns ``limit - count`` after the add, else ``-1`` with the count unchanged.
- Integers are int64 (period, count, limit, n): out-of-range arguments raise
  ``OverflowError``; an ``add`` that would overflow raises ``OverflowError`` and changes
  nothing; a ``count`` that would overflow is refused.

Concurrency: this build guards the whole table with one cross-process lock, created in
``__init__`` from the "fork" multiprocessing context; forked children inherit it. Construct the
table before forking, once, and use that same object in every worker: a second
``SharedTable`` over the same buffer has its own lock and is not exclusive with the first.
Never run both builds on one buffer at the same time (the compiled build locks per slot).
A process killed while it holds the lock leaves it held (POSIX semaphore).
"""

import multiprocessing
import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_PROBES", "SLOT_BYTES", "SharedTable"]

SLOT_BYTES = 64
MAX_PROBES = 64

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1
# A refusal never returns 0.0 (which means admitted), even when the wait underflows.
_MIN_WAIT = 5e-324
_INF = float("inf")

_HASH = struct.Struct("<Q")  # offset 0
_BUCKET = struct.Struct("<dd")  # offset 16: tokens, last
_COUNTER = struct.Struct("<qq")  # offset 32: period, count
_hash_at = _HASH.unpack_from
_hash_put = _HASH.pack_into
_bucket_at = _BUCKET.unpack_from
_bucket_put = _BUCKET.pack_into
_counter_at = _COUNTER.unpack_from
_counter_put = _COUNTER.pack_into


def _refill(tokens: float, last: float, rate: float, burst: float, now: float) -> float:
    """Tokens after refilling to ``now`` (the caller stores ``last = max(last, now)``)."""
    if last == 0.0:
        return burst
    elapsed = now - last
    if elapsed > 0.0 and rate > 0.0:
        tokens = tokens + elapsed * rate
    if tokens > burst:
        tokens = burst
    return tokens


def _wait(tokens: float, rate: float, burst: float, n: float) -> float:
    """Seconds until ``n`` tokens are available (refused take)."""
    if not rate > 0.0 or not burst >= n:
        return _INF
    wait = (n - tokens) / rate
    return wait if wait > 0.0 else _MIN_WAIT


def _check_i64(*values: int) -> None:
    for value in values:
        if not _I64_MIN <= value <= _I64_MAX:
            raise OverflowError("value out of int64 range")


class SharedTable:
    """Token buckets and quota counters in a buffer shared by forked processes."""

    __slots__ = ("_lock", "_mask", "_mv", "_nslots")

    def __init__(self, buf: Any, nslots: int) -> None:
        if nslots <= 0 or nslots & (nslots - 1):
            raise ValueError("nslots must be a power of two")
        mv = memoryview(buf)
        if mv.readonly:
            raise TypeError("buffer must be writable")
        mv = mv.cast("B")
        if mv.nbytes < nslots * SLOT_BYTES:
            raise ValueError(f"buffer too small: {nslots} slots need {nslots * SLOT_BYTES} bytes")
        self._mv = mv  # NOTE: an exported view; an mmap cannot be closed while the table lives
        self._nslots = nslots
        self._mask = nslots - 1
        self._lock = multiprocessing.get_context("fork").Lock()

    @property
    def nslots(self) -> int:
        return self._nslots

    def _offset(self, i: int) -> int:
        if not 0 <= i < self._nslots:
            raise IndexError("slot index out of range")
        return i * SLOT_BYTES

    # -- slots -------------------------------------------------------------------------------

    def find(self, h: int) -> int:
        """The slot of hash ``h`` (claimed if new), or -1 when the probe window is full."""
        if not 0 <= h <= _U64_MAX:
            raise OverflowError("hash out of uint64 range")
        if h == 0:
            raise ValueError("hash must be nonzero")
        mv, mask = self._mv, self._mask
        start = h & mask
        with self._lock:
            for k in range(min(MAX_PROBES, self._nslots)):
                j = (start + k) & mask
                (cur,) = _hash_at(mv, j * SLOT_BYTES)
                if cur == h:
                    return j
                if cur == 0:
                    _hash_put(mv, j * SLOT_BYTES, h)
                    return j
        return -1

    def used(self) -> int:
        """Number of claimed slots."""
        hashes = self._mv[: self._nslots * SLOT_BYTES].cast("Q")[:: SLOT_BYTES // 8]
        return self._nslots - hashes.tolist().count(0)

    # -- token buckets -----------------------------------------------------------------------

    def take(self, i: int, rate: float, burst: float, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 when admitted, else the wait in seconds (nothing taken)."""
        rate, burst, now, n = float(rate), float(burst), float(now), float(n)
        off = self._offset(i) + 16
        mv = self._mv
        with self._lock:
            tokens, last = _bucket_at(mv, off)
            tokens = _refill(tokens, last, rate, burst, now)
            if now > last:
                last = now
            if tokens >= n:
                _bucket_put(mv, off, tokens - n, last)
                return 0.0
            _bucket_put(mv, off, tokens, last)
        return _wait(tokens, rate, burst, n)

    def refund(self, i: int, burst: float, n: float = 1.0) -> None:
        """Give ``n`` tokens back, capped at ``burst``."""
        burst, n = float(burst), float(n)
        off = self._offset(i) + 16
        mv = self._mv
        with self._lock:
            tokens, last = _bucket_at(mv, off)
            tokens = tokens + n
            if tokens > burst:
                tokens = burst
            _bucket_put(mv, off, tokens, last)

    def take_levels(self, levels: Any, now: float) -> tuple[int, float] | None:
        """Take 1 token from each bucket of ``levels`` (a ``fastgw.traffic.limiter.Levels``: its
        ``single`` bucket, or its ``slots``, ``rates`` and ``bursts``) or from none: None, or
        ``(position, wait)`` of the first bucket that has none (as ``take_many``)."""
        single = levels.single
        if single is not None:
            wait = self.take(single.slot, single.rate, single.burst, now)
            return None if wait == 0.0 else (0, wait)
        got = self.take_many(levels.slots, levels.rates, levels.bursts, now)
        return None if got[0] == -1 else got

    def take_many(
        self, idx: Sequence[int], rates: Sequence[float], bursts: Sequence[float], now: float
    ) -> tuple[int, float]:
        """Take 1 token from every bucket or from none; ``(-1, 0.0)`` or ``(position, wait)``.

        The indexes must be distinct (the caller guarantees it).
        """
        m = len(idx)
        if len(rates) != m or len(bursts) != m:
            raise ValueError("idx, rates and bursts must have the same length")
        now = float(now)
        rs = [float(r) for r in rates]
        bs = [float(b) for b in bursts]
        offs = [self._offset(i) + 16 for i in idx]
        mv = self._mv
        with self._lock:
            for k in range(m):
                off, rate, burst = offs[k], rs[k], bs[k]
                tokens, last = _bucket_at(mv, off)
                tokens = _refill(tokens, last, rate, burst, now)
                if now > last:
                    last = now
                if tokens >= 1.0:
                    _bucket_put(mv, off, tokens - 1.0, last)
                    continue
                _bucket_put(mv, off, tokens, last)
                for j in range(k):  # refund what was taken, in order
                    back, last = _bucket_at(mv, offs[j])
                    back = back + 1.0
                    if back > bs[j]:
                        back = bs[j]
                    _bucket_put(mv, offs[j], back, last)
                return k, _wait(tokens, rate, burst, 1.0)
        return -1, 0.0

    def level(self, i: int, rate: float, burst: float, now: float) -> float:
        """Tokens available at ``now`` (the refill is stored), without taking any."""
        rate, burst, now = float(rate), float(burst), float(now)
        off = self._offset(i) + 16
        mv = self._mv
        with self._lock:
            tokens, last = _bucket_at(mv, off)
            tokens = _refill(tokens, last, rate, burst, now)
            if now > last:
                last = now
            _bucket_put(mv, off, tokens, last)
        return tokens

    def bucket(self, i: int) -> tuple[float, float]:
        """``(tokens, last)`` as stored."""
        off = self._offset(i) + 16
        with self._lock:
            tokens, last = _bucket_at(self._mv, off)
        return tokens, last

    def set_bucket(self, i: int, tokens: float, last: float) -> None:
        tokens, last = float(tokens), float(last)
        off = self._offset(i) + 16
        with self._lock:
            _bucket_put(self._mv, off, tokens, last)

    # -- quota counters ----------------------------------------------------------------------

    def count(self, i: int, period: int, limit: int, n: int = 1) -> int:
        """Add ``n`` if the quota allows: the remaining quota (>= 0), else -1 (nothing added)."""
        _check_i64(period, limit, n)
        off = self._offset(i) + 32
        mv = self._mv
        with self._lock:
            stored, count = _counter_at(mv, off)
            reset = stored != period
            if reset:
                count = 0
            new = count + n
            if new > limit or new < _I64_MIN:
                if reset:
                    _counter_put(mv, off, period, 0)
                return -1
            _counter_put(mv, off, period, new)
        return limit - new

    def add(self, i: int, period: int, n: int) -> int:
        """Add ``n`` (no limit; a new ``period`` resets first); the new count."""
        _check_i64(period, n)
        off = self._offset(i) + 32
        mv = self._mv
        with self._lock:
            stored, count = _counter_at(mv, off)
            if stored != period:
                count = 0
            new = count + n
            if not _I64_MIN <= new <= _I64_MAX:
                raise OverflowError("counter overflow")
            _counter_put(mv, off, period, new)
        return new

    def counter(self, i: int) -> tuple[int, int]:
        """``(period, count)`` as stored."""
        off = self._offset(i) + 32
        with self._lock:
            period, count = _counter_at(self._mv, off)
        return period, count

    def set_counter(self, i: int, period: int, count: int) -> None:
        _check_i64(period, count)
        off = self._offset(i) + 32
        with self._lock:
            _counter_put(self._mv, off, period, count)

    def __repr__(self) -> str:
        return f"<SharedTable {self._nslots} slots, {self.used()} used>"

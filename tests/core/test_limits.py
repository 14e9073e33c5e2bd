"""The shared rate-limit table: behaviour, build parity, layout, and exactness across processes.

Every behaviour test runs on both builds (``limits_impl``). The differential test replays
Hypothesis operation sequences on a Python and a compiled table and wants identical results
and identical buffer bytes; the multi-process tests fork workers that hammer one slot of an
mmap'd table, as the supervisor's workers do.
"""

import json
import math
import mmap
import os
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw_core import limits
from fastgw_core.limits import MAX_PROBES, SLOT_BYTES, key_hash, table_bytes

from .conftest import IMPLS, NO_EXTENSIONS, require_compiled

INF = math.inf
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
# offset 0 hash, 8 lock, 12 reserved, 16 tokens, 24 last, 32 period, 40 count
SLOT = struct.Struct("<QIIddqq")


@pytest.fixture(params=IMPLS, scope="session")
def limits_impl(request: pytest.FixtureRequest) -> type:
    """The ``SharedTable`` class of one build."""
    if request.param == "python":
        return limits.SharedTablePy
    return require_compiled(limits.SharedTableC, "limits")  # type: ignore[no-any-return]


def compiled_table() -> type:
    if limits.SharedTableC is None and not NO_EXTENSIONS:
        pytest.fail("compiled limits is not importable (set FASTGW_NO_EXTENSIONS=1 to skip it)")
    if limits.SharedTableC is None:
        pytest.skip("compiled limits disabled by FASTGW_NO_EXTENSIONS")
    return limits.SharedTableC  # type: ignore[no-any-return]


def new_table(cls: type, nslots: int = 16) -> Any:
    return cls(bytearray(table_bytes(nslots)), nslots)


def slot_of(table: Any, name: str = "k") -> int:
    i: int = table.find(key_hash(name))
    assert i >= 0
    return i


# -- helpers of the facade ---------------------------------------------------------------------


def test_facade() -> None:
    import fastgw_core

    assert SLOT_BYTES == 64 and MAX_PROBES == 64
    assert table_bytes(1) == 64 and table_bytes(1024) == 65536
    for bad in (0, 3, -4, 12):
        with pytest.raises(ValueError):
            table_bytes(bad)
    assert limits.COMPILED is (limits.SharedTableC is not None)
    assert fastgw_core.COMPILED["limits"] is limits.COMPILED
    assert limits.SharedTable is (limits.SharedTableC if limits.COMPILED else limits.SharedTablePy)


def test_key_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    digest = hashlib.blake2b(b"plan:gold/key:1", digest_size=8).digest()
    assert key_hash("plan:gold/key:1") == int.from_bytes(digest, "little")
    assert key_hash("plan:gold/key:1") == key_hash(b"plan:gold/key:1")
    assert key_hash("é") == key_hash("é".encode())
    assert key_hash("a") != key_hash("b")
    assert 0 < key_hash("") < 1 << 64

    class Zero:
        def digest(self) -> bytes:
            return bytes(8)

    monkeypatch.setattr(limits.hashlib, "blake2b", lambda *a, **k: Zero())
    assert key_hash("anything") == 1  # 0 means an empty slot


# -- construction --------------------------------------------------------------------------------


def test_construction(limits_impl: type) -> None:
    for bad in (0, 3, -4, 12):
        with pytest.raises(ValueError, match="power of two"):
            limits_impl(bytearray(4096), bad)
    with pytest.raises(ValueError, match="too small"):
        limits_impl(bytearray(table_bytes(16) - 1), 16)
    with pytest.raises(TypeError):
        limits_impl(bytes(table_bytes(4)), 4)
    with pytest.raises(TypeError):
        limits_impl(None, 4)
    t = limits_impl(bytearray(table_bytes(16) + 10), 16)  # a larger buffer is fine
    assert t.nslots == 16
    with pytest.raises(AttributeError):
        t.nslots = 32
    assert t.used() == 0
    m = mmap.mmap(-1, table_bytes(8))
    t = limits_impl(m, 8)
    assert t.take(t.find(5), 1.0, 1.0, 1.0) == 0.0
    del t


def test_index_errors(limits_impl: type) -> None:
    t = new_table(limits_impl, 8)
    calls: list[Callable[[int], object]] = [
        lambda i: t.take(i, 1.0, 1.0, 1.0),
        lambda i: t.refund(i, 1.0),
        lambda i: t.take_many([i], [1.0], [1.0], 1.0),
        lambda i: t.level(i, 1.0, 1.0, 1.0),
        lambda i: t.count(i, 1, 1),
        lambda i: t.add(i, 1, 1),
        lambda i: t.counter(i),
        lambda i: t.set_counter(i, 1, 1),
        lambda i: t.bucket(i),
        lambda i: t.set_bucket(i, 1.0, 1.0),
    ]
    for call in calls:
        for i in (-1, 8, 1 << 40):
            with pytest.raises(IndexError):
                call(i)
        call(7)


# -- find ----------------------------------------------------------------------------------------


def test_find(limits_impl: type) -> None:
    t = new_table(limits_impl, 16)
    h = key_hash("a")
    a = t.find(h)
    assert a == h & 15
    assert t.find(h) == a
    assert t.used() == 1
    assert t.bucket(a) == (0.0, 0.0) and t.counter(a) == (0, 0)  # claimed slots start zeroed
    names = [f"key-{k}" for k in range(8)]
    slots = [t.find(key_hash(n)) for n in names]
    assert len({a, *slots}) == 9
    assert [t.find(key_hash(n)) for n in names] == slots
    assert t.used() == 9
    with pytest.raises(ValueError):
        t.find(0)
    with pytest.raises(OverflowError):
        t.find(-1)
    with pytest.raises(OverflowError):
        t.find(1 << 64)


def test_find_probes_linearly(limits_impl: type) -> None:
    t = new_table(limits_impl, 16)
    # Colliding hashes take the next free slots, wrapping around the end of the table.
    assert [t.find(h) for h in (15, 31, 47, 14, (1 << 64) - 1)] == [15, 0, 1, 14, 2]
    assert [t.find(h) for h in ((1 << 64) - 1, 47, 31, 15, 14)] == [2, 1, 0, 15, 14]
    assert t.find(16) == 3
    assert t.used() == 6


def test_find_full_window(limits_impl: type) -> None:
    small = new_table(limits_impl, 8)  # the window is the whole table
    assert sorted(small.find(h) for h in range(1, 9)) == list(range(8))
    assert small.find(9) == -1
    assert small.find(3) == 3  # existing keys are still found
    big = new_table(limits_impl, 256)  # every hash starts at slot 0: the window is 64 slots
    assert [big.find(h * 256) for h in range(1, 65)] == list(range(64))
    assert big.find(65 * 256) == -1
    assert big.find(1) == 64  # a hash starting inside the full run lands after it
    assert big.used() == 65


# -- token buckets --------------------------------------------------------------------------------


def test_new_bucket_starts_full(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    assert [t.take(i, 2.0, 5.0, 100.0) for _ in range(5)] == [0.0] * 5
    assert t.take(i, 2.0, 5.0, 100.0) == 0.5  # (1 - 0) / 2
    assert t.bucket(i) == (0.0, 100.0)


def test_refill_cap_and_wait(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    t.set_bucket(i, 0.0, 10.0)
    assert t.take(i, 4.0, 10.0, 10.125) == 0.5 / 4.0  # 0.5 tokens after 1/8 s, 0.5 short
    assert t.bucket(i) == (0.5, 10.125)  # the refill is stored, nothing taken
    assert t.take(i, 4.0, 10.0, 10.25) == 0.0
    assert t.bucket(i) == (0.0, 10.25)
    assert t.level(i, 4.0, 10.0, 1000.0) == 10.0  # capped at burst
    assert t.take(i, 4.0, 10.0, 1000.0, 4.0) == 0.0
    assert t.level(i, 4.0, 10.0, 1000.0) == 6.0
    assert t.take(i, 4.0, 10.0, 1000.0, 8.0) == 0.5
    assert t.level(i, 4.0, 3.0, 1000.0) == 3.0  # a lower burst caps at once


def test_refused_forever(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    assert t.take(i, 0.0, 0.0, 5.0) == INF  # burst 0: never
    t.set_bucket(i, 0.0, 5.0)
    assert t.take(i, 0.0, 3.0, 50.0) == INF  # rate 0: no refill
    assert t.take(i, -1.0, 3.0, 50.0) == INF
    assert t.bucket(i) == (0.0, 50.0)
    assert t.take(i, 1.0, 2.0, 60.0, 3.0) == INF  # n above burst
    assert t.take(i, 1.0, 2.0, 60.0, 2.0) == 0.0
    assert t.take(i, 1e300, 2.0, 60.0) > 0.0  # an underflowing wait still means refused
    t.set_bucket(i, 0.0, 60.0)
    assert t.take(i, 1e300, 2.0, 60.0, 1e-300) == 5e-324


def test_out_of_order_now(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    t.set_bucket(i, 0.0, 10.0)
    assert t.take(i, 1.0, 5.0, 9.0) == 1.0  # earlier than last: no refill
    assert t.bucket(i) == (0.0, 10.0)  # and last does not move back
    assert t.level(i, 1.0, 5.0, 9.5) == 0.0
    assert t.take(i, 1.0, 5.0, 11.0) == 0.0
    assert t.bucket(i) == (0.0, 11.0)


def test_refund(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    t.set_bucket(i, 1.0, 7.0)
    t.refund(i, 3.0)
    assert t.bucket(i) == (2.0, 7.0)
    t.refund(i, 3.0, 5.0)
    assert t.bucket(i) == (3.0, 7.0)  # capped at burst, last unchanged


def test_take_many(limits_impl: type) -> None:
    t = new_table(limits_impl)
    a, b, c = slot_of(t, "a"), slot_of(t, "b"), slot_of(t, "c")
    assert t.take_many([], [], [], 1.0) == (-1, 0.0)
    assert t.take_many([a, b, c], [1.0, 1.0, 1.0], [2.0, 1.0, 3.0], 1.0) == (-1, 0.0)
    assert [t.bucket(k)[0] for k in (a, b, c)] == [1.0, 0.0, 2.0]
    # b is empty: a gets its token back, c is not touched.
    assert t.take_many([a, b, c], [1.0, 4.0, 1.0], [2.0, 1.0, 3.0], 1.0) == (1, 0.25)
    assert [t.bucket(k)[0] for k in (a, b, c)] == [1.0, 0.0, 2.0]
    assert t.take_many([c, a, b], [1.0, 1.0, 0.0], [3.0, 2.0, 1.0], 1.0) == (2, INF)
    assert [t.bucket(k)[0] for k in (a, b, c)] == [1.0, 0.0, 2.0]
    assert t.take_many([a, c], [1.0, 1.0], [2.0, 3.0], 1.0) == (-1, 0.0)
    assert [t.bucket(k)[0] for k in (a, c)] == [0.0, 1.0]
    # Every index is checked before anything is taken.
    with pytest.raises(IndexError):
        t.take_many([c, 99], [1.0, 1.0], [3.0, 3.0], 1.0)
    with pytest.raises(ValueError):
        t.take_many([c], [1.0, 1.0], [3.0], 1.0)
    assert t.bucket(c) == (1.0, 1.0)


def test_take_levels(limits_impl: type) -> None:
    """A route's throttle levels (``Levels``) in one call: a single bucket, or all or none."""
    from fastgw.traffic.limiter import BucketSpec, Levels

    t = new_table(limits_impl)
    one = Levels([BucketSpec("one", 1.0, 2.0, t)])
    assert one.single is not None
    assert t.take_levels(one, 1.0) is None
    assert t.take_levels(one, 1.0) is None
    assert t.take_levels(one, 1.0) == (0, 1.0)  # empty: a token in 1 s
    assert t.bucket(one.single.slot) == (0.0, 1.0)
    many = Levels([BucketSpec("a", 1.0, 2.0, t), BucketSpec("b", 4.0, 1.0, t), BucketSpec("c", 1.0, 3.0, t)])
    assert many.single is None
    assert t.take_levels(many, 1.0) is None
    # b is empty: a gets its token back, c is not touched.
    assert t.take_levels(many, 1.0) == (1, 0.25)
    assert [t.bucket(k)[0] for k in many.slots] == [1.0, 0.0, 2.0]


def test_level(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    assert t.level(i, 1.0, 8.0, 3.0) == 8.0  # new: full, nothing taken
    assert t.bucket(i) == (8.0, 3.0)
    assert t.take(i, 1.0, 8.0, 3.0, 8.0) == 0.0
    assert t.level(i, 1.0, 8.0, 5.5) == 2.5


# -- quota counters ------------------------------------------------------------------------------


def test_count(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    assert [t.count(i, 1, 3) for _ in range(4)] == [2, 1, 0, -1]
    assert t.counter(i) == (1, 3)
    assert t.count(i, 2, 3, 2) == 1  # a new period resets
    assert t.count(i, 2, 3, 2) == -1  # refused: nothing added
    assert t.counter(i) == (2, 2)
    assert t.count(i, 2, 3) == 0
    assert t.count(i, 3, 1, 2) == -1  # the reset of a refused call is stored
    assert t.counter(i) == (3, 0)
    assert t.count(i, 3, 0, 0) == 0
    assert t.count(i, 3, I64_MAX, I64_MAX) == 0
    assert t.count(i, 3, I64_MAX) == -1  # would overflow: refused
    assert t.counter(i) == (3, I64_MAX)
    t.set_counter(i, 3, I64_MIN)
    assert t.count(i, 3, I64_MAX, 0) == I64_MAX - I64_MIN  # beyond int64, as a Python int
    with pytest.raises(OverflowError):
        t.count(i, 1 << 63, 1)


def test_add(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    assert t.add(i, 5, 3) == 3
    assert t.add(i, 5, 4) == 7
    assert t.add(i, 5, -2) == 5
    assert t.add(i, 6, 1) == 1
    assert t.counter(i) == (6, 1)
    t.set_counter(i, 6, I64_MAX)
    with pytest.raises(OverflowError):
        t.add(i, 6, 1)
    assert t.counter(i) == (6, I64_MAX)
    assert t.add(i, 7, I64_MIN) == I64_MIN
    with pytest.raises(OverflowError):
        t.add(i, 7, -(1 << 63) - 1)


def test_round_trips(limits_impl: type) -> None:
    t = new_table(limits_impl)
    i = slot_of(t)
    for tokens, last in ((1.5, 2.25), (-0.0, 0.0), (INF, 1e300), (5e-324, -7.0)):
        t.set_bucket(i, tokens, last)
        assert t.bucket(i) == (tokens, last)
    for period, count in ((1, 2), (I64_MIN, I64_MAX), (0, 0), (-5, 17)):
        t.set_counter(i, period, count)
        assert t.counter(i) == (period, count)
    t.set_bucket(i, 3, 4)  # ints are floats
    assert t.bucket(i) == (3.0, 4.0)
    assert [type(v) for v in t.bucket(i)] == [float, float]
    assert type(t.level(i, 1, 8, 9)) is float
    with pytest.raises(OverflowError):
        t.set_counter(i, 1 << 63, 0)


def test_layout(limits_impl: type) -> None:
    buf = bytearray(table_bytes(8))
    t = limits_impl(buf, 8)
    h = (1 << 64) - 3  # starts at slot 5
    i = t.find(h)
    assert i == 5
    t.set_bucket(i, 1.25, 99.5)
    t.set_counter(i, -3, 1 << 40)
    assert SLOT.unpack_from(buf, 5 * 64) == (h, 0, 0, 1.25, 99.5, -3, 1 << 40)
    assert bytes(buf[5 * 64 + 48 : 6 * 64]) == bytes(16)
    assert bytes(buf[: 5 * 64]) + bytes(buf[6 * 64 :]) == bytes(7 * 64)  # other slots untouched
    struct.pack_into("<dd", buf, 16, 4.0, 2.0)  # a slot written from outside reads back
    assert t.bucket(0) == (4.0, 2.0)


def test_cross_build_layout() -> None:
    """One buffer, both builds in turn: each reads what the other wrote and carries on."""
    c_cls = compiled_table()
    for first, second in ((limits.SharedTablePy, c_cls), (c_cls, limits.SharedTablePy)):
        buf = bytearray(table_bytes(16))
        a = first(buf, 16)
        names = [key_hash(f"k{k}") for k in range(10)] + [16, 32]
        slots = [a.find(h) for h in names]
        for n, i in enumerate(slots):
            a.take(i, 3.0, 7.0, 10.0 + n, float(n % 3))
            a.count(i, n, 5, n % 7)
        b = second(buf, 16)
        assert b.used() == a.used() == 12
        assert [b.find(h) for h in names] == slots
        assert [b.bucket(i) for i in range(16)] == [a.bucket(i) for i in range(16)]
        assert [b.counter(i) for i in range(16)] == [a.counter(i) for i in range(16)]
        # The second build carries on where the first stopped exactly as the first would.
        ref = bytearray(buf)
        r = first(ref, 16)
        outcomes = []
        for t in (b, r):
            outcomes.append(
                [
                    t.take(slots[0], 3.0, 7.0, 10.5, 7.0),
                    t.take(slots[0], 3.0, 7.0, 10.75),
                    t.take_many(slots[:3], [1.0, 2.0, 3.0], [4.0, 4.0, 4.0], 13.0),
                    t.count(slots[6], 6, 5),
                    t.count(slots[4], 4, 5),
                    t.add(slots[5], 9, 2),
                    t.find(48),
                    t.used(),
                ]
            )
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][:2] == [0.0, 0.25 / 3.0]
        assert buf == ref


# -- differential: compiled == Python, bit for bit -----------------------------------------------

NSLOTS = 8
_hashes = st.sampled_from([1, 2, 3, 8, 9, 16, 17, 24, 25, 33, (1 << 64) - 1, 5])
_index = st.integers(-1, NSLOTS)
_real = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 3.0, 0.1, 1 / 3, 1e-300, 1e300, INF, -1.0]),
    st.floats(0.0, 10.0),
    st.floats(-10.0, 1e6, allow_nan=False),
)
_amount = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]), st.floats(0.0, 100.0))
_now = st.one_of(st.sampled_from([0.0, 1.0, 1.5, 2.0, 10.0]), st.floats(0.0, 20.0), st.floats(0.0, 1e4))
_int = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([I64_MIN, I64_MAX, I64_MAX - 1, I64_MIN + 1, 1 << 63, -(1 << 63) - 1]),
    st.integers(I64_MIN, I64_MAX),
)


@st.composite
def _take_many(draw: st.DrawFn) -> tuple[Any, ...]:
    idx = draw(st.lists(st.integers(0, NSLOTS - 1), max_size=4, unique=True))
    if draw(st.booleans()) and idx:
        idx[-1] = draw(_index)  # sometimes out of range (or a duplicate)
    rates = [draw(_real) for _ in idx]
    bursts = [draw(_real) for _ in idx]
    return ("take_many", idx, rates, bursts, draw(_now))


_ops = st.one_of(
    st.tuples(st.just("find"), _hashes),
    st.tuples(st.just("take"), _index, _real, _real, _now, _amount),
    st.tuples(st.just("refund"), _index, _real, _amount),
    _take_many(),
    st.tuples(st.just("level"), _index, _real, _real, _now),
    st.tuples(st.just("count"), _index, _int, _int, _int),
    st.tuples(st.just("add"), _index, _int, _int),
    st.tuples(st.just("counter"), _index),
    st.tuples(st.just("bucket"), _index),
    st.tuples(st.just("set_bucket"), _index, _real, _now),
    st.tuples(st.just("set_counter"), _index, _int, _int),
    st.tuples(st.just("used")),
)


def _outcome(table: Any, op: tuple[Any, ...]) -> object:
    try:
        result = getattr(table, op[0])(*op[1:])
    except (IndexError, ValueError, OverflowError) as ex:
        return type(ex).__name__
    return _exact(result)


def _exact(value: object) -> object:
    """Floats by their bits (so -0.0 != 0.0 and nan == nan), recursively."""
    if isinstance(value, float):
        return ("f", struct.pack("<d", value))
    if isinstance(value, tuple):
        return tuple(_exact(v) for v in value)
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ops, max_size=40))
def test_differential(ops: list[tuple[Any, ...]]) -> None:
    c_cls = compiled_table()
    py_buf, c_buf = bytearray(table_bytes(NSLOTS)), bytearray(table_bytes(NSLOTS))
    py, c = limits.SharedTablePy(py_buf, NSLOTS), c_cls(c_buf, NSLOTS)
    for op in ops:
        assert _outcome(py, op) == _outcome(c, op), op
        assert py_buf == c_buf, op


def test_refill_arithmetic_is_bit_identical() -> None:
    """Uncapped refills with inexact products: an FMA or a reordering shows in the last bit."""
    c_cls = compiled_table()
    bufs = [bytearray(table_bytes(8)) for _ in range(2)]
    tables = [limits.SharedTablePy(bufs[0], 8), c_cls(bufs[1], 8)]
    results: list[list[object]] = [[], []]
    for t, out in zip(tables, results, strict=True):
        i = t.find(1)
        t.set_bucket(i, 0.1, 1.0)
        now = 1.0
        for k in range(2000):
            now += 0.001 * (k % 7) + 1e-7 * k
            out.append(_exact(t.take(i, 1 / 3 + k * 1e-6, 1e300, now, 0.7)))
            out.append(_exact(t.level(i, 0.3, 1e300, now + 1 / 7)))
    assert results[0] == results[1]
    assert bufs[0] == bufs[1]


# -- many processes, one table -------------------------------------------------------------------

WORKERS = 4


def _fork_workers(work: Callable[[int], object]) -> list[Any]:
    """Run ``work(w)`` in WORKERS forked children; their JSON results, in worker order."""
    children: list[tuple[int, int]] = []
    for w in range(WORKERS):
        r, wr = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(r)
                with os.fdopen(wr, "w") as out:
                    json.dump(work(w), out)
                code = 0
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(wr)
        children.append((pid, r))
    results = []
    for pid, r in children:
        with os.fdopen(r) as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"worker {pid} failed"
        results.append(json.loads(data))
    return results


def _shared(cls: type, nslots: int = 64) -> Any:
    return cls(mmap.mmap(-1, table_bytes(nslots)), nslots)


RATE, BURST, SECONDS = 2000.0, 50.0, 0.6


def _hammer_bucket(table: Any) -> tuple[int, float]:
    """Admitted total and the span of ``now`` values over all workers."""
    i = table.find(key_hash("hammered"))
    start = time.monotonic() + 0.05  # every worker starts at the same instant

    def work(w: int) -> list[float]:
        take, monotonic = table.take, time.monotonic
        while monotonic() < start:
            time.sleep(0.001)
        end = start + SECONDS
        admitted = 0
        first = last = now = monotonic()
        while now < end:
            if take(i, RATE, BURST, now) == 0.0:
                admitted += 1
            last = now
            now = monotonic()
        return [admitted, first, last]

    results = _fork_workers(work)
    span = max(r[2] for r in results) - min(r[1] for r in results)
    return sum(int(r[0]) for r in results), span


@pytest.mark.timeout(20)
def test_processes_share_one_bucket_exactly(limits_impl: type) -> None:
    for _ in range(2):
        admitted, span = _hammer_bucket(_shared(limits_impl))
        allowed = BURST + RATE * span
        # Over-admission is the bug this kernel exists to prevent: the bound is strict.
        assert admitted <= allowed + 1, (admitted, allowed)
        # Under-admission only comes from a worker parked long enough for the bucket to fill
        # (burst / rate = 25 ms) on a loaded machine: allow 2 %, and one retry.
        if admitted >= allowed * 0.98:
            return
    pytest.fail(f"admitted {admitted} of {allowed:.0f} tokens")


@pytest.mark.timeout(20)
def test_processes_share_one_quota_exactly(limits_impl: type) -> None:
    table = _shared(limits_impl)
    i = table.find(key_hash("quota"))
    limit = 10_000

    def work(w: int) -> list[int]:
        count = table.count
        return [left for left in (count(i, 42, limit) for _ in range(4000)) if left >= 0]

    lefts = [left for r in _fork_workers(work) for left in r]
    assert len(lefts) == limit
    assert sorted(lefts) == list(range(limit))  # every admitted call saw a distinct count
    assert table.counter(i) == (42, limit)
    assert table.add(i, 42, 0) == limit


@pytest.mark.timeout(20)
def test_processes_claim_slots_consistently(limits_impl: type) -> None:
    table = _shared(limits_impl, 512)
    hashes = [key_hash(f"claim-{k}") for k in range(300)]
    start = time.monotonic() + 0.05

    def work(w: int) -> dict[str, int]:
        order = hashes[:]
        random.Random(w).shuffle(order)
        while time.monotonic() < start:
            pass  # every worker starts at the same instant
        return {str(h): table.find(h) for h in order}

    maps = _fork_workers(work)
    assert all(m == maps[0] for m in maps)
    assert sorted(maps[0].values()) == sorted(set(maps[0].values()))
    assert -1 not in maps[0].values()
    assert table.used() == 300
    assert {str(h): table.find(h) for h in hashes} == maps[0]


@pytest.mark.timeout(10)
def test_lock_of_a_dead_process_is_taken_over() -> None:
    """Compiled build: a slot lock left by a killed worker is recovered, not held forever."""
    c_cls = compiled_table()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: that pid no longer exists
    buf = mmap.mmap(-1, table_bytes(8))
    table = c_cls(buf, 8)
    i = table.find(3)
    struct.pack_into("<I", buf, i * 64 + 8, pid)  # as if it died inside the critical section
    assert table.take(i, 1.0, 1.0, 1.0) == 0.0
    assert struct.unpack_from("<I", buf, i * 64 + 8) == (0,)
    del table

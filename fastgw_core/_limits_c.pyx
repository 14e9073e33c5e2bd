# cython: language_level=3
"""Shared rate-limit table, compiled build.

Behaves exactly like ``_limits_py`` (the specification; read its docstring for the layout and
the rules) and writes the same bytes: the refill, wait and quota arithmetic is the same
IEEE-754 / int64 sequence, so both builds give bit-identical floats.

Concurrency differs: each slot has its own spinlock, the uint32 at offset 8, taken with GCC
``__atomic`` builtins (acquire / release). It holds the pid of the process inside (0 = free):
a waiter spins with a CPU pause, then yields (``sched_yield``), and every
``FGW_PROBE_YIELDS`` yields checks whether the holder still exists; if it was killed inside
the critical section (``kill(pid, 0)`` fails with ESRCH) the waiter takes the lock over. A
slot is claimed with a compare-and-swap on its hash. The GIL already serialises threads of
one process and every critical section is a few loads and stores of plain C, so the GIL is
kept.

PERF: ``take``, ``take_many`` and ``count`` allocate nothing but their return value; the slot
is a C struct at ``base + 64 * i``.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t

from fastgw_core._limits_py import MAX_PROBES as _MAX_PROBES_PY
from fastgw_core._limits_py import SLOT_BYTES as _SLOT_BYTES_PY

__all__ = ["SharedTable"]

cdef extern from *:
    """
    #include <errno.h>
    #include <pthread.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdint.h>
    #include <sys/types.h>
    #include <unistd.h>

    #if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    #error "fastgw_core._limits_c: the shared slot layout is little-endian"
    #endif

    struct fgw_slot_s {
        uint64_t hash;      /* 0 = empty */
        uint32_t lock;      /* pid of the holder, 0 = free */
        uint32_t reserved;
        double tokens;
        double last;
        int64_t period;
        int64_t count;
        unsigned char pad[16];
    };
    typedef struct fgw_slot_s fgw_slot;  /* (also in _limits_c.pxd: C11 allows the repeat) */

    _Static_assert(sizeof(fgw_slot) == 64, "a slot is 64 bytes");

    #define FGW_SPINS 128         /* pauses before the first yield */
    #define FGW_PROBE_YIELDS 256  /* yields between two liveness checks of the holder */

    /* The lock value of this process; fork() gives a child its own. */
    static uint32_t fgw_pid = 0;

    static void fgw_atfork_child(void) { fgw_pid = (uint32_t)getpid(); }

    static int fgw_init(void) {
        fgw_pid = (uint32_t)getpid();
        return pthread_atfork(NULL, NULL, fgw_atfork_child);
    }

    static inline void fgw_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #endif
    }

    static void fgw_lock_slow(uint32_t *lock) {
        unsigned spins = 0, yields = 0;
        uint32_t owner, expected;
        for (;;) {
            owner = __atomic_load_n(lock, __ATOMIC_RELAXED);
            if (owner == 0) {
                expected = 0;
                if (__atomic_compare_exchange_n(lock, &expected, fgw_pid, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                    return;
                continue;
            }
            if (spins < FGW_SPINS) {
                spins++;
                fgw_pause();
                continue;
            }
            sched_yield();
            if (++yields % FGW_PROBE_YIELDS == 0 && kill((pid_t)owner, 0) == -1 && errno == ESRCH) {
                /* The holder died inside its critical section: take the lock over. */
                expected = owner;
                if (__atomic_compare_exchange_n(lock, &expected, fgw_pid, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                    return;
            }
        }
    }

    static inline void fgw_lock(uint32_t *lock) {
        uint32_t expected = 0;
        if (__builtin_expect(__atomic_compare_exchange_n(lock, &expected, fgw_pid, 0,
                                                         __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 1))
            return;
        fgw_lock_slow(lock);
    }

    static inline void fgw_unlock(uint32_t *lock) { __atomic_store_n(lock, 0, __ATOMIC_RELEASE); }

    static inline uint64_t fgw_hash(fgw_slot *s) { return __atomic_load_n(&s->hash, __ATOMIC_ACQUIRE); }

    /* Claim an empty slot for h: 1 if it now holds h (claimed here or by another process). */
    static inline int fgw_claim(fgw_slot *s, uint64_t h) {
        uint64_t expected = 0;
        if (__atomic_compare_exchange_n(&s->hash, &expected, h, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return 1;
        return expected == h;
    }

    /* NOTE: a product rounded on its own, as in Python: the volatile keeps the compiler
       from fusing "tokens + elapsed * rate" into an FMA (-ffp-contract=fast on FMA targets),
       which would make the builds disagree in the last bit. */
    static inline double fgw_mul(double a, double b) {
        volatile double p = a * b;
        return p;
    }

    static inline int fgw_add_i64(int64_t a, int64_t b, int64_t *out) {
        return __builtin_add_overflow(a, b, out);
    }

    static inline int fgw_sub_i64(int64_t a, int64_t b, int64_t *out) {
        return __builtin_sub_overflow(a, b, out);
    }
    """
    int fgw_init()
    void fgw_lock(uint32_t* lock) nogil
    void fgw_unlock(uint32_t* lock) nogil
    uint64_t fgw_hash(fgw_slot* s) nogil
    int fgw_claim(fgw_slot* s, uint64_t h) nogil
    double fgw_mul(double a, double b) nogil
    bint fgw_add_i64(int64_t a, int64_t b, int64_t* out) nogil
    bint fgw_sub_i64(int64_t a, int64_t b, int64_t* out) nogil

cdef enum:
    SLOT_BYTES = 64
    MAX_PROBES = 64

assert SLOT_BYTES == _SLOT_BYTES_PY and MAX_PROBES == _MAX_PROBES_PY

if fgw_init() != 0:
    raise OSError("pthread_atfork failed")

cdef double _INF = float("inf")
cdef double _MIN_WAIT = 5e-324  # a refusal never returns 0.0, even when the wait underflows


cdef inline double _refill(fgw_slot* s, double rate, double burst, double now) noexcept nogil:
    """Tokens after refilling to ``now``; stores ``last = max(last, now)`` (lock held)."""
    cdef double tokens = s.tokens
    cdef double last = s.last
    cdef double elapsed
    if last == 0.0:
        tokens = burst
    else:
        elapsed = now - last
        if elapsed > 0.0 and rate > 0.0:
            tokens = tokens + fgw_mul(elapsed, rate)
        if tokens > burst:
            tokens = burst
    if now > last:
        s.last = now
    return tokens


@cython.cdivision(True)
cdef inline double _wait(double tokens, double rate, double burst, double n) noexcept nogil:
    cdef double wait
    if not rate > 0.0 or not burst >= n:
        return _INF
    wait = (n - tokens) / rate
    return wait if wait > 0.0 else _MIN_WAIT


cdef inline double _take(fgw_slot* s, double rate, double burst, double now, double n) noexcept nogil:
    cdef double tokens
    fgw_lock(&s.lock)
    tokens = _refill(s, rate, burst, now)
    if tokens >= n:
        s.tokens = tokens - n
        fgw_unlock(&s.lock)
        return 0.0
    s.tokens = tokens
    fgw_unlock(&s.lock)
    return _wait(tokens, rate, burst, n)


cdef inline void _refund(fgw_slot* s, double burst, double n) noexcept nogil:
    cdef double tokens
    fgw_lock(&s.lock)
    tokens = s.tokens + n
    if tokens > burst:
        tokens = burst
    s.tokens = tokens
    fgw_unlock(&s.lock)


@cython.final
cdef class SharedTable:
    """Token buckets and quota counters in a buffer shared by forked processes (its fields are
    declared in ``_limits_c.pxd``)."""

    def __init__(self, buf, Py_ssize_t nslots):
        if nslots <= 0 or nslots & (nslots - 1):
            raise ValueError("nslots must be a power of two")
        cdef Py_buffer view
        PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
        if view.readonly:
            PyBuffer_Release(&view)
            raise TypeError("buffer must be writable")
        if view.len // SLOT_BYTES < nslots:
            PyBuffer_Release(&view)
            raise ValueError(f"buffer too small: {nslots} slots need {nslots * SLOT_BYTES} bytes")
        if <uintptr_t>view.buf % 8:
            PyBuffer_Release(&view)
            raise ValueError("buffer must be 8-byte aligned")
        if self._has_view:
            PyBuffer_Release(&self._view)
        # NOTE: the held Py_buffer keeps the exporter alive and its memory in place; an mmap
        # cannot be closed while the table lives.
        self._view = view
        self._has_view = True
        self._slots = <fgw_slot*>view.buf
        self.nslots = nslots
        self._mask = nslots - 1

    def __dealloc__(self):
        if self._has_view:
            self._has_view = False
            PyBuffer_Release(&self._view)

    cdef inline fgw_slot* _slot(self, Py_ssize_t i) except NULL:
        if <size_t>i >= <size_t>self.nslots:
            raise IndexError("slot index out of range")
        return self._slots + i

    # -- slots -------------------------------------------------------------------------------

    def find(self, uint64_t h):
        """The slot of hash ``h`` (claimed if new), or -1 when the probe window is full."""
        if h == 0:
            raise ValueError("hash must be nonzero")
        cdef Py_ssize_t k, j
        cdef Py_ssize_t start = <Py_ssize_t>(h & <uint64_t>self._mask)
        cdef Py_ssize_t probes = MAX_PROBES if self.nslots > MAX_PROBES else self.nslots
        cdef uint64_t cur
        for k in range(probes):
            j = (start + k) & self._mask
            cur = fgw_hash(self._slots + j)
            if cur == h:
                return j
            if cur == 0 and fgw_claim(self._slots + j, h):
                return j
        return -1

    def used(self):
        """Number of claimed slots."""
        cdef Py_ssize_t j, n = 0
        for j in range(self.nslots):
            if fgw_hash(self._slots + j) != 0:
                n += 1
        return n

    # -- token buckets -----------------------------------------------------------------------

    def take(self, Py_ssize_t i, double rate, double burst, double now, double n=1.0):
        """Take ``n`` tokens: 0.0 when admitted, else the wait in seconds (nothing taken)."""
        return _take(self._slot(i), rate, burst, now, n)

    def refund(self, Py_ssize_t i, double burst, double n=1.0):
        """Give ``n`` tokens back, capped at ``burst``."""
        _refund(self._slot(i), burst, n)

    cpdef tuple take_many(self, list idx, list rates, list bursts, double now):
        """Take 1 token from every bucket or from none; ``(-1, 0.0)`` or ``(position, wait)``.

        The indexes must be distinct (the caller guarantees it).
        """
        return self._take_many(idx, rates, bursts, now)

    def take_levels(self, levels, double now):
        """Take 1 token from each bucket of ``levels`` (a ``fastgw.traffic.limiter.Levels``: its
        ``single`` bucket, or its ``slots``, ``rates`` and ``bursts``) or from none: None, or
        ``(position, wait)`` of the first bucket that has none (as ``take_many``).

        PERF: the traffic gate's no-key path in one call (a route's throttle levels)."""
        cdef double wait
        single = levels.single
        if single is not None:
            wait = _take(self._slot(single.slot), single.rate, single.burst, now, 1.0)
            return None if wait == 0.0 else (0, wait)
        got = self._take_many(levels.slots, levels.rates, levels.bursts, now)
        return None if got[0] == -1 else got

    cdef tuple _take_many(self, list idx, list rates, list bursts, double now):
        cdef Py_ssize_t m = len(idx)
        cdef Py_ssize_t k, j
        cdef double wait
        if len(rates) != m or len(bursts) != m:
            raise ValueError("idx, rates and bursts must have the same length")
        # Check everything that can raise before taking anything.
        for k in range(m):
            self._slot(idx[k])
            wait = rates[k]
            wait = bursts[k]
        for k in range(m):
            wait = _take(self._slots + <Py_ssize_t>idx[k], rates[k], bursts[k], now, 1.0)
            if wait != 0.0:
                for j in range(k):  # refund what was taken, in order
                    _refund(self._slots + <Py_ssize_t>idx[j], bursts[j], 1.0)
                return k, wait
        return -1, 0.0

    def level(self, Py_ssize_t i, double rate, double burst, double now):
        """Tokens available at ``now`` (the refill is stored), without taking any."""
        cdef fgw_slot* s = self._slot(i)
        cdef double tokens
        fgw_lock(&s.lock)
        tokens = _refill(s, rate, burst, now)
        s.tokens = tokens
        fgw_unlock(&s.lock)
        return tokens

    def bucket(self, Py_ssize_t i):
        """``(tokens, last)`` as stored."""
        cdef fgw_slot* s = self._slot(i)
        cdef double tokens, last
        fgw_lock(&s.lock)
        tokens = s.tokens
        last = s.last
        fgw_unlock(&s.lock)
        return tokens, last

    def set_bucket(self, Py_ssize_t i, double tokens, double last):
        cdef fgw_slot* s = self._slot(i)
        fgw_lock(&s.lock)
        s.tokens = tokens
        s.last = last
        fgw_unlock(&s.lock)

    # -- quota counters ----------------------------------------------------------------------

    def count(self, Py_ssize_t i, int64_t period, int64_t limit, int64_t n=1):
        """Add ``n`` if the quota allows: the remaining quota (>= 0), else -1 (nothing added)."""
        cdef fgw_slot* s = self._slot(i)
        cdef int64_t count, new, left
        fgw_lock(&s.lock)
        count = s.count
        if s.period != period:
            count = 0
            s.period = period
            s.count = 0  # the reset is stored even when refused
        if fgw_add_i64(count, n, &new) or new > limit:
            fgw_unlock(&s.lock)
            return -1
        s.count = new
        fgw_unlock(&s.lock)
        if fgw_sub_i64(limit, new, &left):
            return <object>limit - <object>new
        return left

    def add(self, Py_ssize_t i, int64_t period, int64_t n):
        """Add ``n`` (no limit; a new ``period`` resets first); the new count."""
        cdef fgw_slot* s = self._slot(i)
        cdef int64_t count, new
        fgw_lock(&s.lock)
        count = 0 if s.period != period else s.count
        if fgw_add_i64(count, n, &new):
            fgw_unlock(&s.lock)
            raise OverflowError("counter overflow")
        s.period = period
        s.count = new
        fgw_unlock(&s.lock)
        return new

    def counter(self, Py_ssize_t i):
        """``(period, count)`` as stored."""
        cdef fgw_slot* s = self._slot(i)
        cdef int64_t period, count
        fgw_lock(&s.lock)
        period = s.period
        count = s.count
        fgw_unlock(&s.lock)
        return period, count

    def set_counter(self, Py_ssize_t i, int64_t period, int64_t count):
        cdef fgw_slot* s = self._slot(i)
        fgw_lock(&s.lock)
        s.period = period
        s.count = count
        fgw_unlock(&s.lock)

    def __repr__(self):
        return f"<SharedTable {self.nslots} slots, {self.used()} used>"

"""SharedMemoryPool on both backends: zero-copy zero-filled slots, lifetimes of arrays and views,
release, exhaustion policies, argument errors, and many threads against a model that checks by
content stamps that no live buffer is ever handed out twice."""

from __future__ import annotations

import gc
import random
import threading
import weakref

import numpy as np
import pytest

from freeagentics_rs import PoolExhaustedError, SharedMemoryPool


@pytest.fixture
def make_pool(backend):
    pools = []

    def make(*args, **kwargs):
        kwargs.setdefault("backend", backend)
        pool = SharedMemoryPool(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_acquire_hands_out_aligned_zero_filled_writeable_arrays(make_pool, backend):
    pool = make_pool((10, 10), capacity=4)
    assert (pool.backend, pool.shape, pool.dtype, pool.capacity, pool.name) == (backend, (10, 10), np.float32, 4, None)
    arrays = [pool.acquire() for _ in range(4)]
    for a in arrays:
        assert a.shape == (10, 10) and a.dtype == np.float32 and a.flags.writeable and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 and not a.any()
    assert len({a.ctypes.data for a in arrays}) == 4
    for a in arrays:
        a[:] = 5
    address = arrays[0].ctypes.data
    del arrays[0]
    again = pool.acquire()
    assert again.ctypes.data == address and not again.any()  # the same slot, zeroed again
    stats = pool.stats()
    assert {k: stats[k] for k in ("capacity", "in_use", "high_water", "acquires", "reuses", "waits")} == {
        "capacity": 4, "in_use": 4, "high_water": 4, "acquires": 5, "reuses": 1, "waits": 0,
    }  # fmt: skip
    assert stats["bytes"] == 4 * 448  # 400 bytes per slot, rounded up to 64


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "int64", "float64", "complex128"])
def test_every_numeric_dtype_and_an_int_shape(make_pool, dtype):
    pool = make_pool(7, dtype, capacity=2)
    a = pool.acquire()
    assert a.shape == (7,) and a.dtype == np.dtype(dtype) and not a.any()
    a[:] = 1
    assert a.all()


def test_views_and_slices_keep_the_slot_until_the_last_dies(make_pool):
    pool = make_pool((4, 4), capacity=1, on_exhausted="raise")
    a = pool.acquire()
    views = [a[1:], a.T, a.reshape(16), np.asarray(a), a[::2, ::-1]]
    del a
    while views:
        with pytest.raises(PoolExhaustedError):
            pool.acquire()
        views.pop(0)
    b = pool.acquire()
    assert pool.stats()["in_use"] == 1 and not b.any()


def test_release_detaches_the_array_and_returns_the_slot(make_pool):
    pool = make_pool(8, "int64", capacity=1, on_exhausted="raise")
    a = pool.acquire()
    a[:] = 3
    pool.release(a)
    assert pool.stats()["in_use"] == 0
    assert not a.flags.writeable and not a.any()  # read-only zeros, not the slot any more
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1
    b = pool.acquire()  # `a` is still referenced, yet the slot is free
    b[:] = 9
    assert not a.any()
    with pytest.raises(ValueError, match="^release: the array was already released$"):
        pool.release(a)
    with pytest.raises(ValueError, match="^slot_of: the array was already released$"):
        pool.slot_of(a[2:])


def test_a_slot_released_with_other_views_alive_comes_back_when_they_die(make_pool):
    pool = make_pool(8, capacity=1, on_exhausted="raise")
    a = pool.acquire()
    a[:] = 2
    view = a[2:]
    pool.release(a)
    assert pool.stats()["in_use"] == 1 and view.sum() == 12 and view.flags.writeable
    with pytest.raises(PoolExhaustedError):
        pool.acquire()
    del view
    assert pool.stats()["in_use"] == 0
    pool.release(pool.acquire())  # releasing a view releases that view; the same for slices
    b = pool.acquire()
    s = b[1:3]
    pool.release(s)
    assert pool.stats()["in_use"] == 1  # `b` still holds the slot
    del b
    assert pool.stats()["in_use"] == 0


def test_release_refuses_foreign_arrays(make_pool):
    pool, other = make_pool(4, capacity=1), make_pool(4, capacity=1)
    a = other.acquire()
    for foreign in (np.zeros(4, np.float32), a, a[1:], a.base, [0.0] * 4, None):
        with pytest.raises(ValueError, match="^release: the array was not acquired from this pool$"):
            pool.release(foreign)
        with pytest.raises(ValueError, match="^slot_of: the array was not acquired from this pool$"):
            pool.slot_of(foreign)
    other.release(a)


def test_lease_releases_on_exit_even_after_an_error_or_an_early_release(make_pool):
    pool = make_pool(3, capacity=1, on_exhausted="raise")
    with pool.lease() as a:
        a[:] = 1
        assert pool.stats()["in_use"] == 1
    assert pool.stats()["in_use"] == 0 and not a.flags.writeable
    with pytest.raises(KeyError):
        with pool.lease() as a:
            raise KeyError("boom")
    with pool.lease() as a:
        pool.release(a)  # the lease holds `a` too: it comes back with `a`
    assert pool.stats()["in_use"] == 1
    del a
    assert pool.stats()["in_use"] == 0


def test_release_waits_for_other_holders_of_the_array_itself(make_pool):
    """A memoryview, a subclass view or another variable holding the array itself keep using
    its memory: release must not hand the slot out while they live."""
    import numpy.lib.stride_tricks as tricks

    class Sub(np.ndarray):
        pass

    pool = make_pool(4, "float64", capacity=1, on_exhausted="raise")
    for make_holder in (memoryview, lambda a: a.view(Sub), lambda a: tricks.as_strided(a), lambda a: [a]):
        a = pool.acquire()
        a[:] = 7
        holder = make_holder(a)
        pool.release(a)
        assert pool.stats()["in_use"] == 1 and not a.flags.writeable
        with pytest.raises(PoolExhaustedError):
            pool.acquire()
        assert np.asarray(holder[0] if isinstance(holder, list) else holder).sum() == 28
        with pytest.raises(ValueError, match="^release: the array was already released$"):
            pool.release(a)
        del a, holder
        assert pool.stats()["in_use"] == 0


def test_block_waits_for_a_slot_freed_by_another_thread_and_times_out(make_pool):
    pool = make_pool(16, capacity=1)
    held = [pool.acquire()]
    with pytest.raises(PoolExhaustedError, match=r"^no slot was freed within 0.05 s$"):
        pool.acquire(timeout=0.05)
    waiting = threading.Event()
    got = []

    def waiter():
        waiting.set()
        got.append(pool.acquire(timeout=30))

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    while pool.stats()["waits"] < 2:  # until the waiter is blocked
        threading.Event().wait(0.001)
    held.pop()  # the last array dies: the slot is free
    thread.join(30)
    assert len(got) == 1 and pool.stats()["waits"] == 2


def test_raise_and_grow_policies(make_pool):
    raising = make_pool(4, capacity=2, on_exhausted="raise")
    kept = [raising.acquire(), raising.acquire()]
    with pytest.raises(PoolExhaustedError, match="^all 2 slots are in use$"):
        raising.acquire()
    growing = make_pool(4, capacity=2, on_exhausted="grow", max_capacity=5)
    kept += [growing.acquire() for _ in range(5)]
    assert growing.capacity == 5 and len({a.ctypes.data for a in kept}) == 7
    with pytest.raises(PoolExhaustedError, match="^all 5 slots are in use and max_capacity is reached$"):
        growing.acquire()
    unbounded = make_pool(4, capacity=1, on_exhausted="grow")
    kept += [unbounded.acquire() for _ in range(10)]
    assert unbounded.capacity == 10 and unbounded.stats()["bytes"] == 640


def test_close_fails_acquires_and_wakes_blocked_ones(make_pool):
    pool = make_pool(4, capacity=1)
    a = pool.acquire()
    errors = []
    started = threading.Event()

    def waiter():
        started.set()
        try:
            pool.acquire()
        except RuntimeError as e:
            errors.append(str(e))

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait()
    while pool.stats()["waits"] == 0:
        threading.Event().wait(0.001)
    pool.close()
    thread.join(30)
    assert errors == ["the pool is closed"] and pool.closed
    for call in (pool.acquire, lambda: pool.slot_of(a)):
        with pytest.raises(RuntimeError, match="^the pool is closed$"):
            call()
    a[:] = 1  # arrays handed out stay valid
    pool.release(a)
    pool.close()


def test_arrays_outlive_their_pool(backend):
    pool = SharedMemoryPool((100,), "float64", capacity=2, backend=backend)
    a = pool.acquire()
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    a[:] = np.arange(100)
    assert a.sum() == 4950


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"shape": 0}, ValueError, "shape: dimensions must be positive"),
        ({"shape": (3, -1)}, ValueError, "shape: dimensions must be positive"),
        ({"shape": (3, 2.0)}, TypeError, "shape: must be an int or a non-empty tuple of ints"),
        ({"shape": ()}, TypeError, "shape: must be an int or a non-empty tuple of ints"),
        ({"shape": "10"}, TypeError, "shape: must be an int or a non-empty tuple of ints"),
        ({"shape": 4, "dtype": "object"}, TypeError, "dtype: unsupported dtype object"),
        ({"shape": 4, "dtype": "U3"}, TypeError, "dtype: unsupported dtype <U3"),
        ({"shape": 4, "dtype": "nonsense"}, TypeError, "dtype: 'nonsense' is not a numpy dtype"),
        ({"shape": 4, "capacity": 0}, ValueError, "capacity: must be at least 1"),
        ({"shape": 4, "capacity": 2.5}, TypeError, "capacity: must be an int, not float"),
        ({"shape": 4, "on_exhausted": "wait"}, ValueError, "on_exhausted: must be 'block', 'raise' or 'grow'"),
        ({"shape": 4, "max_capacity": 9}, ValueError, "max_capacity: only applies with on_exhausted='grow'"),
        ({"shape": 4, "capacity": 4, "on_exhausted": "grow", "max_capacity": 3}, ValueError, "max_capacity: must be at least 4"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(backend, kwargs, error, message):
    with pytest.raises(error, match=f"^{message}"):
        SharedMemoryPool(backend=backend, **kwargs)


def test_bad_timeouts(make_pool):
    pool = make_pool(4, capacity=1)
    for timeout in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^timeout: must be a non-negative number of seconds$"):
            pool.acquire(timeout=timeout)
    assert pool.stats()["in_use"] == 0


def _stamp_model(pool, threads, cycles, keep_max, seed):
    """Random acquire/keep/drop/release cycles in many threads. Each kept buffer is stamped with
    a value unique to its holder and checked before it is dropped: a slot handed out twice would
    be overwritten by its second holder."""
    failures, acquired = [], [0] * threads
    barrier = threading.Barrier(threads)

    def run(index):
        rng = random.Random(seed + index)
        kept = []  # (array or a view of it, stamp)
        barrier.wait()
        for step in range(cycles):
            stamp = index * 1_000_000 + step + 1
            if len(kept) < keep_max and rng.random() < 0.55:
                try:
                    a = pool.acquire(timeout=10)
                except PoolExhaustedError:
                    continue
                acquired[index] += 1
                if a.any():
                    failures.append("not zero-filled")
                a[:] = stamp
                shape = rng.random()
                if shape < 0.2:  # two arrays of one slot, dropped or released separately
                    kept += [(a, stamp), (a[1:], stamp)]
                else:
                    kept.append((a if shape < 0.6 else a[rng.randrange(4) :], stamp))
            elif kept:
                a, stamp = kept.pop(rng.randrange(len(kept)))
                if not (a == stamp).all():
                    failures.append(f"stamp {stamp} overwritten")
                if rng.random() < 0.5:
                    pool.release(a)
                del a
        for a, stamp in kept:
            if not (a == stamp).all():
                failures.append(f"stamp {stamp} overwritten")

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return failures, sum(acquired)


@pytest.mark.parametrize("on_exhausted", ["raise", "block"])
def test_no_live_buffer_is_ever_handed_out_twice(make_pool, on_exhausted):
    threads, cycles = 4, 25_000  # 100 000 cycles in all
    keep_max = 5 if on_exhausted == "raise" else 3  # "block": 4 x 3 < 16, never a deadlock
    pool = make_pool(8, "int64", capacity=16 if on_exhausted == "block" else 12, on_exhausted=on_exhausted)
    failures, acquired = _stamp_model(pool, threads, cycles, keep_max, seed=7)
    assert failures == []
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["acquires"] == acquired > threads * cycles // 4
    assert stats["high_water"] <= stats["capacity"]


@pytest.mark.stress
def test_no_aliasing_stress(make_pool):
    for seed in range(5):
        pool = make_pool(16, "int64", capacity=8, on_exhausted="grow", max_capacity=24)
        failures, _ = _stamp_model(pool, 8, 50_000, 4, seed)
        assert failures == [] and pool.stats()["in_use"] == 0


def test_acquire_release_cycles_leak_nothing(make_pool):
    import tracemalloc

    pool = make_pool((100, 100), capacity=4)
    for _ in range(2000):
        pool.release(pool.acquire())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(20_000):
        with pool.lease() as a:
            a[0, 0] = 1
        b = pool.acquire()
        del b
    gc.collect()
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 64 * 1024  # 40 000 cycles of 40 KB buffers: no per-cycle growth
    assert pool.stats()["in_use"] == 0


def test_timeouts_of_every_kind(make_pool):
    pool = make_pool(4, capacity=1)
    kept = pool.acquire(timeout=1e20)  # too long to represent: waits forever, never fails
    with pytest.raises(TypeError, match="^timeout: must be a number of seconds or None$"):
        pool.acquire(timeout="1")
    with pytest.raises(PoolExhaustedError, match=r"^no slot was freed within 0\.0 s$"):
        pool.acquire(timeout=0)
    del kept


def test_release_refuses_arrays_that_only_look_like_views_of_a_slot(make_pool):
    pool = make_pool((2, 3), "float32", capacity=1)
    a = pool.acquire()
    # A write-back temporary: its own float64 copy, whose base is the slot's root.
    it = np.nditer(a.base, op_flags=[["readwrite", "updateifcopy"]], op_dtypes=["f8"], casting="same_kind")
    with it:
        with pytest.raises(ValueError, match="^release: the array was not acquired from this pool$"):
            pool.release(it.operands[0])
    pool.release(a)
    assert pool.stats()["in_use"] == 0


def test_shapes_too_large_for_memory(backend):
    for shape in [(2**62 + 1, 4), (2**32, 2**32)]:
        with pytest.raises(ValueError, match="^shape: the buffer would be too large$"):
            SharedMemoryPool(shape, "uint8", backend=backend)

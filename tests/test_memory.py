"""SharedMemoryPool on both backends: zero-copy zero-filled slots, lifetimes of arrays and views,
release, exhaustion policies, argument errors, and many threads against a model that checks by
content stamps that no live buffer is ever handed out twice."""

from __future__ import annotations

import gc
import inspect
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


def test_release_returns_the_place_at_once_and_the_memory_with_the_last_array(make_pool):
    pool = make_pool(8, "int64", capacity=1, on_exhausted="raise")
    a = pool.acquire()
    a[:] = 3
    pool.release(a)
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 1)
    assert not a.flags.writeable and (a == 3).all()  # read-only; its memory is still its own
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1
    b = pool.acquire()  # `a` is still referenced, yet the pool has room: new memory
    b[:] = 9
    assert (a == 3).all() and not np.shares_memory(a, b)
    with pytest.raises(ValueError, match="^release: the array was already released$"):
        pool.release(a)
    with pytest.raises(ValueError, match="^slot_of: the array was already released$"):
        pool.slot_of(a[2:])
    address = a.ctypes.data
    del a
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (1, 0)
    c = pool.release(b) or pool.acquire()  # the memory `a` had is free again: reused, zeroed
    assert c.ctypes.data == address and not c.any() and pool.stats()["reuses"] == 1


def test_a_slot_released_with_other_views_alive_is_retained_until_they_die(make_pool):
    pool = make_pool(8, capacity=1, on_exhausted="raise")
    a = pool.acquire()
    a[:] = 2
    view = a[2:]
    pool.release(a)
    del a
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 1)
    assert view.sum() == 12 and view.flags.writeable  # taken before the release
    b = pool.acquire()
    assert not np.shares_memory(b, view) and not b.any()
    with pytest.raises(PoolExhaustedError):
        pool.acquire()
    del view
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (1, 0)
    s = b[1:3]
    pool.release(s)  # releasing a view releases the slot; `b` becomes read-only too
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 1) and not b.flags.writeable
    with pytest.raises(ValueError, match="^release: the array was already released$"):
        pool.release(b)
    del b
    assert pool.stats()["retained"] == 1  # `s` still reaches the memory
    del s
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 0)


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
        pool.release(a)
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 1)
    del a
    assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 0)


def test_other_holders_of_the_array_itself_keep_its_memory(make_pool):
    """A memoryview, a subclass view or another variable holding the array itself keep using
    its memory: release must not hand that memory out while they live."""
    import numpy.lib.stride_tricks as tricks

    class Sub(np.ndarray):
        pass

    pool = make_pool(4, "float64", capacity=1, on_exhausted="raise")
    for make_holder in (memoryview, lambda a: a.view(Sub), lambda a: tricks.as_strided(a), lambda a: [a]):
        a = pool.acquire()
        a[:] = 7
        holder = make_holder(a)
        pool.release(a)
        assert (pool.stats()["in_use"], pool.stats()["retained"]) == (0, 1) and not a.flags.writeable
        b = pool.acquire()
        b[:] = 1
        assert np.asarray(holder[0] if isinstance(holder, list) else holder).sum() == 28
        with pytest.raises(ValueError, match="^release: the array was already released$"):
            pool.release(a)
        del a, holder
        assert (pool.stats()["in_use"], pool.stats()["retained"]) == (1, 0)
        del b


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


@pytest.mark.parametrize("free", ["release", "drop"])
def test_every_waiter_wakes_for_its_slot_whether_released_or_dropped(make_pool, free):
    """Freed slots are announced only while an acquire waits: each of two blocked acquires gets
    one of the two slots freed after they started waiting."""
    pool = make_pool(16, capacity=2)
    held = [pool.acquire(), pool.acquire()]
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool.acquire(timeout=30))) for _ in range(2)]
    for thread in threads:
        thread.start()
    while pool.stats()["waits"] < 2:  # until both are blocked
        threading.Event().wait(0.001)
    for _ in range(2):
        array = held.pop()
        if free == "release":
            pool.release(array)
        del array
        threading.Event().wait(0.01)
    for thread in threads:
        thread.join(30)
    assert len(got) == 2 and pool.stats()["in_use"] == 2


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
        ({"shape": 4, "capacity": 4, "on_exhausted": "grow", "max_capacity": 3},
         ValueError, "max_capacity: must be at least 4"),
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


def _stamp_model(pool, threads, cycles, keep_max, seed):  # noqa: C901 (one stress scenario, read top to bottom)
    """Random acquire/keep/drop/release cycles in many threads. Each kept buffer is stamped with
    a value unique to its holder and checked before it is dropped: a slot handed out twice would
    be overwritten by its second holder."""
    failures, acquired = [], [0] * threads
    barrier = threading.Barrier(threads)

    def run(index):
        rng = random.Random(seed + index)
        kept = []  # (array or a view of it, stamp, [whether its slot was released])
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
                shape, released = rng.random(), []
                if shape < 0.2:  # two arrays of one slot, dropped separately, released once
                    kept += [(a, stamp, released), (a[1:], stamp, released)]
                else:
                    kept.append((a if shape < 0.6 else a[rng.randrange(4) :], stamp, released))
            elif kept:
                a, stamp, released = kept.pop(rng.randrange(len(kept)))
                if not (a == stamp).all():
                    failures.append(f"stamp {stamp} overwritten")
                if rng.random() < 0.5 and not released:
                    pool.release(a)
                    released.append(True)
                del a
        for a, stamp, _ in kept:
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
    it = np.nditer(a, op_flags=[["readwrite", "updateifcopy"]], op_dtypes=["f8"], casting="same_kind")
    with it:
        with pytest.raises(ValueError, match="^release: the array was not acquired from this pool$"):
            pool.release(it.operands[0])
    pool.release(a)
    assert pool.stats()["in_use"] == 0


def test_shapes_too_large_for_memory(backend):
    for shape in [(2**62 + 1, 4), (2**32, 2**32)]:
        with pytest.raises(ValueError, match="^shape: the buffer would be too large$"):
            SharedMemoryPool(shape, "uint8", backend=backend)


class _SubArray(np.ndarray):
    pass


@pytest.mark.parametrize("holder", ["memoryview", "subclass view"])
@pytest.mark.parametrize("call", ["list pop", "memoryview obj"])
def test_release_of_a_temporary_never_reissues_a_slot_a_view_still_writes(make_pool, holder, call):
    """Issue 14, item 1: the reference count of a temporary plus a view held elsewhere looked
    like "only the caller holds it"; the slot came back and the next acquire aliased the view."""
    pool = make_pool(4, "float64", capacity=1, on_exhausted="grow")
    kept = [pool.acquire()]
    view = memoryview(kept[0]) if holder == "memoryview" else kept[0].view(_SubArray)
    if call == "list pop":
        pool.release(kept.pop())
    else:
        pool.release(view.obj if holder == "memoryview" else view.base)
        kept.clear()
    fresh = pool.acquire()
    fresh[:] = 1.0
    np.asarray(view)[:] = 5.0  # the released array's memory: must not be `fresh`'s
    assert (fresh == 1.0).all()
    assert np.asarray(view).sum() == 20.0


def test_released_memory_outlives_the_pool_without_a_use_after_free(run_isolated):
    """Issue 14, item 2: after such a release, deleting the pool freed the memory the view
    still pointed to (a segfault on the Python backend)."""
    result = run_isolated(
        """
        import gc
        import numpy as np
        from freeagentics_rs import SharedMemoryPool
        pool = SharedMemoryPool((1 << 16,), "float64", capacity=1)
        kept = [pool.acquire()]
        kept[0][:] = 3.0
        m = memoryview(kept[0])
        pool.release(kept.pop())
        del pool
        gc.collect()
        for _ in range(20):
            junk = [np.full(1 << 16, 9.0) for _ in range(8)]
        print(np.asarray(m).sum())
        """
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 3.0 * (1 << 16)


def test_an_array_or_a_bound_method_keeps_its_pool_usable(backend):
    """Issue 14, item 6: the pool object dying first closed the pool under its arrays and bound
    methods."""
    a = SharedMemoryPool((3,), "float64", capacity=2, backend=backend).acquire()
    a[:] = 1
    pool = SharedMemoryPool((3,), "float64", capacity=2, backend=backend)
    acquire, release = pool.acquire, pool.release
    del pool
    gc.collect()
    b = acquire()
    release(b)
    assert (a == 1).all() and not acquire().any()


def test_a_shared_pool_keeps_its_names_while_an_array_lives(backend):
    import os

    pool = SharedMemoryPool(4, "int32", capacity=2, shared=True, backend=backend)
    name, a = pool.name, pool.acquire()
    slot = pool.slot_of(a)
    del pool
    gc.collect()
    a[:] = 5
    with SharedMemoryPool.attach(name) as attached:
        assert (attached.view(slot) == 5).all()
    del a
    gc.collect()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(name)]


def test_too_large_buffers_are_memory_errors(backend):
    """Issue 14, item 5: OSError(ENOMEM) on Rust, MemoryError on Python."""
    for shape, capacity in [((1 << 48,), 1), ((1 << 34,), 1 << 14)]:  # beyond any address space
        with pytest.raises(MemoryError, match=r"^out of memory allocating \d+ bytes$"):
            SharedMemoryPool(shape, "uint8", capacity=capacity, backend=backend)


def test_documented_signatures_are_those_of_the_bound_methods(make_pool):
    # acquire/release/slot_of are the core's methods bound on the instance: the class's
    # documented parameter names must be the ones a keyword call really takes.
    pool = make_pool(4, capacity=2)
    for name in ("acquire", "release", "slot_of"):
        documented = list(inspect.signature(getattr(SharedMemoryPool, name)).parameters)[1:]
        assert list(inspect.signature(getattr(pool, name)).parameters) == documented, name
    arr = pool.acquire(timeout=0)
    assert pool.slot_of(array=arr) in (0, 1)
    pool.release(array=arr)
    assert pool.stats()["in_use"] == 0


def test_the_slot_pool_core_takes_its_settings_by_keyword(backend):
    # The front names every setting: a positional call (a boolean trap in waiting) is refused.
    from freeagentics_rs import _backend

    core_class = _backend.cores(backend).SlotPoolCore
    with pytest.raises(TypeError):
        core_class(np.dtype("float32"), (4,), 2, "raise", None, None)
    core = core_class(np.dtype("float32"), (4,), capacity=2, on_exhausted="raise", max_capacity=None, shm_name=None)
    assert core.stats()["capacity"] == 2
    core.close()


def test_ctrl_c_ends_a_blocked_acquire_and_changes_nothing(run_isolated):
    # The wait runs detached in slices with the signal handlers between them (rules 1 and 5).
    out = run_isolated(
        """
        import os, signal, threading
        from freeagentics_rs import SharedMemoryPool

        pool = SharedMemoryPool(4, capacity=1)
        held = pool.acquire()
        try:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            pool.acquire(timeout=30)
        except KeyboardInterrupt:
            print("interrupted", pool.stats()["in_use"])
        pool.release(held)
        print("then", pool.acquire(timeout=1).shape)
        """,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["interrupted", "1", "then", "(4,)"]

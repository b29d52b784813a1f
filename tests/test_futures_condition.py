"""The pool futures' condition (``_native.FutureCondition`` on Rust, ``_FutureCondition`` on
Python) behaves as ``threading.Condition(threading.RLock())`` on the calls ``concurrent.futures``
makes, and settling, cancelling and waiting from many threads agree with a sequential model."""

import concurrent.futures as cf
import gc
import random
import threading
import time
import weakref

import freeagentics_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def new_condition():
    """The condition class of the pool's futures on the backend under test."""
    pool = freeagentics_rs.WorkStealingThreadPool(1, backend=freeagentics_rs.BACKEND)
    yield pool._new_condition
    pool.shutdown()


def _outcome(call):
    try:
        return ("ok", call())
    except Exception as e:  # the outcome is what is compared
        return (type(e).__name__, str(e))


OPS = st.lists(
    st.sampled_from(["acquire", "try_acquire", "release", "enter", "exit", "owned", "notify", "notify_all", "wait0"]),
    max_size=30,
)


def _apply(condition, op):
    calls = {
        "acquire": lambda: condition.acquire(),
        "try_acquire": lambda: condition.acquire(blocking=False),
        "release": lambda: condition.release(),
        "enter": lambda: condition.__enter__(),
        "exit": lambda: condition.__exit__(None, None, None),
        "owned": lambda: condition._is_owned(),
        "notify": lambda: condition.notify(),
        "notify_all": lambda: condition.notify_all(),
        "wait0": lambda: condition.wait(0),
    }
    return _outcome(calls[op])


@given(ops=OPS)
def test_one_thread_sees_what_threading_condition_does(new_condition, ops):
    ours, reference = new_condition(), threading.Condition(threading.RLock())
    for op in ops:
        assert _apply(ours, op) == _apply(reference, op), op
    # Whatever the sequence left held, both are released the same number of times.
    while reference._is_owned():
        reference.release()
        ours.release()
    assert not ours._is_owned()


@pytest.mark.parametrize(
    "kwargs", [{"blocking": False, "timeout": 1}, {"timeout": -2}, {"timeout": float("nan")}, {"timeout": 0}]
)
def test_acquire_arguments_as_rlock(new_condition, kwargs):
    ours, reference = new_condition(), threading.RLock()
    assert _outcome(lambda: ours.acquire(**kwargs)) == _outcome(lambda: reference.acquire(**kwargs))


def test_a_held_condition_blocks_other_threads_until_every_level_is_released(new_condition):
    condition = new_condition()
    condition.acquire()
    condition.acquire()
    results = []

    def other():
        results.append(condition.acquire(blocking=False))
        results.append(condition.acquire(timeout=0.01))
        results.append(condition.acquire(timeout=30))
        condition.release()

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.05)
    condition.release()
    time.sleep(0.02)
    assert results == [False, False]
    condition.release()
    thread.join(30)
    assert results == [False, False, True]


def test_wait_releases_every_level_and_takes_them_back(new_condition):
    condition = new_condition()
    woke = []

    def waiter():
        with condition, condition:
            woke.append(condition.wait(30))
            condition.release()  # both levels are held again: this leaves one
            woke.append(condition._is_owned())
            condition.acquire()

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 30
    while not condition._has_waiters() and time.monotonic() < deadline:
        time.sleep(0.001)
    with condition:  # the waiter released both levels
        condition.notify()
    thread.join(30)
    assert woke == [True, True]
    assert not condition._has_waiters()


def test_notify_wakes_the_oldest_waiters_first(new_condition):
    condition = new_condition()
    order = []

    def waiter(i):
        with condition:
            if condition.wait(30):
                order.append(i)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # queued in this order
            with condition:
                if condition._has_waiters() and len(threads) == i + 1:
                    break
            time.sleep(0.001)
        time.sleep(0.01)
    with condition:
        condition.notify(2)
    for t in threads[:2]:
        t.join(30)
    assert sorted(order) == [0, 1]
    with condition:
        condition.notify_all()
    threads[2].join(30)
    assert sorted(order) == [0, 1, 2]


def test_a_timed_out_wait_leaves_no_waiter(new_condition):
    condition = new_condition()
    with condition:
        assert condition.wait(0.01) is False
        assert condition.wait(-1) is False
        assert condition._is_owned()
    assert not condition._has_waiters()


def test_a_signal_ends_a_wait_and_the_lock_is_held_again(run_isolated):
    proc = run_isolated(
        """
        import signal, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(1)
        condition = pool._new_condition()
        def interrupt(*_): raise KeyboardInterrupt
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with condition:
            try:
                condition.wait(30)
            except KeyboardInterrupt:
                print("interrupted, owned:", condition._is_owned())
        print("released:", not condition._is_owned())
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["interrupted, owned: True", "released: True"]


def test_rust_pool_futures_are_one_gc_tracked_object(pool_factory, backend):
    if backend != "rust":
        pytest.skip("the Python backend's condition is an RLock subclass")
    future = pool_factory(1).submit(int)
    assert future.result(30) == 0
    assert not gc.is_tracked(future._condition)


def _cancel_all(futures, part, cancelled):
    for i in part:
        cancelled[i] = futures[i].cancel()


def _wait_all(futures, part, seen):
    for i in part:
        try:
            seen[i] = futures[i].result(timeout=30)
        except cf.CancelledError:
            seen[i] = "cancelled"


def test_concurrent_settle_cancel_and_wait_agree_with_a_sequential_model(pool_factory):
    """Each future ends cancelled (exactly when `cancel()` returned True) or finished with its
    value; waiters on other threads see the same; `as_completed` yields each once."""
    pool = pool_factory(2)
    rng = random.Random(7)
    for _ in range(5):
        futures = [pool.submit(pow, 3, i) for i in range(400)]
        cancelled: dict[int, bool] = {}
        seen: dict[int, object] = {}
        indices = list(range(400))
        rng.shuffle(indices)
        threads = [threading.Thread(target=_cancel_all, args=(futures, indices[:150], cancelled))]
        threads += [threading.Thread(target=_wait_all, args=(futures, indices[k::3], seen)) for k in range(3)]
        for t in threads:
            t.start()
        completed = list(cf.as_completed(futures, timeout=60))
        for t in threads:
            t.join(60)
        assert len(completed) == len(set(completed)) == 400
        for i, future in enumerate(futures):
            if cancelled.get(i):
                assert future.cancelled() and seen[i] == "cancelled"
            else:
                assert future.result() == 3**i == seen[i]
        assert not any(f._condition._is_owned() for f in futures)


def test_waiting_on_done_futures_gives_them_no_waiter_list(pool_factory, backend):
    pool = pool_factory(2)
    futures = [pool.submit(pow, 2, i) for i in range(200)]
    assert [f.result(timeout=60) for f in futures] == [2**i for i in range(200)]
    done, _ = cf.wait(futures)
    assert len(done) == 200
    assert [f.result() for f in cf.as_completed(futures)]
    assert all(not f._waiters for f in futures)
    if backend == "rust":  # the shared stand-in, not a list per future
        assert all(f._waiter_list is None for f in futures)


def test_futures_die_with_their_last_reference_after_wait_and_as_completed(pool_factory):
    """No reference cycle through a future, its condition or its waiter list: with the cyclic GC
    off, every future is freed as soon as the caller drops it."""
    pool = pool_factory(2)
    gc.collect()
    gc.disable()
    try:
        futures = [pool.submit(pow, 2, i) for i in range(3000)]
        cf.wait(futures[:1500], timeout=60)
        assert len(list(cf.as_completed(futures, timeout=60))) == 3000
        cf.wait(futures, timeout=60)
        refs = [weakref.ref(f) for f in futures]
        del futures
        assert sum(r() is not None for r in refs) == 0
    finally:
        gc.enable()

"""The pool's futures: the waiting machinery of concurrent.futures on their lighter condition."""

import concurrent.futures as cf
import threading

import pytest


@pytest.fixture
def gated(pool_factory):
    """A one-worker pool whose worker is blocked until `gate` is set, plus that gate."""
    pool = pool_factory(1)
    gate, started = threading.Event(), threading.Event()
    pool.submit(lambda: (started.set(), gate.wait(30)))
    assert started.wait(10)
    yield pool, gate
    gate.set()


def test_many_threads_waiting_on_one_future_all_wake(gated):
    pool, gate = gated
    future = pool.submit(lambda: "value")
    results = []
    waiters = [threading.Thread(target=lambda: results.append(future.result(30))) for _ in range(8)]
    for t in waiters:
        t.start()
    gate.set()
    for t in waiters:
        t.join(30)
    assert results == ["value"] * 8


def test_timeout_leaves_no_waiter_behind(gated):
    pool, gate = gated
    future = pool.submit(int)
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.02)
    with pytest.raises(cf.TimeoutError):
        future.exception(timeout=0)
    assert not future._condition._has_waiters()
    gate.set()
    assert future.result(timeout=30) == 0


def test_as_completed_and_wait_on_pending_futures(gated):
    pool, gate = gated
    futures = [pool.submit(pow, 2, i) for i in range(20)]
    done, pending = cf.wait(futures, timeout=0.01)
    assert not done and len(pending) == 20
    threading.Timer(0.05, gate.set).start()
    first, _ = cf.wait(futures, timeout=30, return_when=cf.FIRST_COMPLETED)
    assert first
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [2**i for i in range(20)]


def test_cancel_wakes_a_blocked_waiter_and_callbacks_run(gated):
    pool, gate = gated
    future = pool.submit(int)
    outcome, called = [], []
    waiter = threading.Thread(target=_wait_cancel, args=(future, outcome))
    waiter.start()
    future.add_done_callback(called.append)
    assert future.cancel()
    waiter.join(30)
    assert outcome == ["CancelledError"] and called == [future]
    late = []
    future.add_done_callback(late.append)  # already done: runs at once
    assert late == [future]


def _wait_cancel(future, outcome):
    try:
        future.result(30)
    except cf.CancelledError:
        outcome.append("CancelledError")


def test_settling_twice_is_an_invalid_state(pool_factory):
    pool = pool_factory(1)
    future = pool.submit(int)
    future.result(timeout=10)
    with pytest.raises(cf.InvalidStateError, match="FINISHED"):
        future.set_result(1)
    with pytest.raises(cf.InvalidStateError, match="FINISHED"):
        future.set_exception(ValueError())
    assert not future.cancel() and future.result() == 0

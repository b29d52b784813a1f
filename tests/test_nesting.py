"""Tasks that submit tasks, and wait on them, inside the pool."""

import concurrent.futures as cf
import threading

import pytest


def fib(pool, n):
    if n < 2:
        return n
    left = pool.submit(fib, pool, n - 1)
    right = pool.submit(fib, pool, n - 2)
    return left.result() + right.result()


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_waiting_on_own_subtasks_never_deadlocks(pool_factory, workers):
    pool = pool_factory(workers)
    assert pool.submit(fib, pool, 14).result(timeout=60) == 377


def test_exception_and_timeout_inside_a_worker(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()

    def outer():
        inner = pool.submit(lambda: 1 / 0)
        blocked = cf.Future()  # never completed: a helping wait must still time out
        blocked._core = inner._core
        with pytest.raises(cf.TimeoutError):
            blocked.result(timeout=0.05)
        return type(inner.exception()).__name__

    assert pool.submit(outer).result(timeout=30) == "ZeroDivisionError"
    gate.set()


def test_nested_submissions_are_stolen_by_idle_siblings(pool_factory):
    pool = pool_factory(2)
    import time

    def parent():
        children = [pool.submit(time.sleep, 0.002) for _ in range(200)]
        cf.wait(children)  # plain wait: the sibling must steal to make progress
        return len(children)

    assert pool.submit(parent).result(timeout=60) == 200
    assert pool.stats()["stolen"] > 0


def test_a_plain_future_result_in_a_worker_still_works(pool_factory):
    pool = pool_factory(2)
    outside = cf.Future()
    waiter = pool.submit(outside.result, 30)
    outside.set_result("done")
    assert waiter.result(timeout=30) == "done"

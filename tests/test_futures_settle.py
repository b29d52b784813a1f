"""The pool's futures are started and settled by the worker (on the Rust core without calling
their Python methods): everything that watches a future must still see each transition once,
as with ``ThreadPoolExecutor``: ``result()`` waiters, ``wait()``, ``as_completed()``,
done-callbacks, ``asyncio.wrap_future``, and cancellation racing with the start."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import random
import threading

import pytest
from freeagentics_rs import WorkStealingThreadPool

WAIT = 30


@pytest.fixture
def pool(backend):
    pool = WorkStealingThreadPool(2, backend=backend)
    yield pool
    pool.shutdown()


def test_result_waiters_on_other_threads_are_woken(pool):
    gate = threading.Event()
    future = pool.submit(lambda: gate.wait(WAIT) and 42)
    seen: list[int] = []
    readers = [threading.Thread(target=lambda: seen.append(future.result(WAIT))) for _ in range(4)]
    for reader in readers:
        reader.start()
    gate.set()
    for reader in readers:
        reader.join(WAIT)
    assert seen == [42] * 4


@pytest.mark.parametrize("return_when", [cf.FIRST_COMPLETED, cf.ALL_COMPLETED])
def test_wait_installed_before_the_results_sees_them(pool, return_when):
    gate = threading.Event()
    futures = [pool.submit(lambda i=i: gate.wait(WAIT) and i) for i in range(2)]
    futures += [pool.submit(lambda i=i: i) for i in range(2, 50)]
    threading.Timer(0.05, gate.set).start()
    done, not_done = cf.wait(futures, timeout=WAIT, return_when=return_when)
    assert done and done | not_done == set(futures)
    if return_when == cf.ALL_COMPLETED:
        assert not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=WAIT)) == list(range(50))


def test_done_callbacks_run_once_after_the_result_is_set(pool):
    calls: list[tuple[int, object]] = []
    lock = threading.Lock()

    def callback(future):
        with lock:
            calls.append((id(future), future.result(timeout=0)))

    gate = threading.Event()
    futures = [pool.submit(lambda i=i: gate.wait(WAIT) and i) for i in range(20)]
    for future in futures:
        future.add_done_callback(callback)
    gate.set()
    cf.wait(futures, timeout=WAIT)
    for future in futures:  # added when done: called at once
        future.add_done_callback(callback)
    assert sorted(calls) == sorted([(id(f), f.result()) for f in futures] * 2)


def test_exceptions_and_none_results_settle_as_before(pool):
    def fail():
        raise KeyError("k")

    assert pool.submit(lambda: None).result(WAIT) is None
    error = pool.submit(fail).exception(WAIT)
    assert isinstance(error, KeyError) and error.__traceback__ is not None


def test_wrap_future_and_run_in_executor(pool):
    async def main():
        loop = asyncio.get_running_loop()
        wrapped = await asyncio.wrap_future(pool.submit(sum, [1, 2, 3]))
        ran = await loop.run_in_executor(pool, max, 4, 5)
        return wrapped, ran

    assert asyncio.run(main()) == (6, 5)


@pytest.mark.parametrize("seed", range(3))
def test_cancelling_while_workers_start_matches_a_sequential_model(pool, seed):
    # Each future ends either cancelled (its call never ran) or finished (its call ran once):
    # the model is the set of calls that ran, which must be exactly the futures not cancelled.
    rng = random.Random(seed)
    ran: list[int] = []
    lock = threading.Lock()

    def record(i):
        with lock:
            ran.append(i)
        return i

    futures = [pool.submit(record, i) for i in range(2000)]
    cancelled = {i for i in rng.sample(range(2000), 700) if futures[i].cancel()}
    cf.wait(futures, timeout=WAIT)
    assert sorted(ran) == [i for i in range(2000) if i not in cancelled]
    for i, future in enumerate(futures):
        assert future.done()
        if i in cancelled:
            assert future.cancelled()
        else:
            assert not future.cancelled() and future.result() == i

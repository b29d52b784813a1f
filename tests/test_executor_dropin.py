"""WorkStealingThreadPool and AdaptiveThreadPoolExecutor as drop-ins for ThreadPoolExecutor:
threads started on demand, FIFO start of external submits, threads named for `threading`,
helping inside `wait`/`as_completed`, the stdlib's constructor signature, and constructor
arguments that either work or are refused with an error naming the argument."""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import logging
import threading

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AdaptiveThreadPoolExecutor, WorkStealingThreadPool
from freeagentics_rs.executor import MAX_WORKERS
from hypothesis import given
from hypothesis import strategies as st

WAIT = 30  # seconds a test waits before it calls a missing event a failure


def test_threads_start_on_demand_and_idle_ones_are_reused(pool_factory):
    pool = pool_factory(8)
    assert pool.stats()["workers"] == 0
    assert pool.submit(pow, 2, 3).result(timeout=WAIT) == 8
    assert pool.submit(pow, 2, 4).result(timeout=WAIT) == 16
    assert pool.stats()["workers"] == 1  # the idle thread took the second task
    gate = threading.Event()
    try:
        blocked = [pool.submit(gate.wait, WAIT) for _ in range(20)]
        assert pool.stats()["workers"] == 8  # never more than max_workers
    finally:
        gate.set()
    assert all(f.result(timeout=WAIT) for f in blocked)
    assert pool.stats()["workers"] == 8


def test_a_huge_max_workers_starts_nothing_until_needed(pool_factory):
    pool = pool_factory(MAX_WORKERS)
    assert pool.stats()["workers"] == 0
    assert pool.submit(abs, -1).result(timeout=WAIT) == 1
    assert pool.stats()["workers"] == 1


def test_max_workers_above_the_bound_is_refused(backend):
    with pytest.raises(ValueError, match=rf"^max_workers: must be between 1 and {MAX_WORKERS}, got {MAX_WORKERS + 1}$"):
        WorkStealingThreadPool(MAX_WORKERS + 1, backend=backend)


def test_external_submits_start_in_submission_order(pool_factory):
    # Each task records its start and blocks on its own event; the test ends them one at a
    # time, oldest first. In FIFO order the running tasks are always the oldest unfinished two.
    pool = pool_factory(2)
    n = 12
    started: list[int] = []
    changed = threading.Condition()
    release = [threading.Event() for _ in range(n)]

    def task(i):
        with changed:
            started.append(i)
            changed.notify_all()
        release[i].wait(WAIT)

    futures = [pool.submit(task, i) for i in range(n)]
    try:
        for finished in range(n - 1):
            expect = min(n, finished + 2)
            with changed:
                assert changed.wait_for(lambda expect=expect: len(started) >= expect, WAIT), started
                assert sorted(started) == list(range(expect)), started
            release[finished].set()
    finally:
        for event in release:
            event.set()
    cf.wait(futures, WAIT)
    assert sorted(started) == list(range(n))


def test_workers_are_threads_named_with_the_prefix(pool_factory, caplog):
    pool = pool_factory(2, thread_name_prefix="calc")
    gate = threading.Barrier(2, timeout=WAIT)

    def who():
        gate.wait()
        thread = threading.current_thread()
        logging.getLogger("who").warning("in a task")
        return (
            thread.name,
            type(thread).__name__,
            thread in threading.enumerate(),
            thread.ident == threading.get_ident(),
        )

    with caplog.at_level(logging.WARNING, logger="who"):
        seen = [f.result(timeout=WAIT) for f in [pool.submit(who), pool.submit(who)]]
    assert sorted(name for name, *_ in seen) == ["calc_0", "calc_1"]
    assert all(kind != "_DummyThread" and listed and same for _, kind, listed, same in seen)
    assert sorted(r.threadName for r in caplog.records) == ["calc_0", "calc_1"]
    assert not [t for t in threading.enumerate() if isinstance(t, threading._DummyThread)]


def test_the_default_prefix_names_the_class(pool_factory):
    pool = pool_factory(1)
    name = pool.submit(lambda: threading.current_thread().name).result(timeout=WAIT)
    assert name.startswith("WorkStealingThreadPool-") and name.endswith("_0")


def test_finished_workers_leave_threading(backend):
    before = {t.ident for t in threading.enumerate()}
    with WorkStealingThreadPool(3, "gone", backend=backend) as pool:
        gate = threading.Barrier(3, timeout=WAIT)
        workers = [
            f.result(timeout=WAIT)
            for f in [pool.submit(lambda: (gate.wait(), threading.current_thread())[1]) for _ in range(3)]
        ]
    assert {t.ident for t in threading.enumerate()} <= before
    for thread in workers:
        thread.join(WAIT)  # joining a worker that has left returns at once, as for any thread
        assert not thread.is_alive()


@pytest.mark.parametrize("how", ["wait", "as_completed"])
def test_wait_and_as_completed_in_a_task_help_with_the_pools_own_futures(pool_factory, how):
    pool = pool_factory(1)

    def parent():
        children = [pool.submit(pow, 2, i) for i in range(5)]
        if how == "wait":
            done, not_done = cf.wait(children, timeout=WAIT)
            return len(done), len(not_done)
        return sorted(f.result() for f in cf.as_completed(children, timeout=WAIT)), 0

    expected = (5, 0) if how == "wait" else ([1, 2, 4, 8, 16], 0)
    assert pool.submit(parent).result(timeout=2 * WAIT) == expected


def test_first_completed_wait_in_a_task_returns_when_one_is_done(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()

    def parent():
        children = [pool.submit(gate.wait, WAIT), pool.submit(abs, -3)]
        done, _ = cf.wait(children, timeout=WAIT, return_when=cf.FIRST_COMPLETED)
        gate.set()
        return [f.result() for f in done]

    # The helping worker runs the newest child first (its own deque is LIFO): abs(-3) is done.
    assert pool.submit(parent).result(timeout=2 * WAIT) == [3]


# -- the adaptive executor's signature is ThreadPoolExecutor's --------------------------------


def test_adaptive_signature_starts_like_thread_pool_executor():
    params = list(inspect.signature(AdaptiveThreadPoolExecutor).parameters.values())
    stdlib = list(inspect.signature(cf.ThreadPoolExecutor).parameters.values())
    assert [p.name for p in params[:4]] == [p.name for p in stdlib]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:4])
    assert all(p.kind is p.KEYWORD_ONLY for p in params[4:])
    assert "min_workers" in [p.name for p in params[4:]]


def test_adaptive_first_positional_is_max_workers(adaptive_factory):
    pool = adaptive_factory(4, "ad", None, ())
    assert (pool.max_workers, pool.min_workers) == (4, 2)
    assert pool.submit(lambda: threading.current_thread().name).result(timeout=WAIT) == "ad_0"


def test_adaptive_with_one_worker_works(adaptive_factory):
    pool = adaptive_factory(max_workers=1)
    assert (pool.max_workers, pool.min_workers, pool.target_workers) == (1, 1, 1)
    assert sum(pool.map(abs, range(-20, 0))) == 210


def test_adaptive_min_workers_above_max_is_refused(backend):
    with pytest.raises(ValueError, match=r"^min_workers: must be at most max_workers \(2\), got 5$"):
        AdaptiveThreadPoolExecutor(2, min_workers=5, backend=backend)


# -- constructor arguments: work, or TypeError/ValueError naming the argument -----------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, MAX_WORKERS, MAX_WORKERS + 1, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 70).map(np.int64),
    st.floats(0, 2).map(np.float64),
    st.text(max_size=4),
    st.just(()),
    st.just(print),
)


def _check_construct(cls, backend, name, value, positional):
    kwargs = {} if positional else {name: value}
    args = (value,) if positional else ()
    try:
        pool = cls(*args, backend=backend, **kwargs)
    except (TypeError, ValueError) as error:
        assert str(error).startswith(f"{name}: "), (name, value, error)
        return
    try:
        assert pool.submit(abs, -2).result(timeout=WAIT) == 2
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@given(value=_values, positional=st.booleans())
def test_work_stealing_max_workers_works_or_names_itself(value, positional):
    _check_construct(WorkStealingThreadPool, freeagentics_rs.BACKEND, "max_workers", value, positional)


@given(name=st.sampled_from(["thread_name_prefix", "initializer", "initargs"]), value=_values)
def test_work_stealing_other_arguments_work_or_name_themselves(name, value):
    _check_construct(WorkStealingThreadPool, freeagentics_rs.BACKEND, name, value, False)


_ADAPTIVE_ARGS = [
    "max_workers",
    "min_workers",
    "io_workers",
    "cpu_workers",
    "mixed_workers",
    "window",
    "io_threshold",
    "cpu_threshold",
    "hysteresis",
    "cooldown",
    "thread_name_prefix",
]


@given(name=st.sampled_from(_ADAPTIVE_ARGS), value=_values)
def test_adaptive_arguments_work_or_name_themselves(name, value):
    _check_construct(AdaptiveThreadPoolExecutor, freeagentics_rs.BACKEND, name, value, False)


def test_refused_arguments_name_the_bound(backend):
    for name in ["io_workers", "cpu_workers", "mixed_workers"]:
        with pytest.raises(ValueError, match=rf"^{name}: must be between 1 and {MAX_WORKERS}, got"):
            AdaptiveThreadPoolExecutor(backend=backend, **{name: MAX_WORKERS + 1})
    with pytest.raises(ValueError, match=r"^window: must be between 1 and \d+, got 0$"):
        AdaptiveThreadPoolExecutor(backend=backend, window=0)

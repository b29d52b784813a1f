"""CPython's own `concurrent.futures` test cases for `ThreadPoolExecutor` that apply to a drop-in
(Lib/test/test_concurrent_futures/: executor, thread pool, shutdown, initializer), restated for
WorkStealingThreadPool and AdaptiveThreadPoolExecutor on the backend under test."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import threading
import time
import weakref

import freeagentics_rs
import pytest
from freeagentics_rs import AdaptiveThreadPoolExecutor, BrokenThreadPool, WorkStealingThreadPool
from helpers import run_python

WAIT = 30


@pytest.fixture(params=[WorkStealingThreadPool, AdaptiveThreadPoolExecutor])
def make(request, backend):
    """Builds a pool of the class under test (positional arguments as ThreadPoolExecutor's)."""
    pools = []

    def build(*args, **kwargs):
        pool = request.param(*args, backend=backend, **kwargs)
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


# -- ExecutorTest ------------------------------------------------------------------------------


def test_submit(make):
    assert make(2).submit(pow, 2, 8).result(timeout=WAIT) == 256


def test_submit_keyword(make):
    pool = make(2)
    assert pool.submit(mul, 2, y=8).result(timeout=WAIT) == 16
    assert pool.submit(capture, 1, self=2, fn=3).result(timeout=WAIT) == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        pool.submit(fn=capture, arg=1)
    with pytest.raises(TypeError):
        pool.submit(arg=1)


def test_map(make):
    pool = make(2)
    assert list(pool.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(pool.map(pow, range(10), range(10), chunksize=3)) == list(map(pow, range(10), range(10)))


def test_map_exception(make):
    results = make(2).map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(make):
    pool = make(2)
    gate = threading.Event()
    results = []
    try:
        with pytest.raises(cf.TimeoutError):
            for result in pool.map(lambda t: gate.wait(t), [0, 0, 6], timeout=0.5):
                results.append(result)
    finally:
        gate.set()
    assert results == [False, False]


def test_map_submits_without_iteration(make):
    finished = []
    pool = make(2)
    pool.map(finished.append, range(10))
    pool.shutdown(wait=True)
    assert sorted(finished) == list(range(10))


def test_shutdown_race(make):
    # Submit and shutdown racing must not raise or hang.
    pool = make(2)
    pool.map(str, [2] * (2 * 4 + 1))
    pool.shutdown()


def test_no_stale_references(make):
    # A finished task's objects are released, not kept by the pool.
    pool = make(2)

    class Token:
        pass

    finalized = threading.Event()
    token = Token()
    weakref.finalize(token, finalized.set)
    pool.submit(id, token).result(timeout=WAIT)
    del token
    gc.collect()
    assert finalized.wait(WAIT)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_negative(backend, bad):
    for cls in (WorkStealingThreadPool, AdaptiveThreadPoolExecutor):
        with pytest.raises(ValueError, match="^max_workers: "):
            cls(max_workers=bad, backend=backend)


def test_free_reference(make):
    # The future's result does not outlive the future and the caller's reference.
    pool = make(2)

    class Token:
        pass

    for _ in range(5):
        ref = weakref.ref(pool.submit(Token).result(timeout=WAIT))
        gc.collect()
        assert ref() is None


# -- ThreadPoolExecutor specifics ----------------------------------------------------------------


def test_idle_thread_reuse(make):
    pool = make()
    pool.submit(mul, 21, 2).result(timeout=WAIT)
    pool.submit(mul, 6, 7).result(timeout=WAIT)
    pool.submit(mul, 3, 14).result(timeout=WAIT)
    assert pool.stats()["workers"] == 1


def test_saturation(make):
    pool = make(4)
    gate = threading.Event()
    try:
        for _ in range(15 * pool.max_workers):
            pool.submit(gate.wait, WAIT)
        assert pool.stats()["workers"] <= pool.max_workers
    finally:
        gate.set()


def test_thread_names_assigned(make):
    pool = make(max_workers=3, thread_name_prefix="SpecialPool")
    names = {f.result(timeout=WAIT) for f in [pool.submit(lambda: threading.current_thread().name) for _ in range(20)]}
    assert names and all(name.startswith("SpecialPool_") for name in names)


def test_thread_names_default(make):
    pool = make(max_workers=3)
    names = {f.result(timeout=WAIT) for f in [pool.submit(lambda: threading.current_thread().name) for _ in range(20)]}
    prefix = f"{type(pool).__name__}-"
    assert names and all(name.startswith(prefix) and "_" in name for name in names)


# -- shutdown ------------------------------------------------------------------------------------


def test_run_after_shutdown(make):
    pool = make(2)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 5)


def test_context_manager_shutdown(backend):
    for cls in (WorkStealingThreadPool, AdaptiveThreadPoolExecutor):
        with cls(5, backend=backend) as pool:
            assert list(pool.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        assert pool.stats()["workers"] == 0


def test_shutdown_no_wait(make):
    pool = make(5)
    futures = [pool.submit(time.sleep, 0.05) for _ in range(5)]
    pool.shutdown(wait=False)
    cf.wait(futures, WAIT)
    assert all(f.done() for f in futures)


def test_cancel_futures(make):
    pool = make(max_workers=1)
    gate, started = threading.Event(), threading.Event()
    first = pool.submit(lambda: (started.set(), gate.wait(WAIT))[1])
    assert started.wait(WAIT)
    rest = [pool.submit(time.sleep, 0) for _ in range(50)]
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=WAIT) is True
    assert all(f.cancelled() for f in rest)


def test_interpreter_shutdown_runs_what_was_submitted():
    out = run_python(
        """
        import time, freeagentics_rs
        pool = freeagentics_rs.AdaptiveThreadPoolExecutor(2)
        pool.submit(lambda: (time.sleep(0.1), print("apple")))
        """
    )
    assert out.returncode == 0, out.stderr
    assert (out.stdout, out.stderr) == ("apple\n", "")


def test_submit_after_interpreter_shutdown():
    out = run_python(
        """
        import atexit, freeagentics_rs
        pool = freeagentics_rs.WorkStealingThreadPool(1)

        @atexit.register
        def late():
            try:
                pool.submit(print, "never")
            except RuntimeError as error:
                print("refused:", error)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "refused: cannot schedule new futures after interpreter shutdown\n"


def test_del_shutdown(backend):
    pool = WorkStealingThreadPool(5, backend=backend)
    list(pool.map(abs, range(40)))
    core = pool._core
    del pool
    gc.collect()
    core.shutdown(wait=True, cancel_futures=False)
    assert core.stats()["workers"] == 0


# -- initializer ---------------------------------------------------------------------------------

_INIT_STATE = threading.local()


def _init(value):
    _INIT_STATE.value = value


def _read_init():
    return getattr(_INIT_STATE, "value", None)


def test_initializer(make):
    pool = make(5, "", _init, ("initialized",))
    assert [f.result(timeout=WAIT) for f in [pool.submit(_read_init) for _ in range(10)]] == ["initialized"] * 10


def _fail():
    raise ValueError("error in initializer")


def test_failing_initializer_breaks_the_pool(make, caplog):
    pool = make(5, initializer=_fail)
    with caplog.at_level("CRITICAL", logger="concurrent.futures"):
        try:
            future = pool.submit(time.sleep, 0)
        except BrokenThreadPool:
            pass  # the first thread may have broken the pool already
        else:
            with pytest.raises(BrokenThreadPool):
                future.result(timeout=WAIT)
        # From then on every submit fails.
        with pytest.raises(BrokenThreadPool):
            pool.submit(time.sleep, 0)
    assert "Exception in initializer:" in caplog.text
    assert issubclass(BrokenThreadPool, cf.BrokenExecutor)
    assert freeagentics_rs.BrokenThreadPool is BrokenThreadPool

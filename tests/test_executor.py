"""WorkStealingThreadPool: the concurrent.futures executor contract."""

import asyncio
import concurrent.futures as cf
import threading
import traceback

import freeagentics_rs
import pytest
from freeagentics_rs import WorkStealingThreadPool


def fail(message):
    raise KeyError(message)


def test_submit_passes_args_and_kwargs(pool_factory):
    pool = pool_factory(2)
    future = pool.submit(lambda a, b=0, *, c: (a, b, c), 1, b=2, c=3)
    assert isinstance(future, cf.Future)
    assert future.result(timeout=10) == (1, 2, 3)


def test_default_size_is_the_cpus_this_process_may_use(pool_factory, backend):
    pool = pool_factory()
    assert pool.max_workers == freeagentics_rs.available_cpus()
    assert pool.stats()["max_workers"] == pool.max_workers
    if backend == "rust":
        from freeagentics_rs import _native

        assert freeagentics_rs.available_cpus() == _native.available_parallelism()


@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_max_workers_is_a_value_error(bad, backend):
    with pytest.raises(ValueError, match=rf"^max_workers: must be between 1 and \d+, got {bad}$"):
        WorkStealingThreadPool(bad, backend=backend)


def test_bad_argument_types_name_the_argument(backend, pool_factory):
    with pytest.raises(TypeError, match="^max_workers: must be an int, not str$"):
        WorkStealingThreadPool("4", backend=backend)
    with pytest.raises(TypeError, match="^initializer: must be a callable, not int$"):
        WorkStealingThreadPool(1, initializer=5, backend=backend)
    pool = pool_factory(1)
    with pytest.raises(TypeError, match="fn must be a callable, not int"):
        pool.submit(42)


def test_submit_after_shutdown_is_a_runtime_error(backend):
    pool = WorkStealingThreadPool(2, backend=backend)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown$"):
        pool.submit(int)
    pool.shutdown()  # a second shutdown is harmless


def test_exception_reaches_the_future_with_traceback_and_the_worker_lives_on(pool_factory):
    pool = pool_factory(1)
    future = pool.submit(fail, "boom")
    with pytest.raises(KeyError, match="boom"):
        future.result(timeout=10)
    error = future.exception()
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "fail" in frames
    assert pool.submit(int, "7").result(timeout=10) == 7


def test_base_exceptions_are_captured_too(pool_factory):
    pool = pool_factory(1)

    def exit_():
        raise SystemExit(3)

    assert isinstance(pool.submit(exit_).exception(timeout=10), SystemExit)
    assert pool.submit(lambda: "alive").result(timeout=10) == "alive"


def test_wait_and_as_completed(pool_factory):
    pool = pool_factory(3)
    futures = [pool.submit(pow, i, 2) for i in range(200)]
    done, not_done = cf.wait(futures, timeout=30)
    assert not not_done and len(done) == 200
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [i * i for i in range(200)]


def test_first_exception_wait(pool_factory):
    pool = pool_factory(2)
    gate = threading.Event()
    futures = [pool.submit(fail, "x"), pool.submit(gate.wait, 30)]
    done, _ = cf.wait(futures, timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert futures[0] in done
    gate.set()


def test_asyncio_integration(pool_factory):
    pool = pool_factory(2)

    async def main():
        loop = asyncio.get_running_loop()
        wrapped = await asyncio.wrap_future(pool.submit(pow, 2, 5))
        in_executor = await loop.run_in_executor(pool, pow, 3, 2)
        loop.set_default_executor(pool)
        default = await loop.run_in_executor(None, pow, 2, 3)
        gathered = await asyncio.gather(*(loop.run_in_executor(None, abs, -i) for i in range(50)))
        return wrapped, in_executor, default, gathered

    assert asyncio.run(main()) == (32, 9, 8, list(range(50)))


def test_cancel_a_queued_future(pool_factory):
    pool = pool_factory(1)
    gate = threading.Event()
    started = threading.Event()
    blocker = pool.submit(lambda: (started.set(), gate.wait(30)))
    assert started.wait(10)
    ran = []
    queued = pool.submit(ran.append, 1)
    assert queued.cancel()
    gate.set()
    blocker.result(timeout=10)
    pool.shutdown(wait=True)
    assert queued.cancelled() and ran == []
    with pytest.raises(cf.CancelledError):
        queued.result()


def test_stats_count_what_happened(pool_factory):
    pool = pool_factory(2)
    cf.wait([pool.submit(int) for _ in range(500)], timeout=30)
    stats = pool.stats()
    assert {"workers", "submitted", "completed", "stolen", "queued"} <= set(stats)
    assert stats["submitted"] == 500 and stats["workers"] == 2
    pool.shutdown(wait=True)
    stats = pool.stats()
    assert stats["completed"] == 500 and stats["queued"] == 0 and stats["workers"] == 0


def test_context_manager_waits_for_all_work(backend):
    results = []
    with WorkStealingThreadPool(2, backend=backend) as pool:
        for i in range(100):
            pool.submit(results.append, i)
    assert sorted(results) == list(range(100))
    assert "shutdown" in repr(pool) and backend in repr(pool)


def test_idle_pool_uses_no_cpu(pool_factory):
    import time

    pool = pool_factory(8)
    pool.submit(int).result(timeout=10)
    time.sleep(0.05)  # let the workers park
    before = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - before < 0.1  # parked, not polling


def test_initializer_runs_once_per_worker(pool_factory):
    seen = []
    lock = threading.Lock()

    def init(tag):
        with lock:
            seen.append((tag, threading.get_ident()))

    pool = pool_factory(3, initializer=init, initargs=("x",))
    cf.wait([pool.submit(int) for _ in range(30)], timeout=30)
    pool.shutdown(wait=True)
    assert len(seen) == 3 and {tag for tag, _ in seen} == {"x"} and len({t for _, t in seen}) == 3


def test_failing_initializer_breaks_the_pool(backend, caplog):
    gate = threading.Event()

    def init():
        gate.wait(10)
        raise ValueError("no init")

    pool = WorkStealingThreadPool(1, initializer=init, backend=backend)
    queued = [pool.submit(int) for _ in range(5)]
    gate.set()
    for future in queued:
        with pytest.raises(freeagentics_rs.BrokenThreadPool, match="initializer failed"):
            future.result(timeout=10)
    with pytest.raises(freeagentics_rs.BrokenThreadPool, match="A thread initializer failed"):
        pool.submit(int)
    pool.shutdown(wait=True)
    assert any("Exception in initializer" in r.message for r in caplog.records)


def test_a_rust_panic_becomes_an_exception_on_its_future(pool_factory, backend):
    if backend != "rust":
        pytest.skip("only the Rust core can panic")
    pool = pool_factory(1)
    future = cf.Future()
    pool._core._submit_panic(future, "core bug")
    with pytest.raises(freeagentics_rs.RustPanicError, match="Rust panic in a pool job: core bug"):
        future.result(timeout=10)
    assert pool.submit(int, "5").result(timeout=10) == 5
    assert pool.stats()["workers"] == 1

"""AdaptiveThreadPoolExecutor on the live pool: classification from measured CPU share, real
resizing with nothing lost, and the executor contract."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

import pytest
from freeagentics_rs import AdaptiveThreadPoolExecutor, available_cpus
from helpers import run_python


def spin(seconds: float) -> None:
    """Pure Python, holding the GIL, for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def io_task(_=None) -> None:
    time.sleep(0.005)


def cpu_task(_=None) -> None:
    spin(0.002)


def long_cpu_task(_=None) -> None:
    # Longer than the GIL switch interval and a scheduler time slice.
    spin(0.02)


def mixed_task(_=None) -> None:
    spin(0.002)
    time.sleep(0.002)


def run_until(pool, task, done, rounds: int = 60, per_round: int = 16) -> None:
    """Runs rounds of `task` until `done()` holds (a bounded number of rounds, no clock)."""
    for _ in range(rounds):
        list(pool.map(task, range(per_round)))
        if done():
            return
    pytest.fail(f"not reached: workload={pool.workload} target={pool.target_workers} {pool.resize_events()}")


def test_it_is_a_thread_pool_executor_that_starts_at_min_workers(adaptive_factory, backend):
    pool = adaptive_factory(min_workers=3, max_workers=10)
    assert isinstance(pool, ThreadPoolExecutor)
    assert (pool.backend, pool.min_workers, pool.max_workers) == (backend, 3, 10)
    assert (pool.workload, pool.target_workers, pool.num_workers) == ("unknown", 3, 0)  # threads start on demand
    assert pool.resize_events() == []
    stats = pool.stats()
    assert stats["cpu_share"] is None and stats["workload"] == "unknown"
    assert stats["max_workers"] == 10 and stats["target_workers"] == 3


def test_sleeping_tasks_are_io_and_the_pool_grows_to_io_workers(adaptive_factory):
    pool = adaptive_factory(min_workers=2, max_workers=64, io_workers=12)
    run_until(pool, io_task, lambda: pool.workload == "io")
    assert pool.target_workers == 12
    assert pool.stats()["cpu_share"] < 0.2
    event = pool.resize_events()[0]
    assert (event.from_workers, event.to_workers, event.workload) == (2, 12, "io")


def test_pure_python_tasks_are_cpu(adaptive_factory):
    pool = adaptive_factory(min_workers=1, max_workers=64)
    run_until(pool, cpu_task, lambda: pool.workload == "cpu", per_round=8)
    assert pool.target_workers <= available_cpus()


def test_a_class_is_never_seen_before_its_resize(backend):
    # test_pure_python_tasks_are_cpu failed once under load: it saw workload "cpu" with the old
    # target_workers (16), read while a worker was between the controller's decision and the
    # core's resize.
    pool = AdaptiveThreadPoolExecutor(min_workers=1, max_workers=8, cpu_workers=4, backend=backend)
    decided, release = threading.Event(), threading.Event()
    sizer = pool._sizer
    decide = sizer.add

    def slow_add(*batch, **kwargs):
        workers = decide(*batch, **kwargs)
        decided.set()
        release.wait(10)  # the worker is preempted before it resizes the core
        return workers

    sizer.add = slow_add
    seen: list = []
    try:
        # Eight pure-CPU tasks: "cpu", four threads.
        feeder = threading.Thread(target=pool._on_samples, args=((8, 0.016, 0.016, 0.0, 0.016, 0.002, 0.0),))
        feeder.start()
        assert decided.wait(10)
        reader = threading.Thread(target=lambda: seen.append((pool.workload, pool.target_workers)))
        reader.start()
        reader.join(0.05)  # a reader that does not wait for the resize is done by now
        release.set()
        feeder.join(10)
        reader.join(10)
    finally:
        release.set()
        pool.shutdown()
    assert seen == [("cpu", 4)]


def test_a_known_mixed_share_is_mixed(adaptive_factory):
    # One thread (no GIL contention): 2 ms of CPU then 2 ms of sleep, a share near 0.5.
    pool = adaptive_factory(min_workers=1, max_workers=1)
    run_until(pool, mixed_task, lambda: pool.workload == "mixed", per_round=8)
    assert 0.3 < pool.stats()["cpu_share"] < 0.7


def test_cpu_phase_after_io_phase_shrinks_the_pool(adaptive_factory):
    # The GIL trap: at 16 threads each pure-Python task mostly waits for the GIL, so its own CPU
    # share is about 1/16, which alone would read as I/O.
    pool = adaptive_factory(min_workers=1, max_workers=64, io_workers=16)
    run_until(pool, io_task, lambda: pool.target_workers == 16)
    run_until(pool, cpu_task, lambda: pool.workload == "cpu" and pool.target_workers <= available_cpus())
    assert any(e.from_workers == 16 and e.to_workers < 16 for e in pool.resize_events())


def test_an_idle_pause_does_not_turn_a_cpu_workload_into_io(adaptive_factory):
    # Idle time is neither CPU nor I/O wait: after a pause the same CPU tasks are still "cpu".
    # Tasks longer than the GIL switch interval, on two threads: each waits for the GIL about
    # half its time (share near 0.5), so only the CPU rate tells that the pool is CPU-bound.
    pool = adaptive_factory(min_workers=2, max_workers=2, cooldown=0)
    run_until(pool, io_task, lambda: pool.workload == "io")
    run_until(pool, long_cpu_task, lambda: pool.workload == "cpu", per_round=4)
    time.sleep(1.2)
    for _ in range(6):
        list(pool.map(long_cpu_task, range(4)))
        assert pool.workload == "cpu", (pool.stats(), pool.resize_events())


def test_numpy_that_releases_the_gil_is_neither_io_nor_gil_bound(adaptive_factory):
    np = pytest.importorskip("numpy")
    a = np.random.default_rng(0).random((160, 160))
    pool = adaptive_factory(min_workers=1, max_workers=64, io_workers=16)
    run_until(pool, io_task, lambda: pool.target_workers == 16)
    # Not I/O: the pool shrinks. Not GIL-bound: it keeps a thread per core (on a busy machine,
    # where preempted GIL holders make threads wait, it may settle as "mixed" a bit above that).
    run_until(
        pool,
        lambda _: [a @ a for _ in range(4)],
        lambda: pool._sizer._probe is None and pool.workload != "io" and pool.target_workers < 16,
    )
    assert pool.target_workers >= min(2, available_cpus())


def test_grow_shrink_cycles_run_every_task_exactly_once(adaptive_factory):
    pool = adaptive_factory(min_workers=1, max_workers=64, io_workers=16, cooldown=0)
    counts = [0] * 4000
    lock = threading.Lock()

    def task(i, kind):
        (io_task if kind == "io" else cpu_task)()
        with lock:
            counts[i] += 1
        return i

    futures = []
    for cycle in range(4):
        kind = "io" if cycle % 2 == 0 else "cpu"
        futures += [pool.submit(task, cycle * 1000 + i, kind) for i in range(1000 if kind == "io" else 150)]
        wait(futures)
    assert all(f.result() is not None for f in futures)
    assert sum(counts) == len(futures) and max(counts) == 1
    sizes = [(e.from_workers, e.to_workers) for e in pool.resize_events()]
    assert any(a < b for a, b in sizes) and any(a > b for a, b in sizes), sizes


def _os_thread_names() -> list[str]:
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # exited meanwhile
    return names


def _live_threads(pool, backend) -> int:
    prefix = pool._thread_name_prefix
    if backend == "python":
        return sum(t.name.startswith(prefix + "_") for t in threading.enumerate())
    return sum(name.startswith(prefix + "_") for name in _os_thread_names())


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_num_workers_is_the_live_thread_count(adaptive_factory, backend):
    pool = adaptive_factory(min_workers=2, max_workers=64, thread_name_prefix="ad", io_workers=9)
    run_until(pool, io_task, lambda: pool.target_workers == 9)
    for target in (3, 11, 1, 6):
        pool._core.resize(target)
        for _ in range(2000):
            if pool.num_workers == target == _live_threads(pool, backend):
                break
            time.sleep(0.005)
        assert pool.num_workers == target == _live_threads(pool, backend)


def test_resizing_under_concurrent_submit_and_shutdown_loses_nothing(adaptive_factory):
    for seed in range(5):
        _resize_under_submit_and_shutdown(
            adaptive_factory(min_workers=1, max_workers=32, cooldown=0), random.Random(seed)
        )


def _resize_under_submit_and_shutdown(pool, rng):
    ran, accepted = [], []
    stop = threading.Event()

    def submitter():
        for i in range(600):
            try:
                accepted.append(pool.submit(ran.append, i))
            except RuntimeError:
                return

    def resizer():
        while not stop.is_set():
            pool._core.resize(rng.randint(1, 24))
            time.sleep(0.0005)

    threads = [threading.Thread(target=submitter) for _ in range(3)] + [threading.Thread(target=resizer)]
    for t in threads:
        t.start()
    time.sleep(rng.random() * 0.01)
    pool.shutdown(wait=True)
    stop.set()
    for t in threads:
        t.join()
    assert all(f.done() and not f.cancelled() for f in accepted)
    assert len(ran) == len(accepted)
    assert pool.num_workers == 0


def test_bad_arguments_name_the_argument(backend):
    cases = [
        (dict(min_workers=0), ValueError, "^min_workers: must be between 1 and 65536, got 0$"),
        (dict(max_workers=-1), ValueError, "^max_workers: must be between 1 and 65536, got -1$"),
        (dict(min_workers=5, max_workers=2), ValueError, r"^min_workers: must be at most max_workers \(2\), got 5$"),
        (dict(io_workers=0), ValueError, "^io_workers: must be between 1 and 65536, got 0$"),
        (dict(cpu_workers=0), ValueError, "^cpu_workers: must be between 1 and 65536, got 0$"),
        (dict(mixed_workers=1.5), TypeError, "^mixed_workers: must be an int, not float$"),
        (dict(window=0), ValueError, "^window: must be between 1 and 1000000, got 0$"),
        (dict(io_threshold=-0.1), ValueError, "^io_threshold: must be between 0.0 and 1.0, got -0.1$"),
        (dict(cpu_threshold=1.5), ValueError, "^cpu_threshold: must be between 0.0 and 1.0, got 1.5$"),
        (
            dict(io_threshold=0.8, cpu_threshold=0.8),
            ValueError,
            r"^io_threshold: must be lower than cpu_threshold \(0.8\), got 0.8$",
        ),
        (dict(io_threshold="low"), TypeError, "^io_threshold: must be a number, not str$"),
        (dict(cooldown=-1), ValueError, "^cooldown: must be at least 0.0, got -1.0$"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            AdaptiveThreadPoolExecutor(backend=backend, **kwargs)


def test_futures_exceptions_and_asyncio_work_as_on_any_executor(adaptive_factory):
    pool = adaptive_factory()
    assert pool.submit(pow, 2, 10).result(timeout=10) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=10)
    assert sorted(f.result() for f in as_completed([pool.submit(abs, -i) for i in range(50)])) == list(range(50))
    assert list(pool.map(str, range(5), chunksize=2)) == ["0", "1", "2", "3", "4"]

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        return await loop.run_in_executor(None, sum, [1, 2, 3])

    assert asyncio.run(main()) == 6


def test_failed_tasks_are_measured_too(adaptive_factory):
    pool = adaptive_factory(min_workers=1, max_workers=8, io_workers=4)

    def failing_io(_):
        time.sleep(0.005)
        raise OSError("unreachable")

    for _ in range(60):
        futures = [pool.submit(failing_io, i) for i in range(8)]
        wait(futures)
        if pool.workload != "unknown":
            break
    assert pool.workload == "io"
    assert all(isinstance(f.exception(), OSError) for f in futures)


def test_shutdown_cancel_futures_and_exit_without_shutdown(adaptive_factory):
    pool = adaptive_factory(min_workers=1, max_workers=4)
    gate, started = threading.Event(), threading.Event()
    running = pool.submit(lambda: (started.set(), gate.wait(30))[1])
    assert started.wait(10)
    queued = [pool.submit(int) for _ in range(20)]
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result() is True and all(f.cancelled() for f in queued)
    out = run_python(
        """
        import time, freeagentics_rs
        pool = freeagentics_rs.AdaptiveThreadPoolExecutor(io_workers=8)
        futures = [pool.submit(time.sleep, 0.005) for _ in range(200)]
        print("submitted")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "submitted"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_fresh_adaptive_pool():
    out = run_python(
        """
        import os, time, freeagentics_rs
        pool = freeagentics_rs.AdaptiveThreadPoolExecutor(io_workers=6)
        for _ in range(20):  # on a busy machine a probe may first take the sleeps for CPU work
            list(pool.map(time.sleep, [0.005] * 50))
            if pool.workload == "io":
                break
        pid = os.fork()
        if pid == 0:
            ok = pool.workload == "unknown" and pool.submit(sum, [1, 2]).result(timeout=10) == 3
            pool.shutdown()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), pool.workload)
        pool.shutdown()
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "io"]


def test_an_unreferenced_adaptive_pool_is_collected_and_its_threads_exit(backend):
    import gc
    import weakref

    pool = AdaptiveThreadPoolExecutor(min_workers=2, max_workers=4, backend=backend)
    list(pool.map(io_task, range(20)))
    core = pool._core
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    core.shutdown(wait=True, cancel_futures=False)
    assert core.stats()["workers"] == 0


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="needs Linux schedstat")
def test_on_a_busy_machine_waiting_for_a_core_is_not_io(adaptive_factory):
    import subprocess
    import sys

    # More busy processes than cores: this pool's one thread gets a core only part of the time.
    hogs = [
        subprocess.Popen([sys.executable, "-c", "print('busy', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE)
        for _ in range(available_cpus() + 1)
    ]
    try:
        assert all(hog.stdout.readline() == b"busy\n" for hog in hogs)
        pool = adaptive_factory(min_workers=1, max_workers=1)
        # Tasks longer than a scheduler time slice, so that they are preempted while they run:
        # their wall time doubles, yet they wait for a core, not for I/O.
        run_until(pool, long_cpu_task, lambda: pool.workload != "unknown", per_round=4)
        run_until(pool, long_cpu_task, lambda: True, rounds=2, per_round=4)
        assert pool.workload == "cpu" and pool.stats()["cpu_share"] > 0.7, pool.stats()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
            hog.stdout.close()


def test_idle_surplus_workers_always_retire(backend):
    # A worker between its retire check and parking must not miss the resize's wake-up.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(30):
            pool = AdaptiveThreadPoolExecutor(min_workers=16, max_workers=16, backend=backend)
            list(pool.map(abs, range(64)))
            pool._core.resize(1)
            for _ in range(2000):
                if pool.num_workers == 1:
                    break
                time.sleep(0.002)
            assert pool.num_workers == 1
            pool.shutdown()
    finally:
        sys.setswitchinterval(interval)

"""The adaptive pool's meter driven by a fake run-delay source (the scheduler's statistics
replaced by a function the test controls), so that what it charges to each job is exact."""

from __future__ import annotations

import threading
import time

from freeagentics_rs import AdaptiveThreadPoolExecutor
from freeagentics_rs.executor import _meter
from freeagentics_rs.executor._sizing import WorkloadSizer

IN_JOB_DELAY = 0.0005
BETWEEN_JOBS_DELAY = 0.05


class FakeRunDelay:
    """``run_delay`` for the core: each thread's total run delay, raised by the test."""

    def __init__(self) -> None:
        self._totals: dict[int, float] = {}
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._totals.get(threading.get_ident(), 0.0)

    def add(self, thread: int, seconds: float) -> None:
        with self._lock:
            self._totals[thread] = self._totals.get(thread, 0.0) + seconds


class OneJobBatches(AdaptiveThreadPoolExecutor):
    """An adaptive executor whose core reads run delay from ``run_delay`` and hands over every
    job as its own batch; the batches are kept, not acted on."""

    def __init__(self, run_delay: FakeRunDelay, **kwargs) -> None:
        self.run_delay = run_delay
        self.batches: list[tuple] = []
        self.batch_seen = threading.Event()
        super().__init__(**kwargs)

    def _core_args(self):
        *args, _on_samples, _batch = super()._core_args()
        return (*args, self._keep, 1, self.run_delay)

    def _keep(self, *batch) -> None:
        self.batches.append(batch)
        self.batch_seen.set()


def test_delay_between_jobs_is_not_charged_to_the_next_job(backend):
    # Each job sleeps 3 ms (I/O) and its thread waits 0.5 ms of it for a core; between two jobs
    # the parked worker, once woken, waits 50 ms for a core (a crowded machine). Only the
    # in-job delay may count. Charged to the next job, the 50 ms made that job's wall time less
    # its delay negative, its CPU share 1.0 and the I/O workload "cpu" (the flapping 32 <-> 2).
    delay = FakeRunDelay()
    pool = OneJobBatches(delay, max_workers=1, backend=backend)
    sizer = WorkloadSizer(**{**pool._sizing_args, "window": 8, "cooldown": 0.0})

    def io_job() -> int:
        time.sleep(0.003)
        delay.add(threading.get_ident(), IN_JOB_DELAY)
        return threading.get_ident()

    try:
        for _ in range(16):
            pool.batch_seen.clear()
            worker = pool.submit(io_job).result()
            assert pool.batch_seen.wait(10)  # the meter has read the job's end
            delay.add(worker, BETWEEN_JOBS_DELAY)  # the worker waits for a core, between jobs
            time.sleep(_meter._DELAY_READ_EVERY + 0.0005)  # the next job's start is past the read interval
    finally:
        pool.shutdown()
    assert len(pool.batches) == 16
    for count, cpu, wall, _first_end, _last_end, _first_cpu, charged in pool.batches:
        assert count == 1
        assert charged <= wall - cpu + 1e-9  # a job's delay is part of its wall time
        assert charged <= IN_JOB_DELAY + 1e-9, pool.batches
        sizer.add(count, cpu, wall, _first_end, _last_end, _first_cpu, charged)
    # Each job after the first was read at its start: its in-job delay is counted, exactly.
    assert sum(b[6] for b in pool.batches[1:]) >= 15 * IN_JOB_DELAY - 1e-9
    assert sizer.workload == "io"


class CountingRunDelay(FakeRunDelay):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return super().__call__()


def test_the_python_meter_reads_the_run_delay_at_most_once_per_interval_and_thread():
    # Reading schedstat releases the GIL (os.pread): read at every start and end of 1 ms jobs,
    # getting the GIL back doubled the meter's cost per task.
    delay = CountingRunDelay()
    pool = OneJobBatches(delay, max_workers=1, backend="python")
    started = time.monotonic()
    try:
        for _ in range(40):
            pool.submit(time.sleep, 0.001).result()
    finally:
        pool.shutdown()
    elapsed = time.monotonic() - started
    assert len(pool.batches) == 40
    # A read at a job's start when due (every 10 ms at most), and at its end only if its start was.
    assert delay.reads <= 2 * (elapsed / 0.01 + 1)

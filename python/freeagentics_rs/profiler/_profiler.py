"""ThreadingProfiler: measures what limits a threaded agent workload — the GIL, locks, the
executor's queue and balance, the thread count — and reports only what it measured."""

from __future__ import annotations

import concurrent.futures as cf
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ._lock import InstrumentedLock, percentiles
from ._report import ThreadingReport, derive_findings

__all__ = ["ExecutorProfile", "ThreadingProfiler"]


def _default_work() -> int:
    from ..workloads import python_work

    return python_work(40_000)


@dataclass
class ExecutorProfile:
    """What ``profile_executor`` measured. Times in milliseconds; ``busy_share`` of a worker is
    its thread CPU time over the run's wall time; ``imbalance`` is max / mean tasks per worker,
    idle workers included (``None`` when the executor does not say how many it has);
    ``steals`` comes from the executor's ``stats()`` when it has one (else ``None``)."""

    executor: str
    tasks: int
    failed: int
    wall_s: float
    throughput: float
    queue_wait_ms: dict[str, float]
    run_ms: dict[str, float]
    cpu_share: float
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    imbalance: float | None = None  # None: the executor's size is unknown
    steals: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ThreadingProfiler:
    """Collects measurements; ``report()`` turns them into bottlenecks and recommendations."""

    def __init__(self) -> None:
        self._locks: list[InstrumentedLock] = []
        self.gil: dict[str, Any] | None = None
        self.executors: list[ExecutorProfile] = []
        self.thread_counts: dict[str, Any] | None = None

    def measure_gil_contention(self, work: Callable[[], Any] | None = None, threads: int = 4, repeats: int = 3) -> float:
        """Time of ``threads`` calls of ``work`` on ``threads`` threads over the time of the same
        calls one after another (median of ``repeats``). About ``1 / threads`` when the work
        runs in parallel; 1 or more when the GIL (or anything else) serializes it. The thread
        pool is created and warmed outside the timed region."""
        if threads < 2:
            raise ValueError("threads: must be at least 2 (one thread cannot show parallelism)")
        if repeats < 1:
            raise ValueError("repeats: must be at least 1")
        work = work or _default_work
        ratios = []
        with cf.ThreadPoolExecutor(threads) as pool:
            barrier = threading.Barrier(threads)
            cf.wait([pool.submit(barrier.wait) for _ in range(threads)])  # every thread started
            work()  # warm caches, imports
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(threads):
                    work()
                serial = time.perf_counter() - start
                start = time.perf_counter()
                cf.wait([pool.submit(work) for _ in range(threads)])
                threaded = time.perf_counter() - start
                ratios.append(threaded / serial if serial > 0 else 1.0)
        ratio = statistics.median(ratios)
        self.gil = {"threads": threads, "repeats": repeats, "ratio": ratio, "speedup": 1 / ratio if ratio else 0.0}
        return ratio

    def create_instrumented_lock(self, name: str, reentrant: bool = False) -> InstrumentedLock:
        """A drop-in ``Lock`` (``RLock`` if ``reentrant``) whose contention the report includes."""
        lock = InstrumentedLock(name, reentrant)
        self._locks.append(lock)
        return lock

    def profile_executor(self, executor: cf.Executor, fn: Callable[[Any], Any], iterable: Iterable[Any]) -> ExecutorProfile:
        """Runs ``fn(item)`` for every item on ``executor`` and measures throughput, queue wait
        (submit to start) and run time percentiles, CPU share (thread CPU time over run time)
        and each worker's busy share from its thread CPU clock."""
        records: list[tuple[int, float, float, float]] = []
        record = records.append

        def timed(item: Any, submitted: float) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(item)
            finally:
                record((threading.get_ident(), start - submitted, time.perf_counter() - start, time.thread_time() - cpu))

        stats = getattr(executor, "stats", None)
        stolen_before = stats().get("stolen") if callable(stats) else None
        start = time.perf_counter()
        futures = [executor.submit(timed, item, time.perf_counter()) for item in iterable]
        cf.wait(futures)
        wall = time.perf_counter() - start
        stolen_after = stats().get("stolen") if callable(stats) else None
        per_worker: dict[int, list[float]] = {}
        for ident, _, _, cpu in records:
            per_worker.setdefault(ident, []).append(cpu)
        # Workers that ran nothing count too (one worker doing everything is the worst case).
        size = getattr(executor, "num_workers", None) or getattr(executor, "_max_workers", None)
        counts = [len(v) for v in per_worker.values()]
        if size is not None and size >= len(counts):
            counts += [0] * (size - len(counts))
        run_total = sum(r[2] for r in records)
        profile = ExecutorProfile(
            executor=type(executor).__name__,
            tasks=len(futures),
            failed=sum(f.exception() is not None for f in futures),
            wall_s=wall,
            throughput=len(futures) / wall if wall > 0 else 0.0,
            queue_wait_ms=percentiles([r[1] for r in records]),
            run_ms=percentiles([r[2] for r in records]),
            cpu_share=sum(r[3] for r in records) / run_total if run_total > 0 else 0.0,
            workers={
                f"worker-{i}": {"tasks": len(cpus), "busy_share": sum(cpus) / wall if wall > 0 else 0.0}
                for i, cpus in enumerate(per_worker.values())
            },
            imbalance=max(counts) / statistics.mean(counts) if size is not None and counts and max(counts) else None,
            steals=None if stolen_before is None or stolen_after is None else stolen_after - stolen_before,
        )
        self.executors.append(profile)
        return profile

    def find_optimal_thread_count(
        self,
        fn: Callable[[], Any],
        candidates: Sequence[int] = (1, 2, 4, 8, 16, 32),
        tasks: int | None = None,
        repeats: int = 3,
    ) -> tuple[int, dict[int, float]]:
        """Calls of ``fn`` per second on a ``WorkStealingThreadPool`` of each candidate size
        (``tasks`` calls per measurement, default 4 per thread of the largest candidate; median
        of ``repeats``). The best is the smallest size within 5% of the highest rate."""
        from ..executor import WorkStealingThreadPool

        if not candidates or any(n < 1 for n in candidates):
            raise ValueError("candidates: must be positive thread counts")
        tasks = tasks or 4 * max(candidates)
        rates: dict[int, float] = {}
        for n in sorted(set(candidates)):
            with WorkStealingThreadPool(n) as pool:
                cf.wait([pool.submit(fn) for _ in range(n)])  # warm: every worker ran once
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    cf.wait([pool.submit(fn) for _ in range(tasks)])
                    times.append(time.perf_counter() - start)
            rates[n] = tasks / statistics.median(times)
        top = max(rates.values())
        best = min(n for n, rate in rates.items() if rate >= 0.95 * top)
        self.thread_counts = {"best": best, "ops_per_s": rates, "tasks": tasks}
        return best, rates

    def report(self) -> ThreadingReport:
        """Everything measured so far, with the bottlenecks and recommendations it implies."""
        measurements = {
            "gil": self.gil,
            "locks": [lock.stats() for lock in self._locks],
            "executors": [p.to_dict() for p in self.executors],
            "thread_counts": self.thread_counts,
        }
        bottlenecks, recommendations = derive_findings(measurements)
        return ThreadingReport(measurements, bottlenecks, recommendations)

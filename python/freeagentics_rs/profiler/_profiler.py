"""ThreadingProfiler: measures what limits a threaded agent workload — the GIL, locks, the
executor's queue and balance, the thread count — and reports only what it measured.

It is also source-compatible with FreeAgentics' ``agents/threading_profiler.py``:
``profile_thread``, ``profile_thread_pool``, ``profile_memory_usage``, ``identify_bottlenecks``,
``generate_recommendations``, ``generate_report``, ``lock_metrics``, ``thread_metrics``,
``start_time``/``end_time``, ``measure_gil_contention(duration, thread_count)`` and
``find_optimal_thread_count(fn, max_threads=...)``, with its result shapes, filled from thread
CPU clocks and the locks' own counters instead of fixed figures.
"""

from __future__ import annotations

import collections.abc
import concurrent.futures as cf
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import _validate
from ._freeagentics import LockMetrics, ThreadingProfile, ThreadMetrics, context_switches, memory_usage
from ._lock import InstrumentedLock, percentiles
from ._report import ThreadingReport, derive_findings

MAX_THREADS = 1024  # the most threads a measurement starts (a size argument needs a bound)
_DEFAULT_CANDIDATES = (1, 2, 4, 8, 16, 32)

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
        # FreeAgentics' state: per-thread totals of profile_thread blocks, the span of the last
        # profile_thread_pool run and its result, the last memory reading.
        self._metrics_lock = threading.Lock()
        self._threads: dict[int, ThreadMetrics] = {}
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.pool_metrics: dict[str, Any] = {}
        self.memory: dict[str, Any] | None = None

    def measure_gil_contention(
        self,
        work: Callable[[], Any] | float | None = None,
        threads: int | None = None,
        repeats: int = 3,
        *,
        duration: float | None = None,
        thread_count: int | None = None,
    ) -> float:
        """Time of ``threads`` calls of ``work`` on ``threads`` threads over the time of the same
        calls one after another (median of ``repeats``). About ``1 / threads`` when the work
        runs in parallel; 1 or more when the GIL (or anything else) serializes it. The thread
        pool is created and warmed outside the timed region.

        FreeAgentics' form ``measure_gil_contention(duration=1.0, thread_count=4)`` (positional
        too) repeats the measurement for about ``duration`` seconds instead."""
        if work is not None and not callable(work):
            if isinstance(work, (bool, np.bool_)) or not isinstance(work, (int, float, np.integer, np.floating)):
                raise TypeError(
                    f"work: must be a callable (or FreeAgentics' duration in seconds), not {type(work).__name__}"
                )
            if duration is not None:  # FreeAgentics' positional duration
                raise TypeError("measure_gil_contention() got duration twice (positionally and by keyword)")
            work, duration = None, work
        threads_name = "threads"
        if thread_count is not None:
            if threads is not None:
                raise TypeError("measure_gil_contention() got threads and thread_count (the same argument)")
            threads, threads_name = thread_count, "thread_count"
        threads = 4 if threads is None else _validate.integer(threads, threads_name)
        if threads < 2:
            raise ValueError(f"{threads_name}: must be at least 2 (one thread cannot show parallelism), got {threads}")
        if threads > MAX_THREADS:
            raise ValueError(f"{threads_name}: must be at most {MAX_THREADS}, got {threads}")
        repeats = _validate.integer(repeats, "repeats", minimum=1, maximum=10_000)
        if duration is not None:
            duration = _validate.real(duration, "duration", minimum=0.0)
        work = work or _default_work
        ratios: list[float] = []
        with cf.ThreadPoolExecutor(threads) as pool:
            barrier = threading.Barrier(threads)
            cf.wait([pool.submit(barrier.wait) for _ in range(threads)])  # every thread started
            work()  # warm caches, imports
            deadline = None if duration is None else time.perf_counter() + duration
            while len(ratios) < repeats if deadline is None else (not ratios or time.perf_counter() < deadline):
                start = time.perf_counter()
                for _ in range(threads):
                    work()
                serial = time.perf_counter() - start
                start = time.perf_counter()
                cf.wait([pool.submit(work) for _ in range(threads)])
                threaded = time.perf_counter() - start
                ratios.append(threaded / serial if serial > 0 else 1.0)
        ratio = statistics.median(ratios)
        self.gil = {"threads": threads, "repeats": len(ratios), "ratio": ratio, "speedup": 1 / ratio if ratio else 0.0}
        return ratio

    def create_instrumented_lock(self, name: str, reentrant: bool = True) -> InstrumentedLock:  # noqa: FBT001 (public, positional)
        """A drop-in ``RLock`` (a ``Lock`` with ``reentrant=False``) whose contention the report
        and ``lock_metrics`` include. Reentrant by default, as FreeAgentics' always was."""
        lock = InstrumentedLock(name, reentrant)
        lock.profiler = self
        with self._metrics_lock:
            self._locks.append(lock)
        return lock

    # -- FreeAgentics' per-thread and per-lock metrics ---------------------------------------
    @property
    def lock_metrics(self) -> dict[str, LockMetrics]:
        """Per lock name (FreeAgentics' ``lock_id``), the totals of this profiler's locks: a
        snapshot built from their counters (locks sharing a name are summed)."""
        with self._metrics_lock:
            locks = list(self._locks)
        metrics: dict[str, LockMetrics] = {}
        for lock in locks:
            totals = lock.totals()
            m = metrics.setdefault(lock.name, LockMetrics(lock.name))
            m.acquisitions += totals["acquisitions"]
            m.contentions += totals["contended"]
            m.total_wait_time += totals["total_wait"]
            m.max_wait_time = max(m.max_wait_time, totals["max_wait"])
            for ident, (n, _) in totals["threads"].items():
                m.holders[ident] = m.holders.get(ident, 0) + n
        return metrics

    @property
    def thread_metrics(self) -> dict[int, ThreadMetrics]:
        """Per thread id, the totals of its ``profile_thread`` blocks (with its acquisitions of
        this profiler's locks and its wait for them)."""
        with self._metrics_lock:
            locks = list(self._locks)
            threads = self._threads
        per_thread: dict[int, list[float]] = {}
        for lock in locks:
            for ident, (n, wait) in lock.totals()["threads"].items():
                entry = per_thread.setdefault(ident, [0, 0.0])
                entry[0] += n
                entry[1] += wait
        for ident, metrics in list(threads.items()):
            n, wait = per_thread.get(ident, (0, 0.0))
            metrics.lock_acquisitions, metrics.lock_wait_time = int(n), wait
        return threads

    @contextmanager
    def profile_thread(self, name: str | None = None) -> Iterator[ThreadMetrics]:
        """Measures the block on the calling thread: its wall time, thread CPU time, the rest
        (waiting), context switches, and one more task completed if it did not raise. Yields
        that thread's ``ThreadMetrics`` (its totals over every block)."""
        if name is not None:
            _validate.string(name, "name")
        ident = threading.get_ident()
        with self._metrics_lock:
            metrics = self._threads.get(ident)
            if metrics is None:
                metrics = self._threads[ident] = ThreadMetrics(ident, name or threading.current_thread().name)
        wall, cpu, switches = time.perf_counter(), time.thread_time(), context_switches()
        ok = False
        try:
            yield metrics
            ok = True
        finally:
            metrics.total_time += time.perf_counter() - wall
            metrics.cpu_time += time.thread_time() - cpu
            metrics.wait_time = max(0.0, metrics.total_time - metrics.cpu_time)
            metrics.context_switches += context_switches() - switches
            metrics.tasks_completed += ok

    def _thread_efficiency(self) -> float:
        """CPU time over wall time of every profiled thread block (FreeAgentics' efficiency)."""
        with self._metrics_lock:
            threads = list(self._threads.values())
        wall = sum(m.total_time for m in threads)
        return sum(m.cpu_time for m in threads) / wall if wall > 0 else 0.0

    def profile_thread_pool(
        self,
        pool: cf.Executor,
        workload: Sequence[Callable[..., Any]],
        workload_args: Sequence[tuple[Any, ...]] | None = None,
    ) -> dict[str, Any]:
        """FreeAgentics' pool profile: runs ``workload[i](*workload_args[i])`` on ``pool``, each
        inside ``profile_thread``, and returns ``total_duration``, ``tasks_submitted``,
        ``tasks_completed`` (did not raise), ``tasks_failed``, ``avg_submit_time`` (mean
        seconds from submit to the task's end), ``throughput`` (tasks/s) and
        ``thread_efficiency`` (CPU / wall time of the profiled threads). Sets ``start_time``
        and ``end_time``."""
        if not isinstance(pool, cf.Executor):
            raise TypeError(f"pool: must be a concurrent.futures.Executor, not {type(pool).__name__}")
        workload = list(workload)
        for i, fn in enumerate(workload):
            if not callable(fn):
                raise TypeError(f"workload[{i}]: must be a callable, not {type(fn).__name__}")
        workload_args = [()] * len(workload) if workload_args is None else [tuple(a) for a in workload_args]
        if len(workload_args) != len(workload):
            raise ValueError(f"workload_args: must have one tuple per task ({len(workload)}), got {len(workload_args)}")
        latencies: list[float] = []

        def run(fn: Callable[..., Any], args: tuple[Any, ...], submitted: float) -> Any:
            with self.profile_thread():
                try:
                    return fn(*args)
                finally:
                    latencies.append(time.perf_counter() - submitted)

        self.start_time, self.end_time = time.perf_counter(), None
        futures = [
            pool.submit(run, fn, args, time.perf_counter()) for fn, args in zip(workload, workload_args, strict=True)
        ]
        completed = sum(f.exception() is None for f in cf.as_completed(futures))
        self.end_time = time.perf_counter()
        duration = self.end_time - self.start_time
        self.pool_metrics = {
            "total_duration": duration,
            "tasks_submitted": len(futures),
            "tasks_completed": completed,
            "tasks_failed": len(futures) - completed,
            "avg_submit_time": statistics.fmean(latencies) if latencies else 0.0,
            "throughput": len(futures) / duration if duration > 0 else 0.0,
            "thread_efficiency": self._thread_efficiency(),
        }
        return dict(self.pool_metrics)

    def profile_memory_usage(self) -> dict[str, Any]:
        """rss_mb, vms_mb, threads (OS threads), open_files, connections of this process."""
        self.memory = memory_usage()
        return dict(self.memory)

    def identify_bottlenecks(self) -> list[str]:
        """The bottlenecks of ``report()``: what has been measured so far."""
        return self.report().bottlenecks

    def generate_recommendations(self) -> list[str]:
        """The recommendations of ``report()``; measures the GIL and memory first if they have
        not been (FreeAgentics' recommendations always included both)."""
        self._measure_missing()
        return self.report().recommendations

    def generate_report(self) -> ThreadingProfile:
        """FreeAgentics' ``ThreadingProfile``, from this profiler's measurements (the GIL and
        memory are measured first if they have not been)."""
        self._measure_missing()
        report = self.report()
        assert self.gil is not None
        gil_ratio = float(self.gil["ratio"])
        if self.thread_counts is not None:
            optimal = int(self.thread_counts["best"])
        else:  # FreeAgentics' rule, on measured efficiency and GIL contention
            efficiency, current = self._thread_efficiency(), max(1, len(self._threads))
            if efficiency < 0.5 and current > 4:
                optimal = max(2, current // 2)
            elif efficiency > 0.9 and gil_ratio < 0.5:
                optimal = min(32, current * 2)
            else:
                optimal = current
        return ThreadingProfile(
            total_duration=self.end_time - self.start_time
            if self.end_time is not None and self.start_time is not None
            else 0.0,
            thread_metrics=self.thread_metrics,
            lock_metrics=self.lock_metrics,
            pool_metrics=dict(self.pool_metrics),
            memory_metrics=dict(self.memory or {}),
            gil_contention=gil_ratio,
            optimal_thread_count=optimal,
            bottlenecks=report.bottlenecks,
            recommendations=report.recommendations,
        )

    def _measure_missing(self) -> None:
        if self.gil is None:
            self.measure_gil_contention()
        if self.memory is None:
            self.profile_memory_usage()

    def profile_executor(
        self, executor: cf.Executor, fn: Callable[[Any], Any], iterable: Iterable[Any]
    ) -> ExecutorProfile:
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
                record(
                    (threading.get_ident(), start - submitted, time.perf_counter() - start, time.thread_time() - cpu)
                )

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
        candidates: Sequence[int] | int | None = None,
        tasks: int | None = None,
        repeats: int = 3,
        *,
        max_threads: int | None = None,
    ) -> tuple[int, dict[int, float]]:
        """Calls of ``fn`` per second on a ``WorkStealingThreadPool`` of each candidate size
        (default 1, 2, 4, 8, 16, 32; ``tasks`` calls per measurement, default 4 per thread of
        the largest candidate; median of ``repeats``). The best is the smallest size within 5%
        of the highest rate. FreeAgentics' ``max_threads=N`` (positional too) tries the powers
        of two up to N, and N."""
        from ..executor import WorkStealingThreadPool

        if not callable(fn):
            raise TypeError(f"fn: must be a callable, not {type(fn).__name__}")
        if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, (bool, np.bool_)):
            if max_threads is not None:
                raise TypeError("find_optimal_thread_count() got max_threads twice (positionally and by keyword)")
            candidates, max_threads = None, candidates  # FreeAgentics' positional max_threads
        if max_threads is not None:
            if candidates is not None:
                raise TypeError("find_optimal_thread_count() takes candidates or max_threads, not both")
            top = _validate.integer(max_threads, "max_threads", minimum=1, maximum=MAX_THREADS)
            candidates = sorted({n for n in (1 << k for k in range(11)) if n <= top} | {top})
        elif candidates is None:
            candidates = _DEFAULT_CANDIDATES
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, collections.abc.Iterable):
            raise TypeError(f"candidates: must be a sequence of thread counts, not {type(candidates).__name__}")
        candidates = [_validate.integer(n, "candidates", minimum=1, maximum=MAX_THREADS) for n in candidates]
        if not candidates:
            raise ValueError("candidates: must be positive thread counts, got none")
        tasks = (
            4 * max(candidates) if tasks is None else _validate.integer(tasks, "tasks", minimum=1, maximum=10_000_000)
        )
        repeats = _validate.integer(repeats, "repeats", minimum=1, maximum=10_000)
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
        top_rate = max(rates.values())
        best = min(n for n, rate in rates.items() if rate >= 0.95 * top_rate)
        self.thread_counts = {"best": best, "ops_per_s": rates, "tasks": tasks}
        return best, rates

    def report(self) -> ThreadingReport:
        """Everything measured so far, with the bottlenecks and recommendations it implies."""
        with self._metrics_lock:
            locks = list(self._locks)
        measurements = {
            "gil": self.gil,
            "locks": [lock.stats() for lock in locks],
            "executors": [p.to_dict() for p in self.executors],
            "thread_counts": self.thread_counts,
            "threads": self._thread_summary(),
            "memory": self.memory,
        }
        bottlenecks, recommendations = derive_findings(measurements)
        return ThreadingReport(measurements, bottlenecks, recommendations)

    def _thread_summary(self) -> dict[str, Any] | None:
        """What the profiled threads' totals say: their count, CPU / wall time (efficiency),
        and how unevenly their CPU time spreads (coefficient of variation)."""
        with self._metrics_lock:
            threads = list(self._threads.values())
        if not threads:
            return None
        cpu = [m.cpu_time for m in threads]
        mean = statistics.fmean(cpu)
        return {
            "threads": len(threads),
            "tasks": sum(m.tasks_completed for m in threads),
            "efficiency": self._thread_efficiency(),
            "cpu_time_cv": statistics.pstdev(cpu) / mean if mean > 0 and len(cpu) > 1 else 0.0,
            "context_switches": sum(m.context_switches for m in threads),
        }

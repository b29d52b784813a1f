"""Per-job CPU and wall time for the Python core (the twin of ``rust/core/meter.rs``): measured
on the worker thread around each job, queue wait never included, summed into batches handed to
``on_samples`` with end times on a busy clock that stops while no job runs; jobs that started
before the last resize are skipped. On Linux the threads' run delay (runnable, waiting for a
core) during jobs is read from ``/proc/thread-self/schedstat``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Meter"]

# Seconds between two reads of a thread's schedstat, as in the Rust core: os.pread releases the
# GIL, and getting it back among busy threads cost more than the read (on 1 ms I/O tasks,
# reading at every job start and end doubled the meter's cost per task).
_DELAY_READ_EVERY = 0.01
_DELAY_MIN_JOB = 0.001  # seconds: a shorter job's end is never read (see job_delay)


class _SchedStat:
    """This thread's ``/proc/thread-self/schedstat``, open for the thread's lifetime, read at a
    job's start and end but not within ``_DELAY_READ_EVERY`` seconds of the last read (a file
    read per task would cost more than a tiny task). ``run_delay`` (tests) replaces the file: it
    returns the thread's total run delay in seconds."""

    def __init__(self, run_delay: Callable[[], float] | None = None) -> None:
        self.fd: int | None = None
        self._run_delay = run_delay
        if run_delay is None:
            try:
                self.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            except OSError:
                pass
        self.last_read: float | None = None

    def due(self, now: float) -> bool:
        """Whether a job starting now reads its run delay."""
        return (self.fd is not None or self._run_delay is not None) and (
            self.last_read is None or now - self.last_read >= _DELAY_READ_EVERY
        )

    def job_delay(self, before: float | None, now: float, wall: float, cpu: float) -> float | None:
        """The run delay of a job whose start read ``before`` (None: not read), capped at its
        wall time less its CPU time, of which waiting for a core is a part. A job shorter than
        ``_DELAY_MIN_JOB`` is not read at its end: ``os.pread`` releases the GIL, and a thread
        that just settled its job's future would let the waiter submit again before this worker
        is idle, starting a thread that ``ThreadPoolExecutor`` would not start."""
        if before is None or wall < _DELAY_MIN_JOB:
            return None
        after = self.read(now)
        if after is None:
            return None
        return min(max(0.0, after - before), max(0.0, wall - cpu))

    def read(self, now: float) -> float | None:
        """The thread's total run delay in seconds (None if it cannot be read)."""
        self.last_read = now
        try:
            if self._run_delay is not None:
                return float(self._run_delay())
            assert self.fd is not None
            return int(os.pread(self.fd, 96, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None

    def __del__(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


class Meter:
    """Per-job thread CPU time, wall time and run delay (time waiting for a core), summed into
    batches handed to ``on_samples`` (the twin of ``rust/core/meter.rs``); jobs that started
    before the last resize are skipped."""

    def __init__(
        self, on_samples: Callable[..., object], batch_size: int, run_delay: Callable[[], float] | None = None
    ) -> None:
        self._on_samples = on_samples
        self._run_delay = run_delay
        self._batch_size = max(1, batch_size)
        self._lock = threading.Lock()
        # The busy clock (``first_end``/``last_end`` are read on it): it runs only while a job
        # runs, so an idle pause between jobs is not time the tasks waited.
        self._running = 0
        self._busy = 0.0
        self._busy_since = time.monotonic()
        self._local = threading.local()
        self.epoch = 0
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._cpu = self._wall = self._first_end = self._last_end = self._first_cpu = self._delay = 0.0
        self._delay_wall = 0.0  # wall time of the jobs whose run delay was read

    def set_batch_size(self, batch_size: int) -> None:
        self._batch_size = max(1, batch_size)

    def new_epoch(self) -> None:
        with self._lock:
            self.epoch += 1
            self._reset()

    def _stop_busy_locked(self, now: float) -> float:
        """A job ended at ``now``: its end on the busy clock."""
        end = self._busy + (now - self._busy_since)
        self._running -= 1
        if not self._running:
            self._busy = end
        return end

    def run(self, job: list[Any]) -> None:
        epoch = self.epoch
        wall0 = time.monotonic()
        with self._lock:
            if not self._running:
                self._busy_since = wall0
            self._running += 1
        sched = getattr(self._local, "sched", None)
        if sched is None:
            sched = self._local.sched = _SchedStat(self._run_delay)
        # The baseline is read here, not taken from the thread's previous job: the delay between
        # two jobs (a parked worker waiting for a core once woken) is not this job's. Charged to
        # the next job, it exceeded that job's wall time less its CPU time, its CPU share read
        # 1.0, and an I/O workload was classified "cpu" (docs/design.md, 5.1).
        delay0 = sched.read(wall0) if sched.due(wall0) else None
        cpu0 = time.thread_time()
        try:
            ran = job[0](job)
        except BaseException:
            with self._lock:
                self._stop_busy_locked(time.monotonic())
            raise
        cpu = time.thread_time() - cpu0
        now = time.monotonic()
        delay = sched.job_delay(delay0, now, now - wall0, cpu) if ran else None
        # One lock round: the busy clock and the batch.
        with self._lock:
            end = self._stop_busy_locked(now)
            if not ran or epoch != self.epoch:
                return
            wall = now - wall0
            if self._count == 0:
                self._first_end, self._first_cpu = end, cpu
            self._count += 1
            self._cpu += cpu
            self._wall += wall
            if delay is not None:
                self._delay += delay
                self._delay_wall += wall
            self._last_end = max(self._last_end, end)
            if self._count < self._batch_size:
                return
            # The jobs whose delay was read stand for the batch.
            if self._delay_wall > 0:
                self._delay = min(self._delay * self._wall / self._delay_wall, max(0.0, self._wall - self._cpu))
            batch = (
                self._count,
                self._cpu,
                self._wall,
                self._first_end,
                self._last_end,
                self._first_cpu,
                self._delay,
            )
            self._reset()
        try:
            self._on_samples(*batch)
        except BaseException as exc:  # like the Rust core: report, keep the worker alive
            sys.unraisablehook(_Unraisable(exc, self._on_samples))


class _Unraisable:
    """What ``sys.unraisablehook`` is handed (``UnraisableHookArgs`` has no public constructor)."""

    exc_type: type[BaseException]
    exc_value: BaseException | None
    exc_traceback: TracebackType | None
    err_msg: str | None

    def __init__(self, exc: BaseException, obj: object) -> None:
        self.exc_type, self.exc_value, self.exc_traceback = type(exc), exc, exc.__traceback__
        self.err_msg, self.object = None, obj

"""Per-job CPU and wall time for the Python core (the twin of ``rust/core/meter.rs``): measured
on the worker thread around each job, queue wait never included, summed into batches handed to
``on_samples`` with end times on a busy clock that stops while no job runs; jobs that started
before the last resize are skipped. On Linux the threads' run delay (runnable, waiting for a
core) is read from ``/proc/thread-self/schedstat``.
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

_DELAY_READ_EVERY = 0.001  # seconds: reading schedstat costs a file read


class _SchedStat:
    """This thread's ``/proc/thread-self/schedstat``, open for the thread's lifetime, read at most
    every ``_DELAY_READ_EVERY`` seconds (a file read per task would cost more than the task)."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = None
        self.last_read: float | None = None
        self.last_delay = 0.0

    def delay_since_last_read(self, now: float) -> float:
        """Seconds this thread was runnable but waiting for a core since the last read that
        returned, if that is at least ``_DELAY_READ_EVERY`` ago (else 0: a later read counts it)."""
        if self.fd is None or (self.last_read is not None and now - self.last_read < _DELAY_READ_EVERY):
            return 0.0
        try:
            total = int(os.pread(self.fd, 96, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0
        delta = 0.0 if self.last_read is None else max(0.0, total - self.last_delay)
        self.last_read, self.last_delay = now, total
        return delta

    def __del__(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


class Meter:
    """Per-job thread CPU time, wall time and run delay (time waiting for a core), summed into
    batches handed to ``on_samples`` (the twin of ``rust/core/meter.rs``); jobs that started
    before the last resize are skipped."""

    def __init__(self, on_samples: Callable[..., object], batch_size: int) -> None:
        self._on_samples = on_samples
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

    def set_batch_size(self, batch_size: int) -> None:
        self._batch_size = max(1, batch_size)

    def new_epoch(self) -> None:
        with self._lock:
            self.epoch += 1
            self._reset()

    def run(self, job: list[Any]) -> None:
        epoch = self.epoch
        wall0 = time.monotonic()
        with self._lock:
            if not self._running:
                self._busy_since = wall0
            self._running += 1
        if getattr(self._local, "sched", None) is None:
            # Read once before the thread's first job, so that its run delay is counted too.
            self._local.sched = _SchedStat()
            self._local.sched.delay_since_last_read(wall0)
        cpu0 = time.thread_time()
        try:
            ran = job[0](job)
        finally:
            cpu = time.thread_time() - cpu0
            now = time.monotonic()
            with self._lock:
                end = self._busy + (now - self._busy_since)
                self._running -= 1
                if not self._running:
                    self._busy = end
        if not ran:
            return
        wall = now - wall0
        delay = self._local.sched.delay_since_last_read(now)
        with self._lock:
            if epoch != self.epoch:
                return
            if self._count == 0:
                self._first_end, self._first_cpu = end, cpu
            self._count += 1
            self._cpu += cpu
            self._wall += wall
            self._delay += delay
            self._last_end = max(self._last_end, end)
            if self._count < self._batch_size:
                return
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

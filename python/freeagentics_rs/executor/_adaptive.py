"""AdaptiveThreadPoolExecutor: a WorkStealingThreadPool that measures every task's CPU and wall
time, classifies its workload (``_sizing.WorkloadSizer``) and resizes its pool core online."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypedDict

from .. import _validate
from .._cpus import available_cpus
from ._pool import WorkStealingThreadPool, _worker_count
from ._sizing import ResizeEvent, WorkloadSizer

__all__ = ["AdaptiveThreadPoolExecutor", "ResizeEvent"]

DEFAULT_MAX_WORKERS = 64
DEFAULT_MIN_WORKERS = 2
MAX_WINDOW = 1_000_000  # tasks per measurement window
DEFAULT_IO_THRESHOLD = 0.2


class _SizingArgs(TypedDict):
    """``WorkloadSizer``'s settings, checked once by the constructor."""

    min_workers: int
    max_workers: int
    io_workers: int
    cpu_workers: int
    mixed_workers: int
    window: int
    io_threshold: float
    cpu_threshold: float
    hysteresis: float
    cooldown: float


def _sample_sink(pool_ref: weakref.ref[AdaptiveThreadPoolExecutor]) -> Callable[..., None]:
    # The core holds only a weak reference to its executor, so that an executor nobody
    # references is still collected (and its core shut down).
    def on_samples(*batch: Any) -> None:
        pool = pool_ref()
        if pool is not None:
            pool._on_samples(batch)

    return on_samples


class AdaptiveThreadPoolExecutor(WorkStealingThreadPool):
    """A ``concurrent.futures`` executor that sizes itself from what its tasks do: it measures each
    task's thread CPU time and wall time, classifies the workload as ``"io"``, ``"mixed"`` or
    ``"cpu"`` (telling GIL waits from I/O waits), and grows or shrinks its work-stealing pool to
    the class's target. See the stub file for the full contract."""

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str | None = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        min_workers: int | None = None,
        io_workers: int = 32,
        cpu_workers: int | None = None,
        mixed_workers: int = 16,
        window: int = 100,
        io_threshold: float = DEFAULT_IO_THRESHOLD,
        cpu_threshold: float = 0.8,
        hysteresis: float = 0.05,
        cooldown: float = 0.1,
        backend: str | None = None,
    ) -> None:
        # ThreadPoolExecutor's signature first; min_workers defaults down to a smaller max.
        max_workers = DEFAULT_MAX_WORKERS if max_workers is None else _worker_count(max_workers, "max_workers")
        if min_workers is None:
            min_workers = min(DEFAULT_MIN_WORKERS, max_workers)
        min_workers = _worker_count(min_workers, "min_workers")
        if min_workers > max_workers:
            raise ValueError(f"min_workers: must be at most max_workers ({max_workers}), got {min_workers}")
        io_threshold = _validate.real(io_threshold, "io_threshold", minimum=0.0, maximum=1.0)
        cpu_threshold = _validate.real(cpu_threshold, "cpu_threshold", minimum=0.0, maximum=1.0)
        if io_threshold >= cpu_threshold:
            # Name the one the caller moved off its default (io_threshold if both).
            if io_threshold == DEFAULT_IO_THRESHOLD:
                raise ValueError(
                    f"cpu_threshold: must be greater than io_threshold ({io_threshold}), got {cpu_threshold}"
                )
            raise ValueError(f"io_threshold: must be lower than cpu_threshold ({cpu_threshold}), got {io_threshold}")
        self._sizing_args = _SizingArgs(
            min_workers=min_workers,
            max_workers=max_workers,
            io_workers=_worker_count(io_workers, "io_workers"),
            cpu_workers=available_cpus() if cpu_workers is None else _worker_count(cpu_workers, "cpu_workers"),
            mixed_workers=_worker_count(mixed_workers, "mixed_workers"),
            window=_validate.integer(window, "window", minimum=1, maximum=MAX_WINDOW),
            io_threshold=io_threshold,
            cpu_threshold=cpu_threshold,
            hysteresis=_validate.real(hysteresis, "hysteresis", minimum=0.0, maximum=1.0),
            cooldown=_validate.real(cooldown, "cooldown", minimum=0.0),
        )
        self._sizer_lock = threading.Lock()
        self._setup(max_workers, thread_name_prefix, initializer, initargs, backend)

    def _core_args(self) -> tuple[Any, ...]:
        # A fresh controller per core: after fork the child measures its own pool from scratch.
        self._sizer = WorkloadSizer(**self._sizing_args)
        return (
            self._sizer.target,
            self._thread_name_prefix,
            self._initializer,
            self._initargs,
            _sample_sink(weakref.ref(self)),
            self._sizer.batch_size(),
        )

    def _on_samples(self, batch: tuple[Any, ...]) -> None:
        # Runs on the worker thread that finished the batch, between jobs.
        with self._sizer_lock:
            core = self._core
            # The jobs waiting for a thread now: a backlog grows the pool while the CPU is not saturated.
            workers = self._sizer.add(*batch, queued=core.stats()["queued"])
            if workers is not None:
                core.resize(workers)
            core.set_sample_batch(self._sizer.batch_size())

    @property
    def min_workers(self) -> int:
        return self._sizing_args["min_workers"]

    @property
    def workload(self) -> str:
        """``"unknown"`` until enough tasks were measured, then ``"io"``, ``"mixed"`` or ``"cpu"``."""
        self._usable_core()
        # Under the lock: a decision and its resize are seen together (target_workers read
        # after this never shows the size from before the class it returns).
        with self._sizer_lock:
            return self._sizer.workload

    @property
    def num_workers(self) -> int:
        """Worker threads alive now (a retiring worker counts until its thread has exited)."""
        workers: int = self._usable_core().stats()["workers"]
        return workers

    @property
    def target_workers(self) -> int:
        """The size the pool is resizing to."""
        target: int = self._usable_core().target_workers
        return target

    def resize_events(self) -> list[ResizeEvent]:
        """Every resize so far: ``ResizeEvent(time, from_workers, to_workers, workload,
        cpu_share, reason)``, ``time`` in seconds since the executor was created."""
        self._usable_core()
        with self._sizer_lock:
            return list(self._sizer.events)

    def stats(self) -> dict[str, Any]:
        """The executor's counters plus ``workload``, ``cpu_share`` (CPU time / wall time of the
        tasks in the last window; None until measured) and ``cpu_rate`` (cores those tasks kept
        busy)."""
        stats = super().stats()
        with self._sizer_lock:
            stats["workload"] = self._sizer.workload
            stats["cpu_share"] = self._sizer.cpu_share
            stats["cpu_rate"] = self._sizer.cpu_rate
        return stats

    def __repr__(self) -> str:
        state = "shutdown" if self._shutdown else "running"
        return (
            f"<{type(self).__name__} backend={self.backend!r} workload={self._sizer.workload!r} "
            f"workers={self._sizer.target} min_workers={self.min_workers} max_workers={self._max_workers} {state}>"
        )

"""AdaptiveThreadPoolExecutor: a WorkStealingThreadPool that measures every task's CPU and wall
time, classifies its workload (``_sizing.WorkloadSizer``) and resizes its pool core online."""

from __future__ import annotations

import threading
import weakref
from numbers import Real
from typing import Any, Callable

from .._cpus import available_cpus
from ._pool import WorkStealingThreadPool, _positive_int
from ._sizing import ResizeEvent, WorkloadSizer

__all__ = ["AdaptiveThreadPoolExecutor", "ResizeEvent"]


def _fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def _non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


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
        min_workers: int = 2,
        max_workers: int = 64,
        *,
        io_workers: int = 32,
        cpu_workers: int | None = None,
        mixed_workers: int = 16,
        window: int = 100,
        io_threshold: float = 0.2,
        cpu_threshold: float = 0.8,
        hysteresis: float = 0.05,
        cooldown: float = 0.1,
        backend: str | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple = (),
    ) -> None:
        min_workers = _positive_int(min_workers, "min_workers")
        max_workers = _positive_int(max_workers, "max_workers")
        if min_workers > max_workers:
            raise ValueError(f"min_workers ({min_workers}) must not be greater than max_workers ({max_workers})")
        io_threshold = _fraction(io_threshold, "io_threshold")
        cpu_threshold = _fraction(cpu_threshold, "cpu_threshold")
        if io_threshold >= cpu_threshold:
            raise ValueError(f"io_threshold ({io_threshold}) must be lower than cpu_threshold ({cpu_threshold})")
        self._sizing_args = dict(
            min_workers=min_workers,
            max_workers=max_workers,
            io_workers=_positive_int(io_workers, "io_workers"),
            cpu_workers=available_cpus() if cpu_workers is None else _positive_int(cpu_workers, "cpu_workers"),
            mixed_workers=_positive_int(mixed_workers, "mixed_workers"),
            window=_positive_int(window, "window"),
            io_threshold=io_threshold,
            cpu_threshold=cpu_threshold,
            hysteresis=_non_negative(hysteresis, "hysteresis"),
            cooldown=_non_negative(cooldown, "cooldown"),
        )
        self._sizer_lock = threading.Lock()
        self._setup(max_workers, thread_name_prefix, initializer, initargs, backend)

    def _core_args(self) -> tuple:
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

    def _on_samples(self, batch: tuple) -> None:
        # Runs on the worker thread that finished the batch, between jobs.
        with self._sizer_lock:
            core = self._core
            workers = self._sizer.add(*batch)
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
        return self._sizer.workload

    @property
    def num_workers(self) -> int:
        """Worker threads alive now (a retiring worker counts until its thread has exited)."""
        return self._usable_core().stats()["workers"]

    @property
    def target_workers(self) -> int:
        """The size the pool is resizing to."""
        return self._usable_core().target_workers

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

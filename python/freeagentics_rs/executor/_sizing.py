"""How AdaptiveThreadPoolExecutor classifies its workload and picks its size.

Both backends feed this one controller with batches of per-task measurements (thread CPU time,
wall time, and on Linux the run delay: time the thread was runnable but waiting for a core), so
they decide alike. Queue wait never counts. Over the window it computes

* the CPU share ``s`` = CPU time / (wall time - run delay) of the tasks. Waiting for a core
  (other processes, more runnable threads than cores) is not I/O, so it does not lower the share;
* the CPU rate ``R``: how many cores the tasks keep busy, scaled by the share of its runnable time
  a thread actually gets a core (on a busy machine a GIL-bound pool saturates below one core).

A low share alone is ambiguous. Waiting for I/O and waiting for the GIL both lower it: on a
crowded pool a pure-Python task spends most of its wall time queued for the GIL. The rate tells
them apart. A pool whose threads wait on I/O uses little CPU in total. A pool whose threads wait
for the GIL keeps a core busy however many threads it has, so extra threads add nothing. When
the share is low and ``R`` is at least ``SATURATED_RATE``, the controller probes. It shrinks to
the ``ceil(R)`` threads the CPU work could use if it were pure CPU work, and measures again:

* the rate holds: the threads were queued for the GIL (or cores). The workload is "cpu" and that
  size is its best size: 1 thread for GIL-bound Python, one per core for numpy that releases the
  GIL;
* the rate drops: the waiting was real I/O. The share measured at the small size is the true
  one, and ``ceil(R_saturated / s)`` is the size at which the CPU saturates. The pool never grows
  past that size while the workload's CPU time per task stays the same.

I/O tasks that wait in the pool's queue (half a wave or more) while the CPU is not saturated (rate below
``SATURATED_RATE``: neither the GIL nor a core is what they wait for) need more threads than the
class's target: the pool doubles ("backlog") and keeps the size it grew to (a floor) while the
workload's CPU time per task stays the same, so that a backlog that the larger pool clears does
not shrink it back.

Hysteresis around both thresholds and a cooldown between resizes keep a workload that sits on a
threshold from flapping. What was learned (a saturation point, a floor) holds while the CPU time
per task stays within ``CHANGE`` times of what it was then: on a busy machine the same tasks'
CPU time varies by more than 2x, and a re-probe costs rounds at a small size. A batch whose CPU
time per task differs from the window's by more than ``CHANGE`` times starts a new window, so a
new phase is acted on after one batch rather than after the old phase's samples have slid out.
A phase with the same CPU time per task is not told apart: a pool a backlog grew stays grown.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["ResizeEvent", "WorkloadSizer"]

SATURATED_RATE = 0.75  # cores: below this neither the GIL nor a core can be what tasks wait for
PROBE_KEEPS = 0.8  # the probe "keeps the rate" if it keeps this share of the saturated rate
RATE_SLACK = 0.15  # ceil(R - slack) threads: noise above a whole core does not add a thread
CHANGE = 4.0  # a batch whose CPU time per task differs this much from the window's starts a new one
MIN_SAMPLES = 4
# A backlog: on average over the window's batches, at least this share of the pool's size (and at
# least one job) waited in its queue: half a wave of tasks waits for a thread, not the odd job
# that a waking worker has not picked up yet.
BACKLOG = 0.5
BATCH_PERIOD = 0.002  # seconds of pool time per batch: bounds the controller's cost on tiny tasks
MAX_BATCH = 4096


class ResizeEvent(NamedTuple):
    """One resize: ``time`` in seconds since the executor was created, the worker counts before
    and after, the workload class then, the CPU share measured then, and why: ``"classify"`` (the
    class's target size), ``"probe"`` (shrinking to test whether threads wait for the GIL or
    cores), ``"saturated"`` (the size a probe found the CPU saturates at) or ``"backlog"`` (tasks
    waited in the queue while the CPU was not saturated)."""

    time: float
    from_workers: int
    to_workers: int
    workload: str
    cpu_share: float
    reason: str


def _same_work(learned: float, now: float) -> bool:
    """Whether a CPU time per task is still the one something was learned at."""
    return learned / CHANGE <= now <= learned * CHANGE


class _Limit(NamedTuple):
    """A learned saturation point: the CPU rate the workload saturates at, the smallest size
    that reaches it, and the workload's CPU time per task when it was learned."""

    rate: float
    workers: int
    cpu_per_task: float


class _Floor(NamedTuple):
    """A size a backlog grew the pool to, and the workload's CPU time per task then."""

    workers: int
    cpu_per_task: float


class _Probe(NamedTuple):
    from_workers: int
    rate: float


class WorkloadSizer:
    """The controller: ``add(batch)`` takes one batch of measurements and returns the new size
    when the pool should resize, else None. Not thread-safe: the caller serializes ``add``."""

    def __init__(
        self,
        *,
        min_workers: int,
        max_workers: int,
        io_workers: int,
        cpu_workers: int,
        mixed_workers: int,
        window: int,
        io_threshold: float,
        cpu_threshold: float,
        hysteresis: float,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_workers, self.max_workers = min_workers, max_workers
        self._targets = {"io": io_workers, "cpu": cpu_workers, "mixed": mixed_workers}
        self.window = window
        self.io_threshold, self.cpu_threshold = io_threshold, cpu_threshold
        self.hysteresis, self.cooldown = hysteresis, cooldown
        self._clock = clock
        self._origin = clock()
        self._last_resize: float | None = None
        self.workload = "unknown"
        self.target = min_workers
        self.cpu_share: float | None = None
        self.cpu_rate: float | None = None
        self.events: list[ResizeEvent] = []
        # (count, cpu, wall, first_end, last_end, first_cpu, delay, queued) per batch
        self._batches: collections.deque[tuple[int, float, float, float, float, float, float, int]] = (
            collections.deque()
        )
        self._samples = 0
        self._mean_wall: float | None = None
        self._probe: _Probe | None = None
        self._limit: _Limit | None = None
        self._floor: _Floor | None = None
        self._queued = 0.0  # the window's jobs waiting in the queue, summed over its batches

    def need(self) -> int:
        """Samples (since the last resize) an evaluation needs at the current size."""
        return max(1, min(self.window, max(MIN_SAMPLES, 2 * self.target)))

    def batch_size(self) -> int:
        """How many tasks the pool should measure per batch: ``need()``, or more for tiny tasks
        so that a batch spans at least ``BATCH_PERIOD`` of pool time."""
        need = self.need()
        if not self._mean_wall:
            return need
        return max(need, min(MAX_BATCH, math.ceil(BATCH_PERIOD * self.target / self._mean_wall)))

    def clamp(self, workers: int) -> int:
        return max(self.min_workers, min(self.max_workers, workers))

    def add(
        self,
        count: int,
        cpu: float,
        wall: float,
        first_end: float,
        last_end: float,
        first_cpu: float,
        delay: float = 0.0,
        *,
        queued: int = 0,
    ) -> int | None:
        """One batch: ``count`` tasks, their summed CPU, wall and run-delay seconds, when the
        first and the last of them ended, the first one's CPU time, and how many jobs waited in
        the pool's queue when it was handed over."""
        if count <= 0:
            return None
        if self._batches and self._changed(count, cpu):
            # A new phase: older samples would only slow down the reaction to it.
            self._clear_window()
        self._batches.append((count, cpu, wall, first_end, last_end, first_cpu, delay, queued))
        self._samples += count
        self._queued += queued
        while len(self._batches) > 1 and self._samples - self._batches[0][0] >= self.window:
            old = self._batches.popleft()
            self._samples -= old[0]
            self._queued -= old[7]
        if self._samples < self.need():
            return None
        now = self._clock()
        if self._last_resize is not None and now - self._last_resize < self.cooldown:
            return None
        return self._evaluate(now)

    def _clear_window(self) -> None:
        self._batches.clear()
        self._samples = 0
        self._queued = 0.0

    def _changed(self, count: int, cpu: float) -> bool:
        new = max(cpu / count, 1e-6)
        old = max(sum(b[1] for b in self._batches) / self._samples, 1e-6)
        return new > CHANGE * old or old > CHANGE * new

    # -- the decision -----------------------------------------------------------------------
    def _measure(self) -> tuple[float, float, float, float] | None:
        """(share, rate in cores, rate scaled to whole cores, CPU seconds per task)."""
        batches = self._batches
        count = sum(b[0] for b in batches)
        cpu = sum(b[1] for b in batches)
        wall = sum(b[2] for b in batches)
        delay = sum(b[6] for b in batches)
        start = min(b[3] for b in batches)
        end = max(b[4] for b in batches)
        first_cpu = min(batches, key=lambda b: b[3])[5]
        if wall <= 0 or end <= start:
            return None
        self._mean_wall = wall / count
        share = min(1.0, cpu / max(wall - delay, 1e-9))
        # The rate counts the tasks that ended after the first one, over the time they ended in.
        rate = (cpu - first_cpu) / (end - start)
        # The share of its runnable time a thread got a core: the whole-core equivalent of a rate.
        on_core = cpu / (cpu + delay) if cpu + delay > 0 else 1.0
        return share, rate, rate / max(on_core, 0.05), cpu / count

    def _evaluate(self, now: float) -> int | None:
        measured = self._measure()
        if measured is None:
            return None
        share, self.cpu_rate, rate, cpu_per_task = measured
        self.cpu_share = share
        n = self.target
        limit = self._limit
        if limit is not None and not _same_work(limit.cpu_per_task, cpu_per_task):
            limit = self._limit = None  # a different workload: what was learned no longer holds
        if self._floor is not None and not _same_work(self._floor.cpu_per_task, cpu_per_task):
            self._floor = None
        floor = self._floor

        if self._probe is not None:
            probe, self._probe = self._probe, None
            if rate >= PROBE_KEEPS * probe.rate:
                # Fewer threads kept the CPU rate: the threads were waiting for the GIL or cores.
                self._limit = _Limit(probe.rate, n, cpu_per_task)
                return self._settle("cpu", n, share, now, "saturated")
            # The rate dropped with the threads: the waiting was I/O, and this share is true.
            saturating = self._saturating(probe.rate, share)
            self._limit = _Limit(probe.rate, saturating, cpu_per_task)
            workload = self._classify(share)
            target = min(self._targets[workload], saturating)
            return self._settle(workload, target, share, now, "saturated")

        if share < self.cpu_threshold and rate >= SATURATED_RATE:
            if floor is not None and n <= floor.workers:
                # A backlog grew the pool to this size; more threads since brought the rate up.
                return self._settle(self._classify(share), n, share, now, "backlog")
            if limit is not None and n <= limit.workers * 1.25 + 1:
                # The size this workload was found to saturate at: stay.
                return self._settle("cpu" if self.workload == "unknown" else self.workload, n, share, now, "saturated")
            # No CPU work keeps more than a thread per core busy: a rate scaled past the core
            # count (little time on a core, on a busy machine) does not make a larger probe.
            smaller = self.clamp(min(math.ceil(rate - RATE_SLACK), self._targets["cpu"]))
            if smaller >= n:
                # Cannot shrink to probe: at this size the CPU (or the GIL) is the bottleneck.
                self._limit = _Limit(rate, n, cpu_per_task)
                return self._settle("cpu", n, share, now, "saturated")
            # The pool looks CPU-bound at this size; the probe confirms it or finds I/O after all.
            self._probe = _Probe(n, rate)
            self.workload = "cpu"
            return self._resize(smaller, "cpu", share, now, "probe")

        return self._by_class(share, limit, cpu_per_task, now)

    def _by_class(self, share: float, limit: _Limit | None, cpu_per_task: float, now: float) -> int | None:
        """The class's target, within what was learned; or twice the size for a backlog."""
        n = self.target
        workload = self._classify(share)
        target = self._targets[workload]
        if limit is not None:
            # Never grow past the size at which this workload saturates the CPU.
            saturating = self._saturating(limit.rate, share)
            target = min(target, max(limit.workers, saturating))
        if workload != "io":
            # Not mostly waiting: tiny tasks whose dispatch keeps the GIL busy read "mixed" at a
            # low CPU rate (the dispatch is not theirs), and more threads would only add to it.
            return self._settle(workload, target, share, now, "classify")
        if self._floor is not None:
            target = max(target, self._floor.workers)
        backlog = self._queued / len(self._batches)
        if backlog >= max(1.0, BACKLOG * n) and target <= n < self.max_workers:
            # Tasks wait for a thread, and the CPU is not what they wait for (rate < SATURATED_RATE).
            target = self.clamp(2 * n)
            self._floor = _Floor(target, cpu_per_task)
            return self._settle(workload, target, share, now, "backlog")
        return self._settle(workload, target, share, now, "classify")

    def _saturating(self, rate: float, share: float) -> int:
        """Threads that, each busy ``share`` of the time, keep ``rate`` cores busy."""
        if share <= 0:
            return self.max_workers
        return max(1, math.ceil(rate / share - RATE_SLACK))

    def _classify(self, share: float) -> str:
        low, high, h = self.io_threshold, self.cpu_threshold, self.hysteresis
        # Leaving the current class takes a margin past the threshold.
        if self.workload == "io":
            low += h
        elif self.workload == "mixed":
            low, high = low - h, high + h
        elif self.workload == "cpu":
            high -= h
        if share < low:
            return "io"
        if share > high:
            return "cpu"
        return "mixed"

    def _settle(self, workload: str, target: int, share: float, now: float, reason: str) -> int | None:
        self.workload = workload
        target = self.clamp(target)
        if target == self.target:
            return None
        return self._resize(target, workload, share, now, reason)

    def _resize(self, target: int, workload: str, share: float, now: float, reason: str) -> int:
        self.events.append(ResizeEvent(now - self._origin, self.target, target, workload, share, reason))
        self.target = target
        self._last_resize = now
        self._clear_window()
        return target

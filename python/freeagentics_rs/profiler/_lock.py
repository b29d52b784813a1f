"""InstrumentedLock: a drop-in Lock/RLock that records how often it was contended and how long
threads waited for it and held it."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .. import _validate

__all__ = ["InstrumentedLock", "percentiles"]

MAX_SAMPLES = 100_000  # per series; the newest are kept


def percentiles(samples: Any, scale: float = 1e3) -> dict[str, float]:
    """p50/p95/p99/max (and the count) of ``samples`` in seconds, scaled (to ms by default)."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def at(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale)

    return {"count": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * scale}


class InstrumentedLock:
    """A ``threading.Lock`` (or ``RLock`` with ``reentrant=True``) that counts acquisitions and
    contended acquisitions (the lock was held by someone else) and keeps wait and hold times.
    Use it where the lock it replaces was used: ``with lock:``, ``acquire(blocking, timeout)``,
    ``release()``, ``locked()``. For a reentrant lock, nested acquisitions by the owner count as
    acquisitions; the hold time runs from the outermost acquire to the matching release.

    FreeAgentics' names work too: ``lock_id`` (the name), ``profiler`` (the ThreadingProfiler
    that made it, if any), and ``with lock as x`` binds the lock itself."""

    def __init__(self, name: str = "lock", reentrant: bool = False) -> None:  # noqa: FBT001 (public, positional)
        self.name = _validate.string(name, "name")
        self.reentrant = _validate.boolean(reentrant, "reentrant")
        self.profiler: Any = None
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()
        self._stats_lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._acquired_at = 0.0
        self._acquisitions = self._contended = self._failed = 0
        self._waits: deque[float] = deque(maxlen=MAX_SAMPLES)
        self._holds: deque[float] = deque(maxlen=MAX_SAMPLES)
        # Totals over every acquisition (the sample series keep only the newest).
        self._total_wait = self._max_wait = 0.0
        self._by_thread: dict[int, list[Any]] = {}  # thread id -> [acquisitions, total wait]

    @property
    def lock_id(self) -> str:
        """FreeAgentics' name for ``name``."""
        return self.name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:  # noqa: FBT001 (as threading.Lock)
        # The arguments are checked as threading.Lock checks them, contended or not.
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"must be real number, not {type(timeout).__name__}")
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be positive")
        me = threading.get_ident()
        waited = 0.0
        if not self._lock.acquire(blocking=False):
            with self._stats_lock:  # counted before waiting, so a blocked waiter shows at once
                self._contended += 1
            start = time.perf_counter()
            acquired = False
            try:
                acquired = blocking and self._lock.acquire(blocking=True, timeout=timeout)
            finally:
                waited = time.perf_counter() - start if blocking else 0.0
                if not acquired:  # timed out, or interrupted (Ctrl-C) while waiting
                    with self._stats_lock:
                        self._failed += 1
                        self._waits.append(waited)
            if not acquired:
                return False
        if self._owner == me and self.reentrant:
            self._depth += 1
        else:
            self._owner, self._depth, self._acquired_at = me, 1, time.perf_counter()
        with self._stats_lock:
            self._acquisitions += 1
            self._waits.append(waited)
            self._total_wait += waited
            self._max_wait = max(self._max_wait, waited)
            per_thread = self._by_thread.setdefault(me, [0, 0.0])
            per_thread[0] += 1
            per_thread[1] += waited
        return True

    def release(self) -> None:
        outermost = self._depth <= 1
        acquired_at = self._acquired_at
        if self.reentrant and self._owner != threading.get_ident():
            self._lock.release()  # raises RuntimeError: cannot release un-acquired lock
        if outermost:
            self._owner, self._depth = None, 0
        else:
            self._depth -= 1
        try:
            self._lock.release()
        except RuntimeError:
            if outermost:
                self._owner, self._depth = None, 0
            raise
        if outermost:
            held = time.perf_counter() - acquired_at
            with self._stats_lock:
                self._holds.append(held)

    # threading.Condition works with any lock that has these three (as RLock does).
    def _is_owned(self) -> bool:
        return self._owner == threading.get_ident()

    def _release_save(self) -> int:
        """Releases the lock completely (all nested levels of an RLock) for Condition.wait."""
        depth = self._depth
        for _ in range(depth - 1):  # the inner levels of the underlying RLock
            self._lock.release()
        self._depth = 1
        self.release()
        return depth

    def _acquire_restore(self, depth: int) -> None:
        self.acquire()
        for _ in range(depth - 1):
            self._lock.acquire()
        self._depth = depth

    def locked(self) -> bool:
        return self._depth > 0 if self.reentrant else self._lock.locked()

    def __enter__(self) -> InstrumentedLock:
        self.acquire()
        return self  # FreeAgentics' `with lock as x` binds the lock

    def __exit__(self, *exc: object) -> None:
        self.release()

    def stats(self) -> dict[str, Any]:
        """acquisitions, contended (waited, or failed for it), contention_rate, failed (timed out
        or non-blocking), and wait_ms / hold_ms percentiles (p50, p95, p99, max)."""
        with self._stats_lock:
            waits, holds = list(self._waits), list(self._holds)
            acquisitions, contended, failed = self._acquisitions, self._contended, self._failed
        attempts = acquisitions + failed
        return {
            "name": self.name,
            "reentrant": self.reentrant,
            "acquisitions": acquisitions,
            "contended": contended,
            "contention_rate": contended / attempts if attempts else 0.0,
            "failed": failed,
            "wait_ms": percentiles(waits),
            "hold_ms": percentiles(holds),
        }

    def totals(self) -> dict[str, Any]:
        """Totals over every acquisition: acquisitions, contended, total_wait and max_wait (s),
        and per thread id its acquisitions and total wait (``threads``: id -> (n, s))."""
        with self._stats_lock:
            return {
                "acquisitions": self._acquisitions,
                "contended": self._contended,
                "total_wait": self._total_wait,
                "max_wait": self._max_wait,
                "threads": {ident: (n, wait) for ident, (n, wait) in self._by_thread.items()},
            }

    def __repr__(self) -> str:
        return f"<InstrumentedLock {self.name!r} {'locked' if self.locked() else 'unlocked'}>"

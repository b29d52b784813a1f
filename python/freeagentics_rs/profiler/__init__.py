"""ThreadingProfiler and InstrumentedLock: measure the GIL, lock contention, executor queues and
balance, and the best thread count of a workload; report what was measured. ``ThreadMetrics``,
``LockMetrics`` and ``ThreadingProfile`` are the result shapes of FreeAgentics' profiler API."""

from ._freeagentics import LockMetrics, ThreadingProfile, ThreadMetrics
from ._lock import InstrumentedLock
from ._profiler import ExecutorProfile, ThreadingProfiler
from ._report import ThreadingReport

__all__ = [
    "ExecutorProfile",
    "InstrumentedLock",
    "LockMetrics",
    "ThreadMetrics",
    "ThreadingProfile",
    "ThreadingProfiler",
    "ThreadingReport",
]

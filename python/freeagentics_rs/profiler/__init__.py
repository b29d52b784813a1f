"""ThreadingProfiler and InstrumentedLock: measure the GIL, lock contention, executor queues and
balance, and the best thread count of a workload; report what was measured."""

from ._lock import InstrumentedLock
from ._profiler import ExecutorProfile, ThreadingProfiler
from ._report import ThreadingReport

__all__ = ["ExecutorProfile", "InstrumentedLock", "ThreadingProfiler", "ThreadingReport"]

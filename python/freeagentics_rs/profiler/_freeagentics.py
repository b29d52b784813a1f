"""The result shapes of FreeAgentics' threading profiler (``ThreadMetrics``, ``LockMetrics``,
``ThreadingProfile``), filled here from real measurements, and the process-level readings its
``profile_memory_usage()`` returns."""

from __future__ import annotations

import gc
import os
import resource
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LockMetrics", "ThreadMetrics", "ThreadingProfile", "context_switches", "memory_usage"]


@dataclass
class ThreadMetrics:
    """One thread's totals over its ``profile_thread`` blocks: wall time, thread CPU time, the
    rest (waiting: I/O, locks, the GIL), instrumented-lock acquisitions and their wait, context
    switches (Linux: the thread's own counters) and blocks completed. Times in seconds."""

    thread_id: int
    name: str
    total_time: float = 0.0
    cpu_time: float = 0.0
    wait_time: float = 0.0
    lock_acquisitions: int = 0
    lock_wait_time: float = 0.0
    context_switches: int = 0
    tasks_completed: int = 0
    start_time: float = field(default_factory=time.perf_counter)
    start_cpu_time: float = field(default_factory=time.thread_time)


@dataclass
class LockMetrics:
    """An instrumented lock's totals: acquisitions, contentions (attempts that found it held),
    total and longest wait in seconds, and acquisitions per thread id (``holders``)."""

    lock_id: str
    acquisitions: int = 0
    contentions: int = 0
    total_wait_time: float = 0.0
    max_wait_time: float = 0.0
    holders: dict[int, int] = field(default_factory=dict)


@dataclass
class ThreadingProfile:
    """``generate_report()``'s result (FreeAgentics' fields). ``pool_metrics`` is the last
    ``profile_thread_pool`` result; ``gil_contention`` threaded / serial time of the GIL probe;
    ``optimal_thread_count`` the measured best when ``find_optimal_thread_count`` ran."""

    total_duration: float
    thread_metrics: dict[int, ThreadMetrics]
    lock_metrics: dict[str, LockMetrics]
    pool_metrics: dict[str, Any]
    memory_metrics: dict[str, Any]
    gil_contention: float
    optimal_thread_count: int
    bottlenecks: list[str]
    recommendations: list[str]


_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)


def context_switches() -> int:
    """Voluntary + involuntary context switches of the calling thread so far (0 where the OS
    does not count per thread)."""
    if _RUSAGE_THREAD is None:
        return 0
    usage = resource.getrusage(_RUSAGE_THREAD)
    return usage.ru_nvcsw + usage.ru_nivcsw


def memory_usage() -> dict[str, Any]:
    """rss_mb, vms_mb, threads, open_files, connections of this process (after a garbage
    collection), read from ``/proc`` where there is one."""
    gc.collect()
    rss = vms = threads = None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmSize:"):
                    vms = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])  # OS threads: native pool workers too
    except OSError:
        pass
    if rss is None:  # no /proc: the peak RSS is the best the stdlib knows
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak if os.uname().sysname == "Darwin" else peak * 1024
    files = sockets = 0
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                mode = os.stat(f"/proc/self/fd/{fd}").st_mode
            except OSError:
                continue  # closed meanwhile (the listing's own fd among them)
            files += stat.S_ISREG(mode)
            sockets += stat.S_ISSOCK(mode)
    except OSError:
        pass
    return {
        "rss_mb": rss / 1024 / 1024,
        "vms_mb": (vms if vms is not None else rss) / 1024 / 1024,
        "threads": threads if threads is not None else threading.active_count(),
        "open_files": files,
        "connections": sockets,
    }

"""Executors: ``WorkStealingThreadPool`` and ``AdaptiveThreadPoolExecutor`` (Rust core or
pure-Python fallback)."""

from ._adaptive import AdaptiveThreadPoolExecutor
from ._pool import MAX_WORKERS, WorkStealingThreadPool
from ._sizing import ResizeEvent

__all__ = ["AdaptiveThreadPoolExecutor", "MAX_WORKERS", "ResizeEvent", "WorkStealingThreadPool"]

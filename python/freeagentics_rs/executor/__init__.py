"""Executors: ``WorkStealingThreadPool`` and ``AdaptiveThreadPoolExecutor`` (Rust core or
pure-Python fallback)."""

from ._adaptive import AdaptiveThreadPoolExecutor
from ._pool import WorkStealingThreadPool
from ._sizing import ResizeEvent

__all__ = ["AdaptiveThreadPoolExecutor", "ResizeEvent", "WorkStealingThreadPool"]

"""Executors: ``WorkStealingThreadPool`` (Rust core or pure-Python fallback)."""

from ._pool import WorkStealingThreadPool

__all__ = ["WorkStealingThreadPool"]

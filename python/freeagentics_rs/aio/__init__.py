"""Async agent I/O: ``EventLoopThread`` (one loop thread for synchronous callers) and
``EventBus`` (topics with bounded, drop-oldest subscriber queues)."""

from ._bus import EventBus, Subscription
from ._loop import EventLoopThread

__all__ = ["EventBus", "EventLoopThread", "Subscription"]

"""Async agent I/O: ``EventLoopThread`` (one loop thread for synchronous callers), ``EventBus``
(topics with bounded, drop-oldest subscriber queues) and ``AsyncAgentManager``."""

from ._bus import EventBus, Subscription
from ._loop import EventLoopThread
from ._manager import AgentOperationResult, AsyncAgentManager

__all__ = ["AgentOperationResult", "AsyncAgentManager", "EventBus", "EventLoopThread", "Subscription"]

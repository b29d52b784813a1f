"""The manager's tasks: ``AgentTask`` and ``TaskResult`` (FreeAgentics' dataclasses), the
record of a queued task, the latch a batch waits on, what running a task does, and
``active_futures``, the live view of the queued and running ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..executor._pool import _PoolFuture

if TYPE_CHECKING:
    from ._manager import OptimizedThreadPoolManager

__all__ = ["AgentTask", "TaskResult"]

OPERATIONS = ("perceive", "select_action", "step", "update_beliefs")


@dataclass
class AgentTask:
    """A task for an agent (FreeAgentics' dataclass)."""

    agent_id: str | int
    operation: str
    data: dict[str, Any]
    priority: int = 0
    timestamp: float | None = None

    def __post_init__(self) -> None:
        if self.timestamp is None:
            self.timestamp = time.time()


@dataclass
class TaskResult:
    """The outcome of one task. ``execution_time_ms`` is the time the operation ran;
    ``queue_wait_ms`` the time it waited before (FreeAgentics counted both as execution)."""

    agent_id: str | int
    operation: str
    success: bool
    result: Any
    error: str | None
    execution_time_ms: float
    timestamp: float
    queue_wait_ms: float = 0.0


class _Latch:
    """Counts a batch's tasks down; the batch waits on it (cheaper than ``wait()`` on futures)."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()
        self.done = threading.Event()
        if count == 0:
            self.done.set()

    def count_down(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


class _Queued:
    __slots__ = ("task", "agent", "future", "seq", "latch", "queued_at")

    def __init__(self, task: AgentTask, agent: Any, seq: int, latch: _Latch | None) -> None:
        self.task, self.agent, self.seq, self.latch = task, agent, seq, latch
        self.future: Future[Any] = _PoolFuture()  # a Future with a lighter condition
        self.queued_at = time.perf_counter()


def _failed(task: AgentTask, error: str) -> TaskResult:
    return TaskResult(
        agent_id=task.agent_id,
        operation=task.operation,
        success=False,
        result=None,
        error=error,
        execution_time_ms=0.0,
        timestamp=time.time(),
    )


def _perform(agent: Any, operation: str, data: dict[str, Any]) -> Any:
    if operation == "step":
        return agent.step(data.get("observation", {}))
    if operation == "perceive":
        agent.perceive(data.get("observation", {}))
        return None
    if operation == "update_beliefs":
        agent.update_beliefs()
        return agent.beliefs
    if operation == "select_action":
        return agent.select_action()
    raise ValueError(f"unknown operation {operation!r}; valid operations: {', '.join(OPERATIONS)}")


class _ActiveFutures(Mapping[Future[Any], AgentTask]):
    """``manager.active_futures``: a live read-only view ``{future: AgentTask}`` of the tasks
    running or queued now (FreeAgentics' dict of this name also kept finished futures)."""

    def __init__(self, manager: OptimizedThreadPoolManager) -> None:
        self._manager = manager

    def _snapshot(self) -> dict[Future[Any], AgentTask]:
        m = self._manager
        with m._lock:
            active = {queued.future: queued.task for queued in m._running.values()}
            for fifo in m._queues.values():
                active.update((q.future, q.task) for q in fifo if not q.future.cancelled())
        return active

    def __getitem__(self, future: Future[Any]) -> AgentTask:
        return self._snapshot()[future]

    def __iter__(self) -> Iterator[Future[Any]]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __repr__(self) -> str:
        return f"<active_futures: {len(self)} running or queued>"

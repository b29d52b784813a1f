"""The manager's tasks: ``AgentTask`` and ``TaskResult`` (FreeAgentics' dataclasses), the
record of a queued task, the latch a batch waits on, what running a task does, what a
runner job settles instead of a future, and ``active_futures``, the live view of the queued and
running ones."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..executor._futures import _PoolFuture

if TYPE_CHECKING:
    from ._manager import OptimizedThreadPoolManager

__all__ = ["AgentTask", "TaskResult"]

logger = logging.getLogger(__name__)

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
    """Counts a batch's tasks down, under the manager's lock; the batch waits on ``done``
    (cheaper than ``wait()`` on futures)."""

    __slots__ = ("left", "done")

    def __init__(self) -> None:
        self.left = 0  # set to the batch's size before its tasks are queued
        self.done = threading.Event()

    def count_down_locked(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


QUEUED, RUNNING, DONE, CANCELLED = range(4)


class _Queued:
    """A task in the manager: queued, running, then done (or cancelled while queued). A batch's
    tasks get no ``Future`` unless ``active_futures`` asks for one (``future_locked``): the batch
    reads ``state`` and ``result``, and a ``Future`` per task cost as much as the rest of its
    dispatch. Their ``AgentTask`` is made on demand too."""

    __slots__ = (
        "agent_id",
        "operation",
        "data",
        "priority",
        "agent",
        "seq",
        "latch",
        "queued_at",
        "state",
        "result",
        "future",
        "_task",
    )

    def __init__(
        self,
        agent_id: Any,
        operation: str,
        data: dict[str, Any],
        priority: int,
        agent: Any,
        seq: int,
        latch: _Latch | None,
        task: AgentTask | None = None,
    ) -> None:
        self.agent_id, self.operation, self.data, self.priority = agent_id, operation, data, priority
        self.agent, self.seq, self.latch, self._task = agent, seq, latch, task
        self.state = QUEUED
        self.result: TaskResult | None = None
        # Tasks outside a batch are awaited through their future: a Future with a lighter condition.
        self.future: Future[Any] | None = _PoolFuture() if latch is None else None
        self.queued_at = time.perf_counter()

    @property
    def task(self) -> AgentTask:
        if self._task is None:
            queued_at = time.time() - (time.perf_counter() - self.queued_at)
            self._task = AgentTask(self.agent_id, self.operation, self.data, self.priority, queued_at)
        return self._task

    def future_locked(self) -> Future[Any]:
        """This task's future, made now if it has none (under the manager's lock)."""
        if self.future is None:
            future = _PoolFuture()
            if self.state == RUNNING:
                future.set_running_or_notify_cancel()
            self.future = future
        return self.future

    def start_locked(self) -> bool:
        """Marks a queued task running; False if it was cancelled (under the manager's lock)."""
        if self.state != QUEUED or (self.future is not None and not self.future.set_running_or_notify_cancel()):
            self.state = CANCELLED
            return False
        self.state = RUNNING
        return True

    def cancelled(self) -> bool:
        return self.state == CANCELLED or (self.future is not None and self.future.cancelled())


def _failed(task: AgentTask | _Queued, error: str) -> TaskResult:
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
            active = {queued.future_locked(): queued.task for queued in m._running.values()}
            for fifo in m._queues.values():
                active.update((q.future_locked(), q.task) for q in fifo if not q.cancelled())
        return active

    def __getitem__(self, future: Future[Any]) -> AgentTask:
        return self._snapshot()[future]

    def __iter__(self) -> Iterator[Future[Any]]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __repr__(self) -> str:
        return f"<active_futures: {len(self)} running or queued>"


def _execute(queued: _Queued) -> TaskResult:
    """Runs a queued task on its agent: its result, or its error as a failed ``TaskResult``."""
    started = time.perf_counter()
    queue_wait_ms = (started - queued.queued_at) * 1000
    value: Any = None
    error: str | None = None
    try:
        value = _perform(queued.agent, queued.operation, queued.data)
    except BaseException as exc:  # also SystemExit & co: an agent must never be left running
        logger.error("Task %s failed for agent %r: %r", queued.operation, queued.agent_id, exc)
        error = str(exc) or type(exc).__name__
    return TaskResult(
        agent_id=queued.agent_id,
        operation=queued.operation,
        success=error is None,
        result=value,
        error=error,
        execution_time_ms=(time.perf_counter() - started) * 1000,
        timestamp=time.time(),
        queue_wait_ms=queue_wait_ms,
    )


def _settle(queued: _Queued, result: TaskResult) -> None:
    # A batch's task was settled by _finish_locked (unless active_futures made it a future).
    if queued.future is not None:
        queued.future.set_result(result)


class _RunnerFuture:
    """What a runner job settles instead of a ``Future``: nobody waits on a runner, and a
    ``Future`` per task handed over cost as much as the task's own. A runner never raises (its
    tasks' errors become failed ``TaskResult``s), so an exception here is a bug: it is logged."""

    __slots__ = ()

    @staticmethod
    def set_running_or_notify_cancel() -> bool:
        return True

    @staticmethod
    def set_result(_result: Any) -> None:
        pass

    @staticmethod
    def set_exception(exc: BaseException) -> None:
        logger.error("OptimizedThreadPoolManager: a runner failed", exc_info=exc)

    @staticmethod
    def cancel() -> bool:
        return False


_RUNNER_FUTURE = _RunnerFuture()

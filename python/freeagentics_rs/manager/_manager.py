"""OptimizedThreadPoolManager: FreeAgentics' agent manager API, source-compatible, on
``WorkStealingThreadPool`` and ``AgentRegistry``, with its known bugs fixed.

Tasks are not handed to the pool one by one. Each agent has a FIFO of queued tasks; the head of
every idle agent's FIFO sits in one priority heap (higher priority first, then submission order).
Up to ``current_workers`` runner jobs on the pool take the best head, run it and come back for
the next one, so that:

* two tasks of one agent never run at once, and an agent's tasks run in submission order;
* ``priority`` really orders the queued tasks (a FIFO executor queue would ignore it);
* ``queue_size`` is the real number of queued tasks, and scaling follows it: the pool grows as
  soon as (running + queued) / workers passes ``scaling_threshold``, and halves after each
  ``IDLE_SHRINK_AFTER`` seconds with nothing to do (the last runner lingers that long, waiting on
  a condition). It resizes online and is never rebuilt (FreeAgentics replaced its executor and
  orphaned queued work).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..errors import AgentNotRegisteredError
from ..executor import WorkStealingThreadPool
from ..executor._pool import _PoolFuture
from ..registry import AgentRegistry

__all__ = ["AgentTask", "TaskResult", "OptimizedThreadPoolManager"]

logger = logging.getLogger(__name__)

OPERATIONS = ("perceive", "select_action", "step", "update_beliefs")
_GONE = "agent is not registered"
_LINGER: Any = object()
IDLE_SHRINK_AFTER = 0.5  # seconds of idleness after which the pool halves


@dataclass
class AgentTask:
    """A task for an agent (FreeAgentics' dataclass)."""

    agent_id: str
    operation: str
    data: dict[str, Any]
    priority: int = 0
    timestamp: Optional[float] = None

    def __post_init__(self) -> None:
        if self.timestamp is None:
            self.timestamp = time.time()


@dataclass
class TaskResult:
    """The outcome of one task. ``execution_time_ms`` is the time the operation ran;
    ``queue_wait_ms`` the time it waited before (FreeAgentics counted both as execution)."""

    agent_id: str
    operation: str
    success: bool
    result: Any
    error: Optional[str]
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

    def __init__(self, task: AgentTask, agent: Any, seq: int, latch: Optional[_Latch]) -> None:
        self.task, self.agent, self.seq, self.latch = task, agent, seq, latch
        self.future: Future = _PoolFuture()  # a Future with a lighter condition
        self.queued_at = time.perf_counter()


def _failed(task: AgentTask, error: str) -> TaskResult:
    return TaskResult(task.agent_id, task.operation, False, None, error, 0.0, time.time())


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


class OptimizedThreadPoolManager:
    """Runs agents' operations on a work-stealing pool: per-agent serialization, priorities,
    load-based online scaling, timeouts that return partial results. See the module docstring."""

    def __init__(
        self,
        initial_workers: int = 16,
        max_workers: int = 64,
        min_workers: int = 2,
        scaling_threshold: float = 0.7,
        monitoring_interval: float = 1.0,
        *,
        backend: Optional[str] = None,
    ) -> None:
        for name, value in (("initial_workers", initial_workers), ("max_workers", max_workers), ("min_workers", min_workers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if min_workers > max_workers:
            raise ValueError(f"min_workers ({min_workers}) must not be greater than max_workers ({max_workers})")
        if not min_workers <= initial_workers <= max_workers:
            raise ValueError(f"initial_workers ({initial_workers}) must be between min_workers and max_workers")
        if not 0 < scaling_threshold <= 1:
            raise ValueError(f"scaling_threshold must be in (0, 1], got {scaling_threshold!r}")
        self.min_workers, self.max_workers = min_workers, max_workers
        self.scaling_threshold = scaling_threshold
        self.monitoring_interval = monitoring_interval  # accepted for compatibility; scaling is event-driven
        self.executor = WorkStealingThreadPool(initial_workers, "OptimizedThreadPoolManager", backend=backend)
        self.backend = self.executor.backend
        self.current_workers = initial_workers
        self.agents = AgentRegistry(backend=self.backend)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the lingering runner waits on it
        self._queues: dict[Any, deque[_Queued]] = {}
        self._ready: list[tuple[int, int, Any]] = []  # (-priority, seq, agent_id) of idle agents' heads
        self._running: set[Any] = set()
        self._queued = 0
        self._runners = 0
        self._lingering = False
        self._seq = itertools.count()
        self._shutdown = False
        self._stats: dict[Any, dict[str, Any]] = defaultdict(
            lambda: {
                "total_tasks": 0,
                "successful_tasks": 0,
                "failed_tasks": 0,
                "total_time_ms": 0.0,
                "avg_time_ms": 0.0,
                "total_queue_wait_ms": 0.0,
                "last_error": None,
            }
        )

    # -- agents -----------------------------------------------------------------------------
    def register_agent(self, agent_id: Any, agent: Any) -> None:
        """Registers an agent, replacing one registered under the same id (as FreeAgentics)."""
        while True:
            try:
                return self.agents.register(agent_id, agent)
            except KeyError:
                pass
            try:
                return self.agents.update(agent_id, agent)
            except KeyError:
                pass  # unregistered meanwhile: register again

    def unregister_agent(self, agent_id: Any) -> None:
        """Forgets an agent (no error if it is not registered); its queued tasks still run."""
        self.agents.pop(agent_id, None)

    # -- submitting -------------------------------------------------------------------------
    def submit_task(self, agent_id: Any, operation: str, data: dict[str, Any], priority: int = 0) -> Future:
        """Queues ``operation`` for an agent; the future's result is a ``TaskResult`` (a failed
        one, not an exception, when the operation raises or is unknown).
        ``AgentNotRegisteredError`` (a ``KeyError`` and a ``ValueError``) for an unknown agent."""
        return self._submit(AgentTask(agent_id, operation, data, priority))

    def _submit(self, task: AgentTask, latch: Optional[_Latch] = None) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit tasks after shutdown")
        agent = self.agents.get(task.agent_id)
        if agent is None and task.agent_id not in self.agents:
            raise AgentNotRegisteredError(f"agent {task.agent_id!r} is not registered")
        queued = _Queued(task, agent, next(self._seq), latch)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit tasks after shutdown")
            fifo = self._queues.get(task.agent_id)
            if fifo is None:
                fifo = self._queues[task.agent_id] = deque()
            fifo.append(queued)
            self._queued += 1
            if len(fifo) == 1 and task.agent_id not in self._running:
                heapq.heappush(self._ready, (-task.priority, queued.seq, task.agent_id))
            self._grow_locked()
            self._start_runners_locked()
        return queued.future

    def _start_runners_locked(self) -> None:
        if self._lingering:
            self._cond.notify()  # the lingering runner takes the work first
        while self._runners < min(self.current_workers, len(self._ready) + len(self._running)):
            self._runners += 1
            self.executor.submit(self._runner)

    def _runner(self) -> None:
        # Takes the best idle agent's next task until none is left. One lock round per task:
        # finishing the last task (stats, the agent's next task) and taking the next one. A
        # task's future is settled after its stats are recorded, with no lock held, and before
        # this runner may linger.
        finished: Optional[tuple[_Queued, TaskResult]] = None
        while True:
            with self._lock:
                if finished is not None:
                    self._finish_locked(finished[1])
                queued = self._next_locked(after_a_task=finished is not None, may_linger=False)
            if finished is not None:
                self._settle(*finished)
                finished = None
            if queued is _LINGER:
                with self._lock:
                    queued = self._next_locked(after_a_task=False, may_linger=True)
            if queued is None:
                return
            finished = (queued, self._execute(queued))

    def _next_locked(self, after_a_task: bool, may_linger: bool) -> Any:
        """The next task; or None when this runner should end (it is counted out); or, without
        ``may_linger``, ``_LINGER`` when it is the last runner and should wait for work."""
        if after_a_task and self._runners > self.current_workers:  # the pool shrank
            self._runners -= 1
            return None
        queued = self._take_locked()
        while queued is None:
            if self._shutdown or self._runners > 1 or self.current_workers <= self.min_workers:
                self._runners -= 1
                return None
            if not may_linger:
                return _LINGER
            # The last runner lingers; if nothing comes, the pool halves.
            self._lingering = True
            woken = self._cond.wait(IDLE_SHRINK_AFTER)
            self._lingering = False
            if not woken and not self._ready and not self._running:
                self._resize_locked(max(self.min_workers, self.current_workers // 2))
            queued = self._take_locked()
        return queued

    def _take_locked(self) -> Optional[_Queued]:
        while self._ready:
            _, _, agent_id = heapq.heappop(self._ready)
            fifo = self._queues[agent_id]
            queued = fifo.popleft()
            self._queued -= 1
            if not fifo:
                del self._queues[agent_id]
            if queued.future.set_running_or_notify_cancel():
                self._running.add(agent_id)
                return queued
            self._requeue_head_locked(agent_id)  # cancelled while queued: its successor is next
        return None

    def _requeue_head_locked(self, agent_id: Any) -> None:
        fifo = self._queues.get(agent_id)
        if fifo:
            head = fifo[0]
            heapq.heappush(self._ready, (-head.task.priority, head.seq, agent_id))

    def _execute(self, queued: _Queued) -> TaskResult:
        task = queued.task
        started = time.perf_counter()
        queue_wait_ms = (started - queued.queued_at) * 1000
        try:
            value = _perform(queued.agent, task.operation, task.data)
        except BaseException as exc:  # also SystemExit & co: an agent must never be left running
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.error("Task %s failed for agent %r: %r", task.operation, task.agent_id, exc)
            error = str(exc) or type(exc).__name__
            return TaskResult(task.agent_id, task.operation, False, None, error, elapsed_ms, time.time(), queue_wait_ms)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return TaskResult(task.agent_id, task.operation, True, value, None, elapsed_ms, time.time(), queue_wait_ms)

    @staticmethod
    def _settle(queued: _Queued, result: TaskResult) -> None:
        queued.future.set_result(result)
        if queued.latch is not None:
            queued.latch.count_down()

    def _finish_locked(self, result: TaskResult) -> None:
        self._running.discard(result.agent_id)
        self._requeue_head_locked(result.agent_id)
        stats = self._stats[result.agent_id]
        stats["total_tasks"] += 1
        if result.success:
            stats["successful_tasks"] += 1
        else:
            stats["failed_tasks"] += 1
            stats["last_error"] = result.error
        stats["total_time_ms"] += result.execution_time_ms
        stats["total_queue_wait_ms"] += result.queue_wait_ms
        stats["avg_time_ms"] = stats["total_time_ms"] / stats["total_tasks"]

    # -- scaling ----------------------------------------------------------------------------
    def _grow_locked(self) -> None:
        busy = len(self._running) + self._queued
        if busy / self.current_workers > self.scaling_threshold and self.current_workers < self.max_workers:
            # Enough workers to bring the load under the threshold, and at least twice as many.
            self._resize_locked(min(self.max_workers, max(2 * self.current_workers, math.ceil(busy / self.scaling_threshold))))

    def _resize_locked(self, workers: int) -> None:
        if workers == self.current_workers or self._shutdown:
            return
        logger.info("Resizing the agent pool from %d to %d workers", self.current_workers, workers)
        self.current_workers = workers
        self.executor._resize(workers)

    # -- batches ----------------------------------------------------------------------------
    def step_all_agents(self, observations: dict[Any, Any], timeout: Optional[float] = None) -> dict[Any, TaskResult]:
        """Steps every registered agent that has an observation, concurrently. With a timeout,
        returns what finished in time and a failed ``TaskResult`` (error ``"timeout"``) for the
        rest, whose queued steps are cancelled."""
        tasks = [
            AgentTask(agent_id, "step", {"observation": observations[agent_id]})
            for agent_id in self.agents.ids()
            if agent_id in observations
        ]
        results = self.batch_execute(tasks, timeout)
        return {task.agent_id: result for task, result in zip(tasks, results) if result.error != _GONE}

    def batch_execute(self, tasks: Iterable[Any], timeout: Optional[float] = None) -> list[TaskResult]:
        """Runs ``(agent_id, operation, data)`` tuples (or ``AgentTask``s) and returns their
        results in order; an unknown agent, or a task not done by ``timeout`` (error
        ``"timeout"``, and it is cancelled if it has not started), gives a failed ``TaskResult``."""
        agent_tasks = [task if isinstance(task, AgentTask) else AgentTask(*task) for task in tasks]
        latch = _Latch(len(agent_tasks))
        submitted: list[tuple[AgentTask, Future | str]] = []
        for task in agent_tasks:
            try:
                submitted.append((task, self._submit(task, latch)))
            except AgentNotRegisteredError:
                submitted.append((task, _GONE))
                latch.count_down()
        latch.done.wait(timeout)
        results = []
        timed_out = False
        for task, future in submitted:
            if not isinstance(future, Future):
                results.append(_failed(task, future))
            elif future.done() and not future.cancelled():
                results.append(future.result())
            else:
                timed_out |= future.cancel()  # a running task finishes unobserved
                results.append(_failed(task, "timeout"))
        if timed_out:
            self._purge_cancelled()
        return results

    def _purge_cancelled(self) -> None:
        # Drops cancelled tasks from the queues now, rather than when a runner reaches them.
        with self._lock:
            for agent_id in list(self._queues):
                fifo = deque(q for q in self._queues[agent_id] if not q.future.cancelled())
                self._queued -= len(self._queues[agent_id]) - len(fifo)
                if fifo:
                    self._queues[agent_id] = fifo
                else:
                    del self._queues[agent_id]
            self._ready = [
                (-fifo[0].task.priority, fifo[0].seq, agent_id)
                for agent_id, fifo in self._queues.items()
                if agent_id not in self._running
            ]
            heapq.heapify(self._ready)

    # -- status -----------------------------------------------------------------------------
    def get_performance_stats(self) -> dict[Any, dict[str, Any]]:
        """Per agent: task counts, total and average execution time, queue wait, last error."""
        with self._lock:
            return {agent_id: dict(stats) for agent_id, stats in self._stats.items()}

    def get_pool_status(self) -> dict[str, Any]:
        with self._lock:
            active, queued = len(self._running), self._queued
            return {
                "current_workers": self.current_workers,
                "active_tasks": active,
                "queue_size": queued,
                "load_factor": (active + queued) / self.current_workers,
                "total_agents": len(self.agents),
            }

    def shutdown(self, wait: bool = True) -> None:
        """Refuses new tasks; queued ones still run. With ``wait``, returns when all are done.
        Then forgets the agents (as FreeAgentics did)."""
        with self._lock:
            self._shutdown = True
            self._cond.notify_all()  # a lingering runner exits
        self.executor.shutdown(wait=wait)
        self.agents.clear()

    def __enter__(self) -> OptimizedThreadPoolManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

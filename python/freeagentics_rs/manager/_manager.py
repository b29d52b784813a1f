"""OptimizedThreadPoolManager: FreeAgentics' agent manager API, source-compatible, on
``WorkStealingThreadPool`` and ``AgentRegistry``, with its known bugs fixed.

Each agent has a FIFO of queued tasks; the head of every idle agent's FIFO sits in one priority
heap (higher priority first, then submission order). Runner jobs on the pool take the best head
when they start, so that:

* two tasks of one agent never run at once, and an agent's tasks run in submission order;
* ``priority`` really orders the queued tasks (a FIFO executor queue would ignore it);
* ``queue_size`` is the real number of queued tasks.

Sizing. Without sizes (``OptimizedThreadPoolManager()``), the pool is an
``AdaptiveThreadPoolExecutor``: there is one runner job per idle agent's head, and each runs one
task, so the controller measures tasks and sees the backlog in the pool's queue; it sizes the
pool (a GIL-bound workload stays at the few threads it can use). With sizes, up to
``current_workers`` runners take the best head, run it and come back for the next one, and the
load rule sizes the pool: it grows as soon as (running + queued) / workers passes
``scaling_threshold``, and halves after each ``IDLE_SHRINK_AFTER`` seconds with
nothing to do (the last runner lingers that long, waiting on a condition). Either way it resizes
online and is never rebuilt (FreeAgentics replaced its executor and orphaned queued work).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import warnings
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from .._validate import integer, optional_timeout, real
from ..errors import AgentNotRegisteredError, ManagerShutdownError
from ..executor import AdaptiveThreadPoolExecutor, WorkStealingThreadPool
from ..registry import AgentRegistry
from ._tasks import (
    _RUNNER_FUTURE,
    CANCELLED,
    DONE,
    QUEUED,
    AgentTask,
    TaskResult,
    _ActiveFutures,
    _execute,
    _failed,
    _Latch,
    _Queued,
    _settle,
)

__all__ = ["AgentTask", "TaskResult", "OptimizedThreadPoolManager"]

logger = logging.getLogger(__name__)

_LINGER: Any = object()
IDLE_SHRINK_AFTER = 0.5  # seconds of idleness after which the pool halves
# This package's defaults (the threading report's recommendation; FreeAgentics had 8/32/2/0.8).
DEFAULT_INITIAL_WORKERS, DEFAULT_MAX_WORKERS, DEFAULT_MIN_WORKERS = 16, 64, 2
MAX_POOL_WORKERS = 4096  # bound of every size argument
_SHUTDOWN_MESSAGE = "cannot submit tasks after shutdown"


class OptimizedThreadPoolManager:
    """Runs agents' operations on a work-stealing pool: per-agent serialization, priorities,
    load-based online scaling, timeouts that return partial results. See the module docstring."""

    def __init__(
        self,
        initial_workers: int | None = None,
        max_workers: int | None = None,
        min_workers: int | None = None,
        scaling_threshold: float = 0.7,
        monitoring_interval: float = 1.0,
        *,
        backend: str | None = None,
    ) -> None:
        self.adaptive = initial_workers is None and max_workers is None and min_workers is None
        given = {"initial_workers": initial_workers, "max_workers": max_workers, "min_workers": min_workers}
        defaults = {
            "initial_workers": DEFAULT_INITIAL_WORKERS,
            "max_workers": DEFAULT_MAX_WORKERS,
            "min_workers": DEFAULT_MIN_WORKERS,
        }
        sizes = {
            name: defaults[name] if value is None else integer(value, name, minimum=1, maximum=MAX_POOL_WORKERS)
            for name, value in given.items()
        }
        self.scaling_threshold = real(
            scaling_threshold, "scaling_threshold", minimum=0.0, maximum=1.0, exclusive_minimum=True
        )
        # Accepted for compatibility; scaling is event-driven.
        self.monitoring_interval = real(monitoring_interval, "monitoring_interval", minimum=0.0, finite=False)
        # FreeAgentics accepted any sizes (its own coordinator passes initial_workers=50,
        # max_workers=20): clamp into max >= initial >= min and say so once.
        used = dict(sizes)
        used["initial_workers"] = min(sizes["initial_workers"], sizes["max_workers"])
        used["min_workers"] = min(sizes["min_workers"], used["initial_workers"])
        if used != sizes:
            asked = ", ".join(f"{name}={sizes[name]}" for name in given)
            using = ", ".join(f"{name}={used[name]}" for name in given)
            warnings.warn(
                f"OptimizedThreadPoolManager: {asked} are inconsistent (min_workers <= initial_workers <= "
                f"max_workers); using {using}",
                RuntimeWarning,
                stacklevel=2,
            )
        self.min_workers, self.max_workers = used["min_workers"], used["max_workers"]
        if self.adaptive:
            self.executor: WorkStealingThreadPool = AdaptiveThreadPoolExecutor(
                max_workers=self.max_workers,
                min_workers=self.min_workers,
                thread_name_prefix="OptimizedThreadPoolManager",
                backend=backend,
            )
        else:
            self.executor = WorkStealingThreadPool(
                used["initial_workers"], "OptimizedThreadPoolManager", backend=backend
            )
        self.backend = self.executor.backend
        self._workers = used["initial_workers"]
        self.agents = AgentRegistry(backend=self.backend)
        # The adaptive controller's target, read per task (None: the load rule sizes the pool).
        self._target_workers = (lambda: self.executor._usable_core().target_workers) if self.adaptive else None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the lingering runner waits on it
        self._queues: dict[Any, deque[_Queued]] = {}
        self._ready: list[tuple[int, int, Any]] = []  # (-priority, seq, agent_id) of idle agents' heads
        self._running: dict[Any, _Queued] = {}  # agent id -> its task that is running
        self._queued = 0
        self._runners = 0
        self._lingering = False
        self._seq = itertools.count()
        self._shutdown = False
        # Per agent, as FreeAgentics' attribute of this name (updated under the manager's lock;
        # get_performance_stats() returns a copy).
        self.performance_stats: dict[Any, dict[str, Any]] = defaultdict(
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
        self._stats = self.performance_stats
        self.active_futures: Mapping[Future[Any], AgentTask] = _ActiveFutures(self)

    @property
    def current_workers(self) -> int:
        """The pool's size now: the adaptive controller's target, or the load rule's size."""
        return self._pool_size()

    # -- agents -----------------------------------------------------------------------------
    def register_agent(self, agent_id: Any, agent: Any) -> None:
        """Registers an agent, replacing one registered under the same id (as FreeAgentics)."""
        self.agents[agent_id] = agent

    def unregister_agent(self, agent_id: Any) -> None:
        """Forgets an agent (no error if it is not registered); its queued tasks still run."""
        self.agents.pop(agent_id, None)

    # -- submitting -------------------------------------------------------------------------
    def submit_task(self, agent_id: Any, operation: str, data: dict[str, Any], priority: int = 0) -> Future[Any]:
        """Queues ``operation`` for an agent; the future's result is a ``TaskResult`` (a failed
        one, not an exception, when the operation raises or is unknown).
        ``AgentNotRegisteredError`` (a ``KeyError`` and a ``ValueError``) for an unknown agent,
        ``ManagerShutdownError`` (a ``RuntimeError`` and a ``ValueError``) after shutdown."""
        task = AgentTask(agent_id, operation, data, priority)
        if self._shutdown:
            raise ManagerShutdownError(_SHUTDOWN_MESSAGE)
        agent = self.agents.get(agent_id)
        if agent is None and agent_id not in self.agents:
            raise AgentNotRegisteredError(f"agent {agent_id!r} is not registered")
        queued = _Queued(agent_id, operation, data, priority, agent, next(self._seq), None, task)
        self._enqueue((queued,))
        assert queued.future is not None
        return queued.future

    def _enqueue(self, items: Iterable[_Queued]) -> None:
        """Queues tasks in one lock round and launches the runners they need."""
        ready, queues, running = self._ready, self._queues, self._running
        with self._lock:
            if self._shutdown:
                raise ManagerShutdownError(_SHUTDOWN_MESSAGE)
            for queued in items:
                agent_id = queued.agent_id
                fifo = queues.get(agent_id)
                if fifo is None:
                    queues[agent_id] = deque((queued,))
                    if agent_id not in running:
                        heapq.heappush(ready, (-queued.priority, queued.seq, agent_id))
                else:
                    fifo.append(queued)
                self._queued += 1
                if not self.adaptive:
                    self._grow_locked()
            runners = self._claim_runners_locked()
        if runners and not self._launch(runners):
            self._run_here()  # the pool shut down meanwhile: the queued work runs here

    def _claim_runners_locked(self) -> int:
        """Counts in the runners the work needs now; the caller launches them once it has
        released the lock (``_launch``). On an adaptive pool, one runner per agent head in the
        heap (``_runners`` counts those launched that have not taken their task yet); else up to
        the pool's size, each running tasks until none is left."""
        if self._lingering:
            self._cond.notify()  # the lingering runner takes the work first
        if self.adaptive:
            runners = len(self._ready) - self._runners
        else:
            runners = min(self._pool_size(), len(self._ready) + len(self._running)) - self._runners
        if runners <= 0:
            return 0
        self._runners += runners
        return runners

    def _launch(self, runners: int) -> bool:
        """Submits ``runners`` runner jobs claimed under the lock, with the lock released: a
        submit may wake a worker that wants the lock at once. Runner jobs have no future of
        their own (``_RUNNER_FUTURE``): nobody waits on them. False when the pool refused (it
        shut down meanwhile): the jobs not launched are counted out, and the caller must run
        the queued work (``_run_here``)."""
        core = self.executor._usable_core()
        runner = self._run_one if self.adaptive else self._runner
        for launched in range(runners):
            try:
                core.submit(_RUNNER_FUTURE, runner, (), None)
            except RuntimeError:
                with self._lock:
                    self._runners -= runners - launched
                return False
        return True

    def _run_here(self) -> None:
        """Runs the queued work in the calling thread: the pool refused new runners."""
        if self.adaptive:
            with self._lock:
                self._runners += 1
            while self._run_one():
                with self._lock:
                    self._runners += 1
        else:
            with self._lock:
                self._runners += 1
            self._runner(linger=False)

    def _pool_size(self) -> int:
        # current_workers without the property's checks: read per task, under the lock.
        if self._target_workers is not None and not self._shutdown:
            try:
                self._workers = self._target_workers()
            except RuntimeError:  # shut down meanwhile: the last size seen
                pass
        return self._workers

    def _run_one(self) -> bool:
        # An adaptive pool's runner job: one task, so that the controller measures tasks. It
        # takes the best head when it starts; finishing, it launches a runner for the agent's
        # next task. False when there was nothing to take.
        with self._lock:
            self._runners -= 1
            queued = self._take_locked()
        if queued is None:
            return False
        result = _execute(queued)
        with self._lock:
            self._finish_locked(queued, result)
            runners = self._claim_runners_locked()
        _settle(queued, result)
        if runners and not self._launch(runners):
            self._run_here()
        return True

    def _runner(self, *, linger: bool = True) -> None:
        # A sized pool's runner: takes the best idle agent's next task until none is left. One
        # lock round per task: finishing the last task (stats, the agent's next task) and taking
        # the next one. A task's future is settled after its stats are recorded, with no lock
        # held, and before this runner may linger.
        finished: tuple[_Queued, TaskResult] | None = None
        while True:
            with self._lock:
                if finished is not None:
                    self._finish_locked(*finished)
                queued = self._next_locked(after_a_task=finished is not None, may_linger=False)
            if finished is not None:
                _settle(*finished)
                finished = None
            if queued is _LINGER:
                with self._lock:
                    if linger:
                        queued = self._next_locked(after_a_task=False, may_linger=True)
                    else:  # a runner in a caller's thread returns to its caller
                        self._runners -= 1
                        queued = None
            if queued is None:
                return
            finished = (queued, _execute(queued))

    def _next_locked(self, *, after_a_task: bool, may_linger: bool) -> Any:
        """The next task; or None when this runner should end (it is counted out); or, without
        ``may_linger``, ``_LINGER`` when it is the last runner and should wait for work."""
        if after_a_task and self._runners > self._pool_size():  # the pool shrank
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

    def _take_locked(self) -> _Queued | None:
        while self._ready:
            _, _, agent_id = heapq.heappop(self._ready)
            fifo = self._queues[agent_id]
            queued = fifo.popleft()
            self._queued -= 1
            if not fifo:
                del self._queues[agent_id]
            if queued.start_locked():
                self._running[agent_id] = queued
                return queued
            if queued.latch is not None:  # cancelled through active_futures: the batch moves on
                queued.latch.count_down_locked()
            self._requeue_head_locked(agent_id)  # cancelled while queued: its successor is next
        return None

    def _requeue_head_locked(self, agent_id: Any) -> None:
        fifo = self._queues.get(agent_id)
        if fifo:
            head = fifo[0]
            heapq.heappush(self._ready, (-head.priority, head.seq, agent_id))

    def _finish_locked(self, queued: _Queued, result: TaskResult) -> None:
        agent_id = queued.agent_id
        del self._running[agent_id]
        self._requeue_head_locked(agent_id)
        stats = self._stats[agent_id]
        stats["total_tasks"] += 1
        if result.success:
            stats["successful_tasks"] += 1
        else:
            stats["failed_tasks"] += 1
            stats["last_error"] = result.error
        stats["total_time_ms"] += result.execution_time_ms
        stats["total_queue_wait_ms"] += result.queue_wait_ms
        stats["avg_time_ms"] = stats["total_time_ms"] / stats["total_tasks"]
        # The batch reads these once its latch is done; a future is settled after the lock.
        queued.result = result
        queued.state = DONE
        if queued.latch is not None:
            queued.latch.count_down_locked()

    # -- scaling ----------------------------------------------------------------------------
    def _grow_locked(self) -> None:
        if self.adaptive:
            return  # the controller sizes the pool
        busy = len(self._running) + self._queued
        if busy / self.current_workers > self.scaling_threshold and self.current_workers < self.max_workers:
            # Enough workers to bring the load under the threshold, and at least twice as many.
            self._resize_locked(
                min(self.max_workers, max(2 * self.current_workers, math.ceil(busy / self.scaling_threshold)))
            )

    def _resize_locked(self, workers: int) -> None:
        if workers == self.current_workers or self._shutdown:
            return
        logger.info("Resizing the agent pool from %d to %d workers", self.current_workers, workers)
        self._workers = workers
        self.executor._resize(workers)

    # -- batches ----------------------------------------------------------------------------
    def step_all_agents(self, observations: dict[Any, Any], timeout: float | None = None) -> dict[Any, TaskResult]:
        """Steps every registered agent that has an observation, concurrently; the results
        follow registration order. With a timeout, returns what finished in time and a failed
        ``TaskResult`` (error ``"timeout"``) for the rest, whose queued steps are cancelled."""
        timeout = optional_timeout(timeout)
        agents = self.agents.copy()  # one instant, in registration order
        latch = _Latch()
        seq = self._seq
        batch = [
            _Queued(agent_id, "step", {"observation": observations[agent_id]}, 0, agent, next(seq), latch)
            for agent_id, agent in agents.items()
            if agent_id in observations
        ]
        results = self._run_batch(batch, latch, timeout)
        return {queued.agent_id: result for queued, result in zip(batch, results, strict=True)}

    def batch_execute(self, tasks: Iterable[Any], timeout: float | None = None) -> list[TaskResult]:
        """Runs ``(agent_id, operation, data)`` tuples (or ``AgentTask``s) and returns their
        results in order; a task not done by ``timeout`` (error ``"timeout"``, and it is
        cancelled if it has not started) gives a failed ``TaskResult``. An unknown agent is an
        ``AgentNotRegisteredError`` (also the ``ValueError`` FreeAgentics raised) before any task
        is submitted; the agents are looked up at one instant, when the batch is submitted."""
        timeout = optional_timeout(timeout)
        agent_tasks = [task if isinstance(task, AgentTask) else AgentTask(*task) for task in tasks]
        if self._shutdown:
            raise ManagerShutdownError(_SHUTDOWN_MESSAGE)
        agents = self.agents.get_many(task.agent_id for task in agent_tasks)
        for task in agent_tasks:
            if task.agent_id not in agents:
                raise AgentNotRegisteredError(f"agent {task.agent_id!r} is not registered")
        latch = _Latch()
        seq = self._seq
        batch = [
            _Queued(t.agent_id, t.operation, t.data, t.priority, agents[t.agent_id], next(seq), latch, t)
            for t in agent_tasks
        ]
        return self._run_batch(batch, latch, timeout)

    def _run_batch(self, batch: list[_Queued], latch: _Latch, timeout: float | None) -> list[TaskResult]:
        latch.left = len(batch)
        if not batch:
            return []
        self._enqueue(batch)
        latch.done.wait(timeout)
        results: list[TaskResult | None] = [queued.result for queued in batch]
        if None in results:
            with self._lock:
                late = [queued for queued in batch if queued.state != DONE]
                cancelled = 0
                for queued in late:
                    if queued.state == QUEUED:
                        queued.state = CANCELLED
                        if queued.future is not None:  # made by active_futures
                            queued.future.cancel()
                        cancelled += 1
                if cancelled:
                    self._purge_cancelled_locked()
            # A running task finishes unobserved.
            results = [queued.result if queued.state == DONE else _failed(queued, "timeout") for queued in batch]
        return results  # type: ignore[return-value]  # every None replaced above

    def _purge_cancelled_locked(self) -> None:
        # Drops cancelled tasks from the queues now, rather than when a runner reaches them.
        for agent_id in list(self._queues):
            fifo = deque(q for q in self._queues[agent_id] if not q.cancelled())
            self._queued -= len(self._queues[agent_id]) - len(fifo)
            if fifo:
                self._queues[agent_id] = fifo
            else:
                del self._queues[agent_id]
        # In place: the list is the one _enqueue holds.
        self._ready[:] = [
            (-fifo[0].priority, fifo[0].seq, agent_id)
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

    def shutdown(self, wait: bool = True) -> None:  # noqa: FBT001 (Executor.shutdown(wait) is positional)
        """Refuses new tasks; queued ones still run. With ``wait``, returns when all are done.
        Then forgets the agents (as FreeAgentics did)."""
        _ = self.current_workers  # reading it remembers the adaptive pool's last size
        with self._lock:
            self._shutdown = True
            self._cond.notify_all()  # a lingering runner exits
        self.executor.shutdown(wait=wait)
        self.agents.clear()

    def __enter__(self) -> OptimizedThreadPoolManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

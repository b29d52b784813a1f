"""AsyncAgentManager: agents' operations as coroutines. Operations on different agents overlap
(each runs on the executor while the loop serves the others), one agent's operations run in
order and one at a time, and I/O (state, observations, events) overlaps compute.

FreeAgentics' AsyncAgentManager awaited each operation before taking the next, rebuilt every
agent from a config dict for each operation (losing its state) and ran ``run_until_complete`` on
fresh loops inside pool threads; none of that happens here. Its API is kept: ``start()``,
``stop()``, ``get_agent_count()``, ``max_workers``, ``stats``, ``execute_operation(agent_id,
operation_type=...)`` and its ``get_stats()`` keys; a config dict is turned into a live agent
once, at registration, by ``agent_factory``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from .. import _validate
from ..executor import AdaptiveThreadPoolExecutor, WorkStealingThreadPool
from ..manager._tasks import OPERATIONS, _perform
from ..state import AgentStateStore
from ._agent_lock import AgentLock
from ._bus import EventBus

__all__ = ["AgentOperationResult", "AsyncAgentManager"]

STEP_TOPIC = "agent.step"


@dataclass
class AgentOperationResult:
    operation_id: int
    agent_id: Any
    success: bool
    result: Any
    error: str | None
    execution_time_ms: float


class AsyncAgentManager:
    """Runs agents' operations (``step``, ``perceive``, ``update_beliefs``, ``select_action``)
    on an executor from async code. See the module docstring; ``async with`` shuts it down.

    Without ``executor`` or ``max_workers`` it runs on an ``AdaptiveThreadPoolExecutor``, which
    grows for agents that wait on I/O and stays small for GIL-bound ones; ``max_workers=N``
    gives a fixed ``WorkStealingThreadPool`` of N workers."""

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        executor: Executor | None = None,
        state_store: AgentStateStore | None = None,
        event_bus: EventBus | None = None,
        observation_source: Callable[[Any], Awaitable[Any]] | None = None,
        agent_factory: Callable[[Any, dict[str, Any]], Any] | None = None,
        backend: str | None = None,
    ) -> None:
        if max_workers is not None:
            max_workers = _validate.integer(max_workers, "max_workers", minimum=1)
        if executor is not None and max_workers is not None:
            raise ValueError("pass max_workers or executor, not both")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor: must be a concurrent.futures.Executor, not {type(executor).__name__}")
        if observation_source is not None and not callable(observation_source):
            raise TypeError(
                "observation_source: must be an async callable agent_id -> observation, "
                f"not {type(observation_source).__name__}"
            )
        if agent_factory is not None and not callable(agent_factory):
            raise TypeError(
                f"agent_factory: must be a callable (agent_id, config) -> agent, not {type(agent_factory).__name__}"
            )
        self._owns_executor = executor is None
        self._pool_args = (max_workers, backend)
        self.executor = executor or self._new_executor()
        self.agent_factory = agent_factory
        self.state_store = state_store
        self.event_bus = event_bus if event_bus is not None else EventBus()
        self.observation_source = observation_source
        self.agents: dict[Any, Any] = {}
        self._locks: dict[Any, AgentLock] = {}
        self._ids = itertools.count(1)
        self._stats: dict[str, float] = defaultdict(int)
        self._closed = False

    def _new_executor(self) -> Executor:
        max_workers, backend = self._pool_args
        if max_workers is None:  # keyword arguments only: its positional order is ThreadPoolExecutor's
            return AdaptiveThreadPoolExecutor(thread_name_prefix="AsyncAgentManager", backend=backend)
        return WorkStealingThreadPool(max_workers, "AsyncAgentManager", backend=backend)

    @property
    def max_workers(self) -> int | None:
        """The most workers the executor runs at once (FreeAgentics' attribute)."""
        size = getattr(self.executor, "max_workers", None)
        return size if isinstance(size, int) else getattr(self.executor, "_max_workers", None)

    # -- agents -----------------------------------------------------------------------------
    def register_agent(self, agent_id: Any, agent: Any) -> None:
        """Keeps the live agent: its state persists across operations. A dict (FreeAgentics'
        agent config) is handed to ``agent_factory(agent_id, config)`` once, here; without a
        factory it is a ``TypeError``."""
        if isinstance(agent, Mapping):
            if self.agent_factory is None:
                raise TypeError(
                    f"agent: got a dict for agent {agent_id!r}; this manager keeps live agents (their state "
                    "persists across operations) instead of rebuilding one from a config for every operation: "
                    "register the agent itself, or build the manager with agent_factory=lambda agent_id, config: "
                    "YourAgent(...) to make one from the config here"
                )
            agent = self.agent_factory(agent_id, dict(agent))
        self.agents[agent_id] = agent

    def get_agent_count(self) -> int:
        """How many agents are registered (FreeAgentics' method)."""
        return len(self.agents)

    def unregister_agent(self, agent_id: Any) -> None:
        self.agents.pop(agent_id, None)
        lock = self._locks.get(agent_id)
        if lock is not None and not lock.locked():
            del self._locks[agent_id]

    # -- operations -------------------------------------------------------------------------
    async def execute_operation(
        self,
        agent_id: Any,
        operation: str | None = None,
        data: dict[str, Any] | None = None,
        timeout: float | None = 10.0,
        *,
        operation_type: str | None = None,
    ) -> AgentOperationResult:
        """Runs one operation; always returns a result (failed on error, unknown agent or
        operation, or timeout). An operation that times out before it starts never runs.
        ``operation_type=`` is FreeAgentics' name for ``operation``."""
        if operation_type is not None:
            if operation is not None:
                raise TypeError("execute_operation() got both operation and operation_type (the same argument)")
            operation = operation_type
        if operation is None:
            raise TypeError("execute_operation() missing the operation (operation= or operation_type=)")
        timeout = _validate.optional_timeout(timeout)
        if self._closed:
            raise RuntimeError("the manager is shut down")
        operation_id = next(self._ids)
        self._stats["operations"] += 1
        agent = self.agents.get(agent_id)
        if agent is None:
            return self._failed(operation_id, agent_id, f"agent {agent_id!r} is not registered")
        if operation not in OPERATIONS:
            valid = ", ".join(OPERATIONS)
            return self._failed(operation_id, agent_id, f"unknown operation {operation!r}; valid operations: {valid}")
        task = asyncio.ensure_future(self._run(agent_id, agent, operation, data or {}))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:  # (an operation's own TimeoutError is its failure, not ours)
            task.cancel()
            self._stats["timeouts"] += 1
            return self._failed(operation_id, agent_id, f"operation {operation!r} timed out after {timeout} s")
        try:
            result, elapsed_ms = task.result()
        except Exception as exc:
            return self._failed(operation_id, agent_id, str(exc) or type(exc).__name__)
        self._stats["succeeded"] += 1
        self._stats["total_time_ms"] += elapsed_ms
        return AgentOperationResult(
            operation_id, agent_id, success=True, result=result, error=None, execution_time_ms=elapsed_ms
        )

    def _lock_for(self, agent_id: Any) -> AgentLock:
        # Not an asyncio.Lock: the manager may be used from successive event loops, and the
        # executor frees the agent from its own thread (see _agent_lock).
        return self._locks.setdefault(agent_id, AgentLock())

    async def _run(self, agent_id: Any, agent: Any, operation: str, data: dict[str, Any]) -> tuple[Any, float]:
        lock = self._lock_for(agent_id)
        await lock.acquire()  # FIFO: one agent's operations run in order, one at a time

        def call() -> tuple[Any, float]:
            started = time.perf_counter()
            value = _perform(agent, operation, data)
            return value, (time.perf_counter() - started) * 1000

        try:
            job = self.executor.submit(call)
        except BaseException:
            lock.release()
            raise
        # The lock is held until the executor is really done with the agent (or the job was
        # cancelled before it started), however long we wait for it, even if our loop closed.
        job.add_done_callback(lambda _: lock.release())
        try:
            return await asyncio.shield(asyncio.wrap_future(job))
        except asyncio.CancelledError:
            job.cancel()  # not started yet: it never will; running: it finishes unobserved
            raise

    def _failed(self, operation_id: int, agent_id: Any, error: str) -> AgentOperationResult:
        self._stats["failed"] += 1
        return AgentOperationResult(
            operation_id, agent_id, success=False, result=None, error=error, execution_time_ms=0.0
        )

    async def execute_batch_operations(
        self, operations: Iterable[tuple[Any, str, dict[str, Any] | None]], timeout: float | None = 10.0
    ) -> list[AgentOperationResult]:
        """Runs ``(agent_id, operation, data)`` triples concurrently; results in order."""
        _validate.optional_timeout(timeout)  # refused before any operation starts
        return list(await asyncio.gather(*(self.execute_operation(a, op, d, timeout) for a, op, d in operations)))

    async def step_all_agents(
        self, observations: dict[Any, Any] | None = None, timeout: float | None = 10.0
    ) -> dict[Any, AgentOperationResult]:
        """For every agent at once: the observation (given, or fetched from the source), the
        step on the executor, then saving its state and broadcasting the step concurrently."""
        _validate.optional_timeout(timeout)  # refused before any observation is fetched
        if observations is None:
            agent_ids = list(self.agents)
        else:
            agent_ids = [a for a in self.agents if a in observations]
        results = await asyncio.gather(*(self._step_pipeline(a, observations, timeout) for a in agent_ids))
        return dict(zip(agent_ids, results, strict=True))

    async def _step_pipeline(
        self, agent_id: Any, observations: dict[Any, Any] | None, timeout: float | None
    ) -> AgentOperationResult:
        # One agent's failure (fetching, stepping, saving, broadcasting) is its result only.
        try:
            if observations is None:
                observation = await self.fetch_observation_async(agent_id)
            else:
                observation = observations[agent_id]
        except Exception as exc:
            return self._failed(next(self._ids), agent_id, f"fetching the observation failed: {exc!r}")
        result = await self.execute_operation(agent_id, "step", {"observation": observation}, timeout)
        if result.success:
            after: list[Awaitable[Any]] = [
                self.broadcast_event_async(STEP_TOPIC, {"agent_id": agent_id, "result": result.result})
            ]
            if self.state_store is not None and hasattr(self.agents.get(agent_id), "get_state"):
                after.append(self.save_agent_state_async(agent_id))
            for outcome in await asyncio.gather(*after, return_exceptions=True):
                if isinstance(outcome, Exception) and result.success:
                    result.success, result.error = False, f"step done, but saving or broadcasting failed: {outcome!r}"
                    self._stats["succeeded"] -= 1
                    self._stats["failed"] += 1
        return result

    # -- I/O --------------------------------------------------------------------------------
    def _store(self) -> AgentStateStore:
        if self.state_store is None:
            raise RuntimeError("this manager has no state_store")
        return self.state_store

    async def save_agent_state_async(self, agent_id: Any) -> int:
        """Saves ``agent.get_state()`` to the state store (between the agent's operations);
        returns the version."""
        agent = self.agents[agent_id]
        async with self._lock_for(agent_id):
            state = agent.get_state()
        return await self._store().save_async(agent_id, state)

    async def load_agent_state_async(self, agent_id: Any) -> dict[str, Any]:
        """Loads the agent's newest state; hands it to ``agent.set_state`` if it has one
        (between the agent's operations)."""
        state = await self._store().load_async(agent_id)
        agent = self.agents.get(agent_id)
        if agent is not None and hasattr(agent, "set_state"):
            async with self._lock_for(agent_id):
                agent.set_state(state)
        return state

    async def broadcast_event_async(self, topic: str, event: Any) -> int:
        self._stats["events"] += 1
        return await self.event_bus.broadcast(topic, event)

    async def fetch_observation_async(self, agent_id: Any) -> Any:
        if self.observation_source is None:
            raise RuntimeError("this manager has no observation_source")
        self._stats["observations"] += 1
        return await self.observation_source(agent_id)

    def get_stats(self) -> dict[str, Any]:
        """Counters: ``operations``, ``succeeded``, ``failed``, ``timeouts``, ``total_time_ms``,
        ``average_time_ms``, ``agents``, ``events``, ``observations``; and FreeAgentics' keys
        ``total_operations``, ``successful_operations``, ``failed_operations``,
        ``avg_operation_time_ms``, ``total_execution_time``, ``avg_execution_time`` (ms).
        Times are those of operations that succeeded."""
        stats: dict[str, Any] = {key: 0 for key in ("operations", "succeeded", "failed", "timeouts")}
        stats["total_time_ms"] = 0.0
        stats.update(self._stats)
        succeeded = stats["succeeded"]
        stats["average_time_ms"] = stats["total_time_ms"] / succeeded if succeeded else 0.0
        stats["agents"] = len(self.agents)
        stats.update(
            total_operations=stats["operations"],
            successful_operations=succeeded,
            failed_operations=stats["failed"],
            avg_operation_time_ms=stats["average_time_ms"],
            total_execution_time=stats["total_time_ms"],
            avg_execution_time=stats["average_time_ms"],
        )
        return stats

    @property
    def stats(self) -> dict[str, Any]:
        """``get_stats()`` (FreeAgentics reads the counters as this attribute)."""
        return self.get_stats()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> AsyncAgentManager:
        """FreeAgentics' ``start()``: the manager runs from construction; after ``stop()`` it
        accepts operations again (on a new executor if it made its own)."""
        if self._closed:
            if self._owns_executor:
                self.executor = self._new_executor()
            self._closed = False
        return self

    async def shutdown(self) -> None:
        """Stops accepting operations; waits for running ones and shuts an owned executor down."""
        self._closed = True
        if self._owns_executor:
            await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)

    async def stop(self) -> None:
        """FreeAgentics' name for ``shutdown()``."""
        await self.shutdown()

    async def __aenter__(self) -> AsyncAgentManager:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

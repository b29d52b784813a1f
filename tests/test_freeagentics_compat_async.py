"""FreeAgentics' own call patterns (agents/async_agent_manager.py, agents/threading_profiler.py,
agents/threading_optimization_analysis.py) replayed against this package, on both backends.
No FreeAgentics code is used: each test repeats how that code calls the API."""

from __future__ import annotations

import asyncio
import time

import pytest

from freeagentics_rs import AsyncAgentManager, OptimizedThreadPoolManager, ThreadingProfiler, WorkStealingThreadPool


class ExplorerLike:
    """What FreeAgentics' async manager builds from a config: an agent with step/perceive/...
    and the attributes its step result reads."""

    def __init__(self, agent_id, name, grid_size=5):
        self.agent_id, self.name, self.grid_size = agent_id, name, grid_size
        self.position, self.total_steps, self.is_active = [2, 2], 0, False
        self.metrics = {"belief_entropy": 0.5}
        self.beliefs = [0.5, 0.5]

    def start(self):
        self.is_active = True

    def step(self, observation):
        self.total_steps += 1
        return "stay"

    def perceive(self, observation):
        self.last = observation

    def update_beliefs(self):
        self.metrics["belief_entropy"] *= 0.9

    def select_action(self):
        return "up"


def explorer_from_config(agent_id, config):
    agent = ExplorerLike(agent_id, config.get("name", f"Agent-{agent_id}"), config.get("grid_size", 5))
    agent.position = config.get("position", [2, 2])
    if config.get("is_active"):
        agent.start()
    return agent


# -- AsyncAgentManager ------------------------------------------------------------------------


def test_the_benchmark_lifecycle_with_one_added_argument(backend):
    # benchmark_async_multi_agent_performance(): async with, register dicts, step_all_agents in
    # rounds, then get_stats()'s keys and the per-result fields.
    async def main():
        async with AsyncAgentManager(max_workers=2, agent_factory=explorer_from_config, backend=backend) as manager:
            for i in range(5):
                manager.register_agent(f"async-agent-{i}", {"name": f"AsyncAgent-{i}", "grid_size": 5, "is_active": True})
            observations = {f"async-agent-{i}": {"position": [2, 2], "surroundings": [[0] * 3] * 3} for i in range(5)}
            rounds = [await manager.step_all_agents(observations, timeout=30.0) for _ in range(3)]
            return manager, rounds, manager.get_stats()

    manager, rounds, stats = asyncio.run(main())
    for round_results in rounds:
        assert sum(1 for r in round_results.values() if r.success) == 5
        failed = len(round_results) - 5
        assert failed == 0
    assert stats["successful_operations"] / stats["total_operations"] == 1.0
    assert stats["failed_operations"] == 0
    assert stats["avg_execution_time"] >= 0 and stats["avg_operation_time_ms"] == stats["avg_execution_time"]
    assert manager.agents["async-agent-0"].total_steps == 3  # one live agent, not one per operation
    assert manager.stats["total_operations"] == 15


def test_start_stop_execute_operation_and_counts(backend):
    async def main():
        manager = AsyncAgentManager(max_workers=4, agent_factory=explorer_from_config, backend=backend)
        await manager.start()
        manager.register_agent("a", {"name": "A"})
        by_keyword = await manager.execute_operation(agent_id="a", operation_type="select_action", data={}, timeout=5.0)
        positional = await manager.execute_operation("a", "perceive", {"observation": 1}, 5.0)
        batch = await manager.execute_batch_operations([("a", "update_beliefs", {}), ("ghost", "step", {})], timeout=5.0)
        count = manager.get_agent_count()
        await manager.stop()
        stopped = manager.executor
        await manager.start()  # FreeAgentics' manager could be started again
        again = await manager.execute_operation("a", operation_type="select_action", data={})
        await manager.stop()
        return manager, by_keyword, positional, batch, count, stopped, again

    manager, by_keyword, positional, batch, count, stopped, again = asyncio.run(main())
    assert by_keyword.success and by_keyword.result == "up"
    assert positional.success
    assert [r.success for r in batch] == [True, False]
    assert count == 1 and manager.max_workers == 4
    assert again.success and manager.executor is not stopped


def test_max_workers_and_the_adaptive_default(backend):
    manager = AsyncAgentManager(backend=backend)
    try:
        assert type(manager.executor).__name__ == "AdaptiveThreadPoolExecutor"
        assert manager.max_workers == manager.executor.max_workers
    finally:
        manager.executor.shutdown()
    fixed = AsyncAgentManager(3, backend=backend)
    try:
        assert type(fixed.executor).__name__ == "WorkStealingThreadPool" and fixed.max_workers == 3
    finally:
        fixed.executor.shutdown()


def test_a_config_dict_without_a_factory_is_a_type_error_that_says_what_to_do(backend):
    manager = AsyncAgentManager(2, backend=backend)
    try:
        with pytest.raises(TypeError, match="agent_factory="):
            manager.register_agent("a", {"name": "A", "grid_size": 5})
        assert manager.get_agent_count() == 0
    finally:
        manager.executor.shutdown()


def test_execute_operation_argument_errors(backend):
    async def main():
        async with AsyncAgentManager(2, backend=backend) as manager:
            manager.register_agent("a", ExplorerLike("a", "A"))
            with pytest.raises(TypeError, match="both operation and operation_type"):
                await manager.execute_operation("a", "step", operation_type="step")
            with pytest.raises(TypeError, match="missing the operation"):
                await manager.execute_operation("a")
            return manager.get_stats()

    assert asyncio.run(main())["total_operations"] == 0  # refused calls counted nothing


def test_constructor_argument_errors(backend):
    with pytest.raises(ValueError, match="max_workers: must be at least 1, got 0"):
        AsyncAgentManager(0, backend=backend)
    with pytest.raises(TypeError, match="max_workers: must be an int, not str"):
        AsyncAgentManager("8", backend=backend)
    with pytest.raises(TypeError, match="agent_factory: must be a callable"):
        AsyncAgentManager(2, agent_factory=3, backend=backend)

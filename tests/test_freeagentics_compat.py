"""FreeAgentics' own call patterns for its thread-pool manager and its agent dict, replayed
against OptimizedThreadPoolManager and AgentRegistry on the backend under test.

Each test reproduces how one FreeAgentics file (public repository greenisagoodcolor/FreeAgentics)
calls the manager: the constructor arguments, the methods and attributes it uses and the
exceptions it catches. No FreeAgentics code is copied; the agents are stand-ins with the same
interface as its agents (``step``, ``perceive``, ``update_beliefs``, ``select_action``,
``beliefs``)."""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AgentTask, TaskResult

# Where FreeAgentics imports the manager from, and what it names.
optimized_threadpool_manager = freeagentics_rs


class ExplorerStandIn:
    """The interface of FreeAgentics' BasicExplorerAgent as the manager drives it."""

    def __init__(self, agent_id, delay=0.0):
        self.agent_id, self.delay = agent_id, delay
        self.beliefs = {"position": [0, 0]}
        self.step_count = 0
        self.config = {"performance_mode": "fast"}

    def step(self, observation):
        if self.delay:
            time.sleep(self.delay)
        if not isinstance(observation, dict) or "position" not in observation:
            raise ValueError(f"observation without a position: {observation!r}")
        surroundings = np.asarray(observation.get("surroundings", np.zeros((3, 3))))
        if surroundings.shape != (3, 3):
            raise ValueError(f"surroundings of shape {surroundings.shape}")
        self.step_count += 1
        return f"action_{self.step_count}"

    def perceive(self, observation):
        self.beliefs["seen"] = observation

    def update_beliefs(self):
        self.beliefs["updated"] = True

    def select_action(self):
        return "stay"


@pytest.fixture
def managers(backend):
    made = []

    def make(*args, **kwargs):
        manager = optimized_threadpool_manager.OptimizedThreadPoolManager(*args, **kwargs, backend=backend)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown()


def test_the_dataclasses_take_freeagentics_fields():
    task = AgentTask("agent-1", "step", {"observation": 1}, 2)
    assert task.priority == 2 and task.timestamp is not None
    result = TaskResult(
        agent_id="agent-1",
        operation="step",
        success=True,
        result="up",
        error=None,
        execution_time_ms=1.0,
        timestamp=time.time(),
    )
    assert [f.name for f in dataclasses.fields(TaskResult)][:7] == [
        "agent_id",
        "operation",
        "success",
        "result",
        "error",
        "execution_time_ms",
        "timestamp",
    ]
    assert result.queue_wait_ms == 0.0


def test_its_manager_benchmark(managers):
    # optimized_threadpool_manager.benchmark_threadpool_manager: one manager, growing agent
    # counts, step_all_agents rounds, pool status, then every agent unregistered.
    manager = managers(initial_workers=16, max_workers=64, min_workers=4)
    for num_agents in (10, 30):
        agents = [ExplorerStandIn(f"agent-{i}", delay=0.0019) for i in range(num_agents)]
        for agent in agents:
            manager.register_agent(agent.agent_id, agent)
        observations = {f"agent-{i}": {"position": [i, 0], "data": i} for i in range(num_agents)}
        for _ in range(2):
            results = manager.step_all_agents(observations)
            assert sum(1 for r in results.values() if r.success) == num_agents
        status = manager.get_pool_status()
        assert {"current_workers", "active_tasks", "load_factor", "total_agents", "queue_size"} <= set(status)
        assert status["total_agents"] == num_agents
        for agent in agents:
            manager.unregister_agent(agent.agent_id)
    assert manager.get_pool_status()["total_agents"] == 0


def test_its_coordinator(managers):
    # enhanced_agent_coordinator.EnhancedAgentCoordinator: its default configuration gives
    # initial_workers=50 with max_workers=20; tasks go in by keyword with a priority, results
    # come back with a timeout, stats are read per agent.
    with pytest.warns(RuntimeWarning, match="using initial_workers=20, max_workers=20, min_workers=2"):
        manager = managers(initial_workers=50, max_workers=20, scaling_threshold=0.8)
    for i in range(3):
        manager.register_agent(f"coord-{i}", ExplorerStandIn(f"coord-{i}"))
    coordination_data = {"observation": {"position": [1, 1]}, "priority": 1, "timeout": 5.0}
    futures = [
        (
            agent_id,
            manager.submit_task(
                agent_id=agent_id,
                operation="step",
                data=coordination_data,
                priority=coordination_data.get("priority", 0),
            ),
        )
        for agent_id in ("coord-0", "coord-1", "coord-2")
    ]
    for agent_id, future in futures:
        result = future.result(timeout=coordination_data.get("timeout", 30))
        assert result.success and result.agent_id == agent_id
    stats = manager.get_performance_stats()
    assert stats.get("coord-0", {})["successful_tasks"] == 1 and stats.get("nobody", {}) == {}
    manager.unregister_agent("coord-2")
    manager.unregister_agent("coord-2")  # twice: no error, as in FreeAgentics
    # It catches ValueError around submissions for agents it no longer knows.
    with pytest.raises(ValueError):
        manager.submit_task(agent_id="coord-2", operation="step", data={})


@pytest.mark.parametrize("num_agents", [1, 5, 10, 30])
def test_its_threading_benchmark(managers, num_agents):
    # benchmarks/threading_vs_multiprocessing_benchmark.ThreadingBenchmark: sizes from the
    # agent count (initial_workers=1 with one agent), step_all_agents with timeout=5.0, errors
    # counted from the results, pool status and performance stats read at the end.
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        manager = managers(initial_workers=min(num_agents, 16), max_workers=min(num_agents * 2, 64))
    assert [w.category for w in warned] == ([RuntimeWarning] if num_agents == 1 else [])
    agents = {}
    for i in range(num_agents):
        agent_id = f"thread_agent_{i}"
        agents[agent_id] = ExplorerStandIn(agent_id)
        manager.register_agent(agent_id, agents[agent_id])
    for step in range(5):
        surroundings = np.array([[0, -1, 0], [0, 0, 0], [0, 0, 0]]) if step % 2 else np.zeros((3, 3))
        observations = {
            agent_id: {"position": [step % 10, 0], "surroundings": surroundings, "timestamp": step}
            for agent_id in agents
        }
        results = manager.step_all_agents(observations, timeout=5.0)
        assert sum(1 for r in results.values() if not r.success) == 0
        assert list(results) == list(agents)  # registration order, as its dict gave
    assert manager.get_pool_status()["total_agents"] == num_agents
    assert all(stats["total_tasks"] == 5 for stats in manager.get_performance_stats().values())


def test_its_concurrent_agent_errors_test(managers):
    # tests/unit/test_pymdp_error_scenarios.test_concurrent_agent_errors: observations that
    # make agents fail must come back as results with `success` and `error`.
    manager = managers(initial_workers=4)
    for i in range(3):
        manager.register_agent(f"explorer-{i}", ExplorerStandIn(f"explorer-{i}"))
    observations = {
        "explorer-0": {"position": [1, 1], "surroundings": np.array([[0, 0], [0, 0]])},
        "explorer-1": {"position": [5, 5], "surroundings": None},
        "explorer-2": {"invalid_key": "invalid_value"},
    }
    results = manager.step_all_agents(observations, timeout=2.0)
    assert list(results) == ["explorer-0", "explorer-1", "explorer-2"]
    for result in results.values():
        assert hasattr(result, "success") and hasattr(result, "error")
        assert result.success is False and result.error
    manager.shutdown()


def test_its_manager_internals_that_callers_read(managers):
    # FreeAgentics' manager keeps `agents` as a dict, `performance_stats` as a defaultdict of
    # per-agent dicts, and `active_futures`; code around it reads them directly.
    manager = managers(initial_workers=2, max_workers=4)
    manager.register_agent("a5", ExplorerStandIn("a5"))
    manager.register_agent("b6", ExplorerStandIn("b6"))
    agents = manager.agents
    assert dict(agents) == {"a5": agents["a5"], "b6": agents["b6"]}  # never {'a': '5', ...}
    assert list(agents.keys()) == ["a5", "b6"] and len(agents.values()) == 2
    assert agents.copy() == dict(agents.items()) and None not in agents
    if "a5" in agents:
        del agents["a5"]
    assert list(agents) == ["b6"]
    manager.submit_task("b6", "step", {"observation": {"position": [0, 0]}}).result(timeout=10)
    assert manager.performance_stats["b6"]["total_tasks"] == 1
    assert len(manager.active_futures) == 0  # finished futures are not kept
    assert manager.current_workers >= manager.min_workers and manager.executor is not None
    manager.shutdown()
    assert len(manager.agents) == 0  # shutdown clears the agents, as in FreeAgentics


def test_its_value_error_handling(managers):
    # FreeAgentics raised ValueError for an unknown agent (submit_task, and so batch_execute)
    # and after shutdown (its shutdown cleared the agents); `except ValueError` code keeps
    # working.
    manager = managers()
    manager.register_agent("a", ExplorerStandIn("a"))
    for call in (
        lambda: manager.submit_task("ghost", "step", {}),
        lambda: manager.batch_execute([("a", "perceive", {}), ("ghost", "step", {})]),
    ):
        with pytest.raises(ValueError):
            call()
    results = manager.batch_execute([("a", "perceive", {"observation": 1}), ("a", "select_action", {})], timeout=10)
    assert [r.result for r in results] == [None, "stay"]
    unknown = manager.submit_task("a", "fly", {}).result(timeout=10)
    assert not unknown.success and "fly" in unknown.error
    manager.shutdown()
    with pytest.raises(ValueError):
        manager.submit_task("a", "step", {})


def test_its_locking_pattern_around_the_agents_dict(managers):
    # FreeAgentics registered and unregistered under its own lock from many threads; the
    # registry needs no lock, and the count comes out right.
    manager = managers(initial_workers=2, max_workers=8)
    lock = threading.Lock()

    def churn(t):
        for i in range(200):
            manager.register_agent(f"{t}-{i}", ExplorerStandIn(f"{t}-{i}"))
            if i % 2:
                with lock:
                    manager.unregister_agent(f"{t}-{i}")

    threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert manager.get_pool_status()["total_agents"] == 400
    for t in range(4):  # each thread's agents in the order it registered them
        assert [k for k in manager.agents if k.startswith(f"{t}-")] == [f"{t}-{i}" for i in range(0, 200, 2)]

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
                manager.register_agent(
                    f"async-agent-{i}", {"name": f"AsyncAgent-{i}", "grid_size": 5, "is_active": True}
                )
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
        batch = await manager.execute_batch_operations(
            [("a", "update_beliefs", {}), ("ghost", "step", {})], timeout=5.0
        )
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


# -- ThreadingProfiler ------------------------------------------------------------------------


def test_analyze_lock_contention_replayed(backend):
    # threading_optimization_analysis.analyze_lock_contention(): agents built with the
    # profiler's locks, stepped by the manager, then lock_metrics read field by field.
    import warnings

    profiler = ThreadingProfiler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a clamped size is said once, as a warning
        manager = OptimizedThreadPoolManager(initial_workers=8, backend=backend)

    class MockAgent:
        def __init__(self, agent_id):
            self.agent_id = agent_id
            self.state = 0
            self.lock = profiler.create_instrumented_lock(f"agent_{agent_id}_lock")

        def step(self, observation):
            with self.lock:
                time.sleep(0.001)
                self.state += 1
                return f"action_{self.state}"

    for i in range(10):
        agent = MockAgent(f"agent_{i}")
        manager.register_agent(agent.agent_id, agent)
    results = manager.step_all_agents({f"agent_{i}": {"data": i} for i in range(10)})
    assert len(results) == 10
    rows = []
    for lock_id, metrics in profiler.lock_metrics.items():
        assert metrics.lock_id == lock_id and metrics.acquisitions == 1
        if metrics.contentions > 0:
            rows.append(metrics.contentions / metrics.acquisitions)
        avg_wait_ms = (metrics.total_wait_time / metrics.acquisitions) * 1000
        assert avg_wait_ms >= 0 and metrics.max_wait_time * 1000 >= 0
        assert sum(metrics.holders.values()) == 1
    assert len(profiler.lock_metrics) == 10 and rows == []  # one step per agent: nobody waited
    manager.shutdown()


def test_the_instrumented_lock_is_reentrant_binds_itself_and_has_a_lock_id():
    profiler = ThreadingProfiler()
    lock = profiler.create_instrumented_lock("registry")
    with lock as bound:
        with lock:  # FreeAgentics' lock was an RLock
            assert bound is lock
    assert lock.lock_id == "registry" and lock.profiler is profiler
    assert profiler.lock_metrics["registry"].acquisitions == 2


def test_profile_thread_and_profile_thread_pool(backend):
    # benchmark_threading_implementations(): profile a pool, read the pool metrics and the
    # per-thread metrics, then the report.
    profiler = ThreadingProfiler()
    lock = profiler.create_instrumented_lock("shared")

    def agent_work():
        with lock:
            pass
        time.sleep(0.002)
        return 1

    def failing():
        raise ValueError("boom")

    assert profiler.start_time is None and profiler.end_time is None
    with WorkStealingThreadPool(2, backend=backend) as pool:
        pool_metrics = profiler.profile_thread_pool(pool, [agent_work] * 10 + [failing])
    assert set(pool_metrics) >= {
        "total_duration",
        "tasks_submitted",
        "tasks_completed",
        "avg_submit_time",
        "throughput",
        "thread_efficiency",
    }
    assert pool_metrics["tasks_submitted"] == 11 and pool_metrics["tasks_completed"] == 10
    assert pool_metrics["throughput"] > 0 and 0 <= pool_metrics["thread_efficiency"] <= 1.5
    assert profiler.end_time > profiler.start_time
    threads = profiler.thread_metrics
    assert 1 <= len(threads) <= 2
    assert sum(m.tasks_completed for m in threads.values()) == 10
    assert sum(m.lock_acquisitions for m in threads.values()) == 10
    for thread_id, m in threads.items():
        assert m.thread_id == thread_id and m.total_time >= m.cpu_time >= 0 and m.wait_time >= 0
    with profiler.profile_thread("main") as metrics:
        time.sleep(0.01)
    assert metrics.name == "main" and metrics.tasks_completed == 1 and metrics.wait_time > 0.005


def test_gil_thread_count_memory_and_the_report():
    profiler = ThreadingProfiler()
    ratio = profiler.measure_gil_contention(0.05, 2)  # FreeAgentics' positional (duration, thread_count)
    assert ratio > 0
    assert profiler.measure_gil_contention(duration=0.05, thread_count=2) > 0
    optimal, throughputs = profiler.find_optimal_thread_count(lambda: sum(range(200)), max_threads=4)
    assert sorted(throughputs) == [1, 2, 4] and optimal in throughputs
    current = throughputs.get(8, 0)  # threading_optimization_analysis reads the default size
    assert current == 0 and throughputs[optimal] > 0
    memory = profiler.profile_memory_usage()
    assert set(memory) == {"rss_mb", "vms_mb", "threads", "open_files", "connections"}
    assert memory["rss_mb"] > 1 and memory["threads"] >= 1
    assert isinstance(profiler.identify_bottlenecks(), list)
    assert all(isinstance(r, str) for r in profiler.generate_recommendations())
    report = profiler.generate_report()
    assert report.gil_contention == profiler.gil["ratio"] and report.optimal_thread_count == optimal
    assert report.memory_metrics["rss_mb"] > 1 and report.total_duration == 0
    assert isinstance(report.bottlenecks, list) and isinstance(report.recommendations, list)
    assert isinstance(report.thread_metrics, dict) and isinstance(report.lock_metrics, dict)


def test_a_fresh_profilers_report_measures_what_it_needs():
    report = ThreadingProfiler().generate_report()  # FreeAgentics measured the GIL here too
    assert report.gil_contention > 0 and report.optimal_thread_count >= 1 and report.pool_metrics == {}


def test_profiler_argument_errors():
    profiler = ThreadingProfiler()
    with pytest.raises(ValueError, match="thread_count: must be at least 2"):
        profiler.measure_gil_contention(thread_count=1)
    with pytest.raises(TypeError, match="work: must be a callable"):
        profiler.measure_gil_contention("fast")
    with pytest.raises(ValueError, match="max_threads: must be between 1 and 1024, got 0"):
        profiler.find_optimal_thread_count(lambda: None, max_threads=0)
    with pytest.raises(TypeError, match="both"):
        profiler.find_optimal_thread_count(lambda: None, (1, 2), max_threads=4)
    with pytest.raises(ValueError, match="workload_args: must have one tuple per task"):
        profiler.profile_thread_pool(__import__("concurrent.futures").futures.ThreadPoolExecutor(1), [print], [(), ()])
    assert profiler.start_time is None and profiler.gil is None

"""OptimizedThreadPoolManager (Rust and Python backends, default constructor: adaptive sizing)
against FreeAgentics' design, in the same run: 100 agents whose step is a 100x100 matmul plus
sleep(1 ms) (the report's agent work), timed per `step_all_agents` round after warm-up rounds.

Two baselines: FreeAgentics' design as it ships (8 workers), and the same design on as many
workers as the manager ended with (measured after it, in the same run), so that the table shows
how much of the gain is the pool size the manager found and how much is its design. Each row's
JSON also has the process CPU time per task (``cpu_us_per_task``, all threads, warm-up and timed
rounds): what is asked of the shared cores, which their load changes far less than wall time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import freeagentics_rs
import numpy as np
import pytest

AGENTS = 100
KINDS = ["FreeAgentics design", "python", "rust", "FreeAgentics design, same size"]
_manager_workers: dict[str, int] = {}  # backend -> workers the manager ended with, this run


class ReportAgent:
    def __init__(self) -> None:
        self.beliefs = np.random.default_rng(0).random((100, 100))

    def step(self, observation):
        self.beliefs @ self.beliefs
        time.sleep(0.001)
        return observation


class FreeAgenticsDesign:
    """The baseline: FreeAgentics' manager reduced to what a round uses, a ThreadPoolExecutor(8)
    and a dict of agents behind one lock."""

    def __init__(self, workers: int = 8) -> None:
        self.executor = ThreadPoolExecutor(workers)
        self.agents: dict = {}
        self._lock = threading.Lock()

    def register_agent(self, agent_id, agent) -> None:
        with self._lock:
            self.agents[agent_id] = agent

    def step_all_agents(self, observations):
        with self._lock:
            agents = dict(self.agents)
        futures = {
            a: self.executor.submit(agent.step, observations[a]) for a, agent in agents.items() if a in observations
        }
        return {a: f.result() for a, f in futures.items()}

    def shutdown(self) -> None:
        self.executor.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_manager(benchmark, kind):
    if kind == "rust" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    benchmark.group = "manager: step_all_agents, 100 agents (100x100 matmul + sleep(1 ms))"
    benchmark.extra_info["family"] = "manager"
    if kind == "FreeAgentics design":
        manager = FreeAgenticsDesign()
    elif kind == "FreeAgentics design, same size":
        if not _manager_workers:
            pytest.skip("no manager ran before it")
        workers = _manager_workers.get("rust", _manager_workers.get("python"))
        manager = FreeAgenticsDesign(workers)
        benchmark.extra_info["workers"] = workers
    else:
        manager = freeagentics_rs.OptimizedThreadPoolManager(backend=kind)
    try:
        for i in range(AGENTS):
            manager.register_agent(f"agent-{i}", ReportAgent())
        observations = {f"agent-{i}": i for i in range(AGENTS)}
        # Warm-up rounds also let the adaptive controller classify the workload.
        cpu = time.process_time()
        benchmark.pedantic(manager.step_all_agents, args=(observations,), rounds=50, iterations=1, warmup_rounds=10)
        benchmark.extra_info["cpu_us_per_task"] = (time.process_time() - cpu) * 1e6 / (60 * AGENTS)
        if hasattr(manager, "get_pool_status"):
            workers = manager.get_pool_status()["current_workers"]
            benchmark.extra_info["workers"] = _manager_workers[kind] = workers
            benchmark.extra_info["resize_events"] = (
                [tuple(e) for e in manager.executor.resize_events()] if manager.adaptive else []
            )
    finally:
        manager.shutdown()

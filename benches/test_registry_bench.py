"""AgentRegistry (Rust and Python cores) against one dict behind one lock, in the same run:
1, 4, 16 and 32 threads doing 90% `get` / 10% `update` on 10 000 agents, 200 000 operations in
all per round (so a round's time is the inverse of the aggregate throughput)."""

from __future__ import annotations

import random
import threading

import pytest

import freeagentics_rs

AGENTS = 10_000
OPERATIONS = 200_000
KINDS = ["dict + lock", "python", "rust"]


class LockedDict:
    """The baseline: FreeAgentics' design, one dict guarded by one lock."""

    def __init__(self) -> None:
        self._agents: dict = {}
        self._lock = threading.Lock()

    def register(self, agent_id, agent) -> None:
        with self._lock:
            self._agents[agent_id] = agent

    def get(self, agent_id, default=None):
        with self._lock:
            return self._agents.get(agent_id, default)

    def update(self, agent_id, agent) -> None:
        with self._lock:
            self._agents[agent_id] = agent


def make_registry(kind: str):
    if kind == "dict + lock":
        return LockedDict()
    return freeagentics_rs.AgentRegistry(backend=kind)


def plans(threads: int) -> list[list[tuple[str, bool]]]:
    rng = random.Random(threads)
    per_thread = OPERATIONS // threads
    return [
        [(f"agent-{rng.randrange(AGENTS)}", rng.random() < 0.1) for _ in range(per_thread)]
        for _ in range(threads)
    ]


def run(registry, thread_plans) -> None:
    get, update = registry.get, registry.update

    def worker(plan):
        for agent_id, is_update in plan:
            if is_update:
                update(agent_id, agent_id)
            else:
                get(agent_id)

    workers = [threading.Thread(target=worker, args=(plan,)) for plan in thread_plans]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("threads", [1, 4, 16, 32])
def test_registry(benchmark, threads, kind):
    if kind == "rust" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    benchmark.group = f"registry: 90% get / 10% update, 10k agents, {threads} threads"
    benchmark.extra_info["family"] = "registry"
    registry = make_registry(kind)
    for i in range(AGENTS):
        registry.register(f"agent-{i}", i)
    thread_plans = plans(threads)
    benchmark.pedantic(run, args=(registry, thread_plans), rounds=5, iterations=1, warmup_rounds=1)

"""AgentRegistry (Rust and Python cores) against one dict behind one lock, in the same run:
1, 4, 16 and 32 threads doing 90% `get` / 10% `update` on 10 000 agents, 200 000 operations in
all per round (so a round's time is the inverse of the aggregate throughput)."""

from __future__ import annotations

import freeagentics_rs
import pytest
from freeagentics_rs import workloads

AGENTS = 10_000
OPERATIONS = 200_000
KINDS = ["dict + lock", "python", "rust"]


def make_registry(kind: str):
    if kind == "dict + lock":
        return workloads.LockedDict()
    return freeagentics_rs.AgentRegistry(backend=kind)


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
    thread_plans = workloads.registry_plans(threads, OPERATIONS, AGENTS)
    benchmark.pedantic(workloads.registry_mix, args=(registry, thread_plans), rounds=5, iterations=1, warmup_rounds=1)

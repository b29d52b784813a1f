"""AgentRegistry (Rust and Python cores) against two dicts, in the same run: 1 to 32 threads doing
90% `get` / 10% `update` on 10 000 agents, 200 000 operations in all per round (so a round's time
is the inverse of the aggregate throughput).

The baselines are one dict behind one lock (FreeAgentics' registry design) and a plain dict with
no lock, whose single gets and sets are atomic under the GIL. The plain dict is the fastest here
at every thread count: what the registry adds is consistent snapshots across shards,
compare-and-set, a stable shard of each id, and correctness on free-threaded Python, where a
plain dict shared between threads has no GIL to make it safe."""

from __future__ import annotations

import freeagentics_rs
import pytest
from freeagentics_rs import workloads

AGENTS = 10_000
OPERATIONS = 200_000
KINDS = ["dict + lock", "dict, no lock", "python", "rust"]


class UnlockedDict(dict):
    """A plain dict with the registry calls the workload makes; no lock (the GIL makes each
    single get or set atomic)."""

    def register(self, agent_id, agent):
        self[agent_id] = agent

    update = dict.__setitem__  # update(agent_id, agent), at the speed of the C method


def make_registry(kind: str):
    if kind == "dict + lock":
        return workloads.LockedDict()
    if kind == "dict, no lock":
        return UnlockedDict()
    return freeagentics_rs.AgentRegistry(backend=kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("threads", [1, 2, 4, 8, 16, 32])
def test_registry(benchmark, threads, kind):
    if kind == "rust" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    benchmark.group = f"registry: 90% get / 10% update, 10k agents, {threads} threads"
    benchmark.extra_info.update(family="registry", operations=OPERATIONS)
    registry = make_registry(kind)
    for i in range(AGENTS):
        registry.register(f"agent-{i}", i)
    thread_plans = workloads.registry_plans(threads, OPERATIONS, AGENTS)
    benchmark.pedantic(workloads.registry_mix, args=(registry, thread_plans), rounds=9, iterations=1, warmup_rounds=1)

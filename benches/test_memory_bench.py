"""SharedMemoryPool against allocating and against FreeAgentics' queue-based pool, in one run:
1000 acquire+release cycles of a 100x100 float32 buffer per round. And memory per agent
(`freeagentics_rs.cli._memory`, also `benches/memory_per_agent.py`), recorded as extra info for `table.py`."""

from __future__ import annotations

import queue

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.cli import _memory as memory_per_agent

CYCLES = 1000
SHAPE = (100, 100)
KINDS = [
    "np.zeros",
    "queue.Queue pool (FreeAgentics' design, no zero-fill)",
    "SharedMemoryPool (python)",
    "SharedMemoryPool (rust)",
    "SharedMemoryPool (rust), acquire + drop",
]


def _cycles(kind: str):  # noqa: C901 (one timed closure per kind, side by side)
    if kind == "np.zeros":

        def run():
            for _ in range(CYCLES):
                np.zeros(SHAPE, np.float32)

        return run, None
    if kind.startswith("queue.Queue"):
        buffers: queue.Queue = queue.Queue()
        for _ in range(16):
            buffers.put(np.zeros(SHAPE, np.float32))

        def run():
            for _ in range(CYCLES):
                buffers.put(buffers.get_nowait())

        return run, None
    backend = "python" if "python" in kind else "rust"
    if backend == "rust" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    pool = freeagentics_rs.SharedMemoryPool(SHAPE, np.float32, 16, backend=backend)
    acquire, release = pool.acquire, pool.release
    if kind.endswith("drop"):

        def run():
            for _ in range(CYCLES):
                acquire()

    else:

        def run():
            for _ in range(CYCLES):
                release(acquire())

    return run, pool


@pytest.mark.parametrize("kind", KINDS)
def test_acquire_release(benchmark, kind):
    benchmark.group = f"buffer: {CYCLES} x acquire+release of 100x100 float32"
    benchmark.extra_info["family"] = "memory"
    run, pool = _cycles(kind)
    run()  # warm: every slot used once, so each round zero-fills reused slots
    benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=2)
    if pool is not None:
        assert pool.stats()["in_use"] == 0
        pool.close()


def test_memory_per_agent(benchmark):
    benchmark.group = "memory per agent: 1000 explorer agents (grid 10)"
    benchmark.extra_info["family"] = "memory"
    variants = [v for v in memory_per_agent.VARIANTS if v != "rust" or freeagentics_rs.BACKEND == "rust"]
    results = benchmark.pedantic(lambda: memory_per_agent.run(1000, 5, variants), rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_agent"] = {memory_per_agent.VARIANTS[v]: r for v, r in results.items()}

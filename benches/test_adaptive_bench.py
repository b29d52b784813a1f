"""AdaptiveThreadPoolExecutor (both cores) against ThreadPoolExecutor at fixed sizes, in the same
run. Every round starts from a new executor that has not seen the workload (built outside the
timing), so the adaptive pool's measuring and resizing are part of what is timed. `make bench`
prints the table, with the resize history of one adaptive round per workload."""

from __future__ import annotations

import concurrent.futures as cf

import freeagentics_rs
import pytest
from freeagentics_rs import workloads

FIXED_SIZES = [2, 8, 16, 32, 64]
EXECUTORS = [f"ThreadPoolExecutor({n})" for n in FIXED_SIZES] + ["adaptive (python)", "adaptive (rust)"]

# workload -> (run, rounds)
WORKLOADS = {
    "I/O: 2000 x sleep(10 ms)": (workloads.sleeps, 3),
    "CPU: 200 pure-Python tasks (2 ms)": (workloads.python_tasks, 5),
    "mixed: 1000 x (50x50 matmul + sleep(2 ms))": (workloads.matmul_sleep_tasks, 3),
    "CPU then I/O: 200 pure-Python, then 2000 x sleep(10 ms)": (workloads.python_then_sleeps, 3),
}


def make(executor: str) -> cf.Executor:
    if executor.startswith("ThreadPoolExecutor"):
        return cf.ThreadPoolExecutor(int(executor.split("(")[1].rstrip(")")))
    backend = executor.split("(")[1].rstrip(")")
    return freeagentics_rs.AdaptiveThreadPoolExecutor(backend=backend)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_adaptive(benchmark, workload, executor):
    if executor == "adaptive (rust)" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    run, rounds = WORKLOADS[workload]
    benchmark.group = workload
    benchmark.extra_info["family"] = "adaptive"
    pools: list[cf.Executor] = []

    def setup():
        pools.append(make(executor))
        return (pools[-1],), {}

    try:
        benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
        last = pools[-1]
        if isinstance(last, freeagentics_rs.AdaptiveThreadPoolExecutor):
            benchmark.extra_info["resize_events"] = [
                [round(e.time, 3), e.from_workers, e.to_workers, e.workload, round(e.cpu_share, 3), e.reason]
                for e in last.resize_events()
            ]
            benchmark.extra_info["final_workload"] = last.workload
    finally:
        for pool in pools:
            pool.shutdown(wait=True)

"""WorkStealingThreadPool (Rust and Python cores) against ThreadPoolExecutor with the same worker
count, in the same run. `make bench` prints these as a table of medians and ratios."""

from __future__ import annotations

import pytest

from freeagentics_rs import workloads

from conftest import make_executor

# (workload, workers, rounds, kwargs per executor kind)
CASES = {
    "submit 20k no-op, 2 workers": (workloads.submit_all_wait_all, 2, 7, {}),
    "map 200k no-op, 2 workers": (workloads.map_all, 2, 5, {"chunksize": 2000}),
    "2000 x sleep(10 ms), 32 workers": (workloads.sleeps, 32, 5, {}),
    "imbalanced nested, 4 workers": (workloads.imbalanced, 4, 7, {}),
    "fan-out tree 1555 nodes, 4 workers": (workloads.fan_out, 4, 7, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_executor(benchmark, kind, case):
    run, workers, rounds, kwargs = CASES[case]
    benchmark.group = case
    executor = make_executor(kind, workers)
    try:
        run(executor, **kwargs)  # warm-up: threads started, caches filled
        stats_before = executor.stats() if hasattr(executor, "stats") else None
        benchmark.pedantic(run, args=(executor,), kwargs=kwargs, rounds=rounds, iterations=1)
        if stats_before is not None:
            stolen = executor.stats()["stolen"] - stats_before["stolen"]
            benchmark.extra_info["stolen_per_round"] = stolen / rounds
    finally:
        executor.shutdown(wait=True)

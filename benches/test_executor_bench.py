"""WorkStealingThreadPool (Rust and Python cores) against ThreadPoolExecutor with the same worker
count, in the same run. `make bench` prints these as a table of medians and ratios."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import statistics
import time

import freeagentics_rs
import pytest
from conftest import make_executor
from freeagentics_rs import workloads

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


def _per_task(run, n: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n


def _per_task_without_gc(run, n: int) -> float:
    gc.disable()
    try:
        return _per_task(run, n)
    finally:
        gc.enable()


def _future_floor(n: int, make=cf.Future) -> None:
    """What any executor must pay per task: a Future made, started, settled and waited for, on
    one thread (the Rust pool's own lighter future with its native condition as ``make``)."""
    futures = [make() for _ in range(n)]
    for future in futures:
        future.set_running_or_notify_cancel()
        future.set_result(None)
    cf.wait(futures)


def test_dispatch_cost_interleaved(benchmark):
    """Submit+wait of 20k no-op tasks on 2 workers, and map of 200k: ThreadPoolExecutor and the
    Rust pool measured alternately, 7 runs each, medians; the Future lifecycle floor measured in
    the same runs, and the Rust pool once more with the cyclic GC off (its share of the cost).
    Targets: submit >= 6x ThreadPoolExecutor, map >= 100x."""
    if freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    n_submit, n_map, runs = 20_000, 200_000, 7
    stdlib = cf.ThreadPoolExecutor(2)
    pool = freeagentics_rs.WorkStealingThreadPool(2, backend="rust")
    from freeagentics_rs._native import FutureCondition
    from freeagentics_rs.executor._futures import _NativePoolFuture

    def pool_future():
        return _NativePoolFuture(None, FutureCondition())

    samples: dict[str, list[float]] = {
        k: [] for k in ("tpe", "rust", "rust_no_gc", "floor", "pool_future_floor", "tpe_map", "rust_map")
    }
    try:
        for executor in (stdlib, pool):  # warm-up: threads started
            workloads.submit_all_wait_all(executor, 2000)
        for _ in range(runs):
            samples["tpe"].append(_per_task(lambda: workloads.submit_all_wait_all(stdlib, n_submit), n_submit))
            samples["rust"].append(_per_task(lambda: workloads.submit_all_wait_all(pool, n_submit), n_submit))
            samples["floor"].append(_per_task(lambda: _future_floor(n_submit), n_submit))
            samples["rust_no_gc"].append(
                _per_task_without_gc(lambda: workloads.submit_all_wait_all(pool, n_submit), n_submit)
            )
            samples["pool_future_floor"].append(_per_task(lambda: _future_floor(n_submit, pool_future), n_submit))
            samples["tpe_map"].append(_per_task(lambda: workloads.map_all(stdlib, n_map // 10), n_map // 10))
            samples["rust_map"].append(_per_task(lambda: workloads.map_all(pool, n_map, chunksize=2000), n_map))
    finally:
        stdlib.shutdown()
        pool.shutdown()
    med = {k: statistics.median(v) for k, v in samples.items()}
    benchmark.extra_info.update(
        {f"{k}_us": round(v * 1e6, 3) for k, v in med.items()}
        | {
            "submit_ratio": round(med["tpe"] / med["rust"], 2),
            "map_ratio": round(med["tpe_map"] / med["rust_map"], 1),
            "rust_above_pool_future_floor_us": round((med["rust"] - med["pool_future_floor"]) * 1e6, 3),
        }
    )
    print("\n" + "  ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)

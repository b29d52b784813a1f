"""The report's scaling table, measured: `threads` workers each given 10 tasks of its agent work
(a 100x100 matmul, then `sleep(1 ms)`), at 1, 4, 8, 16 and 32 threads, for ThreadPoolExecutor
and both cores of WorkStealingThreadPool, in the same run. The report's "Current" column used
this task on FreeAgentics' pool; its "Optimized" column was never measured."""

from __future__ import annotations

import pytest
from conftest import make_executor
from freeagentics_rs import workloads


@pytest.mark.parametrize("threads", [1, 4, 8, 16, 32])
def test_scaling(benchmark, kind, threads):
    benchmark.group = f"scaling: {threads} threads x 10 tasks of (100x100 matmul + sleep(1 ms))"
    benchmark.extra_info.update(family="scaling", threads=threads, tasks=threads * 10)
    executor = make_executor(kind, threads)
    try:
        kwargs = {"n": threads * 10, "dim": 100, "seconds": 0.001}
        workloads.matmul_sleep_tasks(executor, **kwargs)  # warm-up: threads started
        benchmark.pedantic(workloads.matmul_sleep_tasks, args=(executor,), kwargs=kwargs, rounds=9, iterations=1)
    finally:
        executor.shutdown(wait=True)

"""Benchmark fixtures: one executor per (workload, kind), built and warmed outside the timing."""

from __future__ import annotations

import os

# Rule 9 of docs/design.md, also when pytest is run directly: BLAS on one thread (before numpy loads).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import concurrent.futures as cf  # noqa: E402 (after the BLAS settings above)

import freeagentics_rs  # noqa: E402 (loads numpy, which reads the BLAS settings)
import pytest  # noqa: E402 (after the BLAS settings above)

KINDS = ["ThreadPoolExecutor", "python", "rust"]


def make_executor(kind: str, workers: int) -> cf.Executor:
    if kind == "ThreadPoolExecutor":
        return cf.ThreadPoolExecutor(workers)
    return freeagentics_rs.WorkStealingThreadPool(workers, backend=kind)


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    if request.param == "rust" and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    return request.param

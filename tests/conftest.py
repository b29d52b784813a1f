"""Every test runs on the backend that FREEAGENTICS_RS_BACKEND selects: `make test` runs the
suite once with `rust` and once with `python`, so each test covers both backends."""

from __future__ import annotations

import os

# Rule 9 of DESIGN.md, also when pytest is run directly: BLAS on one thread per worker (and so
# a task's thread CPU time includes its BLAS work). Set before anything imports numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest

import freeagentics_rs


@pytest.fixture
def backend() -> str:
    return freeagentics_rs.BACKEND


def _factory(cls, backend):
    """Builds executors of `cls` on the backend under test; shuts each one down after the test."""
    pools = []

    def make(*args, **kwargs):
        kwargs.setdefault("backend", backend)
        pool = cls(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool_factory(backend):
    yield from _factory(freeagentics_rs.WorkStealingThreadPool, backend)


@pytest.fixture
def adaptive_factory(backend):
    yield from _factory(freeagentics_rs.AdaptiveThreadPoolExecutor, backend)

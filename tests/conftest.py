"""Every test runs on the backend that FREEAGENTICS_RS_BACKEND selects: `make test` runs the
suite once with `rust` and once with `python`, so each test covers both backends."""

from __future__ import annotations

import pytest

import freeagentics_rs


@pytest.fixture
def backend() -> str:
    return freeagentics_rs.BACKEND


@pytest.fixture
def pool_factory(backend):
    """Builds pools on the backend under test and shuts every one down after the test."""
    pools = []

    def make(*args, **kwargs):
        kwargs.setdefault("backend", backend)
        pool = freeagentics_rs.WorkStealingThreadPool(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)

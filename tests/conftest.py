"""Every test runs on the backend that FREEAGENTICS_RS_BACKEND selects: `make test` runs the
suite once with `rust` and once with `python`, so each test covers both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Rule 9 of docs/design.md, also when pytest is run directly: BLAS on one thread per worker (and so
# a task's thread CPU time includes its BLAS work). Set before anything imports numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import freeagentics_rs  # noqa: E402 (after the BLAS setting: it imports numpy)
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property-based tests: a small profile keeps `make test` fast; `make stress` selects the large
# one (HYPOTHESIS_PROFILE=stress). No deadline: this machine is shared and its timings are noisy.
settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("stress", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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


@pytest.fixture
def run_isolated(backend):
    """Runs `code` in a fresh interpreter on the backend under test, for cases that could crash
    or hang the process: returns the CompletedProcess (a crash is a negative returncode, a hang
    a `subprocess.TimeoutExpired`)."""

    def run(code: str, timeout: float = 60, **kwargs):
        env = dict(os.environ, FREEAGENTICS_RS_BACKEND=backend)
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            **kwargs,
        )

    return run

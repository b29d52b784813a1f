"""What every CLI report starts with: the machine, and BLAS pinned to one thread."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from .. import BACKEND, __version__, available_cpus

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_environment() -> None:
    """One BLAS thread for this process's future imports and for every child process."""
    for variable in BLAS_VARIABLES:
        os.environ[variable] = "1"


@contextlib.contextmanager
def blas_pinned() -> Iterator[bool]:
    """BLAS on one thread while the block runs (pool workers run numpy in parallel themselves);
    yields whether it could be pinned (``threadpoolctl`` does it for an already loaded BLAS)."""
    pin_blas_environment()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(1):
        yield True


def machine_info() -> dict[str, Any]:
    import numpy

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cpus": available_cpus(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "freeagentics_rs": __version__,
        "backend": BACKEND,
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cpus']} CPUs; Python {info['python']}, numpy {info['numpy']}, "
        f"freeagentics_rs {info['freeagentics_rs']} (default backend: {info['backend']})"
    )


def timed_runs(run: Callable[[], Any], runs: int, warmups: int = 1) -> dict[str, Any]:
    """Median, min and max seconds of ``runs`` calls after ``warmups`` untimed ones."""
    for _ in range(warmups):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs}


def allocated(build: Callable[[], Any]) -> tuple[Any, int]:
    """``build()``'s result and the bytes it left allocated (Python objects and numpy data, by
    tracemalloc; exact where resident-set sizes are blurred by reused pages)."""
    import tracemalloc

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    try:
        result = build()
        return result, max(0, tracemalloc.get_traced_memory()[0] - before)
    finally:
        if not tracing:
            tracemalloc.stop()

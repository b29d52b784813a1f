"""``make demo``: a short, honest comparison of WorkStealingThreadPool (Rust and Python cores)
against ``concurrent.futures.ThreadPoolExecutor`` on this machine, printed as a table.

Every number is measured now, in this run: the median of a few repeats after a warm-up, with the
same worker count for every executor. ``python -m freeagentics_rs.demo --help`` for options.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import platform
import sys
from typing import Callable

from . import BACKEND, WorkStealingThreadPool, __version__, available_cpus, workloads

# (label, workload, workers, kwargs, unit count for a per-unit figure, unit name)
CASES: list[tuple[str, Callable[..., None], int, dict, int, str]] = [
    ("submit 5000 no-op tasks", workloads.submit_all_wait_all, 2, {"n": 5000}, 5000, "task"),
    ("map 50000 no-op calls", workloads.map_all, 2, {"n": 50_000, "chunksize": 1000}, 50_000, "call"),
    ("500 x sleep(10 ms), 32 workers", workloads.sleeps, 32, {"n": 500}, 500, "task"),
    ("nested fan-out, 1555 tasks", workloads.fan_out, 4, {}, 1555, "task"),
]


def _executors(workers: int) -> list[tuple[str, Callable[[], cf.Executor]]]:
    kinds: list[tuple[str, Callable[[], cf.Executor]]] = [
        ("ThreadPoolExecutor", lambda: cf.ThreadPoolExecutor(workers)),
        ("python", lambda: WorkStealingThreadPool(workers, backend="python")),
    ]
    if BACKEND == "rust":
        kinds.append(("rust", lambda: WorkStealingThreadPool(workers, backend="rust")))
    return kinds


def _per_unit(seconds: float, units: int) -> str:
    micros = seconds / units * 1e6
    return f"{micros:.2f} µs" if micros < 100 else f"{micros / 1000:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freeagentics_rs.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per cell (median reported; default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    print(f"freeagentics_rs {__version__} (default backend: {BACKEND}) on {platform.machine()}, "
          f"{available_cpus()} CPUs usable, Python {platform.python_version()}")
    if BACKEND != "rust":
        print("The Rust extension is not built here: showing the Python core only (`make build`).")
    print(f"Median of {args.repeat} runs after one warm-up; same worker count for every executor.\n")

    header = f"{'workload':34} {'executor':20} {'median':>10} {'per unit':>12} {'vs ThreadPoolExecutor':>22}"
    print(header)
    print("-" * len(header))
    for label, run, workers, kwargs, units, unit in CASES:
        baseline = None
        for kind, make in _executors(workers):
            with make() as executor:
                run(executor, **kwargs)
                median, _, _ = workloads.median_time(lambda: run(executor, **kwargs), args.repeat)
            baseline = baseline or median
            print(f"{label:34} {kind:20} {median * 1e3:8.1f} ms {_per_unit(median, units) + '/' + unit:>12} "
                  f"{baseline / median:21.2f}x")
            label = ""
        print()
    print("Full benchmarks: `make bench` (pytest-benchmark, more rounds, steal counts).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``freeagentics-rs profile``: a ThreadingProfiler report for one workload."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import workloads
from ..executor import WorkStealingThreadPool
from ..profiler import ThreadingProfiler
from ._bench import _at_least
from ._machine import blas_pinned, machine_info, machine_line

WORKLOADS = ("io", "cpu", "mixed", "agents")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="mixed",
        help="io: sleep(5 ms); cpu: pure Python; mixed: 50x50 matmul + sleep(2 ms); "
        "agents: per-agent explorer steps (default mixed)",
    )
    parser.add_argument(
        "--threads",
        type=_at_least(2),
        default=4,
        help="threads for the GIL probe and the executors (at least 2; default 4)",
    )
    parser.add_argument("--tasks", type=_at_least(1), default=200, help="tasks per executor profile (default 200)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def _work(name: str) -> Callable[[], Any]:
    if name == "io":
        return lambda: time.sleep(0.005)
    if name == "cpu":
        return lambda: workloads.python_work(20_000)
    if name == "mixed":
        a = np.random.default_rng(0).random((50, 50))

        def mixed() -> None:
            a @ a
            time.sleep(0.002)

        return mixed
    from ..agents import AgentPopulation, grid_world_model

    population = AgentPopulation(grid_world_model(10, backend="python"), 64, seed=0, backend="python")
    agents = [population.agent(i) for i in range(64)]
    counter = iter(range(10**12))
    return lambda: agents[next(counter) % 64].step(0)


def run(args: argparse.Namespace) -> int:
    info = machine_info()
    print(f"Machine: {machine_line(info)}\nWorkload: {args.workload}, {args.threads} threads.\n")
    work = _work(args.workload)
    profiler = ThreadingProfiler()
    lock = profiler.create_instrumented_lock("shared state (FreeAgentics' registry lock)")
    state: dict[int, int] = {}

    def task(i: int) -> None:
        work()
        with lock:  # the bookkeeping FreeAgentics did under one lock after every step
            state[i % 64] = state.get(i % 64, 0) + 1

    interrupted = False
    try:
        with blas_pinned():
            profiler.measure_gil_contention(work, threads=args.threads)
            for executor in (cf.ThreadPoolExecutor(args.threads), WorkStealingThreadPool(args.threads)):
                with executor:
                    cf.wait([executor.submit(work) for _ in range(args.threads)])  # warm
                    profiler.profile_executor(executor, task, range(args.tasks))
            candidates = (1, 2, 4, 8, 16, 32)
            profiler.find_optimal_thread_count(work, candidates, tasks=max(64, 2 * max(candidates)))
    except KeyboardInterrupt:
        interrupted = True
    report = profiler.report()
    print(report.to_markdown())
    if interrupted:
        print("\nInterrupted: the report holds what was measured before.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "command": "profile",
                    "machine": info,
                    "workload": args.workload,
                    "threads": args.threads,
                    **report.to_dict(),
                },
                f,
                indent=2,
            )
    return 130 if interrupted else 0

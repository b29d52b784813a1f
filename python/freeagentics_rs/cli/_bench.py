"""``freeagentics-rs bench``: the seed report's benchmark table, measured. Each row runs the same
workload on FreeAgentics' design (or the stdlib), on the Python fallback and on the Rust core,
and reports the median and min-max of several timed runs after a warm-up, BLAS on one thread."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import _backend, workloads
from ..agents import AgentPopulation, GridWorld, grid_world_model
from ..executor import AdaptiveThreadPoolExecutor, WorkStealingThreadPool
from ..registry import AgentRegistry
from . import _tmaze_learn_demo
from ._machine import blas_pinned, machine_info, timed_runs
from ._pymdp import pymdp_agents

KINDS = ("baseline", "python", "rust")


class Measure(Protocol):
    def __call__(self, kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
        """Timing of ``runs`` runs of ``kind`` ("baseline", "python" or "rust")."""
        ...


@dataclass
class Row:
    key: str
    title: str
    unit: str  # what the median measures
    baseline: str  # what the baseline is
    measure: Measure


def _executor_row(
    make_baseline: Callable[[], cf.Executor],
    make: Callable[[str], cf.Executor],
    work: Callable[[cf.Executor], None],
    *,
    fresh: bool,
) -> Measure:
    """Times ``work`` on an executor of each kind; ``fresh``: a new executor per run (the
    adaptive executor then starts from scratch each time), else one warmed executor."""

    def measure(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
        new = make_baseline if kind == "baseline" else (lambda: make(kind))
        if not fresh:
            with new() as executor:
                return timed_runs(lambda: work(executor), runs)
        times = []
        for _ in range(runs + 1):
            with new() as executor:
                start = time.perf_counter()
                work(executor)
                times.append(time.perf_counter() - start)
        times = times[1:]  # the first is the warm-up
        return {"median": float(np.median(times)), "min": min(times), "max": max(times), "runs": runs}

    return measure


def _registry_row(threads: int) -> Row:
    """The same operations (90% get, 10% update) shared by ``threads`` threads: the rows side by
    side show where the sharded registry gains on a locked dict and where it does not. The
    4-thread row keeps the key ``registry`` of the tables measured before the others existed."""

    def measure(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
        registry = workloads.LockedDict() if kind == "baseline" else AgentRegistry(backend=kind)
        agents = 10_000
        for i in range(agents):
            registry.register(f"agent-{i}", i)
        plans = workloads.registry_plans(threads, 40_000 if quick else 200_000, agents)
        return timed_runs(lambda: workloads.registry_mix(registry, plans), runs)

    return Row(
        "registry" if threads == 4 else f"registry-{threads}",
        f"registry: {threads} thread{'s' * (threads > 1)}, 90% get / 10% update on 10k agents",
        "s per run",
        "dict + one lock",
        measure,
    )


def _memory(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
    from ._memory import run

    variant = "naive" if kind == "baseline" else kind
    r = run(1000, runs, [variant])[variant]
    return {**r, "runs": runs, "unit_scale": 1.0}


def _agents(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
    n = 1000
    model = grid_world_model(10)
    obs = GridWorld(10, n, seed=0).observe()
    if kind == "baseline":
        from ._strategies import Simulation, Unavailable, _pymdp_agents, _step_pymdp

        try:
            agents, _ = _pymdp_agents(Simulation(8 if quick else 16, 1, 10), {})
        except Unavailable as e:
            return {"unavailable": str(e)}
        r = timed_runs(
            lambda: [_step_pymdp(a, int(o)) for a, o in zip(agents, obs, strict=False)], runs
        )  # the first len(agents) of obs
        scale = len(agents)
    else:
        population = AgentPopulation(model, n, seed=0, backend=kind)
        r = timed_runs(lambda: population.step(obs), runs)
        scale = n
    return {key: (value / scale if key in ("median", "min", "max") else value) for key, value in r.items()}


def _tmaze_agents(policy_len: int) -> Measure:
    """A row of T-maze agent steps (two factors): pymdp 0.0.7.1 one agent at a time against the
    population's factorized kernel."""

    def measure(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
        from ..agents import tmaze_model

        n = 1024
        model = tmaze_model(backend="python" if kind == "baseline" else kind)
        obs = np.tile([0, 0, 0], (n, 1))
        if kind == "baseline":
            try:
                agents = pymdp_agents(model, 8 if quick else 16, policy_len)
            except ImportError as e:
                return {"unavailable": f"pymdp is not installed ({e})"}

            def step_all() -> None:
                for agent in agents:
                    agent.infer_states([0, 0, 0])
                    agent.infer_policies()
                    agent.sample_action()

            r, scale = timed_runs(step_all, runs), len(agents)
        else:
            population = AgentPopulation(model, n, policy_len=policy_len, seed=0, backend=kind)
            r, scale = timed_runs(lambda: population.step(obs), runs), n
        return {key: (value / scale if key in ("median", "min", "max") else value) for key, value in r.items()}

    return measure


def _scaling_row(threads: int) -> Row:
    def baseline() -> cf.Executor:
        return cf.ThreadPoolExecutor(threads)

    def stealing(kind: str) -> cf.Executor:
        return WorkStealingThreadPool(threads, backend=kind)

    def work(executor: cf.Executor) -> None:
        workloads.matmul_sleep_tasks(executor, 10 * threads, 100, 0.001)

    return Row(
        f"scaling-{threads}",
        f"scaling: {threads} thread{'s' * (threads > 1)} x 10 tasks of (100x100 matmul + sleep(1 ms))",
        "s per run",
        "ThreadPoolExecutor",
        _executor_row(baseline, stealing, work, fresh=False),
    )


def rows(*, quick: bool) -> list[Row]:
    io_tasks, cpu_tasks, mixed_tasks, dispatch_tasks = (500, 40, 300, 5000) if quick else (2000, 200, 1000, 20_000)

    def tpe8() -> cf.Executor:
        return cf.ThreadPoolExecutor(8)

    def adaptive(kind: str) -> cf.Executor:
        return AdaptiveThreadPoolExecutor(backend=kind)

    table = [
        Row(
            "io",
            "I/O pool (the report's): 100 x sleep(10 ms)",
            "s per run",
            "ThreadPoolExecutor(8)",
            _executor_row(tpe8, adaptive, lambda e: workloads.sleeps(e, 100, 0.01), fresh=True),
        ),
        Row(
            "adaptive-io",
            f"adaptive sizing, I/O: {io_tasks} x sleep(10 ms)",
            "s per run",
            "ThreadPoolExecutor(8)",
            _executor_row(tpe8, adaptive, lambda e: workloads.sleeps(e, io_tasks, 0.01), fresh=True),
        ),
        *(_registry_row(threads) for threads in (1, 2, 4)),
        Row(
            "adaptive-cpu",
            f"adaptive sizing, CPU: {cpu_tasks} pure-Python tasks",
            "s per run",
            "ThreadPoolExecutor(8)",
            _executor_row(tpe8, adaptive, lambda e: workloads.python_tasks(e, cpu_tasks), fresh=True),
        ),
        Row(
            "adaptive-mixed",
            f"adaptive sizing, mixed: {mixed_tasks} x (50x50 matmul + sleep(2 ms))",
            "s per run",
            "ThreadPoolExecutor(8)",
            _executor_row(tpe8, adaptive, lambda e: workloads.matmul_sleep_tasks(e, mixed_tasks), fresh=True),
        ),
        Row(
            "memory", "memory per agent: 1000 explorer agents (grid 10)", "bytes per agent", "per-agent copies", _memory
        ),
    ]
    for threads in (1, 4, 8, 16, 32):
        table.append(_scaling_row(threads))
    table += [
        Row(
            "dispatch",
            f"dispatch: {dispatch_tasks} no-op tasks, 2 workers",
            "s per run",
            "ThreadPoolExecutor(2)",
            _executor_row(
                lambda: cf.ThreadPoolExecutor(2),
                lambda k: WorkStealingThreadPool(2, backend=k),
                lambda e: workloads.submit_all_wait_all(e, dispatch_tasks),
                fresh=False,
            ),
        ),
        Row(
            "agents",
            "agent step: explorer model (grid 10), 1000 agents",
            "s per agent-step",
            "pymdp 0.0.7.1, one agent at a time",
            _agents,
        ),
        Row(
            "agents-tmaze-1",
            "agent step: T-maze (2 factors), policy_len 1, 1024 agents",
            "s per agent-step",
            "pymdp 0.0.7.1, one agent at a time",
            _tmaze_agents(1),
        ),
        Row(
            "agents-tmaze-2",
            "agent step: T-maze (2 factors), policy_len 2, 1024 agents",
            "s per agent-step",
            "pymdp 0.0.7.1, one agent at a time",
            _tmaze_agents(2),
        ),
        Row(
            "agents-tmaze-learn",
            "agent step learning pA[1] (update_A each step): T-maze, policy_len 1, 1024 agents",
            "s per agent-step",
            "pymdp 0.0.7.1, one agent at a time",
            _tmaze_learn_demo.bench_learning_step,
        ),
    ]
    return table


ROW_KEYS = [r.key for r in rows(quick=True)] + ["scaling"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller workloads: under 2 minutes on 2 cores")
    parser.add_argument(
        "--runs", type=_at_least(5), default=5, help="timed runs per cell after a warm-up (at least 5; default 5)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=ROW_KEYS, metavar="ROW", help=f"rows to run: {', '.join(ROW_KEYS)}"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the results as PNG charts (needs matplotlib)")


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {value}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 1
    info = machine_info()
    selected = [
        r
        for r in rows(quick=args.quick)
        if not args.only
        or r.key in args.only
        or any(r.key.startswith(f"{group}-") and group in args.only for group in ("scaling", "registry"))
    ]
    kinds = [k for k in KINDS if k != "rust" or _has_rust()]
    results: list[dict[str, Any]] = []
    interrupted = False
    with blas_pinned() as pinned:
        print(
            f"BLAS {'pinned to one thread' if pinned else 'threads not pinned (install threadpoolctl)'}; "
            f"median (min-max) of {args.runs} runs after a warm-up{', quick sizes' if args.quick else ''}.\n"
        )
        try:
            for row in selected:
                print(f"  {row.title} ...", file=sys.stderr, flush=True)
                cells = {}
                for kind in kinds:
                    cells[kind] = row.measure(kind, args.runs, quick=args.quick)
                results.append(
                    {"key": row.key, "title": row.title, "unit": row.unit, "baseline": row.baseline, "results": cells}
                )
        except KeyboardInterrupt:
            interrupted = True
    report = {
        "command": "bench",
        "machine": info,
        "quick": args.quick,
        "runs": args.runs,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": results,
        "interrupted": interrupted,
    }
    from ._render import bench_markdown

    print(bench_markdown(report))
    if interrupted:
        print("\nInterrupted: the table holds the rows that finished.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    if args.plot and results:
        from ._render import bench_plot

        bench_plot(report, args.plot)
    return 130 if interrupted else 0


def _has_rust() -> bool:
    try:
        _backend.native()
    except ImportError:
        return False
    return True

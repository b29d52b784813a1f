"""``freeagentics-rs demo``: one multi-agent simulation under each execution strategy, with a
live progress bar and a final table of measured figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from . import _strategies
from ._machine import blas_pinned, machine_info, machine_line
from ._progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=_positive, default=1000, help="agents in the simulation (default 1000)")
    parser.add_argument("--steps", type=_positive, default=50, help="simulation steps (default 50)")
    parser.add_argument("--grid", type=_positive, default=10, help="grid size; states = grid**2 (default 10)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=_strategies.STRATEGIES,
        default=list(_strategies.STRATEGIES),
        metavar="NAME",
        help=f"which to run (default all: {', '.join(_strategies.STRATEGIES)})",
    )
    parser.add_argument(
        "--budget",
        type=_seconds,
        default=4.0,
        help="seconds each per-agent (pymdp) strategy may run; it reports what it finished (default 4)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--model",
        choices=("explorer", "tmaze"),
        default="explorer",
        help="explorer: the grid world under each strategy (default); tmaze: pymdp's two-factor "
        "T-maze, native population against pymdp 0.0.7.1",
    )
    parser.add_argument("--policy-len", type=_positive, default=2, help="T-maze policy length (default 2)")
    parser.add_argument(
        "--learn",
        action="store_true",
        help="with --model tmaze: agents that learn the arms' reward contingencies (pA), per block of trials",
    )
    parser.add_argument("--trials", type=_positive, default=100, help="--learn: trials (default 100)")
    parser.add_argument("--block", type=_positive, default=10, help="--learn: trials per block (default 10)")
    parser.add_argument("--plot", metavar="FILE.png", help="--learn: also plot the blocks (needs matplotlib)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.learn or args.plot:
        from . import _tmaze_learn_demo

        return _tmaze_learn_demo.run(args)
    if args.model == "tmaze":
        from . import _tmaze_demo

        return _tmaze_demo.run(args)
    info = machine_info()
    rows: list[dict[str, Any]] = []
    cache: dict[str, Any] = {}
    interrupted = False
    try:
        print(f"Machine: {machine_line(info)}")
        print(
            f"Simulation: {args.agents} explorer agents on a {args.grid}x{args.grid} grid, {args.steps} steps. "
            f"Per-agent (pymdp) strategies run for at most {args.budget:g} s each.\n"
        )
        with blas_pinned():
            for name in args.strategies:
                row: dict[str, Any] = {
                    "strategy": name,
                    "label": _strategies.LABELS[name],
                    "available": False,
                    "reason": "interrupted",
                }
                rows.append(row)
                try:
                    with Progress(args.agents * args.steps, _strategies.LABELS[name]) as progress:
                        sim = _strategies.Simulation(
                            args.agents, args.steps, args.grid, budget=args.budget, progress=progress.advance
                        )
                        outcome = _strategies.runner(name)(sim, cache)
                except _strategies.Unavailable as e:
                    row.update(available=False, reason=str(e))
                except Exception as e:  # one failed strategy must not end the demo
                    row.update(available=False, reason=f"failed: {type(e).__name__}: {e}")
                except KeyboardInterrupt:
                    interrupted = True
                    break
                else:
                    _record(row, outcome, args.agents)
                if not row["available"]:
                    print(f"  {name}: not run: {row['reason']}", file=sys.stderr)
    except KeyboardInterrupt:  # between strategies
        interrupted = True
    _add_speedups(rows)
    print()
    print(render(rows, args.agents))
    if interrupted:
        print("\nInterrupted: the table holds the strategies that finished.")
    if args.json:
        _write_report(args, info, rows, interrupted=interrupted)
    return 130 if interrupted else 0


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """Each finished row's rate over that of FreeAgentics' design (None without it)."""
    baseline = next((r["agent_steps_per_s"] for r in rows if r["strategy"] == "freeagentics" and r["available"]), None)
    for row in rows:
        if row["available"]:
            row["speedup_vs_freeagentics"] = row["agent_steps_per_s"] / baseline if baseline else None


def _record(row: dict[str, Any], outcome: Any, agents: int) -> None:
    """Fills ``row`` with a finished strategy's ``outcome``."""
    rate = outcome.agent_steps / outcome.seconds if outcome.seconds > 0 else 0.0
    row.update(
        available=True,
        agent_steps=outcome.agent_steps,
        seconds=outcome.seconds,
        agent_steps_per_s=rate,
        ms_per_round=1e3 * agents / rate if rate else None,
        memory_per_agent_bytes=outcome.memory_per_agent,
        time_boxed=outcome.time_boxed,
        notes=outcome.notes,
    )


def _write_report(
    args: argparse.Namespace, info: dict[str, Any], rows: list[dict[str, Any]], *, interrupted: bool
) -> None:
    report = {
        "command": "demo",
        "machine": info,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"agents": args.agents, "steps": args.steps, "grid": args.grid, "budget": args.budget},
        "strategies": rows,
        "interrupted": interrupted,
    }
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


def render(rows: list[dict[str, Any]], agents: int) -> str:
    lines = [
        "| strategy | agent-steps/s | ms per round | heap per agent | vs FreeAgentics' design | measured over |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["available"]:
            lines.append(f"| {r['label']} | not run: {r['reason']} | | | | |")
            continue
        memory = r["memory_per_agent_bytes"]
        memory_text = "n/a" if memory is None else f"{memory / 1024:.1f} KB"
        speedup = r.get("speedup_vs_freeagentics")
        over = f"{r['agent_steps']:,} agent-steps in {r['seconds']:.2f} s" + (
            " (time limit)" if r["time_boxed"] else ""
        )
        lines.append(
            f"| {r['label']} | {r['agent_steps_per_s']:,.0f} | {r['ms_per_round']:.2f} | {memory_text} | "
            f"{'n/a' if speedup is None else f'{speedup:,.1f}x'} | {over} |"
        )
    lines.append(
        f"\nA round is one step of all {agents} agents; for time-limited strategies it is agents / rate. "
        "Heap per agent: bytes allocated on the Python heap (Python objects and numpy arrays, by "
        "tracemalloc) while building the agents, over the agents; the Rust kernel's own buffers "
        "(its copy of the model) are not in it."
    )
    return "\n".join(lines)

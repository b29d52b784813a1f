"""Memory per agent: N agents of the FreeAgentics explorer model (grid 10), each with its own
copies of A, B, C, D and its own belief vector (FreeAgentics' design), against the same agents
holding the model interned in a SharedModelStore and beliefs from a SharedMemoryPool.

Each measurement runs in a fresh interpreter: the growth of its resident set size while the
agents are built (store and pool included, beliefs written), divided by N. Medians of ``--runs``.

Usage: python benches/memory_per_agent.py [--agents 1000] [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import gc, json, os, sys
import numpy as np
import freeagentics_rs
from freeagentics_rs.workloads import explorer_model_arrays

variant, agents = sys.argv[1], int(sys.argv[2])
model = explorer_model_arrays(10)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def naive():
    agent = {name: array.copy() for name, array in model.items()}
    agent["beliefs"] = model["D"].copy()
    return agent

def build():
    if variant == "naive":
        return [naive() for _ in range(agents)]
    store = freeagentics_rs.SharedModelStore(backend=variant)
    pool = freeagentics_rs.SharedMemoryPool(model["D"].shape, "float64", capacity=agents, backend=variant)
    population = []
    for _ in range(agents):
        agent = store.intern_many(model)
        agent["beliefs"] = pool.acquire()
        agent["beliefs"][:] = model["D"]
        population.append(agent)
    return population, store, pool

build_small = build  # warm-up: the first calls allocate caches that are not per agent
agents, real = 8, agents
warm = build_small()
del warm
agents = real
gc.collect()
before = rss()
kept = build()
gc.collect()
print(json.dumps({"bytes_per_agent": (rss() - before) / agents}))
"""

VARIANTS = {
    "naive": "per-agent copies (FreeAgentics' design)",
    "python": "interned model + pooled beliefs (python)",
    "rust": "interned model + pooled beliefs (rust)",
}


def measure(variant: str, agents: int) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(agents)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)["bytes_per_agent"]


def run(agents: int = 1000, runs: int = 5, variants: list[str] | None = None) -> dict[str, dict[str, float]]:
    """{variant: {median, min, max} bytes per agent}; variants run interleaved, round by round."""
    variants = variants or list(VARIANTS)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            samples[variant].append(measure(variant, agents))
    return {v: {"median": statistics.median(s), "min": min(s), "max": max(s)} for v, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    import freeagentics_rs

    variants = [v for v in VARIANTS if v != "rust" or freeagentics_rs.BACKEND == "rust"]
    results = run(args.agents, args.runs, variants)
    naive = results["naive"]["median"]
    print(f"{args.agents} agents, grid 10 explorer model; RSS growth per agent, median of {args.runs} runs\n")
    print("| agents' memory | per agent | min – max | less than per-agent copies |")
    print("|---|---|---|---|")
    for variant, r in results.items():
        print(f"| {VARIANTS[variant]} | {r['median'] / 1024:.2f} KB | {r['min'] / 1024:.2f} – {r['max'] / 1024:.2f} KB "
              f"| {naive / r['median']:.0f}x |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"agents": args.agents, "runs": args.runs, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

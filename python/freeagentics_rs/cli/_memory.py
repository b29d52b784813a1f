"""Memory per agent, measured in fresh interpreters: N agents of the FreeAgentics explorer model
(grid 10), each with its own copies of A, B, C, D and its own belief vector (FreeAgentics'
design), against the same agents holding the model interned in a SharedModelStore and beliefs
from a SharedMemoryPool: the growth of the resident set size while the agents are built (store
and pool included, beliefs written), divided by N."""

from __future__ import annotations

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

def build(n):
    if variant == "naive":
        return [naive() for _ in range(n)]
    store = freeagentics_rs.SharedModelStore(backend=variant)
    pool = freeagentics_rs.SharedMemoryPool(model["D"].shape, "float64", capacity=n, backend=variant)
    population = []
    for _ in range(n):
        agent = store.intern_many(model)
        agent["beliefs"] = pool.acquire()
        agent["beliefs"][:] = model["D"]
        population.append(agent)
    return population, store, pool

build(8)  # warm-up: the first calls allocate caches that are not per agent
gc.collect()
before = rss()
kept = build(agents)
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
    return float(json.loads(out.stdout)["bytes_per_agent"])


def run(agents: int = 1000, runs: int = 5, variants: list[str] | None = None) -> dict[str, dict[str, float]]:
    """{variant: {median, min, max} bytes per agent}; variants run interleaved, round by round."""
    variants = variants or list(VARIANTS)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            samples[variant].append(measure(variant, agents))
    return {v: {"median": statistics.median(s), "min": min(s), "max": max(s)} for v, s in samples.items()}

"""Our side of `make bench-peers`: the factorized models of `benches/test_agents_bench.py` stepped
at 1024 agents by the Rust kernel (rayon, every CPU), the numpy kernel and pymdp 0.0.7.1 (a sample
of agents stepped one by one); `--write-models` saves the same models for the JAX side.

Prints one JSON line per (model, policy_len, kind): the median of several runs, in microseconds
per agent-step. Runs in the project's virtualenv (BLAS pinned to one thread by `run.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import test_agents_bench as bench  # the bench rows' own models and runners

# The bench rows' models under short names: (builder, observation row, policy lengths).
MODELS = {
    "T-maze": bench.FACTOR_MODELS["T-maze (4x2 states, 3 modalities)"],
    "random 3-factor": bench.FACTOR_MODELS["random 3-factor (3x4x2 states, 2 controlled)"],
    "grid-context G=3": bench.FACTOR_MODELS["grid with context factor (3x3 x 2 states, 3 modalities)"],
}
KINDS = {"rust": "ours, Rust", "numpy (python)": "ours, numpy", "pymdp serial": "pymdp 0.0.7.1 serial"}


def write_models(path: str) -> None:
    arrays: dict[str, np.ndarray] = {"index": np.array(json.dumps(list(MODELS)))}
    for name, (make, obs, policy_lens) in MODELS.items():
        for key, items in zip("ABCD", make(), strict=True):
            arrays[f"{name}/{key}/n"] = np.array(len(items))
            for i, a in enumerate(items):
                arrays[f"{name}/{key}/{i}"] = np.asarray(a, np.float64)
        arrays[f"{name}/obs"] = np.asarray(obs, np.int64)
        arrays[f"{name}/policy_lens"] = np.asarray(policy_lens, np.int64)
    np.savez(path, **arrays)


def measure(kind: str, name: str, policy_len: int, batch: int, runs: int, steps: int) -> dict:
    make, obs, _ = MODELS[name]
    observations = np.tile(obs, (batch, 1))
    run, agent_steps, _ = bench.factor_round_of(kind, make(), batch, observations, policy_len)
    run()  # warm-up (and the Rust kernel's pool)
    rounds = 1 if kind == "pymdp serial" else steps
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        samples.append((time.perf_counter() - start) / rounds / agent_steps * 1e6)
    return {"us_per_agent_step": statistics.median(samples), "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-models", metavar="PATH")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    if args.write_models:
        write_models(args.write_models)
        return
    import freeagentics_rs

    for name, (_, _, policy_lens) in MODELS.items():
        for policy_len in policy_lens:
            for kind in args.kinds.split(","):
                if kind == "rust" and freeagentics_rs.BACKEND != "rust":
                    continue
                runs = min(args.runs, 3) if kind == "pymdp serial" else args.runs
                row = measure(kind, name, policy_len, args.batch, runs, args.steps)
                row.update(model=name, policy_len=policy_len, kind=KINDS[kind])
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

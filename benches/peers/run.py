"""`make bench-peers`: our factorized kernels against pymdp 1.x (JAX) in one run, one table.

Runs `ours.py` in this interpreter's virtualenv and `pymdp_jax.py` in the peers' virtualenv
(`--peer-python`), alternating the two sides `--alternations` times so that both see the same
machine load, and prints per agent-step microseconds (medians over every run of both
alternations) and the speed-up of the Rust kernel over JAX (JAX µs / Rust µs) with its target.

Threads: BLAS is pinned to one thread on both sides; JAX runs on one CPU core (its process pins
itself to one CPU and XLA_FLAGS gives XLA's CPU runtime one thread); the Rust kernel uses every
CPU of this process (rayon), as `AgentPopulation` does by default.

    .venv/bin/python benches/peers/run.py --peer-python .venv-peers/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
JAX_ONE_THREAD = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
    "JAX_ENABLE_X64": "0",
}
# Speed-up of the Rust kernel over JAX that each row must reach (issue 17).
TARGETS = {
    ("T-maze", 1): 5.0,
    ("T-maze", 2): 3.0,
    ("random 3-factor", 2): 3.0,
    ("grid-context G=3", 1): 5.0,
    ("grid-context G=3", 2): 5.0,
}
COLUMNS = ["ours, Rust", "ours, numpy", "pymdp 0.0.7.1 serial", "pymdp 1.0 JAX"]


def rows_of(command: list[str], env: dict[str, str]) -> list[dict]:
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"{command[1]} failed with exit status {result.returncode}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def table(rows: list[dict]) -> str:
    samples: dict[tuple, list[float]] = {}
    policies: dict[tuple, int] = {}
    for row in rows:
        key = (row["model"], row["policy_len"])
        samples.setdefault(key + (row["kind"],), []).extend(row["samples"])
        if "policies" in row:
            policies[key] = row["policies"]
    keys = list(dict.fromkeys((r["model"], r["policy_len"]) for r in rows))
    head = ["model", "policy_len", "policies"] + [f"{c} µs" for c in COLUMNS] + ["Rust speed-up vs JAX", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        median = {c: statistics.median(samples[key + (c,)]) for c in COLUMNS if key + (c,) in samples}
        cells = [key[0], str(key[1]), str(policies.get(key, "?"))]
        cells += [f"{median[c]:.3g}" if c in median else "-" for c in COLUMNS]
        if "ours, Rust" in median and "pymdp 1.0 JAX" in median:
            speedup = median["pymdp 1.0 JAX"] / median["ours, Rust"]
            target = TARGETS.get(key)
            met = "" if target is None else (" ✓" if speedup >= target else " ✗")
            cells += [f"{speedup:.2f}x{met}", f"≥ {target:g}x" if target else "-"]
        else:
            cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default=".venv-peers/bin/python")
    parser.add_argument("--alternations", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="runs per row and alternation")
    parser.add_argument("--steps", type=int, default=20, help="batch steps per run")
    parser.add_argument("--kinds", default="rust,numpy (python),pymdp serial", help="our rows (ours.py --kinds)")
    parser.add_argument("--json", metavar="PATH", help="also write every row here")
    args = parser.parse_args()
    counts = ["--runs", str(args.runs), "--steps", str(args.steps)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = os.path.join(tmp, "models.npz")
        subprocess.run([sys.executable, os.path.join(HERE, "ours.py"), "--write-models", models], check=True)
        for _ in range(args.alternations):
            rows += rows_of([sys.executable, os.path.join(HERE, "ours.py"), "--kinds", args.kinds, *counts], ONE_THREAD)
            jax_env = {**ONE_THREAD, **JAX_ONE_THREAD}
            rows += rows_of([args.peer_python, os.path.join(HERE, "pymdp_jax.py"), models, *counts], jax_env)
    versions = next((r["versions"] for r in rows if "versions" in r), "pymdp 1.x")
    print(f"1024 agents per batch; per agent-step µs, medians of {args.alternations}x{args.runs} runs")
    print(f"{versions} on 1 CPU core (float32); Rust kernel on {len(os.sched_getaffinity(0))} CPUs; BLAS 1 thread")
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

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

from freeagentics_rs.cli._memory import VARIANTS, run


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
        print(
            f"| {VARIANTS[variant]} | {r['median'] / 1024:.2f} KB | {r['min'] / 1024:.2f} – {r['max'] / 1024:.2f} KB "
            f"| {naive / r['median']:.0f}x |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"agents": args.agents, "runs": args.runs, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

"""Prints a pytest-benchmark JSON file as a markdown table: per group, each executor's median
(min–max) and its speed-up over ThreadPoolExecutor measured in the same run.

Usage: python benches/table.py .benchmarks/executor.json
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        kind = bench["params"]["kind"]
        groups[bench["group"]][kind] = bench
    info = data["machine_info"]
    print(f"Machine: {info.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{info.get('cpu', {}).get('count', '?')} CPUs, Python {info['python_version']}; "
          f"medians of the rounds shown, in one run.\n")
    print("| workload | executor | median | min – max | rounds | speed-up vs ThreadPoolExecutor | steals/round |")
    print("|---|---|---|---|---|---|---|")
    for group, kinds in groups.items():
        baseline = kinds.get("ThreadPoolExecutor", {}).get("stats", {}).get("median")
        for kind in ("ThreadPoolExecutor", "python", "rust"):
            if kind not in kinds:
                continue
            stats = kinds[kind]["stats"]
            ratio = f"{baseline / stats['median']:.2f}x" if baseline else "n/a"
            stolen = kinds[kind].get("extra_info", {}).get("stolen_per_round")
            label = kind if kind == "ThreadPoolExecutor" else f"WorkStealingThreadPool ({kind})"
            print(f"| {group} | {label} | {stats['median'] * 1e3:.1f} ms | {stats['min'] * 1e3:.1f} – "
                  f"{stats['max'] * 1e3:.1f} ms | {stats['rounds']} | {ratio} | "
                  f"{'' if stolen is None else f'{stolen:.0f}'} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/executor.json")

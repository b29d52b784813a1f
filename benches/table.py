"""Prints a pytest-benchmark JSON file as markdown tables: per group, each executor's median
(min–max) and its speed-up over ThreadPoolExecutor measured in the same run; for the adaptive
executor also its ratio to the best fixed size and its resize history.

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
    info = data["machine_info"]
    print(
        f"Machine: {info.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{info.get('cpu', {}).get('count', '?')} CPUs, Python {info['python_version']}; "
        f"medians of the rounds shown, in one run.\n"
    )
    by_family: dict[str | None, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        by_family[bench.get("extra_info", {}).get("family")].append(bench)
    tables = [
        (executor_table, None),
        (scaling_table, "scaling"),
        (adaptive_table, "adaptive"),
        (registry_table, "registry"),
        (manager_table, "manager"),
        (agent_io_table, "agent-io"),
        (memory_table, "memory"),
        (agents_table, "agents"),
        (agents_memory_table, "agents-memory"),
        (distributed_table, "distributed"),
    ]
    for table, family in tables:
        if by_family[family]:
            print()  # a blank line before each table: two tables with none between render as one
            table(by_family[family])


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _groups(benchmarks: list[dict], param: str) -> dict[str, dict[str, dict]]:
    """{group: {value of `param`: benchmark}}, in run order."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in benchmarks:
        groups[bench["group"]][bench["params"][param]] = bench
    return groups


def executor_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    groups = _groups(benchmarks, "kind")
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
            print(
                f"| {group} | {label} | {stats['median'] * 1e3:.1f} ms | {stats['min'] * 1e3:.1f} – "
                f"{stats['max'] * 1e3:.1f} ms | {stats['rounds']} | {ratio} | "
                f"{'' if stolen is None else f'{stolen:.0f}'} |"
            )


def adaptive_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    groups = _groups(benchmarks, "executor")
    print("| workload | executor | median | min – max | rounds | vs ThreadPoolExecutor(8) | vs best fixed size |")
    print("|---|---|---|---|---|---|---|")
    histories = []
    for group, executors in groups.items():
        medians = {name: b["stats"]["median"] for name, b in executors.items()}
        fixed = {name: m for name, m in medians.items() if name.startswith("ThreadPoolExecutor")}
        best = min(fixed, key=fixed.get) if fixed else None
        eight = medians.get("ThreadPoolExecutor(8)")
        for name, bench in executors.items():
            stats = bench["stats"]
            vs_eight = f"{eight / stats['median']:.2f}x" if eight else "n/a"
            vs_best = (
                f"{fixed[best] / stats['median']:.2f}x (best: {best.split('(')[1].rstrip(')')})" if best else "n/a"
            )
            label = name if name.startswith("ThreadPool") else f"AdaptiveThreadPoolExecutor {name.split(' ')[1]}"
            print(
                f"| {group} | {label} | {_ms(stats['median'])} | {_ms(stats['min'])} – {_ms(stats['max'])} | "
                f"{stats['rounds']} | {vs_eight} | {vs_best} |"
            )
            events = bench.get("extra_info", {}).get("resize_events")
            if events is not None:
                steps = ", ".join(f"{t:.2f} s: {a}→{b} {w} (share {s:.3f}, {why})" for t, a, b, w, s, why in events)
                histories.append(f"- {group}, {label}: {steps or 'no resize'}")
    print("\nResize history of the last timed round of each adaptive executor:\n")
    print("\n".join(histories))


def registry_table(benchmarks: list[dict]) -> None:
    """Every thread count, against one dict behind one lock (FreeAgentics' design) and against a
    plain dict with no lock (each get and set is atomic under the GIL)."""
    groups = _groups(benchmarks, "kind")
    print("| workload | registry | median | min – max | rounds | ops/s | vs dict + lock | vs dict, no lock |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"dict + lock": "dict + lock", "dict, no lock": "dict, no lock"}
    for group, kinds in groups.items():
        locked = kinds.get("dict + lock", {}).get("stats", {}).get("median")
        plain = kinds.get("dict, no lock", {}).get("stats", {}).get("median")
        for kind in ("dict + lock", "dict, no lock", "python", "rust"):
            if kind not in kinds:
                continue
            stats = kinds[kind]["stats"]
            operations = kinds[kind].get("extra_info", {}).get("operations", 200_000)
            ratios = [f"{b / stats['median']:.2f}x" if b else "n/a" for b in (locked, plain)]
            print(
                f"| {group} | {labels.get(kind, f'AgentRegistry ({kind})')} | {_ms(stats['median'])} | "
                f"{_ms(stats['min'])} – {_ms(stats['max'])} | {stats['rounds']} | "
                f"{operations / stats['median'] / 1e6:.2f} M | {' | '.join(ratios)} |"
            )


def manager_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    by_kind = {b["params"]["kind"]: b for b in benchmarks}
    baseline = by_kind.get("FreeAgentics design", {}).get("stats", {}).get("median")
    print(
        "| workload | manager | median per round | min – max | rounds | rounds/s | vs FreeAgentics design | workers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("FreeAgentics design", "python", "rust", "FreeAgentics design, same size"):
        if kind not in by_kind:
            continue
        bench = by_kind[kind]
        stats = bench["stats"]
        label = {
            "FreeAgentics design": "FreeAgentics design (ThreadPoolExecutor(8), locked dict)",
            "FreeAgentics design, same size": "FreeAgentics design on the manager's worker count",
        }.get(kind, f"OptimizedThreadPoolManager ({kind})")
        ratio = f"{baseline / stats['median']:.2f}x" if baseline else "n/a"
        workers = bench.get("extra_info", {}).get("workers", 8)
        print(
            f"| {bench['group'].split(': ', 1)[1]} | {label} | {_ms(stats['median'])} | {_ms(stats['min'])} – "
            f"{_ms(stats['max'])} | {stats['rounds']} | {1 / stats['median']:.0f} | {ratio} | {workers} |"
        )


def agent_io_table(benchmarks: list[dict]) -> None:
    """A sample may hold several rounds (`rounds` in extra_info: one round steps every agent
    once): the table shows the rounds per sample and the median per round next to the median
    per sample, so rows timed with different round counts compare."""
    print(
        "| workload | pattern | rounds per sample | median per sample | min – max | samples | median per round "
        "| agent-steps (or saves) per second | vs first row |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in benchmarks:  # each has one parameter, whatever its name
        groups[bench["group"]][next(iter(bench["params"].values()))] = bench
    for group, rows in groups.items():
        first = None
        for name, bench in rows.items():
            stats, info = bench["stats"], bench["extra_info"]
            rounds = info.get("rounds", 1)
            rate = info["steps"] / stats["median"]
            first = first or rate
            print(
                f"| {group} | {name} | {rounds} | {_ms(stats['median'])} | {_ms(stats['min'])} – {_ms(stats['max'])} | "
                f"{stats['rounds']} | {_ms(stats['median'] / rounds)} | {rate:,.0f} | {rate / first:.2f}x |"
            )


def memory_table(benchmarks: list[dict]) -> None:
    buffers = [b for b in benchmarks if "kind" in (b["params"] or {})]
    if buffers:
        baseline = next((b["stats"]["median"] for b in buffers if b["params"]["kind"] == "np.zeros"), None)
        print(f"| {buffers[0]['group']} | per cycle | min – max | rounds | vs np.zeros |")
        print("|---|---|---|---|---|")
        for bench in buffers:
            stats = bench["stats"]
            ratio = f"{baseline / stats['median']:.2f}x" if baseline else "n/a"
            print(
                f"| {bench['params']['kind']} | {stats['median'] * 1e6:.0f} ns | "
                f"{stats['min'] * 1e6:.0f} – {stats['max'] * 1e6:.0f} ns | {stats['rounds']} | {ratio} |"
            )
    for bench in benchmarks:
        per_agent = bench.get("extra_info", {}).get("bytes_per_agent")
        if not per_agent:
            continue
        naive = next(iter(per_agent.values()))["median"]
        print(
            f"\n| {bench['group']}: RSS growth per agent, median of 5 runs | per agent | min – max "
            "| less than per-agent copies |"
        )
        print("|---|---|---|---|")
        for label, r in per_agent.items():
            print(
                f"| {label} | {r['median'] / 1024:.2f} KB | {r['min'] / 1024:.2f} – {r['max'] / 1024:.2f} KB | "
                f"{naive / r['median']:.0f}x |"
            )


def scaling_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    print(
        "| threads | tasks | ThreadPoolExecutor | WorkStealingThreadPool (python) | WorkStealingThreadPool (rust) "
        "| tasks/s (rust) | rust vs ThreadPoolExecutor |"
    )
    print("|---|---|---|---|---|---|---|")
    for kinds in _groups(benchmarks, "kind").values():
        first = next(iter(kinds.values()))["extra_info"]
        medians = {k: b["stats"]["median"] for k, b in kinds.items()}
        cells = [_ms(medians[k]) if k in medians else "n/a" for k in ("ThreadPoolExecutor", "python", "rust")]
        rust = medians.get("rust")
        rate = f"{first['tasks'] / rust:,.0f}" if rust else "n/a"
        ratio = f"{medians['ThreadPoolExecutor'] / rust:.2f}x" if rust and "ThreadPoolExecutor" in medians else "n/a"
        print(f"| {first['threads']} | {first['tasks']} | {' | '.join(cells)} | {rate} | {ratio} |")


def agents_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in benchmarks:
        groups[bench["group"]].append(bench)
    print(
        "| workload | agents stepped by | median per round | agent-steps per round | agent-steps/s "
        "| µs per agent-step | vs pymdp serial (or first row) |"
    )
    print("|---|---|---|---|---|---|---|")
    for group, rows in groups.items():
        rates = {b["extra_info"]["kind"]: b["extra_info"]["steps"] / b["stats"]["median"] for b in rows}
        baseline = rates.get("pymdp serial", next(iter(rates.values())))
        for bench in rows:
            info, stats = bench["extra_info"], bench["stats"]
            rate = rates[info["kind"]]
            print(
                f"| {group} | {info['kind']} | {_ms(stats['median'])} | {info['steps']} | {rate:,.0f} | "
                f"{1e6 / rate:.2f} | {rate / baseline:,.1f}x |"
            )


def agents_memory_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    print(f"| {benchmarks[0]['group']} | arrays per agent | RSS growth per agent (median of 3 runs) |")
    print("|---|---|---|")
    for bench in benchmarks:
        info = bench["extra_info"]
        print(f"| {info['kind']} | {info['arrays']:.0f} B | {info['rss']:.0f} B |")


def distributed_table(benchmarks: list[dict]) -> None:
    if not benchmarks:
        return
    rows: dict[int, dict[str, dict]] = defaultdict(dict)
    for bench in benchmarks:
        rows[bench["extra_info"]["agents"]][bench["params"]["kind"]] = bench
    labels = {k: b["extra_info"]["kind"] for r in rows.values() for k, b in r.items()}
    print(
        f"| agents | {labels.get('local', 'local')}: per step | {labels.get('dask', 'dask')}: per step | "
        "Dask per step minus local | local / Dask |"
    )
    print("|---|---|---|---|---|")
    for agents, kinds in sorted(rows.items()):
        if "local" not in kinds or "dask" not in kinds:
            continue
        steps = kinds["local"]["extra_info"]["steps"]
        local, dask = (kinds[k]["stats"]["median"] / steps for k in ("local", "dask"))
        print(f"| {agents:,} | {_ms(local)} | {_ms(dask)} | {_ms(dask - local)} | {local / dask:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/executor.json")

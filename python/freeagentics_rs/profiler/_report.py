"""ThreadingReport: the profiler's measurements, and the bottlenecks and recommendations that
follow from them. Every sentence quotes the measured value it rests on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ThreadingReport", "derive_findings"]

# Thresholds of the findings (they decide what is worth saying, never the numbers said).
GIL_BOUND = 0.8  # threaded / serial time above this: the work does not run in parallel
LOCK_CONTENDED = 0.10  # share of acquisitions that had to wait
IMBALANCED = 1.5  # max / mean tasks per worker
IO_BOUND = 0.2  # CPU share of task run time below this


def derive_findings(m: dict[str, Any]) -> tuple[list[str], list[str]]:
    bottlenecks: list[str] = []
    recommendations: list[str] = []
    gil = m.get("gil")
    if gil:
        if gil["ratio"] > GIL_BOUND:
            bottlenecks.append(
                f"GIL: {gil['threads']} threads ran the work at {gil['speedup']:.2f}x the serial speed "
                f"(threaded/serial time {gil['ratio']:.2f})."
            )
            recommendations.append(
                "This work holds the GIL: more threads will not make it faster. Step agents in batch "
                "(freeagentics_rs.agents, GIL released), in processes, or in code that releases the GIL."
            )
        else:
            recommendations.append(
                f"The work runs in parallel across threads ({gil['speedup']:.2f}x with {gil['threads']} threads)."
            )
    for lock in m.get("locks", []):
        if lock["acquisitions"] and lock["contention_rate"] > LOCK_CONTENDED:
            attempts = lock["acquisitions"] + lock["failed"]
            bottlenecks.append(
                f"Lock {lock['name']!r}: {lock['contended']} of {attempts} acquisition attempts "
                f"({lock['contention_rate']:.0%}) found it held (wait p95 {lock['wait_ms']['p95']:.3f} ms, "
                f"hold p95 {lock['hold_ms']['p95']:.3f} ms)."
            )
            recommendations.append(
                f"Shorten what runs under {lock['name']!r}, or split the data it guards (AgentRegistry shards by agent)."
            )
    for p in m.get("executors", []):
        name = p["executor"]
        if p["imbalance"] is not None and p["imbalance"] > IMBALANCED:
            bottlenecks.append(f"{name}: uneven work, the busiest worker ran {p['imbalance']:.2f}x the mean number of tasks.")
            recommendations.append("Use WorkStealingThreadPool: idle workers take queued tasks from busy ones.")
        if p["queue_wait_ms"]["p50"] > p["run_ms"]["p50"]:
            bottlenecks.append(
                f"{name}: tasks waited longer in the queue (p50 {p['queue_wait_ms']['p50']:.3f} ms) than they ran "
                f"(p50 {p['run_ms']['p50']:.3f} ms)."
            )
            if p["cpu_share"] < IO_BOUND:
                recommendations.append(
                    f"{name}: tasks spend {1 - p['cpu_share']:.0%} of their time off the CPU (waiting): "
                    "more workers help; AdaptiveThreadPoolExecutor sizes the pool from this measurement."
                )
            else:
                recommendations.append(
                    f"{name}: tasks use the CPU for {p['cpu_share']:.0%} of their run time (the rest is waiting, for "
                    "the GIL or I/O): threads beyond the cores will not shorten the queue; batch the work or move "
                    "it out of the GIL."
                )
    counts = m.get("thread_counts")
    if counts:
        rates = {int(k): v for k, v in counts["ops_per_s"].items()}
        best = counts["best"]
        recommendations.append(
            f"Thread count: {best} ({rates[best]:,.0f} calls/s; "
            + ", ".join(f"{n}: {rate:,.0f}" for n, rate in sorted(rates.items()))
            + ")."
        )
    return bottlenecks, recommendations


@dataclass
class ThreadingReport:
    measurements: dict[str, Any]
    bottlenecks: list[str]
    recommendations: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurements": json.loads(json.dumps(self.measurements, default=str)),
            "bottlenecks": list(self.bottlenecks),
            "recommendations": list(self.recommendations),
        }

    def to_markdown(self) -> str:
        m = self.measurements
        lines = ["# Threading report", ""]
        if m.get("gil"):
            g = m["gil"]
            lines += ["## GIL", "", f"{g['threads']} threads: threaded / serial time {g['ratio']:.2f} "
                      f"(speed-up {g['speedup']:.2f}x, median of {g['repeats']}).", ""]  # fmt: skip
        if m.get("locks"):
            lines += ["## Locks", "", "| lock | acquisitions | contended | wait p50 / p95 / p99 ms | hold p50 / p95 / p99 ms |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for lock in m["locks"]:
                w, h = lock["wait_ms"], lock["hold_ms"]
                lines.append(f"| {lock['name']} | {lock['acquisitions']} | {lock['contention_rate']:.0%} | "
                             f"{w['p50']:.3f} / {w['p95']:.3f} / {w['p99']:.3f} | {h['p50']:.3f} / {h['p95']:.3f} / {h['p99']:.3f} |")  # fmt: skip
            lines.append("")
        if m.get("executors"):
            lines += ["## Executors", "", "| executor | tasks | tasks/s | queue wait p50 / p95 ms | run p50 / p95 ms | CPU share | imbalance | steals |",
                      "|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for p in m["executors"]:
                q, r = p["queue_wait_ms"], p["run_ms"]
                steals = "n/a" if p["steals"] is None else str(p["steals"])
                imbalance = "n/a" if p["imbalance"] is None else f"{p['imbalance']:.2f}"
                lines.append(f"| {p['executor']} | {p['tasks']} | {p['throughput']:,.0f} | {q['p50']:.3f} / {q['p95']:.3f} | "
                             f"{r['p50']:.3f} / {r['p95']:.3f} | {p['cpu_share']:.0%} | {imbalance} | {steals} |")  # fmt: skip
            lines.append("")
        if m.get("thread_counts"):
            c = m["thread_counts"]
            lines += ["## Thread count", "", "| threads | calls/s |", "|---|---|"]
            lines += [f"| {n} | {rate:,.0f} |" for n, rate in sorted((int(k), v) for k, v in c["ops_per_s"].items())]
            lines += ["", f"Best: {c['best']}.", ""]
        lines += ["## Bottlenecks", ""] + ([f"- {b}" for b in self.bottlenecks] or ["- none measured"]) + [""]
        lines += ["## Recommendations", ""] + ([f"- {r}" for r in self.recommendations] or ["- none"]) + [""]
        return "\n".join(lines)

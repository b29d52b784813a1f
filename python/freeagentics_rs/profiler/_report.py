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
LONG_WAIT_MS = 10.0  # a lock wait this long stalls an agent step
LOW_EFFICIENCY = 0.7  # profiled threads' CPU time / wall time below this: they mostly wait
WAITING = 0.5  # ... below this, waiting dominates
CPU_BOUND = 0.9  # ... above this, they are CPU-bound
UNEVEN_CPU = 0.3  # coefficient of variation of the threads' CPU time
LARGE_RSS_MB = 1000.0


def derive_findings(m: dict[str, Any]) -> tuple[list[str], list[str]]:
    bottlenecks: list[str] = []
    recommendations: list[str] = []
    gil = m.get("gil")
    if gil:
        _gil_findings(gil, bottlenecks, recommendations)
    for lock in m.get("locks", []):
        _lock_findings(lock, bottlenecks, recommendations)
    threads = m.get("threads")
    if threads:
        _thread_findings(threads, bottlenecks, recommendations)
    memory = m.get("memory")
    if memory and memory["rss_mb"] > LARGE_RSS_MB:
        recommendations.append(
            f"The process uses {memory['rss_mb']:.0f} MB: share identical model arrays (SharedModelStore) and pool "
            "belief buffers (SharedMemoryPool)."
        )
    for p in m.get("executors", []):
        _executor_findings(p, bottlenecks, recommendations)
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


def _gil_findings(gil: dict[str, Any], bottlenecks: list[str], recommendations: list[str]) -> None:
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


def _lock_findings(lock: dict[str, Any], bottlenecks: list[str], recommendations: list[str]) -> None:
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
    if lock["wait_ms"]["max"] > LONG_WAIT_MS:
        bottlenecks.append(f"Lock {lock['name']!r}: the longest wait was {lock['wait_ms']['max']:.1f} ms.")


def _thread_findings(threads: dict[str, Any], bottlenecks: list[str], recommendations: list[str]) -> None:
    efficiency, n = threads["efficiency"], threads["threads"]
    if efficiency < LOW_EFFICIENCY:
        bottlenecks.append(
            f"Profiled threads: {n} threads spent {efficiency:.0%} of their wall time on the CPU "
            "(the rest waiting: I/O, locks or the GIL)."
        )
    if efficiency < WAITING:
        recommendations.append(
            f"Profiled threads wait {1 - efficiency:.0%} of the time: overlap the waits (more threads, or asyncio "
            "with AsyncAgentManager); AdaptiveThreadPoolExecutor sizes a pool from this measurement."
        )
    elif efficiency > CPU_BOUND:
        recommendations.append(
            f"Profiled threads are on the CPU {efficiency:.0%} of the time: "
            "threads beyond the cores will not help; "
            "step agents in batch (freeagentics_rs.agents, GIL released) or in processes."
        )
    if threads["cpu_time_cv"] > UNEVEN_CPU:
        bottlenecks.append(
            f"Uneven work across threads: their CPU time varies by {threads['cpu_time_cv']:.0%} "
            f"(coefficient of variation over {n} threads)."
        )
        recommendations.append("Use WorkStealingThreadPool: idle workers take queued tasks from busy ones.")


def _executor_findings(p: dict[str, Any], bottlenecks: list[str], recommendations: list[str]) -> None:
    name = p["executor"]
    if p["imbalance"] is not None and p["imbalance"] > IMBALANCED:
        bottlenecks.append(
            f"{name}: uneven work, the busiest worker ran {p['imbalance']:.2f}x the mean number of tasks."
        )
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
            lines += [
                "## GIL",
                "",
                f"{g['threads']} threads: threaded / serial time {g['ratio']:.2f} "
                f"(speed-up {g['speedup']:.2f}x, median of {g['repeats']}).",
                "",
            ]
        if m.get("locks"):
            lines += [
                "## Locks",
                "",
                "| lock | acquisitions | contended | wait p50 / p95 / p99 ms | hold p50 / p95 / p99 ms |",
                "|---|---|---|---|---|",
            ]
            for lock in m["locks"]:
                w, h = lock["wait_ms"], lock["hold_ms"]
                lines.append(
                    f"| {lock['name']} | {lock['acquisitions']} | {lock['contention_rate']:.0%} | "
                    f"{w['p50']:.3f} / {w['p95']:.3f} / {w['p99']:.3f} | "
                    f"{h['p50']:.3f} / {h['p95']:.3f} / {h['p99']:.3f} |"
                )
            lines.append("")
        if m.get("executors"):
            lines += [
                "## Executors",
                "",
                "| executor | tasks | tasks/s | queue wait p50 / p95 ms | run p50 / p95 ms "
                "| CPU share | imbalance | steals |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for p in m["executors"]:
                q, r = p["queue_wait_ms"], p["run_ms"]
                steals = "n/a" if p["steals"] is None else str(p["steals"])
                imbalance = "n/a" if p["imbalance"] is None else f"{p['imbalance']:.2f}"
                lines.append(
                    f"| {p['executor']} | {p['tasks']} | {p['throughput']:,.0f} | {q['p50']:.3f} / {q['p95']:.3f} | "
                    f"{r['p50']:.3f} / {r['p95']:.3f} | {p['cpu_share']:.0%} | {imbalance} | {steals} |"
                )
            lines.append("")
        if m.get("threads"):
            t = m["threads"]
            lines += [
                "## Profiled threads",
                "",
                f"{t['threads']} threads, {t['tasks']} blocks: CPU time / wall time "
                f"{t['efficiency']:.0%}, CPU time variation {t['cpu_time_cv']:.0%}, "
                f"{t['context_switches']} context switches.",
                "",
            ]
        if m.get("memory"):
            mem = m["memory"]
            lines += [
                "## Memory",
                "",
                f"RSS {mem['rss_mb']:.1f} MB, {mem['threads']} OS threads, "
                f"{mem['open_files']} open files, {mem['connections']} sockets.",
                "",
            ]
        if m.get("thread_counts"):
            c = m["thread_counts"]
            lines += ["## Thread count", "", "| threads | calls/s |", "|---|---|"]
            lines += [f"| {n} | {rate:,.0f} |" for n, rate in sorted((int(k), v) for k, v in c["ops_per_s"].items())]
            lines += ["", f"Best: {c['best']}.", ""]
        lines += ["## Bottlenecks", ""] + ([f"- {b}" for b in self.bottlenecks] or ["- none measured"]) + [""]
        lines += ["## Recommendations", ""] + ([f"- {r}" for r in self.recommendations] or ["- none"]) + [""]
        return "\n".join(lines)

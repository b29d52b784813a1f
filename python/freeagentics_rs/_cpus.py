"""How many CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

The same rule as Rust's ``std::thread::available_parallelism`` on Linux (quota / period rounded
down, at least 1), so both backends pick the same default pool size.
"""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _cgroup_quota() -> int | None:
    """CPUs allowed by the tightest cgroup quota on this process's cgroup path, if any."""
    membership = _read("/proc/self/cgroup") or ""
    best: int | None = None
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2: walk up to the root
            parts = [p for p in path.split("/") if p]
            for depth in range(len(parts), -1, -1):
                limit = _read(os.path.join("/sys/fs/cgroup", *parts[:depth], "cpu.max"))
                if limit and not limit.startswith("max"):
                    quota, _, period = limit.partition(" ")
                    cpus = max(1, int(quota) // int(period or 100000))
                    best = cpus if best is None else min(best, cpus)
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"):
                quota_us = _read(os.path.join(base, path.lstrip("/"), "cpu.cfs_quota_us"))
                period_us = _read(os.path.join(base, path.lstrip("/"), "cpu.cfs_period_us"))
                if quota_us and period_us and int(quota_us) > 0:
                    cpus = max(1, int(quota_us) // int(period_us))
                    best = cpus if best is None else min(best, cpus)
                    break
    return best


def available_cpus() -> int:
    """CPUs this process may run on (affinity and cgroup quota respected), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota) if quota is not None else cpus)

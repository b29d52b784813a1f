"""Benchmark workloads shared by ``make demo`` and ``benches/``: each takes any
``concurrent.futures`` executor and returns when all of its work is done.

The same functions run on ``ThreadPoolExecutor`` (the baseline) and on both backends of
``WorkStealingThreadPool`` and ``AdaptiveThreadPoolExecutor``, so every ratio compares like with
like.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "noop",
    "identity",
    "submit_all_wait_all",
    "map_all",
    "sleeps",
    "imbalanced",
    "fan_out",
    "python_work",
    "python_tasks",
    "matmul_sleep_tasks",
    "python_then_sleeps",
    "median_time",
    "explorer_model_arrays",
    "LockedDict",
    "registry_plans",
    "registry_mix",
]


def noop() -> None:
    pass


def identity(x: Any) -> Any:
    return x


def submit_all_wait_all(executor: cf.Executor, n: int = 20_000) -> None:
    """Dispatch overhead: ``n`` no-op tasks submitted at once, then waited for."""
    cf.wait([executor.submit(noop) for _ in range(n)])


def map_all(executor: cf.Executor, n: int = 200_000, chunksize: int = 1) -> None:
    """``map`` of ``n`` no-op calls (``ThreadPoolExecutor`` ignores ``chunksize``)."""
    for _ in executor.map(identity, range(n), chunksize=chunksize):
        pass


def sleeps(executor: cf.Executor, n: int = 2000, seconds: float = 0.01) -> None:
    """I/O-like tasks: ``n`` sleeps of ``seconds`` each."""
    cf.wait([executor.submit(time.sleep, seconds) for _ in range(n)])


def python_work(n: int = 40_000) -> int:
    """Pure-Python CPU work that holds the GIL throughout (about 2 ms for the default ``n``)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def python_tasks(executor: cf.Executor, n: int = 200, size: int = 40_000) -> None:
    """CPU-bound Python: ``n`` tasks of ``python_work(size)``."""
    cf.wait([executor.submit(python_work, size) for _ in range(n)])


def _matmul_sleep(a: Any, seconds: float) -> None:
    a @ a
    time.sleep(seconds)


def matmul_sleep_tasks(executor: cf.Executor, n: int = 1000, dim: int = 50, seconds: float = 0.002) -> None:
    """The report's mixed task: a ``dim`` x ``dim`` matmul, then ``sleep(seconds)``."""
    import numpy as np

    a = np.random.default_rng(0).random((dim, dim))
    cf.wait([executor.submit(_matmul_sleep, a, seconds) for _ in range(n)])


def python_then_sleeps(executor: cf.Executor, cpu_tasks: int = 200, io_tasks: int = 2000) -> None:
    """A workload that changes halfway: ``python_tasks``, then ``sleeps``."""
    python_tasks(executor, cpu_tasks)
    sleeps(executor, io_tasks)


class _Latch:
    """Counts finished tasks of a nested workload; the caller waits for all of them."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()
        self.done = threading.Event()

    def count_down(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


def imbalanced(executor: cf.Executor, parents: int = 4, heavy_children: int = 400, seconds: float = 0.001) -> None:
    """One parent task spawns ``heavy_children`` sleeps from inside the pool, the others one
    each: a work-stealing pool must move the heavy parent's children to idle workers."""
    latch = _Latch(parents + heavy_children + parents - 1)

    def child() -> None:
        time.sleep(seconds)
        latch.count_down()

    def parent(children: int) -> None:
        for _ in range(children):
            executor.submit(child)
        latch.count_down()

    for k in range(parents):
        executor.submit(parent, heavy_children if k == 0 else 1)
    latch.done.wait()


def fan_out(executor: cf.Executor, depth: int = 4, branching: int = 6, seconds: float = 0.0005) -> None:
    """A task tree: every node sleeps ``seconds`` and submits ``branching`` children from inside
    the pool, down to ``depth`` levels (1555 nodes by default)."""
    latch = _Latch(sum(branching**level for level in range(depth + 1)))

    def node(level: int) -> None:
        time.sleep(seconds)
        if level < depth:
            for _ in range(branching):
                executor.submit(node, level + 1)
        latch.count_down()

    executor.submit(node, 0)
    latch.done.wait()


def median_time(run: Callable[[], object], repeat: int = 5) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of ``repeat`` runs of ``run``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def explorer_model_arrays(grid_size: int = 10, start: int = 0) -> dict[str, Any]:
    """The FreeAgentics explorer agent's generative model on a ``grid_size`` x ``grid_size``
    grid: ``A`` (5, N) float64, ``B`` (N, N, 5) float32, ``C`` (5,) and ``D`` (N,) float64 with
    N = grid_size**2 states (cell = row * grid_size + column); actions up, down, left, right,
    stay. ``start`` is the cell whose prior weight is doubled."""
    import numpy as np

    n = grid_size * grid_size
    A = np.tile(np.array([[0.8], [0.05], [0.05], [0.05], [0.05]]) + 0.01, (1, n))
    A /= A.sum(axis=0)
    B = np.zeros((n, n, 5), np.float32)
    cells = np.arange(n)
    rows, cols = divmod(cells, grid_size)
    for action, (dr, dc) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < grid_size) & (c >= 0) & (c < grid_size)
        target = np.where(inside, r * grid_size + c, cells)
        B[target, cells, action] += np.where(inside, 0.9, 1.0).astype(np.float32)
        B[cells, cells, action] += np.where(inside, 0.1, 0.0).astype(np.float32)
    B /= B.sum(axis=0, keepdims=True)
    C = np.array([2.0, -4.0, 8.0, 0.0, -4.0])
    D = np.ones(n)
    D[start] *= 2
    D /= D.sum()
    return {"A": A, "B": B, "C": C, "D": D}


class LockedDict:
    """FreeAgentics' registry design: one dict guarded by one lock."""

    def __init__(self) -> None:
        self._agents: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def register(self, agent_id: Any, agent: Any) -> None:
        with self._lock:
            self._agents[agent_id] = agent

    def get(self, agent_id: Any, default: Any = None) -> Any:
        with self._lock:
            return self._agents.get(agent_id, default)

    def update(self, agent_id: Any, agent: Any) -> None:
        with self._lock:
            self._agents[agent_id] = agent


def registry_plans(threads: int, operations: int, agents: int, seed: int = 0) -> list[list[tuple[str, bool]]]:
    """Per thread, ``operations / threads`` (agent id, is_update) pairs: 10% updates."""
    import random

    rng = random.Random(seed + threads)
    return [
        [(f"agent-{rng.randrange(agents)}", rng.random() < 0.1) for _ in range(operations // threads)]
        for _ in range(threads)
    ]


def registry_mix(registry: Any, plans: list[list[tuple[str, bool]]]) -> None:
    """Runs each plan on its own thread against ``registry`` (get, or update for 10%)."""
    get, update = registry.get, registry.update

    def worker(plan: list[tuple[str, bool]]) -> None:
        for agent_id, is_update in plan:
            if is_update:
                update(agent_id, agent_id)
            else:
                get(agent_id)

    workers = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

"""Smoke test of an installed freeagentics_rs: every public component once, on the backend that
FREEAGENTICS_RS_BACKEND names. Run it from outside the source tree (`make wheel-test` does), so
that it exercises the installed package, not the checkout. Not collected by pytest."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

import freeagentics_rs as fa
import numpy as np
from freeagentics_rs.agents import AgentPopulation, GridWorld, grid_world_model

EXPECTED = os.environ.get("FREEAGENTICS_RS_BACKEND", "auto")


def square(x: int) -> int:
    return x * x


class Agent:
    """The FreeAgentics agent interface the managers drive."""

    def __init__(self) -> None:
        self.beliefs = np.zeros(3)
        self.steps = 0

    def step(self, observation: object) -> int:
        self.steps += 1
        return self.steps

    def perceive(self, observation: object) -> None:
        pass

    def update_beliefs(self) -> np.ndarray:
        return self.beliefs

    def select_action(self) -> int:
        return 0

    def get_state(self) -> dict[str, object]:
        return {"steps": self.steps}


def check_backend() -> None:
    assert EXPECTED in ("auto", fa.BACKEND), (EXPECTED, fa.BACKEND)
    assert fa.__version__ and fa.__version__ != "0+unknown", fa.__version__
    assert os.path.dirname(fa.__file__).find("site-packages") >= 0, f"not the installed package: {fa.__file__}"


def check_executors() -> None:
    with fa.WorkStealingThreadPool(2) as pool:
        assert pool.submit(square, 7).result(timeout=10) == 49
        assert list(pool.map(square, range(100), chunksize=10)) == [x * x for x in range(100)]
    with fa.AdaptiveThreadPoolExecutor(min_workers=1, max_workers=4) as pool:
        assert list(pool.map(square, range(50))) == [x * x for x in range(50)]


def check_registry_and_manager() -> None:
    registry = fa.AgentRegistry(num_shards=4)
    registry.register("a", 1)
    registry[2] = "b"
    assert registry.compare_and_set("a", 1, 3) and dict(registry.items()) == {"a": 3, 2: "b"}
    manager = fa.OptimizedThreadPoolManager(initial_workers=2, max_workers=4, min_workers=1)
    try:
        for name in ("a", "b"):
            manager.register_agent(name, Agent())
        results = manager.step_all_agents({"a": 0, "b": 1}, timeout=10)
        assert all(r.success for r in results.values()), results
    finally:
        manager.shutdown()


def check_memory() -> None:
    pool = fa.SharedMemoryPool((8,), "float64", capacity=4)
    arr = pool.acquire()
    arr[:] = 1.0
    pool.release(arr)
    pool.close()
    store = fa.SharedModelStore()
    a, b = store.intern(np.arange(6.0)), store.intern(np.arange(6.0))
    assert a is b and not a.flags.writeable


async def check_async_parts(db: str) -> None:
    bus = fa.EventBus()
    with fa.AgentStateStore(db) as store:
        async with fa.AsyncAgentManager(max_workers=2, state_store=store, event_bus=bus) as manager:
            manager.register_agent("a1", Agent())
            result = await manager.execute_operation("a1", operation_type="step", data={"observation": 0})
            assert result.success, result
            await manager.step_all_agents({"a1": 0})
        store.save("x", {"q": np.ones(3), "n": 1})
        assert store.load("x")["n"] == 1


def check_event_loop_thread() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    with fa.EventLoopThread() as io:
        assert io.run(answer(), timeout=10) == 42


def check_agents() -> None:
    population = AgentPopulation(grid_world_model(3), 20, seed=0)
    world = GridWorld(3, 20, seed=0)
    for _ in range(2):
        world.move(population.step(world.observe()))
    assert population.beliefs.shape == (20, 9)


def check_profiler() -> None:
    profiler = fa.ThreadingProfiler()
    lock = profiler.create_instrumented_lock("smoke")

    def hold() -> None:
        for _ in range(100):
            with lock:
                pass

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with fa.WorkStealingThreadPool(2) as pool:
        profiler.profile_executor(pool, square, range(20))
    assert profiler.report().to_markdown()


def check_cli() -> None:
    command = shutil.which("freeagentics-rs")
    assert command, "the freeagentics-rs entry point is not installed"
    out = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "demo" in out and "bench" in out, out


def check_distributed() -> str | None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        try:
            import freeagentics_rs.distributed  # noqa: F401
        except ImportError as e:
            assert "freeagentics_rs[distributed]" in str(e), e
        else:
            raise AssertionError("freeagentics_rs.distributed imported without dask distributed")
        return "dask distributed is not installed (the import error names the extra)"
    from freeagentics_rs.distributed import DistributedPopulation, executor

    assert DistributedPopulation and executor
    return None


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        steps: list[tuple[str, Callable[[], str | None]]] = [
            ("backend and version", check_backend),
            ("executors", check_executors),
            ("registry and manager", check_registry_and_manager),
            ("memory", check_memory),
            ("async manager, event bus and state store", lambda: asyncio.run(check_async_parts(f"{tmp}/s.db"))),
            ("event loop thread", check_event_loop_thread),
            ("agents", check_agents),
            ("profiler", check_profiler),
            ("cli", check_cli),
            ("distributed", check_distributed),
        ]
        for name, step in steps:
            skipped = step()
            print(f"  skipped {name}: {skipped}" if skipped else f"  ok {name}")
    print(f"smoke test passed: freeagentics_rs {fa.__version__}, backend {fa.BACKEND}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

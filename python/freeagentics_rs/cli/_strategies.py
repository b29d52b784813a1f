"""The execution strategies ``freeagentics-rs demo`` compares on one multi-agent simulation
(``GridWorld`` + explorer agents). Each returns what it measured: agent-steps done, seconds,
memory per agent; none is estimated.

Per-agent strategies step pymdp 0.0.7.1 agents (what FreeAgentics runs), one task per agent and
step; they are slow, so they run until ``budget`` seconds are spent and report the agent-steps
they finished. The native strategies step the whole population per call."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from ..agents import AgentPopulation, GridWorld, grid_world_model
from ._machine import allocated

STRATEGIES = ("freeagentics", "workstealing", "adaptive", "native-rust", "native-python", "processes")
LABELS = {
    "freeagentics": "FreeAgentics' design: pymdp agents on ThreadPoolExecutor(8)",
    "workstealing": "pymdp agents on WorkStealingThreadPool(8)",
    "adaptive": "pymdp agents on AdaptiveThreadPoolExecutor",
    "native-rust": "native population, Rust kernel",
    "native-python": "native population, numpy kernel",
    "processes": "native population in processes, shared memory",
}


class Unavailable(Exception):
    """A strategy cannot run here; the message says why, in one line."""


@dataclass
class Outcome:
    agent_steps: int
    seconds: float
    memory_per_agent: float | None
    time_boxed: bool = False  # stopped at the time budget
    notes: list[str] = field(default_factory=list)


@dataclass
class Simulation:
    agents: int
    steps: int
    grid: int
    seed: int = 0
    budget: float = 4.0
    progress: Callable[[int], None] = lambda steps: None

    def world(self) -> GridWorld:
        obstacles = [(r, (3 * r + 1) % self.grid) for r in range(1, self.grid - 1, 2)]
        return GridWorld(self.grid, self.agents, obstacles=obstacles, seed=self.seed)


def _pymdp_agents(sim: Simulation, cache: dict[str, Any]) -> tuple[list[Any], float]:
    """One pymdp Agent per simulated agent (built once, shared by the per-agent strategies)."""
    if "pymdp" not in cache:
        try:
            from pymdp import utils
            from pymdp.agent import Agent
        except ImportError:
            raise Unavailable(
                "pymdp 0.0.7.1 is not installed (pip install --no-deps inferactively-pymdp==0.0.7.1 "
                "plus scipy, pandas, matplotlib, seaborn)"
            ) from None
        model = grid_world_model(sim.grid)

        def obj(arrays: list[Any]) -> Any:
            out = utils.obj_array(len(arrays))
            for i, a in enumerate(arrays):
                out[i] = np.array(a)  # FreeAgentics: every agent its own copy
            return out

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agents, nbytes = allocated(
                lambda: [
                    Agent(
                        A=obj(model.A),
                        B=obj([model.B]),
                        C=obj(model.C),
                        D=obj([model.D]),
                        policy_len=1,
                        inference_algo="VANILLA",
                        gamma=8.0,
                        alpha=8.0,
                        action_selection="stochastic",
                    )
                    for _ in range(sim.agents)
                ]
            )
        cache["pymdp"] = (agents, nbytes / sim.agents)
    agents_and_bytes: tuple[list[Any], float] = cache["pymdp"]
    return agents_and_bytes


def _step_pymdp(agent: Any, observation: int) -> int:
    agent.infer_states([observation])
    agent.infer_policies()
    return int(agent.sample_action()[0])


def per_agent(make_executor: Callable[[], cf.Executor]) -> Callable[[Simulation, dict[str, Any]], Outcome]:
    def run(sim: Simulation, cache: dict[str, Any]) -> Outcome:
        agents, memory = _pymdp_agents(sim, cache)
        world = sim.world()
        done, boxed = 0, False
        start = time.perf_counter()
        with make_executor() as executor:
            try:
                for _ in range(sim.steps):
                    obs = world.observe()
                    futures = [executor.submit(_step_pymdp, a, int(o)) for a, o in zip(agents, obs, strict=True)]
                    actions = np.full(sim.agents, 4)
                    for _ in cf.as_completed(futures):
                        done += 1
                        sim.progress(1)
                        if time.perf_counter() - start > sim.budget:
                            boxed = True
                            break
                    for i, future in enumerate(futures):
                        if boxed:
                            future.cancel()
                        elif future.done():
                            actions[i] = future.result()
                    if boxed:
                        break
                    world.move(actions)
                elapsed = time.perf_counter() - start
            except BaseException:  # Ctrl-C: drop the queued agent steps instead of running them
                executor.shutdown(wait=True, cancel_futures=True)
                raise
        return Outcome(done, elapsed, memory, boxed)

    return run


def native(backend: str) -> Callable[[Simulation, dict[str, Any]], Outcome]:
    def run(sim: Simulation, cache: dict[str, Any]) -> Outcome:
        if backend == "rust":
            from .. import _backend

            try:
                _backend.native()
            except ImportError as e:
                raise Unavailable(str(e)) from None
        model = grid_world_model(sim.grid, backend=backend)
        population, nbytes = allocated(lambda: AgentPopulation(model, sim.agents, seed=sim.seed, backend=backend))
        memory = nbytes / sim.agents
        world = sim.world()
        population.step(world.observe())  # warm-up: pools started, caches filled
        population.reset()
        start = time.perf_counter()
        for _ in range(sim.steps):
            world.move(population.step(world.observe()))
            sim.progress(sim.agents)
        return Outcome(sim.agents * sim.steps, time.perf_counter() - start, memory)

    return run


def _shard_worker(conn: Any, grid: int, rows: slice, seed: int, slots: tuple[str, int, str, int]) -> None:
    """A worker process: its rows of the population, observations in and actions out through
    the two shared-memory slots. Ctrl-C is the parent's to handle: it stops the workers."""
    import signal

    from ..memory import SharedMemoryPool

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    model = grid_world_model(grid, backend="python")
    population, nbytes = allocated(lambda: AgentPopulation(model, rows.stop - rows.start, seed=seed, backend="python"))
    obs_name, obs_slot, act_name, act_slot = slots
    observations = SharedMemoryPool.attach(obs_name).view(obs_slot)[rows]
    actions = SharedMemoryPool.attach(act_name).view(act_slot)[rows]
    conn.send(nbytes)
    while conn.recv():
        actions[:] = population.step(observations)
        conn.send(True)


def processes(sim: Simulation, cache: dict[str, Any]) -> Outcome:
    from .. import available_cpus
    from ..memory import SharedMemoryPool

    workers = max(1, min(available_cpus(), sim.agents))
    bounds = np.linspace(0, sim.agents, workers + 1).astype(int)
    try:
        obs_pool = SharedMemoryPool(sim.agents, "int64", capacity=1, shared=True)
        act_pool = SharedMemoryPool(sim.agents, "int64", capacity=1, shared=True)
    except OSError as e:
        raise Unavailable(f"no POSIX shared memory here: {e}") from None
    observations, actions = obs_pool.acquire(), act_pool.acquire()
    slots = (obs_pool.name, obs_pool.slot_of(observations), act_pool.name, act_pool.slot_of(actions))
    context = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        for lo, hi in pairwise(bounds):
            parent, child = context.Pipe()
            rows = slice(int(lo), int(hi))
            proc = context.Process(
                target=_shard_worker, args=(child, sim.grid, rows, sim.seed + int(lo), slots), daemon=True
            )
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        memory = sum(p.recv() for p in pipes) / sim.agents
        world = sim.world()
        start = time.perf_counter()
        for _ in range(sim.steps):
            observations[:] = world.observe()
            for p in pipes:
                p.send(True)
            for p in pipes:
                p.recv()
            world.move(actions.copy())
            sim.progress(sim.agents)
        elapsed = time.perf_counter() - start
    finally:
        for p in pipes:
            try:
                p.send(False)
            except OSError:
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        del observations, actions
        obs_pool.close()
        act_pool.close()
    return Outcome(sim.agents * sim.steps, elapsed, memory, notes=[f"{workers} worker processes, numpy kernel"])


def runner(name: str) -> Callable[[Simulation, dict[str, Any]], Outcome]:
    from ..executor import AdaptiveThreadPoolExecutor, WorkStealingThreadPool

    return {
        "freeagentics": per_agent(lambda: cf.ThreadPoolExecutor(8)),
        "workstealing": per_agent(lambda: WorkStealingThreadPool(8)),
        "adaptive": per_agent(AdaptiveThreadPoolExecutor),
        "native-rust": native("rust"),
        "native-python": native("python"),
        "processes": processes,
    }[name]

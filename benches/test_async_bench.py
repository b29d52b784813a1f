"""Async agent I/O, in the same run: 50 agents stepping, each step doing the report's four I/O
operations (load and save state in a real SQLite file, fetch an observation and broadcast an
event with 10 ms of simulated network latency each), under FreeAgentics' two patterns and under
AsyncAgentManager; and `save_many` of 1000 states against 1000 single saves. A round steps every
agent once. The serialized baselines time 2 rounds per sample and the manager 20 (its rounds take
a twentieth of theirs); the table prints the rounds per sample and the median per round beside
the median per sample, and rates in agent-steps per second. The gain is 50 agents' steps
overlapping on the event loop against FreeAgentics' patterns: 2 workers, or one operation at a
time.

Then the default sizing: 50 agents whose step blocks 10 ms on I/O inside the step itself (on the
executor), under FreeAgentics' serialized AsyncAgentManager (one operation at a time on a pool
of one worker per CPU, 2 here) and under ``AsyncAgentManager()`` with default arguments (an
adaptive pool that grows while the steps wait). The gain there is 50 agents overlapping
against FreeAgentics' one-at-a-time on 2 workers; the adaptive pool's warm-up (it starts at 2
workers) is inside the timing."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AgentStateStore, AsyncAgentManager, EventBus
from freeagentics_rs._cpus import available_cpus

AGENTS = 50
LATENCY = 0.010


class Agent:
    def __init__(self) -> None:
        self.beliefs = np.full(100, 0.01)

    def step(self, observation):
        self.beliefs = self.beliefs * 0.9 + 0.001
        return int(self.beliefs.argmax())

    def get_state(self):
        return {"beliefs": self.beliefs}

    def set_state(self, state):
        self.beliefs = state["beliefs"]


async def fetch_observation(agent_id):
    await asyncio.sleep(LATENCY)
    return agent_id


class NetworkBus(EventBus):
    async def broadcast(self, topic, event):
        await asyncio.sleep(LATENCY)
        return await super().broadcast(topic, event)


def per_event_loops(store, agents, rounds):
    """FreeAgentics' pattern: a 2-worker pool whose workers run each I/O coroutine on a fresh
    event loop with run_until_complete."""

    def step(agent_id, agent):
        loop = asyncio.new_event_loop()
        try:
            observation = loop.run_until_complete(fetch_observation(agent_id))
        finally:
            loop.close()
        agent.set_state(store.load(agent_id))
        agent.step(observation)
        store.save(agent_id, agent.get_state())
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.sleep(LATENCY))  # the broadcast
        finally:
            loop.close()

    with ThreadPoolExecutor(2) as pool:
        for _ in range(rounds):
            list(pool.map(step, agents, agents.values()))


def serialized_manager(store, agents, rounds):
    """FreeAgentics' AsyncAgentManager: each operation awaited before the next is started."""

    async def main():
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(rounds):
                for agent_id, agent in agents.items():
                    observation = await fetch_observation(agent_id)
                    agent.set_state(await loop.run_in_executor(pool, store.load, agent_id))
                    await loop.run_in_executor(pool, agent.step, observation)
                    await loop.run_in_executor(pool, store.save, agent_id, agent.get_state())
                    await asyncio.sleep(LATENCY)  # the broadcast

    asyncio.run(main())


def async_manager(store, agents, rounds, backend):
    async def main():
        manager = AsyncAgentManager(
            8, state_store=store, event_bus=NetworkBus(), observation_source=fetch_observation, backend=backend
        )
        async with manager:
            for agent_id, agent in agents.items():
                manager.register_agent(agent_id, agent)
            for _ in range(rounds):
                await asyncio.gather(*(manager.load_agent_state_async(a) for a in agents))
                await manager.step_all_agents()  # fetch, step, then save and broadcast

    asyncio.run(main())


PATTERNS = {
    "FreeAgentics: run_until_complete per event, 2 workers": (lambda s, a, b: per_event_loops(s, a, 2), 2),
    "FreeAgentics: serialized AsyncAgentManager": (lambda s, a, b: serialized_manager(s, a, 2), 2),
    "AsyncAgentManager (python)": (lambda s, a, b: async_manager(s, a, 20, "python"), 20),
    "AsyncAgentManager (rust)": (lambda s, a, b: async_manager(s, a, 20, "rust"), 20),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_agent_io(benchmark, tmp_path, pattern):
    if pattern.endswith("(rust)") and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    run, rounds = PATTERNS[pattern]
    benchmark.group = (
        f"agent I/O: {AGENTS} agents, 4 I/O operations per step (50 overlapping vs 2 workers or one at a time)"
    )
    benchmark.extra_info.update(family="agent-io", steps=AGENTS * rounds, rounds=rounds)
    store = AgentStateStore(tmp_path / "states.db")
    agents = {f"agent-{i}": Agent() for i in range(AGENTS)}
    store.save_many({a: agent.get_state() for a, agent in agents.items()})
    try:
        benchmark.pedantic(run, args=(store, agents, None), rounds=3, iterations=1)
    finally:
        store.close()


@pytest.mark.parametrize("how", ["1000 x save", "save_many(1000)"])
def test_save_many(benchmark, tmp_path, how):
    benchmark.group = "state store: 1000 agents' states (100 float64 beliefs each)"
    benchmark.extra_info.update(family="agent-io", steps=1000)
    store = AgentStateStore(tmp_path / "many.db")
    states = {f"agent-{i}": {"beliefs": np.random.default_rng(i).random(100), "step": i} for i in range(1000)}

    def single():
        for agent_id, state in states.items():
            store.save(agent_id, state)

    try:
        benchmark.pedantic(
            single if how == "1000 x save" else (lambda: store.save_many(states)),
            rounds=5,
            iterations=1,
            warmup_rounds=1,
        )
    finally:
        store.close()


class BlockingAgent:
    """A step that waits 10 ms on I/O (a blocking client call) inside the step."""

    def step(self, observation):
        time.sleep(LATENCY)
        return observation


def serialized_blocking(rounds):
    """FreeAgentics' AsyncAgentManager: a pool of one worker per CPU, each operation awaited
    before the next is taken from its queue."""
    agents = {f"agent-{i}": BlockingAgent() for i in range(AGENTS)}

    async def main():
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(available_cpus()) as pool:
            for _ in range(rounds):
                for agent_id, agent in agents.items():
                    await loop.run_in_executor(pool, agent.step, agent_id)

    asyncio.run(main())


def manager_blocking(rounds, backend, max_workers=None):
    agents = {f"agent-{i}": BlockingAgent() for i in range(AGENTS)}

    async def main():
        async with AsyncAgentManager(max_workers, backend=backend) as manager:
            for agent_id, agent in agents.items():
                manager.register_agent(agent_id, agent)
            observations = {agent_id: agent_id for agent_id in agents}
            for _ in range(rounds):
                results = await manager.step_all_agents(observations)
                assert all(r.success for r in results.values())

    asyncio.run(main())


BLOCKING = {
    f"FreeAgentics: serialized AsyncAgentManager ({available_cpus()} workers, one operation at a time)": (
        lambda: serialized_blocking(2),
        2,
    ),
    f"AsyncAgentManager({available_cpus()}): the old default, one worker per CPU": (
        lambda: manager_blocking(20, freeagentics_rs.BACKEND, available_cpus()),
        20,
    ),
    "AsyncAgentManager() default, adaptive (python)": (lambda: manager_blocking(20, "python"), 20),
    "AsyncAgentManager() default, adaptive (rust)": (lambda: manager_blocking(20, "rust"), 20),
}


@pytest.mark.parametrize("manager", list(BLOCKING))
def test_default_sizing_blocking_steps(benchmark, manager):
    if manager.endswith("(rust)") and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")
    run, rounds = BLOCKING[manager]
    benchmark.group = (
        f"default sizing: {AGENTS} agents, each step blocks 10 ms "
        f"(50 overlapping vs one at a time on {available_cpus()} workers)"
    )
    benchmark.extra_info.update(family="agent-io", steps=AGENTS * rounds, rounds=rounds)
    benchmark.pedantic(run, rounds=3, iterations=1)

"""AsyncAgentManager on both backends: overlap, per-agent order, timeouts that cancel, the step
pipeline with a state store, an event bus and an observation source."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from freeagentics_rs import AgentStateStore, AsyncAgentManager, EventBus, WorkStealingThreadPool


class Agent:
    def __init__(self, name, delay=0.0):
        self.name, self.delay = name, delay
        self.seen: list = []
        self.beliefs = np.zeros(4)
        self._busy = threading.Lock()

    def step(self, observation):
        if not self._busy.acquire(blocking=False):
            raise AssertionError("two operations of one agent overlapped")
        try:
            time.sleep(self.delay)
            self.seen.append(observation)
            self.beliefs += 1
            return len(self.seen)
        finally:
            self._busy.release()

    def select_action(self):
        return "left"

    def get_state(self):
        return {"beliefs": self.beliefs.copy(), "steps": len(self.seen)}

    def set_state(self, state):
        self.beliefs = state["beliefs"]


def run(coro):
    return asyncio.run(coro)


def test_operations_on_different_agents_overlap_and_keep_agent_state(backend):
    async def main():
        async with AsyncAgentManager(8, backend=backend) as m:
            agents = [Agent(f"a{i}", delay=0.02) for i in range(8)]
            for a in agents:
                m.register_agent(a.name, a)
            first = await m.step_all_agents({a.name: 1 for a in agents})
            second = await m.step_all_agents({a.name: 2 for a in agents})
            return agents, first, second, m.get_stats()

    agents, first, second, stats = run(main())
    assert all(r.success and r.result == 1 for r in first.values())
    assert all(r.result == 2 for r in second.values())  # the live agent kept its state
    assert all(a.seen == [1, 2] for a in agents)
    assert stats["succeeded"] == 16 and stats["operations"] == 16
    ids = [r.operation_id for r in first.values()] + [r.operation_id for r in second.values()]
    assert len(set(ids)) == 16


def test_one_agents_operations_run_in_order_one_at_a_time(backend):
    async def main():
        async with AsyncAgentManager(4, backend=backend) as m:
            agent = Agent("solo", delay=0.001)
            m.register_agent("solo", agent)
            results = await m.execute_batch_operations([("solo", "step", {"observation": i}) for i in range(50)])
            return agent, results

    agent, results = run(main())
    assert agent.seen == list(range(50))
    assert [r.result for r in results] == list(range(1, 51))


def test_a_timed_out_operation_that_has_not_started_never_runs(backend):
    async def main():
        executor = WorkStealingThreadPool(1, backend=backend)
        async with AsyncAgentManager(executor=executor) as m:
            slow, queued = Agent("slow", delay=0.3), Agent("queued")
            m.register_agent("slow", slow)
            m.register_agent("queued", queued)
            busy = asyncio.ensure_future(m.execute_operation("slow", "step", {"observation": 1}))
            while not slow._busy.locked():  # the only worker is now busy (however loaded the machine)
                await asyncio.sleep(0.001)
            late = await m.execute_operation("queued", "step", {"observation": "late"}, timeout=0.05)
            same_agent = await m.execute_operation("slow", "step", {"observation": 2}, timeout=0.05)
            done = await busy
            await asyncio.sleep(0.1)
            stats = m.get_stats()
        executor.shutdown()
        return slow, queued, late, same_agent, done, stats

    slow, queued, late, same_agent, done, stats = run(main())
    assert not late.success and late.error == "operation 'step' timed out after 0.05 s"
    assert not same_agent.success and done.success
    assert queued.seen == [] and slow.seen == [1]  # neither timed-out step ran later
    assert stats["timeouts"] == 2


def test_failures_are_results_not_exceptions(backend):
    class Broken(Agent):
        def step(self, observation):
            raise ValueError("bad observation")

    async def main():
        async with AsyncAgentManager(2, backend=backend) as m:
            m.register_agent("b", Broken("b"))
            return (
                await m.execute_operation("b", "step", {"observation": 0}),
                await m.execute_operation("ghost", "step", {}),
                await m.execute_operation("b", "dance", {}),
            )

    error, missing, unknown = run(main())
    assert (error.success, error.error) == (False, "bad observation")
    assert missing.error == "agent 'ghost' is not registered"
    assert unknown.error.startswith("unknown operation 'dance'; valid operations: perceive")


def test_the_step_pipeline_fetches_steps_saves_and_broadcasts(tmp_path, backend):
    async def source(agent_id):
        await asyncio.sleep(0.01)  # a network fetch
        return f"obs-{agent_id}"

    async def main():
        bus = EventBus()
        events = bus.subscribe("agent.step")
        with AgentStateStore(tmp_path / "s.db", backend=backend) as store:
            async with AsyncAgentManager(
                4, state_store=store, event_bus=bus, observation_source=source, backend=backend
            ) as m:
                agents = [Agent(f"a{i}") for i in range(6)]
                for a in agents:
                    m.register_agent(a.name, a)
                results = await m.step_all_agents()  # observations from the source
                got = [await events.__anext__() for _ in range(6)]
                agents[0].beliefs = np.full(4, -1.0)
                loaded = await m.load_agent_state_async("a0")
                return agents, results, got, loaded, store.load("a3")

    agents, results, got, loaded, stored = run(main())
    assert all(r.success for r in results.values())
    assert [a.seen for a in agents] == [[f"obs-a{i}"] for i in range(6)]
    assert sorted(e["agent_id"] for e in got) == [f"a{i}" for i in range(6)]
    assert stored["steps"] == 1 and np.array_equal(stored["beliefs"], np.ones(4))
    assert np.array_equal(loaded["beliefs"], np.ones(4)) and np.array_equal(agents[0].beliefs, np.ones(4))


def test_bad_arguments(backend):
    with pytest.raises(ValueError, match="max_workers or executor"):
        AsyncAgentManager(2, executor=WorkStealingThreadPool(1, backend=backend))
    with pytest.raises(TypeError, match="observation_source: must be an async callable"):
        AsyncAgentManager(observation_source=3, backend=backend)


def test_a_timed_out_running_operation_still_excludes_the_agents_next_one(backend):
    async def main():
        async with AsyncAgentManager(4, backend=backend) as m:
            agent = Agent("a", delay=0.2)
            m.register_agent("a", agent)
            first = await m.execute_operation("a", "step", {"observation": 1}, timeout=0.05)
            agent.delay = 0.0
            second = await m.execute_operation("a", "step", {"observation": 2}, timeout=5)
            return first, second, agent

    first, second, agent = run(main())
    assert not first.success and "timed out" in first.error
    assert second.success, second.error  # it waited for the first to finish, no overlap
    assert agent.seen == [1, 2]


def test_one_agents_failing_fetch_does_not_sink_the_others(backend):
    async def source(agent_id):
        if agent_id == "down":
            raise ConnectionError("sensor offline")
        return 1

    async def main():
        async with AsyncAgentManager(2, observation_source=source, backend=backend) as m:
            for name in ("up", "down"):
                m.register_agent(name, Agent(name))
            return await m.step_all_agents()

    results = run(main())
    assert results["up"].success
    assert not results["down"].success and "sensor offline" in results["down"].error


def test_one_manager_works_from_successive_event_loops(backend):
    # Issue 14 item 11: each agent's lock was bound to the first loop that used it.
    executor = WorkStealingThreadPool(4, backend=backend)
    m = AsyncAgentManager(executor=executor)
    agent = Agent("a", delay=0.01)
    m.register_agent("a", agent)

    async def burst(start):
        return await m.execute_batch_operations([("a", "step", {"observation": start + i}) for i in range(3)])

    try:
        first = asyncio.run(burst(0))
        second = asyncio.run(burst(3))  # concurrent operations on one agent, a new loop
    finally:
        executor.shutdown()
    assert all(r.success for r in first + second), [r.error for r in first + second]
    assert agent.seen == list(range(6))


def test_an_operation_that_timed_out_on_a_closed_loop_frees_its_agent(backend):
    # Issue 14 item 11: the agent's release was scheduled on the loop, which had closed by the
    # time the operation finished: the agent stayed locked forever.
    executor = WorkStealingThreadPool(2, backend=backend)
    m = AsyncAgentManager(executor=executor)
    agent = Agent("a", delay=0.3)
    m.register_agent("a", agent)
    try:
        first = asyncio.run(m.execute_operation("a", "step", {"observation": 1}, timeout=0.05))
        agent.delay = 0.0
        second = asyncio.run(m.execute_operation("a", "step", {"observation": 2}, timeout=5))
    finally:
        executor.shutdown()
    assert not first.success and "timed out" in first.error
    assert second.success, second.error
    assert agent.seen == [1, 2]

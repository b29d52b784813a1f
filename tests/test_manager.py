"""OptimizedThreadPoolManager on both backends: FreeAgentics' API and its fixed bugs."""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import Future

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import (
    AdaptiveThreadPoolExecutor,
    AgentNotRegisteredError,
    AgentTask,
    ManagerShutdownError,
    OptimizedThreadPoolManager,
    TaskResult,
    WorkStealingThreadPool,
)
from freeagentics_rs.manager import _manager
from hypothesis import given, settings
from hypothesis import strategies as st


class Agent:
    """Records its steps; fails loudly if two of its operations ever overlap."""

    def __init__(self, name, delay=0.0):
        self.name, self.delay = name, delay
        self.beliefs = {"name": name}
        self.steps: list = []
        self._busy = threading.Lock()

    def _enter(self):
        if not self._busy.acquire(blocking=False):
            raise AssertionError(f"two operations of {self.name} ran at once")

    def step(self, observation):
        self._enter()
        try:
            time.sleep(self.delay)
            self.steps.append(observation)
            return f"action-{observation}"
        finally:
            self._busy.release()

    def perceive(self, observation):
        self.beliefs["seen"] = observation

    def update_beliefs(self):
        self.beliefs["updated"] = True

    def select_action(self):
        return "up"


@pytest.fixture
def manager(backend):
    managers = []

    def make(**kwargs):
        m = OptimizedThreadPoolManager(backend=backend, **kwargs)
        managers.append(m)
        return m

    yield make
    for m in managers:
        m.shutdown()


def test_every_operation_and_every_task_result_field(manager, backend):
    m = manager()
    assert m.backend == backend
    agent = Agent("a")
    m.register_agent("a", agent)
    before = time.time()
    step = m.submit_task("a", "step", {"observation": 3}).result(timeout=10)
    assert isinstance(step, TaskResult)
    assert (step.agent_id, step.operation, step.success, step.result, step.error) == (
        "a",
        "step",
        True,
        "action-3",
        None,
    )
    assert step.execution_time_ms >= 0 and step.queue_wait_ms >= 0 and before <= step.timestamp <= time.time()
    assert m.submit_task("a", "perceive", {"observation": 9}).result(timeout=10).result is None
    assert agent.beliefs["seen"] == 9
    beliefs = m.submit_task("a", "update_beliefs", {}).result(timeout=10)
    assert beliefs.result is agent.beliefs and beliefs.result["updated"]
    assert m.submit_task("a", "select_action", {}).result(timeout=10).result == "up"
    unknown = m.submit_task("a", "fly", {}).result(timeout=10)
    assert not unknown.success and unknown.result is None
    assert unknown.error == "unknown operation 'fly'; valid operations: perceive, select_action, step, update_beliefs"
    stats = m.get_performance_stats()["a"]
    assert (stats["total_tasks"], stats["successful_tasks"], stats["failed_tasks"]) == (5, 4, 1)
    assert stats["last_error"] == unknown.error and stats["avg_time_ms"] >= 0


def test_an_unregistered_agent_is_an_error_at_submit(manager):
    m = manager()
    with pytest.raises(AgentNotRegisteredError, match="agent 'ghost' is not registered") as info:
        m.submit_task("ghost", "step", {})
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    m.register_agent("a", Agent("a"))
    m.unregister_agent("a")
    m.unregister_agent("a")  # no error, as in FreeAgentics
    with pytest.raises(KeyError):
        m.submit_task("a", "step", {})


def test_agents_that_raise_give_failed_results_and_the_pool_lives_on(manager):
    class Broken(Agent):
        def step(self, observation):
            raise RuntimeError(f"sensor {observation} offline")

    m = manager()
    m.register_agent("b", Broken("b"))
    m.register_agent("ok", Agent("ok"))
    results = m.step_all_agents({"b": 1, "ok": 2})
    assert results["b"].success is False and results["b"].error == "sensor 1 offline"
    assert results["ok"].success and results["ok"].result == "action-2"
    assert m.get_performance_stats()["b"]["failed_tasks"] == 1


def test_tasks_of_one_agent_never_overlap_and_run_in_order(manager):
    m = manager(initial_workers=8)
    agents = [Agent(f"a{i}", delay=0.0005) for i in range(6)]
    for agent in agents:
        m.register_agent(agent.name, agent)
    futures: dict[str, list[Future]] = {agent.name: [] for agent in agents}

    def submitter(k):
        for agent in agents:
            for i in range(20):
                futures[agent.name].append((k, i, m.submit_task(agent.name, "step", {"observation": (k, i)})))

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for agent in agents:
        assert all(f.result(timeout=30).success for _, _, f in futures[agent.name]), agent.name
        # Per submitter, an agent saw its observations in submission order.
        for k in range(3):
            assert [i for kk, i in agent.steps if kk == k] == list(range(20))


def test_priority_orders_the_queued_tasks(manager):
    m = manager(initial_workers=1, min_workers=1, max_workers=1)
    gate, order = threading.Event(), []

    class Blocker:
        def step(self, observation):
            gate.wait(10)

    class Recorder:
        def __init__(self, name):
            self.name = name

        def step(self, observation):
            order.append(self.name)

    m.register_agent("blocker", Blocker())
    first = m.submit_task("blocker", "step", {})
    while m.get_pool_status()["active_tasks"] != 1:
        time.sleep(0.001)
    for name, priority in [("low", 0), ("high", 5), ("mid", 2), ("high2", 5), ("neg", -1)]:
        m.register_agent(name, Recorder(name))
        m.submit_task(name, "step", {}, priority=priority)
    assert m.get_pool_status()["queue_size"] == 5
    gate.set()
    first.result(timeout=10)
    m.shutdown(wait=True)
    assert order == ["high", "high2", "mid", "low", "neg"]


def test_step_all_agents_with_a_timeout_returns_partial_results_and_leaks_nothing(manager):
    m = manager(initial_workers=2, min_workers=2, max_workers=2)
    release = threading.Event()

    class Slow(Agent):
        def step(self, observation):
            release.wait(10)
            return "late"

    for i in range(2):
        m.register_agent(f"slow{i}", Slow(f"slow{i}"))
    for i in range(6):
        m.register_agent(f"fast{i}", Agent(f"fast{i}"))
    # Both workers get stuck on slow agents; the fast ones queue behind them.
    m.submit_task("slow0", "step", {})
    m.submit_task("slow1", "step", {})
    while m.get_pool_status()["active_tasks"] != 2:
        time.sleep(0.001)
    results = m.step_all_agents(
        {a: 1 for a in [f"slow{i}" for i in range(2)] + [f"fast{i}" for i in range(6)]}, timeout=0.2
    )
    assert set(results) == {f"slow{i}" for i in range(2)} | {f"fast{i}" for i in range(6)}
    assert all(r.success is False and r.error == "timeout" for r in results.values())
    # Every step that had not started was cancelled and dropped from the queue.
    status = m.get_pool_status()
    release.set()
    assert (status["queue_size"], status["active_tasks"]) == (0, 2)
    m.shutdown(wait=True)
    stats = m.get_performance_stats()
    assert set(stats) == {"slow0", "slow1"} and stats["slow0"]["total_tasks"] == 1, stats


def test_batch_execute_keeps_order_and_refuses_unknown_agents_before_submitting(manager):
    m = manager()
    agents = {name: Agent(name) for name in "abc"}
    for name, agent in agents.items():
        m.register_agent(name, agent)
    results = m.batch_execute(
        [("a", "step", {"observation": 1}), AgentTask("c", "select_action", {}), ("b", "step", {"observation": 2})]
    )
    assert [r.agent_id for r in results] == ["a", "c", "b"] and all(r.success for r in results)
    assert [r.result for r in results] == ["action-1", "up", "action-2"]
    # Issue 16 item 4: FreeAgentics raised ValueError here; this gave a failed result.
    with pytest.raises(ValueError, match="agent 'ghost' is not registered") as info:
        m.batch_execute([("a", "step", {"observation": 3}), ("ghost", "step", {})])
    assert isinstance(info.value, AgentNotRegisteredError) and isinstance(info.value, KeyError)
    m.shutdown(wait=True)
    assert agents["a"].steps == [1]  # nothing of the refused batch ran


def test_the_pool_grows_under_load_and_shrinks_when_idle_without_being_rebuilt(manager, monkeypatch):
    monkeypatch.setattr(_manager, "IDLE_SHRINK_AFTER", 0.05)
    m = manager(initial_workers=4, min_workers=2, max_workers=32)
    executor = m.executor
    for i in range(40):
        m.register_agent(i, Agent(str(i), delay=0.002))
    m.step_all_agents({i: i for i in range(40)})
    grown = m.get_pool_status()["current_workers"]
    assert grown == 32 and executor.stats()["target_workers"] == 32
    for _ in range(400):
        if m.get_pool_status()["current_workers"] == 2:
            break
        time.sleep(0.01)
    status = m.get_pool_status()
    assert status["current_workers"] == 2 and status["active_tasks"] == 0 and status["queue_size"] == 0
    assert m.executor is executor
    assert all(r.success for r in m.step_all_agents({i: i for i in range(40)}).values())


def test_submit_after_shutdown_and_bad_arguments(manager, backend):
    m = manager()
    m.register_agent("a", Agent("a"))
    m.shutdown()
    assert m.get_pool_status()["total_agents"] == 0
    for call in (lambda: m.submit_task("a", "step", {}), lambda: m.batch_execute([("a", "step", {})])):
        # Issue 16 item 4: a RuntimeError, and the ValueError FreeAgentics raised.
        for error in (RuntimeError, ValueError, ManagerShutdownError):
            with pytest.raises(error, match="cannot submit tasks after shutdown"):
                call()
    with pytest.raises(ValueError, match=r"scaling_threshold: must be greater than 0.0, got 0"):
        OptimizedThreadPoolManager(scaling_threshold=0, backend=backend)
    with pytest.raises(ValueError, match=r"scaling_threshold: must be between 0.0 and 1.0, got 1.5"):
        OptimizedThreadPoolManager(scaling_threshold=1.5, backend=backend)
    with pytest.raises(TypeError, match="max_workers: must be an int, not str"):
        OptimizedThreadPoolManager(max_workers="8", backend=backend)
    for name in ("initial_workers", "max_workers", "min_workers"):
        with pytest.raises(ValueError, match=f"{name}: must be between 1 and 4096, got -1"):
            OptimizedThreadPoolManager(**{name: -1}, backend=backend)
    with pytest.raises(ValueError, match="max_workers: must be between 1 and 4096, got 1099511627776"):
        OptimizedThreadPoolManager(max_workers=2**40, backend=backend)


def test_a_non_numeric_scaling_threshold_is_a_type_error_naming_it(backend):
    # Issue 14 item 15: gave "'<' not supported between instances of 'int' and 'str'".
    with pytest.raises(TypeError, match="scaling_threshold: must be a number, not str"):
        OptimizedThreadPoolManager(scaling_threshold="x", backend=backend)
    m = OptimizedThreadPoolManager(4, np.int64(8), np.int32(2), np.float32(0.5), backend=backend)
    assert (m.current_workers, m.max_workers, m.min_workers, m.scaling_threshold) == (4, 8, 2, 0.5)
    m.shutdown()


@pytest.mark.parametrize(
    "kwargs, using",
    [
        # EnhancedAgentCoordinator's default configuration
        ({"initial_workers": 50, "max_workers": 20, "scaling_threshold": 0.8}, (20, 20, 2)),
        # FreeAgentics' threading benchmark with one agent
        ({"initial_workers": 1, "max_workers": 2}, (1, 2, 1)),
        ({"initial_workers": 4, "max_workers": 8, "min_workers": 9}, (4, 8, 4)),
    ],
)
def test_sizes_freeagentics_accepted_are_clamped_with_one_warning(backend, kwargs, using):
    # Issue 16 item 1: these raised ValueError; FreeAgentics accepted them.
    with pytest.warns(RuntimeWarning) as warned:
        m = OptimizedThreadPoolManager(**kwargs, backend=backend)
    try:
        assert len(warned) == 1
        message = str(warned[0].message)
        initial, maximum, minimum = using
        assert f"initial_workers={kwargs['initial_workers']}" in message
        assert f"using initial_workers={initial}, max_workers={maximum}, min_workers={minimum}" in message
        assert (m.current_workers, m.max_workers, m.min_workers) == using
        m.register_agent("a", Agent("a"))
        assert m.step_all_agents({"a": 1})["a"].result == "action-1"
    finally:
        m.shutdown()


def test_consistent_sizes_do_not_warn(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for args in [(), (4,), (16, 64, 2), (1, 1, 1)]:
            OptimizedThreadPoolManager(*args, backend=backend).shutdown()


def hammer_manager(backend, seed, submitters=4, per_thread=300):
    """Random submits with random priorities, timeouts and a shutdown midway, against a model:
    every accepted task either ran once (agents check they never overlap) or was cancelled."""
    import random

    rng = random.Random(seed)
    m = OptimizedThreadPoolManager(2, 16, 1, backend=backend)
    agents = [Agent(f"a{i}", delay=0.0002) for i in range(8)]
    for agent in agents:
        m.register_agent(agent.name, agent)
    accepted, lock = [], threading.Lock()
    shutdown_at = rng.randrange(submitters * per_thread)
    counter = iter(range(10**9))

    def submitter(k):
        local = random.Random(seed * 100 + k)
        for i in range(per_thread):
            if next(counter) == shutdown_at:
                m.shutdown(wait=False)
            agent = local.choice(agents)
            try:
                future = m.submit_task(agent.name, "step", {"observation": (k, i)}, priority=local.randrange(3))
            except (RuntimeError, KeyError):
                continue
            with lock:
                accepted.append((agent, (k, i), future))
            if local.random() < 0.05:
                future.cancel()

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m.shutdown(wait=True)
    for agent, observation, future in accepted:
        assert future.done()
        if future.cancelled():
            assert observation not in agent.steps
        else:
            assert future.result().success and agent.steps.count(observation) == 1
    assert sum(len(a.steps) for a in agents) == sum(1 for *_, f in accepted if not f.cancelled())


def test_random_submit_cancel_shutdown(backend):
    hammer_manager(backend, 0)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_random_submit_cancel_shutdown_long(backend, seed):
    hammer_manager(backend, seed, submitters=8, per_thread=1000)


def test_an_agent_raising_a_base_exception_is_not_left_running(manager):
    class Quitter(Agent):
        def step(self, observation):
            if observation == 1:
                raise SystemExit("bye")
            return super().step(observation)

    m = manager()
    m.register_agent("q", Quitter("q"))
    first, second = m.submit_task("q", "step", {"observation": 1}), m.submit_task("q", "step", {"observation": 2})
    assert first.result(timeout=10).error == "bye" and not first.result().success
    assert second.result(timeout=10).result == "action-2"
    assert m.get_performance_stats()["q"]["total_tasks"] == 2  # recorded before the results


def test_registry_keyword_arguments_work_on_both_backends(backend):
    from freeagentics_rs import AgentRegistry

    r = AgentRegistry(backend=backend)
    r.register(agent_id="a", agent=1)
    assert r.get(agent_id="a") == 1 and r.get_many(agent_ids=["a"]) == {"a": 1}
    r.update(agent_id="a", agent=2)
    assert r.compare_and_set(agent_id="a", expected=r["a"], new=3)
    assert r.pop("a", default=None) == 3 and r.pop("a", default=None) is None


def test_results_follow_registration_order(manager):
    # Issue 16 item 3: results came in shard order, different on each backend.
    m = manager()
    names = [f"agent-{i}" for i in range(40)] + [7, 3, "z", "a"]
    for name in names:
        m.register_agent(name, Agent(str(name)))
    m.register_agent("agent-5", Agent("again"))  # replacing keeps the place, as in a dict
    observations = {name: i for i, name in reversed(list(enumerate(names)))}
    assert list(m.step_all_agents(observations)) == names
    assert list(m.step_all_agents(observations, timeout=30)) == names
    assert list(m.agents) == names and m.agents.ids() == names


def test_performance_stats_and_active_futures_as_freeagentics_reads_them(manager):
    # Issue 16 item 5: FreeAgentics code reads these attributes.
    m = manager(initial_workers=1, min_workers=1, max_workers=1)
    gate = threading.Event()

    class Blocker(Agent):
        def step(self, observation):
            gate.wait(10)
            return "done"

    m.register_agent("b", Blocker("b"))
    m.register_agent("a", Agent("a"))
    assert len(m.active_futures) == 0
    first = m.submit_task("b", "step", {})
    second = m.submit_task("a", "step", {"observation": 1})
    while m.get_pool_status()["active_tasks"] != 1:
        time.sleep(0.001)
    live = m.active_futures  # a live view: what is running or queued now
    assert len(live) == 2 and set(live) == {first, second}
    assert live[second].agent_id == "a" and live[first].operation == "step"
    gate.set()
    assert first.result(timeout=10).result == "done" and second.result(timeout=10).success
    m.shutdown(wait=True)
    assert len(live) == 0 and dict(live) == {}  # finished futures are not kept
    assert m.performance_stats["a"]["total_tasks"] == 1 and m.performance_stats["b"]["successful_tasks"] == 1
    assert m.get_performance_stats() == {k: dict(v) for k, v in m.performance_stats.items()}


def test_without_sizes_the_pool_sizes_itself_and_a_gil_bound_load_stays_small(manager):
    # Issue 15 item 4: the load rule grew the pool to 64 workers for GIL-bound work.
    m = manager()
    assert m.adaptive and isinstance(m.executor, AdaptiveThreadPoolExecutor)
    assert (m.min_workers, m.max_workers) == (2, 64)

    class Busy:
        def step(self, observation):
            total = 0
            for i in range(10_000):  # pure Python: holds the GIL
                total += i
            return total

    for i in range(100):
        m.register_agent(i, Busy())
    most = 0
    for _ in range(10):
        results = m.step_all_agents({i: i for i in range(100)})
        assert all(r.success for r in results.values())
        most = max(most, m.get_pool_status()["current_workers"])
    assert most < 64, m.executor.resize_events()
    sized = manager(initial_workers=4)
    assert not sized.adaptive and type(sized.executor) is WorkStealingThreadPool


_size_values = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=40),
    st.sampled_from([0, 2**40, -(2**63)]),
    st.integers(min_value=1, max_value=40).map(np.int64),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(["8", b"8", [8], np.bool_(True), np.float64(8.0)]),
)
_real_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2, max_value=2),
    st.sampled_from(["x", None, True, np.float32(0.5), np.int8(1), 2**64]),
)


@settings(max_examples=25)
@given(initial=_size_values, maximum=_size_values, minimum=_size_values, threshold=_real_values, interval=_real_values)
def test_any_constructor_arguments_work_or_are_refused_naming_one(initial, maximum, minimum, threshold, interval):
    # Issue 14's property: every argument either works or is a TypeError/ValueError naming it.
    names = ("initial_workers", "max_workers", "min_workers", "scaling_threshold", "monitoring_interval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # clamping, tested above
        try:
            m = OptimizedThreadPoolManager(
                initial, maximum, minimum, threshold, interval, backend=freeagentics_rs.BACKEND
            )
        except (TypeError, ValueError) as e:
            assert str(e).split(":")[0] in names, e
            return
    try:
        assert 1 <= m.min_workers <= m.current_workers <= m.max_workers <= 4096
        assert 0 < m.scaling_threshold <= 1
    finally:
        m.shutdown()


@pytest.mark.parametrize("sizes", [{}, {"initial_workers": 2, "max_workers": 2, "min_workers": 1}])
def test_tasks_queued_when_the_pool_shuts_down_underneath_still_run(backend, sizes):
    # Runner jobs are launched after the manager's lock is released; a pool that shut down in
    # between refuses them. The work must still run (in the launching thread), not stay queued
    # with nobody to run it and its future never settled.
    manager = OptimizedThreadPoolManager(**sizes, backend=backend)
    agents = [Agent(f"a{i}") for i in range(4)]
    for agent in agents:
        manager.register_agent(agent.name, agent)
    first = manager.submit_task("a0", "step", {"observation": 0})
    assert first.result(timeout=10).success
    manager.executor.shutdown(wait=True)  # as if a shutdown ran between queueing and launching
    futures = [manager.submit_task(a.name, "step", {"observation": k}) for k, a in enumerate(agents * 3)]
    results = [f.result(timeout=10) for f in futures]
    assert all(r.success for r in results)
    assert [len(a.steps) for a in agents] == [4, 3, 3, 3]
    manager.shutdown()


def test_a_runner_whose_handover_is_refused_carries_on(backend):
    # On an adaptive pool a runner hands over to a fresh runner job after each task; when the
    # pool refuses it (shut down meanwhile), the runner runs the queued tasks itself.
    manager = OptimizedThreadPoolManager(backend=backend)
    agents = [Agent(f"a{i}") for i in range(3)]
    for agent in agents:
        manager.register_agent(agent.name, agent)

    class Closer:
        def step(self, observation):
            manager.executor.shutdown(wait=False)
            return observation

    manager.register_agent("closer", Closer())
    gate = threading.Event()
    manager.register_agent("gate", type("Gate", (), {"step": lambda self, o: gate.wait(10)})())
    blocked = manager.submit_task("gate", "step", {})  # holds the queue behind it until set
    closing = manager.submit_task("closer", "step", {"observation": 1})
    later = [manager.submit_task(a.name, "step", {"observation": 2}) for a in agents]
    gate.set()
    assert blocked.result(timeout=10).success and closing.result(timeout=10).success
    assert all(f.result(timeout=10).success for f in later)
    manager.shutdown()


@pytest.mark.parametrize("sized", [True, False], ids=["sized", "adaptive"])
def test_a_batch_task_cancelled_through_active_futures_does_not_hold_up_its_batch(manager, sized):
    # The batch counted only finished tasks: one cancelled while queued kept it waiting until
    # its timeout (forever without one).
    m = manager(initial_workers=1, min_workers=1, max_workers=1) if sized else manager()
    gate = threading.Event()

    class Blocker(Agent):
        def step(self, observation):
            gate.wait(10)
            return "done"

    m.register_agent("b", Blocker("b"))
    m.register_agent("a", Agent("a"))
    seen: dict = {}
    tasks = [("b", "step", {}), ("b", "step", {}), ("a", "step", {})]
    batch = threading.Thread(target=lambda: seen.update(results=m.batch_execute(tasks, 30)), daemon=True)
    batch.start()
    while True:  # until b's first task runs (and blocks) and its second waits behind it
        b_futures = [f for f, task in m.active_futures.items() if task.agent_id == "b"]
        queued_b = [f for f in b_futures if not f.running()]
        if len(b_futures) == 2 and len(queued_b) == 1:
            break
        time.sleep(0.001)
    assert len(queued_b) == 1 and queued_b[0].cancel()
    gate.set()
    batch.join(20)
    assert not batch.is_alive()
    first, cancelled, other = seen["results"]
    assert first.result == "done" and other.success
    assert cancelled.success is False and cancelled.error == "timeout"

"""Property-based tests of the constructor (and main method) arguments of EventLoopThread,
EventBus, AsyncAgentManager, ThreadingProfiler and InstrumentedLock: any value either works or
is a TypeError/ValueError whose message starts with the argument's name, and a refused call
changes nothing."""

from __future__ import annotations

import asyncio
import threading

import freeagentics_rs
import numpy as np
from freeagentics_rs import AsyncAgentManager, EventBus, EventLoopThread, InstrumentedLock, ThreadingProfiler
from hypothesis import given
from hypothesis import strategies as st

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=4),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.integers(0, 2**16 - 1).map(np.uint16),
    st.floats(width=32).map(np.float32),
    st.booleans().map(np.bool_),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
)
sizes = st.one_of(st.integers(-3, 8), st.integers(-3, 8).map(np.int64), anything)


def refused_by_name(exc: BaseException, *names: str) -> bool:
    return isinstance(exc, (TypeError, ValueError)) and str(exc).startswith(tuple(f"{n}: " for n in names))


@given(name=anything)
def test_event_loop_thread_name(name):
    try:
        loop_thread = EventLoopThread(name)
    except Exception as exc:
        assert refused_by_name(exc, "name"), exc
        return
    assert loop_thread.name == name and not loop_thread.is_running


@given(topic=anything, maxsize=sizes)
def test_event_bus_subscribe_and_publish(topic, maxsize):
    bus = EventBus()
    try:
        subscription = bus.subscribe(topic, maxsize)
    except Exception as exc:
        assert refused_by_name(exc, "topic", "maxsize"), exc
        assert bus.stats() == {}
        return
    assert subscription.maxsize == int(maxsize)
    bus.publish(topic, 1)
    assert bus.stats()[topic]["queued"] == 1


@given(topic=anything)
def test_event_bus_publish_topic(topic):
    bus = EventBus()
    try:
        bus.publish(topic, "event")
    except Exception as exc:
        assert refused_by_name(exc, "topic"), exc
        assert bus.stats() == {}
        return
    assert bus.stats()[topic]["published"] == 1


@given(max_workers=sizes, agent_factory=st.one_of(st.none(), st.just(lambda agent_id, config: config), anything))
def test_async_agent_manager(max_workers, agent_factory):
    # Pool sizes beyond a few dozen are the executor's to bound; a big valid size would start
    # that many threads here.
    if isinstance(max_workers, (int, np.integer)) and not isinstance(max_workers, (bool, np.bool_)) and max_workers > 8:
        max_workers = 8
    threads_before = threading.active_count()
    try:
        manager = AsyncAgentManager(max_workers, agent_factory=agent_factory, backend=freeagentics_rs.BACKEND)
    except Exception as exc:
        assert refused_by_name(exc, "max_workers", "agent_factory"), exc
        assert threading.active_count() <= threads_before  # nothing was started
        return
    try:
        assert manager.get_agent_count() == 0
        if max_workers is not None:
            assert manager.max_workers == int(max_workers)
    finally:
        asyncio.run(manager.stop())


def test_async_agent_manager_timeout():
    class Agent:
        def step(self, observation):
            return observation

    manager = AsyncAgentManager(2, backend=freeagentics_rs.BACKEND)  # one manager, a loop per example
    manager.register_agent("a", Agent())

    @given(timeout=st.one_of(st.none(), st.floats(), st.integers(-2, 2), st.floats(width=32).map(np.float32), anything))
    def check(timeout):
        before = manager.get_stats()["total_operations"]
        try:
            result = asyncio.run(manager.execute_operation("a", "step", {"observation": 1}, timeout))
        except Exception as exc:
            assert refused_by_name(exc, "timeout"), exc
            assert manager.get_stats()["total_operations"] == before  # nothing counted
            return
        assert timeout is None or timeout >= 0
        assert result.success or "timed out" in result.error

    try:
        check()
    finally:
        manager.executor.shutdown()


@given(name=anything, reentrant=anything)
def test_instrumented_lock(name, reentrant):
    try:
        lock = InstrumentedLock(name, reentrant)
    except Exception as exc:
        assert refused_by_name(exc, "name", "reentrant"), exc
        return
    with lock as held:
        assert held is lock and lock.locked()
    assert not lock.locked() and lock.stats()["acquisitions"] == 1


@given(name=anything, reentrant=anything)
def test_profiler_locks(name, reentrant):
    profiler = ThreadingProfiler()
    try:
        lock = profiler.create_instrumented_lock(name, reentrant)
    except Exception as exc:
        assert refused_by_name(exc, "name", "reentrant"), exc
        assert profiler.lock_metrics == {}
        return
    assert list(profiler.lock_metrics) == [name]
    assert lock.profiler is profiler


@given(threads=sizes, repeats=sizes)
def test_gil_probe_arguments(threads, repeats):
    profiler = ThreadingProfiler()

    def small(v):  # integers capped at 4, to keep the probe short
        return v if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v <= 4 else 4

    try:
        ratio = profiler.measure_gil_contention(lambda: None, small(threads), small(repeats))
    except Exception as exc:
        assert refused_by_name(exc, "threads", "repeats"), exc
        assert profiler.gil is None
        return
    assert ratio >= 0 and profiler.gil["threads"] == int(small(threads) or 4)


@given(max_threads=sizes)
def test_thread_count_search_arguments(max_threads):
    profiler = ThreadingProfiler()
    if isinstance(max_threads, (int, np.integer)) and not isinstance(max_threads, (bool, np.bool_)) and max_threads > 4:
        max_threads = 4
    try:
        best, rates = profiler.find_optimal_thread_count(lambda: None, max_threads=max_threads, tasks=8, repeats=1)
    except Exception as exc:
        assert refused_by_name(exc, "max_threads"), exc
        assert profiler.thread_counts is None
        return
    assert best in rates and (max_threads is None or max(rates) == int(max_threads))

"""EventLoopThread and EventBus (pure Python orchestration: the same on both backends)."""

from __future__ import annotations

import asyncio
import threading
import traceback
import warnings

import pytest
from freeagentics_rs import EventBus, EventLoopThread
from helpers import run_python


@pytest.fixture
def loop_thread():
    with EventLoopThread("test-loop") as lt:
        yield lt


async def add(a, b, delay=0.0):
    await asyncio.sleep(delay)
    return a + b


async def fail():
    await asyncio.sleep(0)
    raise ValueError("from the loop")


def test_run_and_submit_from_many_threads(loop_thread):
    assert loop_thread.is_running and loop_thread.name == "test-loop"
    assert loop_thread.run(add(1, 2)) == 3
    assert loop_thread.submit(add(2, 3)).result(timeout=10) == 5
    results = []

    def caller(i):
        results.append(loop_thread.run(add(i, i, 0.001)))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [2 * i for i in range(20)]


def test_exceptions_reach_the_caller_with_their_traceback(loop_thread):
    with pytest.raises(ValueError, match="from the loop") as info:
        loop_thread.run(fail())
    assert any(frame.name == "fail" for frame in traceback.extract_tb(info.value.__traceback__))


def test_run_from_the_loop_thread_is_an_error_not_a_deadlock(loop_thread):
    async def nested():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the refused coroutine is closed, not leaked
            loop_thread.run(add(1, 1))

    with pytest.raises(RuntimeError, match="called from its own loop thread"):
        loop_thread.run(nested())


def test_a_timeout_cancels_the_coroutine(loop_thread):
    cancelled = threading.Event()

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop_thread.run(slow(), timeout=0.05)
    assert cancelled.wait(10)


def test_stop_cancels_pending_tasks_and_joins():
    started, cleaned = threading.Event(), threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    lt = EventLoopThread().start()
    future = lt.submit(forever())
    assert started.wait(10)
    lt.stop()
    assert cleaned.is_set() and future.cancelled()
    assert not lt.is_running
    lt.stop()  # again: nothing
    with pytest.raises(RuntimeError, match="was stopped"):
        lt.start()
    coro = add(1, 2)
    with pytest.raises(RuntimeError, match="is not running"):
        lt.submit(coro)
    with pytest.raises(TypeError, match="coro must be a coroutine"):
        EventLoopThread().submit(lambda: None)


def test_a_loop_thread_never_stopped_does_not_hang_exit():
    out = run_python(
        """
        import asyncio, freeagentics_rs
        lt = freeagentics_rs.EventLoopThread().start()
        lt.submit(asyncio.sleep(3600))
        print(lt.run(asyncio.sleep(0, "ok")))
        """,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_events_arrive_in_order_to_every_subscriber_from_any_thread(loop_thread):
    bus = EventBus()

    async def collect(n):
        subs = [bus.subscribe("steps"), bus.subscribe("steps")]
        ready.set()
        got = [[], []]
        for sub, bucket in zip(subs, got, strict=True):
            async for event in sub:
                bucket.append(event)
                if len(bucket) == n:
                    break
        return got

    ready = threading.Event()
    future = loop_thread.submit(collect(300))
    assert ready.wait(10)
    publishers = [
        threading.Thread(target=lambda k=k: [bus.publish("steps", (k, i)) for i in range(100)]) for k in range(3)
    ]
    for p in publishers:
        p.start()
    for p in publishers:
        p.join()
    first, second = future.result(timeout=10)
    assert sorted(first) == sorted(second) == sorted((k, i) for k in range(3) for i in range(100))
    for k in range(3):  # each publisher's events in its order
        assert [i for kk, i in first if kk == k] == list(range(100))
    assert bus.publish("nobody-listens", 1) == 0
    assert bus.stats()["steps"]["published"] == 300


def test_a_stalled_subscriber_drops_the_oldest_and_never_blocks_publishers(loop_thread):
    bus = EventBus()
    stalled = bus.subscribe("t", maxsize=10)
    for i in range(10_000):
        assert bus.publish("t", i) == 1
    assert stalled.dropped == 9_990 and stalled.qsize() == 10

    async def drain():
        return [await stalled.__anext__() for _ in range(10)]

    assert loop_thread.run(drain()) == list(range(9_990, 10_000))
    stats = bus.stats()["t"]
    assert (stats["dropped"], stats["delivered"], stats["queued"]) == (9_990, 10, 0)


def test_close_ends_a_waiting_iteration(loop_thread):
    bus = EventBus()
    sub = bus.subscribe("t")

    async def consume():
        return [event async for event in sub]

    future = loop_thread.submit(consume())
    bus.publish("t", "a")
    while sub.delivered < 1:
        threading.Event().wait(0.001)
    sub.close()
    assert future.result(timeout=10) == ["a"]
    assert bus.publish("t", "b") == 0 and bus.stats()["t"]["subscribers"] == 0


def test_bad_arguments():
    bus = EventBus()
    with pytest.raises(TypeError, match="topic: must be a str"):
        bus.subscribe(1)
    with pytest.raises(ValueError, match="maxsize: must be at least 1, got 0"):
        bus.subscribe("t", maxsize=0)
    with pytest.raises(TypeError, match="name: must be a str"):
        EventLoopThread(name=3)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_can_start_the_loop_thread_again():
    out = run_python(
        """
        import asyncio, os, freeagentics_rs
        lt = freeagentics_rs.EventLoopThread().start()
        pid = os.fork()
        if pid == 0:
            ok = not lt.is_running and lt.start().run(asyncio.sleep(0, 7)) == 7
            lt.stop()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), lt.run(asyncio.sleep(0, "parent")))
        lt.stop()
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "parent"]


def test_an_unreferenced_loop_thread_is_still_stopped_at_exit():
    out = run_python(
        """
        import asyncio, gc, freeagentics_rs
        freeagentics_rs.EventLoopThread().start().submit(asyncio.sleep(3600))
        gc.collect()
        print("exiting")
        """,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exiting"


def test_submit_once_stop_began_is_refused(loop_thread):
    async def submit_during_cleanup():
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            with pytest.raises(RuntimeError, match="is not running"):
                loop_thread.submit(add(1, 1))
            seen.append("refused")

    seen: list = []
    started = threading.Event()
    loop_thread.submit(submit_during_cleanup())
    assert started.wait(10)
    loop_thread.stop()
    assert seen == ["refused"]


def test_close_wakes_every_waiting_consumer(loop_thread):
    bus = EventBus()
    sub = bus.subscribe("t")

    async def consume():
        return [event async for event in sub]

    futures = [loop_thread.submit(consume()) for _ in range(3)]
    threading.Event().wait(0.05)
    sub.close()
    assert [f.result(timeout=10) for f in futures] == [[], [], []]


def test_stop_from_the_loop_thread_is_refused_and_changes_nothing(run_isolated):
    # Issue 14 item 10: the refused call used to mark the thread stopped and forget it at exit,
    # so run() said "not running" and interpreter exit hung on the loop thread.
    out = run_isolated(
        """
        import asyncio, freeagentics_rs
        lt = freeagentics_rs.EventLoopThread().start()

        async def stop_from_inside():
            try:
                lt.stop()
            except RuntimeError as exc:
                return str(exc)

        print(lt.run(stop_from_inside()))
        print(lt.run(asyncio.sleep(0, "still running")), lt.is_running)
        # not stopped by hand: the exit-time stop must still know this loop thread
        """,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["EventLoopThread.stop() called from its own loop thread", "still running True"]


def test_publish_checks_its_topic_like_subscribe():
    # Issue 14 item 15: publish(123, x) was accepted while subscribe(123) raised.
    bus = EventBus()
    with pytest.raises(TypeError, match="topic: must be a str, not int"):
        bus.publish(123, "x")
    with pytest.raises(TypeError, match="topic: must be a str, not int"):
        bus.subscribe(123)
    assert bus.stats() == {}  # the refused publish counted nothing


def test_a_closed_subscribers_counts_stay_in_stats(loop_thread):
    # Issue 14 item 15: counters are cumulative per topic; closing a subscriber lost its counts.
    bus = EventBus()
    sub = bus.subscribe("t", maxsize=2)
    for i in range(5):
        bus.publish("t", i)  # 3 dropped, 2 queued

    async def take_one():
        return await sub.__anext__()

    assert loop_thread.run(take_one()) == 3
    before = bus.stats()["t"]
    sub.close()
    after = bus.stats()["t"]
    assert before == {"published": 5, "subscribers": 1, "queued": 1, "delivered": 1, "dropped": 3}
    assert after == {"published": 5, "subscribers": 0, "queued": 0, "delivered": 1, "dropped": 3}

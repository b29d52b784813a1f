"""EventLoopThread: one dedicated thread running one asyncio loop, for synchronous code (pool
workers, agents) to hand coroutines to, instead of a fresh ``run_until_complete`` per call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from .. import _validate

__all__ = ["EventLoopThread"]

T = TypeVar("T")

_live: weakref.WeakSet[EventLoopThread] = weakref.WeakSet()
# Started and not yet stopped: held strongly, so that a loop thread nobody references any more
# is still stopped at interpreter exit (its thread would otherwise be joined forever).
_running: set[EventLoopThread] = set()


class EventLoopThread:
    """A thread running an asyncio event loop until ``stop()``.

    ``submit(coro)`` schedules a coroutine from any thread and returns a
    ``concurrent.futures.Future``; ``run(coro, timeout=None)`` waits for its result (its exception
    is raised with its traceback). ``stop()`` cancels what is still pending and joins the thread;
    a loop never stopped is stopped at interpreter exit. Use it as a context manager.
    """

    def __init__(self, name: str = "freeagentics-loop") -> None:
        _validate.string(name, "name")
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        _live.add(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; ``RuntimeError`` when the thread is not running."""
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError(f"event loop thread {self.name!r} is not running")
        return loop

    @property
    def is_running(self) -> bool:
        return self._loop is not None and self._loop.is_running()

    def start(self) -> EventLoopThread:
        """Starts the thread and returns once its loop runs (no-op if it already runs).
        A stopped EventLoopThread cannot be started again: ``RuntimeError``."""
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"event loop thread {self.name!r} was stopped; create a new one")
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            running = threading.Event()
            loop.call_soon(running.set)
            self._thread = threading.Thread(target=self._main, args=(loop,), name=self.name)
            self._loop = loop
            self._thread.start()
            _running.add(self)
        running.wait()
        return self

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # stop(): let cancelled tasks run their cleanup (which may start more), then close.
            while pending := asyncio.all_tasks(loop):
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedules ``coro`` on the loop from any thread."""
        if not asyncio.iscoroutine(coro):
            raise TypeError(f"coro must be a coroutine, not {type(coro).__name__}")
        with self._lock:  # not once stop() began: the loop would close with it pending
            loop = None if self._stopped else self._loop
            if loop is not None and loop.is_running():
                return asyncio.run_coroutine_threadsafe(coro, loop)
        coro.close()  # never awaited, and nobody will
        raise RuntimeError(f"event loop thread {self.name!r} is not running")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs ``coro`` on the loop and waits for its result. From the loop's own thread this
        would deadlock: ``RuntimeError``. On timeout the coroutine is cancelled and
        ``TimeoutError`` raised."""
        if threading.current_thread() is self._thread:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise RuntimeError("EventLoopThread.run() called from its own loop thread; await the coroutine instead")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"coroutine did not finish within {timeout} s") from None
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting
            raise

    def stop(self) -> None:
        """Cancels pending tasks, stops the loop and joins its thread (no-op if not running)."""
        # Refused before anything changes: the loop keeps running and exit still stops it.
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("EventLoopThread.stop() called from its own loop thread")
        with self._lock:
            self._stopped = True
            thread, loop = self._thread, self._loop
            _running.discard(self)
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_cancel_all_and_stop, loop)
            except RuntimeError:
                pass  # closed meanwhile
        thread.join()

    def __enter__(self) -> EventLoopThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else ("stopped" if self._stopped else "not started")
        return f"<EventLoopThread {self.name!r} {state}>"


def _cancel_all_and_stop(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.stop()


def _stop_all() -> None:
    # At interpreter exit, before non-daemon threads are joined (as ThreadPoolExecutor does).
    for loop_thread in list(_running):
        loop_thread.stop()


def _after_fork_in_child() -> None:
    # The loop thread does not exist in the child: its objects may start afresh there.
    _running.clear()
    for loop_thread in list(_live):
        loop_thread._lock = threading.Lock()
        loop_thread._thread = loop_thread._loop = None
        loop_thread._stopped = False


threading._register_atexit(_stop_all)  # type: ignore[attr-defined]  # private, not in typeshed
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""The futures of ``WorkStealingThreadPool`` (``_pool.py``): real ``concurrent.futures.Future``
subclasses with a lighter condition (``_FutureCondition`` on the Python backend,
``_native.FutureCondition`` on Rust), waiter lists made on first use, and waits that help the
pool run its queued jobs when called from one of its workers.
"""

from __future__ import annotations

import _thread
import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING, InvalidStateError
from typing import TYPE_CHECKING, Any

from .. import _backend
from .._contracts import PoolCore

_DONE = (CANCELLED_AND_NOTIFIED, FINISHED)
_SETTLED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class _FutureCondition(_thread.RLock):  # type: ignore[misc]  # final in typeshed, not in CPython
    """The condition of a pool future on the Python backend (the Rust backend's is
    ``_native.FutureCondition``, one object the cyclic GC does not track): the subset of
    ``threading.Condition`` that ``concurrent.futures`` uses (``with``, ``acquire``,
    ``release``, ``wait``, ``notify``, ``notify_all``). It is the re-entrant lock itself
    (``Future`` formats its own repr while holding it), so taking it is a C call, and its waiter
    queue is made only when someone waits.

    ``threading.Condition()`` allocates seven garbage-collected objects per future; keeping tens
    of thousands of futures alive made the cyclic GC the largest cost of dispatch.
    """

    __slots__ = ("_waiters",)  # unset until the first wait
    _waiters: collections.deque[Any] | None

    if TYPE_CHECKING:  # C methods of RLock (what threading.Condition uses) left out of typeshed

        def _release_save(self) -> Any: ...
        def _acquire_restore(self, state: Any, /) -> None: ...
        def _is_owned(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool:
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _thread.allocate_lock()
        waiter.acquire()
        waiters = getattr(self, "_waiters", None)
        if waiters is None:
            waiters = self._waiters = collections.deque()
        waiters.append(waiter)
        saved = self._release_save()
        notified = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = waiter.acquire(blocking=True, timeout=timeout)
            else:
                notified = waiter.acquire(blocking=False)
            return notified
        finally:
            self._acquire_restore(saved)
            if not notified:
                try:
                    waiters.remove(waiter)
                except ValueError:
                    pass

    def _has_waiters(self) -> bool:
        return bool(getattr(self, "_waiters", None))

    def notify(self, n: int = 1) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = getattr(self, "_waiters", None)
        while waiters and n > 0:
            waiters.popleft().release()
            n -= 1

    def notify_all(self) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = getattr(self, "_waiters", None)
        while waiters:
            waiters.popleft().release()


class _HelpingEvent:
    """Stands in for the ``threading.Event`` of a ``wait()``/``as_completed()`` waiter installed
    on a worker of the pool: waiting on it runs the pool's queued jobs until it is set (the
    helping rule of ``result()``), so a task may wait on tasks it submitted, even with one worker."""

    __slots__ = ("_event", "_core", "_callbacks", "_lock")

    def __init__(self, event: threading.Event, core: Any) -> None:
        self._event = event
        self._core = core
        self._callbacks: list[Callable[[Any], object]] = []
        self._lock = _thread.allocate_lock()

    def set(self) -> None:
        self._event.set()
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        # What the cores' help_until_done calls to be woken when the event is set.
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def wait(self, timeout: float | None = None) -> bool:
        if not self._event.is_set() and self._core.help_until_done(self, timeout):
            return self._event.is_set()
        return self._event.wait(timeout)


class _Waiters(list[Any]):
    """A pool future's waiter list: a waiter that ``wait()``/``as_completed()`` installs from a
    worker of the future's pool gets a helping event."""

    __slots__ = ("core",)
    core: PoolCore | None

    def append(self, waiter: Any) -> None:
        event = getattr(waiter, "event", None)
        if type(event) is threading.Event and self.core is not None and self.core.is_worker_thread():
            waiter.event = _HelpingEvent(event, self.core)
        super().append(waiter)


class _LazyWaiters:
    """A pool future's ``_waiters``, made on first use: only ``wait()``/``as_completed()`` on a
    future that is not done yet install a waiter, so most futures never need the list. Every
    use is under the future's condition (``Future``'s methods, ``wait``'s ``_AcquireFutures``),
    so two threads never both make it."""

    def __get__(self, future: _PoolFuture | None, owner: type | None = None) -> Any:
        if future is None:
            return self
        waiters = future._waiter_list
        if waiters is None:
            waiters = future._waiter_list = _Waiters()
            waiters.core = future._core
        return waiters


class _PoolFuture(Future[Any]):
    """A ``concurrent.futures.Future`` with a lighter condition, whose ``result()``/``exception()``
    (and ``wait()``/``as_completed()`` over it), called from a worker of its own pool, runs queued
    jobs while it waits instead of blocking that worker (so a task may wait on a task it
    submitted, even with one worker).

    Its waiter list and its callback list are made on first use: with tens of thousands of
    futures in flight, two objects less per future for the cyclic GC, which was the main
    thread's largest cost of dispatch (it ran on every few hundred futures)."""

    _waiters = _LazyWaiters()  # a list made on first use
    _done_callbacks: list[Callable[[Future[Any]], object]] | tuple[()] = ()  # a list from the first callback

    def __init__(self, core: PoolCore | None = None, condition: Any = None) -> None:
        # Future.__init__ with the pool's condition (by default the Python backend's).
        self._condition = _FutureCondition() if condition is None else condition  # type: ignore[assignment]  # the subset Future uses
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiter_list: _Waiters | None = None
        self._core = core

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with self._condition:
            if not isinstance(self._done_callbacks, list):
                self._done_callbacks = []
        super().add_done_callback(fn)

    # The settling methods the workers call for every task, as in ``Future`` but entering the
    # lock directly (C) and skipping an empty callback list.
    def set_running_or_notify_cancel(self) -> bool:
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
                return True
        return super().set_running_or_notify_cancel()  # cancelled: notify; else it raises

    def set_result(self, result: Any) -> None:
        condition = self._condition
        with condition:
            if self._state in _SETTLED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = FINISHED
            if self._waiter_list:
                for waiter in self._waiter_list:
                    waiter.add_result(self)
            condition.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]  # Future's own, not in typeshed

    def _help(self, timeout: float | None) -> float | None:
        if self._state in _DONE or self._core is None:
            return timeout
        start = time.monotonic()
        if not self._core.help_until_done(self, timeout):
            return timeout
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - start))

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._help(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._help(timeout))


class _NativePoolFuture(_PoolFuture):
    """A ``_PoolFuture`` of a Rust pool: its condition is ``_native.FutureCondition`` and its
    waiter list is read through ``_native.PoolFutureWaiters`` (installed when the first Rust
    pool is made), so neither costs a Python frame."""


def _helping_waiters(future: _PoolFuture, waiters: list[Any] | None) -> _Waiters:
    # What ``PoolFutureWaiters`` makes when a pool worker first uses a future's waiter list.
    helping = _Waiters(() if waiters is None else waiters)
    helping.core = future._core
    return helping


def _use_native_waiters() -> None:
    if "_waiters" not in _NativePoolFuture.__dict__:
        _NativePoolFuture._waiters = _backend.native().PoolFutureWaiters()

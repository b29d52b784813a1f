"""WorkStealingThreadPool: the ``concurrent.futures`` front shared by both backends.

Everything a user sees (argument checks, futures, ``map``, fork and interpreter-exit handling)
lives here once; the scheduling core is ``freeagentics_rs._native.WorkStealingCore`` (Rust) or
``freeagentics_rs.executor._py.WorkStealingCore`` (Python), which have the same interface.
"""

from __future__ import annotations

import _thread
import collections
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING, InvalidStateError
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _backend, _validate
from .._contracts import PoolCore, PoolCoreClass
from .._cpus import available_cpus
from . import _py

__all__ = ["MAX_WORKERS", "WorkStealingThreadPool"]

# No machine runs more threads than this in one pool; a larger size is a mistake, not a wish.
MAX_WORKERS = 1 << 16

T = TypeVar("T")

_DONE = (CANCELLED_AND_NOTIFIED, FINISHED)
_SETTLED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_pool_counter = itertools.count()
_interpreter_shutdown = False
# Bumped in a forked child: pools created before it rebuild their core on first use there.
_fork_generation = 0
# Parent cores seen in a child: kept alive forever so that nothing ever touches their locks.
_orphaned_cores: list[PoolCore] = []
_live_pools: weakref.WeakSet[WorkStealingThreadPool] = weakref.WeakSet()


def _worker_count(value: object, name: str) -> int:
    return _validate.integer(value, name, minimum=1, maximum=MAX_WORKERS)


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


def _shutdown_nowait(core: PoolCore, generation: int) -> None:
    # The pool object was collected without shutdown: let its workers drain and exit.
    if generation == _fork_generation:
        core.shutdown(wait=False, cancel_futures=False)


class WorkStealingThreadPool(ThreadPoolExecutor):
    """A ``concurrent.futures`` executor on a work-stealing pool: one deque per worker, a global
    queue, stealing between workers, idle workers parked. Rust core or pure-Python fallback
    (``backend=``); see the stub file for the full contract."""

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str | None = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        backend: str | None = None,
    ) -> None:
        self._setup(
            available_cpus() if max_workers is None else _worker_count(max_workers, "max_workers"),
            thread_name_prefix,
            initializer,
            initargs,
            backend,
        )

    def _setup(
        self,
        max_workers: int,
        thread_name_prefix: str | None,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        backend: str | None,
    ) -> None:
        self.backend = _backend.resolve(backend)
        if thread_name_prefix is not None:  # None is accepted, as by ThreadPoolExecutor
            _validate.string(thread_name_prefix, "thread_name_prefix")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer: must be a callable, not {_validate.type_name(initializer)}")
        try:
            initargs = tuple(initargs)
        except TypeError:
            raise TypeError(f"initargs: must be a tuple, not {_validate.type_name(initargs)}") from None
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"{type(self).__name__}-{next(_pool_counter)}"
        self._initializer = initializer  # type: ignore[assignment]  # typeshed: returns None
        self._initargs = initargs
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._core: PoolCore = self._new_core()
        # The futures: Rust's condition and waiter list when the core is Rust's, so that workers
        # settle them from Rust.
        self._new_condition: Callable[[], Any] = _FutureCondition
        self._future_class: type[_PoolFuture] = _PoolFuture
        if self.backend == "rust":
            _use_native_waiters()
            self._new_condition = _backend.native().FutureCondition
            self._future_class = _NativePoolFuture
        _live_pools.add(self)

    def _core_class(self) -> PoolCoreClass:
        return _backend.cores(self.backend).WorkStealingCore

    def _core_args(self) -> tuple[Any, ...]:
        return (self._max_workers, self._thread_name_prefix, self._initializer, self._initargs)

    def _new_core(self) -> PoolCore:
        self._generation = _fork_generation
        core = self._core_class()(*self._core_args())
        weakref.finalize(self, _shutdown_nowait, core, self._generation)
        return core

    def _usable_core(self) -> PoolCore:
        if self._generation != _fork_generation:
            with self._shutdown_lock:
                if self._generation != _fork_generation:
                    self._core = self._new_core()
        return self._core

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def _resize(self, workers: int) -> None:
        # For owners that size the pool themselves (OptimizedThreadPoolManager): online, like
        # AdaptiveThreadPoolExecutor's resizes; ``max_workers`` follows.
        self._usable_core().resize(workers)
        self._max_workers = workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if not callable(fn):
            raise TypeError(f"fn must be a callable, not {type(fn).__name__}")
        if _interpreter_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        core = self._core if self._generation == _fork_generation else self._usable_core()
        future = self._future_class(core, self._new_condition())
        core.submit(future, fn, args, kwargs or None)
        return future

    def _submit_chunk(self, fn: Callable[..., Any], items: list[Any], *, unpack: bool) -> _PoolFuture:
        if _interpreter_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        core = self._core if self._generation == _fork_generation else self._usable_core()
        future = self._future_class(core, self._new_condition())
        core.submit_chunk(future, fn, items, unpack=unpack)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like ``Executor.map``; each chunk of ``chunksize`` calls runs as one job. With
        ``buffersize``, at most that many chunks are in flight and the inputs are read lazily
        (infinite iterables work), as in Python 3.14."""
        if not callable(fn):
            raise TypeError(f"fn must be a callable, not {type(fn).__name__}")
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if isinstance(buffersize, bool) or not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        unpack = len(iterables) != 1
        source = zip(*iterables, strict=False) if unpack else iter(iterables[0])
        chunks = iter(lambda: list(itertools.islice(source, chunksize)), [])
        pending = collections.deque(
            self._submit_chunk(fn, chunk, unpack=unpack) for chunk in itertools.islice(chunks, buffersize)
        )
        refill = None if buffersize is None else (lambda: self._submit_chunk(fn, next(chunks), unpack=unpack))
        return _MapResults(pending, refill, end_time)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: FBT001 (Executor.shutdown's signature)
        with self._shutdown_lock:
            self._shutdown = True
        if self._generation == _fork_generation:
            self._core.shutdown(wait=wait, cancel_futures=cancel_futures)

    def stats(self) -> dict[str, Any]:
        """Counters: ``workers`` (live threads), ``target_workers``, ``max_workers``,
        ``submitted``, ``completed``, ``stolen`` (jobs taken from a sibling's deque), ``queued``,
        ``panics``."""
        stats: dict[str, Any] = self._usable_core().stats()
        stats["max_workers"] = self._max_workers
        return stats

    def __repr__(self) -> str:
        state = "shutdown" if self._shutdown else "running"
        return f"<{type(self).__name__} backend={self.backend!r} max_workers={self._max_workers} {state}>"


class _MapResults:
    """The iterator ``map`` returns: results in input order, each chunk's list yielded through
    ``itertools.chain`` at C speed. ``close()`` cancels the chunks that have not started, even
    before the first ``next()``; garbage collection does so only once iteration began, as for
    ``Executor.map``'s generator (a map whose results nobody reads still runs every call)."""

    def __init__(
        self,
        pending: collections.deque[_PoolFuture],
        refill: Callable[[], _PoolFuture] | None,
        end_time: float | None,
    ) -> None:
        self._pending = pending
        self._refill = refill
        self._end_time = end_time
        self._started = False
        self._items = itertools.chain.from_iterable(self._chunk_results())

    def _chunk_results(self) -> Iterator[list[Any]]:
        self._started = True
        pending = self._pending
        while pending:
            future = pending.popleft()
            if self._refill is not None:
                try:
                    pending.append(self._refill())
                except StopIteration:
                    self._refill = None
            try:
                if self._end_time is None:
                    results, error = future.result()
                else:
                    results, error = future.result(self._end_time - time.monotonic())
            except BaseException:
                future.cancel()
                self.close()
                raise
            del future
            yield results
            if error is not None:
                self.close()
                try:
                    raise error
                finally:
                    error = None

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        self._refill = None
        while self._pending:
            self._pending.popleft().cancel()

    def __del__(self) -> None:
        if self._started:
            self.close()


def _python_exit() -> None:
    # Like ThreadPoolExecutor: refuse new work, run what is queued, join every thread before
    # the interpreter finalizes.
    global _interpreter_shutdown
    _interpreter_shutdown = True
    _py.shutdown_all_pools()
    native = sys.modules.get("freeagentics_rs._native")
    if native is not None:
        native.shutdown_all_pools()


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1
    _orphaned_cores.extend(pool._core for pool in list(_live_pools))
    _py.forget_pools_after_fork()
    native = sys.modules.get("freeagentics_rs._native")
    if native is not None:
        native.forget_pools_after_fork()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""WorkStealingThreadPool: the ``concurrent.futures`` front shared by both backends.

Everything a user sees (argument checks, futures, ``map``, fork and interpreter-exit handling)
lives here once; the scheduling core is ``freeagentics_rs._native.WorkStealingCore`` (Rust) or
``freeagentics_rs.executor._py.WorkStealingCore`` (Python), which have the same interface.
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .. import _backend, _validate
from .._contracts import PoolCore, PoolCoreClass
from .._cpus import available_cpus
from . import _py
from ._futures import _FutureCondition, _NativePoolFuture, _PoolFuture, _use_native_waiters

__all__ = ["MAX_WORKERS", "WorkStealingThreadPool"]

# No machine runs more threads than this in one pool; a larger size is a mistake, not a wish.
MAX_WORKERS = 1 << 16

T = TypeVar("T")

_pool_counter = itertools.count()
_interpreter_shutdown = False
# Bumped in a forked child: pools created before it rebuild their core on first use there.
_fork_generation = 0
# Parent cores seen in a child: kept alive forever so that nothing ever touches their locks.
_orphaned_cores: list[PoolCore] = []
_live_pools: weakref.WeakSet[WorkStealingThreadPool] = weakref.WeakSet()


def _worker_count(value: object, name: str) -> int:
    return _validate.integer(value, name, minimum=1, maximum=MAX_WORKERS)


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

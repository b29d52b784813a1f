"""Pure-Python core of WorkStealingThreadPool and AdaptiveThreadPoolExecutor, with the same
semantics as the Rust core (``rust/core/pool.rs``, ``rust/core/meter.rs``): one deque per worker
(the owner pops the newest job, thieves take the oldest), a global FIFO queue, stealing from
siblings, parking on a condition when idle, the helping rule for a worker that waits on a future
of its own pool, online resizing, and per-job CPU/wall metering.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..errors import BrokenThreadPool
from ._meter import Meter

if TYPE_CHECKING:
    from .._contracts import Settleable

__all__ = ["WorkStealingCore", "shutdown_all_pools", "forget_pools_after_fork"]

_INITIALIZER_FAILED = "A thread initializer failed, the thread pool is not usable anymore"
_SHUTDOWN = "cannot schedule new futures after shutdown"

_POOLS: weakref.WeakSet[WorkStealingCore] = weakref.WeakSet()


# A job is a list [runner, future, fn, payload, extra]; runners empty it first, so that the call's
# references are released before the future wakes its waiters (as the Rust core does). A runner
# returns False when the future was cancelled before it started.
Job = list[Any]


def _call_job(job: Job) -> bool:
    _, future, fn, args, kwargs = job
    job.clear()
    if not future.set_running_or_notify_cancel():
        return False
    try:
        result = fn(*args, **kwargs) if kwargs else fn(*args)
    except BaseException as exc:
        fn = args = kwargs = None
        future.set_exception(exc)
        del exc
    else:
        fn = args = kwargs = None
        future.set_result(result)
    return True


def _chunk_job(job: Job) -> bool:
    _, future, fn, items, unpack = job
    job.clear()
    if not future.set_running_or_notify_cancel():
        return False
    results: list[Any] = []
    error = None
    try:
        if unpack:
            for item in items:
                results.append(fn(*item))
        else:
            for item in items:
                results.append(fn(item))
    except BaseException as exc:
        error = exc
    fn = items = None
    future.set_result((results, error))
    return True


class _Worker:
    __slots__ = ("core", "index", "deque")

    def __init__(self, core: WorkStealingCore, index: int) -> None:
        self.core = core
        self.index = index
        self.deque: collections.deque[Job] = collections.deque()


class WorkStealingCore:
    """The Python twin of ``freeagentics_rs._native.WorkStealingCore``."""

    def __init__(
        self,
        max_workers: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        on_samples: Callable[..., object] | None = None,
        sample_batch: int = 16,
        run_delay: Callable[[], float] | None = None,
    ) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._pid = os.getpid()
        self._global: collections.deque[Job] = collections.deque()
        # One slot per worker; a retired worker's slot is None until a new worker reuses it.
        self._workers: list[_Worker | None] = []
        # One lock guards admission, sizing, parking and the counters; the deques themselves
        # are atomic under the GIL.
        self._cond = threading.Condition(threading.Lock())
        self._sleepers = 0
        # Workers parked between jobs and not yet claimed by a submit, and wake-ups handed to
        # claimed ones that have not yet woken: a submit that finds none idle starts a thread.
        self._idle = self._wakeups = 0
        self._closing = False
        self._broken: str | None = None
        self._target = self._active = 0
        self._live = 0
        self._exited = threading.Condition()
        self._submitted = self._completed = self._stolen = 0
        self._local = threading.local()
        self._initializer = initializer
        self._initargs = initargs
        self._thread_name_prefix = thread_name_prefix
        self._meter = None if on_samples is None else Meter(on_samples, sample_batch, run_delay)
        self._threads: list[threading.Thread] = []
        self._sizing = threading.Lock()  # orders starting threads against shutdown
        _POOLS.add(self)
        self._set_size(max_workers, grow=False)  # threads start on demand

    # -- sizing -----------------------------------------------------------------------------
    def resize(self, workers: int) -> None:
        """Grows at once, or lets surplus workers retire between jobs; measurements restart."""
        self._set_size(workers, grow=True)

    def _set_size(self, workers: int, *, grow: bool) -> None:
        if workers <= 0:
            raise ValueError("workers must be greater than 0")
        with self._sizing:
            if self._closing:
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            if self._meter is not None:
                self._meter.new_epoch()
            with self._cond:
                self._target = workers
                spawn = max(0, workers - self._active) if grow else 0
                self._active += spawn
                if not spawn:
                    self._cond.notify_all()  # idle surplus workers wake up to retire
            for started in range(spawn):
                try:
                    self._spawn()
                except RuntimeError:
                    with self._cond:
                        self._active -= spawn - started
                    raise

    def _spawn(self) -> None:
        with self._cond:
            try:
                index = self._workers.index(None)
            except ValueError:
                index = len(self._workers)
                self._workers.append(None)
            worker = self._workers[index] = _Worker(self, index)
        with self._exited:
            self._live += 1
        thread = threading.Thread(target=self._worker_main, args=(worker,), name=f"{self._thread_name_prefix}_{index}")
        try:
            thread.start()
        except RuntimeError as exc:  # as the Rust core: undo, and say why
            with self._exited:
                self._live -= 1
            with self._cond:
                self._workers[index] = None
            raise RuntimeError(f"could not start a worker thread: {exc}") from exc
        self._threads.append(thread)

    def _try_retire(self, worker: _Worker) -> bool:
        with self._cond:
            if self._active <= self._target:
                return False
            self._active -= 1
            # Hand queued jobs to the others one by one (thieves pop this deque without the
            # lock, so a copy-then-clear could hand a job out twice), and free the slot.
            while True:
                try:
                    self._global.append(worker.deque.popleft())
                except IndexError:
                    break
            self._workers[worker.index] = None
            if self._sleepers and self._has_work():
                self._cond.notify()
            return True

    def set_sample_batch(self, sample_batch: int) -> None:
        if self._meter is not None:
            self._meter.set_batch_size(sample_batch)

    @property
    def target_workers(self) -> int:
        return self._target

    # -- scheduling -------------------------------------------------------------------------
    def _current_worker(self) -> _Worker | None:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None or self._pid != os.getpid():
            return None
        return worker

    def _push(self, job: Job) -> None:
        worker = getattr(self._local, "worker", None)
        with self._cond:
            if self._broken is not None:
                raise BrokenThreadPool(self._broken)
            if self._closing:
                raise RuntimeError(_SHUTDOWN)
            self._submitted += 1
            (worker.deque if worker is not None else self._global).append(job)
            start = False
            if self._idle:
                self._idle -= 1
                self._wakeups += 1
            elif self._active < self._target:
                self._active += 1  # reserved; started below, outside this lock
                start = True
            if self._sleepers:
                self._cond.notify()
        if start:
            self._start_reserved()

    def _start_reserved(self) -> None:
        # Also while shutting down: the job that asked for it was admitted.
        with self._sizing:
            self._threads = [t for t in self._threads if t.is_alive()]
            try:
                self._spawn()
            except RuntimeError:
                with self._cond:
                    self._active -= 1
                    if self._active:
                        return  # the job stays queued for the workers there are
                raise

    def submit(
        self, future: Settleable, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> None:
        self._push([_call_job, future, fn, args, kwargs])

    def submit_chunk(self, future: Future[Any], fn: Callable[..., Any], items: list[Any], unpack: bool) -> None:  # noqa: FBT001 (the Rust core's signature)
        self._push([_chunk_job, future, fn, items, unpack])

    def _find_job(self, worker: _Worker) -> Job | None:
        try:
            return worker.deque.pop()
        except IndexError:
            pass
        try:
            return self._global.popleft()
        except IndexError:
            pass
        workers = self._workers
        n = len(workers)
        for k in range(1, n):
            other = workers[(worker.index + k) % n]
            if other is None:
                continue
            try:
                job = other.deque.popleft()
            except IndexError:
                continue
            with self._cond:
                self._stolen += 1
            return job
        return None

    def _has_work(self) -> bool:
        return bool(self._global) or any(w.deque for w in self._workers if w is not None)

    def _run(self, job: Job) -> None:
        if self._meter is None:
            job[0](job)
        else:
            self._meter.run(job)
        with self._cond:
            self._completed += 1

    def _park(
        self, done: threading.Event | None = None, timeout: float | None = None, *, may_retire: bool = False
    ) -> None:
        with self._cond:
            if self._has_work() or self._closing or (done is not None and done.is_set()):
                return
            if may_retire and self._active > self._target:  # under _cond, which resize notifies under
                return
            self._sleepers += 1
            if may_retire:  # a worker between jobs (not a helper) is idle: a submit may claim it
                self._idle += 1
            try:
                self._cond.wait(timeout)
            finally:
                self._sleepers -= 1
                if may_retire:
                    if self._wakeups:
                        self._wakeups -= 1
                    else:
                        self._idle -= 1

    def _worker_main(self, worker: _Worker) -> None:
        self._local.worker = worker
        try:
            if self._initializer is not None:
                try:
                    self._initializer(*self._initargs)
                except BaseException:
                    logging.getLogger("concurrent.futures").critical("Exception in initializer:", exc_info=True)
                    self._break()
                    return
            while True:
                if self._active > self._target and self._try_retire(worker):
                    if self._closing:
                        # A shutdown that began meanwhile may have looked for jobs before they
                        # reached the global queue: run what is left rather than strand it.
                        job = self._find_job(worker)
                        while job is not None:
                            self._run(job)
                            job = self._find_job(worker)
                    return
                job = self._find_job(worker)
                if job is not None:
                    self._run(job)
                    continue
                if self._closing:
                    # Re-check: a push admitted before closing may have landed after our search.
                    job = self._find_job(worker)
                    if job is None:
                        return
                    self._run(job)
                    continue
                self._park(may_retire=True)
        finally:
            with self._exited:
                self._live -= 1
                self._exited.notify_all()

    # -- helping ----------------------------------------------------------------------------
    def help_until_done(self, future: Future[Any], timeout: float | None = None) -> bool:
        worker = self._current_worker()
        if worker is None:
            return False
        done = threading.Event()

        def wake(_: Future[Any]) -> None:
            done.set()
            with self._cond:
                self._cond.notify_all()

        future.add_done_callback(wake)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while not done.is_set():
            job = self._find_job(worker)
            if job is not None:
                self._run(job)
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self._park(done, left)
        return True

    def is_worker_thread(self) -> bool:
        return self._current_worker() is not None

    # -- lifecycle --------------------------------------------------------------------------
    def _drain(self) -> list[Job]:
        jobs = []
        for q in [self._global, *(w.deque for w in self._workers if w is not None)]:
            while True:
                try:
                    jobs.append(q.popleft())
                except IndexError:
                    break
        return jobs

    def _close(self, broken: str | None = None) -> None:
        with self._cond:
            self._closing = True
            if self._broken is None:
                self._broken = broken
            self._cond.notify_all()

    def _break(self) -> None:
        self._close(_INITIALIZER_FAILED)
        for job in self._drain():
            job[1].set_exception(BrokenThreadPool(_INITIALIZER_FAILED))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:  # noqa: FBT001 (the Rust core's signature)
        with self._sizing:
            self._close()
        if cancel_futures:
            for job in self._drain():
                job[1].cancel()
        if not wait:
            return
        worker = self._current_worker()
        if worker is not None:
            queued = self._find_job(worker)
            while queued is not None:
                self._run(queued)
                queued = self._find_job(worker)
        own = 1 if worker is not None else 0
        with self._exited:
            while self._live > own:
                self._exited.wait()
        me = threading.current_thread()
        with self._sizing:
            threads = list(self._threads)
        for t in threads:
            if t is not me:
                t.join()

    def stats(self) -> dict[str, int]:
        with self._cond:
            queued = len(self._global) + sum(len(w.deque) for w in self._workers if w is not None)
            return {
                "workers": self._live,
                "target_workers": self._target,
                "submitted": self._submitted,
                "completed": self._completed,
                "stolen": self._stolen,
                "queued": queued,
                "panics": 0,
            }


def shutdown_all_pools() -> None:
    """Shuts down every Python-backend pool and joins its threads (interpreter exit)."""
    for core in list(_POOLS):
        core.shutdown(wait=True)


def forget_pools_after_fork() -> None:
    """In a forked child the parent's threads do not exist: never touch its pools again."""
    _POOLS.clear()

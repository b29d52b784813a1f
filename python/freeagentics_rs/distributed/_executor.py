"""executor(client): a concurrent.futures executor over a Dask cluster whose ``map`` ships
chunks of items, not items (a Dask task costs about as much as an agent step)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from distributed import Client

__all__ = ["DaskExecutor", "executor"]


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class DaskExecutor(cf.ThreadPoolExecutor):
    """Runs picklable callables on the workers of ``client`` and returns
    ``concurrent.futures.Future``s with their usual semantics: a future stays pending until its
    task finishes, ``cancel()`` of a pending one cancels the task on the cluster, and
    ``shutdown(wait=True)`` returns when every future is done. A ``ThreadPoolExecutor`` subclass
    that starts no threads of its own; the client stays open (it is the caller's)."""

    def __init__(self, client: Client) -> None:
        super().__init__(max_workers=1)
        self.client = client
        self.tasks_submitted = 0
        self._pending: set[cf.Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            # fn's own keywords must not reach Dask's submit (key=, workers=, priority=...)
            task = self.client.submit(_call, fn, args, kwargs, pure=False)
            self.tasks_submitted += 1
            self._pending.add(future)

        def cancel_task(done: cf.Future[Any]) -> None:
            with self._lock:
                self._pending.discard(done)
            if done.cancelled():
                self.client.cancel([task])

        def settle(finished: Any) -> None:
            if finished.cancelled():
                future.cancel()
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(finished.result())
                except BaseException as e:  # handed to the caller's future
                    future.set_exception(e)

        future.add_done_callback(cancel_task)
        task.add_done_callback(settle)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Like ``Executor.map`` (``timeout`` counts from this call), in chunks of ``chunksize``
        calls per Dask task (default: the items spread as four chunks per worker)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        items = list(zip(*iterables, strict=False))  # stops at the shortest, as Executor.map does
        if chunksize is None:
            workers = max(1, len(self.client.nthreads()))  # not scheduler_info(): a cache
            chunksize = max(1, -(-len(items) // (4 * workers)))
        if chunksize < 1:
            raise ValueError("chunksize: must be at least 1")
        futures = [self.submit(_apply_chunk, fn, items[i : i + chunksize]) for i in range(0, len(items), chunksize)]

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    yield from future.result(left)
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: FBT001 (Executor.shutdown's signature)
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            cf.wait(pending)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def executor(client: Client) -> DaskExecutor:
    """A ``concurrent.futures.Executor`` running callables on ``client``'s cluster."""
    return DaskExecutor(client)

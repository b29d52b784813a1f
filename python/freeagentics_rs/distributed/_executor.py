"""executor(client): a concurrent.futures executor over a Dask cluster whose ``map`` ships
chunks of items, not items (a Dask task costs about as much as an agent step)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Callable, Iterable, Iterator

from distributed import Client

__all__ = ["DaskExecutor", "executor"]


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class DaskExecutor(cf.ThreadPoolExecutor):
    """Runs callables on the workers of ``client`` and returns ``concurrent.futures.Future``s.
    A ``ThreadPoolExecutor`` subclass (so ``loop.set_default_executor`` takes it) that starts no
    threads of its own. ``shutdown`` stops new work and cancels queued work on request; the
    client stays open (it is the caller's)."""

    def __init__(self, client: Client) -> None:
        super().__init__(max_workers=1)
        self.client = client
        self.tasks_submitted = 0
        self._pending: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            dask_future = self.client.submit(fn, *args, pure=False, **kwargs)
            self.tasks_submitted += 1
            self._pending.add(dask_future)
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()

        def settle(done: Any) -> None:
            with self._lock:
                self._pending.discard(done)
            if future.done():
                return
            try:
                future.set_result(done.result())
            except BaseException as e:  # noqa: BLE001 - handed to the caller's future
                if not future.done():
                    future.set_exception(e)

        dask_future.add_done_callback(settle)
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None) -> Iterator[Any]:  # fmt: skip
        """Like ``Executor.map``, in chunks of ``chunksize`` calls per Dask task (default: the
        items spread as four chunks per worker)."""
        items = list(zip(*iterables))
        if chunksize is None:
            workers = max(1, len(self.client.scheduler_info()["workers"]))
            chunksize = max(1, -(-len(items) // (4 * workers)))
        if chunksize < 1:
            raise ValueError("chunksize: must be at least 1")
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        futures = [self.submit(_apply_chunk, fn, chunk) for chunk in chunks]

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    yield from future.result(timeout)
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        if cancel_futures:
            self.client.cancel(pending)
        elif wait and pending:
            from distributed import wait as dask_wait

            dask_wait(pending)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def executor(client: Client) -> DaskExecutor:
    """A ``concurrent.futures.Executor`` running callables on ``client``'s cluster."""
    return DaskExecutor(client)

"""AgentLock: one agent's operations one at a time, in arrival order, from any event loop.

An ``asyncio.Lock`` binds itself to the first loop that waits on it, and can only be released
from that loop: a manager used from successive ``asyncio.run`` calls then fails, and an
operation that finishes on the executor after its loop closed can no longer free its agent.
This lock keeps its state under a thread lock: it is released from any thread (the executor's
done callback), and each waiter is woken on its own loop.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

__all__ = ["AgentLock"]


class _Waiter:
    __slots__ = ("loop", "future", "granted", "abandoned")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False  # the lock was handed to this waiter
        self.abandoned = False  # cancelled before it was handed the lock

    def wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class AgentLock:
    """A FIFO lock for coroutines on any loop; ``release()`` works from any thread."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:  # cancelled (a timeout): give up the place, or the lock if handed over
            with self._guard:
                granted = waiter.granted
                waiter.abandoned = not granted
            if granted:
                self.release()
            raise

    def release(self) -> None:
        """Hands the lock to the oldest live waiter (waking it on its loop), else frees it."""
        with self._guard:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.abandoned:
                    continue
                try:
                    waiter.loop.call_soon_threadsafe(waiter.wake)
                except RuntimeError:
                    continue  # its loop is closed: nobody waits there any more
                waiter.granted = True
                return
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()

"""EventBus: topics with bounded per-subscriber queues. Publishing never blocks and works from
any thread; a slow subscriber loses its oldest events (counted), never the publisher's time."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from typing import Any

from .. import _validate

__all__ = ["EventBus", "Subscription"]


class Subscription:
    """An async iterator over one topic's events, from ``EventBus.subscribe``. Holds at most
    ``maxsize`` undelivered events; when full, a new event pushes out the oldest (``dropped``
    counts them). ``close()`` ends the iteration."""

    def __init__(self, bus: EventBus, topic: str, maxsize: int) -> None:
        self.topic, self.maxsize = topic, maxsize
        self.dropped = 0
        self.delivered = 0
        self._bus = bus
        self._events: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        # Consumers awaiting an empty queue: (their loop, their future).
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _put(self, event: Any) -> int:
        """Queues ``event``; returns how many events it pushed out (0 or 1)."""
        dropped = 0
        with self._lock:
            if self._closed:
                return 0
            if len(self._events) >= self.maxsize:
                self._events.popleft()
                self.dropped += 1
                dropped = 1
            self._events.append(event)
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each retries; one of them gets the event
            _wake(*waiter)
        return dropped

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            with self._lock:
                if self._events:
                    self.delivered += 1
                    self._bus._count(self.topic, "delivered")
                    return self._events.popleft()
                if self._closed:
                    raise StopAsyncIteration
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                waiter = (loop, future)
                self._waiters.append(waiter)
            try:
                await future
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def qsize(self) -> int:
        return len(self._events)

    def close(self) -> None:
        """Unsubscribes; a consumer waiting for an event stops iterating."""
        with self._lock:
            self._closed = True
            waiters, self._waiters = self._waiters, []
        self._bus._remove(self)
        for waiter in waiters:
            _wake(*waiter)

    async def aclose(self) -> None:
        self.close()


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def wake() -> None:
        if not future.done():
            future.set_result(None)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        wake()
    else:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:
            pass  # that consumer's loop is closed: nobody waits any more


class EventBus:
    """Topics -> subscribers. ``publish`` is thread-safe and never blocks; ``await broadcast``
    is the same from a coroutine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._topics: dict[str, list[Subscription]] = collections.defaultdict(list)
        # Cumulative per topic (subscribers that closed still count): published, delivered, dropped.
        self._counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    def subscribe(self, topic: str, maxsize: int = 1000) -> Subscription:
        """A new subscription to ``topic`` (``async for event in bus.subscribe(topic)``)."""
        _validate.string(topic, "topic")
        maxsize = _validate.integer(maxsize, "maxsize", minimum=1)
        subscription = Subscription(self, topic, maxsize)
        with self._lock:
            self._topics[topic].append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._topics.get(subscription.topic, [])
            if subscription in subscribers:
                subscribers.remove(subscription)

    def _count(self, topic: str, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[topic][what] += n

    def publish(self, topic: str, event: Any) -> int:
        """Hands ``event`` to every subscriber of ``topic``; returns how many there were."""
        _validate.string(topic, "topic")
        with self._lock:
            subscribers = list(self._topics.get(topic, ()))
            self._counts[topic]["published"] += 1
        dropped = sum(subscription._put(event) for subscription in subscribers)
        if dropped:
            self._count(topic, "dropped", dropped)
        return len(subscribers)

    async def broadcast(self, topic: str, event: Any) -> int:
        """``publish`` from a coroutine; lets the loop run the woken subscribers."""
        count = self.publish(topic, event)
        await asyncio.sleep(0)
        return count

    def stats(self) -> dict[str, Any]:
        """Per topic: events published, delivered and dropped since the bus was made (closed
        subscribers included), and the current subscribers and their queued events."""
        with self._lock:
            topics = {topic: list(subs) for topic, subs in self._topics.items()}
            counts = {topic: dict(c) for topic, c in self._counts.items()}
        return {
            topic: {
                "published": counts.get(topic, {}).get("published", 0),
                "subscribers": len(topics.get(topic, [])),
                "queued": sum(s.qsize() for s in topics.get(topic, [])),
                "delivered": counts.get(topic, {}).get("delivered", 0),
                "dropped": counts.get(topic, {}).get("dropped", 0),
            }
            for topic in set(topics) | set(counts)
        }

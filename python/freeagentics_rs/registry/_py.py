"""Pure-Python core of AgentRegistry, with the same semantics as ``rust/core/registry.rs``.

One insertion-ordered dict holds every agent (so snapshots list them in registration order, and
replacing an agent keeps its place), guarded by ``num_shards`` locks: an id's lock is chosen by
the same stable hash as the Rust core's shard (so ``shard_of`` is the same in every process and
on both backends). Writes take their id's lock; single-id reads take none (one dict lookup is
atomic, also on free-threaded builds), which keeps 90%-read workloads clear of lock convoys. No
Python code of a stored object runs while a lock is held: what is removed or replaced is
released after the lock. Snapshots (``ids``, ``items``, ``clear``, ``shard_sizes``) hold every
lock at once, taken in order.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable
from typing import Any, cast

import numpy as np

__all__ = ["AgentRegistryCore", "MAX_INT_ID", "MAX_SHARDS", "MIN_INT_ID", "check_agent_id", "stable_hash"]

MAX_SHARDS = 1 << 16  # as rust/core/registry.rs
MIN_INT_ID, MAX_INT_ID = -(1 << 63), (1 << 64) - 1  # every int64 and every uint64
_M64 = (1 << 64) - 1
_MISSING = object()
_SHARD_CACHE_LIMIT = 1 << 16  # ids whose shard is remembered (hashing in Python costs ~1 µs)


def _mix(x: int) -> int:
    # splitmix64's finalizer, as rust/core/registry.rs
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def check_agent_id(key: object) -> str | int:
    """Checks an agent id: a str, or an int or numpy integer (not a bool) in
    ``MIN_INT_ID..MAX_INT_ID``. Subclasses become plain str/int, so that no user
    ``__hash__``/``__eq__`` runs under a lock."""
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        number = int(key)
        if not MIN_INT_ID <= number <= MAX_INT_ID:
            raise ValueError(f"agent_id: must be between {MIN_INT_ID} and {MAX_INT_ID}, got {key!r}")
        return number
    raise TypeError(f"agent_id: must be a str or an int, not {type(key).__name__}")


def stable_hash(key: str | int) -> int:
    if isinstance(key, str):
        data = b"s" + key.encode("utf-8")
    else:
        data = b"i" + (key & _M64).to_bytes(8, "little")
    return _mix(zlib.crc32(data))


def _not_registered(key: object) -> KeyError:
    return KeyError(f"agent {key!r} is not registered")


class AgentRegistryCore:
    """The Python twin of ``freeagentics_rs._native.AgentRegistryCore``."""

    def __init__(self, num_shards: int) -> None:
        if not 2 <= num_shards <= MAX_SHARDS or num_shards & (num_shards - 1):
            raise ValueError(f"num_shards: must be a power of two between 2 and {MAX_SHARDS}, got {num_shards}")
        self.num_shards = num_shards
        self._shift = 64 - (num_shards.bit_length() - 1)
        self._agents: dict[str | int, Any] = {}
        try:
            self._locks = [threading.Lock() for _ in range(num_shards)]
        except RuntimeError:  # "can't allocate lock": out of memory, as the Rust core says it
            raise MemoryError("the agent registry could not allocate memory") from None
        self._sizes = [0] * num_shards
        self._shard_cache: dict[str | int, int] = {}

    def shard_of(self, agent_id: object) -> int:
        return self._index(agent_id)[1]

    def _index(self, agent_id: object) -> tuple[str | int, int]:
        """The checked id and its shard (as the Rust core picks it: top bits below 7 tag bits)."""
        t = type(agent_id)
        # Only exact str/int may hit the cache: True == 1 and str subclasses must not.
        key = cast("str | int", agent_id)  # checked below unless the cache knows it
        i = self._shard_cache.get(key) if t is str or t is int else None
        if i is None:
            key = check_agent_id(agent_id)
            i = ((stable_hash(key) << 7) & _M64) >> self._shift
            if len(self._shard_cache) < _SHARD_CACHE_LIMIT:
                self._shard_cache[key] = i
        return key, i

    def register(self, agent_id: object, agent: Any) -> None:
        k, i = self._index(agent_id)
        with self._locks[i]:
            if k not in self._agents:
                self._agents[k] = agent
                self._sizes[i] += 1
                return
        raise KeyError(f"agent {agent_id!r} is already registered")

    def set(self, agent_id: object, agent: Any) -> None:
        k, i = self._index(agent_id)
        with self._locks[i]:
            old = self._agents.get(k, _MISSING)  # keeps the replaced agent alive past the lock
            self._agents[k] = agent
            if old is _MISSING:
                self._sizes[i] += 1
        del old

    def setdefault(self, agent_id: object, default: Any = None) -> Any:
        k, i = self._index(agent_id)
        with self._locks[i]:
            agent = self._agents.get(k, _MISSING)
            if agent is not _MISSING:
                return agent
            self._agents[k] = default
            self._sizes[i] += 1
        return default

    def unregister(self, agent_id: object) -> Any:
        agent = self.pop(agent_id, _MISSING)
        if agent is _MISSING:
            raise _not_registered(agent_id)
        return agent

    def get(self, agent_id: object, default: Any = None) -> Any:
        return self._agents.get(self._index(agent_id)[0], default)

    def __getitem__(self, agent_id: object) -> Any:
        agent = self._agents.get(self._index(agent_id)[0], _MISSING)
        if agent is _MISSING:
            raise _not_registered(agent_id)
        return agent

    def __contains__(self, agent_id: object) -> bool:
        try:
            return self._index(agent_id)[0] in self._agents
        except (TypeError, ValueError):  # cannot be an id: not in the registry, as with a dict
            return False

    def __len__(self) -> int:
        return len(self._agents)

    def ids(self) -> list[str | int]:
        with _AllShards(self._locks):
            return list(self._agents)

    def items(self) -> list[tuple[str | int, Any]]:
        with _AllShards(self._locks):
            return list(self._agents.items())

    def get_many(self, agent_ids: Iterable[object]) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        for agent_id in agent_ids:
            agent = self.get(agent_id, _MISSING)
            if agent is not _MISSING:
                found[agent_id] = agent
        return found

    def update(self, agent_id: object, agent: Any) -> None:
        k, i = self._index(agent_id)
        with self._locks[i]:
            old = self._agents.get(k, _MISSING)
            if old is not _MISSING:
                self._agents[k] = agent
        if old is _MISSING:
            raise _not_registered(agent_id)
        del old  # released here, after the lock

    def compare_and_set(self, agent_id: object, expected: Any, new: Any) -> bool:
        k, i = self._index(agent_id)
        with self._locks[i]:
            old = self._agents.get(k, _MISSING)
            if old is _MISSING or old is not expected:
                return False
            self._agents[k] = new
        return True

    def pop(self, agent_id: object, *default: Any) -> Any:
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {len(default) + 1}")
        k, i = self._index(agent_id)
        with self._locks[i]:
            agent = self._agents.pop(k, _MISSING)
            if agent is not _MISSING:
                self._sizes[i] -= 1
        if agent is not _MISSING:
            return agent
        if default:
            return default[0]
        raise _not_registered(agent_id)

    def clear(self) -> None:
        with _AllShards(self._locks):
            removed = self._agents.copy()  # keeps the agents alive...
            self._agents.clear()
            self._sizes = [0] * self.num_shards
        del removed  # ...until the locks are released

    def shard_sizes(self) -> list[int]:
        with _AllShards(self._locks):
            return list(self._sizes)


class _AllShards:
    """Holds every lock, taken in order (so two snapshots never deadlock)."""

    def __init__(self, locks: list[threading.Lock]) -> None:
        self._locks = locks

    def __enter__(self) -> None:
        for lock in self._locks:
            lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        for lock in reversed(self._locks):
            lock.release()

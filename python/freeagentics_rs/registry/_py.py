"""Pure-Python core of AgentRegistry, with the same semantics as ``rust/core/registry.rs``:
``num_shards`` dicts, each with its own lock, shards chosen by the same stable hash (so a given
id lands in the same shard in every process and on both backends). Writes take their shard's
lock; single-id reads take none (one dict lookup is atomic, also on free-threaded builds), which
keeps 90%-read workloads clear of lock convoys. No Python code of a stored object runs while a
shard lock is held: what is removed or replaced is released after the lock. Snapshots (``ids``,
``items``, ``clear``, ``shard_sizes``) hold every shard lock at once, taken in shard order.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, Iterable

__all__ = ["AgentRegistryCore", "check_agent_id", "stable_hash"]

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
    """Checks an agent id: a str, or an int that fits in 64 bits (not a bool). Subclasses become
    plain str/int, so that no user ``__hash__``/``__eq__`` runs under a shard lock."""
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        if not -(1 << 63) <= key < (1 << 63):
            raise OverflowError("agent_id must fit in a signed 64-bit integer")
        return int(key)
    raise TypeError(f"agent_id must be a str or an int, not {type(key).__name__}")


def stable_hash(key: str | int) -> int:
    if isinstance(key, str):
        data = b"s" + key.encode("utf-8")
    else:
        data = b"i" + key.to_bytes(8, "little", signed=True)
    return _mix(zlib.crc32(data))


def _not_registered(key: object) -> KeyError:
    return KeyError(f"agent {key!r} is not registered")


class AgentRegistryCore:
    """The Python twin of ``freeagentics_rs._native.AgentRegistryCore``."""

    def __init__(self, num_shards: int) -> None:
        if num_shards < 2 or num_shards & (num_shards - 1):
            raise ValueError("num_shards must be a power of two greater than 1")
        self.num_shards = num_shards
        self._shift = 64 - (num_shards.bit_length() - 1)
        self._shards: list[dict] = [{} for _ in range(num_shards)]
        self._locks = [threading.Lock() for _ in range(num_shards)]
        self._shard_cache: dict[str | int, int] = {}

    def shard_of(self, agent_id: object) -> int:
        return self._index(agent_id)[1]

    def _index(self, agent_id: object) -> tuple[str | int, int]:
        """The checked id and its shard (as dashmap picks it: top bits below its 7 tag bits)."""
        t = type(agent_id)
        # Only exact str/int may hit the cache: True == 1 and str subclasses must not.
        i = self._shard_cache.get(agent_id) if t is str or t is int else None
        if i is None:
            agent_id = check_agent_id(agent_id)
            i = ((stable_hash(agent_id) << 7) & _M64) >> self._shift
            if len(self._shard_cache) < _SHARD_CACHE_LIMIT:
                self._shard_cache[agent_id] = i
        return agent_id, i

    def _slot(self, agent_id: object) -> tuple[str | int, dict, Any]:
        agent_id, i = self._index(agent_id)
        return agent_id, self._shards[i], self._locks[i]

    def register(self, agent_id: object, agent: Any) -> None:
        k, shard, lock = self._slot(agent_id)
        with lock:
            if k not in shard:
                shard[k] = agent
                return
        raise KeyError(f"agent {agent_id!r} is already registered")

    def unregister(self, agent_id: object) -> Any:
        k, shard, lock = self._slot(agent_id)
        with lock:
            agent = shard.pop(k, _MISSING)
        if agent is _MISSING:
            raise _not_registered(agent_id)
        return agent

    def get(self, agent_id: object, default: Any = None) -> Any:
        k, shard, _ = self._slot(agent_id)
        return shard.get(k, default)

    def __getitem__(self, agent_id: object) -> Any:
        agent = self.get(agent_id, _MISSING)
        if agent is _MISSING:
            raise _not_registered(agent_id)
        return agent

    def __contains__(self, agent_id: object) -> bool:
        k, shard, _ = self._slot(agent_id)
        return k in shard

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    def _all_locked(self) -> _AllShards:
        return _AllShards(self._locks)

    def ids(self) -> list:
        with self._all_locked():
            return [agent_id for shard in self._shards for agent_id in shard]

    def items(self) -> list:
        with self._all_locked():
            return [item for shard in self._shards for item in shard.items()]

    def get_many(self, agent_ids: Iterable[object]) -> dict:
        found = {}
        for agent_id in agent_ids:
            agent = self.get(agent_id, _MISSING)
            if agent is not _MISSING:
                found[agent_id] = agent
        return found

    def update(self, agent_id: object, agent: Any) -> None:
        k, shard, lock = self._slot(agent_id)
        with lock:
            old = shard.get(k, _MISSING)
            if old is not _MISSING:
                shard[k] = agent
        if old is _MISSING:
            raise _not_registered(agent_id)
        del old  # released here, after the lock

    def compare_and_set(self, agent_id: object, expected: Any, new: Any) -> bool:
        k, shard, lock = self._slot(agent_id)
        with lock:
            old = shard.get(k, _MISSING)
            if old is _MISSING or old is not expected:
                return False
            shard[k] = new
        return True

    def pop(self, agent_id: object, *default: Any) -> Any:
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {len(default) + 1}")
        k, shard, lock = self._slot(agent_id)
        with lock:
            agent = shard.pop(k, _MISSING)
        if agent is not _MISSING:
            return agent
        if default:
            return default[0]
        raise _not_registered(agent_id)

    def clear(self) -> None:
        with self._all_locked():
            removed = [dict(shard) for shard in self._shards]  # keeps the agents alive...
            for shard in self._shards:
                shard.clear()
        del removed  # ...until the locks are released

    def shard_sizes(self) -> list[int]:
        with self._all_locked():
            return [len(shard) for shard in self._shards]


class _AllShards:
    """Holds every shard lock, taken in order (so two snapshots never deadlock)."""

    def __init__(self, locks: list) -> None:
        self._locks = locks

    def __enter__(self) -> None:
        for lock in self._locks:
            lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        for lock in reversed(self._locks):
            lock.release()

"""AgentRegistry (alias LockFreeAgentRegistry): a sharded concurrent map agent id -> agent, on
dashmap (Rust core) or on per-shard dicts and locks (Python fallback)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .. import _backend
from . import _py

__all__ = ["AgentRegistry", "LockFreeAgentRegistry"]

_MISSING: Any = object()


class AgentRegistry:
    """A concurrent map agent_id (str or int) -> agent, split over ``num_shards`` shards (a power
    of two) by a hash of the id that is the same in every process and on both backends.

    Safe to use from many threads at once. No code of a stored agent (``__del__``, ``__eq__``)
    runs while a shard lock is held, so an agent may use the registry from its ``__del__``.
    ``ids()``, ``items()`` and ``clear()`` act on every shard at one instant: a snapshot is never
    torn by concurrent writes. Other id types are a ``TypeError``; ints must fit in 64 bits.
    """

    def __init__(self, num_shards: int = 16, *, backend: str | None = None) -> None:
        if isinstance(num_shards, bool) or not isinstance(num_shards, int):
            raise TypeError(f"num_shards must be an int, not {type(num_shards).__name__}")
        if num_shards < 2 or num_shards & (num_shards - 1):
            raise ValueError("num_shards must be a power of two greater than 1")
        self.backend = _backend.resolve(backend)
        core_class = _backend.native().AgentRegistryCore if self.backend == "rust" else _py.AgentRegistryCore
        core = self._core = core_class(num_shards)
        # The per-call methods are the core's own, bound here: no wrapper frame on the hot path.
        # The methods below document them (and serve type checkers); both cores take the same
        # parameter names. `pop` keeps its wrapper, for its `default=` keyword.
        for name in (
            "register", "unregister", "get", "get_many", "update",
            "compare_and_set", "ids", "items", "clear", "shard_sizes", "shard_of",
        ):  # fmt: skip
            setattr(self, name, getattr(core, name))

    @property
    def num_shards(self) -> int:
        return self._core.num_shards

    def register(self, agent_id: str | int, agent: Any) -> None:
        """Adds an agent. ``KeyError`` naming the id if it is already registered (the registry
        is unchanged)."""
        self._core.register(agent_id, agent)

    def unregister(self, agent_id: str | int) -> Any:
        """Removes and returns an agent; ``KeyError`` if it is not registered."""
        return self._core.unregister(agent_id)

    def get(self, agent_id: str | int, default: Any = None) -> Any:
        return self._core.get(agent_id, default)

    def get_many(self, agent_ids: Iterable[str | int]) -> dict[str | int, Any]:
        """``{id: agent}`` for those of ``agent_ids`` that are registered."""
        return self._core.get_many(agent_ids)

    def update(self, agent_id: str | int, agent: Any) -> None:
        """Replaces a registered agent; ``KeyError`` if it is not registered."""
        self._core.update(agent_id, agent)

    def compare_and_set(self, agent_id: str | int, expected: Any, new: Any) -> bool:
        """Replaces the agent with ``new`` if it currently *is* ``expected`` (identity, not
        ``==``) and returns True; False otherwise, also when the id is not registered."""
        return self._core.compare_and_set(agent_id, expected, new)

    def pop(self, agent_id: str | int, default: Any = _MISSING) -> Any:
        """Removes and returns an agent, or returns ``default`` (``KeyError`` without one)."""
        if default is _MISSING:
            return self._core.pop(agent_id)
        return self._core.pop(agent_id, default)

    def ids(self) -> list[str | int]:
        """Every id, at one instant."""
        return self._core.ids()

    def items(self) -> list[tuple[str | int, Any]]:
        """Every ``(id, agent)`` pair, at one instant."""
        return self._core.items()

    def clear(self) -> None:
        """Removes every agent at one instant."""
        self._core.clear()

    def shard_sizes(self) -> list[int]:
        """How many agents each shard holds (at one instant)."""
        return self._core.shard_sizes()

    def shard_of(self, agent_id: str | int) -> int:
        """The shard an id belongs to: the same in every process and on both backends."""
        return self._core.shard_of(agent_id)

    def __getitem__(self, agent_id: str | int) -> Any:
        return self._core[agent_id]

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._core

    def __len__(self) -> int:
        return len(self._core)

    def __iter__(self) -> Iterator[str | int]:
        """Over a snapshot of the ids."""
        return iter(self._core.ids())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} num_shards={self.num_shards} agents={len(self)}>"


LockFreeAgentRegistry = AgentRegistry

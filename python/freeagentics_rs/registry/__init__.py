"""AgentRegistry (alias LockFreeAgentRegistry): a sharded concurrent map agent id -> agent in
registration order, a full ``collections.abc.MutableMapping``, on a Rust core (sharded locked
hash maps) or on one dict and per-shard locks (Python fallback)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, MutableMapping, ValuesView
from typing import Any

from .. import _backend
from .._contracts import RegistryCore
from .._validate import integer
from ._py import MAX_INT_ID, MAX_SHARDS, MIN_INT_ID

__all__ = ["AgentRegistry", "LockFreeAgentRegistry", "MAX_INT_ID", "MAX_SHARDS", "MIN_INT_ID"]

_MISSING: Any = object()


class AgentRegistry(MutableMapping[str | int, Any]):
    """A concurrent map agent_id -> agent that behaves as a dict: registration order, views,
    ``[]=`` (upsert), ``del``, ``copy()``, ``update``, ``setdefault``, equality with dicts.

    Ids are ``str``s and ints from ``-2**63`` to ``2**64 - 1`` (every int64 and uint64; numpy
    integers count as ints, bools do not). Safe to use from many threads at once; spread over
    ``num_shards`` shards (a power of two up to ``MAX_SHARDS``) by a hash of the id that is the
    same in every process and on both backends. No code of a stored agent (``__del__``,
    ``__eq__``) runs while a shard lock is held. ``ids()``, ``items()``, iteration and
    ``clear()`` act on every shard at one instant: a snapshot is never torn by concurrent writes.
    """

    _core: RegistryCore

    def __init__(self, num_shards: int = 16, *, backend: str | None = None) -> None:
        num_shards = integer(num_shards, "num_shards", minimum=2, maximum=MAX_SHARDS)
        if num_shards & (num_shards - 1):
            raise ValueError(f"num_shards: must be a power of two, got {num_shards}")
        self.backend = _backend.resolve(backend)
        core = self._core = _backend.cores(self.backend).AgentRegistryCore(num_shards)
        # The per-call methods are the core's own, bound here: no wrapper frame on the hot path.
        # The methods below document them (and serve type checkers); both cores take the same
        # parameter names.
        for name in (
            "register",
            "unregister",
            "get",
            "get_many",
            "compare_and_set",
            "ids",
            "clear",
            "shard_sizes",
            "shard_of",
            "setdefault",
        ):
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

    def setdefault(self, agent_id: str | int, default: Any = None) -> Any:
        """The registered agent, or registers ``default`` and returns it (atomically)."""
        return self._core.setdefault(agent_id, default)

    def update(self, other: Any = _MISSING, agent: Any = _MISSING, /, **kwargs: Any) -> None:
        """Two forms. ``update(agent_id, agent)`` (also by keyword) replaces a registered agent:
        ``KeyError`` if it is not registered. Otherwise as ``dict.update``: registers or replaces
        the pairs of a mapping, of an iterable of pairs and of the keywords; every id is checked
        before anything is written, so a bad id changes nothing."""
        if agent is not _MISSING:  # positional-only parameters: the hot path builds no tuple
            if kwargs:
                raise TypeError("update: the form update(agent_id, agent) takes no keywords")
            self._core.update(other, agent)
            return
        if other is _MISSING and kwargs.keys() == {"agent_id", "agent"}:
            self._core.update(kwargs["agent_id"], kwargs["agent"])
            return
        pairs = []
        if other is not _MISSING:
            if isinstance(other, Mapping):
                pairs = list(other.items())
            elif hasattr(other, "keys"):
                pairs = [(key, other[key]) for key in other.keys()]
            else:
                for n, pair in enumerate(other):
                    pair = tuple(pair)
                    if len(pair) != 2:
                        raise ValueError(f"update: element {n} has length {len(pair)}; 2 is required")
                    pairs.append(pair)
        pairs.extend(kwargs.items())
        for agent_id, _ in pairs:
            self._core.shard_of(agent_id)  # checks the id
        for agent_id, agent in pairs:
            self._core.set(agent_id, agent)

    def compare_and_set(self, agent_id: str | int, expected: Any, new: Any) -> bool:
        """Replaces the agent with ``new`` if it currently *is* ``expected`` (identity, not
        ``==``) and returns True; False otherwise, also when the id is not registered."""
        return self._core.compare_and_set(agent_id, expected, new)

    def pop(self, agent_id: str | int, default: Any = _MISSING) -> Any:
        """Removes and returns an agent, or returns ``default`` (``KeyError`` without one)."""
        if default is _MISSING:
            return self._core.pop(agent_id)
        return self._core.pop(agent_id, default)

    def popitem(self) -> tuple[str | int, Any]:
        """Removes and returns the last registered ``(id, agent)`` (as ``dict.popitem``)."""
        while True:
            ids = self._core.ids()
            if not ids:
                raise KeyError("popitem(): the registry is empty")
            agent = self._core.pop(ids[-1], _MISSING)
            if agent is not _MISSING:  # else another thread took it first: try again
                return ids[-1], agent

    def ids(self) -> list[str | int]:
        """Every id at one instant, in registration order."""
        return self._core.ids()

    def keys(self) -> KeysView[str | int]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        """A view whose iteration is over a snapshot, in registration order."""
        return _Values(self)

    def items(self) -> ItemsView[str | int, Any]:
        """A view whose iteration is over a snapshot of ``(id, agent)``, in registration order."""
        return _Items(self)

    def copy(self) -> dict[str | int, Any]:
        """A dict of every agent at one instant, in registration order."""
        return dict(self._core.items())

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

    def __setitem__(self, agent_id: str | int, agent: Any) -> None:
        """Registers an agent, or replaces the registered one in its place."""
        self._core.set(agent_id, agent)

    def __delitem__(self, agent_id: str | int) -> None:
        self._core.unregister(agent_id)

    def __contains__(self, agent_id: object) -> bool:
        """False for anything that cannot be an id, as for a dict."""
        return agent_id in self._core

    def __len__(self) -> int:
        return len(self._core)

    def __iter__(self) -> Iterator[str | int]:
        """Over a snapshot of the ids, in registration order."""
        ids: list[str | int] = self._core.ids()
        return iter(ids)

    def __reversed__(self) -> Iterator[str | int]:
        ids: list[str | int] = self._core.ids()
        return reversed(ids)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.copy() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict

    def __or__(self, other: object) -> dict[str | int, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other: object) -> dict[Any, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = dict(other)
        merged.update(self.copy())
        return merged

    # `|=` updates in place and returns the registry (as dict's does); `|` makes a new dict.
    def __ior__(self, other: Any) -> AgentRegistry:  # type: ignore[misc]
        self.update(other)
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} num_shards={self.num_shards} agents={len(self)}>"


class _Values(ValuesView[Any]):
    _mapping: AgentRegistry  # set by ValuesView.__init__; typeshed does not declare it

    def __iter__(self) -> Iterator[Any]:
        return (agent for _, agent in self._mapping._core.items())

    def __contains__(self, agent: object) -> bool:
        return any(v is agent or v == agent for _, v in self._mapping._core.items())


class _Items(ItemsView[str | int, Any]):
    _mapping: AgentRegistry  # set by ItemsView.__init__; typeshed does not declare it

    def __iter__(self) -> Iterator[tuple[str | int, Any]]:
        return iter(self._mapping._core.items())

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        agent = self._mapping._core.get(item[0], _MISSING) if item[0] in self._mapping else _MISSING
        return agent is not _MISSING and (agent is item[1] or agent == item[1])


LockFreeAgentRegistry = AgentRegistry

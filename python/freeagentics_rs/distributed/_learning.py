"""``DistributedPopulation``'s learning API (a mixin), as ``AgentPopulation``'s: ``step(...,
learn=True)``, ``update_A``, ``update_B``, ``update_D`` run on every shard's agents, and ``pA``,
``pB``, ``pD`` are gathered from the shards in agent order. Every argument is checked here
first, so a refused call changes no shard."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..agents._learning_population import LearningPopulation
from ..agents._population_checks import check_observations

if TYPE_CHECKING:
    from ..agents import AgentPopulation, GenerativeModel

__all__ = ["DistributedLearning", "ShardLearning"]


class ShardLearning:
    """The learning calls of one shard (an actor wrapping its ``AgentPopulation``)."""

    population: AgentPopulation

    def step(self, observations: np.ndarray, learn: bool = False) -> np.ndarray:  # noqa: FBT001 (actor calls are positional here)
        return self.population.step(observations, learn=learn)

    def update_A(self, observations: np.ndarray) -> None:
        self.population.update_A(observations)

    def update_B(self, qs_prev: list[np.ndarray]) -> None:
        self.population.update_B(qs_prev)

    def update_D(self, qs_t0: list[np.ndarray] | None) -> None:
        self.population.update_D(qs_t0)

    def first_posteriors_missing(self) -> bool:
        """Whether ``update_D()`` would refuse: some learning agent has not inferred states
        since its last reset."""
        learning = self.population._learning
        recorded = None if learning is None else learning.qs_t0
        return recorded is not None and bool(np.isnan(recorded).any())

    def parameters(self, name: str) -> list[tuple[np.ndarray, bool]] | None:
        """``pA``, ``pB`` or ``pD``: per array, the shard's agents' own (a copy) and True, or,
        for an array not learned, the one shared array and False (not one copy per agent)."""
        arrays = getattr(self.population, name)
        if arrays is None:
            return None
        return [(a.copy(), True) if a.flags.writeable else (a[0].copy(), False) for a in arrays]


class _Shapes:
    """What ``LearningPopulation._marginals`` reads of a population (its ``qs`` shapes), with
    no memory behind it, so both check posteriors with the same messages."""

    def __init__(self, n_agents: int, num_states: tuple[int, ...]) -> None:
        self.qs = tuple(np.broadcast_to(np.zeros(()), (n_agents, s)) for s in num_states)


class DistributedLearning:
    """Parameter learning for ``DistributedPopulation``."""

    model: GenerativeModel
    n_agents: int
    bounds: list[tuple[int, int]]
    _kwargs: dict[str, Any]

    if TYPE_CHECKING:

        def _call_all(self, method: str, arguments: list[tuple[Any, ...]] | None = None) -> list[Any]: ...

    def _refuse_without(self, name: str, parameter: str) -> None:
        if self._kwargs.get(parameter) is None:
            raise ValueError(f"{name}: this population has no {parameter} (it was built with {parameter}=None)")

    def _per_shard(self, value: Any, name: str) -> list[tuple[Any, ...]]:
        """Posteriors (one (agents, states) array per factor, as ``qs``) checked as
        ``AgentPopulation`` checks them, as each shard's rows."""
        num_states = self.model.num_states if self.model.factorized else (self.model.num_states,)
        shapes = cast(Any, _Shapes(self.n_agents, tuple(num_states)))
        joined = LearningPopulation._marginals(shapes, value, name)
        offsets = np.cumsum((0, *num_states))
        factors = [slice(int(lo), int(hi)) for lo, hi in pairwise(offsets)]
        return [([np.ascontiguousarray(joined[lo:hi, f]) for f in factors],) for lo, hi in self.bounds]

    def _gather(self, name: str) -> list[np.ndarray] | None:
        parts = self._call_all("parameters", [(name,)] * len(self.bounds))
        if parts[0] is None:
            return None
        gathered = []
        for pieces in zip(*parts, strict=True):
            own = [array for array, learned in pieces if learned]
            if own:
                gathered.append(np.concatenate(own))
            else:  # shared: one read-only broadcast view, as AgentPopulation's
                shared = pieces[0][0]
                gathered.append(np.broadcast_to(shared, (self.n_agents, *shared.shape)))
        return gathered

    @property
    def pA(self) -> list[np.ndarray] | None:
        """One (agents, observations, *states) array per modality (None without ``pA``),
        gathered from the shards: the learned modalities' arrays are copies of the agents' own,
        the others read-only views of one shared array, as ``AgentPopulation.pA``."""
        return self._gather("pA")

    @property
    def pB(self) -> list[np.ndarray] | None:
        """One (agents, states, states, controls) array per factor (None without ``pB``), as ``pA``."""
        return self._gather("pB")

    @property
    def pD(self) -> list[np.ndarray] | None:
        """One (agents, states) array per factor (None without ``pD``), as ``pA``."""
        return self._gather("pD")

    def update_A(self, observations: Any) -> list[np.ndarray] | None:
        """``AgentPopulation.update_A`` on every shard; returns the gathered ``pA``."""
        obs = check_observations(self.model, observations, self.n_agents)
        self._refuse_without("update_A", "pA")
        self._call_all("update_A", [(obs[lo:hi],) for lo, hi in self.bounds])
        return self.pA

    def update_B(self, qs_prev: Any) -> list[np.ndarray] | None:
        """``AgentPopulation.update_B`` on every shard (``qs_prev``: one (agents, states) array
        per factor, as ``gather_qs()``); returns the gathered ``pB``."""
        self._refuse_without("update_B", "pB")
        self._call_all("update_B", self._per_shard(qs_prev, "qs_prev"))
        return self.pB

    def update_D(self, qs_t0: Any = None) -> list[np.ndarray] | None:
        """``AgentPopulation.update_D`` on every shard (by default with each agent's posterior
        at its first step since the last reset); returns the gathered ``pD``."""
        self._refuse_without("update_D", "pD")
        if qs_t0 is None:
            if any(self._call_all("first_posteriors_missing")):
                raise ValueError("qs_t0: some agents have inferred no states since the last reset; pass qs_t0")
            arguments: list[tuple[Any, ...]] = [(None,)] * len(self.bounds)
        else:
            arguments = self._per_shard(qs_t0, "qs_t0")
        self._call_all("update_D", arguments)
        return self.pD

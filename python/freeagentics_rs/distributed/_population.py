"""DistributedPopulation: one AgentPopulation split into shards, each living on a Dask worker
(an actor) across steps, so only observations and actions travel each step."""

from __future__ import annotations

import contextlib
from itertools import pairwise
from typing import Any

import numpy as np
from distributed import Client
from distributed.comm.core import CommClosedError

from .. import _validate
from ..agents import AgentPopulation, GenerativeModel
from ..agents._population_checks import check_observations
from ..errors import ShardsLostError
from ._learning import DistributedLearning, ShardLearning

__all__ = ["DistributedPopulation"]


def _model_arrays(model: GenerativeModel) -> dict[str, Any]:
    """The model's arrays to rebuild it on a worker: one B and D per factor when factorized."""
    per_factor = (lambda items: [np.asarray(x) for x in items]) if model.factorized else np.asarray
    return {
        "A": [np.asarray(a) for a in model.A],
        "B": per_factor(model.B),
        "C": [np.asarray(c) for c in model.C],
        "D": per_factor(model.D),
        "E": None if model.E is None else np.asarray(model.E),
    }


class _Shard(ShardLearning):
    """Agents ``row_offset`` to ``row_offset + n_agents`` of a population, on one worker."""

    def __init__(self, arrays: dict[str, Any], n_agents: int, row_offset: int, kwargs: dict[str, Any]) -> None:
        model = GenerativeModel(
            arrays["A"], arrays["B"], arrays["C"], arrays["D"], E=arrays["E"], backend=kwargs.get("backend")
        )
        self.population = AgentPopulation(model, n_agents, row_offset=row_offset, **kwargs)

    def beliefs(self) -> np.ndarray:
        result: np.ndarray = self.population.beliefs.copy()
        return result

    def qs(self) -> tuple[np.ndarray, ...]:
        return tuple(q.copy() for q in self.population.qs)

    def save_state(self) -> dict[str, Any]:
        return self.population.save_state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.population.load_state(state)

    def reset(self, parameters: bool = False) -> None:  # noqa: FBT001 (actor calls are positional here)
        self.population.reset(parameters=parameters)


def _alive() -> bool:
    return True


class DistributedPopulation(DistributedLearning):
    """``n_agents`` agents of ``model``, split into ``shards`` (default: one per worker of
    ``client``) that live on Dask workers across steps; the same results as one local
    ``AgentPopulation`` with the same arguments (``seed`` included).

    ``step(observations)`` sends each shard its observations and returns all actions:
    (n_agents,), or (n_agents, factors) for factorized models (every ``AgentPopulation``
    argument passes through: ``policy_len``, ``policies``, ``sampling_mode``, ...).
    ``run(world, steps)``, ``reset()``, ``gather_beliefs()``, ``gather_qs()``,
    ``checkpoint(store)`` and ``restore(store)`` (an ``AgentStateStore``) complete it.
    Learning as ``AgentPopulation``'s (``pA``, ``pB``, ``pD``, ``lr_pA``, ... pass through):
    ``step(observations, learn=True)``, ``update_A``, ``update_B``, ``update_D`` on every
    shard, and ``pA``, ``pB``, ``pD`` gathered from the shards in agent order. When a worker
    dies, its shards are rebuilt on the surviving workers, every shard goes back to the last
    checkpoint (the construction counts as one) and the step raises ``ShardsLostError`` naming
    the lost shards; a step never returns fewer agents, and the shards never end up at
    different steps.
    """

    def __init__(
        self,
        model: GenerativeModel,
        n_agents: int,
        client: Client,
        *,
        shards: int | None = None,
        **population_kwargs: Any,
    ) -> None:
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model: must be a GenerativeModel, not {type(model).__name__}")
        n_agents = _validate.integer(n_agents, "n_agents", minimum=1)
        workers = self._workers(client)
        shards = len(workers) if shards is None else _validate.integer(shards, "shards", minimum=1, maximum=n_agents)
        if "row_offset" in population_kwargs:
            raise TypeError("row_offset: is set per shard by DistributedPopulation")
        self.model, self.n_agents, self.client = model, int(n_agents), client
        self._arrays = _model_arrays(model)
        self._kwargs = population_kwargs
        bounds = np.linspace(0, self.n_agents, shards + 1).astype(int)
        self.bounds = [(int(lo), int(hi)) for lo, hi in pairwise(bounds)]
        self.steps_taken = 0
        self._checkpoint: tuple[int, list[dict[str, Any] | None]] = (0, [None] * shards)
        started = [self._start(i, workers[i % len(workers)]) for i in range(shards)]
        self._actors = [actor for actor, _ in started]
        self._futures = [future for _, future in started]

    @staticmethod
    def _workers(client: Client) -> list[str]:
        # Asked of the scheduler now: the client's `scheduler_info()` is a cache that its
        # periodic refresh can leave without workers, even right after a fresh fetch.
        workers = sorted(client.nthreads())
        if not workers:
            raise RuntimeError("client: the cluster has no workers")
        return workers

    def _start(self, shard: int, worker: str) -> tuple[Any, Any]:
        """(the actor, the future that keeps it alive on its worker)."""
        lo, hi = self.bounds[shard]
        future = self.client.submit(
            _Shard,
            self._arrays,
            hi - lo,
            lo,
            self._kwargs,
            actor=True,
            workers=[worker],
            allow_other_workers=True,
            pure=False,
        )
        return future.result(), future

    def _release(self, shard: int) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel([self._futures[shard]])

    @property
    def shards(self) -> int:
        return len(self._actors)

    def _call_all(self, method: str, arguments: list[tuple[Any, ...]] | None = None) -> list[Any]:
        """Calls ``method`` on every shard. If shards were lost with their worker, rebuilds them
        on live workers, puts every shard back at the last checkpoint (so the population stays
        one population) and raises ``ShardsLostError``."""
        arguments = arguments or [()] * self.shards
        futures, errors = {}, {}
        for shard, (actor, args) in enumerate(zip(self._actors, arguments, strict=True)):
            try:  # an actor whose worker is known to be gone refuses the call at once
                futures[shard] = getattr(actor, method)(*args)
            except Exception as e:  # sorted out below
                errors[shard] = e
        results = [None] * self.shards
        for shard, future in futures.items():
            try:
                results[shard] = future.result()
            except Exception as e:  # sorted out below
                errors[shard] = e
        if not errors:
            return results
        lost = [shard for shard, error in errors.items() if self._worker_lost(shard, error)]
        if len(lost) < len(errors):  # an error of the shard's own: the caller's
            raise next(e for shard, e in errors.items() if shard not in lost)
        workers = self._workers(self.client)
        for k, shard in enumerate(lost):
            self._release(shard)
            self._actors[shard], self._futures[shard] = self._start(shard, workers[k % len(workers)])
        self._rewind()
        raise ShardsLostError(lost, self.steps_taken)

    def _worker_lost(self, shard: int, error: BaseException) -> bool:
        """Whether the shard's worker is gone: the scheduler no longer lists it, or the call
        failed on the connection and the worker does not answer."""
        address = getattr(self._actors[shard], "_address", None)
        if address not in set(self._workers(self.client)):
            return True
        if not (isinstance(error, (CommClosedError, OSError)) or "Worker holding Actor was lost" in str(error)):
            return False
        try:
            self.client.run(_alive, workers=[address])
        except Exception:  # any failure to answer means it is gone
            return True
        return False

    def _rewind(self) -> None:
        """Every shard back to the last checkpoint (for the construction: a reset that restores
        the parameters' priors too, as a fresh shard has them)."""
        step, states = self._checkpoint
        calls = [
            actor.reset(True) if state is None else actor.load_state(state)
            for actor, state in zip(self._actors, states, strict=True)
        ]
        for call in calls:
            call.result()
        self.steps_taken = step

    def step(self, observations: Any, *, learn: bool = False) -> np.ndarray:
        """Every agent's step (state inference, policies, action); returns all actions. With
        ``learn=True``, each shard's learning step (as ``AgentPopulation.step``). Arguments
        are checked here first, so a bad one changes no shard."""
        learn = _validate.boolean(learn, "learn")
        obs = check_observations(self.model, observations, self.n_agents)
        parts = self._call_all("step", [(obs[lo:hi], learn) for lo, hi in self.bounds])
        self.steps_taken += 1
        return np.concatenate(parts)

    def run(self, world: Any, steps: int, *, learn: bool = False) -> np.ndarray:
        """``steps`` steps in ``world``; returns the last actions. A GridWorld-style world
        (``observe()``, ``move(actions)``) goes on from where it is; one with ``reset()`` and
        ``step(actions)`` returning the observations (``TMaze``, pymdp's environments) starts
        an episode with ``world.reset()`` (the agents are not reset: see ``reset``)."""
        steps = _validate.integer(steps, "steps", minimum=0)
        learn = _validate.boolean(learn, "learn")
        actions = np.empty(0, np.int64)
        if callable(getattr(world, "observe", None)) and callable(getattr(world, "move", None)):
            for _ in range(steps):
                actions = self.step(world.observe(), learn=learn)
                world.move(actions)
            return actions
        if not (callable(getattr(world, "reset", None)) and callable(getattr(world, "step", None))):
            raise TypeError(
                f"world: must have observe() and move(actions) (as GridWorld) or reset() and "
                f"step(actions) (as TMaze), not {type(world).__name__}"
            )
        observations = world.reset()
        for _ in range(steps):
            actions = self.step(observations, learn=learn)
            observations = world.step(actions)
        return actions

    def reset(self, *, parameters: bool = False) -> None:
        """Every agent back to the start (as ``AgentPopulation.reset``): learned parameters
        are kept unless ``parameters=True``, which restores the priors."""
        parameters = _validate.boolean(parameters, "parameters")
        self._call_all("reset", [(parameters,)] * self.shards)

    def gather_beliefs(self) -> np.ndarray:
        """All agents' beliefs, (n_agents, states), fetched from the shards (for several
        factors, each agent's factor marginals side by side, as ``AgentPopulation.beliefs``)."""
        return np.concatenate(self._call_all("beliefs"))

    def gather_qs(self) -> tuple[np.ndarray, ...]:
        """All agents' posteriors per factor, fetched from the shards: one (n_agents,
        num_states[f]) array per factor, as ``AgentPopulation.qs``."""
        parts = self._call_all("qs")
        return tuple(np.concatenate(factor) for factor in zip(*parts, strict=True))

    def checkpoint(self, store: Any = None, prefix: str = "population") -> None:
        """Keeps every shard's state (for rebuilding lost shards) and, with an
        ``AgentStateStore``, saves it there in one transaction as ``{prefix}/shard-{i}``."""
        states = self._call_all("save_state")
        self._checkpoint = (self.steps_taken, states)
        if store is not None:
            saved = {
                f"{prefix}/shard-{i}": {**state, "bounds": np.array(self.bounds[i]), "steps_taken": self.steps_taken}
                for i, state in enumerate(states)
            }
            store.save_many(saved)

    def restore(self, store: Any, prefix: str = "population") -> None:
        """Loads the states ``checkpoint(store)`` saved (the same shard layout is required). If a
        shard refuses its state, every shard goes back to the previous checkpoint."""
        states = []
        for i in range(self.shards):
            try:
                state = store.load(f"{prefix}/shard-{i}")
            except KeyError:
                state = {}
            if tuple(int(b) for b in state.get("bounds", ())) != self.bounds[i]:
                raise ValueError(f"store: shard {i} was saved with another layout than {self.bounds[i]}, or not at all")
            states.append(state)
        clean: list[dict[str, Any] | None] = [
            {k: v for k, v in s.items() if k not in ("bounds", "steps_taken")} for s in states
        ]
        try:
            self._call_all("load_state", [(s,) for s in clean])
        except ShardsLostError:
            raise
        except Exception:
            self._rewind()
            raise
        self._checkpoint = (int(states[0]["steps_taken"]), clean)
        self.steps_taken = self._checkpoint[0]

    def close(self) -> None:
        """Frees the shards on their workers."""
        for shard in range(len(self._futures)):
            self._release(shard)
        self._actors, self._futures = [], []

    def __enter__(self) -> DistributedPopulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

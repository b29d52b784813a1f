"""``PopulationAgent``: one agent (one row) of an ``AgentPopulation``, with FreeAgentics'
agent methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _validate
from ._population_checks import is_integer

if TYPE_CHECKING:
    from ._population import AgentPopulation

__all__ = ["PopulationAgent"]


_AGENT_STATE_KEYS = ("beliefs", "q_pi", "G", "F", "action", "timestep")


class PopulationAgent:
    """One agent of an ``AgentPopulation`` with FreeAgentics' agent methods, so
    ``OptimizedThreadPoolManager`` and ``AsyncAgentManager`` can drive it: ``perceive``,
    ``update_beliefs``, ``select_action``, ``step``, ``beliefs``, ``get_state``/``set_state``.
    Each works on this agent's row only, so different agents may run in different threads."""

    def __init__(self, population: AgentPopulation, index: int) -> None:
        if not is_integer(index) or not 0 <= index < population.n_agents:
            raise IndexError(f"index: must lie in [0, {population.n_agents}), got {index!r}")
        self.population, self.index = population, int(index)
        self._rows = slice(self.index, self.index + 1)
        self._observation: np.ndarray | None = None

    @property
    def beliefs(self) -> np.ndarray:
        result: np.ndarray = self.population.beliefs[self.index]
        return result

    @property
    def action(self) -> int | list[int]:
        """The last action: an int, or one int per factor (a list) for several factors."""
        action = self.population.actions[self.index]
        return int(action) if action.ndim == 0 else action.tolist()

    def perceive(self, observation: Any) -> None:
        """Stores an observation (an int, or one int per modality) for ``update_beliefs``."""
        obs = observation.get("observation", observation) if isinstance(observation, dict) else observation
        self._observation = self.population._observations(np.reshape(obs, (1, -1)), 1)

    def update_beliefs(self) -> np.ndarray:
        if self._observation is None:
            raise RuntimeError("update_beliefs: no observation; call perceive first")
        self.population._run(self._rows, self._observation, infer=True, plan=False, act=False)
        return self.beliefs

    def select_action(self) -> int | list[int]:
        self.population._run(self._rows, None, infer=False, plan=True, act=True)
        return self.action

    def step(self, observation: Any) -> int | list[int]:
        self.perceive(observation)
        self.population._run(self._rows, self._observation, infer=True, plan=True, act=True)
        return self.action

    def get_state(self) -> dict[str, Any]:
        """This agent's state; with learning, its learned arrays too (``pA``, ``pB``, ``pD``:
        lists with None where shared) and ``qs_t0``."""
        p, i = self.population, self.index
        state = {
            "beliefs": p.beliefs[i].copy(),
            "q_pi": p.q_pi[i].copy(),
            "G": p.G[i].copy(),
            "F": float(p.F[i]),
            "action": self.action,
            "timestep": int(p.timesteps[i]),
        }
        if p._learning is not None:
            state.update(p._learning.agent_state(i))
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a ``get_state`` result; checks everything before changing anything."""
        p, i = self.population, self.index
        if not isinstance(state, dict):
            raise TypeError(f"state: must be a dict, not {type(state).__name__}")
        missing = [k for k in _AGENT_STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state: missing {', '.join(missing)}")
        arrays = {}
        for name, target in (("beliefs", p.beliefs), ("q_pi", p.q_pi), ("G", p.G)):
            try:
                arrays[name] = np.asarray(state[name], np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"state: {name} must be numbers, got {state[name]!r}") from None
            if arrays[name].shape != target[i].shape:
                raise ValueError(f"state: {name} has shape {arrays[name].shape}, needs {target[i].shape}")
        free_energy = _validate.real(state["F"], "state: F", finite=False)
        if p.model.factorized:
            given = state["action"]
            if isinstance(given, (str, bytes)) or np.ndim(given) != 1 or len(given) != p.model.num_factors:
                raise ValueError(f"state: action must be one int per factor ({p.model.num_factors}), got {given!r}")
            action: int | list[int] = [
                _validate.integer(a, f"state: action[{f}]", minimum=-1, maximum=n - 1)
                for f, (a, n) in enumerate(zip(given, p.model.num_controls, strict=True))
            ]
        else:
            action = _validate.integer(state["action"], "state: action", minimum=-1, maximum=p.model.num_actions - 1)
        timestep = _validate.integer(state["timestep"], "state: timestep", minimum=0, maximum=(1 << 63) - 1)
        learned = None if p._learning is None else p._learning.check_agent_state(state)
        p.beliefs[i], p.q_pi[i], p.G[i] = arrays["beliefs"], arrays["q_pi"], arrays["G"]
        p.F[i], p.actions[i], p.timesteps[i] = free_energy, action, timestep
        if learned is not None:
            p._learning.load_agent(learned, i)  # type: ignore[union-attr]

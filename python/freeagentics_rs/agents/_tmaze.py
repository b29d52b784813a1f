"""The T-maze of pymdp's ``TMazeEnv``, vectorized over agents, and its generative model.

Two hidden-state factors: location (0 centre, 1 left arm, 2 right arm, 3 cue arm; the control
is the location to go to) and reward condition (0: the left arm pays, 1: the right arm pays;
fixed for an episode). Three modalities: the location itself; the outcome (0 none, 1 reward,
2 loss: in the paying arm reward with probability ``reward_probs[0]``, in the other arm with
``reward_probs[1]``); and the cue (in the cue arm it names the condition, elsewhere it is a fair
coin)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from ._model import GenerativeModel

__all__ = ["TMaze", "tmaze_arrays", "tmaze_model"]

LOCATIONS, CONDITIONS = 4, 2


def _reward_probs(reward_probs: Any) -> tuple[float, float]:
    try:
        values = tuple(reward_probs)
    except TypeError:
        raise TypeError(f"reward_probs: must be two probabilities, not {type(reward_probs).__name__}") from None
    if len(values) != 2:
        raise ValueError(f"reward_probs: must be two probabilities, got {reward_probs!r}")
    a, b = (_validate.real(v, "reward_probs", minimum=0.0, maximum=1.0) for v in values)
    if abs(a + b - 1.0) > 1e-9:
        raise ValueError(f"reward_probs: must sum to 1, got {reward_probs!r}")
    return a, b


def tmaze_arrays(reward_probs: Any = (0.98, 0.02)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(A, B)`` of the T-maze, as pymdp's ``TMazeEnv`` builds them."""
    high, low = _reward_probs(reward_probs)
    A = [
        np.zeros((LOCATIONS, LOCATIONS, CONDITIONS)),
        np.zeros((3, LOCATIONS, CONDITIONS)),
        np.zeros((CONDITIONS, LOCATIONS, CONDITIONS)),
    ]
    for location in range(LOCATIONS):
        for condition in range(CONDITIONS):
            A[0][location, location, condition] = 1.0
            if location == 0:
                A[1][0, location, condition] = 1.0
                A[2][:, location, condition] = 1.0 / CONDITIONS
            elif location == 3:
                A[1][0, location, condition] = 1.0
                A[2][condition, location, condition] = 1.0
            else:
                paying = location == condition + 1
                A[1][1 if paying else 2, location, condition] = high
                A[1][2 if paying else 1, location, condition] = low
                A[2][:, location, condition] = 1.0 / CONDITIONS
    # Location: the control is the next location, wherever the agent is.
    B_location = np.zeros((LOCATIONS, LOCATIONS, LOCATIONS))
    for control in range(LOCATIONS):
        B_location[control, :, control] = 1.0
    B = [B_location, np.eye(CONDITIONS).reshape(CONDITIONS, CONDITIONS, 1)]
    return A, B


def tmaze_model(
    reward_probs: Any = (0.98, 0.02), reward: float = 3.0, punishment: float = -3.0, *, backend: str | None = None
) -> GenerativeModel:
    """The agent's model of the T-maze (pymdp's T-maze demo): the environment's A and B,
    preferences ``reward`` and ``punishment`` for the outcomes, and a prior that the agent
    starts in the centre with either condition equally likely."""
    reward = _validate.real(reward, "reward")
    punishment = _validate.real(punishment, "punishment")
    A, B = tmaze_arrays(reward_probs)
    C = [np.zeros(LOCATIONS), np.array([0.0, reward, punishment]), np.zeros(CONDITIONS)]
    D = [np.eye(LOCATIONS)[0], np.full(CONDITIONS, 1.0 / CONDITIONS)]
    return GenerativeModel(A, B, C, D, backend=backend)


class TMaze:
    """``n_agents`` T-mazes at once. ``reset()`` puts every agent in the centre with a random
    reward condition; ``step(actions)`` moves each agent to the location its action names
    (``actions`` (agents,) or a population's (agents, 2)); both return (agents, 3) observations
    (location, outcome, cue) drawn from the likelihoods with ``seed``'s generator."""

    def __init__(self, n_agents: int, reward_probs: Any = (0.98, 0.02), seed: int | None = None) -> None:
        self.n_agents = _validate.integer(n_agents, "n_agents", minimum=1, maximum=1 << 24)
        if seed is not None:
            seed = _validate.integer(seed, "seed", minimum=0)
        self.A, self.B = tmaze_arrays(reward_probs)
        self.reward_probs = _reward_probs(reward_probs)
        self.rng = np.random.default_rng(seed)
        self.locations = np.zeros(self.n_agents, np.int64)
        self.conditions = np.zeros(self.n_agents, np.int64)

    def _observe(self) -> np.ndarray:
        obs = np.empty((self.n_agents, len(self.A)), np.int64)
        for m, A in enumerate(self.A):
            p = A[:, self.locations, self.conditions].T  # (agents, observations)
            u = self.rng.random(self.n_agents)
            obs[:, m] = np.minimum((np.cumsum(p, axis=1) <= u[:, None]).sum(axis=1), A.shape[0] - 1)
        return obs

    def reset(self) -> np.ndarray:
        self.locations[:] = 0
        self.conditions[:] = self.rng.integers(0, CONDITIONS, self.n_agents)
        return self._observe()

    def step(self, actions: Any) -> np.ndarray:
        actions = np.asarray(actions)
        if actions.dtype.kind not in "iu":
            raise TypeError(f"actions: must be ints, got dtype {actions.dtype}")
        if actions.shape == (self.n_agents, 2):
            actions = actions[:, 0]
        if actions.shape != (self.n_agents,):
            raise ValueError(
                f"actions: must have shape ({self.n_agents},) or ({self.n_agents}, 2), got {actions.shape}"
            )
        if actions.size and (actions.min() < 0 or actions.max() >= LOCATIONS):
            raise ValueError(f"actions: locations must lie in [0, {LOCATIONS}), got {actions.min()}..{actions.max()}")
        self.locations[:] = actions
        return self._observe()

    def rewarded(self, observations: np.ndarray) -> np.ndarray:
        """(agents,) bool: which observations are a reward."""
        result: np.ndarray = np.asarray(observations)[:, 1] == 1
        return result

"""GridWorld: many agents on one grid, moved and observed all at once (FreeAgentics' explorer
world: the observation is the centre of each agent's 3x3 surroundings)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _validate

__all__ = ["GridWorld"]

# Surroundings values (FreeAgentics' grid codes) and the observation each maps to.
OUT_OF_BOUNDS, OBSTACLE, EMPTY, GOAL, AGENT = -2, -1, 0, 1, 2
_OBSERVATION = {OUT_OF_BOUNDS: 4, OBSTACLE: 1, GOAL: 2, AGENT: 3, EMPTY: 0}
# Bounds that keep a world's arrays (grid_size**2 cells, one position per agent) small.
MAX_GRID_SIZE = 1 << 12
MAX_WORLD_AGENTS = 1 << 24
# up, down, left, right, stay (the explorer model's actions)
_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])


class GridWorld:
    """``n_agents`` agents on a ``grid_size`` x ``grid_size`` grid with ``obstacles`` and
    ``goals`` (cells as (row, column) pairs or cell indices row * grid_size + column; by default
    no obstacles and one goal in the far corner). Agents start on ``starts`` or on random free
    cells (``seed``). A loop is ``obs = world.observe(); actions = pop.step(obs);
    world.move(actions)``.

    ``surroundings()`` gives each agent's 3x3 neighbourhood: -2 out of bounds, -1 obstacle,
    1 goal, 2 another agent (over a goal), 0 empty. ``observe()`` maps its centre to the
    explorer model's observation: 4 out of bounds, 1 obstacle, 2 goal, 3 another agent, 0 empty.
    ``move(actions)`` applies up/down/left/right/stay; a move off the grid or into an obstacle
    stays put.
    """

    def __init__(
        self,
        grid_size: int,
        n_agents: int,
        *,
        obstacles: Iterable[Any] = (),
        goals: Iterable[Any] | None = None,
        starts: Iterable[Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.grid_size = _validate.integer(grid_size, "grid_size", minimum=1, maximum=MAX_GRID_SIZE)
        self.n_agents = _validate.integer(n_agents, "n_agents", minimum=1, maximum=MAX_WORLD_AGENTS)
        if seed is not None:
            seed = _validate.integer(seed, "seed", minimum=0)
        self.cells = np.zeros(self.grid_size * self.grid_size, np.int8)
        obstacle_cells = self._cells(obstacles, "obstacles")
        self.cells[obstacle_cells] = OBSTACLE
        goal_cells = self._cells([(self.grid_size - 1, self.grid_size - 1)] if goals is None else goals, "goals")
        on_obstacle = goal_cells[self.cells[goal_cells] == OBSTACLE]
        if on_obstacle.size and goals is None:
            raise ValueError(
                f"obstacles: cover the default goal (cell {on_obstacle[0]}); "
                f"pass goals, got {obstacle_cells.tolist()!r}"
            )
        if on_obstacle.size:
            raise ValueError(f"goals: cell {on_obstacle[0]} lies on an obstacle, got {goal_cells.tolist()!r}")
        self.cells[goal_cells] = GOAL
        free = np.flatnonzero(self.cells != OBSTACLE)
        if starts is None:
            if free.size == 0:
                raise ValueError("obstacles: no free cell to start on")
            self.positions = np.random.default_rng(seed).choice(free, self.n_agents)
        else:
            self.positions = self._cells(starts, "starts")
            if self.positions.shape != (self.n_agents,):
                raise ValueError(f"starts: needs one cell per agent ({self.n_agents}), got {self.positions.shape[0]}")
            if (self.cells[self.positions] == OBSTACLE).any():
                raise ValueError("starts: an agent starts on an obstacle")
        self.positions = self.positions.astype(np.int64)

    def _cells(self, cells: Iterable[Any], name: str) -> np.ndarray:
        try:
            a = np.asarray(list(cells))
        except (TypeError, ValueError):
            raise TypeError(f"{name}: must be (row, column) pairs or cell indices, got {cells!r}") from None
        if a.size == 0:
            return np.zeros(0, np.int64)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name}: must be ints, got {a.dtype} values {cells!r}")
        n = self.grid_size
        if a.ndim == 2 and a.shape[1] == 2:
            if (a < 0).any() or (a >= n).any():
                raise ValueError(f"{name}: (row, column) pairs must lie in [0, {n}), got {a.tolist()!r}")
            return a[:, 0].astype(np.int64) * n + a[:, 1].astype(np.int64)
        if a.ndim == 1:
            if (a < 0).any() or (a >= n * n).any():
                raise ValueError(f"{name}: cell indices must lie in [0, {n * n}), got {a.tolist()!r}")
            return a.astype(np.int64)
        raise ValueError(f"{name}: must be (row, column) pairs or cell indices, got shape {a.shape}")

    def surroundings(self) -> np.ndarray:
        """(agents, 3, 3) int8 neighbourhoods, the agent's own cell at the centre."""
        n = self.grid_size
        rows, cols = np.divmod(self.positions, n)
        dr, dc = np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij")
        r, c = rows[:, None, None] + dr, cols[:, None, None] + dc
        inside = (r >= 0) & (r < n) & (c >= 0) & (c < n)
        cell = np.where(inside, r * n + c, 0)
        view = np.where(inside, self.cells[cell], OUT_OF_BOUNDS).astype(np.int8)
        others = np.bincount(self.positions, minlength=n * n)[cell]
        others[:, 1, 1] -= 1  # the agent itself
        view[inside & (others > 0) & (view != OBSTACLE)] = AGENT
        return view

    def observe(self) -> np.ndarray:
        """(agents,) observations: the centre of each agent's surroundings."""
        centre = self.surroundings()[:, 1, 1]
        lookup = np.zeros(5, np.int64)
        for code, observation in _OBSERVATION.items():
            lookup[code + 2] = observation
        return lookup[centre.astype(np.int64) + 2]

    def move(self, actions: Any) -> None:
        """Moves every agent by its action (0 up, 1 down, 2 left, 3 right, 4 stay)."""
        actions = np.asarray(actions)
        if actions.shape != (self.n_agents,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions: must be {self.n_agents} ints, got shape {actions.shape} dtype {actions.dtype}")
        if actions.size and (actions.min() < 0 or actions.max() >= len(_MOVES)):
            raise ValueError("actions: must lie in [0, 5)")
        n = self.grid_size
        rows, cols = np.divmod(self.positions, n)
        r, c = rows + _MOVES[actions, 0], cols + _MOVES[actions, 1]
        inside = (r >= 0) & (r < n) & (c >= 0) & (c < n)
        target = np.where(inside, r * n + c, self.positions)
        self.positions = np.where(self.cells[target] == OBSTACLE, self.positions, target)

    def at_goal(self) -> np.ndarray:
        """(agents,) bool: which agents stand on a goal."""
        result: np.ndarray = self.cells[self.positions] == GOAL
        return result

"""AgentPopulation against pymdp 0.0.7.1's Agent (the numpy line FreeAgentics runs), on both
backends: posteriors, q_pi, G and deterministic actions over 200-step trajectories on the
explorer model (grid 3 and grid 10) and on multi-modality models, policy_len 1 and 2.

pymdp breaks exact ties between actions (which symmetric models produce) by rounding; this
package takes the first tied action. Where pymdp's two best action marginals are within 1e-12
of each other, the test accepts either action and steers the population with pymdp's, so the
trajectories stay the same."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GridWorld, grid_world_model, reward_grid_model

pymdp = pytest.importorskip("pymdp", reason="pymdp 0.0.7.1 is a test dependency (`make test` installs it)")
from pymdp import utils  # noqa: E402
from pymdp.agent import Agent  # noqa: E402

TOLERANCE = 1e-9
# Actions may differ from pymdp's only at exact ties (then pymdp's is taken); these runs see at
# most 0.5% of them, so more means the comparison has stopped testing the choice of actions.
MAX_TIE_SHARE = 0.02


def _obj(arrays):
    out = utils.obj_array(len(arrays))
    for i, a in enumerate(arrays):
        out[i] = np.asarray(a)
    return out


def pymdp_agent(model, policy_len):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Agent(
            A=_obj(model.A),
            B=_obj([model.B]),
            C=_obj(model.C),
            D=_obj([model.D]),
            policy_len=policy_len,
            inference_algo="VANILLA",
            inference_horizon=1,
            use_states_info_gain=True,
            use_utility=True,
            use_param_info_gain=False,
            gamma=8.0,
            alpha=8.0,
            action_selection="deterministic",
            save_belief_hist=False,
        )


def _marginals(q_pi, num_actions, policy_len):
    per_first = num_actions ** (policy_len - 1)
    m = q_pi.reshape(num_actions, per_first).sum(axis=1)
    return m / m.sum()


def compare(model, observe, move, n_agents, steps, policy_len, backend):
    """Steps pymdp agents one by one and a population at once on the same observations."""
    agents = [pymdp_agent(model, policy_len) for _ in range(n_agents)]
    population = AgentPopulation(
        model, n_agents, policy_len=policy_len, action_selection="deterministic", backend=backend
    )
    worst = {"beliefs": 0.0, "q_pi": 0.0, "G": 0.0}
    ties = 0
    for _ in range(steps):
        obs = observe()
        actions = population.step(obs)
        for i, agent in enumerate(agents):
            agent.infer_states([int(o) for o in np.atleast_1d(obs[i])])
            q_pi, G = agent.infer_policies()
            action = int(agent.sample_action()[0])
            worst["beliefs"] = max(worst["beliefs"], np.abs(population.beliefs[i] - agent.qs[0]).max())
            worst["q_pi"] = max(worst["q_pi"], np.abs(population.q_pi[i] - q_pi).max())
            worst["G"] = max(worst["G"], np.abs(population.G[i] - G).max())
            if actions[i] != action:
                m = np.sort(_marginals(q_pi, model.num_actions, policy_len))
                assert m[-1] - m[-2] < 1e-12, f"actions differ where pymdp's choice is clear: {m}"
                ties += 1
                population.actions[i] = action  # steer with pymdp's tie-break
        move(population.actions.copy())
    assert worst == pytest.approx({"beliefs": 0.0, "q_pi": 0.0, "G": 0.0}, abs=TOLERANCE), worst
    assert ties <= MAX_TIE_SHARE * steps * n_agents, f"{ties} tie-broken actions in {steps * n_agents}"
    return ties


@pytest.mark.parametrize(("grid", "policy_len", "n_agents", "steps"), [(3, 1, 3, 200), (3, 2, 2, 200), (10, 1, 2, 200)])
def test_explorer_model_matches_pymdp(backend, grid, policy_len, n_agents, steps):
    model = grid_world_model(grid)
    world = GridWorld(grid, n_agents, obstacles=[(1, 1)] if grid == 3 else [(2, 3), (5, 5), (7, 1)], seed=grid)
    compare(model, world.observe, world.move, n_agents, steps, policy_len, backend)


class RewardGrid:
    """The 3x3 reward grid as an environment: location, outcome and (optionally) cue."""

    def __init__(self, n_agents, cue, seed):
        self.rng = np.random.default_rng(seed)
        self.cells = np.zeros(n_agents, np.int64)
        self.contexts = self.rng.integers(0, 2, n_agents)
        self.cue = cue

    def observe(self):
        good = np.where(self.contexts == 0, 2, 6)
        bad = np.where(self.contexts == 0, 6, 2)
        outcome = np.where(self.cells == good, 1, np.where(self.cells == bad, 2, 0))
        columns = [self.cells, outcome]
        if self.cue:
            reliable = self.rng.random(len(self.cells)) < 0.9
            centre_cue = np.where(reliable, self.contexts, 1 - self.contexts)
            columns.append(np.where(self.cells == 4, centre_cue, self.rng.integers(0, 2, len(self.cells))))
        return np.stack(columns, axis=1)

    def move(self, actions):
        row, col = np.divmod(self.cells, 3)
        dr = np.array([-1, 1, 0, 0, 0])[actions]
        dc = np.array([0, 0, -1, 1, 0])[actions]
        self.cells = np.clip(row + dr, 0, 2) * 3 + np.clip(col + dc, 0, 2)


@pytest.mark.parametrize(("cue", "policy_len"), [(False, 1), (True, 1), (True, 2)])
def test_multi_modality_models_match_pymdp(backend, cue, policy_len):
    model = reward_grid_model(cue_modality=cue)
    assert model.num_modalities == (3 if cue else 2)
    env = RewardGrid(3, cue, seed=policy_len)
    compare(model, env.observe, env.move, 3, 200, policy_len, backend)

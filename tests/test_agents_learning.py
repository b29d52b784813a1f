"""Agents that learn (Dirichlet parameters over A, B and D, per agent) on both backends, against
pymdp 0.0.7.1's ``Agent``: parameters within relative 1e-12, posteriors, q_pi and G within 1e-9,
deterministic actions equal except where pymdp's best action marginals are exactly tied (there
the population is steered with pymdp's choice)."""

from __future__ import annotations

import re
import warnings

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GenerativeModel
from hypothesis import given
from hypothesis import strategies as st

pymdp = pytest.importorskip("pymdp", reason="pymdp 0.0.7.1 is a test dependency (`make test` installs it)")
from pymdp import learning, utils  # noqa: E402
from pymdp.agent import Agent  # noqa: E402
from pymdp.envs import TMazeEnv  # noqa: E402

TOLERANCE = 1e-9
PARAMETERS = 1e-12  # relative


def _obj(arrays):
    out = utils.obj_array(len(arrays))
    for i, a in enumerate(arrays):
        out[i] = np.array(a, np.float64)
    return out


def _norm(arrays):
    return [a / a.sum(axis=0) for a in arrays]


def tmaze_learning_arrays(reward_probs=(0.98, 0.02)):
    """pymdp's T-maze learning setting: the environment's A as near-certain Dirichlet counts,
    except the arms' reward and loss outcomes, which start flat; the agent's A is their mean."""
    env = TMazeEnv(reward_probs=list(reward_probs))
    A_env = [np.asarray(a, np.float64) for a in env.get_likelihood_dist()]
    pA = [a * 1e16 for a in A_env]
    pA[1][1:, 1:3, :] = 1.0
    B = [np.asarray(b, np.float64) for b in env.get_transition_dist()]
    C = [np.zeros(4), np.array([0.0, 3.0, -3.0]), np.zeros(2)]
    D = [np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.5, 0.5])]
    return _norm(pA), B, C, D, pA


def random_model(num_states=(3, 4, 2), num_controls=(3, 1, 2), num_obs=(4, 3, 2), seed=0):
    """A random model and Dirichlet counts for it, a few of them zero."""
    rng = np.random.default_rng(seed)

    def counts(shape):
        x = rng.gamma(2.0, size=shape)
        x[rng.random(shape) < 0.15] = 0.0
        x[0] += 0.5  # no column without counts
        return x

    pA = [counts((o,) + tuple(num_states)) for o in num_obs]
    pB = [counts((s, s, c)) for s, c in zip(num_states, num_controls, strict=True)]
    pD = [counts((s,)) for s in num_states]
    C = [rng.normal(0, 2, o) for o in num_obs]
    return pA, pB, C, pD


def pymdp_agent(A, B, C, D, **kwargs):
    kwargs = {"gamma": 8.0, "alpha": 8.0, "action_selection": "deterministic", **kwargs}
    for name in ("pA", "pB", "pD"):
        if kwargs.get(name) is not None:
            kwargs[name] = _obj(kwargs[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Agent(A=_obj(A), B=_obj(B), C=_obj(C), D=_obj(D), inference_algo="VANILLA", **kwargs)


def _marginal_tie(q_pi, policies, num_controls, factor):
    m = np.zeros(num_controls[factor])
    np.add.at(m, policies[:, 0, factor], q_pi)
    m = np.sort(m / m.sum())
    return len(m) > 1 and m[-1] - m[-2] < 1e-12


class LearningParity:
    """pymdp agents stepped one by one (infer states, update_A, update_B, infer policies, act)
    and a population stepped with ``learn=True`` on the same observations."""

    def __init__(self, arrays, n_agents, backend, **kwargs):
        A, B, C, D = arrays
        pymdp_keys = ("policy_len", "pA", "pB", "pD", "lr_pA", "lr_pB", "lr_pD", "use_param_info_gain")
        pymdp_kwargs = {k: v for k, v in kwargs.items() if k in pymdp_keys}
        for k in ("modalities_to_learn", "factors_to_learn"):
            if k in kwargs:
                pymdp_kwargs[k] = kwargs[k]
        self.agents = [pymdp_agent(A, B, C, D, **pymdp_kwargs) for _ in range(n_agents)]
        self.model = GenerativeModel(A, B, C, D, backend=backend)
        self.population = AgentPopulation(
            self.model, n_agents, gamma=8.0, alpha=8.0, action_selection="deterministic", backend=backend, **kwargs
        )
        self.first_qs = [None] * n_agents
        self.ties = 0

    def step(self, observations):
        pop = self.population
        actions = pop.step(np.asarray(observations, np.int64), learn=True)
        chosen = []
        for i, agent in enumerate(self.agents):
            obs = [int(o) for o in observations[i]]
            qs_prev = [q.copy() for q in agent.qs]
            agent.infer_states(obs)
            if self.first_qs[i] is None:
                self.first_qs[i] = [q.copy() for q in agent.qs]
            if agent.pA is not None:
                agent.update_A(obs)
            if agent.pB is not None and agent.action is not None:
                agent.update_B(qs_prev)
            q_pi, G = agent.infer_policies()
            action = agent.sample_action().astype(np.int64)
            chosen.append(action)
            self.check(i)
            assert np.abs(pop.q_pi[i] - q_pi).max() < TOLERANCE
            assert np.abs(pop.G[i] - G).max() < TOLERANCE
            if not np.array_equal(actions[i], action):
                for f in np.flatnonzero(actions[i] != action):
                    assert _marginal_tie(q_pi, pop.policies, self.model.num_controls, f), "a clear choice differs"
                self.ties += 1
                pop.actions[i] = action.reshape(pop.actions[i].shape)  # steer with pymdp's tie-break
        return np.array(chosen)

    def check(self, i):
        pop, agent = self.population, self.agents[i]
        for f, q in enumerate(pop.qs):
            assert np.abs(q[i] - agent.qs[f]).max() < TOLERANCE
        for name in ("pA", "pB", "pD"):
            ours, theirs = getattr(pop, name), getattr(agent, name)
            if theirs is None:
                assert ours is None
                continue
            for k, p in enumerate(theirs):
                np.testing.assert_allclose(ours[k][i], p, rtol=PARAMETERS, atol=0, err_msg=f"{name}[{k}]")

    def new_episode(self):
        """update_D (where pD is learned) with each agent's first posterior, then reset."""
        pop = self.population
        if pop.pD is not None:
            pop.update_D()
        for i, agent in enumerate(self.agents):
            if agent.pD is not None:
                agent.update_D(self.first_qs[i])
            self.check(i)
            agent.reset()
            agent.action = None  # pymdp's reset keeps the last action (and so skips D); a new episode starts at D
            self.first_qs[i] = None
        pop.reset()


def run_tmaze(parity, episodes, length, seed):
    np.random.seed(seed)
    envs = [TMazeEnv(reward_probs=[0.98, 0.02]) for _ in parity.agents]
    steps = 0
    for _ in range(episodes):
        obs = [env.reset() for env in envs]
        for _ in range(length):
            actions = parity.step(np.array(obs))
            obs = [env.step(a) for env, a in zip(envs, actions, strict=True)]
            steps += 1
        parity.new_episode()
    return steps


@pytest.mark.parametrize("lr_pA", [1.0, 0.25])
def test_tmaze_reward_contingencies_learned_as_pymdp(backend, lr_pA):
    A, B, C, D, pA = tmaze_learning_arrays()
    parity = LearningParity((A, B, C, D), 3, backend, pA=pA, modalities_to_learn=[1], lr_pA=lr_pA)
    pop = parity.population
    assert pop.learned == {"pA": [1], "pB": [], "pD": []}
    assert run_tmaze(parity, episodes=10, length=3, seed=int(lr_pA * 4)) >= 25
    learned = pop.pA[1][:, 1:, 1:3, :]  # the arms' reward and loss counts moved away from the prior
    assert (learned > 1.0).any()
    assert not pop.pA[0].flags.writeable and pop.pA[0].strides[0] == 0  # shared, not copied


@pytest.mark.parametrize("policy_len", [1, 2])
def test_pB_learning_of_some_factors_on_a_random_model_matches_pymdp(backend, policy_len):
    pA, pB, C, pD = random_model(seed=policy_len)
    arrays = (_norm(pA), _norm(pB), C, _norm(pD))
    parity = LearningParity(arrays, 3, backend, policy_len=policy_len, pB=pB, factors_to_learn=[0], lr_pB=0.5)
    pop = parity.population
    assert pop.learned["pB"] == [0] and pop.pB[0].flags.writeable and not pop.pB[2].flags.writeable
    rng = np.random.default_rng(policy_len)
    for _ in range(12):
        parity.step(rng.integers(0, [4, 3, 2], (3, 3)))
    assert not np.allclose(pop.pB[0][0], pB[0])
    assert np.array_equal(pop.pB[2][0], pB[2])


def test_pD_learning_over_episodes_matches_pymdp(backend):
    pA, pB, C, pD = random_model(seed=5)
    arrays = (_norm(pA), _norm(pB), C, _norm(pD))
    parity = LearningParity(arrays, 3, backend, pD=pD, pA=pA, modalities_to_learn=[0, 2], lr_pD=0.7, lr_pA=0.3)
    rng = np.random.default_rng(5)
    for _ in range(4):
        for _ in range(3):
            parity.step(rng.integers(0, [4, 3, 2], (3, 3)))
        parity.new_episode()
    assert not np.allclose(parity.population.pD[1], pD[1])


def test_one_factor_model_learns_as_pymdp(backend):
    from freeagentics_rs.agents import reward_grid_model

    grid = reward_grid_model(backend=backend)
    A, B, C, D = [np.asarray(a) for a in grid.A], [np.asarray(grid.B)], [np.asarray(c) for c in grid.C], [grid.D]
    pA = [a * 4.0 + 0.1 * (a > 0) for a in A]
    pD = [np.asarray(D[0]) * 2.0]
    parity = LearningParity(
        (_norm(pA), B, C, _norm(pD)), 2, backend, pA=pA, pD=pD, modalities_to_learn=[1, 2], lr_pA=0.5
    )
    assert not parity.model.factorized and parity.population.actions.shape == (2,)
    rng = np.random.default_rng(4)
    for _ in range(2):
        for _ in range(4):
            parity.step(rng.integers(0, [9, 3, 2], (2, 3)))
        parity.new_episode()


def test_parameter_information_gain_matches_pymdp(backend, monkeypatch):
    from pymdp import control

    # pymdp's calc_pA_info_gain returns a (1,) array, which numpy 2 no longer adds into G[idx]:
    # the same formula, as a float.
    pA_info_gain = control.calc_pA_info_gain
    monkeypatch.setattr(control, "calc_pA_info_gain", lambda *args: float(np.squeeze(pA_info_gain(*args))))
    A, B, C, D, pA = tmaze_learning_arrays((0.8, 0.2))
    parity = LearningParity(
        (A, B, C, D), 3, backend, pA=pA, modalities_to_learn=[1], lr_pA=0.25, use_param_info_gain=True, policy_len=2
    )
    run_tmaze(parity, episodes=4, length=3, seed=3)
    pA, pB, C, pD = random_model(seed=9)
    parity = LearningParity(
        (_norm(pA), _norm(pB), C, _norm(pD)), 2, backend, pA=pA, pB=pB, use_param_info_gain=True, policy_len=2
    )
    rng = np.random.default_rng(9)
    for _ in range(6):
        parity.step(rng.integers(0, [4, 3, 2], (2, 3)))


@given(seed=st.integers(0, 2**32 - 1), lr=st.floats(0.0, 4.0), agents=st.integers(1, 4))
def test_update_A_is_pymdps_update_for_every_agent(seed, lr, agents):
    backend = freeagentics_rs.BACKEND
    pA, pB, C, pD = random_model(num_states=(2, 3), num_controls=(2, 1), num_obs=(3, 2), seed=seed % 1000)
    model = GenerativeModel(_norm(pA), _norm(pB), C, _norm(pD), backend=backend)
    pop = AgentPopulation(model, agents, pA=pA, lr_pA=lr, seed=seed, backend=backend)
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, [3, 2], (agents, 2))
    pop.infer_states(obs)
    pop.update_A(obs)
    for i in range(agents):
        qs = _obj([q[i] for q in pop.qs])
        expected = learning.update_obs_likelihood_dirichlet(_obj(pA), _obj(_norm(pA)), list(obs[i]), qs, lr=lr)
        for m in range(2):
            np.testing.assert_allclose(pop.pA[m][i], expected[m], rtol=PARAMETERS, atol=0)


def test_update_B_and_update_D_are_pymdps_updates_for_every_agent(backend):
    pA, pB, C, pD = random_model(seed=11)
    model = GenerativeModel(_norm(pA), _norm(pB), C, _norm(pD), backend=backend)
    pop = AgentPopulation(
        model, 5, pB=pB, pD=pD, lr_pB=0.7, lr_pD=1.3, factors_to_learn=[0, 2], seed=2, backend=backend
    )
    rng = np.random.default_rng(11)
    pop.step(rng.integers(0, [4, 3, 2], (5, 3)))
    qs_prev = [q.copy() for q in pop.qs]  # also each agent's first posterior since reset
    pop.actions[3] = [-1, -1, -1]  # an agent that has not acted is left as it is
    pop.infer_states(rng.integers(0, [4, 3, 2], (5, 3)))
    pop.update_B(qs_prev)
    pop.update_D()
    for i in range(5):
        qs = _obj([q[i] for q in pop.qs])
        if i == 3:
            expected_B = pB
        else:
            expected_B = learning.update_state_likelihood_dirichlet(
                _obj(pB), _obj(_norm(pB)), pop.actions[i], qs, _obj([q[i] for q in qs_prev]), lr=0.7, factors=[0, 2]
            )
        first = qs if i == 3 else _obj([q[i] for q in qs_prev])  # agent 3 starts again (no action)
        expected_D = learning.update_state_prior_dirichlet(_obj(pD), first, lr=1.3, factors=[0, 2])
        for f in range(3):
            np.testing.assert_allclose(pop.pB[f][i], expected_B[f], rtol=PARAMETERS, atol=0)
            np.testing.assert_allclose(pop.pD[f][i], expected_D[f], rtol=PARAMETERS, atol=0)


def test_parameters_are_saved_loaded_and_kept_across_resets(backend):
    A, B, C, D, pA = tmaze_learning_arrays()
    model = GenerativeModel(A, B, C, D, backend=backend)
    pop = AgentPopulation(model, 4, pA=pA, modalities_to_learn=[1], seed=1, backend=backend)
    obs = np.array([[0, 0, 1]] * 4)
    pop.step(obs, learn=True)
    pop.step(np.array([[1, 1, 0]] * 4), learn=True)
    learned = pop.pA[1].copy()
    assert not np.array_equal(learned[0], pA[1])
    pop.reset()
    assert np.array_equal(pop.pA[1], learned)  # learning lasts across episodes
    state = pop.save_state()
    assert state["pA"][0] is None and np.array_equal(state["pA"][1], learned)
    twin = AgentPopulation(model, 4, pA=pA, modalities_to_learn=[1], seed=9, backend=backend)
    twin.load_state(state)
    assert np.array_equal(twin.pA[1], learned)
    assert np.array_equal(twin.step(obs, learn=True), pop.step(obs, learn=True))
    assert np.array_equal(twin.pA[1], pop.pA[1])
    pop.reset([0, 2], parameters=True)
    assert np.array_equal(pop.pA[1][0], pA[1]) and not np.array_equal(pop.pA[1][1], pA[1])
    before, beliefs = twin.pA[1].copy(), twin.beliefs.copy()
    with pytest.raises(ValueError, match=re.escape("state: pA[1]: has shape (2, 3, 4, 2), this population needs (4,")):
        twin.load_state({**state, "pA": [None, learned[:2], None], "beliefs": np.zeros_like(beliefs)})
    assert np.array_equal(twin.beliefs, beliefs)
    with pytest.raises(ValueError, match="^state: missing pA$"):
        twin.load_state({k: v for k, v in state.items() if k != "pA"})
    assert np.array_equal(twin.pA[1], before)
    with pytest.raises(TypeError, match="^parameters: must be a bool"):
        pop.reset(parameters=1)


def test_each_agent_uses_its_own_parameters_written_in_place(backend):
    A, B, C, D, pA = tmaze_learning_arrays()
    model = GenerativeModel(A, B, C, D, backend=backend)
    pop = AgentPopulation(model, 2, pA=pA, modalities_to_learn=[1], policy_len=2, seed=0, backend=backend)
    assert np.shares_memory(pop.pA[1], pop.pA[1][1])
    pop.pA[1][1, 1, 1, 0] += 50.0  # agent 1 believes the left arm pays in condition 0
    pop.infer_states(np.array([[0, 0, 0], [0, 0, 0]]))
    pop.infer_policies()
    assert not np.allclose(pop.G[0], pop.G[1])
    single = AgentPopulation(
        model, 1, pA=[p.copy() for p in pA], modalities_to_learn=[1], policy_len=2, backend=backend
    )
    single.pA[1][0, 1, 1, 0] += 50.0
    single.infer_states(np.array([[0, 0, 0]]))
    single.infer_policies()
    assert np.allclose(single.G[0], pop.G[1], atol=TOLERANCE, rtol=0)
    plain = AgentPopulation(model, 1, policy_len=2, backend=backend)
    plain.infer_states(np.array([[0, 0, 0]]))
    plain.infer_policies()
    assert np.allclose(plain.G[0], pop.G[0], atol=1e-12, rtol=0)  # a learning agent at its prior: no change


def test_agents_stepped_one_by_one_act_as_the_population(backend):
    A, B, C, D, pA = tmaze_learning_arrays()
    model = GenerativeModel(A, B, C, D, backend=backend)
    whole, rows = (
        AgentPopulation(model, 3, pA=pA, modalities_to_learn=[1], policy_len=2, seed=5, backend=backend)
        for _ in range(2)
    )
    for pop in (whole, rows):
        pop.pA[1][1, 1, 1, 0] += 5.0  # agents that differ
    obs = np.array([[0, 0, 1], [3, 0, 1], [1, 2, 0]])
    actions = whole.step(obs)
    for i in range(3):
        assert rows.agent(i).step(obs[i]) == actions[i].tolist()
    assert np.array_equal(whole.G, rows.G) and np.array_equal(whole.beliefs, rows.beliefs)


def test_from_pymdp_copies_the_learning_settings(backend):
    A, B, C, D, pA = tmaze_learning_arrays()
    agent = pymdp_agent(A, B, C, D, pA=pA, modalities_to_learn=[1], lr_pA=0.25, use_param_info_gain=True)
    pop = AgentPopulation.from_pymdp(agent, 2, backend=backend)
    assert pop.learned == {"pA": [1], "pB": [], "pD": []}
    assert (pop.lr_pA, pop.use_param_info_gain) == (0.25, True)
    assert np.array_equal(pop.pA[1][1], pA[1])


def test_bad_learning_arguments_name_the_argument(backend):
    A, B, C, D, pA = tmaze_learning_arrays()
    model = GenerativeModel(A, B, C, D, backend=backend)
    negative = [p.copy() for p in pA]
    negative[1][0, 0, 0] = -1.0
    empty_column = [p.copy() for p in pA]
    empty_column[1][:, 0, 0] = 0.0
    cases = [
        ({"pA": 3}, TypeError, "pA: must be a list of arrays (one per modality) or None, not int"),
        ({"pA": pA[:2]}, ValueError, "pA: needs one array per modality (3), got 2"),
        ({"pA": [pA[0], pA[1][:2], pA[2]]}, ValueError, "pA[1]: must have shape (3, 4, 2) (as the model's array)"),
        ({"pA": negative}, ValueError, "pA[1]: must be finite and non-negative"),
        ({"pA": empty_column}, ValueError, "pA[1]: every column needs a positive sum"),
        ({"pA": [pA[0], "x", pA[2]]}, ValueError, "pA[1]: must be a numeric array"),
        ({"pB": [B[0]]}, ValueError, "pB: needs one array per factor (2), got 1"),
        ({"pD": [D[0], np.ones(3)]}, ValueError, "pD[1]: must have shape (2,)"),
        ({"pA": pA, "lr_pA": -1.0}, ValueError, "lr_pA: must be at least 0.0, got -1.0"),
        ({"pA": pA, "lr_pB": "fast"}, TypeError, "lr_pB: must be a number, not str"),
        ({"pA": pA, "lr_pD": float("nan")}, ValueError, "lr_pD: must be a finite number"),
        ({"pA": pA, "modalities_to_learn": [3]}, ValueError, "modalities_to_learn: must be between 0 and 2, got 3"),
        ({"pA": pA, "modalities_to_learn": "some"}, ValueError, "modalities_to_learn: must be 'all' or a list"),
        ({"pA": pA, "modalities_to_learn": 1}, TypeError, "modalities_to_learn: must be 'all' or a list"),
        ({"pA": pA, "modalities_to_learn": [1, 1]}, ValueError, "modalities_to_learn: indices must be distinct"),
        ({"pA": pA, "factors_to_learn": [0.5]}, TypeError, "factors_to_learn: must be an int, not float"),
        ({"pA": pA, "use_param_info_gain": 1}, TypeError, "use_param_info_gain: must be a bool, not int"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match="^" + re.escape(message)):
            AgentPopulation(model, 2, backend=backend, **kwargs)
    pop = AgentPopulation(model, 2, pA=pA, modalities_to_learn=[1], backend=backend)
    with pytest.raises(ValueError, match=r"^update_B: this population has no pB \(it was built with pB=None\)$"):
        pop.update_B(pop.qs)
    with pytest.raises(ValueError, match="^update_D: this population has no pD"):
        pop.update_D()
    with pytest.raises(ValueError, match=r"^observations: must have shape \(2, 3\)"):
        pop.update_A(np.zeros((2, 2), np.int64))
    with pytest.raises(TypeError, match="^learn: must be a bool, not str"):
        pop.step(np.zeros((2, 3), np.int64), learn="yes")
    with_pD = AgentPopulation(model, 2, pD=D, backend=backend)
    with pytest.raises(ValueError, match="^qs_t0: some agents have inferred no states since the last reset"):
        with_pD.update_D()
    with pytest.raises(ValueError, match=r"^qs_t0\[1\]: must have shape \(2, 2\), got \(2, 3\)"):
        with_pD.update_D([np.ones((2, 4)) / 4, np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"^qs_prev: must be one \(agents, states\) array per factor \(2\)"):
        AgentPopulation(model, 2, pB=B, backend=backend).update_B([np.ones((2, 4))])
    assert np.array_equal(with_pD.pD[1], np.tile(D[1], (2, 1)))  # nothing changed by the refusals


def test_both_backends_and_any_thread_count_agree_on_learning_agents():
    try:
        freeagentics_rs._backend.native()
    except ImportError:
        pytest.skip("needs the Rust extension")
    A, B, C, D, pA_maze = tmaze_learning_arrays((0.8, 0.2))
    pA, pB, C3, pD = random_model(seed=3)
    cases = [
        ((A, B, C, D), {"pA": pA_maze, "modalities_to_learn": [1], "use_param_info_gain": True, "policy_len": 2}),
        ((_norm(pA), _norm(pB), C3, _norm(pD)), {"pA": pA, "pB": pB, "pD": pD, "factors_to_learn": [0, 2]}),
        # The T-maze's moves have one nonzero per column: a learned B of its own layout.
        ((A, B, C, D), {"pB": [b * 2.0 for b in B], "pD": [d + 0.5 for d in D], "policy_len": 2}),
    ]
    for arrays, kwargs in cases:
        pops = [
            AgentPopulation(GenerativeModel(*arrays, backend=b), 101, seed=4, num_threads=t, backend=b, **kwargs)
            for b, t in (("rust", 1), ("rust", 3), ("python", 1))
        ]
        assert type(pops[0]._kernel).__name__ == "LearningKernelCore"
        obs = np.random.default_rng(0).integers(0, [4, 3, 2], (6, 101, 3))
        for o in obs:
            actions = [pop.step(o, learn=True) for pop in pops]
            assert all(np.array_equal(actions[0], a) for a in actions[1:])
        for pop in pops[1:]:
            assert np.allclose(pops[0].beliefs, pop.beliefs, atol=1e-12, rtol=0)
            assert np.allclose(pops[0].G, pop.G, atol=1e-10, rtol=0)
            for name in ("pA", "pB"):
                for ours, theirs in zip(getattr(pops[0], name) or [], getattr(pop, name) or [], strict=True):
                    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
        for pop in pops:
            if pop.pD is not None:
                pop.update_D()
        if pops[0].pD is not None:
            np.testing.assert_allclose(pops[0].pD[0], pops[2].pD[0], rtol=1e-12, atol=0)

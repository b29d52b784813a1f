"""freeagentics_rs.agents on both backends: model validation and interning, the population's
arrays and phases, seeded stochastic selection against its softmax distribution, the same
results at any thread count and row split, state round trips, the grid world's rules, and the
per-agent adapter under both agent managers."""

from __future__ import annotations

import asyncio
import re

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AgentStateStore, AsyncAgentManager, OptimizedThreadPoolManager
from freeagentics_rs.agents import AgentPopulation, GenerativeModel, GridWorld, grid_world_model, reward_grid_model
from freeagentics_rs.agents._model import EPS
from helpers import run_python


@pytest.fixture
def explorer(backend):
    return grid_world_model(5, backend=backend)


def test_models_are_validated_and_interned(backend):
    one, two = grid_world_model(4, backend=backend), grid_world_model(4, backend=backend)
    assert one.B is two.B and one.B.dtype == np.float32 and not one.B.flags.writeable
    assert (one.num_states, one.num_actions, one.num_obs) == (16, 5, (5,))
    A, B, C, D = np.full((2, 3), 0.5), np.ones((3, 3, 2)) / 3, np.zeros(2), np.ones(3) / 3
    cases = [
        ((A[:, :2], B, C, D), "A[0]: must have 3 columns"),
        ((A, B[:2], C, D), "B: must have shape (states, states, actions)"),
        ((A, B, np.zeros(3), D), "C[0]: must have 2 entries"),
        (([A, A], B, [C], D), "C: needs one vector per modality of A (2), got 1"),
        ((A * 2, B, C, D), "A[0]: columns must sum to 1"),
        ((-A + 1, B * 0 - 1, C, D), "B: must be non-negative"),
        ((A, B, C, D * 2), "D: columns must sum to 1"),
        ((A, B, C, np.array([np.nan, 0.5, 0.5])), "D: must be finite"),
        ((A[0], B, C, D), "A[0]: must have 2 dimensions"),
    ]
    for (a, b, c, d), message in cases:
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            GenerativeModel(a, b, c, d, backend=backend)


def test_population_arrays_and_argument_errors(explorer, backend):
    pop = AgentPopulation(explorer, 7, policy_len=2, seed=0, backend=backend)
    assert (pop.backend, len(pop), pop.num_policies) == (backend, 7, 25)
    assert pop.beliefs.shape == (7, 25) and pop.q_pi.shape == pop.G.shape == (7, 25)
    assert (pop.actions == -1).all() and np.allclose(pop.beliefs, 1 / 25)
    beliefs = pop.beliefs
    pop.step(np.zeros(7, np.int64))
    assert pop.beliefs is beliefs and np.allclose(beliefs.sum(axis=1), 1)  # updated in place
    for kwargs, error, message in [
        ({"n_agents": 0}, ValueError, "n_agents: must be at least 1, got 0"),
        ({"policy_len": 0}, ValueError, "policy_len: must be between 1 and 64, got 0"),
        ({"gamma": -1.0}, ValueError, "gamma: must be greater than 0.0, got -1.0"),
        ({"action_selection": "greedy"}, ValueError, "action_selection: must be one of 'stochastic', 'deterministic'"),
        ({"seed": "x"}, TypeError, "seed: must be an int or None"),
        ({"num_threads": 0}, ValueError, "num_threads: must be between 1 and 256, got 0"),
        ({"policy_len": 9}, ValueError, "policy_len: 9 gives 1953125 policies"),
    ]:
        args = {"n_agents": 3, **kwargs}
        with pytest.raises(error, match="^" + message):
            AgentPopulation(explorer, args.pop("n_agents"), backend=backend, **args)
    for obs, error, message in [
        (np.zeros(6, np.int64), ValueError, r"observations: must have shape \(7,\) or \(7, 1\)"),
        (np.full(7, 5), ValueError, r"observations: modality 0 must lie in \[0, 5\)"),
        (np.zeros(7), TypeError, "observations: must be integers"),
    ]:
        with pytest.raises(error, match="^" + message):
            pop.step(obs)


def test_phases_compose_into_step(explorer, backend):
    world = GridWorld(5, 40, seed=1)
    one = AgentPopulation(explorer, 40, seed=3, backend=backend)
    two = AgentPopulation(explorer, 40, seed=3, backend=backend)
    for _ in range(10):
        obs = world.observe()
        actions = one.step(obs)
        two.infer_states(obs)
        two.infer_policies()
        assert np.array_equal(two.sample_action(), actions)
        world.move(actions)
    for name in ("beliefs", "q_pi", "G", "F", "timesteps"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


def test_free_energy_is_complexity_minus_accuracy(backend):
    model = reward_grid_model(backend=backend)
    pop = AgentPopulation(model, 2, backend=backend)
    obs = np.array([[0, 0, 1], [0, 0, 0]])
    pop.infer_states(obs)
    for i in range(2):
        log_likelihood = sum(np.log(np.asarray(A)[obs[i, m]] + EPS) for m, A in enumerate(model.A))
        qs = pop.beliefs[i]
        expected = qs @ (np.log(qs + EPS) - np.log(model.D + EPS) - log_likelihood)
        assert pop.F[i] == pytest.approx(expected, abs=1e-12)


def test_stochastic_selection_is_seeded_and_follows_the_softmax(explorer, backend):
    world = GridWorld(5, 3, seed=2)
    runs = []
    for _ in range(2):
        pop = AgentPopulation(explorer, 3, seed=11, backend=backend)
        runs.append([pop.step(obs) for obs in [world.observe()] * 5])
    assert np.array_equal(runs[0], runs[1])
    other = AgentPopulation(explorer, 3, seed=12, backend=backend)
    assert not np.array_equal(runs[0], [other.step(world.observe()) for _ in range(5)])
    # One belief state, 20 000 draws (one per agent): frequencies against the distribution.
    n = 20_000
    pop = AgentPopulation(reward_grid_model(backend=backend), n, seed=5, alpha=1.0, backend=backend)
    pop.infer_states(np.tile([4, 0, 0], (n, 1)))
    pop.infer_policies()
    actions = pop.sample_action()
    marginals = pop.q_pi[0] / pop.q_pi[0].sum()
    p = np.exp(np.log(marginals + EPS) * 1.0)
    p /= p.sum()
    counts = np.bincount(actions, minlength=5)
    chi2 = ((counts - n * p) ** 2 / (n * p)).sum()
    assert chi2 < 20.5  # 4 degrees of freedom: p = 0.0004 for a correct sampler


def test_the_same_results_at_any_thread_count(backend):
    model = grid_world_model(6, backend=backend)
    world = GridWorld(6, 101, obstacles=[(2, 2)], seed=3)  # 101 agents: chunks of 32 and a rest
    pops = [AgentPopulation(model, 101, seed=9, num_threads=t, backend=backend) for t in (1, 2, 3)]
    for _ in range(8):
        obs = world.observe()
        actions = [pop.step(obs) for pop in pops]
        assert all(np.array_equal(actions[0], a) for a in actions[1:])
        world.move(actions[0])
    assert all(np.array_equal(pops[0].beliefs, p.beliefs) for p in pops[1:])


def test_both_backends_agree():
    try:
        freeagentics_rs._backend.native()
    except ImportError:
        pytest.skip("needs the Rust extension")
    model = reward_grid_model()
    env_obs = np.random.default_rng(0).integers(0, [9, 3, 2], (50, 64, 3))
    pops = [AgentPopulation(model, 64, policy_len=2, seed=4, backend=b) for b in ("rust", "python")]
    for obs in env_obs:
        actions = [pop.step(obs) for pop in pops]
        assert np.array_equal(*actions)
    assert np.allclose(pops[0].beliefs, pops[1].beliefs, atol=1e-12, rtol=0)
    assert np.allclose(pops[0].G, pops[1].G, atol=1e-10, rtol=0)


def test_reset_and_state_round_trip(explorer, backend, tmp_path):
    world = GridWorld(5, 6, seed=4)
    pop = AgentPopulation(explorer, 6, seed=1, backend=backend)
    for _ in range(3):
        world.move(pop.step(world.observe()))
    with AgentStateStore(tmp_path / "s.db") as store:
        store.save("population", pop.save_state())
        state = store.load("population")
    twin = AgentPopulation(explorer, 6, seed=99, backend=backend)
    twin.load_state(state)
    obs = world.observe()
    assert np.array_equal(pop.step(obs), twin.step(obs)) and np.array_equal(pop.beliefs, twin.beliefs)
    pop.reset([1, 3])
    assert (pop.actions[[1, 3]] == -1).all() and (pop.actions[[0, 2]] >= 0).all()
    assert np.allclose(pop.beliefs[1], 1 / 25) and (pop.timesteps[[1, 3]] == 0).all()
    with pytest.raises(ValueError, match="^state: beliefs has shape"):
        AgentPopulation(explorer, 5, backend=backend).load_state(state)
    with pytest.raises(IndexError):
        pop.reset([6])


def test_grid_world_rules():
    world = GridWorld(3, 3, obstacles=[(1, 1)], goals=[(0, 2)], starts=[0, 0, 5])
    view = world.surroundings()
    assert view[0].tolist() == [[-2, -2, -2], [-2, 2, 0], [-2, 0, -1]]  # another agent shares cell 0
    assert view[2].tolist() == [[0, 1, -2], [-1, 0, -2], [0, 0, -2]]
    assert world.observe().tolist() == [3, 3, 0]
    world.move(np.array([3, 1, 0]))  # right; down; up
    assert world.positions.tolist() == [1, 3, 2] and world.observe().tolist() == [0, 0, 2]
    world.move(np.array([1, 3, 4]))  # into the obstacle (blocked); into the obstacle; stay
    assert world.positions.tolist() == [1, 3, 2] and world.at_goal().tolist() == [False, False, True]
    world.move(np.array([0, 2, 3]))  # off the grid: stay
    assert world.positions.tolist() == [1, 3, 2]
    with pytest.raises(ValueError, match="^actions: must lie in"):
        world.move(np.array([0, 5, 0]))
    with pytest.raises(ValueError, match="^starts: an agent starts on an obstacle"):
        GridWorld(3, 1, obstacles=[4], starts=[4])
    assert GridWorld(4, 1000, obstacles=[0, 1, 2], seed=1).positions.min() >= 3


def test_population_agents_under_the_thread_pool_manager(explorer, backend):
    pop = AgentPopulation(explorer, 8, action_selection="deterministic", backend=backend)
    twin = AgentPopulation(explorer, 8, action_selection="deterministic", backend=backend)
    world = GridWorld(5, 8, seed=6)
    with OptimizedThreadPoolManager(initial_workers=4, backend=backend) as manager:
        for i in range(8):
            manager.register_agent(f"agent-{i}", pop.agent(i))
        for _ in range(5):
            obs = world.observe()
            results = manager.step_all_agents({f"agent-{i}": {"observation": int(obs[i])} for i in range(8)})
            assert all(r.success for r in results.values())
            actions = np.array([results[f"agent-{i}"].result for i in range(8)])
            assert np.array_equal(actions, twin.step(obs))  # the same as stepping them together
            world.move(actions)
    assert np.allclose(pop.beliefs, twin.beliefs, atol=1e-15)
    agent = pop.agent(3)
    with pytest.raises(RuntimeError, match="^update_beliefs: no observation"):
        agent.update_beliefs()
    agent.perceive(2)
    assert agent.update_beliefs() is not None and agent.select_action() == pop.actions[3]


def test_population_agents_under_the_async_manager(explorer, backend, tmp_path):
    pop = AgentPopulation(explorer, 4, seed=2, backend=backend)

    async def main():
        with AgentStateStore(tmp_path / "a.db") as store:
            async with AsyncAgentManager(4, state_store=store, backend=backend) as manager:
                for i in range(4):
                    manager.register_agent(i, pop.agent(i))
                results = await manager.step_all_agents({i: i % 5 for i in range(4)})
                assert all(r.success for r in results.values())
                saved = store.load(2)
                pop.agent(2).set_state({**saved, "timestep": 0})
                assert pop.timesteps[2] == 0 and np.array_equal(pop.beliefs[2], saved["beliefs"])

    asyncio.run(main())


def test_memory_per_agent_is_the_arrays(backend):
    pop = AgentPopulation(grid_world_model(10, backend=backend), 10_000, backend=backend)
    per_agent = sum(a.nbytes for a in (pop.beliefs, pop.q_pi, pop.G, pop.F, pop.actions, pop.timesteps)) / 10_000
    assert per_agent <= 2048


def test_model_inputs_in_pymdp_forms_and_copies(backend):
    A, B = np.array([[0.9, 0.2], [0.1, 0.8]]), np.stack([np.eye(2), np.eye(2)[::-1]], axis=2)
    D = np.array([0.5, 0.5])
    objects = np.empty(1, dtype=object)
    objects[0] = B
    model = GenerativeModel(A, objects, [0.0, 1.0], D, E=[2.0, 6.0], backend=backend)  # a list of numbers is one C
    assert model.num_modalities == 1 and np.allclose(model.E, [0.25, 0.75])
    pop = AgentPopulation(model, 1, action_selection="deterministic", backend=backend)
    D[:] = [1.0, 0.0]  # the caller's arrays were copied: reusing them changes nothing
    B[:] = 0.5
    assert np.allclose(pop.infer_states([0])[0], [0.9 / 1.1, 0.2 / 1.1])
    with pytest.raises(ValueError, match="^E: must be non-negative and not all zero$"):
        GenerativeModel(A, B, [0.0, 1.0], [0.5, 0.5], E=[0.0, 0.0], backend=backend)


def test_information_gain_off_needs_no_joint_outcome_table(backend):
    states, modalities = 4, 8  # 10**8 joint outcomes x 4 states: never built
    A = [np.full((10, states), 0.1)] * modalities
    model = GenerativeModel(
        A, np.stack([np.eye(states)] * 2, axis=2), [np.zeros(10)] * modalities, np.full(states, 0.25), backend=backend
    )
    pop = AgentPopulation(model, 3, use_states_info_gain=False, backend=backend)
    assert pop.step(np.zeros((3, modalities), np.int64)).shape == (3,)


def test_arrays_cannot_be_replaced_and_bad_actions_are_refused(explorer, backend):
    pop = AgentPopulation(explorer, 4, backend=backend)
    with pytest.raises(AttributeError):
        pop.beliefs = np.asfortranarray(pop.beliefs)
    pop.actions[2] = 7
    for call in (lambda: pop.step(np.zeros(4, np.int64)), pop.infer_policies, pop.sample_action):
        with pytest.raises(ValueError, match=r"^actions: must lie in \[-1, 5\)$"):
            call()
    pop.reset(2)
    pop.reset([])
    pop.reset(np.array([True, False, False, False]))
    pop.reset(slice(1, 3))
    assert (pop.actions == -1).all()


def test_load_state_checks_everything_before_changing_anything(explorer, backend):
    pop = AgentPopulation(explorer, 3, seed=1, backend=backend)
    pop.step(np.zeros(3, np.int64))
    before = pop.save_state()
    for change, message in [
        ({"key": np.int64(-1)}, "state: key must be one unsigned 64-bit integer"),
        ({"actions": np.array([0.5, 1.0, 2.0])}, "state: actions must be integers"),
        ({"actions": np.array([0, 9, 1])}, r"state: actions must lie in \[-1, 5\)"),
        ({"timesteps": np.zeros(3)}, "state: timesteps must be integers"),
    ]:
        broken = {**pop.save_state(), "timesteps": np.full(3, 9), **change}
        with pytest.raises(ValueError, match="^" + message):
            pop.load_state(broken)
        assert np.array_equal(pop.timesteps, before["timesteps"])


def test_a_population_built_before_fork_steps_in_the_child(backend):
    child = run_python(
        """
        import os, sys
        import numpy as np
        from freeagentics_rs.agents import AgentPopulation, grid_world_model
        pop = AgentPopulation(grid_world_model(5), 64, seed=0, num_threads=2)
        pop.step(np.zeros(64, np.int64))
        pid = os.fork()
        if pid == 0:
            pop.step(np.zeros(64, np.int64))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """,
        backend=backend,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr

"""freeagentics_rs.agents refuses bad input with the error that names it, on both backends:
regression tests for the reported cases, and property-based tests of every constructor's
arguments (each call works or raises TypeError/ValueError naming the argument; never a crash or
a hang: the crash-prone cases run in a fresh interpreter)."""

from __future__ import annotations

import re

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GenerativeModel, GridWorld, grid_world_model, reward_grid_model
from freeagentics_rs.agents._population import MAX_THREADS
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture
def explorer(backend):
    return grid_world_model(3, backend=backend)


def test_num_threads_is_bounded(explorer, backend):
    message = f"num_threads: must be between 1 and {MAX_THREADS}, got 4000"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        AgentPopulation(explorer, 2, num_threads=4000, backend=backend)
    assert AgentPopulation(explorer, 2, num_threads=np.int64(2), backend=backend).num_threads == 2


def test_a_population_too_large_to_allocate_is_a_memory_error(run_isolated):
    child = run_isolated(
        """
        from freeagentics_rs.agents import AgentPopulation, grid_world_model
        model = grid_world_model(3)
        for n in (2**40, 2**62):
            try:
                AgentPopulation(model, n)
            except MemoryError as e:
                assert str(e).startswith(f"n_agents: {n} agents need"), e
            else:
                raise AssertionError("no MemoryError")
        print("ok")
        """
    )
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr


def test_set_state_names_what_is_missing_or_wrong_and_changes_nothing(explorer, backend):
    pop = AgentPopulation(explorer, 2, seed=0, backend=backend)
    pop.step(np.zeros(2, np.int64))
    agent = pop.agent(1)
    before = pop.save_state()
    good = agent.get_state()
    for state, error, message in [
        ({}, ValueError, "state: missing beliefs, q_pi, G, F, action, timestep"),
        ([], TypeError, "state: must be a dict, not list"),
        ({**good, "action": 9}, ValueError, "state: action: must be between -1 and 4, got 9"),
        ({**good, "action": 1.5}, TypeError, "state: action: must be an int, not float"),
        ({**good, "timestep": -1}, ValueError, "state: timestep: must be between 0 and 9223372036854775807, got -1"),
        ({**good, "F": "x"}, TypeError, "state: F: must be a number, not str"),
        ({**good, "beliefs": np.zeros(3)}, ValueError, r"state: beliefs has shape \(3,\), needs \(9,\)"),
    ]:
        with pytest.raises(error, match="^" + message):
            agent.set_state(state)
        after = pop.save_state()
        assert all(np.array_equal(before[k], after[k]) for k in before)
    agent.set_state({**good, "timestep": np.int64(4), "action": np.int32(2)})
    assert pop.timesteps[1] == 4 and pop.actions[1] == 2


def test_observations_above_2_63_are_reported_as_given(explorer, backend):
    pop = AgentPopulation(explorer, 2, backend=backend)
    obs = np.array([0, 2**63], np.uint64)
    with pytest.raises(
        ValueError, match=r"^observations: modality 0 must lie in \[0, 5\), got 0\.\.9223372036854775808$"
    ):
        pop.step(obs)
    assert (pop.actions == -1).all() and (pop.timesteps == 0).all()


def test_reset_refuses_non_integer_rows(explorer, backend):
    pop = AgentPopulation(explorer, 3, seed=0, backend=backend)
    pop.step(np.zeros(3, np.int64))
    before = pop.save_state()
    for rows in ([1.7], np.array([0.0]), ["a"]):
        with pytest.raises(TypeError, match="^agents: must be ints, a boolean mask or a slice, got "):
            pop.reset(rows)
    with pytest.raises(IndexError, match="^agents: a boolean mask needs shape"):
        pop.reset(np.array([True, False]))
    assert np.array_equal(pop.actions, before["actions"])
    pop.reset(np.array([2], np.uint64))
    assert pop.actions[2] == -1


@pytest.mark.parametrize("factorized", [False, True])
def test_kernel_run_takes_keywords_and_needs_observations_to_infer(backend, factorized):
    """Every kernel (Rust or numpy, one factor or several) has one ``run``: the six arrays, then
    keyword-only arguments; state inference without observations is a ValueError, not a crash."""
    if factorized:
        A = [np.full((2, 2, 2), 0.5)]
        B = [np.stack([np.eye(2), np.eye(2)[::-1]], axis=2), np.eye(2)[:, :, None]]
        pop = AgentPopulation(GenerativeModel(A, B, None, None, backend=backend), 3, backend=backend)
    else:
        pop = AgentPopulation(grid_world_model(3, backend=backend), 3, backend=backend)
    arrays = (pop.beliefs, pop.q_pi, pop.G, pop.F, pop.actions.reshape(3, -1) if factorized else pop.actions)
    arrays += (pop.timesteps,)
    before = pop.save_state()
    with pytest.raises(ValueError, match=r"^observations: needed for state inference \(infer=True\)$"):
        pop._kernel.run(*arrays, key=1, infer=True)
    with pytest.raises(TypeError):
        pop._kernel.run(*arrays, None, 1, 0, True, True, True)  # the old positional form
    for name, value in pop.save_state().items():
        assert np.array_equal(value, before[name]), name
    pop._kernel.run(*arrays, key=1, plan=True, act=True)
    assert (pop.timesteps == 1).all()


def test_grid_world_blames_the_obstacles_for_the_default_goal():
    with pytest.raises(
        ValueError, match=r"^obstacles: cover the default goal \(cell 3\); pass goals, got \[0, 1, 2, 3\]$"
    ):
        GridWorld(2, 1, obstacles=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"^goals: cell 1 lies on an obstacle, got \[1\]$"):
        GridWorld(2, 1, obstacles=[1], goals=[1])
    with pytest.raises(TypeError, match=r"^obstacles: must be ints"):
        GridWorld(2, 1, obstacles=[0.5])
    with pytest.raises(TypeError, match=r"^goals: must be \(row, column\) pairs or cell indices"):
        GridWorld(2, 1, goals=7)


# Property-based tests of every constructor's arguments. Each value is either accepted or
# refused with a TypeError/ValueError that starts with the argument's name.

_weird = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), -1),
    st.integers(2**31, 2**70),
    st.just(np.float32(1.5)),
    st.just(np.bool_(True)),
    st.lists(st.integers(-3, 3), max_size=3),
    st.just(object()),
)


def _small(low, high):
    return st.one_of(
        st.integers(low, high),
        st.integers(low, high).map(np.int64),
        st.integers(max(low, 0), min(high, 2**16 - 1)).map(np.uint16),
    )


def _call(make, names):
    """Too many agents for this machine is a MemoryError naming n_agents."""
    try:
        make()
    except (TypeError, ValueError, MemoryError) as e:
        assert str(e).startswith(names), repr(e)
        assert not isinstance(e, MemoryError) or str(e).startswith("n_agents"), repr(e)


@given(
    n_agents=st.one_of(_small(1, 5), _weird),
    policy_len=st.one_of(_small(1, 2), _weird),
    gamma=st.one_of(st.floats(0.1, 20), _weird),
    alpha=st.one_of(st.floats(0.1, 20), _weird),
    action_selection=st.one_of(st.sampled_from(["stochastic", "deterministic"]), _weird),
    use_utility=st.one_of(st.booleans(), _weird),
    seed=st.one_of(_small(0, 2**20), st.integers(-(2**70), 2**70), _weird),
    num_threads=st.one_of(st.none(), _small(1, 3), _weird),
    row_offset=st.one_of(_small(0, 9), _weird),
)
def test_population_arguments(
    n_agents, policy_len, gamma, alpha, action_selection, use_utility, seed, num_threads, row_offset
):
    backend = freeagentics_rs.BACKEND
    model = grid_world_model(2, backend=backend)
    _call(
        lambda: AgentPopulation(
            model,
            n_agents,
            policy_len=policy_len,
            gamma=gamma,
            alpha=alpha,
            action_selection=action_selection,
            use_utility=use_utility,
            seed=seed,
            num_threads=num_threads,
            row_offset=row_offset,
            backend=backend,
        ),
        (
            "n_agents",
            "policy_len",
            "gamma",
            "alpha",
            "action_selection",
            "use_utility",
            "seed",
            "num_threads",
            "row_offset",
        ),
    )


@given(
    grid_size=st.one_of(_small(1, 6), _weird),
    n_agents=st.one_of(_small(1, 20), _weird),
    obstacles=st.one_of(
        st.lists(st.integers(-2, 40), max_size=4),
        st.lists(st.tuples(st.integers(-1, 6), st.integers(-1, 6)), max_size=3),
        _weird,
    ),
    goals=st.one_of(st.none(), st.lists(st.integers(-2, 40), max_size=2), _weird),
    seed=st.one_of(st.none(), _small(0, 100), _weird),
)
def test_grid_world_arguments(grid_size, n_agents, obstacles, goals, seed):
    _call(
        lambda: GridWorld(grid_size, n_agents, obstacles=obstacles, goals=goals, seed=seed),
        ("grid_size", "n_agents", "obstacles", "goals", "seed"),
    )


@given(
    grid_size=st.one_of(_small(1, 6), _weird),
    start=st.one_of(_small(0, 40), _weird),
    cue=st.one_of(st.booleans(), _weird),
)
def test_model_builder_arguments(grid_size, start, cue):
    backend = freeagentics_rs.BACKEND
    _call(lambda: grid_world_model(grid_size, start=start, backend=backend), ("grid_size", "start"))
    _call(lambda: reward_grid_model(cue_modality=cue, backend=backend), ("cue_modality",))


_arrays = st.one_of(
    st.builds(
        lambda shape, fill: np.full(shape, fill),
        st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple),
        st.floats(-1, 2),
    ),
    st.lists(st.floats(allow_nan=True), max_size=3),
    _weird,
)


@given(A=_arrays, B=_arrays, C=_arrays, D=_arrays, E=st.one_of(st.none(), _arrays))
def test_generative_model_arguments(A, B, C, D, E):
    backend = freeagentics_rs.BACKEND
    _call(lambda: GenerativeModel(A, B, C, D, E=E, backend=backend), ("A", "B", "C", "D", "E"))


def test_generative_model_arguments_in_a_fresh_interpreter(run_isolated):
    """Shapes a model may not trip over in the Rust kernel (empty axes, one state)."""
    child = run_isolated(
        """
        import numpy as np
        from freeagentics_rs.agents import AgentPopulation, GenerativeModel
        for states, obs, actions in [(1, 1, 1), (1, 3, 2), (2, 1, 1)]:
            A = np.full((obs, states), 1 / obs)
            B = np.stack([np.eye(states)] * actions, axis=2)
            model = GenerativeModel(A, B, np.zeros(obs), np.full(states, 1 / states))
            pop = AgentPopulation(model, 3, policy_len=2, seed=0)
            pop.step(np.zeros((3, 1), np.int64))
        for bad in [np.zeros((0, 2)), np.zeros((2, 0))]:
            try:
                GenerativeModel(bad, np.ones((2, 2, 1)) / 2, np.zeros(len(bad)), np.full(2, 0.5))
            except ValueError as e:
                assert str(e).startswith(("A", "B", "C", "D")), e
        print("ok")
        """
    )
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr

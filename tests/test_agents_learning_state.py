"""One agent of a learning population: ``population.agent(i).get_state()`` includes its learned
arrays and first posterior, ``set_state`` restores them after checking them (errors name the
key, nothing changes on error); on both backends."""

from __future__ import annotations

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GenerativeModel
from hypothesis import given, settings
from hypothesis import strategies as st
from test_agents_learning import _norm, random_model

AGENTS = 6


def _population(backend: str) -> AgentPopulation:
    """Agents learning pA[0], pA[2], pB[0] and pD[0] (pA[1], pB[1:], pD[1:] shared), each with
    its own history by now."""
    pA, pB, C, pD = random_model(seed=11)
    model = GenerativeModel(_norm(pA), _norm(pB), C, _norm(pD), backend=backend)
    pop = AgentPopulation(
        model,
        AGENTS,
        pA=pA,
        pB=pB,
        pD=pD,
        modalities_to_learn=[0, 2],
        factors_to_learn=[0],
        action_selection="deterministic",
        seed=2,
        backend=backend,
    )
    rng = np.random.default_rng(4)
    for _ in range(3):
        pop.step(np.stack([rng.integers(0, o, AGENTS) for o in model.num_obs], axis=1), learn=True)
    return pop


def _snapshot(pop: AgentPopulation) -> dict[str, np.ndarray]:
    saved = pop.save_state()
    out = {k: v for k, v in saved.items() if isinstance(v, np.ndarray)}
    for name in ("pA", "pB", "pD"):
        out.update({f"{name}[{i}]": a for i, a in enumerate(saved[name]) if a is not None})
    return out


def test_agent_state_holds_its_learned_arrays_and_restores_them(backend):
    pop = _population(backend)
    state = pop.agent(1).get_state()
    assert [a is None for a in state["pA"]] == [False, True, False]
    assert [a is None for a in state["pB"]] == [False, True, True]
    assert [a is None for a in state["pD"]] == [False, True, True]
    for name, learned in pop.learned.items():
        for i in learned:
            np.testing.assert_array_equal(state[name][i], getattr(pop, name)[i][1])
    np.testing.assert_array_equal(state["qs_t0"], pop.save_state()["qs_t0"][1])
    assert not np.isnan(state["qs_t0"]).any()
    state["pA"][0] += 1.0  # a copy: the population is unchanged
    assert not np.array_equal(state["pA"][0], pop.pA[0][1])
    state = pop.agent(1).get_state()

    # Agent 4 becomes agent 1; both then see the same observation and stay twins.
    pop.agent(4).set_state(state)
    for name, learned in pop.learned.items():
        for i in learned:
            np.testing.assert_array_equal(getattr(pop, name)[i][4], getattr(pop, name)[i][1])
    observation = [1, 0, 1]
    for index in (1, 4):
        pop.agent(index).step(observation)
    pop.update_A(np.tile(observation, (AGENTS, 1)))
    one, four = pop.agent(1).get_state(), pop.agent(4).get_state()
    for key in ("beliefs", "q_pi", "G", "qs_t0"):
        np.testing.assert_array_equal(one[key], four[key], err_msg=key)
    for i in pop.learned["pA"]:
        np.testing.assert_array_equal(one["pA"][i], four["pA"][i])


def test_agent_state_without_learning_has_no_parameters(backend):
    pA, pB, C, pD = random_model(seed=11)
    pop = AgentPopulation(GenerativeModel(_norm(pA), _norm(pB), C, _norm(pD), backend=backend), 2, backend=backend)
    assert set(pop.agent(0).get_state()) == {"beliefs", "q_pi", "G", "F", "action", "timestep"}


def _replace(state, name, index, value):
    changed = dict(state)
    if index is None:
        changed[name] = value
    else:
        changed[name] = list(state[name])
        changed[name][index] = value(state[name][index]) if callable(value) else value
    return changed


def _without(state, name):
    return {k: v for k, v in state.items() if k != name}


BAD = [
    (lambda s: _without(s, "pA"), ValueError, "state: missing pA"),
    (lambda s: _without(s, "qs_t0"), ValueError, "state: missing qs_t0"),
    (lambda s: _replace(s, "pA", None, "pA"), TypeError, "state: pA must be a list"),
    (lambda s: _replace(s, "pB", None, s["pB"][:2]), ValueError, "state: pB must have 3 entries, got 2"),
    (lambda s: _replace(s, "pA", 0, lambda a: a[:-1]), ValueError, "state: pA[0] has shape"),
    (lambda s: _replace(s, "pA", 2, lambda a: a.astype(str)), TypeError, "state: pA[2] must be an array of numbers"),
    (lambda s: _replace(s, "pA", 2, lambda a: a > 0), TypeError, "state: pA[2] must be an array of numbers"),
    (lambda s: _replace(s, "pA", 0, [[1.0], [1.0, 2.0]]), TypeError, "state: pA[0] must be an array of numbers"),
    (lambda s: _replace(s, "pA", 0, lambda a: a - 100.0), ValueError, "state: pA[0] must be finite and non-negative"),
    (lambda s: _replace(s, "pB", 0, lambda a: a + np.inf), ValueError, "state: pB[0] must be finite"),
    (lambda s: _replace(s, "pB", 0, lambda a: a * np.nan), ValueError, "state: pB[0] must be finite"),
    (lambda s: _replace(s, "pB", 0, lambda a: a * 0), ValueError, "state: pB[0] needs a positive sum in every column"),
    (lambda s: _replace(s, "pD", 0, lambda a: a * 0), ValueError, "state: pD[0] needs a positive sum in every column"),
    (lambda s: _replace(s, "pD", 0, lambda a: a[:, None]), ValueError, "state: pD[0] has shape"),
    (lambda s: _replace(s, "qs_t0", None, np.zeros(3)), ValueError, "state: qs_t0 has shape (3,), needs (9,)"),
    (lambda s: _replace(s, "qs_t0", None, -s["qs_t0"]), ValueError, "state: qs_t0 must be all NaN"),
    (lambda s: _replace(s, "qs_t0", None, None), TypeError, "state: qs_t0 must be an array of numbers"),
]


@pytest.mark.parametrize(("corrupt", "error", "message"), BAD)
def test_set_state_refuses_bad_learned_arrays_and_changes_nothing(backend, corrupt, error, message):
    pop = _population(backend)
    state = pop.agent(0).get_state()
    state["beliefs"] = pop.beliefs[3].copy()  # would change agent 0 if anything were written
    before = _snapshot(pop)
    with pytest.raises(error) as info:
        pop.agent(0).set_state(corrupt(state))
    assert str(info.value).startswith(message), str(info.value)
    after = _snapshot(pop)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_set_state_takes_shared_entries_as_given_and_a_fresh_qs_t0(backend):
    pop = _population(backend)
    state = pop.agent(2).get_state()
    state["pA"][1] = "not read: pA[1] is shared"
    state["qs_t0"] = np.full_like(state["qs_t0"], np.nan)  # as before the first step
    pop.agent(2).set_state(state)
    assert np.isnan(pop.agent(2).get_state()["qs_t0"]).all()
    with pytest.raises(ValueError, match="qs_t0: some agents have inferred no states"):
        pop.update_D()


counts = st.floats(0.0, 1e6, allow_nan=False)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_any_valid_parameters_round_trip(data):
    pop = _population(freeagentics_rs.BACKEND)
    state = pop.agent(5).get_state()
    for name, learned in pop.learned.items():
        for i in learned:
            shape = state[name][i].shape
            value = np.array(data.draw(st.lists(counts, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))))
            value = value.reshape(shape)
            value[0] += 1.0  # every column with a positive sum (as integers too)
            state[name][i] = value.astype(data.draw(st.sampled_from([np.float64, np.float32, np.int64])))
    pop.agent(5).set_state(state)
    got = pop.agent(5).get_state()
    for name, learned in pop.learned.items():
        for i in learned:
            np.testing.assert_array_equal(got[name][i], state[name][i].astype(np.float64))
            assert got[name][i].dtype == np.float64


def test_agent_state_round_trips_through_the_state_store(backend, tmp_path):
    from freeagentics_rs.state import AgentStateStore

    pop = _population(backend)
    store = AgentStateStore(tmp_path / "agents.db", backend=backend)
    try:
        store.save(3, pop.agent(3).get_state())
        pop.agent(0).set_state(store.load(3))
    finally:
        store.close()
    for name, learned in pop.learned.items():
        for i in learned:
            np.testing.assert_array_equal(getattr(pop, name)[i][0], getattr(pop, name)[i][3])

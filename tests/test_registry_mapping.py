"""AgentRegistry as a dict (issue 16 items 2 and 3): a full MutableMapping in registration order,
checked call by call and against a dict model (a hypothesis state machine), plus properties of
its constructor and of the ids it accepts. Runs on the backend under test."""

from __future__ import annotations

import collections.abc

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AgentRegistry
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

MIN_ID, MAX_ID = -(2**63), 2**64 - 1


@pytest.fixture
def registry(backend):
    return AgentRegistry(backend=backend)


def test_it_is_a_mutable_mapping_with_views(registry):
    assert isinstance(registry, collections.abc.MutableMapping)
    registry["b"] = 1
    registry[2] = "two"
    registry["a"] = 3
    assert list(registry) == ["b", 2, "a"] and registry.ids() == ["b", 2, "a"]
    assert list(registry.keys()) == ["b", 2, "a"] and "a" in registry.keys()
    assert list(registry.values()) == [1, "two", 3] and "two" in registry.values()
    assert list(registry.items()) == [("b", 1), (2, "two"), ("a", 3)]
    assert ("a", 3) in registry.items() and ("a", 4) not in registry.items() and (1.5, 3) not in registry.items()
    assert registry.keys() == {"a", "b", 2} and len(registry.items()) == 3
    assert list(reversed(registry)) == ["a", 2, "b"]
    copy = registry.copy()
    assert type(copy) is dict and list(copy.items()) == [("b", 1), (2, "two"), ("a", 3)]
    assert dict(registry) == copy and registry == copy and copy == registry
    assert registry != {"b": 1} and registry != [("b", 1)]


def test_setitem_upserts_in_place_and_delitem_removes(registry):
    for name in "xyz":
        registry[name] = name
    registry["y"] = "Y"  # replaced in its place, as in a dict
    assert list(registry.items()) == [("x", "x"), ("y", "Y"), ("z", "z")]
    del registry["x"]
    registry["x"] = "again"  # back at the end
    assert registry.ids() == ["y", "z", "x"]
    with pytest.raises(KeyError, match="agent 'nope' is not registered"):
        del registry["nope"]
    with pytest.raises(TypeError, match="agent_id: must be a str or an int, not float"):
        registry[1.5] = 1
    assert registry.ids() == ["y", "z", "x"]


def test_update_setdefault_pop_popitem_clear_as_a_dict(registry):
    registry.update({"a": 1, "b": 2}, c=3)
    registry.update([("d", 4), ("a", 10)])
    registry.update(registry.copy())
    assert list(registry.items()) == [("a", 10), ("b", 2), ("c", 3), ("d", 4)]
    with pytest.raises(TypeError, match="agent_id: must be a str or an int, not float"):
        registry.update({"e": 5, 1.5: 6})
    with pytest.raises(ValueError, match="update: element 0 has length 3; 2 is required"):
        registry.update([("e", 5, 6)])
    assert "e" not in registry  # a refused update changes nothing
    registry.update("a", 11)  # the registry's own form: replace a registered agent
    with pytest.raises(KeyError, match="agent 'zz' is not registered"):
        registry.update("zz", 1)
    assert registry.setdefault("a", 0) == 11 and registry.setdefault("f") is None
    assert registry.setdefault("g", []) == [] and registry.ids()[-2:] == ["f", "g"]
    assert registry.popitem() == ("g", []) and registry.pop("f") is None
    assert registry.pop("nope", "d") == "d"
    registry |= {"h": 8}
    assert (registry | {"i": 9})["i"] == 9 and ({"i": 9} | registry)["h"] == 8
    registry.clear()
    assert registry == {} and len(registry) == 0
    with pytest.raises(KeyError, match="empty"):
        registry.popitem()


def test_dict_of_a_registry_never_unpacks_ids(registry):
    # Issue 16 item 2: dict(manager.agents) built {'a': '5'} from the id "a5".
    registry["a5"] = "agent"
    registry["b6"] = "other"
    assert dict(registry) == {"a5": "agent", "b6": "other"}
    assert None not in registry and 1.5 not in registry


def test_registration_order_survives_shards_and_many_agents(backend):
    registry = AgentRegistry(64, backend=backend)
    ids = [f"agent-{i}" if i % 3 else i * 7919 for i in range(2000)]
    for agent_id in ids:
        registry.register(agent_id, agent_id)
    for agent_id in ids[::5]:
        registry[agent_id] = "replaced"
    assert registry.ids() == ids and [k for k, _ in registry.items()] == ids
    assert list(registry.values())[:2] == ["replaced", "agent-1"]


# -- a dict model ---------------------------------------------------------------------------

ID_POOL = ["a", "b", "ü", "", 0, 1, -1, MIN_ID, MAX_ID, 2**63]
ids = st.one_of(
    st.sampled_from(ID_POOL),
    st.sampled_from(ID_POOL[4:]).map(lambda i: np.int64(i) if i < 2**63 else np.uint64(i)),
)
bad_ids = st.one_of(
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.binary(max_size=2),
    st.just((1,)),
    st.sampled_from([MAX_ID + 1, MIN_ID - 1, 10**40]),
)


def plain(agent_id):
    return int(agent_id) if isinstance(agent_id, np.integer) else agent_id


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.registry = AgentRegistry(4, backend=freeagentics_rs.BACKEND)
        self.model: dict = {}
        self.counter = 0

    def value(self):
        self.counter += 1
        return object() if self.counter % 2 else self.counter

    @rule(agent_id=ids)
    def register(self, agent_id):
        value = self.value()
        if plain(agent_id) in self.model:
            with pytest.raises(KeyError):
                self.registry.register(agent_id, value)
        else:
            self.registry.register(agent_id, value)
            self.model[plain(agent_id)] = value

    @rule(agent_id=ids)
    def setitem(self, agent_id):
        value = self.value()
        self.registry[agent_id] = value
        self.model[plain(agent_id)] = value

    @rule(agent_id=ids)
    def delete(self, agent_id):
        if plain(agent_id) in self.model:
            del self.registry[agent_id]
            del self.model[plain(agent_id)]
        else:
            with pytest.raises(KeyError):
                del self.registry[agent_id]

    @rule(agent_id=ids)
    def pop(self, agent_id):
        assert self.registry.pop(agent_id, None) is self.model.pop(plain(agent_id), None)

    @rule(agent_id=ids)
    def replace(self, agent_id):
        value = self.value()
        if plain(agent_id) in self.model:
            self.registry.update(agent_id, value)
            self.model[plain(agent_id)] = value
        else:
            with pytest.raises(KeyError):
                self.registry.update(agent_id, value)

    @rule(agent_id=ids)
    def setdefault(self, agent_id):
        value = self.value()
        assert self.registry.setdefault(agent_id, value) is self.model.setdefault(plain(agent_id), value)

    @rule(pairs=st.lists(st.tuples(ids, st.integers()), max_size=4))
    def update_as_a_dict(self, pairs):
        self.registry.update(pairs)
        self.model.update((plain(k), v) for k, v in pairs)

    @rule(agent_id=ids, same=st.booleans())
    def compare_and_set(self, agent_id, same):
        current = self.model.get(plain(agent_id))
        expected = current if same else object()
        value = self.value()
        swapped = self.registry.compare_and_set(agent_id, expected, value)
        assert swapped == (plain(agent_id) in self.model and same)
        if swapped:
            self.model[plain(agent_id)] = value

    @precondition(lambda self: self.model)
    @rule()
    def popitem(self):
        assert self.registry.popitem() == self.model.popitem()

    @rule()
    def clear(self):
        self.registry.clear()
        self.model.clear()

    @rule(bad=bad_ids)
    def a_bad_id_changes_nothing(self, bad):
        assert bad not in self.registry
        with pytest.raises((TypeError, ValueError), match="agent_id: must be"):
            self.registry[bad] = 1
        with pytest.raises((TypeError, ValueError), match="agent_id: must be"):
            self.registry.register(bad, 1)

    @invariant()
    def same_as_the_model(self):
        items = list(self.registry.items())
        assert [k for k, _ in items] == list(self.model)
        assert all(v is self.model[k] for k, v in items)
        assert len(self.registry) == len(self.model) == sum(self.registry.shard_sizes())
        assert self.registry == self.model and self.registry.copy() == self.model


TestRegistryAgainstADict = RegistryMachine.TestCase
TestRegistryAgainstADict.settings = settings(stateful_step_count=30)


# -- constructor and id properties ------------------------------------------------------------

anything = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-4, max_value=70).map(lambda e: 2**e if e >= 0 else e),
    st.floats(),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "16", "agent-1", "ü"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.integers(min_value=0, max_value=2**64 - 1).map(np.uint64),
    st.sampled_from([np.int8(4), np.bool_(True), np.float32(16.0), 16.0, [16], b"16"]),
)


@given(num_shards=anything)
def test_any_shard_count_builds_or_is_refused_naming_it(num_shards):
    try:
        registry = AgentRegistry(num_shards, backend=freeagentics_rs.BACKEND)
    except (TypeError, ValueError) as e:
        assert str(e).startswith("num_shards: must be"), e
        return
    assert registry.num_shards == int(num_shards) and 2 <= registry.num_shards <= 65536


@given(agent_id=anything)
def test_any_id_is_accepted_or_refused_naming_it_and_changes_nothing(agent_id):
    registry = AgentRegistry(backend=freeagentics_rs.BACKEND)
    registry["keep"] = 1
    try:
        registry[agent_id] = "x"
    except (TypeError, ValueError) as e:
        assert str(e).startswith("agent_id: must be"), e
        assert agent_id not in registry and registry.copy() == {"keep": 1}
        return
    key = plain(agent_id)
    assert (
        isinstance(key, (str, int))
        and not isinstance(key, bool)
        and MIN_ID <= (key if isinstance(key, int) else 0) <= MAX_ID
    )
    assert agent_id in registry and registry[agent_id] == "x" and registry.ids() == ["keep", key]
    assert type(registry.ids()[1]) is type(key)

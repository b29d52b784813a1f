"""AgentRegistry on both backends: the mapping API, errors, concurrent use against a sequential
model, untorn snapshots, agents whose __del__/__eq__ use the registry, stable shards."""

from __future__ import annotations

import random
import sys
import threading

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import AgentRegistry, LockFreeAgentRegistry
from helpers import run_python


@pytest.fixture
def registry(backend):
    return AgentRegistry(backend=backend)


class Agent:
    def __init__(self, name):
        self.name = name


def test_the_mapping_api(registry, backend):
    assert LockFreeAgentRegistry is AgentRegistry
    assert (registry.backend, registry.num_shards, len(registry)) == (backend, 16, 0)
    a, b = Agent("a"), Agent("b")
    registry.register("a", a)
    registry.register(7, b)
    assert registry["a"] is a and registry.get(7) is b
    assert registry.get("missing") is None and registry.get("missing", 5) == 5
    assert "a" in registry and 7 in registry and "b" not in registry
    assert len(registry) == 2 and sorted(map(str, registry)) == ["7", "a"]
    assert sorted(registry.ids(), key=str) == [7, "a"]
    assert dict(registry.items()) == {"a": a, 7: b}
    assert registry.get_many(["a", "nope", 7]) == {"a": a, 7: b}
    c = Agent("c")
    registry.update("a", c)
    assert registry["a"] is c
    assert registry.compare_and_set("a", a, b) is False  # identity, and `a` is gone
    assert registry.compare_and_set("a", c, a) is True and registry["a"] is a
    assert registry.compare_and_set("nope", None, a) is False
    assert registry.pop("a") is a and registry.pop("a", "gone") == "gone"
    assert registry.unregister(7) is b
    assert len(registry) == 0 and sum(registry.shard_sizes()) == 0
    for i in range(100):
        registry.register(f"x{i}", i)
    assert sum(registry.shard_sizes()) == 100 and len(registry.shard_sizes()) == 16
    registry.clear()
    assert len(registry) == 0 and registry.ids() == []


def test_errors_name_the_id_and_leave_the_registry_unchanged(registry):
    first = Agent("first")
    registry.register("a", first)
    with pytest.raises(KeyError, match="agent 'a' is already registered"):
        registry.register("a", Agent("second"))
    assert registry["a"] is first and len(registry) == 1
    for call in (registry.unregister, registry.__getitem__, registry.pop, lambda k: registry.update(k, 1)):
        with pytest.raises(KeyError, match="agent 'b' is not registered"):
            call("b")
    with pytest.raises(KeyError, match="agent 3 is not registered"):
        registry.unregister(3)
    for bad in (1.5, None, b"a", (1,), True, np.bool_(True), np.float64(1.0)):
        with pytest.raises(TypeError, match=f"agent_id: must be a str or an int, not {type(bad).__name__}"):
            registry.get(bad)
        with pytest.raises(TypeError):
            registry.register(bad, 1)
        assert bad not in registry  # as for a dict: an id of another type is not in it
    assert [] not in registry and {} not in registry
    assert len(registry) == 1


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (0, ValueError, "num_shards: must be between 2 and 65536, got 0"),
        (1, ValueError, "num_shards: must be between 2 and 65536, got 1"),
        (12, ValueError, "num_shards: must be a power of two, got 12"),
        (2**17, ValueError, "num_shards: must be between 2 and 65536, got 131072"),
        (2.0, TypeError, "num_shards: must be an int, not float"),
        (True, TypeError, "num_shards: must be an int, not bool"),
    ],
)
def test_bad_shard_counts(backend, bad, error, message):
    with pytest.raises(error, match=message):
        AgentRegistry(bad, backend=backend)


def test_a_huge_shard_count_is_refused_not_allocated(run_isolated, backend):
    # Issue 14 item 9: aborted the process on Rust (allocation failure), built 2**40 dicts on
    # Python. The core refuses it too, for callers that build one directly.
    out = run_isolated(
        f"""
        import freeagentics_rs
        from freeagentics_rs import _backend
        from freeagentics_rs.registry import _py
        for make in (lambda n: freeagentics_rs.AgentRegistry(num_shards=n),
                     _backend.native().AgentRegistryCore if {backend!r} == "rust" else _py.AgentRegistryCore):
            try:
                make(2**40)
            except ValueError as e:
                print(e)
    """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "num_shards: must be between 2 and 65536, got 1099511627776",
        "num_shards: must be a power of two between 2 and 65536, got 1099511627776",
    ]


def test_allocation_failures_are_memory_errors(run_isolated):
    # Under an address-space limit, building registries until memory runs out must raise
    # MemoryError (the Rust core aborted the process on a failed allocation).
    out = run_isolated(
        """
        import resource
        import freeagentics_rs
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))
        kept = []
        try:
            for _ in range(100_000):
                kept.append(freeagentics_rs.AgentRegistry(num_shards=65536))
        except MemoryError:
            kept.clear()
            print("MemoryError")
    """,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "MemoryError"


def test_ids_are_str_and_ints_from_int64_min_to_uint64_max_numpy_included(registry):
    # Issue 14 item 16: 2**63 was refused, and numpy integers were refused as ids.
    for agent_id in (-(2**63), -1, 0, 2**63 - 1, 2**63, 2**64 - 1):
        registry.register(agent_id, agent_id)
    registry.register(np.uint64(2**64 - 2), "u")
    assert registry[2**64 - 2] == "u" and registry[np.int64(-1)] == -1 and np.uint8(0) in registry
    with pytest.raises(KeyError, match="already registered"):
        registry.register(np.int32(0), "again")
    assert registry.ids() == [-(2**63), -1, 0, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2]
    assert all(type(i) is int for i in registry.ids())
    for too_big in (2**64, -(2**63) - 1, 10**30):
        with pytest.raises(
            ValueError, match=f"agent_id: must be between -9223372036854775808 and 18446744073709551615, got {too_big}"
        ):
            registry.register(too_big, 1)
        assert too_big not in registry
    assert len(registry) == 7
    assert AgentRegistry(np.int64(32), backend=registry.backend).num_shards == 32


def test_str_and_int_subclasses_are_plain_ids(registry):
    class Name(str):
        def __hash__(self):
            raise AssertionError("user code under a shard lock")

    registry.register(Name("n"), 1)
    assert registry["n"] == 1 and registry.ids() == ["n"] and type(registry.ids()[0]) is str


def test_concurrent_threads_match_a_sequential_model(registry):
    threads, steps = 8, 3000
    errors = []
    models = [dict() for _ in range(threads)]

    def worker(t):
        rng = random.Random(t)
        model = models[t]
        try:
            for _ in range(steps):
                key = f"t{t}-{rng.randrange(40)}" if rng.random() < 0.5 else t * 1000 + rng.randrange(40)
                op = rng.random()
                if op < 0.3:
                    value = Agent(key)
                    if key in model:
                        with pytest.raises(KeyError):
                            registry.register(key, value)
                    else:
                        registry.register(key, value)
                        model[key] = value
                elif op < 0.5:
                    assert registry.pop(key, None) is model.pop(key, None)
                elif op < 0.65 and key in model:
                    value = Agent(key)
                    registry.update(key, value)
                    model[key] = value
                elif op < 0.75 and key in model:
                    value = Agent(key)
                    assert registry.compare_and_set(key, model[key], value)
                    model[key] = value
                else:
                    assert registry.get(key) is model.get(key)
                    assert (key in registry) == (key in model)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[0]
    expected = {k: v for model in models for k, v in model.items()}
    assert len(registry) == len(expected)
    assert dict(registry.items()) == expected
    assert all(registry[k] is v for k, v in expected.items())


def test_compare_and_set_is_atomic_under_contention(registry):
    registry.register("counter", 0)
    threads, increments = 8, 500

    def incrementer():
        for _ in range(increments):
            while True:
                current = registry["counter"]
                # A new object every time: identity compare cannot be fooled by reuse.
                if registry.compare_and_set("counter", current, [current[0] + 1] if isinstance(current, list) else [1]):
                    break

    workers = [threading.Thread(target=incrementer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert registry["counter"] == [threads * increments]


def test_snapshots_are_never_torn(registry):
    # Each mover keeps one id registered, moving it by registering the next id and only then
    # unregistering the old one: at every instant between `movers` and 2 * `movers` ids exist.
    movers, moves = 6, 3000
    for m in range(movers):
        registry.register(f"m{m}-0", m)

    def mover(m):
        for step in range(1, moves):
            registry.register(f"m{m}-{step}", m)
            registry.unregister(f"m{m}-{step - 1}")

    workers = [threading.Thread(target=mover, args=(m,)) for m in range(movers)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: inside snapshots too
    try:
        for w in workers:
            w.start()
        snapshots = check_snapshots_while(workers, registry, movers)
    finally:
        sys.setswitchinterval(interval)
    for w in workers:
        w.join()
    assert snapshots > 0
    assert sorted(registry.ids()) == sorted(f"m{m}-{moves - 1}" for m in range(movers))


def check_snapshots_while(workers, registry, movers):
    snapshots = 0
    while any(w.is_alive() for w in workers):
        for snapshot in (registry.ids(), list(registry.items()), registry.shard_sizes()):
            n = sum(snapshot) if isinstance(snapshot[0], int) and len(snapshot) == 16 else len(snapshot)
            assert movers <= n <= 2 * movers, n
        # Every mover is in every snapshot (with one or two of its ids).
        assert {i.split("-")[0] for i in registry.ids()} == {f"m{m}" for m in range(movers)}
        snapshots += 1
    return snapshots


def test_agents_whose_del_and_eq_use_the_registry_do_not_deadlock(registry):
    seen = []

    class Reentrant:
        def __del__(self):
            # Runs when the registry drops its last reference: no shard lock may be held.
            seen.append(registry.get("other"))
            registry.register(f"reborn-{len(seen)}", "x")

        def __eq__(self, other):
            raise AssertionError("agents are compared by identity")

        __hash__ = object.__hash__

    registry.register("other", "o")
    registry.register("r", Reentrant())
    registry.unregister("r")  # dies here
    registry.register("r", Reentrant())
    registry.update("r", Reentrant())  # the replaced one dies
    registry.register("s", Reentrant())
    assert registry.compare_and_set("s", Reentrant(), 1) is False  # the temporary dies
    registry.clear()  # the last two die after every shard is unlocked, "other" already gone
    assert seen == ["o", "o", "o", None, None]
    assert sorted(registry.ids()) == ["reborn-4", "reborn-5"]


def test_no_reference_leaks(registry):
    agent = Agent("leak")
    before = sys.getrefcount(agent)
    for i in range(2000):
        registry.register(i, agent)
        registry.get(i)
        registry.get_many([i])
        list(registry.items())
        registry.copy()
        registry[i] = agent
        registry.setdefault(i, agent)
        registry.update(i, agent)
        registry.compare_and_set(i, agent, agent)
        registry.unregister(i)
    registry.register("x", agent)
    registry.clear()
    assert sys.getrefcount(agent) == before


def test_shards_are_the_same_in_every_process_and_on_both_backends(backend):
    ids = ["agent-1", "explorer_42", "ünïcode", "", 0, -1, 2**40, -(2**63)]
    code = f"""
        import freeagentics_rs
        r = freeagentics_rs.AgentRegistry(32)
        print([r.shard_of(i) for i in {ids!r}])
    """
    here = AgentRegistry(32, backend=backend)
    expected = [here.shard_of(i) for i in ids]
    for seed, child_backend in (("1", "python"), ("2", freeagentics_rs.BACKEND)):
        out = run_python(code, backend=child_backend, env_extra={"PYTHONHASHSEED": seed})
        assert out.returncode == 0, out.stderr
        assert eval(out.stdout) == expected

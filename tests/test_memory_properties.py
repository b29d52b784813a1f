"""Property-based tests of SharedMemoryPool and SharedModelStore on the backend under test.

A model-based state machine runs random interleavings of acquire / view / memoryview /
subclass view / write / release / del / gc / close and checks, with content stamps, that no
memory an array, view or memoryview can still reach is ever handed out again, and that the
pool's counts match the model. Constructor arguments of every kind either work or raise
TypeError/ValueError naming the argument (or MemoryError when too large), never crash or hang:
those run in a fresh interpreter."""

from __future__ import annotations

import gc
import json
import os

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import PoolExhaustedError, SharedMemoryPool
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule


class _Sub(np.ndarray):
    pass


class _Handle:
    """Something that reaches a slot's memory, and the stamp its slot holds."""

    def __init__(self, obj, group):
        self.obj, self.group = obj, group

    def array(self) -> np.ndarray:
        return np.asarray(self.obj)


class _Group:
    """One acquire: its stamp and whether its slot was released."""

    def __init__(self, stamp):
        self.stamp, self.released = stamp, False


class PoolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.capacity = 3
        self.pool = SharedMemoryPool(
            4, "int64", capacity=self.capacity, on_exhausted="raise", backend=freeagentics_rs.BACKEND
        )
        self.handles: list[_Handle] = []
        self.next_stamp = 1
        self.closed = False

    def live_groups(self) -> set[_Group]:
        return {h.group for h in self.handles}

    @rule()
    def acquire(self):
        in_use = sum(not g.released for g in self.live_groups())
        try:
            a = self.pool.acquire(timeout=0)
        except RuntimeError:
            assert self.closed
            return
        except PoolExhaustedError:
            assert in_use >= self.capacity
            return
        assert not self.closed and in_use < self.capacity
        assert not a.any(), "a slot was handed out without being zero-filled"
        group = _Group(self.next_stamp)
        self.next_stamp += 1
        a[:] = group.stamp
        self.handles.append(_Handle(a, group))

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), kind=st.sampled_from(["slice", "reshape", "asarray", "memoryview", "subclass"]))
    def view(self, data, kind):
        h = self.handles[data.draw(st.integers(0, len(self.handles) - 1))]
        a = h.array() if kind != "memoryview" or isinstance(h.obj, memoryview) else h.obj
        obj = {
            "slice": lambda: a[1:],
            "reshape": lambda: a.reshape(-1, 1),
            "asarray": lambda: np.asarray(a),
            "memoryview": lambda: memoryview(a),
            "subclass": lambda: a.view(_Sub),
        }[kind]()
        self.handles.append(_Handle(obj, h.group))

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def write(self, data):
        h = self.handles[data.draw(st.integers(0, len(self.handles) - 1))]
        a = h.array()
        if a.flags.writeable:
            a[...] = h.group.stamp

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), via_temporary=st.booleans())
    def release(self, data, via_temporary):
        index = data.draw(st.integers(0, len(self.handles) - 1))
        h = self.handles[index]
        group = h.group
        try:
            if via_temporary:  # issue 14's pattern: `release(lst.pop())` while views live elsewhere
                h = None
                popped = self.handles.pop(index).obj
                self.pool.release(popped.obj if isinstance(popped, memoryview) else popped)
            else:
                self.pool.release(h.obj.obj if isinstance(h.obj, memoryview) else h.obj)
        except ValueError as e:
            message = str(e)
            assert (
                group.released
                and message == "release: the array was already released"
                or (message == "release: the array was not acquired from this pool")
            ), message
            return
        finally:
            popped = None
        assert not group.released
        group.released = True

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def drop(self, data):
        del self.handles[data.draw(st.integers(0, len(self.handles) - 1))]

    @rule()
    def collect(self):
        gc.collect(0)  # the model holds no cycles; a full collection only costs time

    @rule()
    def close(self):
        self.pool.close()
        self.closed = True

    @invariant()
    def every_live_view_still_holds_its_own_stamp(self):
        for h in self.handles:
            assert (h.array() == h.group.stamp).all(), "memory a live view reaches was handed out again"

    @invariant()
    def counts_match_the_model(self):
        groups = self.live_groups()
        stats = self.pool.stats()
        assert stats["in_use"] == sum(not g.released for g in groups)
        assert stats["retained"] == sum(g.released for g in groups)

    def teardown(self):
        self.handles.clear()
        self.pool.close()


TestPoolMachine = PoolMachine.TestCase
_STRESS = os.environ.get("HYPOTHESIS_PROFILE") == "stress"
TestPoolMachine.settings = settings(
    settings.default,
    max_examples=500 if _STRESS else 25,
    stateful_step_count=40 if _STRESS else 25,
    suppress_health_check=[HealthCheck.too_slow],
)


# Constructor arguments, generated and run in a fresh interpreter: a crash there is a failed
# test, not a dead test run.
_CHILD = """
import json, os, sys
import numpy as np
from hypothesis import given, settings, HealthCheck, strategies as st
import freeagentics_rs
from freeagentics_rs import SharedMemoryPool, SharedModelStore

examples = int(sys.argv[1])
failures = []
ints = st.one_of(
    st.integers(-3, 8), st.sampled_from([0, -1, 2**31, 2**40, 2**62, 2**63, 2**64, -2**63]),
    st.integers(-3, 8).map(np.int64), st.integers(0, 8).map(np.uint8),
)
anything = st.one_of(
    ints, st.booleans(), st.none(), st.floats(allow_nan=True),
    st.sampled_from([1.0, 2.5, np.float64(3.0), np.bool_(True)]), st.text(max_size=3),
    st.sampled_from(["float64", "int8", "U3", "object", "block", "raise", "grow", (2, 3), (), [4], (0,)]),
)

def run(kwargs, call):
    try:
        obj = call()
    except (TypeError, ValueError) as e:
        named = [k for k in kwargs if str(e).startswith(k + ":")]
        if not named:
            failures.append(f"{kwargs!r}: {type(e).__name__}: {e}")
        return
    except MemoryError:
        return
    except Exception as e:
        failures.append(f"{kwargs!r}: {type(e).__name__}: {e}")
        return
    try:
        if isinstance(obj, SharedMemoryPool):
            obj.release(obj.acquire(timeout=0))
        else:
            obj.intern(np.eye(2))
    finally:
        obj.close()

@settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    shape=st.one_of(ints, anything, st.tuples(ints, ints)), dtype=anything, capacity=st.one_of(ints, anything),
    on_exhausted=anything, max_capacity=st.one_of(ints, anything),
    shared=st.sampled_from([False, None, 0, 1, "yes", np.bool_(False), 2.0]),
)
def pool_arguments(shape, dtype, capacity, on_exhausted, max_capacity, shared):
    kwargs = dict(
        shape=shape, dtype=dtype, capacity=capacity, on_exhausted=on_exhausted, max_capacity=max_capacity, shared=shared
    )
    run(kwargs, lambda: SharedMemoryPool(**kwargs))

@settings(max_examples=examples, deadline=None, database=None)
@given(shared=anything)
def store_arguments(shared):
    run({"shared": shared}, lambda: SharedModelStore(shared=shared))

pool_arguments()
store_arguments()
# shared memory with valid, small arguments
for shared_kwargs in ({"capacity": 2}, {"capacity": np.int64(2), "on_exhausted": "grow", "max_capacity": np.int64(4)}):
    run(shared_kwargs, lambda: SharedMemoryPool((2, 2), "float32", shared=True, **shared_kwargs))
print(json.dumps(failures[:20]))
"""


def test_constructor_arguments_work_or_name_the_argument(run_isolated):
    examples = 400 if _STRESS else 60
    result = run_isolated(_CHILD.replace("sys.argv[1]", str(examples)), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize("shape", [(1 << 48,), (1 << 20, 1 << 20, 1 << 10)])
def test_too_large_shapes_are_memory_or_value_errors(run_isolated, shape):
    result = run_isolated(
        f"""
        from freeagentics_rs import SharedMemoryPool
        try:
            SharedMemoryPool({shape!r}, "float64", capacity=1)
        except (MemoryError, ValueError) as e:
            print(type(e).__name__)
        """
    )
    assert result.returncode == 0 and result.stdout.strip() in ("MemoryError", "ValueError"), result.stderr

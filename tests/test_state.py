"""AgentStateStore: exact round-trips, no pickle, versions, checksums, crash safety."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from freeagentics_rs import AgentStateStore, StateCorruptedError
from freeagentics_rs.state._codec import decode, encode


@pytest.fixture
def store(tmp_path, backend):
    with AgentStateStore(tmp_path / "states.db", backend=backend) as s:
        yield s


def every_type():
    return {
        "beliefs": np.linspace(0, 1, 100),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "flags": np.array([True, False]),
        "complex": np.array([1 + 2j], dtype=np.complex64),
        "when": np.array(["2026-11-27"], dtype="datetime64[D]"),
        "names": np.array(["ab", "c"]),
        "empty": np.zeros((0, 3)),
        "scalar_array": np.array(3.5),
        "int": -7,
        "huge": 1 << 80,
        "float": 0.1,
        "nan": float("nan"),
        "text": "héllo \U0001f600",
        "yes": True,
        "nothing": None,
        "nested": {"list": [1, 2.5, "x", None, [np.int8(3)], {"deep": np.ones(2)}]},
    }


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == np.ascontiguousarray(b).tobytes() or np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b and type(b) is type(a) or (isinstance(a, np.generic) and b == a)


def test_every_supported_value_round_trips_exactly(store):
    state = every_type()
    assert store.save("agent-1", state) == 1
    loaded = store.load("agent-1")
    for key in state:
        assert_same(state[key], loaded[key])
    assert loaded["big_endian"].dtype.str == ">i4"
    assert "agent-1" in store and store.ids() == ["agent-1"]


@pytest.mark.parametrize(
    "state, where",
    [
        ({"a": object()}, "state[a] has type object"),
        ({"a": {"b": [1, lambda: 0]}}, "state[a.b[1]] has type function"),
        ({"t": (1, 2)}, "state[t] has type tuple"),
        ({"o": np.array([object()])}, "state[o] is an array of dtype object"),
        ({"s": {1: "int key"}}, "state[s] has a key of type int"),
    ],
)
def test_anything_else_is_refused_and_nothing_is_written(store, state, where):
    with pytest.raises(TypeError, match=re.escape(where)):
        store.save_many({"ok": {"v": 1}, "bad": state})
    assert store.ids() == []


def test_versions_are_kept_and_history_is_newest_first(tmp_path, backend):
    with AgentStateStore(tmp_path / "v.db", keep_versions=2, backend=backend) as store:
        for k in range(5):
            store.save(7, {"k": k})
        assert [(v.version, v.state["k"]) for v in store.history(7)] == [(5, 4), (4, 3)]
        assert store.ids() == [7]
        store.delete(7)
        with pytest.raises(KeyError, match="agent 7 has no saved state"):
            store.load(7)
        with pytest.raises(KeyError):
            store.delete(7)


def corrupt_newest(path, agent_key):
    conn = sqlite3.connect(path)
    (version,) = conn.execute("SELECT MAX(version) FROM agent_states WHERE agent = ?", (agent_key,)).fetchone()
    data = bytearray(
        conn.execute("SELECT data FROM agent_states WHERE agent = ? AND version = ?", (agent_key, version)).fetchone()[
            0
        ]
    )
    data[len(data) // 2] ^= 0xFF
    conn.execute("UPDATE agent_states SET data = ? WHERE agent = ? AND version = ?", (bytes(data), agent_key, version))
    conn.commit()
    conn.close()
    return version


def test_a_corrupted_record_is_detected_and_fallback_finds_the_last_intact_one(tmp_path, backend):
    path = tmp_path / "c.db"
    with AgentStateStore(path, backend=backend) as store:
        store.save("a", {"k": 1, "q": np.arange(50)})
        store.save("a", {"k": 2, "q": np.arange(50)})
        version = corrupt_newest(path, "s:a")
        with pytest.raises(StateCorruptedError, match=f"state of agent 'a', version {version}, is corrupted") as info:
            store.load("a")
        assert (info.value.agent_id, info.value.version) == ("a", version)
        assert store.load("a", fallback=True)["k"] == 1


def test_malformed_records_never_decode_to_anything_but_a_dict():
    record = encode(every_type())
    rng = random.Random(0)
    for _ in range(2000):
        data = bytearray(record)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = data[: rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data
        try:
            assert isinstance(decode(bytes(cut)), dict)
        except ValueError:
            pass


def test_async_variants_do_not_block_the_loop(store):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        states = {f"a{i}": {"beliefs": np.random.default_rng(i).random(20_000)} for i in range(20)}
        versions = await store.save_many_async(states)
        await store.save_async("solo", {"k": 1})
        loaded = await store.load_async("a3")
        stop.set()
        await task
        return ticks, versions, loaded

    ticks, versions, loaded = asyncio.run(main())
    assert ticks > 0 and set(versions.values()) == {1}
    assert np.array_equal(loaded["beliefs"], np.random.default_rng(3).random(20_000))


def test_closed_store_and_bad_arguments(tmp_path, backend):
    store = AgentStateStore(tmp_path / "x.db", backend=backend)
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.save("a", {})
    with pytest.raises(ValueError, match="path must name a file"):
        AgentStateStore(":memory:")
    with pytest.raises(ValueError, match="keep_versions: must be between 1 and"):
        AgentStateStore(tmp_path / "y.db", keep_versions=0)
    with pytest.raises(TypeError, match="agent_id: must be a str or an int"):
        AgentStateStore(tmp_path / "z.db").save(1.5, {})
    with pytest.raises(TypeError, match="state must be a dict"):
        AgentStateStore(tmp_path / "w.db").save("a", [1])


WRITER = """
import sys, numpy as np
from freeagentics_rs import AgentStateStore
store = AgentStateStore(sys.argv[1])
k = int(sys.argv[2])
print("ready", flush=True)
while True:
    k += 1
    store.save_many({f"agent-{i}": {"k": k, "q": np.full(2000, k, dtype=np.int64)} for i in range(4)})
    store.save("solo", {"k": k, "q": np.full(2000, k, dtype=np.int64)})
"""


def crash_many_times(path, kills, backend):
    rng = random.Random(kills)
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=backend)
    last = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(last * 1000)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.005, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with AgentStateStore(path) as store:
            states = {agent: store.load(agent) for agent in store.ids()}
        for agent, state in states.items():
            assert np.array_equal(state["q"], np.full(2000, state["k"])), agent  # never torn
        ks = {state["k"] for agent, state in states.items() if agent != "solo"}
        assert len(ks) <= 1, ks  # save_many is one transaction
        last += 1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_saving_leaves_every_agent_intact(tmp_path, backend):
    crash_many_times(tmp_path / "crash.db", 10, backend)


@pytest.mark.stress
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_fifty_sigkills_while_saving(tmp_path, backend):
    crash_many_times(tmp_path / "crash.db", 50, backend)


def test_what_would_not_round_trip_is_refused_and_odd_records_are_only_malformed():
    with pytest.raises(TypeError, match=re.escape("state[m] has type MaskedArray")):
        encode({"m": np.ma.masked_array([1, 2], mask=[0, 1])})
    deep: list = []
    inner = deep
    for _ in range(200):
        inner.append([])
        inner = inner[0]
    with pytest.raises(TypeError, match="nested more than 100 levels deep"):
        encode({"deep": deep})
    assert decode(encode({"big": -(1 << 200)}))["big"] == -(1 << 200)
    bad_dtype = encode({"a": np.zeros(1)}).replace(b"<f8", b"08f")
    with pytest.raises(ValueError, match="malformed"):
        decode(bad_dtype)
    with pytest.raises(ValueError, match="malformed"):
        decode(b"FAS1" + b"l\x01\x00\x00\x00" * 5000)


def test_each_threads_connection_closes_with_its_thread(store):
    import threading

    def use():
        store.save("a", {"v": 1})

    for _ in range(50):
        t = threading.Thread(target=use)
        t.start()
        t.join()
    assert len(store._connections) <= 2  # this thread's, and maybe one not yet collected


def test_nothing_is_created_after_close(tmp_path, backend):
    # Issue 14 item 12: the async variants recreated the store's thread pool before refusing.
    store = AgentStateStore(tmp_path / "closed.db", backend=backend)

    async def use_after_close():
        store.close()
        for call in (store.load_async("a"), store.save_async("a", {}), store.save_many_async({"a": {}})):
            with pytest.raises(RuntimeError, match="the state store is closed"):
                await call

    asyncio.run(use_after_close())
    assert store._executor is None


def insert_raw(path, rows):
    """Rows written by something other than the store: (agent key, version, saved_at, checksum, data)."""
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO agent_states VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()


def test_rows_the_store_did_not_write_are_corrupted_and_skipped(tmp_path, backend):
    # Issue 14 item 13: non-BLOB data raised TypeError, keys the store did not write broke ids().
    path = tmp_path / "foreign.db"
    with AgentStateStore(path, backend=backend) as store:
        store.save("a", {"k": 1})
        good = encode({"k": 2})
        import zlib

        insert_raw(
            path,
            [
                ("s:a", 2, 0.0, zlib.crc32(b"text"), "text"),  # TEXT data
                ("s:a", 3, 0.0, 0, 12345),  # INTEGER data
                ("s:a", 4, 0.0, 0, 1.5),  # REAL data
                ("s:b", 1, 0.0, "not a checksum", good),  # TEXT checksum
                ("i:x", 1, 0.0, zlib.crc32(good), good),  # an int key that is not an int
                ("q:c", 1, 0.0, zlib.crc32(good), good),  # an unknown kind of key
                (7, 1, 0.0, zlib.crc32(good), good),  # a key that is not even text
            ],
        )
        for version in (4, 3, 2):
            with pytest.raises(StateCorruptedError, match=f"state of agent 'a', version {version}, is corrupted"):
                store.load("a")
            with sqlite3.connect(path) as conn:
                conn.execute("DELETE FROM agent_states WHERE agent = 's:a' AND version = ?", (version,))
            conn.close()
        insert_raw(path, [("s:a", 2, 0.0, 0, "text"), ("s:a", 3, 0.0, 0, 12345)])
        assert store.load("a", fallback=True) == {"k": 1}
        with pytest.raises(StateCorruptedError, match="agent 'b', version 1"):
            store.load("b", fallback=True)
        assert store.ids() == ["a", "b"]  # keys it did not write are no agents of this store
        assert store.save("a", {"k": 9}) == 4


def test_history_returns_the_intact_versions_and_reports_the_corrupted_ones(tmp_path, backend):
    # Issue 14 item 14: one corrupted kept version made history() raise.
    path = tmp_path / "h.db"
    with AgentStateStore(path, keep_versions=3, backend=backend) as store:
        for k in range(3):
            store.save("a", {"k": k})
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE agent_states SET data = X'00' WHERE agent = 's:a' AND version = 2")
        conn.close()
        history = store.history("a")
        assert [(v.version, v.state) for v in history] == [(3, {"k": 2}), (1, {"k": 0})]
        assert [(e.agent_id, e.version) for e in history.corrupted] == [("a", 2)]
        assert all(isinstance(e, StateCorruptedError) for e in history.corrupted)


def test_save_many_names_its_argument(tmp_path, backend):
    # Issue 14 item 15: a list of pairs gave AttributeError.
    with AgentStateStore(tmp_path / "m.db", backend=backend) as store:
        with pytest.raises(TypeError, match=r"states: must be a dict \(agent_id -> state\), not list"):
            store.save_many([("a", {})])
        assert store.ids() == []

"""Property-based tests of the agent-state record format and the store's checks: every generated
state round-trips exactly, and every mutated record is rejected with ``StateCorruptedError``
(never another exception, never a crash). Also the store's constructor arguments."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
from freeagentics_rs import BACKEND, AgentStateStore, StateCorruptedError
from freeagentics_rs.state._codec import decode, encode
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# -- generated states -------------------------------------------------------------------------

_FIXED_DTYPES = [
    "b1",
    "i1",
    "u1",
    "i2",
    "u2",
    "i4",
    "u4",
    "i8",
    "u8",
    "f2",
    "f4",
    "f8",
    "c8",
    "c16",
    "M8[D]",
    "M8[s]",
    "M8[ns]",
    "m8[us]",
    "m8[h]",
]


@st.composite
def dtypes(draw):
    """Every supported kind, in both byte orders where the order means something."""
    kind = draw(st.sampled_from(_FIXED_DTYPES + ["S", "U"]))
    if kind in ("S", "U"):
        kind += str(draw(st.integers(1, 5)))
    dtype = np.dtype(kind)
    if dtype.itemsize > 1 and kind[0] not in "S":
        dtype = dtype.newbyteorder(draw(st.sampled_from("<>")))
    return dtype


@st.composite
def arrays(draw):
    dtype = draw(dtypes())
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    array = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "fortran", "strided"]))
    if layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = np.repeat(array, 2, axis=0)[::2]  # a non-contiguous view of the same values
    return array


scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)  # surrogates too
    | st.integers(-(2**63), 2**63 - 1).map(np.int64)
    | st.integers(0, 255).map(np.uint8)
    | st.floats(width=32).map(np.float32)
    | st.booleans().map(np.bool_)
)
keys = st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
values = st.recursive(
    scalars | arrays(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
states = st.dictionaries(keys, values, max_size=5)


def assert_exact(original, decoded):
    """Exactly what was saved: arrays with dtype (byte order included), shape and bytes; floats
    bit for bit (NaN payloads, -0.0); numpy scalars as the Python values they stand for."""
    if isinstance(original, np.ndarray):
        assert type(decoded) is np.ndarray
        assert decoded.dtype.str == original.dtype.str and decoded.shape == original.shape
        assert decoded.tobytes() == np.ascontiguousarray(original).tobytes()
    elif isinstance(original, dict):
        assert type(decoded) is dict and list(decoded) == list(original)
        for key in original:
            assert_exact(original[key], decoded[key])
    elif isinstance(original, list):
        assert type(decoded) is list and len(decoded) == len(original)
        for a, b in zip(original, decoded, strict=True):
            assert_exact(a, b)
    elif isinstance(original, (bool, np.bool_)):
        assert type(decoded) is bool and decoded == bool(original)
    elif isinstance(original, (int, np.integer)):
        assert type(decoded) is int and decoded == int(original)
    elif isinstance(original, (float, np.floating)):
        assert type(decoded) is float
        assert struct.pack("<d", decoded) == struct.pack("<d", float(original))
    else:
        assert type(decoded) is type(original) and decoded == original


@given(states)
def test_every_generated_state_round_trips_exactly(state):
    assert_exact(state, decode(encode(state)))


# -- mutated records --------------------------------------------------------------------------

mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),  # xor one byte
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("append"), st.integers(1, 8), st.integers(0, 255)),
)


def mutate(record: bytes, how) -> bytes:
    kind, at, value = how
    if kind == "flip":
        data = bytearray(record)
        data[at % len(data)] ^= value
        return bytes(data)
    if kind == "truncate":
        return record[: at % len(record)]
    return record + bytes([value]) * at


def load_row(version: int, checksum, data):
    """What load() does with one stored row."""
    return AgentStateStore._decode("agent", version, checksum, data)


@given(states, mutations)
def test_every_mutated_record_is_rejected_with_state_corrupted_error(state, how):
    record = encode(state)
    damaged = mutate(record, how)
    with pytest.raises(StateCorruptedError, match="state of agent 'agent', version 7, is corrupted"):
        load_row(7, zlib.crc32(record), damaged)


@given(states, st.lists(mutations, min_size=1, max_size=4))
def test_a_mutated_record_with_a_matching_checksum_decodes_or_is_corrupted(state, hows):
    # A writer that computed the checksum over damaged bytes: the decoder itself must cope.
    damaged = encode(state)
    for how in hows:
        damaged = mutate(damaged, how) or b"F"
    try:
        decoded = load_row(1, zlib.crc32(damaged), damaged)
    except StateCorruptedError:
        return
    assert type(decoded) is dict
    assert_exact(decoded, decode(encode(decoded)))  # what decodes is a state like any other


wrong_kinds = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.none())


@given(states, wrong_kinds)
def test_data_of_the_wrong_kind_is_corrupted(state, data):
    checksum = zlib.crc32(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else zlib.crc32(encode(state))
    with pytest.raises(StateCorruptedError, match="not a BLOB"):
        load_row(1, checksum, data)


@given(states, st.one_of(st.text(max_size=5), st.floats(), st.none(), st.binary(max_size=4)))
def test_a_checksum_of_the_wrong_kind_is_corrupted(state, checksum):
    with pytest.raises(StateCorruptedError):
        load_row(1, checksum, encode(state))


# -- the store's constructor ------------------------------------------------------------------

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
)


@given(keep_versions=anything)
def test_keep_versions_works_or_is_refused_by_name(tmp_path_factory, keep_versions):
    path = tmp_path_factory.mktemp("kv") / "s.db"
    try:
        store = AgentStateStore(path, keep_versions=keep_versions, backend=BACKEND)
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith("keep_versions: "), exc
        return
    with store:
        for k in range(3):
            store.save("a", {"k": k})
        kept = [v.version for v in store.history("a")]
    assert kept == [3, 2, 1][: int(keep_versions)]


@given(path=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.text(max_size=2), max_size=2)))
def test_a_path_of_the_wrong_type_is_refused_by_name(path):
    with pytest.raises(TypeError, match="^path: must be"):
        AgentStateStore(path)


@given(agent_id=anything)
def test_agent_ids_are_str_or_int(tmp_path_factory, agent_id):
    with AgentStateStore(tmp_path_factory.mktemp("ids") / "s.db", backend=BACKEND) as store:
        try:
            store.save(agent_id, {"v": 1})
        except TypeError as exc:
            assert str(exc).startswith("agent_id: "), exc
            assert store.ids() == [] and agent_id not in store
            return
        assert store.load(agent_id) == {"v": 1}
        assert store.ids() == [agent_id if isinstance(agent_id, str) else int(agent_id)]


def test_float_bits_survive():
    # One example outside hypothesis: a NaN with a payload and negative zero.
    nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    state = {"nan": nan, "zero": -0.0, "inf": -math.inf}
    assert_exact(state, decode(encode(state)))

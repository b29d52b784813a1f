"""Pure-Python cores of SharedMemoryPool and SharedModelStore, with the Rust cores' behaviour
and messages (``rust/python/memory.rs``).

A slot is handed out as one array whose base is a small slot owner: a ctypes array of the slot's
bytes made over the slot's memory, whose buffer numpy builds the array from. numpy collapses the
base of every further view to that array, and every other holder of its memory (a memoryview, a
subclass view) holds it or a view of it, so the owner dies with the last object that can reach the
slot's memory, and then gives the memory back. ``release`` never detaches anything: it only
stops the slot counting as in use. No decision depends on a reference count.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import sys
import threading
import time
import weakref
from typing import Any

import numpy as np

from ..errors import PoolExhaustedError
from . import _shm


def _check_timeout(timeout: Any) -> float | None:
    """``timeout`` in seconds; ``None`` waits forever, and so does one too long to represent."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
        raise TypeError("timeout: must be a number of seconds or None")
    if not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError("timeout: must be a non-negative number of seconds")
    return float(timeout) if timeout < threading.TIMEOUT_MAX else None


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    # Not numpy's byte_bounds: its __array_interface__ grows a buffer on every call for arrays
    # over a memoryview.
    low = high = array.ctypes.data
    for dim, stride in zip(array.shape, array.strides, strict=True):
        reach = (dim - 1) * stride
        if reach < 0:
            low += reach
        else:
            high += reach
    return low, high + array.itemsize


def _lies_in(array: np.ndarray, root: np.ndarray) -> bool:
    """Whether ``array`` is a view inside ``root``'s memory (not a copy, such as a write-back
    temporary, whose base happens to be the root)."""
    if array.flags.owndata or array.flags.writebackifcopy:
        return False
    if array.size == 0:
        return True
    low, high = _byte_bounds(array)
    start, end = _byte_bounds(root)
    return start <= low and high <= end


def foreign_process(what: str, owner: int) -> RuntimeError:
    return RuntimeError(f"the {what} belongs to process {owner}; in this process, attach to it by name")


def _slot_owner_class(nbytes: int) -> type[Any]:
    """The class of one core's slot owners, each the base of one acquired slot's array, as the
    Rust core's ``SlotOwner``: a ctypes array of ``nbytes`` bytes made over the slot's memory
    (numpy builds the array straight from its buffer), whose death, with the last array or view
    of the slot, gives the slot back. It keeps its core (and so the memory) alive. One small
    object per acquire: no weak reference, no memoryview, no lookup table; and no
    ``__array_interface__`` dict for numpy to read on each acquire."""
    namespace = {"__slots__": ("core", "slot", "released"), "__del__": _give_back, "__module__": __name__}
    return type("_SlotOwner", (ctypes.c_char * nbytes,), namespace)


def _give_back(owner: Any) -> None:
    """A slot owner's ``__del__``: its slot is free again (or no longer retained)."""
    core = owner.core
    with core._lock:
        core._free.append(owner.slot)
        core._stats["retained" if owner.released else "in_use"] -= 1
        if core._waiting:
            core._freed.notify()


class SlotPoolCore:
    def __init__(
        self,
        dtype: np.dtype,
        shape: tuple[int, ...],
        *,
        capacity: int,
        on_exhausted: str,
        max_capacity: int | None,
        shm_name: str | None,
    ) -> None:
        if on_exhausted not in ("block", "raise", "grow"):
            raise ValueError("on_exhausted: must be 'block', 'raise' or 'grow'")
        self._dtype, self._shape = dtype, tuple(shape)
        self._items = math.prod(shape)
        self._nbytes = self._items * dtype.itemsize
        self.slot_bytes = _shm.align_up(self._nbytes)
        self._chunk_slots, self._on_exhausted = capacity, on_exhausted
        self._max_slots = max_capacity if max_capacity is not None else math.inf
        self._shm_name, self._owner = shm_name, os.getpid()
        # Re-entrant: a root dying during an allocation made under the lock gives its slot back.
        self._lock = threading.RLock()
        self._freed = threading.Condition(self._lock)
        self._waiting = 0  # acquires waiting for a slot: only then is a freed slot announced
        self._slot_addresses: list[int] = []
        self._owner_class = _slot_owner_class(self._nbytes)  # per core: an owner names its core
        self._chunks: list[Any] = []
        self._free: list[int] = []
        self._next_fresh = self._slots = 0
        keys = ("capacity", "in_use", "retained", "high_water", "acquires", "reuses", "waits", "bytes")
        self._stats = dict.fromkeys(keys, 0)
        self.closed = False
        self._segments: list[str] = []  # shared-memory names of the chunks
        self._add_chunk()
        self._stats["capacity"] = capacity
        weakref.finalize(self, _unlink_owned, self._segments, self._owner)

    def _add_chunk(self) -> None:
        size = self._chunk_slots * self.slot_bytes
        if self._shm_name is not None:
            buffer, segment, token = _shm.create_unique(f"{self._shm_name}-c", size)
            try:
                _shm.write_at(self._shm_name, _shm.CHUNK_TABLE + 8 * len(self._chunks), token.to_bytes(8, "little"))
            except BaseException:
                _shm.unlink(segment)
                raise
            self._segments.append(segment)
            memory = np.frombuffer(buffer, np.uint8)  # keeps the mapping (page-aligned)
        else:
            try:
                memory = np.zeros(size + _shm.ALIGN, np.uint8)
            except MemoryError:
                raise MemoryError(f"out of memory allocating {size} bytes") from None
        self._chunks.append(memory)
        start = memory.ctypes.data + -memory.ctypes.data % _shm.ALIGN
        self._slot_addresses += range(start, start + self._chunk_slots * self.slot_bytes, self.slot_bytes)
        self._slots += self._chunk_slots
        self._stats["bytes"] += size

    def _take(self) -> tuple[int, bool] | None:
        if self.closed:
            raise RuntimeError("the pool is closed")
        if self._shm_name is not None and os.getpid() != self._owner:
            raise foreign_process("pool", self._owner)
        stats = self._stats
        capacity = stats["capacity"]
        if stats["in_use"] >= capacity:
            if self._on_exhausted == "block":
                return None
            if self._on_exhausted == "raise":
                raise PoolExhaustedError(f"all {capacity} slots are in use")
            if capacity >= self._max_slots:
                raise PoolExhaustedError(f"all {capacity} slots are in use and max_capacity is reached")
            stats["capacity"] += int(min(self._chunk_slots, self._max_slots - capacity))  # finite: capacity < max
        if self._free:
            slot, fresh = self._free.pop(), False
        else:
            # Every slot is in use or retained: more memory, not more capacity.
            if self._next_fresh == self._slots:
                self._add_chunk()
            slot, fresh = self._next_fresh, True
            self._next_fresh += 1
        stats["acquires"] += 1
        stats["reuses"] += not fresh
        stats["in_use"] += 1
        stats["high_water"] = max(stats["high_water"], stats["in_use"])
        return slot, fresh

    def _wait(self, timeout: float | None) -> tuple[int, bool]:
        # A lock wait is interrupted by Ctrl-C on the main thread: no need to wake up and look.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stats["waits"] += 1
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise PoolExhaustedError(f"no slot was freed within {timeout!r} s")
            self._waiting += 1
            try:
                self._freed.wait(left)
            finally:
                self._waiting -= 1

    def acquire(self, timeout: float | None = None) -> np.ndarray:
        if timeout is not None:
            timeout = _check_timeout(timeout)
        with self._lock:
            taken = self._take()
            if taken is None:
                taken = self._wait(timeout)
            address = self._slot_addresses[taken[0]]  # the list grows under the lock
        # From here the owner gives the slot back when it dies, even if this fails.
        owner = self._owner_class.from_address(address)
        owner.core, owner.slot, owner.released = self, taken[0], False
        array: np.ndarray = np.ndarray(self._shape, self._dtype, owner)
        if not taken[1]:
            array.fill(0)
        return array

    def _owner_of(self, array: Any, what: str) -> Any:
        """The owner of the slot ``array`` (the array ``acquire`` returned, or a view of it)
        lies in. Only this core's owners are of its owner class."""
        owner: Any = None
        if isinstance(array, np.ndarray):
            base: object = array.base  # numpy's stubs do not know an array may be based on any object
            if type(base) is self._owner_class:  # the array acquire returned
                owner = base
            elif isinstance(base, np.ndarray) and type(base.base) is self._owner_class and _lies_in(array, base):
                owner = base.base  # a view inside the slot's array
        if owner is None:
            raise ValueError(f"{what}: the array was not acquired from this pool")
        if owner.released:
            raise ValueError(f"{what}: the array was already released")
        return owner

    def release(self, array: np.ndarray) -> None:
        with self._lock:
            owner = self._owner_of(array, "release")
            owner.released = True
            array.setflags(write=False)
            base: Any = array.base  # the slot's array when ``array`` is a view of it
            if base is not owner:
                base.setflags(write=False)
            self._stats["in_use"] -= 1
            self._stats["retained"] += 1
            if self._waiting:
                self._freed.notify()

    def slot_of(self, array: np.ndarray) -> int:
        if self.closed:
            raise RuntimeError("the pool is closed")
        slot: int = self._owner_of(array, "slot_of").slot
        return slot

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            _unlink_owned(self._segments, self._owner)
            self._freed.notify_all()


def _unlink_owned(segments: list[str], owner: int) -> None:
    """Removes the names of a core's segments, in the process that created them."""
    if os.getpid() == owner:
        for name in segments:
            _shm.unlink(name)


class _Entry:
    __slots__ = ("meta", "size", "handed_out", "ref", "segment", "public_key")
    ref: weakref.ref[np.ndarray]

    def __init__(self, meta: bytes, size: int, segment: str | None, public_key: str) -> None:
        self.meta, self.size, self.handed_out = meta, size, 1
        self.segment, self.public_key = segment, public_key


class ModelStoreCore:
    def __init__(self, shm_name: str | None = None) -> None:
        self._shm_name, self._owner = shm_name, os.getpid()
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._keys: dict[int, str] = {}

    def intern(self, data: np.ndarray, meta: bytes, header: bytes) -> tuple[np.ndarray, bool]:
        if self._shm_name is not None and os.getpid() != self._owner:
            raise foreign_process("store", self._owner)
        digest = hashlib.blake2b(meta, digest_size=8)
        digest.update(data)  # type: ignore[arg-type]  # numpy's stubs give arrays __buffer__ on 3.12+ only
        base_key = digest.hexdigest()
        with self._lock:
            for n in range(sys.maxsize):
                key = f"{base_key}-{n}" if n else base_key
                entry = self._entries.get(key)
                if entry is None:
                    return self._copy(key, data, meta, header), False
                root = entry.ref()
                if root is not None and entry.meta == meta and np.array_equal(root, data):
                    entry.handed_out += 1
                    return root, True
        raise AssertionError("unreachable")

    def _copy(self, key: str, data: np.ndarray, meta: bytes, header: bytes) -> np.ndarray:
        name, public_key = None, key
        if self._shm_name is not None:
            # An unguessable name: no other user can take it before us.
            segment, name, token = _shm.create_unique(f"{self._shm_name}-", _shm.DATA_OFFSET + data.nbytes)
            public_key = f"{token:016x}"
            segment[: len(header)] = header
            segment[_shm.DATA_OFFSET : _shm.DATA_OFFSET + data.nbytes] = data  # type: ignore[call-overload]  # arrays are buffers; stubs: 3.12+
            view = memoryview(segment)[_shm.DATA_OFFSET : _shm.DATA_OFFSET + data.nbytes].toreadonly()
            root = np.frombuffer(view, np.uint8)
        else:
            root = np.frombuffer(data.tobytes(), np.uint8)
        entry = _Entry(meta, data.nbytes, name, public_key)
        root_id = id(root)

        def forget(_: weakref.ref[np.ndarray]) -> None:
            self._died(key, root_id)

        entry.ref = weakref.ref(root, forget)
        self._entries[key] = entry
        self._keys[id(root)] = key
        return root

    def _died(self, key: str, root_id: int) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None and entry.segment is not None and os.getpid() == self._owner:
                _shm.unlink(entry.segment)
            self._keys.pop(root_id, None)

    def key_of(self, root: Any) -> str | None:
        key = self._keys.get(id(root))
        entry = self._entries.get(key) if key is not None else None
        return entry.public_key if entry is not None and entry.ref() is root else None

    def stats(self) -> dict[str, int]:
        with self._lock:
            live = [e for e in self._entries.values() if e.ref() is not None]
        return {
            "unique": len(live),
            "bytes_held": sum(e.size for e in live),
            "bytes_saved": sum((e.handed_out - 1) * e.size for e in live),
        }

    def close(self) -> None:
        if os.getpid() == self._owner:
            with self._lock:
                for entry in list(self._entries.values()):
                    if entry.segment is not None:
                        _shm.unlink(entry.segment)

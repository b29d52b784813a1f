"""Pure-Python cores of SharedMemoryPool and SharedModelStore, with the Rust cores' behaviour
and messages (``rust/python/memory.rs``).

A slot is handed out as two arrays: a hidden *root* made by ``np.frombuffer`` over the slot's
memoryview, and the caller's array, a view whose base is the root. numpy collapses the base of
every further view to the root, so the root dies with the last array of the slot, and a weak
reference to it gives the slot back. ``release`` detaches one array from the root.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import threading
import time
import weakref
from typing import Any

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy 1.x
    from numpy import byte_bounds

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


def _lies_in(array: np.ndarray, root: np.ndarray) -> bool:
    """Whether ``array`` is a view inside ``root``'s memory (not a copy, such as a write-back
    temporary, whose base happens to be the root)."""
    if array.flags.owndata or array.flags.writebackifcopy:
        return False
    if array.size == 0:
        return True
    low, high = byte_bounds(array)
    start, end = byte_bounds(root)
    return start <= low and high <= end


def refcount(obj: Any) -> int:
    """The reference count of ``obj`` as ``release`` sees an array only the caller holds."""
    return sys.getrefcount(obj)


def foreign_process(what: str, owner: int) -> RuntimeError:
    return RuntimeError(f"the {what} belongs to process {owner}; in this process, attach to it by name")


class _Lease(weakref.ref):
    """A weak reference to a slot's root, with the slot it holds."""

    __slots__ = ("slot", "root_id")


class SlotPoolCore:
    def __init__(
        self,
        dtype: np.dtype,
        shape: tuple[int, ...],
        capacity: int,
        on_exhausted: str,
        max_capacity: int | None,
        shm_name: str | None,
        arg_refs: int = 3,
    ) -> None:
        if on_exhausted not in ("block", "raise", "grow"):
            raise ValueError("on_exhausted: must be 'block', 'raise' or 'grow'")
        self._dtype, self._shape = dtype, tuple(shape)
        self._items = math.prod(shape)
        self._nbytes = self._items * dtype.itemsize
        self.slot_bytes = _shm.align_up(self._nbytes)
        self._chunk_slots, self._on_exhausted = capacity, on_exhausted
        self._max_slots = max_capacity if max_capacity is not None else math.inf
        self._shm_name, self._owner, self._arg_refs = shm_name, os.getpid(), arg_refs
        # Re-entrant: a root dying during an allocation made under the lock gives its slot back.
        self._lock = threading.RLock()
        self._freed = threading.Condition(self._lock)
        self._chunk_views: list[memoryview] = []
        self._chunks: list[Any] = []
        self._free: list[int] = []
        self._next_fresh = 0
        self._leases: dict[int, _Lease] = {}
        self._released: dict[int, weakref.ref] = {}
        self._stats = dict.fromkeys(("capacity", "in_use", "high_water", "acquires", "reuses", "waits", "bytes"), 0)
        self.closed = False
        self._add_chunk(capacity)

    def _add_chunk(self, slots: int) -> None:
        size = slots * self.slot_bytes
        if self._shm_name is not None:
            buffer: Any = _shm.create(f"{self._shm_name}-c{len(self._chunks)}", size)
            view = memoryview(buffer)
        else:
            buffer = np.zeros(size + _shm.ALIGN, np.uint8)
            start = -buffer.ctypes.data % _shm.ALIGN
            view = memoryview(buffer)[start : start + size]
        self._chunks.append(buffer)
        self._chunk_views.append(view)
        self._stats["capacity"] += slots
        self._stats["bytes"] += size

    def _take(self) -> tuple[int, bool] | None:
        if self.closed:
            raise RuntimeError("the pool is closed")
        if self._shm_name is not None and os.getpid() != self._owner:
            raise foreign_process("pool", self._owner)
        stats = self._stats
        if self._free:
            slot, fresh = self._free.pop(), False
        elif self._next_fresh < stats["capacity"]:
            slot, fresh = self._next_fresh, True
            self._next_fresh += 1
        else:
            capacity = stats["capacity"]
            if self._on_exhausted == "block":
                return None
            if self._on_exhausted == "raise":
                raise PoolExhaustedError(f"all {capacity} slots are in use")
            if capacity >= self._max_slots:
                raise PoolExhaustedError(f"all {capacity} slots are in use and max_capacity is reached")
            self._add_chunk(min(self._chunk_slots, self._max_slots - capacity))
            slot, fresh = capacity, True
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
            self._freed.wait(left)

    def acquire(self, timeout: float | None = None) -> np.ndarray:
        timeout = _check_timeout(timeout)
        slot = None
        try:
            with self._lock:
                taken = self._take()
                if taken is None:
                    taken = self._wait(timeout)
            slot, fresh = taken
            chunk, index = divmod(slot, self._chunk_slots)
            root = np.frombuffer(self._chunk_views[chunk], self._dtype, self._items, index * self.slot_bytes)
            if not fresh:
                root.fill(0)
            array = root.reshape(self._shape)
            lease = _Lease(root, self._root_died)
        except BaseException:
            if slot is not None:
                self._give_back(slot)
            raise
        lease.slot, lease.root_id = slot, id(root)
        self._leases[lease.root_id] = lease
        return array

    def _root_died(self, lease: _Lease) -> None:
        if self._leases.get(lease.root_id) is lease:
            del self._leases[lease.root_id]
        self._give_back(lease.slot)

    def _give_back(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)
            self._stats["in_use"] -= 1
            self._freed.notify()

    def _lease_of(self, array: Any, what: str) -> _Lease:
        if isinstance(array, np.ndarray):
            for candidate in (array, array.base):
                ref = self._released.get(id(candidate))
                if ref is not None and ref() is candidate:
                    raise ValueError(f"{what}: the array was already released")
        root = array.base if isinstance(array, np.ndarray) else None
        lease = self._leases.get(id(root))
        if lease is None or lease() is not root or not _lies_in(array, root):
            raise ValueError(f"{what}: the array was not acquired from this pool")
        return lease

    def release(self, array: np.ndarray, held: int = 0) -> None:
        self._lease_of(array, "release")
        if sys.getrefcount(array) <= self._arg_refs + held:
            # Only the caller holds it: detach it from the slot (it becomes read-only zeros of
            # its own) and drop its reference to the root, so the slot comes back as soon as no
            # other view is alive.
            array.__setstate__((1, array.shape, array.dtype, False, bytes(array.nbytes)))
        # Else something else (a memoryview, a subclass view...) holds the array itself: it
        # keeps the root, and the slot comes back with it.
        array.flags.writeable = False
        key = id(array)
        self._released[key] = weakref.ref(array, lambda ref, key=key: self._forget_released(key, ref))

    def _forget_released(self, key: int, ref: weakref.ref) -> None:
        if self._released.get(key) is ref:
            del self._released[key]

    def slot_of(self, array: np.ndarray) -> int:
        if self.closed:
            raise RuntimeError("the pool is closed")
        return self._lease_of(array, "slot_of").slot

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._shm_name is not None and os.getpid() == self._owner:
                for k in range(len(self._chunks)):
                    _shm.unlink(f"{self._shm_name}-c{k}")
            self._freed.notify_all()


class _Entry:
    __slots__ = ("meta", "size", "handed_out", "ref")

    def __init__(self, meta: bytes, size: int) -> None:
        self.meta, self.size, self.handed_out = meta, size, 1


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
        digest.update(data)
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
        if self._shm_name is not None:
            segment = _shm.create(f"{self._shm_name}-{key}", _shm.DATA_OFFSET + data.nbytes)
            segment[: len(header)] = header
            segment[_shm.DATA_OFFSET : _shm.DATA_OFFSET + data.nbytes] = data
            view = memoryview(segment)[_shm.DATA_OFFSET : _shm.DATA_OFFSET + data.nbytes].toreadonly()
            root = np.frombuffer(view, np.uint8)
        else:
            root = np.frombuffer(data.tobytes(), np.uint8)
        entry = _Entry(meta, data.nbytes)
        entry.ref = weakref.ref(root, lambda _, key=key, root_id=id(root): self._died(key, root_id))
        self._entries[key] = entry
        self._keys[id(root)] = key
        return root

    def _died(self, key: str, root_id: int) -> None:
        with self._lock:
            if self._shm_name is not None and os.getpid() == self._owner:
                _shm.unlink(f"{self._shm_name}-{key}")
            self._entries.pop(key, None)
            self._keys.pop(root_id, None)

    def key_of(self, root: Any) -> str | None:
        key = self._keys.get(id(root))
        entry = self._entries.get(key) if key is not None else None
        return key if entry is not None and entry.ref() is root else None

    def stats(self) -> dict[str, int]:
        with self._lock:
            live = [e for e in self._entries.values() if e.ref() is not None]
        return {
            "unique": len(live),
            "bytes_held": sum(e.size for e in live),
            "bytes_saved": sum((e.handed_out - 1) * e.size for e in live),
        }

    def close(self) -> None:
        if self._shm_name is not None and os.getpid() == self._owner:
            with self._lock:
                for key in list(self._entries):
                    _shm.unlink(f"{self._shm_name}-{key}")

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
import sys
import threading
import time
import weakref
from typing import Any

import numpy as np

from ..errors import PoolExhaustedError
from . import _shm

_WAIT_SLICE = 0.05


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError("timeout: must be a non-negative number of seconds")


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
    ) -> None:
        if on_exhausted not in ("block", "raise", "grow"):
            raise ValueError("on_exhausted: must be 'block', 'raise' or 'grow'")
        self._dtype, self._shape = dtype, tuple(shape)
        self._items = math.prod(shape)
        self._nbytes = self._items * dtype.itemsize
        self.slot_bytes = _shm.align_up(self._nbytes)
        self._chunk_slots, self._on_exhausted = capacity, on_exhausted
        self._max_slots = max_capacity if max_capacity is not None else math.inf
        self._shm_name = shm_name
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
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stats["waits"] += 1
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            left = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise PoolExhaustedError(f"no slot was freed within {float(timeout)} s")
            self._freed.wait(min(left, _WAIT_SLICE))

    def acquire(self, timeout: float | None = None) -> np.ndarray:
        _check_timeout(timeout)
        with self._lock:
            taken = self._take()
            if taken is None:
                taken = self._wait(timeout)
        slot, fresh = taken
        try:
            chunk, index = divmod(slot, self._chunk_slots)
            root = np.frombuffer(self._chunk_views[chunk], self._dtype, self._items, index * self.slot_bytes)
            if not fresh:
                root.fill(0)
            array = root.reshape(self._shape)
            lease = _Lease(root, self._root_died)
        except BaseException:
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
        if lease is None or lease() is not root:
            raise ValueError(f"{what}: the array was not acquired from this pool")
        return lease

    def release(self, array: np.ndarray) -> None:
        self._lease_of(array, "release")
        # Detach `array` from the slot: it becomes read-only zeros of its own, and drops its
        # reference to the root, so the slot comes back as soon as no other view is alive.
        array.__setstate__((1, array.shape, array.dtype, False, bytes(array.nbytes)))
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
            if self._shm_name is not None:
                for k in range(len(self._chunks)):
                    _shm.unlink(f"{self._shm_name}-c{k}")
            self._freed.notify_all()


class _Entry:
    __slots__ = ("meta", "size", "handed_out", "ref")

    def __init__(self, meta: bytes, size: int) -> None:
        self.meta, self.size, self.handed_out = meta, size, 1


class ModelStoreCore:
    def __init__(self, shm_name: str | None = None) -> None:
        self._shm_name = shm_name
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._keys: dict[int, str] = {}

    def intern(self, data: np.ndarray, meta: bytes, header: bytes) -> tuple[np.ndarray, bool]:
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
            if self._shm_name is not None:
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
        if self._shm_name is not None:
            with self._lock:
                for key in self._entries:
                    _shm.unlink(f"{self._shm_name}-{key}")

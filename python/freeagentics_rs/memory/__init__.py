"""SharedMemoryPool: pooled numpy buffers handed out zero-copy, never to two holders at once.
SharedModelStore: one read-only copy of each distinct model array. Both can live in POSIX
shared memory, where other processes attach to them by name."""

from __future__ import annotations

import contextlib
import math
import operator
import os
import re
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import _backend, _validate
from .._contracts import ModelStoreCore, SlotPoolCore
from . import _shm
from ._shm import cleanup_orphans

__all__ = ["AttachedPool", "AttachedStore", "SharedMemoryPool", "SharedModelStore", "cleanup_orphans"]

_POLICIES = ("block", "raise", "grow")
_MAX_BYTES = 1 << 62  # per slot
_KEY = re.compile(r"[0-9a-f]{16}(-\d+)?")


def _check_dtype(dtype: Any, argument: str) -> np.dtype[Any]:
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{argument}: {dtype!r} is not a numpy dtype") from None
    if dt.kind not in "biufc":
        raise TypeError(f"{argument}: unsupported dtype {dt}; use a bool, integer, float or complex dtype")
    return dt


def _check_int(value: Any, argument: str, minimum: int) -> int:
    number = _validate.integer(value, argument, minimum=minimum)
    if number > _MAX_BYTES:
        raise ValueError(f"{argument}: must be at most {_MAX_BYTES}, got {number}")
    return number


def _check_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape: must be an int or a tuple of ints, not {type(shape).__name__}") from None
    if not dims or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"shape: must be an int or a non-empty tuple of ints, got {shape!r}")
    if any(d <= 0 for d in dims):
        raise ValueError(f"shape: dimensions must be positive, got {shape!r}")
    return tuple(operator.index(d) for d in dims)


class SharedMemoryPool:
    """A pool of ``capacity`` zero-filled numpy buffers of one ``shape`` and ``dtype``, carved out
    of 64-byte aligned slabs (Rust-owned memory, or a numpy slab on the Python backend).

    ``acquire()`` hands out a writeable array over a free slot, zero-copy and zero-filled. The
    slot comes back when the array and every view of it (slices, reshapes, ``np.asarray``,
    memoryviews, subclass views) are gone. ``release(arr)`` gives its place back early: the slot
    stops counting as in use at once (another ``acquire`` may proceed), and ``arr`` and the
    array ``acquire`` returned become read-only; but the slot's *memory* is reused only when the
    last array, view or memoryview of it is gone (until then it is *retained*, and the pool
    takes new memory if it needs a slot). So memory that anything can still reach is never
    handed out again, and nothing is decided from reference counts. Safe to use from many
    threads.

    ``on_exhausted`` (when ``capacity`` slots are in use): ``"block"`` waits up to the
    ``timeout`` of ``acquire``, ``"raise"`` raises at once, ``"grow"`` adds ``capacity`` slots
    at a time up to ``max_capacity`` (unbounded if ``None``); each then raises
    ``PoolExhaustedError``.

    ``shared=True`` puts the slabs in POSIX shared memory named ``pool.name``: another process
    maps a slot with ``SharedMemoryPool.attach(pool.name).view(pool.slot_of(arr))``. Only the
    creating process hands out slots: in a forked child, ``acquire`` is a ``RuntimeError``.
    """

    _core: SlotPoolCore

    def __init__(
        self,
        shape: int | tuple[int, ...],
        dtype: Any = "float32",
        capacity: int = 100,
        *,
        on_exhausted: str = "block",
        max_capacity: int | None = None,
        shared: bool = False,
        backend: str | None = None,
    ) -> None:
        self.shape = _check_shape(shape)
        self.dtype = _check_dtype(dtype, "dtype")
        capacity = _check_int(capacity, "capacity", 1)
        if not isinstance(on_exhausted, str):
            raise TypeError(f"on_exhausted: must be a str, not {type(on_exhausted).__name__}")
        if on_exhausted not in _POLICIES:
            raise ValueError(f"on_exhausted: must be 'block', 'raise' or 'grow', not {on_exhausted!r}")
        if max_capacity is not None:
            if on_exhausted != "grow":
                raise ValueError("max_capacity: only applies with on_exhausted='grow'")
            max_capacity = _check_int(max_capacity, "max_capacity", capacity)
        shared = _validate.boolean(shared, "shared")
        if math.prod(self.shape) * self.dtype.itemsize > _MAX_BYTES:
            raise ValueError("shape: the buffer would be too large")
        if _shm.align_up(math.prod(self.shape) * self.dtype.itemsize) * capacity > _MAX_BYTES:
            raise ValueError(f"capacity: {capacity} slots would be too large")
        self.on_exhausted = on_exhausted
        self.backend = _backend.resolve(backend)
        core_class = _backend.cores(self.backend).SlotPoolCore
        self.name: str | None = None
        lock_fd = None
        if shared:
            cleanup_orphans()
            slot_bytes = _shm.align_up(math.prod(self.shape) * self.dtype.itemsize)
            header = _shm.header(_shm.KIND_POOL, self.dtype, self.shape, slot_bytes, capacity, max_capacity or 0)
            self.name, lock_fd = _shm.create_named_header(header)
        try:
            core = self._core = core_class(
                self.dtype,
                self.shape,
                capacity=capacity,
                on_exhausted=on_exhausted,
                max_capacity=max_capacity,
                shm_name=self.name,
            )
        except BaseException:
            _close(None, self.name, lock_fd, os.getpid())
            raise
        # The hot methods are the core's own, bound here: no wrapper frame per call. They, and
        # every array handed out, keep the core alive and usable; its names go when it dies.
        self.acquire = core.acquire  # type: ignore[method-assign]  # on purpose, as said above
        self.release = core.release  # type: ignore[method-assign]
        self.slot_of = core.slot_of  # type: ignore[method-assign]
        # A weak reference: at exit the core may still live (then it is closed, its chunk names
        # removed); else its own death removed them.
        self._finalizer = weakref.finalize(core, _close, weakref.ref(core), self.name, lock_fd, os.getpid())

    def acquire(self, timeout: float | None = None) -> np.ndarray:
        """A zero-filled writeable array over a free slot. ``PoolExhaustedError`` when none is
        free (see ``on_exhausted``); ``RuntimeError`` once the pool is closed."""
        return self._core.acquire(timeout)

    # ``array``, not ``arr``: the core's methods bound in ``__init__`` take it by that name.
    def release(self, array: np.ndarray) -> None:
        """Stops ``array``'s slot counting as in use, now; its memory is reused once no array,
        view or memoryview of it is left. ``array`` (and the array ``acquire`` returned) become
        read-only and keep their data. ``ValueError`` if ``array`` is not from this pool or its
        slot was released already."""
        self._core.release(array)

    def slot_of(self, array: np.ndarray) -> int:
        """The index of ``array``'s slot, for ``attach(name).view(slot)`` in another process."""
        return self._core.slot_of(array)

    @contextlib.contextmanager
    def lease(self, timeout: float | None = None) -> Iterator[np.ndarray]:
        """``with pool.lease() as arr:`` acquires, and releases on exit (unless released)."""
        arr = self._core.acquire(timeout)
        try:
            yield arr
        finally:
            with contextlib.suppress(ValueError):  # released in the block already
                self._core.release(arr)

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def capacity(self) -> int:
        return self._core.stats()["capacity"]

    def stats(self) -> dict[str, int]:
        """capacity (the most slots in use at once), in_use, retained (released slots whose
        memory is still referenced), high_water, acquires, reuses (slots handed out again),
        waits (acquires that had to wait) and bytes (slab memory)."""
        return self._core.stats()

    def close(self) -> None:
        """No more acquires. Arrays already handed out stay valid; shared-memory names are
        removed (other processes keep what they mapped). Closing twice is a no-op. Without
        ``close``, the pool closes when neither it, nor a bound method of it, nor any array it
        handed out is left."""
        self._core.close()
        self._finalizer()

    def __enter__(self) -> SharedMemoryPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.capacity} slots"
        return f"<SharedMemoryPool {self.shape} {self.dtype} {state} backend={self.backend!r} name={self.name!r}>"

    @staticmethod
    def attach(name: str) -> AttachedPool:
        """The pool ``name`` (created with ``shared=True``, maybe in another process)."""
        return AttachedPool(name)


def _close(core: Any, name: str | None, lock_fd: int | None, owner: int) -> None:
    """Closes a core (or the core a weak reference still reaches) and, in the process that
    created them, removes the shared names (a forked child leaves its parent's alone)."""
    if isinstance(core, weakref.ref):
        core = core()
    if core is not None:
        core.close()
    if name is not None and os.getpid() == owner:
        _shm.unlink(name)
    if lock_fd is not None:
        os.close(lock_fd)


def _open(name: object, kind: int) -> Any:  # name: whatever the caller passed
    if not isinstance(name, str) or not _shm._NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} is not the name of a shared pool or store")
    try:
        return _shm.open_segment(name, writable=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no shared {_shm._KINDS[kind]} named {name!r}") from None


class AttachedPool:
    """Another process's view of a shared ``SharedMemoryPool``: ``view(slot)`` maps that slot's
    memory (writeable, zero-copy; writes are seen by every process)."""

    def __init__(self, name: str) -> None:
        with _open(name, _shm.KIND_POOL) as segment:
            self.dtype, self.shape, self._slot_bytes, self._chunk_slots, self._max_slots = _shm.parse_header(
                segment, name, _shm.KIND_POOL
            )
        self.name = name
        self._chunks: dict[int, Any] = {}

    def view(self, slot: int) -> np.ndarray:
        slot = _check_int(slot, "slot", 0)
        chunk = slot // self._chunk_slots
        segment = self._chunks.get(chunk)
        if segment is None:
            with _open(self.name, _shm.KIND_POOL) as header:  # its chunk table grows
                chunk_name = _shm.chunk_name(self.name, header, chunk)
            try:
                if chunk_name is None:
                    raise FileNotFoundError(chunk_name)
                segment = _shm.open_segment(chunk_name, writable=True)
            except FileNotFoundError:
                raise ValueError(f"slot: {slot} is not allocated in pool {self.name!r}") from None
            self._chunks[chunk] = segment
        offset = slot % self._chunk_slots * self._slot_bytes
        if offset + self._slot_bytes > len(segment):
            raise ValueError(f"slot: {slot} is not allocated in pool {self.name!r}")
        return np.frombuffer(segment, self.dtype, math.prod(self.shape), offset).reshape(self.shape)

    def close(self) -> None:
        """Forgets the mappings; arrays from ``view`` keep theirs alive."""
        self._chunks.clear()

    def __enter__(self) -> AttachedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SharedModelStore:
    """Keeps one read-only copy of each distinct array: ``intern`` returns a read-only view of
    the held copy of any array with the same dtype, shape and bytes (the same array object while
    it lives), so agents built from the same model share its memory. A copy is freed when no
    array of it is alive. Safe to use from many threads.

    ``shared=True`` keeps the copies in POSIX shared memory: another process gets a read-only
    view with ``SharedModelStore.attach(store.name).get(store.key_of(arr))``.
    """

    _core: ModelStoreCore

    def __init__(self, *, shared: bool = False, backend: str | None = None) -> None:
        shared = _validate.boolean(shared, "shared")
        self.backend = _backend.resolve(backend)
        self.name: str | None = None
        lock_fd = None
        if shared:
            cleanup_orphans()
            self.name, lock_fd = _shm.create_named_header(_shm.header(_shm.KIND_STORE, np.dtype(np.uint8), ()))
        self._core = _backend.cores(self.backend).ModelStoreCore(self.name)
        self._arrays: dict[str, weakref.ref[np.ndarray]] = {}
        self.closed = False
        self._finalizer = weakref.finalize(self, _close, self._core, self.name, lock_fd, os.getpid())

    def intern(self, array: Any) -> np.ndarray:
        """A read-only array equal to ``array`` (same dtype and shape), sharing memory with every
        other interned array of the same content."""
        if self.closed:
            raise RuntimeError("the store is closed")
        a = np.asarray(array)
        dtype = _check_dtype(a.dtype, "array")
        a = a if a.flags.c_contiguous else a.copy(order="C")
        meta = f"{dtype.str}|{a.shape}".encode()
        header = b""
        if self.name is not None:
            header = _shm.header(_shm.KIND_ENTRY, dtype, a.shape, a.nbytes, _shm.DATA_OFFSET)
        root, hit = self._core.intern(a.reshape(-1).view(np.uint8), meta, header)
        key = self._core.key_of(root)
        assert key is not None  # the root was just interned
        # Repeated interns return the same array object while it lives: an agent holding the
        # model then costs one reference per array, not one array object.
        known = self._arrays.get(key) if hit else None
        arr = known() if known is not None else None
        if arr is None:
            arr = root.view(dtype).reshape(a.shape)

            def forget(ref: weakref.ref[np.ndarray]) -> None:
                self._forget(key, ref)

            self._arrays[key] = weakref.ref(arr, forget)
        return arr

    def _forget(self, key: str, ref: weakref.ref[np.ndarray]) -> None:
        if self._arrays.get(key) is ref:
            del self._arrays[key]

    def intern_many(self, arrays: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
        """``{name: intern(array)}`` for every item of ``arrays``."""
        return {key: self.intern(value) for key, value in arrays.items()}

    def key_of(self, arr: np.ndarray) -> str:
        """The key of an interned array (the array ``intern`` returned, not a view or slice of
        it), for ``attach(name).get(key)`` in another process."""
        candidate: object = arr  # callers may pass anything
        root = candidate.base if isinstance(candidate, np.ndarray) else None
        key = self._core.key_of(root) if isinstance(root, np.ndarray) else None
        known = self._arrays.get(key) if key is not None else None
        if key is None or known is None or known() is not arr:
            raise ValueError("key_of: the array was not interned by this store")
        return key

    def stats(self) -> dict[str, int]:
        """unique (distinct arrays held), bytes_held, bytes_saved (bytes the repeated interns of
        the held arrays would have taken as copies)."""
        return self._core.stats()

    def close(self) -> None:
        """No more interning; shared-memory names are removed, interned arrays stay valid."""
        self.closed = True
        self._finalizer()

    def __enter__(self) -> SharedModelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def attach(name: str) -> AttachedStore:
        """The store ``name`` (created with ``shared=True``, maybe in another process)."""
        return AttachedStore(name)


class AttachedStore:
    """Another process's view of a shared ``SharedModelStore``."""

    def __init__(self, name: str) -> None:
        with _open(name, _shm.KIND_STORE) as segment:
            _shm.parse_header(segment, name, _shm.KIND_STORE)
        self.name = name

    def get(self, key: str) -> np.ndarray:
        """A read-only view of the interned array ``key`` (``KeyError`` if the store does not
        hold it, or no longer)."""
        candidate: object = key  # callers may pass anything
        if not isinstance(candidate, str) or not _KEY.fullmatch(candidate):
            raise KeyError(key)
        segment_name = f"{self.name}-{key}"
        try:
            segment = _shm.open_segment(segment_name, writable=False)
        except FileNotFoundError:
            raise KeyError(key) from None
        dtype, shape, nbytes, offset, _ = _shm.parse_header(segment, segment_name, _shm.KIND_ENTRY)
        return np.frombuffer(segment, dtype, nbytes // dtype.itemsize, offset).reshape(shape)

"""SharedModelStore on both backends, and both shared-memory objects across processes: interning
identity and read-only enforcement, lifetimes, cross-process visibility, and no /dev/shm
leftovers after close, at exit, or after the owner was killed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from freeagentics_rs import SharedMemoryPool, SharedModelStore
from freeagentics_rs.memory import cleanup_orphans
from helpers import run_python

needs_shm = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")


def segments(name: str) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n == name or n.startswith(name + "-"))


@pytest.fixture
def store(backend):
    with SharedModelStore(backend=backend) as store:
        yield store


def test_equal_arrays_share_one_read_only_copy(store, backend):
    assert store.backend == backend and store.name is None
    rng = np.random.default_rng(0)
    B = rng.random((100, 100, 5)).astype(np.float32)
    first, second = store.intern(B), store.intern(B.copy())
    assert first is second and not np.shares_memory(first, B)  # the same object while it lives
    assert first.dtype == np.float32 and first.shape == (100, 100, 5) and np.array_equal(first, B)
    assert not first.flags.writeable and first.ctypes.data % 64 == 0 or backend == "python"
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0] = 1
    for array in (first, first.base, first[1:]):
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
            array.flags.writeable = True
    assert store.stats() == {"unique": 1, "bytes_held": B.nbytes, "bytes_saved": B.nbytes}
    assert store.key_of(first) == store.key_of(second)


def test_dtype_shape_and_bytes_all_matter(store):
    a = np.arange(6, dtype=np.int64)
    variants = [a, a.astype(np.float64), a.reshape(2, 3), a.view(np.float64), a + 1]
    interned = [store.intern(v) for v in variants]
    for v, i in zip(variants, interned, strict=True):
        assert i.dtype == v.dtype and i.shape == v.shape and np.array_equal(i, v, equal_nan=True)
    assert len({i.ctypes.data for i in interned}) == 5 and store.stats()["unique"] == 5


def test_non_contiguous_scalar_and_empty_inputs(store):
    a = np.arange(20.0).reshape(4, 5)
    assert np.array_equal(store.intern(a[:, ::2]), a[:, ::2])
    assert store.intern(np.float64(3.5)).shape == () and store.intern(3.5) == 3.5
    empty = store.intern(np.zeros((0, 3)))
    assert empty.shape == (0, 3) and store.intern([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]


def test_copies_are_freed_with_their_last_view(store):
    a = store.intern(np.ones(1000))
    b = store.intern(np.ones(1000))[10:]
    del a
    assert store.stats()["unique"] == 1
    del b
    assert store.stats() == {"unique": 0, "bytes_held": 0, "bytes_saved": 0}
    c = store.intern(np.ones(1000))  # interned afresh
    assert store.stats() == {"unique": 1, "bytes_held": 8000, "bytes_saved": 0} and c.sum() == 1000


def test_intern_many_and_errors(store):
    model = {"A": np.eye(3), "B": np.eye(3), "C": np.zeros(3)}
    interned = store.intern_many(model)
    assert list(interned) == ["A", "B", "C"] and np.shares_memory(interned["A"], interned["B"])
    with pytest.raises(TypeError, match="^array: unsupported dtype object"):
        store.intern(np.array([None]))
    for foreign in (np.eye(3), interned["A"].copy(), "x"):
        with pytest.raises(ValueError, match="^key_of: the array was not interned by this store$"):
            store.key_of(foreign)
    store.close()
    with pytest.raises(RuntimeError, match="^the store is closed$"):
        store.intern(np.eye(3))
    assert np.array_equal(interned["A"], np.eye(3))


def test_stores_do_not_share_entries(backend):
    with SharedModelStore(backend=backend) as one, SharedModelStore(backend=backend) as two:
        a, b = one.intern(np.eye(4)), two.intern(np.eye(4))
        assert not np.shares_memory(a, b)
        with pytest.raises(ValueError):
            one.key_of(b)


@needs_shm
def test_a_child_process_writes_into_a_slot_the_parent_sees(backend):
    other = "python" if backend == "rust" else "rust"
    with SharedMemoryPool((4, 5), "float64", capacity=2, on_exhausted="grow", shared=True, backend=backend) as pool:
        kept = [pool.acquire() for _ in range(3)]  # slot 2 lies in a second chunk
        a = kept[2]
        chunks = [n for n in segments(pool.name) if n != pool.name]
        assert len(chunks) == 2 and all(stat.S_IMODE(os.stat(f"/dev/shm/{n}").st_mode) == 0o600 for n in chunks)
        child = run_python(
            f"""
            import numpy as np
            from freeagentics_rs import SharedMemoryPool
            with SharedMemoryPool.attach({pool.name!r}) as pool:
                view = pool.view({pool.slot_of(a)})
                assert view.shape == (4, 5) and view.dtype == np.float64 and not view.any()
                view[:] = np.arange(20).reshape(4, 5)
            """,
            backend=other,
        )
        assert child.returncode == 0, child.stderr
        assert np.array_equal(a, np.arange(20.0).reshape(4, 5))
        attached = SharedMemoryPool.attach(pool.name)
        with pytest.raises(ValueError, match="^slot: 5 is not allocated in pool"):
            attached.view(5)
        with pytest.raises(ValueError, match="^slot: must be at least 0, got -1$"):
            attached.view(-1)
    assert segments(pool.name) == []


@needs_shm
def test_a_child_process_reads_interned_arrays_without_a_copy(backend):
    with SharedModelStore(shared=True, backend=backend) as store:
        B = store.intern(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
        key = store.key_of(B)
        child = run_python(
            f"""
            import numpy as np
            from freeagentics_rs import SharedModelStore
            store = SharedModelStore.attach({store.name!r})
            B = store.get({key!r})
            assert B.dtype == np.float32 and B.shape == (3, 4, 5) and not B.flags.writeable
            print(B.sum())
            try:
                store.get("0000000000000000")
            except KeyError:
                print("missing")
            """
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.split() == ["1770.0", "missing"]
        assert segments(store.name) == sorted([store.name, f"{store.name}-{key}"])
        del B
        assert segments(store.name) == [store.name]  # the last view died: the segment went
    assert segments(store.name) == []


@needs_shm
def test_attach_errors(backend):
    with pytest.raises(FileNotFoundError, match="no shared pool named 'fars-1-abcdefabcdef'"):
        SharedMemoryPool.attach("fars-1-abcdefabcdef")
    with pytest.raises(ValueError, match="^name: '../etc' is not the name of a shared pool or store$"):
        SharedModelStore.attach("../etc")
    with SharedModelStore(shared=True, backend=backend) as store:
        with pytest.raises(ValueError, match="is not a freeagentics_rs pool"):
            SharedMemoryPool.attach(store.name)
        with pytest.raises(KeyError):
            SharedModelStore.attach(store.name).get("../x")


@needs_shm
def test_nothing_is_left_in_dev_shm_after_exit_without_close(backend):
    child = run_python(
        """
        import numpy as np
        from freeagentics_rs import SharedMemoryPool, SharedModelStore
        pool = SharedMemoryPool(8, capacity=2, shared=True)
        store = SharedModelStore(shared=True)
        kept = pool.acquire(), store.intern(np.eye(3))
        print(pool.name, store.name)
        """,
        backend=backend,
    )
    assert child.returncode == 0, child.stderr
    for name in child.stdout.split():
        assert segments(name) == []


@needs_shm
def test_segments_of_a_killed_owner_are_removed_by_the_next_start_up(backend):
    code = """
        import sys, time
        import numpy as np
        from freeagentics_rs import SharedMemoryPool, SharedModelStore
        pool = SharedMemoryPool(8, capacity=2, shared=True)
        store = SharedModelStore(shared=True)
        kept = pool.acquire(), store.intern(np.eye(3))
        print(pool.name, store.name, flush=True)
        time.sleep(60)
        """
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=backend)

    def killed_owner() -> list[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=env
        )
        names = child.stdout.readline().split()
        child.kill()
        child.wait()
        child.stdout.close()
        assert len(names) == 2 and all(segments(name) for name in names)
        return names

    names = killed_owner()
    with SharedMemoryPool(8, shared=True, backend=backend):  # start-up cleans up
        assert [segments(name) for name in names] == [[], []]
    # cleanup_orphans on its own; a live process's segments are kept
    with SharedModelStore(shared=True, backend=backend) as mine:
        mine_kept = mine.intern(np.eye(2))
        names = killed_owner()
        orphans = {segment for name in names for segment in segments(name)}
        assert orphans <= set(cleanup_orphans())
        assert [segments(name) for name in names] == [[], []]
        assert len(segments(mine.name)) == 2 and mine_kept.sum() == 2


@needs_shm
def test_a_forked_child_leaves_shared_objects_to_their_owner(backend):
    pool = SharedMemoryPool(4, "int64", capacity=2, shared=True, backend=backend)
    store = SharedModelStore(shared=True, backend=backend)
    kept = pool.acquire(), store.intern(np.eye(2))
    pid = os.fork()
    if pid == 0:  # the child: no slots, no interning, no removing the parent's names
        code = 0
        try:
            pool.acquire()
            code = 3
        except RuntimeError as e:
            code = (
                0
                if str(e) == f"the pool belongs to process {os.getppid()}; in this process, attach to it by name"
                else 4
            )
        try:
            store.intern(np.ones(3))
            code = code or 5
        except RuntimeError:
            pass
        pool.close()
        store.close()
        del kept
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(segments(pool.name)) == 2 and len(segments(store.name)) == 2
    a, b = pool.acquire(), store.intern(np.ones(3))  # the parent goes on
    assert not a.any() and b.sum() == 3
    pool.close()
    store.close()
    assert segments(pool.name) == [] and segments(store.name) == [] or kept is None


@needs_shm
def test_names_of_chunks_and_entries_cannot_be_taken_in_advance(backend):
    """Issue 14, item 3: chunk and entry names followed from the base name, so another user
    could create them first and growth or interning failed with FileExistsError."""
    from freeagentics_rs.memory import _shm

    model = np.arange(6.0)
    guessed = []
    try:
        with SharedMemoryPool(4, capacity=1, on_exhausted="grow", shared=True, backend=backend) as pool:
            with SharedModelStore(shared=True, backend=backend) as store:
                plain = SharedModelStore(backend=backend)  # its key is the content hash: a guess
                hash_key = plain.key_of(plain.intern(model))
                for name in [f"{pool.name}-c{k}" for k in range(4)] + [f"{store.name}-{hash_key}"]:
                    _shm.create(name, 64).close()
                    guessed.append(name)
                kept = [pool.acquire() for _ in range(4)]  # grows into three new chunks
                interned = store.intern(model)
                assert np.array_equal(interned, model) and len(kept) == 4
                assert len(segments(pool.name)) == 1 + 4 + 4 and len(segments(store.name)) == 1 + 1 + 1
                key = store.key_of(interned)
                assert key != hash_key and np.array_equal(SharedModelStore.attach(store.name).get(key), model)
                assert (SharedMemoryPool.attach(pool.name).view(3) == 0).all()
    finally:
        for name in guessed:
            _shm.unlink(name)


def _forge(name: str, data: bytes, mode: int = 0o600, uid: int | None = None) -> None:
    from freeagentics_rs.memory import _shm

    fd = _shm._create_fd(name, max(len(data), 1))
    try:
        os.pwrite(fd, data, 0)
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, -1)
    finally:
        os.close(fd)


@needs_shm
def test_attach_refuses_segments_of_other_users_or_other_modes(backend):
    """Issue 14, item 3: attach mapped any segment of the name, whoever made it."""
    from freeagentics_rs.memory import _shm

    with SharedMemoryPool(4, capacity=1, shared=True, backend=backend) as pool:
        header = _shm.open_segment(pool.name, writable=False)[: _shm.HEADER.size]
    cases = [(0o644, None), (0o666, None)] + ([(0o600, os.geteuid() + 4242)] if os.geteuid() == 0 else [])
    for mode, uid in cases:
        name = _shm.new_name()
        _forge(name, header, mode, uid)
        try:
            with pytest.raises(PermissionError, match=f"shared memory '{name}' is not this user's own with mode 0600"):
                SharedMemoryPool.attach(name)
        finally:
            _shm.unlink(name)


@needs_shm
def test_attaching_truncated_or_garbage_segments_is_a_value_error_naming_them(backend):
    """Issue 14, item 4: struct.error, TypeError or ZeroDivisionError before."""
    from freeagentics_rs.memory import _shm

    good = _shm.header(_shm.KIND_POOL, np.dtype("f8"), (4,), 64, 2, 0)
    garbage = [
        b"",
        b"garbage",
        good[:100],
        _shm.header(_shm.KIND_POOL, np.dtype("f8"), (4,), 64, 0, 0),  # no slots per chunk
        _shm.header(_shm.KIND_POOL, np.dtype("f8"), (4,), 8, 2, 0),  # slots too small
        good.replace(b"<f8", b"\xff\xfe"),
        good.replace(b"<f8", b"O\0\0"),
    ]
    for data in garbage:
        name = _shm.new_name()
        _forge(name, data)
        try:
            with pytest.raises(ValueError, match=name):
                SharedMemoryPool.attach(name).view(0)
        finally:
            _shm.unlink(name)
    with SharedModelStore(shared=True, backend=backend) as store:
        attached = SharedModelStore.attach(store.name)
        entry = _shm.header(_shm.KIND_ENTRY, np.dtype("f8"), (100,), 800, _shm.DATA_OFFSET)
        for data in (b"x" * 10, entry, entry[:50]):  # truncated: the data is missing
            key = "%016x" % (len(data) + 1)
            _forge(f"{store.name}-{key}", data)
            try:
                with pytest.raises(ValueError, match=f"{store.name}-{key}"):
                    attached.get(key)
            finally:
                _shm.unlink(f"{store.name}-{key}")


def test_key_of_refuses_views_and_slices_of_interned_arrays(backend):
    """Issue 14, item 7: a slice of an interned array got the whole array's key."""
    store = SharedModelStore(backend=backend)
    arr = store.intern(np.arange(12.0).reshape(3, 4))
    key = store.key_of(arr)
    for view in (arr[1:], arr[:, 1], arr.reshape(12), arr.T, arr[...]):
        with pytest.raises(ValueError, match="^key_of: the array was not interned by this store$"):
            store.key_of(view)
    assert store.key_of(arr) == key


@needs_shm
def test_nothing_is_left_in_dev_shm_at_exit_while_arrays_outlive_the_interpreter(backend):
    child = run_python(
        """
        import ctypes
        from freeagentics_rs import SharedMemoryPool
        pool = SharedMemoryPool(8, capacity=1, on_exhausted="grow", shared=True)
        leaked = [pool.acquire(), pool.acquire()]
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(leaked))  # never freed: the core never dies
        print(pool.name)
        del pool
        """,
        backend=backend,
    )
    assert child.returncode == 0, child.stderr
    assert segments(child.stdout.strip()) == []

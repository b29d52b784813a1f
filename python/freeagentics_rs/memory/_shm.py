"""POSIX shared memory as both backends lay it out, so either can attach to the other's.

A shared pool or store is named ``fars-<pid>-<token>``. The segment of that name holds a header
(dtype, shape, layout), locked (flock) by the owner while it lives; a pool's chunk ``k`` is
``<name>-c<token>``, its random token listed in the header segment at ``CHUNK_TABLE + 8 * k``; a
store's array with key ``k`` (a random token) is ``<name>-<k>``: a header, then the data at the
offset the header gives. Every token is drawn at random, again if the name is taken, so no other
user can create a segment before its owner does. Segments are created owner-only (0600), and
attaching refuses any other (``PermissionError``) and any malformed one (``ValueError``).
"""

from __future__ import annotations

import errno
import fcntl
import math
import mmap
import os
import re
import secrets
import stat
import struct
import time
from typing import Any

import numpy as np

try:
    import _posixshmem  # type: ignore[import-not-found]  # CPython's private module has no stub
except ImportError:  # not a POSIX system: no shared memory
    _posixshmem = None

__all__ = ["cleanup_orphans"]

ALIGN = 64
MAX_DIMS = 32
KIND_POOL, KIND_STORE, KIND_ENTRY = 1, 2, 3
# magic, kind, dtype.str, ndim, dims, then three numbers whose meaning depends on the kind:
# pool: slot bytes, slots per chunk, max slots (0: unbounded); entry: data bytes, data offset.
HEADER = struct.Struct(f"<8sI16sI{MAX_DIMS}QQQQ")
MAGIC = b"FARSSHM1"
_NAME = re.compile(r"fars-(\d+)-[0-9a-f]{12}")
_SHM_DIR = "/dev/shm"


def align_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


DATA_OFFSET = align_up(HEADER.size)
CHUNK_TABLE = 4096  # rust/core/memory/slots.rs: CHUNK_TABLE
_ATTEMPTS = 64


def new_name() -> str:
    if _posixshmem is None:
        raise OSError("shared=True needs POSIX shared memory, which this platform lacks")
    return f"fars-{os.getpid()}-{secrets.token_hex(6)}"


def _token() -> int:
    return secrets.randbits(64) or 1


def create_unique(prefix: str, size: int) -> tuple[mmap.mmap, str, int]:
    """Creates and maps a segment ``{prefix}{token:016x}`` for a fresh random token, drawing
    again when the name is taken: ``(mapping, name, token)``."""
    for _ in range(_ATTEMPTS):
        token = _token()
        name = f"{prefix}{token:016x}"
        try:
            return create(name, size), name, token
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"cannot create shared memory {prefix}*: every name drawn was taken")


def write_at(name: str, offset: int, data: bytes) -> None:
    """Writes ``data`` at ``offset`` of this user's existing segment ``name``."""
    fd = _posixshmem.shm_open(f"/{name}", os.O_RDWR, mode=0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def chunk_name(pool: str, header_segment: Any, k: int) -> str | None:
    """The name of chunk ``k`` of the shared pool ``pool`` (None if it has no such chunk)."""
    at = CHUNK_TABLE + 8 * k
    if at + 8 > len(header_segment):
        return None
    token = int.from_bytes(header_segment[at : at + 8], "little")
    return f"{pool}-c{token:016x}" if token else None


def header(kind: int, dtype: np.dtype, shape: tuple[int, ...], a: int = 0, b: int = 0, c: int = 0) -> bytes:
    if len(shape) > MAX_DIMS:
        raise ValueError(f"shape: shared arrays have at most {MAX_DIMS} dimensions")
    dims = list(shape) + [0] * (MAX_DIMS - len(shape))
    return HEADER.pack(MAGIC, kind, dtype.str.encode(), len(shape), *dims, a, b, c)


def parse_header(buffer: Any, name: str, kind: int) -> tuple[np.dtype, tuple[int, ...], int, int, int]:
    """The header of segment ``name``, checked: ``ValueError`` naming the segment if it is
    not a well-formed one of ``kind``."""
    what = f"shared memory {name!r} is not a freeagentics_rs {_KINDS[kind]}"
    if len(buffer) < HEADER.size:
        raise ValueError(f"{what}: it is truncated ({len(buffer)} bytes)")
    fields = HEADER.unpack_from(buffer)
    if fields[0] != MAGIC or fields[1] != kind:
        raise ValueError(what)
    ndim = fields[3]
    try:
        dtype = np.dtype(fields[2].rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError):
        raise ValueError(f"{what}: its dtype is malformed") from None
    shape = tuple(fields[4 : 4 + ndim])
    if dtype.kind not in "biufc" or ndim > MAX_DIMS or (kind == KIND_POOL and (not shape or 0 in shape)):
        raise ValueError(f"{what}: its dtype or shape is malformed")
    a, b, c = fields[4 + MAX_DIMS :]
    nbytes = math.prod(shape) * dtype.itemsize
    if kind == KIND_POOL and (a < nbytes or a % ALIGN or b < 1 or b > 1 << 40 or a * b > 1 << 62):
        raise ValueError(f"{what}: its slot layout is malformed")
    if kind == KIND_ENTRY and (a != nbytes or b < HEADER.size or b + a > len(buffer)):
        raise ValueError(f"{what}: its data layout is malformed or truncated")
    return dtype, shape, a, b, c


_KINDS = {KIND_POOL: "pool", KIND_STORE: "model store", KIND_ENTRY: "model store entry"}


def _create_fd(name: str, size: int) -> int:
    fd: int = _posixshmem.shm_open(f"/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, max(size, 1))
        # Reserve the pages now: on a full /dev/shm the first write to an unreserved page would
        # kill the process with SIGBUS. (Filesystems without fallocate stay lazy.)
        try:
            os.posix_fallocate(fd, 0, max(size, 1))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(
                    e.errno, f"cannot reserve {max(size, 1)} bytes of shared memory {name}: no space left"
                ) from None
    except BaseException:
        os.close(fd)
        _posixshmem.shm_unlink(f"/{name}")
        raise
    return fd


def create(name: str, size: int) -> mmap.mmap:
    """Creates the segment ``name`` (it must not exist), 0600, zero-filled, and maps it."""
    fd = _create_fd(name, size)
    try:
        return mmap.mmap(fd, max(size, 1))
    finally:
        os.close(fd)


def open_segment(name: str, *, writable: bool) -> mmap.mmap:
    """Maps an existing segment (``FileNotFoundError`` if there is none). Only this user's
    segments of mode 0600 are mapped (``PermissionError``): another user's could change under
    us or hand us their data; an empty one is a ``ValueError``."""
    if _posixshmem is None:
        raise FileNotFoundError(name)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_NOFOLLOW", 0)
    fd = _posixshmem.shm_open(f"/{name}", flags, mode=0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) != 0o600:
            raise PermissionError(
                errno.EPERM, f"shared memory {name!r} is not this user's own with mode 0600; refusing to map it"
            )
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            raise ValueError(f"shared memory {name!r} is empty or not a memory segment")
        return mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    finally:
        os.close(fd)


def unlink(name: str) -> bool:
    try:
        _posixshmem.shm_unlink(f"/{name}")
    except (OSError, AttributeError):  # gone already, or another user's
        return False
    return True


def create_named_header(data: bytes) -> tuple[str, int]:
    """A new random name and its header segment (``create_header_segment``), drawing again
    when the name is taken."""
    for _ in range(_ATTEMPTS):
        name = new_name()
        try:
            return name, create_header_segment(name, data)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot create shared memory: every name drawn was taken")


def create_header_segment(name: str, data: bytes) -> int:
    """Creates the header segment ``name`` and returns an open descriptor of it holding an
    exclusive lock: the owner keeps it while the pool or store lives, and ``cleanup_orphans``
    takes a segment group for an orphan only when it can take that lock."""
    fd = _create_fd(name, len(data))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, data, 0)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_YOUNG = 2.0  # seconds: a header this new may not be locked by its owner yet


def _orphaned(group: str, members: list[str]) -> bool:
    """Whether the pool or store ``group`` has no owner left: its header's lock is free (the
    owner holds it for its lifetime; it works across PID namespaces). Without a header, the
    owner died while creating it: fall back to its pid."""
    match = _NAME.match(group)
    assert match is not None  # cleanup_orphans groups only names that match
    pid_alive = _alive(int(match.group(1)))
    if group not in members:
        return not pid_alive
    try:
        fd = _posixshmem.shm_open(f"/{group}", os.O_RDONLY, mode=0o600)
    except OSError:  # gone meanwhile, or another user's
        return False
    try:
        if pid_alive and time.time() - os.fstat(fd).st_ctime < _YOUNG:
            return False  # maybe created a moment ago and not locked yet
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # locked: the owner lives
        return False
    finally:
        os.close(fd)


def cleanup_orphans() -> list[str]:
    """Removes the shared-memory segments of pools and stores whose owner is gone (killed
    before it could close them) and returns their names. Pools and stores created with
    ``shared=True`` run it on start-up. Only this user's segments can be removed."""
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return []
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        match = _NAME.match(name)
        if match:
            groups.setdefault(match.group(0), []).append(name)
    removed = []
    for group, members in groups.items():
        if _orphaned(group, members):
            removed += [name for name in members if unlink(name)]
    return removed

"""The backend toggle: the one place that decides between the Rust core and the Python fallback.

``FREEAGENTICS_RS_BACKEND`` = ``auto`` (default: Rust if the extension imports, else Python),
``rust`` (the extension must import) or ``python`` (never import it). Every constructor also
takes ``backend=`` to override the choice for one object.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._contracts import Cores, ModelStoreCoreClass, PoolCoreClass, RegistryCoreClass, SlotPoolCoreClass

__all__ = ["BACKEND", "BACKENDS", "resolve", "native", "cores"]

BACKENDS = ("auto", "rust", "python")
_BUILD_HINT = (
    "the freeagentics_rs Rust extension is not built; build it with `make build` "
    "(or `maturin develop --release`), or use backend='python'"
)


def _check_name(name: object, source: str) -> str:
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} in {source}; valid backends: auto, rust, python")
    return name.lower()


def _import_native() -> ModuleType:
    try:
        from freeagentics_rs import _native
    except ImportError as e:
        raise ImportError(_BUILD_HINT) from e
    return _native


def _choose(name: str) -> str:
    if name == "python":
        return "python"
    if name == "rust":
        _import_native()
        return "rust"
    try:
        _import_native()
    except ImportError:
        return "python"
    return "rust"


BACKEND: str = _choose(_check_name(os.environ.get("FREEAGENTICS_RS_BACKEND", "auto"), "FREEAGENTICS_RS_BACKEND"))


def resolve(backend: str | None) -> str:
    """The backend an object uses: its ``backend=`` argument, else the process-wide choice."""
    if backend is None:
        return BACKEND
    return _choose(_check_name(backend, "backend="))


def native() -> ModuleType:
    """The compiled extension (``ImportError`` with build instructions when it is missing)."""
    return _import_native()


def cores(backend: str) -> Cores:
    """The core classes of ``backend`` (``"rust"`` or ``"python"``, as ``resolve`` returns it),
    by their names in ``_native``: ``cores(self.backend).AgentRegistryCore(num_shards)``. Typed
    as ``_contracts.Cores``, so mypy checks both backends' classes against the contract."""
    if backend == "rust":
        _import_native()  # the ImportError with build instructions
        from . import _native

        return _native
    return _PYTHON_CORES


class _PythonCores:
    """The pure-Python twins, imported when first asked for (a registry needs no pool code)."""

    @property
    def WorkStealingCore(self) -> PoolCoreClass:
        from .executor import _py

        return _py.WorkStealingCore

    @property
    def AgentRegistryCore(self) -> RegistryCoreClass:
        from .registry import _py

        return _py.AgentRegistryCore

    @property
    def SlotPoolCore(self) -> SlotPoolCoreClass:
        from .memory import _py

        return _py.SlotPoolCore

    @property
    def ModelStoreCore(self) -> ModelStoreCoreClass:
        from .memory import _py

        return _py.ModelStoreCore


_PYTHON_CORES = _PythonCores()

"""The agent API on a Dask cluster: ``DistributedPopulation`` keeps shards of a population on
the workers across steps, and ``executor(client)`` runs callables there in chunks. Needs the
optional extra: ``pip install 'freeagentics_rs[distributed]'``."""

import importlib

try:
    importlib.import_module("distributed")
except ImportError as e:
    raise ImportError(
        "freeagentics_rs.distributed needs Dask distributed: pip install 'freeagentics_rs[distributed]'"
    ) from e

from ._executor import DaskExecutor, executor
from ._population import DistributedPopulation

__all__ = ["DaskExecutor", "DistributedPopulation", "executor"]

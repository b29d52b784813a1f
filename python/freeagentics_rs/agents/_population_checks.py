"""``AgentPopulation``'s argument checks: inference parameters, seeds, policies, observations,
and the bounds on threads and memory."""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from .. import _validate
from . import _py
from ._model import GenerativeModel, policies_of
from ._policies import MAX_POLICIES

# pymdp 0.0.7.1's defaults for run_vanilla_fpi.
_INFERENCE_DEFAULTS = {"num_iter": 10, "dF": 1.0, "dF_tol": 0.001}


def _inference_params(value: Any) -> dict[str, Any]:
    if value is None:
        return dict(_INFERENCE_DEFAULTS)
    if not isinstance(value, dict):
        raise TypeError(f"inference_params: must be a dict or None, not {type(value).__name__}")
    unknown = sorted(set(value) - set(_INFERENCE_DEFAULTS), key=str)
    if unknown:
        raise ValueError(f"inference_params: unknown keys {unknown!r}; known: num_iter, dF, dF_tol")
    params = {**_INFERENCE_DEFAULTS, **value}
    return {
        "num_iter": _validate.integer(params["num_iter"], "inference_params: num_iter", minimum=0, maximum=1 << 20),
        "dF": _validate.real(params["dF"], "inference_params: dF"),
        "dF_tol": _validate.real(params["dF_tol"], "inference_params: dF_tol"),
    }


# Starting a rayon pool costs about 5 ms a thread, and more threads than this never help a
# population (they only wait on each other).
MAX_THREADS = 256


def _physical_memory() -> int:
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform: no a-priori bound
        return 1 << 62


def _key_of(seed: Any) -> int:
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: must be an int or None, not {type(seed).__name__}")
    return int(_py._splitmix64(np.uint64(int(seed) & _py._MASK64)))


def _positive_float(value: Any, name: str) -> float:
    return _validate.real(value, name, minimum=0.0, exclusive_minimum=True)


def _single_factor_policies(num_actions: int, policy_len: int) -> np.ndarray:
    """Every sequence of ``policy_len`` actions, (policies, policy_len, 1); at most 2**20 of them."""
    if policy_len * math.log2(max(num_actions, 1)) > 40:  # before computing a huge power
        raise ValueError(
            f"policy_len: {policy_len} gives {num_actions}**{policy_len} policies; at most 2**20 are supported"
        )
    if num_actions**policy_len > MAX_POLICIES:
        raise ValueError(
            f"policy_len: {policy_len} gives {num_actions**policy_len} policies; at most 2**20 are supported"
        )
    result: np.ndarray = policies_of(num_actions, policy_len)[:, :, None]
    return result


def is_integer(value: object) -> bool:
    """A Python or numpy int, not a bool (callers may pass anything, whatever the annotation)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_observations(model: GenerativeModel, observations: Any, rows: int, *, ranges: bool = True) -> np.ndarray:
    """``observations`` as a C-contiguous, aligned (rows, modalities) int64 array, or the error
    naming what is wrong. ``ranges=False`` is for callers whose kernel checks the int64 values
    itself: then only values that the conversion would change (uint64 above 2**63) are checked."""
    obs = np.asarray(observations)
    m = model.num_modalities
    if obs.dtype.kind not in "iu":
        raise TypeError(f"observations: must be integers, got dtype {obs.dtype}")
    if obs.shape == (rows,) and m == 1:
        obs = obs.reshape(rows, 1)
    if obs.shape != (rows, m):
        expected = f"({rows},) or ({rows}, {m})" if m == 1 else f"({rows}, {m})"
        raise ValueError(f"observations: must have shape {expected}, got {obs.shape}")
    if ranges or obs.dtype == np.uint64:
        # Checked in the given dtype: converting first would wrap uint64 values above 2**63.
        check_observation_ranges(model, obs)
    return np.require(obs, np.int64, ["C_CONTIGUOUS", "ALIGNED"])  # received buffers may be misaligned


def check_observation_ranges(model: GenerativeModel, observations: np.ndarray) -> None:
    """The error naming the first modality of (rows, modalities) ``observations`` with a value
    out of its range."""
    for k, count in enumerate(model.num_obs):
        column = observations[:, k]
        if column.size and (column.min() < 0 or column.max() >= count):
            raise ValueError(f"observations: modality {k} must lie in [0, {count}), got {column.min()}..{column.max()}")

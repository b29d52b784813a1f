"""Policies of factorized models: pymdp 0.0.7.1's ``construct_policies`` order, explicit policy
lists, and the prefix tree the kernels walk (policies that share their first steps share the
states predicted for those steps)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .. import _validate

__all__ = ["MAX_POLICIES", "PolicyTree", "check_policies", "construct_policies", "control_factors"]

MAX_POLICIES = 1 << 20


def control_factors(num_controls: tuple[int, ...], control_fac_idx: Any) -> list[int]:
    """``control_fac_idx`` checked, or pymdp's default: the factors with more than one control."""
    if control_fac_idx is None:
        return [f for f, n in enumerate(num_controls) if n > 1]
    if isinstance(control_fac_idx, (str, bytes)) or not hasattr(control_fac_idx, "__iter__"):
        raise TypeError(f"control_fac_idx: must be a list of factor indices, not {type(control_fac_idx).__name__}")
    factors = [
        _validate.integer(f, "control_fac_idx", minimum=0, maximum=len(num_controls) - 1) for f in control_fac_idx
    ]
    if len(set(factors)) != len(factors):
        raise ValueError(f"control_fac_idx: factors must be distinct, got {factors!r}")
    for f in factors:
        if num_controls[f] < 2:
            raise ValueError(f"control_fac_idx: factor {f} has only {num_controls[f]} control, got {factors!r}")
    return sorted(factors)


def construct_policies(num_controls: tuple[int, ...], policy_len: int, controlled: list[int]) -> np.ndarray:
    """Every policy as pymdp's ``construct_policies`` orders them: (policies, policy_len,
    factors), the controls of the controlled factors at every step (the first step varies
    slowest, and within a step the first factor), uncontrolled factors at control 0."""
    ranges = [range(num_controls[f]) if f in controlled else range(1) for f in range(len(num_controls))]
    if policy_len * sum(math.log2(len(r)) for r in ranges) > math.log2(MAX_POLICIES) + 1e-9:
        raise ValueError(f"policy_len: {policy_len} gives more than {MAX_POLICIES} policies")
    policies = np.array(list(itertools.product(*(ranges * policy_len))), dtype=np.int64)
    return policies.reshape(-1, policy_len, len(num_controls))


def check_policies(policies: Any, num_controls: tuple[int, ...]) -> np.ndarray:
    """An explicit list of (policy_len, factors) int arrays (or one (policies, policy_len,
    factors) array) as an int64 array, or the error naming what is wrong."""
    try:
        items = [np.asarray(p) for p in policies]
    except TypeError:
        raise TypeError(
            f"policies: must be a list of (policy_len, factors) int arrays, not {type(policies).__name__}"
        ) from None
    if not items:
        raise ValueError("policies: needs at least one policy")
    if len(items) > MAX_POLICIES:
        raise ValueError(f"policies: at most {MAX_POLICIES} are supported, got {len(items)}")
    factors = len(num_controls)
    shape = items[0].shape
    for i, p in enumerate(items):
        if p.dtype.kind not in "iu":
            raise TypeError(f"policies: policy {i} must be ints, got dtype {p.dtype}")
        if p.ndim != 2 or p.shape[1] != factors or p.shape[0] < 1:
            raise ValueError(f"policies: policy {i} must have shape (policy_len, {factors}), got {p.shape}")
        if p.shape != shape:
            raise ValueError(
                f"policies: every policy needs the same length, policy {i} has shape {p.shape}, policy 0 {shape}"
            )
        for f in range(factors):
            if p[:, f].min() < 0 or p[:, f].max() >= num_controls[f]:
                raise ValueError(
                    f"policies: policy {i} uses control "
                    f"{p[:, f].max() if p[:, f].max() >= num_controls[f] else p[:, f].min()} "
                    f"of factor {f}, which has {num_controls[f]}"
                )
    return np.ascontiguousarray(np.stack(items).astype(np.int64))


class PolicyTree:
    """The distinct prefixes of a set of policies, level by level: ``levels[t]`` lists the
    nodes of depth ``t + 1`` as (parent node at depth t, or -1 at the root; controls (factors,)),
    and ``leaf[t][p]`` is the node of policy ``p``'s prefix of length ``t + 1``."""

    def __init__(self, policies: np.ndarray) -> None:
        count, length, _ = policies.shape
        self.parents: list[np.ndarray] = []
        self.controls: list[np.ndarray] = []
        self.leaf: list[np.ndarray] = []
        previous = np.zeros(count, np.int64) - 1
        for t in range(length):
            keys = np.concatenate([previous[:, None], policies[:, t, :]], axis=1)
            nodes, inverse = np.unique(keys, axis=0, return_inverse=True)
            self.parents.append(nodes[:, 0].copy())
            self.controls.append(np.ascontiguousarray(nodes[:, 1:]))
            self.leaf.append(inverse.reshape(-1).astype(np.int64))
            previous = self.leaf[-1]

"""pymdp 0.0.7.1 agents built from a ``GenerativeModel``: the baseline the CLI measures against."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..agents import GenerativeModel


def pymdp_agents(model: GenerativeModel, count: int, policy_len: int) -> list[Any]:
    """``count`` pymdp ``Agent``s with ``model``'s arrays and the CLI's settings (gamma and alpha 8,
    stochastic actions). Raises ``ImportError`` when pymdp is not installed."""
    from pymdp import utils
    from pymdp.agent import Agent

    def obj(arrays: list[Any] | np.ndarray) -> Any:
        out = utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.asarray(a, np.float64)
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymdp's own deprecation and normalization warnings
        return [
            Agent(
                A=obj(model.A),
                B=obj(model.B),
                C=obj(model.C),
                D=obj(model.D),
                policy_len=policy_len,
                gamma=8.0,
                alpha=8.0,
                action_selection="stochastic",
            )
            for _ in range(count)
        ]

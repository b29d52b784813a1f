"""``AgentPopulation.from_pymdp``: the settings of a configured pymdp 0.0.7.1 ``Agent``, as the
arguments of a population that computes what that agent computes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._model import GenerativeModel
from ._policies import construct_policies, control_factors

__all__ = ["population_arguments"]


def _refuse(name: str, value: Any, why: str) -> None:
    raise ValueError(f"agent: {name}={value!r} {why}; from_pymdp reproduces pymdp's VANILLA agent only")


def population_arguments(agent: Any, backend: str | None) -> tuple[GenerativeModel, dict[str, Any]]:
    """``(model, keyword arguments)`` of a population of ``agent``'s copies, or ``ValueError``
    naming the setting that cannot be reproduced."""
    for name in ("A", "B", "C", "D", "E", "policies", "gamma", "alpha", "inference_algo"):
        if not hasattr(agent, name):
            raise TypeError(f"agent: must be a pymdp 0.0.7.1 Agent, got {type(agent).__name__} without {name!r}")
    if agent.inference_algo != "VANILLA":
        _refuse("inference_algo", agent.inference_algo, "is not supported")
    if getattr(agent, "inference_horizon", 1) != 1:
        _refuse("inference_horizon", agent.inference_horizon, "is not supported (only 1)")
    model = GenerativeModel(list(agent.A), list(agent.B), list(agent.C), list(agent.D), E=agent.E, backend=backend)
    num_controls = tuple(int(n) for n in agent.num_controls)
    if num_controls != model.num_controls:
        _refuse("num_controls", list(agent.num_controls), f"disagrees with B's {list(model.num_controls)}")
    policies = np.stack([np.asarray(p, np.int64) for p in agent.policies])
    policy_len = policies.shape[1]
    kwargs: dict[str, Any] = {
        "policy_len": policy_len,
        "gamma": float(agent.gamma),
        "alpha": float(agent.alpha),
        "action_selection": agent.action_selection,
        "sampling_mode": agent.sampling_mode,
        "use_utility": bool(agent.use_utility),
        "use_states_info_gain": bool(agent.use_states_info_gain),
        "inference_params": dict(agent.inference_params),
    }
    # Learning: the agent's current Dirichlet parameters and settings (pymdp's names).
    for name in ("pA", "pB", "pD"):
        if getattr(agent, name, None) is not None:
            kwargs[name] = list(getattr(agent, name))
    for name in ("lr_pA", "lr_pB", "lr_pD", "modalities_to_learn", "factors_to_learn", "use_param_info_gain"):
        if hasattr(agent, name):
            kwargs[name] = getattr(agent, name)
    default = construct_policies(model.num_controls, policy_len, control_factors(model.num_controls, None))
    if not np.array_equal(default, policies):  # the default keeps one-factor models on their fast kernels
        kwargs["policies"] = list(policies)
    return model, kwargs

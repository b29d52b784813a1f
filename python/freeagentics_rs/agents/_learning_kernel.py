"""The numpy kernel of agents that learn: ``FactorKernel`` with each agent's own A[m], B[f] and
D[f] where they are learned (normalized from its Dirichlet parameters on each call), and
pymdp 0.0.7.1's parameter information gain in G:

* ``calc_pA_info_gain``: per step of a policy and per modality with ``pA``,
  ``-qo_m . (wA_m . qs)`` with ``qo_m = A_m . qs`` the predicted outcomes, ``qs`` the predicted
  joint states and ``wA = (1 / sum_o (pA + 1e-16) - 1 / (pA + 1e-16))`` where ``pA > 0``, else 0
  (pymdp's ``spm_wnorm``);
* ``calc_pB_info_gain``: per step and per factor with ``pB``, ``-qs_f . (wB_f[:, :, u] .
  qs_prev_f)`` with ``u`` the step's control and ``qs_prev`` the states predicted for the step
  before (the current posterior at the first step).
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Any

import numpy as np

from ._learning import Learning, RowParameters, normalized
from ._model import EPS, INFO_EPS, GenerativeModel, _softmax
from ._py_factors import FactorKernel, _outer

__all__ = ["LearningKernel", "SharedLearning", "learning_kernel", "wnorm"]


def wnorm(p: np.ndarray, axis: int = 0) -> np.ndarray:
    """pymdp's ``spm_wnorm`` masked where ``p`` is zero (as its info gain masks it)."""
    shifted = p + EPS
    result: np.ndarray = (1.0 / shifted.sum(axis=axis, keepdims=True) - 1.0 / shifted) * (p > 0)
    return result


def _joint_rows(As: list[np.ndarray]) -> np.ndarray:
    """(rows, joint states, joint outcomes): per row, each state's joint outcome distribution
    (the first modality varying slowest, as spm_cross); ``As`` (rows or 1, outcomes, states)."""
    rows = max(len(a) for a in As)
    states = As[0].shape[2]
    joint = np.ones((rows, 1, states))
    for a in As:
        joint = (joint[:, :, None, :] * a[:, None, :, :]).reshape(rows, -1, states)
    return np.ascontiguousarray(joint.transpose(0, 2, 1))


class _Rows:
    """The per-agent quantities of one call's rows, each computed when first used."""

    def __init__(self, kernel: LearningKernel, params: RowParameters) -> None:
        self.kernel, self.params = kernel, params

    @cached_property
    def A(self) -> list[np.ndarray]:
        """Each modality's A: (rows, outcomes, joint states) where learned, else (1, ...)."""
        return [
            normalized(self.params.A[m], axis=1) if m in self.params.A else shared[None]
            for m, shared in enumerate(self.kernel.q["A"])
        ]

    @cached_property
    def B_t(self) -> dict[int, np.ndarray]:
        """Each learned factor's B as (rows, controls, previous, next)."""
        return {f: normalized(p, axis=1).transpose(0, 3, 2, 1) for f, p in self.params.B.items()}

    @cached_property
    def D(self) -> dict[int, np.ndarray]:
        return {f: normalized(p, axis=1) for f, p in self.params.D.items()}

    @cached_property
    def utility(self) -> np.ndarray:
        """(rows, joint states), or (joint states,) when no A is learned."""
        k = self.kernel
        utility = k.shared_utility
        for m in self.params.A:
            utility = utility + np.einsum("o,nos->ns", k.log_C[m], self.A[m])
        return utility

    @cached_property
    def joint(self) -> tuple[np.ndarray, np.ndarray]:
        """(joint_t (rows, joint states, joint outcomes), info_h (rows, joint states))."""
        joint_t = _joint_rows(self.A)
        return joint_t, (joint_t * np.log(joint_t + INFO_EPS)).sum(axis=2)

    @cached_property
    def wA(self) -> list[np.ndarray]:
        shared = self.kernel.wA_shared
        assert shared is not None
        return [wnorm(self.params.A[m], axis=1) if m in self.params.A else shared[m] for m in range(len(shared))]

    @cached_property
    def wB(self) -> list[np.ndarray]:
        shared = self.kernel.wB_shared
        assert shared is not None
        return [wnorm(self.params.B[f], axis=1) if f in self.params.B else shared[f] for f in range(len(shared))]


class SharedLearning:
    """What every agent of a learning population shares beyond the kernel's model: ln softmax(C)
    per modality, the utility over the modalities not learned, and the wnorm of the shared
    parameters (None without pA / pB; per modality or factor, as (1, ...) arrays)."""

    def __init__(self, model: GenerativeModel, learning: Learning) -> None:
        As = [np.asarray(a, np.float64).reshape(a.shape[0], -1) for a in model.A]
        joint_states = As[0].shape[1]
        self.log_C = [np.log(_softmax(np.asarray(c, np.float64)) + EPS) for c in model.C]
        learned_A = set(learning.learned["pA"])
        self.shared_utility = sum(
            (self.log_C[m] @ a for m, a in enumerate(As) if m not in learned_A), np.zeros(joint_states)
        )
        pA, pB = learning.priors["pA"], learning.priors["pB"]
        self.wA_shared = None if pA is None else [wnorm(p.reshape(1, p.shape[0], joint_states), 1) for p in pA]
        self.wB_shared = None if pB is None else [wnorm(p[None], 1) for p in pB]


def learning_kernel(
    kernel: Any, learning: Learning, model: GenerativeModel, policies: np.ndarray, gamma: float, num_threads: int
) -> Any:
    """The kernel of a learning population over ``kernel``, the factorized kernel of ``model``
    (the population's shared model): ``LearningKernel`` over a numpy ``FactorKernel``, or the
    Rust ``LearningKernelCore`` over a ``FactorKernelCore``."""
    shared = SharedLearning(model, learning)
    if isinstance(kernel, FactorKernel):
        return LearningKernel(kernel, learning, shared)
    learned = learning.learned

    def own(arrays: list[np.ndarray] | None, indices: list[int]) -> list[np.ndarray | None] | None:
        return None if arrays is None else [None if i in indices else a[0] for i, a in enumerate(arrays)]

    from .. import _backend

    return _backend.native().LearningKernelCore(
        kernel,
        learned["pA"],
        learned["pB"],
        learned["pD"],
        shared.log_C,
        shared.shared_utility,
        param_info_gain=learning.use_param_info_gain,
        wa_shared=own(shared.wA_shared, learned["pA"]),
        wb_shared=own(shared.wB_shared, learned["pB"]),
        policies=policies,
        gamma=gamma,
        num_threads=num_threads,
    )


class LearningKernel(FactorKernel):
    """``FactorKernel`` for agents with their own arrays: ``bind(rows)`` gives the kernel of
    some rows of the population (a shallow copy, so different rows may run in different
    threads)."""

    def __init__(self, base: FactorKernel, learning: Learning, shared: SharedLearning) -> None:
        self.__dict__.update(base.__dict__)  # the factorized kernel's settings and model
        self.learning = learning
        self.rows: _Rows | None = None
        self.log_C, self.shared_utility = shared.log_C, shared.shared_utility
        self.wA_shared, self.wB_shared = shared.wA_shared, shared.wB_shared
        self.param_info_gain = learning.use_param_info_gain

    def bind(self, params: RowParameters) -> LearningKernel:
        bound = copy.copy(self)
        bound.rows = _Rows(self, params)
        return bound

    def _push(self, f: int, qs: np.ndarray, control: int, rows: Any) -> np.ndarray:
        if self.rows is None or f not in self.rows.params.B:
            return super()._push(f, qs, control, rows)
        result: np.ndarray = np.einsum("ns,nst->nt", qs, self.rows.B_t[f][rows, control])
        return result

    def _likelihood(self, observations: np.ndarray) -> np.ndarray:
        if self.rows is None or not self.rows.params.A:
            return super()._likelihood(observations)
        agents = np.arange(len(observations))
        likelihood = np.ones((len(observations), int(np.prod(self.num_states))))
        for m, A in enumerate(self.q["A"]):
            p = self.rows.params.A.get(m)
            if p is None:
                likelihood *= A[observations[:, m]]
            else:
                likelihood *= p[agents, observations[:, m]] / p.sum(axis=1)
        return likelihood

    def _initial(self, f: int, rows: np.ndarray) -> np.ndarray:
        if self.rows is None or f not in self.rows.D:
            return super()._initial(f, rows)
        result: np.ndarray = self.rows.D[f][rows]
        return result

    def _log_initial(self, f: int) -> np.ndarray:
        if self.rows is None or f not in self.rows.D:
            return super()._log_initial(f)
        return np.log(self.rows.D[f] + EPS)

    def _node_value(self, marginals: list[np.ndarray], parent: list[np.ndarray], controls: np.ndarray) -> np.ndarray:
        r = self.rows
        if r is None or not r.params.A:
            value = super()._node_value(marginals, parent, controls)
        else:
            joint = _outer(marginals)
            value = (joint * r.utility).sum(axis=1) if self.use_utility else np.zeros(len(joint))
            if self.use_states_info_gain:
                joint_t, info_h = r.joint
                masked = np.where(joint > INFO_EPS, joint, 0.0)
                qo = np.einsum("ns,nso->no", masked, joint_t)
                value = value + (masked * info_h).sum(axis=1) - (qo * np.log(qo + EPS)).sum(axis=1)
        if self.param_info_gain and r is not None:
            value = value - self._parameter_gain(r, marginals, parent, controls)
        return value

    def _parameter_gain(
        self, r: _Rows, marginals: list[np.ndarray], parent: list[np.ndarray], controls: np.ndarray
    ) -> np.ndarray:
        """Minus the pA and pB information gain of one step of a policy, per row."""
        loss = np.zeros(len(marginals[0]))
        if self.wA_shared is not None:
            joint = _outer(marginals)[:, :, None]
            for A, wA in zip(r.A, r.wA, strict=True):  # (rows or 1, outcomes, joint states)
                loss += ((A @ joint) * (wA @ joint)).sum(axis=(1, 2))
        if self.wB_shared is not None:
            for f, wB in enumerate(r.wB):  # (rows or 1, states, states, controls)
                loss += (marginals[f] * (wB[:, :, :, controls[f]] @ parent[f][:, :, None])[:, :, 0]).sum(axis=1)
        return loss

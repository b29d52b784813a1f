"""The numpy kernel for factorized models (several hidden-state factors, or one factor with
explicit policies or ``sampling_mode="full"``): pymdp 0.0.7.1's VANILLA agent vectorized over
agents. The Rust kernel (``rust/core/agents/factors.rs``) computes the same formulas row by row.

Per model, once (``factor_quantities``): each modality's A as an (observations, joint states)
matrix (joint states in C order: the first factor varies slowest, as pymdp's ``spm_cross``),
the utility of each joint state ``sum_m sum_o A_m[o, s] ln(softmax(C_m)[o] + 1e-16)``, and for
the information gain the joint outcome distribution of each joint state with
``H[s] = po_s . ln(po_s + exp(-16))`` (see ``_model.py``).

Per agent:
* state inference is pymdp's ``run_vanilla_fpi``: the log-likelihood ``ln(prod_m A_m[o_m] +
  1e-16)`` over the joint states; with one factor the posterior is ``softmax(ln L + ln prior)``;
  with several, mean-field fixed-point iteration from uniform marginals: each iteration forms
  ``LL = ln L * (outer product of the marginals)`` once, sets every factor's marginal to
  ``softmax(sum of LL over the other factors / q_f + ln prior_f)`` (all from the same LL), then
  the free energy ``sum_f q_f . (ln(q_f + 1e-16) - ln prior_f) - sum_s LL'[s]`` (LL' from the
  new marginals); it stops after ``num_iter`` iterations or when the free energy changed by
  less than ``dF_tol`` (the first comparison is against the free energy of the uniform
  marginals without the likelihood, and the first iteration always runs when ``dF >= dF_tol``);
* the prior is ``D`` before the first action, else each factor's last marginal through its
  ``B`` for the last action; ln prior = ``ln(prior + 1e-16)``;
* ``G`` of a policy sums, over its steps, the utility of the predicted joint states plus their
  state information gain (pymdp's ``spm_MDP_G``), the predicted marginals being each factor's
  last marginal pushed through its ``B`` step by step; ``q_pi = softmax(G * gamma + ln E)``;
* ``F`` (FreeAgentics' free energy, as for one factor): ``sum_f q_f . (ln(q_f + 1e-16) -
  ln(D_f + 1e-16)) - sum_s q(s) ln L[s]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._model import EPS, INFO_EPS, TIE, GenerativeModel, _joint, _softmax
from ._policies import PolicyTree
from ._py import PhasedKernel, _splitmix64, uniforms

__all__ = ["FactorKernel", "factor_arrays", "factor_key", "factor_quantities"]


def factor_key(key: int, factor: int) -> int:
    """The random stream of factor ``factor``: factor 0 draws from ``key`` itself (so a one-factor
    population draws what the single-factor kernel draws), factor f from splitmix64(key ^ f)."""
    if factor == 0:
        return key
    return int(_splitmix64(np.uint64(key ^ factor)))


def factor_arrays(model: GenerativeModel) -> tuple[list[np.ndarray], ...]:
    """The model's ``A, B, C, D`` as lists of float64 arrays, one per modality or factor (the
    arrays the Rust kernel prepares its per-model quantities from)."""
    factorized = model.factorized
    return (
        [np.asarray(a, np.float64) for a in model.A],
        [np.asarray(b, np.float64) for b in (model.B if factorized else [model.B])],
        [np.asarray(c, np.float64) for c in model.C],
        [np.asarray(d, np.float64) for d in (model.D if factorized else [model.D])],
    )


def factor_quantities(model: GenerativeModel, *, info_gain: bool) -> dict[str, Any]:
    """The per-model arrays of the factorized kernels, computed once per model."""
    cached = model._factor_derived.get(info_gain)
    if cached is not None:
        return cached
    num_states = (model.num_states,) if not model.factorized else tuple(model.num_states)
    joint_states = int(np.prod(num_states))
    As = [np.asarray(a, np.float64).reshape(a.shape[0], joint_states) for a in model.A]
    Bs = [np.asarray(b, np.float64) for b in (model.B if model.factorized else [model.B])]
    Ds = [np.asarray(d, np.float64) for d in (model.D if model.factorized else [model.D])]
    utility = np.zeros(joint_states)
    for a, c in zip(As, model.C, strict=True):
        utility += np.log(_softmax(np.asarray(c, np.float64)) + EPS) @ a
    q: dict[str, Any] = {
        "num_states": num_states,
        "A": As,
        "A_stacked": np.ascontiguousarray(np.concatenate(As, axis=0)),
        "obs_offsets": np.cumsum([0] + [a.shape[0] for a in As]).astype(np.int64),
        "B": Bs,
        # (previous, next) per control: predicted = qs @ B_t[control]
        "B_t": [np.ascontiguousarray(b.transpose(2, 1, 0)) for b in Bs],
        "D": Ds,
        "log_D": [np.log(d + EPS) for d in Ds],
        "utility": utility,
    }
    if info_gain:
        joint = _joint(As)
        q["joint_t"] = np.ascontiguousarray(joint["joint"].T)  # (joint states, joint outcomes)
        q["info_h"] = joint["info_h"]
    model._factor_derived[info_gain] = q
    return q


def _outer(marginals: list[np.ndarray]) -> np.ndarray:
    """Per row, the outer product of the factors' marginals, flattened in C order (rows, S)."""
    joint = marginals[0]
    for q in marginals[1:]:
        joint = (joint[:, :, None] * q[:, None, :]).reshape(len(q), -1)
    return joint


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    result: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return result


def _first_best(values: np.ndarray) -> np.ndarray:
    """Per row, the first entry within rounding of the row's best (exact ties in symmetric
    models would otherwise be broken by rounding)."""
    best = values.max(axis=1, keepdims=True)
    result: np.ndarray = (values >= best * (1 - TIE)).argmax(axis=1)
    return result


def _draw(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.minimum((np.cumsum(p, axis=1) <= u[:, None]).sum(axis=1), p.shape[1] - 1)
    return result


class FactorKernel(PhasedKernel):
    """Active-inference steps for rows of a factorized population's arrays: ``beliefs`` holds
    each agent's factor marginals side by side, ``actions`` (rows, factors)."""

    def __init__(
        self,
        model: GenerativeModel,
        policies: np.ndarray,
        gamma: float,
        alpha: float,
        *,
        deterministic: bool,
        sampling_mode: str,
        use_utility: bool,
        use_states_info_gain: bool,
        log_E: np.ndarray,
        num_iter: int,
        dF: float,
        dF_tol: float,
    ) -> None:
        q = factor_quantities(model, info_gain=use_states_info_gain)
        self.q, self.policies, self.tree = q, policies, PolicyTree(policies)
        self.num_states = q["num_states"]
        self.offsets = np.cumsum((0,) + self.num_states)
        self.num_controls = tuple(b.shape[2] for b in q["B"])
        self.gamma, self.alpha, self.deterministic, self.sampling_mode = gamma, alpha, deterministic, sampling_mode
        self.use_utility, self.use_states_info_gain = use_utility, use_states_info_gain
        self.log_E = log_E
        self.num_iter, self.dF, self.dF_tol = num_iter, dF, dF_tol
        # (policies, controls of f) one-hot of each policy's first control, per factor.
        self.first_controls = [np.eye(n)[policies[:, 0, f]] for f, n in enumerate(self.num_controls)]

    def _split(self, beliefs: np.ndarray) -> list[np.ndarray]:
        return [beliefs[:, self.offsets[f] : self.offsets[f + 1]] for f in range(len(self.num_states))]

    def _predict(self, marginals: list[np.ndarray], controls: np.ndarray) -> list[np.ndarray]:
        """Each factor's marginals pushed through its B; ``controls`` (rows, factors)."""
        out = []
        for f, qs in enumerate(marginals):
            predicted = np.empty_like(qs)
            for c in np.unique(controls[:, f]):
                rows = controls[:, f] == c
                predicted[rows] = self._push(f, qs[rows], c, rows)
            out.append(predicted)
        return out

    # Hooks: the kernel of agents that learn (``_learning_kernel.py``) gives each agent its own
    # A, B or D through them; ``rows`` selects the agents of ``qs`` within the current rows.
    def _push(self, f: int, qs: np.ndarray, control: int, rows: Any) -> np.ndarray:
        """``qs`` (rows, states of f) through B[f] for ``control``."""
        result: np.ndarray = qs @ self.q["B_t"][f][control]
        return result

    def _likelihood(self, observations: np.ndarray) -> np.ndarray:
        """(rows, joint states): the product over modalities of the observed rows of A."""
        likelihood = np.ones((len(observations), int(np.prod(self.num_states))))
        for m, A in enumerate(self.q["A"]):
            likelihood *= A[observations[:, m]]
        return likelihood

    def _initial(self, f: int, rows: np.ndarray) -> np.ndarray:
        """D[f] for the agents ``rows`` (a mask)."""
        result: np.ndarray = self.q["D"][f]
        return result

    def _log_initial(self, f: int) -> np.ndarray:
        result: np.ndarray = self.q["log_D"][f]
        return result

    def infer_states(self, beliefs: np.ndarray, actions: np.ndarray, observations: np.ndarray, F: np.ndarray) -> None:
        marginals = self._split(beliefs)
        first = actions[:, 0] < 0
        prior = self._predict(marginals, np.where(first[:, None], 0, actions))
        for f, p in enumerate(prior):
            p[first] = self._initial(f, first)
        log_prior = [np.log(p + EPS) for p in prior]
        log_likelihood = np.log(self._likelihood(observations) + EPS)
        if len(self.num_states) == 1:
            posterior = [_softmax_rows(log_likelihood + log_prior[0])]
        else:
            posterior = self._fixed_point(log_likelihood, log_prior)
        for f, q in enumerate(posterior):
            marginals[f][:] = q
        joint = _outer(posterior)
        log_D = [self._log_initial(f) for f in range(len(posterior))]
        F[:] = sum((q * (np.log(q + EPS) - ld)).sum(axis=1) for q, ld in zip(posterior, log_D, strict=True))
        F -= (joint * log_likelihood).sum(axis=1)

    def _fixed_point(self, log_likelihood: np.ndarray, log_prior: list[np.ndarray]) -> list[np.ndarray]:
        """pymdp's ``run_vanilla_fpi`` for several factors, every row with its own stopping."""
        n, shape = len(log_likelihood), self.num_states
        qs = [np.full((n, s), 1.0 / s) for s in shape]

        def free_energy(rows: np.ndarray, marginals: list[np.ndarray], *, with_likelihood: bool) -> np.ndarray:
            vfe = np.zeros(len(rows))
            for f, q in enumerate(marginals):
                vfe += (q * np.log(q + 1e-16)).sum(axis=1) - (q * log_prior[f][rows]).sum(axis=1)
            if with_likelihood:
                vfe -= (log_likelihood[rows] * _outer(marginals)).sum(axis=1)
            return vfe

        everyone = np.arange(n)
        previous = free_energy(everyone, qs, with_likelihood=False)
        dF = np.full(n, self.dF)
        active = everyone[(dF >= self.dF_tol) & (self.num_iter > 0)]
        iteration = 0
        while active.size:
            old = [q[active] for q in qs]
            LL = (log_likelihood[active] * _outer(old)).reshape((len(active),) + shape)
            new = []
            for f, q in enumerate(old):
                others = tuple(1 + g for g in range(len(shape)) if g != f)
                qL = LL.sum(axis=others) / q
                new.append(_softmax_rows(qL + log_prior[f][active]))
            for f, q in enumerate(new):
                qs[f][active] = q
            vfe = free_energy(active, new, with_likelihood=True)
            dF[active] = np.abs(previous[active] - vfe)
            previous[active] = vfe
            iteration += 1
            if iteration >= self.num_iter:
                break
            active = active[dF[active] >= self.dF_tol]
        return qs

    def _node_value(self, marginals: list[np.ndarray], parent: list[np.ndarray], controls: np.ndarray) -> np.ndarray:
        """G's term of one step of a policy: ``marginals`` predicted from ``parent`` with ``controls``."""
        joint = _outer(marginals)
        value = joint @ self.q["utility"] if self.use_utility else np.zeros(len(joint))
        if self.use_states_info_gain:
            masked = np.where(joint > INFO_EPS, joint, 0.0)
            qo = masked @ self.q["joint_t"]
            value = value + masked @ self.q["info_h"] - (qo * np.log(qo + EPS)).sum(axis=1)
        return value

    def infer_policies(self, beliefs: np.ndarray, q_pi: np.ndarray, G: np.ndarray) -> None:
        n = len(beliefs)
        level = [self._split(beliefs)]  # the root: one node, the current marginals
        G[:] = 0.0
        for t, (parents, controls) in enumerate(zip(self.tree.parents, self.tree.controls, strict=True)):
            values = np.empty((n, len(parents)))
            predicted = []
            for k, parent in enumerate(parents):
                before = level[max(parent, 0)]
                pairs = enumerate(zip(before, controls[k], strict=True))
                states = [self._push(f, qs, c, slice(None)) for f, (qs, c) in pairs]
                predicted.append(states)
                values[:, k] = self._node_value(states, before, controls[k])
            level = predicted
            G += values[:, self.tree.leaf[t]]
        q_pi[:] = _softmax_rows(G * self.gamma + self.log_E)

    def sample_action(
        self, q_pi: np.ndarray, actions: np.ndarray, timesteps: np.ndarray, key: int, first_row: int
    ) -> None:
        rows = np.arange(first_row, first_row + len(q_pi))
        if self.sampling_mode == "full":
            if self.deterministic:
                chosen = _first_best(q_pi)
            else:
                p = _softmax_rows(np.log(q_pi + EPS) * self.alpha)
                chosen = _draw(p, uniforms(key, rows, timesteps))
            actions[:] = self.policies[chosen, 0, :]
        else:
            for f, onehot in enumerate(self.first_controls):
                marginals = q_pi @ onehot
                marginals /= marginals.sum(axis=1, keepdims=True)
                if self.deterministic:
                    actions[:, f] = _first_best(marginals)
                else:
                    p = _softmax_rows(np.log(marginals + EPS) * self.alpha)
                    actions[:, f] = _draw(p, uniforms(factor_key(key, f), rows, timesteps))
        timesteps += 1

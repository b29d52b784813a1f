"""The numpy kernel of AgentPopulation: every step vectorized over all agents at once (the Rust
kernel, ``rust/core/agents.rs``, computes the same formulas agent by agent). The formulas are in
``_model.py``'s docstring."""

from __future__ import annotations

import numpy as np

from ._model import EPS, INFO_EPS, TIE, GenerativeModel, policies_of

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        result: np.ndarray = x ^ (x >> np.uint64(31))
        return result


def uniforms(key: int, agents: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """One uniform draw in [0, 1) per (agent, timestep) under ``key``; the Rust kernel draws
    the same numbers, so a seed gives the same actions on both backends."""
    h = _splitmix64(np.uint64(key & _MASK64) ^ _splitmix64(agents.astype(np.uint64) + np.uint64(1)))
    h = _splitmix64(h ^ timesteps.astype(np.uint64))
    result: np.ndarray = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return result


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    result: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return result


class PhasedKernel:
    """``run``, the entry point of every kernel (the Rust kernels' signature): state inference
    (``infer``, needs ``observations``), policy inference (``plan``) and action selection
    (``act``) for every row of a population's arrays, in place. ``first_row`` is the index
    of the first row in the whole population (its random stream)."""

    def run(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        G: np.ndarray,
        F: np.ndarray,
        actions: np.ndarray,
        timesteps: np.ndarray,
        /,
        *,
        observations: np.ndarray | None = None,
        key: int,
        first_row: int = 0,
        infer: bool = False,
        plan: bool = False,
        act: bool = False,
    ) -> None:
        if infer:
            if observations is None:
                raise ValueError("observations: needed for state inference (infer=True)")
            self.infer_states(beliefs, actions, observations, F)
        if plan:
            self.infer_policies(beliefs, q_pi, G)
        if act:
            self.sample_action(q_pi, actions, timesteps, key, first_row)

    def infer_states(self, beliefs: np.ndarray, actions: np.ndarray, observations: np.ndarray, F: np.ndarray) -> None:
        raise NotImplementedError

    def infer_policies(self, beliefs: np.ndarray, q_pi: np.ndarray, G: np.ndarray) -> None:
        raise NotImplementedError

    def sample_action(
        self, q_pi: np.ndarray, actions: np.ndarray, timesteps: np.ndarray, key: int, first_row: int
    ) -> None:
        raise NotImplementedError


class AgentKernel(PhasedKernel):
    """Active-inference steps for rows of a population's arrays (see ``AgentPopulation``)."""

    def __init__(
        self,
        model: GenerativeModel,
        derived: dict[str, np.ndarray],
        policy_len: int,
        gamma: float,
        alpha: float,
        *,
        deterministic: bool,
        use_utility: bool,
        use_states_info_gain: bool,
        log_E: np.ndarray,
    ) -> None:
        d = derived
        self.policy_len = policy_len
        self.policies = policies_of(model.num_actions, policy_len)
        self.gamma, self.alpha, self.deterministic = gamma, alpha, deterministic
        self.log_E = log_E
        self.num_actions = model.num_actions
        self.D, self.log_D = d["D"], d["log_D"]
        self.A, self.log_A, self.offsets = d["A_stacked"], d["log_A_stacked"], d["obs_offsets"]
        self.utility = d["utility"] if use_utility else None
        self.info_h = d["info_h"] if use_states_info_gain else None
        self.joint_t = d["joint"].T.copy()
        B = np.asarray(model.B, np.float64)
        self.transitions_t = [np.ascontiguousarray(B[:, :, a].T) for a in range(model.num_actions)]
        self.first_actions = np.eye(model.num_actions)[self.policies[:, 0]]  # (policies, actions)

    def _predict(self, qs: np.ndarray, action: int) -> np.ndarray:
        result: np.ndarray = qs @ self.transitions_t[action]
        return result

    def infer_states(self, beliefs: np.ndarray, actions: np.ndarray, observations: np.ndarray, F: np.ndarray) -> None:
        prior = np.empty_like(beliefs)
        prior[actions == -1] = self.D
        for action in range(self.num_actions):
            rows = actions == action
            if rows.any():
                prior[rows] = self._predict(beliefs[rows], action)
        likelihood = np.ones_like(beliefs)
        log_likelihood = np.zeros_like(beliefs)
        for m in range(len(self.offsets) - 1):
            rows = self.offsets[m] + observations[:, m]
            likelihood *= self.A[rows]
            log_likelihood += self.log_A[rows]
        posterior = (likelihood + EPS) * (prior + EPS)
        posterior /= posterior.sum(axis=1, keepdims=True)
        beliefs[:] = posterior
        F[:] = (posterior * (np.log(posterior + EPS) - self.log_D - log_likelihood)).sum(axis=1)

    def _node_value(self, qs: np.ndarray) -> np.ndarray:
        """Expected utility plus state information gain of predicted states, per agent."""
        value = qs @ self.utility if self.utility is not None else np.zeros(len(qs))
        if self.info_h is not None:
            masked = np.where(qs > INFO_EPS, qs, 0.0)
            qo = masked @ self.joint_t
            value += masked @ self.info_h - (qo * np.log(qo + EPS)).sum(axis=1)
        return value

    def _visit(self, qs: np.ndarray, depth: int, prefix: int, value: np.ndarray, G: np.ndarray) -> None:
        """G of every policy below a prefix (policies are all action sequences in lexicographic
        order), depth first: one level of predicted states is alive per depth."""
        for action in range(self.num_actions):
            predicted = self._predict(qs, action)
            total = value + self._node_value(predicted)
            index = prefix * self.num_actions + action
            if depth + 1 == self.policy_len:
                G[:, index] = total
            else:
                self._visit(predicted, depth + 1, index, total, G)

    def infer_policies(self, beliefs: np.ndarray, q_pi: np.ndarray, G: np.ndarray) -> None:
        self._visit(beliefs, 0, 0, np.zeros(len(beliefs)), G)
        q_pi[:] = _softmax_rows(G * self.gamma + self.log_E)

    def sample_action(
        self, q_pi: np.ndarray, actions: np.ndarray, timesteps: np.ndarray, key: int, first_row: int
    ) -> None:
        marginals = q_pi @ self.first_actions
        marginals /= marginals.sum(axis=1, keepdims=True)
        if self.deterministic:
            # The first action within rounding of the best (ties are exact in symmetric models).
            best = marginals.max(axis=1, keepdims=True)
            chosen = (marginals >= best * (1 - TIE)).argmax(axis=1)
        else:
            p = _softmax_rows(np.log(marginals + EPS) * self.alpha)
            u = uniforms(key, np.arange(first_row, first_row + len(q_pi)), timesteps)
            chosen = np.minimum((np.cumsum(p, axis=1) <= u[:, None]).sum(axis=1), self.num_actions - 1)
        actions[:] = chosen
        timesteps += 1

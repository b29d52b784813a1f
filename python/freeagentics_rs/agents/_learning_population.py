"""``AgentPopulation``'s learning API (a mixin): the parameter arrays, ``update_A``,
``update_B``, ``update_D`` and the learning step, as pymdp 0.0.7.1's ``Agent`` has them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._learning import Learning, blocks, learns
from ._learning_kernel import learning_kernel

if TYPE_CHECKING:
    from ._model import GenerativeModel

__all__ = ["LearningPopulation"]


class LearningPopulation:
    """Parameter learning for ``AgentPopulation`` (see ``_learning.py``)."""

    _learning: Learning | None
    _kernel: Any
    model: GenerativeModel
    n_agents: int
    qs: tuple[np.ndarray, ...]
    beliefs: np.ndarray
    actions: np.ndarray
    q_pi: np.ndarray
    G: np.ndarray
    F: np.ndarray
    timesteps: np.ndarray
    row_offset: int
    _key: int
    backend: str
    num_threads: int
    gamma: float
    _learning_settings: dict[str, Any]

    if TYPE_CHECKING:

        def _observations(self, observations: Any, rows: int) -> np.ndarray: ...

        def _run(self, rows: slice, observations: np.ndarray | None, *, infer: bool, plan: bool, act: bool) -> None: ...

    lr_pA = property(lambda self: self._learning_settings["lr_pA"], doc="pA's learning rate")
    lr_pB = property(lambda self: self._learning_settings["lr_pB"], doc="pB's learning rate")
    lr_pD = property(lambda self: self._learning_settings["lr_pD"], doc="pD's learning rate")
    modalities_to_learn = property(
        lambda self: list(self._learning_settings["modalities_to_learn"]), doc="the modalities whose pA is learned"
    )
    factors_to_learn = property(
        lambda self: list(self._learning_settings["factors_to_learn"]), doc="the factors whose pB and pD are learned"
    )
    use_param_info_gain = property(
        lambda self: self._learning_settings["use_param_info_gain"], doc="whether G includes pA's and pB's info gain"
    )

    def _start_learning(self, model: GenerativeModel, checked: dict[str, Any]) -> GenerativeModel:
        """Sets up learning from checked arguments; returns the model the kernels are built
        on: ``model`` with the normalized priors where parameters are given (each agent's
        learned arrays then replace those per agent)."""
        self._learning_settings = checked
        self._learning = None
        if not learns(checked):
            return model
        self._learning = Learning(model, self.n_agents, checked, self.backend, self.num_threads)
        return self._learning.expected_model(model)

    def _learning_kernel(self, model: GenerativeModel, policies: np.ndarray) -> None:
        """Wraps the factorized kernel just built on ``model`` into the learning one."""
        if self._learning is not None:
            self._kernel = learning_kernel(self._kernel, self._learning, model, policies, self.gamma, self.num_threads)

    def _parameter_list(self, name: str) -> list[np.ndarray] | None:
        arrays = None if self._learning is None else self._learning.parameters[name]
        return None if arrays is None else list(arrays)  # the arrays, not the population's list

    @property
    def pA(self) -> list[np.ndarray] | None:
        """One (agents, observations, *states) array of Dirichlet parameters per modality (None
        without ``pA``): the learned modalities' arrays are the agents' own (writable, in
        place); the others are read-only views of one shared array."""
        return self._parameter_list("pA")

    @property
    def pB(self) -> list[np.ndarray] | None:
        """One (agents, states, states, controls) array per factor (None without ``pB``); the
        learned factors' are the agents' own, the others shared read-only views."""
        return self._parameter_list("pB")

    @property
    def pD(self) -> list[np.ndarray] | None:
        """One (agents, states) array per factor (None without ``pD``), as ``pB``."""
        return self._parameter_list("pD")

    @property
    def learned(self) -> dict[str, list[int]]:
        """The modalities (``"pA"``) and factors (``"pB"``, ``"pD"``) whose arrays are per agent."""
        if self._learning is None:
            return {"pA": [], "pB": [], "pD": []}
        return {k: list(v) for k, v in self._learning.learned.items()}

    def _learning_or_refuse(self, name: str, parameter: str) -> Learning:
        if self._learning is None or self._learning.parameters[parameter] is None:
            raise ValueError(f"{name}: this population has no {parameter} (it was built with {parameter}=None)")
        return self._learning

    def update_A(self, observations: Any) -> list[np.ndarray] | None:
        """pymdp's ``update_A`` for every agent: each learned ``pA[m]`` gains ``lr_pA`` times
        the current posterior (``qs``) on the row of the observation; returns ``pA``."""
        obs = self._observations(observations, self.n_agents)
        learning = self._learning_or_refuse("update_A", "pA")
        learning.update_A(obs, self.beliefs)
        return self.pA

    def update_B(self, qs_prev: Any) -> list[np.ndarray] | None:
        """pymdp's ``update_B`` for every agent that has acted: each learned ``pB[f]`` gains
        ``lr_pB`` times ``qs[f] (x) qs_prev[f]`` on the slice of the agent's last action.
        ``qs_prev``: the posteriors before the last action, one (agents, states) array per
        factor (as ``qs``). Returns ``pB``."""
        learning = self._learning_or_refuse("update_B", "pB")
        previous = self._marginals(qs_prev, "qs_prev")
        actions = self.actions.reshape(self.n_agents, -1)
        learning.update_B(self.beliefs, previous, actions)
        return self.pB

    def update_D(self, qs_t0: Any = None) -> list[np.ndarray] | None:
        """pymdp's ``update_D`` for every agent: each learned ``pD[f]`` gains ``lr_pD`` times
        ``qs_t0[f]``, by default each agent's posterior at its first step since the last
        ``reset``. Returns ``pD``."""
        learning = self._learning_or_refuse("update_D", "pD")
        if qs_t0 is None:
            recorded = learning.qs_t0
            if recorded is None:  # pD given, no factor learned: nothing to update
                return self.pD
            if np.isnan(recorded).any():
                raise ValueError("qs_t0: some agents have inferred no states since the last reset; pass qs_t0")
            learning.update_D(recorded)
        else:
            learning.update_D(self._marginals(qs_t0, "qs_t0"))
        return self.pD

    def _marginals(self, value: Any, name: str) -> np.ndarray:
        """One (agents, states of f) float array per factor, checked against ``qs``, side by
        side as ``beliefs``."""
        if isinstance(value, np.ndarray) and value.dtype != object and len(self.qs) == 1:
            value = [value]
        if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != len(self.qs):
            raise ValueError(f"{name}: must be one (agents, states) array per factor ({len(self.qs)}), as qs")
        out = []
        for f, (given, q) in enumerate(zip(value, self.qs, strict=True)):
            try:
                a = np.asarray(given, np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{f}]: must be a numeric array") from None
            if a.shape != q.shape:
                raise ValueError(f"{name}[{f}]: must have shape {q.shape}, got {a.shape}")
            out.append(a)
        return np.ascontiguousarray(np.concatenate(out, axis=1))

    def _learning_step(self, observations: np.ndarray) -> np.ndarray:
        """pymdp's order: infer states, update_A, update_B (with the posterior before this
        step), infer policies, act."""
        learning = self._learning
        assert learning is not None
        if learning.native is not None:  # the Rust kernel: the whole step in one pass
            return self._native_learning_step(learning, observations)
        previous = self.beliefs.copy() if learning.learned["pB"] else None
        everyone = slice(None)
        self._run(everyone, observations, infer=True, plan=False, act=False)
        if learning.learned["pA"]:
            learning.update_A(observations, self.beliefs)
        if previous is not None:
            learning.update_B(self.beliefs, previous, self.actions.reshape(self.n_agents, -1))
        self._run(everyone, None, infer=False, plan=True, act=True)
        result: np.ndarray = self.actions.copy()
        return result

    def _native_learning_step(self, learning: Learning, observations: np.ndarray) -> np.ndarray:
        actions = self.actions.reshape(self.n_agents, -1)
        starting = actions[:, 0] < 0
        own = learning.rows(slice(None))
        arrays = (self.beliefs, self.q_pi, self.G, self.F, actions, self.timesteps)
        self._kernel.step_learning(
            *arrays,
            observations=observations,
            key=self._key,
            first_row=self.row_offset,
            pa=list(own.A.values()),
            pb=list(own.B.values()),
            pd=list(own.D.values()),
            lr_pa=learning.lr_pA,
            lr_pb=learning.lr_pB,
        )
        if learning.qs_t0 is not None:
            learning.qs_t0[starting] = self.beliefs[starting]
        result: np.ndarray = self.actions.copy()
        return result

    def _run_learning(
        self, rows: slice, arrays: tuple[np.ndarray, ...], observations: np.ndarray | None, first_row: int, phases: Any
    ) -> None:
        """One call of the kernel of agents that learn, on ``rows``; records each agent's
        posterior at its first step since the last reset (for ``update_D``)."""
        learning = self._learning
        assert learning is not None
        beliefs, q_pi, G, F, actions, timesteps = arrays
        infer, plan, act = phases
        starting = actions[:, 0] < 0
        if learning.native is not None:  # the Rust kernel
            own = learning.rows(rows)
            self._kernel.run(
                *arrays,
                observations=observations,
                key=self._key,
                first_row=first_row,
                infer=infer,
                plan=plan,
                act=act,
                pa=list(own.A.values()),
                pb=list(own.B.values()),
                pd=list(own.D.values()),
            )
            if infer and learning.qs_t0 is not None:
                learning.qs_t0[rows][starting] = beliefs[starting]
            return
        offset = rows.start or 0
        for block in blocks(len(beliefs)):  # temporaries of O(BLOCK_ROWS) agents, not of all
            agents = slice(offset + block.start, offset + block.stop)
            kernel = self._kernel.bind(learning.rows(agents))
            b_beliefs, b_actions, b_starting = beliefs[block], actions[block], starting[block]
            if infer:
                b_observations = None if observations is None else observations[block]
                kernel.infer_states(b_beliefs, b_actions, b_observations, F[block])
                if learning.qs_t0 is not None:
                    learning.qs_t0[agents][b_starting] = b_beliefs[b_starting]
            if plan:
                kernel.infer_policies(b_beliefs, q_pi[block], G[block])
            if act:
                kernel.sample_action(q_pi[block], b_actions, timesteps[block], self._key, first_row + block.start)

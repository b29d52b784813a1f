"""AgentPopulation: many active-inference agents of one model, stepped together. The agents'
state lives in a few contiguous arrays (one row per agent); the kernel (Rust with rayon and the
GIL released, or numpy vectorized over agents) updates them in place."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _backend, _validate
from .._cpus import available_cpus
from . import _py
from ._learning import check_learning_arguments, learns
from ._learning_population import LearningPopulation
from ._model import EPS, INFO_EPS, GenerativeModel
from ._policies import check_policies, construct_policies, control_factors
from ._population_agent import PopulationAgent
from ._population_checks import (
    MAX_THREADS,
    _inference_params,
    _key_of,
    _physical_memory,
    _positive_float,
    _single_factor_policies,
    check_observation_ranges,
    check_observations,
)
from ._py_factors import FactorKernel, factor_arrays

__all__ = ["AgentPopulation", "PopulationAgent"]

_STATE_KEYS = ("beliefs", "q_pi", "G", "F", "actions", "timesteps", "key")
# Policies are planned step by step (recursively, in the single-factor kernels).
MAX_POLICY_LEN = 64


class AgentPopulation(LearningPopulation):
    """``n_agents`` agents of one ``GenerativeModel`` (pymdp 0.0.7.1's VANILLA agent with
    ``inference_horizon=1``), all stepped by one call.

    The arrays are the population's own, zero-copy: ``beliefs`` (agents, states), ``q_pi`` and
    ``G`` (agents, policies), ``F`` (agents,), ``actions`` (the last action of each agent, -1
    before the first) and ``timesteps``. ``step(observations)`` runs state inference, policy
    inference and action selection for every agent; ``infer_states``, ``infer_policies`` and
    ``sample_action`` run one phase each. ``action_selection`` is ``"stochastic"`` (a softmax of
    the action marginals with precision ``alpha``, drawn from a per-agent stream of ``seed``:
    the same seed gives the same actions, on either backend) or ``"deterministic"`` (argmax).
    ``num_threads`` sizes the Rust kernel's thread pool (default: this machine's CPUs).
    ``row_offset``: the index of this population's first agent in a larger one split into
    parts (``DistributedPopulation`` shards): agent ``i`` then draws the random stream of agent
    ``row_offset + i``, so the parts together act exactly as the whole.

    Different agents (``agent(i)`` rows) may be stepped from different threads at once; the
    same rows must not be (the Rust backend refuses overlapping use with a ``TypeError``, numpy
    would race). ``reset`` restarts each agent's random stream too: episodes after a reset
    repeat their draws unless the population is built with another seed.

    Learning (pymdp's arguments): ``pA``, ``pB``, ``pD`` are Dirichlet parameters shaped as A, B,
    D (None: not learned); each agent owns those of ``modalities_to_learn`` / ``factors_to_learn``
    (``population.pA`` etc.) and its A, B, D are their normalized expectations. ``step(obs,
    learn=True)``, ``update_A``, ``update_B``, ``update_D`` learn at rates ``lr_pA``, ``lr_pB``,
    ``lr_pD``; ``use_param_info_gain`` adds pymdp's pA/pB information gain to G.
    """

    def __init__(
        self,
        model: GenerativeModel,
        n_agents: int,
        *,
        policy_len: int = 1,
        control_fac_idx: Any = None,
        policies: Any = None,
        inference_params: dict[str, Any] | None = None,
        sampling_mode: str = "marginal",
        gamma: float = 8.0,
        alpha: float = 8.0,
        action_selection: str = "stochastic",
        use_utility: bool = True,
        use_states_info_gain: bool = True,
        seed: int | None = None,
        num_threads: int | None = None,
        row_offset: int = 0,
        backend: str | None = None,
        pA: Any = None,
        pB: Any = None,
        pD: Any = None,
        lr_pA: float = 1.0,
        lr_pB: float = 1.0,
        lr_pD: float = 1.0,
        modalities_to_learn: Any = "all",
        factors_to_learn: Any = "all",
        use_param_info_gain: bool = False,
    ) -> None:
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model: must be a GenerativeModel, not {type(model).__name__}")
        n_agents = _validate.integer(n_agents, "n_agents", minimum=1)
        policy_len = _validate.integer(policy_len, "policy_len", minimum=1, maximum=MAX_POLICY_LEN)
        _validate.choice(action_selection, "action_selection", ("stochastic", "deterministic"))
        if num_threads is None:
            num_threads = min(available_cpus(), MAX_THREADS)
        num_threads = _validate.integer(num_threads, "num_threads", minimum=1, maximum=MAX_THREADS)
        use_utility = _validate.boolean(use_utility, "use_utility")
        use_states_info_gain = _validate.boolean(use_states_info_gain, "use_states_info_gain")
        self.sampling_mode = _validate.choice(sampling_mode, "sampling_mode", ("marginal", "full"))
        self.inference_params = _inference_params(inference_params)
        controlled = control_factors(model.num_controls, control_fac_idx)
        learning = check_learning_arguments(
            model,
            {
                "pA": pA,
                "pB": pB,
                "pD": pD,
                "lr_pA": lr_pA,
                "lr_pB": lr_pB,
                "lr_pD": lr_pD,
                "modalities_to_learn": modalities_to_learn,
                "factors_to_learn": factors_to_learn,
                "use_param_info_gain": use_param_info_gain,
            },
        )
        # One-factor models with pymdp's default policies keep the single-factor kernels; any
        # other model or option runs the factorized kernels (Rust or numpy, by backend).
        self.factorized = (
            learns(learning)  # agents that learn run the factorized kernels
            or model.factorized
            or policies is not None
            or self.sampling_mode == "full"
            or controlled != control_factors(model.num_controls, None)
        )
        self.control_fac_idx = controlled
        if policies is not None:
            policy_array = check_policies(policies, model.num_controls)
            if policy_len not in (1, policy_array.shape[1]):
                raise ValueError(
                    f"policy_len: {policy_len} disagrees with the policies' length {policy_array.shape[1]}"
                )
            policy_len = policy_array.shape[1]
        elif self.factorized:
            policy_array = construct_policies(model.num_controls, policy_len, controlled)
        else:
            policy_array = _single_factor_policies(model.num_actions, policy_len)
        policy_array.setflags(write=False)
        self._policies = policy_array
        num_policies = len(policy_array)
        if model.E is not None and len(model.E) != num_policies:
            raise ValueError(
                f"E: the model's E has {len(model.E)} entries but policy_len={policy_len} gives {num_policies} policies"
            )
        self.model, self.n_agents, self.policy_len = model, int(n_agents), int(policy_len)
        self.gamma, self.alpha = _positive_float(gamma, "gamma"), _positive_float(alpha, "alpha")
        self.action_selection, self.num_threads = action_selection, int(num_threads)
        self.backend = _backend.resolve(backend)
        self._key = _key_of(seed)
        self.row_offset = _validate.integer(row_offset, "row_offset", minimum=0)
        # The arrays below, refused up front when they could never fit in this machine's memory.
        belief_columns = model.num_states if not model.factorized else sum(model.num_states)
        needed = self.n_agents * 8 * (belief_columns + 2 * num_policies + 2 + model.num_factors)
        if needed > _physical_memory():
            raise MemoryError(f"n_agents: {self.n_agents} agents need {needed} bytes, more than this machine has")
        E = np.full(num_policies, 1.0 / num_policies) if model.E is None else np.asarray(model.E, np.float64)
        flags = {
            "deterministic": action_selection == "deterministic",
            "use_utility": bool(use_utility),
            "use_states_info_gain": bool(use_states_info_gain),
        }
        log_E = np.log(E + EPS)
        model = self._start_learning(model, learning)  # the kernels' model: see LearningPopulation
        if self.factorized and self.backend == "rust":
            p = self.inference_params
            self._kernel = _backend.native().FactorKernelCore(
                *factor_arrays(model),
                E,
                policies=policy_array,
                gamma=self.gamma,
                alpha=self.alpha,
                deterministic=action_selection == "deterministic",
                full_sampling=self.sampling_mode == "full",
                use_utility=use_utility,
                use_states_info_gain=use_states_info_gain,
                num_iter=p["num_iter"],
                df=p["dF"],
                df_tol=p["dF_tol"],
                num_threads=self.num_threads,
            )
        elif self.factorized:
            p = self.inference_params
            self._kernel = FactorKernel(
                model,
                policy_array,
                self.gamma,
                self.alpha,
                deterministic=action_selection == "deterministic",
                sampling_mode=self.sampling_mode,
                use_utility=use_utility,
                use_states_info_gain=use_states_info_gain,
                log_E=log_E,
                num_iter=p["num_iter"],
                dF=p["dF"],
                dF_tol=p["dF_tol"],
            )
        elif self.backend == "rust":
            derived = model.derived(info_gain=bool(use_states_info_gain))
            self._kernel = _backend.native().AgentKernelCore(
                derived,
                self.policy_len,
                self.gamma,
                self.alpha,
                **flags,
                info_threshold=INFO_EPS,
                log_e=log_E,
                num_threads=self.num_threads,
            )
        else:
            derived = model.derived(info_gain=bool(use_states_info_gain))
            self._kernel = _py.AgentKernel(
                model, derived, self.policy_len, self.gamma, self.alpha, **flags, log_E=log_E
            )
        self._learning_kernel(model, policy_array)
        n = self.n_agents
        self._num_states = (model.num_states,) if not model.factorized else tuple(model.num_states)
        self._beliefs = np.empty((n, belief_columns))
        offsets = np.cumsum((0,) + self._num_states)
        self._qs = tuple(self._beliefs[:, offsets[f] : offsets[f + 1]] for f in range(len(self._num_states)))
        self._q_pi = np.empty((n, num_policies))
        self._G = np.empty((n, num_policies))
        self._F = np.empty(n)
        self._actions = np.empty((n, model.num_factors) if model.factorized else n, np.int64)
        self._timesteps = np.empty(n, np.int64)
        self.reset()

    @classmethod
    def from_pymdp(
        cls,
        agent: Any,
        n_agents: int,
        *,
        seed: int | None = None,
        num_threads: int | None = None,
        backend: str | None = None,
    ) -> AgentPopulation:
        """``n_agents`` copies of a configured pymdp 0.0.7.1 ``Agent``: its ``A, B, C, D, E``,
        policies, ``gamma``, ``alpha``, flags, ``inference_params``, ``action_selection``,
        ``sampling_mode`` and learning settings (``pA``, ``pB``, ``pD`` as they are now, learning
        rates, ``modalities_to_learn``, ``factors_to_learn``, ``use_param_info_gain``), each copy
        starting afresh. A setting this package cannot reproduce (``inference_algo="MMP"``,
        ``inference_horizon > 1``) is a ``ValueError`` naming it."""
        from ._pymdp import population_arguments

        model, kwargs = population_arguments(agent, backend)
        return cls(model, n_agents, seed=seed, num_threads=num_threads, backend=backend, **kwargs)

    # The arrays are the population's own: read and write them in place; they cannot be
    # replaced (the kernels rely on their dtype, shape and C order).
    beliefs = property(
        lambda self: self._beliefs,
        doc="(agents, states) posteriors over states; for several "
        "factors, each agent's factor marginals side by side (see qs)",
    )
    qs = property(lambda self: self._qs, doc="one (agents, num_states[f]) view of beliefs per factor")
    policies = property(lambda self: self._policies, doc="(policies, policy_len, factors) controls, pymdp's order")
    q_pi = property(lambda self: self._q_pi, doc="(agents, policies) posteriors over policies")
    G = property(lambda self: self._G, doc="(agents, policies) negative expected free energies")
    F = property(lambda self: self._F, doc="(agents,) variational free energy of the last state inference")
    actions = property(
        lambda self: self._actions,
        doc="(agents,) last actions, or (agents, factors) for several factors; -1 before the first",
    )
    timesteps = property(lambda self: self._timesteps, doc="(agents,) actions taken since the last reset")

    @property
    def num_policies(self) -> int:
        return int(self.q_pi.shape[1])

    def reset(self, agents: Iterable[int] | slice | None = None, *, parameters: bool = False) -> None:
        """Back to the start (uniform beliefs and q_pi, no action taken) for every agent, or for
        the agents given (indices, a boolean mask or a slice). Learned parameters are kept
        (learning lasts across episodes) unless ``parameters=True``, which restores the priors."""
        parameters = _validate.boolean(parameters, "parameters")
        rows: Any = slice(None) if agents is None else agents
        if not isinstance(rows, slice):
            rows = np.asarray(rows if isinstance(rows, np.ndarray) or np.ndim(rows) == 0 else list(rows))
            if rows.dtype == bool:
                if rows.shape != (self.n_agents,):
                    raise IndexError(f"agents: a boolean mask needs shape ({self.n_agents},), got {rows.shape}")
            elif rows.size == 0:
                rows = np.zeros(0, np.intp)
            elif rows.dtype.kind not in "iu":
                raise TypeError(f"agents: must be ints, a boolean mask or a slice, got {agents!r}")
            else:
                if rows.min() < -self.n_agents or rows.max() >= self.n_agents:
                    raise IndexError(f"agents: index out of range for {self.n_agents} agents, got {agents!r}")
                rows = rows.astype(np.intp).reshape(-1)
        for qs, states in zip(self._qs, self._num_states, strict=True):
            qs[rows] = 1.0 / states
        self.q_pi[rows] = 1.0 / self.num_policies
        self.G[rows] = 0.0
        self.F[rows] = 0.0
        self.actions[rows] = -1
        self.timesteps[rows] = 0
        if self._learning is not None:
            self._learning.reset(rows, parameters=parameters)

    def _observations(self, observations: Any, rows: int, *, ranges: bool = True) -> np.ndarray:
        return check_observations(self.model, observations, rows, ranges=ranges)

    def _check_ranges(self, actions: np.ndarray, observations: np.ndarray | None) -> None:
        if observations is not None:
            check_observation_ranges(self.model, observations)
        self._check_actions(actions, "actions:")

    def _check_actions(self, actions: np.ndarray, name: str) -> None:
        actions = actions.reshape(len(actions), -1)
        for f, count in enumerate(self.model.num_controls):
            column = actions[:, f]
            if column.size and (column.min() < -1 or column.max() >= count):
                which = f" of factor {f}" if self.model.factorized else ""
                raise ValueError(f"{name} must lie in [-1, {count}){which}")

    def _run(self, rows: slice, observations: np.ndarray | None, *, infer: bool, plan: bool, act: bool) -> None:
        arrays = (
            self.beliefs[rows],
            self.q_pi[rows],
            self.G[rows],
            self.F[rows],
            self.actions[rows],
            self.timesteps[rows],
        )
        # The native kernels check every row's actions and observations before they step any: the
        # checks here, whose messages name the factor or modality, run for the others first, and
        # for a native kernel only once it has refused (they cost more than its step of a T-maze).
        native = self.backend == "rust" and self._learning is None
        if not native:
            self._check_ranges(arrays[4], observations)
        first = (rows.start or 0) + self.row_offset
        beliefs, q_pi, G, F, actions, timesteps = arrays
        if self.factorized:
            actions = actions.reshape(len(actions), -1)  # a view: (agents, factors)
            if self._learning is not None:
                arrays = (beliefs, q_pi, G, F, actions, timesteps)
                self._run_learning(rows, arrays, observations, first, (infer, plan, act))
                return
        try:
            self._kernel.run(
                beliefs,
                q_pi,
                G,
                F,
                actions,
                timesteps,
                observations=observations,
                key=self._key,
                first_row=first,
                infer=infer,
                plan=plan,
                act=act,
            )
        except ValueError:
            self._check_ranges(arrays[4], observations)
            raise

    def step(self, observations: Any, *, learn: bool = False) -> np.ndarray:
        """State inference from ``observations`` ((agents,) or (agents, modalities) ints),
        policy inference and action selection for every agent; returns the actions (a copy).
        With ``learn=True``, the learned parameters are updated as well, in pymdp's order:
        infer states, ``update_A``, ``update_B``, infer policies, act."""
        if _validate.boolean(learn, "learn") and self._learning is not None:
            return self._learning_step(self._observations(observations, self.n_agents))
        observations = self._observations(observations, self.n_agents, ranges=False)
        self._run(slice(None), observations, infer=True, plan=True, act=True)
        result: np.ndarray = self.actions.copy()
        return result

    def infer_states(self, observations: Any) -> np.ndarray:
        """Updates and returns ``beliefs`` (and ``F``) from ``observations``."""
        observations = self._observations(observations, self.n_agents, ranges=False)
        self._run(slice(None), observations, infer=True, plan=False, act=False)
        result: np.ndarray = self.beliefs
        return result

    def infer_policies(self) -> tuple[np.ndarray, np.ndarray]:
        """Updates and returns ``(q_pi, G)`` from the current beliefs."""
        self._run(slice(None), None, infer=False, plan=True, act=False)
        return self.q_pi, self.G

    def sample_action(self) -> np.ndarray:
        """Chooses every agent's next action from ``q_pi``; returns the actions (a copy)."""
        self._run(slice(None), None, infer=False, plan=False, act=True)
        result: np.ndarray = self.actions.copy()
        return result

    def agent(self, index: int) -> PopulationAgent:
        """A FreeAgentics-style agent object over row ``index`` (see ``PopulationAgent``)."""
        return PopulationAgent(self, index)

    def save_state(self) -> dict[str, Any]:
        """A copy of the whole population's state, in the form ``AgentStateStore`` stores."""
        state: dict[str, Any] = {k: getattr(self, k).copy() for k in _STATE_KEYS[:-1]}
        state["key"] = np.array(self._key, np.uint64)
        if self._learning is not None:
            state.update(self._learning.state())
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restores a ``save_state`` result (``ValueError`` if it does not fit this population)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state: missing {', '.join(missing)}")
        values = {name: np.asarray(state[name]) for name in _STATE_KEYS}
        for name in _STATE_KEYS[:-1]:
            target = getattr(self, name)
            if values[name].shape != target.shape:
                raise ValueError(f"state: {name} has shape {values[name].shape}, this population needs {target.shape}")
            if target.dtype.kind == "i" and values[name].dtype.kind not in "iu":
                raise ValueError(f"state: {name} must be integers")
        self._check_actions(values["actions"], "state: actions")
        key = values["key"]
        if key.shape != () or key.dtype.kind not in "iu" or not 0 <= int(key) < 1 << 64:
            raise ValueError("state: key must be one unsigned 64-bit integer")
        learned = None if self._learning is None else self._learning.check_state(state)
        for name in _STATE_KEYS[:-1]:
            getattr(self, name)[...] = values[name]
        self._key = int(key)
        if learned is not None:
            self._learning.load(learned)  # type: ignore[union-attr]

    def __len__(self) -> int:
        return self.n_agents

    def __repr__(self) -> str:
        return f"<AgentPopulation {self.n_agents} agents, {self.num_policies} policies, backend={self.backend!r}>"

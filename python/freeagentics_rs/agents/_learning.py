"""Agents that learn: each agent's own Dirichlet parameters over A, B and D, and pymdp 0.0.7.1's
updates of them (``update_obs_likelihood_dirichlet``, ``update_state_likelihood_dirichlet``,
``update_state_prior_dirichlet``) for every agent at once.

Only the learned arrays are per agent: ``pA[m]`` for the modalities in ``modalities_to_learn``,
``pB[f]`` and ``pD[f]`` for the factors in ``factors_to_learn``, each one (agents, *shape)
float64 array. The other given parameters stay shared: each is one read-only array, seen per
agent through a broadcast view that costs nothing. An agent's A, B and D are the normalized
expectations of its parameters (pymdp's ``norm_dist_obj_arr``), computed where they are used,
so writing a parameter array in place changes the agent's model at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _validate
from ._model import GenerativeModel, _factors, _modalities, _store

__all__ = ["BLOCK_ROWS", "Learning", "RowParameters", "blocks", "check_learning_arguments", "learns", "normalized"]

# The numpy backend works on at most this many agents at a time, so one step's temporaries take
# O(BLOCK_ROWS) memory whatever the population's size (freed temporaries stay in the heap). A
# multiple of 64, so each row of a block's arrays keeps its place within SIMD and BLAS groups
# and the results are those of one call over every agent, bit for bit.
BLOCK_ROWS = 1024


def blocks(count: int) -> list[slice]:
    """``range(count)`` in consecutive slices of at most ``BLOCK_ROWS`` rows."""
    return [slice(start, min(start + BLOCK_ROWS, count)) for start in range(0, count, BLOCK_ROWS)]


_DEFAULTS: dict[str, Any] = {
    "pA": None,
    "pB": None,
    "pD": None,
    "lr_pA": 1.0,
    "lr_pB": 1.0,
    "lr_pD": 1.0,
    "modalities_to_learn": "all",
    "factors_to_learn": "all",
    "use_param_info_gain": False,
}


def normalized(p: np.ndarray, axis: int = 0) -> np.ndarray:
    """The expectation of Dirichlet parameters whose categories lie along ``axis``."""
    result: np.ndarray = p / p.sum(axis=axis, keepdims=True)
    return result


def _parameters(value: Any, name: str, shapes: Sequence[tuple[int, ...]], what: str) -> list[np.ndarray] | None:
    """``value`` (None, or one array per modality or factor) checked against the model's shapes."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{name}: must be a list of arrays (one per {what}) or None, not {type(value).__name__}")
    items = _modalities(value, name) if name == "pA" else _factors(value, 3 if name == "pB" else 1)
    if len(items) != len(shapes):
        raise ValueError(f"{name}: needs one array per {what} ({len(shapes)}), got {len(items)}")
    arrays = []
    for k, (item, shape) in enumerate(zip(items, shapes, strict=True)):
        try:
            a = np.array(item, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{k}]: must be a numeric array") from None
        if a.shape != shape:
            raise ValueError(f"{name}[{k}]: must have shape {shape} (as the model's array), got {a.shape}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{name}[{k}]: must be finite and non-negative")
        if (a.sum(axis=0) <= 0).any():
            raise ValueError(f"{name}[{k}]: every column needs a positive sum")
        arrays.append(a)
    return arrays


def _selection(value: Any, name: str, count: int, what: str) -> list[int]:
    """``"all"`` or a list of distinct indices below ``count``, as a sorted list."""
    if isinstance(value, str):
        if value != "all":
            raise ValueError(f"{name}: must be 'all' or a list of {what} indices, got {value!r}")
        return list(range(count))
    if isinstance(value, bytes) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{name}: must be 'all' or a list of {what} indices, not {type(value).__name__}")
    chosen = [_validate.integer(v, name, minimum=0, maximum=count - 1) for v in value]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"{name}: indices must be distinct, got {chosen!r}")
    return sorted(chosen)


def learns(checked: dict[str, Any]) -> bool:
    """Whether checked learning arguments give any Dirichlet parameters."""
    return any(checked[name] is not None for name in ("pA", "pB", "pD"))


def check_learning_arguments(model: GenerativeModel, arguments: dict[str, Any]) -> dict[str, Any]:
    """The learning arguments checked (errors name the argument)."""
    unknown = set(arguments) - set(_DEFAULTS)
    assert not unknown, unknown
    a = {**_DEFAULTS, **arguments}
    num_states = model.num_states if model.factorized else (model.num_states,)
    A_shapes = [tuple(np.shape(x)) for x in model.A]
    B_shapes = [(s, s, c) for s, c in zip(num_states, model.num_controls, strict=True)]
    checked: dict[str, Any] = {
        "pA": _parameters(a["pA"], "pA", A_shapes, "modality"),
        "pB": _parameters(a["pB"], "pB", B_shapes, "factor"),
        "pD": _parameters(a["pD"], "pD", [(s,) for s in num_states], "factor"),
        "modalities_to_learn": _selection(a["modalities_to_learn"], "modalities_to_learn", len(A_shapes), "modality"),
        "factors_to_learn": _selection(a["factors_to_learn"], "factors_to_learn", len(num_states), "factor"),
        "use_param_info_gain": _validate.boolean(a["use_param_info_gain"], "use_param_info_gain"),
    }
    for name in ("lr_pA", "lr_pB", "lr_pD"):
        checked[name] = _validate.real(a[name], name, minimum=0.0)
    return checked


@dataclass
class RowParameters:
    """Some agents' rows of the learned arrays (views): ``A`` maps a modality to (rows,
    observations, joint states), ``B`` a factor to (rows, states, states, controls), ``D`` a
    factor to (rows, states)."""

    A: dict[int, np.ndarray]
    B: dict[int, np.ndarray]
    D: dict[int, np.ndarray]


class Learning:
    """The Dirichlet parameters of a population's agents and their updates."""

    def __init__(
        self, model: GenerativeModel, n_agents: int, checked: dict[str, Any], backend: str, num_threads: int
    ) -> None:
        from .. import _backend

        self.n_agents, self.num_threads = n_agents, num_threads
        # The updates run in the Rust core on its backend (rayon over agents, detached).
        self.native = _backend.native() if backend == "rust" else None
        self.num_states = model.num_states if model.factorized else (model.num_states,)
        self.lr_pA, self.lr_pB, self.lr_pD = checked["lr_pA"], checked["lr_pB"], checked["lr_pD"]
        self.modalities_to_learn = checked["modalities_to_learn"]
        self.factors_to_learn = checked["factors_to_learn"]
        self.use_param_info_gain = checked["use_param_info_gain"]
        store = _store(backend)
        # The priors: shared, read-only; ``reset(parameters=True)`` goes back to them.
        self.priors: dict[str, list[np.ndarray] | None] = {
            name: None if checked[name] is None else [store.intern(p) for p in checked[name]]
            for name in ("pA", "pB", "pD")
        }
        self.learned: dict[str, list[int]] = {
            "pA": [] if checked["pA"] is None else list(self.modalities_to_learn),
            "pB": [] if checked["pB"] is None else list(self.factors_to_learn),
            "pD": [] if checked["pD"] is None else list(self.factors_to_learn),
        }
        needed = 0
        for name, indices in self.learned.items():
            priors = self.priors[name]
            needed += 0 if priors is None else 8 * n_agents * sum(priors[i].size for i in indices)
        from ._population_checks import _physical_memory

        if needed > _physical_memory():
            raise MemoryError(
                f"n_agents: {n_agents} agents' parameters need {needed} bytes, more than this machine has"
            )
        self.parameters: dict[str, list[np.ndarray] | None] = {}
        for name, priors in self.priors.items():
            if priors is None:
                self.parameters[name] = None
                continue
            arrays = []
            for i, prior in enumerate(priors):
                if i in self.learned[name]:
                    own = np.empty((n_agents,) + prior.shape)
                    own[...] = prior
                    arrays.append(own)
                else:
                    arrays.append(np.broadcast_to(prior, (n_agents,) + prior.shape))
            self.parameters[name] = arrays
        # Each agent's posterior at its first step since the last reset (for update_D).
        self.qs_t0 = np.full((n_agents, sum(self.num_states)), np.nan) if self.learned["pD"] else None

    def expected_model(self, model: GenerativeModel) -> GenerativeModel:
        """The model whose arrays are the normalized priors where parameters are given: the
        shared part of every agent's model (learned arrays are replaced per agent)."""
        A = (
            [np.asarray(a) for a in model.A]
            if self.priors["pA"] is None
            else [normalized(p) for p in self.priors["pA"]]
        )
        B_given = model.B if model.factorized else [model.B]
        D_given = model.D if model.factorized else [model.D]
        B = (
            [np.asarray(b) for b in B_given]
            if self.priors["pB"] is None
            else [normalized(p) for p in self.priors["pB"]]
        )
        D = (
            [np.asarray(d) for d in D_given]
            if self.priors["pD"] is None
            else [normalized(p) for p in self.priors["pD"]]
        )
        if not model.factorized:
            return GenerativeModel(A, B[0], list(model.C), D[0], E=model.E, backend=model.backend)
        return GenerativeModel(A, B, list(model.C), D, E=model.E, backend=model.backend)

    def rows(self, rows: slice) -> RowParameters:
        """Views of the learned arrays' ``rows``, joint states flattened."""
        p = self.parameters

        def of(name: str) -> dict[int, np.ndarray]:
            arrays = p[name]
            return {} if arrays is None else {i: arrays[i][rows] for i in self.learned[name]}

        A = {m: a.reshape(a.shape[0], a.shape[1], -1) for m, a in of("pA").items()}
        return RowParameters(A, of("pB"), of("pD"))

    # --- the updates, every agent at once ----------------------------------------------------

    def _split(self, beliefs: np.ndarray) -> list[np.ndarray]:
        offsets = np.cumsum((0,) + tuple(self.num_states))
        return [beliefs[:, offsets[f] : offsets[f + 1]] for f in range(len(self.num_states))]

    def update_A(self, observations: np.ndarray, beliefs: np.ndarray) -> None:
        """pymdp's ``update_obs_likelihood_dirichlet``: the observed row of each learned pA[m]
        gains ``lr_pA`` times the joint posterior, where pA (so A) is positive. ``beliefs``:
        (agents, sum of num_states), as the population's."""
        if self.native is not None:
            for m in self.learned["pA"]:
                pA = self.parameters["pA"][m]  # type: ignore[index]
                self.native.dirichlet_update_a(
                    pA, pA.shape[1], list(self.num_states), observations, m, beliefs, self.lr_pA, self.num_threads
                )
            return
        if not self.learned["pA"]:
            return
        for block in blocks(self.n_agents):
            joint = _outer(self._split(beliefs[block]))
            agents = np.arange(len(joint))
            for m in self.learned["pA"]:
                own = self.parameters["pA"][m][block]  # type: ignore[index]
                pA = own.reshape(len(joint), -1, joint.shape[1])  # a view: the rows are contiguous
                observed = pA[agents, observations[block, m]]
                pA[agents, observations[block, m]] = observed + self.lr_pA * (joint * (observed > 0))

    def update_B(self, beliefs: np.ndarray, previous: np.ndarray, actions: np.ndarray) -> None:
        """pymdp's ``update_state_likelihood_dirichlet``: pB[f][:, :, action] gains ``lr_pB``
        times qs[f] (x) qs_prev[f] where it is positive; agents with no action yet are left.
        ``beliefs``, ``previous``: (agents, sum of num_states); ``actions`` (agents, factors)."""
        if self.native is not None:
            for f in self.learned["pB"]:
                pB = self.parameters["pB"][f]  # type: ignore[index]
                self.native.dirichlet_update_b(
                    pB, pB.shape[3], list(self.num_states), f, actions, beliefs, previous, self.lr_pB, self.num_threads
                )
            return
        for block in blocks(self.n_agents):
            qs, qs_prev = self._split(beliefs[block]), self._split(previous[block])
            for f in self.learned["pB"]:
                pB = self.parameters["pB"][f][block]  # type: ignore[index]
                for control in np.unique(actions[block, f]):
                    if control < 0:
                        continue
                    rows = np.flatnonzero(actions[block, f] == control)
                    old = pB[rows, :, :, control]
                    gain = qs[f][rows, :, None] * qs_prev[f][rows, None, :]
                    pB[rows, :, :, control] = old + self.lr_pB * (gain * (old > 0))

    def update_D(self, qs_t0: np.ndarray) -> None:
        """pymdp's ``update_state_prior_dirichlet``: pD[f] gains ``lr_pD`` times qs_t0[f] where
        it is positive; ``qs_t0`` (agents, sum of num_states)."""
        if self.native is not None:
            for f in self.learned["pD"]:
                pD = self.parameters["pD"][f]  # type: ignore[index]
                self.native.dirichlet_update_d(pD, list(self.num_states), f, qs_t0, self.lr_pD, self.num_threads)
            return
        for block in blocks(self.n_agents):
            marginals = self._split(qs_t0[block])
            for f in self.learned["pD"]:
                pD = self.parameters["pD"][f][block]  # type: ignore[index]
                pD += self.lr_pD * (marginals[f] * (pD > 0))

    def reset(self, rows: Any, *, parameters: bool) -> None:
        """Forgets ``rows``' first posteriors, and with ``parameters`` their learning too."""
        if self.qs_t0 is not None:
            self.qs_t0[rows] = np.nan
        if parameters:
            for name, indices in self.learned.items():
                for i in indices:
                    self.parameters[name][i][rows] = self.priors[name][i]  # type: ignore[index]

    def state(self) -> dict[str, Any]:
        """Copies of the learned arrays (None where shared), for ``save_state``."""
        out: dict[str, Any] = {}
        for name, arrays in self.parameters.items():
            if arrays is not None:
                out[name] = [a.copy() if i in self.learned[name] else None for i, a in enumerate(arrays)]
        if self.qs_t0 is not None:
            out["qs_t0"] = self.qs_t0.copy()
        return out

    def check_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """The learned arrays of a ``save_state`` result, checked (``ValueError`` naming what
        does not fit); nothing is changed."""
        checked: dict[str, Any] = {}
        keys = [name for name, arrays in self.parameters.items() if arrays is not None]
        keys += ["qs_t0"] if self.qs_t0 is not None else []
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state: missing {', '.join(missing)}")
        for name in keys:
            if name == "qs_t0":
                checked[name] = _fitting(state[name], "state: qs_t0", self.qs_t0.shape)  # type: ignore[union-attr]
                continue
            given = state[name]
            arrays = self.parameters[name]
            if not isinstance(given, (list, tuple)) or len(given) != len(arrays):  # type: ignore[arg-type]
                raise ValueError(f"state: {name} must be a list of {len(arrays)} entries")  # type: ignore[arg-type]
            checked[name] = {
                i: _fitting(given[i], f"state: {name}[{i}]", arrays[i].shape)  # type: ignore[index]
                for i in self.learned[name]
            }
        return checked

    def load(self, checked: dict[str, Any]) -> None:
        for name, values in checked.items():
            if name == "qs_t0":
                self.qs_t0[...] = values  # type: ignore[index]
            else:
                for i, value in values.items():
                    self.parameters[name][i][...] = value  # type: ignore[index]

    # --- one agent's part (``PopulationAgent.get_state`` / ``set_state``) -------------------

    def agent_state(self, agent: int) -> dict[str, Any]:
        """Copies of ``agent``'s rows of the learned arrays (None where shared) and of its
        first posterior since the last reset (NaN before its first step)."""
        out: dict[str, Any] = {}
        for name, arrays in self.parameters.items():
            if arrays is not None:
                out[name] = [a[agent].copy() if i in self.learned[name] else None for i, a in enumerate(arrays)]
        if self.qs_t0 is not None:
            out["qs_t0"] = self.qs_t0[agent].copy()
        return out

    def check_agent_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """One agent's learned arrays of an ``agent_state`` result, checked as the constructor
        checks the priors (errors name the key); nothing is changed. Entries for shared
        arrays are not read."""
        keys = [name for name, arrays in self.parameters.items() if arrays is not None]
        keys += ["qs_t0"] if self.qs_t0 is not None else []
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state: missing {', '.join(missing)}")
        checked: dict[str, Any] = {}
        for name in keys:
            given = state[name]
            if name == "qs_t0":
                qs_t0 = _numbers(given, "state: qs_t0", self.qs_t0.shape[1:])  # type: ignore[union-attr]
                if not (np.isnan(qs_t0).all() or (np.isfinite(qs_t0).all() and (qs_t0 >= 0).all())):
                    raise ValueError("state: qs_t0 must be all NaN (no step since reset) or finite and non-negative")
                checked[name] = qs_t0
                continue
            arrays = self.parameters[name]
            assert arrays is not None
            if isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple)):
                raise TypeError(
                    f"state: {name} must be a list (one array or None per entry), not {type(given).__name__}"
                )
            if len(given) != len(arrays):
                raise ValueError(f"state: {name} must have {len(arrays)} entries, got {len(given)}")
            checked[name] = {}
            for i in self.learned[name]:
                key = f"state: {name}[{i}]"
                value = _numbers(given[i], key, arrays[i].shape[1:])
                if not np.isfinite(value).all() or (value < 0).any():
                    raise ValueError(f"{key} must be finite and non-negative")
                if (value.sum(axis=0) <= 0).any():
                    raise ValueError(f"{key} needs a positive sum in every column")
                checked[name][i] = value
        return checked

    def load_agent(self, checked: dict[str, Any], agent: int) -> None:
        for name, values in checked.items():
            if name == "qs_t0":
                self.qs_t0[agent] = values  # type: ignore[index]
            else:
                for i, value in values.items():
                    self.parameters[name][i][agent] = value  # type: ignore[index]


def _numbers(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of ``shape``: ``TypeError`` unless it holds (non-bool)
    numbers, ``ValueError`` for another shape."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):  # ragged
        a = np.asarray(None)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of numbers, not {type(value).__name__}")
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, needs {shape}")
    return a.astype(np.float64)


def _fitting(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a numeric array") from None
    if a.shape != shape:
        raise ValueError(f"{name}: has shape {a.shape}, this population needs {shape}")
    return a


def _outer(marginals: Sequence[np.ndarray]) -> np.ndarray:
    """Per row, the outer product of the factors' marginals, flattened in C order (rows, S)."""
    joint = np.asarray(marginals[0])
    for q in marginals[1:]:
        joint = (joint[:, :, None] * q[:, None, :]).reshape(len(q), -1)
    return joint

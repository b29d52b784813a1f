"""GenerativeModel: one hidden-state factor, any number of observation modalities, validated and
interned; and the quantities both kernels precompute from it once.

The kernels evaluate pymdp 0.0.7.1's VANILLA agent, rearranged (exactly, up to rounding) so that
no per-agent work repeats per-model work:
* expected utility of predicted states ``qs``: sum_m (A_m qs) . ln softmax(C_m) = qs . utility,
  with ``utility[s] = sum_m sum_o A_m[o, s] ln(softmax(C_m)[o] + 1e-16)``;
* state information gain (pymdp's ``spm_MDP_G``): over the states with ``qs > exp(-16)``,
  ``sum qs[s] H[s] - qo . ln(qo + 1e-16)``, where ``po_s`` is the joint outcome distribution of
  state ``s`` (the outer product of its A columns), ``H[s] = po_s . ln(po_s + exp(-16))`` and
  ``qo = sum qs[s] po_s``;
* state inference: softmax(ln(L + 1e-16) + ln(prior + 1e-16)) = (L + 1e-16)(prior + 1e-16),
  normalized, with L the product of the observed rows of the A matrices;
* free energy (pymdp's VANILLA agent has none; this is FreeAgentics'): complexity KL(q || D)
  minus accuracy sum_s q[s] sum_m ln(A_m[o_m, s] + 1e-16).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate
from ..memory import SharedModelStore

__all__ = ["GenerativeModel", "grid_world_model", "reward_grid_model", "policies_of"]

EPS = 1e-16  # pymdp's EPS_VAL
INFO_EPS = float(np.exp(-16))  # spm_MDP_G's threshold and epsilon, as numpy computes it
TIE = 1e-12  # relative: action marginals this close to the best one are tied
_TOLERANCE = 1e-6
MAX_EXPLORER_GRID = 64
_STORES: dict[str, SharedModelStore] = {}


def _store(backend: str) -> SharedModelStore:
    if backend not in _STORES:
        _STORES[backend] = SharedModelStore(backend=backend)
    return _STORES[backend]


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a numeric array") from None
    if a.ndim != ndim:
        raise ValueError(f"{name}: must have {ndim} dimension{'s' * (ndim > 1)}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: must be finite")
    return a


def _numeric(given: Any, as_float64: np.ndarray) -> np.ndarray:
    """The array to intern: as given if it is a float array (B may be float32), else float64."""
    given = np.asarray(given)
    return given if given.dtype.kind == "f" else as_float64


def _distribution(a: np.ndarray, name: str) -> None:
    if (a < 0).any():
        raise ValueError(f"{name}: must be non-negative")
    sums = a.sum(axis=0)
    if not np.allclose(sums, 1.0, rtol=0, atol=_TOLERANCE):
        raise ValueError(
            f"{name}: columns must sum to 1 (within {_TOLERANCE}); "
            f"worst sum is {sums.flat[np.abs(sums - 1).argmax()]:.6g}"
        )


def _modalities(value: Any, name: str) -> list[Any]:
    """One array per modality: a list, tuple or pymdp object array of them, or one array (a
    list of numbers is one array)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = list(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name}: needs at least one modality")
        if all(np.ndim(v) == 0 for v in value):
            return [value]
        return list(value)
    return [value]


def _factors(value: Any, ndim: int) -> list[Any]:
    """B (``ndim`` 3) or D (``ndim`` 1) as one item per factor: a list, tuple or pymdp object
    array of arrays, or one array (nested lists of numbers are one array)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = list(value.reshape(-1))
        return items if items else [value]
    if isinstance(value, (list, tuple)) and value:
        try:
            if all(np.ndim(v) == ndim for v in value):
                return list(value)
        except ValueError:  # a ragged nested list: one (invalid) array, reported below
            pass
    return [value]


def _transitions(B_in: list[Any]) -> list[np.ndarray]:
    """The factors' transition arrays, each checked: (states, states, controls), columns sum to 1."""
    Bs = [_array(b, f"B[{f}]", 3) for f, b in enumerate(B_in)]
    for f, b in enumerate(Bs):
        if b.shape[0] != b.shape[1] or b.shape[0] < 1:
            raise ValueError(f"B[{f}]: must have shape (states, states, controls), got {b.shape}")
        if b.shape[2] < 1:
            raise ValueError(f"B[{f}]: needs at least one control, got shape {b.shape}")
        _distribution(b, f"B[{f}]")
    return Bs


class GenerativeModel:
    """A pymdp-style generative model: ``A`` (one array per modality, (observations,
    *num_states)), ``B`` (one (states, states, controls) array per hidden-state factor), ``C``
    (one log-preference vector per modality; ``None``: zeros), ``D`` (one prior per factor;
    ``None``: uniform) and optionally ``E``, a prior over policies. Lists, tuples and pymdp
    object arrays are accepted; one factor or one modality may be given as a bare array. The
    arrays are validated and interned: models built from equal arrays share one read-only copy.

    A one-factor model keeps the single-factor API: ``B`` and ``D`` are arrays, ``num_states``
    and ``num_actions`` ints. A model of several factors has lists ``B`` and ``D`` and tuples
    ``num_states`` and ``num_controls``. Both have ``num_obs``, ``num_controls``,
    ``num_factors`` and ``num_modalities``.
    """

    B: np.ndarray | list[np.ndarray]  # an array for one factor, a list for several (see above)
    D: np.ndarray | list[np.ndarray]

    def __init__(self, A: Any, B: Any, C: Any, D: Any, *, E: Any = None, backend: str | None = None) -> None:
        from .. import _backend

        self.backend = _backend.resolve(backend)
        B_factors = _factors(B, 3)
        if len(B_factors) > 1:
            self._init_factors(A, B_factors, C, D)
        else:
            self._init_single(A, B_factors[0], C, D)
        if E is not None:
            E = _array(E, "E", 1)
            if (E < 0).any() or not E.any():
                raise ValueError("E: must be non-negative and not all zero")
            E = E / E.sum()  # pymdp takes ln E as given; a constant shift leaves q_pi unchanged
        self.E = None if E is None else _store(self.backend).intern(E)
        self._derived: dict[str, np.ndarray] | None = None
        self._joint: dict[str, np.ndarray] | None = None
        self._factor_derived: dict[bool, dict[str, Any]] = {}

    def _init_single(self, A: Any, B_in: Any, C: Any, D: Any) -> None:
        A_in = _modalities(A, "A")
        As = [_array(a, f"A[{m}]", 2) for m, a in enumerate(A_in)]
        B = _array(B_in, "B", 3)
        if D is None:
            D = np.full(B.shape[0], 1.0 / max(B.shape[0], 1))
        D_factors = _factors(D, 1)
        if len(D_factors) != 1:
            raise ValueError(f"D: needs one vector per factor of B (1), got {len(D_factors)}")
        D = _array(D_factors[0], "D", 1)
        C_in = [np.zeros(a.shape[0]) for a in As] if C is None else _modalities(C, "C")
        Cs = [_array(c, f"C[{m}]", 1) for m, c in enumerate(C_in)]
        states = D.shape[0]
        if B.shape[0] != states or B.shape[1] != states:
            raise ValueError(
                f"B: must have shape (states, states, actions) with states = len(D) = {states}, got {B.shape}"
            )
        if B.shape[2] < 1:
            raise ValueError("B: needs at least one action")
        if len(Cs) != len(As):
            raise ValueError(f"C: needs one vector per modality of A ({len(As)}), got {len(Cs)}")
        for m, (a, c) in enumerate(zip(As, Cs, strict=True)):
            if a.shape[1] != states:
                raise ValueError(f"A[{m}]: must have {states} columns (one per state), got shape {a.shape}")
            if c.shape[0] != a.shape[0]:
                raise ValueError(
                    f"C[{m}]: must have {a.shape[0]} entries (one per observation of A[{m}]), got {c.shape[0]}"
                )
            _distribution(a, f"A[{m}]")
        _distribution(B, "B")
        _distribution(D, "D")
        store = _store(self.backend)
        # Interned as given (B keeps its float32, say): one copy per distinct model.
        self.A = [store.intern(_numeric(a, As[m])) for m, a in enumerate(A_in)]
        self.B = store.intern(_numeric(B_in, B))
        self.C = [store.intern(_numeric(c, Cs[m])) for m, c in enumerate(C_in)]
        self.D = store.intern(D)
        self.num_states, self.num_actions = states, B.shape[2]
        self.num_controls = (B.shape[2],)
        self.num_factors = 1
        self.num_obs = tuple(a.shape[0] for a in As)

    def _init_factors(self, A: Any, B_in: list[Any], C: Any, D: Any) -> None:
        Bs = _transitions(B_in)
        num_states = tuple(b.shape[0] for b in Bs)
        factors = len(Bs)
        D_in = [np.full(n, 1.0 / n) for n in num_states] if D is None else _factors(D, 1)
        if len(D_in) != factors:
            raise ValueError(f"D: needs one vector per factor of B ({factors}), got {len(D_in)}")
        Ds = [_array(d, f"D[{f}]", 1) for f, d in enumerate(D_in)]
        for f, d in enumerate(Ds):
            if d.shape[0] != num_states[f]:
                raise ValueError(f"D[{f}]: must have {num_states[f]} entries (the states of B[{f}]), got {d.shape[0]}")
            _distribution(d, f"D[{f}]")
        A_in = _modalities(A, "A")
        As = [_array(a, f"A[{m}]", factors + 1) for m, a in enumerate(A_in)]
        for m, a in enumerate(As):
            if a.shape[1:] != num_states:
                raise ValueError(f"A[{m}]: state axes {a.shape[1:]} disagree with the factors of B {num_states}")
            if a.shape[0] < 1:
                raise ValueError(f"A[{m}]: needs at least one observation, got shape {a.shape}")
            _distribution(a, f"A[{m}]")
        C_in = [np.zeros(a.shape[0]) for a in As] if C is None else _modalities(C, "C")
        Cs = [_array(c, f"C[{m}]", 1) for m, c in enumerate(C_in)]
        if len(Cs) != len(As):
            raise ValueError(f"C: needs one vector per modality of A ({len(As)}), got {len(Cs)}")
        for m, (a, c) in enumerate(zip(As, Cs, strict=True)):
            if c.shape[0] != a.shape[0]:
                raise ValueError(
                    f"C[{m}]: must have {a.shape[0]} entries (one per observation of A[{m}]), got {c.shape[0]}"
                )
        store = _store(self.backend)
        self.A = [store.intern(_numeric(a, As[m])) for m, a in enumerate(A_in)]
        self.B = [store.intern(_numeric(b, Bs[f])) for f, b in enumerate(B_in)]
        self.C = [store.intern(_numeric(c, Cs[m])) for m, c in enumerate(C_in)]
        self.D = [store.intern(d) for d in Ds]
        self.num_states = num_states
        self.num_controls = tuple(b.shape[2] for b in Bs)
        self.num_factors = factors
        self.num_obs = tuple(a.shape[0] for a in As)

    @property
    def factorized(self) -> bool:
        """Whether the model has several hidden-state factors."""
        return self.num_factors > 1

    def __getattr__(self, name: str) -> Any:
        if name == "num_actions":  # only one-factor models set it
            raise AttributeError("num_actions: a model of several factors has num_controls, one per factor")
        raise AttributeError(name)

    @property
    def num_modalities(self) -> int:
        return len(self.num_obs)

    def derived(self, *, info_gain: bool = True) -> dict[str, np.ndarray]:
        """The per-model quantities of the kernels (see the module docstring), computed once
        from the interned arrays. The joint outcome distributions, whose size is the product of
        the modalities' observation counts times the states, are made only for ``info_gain``."""
        As = [np.asarray(a, np.float64) for a in self.A]
        if self._derived is None:
            Cs = [np.asarray(c, np.float64) for c in self.C]
            self._derived = _derive(As, np.asarray(self.B, np.float64), Cs, np.asarray(self.D, np.float64))
        if not info_gain:
            return {**self._derived, **_joint([np.ones((1, self.num_states))])}
        if self._joint is None:
            self._joint = _joint(As)
        return {**self._derived, **self._joint}

    def __repr__(self) -> str:
        if self.factorized:
            return (
                f"<GenerativeModel states={list(self.num_states)} controls={list(self.num_controls)} "
                f"observations={list(self.num_obs)}>"
            )
        return (
            f"<GenerativeModel states={self.num_states} actions={self.num_actions} observations={list(self.num_obs)}>"
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=0))
    result: np.ndarray = e / e.sum(axis=0)
    return result


def _derive(As: list[np.ndarray], B: np.ndarray, Cs: list[np.ndarray], D: np.ndarray) -> dict[str, np.ndarray]:
    states = D.shape[0]
    utility = np.zeros(states)
    for a, c in zip(As, Cs, strict=True):
        utility += np.log(_softmax(c) + EPS) @ a
    # Per action, (next, previous) by rows: the column-compressed form of its transpose.
    row_ptr, columns, values = _csc(B.transpose(2, 1, 0))
    obs_offsets = np.cumsum([0] + [a.shape[0] for a in As])
    return {
        "A_stacked": np.ascontiguousarray(np.concatenate(As, axis=0)),  # (sum of observations, states)
        "log_A_stacked": np.log(np.concatenate(As, axis=0) + EPS),
        "obs_offsets": obs_offsets.astype(np.int64),
        "b_ptr": row_ptr,  # (actions, states + 1)
        "b_columns": columns,
        "b_values": values,
        "utility": utility,
        "D": D,
        "log_D": np.log(D + EPS),
    }


def _joint(As: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each state's joint outcome distribution (the outer product of its A columns, in pymdp's
    spm_cross order: the first modality varies slowest) and H[s] = po_s . ln(po_s + exp(-16))."""
    states = As[0].shape[1]
    joint = np.ones((1, states))
    for a in As:
        joint = (joint[:, None, :] * a[None, :, :]).reshape(-1, states)
    ptr, rows, values = _csc(joint[None])
    return {
        "joint": np.ascontiguousarray(joint),
        "joint_ptr": ptr[0],
        "joint_rows": rows,
        "joint_values": values,
        "info_h": (joint * np.log(joint + INFO_EPS)).sum(axis=0),
    }


def _csc(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-compressed nonzeros of each matrix in a stack (k, rows, columns): pointers
    (k, columns + 1) into one array of rows and one of values, matrix after matrix."""
    k, _, columns = matrices.shape
    ptr = np.zeros((k, columns + 1), np.int64)
    rows, values = [], []
    offset = 0
    for i in range(k):
        col, row = np.nonzero(matrices[i].T)  # sorted by column, then row
        counts = np.bincount(col, minlength=columns)
        ptr[i] = offset + np.concatenate([[0], np.cumsum(counts)])
        rows.append(row)
        values.append(matrices[i][row, col])
        offset += len(row)
    return ptr, np.concatenate(rows).astype(np.int64), np.concatenate(values).astype(np.float64)


def policies_of(num_actions: int, policy_len: int) -> np.ndarray:
    """pymdp's ``construct_policies`` for one control factor: every action sequence of
    ``policy_len`` steps, in lexicographic order (policies, policy_len)."""
    return np.array(list(itertools.product(range(num_actions), repeat=policy_len)), dtype=np.int64).reshape(
        -1, policy_len
    )


def grid_world_model(grid_size: int = 10, *, start: int = 0, backend: str | None = None) -> GenerativeModel:
    """The FreeAgentics explorer agent's model on a ``grid_size`` x ``grid_size`` grid: 5
    observations (empty, obstacle, goal, agent, out of bounds), 5 actions (up, down, left, right,
    stay); cell = row * grid_size + column; ``start`` is the cell whose prior weight is doubled."""
    from ..workloads import explorer_model_arrays

    # The model is dense: grid_size**4 * 5 transition entries (335 MB at the bound).
    grid_size = _validate.integer(grid_size, "grid_size", minimum=1, maximum=MAX_EXPLORER_GRID)
    start = _validate.integer(start, "start", minimum=0, maximum=grid_size * grid_size - 1)
    m = explorer_model_arrays(grid_size, start)
    return GenerativeModel(m["A"], m["B"], m["C"], m["D"], backend=backend)


def reward_grid_model(*, cue_modality: bool = True, backend: str | None = None) -> GenerativeModel:
    """The 3x3 reward grid as one joint factor of 18 states (cell, context): observations are the
    cell (identity), the outcome (none, reward, punishment) and, if ``cue_modality``, a cue naming
    the context with reliability 0.9 at the centre (0.5 elsewhere). 5 actions, moves clipped at
    the edges; C prefers reward (3) over punishment (-3); D starts in cell 0, context 50/50."""
    cue_modality = _validate.boolean(cue_modality, "cue_modality")
    cells, contexts = 9, 2
    states = cells * contexts

    def state(cell: int, ctx: int) -> int:
        return ctx * cells + cell

    B = np.zeros((states, states, 5))
    for ctx, cell in itertools.product(range(contexts), range(cells)):
        row, col = divmod(cell, 3)
        for action, (dr, dc) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]):
            r, c = min(max(row + dr, 0), 2), min(max(col + dc, 0), 2)
            B[state(r * 3 + c, ctx), state(cell, ctx), action] = 1.0
    A_cell = np.zeros((cells, states))
    A_outcome = np.zeros((3, states))
    A_cue = np.zeros((2, states))
    good = {0: 2, 1: 6}  # context 0: reward top-right; context 1: bottom-left
    for ctx, cell in itertools.product(range(contexts), range(cells)):
        s = state(cell, ctx)
        A_cell[cell, s] = 1.0
        outcome = 1 if cell == good[ctx] else 2 if cell == good[1 - ctx] else 0
        A_outcome[outcome, s] = 1.0
        A_cue[:, s] = [0.9, 0.1] if ctx == 0 else [0.1, 0.9]
        if cell != 4:
            A_cue[:, s] = 0.5
    D = np.zeros(states)
    D[state(0, 0)] = D[state(0, 1)] = 0.5
    A: Sequence[np.ndarray] = [A_cell, A_outcome] + ([A_cue] if cue_modality else [])
    C = [np.zeros(cells), np.array([0.0, 3.0, -3.0])] + ([np.zeros(2)] if cue_modality else [])
    return GenerativeModel(list(A), B, C, D, backend=backend)

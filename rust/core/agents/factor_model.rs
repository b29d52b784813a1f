//! A factorized generative model prepared for the batched kernel (`factors.rs`): everything the
//! per-agent step needs that depends only on the model, built once by `PreparedModel::new` from
//! pymdp's arrays (A, B, C, D, E). A population shares one; a learning agent, whose arrays are
//! its own, can hold one of its own, since the step takes the prepared model as an argument.
//!
//! Joint states are in C order (the first factor varies slowest), as pymdp's `spm_cross`;
//! joint outcomes likewise over the modalities. The formulas are those of the numpy kernel
//! (`python/freeagentics_rs/agents/_py_factors.py`).

use super::{ln_fast, try_filled, Sparse, EPS};
use crate::core::error::CoreError;

/// pymdp's arrays of a factorized model, as they are given (float64, row-major).
pub struct FactorArrays {
    pub num_states: Vec<usize>,
    /// Per modality: A_m as (observations, joint states).
    pub a: Vec<Vec<f64>>,
    /// Per factor: B_f as pymdp's (next, previous, controls).
    pub b: Vec<Vec<f64>>,
    pub num_controls: Vec<usize>,
    /// Per modality: log preferences over its observations.
    pub c: Vec<Vec<f64>>,
    /// Per factor: the prior over its states at the first step.
    pub d: Vec<Vec<f64>>,
    /// The prior over policies.
    pub e: Vec<f64>,
}

/// Each joint state's joint outcome distribution `po_s` (the outer product of its A columns):
/// dense when few entries are zero, else only the nonzeros.
#[derive(Clone)]
pub enum OutcomeRows {
    /// (joint states, `padded` joint outcomes), row-major, the outcomes padded with zeros to a
    /// multiple of `OUTCOME_BLOCK` so that the expected outcomes add up in whole blocks.
    Dense { rows: Vec<f64>, padded: usize },
    /// Line s: the nonzeros of `po_s`.
    Sparse(Sparse),
}

/// Expected outcomes are accumulated this many at a time (in registers).
pub const OUTCOME_BLOCK: usize = 8;

/// What the states information gain (pymdp's `spm_MDP_G`) needs per model.
#[derive(Clone)]
pub struct Outcomes {
    pub count: usize,
    pub rows: OutcomeRows,
    /// `H[s] = po_s . ln(po_s + exp(-16))`.
    pub info_h: Vec<f64>,
}

/// The per-model quantities of the factorized kernel.
#[derive(Clone)]
pub struct PreparedModel {
    pub num_states: Vec<usize>,
    pub num_controls: Vec<usize>,
    /// Start of each factor's marginal in a belief row (factors + 1 entries).
    pub offsets: Vec<usize>,
    pub joint_states: usize,
    /// Per factor: how many joint states apart its consecutive states are (the product of the
    /// later factors' sizes, C order).
    pub strides: Vec<usize>,
    /// Row offsets of each modality in `a` (modalities + 1 entries).
    pub obs_offsets: Vec<usize>,
    /// Every modality's A stacked: (total observations, joint states), row-major.
    pub a: Vec<f64>,
    /// Per factor and control: B[:, :, control].
    pub transitions: Vec<Vec<Transition>>,
    pub d: Vec<Vec<f64>>,
    pub log_d: Vec<Vec<f64>>,
    /// `utility[s] = sum_m sum_o A_m[o, s] ln(softmax(C_m)[o] + 1e-16)`.
    pub utility: Vec<f64>,
    /// None when the kernel runs without states information gain.
    pub outcomes: Option<Outcomes>,
    /// ln(E + 1e-16).
    pub log_e: Vec<f64>,
    /// Per belief entry, `ln(1/n + 1e-16)` of its factor's uniform marginal (n states): the
    /// fixed point's starting marginals.
    pub uniform_log_q: Vec<f64>,
    /// Per joint observation (C order over the modalities), the log-likelihood
    /// `ln(prod_m A_m[o_m, s] + 1e-16)` of every joint state; None when the table would be
    /// large, or when A is an agent's own (the learning kernel computes it per step).
    pub log_likelihoods: Option<Vec<f64>>,
}

/// The most entries of the log-likelihood table (joint observations x joint states).
const MAX_LOG_LIKELIHOODS: usize = 1 << 15;

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

fn product(sizes: impl Iterator<Item = usize>, what: &str) -> Result<usize, CoreError> {
    sizes
        .into_iter()
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid(format!("{what}: too many or no entries")))
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// B[:, :, control] of one factor, laid out for pushing marginals through it.
#[derive(Clone)]
pub enum Transition {
    /// (previous, next), row-major: few zeros, or a small factor.
    Dense(Vec<f64>),
    /// Exactly one nonzero per column (deterministic moves): its row and value.
    OnePerColumn { next: Vec<usize>, values: Vec<f64> },
    /// Line `previous` holds the column's nonzeros.
    Sparse(Sparse),
}

/// Factors of at most this many states are pushed through B dense (`Transition::Dense`).
const SMALL_FACTOR: usize = 4;

/// Per control, the layout of each B[:, :, control] of a (next, previous, controls) array.
fn transitions_of(b: &[f64], n: usize, controls: usize) -> Result<Vec<Transition>, CoreError> {
    (0..controls)
        .map(|c| {
            let entry = |next: usize, previous: usize| b[(next * n + previous) * controls + c];
            let column = |previous: usize| (0..n).filter(move |&next| entry(next, previous) != 0.0);
            let nonzeros: usize = (0..n).map(|p| column(p).count()).sum();
            // Small factors dense whatever their zeros: their sums stay in registers.
            if n > SMALL_FACTOR && (0..n).all(|p| column(p).count() == 1) {
                let next: Vec<usize> = (0..n).map(|p| column(p).next().unwrap_or(0)).collect();
                let values = (0..n).map(|p| entry(next[p], p)).collect();
                return Ok(Transition::OnePerColumn { next, values });
            }
            if n <= SMALL_FACTOR || nonzeros * 4 >= n * n * 3 {
                let rows = (0..n * n).map(|i| entry(i % n, i / n)).collect();
                return Ok(Transition::Dense(rows));
            }
            let mut sparse = Sparse {
                ptr: vec![0],
                index: Vec::new(),
                values: Vec::new(),
            };
            for previous in 0..n {
                for next in column(previous) {
                    sparse.index.push(next);
                    sparse.values.push(entry(next, previous));
                }
                sparse.ptr.push(sparse.index.len());
            }
            sparse.check(n, n, "B")?;
            Ok(Transition::Sparse(sparse))
        })
        .collect()
}

impl PreparedModel {
    /// The prepared model of `arrays`; the joint outcome tables only with `info_gain`.
    pub fn new(arrays: &FactorArrays, info_gain: bool) -> Result<PreparedModel, CoreError> {
        let factors = arrays.num_states.len();
        let modalities = arrays.a.len();
        if factors == 0
            || modalities == 0
            || arrays.b.len() != factors
            || arrays.num_controls.len() != factors
            || arrays.d.len() != factors
            || arrays.c.len() != modalities
        {
            return Err(invalid("model: inconsistent factors or modalities".into()));
        }
        let joint_states = product(arrays.num_states.iter().copied(), "model: joint states")?;
        let num_obs: Vec<usize> = arrays.c.iter().map(Vec::len).collect();
        let shapes_ok = (0..modalities).all(|m| {
            num_obs[m] > 0 && arrays.a[m].len() == num_obs[m].saturating_mul(joint_states)
        }) && (0..factors).all(|f| {
            let (n, k) = (arrays.num_states[f], arrays.num_controls[f]);
            k > 0 && arrays.b[f].len() == n * n * k && arrays.d[f].len() == n
        });
        if !shapes_ok {
            return Err(invalid("model: inconsistent sizes".into()));
        }
        let mut strides = vec![1; factors];
        for f in (0..factors.saturating_sub(1)).rev() {
            strides[f] = strides[f + 1] * arrays.num_states[f + 1];
        }
        let mut offsets = vec![0];
        let mut obs_offsets = vec![0];
        for &n in &arrays.num_states {
            offsets.push(offsets.last().unwrap() + n);
        }
        for &n in &num_obs {
            obs_offsets.push(obs_offsets.last().unwrap() + n);
        }
        let mut a = try_filled(obs_offsets[modalities] * joint_states, 0.0, "A")?;
        for (m, a_m) in arrays.a.iter().enumerate() {
            a[obs_offsets[m] * joint_states..obs_offsets[m + 1] * joint_states]
                .copy_from_slice(a_m);
        }
        let mut utility = try_filled(joint_states, 0.0, "utility")?;
        for (a_m, c_m) in arrays.a.iter().zip(&arrays.c) {
            let log_c: Vec<f64> = softmax(c_m).iter().map(|p| (p + EPS).ln()).collect();
            for (o, &lc) in log_c.iter().enumerate() {
                for (u, &p) in utility.iter_mut().zip(&a_m[o * joint_states..]) {
                    *u += lc * p;
                }
            }
        }
        let transitions = (0..factors)
            .map(|f| transitions_of(&arrays.b[f], arrays.num_states[f], arrays.num_controls[f]))
            .collect::<Result<_, _>>()?;
        let outcomes = match info_gain {
            true => Some(outcomes_of(arrays, &num_obs, joint_states)?),
            false => None,
        };
        let log_likelihoods = log_likelihoods_of(&a, &num_obs, joint_states)?;
        Ok(PreparedModel {
            num_states: arrays.num_states.clone(),
            num_controls: arrays.num_controls.clone(),
            offsets,
            joint_states,
            strides,
            obs_offsets,
            a,
            transitions,
            d: arrays.d.clone(),
            log_d: arrays
                .d
                .iter()
                .map(|d| d.iter().map(|p| (p + EPS).ln()).collect())
                .collect(),
            utility,
            outcomes,
            log_e: arrays.e.iter().map(|p| (p + EPS).ln()).collect(),
            uniform_log_q: arrays
                .num_states
                .iter()
                .flat_map(|&n| std::iter::repeat_n(ln_fast(1.0 / n as f64 + EPS), n))
                .collect(),
            log_likelihoods,
        })
    }

    /// The log-likelihood of `observation` (one index per modality) over the joint states
    /// into `out`, the same arithmetic as the table's.
    pub fn log_likelihood_into(&self, observation: &[i64], out: &mut [f64]) {
        let s = self.joint_states;
        out.fill(1.0); // the likelihood, for now
        for (modality, &o) in observation.iter().enumerate() {
            let row = (self.obs_offsets[modality] + o as usize) * s;
            for (l, &a) in out.iter_mut().zip(&self.a[row..row + s]) {
                *l *= a;
            }
        }
        for l in out.iter_mut() {
            *l = ln_fast(*l + EPS);
        }
    }

    /// The table's row of `observation`, when there is a table.
    pub fn log_likelihood_row(&self, observation: &[i64]) -> Option<&[f64]> {
        let table = self.log_likelihoods.as_ref()?;
        let mut index = 0;
        for (modality, &o) in observation.iter().enumerate() {
            let count = self.obs_offsets[modality + 1] - self.obs_offsets[modality];
            index = index * count + o as usize;
        }
        let s = self.joint_states;
        Some(&table[index * s..(index + 1) * s])
    }

    pub fn factors(&self) -> usize {
        self.num_states.len()
    }

    pub fn modalities(&self) -> usize {
        self.obs_offsets.len() - 1
    }

    pub fn belief_len(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }
}

/// The log-likelihood table (see `PreparedModel::log_likelihoods`) of the stacked A, or None
/// when it would exceed `MAX_LOG_LIKELIHOODS` entries.
fn log_likelihoods_of(
    a: &[f64],
    num_obs: &[usize],
    joint_states: usize,
) -> Result<Option<Vec<f64>>, CoreError> {
    let count = num_obs
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .and_then(|n| n.checked_mul(joint_states))
        .filter(|&n| n <= MAX_LOG_LIKELIHOODS);
    let Some(entries) = count else {
        return Ok(None);
    };
    let mut table = try_filled(entries, 1.0, "log-likelihoods")?;
    let mut row_of = vec![0usize; num_obs.len()];
    for (index, row) in table.chunks_exact_mut(joint_states).enumerate() {
        // The observation of this row: the index in mixed radix, the last modality fastest.
        let mut rest = index;
        for (m, &n) in num_obs.iter().enumerate().rev() {
            row_of[m] = rest % n;
            rest /= n;
        }
        let mut offset = 0;
        for (&o, &n) in row_of.iter().zip(num_obs) {
            let line = (offset + o) * joint_states;
            for (l, &p) in row.iter_mut().zip(&a[line..line + joint_states]) {
                *l *= p;
            }
            offset += n;
        }
        for l in row.iter_mut() {
            *l = ln_fast(*l + EPS);
        }
    }
    Ok(Some(table))
}

/// Each joint state's joint outcome distribution and its H (see `Outcomes`).
fn outcomes_of(
    arrays: &FactorArrays,
    num_obs: &[usize],
    joint_states: usize,
) -> Result<Outcomes, CoreError> {
    let count = product(num_obs.iter().copied(), "model: joint outcomes")?;
    let threshold = (-16f64).exp();
    let mut po = try_filled(count, 0.0, "joint outcomes")?;
    let mut info_h = try_filled(joint_states, 0.0, "joint outcomes")?;
    let mut total_nonzeros = 0usize;
    // po_s into `po` (count entries).
    let fill = |s: usize, po: &mut [f64]| {
        let mut len = 1;
        po[0] = 1.0;
        for (a_m, &n) in arrays.a.iter().zip(num_obs) {
            // Expand in place from the back: po[i * n + o] = po[i] * A_m[o, s].
            for i in (0..len).rev() {
                let p = po[i];
                for o in (0..n).rev() {
                    po[i * n + o] = p * a_m[o * joint_states + s];
                }
            }
            len *= n;
        }
    };
    // First pass: H and the number of nonzeros, which choose the layout.
    for (s, h) in info_h.iter_mut().enumerate() {
        fill(s, &mut po);
        *h = po.iter().map(|&p| p * (p + threshold).ln()).sum();
        total_nonzeros += po.iter().filter(|&&p| p != 0.0).count();
    }
    let dense = total_nonzeros.saturating_mul(4) >= count.saturating_mul(joint_states) * 3;
    let rows = if dense {
        let padded = count.div_ceil(OUTCOME_BLOCK) * OUTCOME_BLOCK;
        let mut rows = try_filled(padded.saturating_mul(joint_states), 0.0, "joint outcomes")?;
        for s in 0..joint_states {
            fill(s, &mut rows[s * padded..s * padded + count]);
        }
        OutcomeRows::Dense { rows, padded }
    } else {
        let mut sparse = Sparse {
            ptr: vec![0],
            index: Vec::new(),
            values: Vec::new(),
        };
        sparse
            .index
            .try_reserve_exact(total_nonzeros)
            .and_then(|_| sparse.values.try_reserve_exact(total_nonzeros))
            .map_err(|_| CoreError::Os(super::ENOMEM, "joint outcomes: cannot allocate".into()))?;
        for s in 0..joint_states {
            fill(s, &mut po);
            for (o, &p) in po.iter().enumerate().filter(|(_, &p)| p != 0.0) {
                sparse.index.push(o);
                sparse.values.push(p);
            }
            sparse.ptr.push(sparse.index.len());
        }
        OutcomeRows::Sparse(sparse)
    };
    Ok(Outcomes {
        count,
        rows,
        info_h,
    })
}

//! Agents that learn: pymdp 0.0.7.1's Dirichlet updates of each agent's own parameters
//! (`update_obs_likelihood_dirichlet`, `update_state_likelihood_dirichlet`,
//! `update_state_prior_dirichlet`) for every agent at once, rayon over agents, and the pieces
//! of the parameter information gain (`calc_pA_info_gain`, `calc_pB_info_gain`). The formulas
//! are those of the numpy backend (`python/freeagentics_rs/agents/_learning.py` and
//! `_learning_kernel.py`).
//!
//! Layouts (row-major, one block per agent): pA[m] (observations, joint states), pB[f] (next,
//! previous, controls), pD[f] (states); beliefs hold each agent's factor marginals side by side.
//! A parameter that is zero stays zero (pymdp masks the update with `A > 0`, `B > 0`, `pD > 0`).

use rayon::prelude::*;

use super::{pool_of, EPS, MAX_THREADS};
use crate::core::error::CoreError;

/// Agents per rayon task.
const CHUNK: usize = 64;

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

/// The factors of a population's beliefs.
pub struct Marginals {
    pub num_states: Vec<usize>,
    /// Start of each factor's marginal in a belief row (factors + 1 entries).
    pub offsets: Vec<usize>,
}

impl Marginals {
    pub fn new(num_states: &[usize]) -> Result<Marginals, CoreError> {
        if num_states.is_empty() || num_states.contains(&0) {
            return Err(invalid(
                "num_states: needs at least one factor, none empty".into(),
            ));
        }
        let mut offsets = vec![0];
        for &n in num_states {
            offsets.push(offsets.last().unwrap() + n);
        }
        Ok(Marginals {
            num_states: num_states.to_vec(),
            offsets,
        })
    }

    pub fn belief_len(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    pub fn joint_states(&self) -> usize {
        self.num_states.iter().product()
    }

    /// The outer product of one row's marginals in C order (the first factor varies slowest),
    /// multiplied in pymdp's `spm_cross` order.
    pub fn outer(&self, qs: &[f64], joint: &mut [f64]) {
        let n0 = self.num_states[0];
        joint[..n0].copy_from_slice(&qs[..n0]);
        let mut len = n0;
        for f in 1..self.num_states.len() {
            let q = &qs[self.offsets[f]..self.offsets[f + 1]];
            let n = q.len();
            for i in (0..len).rev() {
                let p = joint[i];
                for (k, &v) in q.iter().enumerate().rev() {
                    joint[i * n + k] = p * v;
                }
            }
            len *= n;
        }
    }
}

fn check_threads(threads: usize) -> Result<(), CoreError> {
    if (1..=MAX_THREADS).contains(&threads) {
        Ok(())
    } else {
        Err(invalid(format!(
            "num_threads: must be between 1 and {MAX_THREADS}, got {threads}"
        )))
    }
}

/// One agent's `update_A` of one modality: row `o` of `pa` (observations, joint states) gains
/// `lr` times `joint` where positive.
pub fn add_observation(pa: &mut [f64], o: usize, joint: &[f64], lr: f64) {
    let s = joint.len();
    for (p, &j) in pa[o * s..(o + 1) * s].iter_mut().zip(joint) {
        let mask = if *p > 0.0 { 1.0 } else { 0.0 };
        *p += lr * (j * mask);
    }
}

/// One agent's `update_B` of one factor: `pb[:, :, u]` ((next, previous, controls)) gains `lr`
/// times `qs (x) qs_prev` where positive.
pub fn add_transition(
    pb: &mut [f64],
    controls: usize,
    u: usize,
    qs: &[f64],
    qs_prev: &[f64],
    lr: f64,
) {
    let n = qs.len();
    for (next, &q) in qs.iter().enumerate() {
        for (previous, &qp) in qs_prev.iter().enumerate() {
            let p = &mut pb[(next * n + previous) * controls + u];
            let mask = if *p > 0.0 { 1.0 } else { 0.0 };
            *p += lr * (q * qp * mask);
        }
    }
}

/// `update_A` for modality `modality` of every agent: the observed row of each agent's pA gains
/// `lr` times its joint posterior where positive. `pa`: (agents, num_obs, joint states);
/// `observations`: (agents, modalities); `beliefs`: (agents, belief_len).
#[allow(clippy::too_many_arguments)]
pub fn update_a(
    pa: &mut [f64],
    num_obs: usize,
    marginals: &Marginals,
    observations: &[i64],
    modality: usize,
    modalities: usize,
    beliefs: &[f64],
    lr: f64,
    threads: usize,
) -> Result<(), CoreError> {
    check_threads(threads)?;
    let (s, b) = (marginals.joint_states(), marginals.belief_len());
    let block = num_obs * s;
    let agents = beliefs.len() / b.max(1);
    if block == 0
        || modality >= modalities
        || pa.len() != agents * block
        || beliefs.len() != agents * b
        || observations.len() != agents * modalities
    {
        return Err(invalid("update_A: inconsistent shapes".into()));
    }
    if observations
        .iter()
        .skip(modality)
        .step_by(modalities)
        .any(|&o| o < 0 || o as usize >= num_obs)
    {
        return Err(invalid(format!(
            "observations: modality {modality} must lie in [0, {num_obs})"
        )));
    }
    pool_of(threads)?.install(|| {
        pa.par_chunks_mut(block * CHUNK)
            .enumerate()
            .for_each(|(chunk, pa)| {
                let mut joint = vec![0.0; s];
                for (i, pa) in pa.chunks_mut(block).enumerate() {
                    let agent = chunk * CHUNK + i;
                    marginals.outer(&beliefs[agent * b..(agent + 1) * b], &mut joint);
                    let o = observations[agent * modalities + modality] as usize;
                    add_observation(pa, o, &joint, lr);
                }
            });
    });
    Ok(())
}

/// `update_B` for factor `factor` of every agent that has acted (action >= 0): pB[:, :, action]
/// gains `lr` times qs (x) qs_prev where positive. `pb`: (agents, n, n, controls); `actions`:
/// (agents, factors); `qs`, `qs_prev`: (agents, belief_len).
#[allow(clippy::too_many_arguments)]
pub fn update_b(
    pb: &mut [f64],
    num_controls: usize,
    marginals: &Marginals,
    factor: usize,
    actions: &[i64],
    qs: &[f64],
    qs_prev: &[f64],
    lr: f64,
    threads: usize,
) -> Result<(), CoreError> {
    check_threads(threads)?;
    let factors = marginals.num_states.len();
    if factor >= factors {
        return Err(invalid("update_B: no such factor".into()));
    }
    let (n, b) = (marginals.num_states[factor], marginals.belief_len());
    let block = n * n * num_controls;
    let agents = qs.len() / b;
    if block == 0
        || pb.len() != agents * block
        || qs.len() != agents * b
        || qs_prev.len() != qs.len()
        || actions.len() != agents * factors
    {
        return Err(invalid("update_B: inconsistent shapes".into()));
    }
    if actions
        .iter()
        .skip(factor)
        .step_by(factors)
        .any(|&a| a < -1 || a >= num_controls as i64)
    {
        return Err(invalid(format!(
            "actions: must lie in [-1, {num_controls}) of factor {factor}"
        )));
    }
    let start = marginals.offsets[factor];
    pool_of(threads)?.install(|| {
        pb.par_chunks_mut(block * CHUNK)
            .enumerate()
            .for_each(|(chunk, pb)| {
                for (i, pb) in pb.chunks_mut(block).enumerate() {
                    let agent = chunk * CHUNK + i;
                    let action = actions[agent * factors + factor];
                    if action < 0 {
                        continue;
                    }
                    let now = &qs[agent * b + start..agent * b + start + n];
                    let before = &qs_prev[agent * b + start..agent * b + start + n];
                    add_transition(pb, num_controls, action as usize, now, before, lr);
                }
            });
    });
    Ok(())
}

/// `update_D` for factor `factor` of every agent: pD gains `lr` times qs_t0 where positive.
/// `pd`: (agents, n); `qs_t0`: (agents, belief_len).
pub fn update_d(
    pd: &mut [f64],
    marginals: &Marginals,
    factor: usize,
    qs_t0: &[f64],
    lr: f64,
    threads: usize,
) -> Result<(), CoreError> {
    check_threads(threads)?;
    if factor >= marginals.num_states.len() {
        return Err(invalid("update_D: no such factor".into()));
    }
    let (n, b) = (marginals.num_states[factor], marginals.belief_len());
    let agents = qs_t0.len() / b;
    if pd.len() != agents * n || qs_t0.len() != agents * b {
        return Err(invalid("update_D: inconsistent shapes".into()));
    }
    let start = marginals.offsets[factor];
    pool_of(threads)?.install(|| {
        pd.par_chunks_mut(n * CHUNK)
            .enumerate()
            .for_each(|(chunk, pd)| {
                for (i, pd) in pd.chunks_mut(n).enumerate() {
                    let agent = chunk * CHUNK + i;
                    let q = &qs_t0[agent * b + start..agent * b + start + n];
                    for (p, &v) in pd.iter_mut().zip(q) {
                        if *p > 0.0 {
                            *p += lr * v;
                        }
                    }
                }
            });
    });
    Ok(())
}

/// `out` = `p` with each column normalized (the expectation of Dirichlet parameters whose
/// categories are the `rows` rows); `p` is (rows, columns).
pub fn normalize_columns(p: &[f64], rows: usize, out: &mut [f64], sums: &mut [f64]) {
    let columns = sums.len();
    sums.fill(0.0);
    for row in p.chunks_exact(columns).take(rows) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    for (o, row) in out.chunks_exact_mut(columns).zip(p.chunks_exact(columns)) {
        for ((x, &v), &s) in o.iter_mut().zip(row).zip(sums.iter()) {
            *x = v / s;
        }
    }
}

/// pymdp's `spm_wnorm` of `p` (rows, columns), zero where `p` is zero (as its info gain masks
/// it): `1 / sum_rows (p + eps) - 1 / (p + eps)`.
pub fn wnorm_columns(p: &[f64], out: &mut [f64], sums: &mut [f64]) {
    let columns = sums.len();
    sums.fill(0.0);
    for row in p.chunks_exact(columns) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v + EPS;
        }
    }
    for (o, row) in out.chunks_exact_mut(columns).zip(p.chunks_exact(columns)) {
        for ((x, &v), &s) in o.iter_mut().zip(row).zip(sums.iter()) {
            *x = if v > 0.0 {
                1.0 / s - 1.0 / (v + EPS)
            } else {
                0.0
            };
        }
    }
}

/// One modality's pA term of a policy step's value (to subtract from G's value):
/// `sum_o (A joint)[o] (wA joint)[o]`, `a` and `wa` (observations, joint states).
pub fn pa_gain(a: &[f64], wa: &[f64], joint: &[f64]) -> f64 {
    let s = joint.len();
    a.chunks_exact(s)
        .zip(wa.chunks_exact(s))
        .map(|(a_row, w_row)| {
            let (mut qo, mut wq) = (0.0, 0.0);
            for ((&x, &w), &j) in a_row.iter().zip(w_row).zip(joint) {
                qo += x * j;
                wq += w * j;
            }
            qo * wq
        })
        .sum()
}

/// One factor's pB term of a policy step's value (to subtract from G's value):
/// `qs . (wB[:, :, control] qs_prev)`, `wb` (next, previous, controls).
pub fn pb_gain(wb: &[f64], controls: usize, control: usize, qs: &[f64], qs_prev: &[f64]) -> f64 {
    let n = qs.len();
    qs.iter()
        .enumerate()
        .map(|(next, &q)| {
            let inner: f64 = qs_prev
                .iter()
                .enumerate()
                .map(|(previous, &p)| wb[(next * n + previous) * controls + control] * p)
                .sum();
            q * inner
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_is_c_order() {
        let m = Marginals::new(&[2, 3]).unwrap();
        let mut joint = vec![0.0; 6];
        m.outer(&[0.25, 0.75, 0.5, 0.25, 0.25], &mut joint);
        assert_eq!(joint, vec![0.125, 0.0625, 0.0625, 0.375, 0.1875, 0.1875]);
    }

    #[test]
    fn update_a_adds_the_joint_posterior_to_the_observed_row_where_positive() {
        let m = Marginals::new(&[2]).unwrap();
        // two agents, 2 observations x 2 states each
        let mut pa = vec![1.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0];
        let beliefs = [0.25, 0.75, 1.0, 0.0];
        let observations = [0, 1];
        update_a(&mut pa, 2, &m, &observations, 0, 1, &beliefs, 0.5, 2).unwrap();
        assert_eq!(pa, vec![1.125, 0.0, 1.0, 1.0, 2.0, 2.0, 2.5, 2.0]);
        let bad = update_a(&mut pa, 2, &m, &[0, 2], 0, 1, &beliefs, 0.5, 2);
        assert!(matches!(bad, Err(CoreError::InvalidArgument(_))));
        assert_eq!(pa[6], 2.5); // nothing changed by the refusal
    }

    #[test]
    fn update_b_skips_agents_without_an_action() {
        let m = Marginals::new(&[2]).unwrap();
        let mut pb = vec![1.0; 16]; // two agents, (2, 2, 2)
        let qs = [1.0, 0.0, 0.5, 0.5];
        let prev = [0.0, 1.0, 1.0, 0.0];
        update_b(&mut pb, 2, &m, 0, &[1, -1], &qs, &prev, 1.0, 1).unwrap();
        // agent 0, control 1: entry (next 0, previous 1) gains 1
        assert_eq!(pb[3], 2.0);
        assert_eq!(pb.iter().sum::<f64>(), 17.0);
    }

    #[test]
    fn update_d_keeps_zeros() {
        let m = Marginals::new(&[2, 2]).unwrap();
        let mut pd = vec![1.0, 0.0];
        update_d(&mut pd, &m, 0, &[0.5, 0.5, 0.1, 0.9], 2.0, 1).unwrap();
        assert_eq!(pd, vec![2.0, 0.0]);
    }

    #[test]
    fn normalized_and_wnorm_columns() {
        let p = [1.0, 3.0, 3.0, 0.0];
        let (mut out, mut sums) = (vec![0.0; 4], vec![0.0; 2]);
        normalize_columns(&p, 2, &mut out, &mut sums);
        assert_eq!(out, vec![0.25, 1.0, 0.75, 0.0]);
        wnorm_columns(&p, &mut out, &mut sums);
        assert!((out[0] - (1.0 / 4.0 - 1.0)).abs() < 1e-12 && out[3] == 0.0);
        let joint = [0.5, 0.5];
        let a = [0.25, 1.0, 0.75, 0.0];
        let gain = pa_gain(&a, &out, &joint);
        let expected: f64 = (0..2)
            .map(|o| {
                let qo: f64 = (0..2).map(|s| a[o * 2 + s] * joint[s]).sum();
                let wq: f64 = (0..2).map(|s| out[o * 2 + s] * joint[s]).sum();
                qo * wq
            })
            .sum();
        assert!((gain - expected).abs() < 1e-15);
    }
}

//! State inference of the factorized kernel (`factors.rs`): the empirical prior pushed through
//! B, the posterior by pymdp's fixed point over the factors' marginals, and F. Written over
//! `Lane`: one agent (`f64`) or four in lock-step (`F4`).

use super::{AgentRow, FactorKernel, Scratch};
use crate::core::agents::factor_model::{PreparedModel, Transition};
use crate::core::agents::lanes::Lane;
use crate::core::agents::{dot, softmax_with_log, EPS};

/// `out` = each factor's segment of `qs` pushed through its B for `controls` (see `Transition`).
#[inline(always)]
pub(in crate::core::agents) fn predict<L: Lane>(
    model: &PreparedModel,
    qs: &[L],
    controls: &[usize],
    out: &mut [L],
) {
    for (f, &c) in controls.iter().enumerate() {
        let (start, end) = (model.offsets[f], model.offsets[f + 1]);
        let (qs, out) = (&qs[start..end], &mut out[start..end]);
        match &model.transitions[f][c] {
            Transition::Dense(rows) => match out.len() {
                2 => push_small::<2, L>(qs, rows, out),
                3 => push_small::<3, L>(qs, rows, out),
                4 => push_small::<4, L>(qs, rows, out),
                n => {
                    out.fill(L::ZERO);
                    for (&q, row) in qs.iter().zip(rows.chunks_exact(n)) {
                        for (o, &v) in out.iter_mut().zip(row) {
                            *o += q * v;
                        }
                    }
                }
            },
            Transition::OnePerColumn { next, values } => {
                out.fill(L::ZERO);
                for ((&q, &n), &v) in qs.iter().zip(next).zip(values) {
                    out[n] += q * v;
                }
            }
            Transition::Sparse(b) => {
                out.fill(L::ZERO);
                for (previous, &q) in qs.iter().enumerate() {
                    let (from, to) = (b.ptr[previous], b.ptr[previous + 1]);
                    for (&next, &v) in b.index[from..to].iter().zip(&b.values[from..to]) {
                        out[next] += q * v;
                    }
                }
            }
        }
    }
}

/// `Transition::Dense`'s push of `qs` through `rows` for a factor of N states, the sums in
/// registers (added in the same order as the general loop).
#[inline(always)]
fn push_small<const N: usize, L: Lane>(qs: &[L], rows: &[f64], out: &mut [L]) {
    let mut sums = [L::ZERO; N];
    for (&q, row) in qs.iter().zip(rows.chunks_exact(N)) {
        let row: &[f64; N] = row.try_into().expect("N entries");
        for k in 0..N {
            sums[k] += q * row[k];
        }
    }
    out.copy_from_slice(&sums);
}

/// The outer product of the factors' marginals (C order): `joint[s] = (q_0 * q_1) * ... `,
/// expanded in place one factor at a time.
#[inline(always)]
pub(in crate::core::agents) fn outer<L: Lane>(model: &PreparedModel, qs: &[L], joint: &mut [L]) {
    if model.factors() == 2 {
        let (first, last) = (
            &qs[..model.offsets[1]],
            &qs[model.offsets[1]..model.offsets[2]],
        );
        for (chunk, &p) in joint.chunks_exact_mut(last.len()).zip(first) {
            for (o, &l) in chunk.iter_mut().zip(last) {
                *o = p * l;
            }
        }
        return;
    }
    joint[0] = L::splat(1.0);
    let mut len = 1;
    for f in 0..model.factors() {
        let marginal = &qs[model.offsets[f]..model.offsets[f + 1]];
        // Small factors unrolled: their loops would cost more than their products.
        match marginal.len() {
            2 => expand::<2, L>(joint, len, marginal),
            3 => expand::<3, L>(joint, len, marginal),
            4 => expand::<4, L>(joint, len, marginal),
            _ => expand_any(joint, len, marginal),
        }
        len *= marginal.len();
    }
}

/// `joint[i * N + k] = joint[i] * marginal[k]` for i < len, from the back so that nothing is
/// overwritten before it is read.
#[inline(always)]
fn expand<const N: usize, L: Lane>(joint: &mut [L], len: usize, marginal: &[L]) {
    let q: &[L; N] = marginal.try_into().expect("N entries");
    let (head, _) = joint.split_at_mut(len * N);
    for i in (0..len).rev() {
        let p = head[i];
        let out: &mut [L; N] = (&mut head[i * N..(i + 1) * N])
            .try_into()
            .expect("N entries");
        for k in 0..N {
            out[k] = p * q[k];
        }
    }
}

#[inline(always)]
fn expand_any<L: Lane>(joint: &mut [L], len: usize, marginal: &[L]) {
    let n = marginal.len();
    for i in (0..len).rev() {
        let p = joint[i];
        for (o, &q) in joint[i * n..(i + 1) * n].iter_mut().zip(marginal) {
            *o = p * q;
        }
    }
}

/// `sums[offsets[f] + k]` = the sum of `joint` over the joint states whose index in factor f is
/// k, added in increasing joint order (blocks of the factor's states, strided).
#[inline(always)]
fn factor_sums<L: Lane>(model: &PreparedModel, joint: &[L], sums: &mut [L]) {
    for f in 0..model.factors() {
        let (n, stride) = (model.num_states[f], model.strides[f]);
        let segment = &mut sums[model.offsets[f]..model.offsets[f + 1]];
        for (k, out) in segment.iter_mut().enumerate() {
            let mut sum = L::ZERO;
            for block in joint.chunks_exact(n * stride) {
                for &x in &block[k * stride..(k + 1) * stride] {
                    sum += x;
                }
            }
            *out = sum;
        }
    }
}

#[inline(always)]
fn free_energy<L: Lane>(qs: &[L], log_q: &[L], log_prior: &[L]) -> L {
    let mut total = L::ZERO;
    for ((&q, &lq), &lp) in qs.iter().zip(log_q).zip(log_prior) {
        total += q * lq - q * lp;
    }
    total
}

impl FactorKernel {
    /// State inference of `rows` (one per lane) from `observations` (theirs, one after the
    /// other): the posterior marginals into `sc.qs` and each row's `qs`, F into each row's `f`.
    #[inline(always)]
    pub(super) fn infer_states_lanes<L: Lane>(
        &self,
        model: &PreparedModel,
        rows: &mut [AgentRow<'_>],
        observations: &[i64],
        sc: &mut Scratch<L>,
    ) {
        let (factors, modalities) = (model.factors(), model.modalities());
        // Each agent's empirical prior and log-likelihood (their actions and observations are
        // their own), into its lane.
        for (k, row) in rows.iter().enumerate() {
            if row.actions[0] < 0 {
                for (f, d) in model.d.iter().enumerate() {
                    sc.prior_one[model.offsets[f]..model.offsets[f + 1]].copy_from_slice(d);
                }
            } else {
                for (c, &a) in sc.controls.iter_mut().zip(row.actions.iter()) {
                    *c = a as usize;
                }
                predict(model, &*row.qs, &sc.controls, &mut sc.prior_one);
            }
            for (lp, &p) in sc.log_prior.iter_mut().zip(&sc.prior_one) {
                lp.set_lane(k, p);
            }
            let observation = &observations[k * modalities..(k + 1) * modalities];
            // The model's table row, or this observation's log-likelihood computed here.
            let log_likelihood = match model.log_likelihood_row(observation) {
                Some(row) => row,
                None => {
                    model.log_likelihood_into(observation, &mut sc.log_likelihood_one);
                    &sc.log_likelihood_one
                }
            };
            for (l, &x) in sc.log_likelihood.iter_mut().zip(log_likelihood) {
                l.set_lane(k, x);
            }
        }
        for lp in sc.log_prior.iter_mut() {
            *lp = (*lp + L::splat(EPS)).ln_fast();
        }
        let accuracy = if factors == 1 {
            let terms = sc.log_likelihood.iter().zip(&sc.log_prior);
            for (q, (&ll, &lp)) in sc.qs.iter_mut().zip(terms) {
                *q = ll + lp;
            }
            softmax_with_log(&mut sc.qs, &mut sc.log_q);
            None
        } else {
            self.fixed_point(model, sc)
        };
        // F: sum_f q_f . (ln(q_f + eps) - ln D_f) - sum_s q(s) ln L[s].
        let mut free_energy = L::ZERO;
        for f in 0..factors {
            let (start, end) = (model.offsets[f], model.offsets[f + 1]);
            let marginal = sc.qs[start..end].iter().zip(&sc.log_q[start..end]);
            for ((&q, &lq), &ld) in marginal.zip(&model.log_d[f]) {
                free_energy += q * (lq - L::splat(ld));
            }
        }
        let free_energy = free_energy
            - accuracy.unwrap_or_else(|| {
                outer(model, &sc.qs, &mut sc.joint);
                dot(&sc.joint, &sc.log_likelihood)
            });
        for (k, row) in rows.iter_mut().enumerate() {
            for (q, &x) in row.qs.iter_mut().zip(&sc.qs) {
                *q = x.lane(k);
            }
            *row.f = free_energy.lane(k);
        }
    }

    /// pymdp's `run_vanilla_fpi` for several factors (see the numpy kernel), on `sc.qs`, each
    /// lane until its own stopping rule holds. Returns the accuracy `sum_s q(s) ln L[s]` of the
    /// final marginals when an iteration ran; leaves ln of the final marginals in `sc.log_q`
    /// (see `softmax_with_log`).
    #[inline(always)]
    fn fixed_point<L: Lane>(&self, model: &PreparedModel, sc: &mut Scratch<L>) -> Option<L> {
        let factors = model.factors();
        for f in 0..factors {
            let n = model.num_states[f];
            sc.qs[model.offsets[f]..model.offsets[f + 1]].fill(L::splat(1.0 / n as f64));
        }
        for (l, &u) in sc.log_q.iter_mut().zip(&model.uniform_log_q) {
            *l = L::splat(u);
        }
        let mut previous = free_energy(&sc.qs, &sc.log_q, &sc.log_prior);
        // pymdp's initial dF is the same for every lane.
        let mut active = L::splat(self.settings.df).at_least(self.settings.df_tol);
        let mut iteration = 0;
        let mut accuracy = None; // Some once sc.joint is the outer product of the new marginals
        while iteration < self.settings.num_iter && L::any(active) {
            if accuracy.is_none() {
                outer(model, &sc.qs, &mut sc.joint);
            }
            for ((ll, &l), &j) in sc.ll.iter_mut().zip(&sc.log_likelihood).zip(&sc.joint) {
                *ll = l * j;
            }
            factor_sums(model, &sc.ll, &mut sc.next);
            for f in 0..factors {
                let (start, end) = (model.offsets[f], model.offsets[f + 1]);
                let segment = sc.next[start..end].iter_mut().zip(&sc.qs[start..end]);
                for ((next, &q), &lp) in segment.zip(&sc.log_prior[start..end]) {
                    *next = *next / q + lp;
                }
                softmax_with_log(&mut sc.next[start..end], &mut sc.next_log[start..end]);
            }
            outer(model, &sc.next, &mut sc.joint);
            let fit = dot(&sc.joint, &sc.log_likelihood);
            let vfe = free_energy(&sc.next, &sc.next_log, &sc.log_prior) - fit;
            // The lanes still iterating take this iteration's results; the others keep theirs.
            for (q, &next) in sc.qs.iter_mut().zip(&sc.next) {
                *q = L::select(active, next, *q);
            }
            for (l, &next) in sc.log_q.iter_mut().zip(&sc.next_log) {
                *l = L::select(active, next, *l);
            }
            accuracy = Some(accuracy.map_or(fit, |a| L::select(active, fit, a)));
            let change = (previous - vfe).abs();
            previous = L::select(active, vfe, previous);
            active = L::and(active, change.at_least(self.settings.df_tol));
            iteration += 1;
        }
        accuracy
    }
}

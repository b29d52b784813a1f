//! State inference of the factorized kernel (`factors.rs`): the empirical prior pushed through
//! B, the posterior by pymdp's fixed point over the factors' marginals, and F.

use super::{FactorKernel, Scratch};
use crate::core::agents::factor_model::{PreparedModel, Transition};
use crate::core::agents::{dot, ln_fast, softmax_with_log, EPS};

/// `out` = each factor's segment of `qs` pushed through its B for `controls` (see `Transition`).
#[inline(always)]
pub(in crate::core::agents) fn predict(
    model: &PreparedModel,
    qs: &[f64],
    controls: &[usize],
    out: &mut [f64],
) {
    for (f, &c) in controls.iter().enumerate() {
        let (start, end) = (model.offsets[f], model.offsets[f + 1]);
        let (qs, out) = (&qs[start..end], &mut out[start..end]);
        out.fill(0.0);
        match &model.transitions[f][c] {
            Transition::Dense(rows) => match out.len() {
                2 => push_small::<2>(qs, rows, out),
                3 => push_small::<3>(qs, rows, out),
                4 => push_small::<4>(qs, rows, out),
                n => {
                    for (&q, row) in qs.iter().zip(rows.chunks_exact(n)) {
                        for (o, &v) in out.iter_mut().zip(row) {
                            *o += q * v;
                        }
                    }
                }
            },
            Transition::OnePerColumn { next, values } => {
                for ((&q, &n), &v) in qs.iter().zip(next).zip(values) {
                    out[n] += q * v;
                }
            }
            Transition::Sparse(b) => {
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
fn push_small<const N: usize>(qs: &[f64], rows: &[f64], out: &mut [f64]) {
    let mut sums = [0.0; N];
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
pub(in crate::core::agents) fn outer(model: &PreparedModel, qs: &[f64], joint: &mut [f64]) {
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
    joint[0] = 1.0;
    let mut len = 1;
    for f in 0..model.factors() {
        let marginal = &qs[model.offsets[f]..model.offsets[f + 1]];
        // Small factors unrolled: their loops would cost more than their products.
        match marginal.len() {
            2 => expand::<2>(joint, len, marginal),
            3 => expand::<3>(joint, len, marginal),
            4 => expand::<4>(joint, len, marginal),
            _ => expand_any(joint, len, marginal),
        }
        len *= marginal.len();
    }
}

/// `joint[i * N + k] = joint[i] * marginal[k]` for i < len, from the back so that nothing is
/// overwritten before it is read.
#[inline(always)]
fn expand<const N: usize>(joint: &mut [f64], len: usize, marginal: &[f64]) {
    let q: &[f64; N] = marginal.try_into().expect("N entries");
    let (head, _) = joint.split_at_mut(len * N);
    for i in (0..len).rev() {
        let p = head[i];
        let out: &mut [f64; N] = (&mut head[i * N..(i + 1) * N])
            .try_into()
            .expect("N entries");
        for k in 0..N {
            out[k] = p * q[k];
        }
    }
}

#[inline(always)]
fn expand_any(joint: &mut [f64], len: usize, marginal: &[f64]) {
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
fn factor_sums(model: &PreparedModel, joint: &[f64], sums: &mut [f64]) {
    for f in 0..model.factors() {
        let (n, stride) = (model.num_states[f], model.strides[f]);
        let segment = &mut sums[model.offsets[f]..model.offsets[f + 1]];
        for (k, out) in segment.iter_mut().enumerate() {
            let mut sum = 0.0;
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
fn free_energy(qs: &[f64], log_q: &[f64], log_prior: &[f64]) -> f64 {
    qs.iter()
        .zip(log_q)
        .zip(log_prior)
        .map(|((&q, &lq), &lp)| q * lq - q * lp)
        .sum()
}

impl FactorKernel {
    #[inline(always)]
    pub(super) fn infer_states_one(
        &self,
        model: &PreparedModel,
        qs: &mut [f64],
        actions: &[i64],
        observation: &[i64],
        f: &mut f64,
        sc: &mut Scratch,
    ) {
        let factors = model.factors();
        if actions[0] < 0 {
            for (k, d) in model.d.iter().enumerate() {
                sc.prior[model.offsets[k]..model.offsets[k + 1]].copy_from_slice(d);
            }
        } else {
            for (c, &a) in sc.controls.iter_mut().zip(actions) {
                *c = a as usize;
            }
            predict(model, qs, &sc.controls, &mut sc.prior);
        }
        for (lp, &p) in sc.log_prior.iter_mut().zip(&sc.prior) {
            *lp = ln_fast(p + EPS);
        }
        // The model's table row, or this observation's log-likelihood computed here.
        let mut computed = std::mem::take(&mut sc.log_likelihood);
        let log_likelihood = match model.log_likelihood_row(observation) {
            Some(row) => row,
            None => {
                model.log_likelihood_into(observation, &mut computed);
                &computed
            }
        };
        let accuracy = if factors == 1 {
            for ((q, &ll), &lp) in qs.iter_mut().zip(log_likelihood).zip(&sc.log_prior) {
                *q = ll + lp;
            }
            softmax_with_log(qs, &mut sc.log_q);
            None
        } else {
            self.fixed_point(model, qs, log_likelihood, sc)
        };
        // F: sum_f q_f . (ln(q_f + eps) - ln D_f) - sum_s q(s) ln L[s].
        let mut free_energy = 0.0;
        for k in 0..factors {
            let (start, end) = (model.offsets[k], model.offsets[k + 1]);
            let marginal = qs[start..end].iter().zip(&sc.log_q[start..end]);
            for ((&q, &lq), &ld) in marginal.zip(&model.log_d[k]) {
                free_energy += q * (lq - ld);
            }
        }
        *f = free_energy
            - accuracy.unwrap_or_else(|| {
                outer(model, qs, &mut sc.joint);
                dot(&sc.joint, log_likelihood)
            });
        sc.log_likelihood = computed;
    }

    /// pymdp's `run_vanilla_fpi` for several factors (see the numpy kernel). Returns the
    /// accuracy `sum_s q(s) ln L[s]` of the final marginals when an iteration ran; leaves
    /// ln of the final marginals in `sc.log_q` (see `softmax_with_log`).
    #[inline(always)]
    fn fixed_point(
        &self,
        model: &PreparedModel,
        qs: &mut [f64],
        log_likelihood: &[f64],
        sc: &mut Scratch,
    ) -> Option<f64> {
        let factors = model.factors();
        for k in 0..factors {
            let n = model.num_states[k];
            qs[model.offsets[k]..model.offsets[k + 1]].fill(1.0 / n as f64);
        }
        sc.log_q.copy_from_slice(&model.uniform_log_q);
        let mut previous = free_energy(qs, &sc.log_q, &sc.log_prior);
        let mut df = self.settings.df;
        let mut iteration = 0;
        let mut accuracy = None; // Some once sc.joint is the outer product of qs
        while iteration < self.settings.num_iter && df >= self.settings.df_tol {
            if accuracy.is_none() {
                outer(model, qs, &mut sc.joint);
            }
            for ((ll, &l), &j) in sc.ll.iter_mut().zip(log_likelihood).zip(&sc.joint) {
                *ll = l * j;
            }
            factor_sums(model, &sc.ll, &mut sc.next);
            for k in 0..factors {
                let (start, end) = (model.offsets[k], model.offsets[k + 1]);
                let segment = sc.next[start..end].iter_mut().zip(&qs[start..end]);
                for ((next, &q), &lp) in segment.zip(&sc.log_prior[start..end]) {
                    *next = *next / q + lp;
                }
                softmax_with_log(&mut sc.next[start..end], &mut sc.log_q[start..end]);
            }
            qs.copy_from_slice(&sc.next);
            outer(model, qs, &mut sc.joint);
            let fit = dot(&sc.joint, log_likelihood);
            accuracy = Some(fit);
            let vfe = free_energy(qs, &sc.log_q, &sc.log_prior) - fit;
            df = (previous - vfe).abs();
            previous = vfe;
            iteration += 1;
        }
        accuracy
    }
}

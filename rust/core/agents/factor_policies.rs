//! Policy evaluation of the factorized kernel (`factors.rs`): the policy prefix tree's predicted
//! marginals and node values (utility plus states information gain), summed into G and q_pi.

use super::states::{outer, predict};
use super::{FactorKernel, Scratch};
use crate::core::agents::factor_model::{OutcomeRows, PreparedModel, OUTCOME_BLOCK};
use crate::core::agents::{dot, ln_fast, softmax_in_place, EPS};

/// Blocks `first..first + G` of the expected outcomes `qo = sum_s joint[s] po_s` (each outcome
/// summed over the states in order), and `entropy` plus `qo ln(qo + eps)` of each of them, in
/// order. No tests, so the blocks vectorize: a zero outcome adds 0 ln(1e-16) = 0, and a state
/// below the threshold (set to 0) adds 0 to every outcome (a test per state costs more in
/// mispredicted branches than the work it saves).
#[inline(always)]
fn dense_entropy<const G: usize>(
    joint: &[f64],
    rows: &[f64],
    (padded, first): (usize, usize),
    mut entropy: f64,
) -> f64 {
    let mut qo = [[0.0; OUTCOME_BLOCK]; G];
    let (from, to) = (first * OUTCOME_BLOCK, (first + G) * OUTCOME_BLOCK);
    for (&q, row) in joint.iter().zip(rows.chunks_exact(padded)) {
        for (block, po) in qo.iter_mut().zip(row[from..to].chunks_exact(OUTCOME_BLOCK)) {
            for (o, &p) in block.iter_mut().zip(po) {
                *o += q * p;
            }
        }
    }
    for block in qo {
        for t in block.map(|o| o * ln_fast(o + EPS)) {
            entropy += t;
        }
    }
    entropy
}

impl FactorKernel {
    /// The value of predicted marginals `qs`: utility plus states information gain (pymdp's
    /// `spm_MDP_G` over the joint states above its threshold).
    #[inline(always)]
    fn node_value(&self, model: &PreparedModel, qs: &[f64], sc: &mut Scratch) -> f64 {
        let joint = &mut sc.joint;
        outer(model, qs, joint);
        let mut value = 0.0;
        if self.settings.use_utility {
            value = dot(joint, &model.utility);
        }
        let outcomes = match &model.outcomes {
            Some(outcomes) if self.settings.use_states_info_gain => outcomes,
            _ => return value,
        };
        let threshold = self.info_threshold;
        let mut expected_h = 0.0;
        let mut entropy = 0.0;
        match &outcomes.rows {
            // Few zeros: the expected outcomes up to four blocks at a time, their sums in
            // registers over one pass through the states.
            OutcomeRows::Dense { rows, padded } => {
                for j in joint.iter_mut() {
                    *j = if *j <= threshold { 0.0 } else { *j };
                }
                expected_h = dot(joint, &outcomes.info_h);
                let blocks = padded / OUTCOME_BLOCK;
                let mut first = 0;
                while first < blocks {
                    let group = (blocks - first).min(4);
                    let at = (*padded, first);
                    entropy = match group {
                        1 => dense_entropy::<1>(joint, rows, at, entropy),
                        2 => dense_entropy::<2>(joint, rows, at, entropy),
                        3 => dense_entropy::<3>(joint, rows, at, entropy),
                        _ => dense_entropy::<4>(joint, rows, at, entropy),
                    };
                    first += group;
                }
            }
            // Mostly zeros: only the outcomes that the states above the threshold can produce.
            OutcomeRows::Sparse(rows) => {
                let (qo, touched) = (&mut sc.qo, &mut sc.touched);
                touched.clear();
                for (s, &v) in joint.iter().enumerate().filter(|(_, &v)| v > threshold) {
                    expected_h += v * outcomes.info_h[s];
                    let (from, to) = (rows.ptr[s], rows.ptr[s + 1]);
                    for (&o, &p) in rows.index[from..to].iter().zip(&rows.values[from..to]) {
                        let x = v * p;
                        if x != 0.0 {
                            if qo[o] == 0.0 {
                                touched.push(o);
                            }
                            qo[o] += x;
                        }
                    }
                }
                // The terms in a loop of their own, which vectorizes; summed in the same order.
                let terms = &mut sc.terms[..touched.len()];
                for (t, &o) in terms.iter_mut().zip(touched.iter()) {
                    *t = std::mem::take(&mut qo[o]);
                }
                for t in terms.iter_mut() {
                    *t *= ln_fast(*t + EPS);
                }
                for &t in terms.iter() {
                    entropy += t;
                }
            }
        }
        value + expected_h - entropy
    }

    #[inline(always)]
    pub(super) fn infer_policies_one(
        &self,
        model: &PreparedModel,
        qs: &[f64],
        q_pi: &mut [f64],
        g: &mut [f64],
        sc: &mut Scratch,
    ) {
        let factors = model.factors();
        let b = model.belief_len();
        for depth in 0..self.levels.len() {
            let level = &self.levels[depth];
            let mut nodes = std::mem::take(&mut sc.nodes[depth]);
            let mut values = std::mem::take(&mut sc.values[depth]);
            for (k, &parent) in level.parents.iter().enumerate() {
                let node = &mut nodes[k * b..(k + 1) * b];
                let controls = &level.controls[k * factors..(k + 1) * factors];
                match depth {
                    0 => predict(model, qs, controls, node),
                    _ => {
                        let source = &sc.nodes[depth - 1][parent * b..(parent + 1) * b];
                        predict(model, source, controls, node);
                    }
                }
                values[k] = self.node_value(model, node, sc);
            }
            sc.nodes[depth] = nodes;
            sc.values[depth] = values;
        }
        g.fill(0.0);
        for (depth, level) in self.levels.iter().enumerate() {
            for (gp, &node) in g.iter_mut().zip(&level.leaf) {
                *gp += sc.values[depth][node];
            }
        }
        for ((q, &gp), &le) in q_pi.iter_mut().zip(g.iter()).zip(&model.log_e) {
            *q = gp * self.settings.gamma + le;
        }
        softmax_in_place(q_pi);
    }
}

//! Policy evaluation of the factorized kernel (`factors.rs`): the policy prefix tree's predicted
//! marginals and node values (utility plus states information gain), summed into G and q_pi.
//! Written over `Lane`, as the state inference.

use super::states::{outer, predict};
use super::{FactorKernel, Scratch};
use crate::core::agents::factor_model::{OutcomeRows, PreparedModel, OUTCOME_BLOCK};
use crate::core::agents::lanes::Lane;
use crate::core::agents::{dot, softmax_in_place, EPS};

/// Blocks `first..first + G` of the expected outcomes `qo = sum_s joint[s] po_s` (each outcome
/// summed over the states in order), and `entropy` plus `qo ln(qo + eps)` of each of them, in
/// order. No tests, so the blocks vectorize: a zero outcome adds 0 ln(1e-16) = 0, and a state
/// below the threshold (set to 0) adds 0 to every outcome (a test per state costs more in
/// mispredicted branches than the work it saves).
#[inline(always)]
fn dense_entropy<const G: usize, L: Lane>(
    joint: &[L],
    rows: &[f64],
    (padded, first): (usize, usize),
    mut entropy: L,
) -> L {
    let mut qo = [[L::ZERO; OUTCOME_BLOCK]; G];
    let (from, to) = (first * OUTCOME_BLOCK, (first + G) * OUTCOME_BLOCK);
    for (&q, row) in joint.iter().zip(rows.chunks_exact(padded)) {
        for (block, po) in qo.iter_mut().zip(row[from..to].chunks_exact(OUTCOME_BLOCK)) {
            for (o, &p) in block.iter_mut().zip(po) {
                *o += q * p;
            }
        }
    }
    for mut block in qo {
        for o in block.iter_mut() {
            *o = *o * (*o + L::splat(EPS)).ln_fast();
        }
        for t in block {
            entropy += t;
        }
    }
    entropy
}

impl FactorKernel {
    /// The value of predicted marginals `qs`: utility plus states information gain (pymdp's
    /// `spm_MDP_G` over the joint states above its threshold).
    #[inline(always)]
    fn node_value<L: Lane>(&self, model: &PreparedModel, qs: &[L], sc: &mut Scratch<L>) -> L {
        let joint = &mut sc.joint;
        outer(model, qs, joint);
        let mut value = L::ZERO;
        if self.settings.use_utility {
            value = dot(joint, &model.utility);
        }
        let outcomes = match &model.outcomes {
            Some(outcomes) if self.settings.use_states_info_gain => outcomes,
            _ => return value,
        };
        let threshold = self.info_threshold;
        let mut expected_h = L::ZERO;
        let mut entropy = L::ZERO;
        match &outcomes.rows {
            // Few zeros: the expected outcomes a few blocks at a time, their sums in registers
            // over one pass through the states.
            OutcomeRows::Dense { rows, padded } => {
                for j in joint.iter_mut() {
                    *j = j.zero_at_or_below(threshold);
                }
                expected_h = dot(joint, &outcomes.info_h);
                let blocks = padded / OUTCOME_BLOCK;
                let mut first = 0;
                while first < blocks {
                    let group = (blocks - first).min(L::OUTCOME_GROUP);
                    let at = (*padded, first);
                    entropy = match group {
                        1 => dense_entropy::<1, L>(joint, rows, at, entropy),
                        2 => dense_entropy::<2, L>(joint, rows, at, entropy),
                        3 => dense_entropy::<3, L>(joint, rows, at, entropy),
                        _ => dense_entropy::<4, L>(joint, rows, at, entropy),
                    };
                    first += group;
                }
            }
            // Mostly zeros: only the states above the threshold in some lane (a lane below it
            // adds exact zeros), and only the outcomes they can produce, in increasing order
            // (so a lane's sum does not depend on the other lanes).
            OutcomeRows::Sparse(rows) => {
                let (qo, touched) = (&mut sc.qo, &mut sc.touched);
                let (mut low, mut high) = (touched.len(), 0);
                for (s, &v) in joint
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v.above(threshold))
                {
                    let v = v.zero_at_or_below(threshold);
                    expected_h += v * outcomes.info_h[s];
                    let (from, to) = (rows.ptr[s], rows.ptr[s + 1]);
                    for (&o, &p) in rows.index[from..to].iter().zip(&rows.values[from..to]) {
                        qo[o] += v * p;
                        touched[o / 64] |= 1 << (o % 64);
                        low = low.min(o / 64);
                        high = high.max(o / 64 + 1);
                    }
                }
                let mut count = 0;
                for (word, bits) in touched[low..high.max(low)].iter_mut().enumerate() {
                    let mut bits = std::mem::take(bits);
                    while bits != 0 {
                        let o = (low + word) * 64 + bits.trailing_zeros() as usize;
                        sc.terms[count] = std::mem::replace(&mut qo[o], L::ZERO);
                        count += 1;
                        bits &= bits - 1;
                    }
                }
                // The terms in a loop of their own, which vectorizes; summed in the same order.
                let terms = &mut sc.terms[..count];
                for t in terms.iter_mut() {
                    *t = *t * (*t + L::splat(EPS)).ln_fast();
                }
                for &t in terms.iter() {
                    entropy += t;
                }
            }
        }
        value + expected_h - entropy
    }

    /// Policy inference from `sc.qs`: G and q_pi of every lane into `sc.g` and `sc.q_pi`.
    #[inline(always)]
    pub(super) fn infer_policies_lanes<L: Lane>(&self, model: &PreparedModel, sc: &mut Scratch<L>) {
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
                    0 => predict(model, &sc.qs, controls, node),
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
        sc.g.fill(L::ZERO);
        for (depth, level) in self.levels.iter().enumerate() {
            for (gp, &node) in sc.g.iter_mut().zip(&level.leaf) {
                *gp += sc.values[depth][node];
            }
        }
        for ((q, &gp), &le) in sc.q_pi.iter_mut().zip(&sc.g).zip(&model.log_e) {
            *q = gp * self.settings.gamma + L::splat(le);
        }
        softmax_in_place(&mut sc.q_pi);
    }
}

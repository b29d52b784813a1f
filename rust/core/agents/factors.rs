//! The batched kernel for factorized models (several hidden-state factors): pymdp 0.0.7.1's
//! VANILLA agent per row, rayon over rows. The formulas, update order and epsilons are those of
//! the numpy kernel (`python/freeagentics_rs/agents/_py_factors.py`, whose docstring gives them);
//! what depends only on the model is in `PreparedModel` (`factor_model.rs`).
//!
//! Where the work goes: policies are walked as a prefix tree, so policies that share their first
//! steps share the states predicted for those steps and those steps' values; transitions are
//! pushed through their nonzeros only; a node's value visits only the joint states whose
//! probability is not zero (a known location leaves one cell of the grid's joint), and the
//! information gain only the joint outcomes those states can produce. Skipping exact zeros
//! changes no result: every skipped term is an exact zero.

use std::sync::Arc;

use rayon::prelude::*;

use super::factor_model::{OutcomeRows, PreparedModel, Transition, OUTCOME_BLOCK};
use super::{
    dot, draw, ln_fast, pool_of, softmax_in_place, splitmix64, try_filled, uniform, Phases, EPS,
    MAX_THREADS, NO_OBSERVATIONS, TIE,
};
use crate::core::error::CoreError;

pub struct FactorSettings {
    /// (policies, policy_len, factors), row-major.
    pub policies: Vec<usize>,
    pub policy_len: usize,
    pub gamma: f64,
    pub alpha: f64,
    pub deterministic: bool,
    pub full_sampling: bool,
    pub use_utility: bool,
    pub use_states_info_gain: bool,
    pub num_iter: usize,
    pub df: f64,
    pub df_tol: f64,
}

/// One level of the policy prefix tree.
struct Level {
    parents: Vec<usize>,
    /// (nodes, factors) controls.
    controls: Vec<usize>,
    /// The node of each policy's prefix at this depth.
    leaf: Vec<usize>,
}

pub struct FactorKernel {
    model: Arc<PreparedModel>,
    settings: FactorSettings,
    /// spm_MDP_G's threshold on joint state probabilities, exp(-16).
    info_threshold: f64,
    levels: Vec<Level>,
    policies: usize,
    threads: usize,
}

/// The rows of a factorized population's arrays that one call steps.
pub struct FactorRows<'a> {
    pub beliefs: &'a mut [f64],
    pub q_pi: &'a mut [f64],
    pub g: &'a mut [f64],
    pub f: &'a mut [f64],
    pub actions: &'a mut [i64],
    pub timesteps: &'a mut [i64],
    pub first_row: u64,
}

/// One agent's row of each array.
pub struct AgentRow<'a> {
    pub qs: &'a mut [f64],
    pub q_pi: &'a mut [f64],
    pub g: &'a mut [f64],
    pub f: &'a mut f64,
    pub actions: &'a mut [i64],
    pub timestep: &'a mut i64,
    /// The agent's index in the whole population (its random stream).
    pub row: u64,
}

/// Scratch space of one thread, sized for one model's dimensions.
pub struct Scratch {
    controls: Vec<usize>,
    prior: Vec<f64>,
    log_prior: Vec<f64>,
    next: Vec<f64>,
    log_likelihood: Vec<f64>,
    /// The outer product of the current marginals (joint states, C order).
    joint: Vec<f64>,
    ll: Vec<f64>,
    /// Per level: (nodes, belief_len) predicted marginals.
    nodes: Vec<Vec<f64>>,
    values: Vec<Vec<f64>>,
    /// Expected joint outcomes; all zero between nodes.
    qo: Vec<f64>,
    touched: Vec<usize>,
    marginals: Vec<f64>,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

/// Every action in [-1, controls) of its factor, and every observation (when given) in range
/// for its modality: the rows' checks that both the shared and the learning kernel make.
pub(super) fn check_actions_and_observations(
    m: &PreparedModel,
    actions: &[i64],
    observations: Option<&[i64]>,
    n: usize,
) -> Result<(), CoreError> {
    for row in actions.chunks(m.factors()) {
        for (f, (&a, &count)) in row.iter().zip(&m.num_controls).enumerate() {
            if !(-1..count as i64).contains(&a) {
                return Err(invalid(format!(
                    "actions: must lie in [-1, {count}) of factor {f}"
                )));
            }
        }
    }
    if let Some(obs) = observations {
        let modalities = m.modalities();
        let valid = obs.len() == n * modalities
            && obs.chunks(modalities).all(|o| {
                o.iter()
                    .enumerate()
                    .all(|(k, &v)| v >= 0 && (v as usize) < m.obs_offsets[k + 1] - m.obs_offsets[k])
            });
        if !valid {
            return Err(invalid("observations: out of range".into()));
        }
    }
    Ok(())
}
/// The key of factor `f`'s random stream (the numpy kernel's `factor_key`).
pub fn factor_key(key: u64, factor: usize) -> u64 {
    if factor == 0 {
        key
    } else {
        splitmix64(key ^ factor as u64)
    }
}

/// `out` = each factor's segment of `qs` pushed through its B for `controls` (see `Transition`).
pub(super) fn predict(model: &PreparedModel, qs: &[f64], controls: &[usize], out: &mut [f64]) {
    for (f, &c) in controls.iter().enumerate() {
        let (start, end) = (model.offsets[f], model.offsets[f + 1]);
        let (qs, out) = (&qs[start..end], &mut out[start..end]);
        out.fill(0.0);
        match &model.transitions[f][c] {
            Transition::Dense(rows) => {
                for (&q, row) in qs.iter().zip(rows.chunks_exact(end - start)) {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += q * v;
                    }
                }
            }
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

/// The outer product of the factors' marginals (C order): `joint[s] = (q_0 * q_1) * ... `.
pub(super) fn outer(model: &PreparedModel, qs: &[f64], joint: &mut [f64]) {
    match model.factors() {
        1 => joint.copy_from_slice(qs),
        _ => outer_from(model, qs, 0, 1.0, joint),
    }
}

/// The outer product of factors `f..` scaled by `prefix` (the product of the factors before).
fn outer_from(model: &PreparedModel, qs: &[f64], f: usize, prefix: f64, out: &mut [f64]) {
    let marginal = &qs[model.offsets[f]..model.offsets[f + 1]];
    if f + 2 == model.factors() {
        let last = &qs[model.offsets[f + 1]..model.offsets[f + 2]];
        for (chunk, &q) in out.chunks_exact_mut(last.len()).zip(marginal) {
            let p = prefix * q;
            for (o, &l) in chunk.iter_mut().zip(last) {
                *o = p * l;
            }
        }
    } else {
        let stride = out.len() / marginal.len();
        for (chunk, &q) in out.chunks_exact_mut(stride).zip(marginal) {
            outer_from(model, qs, f + 1, prefix * q, chunk);
        }
    }
}

fn free_energy(qs: &[f64], log_prior: &[f64]) -> f64 {
    qs.iter()
        .zip(log_prior)
        .map(|(&q, &lp)| q * ln_fast(q + 1e-16) - q * lp)
        .sum()
}

impl FactorKernel {
    pub fn new(
        model: Arc<PreparedModel>,
        settings: FactorSettings,
        threads: usize,
    ) -> Result<FactorKernel, CoreError> {
        let factors = model.factors();
        let t = settings.policy_len;
        if t == 0 || settings.policies.is_empty() || settings.policies.len() % (t * factors) != 0 {
            return Err(invalid("policies: inconsistent shape".into()));
        }
        let policies = settings.policies.len() / (t * factors);
        if model.log_e.len() != policies {
            return Err(invalid(format!(
                "E: must have {policies} entries, one per policy"
            )));
        }
        if settings.use_states_info_gain && model.outcomes.is_none() {
            return Err(invalid("model: prepared without information gain".into()));
        }
        if settings
            .policies
            .chunks(factors)
            .any(|step| step.iter().zip(&model.num_controls).any(|(&c, &n)| c >= n))
        {
            return Err(invalid("policies: control out of range".into()));
        }
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(invalid(format!(
                "num_threads: must be between 1 and {MAX_THREADS}, got {threads}"
            )));
        }
        // The prefix tree: nodes of depth t + 1 keyed by (parent, controls at step t).
        let mut levels = Vec::with_capacity(t);
        let mut previous = vec![0usize; policies];
        for depth in 0..t {
            let mut keys: Vec<(usize, &[usize], usize)> = (0..policies)
                .map(|p| {
                    let start = (p * t + depth) * factors;
                    (previous[p], &settings.policies[start..start + factors], p)
                })
                .collect();
            keys.sort();
            let mut level = Level {
                parents: Vec::new(),
                controls: Vec::new(),
                leaf: vec![0; policies],
            };
            let mut last: Option<(usize, &[usize])> = None;
            for (parent, controls, p) in keys {
                if last != Some((parent, controls)) {
                    level.parents.push(parent);
                    level.controls.extend_from_slice(controls);
                    last = Some((parent, controls));
                }
                level.leaf[p] = level.parents.len() - 1;
            }
            previous.clone_from(&level.leaf);
            levels.push(level);
        }
        Ok(FactorKernel {
            threads: pool_of(threads).map(|_| threads)?,
            model,
            settings,
            info_threshold: (-16f64).exp(),
            levels,
            policies,
        })
    }

    pub fn policies(&self) -> usize {
        self.policies
    }

    pub fn model(&self) -> &Arc<PreparedModel> {
        &self.model
    }

    /// Scratch space for stepping agents of `model` (or of any model of the same dimensions).
    pub fn scratch(&self, model: &PreparedModel) -> Result<Scratch, CoreError> {
        let (s, b) = (model.joint_states, model.belief_len());
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for level in &self.levels {
            nodes.push(try_filled(level.parents.len() * b, 0.0, "scratch")?);
            values.push(try_filled(level.parents.len(), 0.0, "scratch")?);
        }
        let outcomes = model.outcomes.as_ref().map_or(0, |o| o.count);
        let max_controls = model.num_controls.iter().copied().max().unwrap_or(1);
        Ok(Scratch {
            controls: try_filled(model.factors(), 0, "scratch")?,
            prior: try_filled(b, 0.0, "scratch")?,
            log_prior: try_filled(b, 0.0, "scratch")?,
            next: try_filled(b, 0.0, "scratch")?,
            log_likelihood: try_filled(s, 0.0, "scratch")?,
            joint: try_filled(s, 0.0, "scratch")?,
            ll: try_filled(s, 0.0, "scratch")?,
            nodes,
            values,
            qo: try_filled(outcomes, 0.0, "scratch")?,
            touched: try_filled(outcomes, 0, "scratch")?,
            marginals: try_filled(max_controls.max(self.policies), 0.0, "scratch")?,
        })
    }

    /// One agent's step (the phases selected) with `model`: the population's shared model, or
    /// the agent's own one of the same dimensions. (Never inlined: profiles show it by name.)
    #[inline(never)]
    pub fn step_agent(
        &self,
        model: &PreparedModel,
        agent: AgentRow<'_>,
        observation: &[i64],
        key: u64,
        phases: Phases,
        sc: &mut Scratch,
    ) {
        if phases.infer {
            self.infer_states_one(model, agent.qs, agent.actions, observation, agent.f, sc);
        }
        if phases.plan {
            self.infer_policies_one(model, agent.qs, agent.q_pi, agent.g, sc);
        }
        if phases.act {
            self.sample_action_one(
                agent.q_pi,
                agent.row,
                agent.actions,
                agent.timestep,
                key,
                sc,
            );
        }
    }

    fn infer_states_one(
        &self,
        model: &PreparedModel,
        qs: &mut [f64],
        actions: &[i64],
        observation: &[i64],
        f: &mut f64,
        sc: &mut Scratch,
    ) {
        let factors = model.factors();
        let s = model.joint_states;
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
        sc.joint.fill(1.0); // the likelihood, for now
        for (modality, &o) in observation.iter().enumerate() {
            let row = (model.obs_offsets[modality] + o as usize) * s;
            for (l, &a) in sc.joint.iter_mut().zip(&model.a[row..row + s]) {
                *l *= a;
            }
        }
        for (ll, &l) in sc.log_likelihood.iter_mut().zip(&sc.joint) {
            *ll = ln_fast(l + EPS);
        }
        let accuracy = if factors == 1 {
            for ((q, &ll), &lp) in qs.iter_mut().zip(&sc.log_likelihood).zip(&sc.log_prior) {
                *q = ll + lp;
            }
            softmax_in_place(qs);
            None
        } else {
            self.fixed_point(model, qs, sc)
        };
        // F: sum_f q_f . (ln(q_f + eps) - ln D_f) - sum_s q(s) ln L[s].
        let mut free_energy = 0.0;
        for k in 0..factors {
            let (start, end) = (model.offsets[k], model.offsets[k + 1]);
            for (&q, &ld) in qs[start..end].iter().zip(&model.log_d[k]) {
                free_energy += q * (ln_fast(q + EPS) - ld);
            }
        }
        *f = free_energy
            - accuracy.unwrap_or_else(|| {
                outer(model, qs, &mut sc.joint);
                dot(&sc.joint, &sc.log_likelihood)
            });
    }

    /// pymdp's `run_vanilla_fpi` for several factors (see the numpy kernel). Returns the
    /// accuracy `sum_s q(s) ln L[s]` of the final marginals when an iteration ran.
    fn fixed_point(&self, model: &PreparedModel, qs: &mut [f64], sc: &mut Scratch) -> Option<f64> {
        let factors = model.factors();
        for k in 0..factors {
            let n = model.num_states[k];
            qs[model.offsets[k]..model.offsets[k + 1]].fill(1.0 / n as f64);
        }
        let mut previous = free_energy(qs, &sc.log_prior);
        let mut df = self.settings.df;
        let mut iteration = 0;
        let mut accuracy = None; // Some once sc.joint is the outer product of qs
        while iteration < self.settings.num_iter && df >= self.settings.df_tol {
            if accuracy.is_none() {
                outer(model, qs, &mut sc.joint);
            }
            for ((ll, &l), &j) in sc.ll.iter_mut().zip(&sc.log_likelihood).zip(&sc.joint) {
                *ll = l * j;
            }
            sc.next.fill(0.0);
            for (&ll, index) in sc.ll.iter().zip(model.factor_index.chunks_exact(factors)) {
                for (&offset, &i) in model.offsets.iter().zip(index) {
                    sc.next[offset + i] += ll;
                }
            }
            for k in 0..factors {
                let (start, end) = (model.offsets[k], model.offsets[k + 1]);
                let segment = sc.next[start..end].iter_mut().zip(&qs[start..end]);
                for ((next, &q), &lp) in segment.zip(&sc.log_prior[start..end]) {
                    *next = *next / q + lp;
                }
                softmax_in_place(&mut sc.next[start..end]);
            }
            qs.copy_from_slice(&sc.next);
            outer(model, qs, &mut sc.joint);
            let fit = dot(&sc.joint, &sc.log_likelihood);
            accuracy = Some(fit);
            let vfe = free_energy(qs, &sc.log_prior) - fit;
            df = (previous - vfe).abs();
            previous = vfe;
            iteration += 1;
        }
        accuracy
    }

    /// The value of predicted marginals `qs`: utility plus states information gain (pymdp's
    /// `spm_MDP_G` over the joint states above its threshold).
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
            // Few zeros: the expected outcomes a block at a time, each block's sums in registers.
            OutcomeRows::Dense { rows, padded } => {
                for j in joint.iter_mut() {
                    if *j <= threshold {
                        *j = 0.0;
                    }
                }
                expected_h = dot(joint, &outcomes.info_h);
                for block in (0..*padded).step_by(OUTCOME_BLOCK) {
                    let mut qo = [0.0; OUTCOME_BLOCK];
                    for (&q, row) in joint.iter().zip(rows.chunks_exact(*padded)) {
                        if q != 0.0 {
                            let po: &[f64; OUTCOME_BLOCK] = row[block..block + OUTCOME_BLOCK]
                                .try_into()
                                .expect("a whole block");
                            for (o, &p) in qo.iter_mut().zip(po) {
                                *o += q * p;
                            }
                        }
                    }
                    // A zero outcome adds 0 ln(1e-16) = 0: no test, so the block vectorizes.
                    let terms = qo.map(|o| o * ln_fast(o + EPS));
                    for t in terms {
                        entropy += t;
                    }
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
                for &o in touched.iter() {
                    let p = std::mem::take(&mut qo[o]);
                    entropy += p * ln_fast(p + EPS);
                }
            }
        }
        value + expected_h - entropy
    }

    fn infer_policies_one(
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

    /// The first index within rounding of the best value.
    fn first_best(values: &[f64]) -> usize {
        let best = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        values
            .iter()
            .position(|&v| v >= best * (1.0 - TIE))
            .unwrap_or(0)
    }

    fn sample_action_one(
        &self,
        q_pi: &[f64],
        row: u64,
        actions: &mut [i64],
        timestep: &mut i64,
        key: u64,
        sc: &mut Scratch,
    ) {
        let factors = actions.len();
        let t = self.settings.policy_len;
        let policy = |p: usize, f: usize| self.settings.policies[p * t * factors + f];
        if self.settings.full_sampling {
            let chosen = if self.settings.deterministic {
                Self::first_best(q_pi)
            } else {
                let p = &mut sc.marginals[..self.policies];
                for (x, &q) in p.iter_mut().zip(q_pi) {
                    *x = (q + EPS).ln() * self.settings.alpha;
                }
                softmax_in_place(p);
                draw(p, uniform(key, row, *timestep as u64))
            };
            for (f, a) in actions.iter_mut().enumerate() {
                *a = policy(chosen, f) as i64;
            }
        } else {
            for (f, a) in actions.iter_mut().enumerate() {
                let marginals = &mut sc.marginals[..self.model.num_controls[f]];
                marginals.fill(0.0);
                for (p, &q) in q_pi.iter().enumerate() {
                    marginals[policy(p, f)] += q;
                }
                let sum: f64 = marginals.iter().sum();
                marginals.iter_mut().for_each(|v| *v /= sum);
                let chosen = if self.settings.deterministic {
                    Self::first_best(marginals)
                } else {
                    marginals
                        .iter_mut()
                        .for_each(|v| *v = (*v + EPS).ln() * self.settings.alpha);
                    softmax_in_place(marginals);
                    draw(
                        marginals,
                        uniform(factor_key(key, f), row, *timestep as u64),
                    )
                };
                *a = chosen as i64;
            }
        }
        *timestep += 1;
    }

    fn check_rows(
        &self,
        rows: &FactorRows<'_>,
        observations: Option<&[i64]>,
    ) -> Result<usize, CoreError> {
        let m = &self.model;
        let n = rows.timesteps.len();
        let (b, p, factors) = (m.belief_len(), self.policies, m.factors());
        let ok = rows.beliefs.len() == n * b
            && rows.q_pi.len() == n * p
            && rows.g.len() == n * p
            && rows.f.len() == n
            && rows.actions.len() == n * factors;
        if !ok {
            return Err(invalid("population arrays: inconsistent shapes".into()));
        }
        check_actions_and_observations(m, rows.actions, observations, n)?;
        Ok(n)
    }

    /// Steps every row of `rows` with the shared model, rayon over chunks of rows.
    pub fn run(
        &self,
        rows: FactorRows<'_>,
        observations: Option<&[i64]>,
        key: u64,
        phases: Phases,
    ) -> Result<(), CoreError> {
        if phases.infer && observations.is_none() {
            return Err(invalid(NO_OBSERVATIONS.into()));
        }
        let n = self.check_rows(&rows, observations.filter(|_| phases.infer))?;
        let model = &*self.model;
        let (b, p, factors) = (model.belief_len(), self.policies, model.factors());
        let modalities = model.modalities();
        let observations = observations.filter(|_| phases.infer).unwrap_or(&[]);
        let first_row = rows.first_row;
        // A few chunks per thread (scratch space is made once per chunk), for work stealing.
        let chunk = (n / (self.threads * 4)).clamp(1, 64);
        pool_of(self.threads)?.install(|| {
            rows.beliefs
                .par_chunks_mut(b * chunk)
                .zip(rows.q_pi.par_chunks_mut(p * chunk))
                .zip(rows.g.par_chunks_mut(p * chunk))
                .zip(rows.f.par_chunks_mut(chunk))
                .zip(rows.actions.par_chunks_mut(factors * chunk))
                .zip(rows.timesteps.par_chunks_mut(chunk))
                .enumerate()
                .try_for_each(|(c, (((((beliefs, q_pi), g), f), actions), timesteps))| {
                    let mut sc = self.scratch(model)?;
                    let agents = beliefs
                        .chunks_mut(b)
                        .zip(q_pi.chunks_mut(p))
                        .zip(g.chunks_mut(p))
                        .zip(f.iter_mut())
                        .zip(actions.chunks_mut(factors))
                        .zip(timesteps.iter_mut());
                    for (i, (((((qs, q_pi), g), f), actions), timestep)) in agents.enumerate() {
                        let row = c * chunk + i;
                        let observation = match phases.infer {
                            true => &observations[row * modalities..(row + 1) * modalities],
                            false => &[],
                        };
                        let agent = AgentRow {
                            qs,
                            q_pi,
                            g,
                            f,
                            actions,
                            timestep,
                            row: first_row + row as u64,
                        };
                        self.step_agent(model, agent, observation, key, phases, &mut sc);
                    }
                    Ok(())
                })
        })
    }
}

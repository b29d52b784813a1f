//! The batched kernel for factorized models (several hidden-state factors): pymdp 0.0.7.1's
//! VANILLA agent per row, rayon over rows. The formulas, update order and epsilons are those of
//! the numpy kernel (`python/freeagentics_rs/agents/_py_factors.py`, whose docstring gives them).
//! Policies are walked as a prefix tree, so policies that share their first steps share the
//! states predicted for those steps.

use rayon::prelude::*;

use super::{
    draw, pool_of, softmax_in_place, splitmix64, try_filled, uniform, Phases, EPS, MAX_THREADS, TIE,
};
use crate::core::error::CoreError;

/// A factorized model as the kernel uses it; joint states in C order (first factor slowest).
pub struct FactorModel {
    pub num_states: Vec<usize>,
    pub num_controls: Vec<usize>,
    /// Row offsets of each modality in `a` (modalities + 1 entries).
    pub obs_offsets: Vec<usize>,
    /// Every modality's A stacked: (total observations, joint states), row-major.
    pub a: Vec<f64>,
    /// Per factor: (controls, previous, next), row-major: predicted = qs @ b_t[control].
    pub b_t: Vec<Vec<f64>>,
    pub d: Vec<Vec<f64>>,
    pub log_d: Vec<Vec<f64>>,
    pub utility: Vec<f64>,
    /// (joint states, joint outcomes), row-major; empty without information gain.
    pub joint_t: Vec<f64>,
    pub joint_outcomes: usize,
    pub info_h: Vec<f64>,
}

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
    pub info_threshold: f64,
    pub log_e: Vec<f64>,
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
    model: FactorModel,
    settings: FactorSettings,
    joint_states: usize,
    belief_len: usize,
    offsets: Vec<usize>,
    /// (joint states, factors): each joint state's index in every factor.
    factor_index: Vec<usize>,
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

struct Scratch {
    log_likelihood: Vec<f64>,
    joint: Vec<f64>,
    ll: Vec<f64>,
    prior: Vec<f64>,
    log_prior: Vec<f64>,
    next: Vec<f64>,
    /// Per level: (nodes, belief_len) predicted marginals.
    nodes: Vec<Vec<f64>>,
    values: Vec<Vec<f64>>,
    masked: Vec<f64>,
    qo: Vec<f64>,
    marginals: Vec<f64>,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

/// The key of factor `f`'s random stream (the numpy kernel's `factor_key`).
pub fn factor_key(key: u64, factor: usize) -> u64 {
    if factor == 0 {
        key
    } else {
        splitmix64(key ^ factor as u64)
    }
}

impl FactorKernel {
    pub fn new(
        model: FactorModel,
        settings: FactorSettings,
        threads: usize,
    ) -> Result<FactorKernel, CoreError> {
        let factors = model.num_states.len();
        if factors == 0
            || model.num_controls.len() != factors
            || model.b_t.len() != factors
            || model.d.len() != factors
            || model.log_d.len() != factors
            || model.obs_offsets.len() < 2
        {
            return Err(invalid("model: inconsistent factors".into()));
        }
        let joint_states = model
            .num_states
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .filter(|&s| s > 0)
            .ok_or_else(|| invalid("model: too many joint states".into()))?;
        let total_obs = *model.obs_offsets.last().unwrap_or(&0);
        let sizes_ok = model.a.len() == total_obs.saturating_mul(joint_states)
            && model.utility.len() == joint_states
            && (0..factors).all(|f| {
                let n = model.num_states[f];
                model.b_t[f].len() == model.num_controls[f] * n * n
                    && model.d[f].len() == n
                    && model.log_d[f].len() == n
            })
            && (!settings.use_states_info_gain
                || (model.joint_t.len() == joint_states.saturating_mul(model.joint_outcomes)
                    && model.info_h.len() == joint_states));
        if !sizes_ok {
            return Err(invalid("model: inconsistent sizes".into()));
        }
        let t = settings.policy_len;
        if t == 0 || settings.policies.is_empty() || settings.policies.len() % (t * factors) != 0 {
            return Err(invalid("policies: inconsistent shape".into()));
        }
        let policies = settings.policies.len() / (t * factors);
        if settings.log_e.len() != policies {
            return Err(invalid(format!(
                "E: must have {policies} entries, one per policy"
            )));
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
        let mut factor_index = try_filled(joint_states * factors, 0usize, "model")?;
        for s in 0..joint_states {
            let mut rest = s;
            for f in (0..factors).rev() {
                factor_index[s * factors + f] = rest % model.num_states[f];
                rest /= model.num_states[f];
            }
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
        let belief_len = model.num_states.iter().sum();
        let mut offsets = vec![0];
        for &n in &model.num_states {
            offsets.push(offsets.last().unwrap() + n);
        }
        Ok(FactorKernel {
            threads: pool_of(threads).map(|_| threads)?,
            model,
            settings,
            joint_states,
            belief_len,
            offsets,
            factor_index,
            levels,
            policies,
        })
    }

    pub fn policies(&self) -> usize {
        self.policies
    }

    fn factors(&self) -> usize {
        self.model.num_states.len()
    }

    fn scratch(&self) -> Result<Scratch, CoreError> {
        let s = self.joint_states;
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for level in &self.levels {
            nodes.push(try_filled(
                level.parents.len() * self.belief_len,
                0.0,
                "scratch",
            )?);
            values.push(try_filled(level.parents.len(), 0.0, "scratch")?);
        }
        let max_controls = self.model.num_controls.iter().copied().max().unwrap_or(1);
        Ok(Scratch {
            log_likelihood: try_filled(s, 0.0, "scratch")?,
            joint: try_filled(s, 0.0, "scratch")?,
            ll: try_filled(s, 0.0, "scratch")?,
            prior: try_filled(self.belief_len, 0.0, "scratch")?,
            log_prior: try_filled(self.belief_len, 0.0, "scratch")?,
            next: try_filled(self.belief_len, 0.0, "scratch")?,
            nodes,
            values,
            masked: try_filled(s, 0.0, "scratch")?,
            qo: try_filled(self.model.joint_outcomes, 0.0, "scratch")?,
            marginals: try_filled(max_controls.max(self.policies), 0.0, "scratch")?,
        })
    }

    /// `out` = each factor's segment of `qs` pushed through its B for `controls`.
    fn predict(&self, qs: &[f64], controls: &[usize], out: &mut [f64]) {
        for (f, &c) in controls.iter().enumerate() {
            let n = self.model.num_states[f];
            let (start, end) = (self.offsets[f], self.offsets[f + 1]);
            let b = &self.model.b_t[f][c * n * n..(c + 1) * n * n];
            let out = &mut out[start..end];
            out.fill(0.0);
            for (previous, &q) in qs[start..end].iter().enumerate() {
                for (o, &v) in out.iter_mut().zip(&b[previous * n..(previous + 1) * n]) {
                    *o += q * v;
                }
            }
        }
    }

    /// The outer product of the factors' marginals (C order).
    fn outer(&self, qs: &[f64], joint: &mut [f64]) {
        let factors = self.factors();
        for (s, j) in joint.iter_mut().enumerate() {
            let index = &self.factor_index[s * factors..(s + 1) * factors];
            *j = index
                .iter()
                .enumerate()
                .map(|(f, &i)| qs[self.offsets[f] + i])
                .product();
        }
    }

    fn free_energy(&self, qs: &[f64], log_prior: &[f64]) -> f64 {
        qs.iter()
            .zip(log_prior)
            .map(|(&q, &lp)| q * (q + 1e-16).ln() - q * lp)
            .sum()
    }

    fn infer_states_one(
        &self,
        qs: &mut [f64],
        actions: &[i64],
        observation: &[i64],
        f: &mut f64,
        sc: &mut Scratch,
    ) {
        let m = &self.model;
        let factors = self.factors();
        let s = self.joint_states;
        if actions[0] < 0 {
            for (k, d) in m.d.iter().enumerate() {
                sc.prior[self.offsets[k]..self.offsets[k + 1]].copy_from_slice(d);
            }
        } else {
            let controls: Vec<usize> = actions.iter().map(|&a| a as usize).collect();
            self.predict(qs, &controls, &mut sc.prior);
        }
        for (lp, &p) in sc.log_prior.iter_mut().zip(&sc.prior) {
            *lp = (p + EPS).ln();
        }
        sc.joint.fill(1.0); // the likelihood, for now
        for (modality, &o) in observation.iter().enumerate() {
            let row = (m.obs_offsets[modality] + o as usize) * s;
            for (l, &a) in sc.joint.iter_mut().zip(&m.a[row..row + s]) {
                *l *= a;
            }
        }
        for (ll, &l) in sc.log_likelihood.iter_mut().zip(&sc.joint) {
            *ll = (l + EPS).ln();
        }
        if factors == 1 {
            for ((q, &ll), &lp) in qs.iter_mut().zip(&sc.log_likelihood).zip(&sc.log_prior) {
                *q = ll + lp;
            }
            softmax_in_place(qs);
        } else {
            self.fixed_point(qs, sc);
        }
        // F: sum_f q_f . (ln(q_f + eps) - ln D_f) - sum_s q(s) ln L[s].
        let mut free_energy = 0.0;
        for k in 0..factors {
            let (start, end) = (self.offsets[k], self.offsets[k + 1]);
            for (&q, &ld) in qs[start..end].iter().zip(&m.log_d[k]) {
                free_energy += q * ((q + EPS).ln() - ld);
            }
        }
        self.outer(qs, &mut sc.joint);
        free_energy -= sc
            .joint
            .iter()
            .zip(&sc.log_likelihood)
            .map(|(j, l)| j * l)
            .sum::<f64>();
        *f = free_energy;
    }

    /// pymdp's `run_vanilla_fpi` for several factors (see the numpy kernel).
    fn fixed_point(&self, qs: &mut [f64], sc: &mut Scratch) {
        let factors = self.factors();
        for k in 0..factors {
            let n = self.model.num_states[k];
            qs[self.offsets[k]..self.offsets[k + 1]].fill(1.0 / n as f64);
        }
        let mut previous = self.free_energy(qs, &sc.log_prior);
        let mut df = self.settings.df;
        let mut iteration = 0;
        while iteration < self.settings.num_iter && df >= self.settings.df_tol {
            self.outer(qs, &mut sc.joint);
            for ((ll, &l), &j) in sc.ll.iter_mut().zip(&sc.log_likelihood).zip(&sc.joint) {
                *ll = l * j;
            }
            sc.next.fill(0.0);
            for (s, &ll) in sc.ll.iter().enumerate() {
                let index = &self.factor_index[s * factors..(s + 1) * factors];
                for (k, &i) in index.iter().enumerate() {
                    sc.next[self.offsets[k] + i] += ll;
                }
            }
            for k in 0..factors {
                let (start, end) = (self.offsets[k], self.offsets[k + 1]);
                let segment = sc.next[start..end].iter_mut().zip(&qs[start..end]);
                for ((next, &q), &lp) in segment.zip(&sc.log_prior[start..end]) {
                    *next = *next / q + lp;
                }
                softmax_in_place(&mut sc.next[start..end]);
            }
            qs.copy_from_slice(&sc.next);
            self.outer(qs, &mut sc.joint);
            let accuracy: f64 = sc
                .joint
                .iter()
                .zip(&sc.log_likelihood)
                .map(|(j, l)| j * l)
                .sum();
            let vfe = self.free_energy(qs, &sc.log_prior) - accuracy;
            df = (previous - vfe).abs();
            previous = vfe;
            iteration += 1;
        }
    }

    fn node_value(&self, qs: &[f64], joint: &mut [f64], masked: &mut [f64], qo: &mut [f64]) -> f64 {
        let m = &self.model;
        self.outer(qs, joint);
        let mut value = 0.0;
        if self.settings.use_utility {
            value = joint.iter().zip(&m.utility).map(|(j, u)| j * u).sum();
        }
        if self.settings.use_states_info_gain {
            let threshold = self.settings.info_threshold;
            qo.fill(0.0);
            let mut expected_h = 0.0;
            for (s, (mq, &j)) in masked.iter_mut().zip(joint.iter()).enumerate() {
                *mq = if j > threshold { j } else { 0.0 };
                if *mq != 0.0 {
                    expected_h += *mq * m.info_h[s];
                    let row = &m.joint_t[s * m.joint_outcomes..(s + 1) * m.joint_outcomes];
                    for (o, &p) in qo.iter_mut().zip(row) {
                        *o += *mq * p;
                    }
                }
            }
            let entropy: f64 = qo.iter().map(|&o| o * (o + EPS).ln()).sum();
            value += expected_h - entropy;
        }
        value
    }

    fn infer_policies_one(&self, qs: &[f64], q_pi: &mut [f64], g: &mut [f64], sc: &mut Scratch) {
        let factors = self.factors();
        let b = self.belief_len;
        for depth in 0..self.levels.len() {
            let level = &self.levels[depth];
            let (done, rest) = sc.nodes.split_at_mut(depth);
            let nodes = &mut rest[0];
            for (k, &parent) in level.parents.iter().enumerate() {
                let source = if depth == 0 {
                    qs
                } else {
                    &done[depth - 1][parent * b..(parent + 1) * b]
                };
                self.predict(
                    source,
                    &level.controls[k * factors..(k + 1) * factors],
                    &mut nodes[k * b..(k + 1) * b],
                );
                sc.values[depth][k] = self.node_value(
                    &nodes[k * b..(k + 1) * b],
                    &mut sc.joint,
                    &mut sc.masked,
                    &mut sc.qo,
                );
            }
        }
        g.fill(0.0);
        for (depth, level) in self.levels.iter().enumerate() {
            for (gp, &node) in g.iter_mut().zip(&level.leaf) {
                *gp += sc.values[depth][node];
            }
        }
        for ((q, &gp), &le) in q_pi.iter_mut().zip(g.iter()).zip(&self.settings.log_e) {
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
        let factors = self.factors();
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
        let n = rows.timesteps.len();
        let (b, p, factors) = (self.belief_len, self.policies, self.factors());
        let ok = rows.beliefs.len() == n * b
            && rows.q_pi.len() == n * p
            && rows.g.len() == n * p
            && rows.f.len() == n
            && rows.actions.len() == n * factors;
        if !ok {
            return Err(invalid("population arrays: inconsistent shapes".into()));
        }
        for row in rows.actions.chunks(factors) {
            for (f, (&a, &count)) in row.iter().zip(&self.model.num_controls).enumerate() {
                if !(-1..count as i64).contains(&a) {
                    return Err(invalid(format!(
                        "actions: must lie in [-1, {count}) of factor {f}"
                    )));
                }
            }
        }
        if let Some(obs) = observations {
            let m = &self.model;
            let modalities = m.obs_offsets.len() - 1;
            let valid = obs.len() == n * modalities
                && obs.chunks(modalities).all(|o| {
                    o.iter().enumerate().all(|(k, &v)| {
                        v >= 0 && (v as usize) < m.obs_offsets[k + 1] - m.obs_offsets[k]
                    })
                });
            if !valid {
                return Err(invalid("observations: out of range".into()));
            }
        }
        Ok(n)
    }

    pub fn run(
        &self,
        rows: FactorRows<'_>,
        observations: Option<&[i64]>,
        key: u64,
        phases: Phases,
    ) -> Result<(), CoreError> {
        self.check_rows(&rows, observations.filter(|_| phases.infer))?;
        let (b, p, factors) = (self.belief_len, self.policies, self.factors());
        let modalities = self.model.obs_offsets.len() - 1;
        let observations = observations.unwrap_or(&[]);
        let first_row = rows.first_row;
        const CHUNK: usize = 16;
        pool_of(self.threads)?.install(|| {
            rows.beliefs
                .par_chunks_mut(b * CHUNK)
                .zip(rows.q_pi.par_chunks_mut(p * CHUNK))
                .zip(rows.g.par_chunks_mut(p * CHUNK))
                .zip(rows.f.par_chunks_mut(CHUNK))
                .zip(rows.actions.par_chunks_mut(factors * CHUNK))
                .zip(rows.timesteps.par_chunks_mut(CHUNK))
                .enumerate()
                .try_for_each(
                    |(chunk, (((((beliefs, q_pi), g), f), actions), timesteps))| {
                        let mut sc = self.scratch()?;
                        for i in 0..timesteps.len() {
                            let row = chunk * CHUNK + i;
                            let qs = &mut beliefs[i * b..(i + 1) * b];
                            let (q_pi, g) =
                                (&mut q_pi[i * p..(i + 1) * p], &mut g[i * p..(i + 1) * p]);
                            let action = &mut actions[i * factors..(i + 1) * factors];
                            if phases.infer {
                                let obs = &observations[row * modalities..(row + 1) * modalities];
                                self.infer_states_one(qs, action, obs, &mut f[i], &mut sc);
                            }
                            if phases.plan {
                                self.infer_policies_one(qs, q_pi, g, &mut sc);
                            }
                            if phases.act {
                                self.sample_action_one(
                                    q_pi,
                                    first_row + row as u64,
                                    action,
                                    &mut timesteps[i],
                                    key,
                                    &mut sc,
                                );
                            }
                        }
                        Ok(())
                    },
                )
        })
    }
}

//! Batched active-inference steps: pymdp 0.0.7.1's VANILLA agent (one hidden-state factor) for
//! every row of a population's arrays, spread over a rayon pool. The per-model quantities (see
//! `python/freeagentics_rs/agents/_model.py`) are computed once (`model.rs`); transitions and
//! joint outcome distributions are kept compressed, since grid models are mostly zeros.

use std::sync::Arc;

use crate::core::error::CoreError;
use crate::core::rng::splitmix64;

mod common;
mod factor_model;
mod factors;
mod lanes;
pub mod learning;
pub mod learning_kernel;
mod learning_model;
mod model;
pub use factor_model::{FactorArrays, OutcomeRows, Outcomes, PreparedModel, Transition};
pub use factors::{AgentRow, FactorKernel, FactorRows, FactorSettings, Scratch as FactorScratch};
pub use model::{Model, Settings, Sparse};

use common::{
    dot, draw, helper_pool, ln_fast, pool_of, run_on_threads, softmax_in_place, softmax_with_log,
    EPS, NO_OBSERVATIONS, TIE,
};
pub use common::{try_copy, try_filled, uniform, Phases, ENOMEM, MAX_THREADS};

/// Scratch space of one thread.
struct Scratch {
    levels: Vec<Vec<f64>>,
    likelihood: Vec<f64>,
    log_likelihood: Vec<f64>,
    masked: Vec<f64>,
    qo: Vec<f64>,
    marginals: Vec<f64>,
}

/// The rows of a population's arrays that one call steps.
pub struct Rows<'a> {
    pub beliefs: &'a mut [f64],
    pub q_pi: &'a mut [f64],
    pub g: &'a mut [f64],
    pub f: &'a mut [f64],
    pub actions: &'a mut [i64],
    pub timesteps: &'a mut [i64],
    /// Index of the first row in the whole population (for the random draws).
    pub first_row: u64,
}

pub struct Kernel {
    model: Arc<Model>,
    settings: Settings,
    policies: usize,
    /// Size of the rayon pool, looked up per call: a forked child gets a pool of its own.
    threads: usize,
}

impl Kernel {
    pub fn new(model: Arc<Model>, settings: Settings, threads: usize) -> Result<Kernel, CoreError> {
        model.check()?;
        let exponent = u32::try_from(settings.policy_len)
            .ok()
            .filter(|&t| t >= 1)
            .ok_or_else(|| CoreError::InvalidArgument("policy_len: must be at least 1".into()))?;
        let policies = model
            .actions()
            .checked_pow(exponent)
            .filter(|&p| p <= 1 << 20)
            .ok_or_else(|| CoreError::InvalidArgument("policy_len: too many policies".into()))?;
        if settings.log_e.len() != policies {
            return Err(CoreError::InvalidArgument(format!(
                "E: must have {policies} entries, one per policy"
            )));
        }
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(CoreError::InvalidArgument(format!(
                "num_threads: must be between 1 and {MAX_THREADS}, got {threads}"
            )));
        }
        Ok(Kernel {
            model,
            settings,
            policies,
            threads: helper_pool(threads).map(|_| threads)?,
        })
    }

    pub fn policies(&self) -> usize {
        self.policies
    }

    fn scratch(&self) -> Result<Scratch, CoreError> {
        let s = self.model.states;
        let mut levels = try_filled(0, Vec::new(), "scratch")?;
        levels
            .try_reserve_exact(self.settings.policy_len + 1)
            .map_err(|_| CoreError::Os(ENOMEM, "scratch: cannot allocate".into()))?;
        for _ in 0..=self.settings.policy_len {
            levels.push(try_filled(s, 0.0, "scratch")?);
        }
        Ok(Scratch {
            levels,
            likelihood: try_filled(s, 0.0, "scratch")?,
            log_likelihood: try_filled(s, 0.0, "scratch")?,
            masked: try_filled(s, 0.0, "scratch")?,
            qo: try_filled(self.model.joint_outcomes, 0.0, "scratch")?,
            marginals: try_filled(self.model.actions(), 0.0, "scratch")?,
        })
    }

    /// Posterior over states after `observation`, from the empirical prior (`D` before the
    /// first action, else the last posterior pushed through B for the last action); `F` is
    /// KL(q || D) - E_q[ln P(o | s)].
    fn infer_states_one(
        &self,
        qs: &mut [f64],
        action: i64,
        observation: &[i64],
        f: &mut f64,
        scratch: &mut Scratch,
    ) {
        let m = &*self.model;
        let prior = &mut scratch.levels[0];
        match usize::try_from(action) {
            Ok(a) => m.b[a].mul_rows(qs, prior),
            Err(_) => prior.copy_from_slice(&m.d),
        }
        let (likelihood, log_likelihood) = (&mut scratch.likelihood, &mut scratch.log_likelihood);
        likelihood.fill(1.0);
        log_likelihood.fill(0.0);
        for (modality, &o) in observation.iter().enumerate() {
            let row = (m.obs_offsets[modality] + o as usize) * m.states;
            let rows = m.a[row..row + m.states]
                .iter()
                .zip(&m.log_a[row..row + m.states]);
            for ((l, log_l), (&a, &log_a)) in likelihood
                .iter_mut()
                .zip(log_likelihood.iter_mut())
                .zip(rows)
            {
                *l *= a;
                *log_l += log_a;
            }
        }
        let mut sum = 0.0;
        for ((q, &l), &p) in qs.iter_mut().zip(likelihood.iter()).zip(prior.iter()) {
            *q = (l + EPS) * (p + EPS);
            sum += *q;
        }
        let mut free_energy = 0.0;
        for ((q, &log_l), &log_d) in qs.iter_mut().zip(log_likelihood.iter()).zip(&m.log_d) {
            *q /= sum;
            free_energy += *q * ((*q + EPS).ln() - log_d - log_l);
        }
        *f = free_energy;
    }

    /// Expected utility plus state information gain of predicted states `qs`.
    fn node_value(&self, qs: &[f64], qo: &mut [f64], masked: &mut [f64]) -> f64 {
        let m = &*self.model;
        let mut value = 0.0;
        if self.settings.use_utility {
            value = dot(qs, &m.utility);
        }
        if self.settings.use_states_info_gain {
            let threshold = self.settings.info_threshold;
            let mut expected_h = 0.0;
            if let Some(joint) = &m.joint_dense {
                for (mq, &q) in masked.iter_mut().zip(qs) {
                    *mq = if q > threshold { q } else { 0.0 };
                }
                expected_h = dot(masked, &m.info_h);
                for (o, row) in qo.iter_mut().zip(joint.chunks_exact(m.states)) {
                    *o = dot(row, masked);
                }
            } else {
                qo.fill(0.0);
                for (s, &q) in qs.iter().enumerate() {
                    if q > threshold {
                        expected_h += q * m.info_h[s];
                        for k in m.joint.ptr[s]..m.joint.ptr[s + 1] {
                            qo[m.joint.index[k]] += q * m.joint.values[k];
                        }
                    }
                }
            }
            let entropy_term: f64 = qo
                .iter()
                .filter(|&&o| o != 0.0)
                .map(|&o| o * (o + EPS).ln())
                .sum();
            value += expected_h - entropy_term;
        }
        value
    }

    /// G of every policy below the prefix whose predicted states are `levels[depth]`; policies
    /// are all action sequences in lexicographic order, so a prefix's states are computed once.
    fn visit(&self, depth: usize, prefix: usize, value: f64, g: &mut [f64], scratch: &mut Scratch) {
        let actions = self.model.actions();
        for a in 0..actions {
            let (done, rest) = scratch.levels.split_at_mut(depth + 1);
            self.model.b[a].mul_rows(&done[depth], &mut rest[0]);
            let total = value + self.node_value(&rest[0], &mut scratch.qo, &mut scratch.masked);
            let index = prefix * actions + a;
            if depth + 1 == self.settings.policy_len {
                g[index] = total;
            } else {
                self.visit(depth + 1, index, total, g, scratch);
            }
        }
    }

    fn infer_policies_one(
        &self,
        qs: &[f64],
        q_pi: &mut [f64],
        g: &mut [f64],
        scratch: &mut Scratch,
    ) {
        scratch.levels[0].copy_from_slice(qs);
        self.visit(0, 0, 0.0, g, scratch);
        for ((q, &gi), &log_e) in q_pi.iter_mut().zip(g.iter()).zip(&self.settings.log_e) {
            *q = gi * self.settings.gamma + log_e;
        }
        softmax_in_place(q_pi);
    }

    fn sample_action_one(
        &self,
        q_pi: &[f64],
        row: u64,
        action: &mut i64,
        timestep: &mut i64,
        key: u64,
        scratch: &mut Scratch,
    ) {
        let marginals = &mut scratch.marginals;
        marginals.fill(0.0);
        let per_first = self.policies / marginals.len();
        for (p, &q) in q_pi.iter().enumerate() {
            marginals[p / per_first] += q;
        }
        let sum: f64 = marginals.iter().sum();
        marginals.iter_mut().for_each(|v| *v /= sum);
        let chosen = if self.settings.deterministic {
            // The first action within rounding of the best (ties are exact in symmetric models).
            let best = marginals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            marginals
                .iter()
                .position(|&v| v >= best * (1.0 - TIE))
                .unwrap_or(0)
        } else {
            marginals
                .iter_mut()
                .for_each(|v| *v = (*v + EPS).ln() * self.settings.alpha);
            softmax_in_place(marginals);
            draw(marginals, uniform(key, row, *timestep as u64))
        };
        *action = chosen as i64;
        *timestep += 1;
    }

    fn check_rows(
        &self,
        rows: &Rows<'_>,
        observations: Option<&[i64]>,
    ) -> Result<usize, CoreError> {
        let n = rows.actions.len();
        let (s, p) = (self.model.states, self.policies);
        let ok = rows.beliefs.len() == n * s
            && rows.q_pi.len() == n * p
            && rows.g.len() == n * p
            && rows.f.len() == n
            && rows.timesteps.len() == n;
        if !ok {
            return Err(CoreError::InvalidArgument(
                "population arrays: inconsistent shapes".into(),
            ));
        }
        let actions = self.model.actions() as i64;
        if !rows.actions.iter().all(|&a| (-1..actions).contains(&a)) {
            return Err(CoreError::InvalidArgument(format!(
                "actions: must lie in [-1, {actions})"
            )));
        }
        if let Some(obs) = observations {
            let m = &*self.model;
            let valid = obs.len() == n * m.modalities()
                && obs.chunks(m.modalities()).all(|o| {
                    o.iter().enumerate().all(|(k, &v)| {
                        v >= 0 && (v as usize) < m.obs_offsets[k + 1] - m.obs_offsets[k]
                    })
                });
            if !valid {
                return Err(CoreError::InvalidArgument(
                    "observations: out of range".into(),
                ));
            }
        }
        Ok(n)
    }

    /// Any of the three phases for every row, in parallel; `observations` (rows x modalities)
    /// is needed when `infer` is set.
    pub fn run(
        &self,
        rows: Rows<'_>,
        observations: Option<&[i64]>,
        key: u64,
        phases: Phases,
    ) -> Result<(), CoreError> {
        if phases.infer && observations.is_none() {
            return Err(CoreError::InvalidArgument(NO_OBSERVATIONS.into()));
        }
        self.check_rows(&rows, observations.filter(|_| phases.infer))?;
        let (s, p, m) = (self.model.states, self.policies, self.model.modalities());
        let observations = observations.unwrap_or(&[]);
        let first_row = rows.first_row;
        // Chunks of rows on the threads (see `run_on_threads`), scratch space made once per thread.
        const CHUNK: usize = 32;
        let chunks: Vec<_> = rows
            .beliefs
            .chunks_mut(s * CHUNK)
            .zip(rows.q_pi.chunks_mut(p * CHUNK))
            .zip(rows.g.chunks_mut(p * CHUNK))
            .zip(rows.f.chunks_mut(CHUNK))
            .zip(rows.actions.chunks_mut(CHUNK))
            .zip(rows.timesteps.chunks_mut(CHUNK))
            .enumerate()
            .collect();
        run_on_threads(
            self.threads,
            chunks,
            || self.scratch(),
            |scratch, (chunk, (((((beliefs, q_pi), g), f), actions), timesteps))| {
                for i in 0..actions.len() {
                    let row = chunk * CHUNK + i;
                    let qs = &mut beliefs[i * s..(i + 1) * s];
                    let (q_pi, g) = (&mut q_pi[i * p..(i + 1) * p], &mut g[i * p..(i + 1) * p]);
                    if phases.infer {
                        let obs = &observations[row * m..(row + 1) * m];
                        self.infer_states_one(qs, actions[i], obs, &mut f[i], scratch);
                    }
                    if phases.plan {
                        self.infer_policies_one(qs, q_pi, g, scratch);
                    }
                    if phases.act {
                        let absolute = first_row + row as u64;
                        self.sample_action_one(
                            q_pi,
                            absolute,
                            &mut actions[i],
                            &mut timesteps[i],
                            key,
                            scratch,
                        );
                    }
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod factor_tests;
#[cfg(test)]
mod tests;

//! The batched kernel for factorized models (several hidden-state factors): pymdp 0.0.7.1's
//! VANILLA agent per row, rayon over rows. The formulas, update order and epsilons are those of
//! the numpy kernel (`python/freeagentics_rs/agents/_py_factors.py`, whose docstring gives them);
//! what depends only on the model is in `PreparedModel` (`factor_model.rs`).
//!
//! Where the work goes: rows are stepped four at a time, one per vector lane (`lanes.rs`);
//! policies are walked as a prefix tree, so policies that share their first steps share the
//! states predicted for those steps and those steps' values; transitions are pushed through
//! their nonzeros only; a node's value visits only the joint states whose probability is not
//! zero in some lane (a known location leaves one cell of the grid's joint), and the information
//! gain only the joint outcomes those states can produce. Skipping exact zeros changes no
//! result: every skipped term is an exact zero.

use std::sync::Arc;

use super::factor_model::PreparedModel;
use super::lanes::{Lane, F4};
use super::{helper_pool, run_on_threads, try_filled, Phases, MAX_THREADS, NO_OBSERVATIONS};
use crate::core::error::CoreError;

// One concern per file: state inference, policy evaluation, action selection and row checks.
#[path = "factor_actions.rs"]
mod actions;
#[path = "factor_policies.rs"]
mod policies;
#[path = "factor_states.rs"]
mod states;
pub(super) use actions::check_actions_and_observations;
#[cfg(test)] // only the tests call it by this path
pub(super) use actions::factor_key;
pub(super) use states::{outer, predict};

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

/// Scratch space of one thread, sized for one model's dimensions, for one agent (`f64`) or
/// four in lock-step (`F4`, see `lanes.rs`).
pub struct Scratch<L = f64> {
    controls: Vec<usize>,
    /// One agent's empirical prior and log-likelihood, before they go into its lane.
    prior_one: Vec<f64>,
    log_likelihood_one: Vec<f64>,
    /// The marginals inferred, and those whose policies are evaluated.
    qs: Vec<L>,
    log_prior: Vec<L>,
    next: Vec<L>,
    /// ln(q + 1e-16) of `next`.
    next_log: Vec<L>,
    log_likelihood: Vec<L>,
    /// ln(q + 1e-16) of `qs`.
    log_q: Vec<L>,
    /// The outer product of the current marginals (joint states, C order).
    joint: Vec<L>,
    ll: Vec<L>,
    /// Per level: (nodes, belief_len) predicted marginals.
    nodes: Vec<Vec<L>>,
    values: Vec<Vec<L>>,
    g: Vec<L>,
    q_pi: Vec<L>,
    /// Expected joint outcomes; all zero between nodes.
    qo: Vec<L>,
    /// A bit per joint outcome: touched by the current node (all clear between nodes).
    touched: Vec<u64>,
    /// The entropy's terms of the touched outcomes.
    terms: Vec<L>,
    marginals: Vec<f64>,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
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
            threads: helper_pool(threads).map(|_| threads)?,
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
        self.scratch_of(model)
    }

    fn scratch_of<L: Lane>(&self, model: &PreparedModel) -> Result<Scratch<L>, CoreError> {
        let (s, b, p) = (model.joint_states, model.belief_len(), self.policies);
        let zeros = |len: usize| try_filled(len, L::ZERO, "scratch");
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for level in &self.levels {
            nodes.push(zeros(level.parents.len() * b)?);
            values.push(zeros(level.parents.len())?);
        }
        let outcomes = model.outcomes.as_ref().map_or(0, |o| o.count);
        let max_controls = model.num_controls.iter().copied().max().unwrap_or(1);
        Ok(Scratch {
            controls: try_filled(model.factors(), 0, "scratch")?,
            prior_one: try_filled(b, 0.0, "scratch")?,
            log_likelihood_one: try_filled(s, 0.0, "scratch")?,
            qs: zeros(b)?,
            log_prior: zeros(b)?,
            next: zeros(b)?,
            next_log: zeros(b)?,
            log_likelihood: zeros(s)?,
            log_q: zeros(b)?,
            joint: zeros(s)?,
            ll: zeros(s)?,
            nodes,
            values,
            g: zeros(p)?,
            q_pi: zeros(p)?,
            qo: zeros(outcomes)?,
            touched: try_filled(outcomes.div_ceil(64), 0, "scratch")?,
            terms: zeros(outcomes)?,
            marginals: try_filled(max_controls.max(p), 0.0, "scratch")?,
        })
    }

    /// One agent's step (the phases selected) with `model`: the population's shared model, or
    /// the agent's own one of the same dimensions.
    pub fn step_agent(
        &self,
        model: &PreparedModel,
        mut agent: AgentRow<'_>,
        observation: &[i64],
        key: u64,
        phases: Phases,
        sc: &mut Scratch,
    ) {
        let rows = std::slice::from_mut(&mut agent);
        self.step_lanes(model, rows, observation, key, phases, sc);
    }

    /// The step of `rows`, one per lane of `L`; `observations` are theirs, one after the other.
    /// (Never inlined: profiles show it by name.)
    #[inline(never)]
    fn step_lanes<L: Lane>(
        &self,
        model: &PreparedModel,
        rows: &mut [AgentRow<'_>],
        observations: &[i64],
        key: u64,
        phases: Phases,
        sc: &mut Scratch<L>,
    ) {
        // The same code compiled for AVX2 where the CPU has it: twice the vector width for the
        // loops that vectorize (the wheel itself targets plain x86-64).
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.step_lanes_avx2(model, rows, observations, key, phases, sc) };
            return;
        }
        self.step_lanes_body(model, rows, observations, key, phases, sc);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn step_lanes_avx2<L: Lane>(
        &self,
        model: &PreparedModel,
        rows: &mut [AgentRow<'_>],
        observations: &[i64],
        key: u64,
        phases: Phases,
        sc: &mut Scratch<L>,
    ) {
        self.step_lanes_body(model, rows, observations, key, phases, sc);
    }

    /// `step_lanes`' work, inlined (with what it calls) into each of its versions.
    #[inline(always)]
    fn step_lanes_body<L: Lane>(
        &self,
        model: &PreparedModel,
        rows: &mut [AgentRow<'_>],
        observations: &[i64],
        key: u64,
        phases: Phases,
        sc: &mut Scratch<L>,
    ) {
        debug_assert_eq!(rows.len(), L::LANES);
        if phases.infer {
            self.infer_states_lanes(model, rows, observations, sc);
        } else if phases.plan {
            for (k, row) in rows.iter().enumerate() {
                for (q, &x) in sc.qs.iter_mut().zip(row.qs.iter()) {
                    q.set_lane(k, x);
                }
            }
        }
        if phases.plan {
            self.infer_policies_lanes(model, sc);
            for (k, row) in rows.iter_mut().enumerate() {
                for (out, &x) in row.q_pi.iter_mut().zip(&sc.q_pi) {
                    *out = x.lane(k);
                }
                for (out, &x) in row.g.iter_mut().zip(&sc.g) {
                    *out = x.lane(k);
                }
            }
        }
        if phases.act {
            for row in rows.iter_mut() {
                let (q_pi, actions) = (&*row.q_pi, &mut *row.actions);
                self.sample_action_one(
                    q_pi,
                    row.row,
                    actions,
                    row.timestep,
                    key,
                    &mut sc.marginals,
                );
            }
        }
    }

    /// Steps every row of `rows` with the shared model, chunks of rows on the threads.
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
        // Many small chunks per thread, so that the threads finish together (the last chunk is
        // the imbalance), of whole groups of four; scratch space is made once per thread.
        let chunk = (n / (self.threads * 16))
            .clamp(1, 64)
            .next_multiple_of(F4::LANES);
        let chunks: Vec<_> = rows
            .beliefs
            .chunks_mut(b * chunk)
            .zip(rows.q_pi.chunks_mut(p * chunk))
            .zip(rows.g.chunks_mut(p * chunk))
            .zip(rows.f.chunks_mut(chunk))
            .zip(rows.actions.chunks_mut(factors * chunk))
            .zip(rows.timesteps.chunks_mut(chunk))
            .enumerate()
            .collect();
        run_on_threads(
            self.threads,
            chunks,
            || {
                Ok((
                    self.scratch_of::<F4>(model)?,
                    self.scratch_of::<f64>(model)?,
                ))
            },
            |(lanes, one), (c, (((((beliefs, q_pi), g), f), actions), timesteps))| {
                let mut agents: Vec<AgentRow<'_>> = beliefs
                    .chunks_mut(b)
                    .zip(q_pi.chunks_mut(p))
                    .zip(g.chunks_mut(p))
                    .zip(f.iter_mut())
                    .zip(actions.chunks_mut(factors))
                    .zip(timesteps.iter_mut())
                    .enumerate()
                    .map(
                        |(i, (((((qs, q_pi), g), f), actions), timestep))| AgentRow {
                            qs,
                            q_pi,
                            g,
                            f,
                            actions,
                            timestep,
                            row: first_row + (c * chunk + i) as u64,
                        },
                    )
                    .collect();
                // The observations of `count` rows from the chunk's `i`-th.
                let observations_of = |i: usize, count: usize| match phases.infer {
                    true => &observations[(c * chunk + i) * modalities..][..count * modalities],
                    false => &[],
                };
                // Whole groups of four, one per lane; the rest (a population's last rows) alone.
                let whole = agents.len() / F4::LANES * F4::LANES;
                let (groups, rest) = agents.split_at_mut(whole);
                for (i, group) in groups.chunks_exact_mut(F4::LANES).enumerate() {
                    let observations = observations_of(i * F4::LANES, F4::LANES);
                    self.step_lanes(model, group, observations, key, phases, lanes);
                }
                for (i, agent) in rest.chunks_mut(1).enumerate() {
                    let observations = observations_of(whole + i, 1);
                    self.step_lanes(model, agent, observations, key, phases, one);
                }
                Ok(())
            },
        )
    }
}

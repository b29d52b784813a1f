//! The factorized kernel for agents that learn: each agent steps with its own prepared model,
//! a per-thread copy of the population's shared one whose learned parts (A[m], B[f], D[f]: the
//! normalized expectations of the agent's Dirichlet parameters, and what derives from them) are
//! refreshed in place before the agent's step (`learning_model.rs`); with `use_param_info_gain`,
//! pymdp's pA and pB information gain is subtracted from G's values and q_pi recomputed (the
//! numpy twin is `python/freeagentics_rs/agents/_learning_kernel.py`). Nothing per agent
//! outlives its step: an agent costs its parameter arrays only.

use rayon::prelude::*;

use super::factors::{check_actions_and_observations, outer};
use super::learning::{add_observation, add_transition};
use super::{pool_of, AgentRow, FactorKernel, FactorRows, Phases, PreparedModel};
use crate::core::error::CoreError;

/// What the learning kernel needs beyond the shared kernel.
pub struct LearningSettings {
    /// The modalities whose A each agent learns, the factors whose B, the factors whose D.
    pub learned_a: Vec<usize>,
    pub learned_b: Vec<usize>,
    pub learned_d: Vec<usize>,
    /// Per modality: ln(softmax(C_m) + 1e-16).
    pub log_c: Vec<Vec<f64>>,
    /// The utility over the modalities not learned (joint states).
    pub shared_utility: Vec<f64>,
    /// With parameter information gain: per modality, the wnorm of its shared pA (None where
    /// learned, or where there is no pA at all: `has_pa`), likewise per factor for pB.
    pub param_info_gain: bool,
    pub has_pa: bool,
    pub has_pb: bool,
    pub wa_shared: Vec<Option<Vec<f64>>>,
    pub wb_shared: Vec<Option<Vec<f64>>>,
    /// (policies, policy_len, factors) controls and the policy precision (for q_pi).
    pub policies: Vec<usize>,
    pub policy_len: usize,
    pub gamma: f64,
}

/// Some rows of the learned parameter arrays (row-major, one block per agent), in the order of
/// `learned_a`, `learned_b`, `learned_d`: read-only (`LearnedRows`) or writable.
pub struct Learned<P> {
    pub pa: Vec<P>,
    pub pb: Vec<P>,
    pub pd: Vec<P>,
}

pub type LearnedRows<'a> = Learned<&'a [f64]>;
pub type LearnedRowsMut<'a> = Learned<&'a mut [f64]>;

/// The learning rates of the fused learning step.
#[derive(Clone, Copy)]
pub struct Rates {
    pub pa: f64,
    pub pb: f64,
}

pub struct LearningKernel {
    pub kernel: std::sync::Arc<FactorKernel>,
    pub settings: LearningSettings,
    pub(super) threads: usize,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

pub(super) fn block_a(model: &PreparedModel, m: usize) -> usize {
    (model.obs_offsets[m + 1] - model.obs_offsets[m]) * model.joint_states
}

pub(super) fn block_b(model: &PreparedModel, f: usize) -> usize {
    model.num_states[f] * model.num_states[f] * model.num_controls[f]
}

impl LearningKernel {
    pub fn new(
        kernel: std::sync::Arc<FactorKernel>,
        settings: LearningSettings,
        threads: usize,
    ) -> Result<LearningKernel, CoreError> {
        let model = kernel.model();
        let (modalities, factors) = (model.modalities(), model.factors());
        let ok = settings.learned_a.iter().all(|&m| m < modalities)
            && settings.learned_b.iter().all(|&f| f < factors)
            && settings.learned_d.iter().all(|&f| f < factors)
            && settings.log_c.len() == modalities
            && (0..modalities).all(|m| {
                settings.log_c[m].len() == model.obs_offsets[m + 1] - model.obs_offsets[m]
            })
            && settings.shared_utility.len() == model.joint_states
            && settings.wa_shared.len() == modalities
            && settings.wb_shared.len() == factors
            && settings
                .wa_shared
                .iter()
                .enumerate()
                .all(|(m, w)| w.as_ref().is_none_or(|w| w.len() == block_a(model, m)))
            && settings
                .wb_shared
                .iter()
                .enumerate()
                .all(|(f, w)| w.as_ref().is_none_or(|w| w.len() == block_b(model, f)))
            && settings.policy_len > 0
            && settings.policies.len() == kernel.policies() * settings.policy_len * factors
            && settings
                .policies
                .chunks(factors)
                .all(|step| step.iter().zip(&model.num_controls).all(|(&c, &n)| c < n));
        if !ok {
            return Err(invalid("learning kernel: inconsistent settings".into()));
        }
        pool_of(threads)?;
        Ok(LearningKernel {
            kernel,
            settings,
            threads,
        })
    }

    fn check<P: AsRef<[f64]>>(
        &self,
        rows: &FactorRows<'_>,
        params: &Learned<P>,
        observations: Option<&[i64]>,
    ) -> Result<usize, CoreError> {
        let model = self.kernel.model();
        let n = rows.timesteps.len();
        let (b, p, factors) = (model.belief_len(), self.kernel.policies(), model.factors());
        let st = &self.settings;
        let ok = rows.beliefs.len() == n * b
            && rows.q_pi.len() == n * p
            && rows.g.len() == n * p
            && rows.f.len() == n
            && rows.actions.len() == n * factors
            && params.pa.len() == st.learned_a.len()
            && params.pb.len() == st.learned_b.len()
            && params.pd.len() == st.learned_d.len()
            && st
                .learned_a
                .iter()
                .zip(&params.pa)
                .all(|(&m, a)| a.as_ref().len() == n * block_a(model, m))
            && st
                .learned_b
                .iter()
                .zip(&params.pb)
                .all(|(&f, a)| a.as_ref().len() == n * block_b(model, f))
            && st
                .learned_d
                .iter()
                .zip(&params.pd)
                .all(|(&f, a)| a.as_ref().len() == n * model.num_states[f]);
        if !ok {
            return Err(invalid("population arrays: inconsistent shapes".into()));
        }
        check_actions_and_observations(model, rows.actions, observations, n)?;
        Ok(n)
    }

    /// Steps every row of `rows`, each agent with its own learned arrays.
    pub fn run(
        &self,
        rows: FactorRows<'_>,
        params: LearnedRows<'_>,
        observations: Option<&[i64]>,
        key: u64,
        phases: Phases,
    ) -> Result<(), CoreError> {
        let n = self.check(&rows, &params, observations.filter(|_| phases.infer))?;
        let shared = self.kernel.model();
        let (b, p, factors) = (
            shared.belief_len(),
            self.kernel.policies(),
            shared.factors(),
        );
        let modalities = shared.modalities();
        let observations = observations.filter(|_| phases.infer).unwrap_or(&[]);
        let first_row = rows.first_row;
        let chunk = (n / (self.threads * 4)).clamp(1, 64);
        let gain = self.settings.param_info_gain
            && phases.plan
            && (self.settings.has_pa || self.settings.has_pb);
        let (first, last) = match gain {
            true => (
                Phases {
                    infer: phases.infer,
                    plan: true,
                    act: false,
                },
                Phases {
                    infer: false,
                    plan: false,
                    act: phases.act,
                },
            ),
            false => (
                phases,
                Phases {
                    infer: false,
                    plan: false,
                    act: false,
                },
            ),
        };
        let params = &params;
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
                    let mut model = self.thread_model();
                    let mut sc = self.kernel.scratch(&model)?;
                    let mut w = self.work(&model);
                    let agents = beliefs
                        .chunks_mut(b)
                        .zip(q_pi.chunks_mut(p))
                        .zip(g.chunks_mut(p))
                        .zip(f.iter_mut())
                        .zip(actions.chunks_mut(factors))
                        .zip(timesteps.iter_mut());
                    for (i, (((((qs, q_pi), g), f), actions), timestep)) in agents.enumerate() {
                        let row = c * chunk + i;
                        if phases.infer || phases.plan {
                            self.refresh(&mut model, params, row, phases.plan, &mut w);
                        }
                        let observation = match phases.infer {
                            true => &observations[row * modalities..(row + 1) * modalities],
                            false => &[][..],
                        };
                        let global = first_row + row as u64;
                        let agent = AgentRow {
                            qs: &mut *qs,
                            q_pi: &mut *q_pi,
                            g: &mut *g,
                            f: &mut *f,
                            actions: &mut *actions,
                            timestep: &mut *timestep,
                            row: global,
                        };
                        self.kernel
                            .step_agent(&model, agent, observation, key, first, &mut sc);
                        if gain {
                            self.agent_wnorms(&model, params, row, &mut w);
                            self.add_parameter_gain(&model, qs, q_pi, g, &mut w);
                            let agent = AgentRow {
                                qs,
                                q_pi,
                                g,
                                f,
                                actions,
                                timestep,
                                row: global,
                            };
                            self.kernel
                                .step_agent(&model, agent, &[], key, last, &mut sc);
                        }
                    }
                    Ok(())
                })
        })
    }
}

impl LearningKernel {
    /// The learning step of every row in one pass (pymdp's order, per agent): infer states,
    /// `update_A` and `update_B` of the agent's own arrays (`params`, written in place), infer
    /// policies with the updated arrays, act.
    pub fn step_learning(
        &self,
        rows: FactorRows<'_>,
        params: LearnedRowsMut<'_>,
        observations: &[i64],
        key: u64,
        rates: Rates,
    ) -> Result<(), CoreError> {
        let n = self.check(&rows, &params, Some(observations))?;
        let shared = self.kernel.model();
        let (b, p, factors) = (
            shared.belief_len(),
            self.kernel.policies(),
            shared.factors(),
        );
        let (modalities, s) = (shared.modalities(), shared.joint_states);
        let st = &self.settings;
        let chunk = (n / (self.threads * 4)).clamp(1, 64);
        let count = n.div_ceil(chunk);
        let blocks = |indices: &[usize], size: &dyn Fn(usize) -> usize| -> Vec<usize> {
            indices.iter().map(|&i| size(i)).collect()
        };
        let (sizes_a, sizes_b, sizes_d) = (
            blocks(&st.learned_a, &|m| block_a(shared, m)),
            blocks(&st.learned_b, &|f| block_b(shared, f)),
            blocks(&st.learned_d, &|f| shared.num_states[f]),
        );
        let mut pieces: Vec<Learned<&mut [f64]>> = (0..count)
            .map(|_| Learned {
                pa: Vec::new(),
                pb: Vec::new(),
                pd: Vec::new(),
            })
            .collect();
        for (arrays, sizes, pick) in [
            (params.pa, &sizes_a, 0),
            (params.pb, &sizes_b, 1),
            (params.pd, &sizes_d, 2),
        ] {
            for (array, &block) in arrays.into_iter().zip(sizes.iter()) {
                for (c, piece) in array.chunks_mut(block * chunk).enumerate() {
                    match pick {
                        0 => pieces[c].pa.push(piece),
                        1 => pieces[c].pb.push(piece),
                        _ => pieces[c].pd.push(piece),
                    }
                }
            }
        }
        let gain = st.param_info_gain && (st.has_pa || st.has_pb);
        let infer = Phases {
            infer: true,
            plan: false,
            act: false,
        };
        let (plan, act) = match gain {
            true => (
                Phases {
                    infer: false,
                    plan: true,
                    act: false,
                },
                true,
            ),
            false => (
                Phases {
                    infer: false,
                    plan: true,
                    act: true,
                },
                false,
            ),
        };
        let first_row = rows.first_row;
        pool_of(self.threads)?.install(|| {
            rows.beliefs
                .par_chunks_mut(b * chunk)
                .zip(rows.q_pi.par_chunks_mut(p * chunk))
                .zip(rows.g.par_chunks_mut(p * chunk))
                .zip(rows.f.par_chunks_mut(chunk))
                .zip(rows.actions.par_chunks_mut(factors * chunk))
                .zip(rows.timesteps.par_chunks_mut(chunk))
                .zip(pieces.into_par_iter())
                .enumerate()
                .try_for_each(
                    |(c, ((((((beliefs, q_pi), g), f), actions), timesteps), mut own))| {
                        let mut model = self.thread_model();
                        let mut sc = self.kernel.scratch(&model)?;
                        let mut w = self.work(&model);
                        let agents = beliefs
                            .chunks_mut(b)
                            .zip(q_pi.chunks_mut(p))
                            .zip(g.chunks_mut(p))
                            .zip(f.iter_mut())
                            .zip(actions.chunks_mut(factors))
                            .zip(timesteps.iter_mut());
                        for (i, (((((qs, q_pi), g), f), actions), timestep)) in agents.enumerate() {
                            let row = c * chunk + i;
                            let global = first_row + row as u64;
                            let observation =
                                &observations[row * modalities..(row + 1) * modalities];
                            w.before.copy_from_slice(qs);
                            self.refresh(&mut model, &own, i, false, &mut w);
                            let agent = AgentRow {
                                qs: &mut *qs,
                                q_pi: &mut *q_pi,
                                g: &mut *g,
                                f: &mut *f,
                                actions: &mut *actions,
                                timestep: &mut *timestep,
                                row: global,
                            };
                            self.kernel
                                .step_agent(&model, agent, observation, key, infer, &mut sc);
                            // update_A and update_B of this agent's own arrays.
                            if !st.learned_a.is_empty() {
                                outer(&model, qs, &mut w.joint[..s]);
                            }
                            for (k, &m) in st.learned_a.iter().enumerate() {
                                let block = sizes_a[k];
                                let pa = &mut own.pa[k][i * block..(i + 1) * block];
                                add_observation(
                                    pa,
                                    observation[m] as usize,
                                    &w.joint[..s],
                                    rates.pa,
                                );
                            }
                            for (k, &f) in st.learned_b.iter().enumerate() {
                                if actions[f] < 0 {
                                    continue;
                                }
                                let (start, end) = (model.offsets[f], model.offsets[f + 1]);
                                let block = sizes_b[k];
                                let pb = &mut own.pb[k][i * block..(i + 1) * block];
                                let u = actions[f] as usize;
                                let controls = model.num_controls[f];
                                add_transition(
                                    pb,
                                    controls,
                                    u,
                                    &qs[start..end],
                                    &w.before[start..end],
                                    rates.pb,
                                );
                            }
                            self.refresh(&mut model, &own, i, true, &mut w);
                            let agent = AgentRow {
                                qs: &mut *qs,
                                q_pi: &mut *q_pi,
                                g: &mut *g,
                                f: &mut *f,
                                actions: &mut *actions,
                                timestep: &mut *timestep,
                                row: global,
                            };
                            self.kernel
                                .step_agent(&model, agent, &[], key, plan, &mut sc);
                            if act {
                                self.agent_wnorms(&model, &own, i, &mut w);
                                self.add_parameter_gain(&model, qs, q_pi, g, &mut w);
                                let agent = AgentRow {
                                    qs,
                                    q_pi,
                                    g,
                                    f,
                                    actions,
                                    timestep,
                                    row: global,
                                };
                                let act_only = Phases {
                                    infer: false,
                                    plan: false,
                                    act: true,
                                };
                                self.kernel
                                    .step_agent(&model, agent, &[], key, act_only, &mut sc);
                            }
                        }
                        Ok(())
                    },
                )
        })
    }
}

#[cfg(test)]
#[path = "learning_kernel_tests.rs"]
mod tests;

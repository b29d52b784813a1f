//! The factorized kernel for agents that learn: each agent steps with its own prepared model,
//! a per-thread copy of the population's shared one whose learned parts (A[m], B[f], D[f]: the
//! normalized expectations of the agent's Dirichlet parameters, and what derives from them) are
//! refreshed in place before the agent's step; with `use_param_info_gain`, pymdp's pA and pB
//! information gain is subtracted from G's values and q_pi recomputed (the numpy twin is
//! `python/freeagentics_rs/agents/_learning_kernel.py`). Nothing per agent outlives its step:
//! an agent costs its parameter arrays only.

use rayon::prelude::*;

use super::factors::{outer, predict};
use super::learning::{
    add_observation, add_transition, normalize_columns, pa_gain, pb_gain, wnorm_columns,
};
use super::{
    pool_of, softmax_in_place, AgentRow, FactorKernel, FactorRows, OutcomeRows, Phases,
    PreparedModel, Sparse, Transition, EPS,
};
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
    threads: usize,
}

/// Per-thread scratch of the refresh and the parameter information gain.
struct Work {
    sums: Vec<f64>,
    /// Joint outcomes of one state being built: (index, probability), and the next stage.
    combos: Vec<(usize, f64)>,
    combos_next: Vec<(usize, f64)>,
    wa: Vec<Vec<f64>>,
    wb: Vec<Vec<f64>>,
    prev: Vec<f64>,
    next: Vec<f64>,
    joint: Vec<f64>,
    /// The agent's posterior before this step (for update_B).
    before: Vec<f64>,
    /// Per learned modality: the A rows the utility and outcome tables were built from, and
    /// per joint state whether the current agent's differ.
    built: Vec<Vec<f64>>,
    changed: Vec<bool>,
    /// The sparse outcome rows being rebuilt (swapped with the model's).
    spare: Sparse,
}

fn invalid(message: String) -> CoreError {
    CoreError::InvalidArgument(message)
}

fn block_a(model: &PreparedModel, m: usize) -> usize {
    (model.obs_offsets[m + 1] - model.obs_offsets[m]) * model.joint_states
}

fn block_b(model: &PreparedModel, f: usize) -> usize {
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

    fn work(&self, model: &PreparedModel) -> Work {
        let s = model.joint_states;
        let widest = (0..model.factors())
            .map(|f| model.num_states[f] * model.num_controls[f])
            .max()
            .unwrap_or(1)
            .max(s);
        let outcomes = model.outcomes.as_ref().map_or(0, |o| o.count);
        Work {
            sums: vec![0.0; widest],
            combos: Vec::with_capacity(outcomes),
            combos_next: Vec::with_capacity(outcomes),
            wa: (0..model.modalities())
                .map(|m| vec![0.0; block_a(model, m)])
                .collect(),
            wb: (0..model.factors())
                .map(|f| vec![0.0; block_b(model, f)])
                .collect(),
            prev: vec![0.0; model.belief_len()],
            next: vec![0.0; model.belief_len()],
            joint: vec![0.0; s],
            before: vec![0.0; model.belief_len()],
            built: self
                .settings
                .learned_a
                .iter()
                .map(|&m| model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s].to_vec())
                .collect(),
            changed: vec![false; s],
            spare: Sparse {
                ptr: Vec::new(),
                index: Vec::new(),
                values: Vec::new(),
            },
        }
    }

    /// `model`'s learned parts from one agent's parameters (`row` of each learned array): what
    /// state inference uses, and with `plan` what policy inference uses too.
    fn refresh<P: AsRef<[f64]>>(
        &self,
        model: &mut PreparedModel,
        params: &Learned<P>,
        row: usize,
        plan: bool,
        w: &mut Work,
    ) {
        let st = &self.settings;
        let s = model.joint_states;
        for (k, &m) in st.learned_a.iter().enumerate() {
            let block = block_a(model, m);
            let rows = model.obs_offsets[m + 1] - model.obs_offsets[m];
            let pa = &params.pa[k].as_ref()[row * block..(row + 1) * block];
            let a = &mut model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s];
            normalize_columns(pa, rows, a, &mut w.sums[..s]);
        }
        if plan && !st.learned_a.is_empty() {
            self.refresh_values(model, w);
        }
        for (k, &f) in st.learned_b.iter().enumerate() {
            let (n, controls) = (model.num_states[f], model.num_controls[f]);
            let block = block_b(model, f);
            let pb = &params.pb[k].as_ref()[row * block..(row + 1) * block];
            // Column sums over `next`, per (previous, control).
            let sums = &mut w.sums[..n * controls];
            sums.fill(0.0);
            for line in pb.chunks_exact(n * controls) {
                for (x, &v) in sums.iter_mut().zip(line) {
                    *x += v;
                }
            }
            // A learned B is kept sparse (its zeros are the agent's, whatever the prior's layout).
            for (c, transition) in model.transitions[f].iter_mut().enumerate() {
                if !matches!(transition, Transition::Sparse(_)) {
                    *transition = Transition::Sparse(Sparse {
                        ptr: Vec::with_capacity(n + 1),
                        index: Vec::with_capacity(n * n),
                        values: Vec::with_capacity(n * n),
                    });
                }
                let Transition::Sparse(sparse) = transition else {
                    unreachable!("made sparse above")
                };
                sparse.ptr.clear();
                sparse.ptr.push(0);
                sparse.index.clear();
                sparse.values.clear();
                for previous in 0..n {
                    let sum = sums[previous * controls + c];
                    for next in 0..n {
                        let v = pb[(next * n + previous) * controls + c] / sum;
                        if v != 0.0 {
                            sparse.index.push(next);
                            sparse.values.push(v);
                        }
                    }
                    sparse.ptr.push(sparse.index.len());
                }
            }
        }
        for (k, &f) in st.learned_d.iter().enumerate() {
            let n = model.num_states[f];
            let pd = &params.pd[k].as_ref()[row * n..(row + 1) * n];
            let sum: f64 = pd.iter().sum();
            for ((d, ld), &p) in model.d[f].iter_mut().zip(model.log_d[f].iter_mut()).zip(pd) {
                *d = p / sum;
                *ld = (*d + EPS).ln();
            }
        }
    }

    /// The utility and the joint outcome tables of the joint states whose learned A columns
    /// differ from those the tables were last built from (`w.built`): an agent's step pays
    /// only for the columns that are its own.
    fn refresh_values(&self, model: &mut PreparedModel, w: &mut Work) {
        let st = &self.settings;
        let s = model.joint_states;
        let mut any = false;
        for state in 0..s {
            let mut changed = false;
            for (k, &m) in st.learned_a.iter().enumerate() {
                let a = &model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s];
                let built = &w.built[k];
                changed |= (0..a.len() / s)
                    .any(|o| a[o * s + state].to_bits() != built[o * s + state].to_bits());
            }
            w.changed[state] = changed;
            any |= changed;
        }
        if !any {
            return;
        }
        for state in (0..s).filter(|&state| w.changed[state]) {
            model.utility[state] = self.utility_of(model, state);
        }
        refill_outcomes(model, w);
        for (k, &m) in st.learned_a.iter().enumerate() {
            w.built[k]
                .copy_from_slice(&model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s]);
        }
    }

    /// The utility of joint state `state` with the model's current A: the shared part plus
    /// the learned modalities' (one formula, so a state's utility never depends on which
    /// agents a thread stepped before).
    fn utility_of(&self, model: &PreparedModel, state: usize) -> f64 {
        let (st, s) = (&self.settings, model.joint_states);
        let mut u = st.shared_utility[state];
        for &m in &st.learned_a {
            let a = &model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s];
            for (o, &lc) in st.log_c[m].iter().enumerate() {
                u += lc * a[o * s + state];
            }
        }
        u
    }

    /// A per-thread copy of the shared prepared model, its utility by `utility_of`.
    fn thread_model(&self) -> PreparedModel {
        let mut model: PreparedModel = (**self.kernel.model()).clone();
        if !self.settings.learned_a.is_empty() {
            for state in 0..model.joint_states {
                model.utility[state] = self.utility_of(&model, state);
            }
        }
        model
    }

    /// The agent's wnorm of its learned pA and pB (into `w`), for the information gain.
    fn agent_wnorms<P: AsRef<[f64]>>(
        &self,
        model: &PreparedModel,
        params: &Learned<P>,
        row: usize,
        w: &mut Work,
    ) {
        let s = model.joint_states;
        for (k, &m) in self.settings.learned_a.iter().enumerate() {
            let block = block_a(model, m);
            wnorm_columns(
                &params.pa[k].as_ref()[row * block..(row + 1) * block],
                &mut w.wa[m],
                &mut w.sums[..s],
            );
        }
        for (k, &f) in self.settings.learned_b.iter().enumerate() {
            let block = block_b(model, f);
            let columns = model.num_states[f] * model.num_controls[f];
            let pb = &params.pb[k].as_ref()[row * block..(row + 1) * block];
            wnorm_columns(pb, &mut w.wb[f], &mut w.sums[..columns]);
        }
    }

    /// Subtracts each policy's pA and pB information gain from `g` and recomputes `q_pi`.
    fn add_parameter_gain(
        &self,
        model: &PreparedModel,
        qs: &[f64],
        q_pi: &mut [f64],
        g: &mut [f64],
        w: &mut Work,
    ) {
        let st = &self.settings;
        let (t, factors, s) = (st.policy_len, model.factors(), model.joint_states);
        for (p, gp) in g.iter_mut().enumerate() {
            w.prev.copy_from_slice(qs);
            let mut loss = 0.0;
            for step in 0..t {
                let controls = &st.policies[(p * t + step) * factors..(p * t + step + 1) * factors];
                predict(model, &w.prev, controls, &mut w.next);
                if st.has_pa {
                    outer(model, &w.next, &mut w.joint);
                    for m in 0..model.modalities() {
                        let a = &model.a[model.obs_offsets[m] * s..model.obs_offsets[m + 1] * s];
                        let wa = st.wa_shared[m].as_deref().unwrap_or(&w.wa[m]);
                        loss += pa_gain(a, wa, &w.joint);
                    }
                }
                if st.has_pb {
                    for (f, &c) in controls.iter().enumerate() {
                        let (start, end) = (model.offsets[f], model.offsets[f + 1]);
                        let wb = st.wb_shared[f].as_deref().unwrap_or(&w.wb[f]);
                        loss += pb_gain(
                            wb,
                            model.num_controls[f],
                            c,
                            &w.next[start..end],
                            &w.prev[start..end],
                        );
                    }
                }
                std::mem::swap(&mut w.prev, &mut w.next);
            }
            *gp -= loss;
        }
        for ((q, &gp), &le) in q_pi.iter_mut().zip(g.iter()).zip(&model.log_e) {
            *q = gp * st.gamma + le;
        }
        softmax_in_place(q_pi);
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
        for row in rows.actions.chunks(factors) {
            for (f, (&a, &count)) in row.iter().zip(&model.num_controls).enumerate() {
                if !(-1..count as i64).contains(&a) {
                    return Err(invalid(format!(
                        "actions: must lie in [-1, {count}) of factor {f}"
                    )));
                }
            }
        }
        if let Some(obs) = observations {
            let modalities = model.modalities();
            let valid = obs.len() == n * modalities
                && obs.chunks(modalities).all(|o| {
                    o.iter().enumerate().all(|(k, &v)| {
                        v >= 0 && (v as usize) < model.obs_offsets[k + 1] - model.obs_offsets[k]
                    })
                });
            if !valid {
                return Err(invalid("observations: out of range".into()));
            }
        }
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

/// Rebuilds the joint outcome tables of the joint states marked in `w.changed`, in the model's
/// layout: per state, the products of the nonzero entries of its A columns (in C order, first
/// modality slowest, multiplied in that order as spm_cross does), and H[s] over them (zeros add
/// exactly nothing). Sparse rows are rebuilt into `w.spare`, unchanged states copied over.
fn refill_outcomes(model: &mut PreparedModel, w: &mut Work) {
    let s = model.joint_states;
    let threshold = (-16f64).exp();
    let Some(outcomes) = model.outcomes.as_mut() else {
        return;
    };
    let count = outcomes.count;
    let (a, offsets) = (&model.a, &model.obs_offsets);
    let (combos, next, spare) = (&mut w.combos, &mut w.combos_next, &mut w.spare);
    spare.ptr.clear();
    spare.ptr.push(0);
    spare.index.clear();
    spare.values.clear();
    for state in 0..s {
        if !w.changed[state] {
            if let OutcomeRows::Sparse(old) = &outcomes.rows {
                let (from, to) = (old.ptr[state], old.ptr[state + 1]);
                spare.index.extend_from_slice(&old.index[from..to]);
                spare.values.extend_from_slice(&old.values[from..to]);
                spare.ptr.push(spare.index.len());
            }
            continue;
        }
        combos.clear();
        combos.push((0usize, 1.0f64));
        for m in 0..offsets.len() - 1 {
            let n = offsets[m + 1] - offsets[m];
            let column = &a[offsets[m] * s..offsets[m + 1] * s];
            next.clear();
            for &(index, p) in combos.iter() {
                for o in 0..n {
                    let v = column[o * s + state];
                    if v != 0.0 {
                        next.push((index * n + o, p * v));
                    }
                }
            }
            std::mem::swap(combos, next);
        }
        outcomes.info_h[state] = combos
            .iter()
            .filter(|&&(_, p)| p != 0.0)
            .map(|&(_, p)| p * (p + threshold).ln())
            .sum();
        match &mut outcomes.rows {
            OutcomeRows::Dense { rows, padded } => {
                let row = &mut rows[state * *padded..state * *padded + count];
                row.fill(0.0);
                for &(index, p) in combos.iter() {
                    row[index] = p;
                }
            }
            OutcomeRows::Sparse(_) => {
                for &(index, p) in combos.iter().filter(|&&(_, p)| p != 0.0) {
                    spare.index.push(index);
                    spare.values.push(p);
                }
                spare.ptr.push(spare.index.len());
            }
        }
    }
    if let OutcomeRows::Sparse(rows) = &mut outcomes.rows {
        std::mem::swap(rows, spare);
    }
}
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::agents::{FactorArrays, FactorSettings};

    /// Two factors (2 and 3 states; 2 and 1 controls), two modalities (2 and 3 observations).
    fn arrays() -> FactorArrays {
        let columns = |rows: usize, seed: usize| -> Vec<f64> {
            let raw: Vec<f64> = (0..rows * 6)
                .map(|i| 1.0 + ((i * 7 + seed * 3) % 5) as f64)
                .collect();
            let mut out = raw.clone();
            for s in 0..6 {
                let sum: f64 = (0..rows).map(|o| raw[o * 6 + s]).sum();
                for o in 0..rows {
                    out[o * 6 + s] = raw[o * 6 + s] / sum;
                }
            }
            out
        };
        let mut b0 = vec![0.0; 8]; // (next, previous, control): control 0 stays, 1 swaps
        for s in 0..2 {
            b0[(s * 2 + s) * 2] = 1.0;
            b0[((1 - s) * 2 + s) * 2 + 1] = 1.0;
        }
        let mut b1 = vec![0.0; 9];
        for s in 0..3 {
            b1[s * 3 + s] = 1.0;
        }
        FactorArrays {
            num_states: vec![2, 3],
            a: vec![columns(2, 1), columns(3, 2)],
            b: vec![b0, b1],
            num_controls: vec![2, 1],
            c: vec![vec![0.0, 1.0], vec![2.0, 0.0, -1.0]],
            d: vec![vec![0.5, 0.5], vec![0.2, 0.3, 0.5]],
            e: vec![0.5, 0.5],
        }
    }

    fn kernel(arrays: &FactorArrays) -> Arc<FactorKernel> {
        let model = PreparedModel::new(arrays, true).unwrap();
        let settings = FactorSettings {
            policies: vec![0, 0, 1, 0],
            policy_len: 1,
            gamma: 8.0,
            alpha: 8.0,
            deterministic: true,
            full_sampling: false,
            use_utility: true,
            use_states_info_gain: true,
            num_iter: 10,
            df: 1.0,
            df_tol: 0.001,
        };
        Arc::new(FactorKernel::new(Arc::new(model), settings, 1).unwrap())
    }

    fn learning(kernel: Arc<FactorKernel>, arrays: &FactorArrays, gain: bool) -> LearningKernel {
        let log_c: Vec<Vec<f64>> = arrays
            .c
            .iter()
            .map(|c| {
                let max = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = c.iter().map(|v| (v - max).exp()).sum();
                c.iter()
                    .map(|v| ((v - max).exp() / sum + EPS).ln())
                    .collect()
            })
            .collect();
        let mut shared_utility = vec![0.0; 6];
        for (o, &lc) in log_c[1].iter().enumerate() {
            for (s, u) in shared_utility.iter_mut().enumerate() {
                *u += lc * arrays.a[1][o * 6 + s];
            }
        }
        let settings = LearningSettings {
            learned_a: vec![0],
            learned_b: vec![0],
            learned_d: vec![1],
            log_c,
            shared_utility,
            param_info_gain: gain,
            has_pa: false,
            has_pb: false,
            wa_shared: vec![None, None],
            wb_shared: vec![None, None],
            policies: vec![0, 0, 1, 0],
            policy_len: 1,
            gamma: 8.0,
        };
        LearningKernel::new(kernel, settings, 1).unwrap()
    }

    /// Agents whose parameters are their prior's (scaled: the same expectation) step as the
    /// shared kernel does.
    #[test]
    fn learning_agents_at_their_prior_step_as_the_shared_kernel() {
        let arrays = arrays();
        let shared = kernel(&arrays);
        let learner = learning(shared.clone(), &arrays, false);
        let n = 3;
        let scaled = |v: &[f64], k: f64| -> Vec<f64> {
            (0..n).flat_map(|_| v.iter().map(move |x| x * k)).collect()
        };
        let (pa, pb, pd) = (
            scaled(&arrays.a[0], 3.0),
            scaled(&arrays.b[0], 2.0),
            scaled(&arrays.d[1], 5.0),
        );
        let observations: Vec<i64> = vec![0, 2, 1, 0, 1, 1];
        let mut states = [vec![0.0; n * 5], vec![0.0; n * 5]];
        let mut q_pi = [vec![0.0; n * 2], vec![0.0; n * 2]];
        let mut g = [vec![0.0; n * 2], vec![0.0; n * 2]];
        let mut f = [vec![0.0; n], vec![0.0; n]];
        let mut actions = [vec![-1i64; n * 2], vec![-1i64; n * 2]];
        let mut timesteps = [vec![0i64; n], vec![0i64; n]];
        let phases = Phases {
            infer: true,
            plan: true,
            act: true,
        };
        for _ in 0..3 {
            for k in 0..2 {
                let rows = FactorRows {
                    beliefs: &mut states[k],
                    q_pi: &mut q_pi[k],
                    g: &mut g[k],
                    f: &mut f[k],
                    actions: &mut actions[k],
                    timesteps: &mut timesteps[k],
                    first_row: 0,
                };
                if k == 0 {
                    shared.run(rows, Some(&observations), 7, phases).unwrap();
                } else {
                    let params = LearnedRows {
                        pa: vec![&pa],
                        pb: vec![&pb],
                        pd: vec![&pd],
                    };
                    learner
                        .run(rows, params, Some(&observations), 7, phases)
                        .unwrap();
                }
            }
            for (x, y) in states[0]
                .iter()
                .zip(&states[1])
                .chain(g[0].iter().zip(&g[1]))
            {
                assert!((x - y).abs() < 1e-12, "{x} != {y}");
            }
            assert_eq!(actions[0], actions[1]);
        }
    }

    /// The fused learning step updates pA and pB as the batched updates do.
    #[test]
    fn step_learning_updates_as_the_batched_updates() {
        let arrays = arrays();
        let learner = learning(kernel(&arrays), &arrays, true);
        let n = 2;
        let mut pa: Vec<f64> = (0..n)
            .flat_map(|_| arrays.a[0].iter().map(|x| x * 4.0))
            .collect();
        let mut pb: Vec<f64> = (0..n)
            .flat_map(|_| arrays.b[0].iter().map(|x| x + 0.5))
            .collect();
        let mut pd: Vec<f64> = (0..n).flat_map(|_| arrays.d[1].clone()).collect();
        let (pa0, pb0) = (pa.clone(), pb.clone());
        let mut beliefs = vec![0.0; n * 5];
        let before = vec![0.5, 0.5, 0.2, 0.3, 0.5, 0.5, 0.5, 0.2, 0.3, 0.5];
        beliefs.copy_from_slice(&before);
        let (mut q_pi, mut g, mut f) = (vec![0.0; n * 2], vec![0.0; n * 2], vec![0.0; n]);
        let mut actions = vec![1i64, 0, -1, -1];
        let mut timesteps = vec![1i64, 0];
        let observations = vec![1i64, 2, 0, 0];
        let rows = FactorRows {
            beliefs: &mut beliefs,
            q_pi: &mut q_pi,
            g: &mut g,
            f: &mut f,
            actions: &mut actions,
            timesteps: &mut timesteps,
            first_row: 0,
        };
        let params = LearnedRowsMut {
            pa: vec![&mut pa],
            pb: vec![&mut pb],
            pd: vec![&mut pd],
        };
        let rates = Rates { pa: 0.5, pb: 2.0 };
        learner
            .step_learning(rows, params, &observations, 3, rates)
            .unwrap();
        let marginals = super::super::learning::Marginals::new(&[2, 3]).unwrap();
        let (mut expected_a, mut expected_b) = (pa0, pb0);
        super::super::learning::update_a(
            &mut expected_a,
            2,
            &marginals,
            &observations,
            0,
            2,
            &beliefs,
            0.5,
            1,
        )
        .unwrap();
        let acted = [1i64, 0, -1, -1];
        super::super::learning::update_b(
            &mut expected_b,
            2,
            &marginals,
            0,
            &acted,
            &beliefs,
            &before,
            2.0,
            1,
        )
        .unwrap();
        assert_eq!(pa, expected_a);
        assert_eq!(pb, expected_b);
        assert!(q_pi.iter().all(|q| q.is_finite()) && timesteps == vec![2, 1]);
    }
}

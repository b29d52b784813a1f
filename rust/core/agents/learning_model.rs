//! The per-agent model of the learning kernel (`learning_kernel.rs`): a per-thread copy of the
//! population's shared prepared model whose learned parts are refreshed from one agent's
//! Dirichlet parameters before its step (A[m] rows; the utility and the joint outcome tables of
//! the joint states whose learned columns changed; B[f] as sparse transitions; D[f]), and the
//! parameter information gain (pymdp's `calc_pA_info_gain`, `calc_pB_info_gain`).

use super::factors::{outer, predict};
use super::learning::{normalize_columns, pa_gain, pb_gain, wnorm_columns};
use super::learning_kernel::{block_a, block_b, Learned, LearningKernel};
use super::{softmax_in_place, OutcomeRows, PreparedModel, Sparse, Transition, EPS};

/// Per-thread scratch of the refresh and the parameter information gain.
pub(super) struct Work {
    pub(super) sums: Vec<f64>,
    /// Joint outcomes of one state being built: (index, probability), and the next stage.
    pub(super) combos: Vec<(usize, f64)>,
    pub(super) combos_next: Vec<(usize, f64)>,
    pub(super) wa: Vec<Vec<f64>>,
    pub(super) wb: Vec<Vec<f64>>,
    pub(super) prev: Vec<f64>,
    pub(super) next: Vec<f64>,
    pub(super) joint: Vec<f64>,
    /// The agent's posterior before this step (for update_B).
    pub(super) before: Vec<f64>,
    /// Per learned modality: the A rows the utility and outcome tables were built from, and
    /// per joint state whether the current agent's differ.
    pub(super) built: Vec<Vec<f64>>,
    pub(super) changed: Vec<bool>,
    /// The sparse outcome rows being rebuilt (swapped with the model's).
    pub(super) spare: Sparse,
}

impl LearningKernel {
    pub(super) fn work(&self, model: &PreparedModel) -> Work {
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
    pub(super) fn refresh<P: AsRef<[f64]>>(
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
    pub(super) fn thread_model(&self) -> PreparedModel {
        let mut model: PreparedModel = (**self.kernel.model()).clone();
        if !self.settings.learned_a.is_empty() {
            model.log_likelihoods = None; // the shared A's, not the agent's
            for state in 0..model.joint_states {
                model.utility[state] = self.utility_of(&model, state);
            }
        }
        model
    }

    /// The agent's wnorm of its learned pA and pB (into `w`), for the information gain.
    pub(super) fn agent_wnorms<P: AsRef<[f64]>>(
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
    pub(super) fn add_parameter_gain(
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

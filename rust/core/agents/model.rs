//! The generative model and the settings as the batched kernel uses them: sparse transitions and
//! joint outcome tables, and the per-model quantities computed once (see
//! `python/freeagentics_rs/agents/_model.py`).

use crate::core::error::CoreError;

/// Compressed sparse matrix: line `i` (a row or a column, as the user decides) holds the
/// entries `ptr[i]..ptr[i + 1]` of `index` (the other coordinate) and `values`.
#[derive(Clone)]
pub struct Sparse {
    pub ptr: Vec<usize>,
    pub index: Vec<usize>,
    pub values: Vec<f64>,
}

impl Sparse {
    pub(super) fn check(&self, lines: usize, other: usize, what: &str) -> Result<(), CoreError> {
        let ok = self.ptr.len() == lines + 1
            && self.ptr.windows(2).all(|w| w[0] <= w[1])
            && self.ptr.last() == Some(&self.index.len())
            && self.index.len() == self.values.len()
            && self.index.iter().all(|&i| i < other);
        ok.then_some(())
            .ok_or_else(|| CoreError::InvalidArgument(format!("{what}: malformed sparse matrix")))
    }

    /// `out = self @ x` with lines as rows (each output is a short gather, no scattered stores).
    pub(super) fn mul_rows(&self, x: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            let (start, end) = (self.ptr[i], self.ptr[i + 1]);
            *o = self.values[start..end]
                .iter()
                .zip(&self.index[start..end])
                .map(|(v, &j)| v * x[j])
                .sum();
        }
    }
}

/// A generative model as the kernel uses it.
pub struct Model {
    pub states: usize,
    /// Row offsets of each modality in `a` (modalities + 1 entries).
    pub obs_offsets: Vec<usize>,
    /// Every modality's A matrix stacked: (total observations, states), row-major.
    pub a: Vec<f64>,
    /// One transition matrix per action, (next, previous), by rows.
    pub b: Vec<Sparse>,
    /// ln(A + 1e-16), stacked like `a`.
    pub log_a: Vec<f64>,
    /// Joint outcome distribution of each state (joint outcomes, states), by columns.
    pub joint: Sparse,
    pub joint_outcomes: usize,
    /// The same, row-major, when it is dense enough that contiguous dot products beat the
    /// scattered sparse updates (the explorer model's joint has no zeros).
    pub joint_dense: Option<Vec<f64>>,
    pub utility: Vec<f64>,
    pub info_h: Vec<f64>,
    pub d: Vec<f64>,
    pub log_d: Vec<f64>,
}

impl Model {
    pub fn check(&self) -> Result<(), CoreError> {
        let s = self.states;
        let total_obs = *self.obs_offsets.last().unwrap_or(&0);
        let lengths_ok = self.a.len() == total_obs * s
            && self.log_a.len() == self.a.len()
            && self
                .joint_dense
                .as_ref()
                .is_none_or(|j| j.len() == self.joint_outcomes * s)
            && [&self.utility, &self.info_h, &self.d, &self.log_d]
                .iter()
                .all(|v| v.len() == s)
            && !self.b.is_empty()
            && self.obs_offsets.len() >= 2;
        if !lengths_ok {
            return Err(CoreError::InvalidArgument(
                "model: inconsistent sizes".into(),
            ));
        }
        for b in &self.b {
            b.check(s, s, "B")?;
        }
        self.joint.check(s, self.joint_outcomes, "joint")
    }

    pub fn actions(&self) -> usize {
        self.b.len()
    }

    pub fn modalities(&self) -> usize {
        self.obs_offsets.len() - 1
    }
}

pub struct Settings {
    pub policy_len: usize,
    pub gamma: f64,
    pub alpha: f64,
    pub deterministic: bool,
    pub use_utility: bool,
    pub use_states_info_gain: bool,
    /// States at or below this predicted probability are left out of the information gain
    /// (pymdp: `exp(-16)`).
    pub info_threshold: f64,
    /// ln(E + 1e-16), one per policy.
    pub log_e: Vec<f64>,
}

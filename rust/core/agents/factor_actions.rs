//! Action selection of the factorized kernel (`factors.rs`), and the checks of the rows it steps.

use super::{invalid, FactorKernel, FactorRows};
use crate::core::agents::factor_model::PreparedModel;
use crate::core::agents::{draw, ln_fast, softmax_in_place, splitmix64, uniform, EPS, TIE};
use crate::core::error::CoreError;

/// Every action in [-1, controls) of its factor, and every observation (when given) in range
/// for its modality: the rows' checks that both the shared and the learning kernel make.
pub(in crate::core::agents) fn check_actions_and_observations(
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

impl FactorKernel {
    /// The first index within rounding of the best value.
    fn first_best(values: &[f64]) -> usize {
        let best = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        values
            .iter()
            .position(|&v| v >= best * (1.0 - TIE))
            .unwrap_or(0)
    }

    #[inline(always)]
    pub(super) fn sample_action_one(
        &self,
        q_pi: &[f64],
        row: u64,
        actions: &mut [i64],
        timestep: &mut i64,
        key: u64,
        marginals: &mut [f64],
    ) {
        let factors = actions.len();
        let t = self.settings.policy_len;
        let policy = |p: usize, f: usize| self.settings.policies[p * t * factors + f];
        if self.settings.full_sampling {
            let chosen = if self.settings.deterministic {
                Self::first_best(q_pi)
            } else {
                let p = &mut marginals[..self.policies];
                for (x, &q) in p.iter_mut().zip(q_pi) {
                    *x = ln_fast(q + EPS) * self.settings.alpha;
                }
                softmax_in_place(p);
                draw(p, uniform(key, row, *timestep as u64))
            };
            for (f, a) in actions.iter_mut().enumerate() {
                *a = policy(chosen, f) as i64;
            }
        } else {
            for (f, a) in actions.iter_mut().enumerate() {
                if self.model.num_controls[f] == 1 {
                    *a = 0; // what the draw or the argmax of a single 1.0 gives
                    continue;
                }
                let marginals = &mut marginals[..self.model.num_controls[f]];
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
                        .for_each(|v| *v = ln_fast(*v + EPS) * self.settings.alpha);
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

    pub(super) fn check_rows(
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
}

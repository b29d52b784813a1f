//! Unit tests of the learning kernel (`learning_kernel.rs`, `learning_model.rs`).
use std::sync::Arc;

use super::*;
use crate::core::agents::{FactorArrays, FactorSettings, EPS};

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

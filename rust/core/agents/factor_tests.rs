//! Unit tests of the factorized kernel (`factors.rs`); those of the one-factor kernel and the
//! shared numerics are in `tests.rs`.

use super::*;

/// Two factors of two states (the second uncontrolled), one 90%-reliable modality on factor 0.
fn two_factor_kernel(policy_len: usize, full_sampling: bool) -> FactorKernel {
    let policies: Vec<usize> = match policy_len {
        1 => vec![0, 0, 1, 0],
        _ => vec![0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0],
    };
    let count = policies.len() / (2 * policy_len);
    let arrays = FactorArrays {
        num_states: vec![2, 2],
        // A: (2 observations, 2 x 2 joint states): observation follows factor 0.
        a: vec![vec![0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]],
        // B[0]: (next, previous, control): control 0 stays, control 1 swaps; B[1] stays.
        b: vec![
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
            vec![1.0, 0.0, 0.0, 1.0],
        ],
        num_controls: vec![2, 1],
        c: vec![vec![0.0, 3.0]],
        d: vec![vec![0.5, 0.5]; 2],
        e: vec![1.0 / count as f64; count],
    };
    let model = PreparedModel::new(&arrays, true).unwrap();
    let settings = FactorSettings {
        policies,
        policy_len,
        gamma: 8.0,
        alpha: 8.0,
        deterministic: true,
        full_sampling,
        use_utility: true,
        use_states_info_gain: true,
        num_iter: 10,
        df: 1.0,
        df_tol: 0.001,
    };
    FactorKernel::new(Arc::new(model), settings, 2).unwrap()
}

#[test]
fn factorized_rows_stay_normalized_and_prefer_the_useful_state() {
    for (policy_len, full) in [(1, false), (2, false), (2, true)] {
        let kernel = two_factor_kernel(policy_len, full);
        let (n, p) = (5, kernel.policies());
        let mut beliefs = vec![0.5; n * 4];
        let (mut q_pi, mut g, mut f) = (vec![0.0; n * p], vec![0.0; n * p], vec![0.0; n]);
        let (mut actions, mut timesteps) = (vec![-1i64; n * 2], vec![0i64; n]);
        let observations = vec![0i64; n];
        let phases = Phases {
            infer: true,
            plan: true,
            act: true,
        };
        for _ in 0..3 {
            let rows = FactorRows {
                beliefs: &mut beliefs,
                q_pi: &mut q_pi,
                g: &mut g,
                f: &mut f,
                actions: &mut actions,
                timesteps: &mut timesteps,
                first_row: 0,
            };
            kernel.run(rows, Some(&observations), 7, phases).unwrap();
        }
        for row in beliefs.chunks(4) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-12 && (row[2] + row[3] - 1.0).abs() < 1e-12);
        }
        // Utility is in factor 0's second state: every agent moves (swaps) there or stays.
        assert!(actions
            .chunks(2)
            .all(|a| a[1] == 0 && (0..2).contains(&a[0])));
        assert!(timesteps.iter().all(|&t| t == 3));
    }
    assert_eq!(super::factors::factor_key(42, 0), 42);
    assert_ne!(super::factors::factor_key(42, 1), 42);
}

#[test]
fn the_log_likelihood_table_matches_the_likelihood_computed_per_step() {
    let mut arrays = FactorArrays {
        num_states: vec![2, 3],
        // Two modalities over the 2 x 3 joint states: 2 and 3 observations.
        a: vec![
            vec![0.9, 0.2, 1.0, 0.0, 0.5, 0.3, 0.1, 0.8, 0.0, 1.0, 0.5, 0.7],
            vec![
                0.2, 0.0, 0.5, 1.0, 0.1, 0.3, 0.3, 1.0, 0.5, 0.0, 0.1, 0.3, 0.5, 0.0, 0.0, 0.0,
                0.8, 0.4,
            ],
        ],
        b: vec![vec![1.0, 0.0, 0.0, 1.0], vec![0.0; 9]],
        num_controls: vec![1, 1],
        c: vec![vec![0.0; 2], vec![0.0; 3]],
        d: vec![vec![0.5; 2], vec![1.0 / 3.0; 3]],
        e: vec![1.0],
    };
    for i in 0..3 {
        arrays.b[1][i * 3 + i] = 1.0;
    }
    let model = PreparedModel::new(&arrays, false).unwrap();
    let mut computed = vec![0.0; 6];
    for observation in [[0i64, 0], [0, 2], [1, 1], [1, 2]] {
        model.log_likelihood_into(&observation, &mut computed);
        let row = model
            .log_likelihood_row(&observation)
            .expect("a small table");
        assert!(row
            .iter()
            .zip(&computed)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    // Too many joint observations for a table: computed per step instead.
    arrays.c[1] = vec![0.0; 1 << 14];
    arrays.a[1] = vec![1.0 / (1 << 14) as f64; 6 << 14];
    assert!(PreparedModel::new(&arrays, false)
        .unwrap()
        .log_likelihoods
        .is_none());
}

/// Two factors of three and two states, two modalities that each depend on both factors, so
/// that the fixed point takes a different number of iterations for different observations.
fn entangled_kernel(policy_len: usize, deterministic: bool) -> FactorKernel {
    let policies: Vec<usize> = match policy_len {
        1 => vec![0, 0, 1, 0, 2, 0],
        _ => (0..9).flat_map(|p| [p / 3, 0, p % 3, 0]).collect(),
    };
    let count = policies.len() / (2 * policy_len);
    // A_m[o, s] over the 6 joint states, columns summing to 1.
    let first = [0.7, 0.2, 0.5, 0.1, 0.3, 0.6];
    let second = [0.1, 0.6, 0.3, 0.8, 0.45, 0.05];
    let shift = |n: usize| -> Vec<f64> {
        // B: control c moves state s to (s + c) mod n.
        let mut b = vec![0.0; n * n * n];
        for c in 0..n {
            for s in 0..n {
                b[(((s + c) % n) * n + s) * n + c] = 1.0;
            }
        }
        b
    };
    let arrays = FactorArrays {
        num_states: vec![3, 2],
        a: vec![
            first
                .iter()
                .chain(&first.map(|p| 1.0 - p))
                .copied()
                .collect(),
            [
                second,
                second.map(|p| (1.0 - p) / 2.0),
                second.map(|p| (1.0 - p) / 2.0),
            ]
            .concat(),
        ],
        b: vec![shift(3), vec![0.9, 0.2, 0.1, 0.8]],
        num_controls: vec![3, 1],
        c: vec![vec![0.0, 1.0], vec![2.0, 0.0, -1.0]],
        d: vec![vec![0.2, 0.3, 0.5], vec![0.6, 0.4]],
        e: vec![1.0 / count as f64; count],
    };
    let settings = FactorSettings {
        policies,
        policy_len,
        gamma: 4.0,
        alpha: 2.0,
        deterministic,
        full_sampling: false,
        use_utility: true,
        use_states_info_gain: true,
        num_iter: 10,
        df: 1.0,
        df_tol: 1e-6,
    };
    let model = PreparedModel::new(&arrays, true).unwrap();
    FactorKernel::new(Arc::new(model), settings, 2).unwrap()
}

#[test]
fn agents_stepped_four_at_a_time_match_agents_stepped_alone() {
    let all = Phases {
        infer: true,
        plan: true,
        act: true,
    };
    for (policy_len, deterministic) in [(1, true), (2, false)] {
        let kernel = entangled_kernel(policy_len, deterministic);
        let (n, p, b) = (11, kernel.policies(), 5);
        // [beliefs, q_pi, g, f] and [actions, timesteps] of both populations.
        let mut floats = [
            vec![0.0; n * b],
            vec![0.0; n * p],
            vec![0.0; n * p],
            vec![0.0; n],
        ];
        let mut ints = [vec![-1i64; n * 2], vec![0i64; n]];
        let (mut alone, mut alone_ints) = (floats.clone(), ints.clone());
        let mut sc = kernel.scratch(kernel.model()).unwrap();
        for step in 0..6u64 {
            let observations: Vec<i64> = (0..n as u64)
                .flat_map(|i| {
                    let h = crate::core::rng::splitmix64(step * 100 + i);
                    [(h % 2) as i64, (h / 2 % 3) as i64]
                })
                .collect();
            let [beliefs, q_pi, g, f] = &mut floats;
            let [actions, timesteps] = &mut ints;
            let rows = FactorRows {
                beliefs,
                q_pi,
                g,
                f,
                actions,
                timesteps,
                first_row: 0,
            };
            kernel.run(rows, Some(&observations), 3, all).unwrap();
            let [beliefs, q_pi, g, f] = &mut alone;
            let [actions, timesteps] = &mut alone_ints;
            for i in 0..n {
                let agent = AgentRow {
                    qs: &mut beliefs[i * b..(i + 1) * b],
                    q_pi: &mut q_pi[i * p..(i + 1) * p],
                    g: &mut g[i * p..(i + 1) * p],
                    f: &mut f[i],
                    actions: &mut actions[i * 2..(i + 1) * 2],
                    timestep: &mut timesteps[i],
                    row: i as u64,
                };
                let observation = &observations[i * 2..(i + 1) * 2];
                kernel.step_agent(kernel.model(), agent, observation, 3, all, &mut sc);
            }
            // Bit for bit: each lane does exactly the one agent's arithmetic.
            assert_eq!(floats, alone, "step {step}");
            assert_eq!(ints, alone_ints, "step {step}");
        }
    }
}

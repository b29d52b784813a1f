use super::*;

/// Two states, two observations (90% reliable), actions "stay" and "swap".
fn two_state_model() -> Model {
    let identity = Sparse {
        ptr: vec![0, 1, 2],
        index: vec![0, 1],
        values: vec![1.0, 1.0],
    };
    let swap = Sparse {
        ptr: vec![0, 1, 2],
        index: vec![1, 0],
        values: vec![1.0, 1.0],
    };
    let a = vec![0.9, 0.1, 0.1, 0.9];
    let joint = Sparse {
        ptr: vec![0, 2, 4],
        index: vec![0, 1, 0, 1],
        values: vec![0.9, 0.1, 0.1, 0.9],
    };
    let h = |p: f64, q: f64| p * (p + (-16f64).exp()).ln() + q * (q + (-16f64).exp()).ln();
    Model {
        states: 2,
        obs_offsets: vec![0, 2],
        log_a: a.iter().map(|v| (v + EPS).ln()).collect(),
        a,
        b: vec![identity, swap],
        joint,
        joint_outcomes: 2,
        joint_dense: None,
        utility: vec![0.0, 0.0],
        info_h: vec![h(0.9, 0.1), h(0.1, 0.9)],
        d: vec![0.5, 0.5],
        log_d: vec![(0.5f64 + EPS).ln(); 2],
    }
}

fn kernel(policy_len: usize, deterministic: bool, threads: usize) -> Kernel {
    let policies = 2usize.pow(policy_len as u32);
    let settings = Settings {
        policy_len,
        gamma: 8.0,
        alpha: 8.0,
        deterministic,
        use_utility: true,
        use_states_info_gain: true,
        info_threshold: (-16f64).exp(),
        log_e: vec![(1.0 / policies as f64 + EPS).ln(); policies],
    };
    Kernel::new(Arc::new(two_state_model()), settings, threads).unwrap()
}

struct Arrays {
    beliefs: Vec<f64>,
    q_pi: Vec<f64>,
    g: Vec<f64>,
    f: Vec<f64>,
    actions: Vec<i64>,
    timesteps: Vec<i64>,
}

impl Arrays {
    fn new(n: usize, policies: usize) -> Arrays {
        Arrays {
            beliefs: vec![0.5; 2 * n],
            q_pi: vec![0.0; policies * n],
            g: vec![0.0; policies * n],
            f: vec![0.0; n],
            actions: vec![-1; n],
            timesteps: vec![0; n],
        }
    }

    fn rows(&mut self, first_row: u64) -> Rows<'_> {
        Rows {
            beliefs: &mut self.beliefs,
            q_pi: &mut self.q_pi,
            g: &mut self.g,
            f: &mut self.f,
            actions: &mut self.actions,
            timesteps: &mut self.timesteps,
            first_row,
        }
    }
}

const ALL: Phases = Phases {
    infer: true,
    plan: true,
    act: true,
};

#[test]
fn the_posterior_follows_bayes_rule_from_d_then_from_the_last_action() {
    let k = kernel(1, true, 1);
    let mut arrays = Arrays::new(1, 2);
    k.run(
        arrays.rows(0),
        Some(&[0]),
        7,
        Phases {
            infer: true,
            plan: false,
            act: false,
        },
    )
    .unwrap();
    assert!((arrays.beliefs[0] - 0.9).abs() < 1e-12 && (arrays.beliefs[1] - 0.1).abs() < 1e-12);
    arrays.actions[0] = 1; // swap: the prior is now (0.1, 0.9)
    k.run(
        arrays.rows(0),
        Some(&[0]),
        7,
        Phases {
            infer: true,
            plan: false,
            act: false,
        },
    )
    .unwrap();
    assert!((arrays.beliefs[0] - 0.5).abs() < 1e-12);
    let q = 0.5f64;
    let expected_f = 2.0 * q * ((q + EPS).ln() - (0.5f64 + EPS).ln())
        - q * ((0.9f64 + EPS).ln() + (0.1f64 + EPS).ln());
    assert!((arrays.f[0] - expected_f).abs() < 1e-12);
}

#[test]
fn policies_and_actions_have_the_expected_shape_and_range() {
    let k = kernel(2, false, 1);
    assert_eq!(k.policies(), 4);
    let mut arrays = Arrays::new(3, 4);
    k.run(arrays.rows(0), Some(&[0, 1, 0]), 1, ALL).unwrap();
    for agent in 0..3 {
        let q_pi = &arrays.q_pi[agent * 4..(agent + 1) * 4];
        assert!((q_pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    assert!(arrays.actions.iter().all(|&a| a == 0 || a == 1));
    assert_eq!(arrays.timesteps, vec![1, 1, 1]);
}

#[test]
fn any_split_into_chunks_and_threads_gives_the_same_rows() {
    let n = 100; // more than a chunk of 32, with a rest
    let observations: Vec<i64> = (0..n).map(|i| (i * 7 % 3 == 0) as i64).collect();
    let mut whole = Arrays::new(n, 2);
    kernel(1, false, 3)
        .run(whole.rows(0), Some(&observations), 42, ALL)
        .unwrap();
    let single = kernel(1, false, 1);
    for i in 0..n {
        let mut one = Arrays::new(1, 2);
        single
            .run(one.rows(i as u64), Some(&observations[i..i + 1]), 42, ALL)
            .unwrap();
        assert_eq!(one.actions[0], whole.actions[i]);
        assert_eq!(one.beliefs, whole.beliefs[2 * i..2 * i + 2]);
        assert_eq!(one.g, whole.g[2 * i..2 * i + 2]);
    }
}

#[test]
fn bad_rows_and_observations_are_errors_not_panics() {
    let k = kernel(1, true, 1);
    let mut arrays = Arrays::new(2, 2);
    assert!(matches!(
        k.run(arrays.rows(0), Some(&[0, 2]), 0, ALL),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        k.run(arrays.rows(0), Some(&[0]), 0, ALL),
        Err(CoreError::InvalidArgument(_))
    ));
    arrays.actions[1] = 2;
    assert!(matches!(
        k.run(arrays.rows(0), Some(&[0, 0]), 0, ALL),
        Err(CoreError::InvalidArgument(_))
    ));
    arrays.f.pop();
    arrays.actions[1] = 0;
    assert!(matches!(
        k.run(arrays.rows(0), Some(&[0, 0]), 0, ALL),
        Err(CoreError::InvalidArgument(_))
    ));
}

#[test]
fn uniform_draws_are_stable_and_spread() {
    assert_eq!(uniform(1, 2, 3), uniform(1, 2, 3));
    let draws: Vec<f64> = (0..10_000).map(|t| uniform(99, 5, t)).collect();
    assert!(draws.iter().all(|&u| (0.0..1.0).contains(&u)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.5).abs() < 0.02);
    assert_ne!(uniform(1, 2, 3), uniform(1, 3, 3));
}

#[test]
fn dot_matches_the_plain_sum() {
    let a: Vec<f64> = (0..103).map(|i| i as f64 * 0.5).collect();
    let b: Vec<f64> = (0..103).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!((dot(&a, &b) - plain).abs() < 1e-12);
}

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
fn ln_fast_matches_ln_within_a_few_ulp() {
    // Around sqrt(2), where the mantissa is halved.
    let root = std::f64::consts::SQRT_2;
    let (below, above) = (
        f64::from_bits(root.to_bits() - 1),
        f64::from_bits(root.to_bits() + 1),
    );
    let mut x = 1e-300f64;
    while x < 1e300 {
        for y in [x, x * below, x * root, x * above, x * 0.7] {
            let (fast, exact) = (ln_fast(y), y.ln());
            assert!(
                (fast - exact).abs() <= 4.0 * f64::EPSILON * exact.abs().max(1.0),
                "ln({y}): {fast} vs {exact}"
            );
        }
        x *= 1.37;
    }
    assert_eq!(ln_fast(1.0), 0.0);
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

#[test]
fn run_on_threads_works_every_item_once_and_returns_the_first_error() {
    use std::sync::Mutex;
    for threads in [1, 2, 3] {
        let seen = Mutex::new(Vec::new());
        let inits = std::sync::atomic::AtomicUsize::new(0);
        let init = || {
            inits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(0usize)
        };
        let work = |count: &mut usize, item: usize| {
            *count += 1;
            seen.lock().unwrap().push(item);
            Ok(())
        };
        run_on_threads(threads, (0..1000).collect(), init, work).unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(inits.into_inner() <= threads);
        let failing = |_: &mut (), item: usize| match item {
            500 => Err(CoreError::InvalidArgument("item 500".into())),
            _ => Ok(()),
        };
        let result = run_on_threads(threads, (0..1000).collect(), || Ok(()), failing);
        assert_eq!(result, Err(CoreError::InvalidArgument("item 500".into())));
    }
}

#[test]
fn a_panic_in_run_on_threads_reaches_the_caller() {
    for threads in [1, 2] {
        let result = std::panic::catch_unwind(|| {
            let work = |_: &mut (), item: usize| -> Result<(), CoreError> {
                assert!(item != 7, "item 7");
                Ok(())
            };
            run_on_threads(threads, (0..64).collect(), || Ok(()), work)
        });
        assert!(result.is_err());
    }
}

#[test]
fn exp_fast_matches_exp_within_a_few_ulp() {
    use super::lanes::exp_fast;
    let mut x = -708.0f64;
    while x < 709.0 {
        for y in [x, x + 0.346_573_590_279_972_6, -x * 1e-9, x * 1e-300] {
            if y > 709.0 {
                continue;
            }
            let (fast, exact) = (exp_fast(y), y.exp());
            assert!(
                (fast - exact).abs() <= 4.0 * f64::EPSILON * exact,
                "exp({y}): {fast} vs {exact}"
            );
        }
        x += 0.0137;
    }
    assert_eq!(exp_fast(0.0), 1.0);
    assert_eq!(exp_fast(-709.0), 0.0);
    assert_eq!(exp_fast(f64::NEG_INFINITY), 0.0);
    assert_eq!(exp_fast(710.0), f64::INFINITY);
    assert!(exp_fast(f64::NAN).is_nan());
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

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

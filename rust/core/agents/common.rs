//! What every agents kernel uses: pymdp's epsilon and the tie rule, allocation that fails
//! with an error instead of aborting, the per-agent random draws, the numeric helpers
//! (`dot`, `ln_fast`, `softmax_in_place`), the rayon pools and the phases of a step.

use std::collections::HashMap;
use std::ops::Mul;
use std::sync::{Arc, Mutex};

use super::lanes::Lane;
use crate::core::error::CoreError;
use crate::core::rng::splitmix64;
use crate::core::sync::lock;

/// pymdp's `EPS_VAL`.
pub(super) const EPS: f64 = 1e-16;
/// The most threads a kernel's pool may have (the Python side enforces the same bound).
pub const MAX_THREADS: usize = 256;
/// `errno` of an allocation failure: the binding raises `MemoryError` for it.
pub const ENOMEM: i32 = 12;

/// A vector of `len` copies of `value`, or `CoreError::Os(ENOMEM)` when it cannot be
/// allocated (a plain `vec!` would abort the process).
pub fn try_filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>, CoreError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| CoreError::Os(ENOMEM, format!("{what}: cannot allocate {len} entries")))?;
    v.resize(len, value);
    Ok(v)
}

/// A copy of `values`, or `CoreError::Os(ENOMEM)` when it cannot be allocated.
pub fn try_copy<T: Copy>(
    values: impl ExactSizeIterator<Item = T>,
    what: &str,
) -> Result<Vec<T>, CoreError> {
    let mut v = Vec::new();
    v.try_reserve_exact(values.len()).map_err(|_| {
        CoreError::Os(
            ENOMEM,
            format!("{what}: cannot allocate {} entries", values.len()),
        )
    })?;
    v.extend(values);
    Ok(v)
}
/// The error of a state inference asked for without observations.
pub(super) const NO_OBSERVATIONS: &str = "observations: needed for state inference (infer=True)";
/// Relative: action marginals this close to the best one are tied.
pub(super) const TIE: f64 = 1e-12;

/// The uniform draw in [0, 1) of `row` at `timestep` (the same as the numpy kernel's).
pub fn uniform(key: u64, row: u64, timestep: u64) -> f64 {
    let h = splitmix64(splitmix64(key ^ splitmix64(row.wrapping_add(1))) ^ timestep);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Dot product with four independent partial sums, so the additions pipeline (and vectorize).
#[inline(always)]
pub(super) fn dot<L: Lane + Mul<Y, Output = L>, Y: Copy>(a: &[L], b: &[Y]) -> L {
    let mut partial = [L::ZERO; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let mut tail = L::ZERO;
    for (&x, &y) in a4.remainder().iter().zip(b4.remainder()) {
        tail += x * y;
    }
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            partial[k] += x[k] * y[k];
        }
    }
    (partial[0] + partial[1]) + (partial[2] + partial[3]) + tail
}

/// The index that the uniform draw `u` picks from the distribution `p` (inverse CDF; the last
/// index when rounding leaves `u` above the total).
pub(super) fn draw(p: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    let below = p
        .iter()
        .filter(|&&x| {
            cumulative += x;
            cumulative <= u
        })
        .count();
    below.min(p.len() - 1)
}

/// ln(x) for positive, finite, normal `x`, within a few units in the last place of f64::ln,
/// without branches or calls, so that a block of them vectorizes. x = 2^e m with m in
/// [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.172, by the
/// first eleven terms of its series (the rest is below 1e-18 relative).
#[inline(always)]
pub(super) fn ln_fast(x: f64) -> f64 {
    const MANTISSA: u64 = 0x000F_FFFF_FFFF_FFFF;
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let bits = x.to_bits();
    // The biased exponent as a float, exactly: 2^52 + e in the mantissa of 2^52, minus 2^52.
    let biased = f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52)) - TWO_52;
    let m = f64::from_bits((bits & MANTISSA) | 0x3FF0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    let (m, e) = match big {
        true => (m * 0.5, biased - 1022.0),
        false => (m, biased - 1023.0),
    };
    let s = (m - 1.0) / (m + 1.0);
    // sum_k z^k / (2k + 1) for k <= 10 by Estrin's scheme: pairs, then pairs of pairs, so that
    // the chain of dependent operations is 5 long rather than Horner's 10.
    let z = s * s;
    let (z2, c) = (z * z, |k: u32| 1.0 / (2 * k + 1) as f64);
    let (z4, pair) = (z2 * z2, |k: u32| c(k) + c(k + 1) * z);
    let low = (pair(0) + pair(2) * z2) + (pair(4) + pair(6) * z2) * z4;
    let high = pair(8) + c(10) * z2;
    let p = low + high * (z4 * z4);
    e * std::f64::consts::LN_2 + 2.0 * s * p
}

#[inline(always)]
pub(super) fn softmax_in_place<L: Lane>(x: &mut [L]) {
    let max = x.iter().copied().fold(L::splat(f64::NEG_INFINITY), L::max);
    let mut sum = L::ZERO;
    for v in x.iter_mut() {
        *v = (*v - max).exp_fast();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `softmax_in_place`, also writing ln of each result, `x - max - ln(sum)`, into `log_q`: one
/// logarithm instead of one per entry. Free energies use it where pymdp takes ln(q + 1e-16);
/// `q ln(q + 1e-16)` and `q ln q` differ by less than 1e-16, so F changes by less than that per
/// entry (and a q that underflows to 0 still adds 0).
#[inline(always)]
pub(super) fn softmax_with_log<L: Lane>(x: &mut [L], log_q: &mut [L]) {
    let max = x.iter().copied().fold(L::splat(f64::NEG_INFINITY), L::max);
    let mut sum = L::ZERO;
    for (v, l) in x.iter_mut().zip(log_q.iter_mut()) {
        *l = *v - max;
        *v = l.exp_fast();
        sum += *v;
    }
    let log_sum = sum.ln_fast();
    for (v, l) in x.iter_mut().zip(log_q.iter_mut()) {
        *v /= sum;
        *l -= log_sum;
    }
}

/// Runs `work` on every item of `items` on `threads` threads, each taking the next item until
/// none is left, with its own state from `init`: the calling thread (detached from the
/// interpreter) is one of them, the `threads - 1` threads of `helper_pool(threads)` the others.
/// A short batch then waits for no pool thread to wake the caller, nor the caller for one to
/// start, and no idle pool thread spins beside them. The first error is returned once every
/// thread has stopped (a thread stops at its first error).
pub(super) fn run_on_threads<T: Send, S>(
    threads: usize,
    items: Vec<T>,
    init: impl Fn() -> Result<S, CoreError> + Sync,
    work: impl Fn(&mut S, T) -> Result<(), CoreError> + Sync,
) -> Result<(), CoreError> {
    let queue = Mutex::new(items.into_iter());
    let first_error = Mutex::new(None);
    let worker = || {
        let result = init().and_then(|mut state| loop {
            // The guard dropped here: `while let` would hold it through the work.
            let next = lock(&queue).next();
            match next {
                Some(item) => work(&mut state, item)?,
                None => return Ok(()),
            }
        });
        if let Err(error) = result {
            lock(&first_error).get_or_insert(error);
        }
    };
    match helper_pool(threads)? {
        Some(pool) => pool.in_place_scope(|scope| {
            for _ in 1..threads {
                scope.spawn(|_| worker());
            }
            worker();
        }),
        None => worker(),
    }
    first_error
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .map_or(Ok(()), Err)
}

/// The pool that helps the calling thread in `run_on_threads`: `threads - 1` threads, none for
/// one thread.
pub(super) fn helper_pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>, CoreError> {
    match threads {
        0 | 1 => Ok(None),
        _ => pool_of(threads - 1).map(Some),
    }
}

/// rayon pools by thread count, rebuilt in a forked child (the parent's threads are not there).
pub(super) fn pool_of(threads: usize) -> Result<Arc<rayon::ThreadPool>, CoreError> {
    type Pools = Option<(u32, HashMap<usize, Arc<rayon::ThreadPool>>)>;
    static POOLS: Mutex<Pools> = Mutex::new(None);
    let mut pools = lock(&POOLS);
    let pid = std::process::id();
    if pools.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        // Pools inherited over fork have no threads: leak them rather than join ghosts.
        if let Some((_, stale)) = pools.take() {
            std::mem::forget(stale);
        }
        *pools = Some((pid, HashMap::new()));
    }
    let (_, by_size) = pools.as_mut().expect("set above");
    if let Some(pool) = by_size.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("freeagentics-agents-{i}"))
        .build()
        .map_err(|e| CoreError::Spawn(e.to_string()))?;
    let pool = Arc::new(pool);
    by_size.insert(threads, pool.clone());
    Ok(pool)
}

/// Which steps `Kernel::run` performs: state inference, policy inference, action selection.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub infer: bool,
    pub plan: bool,
    pub act: bool,
}

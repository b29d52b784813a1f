//! Numbers the factorized kernel computes with: `f64` for one agent, `F4` for four agents in
//! lock-step (one agent per lane). The kernel's formulas are written once over `Lane`; with `F4`
//! every operation does four agents' arithmetic at once (one AVX2 instruction where the CPU has
//! it), which the small per-agent vectors of a factorized model (2 to 30 entries) cannot fill.
//! Each lane's arithmetic is exactly that of the `f64` version, so an agent's results do not
//! depend on which path, or which neighbours, it was stepped with.

use std::ops::{Add, AddAssign, Div, DivAssign, Mul, Sub, SubAssign};

use super::ln_fast;

pub(super) trait Lane:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Mul<f64, Output = Self>
    + Div<Output = Self>
    + AddAssign
    + SubAssign
    + DivAssign
{
    /// How many agents one value holds.
    const LANES: usize;
    /// How many blocks of expected outcomes `dense_entropy` keeps in registers at once.
    const OUTCOME_GROUP: usize;
    /// Per lane: a condition.
    type Mask: Copy;
    const ZERO: Self;

    fn splat(x: f64) -> Self;
    fn lane(self, k: usize) -> f64;
    fn set_lane(&mut self, k: usize, x: f64);
    fn ln_fast(self) -> Self;
    fn exp_fast(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn abs(self) -> Self;
    /// Lanes at or below `threshold` set to 0.
    fn zero_at_or_below(self, threshold: f64) -> Self;
    fn above(self, threshold: f64) -> bool;
    fn at_least(self, threshold: f64) -> Self::Mask;
    fn any(mask: Self::Mask) -> bool;
    fn and(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// Per lane: `a` where `mask`, else `b`.
    fn select(mask: Self::Mask, a: Self, b: Self) -> Self;
}

impl Lane for f64 {
    const LANES: usize = 1;
    const OUTCOME_GROUP: usize = 4;
    type Mask = bool;
    const ZERO: f64 = 0.0;

    #[inline(always)]
    fn splat(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn lane(self, _: usize) -> f64 {
        self
    }
    #[inline(always)]
    fn set_lane(&mut self, _: usize, x: f64) {
        *self = x;
    }
    #[inline(always)]
    fn ln_fast(self) -> f64 {
        ln_fast(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        exp_fast(self)
    }
    #[inline(always)]
    fn max(self, other: f64) -> f64 {
        f64::max(self, other)
    }
    #[inline(always)]
    fn abs(self) -> f64 {
        f64::abs(self)
    }
    #[inline(always)]
    fn zero_at_or_below(self, threshold: f64) -> f64 {
        if self <= threshold {
            0.0
        } else {
            self
        }
    }
    #[inline(always)]
    fn above(self, threshold: f64) -> bool {
        self > threshold
    }
    #[inline(always)]
    fn at_least(self, threshold: f64) -> bool {
        self >= threshold
    }
    #[inline(always)]
    fn any(mask: bool) -> bool {
        mask
    }
    #[inline(always)]
    fn and(a: bool, b: bool) -> bool {
        a && b
    }
    #[inline(always)]
    fn select(mask: bool, a: f64, b: f64) -> f64 {
        if mask {
            a
        } else {
            b
        }
    }
}

/// Four agents' values of one quantity.
#[derive(Clone, Copy)]
pub(super) struct F4([f64; 4]);

/// Each lane by `f`: written out, so that the four operations become one vector instruction.
#[inline(always)]
fn map4(a: [f64; 4], f: impl Fn(f64) -> f64) -> F4 {
    F4([f(a[0]), f(a[1]), f(a[2]), f(a[3])])
}

#[inline(always)]
fn zip4(a: [f64; 4], b: [f64; 4], f: impl Fn(f64, f64) -> f64) -> F4 {
    F4([f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])])
}

macro_rules! lane_ops {
    ($($trait:ident $method:ident $op:tt),*) => {$(
        impl $trait for F4 {
            type Output = F4;
            #[inline(always)]
            fn $method(self, other: F4) -> F4 {
                zip4(self.0, other.0, |a, b| a $op b)
            }
        }
    )*};
}
lane_ops!(Add add +, Sub sub -, Mul mul *, Div div /);

macro_rules! lane_assign_ops {
    ($($trait:ident $method:ident $op:tt),*) => {$(
        impl $trait for F4 {
            #[inline(always)]
            fn $method(&mut self, other: F4) {
                *self = *self $op other;
            }
        }
    )*};
}
lane_assign_ops!(AddAssign add_assign +, SubAssign sub_assign -, DivAssign div_assign /);

impl Mul<f64> for F4 {
    type Output = F4;
    #[inline(always)]
    fn mul(self, other: f64) -> F4 {
        map4(self.0, |a| a * other)
    }
}

impl Lane for F4 {
    const LANES: usize = 4;
    // Eight accumulators of four lanes are half the vector registers.
    const OUTCOME_GROUP: usize = 1;
    type Mask = [bool; 4];
    const ZERO: F4 = F4([0.0; 4]);

    #[inline(always)]
    fn splat(x: f64) -> F4 {
        F4([x; 4])
    }
    #[inline(always)]
    fn lane(self, k: usize) -> f64 {
        self.0[k]
    }
    #[inline(always)]
    fn set_lane(&mut self, k: usize, x: f64) {
        self.0[k] = x;
    }
    #[inline(always)]
    fn ln_fast(self) -> F4 {
        map4(self.0, ln_fast)
    }
    #[inline(always)]
    fn exp_fast(self) -> F4 {
        map4(self.0, exp_fast)
    }
    #[inline(always)]
    fn max(self, other: F4) -> F4 {
        zip4(self.0, other.0, f64::max)
    }
    #[inline(always)]
    fn abs(self) -> F4 {
        map4(self.0, f64::abs)
    }
    #[inline(always)]
    fn zero_at_or_below(self, threshold: f64) -> F4 {
        map4(self.0, |x| x.zero_at_or_below(threshold))
    }
    #[inline(always)]
    fn above(self, threshold: f64) -> bool {
        self.0.iter().any(|&x| x > threshold)
    }
    #[inline(always)]
    fn at_least(self, threshold: f64) -> [bool; 4] {
        self.0.map(|x| x >= threshold)
    }
    #[inline(always)]
    fn any(mask: [bool; 4]) -> bool {
        mask.iter().any(|&m| m)
    }
    #[inline(always)]
    fn and(a: [bool; 4], b: [bool; 4]) -> [bool; 4] {
        [a[0] && b[0], a[1] && b[1], a[2] && b[2], a[3] && b[3]]
    }
    #[inline(always)]
    fn select(mask: [bool; 4], a: F4, b: F4) -> F4 {
        F4(std::array::from_fn(
            |k| if mask[k] { a.0[k] } else { b.0[k] },
        ))
    }
}

/// 1 / k! for k <= 13.
const INVERSE_FACTORIALS: [f64; 14] = {
    let mut table = [1.0; 14];
    let mut k = 1;
    while k < 14 {
        table[k] = table[k - 1] / k as f64;
        k += 1;
    }
    table
};

/// exp(x) within a few units in the last place of f64::exp, without branches or calls, so that
/// four of them vectorize. x = n ln 2 + r with |r| <= ln(2)/2, exp(r) by its Taylor series to
/// r^13 (the rest is below 1e-17 relative), times 2^n. Results below the normal range are 0
/// (f64::exp gives subnormals there, under 1e-307), above it infinity; NaN stays NaN.
#[inline(always)]
pub(super) fn exp_fast(x: f64) -> f64 {
    // ln 2 in two parts (fdlibm's): n * LN2_HI is exact for the n that occur.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    // Adding 1.5 * 2^52 rounds to an integer, which lands in the mantissa's low bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let shifted = x * std::f64::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // sum_k r^k / k! for k <= 13 by Estrin's scheme (a dependent chain of 5, not 13).
    let (r2, pair) = (r * r, |k: usize| {
        INVERSE_FACTORIALS[k] + INVERSE_FACTORIALS[k + 1] * r
    });
    let r4 = r2 * r2;
    let low = (pair(0) + pair(2) * r2) + (pair(4) + pair(6) * r2) * r4;
    let high = (pair(8) + pair(10) * r2) + pair(12) * r4;
    let p = low + high * (r4 * r4);
    // 2^n from its bits: n + 1023 in the exponent field (n in [-1022, 1023] where used).
    let bits = (shifted.to_bits() as i64).wrapping_add(1023) << 52;
    let y = (p * f64::from_bits(bits as u64)).to_bits();
    // Out of range by masks, not branches (which would stop four of these from vectorizing).
    let below = u64::from(x < -708.0).wrapping_neg();
    let above = u64::from(x > 709.0).wrapping_neg();
    f64::from_bits((y & !(below | above)) | (f64::INFINITY.to_bits() & above))
}

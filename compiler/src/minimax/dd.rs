//! Double-double arithmetic: an unevaluated sum `hi + lo` of two `f64`
//! carrying about 106 bits of significand.
//!
//! Only IEEE-754 `+ − × ÷ sqrt` on `f64` are used (all correctly rounded, hence
//! bit-identical on every conforming platform). Products are split with
//! Dekker's algorithm instead of a fused multiply-add, so the results do not
//! depend on whether the target has an FMA unit or on the platform `libm`.
//! The few transcendental values the engine needs (`cos` for initial Remez
//! references, `log2` for reporting bits) are computed here from the same
//! basic operations.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A double-double number `hi + lo` with `|lo| ≤ ulp(hi)/2`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dd {
    /// Leading part (the value rounded to `f64`).
    pub hi: f64,
    /// Trailing part.
    pub lo: f64,
}

#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

#[inline]
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

#[inline]
fn split(a: f64) -> (f64, f64) {
    // 2^27 + 1: Veltkamp splitting into two 26-bit halves.
    let t = 134_217_729.0 * a;
    let hi = t - (t - a);
    (hi, a - hi)
}

#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

impl Dd {
    /// Zero.
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    /// One.
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };
    /// π to double-double precision.
    pub const PI: Dd = Dd {
        hi: std::f64::consts::PI,
        lo: 1.224_646_799_147_353_2e-16,
    };

    /// Exact conversion from `f64`.
    #[inline]
    pub const fn from_f64(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    /// Nearest `f64`.
    #[inline]
    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }

    /// Absolute value.
    #[inline]
    pub fn abs(self) -> Dd {
        if self.hi < 0.0 || (self.hi == 0.0 && self.lo < 0.0) {
            -self
        } else {
            self
        }
    }

    /// Multiplication by an `f64`.
    #[inline]
    pub fn mul_f64(self, b: f64) -> Dd {
        let (p, e) = two_prod(self.hi, b);
        let (s, t) = quick_two_sum(p, e + self.lo * b);
        Dd { hi: s, lo: t }
    }

    /// Exact multiplication by a power of two.
    #[inline]
    pub fn scale2(self, p: f64) -> Dd {
        Dd {
            hi: self.hi * p,
            lo: self.lo * p,
        }
    }

    /// Square root (`x ≥ 0`).
    pub fn sqrt(self) -> Dd {
        if self.hi <= 0.0 {
            return Dd::ZERO;
        }
        let q = self.hi.sqrt();
        let y = Dd::from_f64(q);
        let r = self - y * y;
        y + Dd::from_f64(r.hi * (0.5 / q))
    }

    /// Larger of two values.
    #[inline]
    pub fn max(self, o: Dd) -> Dd {
        if o > self {
            o
        } else {
            self
        }
    }

    /// Smaller of two values.
    #[inline]
    pub fn min(self, o: Dd) -> Dd {
        if o < self {
            o
        } else {
            self
        }
    }

    /// `true` when negative.
    #[inline]
    pub fn is_negative(self) -> bool {
        self.hi < 0.0 || (self.hi == 0.0 && self.lo < 0.0)
    }

    /// Bit pattern of both parts, for exact keys.
    pub fn to_bits(self) -> (u64, u64) {
        (self.hi.to_bits(), self.lo.to_bits())
    }

    /// Cosine, computed deterministically from basic operations
    /// (about `f64` accuracy, which is all the engine needs it for).
    pub fn cos(self) -> Dd {
        Dd::from_f64(det_cos(self.to_f64()))
    }
}

/// Deterministic cosine on any finite argument, from `+ − ×` only
/// (argument reduction by π/2 in double-double, Taylor series).
pub fn det_cos(x: f64) -> f64 {
    let ax = x.abs();
    // k = round(ax / (π/2)), computed exactly enough for moderate arguments.
    let half_pi = Dd::PI.scale2(0.5);
    let k = (ax / half_pi.hi + 0.5).floor();
    let r = (Dd::from_f64(ax) - half_pi.mul_f64(k)).to_f64();
    let (s, c) = sin_cos_small(r);
    match (k as i64).rem_euclid(4) {
        0 => c,
        1 => -s,
        2 => -c,
        _ => s,
    }
}

/// Sine and cosine for `|r| ≤ π/4` by Taylor series.
fn sin_cos_small(r: f64) -> (f64, f64) {
    let r2 = r * r;
    let mut s = 0.0;
    let mut c = 0.0;
    // Horner over the series truncated well past f64 accuracy for |r| ≤ π/4.
    let mut k = 13usize;
    while k > 0 {
        let n = 2 * k as u32;
        s = 1.0 - s * r2 / ((n as f64) * (n as f64 + 1.0));
        c = 1.0 - c * r2 / ((n as f64 - 1.0) * (n as f64));
        k -= 1;
    }
    (r * s, c)
}

/// Deterministic base-2 logarithm of a positive finite `f64`
/// (exponent extraction plus an atanh series; ≈1 ulp).
pub fn det_log2(x: f64) -> f64 {
    assert!(x > 0.0 && x.is_finite(), "det_log2 of {x}");
    let mut bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64;
    if e == 0 {
        // Subnormal: normalise first.
        let y = x * f64::from_bits(0x4350_0000_0000_0000); // 2^54
        bits = y.to_bits();
        e = ((bits >> 52) & 0x7ff) as i64 - 54;
    }
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // Bring m into [1/√2, √2) for fast convergence.
    let (m, e) = if m > std::f64::consts::SQRT_2 {
        (m * 0.5, e - 1022)
    } else {
        (m, e - 1023)
    };
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut acc = 0.0;
    let mut k = 41i32;
    while k >= 1 {
        acc = 1.0 / k as f64 + t2 * acc;
        k -= 2;
    }
    let ln_m = 2.0 * t * acc;
    e as f64 + ln_m * std::f64::consts::LOG2_E
}

/// Exact `2^e` for moderate integer `e`.
pub fn pow2(e: i32) -> f64 {
    assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// The arithmetic the Remez exchange and the Clenshaw sums run in: `Dd` for
/// results, `f64` for the (many) screening runs of the degree search.
pub trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
{
    /// Unit round-off of the format.
    const EPS: f64;
    /// Exact conversion.
    fn of(x: f64) -> Self;
    /// Nearest `f64`.
    fn f(self) -> f64;
    /// Multiplication by an `f64`.
    fn mulf(self, b: f64) -> Self;
    /// Exact scaling by a power of two.
    fn pow2_scale(self, p: f64) -> Self;
    /// Square root.
    fn root(self) -> Self;
    /// `true` when negative.
    fn neg_p(self) -> bool;
    /// Absolute value.
    fn absv(self) -> Self {
        if self.neg_p() {
            -self
        } else {
            self
        }
    }
    /// Larger value.
    fn maxv(self, o: Self) -> Self {
        if o > self {
            o
        } else {
            self
        }
    }
    /// Smaller value.
    fn minv(self, o: Self) -> Self {
        if o < self {
            o
        } else {
            self
        }
    }
}

impl Real for Dd {
    const EPS: f64 = 4.93e-32;
    fn of(x: f64) -> Self {
        Dd::from_f64(x)
    }
    fn f(self) -> f64 {
        self.to_f64()
    }
    fn mulf(self, b: f64) -> Self {
        self.mul_f64(b)
    }
    fn pow2_scale(self, p: f64) -> Self {
        self.scale2(p)
    }
    fn root(self) -> Self {
        self.sqrt()
    }
    fn neg_p(self) -> bool {
        self.is_negative()
    }
}

impl Real for f64 {
    const EPS: f64 = f64::EPSILON / 2.0;
    fn of(x: f64) -> Self {
        x
    }
    fn f(self) -> f64 {
        self
    }
    fn mulf(self, b: f64) -> Self {
        self * b
    }
    fn pow2_scale(self, p: f64) -> Self {
        self * p
    }
    fn root(self) -> Self {
        self.max(0.0).sqrt()
    }
    fn neg_p(self) -> bool {
        self < 0.0
    }
}

impl fmt::Display for Dd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:e}", self.to_f64())
    }
}

impl Add for Dd {
    type Output = Dd;
    #[inline]
    fn add(self, b: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, b.hi);
        let (t, f) = two_sum(self.lo, b.lo);
        let (s, e) = quick_two_sum(s, e + t);
        let (hi, lo) = quick_two_sum(s, e + f);
        Dd { hi, lo }
    }
}

impl Sub for Dd {
    type Output = Dd;
    #[inline]
    fn sub(self, b: Dd) -> Dd {
        self + (-b)
    }
}

impl Neg for Dd {
    type Output = Dd;
    #[inline]
    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl Mul for Dd {
    type Output = Dd;
    #[inline]
    fn mul(self, b: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, b.hi);
        let (hi, lo) = quick_two_sum(p, e + (self.hi * b.lo + self.lo * b.hi));
        Dd { hi, lo }
    }
}

impl Div for Dd {
    type Output = Dd;
    fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        let r = self - b.mul_f64(q1);
        let q2 = r.hi / b.hi;
        let r = r - b.mul_f64(q2);
        let q3 = r.hi / b.hi;
        let (hi, lo) = quick_two_sum(q1, q2);
        Dd { hi, lo } + Dd::from_f64(q3)
    }
}

impl PartialOrd for Dd {
    fn partial_cmp(&self, o: &Dd) -> Option<Ordering> {
        match self.hi.partial_cmp(&o.hi) {
            Some(Ordering::Equal) => self.lo.partial_cmp(&o.lo),
            c => c,
        }
    }
}

impl From<f64> for Dd {
    fn from(x: f64) -> Dd {
        Dd::from_f64(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_carries_about_106_bits() {
        let third = Dd::ONE / Dd::from_f64(3.0);
        let back = third * Dd::from_f64(3.0) - Dd::ONE;
        assert!(back.abs().hi < 1e-31, "{back:?}");
        let two = Dd::from_f64(2.0);
        let r = two.sqrt();
        assert!((r * r - two).abs().hi < 1e-31);
        // 1 + 2^-80 survives.
        let tiny = Dd::from_f64(pow2(-80));
        let s = Dd::ONE + tiny - Dd::ONE;
        assert_eq!(s.to_f64(), pow2(-80));
    }

    #[test]
    fn deterministic_cos_and_log2_are_accurate() {
        for i in 0..=64 {
            let x = i as f64 * 0.1 - 3.2;
            assert!((det_cos(x) - x.cos()).abs() < 4e-16, "cos {x}");
        }
        for &x in &[1e-300, 3e-10, 0.1, 0.5, 1.0, 1.5, 7.0, 1e20] {
            assert!((det_log2(x) - f64::log2(x)).abs() < 1e-13, "log2 {x}");
        }
        assert_eq!(det_log2(pow2(-20)), -20.0);
        assert_eq!(pow2(-3), 0.125);
    }
}

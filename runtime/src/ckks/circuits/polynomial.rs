//! Polynomial evaluation in the Chebyshev basis by baby-step giant-step.
//!
//! `p = Σ c_i T_i(y)` with `y` the input mapped affinely from `[a, b]` to
//! `[-1, 1]`. Baby steps `T_1..T_{2^l}` and giant steps `T_{2^m}` (`m ≥ l`) are
//! computed with `T_{a+b} = 2·T_a·T_b − T_{a−b}`, each `T_i` at depth
//! `⌈log2 i⌉`. The polynomial is divided recursively by the largest giant
//! power, `p = q·T_{2^m} + r`, down to leaves of degree `< 2^l`, which are
//! linear combinations of baby steps. The split `l` is chosen by simulating
//! the levels: least depth first, then fewest ciphertext products.
//!
//! Scales are exact and computed top down from the requested output scale
//! (as in Lattigo's polynomial evaluator): each leaf multiplies its `T_i` by
//! constants encoded at `target · q_ℓ / scale(T_i)`, so every term lands on
//! the same scale and the rescale gives the requested scale; a quotient is
//! evaluated at `target · q_ℓ / scale(T_{2^m})` so that its product with the
//! giant power rescales to the target too. Powers that must be subtracted at
//! a lower level are brought to the exact scale with a constant
//! multiplication and a rescale on a level they have to spare.
//!
//! Those constants keep their precision only while the powers' scales stay
//! near their primes: from an input at `q·2^δ`, `s_{2i} = s_i²/q` would
//! drive `T_{2^k}` to `q·2^{δ·2^k}` (an input at 2^40 on 36-bit primes puts
//! `T_16` at 2^100 and its quotient's constants below 1, rounding them to
//! 0). So the powers are steered: an input below its prime is multiplied by
//! the integer nearest `q_ℓ/scale`, each doubling `2·T_a·T_b` multiplies the
//! product by an integer `j` and records the scale `s_a·s_b·j/2` nearest the
//! next prime (free, exact), and an input far above its prime is first
//! brought to exactly the next prime by a constant multiplication and a
//! rescale (one more level, see [`Evaluator::chebyshev_depth`]; free with an
//! affine map, which spends that level anyway). The whole evaluation is
//! first run on levels and scales alone; whatever would lose precision
//! (a constant encoded below [`MIN_CONSTANT_SCALE`], a power far below its
//! prime, a value overflowing its modulus, a missing level) is refused with
//! an error naming it.

use crate::ckks::encryption::Ciphertext;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::CkksError;
use std::collections::HashMap;

/// A polynomial `Σ c_i T_i((2x − a − b)/(b − a))` on the interval `[a, b]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChebyshevPoly {
    pub coeffs: Vec<f64>,
    pub a: f64,
    pub b: f64,
}

fn ceil_log2(i: usize) -> usize {
    if i <= 1 {
        0
    } else {
        (usize::BITS - (i - 1).leading_zeros()) as usize
    }
}

fn degree(c: &[f64]) -> usize {
    c.iter().rposition(|&x| x != 0.0).unwrap_or(0)
}

/// Chebyshev division by `T_{2^m}`: `p = q·T_M + r`, `M = 2^m`, for `deg p < 2M`.
fn split(c: &[f64], m: usize) -> (Vec<f64>, Vec<f64>) {
    let big_m = 1usize << m;
    let d = degree(c);
    debug_assert!(d >= big_m && d < 2 * big_m);
    let mut q = vec![0.0; d - big_m + 1];
    q[0] = c[big_m];
    for j in 1..=d - big_m {
        q[j] = 2.0 * c[big_m + j];
    }
    let mut r: Vec<f64> = c[..big_m].to_vec();
    for i in big_m + 1..=d {
        r[2 * big_m - i] -= c[i];
    }
    (q, r)
}

impl ChebyshevPoly {
    pub fn new(coeffs: Vec<f64>, a: f64, b: f64) -> Result<Self, CkksError> {
        if coeffs.is_empty()
            || coeffs.iter().any(|c| !c.is_finite())
            || a.partial_cmp(&b) != Some(std::cmp::Ordering::Less)
        {
            return Err(CkksError::InvalidArgument(
                "need finite coefficients and an interval a < b".into(),
            ));
        }
        Ok(ChebyshevPoly { coeffs, a, b })
    }

    /// Interpolates `f` at the `degree + 1` Chebyshev nodes of `[a, b]`.
    pub fn interpolate(f: impl Fn(f64) -> f64, degree: usize, a: f64, b: f64) -> Self {
        let n = degree + 1;
        let nodes: Vec<f64> = (0..n)
            .map(|k| (std::f64::consts::PI * (k as f64 + 0.5) / n as f64).cos())
            .collect();
        let fx: Vec<f64> = nodes
            .iter()
            .map(|&y| f(0.5 * (b - a) * y + 0.5 * (a + b)))
            .collect();
        let coeffs = (0..n)
            .map(|j| {
                let s: f64 = (0..n)
                    .map(|k| {
                        fx[k]
                            * (std::f64::consts::PI * j as f64 * (k as f64 + 0.5) / n as f64).cos()
                    })
                    .sum();
                s * if j == 0 { 1.0 } else { 2.0 } / n as f64
            })
            .collect();
        ChebyshevPoly { coeffs, a, b }
    }

    pub fn degree(&self) -> usize {
        degree(&self.coeffs)
    }

    /// Cleartext evaluation (Clenshaw).
    pub fn evaluate(&self, x: f64) -> f64 {
        let y = (2.0 * x - self.a - self.b) / (self.b - self.a);
        let (mut b1, mut b2) = (0.0, 0.0);
        for &c in self.coeffs[1..].iter().rev() {
            let b0 = 2.0 * y * b1 - b2 + c;
            b2 = b1;
            b1 = b0;
        }
        y * b1 - b2 + self.coeffs[0]
    }

    fn needs_affine_map(&self) -> bool {
        !(self.a == -1.0 && self.b == 1.0)
    }

    /// Levels the evaluation consumes (including the affine map, if any)
    /// for an input at or below its level's prime scale; an input far above
    /// it may need one more ([`Evaluator::chebyshev_depth`]).
    pub fn depth(&self) -> usize {
        let (_, depth, _) = self.plan();
        depth + usize::from(self.needs_affine_map())
    }

    /// Best baby-step exponent `l`, with its depth and product count.
    fn plan(&self) -> (usize, usize, usize) {
        let c = &self.coeffs[..=self.degree()];
        let log_degree = ceil_log2(self.degree() + 1).max(1);
        let start = 1_000_000isize;
        (1..=log_degree)
            .map(|l| {
                let out = planned_level(c, start, l);
                let depth = (start - out) as usize;
                (l, depth, planned_products(c, l))
            })
            .min_by_key(|&(_, d, m)| (d, m))
            .expect("nonempty range")
    }
}

/// Output level of the evaluation of `c` from an input at level `l_in`.
fn planned_level(c: &[f64], l_in: isize, l: usize) -> isize {
    let d = degree(c);
    if d < (1 << l) {
        let top = (1..=d).rev().find(|&i| c[i] != 0.0).unwrap_or(1);
        // The lowest T_i used is the highest-index one.
        return l_in - ceil_log2(top) as isize - 1;
    }
    let m = (usize::BITS - 1 - d.leading_zeros()) as usize;
    let (q, r) = split(c, m);
    let lq = planned_level(&q, l_in, l);
    let lg = l_in - m as isize;
    (lq.min(lg) - 1).min(planned_level(&r, l_in, l))
}

/// Ciphertext products: the powers the leaves and giant steps use, plus one
/// per giant step.
fn planned_products(c: &[f64], l: usize) -> usize {
    fn collect(c: &[f64], l: usize, need: &mut Vec<usize>) -> usize {
        let d = degree(c);
        if d < (1 << l) {
            need.extend((2..=d).filter(|&i| c[i] != 0.0));
            return 0;
        }
        let m = (usize::BITS - 1 - d.leading_zeros()) as usize;
        need.push(1 << m);
        let (q, r) = split(c, m);
        1 + collect(&q, l, need) + collect(&r, l, need)
    }
    let mut need = Vec::new();
    let giant = collect(c, l, &mut need);
    // Close the set of powers under the recurrence T_i = 2 T_a T_b − T_{a−b}.
    let mut have = std::collections::BTreeSet::from([1usize]);
    while let Some(i) = need.pop() {
        if i <= 1 || !have.insert(i) {
            continue;
        }
        let a = 1 << (ceil_log2(i) - 1);
        need.extend([a, i - a, a - (i - a)]);
    }
    giant + have.len() - 1
}

/// Smallest scale a constant may be encoded at. A constant `c` encoded as
/// the integer `round(c·Δ)` is off by at most `1/(2Δ)`, so a term `c·T_i`
/// (`|T_i| ≤ 1` on `[−1, 1]`) is off by at most `2^-21` at `Δ = 2^20`. It is
/// a refusal threshold, not a target: the evaluation keeps the constants
/// within a few bits of the requested output scale whenever the levels allow.
pub const MIN_CONSTANT_SCALE: f64 = 1_048_576.0;

/// An input kept at its own scale (no level spent on normalising it) is
/// accepted when no coefficient ends up encoded more than this many bits
/// below the requested output scale; beyond it, a level brings the input to
/// its prime's scale first, if there is one to spare.
pub const MAX_AS_IS_CONSTANT_LOSS_BITS: f64 = 8.0;

/// A power more than this many bits below the prime it is rescaled by is
/// refused (its rescale roundings would cost precision).
const MAX_POWER_DEFICIT_BITS: f64 = 4.0;

fn scale_error(msg: String) -> CkksError {
    CkksError::InvalidArgument(format!("Chebyshev evaluation: {msg}"))
}

fn level_error(msg: String) -> CkksError {
    CkksError::Mismatch(format!("Chebyshev evaluation: {msg}"))
}

/// The message of an error, without its kind and the evaluation's prefix.
fn reason(e: &CkksError) -> String {
    let s = match e {
        CkksError::InvalidArgument(s) | CkksError::Mismatch(s) => s.clone(),
        e => e.to_string(),
    };
    s.strip_prefix("Chebyshev evaluation: ")
        .map(str::to_string)
        .unwrap_or(s)
}

/// Constants are rounded to integers below this magnitude
/// ([`Evaluator::mul_const`], [`Evaluator::add_const`]).
const MAX_CONSTANT: f64 = (1u128 << 120) as f64;

/// The integer `k ≥ 1` nearest to `x` in ratio (`|log2(k/x)|` least), at
/// most `2^40`.
fn nearest_int_ratio(x: f64) -> i64 {
    let cap = 2f64.powi(40);
    if x.is_nan() || x <= 1.0 {
        return 1;
    }
    let x = x.min(cap);
    let (lo, hi) = (x.floor(), x.ceil());
    let k = if (x / lo).log2() <= (hi / x).log2() {
        lo
    } else {
        hi
    };
    k as i64
}

/// The operations the evaluation performs, on ciphertexts or on their level
/// and scale alone: the plan runs the very code of the evaluation.
trait Ops {
    type Ct: Clone;
    fn level(&self, a: &Self::Ct) -> usize;
    fn scale(&self, a: &Self::Ct) -> f64;
    fn set_scale(&self, a: &mut Self::Ct, scale: f64);
    fn drop_level(&self, a: &Self::Ct, level: usize) -> Self::Ct;
    fn add(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    fn sub(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    fn add_const(&self, a: &Self::Ct, c: f64) -> Result<Self::Ct, CkksError>;
    fn mul_const(&self, a: &Self::Ct, c: f64, const_scale: f64) -> Result<Self::Ct, CkksError>;
    /// Multiplies by an integer, keeping the recorded scale.
    fn mul_int(&self, a: &Self::Ct, k: i64) -> Self::Ct;
    fn mul_relin(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    fn rescale(&self, a: &Self::Ct) -> Result<Self::Ct, CkksError>;
}

struct Real<'a>(&'a Evaluator);

impl Ops for Real<'_> {
    type Ct = Ciphertext;
    fn level(&self, a: &Ciphertext) -> usize {
        a.level()
    }
    fn scale(&self, a: &Ciphertext) -> f64 {
        a.scale()
    }
    fn set_scale(&self, a: &mut Ciphertext, scale: f64) {
        a.set_scale(scale);
    }
    fn drop_level(&self, a: &Ciphertext, level: usize) -> Ciphertext {
        self.0.drop_level(a, level)
    }
    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.0.add(a, b)
    }
    fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.0.sub(a, b)
    }
    fn add_const(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        self.0.add_const(a, c)
    }
    fn mul_const(&self, a: &Ciphertext, c: f64, cs: f64) -> Result<Ciphertext, CkksError> {
        self.0.mul_const(a, c, cs)
    }
    fn mul_int(&self, a: &Ciphertext, k: i64) -> Ciphertext {
        self.0.mul_int(a, k)
    }
    fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.0.mul_relin(a, b)
    }
    fn rescale(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.0.rescale(a)
    }
}

/// A ciphertext's level and scale.
#[derive(Clone, Copy, Debug)]
struct Shape {
    level: usize,
    scale: f64,
}

/// [`Ops`] on shapes, with the evaluator's scale, constant and level checks.
struct Shapes<'a> {
    q: &'a [u64],
}

impl Ops for Shapes<'_> {
    type Ct = Shape;
    fn level(&self, a: &Shape) -> usize {
        a.level
    }
    fn scale(&self, a: &Shape) -> f64 {
        a.scale
    }
    fn set_scale(&self, a: &mut Shape, scale: f64) {
        a.scale = scale;
    }
    fn drop_level(&self, a: &Shape, level: usize) -> Shape {
        Shape {
            level: a.level.min(level),
            scale: a.scale,
        }
    }
    fn add(&self, a: &Shape, b: &Shape) -> Result<Shape, CkksError> {
        Evaluator::check_scales(a.scale, b.scale)?;
        Ok(Shape {
            level: a.level.min(b.level),
            scale: a.scale,
        })
    }
    fn sub(&self, a: &Shape, b: &Shape) -> Result<Shape, CkksError> {
        self.add(a, b)
    }
    fn add_const(&self, a: &Shape, c: f64) -> Result<Shape, CkksError> {
        Evaluator::check_constant(c * a.scale)?;
        Ok(*a)
    }
    fn mul_const(&self, a: &Shape, c: f64, cs: f64) -> Result<Shape, CkksError> {
        Evaluator::check_constant(c * cs)?;
        Ok(Shape {
            level: a.level,
            scale: a.scale * cs,
        })
    }
    fn mul_int(&self, a: &Shape, _k: i64) -> Shape {
        *a
    }
    fn mul_relin(&self, a: &Shape, b: &Shape) -> Result<Shape, CkksError> {
        Ok(Shape {
            level: a.level.min(b.level),
            scale: a.scale * b.scale,
        })
    }
    fn rescale(&self, a: &Shape) -> Result<Shape, CkksError> {
        if a.level == 0 {
            return Err(CkksError::Mismatch(
                "cannot rescale a level-0 ciphertext".into(),
            ));
        }
        Ok(Shape {
            level: a.level - 1,
            scale: a.scale / self.q[a.level] as f64,
        })
    }
}

/// How the input becomes `T_1`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    /// Multiplied by the integer `k ≥ 1` (exact, no level): `k` nearest
    /// `q_ℓ/scale` brings an input far below its prime up to it.
    AsIs(i64),
    /// Multiplied by a constant and rescaled to exactly the next level's
    /// prime (one level, shared with the affine map, if any).
    Normalized,
}

/// One evaluation (or its plan): the powers computed so far and the checks.
struct Run<'a, O: Ops> {
    ops: &'a O,
    q: &'a [u64],
    /// `log2 Q_ℓ` for every level `ℓ`.
    log_modulus: Vec<f64>,
    /// The requested output scale.
    target: f64,
    /// Baby-step exponent: leaves have degree `< 2^l`.
    l: usize,
    powers: HashMap<usize, O::Ct>,
    /// Largest `log2(target / Δ)` over the coefficients' encoding scales `Δ`.
    constant_loss: f64,
}

impl<'a, O: Ops> Run<'a, O> {
    fn new(ops: &'a O, q: &'a [u64], target: f64, l: usize) -> Self {
        let log_modulus = q
            .iter()
            .scan(0.0, |acc, &qi| {
                *acc += (qi as f64).log2();
                Some(*acc)
            })
            .collect();
        Run {
            ops,
            q,
            log_modulus,
            target,
            l,
            powers: HashMap::new(),
            constant_loss: f64::NEG_INFINITY,
        }
    }

    /// Multiplies by `c` encoded at `cs`, refusing scales below
    /// [`MIN_CONSTANT_SCALE`]` · bound` (`bound`: the largest `|value|` of `ct`).
    fn constant(
        &mut self,
        ct: &O::Ct,
        c: f64,
        cs: f64,
        bound: f64,
        what: impl Fn() -> String,
    ) -> Result<O::Ct, CkksError> {
        let floor = MIN_CONSTANT_SCALE * bound.max(1.0);
        // Written so that NaN is refused too.
        let representable = (c * cs).abs() < MAX_CONSTANT;
        if !representable {
            return Err(scale_error(format!(
                "{} at scale 2^{:.1} would exceed the largest constant 2^120; lower the \
                 target scale (2^{:.1}) or give the input a scale nearer its level's prime",
                what(),
                cs.log2(),
                self.target.log2()
            )));
        }
        let safe = cs >= floor;
        if c != 0.0 && !safe {
            return Err(scale_error(format!(
                "{} would be encoded at scale 2^{:.1}, below the minimum 2^{:.1} \
                 (its rounding would be off by up to 2^{:.1}); raise the target scale \
                 (2^{:.1}) or give the input a scale nearer its level's prime",
                what(),
                cs.log2(),
                floor.log2(),
                (bound.max(1.0) / (2.0 * cs)).log2(),
                self.target.log2()
            )));
        }
        self.ops.mul_const(ct, c, cs)
    }

    /// Adds `c`, refusing a constant too large at the ciphertext's scale.
    fn add_constant(
        &self,
        ct: &O::Ct,
        c: f64,
        what: impl Fn() -> String,
    ) -> Result<O::Ct, CkksError> {
        let scale = self.ops.scale(ct);
        let representable = (c * scale).abs() < MAX_CONSTANT;
        if !representable {
            return Err(scale_error(format!(
                "{} at scale 2^{:.1} would exceed the largest constant 2^120; lower the \
                 target scale (2^{:.1})",
                what(),
                scale.log2(),
                self.target.log2()
            )));
        }
        self.ops.add_const(ct, c)
    }

    /// Refuses a ciphertext whose values (up to `bound`) at its scale would
    /// not fit its modulus with two bits to spare.
    fn fits(&self, ct: &O::Ct, bound: f64, what: impl Fn() -> String) -> Result<(), CkksError> {
        let level = self.ops.level(ct);
        let bits = (self.ops.scale(ct) * bound.max(1.0)).log2();
        let room = bits + 2.0 <= self.log_modulus[level];
        if !room {
            return Err(scale_error(format!(
                "{} at level {level} would take 2^{bits:.1} (scale 2^{:.1}, values up to \
                 {bound:.3e}), more than the modulus 2^{:.1} holds; lower the target scale \
                 or evaluate at a higher level",
                what(),
                self.ops.scale(ct).log2(),
                self.log_modulus[level]
            )));
        }
        Ok(())
    }

    /// Refuses a power whose scale is far below the prime it is rescaled
    /// by: the rescale's rounding (about `√N` in each slot) would cost bits.
    fn check_power(&self, i: usize) -> Result<(), CkksError> {
        let t = &self.powers[&i];
        let (level, scale) = (self.ops.level(t), self.ops.scale(t));
        let q = self.q[level] as f64;
        let near = (q / scale).log2() <= MAX_POWER_DEFICIT_BITS;
        if !near {
            return Err(scale_error(format!(
                "T_{i} would have scale 2^{:.1} at level {level}, more than \
                 {MAX_POWER_DEFICIT_BITS} bits below its prime 2^{:.1}; give the input \
                 a scale nearer its level's prime",
                scale.log2(),
                q.log2()
            )));
        }
        Ok(())
    }

    /// Brings `T_j` to exactly `scale` at `level`, spending one of its spare
    /// levels on a constant multiplication; a no-op if already there.
    fn match_scale_level(
        &mut self,
        j: usize,
        scale: f64,
        level: usize,
    ) -> Result<O::Ct, CkksError> {
        let ct = self.powers[&j].clone();
        let (cl, cs) = (self.ops.level(&ct), self.ops.scale(&ct));
        if cl <= level || ((cs - scale) / scale).abs() < 1e-15 {
            if ((cs - scale) / scale).abs() > crate::ckks::evaluator::SCALE_TOLERANCE {
                return Err(level_error(format!(
                    "no spare level to bring T_{j} to scale 2^{:.1}",
                    scale.log2()
                )));
            }
            let mut out = self.ops.drop_level(&ct, level);
            self.ops.set_scale(&mut out, scale);
            return Ok(out);
        }
        let factor = scale * self.q[cl] as f64 / cs;
        let m = self.constant(&ct, 1.0, factor, 1.0, || {
            format!("the unit bringing T_{j} to scale 2^{:.1}", scale.log2())
        })?;
        let mut out = self.ops.rescale(&m)?;
        out = self.ops.drop_level(&out, level);
        // The unit was rounded to an integer ≥ 2^20 (≈ q_ℓ in the usual
        // case): the recorded scale is off by a relative 2^-21 at most.
        self.ops.set_scale(&mut out, scale);
        Ok(out)
    }

    /// `T_i = 2·T_a·T_b − T_{a−b}`, `a` the largest power of two below `i`.
    ///
    /// The factor 2 is where the power's scale is steered: the product,
    /// multiplied by the integer `j ≥ 1`, holds `2·T_a·T_b` at scale
    /// `s_a·s_b·j/2`, with `j` chosen so that the rescale lands nearest the
    /// prime the power is itself rescaled by. `j = 2` when the scales are
    /// the primes; `j = 1` halves a scale that drifted up, a larger `j`
    /// lifts one that drifted down, so the powers stay within a factor of 2
    /// of their primes (for an input at most twice its prime) instead of
    /// drifting geometrically (`s_{2i} = s_i²/q`) from an input scale off
    /// the prime.
    fn power(&mut self, i: usize) -> Result<(), CkksError> {
        if self.powers.contains_key(&i) {
            return Ok(());
        }
        let a = 1 << (ceil_log2(i) - 1);
        let b = i - a;
        self.power(a)?;
        self.power(b)?;
        let prod = self.ops.mul_relin(&self.powers[&a], &self.powers[&b])?;
        let level = self.ops.level(&prod);
        if level == 0 {
            return Err(level_error(format!("no level left to compute T_{i}")));
        }
        let s = self.ops.scale(&prod);
        let want = self.q[level] as f64 * self.q[level - 1] as f64;
        let j = nearest_int_ratio(2.0 * want / s);
        let mut two = self.ops.mul_int(&prod, j);
        self.ops.set_scale(&mut two, s * j as f64 / 2.0);
        self.fits(&two, 2.0, || format!("2·T_{a}·T_{b}"))?;
        let mut t = self.ops.rescale(&two)?;
        if a == b {
            t = self.add_constant(&t, -1.0, || format!("the −1 of T_{i}"))?;
        } else {
            self.power(a - b)?;
            let c = self.match_scale_level(a - b, self.ops.scale(&t), self.ops.level(&t))?;
            t = self.ops.sub(&t, &c)?;
        }
        self.powers.insert(i, t);
        self.check_power(i)
    }

    /// Evaluates `c` (degree `< 2·2^m` at each split) to exactly `target`.
    fn eval_rec(&mut self, c: &[f64], target: f64) -> Result<O::Ct, CkksError> {
        let d = degree(c);
        let bound: f64 = c.iter().map(|x| x.abs()).sum();
        if d < (1 << self.l) {
            let mut used: Vec<usize> = (1..=d).filter(|&i| c[i] != 0.0).collect();
            let zero = used.is_empty();
            if zero {
                used.push(1);
            }
            for &i in &used {
                self.power(i)?;
            }
            let level = used
                .iter()
                .map(|i| self.ops.level(&self.powers[i]))
                .min()
                .expect("nonempty");
            if level == 0 {
                return Err(level_error("not enough levels for the polynomial".into()));
            }
            let q = self.q[level] as f64;
            let mut acc: Option<O::Ct> = None;
            for &i in &used {
                let t = self.ops.drop_level(&self.powers[&i], level);
                let coef = if zero { 0.0 } else { c[i] };
                // Every term lands on exactly target·q_ℓ.
                let cs = target * q / self.ops.scale(&t);
                if coef != 0.0 {
                    self.constant_loss = self.constant_loss.max((self.target / cs).log2());
                }
                let mut term =
                    self.constant(&t, coef, cs, 1.0, || format!("the coefficient of T_{i}"))?;
                self.ops.set_scale(&mut term, target * q);
                acc = Some(match acc {
                    None => term,
                    Some(s) => self.ops.add(&s, &term)?,
                });
            }
            let acc = self.add_constant(&acc.expect("nonempty"), c[0], || {
                "the constant coefficient".into()
            })?;
            self.fits(&acc, bound, || "a baby-step sum".into())?;
            let mut out = self.ops.rescale(&acc)?;
            self.ops.set_scale(&mut out, target);
            return Ok(out);
        }
        let m = (usize::BITS - 1 - d.leading_zeros()) as usize;
        let (qc, rc) = split(c, m);
        self.power(1 << m)?;
        let l_in = self.ops.level(&self.powers[&1]) as isize;
        let lq = planned_level(&qc, l_in, self.l);
        let lg = self.ops.level(&self.powers[&(1 << m)]) as isize;
        let level = lq.min(lg);
        if level <= 0 {
            return Err(level_error("not enough levels for the polynomial".into()));
        }
        let level = level as usize;
        let g_scale = self.ops.scale(&self.powers[&(1 << m)]);
        // The quotient's scale makes its product with T_M rescale to target.
        let q_scale = target * self.q[level] as f64 / g_scale;
        let ctq = self.eval_rec(&qc, q_scale)?;
        debug_assert_eq!(
            self.ops.level(&ctq) as isize,
            lq,
            "level plan and evaluation agree"
        );
        let g = self.ops.drop_level(&self.powers[&(1 << m)], level);
        let prod = self.ops.mul_relin(&self.ops.drop_level(&ctq, level), &g)?;
        let q_bound: f64 = qc.iter().map(|x| x.abs()).sum();
        self.fits(&prod, q_bound, || format!("a quotient times T_{}", 1 << m))?;
        let mut prod = self.ops.rescale(&prod)?;
        self.ops.set_scale(&mut prod, target);
        let ctr = self.eval_rec(&rc, target)?;
        self.ops.add(&prod, &ctr)
    }

    /// `T_1` from the input (with the affine map, if any), then the polynomial.
    fn evaluate(
        &mut self,
        ct: &O::Ct,
        poly: &ChebyshevPoly,
        start: Start,
        depth: usize,
    ) -> Result<O::Ct, CkksError> {
        let level = self.ops.level(ct);
        let scale = self.ops.scale(ct);
        if depth > level {
            return Err(level_error(format!(
                "the polynomial needs {depth} levels{}, the input has {level}",
                if start == Start::Normalized && !poly.needs_affine_map() {
                    " (one of them to bring the input scale to its prime's)"
                } else {
                    ""
                }
            )));
        }
        let x = match start {
            Start::Normalized => {
                let (alpha, beta, bound) = if poly.needs_affine_map() {
                    (
                        2.0 / (poly.b - poly.a),
                        -(poly.a + poly.b) / (poly.b - poly.a),
                        poly.a.abs().max(poly.b.abs()),
                    )
                } else {
                    (1.0, 0.0, 1.0)
                };
                // Rescaled by q_ℓ, the product lands on exactly q_{ℓ−1}: the
                // prime T_1's own products are divided by.
                let sigma = self.q[level - 1] as f64;
                let f = sigma * self.q[level] as f64 / scale;
                let m = self.constant(ct, alpha, f, bound, || {
                    format!(
                        "the factor normalising the input scale 2^{:.1}",
                        scale.log2()
                    )
                })?;
                self.fits(&m, alpha.abs() * bound, || "the normalised input".into())?;
                let mut x = self.ops.rescale(&m)?;
                self.ops.set_scale(&mut x, sigma);
                self.add_constant(&x, beta, || "the affine map's shift".into())?
            }
            Start::AsIs(k) => {
                debug_assert!(!poly.needs_affine_map());
                if k > 1 {
                    let mut x = self.ops.mul_int(ct, k);
                    self.ops.set_scale(&mut x, scale * k as f64);
                    self.fits(&x, 1.0, || format!("the input times {k}"))?;
                    x
                } else {
                    ct.clone()
                }
            }
        };
        self.powers.insert(1, x);
        self.check_power(1)?;
        let c = &poly.coeffs[..=poly.degree()];
        self.eval_rec(c, self.target)
    }
}

/// The chosen start, its depth and its constants' loss.
#[derive(Clone, Copy, Debug)]
struct Plan {
    start: Start,
    depth: usize,
    constant_loss: f64,
}

impl Evaluator {
    /// Runs the evaluation on shapes with the given start.
    fn try_plan(
        &self,
        level: usize,
        scale: f64,
        poly: &ChebyshevPoly,
        target: f64,
        start: Start,
    ) -> Result<Plan, CkksError> {
        let (l, base, _) = poly.plan();
        let depth = base + usize::from(poly.needs_affine_map() || start == Start::Normalized);
        let shapes = Shapes { q: self.params.q() };
        let mut run = Run::new(&shapes, self.params.q(), target, l);
        let out = run.evaluate(&Shape { level, scale }, poly, start, depth)?;
        debug_assert_eq!(out.level + depth, level);
        debug_assert_eq!(out.scale, target);
        Ok(Plan {
            start,
            depth,
            constant_loss: run.constant_loss,
        })
    }

    /// How to evaluate `poly` on an input at `level` and `scale`: as it is
    /// when no coefficient falls more than [`MAX_AS_IS_CONSTANT_LOSS_BITS`]
    /// below the target scale, else with a level spent on bringing the input
    /// to its prime's scale (as it is, with its lower but still safe
    /// constants, if that level is missing); an error when neither works.
    fn plan_chebyshev(
        &self,
        level: usize,
        scale: f64,
        poly: &ChebyshevPoly,
        target: f64,
    ) -> Result<Plan, CkksError> {
        if !(scale.is_finite() && scale > 0.0 && target.is_finite() && target > 0.0) {
            return Err(scale_error(format!(
                "input scale {scale} and target scale {target} must be positive and finite"
            )));
        }
        if level > self.params.max_level() {
            return Err(level_error(format!(
                "input level {level} above the chain's top {}",
                self.params.max_level()
            )));
        }
        if poly.needs_affine_map() {
            // The affine map's level brings the input to its prime's scale anyway.
            return self.try_plan(level, scale, poly, target, Start::Normalized);
        }
        let base = poly.plan().1;
        if base > level {
            return Err(level_error(format!(
                "the polynomial needs {base} levels, the input has {level}"
            )));
        }
        let k = nearest_int_ratio(self.params.q()[level] as f64 / scale);
        let as_is = self.try_plan(level, scale, poly, target, Start::AsIs(k));
        if let Ok(p) = &as_is {
            if p.constant_loss <= MAX_AS_IS_CONSTANT_LOSS_BITS {
                return as_is;
            }
        }
        let normalized = self.try_plan(level, scale, poly, target, Start::Normalized);
        match (as_is, normalized) {
            (Ok(a), Ok(b)) => Ok(if b.constant_loss < a.constant_loss {
                b
            } else {
                a
            }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            (Err(a), Err(b)) => Err(scale_error(format!(
                "at the input scale 2^{:.1}: {}; with a level spent on bringing it to its \
                 prime's scale: {}",
                scale.log2(),
                reason(&a),
                reason(&b)
            ))),
        }
    }

    /// Levels [`Evaluator::evaluate_chebyshev`] consumes for an input at
    /// `level` and `scale`: [`ChebyshevPoly::depth`], or one more when the
    /// input's scale is so far above its level's prime that the powers'
    /// scales would push the coefficients more than
    /// [`MAX_AS_IS_CONSTANT_LOSS_BITS`] below `target_scale`; an error
    /// when the evaluation cannot be done correctly.
    pub fn chebyshev_depth(
        &self,
        level: usize,
        scale: f64,
        poly: &ChebyshevPoly,
        target_scale: f64,
    ) -> Result<usize, CkksError> {
        Ok(self.plan_chebyshev(level, scale, poly, target_scale)?.depth)
    }

    /// Evaluates `poly` on every slot; the result has exactly `target_scale`
    /// and [`Evaluator::chebyshev_depth`] fewer levels. Inputs must lie in
    /// `[a, b]`. Any input scale works: the powers are steered back to
    /// their primes' scales (an integer factor at the input and in each
    /// power's doubling, or one level spent on the input when it is far
    /// above its prime), and every constant is encoded at the scale that
    /// lands its term exactly on the scale of the sum it joins, computed top
    /// down from `target_scale` with the actual primes. The plan is run on
    /// levels and scales first; it refuses, with an error naming the cause,
    /// constants below [`MIN_CONSTANT_SCALE`], powers far below their
    /// primes, values that would overflow the modulus and missing levels,
    /// instead of returning a wrong result.
    pub fn evaluate_chebyshev(
        &self,
        ct: &Ciphertext,
        poly: &ChebyshevPoly,
        target_scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        let plan = self.plan_chebyshev(ct.level(), ct.scale(), poly, target_scale)?;
        self.run_chebyshev(ct, poly, target_scale, plan)
    }

    /// [`Evaluator::evaluate_chebyshev`] for a caller that has budgeted
    /// exactly [`ChebyshevPoly::depth`] levels (bootstrapping): an input
    /// whose scale would cost one more is refused, not evaluated lower.
    pub(crate) fn evaluate_chebyshev_in_depth(
        &self,
        ct: &Ciphertext,
        poly: &ChebyshevPoly,
        target_scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        let plan = self.plan_chebyshev(ct.level(), ct.scale(), poly, target_scale)?;
        if plan.depth != poly.depth() {
            return Err(level_error(format!(
                "the input scale 2^{:.1} (level {}, prime 2^{:.1}) needs {} levels, {} budgeted",
                ct.scale().log2(),
                ct.level(),
                (self.params.q()[ct.level()] as f64).log2(),
                plan.depth,
                poly.depth()
            )));
        }
        self.run_chebyshev(ct, poly, target_scale, plan)
    }

    fn run_chebyshev(
        &self,
        ct: &Ciphertext,
        poly: &ChebyshevPoly,
        target_scale: f64,
        plan: Plan,
    ) -> Result<Ciphertext, CkksError> {
        let (l, _, _) = poly.plan();
        let real = Real(self);
        let mut run = Run::new(&real, self.params.q(), target_scale, l);
        run.evaluate(ct, poly, plan.start, plan.depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_helpers_are_consistent() {
        let p = ChebyshevPoly::interpolate(|x| (3.0 * x).sin() + x * x, 27, -2.0, 1.0);
        for k in 0..50 {
            let x = -2.0 + 3.0 * k as f64 / 49.0;
            assert!(
                (p.evaluate(x) - ((3.0 * x).sin() + x * x)).abs() < 1e-6,
                "{x}"
            );
        }
        // The division p = q·T_M + r reproduces p.
        let c = &p.coeffs;
        let (q, r) = split(c, 4);
        let unit = |c: &[f64], y: f64| {
            ChebyshevPoly::new(c.to_vec(), -1.0, 1.0)
                .unwrap()
                .evaluate(y)
        };
        for k in 0..20 {
            let y = -1.0 + 2.0 * k as f64 / 19.0;
            let t16 = (16.0 * y.acos()).cos();
            assert!((unit(c, y) - (unit(&q, y) * t16 + unit(&r, y))).abs() < 1e-12);
        }
        // Degree 27 on [-1, 1] needs ⌈log2 28⌉ = 5 levels; the affine map adds one.
        let unit27 = ChebyshevPoly::new(p.coeffs.clone(), -1.0, 1.0).unwrap();
        assert_eq!(unit27.depth(), 5);
        assert_eq!(p.depth(), 6);
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(5), 3);
        assert_eq!(ceil_log2(8), 3);
    }
}

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
//! Scales are exact: each leaf multiplies its `T_i` by constants encoded at
//! `target · q_ℓ / scale(T_i)`, so every term lands on the same scale and the
//! rescale gives the requested scale; a quotient is evaluated at
//! `target · q_ℓ / scale(T_{2^m})` so that its product with the giant power
//! rescales to the target too. Powers that must be subtracted at a lower
//! level are brought to the exact scale with a constant multiplication and a
//! rescale on a level they have to spare.

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

    /// Levels the evaluation consumes (including the affine map, if any).
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

struct Powers {
    map: HashMap<usize, Ciphertext>,
}

impl Evaluator {
    /// Brings `ct` to exactly `scale` at `level`, spending one of its spare
    /// levels on a constant multiplication; a no-op if already there.
    fn match_scale_level(
        &self,
        ct: &Ciphertext,
        scale: f64,
        level: usize,
    ) -> Result<Ciphertext, CkksError> {
        if ct.level() == level || ((ct.scale() - scale) / scale).abs() < 1e-15 {
            if ((ct.scale() - scale) / scale).abs() > super::super::evaluator::SCALE_TOLERANCE {
                return Err(CkksError::Mismatch(
                    "no spare level to adjust the scale".into(),
                ));
            }
            let mut out = self.drop_level(ct, level);
            out.set_scale(scale);
            return Ok(out);
        }
        let q = self.params.q()[ct.level()] as f64;
        let factor = scale * q / ct.scale();
        let mut out = self.rescale(&self.mul_const(ct, 1.0, factor)?)?;
        out = self.drop_level(&out, level);
        // The constant was rounded to an integer ≈ 2^40: relative error ≈ 2^-41.
        out.set_scale(scale);
        Ok(out)
    }

    fn power(&self, p: &mut Powers, i: usize) -> Result<(), CkksError> {
        if p.map.contains_key(&i) {
            return Ok(());
        }
        let a = 1 << (ceil_log2(i) - 1);
        let b = i - a;
        self.power(p, a)?;
        self.power(p, b)?;
        let prod = self.mul_relin(&p.map[&a], &p.map[&b])?;
        let two = self.add(&prod, &prod)?;
        let mut t = self.rescale(&two)?;
        if a == b {
            t = self.add_const(&t, -1.0)?;
        } else {
            self.power(p, a - b)?;
            let c = self.match_scale_level(&p.map[&(a - b)], t.scale(), t.level())?;
            t = self.sub(&t, &c)?;
        }
        p.map.insert(i, t);
        Ok(())
    }

    fn level_of_power(&self, p: &Powers, i: usize) -> isize {
        p.map[&1].level() as isize - ceil_log2(i) as isize
    }

    fn eval_rec(
        &self,
        c: &[f64],
        target: f64,
        p: &mut Powers,
        l: usize,
    ) -> Result<Ciphertext, CkksError> {
        let d = degree(c);
        if d < (1 << l) {
            let mut used: Vec<usize> = (1..=d).filter(|&i| c[i] != 0.0).collect();
            let zero = used.is_empty();
            if zero {
                used.push(1);
            }
            for &i in &used {
                self.power(p, i)?;
            }
            let level = used
                .iter()
                .map(|i| p.map[i].level())
                .min()
                .expect("nonempty");
            if level == 0 {
                return Err(CkksError::Mismatch(
                    "not enough levels for the polynomial".into(),
                ));
            }
            let q = self.params.q()[level] as f64;
            let mut acc: Option<Ciphertext> = None;
            for &i in &used {
                let t = self.drop_level(&p.map[&i], level);
                let coef = if zero { 0.0 } else { c[i] };
                let mut term = self.mul_const(&t, coef, target * q / t.scale())?;
                term.set_scale(target * q);
                acc = Some(match acc {
                    None => term,
                    Some(s) => self.add(&s, &term)?,
                });
            }
            let acc = self.add_const(&acc.expect("nonempty"), c[0])?;
            let mut out = self.rescale(&acc)?;
            out.set_scale(target);
            return Ok(out);
        }
        let m = (usize::BITS - 1 - d.leading_zeros()) as usize;
        let (qc, rc) = split(c, m);
        self.power(p, 1 << m)?;
        let l_in = p.map[&1].level() as isize;
        let lq = planned_level(&qc, l_in, l);
        let lg = self.level_of_power(p, 1 << m);
        let level = lq.min(lg);
        if level <= 0 {
            return Err(CkksError::Mismatch(
                "not enough levels for the polynomial".into(),
            ));
        }
        let level = level as usize;
        let g_scale = p.map[&(1 << m)].scale();
        let q_scale = target * self.params.q()[level] as f64 / g_scale;
        let ctq = self.eval_rec(&qc, q_scale, p, l)?;
        debug_assert_eq!(ctq.level() as isize, lq, "level plan and evaluation agree");
        let g = self.drop_level(&p.map[&(1 << m)], level);
        let mut prod = self.rescale(&self.mul_relin(&self.drop_level(&ctq, level), &g)?)?;
        prod.set_scale(target);
        let ctr = self.eval_rec(&rc, target, p, l)?;
        self.add(&prod, &ctr)
    }

    /// Evaluates `poly` on every slot; the result has exactly `target_scale`
    /// and `poly.depth()` fewer levels. Inputs must lie in `[a, b]`.
    pub fn evaluate_chebyshev(
        &self,
        ct: &Ciphertext,
        poly: &ChebyshevPoly,
        target_scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        let mut x = ct.clone();
        if poly.needs_affine_map() {
            let alpha = 2.0 / (poly.b - poly.a);
            let beta = -(poly.a + poly.b) / (poly.b - poly.a);
            let q = self.params.q()[x.level()] as f64;
            let s = x.scale();
            x = self.rescale(&self.mul_const(&x, alpha, q)?)?;
            x.set_scale(s);
            x = self.add_const(&x, beta)?;
        }
        let (l, depth, _) = poly.plan();
        if depth > x.level() {
            return Err(CkksError::Mismatch(format!(
                "polynomial needs {depth} levels, the input has {}",
                x.level()
            )));
        }
        let mut powers = Powers {
            map: HashMap::from([(1usize, x)]),
        };
        let c = &poly.coeffs[..=poly.degree()];
        self.eval_rec(c, target_scale, &mut powers, l)
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

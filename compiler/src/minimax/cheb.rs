//! Odd polynomials in the Chebyshev basis, `p(x) = Σ_j c_j·T_{2j+1}(x)`.
//!
//! Evaluation uses the Clenshaw recurrence in `y = T_2(x) = 2x² − 1`, over the
//! sequence `ψ_j = T_{2j+1}(x)` which satisfies `ψ_{j+1} = 2y·ψ_j − ψ_{j−1}`
//! with `ψ_0 = ψ_{−1} = x`; this halves the work of a plain Clenshaw sum and
//! keeps the result exactly odd.

use super::dd::{Dd, Real};

/// `p(x)` in double-double.
pub fn eval_dd(c: &[Dd], x: Dd) -> Dd {
    eval(c, x)
}

/// `p(x)` in any [`Real`].
pub fn eval<R: Real>(c: &[R], x: R) -> R {
    let y2 = (x * x).pow2_scale(4.0) - R::of(2.0); // 2·T_2(x)
    let mut b1 = R::of(0.0);
    let mut b2 = R::of(0.0);
    for &cj in c.iter().rev() {
        let b0 = cj + y2 * b1 - b2;
        b2 = b1;
        b1 = b0;
    }
    // After the loop b1 = b_0 and b2 = b_1.
    x * (b1 - b2)
}

/// `(p(x), p'(x))` in double-double.
pub fn eval_deriv_dd(c: &[Dd], x: Dd) -> (Dd, Dd) {
    eval_deriv(c, x)
}

/// `(p(x), p'(x))` in any [`Real`].
pub fn eval_deriv<R: Real>(c: &[R], x: R) -> (R, R) {
    let xx = x * x;
    let y2 = xx.pow2_scale(4.0) - R::of(2.0);
    let (mut b1, mut b2) = (R::of(0.0), R::of(0.0));
    // β_j = d b_j / d y.
    let (mut d1, mut d2) = (R::of(0.0), R::of(0.0));
    for &cj in c.iter().rev() {
        let b0 = cj + y2 * b1 - b2;
        let d0 = b1.pow2_scale(2.0) + y2 * d1 - d2;
        b2 = b1;
        b1 = b0;
        d2 = d1;
        d1 = d0;
    }
    let s = b1 - b2;
    // dy/dx = 4x.
    (x * s, s + xx.pow2_scale(4.0) * (d1 - d2))
}

/// `p(x)` in `f64`.
pub fn eval_f64(c: &[f64], x: f64) -> f64 {
    let y2 = 4.0 * x * x - 2.0;
    let (mut b1, mut b2) = (0.0, 0.0);
    for &cj in c.iter().rev() {
        let b0 = cj + y2 * b1 - b2;
        b2 = b1;
        b1 = b0;
    }
    x * (b1 - b2)
}

/// Converts odd Chebyshev coefficients to odd degree.
pub fn degree_of(c: &[impl Sized]) -> usize {
    2 * c.len() - 1
}

/// Values `T_1(x), T_3(x), …, T_{2n−1}(x)`.
pub fn odd_basis<R: Real>(n: usize, x: R) -> Vec<R> {
    let y2 = (x * x).pow2_scale(4.0) - R::of(2.0);
    let mut out = Vec::with_capacity(n);
    let (mut prev, mut cur) = (x, x);
    for _ in 0..n {
        out.push(cur);
        let next = y2 * cur - prev;
        prev = cur;
        cur = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheb_t(k: usize, x: f64) -> f64 {
        let (mut a, mut b) = (1.0, x);
        if k == 0 {
            return 1.0;
        }
        for _ in 1..k {
            let c = 2.0 * x * b - a;
            a = b;
            b = c;
        }
        b
    }

    #[test]
    fn clenshaw_matches_direct_sum_and_derivative() {
        let c = [0.7, -0.2, 0.05, 0.3, -0.11];
        let cd: Vec<Dd> = c.iter().map(|&v| Dd::from_f64(v)).collect();
        for i in 0..=40 {
            let x = -1.0 + i as f64 / 20.0;
            let direct: f64 = c
                .iter()
                .enumerate()
                .map(|(j, &cj)| cj * cheb_t(2 * j + 1, x))
                .sum();
            assert!((eval_f64(&c, x) - direct).abs() < 1e-14);
            assert!((eval_dd(&cd, Dd::from_f64(x)).to_f64() - direct).abs() < 1e-14);
            let h = 1e-6;
            let num = (eval_f64(&c, x + h) - eval_f64(&c, x - h)) / (2.0 * h);
            let (v, d) = eval_deriv_dd(&cd, Dd::from_f64(x));
            assert!((v.to_f64() - direct).abs() < 1e-14);
            assert!(
                (d.to_f64() - num).abs() < 1e-6,
                "{x}: {} vs {num}",
                d.to_f64()
            );
            let basis = odd_basis(5, Dd::from_f64(x));
            for (j, b) in basis.iter().enumerate() {
                assert!((b.to_f64() - cheb_t(2 * j + 1, x)).abs() < 1e-13);
            }
        }
    }
}

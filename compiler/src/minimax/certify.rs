//! Certified error bounds: extrema found by dense sampling plus local
//! refinement of every sampled extremum, evaluated in double-double.
//!
//! The composite `p = p_k∘…∘p_1` is certified stage by stage: the image of an
//! interval under a continuous map is an interval, so the image of `[ε, 1]`
//! under `p_1` is exactly `[min p_1, max p_1]` over `[ε, 1]`, and so on. The
//! supremum of `|p − 1|` over `[ε, 1]` is therefore exactly the supremum of
//! `|p_k − 1|` over the image interval entering stage `k`: a one-dimensional
//! problem of degree `d_k`, not of degree `Π d_i`.

use super::cheb::{eval_dd, eval_deriv_dd, eval_f64};
use super::dd::Dd;

/// Refines a local extremum of `sgn·p` bracketed by `[l, r]` around `m`.
fn refine(c: &[Dd], l: Dd, m: Dd, r: Dd, sgn: f64) -> (Dd, Dd) {
    let dp = |x: Dd| eval_deriv_dd(c, x).1.mul_f64(sgn);
    let mut best = (m, eval_dd(c, m));
    for (a, b) in [(l, m), (m, r)] {
        if b <= a {
            continue;
        }
        let (da, db) = (dp(a), dp(b));
        if !da.is_negative() && db.is_negative() {
            // Bisection on p' (robust, ~100 steps to double-double).
            let (mut lo, mut hi) = (a, b);
            for _ in 0..110 {
                let mid = (lo + hi).scale2(0.5);
                if mid <= lo || mid >= hi {
                    break;
                }
                if dp(mid).is_negative() {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            let v = eval_dd(c, lo);
            if (v - best.1).mul_f64(sgn).hi > 0.0 {
                best = (lo, v);
            }
        }
    }
    best
}

/// Exact range `[min, max]` of the odd polynomial `c` (coefficients of
/// `T_1, T_3, …`) over `[lo, hi]`.
///
/// Samples `32·d + 64` points distributed like the polynomial's extrema
/// (Chebyshev in `x²`) and as many uniformly, plus the ends; every sampled
/// local maximum and minimum is refined by bisection on `p'` in double-double.
pub fn poly_range(c: &[f64], lo: Dd, hi: Dd) -> (Dd, Dd) {
    assert!(lo <= hi);
    let cd: Vec<Dd> = c.iter().map(|&v| Dd::from_f64(v)).collect();
    let d = 2 * c.len() - 1;
    let n = 32 * d + 64;
    let (l, h) = (lo.to_f64(), hi.to_f64());
    let mut xs: Vec<f64> = Vec::with_capacity(2 * n + 2);
    for i in 0..=n {
        xs.push(l + (h - l) * (i as f64 / n as f64));
        if l >= 0.0 {
            let t = super::dd::det_cos(std::f64::consts::PI * i as f64 / n as f64);
            let y = (l * l + h * h) * 0.5 - (h * h - l * l) * 0.5 * t;
            xs.push(y.max(l * l).sqrt());
        }
    }
    xs.retain(|&x| x > l && x < h);
    xs.push(l);
    xs.push(h);
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let vs: Vec<f64> = xs.iter().map(|&x| eval_f64(c, x)).collect();
    let (mut vmin, mut vmax) = (eval_dd(&cd, lo), eval_dd(&cd, lo));
    for end in [lo, hi] {
        let v = eval_dd(&cd, end);
        vmin = vmin.min(v);
        vmax = vmax.max(v);
    }
    let last = xs.len() - 1;
    for i in 1..last {
        for sgn in [1.0, -1.0] {
            let (a, b, m) = (vs[i - 1] * sgn, vs[i + 1] * sgn, vs[i] * sgn);
            if m >= a && m >= b {
                let (_, v) = refine(
                    &cd,
                    Dd::from_f64(xs[i - 1]),
                    Dd::from_f64(xs[i]),
                    Dd::from_f64(xs[i + 1]),
                    sgn,
                );
                vmin = vmin.min(v);
                vmax = vmax.max(v);
            }
        }
    }
    // The refined ends too: an extremum may sit just inside an end.
    for (i, sgn) in [(0usize, 1.0), (0, -1.0), (last, 1.0), (last, -1.0)] {
        let (a, b) = if i == 0 { (0, 1) } else { (last - 1, last) };
        let (_, v) = refine(
            &cd,
            Dd::from_f64(xs[a]),
            Dd::from_f64(xs[a]),
            Dd::from_f64(xs[b]),
            sgn,
        );
        vmin = vmin.min(v);
        vmax = vmax.max(v);
    }
    (vmin, vmax)
}

/// `p(x)` of a composite in double-double.
pub fn composite_dd(stages: &[Vec<Dd>], x: Dd) -> Dd {
    stages.iter().fold(x, |y, c| eval_dd(c, y))
}

/// Supremum over `x ∈ [0, eps]` of `x·|1 − p(x)|/2`, the ReLU error of
/// `x(1 + p(x))/2` inside the gap (the same on `[−ε, 0]` by oddness).
/// Dense sampling (uniform and geometric) and golden-section refinement of
/// every sampled local maximum.
pub fn relu_gap_error(stages: &[Vec<Dd>], eps: f64) -> Dd {
    let g = |x: Dd| (x * (Dd::ONE - composite_dd(stages, x)).abs()).scale2(0.5);
    let n = 4096;
    let mut xs: Vec<f64> = (0..=n).map(|i| eps * (i as f64 / n as f64)).collect();
    // Geometric samples resolve the steep start near 0.
    let mut t = eps;
    for _ in 0..200 {
        t *= 0.9;
        xs.push(t);
    }
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let vs: Vec<Dd> = xs.iter().map(|&x| g(Dd::from_f64(x))).collect();
    let mut best = Dd::ZERO;
    for v in &vs {
        best = best.max(*v);
    }
    let phi = 0.618_033_988_749_894_8;
    for i in 1..xs.len() - 1 {
        if vs[i] >= vs[i - 1] && vs[i] >= vs[i + 1] {
            let (mut a, mut b) = (Dd::from_f64(xs[i - 1]), Dd::from_f64(xs[i + 1]));
            let mut x1 = b - (b - a).mul_f64(phi);
            let mut x2 = a + (b - a).mul_f64(phi);
            let (mut f1, mut f2) = (g(x1), g(x2));
            for _ in 0..80 {
                if f1 < f2 {
                    a = x1;
                    x1 = x2;
                    f1 = f2;
                    x2 = a + (b - a).mul_f64(phi);
                    f2 = g(x2);
                } else {
                    b = x2;
                    x2 = x1;
                    f2 = f1;
                    x1 = b - (b - a).mul_f64(phi);
                    f1 = g(x1);
                }
            }
            best = best.max(f1).max(f2);
        }
    }
    let last = *xs.last().expect("samples");
    best.max(g(Dd::from_f64(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_of_t5_and_a_shifted_cubic() {
        // T_5 on [0.1, 1]: min −1 at cos(3π/5)… inside? cos(3π/5) < 0, so
        // on [0.1, 1] the extrema are −1 at cos(π/5)… check against sampling.
        let c = [0.0, 0.0, 1.0];
        let (mn, mx) = poly_range(&c, Dd::from_f64(0.1), Dd::ONE);
        assert!((mx.to_f64() - 1.0).abs() < 1e-30 + 1e-15);
        assert!((mn.to_f64() + 1.0).abs() < 1e-15);
        // p = 1.5x − 0.5x³ = (3/2 − 3/8)T1 − (1/8)T3 … max 1 at x = 1.
        let c = [1.5 - 0.375, -0.125];
        let (mn, mx) = poly_range(&c, Dd::from_f64(0.2), Dd::from_f64(1.3));
        let p = |x: f64| 1.5 * x - 0.5 * x * x * x;
        assert!((mx.to_f64() - 1.0).abs() < 1e-15, "{mx}");
        assert!((mn.to_f64() - p(1.3).min(p(0.2))).abs() < 1e-15, "{mn}");
    }
}

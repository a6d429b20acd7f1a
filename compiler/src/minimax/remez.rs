//! Remez exchange for the odd minimax approximation of `sgn` on `[a, b]`,
//! `0 < a < b`, in the odd Chebyshev basis `T_1, T_3, …, T_d`.
//!
//! Because the basis is odd, approximating `sgn` on `[−b,−a] ∪ [a,b]` is the
//! same as approximating the constant 1 on `[a, b]` with an odd polynomial;
//! `{x, x³, …}` is a Haar system on `(0, ∞)`, so the best approximation
//! equioscillates on `(d+1)/2 + 1` points of `[a, b]` (the `d+2` points of the
//! two-interval problem, folded by symmetry).
//!
//! Each iteration solves `p(x_i) + (−1)^i·E = 1` on the reference, splits
//! `[a, b]` at the zeros of `p − 1` (one between consecutive references),
//! and takes the extremum of `|p − 1|` in every piece as the new reference
//! (dense sampling, then refinement on `p'`). It stops when the extremal errors
//! agree: `(max − min)/max < tol` (default 1e-24), or `max − min` is below the
//! absolute resolution of double-double evaluation (`1e-30·(1 + Σ|c_j|)`),
//! which is what limits tiny errors. All of it runs in double-double.
//!
//! Initial reference: the extrema of the equilibrium distribution of
//! `[−b,−a] ∪ [a,b]`, i.e. Chebyshev extrema in `y = x²` on `[a², b²]`, which
//! is the exact limit shape for both `a → 0` and `a → b`.

use super::cheb::{eval, eval_deriv, odd_basis};
use super::dd::{det_cos, Dd, Real};
use serde::{Deserialize, Serialize};

/// Errors below this are at the resolution of evaluating `p − 1` in the
/// arithmetic `R` and are reported as this value (the problem is
/// *saturated*): about 1e-26 in double-double, 2e-11 in `f64`.
pub fn saturation<R: Real>() -> f64 {
    2e5 * R::EPS
}

/// Tuning of the exchange.
#[derive(Clone, Copy, Debug)]
pub struct RemezOptions {
    /// Stop when `(max − min)/max` of the extremal errors is below this.
    pub tol: f64,
    /// Give up after this many iterations.
    pub max_iter: usize,
    /// Samples per piece when locating extrema.
    pub samples: usize,
}

impl RemezOptions {
    /// Options for `f64` screening runs (the degree search): the spread
    /// target is what `f64` can resolve.
    pub fn screening() -> Self {
        RemezOptions {
            tol: 1e-11,
            ..RemezOptions::default()
        }
    }
}

impl Default for RemezOptions {
    fn default() -> Self {
        RemezOptions {
            tol: 1e-24,
            max_iter: 100,
            samples: 12,
        }
    }
}

/// Convergence report of one Remez run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemezStats {
    /// Exchange iterations performed.
    pub iterations: usize,
    /// Final `(max − min)/max` of the extremal errors.
    pub spread: f64,
    /// `|E|`, the levelled error of the last linear solve.
    pub level: f64,
}

/// An odd minimax polynomial for `sgn` on `[a, b]`.
#[derive(Clone, Debug)]
pub struct Minimax<R = Dd> {
    /// Coefficients of `T_1, T_3, …, T_d`.
    pub coeffs: Vec<R>,
    /// Largest `|p − 1|` on `[a, b]` (found at the final extrema).
    pub error: R,
    /// Convergence report.
    pub stats: RemezStats,
}

/// Why the exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RemezError {
    /// Bad arguments.
    #[error("invalid minimax problem: degree {degree} on [{a}, {b}]")]
    Invalid { degree: usize, a: f64, b: f64 },
    /// Singular reference system.
    #[error(
        "singular Remez system (degree {degree}, interval [{a:e}, {b:e}], iteration {iteration})"
    )]
    Singular {
        degree: usize,
        a: f64,
        b: f64,
        iteration: usize,
    },
    /// No convergence within the iteration budget.
    #[error("Remez did not converge: degree {degree}, interval [{a:e}, {b:e}], spread {spread:e} after {iterations} iterations")]
    NoConvergence {
        degree: usize,
        a: f64,
        b: f64,
        spread: f64,
        iterations: usize,
    },
}

/// Solves `A·z = rhs` by Gaussian elimination with partial pivoting.
fn solve<R: Real>(mut a: Vec<Vec<R>>, mut rhs: Vec<R>) -> Option<Vec<R>> {
    let n = rhs.len();
    for col in 0..n {
        let mut piv = col;
        for r in col + 1..n {
            if a[r][col].absv() > a[piv][col].absv() {
                piv = r;
            }
        }
        if a[piv][col].f() == 0.0 {
            return None;
        }
        a.swap(col, piv);
        rhs.swap(col, piv);
        let inv = R::of(1.0) / a[col][col];
        for r in col + 1..n {
            let f = a[r][col] * inv;
            if f.f() == 0.0 {
                continue;
            }
            let (top, bottom) = a.split_at_mut(r);
            for (x, &v) in bottom[0][col..].iter_mut().zip(&top[col][col..]) {
                *x = *x - f * v;
            }
            let v = rhs[col];
            rhs[r] = rhs[r] - f * v;
        }
    }
    let mut z = vec![R::of(0.0); n];
    for r in (0..n).rev() {
        let mut s = rhs[r];
        for k in r + 1..n {
            s = s - a[r][k] * z[k];
        }
        z[r] = s / a[r][r];
    }
    Some(z)
}

/// Root of `f` in `[lo, hi]` where `f(lo)` and `f(hi)` differ in sign
/// (Illinois regula falsi with bisection safeguard), to `xtol`.
fn root<R: Real>(f: impl Fn(R) -> R, mut lo: R, mut hi: R, xtol: f64) -> R {
    let mut flo = f(lo);
    let mut fhi = f(hi);
    if flo.f() == 0.0 {
        return lo;
    }
    if fhi.f() == 0.0 {
        return hi;
    }
    let mut side = 0i32;
    for it in 0..120 {
        if (hi - lo).f() <= xtol {
            break;
        }
        // Every fourth step bisect, which bounds the worst case.
        let x = if it % 4 == 3 {
            (lo + hi).pow2_scale(0.5)
        } else {
            let t = hi - fhi * (hi - lo) / (fhi - flo);
            if t > lo && t < hi {
                t
            } else {
                (lo + hi).pow2_scale(0.5)
            }
        };
        let fx = f(x);
        if fx.f() == 0.0 {
            return x;
        }
        if fx.neg_p() == flo.neg_p() {
            lo = x;
            flo = fx;
            if side == -1 {
                fhi = fhi.pow2_scale(0.5);
            }
            side = -1;
        } else {
            hi = x;
            fhi = fx;
            if side == 1 {
                flo = flo.pow2_scale(0.5);
            }
            side = 1;
        }
    }
    if flo.absv() < fhi.absv() {
        lo
    } else {
        hi
    }
}

/// Location and value of the maximum of `σ·(p − 1)` on `[lo, hi]`,
/// by `samples` equispaced samples and refinement on `p'`.
fn piece_max<R: Real>(c: &[R], lo: R, hi: R, sigma: f64, samples: usize) -> (R, R) {
    let g = |x: R| (eval(c, x) - R::of(1.0)).mulf(sigma);
    let m = samples.max(2);
    let step = (hi - lo).mulf(1.0 / m as f64);
    let pts: Vec<R> = (0..=m)
        .map(|i| if i == m { hi } else { lo + step.mulf(i as f64) })
        .collect();
    let vals: Vec<R> = pts.iter().map(|&x| g(x)).collect();
    let mut best = 0;
    for i in 1..=m {
        if vals[i] > vals[best] {
            best = i;
        }
    }
    let dg = |x: R| eval_deriv(c, x).1.mulf(sigma);
    let refine = |l: R, r: R| -> Option<R> {
        let (dl, dr) = (dg(l), dg(r));
        if !dl.neg_p() && dr.neg_p() {
            let tol = 1e8 * R::EPS * r.f().absv();
            Some(root(dg, l, r, tol))
        } else {
            None
        }
    };
    let mut cand = vec![(pts[best], vals[best])];
    let lo_i = best.saturating_sub(1);
    let hi_i = (best + 1).min(m);
    if best > 0 {
        if let Some(x) = refine(pts[lo_i], pts[best]) {
            cand.push((x, g(x)));
        }
    }
    if best < m {
        if let Some(x) = refine(pts[best], pts[hi_i]) {
            cand.push((x, g(x)));
        }
    }
    let mut out = cand[0];
    for &(x, v) in &cand[1..] {
        if v > out.1 {
            out = (x, v);
        }
    }
    out
}

/// Odd minimax approximation of degree `degree` (odd, ≥ 1) of `sgn` on
/// `[a, b]` (`0 < a < b`).
pub fn minimax_sign<R: Real>(
    degree: usize,
    a: R,
    b: R,
    opts: &RemezOptions,
) -> Result<Minimax<R>, RemezError> {
    if degree % 2 == 0 || a.f() <= 0.0 || b <= a || !b.f().is_finite() {
        return Err(RemezError::Invalid {
            degree,
            a: a.f(),
            b: b.f(),
        });
    }
    let n = degree.div_ceil(2);
    // Initial reference: Chebyshev extrema in x² on [a², b²].
    let (a2, b2) = (a * a, b * b);
    let mid = (a2 + b2).pow2_scale(0.5);
    let rad = (b2 - a2).pow2_scale(0.5);
    let mut refs: Vec<R> = (0..=n)
        .map(|k| {
            if k == 0 {
                a
            } else if k == n {
                b
            } else {
                let th = Dd::PI.mul_f64(k as f64 / n as f64).to_f64();
                (mid - rad * R::of(det_cos(th))).root()
            }
        })
        .collect();
    let mut spread = f64::INFINITY;
    for iteration in 1..=opts.max_iter {
        // Linear system: rows p(x_i) + (−1)^i E = 1.
        let mat: Vec<Vec<R>> = refs
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let mut row = odd_basis(n, x);
                row.push(R::of(if i % 2 == 0 { 1.0 } else { -1.0 }));
                row
            })
            .collect();
        let Some(z) = solve(mat, vec![R::of(1.0); n + 1]) else {
            return Err(RemezError::Singular {
                degree,
                a: a.f(),
                b: b.f(),
                iteration,
            });
        };
        let coeffs = z[..n].to_vec();
        let level = z[n];
        // e(x_i) = p(x_i) − 1 = −(−1)^i E: sign of the error at reference i.
        let sign_at = |i: usize| -> f64 {
            let s = if i % 2 == 0 { -1.0 } else { 1.0 };
            if level.neg_p() {
                -s
            } else {
                s
            }
        };
        // Zeros of p − 1 between consecutive references.
        let e = |x: R| eval(&coeffs, x) - R::of(1.0);
        let mut bounds = Vec::with_capacity(n + 2);
        bounds.push(a);
        for i in 0..n {
            let (l, r) = (refs[i], refs[i + 1]);
            // The zeros only delimit the pieces: modest accuracy suffices.
            let tol = (100.0 * R::EPS).max(1e-14) * (r - l).f();
            bounds.push(root(e, l, r, tol));
        }
        bounds.push(b);
        // New reference: the extremum of |e| in each piece.
        let mut new_refs = Vec::with_capacity(n + 1);
        let mut vmax = R::of(0.0);
        let mut vmin = R::of(f64::INFINITY);
        for i in 0..=n {
            // Once the reference has settled the extrema move little: a
            // coarse scan plus refinement on p' finds them.
            let samples = if iteration <= 2 { opts.samples } else { 4 };
            let (x, v) = piece_max(&coeffs, bounds[i], bounds[i + 1], sign_at(i), samples);
            new_refs.push(x);
            vmax = vmax.maxv(v);
            vmin = vmin.minv(v);
        }
        spread = ((vmax - vmin) / vmax).f();
        refs = new_refs;
        // Below `saturation` the error is at the resolution of the arithmetic:
        // the polynomial is as good as the arithmetic can tell, stop there.
        // The spread is also met when the extremal errors agree to the
        // absolute resolution of evaluating `p − 1`.
        let resolution = 100.0 * R::EPS * coeffs.iter().fold(1.0, |s, c| s + c.absv().f());
        let flat = (vmax - vmin).f() < resolution;
        let saturated = vmax.f() < saturation::<R>();
        let done = spread < opts.tol || flat || saturated;
        if done || iteration == opts.max_iter {
            if !done {
                break;
            }
            return Ok(Minimax {
                coeffs,
                error: vmax.maxv(R::of(if saturated { saturation::<R>() } else { 0.0 })),
                stats: RemezStats {
                    iterations: iteration,
                    spread,
                    level: level.absv().f(),
                },
            });
        }
    }
    Err(RemezError::NoConvergence {
        degree,
        a: a.f(),
        b: b.f(),
        spread,
        iterations: opts.max_iter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minimax::cheb::eval_f64;

    #[test]
    fn degree_one_has_closed_form() {
        // p = c·x, error (b − a)/(b + a).
        let m = minimax_sign(1, Dd::from_f64(0.25), Dd::ONE, &RemezOptions::default()).unwrap();
        let want = 0.75 / 1.25;
        assert!((m.error.to_f64() - want).abs() < 1e-15);
    }

    #[test]
    fn degree_three_equioscillates() {
        let m = minimax_sign(3, Dd::from_f64(0.1), Dd::ONE, &RemezOptions::default()).unwrap();
        assert!(m.stats.spread < 1e-24);
        let c: Vec<f64> = m.coeffs.iter().map(|v| v.to_f64()).collect();
        // Dense check of the claimed error.
        let mut worst: f64 = 0.0;
        for i in 0..=100_000 {
            let x = 0.1 + 0.9 * i as f64 / 100_000.0;
            worst = worst.max((eval_f64(&c, x) - 1.0).abs());
        }
        let err = m.error.to_f64();
        assert!(
            worst <= err * (1.0 + 1e-12) && worst > err * (1.0 - 1e-6),
            "{worst} {err}"
        );
    }

    #[test]
    fn f64_screening_agrees_with_double_double() {
        for &d in &[3usize, 7, 15, 27, 31] {
            for &a in &[2f64.powi(-20) * 21.0, 2f64.powi(-14) * 17.0, 0.01, 0.2, 0.6] {
                let x =
                    minimax_sign(d, Dd::from_f64(a), Dd::ONE, &RemezOptions::default()).unwrap();
                let y = minimax_sign(d, a, 1.0, &RemezOptions::screening()).unwrap();
                let (ex, ey) = (x.error.to_f64(), y.error);
                // What the search uses is the next gap (1 − τ)/(1 + τ):
                // absolute accuracy of τ is what matters.
                assert!(
                    (ex - ey).abs() <= 1e-9 * ex + 1e-14,
                    "{d} {a}: {ex:e} vs {ey:e}"
                );
            }
        }
    }

    #[test]
    fn converges_for_small_gaps_and_high_degree() {
        for &(d, a) in &[
            (63usize, 2f64.powi(-24)),
            (31, 2f64.powi(-20)),
            (15, 2f64.powi(-24)),
            (63, 0.9),
        ] {
            let m = minimax_sign(d, Dd::from_f64(a), Dd::ONE, &RemezOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let ok = m.stats.spread < 1e-24 || m.error.to_f64() <= saturation::<Dd>();
            assert!(ok && m.stats.iterations < 60, "{d} {a}: {:?}", m.stats);
            assert!(m.error.to_f64() < 1.0);
        }
    }
}

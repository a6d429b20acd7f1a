//! Polynomial stand-ins for ReLU and max-pooling (Lee et al. 2023).
//!
//! `sgn(x)` on `[−1,−ε]∪[ε,1]` is approximated by a composite of odd
//! polynomials `p = p_k∘…∘p_1`, each stored in the Chebyshev basis on its own
//! symmetric interval. From it:
//! - ReLU on `[−B, B]`: `relu(x) ≈ x·(1 + p(x/B))/2` (= `B·r_α(x/B)`),
//!   error ≤ `B·2^−α`.
//! - `max(a, b) ≈ ((a+b) + (a−b)·p(a−b))/2` for `a, b ∈ [0, 1]`.
//! - K×K max-pooling: every window value is mapped into `[0, 1]` by
//!   `t = x·input_scale + 1/2`, the window is reduced by a balanced tree of
//!   approximate maxima ([`tree_reduce`]), and the result mapped back by
//!   `(m − 1/2)/input_scale`. Padding is `t = 0` (below every mapped input),
//!   not −∞.
//!
//! These definitions are the single source of truth for every executor and
//! for the lowering; the compiler only chooses the coefficients and bounds.

use serde::{Deserialize, Serialize};

use crate::op::Pool2d;

/// An odd polynomial `p(x) = Σ_k c_k·T_k(x / half_width)` (even `c_k` are 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OddChebyshev {
    /// The polynomial is defined for `x ∈ [−half_width, half_width]`.
    pub half_width: f64,
    /// Chebyshev coefficients `c_0..=c_d`.
    pub coeffs: Vec<f64>,
}

impl OddChebyshev {
    pub fn degree(&self) -> usize {
        self.coeffs.len().saturating_sub(1)
    }

    /// Multiplicative depth of an optimal evaluation: `⌈log2(d+1)⌉`.
    pub fn depth(&self) -> u32 {
        ceil_log2(self.degree() + 1)
    }

    /// Evaluation in f64 by Clenshaw's recurrence in `T_2`: the odd
    /// Chebyshev polynomials satisfy `T_{2j+3} = 2·T_2·T_{2j+1} − T_{2j−1}`,
    /// so only the odd coefficients are visited (even ones must be zero).
    pub fn eval(&self, x: f64) -> f64 {
        let u = x / self.half_width;
        let a = 2.0 * (2.0 * u * u - 1.0);
        let (mut b1, mut b2) = (0.0f64, 0.0f64);
        for &c in self.coeffs.iter().skip(1).step_by(2).rev() {
            let b0 = a * b1 - b2 + c;
            b2 = b1;
            b1 = b0;
        }
        u * (b1 - b2)
    }

    /// [`OddChebyshev::eval`] at every value of `xs`, in place: the same
    /// operations in the same order for each element (so bit-identical
    /// results), with the loops turned so the inner one runs over elements
    /// and vectorises.
    pub fn eval_in_place(&self, xs: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { odd_clenshaw_avx2(&self.coeffs, self.half_width, xs) };
            return;
        }
        odd_clenshaw(&self.coeffs, self.half_width, xs);
    }
}

/// The block evaluation behind [`OddChebyshev::eval_in_place`], compiled
/// again with AVX2 enabled. Rust never fuses a multiply and an add on its
/// own, so both versions round exactly like [`OddChebyshev::eval`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn odd_clenshaw_avx2(coeffs: &[f64], half_width: f64, xs: &mut [f64]) {
    odd_clenshaw(coeffs, half_width, xs)
}

#[inline(always)]
fn odd_clenshaw(coeffs: &[f64], half_width: f64, xs: &mut [f64]) {
    for chunk in xs.chunks_mut(EVAL_CHUNK) {
        let n = chunk.len();
        let mut u = [0.0f64; EVAL_CHUNK];
        let mut a = [0.0f64; EVAL_CHUNK];
        let mut b1 = [0.0f64; EVAL_CHUNK];
        let mut b2 = [0.0f64; EVAL_CHUNK];
        let (u, a, b1, b2) = (&mut u[..n], &mut a[..n], &mut b1[..n], &mut b2[..n]);
        for ((u, a), &x) in u.iter_mut().zip(a.iter_mut()).zip(chunk.iter()) {
            *u = x / half_width;
            *a = 2.0 * (2.0 * *u * *u - 1.0);
        }
        for &c in coeffs.iter().skip(1).step_by(2).rev() {
            for ((b1, b2), &a) in b1.iter_mut().zip(b2.iter_mut()).zip(a.iter()) {
                let b0 = a * *b1 - *b2 + c;
                *b2 = *b1;
                *b1 = b0;
            }
        }
        for (((x, &u), &b1), &b2) in chunk.iter_mut().zip(u.iter()).zip(b1.iter()).zip(b2.iter()) {
            *x = u * (b1 - b2);
        }
    }
}

/// Elements per block of the vectorised evaluations.
const EVAL_CHUNK: usize = 64;

/// `⌈log2(n)⌉` for n ≥ 1.
pub fn ceil_log2(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

/// A composite approximation of `sgn`: `components[k−1] ∘ … ∘ components[0]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositeSign {
    /// The precision target: `|p − sgn| ≤ 2^(1−α)` off `(−ε, ε)`.
    pub alpha: u32,
    /// Half-width of the excluded gap around 0, in the unit domain.
    pub epsilon: f64,
    pub components: Vec<OddChebyshev>,
}

impl CompositeSign {
    pub fn eval(&self, x: f64) -> f64 {
        self.components.iter().fold(x, |v, p| p.eval(v))
    }

    /// [`CompositeSign::eval`] at every value of `xs`, in place (bit-identical).
    pub fn eval_in_place(&self, xs: &mut [f64]) {
        for p in &self.components {
            p.eval_in_place(xs);
        }
    }

    pub fn degrees(&self) -> Vec<usize> {
        self.components.iter().map(OddChebyshev::degree).collect()
    }

    /// Multiplicative depth of the composite: the sum of its components'.
    pub fn depth(&self) -> u32 {
        self.components.iter().map(OddChebyshev::depth).sum()
    }
}

/// ReLU replaced by `x·(1 + p(x/B))/2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApproxRelu {
    /// Inputs are expected in `[−bound, bound]`; outside, the polynomial diverges.
    pub bound: f64,
    pub sign: CompositeSign,
}

impl ApproxRelu {
    pub fn eval(&self, x: f64) -> f64 {
        x * (1.0 + self.sign.eval(x / self.bound)) * 0.5
    }

    /// [`ApproxRelu::eval`] at every value of `data`, in place, rounding
    /// each result to f32 (bit-identical to the scalar path).
    pub fn eval_f32_in_place(&self, data: &mut [f32]) {
        let mut t = [0.0f64; EVAL_CHUNK];
        for chunk in data.chunks_mut(EVAL_CHUNK) {
            let n = chunk.len();
            for (t, &x) in t[..n].iter_mut().zip(chunk.iter()) {
                *t = x as f64 / self.bound;
            }
            self.sign.eval_in_place(&mut t[..n]);
            for (x, &p) in chunk.iter_mut().zip(&t[..n]) {
                let v = *x as f64;
                *x = (v * (1.0 + p) * 0.5) as f32;
            }
        }
    }

    /// Depth: the sign's plus one product with `x`.
    pub fn depth(&self) -> u32 {
        self.sign.depth() + 1
    }

    /// Worst-case absolute error on `[−bound, bound]` promised by the method.
    pub fn error_bound(&self) -> f64 {
        self.bound * 2f64.powi(-(self.sign.alpha as i32))
    }
}

/// Max-pooling replaced by a tree of approximate pairwise maxima.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApproxMaxPool {
    pub pool: Pool2d,
    /// Inputs are expected in `[−bound, bound]`.
    pub bound: f64,
    /// `t = x·input_scale + 1/2` maps every input into `[0, 1]` with the
    /// margin the tree's accumulated error needs.
    pub input_scale: f64,
    pub sign: CompositeSign,
}

impl ApproxMaxPool {
    /// The approximate `max(a, b)` on mapped values.
    pub fn max2(&self, a: f64, b: f64) -> f64 {
        let d = a - b;
        ((a + b) + d * self.sign.eval(d)) * 0.5
    }

    /// Reduces one window of *raw* input values (padding given as `None`).
    pub fn reduce_window(&self, window: impl IntoIterator<Item = Option<f64>>) -> f64 {
        let mapped: Vec<f64> = window
            .into_iter()
            .map(|v| v.map_or(0.0, |x| x * self.input_scale + 0.5))
            .collect();
        let m = tree_reduce(mapped, |a, b| self.max2(a, b));
        (m - 0.5) / self.input_scale
    }

    /// [`ApproxMaxPool::reduce_window`] for many windows at once:
    /// `windows` holds `n` windows of `len` raw values each (row-major,
    /// `None` for padding); the results go to `out[..n]`. Same operations
    /// per window as the scalar path (bit-identical), vectorised across
    /// windows, one tree level at a time.
    pub fn reduce_windows(&self, windows: &[Option<f64>], len: usize, out: &mut [f64]) {
        assert!(len > 0 && windows.len() % len == 0, "whole windows");
        let n = windows.len() / len;
        assert!(out.len() >= n, "output too short");
        // regs[j][w]: register j of window w.
        let mut regs: Vec<Vec<f64>> = (0..len)
            .map(|j| {
                (0..n)
                    .map(|w| windows[w * len + j].map_or(0.0, |x| x * self.input_scale + 0.5))
                    .collect()
            })
            .collect();
        let mut d = vec![0.0f64; n];
        while regs.len() > 1 {
            let mut next = Vec::with_capacity(regs.len().div_ceil(2));
            let mut it = regs.into_iter();
            while let Some(a) = it.next() {
                match it.next() {
                    Some(b) => {
                        for w in 0..n {
                            d[w] = a[w] - b[w];
                        }
                        let mut s = d.clone();
                        self.sign.eval_in_place(&mut s);
                        let m: Vec<f64> = (0..n)
                            .map(|w| ((a[w] + b[w]) + d[w] * s[w]) * 0.5)
                            .collect();
                        next.push(m);
                    }
                    None => next.push(a),
                }
            }
            regs = next;
        }
        for (o, &m) in out.iter_mut().zip(&regs[0]) {
            *o = (m - 0.5) / self.input_scale;
        }
    }

    /// Depth: `⌈log2(window)⌉` levels of maxima, each the sign's depth plus one.
    pub fn depth(&self) -> u32 {
        ceil_log2(self.pool.kernel[0] * self.pool.kernel[1]) * (self.sign.depth() + 1)
    }
}

/// Reduces `items` by a balanced binary tree: each round pairs neighbours
/// `(0,1), (2,3), …` and carries an odd last item up unchanged. This order is
/// part of the IR's semantics (executors and the lowering must agree on it).
pub fn tree_reduce<T>(mut items: Vec<T>, mut f: impl FnMut(T, T) -> T) -> T {
    assert!(!items.is_empty(), "tree_reduce of nothing");
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(b) => next.push(f(a, b)),
                None => next.push(a),
            }
        }
        items = next;
    }
    items.pop().expect("one item")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clenshaw_matches_power_form() {
        // T1 = x, T3 = 4x³ − 3x on [−2, 2].
        let p = OddChebyshev {
            half_width: 2.0,
            coeffs: vec![0.0, 1.5, 0.0, -0.25],
        };
        for i in -20..=20 {
            let x = i as f64 / 10.0;
            let u = x / 2.0;
            let want = 1.5 * u - 0.25 * (4.0 * u * u * u - 3.0 * u);
            assert!((p.eval(x) - want).abs() < 1e-15);
        }
        assert_eq!(p.degree(), 3);
        assert_eq!(p.depth(), 2);
    }

    fn sample_sign() -> CompositeSign {
        CompositeSign {
            alpha: 6,
            epsilon: 0.1,
            components: vec![
                OddChebyshev {
                    half_width: 1.0,
                    coeffs: vec![0.0, 1.27, 0.0, -0.42, 0.0, 0.25, 0.0, -0.17],
                },
                OddChebyshev {
                    half_width: 1.3,
                    coeffs: vec![0.0, 1.1, 0.0, -0.3, 0.0, 0.1],
                },
            ],
        }
    }

    #[test]
    fn vectorised_paths_are_bit_identical() {
        let relu = ApproxRelu {
            bound: 3.5,
            sign: sample_sign(),
        };
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.0071).collect();
        let mut ys = xs.clone();
        relu.eval_f32_in_place(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), (relu.eval(*x as f64) as f32).to_bits());
        }
        let pool = ApproxMaxPool {
            pool: Pool2d {
                kernel: [3, 3],
                stride: [2, 2],
                pads: crate::Pads2d::default(),
            },
            bound: 2.0,
            input_scale: 0.24,
            sign: sample_sign(),
        };
        let windows: Vec<Option<f64>> = (0..9 * 37)
            .map(|i| (i % 7 != 3).then(|| ((i * 37 % 101) as f64 - 50.0) / 26.0))
            .collect();
        let mut out = vec![0.0; 37];
        pool.reduce_windows(&windows, 9, &mut out);
        for (w, o) in out.iter().enumerate() {
            let want = pool.reduce_window(windows[w * 9..(w + 1) * 9].iter().copied());
            assert_eq!(o.to_bits(), want.to_bits());
        }
    }

    #[test]
    fn ceil_log2_values() {
        let got: Vec<u32> = [1, 2, 3, 4, 5, 8, 9, 16, 28, 30].map(ceil_log2).to_vec();
        assert_eq!(got, vec![0, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn tree_order_is_balanced_pairs() {
        let s = tree_reduce((0..5).map(|i| i.to_string()).collect(), |a, b| {
            format!("({a}{b})")
        });
        assert_eq!(s, "(((01)(23))4)");
    }

    #[test]
    fn exact_sign_gives_exact_relu_and_max() {
        // A "composite" whose single component is the identity scaled so that
        // values at ±1 map to ±1: with inputs exactly ±1 it is sgn.
        let sign = CompositeSign {
            alpha: 10,
            epsilon: 1.0,
            components: vec![OddChebyshev {
                half_width: 1.0,
                coeffs: vec![0.0, 1.0],
            }],
        };
        let relu = ApproxRelu {
            bound: 4.0,
            sign: sign.clone(),
        };
        assert_eq!(relu.eval(4.0), 4.0);
        assert_eq!(relu.eval(-4.0), 0.0);
        assert_eq!(relu.depth(), 2);
    }
}

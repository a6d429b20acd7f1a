//! Polynomial stand-ins for ReLU and max-pooling (Lee et al. 2023).
//!
//! `sgn(x)` on `[−1,−ε]∪[ε,1]` is approximated by a composite of odd
//! polynomials `p = p_k∘…∘p_1`, each stored in the Chebyshev basis on its own
//! symmetric interval. From it:
//! - ReLU on `[−B, B]`: `relu(x) ≈ x·(1 + p(x/B))/2` (= `B·r_α(x/B)`),
//!   error ≤ `B·2^−α`.
//! - `max(a, b) ≈ ((a+b) + (a−b)·p(a−b))/2` for `a, b ∈ [0, 1]`.
//! - K×K max-pooling: every window value is mapped into `[0, 1]` by
//!   `t = x·input_scale + 1/2`, each row of the window is reduced by a
//!   balanced tree of approximate maxima ([`tree_reduce`]), then the row
//!   results the same way, and the result mapped back by
//!   `(m − 1/2)/input_scale`. Padding is `t = 0` (below every mapped input),
//!   not −∞. Reducing rows first keeps every round a single shift of the
//!   whole packed tensor under encryption; for 2×2 and 3×3 windows it takes
//!   as many rounds (`⌈log2 K²⌉`) as one tree over the window would.
//!
//! Polynomials are evaluated by their plans ([`crate::poly`]), the same
//! programs the lowering emits as ciphertext operations.
//!
//! These definitions are the single source of truth for every executor and
//! for the lowering; the compiler only chooses the coefficients and bounds.

use serde::{Deserialize, Serialize};

use crate::op::Pool2d;
use crate::poly::{OddChebyshev, Plan};

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

/// The evaluation plans of a [`CompositeSign`], one per component, with the
/// component's half-width (its input is divided by it first).
#[derive(Clone, Debug, PartialEq)]
pub struct CompositePlan {
    pub stages: Vec<(f64, Plan)>,
}

impl CompositePlan {
    pub fn eval(&self, x: f64) -> f64 {
        self.stages
            .iter()
            .fold(x, |v, (hw, plan)| plan.eval(v / hw))
    }

    /// [`CompositePlan::eval`] at every value of `xs`, in place (bit-identical).
    pub fn eval_in_place(&self, xs: &mut [f64]) {
        for (hw, plan) in &self.stages {
            if *hw != 1.0 {
                for x in xs.iter_mut() {
                    *x /= hw;
                }
            }
            plan.eval_in_place(xs);
        }
    }

    /// Multiplicative depth: the sum of the stages' plan depths.
    pub fn depth(&self) -> usize {
        self.stages.iter().map(|(_, p)| p.depth).sum()
    }
}

impl CompositeSign {
    /// The plans the executors and the lowering evaluate.
    pub fn plan(&self) -> CompositePlan {
        CompositePlan {
            stages: self
                .components
                .iter()
                .map(|c| (c.half_width, c.plan()))
                .collect(),
        }
    }

    /// `p(x)` (plans anew on every call: use [`CompositeSign::plan`] for many values).
    pub fn eval(&self, x: f64) -> f64 {
        self.plan().eval(x)
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
    /// `x·(1 + p(x/B))/2` with the sign's plan `plan`.
    pub fn eval_with(&self, plan: &CompositePlan, x: f64) -> f64 {
        x * (1.0 + plan.eval(x / self.bound)) * 0.5
    }

    /// [`ApproxRelu::eval_with`] for one value (plans anew).
    pub fn eval(&self, x: f64) -> f64 {
        self.eval_with(&self.sign.plan(), x)
    }

    /// [`ApproxRelu::eval_with`] at every value of `data`, in place, rounding
    /// each result to f32 (bit-identical to the scalar path).
    pub fn eval_f32_in_place(&self, plan: &CompositePlan, data: &mut [f32]) {
        let mut t = [0.0f64; EVAL_CHUNK];
        for chunk in data.chunks_mut(EVAL_CHUNK) {
            let n = chunk.len();
            for (t, &x) in t[..n].iter_mut().zip(chunk.iter()) {
                *t = x as f64 / self.bound;
            }
            plan.eval_in_place(&mut t[..n]);
            for (x, &p) in chunk.iter_mut().zip(&t[..n]) {
                let v = *x as f64;
                *x = (v * (1.0 + p) * 0.5) as f32;
            }
        }
    }

    /// Depth: the sign's plus one product with `x`. The division by `B` is
    /// free under encryption (the lowering folds it into the ciphertext's
    /// scale), so it costs no level.
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
    pub fn max2(plan: &CompositePlan, a: f64, b: f64) -> f64 {
        let d = a - b;
        ((a + b) + d * plan.eval(d)) * 0.5
    }

    /// Reduces one window of *raw* input values (row-major, `kh·kw` values,
    /// padding given as `None`): each row by [`tree_reduce`], then the row
    /// results by [`tree_reduce`].
    pub fn reduce_window(
        &self,
        plan: &CompositePlan,
        window: impl IntoIterator<Item = Option<f64>>,
    ) -> f64 {
        let mapped: Vec<f64> = window
            .into_iter()
            .map(|v| v.map_or(0.0, |x| x * self.input_scale + 0.5))
            .collect();
        let kw = self.pool.kernel[1];
        assert_eq!(mapped.len(), self.pool.kernel[0] * kw, "window size");
        let rows: Vec<f64> = mapped
            .chunks(kw)
            .map(|r| tree_reduce(r.to_vec(), |a, b| Self::max2(plan, a, b)))
            .collect();
        let m = tree_reduce(rows, |a, b| Self::max2(plan, a, b));
        (m - 0.5) / self.input_scale
    }

    /// [`ApproxMaxPool::reduce_window`] for many windows at once:
    /// `windows` holds `n` windows of `kh·kw` raw values each (row-major,
    /// `None` for padding); the results go to `out[..n]`. Same operations
    /// per window as the scalar path (bit-identical), vectorised across
    /// windows, one tree level at a time.
    pub fn reduce_windows(&self, plan: &CompositePlan, windows: &[Option<f64>], out: &mut [f64]) {
        let [kh, kw] = self.pool.kernel;
        let len = kh * kw;
        assert!(len > 0 && windows.len() % len == 0, "whole windows");
        let n = windows.len() / len;
        assert!(out.len() >= n, "output too short");
        // regs[j][w]: window value j of window w.
        let regs: Vec<Vec<f64>> = (0..len)
            .map(|j| {
                (0..n)
                    .map(|w| windows[w * len + j].map_or(0.0, |x| x * self.input_scale + 0.5))
                    .collect()
            })
            .collect();
        let reduce = |items: Vec<Vec<f64>>| {
            tree_reduce(items, |a, b| {
                let d: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a - b).collect();
                let mut s = d.clone();
                plan.eval_in_place(&mut s);
                (0..n)
                    .map(|w| ((a[w] + b[w]) + d[w] * s[w]) * 0.5)
                    .collect()
            })
        };
        let mut it = regs.into_iter();
        let rows: Vec<Vec<f64>> = (0..kh)
            .map(|_| reduce(it.by_ref().take(kw).collect()))
            .collect();
        let m = reduce(rows);
        for (o, &m) in out.iter_mut().zip(&m) {
            *o = (m - 0.5) / self.input_scale;
        }
    }

    /// Rounds of pairwise maxima a window takes: `⌈log2 kw⌉ + ⌈log2 kh⌉`.
    pub fn rounds(&self) -> u32 {
        pool_rounds(self.pool.kernel)
    }

    /// Depth: each round is the sign's depth plus one product; the input map
    /// and its inverse are free under encryption (folded into the scale and
    /// an addition of a constant).
    pub fn depth(&self) -> u32 {
        self.rounds() * (self.sign.depth() + 1)
    }
}

/// Rounds of pairwise maxima for a `kh×kw` window reduced row by row, then
/// across rows: `⌈log2 kw⌉ + ⌈log2 kh⌉`.
pub fn pool_rounds(kernel: [usize; 2]) -> u32 {
    ceil_log2(kernel[0]) + ceil_log2(kernel[1])
}

/// Elements per block of the vectorised evaluations.
const EVAL_CHUNK: usize = 64;

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
    fn plan_matches_power_form() {
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
        relu.eval_f32_in_place(&relu.sign.plan(), &mut ys);
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
        let plan = pool.sign.plan();
        pool.reduce_windows(&plan, &windows, &mut out);
        for (w, o) in out.iter().enumerate() {
            let want = pool.reduce_window(&plan, windows[w * 9..(w + 1) * 9].iter().copied());
            assert_eq!(o.to_bits(), want.to_bits());
        }
        assert_eq!(pool.rounds(), 4);
    }

    #[test]
    fn windows_reduce_rows_first() {
        // With the exact sign on differences of ±1 and 0 the maxima are
        // exact: check the order on a window whose row-first and
        // pairs-over-the-window trees differ only in order, via a sign that
        // records its calls.
        let sign = CompositeSign {
            alpha: 10,
            epsilon: 1.0,
            components: vec![OddChebyshev {
                half_width: 1.0,
                coeffs: vec![0.0, 1.0],
            }],
        };
        let pool = ApproxMaxPool {
            pool: Pool2d {
                kernel: [2, 3],
                stride: [1, 1],
                pads: crate::Pads2d::default(),
            },
            bound: 1.0,
            input_scale: 0.5,
            sign,
        };
        // The identity "sign" gives max2(a, b) = (a + b + (a − b)²)/2, so
        // the result depends on the order of the tree.
        let plan = pool.sign.plan();
        let m = |a: f64, b: f64| ApproxMaxPool::max2(&plan, a, b);
        let v = [0.1, -0.3, 0.7, 0.2, 0.9, -0.5];
        let t: Vec<f64> = v.iter().map(|x| x * 0.5 + 0.5).collect();
        let rows = [m(m(t[0], t[1]), t[2]), m(m(t[3], t[4]), t[5])];
        let want = (m(rows[0], rows[1]) - 0.5) / 0.5;
        let got = pool.reduce_window(&plan, v.iter().map(|&x| Some(x)));
        assert_eq!(got.to_bits(), want.to_bits());
        assert_eq!(pool.rounds(), 3);
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

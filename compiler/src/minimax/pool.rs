//! Approximate `max(a, b)` and `K×K` max-pooling trees.
//!
//! `max(a, b) ≈ ((a + b) + (a − b)·p(a − b))/2 = b + r_α(a − b)`, so for
//! `|a − b| ≤ 1` its error is the ReLU error `e ≤ 2^−α`.
//!
//! Max-pooling maps the window's inputs `x ∈ [−B, B]` to
//! `u = s·x + 1/2`, `s = (1 − m·2^−α)/(2B)`, so the `u` lie in an interval of
//! width `1 − m·2^−α` inside `[0, 1]`; balanced trees of pairwise maxima
//! follow, over each row of the window and then over the row results (the
//! IR's order, [`ir::ApproxMaxPool::reduce_window`]), `L = 2·⌈log2 K⌉` levels
//! in all (`⌈log2 K²⌉` for K = 2, 3, 4), and the inverse map `x = (u − 1/2)/s` after.
//! The inputs of level `j` carry errors `≤ (j − 1)·e`, so every difference the
//! tree forms is at most `1 − m·2^−α + 2(L − 1)·e ≤ 1` when `m ≥ 2(L − 1)`
//! (with `e ≤ 2^−α`): the polynomial is never evaluated outside `[−1, 1]`.
//! The margins are `m = 4` for 2×2 and `m = 6` for 3×3 as published, and
//! `max(4, 2(L − 1))` in general. The result has error `≤ L·e` in `u`, i.e.
//! `≤ L·e/s = 2B·L·e/(1 − m·2^−α)` in `x`.
//!
//! Padding: a padded position holds `u = 0` (zero after the shift, not −∞),
//! which is below every real input and keeps differences within `[−1, 1]`.

use super::approx::ReluApprox;
use super::dd::pow2;
use serde::{Deserialize, Serialize};

/// `max(a, b)` from a ReLU approximation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxApprox {
    /// The ReLU approximation (`max(a, b) = b + r(a − b)`).
    pub relu: ReluApprox,
}

impl MaxApprox {
    /// Approximate `max(a, b)` for `|a − b| ≤ 1`.
    pub fn eval(&self, a: f64, b: f64) -> f64 {
        let t = a - b;
        0.5 * ((a + b) + t * self.relu.sign.eval(t))
    }

    /// Certified `|eval(a, b) − max(a, b)|` for `|a − b| ≤ 1`.
    pub fn error(&self) -> f64 {
        self.relu.error
    }

    /// Depth of one approximate max.
    pub fn depth(&self) -> usize {
        self.relu.depth
    }

    /// Non-scalar multiplications of one approximate max.
    pub fn mults(&self) -> usize {
        self.relu.mults
    }
}

/// A `K×K` max-pooling tree with its input map and error bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxPoolApprox {
    /// Window side `K`.
    pub k: usize,
    /// Input bound `B`: inputs lie in `[−B, B]`.
    pub bound: f64,
    /// Margin `m` in units of `2^−α`.
    pub margin: f64,
    /// Input map `u = scale·x + offset`.
    pub scale: f64,
    /// Input map offset (1/2).
    pub offset: f64,
    /// Value of a padded position after the map.
    pub pad: f64,
    /// Pairwise maxima in order: registers `0..K²` are the window (row-major),
    /// pair `i` writes register `K² + i`; the last register is the result.
    /// Each row is reduced first, then the rows' results.
    pub tree: Vec<[usize; 2]>,
    /// Levels of approximate max `L = 2·⌈log2 K⌉`.
    pub levels: usize,
    /// Multiplicative depth: `levels × max depth`.
    pub depth: usize,
    /// Non-scalar multiplications per window.
    pub mults: usize,
    /// Certified error of the result, in `x` units: `2B·L·e/(1 − m·2^−α)`.
    pub error_bound: f64,
    /// The approximate max used at every node.
    pub max: MaxApprox,
}

/// Margin `m` for a `K×K` window (units of `2^−α`).
pub fn pool_margin(k: usize) -> f64 {
    window_margin([k, k])
}

/// Margin `m` for a `kh×kw` window, units of `2^−α`: 4 for 2×2, 6 for 3×3,
/// two per level of maxima beyond the first ([`ir::pool_rounds`] levels).
pub fn window_margin(kernel: [usize; 2]) -> f64 {
    let levels = ir::pool_rounds(kernel) as usize;
    (2 * levels.saturating_sub(1)).max(4) as f64
}

/// Builds the `K×K` max-pooling approximation for inputs in `[−B, B]`.
pub fn max_pool(relu: &ReluApprox, k: usize, bound: f64) -> MaxPoolApprox {
    assert!(k >= 1 && bound > 0.0, "window side ≥ 1 and bound > 0");
    let unit = pow2(-(relu.alpha as i32));
    let margin = pool_margin(k);
    let scale = (1.0 - margin * unit) / (2.0 * bound);
    let mut tree = Vec::new();
    let mut next_reg = k * k;
    let mut reduce = |mut level: Vec<usize>, tree: &mut Vec<[usize; 2]>| {
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            for pair in level.chunks(2) {
                if let [a, b] = pair {
                    tree.push([*a, *b]);
                    next.push(next_reg);
                    next_reg += 1;
                } else {
                    next.push(pair[0]);
                }
            }
            level = next;
        }
        level[0]
    };
    let rows: Vec<usize> = (0..k)
        .map(|r| reduce((r * k..(r + 1) * k).collect(), &mut tree))
        .collect();
    reduce(rows, &mut tree);
    let levels = ir::pool_rounds([k, k]) as usize;
    let max = MaxApprox { relu: relu.clone() };
    MaxPoolApprox {
        k,
        bound,
        margin,
        scale,
        offset: 0.5,
        pad: 0.0,
        levels,
        depth: levels * max.depth(),
        mults: tree.len() * max.mults(),
        error_bound: levels as f64 * relu.error / scale,
        tree,
        max,
    }
}

impl MaxPoolApprox {
    /// Approximate max of a window (`K²` values, row-major; `None` = padding).
    /// Returns the result and the largest `|a − b|` the tree formed.
    pub fn eval(&self, window: &[Option<f64>]) -> (f64, f64) {
        assert_eq!(window.len(), self.k * self.k, "window size");
        let mut regs: Vec<f64> = window
            .iter()
            .map(|v| v.map_or(self.pad, |x| self.scale * x + self.offset))
            .collect();
        let mut widest: f64 = 0.0;
        for &[a, b] in &self.tree {
            widest = widest.max((regs[a] - regs[b]).abs());
            regs.push(self.max.eval(regs[a], regs[b]));
        }
        let u = *regs.last().expect("non-empty window");
        ((u - self.offset) / self.scale, widest)
    }
}

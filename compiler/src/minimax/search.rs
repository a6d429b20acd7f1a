//! Optimal degree search (Lee, Lee, No, Kim, IEEE TDSC): which odd degrees
//! `d_1, …, d_k` to compose so that `p_k∘…∘p_1` brings the gap `[ε, 1]` to
//! error `δ`, at minimum depth then minimum non-scalar multiplications, or at
//! minimum multiplications then minimum depth.
//!
//! A minimax stage of degree `d` on the normalised interval `[ε, 1]` has
//! error `τ_d(ε)`; its image `[1−τ, 1+τ]`, normalised, is the next gap
//! `F_d(ε) = (1−τ)/(1+τ)`. The final error is `≤ δ` exactly when the last gap
//! reaches `T = (1−δ)/(1+δ)`. `F_d` is increasing in `ε` and in `d`, so the
//! dynamic programme
//!
//! `best(m, n) = max( best(m−1, n), best(m, n−1),
//!                    max_d F_d(best(m − mult(d), n − depth(d))) )`,
//!
//! with `best(·, ·) ≥ ε`, the widest gap reachable with `m` multiplications
//! within depth `n`, is exact (the recursion of the TDSC paper run forwards
//! from the known input gap, so `F_d` needs no inversion). Every `F_d` value
//! is one Remez run, memoised on the exact input; each batch of new runs is
//! spread over threads and gathered in a fixed order, so results do not
//! depend on scheduling.
//!
//! The search evaluates `F_d` with the Remez exchange in `f64` (spread
//! `< 1e-11`; `τ` agrees with double-double to `1e-9·τ + 1e-14`, tested): thousands of runs are needed, and `f64` is ten times
//! faster. Only the comparison of alternatives relies on it; the chosen
//! composite is then rebuilt in double-double and certified independently
//! ([`super::approx`]).

use super::remez::{minimax_sign, RemezError, RemezOptions};
use ir::poly::plan_cost;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the search minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Minimum depth, then minimum non-scalar multiplications (the paper's).
    MinDepth,
    /// Minimum non-scalar multiplications, then minimum depth.
    MinMults,
}

/// A degree the search may use, with its evaluation cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Odd degree.
    pub degree: usize,
    /// Non-scalar multiplications of its plan.
    pub mults: usize,
    /// Depth of its plan.
    pub depth: usize,
}

/// Odd degrees `3..=max_degree` that are not dominated (another degree at
/// least as high with no more multiplications and no more depth).
pub fn candidates(max_degree: usize) -> Vec<Candidate> {
    let all: Vec<Candidate> = (3..=max_degree)
        .step_by(2)
        .map(|d| {
            let (mults, depth) = plan_cost(d);
            Candidate {
                degree: d,
                mults,
                depth,
            }
        })
        .collect();
    all.iter()
        .filter(|c| {
            !all.iter()
                .any(|o| o.degree > c.degree && o.mults <= c.mults && o.depth <= c.depth)
        })
        .copied()
        .collect()
}

/// Outcome of a degree search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DegreeSearch {
    /// Degrees in application order (`p_1` first).
    pub degrees: Vec<usize>,
    /// Total non-scalar multiplications.
    pub mults: usize,
    /// Total depth.
    pub depth: usize,
    /// Distinct Remez problems solved.
    pub remez_calls: usize,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A Remez run failed.
    #[error(transparent)]
    Remez(#[from] RemezError),
    /// The target is not reachable within the caps.
    #[error("no composite within depth {depth} reaches error {delta:e} from gap {eps:e}")]
    Unreachable { eps: f64, delta: f64, depth: usize },
    /// Bad arguments.
    #[error("invalid search: {0}")]
    Invalid(String),
}

/// Memoised `F_d`.
#[derive(Default)]
pub struct GapMap {
    opts: RemezOptions,
    memo: HashMap<(usize, u64), f64>,
}

impl GapMap {
    /// New map with the given Remez options.
    pub fn new(opts: RemezOptions) -> Self {
        GapMap {
            opts,
            memo: HashMap::new(),
        }
    }

    /// Distinct Remez problems solved so far.
    pub fn calls(&self) -> usize {
        self.memo.len()
    }

    /// Solves every not-yet-known `(d, ε)` in parallel, in a fixed order.
    fn ensure(&mut self, mut reqs: Vec<(usize, f64)>) -> Result<(), RemezError> {
        reqs.retain(|&(d, e)| !self.memo.contains_key(&(d, e.to_bits())));
        reqs.sort_by_key(|a| (a.0, a.1.to_bits()));
        reqs.dedup_by(|a, b| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
        let opts = self.opts;
        let out: Vec<Result<f64, RemezError>> = reqs
            .par_iter()
            .map(|&(d, e)| next_gap(d, e, &opts))
            .collect();
        for ((d, e), r) in reqs.into_iter().zip(out) {
            self.memo.insert((d, e.to_bits()), r?);
        }
        Ok(())
    }

    fn get(&self, d: usize, e: f64) -> f64 {
        self.memo[&(d, e.to_bits())]
    }
}

/// `F_d(ε)`: the normalised gap after a degree-`d` minimax stage on `[ε, 1]`.
pub fn next_gap(d: usize, eps: f64, opts: &RemezOptions) -> Result<f64, RemezError> {
    let m = minimax_sign(d, eps, 1.0, opts)?;
    Ok((1.0 - m.error) / (1.0 + m.error))
}

#[derive(Clone, Copy)]
enum Parent {
    Start,
    Left,
    Down,
    Apply(usize, usize, usize),
}

/// Largest depth the searches consider.
pub const MAX_DEPTH: usize = 200;

/// Finds the optimal degree sequence taking `[eps, 1]` to error `≤ delta`.
pub fn search(
    eps: f64,
    delta: f64,
    objective: Objective,
    max_degree: usize,
    gaps: &mut GapMap,
) -> Result<DegreeSearch, SearchError> {
    if !(eps > 0.0 && eps < 1.0 && delta > 0.0 && delta < 1.0) {
        return Err(SearchError::Invalid(format!(
            "gap {eps} and error {delta} must lie in (0, 1)"
        )));
    }
    if max_degree < 3 || max_degree % 2 == 0 {
        return Err(SearchError::Invalid(format!(
            "maximum degree {max_degree} must be odd and ≥ 3"
        )));
    }
    let cands = candidates(max_degree);
    let target = (1.0 - delta) / (1.0 + delta);
    if eps >= target {
        return Ok(DegreeSearch {
            degrees: vec![],
            mults: 0,
            depth: 0,
            remez_calls: 0,
        });
    }
    // Minimum depth: with multiplications free, the highest degree of each
    // depth class dominates.
    let mut tops: Vec<Candidate> = Vec::new();
    for c in &cands {
        match tops.iter_mut().find(|t| t.depth == c.depth) {
            Some(t) if t.degree < c.degree => *t = *c,
            Some(_) => {}
            None => tops.push(*c),
        }
    }
    let mut reach = vec![eps];
    let min_depth = loop {
        let n = reach.len();
        if n > MAX_DEPTH {
            return Err(SearchError::Unreachable {
                eps,
                delta,
                depth: MAX_DEPTH,
            });
        }
        let reqs: Vec<(usize, f64)> = tops
            .iter()
            .filter(|t| t.depth <= n)
            .map(|t| (t.degree, reach[n - t.depth]))
            .collect();
        gaps.ensure(reqs.clone())?;
        let mut b = reach[n - 1];
        for (d, e) in reqs {
            b = b.max(gaps.get(d, e));
        }
        reach.push(b);
        if b >= target {
            break n;
        }
    };
    let depth_cap = match objective {
        Objective::MinDepth => min_depth,
        // A composite with no more multiplications than the minimum-depth
        // one, M_d, has depth at most M_d·max(depth/mults) over the
        // candidates (≤ M_d: every plan has mults ≥ depth), so that cap loses
        // nothing and the result is the true minimum.
        Objective::MinMults => {
            let md = search(eps, delta, Objective::MinDepth, max_degree, gaps)?.mults;
            let ratio = cands
                .iter()
                .map(|c| c.depth.div_ceil(c.mults))
                .max()
                .unwrap_or(1);
            (md * ratio).min(MAX_DEPTH)
        }
    };
    let cols = depth_cap + 1;
    let mut best: Vec<Vec<f64>> = Vec::new();
    let mut parent: Vec<Vec<Parent>> = Vec::new();
    let max_mults = cands.iter().map(|c| c.mults).max().unwrap_or(1) * (depth_cap + 1);
    for m in 0..=max_mults {
        let reqs: Vec<(usize, f64)> = (0..cols)
            .flat_map(|n| {
                let best = &best;
                cands
                    .iter()
                    .filter(move |c| c.mults <= m && c.depth <= n)
                    .map(move |c| (c.degree, best[m - c.mults][n - c.depth]))
            })
            .collect();
        gaps.ensure(reqs)?;
        let mut col = Vec::with_capacity(cols);
        let mut par = Vec::with_capacity(cols);
        for n in 0..cols {
            let (mut v, mut p) = (eps, Parent::Start);
            if m > 0 && best[m - 1][n] > v {
                (v, p) = (best[m - 1][n], Parent::Left);
            }
            if n > 0 && col[n - 1] > v {
                (v, p) = (col[n - 1], Parent::Down);
            }
            for c in cands.iter().filter(|c| c.mults <= m && c.depth <= n) {
                let (pm, pn) = (m - c.mults, n - c.depth);
                let g = gaps.get(c.degree, best[pm][pn]);
                if g > v {
                    (v, p) = (g, Parent::Apply(c.degree, pm, pn));
                }
            }
            col.push(v);
            par.push(p);
        }
        best.push(col);
        parent.push(par);
        if best[m][depth_cap] >= target {
            let n_best = (0..cols).find(|&n| best[m][n] >= target).expect("reached");
            // Walk back.
            let (mut i, mut j) = (m, n_best);
            let mut degrees = Vec::new();
            loop {
                match parent[i][j] {
                    Parent::Start => break,
                    Parent::Left => i -= 1,
                    Parent::Down => j -= 1,
                    Parent::Apply(d, pi, pj) => {
                        degrees.push(d);
                        (i, j) = (pi, pj);
                    }
                }
            }
            degrees.reverse();
            let (mults, depth) = degrees.iter().fold((0, 0), |(a, b), &d| {
                let (x, y) = plan_cost(d);
                (a + x, b + y)
            });
            return Ok(DegreeSearch {
                degrees,
                mults,
                depth,
                remez_calls: gaps.calls(),
            });
        }
    }
    Err(SearchError::Unreachable {
        eps,
        delta,
        depth: depth_cap,
    })
}

//! Odd polynomials in the Chebyshev basis and their evaluation plans.
//!
//! This is the one place that knows how an odd polynomial is evaluated:
//! [`OddChebyshev`] is the representation every stage uses (the minimax
//! engine emits it, the IR stores it), and [`plan_odd`] is the one planner.
//! A [`Plan`] is a straight-line program over registers; the cleartext
//! executors run it in f64 ([`Plan::eval`], [`Plan::eval_in_place`]) and the
//! lowering turns the same steps into ciphertext operations, so the
//! approximated model the reference executor computes and the circuit the
//! backends run perform the same arithmetic.
//!
//! Cost model (CKKS): the input `u` is at depth 0; a non-scalar product and
//! a multiplication by a non-integer constant each consume one level;
//! additions and multiplications by small integers are free.
//!
//! Structure: *giant steps* `T_2, T_4, …, T_{2^K}` (`T_{2k} = 2T_k² − 1`);
//! *baby steps* the odd `T_i`, `3 ≤ i < 2^l`
//! (`T_i = 2·T_{2^j}·T_{i−2^j} − T_{2^{j+1}−i}`, depth `⌈log2 i⌉`).
//! A polynomial is either a *leaf* — a scalar combination of baby steps,
//! depth one more than its highest baby step — or is split by Chebyshev
//! division `p = q·T_{2^k} + r` (`deg r < 2^k`; `q`, `r` stay odd), costing
//! one product, with `q` one level shallower. The split tree is chosen by a
//! dynamic programme that minimises products under the depth bound
//! `⌈log2(d+1)⌉`, and `(l, K)` by enumeration; the count reported is that of
//! the plan actually emitted. A leaf `a·T_1` costs one level only, so
//! `(a·u)·T_2` reaches depth 2 like `T_3` itself: the plans are depth-optimal.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An odd polynomial `p(x) = Σ_k c_k·T_k(x / half_width)` (even `c_k` are 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OddChebyshev {
    /// The polynomial is defined for `x ∈ [−half_width, half_width]`.
    pub half_width: f64,
    /// Chebyshev coefficients `c_0..=c_d`.
    pub coeffs: Vec<f64>,
}

impl OddChebyshev {
    /// From the coefficients of `T_1, T_3, …` on `[−1, 1]`.
    pub fn from_odd(odd: &[f64]) -> Self {
        let mut coeffs = vec![0.0; 2 * odd.len().max(1)];
        for (j, &v) in odd.iter().enumerate() {
            coeffs[2 * j + 1] = v;
        }
        OddChebyshev {
            half_width: 1.0,
            coeffs,
        }
    }

    pub fn degree(&self) -> usize {
        self.coeffs.len().saturating_sub(1)
    }

    /// The coefficients of `T_1, T_3, …, T_d`.
    pub fn odd_coeffs(&self) -> Vec<f64> {
        self.coeffs.iter().skip(1).step_by(2).copied().collect()
    }

    /// Multiplicative depth of an optimal evaluation: `⌈log2(d+1)⌉`.
    pub fn depth(&self) -> u32 {
        optimal_depth(self.degree()) as u32
    }

    /// The evaluation plan (input in the unit domain `u = x / half_width`).
    pub fn plan(&self) -> Plan {
        plan_odd(&self.odd_coeffs())
    }

    /// `p(x)` by [`OddChebyshev::plan`] (plans it anew: use the plan itself
    /// for many values).
    pub fn eval(&self, x: f64) -> f64 {
        self.plan().eval(x / self.half_width)
    }
}

/// One instruction; instruction `i` writes register `i + 1`, register 0 is
/// the input `u`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Chebyshev product rule `T_index = 2·a·b − c` (`c = None`: the
    /// constant 1). One non-scalar multiplication.
    Chebyshev {
        index: usize,
        a: usize,
        b: usize,
        c: Option<usize>,
    },
    /// `Σ coeff·reg`: scalar multiplications, one level.
    Linear { terms: Vec<(usize, f64)> },
    /// Non-scalar product `a·b`.
    Mul { a: usize, b: usize },
    /// Sum `a + b`.
    Add { a: usize, b: usize },
}

/// A straight-line program evaluating one odd polynomial of `u ∈ [−1, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Degree of the polynomial.
    pub degree: usize,
    /// Instructions in order.
    pub steps: Vec<Step>,
    /// Register holding `p(u)`.
    pub output: usize,
    /// Non-scalar multiplications.
    pub mults: usize,
    /// Multiplicative depth (levels consumed).
    pub depth: usize,
    /// Baby steps are the odd `T_i` with `i < 2^baby_log`.
    pub baby_log: u32,
    /// Largest giant step allowed is `T_{2^giant_log}`.
    pub giant_log: u32,
}

/// Minimal depth of a degree-`d` polynomial: `⌈log2(d+1)⌉`.
pub fn optimal_depth(d: usize) -> usize {
    (usize::BITS - d.leading_zeros()) as usize
}

fn ceil_log2(i: usize) -> usize {
    if i <= 1 {
        0
    } else {
        (usize::BITS - (i - 1).leading_zeros()) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum Choice {
    Leaf,
    Split(u32),
}

/// Split-tree optimiser for one `(l, K)`.
struct TreeOpt {
    l: u32,
    k: u32,
    memo: HashMap<(usize, usize), Option<(usize, Choice)>>,
}

impl TreeOpt {
    /// Fewest products for a generic odd polynomial of degree `e` within
    /// depth `depth`, and the top-level choice.
    fn best(&mut self, e: usize, depth: usize) -> Option<(usize, Choice)> {
        if let Some(&v) = self.memo.get(&(e, depth)) {
            return v;
        }
        let mut out: Option<(usize, Choice)> = None;
        if e < (1usize << self.l) && ceil_log2(e) < depth {
            out = Some((0, Choice::Leaf));
        }
        for k in 1..=self.k {
            let n = 1usize << k;
            if n > e || (k as usize) >= depth {
                continue;
            }
            let (Some((cq, _)), Some((cr, _))) =
                (self.best(e - n, depth - 1), self.best(e.min(n - 1), depth))
            else {
                continue;
            };
            let c = 1 + cq + cr;
            if out.is_none_or(|(b, _)| c < b) {
                out = Some((c, Choice::Split(k)));
            }
        }
        self.memo.insert((e, depth), out);
        out
    }
}

/// Emits instructions while tracking registers, depths and shared `T_i`.
struct Builder {
    steps: Vec<Step>,
    depth: Vec<usize>,
    cheb: HashMap<usize, usize>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            steps: Vec::new(),
            depth: vec![0],
            cheb: HashMap::from([(1, 0)]),
        }
    }

    fn push(&mut self, s: Step) -> usize {
        let d = match &s {
            Step::Chebyshev { a, b, .. } | Step::Mul { a, b } => {
                self.depth[*a].max(self.depth[*b]) + 1
            }
            Step::Linear { terms } => {
                terms.iter().map(|&(r, _)| self.depth[r]).max().unwrap_or(0) + 1
            }
            Step::Add { a, b } => self.depth[*a].max(self.depth[*b]),
        };
        self.steps.push(s);
        self.depth.push(d);
        self.steps.len()
    }

    /// Register of `T_i` (a power of two or an odd index), created on demand.
    fn t(&mut self, i: usize) -> usize {
        if let Some(&r) = self.cheb.get(&i) {
            return r;
        }
        let reg = if i.is_power_of_two() {
            let h = self.t(i / 2);
            self.push(Step::Chebyshev {
                index: i,
                a: h,
                b: h,
                c: None,
            })
        } else {
            let j = 1usize << (usize::BITS - 1 - i.leading_zeros());
            let p = self.t(j);
            let o = self.t(i - j);
            let s = self.t(2 * j - i);
            self.push(Step::Chebyshev {
                index: i,
                a: p,
                b: o,
                c: Some(s),
            })
        };
        self.cheb.insert(i, reg);
        reg
    }

    /// Emits the evaluation of `Σ c[i]·T_i` (odd `i ≤ e`, `c` indexed by
    /// degree) within `depth`.
    fn poly(&mut self, opt: &mut TreeOpt, c: &[f64], e: usize, depth: usize) -> usize {
        let (_, choice) = opt.best(e, depth).expect("feasible sub-problem");
        match choice {
            Choice::Leaf => {
                let terms: Vec<(usize, f64)> = (1..=e)
                    .step_by(2)
                    .map(|i| (self.t(i), c.get(i).copied().unwrap_or(0.0)))
                    .collect();
                self.push(Step::Linear { terms })
            }
            Choice::Split(k) => {
                let n = 1usize << k;
                let (q, r) = cheb_divide(c, e, n);
                let giant = self.t(n);
                let rq = self.poly(opt, &q, e - n, depth - 1);
                let prod = self.push(Step::Mul { a: rq, b: giant });
                let rr = self.poly(opt, &r, e.min(n - 1), depth);
                self.push(Step::Add { a: prod, b: rr })
            }
        }
    }
}

/// Chebyshev division of `Σ_{i ≤ e} c[i]·T_i` by `T_n`: `(q, r)` with
/// `p = q·T_n + r`, `deg r < n`. Uses `T_i = 2·T_{i−n}·T_n − T_{|i−2n|}`.
fn cheb_divide(c: &[f64], e: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rem: Vec<f64> = (0..=e).map(|i| c.get(i).copied().unwrap_or(0.0)).collect();
    let mut q = vec![0.0; e + 1 - n.min(e + 1)];
    for i in (n..=e).rev() {
        let ci = rem[i];
        if ci == 0.0 {
            continue;
        }
        rem[i] = 0.0;
        if i == n {
            q[0] += ci;
        } else {
            q[i - n] += 2.0 * ci;
        }
        let j = i.abs_diff(2 * n);
        rem[j] -= ci;
    }
    rem.truncate(n.min(e + 1));
    (q, rem)
}

/// The plan for an odd polynomial, `coeffs[j]` the coefficient of
/// `T_{2j+1}`: depth `⌈log2(d+1)⌉`, products minimal in the search space.
pub fn plan_odd(coeffs: &[f64]) -> Plan {
    assert!(!coeffs.is_empty(), "empty polynomial");
    let d = 2 * coeffs.len() - 1;
    let depth = optimal_depth(d);
    let mut by_degree = vec![0.0; d + 1];
    for (j, &v) in coeffs.iter().enumerate() {
        by_degree[2 * j + 1] = v;
    }
    let mut best: Option<Plan> = None;
    for l in 1..=depth as u32 {
        for k in 0..depth as u32 {
            let mut opt = TreeOpt {
                l,
                k,
                memo: HashMap::new(),
            };
            if opt.best(d, depth).is_none() {
                continue;
            }
            let mut b = Builder::new();
            let out = b.poly(&mut opt, &by_degree, d, depth);
            let mults = b
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Chebyshev { .. } | Step::Mul { .. }))
                .count();
            let plan = Plan {
                degree: d,
                output: out,
                mults,
                depth: b.depth[out],
                steps: b.steps,
                baby_log: l,
                giant_log: k,
            };
            debug_assert_eq!(plan.depth, depth);
            if best.as_ref().is_none_or(|p| plan.mults < p.mults) {
                best = Some(plan);
            }
        }
    }
    best.expect("a degree-d plan always exists")
}

/// `(non-scalar multiplications, depth)` of the plan for a degree-`d` odd
/// polynomial.
pub fn plan_cost(d: usize) -> (usize, usize) {
    assert!(d % 2 == 1, "odd degree expected");
    let p = plan_odd(&vec![1.0; d.div_ceil(2)]);
    (p.mults, p.depth)
}

/// Elements per block of the vectorised evaluation.
const EVAL_CHUNK: usize = 64;

impl Plan {
    /// Interprets the plan in f64 at `u`.
    pub fn eval(&self, u: f64) -> f64 {
        let mut r = Vec::with_capacity(self.steps.len() + 1);
        r.push(u);
        for s in &self.steps {
            let v = match s {
                Step::Chebyshev { a, b, c, .. } => 2.0 * r[*a] * r[*b] - c.map_or(1.0, |c| r[c]),
                Step::Linear { terms } => {
                    let mut acc = 0.0;
                    for &(g, w) in terms {
                        acc += w * r[g];
                    }
                    acc
                }
                Step::Mul { a, b } => r[*a] * r[*b],
                Step::Add { a, b } => r[*a] + r[*b],
            };
            r.push(v);
        }
        r[self.output]
    }

    /// [`Plan::eval`] at every value of `us`, in place: the same operations
    /// in the same order for each element (bit-identical results), with the
    /// loops turned so the inner one runs over elements and vectorises.
    pub fn eval_in_place(&self, us: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { eval_block_avx2(self, us) };
            return;
        }
        eval_block(self, us);
    }

    /// Recomputes `(mults, depth)` from the instructions, checking that every
    /// operand is defined before use.
    pub fn analyse(&self) -> Result<(usize, usize), String> {
        let mut depth = vec![0usize];
        let mut mults = 0;
        for (i, s) in self.steps.iter().enumerate() {
            let ok = |r: usize| {
                if r <= i {
                    Ok(())
                } else {
                    Err(format!("step {i} reads undefined register {r}"))
                }
            };
            let d = match s {
                Step::Chebyshev { a, b, c, .. } => {
                    ok(*a)?;
                    ok(*b)?;
                    if let Some(c) = c {
                        ok(*c)?;
                    }
                    mults += 1;
                    depth[*a].max(depth[*b]) + 1
                }
                Step::Mul { a, b } => {
                    ok(*a)?;
                    ok(*b)?;
                    mults += 1;
                    depth[*a].max(depth[*b]) + 1
                }
                Step::Linear { terms } => {
                    for &(r, _) in terms {
                        ok(r)?;
                    }
                    terms.iter().map(|&(r, _)| depth[r]).max().unwrap_or(0) + 1
                }
                Step::Add { a, b } => {
                    ok(*a)?;
                    ok(*b)?;
                    depth[*a].max(depth[*b])
                }
            };
            depth.push(d);
        }
        if self.output > self.steps.len() {
            return Err("output register undefined".into());
        }
        Ok((mults, depth[self.output]))
    }

    /// The same plan with every output coefficient multiplied by `f`: the
    /// `Linear` steps that feed the output through `Add`/`Mul` (as the
    /// quotient) are scaled, the power basis is not. `f` a power of two keeps
    /// the arithmetic exact.
    pub fn scaled(&self, f: f64) -> Plan {
        let mut out = self.clone();
        let mut stack = vec![self.output];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(r) = stack.pop() {
            if r == 0 || !seen.insert(r) {
                continue;
            }
            match &mut out.steps[r - 1] {
                Step::Linear { terms } => {
                    for t in terms.iter_mut() {
                        t.1 *= f;
                    }
                }
                Step::Add { a, b } => stack.extend([*a, *b]),
                // The quotient is scaled, the giant power is a basis value.
                Step::Mul { a, .. } => stack.push(*a),
                Step::Chebyshev { .. } => {
                    unreachable!("a plan's output is never a basis value")
                }
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn eval_block_avx2(plan: &Plan, us: &mut [f64]) {
    eval_block(plan, us)
}

#[inline(always)]
fn eval_block(plan: &Plan, us: &mut [f64]) {
    let regs = plan.steps.len() + 1;
    let mut r = vec![[0.0f64; EVAL_CHUNK]; regs];
    for chunk in us.chunks_mut(EVAL_CHUNK) {
        let n = chunk.len();
        r[0][..n].copy_from_slice(chunk);
        for (i, s) in plan.steps.iter().enumerate() {
            let (done, rest) = r.split_at_mut(i + 1);
            let out = &mut rest[0][..n];
            match s {
                Step::Chebyshev { a, b, c, .. } => {
                    let (a, b) = (&done[*a][..n], &done[*b][..n]);
                    match c {
                        Some(c) => {
                            let c = &done[*c][..n];
                            for k in 0..n {
                                out[k] = 2.0 * a[k] * b[k] - c[k];
                            }
                        }
                        None => {
                            for k in 0..n {
                                out[k] = 2.0 * a[k] * b[k] - 1.0;
                            }
                        }
                    }
                }
                Step::Linear { terms } => {
                    out.fill(0.0);
                    for &(g, w) in terms {
                        let g = &done[g][..n];
                        for k in 0..n {
                            out[k] += w * g[k];
                        }
                    }
                }
                Step::Mul { a, b } => {
                    let (a, b) = (&done[*a][..n], &done[*b][..n]);
                    for k in 0..n {
                        out[k] = a[k] * b[k];
                    }
                }
                Step::Add { a, b } => {
                    let (a, b) = (&done[*a][..n], &done[*b][..n]);
                    for k in 0..n {
                        out[k] = a[k] + b[k];
                    }
                }
            }
        }
        chunk.copy_from_slice(&r[plan.output][..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd Chebyshev sum by Clenshaw in `T_2`, an independent evaluator.
    fn clenshaw(c: &[f64], x: f64) -> f64 {
        let y2 = 4.0 * x * x - 2.0;
        let (mut b1, mut b2) = (0.0, 0.0);
        for &cj in c.iter().rev() {
            let b0 = cj + y2 * b1 - b2;
            b2 = b1;
            b1 = b0;
        }
        x * (b1 - b2)
    }

    #[test]
    fn counts_match_the_reference_table() {
        // Lee et al.: degree 3, 5, …, 31 → non-scalar multiplications.
        let table = [2, 3, 5, 5, 6, 7, 8, 8, 8, 9, 9, 10, 10, 11, 12];
        for (i, &want) in table.iter().enumerate() {
            let d = 3 + 2 * i;
            assert_eq!(plan_cost(d), (want, optimal_depth(d)), "degree {d}");
        }
        assert_eq!(plan_cost(1), (0, 1));
    }

    #[test]
    fn interpreter_matches_clenshaw_and_analysis_matches_plan() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        for d in (1usize..=63).step_by(2) {
            let c: Vec<f64> = (0..d.div_ceil(2)).map(|_| rnd()).collect();
            let plan = plan_odd(&c);
            assert_eq!(plan.analyse().unwrap(), (plan.mults, plan.depth), "d {d}");
            assert_eq!(plan.depth, optimal_depth(d));
            let xs: Vec<f64> = (0..=150).map(|i| -1.0 + i as f64 / 75.0).collect();
            let mut block = xs.clone();
            plan.eval_in_place(&mut block);
            for (&x, &v) in xs.iter().zip(&block) {
                let (a, b) = (plan.eval(x), clenshaw(&c, x));
                assert!(
                    (a - b).abs() < 1e-12 * (1.0 + b.abs()),
                    "d {d} at {x}: {a} vs {b}"
                );
                assert_eq!(a.to_bits(), v.to_bits(), "vectorised path differs");
            }
        }
    }

    #[test]
    fn division_reconstructs() {
        let c: Vec<f64> = (0..=13)
            .map(|i| if i % 2 == 1 { i as f64 * 0.1 } else { 0.0 })
            .collect();
        let (q, r) = cheb_divide(&c, 13, 4);
        assert_eq!((q.len(), r.len()), (10, 4));
        let t = |k: usize, x: f64| (k as f64 * f64::acos(x)).cos();
        for i in 0..9 {
            let x = -0.9 + 0.2 * i as f64;
            let p: f64 = (0..=13).map(|k| c[k] * t(k, x)).sum();
            let qv: f64 = q.iter().enumerate().map(|(k, v)| v * t(k, x)).sum();
            let rv: f64 = r.iter().enumerate().map(|(k, v)| v * t(k, x)).sum();
            assert!((p - (qv * t(4, x) + rv)).abs() < 1e-12);
        }
    }

    #[test]
    fn scaled_plan_scales_the_output_only() {
        let c = [0.9, -0.3, 0.2, -0.1, 0.05, 0.02, -0.01, 0.004];
        let p = plan_odd(&c);
        let h = p.scaled(0.5);
        assert_eq!(h.analyse().unwrap(), p.analyse().unwrap());
        for i in 0..=40 {
            let x = -1.0 + i as f64 / 20.0;
            assert_eq!((0.5 * p.eval(x)).to_bits(), h.eval(x).to_bits());
        }
    }

    #[test]
    fn from_odd_round_trips() {
        let p = OddChebyshev::from_odd(&[0.5, 0.25, -0.125]);
        assert_eq!(p.coeffs, vec![0.0, 0.5, 0.0, 0.25, 0.0, -0.125]);
        assert_eq!(p.degree(), 5);
        assert_eq!(p.odd_coeffs(), vec![0.5, 0.25, -0.125]);
        assert!((p.eval(0.3) - clenshaw(&[0.5, 0.25, -0.125], 0.3)).abs() < 1e-15);
    }
}

//! End-to-end tests of the engine against the published tables and an
//! independent evaluator.

use super::approx::{relu, relu_gap_constant, relu_with_constant, sign, ApproxError, ReluApprox};
use super::cache::{Approximation, Cache, CacheStatus, Request};
use super::dd::pow2;
use super::pool::max_pool;
use super::{Mode, Objective};
use ir::poly::plan_cost;
use num_bigint::BigInt;
use std::sync::OnceLock;

/// The published degree table (ReLU mode): α, degrees, sign depth,
/// ReLU depth, sign multiplications.
const PUBLISHED: &[(u32, &[usize], usize, usize, usize)] = &[
    (6, &[3, 7], 5, 6, 7),
    (7, &[7, 7], 6, 7, 10),
    (8, &[7, 15], 7, 8, 13),
    (9, &[15, 15], 8, 9, 16),
    (10, &[7, 7, 13], 10, 11, 17),
    (11, &[7, 7, 27], 11, 12, 20),
    (12, &[7, 15, 27], 12, 13, 23),
    (13, &[15, 15, 27], 13, 14, 26),
    (14, &[15, 27, 29], 14, 15, 29),
];

/// ReLU approximations for α = 4…14, computed once for all tests.
fn relus() -> &'static Vec<ReluApprox> {
    static R: OnceLock<Vec<ReluApprox>> = OnceLock::new();
    R.get_or_init(|| {
        (4..=14)
            .map(|a| relu(a, Objective::MinDepth, 31).expect("relu"))
            .collect()
    })
}

#[test]
fn minimax_relu_reproduces_the_published_degree_sets() {
    for &(alpha, degrees, sdepth, rdepth, mults) in PUBLISHED {
        let r = &relus()[(alpha - 4) as usize];
        assert_eq!(
            r.c,
            relu_gap_constant(alpha),
            "alpha {alpha}: gap constant backed off"
        );
        assert_eq!(r.sign.degrees, degrees, "alpha {alpha}");
        assert_eq!(
            (r.sign.depth, r.depth, r.sign.mults),
            (sdepth, rdepth, mults),
            "alpha {alpha}"
        );
        // The components' own plans add up to the same cost.
        let (m, d) = r
            .sign
            .components
            .iter()
            .fold((0, 0), |(m, d), c| (m + c.plan.mults, d + c.plan.depth));
        assert_eq!((m, d), (mults, sdepth));
        let from_table: usize = degrees.iter().map(|&d| plan_cost(d).0).sum();
        assert_eq!(from_table, mults);
    }
}

#[test]
fn minimax_published_sets_stay_optimal_with_degrees_up_to_63() {
    // Allowing degrees 33…63 (depth 6) changes nothing for α ≤ 10.
    for &(alpha, degrees, ..) in &PUBLISHED[..5] {
        let r = relu(alpha, Objective::MinDepth, 63).unwrap();
        assert_eq!(r.sign.degrees, degrees, "alpha {alpha}");
    }
}

#[test]
fn minimax_relu_error_is_certified_below_two_to_minus_alpha() {
    for r in relus() {
        let goal = pow2(-(r.alpha as i32));
        assert!(
            r.error <= goal,
            "alpha {}: {:e} > {goal:e}",
            r.alpha,
            r.error
        );
        assert!(r.error_bits() >= r.alpha as f64);
        // Sign error on [ε, 1] meets 2^{1−α} too.
        assert!(r.sign.error <= r.sign.target);
        // Spot check with f64 evaluation: never worse than the certificate.
        for i in 0..=2000 {
            let x = -1.0 + i as f64 / 1000.0;
            let e = (r.eval(x) - x.max(0.0)).abs();
            assert!(
                e <= r.error * (1.0 + 1e-9) + 1e-15,
                "alpha {} at {x}: {e:e}",
                r.alpha
            );
        }
    }
}

#[test]
fn minimax_relu_error_is_certified_for_alpha_15_to_20() {
    for alpha in 15..=20 {
        let r = relu(alpha, Objective::MinDepth, 31).expect("relu");
        assert_eq!(
            r.c,
            relu_gap_constant(alpha),
            "alpha {alpha}: gap constant backed off"
        );
        assert!(
            r.error <= pow2(-(alpha as i32)),
            "alpha {alpha}: {:e}",
            r.error
        );
    }
}

#[test]
fn minimax_relu_gap_constants_are_maximal() {
    // c(α) certifies and c(α) + 1 does not, outside the published range.
    for alpha in (4..=5).chain(15..=20) {
        let c = relu_gap_constant(alpha);
        let ok = relu_with_constant(alpha, c, Objective::MinDepth, 31).unwrap();
        assert!(ok.error <= pow2(-(alpha as i32)), "alpha {alpha}");
        let over = relu_with_constant(alpha, c + 1.0, Objective::MinDepth, 31).unwrap();
        assert!(
            over.error > pow2(-(alpha as i32)),
            "alpha {alpha}: c + 1 also works"
        );
    }
}

/// Fixed-point numbers `v·2^−P` on big integers: an arithmetic path that
/// shares nothing with the engine's double-double Clenshaw evaluation.
const P: u32 = 320;

fn fixed(x: f64) -> BigInt {
    assert!(x.is_finite());
    if x == 0.0 {
        return BigInt::from(0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let man = if exp == 0 {
        (bits & ((1 << 52) - 1)) << 1
    } else {
        (bits & ((1 << 52) - 1)) | (1 << 52)
    };
    let e = exp.max(1) - 1075 + P as i64;
    assert!(e >= 0, "{x} too small for the fixed-point format");
    let v = BigInt::from(man) << (e as usize);
    if x < 0.0 {
        -v
    } else {
        v
    }
}

fn to_f64(v: &BigInt) -> f64 {
    // Keep 62 significant bits, then scale.
    let bits = v.bits() as i64;
    let shift = (bits - 62).max(0);
    let top: BigInt = v >> (shift as usize);
    let t: i64 = i64::try_from(&top).expect("fits");
    t as f64 * pow2((shift - P as i64) as i32)
}

/// Monomial coefficients (exact integers) of T_0…T_n.
fn cheb_monomials(n: usize) -> Vec<Vec<BigInt>> {
    let mut t: Vec<Vec<BigInt>> = vec![
        vec![BigInt::from(1)],
        vec![BigInt::from(0), BigInt::from(1)],
    ];
    for k in 2..=n {
        let mut next = vec![BigInt::from(0); k + 1];
        for (i, c) in t[k - 1].iter().enumerate() {
            next[i + 1] += c * 2;
        }
        for (i, c) in t[k - 2].iter().enumerate() {
            next[i] -= c;
        }
        t.push(next);
    }
    t
}

/// Power-basis coefficients (fixed point) of an odd Chebyshev series.
fn to_power_basis(coeffs: &[f64]) -> Vec<BigInt> {
    let d = 2 * coeffs.len() - 1;
    let t = cheb_monomials(d);
    let mut out = vec![BigInt::from(0); d + 1];
    for (j, &c) in coeffs.iter().enumerate() {
        let cf = fixed(c);
        for (i, m) in t[2 * j + 1].iter().enumerate() {
            out[i] += &cf * m;
        }
    }
    out
}

fn horner(a: &[BigInt], x: &BigInt) -> BigInt {
    let mut acc = BigInt::from(0);
    for c in a.iter().rev() {
        acc = ((acc * x) >> P) + c;
    }
    acc
}

/// Independent `max |r − ReLU|` by dense sampling on `[0, 1]` (the error is
/// even in `x`).
fn independent_relu_error(r: &ReluApprox) -> f64 {
    let stages: Vec<Vec<BigInt>> = r
        .sign
        .components
        .iter()
        .map(|c| to_power_basis(&c.coeffs))
        .collect();
    let one = BigInt::from(1) << P;
    let err = |x: f64| -> f64 {
        let xf = fixed(x);
        let p = stages.iter().fold(xf.clone(), |y, a| horner(a, &y));
        // |x(1 + p)/2 − x| = x|p − 1|/2.
        let e = (&xf * (p - &one)) >> (P + 1);
        to_f64(&e).abs()
    };
    let eps = r.sign.epsilon;
    let mut worst: f64 = 0.0;
    for i in 1..=3000 {
        worst = worst.max(err(eps * i as f64 / 3000.0));
    }
    for i in 0..=3000 {
        worst = worst.max(err(eps + (1.0 - eps) * i as f64 / 3000.0));
    }
    worst
}

#[test]
fn minimax_certified_error_agrees_with_an_independent_evaluator() {
    for alpha in [4u32, 6, 9, 12, 14] {
        let r = &relus()[(alpha - 4) as usize];
        let ind = independent_relu_error(r);
        let gap = r.error.log2() - ind.log2();
        println!(
            "relu alpha {alpha}: certified {:e}, independent {ind:e}, {gap:.2e} bits",
            r.error
        );
        assert!(
            (0.0..0.1).contains(&gap),
            "alpha {alpha}: certified {:e}, independent {ind:e}",
            r.error
        );
    }
    // Sign mode: max |p − 1| on [ε, 1].
    for alpha in [8u32, 13] {
        let s = sign(alpha, Objective::MinDepth, 31).unwrap();
        let stages: Vec<Vec<BigInt>> = s
            .components
            .iter()
            .map(|c| to_power_basis(&c.coeffs))
            .collect();
        let one = BigInt::from(1) << P;
        let mut worst: f64 = 0.0;
        for i in 0..=6000 {
            let x = s.epsilon + (1.0 - s.epsilon) * i as f64 / 6000.0;
            let p = stages.iter().fold(fixed(x), |y, a| horner(a, &y));
            worst = worst.max(to_f64(&(p - &one)).abs());
        }
        let gap = s.error.log2() - worst.log2();
        println!(
            "sign alpha {alpha}: certified {:e}, independent {worst:e}, {gap:.2e} bits",
            s.error
        );
        assert!(
            (0.0..0.1).contains(&gap),
            "sign alpha {alpha}: {:e} vs {worst:e}",
            s.error
        );
    }
}

#[test]
fn minimax_comparison_mode_meets_its_target() {
    for alpha in [6u32, 8, 10, 12] {
        let s = sign(alpha, Objective::MinDepth, 31).unwrap();
        assert!(s.error <= pow2(1 - alpha as i32), "alpha {alpha}");
        assert_eq!(s.epsilon, pow2(-(alpha as i32)));
        // Dense f64 check on [ε, 1].
        for i in 0..=5000 {
            let x = s.epsilon + (1.0 - s.epsilon) * i as f64 / 5000.0;
            assert!((s.eval(x) - 1.0).abs() <= s.error * (1.0 + 1e-9) + 1e-15);
            assert!((s.eval(-x) + 1.0).abs() <= s.error * (1.0 + 1e-9) + 1e-15);
        }
    }
}

#[test]
fn minimax_min_mults_mode_trades_depth_for_multiplications() {
    for alpha in [8u32, 11] {
        let d = &relus()[(alpha - 4) as usize];
        let m = relu_with_constant(alpha, d.c, Objective::MinMults, 31).unwrap();
        assert!(m.sign.mults <= d.sign.mults, "alpha {alpha}");
        assert!(m.sign.depth >= d.sign.depth, "alpha {alpha}");
        assert!(m.sign.error <= m.sign.target);
    }
}

#[test]
fn minimax_components_stay_in_range_and_plans_match() {
    for r in relus() {
        let comps = &r.sign.components;
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                assert_eq!(c.interval, comps[i - 1].image);
            }
            // Every stage maps [−1, 1] into [−1, 1] (inner stages) so the
            // next stage is evaluated where its Chebyshev form is valid.
            if i + 1 < comps.len() {
                for k in 0..=4000 {
                    let x = k as f64 / 4000.0 * c.interval[1];
                    assert!(
                        c.eval(x).abs() <= 1.0 + 1e-12,
                        "alpha {} stage {i} at {x}",
                        r.alpha
                    );
                }
            }
            for k in 0..=200 {
                let x = -1.0 + k as f64 / 100.0;
                let (a, b) = (c.plan.eval(x), c.eval(x));
                assert!((a - b).abs() < 1e-11, "plan of stage {i}: {a} vs {b}");
            }
            assert!(
                c.remez.spread < 1e-20 || c.minimax_error < 1e-20,
                "{:?}",
                c.remez
            );
        }
    }
}

#[test]
fn minimax_max_and_pooling_respect_their_bounds() {
    let r = &relus()[(10 - 4) as usize];
    let unit = pow2(-10);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for (k, margin) in [(2usize, 4.0), (3, 6.0), (4, 6.0)] {
        let b = 7.5;
        let mp = max_pool(r, k, b);
        assert_eq!(mp.margin, margin);
        assert_eq!(mp.scale, (1.0 - margin * unit) / (2.0 * b));
        assert_eq!(
            mp.levels,
            (k * k).next_power_of_two().trailing_zeros() as usize
        );
        let want_bound = 2.0 * b * mp.levels as f64 * r.error / (1.0 - margin * unit);
        assert!((mp.error_bound - want_bound).abs() <= 1e-12 * want_bound);
        for trial in 0..3000 {
            // Random windows, some with values at ±B and some padding.
            let w: Vec<Option<f64>> = (0..k * k)
                .map(|i| match (trial % 5, i % 3) {
                    (0, 0) => Some(b),
                    (1, _) => Some(if rnd() < 0.5 { b } else { -b }),
                    (2, 1) => None,
                    _ => Some((2.0 * rnd() - 1.0) * b),
                })
                .collect();
            let truth = w.iter().flatten().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            if truth == f64::NEG_INFINITY {
                continue;
            }
            let (got, widest) = mp.eval(&w);
            assert!(widest <= 1.0, "difference {widest} leaves [-1, 1]");
            assert!(
                (got - truth).abs() <= mp.error_bound,
                "k {k}: {got} vs {truth}"
            );
        }
    }
    // Pairwise max: error is the ReLU error.
    let m = &max_pool(r, 2, 1.0).max;
    for i in 0..=400 {
        let (a, b2) = (rnd(), rnd());
        let _ = i;
        assert!((m.eval(a, b2) - a.max(b2)).abs() <= m.error());
    }
}

#[test]
fn minimax_results_are_deterministic_and_cache_round_trips() {
    let dir = std::env::temp_dir().join(format!("precis-minimax-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = Cache::at(&dir);
    let req = Request {
        alpha: 8,
        mode: Mode::Relu,
        objective: Objective::MinDepth,
        max_degree: 31,
    };
    let (a, s1) = cache.get(&req).unwrap();
    assert_eq!(s1, CacheStatus::Miss);
    let (b, s2) = cache.get(&req).unwrap();
    assert_eq!(s2, CacheStatus::Hit);
    assert_eq!(a, b);
    // Recomputation is bit-identical to the stored entry.
    let fresh = req.compute().unwrap();
    let path = cache.path(&req).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        Cache::encode(&req, &fresh)
    );
    match &fresh {
        Approximation::Relu(r) => assert_eq!(r.sign.degrees, vec![7, 15]),
        Approximation::Sign(_) => panic!("mode"),
    }
    // A corrupted entry is detected and replaced.
    let mut text = std::fs::read_to_string(&path).unwrap();
    let pos = text.find("coeffs").unwrap() + 12;
    text.replace_range(pos..pos + 1, "7");
    std::fs::write(&path, &text).unwrap();
    let (c, s3) = cache.get(&req).unwrap();
    assert_eq!(s3, CacheStatus::Corrupt);
    assert_eq!(c, fresh);
    assert_eq!(cache.get(&req).unwrap().1, CacheStatus::Hit);
    // Truncated entry.
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert_eq!(cache.get(&req).unwrap().1, CacheStatus::Corrupt);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minimax_rejects_bad_parameters() {
    assert!(matches!(
        relu(3, Objective::MinDepth, 31),
        Err(ApproxError::Alpha(3))
    ));
    assert!(matches!(
        sign(21, Objective::MinDepth, 31),
        Err(ApproxError::Alpha(21))
    ));
    assert!(matches!(
        relu(8, Objective::MinDepth, 30),
        Err(ApproxError::MaxDegree(30))
    ));
    let msg = relu(99, Objective::MinDepth, 31).unwrap_err().to_string();
    assert!(msg.contains("alpha") && msg.contains("99"), "{msg}");
}

//! Precision of Chebyshev evaluation at input scales that differ from the
//! primes, on 36-bit primes (the `levels16` circuit primes), against a
//! double-double evaluation of the same polynomial.

use super::circuits::ChebyshevPoly;
use super::precision::precision_real;
use super::tests::Ctx;
use super::*;
use std::sync::Arc;

/// The α = 14 composite sign of the minimax engine (degrees 15, 27, 29;
/// `compiler::minimax::relu(14, MinDepth, 31)`): Chebyshev coefficients of
/// `T_1, T_3, …` of each stage, input in `[−1, 1]`.
const SIGN_15: [f64; 8] = [
    0.6454733333895312,
    -0.21656282674269736,
    0.1316801567997697,
    -0.09603173109310878,
    0.07691166696741905,
    -0.065459473885453,
    0.05834779527872118,
    -0.5212693835976113,
];
const SIGN_27: [f64; 14] = [
    0.8105641292327106,
    -0.2704123893877586,
    0.16252106094858926,
    -0.11638769574561428,
    0.09084822372479422,
    -0.07467880276072013,
    0.06356534636943427,
    -0.05549760788920653,
    0.04941471735671541,
    -0.044706446621285964,
    0.04099983316602702,
    -0.03805763266937144,
    0.03572622265265103,
    -0.3807991494467872,
];
const SIGN_29: [f64; 15] = [
    1.267966240560745,
    -0.4088230946920163,
    0.2294108841732572,
    -0.14806071486544695,
    0.10039679778307631,
    -0.06897095025362929,
    0.04707403086916149,
    -0.03150396519108727,
    0.020452486116930176,
    -0.012744221745555204,
    0.0075284597556373,
    -0.0041470298833861646,
    0.0020766070449984393,
    -0.0009027160569518914,
    0.0003241787773950528,
];
/// Where the composite is minimax for the sign (`|x| ≥ ε`).
const SIGN_EPSILON: f64 = 0.00103759765625;
/// Bits each stage must keep against its double-double value at the input
/// the ciphertext holds. The degree-15 and degree-27 stages are steep
/// (`max |p'|` ≈ 112 and 266 on `[−1, 1]`, against 8.4 for degree 29): the
/// rescale roundings of their powers (about 2^-29 relative at 36-bit primes,
/// N = 2^11) cost them bits whatever the scales. With the input at its
/// prime's scale they measure 21.3–22.1, 20.0–20.8 and 22.0–23.4 bits over
/// six runs (the old evaluation, right at that scale only: 21.1, 19.4 and
/// 23.1 in one run); the extra rounding of the level spent on an input at
/// 2^40 costs the steep ones up to 2 bits more (18.6 at worst).
const STAGE_BITS: [f64; 3] = [18.0, 18.0, 20.0];

fn odd(c: &[f64]) -> ChebyshevPoly {
    let mut full = vec![0.0; 2 * c.len()];
    for (k, &v) in c.iter().enumerate() {
        full[2 * k + 1] = v;
    }
    ChebyshevPoly::new(full, -1.0, 1.0).unwrap()
}

fn sign_stages() -> [ChebyshevPoly; 3] {
    [odd(&SIGN_15), odd(&SIGN_27), odd(&SIGN_29)]
}

/// `q_0` of 60 bits and `levels` 36-bit primes (the `levels16` circuit
/// primes), `N = 2^log_n` (insecure test ring).
fn setup36(log_n: u32, levels: usize) -> Ctx {
    let mut log_q = vec![60];
    log_q.extend(std::iter::repeat_n(36, levels));
    // Digits of at most four primes (60 + 3·36 bits) under three 61-bit specials.
    let dnum = log_q.len().div_ceil(4);
    let params = Parameters::new(ParametersLiteral {
        log_n,
        log_q,
        log_p: vec![61; 3],
        log_scale: 36,
        digits: DigitSplit::Even(dnum),
        secret: SecretDistribution::Ternary,
        insecure: true,
    })
    .unwrap();
    let mut kg = KeyGenerator::new(&params).unwrap();
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let keys = kg.gen_evaluation_keys(&sk, &[], false);
    Ctx {
        enc: Encoder::new(&params),
        eval: Evaluator::new(&params, Some(Arc::new(keys))),
        params,
        sk,
        pk,
    }
}

/// `Σ c_i T_i(y)` by Clenshaw in double-double arithmetic (error ≈ 2^-100
/// relative to `Σ|c_i|`), `y` from `x` in f64 (exact for the intervals used:
/// `[−1, 1]` and `[−4, 4]`).
fn reference(poly: &ChebyshevPoly, x: f64) -> f64 {
    #[derive(Clone, Copy)]
    struct Dd(f64, f64);
    fn two_sum(a: f64, b: f64) -> Dd {
        let s = a + b;
        let bb = s - a;
        Dd(s, (a - (s - bb)) + (b - bb))
    }
    fn add(a: Dd, b: Dd) -> Dd {
        let s = two_sum(a.0, b.0);
        let t = s.1 + a.1 + b.1;
        let hi = s.0 + t;
        Dd(hi, t - (hi - s.0))
    }
    fn mul_f(a: Dd, b: f64) -> Dd {
        let p = a.0 * b;
        let e = a.0.mul_add(b, -p) + a.1 * b;
        let hi = p + e;
        Dd(hi, e - (hi - p))
    }
    let neg = |a: Dd| Dd(-a.0, -a.1);
    let y = (2.0 * x - poly.a - poly.b) / (poly.b - poly.a);
    let (mut b1, mut b2) = (Dd(0.0, 0.0), Dd(0.0, 0.0));
    for &c in poly.coeffs[1..].iter().rev() {
        let b0 = add(add(mul_f(b1, 2.0 * y), neg(b2)), Dd(c, 0.0));
        b2 = b1;
        b1 = b0;
    }
    let r = add(add(mul_f(b1, y), neg(b2)), Dd(poly.coeffs[0], 0.0));
    r.0 + r.1
}

/// A polynomial of exactly `degree` with pseudo-random coefficients of
/// magnitude `∝ (1 + i)^-2` (every one present), `Σ|c_i| = 1.5`.
fn random_poly(degree: usize, salt: u64) -> ChebyshevPoly {
    let mut s = 0x2545_f491_4f6c_dd1du64 ^ salt;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut c: Vec<f64> = (0..=degree)
        .map(|i| {
            let v = next();
            // Bounded away from 0 so the top coefficient is present.
            v.signum() * (0.25 + 0.75 * v.abs()) / (1.0 + i as f64).powi(2)
        })
        .collect();
    let sum: f64 = c.iter().map(|x| x.abs()).sum();
    c.iter_mut().for_each(|x| *x *= 1.5 / sum);
    ChebyshevPoly::new(c, -1.0, 1.0).unwrap()
}

fn grid(c: &Ctx, a: f64, b: f64) -> Vec<f64> {
    let n = c.params.max_slots();
    (0..n)
        .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
        .collect()
}

fn encrypt(c: &Ctx, xs: &[f64], level: usize, scale: f64) -> Ciphertext {
    let pt = c.enc.encode_real(xs, level, scale).unwrap();
    Encryptor::with_public_key(&c.params, &c.pk)
        .unwrap()
        .encrypt(&pt)
}

fn decrypt(c: &Ctx, ct: &Ciphertext) -> Vec<f64> {
    c.enc
        .decode_real(&Decryptor::new(&c.params, &c.sk).decrypt(ct))
}

/// Evaluates `poly` on `ct` to `target`, checks that the output has exactly
/// `target` and the planned depth, and returns the output and that depth.
fn eval_checked(
    c: &Ctx,
    ct: &Ciphertext,
    poly: &ChebyshevPoly,
    target: f64,
) -> (Ciphertext, usize) {
    let depth = c
        .eval
        .chebyshev_depth(ct.level(), ct.scale(), poly, target)
        .unwrap();
    let out = c.eval.evaluate_chebyshev(ct, poly, target).unwrap();
    assert_eq!(
        out.scale(),
        target,
        "the output scale is exactly the target"
    );
    assert_eq!(
        out.level() + depth,
        ct.level(),
        "the planned depth is the evaluation's"
    );
    (out, depth)
}

/// Bits of `out` against `poly` at the values `ct` holds (the evaluation's
/// own error, not the input's encryption noise).
fn bits(c: &Ctx, ct: &Ciphertext, out: &Ciphertext, f: impl Fn(f64) -> f64) -> f64 {
    let want: Vec<f64> = decrypt(c, ct).into_iter().map(f).collect();
    precision_real(&want, &decrypt(c, out)).min_bits
}

#[test]
fn sign_stages_keep_their_precision_at_input_scales_off_the_primes() {
    // 60-bit q_0 and nine 36-bit primes; N = 2^11 (insecure test ring).
    let c = setup36(11, 9);
    let top = c.params.max_level();
    let q = c.params.q()[top] as f64;
    let xs = grid(&c, -1.0, 1.0);
    let mut worst = f64::INFINITY;
    for (poly, floor) in sign_stages().into_iter().zip(STAGE_BITS) {
        let base = poly.depth();
        for target in [2f64.powi(36), 2f64.powi(40)] {
            for (name, scale) in [
                ("2^30", 2f64.powi(30)),
                ("2^36", 2f64.powi(36)),
                ("2^40", 2f64.powi(40)),
                ("q", q),
            ] {
                let ct = encrypt(&c, &xs, top, scale);
                let (out, depth) = eval_checked(&c, &ct, &poly, target);
                let b = bits(&c, &ct, &out, |x| reference(&poly, x));
                eprintln!(
                    "sign stage of degree {}, input at {name}, target 2^{}: {b:.2} bits, \
                     {depth} levels",
                    poly.degree(),
                    target.log2()
                );
                // Only an input far above its prime spends a level on its scale.
                let extra = usize::from(name == "2^40");
                assert_eq!(depth, base + extra, "{name}");
                assert!(b >= floor, "degree {}, {name}: {b:.2} bits", poly.degree());
                worst = worst.min(b);
            }
        }
    }
    eprintln!("sign stages: worst {worst:.2} bits");
}

#[test]
fn sign_composite_from_a_bootstrap_scale_on_36_bit_primes() {
    // levels16's situation: 36-bit primes, the input at 2^40 (the
    // bootstrapping output scale). The three stages take 4 + 5 + 5 levels,
    // plus one for bringing 2^40 to the prime's scale: exactly 15.
    let c = setup36(11, 15);
    let top = c.params.max_level();
    let xs = grid(&c, -1.0, 1.0);
    let stages = sign_stages();
    let ct = encrypt(&c, &xs, top, 2f64.powi(40));
    let held = decrypt(&c, &ct);
    let mut x = ct.clone();
    for (k, p) in stages.iter().enumerate() {
        // Intermediate stages end on their output level's prime (what the
        // next one wants); the last on 2^40.
        let target = if k + 1 < stages.len() {
            let d = c
                .eval
                .chebyshev_depth(x.level(), x.scale(), p, 2f64.powi(36))
                .unwrap();
            c.params.q()[x.level() - d] as f64
        } else {
            2f64.powi(40)
        };
        let before = x.clone();
        let (out, depth) = eval_checked(&c, &x, p, target);
        let b = bits(&c, &before, &out, |v| reference(p, v));
        eprintln!(
            "composite stage {} (degree {}): {b:.2} bits on its own input, {depth} levels",
            k + 1,
            p.degree()
        );
        assert!(b >= STAGE_BITS[k], "stage {}: {b:.2} bits", k + 1);
        x = out;
    }
    assert_eq!(
        x.level(),
        0,
        "15 levels: 14 for the stages, 1 for the input scale"
    );
    let got = decrypt(&c, &x);
    let composite = |v: f64| stages.iter().fold(v, |y, p| reference(p, y));
    let want: Vec<f64> = held.iter().map(|&v| composite(v)).collect();
    let all = precision_real(&want, &got).min_bits;
    // Where the composite is flat (|x| ≥ ε) the inner stages' errors are
    // damped; nearer 0 its slope amplifies them.
    let (w, g): (Vec<f64>, Vec<f64>) = held
        .iter()
        .zip(want.iter().zip(&got))
        .filter(|(&v, _)| v.abs() >= SIGN_EPSILON)
        .map(|(_, (&w, &g))| (w, g))
        .unzip();
    let flat = precision_real(&w, &g).min_bits;
    eprintln!("composite: {all:.2} bits over [-1, 1], {flat:.2} bits for |x| >= {SIGN_EPSILON}");
    assert!(flat >= 19.0, "{flat:.2}");
    assert!(all >= 16.0, "{all:.2}");

    // With every stage ending on 2^40, the second and third stages each
    // need a level for their input scale too: 17 levels, refused.
    let mut x = ct;
    let mut err = None;
    for p in &stages {
        match c.eval.evaluate_chebyshev(&x, p, 2f64.powi(40)) {
            Ok(out) => x = out,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err
        .expect("17 levels on a 15-level chain is refused")
        .to_string();
    eprintln!("refused: {e}");
    assert!(e.contains("levels"), "{e}");
}

#[test]
fn random_polynomials_keep_21_bits_at_input_scales_off_the_primes() {
    let c = setup36(11, 9);
    let top = c.params.max_level();
    let q = c.params.q()[top] as f64;
    let target = 2f64.powi(40);
    let xs = grid(&c, -1.0, 1.0);
    for degree in [15usize, 31, 63] {
        let poly = random_poly(degree, degree as u64);
        let base = poly.depth();
        for (name, scale, extra) in [
            ("2^30", 2f64.powi(30), 0),
            // Powers drifting down (0.75^16 at T_16 without steering).
            ("0.75·q", 0.75 * q, 0),
            ("1.9·q", 1.9 * q, 0),
            ("2^40", 2f64.powi(40), 1),
        ] {
            let ct = encrypt(&c, &xs, top, scale);
            let (out, depth) = eval_checked(&c, &ct, &poly, target);
            let b = bits(&c, &ct, &out, |x| reference(&poly, x));
            eprintln!("random degree {degree}, input at {name}: {b:.2} bits, {depth} levels");
            assert_eq!(depth, base + extra, "{name}");
            assert!(b >= 21.0, "degree {degree}, {name}: {b:.2} bits");
        }
    }
    // An affine map ([−4, 4]) normalises the scale in its own level.
    let xs4 = grid(&c, -4.0, 4.0);
    for scale in [2f64.powi(30), 2f64.powi(40)] {
        let poly = ChebyshevPoly::new(random_poly(31, 7).coeffs, -4.0, 4.0).unwrap();
        let ct = encrypt(&c, &xs4, top, scale);
        let (out, depth) = eval_checked(&c, &ct, &poly, target);
        let b = bits(&c, &ct, &out, |x| reference(&poly, x));
        eprintln!(
            "random degree 31 on [-4, 4], input at 2^{}: {b:.2} bits",
            scale.log2()
        );
        assert_eq!(depth, poly.depth());
        assert!(b >= 21.0, "{b:.2}");
    }
}

#[test]
fn impossible_chebyshev_configurations_are_refused() {
    let c = setup36(11, 9);
    let top = c.params.max_level();
    let xs = grid(&c, -1.0, 1.0);
    let [p15, _, p29] = sign_stages();
    let refused = |ct: &Ciphertext, p: &ChebyshevPoly, target: f64, why: &str| {
        let planned = c.eval.chebyshev_depth(ct.level(), ct.scale(), p, target);
        let e = match c.eval.evaluate_chebyshev(ct, p, target) {
            Ok(_) => panic!("{why}: evaluated instead of refused"),
            Err(e) => e.to_string(),
        };
        assert_eq!(planned.err().map(|e| e.to_string()), Some(e.clone()));
        eprintln!("refused: {e}");
        assert!(e.contains(why), "{e}");
    };
    // A target scale of 2^18 would encode the coefficients below 2^20.
    let ct = encrypt(&c, &xs, top, 2f64.powi(36));
    refused(&ct, &p29, 2f64.powi(18), "below the minimum");
    // An input at 2^40 with exactly the levels of the polynomial: at its
    // own scale T_8 sits at ~2^61 and the quotient's constants near 2^15;
    // normalising it needs one more level.
    let ct = encrypt(&c, &xs, p15.depth(), 2f64.powi(40));
    refused(&ct, &p15, 2f64.powi(40), "levels");
    // One level short.
    let ct = encrypt(&c, &xs, p29.depth() - 1, 2f64.powi(36));
    refused(&ct, &p29, 2f64.powi(36), "levels");
    // An input at 2^64 on 36-bit primes: the normalising factor would be
    // encoded near 2^8, and at its own scale the powers overflow.
    let ct = encrypt(&c, &xs, top, 2f64.powi(64));
    refused(
        &ct,
        &p15,
        2f64.powi(36),
        "the factor normalising the input scale",
    );
    // Constants that would not fit the 2^120 the evaluator encodes.
    let ct = encrypt(&c, &xs, top, 2f64.powi(36));
    refused(&ct, &p15, 2f64.powi(200), "2^120");
    // A last baby-step sum (at level 1, 96 bits) that would overflow at 2^58.
    let ct = encrypt(&c, &xs, p15.depth(), c.params.q()[p15.depth()] as f64);
    refused(&ct, &p15, 2f64.powi(58), "modulus");
}

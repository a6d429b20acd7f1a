//! The measurements behind `precis bench ops`: what each circuit operation
//! costs on a preset's parameters, level by level, on the keys a circuit
//! gets (the preset's Galois key storage). The compiler's cost model
//! (`compiler::lower::cost`) is fitted to these figures.
//!
//! A linear transform is timed in four shapes and split into parts by
//! solving the four equations: with `b` hoisted baby rotations (besides
//! rotation 0), `g` giant rotations (besides 0) and `d` diagonals,
//! `t = base + [b > 0]·decompose + b·baby + g·giant + d·diagonal`, where
//! `base` holds the lift of the unrotated input and the two final ModDowns;
//! once with each [`Hoisting`].

use super::bench::in_pool;
use super::bootstrapping::presets::Preset;
use super::circuits::{Hoisting, LinearTransform};
use super::keys::{galois_element_for_rotation, KeyGenerator};
use super::{CkksError, Encoder, Encryptor, EvaluationKeys, Evaluator, Parameters};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Seconds of each operation at one level (median of the repetitions).
#[derive(Clone, Debug, Serialize)]
pub struct LevelCosts {
    pub level: usize,
    /// Key-switching digits at this level.
    pub digits: usize,
    pub rotate: f64,
    pub mul_relin: f64,
    /// Rescale of a ciphertext at this level (to the one below).
    pub rescale: f64,
    /// Encoding `slots` real values at this level.
    pub encode: f64,
    /// Ciphertext × plaintext (encoded already).
    pub mul_plain: f64,
    pub add: f64,
    /// One decomposition (ModUp of every digit) of a polynomial.
    pub decompose: f64,
    /// Linear-transform parts (see the module documentation), double and
    /// single hoisting.
    pub double: TransformParts,
    pub single: TransformParts,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct TransformParts {
    pub base: f64,
    pub baby: f64,
    pub giant: f64,
    pub diagonal: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpsReport {
    pub preset: String,
    pub threads: usize,
    pub slots: usize,
    pub special_primes: usize,
    pub galois_key_storage: String,
    pub keygen_s: f64,
    pub levels: Vec<LevelCosts>,
}

fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// Times the circuit operations of `preset` at each of `levels` (circuit
/// levels, at most the preset's) with `threads` threads, `reps` times each.
pub fn run(
    preset: Preset,
    levels: &[usize],
    threads: usize,
    reps: usize,
) -> Result<OpsReport, CkksError> {
    in_pool(threads, || run_inner(preset, levels, threads, reps.max(1)))
}

/// Baby steps 0..8, giant steps multiples of 8.
const N1: usize = 8;

fn run_inner(
    preset: Preset,
    levels: &[usize],
    threads: usize,
    reps: usize,
) -> Result<OpsReport, CkksError> {
    let top = preset.circuit_levels();
    if let Some(&l) = levels.iter().find(|&&l| l > top) {
        return Err(CkksError::InvalidArgument(format!(
            "level {l} above {}'s {top} circuit levels",
            preset.name()
        )));
    }
    let (literal, config) = preset.build(preset.log_n() - 1);
    let params = Parameters::new(literal)?;
    let n = params.n();
    let slots = params.max_slots();
    let storage = config.galois_key_storage;

    let t = Instant::now();
    let mut kg = KeyGenerator::new(&params)?;
    let sk = kg.gen_secret_key();
    let mut keys = EvaluationKeys::default();
    keys.set_relinearization_key(kg.gen_relinearization_key(&sk));
    let rotations: Vec<i64> = (1..N1 as i64)
        .chain((1..N1 as i64).map(|j| j * N1 as i64))
        .collect();
    for &k in &rotations {
        let g = galois_element_for_rotation(n, k);
        let mut key = kg.gen_galois_key_at(&sk, g, top);
        key.set_storage(&params, storage);
        keys.insert_galois(g, key);
    }
    let keygen_s = t.elapsed().as_secs_f64();
    let eval = Evaluator::new(&params, Some(Arc::new(keys)));
    let enc = Encoder::new(&params);
    let mut encryptor = Encryptor::with_secret_key(&params, &sk)?;

    let values: Vec<f64> = (0..slots).map(|i| 0.5 * (i as f64 * 0.37).sin()).collect();
    let diagonal: Vec<f64> = (0..slots).map(|i| 0.01 * (i as f64 * 0.11).cos()).collect();
    let shape = |babies: usize, giants: usize| {
        let mut g: BTreeMap<usize, BTreeMap<usize, &[f64]>> = BTreeMap::new();
        for j in 0..giants {
            for b in 0..babies {
                g.entry(j * N1).or_default().insert(b, diagonal.as_slice());
            }
        }
        g
    };

    let mut out = Vec::new();
    for &level in levels {
        let scale = params.default_scale();
        let pt = enc.encode_real(&values, level, scale)?;
        let a = encryptor.encrypt(&pt);
        let b = encryptor.encrypt(&pt);
        let q = params.q()[level] as f64;
        let plain = enc.encode_real(&values, level, q)?;
        let time = |f: &mut dyn FnMut()| median(reps, f);
        let rotate = time(&mut || drop(eval.rotate(&a, 1).unwrap()));
        let mul_relin = time(&mut || drop(eval.mul_relin(&a, &b).unwrap()));
        let rescale = if level > 0 {
            let prod = eval.mul_plain(&a, &plain)?;
            time(&mut || drop(eval.rescale(&prod).unwrap()))
        } else {
            0.0
        };
        let encode = time(&mut || drop(enc.encode_real(&values, level, q).unwrap()));
        let mul_plain = time(&mut || drop(eval.mul_plain(&a, &plain).unwrap()));
        let add = time(&mut || drop(eval.add(&a, &b).unwrap()));
        let decompose = time(&mut || drop(eval.decompose(&a.c1)));
        let parts = |h: Hoisting| -> Result<TransformParts, CkksError> {
            let lt = |babies: usize, giants: usize| -> Result<f64, CkksError> {
                let t = LinearTransform::from_prerotated(
                    &enc,
                    &shape(babies, giants),
                    slots,
                    level,
                    q,
                )?;
                Ok(time(&mut || {
                    drop(eval.linear_transform_hoisted(&a, &t, Some(h)).unwrap())
                }))
            };
            let (t_a, t_b, t_c, t_e) = (lt(1, 1)?, lt(N1, 1)?, lt(1, N1)?, lt(N1, N1)?);
            let (m, n1, d) = ((N1 - 1) as f64, N1 as f64, (N1 * N1) as f64);
            // t_a = base + diag; t_b = base + dec + m·baby + n1·diag;
            // t_c = base + m·giant + n1·diag; t_e = base + dec + m·(baby + giant) + d·diag.
            let diagonal = ((t_e - t_b - t_c + t_a) / (d - 2.0 * n1 + 1.0)).max(0.0);
            let base = (t_a - diagonal).max(0.0);
            Ok(TransformParts {
                base,
                baby: ((t_b - base - decompose - n1 * diagonal) / m).max(0.0),
                giant: ((t_c - base - n1 * diagonal) / m).max(0.0),
                diagonal,
            })
        };
        let (double, single) = (parts(Hoisting::Double)?, parts(Hoisting::Single)?);
        out.push(LevelCosts {
            level,
            digits: super::keys::digits_up_to(&params, level).len(),
            rotate,
            mul_relin,
            rescale,
            encode,
            mul_plain,
            add,
            decompose,
            double,
            single,
        });
    }
    Ok(OpsReport {
        preset: preset.name().into(),
        threads,
        slots,
        special_primes: params.p().len(),
        galois_key_storage: storage.name().into(),
        keygen_s,
        levels: out,
    })
}

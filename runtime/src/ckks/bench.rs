//! Micro-benchmarks of the CKKS primitives (used by `precis bench ckks`).

use super::keys::KeyGenerator;
use super::ring::ntt::{HarveyNtt, NttTable};
use super::CkksError;
use super::{
    Complex64, DigitSplit, Encoder, Encryptor, Evaluator, Parameters, ParametersLiteral,
    SecretDistribution,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// The benchmark parameter set: `N = 2^log_n`, a 60-bit first prime and
/// `levels` further 50-bit primes, `dnum` digits and enough 60-bit special primes.
pub fn bench_literal(log_n: u32, levels: usize, dnum: usize, insecure: bool) -> ParametersLiteral {
    let log_q: Vec<u32> = std::iter::once(60)
        .chain(std::iter::repeat_n(50, levels))
        .collect();
    let digit = log_q.len().div_ceil(dnum);
    let digit_bits = 60 + 50 * (digit as u32 - 1);
    let log_p = vec![60; digit_bits.div_ceil(59) as usize];
    ParametersLiteral {
        log_n,
        log_q,
        log_p,
        log_scale: 50,
        digits: DigitSplit::Even(dnum),
        secret: SecretDistribution::Ternary,
        insecure,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub name: String,
    /// Best wall time over the repetitions, milliseconds.
    pub best_ms: f64,
    pub median_ms: f64,
    /// Best on-CPU time of the calling thread (Linux schedstat), milliseconds:
    /// insensitive to other processes competing for the cores. Only meaningful
    /// for single-threaded runs; `None` where unavailable.
    pub best_cpu_ms: Option<f64>,
    pub reps: usize,
}

/// Nanoseconds this thread has spent on a CPU, from `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub log_n: u32,
    pub q_limbs: usize,
    pub p_limbs: usize,
    pub dnum: usize,
    pub log_qp: f64,
    pub secure_128: bool,
    pub threads: usize,
    pub keygen_s: f64,
    pub timings: Vec<Timing>,
}

fn time<T>(name: &str, reps: usize, mut f: impl FnMut() -> T) -> Timing {
    let mut cpu_best: Option<f64> = None;
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            std::hint::black_box(f());
            let wall = t.elapsed().as_secs_f64() * 1e3;
            if let (Some(a), Some(b)) = (c0, thread_cpu_ns()) {
                let ms = (b - a) as f64 / 1e6;
                cpu_best = Some(cpu_best.map_or(ms, |c: f64| c.min(ms)));
            }
            wall
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    Timing {
        name: name.into(),
        best_ms: ts[0],
        median_ms: ts[ts.len() / 2],
        best_cpu_ms: cpu_best,
        reps,
    }
}

/// Runs every benchmark on `threads` threads (a dedicated rayon pool).
pub fn run(
    literal: ParametersLiteral,
    threads: usize,
    reps: usize,
) -> Result<BenchReport, CkksError> {
    in_pool(threads, || run_inner(literal, threads, reps))
}

/// Runs `f` in a dedicated rayon pool of `threads` threads.
pub(crate) fn in_pool<R: Send>(
    threads: usize,
    f: impl FnOnce() -> Result<R, CkksError> + Send,
) -> Result<R, CkksError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CkksError::InvalidArgument(e.to_string()))?;
    pool.install(f)
}

fn run_inner(
    literal: ParametersLiteral,
    threads: usize,
    reps: usize,
) -> Result<BenchReport, CkksError> {
    let params = Parameters::new(literal)?;
    let n = params.n();
    let top = params.max_level();
    let mut timings = Vec::new();

    // NTT of one limb: the crate on a 50-bit and a 60-bit prime, and our own.
    let q50 = params.q()[top];
    let q60 = params.q()[0];
    let mut buf: Vec<u64> = (0..n as u64).map(|i| i * 7919 % q50).collect();
    let t50 = NttTable::new(n, q50).expect("NTT prime");
    timings.push(time("ntt forward 50-bit (tfhe-ntt)", reps * 20, || {
        t50.forward(&mut buf)
    }));
    timings.push(time("ntt inverse 50-bit (tfhe-ntt)", reps * 20, || {
        t50.inverse(&mut buf)
    }));
    let t60 = NttTable::new(n, q60).expect("NTT prime");
    timings.push(time("ntt forward 60-bit (tfhe-ntt)", reps * 20, || {
        t60.forward(&mut buf)
    }));
    let h50 = HarveyNtt::new(n, q50).expect("NTT prime");
    buf.iter_mut().for_each(|x| *x %= q50);
    timings.push(time("ntt forward 50-bit (own Harvey)", reps * 5, || {
        h50.forward(&mut buf)
    }));

    let t = Instant::now();
    let mut kg = KeyGenerator::new(&params)?;
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let rots: Vec<i64> = (1..=8).collect();
    let keys = kg.gen_evaluation_keys(&sk, &rots, false);
    let keygen_s = t.elapsed().as_secs_f64();
    let eval = Evaluator::new(&params, Some(Arc::new(keys)));
    let enc = Encoder::new(&params);
    let slots = params.max_slots();
    let v: Vec<Complex64> = (0..slots)
        .map(|i| Complex64::new((i as f64).sin() * 0.5, (i as f64).cos() * 0.5))
        .collect();
    let scale = params.default_scale();
    timings.push(time("encode (N/2 slots, top level)", reps, || {
        enc.encode(&v, top, scale).unwrap()
    }));
    let pt = enc.encode(&v, top, scale)?;
    let mut encryptor = Encryptor::with_public_key(&params, &pk)?;
    timings.push(time("encrypt (public key)", reps, || {
        encryptor.encrypt(&pt)
    }));
    let ct = encryptor.encrypt(&pt);
    let ct2 = encryptor.encrypt(&pt);
    timings.push(time("add", reps, || eval.add(&ct, &ct2).unwrap()));
    let pq = enc.encode(&v, top, params.q()[top] as f64)?;
    timings.push(time("plaintext multiply", reps, || {
        eval.mul_plain(&ct, &pq).unwrap()
    }));
    timings.push(time("multiply + relinearise", reps, || {
        eval.mul_relin(&ct, &ct2).unwrap()
    }));
    let prod = eval.mul_relin(&ct, &ct2)?;
    timings.push(time("rescale", reps, || eval.rescale(&prod).unwrap()));
    timings.push(time("rotate (by 1)", reps, || eval.rotate(&ct, 1).unwrap()));
    timings.push(time("hoisted rotation (8 rotations)", reps, || {
        eval.rotate_hoisted(&ct, &rots).unwrap()
    }));
    let dec = super::Decryptor::new(&params, &sk);
    timings.push(time("decrypt + decode", reps.min(3), || {
        enc.decode(&dec.decrypt(&ct))
    }));

    Ok(BenchReport {
        log_n: params.log_n(),
        q_limbs: params.q().len(),
        p_limbs: params.p().len(),
        dnum: params.digits().len(),
        log_qp: params.log_qp(),
        secure_128: params.is_secure(),
        threads,
        keygen_s,
        timings,
    })
}

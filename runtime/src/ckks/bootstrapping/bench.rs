//! The measurements behind `precis bench bootstrap`: key generation, the
//! precomputation, bootstrapping time and precision, and memory.

use super::presets::Preset;
use super::{BootstrapContract, Bootstrapper};
use crate::ckks::precision::precision_real;
use crate::ckks::{
    CkksError, Decryptor, DigitSplit, Encoder, Encryptor, KeyGenerator, KeyStorage, Parameters,
};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct BootstrapBenchReport {
    pub preset: String,
    pub log_n: u32,
    pub log_slots: u32,
    pub q_limbs: usize,
    pub p_limbs: usize,
    pub dnum: usize,
    pub log_qp: f64,
    pub secure_128: bool,
    pub threads: usize,
    pub contract: BootstrapContract,
    /// Seconds to plan and encode the DFT matrices.
    pub precompute_s: f64,
    pub precompute_bytes: usize,
    /// Seconds to generate every bootstrapping key (relinearisation, Galois, encapsulation).
    pub keygen_s: f64,
    pub key_bytes: usize,
    pub galois_keys: usize,
    pub galois_key_storage: KeyStorage,
    /// Wall seconds of each bootstrap.
    pub bootstrap_s: Vec<f64>,
    /// Wall seconds of each phase, per bootstrap (see
    /// [`Bootstrapper::bootstrap_timed`]).
    pub phase_s: Vec<std::collections::BTreeMap<String, f64>>,
    /// `−log2` of the largest and of the mean absolute slot error, per run
    /// (uniform random real inputs in `[−1, 1]`).
    pub precision_min_bits: Vec<f64>,
    pub precision_mean_bits: Vec<f64>,
    /// Peak resident memory of the process (Linux `VmHWM`), bytes, before
    /// the storage comparison (which holds expanded keys).
    pub peak_rss_bytes: Option<u64>,
    /// With `compare_storage`: after the runs above, bootstraps alternating
    /// seeded and expanded Galois keys in this process, same input.
    pub storage_comparison: Option<StorageComparison>,
}

/// Paired timings of the two key storages (wall seconds per bootstrap).
#[derive(Clone, Debug, Serialize)]
pub struct StorageComparison {
    pub seeded_s: Vec<f64>,
    pub expanded_s: Vec<f64>,
}

fn peak_rss() -> Option<u64> {
    crate::resources::peak_rss_bytes()
}

const GIB: f64 = (1u64 << 30) as f64;

/// Memory the kernel could give this process (Linux `MemAvailable`), bytes.
fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Uniform values in `[−1, 1]` from the operating system's generator.
fn random_inputs(n: usize) -> Result<Vec<f64>, CkksError> {
    let mut rng = crate::ckks::sampling::Prng::from_entropy()?;
    Ok((0..n).map(|_| 2.0 * rng.unit_f64() - 1.0).collect())
}

/// What `precis bench bootstrap` runs.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub preset: Preset,
    pub log_slots: u32,
    pub threads: usize,
    /// Bootstraps to time, each on fresh random inputs.
    pub reps: usize,
    /// The Galois key storage, if not the preset's.
    pub storage: Option<KeyStorage>,
    /// Then time `reps` pairs of bootstraps, seeded and expanded keys.
    pub compare_storage: bool,
    /// The key-switching digits, if not the preset's.
    pub digits: Option<DigitSplit>,
}

/// Bootstraps `reps` fresh level-0 encryptions on `threads` threads.
pub fn run(options: BenchOptions) -> Result<BootstrapBenchReport, CkksError> {
    crate::ckks::bench::in_pool(options.threads, || run_inner(options))
}

fn run_inner(options: BenchOptions) -> Result<BootstrapBenchReport, CkksError> {
    let BenchOptions {
        preset,
        log_slots,
        threads,
        reps,
        storage,
        compare_storage,
        digits,
    } = options;
    let (mut literal, mut config) = preset.build(log_slots);
    if let Some(d) = digits {
        literal.digits = d;
    }
    if let Some(s) = storage {
        config.galois_key_storage = s;
    }
    let galois_key_storage = config.galois_key_storage;
    let params = Parameters::new(literal)?;
    let t = Instant::now();
    let bs = Bootstrapper::new(&params, config)?;
    let precompute_s = t.elapsed().as_secs_f64();

    // Refuse up front rather than be killed for memory halfway through.
    let needed = bs.key_bytes() + bs.size_bytes();
    if let Some(available) = available_memory() {
        if needed as f64 > 0.9 * available as f64 {
            return Err(CkksError::InvalidArgument(format!(
                "preset {} with 2^{log_slots} slots needs {:.1} GiB for its keys and \
                 diagonals, {:.1} GiB of memory is available",
                preset.name(),
                needed as f64 / GIB,
                available as f64 / GIB
            )));
        }
    }

    let mut kg = KeyGenerator::new(&params)?;
    let sk = kg.gen_secret_key();
    let t = Instant::now();
    let mut keys = kg.gen_bootstrapping_keys(&sk, &bs)?;
    let keygen_s = t.elapsed().as_secs_f64();

    let encoder = Encoder::new(&params);
    let mut enc = Encryptor::with_secret_key(&params, &sk)?;
    let dec = Decryptor::new(&params, &sk);
    let n = bs.contract().slots;
    let (mut times, mut min_bits, mut mean_bits) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases = Vec::new();
    for _ in 0..reps.max(1) {
        let v = random_inputs(n)?;
        let ct = enc.encrypt(&encoder.encode_real(&v, 0, params.default_scale())?);
        let t = Instant::now();
        let (out, p) = bs.bootstrap_timed(&keys, &ct)?;
        phases.push(p.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        times.push(t.elapsed().as_secs_f64());
        let got = encoder.decode_real(&dec.decrypt(&out));
        let p = precision_real(&v, &got);
        min_bits.push(p.min_bits);
        mean_bits.push(p.mean_bits);
    }
    let key_bytes = keys.size_bytes();
    let peak_rss_bytes = peak_rss();
    let storage_comparison = if compare_storage {
        let v = random_inputs(n)?;
        let ct = enc.encrypt(&encoder.encode_real(&v, 0, params.default_scale())?);
        let mut c = StorageComparison {
            seeded_s: Vec::new(),
            expanded_s: Vec::new(),
        };
        for _ in 0..reps.max(1) {
            for storage in [KeyStorage::Seeded, KeyStorage::Expanded] {
                // The bootstrap's evaluator has dropped its handle: no copy.
                std::sync::Arc::make_mut(&mut keys.evaluation).set_galois_storage(&params, storage);
                let t = Instant::now();
                bs.bootstrap(&keys, &ct)?;
                let s = t.elapsed().as_secs_f64();
                match storage {
                    KeyStorage::Seeded => c.seeded_s.push(s),
                    KeyStorage::Expanded => c.expanded_s.push(s),
                }
            }
        }
        Some(c)
    } else {
        None
    };
    Ok(BootstrapBenchReport {
        preset: preset.name().into(),
        log_n: params.log_n(),
        log_slots,
        q_limbs: params.q().len(),
        p_limbs: params.p().len(),
        dnum: params.digits().len(),
        log_qp: params.log_qp(),
        secure_128: params.is_secure(),
        threads,
        contract: bs.contract().clone(),
        precompute_s,
        precompute_bytes: bs.size_bytes(),
        keygen_s,
        key_bytes,
        galois_keys: keys.evaluation.galois_elements().len(),
        galois_key_storage,
        bootstrap_s: times,
        phase_s: phases,
        precision_min_bits: min_bits,
        precision_mean_bits: mean_bits,
        peak_rss_bytes,
        storage_comparison,
    })
}

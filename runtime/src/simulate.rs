//! The simulation backend: runs circuits on cleartext slot vectors.
//!
//! A simulated ciphertext holds, for a batch of inputs, the real slot
//! values it decrypts to, with its level and scale. Every operation does to
//! the values what CKKS does to the message (constants are rounded to the
//! integers CKKS encodes them as, rotations are cyclic over the slots,
//! linear transforms run their baby-step giant-step programs on the real
//! diagonals) and enforces the rules a CKKS backend relies on, so a lowering
//! bug cannot hide here and surface only under encryption:
//!
//! * levels and scales as the circuit records them (checked by the executor);
//! * operands of additions at one level and scale;
//! * only rotations whose Galois keys the circuit declares, at or below the
//!   level their key is declared for;
//! * no value so large at its scale that it wraps around the modulus
//!   (`|x|·scale < Q_ℓ/2`);
//! * bootstrap inputs within `[−1, 1]` (the range the bootstrapper's sine
//!   approximation covers), at a level and scale it accepts.
//!
//! With a [`NoiseModel`] it also adds the errors CKKS would: fresh
//! encryption, rescale and key-switching roundings, plaintext encoding and
//! bootstrapping, as Gaussians of the sizes derived in [`NoiseModel`].

use crate::backend::{Backend, BackendError};
use ir::circuit::{BootstrapSpec, Bsgs, Circuit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A simulated ciphertext for a batch of inputs (`batch × slots` values).
#[derive(Clone, Debug)]
pub struct SimCt {
    pub values: Vec<f64>,
    pub level: u32,
    pub scale: f64,
    pub batch: usize,
}

/// Sizes of the errors CKKS adds, in the units of the values.
///
/// With ring degree `N` and a uniform ternary secret (each coefficient ±1
/// with probability 2/3), a polynomial error with i.i.d. coefficients of
/// variance `v` gives slot errors whose real parts have variance `N·v/2`
/// before division by the scale:
/// * a rescale (or the ModDown ending a key switch) rounds `c0` and `c1`,
///   `e = r0 + r1·s` with `v = 1/12 + N·(2/3)/12 ≈ N/18`: standard deviation
///   `√(N/2 · N/18) / Δ` at the result's scale `Δ`;
/// * a fresh public-key encryption: `e0 + e1·s + u·e` with `σ = 3.2`,
///   `v ≈ σ²·(1 + 4N/3)`;
/// * a plaintext encoded at scale `Δ_p` has coefficient roundings of
///   variance 1/12: relative slot errors `√(N/24)/Δ_p`;
/// * a bootstrap leaves slot errors whose largest over `n` slots is about
///   `2^−precision` (the bootstrapper's contract, for inputs in `[−1, 1]`):
///   Gaussian with standard deviation `2^−precision / √(2·ln(2n/10^−3))`.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseModel {
    pub ring_degree: f64,
    /// Precision of the bootstrapper's output in bits (its contract).
    pub bootstrap_bits: f64,
    pub seed: u64,
}

impl NoiseModel {
    /// The model for `circuit`'s parameters.
    pub fn for_circuit(circuit: &Circuit, seed: u64) -> Self {
        NoiseModel {
            ring_degree: (1u64 << circuit.params.log_n) as f64,
            bootstrap_bits: circuit
                .params
                .bootstrap
                .as_ref()
                .map_or(f64::INFINITY, |b| b.precision_bits),
            seed,
        }
    }

    fn rounding(&self, scale: f64) -> f64 {
        let n = self.ring_degree;
        (n / 2.0 * n / 18.0).sqrt() / scale
    }

    fn fresh(&self, scale: f64) -> f64 {
        let n = self.ring_degree;
        let sigma = crate::ckks::params::ERROR_STD_DEV;
        (n / 2.0 * sigma * sigma * (1.0 + 4.0 * n / 3.0)).sqrt() / scale
    }

    fn encoding(&self, scale: f64) -> f64 {
        (self.ring_degree / 24.0).sqrt() / scale
    }

    fn bootstrap(&self, slots: usize) -> f64 {
        2f64.powf(-self.bootstrap_bits) / (2.0 * (2.0 * slots as f64 / 1e-3).ln()).sqrt()
    }
}

/// The simulation backend for one circuit.
pub struct Simulator {
    slots: usize,
    log_q: Vec<f64>,
    q: Vec<f64>,
    bootstrap: Option<BootstrapSpec>,
    rotations: BTreeMap<u64, u32>,
    noise: Option<NoiseModel>,
    /// Draws of the noise generator so far (each op draws a fresh stream).
    draws: AtomicU64,
    /// Largest `|x|` seen at a bootstrap input, in units of its range.
    pub check_overflow: bool,
}

impl Simulator {
    pub fn new(circuit: &Circuit, noise: Option<NoiseModel>) -> Self {
        let mut log_q = Vec::with_capacity(circuit.params.q.len());
        let mut acc = 0.0;
        for &q in &circuit.params.q {
            acc += (q as f64).log2();
            log_q.push(acc);
        }
        Simulator {
            slots: circuit.params.slots,
            log_q,
            q: circuit.params.q.iter().map(|&q| q as f64).collect(),
            bootstrap: circuit.params.bootstrap.clone(),
            rotations: circuit.rotations.clone(),
            noise,
            draws: AtomicU64::new(0),
            check_overflow: true,
        }
    }

    /// Encrypts (in simulation) a batch of packed inputs: `cts[k]` holds
    /// ciphertext `k`'s slots for every input, `batch × slots` values.
    pub fn encrypt(&self, cts: Vec<Vec<f64>>, batch: usize, level: u32, scale: f64) -> Vec<SimCt> {
        cts.into_iter()
            .map(|mut values| {
                assert_eq!(values.len(), batch * self.slots, "packed input size");
                if let Some(n) = &self.noise {
                    self.add_noise(&mut values, n.fresh(scale));
                }
                SimCt {
                    values,
                    level,
                    scale,
                    batch,
                }
            })
            .collect()
    }

    fn add_noise(&self, values: &mut [f64], std: f64) {
        if std == 0.0 {
            return;
        }
        let seed = self.noise.as_ref().map_or(0, |n| n.seed);
        let k = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix(seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Windows of a fixed table of standard Gaussians at random offsets
        // (a fresh offset every 4096 values): fast enough for whole test
        // sets, independent within a window, and the windows of different
        // operations overlap only by chance.
        let table = gaussian_table();
        let mask = table.len() - 1;
        for chunk in values.chunks_mut(4096) {
            let off = rng.next() as usize & mask;
            for (i, v) in chunk.iter_mut().enumerate() {
                *v += std * table[(off + i) & mask];
            }
        }
    }

    fn with(&self, a: &SimCt, values: Vec<f64>, level: u32, scale: f64) -> SimCt {
        SimCt {
            values,
            level,
            scale,
            batch: a.batch,
        }
    }

    fn check(&self, ct: SimCt) -> Result<SimCt, BackendError> {
        if self.check_overflow {
            let m = ct.values.iter().fold(0f64, |m, v| m.max(v.abs()));
            if !m.is_finite() {
                return Err(BackendError("a value is not finite".into()));
            }
            if m > 0.0 && m.log2() + ct.scale.log2() >= self.log_q[ct.level as usize] - 1.0 {
                return Err(BackendError(format!(
                    "|x| up to {m:.3e} at scale 2^{:.1} exceeds Q/2 = 2^{:.1} at level {} (the ciphertext would wrap around its modulus)",
                    ct.scale.log2(),
                    self.log_q[ct.level as usize] - 1.0,
                    ct.level
                )));
            }
        }
        Ok(ct)
    }

    fn same(a: &SimCt, b: &SimCt) -> Result<(), BackendError> {
        if a.level != b.level {
            return Err(BackendError(format!(
                "operands at levels {} and {}",
                a.level, b.level
            )));
        }
        if !ir::circuit::scales_match(a.scale, b.scale) {
            return Err(BackendError(format!(
                "operands at scales 2^{:.9} and 2^{:.9}",
                a.scale.log2(),
                b.scale.log2()
            )));
        }
        if a.batch != b.batch {
            return Err(BackendError("operands of different batches".into()));
        }
        Ok(())
    }

    fn check_key(&self, k: u64, level: u32) -> Result<(), BackendError> {
        match self.rotations.get(&k) {
            Some(&l) if l >= level => Ok(()),
            Some(&l) => Err(BackendError(format!(
                "rotation by {k} at level {level}, its key only reaches level {l}"
            ))),
            None => Err(BackendError(format!(
                "rotation by {k}: the circuit declares no Galois key for it"
            ))),
        }
    }

    fn rotated(&self, a: &SimCt, k: u64) -> Vec<f64> {
        let n = self.slots;
        let k = k as usize % n;
        let mut out = Vec::with_capacity(a.values.len());
        for img in a.values.chunks(n) {
            out.extend_from_slice(&img[k..]);
            out.extend_from_slice(&img[..k]);
        }
        out
    }

    /// The decoded values of `ct` (batch × slots), with the encoding
    /// rounding CKKS decryption would apply (none here).
    pub fn decrypt(&self, ct: &SimCt) -> Vec<f64> {
        ct.values.clone()
    }
}

/// `round(c·scale)/scale`: the constant CKKS actually multiplies or adds.
fn encoded(c: f64, scale: f64) -> f64 {
    (c * scale).round() / scale
}

impl Backend for Simulator {
    type Ct = SimCt;

    fn level(&self, a: &SimCt) -> u32 {
        a.level
    }

    fn scale(&self, a: &SimCt) -> f64 {
        a.scale
    }

    fn add(&self, a: &SimCt, b: &SimCt) -> Result<SimCt, BackendError> {
        Self::same(a, b)?;
        let v = a.values.iter().zip(&b.values).map(|(x, y)| x + y).collect();
        self.check(self.with(a, v, a.level, a.scale))
    }

    fn sub(&self, a: &SimCt, b: &SimCt) -> Result<SimCt, BackendError> {
        Self::same(a, b)?;
        let v = a.values.iter().zip(&b.values).map(|(x, y)| x - y).collect();
        self.check(self.with(a, v, a.level, a.scale))
    }

    fn neg(&self, a: &SimCt) -> Result<SimCt, BackendError> {
        let v = a.values.iter().map(|x| -x).collect();
        Ok(self.with(a, v, a.level, a.scale))
    }

    fn add_const(&self, a: &SimCt, c: f64) -> Result<SimCt, BackendError> {
        let e = encoded(c, a.scale);
        let v = a.values.iter().map(|x| x + e).collect();
        self.check(self.with(a, v, a.level, a.scale))
    }

    fn add_plain(&self, a: &SimCt, plain: &[f64]) -> Result<SimCt, BackendError> {
        let n = self.slots;
        let mut v = a.values.clone();
        for img in v.chunks_mut(n) {
            for (x, p) in img.iter_mut().zip(plain) {
                *x += p;
            }
        }
        if let Some(nm) = &self.noise {
            self.add_noise(&mut v, nm.encoding(a.scale));
        }
        self.check(self.with(a, v, a.level, a.scale))
    }

    fn mul_const(&self, a: &SimCt, c: f64, scale: f64) -> Result<SimCt, BackendError> {
        let e = encoded(c, scale);
        let v = a.values.iter().map(|x| x * e).collect();
        self.check(self.with(a, v, a.level, a.scale * scale))
    }

    fn mul_int(&self, a: &SimCt, k: i64) -> Result<SimCt, BackendError> {
        let v = a.values.iter().map(|x| x * k as f64).collect();
        self.check(self.with(a, v, a.level, a.scale))
    }

    fn mul_plain(&self, a: &SimCt, plain: &[f64], scale: f64) -> Result<SimCt, BackendError> {
        let n = self.slots;
        let mut v = a.values.clone();
        for img in v.chunks_mut(n) {
            for (x, p) in img.iter_mut().zip(plain) {
                *x *= p;
            }
        }
        if let Some(nm) = &self.noise {
            let rms = (a.values.iter().map(|x| x * x).sum::<f64>() / a.values.len() as f64).sqrt();
            self.add_noise(&mut v, rms * nm.encoding(scale));
        }
        self.check(self.with(a, v, a.level, a.scale * scale))
    }

    fn mul(&self, a: &SimCt, b: &SimCt) -> Result<SimCt, BackendError> {
        if a.level != b.level {
            return Err(BackendError(format!(
                "operands at levels {} and {}",
                a.level, b.level
            )));
        }
        let v = a.values.iter().zip(&b.values).map(|(x, y)| x * y).collect();
        // The relinearisation's ModDown rounds at the product's scale:
        // negligible there, the rescale that follows is modelled.
        self.check(self.with(a, v, a.level, a.scale * b.scale))
    }

    fn relabel(&self, a: &SimCt, factor: f64) -> Result<SimCt, BackendError> {
        let v = a.values.iter().map(|x| x / factor).collect();
        Ok(self.with(a, v, a.level, a.scale * factor))
    }

    fn rotate(&self, a: &SimCt, k: u64) -> Result<SimCt, BackendError> {
        self.check_key(k, a.level)?;
        let mut v = self.rotated(a, k);
        if let Some(nm) = &self.noise {
            self.add_noise(&mut v, nm.rounding(a.scale));
        }
        Ok(self.with(a, v, a.level, a.scale))
    }

    fn rescale(&self, a: &SimCt) -> Result<SimCt, BackendError> {
        if a.level == 0 {
            return Err(BackendError("rescale at level 0".into()));
        }
        let scale = a.scale / self.q[a.level as usize];
        let mut v = a.values.clone();
        if let Some(nm) = &self.noise {
            self.add_noise(&mut v, nm.rounding(scale));
        }
        self.check(self.with(a, v, a.level - 1, scale))
    }

    fn drop_level(&self, a: &SimCt, level: u32) -> Result<SimCt, BackendError> {
        if level > a.level {
            return Err(BackendError(format!(
                "drop from level {} to {level}",
                a.level
            )));
        }
        self.check(self.with(a, a.values.clone(), level, a.scale))
    }

    fn bootstrap(&self, a: &SimCt) -> Result<SimCt, BackendError> {
        let bs = self
            .bootstrap
            .as_ref()
            .ok_or_else(|| BackendError("no bootstrapper for these parameters".into()))?;
        for (img, vals) in a.values.chunks(self.slots).enumerate() {
            let m = vals.iter().fold(0f64, |m, v| m.max(v.abs()));
            if m.is_nan() || m > 1.0 {
                return Err(BackendError(format!(
                    "bootstrap input out of range for input {img} of the batch: |x| up to {m:.4} > 1 (the value exceeded its calibrated bound)"
                )));
            }
        }
        if a.level < bs.minimum_input_level || a.scale > bs.message_scale * (1.0 + 1e-9) {
            return Err(BackendError(format!(
                "bootstrap input at level {} scale 2^{:.2} not accepted",
                a.level,
                a.scale.log2()
            )));
        }
        let mut v = a.values.clone();
        if let Some(nm) = &self.noise {
            self.add_noise(&mut v, nm.bootstrap(self.slots));
        }
        Ok(self.with(a, v, bs.output_level, bs.output_scale_for(a.scale)))
    }

    fn linear_transform(
        &self,
        inputs: &[&SimCt],
        program: &Bsgs,
        diagonals: &crate::backend::NodeDiagonals,
        fold: Option<(usize, usize)>,
        scale: f64,
    ) -> Result<SimCt, BackendError> {
        let n = self.slots;
        let first = inputs[0];
        for x in inputs {
            Self::same(first, x)?;
        }
        let level = first.level;
        for g in &program.giants {
            if g.shift != 0 {
                self.check_key(g.shift, level)?;
            }
            for &(_, b) in &g.babies {
                if b != 0 {
                    self.check_key(b, level)?;
                }
            }
        }
        let batch = first.batch;
        let mut out = vec![0.0; batch * n];
        // Tiled: for each giant step and tile of slots, every diagonal's
        // tile is applied to the whole batch while it is in cache, into a
        // per-input accumulator tile; the tile is then added into the
        // output at its giant-rotated place (out[t] += inner[t + shift]).
        let tile = crate::backend::DIAGONAL_TILE.min(n);
        let mut inner = vec![0.0; batch * tile];
        // Compiled for AVX-512 where the CPU has it (the baseline build
        // would use two-lane SSE2).
        crate::ckks::ring::simd::wide(
            #[inline(always)]
            || {
                for ((g, diags), masks) in program
                    .giants
                    .iter()
                    .zip(&diagonals.values)
                    .zip(&diagonals.nonzero_tiles)
                {
                    let s = g.shift as usize % n;
                    for (ti, t0) in (0..n).step_by(tile).enumerate() {
                        // Tiles where every diagonal is zero add nothing.
                        let bit = 1u64 << ti.min(63);
                        if masks.iter().all(|m| m & bit == 0) {
                            continue;
                        }
                        inner.fill(0.0);
                        for ((&(ct, b), d), m) in g.babies.iter().zip(diags).zip(masks) {
                            if m & bit == 0 {
                                continue;
                            }
                            let d = &d[t0..t0 + tile];
                            let xs = &inputs[ct as usize].values;
                            let start = (t0 + b as usize) % n;
                            // x[t + b] for t in the tile: one or two runs.
                            let first = (n - start).min(tile);
                            for (img, acc) in inner.chunks_mut(tile).enumerate() {
                                let x = &xs[img * n..(img + 1) * n];
                                let (a1, a2) = acc.split_at_mut(first);
                                for ((y, &dd), &xx) in
                                    a1.iter_mut().zip(&d[..first]).zip(&x[start..start + first])
                                {
                                    *y += dd * xx;
                                }
                                for ((y, &dd), &xx) in
                                    a2.iter_mut().zip(&d[first..]).zip(&x[..tile - first])
                                {
                                    *y += dd * xx;
                                }
                            }
                        }
                        // out[t − s] += inner[t] for t in the tile.
                        let dst = (t0 + n - s) % n;
                        let first = (n - dst).min(tile);
                        for (img, acc) in inner.chunks(tile).enumerate() {
                            let o = &mut out[img * n..(img + 1) * n];
                            for (y, &v) in o[dst..dst + first].iter_mut().zip(&acc[..first]) {
                                *y += v;
                            }
                            for (y, &v) in o[..tile - first].iter_mut().zip(&acc[first..]) {
                                *y += v;
                            }
                        }
                    }
                }
            },
        );
        if let Some((step, count)) = fold {
            let mut tmp = vec![0.0; n];
            for o in out.chunks_mut(n) {
                let mut k = step;
                while k < step * count {
                    tmp[..n - k].copy_from_slice(&o[k..]);
                    tmp[n - k..].copy_from_slice(&o[..k]);
                    for (y, &t) in o.iter_mut().zip(&tmp) {
                        *y += t;
                    }
                    k *= 2;
                }
            }
        }
        if let Some((step, count)) = fold {
            let mut k = step;
            while k < step * count {
                self.check_key(k as u64, level)?;
                k *= 2;
            }
        }
        let out_scale = first.scale * scale;
        if let Some(nm) = &self.noise {
            let rms = (inputs
                .iter()
                .flat_map(|x| x.values.iter())
                .map(|x| x * x)
                .sum::<f64>()
                / (inputs.len() * batch * n) as f64)
                .sqrt();
            let products = program.products() as f64;
            self.add_noise(&mut out, rms * products.sqrt() * nm.encoding(scale));
        }
        self.check(SimCt {
            values: out,
            level,
            scale: out_scale,
            batch,
        })
    }
}

/// 2^20 standard Gaussians (Box–Muller from a fixed seed), shared.
fn gaussian_table() -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = SplitMix(0x05ee_d0f5_ca1e);
        (0..1 << 20).map(|_| rng.gaussian()).collect()
    })
}

/// A small deterministic generator for the noise (not for secrets).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Why a simulated run failed, naming the sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sample {sample}: {error}")]
pub struct SampleError {
    /// The first sample of the batch the failure occurred in (the message
    /// names the one within the batch where the backend can tell).
    pub sample: usize,
    pub error: crate::backend::ExecError,
}

/// Runs `prepared` on the simulation backend for each of the `n` samples in
/// `x` (row-major, `n × input size`), `batch` samples per execution, batches
/// in parallel; returns each sample's output tensor (row-major). With
/// `noise`, batch `k` draws its errors from `noise.seed + k`.
pub fn run_samples(
    prepared: &crate::backend::Prepared,
    x: &[f32],
    n: usize,
    batch: usize,
    noise: Option<&NoiseModel>,
) -> Result<Vec<Vec<f64>>, SampleError> {
    use rayon::prelude::*;
    let c = &prepared.circuit;
    let layout = &c.layouts[c.input.layout as usize];
    let out_layout = &c.layouts[c.output.layout as usize];
    let per = layout.len();
    assert_eq!(x.len(), n * per, "input size");
    let slots = c.params.slots;
    let batch = batch.max(1);
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let results: Vec<Result<Vec<Vec<f64>>, SampleError>> = starts
        .par_iter()
        .enumerate()
        .map(|(k, &start)| {
            let m = batch.min(n - start);
            let nm = noise.map(|nm| NoiseModel {
                seed: nm.seed.wrapping_add(k as u64),
                ..nm.clone()
            });
            let sim = Simulator::new(c, nm);
            let mut cts = vec![vec![0.0; m * slots]; layout.cts()];
            for i in 0..m {
                let s = start + i;
                let data: Vec<f64> = x[s * per..(s + 1) * per]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                for (j, ct) in layout.pack(&data).into_iter().enumerate() {
                    cts[j][i * slots..(i + 1) * slots].copy_from_slice(&ct);
                }
            }
            let enc = sim.encrypt(cts, m, c.input.level, c.input.scale);
            let out = crate::backend::execute(&sim, prepared, enc, &crate::backend::Quiet)
                .map_err(|error| SampleError {
                    sample: start,
                    error,
                })?;
            Ok((0..m)
                .map(|i| {
                    let per_ct: Vec<Vec<f64>> = out
                        .iter()
                        .map(|ct| ct.values[i * slots..(i + 1) * slots].to_vec())
                        .collect();
                    out_layout.unpack(&per_ct)
                })
                .collect())
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

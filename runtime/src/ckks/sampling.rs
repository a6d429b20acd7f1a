//! Randomness: a ChaCha20 CSPRNG seeded from the operating system, seeded
//! expansion of uniform polynomials (AES-256 in counter mode, seekable by
//! chunk), ternary and discrete Gaussian sampling.

use super::params::{SecretDistribution, ERROR_STD_DEV, ERROR_TAIL_CUT};
use super::ring::{Poly, RingContext};
use super::CkksError;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// A 256-bit seed for the deterministic expansion of uniform polynomials.
pub type Seed = [u8; 32];

/// The generator every secret, error and seed is drawn from. Its state
/// determines every future draw (a key generator's state would regenerate
/// the secret key), so it is overwritten when the generator is dropped.
pub struct Prng(ChaCha20Rng);

impl Drop for Prng {
    fn drop(&mut self) {
        // SAFETY: `self.0` is valid and exclusively borrowed; ChaCha20Rng owns
        // no heap memory, so overwriting it without dropping leaks nothing.
        unsafe { std::ptr::write_volatile(&mut self.0, ChaCha20Rng::from_seed([0; 32])) };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl Prng {
    /// A generator seeded with 256 bits from the operating system.
    pub fn from_entropy() -> Result<Self, CkksError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| CkksError::Randomness(e.to_string()))?;
        Ok(Prng::from_seed(*seed))
    }

    pub fn from_seed(seed: Seed) -> Self {
        Prng(ChaCha20Rng::from_seed(seed))
    }

    /// A fresh seed drawn from this generator.
    pub fn seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, bound)` by rejection (no modulo bias). The number of
    /// rejected draws is independent of the value returned, so the time
    /// taken reveals nothing about it.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let mask = u64::MAX >> (bound - 1).leading_zeros().min(63);
        loop {
            let v = self.next_u64() & mask;
            if v < bound {
                return v;
            }
        }
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Coefficients per independently seekable stream of a uniform limb.
pub(crate) const UNIFORM_CHUNK: usize = 4096;

/// Expands a 256-bit seed into uniform residues with AES-256 (the seed is
/// the key) in counter mode. Each chunk of [`UNIFORM_CHUNK`] coefficients of
/// the limb of each modulus has its own counter stream, so any chunk can be
/// regenerated on its own: a switching key kept as seeds regenerates its
/// `a_j` chunk by chunk inside the key switch. The 128-bit counter block is
/// `modulus index (u32) ‖ chunk (u32) ‖ block number (u64)`, little-endian;
/// each block gives two 64-bit candidates, masked to the modulus' bit length
/// and rejected when not below it, so the residues are exactly uniform
/// (given AES as a PRF). AES-NI makes this about 4× faster than ChaCha20.
pub(crate) struct UniformExpander(Aes256);

impl UniformExpander {
    pub fn new(seed: &Seed) -> Self {
        UniformExpander(Aes256::new(GenericArray::from_slice(seed)))
    }

    /// Chunk `chunk` (its first `out.len() ≤ UNIFORM_CHUNK` coefficients) of
    /// the limb of modulus `modulus_index`, whose value is `q`.
    pub fn fill_chunk(&self, modulus_index: usize, chunk: usize, q: u64, out: &mut [u64]) {
        const BATCH: usize = 64;
        debug_assert!(out.len() <= UNIFORM_CHUNK && q > 1);
        let mask = u64::MAX >> (q - 1).leading_zeros();
        let head = modulus_index as u128 | (chunk as u128) << 32;
        let mut counter = 0u64;
        let mut filled = 0;
        let mut blocks = [GenericArray::<u8, _>::default(); BATCH];
        let mut accepted = [0u64; 2 * BATCH];
        while filled < out.len() {
            for b in blocks.iter_mut() {
                *b = GenericArray::from((head | u128::from(counter) << 64).to_le_bytes());
                counter += 1;
            }
            self.0.encrypt_blocks(&mut blocks);
            // Branch-free rejection: every candidate is written, only those
            // below q advance the cursor.
            let mut got = 0;
            for b in &blocks {
                let x = u128::from_le_bytes((*b).into());
                for v in [x as u64 & mask, (x >> 64) as u64 & mask] {
                    accepted[got] = v;
                    got += usize::from(v < q);
                }
            }
            let take = got.min(out.len() - filled);
            out[filled..filled + take].copy_from_slice(&accepted[..take]);
            filled += take;
        }
    }

    /// The whole limb of modulus `modulus_index`.
    pub fn fill_limb(&self, modulus_index: usize, q: u64, limb: &mut [u64]) {
        for (c, chunk) in limb.chunks_mut(UNIFORM_CHUNK).enumerate() {
            self.fill_chunk(modulus_index, c, q, chunk);
        }
    }
}

/// Uniform polynomial expanded from `seed` (see [`UniformExpander`]),
/// directly in the NTT domain (a uniform vector of evaluations is a uniform
/// polynomial). Limbs depend only on the seed and their modulus, so the same
/// seed gives the same limb for a modulus at every level, with or without
/// the special primes, and limbs are drawn in parallel.
pub fn uniform_poly(ctx: &RingContext, seed: &Seed, level: usize, ext: bool) -> Poly {
    use rayon::prelude::*;
    let mut p = Poly::zero(ctx, level, ext, true);
    let n = ctx.n();
    let expander = UniformExpander::new(seed);
    p.data.par_chunks_mut(n).enumerate().for_each(|(i, limb)| {
        let mi = ctx.limb_modulus_index(level, i);
        expander.fill_limb(mi, ctx.modulus(mi).value(), limb);
    });
    p
}

/// `1` when `a < b`, else `0`, without a branch: the borrow of the 128-bit
/// difference.
#[inline(always)]
fn ct_lt(a: u64, b: u64) -> u64 {
    ((a as u128).wrapping_sub(b as u128) >> 127) as u64
}

/// All ones when `a < b` (128-bit keys), else zero, without a branch.
#[inline(always)]
fn ct_lt_mask_u128(a: u128, b: u128) -> u128 {
    let (_, borrow) = a.overflowing_sub(b);
    (borrow as u128).wrapping_neg()
}

/// `-x` when `negate` is 1, `x` when it is 0, without a branch.
#[inline(always)]
fn ct_negate(x: i64, negate: u64) -> i64 {
    let m = (negate as i64).wrapping_neg();
    (x ^ m).wrapping_sub(m)
}

/// A constant-time sampler of the discrete Gaussian `D_{Z,σ}` truncated at
/// `⌊τσ⌋`: a cumulative distribution table of `|X|`, scanned in full for
/// every sample with branch-free integer comparisons, and a random sign.
///
/// `table[i] = ⌊2^64 · P(|X| ≤ i)⌉` for `i < ⌊τσ⌋`; a sample draws a
/// uniform 64-bit `r` and counts the entries `≤ r` (that count is `|X|`).
/// No floating point, no table look-up at a secret index, no branch on a
/// secret: the time and memory trace of a sample are independent of its
/// value. The table is computed once from public constants (f64, each entry
/// with about 2^-52 relative precision; by the usual Rényi-divergence
/// argument that costs nothing measurable against a 2^-64-precision table).
pub struct CdtSampler {
    table: Vec<u64>,
    sigma: f64,
    bound: i64,
}

impl CdtSampler {
    pub fn new(sigma: f64, tail_cut: f64) -> Self {
        assert!(
            sigma > 0.5 && tail_cut >= 1.0,
            "unusable Gaussian {sigma}, {tail_cut}"
        );
        let bound = (sigma * tail_cut).floor() as i64;
        let pmf = abs_pmf(sigma, bound);
        // Tail sums from the end keep the small probabilities exact.
        let mut tail = vec![0.0f64; pmf.len() + 1];
        for k in (0..pmf.len()).rev() {
            tail[k] = tail[k + 1] + pmf[k];
        }
        let two64 = 2f64.powi(64);
        // An entry of 2^64 (the mass above it rounds to 0) could never be
        // reached: the table, and the bound, stop before it.
        let table: Vec<u64> = (0..bound as usize)
            .map(|i| (tail[i + 1] * two64).round())
            .take_while(|&above| above >= 1.0)
            .map(|above| {
                // P(|X| ≤ i) = 1 − P(|X| > i) = 2^64 − above, in units of 2^-64.
                if above >= two64 {
                    0
                } else {
                    u64::MAX - (above as u64 - 1)
                }
            })
            .collect();
        let bound = table.len() as i64;
        CdtSampler {
            table,
            sigma,
            bound,
        }
    }

    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The largest `|x|` this sampler returns.
    pub fn bound(&self) -> i64 {
        self.bound
    }

    /// One sample; `sign` is a uniform bit.
    #[inline]
    fn sample_with_sign(&self, r: u64, sign: u64) -> i64 {
        let mut mag = 0u64;
        for &t in &self.table {
            mag += 1 - ct_lt(r, t);
        }
        ct_negate(mag as i64, sign & 1)
    }

    /// `out.len()` independent samples.
    pub fn fill(&self, rng: &mut Prng, out: &mut [i64]) {
        for chunk in out.chunks_mut(64) {
            let signs = rng.next_u64();
            for (j, o) in chunk.iter_mut().enumerate() {
                *o = self.sample_with_sign(rng.next_u64(), signs >> j);
            }
        }
    }
}

/// `P(|X| = k)`, `k = 0..=bound`, for `X ~ D_{Z,σ}` truncated to `[−bound, bound]`.
pub(crate) fn abs_pmf(sigma: f64, bound: i64) -> Vec<f64> {
    let rho = |k: i64| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp();
    let mut p: Vec<f64> = (0..=bound)
        .map(|k| if k == 0 { rho(0) } else { 2.0 * rho(k) })
        .collect();
    let total: f64 = p.iter().rev().sum();
    for x in &mut p {
        *x /= total;
    }
    p
}

/// The error sampler: σ = [`ERROR_STD_DEV`], cut at [`ERROR_TAIL_CUT`] σ.
pub fn error_sampler() -> &'static CdtSampler {
    static S: std::sync::OnceLock<CdtSampler> = std::sync::OnceLock::new();
    S.get_or_init(|| CdtSampler::new(ERROR_STD_DEV, ERROR_TAIL_CUT))
}

/// A constant-time discrete Gaussian of large standard deviation (the noise
/// of flooded decryption), built from a [`CdtSampler`] at σ₀ = 32 (cut at
/// 13σ₀, tail mass below 2^-120) by Micciancio and Walter's convolution
/// (Crypto 2017): `x = z₁·x₁ + z₂·x₂` with `x₁, x₂` independent samples of
/// the previous stage, `z₂ = max(1, z₁ − 1)` coprime to `z₁`, is within
/// statistical distance about `2^-64` of the discrete Gaussian of
/// σ·√(z₁² + z₂²) as long as `√(z₁² + z₂²) ≤ σ/η`, η = η_ε(ℤ)/√(2π) ≈ 1.51
/// the smoothing parameter for ε = 2^-64 in standard-deviation units. Each
/// stage takes the largest allowed `z₁` until the target is within reach,
/// the last one the smallest `z₁` that reaches it, so σ is at least the
/// target and at most about 1.6 times it. `2^stages` base samples per
/// output (3 stages reach 2^35, 4 stages 2^70); all integer arithmetic,
/// no branch on secret data.
pub struct WideGaussian {
    base: &'static CdtSampler,
    /// `(z₁, z₂)` of each stage.
    stages: Vec<(i64, i64)>,
    sigma: f64,
    bound: i64,
}

impl WideGaussian {
    /// Base standard deviation and tail cut.
    pub const BASE_SIGMA: f64 = 32.0;
    pub const BASE_TAIL_CUT: f64 = 13.0;

    /// A sampler of standard deviation at least `target` (refused when
    /// samples could exceed 2^62).
    pub fn new(target: f64) -> Result<Self, String> {
        static BASE: std::sync::OnceLock<CdtSampler> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| CdtSampler::new(Self::BASE_SIGMA, Self::BASE_TAIL_CUT));
        if !(target.is_finite() && target > 0.0) {
            return Err(format!(
                "flooding standard deviation {target} is not a positive number"
            ));
        }
        // Smoothing parameter of Z for ε = 2^-64, in standard deviations.
        let eps = 2f64.powi(-64);
        let eta = ((2.0 * (1.0 + 1.0 / eps)).ln() / std::f64::consts::PI).sqrt()
            / (2.0 * std::f64::consts::PI).sqrt();
        // ‖(z, max(1, z − 1))‖, and the z at which it first reaches r.
        let norm = |z: i64| {
            let z2 = (z - 1).max(1) as f64;
            ((z as f64).powi(2) + z2 * z2).sqrt()
        };
        let reaching = |r: f64| ((((2.0 * r * r - 1.0).max(0.0)).sqrt() + 1.0) / 2.0).ceil();
        let (mut sigma, mut bound) = (base.sigma(), base.bound());
        let mut stages = Vec::new();
        while sigma < target {
            let limit = sigma / eta;
            let mut z_max = (reaching(limit) as i64).clamp(1, 1 << 40);
            while z_max > 1 && norm(z_max) > limit {
                z_max -= 1;
            }
            let mut z = (reaching(target / sigma) as i64).clamp(1, z_max);
            while z > 1 && sigma * norm(z - 1) >= target {
                z -= 1;
            }
            while z < z_max && sigma * norm(z) < target {
                z += 1;
            }
            let z2 = (z - 1).max(1);
            sigma *= norm(z);
            bound = bound
                .checked_mul(z + z2)
                .filter(|&b| b < 1 << 62)
                .ok_or_else(|| {
                    format!(
                        "flooding standard deviation 2^{:.1} is too large",
                        target.log2()
                    )
                })?;
            stages.push((z, z2));
        }
        Ok(WideGaussian {
            base,
            stages,
            sigma,
            bound,
        })
    }

    /// The standard deviation of the samples.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The largest `|x|` it returns.
    pub fn bound(&self) -> i64 {
        self.bound
    }

    /// Stages of convolution (each doubles the base samples per output).
    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// `out.len()` independent samples.
    pub fn fill(&self, rng: &mut Prng, out: &mut [i64]) {
        let per = 1usize << self.stages.len();
        let mut buf = zeroize::Zeroizing::new(vec![0i64; per]);
        for o in out.iter_mut() {
            self.base.fill(rng, &mut buf);
            // Combine pairs stage by stage: buf[..len/2] = z₁·x + z₂·y.
            let mut len = per;
            for &(z1, z2) in &self.stages {
                len /= 2;
                for i in 0..len {
                    buf[i] = z1 * buf[2 * i] + z2 * buf[2 * i + 1];
                }
            }
            *o = buf[0];
        }
    }
}

/// Secret coefficients in {-1, 0, 1}, sampled in constant time.
///
/// Ternary: each coefficient is `⌊3r / 2^64⌋ − 1` for a uniform 64-bit `r`
/// (a multiply and a shift; bias below 2^-63). Fixed Hamming weight `h`: the
/// vector `(±1, …, ±1, 0, …, 0)` with `h` random signs is shuffled by sorting
/// it under independent random 64-bit keys with a bitonic network of
/// branch-free compare-exchanges, so neither the memory trace nor the time
/// depends on where the nonzero coefficients land (ties among keys, which
/// would bias the permutation, have probability below `N²/2^65`).
pub fn secret_coeffs(rng: &mut Prng, n: usize, dist: SecretDistribution) -> Vec<i64> {
    match dist {
        SecretDistribution::Ternary => (0..n)
            .map(|_| ((rng.next_u64() as u128 * 3) >> 64) as i64 - 1)
            .collect(),
        SecretDistribution::FixedHammingWeight(h) => {
            assert!(h <= n && n.is_power_of_two(), "weight {h} of {n}");
            // key (64 bits) ‖ coefficient + 1 (in {0, 1, 2}) in the low word.
            let mut items = zeroize::Zeroizing::new(Vec::with_capacity(n));
            let mut signs = 0u64;
            for i in 0..n {
                if i % 64 == 0 {
                    signs = rng.next_u64();
                }
                let nonzero = u64::from(i < h); // i and h are public
                let coeff = ct_negate(nonzero as i64, (signs >> (i % 64)) & 1);
                let key = rng.next_u64() as u128;
                items.push(key << 64 | (coeff + 1) as u128);
            }
            bitonic_sort_ct(&mut items);
            items.iter().map(|&w| (w as u64 & 3) as i64 - 1).collect()
        }
    }
}

/// Sorts `v` (length a power of two) ascending with a bitonic network; every
/// compare-exchange is branch-free, so the trace depends on the length only.
fn bitonic_sort_ct(v: &mut [u128]) {
    let n = v.len();
    debug_assert!(n.is_power_of_two());
    let mut k = 2;
    while k <= n {
        let mut j = k / 2;
        while j > 0 {
            for i in 0..n {
                let l = i ^ j;
                if l > i {
                    // The direction depends on the public index only.
                    let (a, b) = (v[i], v[l]);
                    let swap = if i & k == 0 {
                        ct_lt_mask_u128(b, a)
                    } else {
                        ct_lt_mask_u128(a, b)
                    };
                    let d = (a ^ b) & swap;
                    v[i] = a ^ d;
                    v[l] = b ^ d;
                }
            }
            j /= 2;
        }
        k *= 2;
    }
}

/// Ternary coefficients for the ephemeral `u` of public-key encryption.
pub fn ternary_coeffs(rng: &mut Prng, n: usize) -> Vec<i64> {
    secret_coeffs(rng, n, SecretDistribution::Ternary)
}

/// Discrete Gaussian errors (σ = 3.2, truncated at 6σ), from the
/// constant-time [`CdtSampler`].
pub fn gaussian_coeffs(rng: &mut Prng, n: usize) -> Vec<i64> {
    let mut e = vec![0i64; n];
    error_sampler().fill(rng, &mut e);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's χ² of `counts` (value `x` at index `x + bound`) against
    /// the truncated discrete Gaussian of parameter `sigma`, tails merged
    /// until every bin expects at least 20 samples; returns (χ², degrees of
    /// freedom).
    fn chi_squared(counts: &[u64], bound: i64, sigma: f64) -> (f64, usize) {
        let total: u64 = counts.iter().sum();
        let abs = abs_pmf(sigma, bound);
        let p = |x: i64| {
            if x == 0 {
                abs[0]
            } else {
                abs[x.unsigned_abs() as usize] / 2.0
            }
        };
        // Central bins; the tails beyond ±k are one bin each.
        let k = (0..=bound)
            .take_while(|&x| p(x) * total as f64 >= 20.0)
            .last()
            .unwrap();
        let mut bins: Vec<(f64, f64)> = Vec::new(); // (observed, expected)
        let tail = |range: &mut dyn Iterator<Item = i64>| {
            range.fold((0.0, 0.0), |(o, e), x| {
                (
                    o + counts[(x + bound) as usize] as f64,
                    e + p(x) * total as f64,
                )
            })
        };
        bins.push(tail(&mut (-bound..-k)));
        for x in -k..=k {
            bins.push((counts[(x + bound) as usize] as f64, p(x) * total as f64));
        }
        bins.push(tail(&mut (k + 1..=bound)));
        let chi2 = bins.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
        (chi2, bins.len() - 1)
    }

    /// Upper `p = 10^-4` quantile of χ² with `df` degrees of freedom
    /// (Wilson–Hilferty).
    fn chi2_critical(df: usize) -> f64 {
        let (d, z) = (df as f64, 3.719);
        d * (1.0 - 2.0 / (9.0 * d) + z * (2.0 / (9.0 * d)).sqrt()).powi(3)
    }

    #[test]
    fn error_sampler_matches_the_discrete_gaussian() {
        let mut rng = Prng::from_seed([7; 32]);
        let n = 1 << 20;
        let e = gaussian_coeffs(&mut rng, n);
        let bound = error_sampler().bound();
        assert_eq!(bound, 19);
        assert!(e.iter().all(|x| x.abs() <= bound));
        let mut counts = vec![0u64; 2 * bound as usize + 1];
        for &x in &e {
            counts[(x + bound) as usize] += 1;
        }
        let (chi2, df) = chi_squared(&counts, bound, ERROR_STD_DEV);
        let crit = chi2_critical(df);
        assert!(chi2 < crit, "χ² = {chi2:.1} ≥ {crit:.1} (df {df})");
        // The test has power: the same samples are far from σ = 3.0 or 3.4.
        for other in [3.0, 3.4] {
            let (chi2, df) = chi_squared(&counts, bound, other);
            assert!(chi2 > 10.0 * chi2_critical(df), "σ {other}: χ² = {chi2:.1}");
        }

        // Mean and variance against the exact moments, within 4 standard errors.
        let abs = abs_pmf(ERROR_STD_DEV, bound);
        let m2: f64 = (0..=bound).map(|k| (k * k) as f64 * abs[k as usize]).sum();
        let m4: f64 = (0..=bound)
            .map(|k| (k * k * k * k) as f64 * abs[k as usize])
            .sum();
        let nf = n as f64;
        let mean = e.iter().sum::<i64>() as f64 / nf;
        assert!(mean.abs() < 4.0 * (m2 / nf).sqrt(), "mean {mean}");
        let var = e.iter().map(|&x| (x * x) as f64).sum::<f64>() / nf - mean * mean;
        let se = ((m4 - m2 * m2) / nf).sqrt();
        assert!((var - m2).abs() < 4.0 * se, "variance {var}, exact {m2}");
        assert!(
            (m2.sqrt() - ERROR_STD_DEV).abs() < 1e-6,
            "σ of the law {}",
            m2.sqrt()
        );
        eprintln!(
            "2^20 samples: χ² = {chi2:.1} (df {df}, p = 1e-4 critical value {crit:.1}); \
             mean {mean:.5}; variance {var:.4} (exact {m2:.4})"
        );

        // Signs are symmetric: P(X = k) = P(X = −k).
        for k in 1..=4 {
            let (neg, pos) = (counts[(bound - k) as usize], counts[(bound + k) as usize]);
            let sd = ((neg + pos) as f64).sqrt();
            assert!(
                (neg as f64 - pos as f64).abs() < 4.0 * sd,
                "±{k}: {neg} vs {pos}"
            );
        }
    }

    #[test]
    fn cdt_table_is_the_exact_cumulative_distribution() {
        let s = CdtSampler::new(ERROR_STD_DEV, ERROR_TAIL_CUT);
        let abs = abs_pmf(ERROR_STD_DEV, s.bound());
        let mut cdf = 0.0;
        for (i, &t) in s.table.iter().enumerate() {
            cdf += abs[i];
            let want = cdf * 2f64.powi(64);
            assert!((t as f64 - want).abs() <= want * 1e-14 + 1.0, "entry {i}");
        }
        // r = 0 gives 0; r = 2^64 − 1 the largest magnitude, either sign.
        assert_eq!(s.sample_with_sign(0, 0), 0);
        assert_eq!(s.sample_with_sign(u64::MAX, 0), 19);
        assert_eq!(s.sample_with_sign(u64::MAX, 1), -19);
        assert_eq!(s.sample_with_sign(s.table[2], 1), -3);
        assert_eq!(s.sample_with_sign(s.table[2] - 1, 1), -2);
    }

    #[test]
    fn secret_samplers_have_the_requested_statistics() {
        let mut rng = Prng::from_seed([9; 32]);
        let n = 1 << 16;
        let s = secret_coeffs(&mut rng, n, SecretDistribution::Ternary);
        for v in [-1, 0, 1] {
            let c = s.iter().filter(|&&x| x == v).count() as f64 / n as f64;
            assert!((c - 1.0 / 3.0).abs() < 0.01, "{v}: {c}");
        }
        let h = secret_coeffs(&mut rng, n, SecretDistribution::FixedHammingWeight(192));
        assert_eq!(h.iter().filter(|&&x| x != 0).count(), 192);
        assert!(h.iter().all(|x| x.abs() <= 1));

        // Sparse secrets: every position equally likely to be nonzero, both
        // signs equally likely (n = 64, h = 8, 40000 draws).
        let (n, h, draws) = (64, 8, 40_000);
        let (mut nonzero, mut plus) = (vec![0u32; n], 0u32);
        for _ in 0..draws {
            let s = secret_coeffs(&mut rng, n, SecretDistribution::FixedHammingWeight(h));
            assert_eq!(s.iter().filter(|&&x| x != 0).count(), h);
            for (i, &x) in s.iter().enumerate() {
                nonzero[i] += u32::from(x != 0);
                plus += u32::from(x == 1);
            }
        }
        let p = h as f64 / n as f64;
        let sd = (draws as f64 * p * (1.0 - p)).sqrt();
        for (i, &c) in nonzero.iter().enumerate() {
            assert!(
                (c as f64 - draws as f64 * p).abs() < 5.0 * sd,
                "position {i}: {c}"
            );
        }
        let total = (draws * h) as f64;
        assert!((plus as f64 - total / 2.0).abs() < 5.0 * (total / 4.0).sqrt());
    }

    #[test]
    fn wide_gaussian_has_its_standard_deviation_and_shape() {
        let mut rng = Prng::from_seed([11; 32]);
        for target in [100.0, 2f64.powi(20), 2f64.powi(41)] {
            let g = WideGaussian::new(target).unwrap();
            assert!(
                g.sigma() >= target && g.sigma() < 1.62 * target,
                "{target}: σ {}",
                g.sigma()
            );
            let mut x = vec![0i64; 1 << 16];
            g.fill(&mut rng, &mut x);
            assert!(x.iter().all(|v| v.abs() <= g.bound()));
            let n = x.len() as f64;
            let v: Vec<f64> = x.iter().map(|&v| v as f64 / g.sigma()).collect();
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
            assert!(mean.abs() < 4.0 / n.sqrt(), "{target}: mean {mean}");
            assert!(
                (var.sqrt() - 1.0).abs() < 0.02,
                "{target}: std {}",
                var.sqrt()
            );
            let within = v.iter().filter(|a| a.abs() <= 1.0).count() as f64 / n;
            assert!(
                (within - 0.6827).abs() < 0.01,
                "{target}: P(|x| ≤ σ) = {within}"
            );
            let within2 = v.iter().filter(|a| a.abs() <= 2.0).count() as f64 / n;
            assert!(
                (within2 - 0.9545).abs() < 0.006,
                "{target}: P(|x| ≤ 2σ) = {within2}"
            );
        }
        assert!(WideGaussian::new(2f64.powi(61)).is_err());
        assert!(WideGaussian::new(f64::NAN).is_err());
    }

    #[test]
    fn generators_are_reproducible_and_seeded_from_the_os() {
        let mut rng = Prng::from_entropy().unwrap();
        let seed = rng.seed();
        assert_eq!(
            Prng::from_seed(seed).next_u64(),
            Prng::from_seed(seed).next_u64()
        );
        assert_ne!(
            Prng::from_entropy().unwrap().seed(),
            Prng::from_entropy().unwrap().seed()
        );
    }

    #[test]
    fn uniform_limbs_are_uniform_and_seekable_by_chunk() {
        let seed = Prng::from_entropy().unwrap().seed();
        let ex = UniformExpander::new(&seed);
        for q in [(1u64 << 36) - 5, (1u64 << 60) + 33, 97] {
            let mut limb = vec![0u64; 5 * UNIFORM_CHUNK / 2];
            ex.fill_limb(3, q, &mut limb);
            assert!(limb.iter().all(|&x| x < q));
            // Mean and spread of a uniform variable on [0, q).
            let mean = limb.iter().map(|&x| x as f64 / q as f64).sum::<f64>() / limb.len() as f64;
            assert!((mean - 0.5).abs() < 0.02, "q {q}: mean {mean}");
            // Chunk 2 alone equals the limb's third chunk; other moduli and
            // seeds give other streams.
            let mut chunk = vec![0u64; UNIFORM_CHUNK / 2];
            ex.fill_chunk(3, 2, q, &mut chunk);
            assert_eq!(chunk, limb[2 * UNIFORM_CHUNK..]);
            ex.fill_chunk(4, 2, q, &mut chunk);
            assert_ne!(chunk, limb[2 * UNIFORM_CHUNK..]);
            let other = UniformExpander::new(&Prng::from_entropy().unwrap().seed());
            other.fill_chunk(3, 2, q, &mut chunk);
            assert_ne!(chunk, limb[2 * UNIFORM_CHUNK..]);
        }
    }
}

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

pub struct Prng(ChaCha20Rng);

impl Prng {
    /// A generator seeded with 256 bits from the operating system.
    pub fn from_entropy() -> Result<Self, CkksError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| CkksError::Randomness(e.to_string()))?;
        Ok(Prng::from_seed(seed))
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

    /// Uniform in `[0, bound)` by rejection (no modulo bias).
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

/// Secret coefficients in {-1, 0, 1}.
pub fn secret_coeffs(rng: &mut Prng, n: usize, dist: SecretDistribution) -> Vec<i64> {
    match dist {
        SecretDistribution::Ternary => (0..n).map(|_| rng.below(3) as i64 - 1).collect(),
        SecretDistribution::FixedHammingWeight(h) => {
            let mut s = vec![0i64; n];
            let mut idx: Vec<usize> = (0..n).collect();
            // Partial Fisher–Yates: the first h positions are a uniform h-subset.
            for k in 0..h {
                let j = k + rng.below((n - k) as u64) as usize;
                idx.swap(k, j);
                s[idx[k]] = if rng.below(2) == 0 { 1 } else { -1 };
            }
            s
        }
    }
}

/// Ternary coefficients for the ephemeral `u` of public-key encryption.
pub fn ternary_coeffs(rng: &mut Prng, n: usize) -> Vec<i64> {
    secret_coeffs(rng, n, SecretDistribution::Ternary)
}

/// Discrete Gaussian (σ = 3.2, truncated at 6σ) by rejection sampling from the
/// uniform distribution on the support.
pub fn gaussian_coeffs(rng: &mut Prng, n: usize) -> Vec<i64> {
    let bound = (ERROR_STD_DEV * ERROR_TAIL_CUT).floor() as i64;
    let width = (2 * bound + 1) as u64;
    let denom = 2.0 * ERROR_STD_DEV * ERROR_STD_DEV;
    (0..n)
        .map(|_| loop {
            let x = rng.below(width) as i64 - bound;
            if rng.unit_f64() < (-((x * x) as f64) / denom).exp() {
                break x;
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_requested_statistics() {
        let mut rng = Prng::from_entropy().unwrap();
        let n = 1 << 16;
        let e = gaussian_coeffs(&mut rng, n);
        let mean = e.iter().sum::<i64>() as f64 / n as f64;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!(
            (var.sqrt() - ERROR_STD_DEV).abs() < 0.1,
            "std {}",
            var.sqrt()
        );
        assert!(e.iter().all(|x| x.abs() <= 19));

        let s = secret_coeffs(&mut rng, n, SecretDistribution::Ternary);
        for v in [-1, 0, 1] {
            let c = s.iter().filter(|&&x| x == v).count() as f64 / n as f64;
            assert!((c - 1.0 / 3.0).abs() < 0.02, "{v}: {c}");
        }
        let h = secret_coeffs(&mut rng, n, SecretDistribution::FixedHammingWeight(192));
        assert_eq!(h.iter().filter(|&&x| x != 0).count(), 192);
        assert!(h.iter().all(|x| x.abs() <= 1));

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

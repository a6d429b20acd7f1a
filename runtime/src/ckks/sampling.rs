//! Randomness: a ChaCha20 CSPRNG seeded from the operating system, seeded
//! expansion of uniform polynomials, ternary and discrete Gaussian sampling.

use super::params::{SecretDistribution, ERROR_STD_DEV, ERROR_TAIL_CUT};
use super::ring::{Poly, RingContext};
use super::CkksError;
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

/// Uniform polynomial expanded from `seed`, directly in the NTT domain (a uniform
/// vector of evaluations is a uniform polynomial). The limb of modulus `i`
/// (index into the ring's moduli) is drawn from ChaCha20 stream `i` of the
/// seed, so limbs are drawn in parallel and the same seed gives the same
/// limb for a modulus at every level, with or without the special primes.
pub fn uniform_poly(ctx: &RingContext, seed: &Seed, level: usize, ext: bool) -> Poly {
    use rayon::prelude::*;
    let mut p = Poly::zero(ctx, level, ext, true);
    let n = ctx.n();
    p.data.par_chunks_mut(n).enumerate().for_each(|(i, limb)| {
        let mi = ctx.limb_modulus_index(level, i);
        let mut chacha = ChaCha20Rng::from_seed(*seed);
        chacha.set_stream(mi as u64);
        let mut rng = Prng(chacha);
        let q = ctx.modulus(mi).value();
        for x in limb.iter_mut() {
            *x = rng.below(q);
        }
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
}

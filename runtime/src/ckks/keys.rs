//! Keys and key generation: secret key, public key, and hybrid key-switching
//! keys (relinearisation and Galois/rotation keys).

use super::params::Parameters;
use super::ring::{Poly, RingContext};
use super::sampling::{gaussian_coeffs, secret_coeffs, uniform_poly, Prng, Seed};
use super::CkksError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::{Zeroize, Zeroizing};

/// The secret key `s`, kept both as small coefficients (for serialization and
/// future bootstrapping) and in the NTT domain over all primes `QP`.
#[derive(Clone)]
pub struct SecretKey {
    pub(crate) params: Parameters,
    pub(crate) coeffs: Vec<i8>,
    pub(crate) ntt: Poly,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Wipes the secret (coefficients and NTT form, spare capacity included;
/// `zeroize`'s volatile writes, which the compiler cannot drop).
impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.zeroize();
        self.ntt.zeroize();
    }
}

impl SecretKey {
    pub(crate) fn from_coeffs(params: &Parameters, coeffs: Vec<i8>) -> Self {
        let ring = params.ring();
        let wide: Zeroizing<Vec<i64>> = Zeroizing::new(coeffs.iter().map(|&c| c as i64).collect());
        let mut ntt = Poly::from_small_signed(ring, &wide, ring.max_level(), true);
        ntt.to_ntt(ring);
        SecretKey {
            params: params.clone(),
            coeffs,
            ntt,
        }
    }

    pub fn params(&self) -> &Parameters {
        &self.params
    }
}

/// Public key `(b, a) = (-a·s + e, a)` over `QP`; `a` is expanded from `seed`.
/// Encryption works over `QP` and divides by `P`, which leaves only rounding noise.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicKey {
    pub(crate) b: Poly,
    pub(crate) a: Poly,
    pub(crate) seed: Seed,
}

/// A hybrid key-switching key from `s'` to `s`: for each digit `j`,
/// `(b_j, a_j) = (-a_j·s + e_j + P·[Q̃_j]·s', a_j)` over `QP`, in the NTT domain,
/// `Q̃_j` being the CRT idempotent of digit `j` (1 modulo its primes, 0 modulo the other `Q` primes).
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchingKey {
    pub(crate) b: Vec<Poly>,
    /// The `a_j` expanded from `seeds`, or `None` when the key is kept
    /// [`KeyStorage::Seeded`] and each use regenerates them.
    pub(crate) a: Option<Vec<Poly>>,
    pub(crate) seeds: Vec<Seed>,
}

/// How a switching key holds its uniform halves `a_j` in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStorage {
    /// Expanded polynomials: the fastest key switches.
    #[default]
    Expanded,
    /// Only their 32-byte seeds: half the memory. Every key switch
    /// regenerates the `a_j` chunk by chunk as it uses them (AES-256 in
    /// counter mode, about 2.3 ns per residue with AES-NI: 45 ms of one core
    /// for a `levels16` key at the top level, 8 digits × 37 limbs × 2^16).
    Seeded,
}

impl KeyStorage {
    pub const ALL: [KeyStorage; 2] = [KeyStorage::Expanded, KeyStorage::Seeded];

    pub fn name(self) -> &'static str {
        match self {
            KeyStorage::Expanded => "expanded",
            KeyStorage::Seeded => "seeded",
        }
    }
}

impl SwitchingKey {
    /// The highest ciphertext level this key switches.
    pub fn level(&self) -> usize {
        self.b[0].level
    }

    pub fn storage(&self) -> KeyStorage {
        if self.a.is_some() {
            KeyStorage::Expanded
        } else {
            KeyStorage::Seeded
        }
    }

    /// Drops the expanded `a_j` (seeded) or regenerates them from the seeds
    /// (expanded); the key switches identically either way.
    pub fn set_storage(&mut self, params: &Parameters, storage: KeyStorage) {
        match storage {
            KeyStorage::Seeded => self.a = None,
            KeyStorage::Expanded if self.a.is_none() => {
                let level = self.level();
                self.a = Some(
                    self.seeds
                        .iter()
                        .map(|s| uniform_poly(params.ring(), s, level, true))
                        .collect(),
                );
            }
            KeyStorage::Expanded => {}
        }
    }

    /// Bytes held in memory.
    pub fn size_bytes(&self) -> usize {
        let polys: usize = self
            .b
            .iter()
            .chain(self.a.iter().flatten())
            .map(|p| p.data.len() * 8)
            .sum();
        polys + self.seeds.len() * std::mem::size_of::<Seed>()
    }

    /// [`SwitchingKey::size_bytes`] of a key with `digits` digits over
    /// `limbs` limbs of degree `n`, known before generating it.
    pub fn size_bytes_for(digits: usize, limbs: usize, n: usize, storage: KeyStorage) -> usize {
        let halves = match storage {
            KeyStorage::Expanded => 2,
            KeyStorage::Seeded => 1,
        };
        digits * (halves * limbs * n * 8 + std::mem::size_of::<Seed>())
    }
}

/// The keys an untrusted evaluator needs: relinearisation and Galois keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvaluationKeys {
    pub(crate) relin: Option<SwitchingKey>,
    pub(crate) galois: BTreeMap<u64, SwitchingKey>,
}

impl EvaluationKeys {
    pub fn has_relinearization_key(&self) -> bool {
        self.relin.is_some()
    }
    /// The Galois key for element `g`, if present.
    pub fn galois_key(&self, g: u64) -> Option<&SwitchingKey> {
        self.galois.get(&g)
    }
    /// Galois elements with a key.
    pub fn galois_elements(&self) -> Vec<u64> {
        self.galois.keys().copied().collect()
    }
    pub fn insert_galois(&mut self, g: u64, key: SwitchingKey) {
        self.galois.insert(g, key);
    }
    pub fn set_relinearization_key(&mut self, key: SwitchingKey) {
        self.relin = Some(key);
    }
    /// Sets how every Galois key holds its `a_j` (see [`KeyStorage`]).
    pub fn set_galois_storage(&mut self, params: &Parameters, storage: KeyStorage) {
        for key in self.galois.values_mut() {
            key.set_storage(params, storage);
        }
    }
}

/// Galois element `5^k mod 2N` rotating slots left by `k` (negative: right).
pub fn galois_element_for_rotation(n: usize, k: i64) -> u64 {
    let two_n = 2 * n as u64;
    let half = (n / 2) as i64;
    let mut e = k.rem_euclid(half) as u64;
    let mut g = 1u64;
    let mut base = 5u64;
    while e > 0 {
        if e & 1 == 1 {
            g = g * base % two_n;
        }
        base = base * base % two_n;
        e >>= 1;
    }
    g
}

/// Galois element of complex conjugation, `2N - 1`.
pub fn galois_element_conjugate(n: usize) -> u64 {
    2 * n as u64 - 1
}

pub struct KeyGenerator {
    params: Parameters,
    rng: Prng,
}

impl KeyGenerator {
    /// A key generator drawing all randomness from a CSPRNG seeded by the OS.
    pub fn new(params: &Parameters) -> Result<Self, CkksError> {
        Ok(KeyGenerator {
            params: params.clone(),
            rng: Prng::from_entropy()?,
        })
    }

    pub(crate) fn rng_mut(&mut self) -> &mut Prng {
        &mut self.rng
    }

    pub fn gen_secret_key(&mut self) -> SecretKey {
        let n = self.params.n();
        let s = Zeroizing::new(secret_coeffs(&mut self.rng, n, self.params.secret()));
        SecretKey::from_coeffs(&self.params, s.iter().map(|&c| c as i8).collect())
    }

    fn error_poly(&mut self, level: usize, ext: bool) -> Poly {
        let ring = self.params.ring();
        let e = Zeroizing::new(gaussian_coeffs(&mut self.rng, ring.n()));
        let mut p = Poly::from_small_signed(ring, &e, level, ext);
        p.to_ntt(ring);
        p
    }

    pub fn gen_public_key(&mut self, sk: &SecretKey) -> PublicKey {
        let params = self.params.clone();
        let ring = params.ring();
        let level = ring.max_level();
        let seed = self.rng.seed();
        let a = uniform_poly(ring, &seed, level, true);
        let mut b = self.error_poly(level, true);
        b.sub_mul_assign(ring, &a, &sk.ntt);
        PublicKey { b, a, seed }
    }

    /// Key switching from `s_from` (NTT over `QP`) to the secret key.
    pub fn gen_switching_key(&mut self, sk: &SecretKey, s_from: &Poly) -> SwitchingKey {
        let level = self.params.max_level();
        self.gen_switching_key_at(sk, s_from, level)
    }

    /// As [`KeyGenerator::gen_switching_key`], for ciphertexts at `level` or
    /// below only: the key holds the `Q` primes up to `level` (and `P`) and
    /// only the digits that start at or below it, so it is smaller in
    /// proportion. Panics when `level` exceeds the chain.
    pub fn gen_switching_key_at(
        &mut self,
        sk: &SecretKey,
        s_from: &Poly,
        level: usize,
    ) -> SwitchingKey {
        let params = self.params.clone();
        let ring = params.ring();
        assert!(
            level <= ring.max_level(),
            "key level {level} above the chain"
        );
        let n = ring.n();
        let digits = digits_up_to(&params, level);
        let mut sk_at = Zeroizing::new(sk.ntt.clone());
        sk_at.drop_to_level(level);
        let (mut bs, mut as_, mut seeds) = (Vec::new(), Vec::new(), Vec::new());
        for d in digits {
            let seed = self.rng.seed();
            let a = uniform_poly(ring, &seed, level, true);
            let mut b = self.error_poly(level, true);
            b.sub_mul_assign(ring, &a, &sk_at);
            for i in d {
                let m = ring.modulus(i);
                let pm = params.p_mod_q()[i];
                let pms = m.shoup(pm);
                let src = &s_from.data[i * n..(i + 1) * n];
                for (o, &x) in b.data[i * n..(i + 1) * n].iter_mut().zip(src) {
                    *o = m.add(*o, m.mul_shoup(x, pm, pms));
                }
            }
            bs.push(b);
            as_.push(a);
            seeds.push(seed);
        }
        SwitchingKey {
            b: bs,
            a: Some(as_),
            seeds,
        }
    }

    pub fn gen_relinearization_key(&mut self, sk: &SecretKey) -> SwitchingKey {
        let mut s2 = Zeroizing::new(sk.ntt.clone());
        s2.mul_assign(self.params.ring(), &sk.ntt);
        self.gen_switching_key(sk, &s2)
    }

    /// Key for the automorphism `X ↦ X^g`: switches from `σ_g(s)` to `s`.
    pub fn gen_galois_key(&mut self, sk: &SecretKey, g: u64) -> SwitchingKey {
        let level = self.params.max_level();
        self.gen_galois_key_at(sk, g, level)
    }

    /// [`KeyGenerator::gen_galois_key`] for ciphertexts at `level` or below
    /// (see [`KeyGenerator::gen_switching_key_at`]).
    pub fn gen_galois_key_at(&mut self, sk: &SecretKey, g: u64, level: usize) -> SwitchingKey {
        let perm = self.params.ring().galois_permutation(g);
        let sg = Zeroizing::new(sk.ntt.permuted(&perm));
        self.gen_switching_key_at(sk, &sg, level)
    }

    /// Relinearisation key plus Galois keys for the given rotations (and
    /// conjugation if asked).
    pub fn gen_evaluation_keys(
        &mut self,
        sk: &SecretKey,
        rotations: &[i64],
        conjugation: bool,
    ) -> EvaluationKeys {
        let n = self.params.n();
        let mut keys = EvaluationKeys {
            relin: Some(self.gen_relinearization_key(sk)),
            galois: BTreeMap::new(),
        };
        let mut elements: Vec<u64> = rotations
            .iter()
            .map(|&k| galois_element_for_rotation(n, k))
            .collect();
        if conjugation {
            elements.push(galois_element_conjugate(n));
        }
        for g in elements {
            if g != 1 && !keys.galois.contains_key(&g) {
                let k = self.gen_galois_key(sk, g);
                keys.galois.insert(g, k);
            }
        }
        keys
    }
}

/// The digits (ranges of `Q` limb indices) a key for ciphertexts at `level`
/// or below holds: those starting at or below `level`, the last one cut there.
pub fn digits_up_to(params: &Parameters, level: usize) -> Vec<std::ops::Range<usize>> {
    params
        .digits()
        .iter()
        .filter(|d| d.start <= level)
        .map(|d| d.start..d.end.min(level + 1))
        .collect()
}

/// Drops the special-prime limbs of a polynomial.
pub(crate) fn truncate_ext(ring: &RingContext, p: &mut Poly) {
    if p.ext {
        p.data.truncate((p.level + 1) * ring.n());
        p.ext = false;
    }
}

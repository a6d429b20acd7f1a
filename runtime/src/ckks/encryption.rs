//! Ciphertexts, encryption (public key, or secret key with a seeded `a`) and decryption.

use super::encoding::Plaintext;
use super::evaluator::keyswitch::mod_down;
use super::keys::{truncate_ext, PublicKey, SecretKey};
use super::params::Parameters;
use super::ring::Poly;
use super::sampling::{gaussian_coeffs, ternary_coeffs, uniform_poly, Prng, Seed};
use super::CkksError;
use zeroize::Zeroizing;

/// A degree-1 ciphertext `(c0, c1)` with `c0 + c1·s ≈ m`, NTT domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Ciphertext {
    pub(crate) c0: Poly,
    pub(crate) c1: Poly,
    pub(crate) scale: f64,
    pub(crate) slots: usize,
    /// Set while `c1` is still the uniform polynomial expanded from this seed
    /// (fresh secret-key encryptions): serialization then stores only the seed.
    pub(crate) seed: Option<Seed>,
}

impl Ciphertext {
    pub fn level(&self) -> usize {
        self.c0.level
    }
    pub fn scale(&self) -> f64 {
        self.scale
    }
    pub fn slots(&self) -> usize {
        self.slots
    }
    /// Overrides the recorded scale (for callers that manage scales themselves).
    pub fn set_scale(&mut self, scale: f64) {
        self.scale = scale;
    }
}

enum Key {
    Public(PublicKey),
    /// `s` over `Q`, wiped on drop.
    Secret(Zeroizing<Poly>),
}

pub struct Encryptor {
    params: Parameters,
    key: Key,
    rng: Prng,
}

impl Encryptor {
    pub fn with_public_key(params: &Parameters, pk: &PublicKey) -> Result<Self, CkksError> {
        Ok(Encryptor {
            params: params.clone(),
            key: Key::Public(pk.clone()),
            rng: Prng::from_entropy()?,
        })
    }

    /// Secret-key encryption: `c1` is expanded from a fresh seed, which halves
    /// the serialized size of fresh ciphertexts.
    pub fn with_secret_key(params: &Parameters, sk: &SecretKey) -> Result<Self, CkksError> {
        let mut s = Zeroizing::new(sk.ntt.clone());
        truncate_ext(params.ring(), &mut s);
        Ok(Encryptor {
            params: params.clone(),
            key: Key::Secret(s),
            rng: Prng::from_entropy()?,
        })
    }

    fn error(&mut self, level: usize) -> Poly {
        self.error_poly(level, false)
    }

    fn error_ext(&mut self, level: usize) -> Poly {
        self.error_poly(level, true)
    }

    fn error_poly(&mut self, level: usize, ext: bool) -> Poly {
        let ring = self.params.ring();
        let e = Zeroizing::new(gaussian_coeffs(&mut self.rng, ring.n()));
        let mut p = Poly::from_small_signed(ring, &e, level, ext);
        p.to_ntt(ring);
        p
    }

    pub fn encrypt(&mut self, pt: &Plaintext) -> Ciphertext {
        let params = self.params.clone();
        let ring = params.ring();
        let level = pt.poly.level;
        match &self.key {
            Key::Secret(s) => {
                let mut s = s.clone();
                s.drop_to_level(level);
                // `a·s` (with `c0`, it gives `m + e`) is wiped too.
                let seed = self.rng.seed();
                let a = uniform_poly(ring, &seed, level, false);
                let mut c0 = self.error(level);
                c0.add_assign(ring, &pt.poly);
                let mut as_ = Zeroizing::new(a.clone());
                as_.mul_assign(ring, &s);
                c0.sub_assign(ring, &as_);
                Ciphertext {
                    c0,
                    c1: a,
                    scale: pt.scale,
                    slots: pt.slots,
                    seed: Some(seed),
                }
            }
            Key::Public(pk) => {
                let (mut b, mut a) = (pk.b.clone(), pk.a.clone());

                b.drop_to_level(level);
                a.drop_to_level(level);
                let u = Zeroizing::new(ternary_coeffs(&mut self.rng, ring.n()));
                let mut u = Zeroizing::new(Poly::from_small_signed(ring, &u, level, true));
                u.to_ntt(ring);
                let mut c0 = self.error_ext(level);
                c0.add_mul_assign(ring, &b, &u);
                let mut c1 = self.error_ext(level);
                c1.add_mul_assign(ring, &a, &u);
                let (mut c0, c1) = rayon::join(|| mod_down(&params, c0), || mod_down(&params, c1));
                c0.add_assign(ring, &pt.poly);
                Ciphertext {
                    c0,
                    c1,
                    scale: pt.scale,
                    slots: pt.slots,
                    seed: None,
                }
            }
        }
    }
}

pub struct Decryptor {
    pub(crate) params: Parameters,
    /// `s` over `Q`, wiped on drop.
    s: Zeroizing<Poly>,
}

impl Decryptor {
    pub fn new(params: &Parameters, sk: &SecretKey) -> Self {
        let mut s = Zeroizing::new(sk.ntt.clone());
        truncate_ext(params.ring(), &mut s);
        Decryptor {
            params: params.clone(),
            s,
        }
    }

    pub fn decrypt(&self, ct: &Ciphertext) -> Plaintext {
        let ring = self.params.ring();
        let mut s = self.s.clone();
        s.drop_to_level(ct.level());
        let mut m = ct.c0.clone();
        m.add_mul_assign(ring, &ct.c1, &s);
        Plaintext {
            poly: m,
            scale: ct.scale,
            slots: ct.slots,
        }
    }
}

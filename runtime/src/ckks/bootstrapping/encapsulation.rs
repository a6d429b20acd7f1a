//! Sparse-secret encapsulation and ModRaise.
//!
//! The user's secret `s` is dense (uniform ternary), so the standard's
//! security table applies to every public key. ModRaise, however, turns a
//! level-0 ciphertext into one that decrypts to `t = m + q_0·I` with
//! `|I| ≤ (h + 1)/2` for a secret of Hamming weight `h` (each coefficient of
//! `c_1·s/q_0` is a sum of `h` terms in `[−1/2, 1/2]`, plus `c_0/q_0`), and
//! EvalMod's cost grows with that bound. So at level 0 the ciphertext is
//! switched to an ephemeral sparse secret `s'` of weight `h'` (32 by default,
//! so `|I| ≤ 16.5` deterministically), raised, and switched back to `s`:
//!
//! * dense → sparse: a key-switching key that exists only modulo `q_0·p_0`
//!   (one special prime); an RLWE sample under a sparse secret with a
//!   ~121-bit modulus at `N = 2^16` is far inside the secure region, and it is
//!   never published at a larger modulus;
//! * sparse → dense: an ordinary hybrid key at the top level, an RLWE sample
//!   under the dense `s`.
//!
//! This is the encapsulation of Bossuat, Troncoso-Pastoriza and Hubaux
//! (ACNS 2022), written from the description in the paper.

use crate::ckks::encryption::Ciphertext;
use crate::ckks::keys::{KeyGenerator, SecretKey, SwitchingKey};
use crate::ckks::params::Parameters;
use crate::ckks::ring::Poly;
use crate::ckks::sampling::{gaussian_coeffs, secret_coeffs};
use crate::ckks::{CkksError, Evaluator, SecretDistribution};
use zeroize::Zeroizing;

/// Key switching from the dense secret to the sparse one, modulo `q_0·p_0`
/// only: `b = −a·s' + e + p_0·s (mod q_0)`, `b = −a·s' + e (mod p_0)`, NTT domain.
#[derive(Clone)]
pub struct DenseToSparseKey {
    /// Residues modulo `q_0` and modulo `p_0`.
    pub(crate) b: [Vec<u64>; 2],
    pub(crate) a: [Vec<u64>; 2],
}

/// The two keys of the encapsulation.
#[derive(Clone)]
pub struct EncapsulationKeys {
    pub(crate) to_sparse: DenseToSparseKey,
    pub(crate) to_dense: SwitchingKey,
}

impl EncapsulationKeys {
    /// Bytes held in memory.
    pub fn size_bytes(&self) -> usize {
        let small: usize = self
            .to_sparse
            .b
            .iter()
            .chain(&self.to_sparse.a)
            .map(|v| v.len() * 8)
            .sum();
        small + self.to_dense.size_bytes()
    }
}

/// Index of `p_0` among the ring's moduli.
fn p0_index(params: &Parameters) -> usize {
    params.ring().q_count()
}

impl KeyGenerator {
    /// Both encapsulation keys for an ephemeral secret of Hamming weight `h`.
    pub fn gen_encapsulation_keys(
        &mut self,
        sk: &SecretKey,
        h: usize,
    ) -> Result<EncapsulationKeys, CkksError> {
        let params = sk.params().clone();
        let ring = params.ring();
        let n = ring.n();
        if params.p().is_empty() {
            return Err(CkksError::InvalidParameters(
                "bootstrapping needs a special prime".into(),
            ));
        }
        if params.p()[0] < params.q()[0] {
            return Err(CkksError::InvalidParameters(
                "the first special prime must exceed q_0 for the level-0 key switch".into(),
            ));
        }
        if h == 0 || h > n {
            return Err(CkksError::InvalidParameters(format!(
                "ephemeral Hamming weight {h} outside 1..={n}"
            )));
        }
        let rng = self.rng_mut();
        // Every copy of secret material below is wiped when dropped.
        let sparse = Zeroizing::new(secret_coeffs(
            rng,
            n,
            SecretDistribution::FixedHammingWeight(h),
        ));
        let sparse_key = SecretKey::from_coeffs(&params, sparse.iter().map(|&c| c as i8).collect());

        // Dense → sparse, modulo q_0 and p_0.
        let idx = [0usize, p0_index(&params)];
        let dense_limbs = [sk.ntt.limb(0), sk.ntt.limb(ring.max_level() + 1)];
        let sparse_limbs = [
            sparse_key.ntt.limb(0),
            sparse_key.ntt.limb(ring.max_level() + 1),
        ];
        let e = Zeroizing::new(gaussian_coeffs(rng, n));
        let mut b: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut a: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for (k, &mi) in idx.iter().enumerate() {
            let m = ring.modulus(mi);
            let av: Vec<u64> = (0..n).map(|_| rng.below(m.value())).collect();
            let mut ev: Zeroizing<Vec<u64>> =
                Zeroizing::new(e.iter().map(|&x| m.reduce_small_ct(x)).collect());
            ring.ntt(mi).forward(&mut ev);
            let p0 = m.reduce(params.p()[0]);
            let bv: Vec<u64> = (0..n)
                .map(|x| {
                    let mut v = m.sub(ev[x], m.mul(av[x], sparse_limbs[k][x]));
                    if k == 0 {
                        v = m.add(v, m.mul(p0, dense_limbs[k][x]));
                    }
                    v
                })
                .collect();
            b[k] = bv;
            a[k] = av;
        }
        let to_dense = self.gen_switching_key(sk, &sparse_key.ntt);
        Ok(EncapsulationKeys {
            to_sparse: DenseToSparseKey { b, a },
            to_dense,
        })
    }
}

impl Evaluator {
    /// Switches a level-0 ciphertext from the dense to the sparse secret.
    pub(crate) fn switch_to_sparse(
        &self,
        ct: &Ciphertext,
        key: &DenseToSparseKey,
    ) -> Result<Ciphertext, CkksError> {
        if ct.level() != 0 {
            return Err(CkksError::Mismatch(
                "the dense-to-sparse switch runs at level 0".into(),
            ));
        }
        let ring = self.params.ring();
        let n = ring.n();
        let (mq, mp) = (ring.modulus(0), ring.modulus(p0_index(&self.params)));
        let (ntt_q, ntt_p) = (ring.ntt(0), ring.ntt(p0_index(&self.params)));
        let p0 = mp.value();
        // c_1 as a centred integer, residues mod q_0 and p_0 (NTT).
        let mut c1q = ct.c1.limb(0).to_vec();
        ntt_q.inverse(&mut c1q);
        let half_q = mq.value() / 2;
        let mut c1p: Vec<u64> = c1q
            .iter()
            .map(|&v| {
                let signed = if v > half_q {
                    v as i64 - mq.value() as i64
                } else {
                    v as i64
                };
                mp.reduce_i64(signed)
            })
            .collect();
        ntt_p.forward(&mut c1p);
        let c1q = ct.c1.limb(0);
        // Inner products, then division by p_0 with rounding.
        let product = |k: &[Vec<u64>; 2]| -> Vec<u64> {
            let uq: Vec<u64> = (0..n).map(|x| mq.mul(c1q[x], k[0][x])).collect();
            let mut up: Vec<u64> = (0..n).map(|x| mp.mul(c1p[x], k[1][x])).collect();
            ntt_p.inverse(&mut up);
            let half_p = p0 / 2;
            let mut corr: Vec<u64> = up
                .iter()
                .map(|&v| {
                    let signed = if v > half_p {
                        v as i64 - p0 as i64
                    } else {
                        v as i64
                    };
                    mq.reduce_i64(signed)
                })
                .collect();
            ntt_q.forward(&mut corr);
            let inv = mq.inv(mq.reduce(p0));
            uq.iter()
                .zip(&corr)
                .map(|(&u, &c)| mq.mul(mq.sub(u, c), inv))
                .collect()
        };
        let (k0, k1) = rayon::join(|| product(&key.b), || product(&key.a));
        let mut out = ct.clone();
        for (o, k) in out.c0.limb_mut(0).iter_mut().zip(&k0) {
            *o = mq.add(*o, *k);
        }
        out.c1.limb_mut(0).copy_from_slice(&k1);
        out.seed = None;
        Ok(out)
    }

    /// ModRaise: reinterprets a level-0 ciphertext's centred residues modulo
    /// every prime up to `level`. It then decrypts to `m + q_0·I`.
    pub(crate) fn mod_raise(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        if ct.level() != 0 {
            return Err(CkksError::Mismatch(
                "ModRaise takes a level-0 ciphertext".into(),
            ));
        }
        let ring = self.params.ring();
        let q0 = ring.modulus(0).value();
        let raise = |p: &Poly| -> Poly {
            let mut c = p.limb(0).to_vec();
            ring.ntt(0).inverse(&mut c);
            let signed: Vec<i64> = c
                .iter()
                .map(|&v| {
                    if v > q0 / 2 {
                        v as i64 - q0 as i64
                    } else {
                        v as i64
                    }
                })
                .collect();
            let mut out = Poly::from_signed(ring, &signed, level, false);
            out.to_ntt(ring);
            out
        };
        let (c0, c1) = rayon::join(|| raise(&ct.c0), || raise(&ct.c1));
        Ok(Ciphertext {
            c0,
            c1,
            scale: ct.scale,
            slots: ct.slots,
            seed: None,
        })
    }

    /// Switches a ciphertext from the sparse secret back to the dense one.
    pub(crate) fn switch_to_dense(
        &self,
        ct: &Ciphertext,
        key: &SwitchingKey,
    ) -> Result<Ciphertext, CkksError> {
        let ring = self.params.ring();
        let (k0, k1) = self.key_switch(&ct.c1, key);
        let mut c0 = ct.c0.clone();
        c0.add_assign(ring, &k0);
        Ok(Ciphertext {
            c0,
            c1: k1,
            scale: ct.scale,
            slots: ct.slots,
            seed: None,
        })
    }
}

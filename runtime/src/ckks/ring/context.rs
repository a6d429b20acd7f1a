//! The RNS ring context: the prime chain `q_0..q_L` (ciphertext moduli) and the
//! special primes `p_0..p_{α-1}` (key switching), their NTT tables, and the
//! cached tables for Galois automorphisms and basis extensions.

use super::basis::BasisExtender;
use super::modulus::Modulus;
use super::ntt::NttTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Source and target modulus indices of a cached basis extension.
type ExtenderKey = (Vec<usize>, Vec<usize>);

pub struct RingContext {
    n: usize,
    /// All moduli: first the `Q` chain, then the special primes `P`.
    moduli: Vec<Modulus>,
    q_count: usize,
    ntt: Vec<NttTable>,
    /// Exponent of the evaluation point at each NTT index (shared by all primes).
    exponent: Vec<u32>,
    /// NTT index evaluating at `ψ^e`, indexed by `e / 2` (odd `e`).
    index_of: Vec<u32>,
    galois_cache: Mutex<HashMap<u64, Arc<Vec<u32>>>>,
    extender_cache: Mutex<HashMap<ExtenderKey, Arc<BasisExtender>>>,
}

impl RingContext {
    /// `q` and `p` must be distinct primes `≡ 1 mod 2n`, below 2^62.
    pub fn new(n: usize, q: &[u64], p: &[u64]) -> Result<Self, String> {
        let all: Vec<u64> = q.iter().chain(p).copied().collect();
        let ntt: Vec<NttTable> = all
            .iter()
            .map(|&m| {
                NttTable::new(n, m).ok_or_else(|| format!("{m} is not an NTT prime for N={n}"))
            })
            .collect::<Result<_, _>>()?;
        let exponent = ntt[0].exponents();
        // The crate orders every prime's evaluations identically (bit-reversed
        // powers of its own root); check it rather than assume it.
        for t in &ntt[1..] {
            if t.exponents() != exponent {
                return Err("NTT evaluation order differs between primes".into());
            }
        }
        let mut index_of = vec![0u32; n];
        for (j, &e) in exponent.iter().enumerate() {
            index_of[(e / 2) as usize] = j as u32;
        }
        Ok(RingContext {
            n,
            moduli: all.iter().map(|&m| Modulus::new(m)).collect(),
            q_count: q.len(),
            ntt,
            exponent,
            index_of,
            galois_cache: Mutex::new(HashMap::new()),
            extender_cache: Mutex::new(HashMap::new()),
        })
    }

    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of `Q` primes (`L + 1`).
    #[inline]
    pub fn q_count(&self) -> usize {
        self.q_count
    }
    /// Number of special primes.
    #[inline]
    pub fn p_count(&self) -> usize {
        self.moduli.len() - self.q_count
    }
    #[inline]
    pub fn max_level(&self) -> usize {
        self.q_count - 1
    }
    #[inline]
    pub fn modulus(&self, idx: usize) -> &Modulus {
        &self.moduli[idx]
    }
    #[inline]
    pub fn ntt(&self, idx: usize) -> &NttTable {
        &self.ntt[idx]
    }

    /// Modulus indices of a polynomial at `level`, with the special primes if `ext`.
    pub fn limb_indices(&self, level: usize, ext: bool) -> Vec<usize> {
        let mut v: Vec<usize> = (0..=level).collect();
        if ext {
            v.extend(self.q_count..self.moduli.len());
        }
        v
    }

    /// Modulus index of limb `i` of a polynomial at `level` whose limbs are
    /// `q_0..q_level` followed by the special primes.
    #[inline]
    pub fn limb_modulus_index(&self, level: usize, i: usize) -> usize {
        if i <= level {
            i
        } else {
            self.q_count() + (i - level - 1)
        }
    }

    /// Index permutation implementing `X ↦ X^g` on NTT-domain vectors:
    /// `out[j] = in[perm[j]]`.
    pub fn galois_permutation(&self, g: u64) -> Arc<Vec<u32>> {
        let two_n = 2 * self.n as u64;
        let g = g % two_n;
        assert!(g & 1 == 1, "Galois element must be odd");
        let mut cache = self.galois_cache.lock().expect("galois cache poisoned");
        cache
            .entry(g)
            .or_insert_with(|| {
                Arc::new(
                    self.exponent
                        .iter()
                        .map(|&e| {
                            let t = (e as u64 * g) % two_n;
                            self.index_of[(t / 2) as usize]
                        })
                        .collect(),
                )
            })
            .clone()
    }

    /// Cached fast basis extension from the moduli `from` to the moduli `to`.
    pub fn extender(&self, from: &[usize], to: &[usize]) -> Arc<BasisExtender> {
        let key = (from.to_vec(), to.to_vec());
        if let Some(e) = self.extender_cache.lock().expect("cache").get(&key) {
            return e.clone();
        }
        let e = Arc::new(BasisExtender::new(
            from.iter().map(|&i| self.moduli[i]).collect(),
            to.iter().map(|&i| self.moduli[i]).collect(),
        ));
        self.extender_cache
            .lock()
            .expect("cache")
            .insert(key, e.clone());
        e
    }
}

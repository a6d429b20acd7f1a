//! Galois automorphisms: slot rotations, conjugation, and hoisted rotations
//! sharing one key-switching decomposition.

use super::keyswitch::Decomposed;
use super::Evaluator;
use crate::ckks::encryption::Ciphertext;
use crate::ckks::keys::{galois_element_conjugate, galois_element_for_rotation};
use crate::ckks::CkksError;

impl Evaluator {
    /// The Galois key for `g`, checked to reach ciphertexts at `level`.
    fn galois_key(
        &self,
        g: u64,
        level: usize,
    ) -> Result<&crate::ckks::keys::SwitchingKey, CkksError> {
        let key = self
            .keys()?
            .galois
            .get(&g)
            .ok_or_else(|| CkksError::MissingKey(format!("Galois key for element {g}")))?;
        if key.level() < level {
            return Err(CkksError::MissingKey(format!(
                "Galois key for element {g} reaches level {}, the ciphertext is at level {level}",
                key.level()
            )));
        }
        Ok(key)
    }

    /// The Galois keys for `elements`, each checked to exist and reach `level`.
    pub(crate) fn keys_for(
        &self,
        elements: impl Iterator<Item = u64>,
        level: usize,
    ) -> Result<std::collections::BTreeMap<u64, &crate::ckks::keys::SwitchingKey>, CkksError> {
        elements
            .map(|g| Ok((g, self.galois_key(g, level)?)))
            .collect()
    }

    fn apply_galois_decomposed(
        &self,
        ct: &Ciphertext,
        dec: &Decomposed,
        g: u64,
    ) -> Result<Ciphertext, CkksError> {
        let ring = self.params.ring();
        let key = self.galois_key(g, ct.level())?;
        let perm = ring.galois_permutation(g);
        let (k0, k1) = self.key_inner_product(dec, key, Some(&perm));
        let (k0, k1) = rayon::join(|| self.mod_down(k0), || self.mod_down(k1));
        let mut c0 = ct.c0.permuted(&perm);
        c0.add_assign(ring, &k0);
        Ok(Ciphertext {
            c0,
            c1: k1,
            scale: ct.scale,
            slots: ct.slots,
            seed: None,
        })
    }

    /// Applies `X ↦ X^g` (needs the Galois key for `g`).
    pub fn apply_galois(&self, ct: &Ciphertext, g: u64) -> Result<Ciphertext, CkksError> {
        if g % (2 * self.params.n() as u64) == 1 {
            return Ok(ct.clone());
        }
        self.galois_key(g, ct.level())?;
        let dec = self.decompose(&ct.c1);
        self.apply_galois_decomposed(ct, &dec, g)
    }

    /// Rotates the slots left by `k` (right if negative).
    pub fn rotate(&self, ct: &Ciphertext, k: i64) -> Result<Ciphertext, CkksError> {
        self.apply_galois(ct, galois_element_for_rotation(self.params.n(), k))
    }

    /// Complex conjugation of every slot.
    pub fn conjugate(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.apply_galois(ct, galois_element_conjugate(self.params.n()))
    }

    /// Several rotations of one ciphertext sharing a single decomposition of `c1`
    /// (the expensive ModUp is done once, not once per rotation).
    pub fn rotate_hoisted(
        &self,
        ct: &Ciphertext,
        ks: &[i64],
    ) -> Result<Vec<Ciphertext>, CkksError> {
        let n = self.params.n();
        let gs: Vec<u64> = ks
            .iter()
            .map(|&k| galois_element_for_rotation(n, k))
            .collect();
        for &g in &gs {
            if g != 1 {
                self.galois_key(g, ct.level())?;
            }
        }
        let dec = self.decompose(&ct.c1);
        gs.iter()
            .map(|&g| {
                if g == 1 {
                    Ok(ct.clone())
                } else {
                    self.apply_galois_decomposed(ct, &dec, g)
                }
            })
            .collect()
    }
}

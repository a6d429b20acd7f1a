//! Slot-wise linear maps `v ↦ M·v` evaluated from the diagonals of `M`,
//! `M·v = Σ_k diag_k ⊙ rot_k(v)` with `diag_k[t] = M[t][t+k]`, by baby-step
//! giant-step: `Σ_j rot_{j·n1}( Σ_i rot_{-j·n1}(diag_{j·n1+i}) ⊙ rot_i(v) )`.
//! The baby rotations share one hoisted decomposition.

use crate::ckks::encoding::{Encoder, Plaintext};
use crate::ckks::encryption::Ciphertext;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::{CkksError, Complex64};
use std::collections::BTreeMap;

pub struct LinearTransform {
    slots: usize,
    n1: usize,
    scale: f64,
    level: usize,
    /// Giant offset `j·n1` → baby index `i` → pre-rotated, encoded diagonal.
    groups: BTreeMap<usize, BTreeMap<usize, Plaintext>>,
}

impl LinearTransform {
    /// `diagonals[k]` (for `k < slots`) is diagonal `k`; missing ones are zero.
    /// The diagonals are encoded at `level` with `scale` (use `q_level` so that
    /// a rescale afterwards returns to the input scale). `n1` is the baby-step
    /// count (a power of two; default about the square root of the span).
    pub fn new(
        encoder: &Encoder,
        diagonals: &BTreeMap<usize, Vec<Complex64>>,
        slots: usize,
        level: usize,
        scale: f64,
        n1: Option<usize>,
    ) -> Result<Self, CkksError> {
        if diagonals.is_empty() {
            return Err(CkksError::InvalidArgument("no diagonals".into()));
        }
        let span = diagonals.keys().max().copied().unwrap_or(0) + 1;
        let n1 = n1.unwrap_or_else(|| ((span as f64).sqrt().ceil() as usize).next_power_of_two());
        if !n1.is_power_of_two() || n1 > slots {
            return Err(CkksError::InvalidArgument(format!(
                "baby steps {n1} must be a power of two ≤ slots"
            )));
        }
        let mut groups: BTreeMap<usize, BTreeMap<usize, Plaintext>> = BTreeMap::new();
        for (&k, diag) in diagonals {
            if k >= slots || diag.len() != slots {
                return Err(CkksError::InvalidArgument(format!(
                    "diagonal {k} must have index < {slots} and {slots} entries"
                )));
            }
            let (g, i) = (k / n1 * n1, k % n1);
            // rot_{-g}(diag)[t] = diag[t - g].
            let rotated: Vec<Complex64> =
                (0..slots).map(|t| diag[(t + slots - g) % slots]).collect();
            groups
                .entry(g)
                .or_default()
                .insert(i, encoder.encode(&rotated, level, scale)?);
        }
        Ok(LinearTransform {
            slots,
            n1,
            scale,
            level,
            groups,
        })
    }

    /// From a dense `slots × slots` matrix (row-major).
    pub fn from_matrix(
        encoder: &Encoder,
        matrix: &[Vec<Complex64>],
        level: usize,
        scale: f64,
        n1: Option<usize>,
    ) -> Result<Self, CkksError> {
        let n = matrix.len();
        let mut diags = BTreeMap::new();
        for k in 0..n {
            let d: Vec<Complex64> = (0..n).map(|t| matrix[t][(t + k) % n]).collect();
            if d.iter().any(|z| z.norm() != 0.0) {
                diags.insert(k, d);
            }
        }
        Self::new(encoder, &diags, n, level, scale, n1)
    }

    /// Rotations whose Galois keys the evaluation needs.
    pub fn rotations(&self) -> Vec<i64> {
        let mut r: Vec<i64> = self
            .groups
            .values()
            .flat_map(|g| g.keys().map(|&i| i as i64))
            .chain(self.groups.keys().map(|&g| g as i64))
            .filter(|&k| k != 0)
            .collect();
        r.sort();
        r.dedup();
        r
    }

    /// Bytes held by the encoded diagonals.
    pub fn size_bytes(&self) -> usize {
        self.groups
            .values()
            .flat_map(|g| g.values())
            .map(|pt| pt.poly.data.len() * 8)
            .sum()
    }

    pub fn baby_steps(&self) -> usize {
        self.n1
    }
    pub fn level(&self) -> usize {
        self.level
    }
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl Evaluator {
    /// `M·v`; the output scale is the input scale times the diagonals' scale
    /// (rescale afterwards).
    pub fn linear_transform(
        &self,
        ct: &Ciphertext,
        lt: &LinearTransform,
    ) -> Result<Ciphertext, CkksError> {
        if ct.slots() != lt.slots {
            return Err(CkksError::Mismatch(format!(
                "transform on {} slots, ciphertext has {}",
                lt.slots,
                ct.slots()
            )));
        }
        let ct = if ct.level() > lt.level {
            self.drop_level(ct, lt.level)
        } else {
            ct.clone()
        };
        let babies: Vec<usize> = {
            let mut b: Vec<usize> = lt.groups.values().flat_map(|g| g.keys().copied()).collect();
            b.sort();
            b.dedup();
            b
        };
        let rotated =
            self.rotate_hoisted(&ct, &babies.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
        let by_index: BTreeMap<usize, &Ciphertext> =
            babies.iter().copied().zip(rotated.iter()).collect();
        let mut acc: Option<Ciphertext> = None;
        for (&g, group) in &lt.groups {
            let mut inner: Option<Ciphertext> = None;
            for (i, pt) in group {
                let term = self.mul_plain(by_index[i], pt)?;
                inner = Some(match inner {
                    None => term,
                    Some(s) => self.add(&s, &term)?,
                });
            }
            let inner = inner.expect("groups are nonempty");
            let inner = if g == 0 {
                inner
            } else {
                self.rotate(&inner, g as i64)?
            };
            acc = Some(match acc {
                None => inner,
                Some(s) => self.add(&s, &inner)?,
            });
        }
        Ok(acc.expect("at least one diagonal"))
    }
}

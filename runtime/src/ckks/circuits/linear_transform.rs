//! Slot-wise linear maps `v ↦ M·v` evaluated from the diagonals of `M`,
//! `M·v = Σ_k diag_k ⊙ rot_k(v)` with `diag_k[t] = M[t][t+k]`, by baby-step
//! giant-step: `Σ_j rot_{j·n1}( Σ_i rot_{-j·n1}(diag_{j·n1+i}) ⊙ rot_i(v) )`.
//! The baby rotations share one hoisted decomposition.

use crate::ckks::encoding::{Encoder, Plaintext};
use crate::ckks::encryption::Ciphertext;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::ring::Poly;
use crate::ckks::{CkksError, Complex64};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A pre-rotated diagonal: encoded over every limb of the transform's level,
/// or (compact) only its `2·slots` nonzero integer coefficients, expanded to
/// the NTT domain when used — 1/(level + 1) of the memory at full packing,
/// for one NTT per limb per use.
enum Diagonal {
    Encoded(Plaintext),
    Compact(Vec<i64>),
}

pub struct LinearTransform {
    slots: usize,
    n1: usize,
    scale: f64,
    level: usize,
    /// Giant offset `j·n1` → baby index `i` → pre-rotated diagonal.
    groups: BTreeMap<usize, BTreeMap<usize, Diagonal>>,
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
        Self::build(encoder, diagonals, slots, level, scale, n1, false)
    }

    /// As [`LinearTransform::new`], storing the diagonals compactly (see
    /// `Diagonal`); falls back to the encoded form for a diagonal whose
    /// coefficients exceed 63 bits.
    pub fn new_compact(
        encoder: &Encoder,
        diagonals: &BTreeMap<usize, Vec<Complex64>>,
        slots: usize,
        level: usize,
        scale: f64,
        n1: Option<usize>,
    ) -> Result<Self, CkksError> {
        Self::build(encoder, diagonals, slots, level, scale, n1, true)
    }

    fn build(
        encoder: &Encoder,
        diagonals: &BTreeMap<usize, Vec<Complex64>>,
        slots: usize,
        level: usize,
        scale: f64,
        n1: Option<usize>,
        compact: bool,
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
        let mut groups: BTreeMap<usize, BTreeMap<usize, Diagonal>> = BTreeMap::new();
        let n = encoder.params().n();
        let gap = n / 2 / slots;
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
            let d = if compact {
                let c = encoder.encode_coeffs(&rotated, scale)?;
                let fits = c.iter().all(|&x| x.unsigned_abs() < 1 << 62);
                if fits {
                    let nonzero = (0..slots)
                        .map(|i| c[i * gap] as i64)
                        .chain((0..slots).map(|i| c[n / 2 + i * gap] as i64))
                        .collect();
                    Diagonal::Compact(nonzero)
                } else {
                    Diagonal::Encoded(encoder.encode(&rotated, level, scale)?)
                }
            } else {
                Diagonal::Encoded(encoder.encode(&rotated, level, scale)?)
            };
            groups.entry(g).or_default().insert(i, d);
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
            .map(|d| match d {
                Diagonal::Encoded(pt) => pt.poly.data.len() * 8,
                Diagonal::Compact(c) => c.len() * 8,
            })
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
    /// The NTT-domain plaintext of a compact diagonal at `level`.
    fn expand_compact(&self, c: &[i64], lt: &LinearTransform, level: usize) -> Plaintext {
        let ring = self.params.ring();
        let n = ring.n();
        let slots = lt.slots;
        let gap = n / 2 / slots;
        let mut poly = Poly::zero(ring, level, false, false);
        poly.data
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(l, limb)| {
                let m = ring.modulus(l);
                for i in 0..slots {
                    limb[i * gap] = m.reduce_i64(c[i]);
                    limb[n / 2 + i * gap] = m.reduce_i64(c[slots + i]);
                }
                ring.ntt(l).forward(limb);
            });
        Plaintext {
            poly: Poly { ntt: true, ..poly },
            scale: lt.scale,
            slots,
        }
    }

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
            // Compact diagonals are expanded group by group (bounded memory).
            let expanded: Vec<(usize, std::borrow::Cow<'_, Plaintext>)> = group
                .par_iter()
                .map(|(&i, d)| {
                    let pt = match d {
                        Diagonal::Encoded(pt) => std::borrow::Cow::Borrowed(pt),
                        Diagonal::Compact(c) => {
                            std::borrow::Cow::Owned(self.expand_compact(c, lt, ct.level()))
                        }
                    };
                    (i, pt)
                })
                .collect();
            for (i, pt) in &expanded {
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

//! Slot-wise linear maps `v ↦ M·v` evaluated from the diagonals of `M`,
//! `M·v = Σ_k diag_k ⊙ rot_k(v)` with `diag_k[t] = M[t][t+k]`, by baby-step
//! giant-step: `Σ_j rot_{j·n1}( Σ_i rot_{-j·n1}(diag_{j·n1+i}) ⊙ rot_i(v) )`.
//!
//! Evaluation is double-hoisted (Bossuat et al., Eurocrypt 2021): the baby
//! rotations share one decomposition and stay in the extended basis `Q_ℓ·P`
//! (multiplied by `P`, no ModDown); each inner sum is accumulated there with
//! diagonals that are also extended to `Q_ℓ·P`; only its `c1` is brought down
//! to `Q_ℓ` to be decomposed for the giant rotation, whose key-switching
//! output is again summed in `Q_ℓ·P`; one ModDown per component ends the
//! transform. A transform with `b` baby and `g` giant steps thus costs
//! `1 + g` decompositions and `g + 2` ModDowns instead of `2(b + g)`.
//!
//! The diagonals and their products then cover the special primes too. A
//! transform with many diagonals per baby step (a convolution's) saves
//! those limbs by single hoisting: each baby rotation is brought down to
//! `Q_ℓ` once and everything up to the giant steps' key switching stays
//! there ([`Hoisting`], chosen by counting limb transforms).

use crate::ckks::encoding::Encoder;
use crate::ckks::encryption::Ciphertext;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::keys::galois_element_for_rotation;
use crate::ckks::ring::simd::wide;
use crate::ckks::ring::Poly;
use crate::ckks::{CkksError, Complex64};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A pre-rotated diagonal: encoded over every limb of `Q_level·P` (NTT
/// domain), or (compact) only its `2·slots` nonzero integer coefficients,
/// expanded to the NTT domain when used — 1/(level + 1 + #P) of the memory
/// at full packing, for one NTT per limb per use.
enum Diagonal {
    Encoded(Poly),
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
                    Diagonal::Encoded(extended_plaintext(encoder, &c, level))
                }
            } else {
                let c = encoder.encode_coeffs(&rotated, scale)?;
                Diagonal::Encoded(extended_plaintext(encoder, &c, level))
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

    /// From diagonals already grouped and pre-rotated for their giant steps:
    /// `groups[g][b] = rot_{−g}(diag_{g+b})` (real values), stored compactly
    /// and encoded at `level` with `scale` when used. Zero diagonals are
    /// skipped.
    pub fn from_prerotated(
        encoder: &Encoder,
        groups: &BTreeMap<usize, BTreeMap<usize, &[f64]>>,
        slots: usize,
        level: usize,
        scale: f64,
    ) -> Result<Self, CkksError> {
        let n = encoder.params().n();
        let gap = n / 2 / slots;
        let mut out: BTreeMap<usize, BTreeMap<usize, Diagonal>> = BTreeMap::new();
        for (&g, babies) in groups {
            if g >= slots {
                return Err(CkksError::InvalidArgument(format!(
                    "giant step {g} beyond {slots} slots"
                )));
            }
            for (&b, values) in babies {
                if b >= slots || values.len() != slots {
                    return Err(CkksError::InvalidArgument(format!(
                        "baby step {b} or a diagonal of {} values for {slots} slots",
                        values.len()
                    )));
                }
                if values.iter().all(|&v| v == 0.0) {
                    continue;
                }
                let z: Vec<Complex64> = values.iter().map(|&v| Complex64::new(v, 0.0)).collect();
                let c = encoder.encode_coeffs(&z, scale)?;
                let d = if c.iter().all(|&x| x.unsigned_abs() < 1 << 62) {
                    Diagonal::Compact(
                        (0..slots)
                            .map(|i| c[i * gap] as i64)
                            .chain((0..slots).map(|i| c[n / 2 + i * gap] as i64))
                            .collect(),
                    )
                } else {
                    Diagonal::Encoded(extended_plaintext(encoder, &c, level))
                };
                out.entry(g).or_default().insert(b, d);
            }
        }
        if out.is_empty() {
            return Err(CkksError::InvalidArgument("no nonzero diagonal".into()));
        }
        let n1 = out
            .values()
            .flat_map(|g| g.keys())
            .max()
            .map_or(1, |&b| (b + 1).next_power_of_two());
        Ok(LinearTransform {
            slots,
            n1,
            scale,
            level,
            groups: out,
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
                Diagonal::Encoded(p) => p.data.len() * 8,
                Diagonal::Compact(c) => c.len() * 8,
            })
            .sum()
    }

    /// Number of nonzero diagonals.
    pub fn diagonal_count(&self) -> usize {
        self.groups.values().map(|g| g.len()).sum()
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

/// A plaintext's integer coefficients over `Q_level·P`, NTT domain.
fn extended_plaintext(encoder: &Encoder, coeffs: &[i128], level: usize) -> Poly {
    let ring = encoder.params().ring();
    let mut poly = Poly::zero(ring, level, true, false);
    poly.for_each_limb(
        ring,
        #[inline(always)]
        |mi, limb| {
            let m = ring.modulus(mi);
            for (o, c) in limb.iter_mut().zip(coeffs) {
                *o = m.reduce_i128(*c);
            }
        },
    );
    poly.to_ntt(ring);
    poly
}

/// Where a linear transform keeps its baby rotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hoisting {
    /// Over `Q_ℓ·P`, times `P` (no ModDown): diagonals and their products
    /// cover `ℓ + 1 + |P|` limbs.
    Double,
    /// Brought down to `Q_ℓ` (one ModDown of both components each):
    /// diagonals and products cover `ℓ + 1` limbs, and the giant steps skip
    /// the ModDown of their `c1`.
    Single,
}

impl Hoisting {
    /// The cheaper hoisting for a transform at `level` with `babies`
    /// rotating baby steps, `giants` rotating giant steps and `diagonals`
    /// diagonals, given `special_primes` = |P|. Counted in limb transforms
    /// (an NTT, or a ModDown's share per limb): single hoisting saves
    /// `diagonals·|P|` and spends `(2·babies − giants)·(ℓ + 1 + |P|)`.
    pub fn choose(
        special_primes: usize,
        level: usize,
        babies: usize,
        giants: usize,
        diagonals: usize,
    ) -> Hoisting {
        let saved = diagonals * special_primes;
        let spent = (2 * babies).saturating_sub(giants) * (level + 1 + special_primes);
        if special_primes > 0 && saved > spent {
            Hoisting::Single
        } else {
            Hoisting::Double
        }
    }
}

/// A ciphertext over `Q_ℓ·P` holding `P` times its value, or (single
/// hoisting) over `Q_ℓ` holding the value itself.
struct Extended {
    c0: Poly,
    c1: Poly,
}

impl Evaluator {
    /// A diagonal over `Q_level·P` (or `Q_level` alone when not `ext`; NTT),
    /// borrowed when already encoded so.
    fn expand_diagonal<'a>(
        &self,
        d: &'a Diagonal,
        lt: &LinearTransform,
        level: usize,
        ext: bool,
    ) -> std::borrow::Cow<'a, Poly> {
        use std::borrow::Cow;
        let ring = self.params.ring();
        match d {
            Diagonal::Encoded(p) if p.level == level && ext => Cow::Borrowed(p),
            Diagonal::Encoded(p) if ext => {
                let mut p = p.clone();
                p.drop_to_level(level);
                Cow::Owned(p)
            }
            Diagonal::Encoded(p) => {
                // Only the Q limbs up to `level`.
                let n = ring.n();
                let mut q = Poly::zero(ring, level, false, true);
                q.data.copy_from_slice(&p.data[..(level + 1) * n]);
                Cow::Owned(q)
            }
            Diagonal::Compact(c) => {
                let n = ring.n();
                let gap = n / 2 / lt.slots;
                let mut poly = Poly::zero(ring, level, ext, false);
                poly.for_each_limb(
                    ring,
                    #[inline(always)]
                    |mi, limb| {
                        let m = ring.modulus(mi);
                        for i in 0..lt.slots {
                            limb[i * gap] = m.reduce_i64(c[i]);
                            limb[n / 2 + i * gap] = m.reduce_i64(c[lt.slots + i]);
                        }
                        ring.ntt(mi).forward(limb);
                    },
                );
                poly.ntt = true;
                Cow::Owned(poly)
            }
        }
    }

    /// `P·x` over `Q_ℓ·P` (zero modulo the special primes).
    fn lift_times_p(&self, x: &Poly) -> Poly {
        let mut out = Poly::zero(self.params.ring(), x.level, true, x.ntt);
        self.add_times_p(&mut out, x, None);
        out
    }

    /// Adds `P·σ(x)` to the `Q` limbs of `acc` (`σ` given by `perm`, the
    /// identity if `None`).
    fn add_times_p(&self, acc: &mut Poly, x: &Poly, perm: Option<&[u32]>) {
        let ring = self.params.ring();
        let n = ring.n();
        let p_mod_q = self.params.p_mod_q();
        acc.data[..(x.level + 1) * n]
            .par_chunks_mut(n)
            .zip(x.data.par_chunks(n))
            .enumerate()
            .for_each(|(i, (o, a))| {
                let m = ring.modulus(i);
                let (w, ws) = (p_mod_q[i], m.shoup(p_mod_q[i]));
                wide(
                    #[inline(always)]
                    || match perm {
                        Some(perm) => {
                            for (o, &p) in o.iter_mut().zip(perm) {
                                *o = m.add(*o, m.mul_shoup(a[p as usize], w, ws));
                            }
                        }
                        None => {
                            for (o, &a) in o.iter_mut().zip(a) {
                                *o = m.add(*o, m.mul_shoup(a, w, ws));
                            }
                        }
                    },
                )
            });
    }

    /// `Σ_i d_i ⊙ x_i` for both components, over the limbs of the `x_i`
    /// (`Q_ℓ·P` or `Q_ℓ`), each coefficient summed in 128 bits and reduced
    /// once per 15 terms (each product is below `2^124`, so 15 of them and
    /// the carried residue fit).
    fn diagonal_sum(&self, terms: &[(&Poly, &Extended)]) -> Extended {
        let ring = self.params.ring();
        let n = ring.n();
        let first = terms[0].1;
        let (level, ext) = (first.c0.level, first.c0.ext);
        let mut c0 = Poly::zero(ring, level, ext, true);
        let mut c1 = Poly::zero(ring, level, ext, true);
        c0.data
            .par_chunks_mut(n)
            .zip(c1.data.par_chunks_mut(n))
            .enumerate()
            .for_each(|(l, (o0, o1))| {
                wide(
                    #[inline(always)]
                    || {
                        let m = ring.modulus(ring.limb_modulus_index(level, l));
                        let mut acc0 = vec![0u128; n];
                        let mut acc1 = vec![0u128; n];
                        for chunk in terms.chunks(15) {
                            for (d, x) in chunk {
                                let (d, a, b) = (d.limb(l), x.c0.limb(l), x.c1.limb(l));
                                for k in 0..n {
                                    let w = d[k] as u128;
                                    acc0[k] += w * a[k] as u128;
                                    acc1[k] += w * b[k] as u128;
                                }
                            }
                            for k in 0..n {
                                o0[k] = m.reduce_u128(acc0[k]);
                                o1[k] = m.reduce_u128(acc1[k]);
                                acc0[k] = o0[k] as u128;
                                acc1[k] = o1[k] as u128;
                            }
                        }
                    },
                )
            });
        Extended { c0, c1 }
    }

    /// `M·v`; the output scale is the input scale times the diagonals' scale
    /// (rescale afterwards). Hoisting as [`Hoisting::choose`] says.
    pub fn linear_transform(
        &self,
        ct: &Ciphertext,
        lt: &LinearTransform,
    ) -> Result<Ciphertext, CkksError> {
        self.linear_transform_hoisted(ct, lt, None)
    }

    /// [`Evaluator::linear_transform`] with the hoisting forced (benchmarks
    /// and tests), or chosen when `None`.
    pub fn linear_transform_hoisted(
        &self,
        ct: &Ciphertext,
        lt: &LinearTransform,
        hoisting: Option<Hoisting>,
    ) -> Result<Ciphertext, CkksError> {
        self.linear_transform_sum(&[(ct, lt)], hoisting)
    }

    /// `Σ_i M_i·v_i` for `terms = [(v_i, M_i)]`: each input's baby steps
    /// are hoisted from its own decomposition, and the inner sums of all
    /// inputs for one giant step are added before that giant step's single
    /// rotation, so a transform over several input ciphertexts pays for its
    /// giant steps and final ModDowns once. Every input must be at the same
    /// level and every product `scale(v_i)·scale(M_i)` equal; the output is
    /// at that level and scale (rescale afterwards).
    pub fn linear_transform_sum(
        &self,
        terms: &[(&Ciphertext, &LinearTransform)],
        hoisting: Option<Hoisting>,
    ) -> Result<Ciphertext, CkksError> {
        let Some(&(first, first_lt)) = terms.first() else {
            return Err(CkksError::InvalidArgument("a sum of no transforms".into()));
        };
        let level = terms
            .iter()
            .map(|(ct, lt)| ct.level().min(lt.level))
            .min()
            .unwrap_or(0);
        let out_scale = first.scale * first_lt.scale;
        for (ct, lt) in terms {
            if ct.slots() != lt.slots || ct.slots() != first.slots() {
                return Err(CkksError::Mismatch(format!(
                    "transform on {} slots, ciphertext has {}",
                    lt.slots,
                    ct.slots()
                )));
            }
            if ct.level().min(lt.level) != level {
                return Err(CkksError::Mismatch(format!(
                    "transform terms at levels {} and {level}",
                    ct.level().min(lt.level)
                )));
            }
            let s = ct.scale * lt.scale;
            if (s / out_scale - 1.0).abs() > 1e-12 {
                return Err(CkksError::Mismatch(format!(
                    "transform terms at scales 2^{:.3} and 2^{:.3}",
                    s.log2(),
                    out_scale.log2()
                )));
            }
        }
        let ring = self.params.ring();
        let n = self.params.n();
        let element = |k: usize| galois_element_for_rotation(n, k as i64);
        let babies_of = |lt: &LinearTransform| -> Vec<usize> {
            let mut b: Vec<usize> = lt.groups.values().flat_map(|g| g.keys().copied()).collect();
            b.sort();
            b.dedup();
            b
        };
        let giant_steps: std::collections::BTreeSet<usize> = terms
            .iter()
            .flat_map(|(_, lt)| lt.groups.keys().copied())
            .collect();
        let keys = self.keys_for(
            terms
                .iter()
                .flat_map(|(_, lt)| babies_of(lt))
                .chain(giant_steps.iter().copied())
                .filter(|&k| k != 0)
                .map(element),
            level,
        )?;

        let diagonals: usize = terms
            .iter()
            .map(|(_, lt)| lt.groups.values().map(|g| g.len()).sum::<usize>())
            .sum();
        let giants = giant_steps.iter().filter(|&&g| g != 0).count();
        let rotating: usize = terms
            .iter()
            .map(|(_, lt)| babies_of(lt).iter().filter(|&&i| i != 0).count())
            .sum();
        let k = ring.p_count();
        let single = hoisting
            .unwrap_or_else(|| Hoisting::choose(k, level, rotating, giants, diagonals))
            == Hoisting::Single;

        // Inner sums per giant step, over all inputs: Σ_b diag ⊙ rot_b(v_i),
        // over Q_ℓ·P (times P), or Q_ℓ with single hoisting.
        let mut inner: BTreeMap<usize, Extended> = BTreeMap::new();
        for &(ct, lt) in terms {
            let ct = if ct.level() > level {
                self.drop_level(ct, level)
            } else {
                ct.clone()
            };
            let babies = babies_of(lt);
            // Baby steps from one decomposition: P·rot_i(ct) over Q_ℓ·P, or
            // (single hoisting) rot_i(ct) over Q_ℓ after a ModDown each.
            let dec = babies
                .iter()
                .any(|&i| i != 0)
                .then(|| self.decompose(&ct.c1));
            let rotated: BTreeMap<usize, Extended> = babies
                .iter()
                .map(|&i| {
                    let x = match (i, single) {
                        (0, false) => Extended {
                            c0: self.lift_times_p(&ct.c0),
                            c1: self.lift_times_p(&ct.c1),
                        },
                        (0, true) => Extended {
                            c0: ct.c0.clone(),
                            c1: ct.c1.clone(),
                        },
                        _ => {
                            let g = element(i);
                            let perm = ring.galois_permutation(g);
                            let dec = dec.as_ref().expect("decomposed when a baby step rotates");
                            let (mut k0, k1) = self.key_inner_product(dec, keys[&g], Some(&perm));
                            if single {
                                let (k0, k1) =
                                    rayon::join(|| self.mod_down(k0), || self.mod_down(k1));
                                let mut c0 = ct.c0.permuted(&perm);
                                c0.add_assign(ring, &k0);
                                Extended { c0, c1: k1 }
                            } else {
                                self.add_times_p(&mut k0, &ct.c0, Some(&perm));
                                Extended { c0: k0, c1: k1 }
                            }
                        }
                    };
                    (i, x)
                })
                .collect();
            drop(dec);
            for (&g, group) in &lt.groups {
                let diagonals: Vec<(usize, std::borrow::Cow<'_, Poly>)> = group
                    .par_iter()
                    .map(|(&i, d)| (i, self.expand_diagonal(d, lt, level, !single)))
                    .collect();
                let terms: Vec<(&Poly, &Extended)> = diagonals
                    .iter()
                    .map(|(i, d)| (d.as_ref(), &rotated[i]))
                    .collect();
                let sum = self.diagonal_sum(&terms);
                match inner.get_mut(&g) {
                    None => {
                        inner.insert(g, sum);
                    }
                    Some(a) => {
                        a.c0.add_assign(ring, &sum.c0);
                        a.c1.add_assign(ring, &sum.c1);
                    }
                }
            }
        }

        // Giant steps, accumulated over Q_ℓ·P.
        let mut acc: Option<Extended> = None;
        for (g, inner) in inner {
            let term = match (g, single) {
                (0, false) => inner,
                (0, true) => Extended {
                    c0: self.lift_times_p(&inner.c0),
                    c1: self.lift_times_p(&inner.c1),
                },
                _ => {
                    let e = element(g);
                    let perm = ring.galois_permutation(e);
                    let c1 = if single {
                        inner.c1
                    } else {
                        self.mod_down(inner.c1)
                    };
                    let dec = self.decompose(&c1);
                    let (mut k0, k1) = self.key_inner_product(&dec, keys[&e], Some(&perm));
                    if single {
                        self.add_times_p(&mut k0, &inner.c0, Some(&perm));
                    } else {
                        k0.add_assign(ring, &inner.c0.permuted(&perm));
                    }
                    Extended { c0: k0, c1: k1 }
                }
            };
            acc = Some(match acc {
                None => term,
                Some(mut a) => {
                    a.c0.add_assign(ring, &term.c0);
                    a.c1.add_assign(ring, &term.c1);
                    a
                }
            });
        }
        let acc = acc.expect("at least one diagonal");
        let (c0, c1) = rayon::join(|| self.mod_down(acc.c0), || self.mod_down(acc.c1));
        Ok(Ciphertext {
            c0,
            c1,
            scale: out_scale,
            slots: first.slots,
            seed: None,
        })
    }
}

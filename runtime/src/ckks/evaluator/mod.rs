//! The homomorphic evaluator: arithmetic, relinearisation, rescaling and level
//! management (this file), key switching (`keyswitch`) and automorphisms (`rotation`).

pub mod keyswitch;
pub mod rotation;

use super::encoding::Plaintext;
use super::encryption::Ciphertext;
use super::keys::EvaluationKeys;
use super::params::Parameters;
use super::ring::Poly;
use super::CkksError;
use crate::ckks::ring::simd::wide;
use rayon::prelude::*;
use std::sync::Arc;

/// Largest relative difference between the scales of two operands of an addition.
pub const SCALE_TOLERANCE: f64 = 1e-6;

#[derive(Clone)]
pub struct Evaluator {
    pub(crate) params: Parameters,
    keys: Option<Arc<EvaluationKeys>>,
}

impl Evaluator {
    pub fn new(params: &Parameters, keys: Option<Arc<EvaluationKeys>>) -> Self {
        Evaluator {
            params: params.clone(),
            keys,
        }
    }

    pub fn params(&self) -> &Parameters {
        &self.params
    }

    pub(crate) fn keys(&self) -> Result<&EvaluationKeys, CkksError> {
        self.keys
            .as_deref()
            .ok_or_else(|| CkksError::MissingKey("no evaluation keys loaded".into()))
    }

    pub(crate) fn check_scales(a: f64, b: f64) -> Result<(), CkksError> {
        if ((a - b) / a).abs() > SCALE_TOLERANCE {
            return Err(CkksError::Mismatch(format!(
                "scales differ: 2^{:.6} vs 2^{:.6}",
                a.log2(),
                b.log2()
            )));
        }
        Ok(())
    }

    fn check_slots(a: usize, b: usize) -> Result<(), CkksError> {
        if a != b {
            return Err(CkksError::Mismatch(format!(
                "slot counts differ: {a} vs {b}"
            )));
        }
        Ok(())
    }

    /// Copies of the operands brought to their common (lower) level.
    fn aligned(&self, a: &Ciphertext, b: &Ciphertext) -> (Ciphertext, Ciphertext) {
        let l = a.level().min(b.level());
        (self.drop_level(a, l), self.drop_level(b, l))
    }

    /// Drops `ct` to `level` (a no-op at or below it): exact, costs nothing but memory.
    pub fn drop_level(&self, ct: &Ciphertext, level: usize) -> Ciphertext {
        let mut out = ct.clone();
        if level < ct.level() {
            out.c0.drop_to_level(level);
            out.c1.drop_to_level(level);
            out.seed = None;
        }
        out
    }

    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Self::check_scales(a.scale, b.scale)?;
        Self::check_slots(a.slots, b.slots)?;
        let ring = self.params.ring();
        let (mut x, y) = if a.level() == b.level() {
            (a.clone(), std::borrow::Cow::Borrowed(b))
        } else {
            let (x, y) = self.aligned(a, b);
            (x, std::borrow::Cow::Owned(y))
        };
        x.c0.add_assign(ring, &y.c0);
        x.c1.add_assign(ring, &y.c1);
        x.seed = None;
        Ok(x)
    }

    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Self::check_scales(a.scale, b.scale)?;
        Self::check_slots(a.slots, b.slots)?;
        let ring = self.params.ring();
        let (mut x, y) = self.aligned(a, b);
        x.c0.sub_assign(ring, &y.c0);
        x.c1.sub_assign(ring, &y.c1);
        x.seed = None;
        Ok(x)
    }

    pub fn neg(&self, a: &Ciphertext) -> Ciphertext {
        let ring = self.params.ring();
        let mut x = a.clone();
        x.c0.neg_assign(ring);
        x.c1.neg_assign(ring);
        x.seed = None;
        x
    }

    /// The plaintext's polynomial at `level`, copied only if limbs must be dropped.
    fn plain_at_level(
        pt: &Plaintext,
        level: usize,
    ) -> Result<std::borrow::Cow<'_, Poly>, CkksError> {
        if pt.poly.level < level {
            return Err(CkksError::Mismatch(format!(
                "plaintext at level {} below ciphertext level {level}",
                pt.poly.level
            )));
        }
        if pt.poly.level == level {
            return Ok(std::borrow::Cow::Borrowed(&pt.poly));
        }
        let mut p = pt.poly.clone();
        p.drop_to_level(level);
        Ok(std::borrow::Cow::Owned(p))
    }

    pub fn add_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        Self::check_scales(a.scale, pt.scale)?;
        Self::check_slots(a.slots, pt.slots)?;
        let p = Self::plain_at_level(pt, a.level())?;
        let mut x = a.clone();
        x.c0.add_assign(self.params.ring(), &p);
        x.seed = None;
        Ok(x)
    }

    /// Plaintext multiplication; the output scale is the product of the scales.
    pub fn mul_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        Self::check_slots(a.slots, pt.slots)?;
        let ring = self.params.ring();
        let p = Self::plain_at_level(pt, a.level())?;
        let mut x = a.clone();
        x.c0.mul_assign(ring, &p);
        x.c1.mul_assign(ring, &p);
        x.scale *= pt.scale;
        x.seed = None;
        Ok(x)
    }

    /// Residues of `round(v)` modulo every `Q` prime up to `level`.
    /// `round(v)`, if it is finite and below `2^120` in magnitude.
    pub(crate) fn check_constant(v: f64) -> Result<f64, CkksError> {
        let r = v.round();
        if !r.is_finite() || r.abs() >= 2f64.powi(120) {
            return Err(CkksError::InvalidArgument(format!(
                "constant {v} out of range"
            )));
        }
        Ok(r)
    }

    fn const_residues(&self, v: f64, level: usize) -> Result<Vec<u64>, CkksError> {
        let r = Self::check_constant(v)?;
        let ring = self.params.ring();
        Ok((0..=level)
            .map(|i| ring.modulus(i).reduce_i128(r as i128))
            .collect())
    }

    /// Adds the real constant `c` to every slot.
    pub fn add_const(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        let r = self.const_residues(c * a.scale, a.level())?;
        let mut x = a.clone();
        x.c0.add_const_rns(self.params.ring(), &r);
        x.seed = None;
        Ok(x)
    }

    /// Multiplies every slot by the real constant `c`, encoded as the integer
    /// `round(c · const_scale)`; the output scale is `scale · const_scale`.
    /// With `const_scale = q_ℓ` a following rescale restores the input scale exactly.
    pub fn mul_const(
        &self,
        a: &Ciphertext,
        c: f64,
        const_scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        let r = self.const_residues(c * const_scale, a.level())?;
        let ring = self.params.ring();
        let mut x = a.clone();
        x.c0.mul_const_rns(ring, &r);
        x.c1.mul_const_rns(ring, &r);
        x.scale *= const_scale;
        x.seed = None;
        Ok(x)
    }

    /// Multiplies by a (small) integer without changing the scale.
    pub fn mul_int(&self, a: &Ciphertext, c: i64) -> Ciphertext {
        let ring = self.params.ring();
        let r: Vec<u64> = (0..=a.level())
            .map(|i| ring.modulus(i).reduce_i64(c))
            .collect();
        let mut x = a.clone();
        x.c0.mul_const_rns(ring, &r);
        x.c1.mul_const_rns(ring, &r);
        x.seed = None;
        x
    }

    /// Ciphertext product followed by relinearisation; the output scale is the
    /// product of the scales (rescale afterwards).
    pub fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Self::check_slots(a.slots, b.slots)?;
        let rlk = self
            .keys()?
            .relin
            .as_ref()
            .ok_or_else(|| CkksError::MissingKey("relinearization key".into()))?;
        let ring = self.params.ring();
        let n = ring.n();
        let level = a.level().min(b.level());
        // Higher limbs of the operand at the higher level are simply not read.
        let (x, y) = (a, b);
        let mut d0 = Poly::zero(ring, level, false, true);
        let mut d1 = Poly::zero(ring, level, false, true);
        let mut d2 = Poly::zero(ring, level, false, true);
        d0.data
            .par_chunks_mut(n)
            .zip(d1.data.par_chunks_mut(n))
            .zip(d2.data.par_chunks_mut(n))
            .enumerate()
            .for_each(|(i, ((o0, o1), o2))| {
                wide(
                    #[inline(always)]
                    || {
                        let m = ring.modulus(i);
                        let (a0, a1, b0, b1) =
                            (x.c0.limb(i), x.c1.limb(i), y.c0.limb(i), y.c1.limb(i));
                        for k in 0..n {
                            o0[k] = m.mul(a0[k], b0[k]);
                            o1[k] = m.reduce_u128(
                                a0[k] as u128 * b1[k] as u128 + a1[k] as u128 * b0[k] as u128,
                            );
                            o2[k] = m.mul(a1[k], b1[k]);
                        }
                    },
                )
            });
        let (k0, k1) = self.key_switch(&d2, rlk);
        d0.add_assign(ring, &k0);
        d1.add_assign(ring, &k1);
        Ok(Ciphertext {
            c0: d0,
            c1: d1,
            scale: a.scale * b.scale,
            slots: a.slots,
            seed: None,
        })
    }

    /// Squares (same as `mul_relin(a, a)`).
    pub fn square(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.mul_relin(a, a)
    }

    /// Divides by the last prime `q_ℓ` (rounding), moving to level `ℓ - 1`;
    /// the scale is divided by `q_ℓ`.
    pub fn rescale(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        let level = a.level();
        if level == 0 {
            return Err(CkksError::Mismatch(
                "cannot rescale a level-0 ciphertext".into(),
            ));
        }
        let q_last = self.params.q()[level] as f64;
        let (c0, c1) = rayon::join(|| self.rescale_poly(&a.c0), || self.rescale_poly(&a.c1));
        Ok(Ciphertext {
            c0,
            c1,
            scale: a.scale / q_last,
            slots: a.slots,
            seed: None,
        })
    }

    fn rescale_poly(&self, p: &Poly) -> Poly {
        let ring = self.params.ring();
        let n = ring.n();
        let level = p.level;
        let ql = ring.modulus(level);
        let mut last = p.limb(level).to_vec();
        ring.ntt(level).inverse(&mut last);
        let half = ql.value() / 2;
        let mut out = p.clone();
        out.drop_to_level(level - 1);
        out.data
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(i, limb)| {
                wide(
                    #[inline(always)]
                    || {
                        let m = ring.modulus(i);
                        let ql_mod = m.reduce(ql.value());
                        let inv = m.inv(ql_mod);
                        let inv_s = m.shoup(inv);
                        let mut tmp: Vec<u64> = last
                            .iter()
                            .map(|&v| {
                                let r = m.reduce(v);
                                // Centered lift of the last residue, so the division rounds.
                                if v > half {
                                    m.sub(r, ql_mod)
                                } else {
                                    r
                                }
                            })
                            .collect();
                        ring.ntt(i).forward(&mut tmp);
                        for (o, t) in limb.iter_mut().zip(&tmp) {
                            *o = m.mul_shoup(m.sub(*o, *t), inv, inv_s);
                        }
                    },
                )
            });
        out
    }

    /// Multiplication, relinearisation and rescale.
    pub fn mul_relin_rescale(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
    ) -> Result<Ciphertext, CkksError> {
        self.rescale(&self.mul_relin(a, b)?)
    }
}

//! RNS polynomials: one limb of `N` residues per prime, limb-major, in either
//! the coefficient or the NTT (evaluation) domain. Limbs are the `Q` primes
//! `q_0..q_level`, optionally followed by all special primes (`ext`).

use super::context::RingContext;
use crate::ckks::ring::simd::wide;
use rayon::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poly {
    pub(crate) n: usize,
    pub(crate) level: usize,
    pub(crate) ext: bool,
    pub(crate) ntt: bool,
    pub(crate) data: Vec<u64>,
}

/// Wipes the residues, including capacity left behind by truncations (a
/// secret polynomial dropped to a lower level keeps its upper limbs in
/// spare capacity).
impl zeroize::Zeroize for Poly {
    fn zeroize(&mut self) {
        self.data.zeroize();
    }
}

impl Poly {
    pub fn zero(ctx: &RingContext, level: usize, ext: bool, ntt: bool) -> Self {
        let limbs = level + 1 + if ext { ctx.p_count() } else { 0 };
        Poly {
            n: ctx.n(),
            level,
            ext,
            ntt,
            data: vec![0; limbs * ctx.n()],
        }
    }

    pub fn level(&self) -> usize {
        self.level
    }
    pub fn is_ntt(&self) -> bool {
        self.ntt
    }
    pub fn limb_count(&self) -> usize {
        self.data.len() / self.n
    }
    pub fn limb(&self, i: usize) -> &[u64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }
    pub fn limb_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    /// Modulus index (into the context) of limb `i`.
    #[inline]
    pub fn modulus_index(&self, ctx: &RingContext, i: usize) -> usize {
        ctx.limb_modulus_index(self.level, i)
    }

    /// Sets limb `i` of every coefficient from a small signed integer vector.
    pub fn from_signed(ctx: &RingContext, coeffs: &[i64], level: usize, ext: bool) -> Self {
        let mut p = Poly::zero(ctx, level, ext, false);
        p.for_each_limb(
            ctx,
            #[inline(always)]
            |mi, limb| {
                let m = ctx.modulus(mi);
                for (o, c) in limb.iter_mut().zip(coeffs) {
                    *o = m.reduce_i64(*c);
                }
            },
        );
        p
    }

    /// [`Poly::from_signed`] for secret or error coefficients (`|c| < q` for
    /// every modulus): the reduction is branch-free.
    pub fn from_small_signed(ctx: &RingContext, coeffs: &[i64], level: usize, ext: bool) -> Self {
        let mut p = Poly::zero(ctx, level, ext, false);
        p.for_each_limb(
            ctx,
            #[inline(always)]
            |mi, limb| {
                let m = ctx.modulus(mi);
                for (o, c) in limb.iter_mut().zip(coeffs) {
                    *o = m.reduce_small_ct(*c);
                }
            },
        );
        p
    }

    /// Runs `f(modulus index, limb)` on every limb, in parallel, compiled
    /// for x86-64-v4 where available (see [`wide`]).
    pub(crate) fn for_each_limb(
        &mut self,
        ctx: &RingContext,
        f: impl Fn(usize, &mut [u64]) + Sync + Send,
    ) {
        let (n, level) = (self.n, self.level);
        self.data
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(i, limb)| {
                let idx = ctx.limb_modulus_index(level, i);
                wide(
                    #[inline(always)]
                    || f(idx, limb),
                )
            });
    }

    pub fn to_ntt(&mut self, ctx: &RingContext) {
        if !self.ntt {
            self.for_each_limb(ctx, |m, limb| ctx.ntt(m).forward(limb));
            self.ntt = true;
        }
    }

    pub fn to_coeff(&mut self, ctx: &RingContext) {
        if self.ntt {
            self.for_each_limb(ctx, |m, limb| ctx.ntt(m).inverse(limb));
            self.ntt = false;
        }
    }

    fn check_compatible(&self, other: &Poly) {
        assert!(
            self.level == other.level && self.ext == other.ext && self.ntt == other.ntt,
            "polynomial shapes differ: (level {}, ext {}, ntt {}) vs (level {}, ext {}, ntt {})",
            self.level,
            self.ext,
            self.ntt,
            other.level,
            other.ext,
            other.ntt
        );
    }

    fn zip_with(
        &mut self,
        ctx: &RingContext,
        other: &Poly,
        f: impl Fn(&super::Modulus, u64, u64) -> u64 + Sync + Send,
    ) {
        self.check_compatible(other);
        let (n, level) = (self.n, self.level);
        self.data
            .par_chunks_mut(n)
            .zip(other.data.par_chunks(n))
            .enumerate()
            .for_each(|(i, (a, b))| {
                wide(
                    #[inline(always)]
                    || {
                        let m = ctx.modulus(ctx.limb_modulus_index(level, i));
                        for (x, y) in a.iter_mut().zip(b) {
                            *x = f(m, *x, *y);
                        }
                    },
                )
            });
    }

    pub fn add_assign(&mut self, ctx: &RingContext, other: &Poly) {
        self.zip_with(ctx, other, |m, a, b| m.add(a, b));
    }

    pub fn sub_assign(&mut self, ctx: &RingContext, other: &Poly) {
        self.zip_with(ctx, other, |m, a, b| m.sub(a, b));
    }

    /// Pointwise product; both operands must be in the NTT domain.
    pub fn mul_assign(&mut self, ctx: &RingContext, other: &Poly) {
        assert!(self.ntt, "pointwise products need the NTT domain");
        self.zip_with(ctx, other, |m, a, b| m.mul(a, b));
    }

    /// `self += a * b` pointwise (NTT domain).
    pub fn add_mul_assign(&mut self, ctx: &RingContext, a: &Poly, b: &Poly) {
        self.zip3_with(ctx, a, b, |m, o, x, y| {
            m.reduce_u128(o as u128 + x as u128 * y as u128)
        });
    }

    /// `self -= a * b` pointwise (NTT domain).
    pub fn sub_mul_assign(&mut self, ctx: &RingContext, a: &Poly, b: &Poly) {
        self.zip3_with(ctx, a, b, |m, o, x, y| m.sub(o, m.mul(x, y)));
    }

    /// `self[k] = f(self[k], a[k], b[k])` limb by limb.
    fn zip3_with(
        &mut self,
        ctx: &RingContext,
        a: &Poly,
        b: &Poly,
        f: impl Fn(&super::Modulus, u64, u64, u64) -> u64 + Sync + Send,
    ) {
        self.check_compatible(a);
        a.check_compatible(b);
        let (n, level) = (self.n, self.level);
        self.data
            .par_chunks_mut(n)
            .zip(a.data.par_chunks(n).zip(b.data.par_chunks(n)))
            .enumerate()
            .for_each(|(i, (o, (x, y)))| {
                let m = ctx.modulus(ctx.limb_modulus_index(level, i));
                wide(
                    #[inline(always)]
                    || {
                        for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                            *o = f(m, *o, *x, *y);
                        }
                    },
                )
            });
    }

    pub fn neg_assign(&mut self, ctx: &RingContext) {
        self.for_each_limb(ctx, |m, limb| {
            let m = ctx.modulus(m);
            for x in limb {
                *x = m.neg(*x);
            }
        });
    }

    /// Multiplies limb `i` by the residue `consts[modulus index]` (any domain).
    pub fn mul_const_rns(&mut self, ctx: &RingContext, consts: &[u64]) {
        self.for_each_limb(ctx, |mi, limb| {
            let m = ctx.modulus(mi);
            let c = m.reduce(consts[mi]);
            let cs = m.shoup(c);
            for x in limb {
                *x = m.mul_shoup(*x, c, cs);
            }
        });
    }

    /// Adds the residue `consts[modulus index]` to every NTT evaluation (adds a
    /// constant polynomial) or to coefficient 0 in the coefficient domain.
    pub fn add_const_rns(&mut self, ctx: &RingContext, consts: &[u64]) {
        let ntt = self.ntt;
        self.for_each_limb(ctx, |mi, limb| {
            let m = ctx.modulus(mi);
            let c = m.reduce(consts[mi]);
            if ntt {
                for x in limb {
                    *x = m.add(*x, c);
                }
            } else {
                limb[0] = m.add(limb[0], c);
            }
        });
    }

    /// Keeps only the `Q` limbs up to `level` (and the special-prime limbs, if any).
    pub fn drop_to_level(&mut self, level: usize) {
        assert!(level <= self.level);
        if self.ext {
            self.data
                .drain((level + 1) * self.n..(self.level + 1) * self.n);
        } else {
            self.data.truncate((level + 1) * self.n);
        }
        self.level = level;
    }

    /// Applies `X ↦ X^g` given the NTT-domain permutation of `g`.
    pub fn permuted(&self, perm: &[u32]) -> Poly {
        assert!(self.ntt, "automorphisms are applied in the NTT domain");
        let n = self.n;
        let mut out = self.clone();
        out.data
            .par_chunks_mut(n)
            .zip(self.data.par_chunks(n))
            .for_each(|(o, a)| {
                for (o, &p) in o.iter_mut().zip(perm) {
                    *o = a[p as usize];
                }
            });
        out
    }
}

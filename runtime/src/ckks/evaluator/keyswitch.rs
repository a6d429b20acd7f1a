//! Hybrid key switching: digit decomposition with ModUp (fast basis extension
//! to `Q_ℓ ∪ P`), the inner product with a switching key, and ModDown
//! (division by `P`). The decomposition is separate so that rotations can be
//! hoisted: one decomposition serves every rotation of a ciphertext.

use super::Evaluator;
use crate::ckks::keys::SwitchingKey;
use crate::ckks::params::Parameters;
use crate::ckks::ring::simd::wide;
use crate::ckks::ring::Poly;
use crate::ckks::sampling::{UniformExpander, UNIFORM_CHUNK};
use rayon::prelude::*;

/// A polynomial at level `ℓ` split into its digits, each extended to `Q_ℓ ∪ P`
/// (NTT domain).
pub struct Decomposed {
    pub(crate) level: usize,
    pub(crate) digits: Vec<Poly>,
}

impl Evaluator {
    /// ModUp of every digit of `c` (NTT domain, `Q_ℓ` only).
    pub(crate) fn decompose(&self, c: &Poly) -> Decomposed {
        let ring = self.params.ring();
        let n = ring.n();
        let level = c.level;
        let mut coeff = c.clone();
        coeff.to_coeff(ring);
        let p_idx: Vec<usize> = (ring.q_count()..ring.q_count() + ring.p_count()).collect();
        let mut digits = Vec::new();
        for d in self.params.digits() {
            if d.start > level {
                break;
            }
            let src = d.start..d.end.min(level + 1);
            let from: Vec<usize> = src.clone().collect();
            let to: Vec<usize> = (0..=level)
                .filter(|i| !src.contains(i))
                .chain(p_idx.iter().copied())
                .collect();
            let ext = ring.extender(&from, &to);
            let y = ext.scaled_inputs(&coeff.data[src.start * n..src.end * n], n);
            let mut out = Poly::zero(ring, level, true, true);
            let src_len = src.len();
            out.data
                .par_chunks_mut(n)
                .enumerate()
                .for_each(|(t, limb)| {
                    if src.contains(&t) {
                        limb.copy_from_slice(c.limb(t));
                    } else {
                        let k = if t < src.start { t } else { t - src_len };
                        ext.extend_one(&y, n, k, limb);
                        let m = ring.limb_modulus_index(level, t);
                        ring.ntt(m).forward(limb);
                    }
                });
            digits.push(out);
        }
        Decomposed { level, digits }
    }

    /// `Σ_j σ(digit_j) · key_j` over `Q_ℓ ∪ P`, where `σ` is the NTT-domain
    /// permutation `perm` (identity if `None`). A seeded key's `a_j` are
    /// regenerated chunk by chunk, next to their use.
    pub(crate) fn key_inner_product(
        &self,
        dec: &Decomposed,
        key: &SwitchingKey,
        perm: Option<&[u32]>,
    ) -> (Poly, Poly) {
        let ring = self.params.ring();
        let n = ring.n();
        let level = dec.level;
        let q_count = ring.q_count();
        let mut out0 = Poly::zero(ring, level, true, true);
        let mut out1 = Poly::zero(ring, level, true, true);
        let nd = dec.digits.len();
        let expanders: Vec<UniformExpander> = match key.a {
            Some(_) => Vec::new(),
            None => key.seeds[..nd].iter().map(UniformExpander::new).collect(),
        };
        out0.data
            .par_chunks_mut(n)
            .zip(out1.data.par_chunks_mut(n))
            .enumerate()
            .for_each(|(t, (o0, o1))| {
                // Keys may be stored at any level ≥ ℓ (limbs q_0..q_k, then P).
                let key_level = key.level();
                let (mi, key_limb) = if t <= level {
                    (t, t)
                } else {
                    (q_count + t - level - 1, key_level + t - level)
                };
                let m = ring.modulus(mi);
                let ds: Vec<&[u64]> = dec.digits.iter().map(|d| d.limb(t)).collect();
                let bs: Vec<&[u64]> = key.b[..nd].iter().map(|b| b.limb(key_limb)).collect();
                match &key.a {
                    Some(a) => {
                        let as_: Vec<&[u64]> = a[..nd].iter().map(|a| a.limb(key_limb)).collect();
                        inner_product(m, &ds, &bs, &as_, perm, o0, o1);
                    }
                    None => inner_product_regenerated(m, mi, &expanders, &ds, &bs, perm, o0, o1),
                }
            });
        (out0, out1)
    }

    pub(crate) fn mod_down(&self, x: Poly) -> Poly {
        mod_down(&self.params, x)
    }
}

/// [`inner_product`] over one limb (of modulus index `mi`) of a seeded key:
/// the `a_j` are regenerated a chunk at a time from `expanders` into a
/// scratch row per digit (which stays in cache) and used at once.
#[allow(clippy::too_many_arguments)]
fn inner_product_regenerated(
    m: &crate::ckks::ring::Modulus,
    mi: usize,
    expanders: &[UniformExpander],
    ds: &[&[u64]],
    bs: &[&[u64]],
    perm: Option<&[u32]>,
    o0: &mut [u64],
    o1: &mut [u64],
) {
    let n = o0.len();
    let mut scratch = vec![0u64; expanders.len() * UNIFORM_CHUNK];
    for (chunk, start) in (0..n).step_by(UNIFORM_CHUNK).enumerate() {
        let range = start..(start + UNIFORM_CHUNK).min(n);
        let len = range.len();
        for (ex, row) in expanders.iter().zip(scratch.chunks_mut(UNIFORM_CHUNK)) {
            ex.fill_chunk(mi, chunk, m.value(), &mut row[..len]);
        }
        let as_: Vec<&[u64]> = scratch.chunks(UNIFORM_CHUNK).map(|r| &r[..len]).collect();
        let bs: Vec<&[u64]> = bs.iter().map(|b| &b[range.clone()]).collect();
        let (o0, o1) = (&mut o0[range.clone()], &mut o1[range.clone()]);
        match perm {
            // The permutation indexes the whole digit limbs.
            Some(p) => inner_product(m, ds, &bs, &as_, Some(&p[range]), o0, o1),
            None => {
                let ds: Vec<&[u64]> = ds.iter().map(|d| &d[range.clone()]).collect();
                inner_product(m, &ds, &bs, &as_, None, o0, o1);
            }
        }
    }
}

/// `o = Σ_j σ(d_j)·(b_j, a_j)` over one limb (or a range of it: `o0`, `o1`,
/// `bs`, `as_` and `perm` cover the range; `ds` the range, or the whole limb
/// when `perm` indexes it), compiled for each digit count.
#[allow(clippy::too_many_arguments)]
fn inner_product(
    m: &crate::ckks::ring::Modulus,
    ds: &[&[u64]],
    bs: &[&[u64]],
    as_: &[&[u64]],
    perm: Option<&[u32]>,
    o0: &mut [u64],
    o1: &mut [u64],
) {
    macro_rules! dispatch {
        ($($d:literal)*) => {
            match ds.len() {
                $($d => wide(#[inline(always)] || inner_product_limb::<$d>(m, ds, bs, as_, perm, o0, o1)),)*
                _ => unreachable!("at most 16 digits"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

/// One limb of `Σ_j σ(d_j)·(b_j, a_j)` for `D` digits: the products are
/// summed in 128 bits (each below `2^124`, at most 16 of them) and reduced once.
#[inline(always)]
fn inner_product_limb<const D: usize>(
    m: &crate::ckks::ring::Modulus,
    ds: &[&[u64]],
    bs: &[&[u64]],
    as_: &[&[u64]],
    perm: Option<&[u32]>,
    o0: &mut [u64],
    o1: &mut [u64],
) {
    let n = o0.len();
    let ds: [&[u64]; D] = std::array::from_fn(|j| ds[j]);
    let bs: [&[u64]; D] = std::array::from_fn(|j| &bs[j][..n]);
    let as_: [&[u64]; D] = std::array::from_fn(|j| &as_[j][..n]);
    let o1 = &mut o1[..n];
    // One loop for both cases, the source index as a closure: each call
    // below is compiled on its own with it inlined.
    #[inline(always)]
    fn accumulate<const D: usize>(
        m: &crate::ckks::ring::Modulus,
        ds: [&[u64]; D],
        bs: [&[u64]; D],
        as_: [&[u64]; D],
        src: impl Fn(usize) -> usize,
        o0: &mut [u64],
        o1: &mut [u64],
    ) {
        for x in 0..o1.len() {
            let s = src(x);
            let (mut acc0, mut acc1) = (0u128, 0u128);
            for j in 0..D {
                let d = ds[j][s] as u128;
                acc0 += d * bs[j][x] as u128;
                acc1 += d * as_[j][x] as u128;
            }
            o0[x] = m.reduce_u128(acc0);
            o1[x] = m.reduce_u128(acc1);
        }
    }
    match perm {
        Some(p) => {
            let p = &p[..n];
            accumulate(m, ds, bs, as_, |x| p[x] as usize, o0, o1);
        }
        None => {
            let ds: [&[u64]; D] = std::array::from_fn(|j| &ds[j][..n]);
            accumulate(m, ds, bs, as_, |x| x, o0, o1);
        }
    }
}

/// Divides an extended polynomial (NTT, `Q_ℓ ∪ P`) by `P` with rounding
/// error at most `#P`, returning it over `Q_ℓ`.
pub(crate) fn mod_down(params: &Parameters, mut x: Poly) -> Poly {
    {
        let ring = params.ring();
        let n = ring.n();
        let level = x.level;
        let q_count = ring.q_count();
        let split = (level + 1) * n;
        let (q_part, p_part) = x.data.split_at_mut(split);
        // Round instead of flooring: extend [c + h]_P with h = floor(P/2) and
        // subtract h again, so the result is round(c / P) (an unbiased error).
        p_part.par_chunks_mut(n).enumerate().for_each(|(k, limb)| {
            wide(
                #[inline(always)]
                || {
                    let idx = q_count + k;
                    ring.ntt(idx).inverse(limb);
                    let m = ring.modulus(idx);
                    let h = (m.value() - 1) / 2; // floor(P/2) ≡ -1/2 mod p_k
                    for v in limb.iter_mut() {
                        *v = m.add(*v, h);
                    }
                },
            )
        });
        let p_idx: Vec<usize> = (q_count..q_count + ring.p_count()).collect();
        let q_idx: Vec<usize> = (0..=level).collect();
        let ext = ring.extender(&p_idx, &q_idx);
        let y = ext.scaled_inputs(p_part, n);
        let u = ext.overflows(&y, n);
        let p_inv = params.p_inv_mod_q();
        let p_mod = params.p_mod_q();
        q_part.par_chunks_mut(n).enumerate().for_each(|(i, limb)| {
            wide(
                #[inline(always)]
                || {
                    let m = ring.modulus(i);
                    let mut tmp = vec![0u64; n];
                    ext.extend_one_exact(&y, &u, n, i, &mut tmp);
                    // floor(P/2) mod q_i = (P - 1)/2 mod q_i.
                    let h = m.mul(m.sub(p_mod[i], 1), m.inv(2));
                    for t in tmp.iter_mut() {
                        *t = m.sub(*t, h);
                    }
                    ring.ntt(i).forward(&mut tmp);
                    let (w, ws) = (p_inv[i], m.shoup(p_inv[i]));
                    for (o, t) in limb.iter_mut().zip(&tmp) {
                        *o = m.mul_shoup(m.sub(*o, *t), w, ws);
                    }
                },
            )
        });
        x.data.truncate(split);
        x.ext = false;
        x
    }
}

impl Evaluator {
    /// Full key switch of `c` (NTT, `Q_ℓ`): returns `(d0, d1)` with
    /// `d0 + d1·s ≈ c·s'` where the key switches from `s'` to `s`.
    pub(crate) fn key_switch(&self, c: &Poly, key: &SwitchingKey) -> (Poly, Poly) {
        let dec = self.decompose(c);
        let (a, b) = self.key_inner_product(&dec, key, None);
        (self.mod_down(a), self.mod_down(b))
    }
}

//! The homomorphic DFTs of bootstrapping, factorised for a level budget.
//!
//! The encoder maps the `2n` real coefficients of a message polynomial in
//! `Y = X^{N/2n}` to `n` slots by `z = U·w`, `w_j = t_j + i·t_{n+j}`, where `U`
//! is the "special" FFT (radix-2 butterflies after a bit-reversal). Its
//! inverse is `U^{-1} = (1/n)·P·S_2·S_4·…·S_n` with `P` the bit reversal and
//! `S_len` one butterfly stage; `U = T_n·…·T_2·P`.
//!
//! CoeffToSlot applies `(1/n)·S_2·…·S_n` and leaves the result in bit-reversed
//! order; SlotToCoeff applies `T_n·…·T_2` to that bit-reversed vector. The
//! permutations cancel and EvalMod in between is slot-wise, so neither ever
//! evaluates a bit reversal. The `log2 n` stages are merged into `levels`
//! groups (one level each): a group of `r` stages has at most `2^{r+1} − 1`
//! nonzero diagonals.
//!
//! Every matrix is stored by diagonals, `M·v = Σ_k d_k ⊙ rot_k(v)` with
//! `d_k[t] = M[t][t+k]` (indices modulo the slot count), which is what
//! [`LinearTransform`](crate::ckks::circuits::linear_transform::LinearTransform) evaluates.
//!
//! Sparse packing (`n < N/2`) works in a `2n`-slot space whose vector is the
//! `n`-slot vector twice, `[z | z]`; the butterflies act on each half alike,
//! so a stage is the same matrix on both halves, and the two halves can carry
//! different factors (CoeffToSlot puts the real parts of `w` in the first
//! half and the imaginary parts in the second).

use crate::ckks::Complex64;
use std::collections::BTreeMap;

/// A slot matrix by diagonals (offset in `[0, slots)` → diagonal).
pub type Diagonals = BTreeMap<usize, Vec<Complex64>>;

/// `5^j mod m` for `j < count`.
fn rotation_group(count: usize, m: usize) -> Vec<usize> {
    let mut g = 1usize;
    (0..count)
        .map(|_| {
            let v = g;
            g = g * 5 % m;
            v
        })
        .collect()
}

/// `e^{2πi·k/m}`.
fn root(k: usize, m: usize) -> Complex64 {
    Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * (k % m) as f64 / m as f64)
}

/// One butterfly stage of block length `len` on `n`-slot vectors, replicated over
/// `space / n` copies. `inverse` selects the stage of `U^{-1}` (decimation in
/// frequency) rather than of `U` (decimation in time).
fn stage(n: usize, space: usize, len: usize, inverse: bool) -> Diagonals {
    let (lenh, lenq) = (len / 2, 4 * len);
    let group = rotation_group(lenh, lenq);
    let one = Complex64::new(1.0, 0.0);
    let mut d0 = vec![Complex64::new(0.0, 0.0); space];
    let mut dp = vec![Complex64::new(0.0, 0.0); space];
    let mut dm = vec![Complex64::new(0.0, 0.0); space];
    for t in 0..space {
        let local = t % n;
        let j = local % len;
        if j < lenh {
            // Top of a butterfly: partner at t + lenh.
            d0[t] = one;
            dp[t] = if inverse {
                one
            } else {
                root(group[j] % lenq, lenq)
            };
        } else {
            let j = j - lenh;
            if inverse {
                // (a − b)·W with W = e^{−2πi·5^j/lenq}; a at t − lenh, b at t.
                let w = root(lenq - group[j] % lenq, lenq);
                d0[t] = -w;
                dm[t] = w;
            } else {
                // a − b·W; a at t − lenh, b at t.
                d0[t] = -root(group[j] % lenq, lenq);
                dm[t] = one;
            }
        }
    }
    // With `space = 2·lenh` the offsets `+lenh` and `−lenh` coincide: add them.
    let mut out = Diagonals::new();
    for (k, d) in [(0, d0), (lenh % space, dp), ((space - lenh) % space, dm)] {
        match out.get_mut(&k) {
            Some(acc) => acc.iter_mut().zip(&d).for_each(|(a, b)| *a += b),
            None => {
                out.insert(k, d);
            }
        }
    }
    out
}

/// The product `a·b` (apply `b` first) of two slot matrices by diagonals.
pub fn multiply(a: &Diagonals, b: &Diagonals, space: usize) -> Diagonals {
    let mut out = Diagonals::new();
    for (&ka, da) in a {
        for (&kb, db) in b {
            let k = (ka + kb) % space;
            let d = out
                .entry(k)
                .or_insert_with(|| vec![Complex64::new(0.0, 0.0); space]);
            for t in 0..space {
                d[t] += da[t] * db[(t + ka) % space];
            }
        }
    }
    // Diagonals that cancelled exactly are dropped (no rotation for them).
    out.retain(|_, d| d.iter().any(|z| z.norm() > 1e-300));
    out
}

/// Multiplies row `t` of `m` by `f[t]` (that is, `diag(f)·m`).
pub fn scale_rows(m: &mut Diagonals, f: &[Complex64]) {
    for d in m.values_mut() {
        for (x, s) in d.iter_mut().zip(f) {
            *x *= s;
        }
    }
}

/// Splits `stages` stage indices into `levels` contiguous groups, larger groups
/// first (the first groups run on the costlier high levels for CoeffToSlot;
/// callers reverse the order where that suits them).
fn group_sizes(stages: usize, levels: usize) -> Vec<usize> {
    let levels = levels.clamp(1, stages.max(1));
    let (base, rem) = (stages / levels, stages % levels);
    (0..levels).map(|i| base + usize::from(i < rem)).collect()
}

/// Stages of block lengths `lens` (in the order applied) merged into groups
/// of `sizes` consecutive stages, one matrix per group; the identity for
/// `n = 1` (no stages).
fn merge_stages(
    n: usize,
    space: usize,
    lens: &[usize],
    sizes: &[usize],
    inverse: bool,
) -> Vec<Diagonals> {
    let mut out = Vec::new();
    let mut start = 0;
    for &size in sizes {
        let group = lens[start..start + size]
            .iter()
            .map(|&len| stage(n, space, len, inverse))
            .reduce(|prev, s| multiply(&s, &prev, space))
            .expect("nonempty group");
        start += size;
        out.push(group);
    }
    if out.is_empty() {
        let mut id = Diagonals::new();
        id.insert(0, vec![Complex64::new(1.0, 0.0); space]);
        out.push(id);
    }
    out
}

/// The CoeffToSlot factors in the order they are applied: `(1/n)·S_2·…·S_n`
/// merged into `levels` matrices on `space` slots (`space` = `n` or `2n`).
pub fn coeffs_to_slots(n: usize, space: usize, levels: usize) -> Vec<Diagonals> {
    // Applied first: S_n, then S_{n/2}, …, S_2.
    let lens: Vec<usize> = (1..=n.trailing_zeros())
        .rev()
        .map(|b| 1usize << b)
        .collect();
    let mut out = merge_stages(n, space, &lens, &group_sizes(lens.len(), levels), true);
    let inv = Complex64::new(1.0 / n as f64, 0.0);
    scale_rows(&mut out[0], &vec![inv; space]);
    out
}

/// The SlotToCoeff factors in the order they are applied: `T_2, T_4, …, T_n`
/// merged into `levels` matrices on `space` slots. The larger groups come
/// last, on the lowest (cheapest) levels.
pub fn slots_to_coeffs(n: usize, space: usize, levels: usize) -> Vec<Diagonals> {
    let lens: Vec<usize> = (1..=n.trailing_zeros()).map(|b| 1usize << b).collect();
    let mut sizes = group_sizes(lens.len(), levels);
    sizes.reverse();
    merge_stages(n, space, &lens, &sizes, false)
}

/// Applies a matrix by diagonals to a vector in the clear (for tests and checks).
pub fn apply(m: &Diagonals, v: &[Complex64]) -> Vec<Complex64> {
    let space = v.len();
    let mut out = vec![Complex64::new(0.0, 0.0); space];
    for (&k, d) in m {
        for t in 0..space {
            out[t] += d[t] * v[(t + k) % space];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::tests::{test_params, values};
    use crate::ckks::Encoder;

    fn bit_reverse(v: &[Complex64]) -> Vec<Complex64> {
        let n = v.len();
        let bits = n.trailing_zeros();
        (0..n)
            .map(|i| {
                let j = if bits == 0 {
                    0
                } else {
                    i.reverse_bits() >> (usize::BITS - bits)
                };
                v[j]
            })
            .collect()
    }

    /// CoeffToSlot is the encoder's inverse FFT up to bit reversal, and
    /// SlotToCoeff undoes it, for every level budget.
    #[test]
    fn factorised_dfts_match_the_encoder() {
        let params = test_params(10, 1, 1);
        let enc = Encoder::new(&params);
        for log_n in [1u32, 3, 6, 9] {
            let n = 1usize << log_n;
            let z = values(n, log_n as u64);
            // w = U^{-1} z, computed by the encoder's own FFT.
            let mut w = z.clone();
            enc.special_fft_inv_for_tests(&mut w);
            for levels in 1..=4 {
                let cts = coeffs_to_slots(n, n, levels);
                assert!(cts.len() <= levels && !cts.is_empty());
                let mut x = z.clone();
                for m in &cts {
                    x = apply(m, &x);
                }
                let want = bit_reverse(&w);
                for (a, b) in x.iter().zip(&want) {
                    assert!((a - b).norm() < 1e-12, "CtS n={n} levels={levels}");
                }
                for m in &slots_to_coeffs(n, n, levels) {
                    x = apply(m, &x);
                }
                for (a, b) in x.iter().zip(&z) {
                    assert!((a - b).norm() < 1e-11, "StC n={n} levels={levels}");
                }
                // A group of r stages has at most 2^{r+1} − 1 diagonals.
                let r = (log_n as usize).div_ceil(levels);
                for m in cts.iter() {
                    assert!(m.len() < 1 << (r + 1), "{} diagonals", m.len());
                }
            }
        }
    }

    #[test]
    fn replicated_space_acts_on_each_half() {
        let n = 16;
        let z = values(n, 7);
        let doubled: Vec<Complex64> = z.iter().chain(z.iter()).copied().collect();
        let mut x = doubled.clone();
        for m in &coeffs_to_slots(n, 2 * n, 2) {
            x = apply(m, &x);
        }
        let mut y = z.clone();
        for m in &coeffs_to_slots(n, n, 2) {
            y = apply(m, &y);
        }
        for t in 0..2 * n {
            assert!((x[t] - y[t % n]).norm() < 1e-12);
        }
    }
}

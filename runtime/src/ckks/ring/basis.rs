//! Fast (approximate) RNS basis extension.
//!
//! For `x` given by residues `x_i` modulo the primes `q_i` of `Q = ∏ q_i`, the
//! residue modulo another prime `p` of `Σ_i [x_i · (Q/q_i)^{-1}]_{q_i} · (Q/q_i)`
//! equals `x + u·Q` for some `0 ≤ u < #q`. The `u·Q` overflow is harmless in
//! hybrid key switching (ModUp: a multiple of the digit modulus; ModDown: an
//! error of at most `#p` after the division by `P`).

use super::modulus::Modulus;

pub struct BasisExtender {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// `(Q/q_i)^{-1} mod q_i` and Shoup companion.
    hat_inv: Vec<(u64, u64)>,
    /// `(Q/q_i) mod p_j`, row `j`.
    hat_mod: Vec<Vec<u64>>,
    /// `1/q_i` as floats, and `Q mod p_j`, for the exact variant.
    inv_from: Vec<f64>,
    q_mod_to: Vec<u64>,
}

impl BasisExtender {
    pub fn new(from: Vec<Modulus>, to: Vec<Modulus>) -> Self {
        assert!(
            from.len() <= 16,
            "lazy accumulation supports at most 16 source primes"
        );
        let hat_inv = from
            .iter()
            .enumerate()
            .map(|(i, qi)| {
                let prod = from
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .fold(1u64, |acc, (_, qk)| qi.mul(acc, qi.reduce(qk.value())));
                let inv = qi.inv(prod);
                (inv, qi.shoup(inv))
            })
            .collect();
        let hat_mod = to
            .iter()
            .map(|pj| {
                (0..from.len())
                    .map(|i| {
                        from.iter()
                            .enumerate()
                            .filter(|(k, _)| *k != i)
                            .fold(1u64, |acc, (_, qk)| pj.mul(acc, pj.reduce(qk.value())))
                    })
                    .collect()
            })
            .collect();
        let inv_from = from.iter().map(|q| 1.0 / q.value() as f64).collect();
        let q_mod_to = to
            .iter()
            .map(|pj| {
                from.iter()
                    .fold(1u64, |acc, qk| pj.mul(acc, pj.reduce(qk.value())))
            })
            .collect();
        BasisExtender {
            from,
            to,
            hat_inv,
            hat_mod,
            inv_from,
            q_mod_to,
        }
    }

    /// `input`: `#from` limbs of `n` coefficients (coefficient domain).
    /// Returns the scaled residues `y_i = [x_i (Q/q_i)^{-1}]_{q_i}` (limb-major).
    pub fn scaled_inputs(&self, input: &[u64], n: usize) -> Vec<u64> {
        let mut y = vec![0u64; input.len()];
        for (i, (yi, xi)) in y.chunks_exact_mut(n).zip(input.chunks_exact(n)).enumerate() {
            let (w, ws) = self.hat_inv[i];
            let m = &self.from[i];
            super::simd::wide(
                #[inline(always)]
                || {
                    for (a, b) in yi.iter_mut().zip(xi) {
                        *a = m.mul_shoup(*b, w, ws);
                    }
                },
            );
        }
        y
    }

    /// Writes the residues modulo target prime `j` of the extension of the
    /// scaled inputs `y` into `out` (`n` coefficients).
    pub fn extend_one(&self, y: &[u64], n: usize, j: usize, out: &mut [u64]) {
        let row = &self.hat_mod[j];
        let pj = &self.to[j];
        // One 128-bit accumulator per coefficient, kept in registers; the
        // source count is a compile-time constant so the sum is unrolled.
        macro_rules! dispatch {
            ($($s:literal)*) => {
                match row.len() {
                    $($s => super::simd::wide(#[inline(always)] || extend_kernel::<$s>(y, n, row, pj, out)),)*
                    _ => unreachable!("at most 16 source primes"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
    }

    /// The overflow `u = floor(Σ_i y_i / q_i)` of each coefficient, computed in
    /// floating point (Halevi–Polyakov–Shoup); subtracting `u·Q` makes the
    /// extension exact except within ~2^-40 of a rounding boundary.
    pub fn overflows(&self, y: &[u64], n: usize) -> Vec<u64> {
        let mut acc = vec![0f64; n];
        for (i, yi) in y.chunks_exact(n).enumerate() {
            let w = self.inv_from[i];
            for (a, &v) in acc.iter_mut().zip(yi) {
                *a += v as f64 * w;
            }
        }
        acc.iter().map(|a| a.floor() as u64).collect()
    }

    /// Exact extension: [`BasisExtender::extend_one`] minus `u·Q` with the
    /// overflows from [`BasisExtender::overflows`].
    pub fn extend_one_exact(&self, y: &[u64], u: &[u64], n: usize, j: usize, out: &mut [u64]) {
        self.extend_one(y, n, j, out);
        let pj = &self.to[j];
        let qm = self.q_mod_to[j];
        let qms = pj.shoup(qm);
        super::simd::wide(
            #[inline(always)]
            || {
                for (o, &k) in out.iter_mut().zip(u) {
                    *o = pj.sub(*o, pj.mul_shoup(k, qm, qms));
                }
            },
        );
    }

    pub fn to_len(&self) -> usize {
        self.to.len()
    }
}

/// `out[k] = Σ_i y[i·n + k]·row[i] mod p` for `S` source limbs.
#[inline(always)]
fn extend_kernel<const S: usize>(y: &[u64], n: usize, row: &[u64], p: &Modulus, out: &mut [u64]) {
    let w: [u64; S] = std::array::from_fn(|i| row[i]);
    let ys: [&[u64]; S] = std::array::from_fn(|i| &y[i * n..(i + 1) * n]);
    for (k, o) in out[..n].iter_mut().enumerate() {
        let mut acc = 0u128;
        for i in 0..S {
            acc += ys[i][k] as u128 * w[i] as u128;
        }
        *o = p.reduce_u128(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::ring::primes::generate_primes;

    #[test]
    fn extension_is_exact_up_to_a_small_multiple_of_q() {
        let n = 8;
        let qs = generate_primes(&[50, 50, 50], 16, &[]).unwrap();
        let ps = generate_primes(&[60, 60], 16, &qs).unwrap();
        let big_q: u128 = qs[0] as u128 * qs[1] as u128; // use the first two only
        let from: Vec<Modulus> = qs[..2].iter().map(|&q| Modulus::new(q)).collect();
        let to: Vec<Modulus> = ps.iter().map(|&p| Modulus::new(p)).collect();
        let ext = BasisExtender::new(from.clone(), to.clone());
        let xs: Vec<u128> = (0..n as u128)
            .map(|i| (i * 0x9e37_79b9_7f4a_7c15_f39c) % big_q)
            .collect();
        let mut input = vec![0u64; 2 * n];
        for (i, m) in from.iter().enumerate() {
            for (k, x) in xs.iter().enumerate() {
                input[i * n + k] = (x % m.value() as u128) as u64;
            }
        }
        let y = ext.scaled_inputs(&input, n);
        let u = ext.overflows(&y, n);
        for (j, p) in to.iter().enumerate() {
            let mut exact = vec![0u64; n];
            ext.extend_one_exact(&y, &u, n, j, &mut exact);
            for (k, x) in xs.iter().enumerate() {
                assert_eq!(
                    exact[k],
                    (x % p.value() as u128) as u64,
                    "exact, coefficient {k}"
                );
            }
            let mut out = vec![0u64; n];
            ext.extend_one(&y, n, j, &mut out);
            for (k, x) in xs.iter().enumerate() {
                let ok = (0..2u128).any(|u| {
                    let v = (*x % p.value() as u128 + u * (big_q % p.value() as u128))
                        % p.value() as u128;
                    v as u64 == out[k]
                });
                assert!(ok, "coefficient {k} modulo p_{j}");
            }
        }
    }
}

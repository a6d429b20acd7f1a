//! Negacyclic number-theoretic transforms over `Z_q[X]/(X^N + 1)`.
//!
//! Two implementations are kept:
//! * [`NttTable`], used everywhere, wraps the `tfhe-ntt` crate (AVX-512, with IFMA
//!   for primes below 2^50), normalised so `inverse(forward(a)) == a`;
//! * [`HarveyNtt`], our own scalar Cooley–Tukey/Gentleman–Sande transform with
//!   Shoup twiddles and lazy (Harvey) reductions, kept as an independent check
//!   and as the baseline measured by `precis bench ckks`.
//!
//! Both produce the evaluations in bit-reversed order; [`NttTable::exponents`]
//! records, for each output index, which odd power of a fixed primitive
//! 2N-th root it evaluates at, which is what Galois automorphisms need.

use super::modulus::Modulus;

pub struct NttTable {
    plan: tfhe_ntt::prime64::Plan,
    modulus: Modulus,
}

impl NttTable {
    pub fn new(n: usize, q: u64) -> Option<Self> {
        let plan = tfhe_ntt::prime64::Plan::try_new(n, q)?;
        Some(NttTable {
            plan,
            modulus: Modulus::new(q),
        })
    }

    pub fn modulus(&self) -> &Modulus {
        &self.modulus
    }

    /// Coefficients in `[0, q)` → evaluations (bit-reversed order) in `[0, q)`.
    #[inline]
    pub fn forward(&self, a: &mut [u64]) {
        self.plan.fwd(a);
    }

    /// Evaluations → coefficients, including the `1/N` factor.
    #[inline]
    pub fn inverse(&self, a: &mut [u64]) {
        self.plan.inv(a);
        self.plan.normalize(a);
    }

    /// For each evaluation index `j`, the odd exponent `e_j` such that the
    /// forward transform evaluates at `ψ^{e_j}`, where `ψ` is the root the
    /// transform uses at index 0 (so `e_0 = 1`).
    pub fn exponents(&self) -> Vec<u32> {
        let n = self.plan.ntt_size();
        let m = &self.modulus;
        let mut x = vec![0u64; n];
        x[1] = 1;
        self.forward(&mut x);
        let psi = x[0];
        let two_n = 2 * n;
        let mut log = std::collections::HashMap::with_capacity(n);
        let mut pw = psi;
        let psi2 = m.mul(psi, psi);
        for e in (1..two_n).step_by(2) {
            log.insert(pw, e as u32);
            pw = m.mul(pw, psi2);
        }
        x.iter()
            .map(|v| *log.get(v).expect("NTT evaluates at primitive 2N-th roots"))
            .collect()
    }
}

/// Our own radix-2 negacyclic NTT (Harvey's lazy butterflies, Shoup twiddles).
pub struct HarveyNtt {
    n: usize,
    m: Modulus,
    /// ψ^{bitrev(i)} for the forward transform, with Shoup companions.
    fwd: Vec<(u64, u64)>,
    /// ψ^{-bitrev(i)} for the inverse transform.
    inv: Vec<(u64, u64)>,
    n_inv: (u64, u64),
}

fn bit_reverse(x: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        x.reverse_bits() >> (usize::BITS - bits)
    }
}

/// A primitive `order`-th root of unity modulo prime `q` (order a power of two dividing q-1).
pub fn primitive_root(m: &Modulus, order: u64) -> Option<u64> {
    let q = m.value();
    if (q - 1) % order != 0 {
        return None;
    }
    let cof = (q - 1) / order;
    (2..q.min(1 << 20)).find_map(|g| {
        let r = m.pow(g, cof);
        (m.pow(r, order / 2) == q - 1).then_some(r)
    })
}

impl HarveyNtt {
    pub fn new(n: usize, q: u64) -> Option<Self> {
        if !n.is_power_of_two() || n < 2 || q >= (1 << 62) {
            return None;
        }
        let m = Modulus::new(q);
        let psi = primitive_root(&m, 2 * n as u64)?;
        let psi_inv = m.inv(psi);
        let bits = n.trailing_zeros();
        let mut fwd = vec![(0, 0); n];
        let mut inv = vec![(0, 0); n];
        for (i, (f, iv)) in fwd.iter_mut().zip(inv.iter_mut()).enumerate() {
            let e = bit_reverse(i, bits) as u64;
            let w = m.pow(psi, e);
            let wi = m.pow(psi_inv, e);
            *f = (w, m.shoup(w));
            *iv = (wi, m.shoup(wi));
        }
        let ni = m.inv(n as u64);
        Some(HarveyNtt {
            n,
            m,
            fwd,
            inv,
            n_inv: (ni, m.shoup(ni)),
        })
    }

    /// In place, input in `[0, q)`, output in `[0, q)`, bit-reversed order.
    pub fn forward(&self, a: &mut [u64]) {
        assert_eq!(a.len(), self.n);
        let q = self.m.value();
        let two_q = 2 * q;
        let mut t = self.n;
        let mut m = 1;
        while m < self.n {
            t >>= 1;
            for i in 0..m {
                let (w, ws) = self.fwd[m + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    // Values stay in [0, 4q); q < 2^62 keeps that below 2^64.
                    let mut u = *x;
                    if u >= two_q {
                        u -= two_q;
                    }
                    let v = self.m.mul_shoup_lazy(*y, w, ws);
                    *x = u + v;
                    *y = u + two_q - v;
                }
            }
            m <<= 1;
        }
        for x in a.iter_mut() {
            let mut v = *x;
            if v >= two_q {
                v -= two_q;
            }
            if v >= q {
                v -= q;
            }
            *x = v;
        }
    }

    /// Inverse of [`HarveyNtt::forward`], including the `1/N` factor.
    pub fn inverse(&self, a: &mut [u64]) {
        assert_eq!(a.len(), self.n);
        let q = self.m.value();
        let two_q = 2 * q;
        let mut t = 1;
        let mut m = self.n;
        while m > 1 {
            let h = m >> 1;
            for i in 0..h {
                let (w, ws) = self.inv[h + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    // Inputs in [0, 2q).
                    let (u, v) = (*x, *y);
                    let mut s = u + v;
                    if s >= two_q {
                        s -= two_q;
                    }
                    *x = s;
                    *y = self.m.mul_shoup_lazy(u + two_q - v, w, ws);
                }
            }
            t <<= 1;
            m = h;
        }
        for x in a.iter_mut() {
            *x = self.m.mul_shoup(*x, self.n_inv.0, self.n_inv.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::ring::primes::generate_primes;

    fn schoolbook(a: &[u64], b: &[u64], m: &Modulus) -> Vec<u64> {
        let n = a.len();
        let mut c = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let p = m.mul(a[i], b[j]);
                if i + j < n {
                    c[i + j] = m.add(c[i + j], p);
                } else {
                    c[i + j - n] = m.sub(c[i + j - n], p);
                }
            }
        }
        c
    }

    #[test]
    fn both_ntts_compute_negacyclic_products_and_agree_on_order() {
        let n = 64;
        let mut seed = 7u64;
        let mut rnd = |q: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) % q
        };
        for q in generate_primes(&[30, 49, 50, 60, 61], n, &[]).unwrap() {
            let m = Modulus::new(q);
            let a: Vec<u64> = (0..n).map(|_| rnd(q)).collect();
            let b: Vec<u64> = (0..n).map(|_| rnd(q)).collect();
            let want = schoolbook(&a, &b, &m);
            let t = NttTable::new(n, q).unwrap();
            let h = HarveyNtt::new(n, q).unwrap();
            for (fwd, inv) in [
                (
                    &(|x: &mut [u64]| t.forward(x)) as &dyn Fn(&mut [u64]),
                    &(|x: &mut [u64]| t.inverse(x)) as &dyn Fn(&mut [u64]),
                ),
                (&|x: &mut [u64]| h.forward(x), &|x: &mut [u64]| h.inverse(x)),
            ] {
                let (mut fa, mut fb) = (a.clone(), b.clone());
                fwd(&mut fa);
                fwd(&mut fb);
                let mut c: Vec<u64> = fa.iter().zip(&fb).map(|(x, y)| m.mul(*x, *y)).collect();
                inv(&mut c);
                assert_eq!(c, want, "q={q}");
                inv(&mut fa);
                assert_eq!(fa, a);
            }
            // Both evaluate at odd powers of their ψ in a bit-reversed layout.
            let e = t.exponents();
            assert_eq!(e[0], 1);
            let mut sorted = e.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n as u32).map(|i| 2 * i + 1).collect::<Vec<_>>());
        }
    }
}

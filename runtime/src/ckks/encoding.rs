//! The CKKS encoder: the canonical embedding restricted to the slots
//! `ζ^{5^j}` (ζ = e^{iπ/N}) computed by the "special" FFT, for any power-of-two
//! number of slots `n ≤ N/2` (sparse packing places the `n`-slot vector in the
//! subring `Z[X^{N/2n}]`).

use super::params::Parameters;
use super::ring::Poly;
use super::CkksError;
use num_complex::Complex64;
use rayon::prelude::*;

/// An encoded message: a polynomial in the NTT domain with its scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Plaintext {
    pub(crate) poly: Poly,
    pub(crate) scale: f64,
    pub(crate) slots: usize,
}

impl Plaintext {
    pub fn level(&self) -> usize {
        self.poly.level
    }
    pub fn scale(&self) -> f64 {
        self.scale
    }
    pub fn slots(&self) -> usize {
        self.slots
    }
}

pub struct Encoder {
    params: Parameters,
    /// `e^{2πik/2N}` for `k < 2N`.
    roots: Vec<Complex64>,
    /// `5^j mod 2N` for `j < N/2`.
    rot_group: Vec<usize>,
    /// `q_j^{-1} mod q_i` (row `i`, `j < i`) for Garner's CRT reconstruction.
    garner: Vec<Vec<u64>>,
}

fn bit_reverse_permute<T>(v: &mut [T]) {
    let n = v.len();
    let bits = n.trailing_zeros();
    if bits == 0 {
        return;
    }
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if i < j {
            v.swap(i, j);
        }
    }
}

impl Encoder {
    pub fn new(params: &Parameters) -> Self {
        let n = params.n();
        let m = 2 * n;
        let roots = (0..m)
            .map(|k| Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * k as f64 / m as f64))
            .collect();
        let mut rot_group = Vec::with_capacity(n / 2);
        let mut g = 1usize;
        for _ in 0..n / 2 {
            rot_group.push(g);
            g = g * 5 % m;
        }
        let ring = params.ring();
        let garner = (0..params.q().len())
            .map(|i| {
                let mi = ring.modulus(i);
                (0..i).map(|j| mi.inv(mi.reduce(params.q()[j]))).collect()
            })
            .collect();
        Encoder {
            params: params.clone(),
            roots,
            rot_group,
            garner,
        }
    }

    pub fn params(&self) -> &Parameters {
        &self.params
    }

    /// Slots → coefficients of the "complex" half-size polynomial (inverse special FFT).
    fn special_fft_inv(&self, v: &mut [Complex64]) {
        let n = v.len();
        let m = self.roots.len();
        let mut len = n;
        while len >= 2 {
            let (lenh, lenq) = (len / 2, 4 * len);
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let idx = (lenq - self.rot_group[j] % lenq) * (m / lenq);
                    let (a, b) = (v[i + j], v[i + j + lenh]);
                    v[i + j] = a + b;
                    v[i + j + lenh] = (a - b) * self.roots[idx];
                }
            }
            len /= 2;
        }
        bit_reverse_permute(v);
        let inv = 1.0 / n as f64;
        for x in v.iter_mut() {
            *x *= inv;
        }
    }

    #[cfg(test)]
    pub(crate) fn special_fft_inv_for_tests(&self, v: &mut [Complex64]) {
        self.special_fft_inv(v)
    }

    /// Coefficients → slots (special FFT).
    fn special_fft(&self, v: &mut [Complex64]) {
        let n = v.len();
        let m = self.roots.len();
        bit_reverse_permute(v);
        let mut len = 2;
        while len <= n {
            let (lenh, lenq) = (len / 2, 4 * len);
            for i in (0..n).step_by(len) {
                for j in 0..lenh {
                    let idx = (self.rot_group[j] % lenq) * (m / lenq);
                    let a = v[i + j];
                    let b = v[i + j + lenh] * self.roots[idx];
                    v[i + j] = a + b;
                    v[i + j + lenh] = a - b;
                }
            }
            len *= 2;
        }
    }

    fn check_slots(&self, slots: usize) -> Result<(), CkksError> {
        if slots == 0 || !slots.is_power_of_two() || slots > self.params.max_slots() {
            return Err(CkksError::InvalidArgument(format!(
                "slot count {slots} must be a power of two in 1..={}",
                self.params.max_slots()
            )));
        }
        Ok(())
    }

    /// Encodes complex values (a power-of-two count up to `N/2`) at `level` and `scale`.
    pub fn encode(
        &self,
        values: &[Complex64],
        level: usize,
        scale: f64,
    ) -> Result<Plaintext, CkksError> {
        let slots = values.len();
        self.check_slots(slots)?;
        if level > self.params.max_level() {
            return Err(CkksError::InvalidArgument(format!(
                "level {level} above the maximum"
            )));
        }
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::InvalidArgument(format!(
                "scale {scale} must be ≥ 1"
            )));
        }
        let coeffs = self.encode_coeffs(values, scale)?;
        let poly = self.poly_from_coeffs(&coeffs, level);
        Ok(Plaintext { poly, scale, slots })
    }

    /// The integer coefficients `round(scale · U^{-1}(values))` of an
    /// encoding (the compact form of a plaintext, independent of the level).
    pub(crate) fn encode_coeffs(
        &self,
        values: &[Complex64],
        scale: f64,
    ) -> Result<Vec<i128>, CkksError> {
        let slots = values.len();
        self.check_slots(slots)?;
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::InvalidArgument(format!(
                "scale {scale} must be ≥ 1"
            )));
        }
        let mut w = values.to_vec();
        self.special_fft_inv(&mut w);
        let n = self.params.n();
        let gap = n / 2 / slots;
        let mut coeffs = vec![0i128; n];
        let limit = 2f64.powi(120);
        for (i, z) in w.iter().enumerate() {
            let (re, im) = ((z.re * scale).round(), (z.im * scale).round());
            if !(re.abs() < limit && im.abs() < limit) {
                return Err(CkksError::InvalidArgument(
                    "value × scale is not finite or exceeds 2^120".into(),
                ));
            }
            coeffs[i * gap] = re as i128;
            coeffs[n / 2 + i * gap] = im as i128;
        }
        Ok(coeffs)
    }

    /// The NTT-domain polynomial of integer coefficients at `level`.
    pub(crate) fn poly_from_coeffs(&self, coeffs: &[i128], level: usize) -> Poly {
        let ring = self.params.ring();
        let n = self.params.n();
        let mut poly = Poly::zero(ring, level, false, false);
        poly.data
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(l, limb)| {
                let m = ring.modulus(l);
                for (o, c) in limb.iter_mut().zip(coeffs) {
                    *o = m.reduce_i128(*c);
                }
            });
        poly.to_ntt(ring);
        poly
    }

    pub fn encode_real(
        &self,
        values: &[f64],
        level: usize,
        scale: f64,
    ) -> Result<Plaintext, CkksError> {
        let v: Vec<Complex64> = values.iter().map(|&x| Complex64::new(x, 0.0)).collect();
        self.encode(&v, level, scale)
    }

    /// Decodes all slots of a plaintext.
    pub fn decode(&self, pt: &Plaintext) -> Vec<Complex64> {
        let ring = self.params.ring();
        let mut poly = pt.poly.clone();
        poly.to_coeff(ring);
        let n = self.params.n();
        let slots = pt.slots;
        let gap = n / 2 / slots;
        let positions: Vec<usize> = (0..slots)
            .map(|i| i * gap)
            .chain((0..slots).map(|i| n / 2 + i * gap))
            .collect();
        let values: Vec<f64> = positions
            .par_iter()
            .map(|&k| self.crt_centered(&poly, k) / pt.scale)
            .collect();
        let mut w: Vec<Complex64> = (0..slots)
            .map(|i| Complex64::new(values[i], values[slots + i]))
            .collect();
        self.special_fft(&mut w);
        w
    }

    pub fn decode_real(&self, pt: &Plaintext) -> Vec<f64> {
        self.decode(pt).iter().map(|z| z.re).collect()
    }

    /// Centered value of coefficient `k` (Garner's mixed radix with signed digits),
    /// as a float; saturates to ±∞ for values beyond the f64 range.
    fn crt_centered(&self, poly: &Poly, k: usize) -> f64 {
        let ring = self.params.ring();
        let levels = poly.level + 1;
        let mut digits = [0i64; 64];
        let mut digits_vec;
        let d: &mut [i64] = if levels <= 64 {
            &mut digits[..levels]
        } else {
            digits_vec = vec![0i64; levels];
            &mut digits_vec
        };
        for i in 0..levels {
            let m = ring.modulus(i);
            let q = m.value();
            let mut t = poly.limb(i)[k];
            for (dj, inv) in d[..i].iter().zip(&self.garner[i]) {
                t = m.mul(m.sub(t, m.reduce_i64(*dj)), *inv);
            }
            d[i] = if t > q / 2 {
                t as i64 - q as i64
            } else {
                t as i64
            };
        }
        let mut acc = 0f64;
        for i in (0..levels).rev() {
            acc = acc * self.params.q()[i] as f64 + d[i] as f64;
        }
        acc
    }
}

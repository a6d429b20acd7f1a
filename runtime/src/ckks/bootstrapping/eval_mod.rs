//! EvalMod: the homomorphic reduction modulo `q_0`.
//!
//! After CoeffToSlot each slot holds `x = t/q_0 = I + m/q_0` with `I` an
//! integer, `|I| ≤ K`, and `|m/q_0|` tiny. `sin(2πx)/(2π) = m/q_0 + O((m/q_0)^3)`
//! removes `I`. It is evaluated as `sin(2πx) = cos(2π(x − 1/4))`: the slots
//! arrive as `y = (x − 1/4)/K_u ∈ [−1, 1]`, a Chebyshev interpolant of
//! `cos(2π·K_u·y / 2^r)` brings them to the angle divided by `2^r`, and `r`
//! double-angle steps `cos 2θ = 2cos²θ − 1` restore it. The `1/(2π)` and the
//! scale back to the message are folded into SlotToCoeff.

use crate::ckks::circuits::polynomial::ChebyshevPoly;
use crate::ckks::encryption::Ciphertext;
use crate::ckks::{CkksError, Evaluator};

/// The scaled cosine and its double-angle count.
#[derive(Clone, Debug)]
pub struct CosineApprox {
    pub poly: ChebyshevPoly,
    /// Half-width of the interval of `x − 1/4`.
    pub k_u: f64,
    /// Number of double-angle steps `r`.
    pub double_angle: u32,
    /// Sum of the magnitudes of the dropped Chebyshev coefficients: a bound on
    /// the truncation error on `[−1, 1]`.
    pub truncation_error: f64,
}

impl CosineApprox {
    /// The Chebyshev expansion of `cos(2π·k_u·y/2^r)` on `[−1, 1]`, truncated
    /// at the lowest even degree whose dropped tail sums below `2^-log_error`.
    /// The coefficients are exact: `cos(a·y) = J_0(a) + 2·Σ_k (−1)^k J_{2k}(a)·T_{2k}(y)`,
    /// with the Bessel values from Miller's backward recurrence (accurate to
    /// relative rounding even where they are tiny, unlike an interpolating DCT).
    pub fn new(k_u: f64, double_angle: u32, log_error: u32) -> Self {
        let a = 2.0 * std::f64::consts::PI * k_u / f64::from(1u32 << double_angle);
        let j = bessel_j(a, 2 * a.ceil() as usize + 120);
        let coeff = |k: usize| -> f64 {
            if k % 2 == 1 {
                0.0
            } else if k == 0 {
                j[0]
            } else {
                let sign = if (k / 2) % 2 == 0 { 1.0 } else { -1.0 };
                2.0 * sign * j[k]
            }
        };
        let eps = (-(f64::from(log_error))).exp2();
        let tail = |d: usize| -> f64 { (d + 1..j.len()).map(|k| coeff(k).abs()).sum() };
        let mut degree = 0;
        while tail(degree) >= eps {
            degree += 2;
        }
        let coeffs: Vec<f64> = (0..=degree).map(coeff).collect();
        CosineApprox {
            poly: ChebyshevPoly::new(coeffs, -1.0, 1.0).expect("finite coefficients"),
            k_u,
            double_angle,
            truncation_error: tail(degree),
        }
    }

    /// Levels consumed: the polynomial plus one per double angle.
    pub fn depth(&self) -> usize {
        self.poly.depth() + self.double_angle as usize
    }

    /// The cleartext function this evaluates, `x ↦ sin(2πx)` through the
    /// approximation (input `y = (x − 1/4)/K_u`).
    pub fn evaluate(&self, y: f64) -> f64 {
        let mut c = self.poly.evaluate(y);
        for _ in 0..self.double_angle {
            c = 2.0 * c * c - 1.0;
        }
        c
    }
}

/// `J_0(a), …, J_{m-1}(a)` by Miller's backward recurrence
/// `J_{k−1} = (2k/a)·J_k − J_{k+1}`, normalised with `J_0 + 2·Σ J_{2k} = 1`.
fn bessel_j(a: f64, m: usize) -> Vec<f64> {
    let start = m + 40;
    let mut j = vec![0.0f64; start + 2];
    j[start] = 1e-300;
    for k in (1..=start).rev() {
        j[k - 1] = 2.0 * k as f64 / a * j[k] - j[k + 1];
        // Rescale to stay in range; the normalisation below fixes the factor.
        if j[k - 1].abs() > 1e250 {
            for v in j[k - 1..].iter_mut() {
                *v *= 1e-250;
            }
        }
    }
    let norm = j[0] + 2.0 * j.iter().skip(2).step_by(2).sum::<f64>();
    j.truncate(m);
    j.iter().map(|v| v / norm).collect()
}

impl Evaluator {
    /// Evaluates [`CosineApprox`] on every slot: the output is `sin(2πx)`.
    /// The polynomial is evaluated at `scale`; each double angle squares the
    /// scale and divides it by the prime it rescales by.
    pub fn eval_mod(
        &self,
        ct: &Ciphertext,
        approx: &CosineApprox,
        scale: f64,
    ) -> Result<Ciphertext, CkksError> {
        let mut c = self.evaluate_chebyshev_in_depth(ct, &approx.poly, scale)?;
        for _ in 0..approx.double_angle {
            let sq = self.mul_relin(&c, &c)?;
            let twice = self.mul_int(&sq, 2);
            c = self.add_const(&self.rescale(&twice)?, -1.0)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_values_match_known_ones() {
        let j = bessel_j(1.0, 10);
        assert!((j[0] - 0.765_197_686_557_966_6).abs() < 1e-15);
        assert!((j[1] - 0.440_050_585_744_933_5).abs() < 1e-15);
        let j = bessel_j(10.0, 60);
        assert!((j[0] + 0.245_935_764_451_348_3).abs() < 1e-14);
        // J_40(10) ≈ 6.0e-21: tiny values keep their relative accuracy.
        assert!(
            (j[40] / 6.030_895_312_346_907e-21 - 1.0).abs() < 1e-9,
            "{}",
            j[40]
        );
    }

    #[test]
    fn cosine_approximation_reduces_modulo_one() {
        // K = 16.5 (a Hamming-weight-32 ephemeral secret), three double angles.
        let approx = CosineApprox::new(17.0, 3, 52);
        assert!(approx.truncation_error < 2f64.powi(-52));
        let mut worst = 0f64;
        for i in -16i32..=16 {
            for k in 0..64 {
                let m = (k as f64 - 32.0) * 2f64.powi(-20);
                let x = i as f64 + m;
                let y = (x - 0.25) / approx.k_u;
                let got = approx.evaluate(y) / (2.0 * std::f64::consts::PI);
                let want = (2.0 * std::f64::consts::PI * m).sin() / (2.0 * std::f64::consts::PI);
                worst = worst.max((got - want).abs());
            }
        }
        // In f64 the evaluation itself rounds at ~2^-53 of |cos| ≤ 1, and each
        // double angle quadruples what it inherits.
        assert!(worst < 2f64.powi(-44), "worst error 2^{:.1}", worst.log2());
    }
}

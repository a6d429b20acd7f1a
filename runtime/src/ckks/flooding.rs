//! Decryption that is safe to share: noise flooding and rounding.
//!
//! # What it protects
//!
//! A CKKS decryption `c0 + c1·s = Δ·m + e` returns the message *with* the
//! ciphertext's error `e`, and `e` is a known linear function of the secret
//! key given the ciphertexts (Li and Micciancio, Eurocrypt 2021): anyone who
//! sees exact decrypted values of a few ciphertexts they know — the server
//! that computed them, or whoever the client shares results with — can
//! solve for `s`. IND-CPA does not cover this; IND-CPA^D does.
//!
//! [`DecryptionMode::Flooded`] adds to `c0 + c1·s`, before decoding, fresh
//! discrete Gaussian noise of standard deviation
//!
//! ```text
//! σ_flood = √(12·t) · 2^(s/2) · E
//! ```
//!
//! per coefficient, where `E` bounds the absolute value of the
//! coefficients of the ciphertext's error, `s` is the statistical security
//! parameter and `t = 2^log2_queries` the number of decryptions of the same
//! or related ciphertexts an adversary may see. This is the sizing OpenFHE
//! uses for noise flooding (following Li, Micciancio, Schultz and Sorrell,
//! *Securing Approximate Homomorphic Encryption Using Differential Privacy*,
//! Crypto 2022): the released values are then, up to statistical distance
//! about `2^-s`, independent of the error and so of the secret key. The
//! decoded values are finally rounded to multiples of `2^-precision_bits`,
//! the precision the circuit guarantees, so no digit below it is released.
//!
//! # What it costs
//!
//! `log2(σ_flood / E) = s/2 + ½·log2(12·t)` bits of precision: 16.8 bits at
//! the default `s = 30, t = 1` (OpenFHE's defaults), 21.8 bits at `t = 2^10`;
//! plus at most 0.7 bit because the sampler rounds σ up (see
//! [`super::sampling::WideGaussian`]). In slots, the added noise has
//! standard deviation `σ_flood·√(N/2)/Δ` per real component
//! ([`Flooding::slot_noise_std`]). Sampling costs 2^k constant-time base
//! samples per coefficient (k = 3–4 for σ up to 2^45), a few hundred
//! milliseconds at `N = 2^16`.
//!
//! # Where `E` comes from
//!
//! * [`Decryptor::measure_error_log2`]: the error actually present in a
//!   ciphertext whose message is known — a noise-estimation run of the same
//!   circuit on a known input (OpenFHE's `EXEC_NOISE_ESTIMATION`); the
//!   estimate then serves for the real inputs. Tightest; the circuit's
//!   error must not depend much on the input (CKKS errors do not).
//! * [`Flooding::error_bound_from_precision`]: from the circuit's guaranteed
//!   slot precision `p` (absolute error at most `2^-p` per slot): since
//!   coefficients are bounded by the canonical embedding's largest
//!   component, `E ≤ 2^-p·Δ`. Rigorous, but looser by about `√N/4`.
//!
//! Not protected: the *values* themselves (they are the result the client
//! asked for), and decryptions with [`DecryptionMode::Exact`], which stays
//! available for the key owner's own use.

use super::encoding::{Encoder, Plaintext};
use super::encryption::{Ciphertext, Decryptor};
use super::ring::Poly;
use super::sampling::{Prng, WideGaussian};
use super::{CkksError, Complex64};
use zeroize::Zeroizing;

/// How decrypted values are released.
#[derive(Clone, Debug, PartialEq)]
pub enum DecryptionMode {
    /// `c0 + c1·s` as it is: its low-order digits are a function of the
    /// secret key. Only for the key owner's own eyes.
    Exact,
    /// Noise flooding and rounding: safe to share (see the module docs).
    Flooded(Flooding),
}

/// The parameters of flooded decryption.
#[derive(Clone, Debug, PartialEq)]
pub struct Flooding {
    /// Statistical security `s`, in bits.
    pub security_bits: u32,
    /// `log2 t`: decryptions of the same or related ciphertexts an
    /// adversary may see.
    pub log2_queries: u32,
    /// `log2 E`, `E` a bound on the absolute value of every coefficient of
    /// the ciphertext's error (in the integer units of `c0 + c1·s`).
    pub log2_error_bound: f64,
    /// Decoded values are rounded to multiples of `2^-precision_bits`.
    pub precision_bits: u32,
}

impl Flooding {
    /// OpenFHE's default statistical security for flooded decryption.
    pub const DEFAULT_SECURITY_BITS: u32 = 30;

    /// Flooding with the default security (`s = 30`, `t = 1`).
    pub fn new(log2_error_bound: f64, precision_bits: u32) -> Self {
        Flooding {
            security_bits: Self::DEFAULT_SECURITY_BITS,
            log2_queries: 0,
            log2_error_bound,
            precision_bits,
        }
    }

    /// `log2 E` from a slot precision guarantee: slot errors at most
    /// `2^-precision_bits` at scale `scale` bound every coefficient error by
    /// `2^-precision_bits · scale`.
    pub fn error_bound_from_precision(scale: f64, precision_bits: u32) -> f64 {
        scale.log2() - precision_bits as f64
    }

    /// `σ_flood = √(12·t) · 2^(s/2) · E`, the standard deviation required.
    pub fn noise_std(&self) -> f64 {
        self.log2_noise_std().exp2()
    }

    /// `log2 σ_flood`.
    pub fn log2_noise_std(&self) -> f64 {
        self.log2_error_bound + self.bits_lost()
    }

    /// Precision given up to the flooding noise: `s/2 + ½·log2(12·t)` bits
    /// (before the sampler's rounding of σ up).
    pub fn bits_lost(&self) -> f64 {
        self.security_bits as f64 / 2.0 + 0.5 * (12f64.log2() + self.log2_queries as f64)
    }

    /// Standard deviation of the noise this adds to the real (or the
    /// imaginary) part of each slot, for ring degree `n` and scale `scale`,
    /// given the sampler's actual σ.
    pub fn slot_noise_std(&self, n: usize, scale: f64) -> Result<f64, CkksError> {
        Ok(self.sampler()?.sigma() * (n as f64 / 2.0).sqrt() / scale)
    }

    fn sampler(&self) -> Result<WideGaussian, CkksError> {
        let sigma = self.noise_std();
        WideGaussian::new(sigma).map_err(CkksError::InvalidArgument)
    }
}

/// `x mod q` for a signed `x`, branch-free after the Barrett reduction.
#[inline(always)]
fn reduce_signed_ct(m: &super::ring::Modulus, x: i64) -> u64 {
    let q = m.value();
    let r = m.reduce_u128(x.unsigned_abs() as u128);
    let neg = ((x >> 63) as u64) & 1;
    // r, or q − r when negative; q − 0 = q folds back to 0.
    let v = r ^ ((r ^ (q - r)) & neg.wrapping_neg());
    v - (q & u64::from(v == q).wrapping_neg())
}

impl Decryptor {
    /// Decrypts with noise flooding (see the module docs): `c0 + c1·s` plus
    /// fresh discrete Gaussian noise of standard deviation at least
    /// [`Flooding::noise_std`] in every coefficient, drawn in constant time.
    /// Refuses noise that would reach the ciphertext's scale (the result
    /// would carry no information) or the smallest modulus.
    pub fn decrypt_flooded(
        &self,
        ct: &Ciphertext,
        flooding: &Flooding,
    ) -> Result<Plaintext, CkksError> {
        let sampler = flooding.sampler()?;
        if sampler.sigma() >= ct.scale() {
            return Err(CkksError::InvalidArgument(format!(
                "flooding noise 2^{:.1} reaches the ciphertext's scale 2^{:.1}: lower the error \
                 bound or the security level, or decrypt at a larger scale",
                sampler.sigma().log2(),
                ct.scale().log2()
            )));
        }
        let ring = self.params.ring();
        if sampler.bound() as f64 >= ring.modulus(0).value() as f64 / 4.0 {
            return Err(CkksError::InvalidArgument(format!(
                "flooding noise bound 2^{:.1} does not fit below q_0/4",
                (sampler.bound() as f64).log2()
            )));
        }
        let mut pt = self.decrypt(ct);
        let mut rng = Prng::from_entropy()?;
        let mut noise = Zeroizing::new(vec![0i64; ring.n()]);
        sampler.fill(&mut rng, &mut noise);
        let mut e = Zeroizing::new(Poly::zero(ring, ct.level(), false, false));
        e.for_each_limb(ring, |mi, limb| {
            let m = ring.modulus(mi);
            for (o, &x) in limb.iter_mut().zip(noise.iter()) {
                *o = reduce_signed_ct(m, x);
            }
        });
        e.to_ntt(ring);
        pt.poly.add_assign(ring, &e);
        Ok(pt)
    }

    /// Decrypts and decodes in `mode`; [`DecryptionMode::Flooded`] also
    /// rounds every real and imaginary part to a multiple of
    /// `2^-precision_bits`. What precis prints or writes should come from
    /// here with a flooded mode.
    pub fn decrypt_values(
        &self,
        encoder: &Encoder,
        ct: &Ciphertext,
        mode: &DecryptionMode,
    ) -> Result<Vec<Complex64>, CkksError> {
        match mode {
            DecryptionMode::Exact => Ok(encoder.decode(&self.decrypt(ct))),
            DecryptionMode::Flooded(f) => {
                let pt = self.decrypt_flooded(ct, f)?;
                let unit = (f.precision_bits as f64).exp2();
                let round = |x: f64| (x * unit).round() / unit;
                Ok(encoder
                    .decode(&pt)
                    .into_iter()
                    .map(|z| Complex64::new(round(z.re), round(z.im)))
                    .collect())
            }
        }
    }

    /// `log2` of the largest coefficient of the error of `ct` against the
    /// plaintext `expected` it should decrypt to (same level and scale): the
    /// noise estimate of a run on a known input. `-∞` for no error.
    pub fn measure_error_log2(
        &self,
        ct: &Ciphertext,
        expected: &Plaintext,
    ) -> Result<f64, CkksError> {
        if expected.level() != ct.level() || expected.scale() != ct.scale() {
            return Err(CkksError::Mismatch(format!(
                "expected plaintext at level {} scale 2^{:.1}, ciphertext at level {} scale 2^{:.1}",
                expected.level(),
                expected.scale().log2(),
                ct.level(),
                ct.scale().log2()
            )));
        }
        let ring = self.params.ring();
        let mut d = Zeroizing::new(self.decrypt(ct).poly);
        d.sub_assign(ring, &expected.poly);
        d.to_coeff(ring);
        let q = ring.modulus(0).value();
        let largest = d
            .limb(0)
            .iter()
            .map(|&v| if v > q / 2 { q - v } else { v })
            .max()
            .unwrap_or(0);
        Ok((largest as f64).log2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::tests::test_params;
    use crate::ckks::{
        DigitSplit, Encryptor, Evaluator, KeyGenerator, Parameters, ParametersLiteral,
    };

    fn centered_limb0(params: &Parameters, p: &Plaintext) -> Vec<i64> {
        let ring = params.ring();
        let mut c = p.poly.clone();
        c.to_coeff(ring);
        let q = ring.modulus(0).value();
        c.limb(0)
            .iter()
            .map(|&v| {
                if v > q / 2 {
                    v as i64 - q as i64
                } else {
                    v as i64
                }
            })
            .collect()
    }

    #[test]
    fn flooding_is_sized_by_the_stated_rule() {
        let f = Flooding {
            security_bits: 40,
            log2_queries: 10,
            log2_error_bound: 12.0,
            precision_bits: 20,
        };
        let want = (12.0 * 1024f64).sqrt() * 2f64.powi(20) * 2f64.powi(12);
        assert!((f.noise_std() / want - 1.0).abs() < 1e-12);
        assert!((f.bits_lost() - (20.0 + 0.5 * (12f64.log2() + 10.0))).abs() < 1e-12);
        // Defaults: s = 30, t = 1 → 16.79 bits.
        assert!((Flooding::new(0.0, 10).bits_lost() - 16.79).abs() < 0.01);
        assert_eq!(
            Flooding::error_bound_from_precision(2f64.powi(40), 25),
            15.0
        );
    }

    /// The difference between a flooded and an exact decryption of the same
    /// ciphertext is the flooding noise: it has the sampler's σ, at least
    /// the σ the rule asks for, is fresh for every decryption, and is
    /// centred and Gaussian-shaped.
    #[test]
    fn flooding_noise_has_the_stated_size() {
        let params = test_params(11, 2, 1);
        let mut kg = KeyGenerator::new(&params).unwrap();
        let sk = kg.gen_secret_key();
        let enc = Encoder::new(&params);
        let values: Vec<Complex64> = (0..1024)
            .map(|i| Complex64::new((i % 7) as f64 / 7.0, 0.0))
            .collect();
        let pt = enc.encode(&values, 2, params.default_scale()).unwrap();
        let ct = Encryptor::with_secret_key(&params, &sk)
            .unwrap()
            .encrypt(&pt);
        let dec = Decryptor::new(&params, &sk);
        let exact = centered_limb0(&params, &dec.decrypt(&ct));
        for log2_e in [4.0, 9.5] {
            let f = Flooding::new(log2_e, 20);
            let sigma = f.sampler().unwrap().sigma();
            assert!(
                sigma >= f.noise_std() && sigma < 1.62 * f.noise_std(),
                "σ {sigma}"
            );
            let mut samples = Vec::new();
            let mut previous: Option<Vec<i64>> = None;
            for _ in 0..8 {
                let flooded = centered_limb0(&params, &dec.decrypt_flooded(&ct, &f).unwrap());
                let noise: Vec<i64> = flooded.iter().zip(&exact).map(|(a, b)| a - b).collect();
                if let Some(p) = &previous {
                    assert_ne!(p, &noise, "the noise is fresh for every decryption");
                }
                samples.extend(noise.iter().map(|&x| x as f64));
                previous = Some(noise);
            }
            let n = samples.len() as f64;
            let mean = samples.iter().sum::<f64>() / n;
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            let std = var.sqrt();
            assert!((std / sigma - 1.0).abs() < 0.02, "std {std} vs σ {sigma}");
            assert!(mean.abs() < 4.0 * sigma / n.sqrt(), "mean {mean}");
            let within = samples.iter().filter(|x| x.abs() <= sigma).count() as f64 / n;
            assert!((within - 0.6827).abs() < 0.01, "P(|x| ≤ σ) = {within}");
            let kurt = samples
                .iter()
                .map(|x| ((x - mean) / std).powi(4))
                .sum::<f64>()
                / n;
            assert!((kurt - 3.0).abs() < 0.1, "kurtosis {kurt}");
        }
    }

    /// A toy classifier under encryption: 64 samples × 16 logits, an affine
    /// layer, a square and a rotate-and-add. Flooded decryption, sized from a
    /// noise-estimation run on another input, keeps every class and stays
    /// within the noise it states; its values are rounded.
    #[test]
    fn flooded_decryption_keeps_the_class() {
        let params = test_params(11, 3, 1);
        let mut kg = KeyGenerator::new(&params).unwrap();
        let sk = kg.gen_secret_key();
        let keys = std::sync::Arc::new(kg.gen_evaluation_keys(&sk, &[1], false));
        let eval = Evaluator::new(&params, Some(keys));
        let enc = Encoder::new(&params);
        let dec = Decryptor::new(&params, &sk);
        let mut rng = crate::ckks::sampling::Prng::from_seed([3; 32]);
        let input = |rng: &mut crate::ckks::sampling::Prng| -> Vec<Complex64> {
            (0..1024)
                .map(|_| Complex64::new(rng.unit_f64() - 0.5, 0.0))
                .collect()
        };
        // y = rot1(z) + z, z = (0.9·x + 0.1)², on ciphertexts; and in the clear.
        let circuit = |ct: &Ciphertext| {
            let a = eval
                .mul_const(ct, 0.9, params.q()[ct.level()] as f64)
                .unwrap();
            let a = eval.rescale(&a).unwrap();
            let a = eval.add_const(&a, 0.1).unwrap();
            let z = eval.square(&a).unwrap();
            let z = eval.rescale(&z).unwrap();
            let r = eval.rotate(&z, 1).unwrap();
            eval.add(&z, &r).unwrap()
        };
        let clear = |x: &[Complex64]| -> Vec<f64> {
            let z: Vec<f64> = x.iter().map(|v| (0.9 * v.re + 0.1).powi(2)).collect();
            (0..z.len()).map(|i| z[i] + z[(i + 1) % z.len()]).collect()
        };
        let encrypt = |x: &[Complex64]| {
            let pt = enc.encode(x, 3, params.default_scale()).unwrap();
            Encryptor::with_secret_key(&params, &sk)
                .unwrap()
                .encrypt(&pt)
        };
        // Noise estimation on a known input.
        let probe = input(&mut rng);
        let probe_ct = circuit(&encrypt(&probe));
        let want: Vec<Complex64> = clear(&probe)
            .into_iter()
            .map(|v| Complex64::new(v, 0.0))
            .collect();
        let expected = enc
            .encode(&want, probe_ct.level(), probe_ct.scale())
            .unwrap();
        let log2_e = dec.measure_error_log2(&probe_ct, &expected).unwrap();
        assert!(log2_e > 0.0 && log2_e < 20.0, "log2 E = {log2_e}");
        let f = Flooding::new(log2_e + 1.0, 12);
        let slot_std = f.slot_noise_std(params.n(), probe_ct.scale()).unwrap();
        assert!(slot_std < 1e-3, "slot noise {slot_std}");

        let x = input(&mut rng);
        let ct = circuit(&encrypt(&x));
        let truth = clear(&x);
        let exact = dec
            .decrypt_values(&enc, &ct, &DecryptionMode::Exact)
            .unwrap();
        let flooded = dec
            .decrypt_values(&enc, &ct, &DecryptionMode::Flooded(f.clone()))
            .unwrap();
        let unit = 2f64.powi(-12);
        let mut worst: f64 = 0.0;
        for (i, (a, b)) in exact.iter().zip(&flooded).enumerate() {
            assert!(
                (b.re / unit).fract() == 0.0 && (b.im / unit).fract() == 0.0,
                "slot {i} not rounded"
            );
            worst = worst.max((a.re - b.re).abs());
        }
        assert!(
            worst < 6.0 * slot_std + unit,
            "largest change {worst}, slot σ {slot_std}"
        );
        assert!(worst > slot_std / 4.0, "flooding added no noise: {worst}");
        let argmax = |v: &dyn Fn(usize) -> f64, s: usize| {
            (0..16)
                .max_by(|&a, &b| v(s * 16 + a).total_cmp(&v(s * 16 + b)))
                .unwrap()
        };
        let mut kept = 0;
        for s in 0..64 {
            let c = argmax(&|i| truth[i], s);
            let mut sorted: Vec<f64> = (0..16).map(|j| truth[s * 16 + j]).collect();
            sorted.sort_by(|a, b| b.total_cmp(a));
            // A class the noise may legitimately flip is one within a few σ.
            if sorted[0] - sorted[1] > 12.0 * slot_std + 2.0 * unit {
                assert_eq!(argmax(&|i| flooded[i].re, s), c, "sample {s}");
                assert_eq!(argmax(&|i| exact[i].re, s), c, "sample {s}");
                kept += 1;
            }
        }
        assert!(kept >= 32, "only {kept} of 64 samples had a clear class");
    }

    #[test]
    fn flooding_refuses_noise_that_drowns_the_message() {
        let params = test_params(10, 1, 1);
        let mut kg = KeyGenerator::new(&params).unwrap();
        let sk = kg.gen_secret_key();
        let enc = Encoder::new(&params);
        let pt = enc
            .encode(&[Complex64::new(0.5, 0.0)], 1, params.default_scale())
            .unwrap();
        let ct = Encryptor::with_secret_key(&params, &sk)
            .unwrap()
            .encrypt(&pt);
        let dec = Decryptor::new(&params, &sk);
        let err = dec
            .decrypt_flooded(&ct, &Flooding::new(30.0, 10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reaches the ciphertext's scale"), "{err}");
    }

    /// At the real ring degree N = 2^16 (a 128-bit-secure chain): the noise
    /// has its σ and a rescaled product keeps its values.
    #[test]
    fn flooding_at_n_2_16() {
        let params = Parameters::new(ParametersLiteral {
            log_n: 16,
            log_q: vec![60, 40, 40],
            log_p: vec![61],
            log_scale: 40,
            digits: DigitSplit::Even(3),
            secret: crate::ckks::SecretDistribution::Ternary,
            insecure: false,
        })
        .unwrap();
        assert!(params.is_secure());
        let mut kg = KeyGenerator::new(&params).unwrap();
        let sk = kg.gen_secret_key();
        let enc = Encoder::new(&params);
        let eval = Evaluator::new(&params, None);
        let values: Vec<Complex64> = (0..1 << 15)
            .map(|i| Complex64::new(((i % 11) as f64 - 5.0) / 8.0, 0.0))
            .collect();
        let pt = enc.encode(&values, 2, params.default_scale()).unwrap();
        let ct = Encryptor::with_secret_key(&params, &sk)
            .unwrap()
            .encrypt(&pt);
        let ct = eval
            .rescale(&eval.mul_const(&ct, 0.5, params.q()[2] as f64).unwrap())
            .unwrap();
        let dec = Decryptor::new(&params, &sk);
        let want: Vec<Complex64> = values.iter().map(|v| v * 0.5).collect();
        let expected = enc.encode(&want, ct.level(), ct.scale()).unwrap();
        let log2_e = dec.measure_error_log2(&ct, &expected).unwrap();
        let f = Flooding::new(log2_e, 14);
        let exact = centered_limb0(&params, &dec.decrypt(&ct));
        let flooded_pt = dec.decrypt_flooded(&ct, &f).unwrap();
        let noise: Vec<f64> = centered_limb0(&params, &flooded_pt)
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b) as f64)
            .collect();
        let sigma = f.sampler().unwrap().sigma();
        let std = (noise.iter().map(|x| x * x).sum::<f64>() / noise.len() as f64).sqrt();
        assert!((std / sigma - 1.0).abs() < 0.02, "std {std} vs σ {sigma}");
        let got = dec
            .decrypt_values(&enc, &ct, &DecryptionMode::Flooded(f.clone()))
            .unwrap();
        let slot_std = f.slot_noise_std(params.n(), ct.scale()).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a.re - b.re).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 6.0 * slot_std + 2f64.powi(-14),
            "error {worst}, slot σ {slot_std}"
        );
    }
}

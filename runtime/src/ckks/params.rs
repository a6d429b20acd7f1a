//! CKKS parameters: ring degree, generated prime chains, default scale,
//! hybrid key-switching decomposition, secret distribution, and the check
//! against the 128-bit security bounds: the homomorphic-encryption
//! standard's table for uniform ternary secrets, the sparse-secret bounds
//! for fixed-weight ones.

use super::ring::{primes::generate_primes, RingContext};
use super::CkksError;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// Standard deviation of the discrete Gaussian error.
pub const ERROR_STD_DEV: f64 = 3.2;
/// Errors are truncated at this many standard deviations.
pub const ERROR_TAIL_CUT: f64 = 6.0;

/// Largest `log2(QP)` for 128-bit classical security with a uniform ternary
/// secret and σ = 3.2 (homomorphicencryption.org standard, Table 1), for
/// `log2 N = 10..=16`; `N = 2^17` is extrapolated by doubling the `2^16` entry
/// (every step of the table is a factor of 2.00–2.01, so this is conservative).
pub fn max_log_qp_128(log_n: u32) -> Option<f64> {
    Some(match log_n {
        10 => 27.0,
        11 => 54.0,
        12 => 109.0,
        13 => 218.0,
        14 => 438.0,
        15 => 881.0,
        16 => 1772.0,
        17 => 3544.0,
        _ => return None,
    })
}

/// Largest `log2(QP)` for 128-bit classical security with a sparse ternary
/// secret of Hamming weight `h ≥ 192` ([`MIN_SECURE_HAMMING_WEIGHT`]) and
/// σ ≈ 3.2, for `log2 N = 15..=17`; `None` where no bound is published.
///
/// Sparse secrets are weaker than the standard's uniform ternary ones: the
/// hybrid dual and primal meet-in-the-middle attacks of Cheon, Hhan, Hong
/// and Son (IEEE Access 2019, eprint 2019/1114) and Son and Cheon (WAHC
/// 2019, eprint 2019/1019) guess the few nonzero coefficients, so the same
/// modulus buys fewer bits. The bounds are the largest moduli of the
/// published `h = 192` parameter sets: OpenFHE's `N = 2^15`, `2^17`
/// (767, 3104 bits) and OpenFHE's and Lattigo v6's `N = 2^16` bootstrapping
/// sets (`N16QP1553H192H32`, 1553 bits; Bossuat, Troncoso-Pastoriza and
/// Hubaux, eprint 2022/024), which the lattice estimator puts at 134.3,
/// 135.3 and 134.0 bits (HomomorphicEncryption.org's SparseLWEkit tables).
/// They are 12–13 % below the dense bounds (881, 1772, 3544). A larger
/// weight is at least as secure (the guessing attacks get costlier), so
/// the `h = 192` bound serves every fixed weight `h ≥ 192`.
pub fn max_log_qp_128_sparse(log_n: u32) -> Option<f64> {
    Some(match log_n {
        15 => 767.0,
        16 => 1553.0,
        17 => 3104.0,
        _ => return None,
    })
}

/// Smallest Hamming weight accepted for a sparse secret without the insecure
/// flag: the weight of the published sparse-secret bounds
/// ([`max_log_qp_128_sparse`]).
pub const MIN_SECURE_HAMMING_WEIGHT: usize = 192;

/// The largest `log2(QP)` that keeps 128-bit security for `secret` at
/// `N = 2^log_n`, or why there is none.
pub fn max_log_qp_128_for(log_n: u32, secret: SecretDistribution) -> Result<f64, String> {
    match secret {
        SecretDistribution::Ternary => {
            max_log_qp_128(log_n).ok_or_else(|| format!("no 128-bit bound at N = 2^{log_n}"))
        }
        SecretDistribution::FixedHammingWeight(h) if h < MIN_SECURE_HAMMING_WEIGHT => Err(format!(
            "secret Hamming weight {h} below {MIN_SECURE_HAMMING_WEIGHT}"
        )),
        SecretDistribution::FixedHammingWeight(h) => {
            max_log_qp_128_sparse(log_n).ok_or_else(|| {
                format!(
                    "no published 128-bit bound for a sparse secret (Hamming weight {h}) at \
                     N = 2^{log_n} (only N = 2^15..=2^17); use a uniform ternary secret"
                )
            })
        }
    }
}

/// Most `Q` primes a parameter set may have (the deepest preset has 37).
pub const MAX_Q_PRIMES: usize = 64;
/// Most key-switching digits a parameter set may have.
pub const MAX_DIGITS: usize = 16;
/// Most special primes a parameter set may have.
pub const MAX_P_PRIMES: usize = 16;
/// Most primes in all, `MAX_Q_PRIMES + MAX_P_PRIMES`: bounds the work and
/// memory of [`Parameters::new`] (prime search, NTT tables) for any literal,
/// including one read from a file.
pub const MAX_PRIMES: usize = MAX_Q_PRIMES + MAX_P_PRIMES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretDistribution {
    /// Each coefficient uniform in {-1, 0, 1}.
    Ternary,
    /// Exactly `h` nonzero coefficients in {-1, 1} (for sparse-secret bootstrapping).
    FixedHammingWeight(usize),
}

/// How hybrid key switching groups the `Q` primes into digits (contiguous
/// ranges from `q_0` up). A key switch at level `ℓ` pays for each digit
/// that holds one of `q_0..q_ℓ`: one basis extension to `Q_ℓ ∪ P` and one
/// key product over `ℓ + 1 + |P|` limbs per digit; a key stored at level
/// `ℓ` holds that many digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigitSplit {
    /// `dnum` digits with prime counts as even as possible (the first
    /// `len mod dnum` get one prime more).
    Even(usize),
    /// From `q_0` up, each digit takes as many consecutive primes as keep
    /// `|digit|·Q_digit` [`FILL_P_HEADROOM_BITS`] below `P`: the fewest
    /// such digits at every level, since no split into digits within that
    /// bound covers `q_0..q_ℓ` with fewer. Small primes (a circuit's 36- or
    /// 40-bit levels) share digits, so key switching at the levels a
    /// circuit runs at needs the fewest digits.
    FillP,
}

/// What the user chooses; everything else is derived deterministically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParametersLiteral {
    /// `log2 N`, 10..=17.
    pub log_n: u32,
    /// Bit sizes of `q_0, q_1, …, q_L` (each prime is the largest NTT prime below `2^bits`).
    pub log_q: Vec<u32>,
    /// Bit sizes of the special primes used by hybrid key switching.
    pub log_p: Vec<u32>,
    /// Default encoding scale `2^log_scale`, 20..=60.
    pub log_scale: u32,
    /// How the `Q` primes are grouped into key-switching digits.
    pub digits: DigitSplit,
    pub secret: SecretDistribution,
    /// Accept parameters that fail the 128-bit security check (tests, benchmarks).
    pub insecure: bool,
}

struct Inner {
    literal: ParametersLiteral,
    q: Vec<u64>,
    p: Vec<u64>,
    digits: Vec<Range<usize>>,
    log_qp: f64,
    ring: RingContext,
    /// `P mod q_i` and `P^{-1} mod q_i` for the `Q` primes.
    p_mod_q: Vec<u64>,
    p_inv_mod_q: Vec<u64>,
}

/// Validated, expanded parameters (cheap to clone).
#[derive(Clone)]
pub struct Parameters(Arc<Inner>);

impl std::fmt::Debug for Parameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parameters")
            .field("literal", &self.0.literal)
            .field("log_qp", &self.0.log_qp)
            .finish()
    }
}

impl PartialEq for Parameters {
    fn eq(&self, other: &Self) -> bool {
        self.0.literal == other.0.literal && self.0.q == other.0.q && self.0.p == other.0.p
    }
}

/// How far below `P` a [`DigitSplit::FillP`] digit stays, in bits. ModUp's
/// approximate basis extension leaves a digit's value as `d + u·Q_d` with
/// `|u| < |digit|` (its prime count), so a key switch adds about
/// `|digit|·Q_d/P · σ·√(N/12)` per coefficient and digit, against the
/// `√(N/18)` of a rescale's rounding: `|digit|·Q_d ≤ P·2^-8` keeps it
/// below 1/16 of a rounding. With no headroom (a `levels16` digit of six
/// primes, 240 bits, under a 244-bit P) bootstrapping at 2^14 slots lost
/// 2–4 bits (17.6–19.6 bits against 21.6; `bench bootstrap`, 2026-12-04).
pub const FILL_P_HEADROOM_BITS: f64 = 8.0;

/// The digits of [`DigitSplit`] over the primes `q` (special primes `p`).
fn split_digits(split: DigitSplit, q: &[u64], p: &[u64]) -> Vec<Range<usize>> {
    match split {
        DigitSplit::Even(dnum) => {
            let (base, rem) = (q.len() / dnum, q.len() % dnum);
            let mut digits = Vec::with_capacity(dnum);
            let mut start = 0;
            for j in 0..dnum {
                let len = base + usize::from(j < rem);
                digits.push(start..start + len);
                start += len;
            }
            digits
        }
        DigitSplit::FillP => {
            let cap = p.iter().map(|&x| (x as f64).log2()).sum::<f64>() - FILL_P_HEADROOM_BITS;
            let mut digits = Vec::new();
            let (mut start, mut bits) = (0, 0.0);
            for (i, &qi) in q.iter().enumerate() {
                let b = (qi as f64).log2();
                let count = (i + 1 - start) as f64;
                if i > start && bits + b + count.log2() > cap {
                    digits.push(start..i);
                    (start, bits) = (i, 0.0);
                }
                bits += b;
            }
            digits.push(start..q.len());
            digits
        }
    }
}

impl Parameters {
    pub fn new(literal: ParametersLiteral) -> Result<Self, CkksError> {
        let bad = |s: String| Err(CkksError::InvalidParameters(s));
        let l = &literal;
        if !(10..=17).contains(&l.log_n) {
            return bad(format!("log2 N = {} outside 10..=17", l.log_n));
        }
        if l.log_q.is_empty() {
            return bad("at least one Q prime is needed".into());
        }
        if l.log_q.len() > MAX_Q_PRIMES || l.log_p.len() > MAX_P_PRIMES {
            return bad(format!(
                "{} Q primes and {} special primes; at most {MAX_Q_PRIMES} and {MAX_P_PRIMES}",
                l.log_q.len(),
                l.log_p.len()
            ));
        }
        if l.log_p.is_empty() && l.log_q.len() > 1 {
            return bad("key switching needs at least one special prime".into());
        }
        if !(20..=60).contains(&l.log_scale) {
            return bad(format!("log2 scale = {} outside 20..=60", l.log_scale));
        }
        if let DigitSplit::Even(dnum) = l.digits {
            if dnum == 0 || dnum > l.log_q.len() {
                return bad(format!(
                    "dnum = {dnum} must be in 1..=number of Q primes = {}",
                    l.log_q.len()
                ));
            }
        }
        let n = 1usize << l.log_n;
        if let SecretDistribution::FixedHammingWeight(h) = l.secret {
            if h == 0 || h > n {
                return bad(format!("Hamming weight {h} outside 1..={n}"));
            }
        }
        let q = generate_primes(&l.log_q, n, &[]).map_err(CkksError::InvalidParameters)?;
        let p = generate_primes(&l.log_p, n, &q).map_err(CkksError::InvalidParameters)?;
        let log2 = |v: &[u64]| v.iter().map(|&x| (x as f64).log2()).sum::<f64>();
        let log_qp = log2(&q) + log2(&p);

        let digits = split_digits(l.digits, &q, &p);
        if digits.len() > MAX_DIGITS {
            return bad(format!(
                "{} key-switching digits; at most {MAX_DIGITS}",
                digits.len()
            ));
        }
        let log_p = log2(&p);
        let max_digit = digits
            .iter()
            .map(|d| log2(&q[d.clone()]))
            .fold(0.0, f64::max);
        if !p.is_empty() && log_p < max_digit {
            return bad(format!(
                "special primes give log2 P = {log_p:.1} < {max_digit:.1}, the largest digit; \
                 add special primes or split Q into more digits"
            ));
        }

        if !l.insecure {
            let max = max_log_qp_128_for(l.log_n, l.secret).map_err(CkksError::Insecure)?;
            if log_qp > max {
                let secret = match l.secret {
                    SecretDistribution::Ternary => "a uniform ternary secret".to_string(),
                    SecretDistribution::FixedHammingWeight(h) => {
                        format!("a sparse secret (Hamming weight {h})")
                    }
                };
                return Err(CkksError::Insecure(format!(
                    "log2(QP) = {log_qp:.1} exceeds {max} allowed for 128-bit security with \
                     {secret} at N = 2^{}",
                    l.log_n
                )));
            }
        }

        let ring = RingContext::new(n, &q, &p).map_err(CkksError::InvalidParameters)?;
        let (p_mod_q, p_inv_mod_q) = (0..q.len())
            .map(|i| {
                let m = ring.modulus(i);
                let pm = p.iter().fold(1u64, |acc, &pj| m.mul(acc, m.reduce(pj)));
                (pm, m.inv(pm))
            })
            .unzip();
        Ok(Parameters(Arc::new(Inner {
            literal,
            q,
            p,
            digits,
            log_qp,
            ring,
            p_mod_q,
            p_inv_mod_q,
        })))
    }

    pub fn literal(&self) -> &ParametersLiteral {
        &self.0.literal
    }
    pub fn ring(&self) -> &RingContext {
        &self.0.ring
    }
    pub fn n(&self) -> usize {
        1 << self.0.literal.log_n
    }
    pub fn log_n(&self) -> u32 {
        self.0.literal.log_n
    }
    /// Maximum number of complex slots, `N/2`.
    pub fn max_slots(&self) -> usize {
        self.n() / 2
    }
    pub fn max_level(&self) -> usize {
        self.0.q.len() - 1
    }
    pub fn q(&self) -> &[u64] {
        &self.0.q
    }
    pub fn p(&self) -> &[u64] {
        &self.0.p
    }
    pub fn default_scale(&self) -> f64 {
        (self.0.literal.log_scale as f64).exp2()
    }
    pub fn log_qp(&self) -> f64 {
        self.0.log_qp
    }
    pub fn secret(&self) -> SecretDistribution {
        self.0.literal.secret
    }
    /// `Q`-prime index ranges of the key-switching digits.
    pub fn digits(&self) -> &[Range<usize>] {
        &self.0.digits
    }
    /// Whether these parameters pass the 128-bit check (regardless of the flag).
    pub fn is_secure(&self) -> bool {
        max_log_qp_128_for(self.log_n(), self.secret()).is_ok_and(|m| self.0.log_qp <= m)
    }
    pub(crate) fn p_mod_q(&self) -> &[u64] {
        &self.0.p_mod_q
    }
    pub(crate) fn p_inv_mod_q(&self) -> &[u64] {
        &self.0.p_inv_mod_q
    }
}

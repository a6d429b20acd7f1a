//! Parameter sets for bootstrapping at `N = 2^16`, 128-bit secure.
//!
//! The user's secret is uniform ternary, so the homomorphic-encryption
//! standard's bound `log2(QP) ≤ 1772` applies as is; the sparse ephemeral
//! secret of the encapsulation only ever appears in a key modulo `q_0·p_0`
//! (see [`encapsulation`](super::encapsulation)). The chain, from level 0 up:
//!
//! `q_0` (60 bits) | circuit levels | SlotToCoeff | EvalMod (60-bit primes, the
//! scale EvalMod runs at) | CoeffToSlot.
//!
//! Bootstrapping consumes the top `depth` levels and returns at the level just
//! above the circuit primes' top, so the circuit levels are exactly the
//! levels left after bootstrapping.

use super::BootstrapConfig;
use crate::ckks::keys::KeyStorage;
use crate::ckks::params::{DigitSplit, ParametersLiteral, SecretDistribution};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// 9 levels of 2^40 after bootstrapping: a convolution plus one stage of
    /// the composite sign.
    Levels9,
    /// 16 levels of 36-bit primes after bootstrapping (output at scale 2^40):
    /// a whole α = 14 ReLU (15 levels) between two bootstraps, plus one.
    Levels16,
    /// **Insecure**, for tests and quick trials only: `levels9`'s chain at
    /// `N = 2^11` (1024 slots), where nothing is secret. Refused wherever
    /// the user has not asked for insecure parameters explicitly.
    InsecureN11,
}

impl Preset {
    /// The 128-bit secure presets.
    pub const ALL: [Preset; 2] = [Preset::Levels9, Preset::Levels16];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Levels9 => "levels9",
            Preset::Levels16 => "levels16",
            Preset::InsecureN11 => "insecure-n11",
        }
    }

    /// A secure preset or `insecure-n11`.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Preset::InsecureN11])
            .find(|p| p.name() == s)
    }

    pub fn is_secure(self) -> bool {
        self != Preset::InsecureN11
    }

    pub fn log_n(self) -> u32 {
        match self {
            Preset::Levels9 | Preset::Levels16 => 16,
            Preset::InsecureN11 => 11,
        }
    }

    /// Circuit levels left after bootstrapping.
    pub fn circuit_levels(self) -> usize {
        match self {
            Preset::Levels9 | Preset::InsecureN11 => 9,
            Preset::Levels16 => 16,
        }
    }

    /// `(circuit prime bits, StC prime bits, CtS prime bits, special primes)`.
    /// The special primes are as many 61-bit primes as the 128-bit budget
    /// leaves: more of them means fewer, larger digits, so smaller keys and
    /// faster key switching. Each digit takes as many consecutive Q primes
    /// as fit below P with the noise headroom ([`DigitSplit::FillP`]):
    /// `levels9`'s 26 Q primes make 4 digits, the circuit levels (q_0..q_9)
    /// two (one up to q_8); `levels16`'s 33 make 8, the circuit levels
    /// (q_0..q_16) three (nine and five with equal prime counts). The EvalMod (60-bit) and CoeffToSlot primes cannot shrink:
    /// at N = 2^13, 56- or 54-bit EvalMod primes cost 3.5 or 5.5 bits of
    /// precision, 52- or 48-bit CoeffToSlot primes 0.8 or 4.5 bits (measured).
    fn layout(self) -> (u32, u32, u32, usize) {
        match self {
            Preset::Levels9 => (40, 40, 58, 7),
            Preset::Levels16 => (36, 41, 56, 4),
            Preset::InsecureN11 => (40, 40, 58, 6),
        }
    }

    /// `log2` of the bootstrapping output's scale, when not the circuit
    /// primes' size. `levels16`'s 36-bit primes would leave the output
    /// roundings at 2^36, about 18.5 bits at full slots (measured); at 2^40
    /// they are as small as `levels9`'s. The circuit's first plaintext
    /// product (scale 2^36) and rescale keep 2^40; SlotToCoeff's 41-bit
    /// primes give its plaintexts the bits that the higher scale would take.
    fn output_log_scale(self) -> Option<u32> {
        match self {
            Preset::Levels9 | Preset::InsecureN11 => None,
            Preset::Levels16 => Some(40),
        }
    }

    /// How the Galois keys are held. `levels16` needs 33 Q primes, so only
    /// four special primes fit the 128-bit budget and its top-level keys
    /// have eight digits over 37 limbs: with expanded Galois keys all its
    /// bootstrapping keys would take about twice the seeded ones' memory
    /// (12.9 against 6.8 GiB at full slots with nine digits, measured); the
    /// regeneration did not show above the timing noise (BENCHMARKS.md).
    fn galois_key_storage(self) -> KeyStorage {
        match self {
            Preset::Levels9 | Preset::InsecureN11 => KeyStorage::Expanded,
            Preset::Levels16 => KeyStorage::Seeded,
        }
    }

    /// The parameters and bootstrapping configuration for `2^log_slots` slots.
    pub fn build(self, log_slots: u32) -> (ParametersLiteral, BootstrapConfig) {
        let mut config = BootstrapConfig::new(log_slots);
        config.output_log_scale = self.output_log_scale();
        config.galois_key_storage = self.galois_key_storage();
        let (circuit_bits, stc_bits, cts_bits, specials) = self.layout();
        let mut log_q = vec![60];
        log_q.extend(std::iter::repeat_n(circuit_bits, self.circuit_levels()));
        log_q.extend(std::iter::repeat_n(stc_bits, config.stc_levels));
        log_q.extend(std::iter::repeat_n(60, config.eval_mod_depth()));
        log_q.extend(std::iter::repeat_n(cts_bits, config.cts_levels));
        let literal = ParametersLiteral {
            log_n: self.log_n(),
            log_q,
            log_p: vec![61; specials],
            log_scale: circuit_bits,
            digits: DigitSplit::FillP,
            secret: SecretDistribution::Ternary,
            insecure: !self.is_secure(),
        };
        (literal, config)
    }
}

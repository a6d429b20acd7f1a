//! Pure-Rust RNS-CKKS (leveled), organised by layer:
//!
//! * [`ring`]: modular arithmetic, NTT-friendly prime generation, NTTs, RNS
//!   polynomials, fast basis extension;
//! * [`params`]: parameter sets and the 128-bit security check;
//! * [`sampling`], [`encoding`], [`keys`], [`encryption`]: CSPRNG and
//!   constant-time error and secret distributions, the canonical-embedding
//!   encoder, key generation, encryption and decryption;
//! * [`flooding`]: decryption that is safe to share (noise flooding and
//!   rounding, IND-CPA^D);
//! * [`evaluator`]: homomorphic arithmetic, rescaling, hybrid key switching,
//!   rotations (plain and hoisted), conjugation;
//! * [`circuits`]: BSGS linear transforms and Chebyshev polynomial evaluation;
//! * [`bootstrapping`]: sparse-secret encapsulation, ModRaise, CoeffToSlot /
//!   EvalMod / SlotToCoeff, the `N = 2^16` presets and the bootstrapper's
//!   contract (depth, minimum input level, output level, precision);
//! * [`serialize`]: versioned, checksummed binary files;
//! * [`precision`]: precision statistics in bits;
//! * [`bench`]: the measurements behind `precis bench ckks`;
//! * [`allocator`]: C allocator settings for many large polynomials.
//!
//! Security: [`Parameters::new`] refuses any set whose `log2(QP)` exceeds the
//! homomorphic-encryption standard's 128-bit bound for its ring degree (or a
//! sparse secret below 192 nonzero coefficients) unless the literal sets
//! `insecure`. Secrets and errors come from ChaCha20 seeded by the operating
//! system; uniform polynomials are expanded from 256-bit seeds with AES-256 in
//! counter mode, which is how keys and fresh secret-key ciphertexts are
//! stored at half size, and how seeded switching keys
//! ([`keys::KeyStorage::Seeded`]) are held in memory at half size. Bootstrapping keeps
//! the user's secret dense (uniform ternary); its sparse ephemeral secret only
//! appears in a key modulo `q_0·p_0` (see [`bootstrapping::encapsulation`]).

pub mod allocator;
pub mod bench;
pub mod bench_ops;
pub mod bootstrapping;
pub mod circuits;
pub mod encoding;
pub mod encryption;
pub mod evaluator;
pub mod flooding;
pub mod keys;
pub mod params;
pub mod precision;
pub mod ring;
pub mod sampling;
pub mod serialize;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_polynomial;

pub use encoding::{Encoder, Plaintext};
pub use encryption::{Ciphertext, Decryptor, Encryptor};
pub use evaluator::Evaluator;
pub use flooding::{DecryptionMode, Flooding};
pub use keys::{EvaluationKeys, KeyGenerator, KeyStorage, PublicKey, SecretKey, SwitchingKey};
pub use num_complex::Complex64;
pub use params::{DigitSplit, Parameters, ParametersLiteral, SecretDistribution};

#[derive(Debug, thiserror::Error)]
pub enum CkksError {
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    #[error("insecure parameters: {0} (set the explicit `insecure` option to use them anyway)")]
    Insecure(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("operand mismatch: {0}")]
    Mismatch(String),
    #[error("missing key: {0}")]
    MissingKey(String),
    #[error("randomness unavailable: {0}")]
    Randomness(String),
    #[error("bad file: {0}")]
    Format(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

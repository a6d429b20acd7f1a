//! Ring layer: modular arithmetic, prime generation, NTTs, RNS polynomials and
//! basis extension over `Z_Q[X]/(X^N + 1)` with `Q` a product of word-sized primes.

pub mod basis;
pub mod context;
pub mod modulus;
pub mod ntt;
pub mod poly;
pub mod primes;
pub mod simd;

pub use basis::BasisExtender;
pub use context::RingContext;
pub use modulus::Modulus;
pub use poly::Poly;

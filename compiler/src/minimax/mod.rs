//! Minimax engine: optimal composite polynomials for sign, ReLU, max and
//! max-pooling (Lee et al., IEEE Access 2023; Lee, Lee, No, Kim, IEEE TDSC).
//!
//! * [`dd`]: double-double arithmetic (deterministic, no FMA, no libm);
//! * [`cheb`]: odd Chebyshev polynomials (Clenshaw in `T_2`);
//! * [`remez`]: odd minimax approximation of `sgn` on `[a, b]`;
//! * [`search`]: optimal degree sequences (dynamic programme);
//! * [`certify`]: certified ranges and errors;
//! * [`approx`]: composite sign, ReLU `r_α`;
//! * [`pool`]: approximate max and `K×K` max-pooling;
//! * [`plan`]: depth-optimal evaluation plans for each component;
//! * [`cache`]: on-disk cache of the results.

pub mod approx;
pub mod cache;
pub mod certify;
pub mod cheb;
pub mod dd;
pub mod plan;
pub mod pool;
pub mod remez;
pub mod search;

pub use approx::{relu, sign, Mode, OddPoly, ReluApprox, SignApprox};
pub use cache::{Approximation, Cache, CacheStatus, Request};
pub use pool::{max_pool, MaxApprox, MaxPoolApprox};
pub use search::Objective;

#[cfg(test)]
mod tests;

//! Minimax engine: optimal composite polynomials for sign, ReLU, max and
//! max-pooling (Lee et al., IEEE Access 2023; Lee, Lee, No, Kim, IEEE TDSC).
//!
//! Entry points:
//! * [`relu`]`(α, objective, max_degree)` → [`ReluApprox`]: `r_α(x) =
//!   x(1 + p(x))/2` with certified `max |r_α − ReLU| ≤ 2^−α` on `[−1, 1]`;
//! * [`sign`]`(α, …)` → [`SignApprox`]: comparison mode,
//!   `|p − sgn| ≤ 2^{1−α}` for `2^−α ≤ |x| ≤ 1`;
//! * [`max_pool`]`(relu, K, B)` → [`MaxPoolApprox`] (and [`MaxApprox`]):
//!   input map, pairwise-max tree, inverse map, error bound;
//! * [`Cache`]`::get(&`[`Request`]`)` → [`Approximation`]: the same, served
//!   from the on-disk cache.
//!
//! Every component is an [`OddPoly`]: Chebyshev coefficients of
//! `T_1, T_3, …` (input in `[−1, 1]`), the interval it is minimax on, its
//! certified image, its Remez convergence report and its [`ir::poly::Plan`]
//! (depth-optimal baby-step giant-step program). All of it is
//! `serde`-serialisable.
//!
//! Modules:
//! * [`dd`]: double-double arithmetic (deterministic, no FMA, no libm);
//! * [`cheb`]: odd Chebyshev polynomials (Clenshaw in `T_2`);
//! * [`remez`]: odd minimax approximation of `sgn` on `[a, b]`;
//! * [`search`]: optimal degree sequences (dynamic programme);
//! * [`certify`]: certified ranges and errors;
//! * [`approx`]: composite sign, ReLU `r_α`;
//! * [`pool`]: approximate max and `K×K` max-pooling;
//! * [`cache`]: on-disk cache of the results.

pub mod approx;
pub mod cache;
pub mod certify;
pub mod cheb;
pub mod dd;
pub mod pool;
pub mod remez;
pub mod search;

pub use approx::{relu, sign, Mode, OddPoly, ReluApprox, SignApprox};
pub use cache::{Approximation, Cache, CacheStatus, Request};
pub use pool::{max_pool, MaxApprox, MaxPoolApprox};
pub use search::Objective;

#[cfg(test)]
mod tests;

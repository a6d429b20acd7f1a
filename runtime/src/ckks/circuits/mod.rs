//! Higher-level circuits built on the evaluator: linear transforms from
//! diagonals (baby-step giant-step) and Chebyshev polynomial evaluation.

pub mod linear_transform;
pub mod polynomial;

pub use linear_transform::{Hoisting, LinearTransform};
pub use polynomial::ChebyshevPoly;

//! Minimax engine: optimal composite polynomials for sign, ReLU, max and
//! max-pooling (Lee et al., IEEE Access 2023; Lee, Lee, No, Kim, IEEE TDSC).

pub mod cheb;
pub mod dd;
pub mod plan;
pub mod remez;

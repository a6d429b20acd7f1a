//! The precis runtime: the reference executor and the backends that run circuits.
pub mod ckks;

//! The precis runtime: the reference executor and the backends that run circuits.

pub mod data;
pub mod reference;

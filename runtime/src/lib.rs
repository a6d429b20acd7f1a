//! The precis runtime: the reference executor and the backends that run circuits.
//!
//! - [`reference`](mod@reference): the exact cleartext executor of the tensor IR (the oracle).
//! - [`data`]: `.npy`/`.npz`/IDX files, Fashion-MNIST and model preprocessing.
//! - [`ckks`]: the pure-Rust RNS-CKKS backend (keys, encryption, evaluation).
//! - [`backend`]: the [`backend::Backend`] trait and the executor of circuit files.
//! - [`simulate`]: the simulation backend (cleartext slots, every CKKS rule enforced).

pub mod backend;
pub mod ckks;
pub mod data;
pub mod encrypted;
pub mod reference;
pub mod resources;
pub mod simulate;

//! The precis runtime: the reference executor and the backends that run circuits.
//!
//! - [`reference`](mod@reference): the exact cleartext executor of the tensor IR (the oracle).
//! - [`data`]: `.npy`/`.npz`/IDX files, Fashion-MNIST and model preprocessing.

pub mod data;
pub mod reference;

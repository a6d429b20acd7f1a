//! Rewrite passes over the tensor IR. Each is a function of the graph (and
//! its explicit inputs) that leaves a valid graph behind.

pub mod approximate;
pub mod calibrate;
pub mod fold_affine;
pub mod normalize;
pub mod simplify;

#[cfg(test)]
pub(crate) mod testing;

pub use approximate::{approximate, AlphaPlan, ApproximateError, SignApproximations};
pub use calibrate::{
    collect_ranges, evaluate_with_ranges, CalibrateError, Calibration, LayerRange,
};
pub use fold_affine::fold_affine;
pub use normalize::{normalize_ranges, NormalizeReport};
pub use simplify::{simplify, SimplifyReport};

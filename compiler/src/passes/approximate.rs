//! Replaces every `Relu` by an `ApproxRelu` and every `MaxPool` by an
//! `ApproxMaxPool`, each with its calibrated bound `B` and the composite sign
//! polynomial of its layer's precision α. Node names and shapes are kept.

use std::collections::BTreeMap;

use ir::{ApproxMaxPool, ApproxRelu, CompositeSign, Graph, Op};

use super::calibrate::Calibration;

/// Where the polynomials come from (the minimax engine in production).
pub trait SignApproximations {
    /// The composite sign approximation for ReLU at precision α.
    fn relu_sign(&self, alpha: u32) -> Result<CompositeSign, String>;
    /// The map `x ↦ x·s + 1/2` scale `s` for a `kh×kw` max-pooling window of
    /// values in `[−bound, bound]` at precision α.
    fn maxpool_input_scale(
        &self,
        kernel: [usize; 2],
        alpha: u32,
        bound: f64,
    ) -> Result<f64, String>;
}

/// The precision α of each approximated layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlphaPlan {
    pub default: u32,
    /// Overrides by node name.
    pub per_layer: BTreeMap<String, u32>,
}

impl AlphaPlan {
    pub fn uniform(alpha: u32) -> Self {
        Self {
            default: alpha,
            per_layer: BTreeMap::new(),
        }
    }

    pub fn alpha_for(&self, node: &str) -> u32 {
        self.per_layer.get(node).copied().unwrap_or(self.default)
    }
}

/// Error of the replacement pass, naming the node.
#[derive(Debug, thiserror::Error)]
pub enum ApproximateError {
    #[error("node %{0}: no calibrated bound (calibrate the model on data first)")]
    Uncalibrated(String),
    #[error("node %{node}: {msg}")]
    Approximation { node: String, msg: String },
    #[error("per-layer α names %{0}, which is not a ReLU or MaxPool of this model")]
    UnknownLayer(String),
}

/// Replaces ReLU and MaxPool nodes; returns how many were replaced.
pub fn approximate(
    graph: &mut Graph,
    calibration: &Calibration,
    alphas: &AlphaPlan,
    source: &dyn SignApproximations,
) -> Result<usize, ApproximateError> {
    for name in alphas.per_layer.keys() {
        let ok = graph
            .find(name)
            .is_some_and(|id| matches!(graph.node(id).op, Op::Relu | Op::MaxPool(_)));
        if !ok {
            return Err(ApproximateError::UnknownLayer(name.clone()));
        }
    }
    let mut signs: BTreeMap<u32, CompositeSign> = BTreeMap::new();
    let mut replaced = 0;
    for id in graph.topo_order() {
        let node = graph.node(id);
        if !matches!(node.op, Op::Relu | Op::MaxPool(_)) {
            continue;
        }
        let name = node.name.clone();
        let fail = |msg: String| ApproximateError::Approximation {
            node: name.clone(),
            msg,
        };
        let bound = calibration
            .layers
            .get(&name)
            .map(|l| l.bound)
            .ok_or_else(|| ApproximateError::Uncalibrated(name.clone()))?;
        let alpha = alphas.alpha_for(&name);
        let sign = match signs.entry(alpha) {
            std::collections::btree_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(source.relu_sign(alpha).map_err(fail)?).clone()
            }
        };
        let new = match &node.op {
            Op::Relu => Op::ApproxRelu(ApproxRelu { bound, sign }),
            Op::MaxPool(pool) => {
                let input_scale = source
                    .maxpool_input_scale(pool.kernel, alpha, bound)
                    .map_err(fail)?;
                Op::ApproxMaxPool(ApproxMaxPool {
                    pool: *pool,
                    bound,
                    input_scale,
                    sign,
                })
            }
            _ => unreachable!(),
        };
        *graph.op_mut(id) = new;
        replaced += 1;
    }
    Ok(replaced)
}

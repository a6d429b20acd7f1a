//! The precis graph IR.
//!
//! A [`Graph`] is a petgraph `StableGraph` of single-output [`Node`]s; every
//! node stores its output shape, checked against [`Op::infer_shape`] when it
//! is added and again by [`Graph::validate`]. The IR is serde-serializable and
//! has a deterministic text form ([`Graph::to_text`]) for snapshot tests.

mod approx;
pub mod circuit;
pub mod file;
mod graph;
mod op;
pub mod poly;
mod tensor;

pub use approx::{
    ceil_log2, pool_rounds, tree_reduce, ApproxMaxPool, ApproxRelu, CompositePlan, CompositeSign,
};
pub use graph::{Graph, Node, NodeId, Operand};
pub use op::{broadcast, window_out, BatchNorm, Conv2d, Linear, Op, Pads2d, Pool2d};
pub use poly::OddChebyshev;
pub use tensor::{numel, Shape, ShapeFmt, Tensor};

/// Errors from building or checking a graph.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("node %{node} ({op}): {msg}")]
    Shape {
        node: String,
        op: &'static str,
        msg: String,
    },
    #[error("tensor of shape {} needs {} values, got {len}", ShapeFmt(.shape), numel(.shape))]
    TensorSize { shape: Shape, len: usize },
    #[error("{0}")]
    Invalid(String),
}

//! The ONNX frontend: an ONNX model → an [`ir::Graph`], through tract-onnx.
//!
//! Every use of tract in precis lives in this module tree (tract's internals
//! change between versions; `tract-onnx` is pinned to one exact version).
//!
//! # How a model is read
//!
//! The issue asked to walk tract's *typed* model. In tract-onnx 0.23.9 the
//! typed form has already lowered the layers precis must recognise:
//! `BatchNormalization` becomes a `Mul` and an `Add` by precomputed slope and
//! intercept, `Relu` becomes `max(x, 0)`, `Gemm` an einsum plus scaled adds,
//! `Flatten` a reshape; and tract shares identical constants between tensors,
//! so tensor names no longer identify outlets. Re-recognising those patterns
//! would be fragile and would fold BN before the visible folding pass.
//!
//! So the frontend splits the work:
//!
//! * the *structure* — op types, attributes, operand order, tensor names —
//!   comes from the ONNX protobuf nodes (`tract_onnx::pb`), checked
//!   against an explicit list of supported ops and attributes before anything
//!   else runs, so an unsupported op or attribute is one clear error that
//!   names the node;
//! * the *facts* — every tensor's shape with the input pinned to batch 1,
//!   and the value of every tensor that is constant (initializers, `Constant`
//!   nodes, the `Shape → Gather → Concat` chains `torch.onnx.export` writes
//!   for `x.view(x.size(0), -1)` or for `F.pad`) — come from tract's
//!   analysis of the same model (its inference model after `analyse`, looked
//!   up by ONNX tensor name).
//!
//! Each IR node's shape, computed by [`ir::Op::infer_shape`], is compared
//! with tract's shape of the same ONNX tensor, so the two readings check each
//! other. Nothing is folded: BN stays `BatchNorm`, `MatMul` + `Add` stays a
//! bias-less `Linear` followed by `Add`. `Dropout` (inference) and `Identity`
//! become aliases of their input; a `Softmax`/`LogSoftmax` whose output is only
//! a graph output is dropped (argmax is the client's).
//!
//! # Ops expressed with other IR ops
//!
//! What the default (torch.export-based) exporter and users' networks add
//! is read into the existing IR ops, so calibration, approximation, overflow
//! reports and lowering treat it like any ReLU network. Every node created
//! is named after the ONNX node (`<name>` for the node producing its output,
//! `<name>.<part>` for the others), so per-layer reports name them:
//!
//! * `Clip(lo, hi)` (ReLU6, hardtanh, clamp) →
//!   `Relu(x − lo) − Relu(x − hi) + lo`: ReLUs `<name>.lo` and `<name>.hi`,
//!   the shifts `Add`s of scalar constants, the difference an `Add` of the
//!   `Mul` by −1. One bound: one
//!   ReLU (`Relu(x − lo) + lo`, `x − Relu(x − hi)`); `Clip(0, ∞)` is the
//!   ReLU `<name>`. `Max`/`Min` of an activation and a scalar constant are
//!   the one-sided clips.
//! * `LeakyRelu(a)`, `PRelu(a)` (slope a scalar or per channel) →
//!   `a·x + (1−a)·Relu(x)` (= x·((1+a) + (1−a)·sgn x)/2), the ReLU
//!   `<name>.relu`, the products `Mul`s by constants.
//! * `ReduceMean` over H and W → `GlobalAveragePool` (`keepdims=0`: then a
//!   `Reshape` to `[N, C]`); any other reduction is refused.
//! * `Sub`/`Div` by a constant → `Add`/`Mul` by its negation/reciprocal;
//!   `Sub` of an activation and `Neg` → `Mul` by −1 then `Add`.
//! * `Squeeze`/`Unsqueeze`/`Transpose` that only move size-1 axes, the batch
//!   staying first → `Reshape` (or nothing when the shape is unchanged); a
//!   transpose that moves data is refused (with the export workaround when it
//!   is the start of the Transpose → GatherND pattern the exporter writes for
//!   an adaptive average pooling whose output does not divide its input).
//!
//! Weights stored in an external file (`<model>.onnx.data`, the default
//! exporter's layout) are read from beside the model file.
//!
//! [`builder`] writes ONNX models the way `torch.onnx.export` does (test
//! support and example generation), [`zoo`] uses it for the network families
//! precis targets, and [`oracle`] runs a model with tract itself.

pub mod builder;
mod convert;
pub mod oracle;
pub mod zoo;

use std::path::{Path, PathBuf};

/// Everything that can go wrong reading a model. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("cannot read {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// The bytes are not an ONNX protobuf (corrupt or truncated file).
    #[error("not a valid ONNX model (protobuf decoding failed: {0})")]
    Decode(String),
    /// The model is well-formed protobuf but not a usable ONNX graph.
    #[error("invalid ONNX model: {0}")]
    Model(String),
    /// The input shape asked for does not fit the model's graph input.
    #[error("input shape {} conflicts with graph input '{input}' of shape {model}", ir::ShapeFmt(.given))]
    InputShape {
        input: String,
        given: Vec<usize>,
        /// The model's dims, `?` where open.
        model: String,
    },
    /// A node precis cannot translate: unsupported op, attribute or operand.
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    /// tract could not analyse the model.
    #[error("tract could not analyse the model: {0}")]
    Tract(String),
    #[error(transparent)]
    Ir(#[from] ir::IrError),
}

/// Reads an ONNX file into the IR. The graph is named after the file stem.
///
/// `input_shape` pins the shape of the single graph input (batch axis
/// included, and it must be 1); without it every dimension but the batch must
/// be known in the model. The IR always carries batch 1.
pub fn load(path: &Path, input_shape: Option<Vec<usize>>) -> Result<ir::Graph, FrontendError> {
    let bytes = std::fs::read(path).map_err(|err| FrontendError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty());
    convert::convert(&bytes, name, path.parent(), input_shape)
}

/// [`load`] from bytes in memory; the graph takes the ONNX graph's name.
/// Initializers stored in external files cannot be resolved.
pub fn load_bytes(
    bytes: &[u8],
    input_shape: Option<Vec<usize>>,
) -> Result<ir::Graph, FrontendError> {
    convert::convert(bytes, None, None, input_shape)
}

/// Flattens a tract (anyhow) error chain into one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

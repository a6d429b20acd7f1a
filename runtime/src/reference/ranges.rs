//! Input ranges of the non-polynomial ops and their approximations: the
//! data for range calibration (the bound B of each ReLU and max-pool) and for
//! detecting inputs outside an approximation's `[−B, B]`, where its
//! polynomial diverges.

use super::{run_traced, ExecError};
use ir::{Graph, NodeId, Op, Tensor};
use std::collections::HashMap;

/// What reached one Relu, MaxPool, ApproxRelu or ApproxMaxPool node.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRange {
    pub node: NodeId,
    /// The node's name (for reports).
    pub name: String,
    /// Largest |x| over every value of the node's operand (NaN if one was NaN).
    pub max_abs: f64,
    /// Values of the operand seen.
    pub count: usize,
    /// The approximation's bound B (`None` for exact Relu/MaxPool).
    pub bound: Option<f64>,
    /// Operand values with |x| > B (or NaN): each makes the polynomial
    /// leave its domain.
    pub overflows: usize,
}

impl InputRange {
    /// Folds in the range of another batch of the same node.
    pub fn merge(&mut self, other: &InputRange) {
        debug_assert_eq!(self.node, other.node);
        self.max_abs = if self.max_abs.is_nan() || other.max_abs.is_nan() {
            f64::NAN
        } else {
            self.max_abs.max(other.max_abs)
        };
        self.count += other.count;
        self.overflows += other.overflows;
    }
}

/// Runs the graph like [`super::run`] and also returns, for every Relu,
/// MaxPool, ApproxRelu and ApproxMaxPool node (in topological order), the
/// range of its input.
pub fn run_with_ranges(
    graph: &Graph,
    inputs: &[Tensor],
) -> Result<(Vec<Tensor>, Vec<InputRange>), ExecError> {
    // Operand → the watched nodes that read it.
    let mut readers: HashMap<NodeId, Vec<usize>> = HashMap::new();
    let mut ranges = Vec::new();
    for n in graph.topo_order() {
        let node = graph.node(n);
        let bound = match &node.op {
            Op::Relu | Op::MaxPool(_) => None,
            Op::ApproxRelu(a) => Some(a.bound),
            Op::ApproxMaxPool(a) => Some(a.bound),
            _ => continue,
        };
        for o in graph.operands(n) {
            readers.entry(o).or_default().push(ranges.len());
        }
        ranges.push(InputRange {
            node: n,
            name: node.name.clone(),
            max_abs: 0.0,
            count: 0,
            bound,
            overflows: 0,
        });
    }
    let outputs = run_traced(graph, inputs, &mut |n, t| {
        let Some(watchers) = readers.get(&n) else {
            return;
        };
        let mut max_abs = 0f64;
        for &v in &t.data {
            let a = (v as f64).abs();
            if a.is_nan() {
                max_abs = f64::NAN;
                break;
            }
            max_abs = max_abs.max(a);
        }
        for &w in watchers {
            let r = &mut ranges[w];
            if let Some(b) = r.bound {
                r.overflows += t
                    .data
                    .iter()
                    .filter(|&&v| v.is_nan() || (v as f64).abs() > b)
                    .count();
            }
            r.count += t.data.len();
            r.max_abs = if r.max_abs.is_nan() || max_abs.is_nan() {
                f64::NAN
            } else {
                r.max_abs.max(max_abs)
            };
        }
    })?;
    Ok((outputs, ranges))
}

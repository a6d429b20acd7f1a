//! The reference executor: runs an [`ir::Graph`] exactly, in the clear.
//!
//! It is the oracle every later stage (polynomial approximation, packing,
//! CKKS) is checked against, so it favours accuracy over speed where the two
//! conflict: values are stored as f32 (the IR's type) but every reduction
//! (convolution, linear layer, pooling sums, batch-norm affine map) is
//! accumulated in f64 and rounded once to f32. Convolutions and linear layers
//! go through an f64 GEMM (`matrixmultiply::dgemm`, AVX-512/AVX2+FMA
//! kernels), so the only error of a convolution output is the final rounding
//! to f32 (plus ~1e-16 relative from the f64 sums); an f32 GEMM would be
//! 2–3× faster (BENCHMARKS.md) but its error grows with the reduction
//! length, which is not acceptable for an oracle.
//!
//! The polynomial ops (`ApproxRelu`, `ApproxMaxPool`) are evaluated in f64
//! with the IR's own definitions (`ir::ApproxRelu::eval`,
//! `ir::ApproxMaxPool::reduce_window`), inputs outside their bound included;
//! [`run_traced`] exposes every node's value, from which
//! `compiler::passes::calibrate` collects ranges and overflows.
//!
//! # Batching
//!
//! The IR carries batch 1. [`run`] accepts any batch `B` on axis 0 of every
//! input and computes, exactly, what running each sample alone and
//! concatenating the results along axis 0 would give: a value whose IR shape
//! is `[d0, d1, ...]` is held as `[B·d0, d1, ...]`. Values that depend on no
//! graph input (constants and ops over them) are held unbatched and are
//! broadcast over the batch where they meet batched values; graph outputs are
//! always returned with the batch.
//!
//! Work is spread over rayon's pool (convolutions over samples, blocks of
//! output positions and, for small batches, blocks of output channels;
//! other ops over planes or chunks). Every intermediate value is freed as
//! soon as its last reader has run, and a value read for the last time by a
//! unary elementwise op (ReLU, batch norm, reshapes) is updated in place.

mod kernels;
pub mod synthetic;

use ir::{Graph, NodeId, Op, Shape, ShapeFmt, Tensor};

/// Why a graph could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("graph `{graph}` is invalid: {source}")]
    InvalidGraph {
        graph: String,
        #[source]
        source: ir::IrError,
    },
    #[error("graph `{graph}` has {expected} input(s) but {got} tensor(s) were given")]
    InputCount {
        graph: String,
        expected: usize,
        got: usize,
    },
    #[error(
        "input %{input}: got a tensor of shape {}, the graph input is {} \
         (axis 0 may hold any multiple of its size, the other axes must match)",
        ShapeFmt(.got), ShapeFmt(.expected)
    )]
    InputShape {
        input: String,
        expected: Shape,
        got: Shape,
    },
    #[error("input %{input}: tensor of shape {} holds {len} values", ShapeFmt(.shape))]
    InputData {
        input: String,
        shape: Shape,
        len: usize,
    },
    #[error("input %{input} has batch {got} but input %{first} has batch {expected}")]
    BatchMismatch {
        input: String,
        got: usize,
        first: String,
        expected: usize,
    },
    #[error("node %{node} ({op}): {msg}")]
    Node {
        node: String,
        op: &'static str,
        msg: String,
    },
}

/// Runs `graph` on `inputs` (one tensor per graph input, in order, any batch
/// on axis 0) and returns one tensor per graph output, batch on axis 0.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
    run_traced(graph, inputs, &mut |_, _| {})
}

/// Like [`run`], and calls `observe` with every node's output value in
/// topological order (the order of [`Graph::topo_order`]).
///
/// Batched values are observed with the batch on axis 0 (IR shape with the
/// leading axis scaled by the batch). Nodes that depend on no graph input
/// (constants and ops over constants only) are observed once, with their
/// batch-1 value, i.e. exactly their IR shape.
pub fn run_traced(
    graph: &Graph,
    inputs: &[Tensor],
    observe: &mut dyn FnMut(NodeId, &Tensor),
) -> Result<Vec<Tensor>, ExecError> {
    graph.validate().map_err(|source| ExecError::InvalidGraph {
        graph: graph.name.clone(),
        source,
    })?;
    let batch = check_inputs(graph, inputs)?;

    let order = graph.topo_order();
    let slots = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
    let mut values: Vec<Option<Value>> = (0..slots).map(|_| None).collect();
    // Remaining reads of each value; graph outputs hold one extra read that
    // is never released, so they survive to the end.
    let mut pending = vec![0usize; slots];
    let mut operands: Vec<Vec<NodeId>> = vec![Vec::new(); slots];
    for &n in &order {
        let ops = graph.operands(n);
        for o in &ops {
            pending[o.index()] += 1;
        }
        operands[n.index()] = ops;
    }
    for o in graph.outputs() {
        pending[o.index()] += 1;
    }
    let input_pos = |n: NodeId| graph.inputs().iter().position(|&i| i == n);

    for &n in &order {
        let node = graph.node(n);
        let ops = std::mem::take(&mut operands[n.index()]);
        let value = if let Op::Input = node.op {
            let i = input_pos(n).ok_or_else(|| ExecError::Node {
                node: node.name.clone(),
                op: "Input",
                msg: "not listed among the graph inputs".into(),
            })?;
            Value {
                t: inputs[i].clone(),
                batched: true,
            }
        } else {
            // An operand read for the last time is handed over by value so
            // unary ops can work in place; the others are borrowed.
            let taken: Vec<Option<Value>> = ops
                .iter()
                .enumerate()
                .map(|(k, o)| {
                    let last = pending[o.index()] == 1 && !ops[k + 1..].contains(o);
                    last.then(|| values[o.index()].take().expect("operand computed"))
                })
                .collect();
            let operand_values: Vec<Operand> = taken
                .into_iter()
                .zip(&ops)
                .map(|(own, o)| match own {
                    Some(v) => Operand::Owned(v),
                    None => Operand::Shared(values[o.index()].as_ref().expect("operand live")),
                })
                .collect();
            let shapes: Vec<&[usize]> = ops.iter().map(|o| &graph.node(*o).shape[..]).collect();
            eval(node, operand_values, &shapes, batch).map_err(|msg| ExecError::Node {
                node: node.name.clone(),
                op: node.op.kind(),
                msg,
            })?
        };
        for o in &ops {
            let p = &mut pending[o.index()];
            *p -= 1;
            if *p == 0 {
                values[o.index()] = None;
            }
        }
        let b = if value.batched { batch } else { 1 };
        let want = batched_shape(&node.shape, b).map_err(|msg| ExecError::Node {
            node: node.name.clone(),
            op: node.op.kind(),
            msg,
        })?;
        if value.t.shape != want || value.t.data.len() != ir::numel(&want) {
            return Err(ExecError::Node {
                node: node.name.clone(),
                op: node.op.kind(),
                msg: format!(
                    "internal error: computed {} ({} values), expected {}",
                    ShapeFmt(&value.t.shape),
                    value.t.data.len(),
                    ShapeFmt(&want)
                ),
            });
        }
        observe(n, &value.t);
        if pending[n.index()] > 0 {
            values[n.index()] = Some(value);
        }
    }

    graph
        .outputs()
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            let v = values[o.index()].as_ref().expect("outputs are kept");
            if v.batched || batch == 1 {
                // Moved out at its last mention among the outputs.
                if graph.outputs()[k + 1..].contains(&o) {
                    Ok(v.t.clone())
                } else {
                    Ok(values[o.index()].take().expect("outputs are kept").t)
                }
            } else {
                let node = graph.node(o);
                let shape = batched_shape(&node.shape, batch).map_err(|msg| ExecError::Node {
                    node: node.name.clone(),
                    op: node.op.kind(),
                    msg,
                })?;
                Ok(Tensor {
                    shape,
                    data: v.t.data.repeat(batch),
                })
            }
        })
        .collect()
}

/// A computed value: the tensor (IR shape, leading axis scaled by the batch
/// when `batched`).
struct Value {
    t: Tensor,
    batched: bool,
}

enum Operand<'a> {
    Owned(Value),
    Shared(&'a Value),
}

impl Operand<'_> {
    fn get(&self) -> &Value {
        match self {
            Operand::Owned(v) => v,
            Operand::Shared(v) => v,
        }
    }

    fn into_owned(self) -> Value {
        match self {
            Operand::Owned(v) => v,
            Operand::Shared(v) => Value {
                t: v.t.clone(),
                batched: v.batched,
            },
        }
    }
}

/// The IR shape `s` of one sample held for `b` samples.
fn batched_shape(s: &[usize], b: usize) -> Result<Shape, String> {
    let mut out = s.to_vec();
    match out.first_mut() {
        Some(d) => *d *= b,
        None if b == 1 => {}
        None => return Err(format!("a rank-0 value cannot carry a batch of {b}")),
    }
    Ok(out)
}

/// Checks the inputs against the graph and returns the common batch size.
fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<usize, ExecError> {
    if inputs.len() != graph.inputs().len() {
        return Err(ExecError::InputCount {
            graph: graph.name.clone(),
            expected: graph.inputs().len(),
            got: inputs.len(),
        });
    }
    let mut batch: Option<(usize, String)> = None;
    for (&id, t) in graph.inputs().iter().zip(inputs) {
        let node = graph.node(id);
        let name = node.name.clone();
        if t.data.len() != ir::numel(&t.shape) {
            return Err(ExecError::InputData {
                input: name,
                shape: t.shape.clone(),
                len: t.data.len(),
            });
        }
        let s = &node.shape;
        let bad = || ExecError::InputShape {
            input: name.clone(),
            expected: s.clone(),
            got: t.shape.clone(),
        };
        let b = match (s.first(), t.shape.first()) {
            (None, None) => Some(1),
            (Some(&0), Some(&0)) if s[1..] == t.shape[1..] => None,
            (Some(&d), Some(&a)) if d > 0 && a % d == 0 && s.len() == t.shape.len() => {
                if s[1..] != t.shape[1..] {
                    return Err(bad());
                }
                Some(a / d)
            }
            _ => return Err(bad()),
        };
        if let Some(b) = b {
            match &batch {
                None => batch = Some((b, name)),
                Some((first_b, first)) if *first_b != b => {
                    return Err(ExecError::BatchMismatch {
                        input: name,
                        got: b,
                        first: first.clone(),
                        expected: *first_b,
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(batch.map_or(1, |(b, _)| b))
}

/// Evaluates one node. `shapes` are the operands' IR shapes.
fn eval(
    node: &ir::Node,
    mut args: Vec<Operand>,
    shapes: &[&[usize]],
    batch: usize,
) -> Result<Value, String> {
    let batched = args.iter().any(|a| a.get().batched);
    let b = if batched { batch } else { 1 };
    let t = match &node.op {
        Op::Input => return Err("inputs are not evaluated".into()),
        Op::Constant(t) => t.clone(),
        Op::Conv2d(c) => kernels::conv2d(&args[0].get().t, c)?,
        Op::BatchNorm(bn) => {
            let mut v = args.pop().expect("one operand").into_owned();
            kernels::batch_norm(&mut v.t, bn)?;
            v.t
        }
        Op::Relu => {
            let mut v = args.pop().expect("one operand").into_owned();
            kernels::relu(&mut v.t.data);
            v.t
        }
        Op::ApproxRelu(a) => {
            let mut v = args.pop().expect("one operand").into_owned();
            kernels::approx_relu(&mut v.t.data, a);
            v.t
        }
        Op::MaxPool(p) => kernels::max_pool(&args[0].get().t, p)?,
        Op::ApproxMaxPool(a) => kernels::approx_max_pool(&args[0].get().t, a)?,
        Op::AveragePool {
            pool,
            count_include_pad,
        } => kernels::avg_pool(&args[0].get().t, pool, *count_include_pad)?,
        Op::GlobalAveragePool => kernels::global_avg_pool(&args[0].get().t)?,
        Op::Linear(l) => kernels::linear(&args[0].get().t, l)?,
        Op::Add | Op::Mul => {
            let add = matches!(node.op, Op::Add);
            let rank = node.shape.len();
            let ext: Vec<Shape> = args
                .iter()
                .zip(shapes)
                .map(|(a, s)| extend(s, rank, if a.get().batched { batch } else { 1 }))
                .collect();
            let out_ext = extend(&node.shape, rank, b);
            // An operand read for the last time that already has the output's
            // shape (a residual sum) receives the result in place.
            let reuse = (0..2).find(|&i| matches!(args[i], Operand::Owned(_)) && ext[i] == out_ext);
            let data = if let Some(i) = reuse {
                let other = args.pop().expect("two operands");
                let dst = args.pop().expect("two operands");
                let (mut dst, other) = if i == 0 { (dst, other) } else { (other, dst) };
                let Operand::Owned(v) = &mut dst else {
                    unreachable!("operand {i} is owned")
                };
                let mut data = std::mem::take(&mut v.t.data);
                let o = (&ext[1 - i][..], &other.get().t.data[..]);
                if add {
                    kernels::binary_in_place(&mut data, &out_ext, o, |x, y| x + y)?;
                } else {
                    kernels::binary_in_place(&mut data, &out_ext, o, |x, y| x * y)?;
                }
                data
            } else {
                let (x, y) = (
                    (&ext[0][..], &args[0].get().t.data[..]),
                    (&ext[1][..], &args[1].get().t.data[..]),
                );
                if add {
                    kernels::broadcast_binary(x, y, |x, y| x + y)?.1
                } else {
                    kernels::broadcast_binary(x, y, |x, y| x * y)?.1
                }
            };
            Tensor {
                shape: batched_shape(&node.shape, b)?,
                data,
            }
        }
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => {
            let v = args.pop().expect("one operand").into_owned();
            Tensor {
                shape: batched_shape(&node.shape, b)?,
                data: v.t.data,
            }
        }
        Op::Concat { axis } => {
            let parts: Vec<(Shape, &[f32])> = args
                .iter()
                .zip(shapes)
                .map(|(a, s)| {
                    let v = a.get();
                    let mut e = vec![if v.batched { batch } else { 1 }];
                    e.extend_from_slice(s);
                    (e, &v.t.data[..])
                })
                .collect();
            let data = kernels::concat(&parts, axis + 1, b)?;
            Tensor {
                shape: batched_shape(&node.shape, b)?,
                data,
            }
        }
        Op::Pad { pads, value } => kernels::pad(&args[0].get().t, pads, *value)?,
    };
    Ok(Value { t, batched })
}

/// `[b] ++ [1, .., 1] ++ s`: one sample's shape, left-padded with ones to
/// `rank` (numpy broadcasting aligns on the right), with an explicit batch
/// axis in front.
fn extend(s: &[usize], rank: usize, b: usize) -> Shape {
    let mut e = Vec::with_capacity(rank + 1);
    e.push(b);
    e.resize(1 + rank.saturating_sub(s.len()), 1);
    e.extend_from_slice(s);
    e
}

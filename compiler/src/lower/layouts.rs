//! Choosing the slot layout of every ciphertext value.
//!
//! All grids share one frame `H_f × W_f` (powers of two, at least the input
//! image, plus a spare row and column when a padded max-pool needs zeros
//! next to the image). The input has gap 1, one channel per frame block. A
//! linear region's grid output keeps the input's positions at the stride of
//! its path (gap × stride), its channels multiplexed densely into the frame
//! blocks (`gap_h·gap_w` per block); a max-pool's output stays where its
//! windows start (gap × stride, the same channel bases); an approximate
//! ReLU keeps its input's layout. Vector outputs (fully connected layers,
//! global pooling) are replicated every `m'` slots (`m'` the next power of
//! two of their length) and reached by the fold method when the input's
//! period allows it. The slot count is the smallest power of two holding
//! the largest packed tensor, capped at N/2 (then tensors span several
//! ciphertexts).

use super::partition::Partition;
use super::LowerError;
use ir::circuit::{Layout, Method};
use ir::{Graph, NodeId, Op};
use std::collections::BTreeMap;

pub struct LayoutPlan {
    pub layouts: Vec<Layout>,
    /// Layout of every ciphertext value of the tensor graph.
    pub of: BTreeMap<NodeId, u32>,
    /// Kind of each region output: `Diagonal` for grids, `Fold` with the
    /// output's period as the step for vectors (the count is per input).
    pub methods: BTreeMap<(usize, usize), Method>,
    pub slots: usize,
    pub frame: [usize; 2],
}

fn pow2_at_least(v: usize) -> usize {
    v.max(1).next_power_of_two()
}

/// Grid steps `(row, col)` of a layout (for vectors: none).
fn steps(l: &Layout) -> Option<(u64, u64)> {
    match l {
        Layout::Grid { row, col, .. } => Some((*row, *col)),
        Layout::Vector { .. } => None,
    }
}

/// A grid with gaps `(gh, gw)` (rows and columns per lattice step), channels
/// multiplexed `gh·gw` per block.
fn multiplexed(shape: [usize; 3], gap: [usize; 2], frame: [usize; 2], slots: usize) -> Layout {
    let [c, _, _] = shape;
    let per_block = gap[0] * gap[1];
    let block = frame[0] * frame[1];
    let base = (0..c)
        .map(|ch| {
            let (b, r) = (ch / per_block, ch % per_block);
            (b * block + (r / gap[1]) * frame[1] + r % gap[1]) as u64
        })
        .collect();
    let blocks = c.div_ceil(per_block);
    Layout::Grid {
        shape,
        base,
        row: (gap[0] * frame[1]) as u64,
        col: gap[1] as u64,
        cts: (blocks * block).div_ceil(slots).max(1),
        slots,
    }
}

/// The spatial stride of a region output relative to its inputs' grids:
/// the product of the strides of the convolutions and pools on the way.
fn region_gap(
    g: &Graph,
    node: NodeId,
    input_gap: &dyn Fn(usize) -> Option<[usize; 2]>,
    memo: &mut BTreeMap<NodeId, Option<[usize; 2]>>,
) -> Option<[usize; 2]> {
    if let Some(&v) = memo.get(&node) {
        return v;
    }
    let n = g.node(node);
    let ops = g.operands(node);
    let r = match &n.op {
        Op::Input => {
            let k = g.inputs().iter().position(|&i| i == node).expect("input");
            input_gap(k)
        }
        Op::Constant(_) => None,
        Op::Conv2d(c) => {
            region_gap(g, ops[0], input_gap, memo).map(|[h, w]| [h * c.stride[0], w * c.stride[1]])
        }
        Op::AveragePool { pool, .. } => region_gap(g, ops[0], input_gap, memo)
            .map(|[h, w]| [h * pool.stride[0], w * pool.stride[1]]),
        _ => ops
            .iter()
            .filter_map(|&o| region_gap(g, o, input_gap, memo))
            .max(),
    };
    memo.insert(node, r);
    r
}

/// Plans every layout for slots per ciphertext at most `max_slots`.
pub fn plan(graph: &Graph, part: &Partition, max_slots: usize) -> Result<LayoutPlan, LowerError> {
    let input = graph.inputs()[0];
    let in_shape = graph.node(input).shape.clone();
    let pad_margin = graph
        .node_ids()
        .iter()
        .filter_map(|&n| match &graph.node(n).op {
            Op::ApproxMaxPool(a) => Some(
                a.pool
                    .pads
                    .top
                    .max(a.pool.pads.left)
                    .max(a.pool.pads.bottom)
                    .max(a.pool.pads.right),
            ),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let (h, w) = if in_shape.len() == 4 {
        (in_shape[2], in_shape[3])
    } else {
        (1, 1)
    };
    let mut frame = [pow2_at_least(h + pad_margin), pow2_at_least(w + pad_margin)];
    // First pass at the largest slot count finds the space needed and
    // whether the frame holds every grid; then the real pass.
    for _ in 0..8 {
        match plan_with(graph, part, max_slots, frame) {
            Ok(p) => {
                let needed = p
                    .layouts
                    .iter()
                    .map(|l| {
                        (0..l.len())
                            .map(|e| l.position(e) as usize + 1)
                            .max()
                            .unwrap_or(1)
                            .max(match l {
                                Layout::Vector { period, .. } => *period,
                                Layout::Grid { .. } => 1,
                            })
                    })
                    .max()
                    .unwrap_or(1);
                let slots = pow2_at_least(needed).min(max_slots);
                return plan_with(graph, part, slots, frame).map_err(|e| match e {
                    Grow::Frame => LowerError::Internal("frame changed with the slot count".into()),
                    Grow::Fail(e) => e,
                });
            }
            Err(Grow::Frame) => frame = [frame[0] * 2, frame[1] * 2],
            Err(Grow::Fail(e)) => return Err(e),
        }
    }
    Err(LowerError::Unsupported {
        node: graph.node(input).name.clone(),
        msg: "no frame holds the network's feature maps".into(),
    })
}

enum Grow {
    Frame,
    Fail(LowerError),
}

fn plan_with(
    graph: &Graph,
    part: &Partition,
    slots: usize,
    frame: [usize; 2],
) -> Result<LayoutPlan, Grow> {
    let fail = |node: &str, msg: String| {
        Grow::Fail(LowerError::Unsupported {
            node: node.to_string(),
            msg,
        })
    };
    let mut layouts: Vec<Layout> = Vec::new();
    let mut of: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut methods = BTreeMap::new();
    let fits = |l: &Layout| -> bool {
        // Every row of every channel stays inside its frame block.
        match l {
            Layout::Grid {
                shape,
                base,
                row,
                col,
                ..
            } => {
                let block = (frame[0] * frame[1]) as u64;
                base.iter().all(|&b| {
                    let start = b - b % block;
                    let last = b + (shape[1] as u64 - 1) * row + (shape[2] as u64 - 1) * col;
                    let row_end = b % frame[1] as u64 + (shape[2] as u64 - 1) * col;
                    last < start + block && row_end < frame[1] as u64
                })
            }
            Layout::Vector { .. } => true,
        }
    };
    for &v in &part.values {
        let node = graph.node(v);
        let shape = &node.shape;
        let layout = match &node.op {
            Op::Input => {
                if shape.len() == 4 {
                    multiplexed([shape[1], shape[2], shape[3]], [1, 1], frame, slots)
                } else {
                    let len: usize = shape[1..].iter().product();
                    let period = pow2_at_least(len);
                    if period > slots {
                        return Err(fail(
                            &node.name,
                            format!("a vector input of {len} values exceeds {slots} slots"),
                        ));
                    }
                    Layout::replicated_vector(shape[1..].to_vec(), period, slots)
                }
            }
            Op::ApproxRelu(_) => {
                let x = graph.operands(v)[0];
                of.insert(v, of[&x]);
                continue;
            }
            Op::ApproxMaxPool(a) => {
                let x = graph.operands(v)[0];
                let Layout::Grid {
                    base,
                    row,
                    col,
                    cts,
                    ..
                } = &layouts[of[&x] as usize]
                else {
                    return Err(fail(&node.name, "max-pooling needs a grid input".into()));
                };
                let total = (cts * slots) as u64;
                let shift = (a.pool.pads.top as u64 * row + a.pool.pads.left as u64 * col) % total;
                Layout::Grid {
                    shape: [shape[1], shape[2], shape[3]],
                    base: base.iter().map(|&b| (b + total - shift) % total).collect(),
                    row: row * a.pool.stride[0] as u64,
                    col: col * a.pool.stride[1] as u64,
                    cts: *cts,
                    slots,
                }
            }
            _ => {
                let (r, k) = part.region_output[&v];
                let region = &part.regions[r];
                let in_layouts: Vec<&Layout> = region
                    .inputs
                    .iter()
                    .map(|i| &layouts[of[i] as usize])
                    .collect();
                let spatial = shape.len() == 4 && shape[2] * shape[3] > 1;
                if spatial {
                    let gap_of = |i: usize| {
                        steps(in_layouts[i])
                            .map(|(row, col)| [(row / frame[1] as u64) as usize, col as usize])
                    };
                    let mut memo = BTreeMap::new();
                    let gap =
                        region_gap(&region.graph, region.graph.outputs()[k], &gap_of, &mut memo)
                            .unwrap_or([1, 1]);
                    if gap[0] == 0
                        || gap[1] == 0
                        || !gap[0].is_power_of_two()
                        || !gap[1].is_power_of_two()
                    {
                        return Err(fail(
                            &node.name,
                            format!(
                                "strides give a gap of {gap:?}; only powers of two are laid out"
                            ),
                        ));
                    }
                    methods.insert((r, k), Method::Diagonal);
                    multiplexed([shape[1], shape[2], shape[3]], gap, frame, slots)
                } else {
                    let len: usize = shape[1..].iter().product();
                    let step = pow2_at_least(len);
                    if step > slots {
                        return Err(fail(
                            &node.name,
                            format!(
                                "an output of {len} values exceeds {slots} slots per ciphertext"
                            ),
                        ));
                    }
                    // The fold is chosen per input (by its period) when
                    // the transforms are planned.
                    methods.insert((r, k), Method::Fold { step, count: 1 });
                    Layout::replicated_vector(shape[1..].to_vec(), step, slots)
                }
            }
        };
        // A max-pool's output lies where its windows start (possibly in the
        // frame's margin): only fresh grids must fit their blocks.
        if !matches!(node.op, Op::ApproxMaxPool(_)) && !fits(&layout) {
            return Err(Grow::Frame);
        }
        layouts.push(layout);
        of.insert(v, layouts.len() as u32 - 1);
    }
    Ok(LayoutPlan {
        layouts,
        of,
        methods,
        slots,
        frame,
    })
}

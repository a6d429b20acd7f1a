//! Folds per-channel affine maps (inference BatchNorm, and Mul/Add by a
//! per-channel constant) into the convolution or linear layer next to them.
//!
//! - After a layer: `a ⊙ (W∗x + b) + c` = `(a⊙W)∗x + (a⊙b + c)`, when the
//!   layer's only reader is the affine map.
//! - Before a layer (pre-activation nets): `W∗(a ⊙ x + c)` = `(W⊙a)∗x + W∗c`,
//!   exact only when the convolution adds no zero padding (padding is not
//!   transformed by the affine map) and has one group.
//!
//! Arithmetic is done in f64 and rounded once to f32. Affine maps that cannot
//! be folded stay in the graph (they are plaintext products in the circuit).

use ir::{Graph, NodeId, Op, Tensor};

/// A per-channel affine map `y[c] = scale[c]·x[c] + shift[c]` over axis 1.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    pub scale: Vec<f64>,
    pub shift: Vec<f64>,
}

/// Runs the fold to a fixed point; returns how many affine nodes were removed.
pub fn fold_affine(graph: &mut Graph) -> usize {
    let mut folded = 0;
    loop {
        let mut changed = false;
        for id in graph.topo_order() {
            if !graph.contains(id) {
                continue;
            }
            if try_fold_into_producer(graph, id) || try_fold_into_consumer(graph, id) {
                folded += 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    graph.remove_dead();
    folded
}

/// The affine map a node applies to its (single non-constant) operand, if it
/// is one: BatchNorm, or Mul/Add with a per-channel Constant operand.
/// Returns the map and the operand it applies to.
pub fn as_channel_affine(graph: &Graph, id: NodeId) -> Option<(ChannelAffine, NodeId)> {
    let node = graph.node(id);
    let channels = *node.shape.get(1)?;
    match &node.op {
        Op::BatchNorm(bn) => {
            let (scale, shift) = bn.affine();
            Some((ChannelAffine { scale, shift }, graph.operands(id)[0]))
        }
        Op::Mul | Op::Add => {
            let ops = graph.operands(id);
            let (cst, x) = match (&graph.node(ops[0]).op, &graph.node(ops[1]).op) {
                (_, Op::Constant(t)) => (t, ops[0]),
                (Op::Constant(t), _) => (t, ops[1]),
                _ => return None,
            };
            // The result must have the variable operand's shape (no broadcast
            // of the activation itself).
            if graph.node(x).shape != node.shape {
                return None;
            }
            let v = per_channel(cst, &node.shape)?;
            let (scale, shift) = if matches!(node.op, Op::Mul) {
                (v, vec![0.0; channels])
            } else {
                (vec![1.0; channels], v)
            };
            Some((ChannelAffine { scale, shift }, x))
        }
        _ => None,
    }
}

/// The values of a constant that, broadcast to `shape`, varies only along
/// axis 1 — one per channel — or `None`.
fn per_channel(t: &Tensor, shape: &[usize]) -> Option<Vec<f64>> {
    if t.shape.len() > shape.len() {
        return None;
    }
    let channels = shape[1];
    let offset = shape.len() - t.shape.len();
    let mut channel_axis = None;
    for (i, &d) in t.shape.iter().enumerate() {
        let axis = i + offset;
        if d == 1 {
            continue;
        }
        if axis == 1 && d == channels {
            channel_axis = Some(i);
        } else {
            return None;
        }
    }
    Some(match channel_axis {
        None => vec![t.data[0] as f64; channels],
        Some(_) => t.data.iter().map(|&v| v as f64).collect(),
    })
}

fn is_output(graph: &Graph, id: NodeId) -> bool {
    graph.outputs().contains(&id)
}

impl ChannelAffine {
    /// `x ↦ c·x` on `channels` channels.
    pub fn uniform(c: f64, channels: usize) -> Self {
        Self {
            scale: vec![c; channels],
            shift: vec![0.0; channels],
        }
    }

    fn has_shift(&self) -> bool {
        self.shift.iter().any(|&s| s != 0.0)
    }

    fn is_uniform(&self) -> bool {
        self.scale.iter().all(|&s| s == self.scale[0])
    }
}

/// Input channels of a Conv2d/Linear layer (0 for any other op).
pub fn input_channels(op: &Op) -> usize {
    match op {
        Op::Conv2d(c) => c.weight.shape[1] * c.group,
        Op::Linear(l) => l.weight.shape[1],
        _ => 0,
    }
}

/// Makes a Conv2d/Linear `op` compute `affine(op(x))` (per output channel).
/// Returns false, leaving `op` untouched, for any other op.
pub fn absorb_output_affine(op: &mut Op, affine: &ChannelAffine) -> bool {
    let (weight, bias) = match op {
        Op::Conv2d(c) => (&mut c.weight, &mut c.bias),
        Op::Linear(l) => (&mut l.weight, &mut l.bias),
        _ => return false,
    };
    let out = weight.shape[0];
    let per = weight.len() / out;
    for o in 0..out {
        for v in &mut weight.data[o * per..(o + 1) * per] {
            *v = (*v as f64 * affine.scale[o]) as f32;
        }
    }
    let b: Vec<f32> = (0..out)
        .map(|o| {
            let b = bias.as_ref().map_or(0.0, |b| b.data[o] as f64);
            (b * affine.scale[o] + affine.shift[o]) as f32
        })
        .collect();
    *bias = Some(Tensor::new(vec![out], b).expect("bias shape"));
    true
}

/// Makes a Conv2d/Linear `op` compute `op(affine(x))` (per input channel)
/// where that is exact: a shift needs a convolution without zero padding;
/// grouped convolutions take only a uniform scale without shift. Returns
/// false, leaving `op` untouched, otherwise.
pub fn absorb_input_affine(op: &mut Op, affine: &ChannelAffine) -> bool {
    let (weight, bias) = match op {
        Op::Conv2d(c) => {
            let exact = (c.group == 1 || (affine.is_uniform() && !affine.has_shift()))
                && (c.pads.is_zero() || !affine.has_shift());
            if !exact {
                return false;
            }
            (&mut c.weight, &mut c.bias)
        }
        Op::Linear(l) => (&mut l.weight, &mut l.bias),
        _ => return false,
    };
    let out = weight.shape[0];
    let cin = weight.shape[1];
    let k = weight.len() / (out * cin);
    let mut b: Vec<f64> = (0..out)
        .map(|o| bias.as_ref().map_or(0.0, |b| b.data[o] as f64))
        .collect();
    for (o, bo) in b.iter_mut().enumerate() {
        for i in 0..cin {
            // For grouped convolutions the scale is uniform, so the input
            // channel's index within its group does not matter.
            let (a, s) = (affine.scale[i], affine.shift[i]);
            for v in &mut weight.data[(o * cin + i) * k..(o * cin + i + 1) * k] {
                *bo += *v as f64 * s;
                *v = (*v as f64 * a) as f32;
            }
        }
    }
    if bias.is_some() || affine.has_shift() {
        *bias = Some(Tensor::new(vec![out], b.iter().map(|&v| v as f32).collect()).expect("bias"));
    }
    true
}

/// `affine(layer(x))` → `layer'(x)`.
fn try_fold_into_producer(graph: &mut Graph, id: NodeId) -> bool {
    let Some((affine, x)) = as_channel_affine(graph, id) else {
        return false;
    };
    if graph.users(x) != [id] || is_output(graph, x) {
        return false;
    }
    if !absorb_output_affine(graph.op_mut(x), &affine) {
        return false;
    }
    graph.replace_uses(id, x);
    graph.remove(id);
    true
}

/// `layer(affine(x))` → `layer'(x)` where that is exact.
fn try_fold_into_consumer(graph: &mut Graph, id: NodeId) -> bool {
    let Some((affine, x)) = as_channel_affine(graph, id) else {
        return false;
    };
    let users = graph.users(id);
    if users.len() != 1 || is_output(graph, id) {
        return false;
    }
    let layer = users[0];
    if graph.operands(layer) != [id] {
        return false;
    }
    if !absorb_input_affine(graph.op_mut(layer), &affine) {
        return false;
    }
    graph.replace_uses(id, x);
    graph.remove(id);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{conv, max_rel_diff, random_input, rng_tensor, run};
    use ir::{BatchNorm, Pads2d};

    fn bn(c: usize, seed: u64) -> Op {
        Op::BatchNorm(BatchNorm {
            scale: rng_tensor(vec![c], seed, 0.5, 1.5),
            bias: rng_tensor(vec![c], seed + 1, -0.5, 0.5),
            mean: rng_tensor(vec![c], seed + 2, -0.3, 0.3),
            var: rng_tensor(vec![c], seed + 3, 0.2, 2.0),
            epsilon: 1e-5,
        })
    }

    #[test]
    fn conv_bn_folds_and_keeps_values() {
        let mut g = Graph::new("cb");
        let x = g.add_input("x", vec![1, 3, 8, 8]).unwrap();
        let c = g
            .add("conv", conv(3, 4, 3, 1, Pads2d::same(1), 7), &[x])
            .unwrap();
        let b = g.add("bn", bn(4, 11), &[c]).unwrap();
        let r = g.add("relu", Op::Relu, &[b]).unwrap();
        g.set_outputs(vec![r]);
        let input = random_input(&[2, 3, 8, 8], 5);
        let before = run(&g, &input);
        let mut folded = g.clone();
        assert_eq!(fold_affine(&mut folded), 1);
        folded.validate().unwrap();
        assert_eq!(folded.op_counts().get("BatchNorm"), None);
        assert!(max_rel_diff(&before, &run(&folded, &input)) < 1e-5);
    }

    #[test]
    fn pre_activation_bn_folds_only_without_padding() {
        for (pad, expect) in [(0, 1), (1, 0)] {
            let mut g = Graph::new("pre");
            let x = g.add_input("x", vec![1, 3, 6, 6]).unwrap();
            let b = g.add("bn", bn(3, 21), &[x]).unwrap();
            let c = g
                .add("conv", conv(3, 5, 3, 1, Pads2d::same(pad), 9), &[b])
                .unwrap();
            g.set_outputs(vec![c]);
            let input = random_input(&[1, 3, 6, 6], 8);
            let before = run(&g, &input);
            let mut folded = g.clone();
            assert_eq!(fold_affine(&mut folded), expect, "pad {pad}");
            folded.validate().unwrap();
            assert!(max_rel_diff(&before, &run(&folded, &input)) < 1e-5);
        }
    }

    #[test]
    fn chains_of_constant_mul_add_fold_into_linear() {
        let mut g = Graph::new("chain");
        let x = g.add_input("x", vec![1, 6]).unwrap();
        let l = g
            .add(
                "fc",
                Op::Linear(ir::Linear {
                    weight: rng_tensor(vec![4, 6], 3, -1.0, 1.0),
                    bias: None,
                }),
                &[x],
            )
            .unwrap();
        let k = g
            .add("k", Op::Constant(rng_tensor(vec![4], 4, 0.5, 2.0)), &[])
            .unwrap();
        let m = g.add("mul", Op::Mul, &[k, l]).unwrap();
        let s = g.add("s", Op::Constant(Tensor::scalar(0.25)), &[]).unwrap();
        let a = g.add("add", Op::Add, &[m, s]).unwrap();
        g.set_outputs(vec![a]);
        let input = random_input(&[3, 6], 1);
        let before = run(&g, &input);
        let mut folded = g.clone();
        assert_eq!(fold_affine(&mut folded), 2);
        assert_eq!(folded.node_count(), 2, "{}", folded.to_text());
        assert!(max_rel_diff(&before, &run(&folded, &input)) < 1e-5);
    }

    #[test]
    fn shared_producer_is_not_folded() {
        let mut g = Graph::new("shared");
        let x = g.add_input("x", vec![1, 2, 4, 4]).unwrap();
        let c = g
            .add("conv", conv(2, 2, 1, 1, Pads2d::default(), 1), &[x])
            .unwrap();
        let b = g.add("bn", bn(2, 5), &[c]).unwrap();
        let s = g.add("sum", Op::Add, &[b, c]).unwrap();
        g.set_outputs(vec![s]);
        let mut folded = g.clone();
        assert_eq!(fold_affine(&mut folded), 0);
    }
}

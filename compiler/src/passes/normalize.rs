//! Range normalisation: folds the `1/B` and `B` of `B·r(x/B)` into the
//! layers around each approximation, so the polynomials see inputs in
//! `[−1, 1]` and ciphertext values stay small (what bootstrapping needs)
//! at no cost in levels.
//!
//! An approximated ReLU or max-pool is positively homogeneous:
//! `H_B(s·x) = s·H_{s·B}(x)` — scaling its input by `s > 0` scales its output
//! by `s` and its bound by `s`. Pooling, flattening, reshaping, zero padding
//! and residual sums commute with a scale too. So tensors linked through such
//! ops form a *scale domain* that can be multiplied by any `s > 0` as a whole,
//! provided every layer producing into it absorbs `s` into its weights and
//! bias, and every layer reading from it absorbs `1/s` into its weights —
//! i.e. its boundary is made of Conv2d/Linear layers only (no graph input,
//! output, constant or other op). Within a domain, the approximations with
//! bound `B*` become exact-unit (`bound = 1`) with `s = 1/B*`; the pass picks
//! the `B*` shared by the most approximations. This is optimal: two
//! approximations in one domain with different bounds can never both be
//! normalised without an explicit product.

use std::collections::BTreeMap;

use ir::{Graph, NodeId, Op};
use serde::{Deserialize, Serialize};

use super::fold_affine::{
    absorb_input_affine, absorb_output_affine, input_channels, ChannelAffine,
};

/// Bounds within this relative distance count as equal.
const TOLERANCE: f64 = 1e-9;

/// What the pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NormalizeReport {
    /// Scale domains containing at least one approximation.
    pub domains: usize,
    /// Of those, the ones whose boundary allowed rescaling.
    pub rescalable: usize,
    /// Approximations with bound 1, before and after.
    pub normalised_before: usize,
    pub normalised_after: usize,
    pub approximations: usize,
}

fn bound_of(op: &Op) -> Option<f64> {
    match op {
        Op::ApproxRelu(a) => Some(a.bound),
        Op::ApproxMaxPool(a) => Some(a.bound),
        _ => None,
    }
}

fn is_unit(b: f64) -> bool {
    (b - 1.0).abs() <= TOLERANCE
}

/// Ops through which a scale passes unchanged (output scaled like input).
fn passes_scale(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    match &node.op {
        Op::Relu
        | Op::MaxPool(_)
        | Op::ApproxRelu(_)
        | Op::ApproxMaxPool(_)
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Identity => true,
        Op::Pad { value, .. } => *value == 0.0,
        Op::Add | Op::Concat { .. } => graph
            .operands(id)
            .iter()
            .all(|&o| !matches!(graph.node(o).op, Op::Constant(_))),
        _ => false,
    }
}

fn is_layer(op: &Op) -> bool {
    matches!(op, Op::Conv2d(_) | Op::Linear(_))
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut i = i;
        while self.0[i] != r {
            let next = self.0[i];
            self.0[i] = r;
            i = next;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Rescales every domain whose boundary allows it; returns what it did.
pub fn normalize_ranges(graph: &mut Graph) -> NormalizeReport {
    let order = graph.topo_order();
    let index: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut uf = UnionFind((0..order.len()).collect());
    for &n in &order {
        if passes_scale(graph, n) {
            for o in graph.operands(n) {
                uf.union(index[&n], index[&o]);
            }
        }
    }
    // Members of each domain, in topological order.
    let mut domains: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
    for &n in &order {
        domains.entry(uf.find(index[&n])).or_default().push(n);
    }
    let mut report = NormalizeReport::default();
    for &n in &order {
        if let Some(b) = bound_of(&graph.node(n).op) {
            report.approximations += 1;
            report.normalised_before += usize::from(is_unit(b));
        }
    }
    for members in domains.values() {
        let approx: Vec<(NodeId, f64)> = members
            .iter()
            .filter_map(|&n| bound_of(&graph.node(n).op).map(|b| (n, b)))
            .collect();
        if approx.is_empty() {
            continue;
        }
        report.domains += 1;
        // Producers: members that do not pass a scale; they must be layers.
        let producers: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&n| !passes_scale(graph, n))
            .collect();
        let producers_ok = producers
            .iter()
            .all(|&n| is_layer(&graph.node(n).op) && !graph.outputs().contains(&n));
        // Consumers: layers reading a member; every other reader must pass
        // the scale on (and so be a member), and no member may be a graph
        // output. A layer that is itself a member (a producer) and reads
        // the domain too (`relu → conv → Add(conv, relu)`, `Concat(x,
        // conv(x))`) is both: its input absorbs 1/s and its output s.
        let member_set: std::collections::BTreeSet<NodeId> = members.iter().copied().collect();
        let mut consumers = Vec::new();
        let mut consumers_ok = true;
        for &m in members {
            if graph.outputs().contains(&m) {
                consumers_ok = false;
            }
            for u in graph.users(m) {
                if member_set.contains(&u) && passes_scale(graph, u) {
                    continue;
                }
                if is_layer(&graph.node(u).op) {
                    consumers.push(u);
                } else {
                    consumers_ok = false;
                }
            }
        }
        consumers.sort();
        consumers.dedup();
        if !(producers_ok && consumers_ok) || producers.is_empty() {
            continue;
        }
        report.rescalable += 1;
        // The bound shared by the most approximations (first seen on ties).
        let mut best: Option<(f64, usize)> = None;
        for &(_, b) in &approx {
            let count = approx
                .iter()
                .filter(|(_, c)| ((c - b) / b).abs() <= TOLERANCE)
                .count();
            if best.is_none_or(|(_, k)| count > k) {
                best = Some((b, count));
            }
        }
        let (b_star, _) = best.expect("non-empty");
        if is_unit(b_star) {
            continue;
        }
        let s = 1.0 / b_star;
        for &p in &producers {
            let out = graph.node(p).shape[1];
            let ok = absorb_output_affine(graph.op_mut(p), &ChannelAffine::uniform(s, out));
            debug_assert!(ok);
        }
        for &c in &consumers {
            let cin = input_channels(&graph.node(c).op);
            let ok = absorb_input_affine(graph.op_mut(c), &ChannelAffine::uniform(1.0 / s, cin));
            debug_assert!(ok, "a uniform scale without shift is always absorbable");
        }
        // B·s, exactly 1 for the bounds equal to B*.
        let rescale = |b: f64| {
            if ((b - b_star) / b_star).abs() <= TOLERANCE {
                1.0
            } else {
                b * s
            }
        };
        for &(n, _) in &approx {
            match graph.op_mut(n) {
                Op::ApproxRelu(a) => a.bound = rescale(a.bound),
                Op::ApproxMaxPool(a) => {
                    a.bound = rescale(a.bound);
                    a.input_scale /= s;
                }
                _ => unreachable!(),
            }
        }
    }
    for &n in &order {
        if let Some(b) = bound_of(&graph.node(n).op) {
            report.normalised_after += usize::from(is_unit(b));
        }
    }
    report
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::passes::testing::{conv, rng_tensor, toy_sign};
    use ir::{ApproxRelu, Graph, Op, Pads2d};

    fn arelu(bound: f64) -> Op {
        Op::ApproxRelu(ApproxRelu {
            bound,
            sign: toy_sign(),
        })
    }

    /// conv → relu(6) → conv → (+ skip) → relu(9) → GAP → flatten → fc,
    /// with relu1 (bound 3) inside the residual branch.
    pub fn residual_block() -> Graph {
        let mut g = Graph::new("block");
        let x = g.add_input("x", vec![1, 3, 6, 6]).unwrap();
        let c0 = g
            .add("stem", conv(3, 4, 3, 1, Pads2d::same(1), 1), &[x])
            .unwrap();
        let r0 = g.add("relu0", arelu(6.0), &[c0]).unwrap();
        let c1 = g
            .add("conv1", conv(4, 4, 3, 1, Pads2d::same(1), 2), &[r0])
            .unwrap();
        let r1 = g.add("relu1", arelu(3.0), &[c1]).unwrap();
        let c2 = g
            .add("conv2", conv(4, 4, 3, 1, Pads2d::same(1), 3), &[r1])
            .unwrap();
        let s = g.add("add", Op::Add, &[c2, r0]).unwrap();
        let r2 = g.add("relu2", arelu(9.0), &[s]).unwrap();
        let r3 = g.add("relu3", arelu(6.0), &[r2]).unwrap();
        let p = g.add("gap", Op::GlobalAveragePool, &[r3]).unwrap();
        let f = g.add("flat", Op::Flatten { axis: 1 }, &[p]).unwrap();
        let fc = g
            .add(
                "fc",
                Op::Linear(ir::Linear {
                    weight: rng_tensor(vec![5, 4], 4, -1.0, 1.0),
                    bias: None,
                }),
                &[f],
            )
            .unwrap();
        g.set_outputs(vec![fc]);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::residual_block;
    use super::*;
    use crate::passes::testing::{conv, max_rel_diff, random_input, run, toy_sign};
    use ir::{ApproxRelu, Pads2d};

    fn arelu(bound: f64) -> Op {
        Op::ApproxRelu(ApproxRelu {
            bound,
            sign: toy_sign(),
        })
    }

    #[test]
    fn residual_domains_normalise_the_majority_bound() {
        let g = residual_block();
        let mut n = g.clone();
        let report = normalize_ranges(&mut n);
        n.validate().unwrap();
        // Domains: {stem out, relu0, add, relu2, relu3, gap, flat} with bounds
        // 6, 9, 6 → scale 1/6 normalises relu0 and relu3; {relu1} alone.
        assert_eq!(report.domains, 2);
        assert_eq!(report.rescalable, 2);
        assert_eq!(report.normalised_after, 3, "{}", n.to_text());
        let relu2 = n.find("relu2").unwrap();
        assert!(matches!(&n.node(relu2).op, Op::ApproxRelu(a) if (a.bound - 1.5).abs() < 1e-12));
        assert_eq!(n.op_counts(), g.op_counts());
        let input = random_input(&[2, 3, 6, 6], 7);
        let d = max_rel_diff(&run(&g, &input), &run(&n, &input));
        assert!(d < 1e-5, "relative difference {d}");
    }

    /// A layer that reads from and writes into one domain is scaled once
    /// on each side (it used to get its weights scaled twice).
    #[test]
    fn layers_inside_their_own_domain_keep_the_function() {
        // relu0 → conv → Add(conv, relu0) → relu1, and Concat(x, conv(x)).
        let mut g = Graph::new("loops");
        let x = g.add_input("x", vec![1, 3, 6, 6]).unwrap();
        let c0 = g
            .add("stem", conv(3, 4, 3, 1, Pads2d::same(1), 1), &[x])
            .unwrap();
        let r0 = g.add("relu0", arelu(5.0), &[c0]).unwrap();
        let c1 = g
            .add("conv1", conv(4, 4, 3, 1, Pads2d::same(1), 2), &[r0])
            .unwrap();
        let s = g.add("add", Op::Add, &[c1, r0]).unwrap();
        let r1 = g.add("relu1", arelu(5.0), &[s]).unwrap();
        let c2 = g
            .add("conv2", conv(4, 4, 1, 1, Pads2d::default(), 3), &[r1])
            .unwrap();
        let cat = g.add("cat", Op::Concat { axis: 1 }, &[r1, c2]).unwrap();
        let r2 = g.add("relu2", arelu(5.0), &[cat]).unwrap();
        let head = g
            .add("head", conv(8, 2, 1, 1, Pads2d::default(), 4), &[r2])
            .unwrap();
        g.set_outputs(vec![head]);
        let mut n = g.clone();
        let report = normalize_ranges(&mut n);
        n.validate().unwrap();
        assert_eq!(report.normalised_after, 3, "{}", n.to_text());
        let input = random_input(&[2, 3, 6, 6], 9);
        let d = max_rel_diff(&run(&g, &input), &run(&n, &input));
        assert!(d < 1e-5, "relative difference {d}");
    }

    #[test]
    fn a_domain_touching_an_input_or_output_is_left_alone() {
        let mut g = Graph::new("edge");
        let x = g.add_input("x", vec![1, 2, 4, 4]).unwrap();
        let r = g.add("relu", arelu(5.0), &[x]).unwrap();
        let c = g
            .add("conv", conv(2, 2, 1, 1, Pads2d::default(), 2), &[r])
            .unwrap();
        let r2 = g.add("relu2", arelu(4.0), &[c]).unwrap();
        g.set_outputs(vec![r2]);
        let mut n = g.clone();
        let report = normalize_ranges(&mut n);
        assert_eq!(report.rescalable, 0);
        assert_eq!(n.to_text(), g.to_text());
    }
}

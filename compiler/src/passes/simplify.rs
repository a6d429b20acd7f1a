//! Scale normalisation by equality saturation (egg).
//!
//! An approximated ReLU or max-pool with bound `B` is positively homogeneous:
//! `H_B(c·x) = c·H_{B/c}(x)` for `c > 0`, so `H_B(x) = B·H_1(x/B)`. Written
//! that way, the polynomial sees inputs in `[−1, 1]` and every ciphertext in
//! the circuit stays in a small range (what bootstrapping needs) — but each
//! explicit scalar product costs a level. The rules below move the scalars
//! through the operations that commute with them (pooling, flattening,
//! padding with 0, residual sums, other homogeneous ops) until a convolution
//! or linear layer absorbs them into its weights; the extraction charges a
//! level for each scalar left, so the cheapest term normalises exactly the
//! layers where the scalars vanish.
//!
//! The rules are directional, the run is bounded (iterations, nodes, time)
//! and deterministic (egg's `deterministic` feature, and all numeric
//! payloads are stored in insertion order). The result is accepted only if
//! it computes no more layers and no more explicit scalar products than the
//! input graph; otherwise the input is returned unchanged and the report
//! says so.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use egg::{
    define_language, rewrite, Analysis, Applier, CostFunction, DidMerge, EGraph, Extractor, Id,
    Language, PatternAst, RecExpr, Rewrite, Runner, Subst, Symbol, Var,
};
use ir::{Graph, NodeId, Op, Tensor};
use serde::{Deserialize, Serialize};

use super::fold_affine::{absorb_input_affine, absorb_output_affine, ChannelAffine};

/// Limits of one saturation run.
const ITER_LIMIT: usize = 12;
const NODE_LIMIT: usize = 50_000;
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// Bounds within this relative distance of 1 count as normalised.
const UNIT_TOLERANCE: f64 = 1e-12;

/// An f64 payload, hashed and ordered by its bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Real(u64);

impl Real {
    fn new(v: f64) -> Self {
        Real(v.to_bits())
    }
    fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Display for Real {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:e}", self.get())
    }
}

impl FromStr for Real {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('#')
            .and_then(|v| v.parse::<f64>().ok())
            .map(Real::new)
            .ok_or(())
    }
}

/// Index into the payload table (an IR op and the name it came from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Payload(u32);

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl FromStr for Payload {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('@')
            .and_then(|v| v.parse().ok())
            .map(Payload)
            .ok_or(())
    }
}

define_language! {
    /// The terms of the scale algebra. Every op node's first child is its
    /// payload (the IR op and its name).
    pub enum Term {
        // `(scale c x)`: `c·x`, a scalar product that costs a level.
        "scale" = Scale([Id; 2]),
        // `(layer p x)`: Conv2d or Linear; absorbs scalars on both sides.
        "layer" = Layer([Id; 2]),
        // `(homog p x)`: ReLU/MaxPool, exact or approximated.
        "homog" = Homog([Id; 2]),
        // `(lin p x)`: a unary op with `f(c·x) = c·f(x)`.
        "lin" = Lin([Id; 2]),
        // `(add p x y)`.
        "add" = Add([Id; 3]),
        // `(other p args…)`: anything else, untouched.
        "other" = Other(Box<[Id]>),
        // The graph outputs, in order.
        "outputs" = Outputs(Box<[Id]>),
        Num(Real),
        Payload(Payload),
    }
}

/// The payload table, kept in the e-graph's analysis so rule appliers can
/// derive new layers (rescaled weights, moved bounds).
#[derive(Default)]
pub struct Payloads {
    entries: Vec<(Op, String)>,
}

impl Payloads {
    fn push(&mut self, op: Op, name: String) -> Payload {
        self.entries.push((op, name));
        Payload(self.entries.len() as u32 - 1)
    }
}

impl Analysis<Term> for Payloads {
    type Data = ();
    fn make(_: &mut EGraph<Term, Self>, _: &Term, _: Id) -> Self::Data {}
    fn merge(&mut self, _: &mut (), _: ()) -> DidMerge {
        DidMerge(false, false)
    }
}

type Egraph = EGraph<Term, Payloads>;

fn num_in(egraph: &Egraph, id: Id) -> Option<f64> {
    egraph[id].nodes.iter().find_map(|n| match n {
        Term::Num(r) => Some(r.get()),
        _ => None,
    })
}

fn payload_in(egraph: &Egraph, id: Id) -> Payload {
    egraph[id]
        .nodes
        .iter()
        .find_map(|n| match n {
            Term::Payload(p) => Some(*p),
            _ => None,
        })
        .expect("payload class")
}

/// The op computing `c · H(x)` as `H'(c·x)`'s inverse: `H(c·x) = c·H'(x)`,
/// i.e. `H'` has its bound divided by `c`.
fn homog_through(op: &Op, c: f64) -> Op {
    match op {
        Op::ApproxRelu(a) => {
            let mut a = a.clone();
            a.bound /= c;
            Op::ApproxRelu(a)
        }
        Op::ApproxMaxPool(a) => {
            let mut a = a.clone();
            a.bound /= c;
            a.input_scale *= c;
            Op::ApproxMaxPool(a)
        }
        other => other.clone(),
    }
}

fn approx_bound(op: &Op) -> Option<f64> {
    match op {
        Op::ApproxRelu(a) => Some(a.bound),
        Op::ApproxMaxPool(a) => Some(a.bound),
        _ => None,
    }
}

fn is_unit(b: f64) -> bool {
    (b - 1.0).abs() <= UNIT_TOLERANCE
}

fn channels_of(op: &Op) -> usize {
    match op {
        Op::Conv2d(c) => c.weight.shape[1] * c.group,
        Op::Linear(l) => l.weight.shape[1],
        _ => 0,
    }
}

/// `(homog p x)` with bound `B ≠ 1` ⇒ `(scale B (homog p₁ (scale 1/B x)))`.
struct Normalise {
    p: Var,
    x: Var,
}

impl Applier<Term, Payloads> for Normalise {
    fn apply_one(
        &self,
        egraph: &mut Egraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Term>>,
        _: Symbol,
    ) -> Vec<Id> {
        let p = payload_in(egraph, subst[self.p]);
        let (op, name) = egraph.analysis.entries[p.0 as usize].clone();
        let Some(b) = approx_bound(&op) else {
            return vec![];
        };
        if is_unit(b) || !(b > 0.0) {
            return vec![];
        }
        // H_B(x) = B · H_1(x / B).
        let unit = homog_through(&op, b);
        let pu = egraph.analysis.push(unit, name);
        let pu = egraph.add(Term::Payload(pu));
        let inv = egraph.add(Term::Num(Real::new(1.0 / b)));
        let inner = egraph.add(Term::Scale([inv, subst[self.x]]));
        let h = egraph.add(Term::Homog([pu, inner]));
        let bn = egraph.add(Term::Num(Real::new(b)));
        let outer = egraph.add(Term::Scale([bn, h]));
        if egraph.union(eclass, outer) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Moves a positive scalar across a homogeneous op:
/// forward `(homog p (scale c x))` ⇒ `(scale c (homog p/c x))`, or
/// backward `(scale c (homog p x))` ⇒ `(homog c·p (scale c x))`.
struct ThroughHomog {
    forward: bool,
    p: Var,
    c: Var,
    x: Var,
}

impl Applier<Term, Payloads> for ThroughHomog {
    fn apply_one(
        &self,
        egraph: &mut Egraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Term>>,
        _: Symbol,
    ) -> Vec<Id> {
        let Some(c) = num_in(egraph, subst[self.c]) else {
            return vec![];
        };
        if !(c > 0.0 && c.is_finite()) {
            return vec![];
        }
        let p = payload_in(egraph, subst[self.p]);
        let (op, name) = egraph.analysis.entries[p.0 as usize].clone();
        let factor = if self.forward { c } else { 1.0 / c };
        let moved = egraph.analysis.push(homog_through(&op, factor), name);
        let moved = egraph.add(Term::Payload(moved));
        let out = if self.forward {
            let h = egraph.add(Term::Homog([moved, subst[self.x]]));
            egraph.add(Term::Scale([subst[self.c], h]))
        } else {
            let scaled = egraph.add(Term::Scale([subst[self.c], subst[self.x]]));
            egraph.add(Term::Homog([moved, scaled]))
        };
        if egraph.union(eclass, out) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Which side of a layer a scalar is absorbed on.
#[derive(Clone, Copy)]
enum Side {
    /// `(scale c (layer p x))` ⇒ `(layer c·p x)`.
    Output,
    /// `(layer p (scale c x))` ⇒ `(layer p·c x)`.
    Input,
}

struct Absorb {
    side: Side,
    p: Var,
    c: Var,
    x: Var,
}

impl Applier<Term, Payloads> for Absorb {
    fn apply_one(
        &self,
        egraph: &mut Egraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Term>>,
        _: Symbol,
    ) -> Vec<Id> {
        let Some(c) = num_in(egraph, subst[self.c]) else {
            return vec![];
        };
        let p = payload_in(egraph, subst[self.p]);
        let (mut op, name) = egraph.analysis.entries[p.0 as usize].clone();
        let ok = match self.side {
            Side::Output => {
                let out = match &op {
                    Op::Conv2d(conv) => conv.out_channels(),
                    Op::Linear(l) => l.weight.shape[0],
                    _ => 0,
                };
                absorb_output_affine(&mut op, &ChannelAffine::uniform(c, out))
            }
            Side::Input => {
                let cin = channels_of(&op);
                absorb_input_affine(&mut op, &ChannelAffine::uniform(c, cin))
            }
        };
        if !ok {
            return vec![];
        }
        let np = egraph.analysis.push(op, name);
        let np = egraph.add(Term::Payload(np));
        let layer = egraph.add(Term::Layer([np, subst[self.x]]));
        if egraph.union(eclass, layer) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// `(scale a (scale b x))` ⇒ `(scale a·b x)`, and `(scale 1 x)` ⇒ `x`.
struct MergeScales {
    a: Var,
    b: Var,
    x: Var,
}

impl Applier<Term, Payloads> for MergeScales {
    fn apply_one(
        &self,
        egraph: &mut Egraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Term>>,
        _: Symbol,
    ) -> Vec<Id> {
        let (Some(a), Some(b)) = (num_in(egraph, subst[self.a]), num_in(egraph, subst[self.b]))
        else {
            return vec![];
        };
        let ab = a * b;
        let out = if is_unit(ab) {
            subst[self.x]
        } else {
            let n = egraph.add(Term::Num(Real::new(ab)));
            egraph.add(Term::Scale([n, subst[self.x]]))
        };
        if egraph.union(eclass, out) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

fn rules() -> Vec<Rewrite<Term, Payloads>> {
    let v = |s: &str| -> Var { s.parse().expect("var") };
    vec![
        Rewrite::new(
            "normalise-bound",
            "(homog ?p ?x)".parse::<egg::Pattern<Term>>().expect("pattern"),
            Normalise {
                p: v("?p"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        Rewrite::new(
            "scale-through-homog",
            "(homog ?p (scale ?c ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            ThroughHomog {
                forward: true,
                p: v("?p"),
                c: v("?c"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        Rewrite::new(
            "scale-into-homog",
            "(scale ?c (homog ?p ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            ThroughHomog {
                forward: false,
                p: v("?p"),
                c: v("?c"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        Rewrite::new(
            "absorb-into-producer",
            "(scale ?c (layer ?p ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            Absorb {
                side: Side::Output,
                p: v("?p"),
                c: v("?c"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        Rewrite::new(
            "absorb-into-consumer",
            "(layer ?p (scale ?c ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            Absorb {
                side: Side::Input,
                p: v("?p"),
                c: v("?c"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        Rewrite::new(
            "merge-scales",
            "(scale ?a (scale ?b ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            MergeScales {
                a: v("?a"),
                b: v("?b"),
                x: v("?x"),
            },
        )
        .expect("rule"),
        rewrite!("scale-through-lin"; "(lin ?p (scale ?c ?x))" => "(scale ?c (lin ?p ?x))"),
        rewrite!("scale-into-lin"; "(scale ?c (lin ?p ?x))" => "(lin ?p (scale ?c ?x))"),
        rewrite!("factor-add"; "(add ?p (scale ?c ?x) (scale ?c ?y))" => "(scale ?c (add ?p ?x ?y))"),
        rewrite!("distribute-add"; "(scale ?c (add ?p ?x ?y))" => "(add ?p (scale ?c ?x) (scale ?c ?y))"),
    ]
}

/// Extraction cost: a level (1000) for each explicit scalar product, a
/// penalty (10) for each approximated op left un-normalised, one per other op.
struct LevelCost<'a> {
    egraph: &'a Egraph,
}

impl CostFunction<Term> for LevelCost<'_> {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &Term, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = match enode {
            Term::Scale(_) => 1000.0,
            Term::Homog([p, _]) => {
                let (op, _) = &self.egraph.analysis.entries[payload_in(self.egraph, *p).0 as usize];
                if approx_bound(op).is_some_and(|b| !is_unit(b)) {
                    11.0
                } else {
                    1.0
                }
            }
            Term::Num(_) | Term::Payload(_) => 0.0,
            _ => 1.0,
        };
        enode.fold(own, |sum, id| sum + costs(id))
    }
}

/// What the pass did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimplifyReport {
    pub ops_before: BTreeMap<String, usize>,
    pub ops_after: BTreeMap<String, usize>,
    /// Approximated ops whose bound is 1 (inputs in `[−1, 1]`), before/after.
    pub normalised_before: usize,
    pub normalised_after: usize,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub stop_reason: String,
    /// False when the extracted graph was worse than the input and dropped.
    pub accepted: bool,
}

fn counts(graph: &Graph) -> BTreeMap<String, usize> {
    graph
        .op_counts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn normalised(graph: &Graph) -> usize {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| approx_bound(&graph.node(id).op).is_some_and(is_unit))
        .count()
}

/// Explicit scalar products: `Mul` by a scalar constant.
fn scalar_products(graph: &Graph) -> usize {
    graph
        .node_ids()
        .into_iter()
        .filter(|&id| scalar_operand(graph, id).is_some())
        .count()
}

/// For `Mul(x, c)` / `Mul(c, x)` with a one-element constant `c`: `(c, x)`.
fn scalar_operand(graph: &Graph, id: NodeId) -> Option<(f64, NodeId)> {
    if !matches!(graph.node(id).op, Op::Mul) {
        return None;
    }
    let ops = graph.operands(id);
    for (k, x) in [(ops[0], ops[1]), (ops[1], ops[0])] {
        if let Op::Constant(t) = &graph.node(k).op {
            if t.len() == 1 && graph.node(x).shape == graph.node(id).shape {
                return Some((t.data[0] as f64, x));
            }
        }
    }
    None
}

/// Runs the saturation and returns the simplified graph with a report.
pub fn simplify(graph: &Graph) -> (Graph, SimplifyReport) {
    let mut payloads = Payloads::default();
    let mut expr: RecExpr<Term> = RecExpr::default();
    let mut term_of: HashMap<NodeId, Id> = HashMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let operands: Vec<Id> = graph.operands(id).iter().map(|o| term_of[o]).collect();
        let t = if let Op::Identity = node.op {
            operands[0]
        } else if let Some((c, x)) = scalar_operand(graph, id) {
            let n = expr.add(Term::Num(Real::new(c)));
            expr.add(Term::Scale([n, term_of[&x]]))
        } else {
            let p = payloads.push(node.op.clone(), node.name.clone());
            let p = expr.add(Term::Payload(p));
            match &node.op {
                Op::Conv2d(_) | Op::Linear(_) => expr.add(Term::Layer([p, operands[0]])),
                Op::Relu | Op::MaxPool(_) | Op::ApproxRelu(_) | Op::ApproxMaxPool(_) => {
                    expr.add(Term::Homog([p, operands[0]]))
                }
                Op::AveragePool { .. }
                | Op::GlobalAveragePool
                | Op::Flatten { .. }
                | Op::Reshape { .. } => expr.add(Term::Lin([p, operands[0]])),
                Op::Pad { value, .. } if *value == 0.0 => expr.add(Term::Lin([p, operands[0]])),
                Op::Add if node.shape == graph.node(graph.operands(id)[0]).shape
                    && node.shape == graph.node(graph.operands(id)[1]).shape =>
                {
                    expr.add(Term::Add([p, operands[0], operands[1]]))
                }
                _ => {
                    let mut children = vec![p];
                    children.extend(operands);
                    expr.add(Term::Other(children.into_boxed_slice()))
                }
            }
        };
        term_of.insert(id, t);
    }
    let outs: Vec<Id> = graph.outputs().iter().map(|o| term_of[o]).collect();
    expr.add(Term::Outputs(outs.into_boxed_slice()));

    let runner = Runner::new(payloads)
        .with_iter_limit(ITER_LIMIT)
        .with_node_limit(NODE_LIMIT)
        .with_time_limit(TIME_LIMIT)
        .with_expr(&expr)
        .run(&rules());
    let root = runner.roots[0];
    let extractor = Extractor::new(
        &runner.egraph,
        LevelCost {
            egraph: &runner.egraph,
        },
    );
    let (_, best) = extractor.find_best(root);
    let mut report = SimplifyReport {
        ops_before: counts(graph),
        ops_after: BTreeMap::new(),
        normalised_before: normalised(graph),
        normalised_after: 0,
        iterations: runner.iterations.len(),
        egraph_nodes: runner.egraph.total_number_of_nodes(),
        egraph_classes: runner.egraph.number_of_classes(),
        stop_reason: format!("{:?}", runner.stop_reason.as_ref().expect("stopped")),
        accepted: false,
    };
    let candidate = rebuild(graph, &best, &runner.egraph.analysis);
    let layers = |g: &Graph| {
        let c = g.op_counts();
        c.get("Conv2d").copied().unwrap_or(0) + c.get("Linear").copied().unwrap_or(0)
    };
    let better = candidate.as_ref().is_some_and(|c| {
        c.validate().is_ok()
            && layers(c) <= layers(graph)
            && scalar_products(c) <= scalar_products(graph)
            && c.node_count() <= graph.node_count()
    });
    let out = match candidate {
        Some(c) if better => {
            report.accepted = true;
            c
        }
        _ => graph.clone(),
    };
    report.ops_after = counts(&out);
    report.normalised_after = normalised(&out);
    (out, report)
}

/// Turns the extracted term back into an IR graph. Nodes keep the names of
/// the IR nodes they derive from; `None` if the term is malformed.
fn rebuild(original: &Graph, expr: &RecExpr<Term>, payloads: &Payloads) -> Option<Graph> {
    let mut g = Graph::new(original.name.clone());
    let mut node_of: Vec<Option<NodeId>> = vec![None; expr.as_ref().len()];
    let mut outputs = Vec::new();
    let payload = |id: Id| match &expr[id] {
        Term::Payload(p) => Some(&payloads.entries[p.0 as usize]),
        _ => None,
    };
    for (i, term) in expr.as_ref().iter().enumerate() {
        let arg = |id: &Id| node_of[usize::from(*id)];
        let made = match term {
            Term::Num(_) | Term::Payload(_) => None,
            Term::Scale([c, x]) => {
                let Term::Num(c) = &expr[*c] else { return None };
                let x = arg(x)?;
                let base = format!("{}_scaled", g.node(x).name);
                let k = g
                    .add(
                        g.fresh_name(&format!("{base}_by")),
                        Op::Constant(Tensor::scalar(c.get() as f32)),
                        &[],
                    )
                    .ok()?;
                Some(g.add(g.fresh_name(&base), Op::Mul, &[x, k]).ok()?)
            }
            Term::Layer([p, x]) | Term::Homog([p, x]) | Term::Lin([p, x]) => {
                let (op, name) = payload(*p)?;
                Some(g.add(g.fresh_name(name), op.clone(), &[arg(x)?]).ok()?)
            }
            Term::Add([p, x, y]) => {
                let (op, name) = payload(*p)?;
                Some(g.add(g.fresh_name(name), op.clone(), &[arg(x)?, arg(y)?]).ok()?)
            }
            Term::Other(children) => {
                let (op, name) = payload(children[0])?;
                if let Op::Input = op {
                    let shape = original.node(original.find(name)?).shape.clone();
                    Some(g.add_input(name.clone(), shape).ok()?)
                } else {
                    let args: Option<Vec<NodeId>> = children[1..].iter().map(arg).collect();
                    Some(g.add(g.fresh_name(name), op.clone(), &args?).ok()?)
                }
            }
            Term::Outputs(outs) => {
                outputs = outs.iter().map(arg).collect::<Option<Vec<_>>>()?;
                None
            }
        };
        node_of[i] = made;
    }
    // Graph inputs in their original order.
    let input_order: Vec<String> = original
        .inputs()
        .iter()
        .map(|&i| original.node(i).name.clone())
        .collect();
    let rebuilt_order: Vec<String> = g.inputs().iter().map(|&i| g.node(i).name.clone()).collect();
    if rebuilt_order != input_order {
        // An input was dropped or reordered by the extraction.
        return None;
    }
    g.set_outputs(outputs);
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{conv, max_rel_diff, random_input, run, toy_sign};
    use ir::{ApproxRelu, Pads2d};

    fn arelu(bound: f64) -> Op {
        Op::ApproxRelu(ApproxRelu {
            bound,
            sign: toy_sign(),
        })
    }

    /// conv → relu(B1) → conv → (+ skip) → relu(B2) → GAP → flatten → fc.
    fn residual_block() -> Graph {
        let mut g = Graph::new("block");
        let x = g.add_input("x", vec![1, 3, 6, 6]).unwrap();
        let c0 = g.add("stem", conv(3, 4, 3, 1, Pads2d::same(1), 1), &[x]).unwrap();
        let r0 = g.add("relu0", arelu(6.0), &[c0]).unwrap();
        let c1 = g.add("conv1", conv(4, 4, 3, 1, Pads2d::same(1), 2), &[r0]).unwrap();
        let r1 = g.add("relu1", arelu(3.0), &[c1]).unwrap();
        let c2 = g.add("conv2", conv(4, 4, 3, 1, Pads2d::same(1), 3), &[r1]).unwrap();
        let s = g.add("add", Op::Add, &[c2, r0]).unwrap();
        let r2 = g.add("relu2", arelu(9.0), &[s]).unwrap();
        let p = g.add("gap", Op::GlobalAveragePool, &[r2]).unwrap();
        let f = g.add("flat", Op::Flatten { axis: 1 }, &[p]).unwrap();
        let fc = g
            .add(
                "fc",
                Op::Linear(ir::Linear {
                    weight: crate::passes::testing::rng_tensor(vec![5, 4], 4, -1.0, 1.0),
                    bias: None,
                }),
                &[f],
            )
            .unwrap();
        g.set_outputs(vec![fc]);
        g
    }

    #[test]
    fn normalises_every_bound_where_scales_vanish() {
        let g = residual_block();
        let (s, report) = simplify(&g);
        assert!(report.accepted, "{report:?}");
        s.validate().unwrap();
        // relu0 feeds both conv1 and the residual sum into relu2, so relu0
        // and relu2 cannot both reach bound 1 without an explicit product:
        // the optimum normalises two of the three and leaves no scalar.
        assert_eq!(report.normalised_before, 0);
        assert_eq!(report.normalised_after, 2, "{}", s.to_text());
        assert_eq!(scalar_products(&s), 0, "{}", s.to_text());
        assert_eq!(report.ops_before, report.ops_after);
        // Same function (the polynomials see the same normalised inputs).
        let input = random_input(&[2, 3, 6, 6], 7);
        let d = max_rel_diff(&run(&g, &input), &run(&s, &input));
        assert!(d < 1e-5, "relative difference {d}");
    }

    #[test]
    fn an_input_fed_relu_keeps_its_bound() {
        // Nothing before the ReLU can absorb 1/B: normalising would cost an
        // explicit product (a level), so the bound stays.
        let mut g = Graph::new("bare");
        let x = g.add_input("x", vec![1, 2, 4, 4]).unwrap();
        let r = g.add("relu", arelu(5.0), &[x]).unwrap();
        g.set_outputs(vec![r]);
        let (s, report) = simplify(&g);
        assert_eq!(report.normalised_after, 0);
        assert_eq!(s.to_text(), g.to_text());
    }

    #[test]
    fn explicit_scalars_are_folded_into_layers() {
        let mut g = Graph::new("scaled");
        let x = g.add_input("x", vec![1, 2, 5, 5]).unwrap();
        let c = g.add("conv", conv(2, 3, 3, 1, Pads2d::same(1), 5), &[x]).unwrap();
        let k = g.add("k", Op::Constant(Tensor::scalar(0.5)), &[]).unwrap();
        let m = g.add("half", Op::Mul, &[c, k]).unwrap();
        let p = g
            .add(
                "avg",
                Op::AveragePool {
                    pool: ir::Pool2d {
                        kernel: [2, 2],
                        stride: [2, 2],
                        pads: Pads2d::default(),
                    },
                    count_include_pad: true,
                },
                &[m],
            )
            .unwrap();
        g.set_outputs(vec![p]);
        let (s, report) = simplify(&g);
        assert!(report.accepted);
        assert_eq!(scalar_products(&s), 0, "{}", s.to_text());
        assert!(s.node_count() < g.node_count());
        let input = random_input(&[1, 2, 5, 5], 3);
        assert!(max_rel_diff(&run(&g, &input), &run(&s, &input)) < 1e-6);
    }

    #[test]
    fn deterministic() {
        let g = residual_block();
        let (a, ra) = simplify(&g);
        let (b, rb) = simplify(&g);
        assert_eq!(a.to_text(), b.to_text());
        assert_eq!(ra, rb);
    }
}

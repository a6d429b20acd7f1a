//! Folding of explicit scalar products by equality saturation (egg).
//!
//! A scalar product `c·x` costs a level under CKKS. ONNX graphs carry them
//! (`Mul` by a one-element constant: input scaling, folded temperature,
//! exported normalisation), and so may graphs after other rewrites. The
//! directional rules below move each scalar forward through every op that
//! commutes with it — pooling, flattening, reshaping, zero padding,
//! identities, equal-scaled residual sums, and the positively homogeneous
//! ReLU/max-pool (exact, or approximated with its bound moved:
//! `H_B(c·x) = c·H_{B/c}(x)`) — merge consecutive scalars, and let a
//! convolution or linear layer absorb a scalar on either side.
//!
//! Extraction is DAG-aware (a shared sub-computation is counted once) and
//! charges 1000 for a scalar product, 100 for any other op. The run is
//! bounded by iterations and e-nodes (never by time, so the output does not
//! depend on the machine) and deterministic (egg's
//! `deterministic` feature; payloads kept in insertion order). The result is
//! accepted only if it is valid and computes no more layers, scalar products
//! and nodes than the input; otherwise the input is returned unchanged and
//! the report says so. Range normalisation of the approximations themselves
//! is exact and needs no search: see [`super::normalize`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use egg::{
    define_language, rewrite, Analysis, Applier, DidMerge, EGraph, Id, Language, PatternAst,
    RecExpr, Rewrite, Runner, Subst, Symbol, Var,
};
use ir::{Graph, NodeId, Op, Tensor};
use serde::{Deserialize, Serialize};

use super::fold_affine::{
    absorb_input_affine, absorb_output_affine, input_channels, ChannelAffine,
};

/// Limits of one saturation run: iterations and e-nodes only, so the result
/// never depends on the machine's speed. egg's own default wall-clock limit
/// (5 s) is lifted with [`NO_TIME_LIMIT`].
const ITER_LIMIT: usize = 12;
const NODE_LIMIT: usize = 50_000;
const NO_TIME_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Bounds within this relative distance of 1 count as normalised.
const UNIT_TOLERANCE: f64 = 1e-12;

/// An f64 payload, hashed and ordered by its bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Real(u64);

impl Real {
    /// Rounds to 40 significant bits so that products reached along
    /// different paths (`6·(1/9)` and `2/3`) meet in one e-class; the
    /// rounding (2^-40 relative) is far below f32 weight precision.
    fn new(v: f64) -> Self {
        const DROP: u32 = 52 - 40;
        let bits = v.to_bits();
        let half = 1u64 << (DROP - 1);
        Real((bits + half) & !((1u64 << DROP) - 1))
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

/// Moves a positive scalar forward across a homogeneous op:
/// `(homog p (scale c x))` ⇒ `(scale c (homog p/c x))`.
struct ThroughHomog {
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
        let moved = egraph.analysis.push(homog_through(&op, c), name);
        let moved = egraph.add(Term::Payload(moved));
        let h = egraph.add(Term::Homog([moved, subst[self.x]]));
        let out = egraph.add(Term::Scale([subst[self.c], h]));
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
                let cin = input_channels(&op);
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
            "scale-through-homog",
            "(homog ?p (scale ?c ?x))"
                .parse::<egg::Pattern<Term>>()
                .expect("pattern"),
            ThroughHomog {
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
        rewrite!("factor-add"; "(add ?p (scale ?c ?x) (scale ?c ?y))" => "(scale ?c (add ?p ?x ?y))"),
    ]
}

/// The own cost of an e-node: a level (1000) for an explicit scalar
/// product; 100 for any op that computes (so duplicating work never pays);
/// 10 more for an approximated op left un-normalised; 0 for payloads.
fn own_cost(egraph: &Egraph, enode: &Term) -> f64 {
    match enode {
        Term::Scale(_) => 1000.0,
        Term::Homog([p, _]) => {
            let (op, _) = &egraph.analysis.entries[payload_in(egraph, *p).0 as usize];
            if approx_bound(op).is_some_and(|b| !is_unit(b)) {
                110.0
            } else {
                100.0
            }
        }
        Term::Num(_) | Term::Payload(_) | Term::Outputs(_) => 0.0,
        _ => 100.0,
    }
}

/// The classes a choice needs, each with its own cost.
type Deps = BTreeMap<Id, f64>;

/// A class's chosen node: total cost, the node, and what it needs.
type Choice = (f64, Term, std::rc::Rc<Deps>);

/// Greedy DAG extraction: a class's cost is the sum of the own costs of
/// every class it transitively needs, each counted once, so a term that
/// shares a sub-computation is cheaper than one that computes it twice
/// (egg's tree-cost extractor counts shared terms once per use and would
/// happily duplicate layers). Iterates to a fixed point in class-id order.
fn extract_dag(egraph: &Egraph, root: Id) -> Option<RecExpr<Term>> {
    let mut best: HashMap<Id, Choice> = HashMap::new();
    let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    classes.sort();
    loop {
        let mut changed = false;
        for &cid in &classes {
            for node in &egraph[cid].nodes {
                let children: Option<Vec<&std::rc::Rc<Deps>>> = node
                    .children()
                    .iter()
                    .map(|c| best.get(&egraph.find(*c)).map(|b| &b.2))
                    .collect();
                let Some(children) = children else { continue };
                let mut deps: Deps = Deps::new();
                for d in children {
                    for (k, v) in d.iter() {
                        deps.insert(*k, *v);
                    }
                }
                if deps.contains_key(&cid) {
                    continue; // a cycle through this class
                }
                deps.insert(cid, own_cost(egraph, node));
                let total: f64 = deps.values().sum();
                let better = best.get(&cid).is_none_or(|b| total < b.0);
                if better {
                    best.insert(cid, (total, node.clone(), std::rc::Rc::new(deps)));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Rebuild the chosen DAG as a RecExpr, children first.
    fn emit(
        egraph: &Egraph,
        best: &HashMap<Id, Choice>,
        cid: Id,
        done: &mut HashMap<Id, Id>,
        expr: &mut RecExpr<Term>,
    ) -> Option<Id> {
        let cid = egraph.find(cid);
        if let Some(&id) = done.get(&cid) {
            return Some(id);
        }
        let node = best.get(&cid)?.1.clone();
        let mut mapped = Vec::new();
        for &c in node.children() {
            mapped.push(emit(egraph, best, c, done, expr)?);
        }
        let mut it = mapped.into_iter();
        let node = node.map_children(|_| it.next().expect("child"));
        let id = expr.add(node);
        done.insert(cid, id);
        Some(id)
    }
    let mut expr = RecExpr::default();
    emit(egraph, &best, root, &mut HashMap::new(), &mut expr)?;
    Some(expr)
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
                Op::Add
                    if node.shape == graph.node(graph.operands(id)[0]).shape
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

    let runner: Runner<Term, Payloads> = Runner::new(payloads)
        .with_iter_limit(ITER_LIMIT)
        .with_node_limit(NODE_LIMIT)
        .with_time_limit(NO_TIME_LIMIT)
        .with_expr(&expr)
        .run(&rules());
    let root = runner.roots[0];
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
    let candidate = extract_dag(&runner.egraph, root)
        .and_then(|best| rebuild(graph, &best, &runner.egraph.analysis));
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
                Some(
                    g.add(g.fresh_name(name), op.clone(), &[arg(x)?, arg(y)?])
                        .ok()?,
                )
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

    #[test]
    fn a_scalar_moves_through_relu_and_pool_into_the_next_layer() {
        // x → Mul(0.25) → relu(B=2) → avgpool → conv: the scalar cannot go
        // back (x is an input) but goes forward into conv's weights, and the
        // ReLU's bound becomes 8 (it now sees unscaled inputs).
        let mut g = Graph::new("fwd");
        let x = g.add_input("x", vec![1, 2, 4, 4]).unwrap();
        let k = g.add("k", Op::Constant(Tensor::scalar(0.25)), &[]).unwrap();
        let m = g.add("quarter", Op::Mul, &[x, k]).unwrap();
        let r = g.add("relu", arelu(2.0), &[m]).unwrap();
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
                &[r],
            )
            .unwrap();
        let c = g
            .add("conv", conv(2, 3, 1, 1, Pads2d::default(), 4), &[p])
            .unwrap();
        g.set_outputs(vec![c]);
        let (s, report) = simplify(&g);
        assert!(report.accepted, "{report:?}");
        assert_eq!(scalar_products(&s), 0, "{}", s.to_text());
        let relu = s.find("relu").unwrap();
        assert!(matches!(&s.node(relu).op, Op::ApproxRelu(a) if a.bound == 8.0));
        let input = random_input(&[2, 2, 4, 4], 7);
        let d = max_rel_diff(&run(&g, &input), &run(&s, &input));
        assert!(d < 1e-6, "relative difference {d}");
    }

    #[test]
    fn residual_graphs_are_not_made_worse() {
        let mut g = Graph::new("block");
        let x = g.add_input("x", vec![1, 3, 6, 6]).unwrap();
        let c0 = g
            .add("stem", conv(3, 4, 3, 1, Pads2d::same(1), 1), &[x])
            .unwrap();
        let r0 = g.add("relu0", arelu(6.0), &[c0]).unwrap();
        let c1 = g
            .add("conv1", conv(4, 4, 3, 1, Pads2d::same(1), 2), &[r0])
            .unwrap();
        let k = g.add("k", Op::Constant(Tensor::scalar(0.5)), &[]).unwrap();
        let h = g.add("half", Op::Mul, &[c1, k]).unwrap();
        let s = g.add("add", Op::Add, &[h, r0]).unwrap();
        g.set_outputs(vec![s]);
        let (out, report) = simplify(&g);
        out.validate().unwrap();
        // The scalar is absorbed by conv1; the shared relu0 is not duplicated.
        assert!(report.accepted, "{report:?}");
        assert_eq!(scalar_products(&out), 0, "{}", out.to_text());
        assert_eq!(out.op_counts().get("Conv2d"), Some(&2));
        let input = random_input(&[1, 3, 6, 6], 2);
        assert!(max_rel_diff(&run(&g, &input), &run(&out, &input)) < 1e-6);
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
        let c = g
            .add("conv", conv(2, 3, 3, 1, Pads2d::same(1), 5), &[x])
            .unwrap();
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
        let g = crate::passes::normalize::tests_support::residual_block();
        let (a, ra) = simplify(&g);
        let (b, rb) = simplify(&g);
        assert_eq!(a.to_text(), b.to_text());
        assert_eq!(ra, rb);
    }
}

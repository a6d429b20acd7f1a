//! The tensor graph: a petgraph `StableGraph` of single-output nodes whose
//! edges carry the operand position (petgraph edges are unordered).

use crate::op::Op;
use crate::tensor::{Shape, ShapeFmt};
use crate::IrError;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

/// Stable handle of a node; survives removal of other nodes.
pub type NodeId = NodeIndex<u32>;

/// One operation and the shape of its single output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique within the graph; printed as `%name`.
    pub name: String,
    pub op: Op,
    pub shape: Shape,
}

/// An edge from a producer to a consumer: which operand of the consumer it feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand(pub usize);

/// A tensor-level dataflow graph with named inputs and ordered outputs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    graph: StableDiGraph<Node, Operand, u32>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a graph input of the given shape.
    pub fn add_input(&mut self, name: impl Into<String>, shape: Shape) -> Result<NodeId, IrError> {
        let name = name.into();
        self.check_fresh(&name)?;
        let id = self.graph.add_node(Node {
            name,
            op: Op::Input,
            shape,
        });
        self.inputs.push(id);
        Ok(id)
    }

    /// Adds a node computing `op` over `operands`; its shape is inferred and
    /// checked, so a graph built this way is always well-shaped.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        op: Op,
        operands: &[NodeId],
    ) -> Result<NodeId, IrError> {
        let name = name.into();
        self.check_fresh(&name)?;
        if matches!(op, Op::Input) {
            return Err(IrError::Invalid(format!(
                "node %{name}: inputs are added with add_input"
            )));
        }
        for &o in operands {
            if !self.graph.contains_node(o) {
                return Err(IrError::Invalid(format!(
                    "node %{name}: unknown operand {o:?}"
                )));
            }
        }
        let shapes: Vec<&[usize]> = operands.iter().map(|&o| &self.graph[o].shape[..]).collect();
        let shape = op.infer_shape(&shapes).map_err(|msg| IrError::Shape {
            node: name.clone(),
            op: op.kind(),
            msg,
        })?;
        let id = self.graph.add_node(Node { name, op, shape });
        for (i, &o) in operands.iter().enumerate() {
            self.graph.add_edge(o, id, Operand(i));
        }
        Ok(id)
    }

    fn check_fresh(&self, name: &str) -> Result<(), IrError> {
        if name.is_empty() {
            return Err(IrError::Invalid("empty node name".into()));
        }
        if self.find(name).is_some() {
            return Err(IrError::Invalid(format!("duplicate node name %{name}")));
        }
        Ok(())
    }

    /// A name not yet used in the graph, derived from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if self.find(base).is_none() {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| self.find(n).is_none())
            .expect("unbounded")
    }

    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id]
    }

    /// Mutable access to a node's op. The caller must keep the output shape
    /// unchanged (checked by [`Graph::validate`]).
    pub fn op_mut(&mut self, id: NodeId) -> &mut Op {
        &mut self.graph[id].op
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.graph.contains_node(id)
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.graph
            .node_indices()
            .find(|&i| self.graph[i].name == name)
    }

    /// The operands of `id`, in operand order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut ops: Vec<(usize, NodeId)> = self
            .graph
            .edges_directed(id, Direction::Incoming)
            .map(|e| (e.weight().0, e.source()))
            .collect();
        ops.sort();
        ops.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that read `id`, each once, in ascending id order.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let set: BTreeSet<NodeId> = self
            .graph
            .neighbors_directed(id, Direction::Outgoing)
            .collect();
        set.into_iter().collect()
    }

    /// Makes every reader of `old` (and the graph outputs) read `new` instead.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let edges: Vec<_> = self
            .graph
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (e, target, w) in edges {
            if target == new {
                continue;
            }
            self.graph.remove_edge(e);
            self.graph.add_edge(new, target, w);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, id: NodeId) {
        self.graph.remove_node(id);
        self.inputs.retain(|&i| i != id);
        self.outputs.retain(|&i| i != id);
    }

    /// Removes every node from which no output can be reached (inputs stay).
    pub fn remove_dead(&mut self) {
        let mut live: HashSet<NodeId> = HashSet::new();
        let mut stack: Vec<NodeId> = self.outputs.clone();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.graph.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<NodeId> = self
            .graph
            .node_indices()
            .filter(|n| !live.contains(n) && !self.inputs.contains(n))
            .collect();
        for n in dead {
            self.graph.remove_node(n);
        }
    }

    /// Live node ids in ascending order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.graph.node_indices().collect()
    }

    /// A topological order, deterministic: among ready nodes the one created
    /// first comes first.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut indegree: BTreeMap<NodeId, usize> = BTreeMap::new();
        for n in self.graph.node_indices() {
            indegree.insert(n, self.operands(n).len());
        }
        let mut ready: BTreeSet<NodeId> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                let d = indegree.get_mut(&e.target()).expect("node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        order
    }

    /// Checks the whole graph: acyclic, unique names, operand positions dense,
    /// every stored shape equal to the inferred one, outputs present.
    pub fn validate(&self) -> Result<(), IrError> {
        // A graph read from a file can hold edges to vacant node slots
        // (found by fuzzing): everything below assumes live endpoints.
        for e in self.graph.edge_indices() {
            let live = self
                .graph
                .edge_endpoints(e)
                .is_some_and(|(a, b)| self.graph.contains_node(a) && self.graph.contains_node(b));
            if !live {
                return Err(IrError::Invalid(format!("edge {e:?} joins a missing node")));
            }
        }
        let order = self.topo_order();
        if order.len() != self.graph.node_count() {
            return Err(IrError::Invalid("graph has a cycle".into()));
        }
        let mut names = HashSet::new();
        for &n in &order {
            let node = &self.graph[n];
            if !names.insert(node.name.as_str()) {
                return Err(IrError::Invalid(format!(
                    "duplicate node name %{}",
                    node.name
                )));
            }
            let mut ports: Vec<usize> = self
                .graph
                .edges_directed(n, Direction::Incoming)
                .map(|e| e.weight().0)
                .collect();
            ports.sort();
            if ports.iter().enumerate().any(|(i, &p)| i != p) {
                return Err(IrError::Invalid(format!(
                    "node %{}: operand positions {ports:?} are not 0..n",
                    node.name
                )));
            }
            if matches!(node.op, Op::Input) {
                if !self.inputs.contains(&n) {
                    return Err(IrError::Invalid(format!(
                        "node %{} is an Input but not a graph input",
                        node.name
                    )));
                }
                continue;
            }
            let operands = self.operands(n);
            let shapes: Vec<&[usize]> =
                operands.iter().map(|&o| &self.graph[o].shape[..]).collect();
            let inferred = node.op.infer_shape(&shapes).map_err(|msg| IrError::Shape {
                node: node.name.clone(),
                op: node.op.kind(),
                msg,
            })?;
            if inferred != node.shape {
                return Err(IrError::Shape {
                    node: node.name.clone(),
                    op: node.op.kind(),
                    msg: format!(
                        "stored shape {} but operands give {}",
                        ShapeFmt(&node.shape),
                        ShapeFmt(&inferred)
                    ),
                });
            }
        }
        if self.outputs.is_empty() {
            return Err(IrError::Invalid("graph has no outputs".into()));
        }
        for &o in self.inputs.iter().chain(&self.outputs) {
            if !self.graph.contains_node(o) {
                return Err(IrError::Invalid(format!(
                    "dangling graph input/output {o:?}"
                )));
            }
        }
        Ok(())
    }

    /// Counts of each op kind, sorted by kind.
    pub fn op_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for n in self.graph.node_indices() {
            *m.entry(self.graph[n].op.kind()).or_insert(0) += 1;
        }
        m
    }

    /// Total trainable parameters.
    pub fn param_count(&self) -> usize {
        self.graph
            .node_indices()
            .map(|n| self.graph[n].op.param_count())
            .sum()
    }

    /// The deterministic, human-readable text form used by snapshots:
    /// one line per node in topological order, weights shown as shape#digest.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(|&i| format!("%{}", self.graph[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "graph {}({}) -> ({}) {{",
            self.name,
            names(&self.inputs),
            names(&self.outputs)
        );
        for n in self.topo_order() {
            let node = &self.graph[n];
            let _ = write!(
                out,
                "  %{}: {} = {}",
                node.name,
                ShapeFmt(&node.shape),
                node.op.kind()
            );
            let operands = self.operands(n);
            if !operands.is_empty() {
                let _ = write!(out, "({})", names(&operands));
            }
            node.op.write_attrs(&mut out);
            out.push('\n');
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Conv2d, Pads2d, Pool2d};
    use crate::Tensor;

    fn tiny() -> Graph {
        let mut g = Graph::new("tiny");
        let x = g.add_input("x", vec![1, 1, 8, 8]).unwrap();
        let c = g
            .add(
                "conv",
                Op::Conv2d(Conv2d {
                    weight: Tensor::new(vec![2, 1, 3, 3], (0..18).map(|i| i as f32).collect())
                        .unwrap(),
                    bias: Some(Tensor::zeros(vec![2])),
                    stride: [1, 1],
                    pads: Pads2d::same(1),
                    dilation: [1, 1],
                    group: 1,
                }),
                &[x],
            )
            .unwrap();
        let r = g.add("relu", Op::Relu, &[c]).unwrap();
        let p = g
            .add(
                "pool",
                Op::MaxPool(Pool2d {
                    kernel: [2, 2],
                    stride: [2, 2],
                    pads: Pads2d::default(),
                }),
                &[r],
            )
            .unwrap();
        let s = g.add("skip", Op::Add, &[p, p]).unwrap();
        g.set_outputs(vec![s]);
        g
    }

    #[test]
    fn builds_validates_and_prints() {
        let g = tiny();
        g.validate().unwrap();
        let text = g.to_text();
        assert!(text.contains("%pool: f32[1,2,4,4] = MaxPool(%relu) kernel=2x2 stride=2x2"));
        assert!(text.contains("%skip: f32[1,2,4,4] = Add(%pool, %pool)"));
        assert_eq!(g.param_count(), 20);
    }

    #[test]
    fn serde_round_trip_keeps_text() {
        let g = tiny();
        let json = serde_json::to_string(&g).unwrap();
        let back: Graph = serde_json::from_str(&json).unwrap();
        back.validate().unwrap();
        assert_eq!(g.to_text(), back.to_text());
    }

    #[test]
    fn operand_order_is_kept() {
        let mut g = Graph::new("order");
        let a = g.add_input("a", vec![1, 4]).unwrap();
        let b = g.add_input("b", vec![1, 4]).unwrap();
        let s = g.add("s", Op::Add, &[b, a]).unwrap();
        assert_eq!(g.operands(s), vec![b, a]);
    }

    #[test]
    fn bad_shapes_name_the_node() {
        let mut g = Graph::new("bad");
        let a = g.add_input("a", vec![1, 4]).unwrap();
        let b = g.add_input("b", vec![1, 5]).unwrap();
        let err = g.add("sum", Op::Add, &[a, b]).unwrap_err().to_string();
        assert!(err.contains("%sum") && err.contains("Add"), "{err}");
        assert!(
            g.add("a", Op::Relu, &[a]).is_err(),
            "duplicate names refused"
        );
    }

    #[test]
    fn replace_and_remove_dead() {
        let mut g = tiny();
        let relu = g.find("relu").unwrap();
        let conv = g.find("conv").unwrap();
        g.replace_uses(relu, conv);
        g.remove_dead();
        assert!(g.find("relu").is_none());
        g.validate().unwrap();
        assert!(g.to_text().contains("MaxPool(%conv)"));
    }
}

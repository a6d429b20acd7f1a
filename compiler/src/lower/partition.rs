//! Splitting the approximated tensor graph into linear regions and the
//! non-linear ops between them.

use ir::circuit::linear::is_linear;
use ir::{Graph, NodeId, Op};
use std::collections::{BTreeMap, BTreeSet};

use super::LowerError;

/// One linear region of the tensor graph.
#[derive(Clone, Debug)]
pub struct RegionDef {
    /// Member nodes (linear ops, constants excluded), topological order.
    pub members: Vec<NodeId>,
    /// Tensor values the region reads (graph inputs or non-linear outputs).
    pub inputs: Vec<NodeId>,
    /// Members read outside the region (or graph outputs).
    pub outputs: Vec<NodeId>,
    /// The region as a graph of its own: inputs first, then the members.
    pub graph: Graph,
    pub name: String,
}

/// What the lowering sees: regions, and the non-linear nodes in order.
pub struct Partition {
    pub regions: Vec<RegionDef>,
    /// Tensor value → (region, output index) for region outputs.
    pub region_output: BTreeMap<NodeId, (usize, usize)>,
    /// Every node that produces a ciphertext value, topological order:
    /// graph inputs, region outputs, non-linear ops.
    pub values: Vec<NodeId>,
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.0[r] != r {
            r = self.0[r];
        }
        self.0[i] = r;
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// The ops the lowering implements outside linear regions.
fn is_nonlinear(op: &Op) -> bool {
    matches!(op, Op::ApproxRelu(_) | Op::ApproxMaxPool(_))
}

pub fn partition(graph: &Graph) -> Result<Partition, LowerError> {
    let order = graph.topo_order();
    for &n in &order {
        let node = graph.node(n);
        match &node.op {
            Op::Input => {}
            Op::Relu | Op::MaxPool(_) => {
                return Err(LowerError::Unsupported {
                    node: node.name.clone(),
                    msg: format!(
                        "{} must be replaced by its polynomial approximation first (compile with --alpha)",
                        node.op.kind()
                    ),
                })
            }
            op if is_linear(op) || is_nonlinear(op) => {}
            op => {
                return Err(LowerError::Unsupported {
                    node: node.name.clone(),
                    msg: format!("{} has no ciphertext lowering", op.kind()),
                })
            }
        }
    }
    let index: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let linear = |n: NodeId| {
        let op = &graph.node(n).op;
        is_linear(op) && !matches!(op, Op::Constant(_))
    };
    let mut uf = UnionFind((0..order.len()).collect());
    for &n in &order {
        if linear(n) {
            for o in graph.operands(n) {
                if linear(o) {
                    uf.union(index[&n], index[&o]);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
    for &n in &order {
        if linear(n) {
            groups.entry(uf.find(index[&n])).or_default().push(n);
        }
    }
    let outputs_of_graph: BTreeSet<NodeId> = graph.outputs().iter().copied().collect();
    let mut regions = Vec::new();
    let mut region_output = BTreeMap::new();
    for members in groups.into_values() {
        let set: BTreeSet<NodeId> = members.iter().copied().collect();
        let mut inputs = Vec::new();
        for &m in &members {
            for o in graph.operands(m) {
                if !set.contains(&o)
                    && !matches!(graph.node(o).op, Op::Constant(_))
                    && !inputs.contains(&o)
                {
                    inputs.push(o);
                }
            }
        }
        let outputs: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&m| {
                outputs_of_graph.contains(&m) || graph.users(m).iter().any(|u| !set.contains(u))
            })
            .collect();
        if inputs.is_empty() {
            return Err(LowerError::Unsupported {
                node: graph.node(members[0]).name.clone(),
                msg: "a linear region that reads no input (a constant output) is not supported"
                    .into(),
            });
        }
        let name = graph.node(outputs[0]).name.clone();
        let mut g = Graph::new(&name);
        let mut map: BTreeMap<NodeId, NodeId> = BTreeMap::new();
        for &i in &inputs {
            let n = graph.node(i);
            let id = g
                .add_input(format!("in:{}", n.name), n.shape.clone())
                .map_err(|e| LowerError::Internal(e.to_string()))?;
            map.insert(i, id);
        }
        for &m in &members {
            let node = graph.node(m);
            let mut ops = Vec::new();
            for o in graph.operands(m) {
                if let Some(&id) = map.get(&o) {
                    ops.push(id);
                } else if let Op::Constant(_) = graph.node(o).op {
                    let c = graph.node(o);
                    let id = g
                        .add(g.fresh_name(&c.name), c.op.clone(), &[])
                        .map_err(|e| LowerError::Internal(e.to_string()))?;
                    ops.push(id);
                } else {
                    return Err(LowerError::Internal(format!(
                        "operand of %{} outside its region",
                        node.name
                    )));
                }
            }
            let id = g
                .add(node.name.clone(), node.op.clone(), &ops)
                .map_err(|e| LowerError::Internal(e.to_string()))?;
            map.insert(m, id);
        }
        g.set_outputs(outputs.iter().map(|o| map[o]).collect());
        let r = regions.len();
        for (k, &o) in outputs.iter().enumerate() {
            region_output.insert(o, (r, k));
        }
        regions.push(RegionDef {
            members,
            inputs,
            outputs,
            graph: g,
            name,
        });
    }
    let values: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&n| {
            matches!(graph.node(n).op, Op::Input)
                || is_nonlinear(&graph.node(n).op)
                || region_output.contains_key(&n)
        })
        .collect();
    for &o in graph.outputs() {
        if matches!(graph.node(o).op, Op::Input) {
            return Err(LowerError::Unsupported {
                node: graph.node(o).name.clone(),
                msg: "the output is the input: nothing to compute".into(),
            });
        }
    }
    Ok(Partition {
        regions,
        region_output,
        values,
    })
}

//! Executing circuits: the [`Backend`] trait and the executor over it.
//!
//! A backend implements the ciphertext operations of [`ir::circuit::Op`];
//! [`execute`] walks a circuit's nodes in order, hands each backend call the
//! plaintext data it needs (diagonals, biases, masks, regenerated from the
//! circuit's regions by [`Prepared`]), frees every value after its last use,
//! and checks after every node that the backend's result has exactly the
//! level and scale the circuit records, so a backend and the lowering can
//! never silently disagree. The simulation backend ([`crate::simulate`])
//! and the CKKS backend run the same circuits through this executor.

use ir::circuit::{Bsgs, Circuit, Op, Plain, TransformSpec};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a backend refused an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A failure while executing a circuit, naming the node and its layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node %{node} ({op}) in layer {layer}: {msg}")]
pub struct ExecError {
    pub node: usize,
    pub op: &'static str,
    pub layer: String,
    pub msg: String,
}

/// The ciphertext operations a backend provides. Levels and scales follow
/// the rules of [`ir::circuit::infer`]; the executor checks them.
pub trait Backend: Sync {
    type Ct: Send + Sync;

    fn level(&self, a: &Self::Ct) -> u32;
    fn scale(&self, a: &Self::Ct) -> f64;

    fn add(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, BackendError>;
    fn sub(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, BackendError>;
    fn neg(&self, a: &Self::Ct) -> Result<Self::Ct, BackendError>;
    fn add_const(&self, a: &Self::Ct, c: f64) -> Result<Self::Ct, BackendError>;
    /// Adds slot values `plain` (encoded at `a`'s scale).
    fn add_plain(&self, a: &Self::Ct, plain: &[f64]) -> Result<Self::Ct, BackendError>;
    fn mul_const(&self, a: &Self::Ct, c: f64, scale: f64) -> Result<Self::Ct, BackendError>;
    fn mul_int(&self, a: &Self::Ct, k: i64) -> Result<Self::Ct, BackendError>;
    fn mul_plain(&self, a: &Self::Ct, plain: &[f64], scale: f64) -> Result<Self::Ct, BackendError>;
    fn mul(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, BackendError>;
    fn relabel(&self, a: &Self::Ct, factor: f64) -> Result<Self::Ct, BackendError>;
    fn rotate(&self, a: &Self::Ct, k: u64) -> Result<Self::Ct, BackendError>;
    fn rescale(&self, a: &Self::Ct) -> Result<Self::Ct, BackendError>;
    fn drop_level(&self, a: &Self::Ct, level: u32) -> Result<Self::Ct, BackendError>;
    fn bootstrap(&self, a: &Self::Ct) -> Result<Self::Ct, BackendError>;
    /// `Σ_g rot_g(Σ_b diagonals[g][b] ⊙ rot_b(inputs[ct_b]))`, then the
    /// fold `(step, count)` if any; diagonals encoded at `scale`.
    fn linear_transform(
        &self,
        inputs: &[&Self::Ct],
        program: &Bsgs,
        diagonals: &NodeDiagonals,
        fold: Option<(usize, usize)>,
        scale: f64,
    ) -> Result<Self::Ct, BackendError>;
}

/// Slots per tile of [`NodeDiagonals::nonzero_tiles`].
pub const DIAGONAL_TILE: usize = 1024;

/// The pre-rotated diagonals of one linear transform node: per giant step,
/// per baby, the slot values, and which tiles of [`DIAGONAL_TILE`] slots
/// hold a nonzero value (bit `t` of the mask; multiplexed layouts leave
/// whole blocks of a ciphertext empty, which a cleartext backend skips).
pub struct NodeDiagonals {
    pub values: Vec<Vec<Vec<f64>>>,
    pub nonzero_tiles: Vec<Vec<u64>>,
}

impl NodeDiagonals {
    fn new(values: Vec<Vec<Vec<f64>>>) -> Self {
        let nonzero_tiles = values
            .iter()
            .map(|g| {
                g.iter()
                    .map(|d| {
                        d.chunks(DIAGONAL_TILE)
                            .enumerate()
                            .filter(|(_, c)| c.iter().any(|&v| v != 0.0))
                            .fold(0u64, |m, (t, _)| m | (1u64 << t.min(63)))
                    })
                    .collect()
            })
            .collect();
        NodeDiagonals {
            values,
            nonzero_tiles,
        }
    }

    pub fn bytes(&self) -> usize {
        self.values.iter().flatten().map(|v| v.len() * 8).sum()
    }
}

/// A circuit with its plaintext data, generated once and shared by every
/// execution (diagonals of each linear transform node, biases, masks).
pub struct Prepared {
    pub circuit: Circuit,
    plains: Vec<Arc<Vec<f64>>>,
    diagonals: Mutex<HashMap<usize, Arc<NodeDiagonals>>>,
    /// Keep every node's diagonals once generated (else regenerate per use).
    pub cache_diagonals: bool,
}

impl Prepared {
    /// Generates the plaintext vectors; diagonals are made on first use (or
    /// all at once with [`Prepared::generate_all`]).
    pub fn new(circuit: Circuit) -> Result<Self, String> {
        let plains = circuit
            .plains
            .par_iter()
            .map(|p| plain_slots(&circuit, p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            circuit,
            plains,
            diagonals: Mutex::new(HashMap::new()),
            cache_diagonals: true,
        })
    }

    /// Generates and caches the diagonals of every linear transform node
    /// (in parallel); returns their total size in bytes.
    pub fn generate_all(&self) -> Result<usize, String> {
        let nodes: Vec<usize> = self
            .circuit
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op, Op::LinearTransform { .. }))
            .map(|(i, _)| i)
            .collect();
        let made: Vec<(usize, Arc<NodeDiagonals>)> = nodes
            .par_iter()
            .map(|&i| {
                self.make_diagonals(i)
                    .map(|d| (i, Arc::new(NodeDiagonals::new(d))))
            })
            .collect::<Result<_, _>>()?;
        let mut bytes = 0;
        let mut cache = self.diagonals.lock().expect("diagonal cache");
        for (i, d) in made {
            bytes += d.bytes();
            cache.insert(i, d);
        }
        Ok(bytes)
    }

    fn make_diagonals(&self, node: usize) -> Result<Vec<Vec<Vec<f64>>>, String> {
        let c = &self.circuit;
        let Op::LinearTransform {
            region,
            output,
            input,
            ct,
            ..
        } = &c.nodes[node].op
        else {
            return Err("not a linear transform".into());
        };
        let r = &c.regions[*region as usize];
        let o = &r.outputs[*output as usize];
        let t = o.transforms[*input as usize]
            .as_ref()
            .ok_or("the output does not read this input")?;
        let spec = TransformSpec {
            region: r,
            output: *output as usize,
            input: *input as usize,
            in_layout: &c.layouts[r.inputs[*input as usize] as usize],
            out_layout: &c.layouts[o.layout as usize],
            method: t.method,
        };
        let program = &t.per_ct[*ct as usize];
        spec.bsgs_diagonals(*ct as usize, program)
            .map_err(|e| format!("region {}: {e}", r.name))
    }

    /// The pre-rotated diagonals of linear transform node `node`.
    pub fn diagonals(&self, node: usize) -> Result<Arc<NodeDiagonals>, String> {
        if let Some(d) = self.diagonals.lock().expect("diagonal cache").get(&node) {
            return Ok(d.clone());
        }
        let d = Arc::new(NodeDiagonals::new(self.make_diagonals(node)?));
        if self.cache_diagonals {
            self.diagonals
                .lock()
                .expect("diagonal cache")
                .insert(node, d.clone());
        }
        Ok(d)
    }

    pub fn plain(&self, i: u32) -> &[f64] {
        &self.plains[i as usize]
    }
}

/// The slot values of plaintext `p`.
pub fn plain_slots(c: &Circuit, p: &Plain) -> Result<Vec<f64>, String> {
    match p {
        Plain::Bias { region, output, ct } => {
            let r = &c.regions[*region as usize];
            let l = &c.layouts[r.outputs[*output as usize].layout as usize];
            let b = ir::circuit::linear::bias_slots(r, *output as usize, l)?;
            Ok(b.into_iter()
                .nth(*ct as usize)
                .unwrap_or_else(|| vec![0.0; l.slots()]))
        }
        Plain::Mask { layout, ct, value } => {
            let l = &c.layouts[*layout as usize];
            Ok(l.occupied()[*ct as usize]
                .iter()
                .map(|&o| if o { *value } else { 0.0 })
                .collect())
        }
    }
}

/// For each node, the index of the last node that reads it (outputs: never freed).
fn last_uses(c: &Circuit) -> Vec<usize> {
    let mut last = vec![0usize; c.nodes.len()];
    for (i, n) in c.nodes.iter().enumerate() {
        for v in n.op.operands() {
            last[v.index()] = i;
        }
    }
    for v in &c.output.values {
        last[v.index()] = usize::MAX;
    }
    last
}

/// Progress of an execution, reported after every node.
pub trait Progress {
    fn node_done(&self, _node: usize, _total: usize, _layer: &str) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

/// Runs `prepared`'s circuit on `backend` with the encrypted input
/// ciphertexts `inputs` (in layout order); returns the output ciphertexts.
pub fn execute<B: Backend>(
    backend: &B,
    prepared: &Prepared,
    inputs: Vec<B::Ct>,
    progress: &dyn Progress,
) -> Result<Vec<B::Ct>, ExecError> {
    let c = &prepared.circuit;
    let want = c.layouts[c.input.layout as usize].cts();
    let err = |i: usize, msg: String| ExecError {
        node: i,
        op: c.nodes.get(i).map_or("input", |n| n.op.name()),
        layer: c
            .nodes
            .get(i)
            .map_or_else(String::new, |n| c.layers[n.layer as usize].name.clone()),
        msg,
    };
    if inputs.len() != want {
        return Err(err(
            0,
            format!(
                "{} input ciphertexts, the circuit takes {want}",
                inputs.len()
            ),
        ));
    }
    let mut inputs: Vec<Option<B::Ct>> = inputs.into_iter().map(Some).collect();
    let last = last_uses(c);
    let mut values: Vec<Option<B::Ct>> = (0..c.nodes.len()).map(|_| None).collect();
    for (i, node) in c.nodes.iter().enumerate() {
        let get = |v: ir::circuit::ValueId| -> Result<&B::Ct, ExecError> {
            values[v.index()]
                .as_ref()
                .ok_or_else(|| err(i, format!("%{} is not available", v.0)))
        };
        let be = |r: Result<B::Ct, BackendError>| r.map_err(|e| err(i, e.0));
        let out = match &node.op {
            Op::Input { ct } => inputs
                .get_mut(*ct as usize)
                .and_then(Option::take)
                .ok_or_else(|| err(i, format!("input ciphertext {ct} read twice")))?,
            Op::Add { a, b } => be(backend.add(get(*a)?, get(*b)?))?,
            Op::Sub { a, b } => be(backend.sub(get(*a)?, get(*b)?))?,
            Op::Neg { a } => be(backend.neg(get(*a)?))?,
            Op::AddConst { a, c } => be(backend.add_const(get(*a)?, *c))?,
            Op::AddPlain { a, plain } => be(backend.add_plain(get(*a)?, prepared.plain(*plain)))?,
            Op::MulConst { a, c, scale } => be(backend.mul_const(get(*a)?, *c, *scale))?,
            Op::MulInt { a, k } => be(backend.mul_int(get(*a)?, *k))?,
            Op::MulPlain { a, plain, scale } => {
                be(backend.mul_plain(get(*a)?, prepared.plain(*plain), *scale))?
            }
            Op::Mul { a, b } => be(backend.mul(get(*a)?, get(*b)?))?,
            Op::Relabel { a, factor } => be(backend.relabel(get(*a)?, *factor))?,
            Op::Rotate { a, k } => be(backend.rotate(get(*a)?, *k))?,
            Op::Rescale { a } => be(backend.rescale(get(*a)?))?,
            Op::DropLevel { a, level } => be(backend.drop_level(get(*a)?, *level))?,
            Op::Bootstrap { a } => be(backend.bootstrap(get(*a)?))?,
            Op::LinearTransform {
                inputs: ins,
                region,
                output,
                input,
                ct,
                scale,
            } => {
                let o = &c.regions[*region as usize].outputs[*output as usize];
                let t = o.transforms[*input as usize]
                    .as_ref()
                    .ok_or_else(|| err(i, "the output does not read this input".into()))?;
                let program = &t.per_ct[*ct as usize];
                let diagonals = prepared.diagonals(i).map_err(|e| err(i, e))?;
                let fold = t.fold();
                let args = ins.iter().map(|&v| get(v)).collect::<Result<Vec<_>, _>>()?;
                be(backend.linear_transform(&args, program, &diagonals, fold, *scale))?
            }
            Op::Reinterpret { a, .. } => {
                // Free: the same ciphertext, now declared to hold a layout.
                let v = values[a.index()]
                    .take()
                    .ok_or_else(|| err(i, format!("%{} is not available", a.0)))?;
                if last[a.index()] != i {
                    // Still read later: keep a copy under the old name too.
                    let copy = be(backend.relabel(&v, 1.0))?;
                    values[a.index()] = Some(v);
                    copy
                } else {
                    v
                }
            }
        };
        let (l, s) = (backend.level(&out), backend.scale(&out));
        if l != node.level || !ir::circuit::scales_match(s, node.scale) {
            return Err(err(
                i,
                format!(
                    "the backend gives level {l} scale 2^{:.9}, the circuit records level {} scale 2^{:.9}",
                    s.log2(),
                    node.level,
                    node.scale.log2()
                ),
            ));
        }
        values[i] = Some(out);
        for v in node.op.operands() {
            if last[v.index()] == i {
                values[v.index()] = None;
            }
        }
        progress.node_done(i, c.nodes.len(), &c.layers[node.layer as usize].name);
    }
    c.output
        .values
        .iter()
        .map(|v| {
            values[v.index()]
                .take()
                .ok_or_else(|| err(v.index(), "output value missing".into()))
        })
        .collect()
}

//! Linear regions and their diagonals.
//!
//! Every maximal group of linear tensor ops between two non-linear ops
//! (convolutions, pooling, fully connected layers, batch-norm leftovers,
//! per-channel scalings, padding, reshapes, concatenations and residual
//! sums) is one *region*: a small tensor graph ([`crate::Graph`]) whose
//! `Input` nodes are the region's inputs. Each region output is an affine
//! function of the inputs, `y = Σ_i A_i·x_i + b`, and each `A_i` becomes one
//! linear transform on ciphertexts: one level, masks and scalings folded
//! into its diagonals.
//!
//! The diagonals are not stored: they are regenerated from the region's
//! weights and the input and output [`Layout`]s by this module, the same
//! code for the compiler (which only needs their index sets, to plan the
//! baby-step giant-step split and the rotation keys) and for the backends
//! (which need their values). So a circuit file holds the weights once, as
//! compact as the model itself.
//!
//! Two forms:
//! * [`Method::Diagonal`]: the exact matrix from input slots to output slots,
//!   `M·v = Σ_k diag_k ⊙ rot_k(v)` with `diag_k[t] = M[t][t+k]`; a
//!   convolution on a multiplexed layout has few distinct `k`.
//! * [`Method::Fold`]: for outputs of a fully connected map into a vector
//!   replicated every `m'` slots (Juvekar et al.'s hybrid method): `m'`
//!   diagonals, then `log2(P/m')` rotate-and-add steps fold the partial sums
//!   (`P` the input's period), whatever the input layout.

use super::layout::Layout;
use crate::{Graph, NodeId, Op};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How a region output's transforms are organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Diagonal,
    /// `diagonals` diagonals, then `log2(count)` folds by multiples of `step`.
    Fold {
        step: usize,
        count: usize,
    },
}

/// One giant step: rotate the sum of the baby products by `shift`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Giant {
    pub shift: u64,
    /// `(input ciphertext, baby rotation)`: diagonal `shift + baby` of that
    /// input ciphertext's block.
    pub babies: Vec<(u32, u64)>,
}

/// The baby-step giant-step program for one output ciphertext.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bsgs {
    pub giants: Vec<Giant>,
}

impl Bsgs {
    /// Distinct nonzero baby rotations per input ciphertext and giant shifts.
    pub fn rotations(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let babies = self
            .giants
            .iter()
            .flat_map(|g| g.babies.iter().map(|&(_, b)| b))
            .filter(|&b| b != 0)
            .collect();
        let giants = self
            .giants
            .iter()
            .map(|g| g.shift)
            .filter(|&s| s != 0)
            .collect();
        (babies, giants)
    }

    /// Plaintext products (diagonals).
    pub fn products(&self) -> usize {
        self.giants.iter().map(|g| g.babies.len()).sum()
    }

    /// Baby rotations computed (distinct `(input ct, baby)` pairs, nonzero).
    pub fn baby_rotations(&self) -> usize {
        self.giants
            .iter()
            .flat_map(|g| g.babies.iter().copied())
            .filter(|&(_, b)| b != 0)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Giant rotations computed.
    pub fn giant_rotations(&self) -> usize {
        self.giants.iter().filter(|g| g.shift != 0).count()
    }
}

/// The transform from one region input to one region output: its method
/// (the fold depends on the input's period) and a program per output
/// ciphertext.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    pub method: Method,
    pub per_ct: Vec<Bsgs>,
}

impl Transform {
    /// The fold `(step, count)`, if the method has one.
    pub fn fold(&self) -> Option<(usize, usize)> {
        match self.method {
            Method::Diagonal => None,
            Method::Fold { step, count } => Some((step, count)),
        }
    }

    /// Rotations of the fold (by `step·2^i`).
    pub fn fold_rotations(&self) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some((step, count)) = self.fold() {
            let mut s = step;
            while s < step * count {
                out.push(s as u64);
                s *= 2;
            }
        }
        out
    }
}

/// One output of a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionOutput {
    /// Index into the circuit's layouts.
    pub layout: u32,
    /// One per region input (`None`: the output does not depend on it).
    pub transforms: Vec<Option<Transform>>,
}

/// A linear region: its tensor graph, the layouts of its inputs and outputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub graph: Graph,
    /// Layout index of each region input (the graph's inputs, in order).
    pub inputs: Vec<u32>,
    pub outputs: Vec<RegionOutput>,
}

/// One row of an affine map: `(input, element, weight)` terms and a constant.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub terms: Vec<(usize, usize, f64)>,
    pub bias: f64,
}

/// The affine maps of a region graph, row by row.
pub struct AffineMap<'a> {
    graph: &'a Graph,
    input_index: BTreeMap<NodeId, usize>,
}

fn unravel(mut e: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        idx[a] = e % shape[a].max(1);
        e /= shape[a].max(1);
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The operand element an output element reads under numpy broadcasting.
fn broadcast_elem(e: usize, out: &[usize], operand: &[usize]) -> usize {
    let idx = unravel(e, out);
    let off = out.len() - operand.len();
    let oidx: Vec<usize> = operand
        .iter()
        .enumerate()
        .map(|(a, &d)| if d == 1 { 0 } else { idx[a + off] })
        .collect();
    ravel(&oidx, operand)
}

impl<'a> AffineMap<'a> {
    pub fn new(graph: &'a Graph) -> Self {
        let input_index = graph
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        AffineMap { graph, input_index }
    }

    /// Row `elem` of node `node` as a function of the region inputs,
    /// restricted to input `only` when given (the constant is then still the
    /// full constant).
    pub fn row(&self, node: NodeId, elem: usize, only: Option<usize>) -> Result<Row, String> {
        let mut row = Row::default();
        self.expand(node, elem, 1.0, only, &mut row)?;
        Ok(row)
    }

    /// The constant tensor a node evaluates to, if it depends on no input.
    fn constant(&self, node: NodeId) -> Option<&'a crate::Tensor> {
        match &self.graph.node(node).op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }

    fn expand(
        &self,
        node: NodeId,
        elem: usize,
        w: f64,
        only: Option<usize>,
        row: &mut Row,
    ) -> Result<(), String> {
        let g = self.graph;
        let n = g.node(node);
        let shape = &n.shape;
        let operands = g.operands(node);
        let arg_shape = |k: usize| &g.node(operands[k]).shape;
        match &n.op {
            Op::Input => {
                let i = self.input_index[&node];
                if only.is_none_or(|o| o == i) {
                    row.terms.push((i, elem, w));
                }
            }
            Op::Constant(t) => row.bias += w * t.data[elem] as f64,
            Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } => {
                self.expand(operands[0], elem, w, only, row)?
            }
            Op::Conv2d(c) => {
                let xs = arg_shape(0);
                let (cin, h, wd) = (xs[1], xs[2], xs[3]);
                let (oh, ow) = (shape[2], shape[3]);
                let o = elem / (oh * ow);
                let (i, j) = ((elem / ow) % oh, elem % ow);
                let [kh, kw] = c.kernel();
                let per_group_in = cin / c.group;
                let per_group_out = c.out_channels() / c.group;
                let g0 = (o / per_group_out) * per_group_in;
                for ci in 0..per_group_in {
                    for ky in 0..kh {
                        let iy =
                            (i * c.stride[0] + ky * c.dilation[0]) as isize - c.pads.top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (j * c.stride[1] + kx * c.dilation[1]) as isize
                                - c.pads.left as isize;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            let wt = c.weight.data[((o * per_group_in + ci) * kh + ky) * kw + kx];
                            if wt == 0.0 {
                                continue;
                            }
                            let e = ((g0 + ci) * h + iy as usize) * wd + ix as usize;
                            self.expand(operands[0], e, w * wt as f64, only, row)?;
                        }
                    }
                }
                if let Some(b) = &c.bias {
                    row.bias += w * b.data[o] as f64;
                }
            }
            Op::BatchNorm(bn) => {
                let (a, b) = bn.affine();
                let per = shape[2..].iter().product::<usize>().max(1);
                let c = (elem / per) % shape[1];
                row.bias += w * b[c];
                self.expand(operands[0], elem, w * a[c], only, row)?;
            }
            Op::AveragePool {
                pool,
                count_include_pad,
            } => {
                let xs = arg_shape(0);
                let (h, wd) = (xs[2], xs[3]);
                let (oh, ow) = (shape[2], shape[3]);
                let c = elem / (oh * ow);
                let (i, j) = ((elem / ow) % oh, elem % ow);
                let mut taps = Vec::new();
                for ky in 0..pool.kernel[0] {
                    let iy = (i * pool.stride[0] + ky) as isize - pool.pads.top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..pool.kernel[1] {
                        let ix = (j * pool.stride[1] + kx) as isize - pool.pads.left as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        taps.push((c * h + iy as usize) * wd + ix as usize);
                    }
                }
                let div = if *count_include_pad {
                    pool.kernel[0] * pool.kernel[1]
                } else {
                    taps.len()
                };
                for e in taps {
                    self.expand(operands[0], e, w / div as f64, only, row)?;
                }
            }
            Op::GlobalAveragePool => {
                let xs = arg_shape(0);
                let hw = xs[2] * xs[3];
                for k in 0..hw {
                    self.expand(operands[0], elem * hw + k, w / hw as f64, only, row)?;
                }
            }
            Op::Linear(l) => {
                let k_in = l.weight.shape[1];
                let r = elem % l.weight.shape[0];
                let base = (elem / l.weight.shape[0]) * k_in;
                for k in 0..k_in {
                    let wt = l.weight.data[r * k_in + k];
                    if wt != 0.0 {
                        self.expand(operands[0], base + k, w * wt as f64, only, row)?;
                    }
                }
                if let Some(b) = &l.bias {
                    row.bias += w * b.data[r] as f64;
                }
            }
            Op::Add => {
                for (k, &o) in operands.iter().enumerate() {
                    let e = broadcast_elem(elem, shape, arg_shape(k));
                    self.expand(o, e, w, only, row)?;
                }
            }
            Op::Mul => {
                let (ci, xi) = match (self.constant(operands[0]), self.constant(operands[1])) {
                    (Some(_), _) => (0, 1),
                    (_, Some(_)) => (1, 0),
                    _ => {
                        return Err(format!(
                            "node %{}: a product of two computed tensors is not linear",
                            n.name
                        ))
                    }
                };
                let t = self.constant(operands[ci]).expect("constant");
                let v = t.data[broadcast_elem(elem, shape, arg_shape(ci))] as f64;
                let e = broadcast_elem(elem, shape, arg_shape(xi));
                if v != 0.0 {
                    self.expand(operands[xi], e, w * v, only, row)?;
                }
            }
            Op::Concat { axis } => {
                let idx = unravel(elem, shape);
                let mut off = 0;
                for (k, &o) in operands.iter().enumerate() {
                    let s = arg_shape(k);
                    if idx[*axis] < off + s[*axis] {
                        let mut sub = idx.clone();
                        sub[*axis] -= off;
                        return self.expand(o, ravel(&sub, s), w, only, row);
                    }
                    off += s[*axis];
                }
                unreachable!("concat index inside the output");
            }
            Op::Pad { pads, value } => {
                let xs = arg_shape(0);
                let (h, wd) = (xs[2], xs[3]);
                let (ph, pw) = (shape[2], shape[3]);
                let c = elem / (ph * pw);
                let (i, j) = ((elem / pw) % ph, elem % pw);
                let (iy, ix) = (
                    i as isize - pads.top as isize,
                    j as isize - pads.left as isize,
                );
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                    let e = (c * h + iy as usize) * wd + ix as usize;
                    self.expand(operands[0], e, w, only, row)?;
                } else {
                    row.bias += w * *value as f64;
                }
            }
            other => {
                return Err(format!(
                    "node %{} ({}) is not linear and cannot be part of a linear region",
                    n.name,
                    other.kind()
                ))
            }
        }
        Ok(())
    }
}

/// The op kinds a region may hold.
pub fn is_linear(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2d(_)
            | Op::BatchNorm(_)
            | Op::AveragePool { .. }
            | Op::GlobalAveragePool
            | Op::Linear(_)
            | Op::Add
            | Op::Mul
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Identity
            | Op::Constant(_)
    )
}

/// What one output ciphertext of a transform reads: per input ciphertext,
/// the diagonals by index (values when `values` was asked for).
pub type BlockDiagonals = BTreeMap<usize, BTreeMap<u64, Vec<f64>>>;

/// Everything needed to generate one transform's diagonals.
pub struct TransformSpec<'a> {
    pub region: &'a Region,
    pub output: usize,
    pub input: usize,
    pub in_layout: &'a Layout,
    pub out_layout: &'a Layout,
    pub method: Method,
}

impl TransformSpec<'_> {
    fn out_node(&self) -> NodeId {
        self.region.graph.outputs()[self.output]
    }

    /// Visits every nonzero matrix entry feeding output ciphertext `ct_out`:
    /// `(input ct, diagonal index, output slot, weight)`.
    fn for_each_entry(
        &self,
        ct_out: usize,
        mut f: impl FnMut(usize, u64, usize, f64),
    ) -> Result<(), String> {
        let map = AffineMap::new(&self.region.graph);
        let node = self.out_node();
        let n = self.out_layout.slots();
        let nin = self.in_layout.slots();
        if n != nin {
            return Err("input and output layouts have different slot counts".into());
        }
        for e in 0..self.out_layout.len() {
            let copies: Vec<(usize, usize)> = match self.method {
                Method::Diagonal => self
                    .out_layout
                    .copies(e)
                    .filter(|&(c, _)| c == ct_out)
                    .collect(),
                Method::Fold { .. } => {
                    let (c, s) = self.out_layout.slot(e);
                    if c == ct_out {
                        vec![(c, s)]
                    } else {
                        vec![]
                    }
                }
            };
            if copies.is_empty() {
                continue;
            }
            let row = map.row(node, e, Some(self.input))?;
            for &(in_idx, in_elem, w) in &row.terms {
                debug_assert_eq!(in_idx, self.input);
                let (ct_in, s_in) = self.in_layout.slot(in_elem);
                for &(_, s_out) in &copies {
                    match self.method {
                        Method::Diagonal => {
                            let k = ((s_in + n - s_out) % n) as u64;
                            f(ct_in, k, s_out, w);
                        }
                        Method::Fold { step, count } => {
                            // z[t] = Σ_k D_k[t]·x[t+k] folded over `count`
                            // shifts by `step`: input slot s_in reaches output
                            // s_out through t = s_out + j·step, k < step.
                            let period = step * count;
                            let d = (s_in % period + period - s_out % period) % period;
                            let (j, k) = (d / step, d % step);
                            let t = s_out + j * step;
                            // D is periodic with the input's period.
                            for r in 0..n / period {
                                f(ct_in, k as u64, (t + r * period) % n, w);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The nonzero diagonal indices per input ciphertext, for output `ct_out`.
    pub fn structure(&self, ct_out: usize) -> Result<BTreeMap<usize, BTreeSet<u64>>, String> {
        let mut out: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
        self.for_each_entry(ct_out, |ct, k, _, _| {
            out.entry(ct).or_default().insert(k);
        })?;
        Ok(out)
    }

    /// The diagonals with their values, for output `ct_out`.
    pub fn diagonals(&self, ct_out: usize) -> Result<BlockDiagonals, String> {
        let n = self.out_layout.slots();
        let mut out: BlockDiagonals = BTreeMap::new();
        self.for_each_entry(ct_out, |ct, k, s, w| {
            out.entry(ct)
                .or_default()
                .entry(k)
                .or_insert_with(|| vec![0.0; n])[s] += w;
        })?;
        Ok(out)
    }

    /// The diagonals of `bsgs` pre-rotated for its giant steps:
    /// `result[g][b] = rot_{−shift}(diag_{shift + baby})`, in the order of
    /// `bsgs`. Fails if the matrix has a diagonal that `bsgs` does not cover.
    pub fn bsgs_diagonals(&self, ct_out: usize, bsgs: &Bsgs) -> Result<Vec<Vec<Vec<f64>>>, String> {
        let n = self.out_layout.slots();
        let mut diags = self.diagonals(ct_out)?;
        let mut out = Vec::with_capacity(bsgs.giants.len());
        for g in &bsgs.giants {
            let mut row = Vec::with_capacity(g.babies.len());
            for &(ct, b) in &g.babies {
                let k = (g.shift + b) % n as u64;
                let d = diags
                    .get_mut(&(ct as usize))
                    .and_then(|m| m.remove(&k))
                    .unwrap_or_else(|| vec![0.0; n]);
                let s = g.shift as usize % n;
                // rot_{−s}(d)[t] = d[t − s].
                row.push((0..n).map(|t| d[(t + n - s) % n]).collect());
            }
            out.push(row);
        }
        if let Some((ct, m)) = diags.iter().find(|(_, m)| !m.is_empty()) {
            return Err(format!(
                "diagonal {} of input ciphertext {ct} is not covered by the transform's program",
                m.keys().next().expect("nonempty")
            ));
        }
        Ok(out)
    }
}

/// The constant term of a region output, as slot vectors (one per output ciphertext).
pub fn bias_slots(
    region: &Region,
    output: usize,
    layout: &Layout,
) -> Result<Vec<Vec<f64>>, String> {
    let map = AffineMap::new(&region.graph);
    let node = region.graph.outputs()[output];
    let mut out = vec![vec![0.0; layout.slots()]; layout.cts()];
    let mut any = false;
    for e in 0..layout.len() {
        let b = map.row(node, e, Some(usize::MAX))?.bias;
        if b != 0.0 {
            any = true;
            for (ct, s) in layout.copies(e) {
                out[ct][s] = b;
            }
        }
    }
    if !any {
        return Ok(vec![]);
    }
    Ok(out)
}

/// The candidate baby-step giant-step splits for diagonals `keys` (per
/// input ciphertext) in `slots` slots: each diagonal `k = g + b` with `b`
/// its residue modulo a power of two `n1` (or that residue centred on 0).
pub fn bsgs_candidates(keys: &BTreeMap<usize, BTreeSet<u64>>, slots: usize) -> Vec<Bsgs> {
    let split = |n1: u64, centred: bool| {
        let n = slots as u64;
        let mut giants: BTreeMap<u64, Vec<(u32, u64)>> = BTreeMap::new();
        for (&ct, ks) in keys {
            for &k in ks {
                let mut b = k % n1;
                if centred && b >= n1 / 2 && n1 > 1 {
                    // b − n1 (a negative baby) as a rotation mod n.
                    b = (b + n - n1) % n;
                }
                let g = (k + n - b) % n;
                giants.entry(g).or_default().push((ct as u32, b));
            }
        }
        Bsgs {
            giants: giants
                .into_iter()
                .map(|(shift, babies)| Giant { shift, babies })
                .collect(),
        }
    };
    let mut out = Vec::new();
    for e in 0..=slots.trailing_zeros() {
        for centred in [false, true] {
            out.push(split(1u64 << e, centred));
        }
    }
    out
}

/// Evaluation cost of a program: a giant rotation counts as three hoisted
/// baby rotations (a key product).
pub fn bsgs_cost(p: &Bsgs) -> usize {
    p.baby_rotations() + 3 * p.giant_rotations()
}

/// The split needing the fewest distinct rotations (Galois keys), then the
/// cheapest evaluation.
pub fn plan_bsgs(keys: &BTreeMap<usize, BTreeSet<u64>>, slots: usize) -> Bsgs {
    plan_bsgs_shared(keys, slots, &BTreeSet::new(), usize::MAX / 4)
}

/// The split minimising `evaluation cost + key_cost × (rotations not in
/// `have`)`: with the keys other transforms already need, a transform
/// prefers the split that reuses them (`key_cost` in hoisted-rotation units).
pub fn plan_bsgs_shared(
    keys: &BTreeMap<usize, BTreeSet<u64>>,
    slots: usize,
    have: &BTreeSet<u64>,
    key_cost: usize,
) -> Bsgs {
    bsgs_candidates(keys, slots)
        .into_iter()
        .min_by_key(|p| {
            let (b, g) = p.rotations();
            let new = b.union(&g).filter(|r| !have.contains(r)).count();
            (
                new.saturating_mul(key_cost).saturating_add(bsgs_cost(p)),
                new,
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Conv2d, Pads2d, Tensor};

    fn conv_region(cin: usize, cout: usize, hw: usize, stride: usize) -> Region {
        let mut g = Graph::new("r");
        let x = g.add_input("x", vec![1, cin, hw, hw]).unwrap();
        let n = cout * cin * 9;
        let w = Tensor::new(
            vec![cout, cin, 3, 3],
            (0..n)
                .map(|i| ((i * 37 % 19) as f32 - 9.0) / 10.0)
                .collect(),
        )
        .unwrap();
        let b = Tensor::new(vec![cout], (0..cout).map(|i| i as f32 * 0.1).collect()).unwrap();
        let c = g
            .add(
                "conv",
                Op::Conv2d(Conv2d {
                    weight: w,
                    bias: Some(b),
                    stride: [stride; 2],
                    pads: Pads2d::same(1),
                    dilation: [1, 1],
                    group: 1,
                }),
                &[x],
            )
            .unwrap();
        g.set_outputs(vec![c]);
        Region {
            name: "conv".into(),
            graph: g,
            inputs: vec![0],
            outputs: vec![],
        }
    }

    /// Applies a BSGS program to packed slot vectors, as a backend would.
    fn apply(spec: &TransformSpec, bsgs: &Bsgs, x: &[Vec<f64>]) -> Vec<f64> {
        let n = spec.out_layout.slots();
        let rot =
            |v: &[f64], k: u64| -> Vec<f64> { (0..n).map(|t| v[(t + k as usize) % n]).collect() };
        let d = spec.bsgs_diagonals(0, bsgs).unwrap();
        let mut out = vec![0.0; n];
        for (g, dg) in bsgs.giants.iter().zip(&d) {
            let mut inner = vec![0.0; n];
            for (&(ct, b), diag) in g.babies.iter().zip(dg) {
                let r = rot(&x[ct as usize], b);
                for t in 0..n {
                    inner[t] += diag[t] * r[t];
                }
            }
            let r = rot(&inner, g.shift);
            for t in 0..n {
                out[t] += r[t];
            }
        }
        if let Method::Fold { step, count } = spec.method {
            let mut s = step;
            while s < step * count {
                let r = rot(&out, s as u64);
                for t in 0..n {
                    out[t] += r[t];
                }
                s *= 2;
            }
        }
        out
    }

    #[test]
    fn strided_conv_on_a_multiplexed_layout_matches_the_direct_sum() {
        let r = conv_region(4, 8, 8, 2);
        let inl = Layout::dense_grid([4, 8, 8], 1, [8, 8], 512);
        let outl = Layout::dense_grid([8, 4, 4], 2, [8, 8], 512);
        let spec = TransformSpec {
            region: &r,
            output: 0,
            input: 0,
            in_layout: &inl,
            out_layout: &outl,
            method: Method::Diagonal,
        };
        let keys = spec.structure(0).unwrap();
        let bsgs = plan_bsgs(&keys, 512);
        let (b, g) = bsgs.rotations();
        // In place at gap 2 the offsets do not depend on the output
        // position: (c − b)·64 + (di − r_i)·8 + (dj − r_j), 5 block offsets
        // times 4×4 spatial ones.
        assert_eq!(keys[&0].len(), 5 * 16);
        assert!(
            b.len() + g.len() <= 5 + 16,
            "{} + {} rotations",
            b.len(),
            g.len()
        );
        let x: Vec<f64> = (0..256)
            .map(|i| ((i * 13 % 29) as f64 - 14.0) / 7.0)
            .collect();
        let y = apply(&spec, &bsgs, &inl.pack(&x));
        let bias = bias_slots(&r, 0, &outl).unwrap();
        let got: Vec<f64> = outl
            .unpack(&[y])
            .iter()
            .zip(outl.unpack(&bias))
            .map(|(a, b)| a + b)
            .collect();
        let map = AffineMap::new(&r.graph);
        for (e, &g) in got.iter().enumerate() {
            let row = map.row(r.graph.outputs()[0], e, None).unwrap();
            let want: f64 = row.terms.iter().map(|&(_, i, w)| w * x[i]).sum::<f64>() + row.bias;
            assert!((g - want).abs() < 1e-12, "element {e}: {g} vs {want}");
        }
    }

    #[test]
    fn fold_method_replicates_a_dense_layer() {
        let mut g = Graph::new("fc");
        let x = g.add_input("x", vec![1, 2, 3, 3]).unwrap();
        let f = g.add("flat", Op::Flatten { axis: 1 }, &[x]).unwrap();
        let w = Tensor::new(
            vec![3, 18],
            (0..54).map(|i| (i as f32 - 27.0) / 9.0).collect(),
        )
        .unwrap();
        let l = g
            .add(
                "fc",
                Op::Linear(crate::Linear {
                    weight: w,
                    bias: None,
                }),
                &[f],
            )
            .unwrap();
        g.set_outputs(vec![l]);
        let r = Region {
            name: "fc".into(),
            graph: g,
            inputs: vec![0],
            outputs: vec![],
        };
        let inl = Layout::dense_grid([2, 3, 3], 1, [4, 4], 64);
        let outl = Layout::replicated_vector(vec![1, 3], 4, 64);
        let spec = TransformSpec {
            region: &r,
            output: 0,
            input: 0,
            in_layout: &inl,
            out_layout: &outl,
            method: Method::Fold { step: 4, count: 16 },
        };
        let keys = spec.structure(0).unwrap();
        assert!(keys[&0].iter().all(|&k| k < 4));
        let bsgs = plan_bsgs(&keys, 64);
        let x: Vec<f64> = (0..18).map(|i| (i as f64 - 5.0) / 3.0).collect();
        let y = apply(&spec, &bsgs, &inl.pack(&x));
        let map = AffineMap::new(&r.graph);
        for e in 0..3 {
            let row = map.row(r.graph.outputs()[0], e, None).unwrap();
            let want: f64 = row.terms.iter().map(|&(_, i, w)| w * x[i]).sum();
            for copy in 0..16 {
                assert!((y[e + 4 * copy] - want).abs() < 1e-12, "e {e} copy {copy}");
            }
        }
    }
}

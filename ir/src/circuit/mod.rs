//! The circuit IR: what a backend executes.
//!
//! A [`Circuit`] is flat SSA over ciphertexts: node `i` computes value `i`
//! from earlier values, plaintext data and constants. Every value carries
//! its level, its exact scale (a product and quotient of the parameter
//! set's actual primes, in f64, computed by one formula here and in every
//! backend) and, where it holds a tensor, its slot layout. Management is
//! explicit: `Rescale`, `DropLevel` and `Bootstrap` are ops like any other,
//! and [`Circuit::verify`] checks every rule a CKKS backend relies on:
//! operands defined before use, equal levels and scales where they meet,
//! levels in range, constants that survive their encoding, rotations whose
//! keys the circuit declares at a high enough level, bootstrap inputs the
//! bootstrapper accepts, layouts consistent with the linear regions.
//!
//! Plaintext data is not stored encoded: linear transforms name a
//! [`Region`] whose weights and layouts regenerate their diagonals
//! ([`linear`]), biases and masks are derived the same way, so a circuit
//! file is about as large as the model's weights.

pub mod builder;
pub mod file;
pub mod layout;
pub mod linear;
mod text;

pub use layout::Layout;
pub use linear::{Bsgs, Giant, Method, Region, RegionOutput, Transform, TransformSpec};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A value: the output of node `ValueId.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Additions and subtractions need their operands' scales equal to this
/// relative precision. The scales are computed exactly by construction
/// (targets are set by choosing plaintext scales), so only f64 rounding of
/// the products and quotients separates them (≤ a few ulp, ~2^-50); a real
/// mismatch (a drift from treating a prime as a power of two, say) is
/// ≥ 2^-20. An error of 2^-40 relative in a summand is far below any CKKS
/// noise.
pub const SCALE_EQ_TOLERANCE: f64 = 9.094947017729282e-13; // 2^-40

/// Constants and plaintexts are encoded as integers `round(v·scale)`; a
/// scale below this (in bits) would cost more precision than CKKS has.
pub const MIN_PLAINTEXT_LOG_SCALE: f64 = 16.0;

/// The ciphertext operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Ciphertext `ct` of the encrypted input.
    Input {
        ct: u32,
    },
    Add {
        a: ValueId,
        b: ValueId,
    },
    Sub {
        a: ValueId,
        b: ValueId,
    },
    Neg {
        a: ValueId,
    },
    /// Adds the real constant `c` to every slot (encoded at `a`'s scale).
    AddConst {
        a: ValueId,
        c: f64,
    },
    /// Adds plaintext vector `plain` (encoded at `a`'s scale).
    AddPlain {
        a: ValueId,
        plain: u32,
    },
    /// Multiplies by `c` encoded as the integer `round(c·scale)`; the output
    /// scale is `a.scale · scale`.
    MulConst {
        a: ValueId,
        c: f64,
        scale: f64,
    },
    /// Multiplies by a small integer; the scale is unchanged.
    MulInt {
        a: ValueId,
        k: i64,
    },
    /// Multiplies by plaintext vector `plain` encoded at `scale`.
    MulPlain {
        a: ValueId,
        plain: u32,
        scale: f64,
    },
    /// Ciphertext product with relinearisation; the scales multiply.
    Mul {
        a: ValueId,
        b: ValueId,
    },
    /// Reinterprets the ciphertext: scale × `factor`, so the value it
    /// decodes to is divided by `factor` (free and exact).
    Relabel {
        a: ValueId,
        factor: f64,
    },
    /// `out[t] = a[t + k]` (cyclic over the slots).
    Rotate {
        a: ValueId,
        k: u64,
    },
    /// Divides by the current level's prime; level − 1.
    Rescale {
        a: ValueId,
    },
    /// Drops limbs down to `level` (exact; scale unchanged).
    DropLevel {
        a: ValueId,
        level: u32,
    },
    /// Refreshes to the bootstrapper's output level (see [`BootstrapSpec`]).
    Bootstrap {
        a: ValueId,
    },
    /// Output ciphertext `ct` of region `region`'s output `output`, from the
    /// ciphertexts of its input `input` (all at one level and scale):
    /// `Σ_g rot_g(Σ_b diag'_{g,b} ⊙ rot_b(in_ct))`, folded when the output's
    /// method says so; the diagonals are encoded at `scale`.
    LinearTransform {
        inputs: Vec<ValueId>,
        region: u32,
        output: u32,
        input: u32,
        ct: u32,
        scale: f64,
    },
    /// Declares that `a` holds ciphertext `ct` of layout `layout` (free).
    Reinterpret {
        a: ValueId,
        layout: u32,
        ct: u32,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Add { .. } => "add",
            Op::Sub { .. } => "sub",
            Op::Neg { .. } => "neg",
            Op::AddConst { .. } => "add_const",
            Op::AddPlain { .. } => "add_plain",
            Op::MulConst { .. } => "mul_const",
            Op::MulInt { .. } => "mul_int",
            Op::MulPlain { .. } => "mul_plain",
            Op::Mul { .. } => "mul",
            Op::Relabel { .. } => "relabel",
            Op::Rotate { .. } => "rotate",
            Op::Rescale { .. } => "rescale",
            Op::DropLevel { .. } => "drop_level",
            Op::Bootstrap { .. } => "bootstrap",
            Op::LinearTransform { .. } => "linear_transform",
            Op::Reinterpret { .. } => "reinterpret",
        }
    }

    /// The values the op reads.
    pub fn operands(&self) -> Vec<ValueId> {
        match self {
            Op::Input { .. } => vec![],
            Op::Add { a, b } | Op::Sub { a, b } | Op::Mul { a, b } => vec![*a, *b],
            Op::Neg { a }
            | Op::AddConst { a, .. }
            | Op::AddPlain { a, .. }
            | Op::MulConst { a, .. }
            | Op::MulInt { a, .. }
            | Op::MulPlain { a, .. }
            | Op::Relabel { a, .. }
            | Op::Rotate { a, .. }
            | Op::Rescale { a }
            | Op::DropLevel { a, .. }
            | Op::Bootstrap { a }
            | Op::Reinterpret { a, .. } => vec![*a],
            Op::LinearTransform { inputs, .. } => inputs.clone(),
        }
    }
}

/// Where a value's slots come from: ciphertext `ct` of layout `layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub layout: u32,
    pub ct: u32,
}

/// One node: the op, and the level, scale and placement of its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub level: u32,
    pub scale: f64,
    /// `None` for values that do not hold a tensor in a layout (rotated
    /// partial results).
    pub placement: Option<Placement>,
    /// Index into [`Circuit::layers`]: the tensor op this node implements.
    pub layer: u32,
}

/// Plaintext vectors, derived (not stored) when a backend needs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Plain {
    /// The constant term of region output `output`, ciphertext `ct`.
    Bias { region: u32, output: u32, ct: u32 },
    /// `value` at the occupied slots of ciphertext `ct` of `layout`, 0 elsewhere.
    Mask { layout: u32, ct: u32, value: f64 },
}

/// The bootstrapper's contract, as the circuit was scheduled against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSpec {
    /// The level it returns at (the levels left to the circuit).
    pub output_level: u32,
    /// Its output scale for an input at the pre-scaling target.
    pub output_scale: f64,
    /// `Δ_eff`, the scale the input is pre-scaled to (by an integer).
    pub message_scale: f64,
    /// Lowest input level it accepts.
    pub minimum_input_level: u32,
    /// Expected output precision in bits (for inputs in [−1, 1]).
    pub precision_bits: f64,
    /// Levels it consumes from the top of the chain.
    pub depth: u32,
    /// Rotations its own keys cover (keys generated with the bootstrapper).
    pub rotations: Vec<u64>,
}

impl BootstrapSpec {
    /// The integer the input is pre-scaled by.
    pub fn prescale(&self, input_scale: f64) -> f64 {
        (self.message_scale / input_scale).round().max(1.0)
    }

    /// The output scale for an input at `input_scale`: the bootstrapper
    /// pre-scales by an integer `c ≈ Δ_eff / input_scale` and returns
    /// `output_scale · c·input_scale / Δ_eff` (the same formula it uses).
    pub fn output_scale_for(&self, input_scale: f64) -> f64 {
        let c = self.prescale(input_scale);
        self.output_scale * (c * input_scale) / self.message_scale
    }
}

/// The CKKS parameters the circuit was compiled for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The preset's name (`levels9`, `levels16`, or a test set).
    pub preset: String,
    pub log_n: u32,
    /// Slots per ciphertext (a power of two ≤ N/2).
    pub slots: usize,
    /// The ciphertext modulus chain, `q[0]` first.
    pub q: Vec<u64>,
    /// The level fresh encryptions are made at.
    pub fresh_level: u32,
    pub bootstrap: Option<BootstrapSpec>,
    /// `log2(QP)` and whether the set meets the 128-bit bound.
    pub log_qp: f64,
    pub secure: bool,
}

impl Params {
    pub fn max_level(&self) -> u32 {
        self.q.len() as u32 - 1
    }

    /// `log2` of `Q_level`, the modulus at `level`.
    pub fn log_q_at(&self, level: u32) -> f64 {
        self.q[..=level as usize]
            .iter()
            .map(|&q| (q as f64).log2())
            .sum()
    }
}

/// The encrypted input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    /// The tensor shape, batch 1.
    pub shape: Vec<usize>,
    pub layout: u32,
    pub level: u32,
    pub scale: f64,
    /// Largest |x| over the calibration data (inputs beyond it may make a
    /// polynomial leave its domain), if known.
    pub range: Option<f64>,
    /// How raw images become the input tensor, if the model says.
    pub preprocess: Option<Preprocessing>,
}

/// Raw pixels `p` (bytes) → `((p/255 − mean[c]) / std[c])`, after zero
/// padding by `pad` pixels on every side (torchvision's `Pad`, `ToTensor`,
/// `Normalize`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub pad: usize,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// The circuit's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: u32,
    /// The output's ciphertexts, in layout order.
    pub values: Vec<ValueId>,
}

/// The tensor op a group of nodes implements, for reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    pub kind: String,
}

/// The key of the note recording the precision α of approximated layer
/// `layer` (every approximate ReLU and max-pool has one).
pub fn alpha_note(layer: &str) -> String {
    format!("alpha {layer}")
}

/// A compiled circuit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Circuit {
    pub name: String,
    pub params: Params,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub layouts: Vec<Layout>,
    pub regions: Vec<Region>,
    pub plains: Vec<Plain>,
    pub layers: Vec<Layer>,
    pub nodes: Vec<Node>,
    /// Rotation amounts whose Galois keys the circuit needs (besides the
    /// bootstrapper's), each with the highest level it is used at.
    pub rotations: BTreeMap<u64, u32>,
    /// Free-form facts the compiler recorded (model, α, calibration, …).
    pub notes: BTreeMap<String, String>,
}

/// A rule the circuit breaks, naming the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node %{node} ({op}): {msg}")]
pub struct VerifyError {
    pub node: usize,
    pub op: &'static str,
    pub msg: String,
}

/// `a` and `b` agree to [`SCALE_EQ_TOLERANCE`].
pub fn scales_match(a: f64, b: f64) -> bool {
    ((a - b) / a).abs() <= SCALE_EQ_TOLERANCE
}

/// The level, scale and placement an op produces from its operands (the
/// one definition shared by the verifier, the builder and the backends).
pub fn infer(
    circuit: &Circuit,
    nodes: &[Node],
    op: &Op,
) -> Result<(u32, f64, Option<Placement>), String> {
    let p = &circuit.params;
    let get = |v: ValueId| -> Result<&Node, String> {
        nodes
            .get(v.index())
            .ok_or_else(|| format!("reads %{}, which is not defined before it", v.0))
    };
    let same_level = |a: &Node, b: &Node| -> Result<(), String> {
        if a.level != b.level {
            return Err(format!("operands at levels {} and {}", a.level, b.level));
        }
        Ok(())
    };
    let join = |a: &Node, b: &Node| match (a.placement, b.placement) {
        (Some(x), Some(y)) if x == y => Some(x),
        _ => None,
    };
    let check_plain_scale = |scale: f64, what: &str| -> Result<(), String> {
        if !(scale.is_finite() && scale > 0.0 && scale.log2() >= MIN_PLAINTEXT_LOG_SCALE) {
            return Err(format!(
                "{what} encoded at scale 2^{:.2}, below 2^{MIN_PLAINTEXT_LOG_SCALE}",
                scale.log2()
            ));
        }
        Ok(())
    };
    Ok(match op {
        Op::Input { ct } => {
            let l = &circuit.layouts[circuit.input.layout as usize];
            if *ct as usize >= l.cts() {
                return Err(format!("input ciphertext {ct} of {}", l.cts()));
            }
            (
                circuit.input.level,
                circuit.input.scale,
                Some(Placement {
                    layout: circuit.input.layout,
                    ct: *ct,
                }),
            )
        }
        Op::Add { a, b } | Op::Sub { a, b } => {
            let (x, y) = (get(*a)?, get(*b)?);
            same_level(x, y)?;
            if !scales_match(x.scale, y.scale) {
                return Err(format!(
                    "operands at scales 2^{:.9} and 2^{:.9} (relative difference {:.2e})",
                    x.scale.log2(),
                    y.scale.log2(),
                    (x.scale - y.scale) / x.scale
                ));
            }
            (x.level, x.scale, join(x, y))
        }
        Op::Neg { a } | Op::AddConst { a, .. } | Op::MulInt { a, .. } => {
            let x = get(*a)?;
            if let Op::AddConst { c, .. } = op {
                if !c.is_finite() || (c * x.scale).abs() >= 2f64.powi(120) {
                    return Err(format!("constant {c} out of range at this scale"));
                }
            }
            (x.level, x.scale, x.placement)
        }
        Op::AddPlain { a, plain } => {
            let x = get(*a)?;
            if *plain as usize >= circuit.plains.len() {
                return Err(format!("plaintext {plain} is not declared"));
            }
            check_plain_scale(x.scale, "plaintext")?;
            (x.level, x.scale, x.placement)
        }
        Op::MulConst { a, c, scale } => {
            let x = get(*a)?;
            if !c.is_finite() {
                return Err(format!("constant {c} is not finite"));
            }
            check_plain_scale(*scale, "constant").map_err(|e| {
                format!(
                    "{e} (constant {c}, operand %{} at level {} scale 2^{:.3})",
                    a.0,
                    x.level,
                    x.scale.log2()
                )
            })?;
            let v = c * scale;
            if v.abs() >= 2f64.powi(120) {
                return Err(format!(
                    "constant {c} at scale 2^{:.1} overflows",
                    scale.log2()
                ));
            }
            if *c != 0.0 && v.round() == 0.0 {
                return Err(format!(
                    "constant {c} rounds to 0 at scale 2^{:.2}",
                    scale.log2()
                ));
            }
            (x.level, x.scale * scale, x.placement)
        }
        Op::MulPlain { a, plain, scale } => {
            let x = get(*a)?;
            if *plain as usize >= circuit.plains.len() {
                return Err(format!("plaintext {plain} is not declared"));
            }
            check_plain_scale(*scale, "plaintext")?;
            (x.level, x.scale * scale, x.placement)
        }
        Op::Mul { a, b } => {
            let (x, y) = (get(*a)?, get(*b)?);
            same_level(x, y)?;
            (x.level, x.scale * y.scale, join(x, y))
        }
        Op::Relabel { a, factor } => {
            let x = get(*a)?;
            if !(factor.is_finite() && *factor > 0.0) {
                return Err(format!("relabel factor {factor} must be positive"));
            }
            (x.level, x.scale * factor, x.placement)
        }
        Op::Rotate { a, k } => {
            let x = get(*a)?;
            if *k == 0 || *k as usize >= p.slots {
                return Err(format!("rotation by {k} with {} slots", p.slots));
            }
            (x.level, x.scale, None)
        }
        Op::Rescale { a } => {
            let x = get(*a)?;
            if x.level == 0 {
                return Err("rescales a level-0 ciphertext".into());
            }
            (
                x.level - 1,
                x.scale / p.q[x.level as usize] as f64,
                x.placement,
            )
        }
        Op::DropLevel { a, level } => {
            let x = get(*a)?;
            if *level > x.level {
                return Err(format!("drops from level {} up to {level}", x.level));
            }
            (*level, x.scale, x.placement)
        }
        Op::Bootstrap { a } => {
            let x = get(*a)?;
            let bs = p
                .bootstrap
                .as_ref()
                .ok_or("the parameters have no bootstrapper")?;
            if x.level < bs.minimum_input_level {
                return Err(format!(
                    "input at level {} below the bootstrapper's minimum {}",
                    x.level, bs.minimum_input_level
                ));
            }
            if x.scale > bs.message_scale * (1.0 + 1e-9) {
                return Err(format!(
                    "input scale 2^{:.2} above the bootstrapper's message scale 2^{:.2}",
                    x.scale.log2(),
                    bs.message_scale.log2()
                ));
            }
            if bs.prescale(x.scale) > 2f64.powi(40) {
                return Err(format!(
                    "input scale 2^{:.2} too small to bootstrap",
                    x.scale.log2()
                ));
            }
            (bs.output_level, bs.output_scale_for(x.scale), x.placement)
        }
        Op::LinearTransform {
            inputs,
            region,
            output,
            input,
            ct,
            scale,
        } => {
            let r = circuit
                .regions
                .get(*region as usize)
                .ok_or_else(|| format!("region {region} is not declared"))?;
            let o = r
                .outputs
                .get(*output as usize)
                .ok_or_else(|| format!("region {} has no output {output}", r.name))?;
            let in_layout = *r
                .inputs
                .get(*input as usize)
                .ok_or_else(|| format!("region {} has no input {input}", r.name))?;
            let t = o
                .transforms
                .get(*input as usize)
                .and_then(|t| t.as_ref())
                .ok_or_else(|| {
                    format!(
                        "region {} output {output} does not read input {input}",
                        r.name
                    )
                })?;
            if t.per_ct.len() <= *ct as usize {
                return Err(format!(
                    "region {} output {output} has no ciphertext {ct}",
                    r.name
                ));
            }
            let want = circuit.layouts[in_layout as usize].cts();
            if inputs.len() != want {
                return Err(format!(
                    "{} input ciphertexts, the layout has {want}",
                    inputs.len()
                ));
            }
            let first = get(inputs[0])?;
            for (k, &v) in inputs.iter().enumerate() {
                let x = get(v)?;
                same_level(first, x)?;
                if !scales_match(first.scale, x.scale) {
                    return Err("input ciphertexts at different scales".into());
                }
                let expect = Placement {
                    layout: in_layout,
                    ct: k as u32,
                };
                if x.placement != Some(expect) {
                    return Err(format!(
                        "input ciphertext {k} is {:?}, the region reads {expect:?}",
                        x.placement
                    ));
                }
            }
            check_plain_scale(*scale, "diagonals")?;
            (
                first.level,
                first.scale * scale,
                Some(Placement {
                    layout: o.layout,
                    ct: *ct,
                }),
            )
        }
        Op::Reinterpret { a, layout, ct } => {
            let x = get(*a)?;
            let l = circuit
                .layouts
                .get(*layout as usize)
                .ok_or_else(|| format!("layout {layout} is not declared"))?;
            if *ct as usize >= l.cts() {
                return Err(format!("layout {layout} has no ciphertext {ct}"));
            }
            (
                x.level,
                x.scale,
                Some(Placement {
                    layout: *layout,
                    ct: *ct,
                }),
            )
        }
    })
}

/// Rotations an op performs, with the level it performs them at.
pub fn op_rotations(circuit: &Circuit, node: &Node) -> Vec<u64> {
    match &node.op {
        Op::Rotate { k, .. } => vec![*k],
        Op::LinearTransform {
            region,
            output,
            input,
            ct,
            ..
        } => {
            let o = &circuit.regions[*region as usize].outputs[*output as usize];
            let Some(t) = o.transforms[*input as usize].as_ref() else {
                return vec![];
            };
            let (b, g) = t.per_ct[*ct as usize].rotations();
            let mut all: Vec<u64> = b.into_iter().chain(g).chain(t.fold_rotations()).collect();
            all.sort();
            all.dedup();
            all
        }
        _ => vec![],
    }
}

impl Circuit {
    /// Checks every rule; the first broken one is reported, naming the node.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let fail = |node: usize, op: &'static str, msg: String| VerifyError { node, op, msg };
        let global = |msg: String| VerifyError {
            node: usize::MAX,
            op: "circuit",
            msg,
        };
        let p = &self.params;
        if p.q.is_empty() || !p.slots.is_power_of_two() || p.slots > (1usize << p.log_n) / 2 {
            return Err(global(format!(
                "parameters: {} primes, {} slots at N = 2^{}",
                p.q.len(),
                p.slots,
                p.log_n
            )));
        }
        if p.fresh_level > p.max_level() {
            return Err(global(format!(
                "fresh level {} above the chain's top {}",
                p.fresh_level,
                p.max_level()
            )));
        }
        if let Some(bs) = &p.bootstrap {
            if bs.output_level > p.max_level() {
                return Err(global("bootstrap output level above the chain".into()));
            }
        }
        for (i, l) in self.layouts.iter().enumerate() {
            l.validate()
                .map_err(|e| global(format!("layout {i}: {e}")))?;
            if l.slots() != p.slots {
                return Err(global(format!(
                    "layout {i} has {} slots, the circuit {}",
                    l.slots(),
                    p.slots
                )));
            }
        }
        let layout = |i: u32| -> Result<&Layout, VerifyError> {
            self.layouts
                .get(i as usize)
                .ok_or_else(|| global(format!("layout {i} is not declared")))
        };
        for (ri, r) in self.regions.iter().enumerate() {
            r.graph
                .validate()
                .map_err(|e| global(format!("region {ri} ({}): {e}", r.name)))?;
            if r.inputs.len() != r.graph.inputs().len()
                || r.outputs.len() != r.graph.outputs().len()
            {
                return Err(global(format!(
                    "region {ri} ({}): inputs/outputs disagree with its graph",
                    r.name
                )));
            }
            for id in r.graph.node_ids() {
                let op = &r.graph.node(id).op;
                if !matches!(op, crate::Op::Input) && !linear::is_linear(op) {
                    return Err(global(format!(
                        "region {ri} ({}) holds the non-linear op {}",
                        r.name,
                        op.kind()
                    )));
                }
            }
            for (k, &li) in r.inputs.iter().enumerate() {
                let l = layout(li)?;
                let shape = &r.graph.node(r.graph.inputs()[k]).shape;
                if shape[1..] != l.shape()[..] {
                    return Err(global(format!(
                        "region {ri} ({}) input {k}: shape {:?}, layout {:?}",
                        r.name,
                        shape,
                        l.shape()
                    )));
                }
            }
            for (k, o) in r.outputs.iter().enumerate() {
                let l = layout(o.layout)?;
                let shape = &r.graph.node(r.graph.outputs()[k]).shape;
                if shape[1..] != l.shape()[..] {
                    return Err(global(format!(
                        "region {ri} ({}) output {k}: shape {:?}, layout {:?}",
                        r.name,
                        shape,
                        l.shape()
                    )));
                }
                if o.transforms.len() != r.inputs.len() {
                    return Err(global(format!(
                        "region {ri} ({}) output {k}: {} transforms for {} inputs",
                        r.name,
                        o.transforms.len(),
                        r.inputs.len()
                    )));
                }
                for t in o.transforms.iter().flatten() {
                    if let Method::Fold { step, count } = t.method {
                        if !step.is_power_of_two()
                            || !count.is_power_of_two()
                            || step.saturating_mul(count) > p.slots
                        {
                            return Err(global(format!(
                                "region {ri} ({}) output {k}: fold {step}×{count} with {} slots",
                                r.name, p.slots
                            )));
                        }
                    }
                    if t.per_ct.len() != l.cts() {
                        return Err(global(format!(
                            "region {ri} ({}) output {k}: programs for {} of {} ciphertexts",
                            r.name,
                            t.per_ct.len(),
                            l.cts()
                        )));
                    }
                    for b in &t.per_ct {
                        for g in &b.giants {
                            if g.shift as usize >= p.slots
                                || g.babies.iter().any(|&(_, b)| b as usize >= p.slots)
                            {
                                return Err(global(format!(
                                    "region {ri} ({}): a rotation beyond the slot count",
                                    r.name
                                )));
                            }
                        }
                    }
                }
            }
        }
        for (i, pl) in self.plains.iter().enumerate() {
            let ok = match pl {
                Plain::Bias { region, output, ct } => self
                    .regions
                    .get(*region as usize)
                    .and_then(|r| r.outputs.get(*output as usize))
                    .is_some_and(|o| (*ct as usize) < self.layouts[o.layout as usize].cts()),
                Plain::Mask { layout, ct, value } => {
                    value.is_finite()
                        && self
                            .layouts
                            .get(*layout as usize)
                            .is_some_and(|l| (*ct as usize) < l.cts())
                }
            };
            if !ok {
                return Err(global(format!("plaintext {i} refers to nothing")));
            }
        }
        let in_layout = layout(self.input.layout)?;
        if in_layout.shape() != self.input.shape[1..] {
            return Err(global("input shape and layout disagree".into()));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let op = node.op.name();
            if node.layer as usize >= self.layers.len() {
                return Err(fail(i, op, format!("layer {} is not declared", node.layer)));
            }
            let (level, scale, placement) =
                infer(self, &self.nodes[..i], &node.op).map_err(|m| fail(i, op, m))?;
            if level != node.level || scale.to_bits() != node.scale.to_bits() {
                return Err(fail(
                    i,
                    op,
                    format!(
                        "records level {} scale 2^{:.9}, its operands give level {level} scale 2^{:.9}",
                        node.level,
                        node.scale.log2(),
                        scale.log2()
                    ),
                ));
            }
            if placement != node.placement {
                return Err(fail(
                    i,
                    op,
                    format!(
                        "records placement {:?}, its operands give {placement:?}",
                        node.placement
                    ),
                ));
            }
            if level > p.max_level() {
                return Err(fail(i, op, format!("level {level} above the chain")));
            }
            for k in op_rotations(self, node) {
                match self.rotations.get(&k) {
                    None => {
                        return Err(fail(
                            i,
                            op,
                            format!("rotation by {k} has no declared Galois key"),
                        ))
                    }
                    Some(&l) if l < node.level => {
                        return Err(fail(
                            i,
                            op,
                            format!(
                                "rotation by {k} at level {}, its key is declared up to level {l}",
                                node.level
                            ),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let out_layout = layout(self.output.layout)?;
        if self.output.values.len() != out_layout.cts() {
            return Err(global(format!(
                "{} output values for {} ciphertexts",
                self.output.values.len(),
                out_layout.cts()
            )));
        }
        for (k, v) in self.output.values.iter().enumerate() {
            let node = self
                .nodes
                .get(v.index())
                .ok_or_else(|| global(format!("output value %{} is not defined", v.0)))?;
            let want = Placement {
                layout: self.output.layout,
                ct: k as u32,
            };
            if node.placement != Some(want) {
                return Err(global(format!(
                    "output ciphertext {k} (%{}) is {:?}, not {want:?}",
                    v.0, node.placement
                )));
            }
        }
        Ok(())
    }

    /// The text form (deterministic; what snapshot tests read).
    pub fn to_text(&self) -> String {
        text::to_text(self)
    }

    /// Counts of what the circuit does.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let mut depth = vec![0u32; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            let d = node
                .op
                .operands()
                .iter()
                .map(|v| depth[v.index()])
                .max()
                .unwrap_or(0);
            depth[i] = d + u32::from(matches!(node.op, Op::Rescale { .. }));
            if matches!(node.op, Op::Bootstrap { .. }) {
                s.bootstraps += 1;
            }
            match &node.op {
                Op::Mul { .. } => s.ct_products += 1,
                Op::MulConst { .. } | Op::MulPlain { .. } => s.plain_products += 1,
                Op::Rescale { .. } => s.rescales += 1,
                Op::Rotate { .. } => s.rotations += 1,
                Op::LinearTransform {
                    region,
                    output,
                    input,
                    ct,
                    ..
                } => {
                    let o = &self.regions[*region as usize].outputs[*output as usize];
                    if let Some(t) = &o.transforms[*input as usize] {
                        let b = &t.per_ct[*ct as usize];
                        s.rotations += b.baby_rotations() + b.giant_rotations();
                        s.plain_products += b.products();
                        s.rotations += t.fold_rotations().len();
                    }
                    s.linear_transforms += 1;
                }
                _ => {}
            }
        }
        s.depth = depth.iter().copied().max().unwrap_or(0);
        s.rotation_keys = self.rotations.len();
        s.nodes = self.nodes.len();
        s
    }
}

/// What one layer (tensor op) of a circuit does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub name: String,
    pub op: String,
    /// Highest level of the values it reads from other layers.
    pub level_in: u32,
    /// Level of its last value.
    pub level_out: u32,
    /// Ciphertexts it passes on to later layers.
    pub ciphertexts: usize,
    pub bootstraps: usize,
    pub rotations: usize,
    pub plain_products: usize,
    pub ct_products: usize,
    pub nodes: usize,
}

impl Circuit {
    /// Per layer, in the order the layers first appear.
    pub fn layer_summaries(&self) -> Vec<LayerSummary> {
        let mut out: Vec<LayerSummary> = self
            .layers
            .iter()
            .map(|l| LayerSummary {
                name: l.name.clone(),
                op: l.kind.clone(),
                ..LayerSummary::default()
            })
            .collect();
        let mut read_elsewhere = vec![false; self.nodes.len()];
        for n in &self.nodes {
            for v in n.op.operands() {
                if self.nodes[v.index()].layer != n.layer {
                    read_elsewhere[v.index()] = true;
                }
            }
        }
        for v in &self.output.values {
            read_elsewhere[v.index()] = true;
        }
        let mut seen = vec![false; self.layers.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            let s = &mut out[n.layer as usize];
            s.nodes += 1;
            s.level_out = n.level;
            for v in n.op.operands() {
                let src = &self.nodes[v.index()];
                if src.layer != n.layer {
                    s.level_in = s.level_in.max(src.level);
                }
            }
            if !seen[n.layer as usize] {
                seen[n.layer as usize] = true;
                if let Op::Input { .. } = n.op {
                    s.level_in = n.level;
                }
            }
            if read_elsewhere[i] {
                s.ciphertexts += 1;
            }
            match &n.op {
                Op::Bootstrap { .. } => s.bootstraps += 1,
                Op::Mul { .. } => s.ct_products += 1,
                Op::MulConst { .. } | Op::MulPlain { .. } => s.plain_products += 1,
                Op::Rotate { .. } => s.rotations += 1,
                Op::LinearTransform {
                    region,
                    output,
                    input,
                    ct,
                    ..
                } => {
                    let o = &self.regions[*region as usize].outputs[*output as usize];
                    if let Some(t) = &o.transforms[*input as usize] {
                        let b = &t.per_ct[*ct as usize];
                        s.rotations += b.baby_rotations() + b.giant_rotations();
                        s.plain_products += b.products();
                        s.rotations += t.fold_rotations().len();
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// Totals over a circuit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub nodes: usize,
    pub bootstraps: usize,
    /// Rescales on the longest path (the multiplicative depth, bootstraps
    /// not counted as resetting it).
    pub depth: u32,
    pub rescales: usize,
    pub ct_products: usize,
    pub plain_products: usize,
    pub rotations: usize,
    pub rotation_keys: usize,
    pub linear_transforms: usize,
}

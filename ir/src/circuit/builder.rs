//! Building circuits with exact scale management.
//!
//! [`Builder`] appends nodes, computing each one's level, scale and
//! placement with [`super::infer`] (so a built circuit verifies by
//! construction), and records the rotations it uses. On top of the raw ops
//! it offers the scale discipline the lowering relies on:
//!
//! * **Canonical scales.** [`canonical_scales`] gives each level the scale
//!   values are kept at: the level's prime where the primes are uniform
//!   (the circuit levels of a preset), so the product of two such values
//!   rescales to the next level's canonical scale within a prime's spread;
//!   across a change of prime size (the bootstrapping primes a fresh
//!   ciphertext starts on) `S_ℓ = √(S_{ℓ−1}·q_ℓ)`, which makes the product
//!   of two canonical values rescale exactly onto `S_{ℓ−1}`.
//! * **Targets.** Every plaintext or constant product chooses its encoding
//!   scale so that the result, after the rescale, lands on a requested
//!   scale: linear transforms, the leaves and quotients of polynomials
//!   (Lattigo's backward scale propagation), [`Builder::retarget`].
//! * **Polynomials.** [`Builder::odd_poly`] emits a [`crate::poly::Plan`]:
//!   the power basis forward (each `T_i` at its natural level and scale),
//!   the rest backwards from the requested output level and scale, so that
//!   every addition meets equal scales and no constant is encoded at a scale
//!   where it rounds away (refused by the verifier if it would).

use super::{infer, op_rotations, Circuit, Layer, Node, Op, Placement, ValueId};
use crate::poly::{Plan, Step};
use std::collections::HashMap;

/// The scale values are kept at on each level (index = level).
pub fn canonical_scales(q: &[u64]) -> Vec<f64> {
    let mut s = vec![0.0; q.len()];
    if q.len() == 1 {
        s[0] = q[0] as f64;
        return s;
    }
    s[1] = q[1] as f64;
    s[0] = s[1] * s[1] / q[1] as f64;
    for l in 2..q.len() {
        let ql = q[l] as f64;
        s[l] = if (ql / s[l - 1]).log2().abs() < 0.5 {
            ql
        } else {
            (s[l - 1] * ql).sqrt()
        };
    }
    s
}

/// The smallest encoding scale [`Builder::retarget`] uses for its constant
/// 1 (its rounding error is then below 2^-30 relative).
pub const RETARGET_MIN_LOG_SCALE: f64 = 30.0;

/// A scale within this many bits of the canonical one counts as ready for
/// a polynomial (its power basis stays within a few bits of the primes).
pub const READY_BITS: f64 = 1.0;

pub struct Builder {
    pub circuit: Circuit,
    canon: Vec<f64>,
    layer: u32,
    layer_index: HashMap<(String, String), u32>,
}

impl Builder {
    /// Starts from a circuit with its parameters, input, layouts, regions
    /// and plains set and no nodes.
    pub fn new(circuit: Circuit) -> Self {
        let canon = canonical_scales(&circuit.params.q);
        Builder {
            circuit,
            canon,
            layer: 0,
            layer_index: HashMap::new(),
        }
    }

    pub fn canonical(&self, level: u32) -> f64 {
        self.canon[level as usize]
    }

    pub fn q(&self, level: u32) -> f64 {
        self.circuit.params.q[level as usize] as f64
    }

    /// Nodes that follow belong to layer `name` (`kind` its op).
    pub fn set_layer(&mut self, name: &str, kind: &str) {
        let key = (name.to_string(), kind.to_string());
        let next = self.circuit.layers.len() as u32;
        self.layer = *self.layer_index.entry(key).or_insert_with(|| next);
        if self.layer == next {
            self.circuit.layers.push(Layer {
                name: name.to_string(),
                kind: kind.to_string(),
            });
        }
    }

    pub fn node(&self, v: ValueId) -> &Node {
        &self.circuit.nodes[v.index()]
    }

    pub fn level(&self, v: ValueId) -> u32 {
        self.node(v).level
    }

    pub fn scale(&self, v: ValueId) -> f64 {
        self.node(v).scale
    }

    /// Appends `op`; its level, scale and placement follow from the operands.
    pub fn push(&mut self, op: Op) -> Result<ValueId, String> {
        let (level, scale, placement) = infer(&self.circuit, &self.circuit.nodes, &op)
            .map_err(|e| format!("{} in layer {}: {e}", op.name(), self.layer_name()))?;
        let node = Node {
            op,
            level,
            scale,
            placement,
            layer: self.layer,
        };
        for k in op_rotations(&self.circuit, &node) {
            let l = self.circuit.rotations.entry(k).or_insert(level);
            *l = (*l).max(level);
        }
        self.circuit.nodes.push(node);
        Ok(ValueId(self.circuit.nodes.len() as u32 - 1))
    }

    fn layer_name(&self) -> String {
        self.circuit
            .layers
            .get(self.layer as usize)
            .map_or_else(|| "?".into(), |l| l.name.clone())
    }

    pub fn finish(self) -> Circuit {
        self.circuit
    }

    /// `v` at `level` (dropping limbs; the scale is kept).
    pub fn drop_to(&mut self, v: ValueId, level: u32) -> Result<ValueId, String> {
        let l = self.level(v);
        if l == level {
            return Ok(v);
        }
        if l < level {
            return Err(format!(
                "needs a value at level {level}, it is at {l} (layer {})",
                self.layer_name()
            ));
        }
        self.push(Op::DropLevel { a: v, level })
    }

    /// `v` at exactly `level` and `scale`: a product by the constant 1
    /// encoded so that the rescale from `v`'s own level lands on `scale`,
    /// then a drop to `level` (a drop keeps the scale). When the constant
    /// would be encoded below [`RETARGET_MIN_LOG_SCALE`] bits (a scale far
    /// above the target), intermediate steps bring the scale down first.
    /// `v` must be above `level` (or already there at `scale`).
    pub fn retarget(&mut self, v: ValueId, level: u32, scale: f64) -> Result<ValueId, String> {
        let mut v = v;
        loop {
            let (l, s) = (self.level(v), self.scale(v));
            if l == level && super::scales_match(s, scale) {
                return Ok(v);
            }
            if l <= level {
                return Err(format!(
                    "cannot bring a value at level {l} (scale 2^{:.3}) to level {level} scale 2^{:.3} without a spare level (layer {})",
                    s.log2(),
                    scale.log2(),
                    self.layer_name()
                ));
            }
            let q = self.q(l);
            let sigma = scale * q / s;
            let (sigma, last) = if sigma.log2() >= RETARGET_MIN_LOG_SCALE || l == level + 1 {
                (sigma, true)
            } else {
                (2f64.powf(RETARGET_MIN_LOG_SCALE), false)
            };
            let m = self.push(Op::MulConst {
                a: v,
                c: 1.0,
                scale: sigma,
            })?;
            v = self.push(Op::Rescale { a: m })?;
            if last {
                return self.drop_to(v, level);
            }
        }
    }

    /// `v` at `level` with a scale a polynomial can start from (within
    /// [`READY_BITS`] of `want`): dropped if it already is, retargeted if it
    /// has a level to spare, an error otherwise.
    pub fn ready(&mut self, v: ValueId, level: u32, want: f64) -> Result<ValueId, String> {
        let (l, s) = (self.level(v), self.scale(v));
        if (s / want).log2().abs() <= READY_BITS {
            return self.drop_to(v, level);
        }
        if l > level {
            return self.retarget(v, level, want);
        }
        Err(format!(
            "polynomial input at level {l} has scale 2^{:.3}, 2^{:.3} wanted, and no level to spare (layer {})",
            s.log2(),
            want.log2(),
            self.layer_name()
        ))
    }

    /// `v` at the lower `level`, near that level's canonical scale: dropped
    /// when its scale is within [`READY_BITS`] of it, else retargeted onto it
    /// (free of levels, since it drops anyway). Keeps products of values from
    /// different levels near the primes across a change of prime size.
    pub fn drop_near(&mut self, v: ValueId, level: u32) -> Result<ValueId, String> {
        let (l, s) = (self.level(v), self.scale(v));
        let c = self.canonical(level);
        if l > level && (s / c).log2().abs() > READY_BITS {
            return self.retarget(v, level, c);
        }
        self.drop_to(v, level)
    }

    /// `Σ_k c_k·T_k(u)` by `plan`, `u` the input (its scale near the
    /// canonical one of its level); the result is at `out_level` with scale
    /// `target` (up to f64 rounding).
    pub fn odd_poly(
        &mut self,
        plan: &Plan,
        u: ValueId,
        out_level: u32,
        target: f64,
    ) -> Result<ValueId, String> {
        let n = plan.steps.len() + 1;
        let mut reg: Vec<Option<ValueId>> = vec![None; n];
        reg[0] = Some(u);
        let mut lowered: HashMap<(ValueId, u32), ValueId> = HashMap::new();
        let mut lower = |b: &mut Self, v: ValueId, level: u32| -> Result<ValueId, String> {
            if b.level(v) == level {
                return Ok(v);
            }
            if let Some(&w) = lowered.get(&(v, level)) {
                return Ok(w);
            }
            let w = b.drop_near(v, level)?;
            lowered.insert((v, level), w);
            Ok(w)
        };
        // 1. The power basis, forward, at natural levels.
        for (i, s) in plan.steps.iter().enumerate() {
            if let Step::Chebyshev { a, b, c, .. } = s {
                let (ra, rb) = (reg[*a].expect("defined"), reg[*b].expect("defined"));
                let m = self.level(ra).min(self.level(rb));
                let ra = lower(self, ra, m)?;
                let rb = lower(self, rb, m)?;
                let (sa, sb) = (self.scale(ra), self.scale(rb));
                let p = self.push(Op::Mul { a: ra, b: rb })?;
                let p2 = self.push(Op::MulInt { a: p, k: 2 })?;
                let t = match c {
                    Some(c) => {
                        let rc = lower(self, reg[*c].expect("defined"), m)?;
                        let sc = self.scale(rc);
                        let cc = self.push(Op::MulConst {
                            a: rc,
                            c: 1.0,
                            scale: sa * sb / sc,
                        })?;
                        self.push(Op::Sub { a: p2, b: cc })?
                    }
                    None => self.push(Op::AddConst { a: p2, c: -1.0 })?,
                };
                reg[i + 1] = Some(self.push(Op::Rescale { a: t })?);
            }
        }
        // 2. Targets of the evaluation tree, from the output down; the
        // giant steps are lowered to their products' levels here, so each
        // quotient's target uses the scale the product will see.
        let mut target_of: HashMap<usize, (u32, f64)> = HashMap::new();
        let mut giant_at: HashMap<usize, ValueId> = HashMap::new();
        let mut stack = vec![(plan.output, out_level, target)];
        while let Some((r, l, t)) = stack.pop() {
            if r == 0 {
                return Err("the polynomial is the identity of its input".into());
            }
            if target_of.insert(r, (l, t)).is_some() {
                return Err(format!("register {r} of the plan is used twice"));
            }
            match &plan.steps[r - 1] {
                Step::Add { a, b } => {
                    stack.push((*a, l, t));
                    stack.push((*b, l, t));
                }
                Step::Mul { a, b } => {
                    let g = reg[*b].ok_or("a product's second factor must be a power")?;
                    let lg = self.level(g);
                    if lg < l + 1 {
                        return Err(format!(
                            "giant step at level {lg}, the product needs level {}",
                            l + 1
                        ));
                    }
                    let g = lower(self, g, l + 1)?;
                    giant_at.insert(r, g);
                    let tq = t * self.q(l + 1) / self.scale(g);
                    stack.push((*a, l + 1, tq));
                }
                Step::Linear { .. } => {}
                Step::Chebyshev { .. } => {
                    return Err("a power feeds the output directly".into());
                }
            }
        }
        // 3. The tree, in plan order.
        for (i, s) in plan.steps.iter().enumerate() {
            let r = i + 1;
            let Some(&(l, t)) = target_of.get(&r) else {
                continue;
            };
            let v = match s {
                Step::Linear { terms } => {
                    let mut acc: Option<ValueId> = None;
                    let qn = self.q(l + 1);
                    let nonzero: Vec<(usize, f64)> =
                        terms.iter().copied().filter(|&(_, w)| w != 0.0).collect();
                    let use_terms = if nonzero.is_empty() {
                        vec![(terms.first().map_or(0, |t| t.0), 0.0)]
                    } else {
                        nonzero
                    };
                    for (g, w) in use_terms {
                        let x = reg[g].expect("defined");
                        if self.level(x) < l + 1 {
                            return Err(format!(
                                "leaf term at level {}, the leaf needs level {}",
                                self.level(x),
                                l + 1
                            ));
                        }
                        let x = lower(self, x, l + 1)?;
                        let sigma = t * qn / self.scale(x);
                        let term = self.push(Op::MulConst {
                            a: x,
                            c: w,
                            scale: sigma,
                        })?;
                        acc = Some(match acc {
                            None => term,
                            Some(s) => self.push(Op::Add { a: s, b: term })?,
                        });
                    }
                    self.push(Op::Rescale {
                        a: acc.expect("one term"),
                    })?
                }
                Step::Mul { a, .. } => {
                    let q = reg[*a].expect("quotient evaluated first");
                    let g = giant_at[&r];
                    let p = self.push(Op::Mul { a: q, b: g })?;
                    self.push(Op::Rescale { a: p })?
                }
                Step::Add { a, b } => {
                    let (x, y) = (reg[*a].expect("defined"), reg[*b].expect("defined"));
                    self.push(Op::Add { a: x, b: y })?
                }
                Step::Chebyshev { .. } => unreachable!("powers are not targets"),
            };
            if self.level(v) != l {
                return Err(format!(
                    "plan register {r} landed at level {}, planned {l}",
                    self.level(v)
                ));
            }
            reg[r] = Some(v);
        }
        Ok(reg[plan.output].expect("output evaluated"))
    }

    /// Declares `v` to hold ciphertext `ct` of `layout`.
    pub fn reinterpret(&mut self, v: ValueId, layout: u32, ct: u32) -> Result<ValueId, String> {
        if self.node(v).placement == Some(Placement { layout, ct }) {
            return Ok(v);
        }
        self.push(Op::Reinterpret { a: v, layout, ct })
    }
}

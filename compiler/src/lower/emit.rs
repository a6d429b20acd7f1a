//! The level graph, the schedule, and the emission of ciphertext ops.

use super::cost::{circuit_seconds, CostModel};
use super::layouts::LayoutPlan;
use super::partition::Partition;
use super::schedule::{self, LevelGraph, LevelModel, Ready, Schedule};
use super::{LowerError, LowerOptions, LowerReport, Lowered};
use ir::circuit::builder::Builder;
use ir::circuit::{
    Circuit, InputSpec, Method, Op as COp, OutputSpec, Params, Plain, Region, RegionOutput,
    Transform, TransformSpec, ValueId,
};
use ir::poly::{Plan, Step};
use ir::{ApproxMaxPool, ApproxRelu, Graph, NodeId, Op};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Where a pairwise maximum reads an operand from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    /// The pool's input, mapped to `t = x·s (+ 1/2 when padded)`.
    Input,
    /// The result of an earlier maximum of the same pool.
    Max(usize),
}

/// One round of approximate maxima `max(a, rot(b, δ))` over all slots.
struct MaxRec {
    a: Src,
    b: Src,
    delta: u64,
    /// For feature maps spanning several ciphertexts, `rot(b, δ)` is a
    /// linear transform (region, padded layout it reads) instead of a
    /// rotation: the shift crosses ciphertexts.
    shift: Option<(u32, u32)>,
    /// The pair's node (the source itself when `a == b`).
    pair: usize,
    pair_edges: Option<(usize, usize)>,
    comps: Vec<(usize, usize)>,
    g_edge: usize,
    d_edge: usize,
    prod: usize,
    sum_edge: usize,
    prod_edge: usize,
    out: usize,
}

struct ReluRec {
    comps: Vec<(usize, usize)>,
    g_edge: usize,
    x_edge: usize,
    y: usize,
}

struct PoolRec {
    maxes: Vec<MaxRec>,
    padded: bool,
}

/// The plans of a composite sign with each component's half-width.
struct SignPlans {
    plans: Vec<Plan>,
    half_widths: Vec<f64>,
    alpha: u32,
}

impl SignPlans {
    fn new(sign: &ir::CompositeSign) -> Self {
        SignPlans {
            plans: sign.components.iter().map(|c| c.plan()).collect(),
            half_widths: sign.components.iter().map(|c| c.half_width).collect(),
            alpha: sign.alpha,
        }
    }

    /// Bound of component `i`'s output: the next component's domain, or
    /// `1 + 2^(1−α)` for the last.
    fn bound(&self, i: usize) -> f64 {
        self.half_widths
            .get(i + 1)
            .copied()
            .unwrap_or(1.0 + 2f64.powi(1 - self.alpha as i32))
    }

    fn leaf_terms(p: &Plan) -> usize {
        p.steps
            .iter()
            .map(|s| match s {
                Step::Linear { terms } => terms.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Seconds of each unit by level.
struct Times<'a> {
    m: &'a CostModel,
    top: u32,
}

impl Times<'_> {
    fn by_level(&self, f: impl Fn(u32) -> f64) -> Vec<f64> {
        (0..=self.top).map(f).collect()
    }
    fn poly(&self, p: &Plan, cts: usize) -> Vec<f64> {
        let terms = SignPlans::leaf_terms(p);
        self.by_level(|l| {
            cts as f64
                * (p.mults as f64 * (self.m.mul_relin(l) + self.m.rescale(l))
                    + terms as f64 * self.m.mul_plain(l))
        })
    }
    fn product(&self, cts: usize) -> Vec<f64> {
        self.by_level(|l| cts as f64 * (self.m.mul_relin(l) + self.m.rescale(l)))
    }
    fn scalar(&self, cts: usize) -> Vec<f64> {
        self.by_level(|l| cts as f64 * (self.m.mul_plain(l) + self.m.rescale(l)))
    }
    /// A linear transform (every output ciphertext's program and fold) and
    /// its rescale.
    fn transform(&self, t: &Transform) -> Vec<f64> {
        self.by_level(|l| {
            let fold = self.m.fold(l, t.fold_rotations().len());
            t.per_ct
                .iter()
                .map(|b| self.m.transform_program(l, b) + fold + self.m.rescale(l))
                .sum()
        })
    }
    fn zero(&self) -> Vec<f64> {
        vec![0.0; self.top as usize + 1]
    }
}

fn unsupported(node: &str, msg: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: node.to_string(),
        msg: msg.into(),
    }
}

/// The factor each tensor value's scale should carry relative to the
/// canonical one, for the polynomial that reads it: `1/B` before a ReLU
/// (whose input is `x/B`), the map's `s` before a max-pool.
fn factor_of(graph: &Graph, v: NodeId) -> Result<f64, LowerError> {
    let mut f: Option<f64> = None;
    for u in graph.users(v) {
        let want = match &graph.node(u).op {
            Op::ApproxRelu(a) => 1.0 / (a.bound * a.sign.components[0].half_width),
            Op::ApproxMaxPool(a) => a.input_scale / a.sign.components[0].half_width,
            _ => continue,
        };
        if let Some(have) = f {
            if ((have - want) / want).abs() > 1e-12 {
                return Err(unsupported(
                    &graph.node(v).name,
                    "read by two polynomial approximations with different input ranges",
                ));
            }
        }
        f = Some(want);
    }
    Ok(f.unwrap_or(1.0))
}

/// The range of a tensor value when a polynomial reads it (its bound).
fn bound_of(graph: &Graph, v: NodeId) -> Option<f64> {
    let node = graph.node(v);
    let own = match &node.op {
        Op::ApproxRelu(a) => Some(a.bound * (1.0 + 2f64.powi(1 - a.sign.alpha as i32))),
        Op::ApproxMaxPool(a) => Some(a.bound * (1.0 + 2f64.powi(1 - a.sign.alpha as i32))),
        _ => None,
    };
    own.or_else(|| {
        graph
            .users(v)
            .iter()
            .find_map(|&u| match &graph.node(u).op {
                Op::ApproxRelu(a) => Some(a.bound),
                Op::ApproxMaxPool(a) => Some(a.bound),
                _ => None,
            })
    })
}

/// Every linear region of `part` with its transforms planned: the diagonal
/// index sets in parallel, then the baby-step giant-step splits. Depends on
/// the graph's structure (which weights are non-zero), not on the values
/// of its weights or its polynomials.
pub(super) fn plan_regions(
    graph: &Graph,
    part: &Partition,
    plan: &LayoutPlan,
) -> Result<Vec<Region>, LowerError> {
    let slots = plan.slots;
    // Regions with their transforms: the diagonal index sets in parallel,
    // then the baby-step giant-step splits, largest transforms first, each
    // preferring rotations whose keys an earlier one already needs.
    type Structure = Vec<BTreeMap<usize, std::collections::BTreeSet<u64>>>;
    type Planned = Vec<Vec<Option<(Method, Structure)>>>;
    let structures: Vec<Planned> = part
        .regions
        .par_iter()
        .enumerate()
        .map(|(r, def)| -> Result<Planned, LowerError> {
            let inputs: Vec<u32> = def.inputs.iter().map(|i| plan.of[i]).collect();
            let region = Region {
                name: def.name.clone(),
                graph: def.graph.clone(),
                inputs: inputs.clone(),
                outputs: vec![],
            };
            let mut outputs = Vec::new();
            for (k, o) in def.outputs.iter().enumerate() {
                let layout = plan.of[o];
                let kind = plan.methods[&(r, k)];
                let mut per_input = Vec::new();
                for (i, &il) in inputs.iter().enumerate() {
                    // The fold sums one period of the input.
                    let period = plan.layouts[il as usize].period();
                    let method = match kind {
                        Method::Fold { step, .. } if step <= period => Method::Fold {
                            step,
                            count: period / step,
                        },
                        _ => Method::Diagonal,
                    };
                    let spec = TransformSpec {
                        region: &region,
                        output: k,
                        input: i,
                        in_layout: &plan.layouts[il as usize],
                        out_layout: &plan.layouts[layout as usize],
                        method,
                    };
                    let cts = plan.layouts[layout as usize].cts();
                    let mut per_ct = Vec::with_capacity(cts);
                    for ct in 0..cts {
                        per_ct.push(spec.structure(ct).map_err(|e| unsupported(&def.name, e))?);
                    }
                    let any = per_ct.iter().any(|k| k.values().any(|d| !d.is_empty()));
                    per_input.push(any.then_some((method, per_ct)));
                }
                if per_input.iter().all(Option::is_none) {
                    return Err(unsupported(
                        &graph.node(*o).name,
                        "a constant output of a linear region is not supported",
                    ));
                }
                outputs.push(per_input);
            }
            Ok(outputs)
        })
        .collect::<Result<_, _>>()?;
    let mut order: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for (r, outs) in structures.iter().enumerate() {
        for (k, ins) in outs.iter().enumerate() {
            for (i, t) in ins.iter().enumerate() {
                if let Some((_, per_ct)) = t {
                    for (ct, keys) in per_ct.iter().enumerate() {
                        let size: usize = keys.values().map(|d| d.len()).sum();
                        order.push((size, r, k, i, ct));
                    }
                }
            }
        }
    }
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.cmp(b)));
    let mut have: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    let mut programs: BTreeMap<(usize, usize, usize, usize), ir::circuit::Bsgs> = BTreeMap::new();
    for &(_, r, k, i, ct) in &order {
        let (method, per_ct) = structures[r][k][i].as_ref().expect("planned");
        let p = ir::circuit::linear::plan_bsgs_shared(&per_ct[ct], slots, &have, KEY_COST);
        let (b, g) = p.rotations();
        have.extend(b);
        have.extend(g);
        let t = Transform {
            method: *method,
            per_ct: vec![],
        };
        have.extend(t.fold_rotations());
        programs.insert((r, k, i, ct), p);
    }
    let regions: Vec<Region> = part
        .regions
        .iter()
        .enumerate()
        .map(|(r, def)| Region {
            name: def.name.clone(),
            graph: def.graph.clone(),
            inputs: def.inputs.iter().map(|i| plan.of[i]).collect(),
            outputs: def
                .outputs
                .iter()
                .enumerate()
                .map(|(k, o)| RegionOutput {
                    layout: plan.of[o],
                    transforms: structures[r][k]
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            t.as_ref().map(|(method, per_ct)| Transform {
                                method: *method,
                                per_ct: (0..per_ct.len())
                                    .map(|ct| programs.remove(&(r, k, i, ct)).expect("planned"))
                                    .collect(),
                            })
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(regions)
}

/// How far [`lower_with`] goes.
pub(super) enum Goal<'a> {
    /// The level graph and its schedule only.
    Estimate,
    /// The verified circuit.
    Circuit(&'a LowerOptions<'a>),
}

/// What [`lower_with`] produced.
pub(super) enum Outcome {
    Estimate(super::Estimate),
    Circuit(Box<Lowered>),
}

pub(super) fn lower_with(
    graph: &Graph,
    part: &Partition,
    plan: LayoutPlan,
    params: Params,
    mut regions: Vec<Region>,
    goal: Goal,
) -> Result<Outcome, LowerError> {
    let slots = plan.slots;
    let cost = CostModel::for_preset(&params.preset, slots, (1usize << params.log_n) / 2);
    let top = params.max_level();
    let input = graph.inputs()[0];
    let mut layouts = plan.layouts.clone();
    // Shift regions of pooling rounds over several ciphertexts, by (pool
    // input layout, δ).
    let mut shifts: BTreeMap<(u32, u64), (u32, u32)> = BTreeMap::new();

    // The level graph.
    let times = Times { m: &cost, top };
    let mut lg = LevelGraph::default();
    let mut node_of: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut region_edges: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
    let mut relus: BTreeMap<NodeId, ReluRec> = BTreeMap::new();
    let mut pools: BTreeMap<NodeId, PoolRec> = BTreeMap::new();
    let mut lbound: Vec<f64> = Vec::new();
    let cts_of = |v: NodeId| plan.layouts[plan.of[&v] as usize].cts();
    let add_node =
        |lg: &mut LevelGraph, lbound: &mut Vec<f64>, name: String, cts, bound: Option<f64>| {
            lbound.push(bound.unwrap_or(0.0));
            lg.node(name, cts, bound.is_some())
        };
    for &v in &part.values {
        let node = graph.node(v);
        let cts = cts_of(v);
        match &node.op {
            Op::Input => {
                let n = add_node(&mut lg, &mut lbound, node.name.clone(), cts, None);
                node_of.insert(v, n);
            }
            Op::ApproxRelu(a) => {
                let x = node_of[&graph.operands(v)[0]];
                let sp = SignPlans::new(&a.sign);
                let mut comps = Vec::new();
                let mut prev = x;
                for (i, p) in sp.plans.iter().enumerate() {
                    let name = format!("{}.p{}", node.name, i + 1);
                    let n = add_node(&mut lg, &mut lbound, name, cts, Some(sp.bound(i)));
                    let e = lg.edge(prev, n, p.depth as u32, Ready::Poly, times.poly(p, cts));
                    comps.push((n, e));
                    prev = n;
                }
                let y = add_node(
                    &mut lg,
                    &mut lbound,
                    node.name.clone(),
                    cts,
                    bound_of(graph, v),
                );
                let g_edge = lg.edge(prev, y, 1, Ready::Exact, times.product(cts));
                let x_edge = lg.edge(x, y, 1, Ready::Any, times.zero());
                node_of.insert(v, y);
                relus.insert(
                    v,
                    ReluRec {
                        comps,
                        g_edge,
                        x_edge,
                        y,
                    },
                );
            }
            Op::ApproxMaxPool(a) => {
                let xv = graph.operands(v)[0];
                let x = node_of[&xv];
                let l = &plan.layouts[plan.of[&xv] as usize];
                let ir::circuit::Layout::Grid {
                    row, col, cts: lc, ..
                } = l
                else {
                    return Err(unsupported(&node.name, "max-pooling needs a grid input"));
                };
                // Windows stay inside a ciphertext when every frame block
                // does; otherwise shifts go through linear transforms.
                let crossing = *lc > 1 && plan.frame[0] * plan.frame[1] > slots;
                let (row, col) = (*row, *col);
                let padded = !a.pool.pads.is_zero();
                if padded && !is_clean(graph, xv) {
                    return Err(unsupported(
                        &node.name,
                        "padded max-pooling of a value with garbage outside its layout (another max-pool's output) is not implemented",
                    ));
                }
                let sp = SignPlans::new(&a.sign);
                let virtual_slots = if crossing {
                    (*lc * slots) as u64
                } else {
                    slots as u64
                };
                let ops = pool_ops(a.pool.kernel, row, col, virtual_slots);
                let mut maxes: Vec<MaxRec> = Vec::new();
                for (mi, &(sa, sb, delta)) in ops.iter().enumerate() {
                    let src = |s: Src, maxes: &Vec<MaxRec>| match s {
                        Src::Input => x,
                        Src::Max(k) => maxes[k].out,
                    };
                    let (na, nb) = (src(sa, &maxes), src(sb, &maxes));
                    let shift = if crossing {
                        let key = (plan.of[&xv], delta);
                        Some(*shifts.entry(key).or_insert_with(|| {
                            let (padded, shifted) =
                                shift_layouts(&layouts[plan.of[&xv] as usize], a, delta);
                            layouts.push(padded);
                            layouts.push(shifted);
                            let (lp, ls) = (layouts.len() as u32 - 2, layouts.len() as u32 - 1);
                            regions.push(shift_region(&layouts, lp, ls, &node.name, delta, slots));
                            (regions.len() as u32 - 1, lp)
                        }))
                    } else {
                        None
                    };
                    let (pair, pair_edges) = if let Some((sr, _)) = shift {
                        let p = add_node(
                            &mut lg,
                            &mut lbound,
                            format!("{}.m{}.pair", node.name, mi + 1),
                            cts,
                            None,
                        );
                        let ea = lg.edge(na, p, 0, Ready::Exact, times.zero());
                        let t = regions[sr as usize].outputs[0].transforms[0]
                            .as_ref()
                            .expect("shift transform");
                        let time = times.transform(t);
                        let eb = lg.edge(nb, p, 1, Ready::Any, time);
                        (p, Some((ea, eb)))
                    } else if sa == sb {
                        (na, None)
                    } else {
                        let p = add_node(
                            &mut lg,
                            &mut lbound,
                            format!("{}.m{}.pair", node.name, mi + 1),
                            cts,
                            None,
                        );
                        let ea = lg.edge(na, p, 0, Ready::Exact, times.zero());
                        let eb = lg.edge(nb, p, 0, Ready::Exact, times.zero());
                        (p, Some((ea, eb)))
                    };
                    let mut comps = Vec::new();
                    let mut prev = pair;
                    for (i, p) in sp.plans.iter().enumerate() {
                        let name = format!("{}.m{}.p{}", node.name, mi + 1, i + 1);
                        let n = add_node(&mut lg, &mut lbound, name, cts, Some(sp.bound(i)));
                        let e = lg.edge(prev, n, p.depth as u32, Ready::Poly, times.poly(p, cts));
                        comps.push((n, e));
                        prev = n;
                    }
                    let prod = add_node(
                        &mut lg,
                        &mut lbound,
                        format!("{}.m{}.prod", node.name, mi + 1),
                        cts,
                        Some(1.0),
                    );
                    let g_edge = lg.edge(prev, prod, 1, Ready::Exact, times.product(cts));
                    let d_edge = lg.edge(pair, prod, 1, Ready::Any, times.zero());
                    let last = mi + 1 == ops.len();
                    let out_bound = if last {
                        bound_of(graph, v)
                    } else {
                        Some(1.0 + 2f64.powi(1 - a.sign.alpha as i32))
                    };
                    let out = add_node(
                        &mut lg,
                        &mut lbound,
                        if last {
                            node.name.clone()
                        } else {
                            format!("{}.m{}", node.name, mi + 1)
                        },
                        cts,
                        out_bound,
                    );
                    let sum_edge = lg.edge(pair, out, 1, Ready::Any, times.scalar(cts));
                    let prod_edge = lg.edge(prod, out, 0, Ready::Exact, times.zero());
                    maxes.push(MaxRec {
                        a: sa,
                        b: sb,
                        delta: if shift.is_some() { 0 } else { delta },
                        shift,
                        pair,
                        pair_edges,
                        comps,
                        g_edge,
                        d_edge,
                        prod,
                        sum_edge,
                        prod_edge,
                        out,
                    });
                }
                if maxes.is_empty() {
                    return Err(unsupported(
                        &node.name,
                        "a 1×1 max-pool: nothing to compare (remove it)",
                    ));
                }
                node_of.insert(v, maxes.last().expect("one").out);
                pools.insert(v, PoolRec { maxes, padded });
            }
            _ => {
                let (r, k) = part.region_output[&v];
                let reg = &regions[r];
                let n = add_node(
                    &mut lg,
                    &mut lbound,
                    node.name.clone(),
                    cts,
                    bound_of(graph, v),
                );
                let mut edges = Vec::new();
                for (i, t) in reg.outputs[k].transforms.iter().enumerate() {
                    let Some(t) = t else { continue };
                    let src = node_of[&part.regions[r].inputs[i]];
                    let time = times.transform(t);
                    let e = lg.edge(src, n, 1, Ready::Any, time);
                    edges.push((i, e));
                }
                node_of.insert(v, n);
                region_edges.insert((r, k), edges);
            }
        }
    }
    let out_node = graph.outputs()[0];
    let sink = lg.node("output", 0, false);
    lbound.push(0.0);
    lg.edge(node_of[&out_node], sink, 0, Ready::Any, times.zero());
    let bs = params.bootstrap.as_ref();
    let canon = ir::circuit::builder::canonical_scales(&params.q);
    let model = LevelModel {
        fresh: params.fresh_level,
        top,
        bootstrap_level: bs.map(|b| b.output_level),
        bootstrap_poly_fix: bs.map_or(0, |b| {
            let s = b.output_scale;
            let c = canon[b.output_level as usize];
            u32::from((s / c).log2().abs() > ir::circuit::builder::READY_BITS)
        }),
        bootstrap_seconds: cost.bootstrap,
    };
    let source = node_of[&input];
    let sched = schedule::schedule(&lg, source, sink, &model).map_err(|e| match e {
        schedule::ScheduleError::NotSeriesParallel(m) | schedule::ScheduleError::Infeasible(m) => {
            LowerError::Schedule(m)
        }
    })?;
    let critical = schedule::critical_depth(&lg, source);
    let opts = match goal {
        Goal::Estimate => {
            return Ok(Outcome::Estimate(super::Estimate {
                bootstraps: sched.bootstraps,
                seconds: sched.seconds,
                critical_depth: critical,
            }))
        }
        Goal::Circuit(opts) => opts,
    };

    // The circuit skeleton.
    let input_factor = factor_of(graph, input)?;
    let in_node = graph.node(input);
    let circuit = Circuit {
        name: opts.name.clone(),
        input: InputSpec {
            name: in_node.name.clone(),
            shape: in_node.shape.clone(),
            layout: plan.of[&input],
            level: params.fresh_level,
            scale: canon[params.fresh_level as usize] * input_factor,
            range: opts.input_range,
            preprocess: opts.preprocess.clone(),
        },
        output: OutputSpec {
            name: graph.node(out_node).name.clone(),
            shape: graph.node(out_node).shape.clone(),
            layout: plan.of[&out_node],
            values: vec![],
        },
        layouts,
        regions,
        plains: vec![],
        layers: vec![],
        nodes: vec![],
        rotations: BTreeMap::new(),
        notes: BTreeMap::new(),
        params,
    };
    let mut em = Emitter {
        b: Builder::new(circuit),
        sched: &sched,
        lg: &lg,
        lbound: &lbound,
        nat: vec![None; lg.nodes.len()],
        copy: vec![None; lg.nodes.len()],
    };
    em.b.set_layer(&in_node.name, "Input");
    let cts_in = em.b.circuit.layouts[plan.of[&input] as usize].cts();
    let inputs: Vec<ValueId> = (0..cts_in as u32)
        .map(|ct| em.b.push(COp::Input { ct }))
        .collect::<Result<_, _>>()
        .map_err(LowerError::Internal)?;
    em.produced(source, inputs)?;
    for &v in &part.values {
        let node = graph.node(v);
        match &node.op {
            Op::Input => {}
            Op::ApproxRelu(a) => {
                em.b.set_layer(&node.name, "ApproxRelu");
                em.relu(graph, v, a, &relus[&v])?;
            }
            Op::ApproxMaxPool(a) => {
                em.b.set_layer(&node.name, "ApproxMaxPool");
                em.pool(
                    graph,
                    v,
                    a,
                    &pools[&v],
                    node_of[&graph.operands(v)[0]],
                    plan.of[&graph.operands(v)[0]],
                    plan.of[&v],
                )?;
            }
            _ => {
                let (r, k) = part.region_output[&v];
                em.b.set_layer(&node.name, node.op.kind());
                em.region(graph, v, r, k, node_of[&v], &region_edges[&(r, k)])?;
            }
        }
    }
    let outs = em.nat[node_of[&out_node]]
        .clone()
        .ok_or_else(|| LowerError::Internal("the output was not computed".into()))?;
    let mut circuit = em.b.finish();
    circuit.output.values = outs;
    circuit.verify().map_err(|e| {
        LowerError::Internal(format!("the emitted circuit fails verification: {e}"))
    })?;
    let estimated_seconds = circuit_seconds(&circuit, &cost);
    let stats = circuit.stats();
    let lpb = model.bootstrap_level.unwrap_or(0);
    let lower_bound = if lpb == 0 {
        0
    } else {
        critical.saturating_sub(model.fresh).div_ceil(lpb)
    };
    let report = LowerReport {
        slots,
        frame: plan.frame,
        bootstraps: stats.bootstraps as u32,
        bootstrap_lower_bound: lower_bound,
        critical_depth: critical,
        fresh_levels: model.fresh,
        levels_per_bootstrap: lpb,
        estimated_seconds,
    };
    for (k, v) in [
        ("bootstraps", report.bootstraps.to_string()),
        (
            "bootstrap_lower_bound",
            report.bootstrap_lower_bound.to_string(),
        ),
        ("critical_depth", report.critical_depth.to_string()),
        (
            "estimated_seconds",
            format!("{:.1}", report.estimated_seconds),
        ),
        ("frame", format!("{}x{}", plan.frame[0], plan.frame[1])),
    ] {
        circuit.notes.insert(k.to_string(), v);
    }
    for &v in &part.values {
        let node = graph.node(v);
        let alpha = match &node.op {
            Op::ApproxRelu(a) => a.sign.alpha,
            Op::ApproxMaxPool(a) => a.sign.alpha,
            _ => continue,
        };
        circuit
            .notes
            .insert(ir::circuit::alpha_note(&node.name), alpha.to_string());
    }
    Ok(Outcome::Circuit(Box::new(Lowered { circuit, report })))
}

/// The pool input's grid extended by the pool's padding (every position a
/// window or a partial maximum occupies), and the same shifted by `−δ`.
fn shift_layouts(
    l: &ir::circuit::Layout,
    a: &ApproxMaxPool,
    delta: u64,
) -> (ir::circuit::Layout, ir::circuit::Layout) {
    let ir::circuit::Layout::Grid {
        shape,
        base,
        row,
        col,
        cts,
        slots,
    } = l
    else {
        unreachable!("pools read grids");
    };
    let total = (*cts * *slots) as u64;
    let p = a.pool.pads;
    let back = (p.top as u64 * row + p.left as u64 * col) % total;
    let padded_shape = [
        shape[0],
        shape[1] + p.top + p.bottom,
        shape[2] + p.left + p.right,
    ];
    let grid = |off: u64| ir::circuit::Layout::Grid {
        shape: padded_shape,
        base: base
            .iter()
            .map(|&b| (b + 2 * total - back - off) % total)
            .collect(),
        row: *row,
        col: *col,
        cts: *cts,
        slots: *slots,
    };
    (grid(0), grid(delta % total))
}

/// The identity map from the padded layout `from` to its shifted copy `to`:
/// a rotation by δ of a tensor spread over several ciphertexts.
fn shift_region(
    layouts: &[ir::circuit::Layout],
    from: u32,
    to: u32,
    name: &str,
    delta: u64,
    slots: usize,
) -> Region {
    let shape = layouts[from as usize].shape();
    let mut g = Graph::new(format!("{name}.shift{delta}"));
    let mut full = vec![1];
    full.extend(&shape);
    let x = g.add_input("in", full).expect("fresh graph");
    let y = g.add("shift", Op::Identity, &[x]).expect("identity");
    g.set_outputs(vec![y]);
    let mut region = Region {
        name: format!("{name}.shift{delta}"),
        graph: g,
        inputs: vec![from],
        outputs: vec![],
    };
    let out = &layouts[to as usize];
    let spec = TransformSpec {
        region: &region,
        output: 0,
        input: 0,
        in_layout: &layouts[from as usize],
        out_layout: out,
        method: Method::Diagonal,
    };
    let per_ct = (0..out.cts())
        .map(|ct| {
            let keys = spec.structure(ct).expect("an identity map expands");
            ir::circuit::linear::plan_bsgs(&keys, slots)
        })
        .collect();
    region.outputs.push(RegionOutput {
        layout: to,
        transforms: vec![Some(Transform {
            method: Method::Diagonal,
            per_ct,
        })],
    });
    region
}

/// Whether a value is zero in every slot its layout does not occupy.
fn is_clean(graph: &Graph, v: NodeId) -> bool {
    match &graph.node(v).op {
        Op::ApproxMaxPool(_) => false,
        Op::ApproxRelu(_) => is_clean(graph, graph.operands(v)[0]),
        _ => true,
    }
}

/// The rounds of pairwise maxima of a `kh×kw` window: each row reduced by
/// [`ir::tree_reduce`]'s pairing, then the rows; every round is one
/// `max(a, rot(b, δ))` over all slots. Returns `(a, b, δ)` per round.
fn pool_ops(kernel: [usize; 2], row: u64, col: u64, slots: u64) -> Vec<(Src, Src, u64)> {
    let mut ops: Vec<(Src, Src, u64)> = Vec::new();
    let reduce = |items: Vec<(Src, u64)>, ops: &mut Vec<(Src, Src, u64)>| -> (Src, u64) {
        let mut items = items;
        while items.len() > 1 {
            let mut next = Vec::new();
            let mut groups: BTreeMap<(Src, Src, u64), usize> = BTreeMap::new();
            let mut it = items.into_iter();
            while let Some((sa, oa)) = it.next() {
                match it.next() {
                    Some((sb, ob)) => {
                        let d = (ob + slots - oa % slots) % slots;
                        let key = (sa, sb, d);
                        let idx = *groups.entry(key).or_insert_with(|| {
                            ops.push(key);
                            ops.len() - 1
                        });
                        next.push((Src::Max(idx), oa));
                    }
                    None => next.push((sa, oa)),
                }
            }
            items = next;
        }
        items[0]
    };
    let row0: Vec<(Src, u64)> = (0..kernel[1])
        .map(|j| (Src::Input, j as u64 * col))
        .collect();
    let (rs, ro) = reduce(row0, &mut ops);
    let rows: Vec<(Src, u64)> = (0..kernel[0]).map(|i| (rs, ro + i as u64 * row)).collect();
    let _ = reduce(rows, &mut ops);
    ops
}

/// What a Galois key the circuit does not need yet costs when choosing a
/// transform's baby-step giant-step split, in hoisted baby rotations: keys
/// take 50–300 MB each at N = 2^16 and dominate the memory of an encrypted
/// run, so a split with a dozen more baby rotations that reuses existing
/// keys is preferred.
const KEY_COST: usize = 12;

/// Bootstrap inputs are divided by their bound times this margin: a value
/// at its bound (an inner component of a composite sign reaches ±1 exactly,
/// an input may sit at its calibrated bound) plus CKKS noise stays inside
/// `[−1, 1]`, at a cost of 0.09 bit of the bootstrap's precision.
pub const BOOTSTRAP_MARGIN: f64 = 1.0625;

struct Emitter<'a> {
    b: Builder,
    sched: &'a Schedule,
    lg: &'a LevelGraph,
    lbound: &'a [f64],
    nat: Vec<Option<Vec<ValueId>>>,
    copy: Vec<Option<Vec<ValueId>>>,
}

impl Emitter<'_> {
    fn err(e: String) -> LowerError {
        LowerError::Internal(e)
    }

    fn level(&self, n: usize) -> u32 {
        self.sched.level[n]
    }

    /// Records the natural value of level-graph node `n`, bootstrapping it
    /// when the schedule says so: divided by its bound (with
    /// [`BOOTSTRAP_MARGIN`]) so that the bootstrapper sees values in `[−1, 1]`.
    fn produced(&mut self, n: usize, vals: Vec<ValueId>) -> Result<(), LowerError> {
        if self.sched.bootstrapped[n] {
            let bound = self.lbound[n] * BOOTSTRAP_MARGIN;
            let mut copies = Vec::with_capacity(vals.len());
            for &v in &vals {
                let r = self
                    .b
                    .push(COp::Relabel {
                        a: v,
                        factor: bound,
                    })
                    .map_err(Self::err)?;
                let bs = self.b.push(COp::Bootstrap { a: r }).map_err(Self::err)?;
                copies.push(
                    self.b
                        .push(COp::Relabel {
                            a: bs,
                            factor: 1.0 / bound,
                        })
                        .map_err(Self::err)?,
                );
            }
            self.copy[n] = Some(copies);
        }
        self.nat[n] = Some(vals);
        Ok(())
    }

    /// The values edge `e` reads.
    fn fetch(&self, e: usize) -> Result<Vec<ValueId>, LowerError> {
        let from = self.lg.edges[e].from;
        let v = if self.sched.uses_copy[e] {
            &self.copy[from]
        } else {
            &self.nat[from]
        };
        v.clone().ok_or_else(|| {
            LowerError::Internal(format!(
                "{} is read before it is computed{}",
                self.lg.nodes[from].name,
                if self.sched.uses_copy[e] {
                    " (refreshed copy)"
                } else {
                    ""
                }
            ))
        })
    }

    /// `v` at `level` with exactly `scale`: dropped if its scale is right,
    /// else retargeted (which needs a level to spare).
    fn at(&mut self, v: ValueId, level: u32, scale: f64) -> Result<ValueId, LowerError> {
        if ir::circuit::scales_match(self.b.scale(v), scale) {
            self.b.drop_to(v, level).map_err(Self::err)
        } else {
            self.b.retarget(v, level, scale).map_err(Self::err)
        }
    }

    /// `rot(v, δ)` across ciphertexts: `v` declared in the padded layout,
    /// then the shift region's transform (one level) landing at `level`
    /// with `scale`.
    fn shift(
        &mut self,
        vals: &[ValueId],
        region: u32,
        padded: u32,
        level: u32,
        scale: f64,
    ) -> Result<Vec<ValueId>, LowerError> {
        let src: Vec<ValueId> = vals
            .iter()
            .enumerate()
            .map(|(ct, &x)| {
                let y = self.b.drop_near(x, level + 1)?;
                self.b.reinterpret(y, padded, ct as u32)
            })
            .collect::<Result<_, _>>()
            .map_err(Self::err)?;
        let s_in = self.b.scale(src[0]);
        let pt_scale = scale * self.b.q(level + 1) / s_in;
        (0..src.len() as u32)
            .map(|ct| {
                let lt = self.b.push(COp::LinearTransform {
                    inputs: src.clone(),
                    region,
                    output: 0,
                    input: 0,
                    ct,
                    scale: pt_scale,
                })?;
                self.b.push(COp::Rescale { a: lt })
            })
            .collect::<Result<_, _>>()
            .map_err(Self::err)
    }

    fn relabel_all(&mut self, vals: &[ValueId], factor: f64) -> Result<Vec<ValueId>, LowerError> {
        if factor == 1.0 {
            return Ok(vals.to_vec());
        }
        vals.iter()
            .map(|&v| self.b.push(COp::Relabel { a: v, factor }))
            .collect::<Result<_, _>>()
            .map_err(Self::err)
    }

    /// Emits one polynomial component on every ciphertext: input read by
    /// edge `e` (after dividing by `divide`), output at node `n`'s level
    /// with scale `target`.
    fn component(
        &mut self,
        plan: &Plan,
        input: Vec<ValueId>,
        divide: f64,
        out: usize,
        target: f64,
    ) -> Result<Vec<ValueId>, LowerError> {
        let out_level = self.level(out);
        let in_level = out_level + plan.depth as u32;
        let want = self.b.canonical(in_level);
        let u = self.relabel_all(&input, divide)?;
        let mut res = Vec::with_capacity(u.len());
        for &x in &u {
            let r = self.b.ready(x, in_level, want).map_err(Self::err)?;
            res.push(
                self.b
                    .odd_poly(plan, r, out_level, target)
                    .map_err(Self::err)?,
            );
        }
        Ok(res)
    }

    fn region(
        &mut self,
        graph: &Graph,
        v: NodeId,
        r: usize,
        k: usize,
        n: usize,
        edges: &[(usize, usize)],
    ) -> Result<(), LowerError> {
        let level = self.level(n);
        let target = self.b.canonical(level) * factor_of(graph, v)?;
        let out_layout = self.b.circuit.regions[r].outputs[k].layout;
        let cts = self.b.circuit.layouts[out_layout as usize].cts();
        let mut sums: Vec<Option<ValueId>> = vec![None; cts];
        for &(i, e) in edges {
            let src = self.fetch(e)?;
            let src: Vec<ValueId> = src
                .iter()
                .map(|&x| self.b.drop_near(x, level + 1))
                .collect::<Result<_, _>>()
                .map_err(Self::err)?;
            let s_in = self.b.scale(src[0]);
            let pt_scale = target * self.b.q(level + 1) / s_in;
            for (ct, sum) in sums.iter_mut().enumerate() {
                let lt = self
                    .b
                    .push(COp::LinearTransform {
                        inputs: src.clone(),
                        region: r as u32,
                        output: k as u32,
                        input: i as u32,
                        ct: ct as u32,
                        scale: pt_scale,
                    })
                    .map_err(Self::err)?;
                let y = self.b.push(COp::Rescale { a: lt }).map_err(Self::err)?;
                *sum = Some(match *sum {
                    None => y,
                    Some(s) => self.b.push(COp::Add { a: s, b: y }).map_err(Self::err)?,
                });
            }
        }
        let region = &self.b.circuit.regions[r];
        let has_bias = ir::circuit::linear::bias_slots(
            region,
            k,
            &self.b.circuit.layouts[out_layout as usize],
        )
        .map_err(|e| unsupported(&graph.node(v).name, e))?
        .iter()
        .any(|c| c.iter().any(|&x| x != 0.0));
        let mut out = Vec::with_capacity(cts);
        for (ct, s) in sums.into_iter().enumerate() {
            let mut s = s.ok_or_else(|| Self::err("no transform reached a ciphertext".into()))?;
            if has_bias {
                self.b.circuit.plains.push(Plain::Bias {
                    region: r as u32,
                    output: k as u32,
                    ct: ct as u32,
                });
                let plain = self.b.circuit.plains.len() as u32 - 1;
                s = self
                    .b
                    .push(COp::AddPlain { a: s, plain })
                    .map_err(Self::err)?;
            }
            out.push(s);
        }
        self.produced(n, out)
    }

    fn relu(
        &mut self,
        graph: &Graph,
        v: NodeId,
        a: &ApproxRelu,
        rec: &ReluRec,
    ) -> Result<(), LowerError> {
        let sp = SignPlans::new(&a.sign);
        let last = sp.plans.len() - 1;
        let y_level = self.level(rec.y);
        let y_target = self.b.canonical(y_level) * factor_of(graph, v)?;
        // The product's x (any scale: g's target absorbs it).
        let xs = self.fetch(rec.x_edge)?;
        let xs: Vec<ValueId> = xs
            .iter()
            .map(|&x| self.b.drop_near(x, y_level + 1))
            .collect::<Result<_, _>>()
            .map_err(Self::err)?;
        let s_x = self.b.scale(xs[0]);
        let g_target = y_target * self.b.q(y_level + 1) / s_x;
        for (i, &(n, e)) in rec.comps.iter().enumerate() {
            let input = self.fetch(e)?;
            let divide = if i == 0 {
                a.bound * sp.half_widths[0]
            } else {
                sp.half_widths[i]
            };
            let out = if i == last {
                // g = 1/2 + p/2, landing where the product needs it (or
                // canonical if the product reads a refreshed copy).
                let half = sp.plans[i].scaled(0.5);
                let target = if self.sched.uses_copy[rec.g_edge] {
                    self.b.canonical(self.level(n))
                } else {
                    g_target
                };
                let p = self.component(&half, input, divide, n, target)?;
                p.iter()
                    .map(|&x| self.b.push(COp::AddConst { a: x, c: 0.5 }))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Self::err)?
            } else {
                let target = self.b.canonical(self.level(n)) / sp.half_widths[i + 1];
                self.component(&sp.plans[i], input, divide, n, target)?
            };
            self.produced(n, out)?;
        }
        let gs = self.fetch(rec.g_edge)?;
        let mut ys = Vec::with_capacity(xs.len());
        for (&x, &g) in xs.iter().zip(&gs) {
            let g = self.at(g, y_level + 1, g_target)?;
            let p = self.b.push(COp::Mul { a: x, b: g }).map_err(Self::err)?;
            ys.push(self.b.push(COp::Rescale { a: p }).map_err(Self::err)?);
        }
        self.produced(rec.y, ys)
    }

    #[allow(clippy::too_many_arguments)]
    fn pool(
        &mut self,
        graph: &Graph,
        v: NodeId,
        a: &ApproxMaxPool,
        rec: &PoolRec,
        x_node: usize,
        x_layout: u32,
        out_layout: u32,
    ) -> Result<(), LowerError> {
        let sp = SignPlans::new(&a.sign);
        let last = sp.plans.len() - 1;
        let s = a.input_scale;
        // The mapped input t = x·s (+ 1/2 on the layout's slots when padded).
        let map_in = |em: &mut Self, vals: Vec<ValueId>| -> Result<Vec<ValueId>, LowerError> {
            let t = em.relabel_all(&vals, 1.0 / s)?;
            if !rec.padded {
                return Ok(t);
            }
            t.iter()
                .enumerate()
                .map(|(ct, &x)| {
                    em.b.circuit.plains.push(Plain::Mask {
                        layout: x_layout,
                        ct: ct as u32,
                        value: 0.5,
                    });
                    let plain = em.b.circuit.plains.len() as u32 - 1;
                    em.b.push(COp::AddPlain { a: x, plain }).map_err(Self::err)
                })
                .collect()
        };
        let fetch_src = |em: &mut Self, src: Src, e: usize| -> Result<Vec<ValueId>, LowerError> {
            let vals = em.fetch(e)?;
            match src {
                Src::Input => map_in(em, vals),
                Src::Max(_) => Ok(vals),
            }
        };
        let _ = x_node;
        let n_max = rec.maxes.len();
        for (mi, m) in rec.maxes.iter().enumerate() {
            let out_level = self.level(m.out);
            let final_round = mi + 1 == n_max;
            let out_target = if final_round {
                self.b.canonical(out_level) * factor_of(graph, v)? / s
            } else {
                self.b.canonical(out_level)
            };
            // The pair (a, b) at one level and scale, then d = a − rot(b, δ)
            // and s = a + rot(b, δ), computed once per distinct source.
            let mut memo: BTreeMap<Vec<ValueId>, (Vec<ValueId>, Vec<ValueId>)> = BTreeMap::new();
            let mut diff_sum =
                |em: &mut Self, e: usize, want_sum: bool| -> Result<Vec<ValueId>, LowerError> {
                    let (av, bv) = match m.pair_edges {
                        None => {
                            let x = fetch_src(em, m.a, e)?;
                            (x.clone(), x)
                        }
                        Some((ea, eb)) => {
                            let pl = em.level(m.pair);
                            let sc = em.b.canonical(pl);
                            let mut sides = Vec::new();
                            for (side, (src, ed)) in [(m.a, ea), (m.b, eb)].into_iter().enumerate()
                            {
                                let mut key = em.fetch(ed)?;
                                key.push(ValueId(side as u32));
                                if let Some(done) = memo.get(&key) {
                                    sides.push(done.0.clone());
                                    continue;
                                }
                                let vals = fetch_src(em, src, ed)?;
                                let vals = match (side, m.shift) {
                                    (1, Some((region, padded))) => {
                                        em.shift(&vals, region, padded, pl, sc)?
                                    }
                                    _ => vals
                                        .iter()
                                        .map(|&x| em.b.retarget(x, pl, sc))
                                        .collect::<Result<Vec<_>, _>>()
                                        .map_err(Self::err)?,
                                };
                                memo.insert(key, (vals.clone(), vec![]));
                                sides.push(vals);
                            }
                            let b = sides.pop().expect("two");
                            let a = sides.pop().expect("two");
                            (a, b)
                        }
                    };
                    let key: Vec<ValueId> = av.iter().chain(&bv).copied().collect();
                    if let Some((d, s)) = memo.get(&key) {
                        return Ok(if want_sum { s.clone() } else { d.clone() });
                    }
                    let mut ds = Vec::with_capacity(av.len());
                    let mut ss = Vec::with_capacity(av.len());
                    for (&x, &y) in av.iter().zip(&bv) {
                        let r = if m.delta == 0 {
                            y
                        } else {
                            em.b.push(COp::Rotate { a: y, k: m.delta })
                                .map_err(Self::err)?
                        };
                        ds.push(em.b.push(COp::Sub { a: x, b: r }).map_err(Self::err)?);
                        ss.push(em.b.push(COp::Add { a: x, b: r }).map_err(Self::err)?);
                    }
                    memo.insert(key, (ds.clone(), ss.clone()));
                    Ok(if want_sum { ss } else { ds })
                };
            // The sign composite on d.
            let prod_level = self.level(m.prod);
            let ds = diff_sum(self, m.d_edge, false)?;
            let ds: Vec<ValueId> = ds
                .iter()
                .map(|&x| self.b.drop_near(x, prod_level + 1))
                .collect::<Result<_, _>>()
                .map_err(Self::err)?;
            let s_d = self.b.scale(ds[0]);
            let prod_target = if prod_level == out_level {
                out_target
            } else {
                self.b.canonical(prod_level)
            };
            let g_target = prod_target * self.b.q(prod_level + 1) / s_d;
            for (i, &(n, e)) in m.comps.iter().enumerate() {
                let input = if i == 0 {
                    diff_sum(self, e, false)?
                } else {
                    self.fetch(e)?
                };
                let divide = sp.half_widths[i];
                let out = if i == last {
                    let half = sp.plans[i].scaled(0.5);
                    let target = if self.sched.uses_copy[m.g_edge] {
                        self.b.canonical(self.level(n))
                    } else {
                        g_target
                    };
                    self.component(&half, input, divide, n, target)?
                } else {
                    let target = self.b.canonical(self.level(n)) / sp.half_widths[i + 1];
                    self.component(&sp.plans[i], input, divide, n, target)?
                };
                self.produced(n, out)?;
            }
            let gs = self.fetch(m.g_edge)?;
            let mut prods = Vec::with_capacity(ds.len());
            for (&d, &g) in ds.iter().zip(&gs) {
                let g = self.at(g, prod_level + 1, g_target)?;
                let p = self.b.push(COp::Mul { a: d, b: g }).map_err(Self::err)?;
                prods.push(self.b.push(COp::Rescale { a: p }).map_err(Self::err)?);
            }
            self.produced(m.prod, prods)?;
            // out = (a + rot b)/2 + d·g.
            let sums = diff_sum(self, m.sum_edge, true)?;
            let prods = self.fetch(m.prod_edge)?;
            let mut outs = Vec::with_capacity(sums.len());
            for (&sv, &pv) in sums.iter().zip(&prods) {
                let sv = self.b.drop_near(sv, out_level + 1).map_err(Self::err)?;
                let sigma = out_target * self.b.q(out_level + 1) / self.b.scale(sv);
                let h = self
                    .b
                    .push(COp::MulConst {
                        a: sv,
                        c: 0.5,
                        scale: sigma,
                    })
                    .map_err(Self::err)?;
                let h = self.b.push(COp::Rescale { a: h }).map_err(Self::err)?;
                let hs = self.b.scale(h);
                let pv = self.at(pv, out_level, hs)?;
                outs.push(self.b.push(COp::Add { a: h, b: pv }).map_err(Self::err)?);
            }
            if final_round {
                // Back from t: x = (m − 1/2)/s, declared in the pool's layout.
                let mut xs = Vec::with_capacity(outs.len());
                for (ct, &o) in outs.iter().enumerate() {
                    let o = if rec.padded {
                        self.b
                            .push(COp::AddConst { a: o, c: -0.5 })
                            .map_err(Self::err)?
                    } else {
                        o
                    };
                    let o = self
                        .b
                        .push(COp::Relabel { a: o, factor: s })
                        .map_err(Self::err)?;
                    xs.push(
                        self.b
                            .reinterpret(o, out_layout, ct as u32)
                            .map_err(Self::err)?,
                    );
                }
                self.produced(m.out, xs)?;
            } else {
                self.produced(m.out, outs)?;
            }
        }
        Ok(())
    }
}

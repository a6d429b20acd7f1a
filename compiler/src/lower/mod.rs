//! Lowering: the approximated tensor graph → a ciphertext circuit.
//!
//! 1. [`partition`]: linear regions (convolutions, pooling, fully connected
//!    layers, scalings, residual sums …) and the polynomial ops between
//!    them.
//! 2. [`layouts`]: the slot layout of every value (multiplexed grids kept
//!    in place through strides and pooling; replicated vectors).
//! 3. Linear transforms: the diagonals of every region output from every
//!    input, planned as baby-step giant-step programs (one level each).
//! 4. [`schedule`]: the level graph (a node per ciphertext value, including
//!    every component of every composite polynomial) and the bootstrap
//!    placement minimising bootstraps, then estimated time ([`cost`]).
//! 5. Emission: ciphertext ops with exact scales through
//!    [`ir::circuit::builder::Builder`], then [`Circuit::verify`].
//!
//! Everything after the frontend is a pure function of the approximated
//! graph and the options.

pub mod cost;
mod emit;
pub mod layouts;
pub mod partition;
pub mod schedule;

use ir::circuit::{BootstrapSpec, Circuit, Params};
use ir::Graph;
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::ckks::bootstrapping::Bootstrapper;
use serde::{Deserialize, Serialize};

/// Why a graph could not be lowered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("node %{node}: {msg}")]
    Unsupported { node: String, msg: String },
    #[error("parameters: {0}")]
    Params(String),
    #[error("bootstrap placement: {0}")]
    Schedule(String),
    #[error("internal lowering error: {0}")]
    Internal(String),
}

/// The CKKS parameters a circuit is lowered for, by slot count.
pub trait ParamsSource {
    /// Slots per ciphertext at most (N/2).
    fn max_slots(&self) -> usize;
    /// The parameters (primes, bootstrapping contract) for `slots`.
    fn params(&self, slots: usize) -> Result<Params, String>;
}

/// One of the 128-bit bootstrapping presets at N = 2^16.
pub struct PresetParams(pub Preset);

impl ParamsSource for PresetParams {
    fn max_slots(&self) -> usize {
        1 << (self.0.log_n() - 1)
    }

    fn params(&self, slots: usize) -> Result<Params, String> {
        let log_slots = slots.trailing_zeros();
        let (literal, config) = self.0.build(log_slots);
        let params = runtime::ckks::Parameters::new(literal).map_err(|e| e.to_string())?;
        let bs = Bootstrapper::new(&params, config).map_err(|e| e.to_string())?;
        let c = bs.contract();
        Ok(Params {
            preset: self.0.name().to_string(),
            log_n: params.log_n(),
            slots,
            q: params.q().to_vec(),
            fresh_level: params.max_level() as u32,
            bootstrap: Some(bootstrap_spec(&params, c, bs.config())),
            log_qp: params.log_qp(),
            secure: params.is_secure(),
        })
    }
}

/// The circuit's view of a bootstrapper's contract.
pub fn bootstrap_spec(
    params: &runtime::ckks::Parameters,
    c: &runtime::ckks::bootstrapping::BootstrapContract,
    config: &runtime::ckks::bootstrapping::BootstrapConfig,
) -> BootstrapSpec {
    let q0 = params.q()[0] as f64;
    BootstrapSpec {
        output_level: c.output_level as u32,
        output_scale: c.output_scale,
        message_scale: q0 / 2f64.powi(config.log_message_ratio as i32),
        minimum_input_level: c.minimum_input_level as u32,
        precision_bits: c.output_precision_bits,
        depth: c.depth as u32,
        rotations: c
            .rotations
            .iter()
            .map(|&k| k.rem_euclid(params.max_slots() as i64) as u64)
            .collect(),
    }
}

/// Options of the lowering.
pub struct LowerOptions<'a> {
    pub name: String,
    pub params: &'a dyn ParamsSource,
    /// Largest |x| of the input over the calibration data.
    pub input_range: Option<f64>,
    /// The input preprocessing to record in the circuit.
    pub preprocess: Option<ir::circuit::Preprocessing>,
}

/// Per layer, what the schedule and the circuit do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub name: String,
    pub op: String,
    pub level_in: u32,
    pub level_out: u32,
    pub ciphertexts: usize,
    pub bootstraps: usize,
    pub rotations: usize,
    pub plain_products: usize,
    pub ct_products: usize,
}

/// What the lowering decided and measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LowerReport {
    pub slots: usize,
    pub frame: [usize; 2],
    pub bootstraps: u32,
    /// `⌈(critical-path depth − fresh levels) / levels per bootstrap⌉`.
    pub bootstrap_lower_bound: u32,
    /// Levels on the longest path of the level graph.
    pub critical_depth: u32,
    pub fresh_levels: u32,
    pub levels_per_bootstrap: u32,
    pub estimated_seconds: f64,
}

/// A lowered circuit and its report.
pub struct Lowered {
    pub circuit: Circuit,
    pub report: LowerReport,
}

/// Lowers `graph` (approximated: no exact ReLU or max-pool left) to a
/// verified circuit.
pub fn lower(graph: &Graph, opts: &LowerOptions) -> Result<Lowered, LowerError> {
    check_shape(graph)?;
    let part = partition::partition(graph)?;
    let plan = layouts::plan(graph, &part, opts.params.max_slots())?;
    let params = opts.params.params(plan.slots).map_err(LowerError::Params)?;
    let regions = emit::plan_regions(graph, &part, &plan)?;
    match emit::lower_with(
        graph,
        &part,
        plan,
        params,
        regions,
        emit::Goal::Circuit(opts),
    )? {
        emit::Outcome::Circuit(lowered) => Ok(*lowered),
        emit::Outcome::Estimate(_) => Err(LowerError::Internal("no circuit emitted".into())),
    }
}

fn check_shape(graph: &Graph) -> Result<(), LowerError> {
    graph
        .validate()
        .map_err(|e| LowerError::Internal(e.to_string()))?;
    if graph.inputs().len() != 1 || graph.outputs().len() != 1 {
        return Err(LowerError::Unsupported {
            node: graph.name.clone(),
            msg: format!(
                "{} inputs and {} outputs; circuits take one input and give one output",
                graph.inputs().len(),
                graph.outputs().len()
            ),
        });
    }
    Ok(())
}

/// The schedule's verdict on an approximated graph, without emitting it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub bootstraps: u32,
    /// The scheduler's estimate of the encrypted time (the cost model's
    /// prices of every unit at the level it runs at, and the bootstraps).
    pub seconds: f64,
    /// Levels on the longest path of the level graph.
    pub critical_depth: u32,
}

/// Bootstrap counts and estimated times of many approximations of one
/// model (the same graph structure, different polynomials or weights) at
/// a fraction of a lowering's cost: the parameters and the linear
/// transforms' plans (which depend only on the structure) are made once;
/// each [`Estimator::estimate`] builds the level graph and schedules it.
pub struct Estimator {
    params: Params,
    regions: Vec<ir::circuit::Region>,
    signature: Vec<String>,
    max_slots: usize,
}

impl Estimator {
    /// Plans `graph`'s parameters and transforms.
    pub fn new(graph: &Graph, params: &dyn ParamsSource) -> Result<Self, LowerError> {
        check_shape(graph)?;
        let part = partition::partition(graph)?;
        let plan = layouts::plan(graph, &part, params.max_slots())?;
        let p = params.params(plan.slots).map_err(LowerError::Params)?;
        let regions = emit::plan_regions(graph, &part, &plan)?;
        Ok(Self {
            params: p,
            regions,
            signature: signature(&part),
            max_slots: params.max_slots(),
        })
    }

    /// Schedules `graph`, which must have the structure of the graph the
    /// estimator was made for.
    pub fn estimate(&self, graph: &Graph) -> Result<Estimate, LowerError> {
        check_shape(graph)?;
        let part = partition::partition(graph)?;
        if signature(&part) != self.signature {
            return Err(LowerError::Internal(format!(
                "graph {} does not have the structure this estimator was planned for",
                graph.name
            )));
        }
        let plan = layouts::plan(graph, &part, self.max_slots)?;
        if plan.slots != self.params.slots {
            return Err(LowerError::Internal(format!(
                "graph {} packs into {} slots, the estimator into {}",
                graph.name, plan.slots, self.params.slots
            )));
        }
        let out = emit::lower_with(
            graph,
            &part,
            plan,
            self.params.clone(),
            self.regions.clone(),
            emit::Goal::Estimate,
        )?;
        match out {
            emit::Outcome::Estimate(e) => Ok(e),
            emit::Outcome::Circuit(_) => Err(LowerError::Internal("expected an estimate".into())),
        }
    }
}

/// What identifies a partition's structure: its regions' names, inputs and
/// outputs, and its values.
fn signature(part: &partition::Partition) -> Vec<String> {
    let mut s: Vec<String> = part
        .regions
        .iter()
        .map(|r| format!("{}:{:?}->{:?}", r.name, r.inputs, r.outputs))
        .collect();
    s.push(format!("{:?}", part.values));
    s
}

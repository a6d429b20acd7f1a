//! `precis compile`: ONNX → a circuit file (`--alpha`: approximate, lower to
//! ciphertext operations, schedule bootstraps; see `ir::circuit::file`), or
//! with `--emit ir` the tensor IR (see `ir::file`), exact or approximated.

use crate::auto_alpha::{parse_alpha_choice, AlphaChoice, AutoArgs};
use crate::circuits::{input_range, lower_model, parse_preset, print_report};
use crate::model::{batches, load_onnx, parse_layer_alpha, parse_shape, CalibArgs};
use anyhow::{anyhow, bail, Result};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource};
use ir::Op;
use runtime::ckks::bootstrapping::presets::Preset;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Where to write the compiled model.
    #[arg(short, long)]
    output: PathBuf,
    /// The input shape (batch 1), e.g. 1,3,32,32, when the model leaves it open.
    #[arg(long, value_parser = parse_shape)]
    input_shape: Option<Vec<usize>>,
    /// Replace ReLU and max-pooling by composite minimax polynomials at
    /// precision α (4..=20): error ≤ B·2^−α per layer; or `auto`: α per
    /// layer, the fewest bootstraps (then the least estimated time) whose
    /// validation accuracy stays within --max-drop of the exact model's.
    #[arg(long, value_parser = parse_alpha_choice)]
    alpha: Option<AlphaChoice>,
    /// A per-layer precision NODE=ALPHA (repeatable), overriding --alpha.
    #[arg(long = "alpha-layer", value_parser = parse_layer_alpha, requires = "alpha")]
    alpha_layer: Vec<(String, u32)>,
    /// CKKS parameters the circuit is lowered for (128-bit secure, N = 2^16):
    /// levels16 (16 levels after each bootstrap) or levels9; for tests only,
    /// insecure-n11 (levels9's chain at N = 2^11, with --insecure).
    #[arg(long, default_value = "levels16", value_parser = parse_preset)]
    preset: Preset,
    /// Allow an insecure test preset (nothing encrypted with it is secret).
    #[arg(long)]
    insecure: bool,
    /// What to write: `circuit` (the default with --alpha) or `ir` (the
    /// tensor IR: exact, or approximated with --alpha).
    #[arg(long)]
    emit: Option<Emit>,
    #[command(flatten)]
    calib: CalibArgs,
    #[command(flatten)]
    auto: AutoArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    Circuit,
    Ir,
}

pub fn run(args: Args) -> Result<()> {
    crate::circuits::check_preset_allowed(args.preset, args.insecure)?;
    let emit = args.emit.unwrap_or(if args.alpha.is_some() {
        Emit::Circuit
    } else {
        Emit::Ir
    });
    let graph = load_onnx(&args.model, args.input_shape.clone())?;
    if emit == Emit::Circuit {
        let Some(alpha) = args.alpha else {
            bail!("a circuit needs --alpha (the precision of the ReLU / max-pool polynomials, or auto)");
        };
        let approx = approximate(&args, &graph, alpha)?;
        let pre = args.calib.preprocess(&args.model).ok();
        let range = args
            .calib
            .inputs(&args.model)
            .ok()
            .map(|x| input_range(&x) * args.calib.margin);
        let t = std::time::Instant::now();
        let name = args
            .model
            .file_stem()
            .map_or_else(|| graph.name.clone(), |s| s.to_string_lossy().into_owned());
        let lowered = lower_model(&approx, &name, args.preset, pre.as_ref(), range)?;
        let lower_s = t.elapsed().as_secs_f64();
        let mut c = lowered.circuit;
        c.notes.insert(
            "alpha".into(),
            match alpha {
                AlphaChoice::Uniform(a) => a.to_string(),
                AlphaChoice::Auto => "auto".into(),
            },
        );
        c.notes.insert(
            "model".into(),
            args.model
                .file_name()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        );
        let res = runtime::resources::resources(&c).map_err(|e| anyhow!("{e}"))?;
        let mut out = std::io::stdout();
        print_report(&c, Some(&res), &mut out)?;
        let bytes = ir::circuit::file::to_bytes(&c);
        ir::file::write_atomic(&args.output, &bytes)?;
        println!(
            "wrote {} ({} nodes, {} bytes, circuit format v{}; lowered in {lower_s:.1} s)",
            args.output.display(),
            c.nodes.len(),
            bytes.len(),
            ir::circuit::file::FORMAT_VERSION
        );
        return Ok(());
    }
    let graph = match args.alpha {
        None => graph,
        Some(alpha) => approximate(&args, &graph, alpha)?,
    };
    let bytes = ir::file::to_bytes(&graph);
    ir::file::write_atomic(&args.output, &bytes)?;
    println!(
        "wrote {} ({} nodes, {} parameters, {} bytes, IR format v{})",
        args.output.display(),
        graph.node_count(),
        graph.param_count(),
        bytes.len(),
        ir::file::FORMAT_VERSION
    );
    Ok(())
}

fn approximate(args: &Args, graph: &ir::Graph, alpha: AlphaChoice) -> Result<ir::Graph> {
    let mut out = std::io::stdout();
    match alpha {
        AlphaChoice::Uniform(alpha) => approximate_model(
            &args.model,
            &args.calib,
            &args.alpha_layer,
            graph,
            alpha,
            &mut out,
        ),
        AlphaChoice::Auto => {
            if !args.alpha_layer.is_empty() {
                bail!("--alpha-layer fixes layers by hand; it does not combine with --alpha auto");
            }
            let pre = args.calib.preprocess(&args.model)?;
            let inputs = args.calib.inputs(&args.model)?;
            let prepared = pipeline::prepare(graph, batches(&inputs, 100), args.calib.margin)?;
            let report = crate::auto_alpha::search(
                &prepared,
                args.preset,
                &args.auto,
                &args.calib,
                &pre,
                false,
                &mut out,
            )?;
            approximate_prepared_with(&prepared, &report.plan(), &mut out)
        }
    }
}

/// Runs the approximation pipeline on `graph` (the ONNX `model`'s IR) at
/// precision `alpha` with per-layer overrides, printing the per-layer report.
pub fn approximate_model(
    model: &std::path::Path,
    calib: &CalibArgs,
    alpha_layer: &[(String, u32)],
    graph: &ir::Graph,
    alpha: u32,
    report_to: &mut dyn std::io::Write,
) -> Result<ir::Graph> {
    if !(4..=20).contains(&alpha) {
        return Err(anyhow!("--alpha {alpha} is outside 4..=20"));
    }
    let inputs = calib.inputs(model)?;
    let prepared = pipeline::prepare(graph, batches(&inputs, 100), calib.margin)?;
    let plan = AlphaPlan {
        default: alpha,
        per_layer: alpha_layer.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    approximate_prepared_with(&prepared, &plan, report_to)
}

/// Approximates a prepared model by `plan`, printing the per-layer report.
pub fn approximate_prepared_with(
    prepared: &pipeline::Prepared,
    plan: &AlphaPlan,
    report_to: &mut dyn std::io::Write,
) -> Result<ir::Graph> {
    let stages = pipeline::approximate_prepared(prepared, plan, &MinimaxSource::default())?;
    let report = &stages.report;
    writeln!(
        report_to,
        "calibrated on {} samples, margin {}; folded {} affine maps; approximated {} layers",
        report.calibration.samples,
        report.calibration.margin,
        report.folded_affine,
        report.approximated
    )?;
    writeln!(
        report_to,
        "{:<40} {:<13} {:>3} {:>5} {:>11} {:>11} {:>8} {:>9}",
        "layer", "op", "α", "depth", "B", "observed", "mean/B", "p99.9/B"
    )?;
    let out = stages.output();
    for id in out.topo_order() {
        let node = out.node(id);
        let (sign, depth) = match &node.op {
            Op::ApproxRelu(a) => (&a.sign, a.depth()),
            Op::ApproxMaxPool(a) => (&a.sign, a.depth()),
            _ => continue,
        };
        let Some(range) = report.calibration.layers.get(&node.name) else {
            continue;
        };
        writeln!(
            report_to,
            "{:<40} {:<13} {:>3} {:>5} {:>11.4e} {:>11.4e} {:>8.4} {:>9.4}",
            node.name,
            node.op.kind(),
            sign.alpha,
            depth,
            range.bound,
            range.observed_max,
            range.mean_abs / range.bound,
            range.p999_abs / range.bound
        )?;
    }
    let n = &report.normalize;
    writeln!(
        report_to,
        "normalised: {} of {} approximations have bound 1 ({} of {} scale domains rescalable)",
        n.normalised_after, n.approximations, n.rescalable, n.domains
    )?;
    let s = &report.simplify;
    writeln!(
        report_to,
        "egg: {} iterations, {} e-nodes, stop: {}, accepted: {}; ops before {:?}, after {:?}",
        s.iterations, s.egraph_nodes, s.stop_reason, s.accepted, s.ops_before, s.ops_after
    )?;
    Ok(out.clone())
}

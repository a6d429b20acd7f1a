//! `precis accuracy`: top-1 accuracy on a labelled test set with the
//! reference executor, exact and — with `--alpha` — approximated at each
//! precision, with per-layer overflow counts (the analogue of the paper's
//! accuracy-versus-α table).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use compiler::passes::{evaluate_with_ranges, AlphaPlan, Calibration};
use compiler::pipeline::{self, MinimaxSource};

use crate::model::{batches, slice_batch, CalibArgs};
use ir::{Graph, Tensor};
use runtime::data::{fashion_mnist, Preprocess};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model. Its preprocessing is read from MODEL.json beside it
    /// (or --preprocess).
    model: PathBuf,
    /// Labelled evaluation data: `fashion-mnist` (the 10k test split), or an
    /// .npz holding preprocessed inputs `x` and integer labels `y`.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Evaluate the first N samples only.
    #[arg(long)]
    limit: Option<usize>,
    /// Also evaluate the approximated model at these precisions: `14`,
    /// `7..14` (inclusive) or `7,10,14`; or `auto`: α per layer chosen by
    /// the search on training data (see `compile --alpha auto`).
    #[arg(long)]
    alpha: Option<String>,
    #[command(flatten)]
    calib: CalibArgs,
    #[command(flatten)]
    auto: crate::auto_alpha::AutoArgs,
    /// Samples per executor batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Write accuracy versus α as an SVG plot.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Also lower each approximated model to a circuit and run the samples
    /// through the simulation backend (needs --alpha).
    #[arg(long, requires = "alpha")]
    circuit: bool,
    /// With --circuit: add the errors CKKS would make, drawn from this seed.
    #[arg(long, requires = "circuit", num_args = 0..=1, default_missing_value = "1")]
    noise: Option<u64>,
    /// With --circuit: the CKKS parameter preset.
    #[arg(long, default_value = "levels16", value_parser = crate::circuits::parse_preset)]
    preset: runtime::ckks::bootstrapping::presets::Preset,
}

/// Parses `14`, `7..14` or `7,10,14`.
pub fn parse_alphas(s: &str) -> Result<Vec<u32>, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{t}' is not a precision α (an integer)"))
    };
    let list: Vec<u32> = if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(format!("empty range {s}"));
        }
        (a..=b).collect()
    } else {
        s.split(',').map(num).collect::<Result<_, _>>()?
    };
    if let Some(bad) = list.iter().find(|&&a| !(4..=20).contains(&a)) {
        return Err(format!("α = {bad} is outside 4..=20"));
    }
    Ok(list)
}

/// Labelled samples, preprocessed.
struct Labelled {
    x: Tensor,
    y: Vec<u8>,
}

fn load_fashion(
    args: &Args,
    pre: &Preprocess,
    split: fashion_mnist::Split,
    limit: usize,
) -> Result<Labelled> {
    let ds = fashion_mnist::load(&args.calib.data_dir, split).map_err(|e| anyhow!("{e}"))?;
    let n = ds.len().min(limit);
    let x = pre
        .apply(
            &ds.images[..n * fashion_mnist::SIDE * fashion_mnist::SIDE],
            n,
        )
        .map_err(|e| anyhow!("{e}"))?;
    Ok(Labelled {
        x,
        y: ds.labels[..n].to_vec(),
    })
}

fn load_eval(args: &Args, pre: &Preprocess) -> Result<Labelled> {
    let limit = args.limit.unwrap_or(usize::MAX);
    if args.data == "fashion-mnist" {
        return load_fashion(args, pre, fashion_mnist::Split::Test, limit);
    }
    let (x, y) = crate::model::read_labelled_npz(Path::new(&args.data))?;
    let n = y.len().min(limit);
    Ok(Labelled {
        x: slice_batch(&x, 0..n),
        y: y[..n].to_vec(),
    })
}

/// A progress line on stderr when it is a terminal.
struct Progress {
    label: String,
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn new(label: impl Into<String>, total: usize) -> Self {
        Self {
            label: label.into(),
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }
    fn advance(&mut self, n: usize) {
        self.done += n;
        if self.tty {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            eprint!(
                "\r{:<28} [{}{}] {}/{}",
                self.label,
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
            if self.done >= self.total {
                eprintln!();
            }
        }
    }
}

#[derive(Serialize)]
struct LayerOverflow {
    layer: String,
    bound: f64,
    observed_max: f64,
    overflows: u64,
}

#[derive(Serialize)]
struct CircuitRow {
    preset: String,
    noise: Option<u64>,
    bootstraps: usize,
    bootstrap_lower_bound: u32,
    estimated_seconds: f64,
    accuracy: f64,
    delta_pt: f64,
    /// Fraction of samples whose class equals the tensor-level approximated model's.
    agreement: f64,
    /// Largest |logit difference| to the tensor-level approximated model.
    max_logit_diff: f64,
    lower_seconds: f64,
    /// Generating every transform's diagonals once for the simulation.
    diagonal_seconds: f64,
    diagonal_bytes: usize,
    images_per_s: f64,
}

#[derive(Serialize)]
struct AlphaRow {
    /// The uniform α, or the ladder's top for a per-layer plan.
    alpha: u32,
    /// Per-layer α (a plan chosen by `--alpha auto`); empty when uniform.
    per_layer: std::collections::BTreeMap<String, u32>,
    /// The lowest and highest α of any layer.
    alpha_range: (u32, u32),
    degrees: Vec<usize>,
    relu_depth: u32,
    accuracy: f64,
    delta_pt: f64,
    overflows: u64,
    overflow_layers: Vec<LayerOverflow>,
    images_per_s: f64,
    circuit: Option<CircuitRow>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    samples: usize,
    exact_accuracy: f64,
    exact_images_per_s: f64,
    calibration_samples: Option<usize>,
    margin: Option<f64>,
    calibration: Option<Calibration>,
    approximated: Vec<AlphaRow>,
    /// The search behind `--alpha auto`.
    search: Option<compiler::precision::SearchReport>,
}

/// Runs `graph` on every batch; returns accuracy, images/s, the ranges and
/// the logits (row-major, one row per sample).
fn evaluate(
    graph: &Graph,
    data: &Labelled,
    batch: usize,
    label: &str,
) -> Result<(f64, f64, Calibration, Vec<f32>)> {
    let n = data.y.len();
    let mut progress = Progress::new(label, n);
    let mut correct = 0usize;
    let mut offset = 0usize;
    let start = Instant::now();
    let mut failure = None;
    let mut all = Vec::new();
    let ranges = evaluate_with_ranges(graph, batches(&data.x, batch), None, |outputs| {
        let logits = &outputs[0];
        let b = logits.shape[0];
        all.extend_from_slice(&logits.data);
        match runtime::data::top1(logits) {
            Ok(pred) => {
                correct += pred
                    .iter()
                    .zip(&data.y[offset..offset + b])
                    .filter(|(p, y)| **p == **y as usize)
                    .count()
            }
            Err(e) => failure = Some(e.to_string()),
        }
        offset += b;
        progress.advance(b);
    })
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(e) = failure {
        bail!("{e}");
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((correct as f64 / n as f64, n as f64 / secs, ranges, all))
}

/// Lowers `approx` and runs every sample through the simulation backend.
fn evaluate_circuit(
    args: &Args,
    approx: &Graph,
    data: &Labelled,
    logits: &[f32],
    exact: f64,
    pre: &Preprocess,
    calib: &Tensor,
) -> Result<CircuitRow> {
    let t = Instant::now();
    let name = args
        .model
        .file_stem()
        .map_or_else(|| approx.name.clone(), |s| s.to_string_lossy().into_owned());
    let lowered = crate::circuits::lower_model(
        approx,
        &name,
        args.preset,
        Some(pre),
        Some(crate::circuits::input_range(calib)),
    )?;
    let lower_seconds = t.elapsed().as_secs_f64();
    let report = lowered.report.clone();
    let prepared = runtime::backend::Prepared::new(lowered.circuit).map_err(|e| anyhow!("{e}"))?;
    let t = Instant::now();
    let diag_bytes = prepared.generate_all().map_err(|e| anyhow!("{e}"))?;
    let diagonal_seconds = t.elapsed().as_secs_f64();
    let noise = args
        .noise
        .map(|seed| runtime::simulate::NoiseModel::for_circuit(&prepared.circuit, seed));
    let n = data.y.len();
    let classes = logits.len() / n.max(1);
    let mut progress = Progress::new(
        if noise.is_some() {
            "circuit + noise"
        } else {
            "circuit"
        },
        n,
    );
    let start = Instant::now();
    let per = data.x.len() / n.max(1);
    let chunk = 512;
    let (mut correct, mut agree, mut worst) = (0usize, 0usize, 0f64);
    for first in (0..n).step_by(chunk) {
        let m = chunk.min(n - first);
        let outs = runtime::simulate::run_samples(
            &prepared,
            &data.x.data[first * per..(first + m) * per],
            m,
            32,
            noise.as_ref(),
        )
        .map_err(|e| anyhow!("sample {}: {}", first + e.sample, e.error))?;
        for (i, o) in outs.iter().enumerate() {
            let s = first + i;
            let row = &logits[s * classes..(s + 1) * classes];
            let class = argmax_f64(o);
            let reference = argmax_f32(row);
            correct += usize::from(class == data.y[s] as usize);
            agree += usize::from(class == reference);
            for (a, &b) in o.iter().zip(row) {
                worst = worst.max((a - b as f64).abs());
            }
        }
        progress.advance(m);
    }
    let secs = start.elapsed().as_secs_f64();
    let acc = correct as f64 / n as f64;
    Ok(CircuitRow {
        preset: args.preset.name().to_string(),
        noise: args.noise,
        bootstraps: report.bootstraps as usize,
        bootstrap_lower_bound: report.bootstrap_lower_bound,
        estimated_seconds: (report.estimated_seconds * 10.0).round() / 10.0,
        accuracy: acc,
        delta_pt: 100.0 * (acc - exact),
        agreement: agree as f64 / n as f64,
        max_logit_diff: worst,
        lower_seconds,
        diagonal_seconds,
        diagonal_bytes: diag_bytes,
        images_per_s: n as f64 / secs,
    })
}

fn argmax_f64(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn argmax_f32(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let auto = args.alpha.as_deref() == Some("auto");
    let alphas = args
        .alpha
        .as_deref()
        .filter(|_| !auto)
        .map(parse_alphas)
        .transpose()
        .map_err(|e| anyhow!("--alpha: {e}"))?
        .or(auto.then(Vec::new));
    let pre = args.calib.preprocess(&args.model)?;
    let graph = crate::model::load_onnx(&args.model, Some(pre.input_shape.clone()))?;
    if graph.inputs().len() != 1 || graph.outputs().len() != 1 {
        bail!(
            "{}: accuracy needs one input and one output, the model has {} and {}",
            args.model.display(),
            graph.inputs().len(),
            graph.outputs().len()
        );
    }
    let data = load_eval(&args, &pre)?;
    if data.y.is_empty() {
        bail!("no evaluation samples");
    }
    let (exact, exact_rate, _, _) = evaluate(&graph, &data, args.batch, "exact")?;
    let mut report = Report {
        model: args.model.display().to_string(),
        samples: data.y.len(),
        exact_accuracy: exact,
        exact_images_per_s: exact_rate,
        calibration_samples: None,
        margin: None,
        calibration: None,
        approximated: Vec::new(),
        search: None,
    };
    if let Some(alphas) = alphas {
        let calib = args.calib.inputs(&args.model)?;
        report.calibration_samples = Some(calib.shape[0]);
        report.margin = Some(args.calib.margin);
        let mut progress = Progress::new("calibrate", 1);
        let prepared = pipeline::prepare(&graph, batches(&calib, args.batch), args.calib.margin)?;
        progress.advance(1);
        let source = MinimaxSource::default();
        let mut plans: Vec<(String, AlphaPlan)> = alphas
            .into_iter()
            .map(|a| (format!("α = {a}"), AlphaPlan::uniform(a)))
            .collect();
        if auto {
            let mut out = std::io::stdout();
            let r = crate::auto_alpha::search(
                &prepared,
                args.preset,
                &args.auto,
                &args.calib,
                &pre,
                args.json,
                &mut out,
            )?;
            plans.push(("α auto".into(), r.plan()));
            report.search = Some(r);
        }
        for (label, plan) in plans {
            let alpha = plan.default;
            let stages = pipeline::approximate_prepared(&prepared, &plan, &source)?;
            let approx = stages.output();
            let sign = source_sign(approx);
            let relu_depth = max_depth(approx);
            let (acc, rate, ranges, logits) = evaluate(approx, &data, args.batch, &label)?;
            let circuit = if args.circuit {
                Some(evaluate_circuit(
                    &args, approx, &data, &logits, exact, &pre, &calib,
                )?)
            } else {
                None
            };
            let overflow_layers: Vec<LayerOverflow> = ranges
                .layers
                .iter()
                .filter(|(_, l)| l.overflows > 0)
                .map(|(name, l)| LayerOverflow {
                    layer: name.clone(),
                    bound: l.bound,
                    observed_max: l.observed_max,
                    overflows: l.overflows,
                })
                .collect();
            let uniform = plan.per_layer.is_empty();
            report.approximated.push(AlphaRow {
                alpha,
                per_layer: plan.per_layer.clone(),
                alpha_range: alpha_range(approx),
                degrees: if uniform {
                    sign.as_ref().map(|s| s.degrees()).unwrap_or_default()
                } else {
                    Vec::new()
                },
                relu_depth,
                accuracy: acc,
                delta_pt: 100.0 * (acc - exact),
                overflows: ranges.total_overflows(),
                overflow_layers,
                images_per_s: rate,
                circuit,
            });
        }
        report.calibration = Some(prepared.calibration);
    }
    if let Some(path) = &args.plot {
        write_plot(path, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The lowest and highest α of the approximations in the graph.
fn alpha_range(g: &Graph) -> (u32, u32) {
    g.topo_order()
        .into_iter()
        .filter_map(|id| match &g.node(id).op {
            ir::Op::ApproxRelu(a) => Some(a.sign.alpha),
            ir::Op::ApproxMaxPool(a) => Some(a.sign.alpha),
            _ => None,
        })
        .fold((u32::MAX, 0), |(lo, hi), a| (lo.min(a), hi.max(a)))
}

/// The largest depth of one approximate ReLU / pairwise maximum.
fn max_depth(g: &Graph) -> u32 {
    g.topo_order()
        .into_iter()
        .filter_map(|id| match &g.node(id).op {
            ir::Op::ApproxRelu(a) => Some(a.sign.depth() + 1),
            ir::Op::ApproxMaxPool(a) => Some(a.sign.depth() + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// The composite sign of the first approximation in the graph.
fn source_sign(g: &Graph) -> Option<ir::CompositeSign> {
    g.topo_order()
        .into_iter()
        .find_map(|id| match &g.node(id).op {
            ir::Op::ApproxRelu(a) => Some(a.sign.clone()),
            ir::Op::ApproxMaxPool(a) => Some(a.sign.clone()),
            _ => None,
        })
}

fn print_table(r: &Report) {
    println!("model     {}", r.model);
    println!("samples   {}", r.samples);
    println!(
        "exact     {:.2} %  ({:.0} images/s)",
        100.0 * r.exact_accuracy,
        r.exact_images_per_s
    );
    if r.approximated.is_empty() {
        return;
    }
    if let (Some(n), Some(m)) = (r.calibration_samples, r.margin) {
        println!("calibration: {n} samples, margin {m}");
    }
    println!();
    println!(
        "{:>4} {:<16} {:>10} {:>9} {:>8} {:>10} {:>9}",
        "α", "degrees", "ReLU depth", "accuracy", "Δ (pt)", "overflows", "images/s"
    );
    for row in &r.approximated {
        let degrees = format!(
            "{{{}}}",
            row.degrees
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let (alpha, degrees) = if row.per_layer.is_empty() {
            (row.alpha.to_string(), degrees)
        } else {
            let (lo, hi) = row.alpha_range;
            ("auto".to_string(), format!("α {lo}..{hi}"))
        };
        println!(
            "{:>4} {:<16} {:>10} {:>8.2}% {:>+8.2} {:>10} {:>9.0}",
            alpha,
            degrees,
            row.relu_depth,
            100.0 * row.accuracy,
            row.delta_pt,
            row.overflows,
            row.images_per_s
        );
        if let Some(c) = &row.circuit {
            println!(
                "     circuit ({}{}): {} bootstraps (lower bound {}), est. {:.0} s encrypted; simulated accuracy {:.2} % ({:+.2} pt), {:.2} % agree with the approximated model, largest logit difference {:.2e}; {:.0} images/s",
                c.preset,
                c.noise.map_or(String::new(), |s| format!(", noise seed {s}")),
                c.bootstraps,
                c.bootstrap_lower_bound,
                c.estimated_seconds,
                100.0 * c.accuracy,
                c.delta_pt,
                100.0 * c.agreement,
                c.max_logit_diff,
                c.images_per_s
            );
        }
        for l in &row.overflow_layers {
            println!(
                "       overflow at %{}: {} values above B = {:.4} (max seen {:.4})",
                l.layer, l.overflows, l.bound, l.observed_max
            );
        }
    }
}

fn write_plot(path: &Path, r: &Report) -> Result<()> {
    if r.approximated.is_empty() {
        bail!("--plot needs --alpha");
    }
    if r.search.is_some() {
        bail!("--plot draws accuracy against a uniform α; it does not take --alpha auto");
    }
    let (w, h, pad) = (640.0, 400.0, 50.0);
    let amin = r.approximated.iter().map(|a| a.alpha).min().unwrap_or(0) as f64;
    let amax = r.approximated.iter().map(|a| a.alpha).max().unwrap_or(1) as f64;
    let span = (amax - amin).max(1.0);
    let lo = r
        .approximated
        .iter()
        .map(|a| a.accuracy)
        .fold(r.exact_accuracy, f64::min)
        .min(r.exact_accuracy - 0.01);
    let hi = r.exact_accuracy.max(
        r.approximated
            .iter()
            .map(|a| a.accuracy)
            .fold(0.0, f64::max),
    ) + 0.005;
    let x = |a: f64| pad + (a - amin) / span * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v - lo) / (hi - lo) * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\">{} — top-1 accuracy vs α ({} samples)</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        w / 2.0,
        xml_escape(&r.model),
        r.samples,
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    svg += &format!(
        "<line x1=\"{pad}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"gray\" stroke-dasharray=\"4\"/>\n\
         <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"gray\">exact {3:.2} %</text>\n",
        y(r.exact_accuracy),
        w - pad,
        y(r.exact_accuracy) - 4.0,
        100.0 * r.exact_accuracy
    );
    let points: Vec<String> = r
        .approximated
        .iter()
        .map(|a| format!("{:.1},{:.1}", x(a.alpha as f64), y(a.accuracy)))
        .collect();
    svg += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\"/>\n",
        points.join(" ")
    );
    for a in &r.approximated {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"steelblue\"/>\n\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x(a.alpha as f64),
            y(a.accuracy),
            x(a.alpha as f64),
            h - pad + 16.0,
            a.alpha
        );
    }
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        svg += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.1}</text>\n",
            pad - 4.0,
            y(v) + 4.0,
            100.0 * v
        );
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">α</text>\n</svg>\n",
        w / 2.0,
        h - 10.0
    );
    ir::file::write_atomic(path, svg.as_bytes()).map_err(|e| anyhow!("{e}"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::parse_alphas;

    #[test]
    fn alpha_lists() {
        assert_eq!(parse_alphas("14").unwrap(), vec![14]);
        assert_eq!(parse_alphas("7..9").unwrap(), vec![7, 8, 9]);
        assert_eq!(parse_alphas("7,10,14").unwrap(), vec![7, 10, 14]);
        assert!(parse_alphas("9..7").is_err());
        assert!(parse_alphas("3").is_err());
        assert!(parse_alphas("x").is_err());
    }
}

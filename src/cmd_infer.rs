//! `precis infer`: cleartext inference with the reference executor.

use anyhow::{anyhow, bail, Context, Result};
use compiler::frontend::FrontendError;
use ir::ShapeFmt;
use runtime::data::npy;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model, or a model compiled by `precis compile` (exact or
    /// approximated with --alpha).
    model: PathBuf,
    /// Input samples (.npy, f32/f64/u8/i64), batched along the first axis.
    #[arg(long)]
    input: PathBuf,
    /// Write the logits (the model's output, one row per sample) here (.npy).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Run the ONNX model approximated at precision α (see `compile --alpha`).
    #[arg(long)]
    alpha: Option<u32>,
    /// For a circuit: add the errors CKKS would (encoding, rescaling, key
    /// switching, bootstrapping) to the simulation, drawn from this seed.
    #[arg(long, num_args = 0..=1, default_missing_value = "1")]
    noise: Option<u64>,
    /// A per-layer precision NODE=ALPHA (repeatable), overriding --alpha.
    #[arg(long = "alpha-layer", value_parser = crate::model::parse_layer_alpha, requires = "alpha")]
    alpha_layer: Vec<(String, u32)>,
    #[command(flatten)]
    calib: crate::model::CalibArgs,
}

/// Whether `path` starts with the compiled-IR magic.
fn is_compiled(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == ir::file::MAGIC
}

/// Index of the largest value (the first one on ties).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

pub fn run(args: Args) -> Result<()> {
    let x = npy::read(&args.input).map_err(|e| anyhow!("{e}"))?;
    if x.shape.len() < 2 || x.shape[0] == 0 {
        bail!(
            "{}: shape {} has no batch axis; expected [batch, ...] with batch ≥ 1",
            args.input.display(),
            ShapeFmt(&x.shape)
        );
    }
    let mut shape = x.shape.clone();
    shape[0] = 1;
    if crate::circuits::is_circuit(&args.model) {
        return run_circuit(&args, &x);
    }
    if args.noise.is_some() {
        bail!("--noise applies to circuits (the simulation backend)");
    }
    let graph = if is_compiled(&args.model) {
        let g = ir::file::load(&args.model)?;
        let want = &g.node(g.inputs()[0]).shape;
        if want[1..] != x.shape[1..] {
            bail!(
                "{} holds samples of shape {} but {} takes {}",
                args.input.display(),
                ShapeFmt(&x.shape[1..]),
                args.model.display(),
                ShapeFmt(want)
            );
        }
        g
    } else {
        match compiler::frontend::load(&args.model, Some(shape)) {
            Ok(g) => g,
            Err(FrontendError::InputShape { input, model, .. }) => bail!(
                "{} holds samples of shape {} but input '{input}' of {} takes {model}",
                args.input.display(),
                ShapeFmt(&x.shape[1..]),
                args.model.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("{}", args.model.display())),
        }
    };
    let graph = match args.alpha {
        Some(_) if is_compiled(&args.model) => bail!(
            "{} is already compiled; --alpha applies to ONNX models",
            args.model.display()
        ),
        Some(alpha) => crate::cmd_compile::approximate_model(
            &args.model,
            &args.calib,
            &args.alpha_layer,
            &graph,
            alpha,
            &mut std::io::stderr(),
        )?,
        None => graph,
    };
    if graph.inputs().len() != 1 || graph.outputs().len() != 1 {
        bail!(
            "{}: infer needs a model with one input and one output, it has {} and {}",
            args.model.display(),
            graph.inputs().len(),
            graph.outputs().len()
        );
    }
    let batch = x.shape[0];
    let outputs = runtime::reference::run(&graph, std::slice::from_ref(&x))
        .map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    let y = &outputs[0];
    let per = y.len() / batch;
    println!("sample  argmax");
    for (i, row) in y.data.chunks(per).enumerate() {
        println!("{i:>6}  {}", argmax(row));
    }
    if let Some(out) = &args.output {
        npy::write(out, y).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// `infer` of a circuit: the simulation backend on every sample.
fn run_circuit(args: &Args, x: &ir::Tensor) -> Result<()> {
    if args.alpha.is_some() {
        bail!(
            "{} is a circuit, already approximated; --alpha applies to ONNX models",
            args.model.display()
        );
    }
    let c = crate::circuits::load_circuit(&args.model)?;
    if x.shape[1..] != c.input.shape[1..] {
        bail!(
            "{} holds samples of shape {} but {} takes {}",
            args.input.display(),
            ShapeFmt(&x.shape[1..]),
            args.model.display(),
            ShapeFmt(&c.input.shape)
        );
    }
    let batch = x.shape[0];
    let prepared =
        runtime::backend::Prepared::new(c).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    let noise = args
        .noise
        .map(|seed| runtime::simulate::NoiseModel::for_circuit(&prepared.circuit, seed));
    let outs = runtime::simulate::run_samples(&prepared, &x.data, batch, 8, noise.as_ref())
        .map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    println!("sample  argmax");
    for (i, row) in outs.iter().enumerate() {
        let r: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        println!("{i:>6}  {}", argmax(&r));
    }
    if let Some(out) = &args.output {
        let mut shape = prepared.circuit.output.shape.clone();
        shape[0] = batch;
        let data: Vec<f32> = outs.iter().flatten().map(|&v| v as f32).collect();
        let t = ir::Tensor::new(shape, data).map_err(|e| anyhow!("{e}"))?;
        npy::write(out, &t).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

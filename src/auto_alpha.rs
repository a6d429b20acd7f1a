//! `--alpha auto` for `compile` and `accuracy`: the per-layer precision
//! search of [`compiler::precision`] on a validation split of the
//! *training* data, with its per-layer report.

use anyhow::{anyhow, bail, Result};
use compiler::lower::PresetParams;
use compiler::pipeline::{MinimaxSource, Prepared};
use compiler::precision::{self, SearchOptions, SearchReport, Validation};
use ir::Tensor;
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::data::{fashion_mnist, Preprocess};
use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::model::CalibArgs;

/// A precision: one α for every layer, or chosen per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaChoice {
    Uniform(u32),
    Auto,
}

/// Parses `auto` or an α in 4..=20.
pub fn parse_alpha_choice(s: &str) -> Result<AlphaChoice, String> {
    if s == "auto" {
        return Ok(AlphaChoice::Auto);
    }
    match s.parse::<u32>() {
        Ok(a) if (4..=20).contains(&a) => Ok(AlphaChoice::Uniform(a)),
        Ok(a) => Err(format!("α = {a} is outside 4..=20")),
        Err(_) => Err(format!(
            "'{s}' is neither a precision α (4..=20) nor 'auto'"
        )),
    }
}

/// Options of the search on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct AutoArgs {
    /// With --alpha auto: the largest top-1 accuracy loss against the
    /// exact model on the validation split, in percentage points.
    #[arg(long, default_value_t = 0.1)]
    pub max_drop: f64,
    /// With --alpha auto: validation samples, the last N of the training
    /// split (disjoint from the first --calib-limit used for calibration;
    /// never the test split), or an .npz with inputs `x` and labels `y`.
    #[arg(long, default_value = "5000")]
    pub validation: String,
    /// With --alpha auto: validation samples each layer's sensitivity is
    /// measured on (the first ones).
    #[arg(long, default_value_t = 500)]
    pub probe: usize,
    /// With --alpha auto: the ladder's top (the uniform plan the search
    /// starts from and falls back to).
    #[arg(long, default_value_t = 14)]
    pub max_alpha: u32,
}

/// The validation split.
pub fn validation(
    args: &AutoArgs,
    calib: &CalibArgs,
    pre: &Preprocess,
) -> Result<(Tensor, Vec<u8>, String)> {
    if let Ok(n) = args.validation.parse::<usize>() {
        if n == 0 {
            bail!("--validation must be at least 1 sample");
        }
        if calib.calib != "fashion-mnist" {
            bail!(
                "--validation {n} takes training images, but calibration comes from {}: pass --validation D.npz",
                calib.calib
            );
        }
        let ds = fashion_mnist::load(&calib.data_dir, fashion_mnist::Split::Train)
            .map_err(|e| anyhow!("{e}"))?;
        let used = calib.calib_limit.min(ds.len());
        if used + n > ds.len() {
            bail!(
                "--validation {n}: the training split has {} images and calibration uses the first {used}; at most {} are left for validation",
                ds.len(),
                ds.len() - used
            );
        }
        let side = fashion_mnist::SIDE * fashion_mnist::SIDE;
        let first = ds.len() - n;
        let x = pre
            .apply(&ds.images[first * side..], n)
            .map_err(|e| anyhow!("{e}"))?;
        return Ok((
            x,
            ds.labels[first..].to_vec(),
            format!("Fashion-MNIST training images {first}..{}", ds.len()),
        ));
    }
    let path = Path::new(&args.validation);
    let (x, y) = crate::model::read_labelled_npz(path)?;
    Ok((x, y, path.display().to_string()))
}

/// Runs the search on a prepared model, progress on stderr (when it is a
/// terminal and `quiet` is false), the per-layer table on `out`.
pub fn search(
    prepared: &Prepared,
    preset: Preset,
    args: &AutoArgs,
    calib: &CalibArgs,
    pre: &Preprocess,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<SearchReport> {
    if !(4..=20).contains(&args.max_alpha) {
        bail!("--max-alpha {} is outside 4..=20", args.max_alpha);
    }
    let (x, y, what) = validation(args, calib, pre)?;
    let opts = SearchOptions {
        max_alpha: args.max_alpha,
        max_drop_pt: args.max_drop,
        probe: args.probe,
        ..SearchOptions::default()
    };
    let tty = !quiet && std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let mut progress = |msg: &str| {
        if tty {
            eprintln!("[{:>5.0} s] {msg}", start.elapsed().as_secs_f64());
        }
    };
    let report = precision::search(
        prepared,
        &MinimaxSource::default(),
        &PresetParams(preset),
        &Validation { x: &x, y: &y },
        &opts,
        &mut progress,
    )
    .map_err(|e| anyhow!("--alpha auto: {e}"))?;
    if !quiet {
        print_search(&report, &what, preset, out)?;
    }
    Ok(report)
}

/// The per-layer table and the totals of a search.
pub fn print_search(
    r: &SearchReport,
    what: &str,
    preset: Preset,
    out: &mut dyn Write,
) -> Result<()> {
    writeln!(
        out,
        "α search on {} validation samples ({what}; sensitivities on the first {}), budget {} pt, preset {}:",
        r.validation_samples,
        r.probe_samples,
        r.max_drop_pt,
        preset.name()
    )?;
    writeln!(
        out,
        "{:<36} {:<8} {:>3} {:>5} {:>5} {:>10}  why",
        "layer", "op", "α", "depth", "floor", "error"
    )?;
    for l in &r.layers {
        writeln!(
            out,
            "{:<36} {:<8} {:>3} {:>5} {:>5} {:>10.2e}  {}",
            l.name, l.op, l.alpha, l.depth, l.floor, l.error, l.why
        )?;
    }
    let u = &r.uniform;
    let c = &r.chosen;
    writeln!(
        out,
        "validation accuracy: exact {:.2} %, uniform α = {} {:.2} %, chosen {:.2} % ({:+.2} pt)",
        100.0 * r.exact_accuracy,
        r.uniform_alpha,
        100.0 * u.accuracy,
        100.0 * c.accuracy,
        100.0 * (c.accuracy - r.exact_accuracy)
    )?;
    writeln!(
        out,
        "bootstraps {} (uniform α = {}: {}, {:+.0} %); estimated {:.0} s (uniform {:.0} s); {} plans verified, {} schedules estimated, {} evaluations in {:.0} s",
        c.bootstraps,
        r.uniform_alpha,
        u.bootstraps,
        if u.bootstraps > 0 {
            100.0 * (c.bootstraps as f64 - u.bootstraps as f64) / u.bootstraps as f64
        } else {
            0.0
        },
        c.estimated_seconds,
        u.estimated_seconds,
        r.verified.len(),
        r.estimates,
        r.evaluations,
        r.seconds
    )?;
    Ok(())
}

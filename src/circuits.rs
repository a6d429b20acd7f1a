//! Circuits from the command line: lowering an approximated model, reading
//! circuit files, and the per-layer report `compile` and `inspect` print.

use anyhow::{anyhow, bail, Context, Result};
use compiler::lower::cost::{circuit_seconds, CostModel};
use compiler::lower::{lower, LowerOptions, Lowered, PresetParams};
use ir::circuit::{Circuit, Preprocessing};
use ir::{Graph, Tensor};
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::data::Preprocess;
use runtime::resources::Resources;
use serde_json::json;
use std::path::Path;

/// Parses a preset name.
pub fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::from_name(s).ok_or_else(|| {
        format!(
            "unknown preset '{s}' (one of {})",
            Preset::ALL.map(|p| p.name()).join(", ")
        )
    })
}

/// Refuses an insecure preset unless the user asked for one (`--insecure`).
pub fn check_preset_allowed(preset: Preset, insecure: bool) -> Result<()> {
    if !preset.is_secure() && !insecure {
        bail!(
            "preset {} is an insecure test ring: nothing encrypted with it is secret; pass --insecure to use it anyway",
            preset.name()
        );
    }
    Ok(())
}

/// Refuses a circuit compiled for insecure parameters unless the user asked
/// for them (`--insecure`).
pub fn check_circuit_allowed(c: &Circuit, path: &Path, insecure: bool) -> Result<()> {
    if !c.params.secure && !insecure {
        bail!(
            "{}: compiled for preset {}, insecure test parameters (log2 QP = {:.0} at N = 2^{}): nothing encrypted with them is secret; pass --insecure to use them anyway",
            path.display(),
            c.params.preset,
            c.params.log_qp,
            c.params.log_n
        );
    }
    Ok(())
}

/// Whether `path` starts with the circuit-file magic.
pub fn is_circuit(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == ir::circuit::file::MAGIC
}

/// Reads and verifies a circuit file; errors name the file.
pub fn load_circuit(path: &Path) -> Result<Circuit> {
    ir::circuit::file::load(path).with_context(|| format!("{}", path.display()))
}

/// Largest |x| over a batch of inputs.
pub fn input_range(x: &Tensor) -> f64 {
    x.data.iter().fold(0f64, |m, &v| m.max((v as f64).abs()))
}

/// Lowers an approximated graph for `preset`.
pub fn lower_model(
    approx: &Graph,
    name: &str,
    preset: Preset,
    pre: Option<&Preprocess>,
    range: Option<f64>,
) -> Result<Lowered> {
    let source = PresetParams(preset);
    let opts = LowerOptions {
        name: name.to_string(),
        params: &source,
        input_range: range,
        preprocess: pre.map(|p| Preprocessing {
            pad: p.pad,
            mean: p.mean.clone(),
            std: p.std.clone(),
        }),
    };
    lower(approx, &opts).map_err(|e| anyhow!("{e}"))
}

/// Totals of a circuit, as `inspect` and `compile` report them.
pub fn totals(c: &Circuit, res: Option<&Resources>) -> serde_json::Value {
    let s = c.stats();
    let cost = CostModel::for_preset(
        &c.params.preset,
        c.params.slots,
        (1usize << c.params.log_n) / 2,
    );
    let note = |k: &str| c.notes.get(k).and_then(|v| v.parse::<u64>().ok());
    json!({
        "preset": c.params.preset,
        "slots": c.params.slots,
        "ring_degree": 1u64 << c.params.log_n,
        "fresh_level": c.params.fresh_level,
        "bootstrap_level": c.params.bootstrap.as_ref().map(|b| b.output_level),
        "bootstraps": s.bootstraps,
        "bootstrap_lower_bound": note("bootstrap_lower_bound"),
        "critical_depth": note("critical_depth"),
        "depth": s.depth,
        "rotations": s.rotations,
        "rotation_keys": s.rotation_keys,
        "linear_transforms": s.linear_transforms,
        "ct_products": s.ct_products,
        "plain_products": s.plain_products,
        "rescales": s.rescales,
        "nodes": s.nodes,
        "estimated_seconds": (circuit_seconds(c, &cost) * 10.0).round() / 10.0,
        "estimated_peak_bytes": res.map(|r| r.estimated_peak_bytes),
        "key_bytes": res.map(|r| r.key_bytes),
        "circuit_key_bytes": res.map(|r| r.circuit_key_bytes),
        "bootstrap_key_bytes": res.map(|r| r.bootstrap_key_bytes),
        "galois_keys": res.map(|r| r.galois_keys),
        "secure_128": c.params.secure,
    })
}

fn gib(b: usize) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// The per-layer table and the totals, as text.
pub fn print_report(
    c: &Circuit,
    res: Option<&Resources>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    writeln!(
        out,
        "{:<36} {:<18} {:>3} {:>5} {:>6} {:>4} {:>5} {:>6} {:>6} {:>6}",
        "layer", "op", "α", "L in", "L out", "cts", "boot", "rot", "ptx×", "ctx×"
    )?;
    for l in c.layer_summaries() {
        let alpha = c
            .notes
            .get(&ir::circuit::alpha_note(&l.name))
            .map_or("", String::as_str);
        writeln!(
            out,
            "{:<36} {:<18} {:>3} {:>5} {:>6} {:>4} {:>5} {:>6} {:>6} {:>6}",
            l.name,
            l.op,
            alpha,
            l.level_in,
            l.level_out,
            l.ciphertexts,
            l.bootstraps,
            l.rotations,
            l.plain_products,
            l.ct_products
        )?;
    }
    let t = totals(c, res);
    writeln!(out)?;
    writeln!(
        out,
        "preset {} (N = {}, {} slots per ciphertext, fresh level {}, {} levels after a bootstrap){}",
        c.params.preset,
        t["ring_degree"],
        c.params.slots,
        c.params.fresh_level,
        t["bootstrap_level"],
        if c.params.secure { ", 128-bit secure" } else { ", INSECURE test parameters" }
    )?;
    writeln!(
        out,
        "bootstraps {} (lower bound {}, critical-path depth {}); depth {}",
        t["bootstraps"], t["bootstrap_lower_bound"], t["critical_depth"], t["depth"]
    )?;
    writeln!(
        out,
        "rotations {} with {} Galois keys; {} linear transforms, {} ciphertext and {} plaintext products, {} rescales, {} nodes",
        t["rotations"],
        t["rotation_keys"],
        t["linear_transforms"],
        t["ct_products"],
        t["plain_products"],
        t["rescales"],
        t["nodes"]
    )?;
    if let Some(r) = res {
        writeln!(
            out,
            "keys {} (circuit {}, bootstrapping {}; {} Galois keys in all); estimated peak memory {}",
            gib(r.key_bytes),
            gib(r.circuit_key_bytes),
            gib(r.bootstrap_key_bytes),
            r.galois_keys,
            gib(r.estimated_peak_bytes)
        )?;
    }
    writeln!(
        out,
        "estimated time {} s on 2 threads (cost model fitted to bench ops and bench bootstrap)",
        t["estimated_seconds"]
    )?;
    Ok(())
}

//! `precis bench …`: performance measurements.

use anyhow::Result;
use clap::{Args, Subcommand};
use runtime::ckks::bench;

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Leveled CKKS primitives at N = 2^16 with 25 limbs (60-bit first prime, 50-bit others).
    Ckks(CkksBench),
    /// CKKS bootstrapping at N = 2^16 (128-bit presets): key generation,
    /// time, precision and memory. Each run is a fresh process state only if
    /// you run one preset per invocation (peak memory is per process).
    Bootstrap(BootstrapBench),
    /// Each circuit operation (rotation, products, rescale, encoding, the
    /// parts of a linear transform) on a preset's parameters and keys, level
    /// by level: the figures the compiler's cost model is fitted to.
    Ops(OpsBench),
    /// The reference executor against tract's own execution of the same
    /// ONNX model, same inputs, same run.
    Reference(ReferenceBench),
    /// One encrypted inference of a test image, timed: key generation,
    /// encryption, evaluation by layer and by kind (linear transforms,
    /// polynomials, bootstraps) next to the circuit's cost estimates,
    /// decryption; bootstraps; peak memory.
    E2e(crate::cmd_crypto::E2eArgs),
}

#[derive(Args)]
pub struct OpsBench {
    /// Parameter preset: levels9 or levels16.
    #[arg(long, default_value = "levels16")]
    preset: String,
    /// Circuit levels to measure, comma-separated (default: every one, 0 to the preset's top).
    #[arg(long, value_delimiter = ',')]
    levels: Option<Vec<usize>>,
    /// Worker threads (default: all available).
    #[arg(long)]
    threads: Option<usize>,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

fn ops(args: OpsBench) -> Result<()> {
    use runtime::ckks::bootstrapping::presets::Preset;
    let preset = Preset::from_name(&args.preset)
        .filter(|p| p.is_secure())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown preset {:?} (expected one of: {})",
                args.preset,
                Preset::ALL.map(|p| p.name()).join(", ")
            )
        })?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let levels = args
        .levels
        .unwrap_or_else(|| (0..=preset.circuit_levels()).collect());
    let r = runtime::ckks::bench_ops::run(preset, &levels, threads, args.reps)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "circuit operations, preset {} ({} special primes, Galois keys {}), {} slots, {} thread(s), median of {}; key generation {:.1} s; milliseconds",
        r.preset, r.special_primes, r.galois_key_storage, r.slots, r.threads, args.reps, r.keygen_s
    );
    println!(
        "level digits   rotate mul+relin  rescale   encode  mul_pt     add  decomp | double: base    baby   giant    diag | single: base    baby   giant    diag"
    );
    for l in &r.levels {
        let ms = |s: f64| s * 1e3;
        let parts = |p: &runtime::ckks::bench_ops::TransformParts| {
            format!(
                "{:>12.1} {:>7.1} {:>7.1} {:>7.1}",
                ms(p.base),
                ms(p.baby),
                ms(p.giant),
                ms(p.diagonal)
            )
        };
        println!(
            "{:>5} {:>6} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>7.1} {:>7.1} {:>7.1} | {} | {}",
            l.level,
            l.digits,
            ms(l.rotate),
            ms(l.mul_relin),
            ms(l.rescale),
            ms(l.encode),
            ms(l.mul_plain),
            ms(l.add),
            ms(l.decompose),
            parts(&l.double),
            parts(&l.single)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ReferenceBench {
    /// The ONNX model.
    model: std::path::PathBuf,
    /// Samples per run.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Runs per engine (the best is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also time the model approximated at precision α (calibrated with the
    /// options below) on the same inputs, which are then the first test
    /// images of Fashion-MNIST, preprocessed as MODEL.json says.
    #[arg(long)]
    alpha: Option<u32>,
    #[command(flatten)]
    calib: crate::model::CalibArgs,
}

#[derive(Args)]
pub struct CkksBench {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Threads for the multi-threaded run (default: all available).
    #[arg(long)]
    threads: Option<usize>,
    /// log2 of the ring degree.
    #[arg(long, default_value_t = 16)]
    log_n: u32,
    /// Number of Q primes after the first (25 limbs in total by default).
    #[arg(long, default_value_t = 24)]
    levels: usize,
    /// Key-switching digits.
    #[arg(long, default_value_t = 3)]
    dnum: usize,
    /// Repetitions per measurement (the best and the median are reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Skip the single-threaded run.
    #[arg(long)]
    no_single: bool,
}

#[derive(Args)]
pub struct BootstrapBench {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Number of slots, as 2^k (k ≤ 15); full packing by default.
    #[arg(long, default_value = "2^15", value_parser = parse_pow2)]
    slots: u32,
    /// Parameter preset: levels9 (9 levels of 2^40 left) or levels16 (16 levels of 36-bit primes, output at 2^40).
    #[arg(long, default_value = "levels9")]
    preset: String,
    /// Worker threads (default: all available).
    #[arg(long)]
    threads: Option<usize>,
    /// Bootstraps to time (each on fresh random inputs).
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// How the Galois keys hold their uniform halves: expanded (fastest) or
    /// seeded (half the memory, regenerated in every rotation). Default: the
    /// preset's (levels9 expanded, levels16 seeded).
    #[arg(long, value_parser = parse_key_storage)]
    key_storage: Option<runtime::ckks::KeyStorage>,
    /// Then bootstrap REPS pairs alternating seeded and expanded Galois keys
    /// (same process and input), to compare the two storages under the same
    /// conditions. Needs memory for the expanded keys.
    #[arg(long)]
    compare_key_storage: bool,
    /// Key-switching digits: fill-p (the presets': each digit as many
    /// consecutive Q primes as fit below P) or even (⌈Q primes / P primes⌉
    /// digits of equal prime counts, the layout before fill-p), to compare.
    #[arg(long, value_parser = ["fill-p", "even"])]
    digits: Option<String>,
}

fn parse_key_storage(s: &str) -> Result<runtime::ckks::KeyStorage, String> {
    runtime::ckks::KeyStorage::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("expected expanded or seeded, got {s:?}"))
}

/// `2^k` or `k` → `k`.
fn parse_pow2(s: &str) -> Result<u32, String> {
    let k = s.strip_prefix("2^").unwrap_or(s);
    k.parse::<u32>()
        .ok()
        .filter(|k| *k <= 16)
        .ok_or_else(|| format!("expected 2^k with k ≤ 16, got {s:?}"))
}

fn bootstrap(args: BootstrapBench) -> Result<()> {
    use anyhow::anyhow;
    use runtime::ckks::bootstrapping::presets::Preset;
    let preset = Preset::from_name(&args.preset).ok_or_else(|| {
        anyhow!(
            "unknown preset {:?} (expected one of: {})",
            args.preset,
            Preset::ALL.map(|p| p.name()).join(", ")
        )
    })?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let r = runtime::ckks::bootstrapping::bench::run(
        runtime::ckks::bootstrapping::bench::BenchOptions {
            preset,
            log_slots: args.slots,
            threads,
            reps: args.reps,
            storage: args.key_storage,
            compare_storage: args.compare_key_storage,
            digits: args.digits.as_deref().map(|d| {
                let (literal, _) = preset.build(args.slots);
                match d {
                    "even" => runtime::ckks::DigitSplit::Even(
                        literal.log_q.len().div_ceil(literal.log_p.len()),
                    ),
                    _ => runtime::ckks::DigitSplit::FillP,
                }
            }),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let c = &r.contract;
    println!(
        "bootstrapping, preset {} — N = 2^{}, 2^{} slots, {} Q + {} P primes, dnum {}, log QP {:.1} ({}), {} thread(s)",
        r.preset,
        r.log_n,
        r.log_slots,
        r.q_limbs,
        r.p_limbs,
        r.dnum,
        r.log_qp,
        if r.secure_128 { "128-bit secure" } else { "INSECURE" },
        r.threads
    );
    println!(
        "contract: depth {}, minimum input level {}, output level {} at scale 2^{:.1}, estimated precision {:.1} bits",
        c.depth,
        c.minimum_input_level,
        c.output_level,
        c.output_scale.log2(),
        c.output_precision_bits
    );
    println!(
        "precompute {:.1} s ({:.2} GiB of diagonals); key generation {:.1} s ({} Galois keys, {}; {:.2} GiB in all)",
        r.precompute_s,
        gib(r.precompute_bytes as f64),
        r.keygen_s,
        r.galois_keys,
        r.galois_key_storage.name(),
        gib(r.key_bytes as f64)
    );
    for (i, t) in r.bootstrap_s.iter().enumerate() {
        println!(
            "bootstrap {}: {:.2} s, precision {:.1} bits (max error), {:.1} bits (mean error)",
            i + 1,
            t,
            r.precision_min_bits[i],
            r.precision_mean_bits[i]
        );
        let phases: Vec<String> = runtime::ckks::bootstrapping::PHASES
            .iter()
            .filter_map(|k| Some(format!("{k} {:.2} s", r.phase_s[i].get(*k)?)))
            .collect();
        println!("  phases: {}", phases.join(", "));
    }
    if let Some(b) = r.peak_rss_bytes {
        println!("peak resident memory {:.2} GiB", gib(b as f64));
    }
    if let Some(c) = &r.storage_comparison {
        let list = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{t:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "same input, alternating: seeded keys {}; expanded keys {}",
            list(&c.seeded_s),
            list(&c.expanded_s)
        );
    }
    Ok(())
}

pub fn run(what: BenchWhat) -> Result<()> {
    match what {
        BenchWhat::Bootstrap(args) => {
            runtime::ckks::allocator::tune_for_large_polynomials();
            bootstrap(args)
        }
        BenchWhat::Ckks(args) => {
            runtime::ckks::allocator::tune_for_large_polynomials();
            ckks(args)
        }
        BenchWhat::Ops(args) => {
            runtime::ckks::allocator::tune_for_large_polynomials();
            ops(args)
        }
        BenchWhat::Reference(args) => reference(args),
        BenchWhat::E2e(args) => {
            runtime::ckks::allocator::tune_for_large_polynomials();
            crate::cmd_crypto::bench_e2e(args)
        }
    }
}

/// Best wall time of `reps` runs of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn reference(args: ReferenceBench) -> Result<()> {
    use anyhow::{anyhow, bail, Context};
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let bytes = std::fs::read(&args.model).with_context(|| format!("{}", args.model.display()))?;
    let graph = crate::model::load_onnx(&args.model, None)?;
    if graph.inputs().len() != 1 {
        bail!(
            "{}: bench reference needs a single-input model",
            args.model.display()
        );
    }
    let mut shape = graph.node(graph.inputs()[0]).shape.clone();
    shape[0] = args.batch;
    let input = if args.alpha.is_some() {
        // Real images: calibrated bounds hold for them, not for noise.
        let pre = args.calib.preprocess(&args.model)?;
        let ds = runtime::data::fashion_mnist::load(
            &args.calib.data_dir,
            runtime::data::fashion_mnist::Split::Test,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let side = runtime::data::fashion_mnist::SIDE;
        if args.batch > ds.len() {
            bail!(
                "--batch {} exceeds the {} test images",
                args.batch,
                ds.len()
            );
        }
        pre.apply(&ds.images[..args.batch * side * side], args.batch)
            .map_err(|e| anyhow!("{e}"))?
    } else {
        runtime::reference::synthetic::SplitMix64::new(7).tensor(shape.clone(), 1.0)
    };
    let inputs = std::slice::from_ref(&input);
    let plan = compiler::frontend::oracle::Plan::new(&bytes, &[shape])
        .map_err(|e| anyhow!("{}: tract: {e}", args.model.display()))?;
    let ours = runtime::reference::run(&graph, inputs).map_err(|e| anyhow!("{e}"))?;
    let theirs = plan.run(inputs).map_err(|e| anyhow!("{e}"))?;
    let scale = theirs[0]
        .data
        .iter()
        .fold(1e-30f64, |m, v| m.max(v.abs() as f64));
    let diff = ours[0]
        .data
        .iter()
        .zip(&theirs[0].data)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    let threads = rayon::current_num_threads();
    let t_ours = best_of(args.reps, || {
        runtime::reference::run(&graph, inputs).map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let t_ours1 = one.install(|| {
        best_of(args.reps, || {
            runtime::reference::run(&graph, inputs).map_err(|e| anyhow!("{e}"))?;
            Ok(())
        })
    })?;
    let t_tract = best_of(args.reps, || {
        plan.run(inputs).map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })?;
    let approx = match args.alpha {
        None => None,
        Some(alpha) => {
            let calib = args.calib.inputs(&args.model)?;
            let prepared = compiler::pipeline::prepare(
                &graph,
                crate::model::batches(&calib, 100),
                args.calib.margin,
            )?;
            let stages = compiler::pipeline::approximate_prepared(
                &prepared,
                &compiler::passes::AlphaPlan::uniform(alpha),
                &compiler::pipeline::MinimaxSource::default(),
            )?;
            let g = stages.output().clone();
            let t = best_of(args.reps, || {
                runtime::reference::run(&g, inputs).map_err(|e| anyhow!("{e}"))?;
                Ok(())
            })?;
            Some((alpha, t))
        }
    };
    let rate = |t: f64| args.batch as f64 / t;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model.display().to_string(),
                "batch": args.batch,
                "reference_images_per_s": rate(t_ours),
                "reference_threads": threads,
                "reference_1_thread_images_per_s": rate(t_ours1),
                "tract_images_per_s": rate(t_tract),
                "max_relative_difference": diff / scale,
                "approximated": approx.map(|(alpha, t)| serde_json::json!({
                    "alpha": alpha,
                    "images_per_s": rate(t),
                    "ratio_to_exact": t_ours / t,
                })),
            })
        );
    } else {
        println!(
            "model  {}  (batch {}, best of {})",
            args.model.display(),
            args.batch,
            args.reps
        );
        println!(
            "precis reference, {threads} threads  {:>9.1} images/s",
            rate(t_ours)
        );
        println!(
            "precis reference, 1 thread   {:>9.1} images/s",
            rate(t_ours1)
        );
        println!(
            "tract (optimised plan)       {:>9.1} images/s",
            rate(t_tract)
        );
        println!("max |difference| / max |output|: {:.2e}", diff / scale);
        if let Some((alpha, t)) = approx {
            println!(
                "precis reference, α = {alpha}, {threads} threads {:>6.1} images/s ({:.2}× exact)",
                rate(t),
                t_ours / t
            );
        }
    }
    Ok(())
}

fn ckks(args: CkksBench) -> Result<()> {
    let all = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Check security without the flag first; use the flag only if needed, and say so.
    let secure = runtime::ckks::Parameters::new(bench::bench_literal(
        args.log_n,
        args.levels,
        args.dnum,
        false,
    ));
    let insecure = match &secure {
        Ok(_) => false,
        Err(runtime::ckks::CkksError::Insecure(msg)) => {
            eprintln!("WARNING: benchmark parameters are NOT 128-bit secure ({msg}); running with the explicit insecure flag");
            true
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    let literal = bench::bench_literal(args.log_n, args.levels, args.dnum, insecure);
    let mut thread_counts = Vec::new();
    if !args.no_single {
        thread_counts.push(1);
    }
    if all > 1 || args.no_single {
        thread_counts.push(all);
    }
    let mut reports = Vec::new();
    for t in thread_counts {
        let r = bench::run(literal.clone(), t, args.reps)?;
        if !args.json {
            print_report(&r);
        }
        reports.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

fn print_report(r: &bench::BenchReport) {
    println!(
        "CKKS N=2^{}, {} Q limbs + {} P limbs, dnum={}, log2(QP)={:.1} ({}), {} thread(s); key generation {:.1} s",
        r.log_n,
        r.q_limbs,
        r.p_limbs,
        r.dnum,
        r.log_qp,
        if r.secure_128 { "128-bit secure" } else { "INSECURE" },
        r.threads,
        r.keygen_s
    );
    println!("  (wall: best and median; cpu: best on-CPU time of the benchmarking thread, robust to other load)");
    for t in &r.timings {
        let cpu = t
            .best_cpu_ms
            .filter(|_| r.threads == 1)
            .map_or_else(|| "        -".to_string(), |c| format!("{c:>9.3}"));
        println!(
            "  {:<36} wall best {:>9.3} ms  median {:>9.3} ms  cpu {} ms  ({} reps)",
            t.name, t.best_ms, t.median_ms, cpu, t.reps
        );
    }
}

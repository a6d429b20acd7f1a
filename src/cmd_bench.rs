//! `precis bench …`: performance measurements.

use anyhow::Result;
use clap::{Args, Subcommand};
use runtime::ckks::bench;

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Leveled CKKS primitives at N = 2^16 with 25 limbs (60-bit first prime, 50-bit others).
    Ckks(CkksBench),
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

pub fn run(what: BenchWhat) -> Result<()> {
    match what {
        BenchWhat::Ckks(args) => ckks(args),
    }
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

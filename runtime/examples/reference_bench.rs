//! Throughput of the reference executor on a CIFAR-style ResNet-20
//! (3×32×32 input, 16/32/64 channels) and on LeNet-5 (1×28×28), both with
//! pseudo-random weights.
//!
//!     cargo run --release -p runtime --example reference_bench [-- SECONDS]
//!
//! Runs ResNet-20 at batch 1 and 64 and LeNet-5 at batch 1 and 1000, for
//! about SECONDS each (default 5), after a
//! warm-up run and prints images per second of wall time and, on Linux, per
//! second of process CPU time (informative on a shared, loaded machine), then
//! the wall time spent in each op kind during one batch-64 run.

use runtime::reference::{run, run_traced, synthetic};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|e| format!("SECONDS `{s}`: {e}"))?,
        None => 5.0,
    };
    let graph = synthetic::resnet20([3, 32, 32], 10, 2023)?;
    let mut rng = synthetic::SplitMix64::new(7);
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
    println!(
        "resnet20 3x32x32: {} nodes, {} parameters, {} rayon threads",
        graph.node_count(),
        graph.param_count(),
        rayon::current_num_threads()
    );
    for batch in [1usize, 64] {
        measure(&graph, &mut rng, batch, seconds)?;
    }
    let lenet = synthetic::lenet5(10, 2023)?;
    println!("lenet5 1x28x28: {} parameters", lenet.param_count());
    for batch in [1usize, 1000] {
        measure(&lenet, &mut rng, batch, seconds)?;
    }

    let x = rng.tensor(vec![64, 3, 32, 32], 1.0);
    let mut per_kind: BTreeMap<&str, f64> = BTreeMap::new();
    let mut last = Instant::now();
    run_traced(&graph, &[x], &mut |n, _| {
        let now = Instant::now();
        *per_kind.entry(graph.node(n).op.kind()).or_default() += (now - last).as_secs_f64();
        last = now;
    })?;
    let total: f64 = per_kind.values().sum();
    println!("one batch-64 run, wall time per op kind:");
    for (kind, t) in &per_kind {
        println!(
            "  {kind:<18} {:8.1} ms {:5.1} %",
            1e3 * t,
            100.0 * t / total
        );
    }
    Ok(())
}

/// Runs `graph` on random batches of `batch` for about `seconds` and prints
/// the throughput.
fn measure(
    graph: &ir::Graph,
    rng: &mut synthetic::SplitMix64,
    batch: usize,
    seconds: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut shape = graph.node(graph.inputs()[0]).shape.clone();
    shape[0] = batch;
    let inputs = [rng.tensor(shape, 1.0)];
    run(graph, &inputs)?; // warm-up
    let budget = Duration::from_secs_f64(seconds);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut runs = 0usize;
    while runs == 0 || start.elapsed() < budget {
        let out = run(graph, &inputs)?;
        assert_eq!(out[0].shape[0], batch);
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) if b > a => format!(
            ", {:.2} s CPU, {:.1} images per CPU-second",
            b - a,
            (runs * batch) as f64 / (b - a)
        ),
        _ => String::new(),
    };
    println!(
        "batch {batch:>4}: {runs} runs in {secs:.2} s, {:.1} ms/run, {:.1} images/s{cpu}",
        1e3 * secs / runs as f64,
        (runs * batch) as f64 / secs
    );
    Ok(())
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`,
/// assuming the usual 100 clock ticks per second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

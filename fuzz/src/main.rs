//! `precis-fuzz`: runs the structured mutation fuzzer over the parsers.
//!
//! ```text
//! precis-fuzz [--inputs N] [--seed S] [--target NAME]... [--memory-mib M]
//!             [--time-limit-s T] [--crash-dir DIR] [--keep-going] [--list]
//! ```
//!
//! One line per target: inputs run, throughput, accepted/refused, distinct
//! refusal messages, findings, peak memory of one input, slowest input.
//! Exit status 1 when anything was found.

use precis_fuzz::{run, targets, Options};
use std::time::Duration;

fn main() {
    let mut options = Options {
        stop_at_first: false,
        ..Options::default()
    };
    let mut names: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    let usage = "usage: precis-fuzz [--inputs N] [--seed S] [--target NAME]... [--memory-mib M] \
                 [--time-limit-s T] [--crash-dir DIR] [--stop-at-first] [--list]";
    while let Some(a) = args.next() {
        let mut value = |what: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("precis-fuzz: {a} needs {what}\n{usage}");
                std::process::exit(2)
            })
        };
        let number = |s: String| -> u64 {
            s.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("precis-fuzz: not a number: {s}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--inputs" => options.inputs = number(value("a count")),
            "--seed" => options.seed = number(value("a seed")),
            "--target" => names.push(value("a target name")),
            "--memory-mib" => options.memory_limit = (number(value("MiB")) as usize) << 20,
            "--time-limit-s" => options.time_limit = Duration::from_secs(number(value("seconds"))),
            "--crash-dir" => options.crash_dir = value("a directory").into(),
            "--stop-at-first" => options.stop_at_first = true,
            "--list" => {
                for t in targets::all() {
                    println!("{}", t.name);
                }
                return;
            }
            _ => {
                eprintln!("precis-fuzz: unknown argument {a}\n{usage}");
                std::process::exit(2)
            }
        }
    }
    let selected: Vec<_> = if names.is_empty() {
        targets::all()
    } else {
        names
            .iter()
            .map(|n| {
                targets::by_name(n).unwrap_or_else(|| {
                    eprintln!("precis-fuzz: no target {n} (see --list)");
                    std::process::exit(2)
                })
            })
            .collect()
    };
    let mut found = 0;
    for t in &selected {
        let r = run(t, &options);
        println!(
            "{:<20} {:>9} inputs {:>8.0}/s {:>8.1} s  accepted {:>7}  refused {:>9}  \
             distinct refusals {:>5}  findings {}  peak input memory {:.1} MiB ({} B input)  slowest {:.1} ms",
            r.target,
            r.inputs,
            r.inputs_per_second(),
            r.seconds,
            r.accepted,
            r.refused,
            r.distinct_refusals,
            r.findings.len(),
            r.peak_memory as f64 / (1 << 20) as f64,
            r.peak_memory_input_len,
            r.slowest.as_secs_f64() * 1e3
        );
        for f in &r.findings {
            println!(
                "  finding at input {}: {} ({})",
                f.index,
                f.what,
                f.file
                    .as_ref()
                    .map_or("not written".into(), |p| p.display().to_string())
            );
        }
        found += r.findings.len();
    }
    std::process::exit(i32::from(found > 0));
}

//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

use clap::{Parser, Subcommand};

mod cmd_approx;
mod cmd_bench;

#[derive(Parser)]
#[command(name = "precis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Optimal composite minimax approximation of ReLU or sign for a
    /// precision alpha: degrees, depth, multiplications, certified error.
    Approx(cmd_approx::ApproxArgs),
    /// Performance measurements.
    Bench {
        #[command(subcommand)]
        what: cmd_bench::BenchWhat,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Approx(args) => cmd_approx::run(&args),
        Command::Bench { what } => cmd_bench::run(what),
    }
}

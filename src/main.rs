//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

use clap::{Parser, Subcommand};

mod cmd_bench;

#[derive(Parser)]
#[command(name = "precis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Performance measurements.
    Bench {
        #[command(subcommand)]
        what: cmd_bench::BenchWhat,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { what } => cmd_bench::run(what),
    }
}

//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

use clap::{Parser, Subcommand};

mod cmd_approx;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Approx(args) => cmd_approx::run(&args),
    }
}

//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "precis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}

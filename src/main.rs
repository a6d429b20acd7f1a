//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

mod cmd_compile;
mod cmd_infer;
mod cmd_inspect;
mod model;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "precis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's layers, shapes, parameter count and ReLU / max-pool counts.
    Inspect(cmd_inspect::Args),
    /// Run a model in the clear with the reference executor.
    Infer(cmd_infer::Args),
    /// Compile a model; for now writes its tensor IR.
    Compile(cmd_compile::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd_inspect::run(args),
        Command::Infer(args) => cmd_infer::run(args),
        Command::Compile(args) => cmd_compile::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined with ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

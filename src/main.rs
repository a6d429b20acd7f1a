//! `precis`: compile pre-trained CNNs into CKKS circuits and run them.

mod auto_alpha;
mod circuits;
mod cmd_accuracy;
mod cmd_approx;
mod cmd_bench;
mod cmd_compile;
mod cmd_crypto;
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
    /// Show a model's layers, shapes, parameter count and ReLU / max-pool
    /// counts; or a circuit's layers, levels, rotations, bootstraps and costs.
    Inspect(cmd_inspect::Args),
    /// Run a model in the clear with the reference executor, or a circuit on
    /// the simulation backend.
    Infer(cmd_infer::Args),
    /// Top-1 accuracy on a labelled test set, exact and approximated per α.
    Accuracy(cmd_accuracy::Args),
    /// Compile a model to a CKKS circuit file (or, with --emit ir, its tensor IR).
    Compile(cmd_compile::Args),
    /// Optimal composite minimax approximation of ReLU or sign for a
    /// precision alpha: degrees, depth, multiplications, certified error.
    Approx(cmd_approx::ApproxArgs),
    /// Generate a circuit's keys: KEYDIR/secret.key (client) and
    /// KEYDIR/eval.keys (server: no secret).
    Keygen(cmd_crypto::KeygenArgs),
    /// Encrypt one input sample for a circuit (client).
    Encrypt(cmd_crypto::EncryptArgs),
    /// Run a circuit on an encrypted input with the evaluation keys (server).
    Eval(cmd_crypto::EvalArgs),
    /// Decrypt a circuit's encrypted output: the class (client).
    Decrypt(cmd_crypto::DecryptArgs),
    /// Encrypted inference end to end on one machine: compile (for ONNX),
    /// generate keys, encrypt, evaluate, decrypt, compare with the simulation.
    Run(cmd_crypto::RunArgs),
    /// Performance measurements.
    Bench {
        #[command(subcommand)]
        what: cmd_bench::BenchWhat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Keygen(_)
            | Command::Encrypt(_)
            | Command::Eval(_)
            | Command::Decrypt(_)
            | Command::Run(_)
    ) {
        // Before any thread starts (see the function).
        runtime::ckks::allocator::tune_for_large_polynomials();
    }
    let result = match cli.command {
        Command::Inspect(args) => cmd_inspect::run(args),
        Command::Infer(args) => cmd_infer::run(args),
        Command::Accuracy(args) => cmd_accuracy::run(args),
        Command::Compile(args) => cmd_compile::run(args),
        Command::Approx(args) => cmd_approx::run(&args),
        Command::Keygen(args) => cmd_crypto::keygen(args),
        Command::Encrypt(args) => cmd_crypto::encrypt(args),
        Command::Eval(args) => cmd_crypto::eval(args),
        Command::Decrypt(args) => cmd_crypto::decrypt(args),
        Command::Run(args) => cmd_crypto::run(args),
        Command::Bench { what } => cmd_bench::run(what),
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

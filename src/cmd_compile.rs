//! `precis compile`: ONNX → the serialized tensor IR (see `ir::file`).

use crate::model::{load_onnx, parse_shape};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Where to write the compiled model.
    #[arg(short, long)]
    output: PathBuf,
    /// The input shape (batch 1), e.g. 1,3,32,32, when the model leaves it open.
    #[arg(long, value_parser = parse_shape)]
    input_shape: Option<Vec<usize>>,
}

pub fn run(args: Args) -> Result<()> {
    let graph = load_onnx(&args.model, args.input_shape)?;
    let bytes = ir::file::to_bytes(&graph);
    ir::file::write_atomic(&args.output, &bytes)?;
    println!(
        "wrote {} ({} nodes, {} parameters, {} bytes, IR format v{})",
        args.output.display(),
        graph.node_count(),
        graph.param_count(),
        bytes.len(),
        ir::file::FORMAT_VERSION
    );
    Ok(())
}

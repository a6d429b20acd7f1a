//! Model loading shared by the subcommands.

use anyhow::{Context, Result};
use std::path::Path;

/// Parses an input shape written `1,3,32,32` (or `1x3x32x32`).
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    s.split([',', 'x'])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("'{d}' is not a positive dimension in shape '{s}'"))
        })
        .collect()
}

/// Reads an ONNX model into the IR; errors name the file.
pub fn load_onnx(path: &Path, input_shape: Option<Vec<usize>>) -> Result<ir::Graph> {
    compiler::frontend::load(path, input_shape).with_context(|| format!("{}", path.display()))
}

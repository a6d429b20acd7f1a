//! Regenerates the shipped demo model and input:
//! `examples/models/lenet5_demo.onnx` (LeNet-5 with deterministic random
//! weights, `compiler::frontend::zoo::lenet5(&demo_options())`) and
//! `examples/data/lenet5_demo.npy` (the first 8 Fashion-MNIST test images,
//! scaled to [0, 1]).
//!
//! `cargo run --example gen_demo [FASHION_MNIST_DIR]`

use compiler::frontend::zoo;
use runtime::data::{fashion_mnist, npy};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| fashion_mnist::DEFAULT_DIR.to_string());
    let model = zoo::lenet5(&zoo::demo_options());
    let onnx = root.join("examples/models/lenet5_demo.onnx");
    std::fs::write(&onnx, &model.bytes)?;
    let test = fashion_mnist::load(&dir, fashion_mnist::Split::Test)?;
    let input = root.join("examples/data/lenet5_demo.npy");
    npy::write(&input, &test.tensor(0..8))?;
    println!("wrote {} and {}", onnx.display(), input.display());
    Ok(())
}

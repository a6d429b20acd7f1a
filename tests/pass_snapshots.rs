//! Snapshots of the tensor IR after every stage of the approximation
//! pipeline, for the trained LeNet-5 (max-pooling) and a ResNet basic block
//! with a strided 1×1 downsample.

use compiler::frontend::{self, zoo};
use compiler::minimax::{Cache, Objective};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource, PipelineOptions, DEFAULT_MARGIN};
use ir::Tensor;
use runtime::reference::synthetic::SplitMix64;
use std::path::Path;

fn source(tag: &str) -> (MinimaxSource, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("precis-snap-{tag}-{}", std::process::id()));
    (
        MinimaxSource {
            cache: Cache::at(&dir),
            objective: Objective::MinDepth,
        },
        dir,
    )
}

fn snapshot_stages(name: &str, graph: &ir::Graph, calib: Tensor, alpha: u32) {
    let (source, dir) = source(name);
    let options = PipelineOptions {
        alphas: AlphaPlan::uniform(alpha),
        margin: DEFAULT_MARGIN,
    };
    let stages = pipeline::run(graph, [calib], &options, &source).unwrap();
    for (stage, g) in &stages.stages {
        g.validate().unwrap();
        insta::assert_snapshot!(format!("{name}_{stage}"), g.to_text());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn lenet5_stages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = frontend::load(&root.join("examples/models/lenet5.onnx"), None).unwrap();
    let calib = runtime::data::npy::read(root.join("examples/data/fmnist_test_16.npy")).unwrap();
    snapshot_stages("lenet5", &graph, calib, 8);
}

#[test]
fn resnet_basic_block_stages() {
    let model = zoo::basic_block_model(&zoo::ZooOptions::default());
    let graph = frontend::load_bytes(&model.bytes, None).unwrap();
    let mut shape = model.input_shape.clone();
    shape[0] = 8;
    let mut rng = SplitMix64::new(5);
    let calib = rng.tensor(shape, 1.0);
    snapshot_stages("basic_block", &graph, calib, 8);
}

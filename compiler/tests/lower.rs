//! Lowering: circuits of the frontend's zoo and of synthetic networks,
//! simulated, against the reference executor's approximated model; the
//! verifier and the circuit file refusing what they must; snapshots of the
//! lowered circuits.

use compiler::frontend::load_bytes;
use compiler::frontend::zoo::{self, ZooOptions};
use compiler::lower::{lower, LowerOptions, Lowered, PresetParams};
use compiler::minimax::{Cache, Objective};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource, PipelineOptions};
use ir::circuit::{Circuit, Op as COp};
use ir::{Graph, Tensor};
use runtime::backend::Prepared;
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::reference::synthetic::{self, SplitMix64};
use runtime::simulate::{run_samples, NoiseModel};

fn inputs(shape: &[usize], n: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let mut s = shape.to_vec();
    s[0] = n;
    let len = ir::numel(&s);
    Tensor::new(s, (0..len).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()).unwrap()
}

fn source() -> MinimaxSource {
    MinimaxSource {
        cache: Cache::from_env(),
        objective: Objective::MinDepth,
    }
}

/// Approximates `graph` at α on its own random inputs.
fn approximate(graph: &Graph, alpha: u32, calib: &Tensor) -> Graph {
    let options = PipelineOptions {
        alphas: AlphaPlan::uniform(alpha),
        margin: pipeline::DEFAULT_MARGIN,
    };
    let stages = pipeline::run(graph, [calib.clone()], &options, &source()).unwrap();
    stages.output().clone()
}

fn lower_for(name: &str, approx: &Graph, preset: Preset) -> Lowered {
    lower(
        approx,
        &LowerOptions {
            name: name.into(),
            params: &PresetParams(preset),
            input_range: None,
            preprocess: None,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Lowers `graph` at α, simulates random inputs and checks the logits
/// against the reference executor's approximated model; returns the circuit.
fn check(name: &str, graph: &Graph, alpha: u32, preset: Preset, samples: usize) -> Lowered {
    let shape = graph.node(graph.inputs()[0]).shape.clone();
    let calib = inputs(&shape, 32, 1);
    let approx = approximate(graph, alpha, &calib);
    let lowered = lower_for(name, &approx, preset);
    let c = &lowered.circuit;
    c.verify().unwrap();
    // Shrink the test inputs a little so none leaves the calibrated range.
    let mut x = inputs(&shape, samples, 2);
    for v in &mut x.data {
        *v *= 0.9;
    }
    let want = runtime::reference::run(&approx, std::slice::from_ref(&x)).unwrap();
    let mut prepared = Prepared::new(c.clone()).unwrap();
    // Big circuits regenerate each transform's diagonals at use.
    prepared.cache_diagonals = !c.layouts.iter().any(|l| l.cts() > 4);
    let got =
        run_samples(&prepared, &x.data, samples, 4, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let per = want[0].len() / samples;
    let scale = want[0]
        .data
        .iter()
        .fold(1e-3f64, |m, &v| m.max((v as f64).abs()));
    let mut worst = 0f64;
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), per, "{name}: output size");
        for (k, &gk) in g.iter().enumerate() {
            worst = worst.max((gk - want[0].data[i * per + k] as f64).abs());
        }
    }
    eprintln!(
        "{name}: {} bootstraps (bound {}), {} nodes, largest difference {worst:.2e} of {scale:.3}",
        lowered.report.bootstraps,
        lowered.report.bootstrap_lower_bound,
        c.nodes.len()
    );
    assert!(worst <= 1e-4 * scale, "{name}: {worst} vs scale {scale}");
    lowered
}

fn zoo_graph(m: &zoo::ZooModel) -> Graph {
    load_bytes(&m.bytes, None).unwrap_or_else(|e| panic!("{}: {e}", m.name))
}

fn opts() -> ZooOptions {
    ZooOptions::default()
}

#[test]
fn lenet5_circuit_matches_the_approximated_model() {
    let g = synthetic::lenet5(10, 7).unwrap();
    check("lenet5", &g, 14, Preset::Levels16, 4);
}

#[test]
fn resnet20_at_alpha14_needs_its_lower_bound_of_bootstraps() {
    let g = synthetic::resnet20([1, 28, 28], 10, 3).unwrap();
    let l = check("resnet20", &g, 14, Preset::Levels16, 2);
    assert_eq!(l.report.critical_depth, 305);
    assert_eq!(l.report.bootstrap_lower_bound, 18);
    assert_eq!(l.report.bootstraps, 18);
    // One level per linear layer: every transform is followed by one rescale.
    let c = &l.circuit;
    for (i, n) in c.nodes.iter().enumerate() {
        if let COp::LinearTransform { .. } = n.op {
            let next = &c.nodes[i + 1];
            assert!(matches!(next.op, COp::Rescale { a } if a.index() == i));
        }
    }
}

#[test]
fn zoo_vgg_block_and_basic_block() {
    check(
        "vgg_block",
        &zoo_graph(&zoo::vgg_block(&opts())),
        8,
        Preset::Levels16,
        2,
    );
    check(
        "basic_block",
        &zoo_graph(&zoo::basic_block_model(&opts())),
        8,
        Preset::Levels16,
        2,
    );
}

#[test]
fn zoo_bottleneck_and_padded_pooling() {
    check(
        "bottleneck",
        &zoo_graph(&zoo::bottleneck_model(&opts())),
        8,
        Preset::Levels16,
        2,
    );
    check(
        "pad_pool",
        &zoo_graph(&zoo::pad_pool_model(&opts())),
        8,
        Preset::Levels16,
        2,
    );
}

#[test]
fn zoo_alexnet_and_vgg11_on_levels9() {
    // AlexNet: 3×3/2 max-pools (odd windows, carried rows); levels9 splits
    // every composite sign across bootstraps.
    check(
        "alexnet",
        &zoo_graph(&zoo::alexnet(&opts())),
        8,
        Preset::Levels9,
        2,
    );
    check(
        "vgg11_bn",
        &zoo_graph(&zoo::vgg(11, true, 16, &opts())),
        8,
        Preset::Levels9,
        2,
    );
}

#[test]
fn zoo_resnet_imagenet_stem_with_padded_max_pool() {
    // 7×7/2 stem, 3×3/2 max-pool with padding 1, two stages, at 32×32.
    let m = zoo::resnet_imagenet(18, 8, 32, 10, &opts());
    check("resnet18_small", &zoo_graph(&m), 8, Preset::Levels16, 2);
}

#[test]
fn grouped_and_depthwise_convolutions() {
    use compiler::frontend::builder::OnnxBuilder;
    use ir::Pads2d;
    let mut b = OnnxBuilder::new("groups", 13, 3);
    let x = b.input("input", &[1, 8, 12, 12]);
    let y = b.conv_full("dw", &x, 8, [3, 3], [1, 1], Pads2d::same(1), 8, true);
    let y = b.relu("relu1", &y);
    let y = b.conv_full("gc", &y, 8, [3, 3], [2, 2], Pads2d::same(1), 2, true);
    let y = b.relu("relu2", &y);
    let y = b.global_avg_pool("gap", &y);
    let y = b.flatten("flat", &y);
    let y = b.linear("fc", &y, 4);
    b.output(&y);
    let g = load_bytes(&b.to_bytes(), None).unwrap();
    check("groups", &g, 8, Preset::Levels16, 2);
}

/// Feature maps larger than a ciphertext (a 256×256 frame block spans two):
/// the pooling rounds shift across ciphertexts with linear transforms.
#[test]
fn max_pooling_across_ciphertexts() {
    use compiler::frontend::builder::OnnxBuilder;
    let mut b = OnnxBuilder::new("big", 13, 5);
    let x = b.input("input", &[1, 1, 130, 130]);
    let y = b.conv("c1", &x, 2, 3, 1, 1, true);
    let y = b.relu("r1", &y);
    let y = b.max_pool("mp", &y, 3, 2, 1);
    let y = b.global_avg_pool("gap", &y);
    let y = b.flatten("flat", &y);
    let y = b.linear("fc", &y, 3);
    b.output(&y);
    let g = load_bytes(&b.to_bytes(), None).unwrap();
    let l = check("big", &g, 6, Preset::Levels16, 1);
    assert!(l.circuit.layouts.iter().any(|l| l.cts() > 1));
    assert!(l.circuit.regions.iter().any(|r| r.name.contains(".shift")));
}

#[test]
#[ignore = "ImageNet-shaped ResNet-18 (224×224, several ciphertexts per tensor): minutes"]
fn zoo_resnet18_imagenet_over_several_ciphertexts() {
    let m = zoo::resnet_imagenet(18, 64, 224, 1000, &opts());
    let l = check("resnet18", &zoo_graph(&m), 8, Preset::Levels16, 1);
    assert!(l.circuit.layouts.iter().any(|l| l.cts() > 1));
}

/// The noise model perturbs outputs by about what CKKS would, and leaves
/// the classes of a well-conditioned model alone.
#[test]
fn noisy_simulation_stays_close() {
    let g = synthetic::lenet5(10, 7).unwrap();
    let shape = g.node(g.inputs()[0]).shape.clone();
    let calib = inputs(&shape, 32, 1);
    let approx = approximate(&g, 10, &calib);
    let l = lower_for("lenet5", &approx, Preset::Levels16);
    let prepared = Prepared::new(l.circuit.clone()).unwrap();
    let mut x = inputs(&shape, 4, 2);
    x.data.iter_mut().for_each(|v| *v *= 0.9);
    let clean = run_samples(&prepared, &x.data, 4, 4, None).unwrap();
    let noise = NoiseModel::for_circuit(&l.circuit, 5);
    let noisy = run_samples(&prepared, &x.data, 4, 4, Some(&noise)).unwrap();
    let again = run_samples(&prepared, &x.data, 4, 4, Some(&noise)).unwrap();
    assert_eq!(noisy, again, "the noise is deterministic for a seed");
    let diff = clean
        .iter()
        .flatten()
        .zip(noisy.iter().flatten())
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("noise moved logits by up to {diff:.3e}");
    assert!(diff > 0.0, "noise changes the values");
    assert!(diff < 1e-2, "noise of CKKS size, not garbage: {diff}");
}

fn small_circuit() -> Circuit {
    let g = zoo_graph(&zoo::basic_block_model(&opts()));
    let shape = g.node(g.inputs()[0]).shape.clone();
    let approx = approximate(&g, 6, &inputs(&shape, 16, 1));
    lower_for("basic_block", &approx, Preset::Levels16).circuit
}

#[test]
fn the_verifier_names_the_broken_node() {
    let c = small_circuit();
    c.verify().unwrap();
    // A recorded scale that its operands do not give.
    let mut bad = c.clone();
    let i = bad
        .nodes
        .iter()
        .position(|n| matches!(n.op, COp::Mul { .. }))
        .unwrap();
    bad.nodes[i].scale *= 1.0 + 1e-6;
    let e = bad.verify().unwrap_err();
    assert_eq!(e.node, i);
    assert!(e.to_string().contains(&format!("node %{i} (mul)")), "{e}");
    // An addition of values at different scales.
    let mut bad = c.clone();
    let j = bad
        .nodes
        .iter()
        .position(|n| matches!(n.op, COp::Add { .. }))
        .unwrap();
    if let COp::Add { a, .. } = bad.nodes[j].op {
        let src = a.index();
        bad.nodes[src].scale *= 1.5;
    }
    assert!(bad.verify().is_err());
    // A rotation whose key is not declared.
    let mut bad = c.clone();
    let k = *bad.rotations.keys().next().unwrap();
    bad.rotations.remove(&k);
    let e = bad.verify().unwrap_err().to_string();
    assert!(
        e.contains(&format!("rotation by {k} has no declared Galois key")),
        "{e}"
    );
    // A level mismatch between operands.
    let mut bad = c.clone();
    let m = bad
        .nodes
        .iter()
        .position(|n| matches!(n.op, COp::Mul { .. }))
        .unwrap();
    if let COp::Mul { a, .. } = bad.nodes[m].op {
        bad.nodes[a.index()].level += 1;
    }
    assert!(bad.verify().is_err());
}

#[test]
fn circuit_files_round_trip_and_refuse_damage() {
    use ir::circuit::file::{from_bytes, to_bytes, CircuitFileError};
    let c = small_circuit();
    let bytes = to_bytes(&c);
    let back = from_bytes(&bytes).unwrap();
    assert_eq!(back.to_text(), c.to_text());
    assert!(matches!(
        from_bytes(b"PRECISIR........"),
        Err(CircuitFileError::Magic)
    ));
    assert!(matches!(
        from_bytes(&bytes[..bytes.len() - 7]),
        Err(CircuitFileError::Truncated { .. })
    ));
    let mut flip = bytes.clone();
    let at = bytes.len() / 2;
    flip[at] ^= 0x10;
    assert!(from_bytes(&flip)
        .unwrap_err()
        .to_string()
        .contains("checksum"));
    let mut v2 = bytes.clone();
    v2[8] = 9;
    assert!(from_bytes(&v2)
        .unwrap_err()
        .to_string()
        .contains("version 9"));
    let mut huge = bytes.clone();
    huge[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(from_bytes(&huge)
        .unwrap_err()
        .to_string()
        .contains("more than"));
    // A payload that decodes but breaks a rule is refused by the verifier.
    let mut bad = c.clone();
    bad.nodes[3].level += 1;
    let e = from_bytes(&to_bytes(&bad)).unwrap_err().to_string();
    assert!(e.starts_with("invalid circuit: node %3"), "{e}");
}

fn snapshot_circuit(g: &Graph, alpha: u32) -> String {
    let shape = g.node(g.inputs()[0]).shape.clone();
    let approx = approximate(g, alpha, &inputs(&shape, 16, 1));
    lower_for(&g.name, &approx, Preset::Levels16)
        .circuit
        .to_text()
}

#[test]
fn snapshot_lenet5_circuit() {
    let g = zoo_graph(&zoo::lenet5(&zoo::demo_options()));
    insta::assert_snapshot!("lenet5_circuit", snapshot_circuit(&g, 6));
}

#[test]
fn snapshot_basic_block_circuit() {
    let g = zoo_graph(&zoo::basic_block_model(&opts()));
    insta::assert_snapshot!("basic_block_circuit", snapshot_circuit(&g, 6));
}

/// A 7×7/2 stem, a padded 3×3/2 max-pool and residual stages down to a
/// single pixel (whose vectors are folded from inputs of different periods).
#[test]
fn residual_stages_down_to_one_pixel() {
    use compiler::frontend::builder::OnnxBuilder;
    let mut b = OnnxBuilder::new("stages", 13, 3);
    let x = b.input("input", &[1, 3, 32, 32]);
    let y = b.conv("c1", &x, 8, 7, 2, 3, false);
    let y = b.batch_norm("bn1", &y);
    let y = b.relu("r1", &y);
    let mut y = b.max_pool("mp", &y, 3, 2, 1);
    for (i, (c, s)) in [(8, 1), (16, 2), (32, 2), (64, 2)].into_iter().enumerate() {
        y = zoo::basic_block(&mut b, &format!("l{i}"), &y, c, s);
    }
    let y = b.global_avg_pool("gap", &y);
    let y = b.flatten("flat", &y);
    let y = b.linear("fc", &y, 4);
    b.output(&y);
    let g = load_bytes(&b.to_bytes(), None).unwrap();
    check("stages", &g, 8, Preset::Levels16, 2);
}

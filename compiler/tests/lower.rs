//! Lowering: circuits of synthetic networks, simulated, against the
//! reference executor's approximated model.

use compiler::lower::{lower, LowerOptions, PresetParams};
use compiler::minimax::{Cache, Objective};
use compiler::passes::AlphaPlan;
use compiler::pipeline::{self, MinimaxSource, PipelineOptions};
use ir::{Graph, Tensor};
use runtime::backend::{execute, Prepared, Quiet};
use runtime::ckks::bootstrapping::presets::Preset;
use runtime::reference::synthetic::{self, SplitMix64};
use runtime::simulate::Simulator;

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

/// Simulates the circuit on `x` (batch) and returns the logits per input.
fn simulate(c: &ir::circuit::Circuit, x: &Tensor) -> Vec<Vec<f64>> {
    let prepared = Prepared::new(c.clone()).unwrap();
    let sim = Simulator::new(c, None);
    let layout = &c.layouts[c.input.layout as usize];
    let per = layout.len();
    let n = x.shape[0];
    let slots = c.params.slots;
    let mut cts = vec![vec![0.0; n * slots]; layout.cts()];
    for i in 0..n {
        let data: Vec<f64> = x.data[i * per..(i + 1) * per]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for (k, ct) in layout.pack(&data).into_iter().enumerate() {
            cts[k][i * slots..(i + 1) * slots].copy_from_slice(&ct);
        }
    }
    let enc = sim.encrypt(cts, n, c.input.level, c.input.scale);
    let out = execute(&sim, &prepared, enc, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    let ol = &c.layouts[c.output.layout as usize];
    (0..n)
        .map(|i| {
            let per_ct: Vec<Vec<f64>> = out
                .iter()
                .map(|ct| ct.values[i * slots..(i + 1) * slots].to_vec())
                .collect();
            ol.unpack(&per_ct)
        })
        .collect()
}

fn check_against_reference(name: &str, graph: &Graph, alpha: u32, preset: Preset) {
    let shape = graph.node(graph.inputs()[0]).shape.clone();
    let calib = inputs(&shape, 64, 1);
    let approx = approximate(graph, alpha, &calib);
    let t = std::time::Instant::now();
    let lowered = lower(
        &approx,
        &LowerOptions {
            name: name.into(),
            params: &PresetParams(preset),
            input_range: None,
            preprocess: None,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let c = &lowered.circuit;
    eprintln!(
        "{name}: lowered in {:.2} s: {:?}, {} nodes",
        t.elapsed().as_secs_f64(),
        lowered.report,
        c.nodes.len()
    );
    let x = inputs(&shape, 4, 2);
    let want = runtime::reference::run(&approx, std::slice::from_ref(&x)).unwrap();
    let got = simulate(c, &x);
    let classes = want[0].shape[1];
    let mut worst = 0f64;
    let scale = want[0]
        .data
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()));
    for (i, g) in got.iter().enumerate() {
        for (k, &gk) in g.iter().enumerate().take(classes) {
            let w = want[0].data[i * classes + k] as f64;
            worst = worst.max((gk - w).abs());
        }
    }
    eprintln!("{name}: largest logit difference {worst:.3e} (logits up to {scale:.3})");
    assert!(worst < 1e-4 * scale.max(1.0), "{name}: {worst}");
}

#[test]
fn lenet5_circuit_matches_the_approximated_model() {
    let g = synthetic::lenet5(10, 7).unwrap();
    check_against_reference("lenet5", &g, 14, Preset::Levels16);
}

#[test]
fn resnet20_circuit_matches_the_approximated_model() {
    let g = synthetic::resnet20([1, 28, 28], 10, 3).unwrap();
    check_against_reference("resnet20", &g, 14, Preset::Levels16);
}
